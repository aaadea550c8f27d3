//! API errors and their single mapping to HTTP.
//!
//! Every failure is an [`ErrorCode`] of the VPCEP API (API.md section 8) and a message; the
//! body is `{"error_code","error_msg","request_id"}` and the `X-Request-Id` header carries
//! the same id. [`status`] is the one place that maps a code to a status, by an exhaustive
//! match: a new code does not compile until it has a status.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ErrorCode, Rejection};

tokio::task_local! {
    /// The id of the API request this task serves (set by [`super::auth::authenticate`]
    /// around the rest of the request), so that an error a handler returns answers with the
    /// same `X-Request-Id` as the request's audit entry and log lines.
    pub static REQUEST_ID: String;
}

/// The HTTP status of `code`.
pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        AuthFailed => StatusCode::UNAUTHORIZED,
        NoPermission => StatusCode::FORBIDDEN,
        NotFound | EndpointNotFound | ApiNotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        System => StatusCode::INTERNAL_SERVER_ERROR,
        BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Throttled => StatusCode::TOO_MANY_REQUESTS,
        StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Parameter
        | InvalidLimit
        | InvalidAction
        | InvalidOffset
        | InvalidProjectId
        | BatchLimit
        | InvalidSortKey
        | InvalidSortDir
        | InvalidStatus
        | InvalidVpcId
        | InvalidMarkerId
        | InvalidSubnetId
        | InvalidServiceName
        | QuotaExceeded
        | ServiceNotFound
        | ServiceUnavailable
        | NotWhitelisted
        | NotAConnection
        | InvalidConnectionAction
        | OneEndpointOnly
        | InvalidPortIp
        | PortIpInUse
        | PortIpOutsideSubnet
        | InvalidWhitelist
        | WhitelistFull
        | InvalidPermission
        | InvalidPortId
        | ServiceInUse
        | InvalidServerType
        | InvalidPermissionAction
        | InvalidPermissions
        | InvalidServicePort
        | PortsConflict
        | PermissionsFull
        | TagEmpty
        | TagKeyDuplicated
        | TagInvalid
        | TooManyTags
        | InvalidResourceType
        | TooManyPorts
        | InvalidProtocol => StatusCode::BAD_REQUEST,
    }
}

/// A failed API call: a domain [`Rejection`] on its way to the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub Rejection);

impl ApiError {
    /// An error with `code` and `msg`.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self(Rejection::new(code, msg))
    }

    /// The HTTP status for this error's code.
    pub fn status(&self) -> StatusCode {
        status(self.0.code)
    }

    /// The response, with request id `request_id`.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        /// The error body of API.md section 8.
        #[derive(Serialize)]
        struct Body<'a> {
            error_code: &'static str,
            error_msg: &'a str,
            request_id: &'a str,
        }
        let body = Body {
            error_code: self.0.code.as_str(),
            error_msg: &self.0.msg,
            request_id,
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        // For the audit log, which records the code of every failed write.
        resp.extensions_mut().insert(self.0.code);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

impl IntoResponse for ApiError {
    /// The response, with the id of the API request being served (so a handler's error,
    /// its audit entry and its log lines share one id), or a fresh id outside one.
    fn into_response(self) -> Response {
        let id = REQUEST_ID
            .try_with(Clone::clone)
            .unwrap_or_else(|_| uuid::Uuid::new_v4().simple().to_string());
        self.into_response_with_id(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        let s = |c| status(c).as_u16();
        assert_eq!(s(ErrorCode::AuthFailed), 401);
        assert_eq!(s(ErrorCode::NoPermission), 403);
        assert_eq!(s(ErrorCode::NotFound), 404);
        assert_eq!(s(ErrorCode::EndpointNotFound), 404);
        assert_eq!(s(ErrorCode::MethodNotAllowed), 405);
        assert_eq!(s(ErrorCode::BodyTooLarge), 413);
        assert_eq!(s(ErrorCode::System), 500);
        assert_eq!(s(ErrorCode::StoreUnavailable), 503);
        assert_eq!(s(ErrorCode::NotWhitelisted), 400);
        // Every code maps to a client or server error status.
        for &c in ErrorCode::ALL {
            assert!(
                status(c).is_client_error() || status(c).is_server_error(),
                "{c}"
            );
        }
        let resp = ApiError::new(ErrorCode::Parameter, "bad").into_response_with_id("abc");
        assert_eq!(resp.headers()["x-request-id"], "abc");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
