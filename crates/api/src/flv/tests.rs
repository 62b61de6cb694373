//! HTTP-FLV through the router and WS-FLV through a real listener, fed by a hub publisher
//! with real H.264/AAC configurations.

use super::*;
use crate::tests::state;
use crate::{AdminAccess, media_router};
use axum::Router;
use futures_util::StreamExt;
use hub::{Hub, Publisher, PublisherMeta};
use media::{AacConfig, AvcConfig, MediaInfo, ms_to_ticks};
use rtmp::flv_stream::{FlvReader, FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use std::io::Cursor;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control as WsControl, Data, OpCode};

const AVCC: &[u8] = include_bytes!("../../../../testdata/h264-320x240-baseline.avcc");
const IDR: &[u8] = include_bytes!("../../../../testdata/h264-320x240-baseline-idr.avcc-frame");
const ASC: &[u8] = include_bytes!("../../../../testdata/aac-44k-mono.asc");
const AAC_FRAME: &[u8] = &[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c];
const WAIT: Duration = Duration::from_secs(5);

fn info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(media::VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).unwrap(),
        )),
        audio: Some(media::AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).unwrap(),
        )),
        framerate: Some(25.0),
    }
}

fn video(ms: i64, keyframe: bool) -> media::Frame {
    media::Frame {
        track: media::TrackKind::Video,
        dts: ms_to_ticks(ms),
        pts: ms_to_ticks(ms + 80),
        keyframe,
        payload: Bytes::from_static(IDR),
    }
}

fn audio(ms: i64) -> media::Frame {
    media::Frame {
        track: media::TrackKind::Audio,
        dts: ms_to_ticks(ms),
        pts: ms_to_ticks(ms),
        keyframe: true,
        payload: Bytes::from_static(AAC_FRAME),
    }
}

fn publish(hub: &Hub, code: &str) -> Publisher {
    let p = hub
        .publish(
            code,
            PublisherMeta {
                protocol: "rtmp",
                ..Default::default()
            },
        )
        .unwrap();
    p.announce(info());
    p
}

async fn get(app: &mut Router, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = axum::http::Request::builder().uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    app.call(req).await.unwrap()
}

/// Reads tags from a body or socket feed until `until` says enough.
#[derive(Default)]
struct Tags {
    reader: FlvReader,
    tags: Vec<FlvTag>,
    bytes: Vec<u8>,
}

impl Tags {
    fn push(&mut self, data: &[u8]) {
        if self.bytes.len() < 13 {
            self.bytes.extend_from_slice(data);
        }
        self.reader.push(data);
        while let Some(t) = self.reader.next_tag().expect("valid FLV") {
            self.tags.push(t);
        }
    }
}

type DataStream = axum::body::BodyDataStream;

/// Reads the body until `tags` holds `n` tags; panics after [`WAIT`].
async fn read_tags(body: &mut DataStream, tags: &mut Tags, n: usize) {
    tokio::time::timeout(WAIT, async {
        while tags.tags.len() < n {
            let piece = body.next().await.expect("body ended early").unwrap();
            tags.push(&piece);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {n} tags after {WAIT:?}", tags.tags.len()));
}

async fn body_ends(body: &mut DataStream) {
    tokio::time::timeout(WAIT, async {
        while let Some(piece) = body.next().await {
            piece.unwrap();
        }
    })
    .await
    .expect("the body should end");
}

#[tokio::test]
async fn unknown_idle_and_malformed_names_are_404() {
    let state = state(AdminAccess::local_only()).await;
    let mut app = media_router(state.clone());
    for path in [
        "/live/nobody.flv",
        "/live/cam.mp4",
        "/live/.flv",
        "/live/bad%20code.flv",
        "/live/cam.flv.flv",
    ] {
        assert_eq!(
            get(&mut app, path, &[]).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Published, but no tracks yet: not live.
    let _p = state
        .hub
        .publish("cam", PublisherMeta::default())
        .expect("publish");
    assert_eq!(
        get(&mut app, "/live/cam.flv", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn http_flv_starts_with_header_metadata_sequence_headers_and_the_gop() {
    let state = state(AdminAccess::local_only()).await;
    let mut app = media_router(state.clone());
    let p = publish(&state.hub, "cam");
    // An old GOP, then the cached one: a viewer starts at the last keyframe.
    p.write(video(50_000, true));
    p.write(video(50_040, false));
    p.write(video(51_000, true));
    p.write(audio(51_010));
    p.write(video(51_040, false));

    let resp = get(&mut app, "/live/cam.flv?token=t", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h[header::CONTENT_TYPE], "video/x-flv");
    assert!(
        h[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("no-cache")
    );
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let mut body = resp.into_body().into_data_stream();
    let mut tags = Tags::default();
    read_tags(&mut body, &mut tags, 6).await;
    assert_eq!(
        &tags.bytes[..13],
        b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    );
    let kinds: Vec<u8> = tags.tags.iter().map(|t| t.tag_type).collect();
    assert_eq!(
        kinds,
        [
            TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO, TAG_VIDEO, TAG_AUDIO, TAG_VIDEO
        ]
    );
    assert_eq!(tags.tags[1].body[..5], [0x17, 0, 0, 0, 0]);
    assert_eq!(&tags.tags[1].body[5..], AVCC);
    assert_eq!(tags.tags[2].body[..], [&[0xAF, 0][..], ASC].concat());
    // The GOP from its keyframe, on this viewer's clock; composition time 80 ms.
    let ts: Vec<u32> = tags.tags[3..].iter().map(|t| t.timestamp).collect();
    assert_eq!(ts, [0, 10, 40]);
    assert_eq!(tags.tags[3].body[..5], [0x17, 1, 0, 0, 80]);
    assert_eq!(&tags.tags[3].body[5..], IDR);
    assert_eq!(tags.tags[4].body[..], [&[0xAF, 1][..], AAC_FRAME].concat());
    assert_eq!(tags.tags[5].body[..2], [0x27, 1]);

    // Live frames follow.
    p.write(video(51_080, false));
    read_tags(&mut body, &mut tags, 7).await;
    assert_eq!(tags.tags[6].timestamp, 80);

    // A listed, counted reader with its query arguments.
    let sessions = state.hub.sessions();
    let reader = sessions
        .iter()
        .find(|s| s.protocol == "flv")
        .expect("an flv session");
    assert_eq!(reader.stream, "cam");
    assert!(reader.bytes > 0);
    let stats = state.hub.stats("cam").unwrap();
    assert_eq!(stats.readers, [("flv", 1)], "{stats:?}");

    // Kicked: the body ends.
    assert!(state.hub.kick_session(reader.id));
    body_ends(&mut body).await;
    assert!(state.hub.sessions().iter().all(|s| s.protocol != "flv"));
}

#[tokio::test]
async fn refused_players_get_403() {
    struct Deny;
    impl hub::Admission for Deny {
        fn check(&self, _: hub::AccessRequest) -> hub::DecisionFuture {
            Box::pin(std::future::ready(Err(hub::Denied::new("no token"))))
        }
    }
    let state = state(AdminAccess::local_only()).await;
    let _p = publish(&state.hub, "cam");
    state.hub.set_admission(Arc::new(Deny));
    let mut app = media_router(state.clone());
    let resp = get(&mut app, "/live/cam.flv", &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(state.hub.sessions().iter().all(|s| s.protocol != "flv"));
}

#[tokio::test]
async fn the_rtmp_switch_governs_flv_readers() {
    let state = state(AdminAccess::local_only()).await;
    let record: store::StreamRecord = serde_json::from_value(serde_json::json!({
        "code": "cam", "name": "", "description": "", "tags": [], "stream_key": null,
        "disabled": false, "protocols": {}, "push": [], "created_at_ms": 0, "updated_at_ms": 0
    }))
    .unwrap();
    state.control.put(record).await.unwrap();
    let p = publish(&state.hub, "cam");
    p.write(video(0, true));
    let mut app = media_router(state.clone());
    let resp = get(&mut app, "/live/cam.flv", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    read_tags(&mut body, &mut Tags::default(), 4).await;

    state
        .control
        .update("cam", |r| r.protocols.rtmp = false)
        .await
        .unwrap();
    body_ends(&mut body).await;
    assert_eq!(
        get(&mut app, "/live/cam.flv", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}

/// A reader whose publisher leaves keeps its connection for a republish: the sequence
/// headers come again and the timestamps go on; a longer absence ends it.
#[tokio::test]
async fn a_republish_continues_and_a_long_absence_ends_the_stream() {
    let state = state(AdminAccess::local_only()).await;
    let p = publish(&state.hub, "cam");
    p.write(video(7_000, true));
    let sub = state
        .hub
        .subscribe_live(
            "cam",
            ReaderMeta {
                protocol: "flv",
                ..Default::default()
            },
        )
        .unwrap();
    let mut source = FlvSource::new(sub, state.control.clone(), CancellationToken::new());
    source.grace_period = Duration::from_millis(300);
    let mut tags = Tags::default();
    let next = async |source: &mut FlvSource, tags: &mut Tags| {
        let pieces = tokio::time::timeout(WAIT, source.next())
            .await
            .expect("a batch")
            .expect("not stopped");
        for p in pieces {
            tags.push(&p);
        }
    };
    next(&mut source, &mut tags).await;
    p.write(video(7_040, false));
    next(&mut source, &mut tags).await;
    assert_eq!(tags.tags.len(), 5);
    assert_eq!(tags.tags[4].timestamp, 40);

    drop(p);
    let p = publish(&state.hub, "cam");
    p.write(video(0, true));
    p.write(audio(5));
    while tags.tags.len() < 10 {
        next(&mut source, &mut tags).await;
    }
    let kinds: Vec<u8> = tags.tags[5..].iter().map(|t| t.tag_type).collect();
    assert_eq!(
        kinds,
        [TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO, TAG_VIDEO, TAG_AUDIO]
    );
    // The last picture (dts 40 ms, composition time 80 ms) is shown at 120 ms: the new
    // session's first follows it.
    let ts: Vec<u32> = tags.tags[5..].iter().map(|t| t.timestamp).collect();
    assert_eq!(ts, [40, 40, 40, 121, 126]);

    drop(p);
    let started = Instant::now();
    let stop = tokio::time::timeout(WAIT, source.next())
        .await
        .expect("the stream ends")
        .expect_err("nothing more to send");
    assert_eq!(stop, Stop::Ended);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// An input switch (a new session without an End) keeps the response going on the same
/// timeline, like a republish.
#[tokio::test]
async fn an_input_switch_continues_the_timeline() {
    let state = state(AdminAccess::local_only()).await;
    let mut app = media_router(state.clone());
    let mut p = publish(&state.hub, "cam");
    p.write(video(90_000, true));
    p.write(video(90_040, false));
    let mut body = get(&mut app, "/live/cam.flv", &[])
        .await
        .into_body()
        .into_data_stream();
    let mut tags = Tags::default();
    read_tags(&mut body, &mut tags, 5).await;
    // The backup's clock is elsewhere entirely.
    p.switch_session(info());
    p.write(video(5_000, true));
    p.write(audio(5_020));
    read_tags(&mut body, &mut tags, 10).await;
    let kinds: Vec<u8> = tags.tags[5..].iter().map(|t| t.tag_type).collect();
    assert_eq!(
        kinds,
        [TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO, TAG_VIDEO, TAG_AUDIO]
    );
    let ts: Vec<u32> = tags.tags.iter().map(|t| t.timestamp).collect();
    assert_eq!(ts, [0, 0, 0, 0, 40, 40, 40, 40, 121, 141]);
}

/// A viewer that stops reading loses frames up to the next keyframe; a viewer beside it gets
/// every frame, and the publisher never waits.
#[tokio::test]
async fn a_slow_reader_skips_ahead_and_disturbs_no_one() {
    let mut state = state(AdminAccess::local_only()).await;
    state.hub = Hub::new(hub::HubConfig {
        reader_queue_frames: 16,
        ..Default::default()
    });
    let mut app = media_router(state.clone());
    let p = publish(&state.hub, "cam");
    p.write(video(0, true));
    let mut fast = get(&mut app, "/live/cam.flv", &[])
        .await
        .into_body()
        .into_data_stream();
    let mut slow = get(&mut app, "/live/cam.flv", &[])
        .await
        .into_body()
        .into_data_stream();
    let mut fast_tags = Tags::default();
    let mut slow_tags = Tags::default();
    read_tags(&mut fast, &mut fast_tags, 4).await;
    read_tags(&mut slow, &mut slow_tags, 4).await;
    // 100 frames, a keyframe every 25, while the slow viewer reads nothing.
    for i in 1..=100 {
        p.write(video(i * 40, i % 25 == 0));
        if i % 10 == 0 {
            read_tags(&mut fast, &mut fast_tags, 4 + i as usize).await;
        }
    }
    p.write(video(101 * 40, false));
    read_tags(&mut fast, &mut fast_tags, 4 + 101).await;
    let fast_ts: Vec<u32> = fast_tags.tags[3..].iter().map(|t| t.timestamp).collect();
    assert_eq!(fast_ts, (0..=101).map(|i| i * 40).collect::<Vec<_>>());

    // The slow one resumes at a keyframe after a gap, and then gets everything.
    tokio::time::timeout(WAIT, async {
        while slow_tags.tags.last().map(|t| t.timestamp) != Some(101 * 40) {
            let piece = slow.next().await.expect("body").unwrap();
            slow_tags.push(&piece);
        }
    })
    .await
    .expect("the slow reader catches up");
    let resumed = &slow_tags.tags[4];
    assert!(resumed.timestamp > 40, "{}", resumed.timestamp);
    assert_eq!(resumed.body[0] >> 4, 1, "resumes at a keyframe");
    assert!(state.hub.stats("cam").unwrap().frames_dropped > 0);
}

/// A raw WebSocket client: the upgrade, then server frames read with tungstenite's parser.
struct WsClient {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    async fn connect(addr: SocketAddr, path: &str, key: Option<&str>) -> (u16, String, WsClient) {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(k) = key {
            req.push_str(&format!("Sec-WebSocket-Key: {k}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let mut chunk = [0u8; 1024];
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed inside the response head");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("response head");
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let rest = buf.split_off(head_end);
        (status, head, WsClient { sock, buf: rest })
    }

    /// The next frame from the server; `None` at EOF.
    async fn frame(&mut self) -> Option<(OpCode, Vec<u8>)> {
        tokio::time::timeout(WAIT, async {
            loop {
                let mut cursor = Cursor::new(&self.buf);
                if let Some((h, len)) = FrameHeader::parse(&mut cursor).unwrap() {
                    let start = cursor.position() as usize;
                    let end = start + len as usize;
                    if self.buf.len() >= end {
                        assert!(h.mask.is_none(), "server frames are not masked");
                        assert!(h.is_final);
                        let payload = self.buf[start..end].to_vec();
                        self.buf.drain(..end);
                        return Some((h.opcode, payload));
                    }
                }
                let mut chunk = [0u8; 16 << 10];
                let n = self.sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("a frame or EOF")
    }

    async fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        let out = ws::tests::client(opcode, payload, true);
        self.sock.write_all(&out).await.unwrap();
    }

    /// Binary messages until `tags` holds `n` tags.
    async fn read_tags(&mut self, tags: &mut Tags, n: usize) {
        while tags.tags.len() < n {
            match self.frame().await {
                Some((OpCode::Data(Data::Binary), payload)) => tags.push(&payload),
                other => panic!("expected binary FLV, got {other:?}"),
            }
        }
    }
}

async fn listen(state: AppState) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::server::serve(
        listener,
        media_router(state),
        Default::default(),
        shutdown.clone(),
    ));
    (addr, shutdown)
}

#[tokio::test]
async fn ws_flv_carries_the_same_bytes_answers_pings_and_closes() {
    let state = state(AdminAccess::local_only()).await;
    let p = publish(&state.hub, "cam");
    p.write(video(3_000, true));
    p.write(audio(3_001));
    let (addr, shutdown) = listen(state.clone()).await;

    // The RFC 6455 example key.
    let (status, head, mut ws) =
        WsClient::connect(addr, "/live/cam.flv", Some("dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut tags = Tags::default();
    ws.read_tags(&mut tags, 5).await;
    assert_eq!(&tags.bytes[..4], b"FLV\x01");
    let kinds: Vec<u8> = tags.tags.iter().map(|t| t.tag_type).collect();
    assert_eq!(
        kinds,
        [TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO, TAG_VIDEO, TAG_AUDIO]
    );
    assert_eq!(tags.tags[4].timestamp, 1);
    p.write(video(3_040, false));
    ws.read_tags(&mut tags, 6).await;
    assert_eq!(tags.tags[5].timestamp, 40);
    assert!(
        state
            .hub
            .sessions()
            .iter()
            .any(|s| s.protocol == "flv" && s.bytes > 0)
    );

    // Ping, pong; text from the client is ignored.
    ws.send(OpCode::Data(Data::Text), b"hello").await;
    ws.send(OpCode::Control(WsControl::Ping), b"are you there")
        .await;
    loop {
        match ws.frame().await {
            Some((OpCode::Control(WsControl::Pong), payload)) => {
                assert_eq!(payload, b"are you there");
                break;
            }
            Some((OpCode::Data(Data::Binary), _)) => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    // The client closes: a close comes back and the session is gone.
    ws.send(OpCode::Control(WsControl::Close), &1000u16.to_be_bytes())
        .await;
    let mut closed = false;
    while let Some((op, payload)) = ws.frame().await {
        if op == OpCode::Control(WsControl::Close) {
            assert_eq!(payload[..2], 1000u16.to_be_bytes());
            closed = true;
        }
    }
    assert!(closed, "no close frame");
    tokio::time::timeout(WAIT, async {
        while state.hub.sessions().iter().any(|s| s.protocol == "flv") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ws-flv session ends");

    // A second viewer is kicked, then a third sees the server shut down.
    let (_, _, mut kicked) =
        WsClient::connect(addr, "/live/cam.flv", Some("AAAAAAAAAAAAAAAAAAAAAA==")).await;
    kicked.read_tags(&mut Tags::default(), 5).await;
    let id = state
        .hub
        .sessions()
        .iter()
        .find(|s| s.protocol == "flv")
        .map(|s| s.id)
        .unwrap();
    assert!(state.hub.kick_session(id));
    let last = loop {
        match kicked.frame().await {
            Some((OpCode::Data(Data::Binary), _)) => {}
            other => break other,
        }
    };
    let (op, payload) = last.expect("a close frame");
    assert_eq!(op, OpCode::Control(WsControl::Close));
    assert_eq!(payload[..2], 1008u16.to_be_bytes());

    let (_, _, mut third) =
        WsClient::connect(addr, "/live/cam.flv", Some("AQEBAQEBAQEBAQEBAQEBAQ==")).await;
    third.read_tags(&mut Tags::default(), 5).await;
    shutdown.cancel();
    let last = loop {
        match third.frame().await {
            Some((OpCode::Data(Data::Binary), _)) => {}
            other => break other,
        }
    };
    let (op, payload) = last.expect("a close frame");
    assert_eq!(op, OpCode::Control(WsControl::Close));
    assert_eq!(payload[..2], 1001u16.to_be_bytes());
}

#[tokio::test]
async fn ws_upgrades_that_are_not_or_not_for_a_live_stream() {
    let state = state(AdminAccess::local_only()).await;
    let _p = publish(&state.hub, "cam");
    let (addr, shutdown) = listen(state).await;
    let (status, head, _) = WsClient::connect(addr, "/live/cam.flv", None).await;
    assert_eq!(status, 400, "{head}");
    let (status, head, _) =
        WsClient::connect(addr, "/live/nobody.flv", Some("dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert_eq!(status, 404, "{head}");
    shutdown.cancel();
}
