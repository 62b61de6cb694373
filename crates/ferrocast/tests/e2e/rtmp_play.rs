//! Playing over RTMP: what ffprobe/ffmpeg see, several players, late joiners, waiting players.

use crate::support::ffmpeg::{self, stream_of};
use crate::support::proc::{ChildGuard, run};
use crate::support::{Fixture, Server};
use std::time::{Duration, Instant};

#[test]
fn ffprobe_sees_h264_720p_and_aac_48k() {
    let server = Server::start();
    let _publisher = server.publish("hd", Fixture::Hd720);
    server.wait_live("hd");

    let streams = ffmpeg::streams(&server.rtmp_url("hd"));
    let v = stream_of(&streams, "video");
    assert_eq!(v["codec_name"], "h264", "video codec: {v:#}");
    assert_eq!(v["width"], 1280, "video width: {v:#}");
    assert_eq!(v["height"], 720, "video height: {v:#}");
    let a = stream_of(&streams, "audio");
    assert_eq!(a["codec_name"], "aac", "audio codec: {a:#}");
    assert_eq!(a["sample_rate"], "48000", "audio sample rate: {a:#}");
    assert_eq!(a["channels"], 2, "audio channels: {a:#}");
}

#[test]
fn two_players_at_once_both_decode_video_and_audio() {
    let server = Server::start();
    let _publisher = server.publish("two", Fixture::Small);
    server.wait_live("two");

    let url = server.rtmp_url("two");
    let players: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || ffmpeg::decode(&url, 3.0, Duration::from_secs(30)))
        })
        .collect();
    let results: Vec<_> = players
        .into_iter()
        .map(|p| p.join().expect("player thread"))
        .collect();
    for (i, d) in results.iter().enumerate() {
        d.assert_clean(&format!("RTMP player {i}"));
        d.assert_duration(&format!("RTMP player {i}"), 3.0, Fixture::FPS);
    }
    let (a, b) = (results[0].frames, results[1].frames);
    assert!(
        a.abs_diff(b) <= 10,
        "the two players decoded very different frame counts: {a} vs {b}"
    );
}

/// What a player joining 2 s into a 5 s GOP saw.
struct MidGopJoin {
    /// Wall time from starting ffprobe to its exit after 5 video packets.
    took: Duration,
    /// Wall time from the join to the next keyframe (at least ~3 s).
    next_keyframe_in: Duration,
    /// Media time of the publisher when we joined.
    joined_media: f64,
    packets: Vec<ffmpeg::Packet>,
}

/// Publishes the long-GOP fixture and runs `ffprobe -show_packets` over RTMP for 5 video
/// packets, started 2 s into a GOP.
fn join_mid_gop(server: &Server) -> MidGopJoin {
    let publisher = server.publish("gop", Fixture::LongGop);
    server.wait_live("gop");

    // The publisher's media clock starts a little after its process (connect, handshake): its
    // keyframes reach the server at wall times t0 + d + 5k with a small d > 0. Join at
    // t0 + 5k + 2 s, so the next keyframe is at least 3 s away.
    let gop = Duration::from_secs_f64(Fixture::LongGop.gop_secs());
    let t0 = publisher.started;
    let mut k = 0;
    while t0 + gop * k + Duration::from_secs(2) < Instant::now() + Duration::from_millis(200) {
        k += 1;
    }
    let join_at = t0 + gop * k + Duration::from_secs(2);
    std::thread::sleep(join_at.saturating_duration_since(Instant::now()));
    let joined = Instant::now();
    let next_keyframe_in = (t0 + gop * (k + 1)).saturating_duration_since(joined);

    let (out, packets) = ffmpeg::packets(&server.rtmp_url("gop"), "%+#5", Some("v"));
    eprintln!(
        "mid-GOP join: joined {:.3} s after the publisher started (GOP {k}), ffprobe took \
         {:?}, next keyframe was {next_keyframe_in:?} away, packets: {packets:?}",
        (joined - t0).as_secs_f64(),
        out.elapsed
    );
    assert!(
        out.success(),
        "ffprobe -show_packets over RTMP failed ({:?}):\n{}",
        out.status,
        out.stderr
    );
    assert!(
        !packets.is_empty(),
        "ffprobe reported no video packets:\n{}",
        out.stdout
    );
    MidGopJoin {
        took: out.elapsed,
        next_keyframe_in,
        joined_media: (joined - t0).as_secs_f64(),
        packets,
    }
}

/// A player joining 2 s into a 5 s GOP starts at once on the cached keyframe instead of
/// waiting ~3 s for the next one.
#[test]
fn late_joiner_starts_on_the_cached_keyframe() {
    let server = Server::start();
    let join = join_mid_gop(&server);
    let first = &join.packets[0];
    assert!(
        first.key,
        "first video packet of a late joiner is not a keyframe: {first:?}"
    );
    // The keyframe is from the GOP in progress when we joined (media time ~5k), not the next.
    let first_dts = first.dts.expect("dts of the first packet");
    assert!(
        first_dts < join.joined_media - 1.0,
        "first keyframe has dts {first_dts:.3} s but we joined at media time ~{:.3} s: \
         it was not served from the GOP cache",
        join.joined_media
    );
    assert!(
        join.took < join.next_keyframe_in,
        "the player needed {:?} to get 5 video packets, but the next keyframe was only \
         {:?} away: the GOP cache did not serve it",
        join.took,
        join.next_keyframe_in
    );
}

/// Without a cached GOP (`hub.gop_cache: false`, or a GOP over `gop_cache_max_bytes`) a new
/// player must still start on a keyframe: delta frames without their reference are garbage.
#[test]
fn late_joiner_without_gop_cache_starts_on_the_next_keyframe() {
    let server = Server::builder().set("hub.gop_cache", false).start();
    let join = join_mid_gop(&server);
    let first = &join.packets[0];
    assert!(
        first.key,
        "with the GOP cache off, a player joining mid-GOP got a delta frame first: {first:?} \
         (all: {:?})",
        join.packets
    );
}

#[test]
fn play_of_unknown_stream_fails_after_play_wait_timeout() {
    let server = Server::builder().set("rtmp.play_wait_timeout", 1).start();
    let out = run(
        ffmpeg::ffprobe().args(["-show_streams", &server.rtmp_url("nobody")]),
        Duration::from_secs(20),
    );
    assert!(
        out.exited(),
        "ffprobe of a stream nobody publishes still hung after {:?}",
        out.elapsed
    );
    assert!(
        !out.success(),
        "ffprobe of a stream nobody publishes succeeded:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.to_ascii_lowercase().contains("not found"),
        "ffprobe did not report the stream as not found:\n{}",
        out.stderr
    );
}

#[test]
fn player_that_arrives_before_the_publisher_gets_the_stream() {
    let server = Server::builder().set("rtmp.play_wait_timeout", 20).start();
    let url = server.rtmp_url("early");
    let progress = server.dir().join("early-player.progress");
    let mut player = ChildGuard::spawn(
        "early player",
        ffmpeg::ffmpeg()
            .args(["-i", &url, "-map", "0:v:0", "-map", "0:a:0", "-t", "2"])
            .args(["-f", "null", "-", "-nostats", "-progress"])
            .arg(&progress),
        &server.dir().join("early-player.log"),
    );
    // Only publish once the server has registered the waiting player.
    server.wait_log("code=\"early\"}: playing", Duration::from_secs(10));
    assert!(
        player.is_running(),
        "player gave up before the publisher came:\n{}",
        player.log()
    );
    let _publisher = server.publish("early", Fixture::Small);

    let status = player
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("early player still running 30 s after the publisher started"));
    assert!(
        status.success(),
        "early player failed ({status}):\n{}",
        player.log()
    );
    assert!(
        player.log().trim().is_empty(),
        "early player printed errors:\n{}",
        player.log()
    );
    let (frames, _) = ffmpeg::parse_progress(&crate::support::proc::read_lossy(&progress));
    let min = (2.0 * Fixture::FPS * 0.9) as u64;
    assert!(
        frames >= min,
        "early player decoded {frames} frames, expected >= {min}"
    );
}
