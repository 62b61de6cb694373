//! Every publisher and external reader on every protocol, so the API can list and kick them.

use crate::HubInner;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// Whether a session writes or reads a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRole {
    /// The stream's publisher.
    Publisher,
    /// A player or other consumer.
    Reader,
}

impl SessionRole {
    /// `publisher` or `reader`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionRole::Publisher => "publisher",
            SessionRole::Reader => "reader",
        }
    }
}

/// Who a reader is, as shown in the sessions list.
#[derive(Clone, Debug)]
pub struct ReaderMeta {
    /// Output protocol, e.g. `rtmp`, `mpegts`.
    pub protocol: &'static str,
    /// Remote address of the reader's connection.
    pub remote_addr: Option<SocketAddr>,
}

/// A point-in-time view of one session.
#[derive(Clone, Debug)]
pub struct SessionSnapshot {
    /// Process-unique id (kick with [`crate::Hub::kick_session`]).
    pub id: u64,
    /// Stream code.
    pub stream: String,
    /// Protocol of the connection.
    pub protocol: &'static str,
    /// Publisher or reader.
    pub role: SessionRole,
    /// Remote address.
    pub remote_addr: Option<SocketAddr>,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// Payload bytes received (publisher) or sent (reader).
    pub bytes: u64,
}

struct Entry {
    stream: String,
    protocol: &'static str,
    role: SessionRole,
    remote_addr: Option<SocketAddr>,
    started_at: SystemTime,
    bytes: Arc<AtomicU64>,
    kill: CancellationToken,
}

#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<BTreeMap<u64, Entry>>,
    opened: AtomicU64,
    closed: AtomicU64,
}

impl Sessions {
    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn list(&self) -> Vec<SessionSnapshot> {
        self.map()
            .iter()
            .map(|(id, e)| SessionSnapshot {
                id: *id,
                stream: e.stream.clone(),
                protocol: e.protocol,
                role: e.role,
                remote_addr: e.remote_addr,
                started_at: e.started_at,
                bytes: e.bytes.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn kick(&self, id: u64) -> bool {
        match self.map().get(&id) {
            Some(e) => {
                e.kill.cancel();
                true
            }
            None => false,
        }
    }

    pub(crate) fn kick_where(&self, f: impl Fn(&str, &'static str, SessionRole) -> bool) -> usize {
        let map = self.map();
        let mut n = 0;
        for e in map.values().filter(|e| f(&e.stream, e.protocol, e.role)) {
            e.kill.cancel();
            n += 1;
        }
        n
    }
}

/// Registration of one session; dropping it removes the session from the list.
pub struct SessionGuard {
    id: u64,
    hub: Arc<HubInner>,
    bytes: Arc<AtomicU64>,
    kill: CancellationToken,
}

impl std::fmt::Debug for SessionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGuard")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionGuard {
    pub(crate) fn register(
        hub: &Arc<HubInner>,
        stream: &str,
        protocol: &'static str,
        role: SessionRole,
        remote_addr: Option<SocketAddr>,
    ) -> SessionGuard {
        let id = hub.next_id();
        let bytes = Arc::new(AtomicU64::new(0));
        let kill = CancellationToken::new();
        hub.sessions.opened.fetch_add(1, Ordering::Relaxed);
        hub.sessions.map().insert(
            id,
            Entry {
                stream: stream.to_owned(),
                protocol,
                role,
                remote_addr,
                started_at: SystemTime::now(),
                bytes: bytes.clone(),
                kill: kill.clone(),
            },
        );
        SessionGuard {
            id,
            hub: hub.clone(),
            bytes,
            kill,
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counts payload bytes moved by this session.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// The kick switch of this session.
    pub fn kill_token(&self) -> &CancellationToken {
        &self.kill
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.hub.sessions.map().remove(&self.id);
        self.hub.sessions.closed.fetch_add(1, Ordering::Relaxed);
    }
}
