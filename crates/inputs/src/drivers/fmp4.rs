//! fMP4 (CMAF) HLS segments to tracks and frames.
//!
//! Sans-I/O: [`Fmp4Feed::new`] reads the `EXT-X-MAP` init segment and [`Fmp4Feed::segment`] turns
//! one media segment into events; the HLS driver fetches and paces them.
//!
//! Containers (`moov`, `trak`, `mdia`, `moof`, `traf`, ...) are walked here, so an unknown or
//! vendor box anywhere is skipped rather than failing the stream; the versioned leaf boxes
//! (`mvhd`, `tkhd`, `mdhd`, `elst`, `trex`, `tfhd`, `tfdt`, `trun`) are decoded by mp4-atom. The
//! `avcC` record is handed to [`AvcConfig::parse`] verbatim, and the AudioSpecificConfig is read
//! out of `esds` by a small descriptor walker for [`AacConfig::parse`].
//!
//! Timing (ISO/IEC 14496-12): a track fragment starts at its `tfdt` (8.8.12) or, without one,
//! where the track's previous fragment ended; each sample's duration, size and flags come from
//! the `trun`, else the `tfhd` defaults, else the `trex` defaults (8.8.7, 8.8.8), and
//! pts = dts + the `trun` composition offset (unsigned in version 0, signed in version 1). A
//! track's edit list shifts it the way ffmpeg's mov demuxer does (8.6.6: a leading empty edit
//! delays the track, the next edit's media_time advances it), which keeps the audio/video offset
//! the packager wrote and makes timestamps equal `ffprobe -show_packets`. Times are converted to
//! the hub's 90 kHz with 128-bit arithmetic, so no `baseMediaDecodeTime` can overflow.
//!
//! Hostile input: every box size, sample offset and size is checked against the buffer, sample
//! counts are capped, and anything malformed is an `Err` naming the box and its byte offset.

use crate::source::SourceEvent;
use bytes::Bytes;
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TIMEBASE, TrackKind, VideoCodec};
use mp4_atom::{Decode, Elst, Mdhd, Mvhd, Tfdt, Tfhd, Tkhd, Trex, Trun};

/// Most samples one `trun` may declare (a 10 s segment of 60 fps video holds 600).
const MAX_SAMPLES_PER_RUN: usize = 100_000;
/// Most samples one segment may declare, all tracks together; bounds the frames built.
const MAX_SAMPLES_PER_SEGMENT: usize = 200_000;
/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12 8.8.3.1).
const NON_SYNC_SAMPLE: u32 = 0x0001_0000;
/// SampleEntry (8) + VisualSampleEntry (70) fields before an `avc1`'s child boxes (8.5.2.2).
const VISUAL_SAMPLE_ENTRY_LEN: usize = 78;
/// SampleEntry (8) + AudioSampleEntry (20) fields before an `mp4a`'s child boxes (8.5.2.2).
const AUDIO_SAMPLE_ENTRY_LEN: usize = 28;

/// Demuxes the media segments that follow one init segment.
#[derive(Debug)]
pub(crate) struct Fmp4Feed {
    info: MediaInfo,
    /// The tracks kept: at most one video and one audio.
    tracks: Vec<Track>,
    /// `trex` defaults of every track in the init, kept or not (a skipped track's sample sizes
    /// still place the next track fragment's data when offsets are implicit).
    trex: Vec<(u32, SampleDefaults)>,
    /// Whether [`SourceEvent::Tracks`] went out.
    announced: bool,
}

/// A track whose samples become frames.
#[derive(Debug)]
struct Track {
    id: u32,
    kind: TrackKind,
    /// `mdhd` ticks per second (never 0).
    timescale: u32,
    /// Subtracted from every decode and composition time, in track ticks: the edit list's
    /// media_time minus its leading empty edit.
    shift: i128,
    /// Decode time after the last sample seen, in track ticks, for a fragment without `tfdt`.
    next_dts: Option<i128>,
}

/// Per-sample values a `trun` may leave out.
#[derive(Clone, Copy, Debug, Default)]
struct SampleDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// A usable track's codec.
enum Codec {
    Video(VideoCodec),
    Audio(AudioCodec),
}

impl Fmp4Feed {
    /// Reads the tracks of an init segment (`ftyp` + `moov`).
    pub(crate) fn new(init: &[u8]) -> Result<Self, String> {
        let moov =
            find_top(init, b"moov")?.ok_or_else(|| "fMP4 init segment: no moov box".to_string())?;
        let movie_timescale = match find(&moov, b"mvhd")? {
            Some(mvhd) => decode::<Mvhd>(&mvhd)?.timescale,
            None => return Err(format!("moov at byte {}: no mvhd", moov.at)),
        };
        let mut trex = Vec::new();
        if let Some(mvex) = find(&moov, b"mvex")? {
            for b in Boxes::children(&mvex) {
                let b = b?;
                if &b.kind == b"trex" {
                    let t = decode::<Trex>(&b)?;
                    let defaults = SampleDefaults {
                        duration: t.default_sample_duration,
                        size: t.default_sample_size,
                        flags: t.default_sample_flags,
                    };
                    trex.push((t.track_id, defaults));
                }
            }
        } else {
            tracing::debug!("fMP4 input: the init segment has no mvex; trex defaults are zero");
        }

        let mut info = MediaInfo::default();
        let mut tracks = Vec::new();
        for trak in Boxes::children(&moov) {
            let trak = trak?;
            if &trak.kind != b"trak" {
                continue;
            }
            let Some((track, codec)) = parse_trak(&trak, movie_timescale)? else {
                continue;
            };
            match codec {
                Codec::Video(c) if info.video.is_none() => {
                    let duration = defaults_of(&trex, track.id).duration;
                    info.framerate =
                        (duration > 0).then(|| f64::from(track.timescale) / f64::from(duration));
                    info.video = Some(c);
                }
                Codec::Audio(c) if info.audio.is_none() => info.audio = Some(c),
                _ => {
                    tracing::debug!(
                        track = track.id,
                        "fMP4 input: skipping a second video or audio track"
                    );
                    continue;
                }
            }
            tracks.push(track);
        }
        if tracks.is_empty() {
            return Err("fMP4 init segment: no H.264 or AAC track".into());
        }
        Ok(Fmp4Feed {
            info,
            tracks,
            trex,
            announced: false,
        })
    }

    /// One media segment (`styp`? + `moof` + `mdat`, possibly several pairs).
    pub(crate) fn segment(&mut self, data: &[u8]) -> Result<Vec<SourceEvent>, String> {
        let buf = Bytes::copy_from_slice(data);
        let mut run = SegmentRun {
            video: Vec::new(),
            audio: Vec::new(),
            samples: 0,
            next_dts: self.tracks.iter().map(|t| t.next_dts).collect(),
        };
        let mut moofs = 0usize;
        for b in Boxes::top(data) {
            let b = b?;
            if &b.kind == b"moof" {
                moofs += 1;
                self.moof(&b, &buf, &mut run)?;
            }
        }
        if moofs == 0 {
            return Err("fMP4 segment: no moof box".into());
        }
        // Only a segment that parsed whole moves the tracks' clocks.
        for (track, next) in self.tracks.iter_mut().zip(run.next_dts) {
            track.next_dts = next;
        }

        // A fragment whose tfdt goes back behind the previous one of the same track (a broken
        // packager, two trafs of one track) would hand outputs decreasing decode times: its
        // samples are dropped rather than reordered, as a player would skip them.
        for list in [&mut run.video, &mut run.audio] {
            let mut last = i64::MIN;
            let before = list.len();
            list.retain(|f| {
                let keep = f.dts >= last;
                last = last.max(f.dts);
                keep
            });
            if list.len() < before {
                tracing::debug!(
                    dropped = before - list.len(),
                    "fMP4 samples behind their track's clock"
                );
            }
        }
        let mut out = Vec::with_capacity(run.video.len() + run.audio.len() + 1);
        if !self.announced {
            out.push(SourceEvent::Tracks(Box::new(self.info.clone())));
            self.announced = true;
        }
        // Each list is in decode order; merge by dts (video first on a tie).
        let mut video = run.video.into_iter().peekable();
        let mut audio = run.audio.into_iter().peekable();
        loop {
            let take_video = match (video.peek(), audio.peek()) {
                (Some(v), Some(a)) => v.dts <= a.dts,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_video {
                video.next()
            } else {
                audio.next()
            };
            out.extend(next.map(SourceEvent::Frame));
        }
        Ok(out)
    }

    /// The samples of one `moof`; `buf` is the whole segment its offsets point into.
    fn moof(&self, moof: &BoxRef<'_>, buf: &Bytes, run: &mut SegmentRun) -> Result<(), String> {
        let moof_at = moof.at as i128;
        // 8.8.7.1: without base-data-offset or default-base-is-moof, the first track fragment's
        // data starts at the moof and each later one where the previous one's data ended.
        let mut implicit_base = moof_at;
        for traf in Boxes::children(moof) {
            let traf = traf?;
            if &traf.kind != b"traf" {
                continue;
            }
            let (mut tfhd, mut tfdt, mut truns) = (None, None, Vec::new());
            for b in Boxes::children(&traf) {
                let b = b?;
                match &b.kind {
                    b"tfhd" => tfhd = Some(decode::<Tfhd>(&b)?),
                    b"tfdt" => tfdt = Some(decode::<Tfdt>(&b)?),
                    b"trun" => truns.push(b),
                    _ => {}
                }
            }
            let tfhd = tfhd.ok_or_else(|| format!("traf at byte {}: no tfhd", traf.at))?;
            let trex = defaults_of(&self.trex, tfhd.track_id);
            let kept = self.tracks.iter().position(|t| t.id == tfhd.track_id);
            let base = match (tfhd.base_data_offset, tfhd.default_base_is_moof) {
                // A file offset; CMAF forbids it, and a segment fetched alone is its own file.
                (Some(offset), _) => i128::from(offset),
                (None, true) => moof_at,
                (None, false) => implicit_base,
            };
            let mut pos = base;
            let mut dts = match (tfdt, kept) {
                (Some(t), _) => i128::from(t.base_media_decode_time),
                (None, Some(i)) => run.next_dts[i].unwrap_or(0),
                (None, None) => 0,
            };
            for trun_box in truns {
                let trun = decode::<Trun>(&trun_box)?;
                let count = trun.samples.len();
                if count > MAX_SAMPLES_PER_RUN {
                    return Err(format!(
                        "trun at byte {}: {count} samples (at most {MAX_SAMPLES_PER_RUN})",
                        trun_box.at
                    ));
                }
                run.samples += count;
                if run.samples > MAX_SAMPLES_PER_SEGMENT {
                    return Err(format!(
                        "trun at byte {}: over {MAX_SAMPLES_PER_SEGMENT} samples in the segment",
                        trun_box.at
                    ));
                }
                // 8.8.8.3: without data_offset a run continues where the previous one ended.
                if let Some(offset) = trun.data_offset {
                    pos = base + i128::from(offset);
                }
                for (n, sample) in trun.samples.iter().enumerate() {
                    // mp4-atom already put first_sample_flags into the first entry's flags.
                    let size = sample
                        .size
                        .or(tfhd.default_sample_size)
                        .unwrap_or(trex.size);
                    let duration = sample
                        .duration
                        .or(tfhd.default_sample_duration)
                        .unwrap_or(trex.duration);
                    let flags = sample
                        .flags
                        .or(tfhd.default_sample_flags)
                        .unwrap_or(trex.flags);
                    let start = pos;
                    pos += i128::from(size);
                    if let Some(i) = kept
                        && size > 0
                    {
                        let track = &self.tracks[i];
                        let range = usize::try_from(start)
                            .ok()
                            .zip(usize::try_from(pos).ok())
                            .filter(|&(_, end)| end <= buf.len());
                        let Some((from, to)) = range else {
                            return Err(format!(
                                "trun at byte {}: sample {n} of track {} at bytes {start}..{pos} \
                                 lies outside the {}-byte segment",
                                trun_box.at,
                                track.id,
                                buf.len()
                            ));
                        };
                        let cts = sample.cts.map_or(0, i128::from);
                        let frame = Frame {
                            track: track.kind,
                            dts: to_hub(dts - track.shift, track.timescale)?,
                            pts: to_hub(dts + cts - track.shift, track.timescale)?,
                            keyframe: match track.kind {
                                TrackKind::Audio => true,
                                TrackKind::Video => flags & NON_SYNC_SAMPLE == 0,
                            },
                            payload: buf.slice(from..to),
                        };
                        match track.kind {
                            TrackKind::Video => run.video.push(frame),
                            TrackKind::Audio => run.audio.push(frame),
                        }
                    }
                    dts += i128::from(duration);
                }
            }
            implicit_base = pos;
            if let Some(i) = kept {
                run.next_dts[i] = Some(dts);
            }
        }
        Ok(())
    }
}

/// What one segment produced so far; committed to the feed only when the segment parsed whole.
struct SegmentRun {
    video: Vec<Frame>,
    audio: Vec<Frame>,
    /// Samples declared so far, all tracks together.
    samples: usize,
    /// Each kept track's next decode time, in the order of `Fmp4Feed::tracks`.
    next_dts: Vec<Option<i128>>,
}

/// Track ticks to hub ticks, rounding toward negative infinity.
fn to_hub(ticks: i128, timescale: u32) -> Result<i64, String> {
    // |ticks| < 2^98 (u64 times, capped sums of u32s, an edit list's u64 duration rescaled by a
    // u32 timescale), so the product stays below 2^115.
    let hub = (ticks * i128::from(TIMEBASE)).div_euclid(i128::from(timescale));
    i64::try_from(hub)
        .map_err(|_| format!("time {ticks} at 1/{timescale} s does not fit the 90 kHz clock"))
}

fn defaults_of(trex: &[(u32, SampleDefaults)], track_id: u32) -> SampleDefaults {
    trex.iter()
        .find(|(id, _)| *id == track_id)
        .map_or_else(SampleDefaults::default, |(_, d)| *d)
}

/// A kept track and its codec, or `None` (logged) for a track the hub cannot carry.
fn parse_trak(trak: &BoxRef<'_>, movie_timescale: u32) -> Result<Option<(Track, Codec)>, String> {
    // The handler first, so a timed-metadata or subtitle track is skipped before its boxes are.
    let mdia = find(trak, b"mdia")?.ok_or_else(|| format!("trak at byte {}: no mdia", trak.at))?;
    let handler = find(&mdia, b"hdlr")?
        .and_then(|h| h.body.get(8..12)) // version/flags, pre_defined, handler_type
        .ok_or_else(|| format!("trak at byte {}: no hdlr", trak.at))?;
    let kind = match handler {
        b"vide" => TrackKind::Video,
        b"soun" => TrackKind::Audio,
        other => {
            tracing::debug!(
                at = trak.at,
                handler = %fourcc(other),
                "fMP4 input: skipping a track that is neither video nor audio"
            );
            return Ok(None);
        }
    };
    let tkhd = find(trak, b"tkhd")?.ok_or_else(|| format!("trak at byte {}: no tkhd", trak.at))?;
    let id = decode::<Tkhd>(&tkhd)?.track_id;
    let mdhd = find(&mdia, b"mdhd")?.ok_or_else(|| format!("track {id}: no mdhd"))?;
    let timescale = decode::<Mdhd>(&mdhd)?.timescale;
    if timescale == 0 {
        return Err(format!("track {id}: mdhd timescale 0"));
    }
    let stsd = find_path(&mdia, &[b"minf", b"stbl", b"stsd"])?
        .ok_or_else(|| format!("track {id}: no minf/stbl/stsd"))?;
    let entry = first_sample_entry(&stsd)?;
    let codec = match kind {
        TrackKind::Video => video_codec(id, &entry)?.map(Codec::Video),
        TrackKind::Audio => audio_codec(id, &entry)?.map(Codec::Audio),
    };
    let Some(codec) = codec else {
        return Ok(None);
    };
    let shift = match find_path(trak, &[b"edts", b"elst"])? {
        None => 0,
        Some(elst) => match decode::<Elst>(&elst) {
            Ok(elst) => edit_shift(&elst, movie_timescale, timescale),
            Err(e) => {
                tracing::debug!(track = id, error = %e, "fMP4 input: ignoring a bad edit list");
                0
            }
        },
    };
    let track = Track {
        id,
        kind,
        timescale,
        shift,
        next_dts: None,
    };
    Ok(Some((track, codec)))
}

/// What to subtract from a track's times for its edit list, in track ticks (8.6.6), as ffmpeg's
/// mov demuxer computes it: the first non-empty edit's media_time minus a leading empty edit.
/// Later edits (rare in fragmented files) are not applied.
fn edit_shift(elst: &Elst, movie_timescale: u32, timescale: u32) -> i128 {
    let mut entries = elst.entries.iter();
    let mut edit = entries.next();
    let mut empty = 0i128;
    if let Some(e) = edit
        && e.media_time.is_none()
    {
        if movie_timescale > 0 {
            // Rounded to nearest like ffmpeg's av_rescale.
            let scaled = i128::from(e.segment_duration) * i128::from(timescale);
            empty = (scaled + i128::from(movie_timescale) / 2) / i128::from(movie_timescale);
        }
        edit = entries.next();
    }
    let start = edit.and_then(|e| e.media_time).map_or(0, i128::from);
    if entries.next().is_some() {
        tracing::debug!("fMP4 input: only the first edit of an edit list is applied");
    }
    start - empty
}

/// The first entry of an `stsd` (a track fragment may pick another with
/// sample_description_index; encoders write one).
fn first_sample_entry<'a>(stsd: &BoxRef<'a>) -> Result<BoxRef<'a>, String> {
    // FullBox version/flags, entry_count.
    let entries = stsd
        .body
        .get(8..)
        .ok_or_else(|| format!("stsd at byte {}: truncated", stsd.at))?;
    match Boxes::within(entries, stsd.body_at + 8).next() {
        Some(entry) => entry,
        None => Err(format!("stsd at byte {}: no sample entry", stsd.at)),
    }
}

/// The child boxes of a sample entry, after its `fixed` bytes of fields.
fn entry_children<'a>(entry: &BoxRef<'a>, fixed: usize) -> Result<Boxes<'a>, String> {
    let rest = entry.body.get(fixed..).ok_or_else(|| {
        format!(
            "{} sample entry at byte {}: shorter than its {fixed} bytes of fields",
            fourcc(&entry.kind),
            entry.at
        )
    })?;
    Ok(Boxes::within(rest, entry.body_at + fixed))
}

fn video_codec(id: u32, entry: &BoxRef<'_>) -> Result<Option<VideoCodec>, String> {
    let in_band = match &entry.kind {
        b"avc1" => false,
        // avc3 may carry its parameter sets only in band; usable when avcC has them too.
        b"avc3" => true,
        other => {
            tracing::debug!(
                track = id,
                codec = %fourcc(other),
                "fMP4 input: skipping a video track the hub cannot carry"
            );
            return Ok(None);
        }
    };
    let mut avcc = None;
    for b in entry_children(entry, VISUAL_SAMPLE_ENTRY_LEN)? {
        let b = b?;
        if &b.kind == b"avcC" {
            avcc = Some(b);
            break;
        }
    }
    let parsed = match avcc {
        Some(b) => AvcConfig::parse(Bytes::copy_from_slice(b.body)).map_err(|e| e.to_string()),
        None => Err("no avcC".to_string()),
    };
    match parsed {
        Ok(config) => Ok(Some(VideoCodec::H264(config))),
        Err(e) if in_band => {
            tracing::debug!(
                track = id,
                error = %e,
                "fMP4 input: skipping an avc3 track without parameter sets in avcC"
            );
            Ok(None)
        }
        Err(e) => Err(format!("track {id} ({}): {e}", fourcc(&entry.kind))),
    }
}

fn audio_codec(id: u32, entry: &BoxRef<'_>) -> Result<Option<AudioCodec>, String> {
    if &entry.kind != b"mp4a" {
        tracing::debug!(
            track = id,
            codec = %fourcc(&entry.kind),
            "fMP4 input: skipping an audio track the hub cannot carry"
        );
        return Ok(None);
    }
    // QuickTime sound sample description versions 1 and 2 add 16 and 36 bytes of fields.
    let fixed = match entry.body.get(8..10) {
        Some([0, 0]) => AUDIO_SAMPLE_ENTRY_LEN,
        Some([0, 1]) => AUDIO_SAMPLE_ENTRY_LEN + 16,
        Some([0, 2]) => AUDIO_SAMPLE_ENTRY_LEN + 36,
        Some(v) => return Err(format!("track {id}: mp4a sample entry version {v:02x?}")),
        None => return Err(format!("track {id}: truncated mp4a sample entry")),
    };
    let mut esds = None;
    for b in entry_children(entry, fixed)? {
        let b = b?;
        match &b.kind {
            b"esds" => esds = Some(b),
            // QuickTime wraps esds in a wave box.
            b"wave" if esds.is_none() => esds = find(&b, b"esds")?,
            _ => {}
        }
        if esds.is_some() {
            break;
        }
    }
    let esds = esds.ok_or_else(|| format!("track {id}: mp4a without esds"))?;
    let (object_type, asc) = audio_specific_config(esds.body)
        .map_err(|e| format!("track {id}: esds at byte {}: {e}", esds.at))?;
    // ISO/IEC 14496-1 objectTypeIndication: MPEG-4 audio, MPEG-2 AAC Main/LC/SSR.
    if !matches!(object_type, 0x40 | 0x66..=0x68) {
        tracing::debug!(
            track = id,
            object_type,
            "fMP4 input: skipping an mp4a track that is not AAC"
        );
        return Ok(None);
    }
    let config = AacConfig::parse(Bytes::copy_from_slice(asc))
        .map_err(|e| format!("track {id}: esds AudioSpecificConfig: {e}"))?;
    Ok(Some(AudioCodec::Aac(config)))
}

/// The objectTypeIndication and DecoderSpecificInfo of an `esds` body (ISO/IEC 14496-1 7.2.6).
fn audio_specific_config(body: &[u8]) -> Result<(u8, &[u8]), String> {
    let descriptors = body.get(4..).ok_or("truncated")?; // FullBox version/flags
    let es = find_descriptor(descriptors, 0x03).ok_or("no ES_Descriptor")?;
    let flags = *es.get(2).ok_or("truncated ES_Descriptor")?;
    let mut at = 3; // ES_ID, flags
    if flags & 0x80 != 0 {
        at += 2; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at).ok_or("truncated ES_Descriptor URL")?);
    }
    if flags & 0x20 != 0 {
        at += 2; // OCR_ES_Id
    }
    let config = es
        .get(at..)
        .and_then(|d| find_descriptor(d, 0x04))
        .ok_or("no DecoderConfigDescriptor")?;
    let object_type = *config.first().ok_or("empty DecoderConfigDescriptor")?;
    // objectTypeIndication, streamType, bufferSizeDB, maxBitrate, avgBitrate.
    let asc = config
        .get(13..)
        .and_then(|d| find_descriptor(d, 0x05))
        .ok_or("no DecoderSpecificInfo")?;
    Ok((object_type, asc))
}

/// The body of the first descriptor tagged `tag` in a run of descriptors.
fn find_descriptor(mut data: &[u8], tag: u8) -> Option<&[u8]> {
    while let Some((&this, rest)) = data.split_first() {
        // Size: up to four bytes of 7 bits, high bit set on all but the last.
        let mut len = 0usize;
        let mut header = None;
        for (i, &b) in rest.iter().take(4).enumerate() {
            len = (len << 7) | usize::from(b & 0x7f);
            if b & 0x80 == 0 {
                header = Some(i + 1);
                break;
            }
        }
        let header = header?;
        let body = rest.get(header..header.checked_add(len)?)?;
        if this == tag {
            return Some(body);
        }
        data = &rest[header + len..];
    }
    None
}

/// One box found in a buffer.
#[derive(Clone, Copy, Debug)]
struct BoxRef<'a> {
    kind: [u8; 4],
    /// Offset of the box header from the start of the init or media segment.
    at: usize,
    /// Offset of the body from the start of the init or media segment.
    body_at: usize,
    /// The whole box, header included (what mp4-atom decodes).
    raw: &'a [u8],
    /// The box after its header.
    body: &'a [u8],
}

/// Iterates the boxes laid end to end in a buffer; the first malformed one ends it with an error.
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` from the start of the segment, for `BoxRef::at` and messages.
    base: usize,
    /// Inside a box, fewer than 8 trailing bytes are padding (QuickTime's 4-byte terminator);
    /// at the top level they are a truncated header.
    nested: bool,
    done: bool,
}

impl<'a> Boxes<'a> {
    fn top(data: &'a [u8]) -> Self {
        Boxes {
            data,
            pos: 0,
            base: 0,
            nested: false,
            done: false,
        }
    }

    fn children(parent: &BoxRef<'a>) -> Self {
        Self::within(parent.body, parent.body_at)
    }

    fn within(data: &'a [u8], base: usize) -> Self {
        Boxes {
            data,
            pos: 0,
            base,
            nested: true,
            done: false,
        }
    }

    fn header(&self, rest: &'a [u8]) -> Result<Option<BoxRef<'a>>, String> {
        let at = self.base + self.pos;
        let Some((size, kind)) = rest.split_first_chunk::<4>().and_then(|(size, rest)| {
            let kind = rest.first_chunk::<4>()?;
            Some((u32::from_be_bytes(*size), *kind))
        }) else {
            return if self.nested {
                Ok(None)
            } else {
                Err(format!("truncated box header at byte {at}"))
            };
        };
        let (header_len, size) = match size {
            0 => (8, rest.len()), // to the end of the enclosing buffer
            1 => {
                let large = rest
                    .get(8..16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| {
                        format!("{} box at byte {at}: truncated 64-bit size", fourcc(&kind))
                    })?;
                (16, usize::try_from(large).unwrap_or(usize::MAX))
            }
            n => (8, usize::try_from(n).unwrap_or(usize::MAX)),
        };
        if size < header_len {
            return Err(format!(
                "{} box at byte {at}: size {size} is smaller than its header",
                fourcc(&kind)
            ));
        }
        let Some(raw) = rest.get(..size) else {
            return Err(format!(
                "{} box at byte {at}: {size} bytes, only {} left (truncated)",
                fourcc(&kind),
                rest.len()
            ));
        };
        Ok(Some(BoxRef {
            kind,
            at,
            body_at: at + header_len,
            raw,
            body: &raw[header_len..],
        }))
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<BoxRef<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self
            .data
            .get(self.pos..)
            .filter(|r| !r.is_empty() && !self.done)?;
        match self.header(rest) {
            Ok(Some(b)) => {
                self.pos += b.raw.len();
                Some(Ok(b))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The first top-level box of `kind`.
fn find_top<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<BoxRef<'a>>, String> {
    for b in Boxes::top(data) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// The first child of `parent` of `kind`.
fn find<'a>(parent: &BoxRef<'a>, kind: &[u8; 4]) -> Result<Option<BoxRef<'a>>, String> {
    for b in Boxes::children(parent) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// The box at `path` below `parent`, following the first child of each kind.
fn find_path<'a>(parent: &BoxRef<'a>, path: &[&[u8; 4]]) -> Result<Option<BoxRef<'a>>, String> {
    let mut at = *parent;
    for kind in path {
        match find(&at, kind)? {
            Some(b) => at = b,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// Decodes a leaf box with mp4-atom.
fn decode<T: Decode>(b: &BoxRef<'_>) -> Result<T, String> {
    T::decode(&mut &b.raw[..]).map_err(|e| format!("{} box at byte {}: {e}", fourcc(&b.kind), b.at))
}

/// A box type or codec for messages, with unprintable bytes as `.`.
fn fourcc(kind: &[u8]) -> String {
    kind.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                char::from(c)
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::avc::{avcc_contains_idr, avcc_nal_units};
    use mp4_atom::{Encode, Mdat, Mfhd, Moof, Traf, TrunEntry, TrunSamples};

    // ffmpeg 5.1 `-f hls -hls_segment_type fmp4`; see testdata/hls-fmp4/README.md.
    const INIT: &[u8] = include_bytes!("../../../../testdata/hls-fmp4/init.mp4");
    const SEG0: &[u8] = include_bytes!("../../../../testdata/hls-fmp4/seg0.m4s");
    const SEG1: &[u8] = include_bytes!("../../../../testdata/hls-fmp4/seg1.m4s");
    const SEG0_PACKETS: &str = include_str!("../../../../testdata/hls-fmp4/seg0.packets.csv");
    const SEG1_PACKETS: &str = include_str!("../../../../testdata/hls-fmp4/seg1.packets.csv");
    const VIDEO_TIMESCALE: i64 = 12_800;
    const AUDIO_TIMESCALE: i64 = 48_000;

    /// (dts, pts, size, keyframe) of one stream of an `ffprobe -show_packets` CSV
    /// (`stream_index,pts,dts,size,flags`), times in 90 kHz.
    fn ffprobe(csv: &str, kind: TrackKind) -> Vec<(i64, i64, usize, bool)> {
        let (stream, timescale) = match kind {
            TrackKind::Video => ("0", VIDEO_TIMESCALE),
            TrackKind::Audio => ("1", AUDIO_TIMESCALE),
        };
        let hub = |t: &str| (t.parse::<i64>().unwrap() * TIMEBASE).div_euclid(timescale);
        csv.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f[0] == stream)
            .map(|f| {
                (
                    hub(f[2]),
                    hub(f[1]),
                    f[3].parse().unwrap(),
                    f[4].starts_with('K'),
                )
            })
            .collect()
    }

    fn frames(events: &[SourceEvent], kind: TrackKind) -> Vec<&Frame> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Frame(f) if f.track == kind => Some(f),
                _ => None,
            })
            .collect()
    }

    fn summary(frames: &[&Frame]) -> Vec<(i64, i64, usize, bool)> {
        frames
            .iter()
            .map(|f| (f.dts, f.pts, f.payload.len(), f.keyframe))
            .collect()
    }

    fn tracks_events(events: &[SourceEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, SourceEvent::Tracks(_)))
            .count()
    }

    #[test]
    fn ffmpeg_init_reads_h264_and_aac() {
        let feed = Fmp4Feed::new(INIT).unwrap();
        let avc = feed.info.avc().expect("H.264 track");
        assert_eq!((avc.width, avc.height, avc.nal_length_size), (320, 240, 4));
        assert_eq!(avc.profile_idc, 100); // High
        let aac = feed.info.aac().expect("AAC track");
        assert_eq!(
            (aac.object_type, aac.sample_rate, aac.channel_config),
            (2, 48_000, 2)
        );
        // ffmpeg writes zero trex defaults, so no container frame rate.
        assert_eq!(feed.info.framerate, None);
        // Edit lists: video 80 ms empty + media_time 1024 (net 0); audio a 58 ms empty edit.
        let shifts: Vec<_> = feed
            .tracks
            .iter()
            .map(|t| (t.id, t.timescale, t.shift))
            .collect();
        assert_eq!(shifts, [(1, 12_800, 0), (2, 48_000, -2784)]);
    }

    #[test]
    fn ffmpeg_segment_matches_ffprobe() {
        let mut feed = Fmp4Feed::new(INIT).unwrap();
        let events = feed.segment(SEG0).unwrap();
        let SourceEvent::Tracks(info) = &events[0] else {
            panic!("no tracks first: {:?}", events[0])
        };
        assert!(info.avc().is_some() && info.aac().is_some());
        assert_eq!(tracks_events(&events), 1);
        let video = frames(&events, TrackKind::Video);
        let audio = frames(&events, TrackKind::Audio);
        assert_eq!((video.len(), audio.len()), (25, 45));
        assert_eq!(events.len(), 1 + 25 + 45);
        // Every packet: dts, pts, size and key flag as ffprobe reads them.
        assert_eq!(summary(&video), ffprobe(SEG0_PACKETS, TrackKind::Video));
        assert_eq!(summary(&audio), ffprobe(SEG0_PACKETS, TrackKind::Audio));
        // Spot checks in ffprobe's own ticks: video pts 1024/dts 0 (B-frames), then 3072/512.
        assert_eq!((video[0].dts, video[0].pts), (0, 1024 * 90_000 / 12_800));
        assert_eq!((video[1].dts, video[1].pts), (3600, 3072 * 90_000 / 12_800));
        assert_eq!(audio[0].dts, 2784 * 90_000 / 48_000); // the 58 ms empty edit
        assert_eq!(audio[0].payload.len(), 86);

        assert!(video[0].keyframe);
        for f in &video {
            // AVCC with 4-byte lengths that exactly cover the payload; IDR exactly on sync samples.
            assert!(avcc_nal_units(&f.payload, 4).all(|n| n.is_ok()));
            assert_eq!(avcc_contains_idr(&f.payload, 4), f.keyframe, "{f:?}");
        }
        assert!(audio.iter().all(|f| f.keyframe && f.pts == f.dts));
        for list in [&video, &audio] {
            assert!(list.windows(2).all(|w| w[0].dts <= w[1].dts));
        }
        // Interleaved by decode time across tracks.
        let dts: Vec<i64> = events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Frame(f) => Some(f.dts),
                _ => None,
            })
            .collect();
        assert!(dts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn ffmpeg_next_segment_continues_without_new_tracks() {
        let mut feed = Fmp4Feed::new(INIT).unwrap();
        feed.segment(SEG0).unwrap();
        let events = feed.segment(SEG1).unwrap();
        assert_eq!(tracks_events(&events), 0);
        let video = frames(&events, TrackKind::Video);
        let audio = frames(&events, TrackKind::Audio);
        assert_eq!(summary(&video), ffprobe(SEG1_PACKETS, TrackKind::Video));
        assert_eq!(summary(&audio), ffprobe(SEG1_PACKETS, TrackKind::Audio));
        assert_eq!(video[0].dts, 90_000); // tfdt 12800 at 1/12800 s
        assert!(video[0].keyframe);
    }

    #[test]
    fn several_moof_mdat_pairs_in_one_segment() {
        let joined = [SEG0, SEG1].concat();
        let events = Fmp4Feed::new(INIT).unwrap().segment(&joined).unwrap();
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let mut want = ffprobe(SEG0_PACKETS, kind);
            want.extend(ffprobe(SEG1_PACKETS, kind));
            assert_eq!(summary(&frames(&events, kind)), want);
        }
    }

    /// The init with track `id`'s trex defaults replaced.
    fn init_with_trex(id: u32, duration: u32, size: u32, flags: u32) -> Vec<u8> {
        let mut init = INIT.to_vec();
        let mut found = false;
        for at in 0..init.len() - 28 {
            // "trex", version/flags, track_ID, sample_description_index, duration, size, flags.
            if &init[at..at + 4] == b"trex" && init[at + 8..at + 12] == id.to_be_bytes() {
                init[at + 16..at + 20].copy_from_slice(&duration.to_be_bytes());
                init[at + 20..at + 24].copy_from_slice(&size.to_be_bytes());
                init[at + 24..at + 28].copy_from_slice(&flags.to_be_bytes());
                found = true;
            }
        }
        assert!(found);
        init
    }

    /// `prefix` + moof + mdat(`payload`); `trafs` gets the offset of the mdat body from the start
    /// of the segment and from the start of the moof.
    fn build(prefix: &[u8], payload: &[u8], trafs: impl Fn(u64, i32) -> Vec<Traf>) -> Vec<u8> {
        let moof = |traf| Moof {
            mfhd: Mfhd { sequence_number: 1 },
            traf,
        };
        let mut probe = Vec::new();
        moof(trafs(0, 0)).encode(&mut probe).unwrap();
        let from_moof = probe.len() + 8;
        let mut out = prefix.to_vec();
        moof(trafs((prefix.len() + from_moof) as u64, from_moof as i32))
            .encode(&mut out)
            .unwrap();
        Mdat {
            data: payload.to_vec(),
        }
        .encode(&mut out)
        .unwrap();
        out
    }

    fn traf(tfhd: Tfhd, tfdt: Option<u64>, trun: Trun) -> Traf {
        Traf {
            tfhd,
            tfdt: tfdt.map(|t| Tfdt {
                base_media_decode_time: t,
            }),
            trun: vec![trun],
            ..Default::default()
        }
    }

    fn entry(size: u32, duration: u32, flags: Option<u32>, cts: Option<i64>) -> TrunEntry {
        TrunEntry {
            duration: Some(duration),
            size: Some(size),
            flags,
            cts,
        }
    }

    const SYNC: u32 = 0x0200_0000; // sample_depends_on 2
    const NON_SYNC: u32 = 0x0101_0000; // sample_depends_on 1, non-sync

    /// Precedence trun > tfhd > trex (8.8.7, 8.8.8), first_sample_flags, and implicit data
    /// offsets: no default-base-is-moof, so the first traf starts at the moof and each later one
    /// where the previous one's data ended, including a track the feed does not keep.
    fn implicit_segment(video_tfdt: Option<u64>) -> Vec<u8> {
        let payload: Vec<u8> = (0..344u32).map(|i| i as u8).collect();
        let free = b"\0\0\0\x10freefreefree";
        build(free, &payload, |_, from_moof| {
            vec![
                traf(
                    Tfhd {
                        track_id: 1,
                        default_sample_flags: Some(NON_SYNC), // over trex's 0 (sync)
                        ..Default::default()
                    },
                    video_tfdt,
                    Trun {
                        data_offset: Some(from_moof),
                        samples: TrunSamples::Inherited {
                            count: 3,
                            first_flags: Some(SYNC),
                        },
                    },
                ),
                traf(
                    Tfhd {
                        track_id: 9, // not in the init: its 2 x 7 bytes are skipped
                        default_sample_size: Some(7),
                        ..Default::default()
                    },
                    None,
                    Trun {
                        data_offset: None,
                        samples: TrunSamples::Inherited {
                            count: 2,
                            first_flags: None,
                        },
                    },
                ),
                traf(
                    Tfhd {
                        track_id: 2,
                        ..Default::default()
                    },
                    None,
                    Trun {
                        data_offset: None,
                        samples: vec![entry(10, 1024, None, None), entry(20, 1024, None, None)]
                            .into(),
                    },
                ),
            ]
        })
    }

    #[test]
    fn sample_defaults_and_implicit_offsets() {
        let init = init_with_trex(1, 512, 100, 0);
        let mut feed = Fmp4Feed::new(&init).unwrap();
        assert_eq!(feed.info.framerate, Some(25.0)); // 12800 / 512
        let events = feed.segment(&implicit_segment(Some(12_800))).unwrap();
        let video = frames(&events, TrackKind::Video);
        let audio = frames(&events, TrackKind::Audio);
        let v: Vec<_> = video.iter().map(|f| (f.dts, f.pts, f.keyframe)).collect();
        assert_eq!(
            v,
            [
                (90_000, 90_000, true),
                (93_600, 93_600, false),
                (97_200, 97_200, false)
            ]
        );
        for (i, f) in video.iter().enumerate() {
            let first = (i * 100) as u8;
            assert_eq!(f.payload.len(), 100);
            assert_eq!(
                (f.payload[0], f.payload[99]),
                (first, first.wrapping_add(99))
            );
        }
        // Audio starts after video (300) and the skipped track (14); dts 0 + the 2784-tick edit.
        let a: Vec<_> = audio
            .iter()
            .map(|f| (f.dts, f.payload.len(), f.payload[0]))
            .collect();
        assert_eq!(a, [(5220, 10, 58), (7140, 20, 68)]);
        // Merged by dts: both audio frames come first.
        assert!(matches!(&events[1], SourceEvent::Frame(f) if f.track == TrackKind::Audio));
        assert!(matches!(&events[3], SourceEvent::Frame(f) if f.track == TrackKind::Video));

        // Without tfdt each track continues where its previous fragment ended.
        let events = feed.segment(&implicit_segment(None)).unwrap();
        assert_eq!(tracks_events(&events), 0);
        assert_eq!(
            frames(&events, TrackKind::Video)[0].dts,
            14_336 * 90_000 / 12_800
        );
        assert_eq!(
            frames(&events, TrackKind::Audio)[0].dts,
            (2048 + 2784) * 90_000 / 48_000
        );
    }

    #[test]
    fn signed_composition_offsets_and_base_data_offset() {
        let payload = *b"0123456789";
        let segment = build(b"", &payload, |from_segment, _| {
            vec![traf(
                Tfhd {
                    track_id: 1,
                    base_data_offset: Some(from_segment),
                    ..Default::default()
                },
                Some(0),
                Trun {
                    data_offset: Some(0),
                    samples: vec![
                        entry(4, 512, Some(SYNC), Some(1024)),
                        entry(6, 512, Some(NON_SYNC), Some(-512)), // trun v1
                    ]
                    .into(),
                },
            )]
        });
        let events = Fmp4Feed::new(INIT).unwrap().segment(&segment).unwrap();
        let video = frames(&events, TrackKind::Video);
        let v: Vec<_> = video
            .iter()
            .map(|f| (f.dts, f.pts, f.keyframe, &f.payload[..]))
            .collect();
        assert_eq!(
            v,
            [
                (0, 7200, true, &b"0123"[..]),
                (3600, 0, false, &b"456789"[..])
            ]
        );
    }

    #[test]
    fn hostile_fragments_are_errors() {
        let video = |tfdt, samples: TrunSamples| {
            build(b"", &[0; 16], move |_, from_moof| {
                vec![traf(
                    Tfhd {
                        track_id: 1,
                        default_base_is_moof: true,
                        default_sample_size: Some(1),
                        ..Default::default()
                    },
                    tfdt,
                    Trun {
                        data_offset: Some(from_moof),
                        samples: samples.clone(),
                    },
                )]
            })
        };
        let inherited = |count| TrunSamples::Inherited {
            count,
            first_flags: None,
        };
        let mut feed = Fmp4Feed::new(INIT).unwrap();
        let err = feed
            .segment(&video(Some(u64::MAX), inherited(1)))
            .unwrap_err();
        assert!(err.contains("90 kHz"), "{err}");
        let err = feed
            .segment(&video(Some(0), inherited(u32::MAX)))
            .unwrap_err();
        assert!(err.contains("samples"), "{err}");
        let err = feed.segment(&video(Some(0), inherited(17))).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let two = feed.segment(&video(Some(0), vec![entry(1, 1, None, None); 2].into()));
        assert_eq!(frames(&two.unwrap(), TrackKind::Video).len(), 2);
        let huge = feed.segment(&video(Some(0), vec![entry(u32::MAX, 1, None, None)].into()));
        assert!(huge.unwrap_err().contains("outside"));
        assert!(feed.segment(b"").unwrap_err().contains("no moof"));
        assert!(feed.segment(&SEG0[..688]).unwrap_err().contains("outside"));
        assert!(
            feed.segment(b"\0\0\0\x08moo")
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            feed.segment(b"\0\0\0\x04moof")
                .unwrap_err()
                .contains("smaller")
        );
        assert!(Fmp4Feed::new(b"").unwrap_err().contains("no moov"));
        assert!(Fmp4Feed::new(SEG0).unwrap_err().contains("no moov"));
    }

    #[test]
    fn truncated_and_garbled_input_never_panics() {
        let mut feed = Fmp4Feed::new(INIT).unwrap();
        // Every proper prefix cuts a box (or stops before the mdat the samples point into).
        for len in 0..SEG0.len() {
            assert!(feed.segment(&SEG0[..len]).is_err(), "prefix {len}");
        }
        for len in 0..INIT.len() {
            assert!(Fmp4Feed::new(&INIT[..len]).is_err(), "prefix {len}");
        }
        // Deterministic bit flips, mostly in the box structure (moof ends at byte 688).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for round in 0..4000 {
            let mut seg = SEG0.to_vec();
            let mut init = INIT.to_vec();
            for _ in 0..1 + random(3) {
                let at = if round % 4 == 0 {
                    random(seg.len())
                } else {
                    random(688)
                };
                seg[at] ^= 1 << random(8);
                let at = random(init.len());
                init[at] ^= 1 << random(8);
            }
            let _ = feed.segment(&seg);
            if let Ok(mut garbled) = Fmp4Feed::new(&init) {
                let _ = garbled.segment(SEG0);
                let _ = garbled.segment(&seg);
            }
        }
        // The feed still works after all that.
        let mut feed = Fmp4Feed::new(INIT).unwrap();
        assert_eq!(feed.segment(SEG0).unwrap().len(), 71);
    }

    #[test]
    fn a_fragment_behind_its_track_never_sends_decode_times_back() {
        // Found by the fmp4_segment fuzz target: [u32 BE length][init][u32 BE length][segment].
        let data: &[u8] =
            include_bytes!("../../../../testdata/fuzz/fmp4_segment-tfdt-backwards.bin");
        let mut parts = Vec::new();
        let mut rest = data;
        while rest.len() >= 4 {
            let n = (u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize)
                .min(rest.len() - 4);
            parts.push(&rest[4..4 + n]);
            rest = &rest[4 + n..];
        }
        let (init, segments) = parts.split_first().unwrap();
        crate::fuzzing::fmp4_segments(init, segments);
    }
}
