//! Playing over RTSP with ffmpeg (TCP interleaved and UDP), plus hostile requests.

use crate::support::ffmpeg::{self, Decoded, parse_progress};
use crate::support::proc::run;
use crate::support::server::free_addrs;
use crate::support::{Fixture, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A server whose RTSP port the test knows.
fn start() -> (Server, SocketAddr) {
    let addr = free_addrs().0;
    let server = Server::builder().set("rtsp.listen", addr).start();
    (server, addr)
}

fn url(addr: SocketAddr, code: &str) -> String {
    format!("rtsp://{addr}/live/{code}")
}

/// Decodes `secs` of video and audio over RTSP with `transport` (`tcp` or `udp`).
fn decode(url: &str, transport: &str, secs: f64) -> Decoded {
    let mut cmd = ffmpeg::ffmpeg();
    cmd.args(["-rtsp_transport", transport, "-i", url])
        .args(["-map", "0:v:0", "-map", "0:a:0", "-t", &secs.to_string()])
        .args(["-f", "null", "-", "-progress", "pipe:1", "-nostats"]);
    let run = run(&mut cmd, Duration::from_secs(40));
    let (frames, out_time) = parse_progress(&run.stdout);
    Decoded {
        run,
        frames,
        out_time,
    }
}

/// Sends `request` raw and returns what the server answered before closing or 3 s passing.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect rtsp");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    // The server may close mid-write on oversize input; that is the point of some tests.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn ffmpeg_decodes_h264_and_aac_over_tcp() {
    let (server, addr) = start();
    let _publisher = server.publish("tcp", Fixture::Small);
    server.wait_live("tcp");
    let d = decode(&url(addr, "tcp"), "tcp", 5.0);
    d.assert_clean("RTSP/TCP player");
    d.assert_duration("RTSP/TCP player", 5.0, Fixture::FPS);
}

#[test]
fn ffmpeg_decodes_h264_and_aac_over_udp() {
    let (server, addr) = start();
    let _publisher = server.publish("udp", Fixture::Small);
    server.wait_live("udp");
    let d = decode(&url(addr, "udp"), "udp", 5.0);
    d.assert_clean("RTSP/UDP player");
    d.assert_duration("RTSP/UDP player", 5.0, Fixture::FPS);
}

#[test]
fn unknown_stream_is_404_and_options_lists_methods() {
    let (_server, addr) = start();
    let u = url(addr, "nobody");
    let text = raw(
        addr,
        format!("OPTIONS {u} RTSP/1.0\r\nCSeq: 1\r\n\r\nDESCRIBE {u} RTSP/1.0\r\nCSeq: 2\r\n\r\nTEARDOWN {u} RTSP/1.0\r\nCSeq: 3\r\n\r\n").as_bytes(),
    );
    assert!(text.contains("Public: OPTIONS, DESCRIBE"), "{text}");
    assert!(text.contains("RTSP/1.0 404"), "{text}");
    let text = raw(
        addr,
        format!("RECORD {u} RTSP/1.0\r\nCSeq: 1\r\n\r\nTEARDOWN {u} RTSP/1.0\r\nCSeq: 2\r\n\r\n")
            .as_bytes(),
    );
    assert!(text.starts_with("RTSP/1.0 501"), "{text}");
}

#[test]
fn ten_tcp_readers_at_once() {
    let (server, addr) = start();
    let _publisher = server.publish("ten", Fixture::Small);
    server.wait_live("ten");
    let u = url(addr, "ten");
    let players: Vec<_> = (0..10)
        .map(|_| {
            let u = u.clone();
            std::thread::spawn(move || decode(&u, "tcp", 3.0))
        })
        .collect();
    for (i, p) in players.into_iter().enumerate() {
        let d = p.join().expect("player thread");
        d.assert_clean(&format!("RTSP player {i}"));
    }
}

#[test]
fn malformed_gets_400_and_huge_headers_close_while_a_reader_plays() {
    let (server, addr) = start();
    let _publisher = server.publish("bad", Fixture::Small);
    server.wait_live("bad");
    let u = url(addr, "bad");
    let player = std::thread::spawn(move || decode(&u, "tcp", 4.0));
    std::thread::sleep(Duration::from_millis(500));

    let text = raw(addr, b"\x01\x02 garbage \xff\r\n\r\n");
    assert!(text.starts_with("RTSP/1.0 400"), "{text:?}");

    let mut huge = format!("OPTIONS {} RTSP/1.0\r\nCSeq: 1\r\n", url(addr, "bad")).into_bytes();
    while huge.len() < 64 << 10 {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let text = raw(addr, &huge);
    assert!(
        !text.contains("200 OK"),
        "oversize request answered: {text}"
    );

    let d = player.join().expect("player thread");
    d.assert_clean("RTSP player beside hostile clients");
}

/// retina, an independent and strict RTSP client, describes the stream and receives frames
/// of both tracks with the right parameters and increasing timestamps.
#[test]
fn retina_receives_both_tracks() {
    use futures_util::StreamExt;
    use retina::client::{
        PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
    };
    use retina::codec::{CodecItem, ParametersRef};

    let (server, addr) = start();
    let _publisher = server.publish("ret", Fixture::Small);
    server.wait_live("ret");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let url = url::Url::parse(&url(addr, "ret")).expect("rtsp url");
        let mut session = Session::describe(url, SessionOptions::default())
            .await
            .expect("DESCRIBE");
        let kinds: Vec<(String, String)> = session
            .streams()
            .iter()
            .map(|s| (s.media().to_owned(), s.encoding_name().to_owned()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("video".to_owned(), "h264".to_owned()),
                ("audio".to_owned(), "mpeg4-generic".to_owned())
            ]
        );
        for i in 0..kinds.len() {
            session
                .setup(
                    i,
                    SetupOptions::default()
                        .transport(Transport::Tcp(TcpTransportOptions::default())),
                )
                .await
                .expect("SETUP");
        }
        match session.streams()[0].parameters() {
            Some(ParametersRef::Video(v)) => {
                assert_eq!(v.pixel_dimensions(), (320, 240));
                assert!(
                    v.rfc6381_codec().starts_with("avc1."),
                    "{}",
                    v.rfc6381_codec()
                );
            }
            other => panic!("no video parameters from the SDP: {other:?}"),
        }
        match session.streams()[1].parameters() {
            Some(ParametersRef::Audio(a)) => assert_eq!(a.rfc6381_codec(), Some("mp4a.40.2")),
            other => panic!("no audio parameters from the SDP: {other:?}"),
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .expect("PLAY")
            .demuxed()
            .expect("demuxed");
        tokio::pin!(playing);
        let (mut video, mut audio, mut keyframes) = (0u32, 0u32, 0u32);
        let mut last = [-1i64; 2];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while video < 60 || audio < 60 {
            let item = tokio::time::timeout_at(deadline, playing.next())
                .await
                .unwrap_or_else(|_| panic!("timed out at {video} video, {audio} audio frames"))
                .expect("session ended early")
                .expect("retina error");
            let (index, ts) = match item {
                CodecItem::VideoFrame(f) => {
                    if video == 0 {
                        assert!(
                            f.is_random_access_point(),
                            "first video frame not a keyframe"
                        );
                    }
                    keyframes += u32::from(f.is_random_access_point());
                    video += 1;
                    assert!(!f.data().is_empty());
                    (0, f.timestamp().elapsed())
                }
                CodecItem::AudioFrame(f) => {
                    audio += 1;
                    assert!(!f.data().is_empty());
                    (1, f.timestamp().elapsed())
                }
                _ => continue,
            };
            // Timelines start at PLAY's rtptime, before every packet of either track.
            assert!(
                ts >= 0,
                "track {index}: timestamp {ts} before the announced start"
            );
            if index == 1 {
                assert!(ts > last[1], "audio timestamp {ts} after {}", last[1]);
            } else {
                // Video carries presentation times, which B-frames reorder by a few frames.
                assert!(
                    ts > last[0] - 90_000 / 2,
                    "video timestamp {ts} after {}",
                    last[0]
                );
            }
            last[index] = last[index].max(ts);
        }
        assert!(keyframes >= 1);
    });
}
