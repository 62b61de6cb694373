//! DASH over fragmented MP4 recordings: a static MPD of a past window, and a dynamic one whose
//! `timeShiftBufferDepth` reaches hours back into the recording, so a viewer can rewind a live
//! stream as far as it was recorded.
//!
//! Each file has its own timeline and initialization, so each is a `Period` (its start is the
//! wall-clock time of its first listed GOP); each GOP is one segment per track, numbered by the
//! index's keyframe counter: `rec-<file>-<v|a>-<seq>.m4s`, cut out of the muxed GOP on request
//! ([`fmp4::track_fragments`]), after `rec-<file>-<v|a>-init.mp4`.

use crate::catalog::{Format, RecordedTrack, RecordingFile};
use std::fmt::Write as _;

/// The 90 kHz timeline of recorded MP4 files.
const TIMESCALE: u64 = 90_000;

/// One listed GOP of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gop {
    seq: u64,
    unix_ms: i64,
    /// Start and length on the file's timeline, ticks.
    t: u64,
    d: u64,
}

/// The GOPs of `f` that overlap `[from_ms, to_ms)` and are whole on disk, numbered.
fn gops(f: &RecordingFile, from_ms: i64, to_ms: i64) -> Vec<Gop> {
    let mut out = Vec::new();
    for (i, k) in f.keyframes.iter().enumerate() {
        // Every GOP line of an MP4 index says where the GOP ends (read_index drops others).
        let (Some(seq), Some(t), Some((end_ms, _))) = (k.seq, k.ticks, k.end) else {
            continue;
        };
        if end_ms <= from_ms || k.unix_ms >= to_ms || end_ms <= k.unix_ms {
            continue;
        }
        let d = match f.keyframes.get(i + 1).and_then(|n| n.ticks) {
            Some(next_t) if next_t > t => next_t - t,
            _ => u64::try_from(end_ms - k.unix_ms)
                .unwrap_or(0)
                .saturating_mul(TIMESCALE / 1000),
        };
        out.push(Gop {
            seq,
            unix_ms: k.unix_ms,
            t,
            d,
        });
    }
    // `$Number$` addressing needs consecutive numbers: after a gap (an index line lost) only
    // the newest run is listed, so a live MPD keeps growing.
    if let Some(gap) = out
        .windows(2)
        .rposition(|w| w[0].seq.checked_add(1) != Some(w[1].seq))
    {
        out.drain(..=gap);
    }
    out
}

/// `xs:duration` of `ms` milliseconds.
fn duration(ms: i64) -> String {
    format!("PT{}.{:03}S", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// What kind of MPD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeline {
    /// A finished window (`?from=`/`?ago=` with `dur=`): `type="static"`.
    Window,
    /// The live stream with `depth_ms` of recording behind it: `type="dynamic"`, wall-clock
    /// anchored (`availabilityStartTime` is the Unix epoch, so it never moves between updates).
    Live { now_ms: i64, depth_ms: i64 },
}

/// The MPD over `files` between `from_ms` and `to_ms`, up to (not including) its `UTCTiming`
/// and closing tag, which the caller adds; `None` when no MP4 GOP is in the window.
pub fn mpd(
    files: &[RecordingFile],
    from_ms: i64,
    to_ms: i64,
    timeline: Timeline,
) -> Option<String> {
    let periods: Vec<(&RecordingFile, Vec<Gop>)> = files
        .iter()
        .filter(|f| f.format == Format::Mp4 && !f.tracks.is_empty())
        .map(|f| (f, gops(f, from_ms, to_ms)))
        .filter(|(_, g)| !g.is_empty())
        .collect();
    let first = periods.first()?.1.first()?.unix_ms;
    let last = periods.last()?;
    let end = last.1.last().map(|g| {
        g.unix_ms
            .saturating_add(i64::try_from(g.d / 90).unwrap_or(0))
    })?;
    let origin = match timeline {
        Timeline::Window => first,
        Timeline::Live { .. } => 0,
    };
    let mut out = String::with_capacity(1024 + periods.len() * 2048);
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minBufferTime=\"PT2S\"",
    );
    match timeline {
        Timeline::Window => {
            let _ = writeln!(
                out,
                " type=\"static\" mediaPresentationDuration=\"{}\">",
                duration(end - first)
            );
        }
        Timeline::Live { now_ms, depth_ms } => {
            let longest = periods
                .iter()
                .flat_map(|(_, g)| g.iter().map(|g| g.d / 90))
                .max()
                .unwrap_or(2000);
            out.push_str(
                " type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" publishTime=\"",
            );
            media::write_iso8601(&mut out, now_ms);
            let _ = writeln!(
                out,
                "\" minimumUpdatePeriod=\"PT2S\" timeShiftBufferDepth=\"{}\" \
                 suggestedPresentationDelay=\"{}\" maxSegmentDuration=\"{}\">",
                duration(depth_ms),
                duration(3 * longest as i64),
                duration(longest as i64)
            );
        }
    }
    for (f, g) in &periods {
        // A live MPD's periods keep their start from one update to the next: each is
        // anchored at its file's first GOP, listed or not. A window starts where it starts.
        let anchor = match timeline {
            Timeline::Live { .. } => f
                .keyframes
                .first()
                .and_then(|k| Some((k.unix_ms, k.ticks?)))
                .unwrap_or((g[0].unix_ms, g[0].t)),
            Timeline::Window => (g[0].unix_ms, g[0].t),
        };
        period(&mut out, f, g, anchor.0 - origin, anchor.1);
    }
    Some(out)
}

/// A file's `Period`, starting `start_ms` after the MPD's origin, at `pto` on its timeline.
fn period(out: &mut String, f: &RecordingFile, gops: &[Gop], start_ms: i64, pto: u64) {
    let Some(first) = gops.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "  <Period id=\"{}\" start=\"{}\">",
        f.id,
        duration(start_ms)
    );
    // A rough bandwidth from the file's size (the attribute is required; players only rank
    // Representations by it, and each AdaptationSet here has one).
    let file_secs = (f.duration_ms() as f64 / 1000.0).max(1.0);
    let rate = ((f.bytes as f64 * 8.0 / file_secs) as u64).max(1000);
    for track in &f.tracks {
        let (letter, head, bandwidth) = match track {
            RecordedTrack::Video {
                codecs,
                width,
                height,
            } => (
                'v',
                format!(
                    "contentType=\"video\" mimeType=\"video/mp4\" codecs=\"{codecs}\" width=\"{width}\" height=\"{height}\""
                ),
                rate,
            ),
            RecordedTrack::Audio {
                codecs,
                sample_rate,
                ..
            } => (
                'a',
                format!(
                    "contentType=\"audio\" mimeType=\"audio/mp4\" codecs=\"{codecs}\" audioSamplingRate=\"{sample_rate}\""
                ),
                128_000,
            ),
        };
        let _ = writeln!(
            out,
            "    <AdaptationSet id=\"{}\" segmentAlignment=\"true\" startWithSAP=\"1\">",
            if letter == 'v' { 0 } else { 1 }
        );
        let _ = writeln!(
            out,
            "      <Representation id=\"{letter}\" {head} bandwidth=\"{bandwidth}\">"
        );
        if let RecordedTrack::Audio { channels, .. } = track {
            let _ = writeln!(
                out,
                "        <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
            );
        }
        let _ = writeln!(
            out,
            "        <SegmentTemplate timescale=\"{TIMESCALE}\" presentationTimeOffset=\"{pto}\" startNumber=\"{}\" initialization=\"rec-{}-{letter}-init.mp4\" media=\"rec-{}-{letter}-$Number$.m4s\">",
            first.seq, f.id, f.id
        );
        out.push_str("          <SegmentTimeline>\n");
        fmp4::write_segment_timeline(out, "            ", gops.iter().map(|g| (g.t, g.d)), None);
        out.push_str("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n    </AdaptationSet>\n");
    }
    out.push_str("  </Period>\n");
}

/// A DVR DASH request: `rec-<file>-<v|a>-init.mp4` or `rec-<file>-<v|a>-<seq>.m4s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// The file's id.
    pub file: u64,
    /// Video (`v`) or audio (`a`).
    pub video: bool,
    /// The GOP's keyframe number; `None` for the initialization segment.
    pub seq: Option<u64>,
}

impl SegmentName {
    /// Parses a DVR DASH file name.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let rest = name.strip_prefix("rec-")?;
        let (file, rest) = rest.split_once('-')?;
        let (kind, rest) = rest.split_once('-')?;
        let video = match kind {
            "v" => true,
            "a" => false,
            _ => return None,
        };
        let seq = if rest == "init.mp4" {
            None
        } else {
            Some(rest.strip_suffix(".m4s")?.parse().ok()?)
        };
        Some(SegmentName {
            file: file.parse().ok()?,
            video,
            seq,
        })
    }

    /// The track id in the recorded file.
    pub fn track_id(&self) -> u32 {
        if self.video { 1 } else { 2 }
    }
}

/// The byte range of GOP `seq` of `f`, whole on disk.
pub fn gop_range(f: &RecordingFile, seq: u64) -> Option<(u64, u64)> {
    let k = f.keyframes.iter().find(|k| k.seq == Some(seq))?;
    let (_, end) = k.end?;
    (end > k.offset).then_some((k.offset, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Keyframe;
    use std::path::PathBuf;

    fn file(id: u64, seq0: u64, gops: usize, complete: bool) -> RecordingFile {
        let start = i64::try_from(id).unwrap();
        let keyframes = (0..gops)
            .map(|i| {
                let i64i = i64::try_from(i).unwrap();
                Keyframe {
                    unix_ms: start + i64i * 2000,
                    offset: 1000 + i as u64 * 5000,
                    seq: Some(seq0 + i as u64),
                    disc: Some(0),
                    end: Some((start + (i64i + 1) * 2000, 1000 + (i as u64 + 1) * 5000)),
                    ticks: Some(i as u64 * 180_000),
                }
            })
            .collect::<Vec<_>>();
        RecordingFile {
            id,
            format: Format::Mp4,
            header_len: 1000,
            tracks: vec![
                RecordedTrack::Video {
                    codecs: "avc1.64001f".into(),
                    width: 1280,
                    height: 720,
                },
                RecordedTrack::Audio {
                    codecs: "mp4a.40.2".into(),
                    sample_rate: 48_000,
                    channels: 2,
                },
            ],
            path: PathBuf::new(),
            index_path: PathBuf::new(),
            start_ms: start,
            end_ms: start + i64::try_from(gops).unwrap() * 2000,
            bytes: 1000 + gops as u64 * 5000,
            complete,
            keyframes,
        }
    }

    #[test]
    fn a_window_is_a_static_mpd_with_a_period_per_file() {
        let a = file(1_000_000, 10, 5, true);
        let b = file(1_010_000, 15, 5, false);
        // From the middle of a's third GOP to the middle of b's second.
        let text = mpd(&[a, b], 1_005_000, 1_013_000, Timeline::Window).unwrap();
        assert!(text.contains("type=\"static\""), "{text}");
        // a's GOPs 2..4 (6 s) and b's 0..1 (4 s): 10 s from 1 004 000.
        assert!(
            text.contains("mediaPresentationDuration=\"PT10.000S\""),
            "{text}"
        );
        assert!(
            text.contains("<Period id=\"1000000\" start=\"PT0.000S\">"),
            "{text}"
        );
        assert!(
            text.contains("<Period id=\"1010000\" start=\"PT6.000S\">"),
            "{text}"
        );
        assert!(
            text.contains("presentationTimeOffset=\"360000\" startNumber=\"12\" initialization=\"rec-1000000-v-init.mp4\" media=\"rec-1000000-v-$Number$.m4s\""),
            "{text}"
        );
        assert!(
            text.contains("<S t=\"360000\" d=\"180000\" r=\"2\"/>"),
            "{text}"
        );
        assert!(text.contains("startNumber=\"15\""), "{text}");
        assert!(text.contains("<S t=\"0\" d=\"180000\" r=\"1\"/>"), "{text}");
        assert_eq!(text.matches("<AdaptationSet").count(), 4);
        assert!(text.contains("codecs=\"mp4a.40.2\" audioSamplingRate=\"48000\""));
        assert!(!text.contains("</MPD>"));
        assert_eq!(mpd(&[], 0, 1, Timeline::Window), None);
    }

    #[test]
    fn the_live_mpd_is_anchored_at_the_epoch_and_reaches_back_its_depth() {
        let a = file(1_000_000, 0, 5, true);
        let text = mpd(
            &[a],
            1_004_000,
            i64::MAX,
            Timeline::Live {
                now_ms: 1_011_000,
                depth_ms: 3_600_000,
            },
        )
        .unwrap();
        assert!(text.contains("type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\""));
        assert!(
            text.contains("timeShiftBufferDepth=\"PT3600.000S\""),
            "{text}"
        );
        // The period starts at its file's start, whichever GOPs the window lists.
        assert!(
            text.contains("<Period id=\"1000000\" start=\"PT1000.000S\">"),
            "{text}"
        );
        assert!(
            text.contains("presentationTimeOffset=\"0\" startNumber=\"2\""),
            "{text}"
        );
        assert!(text.contains("maxSegmentDuration=\"PT2.000S\""), "{text}");
    }

    #[test]
    fn segment_names_and_ranges() {
        assert_eq!(
            SegmentName::parse("rec-17-v-init.mp4"),
            Some(SegmentName {
                file: 17,
                video: true,
                seq: None
            })
        );
        assert_eq!(
            SegmentName::parse("rec-17-a-42.m4s"),
            Some(SegmentName {
                file: 17,
                video: false,
                seq: Some(42)
            })
        );
        for bad in [
            "rec-17.mp4",
            "rec-x-v-1.m4s",
            "rec-1-q-1.m4s",
            "rec-1-v-1.mp4",
            "rec-1-v-",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
        let f = file(1_000_000, 10, 3, false);
        assert_eq!(gop_range(&f, 11), Some((6000, 11_000)));
        assert_eq!(gop_range(&f, 9), None);
        // A numbering gap (an index line lost): the newest run is listed, so a live MPD grows.
        let mut g = file(1_000_000, 10, 5, false);
        g.keyframes[2].seq = Some(40);
        g.keyframes[3].seq = Some(41);
        g.keyframes[4].seq = Some(42);
        let listed: Vec<u64> = gops(&g, 0, i64::MAX).iter().map(|x| x.seq).collect();
        assert_eq!(listed, [40, 41, 42]);
    }
}
