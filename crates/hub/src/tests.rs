use super::*;
use bytes::Bytes;
use media::{Frame, MediaInfo, OpaqueCodec, TrackKind, VideoCodec};

fn meta() -> PublisherMeta {
    PublisherMeta {
        protocol: "test",
        ..PublisherMeta::default()
    }
}

fn reader(protocol: &'static str) -> ReaderMeta {
    ReaderMeta {
        protocol,
        remote_addr: Some(([127, 0, 0, 1], 5000).into()),
        ..ReaderMeta::default()
    }
}

fn video_info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::Opaque {
            codec: OpaqueCodec::FlvId(7),
            sequence_header: None,
        }),
        audio: None,
        framerate: None,
    }
}

fn vframe(n: i64, key: bool) -> Frame {
    Frame {
        track: TrackKind::Video,
        dts: n * 3000,
        pts: n * 3000,
        keyframe: key,
        payload: Bytes::from(vec![n as u8; 100]),
    }
}

fn expect_frame(ev: Option<Event>) -> Frame {
    match ev {
        Some(Event::Frame(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test]
async fn late_reader_starts_at_cached_keyframe() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    for n in 0..10 {
        p.write(vframe(n, n % 4 == 0));
    }
    let mut s = hub.subscribe("a", "t");
    assert!(matches!(s.recv().await, Some(Event::Tracks { .. })));
    // Last keyframe was frame 8: reader gets 8 and 9 at once.
    let f = expect_frame(s.recv().await);
    assert!(f.keyframe);
    assert_eq!(f.dts, 8 * 3000);
    assert_eq!(expect_frame(s.recv().await).dts, 9 * 3000);
    assert!(s.try_recv().is_none());
    p.write(vframe(10, false));
    assert_eq!(expect_frame(s.recv().await).dts, 10 * 3000);
}

#[tokio::test]
async fn payload_is_shared_not_copied() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let mut r1 = hub.subscribe("a", "t");
    let mut r2 = hub.subscribe("a", "t");
    let f = vframe(0, true);
    let ptr = f.payload.as_ptr();
    p.write(f);
    for r in [&mut r1, &mut r2] {
        assert!(matches!(r.recv().await, Some(Event::Tracks { .. })));
        assert_eq!(expect_frame(r.recv().await).payload.as_ptr(), ptr);
    }
}

#[tokio::test]
async fn reader_waits_for_publisher() {
    let hub = Hub::new(HubConfig::default());
    let mut s = hub.subscribe("late", "t");
    assert!(s.try_recv().is_none());
    assert!(!hub.is_live("late"));
    let p = hub.publish("late", meta()).unwrap();
    p.announce(video_info());
    p.write(vframe(0, true));
    assert!(matches!(s.recv().await, Some(Event::Tracks { .. })));
    assert!(expect_frame(s.recv().await).keyframe);
}

#[tokio::test]
async fn second_publisher_refused_first_unaffected() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let mut s = hub.subscribe("a", "t");
    assert_eq!(
        hub.publish("a", meta()).unwrap_err(),
        PublishError::AlreadyPublishing("a".into())
    );
    p.write(vframe(0, true));
    assert!(matches!(s.recv().await, Some(Event::Tracks { .. })));
    assert!(expect_frame(s.recv().await).keyframe);
    assert!(hub.is_live("a"));
}

#[tokio::test]
async fn invalid_codes_refused() {
    let hub = Hub::new(HubConfig::default());
    for code in [
        "",
        "/a",
        "a/",
        "a//b",
        "a/../b",
        "a b",
        "ü",
        &"x".repeat(129),
    ] {
        assert!(matches!(
            hub.publish(code, meta()),
            Err(PublishError::InvalidCode(_))
        ));
    }
    assert!(valid_code(&"x".repeat(128)));
    assert!(valid_code("region/north/news"));
    assert!(!valid_name("region/north"));
    assert!(hub.publish("a/b-c/d_1", meta()).is_ok());
}

#[tokio::test]
async fn slow_reader_skips_to_next_keyframe_and_counts() {
    let hub = Hub::new(HubConfig {
        reader_queue_frames: 16,
        ..HubConfig::default()
    });
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let mut slow = hub.subscribe("a", "t");
    assert!(matches!(slow.recv().await, Some(Event::Tracks { .. })));
    // 40 frames overflow a 16-slot ring; keyframes every 10.
    for n in 0..40 {
        p.write(vframe(n, n % 10 == 0));
    }
    let first = expect_frame(slow.recv().await);
    assert!(first.keyframe, "resumed on a keyframe");
    assert_eq!(first.dts, 30 * 3000);
    let mut rest = 0;
    while slow.try_recv().is_some() {
        rest += 1;
    }
    assert_eq!(rest, 9);
    assert_eq!(slow.dropped(), 30);
    assert_eq!(hub.stats("a").unwrap().frames_dropped, 30);
}

#[tokio::test]
async fn end_and_republish_continue_readers() {
    let hub = Hub::new(HubConfig::default());
    let mut s = hub.subscribe("a", "t");
    let p = hub.publish("a", meta()).unwrap();
    let first_session = p.session();
    p.announce(video_info());
    p.write(vframe(0, true));
    drop(p);
    assert!(!hub.is_live("a"));
    let p2 = hub.publish("a", meta()).unwrap();
    p2.announce(video_info());
    p2.write(vframe(0, true));

    let Some(Event::Tracks { session, .. }) = s.recv().await else {
        panic!("tracks first")
    };
    assert_eq!(session, first_session);
    expect_frame(s.recv().await);
    assert!(matches!(s.recv().await, Some(Event::End)));
    let Some(Event::Tracks { session, .. }) = s.recv().await else {
        panic!("tracks after republish")
    };
    assert_ne!(session, first_session);
    assert!(expect_frame(s.recv().await).keyframe);
}

#[tokio::test]
async fn gop_cache_cap_disables_until_next_keyframe() {
    let hub = Hub::new(HubConfig {
        gop_cache_max_bytes: 250,
        ..HubConfig::default()
    });
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    for n in 0..5 {
        p.write(vframe(n, n == 0));
    }
    assert_eq!(hub.stats("a").unwrap().gop_cache_frames, 0);
    p.write(vframe(5, true));
    assert_eq!(hub.stats("a").unwrap().gop_cache_frames, 1);
}

#[tokio::test]
async fn agustinsrg_gop_cache_evicts_its_oldest_frames_past_the_cap() {
    let hub = Hub::new(HubConfig {
        gop_cache_max_bytes: 250,
        gop_cache_evict_oldest: true,
        ..HubConfig::default()
    });
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    for n in 0..5 {
        p.write(vframe(n, n == 0));
    }
    let st = hub.stats("a").unwrap();
    assert!(st.gop_cache_bytes <= 250, "{} bytes", st.gop_cache_bytes);
    assert!(st.gop_cache_frames > 0, "the newest frames are kept");
    // A new reader gets those newest frames at once, as that server sends them.
    let mut r = hub.subscribe("a", "t");
    assert!(matches!(r.recv().await, Some(Event::Tracks { .. })));
    let first = expect_frame(r.recv().await);
    assert!(!first.keyframe);
    assert_eq!(first.dts, (5 - st.gop_cache_frames as i64) * 3000);
    p.write(vframe(5, true));
    assert_eq!(hub.stats("a").unwrap().gop_cache_frames, 1);
}

#[tokio::test]
async fn registry_forgets_unused_streams() {
    let hub = Hub::new(HubConfig::default());
    let s = hub.subscribe("a", "t");
    let p = hub.publish("a", meta()).unwrap();
    assert_eq!(hub.list().len(), 1);
    drop(p);
    assert_eq!(hub.list().len(), 1, "reader still attached");
    drop(s);
    assert!(hub.list().is_empty());
    assert!(hub.subscribe_live("a", reader("t")).is_none());
    assert!(hub.list().is_empty());
}

#[tokio::test]
async fn stats_count_readers_per_protocol() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let _r1 = hub.subscribe("a", "rtmp");
    let _r2 = hub.subscribe("a", "rtmp");
    let r3 = hub.subscribe_live("a", reader("hls")).unwrap();
    let st = hub.stats("a").unwrap();
    assert_eq!(st.readers, vec![("hls", 1), ("rtmp", 2)]);
    drop(r3);
    assert_eq!(hub.stats("a").unwrap().readers, vec![("rtmp", 2)]);
    assert_eq!(st.publisher.unwrap().protocol, "test");
}

#[tokio::test]
async fn the_sampler_keeps_a_bitrate_history_per_stream() {
    let hub = Hub::new(HubConfig::default());
    assert!(hub.bitrate_history("a").is_empty(), "unknown stream");
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    hub.sample_rates();
    // A second call within the same second adds no point: the graph's cadence stays 1 s.
    hub.sample_rates();
    let h = hub.bitrate_history("a");
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].in_kbps, h[0].out_kbps), (0, 0));
    drop(p);
    assert!(hub.bitrate_history("a").is_empty(), "gone with the stream");
}

#[test]
fn listeners_are_announced_while_their_guard_lives() {
    let hub = Hub::new(HubConfig::default());
    let info = |protocol, port| ListenerInfo {
        protocol,
        addr: ([0, 0, 0, 0], port).into(),
        app: "live".into(),
    };
    let rtmp = hub.announce_listener(info("rtmp", 1935));
    let srt = hub.announce_listener(info("srt", 9000));
    let _http = hub.announce_listener(info("http", 8080));
    let names: Vec<_> = hub.listeners().iter().map(|l| l.protocol).collect();
    assert_eq!(names, ["http", "rtmp", "srt"]);
    drop(srt);
    drop(rtmp);
    assert_eq!(hub.listeners(), vec![info("http", 8080)]);
}

#[tokio::test]
async fn kick_cancels_publisher() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    assert!(hub.kick_publisher("a"));
    p.killed().await;
    assert!(!hub.kick_publisher("nope"));
}

#[tokio::test]
async fn events_report_publish_and_unpublish() {
    let hub = Hub::new(HubConfig::default());
    let mut ev = hub.events();
    let p = hub.publish("a", meta()).unwrap();
    let session = p.session();
    drop(p);
    assert_eq!(
        ev.recv().await.unwrap(),
        HubEvent::Published {
            code: "a".into(),
            session
        }
    );
    assert_eq!(
        ev.recv().await.unwrap(),
        HubEvent::Unpublished {
            code: "a".into(),
            session
        }
    );
}

#[tokio::test]
async fn without_cached_gop_a_reader_waits_for_the_next_keyframe() {
    let hub = Hub::new(HubConfig {
        gop_cache: false,
        ..HubConfig::default()
    });
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    p.write(vframe(0, true));
    p.write(vframe(1, false));
    let mut s = hub.subscribe("a", "t");
    assert!(matches!(s.recv().await, Some(Event::Tracks { .. })));
    p.write(vframe(2, false));
    p.write(vframe(3, true));
    let f = expect_frame(s.recv().await);
    assert!(
        f.keyframe,
        "delta frames before the first keyframe are skipped"
    );
    assert_eq!(f.dts, 3 * 3000);
}

#[tokio::test]
async fn sessions_list_publishers_and_external_readers_and_kick_them() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let internal = hub.subscribe("a", "hls");
    let r = hub.subscribe_reader("a", reader("rtmp"));
    let m = hub.subscribe_live("a", reader("mpegts")).unwrap();
    p.write(vframe(0, true));
    r.record_sent(1000);

    let list = hub.sessions();
    assert_eq!(list.len(), 3, "internal readers are not sessions: {list:?}");
    let publisher = list
        .iter()
        .find(|s| s.role == SessionRole::Publisher)
        .unwrap();
    assert_eq!(publisher.id, p.session_id());
    assert_eq!(publisher.bytes, 100);
    let rtmp = list.iter().find(|s| s.protocol == "rtmp").unwrap();
    assert_eq!((rtmp.id, rtmp.bytes), (r.session_id().unwrap(), 1000));
    assert_eq!(rtmp.remote_addr, Some(([127, 0, 0, 1], 5000).into()));

    assert!(hub.kick_session(r.session_id().unwrap()));
    r.killed().await;
    assert!(!hub.kick_session(9999));
    assert_eq!(hub.kick_readers("a", Some("mpegts")), 1);
    m.killed().await;
    assert!(hub.kick_session(p.session_id()));
    p.killed().await;
    assert!(internal.session_id().is_none());

    drop((r, m, p));
    assert!(hub.sessions().is_empty());
}

#[tokio::test]
async fn admission_defaults_to_allow_and_can_be_replaced() {
    struct DenyPublish;
    impl Admission for DenyPublish {
        fn check(&self, r: AccessRequest) -> DecisionFuture {
            Box::pin(async move {
                match r.action {
                    Action::Publish => Err(Denied::new("no")),
                    Action::Play => Ok(Admit {
                        code: format!("{}-renamed", r.code),
                        external_id: Some("ext".into()),
                    }),
                }
            })
        }
    }
    let hub = Hub::new(HubConfig::default());
    let req = |action| AccessRequest {
        action,
        code: "a".into(),
        protocol: "rtmp",
        remote_addr: None,
        args: vec![("key".into(), "k".into())],
        client: None,
        command: Default::default(),
    };
    assert_eq!(
        hub.authorize(req(Action::Publish)).await,
        Ok(Admit::new("a"))
    );
    assert_eq!(req(Action::Play).arg("key"), Some("k"));
    hub.set_admission(std::sync::Arc::new(DenyPublish));
    assert_eq!(
        hub.authorize(req(Action::Publish)).await,
        Err(Denied::new("no"))
    );
    assert_eq!(
        hub.authorize(req(Action::Play)).await,
        Ok(Admit {
            code: "a-renamed".into(),
            external_id: Some("ext".into())
        })
    );
    // The defaults of the notification methods: allow the app as given, ignore the rest.
    let client = std::sync::Arc::new(ClientInfo {
        app: "live".into(),
        ..ClientInfo::default()
    });
    let peer = ([127, 0, 0, 1], 1935).into();
    let admission = hub.admission();
    assert_eq!(
        admission.connect(client.clone(), peer).await,
        Ok("live".into())
    );
    admission.disconnect(client, peer);
    assert_ne!(hub.next_connection_id(), hub.next_connection_id());
}

/// Records every notification; calls back into the hub to prove no hub lock is held.
#[derive(Default)]
struct Recorder {
    hub: std::sync::OnceLock<Hub>,
    log: std::sync::Mutex<Vec<(&'static str, SessionInfo)>>,
}

impl Recorder {
    fn install(hub: &Hub) -> std::sync::Arc<Recorder> {
        let r = std::sync::Arc::new(Recorder::default());
        let _ = r.hub.set(hub.clone());
        hub.set_admission(r.clone());
        r
    }

    fn take(&self) -> Vec<(&'static str, SessionInfo)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn record(&self, what: &'static str, s: &SessionInfo) {
        if let Some(hub) = self.hub.get() {
            // Each of these takes a hub lock: a deadlock here means a lock was held.
            let _ = (
                hub.sessions(),
                hub.stats(&s.stream),
                hub.list(),
                hub.admission(),
            );
        }
        self.log.lock().unwrap().push((what, s.clone()));
    }
}

impl Admission for Recorder {
    fn check(&self, r: AccessRequest) -> DecisionFuture {
        Box::pin(std::future::ready(Ok(Admit::new(r.code))))
    }
    fn session_opened(&self, s: &SessionInfo) {
        self.record("opened", s);
    }
    fn session_closed(&self, s: &SessionInfo) {
        self.record("closed", s);
    }
}

#[test]
fn admission_hears_publisher_sessions_open_and_close_once() {
    let hub = Hub::new(HubConfig::default());
    let rec = Recorder::install(&hub);
    let client = std::sync::Arc::new(ClientInfo {
        connection_id: 42,
        app: "live".into(),
        ..ClientInfo::default()
    });
    let p = hub
        .publish(
            "cam",
            PublisherMeta {
                protocol: "rtmp",
                remote_addr: Some(([10, 0, 0, 1], 4000).into()),
                client: Some(client.clone()),
                args: vec![("key".into(), "k".into())],
                external_id: Some("jwt-7".into()),
            },
        )
        .unwrap();
    let log = rec.take();
    assert_eq!(log.len(), 1, "{log:?}");
    let (what, s) = &log[0];
    assert_eq!(*what, "opened");
    assert_eq!(s.id, p.session_id());
    assert_eq!((s.stream.as_str(), s.protocol), ("cam", "rtmp"));
    assert_eq!(s.role, SessionRole::Publisher);
    assert_eq!(s.remote_addr, Some(([10, 0, 0, 1], 4000).into()));
    assert_eq!(s.client.as_ref().map(|c| c.connection_id), Some(42));
    assert_eq!(s.args, vec![("key".to_owned(), "k".to_owned())]);
    assert_eq!(s.external_id.as_deref(), Some("jwt-7"));

    // The list and the stream stats show the same session.
    let listed = hub.sessions();
    assert_eq!(listed[0].external_id.as_deref(), Some("jwt-7"));
    assert_eq!(listed[0].args, s.args);
    assert!(listed[0].client.is_some());
    let stats = hub.stats("cam").unwrap();
    assert_eq!(
        stats.publisher.unwrap().external_id.as_deref(),
        Some("jwt-7")
    );

    p.announce(video_info());
    p.write(vframe(0, true));
    // Kicked: the driver sees the token and drops its publisher; closed comes once, on drop.
    assert!(hub.kick_publisher("cam"));
    assert!(p.kill_token().is_cancelled());
    assert!(rec.take().is_empty(), "a kick alone closes nothing");
    let id = p.session_id();
    drop(p);
    let log = rec.take();
    assert_eq!(log.len(), 1, "{log:?}");
    let (what, s) = &log[0];
    assert_eq!((*what, s.id, s.bytes), ("closed", id, 100));
    assert_eq!(s.external_id.as_deref(), Some("jwt-7"));
    assert!(hub.sessions().is_empty());

    // A refused second publisher opens nothing.
    let _p = hub.publish("cam", meta()).unwrap();
    assert!(hub.publish("cam", meta()).is_err());
    assert_eq!(rec.take().len(), 1);
}

#[test]
fn admission_hears_reader_sessions_but_not_internal_readers() {
    let hub = Hub::new(HubConfig::default());
    let rec = Recorder::install(&hub);
    // Not live: subscribe_live refuses without opening a session.
    assert!(hub.subscribe_live("a", reader("srt")).is_none());
    assert!(rec.take().is_empty());

    let p = hub.publish("a", meta()).unwrap();
    p.announce(video_info());
    let _internal = hub.subscribe("a", "hls");
    let r = hub.subscribe_reader(
        "a",
        ReaderMeta {
            args: vec![("token".into(), "t".into())],
            ..reader("rtmp")
        },
    );
    let m = hub.subscribe_live("a", reader("mpegts")).unwrap();
    let log = rec.take();
    let opened: Vec<_> = log.iter().map(|(w, s)| (*w, s.protocol)).collect();
    assert_eq!(
        opened,
        vec![("opened", "test"), ("opened", "rtmp"), ("opened", "mpegts")]
    );
    assert_eq!(log[1].1.id, r.session_id().unwrap());
    assert_eq!(log[1].1.role, SessionRole::Reader);
    assert_eq!(log[1].1.args, vec![("token".to_owned(), "t".to_owned())]);
    assert_eq!(log[1].1.external_id, None);

    r.record_sent(10);
    assert_eq!(hub.kick_readers("a", Some("rtmp")), 1);
    let id = r.session_id().unwrap();
    drop(r);
    drop(m);
    let log = rec.take();
    let closed: Vec<_> = log.iter().map(|(w, s)| (*w, s.protocol, s.bytes)).collect();
    assert_eq!(
        closed,
        vec![("closed", "rtmp", 10), ("closed", "mpegts", 0)]
    );
    assert_eq!(log[0].1.id, id);
    drop(p);
    assert_eq!(rec.take().len(), 1);
    assert!(rec.take().is_empty());
}

#[tokio::test]
async fn an_intake_takes_publishers_of_its_code_away_from_readers() {
    let hub = Hub::new(HubConfig::default());
    let intake = hub.intake("in").unwrap();
    assert!(hub.intake("in").is_err(), "one intake per code");
    let mut events = hub.events();
    let mut from_encoder = intake.subscribe();
    let encoder = hub.publish("in", meta()).unwrap();
    encoder.announce(video_info());
    encoder.write(vframe(0, true));
    assert!(intake.has_publisher());
    // The encoder feeds the intake, not the stream readers see, and no hub event fires.
    assert!(!hub.is_live("in"));
    assert!(events.try_recv().is_err());
    assert!(matches!(
        from_encoder.recv().await,
        Some(Event::Tracks { .. })
    ));
    assert!(expect_frame(from_encoder.recv().await).keyframe);
    // The supervisor claims the visible stream through the intake.
    let visible = intake.publish(meta()).unwrap();
    visible.announce(video_info());
    assert!(hub.is_live("in"));
    assert!(matches!(
        events.try_recv(),
        Ok(HubEvent::Published { ref code, .. }) if code == "in"
    ));
    drop(encoder);
    assert!(matches!(from_encoder.recv().await, Some(Event::End)));
    assert!(
        hub.is_live("in"),
        "the encoder leaving ends nothing readers see"
    );
    // Without the intake, publishing reaches the stream directly again; the intake's
    // publisher is kicked so it reconnects there.
    let encoder2 = hub.publish("in", meta()).unwrap();
    let kill = encoder2.kill_token();
    drop(intake);
    assert!(kill.is_cancelled());
    drop(visible);
    drop(encoder2);
    assert!(hub.publish("in", meta()).is_ok());
}

#[tokio::test]
async fn a_switched_session_continues_without_an_end() {
    let hub = Hub::new(HubConfig::default());
    let mut p = hub.publish("sw", meta()).unwrap();
    p.announce(video_info());
    p.write(vframe(0, true));
    let first = p.session();
    let mut s = hub.subscribe("sw", "t");
    let mut events = hub.events();
    p.switch_session(video_info());
    assert_ne!(p.session(), first);
    p.write(vframe(1, true));
    let mut seen = Vec::new();
    while let Some(ev) = s.try_recv() {
        seen.push(ev);
    }
    assert!(matches!(seen[0], Event::Tracks { session, .. } if session == first));
    assert!(matches!(seen[1], Event::Frame(_)));
    assert!(matches!(seen[2], Event::Tracks { session, .. } if session != first));
    assert!(matches!(seen[3], Event::Frame(ref f) if f.dts == 3000));
    assert!(!seen.iter().any(|e| matches!(e, Event::End)));
    // Per-session outputs (pushes) hear of the new session like a republish.
    assert!(matches!(
        events.try_recv(),
        Ok(HubEvent::Published { session, .. }) if session == p.session()
    ));
    // A late reader starts at the new session's keyframe.
    let mut late = hub.subscribe("sw", "t");
    assert!(
        matches!(late.recv().await, Some(Event::Tracks { session, .. }) if session == p.session())
    );
    assert_eq!(expect_frame(late.recv().await).dts, 3000);
    assert_eq!(
        hub.stats("sw").unwrap().publisher.unwrap().session,
        p.session()
    );
}
