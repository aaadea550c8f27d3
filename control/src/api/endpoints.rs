//! Endpoints, as their owner (the user) manages them.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::page::{Page, params};
use super::views::{EndpointView, paged};
use super::{ApiResult, ApiState, Ctx, command, no_content, ok, run};
use crate::command::EndpointChange;
use crate::error::{ErrorCode, Rejection};
use crate::model::tenant::EndpointQuery;
use crate::model::{Endpoint, EndpointId};
use crate::requests::{CreateEndpoint, Extend, UpdatePolicy, UpdateRoutetables, UpdateWhitelist};

type EndpointPath = Path<(String, EndpointId)>;

/// The answer with `ep` as it now is, `dns_names` included.
fn shown(s: &ApiState, ep: &Endpoint) -> ApiResult {
    ok(EndpointView::new(
        &s.registry.read(),
        ep,
        s.registry.region(),
        true,
    ))
}

/// `GET .../vpc-endpoints`.
pub async fn list(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let m = s.registry.read();
    let query = EndpointQuery {
        id: p.get("id").map(String::as_str),
        vpc_id: p.get("vpc_id").map(String::as_str),
        service_name: p.get("endpoint_service_name").map(String::as_str),
    };
    let items = m.tenant(&ctx).endpoints_where(query);
    let (items, total) = page.apply(items, |e| (e.created_at, e.updated_at, e.id.as_str()));
    let region = s.registry.region();
    let list = items
        .into_iter()
        .map(|e| EndpointView::new(&m, e, region, true))
        .collect();
    ok(paged("endpoints", list, total))
}

/// `POST .../vpc-endpoints` (the answer has no `dns_names`, like the real API's).
pub async fn create(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let ep =
        command::<CreateEndpoint, _, _>(&s, &b, move |r, c| r.create_endpoint(&ctx, c)).await?;
    ok(EndpointView::new(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        false,
    ))
}

/// `GET .../vpc-endpoints/{id}`.
pub async fn show(State(s): State<ApiState>, ctx: Ctx, Path((_, id)): EndpointPath) -> ApiResult {
    let m = s.registry.read();
    let ep = m.tenant(&ctx).endpoint(&id).ok_or_else(|| {
        Rejection::new(
            ErrorCode::EndpointNotFound,
            "The requested endpoint does not exist.",
        )
    })?;
    ok(EndpointView::new(&m, ep, s.registry.region(), true))
}

/// Apply an [`EndpointChange`] decoded from wire body `W`.
async fn change<W>(s: &ApiState, ctx: Ctx, id: EndpointId, b: &Bytes) -> Result<Endpoint, ApiError>
where
    W: DeserializeOwned,
    EndpointChange: TryFrom<W, Error = Rejection>,
{
    command::<W, EndpointChange, _>(s, b, move |r, c| r.update_endpoint(&ctx, &id, c)).await
}

/// `PUT .../vpc-endpoints/{id}`: the source whitelist.
pub async fn whitelist(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): EndpointPath,
    b: Bytes,
) -> ApiResult {
    let ep = change::<UpdateWhitelist>(&s, ctx, id, &b).await?;
    shown(&s, &ep)
}

/// The answer to a route-table update.
#[derive(Debug, Serialize)]
struct Routetables {
    routetables: Vec<String>,
    error: [u8; 0],
}

/// `PUT .../routetables`.
pub async fn routetables(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): EndpointPath,
    b: Bytes,
) -> ApiResult {
    let ep = change::<UpdateRoutetables>(&s, ctx, id, &b).await?;
    ok(Routetables {
        routetables: ep.routetables,
        error: [],
    })
}

/// `PUT .../policy`.
pub async fn policy(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): EndpointPath,
    b: Bytes,
) -> ApiResult {
    let ep = change::<UpdatePolicy>(&s, ctx, id, &b).await?;
    shown(&s, &ep)
}

/// `DELETE .../policy`.
pub async fn clear_policy(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): EndpointPath,
) -> ApiResult {
    let ep = run(&s, move |r| {
        r.update_endpoint(&ctx, &id, EndpointChange::ClearPolicy)
    })
    .await?;
    shown(&s, &ep)
}

/// `PUT .../expiry` (vpcep extension).
pub async fn extend(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): EndpointPath,
    b: Bytes,
) -> ApiResult {
    let ep = change::<Extend>(&s, ctx, id, &b).await?;
    shown(&s, &ep)
}

/// `DELETE .../vpc-endpoints/{id}`.
pub async fn delete(State(s): State<ApiState>, ctx: Ctx, Path((_, id)): EndpointPath) -> ApiResult {
    run(&s, move |r| r.delete_endpoint(&ctx, &id)).await?;
    no_content()
}
