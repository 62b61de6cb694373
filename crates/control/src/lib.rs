//! The control plane: which streams exist, who may publish or play them, which outputs run.
//!
//! Configuration lives in the [`store::Store`] and is mirrored in memory, so every decision on
//! the media path (publish, play, a segment request) is a map lookup and a database outage
//! never stops live streams. Only API writes wait on the database; after a write succeeds the
//! difference is applied to the running streams, touching nothing that did not change.

mod templates;
mod validate;

pub use templates::{RUNTIME_IDLE_TIMEOUT, TemplateError, stream_from_template, validate_template};
pub use validate::{Invalid, InvalidKind, validate};

use hub::{AccessRequest, Action, Admission, Admit, DecisionFuture, Denied, Hub};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use store::{PutOutcome, Store, StoreError, StreamRecord};

/// Control-plane settings from the configuration file.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// Publishing to an unknown code creates a runtime stream (not persisted) instead of
    /// being refused.
    pub auto_create: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { auto_create: true }
    }
}

/// Why a control-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No stream has that code.
    #[error("stream {0:?} not found")]
    NotFound(String),
    /// A create found the code taken.
    #[error("stream {0:?} already exists")]
    Conflict(String),
    /// The record breaks a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The database failed; nothing changed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(code) => ControlError::Conflict(code),
            e => ControlError::Store(e),
        }
    }
}

/// The output protocols a stream can switch on and off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// HLS.
    Hls,
    /// DASH.
    Dash,
    /// RTMP play.
    Rtmp,
    /// SRT play.
    Srt,
    /// RTSP play.
    Rtsp,
    /// MPEG-TS over HTTP.
    Mpegts,
}

impl Output {
    /// Every output.
    pub const ALL: [Output; 6] = [
        Output::Hls,
        Output::Dash,
        Output::Rtmp,
        Output::Srt,
        Output::Rtsp,
        Output::Mpegts,
    ];

    /// The protocol name readers register under in the hub.
    pub fn protocol(self) -> &'static str {
        match self {
            Output::Hls => "hls",
            Output::Dash => "dash",
            Output::Rtmp => "rtmp",
            Output::Srt => "srt",
            Output::Rtsp => "rtsp",
            Output::Mpegts => "mpegts",
        }
    }

    /// The output a reader protocol name belongs to.
    pub fn from_protocol(p: &str) -> Option<Output> {
        Output::ALL.into_iter().find(|o| o.protocol() == p)
    }

    fn enabled_in(self, p: &store::Protocols) -> bool {
        match self {
            Output::Hls => p.hls,
            Output::Dash => p.dash,
            Output::Rtmp => p.rtmp,
            Output::Srt => p.srt,
            Output::Rtsp => p.rtsp,
            Output::Mpegts => p.mpegts,
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    hub: Hub,
    hls: hls::HlsService,
    config: ControlConfig,
    streams: RwLock<HashMap<String, Arc<StreamRecord>>>,
    /// Serialises writes so the in-memory mirror and the applied diff follow the store's order.
    writes: tokio::sync::Mutex<()>,
    /// DASH output, once the binary wires it in ([`Control::set_dash`]).
    dash: RwLock<Option<dash::DashService>>,
    /// Push workers, once the binary wires them in.
    push: RwLock<Option<push::PushManager>>,
    /// Input supervisors, once the binary wires them in.
    inputs: RwLock<Option<inputs::InputManager>>,
    /// Templates and the runtime streams made from them.
    templates: templates::Templates,
    /// Told the code of every stream whose configuration changed or went (the recorder).
    changed: RwLock<Option<ChangeFn>>,
}

/// Hears the code of a stream whose configuration changed, was created or was deleted.
pub type ChangeFn = Arc<dyn Fn(&str) + Send + Sync>;

/// The control plane; cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("store", &self.inner.store.kind())
            .finish_non_exhaustive()
    }
}

/// Current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Control {
    /// Loads every stream from `store` and installs the admission rules and output switches
    /// on `hub` and `hls`.
    pub async fn load(
        store: Arc<dyn Store>,
        hub: Hub,
        hls: hls::HlsService,
        config: ControlConfig,
    ) -> Result<Control, StoreError> {
        let records = store.list().await?;
        let templates = store.list_templates().await?;
        let streams = records
            .into_iter()
            .map(|r| (r.code.clone(), Arc::new(r)))
            .collect();
        let control = Control {
            inner: Arc::new(Inner {
                store,
                hub: hub.clone(),
                hls: hls.clone(),
                config,
                streams: RwLock::new(streams),
                writes: tokio::sync::Mutex::new(()),
                dash: RwLock::new(None),
                changed: RwLock::new(None),
                push: RwLock::new(None),
                inputs: RwLock::new(None),
                templates: templates::Templates::new(templates),
            }),
        };
        hub.set_admission(Arc::new(control.clone()));
        let c = control.clone();
        hls.set_enabled(Arc::new(move |code: &str| {
            c.output_enabled(code, Output::Hls)
        }));
        Ok(control)
    }

    /// Hands each live stream's push destinations to `manager` and keeps it informed of
    /// configuration changes.
    pub fn set_push(&self, manager: push::PushManager) {
        let c = self.clone();
        manager.set_source(Arc::new(move |code: &str| {
            c.get(code)
                .filter(|r| !r.disabled)
                .map(|r| r.push.clone())
                .unwrap_or_default()
        }));
        *self.inner.push.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
    }

    /// Hands streams with inputs to `manager`, which then follows every configuration change.
    pub fn set_inputs(&self, manager: inputs::InputManager) {
        *self.inner.inputs.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
    }

    /// The input manager, if wired.
    pub fn inputs(&self) -> Option<inputs::InputManager> {
        self.inner
            .inputs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The push manager, if wired.
    pub fn push(&self) -> Option<push::PushManager> {
        self.inner
            .push
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs the DASH output switch on `dash` and stops/starts it when a stream's `dash`
    /// protocol flips, like HLS.
    pub fn set_dash(&self, dash: dash::DashService) {
        let c = self.clone();
        dash.set_enabled(Arc::new(move |code: &str| {
            c.output_enabled(code, Output::Dash)
        }));
        *self.inner.dash.write().unwrap_or_else(|e| e.into_inner()) = Some(dash);
    }

    /// Sets who hears of every changed, created or deleted stream, after the change applied
    /// (the recorder starts or stops recording it).
    pub fn set_change_observer(&self, f: ChangeFn) {
        *self
            .inner
            .changed
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    fn notify_changed(&self, code: &str) {
        let f = self
            .inner
            .changed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = f {
            f(code);
        }
    }

    /// The DASH service, if wired in.
    fn dash(&self) -> Option<dash::DashService> {
        self.inner
            .dash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn streams(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<StreamRecord>>> {
        // Whole-record inserts and removes only: a poisoned map is still consistent.
        self.inner.streams.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mirror(&self, code: &str, record: Option<Arc<StreamRecord>>) {
        let mut map = self
            .inner
            .streams
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match record {
            Some(r) => map.insert(code.to_owned(), r),
            None => map.remove(code),
        };
    }

    /// The store's kind (`sqlite`, `postgres`).
    pub fn store_kind(&self) -> &'static str {
        self.inner.store.kind()
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.inner.store.ping().await
    }

    /// The stream `code`, from memory: configured, or a runtime stream made from a template.
    pub fn get(&self, code: &str) -> Option<Arc<StreamRecord>> {
        self.streams()
            .get(code)
            .cloned()
            .or_else(|| self.runtime_record(code))
    }

    /// The recording settings of the stream `code`, from memory: configured, or a runtime
    /// stream made from a template. `None` for a code with neither, such as a stream
    /// auto-created by a publish, which is not recorded. Each call reads the current
    /// configuration, so a change made over the API shows in the next call.
    pub fn recording(&self, code: &str) -> Option<store::RecordingSpec> {
        self.get(code).map(|r| r.recording.clone())
    }

    /// The transcode settings (ABR ladder) of the stream `code`, from memory: configured, or a
    /// runtime stream made from a template; `None` for a code with neither. Like
    /// [`Control::recording`], each call reads the current configuration.
    pub fn transcode(&self, code: &str) -> Option<store::TranscodeSpec> {
        self.get(code).map(|r| r.transcode.clone())
    }

    /// `(parent, rung)` when `code` is `<parent>_<rung>` (split at the last `_`) and the
    /// stream `parent` runs a ladder ([`store::TranscodeSpec::active`]) with a rung of that
    /// name other than `source`: the hub stream its transcoder writes.
    pub fn rendition_of(&self, code: &str) -> Option<(String, String)> {
        let (parent, name) = code.rsplit_once('_')?;
        let record = self.get(parent)?;
        let t = &record.transcode;
        (t.active() && t.rung(name).is_some()).then(|| (parent.to_owned(), name.to_owned()))
    }

    /// Every configured stream, by code, from memory.
    pub fn list(&self) -> Vec<Arc<StreamRecord>> {
        let mut v: Vec<_> = self.streams().values().cloned().collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Whether `output` may serve `code` (runtime streams without a template have every
    /// output on). A rendition answers as its parent stream: it has no settings of its own.
    pub fn output_enabled(&self, code: &str, output: Output) -> bool {
        let parent = self.rendition_of(code).map(|(parent, _)| parent);
        self.get(parent.as_deref().unwrap_or(code))
            .is_none_or(|r| !r.disabled && output.enabled_in(&r.protocols))
    }

    /// Creates a stream; [`ControlError::Conflict`] if the code exists.
    pub async fn create(&self, mut record: StreamRecord) -> Result<StreamRecord, ControlError> {
        validate(&record)?;
        let _w = self.inner.writes.lock().await;
        let now = now_ms();
        record.created_at_ms = now;
        record.updated_at_ms = now;
        self.inner.store.insert(&record).await?;
        self.commit(None, record.clone());
        Ok(record)
    }

    /// Creates or replaces a stream, applying the difference to the running stream.
    pub async fn put(
        &self,
        mut record: StreamRecord,
    ) -> Result<(StreamRecord, PutOutcome), ControlError> {
        validate(&record)?;
        let _w = self.inner.writes.lock().await;
        let old = self.get(&record.code);
        let now = now_ms();
        record.created_at_ms = old.as_ref().map_or(now, |o| o.created_at_ms);
        record.updated_at_ms = now.max(old.as_ref().map_or(0, |o| o.updated_at_ms + 1));
        let outcome = self.inner.store.put(&record).await?;
        self.commit(old, record.clone());
        Ok((record, outcome))
    }

    /// Changes a stream with `edit` (PATCH), applying the difference to the running stream.
    pub async fn update(
        &self,
        code: &str,
        edit: impl FnOnce(&mut StreamRecord),
    ) -> Result<StreamRecord, ControlError> {
        let _w = self.inner.writes.lock().await;
        // Configured streams only: a runtime stream becomes one through `put` or `create`.
        let old = self
            .streams()
            .get(code)
            .cloned()
            .ok_or_else(|| ControlError::NotFound(code.to_owned()))?;
        let mut record = (*old).clone();
        edit(&mut record);
        record.code = old.code.clone();
        validate(&record)?;
        record.created_at_ms = old.created_at_ms;
        record.updated_at_ms = now_ms().max(old.updated_at_ms + 1);
        self.inner.store.put(&record).await?;
        self.commit(Some(old), record.clone());
        Ok(record)
    }

    /// Deletes a stream: its publisher and readers are disconnected and its outputs stop.
    pub async fn delete(&self, code: &str) -> Result<(), ControlError> {
        let _w = self.inner.writes.lock().await;
        let known = self.get(code).is_some();
        let deleted = self.inner.store.delete(code).await?;
        if !known && !deleted && !self.inner.hub.is_live(code) {
            return Err(ControlError::NotFound(code.to_owned()));
        }
        self.mirror(code, None);
        self.forget_runtime(code);
        self.shut_down(code);
        tracing::info!(stream = code, "stream deleted");
        Ok(())
    }

    /// Applies what another node (or a hand edit) changed in stream `code`: the stored record
    /// is read again and the difference to the running stream applied, as after a local write.
    /// A change this node made itself reads back equal and does nothing.
    pub async fn reload(&self, code: &str) -> Result<(), StoreError> {
        // Read under the write lock: a local write that lands between a read and the lock
        // would otherwise be overwritten in memory by the older row.
        let _w = self.inner.writes.lock().await;
        let fresh = self.inner.store.get(code).await?;
        self.apply_stored(code, fresh);
        Ok(())
    }

    /// Reads every stream and template again and applies the differences: after the change
    /// feed was down, when changes may have been missed.
    pub async fn resync(&self) -> Result<(), StoreError> {
        {
            // One read of every row, under the write lock for the reason given in `reload`;
            // it was a read per stream, each taking the lock again.
            let _w = self.inner.writes.lock().await;
            let mut stored: HashMap<String, StreamRecord> = self
                .inner
                .store
                .list()
                .await?
                .into_iter()
                .map(|r| (r.code.clone(), r))
                .collect();
            let mut codes: std::collections::BTreeSet<String> = stored.keys().cloned().collect();
            codes.extend(self.streams().keys().cloned());
            for code in codes {
                let fresh = stored.remove(&code);
                self.apply_stored(&code, fresh);
            }
        }
        self.resync_templates().await
    }

    /// Applies the stored row of `code` (`None`: there is none) to memory and the running
    /// stream, when it differs from what memory holds. Called under the write lock.
    fn apply_stored(&self, code: &str, fresh: Option<StreamRecord>) {
        let old = self.streams().get(code).cloned();
        match (old, fresh) {
            (Some(old), Some(new)) if *old == new => {}
            (old, Some(new)) => {
                tracing::info!(stream = code, "stream changed on another node; applied");
                self.commit(old, new);
            }
            (Some(_), None) => {
                tracing::info!(stream = code, "stream deleted on another node");
                self.mirror(code, None);
                self.forget_runtime(code);
                self.shut_down(code);
            }
            (None, None) => {}
        }
    }

    /// Stops everything `code` runs (publisher, readers, outputs, pushes, inputs): after a
    /// delete, or when an idle runtime stream is reaped.
    fn shut_down(&self, code: &str) {
        let hub = &self.inner.hub;
        hub.kick_publisher(code);
        hub.kick_readers(code, None);
        self.inner.hls.stop(code);
        if let Some(dash) = self.dash() {
            dash.stop(code);
        }
        if let Some(push) = self.push() {
            push.reconcile(code);
        }
        if let Some(inputs) = self.inputs() {
            inputs.reconcile(code, None);
        }
        self.notify_changed(code);
    }

    /// Stores `new` in memory and applies what changed since `old` to the running stream.
    fn commit(&self, old: Option<Arc<StreamRecord>>, new: StreamRecord) {
        let new = Arc::new(new);
        self.mirror(&new.code, Some(new.clone()));
        // A configured stream replaces a runtime one of the same code.
        self.forget_runtime(&new.code);
        self.apply(old, new);
    }

    /// Applies what changed since `old` to the running stream `new`, configured or runtime.
    fn apply(&self, old: Option<Arc<StreamRecord>>, new: Arc<StreamRecord>) {
        let code = new.code.clone();
        let hub = &self.inner.hub;
        let was_disabled = old.as_ref().is_some_and(|o| o.disabled);
        if new.disabled && !was_disabled && hub.kick_publisher(&code) {
            tracing::info!(stream = %code, "stream disabled; publisher disconnected");
        }
        if let Some(push) = self.push() {
            // Diffed by URL and settings inside: untouched destinations keep their sessions.
            push.reconcile(&code);
        }
        if let Some(inputs) = self.inputs() {
            // Diffed by URL inside: inputs that did not change keep their connections.
            inputs.reconcile(&code, Some(&new));
        }
        let before = old.as_ref().map(|o| o.protocols).unwrap_or_default();
        for output in Output::ALL {
            let was = !was_disabled && output.enabled_in(&before);
            let is = !new.disabled && output.enabled_in(&new.protocols);
            match (was, is) {
                (true, false) => {
                    let kicked = hub.kick_readers(&code, Some(output.protocol()));
                    if output == Output::Hls {
                        self.inner.hls.stop(&code);
                    }
                    if output == Output::Dash
                        && let Some(dash) = self.dash()
                    {
                        dash.stop(&code);
                    }
                    tracing::info!(stream = %code, output = output.protocol(), kicked, "output switched off");
                }
                (false, true) => {
                    if output == Output::Hls {
                        self.inner.hls.refresh(&code);
                    }
                    if output == Output::Dash
                        && let Some(dash) = self.dash()
                    {
                        dash.refresh(&code);
                    }
                    tracing::info!(stream = %code, output = output.protocol(), "output switched on");
                }
                _ => {}
            }
        }
        self.notify_changed(&code);
    }

    /// The configured rules alone (stream known or auto-created, not disabled, stream key,
    /// output enabled), so an admission that adds hooks can apply them first.
    pub fn decide(&self, req: &AccessRequest) -> Result<(), Denied> {
        // A rendition is written by its parent's transcoder, straight into the hub, and is
        // played under the parent's rules.
        let rendition = self.rendition_of(&req.code);
        if let Some((parent, name)) = &rendition
            && req.action == Action::Publish
        {
            return Err(Denied::new(format!(
                "{} is the {name} rendition of {parent}; only its transcoder writes it",
                req.code
            )));
        }
        let record = match &rendition {
            Some((parent, _)) => self.get(parent),
            None => self.get(&req.code),
        };
        match (req.action, record) {
            (Action::Publish, None) => self.admit_unknown(req),
            (Action::Publish, Some(r)) => {
                self.touch_runtime(&req.code);
                if r.disabled {
                    return Err(Denied::new("stream disabled"));
                }
                let accepts_publish = r.inputs.is_empty()
                    || r.inputs
                        .iter()
                        .any(|i| i.enabled && i.url.to_ascii_lowercase().starts_with("publish:"));
                if !accepts_publish {
                    return Err(Denied::new(
                        "this stream pulls its inputs and has no enabled publish:// input",
                    ));
                }
                check_key(r.stream_key.as_deref(), req)
            }
            (Action::Play, None) => Ok(()),
            (Action::Play, Some(r)) => {
                if r.disabled {
                    return Err(Denied::new("stream disabled"));
                }
                match Output::from_protocol(req.protocol) {
                    Some(o) if !o.enabled_in(&r.protocols) => Err(Denied::new(format!(
                        "{} output disabled for this stream",
                        req.protocol
                    ))),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl Admission for Control {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        let decision = self.decide(&request).map(|()| Admit::new(request.code));
        Box::pin(std::future::ready(decision))
    }
}

/// The stream key rule: no key wanted, or `?key=` equal to it.
fn check_key(want: Option<&str>, req: &AccessRequest) -> Result<(), Denied> {
    match (want, req.arg("key")) {
        (None, _) => Ok(()),
        (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => Ok(()),
        _ => Err(Denied::new("invalid stream key")),
    }
}

/// Secrets are compared by the hub's helper, shared with the RTMP play-key check.
pub use hub::constant_time_eq;

#[cfg(test)]
mod tests;
