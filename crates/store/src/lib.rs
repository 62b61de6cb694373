//! Persistence of stream configurations.
//!
//! One small [`Store`] trait with a SQLite and a PostgreSQL implementation, both run through
//! the same test suite. Writes happen off the media path: the control plane keeps the current
//! configuration in memory and only the REST API waits on the store.

mod codec;
mod model;
mod postgres;
mod sqlite;
mod templates;
#[cfg(any(test, feature = "test-suite"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod webhooks;

pub use model::{
    AudioMode, Corner, Failover, HwAccel, InputSpec, PRESETS, Protocols, PushDestination,
    RecordingFormat, RecordingSpec, Rendition, RenditionSpec, RetryPolicy, RtspTransport,
    StreamRecord, TextOverlay, TranscodeAudio, TranscodeSpec, Watermark, parse_window,
    rendition_code,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use templates::TemplateRecord;
#[cfg(any(test, feature = "test-suite"))]
pub use templates::testing as templates_testing;
#[cfg(any(test, feature = "test-suite"))]
pub use webhooks::testing as hooks_testing;
pub use webhooks::{HookKind, HookRecord};

use std::sync::Arc;

use futures_util::future::BoxFuture;

/// Opens and migrates the store a URL names: `sqlite://PATH` (file and directory created if
/// missing) or `postgres://...` / `postgresql://...`.
///
/// Errors: [`StoreError::Setup`] for an unknown scheme, a malformed URL or a failed migration;
/// [`StoreError::Unavailable`] when the database cannot be reached (within about five seconds).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    // Only the scheme goes into the error: the rest of the URL may hold a password.
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Arc::new(SqliteStore::open(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::open(url).await?)),
        _ => Err(StoreError::Setup(format!(
            "unsupported database URL scheme {scheme:?}: expected sqlite://PATH or postgres://..."
        ))),
    }
}

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation for a transient reason; the API
    /// answers 503 and media keeps flowing.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A create found the code taken.
    #[error("stream {0:?} already exists")]
    Conflict(String),
    /// A row could not be decoded (hand-edited or from a newer version).
    #[error("stored data for {code:?} is invalid: {reason}")]
    Corrupt {
        /// Stream code of the bad row.
        code: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL names no supported database, or migrations failed.
    #[error("database setup: {0}")]
    Setup(String),
    /// Another template already has this prefix.
    #[error("template prefix {0:?} is taken")]
    PrefixTaken(String),
}

/// Whether [`Store::put`] created the record or replaced an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// No record had that code.
    Created,
    /// A record was replaced.
    Replaced,
}

/// A configuration change made by anyone sharing the store: another node, or a hand edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    /// The stream with this code was created, changed or deleted.
    Stream(String),
    /// The template with this name was created, changed or deleted.
    Template(String),
    /// The webhook with this id was created, changed or deleted.
    Hook(String),
    /// Changes may have been missed (the feed was down): everything must be read again.
    Resync,
}

/// The changes of a store several nodes share, as they happen.
pub trait ChangeFeed: Send {
    /// The next change; waits for it, reconnecting as long as it takes (a reconnect yields
    /// [`ConfigChange::Resync`]).
    fn next(&mut self) -> BoxFuture<'_, ConfigChange>;
}

/// Stream configuration storage.
pub trait Store: Send + Sync + 'static {
    /// Every stream, ordered by code.
    fn list(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, StoreError>>;
    /// One stream.
    fn get<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<Option<StreamRecord>, StoreError>>;
    /// Creates the record; [`StoreError::Conflict`] if the code exists.
    fn insert<'a>(&'a self, record: &'a StreamRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Creates or replaces the record (keeping the stored `created_at` on replace).
    fn put<'a>(&'a self, record: &'a StreamRecord)
    -> BoxFuture<'a, Result<PutOutcome, StoreError>>;
    /// Deletes the record; `false` if there was none.
    fn delete<'a>(&'a self, code: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Checks the database answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// `sqlite` or `postgres`, for logs and health.
    fn kind(&self) -> &'static str;
    /// What other nodes change, for a store several nodes share (PostgreSQL); `None` for one
    /// only this node writes (SQLite).
    fn change_feed(&self) -> Option<Box<dyn ChangeFeed>> {
        None
    }

    // Event sinks (`/api/v1/hooks`). Both backends implement these; the defaults keep no
    // sinks, so test fakes that only care about streams need not.

    /// Every event sink, ordered by id.
    fn list_hooks(&self) -> BoxFuture<'_, Result<Vec<HookRecord>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// One event sink.
    fn get_hook<'a>(
        &'a self,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Option<HookRecord>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Creates the sink; [`StoreError::Conflict`] if the id exists.
    fn insert_hook<'a>(&'a self, _record: &'a HookRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(no_hooks())))
    }
    /// Creates or replaces the sink (keeping the stored `created_at` on replace).
    fn put_hook<'a>(
        &'a self,
        _record: &'a HookRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(std::future::ready(Err(no_hooks())))
    }
    /// Deletes the sink; `false` if there was none.
    fn delete_hook<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }

    // Stream templates (`/api/v1/templates`). Both backends implement these; the defaults keep
    // none, so test fakes that only care about streams need not.

    /// Every template, ordered by name.
    fn list_templates(&self) -> BoxFuture<'_, Result<Vec<TemplateRecord>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Creates the template: [`StoreError::Conflict`] if the name exists,
    /// [`StoreError::PrefixTaken`] if another template has its prefix.
    fn insert_template<'a>(
        &'a self,
        _record: &'a TemplateRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(no_templates())))
    }
    /// Creates or replaces the template (keeping the stored `created_at` on replace);
    /// [`StoreError::PrefixTaken`] if another template has its prefix.
    fn put_template<'a>(
        &'a self,
        _record: &'a TemplateRecord,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(std::future::ready(Err(no_templates())))
    }
    /// Deletes the template; `false` if there was none.
    fn delete_template<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(false)))
    }
}

/// What a store without template support answers to a template write.
fn no_templates() -> StoreError {
    StoreError::Setup("this store does not keep templates".to_owned())
}

/// What a store without sink support answers to a sink write.
fn no_hooks() -> StoreError {
    StoreError::Setup("this store does not keep event sinks".to_owned())
}
