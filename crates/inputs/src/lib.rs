//! Sources a stream pulls, and the choice among a stream's inputs.
//!
//! A stream with `inputs` gets a supervisor ([`supervisor`]) that owns the hub publisher of
//! its code. Encoders publishing to the code reach it through the hub's intake as the
//! `publish://` input; pulled inputs run one driver each ([`drivers`]) behind a reconnect
//! loop ([`worker`]). The supervisor forwards the best healthy input to the hub and switches
//! by priority when one goes silent, failing back once the preferred one is healthy again.
//! The hub never learns where media came from.

pub mod drivers;
mod flv;
pub mod source;
pub mod status;
mod supervisor;
pub mod url;
mod worker;

pub use drivers::DriverConfig;
pub use status::{ErrorRecord, InputSnapshot, InputState, StreamInputs, SwitchRecord};

use hub::Hub;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Failover, InputSpec, StreamRecord};
use supervisor::{Command, Supervisor};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What happened to a stream's inputs, for webhooks and logs. Inputs are named by index,
/// priority and masked URL.
#[derive(Clone, Debug, PartialEq)]
pub enum InputEvent {
    /// An input that was delivering stopped.
    Down {
        /// Stream code.
        code: String,
        /// Position in the stream's `inputs`.
        index: usize,
        /// Its priority.
        priority: u32,
        /// Its URL, masked.
        url: String,
        /// Why.
        reason: String,
    },
    /// Readers now see another input (or none).
    Switched {
        /// Stream code.
        code: String,
        /// (index, priority, masked URL) before.
        from: Option<(usize, u32, String)>,
        /// (index, priority, masked URL) now; `None` when every input is down.
        to: Option<(usize, u32, String)>,
        /// Why.
        reason: String,
    },
}

/// Entry points of the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::source::SourceEvent;

    /// The HLS playlist parser on any text: every segment has a URI, and sequence numbers are
    /// consecutive from `EXT-X-MEDIA-SEQUENCE`.
    pub fn hls_playlist(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(crate::drivers::hls::Playlist::Media(m)) = crate::drivers::hls::parse(&text) {
            for (i, seg) in m.segments.iter().enumerate() {
                assert!(!seg.uri.is_empty() && !seg.uri.starts_with('#'));
                assert_eq!(seg.seq, m.media_sequence.saturating_add(i as u64));
            }
        }
    }

    /// An fMP4 init segment then media segments through the HLS pull's demuxer: frames only
    /// after tracks, payloads within the input, per-track decode times never decreasing
    /// within one segment.
    pub fn fmp4_segments(init: &[u8], segments: &[&[u8]]) {
        let Ok(mut feed) = crate::drivers::fmp4::Fmp4Feed::new(init) else {
            return;
        };
        let mut tracks = false;
        for seg in segments {
            let Ok(events) = feed.segment(seg) else {
                continue;
            };
            let mut last = [i64::MIN; 2];
            for ev in events {
                match ev {
                    SourceEvent::Tracks(_) => tracks = true,
                    SourceEvent::Frame(f) => {
                        assert!(tracks, "a frame before the tracks");
                        assert!(f.payload.len() <= seg.len());
                        let t = usize::from(f.track == media::TrackKind::Audio);
                        assert!(f.dts >= last[t], "dts went back within a segment");
                        last[t] = f.dts;
                    }
                    SourceEvent::Down(_) => unreachable!("a demuxer does not end inputs"),
                }
            }
        }
    }
}

/// Receives [`InputEvent`]s; must not block.
pub type Notifier = Arc<dyn Fn(InputEvent) + Send + Sync>;

/// Why a switch or restart request failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// The stream has no inputs (or is not running them).
    #[error("stream {0:?} has no running inputs")]
    NoInputs(String),
    /// The request cannot be honoured now.
    #[error("{0}")]
    Refused(String),
}

struct Handle {
    /// A hook's relay pull rather than the stream's configured inputs.
    relay: bool,
    inputs: Vec<InputSpec>,
    failover: Failover,
    cmds: mpsc::Sender<Command>,
    shared: Arc<Mutex<StreamInputs>>,
    stop: CancellationToken,
}

struct Inner {
    hub: Hub,
    config: Arc<DriverConfig>,
    notify: Mutex<Option<Notifier>>,
    root: Mutex<Option<CancellationToken>>,
    streams: Mutex<HashMap<String, Handle>>,
    tracker: TaskTracker,
}

/// Runs a supervisor for every stream that has inputs; cheap to clone.
#[derive(Clone)]
pub struct InputManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InputManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputManager").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whole-value updates only: a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InputManager {
    /// A manager publishing into `hub`.
    pub fn new(hub: Hub, config: DriverConfig) -> Self {
        InputManager {
            inner: Arc::new(Inner {
                hub,
                config: Arc::new(config),
                notify: Mutex::new(None),
                root: Mutex::new(None),
                streams: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Where input events go.
    pub fn set_notifier(&self, notify: Notifier) {
        *lock(&self.inner.notify) = Some(notify);
    }

    /// Starts the supervisors of `records`; later changes arrive through
    /// [`InputManager::reconcile`]. Supervisors stop when `shutdown` is cancelled.
    pub fn start(&self, records: &[Arc<StreamRecord>], shutdown: CancellationToken) {
        *lock(&self.inner.root) = Some(shutdown);
        for r in records {
            self.reconcile(&r.code, Some(r));
        }
    }

    /// Waits for the shutdown given to [`InputManager::start`], then for every supervisor
    /// (and its drivers) to finish.
    pub async fn run(self) {
        let root = lock(&self.inner.root).clone();
        if let Some(root) = root {
            root.cancelled().await;
        }
        let handles: Vec<Handle> = lock(&self.inner.streams).drain().map(|(_, h)| h).collect();
        for h in handles {
            h.stop.cancel();
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Applies a stream's configuration: starts, reconfigures or stops its supervisor.
    /// `None` (deleted) or a disabled stream or one without inputs has none.
    pub fn reconcile(&self, code: &str, record: Option<&StreamRecord>) {
        let Some(root) = lock(&self.inner.root).clone() else {
            return;
        };
        let wanted = record.filter(|r| !r.disabled && !r.inputs.is_empty());
        let mut streams = lock(&self.inner.streams);
        if let Some(h) = streams.get(code).filter(|h| h.relay) {
            // A relay pull lives until its readers leave, unless inputs are configured now.
            if wanted.is_none() {
                return;
            }
            h.stop.cancel();
            streams.remove(code);
        }
        let Some(r) = wanted else {
            if let Some(h) = streams.remove(code) {
                h.stop.cancel();
                tracing::info!(stream = code, "inputs stopped");
            }
            return;
        };
        if let Some(h) = streams.get_mut(code) {
            if h.inputs != r.inputs || h.failover != r.failover {
                h.inputs = r.inputs.clone();
                h.failover = r.failover;
                // The channel only fills if the supervisor is stuck; then a restart of the
                // stream applies the change anyway.
                let _ = h.cmds.try_send(Command::Reconfigure {
                    inputs: r.inputs.clone(),
                    failover: r.failover,
                });
            }
            return;
        }
        let intake = match self.inner.hub.intake(code) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(stream = code, error = %e, "cannot take the stream's intake");
                return;
            }
        };
        tracing::info!(stream = code, inputs = r.inputs.len(), "inputs started");
        let handle = self.spawn(&root, code, intake, r.inputs.clone(), r.failover, None);
        streams.insert(code.to_owned(), handle);
    }

    /// Runs a supervisor for `code` under `root`. With `relay` (a grace period) it is a relay
    /// pull, forgotten once it ends.
    fn spawn(
        &self,
        root: &CancellationToken,
        code: &str,
        intake: hub::Intake,
        inputs: Vec<InputSpec>,
        failover: Failover,
        relay: Option<Duration>,
    ) -> Handle {
        let (cmds, rx) = mpsc::channel(16);
        let shared = Arc::new(Mutex::new(StreamInputs::default()));
        let stop = root.child_token();
        let mut supervisor = Supervisor::new(
            code.to_owned(),
            self.inner.hub.clone(),
            intake,
            inputs.clone(),
            failover,
            self.inner.config.clone(),
            shared.clone(),
            lock(&self.inner.notify).clone(),
            rx,
        );
        if let Some(grace) = relay {
            supervisor = supervisor.relay(grace);
        }
        let inner = self.inner.clone();
        let owned = code.to_owned();
        let token = stop.clone();
        self.inner.tracker.spawn(async move {
            supervisor.run(token).await;
            if relay.is_some() {
                // Forget it, unless configured inputs replaced it meanwhile.
                let mut streams = lock(&inner.streams);
                if streams.get(&owned).is_some_and(|h| h.relay) {
                    streams.remove(&owned);
                }
            }
        });
        Handle {
            relay: relay.is_some(),
            inputs,
            failover,
            cmds,
            shared,
            stop,
        }
    }

    /// nginx-rtmp's relay pull, asked by a hook's `rtmp://` redirect of `on_play`: pulls `url`
    /// into `code` while it has readers (at least `close_after`), then forgets it. Nothing is
    /// started when `code` is live or runs inputs already: its players get that.
    pub fn relay_pull(&self, code: &str, url: &str, close_after: Duration) -> Result<(), String> {
        if url::kind(url)? != url::Kind::Rtmp {
            return Err("a relay pulls rtmp:// or rtmps:// only".into());
        }
        let Some(root) = lock(&self.inner.root).clone() else {
            return Err("inputs are not running".into());
        };
        let mut streams = lock(&self.inner.streams);
        if streams.contains_key(code) || self.inner.hub.is_live(code) {
            return Ok(());
        }
        let intake = self.inner.hub.intake(code).map_err(|e| e.to_string())?;
        // At once, not when the supervisor starts: the request that asked for the pull
        // checks right after this whether to wait for the stream or answer 404.
        intake.set_on_demand(true);
        let inputs = vec![InputSpec {
            url: url.to_owned(),
            comment: "relay pull (hook redirect)".into(),
            ..InputSpec::default()
        }];
        let failover = Failover {
            on_demand: true,
            close_after_s: close_after.as_secs_f64(),
            ..Failover::default()
        };
        tracing::info!(stream = code, url = %url::masked(url), "relay pull started");
        let handle = self.spawn(&root, code, intake, inputs, failover, Some(close_after));
        streams.insert(code.to_owned(), handle);
        Ok(())
    }

    /// Ends the relay pull of `code` (its origin moved or a publisher of its own arrived);
    /// `false` if there was none. Configured inputs are left alone.
    pub fn stop_relay(&self, code: &str) -> bool {
        let mut streams = lock(&self.inner.streams);
        if !streams.get(code).is_some_and(|h| h.relay) {
            return false;
        }
        if let Some(h) = streams.remove(code) {
            h.stop.cancel();
            tracing::info!(stream = code, "relay pull stopped");
        }
        true
    }

    /// The URL a relay pull into `code` pulls, while one runs.
    pub fn relay_url(&self, code: &str) -> Option<String> {
        lock(&self.inner.streams)
            .get(code)
            .filter(|h| h.relay)
            .and_then(|h| h.inputs.first())
            .map(|i| i.url.clone())
    }

    /// The state of `code`'s inputs, if it runs any.
    pub fn status(&self, code: &str) -> Option<StreamInputs> {
        let streams = lock(&self.inner.streams);
        let h = streams.get(code)?;
        let s = lock(&h.shared).clone();
        Some(s)
    }

    /// Whether `code` runs inputs (its publishers go through the supervisor).
    pub fn has(&self, code: &str) -> bool {
        lock(&self.inner.streams).contains_key(code)
    }

    fn sender(&self, code: &str) -> Result<mpsc::Sender<Command>, ControlError> {
        lock(&self.inner.streams)
            .get(code)
            .map(|h| h.cmds.clone())
            .ok_or_else(|| ControlError::NoInputs(code.to_owned()))
    }

    /// Makes the input with `priority` active until it goes down; returns its index.
    pub async fn switch(&self, code: &str, priority: u32) -> Result<usize, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.sender(code)?
            .send(Command::Switch { priority, reply })
            .await
            .map_err(|_| ControlError::NoInputs(code.to_owned()))?;
        rx.await
            .map_err(|_| ControlError::NoInputs(code.to_owned()))?
            .map_err(ControlError::Refused)
    }

    /// Stops and starts every input of `code` again.
    pub async fn restart(&self, code: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.sender(code)?
            .send(Command::Restart { reply })
            .await
            .map_err(|_| ControlError::NoInputs(code.to_owned()))?;
        rx.await
            .map_err(|_| ControlError::NoInputs(code.to_owned()))
    }
}
