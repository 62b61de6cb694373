//! SRT ingest and play on one UDP port, against ffmpeg (libsrt) and srt-live-transmit.

use crate::support::ffmpeg::{self, stream_of};
use crate::support::proc::{ChildGuard, run};
use crate::support::server::free_udp_addr;
use crate::support::{Fixture, Server};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn start(passphrase: Option<&str>) -> (Server, SocketAddr) {
    let addr = free_udp_addr();
    let mut b = Server::builder().set("srt.listen", addr);
    if let Some(p) = passphrase {
        b = b.set("srt.passphrase", p);
    }
    (b.start(), addr)
}

/// ffmpeg publishing `Fixture::Small` as MPEG-TS over SRT with stream id `sid`.
fn publish(server: &Server, addr: SocketAddr, sid: &str, extra: &str) -> ChildGuard {
    let url = format!("srt://{addr}?streamid={sid}{extra}");
    let mut c = ffmpeg::ffmpeg();
    c.args(["-re", "-stream_loop", "-1", "-i"])
        .arg(Fixture::Small.path())
        .args(["-c", "copy", "-f", "mpegts", &url]);
    ChildGuard::spawn("srt publisher", &mut c, &server.dir().join("srt-pub.log"))
}

fn wait_streams(server: &Server, code: &str) {
    server.wait_live(code);
}

/// Publish over SRT; read back over RTMP and HLS; play over SRT with ffmpeg.
#[test]
fn srt_publish_then_rtmp_hls_and_srt_play() {
    let (server, addr) = start(None);
    let mut publisher = publish(&server, addr, "publish:live/x", "");
    wait_streams(&server, "x");

    let streams = ffmpeg::streams(&server.rtmp_url("x"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
    server.wait_playlist("x", "a segment", Duration::from_secs(20), |p| {
        !p.segments.is_empty()
    });
    let streams = ffmpeg::streams(&server.hls_url("x"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");

    let decoded = ffmpeg::decode(
        &format!("srt://{addr}?streamid=live/x"),
        5.0,
        Duration::from_secs(20),
    );
    // Nothing but media: libsrt's "received DATA while HANDSHAKE expected" would mean data
    // overtook the handshake response (srt-tokio did that; the endpoint sends it first).
    decoded.assert_clean("ffmpeg playing srt");
    decoded.assert_duration("ffmpeg playing srt", 5.0, Fixture::FPS);
    assert!(
        publisher.is_running(),
        "publisher stopped:\n{}",
        publisher.log()
    );
}

/// The `#!::` access-control stream id works for both directions; srt-live-transmit plays.
#[test]
fn srt_access_control_ids_and_srt_live_transmit() {
    if Command::new("srt-live-transmit")
        .arg("-version")
        .output()
        .is_err()
    {
        panic!("srt-live-transmit missing (apt-get install srt-tools; scripts/test installs it)");
    }
    let (server, addr) = start(None);
    let _publisher = publish(&server, addr, "#!::r=live/y,m=publish", "");
    wait_streams(&server, "y");

    let out = server.dir().join("slt.ts");
    let file = std::fs::File::create(&out).expect("create slt.ts");
    let mut slt = Command::new("srt-live-transmit")
        .arg(format!("srt://{addr}?streamid=live/y"))
        .arg("file://con")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn srt-live-transmit");
    std::thread::sleep(Duration::from_secs(4));
    let _ = slt.kill();
    let _ = slt.wait();
    let streams = ffmpeg::streams(out.to_str().expect("utf-8 path"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
}

/// Unknown streams, wrong apps, not-live plays and second publishers are rejected at
/// handshake: ffmpeg fails fast instead of hanging on an accepted-then-dropped connection.
#[test]
fn srt_rejects_at_handshake() {
    let (server, addr) = start(None);
    let _publisher = publish(&server, addr, "publish:live/z", "");
    wait_streams(&server, "z");
    for sid in [
        "live/nope",
        "other/z",
        "publish:live/z",
        "publish:live/bad%20code",
    ] {
        let url = format!("srt://{addr}?streamid={sid}");
        let r = run(
            ffmpeg::ffprobe().args(["-show_streams", &url]),
            Duration::from_secs(10),
        );
        assert!(
            r.exited() && !r.success(),
            "{sid}: not rejected:\n{}",
            r.stderr
        );
        assert!(
            r.elapsed < Duration::from_secs(5),
            "{sid}: rejection took {:?}",
            r.elapsed
        );
    }
    server.wait_log("srt play refused: stream not live", Duration::from_secs(5));
    server.wait_log("already has a publisher", Duration::from_secs(5));
}

/// With `srt.passphrase`, encrypted publish and play work and a wrong or missing one is refused.
#[test]
fn srt_passphrase() {
    let pass = "correct-horse-battery";
    let (server, addr) = start(Some(pass));
    let _publisher = publish(
        &server,
        addr,
        "publish:live/e",
        &format!("&passphrase={pass}"),
    );
    wait_streams(&server, "e");
    let streams = ffmpeg::streams(&server.rtmp_url("e"));
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");

    for extra in ["&passphrase=wrong-passphrase", ""] {
        let url = format!("srt://{addr}?streamid=live/e{extra}");
        let r = run(
            ffmpeg::ffprobe().args(["-show_streams", &url]),
            Duration::from_secs(15),
        );
        assert!(
            r.exited() && !r.success(),
            "{extra:?}: not refused:\n{}",
            r.stderr
        );
        assert!(
            r.elapsed < Duration::from_secs(10),
            "{extra:?}: refusal took {:?}",
            r.elapsed
        );
    }
    let decoded = ffmpeg::decode(
        &format!("srt://{addr}?streamid=live/e&passphrase={pass}"),
        5.0,
        Duration::from_secs(20),
    );
    decoded.assert_clean("ffmpeg playing encrypted srt");
    decoded.assert_duration("ffmpeg playing encrypted srt", 5.0, Fixture::FPS);
}

/// Callers srt-protocol 0.4.4 used to panic on (key material sent to a listener without a
/// passphrase; a congestion extension from `transtype=file`) are refused cleanly, and the
/// listener keeps serving everyone else.
#[test]
fn mismatched_callers_do_not_take_the_listener_down() {
    let (server, addr) = start(None);
    for extra in ["&passphrase=correct-horse-battery", "&transtype=file"] {
        let url = format!("srt://{addr}?streamid=publish:live/odd{extra}");
        let mut c = ffmpeg::ffmpeg();
        c.args(["-re", "-t", "2", "-i"])
            .arg(Fixture::Small.path())
            .args(["-c", "copy", "-f", "mpegts", &url]);
        let r = run(&mut c, Duration::from_secs(15));
        assert!(
            r.exited() && !r.success(),
            "{extra}: not refused:\n{}",
            r.stderr
        );
    }
    let _publisher = publish(&server, addr, "publish:live/after", "");
    wait_streams(&server, "after");
    let decoded = ffmpeg::decode(
        &format!("srt://{addr}?streamid=live/after"),
        3.0,
        Duration::from_secs(20),
    );
    decoded.assert_clean("ffmpeg playing srt after odd callers");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
