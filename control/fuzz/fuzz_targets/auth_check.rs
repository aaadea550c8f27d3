//! The check behind the `auth` fuzz target, shared with `control/tests/suite/fuzz_replay.rs`.
//!
//! The input is a request in a small text form: `METHOD\nPATH\nQUERY\n`, then header lines
//! `name:value`, a blank line, and the body. The canonical-request builder and the verifier
//! (which parses the `Authorization` header) run over it. Neither may panic, and a request
//! verifies only as the one credential there is. Then the same request is signed with that
//! credential and must verify, unless its date is unusable or its content hash header lies.

use chrono::{TimeDelta, TimeZone, Utc};
use control::auth::{
    self, Credential, Credentials, PayloadPolicy, SignedRequest, authorization, verify_with,
};

/// Run the check on `data`.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().unwrap_or("");
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let creds = Credentials::from_list(vec![Credential {
        ak: "AK".into(),
        sk: "SK".into(),
        domain_id: "d".into(),
        project_id: "p".into(),
    }])
    .expect("one valid credential");
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date");
    let window = TimeDelta::minutes(15);
    let run = |headers: &[(String, String)]| {
        let lookup = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let req = SignedRequest {
            method,
            path,
            query,
            header: &lookup,
            body: body.as_bytes(),
        };
        let mut names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let _ = auth::canonical_request(&req, &names);
        for policy in [PayloadPolicy::RequireHash, PayloadPolicy::AllowUnsigned] {
            if let Ok(v) = verify_with(&creds, &req, now, window, policy) {
                assert_eq!(v.tenant.ak, "AK", "only the one credential can verify");
            }
        }
        let signed: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| *n != "authorization")
            .collect();
        authorization(&req, &signed, "AK", "SK").ok()
    };
    let Some(authz) = run(&headers) else {
        return;
    };
    // Signed by the credential: it verifies, unless the inputs themselves are unusable.
    headers.retain(|(k, _)| k != "authorization");
    headers.push(("authorization".into(), authz));
    let lookup = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let req = SignedRequest {
        method,
        path,
        query,
        header: &lookup,
        body: body.as_bytes(),
    };
    let date_ok = lookup("x-sdk-date").is_some_and(|d| {
        chrono::NaiveDateTime::parse_from_str(&d, auth::DATE_FORMAT)
            .is_ok_and(|t| (now - t.and_utc()).abs() <= window)
    });
    let hash_ok = auth::payload_hash(&req, PayloadPolicy::AllowUnsigned).is_ok();
    let names_ok = headers.iter().any(|(k, _)| k == "host")
        && headers.iter().all(|(k, v)| {
            !k.is_empty()
                && !k.contains([',', ';', '='])
                && !k.contains(char::is_whitespace)
                && !v.contains(['\n'])
        })
        && {
            let mut ks: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
            let n = ks.len();
            ks.sort_unstable();
            ks.dedup();
            ks.len() == n
        };
    if date_ok && hash_ok && names_ok {
        let r = verify_with(&creds, &req, now, window, PayloadPolicy::AllowUnsigned);
        assert!(
            r.is_ok(),
            "a request signed with the credential must verify: {r:?}"
        );
    }
}
