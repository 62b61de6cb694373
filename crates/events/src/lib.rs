//! One event bus for the whole gateway, and the sinks that carry its events out: signed,
//! batched HTTP webhooks and JSON-lines files, configured at runtime through `/api/v1/hooks`.
//!
//! # Emitting
//!
//! Any part of the gateway holds an [`EventBus`] (cheap to clone) and calls
//! [`EventBus::emit`]. It never awaits and never waits on I/O or on a receiver: under one
//! short lock it numbers the event and pushes it into each sink's own bounded queue, so every
//! sink sees ids in increasing order. A full queue drops its oldest event and counts the drop,
//! so a dead receiver costs memory up to its bound and nothing else. Media paths, `Drop`
//! guards and API handlers may call it freely.
//!
//! ```
//! use ferrocast_events::{EventBus, EventKind}; // `events::` inside the workspace
//! use serde_json::json;
//!
//! let bus = EventBus::new(Some("edge-1".into()));
//! // What the inputs supervisor sends when it fails over (URLs already masked):
//! bus.emit(
//!     EventKind::InputSwitched,
//!     Some("cam1"),
//!     json!({
//!         "from": {"priority": 0, "url": "rtsp://cam.example/****"},
//!         "to": {"priority": 1, "url": "srt://backup.example:9000"},
//!         "reason": "no packet for 30 s",
//!     }),
//! );
//! bus.emit(EventKind::InputDown, Some("cam1"), json!({"priority": 0, "url": "rtsp://cam.example/****", "error": "timeout"}));
//! ```
//!
//! Every [`Event`] is `{id, type, at, node?, stream?, data}`: `id` is unique in the process and
//! increases with each event, `at` is RFC 3339 UTC with milliseconds. The built-in sources in
//! [`sources`] emit `stream.started`/`stream.stopped` (hub publishes, once per live period even
//! across failover switches), `session.opened`/`session.closed` (publishers and readers) and
//! `push.state` (every push destination state change).
//!
//! # Sinks
//!
//! [`Webhooks`] keeps the sinks: their configuration in the [`store::Store`], one delivery task
//! each on its own [`tokio_util::task::TaskTracker`]. An HTTP sink POSTs JSON arrays of up to
//! `batch_max` events once that many wait or the oldest has waited `batch_delay_ms`, signed
//! with `X-Ferrocast-Signature: sha256=<hex HMAC-SHA256 of the body>` when it has a secret;
//! a failed batch is retried after 1, 5 and 30 s, then dropped and counted as failed. A file
//! sink appends one event per line. Filters pick event types (`stream.started`, `input.*`) and
//! stream codes (`cam1`, `cam-*`).

mod filter;
mod manager;
mod queue;
mod sign;
mod sink;
pub mod sources;
mod time;

pub use filter::{Filter, FilterError};
pub use manager::{
    HookDefaults, HookError, HookStatus, Invalid, MAX_ID_LEN, Settings, Webhooks, masked_url,
    new_id, valid_id, validate,
};
pub use sign::{SIGNATURE_HEADER, signature};
pub use sink::{Delivery, RETRY_DELAYS, SinkStats};
pub use time::rfc3339;

use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What happened; the `type` of an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A stream got a publisher (not again on a failover switch while it stays live).
    StreamStarted,
    /// A stream's publisher left.
    StreamStopped,
    /// A pulled input stopped delivering (the inputs supervisor emits it).
    InputDown,
    /// The stream switched to another input (the inputs supervisor emits it).
    InputSwitched,
    /// A push destination changed state.
    PushState,
    /// A publisher or reader session started.
    SessionOpened,
    /// A publisher or reader session ended.
    SessionClosed,
    /// A recording was finalized (reserved for the recorder).
    RecordingDone,
    /// Sent by `POST /api/v1/hooks/{id}/test` to one sink only.
    HookTest,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 9] = [
        EventKind::StreamStarted,
        EventKind::StreamStopped,
        EventKind::InputDown,
        EventKind::InputSwitched,
        EventKind::PushState,
        EventKind::SessionOpened,
        EventKind::SessionClosed,
        EventKind::RecordingDone,
        EventKind::HookTest,
    ];

    /// The wire name, e.g. `stream.started`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StreamStarted => "stream.started",
            EventKind::StreamStopped => "stream.stopped",
            EventKind::InputDown => "input.down",
            EventKind::InputSwitched => "input.switched",
            EventKind::PushState => "push.state",
            EventKind::SessionOpened => "session.opened",
            EventKind::SessionClosed => "session.closed",
            EventKind::RecordingDone => "recording.done",
            EventKind::HookTest => "hook.test",
        }
    }

    /// The kind with wire name `s`.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, as every sink receives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unique in the process, increasing with each event (starts at 1).
    pub id: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// The gateway node that emitted it, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// The stream it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Details, by type.
    pub data: serde_json::Value,
}

/// Something that takes events from the bus; implemented by the sinks.
pub(crate) trait Subscriber: Send + Sync {
    /// Takes `event` if it wants it. Must not block or do I/O.
    fn offer(&self, event: &Arc<Event>);
}

/// The gateway's event bus; cheap to clone, every clone is the same bus.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    /// The next id. Held while an event is offered, so every queue gets events in id order
    /// (a receiver can rely on ids increasing) even when threads emit at once; the section
    /// is a few queue pushes, never I/O.
    next_id: Mutex<u64>,
    node: Option<Arc<str>>,
    /// Replaced whole on every sink change, so `emit` holds the lock only to clone an `Arc`.
    subscribers: RwLock<Arc<[Arc<dyn Subscriber>]>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("node", &self.inner.node)
            .field("emitted", &self.emitted())
            .finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(None)
    }
}

impl EventBus {
    /// A bus whose events carry `node` (omitted when `None`).
    pub fn new(node: Option<String>) -> EventBus {
        EventBus {
            inner: Arc::new(BusInner {
                next_id: Mutex::new(1),
                node: node.filter(|n| !n.is_empty()).map(Arc::from),
                subscribers: RwLock::new(Arc::from(Vec::new())),
            }),
        }
    }

    /// Numbers and timestamps an event and offers it to every sink; returns its id. Never
    /// awaits or waits on a receiver: a sink whose queue is full drops its oldest event.
    pub fn emit(&self, kind: EventKind, stream: Option<&str>, data: serde_json::Value) -> u64 {
        let mut event = self.unnumbered(kind, stream, data);
        let subscribers = self
            .inner
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut next = self.next_id();
        event.id = *next;
        *next += 1;
        let event = Arc::new(event);
        for s in subscribers.iter() {
            s.offer(&event);
        }
        event.id
    }

    /// Builds an event with the next id without offering it to anyone (the test delivery).
    pub fn make(&self, kind: EventKind, stream: Option<&str>, data: serde_json::Value) -> Event {
        let mut event = self.unnumbered(kind, stream, data);
        let mut next = self.next_id();
        event.id = *next;
        *next += 1;
        event
    }

    fn unnumbered(&self, kind: EventKind, stream: Option<&str>, data: serde_json::Value) -> Event {
        Event {
            id: 0,
            kind,
            at: rfc3339(SystemTime::now()),
            node: self.inner.node.clone(),
            stream: stream.map(str::to_owned),
            data,
        }
    }

    fn next_id(&self) -> std::sync::MutexGuard<'_, u64> {
        // A counter only: a poisoned lock still holds a valid next id.
        self.inner.next_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events numbered so far (emitted or made).
    pub fn emitted(&self) -> u64 {
        *self.next_id() - 1
    }

    /// The node name events carry.
    pub fn node(&self) -> Option<&str> {
        self.inner.node.as_deref()
    }

    /// Replaces the set of subscribers (the enabled sinks).
    pub(crate) fn set_subscribers(&self, subscribers: Vec<Arc<dyn Subscriber>>) {
        *self
            .inner
            .subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::from(subscribers);
    }
}

/// The host name, for the `node` of events when none is configured (Linux; `None` elsewhere).
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Arc<Event>>>);

    impl Subscriber for Collect {
        fn offer(&self, event: &Arc<Event>) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn kinds_round_trip_their_wire_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::parse("stream.start"), None);
    }

    #[test]
    fn events_are_numbered_in_order_and_serialize_with_their_wire_names() {
        let bus = EventBus::new(Some("node-a".into()));
        let sink = Arc::new(Collect::default());
        bus.set_subscribers(vec![sink.clone()]);
        let a = bus.emit(
            EventKind::StreamStarted,
            Some("cam1"),
            json!({"session": 4}),
        );
        let b = bus.emit(EventKind::PushState, None, json!({}));
        assert_eq!((a, b), (1, 2));
        assert_eq!(bus.emitted(), 2);
        let got = sink.0.lock().unwrap().clone();
        let v = serde_json::to_value(&*got[0]).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["type"], "stream.started");
        assert_eq!(v["node"], "node-a");
        assert_eq!(v["stream"], "cam1");
        assert_eq!(v["data"]["session"], 4);
        let at = v["at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 24, "{at}");
        let v = serde_json::to_value(&*got[1]).unwrap();
        assert!(
            v.get("stream").is_none() && v["type"] == "push.state",
            "{v}"
        );
    }

    /// Many threads at once: each subscriber still sees ids in increasing order.
    #[test]
    fn concurrent_emits_reach_subscribers_in_id_order() {
        let bus = EventBus::default();
        let sink = Arc::new(Collect::default());
        bus.set_subscribers(vec![sink.clone()]);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        bus.emit(EventKind::SessionOpened, Some("x"), json!({}));
                    }
                });
            }
        });
        let ids: Vec<u64> = sink.0.lock().unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_bus_without_node_or_sinks_still_numbers() {
        let bus = EventBus::new(Some(String::new()));
        assert_eq!(bus.node(), None);
        assert_eq!(bus.emit(EventKind::HookTest, None, json!(null)), 1);
        let made = bus.make(EventKind::HookTest, None, json!(null));
        assert_eq!(made.id, 2);
        assert!(serde_json::to_value(&made).unwrap().get("node").is_none());
    }
}
