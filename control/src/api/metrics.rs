//! Traffic figures for tenants (an extension of the API, for the console's charts and for
//! scripts): an endpoint's, to its owner; a service's and each of its connections', to
//! the provider, who sees each connection by endpoint id only (never the user's VPC or
//! addresses). Figures are this node's ([`crate::meters`]): on a cluster, the node that
//! owns the endpoint's VPC carries its traffic.
//!
//! - `GET /v1/{project_id}/vpc-endpoints/{id}/metrics`
//! - `GET /v1/{project_id}/vpc-endpoint-services/{id}/metrics`

use axum::extract::{Path, State};
use serde::Serialize;

use super::{ApiResult, ApiState, Ctx, ok};
use crate::error::{ErrorCode, Rejection};
use crate::meters::{Figures, SAMPLE_EVERY, Sample};
use crate::model::{EndpointId, ServiceId};

/// An endpoint's figures and recent history.
#[derive(Debug, Serialize)]
struct EndpointMetrics {
    endpoint_id: String,
    /// Seconds between two samples.
    interval_secs: u64,
    /// Totals since the endpoint was first metered on this node.
    totals: Figures,
    /// The totals every `interval_secs`, oldest first (the last hour of an endpoint with
    /// traffic in it; none for an idle one).
    samples: Vec<Sample>,
}

/// A service's figures, and each connection's.
#[derive(Debug, Serialize)]
struct ServiceMetrics {
    service_id: String,
    totals: Figures,
    connections: Vec<ConnectionMetrics>,
}

#[derive(Debug, Serialize)]
struct ConnectionMetrics {
    endpoint_id: String,
    totals: Figures,
}

/// Zero figures (a resource with no traffic metered yet).
fn zero() -> Figures {
    Figures::of(&dataplane::meter::Reading::default(), 0)
}

/// `GET .../vpc-endpoints/{id}/metrics`.
pub async fn endpoint(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, EndpointId)>,
) -> ApiResult {
    {
        let m = s.registry.read();
        m.tenant(&ctx).endpoint(&id).ok_or_else(|| {
            Rejection::new(
                ErrorCode::EndpointNotFound,
                "The requested endpoint does not exist.",
            )
        })?;
    }
    let (totals, samples) = s
        .meters
        .as_ref()
        .and_then(|b| b.endpoint(id.as_str()))
        .unwrap_or_else(|| (zero(), Vec::new()));
    ok(EndpointMetrics {
        endpoint_id: id.to_string(),
        interval_secs: SAMPLE_EVERY.as_secs(),
        totals,
        samples,
    })
}

/// `GET .../vpc-endpoint-services/{id}/metrics`.
pub async fn service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, ServiceId)>,
) -> ApiResult {
    {
        let m = s.registry.read();
        m.tenant(&ctx)
            .service(&id)
            .ok_or_else(|| Rejection::not_found("endpoint service"))?;
    }
    let (totals, each) = s
        .meters
        .as_ref()
        .map_or_else(|| (zero(), Vec::new()), |b| b.service(id.as_str()));
    ok(ServiceMetrics {
        service_id: id.to_string(),
        totals,
        connections: each
            .into_iter()
            .map(|(endpoint_id, totals)| ConnectionMetrics {
                endpoint_id,
                totals,
            })
            .collect(),
    })
}
