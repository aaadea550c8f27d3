//! The authentication middleware: every request is verified before routing.
//!
//! The body is read (bounded by [`MAX_BODY`]), the SDK-HMAC-SHA256 signature is verified
//! against the raw request target, headers and body, and `X-Project-Id` and the
//! credential's project must both match the `{project_id}` of the path. The caller's
//! [`Tenant`] then rides in the request's extensions.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use super::{ApiState, MAX_BODY};
use crate::auth::{self, SignedRequest};
use crate::error::ErrorCode;
use crate::model::Tenant;

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
fn check(
    state: &ApiState,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<Tenant, ApiError> {
    let headers: &HeaderMap = &parts.headers;
    let lookup = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
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
    let tenant = auth::verify(
        &state.credentials,
        &signed,
        chrono::Utc::now(),
        state.window,
    )
    .map_err(|e| {
        metrics::counter!("vpcep_api_auth_failures_total").increment(1);
        ApiError::new(ErrorCode::AuthFailed, e.to_string())
    })?;
    if let Some(project) = path_project(path) {
        let project = percent_decode_str(project).decode_utf8_lossy();
        if lookup("x-project-id").as_deref() != Some(&*project) {
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
    }
    Ok(tenant)
}

/// Authenticate every request; on success the [`Tenant`] is in the request's extensions.
pub async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("The request body exceeds {MAX_BODY} bytes."),
        )
        .into_response_with_id(&request_id);
    };
    match check(&state, &parts, &bytes) {
        Ok(tenant) => {
            parts.extensions.insert(tenant);
        }
        Err(e) => return e.into_response_with_id(&request_id),
    }
    metrics::counter!("vpcep_api_requests_total").increment(1);
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !resp.headers().contains_key("x-request-id")
        && let Ok(v) = request_id.parse()
    {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
