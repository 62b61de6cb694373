//! MPEG-TS demuxer (ISO/IEC 13818-1): transport packets in, hub [`Frame`]s out.
//!
//! Sans-I/O: [`TsDemuxer::push`] takes bytes in any chunking (SRT delivers 7 packets per
//! datagram, files arrive in arbitrary reads), [`TsDemuxer::poll_event`] hands out what they
//! completed. One program is followed (the first in the PAT); its first H.264 (0x1B) and first
//! ADTS AAC (0x0F) elementary streams become the video and audio tracks, anything else is skipped
//! and reported in [`DemuxStats::skipped_streams`]. Every buffer is bounded, and no input panics.

use std::collections::VecDeque;

use bytes::Bytes;
use media::avc::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use media::{
    AacConfig, AudioCodec, AvcConfig, Frame, HevcConfig, MediaInfo, TrackKind, VideoCodec, hevc,
};

use crate::{PACKET_SIZE, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265, crc32_mpeg2};

/// A PES larger than this is dropped: a 4K intra frame at high bitrate stays well below it, and
/// an unbounded video PES whose next start never arrives must not grow without limit.
pub const MAX_PES_SIZE: usize = 8 << 20;
/// Frames held back until every track's configuration is known; older ones are dropped.
pub const MAX_PENDING_FRAMES: usize = 256;
/// Payload bytes held back until the tracks are known, so 256 huge frames cannot pin GiBs.
pub const MAX_PENDING_BYTES: usize = 32 << 20;
/// Skipped elementary streams remembered in [`DemuxStats::skipped_streams`].
const MAX_SKIPPED_LISTED: usize = 16;

const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0x0000;
const NULL_PID: u16 = 0x1fff;
const TABLE_PAT: u8 = 0x00;
const TABLE_PMT: u8 = 0x02;
/// 13818-1 2.4.4.5/2.4.4.9: `section_length` of a PAT or PMT never exceeds 1021.
const MAX_SECTION_LENGTH: usize = 1021;
const WRAP: i64 = 1 << 33;

/// What the demuxer produced.
#[derive(Clone, Debug, PartialEq)]
pub enum DemuxEvent {
    /// The tracks, the first time every elementary stream's configuration is known, and again
    /// whenever one changes (new SPS/PPS, other AAC parameters, PMT adds or removes a stream).
    Tracks(Box<MediaInfo>),
    /// One access unit: H.264 as AVCC with 4-byte lengths (no AUD/SPS/PPS), AAC as a raw AU.
    Frame(Frame),
    /// Data was lost on `pid` (continuity gap, oversized PES); a partial PES was dropped.
    Discontinuity {
        /// The PID that lost data.
        pid: u16,
        /// Why, for logs.
        reason: &'static str,
    },
}

/// An elementary stream the PMT announced but this demuxer does not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedStream {
    /// Its PID.
    pub pid: u16,
    /// Its `stream_type` (13818-1 Table 2-34).
    pub stream_type: u8,
    /// A short name for logs and the API.
    pub name: &'static str,
}

/// Counters since the demuxer was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Transport packets processed.
    pub packets: u64,
    /// Continuity counter gaps on followed PIDs.
    pub cc_errors: u64,
    /// Duplicate packets (same continuity counter) ignored.
    pub duplicates: u64,
    /// Times sync was lost and regained; bytes thrown away meanwhile are in `skipped_bytes`.
    pub resyncs: u64,
    /// Bytes that were not part of a transport packet.
    pub skipped_bytes: u64,
    /// Packets with `transport_error_indicator` set or a malformed adaptation field (dropped).
    pub bad_packets: u64,
    /// PSI sections dropped: CRC mismatch, bad length, malformed content.
    pub section_errors: u64,
    /// PES packets dropped or cut short: bad header, no PTS, truncated, over [`MAX_PES_SIZE`],
    /// undecodable ADTS, unusable SPS/PPS.
    pub pes_errors: u64,
    /// Payload packets that belonged to no open PES (joined mid-PES, or after an error).
    pub orphan_payloads: u64,
    /// PCRs seen on followed PIDs; PCR is not otherwise used.
    pub pcrs: u64,
    /// Frames dropped because the tracks were not known yet and the backlog was full.
    pub pending_dropped: u64,
    /// Elementary streams skipped because of their type (first few listed in `skipped_streams`).
    pub skipped_stream_count: u64,
    /// The first skipped elementary streams.
    pub skipped_streams: Vec<SkippedStream>,
}

/// Short name of a `stream_type` for [`SkippedStream::name`].
fn stream_type_name(stream_type: u8) -> &'static str {
    match stream_type {
        0x01 => "mpeg1-video",
        0x02 => "mpeg2-video",
        0x03 => "mpeg1-audio",
        0x04 => "mpeg2-audio",
        0x05 => "private-sections",
        0x06 => "pes-private-data",
        0x0f => "aac-adts",
        0x11 => "aac-latm",
        0x15 => "metadata",
        0x1b => "h264",
        0x24 => "hevc",
        0x81 => "ac3",
        0x86 => "scte35",
        0x87 => "eac3",
        _ => "unknown",
    }
}

/// Result of checking a packet's continuity counter.
#[derive(Debug, PartialEq, Eq)]
enum Continuity {
    Ok,
    Duplicate,
    Gap,
}

/// Continuity counter state of one PID.
#[derive(Debug, Default)]
struct Cc {
    last: Option<u8>,
}

impl Cc {
    fn check(&mut self, cc: u8, has_payload: bool, discontinuity: bool) -> Continuity {
        let last = self.last;
        // 13818-1 2.4.3.3: packets without payload do not advance the counter.
        if !has_payload {
            return Continuity::Ok;
        }
        self.last = Some(cc);
        match last {
            _ if discontinuity => Continuity::Ok,
            None => Continuity::Ok,
            Some(l) if l == cc => Continuity::Duplicate,
            Some(l) if (l + 1) & 0x0f == cc => Continuity::Ok,
            Some(_) => Continuity::Gap,
        }
    }
}

/// Reassembly of PSI sections on one PID.
#[derive(Debug, Default)]
struct SectionBuf {
    cc: Cc,
    data: Vec<u8>,
    /// Whether `data` holds the start of a section (else payload is ignored until a PUSI).
    active: bool,
}

impl SectionBuf {
    fn reset(&mut self) {
        self.data.clear();
        self.active = false;
    }

    /// Feeds one packet's payload; returns complete sections (CRC not yet checked) and the
    /// number of malformed ones.
    fn push(&mut self, payload: &[u8], pusi: bool) -> (Vec<Vec<u8>>, u64) {
        let mut errors = 0;
        let mut sections = Vec::new();
        if pusi {
            let Some((&pointer, rest)) = payload.split_first() else {
                self.reset();
                return (sections, 1);
            };
            let Some((tail, start)) = rest.split_at_checked(usize::from(pointer)) else {
                self.reset();
                return (sections, 1);
            };
            if self.active {
                self.data.extend_from_slice(tail);
                errors += self.drain(&mut sections);
                if self.active {
                    // A new section starts here, so the previous one was cut short.
                    errors += 1;
                }
            }
            self.data.clear();
            self.data.extend_from_slice(start);
            self.active = true;
        } else if self.active {
            self.data.extend_from_slice(payload);
        }
        errors += self.drain(&mut sections);
        (sections, errors)
    }

    /// Moves complete sections out of `data`.
    fn drain(&mut self, out: &mut Vec<Vec<u8>>) -> u64 {
        while self.active {
            // 0xFF where a table_id would be is stuffing up to the end of the packet.
            if self.data.first().is_none_or(|&b| b == 0xff) {
                if !self.data.is_empty() {
                    self.reset();
                }
                return 0;
            }
            let Some(len) = self.data.get(1..3).map(|b| {
                usize::from(u16::from_be_bytes([b[0], b[1]]) & 0x0fff) // section_length
            }) else {
                return 0;
            };
            if len > MAX_SECTION_LENGTH {
                self.reset();
                return 1;
            }
            if self.data.len() < 3 + len {
                return 0;
            }
            out.push(self.data.drain(..3 + len).collect());
        }
        0
    }
}

/// Reassembly of one elementary stream's PES packets.
#[derive(Debug)]
struct Stream {
    pid: u16,
    cc: Cc,
    /// The open PES (header included), if one started.
    pes: Option<Vec<u8>>,
}

impl Stream {
    fn new(pid: u16) -> Self {
        Stream {
            pid,
            cc: Cc::default(),
            pes: None,
        }
    }
}

/// `PES_packet_length` of a PES once its first 6 bytes are there (`None`: not yet or 0).
fn declared_pes_len(pes: &[u8]) -> Option<usize> {
    let b = pes.get(4..6)?;
    match usize::from(u16::from_be_bytes([b[0], b[1]])) {
        0 => None,
        n => Some(6 + n),
    }
}

/// A 33-bit PTS/DTS field (13818-1 2.4.3.7); marker bits are not checked (encoders get them
/// wrong and they carry no information).
fn read_timestamp(b: &[u8]) -> Option<u64> {
    let b = b.get(..5)?;
    Some(
        (u64::from(b[0] >> 1 & 0x07) << 30)
            | (u64::from(u16::from_be_bytes([b[1], b[2]]) >> 1) << 15)
            | u64::from(u16::from_be_bytes([b[3], b[4]]) >> 1),
    )
}

/// Extends a 33-bit timestamp to the i64 timeline of `reference`: the value nearest to it that
/// is congruent modulo 2^33, so a wrap (every 26.5 h) or a small step back stays continuous.
fn unwrap_timestamp(raw: u64, reference: Option<i64>) -> i64 {
    // Masked to 33 bits, so the cast is lossless.
    let raw = (raw & (WRAP as u64 - 1)) as i64;
    let Some(reference) = reference else {
        return raw;
    };
    let mut diff = (raw - reference.rem_euclid(WRAP)).rem_euclid(WRAP);
    if diff >= WRAP / 2 {
        diff -= WRAP;
    }
    reference.saturating_add(diff)
}

/// Transport-stream-to-frames demuxer for one program.
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes not yet consumed as packets (less than two packets between calls).
    buf: Vec<u8>,
    /// Whether the last packet ended where the next sync byte is expected.
    synced: bool,
    events: VecDeque<DemuxEvent>,
    pat: SectionBuf,
    pat_version: Option<u8>,
    pmt_pid: Option<u16>,
    pmt: SectionBuf,
    pmt_version: Option<u8>,
    video: Option<Stream>,
    /// Whether the video stream is H.265 (stream type 0x24) rather than H.264.
    video_is_hevc: bool,
    audio: Option<Stream>,
    /// The video configuration, H.264 or H.265, from in-band parameter sets.
    video_config: Option<VideoCodec>,
    aac: Option<AacConfig>,
    /// Last tracks announced; `None` until the first [`DemuxEvent::Tracks`].
    announced: Option<MediaInfo>,
    pending: VecDeque<Frame>,
    pending_bytes: usize,
    /// Extended DTS of the latest PES on any stream: one timeline for both tracks.
    last_dts: Option<i64>,
    stats: DemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// Creates a demuxer waiting for a PAT.
    pub fn new() -> Self {
        TsDemuxer {
            buf: Vec::new(),
            synced: false,
            events: VecDeque::new(),
            pat: SectionBuf::default(),
            pat_version: None,
            pmt_pid: None,
            pmt: SectionBuf::default(),
            pmt_version: None,
            video: None,
            video_is_hevc: false,
            audio: None,
            video_config: None,
            aac: None,
            announced: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            last_dts: None,
            stats: DemuxStats::default(),
        }
    }

    /// Feeds transport stream bytes, split anywhere; garbage between packets is skipped.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.consume(false);
    }

    /// The next event, if any; call until `None` after each [`TsDemuxer::push`].
    pub fn poll_event(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    /// End of input: completes open PES packets and, if some track never got a configuration,
    /// announces the tracks that did so held-back frames are not lost.
    pub fn flush(&mut self) {
        self.consume(true);
        self.stats.skipped_bytes += self.buf.len() as u64;
        self.buf.clear();
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let pes = self.stream_mut(kind).and_then(|s| s.pes.take());
            if let Some(pes) = pes {
                self.finish_pes(kind, pes);
            }
        }
        if self.announced.is_none() && !self.pending.is_empty() {
            let info = self.media_info();
            if info.video.is_some() || info.audio.is_some() {
                self.announce(info);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats.clone()
    }

    /// Cuts `buf` into packets. A packet is accepted where the sync byte is expected; after a
    /// loss of sync, a 0x47 counts only if another follows one packet later (or at the end of
    /// input), so a 0x47 inside garbage does not fake a packet. Waiting for that second byte
    /// rather than guessing makes the result independent of how the input was chunked.
    fn consume(&mut self, at_end: bool) {
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buf);
        while buf.len() - pos >= PACKET_SIZE {
            let confirmed = if buf[pos] != SYNC_BYTE {
                false
            } else if self.synced {
                true
            } else {
                match buf.get(pos + PACKET_SIZE) {
                    Some(&b) => b == SYNC_BYTE,
                    None if at_end => true,
                    None => break, // wait for the confirming byte
                }
            };
            if !confirmed {
                if self.synced {
                    self.synced = false;
                    self.stats.resyncs += 1;
                }
                self.stats.skipped_bytes += 1;
                pos += 1;
                continue;
            }
            self.synced = true;
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(&buf[pos..pos + PACKET_SIZE]);
            pos += PACKET_SIZE;
            self.packet(&packet);
        }
        self.buf = buf;
        self.buf.drain(..pos);
        // Leftover is under two packets (or one plus a confirming byte); release a large
        // caller chunk's allocation rather than keep it for the session.
        if self.buf.capacity() > 4 * PACKET_SIZE {
            self.buf.shrink_to(2 * PACKET_SIZE);
        }
    }

    fn packet(&mut self, p: &[u8; PACKET_SIZE]) {
        self.stats.packets += 1;
        if p[1] & 0x80 != 0 {
            // transport_error_indicator: a lower layer knows this packet is damaged.
            self.stats.bad_packets += 1;
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if pid == NULL_PID || afc == 0 {
            return; // stuffing, or reserved adaptation_field_control
        }
        let mut start = 4;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let len = usize::from(p[4]);
            // 2.4.3.5: 183 without payload, at most 182 with payload.
            let max = if afc == 0x02 { 183 } else { 182 };
            if len > max {
                self.stats.bad_packets += 1;
                return;
            }
            if len > 0 {
                let flags = p[5];
                discontinuity = flags & 0x80 != 0;
                if flags & 0x10 != 0 && len >= 7 && self.is_followed(pid) {
                    self.stats.pcrs += 1;
                }
            }
            start = 5 + len;
        }
        let payload = if afc & 0x01 != 0 {
            &p[start..]
        } else {
            &[][..]
        };
        let has_payload = afc & 0x01 != 0;

        if pid == PAT_PID {
            match self.pat.cc.check(cc, has_payload, discontinuity) {
                Continuity::Duplicate => self.stats.duplicates += 1,
                Continuity::Gap => {
                    self.stats.cc_errors += 1;
                    self.pat.reset();
                    self.table_payload(pid, payload, pusi);
                }
                Continuity::Ok => self.table_payload(pid, payload, pusi),
            }
        } else if Some(pid) == self.pmt_pid {
            match self.pmt.cc.check(cc, has_payload, discontinuity) {
                Continuity::Duplicate => self.stats.duplicates += 1,
                Continuity::Gap => {
                    self.stats.cc_errors += 1;
                    self.pmt.reset();
                    self.table_payload(pid, payload, pusi);
                }
                Continuity::Ok => self.table_payload(pid, payload, pusi),
            }
        } else if let Some(kind) = self.track_of(pid) {
            let Some(stream) = self.stream_mut(kind) else {
                return;
            };
            let continuity = stream.cc.check(cc, has_payload, discontinuity);
            let dropped = continuity == Continuity::Gap && stream.pes.take().is_some();
            match continuity {
                Continuity::Duplicate => {
                    self.stats.duplicates += 1;
                    return;
                }
                Continuity::Gap => {
                    self.stats.cc_errors += 1;
                    if dropped {
                        self.stats.pes_errors += 1;
                    }
                    self.events.push_back(DemuxEvent::Discontinuity {
                        pid,
                        reason: "continuity counter gap",
                    });
                }
                Continuity::Ok => {}
            }
            if has_payload {
                self.pes_payload(kind, payload, pusi);
            }
        }
    }

    fn is_followed(&self, pid: u16) -> bool {
        self.track_of(pid).is_some()
    }

    fn track_of(&self, pid: u16) -> Option<TrackKind> {
        if self.video.as_ref().is_some_and(|s| s.pid == pid) {
            Some(TrackKind::Video)
        } else if self.audio.as_ref().is_some_and(|s| s.pid == pid) {
            Some(TrackKind::Audio)
        } else {
            None
        }
    }

    fn stream_mut(&mut self, kind: TrackKind) -> Option<&mut Stream> {
        match kind {
            TrackKind::Video => self.video.as_mut(),
            TrackKind::Audio => self.audio.as_mut(),
        }
    }

    // --- PSI ---------------------------------------------------------------------------------

    fn table_payload(&mut self, pid: u16, payload: &[u8], pusi: bool) {
        let (sections, errors) = if pid == PAT_PID {
            self.pat.push(payload, pusi)
        } else {
            self.pmt.push(payload, pusi)
        };
        self.stats.section_errors += errors;
        for section in sections {
            // The CRC covers the whole section including itself, leaving 0 when intact.
            if section.len() < 12 || section[1] & 0x80 == 0 || crc32_mpeg2(&section) != 0 {
                self.stats.section_errors += 1;
                continue;
            }
            // current_next_indicator 0: a table announced for later, not in force yet.
            if section[5] & 0x01 == 0 {
                continue;
            }
            match (pid == PAT_PID, section[0]) {
                (true, TABLE_PAT) => self.pat_section(&section),
                (false, TABLE_PMT) => self.pmt_section(&section),
                _ => {} // other tables share these PIDs only in broken streams; ignore them
            }
        }
    }

    fn pat_section(&mut self, s: &[u8]) {
        let version = (s[5] >> 1) & 0x1f;
        if self.pat_version == Some(version) {
            return;
        }
        // Entries run from byte 8 to the CRC; program 0 points at the network PID, not a PMT.
        let program = s[8..s.len() - 4]
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u16::from_be_bytes([e[2] & 0x1f, e[3]]),
                )
            })
            .find(|&(number, _)| number != 0);
        let Some((_, pmt_pid)) = program else {
            self.stats.section_errors += 1;
            return;
        };
        self.pat_version = Some(version);
        if self.pmt_pid != Some(pmt_pid) {
            self.pmt_pid = Some(pmt_pid);
            self.pmt = SectionBuf::default();
            self.pmt_version = None;
        }
    }

    fn pmt_section(&mut self, s: &[u8]) {
        let version = (s[5] >> 1) & 0x1f;
        if self.pmt_version == Some(version) {
            return;
        }
        let end = s.len() - 4;
        let program_info_len = usize::from(u16::from_be_bytes([s[10] & 0x0f, s[11]]));
        let mut pos = 12 + program_info_len;
        let (mut video, mut audio) = (None, None);
        let mut video_is_hevc = false;
        let mut skipped = Vec::new();
        while pos + 5 <= end {
            let stream_type = s[pos];
            let pid = u16::from_be_bytes([s[pos + 1] & 0x1f, s[pos + 2]]);
            let info_len = usize::from(u16::from_be_bytes([s[pos + 3] & 0x0f, s[pos + 4]]));
            pos += 5 + info_len;
            match stream_type {
                STREAM_TYPE_H264 if video.is_none() => video = Some(pid),
                STREAM_TYPE_H265 if video.is_none() => {
                    video = Some(pid);
                    video_is_hevc = true;
                }
                STREAM_TYPE_AAC_ADTS if audio.is_none() => audio = Some(pid),
                _ => skipped.push(SkippedStream {
                    pid,
                    stream_type,
                    name: stream_type_name(stream_type),
                }),
            }
        }
        if pos != end {
            self.stats.section_errors += 1;
            return;
        }
        self.pmt_version = Some(version);
        for s in skipped {
            self.stats.skipped_stream_count += 1;
            if self.stats.skipped_streams.len() < MAX_SKIPPED_LISTED
                && !self.stats.skipped_streams.contains(&s)
            {
                self.stats.skipped_streams.push(s);
            }
        }
        // A stream keeps its state (open PES, CC) when the new version keeps its PID.
        if self.video.as_ref().map(|s| s.pid) != video || self.video_is_hevc != video_is_hevc {
            self.video = video.map(Stream::new);
            if self.video_is_hevc != video_is_hevc {
                self.video_config = None;
            }
            self.video_is_hevc = video_is_hevc;
        }
        if self.audio.as_ref().map(|s| s.pid) != audio {
            self.audio = audio.map(Stream::new);
        }
        self.update_tracks();
    }

    // --- PES ---------------------------------------------------------------------------------

    fn pes_payload(&mut self, kind: TrackKind, payload: &[u8], pusi: bool) {
        let Some(stream) = self.stream_mut(kind) else {
            return;
        };
        let pid = stream.pid;
        if pusi {
            let previous = stream.pes.replace(payload.to_vec());
            if let Some(previous) = previous {
                self.finish_pes(kind, previous);
            }
        } else if let Some(pes) = &mut stream.pes {
            if pes.len() + payload.len() > MAX_PES_SIZE {
                stream.pes = None;
                self.stats.pes_errors += 1;
                self.events.push_back(DemuxEvent::Discontinuity {
                    pid,
                    reason: "PES over the size limit",
                });
                return;
            }
            pes.extend_from_slice(payload);
        } else {
            self.stats.orphan_payloads += 1;
            return;
        }
        // A bounded PES is complete as soon as its declared length is in; emitting it then
        // (rather than at the next PUSI) saves a packet interval of latency on audio.
        let Some(stream) = self.stream_mut(kind) else {
            return;
        };
        let complete = stream
            .pes
            .as_ref()
            .is_some_and(|pes| declared_pes_len(pes).is_some_and(|len| pes.len() >= len));
        if complete && let Some(pes) = stream.pes.take() {
            self.finish_pes(kind, pes);
        }
    }

    /// Parses a reassembled PES (header included) and emits its frames.
    fn finish_pes(&mut self, kind: TrackKind, pes: Vec<u8>) {
        let Some(parsed) = parse_pes(&pes) else {
            self.stats.pes_errors += 1;
            return;
        };
        let dts_raw = parsed.dts.unwrap_or(parsed.pts);
        let dts = unwrap_timestamp(dts_raw, self.last_dts);
        let pts = unwrap_timestamp(parsed.pts, Some(dts));
        self.last_dts = Some(dts);
        let data = &pes[parsed.data.0..parsed.data.1];
        match kind {
            TrackKind::Video => self.video_au(data, dts, pts),
            TrackKind::Audio => self.audio_frames(data, pts),
        }
    }

    fn video_au(&mut self, data: &[u8], dts: i64, pts: i64) {
        let mut payload = Vec::with_capacity(data.len() + 16);
        // VPS (H.265 only), SPS, PPS found in the access unit.
        let mut sets: [Vec<&[u8]>; 3] = Default::default();
        let mut keyframe = false;
        let hevc = self.video_is_hevc;
        for nal in avc::annexb_nal_units(data) {
            let set = if hevc {
                match hevc::nal_unit_type(nal) {
                    hevc::NAL_AUD => continue,
                    hevc::NAL_VPS => Some(0),
                    hevc::NAL_SPS => Some(1),
                    hevc::NAL_PPS => Some(2),
                    kind => {
                        keyframe |= hevc::is_irap(kind);
                        None
                    }
                }
            } else {
                match avc::nal_unit_type(nal) {
                    NAL_AUD => continue,
                    NAL_SPS => Some(1),
                    NAL_PPS => Some(2),
                    kind => {
                        keyframe |= kind == NAL_IDR;
                        None
                    }
                }
            };
            if let Some(i) = set {
                sets[i].push(nal);
                continue;
            }
            // annexb_to_avcc would re-scan; the length is bounded by MAX_PES_SIZE.
            let Ok(len) = u32::try_from(nal.len()) else {
                continue;
            };
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(nal);
        }
        if sets.iter().any(|s| !s.is_empty()) {
            self.parameter_sets(&sets);
        }
        if payload.is_empty() {
            return; // parameter sets only: they live in the config
        }
        self.emit(Frame {
            track: TrackKind::Video,
            dts,
            pts,
            keyframe,
            payload: Bytes::from(payload),
        });
    }

    /// Rebuilds the video config when an access unit brings parameter sets (VPS, SPS, PPS)
    /// that differ from it.
    fn parameter_sets(&mut self, sets: &[Vec<&[u8]>; 3]) {
        let same = |have: &[Bytes], new: &[&[u8]]| {
            new.is_empty()
                || (have.len() == new.len() && have.iter().zip(new).all(|(a, b)| a[..] == **b))
        };
        let none: &[Bytes] = &[];
        let old: [&[Bytes]; 3] = match &self.video_config {
            Some(VideoCodec::H264(c)) => [none, &c.sps, &c.pps],
            Some(VideoCodec::H265(c)) => [&c.vps, &c.sps, &c.pps],
            _ => [none; 3],
        };
        if self.video_config.is_some() && (0..3).all(|i| same(old[i], &sets[i])) {
            return;
        }
        // A set missing from this access unit is taken from the current config.
        let merged: Vec<Vec<Bytes>> = (0..3)
            .map(|i| {
                if sets[i].is_empty() {
                    old[i].to_vec()
                } else {
                    sets[i].iter().map(|s| Bytes::copy_from_slice(s)).collect()
                }
            })
            .collect();
        let [vps, sps, pps]: [Vec<Bytes>; 3] = match merged.try_into() {
            Ok(a) => a,
            Err(_) => return,
        };
        // Half a set is not kept: encoders repeat them all before every random access point.
        if sps.is_empty() || pps.is_empty() || (self.video_is_hevc && vps.is_empty()) {
            return;
        }
        let config = if self.video_is_hevc {
            HevcConfig::from_parameter_sets(vps, sps, pps).map(VideoCodec::H265)
        } else {
            AvcConfig::from_parameter_sets(sps, pps).map(VideoCodec::H264)
        };
        match config {
            Ok(config) => {
                self.video_config = Some(config);
                self.update_tracks();
            }
            Err(_) => self.stats.pes_errors += 1,
        }
    }

    fn audio_frames(&mut self, data: &[u8], pes_pts: i64) {
        let mut pos = 0;
        let mut index: i64 = 0;
        while pos < data.len() {
            let parsed = AacConfig::from_adts(&data[pos..])
                .ok()
                .filter(|&(_, frame_len, _)| {
                    data.len() - pos >= frame_len // from_adts guarantees frame_len >= header_len
                });
            let Some((config, frame_len, header_len)) = parsed else {
                // A broken ADTS chain cannot be followed further: the rest of the PES is lost.
                self.stats.pes_errors += 1;
                return;
            };
            let rate = i64::from(config.sample_rate);
            let samples = i64::from(config.samples_per_frame());
            if self.aac.as_ref() != Some(&config) {
                self.aac = Some(config);
                self.update_tracks();
            }
            // Computed from the frame index rather than accumulated, so rounding never drifts.
            let offset = (index * samples * media::TIMEBASE)
                .checked_div(rate)
                .unwrap_or(0);
            let pts = pes_pts.saturating_add(offset);
            // A header announcing no raw data (frame_len == header_len) is legal ADTS but
            // carries nothing to decode; outputs must never see an empty access unit.
            if frame_len > header_len {
                self.emit(Frame {
                    track: TrackKind::Audio,
                    dts: pts,
                    pts,
                    keyframe: true,
                    payload: Bytes::copy_from_slice(&data[pos + header_len..pos + frame_len]),
                });
            }
            pos += frame_len;
            index += 1;
        }
    }

    // --- tracks and output ---------------------------------------------------------------------

    fn media_info(&self) -> MediaInfo {
        let video = self.video.as_ref().and(self.video_config.clone());
        let framerate = match &video {
            Some(VideoCodec::H264(c)) => c.fps,
            Some(VideoCodec::H265(c)) => c.fps,
            _ => None,
        };
        MediaInfo {
            video_metadata: None,
            framerate,
            video,
            audio: self
                .audio
                .as_ref()
                .and(self.aac.clone())
                .map(AudioCodec::Aac),
        }
    }

    /// Announces the tracks when every followed stream has a configuration and they differ
    /// from the last announcement.
    fn update_tracks(&mut self) {
        let ready = (self.video.is_some() || self.audio.is_some())
            && (self.video.is_none() || self.video_config.is_some())
            && (self.audio.is_none() || self.aac.is_some());
        if !ready {
            return;
        }
        let info = self.media_info();
        if self.announced.as_ref() != Some(&info) {
            self.announce(info);
        }
    }

    fn announce(&mut self, info: MediaInfo) {
        self.announced = Some(info.clone());
        self.events.push_back(DemuxEvent::Tracks(Box::new(info)));
        self.pending_bytes = 0;
        let pending = std::mem::take(&mut self.pending);
        self.events
            .extend(pending.into_iter().map(DemuxEvent::Frame));
    }

    fn emit(&mut self, frame: Frame) {
        if self.announced.is_some() {
            self.events.push_back(DemuxEvent::Frame(frame));
            return;
        }
        self.pending_bytes += frame.payload.len();
        self.pending.push_back(frame);
        while self.pending.len() > MAX_PENDING_FRAMES || self.pending_bytes > MAX_PENDING_BYTES {
            let Some(old) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= old.payload.len();
            self.stats.pending_dropped += 1;
        }
    }
}

/// Where a PES's timestamps and data are.
struct ParsedPes {
    pts: u64,
    dts: Option<u64>,
    /// Byte range of the elementary stream data within the PES.
    data: (usize, usize),
}

/// Parses the PES header (13818-1 2.4.3.6); `None` when it is unusable or has no PTS.
fn parse_pes(pes: &[u8]) -> Option<ParsedPes> {
    if pes.get(..3)? != [0, 0, 1] {
        return None;
    }
    // A bounded PES shorter than declared lost its tail; longer input is stuffing after it.
    let end = match declared_pes_len(pes) {
        Some(len) if len > pes.len() => return None,
        Some(len) => len,
        None => pes.len(),
    };
    let (&marker, &flags, &header_len) = (pes.get(6)?, pes.get(7)?, pes.get(8)?);
    // Our stream ids (0xC0-0xEF) always have the optional header, which starts with '10'.
    if marker & 0xc0 != 0x80 {
        return None;
    }
    let start = 9 + usize::from(header_len);
    if start > end {
        return None;
    }
    let (pts, dts) = match flags >> 6 {
        0b10 if header_len >= 5 => (read_timestamp(&pes[9..])?, None),
        0b11 if header_len >= 10 => (read_timestamp(&pes[9..])?, read_timestamp(&pes[14..])),
        _ => return None,
    };
    Some(ParsedPes {
        pts,
        dts,
        data: (start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{mux_all, real_input};
    use crate::{AUDIO_PID, TIMESTAMP_OFFSET, TsMuxer, VIDEO_PID};
    use bytes::BytesMut;
    use std::process::Command;

    const FFMPEG_TS: &[u8] = include_bytes!("../../../testdata/ffmpeg-320x240.ts");

    /// Deterministic pseudo-random numbers (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[derive(Debug, Default)]
    struct Out {
        tracks: Vec<MediaInfo>,
        video: Vec<Frame>,
        audio: Vec<Frame>,
        discontinuities: Vec<(u16, &'static str)>,
        stats: DemuxStats,
    }

    /// Fuzz reproducer `testdata/fuzz/ts_demux-empty-adts-frame.bin`: an ADTS header whose
    /// frame length equals its own size is legal but carries no audio; it used to become an
    /// empty access unit in the hub. It still counts for the timing of the frames after it.
    #[test]
    fn an_adts_header_without_raw_data_emits_no_frame() {
        let cfg = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("AAC-LC 48 kHz");
        let mut data = cfg.adts_header(0).expect("header").to_vec();
        data.extend_from_slice(&cfg.adts_header(4).expect("header"));
        data.extend_from_slice(&[1, 2, 3, 4]);
        let mut d = TsDemuxer::new();
        d.audio_frames(&data, 0);
        let frames: Vec<&Frame> = d.pending.iter().collect();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(&frames[0].payload[..], &[1, 2, 3, 4]);
        assert_eq!(frames[0].pts, 1024 * media::TIMEBASE / 48_000);
        assert_eq!(d.stats.pes_errors, 0);
    }

    /// Demuxes `ts` fed in pieces of 1..=max_piece bytes (1316 = one SRT payload when fixed).
    fn demux(ts: &[u8], seed: u64, max_piece: usize) -> Out {
        let mut rng = Rng(seed | 1);
        let mut d = TsDemuxer::new();
        let mut out = Out::default();
        let mut rest = ts;
        let drain = |d: &mut TsDemuxer, out: &mut Out| {
            while let Some(e) = d.poll_event() {
                match e {
                    DemuxEvent::Tracks(i) => out.tracks.push(*i),
                    DemuxEvent::Frame(f) if f.track == TrackKind::Video => {
                        assert!(!out.tracks.is_empty(), "frame before tracks");
                        out.video.push(f)
                    }
                    DemuxEvent::Frame(f) => {
                        assert!(!out.tracks.is_empty(), "frame before tracks");
                        out.audio.push(f)
                    }
                    DemuxEvent::Discontinuity { pid, reason } => {
                        out.discontinuities.push((pid, reason))
                    }
                }
            }
        };
        while !rest.is_empty() {
            let n = if seed == 0 {
                max_piece
            } else {
                1 + rng.below(max_piece)
            }
            .min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            drain(&mut d, &mut out);
        }
        d.flush();
        drain(&mut d, &mut out);
        out.stats = d.stats();
        out
    }

    /// The AVCC payload without the NAL units the TS path adds or moves (AUD, SPS, PPS).
    fn strip_parameter_sets(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in avc::avcc_nal_units(payload, 4) {
            let nal = nal.unwrap();
            if !matches!(avc::nal_unit_type(nal), NAL_AUD | NAL_SPS | NAL_PPS) {
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
        out
    }

    fn ts_packets(ts: &[u8]) -> Vec<&[u8]> {
        ts.chunks(PACKET_SIZE).collect()
    }

    fn pid_of(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[1] & 0x1f, p[2]])
    }

    #[test]
    fn round_trip_through_our_muxer_in_random_chunks() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        for (seed, max_piece) in [(0, 1316), (0, 188), (1, 7), (2, 400), (3, 5000), (4, 1)] {
            let out = demux(&ts, seed, max_piece);
            assert_eq!(out.tracks.len(), 1, "seed {seed}");
            let got = &out.tracks[0];
            let (want_avc, got_avc) = (info.avc().unwrap(), got.avc().unwrap());
            assert_eq!(
                (got_avc.sps.clone(), got_avc.pps.clone()),
                (want_avc.sps.clone(), want_avc.pps.clone())
            );
            assert_eq!((got_avc.width, got_avc.height), (320, 240));
            let (want_aac, got_aac) = (info.aac().unwrap(), got.aac().unwrap());
            assert_eq!(
                (
                    got_aac.object_type,
                    got_aac.sample_rate,
                    got_aac.channel_config
                ),
                (
                    want_aac.object_type,
                    want_aac.sample_rate,
                    want_aac.channel_config
                )
            );
            for (kind, got) in [
                (TrackKind::Video, &out.video),
                (TrackKind::Audio, &out.audio),
            ] {
                let want: Vec<&Frame> = frames.iter().filter(|f| f.track == kind).collect();
                assert_eq!(got.len(), want.len(), "{kind:?} seed {seed}");
                for (g, w) in got.iter().zip(want) {
                    assert_eq!(g.dts, w.dts + TIMESTAMP_OFFSET);
                    assert_eq!(g.pts, w.pts + TIMESTAMP_OFFSET);
                    assert_eq!(g.keyframe, w.keyframe);
                    match kind {
                        TrackKind::Video => {
                            assert_eq!(g.payload[..], strip_parameter_sets(&w.payload)[..])
                        }
                        TrackKind::Audio => assert_eq!(g.payload, w.payload),
                    }
                }
            }
            assert_eq!(
                out.stats.cc_errors + out.stats.pes_errors + out.stats.resyncs,
                0
            );
            assert_eq!(out.stats.packets, (ts.len() / PACKET_SIZE) as u64);
            assert!(out.discontinuities.is_empty());
        }
    }

    /// (pts, dts, keyframe) of one packet.
    type Probed = (i64, i64, bool);

    /// ffprobe's view of the capture: per stream, (pts, dts, keyframe) of every packet.
    fn ffprobe_packets() -> Option<(Vec<Probed>, Vec<Probed>)> {
        let dir = std::env::temp_dir().join(format!("ferrocast-demux-{}.ts", std::process::id()));
        std::fs::write(&dir, FFMPEG_TS).ok()?;
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=codec_type,pts,dts,flags",
                "-of",
                "csv=p=0",
            ])
            .arg(&dir)
            .output()
            .ok();
        let _ = std::fs::remove_file(&dir);
        let probe = probe?;
        let (mut video, mut audio) = (Vec::new(), Vec::new());
        for line in String::from_utf8_lossy(&probe.stdout).lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 4 {
                continue;
            }
            let p = (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].starts_with('K'),
            );
            match f[0] {
                "video" => video.push(p),
                "audio" => audio.push(p),
                _ => {}
            }
        }
        Some((video, audio))
    }

    /// `testdata/ffmpeg-320x240.ts`: libx264 with B-frames (-bf 2, so pts != dts) and 48 kHz
    /// AAC packed several ADTS frames per PES, as ffmpeg's mpegts muxer does.
    #[test]
    fn ffmpeg_capture_matches_ffprobe() {
        let out = demux(FFMPEG_TS, 0, 1316);
        assert_eq!(out.tracks.len(), 1);
        let info = &out.tracks[0];
        let avc = info.avc().unwrap();
        assert_eq!((avc.width, avc.height), (320, 240));
        assert_eq!(info.aac().unwrap().sample_rate, 48_000);
        // Counts and first timestamps as `ffprobe -show_packets` reported them when the file
        // was made; the full lists are compared below when ffprobe is installed.
        assert_eq!((out.video.len(), out.audio.len()), (50, 95));
        let keys: Vec<usize> = (0..50).filter(|&i| out.video[i].keyframe).collect();
        assert_eq!(keys, [0, 25]);
        assert_eq!((out.video[0].pts, out.video[0].dts), (133_200, 126_000));
        assert_eq!(out.audio[0].pts, 131_280);
        assert_eq!(out.audio[1].pts, 131_280 + 1920);
        assert_eq!(
            out.stats.cc_errors + out.stats.pes_errors + out.stats.resyncs,
            0
        );
        assert!(out.stats.pcrs > 0);
        for f in &out.video {
            for nal in avc::avcc_nal_units(&f.payload, 4) {
                assert!(!matches!(
                    avc::nal_unit_type(nal.unwrap()),
                    NAL_AUD | NAL_SPS | NAL_PPS
                ));
            }
        }
        let Some((video, audio)) = ffprobe_packets() else {
            return;
        };
        let ours = |frames: &[Frame]| -> Vec<(i64, i64, bool)> {
            frames.iter().map(|f| (f.pts, f.dts, f.keyframe)).collect()
        };
        assert_eq!(ours(&out.video), video);
        assert_eq!(ours(&out.audio), audio);
    }

    #[test]
    fn cc_gap_drops_the_partial_pes_and_reports_it() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        let clean = demux(&ts, 0, 1316);
        // Drop the second packet of the first multi-packet video PES.
        let packets = ts_packets(&ts);
        let victim = (1..packets.len())
            .find(|&i| pid_of(packets[i]) == VIDEO_PID && packets[i][1] & 0x40 == 0)
            .unwrap();
        let damaged: Vec<u8> = packets
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != victim)
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let out = demux(&damaged, 5, 700);
        assert_eq!(out.discontinuities, [(VIDEO_PID, "continuity counter gap")]);
        assert_eq!(out.stats.cc_errors, 1);
        assert_eq!(out.video.len(), clean.video.len() - 1);
        assert_eq!(out.audio, clean.audio);
        // Every surviving frame is one of the clean ones, unchanged.
        assert!(out.video.iter().all(|f| clean.video.contains(f)));
    }

    #[test]
    fn duplicate_packets_are_ignored() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        let clean = demux(&ts, 0, 1316);
        let mut doubled = Vec::new();
        for (i, p) in ts_packets(&ts).into_iter().enumerate() {
            doubled.extend_from_slice(p);
            if i % 10 == 3 {
                doubled.extend_from_slice(p);
            }
        }
        let out = demux(&doubled, 6, 2000);
        assert!(out.stats.duplicates > 10);
        assert_eq!(out.stats.cc_errors, 0);
        assert_eq!((out.video, out.audio), (clean.video, clean.audio));
    }

    #[test]
    fn garbage_between_packets_is_skipped_and_counted() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        let clean = demux(&ts, 0, 1316);
        let mut rng = Rng(77);
        let mut dirty = vec![0x00, 0x47, 0x12]; // leading junk, including a fake sync byte
        let mut garbage = 3u64;
        for (i, p) in ts_packets(&ts).into_iter().enumerate() {
            dirty.extend_from_slice(p);
            if i % 17 == 5 {
                let n = 1 + rng.below(300);
                // No 0x47 here, so no garbage byte can be confirmed as a sync byte.
                dirty.extend((0..n).map(|_| (rng.next() as u8) & 0x3f));
                garbage += n as u64;
            }
        }
        let out = demux(&dirty, 8, 1316);
        assert_eq!(out.stats.skipped_bytes, garbage);
        assert!(out.stats.resyncs > 5);
        assert_eq!((out.video, out.audio), (clean.video, clean.audio));
    }

    #[test]
    fn bad_pes_lengths_and_truncation_are_counted() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        let clean = demux(&ts, 0, 1316);
        let mut bad = ts.to_vec();
        // PES_packet_length of audio PES: +100 (cut short by the next PUSI), -3 (ADTS frame
        // runs past the end) on alternating audio PES starts.
        let mut n = 0;
        for p in bad.chunks_mut(PACKET_SIZE) {
            if pid_of(p) == AUDIO_PID && p[1] & 0x40 != 0 {
                let at = if p[3] & 0x20 != 0 {
                    5 + usize::from(p[4])
                } else {
                    4
                };
                let len = u16::from_be_bytes([p[at + 4], p[at + 5]]);
                let new = if n % 2 == 0 { len + 100 } else { len - 3 };
                p[at + 4..at + 6].copy_from_slice(&new.to_be_bytes());
                n += 1;
                if n == 6 {
                    break;
                }
            }
        }
        let out = demux(&bad, 9, 1316);
        assert_eq!(out.audio.len(), clean.audio.len() - 6);
        assert_eq!(out.stats.pes_errors, 6);
        assert_eq!(out.video, clean.video);

        // Cut in the middle of the last packet: the partial packet is counted as skipped and
        // everything complete before it is still delivered.
        let cut = &ts[..ts.len() - 100];
        let out = demux(cut, 10, 1316);
        assert_eq!(out.stats.skipped_bytes, 88);
        assert!(out.video.len() + out.audio.len() >= clean.video.len() + clean.audio.len() - 1);
    }

    #[test]
    fn random_bytes_and_bit_flips_never_panic_and_chunking_does_not_matter() {
        let (info, frames) = real_input();
        let ts = mux_all(&info, &frames);
        let mut rng = Rng(99);
        let noise: Vec<u8> = (0..200_000).map(|_| rng.next() as u8).collect();
        let out = demux(&noise, 11, 3000);
        assert!(out.video.is_empty() && out.audio.is_empty());
        for round in 0..20u64 {
            let mut damaged = ts.to_vec();
            for _ in 0..(1 + round * 5) {
                let i = rng.below(damaged.len());
                damaged[i] ^= 1 << rng.below(8);
            }
            if round % 3 == 0 {
                // Some streams are noise with real packets inside.
                let at = rng.below(damaged.len());
                damaged.splice(at..at, noise[..5000].iter().copied());
            }
            let whole = demux(&damaged, 0, damaged.len());
            let pieces = demux(&damaged, round + 1, 900);
            assert_eq!(whole.video, pieces.video);
            assert_eq!(whole.audio, pieces.audio);
            assert_eq!(whole.tracks, pieces.tracks);
            assert_eq!(whole.stats, pieces.stats);
        }
    }

    #[test]
    fn skipped_streams_are_named_and_counted() {
        // A PMT with AC-3 (skipped) and ADTS AAC.
        let mut ts = BytesMut::new();
        let (mut cc_pat, mut cc_pmt) = (0, 0);
        crate::packet::write_section(&mut ts, 0, &mut cc_pat, 0, 1, 0, &[0, 1, 0xf0, 0x00]);
        let mut pmt = vec![0xe1, 0x01, 0xf0, 0x00];
        for (ty, pid) in [(0x81u8, 0x200u16), (0x0f, 0x101)] {
            pmt.push(ty);
            pmt.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            pmt.extend_from_slice(&[0xf0, 0x00]);
        }
        crate::packet::write_section(&mut ts, 0x1000, &mut cc_pmt, 2, 1, 0, &pmt);
        let mut d = TsDemuxer::new();
        d.push(&ts);
        d.push(&ts); // repeated tables count once
        let stats = d.stats();
        assert_eq!(stats.skipped_stream_count, 1);
        assert_eq!(
            stats.skipped_streams,
            [SkippedStream {
                pid: 0x200,
                stream_type: 0x81,
                name: "ac3"
            }]
        );
        assert_eq!(stats.section_errors, 0);
    }

    /// H.265 over TS (SRT and UDP publishers, SRS's HEVC): the parameter sets before the IRAP
    /// picture become the config, and the frame comes out length-prefixed without them.
    #[test]
    fn h265_round_trips_through_our_muxer() {
        let record =
            Bytes::from_static(include_bytes!("../../../testdata/hevc-1280x720-main.hvcc"));
        let hevc_config = HevcConfig::parse(record).unwrap();
        let idr = Bytes::from_static(include_bytes!(
            "../../../testdata/hevc-1280x720-idr.hvcc-frame"
        ));
        let info = MediaInfo {
            video: Some(VideoCodec::H265(hevc_config.clone())),
            ..MediaInfo::default()
        };
        let frames: Vec<Frame> = (0..3)
            .map(|i| Frame {
                track: TrackKind::Video,
                dts: i * 3000,
                pts: i * 3000 + 3000,
                keyframe: true,
                payload: idr.clone(),
            })
            .collect();
        let ts = mux_all(&info, &frames);
        let got = demux(&ts, 7, 1000);
        let got_info = got.tracks.last().expect("tracks announced");
        let h = got_info.hevc().expect("H.265 config");
        assert_eq!((h.width, h.height), (1280, 720));
        assert_eq!(
            (&h.vps, &h.sps, &h.pps),
            (&hevc_config.vps, &hevc_config.sps, &hevc_config.pps)
        );
        assert_eq!(h.codec_string(), hevc_config.codec_string());
        let mut want = Vec::new();
        for nal in avc::avcc_nal_units(&idr, 4).map(Result::unwrap) {
            if !(hevc::NAL_VPS..=hevc::NAL_AUD).contains(&hevc::nal_unit_type(nal)) {
                want.extend_from_slice(&u32::try_from(nal.len()).unwrap().to_be_bytes());
                want.extend_from_slice(nal);
            }
        }
        // The last PES is only complete at the end of the stream (video PES are unbounded).
        assert!(got.video.len() >= 2, "{} frames", got.video.len());
        for (f, w) in got.video.iter().zip(&frames) {
            assert!(f.keyframe);
            assert_eq!(f.pts - f.dts, w.pts - w.dts);
            assert_eq!(&f.payload[..], &want[..]);
        }
    }

    #[test]
    fn pts_wrap_across_pes_boundaries_stays_monotonic() {
        let (info, frames) = real_input();
        // Shift the capture so the 33-bit TS timestamps wrap about one second in.
        let shift = WRAP - TIMESTAMP_OFFSET - 90_000;
        let shifted: Vec<Frame> = frames
            .iter()
            .map(|f| Frame {
                dts: f.dts + shift,
                pts: f.pts + shift,
                ..f.clone()
            })
            .collect();
        let mut mux = TsMuxer::new();
        mux.set_tracks(&info);
        let mut ts = BytesMut::new();
        for f in &shifted {
            mux.write_frame(f, &mut ts).unwrap();
        }
        let out = demux(&ts, 12, 1316);
        for (kind, got) in [
            (TrackKind::Video, &out.video),
            (TrackKind::Audio, &out.audio),
        ] {
            let want: Vec<&Frame> = shifted.iter().filter(|f| f.track == kind).collect();
            assert_eq!(got.len(), want.len());
            assert!(
                got.windows(2).all(|w| w[0].dts < w[1].dts),
                "{kind:?} not monotonic"
            );
            for (g, w) in got.iter().zip(want) {
                // Extended past 2^33: the same absolute values the muxer was given.
                assert_eq!(
                    (g.dts, g.pts),
                    (w.dts + TIMESTAMP_OFFSET, w.pts + TIMESTAMP_OFFSET)
                );
            }
        }
        assert!(out.video.last().unwrap().dts > WRAP);
        assert_eq!(unwrap_timestamp(5, Some(WRAP - 10)), WRAP + 5);
        assert_eq!(
            unwrap_timestamp(WRAP as u64 - 10, Some(WRAP + 5)),
            WRAP - 10
        );
        assert_eq!(unwrap_timestamp(7, None), 7);
        assert_eq!(unwrap_timestamp(0, Some(i64::MAX)), i64::MAX);
    }
}
