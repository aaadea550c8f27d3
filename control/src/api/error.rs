//! API errors and their single mapping to HTTP.
//!
//! Every failure is an error code of the VPCEP API (API.md section 8) and a message; the
//! body is `{"error_code","error_msg","request_id"}` and the `X-Request-Id` header carries
//! the same id. [`ApiError::status`] is the one place that maps a code to a status.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A failed API call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {msg}")]
pub struct ApiError {
    /// The API's error code, e.g. `EndPoint.2012`.
    pub code: &'static str,
    /// A message for humans.
    pub msg: String,
}

impl ApiError {
    /// An error with `code` and `msg`.
    pub fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    /// EndPoint.0002: a parameter is missing, of the wrong type or out of range.
    pub fn param(msg: impl Into<String>) -> Self {
        Self::new("EndPoint.0002", msg)
    }

    /// EndPoint.0005: no such resource (also what another tenant's resource looks like).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            "EndPoint.0005",
            format!("The requested resource does not exist: {what}."),
        )
    }

    /// EndPoint.0001: the store failed; nothing was changed.
    pub fn system(msg: impl Into<String>) -> Self {
        Self::new("EndPoint.0001", msg)
    }

    /// APIGW.0301: authentication failed.
    pub fn auth(msg: impl Into<String>) -> Self {
        Self::new("APIGW.0301", msg)
    }

    /// The HTTP status for this error's code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            "APIGW.0301" | "EndPoint.0003" => StatusCode::UNAUTHORIZED,
            "EndPoint.0004" => StatusCode::FORBIDDEN,
            "EndPoint.0005" | "EndPoint.2006" | "APIGW.0101" => StatusCode::NOT_FOUND,
            "APIGW.0102" => StatusCode::METHOD_NOT_ALLOWED,
            "EndPoint.0001" => StatusCode::INTERNAL_SERVER_ERROR,
            "EndPoint.0024" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response, with request id `request_id`.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        let body = serde_json::json!({
            "error_code": self.code,
            "error_msg": self.msg,
            "request_id": request_id,
        });
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.into_response_with_id(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(ApiError::auth("x").status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ApiError::not_found("x").status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::param("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::new("EndPoint.2012", "x").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::system("x").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let resp = ApiError::param("bad").into_response_with_id("abc");
        assert_eq!(resp.headers()["x-request-id"], "abc");
    }
}
