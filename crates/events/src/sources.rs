//! The gateway's own event sources, wired in by the binary:
//! - [`follow_hub`]: `stream.started` / `stream.stopped` from the hub's publish events;
//! - [`observe_sessions`]: `session.opened` / `session.closed` for every publisher and reader,
//!   by wrapping the installed [`hub::Admission`] (which the hub already tells of both);
//! - [`push_observer`]: `push.state` on every push destination state change.
//!
//! Each only calls [`EventBus::emit`], so none can slow the path it listens to.

use crate::{EventBus, EventKind, rfc3339};
use hub::{
    AccessRequest, Admission, ClientInfo, ConnectFuture, DecisionFuture, Hub, HubEvent, SessionInfo,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

/// A stream the follower saw start: its current publish session and since when it is live.
struct Live {
    session: u64,
    since: SystemTime,
}

/// Which codes are live, so a failover switch (a second `Published` for a live code, with a
/// new session) is not a second `stream.started`, and a stale `Unpublished` (of a session
/// already replaced) is not a `stream.stopped`.
#[derive(Default)]
pub(crate) struct LiveCodes {
    live: HashMap<String, Live>,
}

impl LiveCodes {
    pub(crate) fn on_event(&mut self, ev: HubEvent, hub: &Hub, bus: &EventBus) {
        match ev {
            HubEvent::Published { code, session } => {
                if let Some(l) = self.live.get_mut(&code) {
                    l.session = session;
                    return;
                }
                self.started(code, session, hub, bus);
            }
            HubEvent::Unpublished { code, session } => {
                if self.live.get(&code).is_some_and(|l| l.session == session) {
                    self.stopped(&code, bus);
                }
            }
        }
    }

    fn started(&mut self, code: String, session: u64, hub: &Hub, bus: &EventBus) {
        let mut data = json!({"session": session});
        if let Some(p) = hub.stats(&code).and_then(|s| s.publisher) {
            data["protocol"] = json!(p.protocol);
            data["remote_addr"] = json!(p.remote_addr.map(|a| a.to_string()));
            if let Some(id) = p.external_id {
                data["external_id"] = json!(id);
            }
        }
        bus.emit(EventKind::StreamStarted, Some(&code), data);
        self.live.insert(
            code,
            Live {
                session,
                since: SystemTime::now(),
            },
        );
    }

    fn stopped(&mut self, code: &str, bus: &EventBus) {
        if let Some(l) = self.live.remove(code) {
            let duration = l.since.elapsed().unwrap_or(Duration::ZERO);
            bus.emit(
                EventKind::StreamStopped,
                Some(code),
                json!({"session": l.session, "duration_ms": duration.as_millis() as u64}),
            );
        }
    }

    /// After missed hub events: what has a publisher now is live, the rest stopped.
    pub(crate) fn resync(&mut self, hub: &Hub, bus: &EventBus) {
        let now: HashMap<String, u64> = hub
            .list()
            .into_iter()
            .filter_map(|s| s.publisher.map(|p| (s.code, p.session)))
            .collect();
        let gone: Vec<String> = self
            .live
            .keys()
            .filter(|c| !now.contains_key(*c))
            .cloned()
            .collect();
        for code in gone {
            self.stopped(&code, bus);
        }
        for (code, session) in now {
            self.on_event(HubEvent::Published { code, session }, hub, bus);
        }
    }
}

/// Emits `stream.started` when a code gets a publisher and `stream.stopped` when it loses it,
/// until `shutdown`; then the events already sent by the hub are still turned into events
/// (the publishers that ended in the shutdown).
pub async fn follow_hub(hub: Hub, bus: EventBus, shutdown: CancellationToken) {
    let mut rx = hub.events();
    let mut live = LiveCodes::default();
    live.resync(&hub, &bus);
    loop {
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Ok(ev) => live.on_event(ev, &hub, &bus),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event bus lagged behind the hub; resynchronised");
                    live.resync(&hub, &bus);
                }
                Err(RecvError::Closed) => return,
            },
            () = shutdown.cancelled() => break,
        }
    }
    loop {
        match rx.try_recv() {
            Ok(ev) => live.on_event(ev, &hub, &bus),
            Err(TryRecvError::Lagged(_)) => live.resync(&hub, &bus),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// `admission` with `session.opened` / `session.closed` emitted for every session it hears
/// of; install the result with [`Hub::set_admission`].
pub fn observe_sessions(admission: Arc<dyn Admission>, bus: EventBus) -> Arc<dyn Admission> {
    Arc::new(SessionEvents {
        inner: admission,
        bus,
    })
}

struct SessionEvents {
    inner: Arc<dyn Admission>,
    bus: EventBus,
}

/// What an event says about a session. Query arguments are left out: they carry stream keys
/// and tokens.
fn session_data(s: &SessionInfo, closed: bool) -> Value {
    let mut data = json!({
        "session": s.id,
        "role": s.role.as_str(),
        "protocol": s.protocol,
        "remote_addr": s.remote_addr.map(|a| a.to_string()),
        "started_at": rfc3339(s.started_at),
    });
    if let Some(id) = &s.external_id {
        data["external_id"] = json!(id);
    }
    if let Some(c) = &s.client {
        data["app"] = json!(c.app);
        data["connection"] = json!(c.connection_id);
    }
    if closed {
        data["bytes"] = json!(s.bytes);
        let duration = s.started_at.elapsed().unwrap_or(Duration::ZERO);
        data["duration_ms"] = json!(duration.as_millis() as u64);
    }
    data
}

impl Admission for SessionEvents {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        self.inner.check(request)
    }

    fn connect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) -> ConnectFuture {
        self.inner.connect(client, remote_addr)
    }

    fn disconnect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) {
        self.inner.disconnect(client, remote_addr);
    }

    fn session_opened(&self, session: &SessionInfo) {
        self.bus.emit(
            EventKind::SessionOpened,
            Some(&session.stream),
            session_data(session, false),
        );
        self.inner.session_opened(session);
    }

    fn session_closed(&self, session: &SessionInfo) {
        self.bus.emit(
            EventKind::SessionClosed,
            Some(&session.stream),
            session_data(session, true),
        );
        self.inner.session_closed(session);
    }
}

/// A [`push::StateObserver`] that emits `push.state` with the masked URL, the state, the one
/// before, the attempt, the newest error and the next retry time.
pub fn push_observer(bus: EventBus) -> push::StateObserver {
    Arc::new(move |c: &push::StateChange| {
        bus.emit(
            EventKind::PushState,
            Some(&c.code),
            json!({
                "url": c.url,
                "state": c.state.as_str(),
                "previous": c.previous.map(|p| p.as_str()),
                "attempt": c.attempt,
                "error": c.error,
                "next_retry_at": c.next_retry_at.map(rfc3339),
            }),
        );
    })
}

/// An [`inputs::Notifier`] that emits `input.down` and `input.switched`; inputs are named by
/// index, priority and masked URL, as in the stream's runtime view.
pub fn inputs_notifier(bus: EventBus) -> inputs::Notifier {
    let input = |i: &Option<(usize, u32, String)>| {
        i.as_ref()
            .map(|(index, priority, url)| json!({"index": index, "priority": priority, "url": url}))
    };
    Arc::new(move |e: inputs::InputEvent| match e {
        inputs::InputEvent::Down {
            code,
            index,
            priority,
            url,
            reason,
        } => {
            bus.emit(
                EventKind::InputDown,
                Some(&code),
                json!({"index": index, "priority": priority, "url": url, "reason": reason}),
            );
        }
        inputs::InputEvent::Switched {
            code,
            from,
            to,
            reason,
        } => {
            bus.emit(
                EventKind::InputSwitched,
                Some(&code),
                json!({"from": input(&from), "to": input(&to), "reason": reason}),
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Subscriber};
    use hub::{HubConfig, PublisherMeta, ReaderMeta};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Arc<Event>>>);

    impl Subscriber for Collect {
        fn offer(&self, event: &Arc<Event>) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    impl Collect {
        fn take(&self) -> Vec<(String, Option<String>, Value)> {
            std::mem::take(&mut *self.0.lock().unwrap())
                .into_iter()
                .map(|e| (e.kind.as_str().to_owned(), e.stream.clone(), e.data.clone()))
                .collect()
        }
    }

    fn bus() -> (EventBus, Arc<Collect>) {
        let bus = EventBus::default();
        let c = Arc::new(Collect::default());
        bus.set_subscribers(vec![c.clone()]);
        (bus, c)
    }

    fn kinds(evs: &[(String, Option<String>, Value)]) -> Vec<&str> {
        evs.iter().map(|e| e.0.as_str()).collect()
    }

    #[test]
    fn a_failover_switch_is_not_a_second_start_and_stale_ends_are_ignored() {
        let hub = Hub::new(HubConfig::default());
        let (bus, got) = bus();
        let mut live = LiveCodes::default();
        let ev = |p: bool, session| {
            let code = "cam".to_owned();
            if p {
                HubEvent::Published { code, session }
            } else {
                HubEvent::Unpublished { code, session }
            }
        };
        live.on_event(ev(true, 10), &hub, &bus);
        // The inputs supervisor switches source: a new session on the same code.
        live.on_event(ev(true, 11), &hub, &bus);
        // The end of the replaced session arrives late.
        live.on_event(ev(false, 10), &hub, &bus);
        let evs = got.take();
        assert_eq!(kinds(&evs), ["stream.started"]);
        assert_eq!(evs[0].1.as_deref(), Some("cam"));
        assert_eq!(evs[0].2["session"], 10);
        live.on_event(ev(false, 11), &hub, &bus);
        let evs = got.take();
        assert_eq!(kinds(&evs), ["stream.stopped"]);
        assert_eq!(evs[0].2["session"], 11);
        assert!(evs[0].2["duration_ms"].is_u64());
        // Stopped twice is still one event; a new publish is a new start.
        live.on_event(ev(false, 11), &hub, &bus);
        live.on_event(ev(true, 12), &hub, &bus);
        assert_eq!(kinds(&got.take()), ["stream.started"]);
    }

    #[tokio::test]
    async fn the_follower_turns_publishes_into_events_and_drains_at_shutdown() {
        let hub = Hub::new(HubConfig::default());
        let (bus, got) = bus();
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow_hub(hub.clone(), bus.clone(), stop.clone()));
        tokio::task::yield_now().await;
        let addr: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let p = hub
            .publish(
                "cam",
                PublisherMeta {
                    protocol: "rtmp",
                    remote_addr: Some(addr),
                    ..Default::default()
                },
            )
            .unwrap();
        for _ in 0..50 {
            if !got.0.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(p);
        stop.cancel();
        task.await.unwrap();
        let evs = got.take();
        assert_eq!(kinds(&evs), ["stream.started", "stream.stopped"]);
        assert_eq!(evs[0].2["protocol"], "rtmp");
        assert_eq!(evs[0].2["remote_addr"], "192.0.2.1:5000");
        assert_eq!(evs[0].2["session"], evs[1].2["session"]);
    }

    #[tokio::test]
    async fn resync_after_missed_events_starts_and_stops_what_changed() {
        let hub = Hub::new(HubConfig::default());
        let (bus, got) = bus();
        let mut live = LiveCodes::default();
        live.on_event(
            HubEvent::Published {
                code: "gone".into(),
                session: 1,
            },
            &hub,
            &bus,
        );
        let _p = hub.publish("new", PublisherMeta::default()).unwrap();
        got.take();
        live.resync(&hub, &bus);
        let mut evs: Vec<(String, Option<String>)> =
            got.take().into_iter().map(|e| (e.0, e.1)).collect();
        evs.sort();
        assert_eq!(
            evs,
            [
                ("stream.started".into(), Some("new".into())),
                ("stream.stopped".into(), Some("gone".into())),
            ]
        );
    }

    #[test]
    fn sessions_of_publishers_and_readers_become_events_and_reach_the_admission() {
        #[derive(Default)]
        struct Count(Mutex<(u32, u32)>);
        impl Admission for Count {
            fn check(&self, r: AccessRequest) -> DecisionFuture {
                hub::AllowAll.check(r)
            }
            fn session_opened(&self, _: &SessionInfo) {
                self.0.lock().unwrap().0 += 1;
            }
            fn session_closed(&self, _: &SessionInfo) {
                self.0.lock().unwrap().1 += 1;
            }
        }
        let hub = Hub::new(HubConfig::default());
        let (bus, got) = bus();
        let inner = Arc::new(Count::default());
        hub.set_admission(observe_sessions(inner.clone(), bus));
        let p = hub
            .publish(
                "cam",
                PublisherMeta {
                    protocol: "srt",
                    args: vec![("key".into(), "s3cret".into())],
                    external_id: Some("ext-1".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let reader = hub.subscribe_reader(
            "cam",
            ReaderMeta {
                protocol: "mpegts",
                ..Default::default()
            },
        );
        drop(reader);
        drop(p);
        let evs = got.take();
        assert_eq!(
            kinds(&evs),
            [
                "session.opened",
                "session.opened",
                "session.closed",
                "session.closed"
            ]
        );
        let publisher = &evs[0].2;
        assert_eq!(publisher["role"], "publisher");
        assert_eq!(publisher["protocol"], "srt");
        assert_eq!(publisher["external_id"], "ext-1");
        assert!(publisher["started_at"].as_str().unwrap().ends_with('Z'));
        assert!(!publisher.to_string().contains("s3cret"), "{publisher}");
        assert_eq!(evs[1].2["role"], "reader");
        assert_eq!(evs[2].2["session"], evs[1].2["session"]);
        assert!(evs[2].2["bytes"].is_u64() && evs[2].2["duration_ms"].is_u64());
        assert!(evs.iter().all(|e| e.1.as_deref() == Some("cam")));
        assert_eq!(
            *inner.0.lock().unwrap(),
            (2, 2),
            "the wrapped admission hears all"
        );
    }

    #[test]
    fn push_changes_become_push_state_events() {
        let (bus, got) = bus();
        let observer = push_observer(bus);
        observer(&push::StateChange {
            code: "cam".into(),
            url: "rtmp://h/app/****".into(),
            state: push::PushState::Reconnecting,
            previous: Some(push::PushState::Active),
            attempt: 3,
            error: Some("remote closed the connection".into()),
            next_retry_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1)),
        });
        let evs = got.take();
        assert_eq!(kinds(&evs), ["push.state"]);
        assert_eq!(evs[0].1.as_deref(), Some("cam"));
        assert_eq!(
            evs[0].2,
            json!({
                "url": "rtmp://h/app/****",
                "state": "reconnecting",
                "previous": "active",
                "attempt": 3,
                "error": "remote closed the connection",
                "next_retry_at": "1970-01-01T00:00:01.000Z",
            })
        );
    }
}
