//! The two OS facilities the worker processes need that std does not offer: CLOCK_MONOTONIC as
//! a number (to share one time origin across processes) and "die with the parent".
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC in nanoseconds: the clock std's `Instant` reads on Linux, as a number that
/// means the same in every process of the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call cannot fail (and on failure `ts` stays zero, which callers reject as a clock
    // that went backwards).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// An `Instant` and the CLOCK_MONOTONIC reading of the same moment, within a few hundred
/// nanoseconds: the narrowest of a few bracketing reads, so a preemption between two of them
/// does not skew the pair.
pub fn clock_pair() -> (Instant, u64) {
    let mut best: Option<(Duration, Instant, u64)> = None;
    for _ in 0..8 {
        let a = Instant::now();
        let m = monotonic_ns();
        let b = Instant::now();
        let width = b - a;
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, a + width / 2, m));
        }
    }
    // The loop runs at least once.
    best.map(|(_, i, m)| (i, m))
        .unwrap_or_else(|| (Instant::now(), monotonic_ns()))
}

/// The local `Instant` of another process's CLOCK_MONOTONIC reading `origin_ns`, given a local
/// pair from [`clock_pair`]; `None` if `origin_ns` lies after the local reading (it was taken
/// by the parent before this process started, so that would mean a broken clock).
pub fn instant_of(origin_ns: u64, local: (Instant, u64)) -> Option<Instant> {
    let ahead = local.1.checked_sub(origin_ns)?;
    local.0.checked_sub(Duration::from_nanos(ahead))
}

/// Asks the kernel to SIGKILL this process when its parent dies, then checks that the parent
/// is still `parent` (it may have died before the request). Must run in the child; the signal
/// follows the parent *thread* that forked, which is why the tool spawns workers from its main
/// thread.
pub fn die_with_parent(parent: u32) -> Result<(), String> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes an integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if rc != 0 {
        return Err(format!(
            "prctl(PR_SET_PDEATHSIG): {}",
            std::io::Error::last_os_error()
        ));
    }
    if std::os::unix::process::parent_id() != parent {
        return Err("parent exited before the worker started".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_ns_is_the_clock_of_instant() {
        let (i0, m0) = clock_pair();
        std::thread::sleep(Duration::from_millis(20));
        let (i1, m1) = clock_pair();
        let by_instant = (i1 - i0).as_nanos() as i128;
        let by_ns = i128::from(m1 - m0);
        // Both read CLOCK_MONOTONIC: they agree to well under a millisecond.
        assert!(
            (by_instant - by_ns).abs() < 200_000,
            "{by_instant} vs {by_ns}"
        );
    }

    #[test]
    fn maps_an_earlier_reading_back() {
        let origin = monotonic_ns();
        let origin_at = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let mapped = instant_of(origin, clock_pair()).unwrap();
        let err = if mapped > origin_at {
            mapped - origin_at
        } else {
            origin_at - mapped
        };
        assert!(err < Duration::from_micros(200), "{err:?}");
        assert!(instant_of(u64::MAX, clock_pair()).is_none());
    }
}
