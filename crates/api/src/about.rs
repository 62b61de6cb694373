//! `GET /api/v1/server`: the gateway's version and where each protocol listens, so a client
//! (the dashboard) can build publish and playback URLs without knowing the configuration.

use crate::AppState;
use crate::error::ErrorBody;
use crate::server::LocalAddr;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

/// One running listener.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListenerView {
    /// `rtmp`, `rtmps`, `srt`, `rtsp` or `http`.
    protocol: &'static str,
    /// The bound address; `0.0.0.0` or `[::]` means every interface, so clients keep the host
    /// name they reached the gateway by and take only the port.
    address: String,
    port: u16,
    /// Application name in stream URLs (`live` in `rtmp://host/live/<code>`); empty for HTTP.
    app: String,
}

/// The gateway and its listeners.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    /// Gateway version.
    version: &'static str,
    /// Whether HLS, DASH and MPEG-TS are served by the listener that answered this request
    /// (false when `api.listen` puts the API on a port of its own); when true, clients should
    /// use the origin they reached the API by, which survives reverse proxies.
    media_here: bool,
    /// Running listeners by protocol; `http` is the one serving media, when known.
    listeners: Vec<ListenerView>,
}

/// Marks the routers of a listener that serves the API but not media (`api.listen`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdminOnly;

/// Version and listener addresses of this gateway.
#[utoipa::path(
    get,
    path = "/server",
    tag = "server",
    responses(
        (status = 200, description = "Version and listeners", body = ServerView),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn server_info(
    State(state): State<AppState>,
    local: Option<Extension<LocalAddr>>,
    admin_only: Option<Extension<AdminOnly>>,
) -> Json<ServerView> {
    let media_here = admin_only.is_none();
    let mut listeners: Vec<ListenerView> = state
        .hub
        .listeners()
        .into_iter()
        .map(|l| ListenerView {
            protocol: l.protocol,
            address: l.addr.to_string(),
            port: l.addr.port(),
            app: l.app,
        })
        .collect();
    // The HTTP listener cannot announce itself (it serves a router, not the hub); when media
    // come through this very listener, its address is the media address.
    if media_here
        && !listeners.iter().any(|l| l.protocol == "http")
        && let Some(Extension(LocalAddr(addr))) = local
    {
        listeners.push(ListenerView {
            protocol: "http",
            address: addr.to_string(),
            port: addr.port(),
            app: String::new(),
        });
        listeners.sort_by_key(|l| l.protocol);
    }
    Json(ServerView {
        version: env!("CARGO_PKG_VERSION"),
        media_here,
        listeners,
    })
}

#[cfg(test)]
mod tests {
    use crate::AdminAccess;
    use crate::server::LocalAddr;
    use crate::tests::state;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use std::net::SocketAddr;
    use tower_service::Service;

    async fn info(app: &mut axum::Router, local: Option<SocketAddr>) -> serde_json::Value {
        let mut req = Request::builder()
            .uri("/api/v1/server")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        if let Some(l) = local {
            req.extensions_mut().insert(LocalAddr(l));
        }
        let resp = app.call(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn listeners_come_from_the_servers_and_http_from_the_listener() {
        let st = state(AdminAccess::local_only()).await;
        let _rtmp = st.hub.announce_listener(hub::ListenerInfo {
            protocol: "rtmp",
            addr: ([0, 0, 0, 0], 1935).into(),
            app: "live".into(),
        });
        let http: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let v = info(&mut crate::router(st.clone()), Some(http)).await;
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["media_here"], true);
        assert_eq!(
            v["listeners"],
            serde_json::json!([
                {"protocol": "http", "address": "127.0.0.1:8080", "port": 8080, "app": ""},
                {"protocol": "rtmp", "address": "0.0.0.0:1935", "port": 1935, "app": "live"},
            ])
        );

        // On api.listen the request's own port is not the media port: only an announced one.
        let api: SocketAddr = ([127, 0, 0, 1], 9090).into();
        let v = info(&mut crate::admin_listener_router(st.clone()), Some(api)).await;
        assert_eq!(v["media_here"], false);
        assert_eq!(v["listeners"].as_array().unwrap().len(), 1, "{v}");
        let _media = st.hub.announce_listener(hub::ListenerInfo {
            protocol: "http",
            addr: http,
            app: String::new(),
        });
        let v = info(&mut crate::admin_listener_router(st), Some(api)).await;
        assert_eq!(v["listeners"][0]["port"], 8080);
    }
}
