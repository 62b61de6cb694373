//! MPEG-TS muxer (ISO/IEC 13818-1): hub [`Frame`]s in, 188-byte transport packets out.
//!
//! Sans-I/O: [`TsMuxer`] appends packets to a caller's [`BytesMut`]; HLS segments, MPEG-TS over
//! HTTP and SRT play drive it. One program (number 1) with H.264 or H.265 on PID 0x100 and AAC
//! (ADTS) or Opus on PID 0x101; PAT/PMT precede every video keyframe so any keyframe is a valid
//! join point. Opus follows Xiph's Opus-in-TS mapping (the ETSI transport specification ffmpeg
//! and GStreamer read): a private PES whose PMT entry has an `Opus` registration descriptor and
//! a channel configuration, each packet behind an `opus_control_header`. AV1 has no TS mapping
//! players read, so AV1 tracks are skipped.

mod crc;
pub mod demux;
mod packet;

#[cfg(test)]
mod tests;

pub use crc::crc32_mpeg2;
pub use demux::{DemuxEvent, DemuxStats, TsDemuxer};

use bytes::BytesMut;
use media::{
    AacConfig, AudioCodec, AvcConfig, Frame, HevcConfig, MediaError, MediaInfo, TrackKind,
    VideoCodec, avc, hevc,
};
use packet::{Adaptation, write_pes_packets, write_section};

/// Size of one transport packet.
pub const PACKET_SIZE: usize = 188;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// The single program's number.
pub const PROGRAM_NUMBER: u16 = 1;
/// `stream_type` of H.264 video (ISO/IEC 13818-1 Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// `stream_type` of H.265 video.
pub const STREAM_TYPE_H265: u8 = 0x24;
/// `stream_type` of AAC audio in ADTS framing.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// `stream_type` of PES packets with private data: Opus, told apart by its registration.
pub const STREAM_TYPE_PRIVATE_PES: u8 = 0x06;
/// `private_stream_1`, the PES `stream_id` of Opus.
const STREAM_ID_PRIVATE_1: u8 = 0xbd;
/// Added to every timestamp so streams starting at 0 (or with negative composition offsets)
/// stay positive and DTS keeps a margin over PCR; ffmpeg's muxdelay + muxpreload is the same 1.4 s.
pub const TIMESTAMP_OFFSET: i64 = 126_000;
/// How far PCR runs behind the DTS it is derived from: buffering time a decoder is promised,
/// ffmpeg's default `max_delay` of 0.7 s, also covering audio sent slightly ahead of video.
pub const PCR_DELAY: i64 = 63_000;

const PAT_PID: u16 = 0x0000;
const TIMESTAMP_MASK: i64 = (1 << 33) - 1;
/// Audio-only streams have no keyframe-driven table repetition; 0.5 s keeps joins fast at
/// ~6 kbit/s of overhead.
const AUDIO_ONLY_TABLE_INTERVAL: i64 = 45_000;
/// A PCR jump larger than this (or backwards) is flagged as a discontinuity (13818-1 2.4.3.5).
const PCR_JUMP_LIMIT: i64 = 10 * 90_000;
/// Scratch buffers above this size are released after use so one huge frame does not pin
/// memory for the stream's lifetime.
const SCRATCH_KEEP: usize = 1 << 20;
/// H.264 access unit delimiter, primary_pic_type 7 (any slice type).
const AUD_H264: [u8; 6] = [0, 0, 0, 1, avc::NAL_AUD, 0xf0];
/// H.265 access unit delimiter: NAL header type 35 (layer 0, TemporalId 1), pic_type 2 (any).
const AUD_H265: [u8; 7] = [0, 0, 0, 1, hevc::NAL_AUD << 1, 0x01, 0x50];

/// Why a frame could not be muxed; nothing was written for it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MuxError {
    /// The payload is not valid for its codec (bad AVCC lengths, AAC too long for ADTS, ...).
    #[error("{track:?} frame at dts {dts}: {source}")]
    Payload {
        /// Track of the frame.
        track: TrackKind,
        /// Hub DTS of the frame, to find it in a capture.
        dts: i64,
        /// What the codec layer objected to.
        source: MediaError,
    },
}

/// The elementary streams the PMT announces; compared to decide on a PMT version bump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Programs {
    /// The video `stream_type`, if there is a video stream.
    video: Option<u8>,
    /// The audio stream's `stream_type` and descriptors, if there is one.
    audio: Option<(u8, Vec<u8>)>,
}

/// The audio codec being muxed.
#[derive(Clone, Debug)]
enum Audio {
    Aac(AacConfig),
    /// Opus with its `channel_config_code` (mono or stereo: the channel count).
    Opus(u8),
}

impl Audio {
    /// The PMT entry: `stream_type` and ES descriptors.
    fn pmt_entry(&self) -> (u8, Vec<u8>) {
        match self {
            Audio::Aac(_) => (STREAM_TYPE_AAC_ADTS, Vec::new()),
            Audio::Opus(code) => (
                STREAM_TYPE_PRIVATE_PES,
                // registration_descriptor "Opus", then the DVB extension descriptor with the
                // Opus audio descriptor (extension tag 0x80) and its channel configuration.
                vec![0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, *code],
            ),
        }
    }
}

/// The video codec being muxed.
#[derive(Clone, Debug)]
enum Video {
    H264(AvcConfig),
    H265(HevcConfig),
}

/// What the muxer needs to know of one video codec's NAL units.
struct NalRules {
    nal_length_size: u8,
    nal_type: fn(&[u8]) -> u8,
    is_random_access: fn(u8) -> bool,
    /// Parameter set types; the SPS type is the one whose presence means "in-band config".
    sps: u8,
    param_sets: [u8; 3],
    aud_type: u8,
    aud: &'static [u8],
}

impl Video {
    fn stream_type(&self) -> u8 {
        match self {
            Video::H264(_) => STREAM_TYPE_H264,
            Video::H265(_) => STREAM_TYPE_H265,
        }
    }

    fn rules(&self) -> NalRules {
        match self {
            Video::H264(c) => NalRules {
                nal_length_size: c.nal_length_size,
                nal_type: avc::nal_unit_type,
                is_random_access: |t| t == avc::NAL_IDR,
                sps: avc::NAL_SPS,
                // H.264 has no VPS; the SPS doubles up so the array stays fixed-size.
                param_sets: [avc::NAL_SPS, avc::NAL_SPS, avc::NAL_PPS],
                aud_type: avc::NAL_AUD,
                aud: &AUD_H264,
            },
            Video::H265(c) => NalRules {
                nal_length_size: c.nal_length_size,
                nal_type: hevc::nal_unit_type,
                is_random_access: hevc::is_irap,
                sps: hevc::NAL_SPS,
                param_sets: [hevc::NAL_VPS, hevc::NAL_SPS, hevc::NAL_PPS],
                aud_type: hevc::NAL_AUD,
                aud: &AUD_H265,
            },
        }
    }

    fn write_parameter_sets_annexb(&self, out: &mut Vec<u8>) {
        match self {
            Video::H264(c) => c.write_parameter_sets_annexb(out),
            Video::H265(c) => c.write_parameter_sets_annexb(out),
        }
    }
}

/// Frames-to-transport-stream muxer for one program.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<Video>,
    audio: Option<Audio>,
    /// Whether Opus is written (see [`TsMuxer::without_opus`]).
    opus: bool,
    programs: Programs,
    /// `None` until the first `set_tracks`, so the first PMT is version 0.
    pmt_version: Option<u8>,
    /// Continuity counters: PAT, PMT, video, audio.
    cc: [u8; 4],
    last_pcr_dts: Option<i64>,
    /// DTS at which tables were last written (audio-only repetition), `None` before the first.
    last_tables_dts: Option<i64>,
    tables_written: bool,
    scratch: Vec<u8>,
}

impl Default for TsMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsMuxer {
    /// Creates a muxer with no tracks; call [`TsMuxer::set_tracks`] before writing frames.
    pub fn new() -> Self {
        TsMuxer {
            video: None,
            audio: None,
            opus: true,
            programs: Programs::default(),
            pmt_version: None,
            cc: [0; 4],
            last_pcr_dts: None,
            last_tables_dts: None,
            tables_written: false,
            scratch: Vec::new(),
        }
    }

    /// A muxer that skips Opus, for HLS: Apple's HLS has no Opus in TS, and hls.js plays only
    /// what its transmuxer knows, so an HLS player is better served video alone (Opus goes to
    /// browsers over CMAF HLS and DASH).
    pub fn without_opus(mut self) -> Self {
        self.opus = false;
        self
    }

    /// Sets the tracks to mux; returns the names of tracks it cannot carry (they are skipped).
    ///
    /// The PMT version changes when the set of elementary streams changes, and the next frame
    /// is preceded by fresh tables.
    pub fn set_tracks(&mut self, info: &MediaInfo) -> Vec<String> {
        let mut skipped = Vec::new();
        self.video = match &info.video {
            Some(VideoCodec::H264(c)) => Some(Video::H264(c.clone())),
            Some(VideoCodec::H265(c)) => Some(Video::H265(c.clone())),
            Some(other) => {
                skipped.push(other.name());
                None
            }
            None => None,
        };
        self.audio = match &info.audio {
            Some(AudioCodec::Aac(c)) => Some(Audio::Aac(c.clone())),
            // Mapping family 0 (mono, stereo) is what encoders send live; the surround
            // families need the extended channel configuration, which is not written here.
            Some(AudioCodec::Opus(c))
                if self.opus && c.mapping_family == 0 && (1..=2).contains(&c.channels) =>
            {
                Some(Audio::Opus(c.channels))
            }
            Some(other) => {
                skipped.push(other.name());
                None
            }
            None => None,
        };
        let programs = Programs {
            video: self.video.as_ref().map(Video::stream_type),
            audio: self.audio.as_ref().map(Audio::pmt_entry),
        };
        match self.pmt_version {
            None => self.pmt_version = Some(0),
            Some(v) if programs != self.programs => self.pmt_version = Some((v + 1) & 0x1f),
            Some(_) => {}
        }
        self.programs = programs;
        self.tables_written = false;
        skipped
    }

    /// Whether a frame of `track` would be muxed (its codec is supported and announced).
    pub fn carries(&self, track: TrackKind) -> bool {
        match track {
            TrackKind::Video => self.video.is_some(),
            TrackKind::Audio => self.audio.is_some(),
        }
    }

    /// Appends a PAT and a PMT (two packets).
    pub fn write_tables(&mut self, out: &mut BytesMut) {
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        pat.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        // transport_stream_id 1, as ffmpeg writes; PAT content never changes, so version 0.
        write_section(out, PAT_PID, &mut self.cc[0], 0x00, 1, 0, &pat);

        let pcr_pid = if self.programs.video.is_some() {
            VIDEO_PID
        } else if self.programs.audio.is_some() {
            AUDIO_PID
        } else {
            // 13818-1 2.4.4.9: 0x1FFF means no PCR for this program.
            0x1fff
        };
        let mut pmt = Vec::with_capacity(16);
        pmt.extend_from_slice(&(0xe000 | pcr_pid).to_be_bytes());
        pmt.extend_from_slice(&0xf000u16.to_be_bytes()); // program_info_length 0
        let video = self.programs.video.map(|t| (t, &[][..]));
        let audio = self.programs.audio.as_ref().map(|(t, d)| (*t, &d[..]));
        for (entry, pid) in [(video, VIDEO_PID), (audio, AUDIO_PID)] {
            if let Some((stream_type, descriptors)) = entry {
                pmt.push(stream_type);
                pmt.extend_from_slice(&(0xe000 | pid).to_be_bytes());
                // Descriptors here are a few bytes: the length fits its 10 bits.
                let len = u16::try_from(descriptors.len()).unwrap_or(0) & 0x03ff;
                pmt.extend_from_slice(&(0xf000 | len).to_be_bytes());
                pmt.extend_from_slice(descriptors);
            }
        }
        let version = self.pmt_version.unwrap_or(0);
        write_section(
            out,
            PMT_PID,
            &mut self.cc[1],
            0x02,
            PROGRAM_NUMBER,
            version,
            &pmt,
        );
        self.tables_written = true;
    }

    /// Appends one frame as a PES; frames of tracks that are not carried are ignored.
    ///
    /// On error nothing is appended.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), MuxError> {
        let result = match frame.track {
            TrackKind::Video => self.write_video(frame, out),
            TrackKind::Audio => self.write_audio(frame, out),
        };
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        result.map_err(|source| MuxError::Payload {
            track: frame.track,
            dts: frame.dts,
            source,
        })
    }

    fn write_video(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), MediaError> {
        let Some(video) = &self.video else {
            return Ok(());
        };
        let rules = video.rules();
        let nls = rules.nal_length_size;
        // One pass to validate and learn what the access unit already carries.
        let (mut random_access, mut has_sps) = (false, false);
        for nal in avc::avcc_nal_units(&frame.payload, nls) {
            let kind = (rules.nal_type)(nal?);
            random_access |= (rules.is_random_access)(kind);
            has_sps |= kind == rules.sps;
        }
        let insert_config = (random_access || frame.keyframe) && !has_sps;

        let es = &mut self.scratch;
        es.clear();
        es.reserve(frame.payload.len() + 64);
        write_pes_header(es, 0xe0, None, frame.pts, Some(frame.dts));
        // H.222.0 2.14.1 (H.264) and 2.17.1 (H.265): every access unit in TS starts with an
        // access unit delimiter.
        es.extend_from_slice(rules.aud);
        if insert_config {
            video.write_parameter_sets_annexb(es);
        }
        // Validated above, so errors cannot occur here; map_while keeps it panic-free anyway.
        for nal in avc::avcc_nal_units(&frame.payload, nls).map_while(Result::ok) {
            let kind = (rules.nal_type)(nal);
            // In-band AUDs would duplicate ours; in-band parameter sets are kept only when the
            // frame brings its own SPS (then they, not the possibly stale config, are
            // authoritative).
            if kind == rules.aud_type || (insert_config && rules.param_sets.contains(&kind)) {
                continue;
            }
            es.extend_from_slice(&[0, 0, 0, 1]);
            es.extend_from_slice(nal);
        }

        if frame.keyframe || !self.tables_written {
            self.write_tables(out);
        }
        let pcr = self.pcr_for(frame.dts);
        let adaptation = Adaptation {
            pcr: Some(pcr.0),
            discontinuity: pcr.1,
            random_access: frame.keyframe,
        };
        write_pes_packets(out, VIDEO_PID, &mut self.cc[2], adaptation, &self.scratch);
        Ok(())
    }

    fn write_audio(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), MediaError> {
        let Some(audio) = &self.audio else {
            return Ok(());
        };
        let es = &mut self.scratch;
        es.clear();
        match audio {
            Audio::Aac(config) => {
                let adts = config.adts_header(frame.payload.len())?;
                // adts_header bounds the ADTS frame to 8191 bytes, so PES_packet_length fits.
                let pes_len = 3 + 5 + adts.len() + frame.payload.len();
                write_pes_header(es, 0xc0, u16::try_from(pes_len).ok(), frame.pts, None);
                es.extend_from_slice(&adts);
                es.extend_from_slice(&frame.payload);
            }
            Audio::Opus(_) => {
                let size = frame.payload.len();
                let pes_len = 3 + 5 + opus_control_header_len(size) + size;
                let pes_len = u16::try_from(pes_len).map_err(|_| MediaError::Invalid {
                    what: "Opus packet",
                    reason: format!("{} bytes do not fit one PES", frame.payload.len()),
                })?;
                write_pes_header(es, STREAM_ID_PRIVATE_1, Some(pes_len), frame.pts, None);
                write_opus_control_header(es, size);
                es.extend_from_slice(&frame.payload);
            }
        }

        let audio_only = self.programs.video.is_none();
        let tables_due = self
            .last_tables_dts
            // abs_diff: hub timestamps are arbitrary i64, and `dts - last` can overflow.
            .is_none_or(|last| {
                frame.dts < last
                    || frame.dts.abs_diff(last) >= AUDIO_ONLY_TABLE_INTERVAL.unsigned_abs()
            });
        if !self.tables_written || (audio_only && tables_due) {
            self.write_tables(out);
            self.last_tables_dts = Some(frame.dts);
        }
        let adaptation = if audio_only {
            let (pcr, discontinuity) = self.pcr_for(frame.dts);
            Adaptation {
                pcr: Some(pcr),
                discontinuity,
                random_access: true,
            }
        } else {
            Adaptation::default()
        };
        write_pes_packets(out, AUDIO_PID, &mut self.cc[3], adaptation, &self.scratch);
        Ok(())
    }

    /// PCR (90 kHz base) for a PES on the PCR PID, and whether the time base jumped.
    fn pcr_for(&mut self, dts: i64) -> (u64, bool) {
        let jumped = self
            .last_pcr_dts
            .is_some_and(|last| dts < last || dts.abs_diff(last) > PCR_JUMP_LIMIT.unsigned_abs());
        self.last_pcr_dts = Some(dts);
        (ts33(dts.saturating_sub(PCR_DELAY)), jumped)
    }
}

/// Bytes of the `opus_control_header` of a packet of `size` bytes.
fn opus_control_header_len(size: usize) -> usize {
    3 + size / 255
}

/// Appends the `opus_control_header` before each Opus packet in TS: the 11-bit prefix 0x3ff,
/// no trim or extension flags, then the packet size as a run of 255s and a remainder.
fn write_opus_control_header(out: &mut Vec<u8>, size: usize) {
    out.extend_from_slice(&[0x7f, 0xe0]);
    out.extend(std::iter::repeat_n(0xff, size / 255));
    // The remainder is below 255 by construction.
    out.push((size % 255) as u8);
}

/// Hub timestamp to a 33-bit TS timestamp, offset by [`TIMESTAMP_OFFSET`].
pub fn ts33(t: i64) -> u64 {
    // Masking a two's-complement value keeps it modulo 2^33 (non-negative), so the cast is lossless.
    (t.saturating_add(TIMESTAMP_OFFSET) & TIMESTAMP_MASK) as u64
}

/// Writes a PES header with PTS (and DTS when it differs) into `out`.
fn write_pes_header(
    out: &mut Vec<u8>,
    stream_id: u8,
    len: Option<u16>,
    pts: i64,
    dts: Option<i64>,
) {
    let dts = dts.filter(|&d| d != pts);
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    // Video uses 0 (unbounded), allowed only for video (13818-1 2.4.3.7).
    out.extend_from_slice(&len.unwrap_or(0).to_be_bytes());
    // '10' marker, data_alignment_indicator: every PES starts an access unit.
    out.push(0x84);
    match dts {
        Some(dts) => {
            out.extend_from_slice(&[0xc0, 10]);
            write_timestamp(out, 0b0011, ts33(pts));
            write_timestamp(out, 0b0001, ts33(dts));
        }
        None => {
            out.extend_from_slice(&[0x80, 5]);
            write_timestamp(out, 0b0010, ts33(pts));
        }
    }
}

/// The 5-byte PTS/DTS field layout of 13818-1 2.4.3.7, with marker bits.
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    // Each shifted value is masked to at most 15 bits before narrowing, so no cast truncates.
    let hi = ((ts >> 30) & 0x07) as u8;
    let mid = ((ts >> 15) & 0x7fff) as u16;
    let lo = (ts & 0x7fff) as u16;
    out.push((prefix << 4) | (hi << 1) | 1);
    out.extend_from_slice(&((mid << 1) | 1).to_be_bytes());
    out.extend_from_slice(&((lo << 1) | 1).to_be_bytes());
}
