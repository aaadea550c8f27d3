//! What is not a resource: the version documents, quotas and usage, and the answers for an
//! unknown path or method.

use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use super::error::ApiError;
use super::page::params;
use super::{ApiResult, ApiState, Ctx, ok};
use crate::error::{ErrorCode, Rejection};

/// A 404 in the gateway's words.
pub async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::ApiNotFound,
        "The API does not exist or has not been published.",
    )
}

/// A 405 in the gateway's words.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "The method is not allowed for this API.",
    )
}

/// A link of a version document.
#[derive(Debug, Serialize)]
struct Link {
    rel: &'static str,
    href: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The one API version.
#[derive(Debug, Serialize)]
struct Version {
    id: &'static str,
    status: &'static str,
    version: &'static str,
    min_version: &'static str,
    updated: &'static str,
    links: [Link; 1],
}

const V1: Version = Version {
    id: "v1",
    status: "CURRENT",
    version: "1",
    min_version: "",
    updated: "2018-09-30T00:00:00Z",
    links: [Link {
        rel: "self",
        href: "/v1",
        kind: "application/json",
    }],
};

#[derive(Debug, Serialize)]
struct Versions {
    versions: [Version; 1],
}

#[derive(Debug, Serialize)]
struct OneVersion {
    version: Version,
}

/// `GET /`.
pub async fn versions() -> ApiResult {
    ok(Versions { versions: [V1] })
}

/// `GET /{version}`.
pub async fn version(Path(v): Path<String>) -> ApiResult {
    if v == "v1" {
        ok(OneVersion { version: V1 })
    } else {
        Err(not_found().await)
    }
}

/// One quota and its use.
#[derive(Debug, Serialize)]
struct Quota {
    #[serde(rename = "type")]
    kind: &'static str,
    used: usize,
    quota: usize,
}

#[derive(Debug, Serialize)]
struct Resources {
    resources: Vec<Quota>,
}

#[derive(Debug, Serialize)]
struct Quotas {
    quotas: Resources,
}

/// `GET .../quotas[?type=endpoint_service|endpoint]`.
pub async fn quotas(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let limits = s.registry.quotas();
    let m = s.registry.read();
    let v = m.tenant(&ctx);
    let mut resources = vec![
        Quota {
            kind: "endpoint_service",
            used: v.services().count(),
            quota: limits.endpoint_service,
        },
        Quota {
            kind: "endpoint",
            used: v.endpoint_count(),
            quota: limits.endpoint,
        },
    ];
    match p.get("type").map(String::as_str) {
        None => {}
        Some(t @ ("endpoint_service" | "endpoint")) => resources.retain(|r| r.kind == t),
        Some(other) => {
            return Err(
                Rejection::param(format!("type {other:?}: endpoint_service or endpoint")).into(),
            );
        }
    }
    ok(Quotas {
        quotas: Resources { resources },
    })
}
