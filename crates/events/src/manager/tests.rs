//! Sinks through their whole life on a real (in-memory SQLite) store: create, deliver,
//! reconfigure, disable, delete, reload, test, shut down.

use super::*;
use serde_json::json;

struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        Tmp(std::env::temp_dir().join(format!(
            "ferrocast-events-{name}-{}-{}",
            std::process::id(),
            new_id()
        )))
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn setup(name: &str) -> (Webhooks, Arc<dyn Store>, Tmp) {
    let tmp = Tmp::new(name);
    let store = store::open(&format!("sqlite://{}", tmp.0.join("db.sqlite").display()))
        .await
        .unwrap();
    let settings = Settings {
        file_dir: tmp.0.join("events"),
        ..Settings::default()
    };
    (
        Webhooks::new(EventBus::new(Some("n".into())), store.clone(), settings),
        store,
        tmp,
    )
}

fn file_hook(id: &str, path: &str) -> HookRecord {
    HookRecord {
        id: id.into(),
        name: "audit".into(),
        kind: HookKind::File,
        target: path.into(),
        secret: None,
        enabled: true,
        events: vec![],
        streams: vec![],
        batch_max: 100,
        batch_delay_ms: 0,
        queue_max: 1000,
        timeout_ms: 5000,
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn http_hook(id: &str, url: &str) -> HookRecord {
    HookRecord {
        kind: HookKind::Http,
        target: url.into(),
        secret: Some("k".into()),
        ..file_hook(id, "unused")
    }
}

/// The ids in a JSON-lines file, waiting (real time) until there are `n`.
async fn lines(path: &Path, n: usize) -> Vec<u64> {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let ids: Vec<u64> = text
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            if ids.len() >= n {
                return ids;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} did not get {n} lines", path.display());
}

#[tokio::test]
async fn a_created_sink_is_stored_and_takes_events() {
    let (hooks, store, tmp) = setup("create").await;
    let created = hooks
        .create(file_hook("audit", "a/ev.jsonl"))
        .await
        .unwrap();
    assert!(created.record.created_at_ms > 0);
    assert_eq!(created.record.created_at_ms, created.record.updated_at_ms);
    assert_eq!(
        store.get_hook("audit").await.unwrap(),
        Some(created.record.clone())
    );
    let bus = hooks.bus();
    bus.emit(EventKind::StreamStarted, Some("cam"), json!({"session": 1}));
    bus.emit(EventKind::StreamStopped, Some("cam"), json!({"session": 1}));
    let path = tmp.0.join("events/a/ev.jsonl");
    assert_eq!(lines(&path, 2).await, [1, 2]);
    let st = hooks.get("audit").unwrap().stats;
    assert_eq!((st.delivered, st.kind, st.enabled), (2, "file", true));
    assert_eq!(hooks.list().len(), 1);
    assert_eq!(hooks.stats()[0].id, "audit");

    match hooks.create(file_hook("audit", "b.jsonl")).await {
        Err(HookError::Conflict(id)) => assert_eq!(id, "audit"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_configurations_name_their_field_and_store_nothing() {
    let (hooks, store, _tmp) = setup("invalid").await;
    let cases: Vec<(HookRecord, &str)> = vec![
        (file_hook("bad id", "x"), "id"),
        (file_hook("a", "../escape.jsonl"), "path"),
        (file_hook("a", "/etc/passwd"), "path"),
        (file_hook("a", "dir/"), "path"),
        (file_hook("a", "./x"), "path"),
        (http_hook("a", "ftp://h/x"), "url"),
        (http_hook("a", "mailto:ops@example.com"), "url"),
        (http_hook("a", "not a url"), "url"),
        (
            HookRecord {
                secret: Some(String::new()),
                ..http_hook("a", "http://h/")
            },
            "secret",
        ),
        (
            HookRecord {
                secret: Some("k".into()),
                ..file_hook("a", "x")
            },
            "secret",
        ),
        (
            HookRecord {
                events: vec!["stream.started".into(), "nope".into()],
                ..file_hook("a", "x")
            },
            "events[1]",
        ),
        (
            HookRecord {
                streams: vec!["a b".into()],
                ..file_hook("a", "x")
            },
            "streams[0]",
        ),
        (
            HookRecord {
                batch_max: 0,
                ..file_hook("a", "x")
            },
            "batch_max",
        ),
        (
            HookRecord {
                queue_max: 2_000_000,
                ..file_hook("a", "x")
            },
            "queue_max",
        ),
        (
            HookRecord {
                timeout_ms: 10,
                ..file_hook("a", "x")
            },
            "timeout_ms",
        ),
        (
            HookRecord {
                batch_delay_ms: 60_001,
                ..file_hook("a", "x")
            },
            "batch_delay_ms",
        ),
    ];
    for (record, field) in cases {
        match hooks.create(record).await {
            Err(HookError::Invalid(inv)) => assert_eq!(inv.field, field, "{inv}"),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }
    assert!(store.list_hooks().await.unwrap().is_empty());
    assert!(hooks.list().is_empty());
}

#[tokio::test]
async fn put_replaces_keeping_creation_time_queue_and_counters() {
    let (hooks, store, tmp) = setup("put").await;
    let (first, outcome) = hooks.put(file_hook("p", "one.jsonl")).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    hooks.bus().emit(EventKind::PushState, Some("s"), json!({}));
    assert_eq!(lines(&tmp.0.join("events/one.jsonl"), 1).await, [1]);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let (second, outcome) = hooks
        .put(HookRecord {
            events: vec!["stream.*".into()],
            ..file_hook("p", "two.jsonl")
        })
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Replaced);
    assert_eq!(second.record.created_at_ms, first.record.created_at_ms);
    assert!(second.record.updated_at_ms > first.record.updated_at_ms);
    assert_eq!(
        second.stats.delivered, 1,
        "counters survive a reconfiguration"
    );
    assert_eq!(
        store.get_hook("p").await.unwrap().unwrap().target,
        "two.jsonl"
    );
    // The new filter and path apply.
    hooks.bus().emit(EventKind::PushState, Some("s"), json!({}));
    hooks
        .bus()
        .emit(EventKind::StreamStarted, Some("s"), json!({}));
    assert_eq!(lines(&tmp.0.join("events/two.jsonl"), 1).await, [3]);
}

#[tokio::test]
async fn a_disabled_sink_takes_nothing_until_enabled_again() {
    let (hooks, _store, tmp) = setup("disable").await;
    hooks.create(file_hook("d", "d.jsonl")).await.unwrap();
    let off = hooks.update("d", |r| r.enabled = false).await.unwrap();
    assert!(!off.stats.enabled);
    hooks
        .bus()
        .emit(EventKind::StreamStarted, Some("s"), json!({}));
    assert_eq!(hooks.get("d").unwrap().stats.queued, 0);
    let on = hooks
        .update("d", |r| {
            r.enabled = true;
            r.id = "ignored".into();
        })
        .await
        .unwrap();
    assert_eq!(on.record.id, "d", "update keeps the id");
    hooks
        .bus()
        .emit(EventKind::StreamStopped, Some("s"), json!({}));
    assert_eq!(lines(&tmp.0.join("events/d.jsonl"), 1).await, [2]);
    assert!(matches!(
        hooks.update("nope", |_| {}).await,
        Err(HookError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_stops_the_sink_and_forgets_it() {
    let (hooks, store, _tmp) = setup("delete").await;
    hooks
        .create(http_hook("h", "http://127.0.0.1:9/in"))
        .await
        .unwrap();
    hooks.delete("h").await.unwrap();
    assert!(hooks.get("h").is_none());
    assert_eq!(store.get_hook("h").await.unwrap(), None);
    assert!(matches!(
        hooks.delete("h").await,
        Err(HookError::NotFound(_))
    ));
    // Nothing subscribed any more: emitting is a no-op for sinks.
    hooks
        .bus()
        .emit(EventKind::StreamStarted, Some("s"), json!({}));
}

#[tokio::test]
async fn load_starts_stored_sinks_and_skips_invalid_ones() {
    let (hooks, store, tmp) = setup("load").await;
    store
        .insert_hook(&file_hook("ok", "ok.jsonl"))
        .await
        .unwrap();
    store
        .insert_hook(&file_hook("bad", "../../etc/x"))
        .await
        .unwrap();
    assert_eq!(hooks.load().await.unwrap(), 1);
    assert!(hooks.get("bad").is_none());
    hooks
        .bus()
        .emit(EventKind::SessionOpened, Some("s"), json!({}));
    assert_eq!(lines(&tmp.0.join("events/ok.jsonl"), 1).await, [1]);
}

#[tokio::test]
async fn test_delivers_one_event_to_that_sink_only() {
    let (hooks, _store, tmp) = setup("test").await;
    hooks.create(file_hook("t1", "t1.jsonl")).await.unwrap();
    hooks
        .create(HookRecord {
            enabled: false,
            ..file_hook("t2", "t2.jsonl")
        })
        .await
        .unwrap();
    let (d, ev) = hooks.test("t2").await.unwrap();
    assert!(d.ok, "{d:?}");
    assert_eq!(ev.kind, EventKind::HookTest);
    assert_eq!(ev.data["hook"], "t2");
    assert_eq!(lines(&tmp.0.join("events/t2.jsonl"), 1).await, [ev.id]);
    assert!(!tmp.0.join("events/t1.jsonl").exists());
    assert_eq!(hooks.get("t2").unwrap().stats.delivered, 0, "not counted");

    // An unreachable receiver answers with the failure, promptly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    hooks
        .create(http_hook("t3", &format!("http://{port}/x")))
        .await
        .unwrap();
    let (d, _) = hooks.test("t3").await.unwrap();
    assert!(!d.ok && d.status.is_none(), "{d:?}");
    assert!(matches!(
        hooks.test("nope").await,
        Err(HookError::NotFound(_))
    ));
}

#[tokio::test]
async fn close_flushes_what_waits_for_its_batch() {
    let (hooks, _store, tmp) = setup("close").await;
    hooks
        .create(HookRecord {
            batch_delay_ms: 60_000,
            ..file_hook("c", "c.jsonl")
        })
        .await
        .unwrap();
    for _ in 0..3 {
        hooks
            .bus()
            .emit(EventKind::SessionClosed, Some("s"), json!({}));
    }
    let started = std::time::Instant::now();
    hooks.close().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lines(&tmp.0.join("events/c.jsonl"), 3).await, [1, 2, 3]);
    // After close nothing starts again.
    let st = hooks.create(file_hook("late", "late.jsonl")).await.unwrap();
    assert_eq!(st.stats.queued, 0);
    hooks
        .bus()
        .emit(EventKind::SessionClosed, Some("s"), json!({}));
    assert_eq!(hooks.get("late").unwrap().stats.queued, 0);
}

#[test]
fn urls_are_masked_and_ids_are_fresh() {
    assert_eq!(
        masked_url("https://u:pw@h.example:8443/in?token=abc#f"),
        "https://u:****@h.example:8443/in?****"
    );
    assert_eq!(masked_url("http://h/in"), "http://h/in");
    assert_eq!(masked_url("::"), "****");
    let a = new_id();
    assert!(valid_id(&a) && a.len() == 13 && a.starts_with('h'), "{a}");
    assert_ne!(a, new_id());
    assert!(!valid_id("") && !valid_id(&"x".repeat(65)) && valid_id(&"x".repeat(64)));
}
