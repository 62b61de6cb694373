//! HLS over the same CMAF segments as DASH (RFC 8216bis): a multivariant playlist with the
//! audio as an alternate rendition, and one media playlist per track with `EXT-X-MAP`. With
//! parts, the media playlists are Low-Latency HLS: `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL` (blocking reload, delta updates) and `EXT-X-PART-INF`.
//!
//! URLs, relative to the playlists (and the same files the MPD lists): `cmaf-v.m3u8`,
//! `cmaf-a.m3u8`, `init-{v,a}-<period>.mp4`, `{v,a}-<period>-<time>.m4s`, and parts
//! `{v,a}-<period>-<segment time>-p<index>.m4s`.

use crate::mpd::{Manifest, StoredPart, index, iso8601, ticks_us};
use media::TrackKind;
use std::fmt::Write as _;
use std::time::Duration;

/// Multivariant playlist name.
pub const MULTIVARIANT: &str = "cmaf.m3u8";

/// What the playlists promise, from the packager's settings.
#[derive(Clone, Copy, Debug)]
pub struct HlsTiming {
    /// The segment target; `EXT-X-TARGETDURATION` is at least this, rounded up.
    pub segment_duration: Duration,
    /// The part target (`EXT-X-PART-INF`), when segments are published in parts.
    pub part_duration: Option<Duration>,
}

/// A media playlist request's delivery directives (RFC 8216bis 6.2.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HlsRequest {
    /// `_HLS_msn`: answer once this media sequence number is in the playlist.
    pub msn: Option<u64>,
    /// `_HLS_part`: ... and this part of it.
    pub part: Option<u32>,
    /// `_HLS_skip=YES|v2`: a delta update.
    pub skip: bool,
}

impl HlsRequest {
    /// The directives in a query string (`_HLS_msn=12&_HLS_part=3&_HLS_skip=YES`); others
    /// are ignored. `Err` when a directive is malformed, or `_HLS_part` comes without
    /// `_HLS_msn` (a 400 in RFC 8216bis 6.2.5.2).
    pub fn parse(args: &[(String, String)]) -> Result<Self, &'static str> {
        let mut r = HlsRequest::default();
        for (k, v) in args {
            match k.as_str() {
                "_HLS_msn" => r.msn = Some(v.parse().map_err(|_| "bad _HLS_msn")?),
                "_HLS_part" => r.part = Some(v.parse().map_err(|_| "bad _HLS_part")?),
                "_HLS_skip" => r.skip = v == "YES" || v == "v2",
                _ => {}
            }
        }
        if r.part.is_some() && r.msn.is_none() {
            return Err("_HLS_part without _HLS_msn");
        }
        Ok(r)
    }
}

fn letter(track: TrackKind) -> char {
    match track {
        TrackKind::Video => 'v',
        TrackKind::Audio => 'a',
    }
}

/// Seconds with three decimals, as `EXTINF` and `EXT-X-PART` durations are written.
fn secs(us: u64) -> String {
    format!("{}.{:03}", us / 1_000_000, (us % 1_000_000) / 1000)
}

impl Manifest {
    /// The parts after the last finished segment of `ti`: the open segment's.
    pub(crate) fn open_parts(&self, ti: usize) -> impl Iterator<Item = &StoredPart> {
        let last = self.segments[ti].back().map(|s| (s.period, s.time));
        self.parts[ti]
            .iter()
            .filter(move |p| last.is_none_or(|l| (p.period, p.segment) > l))
    }

    /// The parts of the open segment of `track` that starts at `time` in `period`, in order.
    pub(crate) fn parts_of(
        &self,
        track: TrackKind,
        period: u64,
        time: u64,
    ) -> impl Iterator<Item = &StoredPart> {
        self.open_parts(index(track))
            .filter(move |p| p.period == period && p.segment == time)
    }

    /// Media sequence number of the segment being written on `ti` (one past the last one).
    fn next_msn(&self, ti: usize) -> u64 {
        self.first_seq[ti] + self.segments[ti].len() as u64
    }

    /// Whether the media playlist of `track` can answer `request` now: it holds the segment
    /// (or part) asked for, or the presentation ended.
    pub fn hls_ready(&self, track: TrackKind, request: &HlsRequest) -> bool {
        let ti = index(track);
        let Some(msn) = request.msn else {
            return true;
        };
        if self.ended {
            return true;
        }
        let next = self.next_msn(ti);
        match request.part {
            None => msn < next,
            Some(_) if msn < next => true,
            Some(part) => msn == next && self.open_parts(ti).any(|p| p.index >= part),
        }
    }

    /// Whether `request` asks further ahead than the playlist will get within a moment (more
    /// than one segment beyond the next): answered at once with a 400 (RFC 8216bis 6.2.5.2).
    pub fn hls_too_far(&self, track: TrackKind, request: &HlsRequest) -> bool {
        let ti = index(track);
        request.msn.is_some_and(|msn| msn > self.next_msn(ti) + 1)
    }

    /// Whether a part of `track` will exist soon: it is the next one of the open segment, or
    /// the first of the next segment, so its request may wait for it.
    pub fn hls_part_pending(&self, track: TrackKind, period: u64, segment: u64, part: u32) -> bool {
        if self.ended {
            return false;
        }
        if self.open_chunks(track, period, segment, part).is_some() {
            return true;
        }
        let ti = index(track);
        match self.open_parts(ti).last() {
            Some(p) => p.period == period && p.segment == segment && part <= p.index + 1,
            None => {
                let next = self.segments[ti]
                    .back()
                    .map(|s| (s.period, s.time + s.duration));
                part == 0 && next.is_none_or(|n| n == (period, segment))
            }
        }
    }

    fn target_duration(&self, timing: &HlsTiming) -> u64 {
        let longest = (0..2)
            .flat_map(|ti| {
                self.listed(ti)
                    .map(move |s| ticks_us(s.duration, self.timescale(ti, s.period)))
            })
            .max()
            .unwrap_or(0);
        let floor = u64::try_from(timing.segment_duration.as_micros()).unwrap_or(0);
        // RFC 8216bis 4.4.3.1: each EXTINF, rounded to the nearest integer, is at most this.
        (longest.max(floor) + 500_000).div_euclid(1_000_000).max(1)
    }

    /// What a multivariant playlist says of this stream; `None` until the first segment.
    pub fn hls_variant(&self) -> Option<HlsVariant> {
        let period = self.periods.back()?;
        if self.segments.iter().all(|s| s.is_empty()) {
            return None;
        }
        let info = &period.info;
        Some(HlsVariant {
            bandwidth: (period.bandwidth[0] + period.bandwidth[1]).max(1),
            video_codecs: info.video.as_ref().map(|v| v.codecs.clone()),
            audio_codecs: info.audio.as_ref().map(|a| a.codecs.clone()),
            resolution: info.video.as_ref().map(|v| (v.width, v.height)),
            frame_rate: info.video.as_ref().and_then(|v| v.frame_rate),
            channels: info.audio.as_ref().map(|a| a.channels.max(1)),
        })
    }

    /// The multivariant playlist: video as the variant, audio as its alternate rendition;
    /// `None` until the first segment exists.
    pub fn hls_multivariant(&self) -> Option<String> {
        let v = self.hls_variant()?;
        let audio = v.audio_group("cmaf-a.m3u8");
        let uri = if v.video_codecs.is_some() {
            "cmaf-v.m3u8"
        } else {
            "cmaf-a.m3u8"
        };
        Some(multivariant(&[(v, uri.to_owned())], audio.as_ref()))
    }

    /// Where the media playlist of `track` ends, for another rendition's
    /// `EXT-X-RENDITION-REPORT`: the media sequence number of its last segment or part, and
    /// the index of that part (RFC 8216bis 4.4.5.4). `None` before the first segment.
    pub fn hls_report(&self, track: TrackKind) -> Option<(u64, Option<u32>)> {
        let ti = index(track);
        if let Some(p) = self.open_parts(ti).last() {
            return Some((self.next_msn(ti), Some(p.index)));
        }
        let last = self.segments[ti].back()?;
        let part = self.parts[ti]
            .iter()
            .filter(|p| p.period == last.period && p.segment == last.time)
            .map(|p| p.index)
            .max();
        Some((self.next_msn(ti).checked_sub(1)?, part))
    }

    /// The media playlist of `track`; `None` until it has a segment. A delta update skips
    /// the segments older than `CAN-SKIP-UNTIL` before the end.
    pub fn hls_media(
        &self,
        track: TrackKind,
        timing: &HlsTiming,
        request: &HlsRequest,
    ) -> Option<String> {
        let ti = index(track);
        let l = letter(track);
        let listed: Vec<_> = self.listed(ti).collect();
        if listed.is_empty() {
            return None;
        }
        let target = self.target_duration(timing);
        let skip_until_us = target * 6 * 1_000_000;
        let part_us = timing
            .part_duration
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(0));
        let first_seq = self.next_msn(ti) - listed.len() as u64;
        // The discontinuity sequence of the first listed segment: the stored ones before it
        // are expired but still counted.
        let stored = &self.segments[ti];
        let hidden = stored.len() - listed.len();
        let changes = stored
            .iter()
            .zip(stored.iter().skip(1))
            .take(hidden)
            .filter(|(a, b)| a.period != b.period)
            .count();
        let disc = self.first_disc[ti] + changes as u64;
        let mut out = String::with_capacity(512 + listed.len() * 160);
        let version = if part_us.is_some() { 9 } else { 7 };
        let _ = writeln!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}"
        );
        if let Some(part_us) = part_us {
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},\
                 CAN-SKIP-UNTIL={}\n#EXT-X-PART-INF:PART-TARGET={}",
                secs(part_us * 3),
                secs(skip_until_us),
                secs(part_us)
            );
        }
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{first_seq}\n#EXT-X-DISCONTINUITY-SEQUENCE:{disc}\n\
             #EXT-X-INDEPENDENT-SEGMENTS"
        );
        let timescale = |period| self.timescale(ti, period);
        let end_us = listed
            .last()
            .map_or(0, |s| ticks_us(s.time + s.duration, timescale(s.period)));
        let skipped = if request.skip && part_us.is_some() {
            listed
                .iter()
                .take_while(|s| {
                    ticks_us(s.time + s.duration, timescale(s.period)) + skip_until_us < end_us
                })
                .count()
        } else {
            0
        };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let ast = self.availability_start_ms;
        let mut period = if skipped > 0 {
            Some(listed[skipped - 1].period)
        } else {
            None
        };
        if let Some(p) = period {
            // A delta update still says which init segment the next segment uses.
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{l}-{p}.mp4\"");
        }
        for s in &listed[skipped..] {
            if period != Some(s.period) {
                if period.is_some() {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{l}-{}.mp4\"", s.period);
                period = Some(s.period);
            }
            let ts = timescale(s.period);
            if let Some(ast) = ast {
                let at = ast + i64::try_from(ticks_us(s.time, ts) / 1000).unwrap_or(0);
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(at));
            }
            if part_us.is_some() {
                for p in self.parts[ti]
                    .iter()
                    .filter(|p| p.period == s.period && p.segment == s.time)
                {
                    write_part(&mut out, l, p, ts);
                }
            }
            let _ = writeln!(
                out,
                "#EXTINF:{},\n{l}-{}-{}.m4s",
                secs(ticks_us(s.duration, ts)),
                s.period,
                s.time
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
            return Some(out);
        }
        if part_us.is_some() {
            let mut next = None;
            for p in self.open_parts(ti) {
                if period != Some(p.period) {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                    let _ = writeln!(out, "#EXT-X-MAP:URI=\"init-{l}-{}.mp4\"", p.period);
                    period = Some(p.period);
                }
                write_part(&mut out, l, p, timescale(p.period));
                next = Some((p.period, p.segment, p.index + 1));
            }
            let next = next.or_else(|| {
                listed
                    .last()
                    .map(|s| (s.period, s.time + s.duration, 0))
                    .filter(|(p, _, _)| self.periods.back().is_some_and(|b| b.info.id == *p))
            });
            if let Some((p, seg, i)) = next {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{l}-{p}-{seg}-p{i}.m4s\""
                );
            }
        }
        Some(out)
    }
}

/// What a multivariant playlist says of one stream's CMAF playlists.
#[derive(Clone, Debug, PartialEq)]
pub struct HlsVariant {
    /// Peak bits per second of video and audio together.
    pub bandwidth: u64,
    /// RFC 6381 codecs of the video track, if any.
    pub video_codecs: Option<String>,
    /// RFC 6381 codecs of the audio track, if any.
    pub audio_codecs: Option<String>,
    /// Picture size.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
    /// Audio channels.
    pub channels: Option<u8>,
}

/// The audio rendition a multivariant playlist's variants share.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioGroup {
    /// The audio media playlist, relative to the multivariant one.
    pub uri: String,
    /// Its RFC 6381 codecs.
    pub codecs: String,
    /// Its channels.
    pub channels: u8,
}

impl HlsVariant {
    /// This stream's audio as the shared rendition at `uri`, if it has audio.
    pub fn audio_group(&self, uri: &str) -> Option<AudioGroup> {
        Some(AudioGroup {
            uri: uri.to_owned(),
            codecs: self.audio_codecs.clone()?,
            channels: self.channels.unwrap_or(2),
        })
    }
}

/// A multivariant playlist of `variants` (best first, each with its media playlist's URI),
/// which share the `audio` rendition when given: the audio of the variants with video is that
/// rendition, an audio-only variant is its own playlist.
pub fn multivariant(variants: &[(HlsVariant, String)], audio: Option<&AudioGroup>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(a) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"{}\",URI=\"{}\"",
            a.channels, a.uri
        );
    }
    for (v, uri) in variants {
        let codecs: Vec<&str> = [
            v.video_codecs.as_deref(),
            audio.map_or(v.audio_codecs.as_deref(), |a| Some(a.codecs.as_str())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
            v.bandwidth,
            codecs.join(",")
        );
        if v.video_codecs.is_some() {
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
            if let Some(fps) = v.frame_rate {
                let _ = write!(out, ",FRAME-RATE={fps:.3}");
            }
            if audio.is_some() {
                out.push_str(",AUDIO=\"audio\"");
            }
        }
        let _ = writeln!(out, "\n{uri}");
    }
    out
}

fn write_part(out: &mut String, l: char, p: &StoredPart, timescale: u32) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={},URI=\"{l}-{}-{}-p{}.m4s\"",
        secs(ticks_us(p.duration, timescale)),
        p.period,
        p.segment,
        p.index
    );
    if p.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}
