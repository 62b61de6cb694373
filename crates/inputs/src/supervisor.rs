//! One stream's inputs: every enabled input runs (hot standby, so a switch starts at once
//! from the standby's cached GOP), and the supervisor forwards the active one to the hub.
//!
//! Readers never see a switch as an end: the hub publisher stays claimed and starts a new
//! session ([`hub::Publisher::switch_session`]), which outputs treat as a republish (HLS
//! discontinuity, RTMP sequence headers again, pushes restart), and timestamps are rebased
//! so they keep increasing for every output.

use crate::drivers::DriverConfig;
use crate::source::{Emitter, SourceEvent, Tagged};
use crate::status::{
    InputSnapshot, InputState, MAX_HISTORY, StreamInputs, SwitchRecord, WorkerStatus,
};
use crate::url::{self, Kind};
use crate::worker::Worker;
use crate::{InputEvent, Notifier};
use hub::{Event, Hub, Intake, Publisher, PublisherMeta};
use media::{Frame, MediaInfo, TrackKind};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use store::{Failover, InputSpec};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often health is checked and the API snapshot refreshed.
const TICK: Duration = Duration::from_millis(250);
/// Gap put between the last frame before a switch and the first after it (one 30 fps frame).
const SWITCH_GAP: i64 = 3000;
/// A source timestamp jump larger than these (backwards / forwards) is a discontinuity of the
/// source itself (a loop, a restart, a wrap) and is smoothed over like a switch.
const MAX_BACKWARD: i64 = 45_000;
const MAX_FORWARD: i64 = 5 * 90_000;
/// Events in flight from all of a stream's inputs to its supervisor.
const CHANNEL: usize = 512;

static LANE_IDS: AtomicU64 = AtomicU64::new(1);

/// Requests to a supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Make the input with this priority active and keep it until it goes down.
    Switch {
        priority: u32,
        reply: oneshot::Sender<Result<usize, String>>,
    },
    /// Stop and start every input again.
    Restart { reply: oneshot::Sender<()> },
    /// The stream's inputs or failover settings changed.
    Reconfigure {
        inputs: Vec<InputSpec>,
        failover: Failover,
    },
}

/// Frames since the last video keyframe of one input, so a switch to it starts decodable.
#[derive(Default)]
struct Gop {
    frames: VecDeque<Frame>,
    bytes: usize,
    keyframe: bool,
}

impl Gop {
    fn push(&mut self, frame: &Frame, has_video: bool, cap: usize) {
        if !has_video {
            return;
        }
        if frame.track == TrackKind::Video && frame.keyframe {
            self.clear();
            self.keyframe = true;
        } else if !self.keyframe {
            return;
        }
        self.bytes += frame.payload.len();
        self.frames.push_back(frame.clone());
        if self.bytes > cap {
            // Too long a GOP to keep: a switch to this input waits for its next keyframe.
            self.clear();
        }
    }

    fn clear(&mut self) {
        *self = Gop::default();
    }
}

struct Lane {
    /// Changes on every (re)start, so stale events are recognised.
    id: u64,
    spec: InputSpec,
    kind: Kind,
    worker: Option<CancellationToken>,
    status: Arc<Mutex<WorkerStatus>>,
    info: Option<MediaInfo>,
    gop: Gop,
    last_packet: Option<Instant>,
    last_packet_at: Option<SystemTime>,
    healthy_since: Option<Instant>,
    /// Set by a `Down` event until the input delivers tracks again.
    down: Option<String>,
    /// Healthy at the last check (for `input.down` events on the transition).
    was_healthy: bool,
    bytes: u64,
    frames: u64,
    rate: (u64, Instant, u64),
}

impl Lane {
    fn new(spec: InputSpec) -> Lane {
        let kind = url::kind(&spec.url).unwrap_or(Kind::Publish);
        Lane {
            id: LANE_IDS.fetch_add(1, Ordering::Relaxed),
            spec,
            kind,
            worker: None,
            status: Arc::default(),
            info: None,
            gop: Gop::default(),
            last_packet: None,
            last_packet_at: None,
            healthy_since: None,
            down: None,
            was_healthy: false,
            bytes: 0,
            frames: 0,
            rate: (0, Instant::now(), 0),
        }
    }

    fn healthy(&self, now: Instant, timeout: Duration) -> bool {
        self.spec.enabled
            && self.down.is_none()
            && self.info.is_some()
            && self
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < timeout)
            && (self.info.as_ref().is_some_and(|i| i.video.is_none()) || self.gop.keyframe)
    }

    fn reset_media(&mut self) {
        self.info = None;
        self.gop.clear();
        self.healthy_since = None;
    }

    fn same_source(&self, spec: &InputSpec) -> bool {
        self.spec.url == spec.url && self.spec.rtsp_transport == spec.rtsp_transport
    }
}

/// Keeps every output's timestamps increasing across switches and source jumps.
#[derive(Default)]
struct Clock {
    offset: i64,
    last: [Option<i64>; 2],
    rebase: bool,
}

impl Clock {
    fn map(&mut self, mut f: Frame) -> Frame {
        let ti = usize::from(f.track == TrackKind::Audio);
        let newest = self.last.iter().flatten().max().copied();
        if std::mem::take(&mut self.rebase)
            && let Some(newest) = newest
        {
            self.offset = newest + SWITCH_GAP - f.dts;
        }
        let mut dts = f.dts + self.offset;
        if let Some(last) = self.last[ti] {
            if dts < last - MAX_BACKWARD || dts > last + MAX_FORWARD {
                self.offset += last + SWITCH_GAP - dts;
                dts = last + SWITCH_GAP;
            } else if dts <= last {
                // A small step back or a repeat within a source (sloppy muxers): outputs
                // need increasing decode times, so this frame alone is nudged forward.
                dts = last + 1;
            }
        }
        let cts = f.pts - f.dts;
        f.dts = dts;
        f.pts = dts + cts;
        self.last[ti] = Some(self.last[ti].map_or(dts, |l| l.max(dts)));
        f
    }
}

/// The owner of one stream's inputs.
pub(crate) struct Supervisor {
    pub(crate) code: String,
    pub(crate) hub: Hub,
    pub(crate) intake: Intake,
    pub(crate) failover: Failover,
    pub(crate) config: Arc<DriverConfig>,
    pub(crate) shared: Arc<Mutex<StreamInputs>>,
    pub(crate) notify: Option<Notifier>,
    pub(crate) cmds: mpsc::Receiver<Command>,
    lanes: Vec<Lane>,
    publisher: Option<Publisher>,
    active: Option<usize>,
    pinned: Option<usize>,
    clock: Clock,
    history: VecDeque<SwitchRecord>,
    tx: mpsc::Sender<Tagged>,
    rx: mpsc::Receiver<Tagged>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Pulled inputs run (always, unless the stream pulls on demand and nobody reads).
    pulling: bool,
    /// When an on-demand pull last went live: `close_after` counts from then as well, since
    /// the reader that asked (an HLS playlist request) waited for it and only reads after.
    live_since: Option<Instant>,
    /// A hook's relay pull: it counts as wanted until then, since the player that caused it
    /// may not be reading yet, and the supervisor ends once nobody wants it.
    relay_until: Option<Instant>,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        code: String,
        hub: Hub,
        intake: Intake,
        inputs: Vec<InputSpec>,
        failover: Failover,
        config: Arc<DriverConfig>,
        shared: Arc<Mutex<StreamInputs>>,
        notify: Option<Notifier>,
        cmds: mpsc::Receiver<Command>,
    ) -> Supervisor {
        let (tx, rx) = mpsc::channel(CHANNEL);
        Supervisor {
            code,
            hub,
            intake,
            failover,
            config,
            shared,
            notify,
            cmds,
            lanes: inputs.into_iter().map(Lane::new).collect(),
            publisher: None,
            active: None,
            pinned: None,
            clock: Clock::default(),
            history: VecDeque::new(),
            tx,
            rx,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            pulling: false,
            live_since: None,
            relay_until: None,
        }
    }

    /// Makes this a relay pull (nginx-rtmp's pull on a hook's `rtmp://` redirect): on demand,
    /// wanted for `grace` from now, and ended, not idled, once no reader wants it.
    pub(crate) fn relay(mut self, grace: Duration) -> Supervisor {
        self.failover.on_demand = true;
        self.relay_until = Some(Instant::now() + grace);
        self
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.failover.packet_timeout_s.max(0.1))
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        // An encoder that published before the stream had inputs now comes back through the
        // intake, as one input among the others.
        if self.hub.kick_publisher(&self.code) {
            tracing::info!(stream = %self.code, "direct publisher disconnected: the stream now has inputs");
        }
        self.intake.set_on_demand(self.failover.on_demand);
        self.pulling = !self.failover.on_demand;
        for i in 0..self.lanes.len() {
            self.start_lane(i);
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(t) = self.rx.recv() => {
                    self.on_event(t);
                    // Drain what is ready before looking at the clock again.
                    while let Ok(t) = self.rx.try_recv() {
                        self.on_event(t);
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                // The stream's publisher kicked through the API (`DELETE /sessions/{id}`):
                // for pulled inputs that means "reconnect the sources".
                _ = kicked(self.publisher.as_ref()) => {
                    tracing::info!(stream = %self.code, "publisher kicked: restarting the inputs");
                    self.restart("kicked");
                }
                _ = tick.tick() => {
                    self.check_demand();
                    if self.relay_until.is_some() && !self.pulling {
                        tracing::info!(stream = %self.code, "relay pull ended: no reader");
                        break;
                    }
                    self.evaluate(Instant::now());
                    self.publish_snapshot();
                }
            }
        }
        self.stop.cancel();
        self.tasks.close();
        // Drivers end at their next await; their children die with them (kill on drop).
        drop(self.publisher.take());
        self.tasks.wait().await;
    }

    fn start_lane(&mut self, i: usize) {
        let lane = &mut self.lanes[i];
        if !lane.spec.enabled || lane.worker.is_some() || (lane.kind.is_pull() && !self.pulling) {
            return;
        }
        let stop = self.stop.child_token();
        lane.worker = Some(stop.clone());
        let out = Emitter::new(self.tx.clone(), lane.id);
        if lane.kind == Kind::Publish {
            let sub = self.intake.subscribe();
            self.tasks.spawn(forward_intake(sub, out, stop));
            return;
        }
        let worker = Worker {
            code: self.code.clone(),
            spec: lane.spec.clone(),
            kind: lane.kind,
            out,
            status: lane.status.clone(),
            retry: self.failover.retry,
            config: self.config.clone(),
        };
        self.tasks.spawn(worker.run(stop));
    }

    fn stop_lane(&mut self, i: usize) {
        let lane = &mut self.lanes[i];
        if let Some(stop) = lane.worker.take() {
            stop.cancel();
        }
        lane.id = LANE_IDS.fetch_add(1, Ordering::Relaxed);
        lane.status = Arc::default();
        lane.reset_media();
        lane.last_packet = None;
        lane.down = None;
    }

    /// On-demand streams (MediaMTX `sourceOnDemand`): pulled inputs start when a reader asks
    /// for the stream and stop after `close_after` without one. Encoders (`publish://`) are
    /// not pulled and are always taken.
    fn check_demand(&mut self) {
        let close_after = Duration::from_secs_f64(self.failover.close_after_s.max(0.0));
        let wanted = !self.failover.on_demand
            || self.relay_until.is_some_and(|t| Instant::now() < t)
            || self.hub.reader_sessions(&self.code) > 0
            || self
                .hub
                .last_demand(&self.code)
                .is_some_and(|t| t.elapsed() < close_after)
            || self.live_since.is_some_and(|t| t.elapsed() < close_after);
        if wanted == self.pulling {
            return;
        }
        self.pulling = wanted;
        let pulls: Vec<usize> = (0..self.lanes.len())
            .filter(|&i| self.lanes[i].kind.is_pull())
            .collect();
        if wanted {
            tracing::info!(stream = %self.code, "a reader asked: starting the pulled inputs");
            for i in pulls {
                self.start_lane(i);
            }
        } else {
            tracing::info!(stream = %self.code, "no reader: stopping the pulled inputs");
            if self.active.is_some_and(|a| self.lanes[a].kind.is_pull()) {
                self.go_idle("on demand: no reader".into());
            }
            for i in pulls {
                self.stop_lane(i);
            }
        }
        self.publish_snapshot();
    }

    fn on_event(&mut self, t: Tagged) {
        let Some(i) = self.lanes.iter().position(|l| l.id == t.lane) else {
            return;
        };
        let now = Instant::now();
        match t.event {
            SourceEvent::Tracks(info) => {
                let info = *info;
                let lane = &mut self.lanes[i];
                lane.down = None;
                lane.last_packet = Some(now);
                lane.last_packet_at = Some(SystemTime::now());
                if lane.info.as_ref() != Some(&info) {
                    lane.gop.clear();
                    lane.info = Some(info.clone());
                    if self.active == Some(i)
                        && let Some(p) = &self.publisher
                    {
                        // A configuration change on the live input: same session.
                        p.announce(info);
                    }
                }
            }
            SourceEvent::Frame(frame) => {
                let cap = self.hub.config().gop_cache_max_bytes;
                let timeout = self.timeout();
                let lane = &mut self.lanes[i];
                if lane.info.is_none() {
                    return;
                }
                lane.last_packet = Some(now);
                lane.last_packet_at = Some(SystemTime::now());
                lane.bytes += frame.payload.len() as u64;
                lane.frames += 1;
                let has_video = lane.info.as_ref().is_some_and(|i| i.video.is_some());
                lane.gop.push(&frame, has_video, cap);
                let healthy = lane.healthy(now, timeout);
                if self.active == Some(i) {
                    if let Some(p) = &self.publisher {
                        p.write(self.clock.map(frame));
                    }
                } else if self.active.is_none() && healthy {
                    self.evaluate(now);
                }
            }
            SourceEvent::Down(reason) => {
                let lane = &mut self.lanes[i];
                lane.down = Some(reason);
                lane.reset_media();
                self.evaluate(now);
                self.publish_snapshot();
            }
        }
    }

    /// Applies the switching rules: leave a dead input, fail back to a preferred one that has
    /// been healthy for `failback_after`, start on the best one when nothing is active.
    fn evaluate(&mut self, now: Instant) {
        let timeout = self.timeout();
        for i in 0..self.lanes.len() {
            let healthy = self.lanes[i].healthy(now, timeout);
            let lane = &mut self.lanes[i];
            if healthy && lane.healthy_since.is_none() {
                lane.healthy_since = Some(now);
            }
            if !healthy {
                lane.healthy_since = None;
            }
            if lane.was_healthy && !healthy {
                let reason = lane
                    .down
                    .clone()
                    .unwrap_or_else(|| format!("no media for {:.1} s", timeout.as_secs_f64()));
                let masked = url::masked(&lane.spec.url);
                let priority = lane.spec.priority;
                tracing::warn!(stream = %self.code, input = %masked, reason = %reason, "input down");
                self.emit(InputEvent::Down {
                    code: self.code.clone(),
                    index: i,
                    priority,
                    url: masked,
                    reason,
                });
                let lane = &mut self.lanes[i];
                if lane.down.is_none() {
                    // Silent past the timeout: the cached GOP is stale now.
                    lane.gop.clear();
                }
            }
            self.lanes[i].was_healthy = healthy;
        }
        if self
            .pinned
            .is_some_and(|p| !self.lanes[p].healthy(now, timeout))
        {
            self.pinned = None;
        }
        let best = self.best(now, None);
        match self.active {
            Some(a) if !self.lanes[a].healthy(now, timeout) => {
                let why = self.lanes[a]
                    .down
                    .clone()
                    .unwrap_or_else(|| format!("no media for {:.1} s", timeout.as_secs_f64()));
                match self.best(now, Some(a)) {
                    Some(b) => self.switch(b, format!("input {a} down: {why}")),
                    None => self.go_idle(format!("every input down ({why})")),
                }
            }
            Some(a) => {
                if self.pinned == Some(a) {
                    return;
                }
                let failback = Duration::from_secs_f64(self.failover.failback_after_s.max(0.0));
                if let Some(b) = best
                    && self.rank(b) < self.rank(a)
                    && self.lanes[b]
                        .healthy_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= failback)
                {
                    self.switch(b, "failback".into());
                }
            }
            None => {
                if let Some(b) = best {
                    let reason = if self.history.is_empty() {
                        "started"
                    } else {
                        "input up"
                    };
                    self.switch(b, reason.into());
                }
            }
        }
    }

    fn rank(&self, i: usize) -> (u32, usize) {
        (self.lanes[i].spec.priority, i)
    }

    fn best(&self, now: Instant, except: Option<usize>) -> Option<usize> {
        let timeout = self.timeout();
        (0..self.lanes.len())
            .filter(|&i| Some(i) != except && self.lanes[i].healthy(now, timeout))
            .min_by_key(|&i| self.rank(i))
    }

    fn switch(&mut self, to: usize, reason: String) {
        let Some(info) = self.lanes[to].info.clone() else {
            return;
        };
        match &mut self.publisher {
            Some(p) => p.switch_session(info),
            None => {
                let meta = PublisherMeta {
                    protocol: "input",
                    ..PublisherMeta::default()
                };
                match self.intake.publish(meta) {
                    Ok(p) => {
                        p.announce(info);
                        self.publisher = Some(p);
                    }
                    Err(e) => {
                        // A direct publisher still holds the code; it was kicked and the next
                        // check claims it.
                        tracing::debug!(stream = %self.code, error = %e, "cannot claim the stream yet");
                        self.hub.kick_publisher(&self.code);
                        return;
                    }
                }
            }
        }
        self.clock.rebase = true;
        let from = self.active.replace(to);
        if from.is_none() {
            self.live_since = Some(Instant::now());
        }
        if let Some(p) = &self.publisher {
            for f in self.lanes[to].gop.frames.iter().cloned() {
                p.write(self.clock.map(f));
            }
        }
        tracing::info!(
            stream = %self.code,
            from = ?from,
            to,
            input = %url::masked(&self.lanes[to].spec.url),
            reason = %reason,
            "input switched"
        );
        self.record(from, Some(to), reason);
    }

    fn go_idle(&mut self, reason: String) {
        let from = self.active.take();
        // Readers see the end, as when a publisher leaves; the next healthy input republishes.
        drop(self.publisher.take());
        tracing::warn!(stream = %self.code, reason = %reason, "no healthy input");
        self.record(from, None, reason);
    }

    fn record(&mut self, from: Option<usize>, to: Option<usize>, reason: String) {
        if self.history.len() == MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(SwitchRecord {
            at: SystemTime::now(),
            from,
            to,
            reason: reason.clone(),
        });
        let describe = |i: Option<usize>| {
            i.map(|i| {
                let l = &self.lanes[i];
                (i, l.spec.priority, url::masked(&l.spec.url))
            })
        };
        self.emit(InputEvent::Switched {
            code: self.code.clone(),
            from: describe(from),
            to: describe(to),
            reason,
        });
        self.publish_snapshot();
    }

    fn emit(&self, event: InputEvent) {
        if let Some(n) = &self.notify {
            n(event);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Switch { priority, reply } => {
                let found = (0..self.lanes.len())
                    .filter(|&i| {
                        self.lanes[i].spec.enabled && self.lanes[i].spec.priority == priority
                    })
                    .min_by_key(|&i| self.rank(i));
                let r = match found {
                    None => Err(format!("no enabled input has priority {priority}")),
                    Some(i) if !self.lanes[i].healthy(now, self.timeout()) => Err(format!(
                        "input {i} (priority {priority}) is not delivering media"
                    )),
                    Some(i) => {
                        self.pinned = Some(i);
                        if self.active != Some(i) {
                            self.switch(i, "manual".into());
                        }
                        Ok(i)
                    }
                };
                let _ = reply.send(r);
            }
            Command::Restart { reply } => {
                self.restart("restart");
                let _ = reply.send(());
            }
            Command::Reconfigure { inputs, failover } => {
                if failover.on_demand != self.failover.on_demand {
                    self.intake.set_on_demand(failover.on_demand);
                }
                self.failover = failover;
                let mut old: Vec<Option<Lane>> = std::mem::take(&mut self.lanes)
                    .into_iter()
                    .map(Some)
                    .collect();
                let mut moved: Vec<Option<usize>> = vec![None; old.len()];
                for spec in inputs {
                    let found = old
                        .iter()
                        .position(|l| l.as_ref().is_some_and(|l| l.same_source(&spec)));
                    let lane = match found.and_then(|j| old[j].take().map(|l| (j, l))) {
                        Some((j, mut lane)) => {
                            moved[j] = Some(self.lanes.len());
                            lane.spec = spec;
                            lane
                        }
                        None => Lane::new(spec),
                    };
                    self.lanes.push(lane);
                }
                for lane in old.into_iter().flatten() {
                    if let Some(stop) = lane.worker {
                        stop.cancel();
                    }
                }
                self.active = self.active.and_then(|a| moved[a]);
                self.pinned = self.pinned.and_then(|p| moved[p]);
                if self.active.is_none() && self.publisher.is_some() {
                    self.go_idle("the active input was removed".into());
                }
                for i in 0..self.lanes.len() {
                    if !self.lanes[i].spec.enabled {
                        self.stop_lane(i);
                    } else {
                        self.start_lane(i);
                    }
                }
                self.evaluate(now);
                self.publish_snapshot();
            }
        }
    }

    /// Stops and starts every input; readers see the stream end and come back.
    fn restart(&mut self, reason: &str) {
        for i in 0..self.lanes.len() {
            self.stop_lane(i);
        }
        self.pinned = None;
        let from = self.active.take();
        drop(self.publisher.take());
        self.record(from, None, reason.into());
        for i in 0..self.lanes.len() {
            self.start_lane(i);
        }
    }

    fn publish_snapshot(&mut self) {
        let now = Instant::now();
        let timeout = self.timeout();
        let inputs = self
            .lanes
            .iter_mut()
            .enumerate()
            .map(|(i, lane)| {
                let healthy = lane.healthy(now, timeout);
                let (bytes0, t0, kbps) = lane.rate;
                let elapsed = now.saturating_duration_since(t0);
                let kbps = if elapsed >= Duration::from_secs(1) {
                    // Bits per millisecond are kilobits per second.
                    let k = (lane.bytes - bytes0) * 8 / (elapsed.as_millis().max(1) as u64);
                    lane.rate = (lane.bytes, now, k);
                    k
                } else {
                    kbps
                };
                let st = lane.status.lock().unwrap_or_else(|e| e.into_inner());
                let state = if !lane.spec.enabled || lane.worker.is_none() {
                    InputState::Stopped
                } else if healthy {
                    InputState::Up
                } else if st.next_retry.is_some() && !st.connecting {
                    InputState::Retrying
                } else if lane.last_packet.is_some() || lane.down.is_some() {
                    InputState::Down
                } else {
                    InputState::Connecting
                };
                InputSnapshot {
                    index: i,
                    url: url::masked(&lane.spec.url),
                    kind: lane.kind.as_str(),
                    priority: lane.spec.priority,
                    enabled: lane.spec.enabled,
                    state,
                    active: self.active == Some(i),
                    attempts: st.attempts,
                    last_errors: st.errors.iter().cloned().collect(),
                    last_packet_at: lane.last_packet_at,
                    next_retry_at: st.next_retry.map(|(_, at)| at),
                    bitrate_kbps: kbps,
                    bytes_in: lane.bytes,
                    frames_in: lane.frames,
                }
            })
            .collect();
        let snapshot = StreamInputs {
            active: self.active,
            pinned: self.pinned,
            inputs,
            history: self.history.iter().cloned().collect(),
        };
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}

/// Resolves when `publisher` is kicked; never without one.
async fn kicked(publisher: Option<&Publisher>) {
    match publisher {
        Some(p) => p.killed().await,
        None => std::future::pending().await,
    }
}

/// Feeds what encoders publish to the code (through the hub's intake) to the supervisor.
async fn forward_intake(mut sub: hub::Subscription, out: Emitter, stop: CancellationToken) {
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            ev = sub.recv() => ev,
        };
        let sent = match ev {
            None => return,
            Some(Event::Tracks { info, .. }) => out.tracks((*info).clone()).await,
            Some(Event::Frame(f)) => out.frame(f).await,
            Some(Event::End) => {
                out.send(SourceEvent::Down("the publisher left".into()))
                    .await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hub::HubConfig;
    use media::{OpaqueCodec, VideoCodec};

    fn info(tag: u8) -> MediaInfo {
        MediaInfo {
            video_metadata: None,
            video: Some(VideoCodec::Opaque {
                codec: OpaqueCodec::FlvId(7),
                sequence_header: Some(Bytes::from(vec![tag])),
            }),
            audio: None,
            framerate: None,
        }
    }

    fn frame(ms: i64, key: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            dts: ms * 90,
            pts: ms * 90,
            keyframe: key,
            payload: Bytes::from_static(b"frame"),
        }
    }

    fn spec(url: &str, priority: u32) -> InputSpec {
        InputSpec {
            url: url.into(),
            priority,
            ..InputSpec::default()
        }
    }

    struct Env {
        hub: Hub,
        sup: Supervisor,
        events: Arc<Mutex<Vec<InputEvent>>>,
        _cmds: mpsc::Sender<Command>,
    }

    fn env(failover: Failover) -> Env {
        let hub = Hub::new(HubConfig::default());
        let intake = hub.intake("s").unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let (cmds, rx) = mpsc::channel(4);
        let sup = Supervisor::new(
            "s".into(),
            hub.clone(),
            intake,
            vec![
                spec("udp://239.0.0.1:5000", 0),
                spec("udp://239.0.0.2:5000", 1),
            ],
            failover,
            Arc::new(DriverConfig::default()),
            Arc::default(),
            Some(Arc::new(move |e| sink.lock().unwrap().push(e))),
            rx,
        );
        Env {
            hub,
            sup,
            events,
            _cmds: cmds,
        }
    }

    impl Env {
        fn send(&mut self, input: usize, event: SourceEvent) {
            let lane = self.sup.lanes[input].id;
            self.sup.on_event(Tagged { lane, event });
        }

        /// `input` delivers frames from `from_ms` to `to_ms` (a keyframe every second).
        fn feed(&mut self, input: usize, from_ms: i64, to_ms: i64) {
            let mut ms = from_ms;
            while ms < to_ms {
                self.send(input, SourceEvent::Frame(frame(ms, ms % 1000 == 0)));
                ms += 100;
            }
        }

        fn reasons(&self) -> Vec<String> {
            self.sup.history.iter().map(|h| h.reason.clone()).collect()
        }
    }

    fn failover() -> Failover {
        Failover {
            packet_timeout_s: 1.0,
            failback_after_s: 3.0,
            ..Failover::default()
        }
    }

    fn drain(sub: &mut hub::Subscription) -> Vec<Event> {
        std::iter::from_fn(|| sub.try_recv()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_on_silence_and_back_once_the_primary_is_stable() {
        let mut e = env(failover());
        let mut reader = e.hub.subscribe("s", "test");
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        e.send(1, SourceEvent::Tracks(Box::new(info(1))));
        e.feed(0, 0, 1000);
        e.feed(1, 50_000, 51_000);
        assert_eq!(e.sup.active, Some(0), "the primary starts");
        let before = drain(&mut reader);
        let last_dts = before
            .iter()
            .filter_map(|ev| match ev {
                Event::Frame(f) => Some(f.dts),
                _ => None,
            })
            .max()
            .unwrap();

        // Only the backup keeps delivering; after packet_timeout the primary is down.
        for step in 0..12 {
            tokio::time::advance(Duration::from_millis(100)).await;
            e.feed(1, 51_000 + step * 100, 51_100 + step * 100);
            e.sup.evaluate(Instant::now());
        }
        assert_eq!(e.sup.active, Some(1));
        assert!(
            e.reasons()[1].starts_with("input 0 down: no media"),
            "{:?}",
            e.reasons()
        );
        let after = drain(&mut reader);
        assert!(
            matches!(after[0], Event::Tracks { .. }),
            "a new session first"
        );
        assert!(
            !after.iter().any(|ev| matches!(ev, Event::End)),
            "readers never see an end"
        );
        let dts: Vec<i64> = after
            .iter()
            .filter_map(|ev| match ev {
                Event::Frame(f) => Some(f.dts),
                _ => None,
            })
            .collect();
        assert!(
            dts[0] > last_dts,
            "timestamps continue: {} after {last_dts}",
            dts[0]
        );
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{dts:?}");
        assert!(
            e.events
                .lock()
                .unwrap()
                .iter()
                .any(|ev| matches!(ev, InputEvent::Down { index: 0, .. }))
        );

        // The primary comes back; the stream returns to it only after failback_after.
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        for step in 0..40 {
            tokio::time::advance(Duration::from_millis(100)).await;
            e.feed(0, 10_000 + step * 100, 10_100 + step * 100);
            e.feed(1, 60_000 + step * 100, 60_100 + step * 100);
            e.sup.evaluate(Instant::now());
            if step < 25 {
                assert_eq!(e.sup.active, Some(1), "failback too early at step {step}");
            }
        }
        assert_eq!(e.sup.active, Some(0));
        assert_eq!(e.reasons().last().map(String::as_str), Some("failback"));
        let switched: Vec<_> = e
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|ev| matches!(ev, InputEvent::Switched { .. }))
            .cloned()
            .collect();
        assert_eq!(switched.len(), 3, "{switched:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_down_event_switches_at_once_and_all_down_ends_then_republishes() {
        let mut e = env(failover());
        let mut reader = e.hub.subscribe("s", "test");
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        e.feed(0, 0, 500);
        e.send(1, SourceEvent::Tracks(Box::new(info(1))));
        e.feed(1, 0, 500);
        assert_eq!(e.sup.active, Some(0));
        e.send(0, SourceEvent::Down("connection reset".into()));
        assert_eq!(e.sup.active, Some(1), "no wait for packet_timeout");
        assert!(e.reasons()[1].contains("connection reset"));
        e.send(1, SourceEvent::Down("eof".into()));
        assert_eq!(e.sup.active, None);
        assert!(!e.hub.is_live("s"));
        assert!(drain(&mut reader).iter().any(|ev| matches!(ev, Event::End)));
        e.send(1, SourceEvent::Tracks(Box::new(info(1))));
        e.feed(1, 1000, 1500);
        assert_eq!(e.sup.active, Some(1));
        assert_eq!(e.reasons().last().map(String::as_str), Some("input up"));
        assert!(e.hub.is_live("s"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_manual_switch_holds_until_its_input_dies() {
        let mut e = env(failover());
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        e.send(1, SourceEvent::Tracks(Box::new(info(1))));
        e.feed(0, 0, 1000);
        e.feed(1, 0, 1000);
        let (reply, mut rx) = oneshot::channel();
        e.sup.on_command(Command::Switch { priority: 1, reply });
        assert_eq!(rx.try_recv().unwrap(), Ok(1));
        assert_eq!(e.sup.pinned, Some(1));
        for step in 0..60 {
            tokio::time::advance(Duration::from_millis(100)).await;
            e.feed(0, 1000 + step * 100, 1100 + step * 100);
            e.feed(1, 1000 + step * 100, 1100 + step * 100);
            e.sup.evaluate(Instant::now());
        }
        assert_eq!(e.sup.active, Some(1), "no failback while pinned");
        let (reply, mut rx) = oneshot::channel();
        e.sup.on_command(Command::Switch { priority: 7, reply });
        assert!(rx.try_recv().unwrap().is_err());
        e.send(1, SourceEvent::Down("gone".into()));
        assert_eq!((e.sup.active, e.sup.pinned), (Some(0), None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_switch_starts_from_the_standby_keyframe() {
        let mut e = env(failover());
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        e.feed(0, 0, 1000);
        e.send(1, SourceEvent::Tracks(Box::new(info(1))));
        // The standby is mid-GOP: its last keyframe was at 2000 ms.
        e.feed(1, 2000, 2500);
        let mut reader = e.hub.subscribe("s", "test");
        drain(&mut reader);
        e.send(0, SourceEvent::Down("gone".into()));
        let events = drain(&mut reader);
        let frames: Vec<&Frame> = events
            .iter()
            .filter_map(|ev| match ev {
                Event::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 5, "the cached GOP is replayed");
        assert!(frames[0].keyframe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_ends_the_session_and_starts_over() {
        let mut e = env(failover());
        e.send(0, SourceEvent::Tracks(Box::new(info(0))));
        e.feed(0, 0, 500);
        assert!(e.hub.is_live("s"));
        let old = e.sup.lanes[0].id;
        let (reply, mut rx) = oneshot::channel();
        e.sup.on_command(Command::Restart { reply });
        assert!(rx.try_recv().is_ok());
        assert!(!e.hub.is_live("s"), "readers see the end");
        assert_eq!(e.sup.active, None);
        assert_ne!(e.sup.lanes[0].id, old, "events of the old run are ignored");
        e.sup.on_event(Tagged {
            lane: old,
            event: SourceEvent::Tracks(Box::new(info(0))),
        });
        assert!(e.sup.lanes[0].info.is_none(), "a stale event");
        assert_eq!(e.reasons().last().map(String::as_str), Some("restart"));
    }

    #[test]
    fn the_clock_smooths_source_jumps() {
        let mut c = Clock::default();
        let a = c.map(frame(1000, true));
        let b = c.map(frame(1040, false));
        assert_eq!(b.dts - a.dts, 40 * 90);
        // A file loop jumps back to 0.
        let d = c.map(frame(0, true));
        assert_eq!(d.dts, b.dts + SWITCH_GAP);
        let e = c.map(frame(40, false));
        assert_eq!(e.dts - d.dts, 40 * 90);
        // A repeat or a small step back is nudged past the last one.
        let f = c.map(frame(40, false));
        assert_eq!(f.dts, e.dts + 1);
        let g = c.map(frame(20, false));
        assert_eq!(g.dts, f.dts + 1);
    }

    #[test]
    fn the_gop_cache_keeps_from_the_last_keyframe_within_its_cap() {
        let mut g = Gop::default();
        g.push(&frame(0, false), true, 1 << 20);
        assert!(g.frames.is_empty(), "nothing before a keyframe");
        g.push(&frame(40, true), true, 1 << 20);
        g.push(&frame(80, false), true, 1 << 20);
        assert_eq!(g.frames.len(), 2);
        g.push(&frame(120, true), true, 1 << 20);
        assert_eq!(g.frames.len(), 1);
        g.push(&frame(160, false), true, 6);
        assert!(
            g.frames.is_empty() && !g.keyframe,
            "over the cap: wait for the next one"
        );
    }
}
