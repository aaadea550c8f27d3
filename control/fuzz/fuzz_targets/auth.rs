//! The signature checker over arbitrary requests: the input is cut into lines, the first
//! three being the method, the raw path and the raw query, then `name: value` headers up
//! to an empty line, then the body. The canonical forms and `verify` must answer (accept
//! or refuse) without panicking, whatever the bytes.
#![no_main]

use control::auth::{
    Credentials, SignedRequest, canonical_query, canonical_request, canonical_uri, query_pairs,
    verify,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().unwrap_or("");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let req = SignedRequest {
        method,
        path,
        query,
        header: &header,
        body: body.as_bytes(),
    };
    let _ = canonical_uri(path);
    let _ = canonical_query(query);
    let _ = query_pairs(query);
    let _ = canonical_request(&req, &["host", "x-sdk-date", "content-type"]);
    let creds = Credentials::from_toml(
        "[[credentials]]\nak = \"AKFUZZ\"\nsk = \"secret\"\ndomain_id = \"d\"\nproject_id = \"p\"\n",
    )
    .expect("valid credentials");
    let now = chrono::DateTime::from_timestamp(1_764_460_800, 0).expect("a valid time");
    let _ = verify(&creds, &req, now, chrono::TimeDelta::minutes(15));
});
