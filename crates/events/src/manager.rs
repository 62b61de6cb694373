//! [`Webhooks`]: the configured sinks, persisted in the store and mirrored in memory, each
//! with its delivery task. Only the API waits on the store; the bus never does.

use crate::filter::Filter;
use crate::sign::Signer;
use crate::sink::{Delivery, FileTransport, HttpTransport, Sink, SinkConfig, SinkStats, Transport};
use crate::{Event, EventBus, EventKind, Subscriber};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{HookKind, HookRecord, PutOutcome, Store, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest sink id.
pub const MAX_ID_LEN: usize = 64;

/// What new sinks get when the API request leaves a setting out (`events.*` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookDefaults {
    /// Most events in one delivery.
    pub batch_max: u32,
    /// Longest an event waits for its batch to fill, in ms.
    pub batch_delay_ms: u32,
    /// Most events queued per sink.
    pub queue_max: u32,
    /// Time allowed for one delivery attempt, in ms.
    pub timeout_ms: u32,
}

impl Default for HookDefaults {
    fn default() -> Self {
        HookDefaults {
            batch_max: 100,
            batch_delay_ms: 1000,
            queue_max: 10_000,
            timeout_ms: 10_000,
        }
    }
}

/// How the sinks run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// File sinks write under this directory (their paths are relative to it).
    pub file_dir: PathBuf,
    /// Values for settings a request leaves out.
    pub defaults: HookDefaults,
    /// At shutdown, time allowed for a last delivery of what is queued.
    pub shutdown_flush: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            file_dir: PathBuf::from("./data/events"),
            defaults: HookDefaults::default(),
            shutdown_flush: Duration::from_secs(2),
        }
    }
}

/// A sink configuration that breaks a rule; `field` is the request field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// `url`, `events[2]`, `batch_max`...
    pub field: String,
    /// What is wrong (never the secret or the URL's credentials).
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Why a sink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No sink has that id.
    #[error("hook {0:?} not found")]
    NotFound(String),
    /// A create found the id taken.
    #[error("hook {0:?} already exists")]
    Conflict(String),
    /// The configuration breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The database failed; nothing changed.
    #[error(transparent)]
    Store(StoreError),
    /// The HTTP client could not be built (TLS roots).
    #[error("hook client: {0}")]
    Client(String),
}

impl From<StoreError> for HookError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => HookError::Conflict(id),
            e => HookError::Store(e),
        }
    }
}

/// A sink's configuration with its numbers.
#[derive(Clone, Debug)]
pub struct HookStatus {
    /// As stored.
    pub record: HookRecord,
    /// Queue and delivery counters.
    pub stats: SinkStats,
}

/// Whether `id` can name a sink: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh sink id, `h` and twelve hex digits.
pub fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS per process; time and a counter make each call differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("h{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// A webhook URL as the API shows it: the password and the query (where tokens ride)
/// replaced by `****`.
pub fn masked_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return "****".to_owned();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("****"));
    }
    if u.query().is_some() {
        u.set_query(Some("****"));
    }
    u.set_fragment(None);
    u.to_string()
}

/// Checks every rule of a sink configuration; the error names the request field.
pub fn validate(r: &HookRecord) -> Result<(), Invalid> {
    if !valid_id(&r.id) {
        return Err(invalid("id", "must match [A-Za-z0-9_-]{1,64}"));
    }
    if r.name.chars().count() > 200 {
        return Err(invalid("name", "at most 200 characters"));
    }
    match r.kind {
        HookKind::Http => {
            check_url(&r.target).map_err(|reason| invalid("url", reason))?;
            if let Some(secret) = &r.secret
                && !(1..=1024).contains(&secret.len())
            {
                return Err(invalid("secret", "must be 1..=1024 bytes"));
            }
        }
        HookKind::File => {
            check_path(&r.target).map_err(|reason| invalid("path", reason))?;
            if r.secret.is_some() {
                return Err(invalid("secret", "only HTTP hooks are signed"));
            }
        }
    }
    Filter::new(&r.events, &r.streams)
        .map_err(|e| invalid(format!("{}[{}]", e.list, e.index), e.reason))?;
    for (field, v, range) in [
        ("batch_max", r.batch_max, 1..=10_000),
        ("batch_delay_ms", r.batch_delay_ms, 0..=60_000),
        ("queue_max", r.queue_max, 1..=1_000_000),
        ("timeout_ms", r.timeout_ms, 100..=60_000),
    ] {
        if !range.contains(&v) {
            return Err(invalid(
                field,
                format!("must be {}..={}", range.start(), range.end()),
            ));
        }
    }
    Ok(())
}

fn check_url(raw: &str) -> Result<reqwest::Url, String> {
    if raw.len() > 2048 {
        return Err("at most 2048 bytes".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".into());
    }
    Ok(url)
}

/// A file sink's path: relative, inside the events directory (no `..`, no root, no `.`),
/// naming a file.
fn check_path(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > 1024 {
        return Err("must be 1..=1024 bytes".into());
    }
    if raw.ends_with('/') {
        return Err("names a directory, not a file".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("has control characters".into());
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        return Err("must be relative to events.file_dir".into());
    }
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            _ => return Err("only plain names, no \"..\" or \".\"".into()),
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Entry {
    record: HookRecord,
    sink: Arc<Sink>,
    /// The delivery task of an enabled sink: its stop switch and handle.
    task: Option<(CancellationToken, JoinHandle<()>)>,
}

struct Inner {
    bus: EventBus,
    store: Arc<dyn Store>,
    settings: Settings,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Serialises writes so the store's order is the order changes are applied in.
    writes: tokio::sync::Mutex<()>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// The configured event sinks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("sinks", &self.entries().len())
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Sinks on `bus`, persisted in `store`; none until [`Webhooks::load`] or the API adds
    /// some.
    pub fn new(bus: EventBus, store: Arc<dyn Store>, settings: Settings) -> Webhooks {
        Webhooks {
            inner: Arc::new(Inner {
                bus,
                store,
                settings,
                entries: Mutex::new(BTreeMap::new()),
                writes: tokio::sync::Mutex::new(()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Whole-entry inserts and removes only: a poisoned map is consistent.
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bus the sinks take events from.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The settings the sinks run with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Starts every stored sink; one that no longer passes validation is skipped with a
    /// warning. Returns how many were loaded.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let records = self.inner.store.list_hooks().await?;
        let _w = self.inner.writes.lock().await;
        let mut n = 0;
        for r in records {
            let id = r.id.clone();
            if let Err(e) = validate(&r) {
                tracing::warn!(hook = %id, error = %e, "stored hook is invalid; skipped");
                continue;
            }
            match self.install(r).await {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(hook = %id, error = %e, "stored hook not started"),
            }
        }
        Ok(n)
    }

    /// Every sink, by id.
    pub fn list(&self) -> Vec<HookStatus> {
        self.entries().values().map(status).collect()
    }

    /// One sink.
    pub fn get(&self, id: &str) -> Option<HookStatus> {
        self.entries().get(id).map(status)
    }

    /// The numbers of every sink, by id.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.entries().values().map(|e| status(e).stats).collect()
    }

    /// Creates a sink (timestamps set here); [`HookError::Conflict`] when the id is taken.
    pub async fn create(&self, mut record: HookRecord) -> Result<HookStatus, HookError> {
        let _w = self.inner.writes.lock().await;
        record.created_at_ms = now_ms();
        record.updated_at_ms = record.created_at_ms;
        validate(&record)?;
        let config = self.sink_config(&record)?;
        self.inner.store.insert_hook(&record).await?;
        let id = record.id.clone();
        self.install_with(record, config).await;
        self.get(&id).ok_or(HookError::NotFound(id))
    }

    /// Creates or replaces a sink, keeping its queue and counters on replace.
    pub async fn put(&self, mut record: HookRecord) -> Result<(HookStatus, PutOutcome), HookError> {
        let _w = self.inner.writes.lock().await;
        let now = now_ms();
        record.created_at_ms = self
            .entries()
            .get(&record.id)
            .map_or(now, |e| e.record.created_at_ms);
        record.updated_at_ms = now;
        validate(&record)?;
        let config = self.sink_config(&record)?;
        let outcome = self.inner.store.put_hook(&record).await?;
        let id = record.id.clone();
        self.install_with(record, config).await;
        let status = self.get(&id).ok_or(HookError::NotFound(id))?;
        Ok((status, outcome))
    }

    /// Changes a sink with `change` (its id and creation time are kept).
    pub async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut HookRecord),
    ) -> Result<HookStatus, HookError> {
        let _w = self.inner.writes.lock().await;
        let mut record = self
            .entries()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        let created = record.created_at_ms;
        change(&mut record);
        record.id = id.to_owned();
        record.created_at_ms = created;
        record.updated_at_ms = now_ms();
        validate(&record)?;
        let config = self.sink_config(&record)?;
        self.inner.store.put_hook(&record).await?;
        self.install_with(record, config).await;
        self.get(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))
    }

    /// Deletes a sink; what it had queued is dropped.
    pub async fn delete(&self, id: &str) -> Result<(), HookError> {
        let _w = self.inner.writes.lock().await;
        let deleted = self.inner.store.delete_hook(id).await?;
        self.uninstall(id).await;
        if deleted {
            Ok(())
        } else {
            Err(HookError::NotFound(id.to_owned()))
        }
    }

    /// Applies what another node changed in sink `id`: read from the store again, then
    /// installed, reconfigured or removed as a local write would.
    pub async fn reload(&self, id: &str) -> Result<(), StoreError> {
        // Read under the write lock: a local write in between must not be undone.
        let _w = self.inner.writes.lock().await;
        let fresh = self.inner.store.get_hook(id).await?;
        let current = self.entries().get(id).map(|e| e.record.clone());
        match fresh {
            Some(r) if current.as_ref() == Some(&r) => {}
            Some(r) => {
                if let Err(e) = self.install(r).await {
                    tracing::warn!(hook = id, error = %e, "hook changed on another node not started");
                }
            }
            None => self.uninstall(id).await,
        }
        Ok(())
    }

    /// Reads every sink again: after the change feed was down.
    pub async fn resync(&self) -> Result<(), StoreError> {
        let mut ids: BTreeSet<String> = self
            .inner
            .store
            .list_hooks()
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        ids.extend(self.entries().keys().cloned());
        for id in ids {
            self.reload(&id).await?;
        }
        Ok(())
    }

    /// Delivers one `hook.test` event to sink `id` only, now, bypassing its queue and filters,
    /// with a single attempt; returns the outcome and the event sent. Works on a disabled
    /// sink too, so a receiver can be checked before it is switched on.
    pub async fn test(&self, id: &str) -> Result<(Delivery, Event), HookError> {
        let record = self
            .entries()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        let config = self.sink_config(&record)?;
        let event = self.inner.bus.make(
            EventKind::HookTest,
            None,
            serde_json::json!({"hook": id, "message": "test event from ferrocast"}),
        );
        let body = config.transport.encode(&[Arc::new(event.clone())]);
        let delivery = Sink::attempt(&config, body).await;
        tracing::info!(hook = %id, ok = delivery.ok, status = ?delivery.status, error = ?delivery.error, "hook test delivery");
        Ok((delivery, event))
    }

    /// Stops every sink after one last delivery of what each has queued (bounded by
    /// `shutdown_flush`).
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        // Each flush is bounded by the grace; the margin covers task wake-up.
        let bound = self.inner.settings.shutdown_flush + Duration::from_secs(1);
        if tokio::time::timeout(bound, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("event sinks still flushing at shutdown; leaving them");
        }
    }

    fn sink_config(&self, r: &HookRecord) -> Result<SinkConfig, HookError> {
        let filter = Filter::new(&r.events, &r.streams)
            .map_err(|e| invalid(format!("{}[{}]", e.list, e.index), e.reason))?;
        let timeout = Duration::from_millis(u64::from(r.timeout_ms));
        let transport: Arc<dyn Transport> = match r.kind {
            HookKind::Http => Arc::new(HttpTransport {
                url: check_url(&r.target).map_err(|reason| invalid("url", reason))?,
                client: HttpTransport::client(timeout).map_err(HookError::Client)?,
                signer: r.secret.as_deref().map(Signer::new),
                hook: r.id.clone(),
            }),
            HookKind::File => Arc::new(FileTransport {
                path: self.inner.settings.file_dir.join(&r.target),
            }),
        };
        Ok(SinkConfig {
            kind: r.kind,
            filter,
            batch_max: r.batch_max.max(1) as usize,
            batch_delay: Duration::from_millis(u64::from(r.batch_delay_ms)),
            timeout,
            transport,
        })
    }

    /// Stops and forgets sink `id`; what it had queued is dropped.
    async fn uninstall(&self, id: &str) {
        let entry = {
            let mut entries = self.entries();
            let entry = entries.remove(id);
            self.resubscribe(&entries);
            entry
        };
        if let Some(mut e) = entry {
            stop_task(&mut e).await;
            e.sink.queue.clear();
        }
    }

    async fn install(&self, record: HookRecord) -> Result<(), HookError> {
        let config = self.sink_config(&record)?;
        self.install_with(record, config).await;
        Ok(())
    }

    /// Runs `record` as configured: the existing sink (queue and counters) is reconfigured,
    /// its task restarted; a disabled sink gets no task and no events.
    async fn install_with(&self, record: HookRecord, config: SinkConfig) {
        let old = self
            .entries()
            .get_mut(&record.id)
            .and_then(|e| e.task.take());
        if let Some((stop, handle)) = old {
            stop.cancel();
            // The task answers a stop at once (every wait selects on it) and puts its
            // unfinished batch back in the queue.
            let _ = handle.await;
        }
        let queue_max = record.queue_max as usize;
        let mut entries = self.entries();
        let sink = match entries.get(&record.id) {
            Some(e) => {
                e.sink.reconfigure(config, queue_max);
                e.sink.clone()
            }
            None => Arc::new(Sink::new(&record.id, config, queue_max)),
        };
        let task = if record.enabled && !self.inner.shutdown.is_cancelled() {
            let stop = self.inner.shutdown.child_token();
            let handle = self.inner.tracker.spawn(sink.clone().run(
                stop.clone(),
                self.inner.shutdown.clone(),
                self.inner.settings.shutdown_flush,
            ));
            Some((stop, handle))
        } else {
            sink.queue.clear();
            None
        };
        entries.insert(record.id.clone(), Entry { record, sink, task });
        self.resubscribe(&entries);
    }

    /// Points the bus at the sinks that run.
    fn resubscribe(&self, entries: &BTreeMap<String, Entry>) {
        let subs: Vec<Arc<dyn Subscriber>> = entries
            .values()
            .filter(|e| e.task.is_some())
            .map(|e| e.sink.clone() as Arc<dyn Subscriber>)
            .collect();
        self.inner.bus.set_subscribers(subs);
    }
}

async fn stop_task(e: &mut Entry) {
    if let Some((stop, handle)) = e.task.take() {
        stop.cancel();
        let _ = handle.await;
    }
}

fn status(e: &Entry) -> HookStatus {
    HookStatus {
        record: e.record.clone(),
        stats: e.sink.stats(e.record.enabled, e.record.queue_max as usize),
    }
}

#[cfg(test)]
mod tests;
