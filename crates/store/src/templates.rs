//! Stream templates: the model, its row mapping and the statements both backends run.
//!
//! A template holds the settings a stream starts with: one created over the API with
//! `"template": NAME`, or a runtime stream made when an encoder publishes to an unknown code that
//! starts with the template's `prefix`. Streams copy the settings when they are made, so a later
//! change or deletion of the template leaves them alone.

use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type, query::Query};

use crate::{
    Failover, InputSpec, Protocols, PushDestination, PutOutcome, RecordingSpec, StoreError,
    TranscodeSpec,
};

/// One stored template. Timestamps are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// `[A-Za-z0-9_-]{1,128}`, the primary key.
    pub name: String,
    /// Codes starting with this get the template when published to unknown; unique.
    pub prefix: Option<String>,
    /// Free text about the template (not copied to streams).
    pub description: String,
    /// Copied to streams.
    pub tags: Vec<String>,
    /// Copied to streams: the key their publishers need (`?key=`).
    pub stream_key: Option<String>,
    /// Copied to streams.
    pub protocols: Protocols,
    /// Copied to streams.
    pub push: Vec<PushDestination>,
    /// Copied to streams.
    pub inputs: Vec<InputSpec>,
    /// Copied to streams.
    pub failover: Failover,
    /// Copied to streams.
    pub recording: RecordingSpec,
    /// Copied to streams.
    pub transcode: TranscodeSpec,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

macro_rules! columns {
    () => {
        "name, prefix, description, tags, stream_key, protocols, push, inputs, failover, created_at, updated_at, recording, transcode"
    };
}

pub(crate) const SELECT_ALL: &str = concat!("SELECT ", columns!(), " FROM templates ORDER BY name");
pub(crate) const INSERT: &str = concat!(
    "INSERT INTO templates (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);
/// `created_at` is absent from the update: a replace keeps the original. A macro so
/// PostgreSQL can `concat!` a RETURNING.
macro_rules! upsert {
    () => {
        concat!(
            "INSERT INTO templates (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (name) DO UPDATE SET ",
            "prefix = excluded.prefix, description = excluded.description, tags = excluded.tags, ",
            "stream_key = excluded.stream_key, protocols = excluded.protocols, push = excluded.push, ",
            "inputs = excluded.inputs, failover = excluded.failover, updated_at = excluded.updated_at, ",
            "recording = excluded.recording, transcode = excluded.transcode"
        )
    };
}
pub(crate) const UPSERT: &str = upsert!();
pub(crate) const DELETE: &str = "DELETE FROM templates WHERE name = $1";

/// A template with its JSON columns serialized, ready to bind.
pub(crate) struct Encoded<'a> {
    record: &'a TemplateRecord,
    tags: String,
    protocols: String,
    push: String,
    inputs: String,
    failover: String,
    recording: String,
    transcode: String,
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(record: &'a TemplateRecord) -> Result<Self, StoreError> {
        // The model's Serialize impls cannot fail; still reported rather than unwrapped.
        let json = |value: Result<String, serde_json::Error>, column: &str| {
            value.map_err(|e| StoreError::Corrupt {
                code: record.name.clone(),
                reason: format!("cannot encode {column}: {e}"),
            })
        };
        Ok(Encoded {
            record,
            tags: json(serde_json::to_string(&record.tags), "tags")?,
            protocols: json(serde_json::to_string(&record.protocols), "protocols")?,
            push: json(serde_json::to_string(&record.push), "push")?,
            inputs: json(serde_json::to_string(&record.inputs), "inputs")?,
            failover: json(serde_json::to_string(&record.failover), "failover")?,
            recording: json(serde_json::to_string(&record.recording), "recording")?,
            transcode: json(serde_json::to_string(&record.transcode), "transcode")?,
        })
    }

    /// Binds `$1..$13` in `columns!()` order.
    pub(crate) fn bind<'q, DB>(
        &self,
        query: Query<'q, DB, DB::Arguments>,
    ) -> Query<'q, DB, DB::Arguments>
    where
        DB: Database,
        for<'e> &'e str: Encode<'e, DB> + Type<DB>,
        for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
        for<'e> i64: Encode<'e, DB> + Type<DB>,
    {
        let r = self.record;
        query
            .bind(r.name.as_str())
            .bind(r.prefix.as_deref())
            .bind(r.description.as_str())
            .bind(self.tags.as_str())
            .bind(r.stream_key.as_deref())
            .bind(self.protocols.as_str())
            .bind(self.push.as_str())
            .bind(self.inputs.as_str())
            .bind(self.failover.as_str())
            .bind(r.created_at_ms)
            .bind(r.updated_at_ms)
            .bind(self.recording.as_str())
            .bind(self.transcode.as_str())
    }
}

/// Reads one row selected with `columns!()`; an unreadable cell is [`StoreError::Corrupt`]
/// naming the template.
pub(crate) fn decode_row<'r, R>(row: &'r R) -> Result<TemplateRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let name: String = row.try_get("name").map_err(|e| StoreError::Corrupt {
        code: String::from("<unreadable template>"),
        reason: e.to_string(),
    })?;
    let corrupt = |reason: String| StoreError::Corrupt {
        code: format!("template {name}"),
        reason,
    };
    let sql = |e: sqlx::Error| corrupt(e.to_string());
    let json = |column: &str, e: serde_json::Error| corrupt(format!("column {column}: {e}"));
    let tags: String = row.try_get("tags").map_err(sql)?;
    let protocols: String = row.try_get("protocols").map_err(sql)?;
    let push: String = row.try_get("push").map_err(sql)?;
    let inputs: String = row.try_get("inputs").map_err(sql)?;
    let failover: String = row.try_get("failover").map_err(sql)?;
    let recording: String = row.try_get("recording").map_err(sql)?;
    let transcode: String = row.try_get("transcode").map_err(sql)?;
    Ok(TemplateRecord {
        prefix: row.try_get("prefix").map_err(sql)?,
        description: row.try_get("description").map_err(sql)?,
        tags: serde_json::from_str(&tags).map_err(|e| json("tags", e))?,
        stream_key: row.try_get("stream_key").map_err(sql)?,
        protocols: serde_json::from_str(&protocols).map_err(|e| json("protocols", e))?,
        push: serde_json::from_str(&push).map_err(|e| json("push", e))?,
        inputs: serde_json::from_str(&inputs).map_err(|e| json("inputs", e))?,
        failover: serde_json::from_str(&failover).map_err(|e| json("failover", e))?,
        recording: serde_json::from_str(&recording).map_err(|e| json("recording", e))?,
        transcode: serde_json::from_str(&transcode).map_err(|e| json("transcode", e))?,
        created_at_ms: row.try_get("created_at").map_err(sql)?,
        updated_at_ms: row.try_get("updated_at").map_err(sql)?,
        name,
    })
}

/// Classifies a failed write of `t`: a taken prefix is [`StoreError::PrefixTaken`], a taken
/// name [`StoreError::Conflict`], the rest as for streams.
pub(crate) fn map_write_err(e: sqlx::Error, t: &TemplateRecord) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        // PostgreSQL names the constraint; SQLite only says "UNIQUE constraint failed:
        // templates.prefix".
        let on_prefix = db.constraint().is_some_and(|c| c.contains("prefix"))
            || db.message().contains("templates.prefix");
        return if on_prefix {
            StoreError::PrefixTaken(t.prefix.clone().unwrap_or_default())
        } else {
            StoreError::Conflict(t.name.clone())
        };
    }
    crate::codec::map_err(e, Some(&t.name))
}

/// The SQLite side.
pub(crate) mod sqlite {
    use super::*;
    use sqlx::SqlitePool;

    pub(crate) async fn list(pool: &SqlitePool) -> Result<Vec<TemplateRecord>, StoreError> {
        let rows = sqlx::query(SELECT_ALL)
            .fetch_all(pool)
            .await
            .map_err(|e| crate::codec::map_err(e, None))?;
        rows.iter().map(decode_row).collect()
    }

    pub(crate) async fn insert(pool: &SqlitePool, t: &TemplateRecord) -> Result<(), StoreError> {
        Encoded::new(t)?
            .bind(sqlx::query(INSERT))
            .execute(pool)
            .await
            .map_err(|e| map_write_err(e, t))?;
        Ok(())
    }

    pub(crate) async fn put(
        pool: &SqlitePool,
        t: &TemplateRecord,
    ) -> Result<PutOutcome, StoreError> {
        let encoded = Encoded::new(t)?;
        let err = |e| map_write_err(e, t);
        // As for streams: IMMEDIATE takes the write lock first, so "did it exist" and the
        // write are one step even with other writers.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let existed = sqlx::query("SELECT 1 FROM templates WHERE name = $1")
            .bind(t.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?
            .is_some();
        encoded
            .bind(sqlx::query(UPSERT))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(if existed {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        })
    }

    pub(crate) async fn delete(pool: &SqlitePool, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(DELETE)
            .bind(name)
            .execute(pool)
            .await
            .map_err(|e| crate::codec::map_err(e, Some(name)))?;
        Ok(done.rows_affected() > 0)
    }
}

/// The PostgreSQL side.
pub(crate) mod postgres {
    use super::*;
    use sqlx::PgPool;

    pub(crate) async fn list(pool: &PgPool) -> Result<Vec<TemplateRecord>, StoreError> {
        let rows = sqlx::query(SELECT_ALL)
            .fetch_all(pool)
            .await
            .map_err(|e| crate::codec::map_err(e, None))?;
        rows.iter().map(decode_row).collect()
    }

    pub(crate) async fn insert(pool: &PgPool, t: &TemplateRecord) -> Result<(), StoreError> {
        Encoded::new(t)?
            .bind(sqlx::query(INSERT))
            .execute(pool)
            .await
            .map_err(|e| map_write_err(e, t))?;
        Ok(())
    }

    pub(crate) async fn put(pool: &PgPool, t: &TemplateRecord) -> Result<PutOutcome, StoreError> {
        // `xmax = 0` only for a row version this statement inserted: atomic, unlike a
        // SELECT-then-write.
        let row = Encoded::new(t)?
            .bind(sqlx::query(concat!(
                upsert!(),
                " RETURNING (xmax = 0) AS created"
            )))
            .fetch_one(pool)
            .await
            .map_err(|e| map_write_err(e, t))?;
        let created: bool = row.try_get("created").map_err(|e| map_write_err(e, t))?;
        Ok(if created {
            PutOutcome::Created
        } else {
            PutOutcome::Replaced
        })
    }

    pub(crate) async fn delete(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(DELETE)
            .bind(name)
            .execute(pool)
            .await
            .map_err(|e| crate::codec::map_err(e, Some(name)))?;
        Ok(done.rows_affected() > 0)
    }
}

/// The conformance suite of the template methods, for every [`crate::Store`]; compiled for
/// this crate's tests and, with the `test-suite` feature, for other crates' fakes.
#[cfg(any(test, feature = "test-suite"))]
pub mod testing {
    use crate::testing::sample;
    use crate::{PutOutcome, Store, StoreError, TemplateRecord};

    /// A template with every field set to something non-default.
    pub fn sample_template(name: &str, prefix: Option<&str>) -> TemplateRecord {
        let s = sample("x");
        TemplateRecord {
            name: name.to_owned(),
            prefix: prefix.map(str::to_owned),
            description: "cameras of the east wing\nwith 'quotes'".to_owned(),
            tags: s.tags,
            stream_key: s.stream_key,
            protocols: s.protocols,
            push: s.push,
            inputs: s.inputs,
            failover: s.failover,
            recording: s.recording,
            transcode: s.transcode,
            created_at_ms: 1_763_700_000_000,
            updated_at_ms: 1_763_700_000_500,
        }
    }

    /// A template with the "empty" choices.
    pub fn minimal_template(name: &str) -> TemplateRecord {
        TemplateRecord {
            name: name.to_owned(),
            prefix: None,
            description: String::new(),
            tags: Vec::new(),
            stream_key: None,
            protocols: crate::Protocols::default(),
            push: Vec::new(),
            inputs: Vec::new(),
            failover: crate::Failover::default(),
            recording: crate::RecordingSpec::default(),
            transcode: crate::TranscodeSpec::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    /// Runs every template check against `store`, which must hold no templates; none are left.
    /// Panics with the store's kind and the failed check.
    pub async fn conformance(store: &dyn Store) {
        let kind = store.kind();
        let list = || async { store.list_templates().await.expect("list templates") };
        assert_eq!(list().await, Vec::new(), "{kind}: empty");
        assert!(
            !store.delete_template("nope").await.expect("delete missing"),
            "{kind}: delete missing"
        );

        // Round trip of both shapes; several templates may have no prefix.
        let full = sample_template("cams", Some("cam-"));
        let bare = minimal_template("bare");
        let bare2 = minimal_template("bare2");
        for t in [&full, &bare, &bare2] {
            store.insert_template(t).await.expect("insert");
        }
        assert_eq!(
            list().await,
            vec![bare.clone(), bare2.clone(), full.clone()],
            "{kind}: round trip, by name"
        );

        // A taken name, then a taken prefix: each named, nothing changed.
        match store.insert_template(&minimal_template("cams")).await {
            Err(StoreError::Conflict(name)) => assert_eq!(name, "cams", "{kind}"),
            other => panic!("{kind}: duplicate name gave {other:?}"),
        }
        let mut thief = minimal_template("thief");
        thief.prefix = Some("cam-".to_owned());
        match store.insert_template(&thief).await {
            Err(StoreError::PrefixTaken(p)) => assert_eq!(p, "cam-", "{kind}"),
            other => panic!("{kind}: duplicate prefix gave {other:?}"),
        }
        match store.put_template(&thief).await {
            Err(StoreError::PrefixTaken(p)) => assert_eq!(p, "cam-", "{kind}"),
            other => panic!("{kind}: put with a taken prefix gave {other:?}"),
        }
        // A longer prefix starting with a taken one is another prefix.
        thief.prefix = Some("cam-east-".to_owned());
        store.insert_template(&thief).await.expect("longer prefix");
        assert_eq!(
            list().await.len(),
            4,
            "{kind}: refused writes changed nothing"
        );

        // put: Replaced keeps created_at and takes the rest, back to the bare shape too.
        let mut changed = sample_template("cams", Some("camera-"));
        changed.created_at_ms += 99_999;
        changed.updated_at_ms += 1_000;
        assert_eq!(
            store.put_template(&changed).await.expect("replace"),
            PutOutcome::Replaced,
            "{kind}"
        );
        let mut want = changed.clone();
        want.created_at_ms = full.created_at_ms;
        let stored = |name: &'static str| async move {
            store
                .list_templates()
                .await
                .expect("list")
                .into_iter()
                .find(|t| t.name == name)
        };
        assert_eq!(stored("cams").await, Some(want), "{kind}: replace");
        let mut emptied = minimal_template("cams");
        emptied.updated_at_ms = changed.updated_at_ms + 1;
        store.put_template(&emptied).await.expect("replace bare");
        let got = stored("cams").await.expect("cams");
        assert_eq!(
            (
                got.prefix,
                got.stream_key,
                got.push.len(),
                got.updated_at_ms
            ),
            (None, None, 0, emptied.updated_at_ms),
            "{kind}: nullable and empty values overwrite set ones"
        );
        // The freed prefix is free.
        let mut heir = sample_template("heir", Some("cam-"));
        assert_eq!(
            store.put_template(&heir).await.expect("put new"),
            PutOutcome::Created,
            "{kind}"
        );
        heir.created_at_ms = 1;
        assert_eq!(
            store.put_template(&heir).await.expect("put again"),
            PutOutcome::Replaced,
            "{kind}"
        );

        // Byte-wise order whatever the collation.
        for name in ["b", "B", "a_1", "a-1", "a1", "Z9"] {
            store
                .insert_template(&minimal_template(name))
                .await
                .expect("insert for ordering");
        }
        let names: Vec<String> = list().await.into_iter().map(|t| t.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{kind}: list order");

        // Delete: true once, then false; streams are untouched by all of this.
        assert!(
            store.delete_template("cams").await.expect("delete"),
            "{kind}"
        );
        assert!(
            !store.delete_template("cams").await.expect("again"),
            "{kind}"
        );
        for t in list().await {
            assert!(store.delete_template(&t.name).await.expect("cleanup"));
        }
        assert!(list().await.is_empty(), "{kind}: empty at end");
    }
}
