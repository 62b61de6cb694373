//! PostgreSQL backend: shared configuration for several nodes.

use std::{str::FromStr, time::Duration};

use futures_util::future::BoxFuture;
use sqlx::{
    Connection, PgConnection, PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{
    ChangeFeed, ConfigChange, PutOutcome, Store, StoreError, StreamRecord,
    codec::{
        DELETE, Encoded, INSERT, SELECT_ALL, SELECT_ONE, decode_row, map_err, map_migrate_err,
        map_open_err, upsert,
    },
};

/// Bounds both waiting for a pooled connection and opening a new one (sqlx has no separate
/// connect timeout): during an outage the API answers 503 after this long instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Only the REST API and start-up talk to the store; every node keeps its own small pool so a
/// cluster stays far below the server's `max_connections`.
const MAX_CONNECTIONS: u32 = 4;

/// `xmax` is 0 for a row version this statement inserted and set when it updated an existing
/// row: atomic under concurrent puts, unlike a SELECT-then-write.
const UPSERT: &str = concat!(upsert!(), " RETURNING (xmax = 0) AS created");

/// [`Store`] on PostgreSQL, migrated from `migrations/postgres/` at open.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The schema the tables live in (the first of the `search_path`): change notifications
    /// of other schemas in the same database are not ours.
    schema: std::sync::Arc<str>,
}

/// The channel every node LISTENs on (see `migrations/postgres/0007_change_feed.sql`).
const CHANGE_CHANNEL: &str = "ferrocast_config";
/// Wait before reconnecting the change feed after a failed attempt.
const FEED_RETRY: Duration = Duration::from_secs(1);

impl PgStore {
    /// Connects to `postgres://...` (or `postgresql://...`) and migrates. Fails with
    /// [`StoreError::Unavailable`] after about five seconds if the server cannot be reached.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(map_open_err)?;
        Self::open_with(options).await
    }

    /// Like [`PgStore::open`] with options built in code (e.g. a `search_path` for tests or
    /// multi-tenant schemas).
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        // One connection of our own first: a pool that cannot connect only says "timed out",
        // while this reports the cause (refused, bad password, unknown database) and fails at
        // once when the server refuses.
        let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no answer from PostgreSQL within {ACQUIRE_TIMEOUT:?}"
                ))
            })?
            .map_err(map_open_err)?;
        // Several nodes may start together: the migrator takes an advisory lock, so only one
        // applies each migration.
        let migrated = sqlx::migrate!("../../migrations/postgres")
            .run(&mut conn)
            .await
            .map_err(map_migrate_err);
        let schema: Result<String, StoreError> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| map_err(e, None));
        // Best effort: the server drops the session anyway when the socket closes.
        let _ = conn.close().await;
        migrated?;
        let schema = schema?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            schema: schema.into(),
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `LISTEN ferrocast_config` session of one node.
struct PgChangeFeed {
    pool: PgPool,
    schema: std::sync::Arc<str>,
    listener: Option<sqlx::postgres::PgListener>,
}

impl PgChangeFeed {
    /// `schema|table|key` of this store's schema as a change; `None` for another schema's.
    fn parse(&self, payload: &str) -> Option<ConfigChange> {
        let mut parts = payload.splitn(3, '|');
        if parts.next()? != &*self.schema {
            return None;
        }
        let (table, key) = (parts.next()?, parts.next()?.to_owned());
        match table {
            "streams" => Some(ConfigChange::Stream(key)),
            "templates" => Some(ConfigChange::Template(key)),
            "webhooks" => Some(ConfigChange::Hook(key)),
            _ => None,
        }
    }

    async fn connect(&self) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGE_CHANNEL).await?;
        Ok(listener)
    }
}

impl ChangeFeed for PgChangeFeed {
    fn next(&mut self) -> BoxFuture<'_, ConfigChange> {
        Box::pin(async move {
            loop {
                let Some(listener) = self.listener.as_mut() else {
                    match self.connect().await {
                        Ok(l) => {
                            self.listener = Some(l);
                            tracing::info!("postgres: following configuration changes");
                            // Whatever changed while no one listened is read again.
                            return ConfigChange::Resync;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "postgres: change feed not connected; retrying");
                            tokio::time::sleep(FEED_RETRY).await;
                            continue;
                        }
                    }
                };
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if let Some(change) = self.parse(n.payload()) {
                            return change;
                        }
                    }
                    // The connection was lost; notifications sent meanwhile are gone.
                    Ok(None) | Err(_) => {
                        tracing::warn!("postgres: change feed lost its connection");
                        self.listener = None;
                    }
                }
            }
        })
    }
}

impl Store for PgStore {
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
            let row = encoded
                .bind(sqlx::query(UPSERT))
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
        "postgres"
    }

    fn change_feed(&self) -> Option<Box<dyn ChangeFeed>> {
        Some(Box::new(PgChangeFeed {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
            listener: None,
        }))
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
        Box::pin(crate::templates::postgres::list(&self.pool))
    }
    fn insert_template<'a>(
        &'a self,
        record: &'a crate::TemplateRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(crate::templates::postgres::insert(&self.pool, record))
    }
    fn put_template<'a>(
        &'a self,
        record: &'a crate::TemplateRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(crate::templates::postgres::put(&self.pool, record))
    }
    fn delete_template<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(crate::templates::postgres::delete(&self.pool, name))
    }
}
