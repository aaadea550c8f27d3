//! The VPCEP API v1 over HTTP (axum): routing, authentication, and thin handlers that parse
//! a request, call the registry and render the answer.
//!
//! Every request is authenticated by [`authenticate`] before routing: the body is read
//! (bounded), the SDK-HMAC-SHA256 signature is verified against the raw request target,
//! headers and body, and `X-Project-Id` and the credential's project must both match the
//! `{project_id}` of the path. Writes run on the blocking pool: they wait for the store's
//! fsync.

pub mod error;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::TimeDelta;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::error::ApiError;
use crate::auth::{self, Credentials, SignedRequest, Tenant};
use crate::registry::{Page, Registry};
use crate::requests::*;

/// Largest request body accepted (bytes). 200 port mappings fit in well under 64 KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Shared state of the API handlers.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Accepted credentials.
    pub credentials: Arc<Credentials>,
    /// Allowed clock difference for `X-Sdk-Date`.
    pub window: TimeDelta,
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::param("a JSON request body is required"));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::param(format!("invalid request body: {e}")))
}

/// Query parameters decoded with percent-decoding only (`+` stays `+`, as the SDK means it).
fn params(query: Option<&str>) -> HashMap<String, String> {
    auth::query_pairs(query.unwrap_or("")).into_iter().collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::system(format!("worker failed: {e}")))?
}

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
        ApiError::auth(e.to_string())
    })?;
    if let Some(project) = path_project(path) {
        let project = percent_decode_str(project).decode_utf8_lossy();
        if lookup("x-project-id").as_deref() != Some(&*project) {
            return Err(ApiError::new(
                "EndPoint.0014",
                "Invalid project ID: X-Project-Id does not match the path.",
            ));
        }
        if tenant.project_id != project {
            return Err(ApiError::new(
                "EndPoint.0004",
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
            "EndPoint.0024",
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

/// The API router with authentication.
pub fn router(state: ApiState) -> Router {
    let pid = "/v1/{project_id}";
    let svc = format!("{pid}/vpc-endpoint-services/{{service_id}}");
    let ep = format!("{pid}/vpc-endpoints/{{endpoint_id}}");
    Router::new()
        .route("/", get(versions))
        .route("/{version}", get(version))
        .route(&format!("{pid}/quotas"), get(quotas))
        .route(
            &format!("{pid}/vpc-endpoint-services"),
            get(list_services).post(create_service),
        )
        .route(
            &format!("{pid}/vpc-endpoint-services/describe"),
            get(describe_service),
        )
        .route(
            &format!("{pid}/vpc-endpoint-services/public"),
            get(public_services),
        )
        .route(
            &svc,
            get(show_service).put(update_service).delete(delete_service),
        )
        .route(&format!("{svc}/name"), put(rename_service))
        .route(&format!("{svc}/connections"), get(list_connections))
        .route(
            &format!("{svc}/connections/action"),
            post(connection_action),
        )
        .route(
            &format!("{svc}/connections/description"),
            put(connection_descriptions),
        )
        .route(&format!("{svc}/permissions"), get(list_permissions))
        .route(
            &format!("{svc}/permissions/action"),
            post(permission_action),
        )
        .route(
            &format!("{svc}/permissions/batch-create"),
            post(permissions_batch_create),
        )
        .route(
            &format!("{svc}/permissions/batch-delete"),
            post(permissions_batch_delete),
        )
        .route(
            &format!("{svc}/permissions/{{permission_id}}"),
            put(permission_describe),
        )
        .route(
            &format!("{pid}/vpc-endpoints"),
            get(list_endpoints).post(create_endpoint),
        )
        .route(
            &ep,
            get(show_endpoint)
                .put(update_whitelist)
                .delete(delete_endpoint),
        )
        .route(&format!("{ep}/routetables"), put(update_routetables))
        .route(
            &format!("{ep}/policy"),
            put(update_policy).delete(delete_policy),
        )
        .route(&format!("{ep}/expiry"), put(extend_endpoint))
        .route(&format!("{pid}/vpcs"), get(list_vpcs).post(create_vpc))
        .route(
            &format!("{pid}/vpcs/{{id}}"),
            get(show_vpc).delete(delete_vpc),
        )
        .route(
            &format!("{pid}/subnets"),
            get(list_subnets).post(create_subnet),
        )
        .route(
            &format!("{pid}/subnets/{{id}}"),
            get(show_subnet).delete(delete_subnet),
        )
        .route(&format!("{pid}/ports"), get(list_ports).post(create_port))
        .route(
            &format!("{pid}/ports/{{id}}"),
            get(show_port).delete(delete_port),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        "APIGW.0101",
        "The API does not exist or has not been published.",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new("APIGW.0102", "The method is not allowed for this API.")
}

type Ctx = axum::Extension<Tenant>;

fn version_object() -> Value {
    json!({"id": "v1", "status": "CURRENT", "version": "1", "min_version": "", "updated": "2018-09-30T00:00:00Z",
           "links": [{"rel": "self", "href": "/v1", "type": "application/json"}]})
}

async fn versions() -> ApiResult {
    ok(json!({"versions": [version_object()]}))
}

async fn version(Path(v): Path<String>) -> ApiResult {
    if v == "v1" {
        ok(json!({"version": version_object()}))
    } else {
        Err(not_found().await)
    }
}

async fn quotas(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let qt = s.registry.quotas();
    let services = m
        .services
        .values()
        .filter(|x| x.project_id == ctx.project_id)
        .count();
    let endpoints = m
        .endpoints
        .values()
        .filter(|x| x.project_id == ctx.project_id)
        .count();
    let mut resources = vec![
        json!({"type": "endpoint_service", "used": services, "quota": qt.endpoint_service}),
        json!({"type": "endpoint", "used": endpoints, "quota": qt.endpoint}),
    ];
    match p.get("type").map(String::as_str) {
        None => {}
        Some(t @ ("endpoint_service" | "endpoint")) => resources.retain(|r| r["type"] == t),
        Some(other) => {
            return Err(ApiError::param(format!(
                "type {other:?}: endpoint_service or endpoint"
            )));
        }
    }
    ok(json!({"quotas": {"resources": resources}}))
}

fn name_matches(full: &str, wanted: Option<&String>) -> bool {
    wanted.is_none_or(|w| full.to_lowercase().contains(&w.to_lowercase()))
}

async fn list_services(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    if let Some(st) = p.get("status")
        && !["creating", "available", "failed", "deleting", "suspended"].contains(&st.as_str())
    {
        return Err(ApiError::new(
            "EndPoint.0019",
            format!("Invalid status {st:?}."),
        ));
    }
    let m = s.registry.read();
    let items: Vec<_> = m
        .services
        .values()
        .filter(|x| x.project_id == ctx.project_id)
        .filter(|x| name_matches(&x.full_name, p.get("endpoint_service_name")))
        .filter(|x| p.get("id").is_none_or(|id| *id == x.id))
        .filter(|x| p.get("status").is_none_or(|st| st == x.status.as_str()))
        .collect();
    let (items, total) = page.apply(items, |x| (x.created_at, x.updated_at, x.id.clone()));
    let list: Vec<Value> = items.into_iter().map(|x| views::service(&m, x)).collect();
    ok(json!({"endpoint_services": list, "total_count": total}))
}

async fn create_service(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let req: CreateService = body(&b)?;
    let r = Arc::clone(&s.registry);
    let svc = blocking(move || r.create_service(&ctx, req)).await?;
    ok(views::service(&s.registry.read(), &svc))
}

async fn show_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let m = s.registry.read();
    let svc = m
        .services
        .get(&id)
        .filter(|x| x.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("endpoint service"))?;
    ok(views::service(&m, svc))
}

async fn update_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: UpdateService = body(&b)?;
    let r = Arc::clone(&s.registry);
    let svc = blocking(move || r.update_service(&ctx, &id, req)).await?;
    ok(views::service(&s.registry.read(), &svc))
}

async fn delete_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    blocking(move || r.delete_service(&ctx, &id)).await?;
    no_content()
}

async fn rename_service(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: RenameService = body(&b)?;
    let r = Arc::clone(&s.registry);
    let svc = blocking(move || r.rename_service(&ctx, &id, req)).await?;
    ok(json!({"endpoint_service_name": svc.full_name}))
}

async fn list_connections(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    if let Some(st) = p.get("status")
        && !["pendingAcceptance", "accepted", "rejected", "failed"].contains(&st.as_str())
    {
        return Err(ApiError::new(
            "EndPoint.0019",
            format!("Invalid status {st:?}."),
        ));
    }
    let marker = match p.get("marker_id") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::new("EndPoint.0021", "Invalid marker_id."))?,
        ),
    };
    let m = s.registry.read();
    m.services
        .get(&id)
        .filter(|x| x.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("endpoint service"))?;
    let items: Vec<_> = m
        .endpoints_of(&id)
        .filter(|e| p.get("id").is_none_or(|i| *i == e.id))
        .filter(|e| marker.is_none_or(|mk| mk == e.marker_id))
        .filter(|e| p.get("status").is_none_or(|st| st == e.status.as_str()))
        .collect();
    let (items, total) = page.apply(items, |e| (e.created_at, e.updated_at, e.id.clone()));
    let list: Vec<Value> = items.into_iter().map(views::connection).collect();
    ok(json!({"connections": list, "total_count": total}))
}

async fn connection_action(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: ConnectionAction = body(&b)?;
    let r = Arc::clone(&s.registry);
    let eps = blocking(move || r.connection_action(&ctx, &id, req)).await?;
    let list: Vec<Value> = eps.iter().map(views::connection).collect();
    ok(json!({"connections": list}))
}

async fn connection_descriptions(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: ConnectionDescs = body(&b)?;
    let r = Arc::clone(&s.registry);
    let eps = blocking(move || r.connection_descriptions(&ctx, &id, req)).await?;
    let list: Vec<Value> = eps.iter().map(views::connection).collect();
    ok(json!({"connections": list}))
}

async fn list_permissions(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 500)?;
    let m = s.registry.read();
    m.services
        .get(&id)
        .filter(|x| x.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("endpoint service"))?;
    let items: Vec<_> = m
        .permissions_of(&id)
        .filter(|x| {
            p.get("permission")
                .is_none_or(|w| x.permission.contains(w.as_str()))
        })
        .collect();
    let (items, total) = page.apply(items, |x| (x.created_at, x.created_at, x.id.clone()));
    let list: Vec<Value> = items
        .into_iter()
        .map(|x| views::permission(x, false))
        .collect();
    ok(json!({"permissions": list, "total_count": total}))
}

async fn permission_action(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: PermissionAction = body(&b)?;
    let r = Arc::clone(&s.registry);
    let (perms, ptype) = blocking(move || r.permission_action(&ctx, &id, req)).await?;
    ok(json!({"permissions": perms, "permission_type": ptype}))
}

async fn permissions_batch_create(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: PermissionBatchCreate = body(&b)?;
    let r = Arc::clone(&s.registry);
    let created = blocking(move || r.permissions_batch_create(&ctx, &id, req)).await?;
    ok(
        json!({"permissions": created.iter().map(|p| views::permission(p, true)).collect::<Vec<_>>()}),
    )
}

async fn permissions_batch_delete(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: PermissionBatchDelete = body(&b)?;
    let r = Arc::clone(&s.registry);
    let removed = blocking(move || r.permissions_batch_delete(&ctx, &id, req)).await?;
    ok(
        json!({"permissions": removed.iter().map(|p| views::permission(p, true)).collect::<Vec<_>>()}),
    )
}

async fn permission_describe(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id, perm)): Path<(String, String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: PermissionDescBody = body(&b)?;
    let r = Arc::clone(&s.registry);
    let p = blocking(move || r.permission_describe(&ctx, &id, &perm, req)).await?;
    ok(json!({"permissions": [views::permission(&p, true)]}))
}

async fn describe_service(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let svc = match (p.get("endpoint_service_name"), p.get("id")) {
        (Some(name), None) => m.services.values().find(|x| x.full_name == *name),
        (None, Some(id)) => m.services.get(id),
        _ => {
            return Err(ApiError::param(
                "give exactly one of endpoint_service_name and id",
            ));
        }
    };
    let svc = svc
        .filter(|x| m.visible(x, &ctx.domain_id))
        .ok_or_else(|| ApiError::not_found("endpoint service"))?;
    ok(views::service_public(svc))
}

async fn public_services(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let m = s.registry.read();
    let items: Vec<_> = m
        .services
        .values()
        .filter(|x| m.visible(x, &ctx.domain_id))
        .filter(|x| name_matches(&x.full_name, p.get("endpoint_service_name")))
        .filter(|x| p.get("id").is_none_or(|id| *id == x.id))
        .collect();
    let (items, total) = page.apply(items, |x| (x.created_at, x.updated_at, x.id.clone()));
    let list: Vec<Value> = items.into_iter().map(views::service_public).collect();
    ok(json!({"endpoint_services": list, "total_count": total}))
}

async fn list_endpoints(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let page = Page::from_params(&p, 1000)?;
    let m = s.registry.read();
    let items: Vec<_> = m
        .endpoints
        .values()
        .filter(|e| e.project_id == ctx.project_id)
        .filter(|e| p.get("vpc_id").is_none_or(|v| *v == e.vpc_id))
        .filter(|e| p.get("id").is_none_or(|v| *v == e.id))
        .filter(|e| {
            let name = m
                .services
                .get(&e.service_id)
                .map(|x| x.full_name.as_str())
                .unwrap_or("");
            name_matches(name, p.get("endpoint_service_name"))
        })
        .collect();
    let (items, total) = page.apply(items, |e| (e.created_at, e.updated_at, e.id.clone()));
    let region = s.registry.region();
    let list: Vec<Value> = items
        .into_iter()
        .map(|e| views::endpoint(&m, e, region, true))
        .collect();
    ok(json!({"endpoints": list, "total_count": total}))
}

async fn create_endpoint(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let req: CreateEndpoint = body(&b)?;
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.create_endpoint(&ctx, req)).await?;
    ok(views::endpoint(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        false,
    ))
}

async fn show_endpoint(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let m = s.registry.read();
    let ep = m
        .endpoints
        .get(&id)
        .filter(|e| e.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::new("EndPoint.2006", "The requested endpoint does not exist."))?;
    ok(views::endpoint(&m, ep, s.registry.region(), true))
}

async fn update_whitelist(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: UpdateWhitelist = body(&b)?;
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.update_whitelist(&ctx, &id, req)).await?;
    ok(views::endpoint(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        true,
    ))
}

async fn delete_endpoint(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    blocking(move || r.delete_endpoint(&ctx, &id)).await?;
    no_content()
}

async fn update_routetables(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: UpdateRoutetables = body(&b)?;
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.update_routetables(&ctx, &id, req)).await?;
    ok(json!({"routetables": ep.routetables, "error": []}))
}

async fn update_policy(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: UpdatePolicy = body(&b)?;
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.update_policy(&ctx, &id, Some(req))).await?;
    ok(views::endpoint(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        true,
    ))
}

async fn delete_policy(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.update_policy(&ctx, &id, None)).await?;
    ok(views::endpoint(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        true,
    ))
}

async fn extend_endpoint(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    let req: Extend = body(&b)?;
    let r = Arc::clone(&s.registry);
    let ep = blocking(move || r.extend_endpoint(&ctx, &id, req)).await?;
    ok(views::endpoint(
        &s.registry.read(),
        &ep,
        s.registry.region(),
        true,
    ))
}

// ---- inventory ----

async fn list_vpcs(State(s): State<ApiState>, ctx: Ctx) -> ApiResult {
    let m = s.registry.read();
    let list: Vec<Value> = m
        .vpcs
        .values()
        .filter(|v| v.project_id == ctx.project_id)
        .map(views::vpc)
        .collect();
    ok(json!({"vpcs": list}))
}

async fn create_vpc(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let req: VpcEnvelope = body(&b)?;
    let r = Arc::clone(&s.registry);
    let v = blocking(move || r.create_vpc(&ctx, req.vpc)).await?;
    ok(json!({"vpc": views::vpc(&v)}))
}

async fn show_vpc(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .vpcs
        .get(&id)
        .filter(|v| v.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("vpc"))?;
    ok(json!({"vpc": views::vpc(v)}))
}

async fn delete_vpc(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    blocking(move || r.delete_vpc(&ctx, &id)).await?;
    no_content()
}

async fn list_subnets(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let list: Vec<Value> = m
        .subnets
        .values()
        .filter(|x| {
            x.project_id == ctx.project_id && p.get("vpc_id").is_none_or(|v| *v == x.vpc_id)
        })
        .map(views::subnet)
        .collect();
    ok(json!({"subnets": list}))
}

async fn create_subnet(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let req: SubnetEnvelope = body(&b)?;
    let r = Arc::clone(&s.registry);
    let v = blocking(move || r.create_subnet(&ctx, req.subnet)).await?;
    ok(json!({"subnet": views::subnet(&v)}))
}

async fn show_subnet(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .subnets
        .get(&id)
        .filter(|v| v.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("subnet"))?;
    ok(json!({"subnet": views::subnet(v)}))
}

async fn delete_subnet(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    blocking(move || r.delete_subnet(&ctx, &id)).await?;
    no_content()
}

async fn list_ports(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let list: Vec<Value> = m
        .ports
        .values()
        .filter(|x| {
            x.project_id == ctx.project_id && p.get("subnet_id").is_none_or(|v| *v == x.subnet_id)
        })
        .map(views::port)
        .collect();
    ok(json!({"ports": list}))
}

async fn create_port(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let req: PortEnvelope = body(&b)?;
    let r = Arc::clone(&s.registry);
    let v = blocking(move || r.create_port(&ctx, req.port)).await?;
    ok(json!({"port": views::port(&v)}))
}

async fn show_port(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .ports
        .get(&id)
        .filter(|v| v.project_id == ctx.project_id)
        .ok_or_else(|| ApiError::not_found("port"))?;
    ok(json!({"port": views::port(v)}))
}

async fn delete_port(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult {
    let r = Arc::clone(&s.registry);
    blocking(move || r.delete_port(&ctx, &id)).await?;
    no_content()
}
