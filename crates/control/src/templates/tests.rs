//! Templates in the control plane: CRUD rules, prefix matching, runtime streams made by a
//! publish, and their reaping (on paused tokio time).

use super::*;
use crate::{ControlConfig, ControlError, Output};
use futures_util::future::BoxFuture;
use hub::{Action, HubConfig, PublisherMeta, ReaderMeta};
use std::sync::atomic::{AtomicBool, Ordering};
use store::{
    Failover, InputSpec, Protocols, PushDestination, RecordingSpec, RenditionSpec, RetryPolicy,
    Store, TranscodeSpec,
};

/// Streams and templates in memory, with an outage switch.
#[derive(Default)]
struct MemStore {
    streams: Mutex<BTreeMap<String, StreamRecord>>,
    templates: Mutex<BTreeMap<String, TemplateRecord>>,
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

    fn prefix_free(&self, t: &TemplateRecord) -> Result<(), StoreError> {
        let taken = self
            .templates
            .lock()
            .unwrap()
            .values()
            .any(|o| o.name != t.name && o.prefix.is_some() && o.prefix == t.prefix);
        if taken {
            return Err(StoreError::PrefixTaken(
                t.prefix.clone().unwrap_or_default(),
            ));
        }
        Ok(())
    }
}

impl Store for MemStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.streams.lock().unwrap().values().cloned().collect())
        })
    }
    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<StreamRecord>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.streams.lock().unwrap().get(code).cloned())
        })
    }
    fn insert<'a>(&'a self, r: &'a StreamRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            let mut rows = self.streams.lock().unwrap();
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
                match self
                    .streams
                    .lock()
                    .unwrap()
                    .insert(r.code.clone(), r.clone())
                {
                    Some(_) => PutOutcome::Replaced,
                    None => PutOutcome::Created,
                },
            )
        })
    }
    fn delete<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.streams.lock().unwrap().remove(code).is_some())
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.check() })
    }
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn list_templates(&self) -> BoxFuture<'_, Result<Vec<TemplateRecord>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.templates.lock().unwrap().values().cloned().collect())
        })
    }
    fn insert_template<'a>(
        &'a self,
        t: &'a TemplateRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.prefix_free(t)?;
            let mut rows = self.templates.lock().unwrap();
            if rows.contains_key(&t.name) {
                return Err(StoreError::Conflict(t.name.clone()));
            }
            rows.insert(t.name.clone(), t.clone());
            Ok(())
        })
    }
    fn put_template<'a>(
        &'a self,
        t: &'a TemplateRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.prefix_free(t)?;
            Ok(
                match self
                    .templates
                    .lock()
                    .unwrap()
                    .insert(t.name.clone(), t.clone())
                {
                    Some(_) => PutOutcome::Replaced,
                    None => PutOutcome::Created,
                },
            )
        })
    }
    fn delete_template<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.templates.lock().unwrap().remove(name).is_some())
        })
    }
}

struct Env {
    store: Arc<MemStore>,
    hub: hub::Hub,
    control: Control,
}

async fn env(auto_create: bool) -> Env {
    env_with(Arc::new(MemStore::default()), auto_create).await
}

async fn env_with(store: Arc<MemStore>, auto_create: bool) -> Env {
    let hub = hub::Hub::new(HubConfig::default());
    let hls = hls::HlsService::new(hub.clone(), hls::HlsConfig::default());
    let control = Control::load(
        store.clone(),
        hub.clone(),
        hls,
        ControlConfig { auto_create },
    )
    .await
    .unwrap();
    Env {
        store,
        hub,
        control,
    }
}

fn template(name: &str, prefix: Option<&str>) -> TemplateRecord {
    TemplateRecord {
        name: name.into(),
        prefix: prefix.map(Into::into),
        description: String::new(),
        tags: vec!["cams".into()],
        stream_key: None,
        protocols: Protocols {
            hls: false,
            dash: true,
            rtmp: true,
            srt: false,
            rtsp: true,
            mpegts: true,
        },
        push: vec![PushDestination {
            url: "rtmp://backup.example/live/secret-key".into(),
            enabled: true,
            timeout_s: 10,
            retry: RetryPolicy::default(),
            limit: 0,
            comment: "backup".into(),
            rendition: "360p".into(),
        }],
        inputs: vec![InputSpec {
            url: "publish://".into(),
            ..InputSpec::default()
        }],
        failover: Failover {
            packet_timeout_s: 5.0,
            ..Failover::default()
        },
        recording: RecordingSpec {
            enabled: true,
            rotate_s: 60.0,
            max_bytes: 1 << 30,
            ..RecordingSpec::default()
        },
        transcode: TranscodeSpec {
            enabled: true,
            profiles: vec![
                RenditionSpec {
                    name: "source".into(),
                    ..RenditionSpec::default()
                },
                RenditionSpec {
                    name: "360p".into(),
                    ..RenditionSpec::default()
                },
            ],
            ..TranscodeSpec::default()
        },
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn publish_req(code: &str, key: Option<&str>) -> AccessRequest {
    AccessRequest {
        action: Action::Publish,
        code: code.into(),
        protocol: "rtmp",
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
async fn templates_are_validated_stored_and_reloaded() {
    let e = env(true).await;
    let t = e
        .control
        .create_template(template("cams", Some("cam-")))
        .await
        .unwrap();
    assert!(t.created_at_ms > 0 && t.updated_at_ms == t.created_at_ms);
    assert_eq!(e.store.templates.lock().unwrap()["cams"], t);

    // Name and prefix: code rules, 400-class.
    for (name, prefix, field) in [
        ("bad name", None, "name"),
        ("", None, "name"),
        ("ok", Some("bad//prefix"), "prefix"),
        ("ok", Some(""), "prefix"),
    ] {
        match e.control.create_template(template(name, prefix)).await {
            Err(TemplateError::Invalid(inv)) => {
                assert_eq!(
                    (inv.field.as_str(), inv.kind),
                    (field, InvalidKind::Malformed)
                );
            }
            other => panic!("{name:?}/{prefix:?}: {other:?}"),
        }
    }
    // Stream rules, with the stream's field names.
    let mut bad = template("bad-push", None);
    bad.push[0].url = "http://not-rtmp".into();
    match e.control.create_template(bad).await {
        Err(TemplateError::Invalid(inv)) => assert_eq!(inv.field, "push[0].url"),
        other => panic!("{other:?}"),
    }
    let mut bad = template("bad-recording", None);
    bad.recording.max_bytes = 1000;
    match e.control.create_template(bad).await {
        Err(TemplateError::Invalid(inv)) => assert_eq!(inv.field, "recording.max_bytes"),
        other => panic!("{other:?}"),
    }
    let mut bad = template("bad-transcode", None);
    bad.transcode.profiles[1].name = "hd".into();
    match e.control.create_template(bad).await {
        // The push names the rung that went, and is checked first.
        Err(TemplateError::Invalid(inv)) => assert_eq!(inv.field, "push[0].rendition"),
        other => panic!("{other:?}"),
    }
    let mut bad = template("bad-transcode", None);
    bad.push[0].rendition.clear();
    bad.transcode.profiles[1].name = "hd".into();
    match e.control.create_template(bad).await {
        Err(TemplateError::Invalid(inv)) => {
            assert_eq!(inv.field, "transcode.profiles[1]");
            assert!(inv.reason.contains("rung 'hd' names no preset"), "{inv}");
        }
        other => panic!("{other:?}"),
    }
    // A prefix makes streams for encoders: pull-only inputs cannot take them.
    let mut pull = template("pull", Some("pull-"));
    pull.inputs = vec![InputSpec {
        url: "rtsp://cam.example/stream".into(),
        ..InputSpec::default()
    }];
    match e.control.create_template(pull.clone()).await {
        Err(TemplateError::Invalid(inv)) => {
            assert_eq!(
                (inv.field.as_str(), inv.kind),
                ("prefix", InvalidKind::Semantic)
            );
        }
        other => panic!("{other:?}"),
    }
    pull.prefix = None;
    e.control
        .create_template(pull)
        .await
        .expect("pull-only without a prefix is fine");

    // Taken name, taken prefix (named), then a longer prefix beside it.
    assert!(matches!(
        e.control.create_template(template("cams", None)).await,
        Err(TemplateError::Conflict(n)) if n == "cams"
    ));
    match e
        .control
        .create_template(template("other", Some("cam-")))
        .await
    {
        Err(TemplateError::PrefixTaken { prefix, by }) => {
            assert_eq!((prefix.as_str(), by.as_str()), ("cam-", "cams"));
        }
        other => panic!("{other:?}"),
    }
    e.control
        .create_template(template("lobby", Some("cam-lobby-")))
        .await
        .unwrap();

    // put: created then replaced, keeping created_at; update keeps the name.
    let (_, outcome) = e.control.put_template(template("new", None)).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    let mut changed = template("new", Some("new-"));
    changed.description = "second".into();
    let (stored, outcome) = e.control.put_template(changed).await.unwrap();
    assert_eq!(outcome, PutOutcome::Replaced);
    assert_eq!(stored.prefix.as_deref(), Some("new-"));
    let updated = e
        .control
        .update_template("new", |t| {
            t.name = "renamed".into();
            t.prefix = None;
        })
        .await
        .unwrap();
    assert_eq!((updated.name.as_str(), updated.prefix), ("new", None));
    assert!(updated.updated_at_ms > stored.updated_at_ms);
    assert!(matches!(
        e.control.update_template("nope", |_| {}).await,
        Err(TemplateError::NotFound(_))
    ));

    // A database outage changes nothing, in the store or in memory.
    e.store.down.store(true, Ordering::Relaxed);
    assert!(matches!(
        e.control.delete_template("cams").await,
        Err(TemplateError::Store(StoreError::Unavailable(_)))
    ));
    e.store.down.store(false, Ordering::Relaxed);
    assert!(e.control.template("cams").is_some());

    e.control.delete_template("new").await.unwrap();
    assert!(matches!(
        e.control.delete_template("new").await,
        Err(TemplateError::NotFound(_))
    ));

    // A restart loads them back.
    let again = env_with(e.store.clone(), true).await;
    let names: Vec<String> = again
        .control
        .templates()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names, ["cams", "lobby", "pull"]);
}

#[tokio::test]
async fn the_longest_matching_prefix_wins() {
    let e = env(true).await;
    for (name, prefix) in [
        ("all", Some("cam")),
        ("lobby", Some("cam-lobby-")),
        ("none", None),
    ] {
        e.control
            .create_template(template(name, prefix))
            .await
            .unwrap();
    }
    let name = |code: &str| e.control.template_for(code).map(|t| t.name.clone());
    assert_eq!(name("cam-lobby-1").as_deref(), Some("lobby"));
    assert_eq!(name("cam-yard-1").as_deref(), Some("all"));
    assert_eq!(
        name("cam").as_deref(),
        Some("all"),
        "the prefix itself matches"
    );
    assert_eq!(name("Cam-1"), None, "codes are case-sensitive");
    assert_eq!(name("xcam"), None);
}

#[tokio::test]
async fn a_publish_to_a_matching_code_gets_a_runtime_stream_with_the_template() {
    // auto_create off: only template prefixes may make streams.
    let e = env(false).await;
    e.control
        .create_template(template("cams", Some("cam-")))
        .await
        .unwrap();
    assert!(e.control.decide(&publish_req("other", None)).is_err());
    assert!(e.control.get("other").is_none());

    e.control.decide(&publish_req("cam-1", None)).unwrap();
    let r = e.control.get("cam-1").expect("runtime record");
    let t = template("cams", Some("cam-"));
    assert_eq!(
        (&r.protocols, &r.push, &r.inputs, &r.failover, &r.tags),
        (&t.protocols, &t.push, &t.inputs, &t.failover, &t.tags)
    );
    assert_eq!(r.recording, t.recording);
    assert_eq!(e.control.recording("cam-1"), Some(t.recording.clone()));
    assert_eq!(r.transcode, t.transcode);
    assert_eq!(e.control.transcode("cam-1"), Some(t.transcode.clone()));
    // A runtime stream's ladder makes renditions like a configured stream's.
    assert_eq!(
        e.control.rendition_of("cam-1_360p"),
        Some(("cam-1".into(), "360p".into()))
    );
    assert!(!e.control.output_enabled("cam-1_360p", Output::Hls));
    assert_eq!(e.control.runtime_template("cam-1").as_deref(), Some("cams"));
    assert_eq!(e.control.runtime_streams().len(), 1);
    assert!(e.control.list().is_empty(), "not configured, not stored");
    assert!(e.store.streams.lock().unwrap().is_empty());
    // The template's output switches hold for it.
    assert!(!e.control.output_enabled("cam-1", Output::Hls));
    assert!(!e.control.output_enabled("cam-1", Output::Srt));
    assert!(e.control.output_enabled("cam-1", Output::Rtmp));
    assert!(e.control.output_enabled("not-a-stream", Output::Hls));

    // A republish finds it; a second match does not make another.
    e.control.decide(&publish_req("cam-1", None)).unwrap();
    assert_eq!(e.control.runtime_streams().len(), 1);

    // Changing or deleting the template leaves it alone.
    e.control
        .update_template("cams", |t| t.protocols.hls = true)
        .await
        .unwrap();
    e.control.delete_template("cams").await.unwrap();
    assert_eq!(e.control.get("cam-1").unwrap().protocols, t.protocols);
    assert!(
        e.control.decide(&publish_req("cam-2", None)).is_err(),
        "no template now, and auto_create is off"
    );
}

#[tokio::test]
async fn a_template_stream_key_is_checked_before_anything_is_made() {
    let e = env(true).await;
    let mut t = template("keyed", Some("k-"));
    t.stream_key = Some("s3cret".into());
    e.control.create_template(t).await.unwrap();
    for key in [None, Some("wrong")] {
        let denied = e.control.decide(&publish_req("k-1", key)).unwrap_err();
        assert!(denied.reason.contains("key"), "{denied:?}");
    }
    assert!(
        e.control.get("k-1").is_none(),
        "a refused publish leaves nothing behind"
    );
    e.control
        .decide(&publish_req("k-1", Some("s3cret")))
        .unwrap();
    assert_eq!(
        e.control.get("k-1").unwrap().stream_key.as_deref(),
        Some("s3cret")
    );
    // The runtime stream now enforces it like a configured one.
    assert!(e.control.decide(&publish_req("k-1", None)).is_err());
}

#[tokio::test]
async fn a_configured_stream_replaces_a_runtime_one_and_delete_ends_it() {
    let e = env(true).await;
    e.control
        .create_template(template("cams", Some("cam-")))
        .await
        .unwrap();
    e.control.decide(&publish_req("cam-1", None)).unwrap();
    // PATCH is for configured streams.
    assert!(matches!(
        e.control.update("cam-1", |_| {}).await,
        Err(ControlError::NotFound(_))
    ));
    let mut configured = (*e.control.get("cam-1").unwrap()).clone();
    configured.name = "Lobby".into();
    let (_, outcome) = e.control.put(configured).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(e.control.get("cam-1").unwrap().name, "Lobby");
    assert_eq!(e.control.runtime_template("cam-1"), None);
    assert!(e.control.runtime_streams().is_empty());

    // Deleting a runtime stream forgets it (the next publish makes it again).
    e.control.decide(&publish_req("cam-2", None)).unwrap();
    e.control.delete("cam-2").await.unwrap();
    assert!(e.control.get("cam-2").is_none());
    assert!(matches!(
        e.control.delete("cam-2").await,
        Err(ControlError::NotFound(_))
    ));
}

/// Lets the reaper run its ticks up to now.
async fn settle() {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn idle_runtime_streams_are_reaped_after_the_timeout() {
    let e = env(true).await;
    e.control
        .create_template(template("cams", Some("cam-")))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(
        e.control
            .clone()
            .run_reaper(RUNTIME_IDLE_TIMEOUT, shutdown.clone()),
    );

    // Admitted but no publisher ever came: gone 30 s later, not before.
    e.control.decide(&publish_req("cam-idle", None)).unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    settle().await;
    assert!(e.control.get("cam-idle").is_some(), "kept for 29 s");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    settle().await;
    assert!(
        e.control.get("cam-idle").is_none(),
        "reaped after 30 s idle"
    );
    assert_eq!(e.control.runtime_template("cam-idle"), None);

    // A publisher keeps it however long it stays; reaping counts from when it leaves.
    e.control.decide(&publish_req("cam-live", None)).unwrap();
    let publisher = e.hub.publish("cam-live", meta()).unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    settle().await;
    assert!(e.control.get("cam-live").is_some(), "live for 2 minutes");
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(20)).await;
    settle().await;
    assert!(
        e.control.get("cam-live").is_some(),
        "20 s after the publisher left"
    );

    // A reader arriving meanwhile keeps it too.
    let reader = e.hub.subscribe_reader(
        "cam-live",
        ReaderMeta {
            protocol: "rtmp",
            ..ReaderMeta::default()
        },
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle().await;
    assert!(e.control.get("cam-live").is_some(), "a reader waits on it");
    drop(reader);
    tokio::time::sleep(Duration::from_secs(32)).await;
    settle().await;
    assert!(
        e.control.get("cam-live").is_none(),
        "reaped once nobody is left"
    );

    // A configured stream that took a runtime stream's code is never reaped.
    e.control.decide(&publish_req("cam-kept", None)).unwrap();
    let record = (*e.control.get("cam-kept").unwrap()).clone();
    e.control.put(record).await.unwrap();
    tokio::time::sleep(Duration::from_secs(90)).await;
    settle().await;
    assert!(e.control.get("cam-kept").is_some());
    assert_eq!(e.control.list().len(), 1);

    // A new publish after a reap makes the stream again.
    e.control.decide(&publish_req("cam-idle", None)).unwrap();
    assert_eq!(
        e.control.runtime_template("cam-idle").as_deref(),
        Some("cams")
    );

    shutdown.cancel();
    reaper.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_reaper_takes_its_timeout_from_the_caller() {
    let e = env(true).await;
    e.control
        .create_template(template("cams", Some("cam-")))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(
        e.control
            .clone()
            .run_reaper(Duration::from_secs(3), shutdown.clone()),
    );
    e.control.decide(&publish_req("cam-1", None)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert!(e.control.get("cam-1").is_some());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    settle().await;
    assert!(e.control.get("cam-1").is_none());
    shutdown.cancel();
    reaper.await.unwrap();
}
