//! Endpoint services, as their owner manages them (with their connections and whitelists),
//! and as other accounts find them (describe, public list).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use super::page::{Page, check_status, params};
use super::views::{ConnectionView, PermissionView, PublicServiceView, ServiceView, listed, paged};
use super::{ApiResult, ApiState, Ctx, command, no_content, ok, run};
use crate::error::{ErrorCode, Rejection};
use crate::model::tenant::{ConnectionQuery, ServiceQuery};
use crate::model::{ApiStatus, PermissionId, ServiceId};
use crate::requests::{
    ConnectionAction, ConnectionDescs, CreateService, PermissionAction, PermissionBatchCreate,
    PermissionBatchDelete, PermissionDescBody, RenameService, UpdateService,
};

type ServicePath = Path<(String, ServiceId)>;

fn service_not_found() -> Rejection {
    Rejection::not_found("endpoint service")
}

/// `GET .../vpc-endpoint-services`.
pub async fn list(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let status = check_status(&p, &ApiStatus::SERVICE)?;
    let m = s.registry.read();
    let query = ServiceQuery {
        id: p.get("id").map(String::as_str),
        name: p.get("endpoint_service_name").map(String::as_str),
        status,
    };
    let items = m.tenant(&ctx).services_where(query);
    let (items, total) = page.apply(items, |x| (x.created_at, x.updated_at, x.id.as_str()));
    let list = items.into_iter().map(|x| ServiceView::new(&m, x)).collect();
    ok(paged("endpoint_services", list, total))
}

/// `POST .../vpc-endpoint-services`.
pub async fn create(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let svc = command::<CreateService, _, _>(&s, &b, move |r, c| r.create_service(&ctx, c)).await?;
    ok(ServiceView::new(&s.registry.read(), &svc))
}

/// `GET .../vpc-endpoint-services/{id}`.
pub async fn show(State(s): State<ApiState>, ctx: Ctx, Path((_, id)): ServicePath) -> ApiResult {
    let m = s.registry.read();
    let svc = m.tenant(&ctx).service(&id).ok_or_else(service_not_found)?;
    ok(ServiceView::new(&m, svc))
}

/// `PUT .../vpc-endpoint-services/{id}`.
pub async fn update(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let svc =
        command::<UpdateService, _, _>(&s, &b, move |r, c| r.update_service(&ctx, &id, c)).await?;
    ok(ServiceView::new(&s.registry.read(), &svc))
}

/// `DELETE .../vpc-endpoint-services/{id}`.
pub async fn delete(State(s): State<ApiState>, ctx: Ctx, Path((_, id)): ServicePath) -> ApiResult {
    run(&s, move |r| r.delete_service(&ctx, &id)).await?;
    no_content()
}

/// The answer to a rename.
#[derive(Debug, Serialize)]
struct Renamed {
    endpoint_service_name: String,
}

/// `PUT .../vpc-endpoint-services/{id}/name`.
pub async fn rename(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let svc =
        command::<RenameService, _, _>(&s, &b, move |r, c| r.update_service(&ctx, &id, c)).await?;
    ok(Renamed {
        endpoint_service_name: svc.full_name,
    })
}

/// `GET .../vpc-endpoint-services/{id}/connections`.
pub async fn connections(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let status = check_status(&p, &ApiStatus::ENDPOINT)?;
    let marker_id = p
        .get("marker_id")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Rejection::new(ErrorCode::InvalidMarkerId, "Invalid marker_id."))
        })
        .transpose()?;
    let m = s.registry.read();
    let query = ConnectionQuery {
        id: p.get("id").map(String::as_str),
        marker_id,
        status,
    };
    let items = m
        .tenant(&ctx)
        .connections_where(&id, query)
        .ok_or_else(service_not_found)?;
    let (items, total) = page.apply(items, |e| (e.created_at, e.updated_at, e.id.as_str()));
    ok(paged(
        "connections",
        items
            .into_iter()
            .map(|e| ConnectionView::new(&m, e))
            .collect(),
        total,
    ))
}

/// `POST .../connections/action`.
pub async fn decide(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let eps =
        command::<ConnectionAction, _, _>(&s, &b, move |r, c| r.decide_connection(&ctx, &id, c))
            .await?;
    let m = s.registry.read();
    ok(listed(
        "connections",
        eps.iter().map(|e| ConnectionView::new(&m, e)).collect(),
    ))
}

/// `PUT .../connections/description`.
pub async fn describe_connections(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let eps =
        command::<ConnectionDescs, _, _>(&s, &b, move |r, c| r.describe_connections(&ctx, &id, c))
            .await?;
    let m = s.registry.read();
    ok(listed(
        "connections",
        eps.iter().map(|e| ConnectionView::new(&m, e)).collect(),
    ))
}

/// `GET .../permissions`.
pub async fn permissions(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 500)?;
    let m = s.registry.read();
    let items = m
        .tenant(&ctx)
        .permissions_where(&id, p.get("permission").map(String::as_str))
        .ok_or_else(service_not_found)?;
    let (items, total) = page.apply(items, |x| (x.created_at, x.created_at, x.id.as_str()));
    let list = items
        .into_iter()
        .map(|x| PermissionView::new(x, false))
        .collect();
    ok(paged("permissions", list, total))
}

/// The answer to a permission action: the request's list and type, echoed.
#[derive(Debug, Serialize)]
struct Edited {
    permissions: Vec<String>,
    permission_type: &'static str,
}

/// `POST .../permissions/action`.
pub async fn permission_action(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let (permissions, ptype) =
        command::<PermissionAction, _, _>(&s, &b, move |r, c| r.permission_action(&ctx, &id, c))
            .await?;
    ok(Edited {
        permissions,
        permission_type: ptype.as_str(),
    })
}

/// `POST .../permissions/batch-create`.
pub async fn permissions_create(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let made = command::<PermissionBatchCreate, _, _>(&s, &b, move |r, c| {
        r.permissions_batch_create(&ctx, &id, c)
    })
    .await?;
    ok(listed(
        "permissions",
        made.iter().map(|p| PermissionView::new(p, true)).collect(),
    ))
}

/// `POST .../permissions/batch-delete`.
pub async fn permissions_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): ServicePath,
    b: Bytes,
) -> ApiResult {
    let gone = command::<PermissionBatchDelete, _, _>(&s, &b, move |r, c| {
        r.permissions_batch_delete(&ctx, &id, c)
    })
    .await?;
    ok(listed(
        "permissions",
        gone.iter().map(|p| PermissionView::new(p, true)).collect(),
    ))
}

/// `PUT .../permissions/{permission_id}`.
pub async fn describe_permission(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id, perm)): Path<(String, ServiceId, PermissionId)>,
    b: Bytes,
) -> ApiResult {
    let p = command::<PermissionDescBody, _, _>(&s, &b, move |r, c| {
        r.describe_permission(&ctx, &id, &perm, c)
    })
    .await?;
    ok(listed("permissions", vec![PermissionView::new(&p, true)]))
}

/// `GET .../vpc-endpoint-services/describe?endpoint_service_name=|id=`.
pub async fn describe(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let v = m.tenant(&ctx);
    let view = match (p.get("endpoint_service_name"), p.get("id")) {
        (Some(name), None) => v
            .visible_service_named(name)
            .map(PublicServiceView::new)
            .or_else(|| v.gateway_named(name).map(PublicServiceView::gateway)),
        (None, Some(id)) => {
            let id = ServiceId::from(id.as_str());
            v.visible_service(&id)
                .map(PublicServiceView::new)
                .or_else(|| v.gateway(&id).map(PublicServiceView::gateway))
        }
        _ => {
            return Err(
                Rejection::param("give exactly one of endpoint_service_name and id").into(),
            );
        }
    };
    ok(view.ok_or_else(service_not_found)?)
}

/// `GET .../vpc-endpoint-services/public`.
pub async fn public(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let m = s.registry.read();
    let query = ServiceQuery {
        id: p.get("id").map(String::as_str),
        name: p.get("endpoint_service_name").map(String::as_str),
        status: None,
    };
    // The operator's gateway services are public to every account, next to the endpoint
    // services the caller may see.
    let v = m.tenant(&ctx);
    let services = v.visible_services_where(query).into_iter().map(|x| {
        let key = (x.created_at, x.updated_at, x.id.as_str());
        (key, PublicServiceView::new(x))
    });
    let gateways = v.gateways_where(query).into_iter().map(|g| {
        let key = (g.created_at, g.created_at, g.id.as_str());
        (key, PublicServiceView::gateway(g))
    });
    let (items, total) = page.apply(services.chain(gateways).collect(), |x| x.0);
    let list: Vec<_> = items.into_iter().map(|(_, view)| view).collect();
    ok(paged("endpoint_services", list, total))
}
