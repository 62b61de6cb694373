//! Concurrent connection limits, global and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::IpList;

/// Connection limits; `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most connections open at once, all clients together. `Some(0)` refuses everyone.
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address. `Some(0)` refuses everyone not
    /// exempt.
    pub max_connections_per_ip: Option<usize>,
    /// Addresses not subject to `max_connections_per_ip`; they still count toward
    /// `max_connections` (AgustinSRG's `CONCURRENT_LIMIT_WHITELIST` likewise only lifts the
    /// per-IP limit). Empty exempts nobody.
    pub exempt: IpList,
}

/// Which limit refused a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `max_connections` connections are already open.
    #[error("global connection limit reached ({limit} open)")]
    Global {
        /// The configured limit, equal to the number open.
        limit: usize,
    },
    /// `max_connections_per_ip` connections from this address are already open.
    #[error("per-IP connection limit reached for {ip} ({limit} open)")]
    PerIp {
        /// The client address (IPv4-mapped IPv6 shown as IPv4).
        ip: IpAddr,
        /// The configured limit, equal to the number open from `ip`.
        limit: usize,
    },
}

/// Counts open connections and refuses those over a limit; cheap to clone, shared by all
/// listeners so one client is counted once across protocols.
///
/// One short mutex section per accept and per close: far below the cost of the accept itself.
#[derive(Clone, Debug)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimitsConfig,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    // Every open connection's address, exempt or not, so metrics see them all. An entry is
    // removed when its count reaches zero, so the map never outgrows the open connections.
    per_ip: HashMap<IpAddr, usize>,
}

impl Inner {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counters are updated in single statements that cannot panic half-way, so a
        // poisoned lock still holds consistent numbers.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Holds one connection's place; dropping it releases the place.
#[derive(Debug)]
#[must_use = "the connection slot is released as soon as the guard is dropped"]
pub struct ConnGuard {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl ConnGuard {
    /// The client address counted (IPv4-mapped IPv6 normalized to IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.inner.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnLimiter {
    /// A limiter enforcing `config`.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// The limits enforced.
    pub fn config(&self) -> &LimitsConfig {
        &self.inner.config
    }

    /// Takes a place for a connection from `ip`, or says which limit is full.
    ///
    /// An IPv4-mapped IPv6 address is counted as the IPv4 address it carries, so a client seen
    /// by both an IPv4 and a dual-stack listener is one client.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnGuard, LimitError> {
        let ip = ip.to_canonical();
        let cfg = &self.inner.config;
        // Decided before taking the lock: the list is immutable and may be long.
        let per_ip_limit = match cfg.max_connections_per_ip {
            Some(limit) if !cfg.exempt.contains(ip) => Some(limit),
            _ => None,
        };
        let mut c = self.inner.counts();
        if let Some(limit) = cfg.max_connections.filter(|&l| c.total >= l) {
            return Err(LimitError::Global { limit });
        }
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if let Some(limit) = per_ip_limit.filter(|&l| from_ip >= l) {
            return Err(LimitError::PerIp { ip, limit });
        }
        c.total += 1;
        c.per_ip.insert(ip, from_ip + 1);
        drop(c);
        Ok(ConnGuard {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections open now.
    pub fn current(&self) -> usize {
        self.inner.counts().total
    }

    /// Connections open now from `ip` (exempt addresses included).
    pub fn per_ip(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.inner.counts().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Distinct client addresses with a connection open now.
    pub fn distinct_ips(&self) -> usize {
        self.inner.counts().per_ip.len()
    }
}
