//! Templates, and the runtime streams a publish to an unknown code makes from them.
//!
//! A template carries stream settings (protocols, pushes, inputs, failover, recording, transcode,
//! tags, a stream key) and an optional code `prefix`. A stream created over the API with
//! `"template": NAME` starts from its settings; an encoder publishing to an unknown code that
//! starts with a prefix gets a runtime stream with them (Open-Streamer's auto-publish), kept in
//! memory only and reaped after [`RUNTIME_IDLE_TIMEOUT`] without publisher or readers. Streams copy the settings when they
//! are made: changing or deleting a template never touches a stream that exists.
//!
//! Matching: prefixes are unique, and when several match a code the longest wins, so a
//! specific `cam-lobby-` can sit beside a general `cam-`.

use crate::{Control, Invalid, InvalidKind, now_ms, validate};
use hub::{AccessRequest, Denied};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use store::{PutOutcome, StoreError, StreamRecord, TemplateRecord};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a runtime stream made from a template lives without a publisher or a reader
/// (Open-Streamer's auto-publish idle timeout).
pub const RUNTIME_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the reaper looks; a reap comes at most this late.
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Why a template operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No template has that name.
    #[error("template {0:?} not found")]
    NotFound(String),
    /// A create found the name taken.
    #[error("template {0:?} already exists")]
    Conflict(String),
    /// Another template has the prefix.
    #[error("template prefix {prefix:?} is taken")]
    PrefixTaken {
        /// The prefix asked for.
        prefix: String,
        /// The template that has it (empty when only the database knew).
        by: String,
    },
    /// The template breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The database failed; nothing changed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for TemplateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(name) => TemplateError::Conflict(name),
            // Another node took it since this one loaded its templates.
            StoreError::PrefixTaken(prefix) => TemplateError::PrefixTaken {
                prefix,
                by: String::new(),
            },
            e => TemplateError::Store(e),
        }
    }
}

fn invalid(field: &str, reason: &str, kind: InvalidKind) -> Invalid {
    Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
        kind,
    }
}

/// Whether a stream with these inputs takes encoders: no inputs (whoever publishes) or an
/// enabled `publish://` one. The same rule admission applies to configured streams.
fn accepts_publishers(inputs: &[store::InputSpec]) -> bool {
    inputs.is_empty()
        || inputs
            .iter()
            .any(|i| i.enabled && i.url.to_ascii_lowercase().starts_with("publish:"))
}

/// Checks every field of `t`: its name and prefix, then its stream settings by the rules of
/// streams (errors name the same fields, e.g. `push[0].url`).
pub fn validate_template(t: &TemplateRecord) -> Result<(), Invalid> {
    if !hub::valid_name(&t.name) {
        return Err(invalid(
            "name",
            "must match [A-Za-z0-9_-]{1,128}",
            InvalidKind::Malformed,
        ));
    }
    if let Some(prefix) = &t.prefix {
        // A namespace prefix (`region/`) takes every code under it.
        if !hub::valid_code(prefix.strip_suffix('/').unwrap_or(prefix)) {
            return Err(invalid(
                "prefix",
                "must match [A-Za-z0-9_/-]{1,128} (the start of the stream codes it takes)",
                InvalidKind::Malformed,
            ));
        }
        if !accepts_publishers(&t.inputs) {
            return Err(invalid(
                "prefix",
                "a prefix makes streams for encoders that publish, so the template needs no inputs or an enabled publish:// input",
                InvalidKind::Semantic,
            ));
        }
    }
    // A code that shows up in messages; any valid one does, the fields are the point.
    let code = t.prefix.as_deref().unwrap_or(&t.name);
    let mut record = stream_from_template(t, code);
    record.description.clone_from(&t.description);
    validate(&record)
}

/// The stream `code` as `t` makes it: the template's settings, no name or description.
pub fn stream_from_template(t: &TemplateRecord, code: &str) -> StreamRecord {
    StreamRecord {
        code: code.to_owned(),
        name: String::new(),
        description: String::new(),
        tags: t.tags.clone(),
        stream_key: t.stream_key.clone(),
        disabled: false,
        protocols: t.protocols,
        push: t.push.clone(),
        inputs: t.inputs.clone(),
        failover: t.failover,
        recording: t.recording.clone(),
        transcode: t.transcode.clone(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// A runtime stream made from a template.
struct Runtime {
    record: Arc<StreamRecord>,
    template: String,
    /// Last time it had a publisher or a reader, or was admitted.
    busy_at: Instant,
}

/// Templates in memory (mirroring the store) and the runtime streams made from them.
pub(crate) struct Templates {
    by_name: RwLock<BTreeMap<String, Arc<TemplateRecord>>>,
    runtime: Mutex<HashMap<String, Runtime>>,
}

impl Templates {
    pub(crate) fn new(records: Vec<TemplateRecord>) -> Templates {
        Templates {
            by_name: RwLock::new(
                records
                    .into_iter()
                    .map(|t| (t.name.clone(), Arc::new(t)))
                    .collect(),
            ),
            runtime: Mutex::new(HashMap::new()),
        }
    }

    fn by_name(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<TemplateRecord>>> {
        // Whole-entry inserts and removes only: a poisoned map is still consistent.
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mirror(&self, name: &str, t: Option<Arc<TemplateRecord>>) {
        let mut map = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        match t {
            Some(t) => map.insert(name.to_owned(), t),
            None => map.remove(name),
        };
    }

    fn runtime(&self) -> MutexGuard<'_, HashMap<String, Runtime>> {
        // Same: single inserts, removes and timestamp updates.
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The template whose prefix `code` starts with; the longest when several do.
    fn matching(&self, code: &str) -> Option<Arc<TemplateRecord>> {
        self.by_name()
            .values()
            .filter(|t| t.prefix.as_deref().is_some_and(|p| code.starts_with(p)))
            .max_by_key(|t| t.prefix.as_ref().map_or(0, String::len))
            .cloned()
    }

    /// The template other than `name` that has `prefix`.
    fn prefix_owner(&self, prefix: &str, name: &str) -> Option<String> {
        self.by_name()
            .values()
            .find(|t| t.name != name && t.prefix.as_deref() == Some(prefix))
            .map(|t| t.name.clone())
    }
}

impl Control {
    fn templates_state(&self) -> &Templates {
        &self.inner.templates
    }

    /// Every template, by name.
    pub fn templates(&self) -> Vec<Arc<TemplateRecord>> {
        self.templates_state().by_name().values().cloned().collect()
    }

    /// The template `name`.
    pub fn template(&self, name: &str) -> Option<Arc<TemplateRecord>> {
        self.templates_state().by_name().get(name).cloned()
    }

    /// The template a publish to the unknown code `code` would take: the longest matching
    /// prefix.
    pub fn template_for(&self, code: &str) -> Option<Arc<TemplateRecord>> {
        self.templates_state().matching(code)
    }

    /// Checks `t` and that its prefix is free.
    fn check_template(&self, t: &TemplateRecord) -> Result<(), TemplateError> {
        validate_template(t)?;
        if let Some(prefix) = &t.prefix
            && let Some(by) = self.templates_state().prefix_owner(prefix, &t.name)
        {
            return Err(TemplateError::PrefixTaken {
                prefix: prefix.clone(),
                by,
            });
        }
        Ok(())
    }

    /// Creates a template; [`TemplateError::Conflict`] if the name exists.
    pub async fn create_template(
        &self,
        mut t: TemplateRecord,
    ) -> Result<TemplateRecord, TemplateError> {
        let _w = self.inner.writes.lock().await;
        if self.template(&t.name).is_some() {
            return Err(TemplateError::Conflict(t.name));
        }
        self.check_template(&t)?;
        let now = now_ms();
        t.created_at_ms = now;
        t.updated_at_ms = now;
        self.inner.store.insert_template(&t).await?;
        self.templates_state()
            .mirror(&t.name, Some(Arc::new(t.clone())));
        tracing::info!(template = %t.name, prefix = ?t.prefix, "template created");
        Ok(t)
    }

    /// Creates or replaces a template. Streams made from it keep their settings.
    pub async fn put_template(
        &self,
        mut t: TemplateRecord,
    ) -> Result<(TemplateRecord, PutOutcome), TemplateError> {
        let _w = self.inner.writes.lock().await;
        self.check_template(&t)?;
        let old = self.template(&t.name);
        let now = now_ms();
        t.created_at_ms = old.as_ref().map_or(now, |o| o.created_at_ms);
        t.updated_at_ms = now.max(old.as_ref().map_or(0, |o| o.updated_at_ms + 1));
        let outcome = self.inner.store.put_template(&t).await?;
        self.templates_state()
            .mirror(&t.name, Some(Arc::new(t.clone())));
        tracing::info!(template = %t.name, prefix = ?t.prefix, "template stored");
        Ok((t, outcome))
    }

    /// Changes a template with `edit` (PATCH); its name stays.
    pub async fn update_template(
        &self,
        name: &str,
        edit: impl FnOnce(&mut TemplateRecord),
    ) -> Result<TemplateRecord, TemplateError> {
        let _w = self.inner.writes.lock().await;
        let old = self
            .template(name)
            .ok_or_else(|| TemplateError::NotFound(name.to_owned()))?;
        let mut t = (*old).clone();
        edit(&mut t);
        t.name.clone_from(&old.name);
        self.check_template(&t)?;
        t.created_at_ms = old.created_at_ms;
        t.updated_at_ms = now_ms().max(old.updated_at_ms + 1);
        self.inner.store.put_template(&t).await?;
        self.templates_state()
            .mirror(&t.name, Some(Arc::new(t.clone())));
        tracing::info!(template = %t.name, prefix = ?t.prefix, "template changed");
        Ok(t)
    }

    /// Deletes a template. Streams made from it, runtime ones included, carry on unchanged.
    pub async fn delete_template(&self, name: &str) -> Result<(), TemplateError> {
        let _w = self.inner.writes.lock().await;
        let known = self.template(name).is_some();
        let deleted = self.inner.store.delete_template(name).await?;
        if !known && !deleted {
            return Err(TemplateError::NotFound(name.to_owned()));
        }
        self.templates_state().mirror(name, None);
        tracing::info!(template = name, "template deleted");
        Ok(())
    }

    /// Applies what another node changed in template `name`, read from the store again.
    pub async fn reload_template(&self, name: &str) -> Result<(), StoreError> {
        // Read under the write lock, as `Control::reload` does.
        let _w = self.inner.writes.lock().await;
        let fresh = self
            .inner
            .store
            .list_templates()
            .await?
            .into_iter()
            .find(|t| t.name == name);
        if self.template(name).as_deref() != fresh.as_ref() {
            tracing::info!(template = name, "template changed on another node; applied");
            self.templates_state().mirror(name, fresh.map(Arc::new));
        }
        Ok(())
    }

    /// Reads every template again (see [`Control::resync`]).
    pub(crate) async fn resync_templates(&self) -> Result<(), StoreError> {
        let _w = self.inner.writes.lock().await;
        let stored = self.inner.store.list_templates().await?;
        let state = self.templates_state();
        let gone: Vec<String> = state
            .by_name()
            .keys()
            .filter(|n| !stored.iter().any(|t| &t.name == *n))
            .cloned()
            .collect();
        for name in gone {
            state.mirror(&name, None);
        }
        for t in stored {
            if self.template(&t.name).as_deref() != Some(&t) {
                state.mirror(&t.name.clone(), Some(Arc::new(t)));
            }
        }
        Ok(())
    }

    /// The runtime stream `code` made from a template. A configured stream of the same code
    /// wins over it: [`Control::get`] looks there first.
    pub(crate) fn runtime_record(&self, code: &str) -> Option<Arc<StreamRecord>> {
        self.templates_state()
            .runtime()
            .get(code)
            .map(|r| r.record.clone())
    }

    /// The template the runtime stream `code` was made from; `None` for configured streams
    /// and for streams that are not runtime streams of a template.
    pub fn runtime_template(&self, code: &str) -> Option<String> {
        if self.streams().contains_key(code) {
            return None;
        }
        self.templates_state()
            .runtime()
            .get(code)
            .map(|r| r.template.clone())
    }

    /// Every runtime stream made from a template (not shadowed by a configured one), by code.
    pub fn runtime_streams(&self) -> Vec<Arc<StreamRecord>> {
        let mut v: Vec<Arc<StreamRecord>> = {
            let runtime = self.templates_state().runtime();
            runtime.values().map(|r| r.record.clone()).collect()
        };
        let configured = self.streams();
        v.retain(|r| !configured.contains_key(&r.code));
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Drops the runtime entry of `code` (it was deleted, or a configured stream took the
    /// code).
    pub(crate) fn forget_runtime(&self, code: &str) {
        self.templates_state().runtime().remove(code);
    }

    /// Marks the runtime stream `code` busy now: it was just admitted, so the reaper must not
    /// take it before its publisher arrives.
    pub(crate) fn touch_runtime(&self, code: &str) {
        if let Some(r) = self.templates_state().runtime().get_mut(code) {
            r.busy_at = Instant::now();
        }
    }

    /// Admission of a publish to a code no stream has: a matching template (its key first)
    /// makes a runtime stream with its settings, whatever `auto_create` says, because the
    /// operator asked for exactly these codes; otherwise `auto_create` decides.
    pub(crate) fn admit_unknown(&self, req: &AccessRequest) -> Result<(), Denied> {
        if let Some(t) = self.template_for(&req.code) {
            crate::check_key(t.stream_key.as_deref(), req)?;
            if self.materialize(&t, &req.code).is_some() {
                return Ok(());
            }
        }
        if self.inner.config.auto_create {
            Ok(())
        } else {
            Err(Denied::new("unknown stream"))
        }
    }

    /// Makes the runtime stream `code` from `t` and starts what it runs (pushes, inputs,
    /// output switches). Returns the stream now in force, or `None` if `t` cannot make `code`.
    fn materialize(&self, t: &TemplateRecord, code: &str) -> Option<Arc<StreamRecord>> {
        let mut record = stream_from_template(t, code);
        let now = now_ms();
        record.created_at_ms = now;
        record.updated_at_ms = now;
        if let Err(e) = validate(&record) {
            // Templates are validated when stored; only the code can be at fault here.
            tracing::warn!(stream = code, template = %t.name, error = %e, "template cannot make this stream");
            return None;
        }
        let record = Arc::new(record);
        {
            // Lock order everywhere: configured streams, then runtime streams.
            let configured = self.streams();
            let mut runtime = self.templates_state().runtime();
            // A configured stream created meanwhile, or a publish racing this one, wins.
            if let Some(existing) = configured.get(code) {
                return Some(existing.clone());
            }
            if let Some(existing) = runtime.get(code) {
                return Some(existing.record.clone());
            }
            runtime.insert(
                code.to_owned(),
                Runtime {
                    record: record.clone(),
                    template: t.name.clone(),
                    busy_at: Instant::now(),
                },
            );
        }
        tracing::info!(stream = code, template = %t.name, "runtime stream made from template");
        self.apply(None, record.clone());
        Some(record)
    }

    /// Until `shutdown`, reaps every runtime stream made from a template that has had no
    /// publisher and no reader for `idle` (normally [`RUNTIME_IDLE_TIMEOUT`]).
    pub async fn run_reaper(self, idle: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REAP_INTERVAL.min(idle));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.reap_idle(idle).await,
            }
        }
    }

    /// One pass of the reaper.
    async fn reap_idle(&self, idle: Duration) {
        // Serialised with API writes, so a stream configured meanwhile is never torn down.
        let _w = self.inner.writes.lock().await;
        let now = Instant::now();
        let hub = &self.inner.hub;
        let readers: std::collections::HashSet<String> = hub
            .sessions()
            .into_iter()
            .filter(|s| s.role == hub::SessionRole::Reader)
            .map(|s| s.stream)
            .collect();
        let mut reaped = Vec::new();
        {
            let configured = self.streams();
            let mut runtime = self.templates_state().runtime();
            runtime.retain(|code, r| {
                if configured.contains_key(code) {
                    // A configured stream took the code; it owns the outputs now.
                    return false;
                }
                let published = hub.stats(code).is_some_and(|s| s.publisher.is_some());
                if published || readers.contains(code) {
                    r.busy_at = now;
                    return true;
                }
                if now.duration_since(r.busy_at) < idle {
                    return true;
                }
                reaped.push((code.clone(), r.template.clone()));
                false
            });
        }
        for (code, template) in reaped {
            if self.get(&code).is_some() {
                // A publish made it again between the sweep and here: it is live, keep it.
                continue;
            }
            tracing::info!(stream = %code, template = %template, idle_s = idle.as_secs_f64(), "idle runtime stream reaped");
            self.shut_down(&code);
        }
    }
}

#[cfg(test)]
mod tests;
