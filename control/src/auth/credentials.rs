//! The credentials file: the key pairs the daemon accepts (`[[credentials]]`: access key,
//! secret key, account, project) and the accounts' organisations (`[[orgs]]`: an
//! organisation path and the accounts in that unit), which `orgPath` whitelist entries
//! match, and the console's users (`[[users]]`: see [`super::session`]). Read when the
//! daemon starts and at a reload; an invalid file is refused whole.
//!
//! ```toml
//! [[credentials]]
//! ak = "USERAK00000000000001"
//! sk = "user-secret"
//! domain_id = "duser"
//! project_id = "puser"
//!
//! [[orgs]]
//! path = "o-acme/r-root/ou-sales"   # <organisation>/<root>/<unit>[/<unit>...]
//! domains = ["duser"]
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::session::{ConsoleUser, valid_hash};

/// One key pair and the tenant it signs for.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Access key id.
    pub ak: String,
    /// Secret key.
    pub sk: String,
    /// The account.
    pub domain_id: String,
    /// The project the key may act in.
    pub project_id: String,
}

/// One organisation unit and the accounts in it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OrgMembership {
    /// The unit's path from its organisation down: `<org id>/<root id>/<ou id>...`, each
    /// part of `A-Z a-z 0-9 -`, at most 1024 characters in all.
    pub path: String,
    /// The accounts (`domain_id`) in that unit. An account is in at most one unit.
    pub domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    credentials: Vec<Credential>,
    #[serde(default)]
    orgs: Vec<OrgMembership>,
    #[serde(default)]
    users: Vec<ConsoleUser>,
}

/// The credentials the daemon accepts, by access key.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_ak: HashMap<String, Credential>,
    org_of: HashMap<String, String>,
    users: Vec<ConsoleUser>,
}

/// Why a credentials file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid credentials file: {0}")]
    Parse(#[from] toml::de::Error),
    /// An entry is unusable (empty field or duplicate access key).
    #[error("invalid credentials file: {0}")]
    Invalid(String),
}

impl Credentials {
    /// Parse the TOML form: one `[[credentials]]` table per key pair, and optionally one
    /// `[[orgs]]` table per organisation unit.
    ///
    /// # Errors
    /// [`CredentialsError`] for bad TOML, empty fields, a duplicate access key, an invalid
    /// organisation path or an account in two units.
    pub fn from_toml(text: &str) -> Result<Self, CredentialsError> {
        let file: CredentialsFile = toml::from_str(text)?;
        Self::from_list(file.credentials)?
            .with_orgs(file.orgs)?
            .with_users(file.users)
    }

    /// Add the console's users.
    ///
    /// # Errors
    /// [`CredentialsError::Invalid`] for an empty field, a hash that is not an argon2 PHC
    /// string, or a name twice in one account.
    pub fn with_users(mut self, users: Vec<ConsoleUser>) -> Result<Self, CredentialsError> {
        for u in users {
            if [&u.name, &u.domain_id, &u.project_id]
                .iter()
                .any(|s| s.trim().is_empty())
            {
                return Err(CredentialsError::Invalid(format!(
                    "user {:?} has an empty field",
                    u.name
                )));
            }
            if !valid_hash(&u.password_hash) {
                return Err(CredentialsError::Invalid(format!(
                    "user {:?}: password_hash is not an argon2 PHC string (make one with `vpcepctl hash-password`)",
                    u.name
                )));
            }
            if self
                .users
                .iter()
                .any(|o| o.name == u.name && o.domain_id == u.domain_id)
            {
                return Err(CredentialsError::Invalid(format!(
                    "user {:?} appears twice in account {:?}",
                    u.name, u.domain_id
                )));
            }
            self.users.push(u);
        }
        Ok(self)
    }

    /// The console user `name`, in account `domain_id` if given. Without an account the
    /// name must be unique among all accounts.
    pub fn user(&self, name: &str, domain_id: Option<&str>) -> Option<&ConsoleUser> {
        let mut found = self
            .users
            .iter()
            .filter(|u| u.name == name && domain_id.is_none_or(|d| u.domain_id == d));
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// Put accounts in organisation units.
    ///
    /// # Errors
    /// [`CredentialsError::Invalid`] for an invalid path, an empty account id or an account
    /// in two units.
    pub fn with_orgs(mut self, orgs: Vec<OrgMembership>) -> Result<Self, CredentialsError> {
        for o in orgs {
            let ok = !o.path.is_empty()
                && o.path.len() <= 1024
                && o.path.split('/').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err(CredentialsError::Invalid(format!(
                    "organisation path {:?}: parts of A-Z a-z 0-9 - separated by /",
                    o.path
                )));
            }
            for d in o.domains {
                if d.trim().is_empty() {
                    return Err(CredentialsError::Invalid(format!(
                        "organisation {:?} lists an empty account",
                        o.path
                    )));
                }
                if let Some(first) = self.org_of.insert(d.clone(), o.path.clone()) {
                    return Err(CredentialsError::Invalid(format!(
                        "account {d:?} is in two organisation units ({first:?} and {:?})",
                        o.path
                    )));
                }
            }
        }
        Ok(self)
    }

    /// The organisation path of account `domain_id`, if it is in one.
    pub fn org_path(&self, domain_id: &str) -> Option<&str> {
        self.org_of.get(domain_id).map(String::as_str)
    }

    /// Build from a list.
    ///
    /// # Errors
    /// [`CredentialsError::Invalid`] for empty fields or a duplicate access key.
    pub fn from_list(list: Vec<Credential>) -> Result<Self, CredentialsError> {
        let mut by_ak = HashMap::new();
        for c in list {
            if [&c.ak, &c.sk, &c.domain_id, &c.project_id]
                .iter()
                .any(|s| s.trim().is_empty())
            {
                return Err(CredentialsError::Invalid(format!(
                    "entry {:?} has an empty field",
                    c.ak
                )));
            }
            let ak = c.ak.clone();
            if by_ak.insert(ak.clone(), c).is_some() {
                return Err(CredentialsError::Invalid(format!(
                    "access key {ak:?} appears twice"
                )));
            }
        }
        Ok(Self {
            by_ak,
            org_of: HashMap::new(),
            users: Vec::new(),
        })
    }

    /// Read and parse a credentials file.
    ///
    /// # Errors
    /// [`CredentialsError`].
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The credential for an access key.
    pub fn get(&self, ak: &str) -> Option<&Credential> {
        self.by_ak.get(ak)
    }

    /// Number of key pairs.
    pub fn len(&self) -> usize {
        self.by_ak.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.by_ak.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file() {
        let c = Credentials::from_toml(
            "[[credentials]]\nak = \"A\"\nsk = \"S\"\ndomain_id = \"d\"\nproject_id = \"p\"\n",
        )
        .unwrap();
        assert_eq!(c.get("A").unwrap().project_id, "p");
        assert!(
            Credentials::from_toml("[[credentials]]\nak = \"A\"\nsk = \"S\"\ndomain_id = \"d\"\n")
                .is_err()
        );
        assert!(
            Credentials::from_toml(
                "[[credentials]]\nak=\"A\"\nsk=\"\"\ndomain_id=\"d\"\nproject_id=\"p\"\nx=1"
            )
            .is_err()
        );
        let dup = "[[credentials]]\nak=\"A\"\nsk=\"S\"\ndomain_id=\"d\"\nproject_id=\"p\"\n";
        assert!(Credentials::from_toml(&format!("{dup}{dup}")).is_err());
    }

    #[test]
    fn console_users() {
        let key = "[[credentials]]\nak=\"A\"\nsk=\"S\"\ndomain_id=\"d\"\nproject_id=\"p\"\n";
        let hash = crate::auth::session::hash_password("pw").unwrap();
        let user = |name: &str, domain: &str, hash: &str| {
            format!(
                "[[users]]\nname=\"{name}\"\npassword_hash=\"{hash}\"\ndomain_id=\"{domain}\"\nproject_id=\"p\"\n"
            )
        };
        let c = Credentials::from_toml(&format!(
            "{key}{}{}{}",
            user("alice", "d", &hash),
            user("bob", "d", &hash),
            user("bob", "e", &hash)
        ))
        .unwrap();
        assert_eq!(c.user("alice", None).unwrap().domain_id, "d");
        assert_eq!(c.user("bob", None), None, "two bobs: the account is needed");
        assert_eq!(c.user("bob", Some("e")).unwrap().domain_id, "e");
        assert_eq!(c.user("carol", None), None);
        let twice = format!("{key}{}{}", user("a", "d", &hash), user("a", "d", &hash));
        assert!(Credentials::from_toml(&twice).is_err());
        let e = Credentials::from_toml(&format!("{key}{}", user("a", "d", "secret")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hash-password"), "{e}");
        assert!(Credentials::from_toml(&format!("{key}{}", user("", "d", &hash))).is_err());
    }

    #[test]
    fn organisations() {
        let key = "[[credentials]]\nak=\"A\"\nsk=\"S\"\ndomain_id=\"d\"\nproject_id=\"p\"\n";
        let org = |path: &str, domains: &str| {
            Credentials::from_toml(&format!(
                "{key}[[orgs]]\npath = \"{path}\"\ndomains = [{domains}]\n"
            ))
        };
        let c = org("o-1/r-1/ou-a", "\"d\", \"e\"").unwrap();
        assert_eq!(c.org_path("d"), Some("o-1/r-1/ou-a"));
        assert_eq!(c.org_path("e"), Some("o-1/r-1/ou-a"));
        assert_eq!(c.org_path("x"), None);
        assert_eq!(Credentials::from_toml(key).unwrap().org_path("d"), None);
        for bad in ["", "o-1//ou", "/o-1", "o-1/*", "o 1", &"a".repeat(1025)] {
            assert!(org(bad, "\"d\"").is_err(), "{bad:?}");
        }
        assert!(org("o-1", "\"\"").is_err(), "empty account");
        let two = format!(
            "{key}[[orgs]]\npath=\"o-1\"\ndomains=[\"d\"]\n[[orgs]]\npath=\"o-2\"\ndomains=[\"d\"]\n"
        );
        let e = Credentials::from_toml(&two).unwrap_err().to_string();
        assert!(e.contains("two organisation units"), "{e}");
        // The example file's commented [[orgs]] table is valid once uncommented.
        let example = include_str!("../../../deploy/credentials.example.toml");
        let on: Vec<&str> = example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        ["[[orgs]]", "path", "domains"]
                            .iter()
                            .any(|k| r.starts_with(k))
                    })
                    .unwrap_or(l)
            })
            .collect();
        let c = Credentials::from_toml(&on.join("\n")).unwrap();
        assert_eq!(
            c.org_path("exampleaccount"),
            Some("o-example/r-root/ou-sales")
        );
    }
}
