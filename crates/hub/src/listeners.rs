//! Which protocol listeners run and where, announced by the servers themselves, so the API can
//! tell clients which URLs work without the binary's wiring passing every address around.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A listening socket of a protocol server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// `rtmp`, `rtmps`, `srt`, `rtsp`, `http`, ...
    pub protocol: &'static str,
    /// The bound address (port 0 already resolved).
    pub addr: SocketAddr,
    /// The application name in stream URLs (`live` in `rtmp://host/live/<code>`); empty where
    /// the protocol has none.
    pub app: String,
}

#[derive(Default)]
pub(crate) struct Listeners {
    next: Mutex<(u64, BTreeMap<u64, ListenerInfo>)>,
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, ListenerInfo>)> {
        // Single inserts and removes: a poisoned map is still consistent.
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(self: &Arc<Self>, info: ListenerInfo) -> ListenerGuard {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, info);
        ListenerGuard {
            listeners: Arc::clone(self),
            id,
        }
    }

    pub(crate) fn list(&self) -> Vec<ListenerInfo> {
        let mut out: Vec<ListenerInfo> = self.lock().1.values().cloned().collect();
        out.sort_by(|a, b| (a.protocol, a.addr).cmp(&(b.protocol, b.addr)));
        out
    }
}

/// Keeps a listener announced; dropping it (the server stopped) withdraws the announcement.
#[must_use = "the announcement is withdrawn when the guard is dropped"]
pub struct ListenerGuard {
    listeners: Arc<Listeners>,
    id: u64,
}

impl std::fmt::Debug for ListenerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerGuard")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.listeners.lock().1.remove(&self.id);
    }
}
