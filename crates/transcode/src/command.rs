//! The ffmpeg command line of a ladder, sans I/O: which filters, encoders and outputs.
//!
//! One child serves the whole ladder: the source is decoded once, overlays are drawn once at
//! the source's size, and `split` feeds one scaler and encoder per rung. Every rung's
//! keyframes are forced at the same instants (the source's own when the ladder lists it, else
//! a fixed cadence), scene-cut keyframes are off, and encoders keep the input's millisecond
//! timestamps (`-copyts`, `-enc_time_base -1`), so each rung's segments start on the same
//! media times as the source's and as each other's.

use store::{AudioMode, Corner, Rendition, TranscodeSpec};

/// A video encoder family, as chosen by the hardware probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoder {
    /// libx264, software.
    X264,
    /// NVIDIA NVENC.
    Nvenc,
    /// VA-API on a DRM render node.
    Vaapi {
        /// The render node, e.g. `/dev/dri/renderD128`.
        device: String,
    },
    /// Intel Quick Sync.
    Qsv,
}

impl Encoder {
    /// ffmpeg's name for the H.264 encoder.
    pub fn codec(&self) -> &'static str {
        match self {
            Encoder::X264 => "libx264",
            Encoder::Nvenc => "h264_nvenc",
            Encoder::Vaapi { .. } => "h264_vaapi",
            Encoder::Qsv => "h264_qsv",
        }
    }

    /// The family's name in the runtime API (`software`, `nvenc`, `vaapi`, `qsv`).
    pub fn family(&self) -> &'static str {
        match self {
            Encoder::X264 => "software",
            Encoder::Nvenc => "nvenc",
            Encoder::Vaapi { .. } => "vaapi",
            Encoder::Qsv => "qsv",
        }
    }
}

/// What the source is, as far as the command depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SourceFacts {
    /// Picture size, when the codec configuration tells it.
    pub size: Option<(u32, u32)>,
    /// Frame rate, when announced or in the SPS.
    pub fps: Option<f64>,
}

/// The size a rung is encoded at: its height (never above the source's: a ladder does not
/// upscale), its width or the source's aspect ratio, both even as 4:2:0 needs.
pub fn output_size(r: &Rendition, src: Option<(u32, u32)>) -> (u32, u32) {
    let even = |v: u32| (v.max(2)) & !1;
    let height = match src {
        Some((_, h)) if h > 0 => r.height.min(h),
        _ => r.height,
    };
    let width = if r.width > 0 {
        // An explicit width shrinks with the height when the height was capped.
        if height < r.height {
            (u64::from(r.width) * u64::from(height) / u64::from(r.height.max(1))) as u32
        } else {
            r.width
        }
    } else {
        match src {
            // To the nearest even width, as ffmpeg's `scale=-2:h` does.
            Some((w, h)) if w > 0 && h > 0 => {
                ((f64::from(w) * f64::from(height) / f64::from(h) / 2.0).round() * 2.0) as u32
            }
            _ => height * 16 / 9,
        }
    };
    (even(width), even(height))
}

/// How often keyframes come when the ladder has no `source` rung: the spec's cadence.
fn keyframes(spec: &TranscodeSpec) -> String {
    if spec.has_source() {
        // The source's own keyframes: each rung's segments then line up with the source's.
        "source".to_owned()
    } else {
        format!("expr:gte(t,n_forced*{})", fmt_num(spec.keyframe_interval_s))
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The overlay expression placing a `w`x`h` thing in `corner` of a `W`x`H` picture.
fn place(corner: Corner, margin: u32, w: &str, h: &str) -> (String, String) {
    let m = margin;
    match corner {
        Corner::TopLeft => (format!("{m}"), format!("{m}")),
        Corner::TopRight => (format!("W-{w}-{m}"), format!("{m}")),
        Corner::BottomLeft => (format!("{m}"), format!("H-{h}-{m}")),
        Corner::BottomRight => (format!("W-{w}-{m}"), format!("H-{h}-{m}")),
    }
}

/// The text file drawtext reads (no filtergraph escaping needed): the fixed text with
/// drawtext's own escapes, then the UTC time when asked for.
pub fn overlay_text(spec: &TranscodeSpec) -> Option<String> {
    let t = spec.text.as_ref()?;
    let mut out = String::new();
    for c in t.text.chars().filter(|c| !c.is_control()) {
        if matches!(c, '\\' | '%') {
            out.push('\\');
        }
        out.push(c);
    }
    if t.timestamp {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("%{gmtime:%Y-%m-%d %H\\:%M\\:%S} UTC");
    }
    (!out.is_empty()).then_some(out)
}

/// Escapes a value for a filter option inside a filtergraph (`'`-quoted).
fn quote(path: &str) -> String {
    format!("'{}'", path.replace('\\', "\\\\").replace('\'', "'\\\\''"))
}

/// Everything a command is made of.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// The stream's settings.
    pub spec: &'a TranscodeSpec,
    /// The rungs to encode (not `source`), resolved.
    pub rungs: &'a [Rendition],
    /// The encoder family.
    pub encoder: &'a Encoder,
    /// The source.
    pub source: SourceFacts,
    /// Where each rung's FLV goes (ffmpeg URLs, `unix:/...`), in rung order.
    pub outputs: &'a [String],
    /// The file holding the overlay text, when there is one ([`overlay_text`]).
    pub text_file: Option<&'a str>,
}

impl Plan<'_> {
    /// The filtergraph: overlays once, then one branch per rung.
    pub fn filtergraph(&self) -> String {
        let mut g = String::new();
        let mut base = "0:v".to_owned();
        if let Some(w) = &self.spec.watermark {
            let (x, y) = place(w.position, w.margin, "w", "h");
            g.push_str(&format!(
                "[1:v]format=rgba,colorchannelmixer=aa={}[wm];[{base}][wm]overlay=x={x}:y={y}:eof_action=repeat[wmd];",
                fmt_num(w.opacity.clamp(0.0, 1.0))
            ));
            base = "wmd".to_owned();
        }
        if let (Some(t), Some(file)) = (&self.spec.text, self.text_file) {
            let (x, y) = place(t.position, 16, "tw", "th");
            g.push_str(&format!(
                "[{base}]drawtext=textfile={}:fontsize={}*h/720:fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=6:x={x}:y={y}[txt];",
                quote(file),
                t.font_size
            ));
            base = "txt".to_owned();
        }
        let n = self.rungs.len();
        g.push_str(&format!("[{base}]split={n}"));
        for i in 0..n {
            g.push_str(&format!("[s{i}]"));
        }
        for (i, r) in self.rungs.iter().enumerate() {
            let (w, h) = output_size(r, self.source.size);
            g.push_str(&format!(";[s{i}]"));
            if r.max_framerate > 0.0 && self.source.fps.is_some_and(|f| f > r.max_framerate + 0.01)
            {
                g.push_str(&format!("fps={},", fmt_num(r.max_framerate)));
            }
            g.push_str(&format!("scale={w}:{h}"));
            match self.encoder {
                Encoder::Vaapi { .. } => g.push_str(",format=nv12,hwupload"),
                Encoder::Qsv => g.push_str(",format=nv12"),
                _ => g.push_str(",format=yuv420p"),
            }
            g.push_str(&format!("[v{i}]"));
        }
        g
    }

    /// The encoder options of one rung.
    fn video_options(&self, r: &Rendition) -> Vec<String> {
        let kbps = r.video_bitrate_kbps;
        let mut o: Vec<String> = vec!["-c:v".into(), self.encoder.codec().into()];
        match self.encoder {
            Encoder::X264 => {
                o.extend(["-preset", "veryfast", "-tune", "zerolatency"].map(String::from))
            }
            Encoder::Nvenc => o.extend(
                [
                    "-preset",
                    "p4",
                    "-tune",
                    "ll",
                    "-rc",
                    "cbr",
                    "-forced-idr",
                    "1",
                ]
                .map(String::from),
            ),
            Encoder::Qsv => o.extend(["-preset", "veryfast", "-forced_idr", "1"].map(String::from)),
            Encoder::Vaapi { .. } => o.extend(["-rc_mode", "CBR"].map(String::from)),
        }
        o.extend([
            "-profile:v".into(),
            r.profile.clone(),
            "-level:v".into(),
            r.level.clone(),
            "-b:v".into(),
            format!("{kbps}k"),
            "-maxrate:v".into(),
            format!("{kbps}k"),
            "-bufsize:v".into(),
            format!("{}k", kbps * 2),
            // No B-frames: a live ladder trades a little compression for latency, and the
            // renditions' decode and presentation times stay equal to the source's.
            "-bf".into(),
            "0".into(),
            // Keyframes only where forced, never on scene cuts, so rungs stay aligned.
            "-g".into(),
            "100000".into(),
            "-sc_threshold".into(),
            "0".into(),
            "-force_key_frames:v".into(),
            keyframes(self.spec),
            // Millisecond timestamps from the input, not rounded to the frame rate's grid.
            "-enc_time_base:v".into(),
            "-1".into(),
        ]);
        o
    }

    /// The whole argument list (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "warning",
            "-nostats",
            "-progress",
            "pipe:1",
            "-stats_period",
            "1",
        ]
        .map(String::from)
        .to_vec();
        if let Encoder::Vaapi { device } = self.encoder {
            a.extend(["-vaapi_device".into(), device.clone()]);
        }
        a.extend(
            [
                // The input is live: start as soon as the headers are read.
                "-fflags",
                "+nobuffer",
                "-probesize",
                "65536",
                "-analyzeduration",
                "0",
                "-copyts",
                "-f",
                "flv",
                "-i",
                "pipe:0",
            ]
            .map(String::from),
        );
        if let Some(w) = &self.spec.watermark {
            // One image from one local file: no pattern expansion, no demuxer that could
            // follow a playlist inside the file to a URL.
            a.extend(
                [
                    "-f",
                    "image2",
                    "-pattern_type",
                    "none",
                    "-protocol_whitelist",
                    "file",
                    "-i",
                ]
                .map(String::from),
            );
            a.push(w.path.clone());
        }
        a.extend(["-filter_complex".into(), self.filtergraph()]);
        for (i, (r, out)) in self.rungs.iter().zip(self.outputs).enumerate() {
            a.extend([
                "-map".into(),
                format!("[v{i}]"),
                "-map".into(),
                "0:a?".into(),
            ]);
            a.extend(self.video_options(r));
            match self.spec.audio.mode {
                AudioMode::Passthrough => a.extend(["-c:a".into(), "copy".into()]),
                AudioMode::Aac => a.extend([
                    "-c:a".into(),
                    "aac".into(),
                    "-b:a".into(),
                    format!("{}k", self.spec.audio.bitrate_kbps),
                ]),
            }
            a.extend(
                [
                    "-flush_packets",
                    "1",
                    "-f",
                    "flv",
                    "-flvflags",
                    "no_duration_filesize",
                ]
                .map(String::from),
            );
            a.push(out.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{RenditionSpec, TextOverlay, Watermark};

    fn spec(names: &[&str]) -> TranscodeSpec {
        TranscodeSpec {
            enabled: true,
            profiles: names
                .iter()
                .map(|n| RenditionSpec {
                    name: (*n).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn rungs(s: &TranscodeSpec) -> Vec<Rendition> {
        s.profiles
            .iter()
            .filter_map(RenditionSpec::resolve)
            .collect()
    }

    #[test]
    fn sizes_keep_the_aspect_ratio_and_never_upscale() {
        let r = RenditionSpec {
            name: "480p".into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(output_size(&r, Some((1280, 720))), (854, 480));
        assert_eq!(output_size(&r, Some((640, 360))), (640, 360));
        assert_eq!(output_size(&r, Some((1080, 1920))), (270, 480));
        assert_eq!(output_size(&r, None), (852, 480));
        let custom = RenditionSpec {
            name: "x".into(),
            width: 1000,
            height: 600,
            video_bitrate_kbps: 900,
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(output_size(&custom, Some((1920, 1080))), (1000, 600));
        assert_eq!(output_size(&custom, Some((640, 300))), (500, 300));
    }

    #[test]
    fn a_ladder_with_the_source_follows_its_keyframes_and_one_without_a_cadence() {
        let s = spec(&["source", "480p", "360p"]);
        let r = rungs(&s);
        let outs = vec!["unix:/a".to_owned(), "unix:/b".to_owned()];
        let plan = Plan {
            spec: &s,
            rungs: &r,
            encoder: &Encoder::X264,
            source: SourceFacts {
                size: Some((1280, 720)),
                fps: Some(30.0),
            },
            outputs: &outs,
            text_file: None,
        };
        let a = plan.args();
        let joined = a.join(" ");
        assert!(joined.contains("-force_key_frames:v source"), "{joined}");
        assert_eq!(
            plan.filtergraph(),
            "[0:v]split=2[s0][s1];[s0]scale=854:480,format=yuv420p[v0];[s1]scale=640:360,format=yuv420p[v1]"
        );
        // Each output gets its own maps, codec options and URL, in rung order.
        let outputs: Vec<_> = a
            .iter()
            .enumerate()
            .filter(|(_, x)| x.starts_with("unix:"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(outputs.len(), 2);
        assert_eq!(a[outputs[0] - 1], "no_duration_filesize");
        assert!(joined.contains("-b:v 1400k") && joined.contains("-b:v 800k"));
        assert!(joined.contains(
            "-c:v libx264 -preset veryfast -tune zerolatency -profile:v main -level:v 3.1"
        ));
        assert!(
            joined.contains("-copyts")
                && joined.contains("-enc_time_base:v -1")
                && joined.contains("-sc_threshold 0")
        );
        assert!(joined.contains("-c:a copy"));

        let mut s = spec(&["720p", "360p"]);
        s.keyframe_interval_s = 2.0;
        s.audio.mode = AudioMode::Aac;
        s.audio.bitrate_kbps = 96;
        let r = rungs(&s);
        let plan = Plan {
            spec: &s,
            rungs: &r,
            encoder: &Encoder::Nvenc,
            source: SourceFacts {
                size: Some((1920, 1080)),
                fps: Some(60.0),
            },
            outputs: &outs,
            text_file: None,
        };
        let joined = plan.args().join(" ");
        assert!(
            joined.contains("-force_key_frames:v expr:gte(t,n_forced*2)"),
            "{joined}"
        );
        assert!(joined.contains("-c:v h264_nvenc") && joined.contains("-c:a aac -b:a 96k"));
        // 360p caps 60 fps at 30; 720p allows 60.
        assert!(
            plan.filtergraph().contains("[s1]fps=30,scale=640:360"),
            "{}",
            plan.filtergraph()
        );
        assert!(plan.filtergraph().contains("[s0]scale=1280:720"));
    }

    #[test]
    fn overlays_are_drawn_once_before_the_split() {
        let mut s = spec(&["480p"]);
        s.watermark = Some(Watermark {
            path: "/srv/logo.png".into(),
            position: Corner::BottomRight,
            opacity: 0.5,
            margin: 10,
        });
        s.text = Some(TextOverlay {
            text: "100% live \\o/".into(),
            timestamp: true,
            position: Corner::TopLeft,
            font_size: 24,
        });
        let r = rungs(&s);
        let outs = vec!["unix:/a".to_owned()];
        let plan = Plan {
            spec: &s,
            rungs: &r,
            encoder: &Encoder::Vaapi {
                device: "/dev/dri/renderD128".into(),
            },
            source: SourceFacts::default(),
            outputs: &outs,
            text_file: Some("/tmp/it's.txt"),
        };
        let g = plan.filtergraph();
        assert!(g.starts_with("[1:v]format=rgba,colorchannelmixer=aa=0.5[wm];[0:v][wm]overlay=x=W-w-10:y=H-h-10:eof_action=repeat[wmd];[wmd]drawtext=textfile='/tmp/it'\\\\''s.txt':fontsize=24*h/720"), "{g}");
        assert!(
            g.contains("[txt]split=1[s0];[s0]scale=852:480,format=nv12,hwupload[v0]"),
            "{g}"
        );
        let a = plan.args().join(" ");
        assert!(
            a.contains("-vaapi_device /dev/dri/renderD128")
                && a.contains(
                    "-i pipe:0 -f image2 -pattern_type none -protocol_whitelist file -i /srv/logo.png"
                ),
            "{a}"
        );
        assert_eq!(
            overlay_text(&s).unwrap(),
            "100\\% live \\\\o/ %{gmtime:%Y-%m-%d %H\\:%M\\:%S} UTC"
        );
    }
}
