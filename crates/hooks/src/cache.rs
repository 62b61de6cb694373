//! A small bounded TTL cache for hook decisions.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Bounded map whose entries expire `ttl` after insertion.
///
/// Meant for HTTP delivery (HLS/DASH segment requests), where asking the hook for every request
/// would multiply its load by the segment rate: the decision for a client token is reused for
/// `ttl`. When full, expired entries go first, then the oldest. Uses tokio's clock so tests can
/// pause time.
#[derive(Debug)]
pub struct DecisionCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> DecisionCache<K, V> {
    /// Default bound: 10 000 entries, a few MB at most.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

    /// A cache keeping each entry for `ttl` (zero disables caching) and at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        DecisionCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    /// The cached value, if present and not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(key) {
            Some((at, value)) if now.duration_since(*at) < self.ttl => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `key`, restarting its lifetime.
    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() || self.max_entries == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            if entries.len() >= self.max_entries {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (now, value));
    }

    /// Forgets `key` (e.g. after the hook refused it on a later check).
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Entries held, expired ones included until they are touched or evicted.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_ttl() {
        let cache = DecisionCache::new(Duration::from_secs(30), 10);
        cache.insert("tok", true);
        assert_eq!(cache.get(&"tok"), Some(true));
        advance(Duration::from_secs(29)).await;
        assert_eq!(cache.get(&"tok"), Some(true));
        advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get(&"tok"), None);
        assert!(cache.is_empty(), "an expired entry is removed when read");
    }

    #[tokio::test(start_paused = true)]
    async fn reinsert_restarts_the_lifetime() {
        let cache = DecisionCache::new(Duration::from_secs(10), 10);
        cache.insert(1, "a");
        advance(Duration::from_secs(8)).await;
        cache.insert(1, "b");
        advance(Duration::from_secs(8)).await;
        assert_eq!(cache.get(&1), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn full_cache_evicts_expired_then_oldest() {
        let cache = DecisionCache::new(Duration::from_secs(10), 3);
        cache.insert(1, ());
        advance(Duration::from_secs(6)).await;
        cache.insert(2, ());
        advance(Duration::from_secs(1)).await;
        cache.insert(3, ());
        advance(Duration::from_secs(4)).await; // 1 has expired, 2 and 3 have not
        cache.insert(4, ());
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&2).is_some() && cache.get(&3).is_some() && cache.get(&4).is_some());

        cache.insert(5, ()); // nothing expired: the oldest (2) goes
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&2).is_none());
        assert!(cache.get(&3).is_some() && cache.get(&5).is_some());

        cache.insert(3, ()); // replacing an existing key evicts nothing
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ttl_disables_caching() {
        let cache = DecisionCache::new(Duration::ZERO, 10);
        cache.insert("k", 1);
        assert_eq!(cache.get(&"k"), None);
        assert!(cache.is_empty());
    }
}
