//! Every publisher and external reader on every protocol, so the API can list and kick them.

use crate::{ClientInfo, HubInner, PublisherMeta};
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
#[derive(Clone, Debug, Default)]
pub struct ReaderMeta {
    /// Output protocol, e.g. `rtmp`, `mpegts`.
    pub protocol: &'static str,
    /// Remote address of the reader's connection.
    pub remote_addr: Option<SocketAddr>,
    /// The connection the reader came on (RTMP); `None` elsewhere.
    pub client: Option<Arc<ClientInfo>>,
    /// Query arguments of the play request (`?token=...`).
    pub args: Vec<(String, String)>,
}

/// One publisher or reader session, as listed by [`crate::Hub::sessions`] and handed to
/// [`crate::Admission::session_opened`] / [`crate::Admission::session_closed`].
#[derive(Clone, Debug)]
pub struct SessionInfo {
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
    /// The connection the session came on (RTMP `connect` fields); `None` elsewhere.
    pub client: Option<Arc<ClientInfo>>,
    /// Query arguments of the publish or play request.
    pub args: Vec<(String, String)>,
    /// Id an external system gave a publish session at admission.
    pub external_id: Option<String>,
    /// Another node of the cluster (its pull or fetch carried [`INTERNAL_ARG`], which is not
    /// kept in `args`): no player of this node's, so no hook hears of it.
    pub internal: bool,
}

/// The query argument another node of a cluster adds to its pulls and fetches (the cluster
/// key): dropped from session arguments, so it reaches no hook, event or API answer.
pub const INTERNAL_ARG: &str = "ferrocast_cluster";

/// What a new registration knows about its session besides the stream and role.
pub(crate) struct Who {
    pub(crate) protocol: &'static str,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) client: Option<Arc<ClientInfo>>,
    pub(crate) args: Vec<(String, String)>,
    pub(crate) external_id: Option<String>,
}

impl From<ReaderMeta> for Who {
    fn from(m: ReaderMeta) -> Who {
        Who {
            protocol: m.protocol,
            remote_addr: m.remote_addr,
            client: m.client,
            args: m.args,
            external_id: None,
        }
    }
}

impl From<&PublisherMeta> for Who {
    fn from(m: &PublisherMeta) -> Who {
        Who {
            protocol: m.protocol,
            remote_addr: m.remote_addr,
            client: m.client.clone(),
            args: m.args.clone(),
            external_id: m.external_id.clone(),
        }
    }
}

struct Entry {
    /// Everything but `bytes`, which is read from the live counter.
    info: SessionInfo,
    bytes: Arc<AtomicU64>,
    kill: CancellationToken,
}

impl Entry {
    fn snapshot(&self) -> SessionInfo {
        SessionInfo {
            bytes: self.bytes.load(Ordering::Relaxed),
            ..self.info.clone()
        }
    }
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

    pub(crate) fn list(&self) -> Vec<SessionInfo> {
        self.map().values().map(Entry::snapshot).collect()
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

    /// Sessions matching `f`, counted under the lock without copying any of them.
    pub(crate) fn count_where(&self, f: impl Fn(&str, &'static str, SessionRole) -> bool) -> usize {
        self.map()
            .values()
            .filter(|e| f(&e.info.stream, e.info.protocol, e.info.role))
            .count()
    }

    pub(crate) fn publisher_arg(&self, code: &str, name: &str) -> Option<String> {
        self.map()
            .values()
            .find(|e| e.info.role == SessionRole::Publisher && e.info.stream == code)
            .and_then(|e| e.info.args.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn kick_readers_unless(
        &self,
        code: &str,
        protocol: &str,
        keep: impl Fn(&SessionInfo) -> bool,
    ) -> usize {
        let map = self.map();
        let mut n = 0;
        for e in map.values().filter(|e| {
            e.info.role == SessionRole::Reader
                && e.info.stream == code
                && e.info.protocol == protocol
                && !keep(&e.info)
        }) {
            e.kill.cancel();
            n += 1;
        }
        n
    }

    pub(crate) fn kick_where(&self, f: impl Fn(&str, &'static str, SessionRole) -> bool) -> usize {
        let map = self.map();
        let mut n = 0;
        for e in map
            .values()
            .filter(|e| f(&e.info.stream, e.info.protocol, e.info.role))
        {
            e.kill.cancel();
            n += 1;
        }
        n
    }
}

/// Registration of one session; dropping it removes the session from the list.
///
/// The installed [`crate::Admission`] hears `session_opened` once the owner calls
/// [`SessionGuard::notify_opened`] (after it released every hub lock) and `session_closed` on
/// drop, only for sessions it heard opened.
pub struct SessionGuard {
    id: u64,
    hub: Arc<HubInner>,
    bytes: Arc<AtomicU64>,
    kill: CancellationToken,
    /// `session_opened` was delivered, so `session_closed` is owed.
    opened: bool,
}

impl std::fmt::Debug for SessionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGuard")
            .field("id", &self.id)
            .finish()
    }
}

impl SessionGuard {
    /// Lists a new session. Takes only the sessions-map lock, so callers may hold the stream
    /// registry; the admission is told later by [`SessionGuard::notify_opened`].
    pub(crate) fn register(
        hub: &Arc<HubInner>,
        stream: &str,
        role: SessionRole,
        who: Who,
    ) -> SessionGuard {
        let id = hub.next_id();
        let bytes = Arc::new(AtomicU64::new(0));
        let kill = CancellationToken::new();
        hub.sessions.opened.fetch_add(1, Ordering::Relaxed);
        let mut args = who.args;
        let before = args.len();
        args.retain(|(k, _)| k != INTERNAL_ARG);
        let info = SessionInfo {
            id,
            stream: stream.to_owned(),
            protocol: who.protocol,
            role,
            remote_addr: who.remote_addr,
            started_at: SystemTime::now(),
            bytes: 0,
            client: who.client,
            internal: args.len() != before,
            args,
            external_id: who.external_id,
        };
        hub.sessions.map().insert(
            id,
            Entry {
                info,
                bytes: bytes.clone(),
                kill: kill.clone(),
            },
        );
        SessionGuard {
            id,
            hub: hub.clone(),
            bytes,
            kill,
            opened: false,
        }
    }

    /// Tells the installed admission the session started. Call once, with no hub lock held:
    /// the admission may call back into the hub.
    pub(crate) fn notify_opened(&mut self) {
        if self.opened {
            return;
        }
        let info = self.hub.sessions.map().get(&self.id).map(Entry::snapshot);
        if let Some(info) = info {
            self.opened = true;
            self.hub.admission().session_opened(&info);
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

    /// The counter behind [`SessionGuard::add_bytes`], for a writer in another task.
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    /// The kick switch of this session.
    pub fn kill_token(&self) -> &CancellationToken {
        &self.kill
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        // The map lock is released at the end of this statement, before the admission runs.
        let entry = self.hub.sessions.map().remove(&self.id);
        self.hub.sessions.closed.fetch_add(1, Ordering::Relaxed);
        if let Some(entry) = entry
            && self.opened
        {
            self.hub.admission().session_closed(&entry.snapshot());
        }
    }
}
