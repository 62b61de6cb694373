use crate::*;
use bytes::Bytes;
use hub::{Event, Hub, HubConfig, PublisherMeta};
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-44k-mono.asc");
const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");
/// 25 fps.
const FRAME: i64 = 3600;

fn info() -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).unwrap(),
        )),
        audio: Some(AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).unwrap(),
        )),
        framerate: Some(25.0),
    }
}

/// Synthetic video frame `i` (AVCC with one slice NAL), keyframe every `gop` frames.
fn video(i: i64, gop: i64, base: i64) -> Frame {
    let key = i % gop == 0;
    let nal: &'static [u8] = if key {
        &[0, 0, 0, 2, 0x65, 0x88]
    } else {
        &[0, 0, 0, 2, 0x41, 0x9a]
    };
    Frame {
        track: TrackKind::Video,
        dts: base + i * FRAME,
        pts: base + i * FRAME + FRAME,
        keyframe: key,
        payload: Bytes::from_static(nal),
    }
}

fn audio(dts: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts,
        pts: dts,
        keyframe: true,
        payload: Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
    }
}

fn tracks(session: u64) -> Event {
    Event::Tracks {
        info: Arc::new(info()),
        session,
    }
}

fn ticks(d: Duration) -> i64 {
    (d.as_nanos() * 9 / 100_000) as i64
}

/// First PES after the tables starts with a random-access video packet.
fn starts_with_keyframe(ts: &[u8]) -> bool {
    let pid = |p: &[u8]| u16::from_be_bytes([p[1] & 0x1f, p[2]]);
    let pkts: Vec<&[u8]> = ts.chunks(188).collect();
    pid(pkts[0]) == 0
        && pid(pkts[1]) == mpegts::PMT_PID
        && pid(pkts[2]) == mpegts::VIDEO_PID
        && pkts[2][3] & 0x20 != 0
        && pkts[2][5] & 0x40 != 0
}

#[test]
fn segmenter_cuts_only_on_keyframes_and_durations_sum_to_span() {
    let mut seg = Segmenter::new(Duration::from_secs(2), 1 << 20);
    let mut out = Vec::new();
    out.extend(seg.push(tracks(1)));
    // GOP of 30 frames = 1.2 s: cuts must wait for the keyframe at 2.4 s.
    for i in 0..150 {
        out.extend(seg.push(Event::Frame(video(i, 30, 0))));
        out.extend(seg.push(Event::Frame(audio(i * FRAME))));
    }
    out.extend(seg.push(Event::End));
    assert_eq!(out.len(), 3);
    for (n, s) in out.iter().enumerate() {
        assert_eq!(s.seq, n as u64);
        assert!(starts_with_keyframe(&s.data));
        assert_eq!(s.data.len() % 188, 0);
        assert!(!s.discontinuity);
    }
    assert_eq!(out[0].duration, Duration::from_millis(2400));
    assert_eq!(out[1].duration, Duration::from_millis(2400));
    let total: i64 = out.iter().map(|s| ticks(s.duration)).sum();
    assert_eq!(total, 150 * FRAME);
    assert_eq!(seg.mux_errors(), 0);
}

#[test]
fn segmenter_drops_frames_before_the_first_keyframe() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20);
    seg.push(tracks(1));
    for i in 1..10 {
        assert!(seg.push(Event::Frame(video(i, 50, 0))).is_none());
    }
    assert!(seg.push(Event::End).is_none());
}

#[test]
fn segmenter_audio_only_cuts_at_any_frame() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20);
    let info = MediaInfo {
        video: None,
        ..info()
    };
    seg.push(Event::Tracks {
        info: Arc::new(info),
        session: 1,
    });
    let mut out = Vec::new();
    for i in 0..100 {
        out.extend(seg.push(Event::Frame(audio(i * 2090))));
    }
    // 2.3 s of audio: two complete segments, the rest still open.
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|s| s.duration >= Duration::from_secs(1)));
    // Each segment starts with tables; the audio PES carries the PCR.
    assert!(out.iter().all(|s| s.data[1] & 0x1f == 0 && s.data[2] == 0));
}

#[test]
fn segmenter_marks_republish_and_clock_jumps_as_discontinuities() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20);
    let mut out = Vec::new();
    out.extend(seg.push(tracks(1)));
    for i in 0..50 {
        out.extend(seg.push(Event::Frame(video(i, 25, 900_000))));
    }
    out.extend(seg.push(Event::End));
    // Republish restarts the clock at 0.
    out.extend(seg.push(tracks(2)));
    for i in 0..50 {
        out.extend(seg.push(Event::Frame(video(i, 25, 0))));
    }
    // The same session's clock jumps back.
    for i in 0..50 {
        out.extend(seg.push(Event::Frame(video(i, 25, -500_000))));
    }
    out.extend(seg.push(Event::End));
    let flags: Vec<bool> = out.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, [false, false, true, false, true, false]);
    assert!(out.iter().all(|s| s.duration == Duration::from_secs(1)));
    // Same session and same tracks again: nothing happens.
    assert!(seg.push(tracks(2)).is_none());
}

#[test]
fn segmenter_bounds_segments_without_keyframes() {
    let mut seg = Segmenter::new(Duration::from_secs(2), 4096);
    seg.push(tracks(1));
    let mut out = Vec::new();
    for i in 0..500 {
        out.extend(seg.push(Event::Frame(video(i, 1_000_000, 0))));
    }
    assert!(out.len() > 10);
    assert!(out.iter().all(|s| s.data.len() <= 4096 + 188 * 3));
}

fn segment(seq: u64, ms: u64, discontinuity: bool) -> Segment {
    Segment {
        program_ms: None,
        start_pts: 0,
        seq,
        duration: Duration::from_millis(ms),
        discontinuity,
        data: Bytes::from(vec![seq as u8; 188]),
    }
}

/// Accepts the rendered `String` and the served `Bytes` alike.
fn parse(text: impl AsRef<[u8]>) -> m3u8_rs::MediaPlaylist {
    let text = text.as_ref();
    match m3u8_rs::parse_playlist_res(text) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!(
            "not a media playlist: {other:?}\n{}",
            String::from_utf8_lossy(text)
        ),
    }
}

#[test]
fn playlist_slides_and_keeps_expired_segments_briefly() {
    let mut p = MediaPlaylist::new(3, 2);
    assert!(p.render().is_none());
    for seq in 0..8 {
        p.push(segment(seq, 2000, false));
    }
    let text = p.render().unwrap();
    let parsed = parse(&text);
    assert_eq!(parsed.media_sequence, 5);
    assert_eq!(parsed.target_duration, 2);
    let uris: Vec<&str> = parsed.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["5.ts", "6.ts", "7.ts"]);
    assert!(parsed.segments.iter().all(|s| s.duration == 2.0));
    assert!(!parsed.end_list);
    assert!(p.segment(3).is_some() && p.segment(4).is_some());
    assert!(p.segment(2).is_none() && p.segment(8).is_none());
    assert_eq!(p.len(), 5);
}

#[test]
fn playlist_target_duration_never_decreases_and_discontinuity_sequence_counts() {
    let mut p = MediaPlaylist::new(2, 0);
    p.push(segment(0, 2000, false));
    p.push(segment(1, 4200, false));
    p.push(segment(2, 1500, true));
    let text = p.render().unwrap();
    assert!(
        text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:1.500,\n2.ts"),
        "{text}"
    );
    assert!(!text.contains("DISCONTINUITY-SEQUENCE"));
    p.push(segment(3, 2000, false));
    p.push(segment(4, 2000, false));
    p.end();
    let text = p.render().unwrap();
    let parsed = parse(&text);
    // 4.2 s rounds to 4 (RFC 8216 4.3.3.1 compares EXTINF rounded to the nearest integer).
    assert_eq!(parsed.target_duration, 4);
    assert_eq!(parsed.discontinuity_sequence, 1);
    assert_eq!(parsed.media_sequence, 3);
    assert!(parsed.end_list);
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"));
}

fn meta() -> PublisherMeta {
    PublisherMeta {
        protocol: "test",
        ..PublisherMeta::default()
    }
}

async fn write_frames(
    publisher: &hub::Publisher,
    range: std::ops::Range<i64>,
    gop: i64,
    base: i64,
) {
    for i in range {
        publisher.write(video(i, gop, base));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn config() -> HlsConfig {
    HlsConfig {
        segment_duration: Duration::from_secs(1),
        window: 3,
        end_grace: Duration::from_secs(10),
        linger: Duration::from_secs(60),
        ..HlsConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn service_segments_slides_republishes_ends_and_forgets() {
    let hub = Hub::new(HubConfig::default());
    let hls = HlsService::new(hub.clone(), config());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(hls.clone().run(shutdown.clone()));
    tokio::task::yield_now().await;

    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..25, 25, 0).await;
    assert!(hls.playlist("cam").is_none(), "no segment complete yet");
    write_frames(&publisher, 25..26, 25, 0).await;
    let first = parse(
        hls.playlist("cam")
            .expect("first playlist after one segment"),
    );
    assert_eq!(first.segments.len(), 1);
    assert_eq!(first.segments[0].duration, 1.0);
    // Numbering starts from the wall clock so a later playlist never reuses a URI.
    let base = first.media_sequence;
    assert!(base > 0);
    assert!(starts_with_keyframe(&hls.segment("cam", base).unwrap()));

    write_frames(&publisher, 26..150, 25, 0).await;
    let p = parse(hls.playlist("cam").unwrap());
    assert_eq!(p.media_sequence, base + 2);
    assert_eq!(p.segments.len(), 3);
    assert!(
        hls.segment("cam", base).is_some(),
        "expired but still fetchable"
    );

    // Republish within the grace period with the clock restarting.
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..51, 25, 0).await;
    let text = String::from_utf8(hls.playlist("cam").unwrap().to_vec()).unwrap();
    let p = parse(&text);
    assert!(!p.end_list);
    let last_two: Vec<bool> = p.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(last_two, [false, true, false], "{text}");
    // The segment closed by the End gets its estimated duration: exactly 1 s here.
    assert!(p.segments.iter().all(|s| s.duration == 1.0), "{text}");

    write_frames(&publisher, 51..151, 25, 0).await;
    let p = parse(hls.playlist("cam").unwrap());
    assert_eq!(p.discontinuity_sequence, 1);

    // Gone: ENDLIST after the grace, removal after the linger.
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!parse(hls.playlist("cam").unwrap()).end_list);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = parse(hls.playlist("cam").unwrap());
    assert!(ended.end_list);
    let stats = hls.stats("cam").unwrap();
    assert!(stats.ended && stats.segments == 6 && stats.target_duration == 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(hls.playlist("cam").is_none());
    assert!(hls.segment("cam", base + 5).is_none());
    assert!(hls.codes().is_empty());

    shutdown.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn finish_ends_every_playlist_at_once_and_keeps_serving_it() {
    let hub = Hub::new(HubConfig::default());
    let hls = HlsService::new(hub.clone(), config());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(hls.clone().run(shutdown.clone()));
    tokio::task::yield_now().await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..40, 25, 0).await;
    let before = parse(hls.playlist("cam").unwrap());
    assert_eq!(before.segments.len(), 1);
    assert!(!before.end_list);

    // The publisher is still there: shutdown must not wait for end_grace (10 s).
    hls.finish();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ended = parse(hls.playlist("cam").unwrap());
    assert!(ended.end_list, "ENDLIST right after finish");
    assert_eq!(
        ended.segments.len(),
        2,
        "the open segment is flushed, not lost"
    );
    write_frames(&publisher, 40..100, 25, 0).await;
    assert_eq!(
        parse(hls.playlist("cam").unwrap()).segments.len(),
        2,
        "nothing is added after ENDLIST"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(hls.playlist("cam").is_some(), "served until the shutdown");
    shutdown.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn service_comes_back_after_endlist_and_respects_the_predicate() {
    let hub = Hub::new(HubConfig::default());
    let hls = HlsService::new(hub.clone(), config());
    hls.set_enabled(Arc::new(|code: &str| code != "off"));
    // A stream only relayed here (a cluster edge's pull) is its origin's to package.
    hub.set_relay(Arc::new(|code: &str| code == "relayed"));
    let shutdown = CancellationToken::new();
    // Published before run: found by the startup resync.
    let publisher = hub.publish("cam", meta()).unwrap();
    let off = hub.publish("off", meta()).unwrap();
    off.announce(info());
    let relayed = hub.publish("relayed", meta()).unwrap();
    relayed.announce(info());
    let run = tokio::spawn(hls.clone().run(shutdown.clone()));
    tokio::task::yield_now().await;
    publisher.announce(info());
    write_frames(&publisher, 0..51, 25, 0).await;
    for i in 0..51 {
        off.write(video(i, 25, 0));
        relayed.write(video(i, 25, 0));
    }
    assert_eq!(hls.codes(), ["cam"]);
    let base = parse(hls.playlist("cam").unwrap()).media_sequence;
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(parse(hls.playlist("cam").unwrap()).end_list);

    // Back during the linger: a fresh playlist without ENDLIST, numbering continues.
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..26, 25, 0).await;
    let p = parse(hls.playlist("cam").unwrap());
    assert!(!p.end_list);
    // 51 frames made segments 0-1, the End closed 2.
    assert_eq!(p.media_sequence, base + 3);
    assert_eq!(p.segments.len(), 1);

    // Shutdown stops tasks while a publisher is still live.
    shutdown.cancel();
    run.await.unwrap();
    drop(publisher);
}

/// Minimal FLV reader, as in the mpegts tests (rtmp::flv is another crate's concern).
fn flv_frames(offset_ms: i64) -> (MediaInfo, Vec<Frame>) {
    let u24 = |b: &[u8]| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
    let mut pos = 13;
    let mut info = MediaInfo::default();
    let mut frames = Vec::new();
    while pos + 11 <= FLV.len() {
        let len = u24(&FLV[pos + 1..]);
        let ts = u24(&FLV[pos + 4..]) as i64 + offset_ms;
        let body = Bytes::from_static(&FLV[pos + 11..pos + 11 + len]);
        let kind = FLV[pos];
        pos += 15 + len;
        match (kind, body.get(1)) {
            (9, Some(0)) => {
                info.video = Some(VideoCodec::H264(AvcConfig::parse(body.slice(5..)).unwrap()))
            }
            (9, Some(1)) => {
                let cts = ((u24(&body[2..]) as i32) << 8 >> 8) as i64;
                frames.push(Frame {
                    track: TrackKind::Video,
                    dts: media::ms_to_ticks(ts),
                    pts: media::ms_to_ticks(ts + cts),
                    keyframe: body[0] >> 4 == 1,
                    payload: body.slice(5..),
                });
            }
            (8, Some(0)) => {
                info.audio = Some(AudioCodec::Aac(AacConfig::parse(body.slice(2..)).unwrap()))
            }
            (8, Some(1)) => frames.push(Frame {
                track: TrackKind::Audio,
                dts: media::ms_to_ticks(ts),
                pts: media::ms_to_ticks(ts),
                keyframe: true,
                payload: body.slice(2..),
            }),
            _ => {}
        }
    }
    (info, frames)
}

#[test]
// A skipped external check says so.
#[allow(clippy::print_stderr)]
fn ffprobe_accepts_a_real_segment() {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("note: ffprobe not on PATH; skipping the external check");
        return;
    }
    let (info, mut frames) = flv_frames(0);
    frames.extend(flv_frames(1100).1);
    frames.extend(flv_frames(2200).1);
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20);
    let mut out = Vec::new();
    out.extend(seg.push(Event::Tracks {
        info: Arc::new(info),
        session: 1,
    }));
    for f in frames {
        out.extend(seg.push(Event::Frame(f)));
    }
    out.extend(seg.push(Event::End));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].duration, Duration::from_millis(1100));
    let path = std::env::temp_dir().join(format!("ferrocast-hls-{}-1.ts", std::process::id()));
    std::fs::write(&path, &out[1].data).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-of",
            "compact",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(stdout.contains("codec_name=h264") && stdout.contains("width=320"));
    assert!(stdout.contains("codec_name=aac"));
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let _ = std::fs::remove_file(path);
}

/// PTS of every video PES start in a TS buffer.
fn video_pts(ts: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    for pkt in ts.chunks(188) {
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        if pid != mpegts::VIDEO_PID || pkt[1] & 0x40 == 0 {
            continue;
        }
        let mut pos = 4;
        if pkt[3] & 0x20 != 0 {
            pos += 1 + usize::from(pkt[4]);
        }
        let pes = &pkt[pos..];
        let p = &pes[9..14];
        let pts = (i64::from(p[0] & 0x0e) << 29)
            | (i64::from(p[1]) << 22)
            | (i64::from(p[2] & 0xfe) << 14)
            | (i64::from(p[3]) << 7)
            | (i64::from(p[4]) >> 1);
        out.push(pts);
    }
    out
}

#[test]
fn republish_keeps_the_output_timeline_continuous() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20);
    let mut segments = Vec::new();
    let mut feed = |seg: &mut Segmenter, ev: Event| {
        if let Some(s) = seg.push(ev) {
            segments.push(s);
        }
    };
    feed(
        &mut seg,
        Event::Tracks {
            info: Arc::new(info()),
            session: 1,
        },
    );
    // 4 s of the first publisher, starting late in its clock.
    for i in 0..100 {
        feed(&mut seg, Event::Frame(video(i, 25, 90_000 * 50)));
    }
    feed(&mut seg, Event::End);
    // The second publisher's clock starts at 0.
    feed(
        &mut seg,
        Event::Tracks {
            info: Arc::new(info()),
            session: 2,
        },
    );
    for i in 0..51 {
        feed(&mut seg, Event::Frame(video(i, 25, 0)));
    }
    let pts: Vec<i64> = segments.iter().flat_map(|s| video_pts(&s.data)).collect();
    assert!(segments.iter().any(|s| s.discontinuity));
    assert_eq!(pts.len(), 150);
    assert!(
        pts.windows(2).all(|w| w[1] == w[0] + FRAME),
        "PTS continue frame by frame across the republish"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_forgets_the_playlist_and_refresh_restarts_a_live_stream() {
    let hub = Hub::new(HubConfig::default());
    let hls = HlsService::new(hub.clone(), config());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(hls.clone().run(shutdown.clone()));
    tokio::task::yield_now().await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..51, 25, 0).await;
    assert!(hls.playlist("cam").is_some());

    hls.stop("cam");
    assert!(hls.playlist("cam").is_none());
    write_frames(&publisher, 51..102, 25, 0).await;
    assert!(hls.playlist("cam").is_none(), "a stopped stream stays off");

    hls.refresh("cam");
    write_frames(&publisher, 102..153, 25, 0).await;
    assert!(hls.playlist("cam").is_some(), "refresh started a new task");

    shutdown.cancel();
    run.await.unwrap();
}

/// Continuity counters per PID of `ts`, checked across everything seen before (`last`):
/// returns the breaks as (packet index, pid, expected, found).
fn cc_breaks(ts: &[u8], last: &mut HashMap<u16, u8>) -> Vec<(usize, u16, u8, u8)> {
    let mut breaks = Vec::new();
    for (i, p) in ts.chunks(188).enumerate() {
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        // 13818-1 2.4.3.3: the counter advances only with a payload.
        if p[3] & 0x10 == 0 {
            continue;
        }
        let cc = p[3] & 0x0f;
        if let Some(prev) = last.insert(pid, cc) {
            let expected = (prev + 1) & 0x0f;
            if cc != expected {
                breaks.push((i, pid, expected, cc));
            }
        }
    }
    breaks
}

/// Strict demuxers (GStreamer's tsdemux) read an HLS stream as one transport stream: the
/// segments, concatenated, must keep every PID's continuity counter running, across keyframe
/// cuts, size cuts and a republish alike.
#[test]
fn consecutive_segments_concatenated_have_continuous_cc_on_every_pid() {
    for max_bytes in [1 << 20, 4 * 1024] {
        let mut seg = Segmenter::new(Duration::from_secs(1), max_bytes);
        let mut out = Vec::new();
        for session in [1, 2] {
            out.extend(seg.push(tracks(session)));
            for i in 0..200 {
                out.extend(seg.push(Event::Frame(video(i, 25, 0))));
                out.extend(seg.push(Event::Frame(audio(i * FRAME))));
            }
            out.extend(seg.push(Event::End));
        }
        assert!(out.len() >= 8, "{} segments", out.len());
        assert!(
            out.iter().any(|s| s.discontinuity),
            "the republish is marked"
        );
        let mut last = HashMap::new();
        for s in &out {
            let breaks = cc_breaks(&s.data, &mut last);
            assert!(
                breaks.is_empty(),
                "segment {} (max_bytes {max_bytes}): CC breaks {breaks:?}",
                s.seq
            );
        }
        for pid in [0, mpegts::PMT_PID, mpegts::VIDEO_PID, mpegts::AUDIO_PID] {
            assert!(last.contains_key(&pid), "pid {pid:#x} never seen");
        }
    }
}

#[test]
fn playlist_dates_every_segment() {
    let mut p = MediaPlaylist::new(6, 0);
    for (seq, disc) in [(0, false), (1, false), (2, true), (3, false)] {
        let mut s = segment(seq, 2000, disc);
        s.program_ms = Some(1_796_400_000_000 + seq as i64 * 2000);
        p.push(s);
    }
    let text = p.render().unwrap();
    let dates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .collect();
    assert_eq!(
        dates,
        [
            "2026-12-04T16:00:00.000Z",
            "2026-12-04T16:00:02.000Z",
            "2026-12-04T16:00:04.000Z",
            "2026-12-04T16:00:06.000Z"
        ],
        "{text}"
    );
    // m3u8-rs reads the dates onto the segments they precede.
    let parsed = parse(&text);
    assert!(
        parsed
            .segments
            .iter()
            .all(|s| s.program_date_time.is_some())
    );
}

/// A rendition starts later than its source (its encoder needs a moment) and at a keyframe
/// in the middle of the source's timeline: its segments take the source's numbers and
/// program dates, so the same number is the same media in both playlists. A segment that
/// starts where no source segment does is left out while the match is sought.
#[tokio::test(start_paused = true)]
async fn a_rendition_numbers_and_dates_its_segments_as_its_source() {
    let hub = Hub::new(HubConfig::default());
    let hls = HlsService::new(hub.clone(), config());
    hls.set_parent(Arc::new(|code: &str| {
        code.strip_suffix("_low").map(str::to_owned)
    }));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(hls.clone().run(shutdown.clone()));
    tokio::task::yield_now().await;

    let source = hub.publish("cam", meta()).unwrap();
    source.announce(info());
    write_frames(&source, 0..75, 25, 0).await;
    // The rendition's first keyframe is the source's frame 50, but arrives with frame 80.
    let rendition = hub.publish("cam_low", meta()).unwrap();
    rendition.announce(info());
    for i in 75..200 {
        source.write(video(i, 25, 0));
        if i >= 80 {
            rendition.write(video(i - 30, 25, 0));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let src = parse(hls.playlist("cam").unwrap());
    let text = String::from_utf8(hls.playlist("cam_low").unwrap().to_vec()).unwrap();
    let low = parse(&text);
    // Source segments start at frames 0, 25, ... 150 (7 closed, the last 3 listed); the
    // rendition's at 50 ... 125 (4 closed): its first is the source's third.
    assert_eq!(low.media_sequence + 1, src.media_sequence, "{text}");
    assert_eq!(low.segments.len(), 3, "{text}");
    for (i, s) in low.segments.iter().enumerate().skip(1) {
        assert_eq!(s.duration, src.segments[i - 1].duration, "{text}");
    }
    assert!(
        hls.segment("cam_low", src.media_sequence - 2).is_some(),
        "the first rendition segment has the source's number"
    );
    assert!(hls.segment("cam_low", src.media_sequence - 3).is_none());
    shutdown.cancel();
    run.await.unwrap();
}

#[test]
fn bandwidth_is_the_peak_and_average_of_held_segments() {
    let mut p = MediaPlaylist::new(3, 2);
    assert_eq!(p.bandwidth(), None);
    // 188 bytes in 1 s and in 0.5 s: 1504 and 3008 bit/s; a 0.1 s flush is not a peak.
    p.push(segment(1, 1000, false));
    p.push(segment(2, 500, false));
    p.push(segment(3, 100, false));
    let (peak, avg) = p.bandwidth().unwrap();
    assert_eq!(peak, 3008);
    assert_eq!(avg, 188 * 8 * 3 * 1000 / 1600);
    let mut with_start = segment(4, 1000, false);
    with_start.start_pts = 90_000;
    p.push(with_start);
    assert_eq!(p.find_start(90_400, 900).map(|f| f.0), Some(4));
    assert_eq!(p.find_start(95_000, 900), None);
}
