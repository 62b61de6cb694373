//! GStreamer as a player (`gst-launch-1.0 playbin`): what it decoded in a fixed time, and its
//! warnings. Used by the DASH and HLS tests; skipped with a note when GStreamer is missing,
//! failing instead when `FERROCAST_REQUIRE_BROWSER` is set (the same switch as the browser
//! players: CI installs both).

use crate::support::proc::run;
use std::process::Command;
use std::time::Duration;

/// Elements the tests need: the two demuxers under test, the TS demuxer, the H.264/AAC
/// decoders (gst-libav) and playbin itself.
const ELEMENTS: [&str; 6] = [
    "playbin",
    "dashdemux",
    "hlsdemux",
    "tsdemux",
    "avdec_h264",
    "avdec_aac",
];

/// Whether GStreamer can run the tests; see the module docs.
pub fn ready() -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = if runs("gst-launch-1.0", "--version") {
        ELEMENTS
            .into_iter()
            .filter(|e| !runs("gst-inspect-1.0", e))
            .collect()
    } else {
        vec!["gst-launch-1.0"]
    };
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("FERROCAST_REQUIRE_BROWSER").is_none(),
        "FERROCAST_REQUIRE_BROWSER is set but GStreamer {missing:?} missing (install \
         gstreamer1.0-tools, gstreamer1.0-plugins-{{base,good,bad}}, gstreamer1.0-libav)"
    );
    eprintln!("note: skipping the GStreamer test: {missing:?} missing");
    false
}

/// What one `playbin` run decoded.
#[derive(Debug)]
pub struct Played {
    /// Decoded video buffers that reached the video sink.
    pub video: usize,
    /// Decoded audio buffers that reached the audio sink.
    pub audio: usize,
    /// stdout (element messages, sink notifications) and stderr (`GST_DEBUG` log) together.
    pub log: String,
}

impl Played {
    /// Lines of the log containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains(needle)).collect()
    }
}

/// Plays `uri` with `playbin` into clock-synchronised fake sinks (as a real player would) for `secs` seconds (then SIGINT, SIGKILL 3 s
/// later), with `GST_DEBUG=debug` when given. Counting starts with the process: anything
/// counted was decoded within `secs` of joining.
pub fn play(uri: &str, secs: u32, debug: Option<&str>) -> Played {
    let sink = |name: &str| format!("fakesink name={name} silent=false sync=true");
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "INT", "-k", "3", &secs.to_string()])
        // Line-buffered, so every sink notification is out before the signal.
        .args(["stdbuf", "-oL", "gst-launch-1.0", "-v", "playbin"])
        .arg(format!("uri={uri}"))
        .arg(format!("video-sink={}", sink("vsink")))
        .arg(format!("audio-sink={}", sink("asink")))
        .env("GST_DEBUG_NO_COLOR", "1");
    match debug {
        Some(d) => cmd.env("GST_DEBUG", d),
        None => cmd.env_remove("GST_DEBUG"),
    };
    let out = run(&mut cmd, Duration::from_secs(u64::from(secs) + 20));
    let log = format!("{}\n{}", out.stdout, out.stderr);
    let count = |sink: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("GstFakeSink:{sink}")) && l.contains("chain"))
            .count()
    };
    Played {
        video: count("vsink"),
        audio: count("asink"),
        log,
    }
}
