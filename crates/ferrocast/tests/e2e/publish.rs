//! Publishing rules.

use crate::support::ffmpeg::{self, stream_of};
use crate::support::proc::run;
use crate::support::{Fixture, Server};
use std::time::Duration;

/// A second publisher on a live code is refused; the first one is not disturbed.
#[test]
fn second_publisher_on_a_live_code_is_refused() {
    let server = Server::start();
    let mut first = server.publish("taken", Fixture::Small);
    let p = server.wait_playlist("taken", "a segment", Duration::from_secs(30), |p| {
        !p.segments.is_empty()
    });

    let second = run(
        &mut ffmpeg::publish_command(&Fixture::Small.path(), &server.rtmp_url("taken")),
        Duration::from_secs(20),
    );
    assert!(
        second.exited(),
        "second publisher was neither refused nor stopped within 20 s"
    );
    assert!(
        !second.success(),
        "second publisher on a live code exited 0:\n{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("already"),
        "the refusal reason did not reach the second publisher:\n{}",
        second.stderr
    );
    server.wait_log("publish refused", Duration::from_secs(5));

    first.assert_running("after a second publisher was refused");
    let streams = ffmpeg::streams(&server.rtmp_url("taken"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
    let last = server
        .playlist("taken")
        .and_then(|q| q.last_seq())
        .or(p.last_seq())
        .expect("segments");
    server.wait_playlist(
        "taken",
        "HLS to keep advancing",
        Duration::from_secs(20),
        |q| q.last_seq().is_some_and(|s| s >= last + 2),
    );
    first.assert_running("at the end");
}

/// `ffmpeg -i file.ts -c copy -f flv rtmp://...` (re-streaming a TS or HLS source) sends an
/// empty AAC sequence header before the real one; the publish must survive it with audio.
#[test]
fn ts_source_copied_to_rtmp_keeps_both_tracks() {
    let server = Server::start();
    let ts = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/ffmpeg-320x240.ts"
    );
    let mut cmd = ffmpeg::ffmpeg();
    cmd.args(["-re", "-stream_loop", "-1", "-i", ts]).args([
        "-c",
        "copy",
        "-f",
        "flv",
        &server.rtmp_url("tscopy"),
    ]);
    let _publisher = crate::support::proc::ChildGuard::spawn(
        "ts copy publisher",
        &mut cmd,
        &server.dir().join("tscopy.log"),
    );
    server.wait_live("tscopy");
    let streams = ffmpeg::streams(&server.rtmp_url("tscopy"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
    assert!(
        !server.log().contains("AudioSpecificConfig"),
        "the empty sequence header was treated as an error"
    );
}
