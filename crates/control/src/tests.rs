use super::*;
use futures_util::future::BoxFuture;
use hub::{HubConfig, PublisherMeta, ReaderMeta};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use store::{Protocols, PushDestination, RetryPolicy};

/// In-memory store with an outage switch.
#[derive(Default)]
struct MemStore {
    rows: Mutex<HashMap<String, StreamRecord>>,
    down: AtomicBool,
    /// Calls of `get`: a resync must not read stream by stream.
    gets: AtomicUsize,
}

impl MemStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for MemStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.rows.lock().unwrap().values().cloned().collect())
        })
    }
    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<StreamRecord>, StoreError>> {
        Box::pin(async move {
            self.gets.fetch_add(1, Ordering::Relaxed);
            self.check()?;
            Ok(self.rows.lock().unwrap().get(code).cloned())
        })
    }
    fn insert<'a>(&'a self, r: &'a StreamRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            let mut rows = self.rows.lock().unwrap();
            if rows.contains_key(&r.code) {
                return Err(StoreError::Conflict(r.code.clone()));
            }
            rows.insert(r.code.clone(), r.clone());
            Ok(())
        })
    }
    fn put<'a>(&'a self, r: &'a StreamRecord) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(
                match self.rows.lock().unwrap().insert(r.code.clone(), r.clone()) {
                    Some(_) => PutOutcome::Replaced,
                    None => PutOutcome::Created,
                },
            )
        })
    }
    fn delete<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.rows.lock().unwrap().remove(code).is_some())
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.check() })
    }
    fn kind(&self) -> &'static str {
        "memory"
    }
}

fn record(code: &str) -> StreamRecord {
    StreamRecord {
        code: code.into(),
        name: format!("{code} name"),
        description: String::new(),
        tags: vec![],
        stream_key: None,
        disabled: false,
        protocols: Protocols::default(),
        push: vec![],
        inputs: vec![],
        failover: store::Failover::default(),
        recording: store::RecordingSpec::default(),
        transcode: store::TranscodeSpec::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

struct Env {
    store: Arc<MemStore>,
    hub: Hub,
    hls: hls::HlsService,
    control: Control,
}

async fn env(auto_create: bool) -> Env {
    let store = Arc::new(MemStore::default());
    let hub = Hub::new(HubConfig::default());
    let hls = hls::HlsService::new(hub.clone(), hls::HlsConfig::default());
    let control = Control::load(
        store.clone(),
        hub.clone(),
        hls.clone(),
        ControlConfig { auto_create },
    )
    .await
    .unwrap();
    Env {
        store,
        hub,
        hls,
        control,
    }
}

fn req(action: Action, code: &str, protocol: &'static str, key: Option<&str>) -> AccessRequest {
    AccessRequest {
        action,
        code: code.into(),
        protocol,
        remote_addr: None,
        args: key
            .map(|k| vec![("key".into(), k.into())])
            .unwrap_or_default(),
        client: None,
        command: Default::default(),
    }
}

fn meta() -> PublisherMeta {
    PublisherMeta {
        protocol: "rtmp",
        ..PublisherMeta::default()
    }
}

#[tokio::test]
async fn publish_rules_auto_create_disabled_and_stream_key() {
    let e = env(true).await;
    let hub = &e.hub;
    assert_eq!(
        hub.authorize(req(Action::Publish, "new", "rtmp", None))
            .await,
        Ok(Admit::new("new"))
    );

    let mut r = record("keyed");
    r.stream_key = Some("s3cret".into());
    e.control.create(r).await.unwrap();
    for (key, ok) in [
        (None, false),
        (Some("nope"), false),
        (Some("s3cret"), true),
        (Some("s3cre"), false),
    ] {
        let d = hub
            .authorize(req(Action::Publish, "keyed", "rtmp", key))
            .await;
        assert_eq!(d.is_ok(), ok, "key {key:?}: {d:?}");
    }

    e.control
        .update("keyed", |r| r.disabled = true)
        .await
        .unwrap();
    assert_eq!(
        hub.authorize(req(Action::Publish, "keyed", "rtmp", Some("s3cret")))
            .await,
        Err(Denied::new("stream disabled"))
    );
    // The rules alone, as an admission with hooks applies them first.
    assert_eq!(
        e.control
            .decide(&req(Action::Publish, "keyed", "rtmp", Some("s3cret"))),
        Err(Denied::new("stream disabled"))
    );
    assert_eq!(
        e.control.decide(&req(Action::Play, "keyed", "rtmp", None)),
        Err(Denied::new("stream disabled"))
    );
    assert_eq!(
        e.control
            .decide(&req(Action::Publish, "other", "rtmp", None)),
        Ok(())
    );

    let strict = env(false).await;
    assert_eq!(
        strict
            .hub
            .authorize(req(Action::Publish, "new", "rtmp", None))
            .await,
        Err(Denied::new("unknown stream"))
    );
}

#[tokio::test]
async fn play_rules_follow_protocol_switches() {
    let e = env(true).await;
    let mut r = record("cam");
    r.protocols.rtmp = false;
    e.control.create(r).await.unwrap();
    assert!(
        e.hub
            .authorize(req(Action::Play, "cam", "rtmp", None))
            .await
            .is_err()
    );
    assert!(
        e.hub
            .authorize(req(Action::Play, "cam", "mpegts", None))
            .await
            .is_ok()
    );
    assert!(
        e.hub
            .authorize(req(Action::Play, "runtime", "rtmp", None))
            .await
            .is_ok()
    );
    assert!(!e.control.output_enabled("cam", Output::Rtmp));
    assert!(e.control.output_enabled("cam", Output::Hls));
    assert!(e.control.output_enabled("runtime", Output::Rtmp));
}

#[tokio::test]
async fn create_put_update_delete_keep_store_and_memory_in_step() {
    let e = env(true).await;
    let created = e.control.create(record("a")).await.unwrap();
    assert!(created.created_at_ms > 0);
    assert!(matches!(
        e.control.create(record("a")).await,
        Err(ControlError::Conflict(c)) if c == "a"
    ));
    let (replaced, outcome) = e.control.put(record("a")).await.unwrap();
    assert_eq!(outcome, PutOutcome::Replaced);
    assert_eq!(
        replaced.created_at_ms, created.created_at_ms,
        "created_at kept"
    );
    assert!(replaced.updated_at_ms > created.updated_at_ms);
    let (_, outcome) = e.control.put(record("b")).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);

    let updated = e
        .control
        .update("a", |r| r.tags = vec!["x".into()])
        .await
        .unwrap();
    assert_eq!(updated.tags, ["x"]);
    assert_eq!(e.store.rows.lock().unwrap()["a"].tags, ["x"]);
    assert!(matches!(
        e.control.update("zz", |_| {}).await,
        Err(ControlError::NotFound(_))
    ));

    e.control.delete("a").await.unwrap();
    assert!(e.control.get("a").is_none());
    assert!(matches!(
        e.control.delete("a").await,
        Err(ControlError::NotFound(_))
    ));
    assert_eq!(e.control.list().len(), 1);
}

/// What another node changed while the change feed was down (a row changed, one added, one
/// deleted) is applied from one read of every row; an unchanged stream is left alone.
#[tokio::test]
async fn a_resync_applies_every_change_from_one_read() {
    let e = env(false).await;
    for code in ["kept", "changed", "deleted"] {
        e.control.create(record(code)).await.unwrap();
    }
    let kept = e.control.get("kept").unwrap();
    let publisher = e.hub.publish("deleted", meta()).unwrap();
    {
        let mut rows = e.store.rows.lock().unwrap();
        rows.get_mut("changed").unwrap().tags = vec!["elsewhere".into()];
        rows.remove("deleted");
        rows.insert("new".into(), record("new"));
    }
    let gets = e.store.gets.load(Ordering::Relaxed);
    e.control.resync().await.unwrap();
    assert_eq!(
        e.store.gets.load(Ordering::Relaxed),
        gets,
        "no read per stream"
    );
    assert_eq!(e.control.get("changed").unwrap().tags, ["elsewhere"]);
    assert!(e.control.get("new").is_some());
    assert!(e.control.get("deleted").is_none());
    assert!(
        publisher.kill_token().is_cancelled(),
        "the deleted stream's publisher is disconnected"
    );
    assert!(
        Arc::ptr_eq(&kept, &e.control.get("kept").unwrap()),
        "unchanged: not replaced"
    );
    let mut codes: Vec<String> = e.control.list().iter().map(|r| r.code.clone()).collect();
    codes.sort();
    assert_eq!(codes, ["changed", "kept", "new"]);

    // The store down: the resync fails and memory stays as it was.
    e.store.down.store(true, Ordering::Relaxed);
    assert!(e.control.resync().await.is_err());
    assert!(e.control.get("new").is_some());
}

#[tokio::test]
async fn a_store_outage_fails_writes_but_not_decisions() {
    let e = env(false).await;
    e.control.create(record("a")).await.unwrap();
    e.store.down.store(true, Ordering::Relaxed);
    assert!(matches!(
        e.control.create(record("b")).await,
        Err(ControlError::Store(StoreError::Unavailable(_)))
    ));
    assert!(matches!(
        e.control.update("a", |r| r.disabled = true).await,
        Err(ControlError::Store(_))
    ));
    assert!(e.control.get("b").is_none(), "nothing changed in memory");
    assert!(!e.control.get("a").unwrap().disabled);
    assert!(
        e.hub
            .authorize(req(Action::Publish, "a", "rtmp", None))
            .await
            .is_ok()
    );
    assert!(e.control.ping().await.is_err());
}

#[tokio::test]
async fn live_changes_touch_only_what_changed() {
    let e = env(true).await;
    e.control.create(record("cam")).await.unwrap();
    let p = e.hub.publish("cam", meta()).unwrap();
    let reader = |proto| ReaderMeta {
        protocol: proto,
        ..ReaderMeta::default()
    };
    let rtmp = e.hub.subscribe_reader("cam", reader("rtmp"));
    let ts = e.hub.subscribe_reader("cam", reader("mpegts"));
    let rtmp_kill = rtmp.kill_token().unwrap();
    let ts_kill = ts.kill_token().unwrap();
    let pub_kill = p.kill_token();

    e.control
        .update("cam", |r| r.stream_key = Some("k".into()))
        .await
        .unwrap();
    e.control
        .update("cam", |r| r.protocols.dash = false)
        .await
        .unwrap();
    assert!(!rtmp_kill.is_cancelled() && !ts_kill.is_cancelled() && !pub_kill.is_cancelled());

    e.control
        .update("cam", |r| r.protocols.rtmp = false)
        .await
        .unwrap();
    assert!(
        rtmp_kill.is_cancelled(),
        "rtmp readers go when rtmp is switched off"
    );
    assert!(!ts_kill.is_cancelled(), "other readers stay");
    assert!(!pub_kill.is_cancelled());

    e.control
        .update("cam", |r| r.disabled = true)
        .await
        .unwrap();
    assert!(pub_kill.is_cancelled(), "disabling kicks the publisher");
    assert!(e.hls.playlist("cam").is_none());
}

#[tokio::test]
async fn delete_disconnects_everyone() {
    let e = env(true).await;
    e.control.create(record("cam")).await.unwrap();
    let p = e.hub.publish("cam", meta()).unwrap();
    let r = e.hub.subscribe_reader(
        "cam",
        ReaderMeta {
            protocol: "rtmp",
            ..ReaderMeta::default()
        },
    );
    e.control.delete("cam").await.unwrap();
    assert!(p.kill_token().is_cancelled());
    assert!(r.kill_token().unwrap().is_cancelled());
}

#[test]
fn validation_names_fields_and_classifies() {
    let ok = |r: &StreamRecord| validate(r).map_err(|e| (e.field, e.kind));
    let mut r = record("a");
    assert!(ok(&r).is_ok());
    r.code = "bad code".into();
    assert_eq!(ok(&r).unwrap_err(), ("code".into(), InvalidKind::Malformed));
    let mut r = record("a");
    r.name = "x".repeat(300);
    assert_eq!(ok(&r).unwrap_err().0, "name");
    let mut r = record("a");
    r.stream_key = Some("has space".into());
    assert_eq!(
        ok(&r).unwrap_err(),
        ("stream_key".into(), InvalidKind::Semantic)
    );

    let push = |url: &str| PushDestination {
        url: url.into(),
        enabled: true,
        timeout_s: 10,
        retry: RetryPolicy::default(),
        limit: 0,
        comment: String::new(),
        rendition: String::new(),
    };
    for good in [
        "rtmp://a.rtmp.youtube.com/live2/abcd",
        "rtmps://live-api-s.facebook.com:443/rtmp/KEY",
        "rtmp://[::1]:1935/live/x",
        "rtmp://127.0.0.1/live/x?key=1",
    ] {
        let mut r = record("a");
        r.push = vec![push(good)];
        assert!(ok(&r).is_ok(), "{good}");
    }
    for bad in [
        "http://x/live/y",
        "rtmp://",
        "rtmp://host/onlyapp",
        "rtmp://h:0/a/b",
        "srt://h/a/b",
    ] {
        let mut r = record("a");
        r.push = vec![push(bad)];
        assert_eq!(
            ok(&r).unwrap_err(),
            ("push[0].url".into(), InvalidKind::Malformed),
            "{bad}"
        );
    }
    let mut r = record("a");
    let mut p = push("rtmp://h/a/b");
    p.retry = RetryPolicy {
        initial_s: 5.0,
        max_s: 1.0,
    };
    r.push = vec![push("rtmp://h/a/c"), p];
    assert_eq!(
        ok(&r).unwrap_err(),
        ("push[1].retry.max_s".into(), InvalidKind::Semantic)
    );
    r.push = vec![push("rtmp://h/a/c"), push("rtmp://h/a/c")];
    assert_eq!(ok(&r).unwrap_err().0, "push[1].url");
}

#[test]
fn recording_validation_names_fields() {
    let check = |edit: fn(&mut store::RecordingSpec)| {
        let mut r = record("a");
        edit(&mut r.recording);
        validate(&r).map_err(|e| (e.field, e.kind))
    };
    let semantic = |field: &str| Err((field.to_owned(), InvalidKind::Semantic));
    assert_eq!(check(|_| {}), Ok(()), "the defaults");
    assert_eq!(
        check(|s| {
            s.enabled = true;
            s.rotate_s = 1.0;
            s.rotate_bytes = 1 << 20;
            s.max_age_s = 0.5;
            s.max_bytes = 1 << 40;
        }),
        Ok(()),
        "every limit at or past its bound"
    );
    assert_eq!(check(|s| s.rotate_s = 0.0), semantic("recording.rotate_s"));
    assert_eq!(
        check(|s| s.rotate_s = 0.999),
        semantic("recording.rotate_s")
    );
    assert_eq!(
        check(|s| s.rotate_s = f64::INFINITY),
        semantic("recording.rotate_s")
    );
    assert_eq!(
        check(|s| s.rotate_s = f64::NAN),
        semantic("recording.rotate_s")
    );
    assert_eq!(
        check(|s| s.max_age_s = -1.0),
        semantic("recording.max_age_s")
    );
    assert_eq!(
        check(|s| s.max_age_s = f64::NAN),
        semantic("recording.max_age_s")
    );
    assert_eq!(
        check(|s| s.rotate_bytes = (1 << 20) - 1),
        semantic("recording.rotate_bytes")
    );
    assert_eq!(check(|s| s.max_bytes = 1), semantic("recording.max_bytes"));
}

#[tokio::test]
async fn recording_settings_are_read_from_memory() {
    let e = env(true).await;
    assert_eq!(e.control.recording("cam"), None, "unknown stream");
    e.control.create(record("cam")).await.unwrap();
    assert_eq!(
        e.control.recording("cam"),
        Some(store::RecordingSpec::default())
    );
    e.control
        .update("cam", |r| {
            r.recording.enabled = true;
            r.recording.rotate_s = 30.0;
        })
        .await
        .unwrap();
    let got = e.control.recording("cam").unwrap();
    assert!(got.enabled);
    assert_eq!(got.rotate_s, 30.0);
    assert_eq!(e.store.rows.lock().unwrap()["cam"].recording, got);
    // A broken rule changes nothing.
    assert!(matches!(
        e.control.update("cam", |r| r.recording.rotate_s = 0.0).await,
        Err(ControlError::Invalid(inv)) if inv.field == "recording.rotate_s"
    ));
    assert_eq!(e.control.recording("cam"), Some(got));
}

/// `source`, a preset and a custom rung, on.
fn ladder() -> store::TranscodeSpec {
    let rung = |name: &str| store::RenditionSpec {
        name: name.into(),
        ..store::RenditionSpec::default()
    };
    store::TranscodeSpec {
        enabled: true,
        profiles: vec![
            rung("source"),
            rung("480p"),
            store::RenditionSpec {
                height: 270,
                video_bitrate_kbps: 500,
                ..rung("270p")
            },
        ],
        ..store::TranscodeSpec::default()
    }
}

#[test]
fn transcode_validation_names_fields() {
    let check = |edit: &dyn Fn(&mut StreamRecord)| {
        let mut r = record("a");
        r.transcode = ladder();
        edit(&mut r);
        validate(&r).map_err(|e| (e.field, e.kind))
    };
    let semantic = |field: &str| Err((field.to_owned(), InvalidKind::Semantic));
    let t =
        |edit: fn(&mut store::TranscodeSpec)| move |r: &mut StreamRecord| edit(&mut r.transcode);
    assert_eq!(check(&|_| {}), Ok(()), "the ladder");
    // `<code>_<name>` must itself be a code: 128 characters at most.
    let mut long = record(&"c".repeat(120));
    long.transcode = ladder();
    long.transcode.profiles[1].name = "a-long-name".into();
    long.transcode.profiles[1].height = 480;
    long.transcode.profiles[1].video_bitrate_kbps = 900;
    assert_eq!(
        validate(&long).map_err(|e| (e.field, e.kind)),
        semantic("transcode.profiles[1].name")
    );
    assert_eq!(
        validate(&record("a")),
        Ok(()),
        "the defaults: off, no rungs"
    );
    assert_eq!(
        check(&t(|s| {
            s.profiles[2].width = 7680;
            s.profiles[2].height = 4320;
            s.profiles[2].video_bitrate_kbps = 100_000;
            s.profiles[2].max_framerate = 240.0;
            s.profiles[2].profile = "baseline".into();
            s.profiles[2].level = "5.2".into();
            s.profiles[1].width = 16;
            s.profiles[1].height = 16;
            s.profiles[1].video_bitrate_kbps = 50;
            s.profiles[1].max_framerate = 1.0;
            s.keyframe_interval_s = 20.0;
            s.audio.bitrate_kbps = 512;
            s.watermark = Some(store::Watermark {
                path: "/logo.png".into(),
                opacity: 1.0,
                ..store::Watermark::default()
            });
            s.text = Some(store::TextOverlay {
                text: "x".repeat(256),
                timestamp: false,
                font_size: 200,
                ..store::TextOverlay::default()
            });
        })),
        Ok(()),
        "every limit at its bound"
    );
    assert_eq!(
        check(&t(|s| {
            s.keyframe_interval_s = 0.5;
            s.audio.bitrate_kbps = 32;
            s.text = Some(store::TextOverlay::default());
        })),
        Ok(()),
        "the low bounds; text may be empty with the timestamp on"
    );
    // A ladder may be kept while off, even without a rung to run.
    assert_eq!(
        check(&t(|s| {
            s.enabled = false;
            s.profiles.truncate(1);
        })),
        Ok(())
    );

    // The rungs.
    assert_eq!(
        check(&t(|s| {
            let extra = s.profiles[1].clone();
            for i in 0..6 {
                s.profiles.push(store::RenditionSpec {
                    name: format!("r{i}"),
                    ..extra.clone()
                });
            }
        })),
        semantic("transcode.profiles"),
        "nine rungs"
    );
    for bad in ["", "HD", "a_b", "a b", "x".repeat(17).as_str(), "é"] {
        let mut r = record("a");
        r.transcode = ladder();
        r.transcode.profiles[2].name = bad.into();
        assert_eq!(
            validate(&r).map_err(|e| (e.field, e.kind)),
            Err((
                "transcode.profiles[2].name".to_owned(),
                InvalidKind::Malformed
            )),
            "{bad:?}"
        );
    }
    assert_eq!(
        check(&t(|s| s.profiles[2].name = "480p".into())),
        semantic("transcode.profiles[2].name"),
        "duplicate"
    );
    let mut r = record("a");
    r.transcode = ladder();
    r.transcode.profiles[2].height = 0;
    let e = validate(&r).unwrap_err();
    assert_eq!(e.field, "transcode.profiles[2]");
    assert_eq!(
        e.reason,
        "rung '270p' names no preset (1080p, 720p, 480p, 360p, 240p) and lacks height or video_bitrate_kbps"
    );
    assert_eq!(
        check(&t(|s| s.profiles[2].video_bitrate_kbps = 0)),
        semantic("transcode.profiles[2]")
    );
    for (field, edit) in [
        ("height", t(|s| s.profiles[1].height = 14)),
        ("height", t(|s| s.profiles[1].height = 481)),
        ("height", t(|s| s.profiles[1].height = 4322)),
        ("width", t(|s| s.profiles[1].width = 8)),
        ("width", t(|s| s.profiles[1].width = 853)),
        ("width", t(|s| s.profiles[1].width = 7682)),
        (
            "video_bitrate_kbps",
            t(|s| s.profiles[1].video_bitrate_kbps = 49),
        ),
        (
            "video_bitrate_kbps",
            t(|s| s.profiles[1].video_bitrate_kbps = 100_001),
        ),
        ("max_framerate", t(|s| s.profiles[1].max_framerate = 0.5)),
        ("max_framerate", t(|s| s.profiles[1].max_framerate = 241.0)),
        ("max_framerate", t(|s| s.profiles[1].max_framerate = -1.0)),
        (
            "max_framerate",
            t(|s| s.profiles[1].max_framerate = f64::NAN),
        ),
        (
            "max_framerate",
            t(|s| s.profiles[1].max_framerate = f64::INFINITY),
        ),
        ("profile", t(|s| s.profiles[1].profile = "high10".into())),
        ("profile", t(|s| s.profiles[1].profile = "Main".into())),
        ("level", t(|s| s.profiles[1].level = "4".into())),
        ("level", t(|s| s.profiles[1].level = "6.2".into())),
    ] {
        assert_eq!(
            check(&edit),
            semantic(&format!("transcode.profiles[1].{field}")),
            "{field}"
        );
    }
    assert_eq!(
        check(&t(|s| s.profiles.truncate(1))),
        semantic("transcode.profiles"),
        "on with only the source"
    );
    assert_eq!(
        check(&t(|s| s.profiles.clear())),
        semantic("transcode.profiles"),
        "on with no rungs"
    );

    // The rest of the ladder.
    for (field, edit) in [
        ("keyframe_interval_s", t(|s| s.keyframe_interval_s = 0.4)),
        ("keyframe_interval_s", t(|s| s.keyframe_interval_s = 20.5)),
        (
            "keyframe_interval_s",
            t(|s| s.keyframe_interval_s = f64::NAN),
        ),
        ("audio.bitrate_kbps", t(|s| s.audio.bitrate_kbps = 31)),
        ("audio.bitrate_kbps", t(|s| s.audio.bitrate_kbps = 513)),
        (
            "watermark.path",
            t(|s| s.watermark = Some(store::Watermark::default())),
        ),
        (
            "watermark.path",
            t(|s| {
                s.watermark = Some(store::Watermark {
                    path: "http://example.com/logo.png".into(),
                    ..store::Watermark::default()
                })
            }),
        ),
        (
            "watermark.path",
            t(|s| {
                s.watermark = Some(store::Watermark {
                    path: "/a\u{0}b.png".into(),
                    ..store::Watermark::default()
                })
            }),
        ),
        (
            "watermark.opacity",
            t(|s| {
                s.watermark = Some(store::Watermark {
                    path: "/logo.png".into(),
                    opacity: 1.5,
                    ..store::Watermark::default()
                })
            }),
        ),
        (
            "watermark.opacity",
            t(|s| {
                s.watermark = Some(store::Watermark {
                    path: "/logo.png".into(),
                    opacity: f64::NAN,
                    ..store::Watermark::default()
                })
            }),
        ),
        (
            "text.text",
            t(|s| {
                s.text = Some(store::TextOverlay {
                    text: "x".repeat(257),
                    ..store::TextOverlay::default()
                })
            }),
        ),
        (
            "text.text",
            t(|s| {
                s.text = Some(store::TextOverlay {
                    text: "two\nlines".into(),
                    ..store::TextOverlay::default()
                })
            }),
        ),
        (
            "text.text",
            t(|s| {
                s.text = Some(store::TextOverlay {
                    timestamp: false,
                    ..store::TextOverlay::default()
                })
            }),
        ),
        (
            "text.font_size",
            t(|s| {
                s.text = Some(store::TextOverlay {
                    font_size: 7,
                    ..store::TextOverlay::default()
                })
            }),
        ),
        (
            "text.font_size",
            t(|s| {
                s.text = Some(store::TextOverlay {
                    font_size: 201,
                    ..store::TextOverlay::default()
                })
            }),
        ),
    ] {
        assert_eq!(
            check(&edit),
            semantic(&format!("transcode.{field}")),
            "{field}"
        );
    }

    // Pushes of a rendition name a rung of this ladder, never `source`.
    let push = |rendition: &str| PushDestination {
        url: format!("rtmp://h/live/key-{rendition}"),
        enabled: true,
        timeout_s: 10,
        retry: RetryPolicy::default(),
        limit: 0,
        comment: String::new(),
        rendition: rendition.into(),
    };
    assert_eq!(
        check(&|r| r.push = vec![push(""), push("480p"), push("270p")]),
        Ok(())
    );
    for bad in ["source", "720p", "480P"] {
        assert_eq!(
            check(&|r| r.push = vec![push("480p"), push(bad)]),
            semantic("push[1].rendition"),
            "{bad}"
        );
    }
    let mut r = record("a");
    r.push = vec![push("480p")];
    assert_eq!(
        validate(&r).map_err(|e| e.field),
        Err("push[0].rendition".to_owned()),
        "no ladder"
    );
}

#[tokio::test]
async fn renditions_follow_their_parent() {
    let e = env(true).await;
    let mut r = record("cam");
    r.transcode = ladder();
    r.protocols.rtmp = false;
    e.control.create(r).await.unwrap();
    assert_eq!(e.control.transcode("cam"), Some(ladder()));
    assert_eq!(e.control.transcode("nope"), None);

    let some = |p: &str, n: &str| Some((p.to_owned(), n.to_owned()));
    assert_eq!(e.control.rendition_of("cam_480p"), some("cam", "480p"));
    assert_eq!(e.control.rendition_of("cam_270p"), some("cam", "270p"));
    for not in [
        "cam",
        "cam_source",
        "cam_720p",
        "cam_",
        "_480p",
        "other_480p",
        "cam_480p_480p",
    ] {
        assert_eq!(e.control.rendition_of(not), None, "{not}");
    }
    // Split at the last `_`: a parent code may hold one itself.
    let mut r = record("east_cam");
    r.transcode = ladder();
    e.control.create(r).await.unwrap();
    assert_eq!(
        e.control.rendition_of("east_cam_480p"),
        some("east_cam", "480p")
    );

    // Only the transcoder writes a rendition; players get the parent's rules.
    assert_eq!(
        e.control
            .decide(&req(Action::Publish, "cam_480p", "rtmp", None)),
        Err(Denied::new(
            "cam_480p is the 480p rendition of cam; only its transcoder writes it"
        ))
    );
    assert!(
        e.hub
            .authorize(req(Action::Publish, "cam_480p", "srt", None))
            .await
            .is_err()
    );
    assert_eq!(
        e.control
            .decide(&req(Action::Play, "cam_480p", "hls", None)),
        Ok(())
    );
    assert_eq!(
        e.control
            .decide(&req(Action::Play, "cam_480p", "rtmp", None)),
        Err(Denied::new("rtmp output disabled for this stream"))
    );
    assert!(e.control.output_enabled("cam_480p", Output::Hls));
    assert!(!e.control.output_enabled("cam_480p", Output::Rtmp));
    // A code that is no rendition is an unknown stream, as before.
    assert_eq!(
        e.control
            .decide(&req(Action::Publish, "cam_720p", "rtmp", None)),
        Ok(())
    );

    e.control
        .update("cam", |r| {
            r.disabled = true;
        })
        .await
        .unwrap();
    assert_eq!(
        e.control
            .decide(&req(Action::Play, "cam_480p", "hls", None)),
        Err(Denied::new("stream disabled"))
    );
    assert!(!e.control.output_enabled("cam_480p", Output::Hls));
    assert!(
        e.control
            .decide(&req(Action::Publish, "cam_480p", "rtmp", None))
            .is_err()
    );

    // With the ladder off the codes are nobody's renditions.
    e.control
        .update("cam", |r| {
            r.disabled = false;
            r.transcode.enabled = false;
        })
        .await
        .unwrap();
    assert_eq!(e.control.rendition_of("cam_480p"), None);
    assert_eq!(
        e.control
            .decide(&req(Action::Publish, "cam_480p", "rtmp", None)),
        Ok(())
    );
    assert!(e.control.output_enabled("cam_480p", Output::Rtmp));
}

#[test]
fn constant_time_eq_is_equality() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
    assert!(constant_time_eq(b"", b""));
}
