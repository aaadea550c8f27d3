//! A signing VPCEP API client (blocking), used by `vpcepctl`, the tests and the benchmarks.
//! It signs like the official SDK: SDK-HMAC-SHA256 over content-type, host, x-project-id
//! and x-sdk-date, with the query sorted and RFC 3986-encoded; it also signs a random
//! `X-Request-Nonce`, so no two of its signatures are equal (see the replay cache).
//!
//! Bodies are the typed wire bodies of [`crate::requests`] ([`Client::send`]); raw JSON
//! ([`Client::raw`], [`Client::call`]) is for tests that probe the wire format itself.

use serde::Serialize;
use serde_json::Value;

use crate::auth::{self, AuthError, SignedRequest};

/// An API error as the server sent it, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{code}: {msg} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// `error_code`.
        code: String,
        /// `error_msg`.
        msg: String,
    },
    /// The request could not be sent or the answer read.
    #[error("request to {url} failed: {source}")]
    Transport {
        /// Where it went.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The request could not be signed (a header value the signer refuses).
    #[error("cannot sign the request: {0}")]
    Sign(#[from] AuthError),
    /// The body could not be encoded.
    #[error("cannot encode the body: {0}")]
    Encode(#[from] serde_json::Error),
    /// Not GET, POST, PUT or DELETE.
    #[error("unsupported method {0}")]
    Method(String),
}

/// A client for one tenant.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    host: String,
    ak: String,
    sk: String,
    project_id: String,
    agent: ureq::Agent,
}

/// Percent-encode one path segment the way the SDK does (`quote(v, safe='')`: only
/// `A-Z a-z 0-9 - . _ ~` stay bare).
pub fn segment(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

impl Client {
    /// A client for `endpoint` (`http://host:port`) signing with `ak`/`sk` for `project_id`.
    pub fn new(endpoint: &str, ak: &str, sk: &str, project_id: &str) -> Self {
        let base = endpoint.trim_end_matches('/').to_string();
        let host = base
            .split_once("://")
            .map_or(base.as_str(), |(_, h)| h)
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Self {
            base,
            host,
            ak: ak.into(),
            sk: sk.into(),
            project_id: project_id.into(),
            agent,
        }
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `/v1/{project_id}` + `rest`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/{}{rest}", segment(&self.project_id))
    }

    /// Send a signed request; `query` pairs are unencoded. Returns the status and the JSON
    /// body (`Null` when empty).
    ///
    /// # Errors
    /// [`ClientError`] if nothing came back.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        self.raw_with_id(method, path, query, body)
            .map(|(status, json, _)| (status, json))
    }

    /// Like [`Client::raw`], and also the answer's `X-Request-Id` (the id of its audit entry
    /// and of the daemon's log lines about it).
    ///
    /// # Errors
    /// [`ClientError`] if nothing came back.
    pub fn raw_with_id(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(u16, Value, Option<String>), ClientError> {
        self.exchange(
            method,
            path,
            query,
            body.map(|b| b.to_string().into_bytes()),
        )
    }

    /// Send `body` (a typed wire body) and expect success, like [`Client::call`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn send<B: Serialize + ?Sized>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> Result<Value, ClientError> {
        let bytes = serde_json::to_vec(body)?;
        let (status, json, _) = self.exchange(method, path, &[], Some(bytes))?;
        Self::check(status, json)
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value, Option<String>), ClientError> {
        let query = auth::query_string(query);
        let has_body = body.is_some();
        let body_bytes = body.unwrap_or_default();
        let content_type = if has_body {
            "application/json;charset=utf-8"
        } else {
            "application/json"
        };
        let date = auth::sdk_date(chrono::Utc::now());
        // A signed nonce makes every signature unique, so two identical writes within one
        // second are not taken for a replay (the server refuses a write signature twice).
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let headers = [
            ("content-type", content_type),
            ("host", self.host.as_str()),
            ("x-project-id", self.project_id.as_str()),
            ("x-request-nonce", nonce.as_str()),
            ("x-sdk-date", date.as_str()),
        ];
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        };
        let req = SignedRequest {
            method,
            path,
            query: &query,
            header: &lookup,
            body: &body_bytes,
        };
        let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        let authorization = auth::authorization(&req, &signed, &self.ak, &self.sk)?;
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let t = |e: ureq::Error| ClientError::Transport {
            url: url.clone(),
            source: Box::new(e),
        };
        macro_rules! headers {
            ($b:expr) => {
                $b.header("Content-Type", content_type)
                    .header("X-Project-Id", &self.project_id)
                    .header("X-Request-Nonce", &nonce)
                    .header("X-Sdk-Date", &date)
                    .header("Authorization", &authorization)
            };
        }
        let resp = match method {
            "GET" => headers!(self.agent.get(&url)).call().map_err(t)?,
            "DELETE" => headers!(self.agent.delete(&url)).call().map_err(t)?,
            "POST" => headers!(self.agent.post(&url))
                .send(&body_bytes[..])
                .map_err(t)?,
            "PUT" => headers!(self.agent.put(&url))
                .send(&body_bytes[..])
                .map_err(t)?,
            other => return Err(ClientError::Method(other.to_string())),
        };
        let status = resp.status().as_u16();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text = resp.into_body().read_to_string().map_err(t)?;
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, json, request_id))
    }

    /// Like [`Client::raw`], but an error status becomes [`ClientError::Api`].
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, json) = self.raw(method, path, query, body)?;
        Self::check(status, json)
    }

    fn check(status: u16, json: Value) -> Result<Value, ClientError> {
        if status >= 400 {
            return Err(ClientError::Api {
                status,
                code: json["error_code"].as_str().unwrap_or("").to_string(),
                msg: json["error_msg"]
                    .as_str()
                    .map_or_else(|| json.to_string(), str::to_string),
            });
        }
        Ok(json)
    }
}
