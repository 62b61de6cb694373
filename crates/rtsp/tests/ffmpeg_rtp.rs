//! Interop: ffmpeg reads our SDP and decodes our RTP packets, sent over loopback UDP.
//!
//! Skipped when ffmpeg is not installed. The SDP is exactly what `DESCRIBE` returns, except that
//! the `m=` ports (0, negotiated by `SETUP` in RTSP) are replaced by the test's UDP ports.

// The package is ferrocast-rtsp; its dependents know it as `rtsp`, and so does this test.
extern crate ferrocast_rtsp as rtsp;

use bytes::Bytes;
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use rtsp::{AacPacketizer, DEFAULT_MTU, H264Packetizer};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const IDR_FRAME: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline-idr.avcc-frame");
const ADTS: &[u8] = include_bytes!("../../../testdata/sine-48k.aac");

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An even port whose odd neighbour (ffmpeg's RTCP port) is free too.
fn free_port_pair(exclude: u16) -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        if port.is_multiple_of(2)
            && port != exclude
            && port + 1 != exclude
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// Splits the ADTS file into raw AUs and reads its config.
fn aac_input() -> (AacConfig, Vec<Bytes>) {
    let mut rest = ADTS;
    let mut config = None;
    let mut aus = Vec::new();
    while !rest.is_empty() {
        let (cfg, frame_len, header_len) = AacConfig::from_adts(rest).unwrap();
        aus.push(Bytes::copy_from_slice(&rest[header_len..frame_len]));
        rest = &rest[frame_len..];
        config = Some(cfg);
    }
    (config.unwrap(), aus)
}

#[test]
fn ffmpeg_decodes_sdp_and_rtp() {
    if !tool("ffmpeg") {
        return;
    }
    let avc = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
    let (aac, aus) = aac_input();
    let info = MediaInfo {
        video: Some(VideoCodec::H264(avc.clone())),
        audio: Some(AudioCodec::Aac(aac.clone())),
        framerate: None,
    };
    let video_port = free_port_pair(0);
    let audio_port = free_port_pair(video_port);
    let sdp = rtsp::describe(&info, "ffmpeg interop", "127.0.0.1")
        .replace("m=video 0 ", &format!("m=video {video_port} "))
        .replace("m=audio 0 ", &format!("m=audio {audio_port} "));
    let dir = std::env::temp_dir().join(format!("rtsp-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp_path = dir.join("stream.sdp");
    std::fs::write(&sdp_path, &sdp).unwrap();

    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&sdp_path)
        .args(["-frames:v", "10", "-f", "framecrc", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // ffmpeg binds its ports some time after starting, so keep sending (timestamps moving on)
    // until it has decoded enough or the deadline passes; early packets may be lost.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut video = H264Packetizer::new(96, 0x1111, DEFAULT_MTU);
    let mut audio = AacPacketizer::new(97, 0x2222, &aac, DEFAULT_MTU);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pts = 0i64;
    let mut audio_pts = 0i64;
    let mut au = aus.iter().cycle();
    while Instant::now() < deadline {
        // Every frame is the same IDR (the only coded frame in testdata), 25 fps.
        let frame = Frame {
            track: TrackKind::Video,
            dts: pts,
            pts,
            keyframe: true,
            payload: Bytes::from_static(IDR_FRAME),
        };
        video.push(&frame, &avc).unwrap();
        while let Some(p) = video.pull() {
            let _ = sock.send_to(&p, ("127.0.0.1", video_port));
        }
        // Audio up to the video time: 1024 samples at 48 kHz = 1920 ticks.
        while audio_pts <= pts {
            let f = Frame {
                track: TrackKind::Audio,
                dts: audio_pts,
                pts: audio_pts,
                keyframe: true,
                payload: au.next().unwrap().clone(),
            };
            audio.push(&f).unwrap();
            while let Some(p) = audio.pull() {
                let _ = sock.send_to(&p, ("127.0.0.1", audio_port));
            }
            audio_pts += 1920;
        }
        pts += 3600;
        std::thread::sleep(Duration::from_millis(10));
        // framecrc output for 10 frames is far below the pipe buffer, so ffmpeg never blocks.
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "ffmpeg failed: {stderr}\nSDP:\n{sdp}");
    // framecrc: one line per decoded frame, `stream_index, dts, pts, duration, size, crc`.
    let frames = |stream: &str| {
        stdout
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(stream))
            .count()
    };
    assert!(
        stdout.contains("#dimensions 0: 320x240"),
        "video not 320x240: {stdout}"
    );
    assert!(stdout.contains("#sample_rate 1: 48000"), "{stdout}");
    assert_eq!(frames("0,"), 10, "{stdout}");
    assert!(frames("1,") > 0, "no audio decoded: {stdout}");
    assert!(
        !stderr.contains("rror"),
        "decoder complained: {stderr}\n{stdout}"
    );
}
