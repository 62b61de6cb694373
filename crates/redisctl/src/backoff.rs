//! Reconnect delays: exponential with jitter, kept free of clocks and randomness for tests.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Delays that double from `initial` up to `max`, each shortened by up to a quarter at random
/// so that many gateways losing the same Redis do not reconnect in lockstep.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    step: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            step: 0,
        }
    }

    /// The next delay, given a random number.
    pub(crate) fn next_with(&mut self, random: u64) -> Duration {
        // 2^20 times any sane initial delay is far past any sane max; stop doubling there.
        let factor = 1u32 << self.step.min(20);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.step = self.step.saturating_add(1);
        let base_ns = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let jitter = random % (base_ns / 4 + 1);
        Duration::from_nanos(base_ns - jitter)
    }

    /// The next delay, with jitter from the standard library's per-process random keys.
    pub(crate) fn next(&mut self) -> Duration {
        self.next_with(RandomState::new().hash_one(self.step))
    }

    /// Back to `initial`, after a connection that proved healthy.
    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let no_jitter: Vec<_> = (0..9).map(|_| b.next_with(0).as_millis()).collect();
        assert_eq!(
            no_jitter,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        for _ in 0..100 {
            assert_eq!(b.next_with(0), Duration::from_secs(30));
        }
        b.reset();
        assert_eq!(b.next_with(0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut b = Backoff::new(Duration::from_millis(400), Duration::from_secs(30));
        let d = b.next_with(u64::MAX);
        assert!(
            d >= Duration::from_millis(300) && d <= Duration::from_millis(400),
            "{d:?}"
        );
        for _ in 0..50 {
            let before = b.clone().next_with(0);
            let d = b.next();
            assert!(d <= before && d >= before * 3 / 4, "{d:?} vs {before:?}");
        }
    }
}
