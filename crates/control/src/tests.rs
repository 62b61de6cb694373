use super::*;
use futures_util::future::BoxFuture;
use hub::{HubConfig, PublisherMeta, ReaderMeta};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use store::{Protocols, PushDestination, RetryPolicy};

/// In-memory store with an outage switch.
#[derive(Default)]
struct MemStore {
    rows: Mutex<HashMap<String, StreamRecord>>,
    down: AtomicBool,
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

#[test]
fn constant_time_eq_is_equality() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
    assert!(constant_time_eq(b"", b""));
}
