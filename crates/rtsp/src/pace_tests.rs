use super::*;

const FRAME: i64 = 3_000; // 30 fps in 90 kHz ticks
const AAC: i64 = 1_920; // 1024 samples at 48 kHz in 90 kHz ticks

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs frames `(arrival after t0, dts)` through a pacer the way the driver does (a held frame
/// blocks the ones after it) and returns when each one was sent, relative to t0.
fn drive(frames: &[(Duration, i64)]) -> Vec<Duration> {
    let t0 = Instant::now();
    let mut pacer = Pacer::new();
    let mut free_at = t0;
    frames
        .iter()
        .map(|&(arrival, dts)| {
            let now = free_at.max(t0 + arrival);
            let sent = pacer.schedule(dts, now).unwrap_or(now);
            free_at = sent;
            sent - t0
        })
        .collect()
}

/// A 2 s GOP (60 video frames, audio interleaved by decode time) as the hub's GOP cache hands
/// it over: all of it at once.
fn gop_backlog(start_dts: i64) -> Vec<(Duration, i64)> {
    let mut frames: Vec<i64> = (0..60).map(|i| start_dts + i * FRAME).collect();
    frames.extend((0..94).map(|i| start_dts + i * AAC));
    frames.sort_unstable();
    frames
        .into_iter()
        .map(|dts| (Duration::ZERO, dts))
        .collect()
}

#[test]
fn a_gop_backlog_leaves_at_four_times_real_time() {
    let frames = gop_backlog(1_000_000);
    let sent = drive(&frames);
    // The keyframe goes at once; the last frame, 2 s of media later, after ~500 ms.
    assert_eq!(sent[0], Duration::ZERO);
    let last = *sent.last().expect("frames");
    let span = frames.last().expect("frames").1 - frames[0].1;
    let expected = Duration::from_nanos(span as u64 * 1_000_000_000 / (90_000 * 4));
    assert!(
        last + SLACK >= expected && last <= expected,
        "last frame sent after {last:?}, expected ~{expected:?}"
    );
    // No 10 ms window carries more than 10 ms * 4 + SLACK * 4 of media.
    for (i, &t) in sent.iter().enumerate() {
        let window: Vec<i64> = frames
            .iter()
            .zip(&sent)
            .filter(|&(_, &s)| s >= t && s < t + ms(10))
            .map(|(f, _)| f.1)
            .collect();
        let media = window.iter().max().copied().unwrap_or(0) - frames[i].1;
        assert!(
            media <= (10 + 20) * 4 * 90,
            "{media} ticks of media within 10 ms from frame {i}"
        );
    }
}

#[test]
fn live_frames_are_never_held() {
    let t0 = Instant::now();
    let mut pacer = Pacer::new();
    for i in 0..300 {
        let now = t0 + ms(33 * i as u64);
        assert_eq!(pacer.schedule(i * FRAME, now), None, "frame {i}");
    }
    assert_eq!(pacer.held(), 0);
}

#[test]
fn a_live_clump_within_the_slack_is_not_held() {
    // Audio PES of an MPEG-TS ingest carry several AAC frames that arrive together.
    let t0 = Instant::now();
    let mut pacer = Pacer::new();
    assert_eq!(pacer.schedule(0, t0), None);
    let now = t0 + ms(200);
    // 64 ms of media fit in the 80 ms the slack allows at once.
    for i in 1..=3 {
        assert_eq!(pacer.schedule(i * AAC, now), None, "frame {i}");
    }
    // Beyond that the clump is spread out at 4x, from SLACK before it arrived.
    let dts = 4 * AAC + 9_000;
    let at = pacer.schedule(dts, now).expect("held");
    let expected = now - SLACK + Duration::from_nanos(dts as u64 * 1_000_000_000 / 360_000);
    assert!(
        at.max(expected) - at.min(expected) < Duration::from_micros(1),
        "{:?}",
        at - now
    );
}

#[test]
fn backlog_then_live_catches_up_and_stops_waiting() {
    let mut frames = gop_backlog(0);
    // Live video keeps arriving at 30 fps after the join, continuing the GOP's timeline.
    for i in 60..240 {
        let arrival = Duration::from_nanos((i - 60) as u64 * 1_000_000_000 / 30);
        frames.push((arrival, i * FRAME));
    }
    let sent = drive(&frames);
    let live = &sent[154..];
    // 2 s behind at 4x: caught up after 2 s / (4 - 1) = 667 ms.
    for (k, &t) in live.iter().enumerate() {
        let arrival = frames[154 + k].0;
        if arrival > ms(700) {
            assert_eq!(t, arrival, "live frame {k} held after the catch-up");
        } else {
            assert!(t >= arrival);
        }
    }
}

#[test]
fn the_other_track_slightly_behind_goes_at_once() {
    let t0 = Instant::now();
    let mut pacer = Pacer::new();
    assert_eq!(pacer.schedule(90_000, t0), None);
    let held = pacer
        .schedule(90_000 + 9_000, t0)
        .expect("100 ms ahead is paced");
    assert_eq!(held, t0 + ms(25));
    // Audio 50 ms behind the newest video frame costs nothing.
    assert_eq!(pacer.schedule(90_000 + 4_500, t0), None);
}

#[test]
fn timestamp_jumps_and_resets_restart_the_schedule() {
    let t0 = Instant::now();
    let mut pacer = Pacer::new();
    assert_eq!(pacer.schedule(0, t0), None);
    // An hour forward: a discontinuity, not an hour of backlog.
    assert_eq!(pacer.schedule(3_600 * 90_000, t0), None);
    assert_eq!(
        pacer.schedule(3_600 * 90_000 + 36_000, t0),
        Some(t0 + ms(100))
    );
    // Backwards (a republish restarting at 0) costs nothing; after a reset it is the anchor.
    assert_eq!(pacer.schedule(0, t0), None);
    pacer.reset();
    assert_eq!(pacer.schedule(0, t0), None);
    assert_eq!(pacer.schedule(36_000, t0), Some(t0 + ms(100)));
    assert_eq!(pacer.held(), 2);
}
