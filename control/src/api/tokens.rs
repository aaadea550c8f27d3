//! Sign-in for the console, in the shape of Huawei IAM's token API (`/v3/auth/tokens`):
//!
//! - `POST` with a user name and password (and optionally the account) opens a session:
//!   `201`, the token in `X-Subject-Token`, the session in the body;
//! - `GET` with `X-Auth-Token` and `X-Subject-Token` describes a valid token;
//! - `DELETE` with the same headers ends the session, on every node.
//!
//! The token then authenticates API calls as `X-Auth-Token`, with the tenancy of the user's
//! project ([`super::auth`]). Sessions are claims in the store ([`crate::auth::session`]).
//! Failed sign-ins are limited per user name and per source address ([`SignInLimit`]),
//! counted, and written to the audit log with the user name and the
//! source address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::ApiError;
use crate::audit::AuditEntry;
use crate::auth::Claims as _;
use crate::auth::session::{self, Session};
use crate::error::ErrorCode;

/// Largest sign-in body.
const MAX_SIGN_IN: usize = 16 * 1024;
/// The answer to a wrong name or password, whichever it was.
const WRONG: &str = "Incorrect IAM authentication information: the user name or password is wrong.";

/// Failed sign-ins allowed per user name and per source address: `max` in a `window`;
/// past it, every try is refused (429, before the password is checked) until the window
/// that began with the first failure ends. A success does not reset the count. Keys are
/// bounded: past [`SignInLimit::KEYS`] of a kind, windows that ended are forgotten, and if
/// none has, the oldest.
#[derive(Debug)]
pub struct SignInLimit {
    max: u32,
    window: Duration,
    by_user: Mutex<HashMap<String, (u32, Instant)>>,
    by_source: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl SignInLimit {
    /// Keys of each kind kept at most.
    pub const KEYS: usize = 4096;

    /// `max` failures per user and per source in each `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            by_user: Mutex::new(HashMap::new()),
            by_source: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` from `source` may try now.
    fn open(&self, user: &str, source: IpAddr, now: Instant) -> bool {
        let open = |m: Option<&(u32, Instant)>| {
            m.is_none_or(|(n, first)| *n < self.max || now.duration_since(*first) >= self.window)
        };
        open(lock(&self.by_user).get(user)) && open(lock(&self.by_source).get(&source))
    }

    /// Count a failed sign-in of `user` from `source`.
    fn failed(&self, user: &str, source: IpAddr, now: Instant) {
        count(&mut lock(&self.by_user), user.to_string(), now, self.window);
        count(&mut lock(&self.by_source), source, now, self.window);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One more failure for `key` in its window (a new window if the last one ended).
fn count<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, (u32, Instant)>,
    key: K,
    now: Instant,
    window: Duration,
) {
    if map.len() >= SignInLimit::KEYS && !map.contains_key(&key) {
        map.retain(|_, (_, first)| now.duration_since(*first) < window);
        if map.len() >= SignInLimit::KEYS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, first))| *first)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let e = map.entry(key).or_insert((0, now));
    if now.duration_since(e.1) >= window {
        *e = (0, now);
    }
    e.0 = e.0.saturating_add(1);
}

impl Default for SignInLimit {
    /// 5 failures a minute.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

/// The IAM request body (the parts vpcep reads).
#[derive(Debug, Deserialize)]
struct SignIn {
    auth: AuthBody,
}

#[derive(Debug, Deserialize)]
struct AuthBody {
    identity: Identity,
    #[serde(default)]
    scope: Option<Scope>,
}

#[derive(Debug, Deserialize)]
struct Identity {
    methods: Vec<String>,
    password: Option<PasswordMethod>,
}

#[derive(Debug, Deserialize)]
struct PasswordMethod {
    user: UserRef,
}

#[derive(Debug, Deserialize)]
struct UserRef {
    name: String,
    password: String,
    #[serde(default)]
    domain: Option<NameOrId>,
}

#[derive(Debug, Default, Deserialize)]
struct NameOrId {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Scope {
    #[serde(default)]
    project: Option<NameOrId>,
}

/// The token body: who and until when.
#[derive(Debug, Serialize)]
struct TokenView {
    token: TokenBody,
}

#[derive(Debug, Serialize)]
struct TokenBody {
    methods: [&'static str; 1],
    issued_at: String,
    expires_at: String,
    user: UserView,
    project: ProjectView,
}

#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    domain: DomainView,
}

#[derive(Debug, Serialize)]
struct DomainView {
    id: String,
    name: String,
}

#[derive(Debug, Serialize)]
struct ProjectView {
    id: String,
    name: String,
}

fn rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn view(s: &Session) -> TokenView {
    TokenView {
        token: TokenBody {
            methods: ["password"],
            issued_at: rfc3339(s.issued_at),
            expires_at: rfc3339(s.expires_at),
            user: UserView {
                name: s.user.clone(),
                domain: DomainView {
                    id: s.domain_id.clone(),
                    name: s.domain_id.clone(),
                },
            },
            project: ProjectView {
                id: s.project_id.clone(),
                name: s.project_id.clone(),
            },
        },
    }
}

/// The source address of a request (the listener puts it there).
fn source(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// Write a sign-in's outcome to the audit log.
fn audit(
    s: &ApiState,
    who: Option<(&str, &str)>,
    user: &str,
    from: IpAddr,
    status: StatusCode,
    result: &str,
    request_id: &str,
) {
    let Some(log) = &s.audit else { return };
    let (domain_id, project_id) = who.unwrap_or(("", ""));
    let entry = AuditEntry {
        at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        domain_id: domain_id.to_string(),
        project_id: project_id.to_string(),
        ak: format!("user:{user}@{from}"),
        operation: "POST /v3/auth/tokens".to_string(),
        resource_id: None,
        status: status.as_u16(),
        result: result.to_string(),
        request_id: request_id.to_string(),
    };
    if let Err(e) = log.record(&entry) {
        metrics::counter!("vpcep_audit_write_failures_total").increment(1);
        tracing::warn!(error = %e, "audit: cannot write the log");
    }
}

/// Headers every answer of this API carries (no cache: a token must not be stored).
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `POST /v3/auth/tokens`: sign in.
pub async fn create(State(s): State<ApiState>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let from = source(&req);
    let fail = |code: ErrorCode, msg: &str| {
        secure(ApiError::new(code, msg).into_response_with_id(&request_id))
    };
    let bytes = match tokio::time::timeout(
        s.body_timeout,
        axum::body::to_bytes(req.into_body(), MAX_SIGN_IN),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return fail(ErrorCode::BodyTooLarge, "The sign-in body is too large."),
        Err(_) => {
            return fail(
                ErrorCode::Parameter,
                "The request body did not arrive in time.",
            );
        }
    };
    let body: SignIn = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return fail(ErrorCode::Parameter, &format!("invalid sign-in body: {e}")),
    };
    let Some(password) = body
        .auth
        .identity
        .password
        .filter(|_| body.auth.identity.methods.iter().any(|m| m == "password"))
    else {
        return fail(
            ErrorCode::Parameter,
            "Only the password method is supported: auth.identity.methods [\"password\"].",
        );
    };
    let name = password.user.name;
    if !s.sign_in.open(&name, from, Instant::now()) {
        metrics::counter!("vpcep_console_sign_in_throttled_total").increment(1);
        audit(
            &s,
            None,
            &name,
            from,
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Throttled.as_str(),
            &request_id,
        );
        let mut resp = fail(
            ErrorCode::Throttled,
            "Too many failed sign-ins for this user or from this address. Please try later.",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("12"));
        return resp;
    }
    let domain = password.user.domain.unwrap_or_default();
    let credentials = s.credentials.load_full();
    // The account, by id or by name (an account's name is its id here).
    let account = domain.id.or(domain.name);
    let user = credentials.user(&name, account.as_deref()).cloned();
    let wanted_project = body
        .auth
        .scope
        .and_then(|sc| sc.project)
        .and_then(|p| p.id.or(p.name));
    let secret = password.user.password;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched =
        tokio::task::spawn_blocking(move || session::verify_password(hash.as_deref(), &secret))
            .await
            .unwrap_or(false);
    let user = match user {
        Some(u) if matched && wanted_project.as_ref().is_none_or(|p| *p == u.project_id) => u,
        other => {
            s.sign_in.failed(&name, from, Instant::now());
            metrics::counter!("vpcep_console_sign_in_failures_total").increment(1);
            let who = other
                .as_ref()
                .map(|u| (u.domain_id.as_str(), u.project_id.as_str()));
            audit(
                &s,
                who,
                &name,
                from,
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthFailed.as_str(),
                &request_id,
            );
            return fail(ErrorCode::AuthFailed, WRONG);
        }
    };
    let now = Utc::now().timestamp();
    let ttl = s.session_ttl;
    let sess = Session {
        user: user.name.clone(),
        domain_id: user.domain_id.clone(),
        project_id: user.project_id.clone(),
        issued_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    };
    let token = session::mint(&sess);
    let registry = Arc::clone(&s.registry);
    let key = session::claim_key(&token);
    let claimed = tokio::task::spawn_blocking(move || registry.claim(&key, ttl)).await;
    match claimed {
        Ok(Ok(true)) => {}
        Ok(Err(e)) if e.is_unavailable() => {
            return secure(
                ApiError(crate::error::Rejection::store_unavailable())
                    .into_response_with_id(&request_id),
            );
        }
        _ => return fail(ErrorCode::System, "System error. Please retry."),
    }
    metrics::counter!("vpcep_console_sign_ins_total").increment(1);
    audit(
        &s,
        Some((&sess.domain_id, &sess.project_id)),
        &name,
        from,
        StatusCode::CREATED,
        "OK",
        &request_id,
    );
    let mut resp = (StatusCode::CREATED, axum::Json(view(&sess))).into_response();
    if let Ok(v) = HeaderValue::from_str(&token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    secure(resp)
}

/// The session of a valid token: well formed, before its end, and its claim held.
///
/// # Errors
/// [`ErrorCode::AuthFailed`] if it is not valid, [`ErrorCode::StoreUnavailable`] if the
/// store cannot say.
pub async fn check_token(s: &ApiState, token: &str) -> Result<Session, ApiError> {
    let invalid = || {
        metrics::counter!("vpcep_api_auth_failures_total").increment(1);
        ApiError::new(
            ErrorCode::AuthFailed,
            "Incorrect IAM authentication information: the token is invalid or has expired.",
        )
    };
    let sess = session::parse(token).ok_or_else(invalid)?;
    if sess.expires_at <= Utc::now().timestamp() {
        return Err(invalid());
    }
    // A user removed from the credentials file (and reloaded) has no session left.
    if s.credentials
        .load()
        .user(&sess.user, Some(&sess.domain_id))
        .is_none_or(|u| u.project_id != sess.project_id)
    {
        return Err(invalid());
    }
    let registry = Arc::clone(&s.registry);
    let key = session::claim_key(token);
    match tokio::task::spawn_blocking(move || registry.held(&key)).await {
        Ok(Ok(true)) => Ok(sess),
        Ok(Ok(false)) => Err(invalid()),
        Ok(Err(e)) if e.is_unavailable() => {
            Err(ApiError(crate::error::Rejection::store_unavailable()))
        }
        _ => Err(ApiError::new(
            ErrorCode::System,
            "System error. Please retry.",
        )),
    }
}

/// The `X-Auth-Token` and `X-Subject-Token` of a request, both valid, and the subject's.
async fn subject(s: &ApiState, headers: &HeaderMap) -> Result<(String, Session), ApiError> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::AuthFailed,
                    format!("Incorrect IAM authentication information: {name} is required."),
                )
            })
    };
    let caller = check_token(s, &get("x-auth-token")?).await?;
    let token = get("x-subject-token")?;
    let sess = check_token(s, &token).await?;
    if (&sess.user, &sess.domain_id) != (&caller.user, &caller.domain_id) {
        return Err(ApiError::new(
            ErrorCode::NoPermission,
            "A user may only see or end its own sessions.",
        ));
    }
    Ok((token, sess))
}

/// `GET /v3/auth/tokens`: describe a valid token.
pub async fn show(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    match subject(&s, &headers).await {
        Ok((_, sess)) => secure((StatusCode::OK, axum::Json(view(&sess))).into_response()),
        Err(e) => secure(e.into_response()),
    }
}

/// `DELETE /v3/auth/tokens`: sign out (the session ends on every node).
pub async fn delete(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    let (token, sess) = match subject(&s, &headers).await {
        Ok(t) => t,
        Err(e) => return secure(e.into_response()),
    };
    let registry = Arc::clone(&s.registry);
    let key = session::claim_key(&token);
    match tokio::task::spawn_blocking(move || registry.unclaim(&key)).await {
        Ok(Ok(())) => {
            metrics::counter!("vpcep_console_sign_outs_total").increment(1);
            tracing::debug!(user = %sess.user, "signed out");
            secure(StatusCode::NO_CONTENT.into_response())
        }
        Ok(Err(e)) if e.is_unavailable() => {
            secure(ApiError(crate::error::Rejection::store_unavailable()).into_response())
        }
        _ => {
            secure(ApiError::new(ErrorCode::System, "System error. Please retry.").into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_close_a_user_and_a_source_for_their_window() {
        let limit = SignInLimit::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(limit.open("alice", a, t0));
            limit.failed("alice", a, t0);
        }
        assert!(
            !limit.open("alice", a, t0),
            "the user's and the source's count"
        );
        assert!(!limit.open("alice", b, t0), "the user's, from anywhere");
        assert!(!limit.open("bob", a, t0), "the source's, for anyone");
        assert!(limit.open("bob", b, t0));
        let later = t0 + Duration::from_secs(60);
        assert!(limit.open("alice", a, later), "the window ended");
        limit.failed("alice", a, later);
        assert!(limit.open("alice", a, later), "a new window");
    }

    #[test]
    fn the_keys_are_bounded() {
        let limit = SignInLimit::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(SignInLimit::KEYS + 10) {
            limit.failed(&format!("u{i}"), IpAddr::from([10, 0, 0, 1]), t0);
        }
        assert_eq!(lock(&limit.by_user).len(), SignInLimit::KEYS);
    }
}
