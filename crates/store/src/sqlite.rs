//! SQLite backend: the single-node default.

use std::{path::Path, str::FromStr, time::Duration};

use futures_util::future::BoxFuture;
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{
    PutOutcome, Store, StoreError, StreamRecord,
    codec::{
        DELETE, Encoded, INSERT, SELECT_ALL, SELECT_ONE, decode_row, map_err, map_migrate_err,
        map_open_err, upsert,
    },
};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// WAL lets readers run beside the one writer; a few connections are plenty for the API.
const MAX_CONNECTIONS: u32 = 4;

/// [`Store`] on a SQLite file (WAL mode), migrated from `migrations/sqlite/` at open.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file and its parent directory if missing) and migrates
    /// `sqlite://PATH`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(map_open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL cannot corrupt the file; a power cut may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if let Some(dir) = parent_dir(url) {
            // Blocking, but once at start-up before anything else touches the file.
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Setup(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A little over the busy timeout, so a lock wait reports as such first.
            .acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(1))
            .connect_with(options)
            .await
            .map_err(map_open_err)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(map_migrate_err)?;
        Ok(SqliteStore { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned (flushes the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The directory holding the database file of `sqlite://PATH[?query]`, if it has one.
fn parent_dir(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Path::new(path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
}

const UPSERT: &str = upsert!();

impl Store for SqliteStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(SELECT_ALL)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err(e, None))?;
            rows.iter().map(decode_row).collect()
        })
    }

    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<StreamRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(SELECT_ONE)
                .bind(code)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err(e, Some(code)))?;
            row.as_ref().map(decode_row).transpose()
        })
    }

    fn insert<'a>(&'a self, record: &'a StreamRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let encoded = Encoded::new(record)?;
            encoded
                .bind(sqlx::query(INSERT))
                .execute(&self.pool)
                .await
                .map_err(|e| map_err(e, Some(&record.code)))?;
            Ok(())
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a StreamRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let encoded = Encoded::new(record)?;
            let err = |e| map_err(e, Some(&record.code));
            // SQLite's RETURNING cannot tell an insert from an update, so look first. IMMEDIATE
            // takes the write lock up front: under a deferred BEGIN two puts could both see "no
            // row", and in WAL mode upgrading a read to a write fails at once (BUSY_SNAPSHOT)
            // instead of waiting out the busy timeout.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
            let existed = sqlx::query("SELECT 1 FROM streams WHERE code = $1")
                .bind(record.code.as_str())
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
        })
    }

    fn delete<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(DELETE)
                .bind(code)
                .execute(&self.pool)
                .await
                .map_err(|e| map_err(e, Some(code)))?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| map_err(e, None))?;
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    // Event sinks: see crate::webhooks.
    fn list_hooks(&self) -> BoxFuture<'_, Result<Vec<crate::HookRecord>, StoreError>> {
        self.hooks_list()
    }
    fn get_hook<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::HookRecord>, StoreError>> {
        self.hooks_get(id)
    }
    fn insert_hook<'a>(
        &'a self,
        record: &'a crate::HookRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.hooks_insert(record)
    }
    fn put_hook<'a>(
        &'a self,
        record: &'a crate::HookRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        self.hooks_put(record)
    }
    fn delete_hook<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.hooks_delete(id)
    }

    // Templates: see crate::templates.
    fn list_templates(&self) -> BoxFuture<'_, Result<Vec<crate::TemplateRecord>, StoreError>> {
        Box::pin(crate::templates::sqlite::list(&self.pool))
    }
    fn insert_template<'a>(
        &'a self,
        record: &'a crate::TemplateRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(crate::templates::sqlite::insert(&self.pool, record))
    }
    fn put_template<'a>(
        &'a self,
        record: &'a crate::TemplateRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(crate::templates::sqlite::put(&self.pool, record))
    }
    fn delete_template<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(crate::templates::sqlite::delete(&self.pool, name))
    }
}
