//! A sink's bounded queue: `push` never waits; past the bound the oldest event goes and the
//! loss is counted.

use crate::Event;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// An event and when it was queued (the batch timer starts with the oldest).
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub(crate) event: Arc<Event>,
    pub(crate) at: Instant,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Queued>,
    max: usize,
}

/// Bounded FIFO shared by the bus (producer) and the sink's task (consumer).
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Wakes the consumer; `notify_one` keeps a permit when nobody waits, so no push is missed.
    pub(crate) notify: Notify,
    dropped: AtomicU64,
}

impl Queue {
    pub(crate) fn new(max: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                max: max.max(1),
            }),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Whole pushes and pops only: a poisoned queue is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `event`, dropping the oldest ones beyond the bound; returns how many went.
    pub(crate) fn push(&self, event: Arc<Event>) -> u64 {
        let dropped = {
            let mut st = self.state();
            let mut dropped = 0;
            while st.items.len() >= st.max {
                st.items.pop_front();
                dropped += 1;
            }
            st.items.push_back(Queued {
                event,
                at: Instant::now(),
            });
            dropped
        };
        self.notify.notify_one();
        self.count_dropped(dropped)
    }

    /// Puts a batch that was taken but not delivered back in front, oldest first, within the
    /// bound (what does not fit is the oldest, and is dropped).
    pub(crate) fn requeue(&self, batch: Vec<Queued>) -> u64 {
        let dropped = {
            let mut st = self.state();
            for q in batch.into_iter().rev() {
                st.items.push_front(q);
            }
            let mut dropped = 0;
            while st.items.len() > st.max {
                st.items.pop_front();
                dropped += 1;
            }
            dropped
        };
        self.notify.notify_one();
        self.count_dropped(dropped)
    }

    /// Changes the bound, dropping the oldest events over a smaller one.
    pub(crate) fn set_max(&self, max: usize) -> u64 {
        let dropped = {
            let mut st = self.state();
            st.max = max.max(1);
            let over = st.items.len().saturating_sub(st.max);
            st.items.drain(..over);
            over as u64
        };
        self.count_dropped(dropped)
    }

    /// Empties the queue, counting what it held as dropped (a sink disabled or deleted).
    pub(crate) fn clear(&self) -> u64 {
        let n = {
            let mut st = self.state();
            let n = st.items.len();
            st.items.clear();
            n as u64
        };
        self.count_dropped(n)
    }

    /// Length and the queueing time of the oldest event.
    pub(crate) fn peek(&self) -> (usize, Option<Instant>) {
        let st = self.state();
        (st.items.len(), st.items.front().map(|q| q.at))
    }

    pub(crate) fn len(&self) -> usize {
        self.state().items.len()
    }

    /// Takes up to `n` of the oldest events.
    pub(crate) fn take(&self, n: usize) -> Vec<Queued> {
        let mut st = self.state();
        let n = n.min(st.items.len());
        st.items.drain(..n).collect()
    }

    /// Events dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count_dropped(&self, n: u64) -> u64 {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBus, EventKind};
    use serde_json::json;

    fn events(n: usize) -> (EventBus, Vec<Arc<Event>>) {
        let bus = EventBus::default();
        let v = (0..n)
            .map(|_| Arc::new(bus.make(EventKind::HookTest, None, json!(null))))
            .collect();
        (bus, v)
    }

    fn ids(q: &[Queued]) -> Vec<u64> {
        q.iter().map(|q| q.event.id).collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let q = Queue::new(3);
        let (_, evs) = events(5);
        let dropped: u64 = evs.iter().map(|e| q.push(e.clone())).sum();
        assert_eq!(dropped, 2);
        assert_eq!(q.dropped(), 2);
        assert_eq!(
            ids(&q.take(10)),
            [3, 4, 5],
            "the newest three remain, in order"
        );
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn requeue_goes_in_front_and_respects_the_bound() {
        let q = Queue::new(4);
        let (_, evs) = events(6);
        for e in &evs[..3] {
            q.push(e.clone());
        }
        let batch = q.take(2);
        assert_eq!(ids(&batch), [1, 2]);
        for e in &evs[3..6] {
            q.push(e.clone());
        }
        // Queue: 3 4 5 6 (full); the batch 1 2 back in front pushes out the two oldest: 1 2.
        assert_eq!(q.requeue(batch), 2);
        assert_eq!(ids(&q.take(10)), [3, 4, 5, 6]);
        assert_eq!(q.dropped(), 2);
    }

    #[test]
    fn shrinking_and_clearing_count_as_drops() {
        let q = Queue::new(10);
        let (_, evs) = events(6);
        for e in &evs {
            q.push(e.clone());
        }
        assert_eq!(q.set_max(4), 2);
        assert_eq!(q.peek().0, 4);
        assert_eq!(q.clear(), 4);
        assert_eq!(q.dropped(), 6);
        assert_eq!(q.peek(), (0, None));
    }
}
