use super::*;
use bytes::Bytes;
use hub::{AccessRequest, Admission, DecisionFuture, Denied, Event, HubConfig, PublisherMeta};
use media::{AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use std::sync::Arc;
use std::time::Duration;
use store::RetryPolicy;
use tokio::net::TcpListener;

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");

fn info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).unwrap(),
        )),
        audio: None,
        framerate: Some(25.0),
    }
}

fn frame(i: i64) -> Frame {
    // Publisher clock far from zero: pushes must restart at 0.
    let dts = (i + 5000) * 3600;
    Frame {
        track: TrackKind::Video,
        dts,
        pts: dts,
        keyframe: i % 25 == 0,
        payload: Bytes::from(vec![
            0,
            0,
            0,
            2,
            if i % 25 == 0 { 0x65 } else { 0x41 },
            0x88,
        ]),
    }
}

fn dest(url: &str, limit: u32) -> PushDestination {
    PushDestination {
        url: url.into(),
        enabled: true,
        timeout_s: 2,
        retry: RetryPolicy {
            initial_s: 0.2,
            max_s: 0.4,
        },
        limit,
        comment: String::new(),
        rendition: String::new(),
    }
}

/// A real RTMP server (ours) on a free port, acting as the remote.
async fn remote(admission: Option<Arc<dyn Admission>>) -> (Hub, u16, CancellationToken) {
    let hub = Hub::new(HubConfig::default());
    if let Some(a) = admission {
        hub.set_admission(a);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let server = rtmp::server::Server::new(hub.clone(), rtmp::server::ServerConfig::default());
    tokio::spawn(server.run(listener, stop.clone()));
    (hub, port, stop)
}

async fn origin(dests: Vec<PushDestination>) -> (Hub, PushManager, CancellationToken) {
    let hub = Hub::new(HubConfig::default());
    let manager = PushManager::new(hub.clone(), None);
    manager.set_source(Arc::new(move |_: &str| dests.clone()));
    let stop = CancellationToken::new();
    tokio::spawn(manager.clone().run(stop.clone()));
    tokio::task::yield_now().await;
    (hub, manager, stop)
}

fn meta() -> PublisherMeta {
    PublisherMeta {
        protocol: "test",
        ..PublisherMeta::default()
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn pushes_a_live_stream_with_timestamps_from_zero() {
    let (remote_hub, port, remote_stop) = remote(None).await;
    let url = format!("rtmp://127.0.0.1:{port}/live/copy");
    let (hub, manager, stop) = origin(vec![dest(&url, 0)]).await;
    let mut sub = remote_hub.subscribe("copy", "test");

    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("push active", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Active)
    })
    .await;
    for i in 0..60 {
        p.write(frame(i));
    }
    let Some(Event::Tracks { info: got, .. }) = sub.recv().await else {
        panic!("tracks first")
    };
    assert_eq!(got.avc().unwrap().width, 320);
    let mut dts = Vec::new();
    while dts.len() < 60 {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Frame(f))) => dts.push(f.dts),
            other => panic!("frames expected, got {other:?}"),
        }
    }
    assert_eq!(dts[0], 0, "each push session starts at 0");
    assert!(dts.windows(2).all(|w| w[0] < w[1]));
    let st = &manager.status("src")[0];
    assert!(st.bytes_sent > 0 && st.connected_at.is_some() && st.attempt == 1);

    // Republish: the push restarts at once with a fresh attempt count.
    drop(p);
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("push active again", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Active && s.attempt == 1)
    })
    .await;
    drop(p);
    wait_for("workers stopped with the stream", || {
        manager.status("src").is_empty()
    })
    .await;
    // A stream only relayed here (a cluster edge's pull) is pushed by its origin, not again.
    hub.set_relay(Arc::new(|code: &str| code == "src"));
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(manager.status("src").is_empty(), "a relayed stream pushed");
    drop(p);
    stop.cancel();
    remote_stop.cancel();
}

#[tokio::test]
async fn destination_down_reconnects_with_backoff_then_fails_at_limit() {
    // A port with nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("rtmp://127.0.0.1:{port}/live/x");
    let (hub, manager, stop) = origin(vec![dest(&url, 3)]).await;
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("reconnecting", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Reconnecting)
    })
    .await;
    let st = &manager.status("src")[0];
    assert!(st.next_retry_at.is_some());
    assert!(
        st.last_errors[0].message.to_lowercase().contains("refused"),
        "{:?}",
        st.last_errors
    );
    wait_for("failed after 3 attempts", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Failed)
    })
    .await;
    let st = &manager.status("src")[0];
    assert_eq!(st.attempt, 3);
    assert_eq!(st.last_errors.len(), 3);
    assert!(st.next_retry_at.is_none());

    // A manual retry tries again at once.
    assert_eq!(manager.retry("src", &url), RetryOutcome::Started);
    wait_for("a fourth attempt", || manager.status("src")[0].attempt >= 4).await;
    assert_eq!(
        manager.retry("src", "rtmp://elsewhere/a/b"),
        RetryOutcome::NotRunning
    );
    drop(p);
    stop.cancel();
}

#[tokio::test]
async fn silent_destination_respects_the_timeout() {
    // Accepts TCP, never answers the handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let url = format!("rtmp://127.0.0.1:{port}/live/x");
    let mut d = dest(&url, 1);
    d.timeout_s = 1;
    let (hub, manager, stop) = origin(vec![d]).await;
    let started = std::time::Instant::now();
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("failed", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Failed)
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "gave up after {waited:?}"
    );
    let msg = &manager.status("src")[0].last_errors[0].message;
    assert!(msg.contains("timed out"), "{msg}");
    drop(p);
    stop.cancel();
    hold.abort();
}

struct Refuse;

impl Admission for Refuse {
    fn check(&self, _: AccessRequest) -> DecisionFuture {
        Box::pin(std::future::ready(Err(Denied::new("no publishing here"))))
    }
}

#[tokio::test]
async fn refused_publish_records_the_remote_status() {
    let (_remote_hub, port, remote_stop) = remote(Some(Arc::new(Refuse))).await;
    let url = format!("rtmp://127.0.0.1:{port}/live/copy");
    let (hub, manager, stop) = origin(vec![dest(&url, 1)]).await;
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("failed", || {
        manager
            .status("src")
            .first()
            .is_some_and(|s| s.state == PushState::Failed)
    })
    .await;
    let msg = &manager.status("src")[0].last_errors[0].message;
    assert!(
        msg.contains("NetStream.Publish.BadName") && msg.contains("no publishing here"),
        "{msg}"
    );
    drop(p);
    stop.cancel();
    remote_stop.cancel();
}

#[tokio::test]
async fn reconcile_touches_only_changed_destinations() {
    let (_remote_hub, port, remote_stop) = remote(None).await;
    let a = dest(&format!("rtmp://127.0.0.1:{port}/live/a"), 0);
    let b = dest(&format!("rtmp://127.0.0.1:{port}/live/b"), 0);
    let config = Arc::new(Mutex::new(vec![a.clone(), b.clone()]));
    let hub = Hub::new(HubConfig::default());
    let manager = PushManager::new(hub.clone(), None);
    let c = config.clone();
    manager.set_source(Arc::new(move |_: &str| c.lock().unwrap().clone()));
    let stop = CancellationToken::new();
    tokio::spawn(manager.clone().run(stop.clone()));
    tokio::task::yield_now().await;
    let p = hub.publish("src", meta()).unwrap();
    p.announce(info());
    wait_for("both active", || {
        let s = manager.status("src");
        s.len() == 2 && s.iter().all(|s| s.state == PushState::Active)
    })
    .await;
    let a_since = manager.status("src")[0].connected_at;

    // Change b's retry policy: b restarts, a keeps its session.
    let mut b2 = b.clone();
    b2.retry.max_s = 5.0;
    *config.lock().unwrap() = vec![a.clone(), b2];
    manager.reconcile("src");
    let s = manager.status("src");
    assert_eq!(
        s[0].connected_at, a_since,
        "untouched destination kept its session"
    );
    assert_eq!(s[1].state, PushState::Starting);

    // Disable a: only b remains.
    let mut a_off = a.clone();
    a_off.enabled = false;
    *config.lock().unwrap() = vec![a_off, b.clone()];
    manager.reconcile("src");
    assert_eq!(manager.status("src").len(), 1);
    drop(p);
    stop.cancel();
    remote_stop.cancel();
}

#[test]
fn backoff_grows_exponentially_with_jitter_up_to_the_cap() {
    let d = PushDestination {
        retry: RetryPolicy {
            initial_s: 1.0,
            max_s: 30.0,
        },
        ..dest("rtmp://h/a/b", 0)
    };
    for (failures, base) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)] {
        for seed in 1..50u64 {
            let got = worker::backoff(&d, failures, seed * 7919).as_secs_f64();
            assert!(
                got >= base * 0.8 - 1e-9 && got <= base * 1.2 + 1e-9,
                "failures {failures}: {got}"
            );
        }
    }
}

#[test]
fn a_relay_push_belongs_to_the_next_publish_session_only() {
    let m = PushManager::new(Hub::new(HubConfig::default()), None);
    let url = "rtmp://origin.example/live/k";
    assert!(m.relay_push("c", "http://nope/x").is_err());
    m.relay_push("c", url).unwrap();
    // Waiting for its publisher: not pushed to yet.
    assert!(m.destinations("c").is_empty());
    m.claim_relay("c", 7);
    let dests = m.destinations("c");
    assert_eq!(dests.len(), 1);
    assert_eq!(dests[0].url, url);
    assert!(m.destinations("other").is_empty());
    // The same session again (a resync) keeps it; a later session without a redirect drops it.
    m.claim_relay("c", 7);
    assert_eq!(m.destinations("c").len(), 1);
    m.claim_relay("c", 8);
    assert!(m.destinations("c").is_empty());
}
