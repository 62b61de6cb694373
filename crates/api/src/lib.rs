//! HTTP surface of the gateway: media delivery (HLS, MPEG-TS) and health.

mod live;

use axum::Router;
use axum::routing::get;
use hls::HlsService;
use hub::Hub;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The stream hub.
    pub hub: Hub,
    /// HLS playlists and segments.
    pub hls: HlsService,
}

/// The whole HTTP router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/live/{code}/{file}", get(live::serve))
        .with_state(state)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}
