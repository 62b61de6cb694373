//! Graceful shutdown.

use crate::support::ffmpeg;
use crate::support::http;
use crate::support::proc::{ChildGuard, read_lossy};
use crate::support::{Fixture, Server, wait_until};
use std::time::Duration;

/// SIGTERM with a publisher, an RTMP player, an HLS player and an MPEG-TS reader attached: the
/// playlist ends (`EXT-X-ENDLIST`) while HTTP still serves it, and the process exits 0 within
/// `shutdown_grace`.
#[test]
fn sigterm_with_publisher_and_players_exits_zero_within_grace() {
    let grace = Duration::from_secs(5);
    let mut server = Server::builder()
        .set("shutdown_grace", grace.as_secs())
        .start();
    let _publisher = server.publish("bye", Fixture::Small);
    server.wait_live("bye");

    let progress = server.dir().join("rtmp-player.progress");
    let _player = ChildGuard::spawn(
        "RTMP player",
        ffmpeg::ffmpeg()
            .args(["-i", &server.rtmp_url("bye"), "-f", "null", "-", "-nostats"])
            .arg("-progress")
            .arg(&progress),
        &server.dir().join("rtmp-player.log"),
    );
    let mut ts =
        http::open(server.http, "/live/bye/mpegts", Duration::from_secs(10)).expect("GET mpegts");
    ts.next_piece().expect("mpegts data").expect("mpegts data");
    wait_until(
        "the RTMP player to decode frames",
        Duration::from_secs(20),
        || (ffmpeg::parse_progress(&read_lossy(&progress)).0 > 0).then_some(()),
    );

    server.wait_playlist("bye", "a segment", Duration::from_secs(20), |p| {
        !p.segments.is_empty()
    });

    server.process().signal("TERM");
    // HTTP keeps serving for the drain: a polling HLS player sees the playlist end.
    let endlist = wait_until(
        "EXT-X-ENDLIST after SIGTERM",
        Duration::from_secs(3),
        || {
            http::get(server.http, "/live/bye/index.m3u8")
                .ok()
                .filter(|r| r.status == 200 && r.text().contains("#EXT-X-ENDLIST"))
        },
    );
    assert!(endlist.text().contains("#EXTINF"));
    let margin = Duration::from_secs(3);
    let status = server
        .process()
        .wait_timeout(grace + margin)
        .unwrap_or_else(|| panic!("ferrocast still running {:?} after SIGTERM", grace + margin));
    assert!(
        status.success(),
        "ferrocast exited with {status} after SIGTERM"
    );
    assert!(
        server.log().contains("shutting down"),
        "no shutdown log line"
    );
    drop(ts);
}
