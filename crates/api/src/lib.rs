//! HTTP surface of the gateway: the REST API under `/api/v1`, media delivery under `/live`,
//! `/metrics`, `/healthz`, and the dashboard (`web/`) at `/`.

mod about;
mod config;
mod dash;
mod docs;
mod edge;
mod error;
mod events;
mod flv;
mod inputs;
mod ladder;
mod live;
mod metrics;
mod recordings;
pub mod server;
mod sessions;
mod streams;
mod templates;
#[cfg(test)]
mod tests;
mod time;
mod web;
mod webhooks;

pub use self::events::MAX_EVENT_STREAMS;
pub use config::{EffectiveConfig, mask_url};
pub use error::{ApiError, ErrorCode};
#[doc(hidden)]
pub use flv::fuzz_ws_client_frames;
pub use metrics::RequestCounts;
pub use streams::fuzz_stream_body;

use ::dash::DashService;
use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use control::Control;
use hls::HlsService;
use hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest accepted API request body.
pub const MAX_BODY: usize = 64 << 10;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The stream hub.
    pub hub: Hub,
    /// HLS playlists and segments.
    pub hls: HlsService,
    /// DASH manifests and segments.
    pub dash: DashService,
    /// Stream configuration and admission.
    pub control: Control,
    /// Who may reach `/api` and `/metrics`.
    pub admin: AdminAccess,
    /// API request counters for `/metrics`.
    pub requests: Arc<RequestCounts>,
    /// Whether the process takes traffic: `/readyz`.
    pub readiness: Readiness,
    /// What `/api/v1/config` shows.
    pub config: EffectiveConfig,
    /// The event sinks of `/api/v1/hooks` (and the bus they read).
    pub webhooks: ::events::Webhooks,
    /// Recordings on disk, DVR.
    pub recorder: record::Recorder,
    /// Renditions (ABR ladders) and their state.
    pub transcoder: transcode::Transcoder,
    /// Work a request hands off and outlives it (upgraded WebSocket viewers); the binary
    /// waits for it, within the shutdown grace.
    pub tasks: tokio_util::task::TaskTracker,
    /// The other nodes, when this one is part of a cluster: control requests for a stream
    /// live elsewhere go to its node.
    pub cluster: Option<cluster::Registry>,
    /// HLS and DASH of streams published on another node, passed on from it.
    pub edge: Option<cluster::EdgeHttp>,
}

/// Starting, ready, or draining, as `/readyz` reports it to load balancers.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<std::sync::atomic::AtomicU8>);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Readiness {
    /// The store is loaded and every listener is bound and serving.
    pub fn set_ready(&self) {
        let _ = self.0.compare_exchange(
            STARTING,
            READY,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    }

    /// Shutdown began: sessions are ending, take no new ones. Never undone.
    pub fn set_draining(&self) {
        self.0.store(DRAINING, std::sync::atomic::Ordering::Release);
    }

    fn state(&self) -> &'static str {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            READY => "ready",
            DRAINING => "draining",
            _ => "starting",
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferrocast",
        description = "Live-media gateway: stream configuration, runtime state and sessions."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "streams", description = "Stream configuration with live runtime state"),
        (name = "templates", description = "Stream settings that new and auto-published streams start from"),
        (name = "sessions", description = "Publishers and readers on every protocol"),
        (name = "server", description = "Version and listener addresses"),
        (name = "hooks", description = "Event sinks: signed, batched HTTP webhooks and JSON-lines files"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Who may reach the admin surface (`/api`, `/metrics`): by source network, then by token.
#[derive(Clone, Debug)]
pub struct AdminAccess {
    token: Option<Arc<str>>,
    allow: access::IpList,
    /// The allow-list is the loopback default, not the operator's: a request that a local
    /// reverse proxy forwarded is then not trusted as local.
    implicit: bool,
}

impl AdminAccess {
    /// `token` required when set; `allow` networks only (unset: loopback without a token,
    /// everyone with one).
    pub fn new(token: Option<&str>, allow: Option<access::IpList>) -> Self {
        let implicit = allow.is_none();
        let allow = allow.unwrap_or_else(|| {
            if token.is_some() {
                access::IpList::any()
            } else {
                loopback()
            }
        });
        AdminAccess {
            token: token.map(Arc::from),
            allow,
            implicit,
        }
    }

    /// Loopback only, no token: what a server gets with no `api.*` settings.
    pub fn local_only() -> Self {
        Self::new(None, None)
    }
}

fn loopback() -> access::IpList {
    // Both literals are valid networks; parse cannot fail on them.
    access::IpList::parse(["127.0.0.0/8", "::1/128"]).unwrap_or_else(|_| access::IpList::empty())
}

/// Every `/api/v1` handler, one group per path: the one list that both the router and the
/// OpenAPI document are built from, so the document cannot drift from the routes.
macro_rules! api_v1_handlers {
    ($then:ident) => {
        $then! {
            [streams::list_streams, streams::create_stream]
            [
                streams::get_stream,
                streams::upsert_stream,
                streams::put_stream,
                streams::patch_stream,
                streams::delete_stream
            ]
            [streams::retry_push]
            [templates::list_templates, templates::create_template]
            [
                templates::get_template,
                templates::put_template,
                templates::patch_template,
                templates::delete_template
            ]
            [config::get_config]
            [inputs::switch_input]
            [inputs::restart_inputs]
            [sessions::list_sessions]
            [sessions::kick_session]
            [sessions::kill_publisher]
            [sessions::close_publisher]
            [events::events]
            [about::server_info]
            [webhooks::list_hooks, webhooks::create_hook]
            [
                webhooks::get_hook,
                webhooks::put_hook,
                webhooks::patch_hook,
                webhooks::delete_hook
            ]
            [webhooks::test_hook]
            [recordings::list_recordings]
            [recordings::set_recording]
            [recordings::download_recording, recordings::delete_recording]
        }
    };
}

/// The OpenAPI document of the handlers, paths relative to `/api/v1`.
macro_rules! api_v1_document {
    ($([$($module:ident :: $handler:ident),+ $(,)?])+) => {
        OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
            $(.routes(routes!($($module::$handler),+)))+
            .into_openapi()
    };
}

/// The router of the handlers, from each one's path and methods alone.
macro_rules! api_v1_routes {
    ($([$($module:ident :: $handler:ident),+ $(,)?])+) => {{
        let mut routes = ApiRoutes::default();
        $($(pastey::paste! {
            routes.add::<$module::[<__path_ $handler>], _, _>($module::$handler);
        })+)+
        routes
    }};
}

/// `/api/v1`'s routes, built without its OpenAPI document.
///
/// utoipa-axum's `routes!` builds each operation and the schemas of its types along with the
/// route: a 4.8 MB heap peak at start for a document most servers never serve, whose freed
/// memory glibc then kept. Only a handler's path and methods are read here; the document is
/// built from the same list when it is first asked for ([`openapi`]).
#[derive(Default)]
struct ApiRoutes {
    by_path: std::collections::BTreeMap<String, axum::routing::MethodRouter<AppState>>,
    /// What was registered, for the test that holds the router to the document.
    #[cfg(test)]
    listed: Vec<(String, utoipa::openapi::path::HttpMethod)>,
}

impl ApiRoutes {
    fn add<P, H, T>(&mut self, handler: H)
    where
        P: utoipa::Path,
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        use utoipa_axum::PathItemExt;
        // As utoipa-axum: an empty path is the root (axum refuses an empty one).
        let path = match P::path() {
            p if p.is_empty() => "/".to_owned(),
            p => p,
        };
        let mut methods = self.by_path.remove(&path).unwrap_or_default();
        for method in P::methods() {
            methods = methods.on(method.to_method_filter(), handler.clone());
            #[cfg(test)]
            self.listed.push((path.clone(), method));
        }
        self.by_path.insert(path, methods);
    }

    fn into_router(self) -> Router<AppState> {
        self.by_path
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(&path, methods)
            })
    }
}

/// The OpenAPI document of `/api/v1`, with paths relative to the server root.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_v1_handlers!(api_v1_document);
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("/api/v1{p}"), item))
        .collect();
    doc
}

/// The whole HTTP surface on one port: media, clock, health, API, metrics and the dashboard.
pub fn router(state: AppState) -> Router {
    media_router(state.clone())
        .merge(admin_router(state))
        .merge(dashboard_router())
}

/// The dashboard's files: `/` and, for any path no other route takes, the embedded file of
/// that name. It goes with the API it calls (same origin, no CORS), so a media port without
/// the API does not serve it.
fn dashboard_router() -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/api/docs", get(docs::page))
        .route("/api/docs/", get(docs::slash))
        .route("/api/docs/openapi.json", get(docs::spec))
        // Where Open-Streamer serves its reference and document.
        .route("/swagger", get(docs::slash))
        .route("/swagger/", get(docs::slash))
        .route("/swagger/index.html", get(docs::slash))
        .route("/swagger/doc.json", get(docs::spec))
        .fallback(web::file)
}

/// Media delivery, the DASH clock and `/healthz`: what players and load balancers reach.
pub fn media_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // `/live/<code>/<file>` and HTTP-FLV / WS-FLV `/live/<code>.flv`; codes may hold `/`.
        .route("/live/{*path}", get(live::route))
        // Open-Streamer's; a namespaced `/<a>/<b>/mpegts` is rewritten to `/live/...` first
        // (see [`server::canonical_path`]).
        .route("/{code}/mpegts", get(live::serve_mpegts))
        // Outside /api so an api.token does not lock players out of clock sync.
        .route(::dash::UTC_TIMING_PATH, get(time::serve))
        .with_state(state)
}

/// What `api.listen` serves: the admin surface, `/healthz` and the dashboard.
pub fn admin_listener_router(state: AppState) -> Router {
    admin_router(state.clone())
        .merge(
            Router::new()
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz))
                .with_state(state),
        )
        .merge(dashboard_router())
        // Tells `/api/v1/server` that media are on another listener.
        .layer(Extension(about::AdminOnly))
}

/// `/api/v1` and `/metrics`, behind [`AdminAccess`].
pub fn admin_router(state: AppState) -> Router {
    // The document is serialized on first request, as `/api/docs/openapi.json` is.
    let api = api_v1_handlers!(api_v1_routes)
        .into_router()
        .route("/openapi.json", get(docs::spec))
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed);
    // axum's nest does not route `/api/v1/` (trailing slash) into the nested router; give it
    // the same answer, behind the same layers.
    let api_slash = Router::new().route("/api/v1/", any(api_not_found));
    let layered = |r: Router<AppState>| {
        r.layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn_with_state(state.clone(), authorize))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                metrics::count_requests,
            ))
    };
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .nest("/api/v1", layered(api))
        .merge(layered(api_slash))
        .merge(metrics)
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API route")
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// Admission to `/api` and `/metrics`: the source network first (403), then the bearer
/// token (401), compared in constant time.
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let admin = &state.admin;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // A request through a local reverse proxy carries the real client in these headers; the
    // loopback default must not open the API to whoever the proxy serves.
    let proxied = admin.implicit
        && (req.headers().contains_key("forwarded")
            || req.headers().contains_key("x-forwarded-for"));
    let allowed = !proxied && peer.is_some_and(|ip| admin.allow.contains(ip.to_canonical()));
    if !allowed {
        tracing::warn!(peer = ?peer, path = %req.uri().path(), "admin request refused: address not allowed");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this address may not use the API (see api.allow and api.token)",
        )
        .into_response();
    }
    let Some(token) = &admin.token else {
        return next.run(req).await;
    };
    // The scheme name is case-insensitive (RFC 7235 2.1).
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if given.is_some_and(|g| control::constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "missing or wrong API token (Authorization: Bearer <api.token>)",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Ready means: store loaded, listeners bound, not shutting down. The database is not part of
/// it: media flows through a database outage, and a load balancer that pulled every node
/// out for one would turn it into a full outage.
async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.readiness.state();
    let listeners: Vec<serde_json::Value> = state
        .hub
        .listeners()
        .into_iter()
        .map(|l| serde_json::json!({"protocol": l.protocol, "address": l.addr.to_string()}))
        .collect();
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({"status": status, "listeners": listeners})),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    // Media keeps flowing through a database outage, so the process is healthy either way;
    // the database state is reported for operators.
    let db =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.control.ping()).await {
            Ok(Ok(())) => "ok",
            _ => "unavailable",
        };
    axum::Json(serde_json::json!({
        "status": "ok",
        "database": db,
        "store": state.control.store_kind(),
    }))
    .into_response()
}

#[cfg(test)]
mod route_list_tests {
    use super::*;

    /// The router is built from the handlers' paths and methods without the document; it must
    /// route exactly what the document lists, method for method.
    #[test]
    fn the_router_registers_what_the_document_lists() {
        let doc = serde_json::to_value(openapi()).expect("document");
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                let path = path
                    .strip_prefix("/api/v1")
                    .expect("under /api/v1")
                    .to_owned();
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(move |m| (path.clone(), m.to_uppercase()))
            })
            .collect();
        let mut routed: Vec<(String, String)> = api_v1_handlers!(api_v1_routes)
            .listed
            .into_iter()
            .map(|(path, m)| {
                let m = serde_json::to_value(m).expect("method");
                (path, m.as_str().expect("a name").to_uppercase())
            })
            .collect();
        documented.sort();
        routed.sort();
        assert!(routed.len() >= 30, "routes: {routed:?}");
        assert_eq!(routed, documented);
    }
}
