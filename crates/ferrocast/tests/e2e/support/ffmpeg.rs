//! ffmpeg/ffprobe: the tool check, fixtures generated once per run, and typed views of what the
//! clients decoded.

use super::proc::{Finished, run};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Fails the test with a clear message when ffmpeg or ffprobe is missing.
pub fn require_tools() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        for tool in ["ffmpeg", "ffprobe"] {
            let ok = Command::new(tool)
                .arg("-version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!(
                    "`{tool}` is not on PATH (or does not run). The e2e suite drives the real \
                     binary with real ffmpeg/ffprobe clients: run `scripts/test`, which installs \
                     them, or install ffmpeg (it provides both) and run again."
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// ffmpeg 6.1 or newer, which speaks Enhanced RTMP (HEVC, AV1, Opus over RTMP/FLV): the
/// `FERROCAST_FFMPEG_ENHANCED` path, else the static build of PyPI's `imageio-ffmpeg` when
/// Python finds it. `None` skips the test with a note, unless `FERROCAST_REQUIRE_ENHANCED`
/// is set (`scripts/test` installs it and sets both), when a missing one fails it.
pub fn enhanced_ffmpeg() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let path = std::env::var_os("FERROCAST_FFMPEG_ENHANCED")
            .map(PathBuf::from)
            .or_else(|| {
                let out = Command::new("python3")
                    .args([
                        "-c",
                        "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
                    ])
                    .output()
                    .ok()?;
                let p = String::from_utf8(out.stdout).ok()?;
                (out.status.success() && !p.trim().is_empty()).then(|| PathBuf::from(p.trim()))
            })?;
        Command::new(&path)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
            .then_some(path)
    });
    if found.is_none() {
        assert!(
            std::env::var_os("FERROCAST_REQUIRE_ENHANCED").is_none(),
            "FERROCAST_REQUIRE_ENHANCED is set but no Enhanced RTMP ffmpeg was found: set \
             FERROCAST_FFMPEG_ENHANCED or `pip install imageio-ffmpeg` (scripts/test does)"
        );
        eprintln!(
            "note: skipping an Enhanced RTMP test: no ffmpeg >= 6.1 (pip install imageio-ffmpeg)"
        );
    }
    found.clone()
}

/// Media files published by the tests, generated on first use and cached under the cargo
/// target dir (written to a temporary name and renamed, so a cached file is always complete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixture {
    /// 1280x720 30 fps H.264 High (GOP 2 s, ~2.5 Mbit/s) + AAC-LC 48 kHz stereo, 6 s.
    Hd720,
    /// 320x240 30 fps H.264 (GOP 1 s) + AAC-LC 48 kHz stereo, 6 s.
    Small,
    /// 320x240 30 fps H.264 with a 5 s GOP + AAC-LC 48 kHz stereo, 10 s (two GOPs).
    LongGop,
    /// 320x240 30 fps H.264 + AAC, 6.2 s, keyframes at 0, 1, 2, 3, 4.2 and 5.2 s: with 1 s HLS
    /// segments, one segment in six lasts 1.2 s.
    Jitter,
}

/// Bump when a fixture recipe changes so stale cached files are not reused.
const FIXTURE_VERSION: u32 = 1;

impl Fixture {
    /// Frame rate of the video.
    pub const FPS: f64 = 30.0;

    /// Seconds between keyframes.
    pub fn gop_secs(self) -> f64 {
        match self {
            Fixture::Hd720 => 2.0,
            Fixture::Small => 1.0,
            Fixture::LongGop => 5.0,
            Fixture::Jitter => 1.0,
        }
    }

    fn recipe(
        self,
    ) -> (
        &'static str,
        &'static str,
        u32,
        f64,
        &'static [&'static str],
    ) {
        // (file stem, size, gop frames, seconds, extra video args)
        match self {
            Fixture::Hd720 => (
                "hd720",
                "1280x720",
                60,
                6.0,
                &["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k"],
            ),
            Fixture::Small => ("small", "320x240", 30, 6.0, &[]),
            Fixture::LongGop => ("longgop", "320x240", 150, 10.0, &[]),
            Fixture::Jitter => (
                "jitter",
                "320x240",
                1000,
                6.2,
                &["-force_key_frames", "0,1,2,3,4.2,5.2", "-forced-idr", "1"],
            ),
        }
    }

    /// The fixture file, generating it if this run has not yet.
    pub fn path(self) -> PathBuf {
        static CELLS: [OnceLock<PathBuf>; 4] = [const { OnceLock::new() }; 4];
        let cell = &CELLS[self as usize];
        cell.get_or_init(|| generate(self)).clone()
    }
}

fn generate(f: Fixture) -> PathBuf {
    require_tools();
    let (stem, size, gop, secs, extra) = f.recipe();
    let dir = super::scratch_root().join("fixtures");
    std::fs::create_dir_all(&dir).expect("create fixtures dir");
    let path = dir.join(format!("{stem}-v{FIXTURE_VERSION}.flv"));
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!("{stem}.tmp-{}", std::process::id()));
    let gop = gop.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        // Fixed GOP: keyframes exactly every `gop` frames, also across -stream_loop restarts.
        .args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"])
        .args(extra)
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k"])
        .args(["-f", "flv"])
        .arg(&tmp);
    let out = run(&mut cmd, Duration::from_secs(120));
    assert!(
        out.success(),
        "generating fixture {stem} failed ({:?}):\n{}",
        out.status,
        out.stderr
    );
    std::fs::rename(&tmp, &path).expect("rename fixture into place");
    path
}

/// Base ffmpeg command: quiet (errors only), no stdin, no banner.
pub fn ffmpeg() -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"]);
    c
}

/// Base ffprobe command: errors only, JSON output.
pub fn ffprobe() -> Command {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error", "-of", "json"]);
    c
}

/// Command that publishes `fixture` to `url` in real time, looping forever, without re-encoding.
pub fn publish_command(fixture: &Path, url: &str) -> Command {
    let mut c = ffmpeg();
    c.args(["-re", "-stream_loop", "-1", "-i"])
        .arg(fixture)
        .args(["-c", "copy", "-f", "flv", url]);
    c
}

/// `ffprobe -show_streams` of `url`; panics with ffprobe's stderr if it fails.
pub fn streams(url: &str) -> Vec<Value> {
    try_streams(url).unwrap_or_else(|e| panic!("{e}"))
}

/// `ffprobe -show_streams` of `url`, or why it failed.
pub fn try_streams(url: &str) -> Result<Vec<Value>, String> {
    let out = run(
        ffprobe().args(["-show_streams", url]),
        Duration::from_secs(20),
    );
    if !out.success() {
        return Err(format!(
            "ffprobe -show_streams {url} failed ({:?}, after {:?}):\n{}",
            out.status, out.elapsed, out.stderr
        ));
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("ffprobe output is not JSON ({e}):\n{}", out.stdout))?;
    Ok(v["streams"].as_array().cloned().unwrap_or_default())
}

/// The first stream of `codec_type` ("video"/"audio") in ffprobe's `streams`.
pub fn stream_of<'a>(streams: &'a [Value], codec_type: &str) -> &'a Value {
    streams
        .iter()
        .find(|s| s["codec_type"] == codec_type)
        .unwrap_or_else(|| panic!("no {codec_type} stream in {streams:#?}"))
}

/// Result of decoding with `ffmpeg -i URL -t SECS -f null -`.
#[derive(Debug)]
pub struct Decoded {
    pub run: Finished,
    /// Video frames decoded (last `frame=` of `-progress`).
    pub frames: u64,
    /// Output time reached (last `out_time_us=`).
    pub out_time: Duration,
}

impl Decoded {
    /// Asserts a clean run: exit 0 and nothing printed at `-v error`.
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.run.success(),
            "{what}: ffmpeg failed ({:?} after {:?}), stderr:\n{}",
            self.run.status,
            self.run.elapsed,
            self.run.stderr
        );
        assert!(
            self.run.stderr.trim().is_empty(),
            "{what}: ffmpeg printed errors while decoding:\n{}",
            self.run.stderr
        );
    }

    /// Like [`Decoded::assert_clean`], but stderr lines containing one of `benign` are
    /// allowed: transport libraries' own warnings that say nothing about the media.
    pub fn assert_clean_except(&self, what: &str, benign: &[&str]) {
        assert!(
            self.run.success(),
            "{what}: ffmpeg failed ({:?} after {:?}), stderr:\n{}",
            self.run.status,
            self.run.elapsed,
            self.run.stderr
        );
        let errors: Vec<&str> = self
            .run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !benign.iter().any(|b| l.contains(b)))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: ffmpeg printed errors while decoding:\n{}",
            self.run.stderr
        );
    }

    /// Asserts at least `secs` seconds of output and a plausible video frame count for them.
    pub fn assert_duration(&self, what: &str, secs: f64, fps: f64) {
        let min_time = Duration::from_secs_f64(secs * 0.95);
        assert!(
            self.out_time >= min_time,
            "{what}: decoded only {:?} of output, expected ~{secs} s",
            self.out_time
        );
        let min_frames = (secs * fps * 0.9) as u64;
        assert!(
            self.frames >= min_frames,
            "{what}: decoded {} video frames in {secs} s, expected >= {min_frames}",
            self.frames
        );
    }
}

/// Decodes `secs` seconds of video and audio from `url` (both must exist), discarding output.
pub fn decode(url: &str, secs: f64, timeout: Duration) -> Decoded {
    let mut cmd = ffmpeg();
    cmd.args(["-i", url, "-map", "0:v:0", "-map", "0:a:0"])
        .args(["-t", &secs.to_string()])
        .args(["-f", "null", "-", "-progress", "pipe:1", "-nostats"]);
    let run = run(&mut cmd, timeout);
    let (frames, out_time) = parse_progress(&run.stdout);
    Decoded {
        run,
        frames,
        out_time,
    }
}

/// Last `frame=` and `out_time_us=` of an ffmpeg `-progress` report.
pub fn parse_progress(text: &str) -> (u64, Duration) {
    let mut frames = 0;
    let mut out_us = 0u64;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("frame=") {
            frames = v.trim().parse().unwrap_or(frames);
        } else if let Some(v) = line.strip_prefix("out_time_us=") {
            out_us = v.trim().parse().unwrap_or(out_us);
        }
    }
    (frames, Duration::from_micros(out_us))
}

/// One packet as `ffprobe -show_packets` reports it.
#[derive(Clone, Debug)]
pub struct Packet {
    pub codec_type: String,
    pub stream_index: u64,
    pub dts: Option<f64>,
    pub key: bool,
}

/// `ffprobe -show_packets -read_intervals INTERVALS [-select_streams SEL] URL`.
pub fn packets(url: &str, intervals: &str, select: Option<&str>) -> (Finished, Vec<Packet>) {
    let mut cmd = ffprobe();
    cmd.args(["-show_packets", "-read_intervals", intervals]);
    if let Some(sel) = select {
        cmd.args(["-select_streams", sel]);
    }
    cmd.arg(url);
    let out = run(&mut cmd, Duration::from_secs(30));
    let packets = serde_json::from_str::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["packets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| Packet {
            codec_type: p["codec_type"].as_str().unwrap_or("").to_owned(),
            stream_index: p["stream_index"].as_u64().unwrap_or(u64::MAX),
            dts: p["dts_time"].as_str().and_then(|s| s.parse().ok()),
            key: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
        })
        .collect();
    (out, packets)
}

/// Asserts that decode timestamps never go backwards within each stream.
pub fn assert_monotonic_dts(what: &str, packets: &[Packet]) {
    let mut last: std::collections::HashMap<u64, f64> = Default::default();
    for (i, p) in packets.iter().enumerate() {
        let Some(dts) = p.dts else { continue };
        if let Some(prev) = last.insert(p.stream_index, dts) {
            assert!(
                dts >= prev,
                "{what}: {} dts went backwards at packet {i}: {prev} -> {dts}",
                p.codec_type
            );
        }
    }
}
