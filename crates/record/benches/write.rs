//! Recording write throughput and memory: 2.5 Mbit/s 720p30 + 128 kbit/s AAC muxed to MPEG-TS,
//! then to fragmented MP4, and written to rotated files with their index, as fast as the disk
//! takes it; resident memory after 10 minutes and after 2 (or `FERROCAST_BENCH_HOURS`) hours
//! of media must be the same (nothing grows with a recording's length but its files), with
//! retention keeping the disk use bounded.
//!
//! `cargo bench -p ferrocast-record --bench write` (std only, release build). Payloads are
//! synthetic but sized like x264 output; muxing and writing cost depends on sizes and counts.

// A benchmark reports on the terminal.
#![allow(clippy::print_stdout)]

extern crate ferrocast_record as record;

use bytes::Bytes;
use hub::Event;
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-1280x720-high.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

/// Resident set size now, KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    for format in [record::Format::Ts, record::Format::Mp4] {
        run(format);
    }
}

fn run(format: record::Format) {
    let info = Arc::new(MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(AVCC)).expect("testdata parses"),
        )),
        audio: Some(AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).expect("testdata parses"),
        )),
        framerate: Some(30.0),
    });
    // 2.5 Mbit/s at 30 fps, GOP 60: 59 P-frames of p bytes + 1 keyframe of 8p per 2 s.
    let p = 2_500_000 / 8 * 2 / (59 + 8);
    // A valid AVCC access unit: one NAL of the frame's size.
    let nal = |kind: u8, len: usize| {
        let mut v = Vec::with_capacity(len + 4);
        v.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes());
        v.push(kind);
        v.resize(len + 4, 0x55);
        Bytes::from(v)
    };
    let key = nal(0x65, 8 * p);
    let inter = nal(0x41, p);
    let aac = Bytes::from(vec![0x21u8; 128_000 / 8 * 1024 / 48_000]);

    let root = std::env::temp_dir().join(format!("ferrocast-record-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let settings = record::Settings {
        rotate: Duration::from_secs(600),
        rotate_bytes: 0,
        max_age: None,
        // About 30 minutes of files kept: the disk use stays bounded over two hours.
        max_bytes: 600 << 20,
        schedule: Vec::new(),
        format,
    };
    let mut w = record::writer::Writer::new(root.clone(), "bench", settings);
    w.event(&Event::Tracks { info, session: 1 }, 0)
        .expect("tracks");

    let wall0: i64 = 1_700_000_000_000;
    let mut written: u64 = 0;
    let mut audio_next = 0i64;
    let started = Instant::now();
    let mut rss_10min = 0;
    let mut rss_1h = 0;
    let mut rss_after_warmup = 0;
    // `FERROCAST_BENCH_HOURS=10` records ten hours instead of two (about 10 s a format).
    let hours: i64 = std::env::var("FERROCAST_BENCH_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|h| (1..=100).contains(h))
        .unwrap_or(2);
    let total_secs = hours * 3600;
    for i in 0..total_secs * 30 {
        let ms = i * 1000 / 30;
        let dts = ms * 90;
        let keyframe = i % 60 == 0;
        let payload = if keyframe { key.clone() } else { inter.clone() };
        written += payload.len() as u64;
        let f = Frame {
            track: TrackKind::Video,
            dts,
            pts: dts,
            keyframe,
            payload,
        };
        w.event(&Event::Frame(f), wall0 + ms).expect("video");
        while audio_next <= dts {
            let a = Frame {
                track: TrackKind::Audio,
                dts: audio_next,
                pts: audio_next,
                keyframe: true,
                payload: aac.clone(),
            };
            written += aac.len() as u64;
            w.event(&Event::Frame(a), wall0 + audio_next / 90)
                .expect("audio");
            audio_next += 1024 * 90_000 / 48_000;
        }
        if i == 60 * 30 {
            rss_after_warmup = rss_kib();
        }
        // The stream task hands closed files to observers after every event.
        drop(w.take_done());
        if i == 600 * 30 {
            rss_10min = rss_kib();
        }
        if i == 3600 * 30 {
            rss_1h = rss_kib();
        }
    }
    // Before the close: the close's retention pass reads every index, which the allocator
    // may keep, and says nothing of what recording for two hours cost.
    let rss_end = rss_kib();
    w.close(wall0 + total_secs * 1000).expect("close");
    let took = started.elapsed();
    let files = record::catalog::list(&root, "bench");
    let on_disk: u64 = files.iter().map(|f| f.bytes).sum();
    println!(
        "{}: recorded {} s of 2.5 Mbit/s 720p30 + AAC ({:.0} MiB of payload) in {:.2} s: {:.0}x real time, {:.0} MiB/s of payload",
        format.name(),
        total_secs,
        written as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        total_secs as f64 / took.as_secs_f64(),
        written as f64 / (1 << 20) as f64 / took.as_secs_f64(),
    );
    println!(
        "RSS: {rss_after_warmup} KiB after 1 min, {rss_10min} KiB after 10 min, {rss_1h} KiB after 1 h, {rss_end} KiB after {hours} h of media"
    );
    println!(
        "{} files kept ({:.0} MiB) under a 600 MiB limit",
        files.len(),
        on_disk as f64 / (1 << 20) as f64
    );
    // What a DVR playlist or MPD reload costs to find its window: every kept file's index
    // parsed from disk, or read from the cache of closed files.
    let window = (i64::MIN, i64::MAX);
    let reloads = 200;
    let t = Instant::now();
    for _ in 0..reloads {
        std::hint::black_box(record::catalog::list_range(
            &root, "bench", window.0, window.1,
        ));
    }
    let parsed = t.elapsed() / reloads;
    let cache = record::catalog::IndexCache::new(512);
    let t = Instant::now();
    for _ in 0..reloads {
        std::hint::black_box(record::catalog::list_range_with(
            &root,
            "bench",
            window.0,
            window.1,
            |id| cache.find(&root, "bench", id),
        ));
    }
    let cached = t.elapsed() / reloads;
    println!(
        "finding a DVR window over the {} kept files: {:.2} ms parsing the indexes, {:.3} ms from the index cache",
        files.len(),
        parsed.as_secs_f64() * 1000.0,
        cached.as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(root);
}
