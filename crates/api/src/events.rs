//! `GET /api/v1/events`: a server-sent event stream of every stream's runtime, so a dashboard
//! shows live state without polling each stream.
//!
//! One `snapshot` event at once, then one a second, and one shortly after any publish or
//! unpublish. Each connection builds its own snapshots from the hub (no shared producer task to
//! own); their number is capped, and each ends when its client goes away (the body is dropped)
//! or the listener shuts down ([`crate::server::ShutdownSignal`]).

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::sessions::{SessionView, session_view};
use crate::streams::{StreamView, check_code, stream_views};
use crate::time::{rfc3339, system_ms};
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

/// A snapshot a second: the hub's bitrates are per-second figures, and a dashboard graph
/// gains one point per event.
const TICK: Duration = Duration::from_secs(1);
/// After a publish or unpublish, the next snapshot comes this soon; the delay lets a new
/// publisher announce its tracks (until then the stream is not `live`) and coalesces bursts.
const SOON: Duration = Duration::from_millis(250);
/// Event streams open at once, over all clients; each costs one snapshot a second.
pub const MAX_EVENT_STREAMS: usize = 64;
/// Sessions listed in one snapshot; `sessions_total` says how many there are.
const MAX_SESSIONS: usize = 500;

/// What the event stream covers.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this stream, with its sessions (publisher and readers).
    stream: Option<String>,
}

/// The data of one `snapshot` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Snapshot {
    /// Server time of the snapshot.
    at: String,
    /// Every stream as `GET /api/v1/streams` lists it, or only the one asked for (empty when
    /// it neither is configured nor live).
    streams: Vec<StreamView>,
    /// With `stream`: its sessions, oldest first, at most 500.
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<Vec<SessionView>>,
    /// With `stream`: how many sessions it has (more than `sessions` lists when over 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions_total: Option<usize>,
}

fn snapshot(state: &AppState, only: Option<&str>) -> Snapshot {
    let streams = stream_views(state, only);
    let (sessions, sessions_total) = match only {
        None => (None, None),
        Some(code) => {
            let all: Vec<_> = state
                .hub
                .sessions()
                .into_iter()
                .filter(|s| s.stream == code)
                .collect();
            let total = all.len();
            let listed = all.into_iter().take(MAX_SESSIONS).map(session_view);
            (Some(listed.collect()), Some(total))
        }
    };
    Snapshot {
        at: rfc3339(system_ms(SystemTime::now())),
        streams,
        sessions,
        sessions_total,
    }
}

/// A place among [`MAX_EVENT_STREAMS`], given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_EVENT_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The state of one client's event stream.
struct Feed {
    state: AppState,
    only: Option<String>,
    hub_events: broadcast::Receiver<hub::HubEvent>,
    shutdown: CancellationToken,
    next: Instant,
    _slot: Slot,
}

impl Feed {
    /// Waits for the next snapshot's time and builds it; `None` ends the stream (shutdown).
    async fn next_event(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(self.next) => break,
                ev = self.hub_events.recv() => match ev {
                    // A lagged receiver missed changes: a snapshot covers them all anyway.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.next = self.next.min(Instant::now() + SOON);
                    }
                    // The hub lives as long as the state; without events the ticks remain.
                    Err(broadcast::error::RecvError::Closed) => {
                        self.hub_events = broadcast::channel(1).1;
                    }
                },
            }
        }
        self.next = Instant::now() + TICK;
        let snap = snapshot(&self.state, self.only.as_deref());
        let event = match serde_json::to_string(&snap) {
            Ok(json) => Event::default().event("snapshot").data(json),
            // Views hold strings and numbers only; should one ever fail, say so in the stream
            // rather than end it.
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Some((Ok(event), self))
    }
}

/// A server-sent event stream of runtime snapshots (`event: snapshot`, JSON data): one at
/// once, one a second, and one shortly after a stream goes live or idle.
#[utoipa::path(
    get,
    path = "/events",
    tag = "streams",
    params(EventsQuery),
    responses(
        (status = 200, description = "`text/event-stream` of `snapshot` events whose data is this JSON", body = Snapshot, content_type = "text/event-stream"),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 429, description = "Too many event streams open", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    signal: Option<Extension<crate::server::ShutdownSignal>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    if let Some(code) = &q.stream {
        check_code(code)?;
    }
    let slot = Slot::take(&state.requests.event_streams).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            format!("{MAX_EVENT_STREAMS} event streams are open; close one and retry"),
        )
    })?;
    let feed = Feed {
        hub_events: state.hub.events(),
        state,
        only: q.stream,
        // Without a listener (a router called directly, as in tests) only the client ends it.
        shutdown: signal.map(|Extension(s)| s.0).unwrap_or_default(),
        next: Instant::now(),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next_event);
    let mut resp = Sse::new(stream).into_response();
    // Reverse proxies (nginx) would otherwise buffer the stream and deliver it in bursts.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdminAccess;
    use crate::tests::state;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, header};
    use futures_util::StreamExt;
    use std::net::SocketAddr;
    use tower_service::Service;

    async fn open(app: &mut axum::Router, path: &str, auth: Option<&str>) -> Response {
        let mut req = Request::builder().uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        app.call(req).await.unwrap()
    }

    /// The next whole event of `body`: (event name, parsed data).
    async fn next_event(
        body: &mut axum::body::BodyDataStream,
        buf: &mut String,
    ) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let raw: String = buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("an event within 5 s")?
                .unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    #[tokio::test]
    async fn the_event_stream_needs_the_token() {
        let mut app = crate::router(state(AdminAccess::new(Some("s3cret-token"), None)).await);
        let r = open(&mut app, "/api/v1/events", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = open(&mut app, "/api/v1/events", Some("Bearer wrong")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = open(&mut app, "/api/v1/events", Some("Bearer s3cret-token")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/event-stream"
        );
    }

    #[tokio::test]
    async fn the_first_snapshot_comes_at_once_with_every_stream() {
        let st = state(AdminAccess::local_only()).await;
        let mut app = crate::router(st.clone());
        let mut req = Request::builder()
            .method("PUT")
            .uri("/api/v1/streams/cam1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"name":"<b>Cam</b>","push":[{"url":"rtmp://h/app/k3y"}]}"#,
            ))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert_eq!(app.call(req).await.unwrap().status(), StatusCode::CREATED);
        // A runtime-only stream, live without configuration.
        let publisher = st
            .hub
            .publish(
                "auto",
                hub::PublisherMeta {
                    protocol: "rtmp",
                    ..Default::default()
                },
            )
            .unwrap();
        publisher.announce(media::MediaInfo {
            video_metadata: None,
            video: None,
            audio: None,
            framerate: None,
        });

        let started = std::time::Instant::now();
        let r = open(&mut app, "/api/v1/events", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get(header::CACHE_CONTROL).unwrap(), "no-cache");
        let mut body = r.into_body().into_data_stream();
        let mut buf = String::new();
        let (name, data) = next_event(&mut body, &mut buf).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "first event at once, not after a tick"
        );
        assert_eq!(name, "snapshot");
        assert!(data["at"].as_str().unwrap().ends_with('Z'));
        assert!(
            data.get("sessions").is_none(),
            "sessions only with ?stream="
        );
        let streams = data["streams"].as_array().unwrap();
        let codes: Vec<&str> = streams
            .iter()
            .map(|s| s["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["auto", "cam1"]);
        let cam = &streams[1];
        assert_eq!(cam["name"], "<b>Cam</b>");
        assert_eq!(cam["runtime"]["status"], "idle");
        assert_eq!(
            cam["push"][0]["url"], "rtmp://h/app/****",
            "secrets stay masked"
        );
        assert!(cam["runtime"].get("bitrate_history").is_none());
        assert_eq!(streams[0]["runtime"]["status"], "live");
        assert_eq!(streams[0]["persistent"], false);
        for key in [
            "bitrate_in_kbps",
            "bitrate_out_kbps",
            "readers",
            "frames_dropped",
            "pushes",
        ] {
            assert!(cam["runtime"].get(key).is_some(), "runtime.{key}");
        }

        // The next one follows within the tick; the publisher leaving shows up.
        drop(publisher);
        let (_, data) = next_event(&mut body, &mut buf).await.unwrap();
        let codes: Vec<&str> = data["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["cam1"], "a runtime stream is gone once idle");
    }

    #[tokio::test]
    async fn one_stream_comes_with_its_sessions() {
        let st = state(AdminAccess::local_only()).await;
        let mut app = crate::router(st.clone());
        let _publisher = st
            .hub
            .publish(
                "one",
                hub::PublisherMeta {
                    protocol: "srt",
                    ..Default::default()
                },
            )
            .unwrap();
        let _other = st
            .hub
            .publish("two", hub::PublisherMeta::default())
            .unwrap();
        let r = open(&mut app, "/api/v1/events?stream=one", None).await;
        let mut body = r.into_body().into_data_stream();
        let (_, data) = next_event(&mut body, &mut String::new()).await.unwrap();
        assert_eq!(data["sessions_total"], 1);
        assert_eq!(data["sessions"][0]["protocol"], "srt");
        assert_eq!(data["sessions"][0]["role"], "publisher");
        assert!(data["streams"].as_array().unwrap().len() <= 1);

        for bad in ["/api/v1/events?stream=a%20b", "/api/v1/events?bogus=1"] {
            let r = open(&mut app, bad, None).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn event_streams_are_capped_and_give_their_place_back() {
        let st = state(AdminAccess::local_only()).await;
        let mut app = crate::router(st.clone());
        let mut open_ones = Vec::new();
        for _ in 0..MAX_EVENT_STREAMS {
            let r = open(&mut app, "/api/v1/events", None).await;
            assert_eq!(r.status(), StatusCode::OK);
            open_ones.push(r);
        }
        let r = open(&mut app, "/api/v1/events", None).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // A client that goes away (its body dropped) frees its place.
        open_ones.pop();
        let r = open(&mut app, "/api/v1/events", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        drop(r);
        drop(open_ones);
        assert_eq!(st.requests.event_streams.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn shutdown_ends_the_stream_and_the_listener_drains() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let st = state(AdminAccess::local_only()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let served = tokio::spawn(crate::server::serve(
            listener,
            crate::router(st),
            crate::server::HttpServerConfig::default(),
            stop.clone(),
        ));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("event: snapshot") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("first event")
                .unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        stop.cancel();
        // The response ends (last chunk) and the connection closes well within a second.
        tokio::time::timeout(Duration::from_secs(2), async {
            while s.read(&mut buf).await.unwrap_or(0) > 0 {}
        })
        .await
        .expect("stream closed at shutdown");
        tokio::time::timeout(Duration::from_secs(2), served)
            .await
            .expect("serve returned")
            .unwrap();
    }
}
