//! Mapping between [`StreamRecord`] and table rows, and between sqlx errors and [`StoreError`].
//! Shared by both backends so they cannot drift apart.

use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type, query::Query};

use crate::{StoreError, StreamRecord};

// The statements both backends share: `$n` placeholders work in SQLite too, and `excluded` is
// spelled the same in both. Macros rather than consts so PostgreSQL can `concat!` a RETURNING.
macro_rules! columns {
    () => {
        "code, name, description, tags, stream_key, disabled, protocols, push, created_at, updated_at, inputs, failover, recording, transcode"
    };
}
macro_rules! upsert {
    () => {
        concat!(
            "INSERT INTO streams (",
            $crate::codec::columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (code) DO UPDATE SET ",
            // created_at is deliberately absent: a replace keeps the original.
            "name = excluded.name, description = excluded.description, tags = excluded.tags, ",
            "stream_key = excluded.stream_key, disabled = excluded.disabled, ",
            "protocols = excluded.protocols, push = excluded.push, updated_at = excluded.updated_at, ",
            "inputs = excluded.inputs, failover = excluded.failover, recording = excluded.recording, ",
            "transcode = excluded.transcode"
        )
    };
}
pub(crate) use {columns, upsert};

pub(crate) const SELECT_ALL: &str = concat!("SELECT ", columns!(), " FROM streams ORDER BY code");
pub(crate) const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM streams WHERE code = $1");
pub(crate) const INSERT: &str = concat!(
    "INSERT INTO streams (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);
pub(crate) const DELETE: &str = "DELETE FROM streams WHERE code = $1";

/// A record with its JSON columns serialized, ready to bind.
pub(crate) struct Encoded<'a> {
    record: &'a StreamRecord,
    tags: String,
    protocols: String,
    push: String,
    inputs: String,
    failover: String,
    recording: String,
    transcode: String,
}

impl<'a> Encoded<'a> {
    pub(crate) fn new(record: &'a StreamRecord) -> Result<Self, StoreError> {
        // serde_json only fails on non-string map keys or failing Serialize impls, neither of
        // which the model has; still reported rather than unwrapped.
        let json = |value: Result<String, serde_json::Error>, column: &str| {
            value.map_err(|e| StoreError::Corrupt {
                code: record.code.clone(),
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

    /// Binds `$1..$14` in `columns!()` order.
    pub(crate) fn bind<'q, DB>(
        &self,
        query: Query<'q, DB, DB::Arguments>,
    ) -> Query<'q, DB, DB::Arguments>
    where
        DB: Database,
        for<'e> &'e str: Encode<'e, DB> + Type<DB>,
        for<'e> Option<&'e str>: Encode<'e, DB> + Type<DB>,
        for<'e> bool: Encode<'e, DB> + Type<DB>,
        for<'e> i64: Encode<'e, DB> + Type<DB>,
    {
        let r = self.record;
        query
            .bind(r.code.as_str())
            .bind(r.name.as_str())
            .bind(r.description.as_str())
            .bind(self.tags.as_str())
            .bind(r.stream_key.as_deref())
            .bind(r.disabled)
            .bind(self.protocols.as_str())
            .bind(self.push.as_str())
            .bind(r.created_at_ms)
            .bind(r.updated_at_ms)
            .bind(self.inputs.as_str())
            .bind(self.failover.as_str())
            .bind(self.recording.as_str())
            .bind(self.transcode.as_str())
    }
}

/// Reads one row selected with `columns!()` (by column name). Any unreadable cell, SQL-typed or JSON, is
/// [`StoreError::Corrupt`] naming the row's code, so one bad row is identifiable.
pub(crate) fn decode_row<'r, R>(row: &'r R) -> Result<StreamRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let code: String = row.try_get("code").map_err(|e| StoreError::Corrupt {
        code: String::from("<unreadable>"),
        reason: e.to_string(),
    })?;
    let corrupt = |reason: String| StoreError::Corrupt {
        code: code.clone(),
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
    Ok(StreamRecord {
        name: row.try_get("name").map_err(sql)?,
        description: row.try_get("description").map_err(sql)?,
        tags: serde_json::from_str(&tags).map_err(|e| json("tags", e))?,
        stream_key: row.try_get("stream_key").map_err(sql)?,
        disabled: row.try_get("disabled").map_err(sql)?,
        protocols: serde_json::from_str(&protocols).map_err(|e| json("protocols", e))?,
        push: serde_json::from_str(&push).map_err(|e| json("push", e))?,
        inputs: serde_json::from_str(&inputs).map_err(|e| json("inputs", e))?,
        failover: serde_json::from_str(&failover).map_err(|e| json("failover", e))?,
        recording: serde_json::from_str(&recording).map_err(|e| json("recording", e))?,
        transcode: serde_json::from_str(&transcode).map_err(|e| json("transcode", e))?,
        created_at_ms: row.try_get("created_at").map_err(sql)?,
        updated_at_ms: row.try_get("updated_at").map_err(sql)?,
        code,
    })
}

/// Classifies a failed statement. Everything but a duplicate key is reported as unavailable:
/// the API answers 503 and the caller may retry, which is right for outages, pool timeouts
/// and lock timeouts, and harmless for the rest.
pub(crate) fn map_err(e: sqlx::Error, code: Option<&str>) -> StoreError {
    match &e {
        // PostgreSQL 23505; SQLite SQLITE_CONSTRAINT_PRIMARYKEY (1555) / _UNIQUE (2067).
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(code.unwrap_or_default().to_owned())
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreError::Corrupt {
            code: code.unwrap_or("<unknown>").to_owned(),
            reason: e.to_string(),
        },
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Errors while opening: a bad URL or option, wrong credentials or a missing database are
/// setup problems that retrying will not fix; anything else (refused, timed out, TLS) means
/// the database is not reachable right now.
pub(crate) fn map_open_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(e) => StoreError::Setup(e.to_string()),
        // SQLSTATE class 28: invalid authorization; 3D000: invalid catalog (database) name.
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("28") || c == "3D000") =>
        {
            StoreError::Setup(db.to_string())
        }
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// A migration that fails to apply is a setup problem (the schema is not what this build
/// needs); losing the connection meanwhile is still an outage.
pub(crate) fn map_migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(
            e @ (sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed),
        ) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Setup(format!("migrations failed: {e}")),
    }
}
