//! Persistence of event sinks (`/api/v1/hooks`): HTTP webhooks and JSON-lines files.
//!
//! Same shape as the stream table: one row per sink, list/filter columns as JSON text, SQL
//! with `$n` placeholders shared by both backends; only the "created or replaced?" question of
//! a put is answered per backend, as for streams.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::codec::map_err;
use crate::{PgStore, PutOutcome, SqliteStore, StoreError};

/// Where a sink delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// POST of a JSON array of events to an http(s) URL.
    Http,
    /// One JSON event per line appended to a file.
    File,
}

impl HookKind {
    /// `http` or `file`, as stored and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Http => "http",
            HookKind::File => "file",
        }
    }

    /// The inverse of [`HookKind::as_str`].
    pub fn parse(s: &str) -> Option<HookKind> {
        match s {
            "http" => Some(HookKind::Http),
            "file" => Some(HookKind::File),
            _ => None,
        }
    }
}

/// One configured event sink as stored. Timestamps are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRecord {
    /// `[A-Za-z0-9_-]{1,64}`, the primary key.
    pub id: String,
    /// Display name.
    pub name: String,
    /// HTTP webhook or file.
    pub kind: HookKind,
    /// The URL (`http`) or the file path relative to the events directory (`file`).
    pub target: String,
    /// HMAC-SHA256 key of the `X-Ferrocast-Signature` header (`http` only).
    pub secret: Option<String>,
    /// A disabled sink receives nothing.
    pub enabled: bool,
    /// Event types to deliver (`stream.started`, `input.*`); empty means all.
    pub events: Vec<String>,
    /// Stream codes to deliver (`cam1`, `cam-*`); empty means all.
    pub streams: Vec<String>,
    /// Most events in one delivery.
    pub batch_max: u32,
    /// Longest an event waits for its batch to fill, in milliseconds.
    pub batch_delay_ms: u32,
    /// Most events queued for the sink; beyond it the oldest are dropped.
    pub queue_max: u32,
    /// Time allowed for one delivery attempt, in milliseconds.
    pub timeout_ms: u32,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

macro_rules! hook_columns {
    () => {
        "id, name, kind, target, secret, enabled, events, streams, batch_max, batch_delay_ms, queue_max, timeout_ms, created_at, updated_at"
    };
}
macro_rules! hook_upsert {
    () => {
        concat!(
            "INSERT INTO webhooks (",
            hook_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO UPDATE SET ",
            // created_at is deliberately absent: a replace keeps the original.
            "name = excluded.name, kind = excluded.kind, target = excluded.target, ",
            "secret = excluded.secret, enabled = excluded.enabled, events = excluded.events, ",
            "streams = excluded.streams, batch_max = excluded.batch_max, ",
            "batch_delay_ms = excluded.batch_delay_ms, queue_max = excluded.queue_max, ",
            "timeout_ms = excluded.timeout_ms, updated_at = excluded.updated_at"
        )
    };
}

const SELECT_ALL: &str = concat!("SELECT ", hook_columns!(), " FROM webhooks ORDER BY id");
const SELECT_ONE: &str = concat!("SELECT ", hook_columns!(), " FROM webhooks WHERE id = $1");
const INSERT: &str = concat!(
    "INSERT INTO webhooks (",
    hook_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);
const UPSERT_SQLITE: &str = hook_upsert!();
/// `xmax = 0`: the row version was inserted by this statement (see the stream upsert).
const UPSERT_PG: &str = concat!(hook_upsert!(), " RETURNING (xmax = 0) AS created");
const DELETE: &str = "DELETE FROM webhooks WHERE id = $1";

/// A record with its JSON columns serialized, ready to bind.
struct Encoded<'a> {
    r: &'a HookRecord,
    events: String,
    streams: String,
}

impl<'a> Encoded<'a> {
    fn new(r: &'a HookRecord) -> Result<Self, StoreError> {
        // Vec<String> always serializes; reported rather than unwrapped all the same.
        let json = |v: &Vec<String>, column: &str| {
            serde_json::to_string(v).map_err(|e| StoreError::Corrupt {
                code: r.id.clone(),
                reason: format!("cannot encode {column}: {e}"),
            })
        };
        Ok(Encoded {
            r,
            events: json(&r.events, "events")?,
            streams: json(&r.streams, "streams")?,
        })
    }
}

/// Binds `$1..$14` in `hook_columns!()` order. A macro, not a generic function: the bounds a
/// generic bind needs across both drivers say more than the statement itself.
macro_rules! bind_hook {
    ($query:expr, $e:expr) => {{
        let e = &$e;
        $query
            .bind(e.r.id.as_str())
            .bind(e.r.name.as_str())
            .bind(e.r.kind.as_str())
            .bind(e.r.target.as_str())
            .bind(e.r.secret.as_deref())
            .bind(e.r.enabled)
            .bind(e.events.as_str())
            .bind(e.streams.as_str())
            .bind(i64::from(e.r.batch_max))
            .bind(i64::from(e.r.batch_delay_ms))
            .bind(i64::from(e.r.queue_max))
            .bind(i64::from(e.r.timeout_ms))
            .bind(e.r.created_at_ms)
            .bind(e.r.updated_at_ms)
    }};
}

/// Reads one row selected with `hook_columns!()`; anything unreadable is
/// [`StoreError::Corrupt`] naming the sink's id.
fn decode<'r, R>(row: &'r R) -> Result<HookRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id").map_err(|e| StoreError::Corrupt {
        code: String::from("<unreadable>"),
        reason: e.to_string(),
    })?;
    let corrupt = |reason: String| StoreError::Corrupt {
        code: id.clone(),
        reason,
    };
    let sql = |e: sqlx::Error| corrupt(e.to_string());
    let json = |column: &str, text: String| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&text).map_err(|e| corrupt(format!("column {column}: {e}")))
    };
    let small = |column: &'static str| -> Result<u32, StoreError> {
        let v: i64 = row.try_get(column).map_err(sql)?;
        u32::try_from(v).map_err(|_| corrupt(format!("column {column}: {v} out of range")))
    };
    let kind: String = row.try_get("kind").map_err(sql)?;
    Ok(HookRecord {
        kind: HookKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("column kind: unknown kind {kind:?}")))?,
        name: row.try_get("name").map_err(sql)?,
        target: row.try_get("target").map_err(sql)?,
        secret: row.try_get("secret").map_err(sql)?,
        enabled: row.try_get("enabled").map_err(sql)?,
        events: json("events", row.try_get("events").map_err(sql)?)?,
        streams: json("streams", row.try_get("streams").map_err(sql)?)?,
        batch_max: small("batch_max")?,
        batch_delay_ms: small("batch_delay_ms")?,
        queue_max: small("queue_max")?,
        timeout_ms: small("timeout_ms")?,
        created_at_ms: row.try_get("created_at").map_err(sql)?,
        updated_at_ms: row.try_get("updated_at").map_err(sql)?,
        id,
    })
}

/// The statements every backend runs the same way.
macro_rules! common_hook_ops {
    () => {
        pub(crate) fn hooks_list(&self) -> BoxFuture<'_, Result<Vec<HookRecord>, StoreError>> {
            Box::pin(async move {
                let rows = sqlx::query(SELECT_ALL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| map_err(e, None))?;
                rows.iter().map(decode).collect()
            })
        }

        pub(crate) fn hooks_get<'a>(
            &'a self,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<HookRecord>, StoreError>> {
            Box::pin(async move {
                let row = sqlx::query(SELECT_ONE)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| map_err(e, Some(id)))?;
                row.as_ref().map(decode).transpose()
            })
        }

        pub(crate) fn hooks_insert<'a>(
            &'a self,
            record: &'a HookRecord,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                let encoded = Encoded::new(record)?;
                bind_hook!(sqlx::query(INSERT), encoded)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| map_err(e, Some(&record.id)))?;
                Ok(())
            })
        }

        pub(crate) fn hooks_delete<'a>(
            &'a self,
            id: &'a str,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            Box::pin(async move {
                let done = sqlx::query(DELETE)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| map_err(e, Some(id)))?;
                Ok(done.rows_affected() > 0)
            })
        }
    };
}

impl SqliteStore {
    common_hook_ops!();

    pub(crate) fn hooks_put<'a>(
        &'a self,
        record: &'a HookRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let encoded = Encoded::new(record)?;
            let err = |e| map_err(e, Some(&record.id));
            // As for streams: IMMEDIATE takes the write lock before the look, so two puts of
            // one new id cannot both see "no row".
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
            let existed = sqlx::query("SELECT 1 FROM webhooks WHERE id = $1")
                .bind(record.id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?
                .is_some();
            bind_hook!(sqlx::query(UPSERT_SQLITE), encoded)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(if existed {
                PutOutcome::Replaced
            } else {
                PutOutcome::Created
            })
        })
    }
}

impl PgStore {
    common_hook_ops!();

    pub(crate) fn hooks_put<'a>(
        &'a self,
        record: &'a HookRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let encoded = Encoded::new(record)?;
            let err = |e| map_err(e, Some(&record.id));
            let row = bind_hook!(sqlx::query(UPSERT_PG), encoded)
                .fetch_one(&self.pool)
                .await
                .map_err(err)?;
            let created: bool = row.try_get("created").map_err(err)?;
            Ok(if created {
                PutOutcome::Created
            } else {
                PutOutcome::Replaced
            })
        })
    }
}

/// The sink conformance suite every [`crate::Store`] must pass, like
/// [`crate::testing::conformance`] for streams.
#[cfg(any(test, feature = "test-suite"))]
pub mod testing {
    use super::{HookKind, HookRecord};
    use crate::{PutOutcome, Store, StoreError};
    use futures_util::future::join_all;

    /// An HTTP sink with every field set to something non-default.
    pub fn sample_hook(id: &str) -> HookRecord {
        HookRecord {
            id: id.to_owned(),
            name: format!("Hook {id} — «ops» 🛰"),
            kind: HookKind::Http,
            target: "https://user:pw@hooks.example:8443/in?token=a'b\"c".to_owned(),
            secret: Some("s3cr3t with spaces".to_owned()),
            enabled: false,
            events: vec!["stream.started".to_owned(), "input.*".to_owned()],
            streams: vec!["cam1".to_owned(), "cam-*".to_owned()],
            batch_max: 7,
            batch_delay_ms: 250,
            queue_max: 4_000_000_000,
            timeout_ms: 1500,
            created_at_ms: 1_763_700_000_000,
            updated_at_ms: 1_763_700_000_500,
        }
    }

    /// A file sink with the "empty" choices.
    pub fn minimal_hook(id: &str) -> HookRecord {
        HookRecord {
            id: id.to_owned(),
            name: String::new(),
            kind: HookKind::File,
            target: "events.jsonl".to_owned(),
            secret: None,
            enabled: true,
            events: Vec::new(),
            streams: Vec::new(),
            batch_max: 1,
            batch_delay_ms: 0,
            queue_max: 1,
            timeout_ms: 100,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    /// Runs every sink check against `store`, which must hold no sinks; it is left without
    /// any. Panics with the store's kind and the failed check.
    pub async fn hooks_conformance(store: &dyn Store) {
        let kind = store.kind();
        assert_eq!(
            store.list_hooks().await.expect("list empty"),
            Vec::new(),
            "{kind}: list on empty"
        );
        assert_eq!(store.get_hook("nope").await.expect("get missing"), None);
        assert!(!store.delete_hook("nope").await.expect("delete missing"));

        let full = sample_hook("full");
        let bare = minimal_hook("bare");
        store.insert_hook(&full).await.expect("insert full");
        store.insert_hook(&bare).await.expect("insert bare");
        assert_eq!(
            store.get_hook("full").await.expect("get full"),
            Some(full.clone()),
            "{kind}: full"
        );
        assert_eq!(
            store.get_hook("bare").await.expect("get bare"),
            Some(bare.clone()),
            "{kind}: bare"
        );

        let mut dup = minimal_hook("full");
        dup.name = "intruder".to_owned();
        match store.insert_hook(&dup).await {
            Err(StoreError::Conflict(id)) => assert_eq!(id, "full", "{kind}: conflict id"),
            other => panic!("{kind}: duplicate insert gave {other:?}"),
        }
        assert_eq!(store.get_hook("full").await.unwrap(), Some(full.clone()));

        // Byte-wise order by id, whatever the collation.
        for id in ["b", "B", "a_1", "a-1", "a1"] {
            store.insert_hook(&minimal_hook(id)).await.expect("insert");
        }
        let ids: Vec<String> = store
            .list_hooks()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            ["B", "a-1", "a1", "a_1", "b", "bare", "full"],
            "{kind}: list order"
        );
        assert_eq!(
            store.list_hooks().await.unwrap()[6],
            full,
            "{kind}: decodes"
        );

        // put: Created, then Replaced keeping created_at; then back to the bare shape.
        let first = minimal_hook("put");
        assert_eq!(
            store.put_hook(&first).await.expect("put new"),
            PutOutcome::Created,
            "{kind}"
        );
        let mut second = sample_hook("put");
        second.created_at_ms = 99_999;
        assert_eq!(
            store.put_hook(&second).await.expect("put again"),
            PutOutcome::Replaced,
            "{kind}"
        );
        let mut want = second.clone();
        want.created_at_ms = first.created_at_ms;
        assert_eq!(
            store.get_hook("put").await.unwrap(),
            Some(want),
            "{kind}: replace keeps created_at"
        );
        let third = minimal_hook("put");
        store.put_hook(&third).await.expect("put 3");
        assert_eq!(store.get_hook("put").await.unwrap(), Some(third), "{kind}");

        // Concurrent puts of one new id: exactly one creates it.
        let racers: Vec<HookRecord> = (0..6)
            .map(|i| {
                let mut r = sample_hook("race");
                r.name = format!("racer {i}");
                r
            })
            .collect();
        let outcomes = join_all(racers.iter().map(|r| store.put_hook(r))).await;
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PutOutcome::Created)))
            .count();
        let replaced = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PutOutcome::Replaced)))
            .count();
        assert_eq!((created, replaced), (1, 5), "{kind}: {outcomes:?}");

        // The sink table is apart from the stream table.
        assert!(store.list().await.expect("streams").is_empty(), "{kind}");

        assert!(store.delete_hook("full").await.expect("delete"));
        assert!(!store.delete_hook("full").await.expect("delete again"));
        assert_eq!(store.get_hook("full").await.unwrap(), None);
        for r in store.list_hooks().await.expect("list") {
            assert!(store.delete_hook(&r.id).await.expect("cleanup"), "{kind}");
        }
        assert!(store.list_hooks().await.unwrap().is_empty(), "{kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{hooks_conformance, sample_hook};
    use crate::{PgStore, SqliteStore, Store, StoreError, open};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn temp_url(name: &str) -> (std::path::PathBuf, String) {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-hooks-{name}-{}-{nanos}",
            std::process::id()
        ));
        let url = format!("sqlite://{}", dir.join("f.db").display());
        (dir, url)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_hooks_conformance() {
        let (dir, url) = temp_url("conformance");
        let store = open(&url).await.unwrap();
        hooks_conformance(store.as_ref()).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn sqlite_corrupt_hook_rows_name_their_id() {
        let (dir, url) = temp_url("corrupt");
        let store = SqliteStore::open(&url).await.unwrap();
        store.insert_hook(&sample_hook("bad")).await.unwrap();
        sqlx::query("UPDATE webhooks SET events = '[1' WHERE id = 'bad'")
            .execute(&store.pool)
            .await
            .unwrap();
        match store.get_hook("bad").await {
            Err(StoreError::Corrupt { code, reason }) => {
                assert_eq!(code, "bad");
                assert!(reason.contains("events"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// PostgreSQL when `TEST_DATABASE_URL` is set, in a schema of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_hooks_conformance() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            return;
        };
        let admin = sqlx::PgPool::connect(&url).await.expect("reachable");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let schema = format!("test_hooks_{}_{nanos}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = PgStore::open(&format!("{url}{sep}options[search_path]={schema}"))
            .await
            .unwrap();
        hooks_conformance(&store).await;
        store.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
}
