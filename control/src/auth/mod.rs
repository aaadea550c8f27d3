//! SDK-HMAC-SHA256 request signing and verification (the Huawei Cloud API gateway scheme the
//! official SDK uses), the credentials file, and the console's users and sessions
//! ([`session`]).
//!
//! Verification works on the raw request target, the headers as received and the exact body
//! bytes, never on a router-normalised path. The canonical request is rebuilt as the SDK
//! builds it: the path percent-decoded, split on `/`, each segment re-encoded with only RFC
//! 3986 unreserved characters left bare and a trailing `/` added; the query split on `&`,
//! decoded, sorted by key then value and re-encoded; the signed headers lower-cased with
//! trimmed values; the SHA-256 of the body. The signature is compared in constant time.
//!
//! Hardening beyond the SDK's own rules (issue 10):
//! - the body is always hashed, and a present `X-Sdk-Content-Sha256` must equal that hash
//!   (the SDK's signer would take the header instead, so a request signed for body A could be
//!   sent with body B and the header set to sha256(A)); `UNSIGNED-PAYLOAD` only under
//!   [`PayloadPolicy::AllowUnsigned`];
//! - an unknown access key and a bad signature get the same answer, after the same work;
//! - [`ReplayCache`] refuses a signature seen before while it is still inside the date window,
//!   unless that earlier use was refused ([`ReplayCache::release`]): a signature makes at most
//!   one successful write.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

mod credentials;
mod replay;
pub mod session;
pub use credentials::{Credential, Credentials, CredentialsError, OrgMembership};
pub use replay::{Claims, ReplayCache, ReplayError};

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name, first in the `Authorization` header and in the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// SHA-256 of the empty string, the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The `X-Sdk-Content-Sha256` value that asks the server not to hash the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The `X-Sdk-Date` format.
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Every byte but `A-Z a-z 0-9 - . _ ~` is percent-encoded (upper-case hex).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Who sent a verified request (defined with the model, where tenancy is applied).
pub use crate::model::Tenant;

/// Why a request failed authentication. Every variant answers 401 `APIGW.0301`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not the SDK-HMAC-SHA256 form.
    #[error("Incorrect IAM authentication information: missing or malformed Authorization header")]
    Malformed,
    /// The access key is unknown. Worded like [`AuthError::BadSignature`] on purpose, so a
    /// caller cannot tell which access keys exist.
    #[error("Incorrect IAM authentication information: verify aksk signature fail")]
    UnknownKey,
    /// `X-Sdk-Date` is missing or unparsable.
    #[error("Incorrect IAM authentication information: missing or invalid X-Sdk-Date")]
    BadDate,
    /// `X-Sdk-Date` is more than the allowed window from the server's clock.
    #[error("Incorrect IAM authentication information: signature expired")]
    Expired,
    /// A header named in SignedHeaders is missing, or host/x-sdk-date are not signed.
    #[error("Incorrect IAM authentication information: signed headers incomplete")]
    SignedHeaders,
    /// The signature does not verify.
    #[error("Incorrect IAM authentication information: verify aksk signature fail")]
    BadSignature,
    /// `X-Sdk-Content-Sha256` is present and is neither the body's SHA-256 nor an allowed
    /// `UNSIGNED-PAYLOAD`.
    #[error(
        "Incorrect IAM authentication information: X-Sdk-Content-Sha256 does not match the body"
    )]
    PayloadHash,
    /// This signature was already used (a replay inside the date window).
    #[error("Incorrect IAM authentication information: the signature was already used")]
    Replayed,
    /// A header the signature depends on appears more than once.
    #[error("Incorrect IAM authentication information: duplicate {0} header")]
    DuplicateHeader(&'static str),
}

/// Whether `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` may leave a body out of the signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadPolicy {
    /// `UNSIGNED-PAYLOAD` is accepted: the body is then not covered by the signature.
    AllowUnsigned,
    /// The body is always covered. The default.
    #[default]
    RequireHash,
}

/// The parts of a request that the signature covers.
#[allow(missing_debug_implementations)] // holds a closure
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// The raw path, as on the wire (percent-encoded).
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: &'a str,
    /// Header lookup by lower-case name: returns the raw value.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The exact body bytes.
    pub body: &'a [u8],
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The canonical URI: decode, split on `/`, re-encode each segment, ensure a trailing `/`.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = decode(raw_path);
    let mut out = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Query pairs as the SDK means them: split on `&` before decoding, each side
/// percent-decoded only (`+` stays `+`), a key without `=` having an empty value.
pub fn query_pairs(raw_query: &str) -> Vec<(String, String)> {
    raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Sorted by key then value, each side encoded, joined with `&`.
fn encode_sorted(mut pairs: Vec<(String, String)>) -> String {
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical query: [`query_pairs`] sorted and re-encoded. Also the exact string a
/// signing client puts on the wire.
pub fn canonical_query(raw_query: &str) -> String {
    encode_sorted(query_pairs(raw_query))
}

/// Build a query string from unencoded pairs the way the SDK does (sorted, encoded).
pub fn query_string(pairs: &[(&str, String)]) -> String {
    encode_sorted(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The payload hash of the canonical request: always the SHA-256 of the body (of the empty
/// string for no body). A present `X-Sdk-Content-Sha256` must equal it, or be
/// `UNSIGNED-PAYLOAD` where `policy` allows that (then, for a non-empty body, the canonical
/// request carries `UNSIGNED-PAYLOAD`, as the SDK signs it).
///
/// # Errors
/// [`AuthError::PayloadHash`].
pub fn payload_hash(req: &SignedRequest<'_>, policy: PayloadPolicy) -> Result<String, AuthError> {
    let hash = sha256_hex(req.body);
    match (req.header)("x-sdk-content-sha256") {
        None => Ok(hash),
        Some(h) if h.trim().eq_ignore_ascii_case(&hash) => Ok(hash),
        Some(h) if h.trim() == UNSIGNED_PAYLOAD && policy == PayloadPolicy::AllowUnsigned => {
            Ok(if req.body.is_empty() {
                hash
            } else {
                UNSIGNED_PAYLOAD.to_string()
            })
        }
        Some(_) => Err(AuthError::PayloadHash),
    }
}

/// The canonical request for `req`, signing the headers in `signed` (lower-case, sorted);
/// the body is always hashed ([`PayloadPolicy::RequireHash`]).
///
/// # Errors
/// [`AuthError::SignedHeaders`] if a signed header is absent, [`AuthError::PayloadHash`].
pub fn canonical_request(req: &SignedRequest<'_>, signed: &[&str]) -> Result<String, AuthError> {
    canonical_request_with(req, signed, PayloadPolicy::RequireHash)
}

/// [`canonical_request`] under `policy`.
///
/// # Errors
/// As [`canonical_request`].
pub fn canonical_request_with(
    req: &SignedRequest<'_>,
    signed: &[&str],
    policy: PayloadPolicy,
) -> Result<String, AuthError> {
    let mut headers = String::new();
    for name in signed {
        let value = (req.header)(name).ok_or(AuthError::SignedHeaders)?;
        headers.push_str(name);
        headers.push(':');
        headers.push_str(value.trim());
        headers.push('\n');
    }
    let payload = payload_hash(req, policy)?;
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        signed.join(";"),
        payload
    ))
}

/// The string to sign for a canonical request dated `date`.
pub fn string_to_sign(date: &str, canonical: &str) -> String {
    format!("{ALGORITHM}\n{date}\n{}", sha256_hex(canonical.as_bytes()))
}

fn hmac(sk: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(sk.as_bytes()).expect("HMAC takes keys of any length")
}

/// The hex signature of `req` with secret `sk`.
///
/// # Errors
/// [`AuthError`] if a signed header or `X-Sdk-Date` is missing.
pub fn signature(req: &SignedRequest<'_>, signed: &[&str], sk: &str) -> Result<String, AuthError> {
    let date = (req.header)("x-sdk-date").ok_or(AuthError::BadDate)?;
    let canonical = canonical_request_with(req, signed, PayloadPolicy::AllowUnsigned)?;
    let sts = string_to_sign(&date, &canonical);
    let mut mac = hmac(sk);
    mac.update(sts.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// The `Authorization` header value for `req`.
///
/// # Errors
/// As [`signature`].
pub fn authorization(
    req: &SignedRequest<'_>,
    signed: &[&str],
    ak: &str,
    sk: &str,
) -> Result<String, AuthError> {
    let sig = signature(req, signed, sk)?;
    Ok(format!(
        "{ALGORITHM} Access={ak}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    ))
}

struct ParsedAuth<'a> {
    ak: &'a str,
    signed: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<ParsedAuth<'_>, AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AuthError::Malformed)?;
    let mut ak = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part.split_once('=').ok_or(AuthError::Malformed)?;
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(AuthError::Malformed);
        }
        let slot = match k {
            "Access" => &mut ak,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(AuthError::Malformed),
        };
        if slot.replace(v).is_some() {
            return Err(AuthError::Malformed);
        }
    }
    let (Some(ak), Some(signed), Some(signature)) = (ak, signed, signature) else {
        return Err(AuthError::Malformed);
    };
    if !signature.bytes().all(|b| b.is_ascii_hexdigit()) || signature.len() != 64 {
        return Err(AuthError::Malformed);
    }
    let signed: Vec<&str> = signed.split(';').collect();
    let well_formed = signed.windows(2).all(|w| w[0] < w[1])
        && signed
            .iter()
            .all(|h| !h.is_empty() && *h == h.to_ascii_lowercase())
        && signed.contains(&"host")
        && signed.contains(&"x-sdk-date");
    if !well_formed {
        return Err(AuthError::SignedHeaders);
    }
    Ok(ParsedAuth {
        ak,
        signed,
        signature,
    })
}

/// A verified request: who sent it, and what a [`ReplayCache`] needs to remember it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The caller.
    pub tenant: Tenant,
    /// The raw signature (32 bytes).
    pub signature: [u8; 32],
    /// When the signature stops being accepted (its `X-Sdk-Date` plus the window).
    pub valid_until: DateTime<Utc>,
}

/// Verify `req` against `creds` at time `now`, allowing `window` of clock difference; the
/// body is always hashed.
///
/// # Errors
/// [`AuthError`]; every failure is a 401 `APIGW.0301`.
pub fn verify(
    creds: &Credentials,
    req: &SignedRequest<'_>,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Result<Tenant, AuthError> {
    verify_with(creds, req, now, window, PayloadPolicy::RequireHash).map(|v| v.tenant)
}

/// [`verify`] under a payload `policy`, returning what a replay check needs.
///
/// # Errors
/// As [`verify`].
pub fn verify_with(
    creds: &Credentials,
    req: &SignedRequest<'_>,
    now: DateTime<Utc>,
    window: TimeDelta,
    policy: PayloadPolicy,
) -> Result<Verified, AuthError> {
    let value = (req.header)("authorization").ok_or(AuthError::Malformed)?;
    let parsed = parse_authorization(&value)?;
    let date = (req.header)("x-sdk-date").ok_or(AuthError::BadDate)?;
    let at = NaiveDateTime::parse_from_str(&date, DATE_FORMAT)
        .map_err(|_| AuthError::BadDate)?
        .and_utc();
    let valid_until = at.checked_add_signed(window).ok_or(AuthError::BadDate)?;
    if (now - at).abs() > window {
        return Err(AuthError::Expired);
    }
    let canonical = canonical_request_with(req, &parsed.signed, policy)?;
    let sts = string_to_sign(&date, &canonical);
    let mut signature = [0u8; 32];
    hex::decode_to_slice(parsed.signature, &mut signature).map_err(|_| AuthError::Malformed)?;
    // An unknown key costs the same HMAC as a known one and gets the same answer.
    let cred = creds.get(parsed.ak);
    let mut mac = hmac(cred.map_or("", |c| c.sk.as_str()));
    mac.update(sts.as_bytes());
    // Constant-time comparison.
    let good = mac.verify_slice(&signature).is_ok();
    let Some(cred) = cred.filter(|_| good) else {
        return Err(if cred.is_none() {
            AuthError::UnknownKey
        } else {
            AuthError::BadSignature
        });
    };
    Ok(Verified {
        tenant: Tenant {
            domain_id: cred.domain_id.as_str().into(),
            project_id: cred.project_id.as_str().into(),
            ak: cred.ak.clone(),
            org_path: creds.org_path(&cred.domain_id).map(String::from),
        },
        signature,
        valid_until,
    })
}

/// Now as an `X-Sdk-Date` value.
pub fn sdk_date(now: DateTime<Utc>) -> String {
    now.format(DATE_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri("/v1/p/vpc-endpoints"), "/v1/p/vpc-endpoints/");
        assert_eq!(canonical_uri("/v1/p/x%2Fy/"), "/v1/p/x/y/");
        assert_eq!(canonical_uri("/v1/p/a%20b"), "/v1/p/a%20b/");
        assert_eq!(
            canonical_query(
                "status=available&endpoint_service_name=a%20b%2Bc%2F%C3%BC&limit=10&offset=0"
            ),
            "endpoint_service_name=a%20b%2Bc%2F%C3%BC&limit=10&offset=0&status=available"
        );
        assert_eq!(canonical_query("b=2&a&a=1"), "a=&a=1&b=2");
        assert_eq!(canonical_query("q=a+b"), "q=a%2Bb", "+ is not a space");
        assert_eq!(canonical_query(""), "");
        assert_eq!(
            query_string(&[("limit", "5".into()), ("name", "a b".into())]),
            "limit=5&name=a%20b"
        );
    }

    #[test]
    fn authorization_header_parsing() {
        let sig = "a".repeat(64);
        let ok =
            format!("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature={sig}");
        assert!(parse_authorization(&ok).is_ok());
        let compact =
            format!("SDK-HMAC-SHA256 Access=AK,SignedHeaders=host;x-sdk-date,Signature={sig}");
        assert!(parse_authorization(&compact).is_ok());
        for bad in [
            String::new(),
            format!("SDK-HMAC-SM3 Access=AK, SignedHeaders=host;x-sdk-date, Signature={sig}"),
            format!(
                "V11-HMAC-SHA256 Credential=AK, SignedHeaders=host;x-sdk-date, Signature={sig}"
            ),
            format!(
                "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature={}",
                "z".repeat(64)
            ),
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date".to_string(),
            format!(
                "SDK-HMAC-SHA256 Access=AK, Access=B, SignedHeaders=host;x-sdk-date, Signature={sig}"
            ),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
        for bad in [
            "x-sdk-date;host",
            "host",
            "Host;x-sdk-date",
            "content-type;x-sdk-date",
        ] {
            let v = format!("SDK-HMAC-SHA256 Access=AK, SignedHeaders={bad}, Signature={sig}");
            assert_eq!(
                parse_authorization(&v).err(),
                Some(AuthError::SignedHeaders),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_content_hash_header_must_match_the_body() {
        let body = b"{}";
        let good = sha256_hex(body);
        for (header, policy, want) in [
            (None, PayloadPolicy::RequireHash, Ok(good.clone())),
            (
                Some(good.clone()),
                PayloadPolicy::RequireHash,
                Ok(good.clone()),
            ),
            (
                Some(EMPTY_SHA256.into()),
                PayloadPolicy::RequireHash,
                Err(AuthError::PayloadHash),
            ),
            (
                Some(UNSIGNED_PAYLOAD.into()),
                PayloadPolicy::RequireHash,
                Err(AuthError::PayloadHash),
            ),
            (
                Some(UNSIGNED_PAYLOAD.into()),
                PayloadPolicy::AllowUnsigned,
                Ok(UNSIGNED_PAYLOAD.into()),
            ),
        ] {
            let lookup = |n: &str| {
                (n == "x-sdk-content-sha256")
                    .then(|| header.clone())
                    .flatten()
            };
            let req = SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                header: &lookup,
                body,
            };
            assert_eq!(payload_hash(&req, policy), want, "{header:?} {policy:?}");
        }
    }
}
