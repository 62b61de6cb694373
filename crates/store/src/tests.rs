//! Backend tests: the shared suite on SQLite always and on PostgreSQL when
//! `TEST_DATABASE_URL` is set, plus what only a real file or server can show.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{ChangeFeed, ConfigChange, PgStore, SqliteStore, Store, StoreError, open, testing};

/// A fresh directory under the system temp dir, removed on drop (also when a test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-store-{name}-{}-{seq}-{nanos}",
            std::process::id()
        ));
        TempDir(dir)
    }

    /// A database URL in a subdirectory that does not exist yet, so open must create it.
    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.0.join("data/ferrocast.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    let dir = TempDir::new("conformance");
    let store = open(&dir.sqlite_url()).await.unwrap();
    assert_eq!(store.kind(), "sqlite");
    testing::conformance(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_uses_wal_and_foreign_keys() {
    let dir = TempDir::new("pragmas");
    let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    // 1 = NORMAL.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(sync, 1);
}

#[tokio::test]
async fn sqlite_reopen_keeps_data() {
    let dir = TempDir::new("reopen");
    let record = testing::sample("kept");
    {
        let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
        store.insert(&record).await.unwrap();
        store.close().await;
    }
    // Reopening also re-runs the migrator, which must find everything applied.
    let store = open(&dir.sqlite_url()).await.unwrap();
    assert_eq!(store.get("kept").await.unwrap(), Some(record.clone()));
    assert_eq!(store.list().await.unwrap(), vec![record]);
}

#[tokio::test]
async fn sqlite_corrupt_json_is_reported_with_its_code() {
    let dir = TempDir::new("corrupt");
    let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
    store.insert(&testing::sample("good")).await.unwrap();
    store.insert(&testing::sample("bad")).await.unwrap();
    sqlx::query("UPDATE streams SET push = '[{\"url\": 5}' WHERE code = 'bad'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_corrupt(&store, "bad", "push").await;
    // The good row stays readable on its own.
    assert!(store.get("good").await.unwrap().is_some());
}

/// `get` and `list` both report the bad row as `Corrupt`, naming its code and column.
async fn assert_corrupt(store: &dyn Store, code: &str, column: &str) {
    for result in [
        store.get(code).await.map(|_| ()),
        store.list().await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::Corrupt { code: c, reason }) => {
                assert_eq!(c, code);
                assert!(reason.contains(column), "{reason}");
            }
            other => panic!("{}: expected Corrupt, got {other:?}", store.kind()),
        }
    }
}

/// A stream and a template inserted with only the columns their first migration required, as
/// rows written before later migrations look after them.
const OLD_STREAM: &str =
    "INSERT INTO streams (code, name, created_at, updated_at) VALUES ('old', 'from 0001', 1, 2)";
const OLD_TEMPLATE: &str =
    "INSERT INTO templates (name, created_at, updated_at) VALUES ('old', 1, 2)";

/// The rows of [`OLD_STREAM`] and [`OLD_TEMPLATE`] read with every later JSON column (inputs,
/// failover, recording, transcode) at its default.
async fn assert_old_rows_read_as_defaults(store: &dyn Store) {
    let kind = store.kind();
    let mut stream = testing::minimal("old");
    stream.name = "from 0001".to_owned();
    (stream.created_at_ms, stream.updated_at_ms) = (1, 2);
    assert_eq!(
        store.get("old").await.unwrap(),
        Some(stream),
        "{kind}: old stream"
    );
    let mut template = crate::templates_testing::minimal_template("old");
    (template.created_at_ms, template.updated_at_ms) = (1, 2);
    assert_eq!(
        store.list_templates().await.unwrap(),
        vec![template],
        "{kind}: old template"
    );
}

#[tokio::test]
async fn sqlite_old_rows_read_as_defaults() {
    let dir = TempDir::new("old-rows");
    let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
    for sql in [OLD_STREAM, OLD_TEMPLATE] {
        sqlx::query(sql).execute(&store.pool).await.unwrap();
    }
    assert_old_rows_read_as_defaults(&store).await;
    // A partial object (a field added later, or written by hand) keeps the other defaults.
    sqlx::query("UPDATE streams SET recording = '{\"enabled\": true, \"rotate_s\": 60}'")
        .execute(&store.pool)
        .await
        .unwrap();
    let got = store.get("old").await.unwrap().unwrap().recording;
    assert_eq!(
        got,
        crate::RecordingSpec {
            enabled: true,
            rotate_s: 60.0,
            ..crate::RecordingSpec::default()
        }
    );
    // An unknown format is corrupt, named by its column.
    sqlx::query("UPDATE streams SET recording = '{\"format\": \"mkv\"}'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_corrupt(&store, "old", "recording").await;
}

/// A stream and a template with [`testing::sample_transcode`] (and a push on a rendition) read
/// back as written, also after a replace that changes the ladder.
async fn assert_transcode_round_trips(store: &dyn Store) {
    let kind = store.kind();
    let mut stream = testing::minimal("ladder");
    stream.transcode = testing::sample_transcode();
    stream.push = testing::sample("x").push;
    store.insert(&stream).await.unwrap();
    let got = store.get("ladder").await.unwrap().unwrap();
    assert_eq!(got.transcode, stream.transcode, "{kind}: stream ladder");
    assert_eq!(got.push[0].rendition, "480p", "{kind}: push rendition");
    assert_eq!(got, stream, "{kind}: stream");
    stream.transcode.profiles.truncate(1);
    stream.transcode.watermark = None;
    store.put(&stream).await.unwrap();
    assert_eq!(
        store.get("ladder").await.unwrap().unwrap().transcode,
        stream.transcode,
        "{kind}: replaced ladder"
    );
    assert!(store.delete("ladder").await.unwrap());

    let mut template = crate::templates_testing::minimal_template("ladder");
    template.transcode = testing::sample_transcode();
    store.insert_template(&template).await.unwrap();
    assert_eq!(
        store.list_templates().await.unwrap(),
        vec![template],
        "{kind}: template"
    );
    assert!(store.delete_template("ladder").await.unwrap());
}

#[tokio::test]
async fn sqlite_transcode_round_trips() {
    let dir = TempDir::new("transcode");
    let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
    assert_transcode_round_trips(&store).await;
    // A partial object keeps the other defaults; a rung's blanks stay blank (the preset fills
    // them when the ladder runs, not when it is stored).
    store.insert(&testing::minimal("old")).await.unwrap();
    sqlx::query(
        "UPDATE streams SET transcode = '{\"enabled\": true, \"profiles\": [{\"name\": \"720p\"}]}'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    let got = store.get("old").await.unwrap().unwrap().transcode;
    assert_eq!(
        got,
        crate::TranscodeSpec {
            enabled: true,
            profiles: vec![crate::RenditionSpec {
                name: "720p".to_owned(),
                ..crate::RenditionSpec::default()
            }],
            ..crate::TranscodeSpec::default()
        }
    );
    // An unknown encoder family is corrupt, named by its column.
    sqlx::query("UPDATE streams SET transcode = '{\"hwaccel\": \"amf\"}'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_corrupt(&store, "old", "transcode").await;
}

#[tokio::test]
async fn postgres_transcode_round_trips() {
    let Some((schema, url)) = PgSchema::create("transcode").await else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    assert_transcode_round_trips(&store).await;
    store.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn unknown_scheme_is_a_setup_error() {
    match open("mysql://user:hunter2@x/db").await {
        Err(StoreError::Setup(msg)) => {
            assert!(msg.contains("\"mysql\""), "{msg}");
            assert!(!msg.contains("hunter2"), "the password leaked: {msg}");
        }
        other => panic!("expected Setup, got {:?}", other.map(|s| s.kind())),
    }
}

#[tokio::test]
async fn unreachable_postgres_fails_fast() {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), open("postgres://127.0.0.1:1/x"))
        .await
        .expect("open hung");
    match result {
        Err(StoreError::Unavailable(_) | StoreError::Setup(_)) => {}
        other => panic!("expected Unavailable, got {:?}", other.map(|s| s.kind())),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// A schema of its own per test run, dropped at the end, so parallel and repeated runs
/// against one database never see each other's rows.
struct PgSchema {
    admin: sqlx::PgPool,
    name: String,
}

impl PgSchema {
    /// `None` (after saying so) when no test database is configured.
    #[expect(clippy::print_stderr, reason = "the one-line skip note is the point")]
    async fn create(test: &str) -> Option<(Self, String)> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("{test}: TEST_DATABASE_URL not set, skipping the PostgreSQL run");
            return None;
        };
        let admin = sqlx::PgPool::connect(&url)
            .await
            .expect("TEST_DATABASE_URL reachable");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("test_{test}_{}_{nanos}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options[search_path]={name}");
        Some((PgSchema { admin, name }, scoped))
    }

    async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some((schema, url)) = PgSchema::create("conformance").await else {
        return;
    };
    let store = open(&url).await.unwrap();
    assert_eq!(store.kind(), "postgres");
    testing::conformance(store.as_ref()).await;
    schema.drop().await;
}

#[tokio::test]
async fn postgres_reopen_and_corrupt_json() {
    let Some((schema, url)) = PgSchema::create("corrupt").await else {
        return;
    };
    let record = testing::sample("bad");
    {
        let store = PgStore::open(&url).await.unwrap();
        store.insert(&record).await.unwrap();
        store.close().await;
    }
    let store = PgStore::open(&url).await.unwrap();
    assert_eq!(store.get("bad").await.unwrap(), Some(record));
    sqlx::query("UPDATE streams SET tags = 'not json' WHERE code = 'bad'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_corrupt(&store, "bad", "tags").await;
    store.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn postgres_old_rows_read_as_defaults() {
    let Some((schema, url)) = PgSchema::create("old_rows").await else {
        return;
    };
    let store = PgStore::open(&url).await.unwrap();
    for sql in [OLD_STREAM, OLD_TEMPLATE] {
        sqlx::query(sql).execute(&store.pool).await.unwrap();
    }
    assert_old_rows_read_as_defaults(&store).await;
    store.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn postgres_wrong_password_is_a_setup_error() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        return;
    };
    let mut options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    options = options.password("certainly-wrong");
    match PgStore::open_with(options).await {
        Err(StoreError::Setup(msg)) => assert!(msg.contains("password"), "{msg}"),
        other => panic!("expected Setup, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_template_conformance() {
    let dir = TempDir::new("templates");
    let store = open(&dir.sqlite_url()).await.unwrap();
    crate::templates_testing::conformance(store.as_ref()).await;
    // Templates and streams live side by side.
    testing::conformance(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_corrupt_template_is_reported_with_its_name() {
    let dir = TempDir::new("corrupt-template");
    let store = SqliteStore::open(&dir.sqlite_url()).await.unwrap();
    let t = crate::templates_testing::sample_template("cams", Some("cam-"));
    store.insert_template(&t).await.unwrap();
    sqlx::query("UPDATE templates SET inputs = '[{' WHERE name = 'cams'")
        .execute(&store.pool)
        .await
        .unwrap();
    match store.list_templates().await {
        Err(StoreError::Corrupt { code, reason }) => {
            assert!(code.contains("cams"), "{code}");
            assert!(reason.contains("inputs"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_template_conformance() {
    let Some((schema, url)) = PgSchema::create("templates").await else {
        return;
    };
    let store = open(&url).await.unwrap();
    crate::templates_testing::conformance(store.as_ref()).await;
    schema.drop().await;
}

async fn next(feed: &mut dyn ChangeFeed) -> ConfigChange {
    tokio::time::timeout(Duration::from_secs(1), feed.next())
        .await
        .expect("a change within 1 s")
}

/// Two nodes on one schema: what one writes reaches the other's change feed at once; a
/// cluster in another schema of the same database is not heard; SQLite has no feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_change_feed_reports_what_other_nodes_write() {
    let Some((schema, url)) = PgSchema::create("feed").await else {
        return;
    };
    let Some((other, other_url)) = PgSchema::create("feed_other").await else {
        return;
    };
    let a = open(&url).await.unwrap();
    let b = open(&url).await.unwrap();
    let elsewhere = open(&other_url).await.unwrap();
    let mut feed = a.change_feed().expect("PostgreSQL has a change feed");
    // Connecting reads everything again first.
    assert_eq!(next(feed.as_mut()).await, ConfigChange::Resync);
    elsewhere.insert(&testing::sample("cam")).await.unwrap();
    b.insert(&testing::sample("cam")).await.unwrap();
    assert_eq!(
        next(feed.as_mut()).await,
        ConfigChange::Stream("cam".into())
    );
    let mut changed = testing::sample("cam");
    changed.disabled = false;
    b.put(&changed).await.unwrap();
    assert_eq!(
        next(feed.as_mut()).await,
        ConfigChange::Stream("cam".into())
    );
    b.delete("cam").await.unwrap();
    assert_eq!(
        next(feed.as_mut()).await,
        ConfigChange::Stream("cam".into())
    );
    let t = crate::templates::testing::sample_template("tpl", Some("tpl/"));
    b.insert_template(&t).await.unwrap();
    assert_eq!(
        next(feed.as_mut()).await,
        ConfigChange::Template("tpl".into())
    );
    let dir = TempDir::new("feed");
    assert!(
        open(&dir.sqlite_url())
            .await
            .unwrap()
            .change_feed()
            .is_none()
    );
    drop((a, b, elsewhere));
    schema.drop().await;
    other.drop().await;
}
