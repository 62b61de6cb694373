//! HTTP surface of the gateway: the REST API under `/api/v1`, media delivery under `/live`,
//! `/metrics` and `/healthz`.

mod dash;
mod error;
mod live;
mod metrics;
mod sessions;
mod streams;
mod time;

pub use error::ApiError;
pub use metrics::RequestCounts;

use ::dash::DashService;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use control::Control;
use hls::HlsService;
use hub::Hub;
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
    /// When set, every `/api` request needs `Authorization: Bearer <token>`.
    pub api_token: Option<Arc<str>>,
    /// API request counters for `/metrics`.
    pub requests: Arc<RequestCounts>,
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
        (name = "sessions", description = "Publishers and readers on every protocol"),
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

/// The `/api/v1` routes and their OpenAPI document, built from the same registrations so the
/// document cannot drift from the routes.
fn api_v1() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(streams::list_streams, streams::create_stream))
        .routes(routes!(
            streams::get_stream,
            streams::put_stream,
            streams::patch_stream,
            streams::delete_stream
        ))
        .routes(routes!(streams::retry_push))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::kick_session))
        .routes(routes!(sessions::kill_publisher))
        .routes(routes!(sessions::close_publisher))
        .split_for_parts()
}

/// The OpenAPI document of `/api/v1`, with paths relative to the server root.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_v1();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (format!("/api/v1{p}"), item))
        .collect();
    doc
}

/// The whole HTTP router.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_v1();
    let doc = Arc::new(openapi());
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
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
    Router::new()
        .nest("/api/v1", layered(api))
        .merge(layered(api_slash))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/live/{code}/{file}", get(live::serve))
        // Outside /api so an api.token does not lock players out of clock sync.
        .route(::dash::UTC_TIMING_PATH, get(time::serve))
        .with_state(state)
}

async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API route")
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Bearer-token check for `/api`; the token is compared in constant time.
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.api_token else {
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
        "unauthorized",
        "missing or wrong API token (Authorization: Bearer <api.token>)",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
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
