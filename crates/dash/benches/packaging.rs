//! CPU cost of CMAF packaging (DASH, and HLS over the same segments in 250 ms LL-HLS parts) for
//! one 2.5 Mbit/s 720p30 + 128 kbit/s AAC stream; the time from a keyframe's arrival to its
//! segment being listed in the rendered MPD, and from the frame that closes a part to that
//! part being listed in a rendered LL-HLS playlist.
//!
//! `cargo bench -p ferrocast-dash --bench packaging` (std only, release build). Payload bytes are
//! synthetic but sized like x264 output at 2.5 Mbit/s (keyframes ~8x a P-frame); packaging
//! cost depends on sizes and counts, not on the bits.

// A benchmark reports on the terminal.
#![allow(clippy::print_stdout)]

// The package is ferrocast-dash; its dependents know it as `dash`, and so does this bench.
extern crate ferrocast_dash as dash;

use bytes::Bytes;
use dash::{HlsRequest, HlsTiming, Manifest, MpdTiming, Output, Segmenter};
use hub::Event;
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-1280x720-high.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

fn main() {
    let secs = 600i64; // ten minutes of media
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
    let key = Bytes::from(vec![0x65u8; 8 * p]);
    let inter = Bytes::from(vec![0x41u8; p]);
    let aac = Bytes::from(vec![0x21u8; 128_000 / 8 * 1024 / 48_000]);
    let mut frames = Vec::new();
    for i in 0..secs * 30 {
        let dts = i * 3000;
        frames.push(Frame {
            track: TrackKind::Video,
            dts,
            pts: dts + 6000,
            keyframe: i % 60 == 0,
            payload: if i % 60 == 0 {
                key.clone()
            } else {
                inter.clone()
            },
        });
    }
    for n in 0..secs * 48_000 / 1024 {
        let dts = n * 1024 * 90_000 / 48_000;
        frames.push(Frame {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            payload: aac.clone(),
        });
    }
    frames.sort_by_key(|f| f.dts);
    let timing = MpdTiming {
        minimum_update_period: Duration::from_secs(2),
        suggested_presentation_delay: Duration::from_secs(6),
        min_buffer_time: Duration::from_secs(2),
        part_duration: Some(Duration::from_millis(250)),
    };

    let hls = HlsTiming {
        segment_duration: Duration::from_secs(2),
        part_duration: Some(Duration::from_millis(250)),
    };
    for round in 0..3 {
        let mut seg = Segmenter::new(Duration::from_secs(2), 32 << 20, 1)
            .with_parts(Duration::from_millis(250));
        let mut manifest = Manifest::new(6, 3);
        let mut latencies = Vec::new();
        let mut part_latencies = Vec::new();
        let mut playlists = 0usize;
        let mut bytes = 0usize;
        let mut rendered = 0usize;
        let start = Instant::now();
        let mut apply = |out: Vec<Output>, manifest: &mut Manifest| {
            let listed = out.iter().any(|o| matches!(o, Output::Segment(_)));
            for o in out {
                match o {
                    Output::Period(p) => manifest.start_period(p, 0),
                    Output::Chunk(c) => manifest.push_chunk(c),
                    Output::Part(p) => manifest.push_part(p, 1_000),
                    Output::Segment(s) => {
                        bytes += s.data.iter().map(|b| b.len()).sum::<usize>();
                        manifest.push(s, 1_000);
                    }
                }
            }
            if listed {
                // What the service does on every change: render the MPD once.
                rendered += manifest
                    .render_body(&timing, dash::MpdClient::Generic)
                    .map_or(0, |t| t.len());
            }
            listed
        };
        apply(
            seg.push(Event::Tracks {
                info: info.clone(),
                session: 1,
            }),
            &mut manifest,
        );
        for f in &frames {
            let is_key = f.keyframe && f.track == TrackKind::Video;
            let t0 = Instant::now();
            let out = seg.push(Event::Frame(f.clone()));
            let video_part = out
                .iter()
                .any(|o| matches!(o, Output::Part(p) if p.track == TrackKind::Video));
            let listed = apply(out, &mut manifest);
            if is_key && listed {
                latencies.push(t0.elapsed());
            }
            if video_part {
                // What a held blocking reload does once the part is in: render the playlist.
                let text = manifest.hls_media(TrackKind::Video, &hls, &HlsRequest::default());
                playlists += text.map_or(0, |t| t.len());
                part_latencies.push(t0.elapsed());
            }
        }
        let cpu = start.elapsed();
        latencies.sort();
        part_latencies.sort();
        let pct = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
        println!(
            "round {round}: {secs} s of 2.5 Mbit/s 720p30 + AAC packaged in {:.1} ms \
             = {:.3}% of one core; {} MB of segments, {} KB of MPD and {} KB of playlist renders; \
             keyframe -> listed in MPD: median {:?}, p99 {:?}, max {:?} ({} cuts); \
             part closed -> listed in LL-HLS playlist: median {:?}, p99 {:?}, max {:?} ({} parts)",
            cpu.as_secs_f64() * 1000.0,
            cpu.as_secs_f64() / secs as f64 * 100.0,
            bytes >> 20,
            rendered >> 10,
            playlists >> 10,
            pct(&latencies, 0.5),
            pct(&latencies, 0.99),
            latencies[latencies.len() - 1],
            latencies.len(),
            pct(&part_latencies, 0.5),
            pct(&part_latencies, 0.99),
            part_latencies[part_latencies.len() - 1],
            part_latencies.len()
        );
    }
}
