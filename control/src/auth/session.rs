//! The console's sign-in (user guide §6.2: a user name and a password): the users of the
//! credentials file's `[[users]]` tables, their password hashes (argon2id, PHC strings),
//! and the sessions a sign-in opens.
//!
//! A session token is `vpcep1.<payload>.<secret>`: the payload (base64url JSON: the user,
//! the account, the project, when it was issued and when it ends) says whom it is for, the
//! secret is 32 random bytes. A token is valid until its end while the store holds the
//! claim [`claim_key`]`(token)` ([`crate::store::Store::claim`]), taken at sign-in for the
//! session's lifetime and given back at sign-out. So:
//! - every node of a cluster accepts it (etcd holds the claim), and none after sign-out;
//! - a payload changed by its bearer hashes to a claim nobody took;
//! - the store holds only hashes: reading it yields no usable token.
//!
//! ```toml
//! [[users]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # vpcepctl hash-password
//! domain_id = "duser"
//! project_id = "puser"
//! ```

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The tokens' version tag.
const TAG: &str = "vpcep1";
/// Longest token accepted (a payload of long names, and the secret).
pub const MAX_TOKEN: usize = 2048;

/// One console user: a name, its password's hash, and the tenant it signs in as.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// The user name (unique within its account).
    pub name: String,
    /// The password's argon2 hash, a PHC string (`vpcepctl hash-password` makes one).
    pub password_hash: String,
    /// The account.
    pub domain_id: String,
    /// The project the user works in.
    pub project_id: String,
}

/// Hash `password` for a [`ConsoleUser`] (argon2id with the crate's default cost and a
/// random salt).
///
/// # Errors
/// The hasher's, for a password it cannot take.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `hash` is a PHC string this module can check passwords against.
pub fn valid_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

/// Whether `password` matches `hash`. With no user (`None`), a fixed hash is checked
/// instead, so that an unknown name takes as long to refuse as a wrong password.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash_password("decoy").unwrap_or_default());
    let checked = hash.unwrap_or(decoy);
    let Ok(parsed) = PasswordHash::new(checked) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && hash.is_some()
}

/// Whom a session token is for, and its lifetime (Unix seconds).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Session {
    /// The user name.
    pub user: String,
    /// The account.
    pub domain_id: String,
    /// The project.
    pub project_id: String,
    /// When the session began.
    pub issued_at: i64,
    /// When it ends.
    pub expires_at: i64,
}

/// A new token for `session`.
pub fn mint(session: &Session) -> String {
    let payload = serde_json::to_vec(session).unwrap_or_default();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!(
        "{TAG}.{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(secret)
    )
}

/// The session a token names, if it is well formed (whether it is valid is the store's
/// claim and its end: see the module's doc).
pub fn parse(token: &str) -> Option<Session> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(TAG), Some(payload), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if URL_SAFE_NO_PAD.decode(secret).ok()?.len() != 32 {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// The store claim that keeps `token` valid.
pub fn claim_key(token: &str) -> String {
    format!("session-{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(valid_hash(&h));
        assert!(verify_password(Some(&h), "correct horse"));
        assert!(!verify_password(Some(&h), "correct horsE"));
        assert!(!verify_password(None, "decoy"), "no user, no sign-in");
        assert!(!verify_password(Some("plain"), "plain"));
        assert!(!valid_hash("plain"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn tokens_name_their_session_and_refuse_tampering() {
        let s = Session {
            user: "alice".into(),
            domain_id: "d".into(),
            project_id: "p".into(),
            issued_at: 1,
            expires_at: 3601,
        };
        let t = mint(&s);
        assert_eq!(parse(&t), Some(s.clone()));
        assert_ne!(t, mint(&s), "each token has its own secret");
        // Another payload is another claim.
        let mut other = s.clone();
        other.project_id = "q".into();
        let forged = format!(
            "{TAG}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap()),
            t.rsplit('.').next().unwrap()
        );
        assert_eq!(parse(&forged), Some(other));
        assert_ne!(claim_key(&forged), claim_key(&t));
        for bad in [
            "",
            "vpcep1",
            "vpcep1..",
            "vpcep2.e30.AAAA",
            &format!("{t}.x"),
            &"a".repeat(MAX_TOKEN + 1),
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
