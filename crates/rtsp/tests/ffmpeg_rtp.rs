//! Interop: ffmpeg reads our SDP and decodes our RTP packets (H.264 + AAC, H.265 + Opus), sent
//! over loopback UDP.
//!
//! Skipped when ffmpeg is not installed. The SDP is exactly what `DESCRIBE` returns, except that
//! the `m=` ports (0, negotiated by `SETUP` in RTSP) are replaced by the test's UDP ports.

// The package is ferrocast-rtsp; its dependents know it as `rtsp`, and so does this test.
extern crate ferrocast_rtsp as rtsp;

use bytes::Bytes;
use media::{
    AacConfig, AudioCodec, AvcConfig, Frame, HevcConfig, MediaInfo, OpusConfig, TrackKind,
    VideoCodec,
};
use rtsp::{AacPacketizer, DEFAULT_MTU, H264Packetizer, H265Packetizer, OpusPacketizer};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const IDR_FRAME: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline-idr.avcc-frame");
const ADTS: &[u8] = include_bytes!("../../../testdata/sine-48k.aac");
const HVCC: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-main.hvcc");
const HEVC_IDR_FRAME: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-idr.hvcc-frame");
const OPUS_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.opushead");
const OPUS_PACKET: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.packet");

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

/// What ffmpeg printed and the SDP it was given.
struct Decoded {
    stdout: String,
    stderr: String,
    sdp: String,
    success: bool,
}

impl Decoded {
    /// framecrc lines (`stream_index, dts, pts, duration, size, crc`) of stream `stream`.
    fn frames(&self, stream: &str) -> usize {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(stream))
            .count()
    }
}

/// Lets ffmpeg read the SDP of `info` (ports filled in) and decode 10 video frames to framecrc
/// while `send(socket, video_port, audio_port, pts)` sends the RTP of 25 fps video time `pts`
/// every 10 ms, until ffmpeg exits or 10 s pass. `loglevel` `info` adds the input's stream
/// descriptions (codec, size, channels) to stderr.
fn ffmpeg_decode(
    info: &MediaInfo,
    loglevel: &str,
    mut send: impl FnMut(&UdpSocket, u16, u16, i64),
) -> Decoded {
    let video_port = free_port_pair(0);
    let audio_port = free_port_pair(video_port);
    let sdp = rtsp::describe(info, "ffmpeg interop", "127.0.0.1")
        .replace("m=video 0 ", &format!("m=video {video_port} "))
        .replace("m=audio 0 ", &format!("m=audio {audio_port} "));
    let dir = std::env::temp_dir().join(format!("rtsp-ffmpeg-{}-{video_port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp_path = dir.join("stream.sdp");
    std::fs::write(&sdp_path, &sdp).unwrap();

    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", loglevel])
        .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&sdp_path)
        .args(["-frames:v", "10", "-f", "framecrc", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // ffmpeg binds its ports some time after starting, so keep sending (timestamps moving on)
    // until it has decoded enough or the deadline passes; early packets may be lost.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pts = 0i64;
    while Instant::now() < deadline {
        send(&sock, video_port, audio_port, pts);
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
    let _ = std::fs::remove_dir_all(&dir);
    Decoded {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        sdp,
        success: out.status.success(),
    }
}

#[test]
fn ffmpeg_decodes_sdp_and_rtp() {
    if !tool("ffmpeg") {
        return;
    }
    let avc = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
    let (aac, aus) = aac_input();
    let info = MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(avc.clone())),
        audio: Some(AudioCodec::Aac(aac.clone())),
        framerate: None,
    };
    let mut video = H264Packetizer::new(96, 0x1111, DEFAULT_MTU);
    let mut audio = AacPacketizer::new(97, 0x2222, &aac, DEFAULT_MTU);
    let mut audio_pts = 0i64;
    let mut au = aus.iter().cycle();
    let out = ffmpeg_decode(&info, "error", |sock, video_port, audio_port, pts| {
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
    });
    let Decoded {
        stdout,
        stderr,
        sdp,
        success,
    } = &out;
    assert!(success, "ffmpeg failed: {stderr}\nSDP:\n{sdp}");
    assert!(
        stdout.contains("#dimensions 0: 320x240"),
        "video not 320x240: {stdout}"
    );
    assert!(stdout.contains("#sample_rate 1: 48000"), "{stdout}");
    assert_eq!(out.frames("0,"), 10, "{stdout}");
    assert!(out.frames("1,") > 0, "no audio decoded: {stdout}");
    assert!(
        !stderr.contains("rror"),
        "decoder complained: {stderr}\n{stdout}"
    );
}

#[test]
fn ffmpeg_decodes_h265_and_opus() {
    if !tool("ffmpeg") {
        return;
    }
    let hevc = HevcConfig::parse(Bytes::from_static(HVCC)).unwrap();
    let opus = OpusConfig::parse(Bytes::from_static(OPUS_HEAD)).unwrap();
    let info = MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H265(hevc.clone())),
        audio: Some(AudioCodec::Opus(opus)),
        framerate: None,
    };
    let samples = media::opus::packet_samples(OPUS_PACKET).unwrap();
    let opus_ticks = i64::from(samples) * 90_000 / 48_000;
    let mut video = H265Packetizer::new(96, 0x3333, DEFAULT_MTU);
    let mut audio = OpusPacketizer::new(97, 0x4444, DEFAULT_MTU);
    let mut audio_pts = 0i64;
    let out = ffmpeg_decode(&info, "info", |sock, video_port, audio_port, pts| {
        // Every frame is the same 1280x720 IDR, which gets VPS, SPS and PPS in front and is
        // fragmented into 16 FUs.
        let frame = Frame {
            track: TrackKind::Video,
            dts: pts,
            pts,
            keyframe: true,
            payload: Bytes::from_static(HEVC_IDR_FRAME),
        };
        video.push(&frame, &hevc).unwrap();
        while let Some(p) = video.pull() {
            let _ = sock.send_to(&p, ("127.0.0.1", video_port));
        }
        // The same 20 ms Opus packet up to the video time.
        while audio_pts <= pts {
            let f = Frame {
                track: TrackKind::Audio,
                dts: audio_pts,
                pts: audio_pts,
                keyframe: true,
                payload: Bytes::from_static(OPUS_PACKET),
            };
            audio.push(&f).unwrap();
            while let Some(p) = audio.pull() {
                let _ = sock.send_to(&p, ("127.0.0.1", audio_port));
            }
            audio_pts += opus_ticks;
        }
    });
    let Decoded {
        stdout,
        stderr,
        sdp,
        success,
    } = &out;
    assert!(success, "ffmpeg failed: {stderr}\nSDP:\n{sdp}");
    // The SDP alone tells ffmpeg the codecs and, from sprop-sps, the picture size.
    assert!(
        stderr.contains("Video: hevc (Main)") && stderr.contains("Audio: opus, 48000 Hz, stereo"),
        "input streams: {stderr}\nSDP:\n{sdp}"
    );
    assert!(
        stdout.contains("#dimensions 0: 1280x720"),
        "video not 1280x720: {stdout}"
    );
    assert!(stdout.contains("#sample_rate 1: 48000"), "{stdout}");
    assert!(
        stdout.contains("#channel_layout_name 1: stereo"),
        "{stdout}"
    );
    assert_eq!(out.frames("0,"), 10, "{stdout}");
    assert!(out.frames("1,") > 0, "no audio decoded: {stdout}");
    assert!(
        !stderr.contains("rror"),
        "decoder complained: {stderr}\n{stdout}\nSDP:\n{sdp}"
    );
}
