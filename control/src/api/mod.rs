//! The VPCEP API v1 over HTTP (axum): the router, the shared state, and the two helpers
//! every handler uses.
//!
//! A request is authenticated first ([`auth::authenticate`]). A write handler then calls
//! [`command`]: the body is decoded into its wire type (`requests.rs`), turned into a
//! validated command (`command/`, `TryFrom`), and applied by the registry on the blocking
//! pool (a write waits for the store's fsync). A read handler queries the model through the
//! caller's [`crate::model::TenantView`]. Either way the answer is a typed view
//! ([`views`]). Handlers live by resource: [`services`] (with connections and whitelists),
//! [`endpoints`], [`inventory`], [`tags`]; [`meta`] holds versions, quotas and the
//! fallbacks.

pub mod admin;
pub mod auth;
pub mod console;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod inventory;
pub mod meta;
pub mod metrics;
pub mod page;
pub mod services;
pub mod tags;
pub mod tokens;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::TimeDelta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::error::ApiError;
use crate::auth::{Credentials, PayloadPolicy, ReplayCache};
use crate::error::Rejection;
use crate::model::Tenant;
use crate::registry::Registry;

/// Largest request body accepted (bytes). 200 port mappings fit in well under 64 KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Shared state of the API handlers.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Accepted credentials.
    pub credentials: Arc<arc_swap::ArcSwap<Credentials>>,
    /// Allowed clock difference for `X-Sdk-Date`.
    pub window: TimeDelta,
    /// Whether `UNSIGNED-PAYLOAD` is accepted.
    pub payload: PayloadPolicy,
    /// Write signatures already used.
    pub replay: Arc<ReplayCache>,
    /// How long a request's body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The per-project request rate.
    pub rate: Arc<http::RateLimit>,
    /// Where writes and sign-ins are recorded.
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    /// How long a console session lasts.
    pub session_ttl: std::time::Duration,
    /// Failed console sign-ins, per user and per source.
    pub sign_in: Arc<tokens::SignInLimit>,
    /// The per-endpoint figures (`.../metrics`); none without a daemon.
    pub meters: Option<Arc<crate::meters::MeterBook>>,
}

/// What a handler returns.
pub type ApiResult = Result<Response, ApiError>;

/// The authenticated caller, put there by [`auth::authenticate`].
pub type Ctx = axum::Extension<Tenant>;

/// 200 with `v` as JSON.
pub fn ok(v: impl Serialize) -> ApiResult {
    Ok((StatusCode::OK, axum::Json(v)).into_response())
}

/// 204.
pub fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decode a JSON body into wire type `W`.
///
/// # Errors
/// EndPoint.0002 for an empty or invalid body (unknown fields included).
pub fn body<W: DeserializeOwned>(bytes: &Bytes) -> Result<W, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::param("a JSON request body is required"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Rejection::param(format!("invalid request body: {e}")))
}

/// Run `op` on the registry on the blocking pool (writes wait for the store's fsync).
///
/// # Errors
/// `op`'s rejection, or EndPoint.0001 if the blocking task failed.
pub async fn run<T: Send + 'static>(
    s: &ApiState,
    op: impl FnOnce(&Registry) -> Result<T, Rejection> + Send + 'static,
) -> Result<T, ApiError> {
    let r = Arc::clone(&s.registry);
    tokio::task::spawn_blocking(move || op(&r))
        .await
        .map_err(|e| Rejection::system(format!("worker failed: {e}")))?
        .map_err(ApiError::from)
}

/// The one write path of the API: decode `bytes` as wire body `W`, turn it into command
/// `C`, and apply it with `op` on the blocking pool.
///
/// # Errors
/// EndPoint.0002 for a bad body, the command's or the rule's rejection.
pub async fn command<W, C, T>(
    s: &ApiState,
    bytes: &Bytes,
    op: impl FnOnce(&Registry, C) -> Result<T, Rejection> + Send + 'static,
) -> Result<T, ApiError>
where
    W: DeserializeOwned,
    C: TryFrom<W, Error = Rejection> + Send + 'static,
    T: Send + 'static,
{
    let cmd = C::try_from(body::<W>(bytes)?)?;
    run(s, move |r| op(r, cmd)).await
}

/// The API router: the console's files and its sign-in (before authentication: they are
/// how a person gets a token), then the API, every request authenticated.
pub fn router(state: ApiState) -> Router {
    let public = Router::new()
        .route(
            "/v3/auth/tokens",
            post(tokens::create)
                .get(tokens::show)
                .delete(tokens::delete),
        )
        .route("/console", get(console::redirect))
        .route("/console/", get(console::index))
        .route("/console/{*file}", get(console::file))
        .with_state(state.clone());
    public.merge(api(state))
}

/// The API's routes, behind [`auth::authenticate`].
fn api(state: ApiState) -> Router {
    use self::{endpoints as ep, inventory as inv, meta, services as svc, tags};
    let pid = "/v1/{project_id}";
    let s = format!("{pid}/vpc-endpoint-services/{{service_id}}");
    let e = format!("{pid}/vpc-endpoints/{{endpoint_id}}");
    Router::new()
        .route("/", get(meta::versions))
        .route("/{version}", get(meta::version))
        .route(&format!("{pid}/quotas"), get(meta::quotas))
        .route(
            &format!("{pid}/vpc-endpoint-services"),
            get(svc::list).post(svc::create),
        )
        .route(
            &format!("{pid}/vpc-endpoint-services/describe"),
            get(svc::describe),
        )
        .route(
            &format!("{pid}/vpc-endpoint-services/public"),
            get(svc::public),
        )
        .route(&s, get(svc::show).put(svc::update).delete(svc::delete))
        .route(&format!("{s}/metrics"), get(metrics::service))
        .route(&format!("{s}/name"), put(svc::rename))
        .route(&format!("{s}/connections"), get(svc::connections))
        .route(&format!("{s}/connections/action"), post(svc::decide))
        .route(
            &format!("{s}/connections/description"),
            put(svc::describe_connections),
        )
        .route(&format!("{s}/permissions"), get(svc::permissions))
        .route(
            &format!("{s}/permissions/action"),
            post(svc::permission_action),
        )
        .route(
            &format!("{s}/permissions/batch-create"),
            post(svc::permissions_create),
        )
        .route(
            &format!("{s}/permissions/batch-delete"),
            post(svc::permissions_delete),
        )
        .route(
            &format!("{s}/permissions/{{permission_id}}"),
            put(svc::describe_permission),
        )
        .route(
            &format!("{pid}/vpc-endpoints"),
            get(ep::list).post(ep::create),
        )
        .route(&e, get(ep::show).put(ep::whitelist).delete(ep::delete))
        .route(&format!("{e}/routetables"), put(ep::routetables))
        .route(
            &format!("{e}/policy"),
            put(ep::policy).delete(ep::clear_policy),
        )
        .route(&format!("{e}/expiry"), put(ep::extend))
        .route(&format!("{e}/metrics"), get(metrics::endpoint))
        .route(&format!("{pid}/vpcs"), get(inv::vpcs).post(inv::create_vpc))
        .route(
            &format!("{pid}/vpcs/{{id}}"),
            get(inv::vpc).delete(inv::delete_vpc),
        )
        .route(
            &format!("{pid}/subnets"),
            get(inv::subnets).post(inv::create_subnet),
        )
        .route(
            &format!("{pid}/subnets/{{id}}"),
            get(inv::subnet).delete(inv::delete_subnet),
        )
        .route(
            &format!("{pid}/ports"),
            get(inv::ports).post(inv::create_port),
        )
        .route(
            &format!("{pid}/ports/{{id}}"),
            get(inv::port).delete(inv::delete_port),
        )
        // The tag API: `{resource_type}` is checked by the handlers (EndPoint.3070); the
        // static segments above take precedence over it.
        .route(&format!("{pid}/{{resource_type}}/tags"), get(tags::list))
        .route(
            &format!("{pid}/{{resource_type}}/resource_instances/action"),
            post(tags::instances),
        )
        .route(
            &format!("{pid}/{{resource_type}}/{{resource_id}}/tags/action"),
            post(tags::action),
        )
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}
