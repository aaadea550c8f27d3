//! The authentication middleware: every request is verified before routing.
//!
//! A request carries either an SDK-HMAC-SHA256 signature (`Authorization`) or a console
//! session's token (`X-Auth-Token`, from `POST /v3/auth/tokens`: [`super::tokens`]); a
//! token stands for its user's project, as an IAM token does, and the same project, rate
//! and audit rules follow. What follows is about signatures.
//!
//! The body is read (bounded by [`MAX_BODY`]), the SDK-HMAC-SHA256 signature is verified
//! against the raw request target, headers and body, and `X-Project-Id` and the
//! credential's project must both match the `{project_id}` of the path. The caller's
//! [`Tenant`] then rides in the request's extensions.
//!
//! Before the signature: a request with two `Authorization`, `X-Sdk-Date`, `X-Project-Id`,
//! `Host` or `X-Sdk-Content-Sha256` headers is refused (which one counts would be a guess),
//! and so is one where any signed header repeats. After it: a write (any method but GET and
//! HEAD) must carry a signature not seen before inside its date window ([`ReplayCache`]:
//! in this process and in the store, so by no node of a cluster and not before a restart);
//! a write that is refused (any status but 2xx) releases its signature, so a client's
//! identical retry within the same second works, and a signature makes at most one
//! successful write.
//! Reads are not checked: the SDK legitimately repeats an identical GET within a second
//! (same date, same signature), and replaying a read changes nothing. The one read sent as
//! a POST, the tag API's `.../resource_instances/action` query, counts as a read
//! (`is_write`), for the replay cache and for the audit log alike.
//!
//! [`ReplayCache`]: crate::auth::ReplayCache

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::{ApiState, MAX_BODY};
use crate::audit::{AuditEntry, AuditLog};
use crate::auth::{self, AuthError, ReplayError, SignedRequest, Verified};
use crate::error::ErrorCode;
use crate::model::Tenant;

/// Headers that must appear at most once: the signature, its date, the project and the
/// host it covers, and the payload hash.
const SINGLE_HEADERS: [&str; 5] = [
    "authorization",
    "host",
    "x-project-id",
    "x-sdk-content-sha256",
    "x-sdk-date",
];

/// The project id of a `/v1/{project_id}/...` or `/v2/...` path, still encoded.
fn path_project(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("v1" | "v2"), Some(p)) if !p.is_empty() => Some(p),
        _ => None,
    }
}

/// Verify a buffered request: signature, then the path's project against `X-Project-Id`
/// and the credential.
///
/// Returns the caller and, for a write, its signature as admitted to the replay cache.
fn check(
    state: &ApiState,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<(Tenant, Option<Verified>), ApiError> {
    let headers: &HeaderMap = &parts.headers;
    let auth_failed = |e: AuthError| {
        metrics::counter!("vpcep_api_auth_failures_total").increment(1);
        ApiError::new(ErrorCode::AuthFailed, e.to_string())
    };
    for name in SINGLE_HEADERS {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(auth_failed(AuthError::DuplicateHeader(name)));
        }
    }
    // A repeated signed header reads as absent, so the signature cannot verify.
    let lookup = |name: &str| {
        let mut all = headers.get_all(name).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        Some(String::from_utf8_lossy(first.as_bytes()).into_owned())
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path,
        query,
        header: &lookup,
        body: bytes,
    };
    let now = chrono::Utc::now();
    let verified = auth::verify_with(
        &state.credentials.load(),
        &signed,
        now,
        state.window,
        state.payload,
    )
    .map_err(auth_failed)?;
    // The rate is charged before the replay cache, so a throttled write (which the SDK
    // retries, signed anew) has not used up its signature.
    if !state.rate.admit(verified.tenant.project_id.as_str()) {
        metrics::counter!("vpcep_api_throttled_total").increment(1);
        return Err(ApiError::new(
            ErrorCode::Throttled,
            "The number of requests exceeded the limit. Please try later.",
        ));
    }
    let tenant = verified.tenant.clone();
    check_project(&tenant, path, lookup("x-project-id").as_deref(), true)?;
    let write = is_write(&parts.method, parts.uri.path());
    Ok((tenant, write.then_some(verified)))
}

/// The path's project must be the caller's, and `X-Project-Id` must name it (a signed
/// request must send it, `required`; a token's may leave it out).
fn check_project(
    tenant: &Tenant,
    path: &str,
    header: Option<&str>,
    required: bool,
) -> Result<(), ApiError> {
    let Some(project) = path_project(path) else {
        return Ok(());
    };
    let project = percent_decode_str(project).decode_utf8_lossy();
    if header.map_or(required, |h| h != project) {
        return Err(ApiError::new(
            ErrorCode::InvalidProjectId,
            "Invalid project ID: X-Project-Id does not match the path.",
        ));
    }
    if tenant.project_id != *project {
        return Err(ApiError::new(
            ErrorCode::NoPermission,
            "Authentication information is incorrect or you have no permissions for this project.",
        ));
    }
    Ok(())
}

/// Verify a request that carries a console session's token instead of a signature.
async fn check_token(
    state: &ApiState,
    parts: &axum::http::request::Parts,
) -> Result<Tenant, ApiError> {
    let headers = &parts.headers;
    let single = |name: &'static str| -> Result<Option<String>, ApiError> {
        let mut all = headers.get_all(name).iter();
        let first = all.next();
        if all.next().is_some() {
            metrics::counter!("vpcep_api_auth_failures_total").increment(1);
            return Err(ApiError::new(
                ErrorCode::AuthFailed,
                AuthError::DuplicateHeader(name).to_string(),
            ));
        }
        Ok(first.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
    };
    let token = single("x-auth-token")?.unwrap_or_default();
    let project_header = single("x-project-id")?;
    let session = super::tokens::check_token(state, &token).await?;
    if !state.rate.admit(&session.project_id) {
        metrics::counter!("vpcep_api_throttled_total").increment(1);
        return Err(ApiError::new(
            ErrorCode::Throttled,
            "The number of requests exceeded the limit. Please try later.",
        ));
    }
    let tenant = Tenant {
        domain_id: session.domain_id.as_str().into(),
        project_id: session.project_id.as_str().into(),
        ak: format!("user:{}", session.user),
        org_path: state
            .credentials
            .load()
            .org_path(&session.domain_id)
            .map(String::from),
    };
    check_project(&tenant, parts.uri.path(), project_header.as_deref(), false)?;
    Ok(tenant)
}

/// Admit a verified write's signature to the replay cache, last, so that a request refused
/// before has not used up its signature. On the blocking pool: the cache may ask the store
/// (an etcd round trip, a redb fsync).
async fn admit(state: &ApiState, verified: Verified) -> Result<(), ApiError> {
    let replay = std::sync::Arc::clone(&state.replay);
    let admitted =
        tokio::task::spawn_blocking(move || replay.admit(&verified, chrono::Utc::now())).await;
    match admitted {
        Ok(Ok(())) => Ok(()),
        Ok(Err(ReplayError::Replayed)) => {
            metrics::counter!("vpcep_api_auth_failures_total").increment(1);
            metrics::counter!("vpcep_api_replays_refused_total").increment(1);
            Err(ApiError::new(
                ErrorCode::AuthFailed,
                AuthError::Replayed.to_string(),
            ))
        }
        Ok(Err(ReplayError::Full)) => {
            metrics::counter!("vpcep_api_replay_cache_full_total").increment(1);
            Err(ApiError::new(
                ErrorCode::Throttled,
                "The number of requests exceeded the limit. Please try later.",
            ))
        }
        Ok(Err(ReplayError::Unavailable)) => {
            metrics::counter!("vpcep_api_replay_store_failures_total").increment(1);
            Err(ApiError(crate::error::Rejection::store_unavailable()))
        }
        Ok(Err(ReplayError::StoreFailed)) => {
            metrics::counter!("vpcep_api_replay_store_failures_total").increment(1);
            Err(ApiError::new(
                ErrorCode::System,
                "System error. Please retry.",
            ))
        }
        Err(e) => Err(ApiError::new(
            ErrorCode::System,
            format!("the replay check failed: {e}"),
        )),
    }
}

/// Authenticate every request; on success the [`Tenant`] is in the request's extensions.
pub async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let (mut parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, MAX_BODY))
        .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("The request body exceeds {MAX_BODY} bytes."),
            )
            .into_response_with_id(&request_id);
        }
        Err(_) => {
            metrics::counter!("vpcep_api_body_timeouts_total").increment(1);
            let mut resp = ApiError::new(
                ErrorCode::Parameter,
                format!(
                    "The request body did not arrive within {} s.",
                    state.body_timeout.as_secs()
                ),
            )
            .into_response_with_id(&request_id);
            // The rest of the body is not read: the connection cannot be reused.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    // Writes of an authenticated caller are audited: (who, operation).
    let by_token = parts.headers.contains_key("x-auth-token")
        && !parts.headers.contains_key(header::AUTHORIZATION);
    let checked = if by_token {
        check_token(&state, &parts).await.map(|t| (t, None))
    } else {
        check(&state, &parts, &bytes)
    };
    let checked = match checked {
        Ok((tenant, Some(verified))) => admit(&state, verified.clone())
            .await
            .map(|()| (tenant, Some(verified))),
        other => other,
    };
    let (audit, admitted) = match checked {
        Ok((tenant, admitted)) => {
            parts.extensions.insert(tenant.clone());
            let audit = is_write(&parts.method, parts.uri.path())
                .then(|| (tenant, format!("{} {}", parts.method, parts.uri.path())));
            (audit, admitted)
        }
        Err(e) => {
            let throttled = e.0.code == ErrorCode::Throttled;
            let mut resp = e.into_response_with_id(&request_id);
            if throttled {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return resp;
        }
    };
    metrics::counter!("vpcep_api_requests_total").increment(1);
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Some(v) = admitted.filter(|_| !resp.status().is_success()) {
        // A refused write changed nothing: its signature may be used again (released
        // before the answer goes, so the client's retry finds it free).
        let replay = std::sync::Arc::clone(&state.replay);
        let _ = tokio::task::spawn_blocking(move || replay.release(&v)).await;
    }
    if !resp.headers().contains_key("x-request-id")
        && let Ok(v) = request_id.parse()
    {
        resp.headers_mut().insert("x-request-id", v);
    }
    match (audit, &state.audit) {
        (Some((tenant, operation)), Some(log)) => record(log, tenant, operation, resp).await,
        _ => resp,
    }
}

/// True if a request may change something: any method but GET and HEAD, except the tag
/// API's query (`POST .../resource_instances/action`), which only reads.
fn is_write(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD) && !path.ends_with("/resource_instances/action")
}

/// Record a write's answer in the audit log; the answer goes out unchanged.
async fn record(log: &AuditLog, tenant: Tenant, operation: String, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    // Answers to writes are small JSON documents; one that is not is sent as is, unread.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        tracing::warn!(%operation, "audit: the answer could not be read back");
        return Response::from_parts(parts, Body::empty());
    };
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let result = parts
        .extensions
        .get::<ErrorCode>()
        .map_or("OK", |c| c.as_str());
    let path_id = operation
        .split(' ')
        .nth(1)
        .and_then(|p| p.trim_start_matches('/').split('/').nth(3))
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned());
    let body_id = || {
        let id = |v: &serde_json::Value| v.get("id").and_then(|i| i.as_str()).map(String::from);
        id(&json).or_else(|| json.as_object()?.values().find_map(id))
    };
    let entry = AuditEntry {
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        domain_id: tenant.domain_id.to_string(),
        project_id: tenant.project_id.to_string(),
        ak: tenant.ak,
        resource_id: path_id.or_else(body_id),
        operation,
        status: parts.status.as_u16(),
        result: result.to_string(),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    };
    if let Err(e) = log.record(&entry) {
        metrics::counter!("vpcep_audit_write_failures_total").increment(1);
        tracing::warn!(error = %e, "audit: cannot write the log");
    }
    Response::from_parts(parts, Body::from(bytes))
}
