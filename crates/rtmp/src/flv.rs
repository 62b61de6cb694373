//! FLV tag bodies (RTMP audio/video message payloads) <-> `media` types.
//!
//! Legacy layout per the FLV specification v10.1 (E.4.2 AUDIODATA, E.4.3 VIDEODATA); the video
//! extended header per Enhanced RTMP v1. Bodies are sliced, never copied: an H.264 frame's
//! payload is a view into the RTMP message buffer.

use bytes::Bytes;
use media::{AacConfig, AudioCodec, Frame, OpaqueCodec, TrackKind, VideoCodec, ms_to_ticks};

/// FLV video codec id of H.264/AVC.
pub const VIDEO_CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;
/// Enhanced RTMP v2 sound format announcing an audio FourCC ex-header.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// AVCPacketType: AVCDecoderConfigurationRecord.
pub const AVC_SEQUENCE_HEADER: u8 = 0;
/// AVCPacketType: one or more NAL units.
pub const AVC_NALU: u8 = 1;
/// AVCPacketType: end of sequence.
pub const AVC_END_OF_SEQUENCE: u8 = 2;
/// AACPacketType: AudioSpecificConfig.
pub const AAC_SEQUENCE_HEADER: u8 = 0;
/// AACPacketType: raw AAC frame.
pub const AAC_RAW: u8 = 1;

/// A new session whose first frame lands this far past where the viewer's timeline resumes
/// is taken as a restart (a publisher with its own clock) and rebased.
const MAX_CONTINUED_GAP_MS: i64 = 5_000;

/// The offset (added to hub milliseconds) for a new session whose first frame is at `ms`, on
/// a viewer whose timeline resumes at `resume` (the first millisecond after what it was sent).
///
/// A republish restarts its clock, so it is rebased to start at `resume`. A session that
/// already continues the timeline (an input switch: the inputs keep each track's timestamps
/// increasing across it) keeps `offset`: rebasing on its first frame, a keyframe, would put
/// the other track's frames from just before that keyframe behind what the viewer was sent.
pub(crate) fn session_offset(offset: i64, ms: i64, resume: i64) -> i64 {
    let continued = ms + offset;
    if continued < resume || continued > resume + MAX_CONTINUED_GAP_MS {
        resume - ms
    } else {
        offset
    }
}

const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_INTER: u8 = 2;
const FRAME_TYPE_COMMAND: u8 = 5;
/// Legacy codec id of the HEVC extension (Chinese CDNs, SRS, ffmpeg forks) that predates
/// Enhanced RTMP; it keeps the AVC packet layout, so byte 1 tells sequence headers apart.
const VIDEO_CODEC_HEVC_LEGACY: u8 = 12;
/// Enhanced RTMP packet type: the decoder configuration record.
pub const EX_PACKET_SEQUENCE_START: u8 = 0;
/// Enhanced RTMP packet type: coded frames (with a composition time for AVC and HEVC).
pub const EX_PACKET_CODED_FRAMES: u8 = 1;
/// Enhanced RTMP packet type: end of sequence.
pub const EX_PACKET_SEQUENCE_END: u8 = 2;
/// Enhanced RTMP video packet type: coded frames without a composition time (it is 0).
pub const EX_PACKET_CODED_FRAMES_X: u8 = 3;
/// Enhanced RTMP video packet type: AMF metadata (e.g. `colorInfo`); audio: multichannel config.
const EX_PACKET_METADATA: u8 = 4;
/// Enhanced RTMP v2 video packet type: several tracks in one message.
const EX_PACKET_MULTITRACK_VIDEO: u8 = 6;
/// Enhanced RTMP v2 audio packet type: several tracks in one message.
const EX_PACKET_MULTITRACK_AUDIO: u8 = 5;
/// Enhanced RTMP v2 packet type: a modifier extension (e.g. a nanosecond timestamp offset)
/// before the real packet type.
const EX_PACKET_MOD_EX: u8 = 7;

/// A video codec the gateway models, as Enhanced RTMP names it by FourCC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExVideoCodec {
    /// `avc1`: H.264 sent with the extended header.
    Avc,
    /// `hvc1`: H.265/HEVC.
    Hevc,
    /// `av01`: AV1.
    Av1,
}

impl ExVideoCodec {
    /// The codec of a FourCC, if the gateway models it.
    pub fn from_fourcc(cc: [u8; 4]) -> Option<ExVideoCodec> {
        match &cc {
            b"avc1" => Some(ExVideoCodec::Avc),
            b"hvc1" => Some(ExVideoCodec::Hevc),
            b"av01" => Some(ExVideoCodec::Av1),
            _ => None,
        }
    }

    /// The FourCC on the wire.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            ExVideoCodec::Avc => *b"avc1",
            ExVideoCodec::Hevc => *b"hvc1",
            ExVideoCodec::Av1 => *b"av01",
        }
    }

    /// Whether CodedFrames carry a composition time (AVC and HEVC reorder pictures).
    fn has_cts(self) -> bool {
        self != ExVideoCodec::Av1
    }
}

/// An audio codec the gateway models, as Enhanced RTMP v2 names it by FourCC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExAudioCodec {
    /// `Opus`.
    Opus,
    /// `mp4a`: AAC sent with the extended header.
    Aac,
}

impl ExAudioCodec {
    /// The codec of a FourCC, if the gateway models it.
    pub fn from_fourcc(cc: [u8; 4]) -> Option<ExAudioCodec> {
        match &cc {
            b"Opus" => Some(ExAudioCodec::Opus),
            b"mp4a" => Some(ExAudioCodec::Aac),
            _ => None,
        }
    }

    /// The FourCC on the wire.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            ExAudioCodec::Opus => *b"Opus",
            ExAudioCodec::Aac => *b"mp4a",
        }
    }
}

/// A parsed FLV video tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// H.264 decoder configuration (AVCDecoderConfigurationRecord).
    AvcSequenceHeader(Bytes),
    /// H.264 access unit in AVCC form.
    AvcNalu {
        /// An IDR / random access frame (FLV frame type 1).
        keyframe: bool,
        /// Composition time offset (pts - dts) in milliseconds, signed 24-bit.
        cts_ms: i32,
        /// Length-prefixed NAL units, a slice of the message payload.
        data: Bytes,
    },
    /// H.264 end of sequence.
    AvcEndOfSequence,
    /// Enhanced RTMP decoder configuration of a modelled codec (hvcC, av1C, avcC).
    ExSequenceStart {
        /// Which codec.
        codec: ExVideoCodec,
        /// The configuration record, a slice of the message payload.
        record: Bytes,
    },
    /// Enhanced RTMP video metadata of a modelled codec: an AMF name and object, today
    /// `colorInfo` (HDR colour volume and light levels).
    ExMetadata {
        /// Which codec.
        codec: ExVideoCodec,
        /// The AMF values after the FourCC, a slice of the message payload.
        data: Bytes,
    },
    /// Enhanced RTMP coded frame of a modelled codec.
    ExCodedFrame {
        /// Which codec.
        codec: ExVideoCodec,
        /// A random access frame (frame type 1).
        keyframe: bool,
        /// Composition time offset in milliseconds (0 for CodedFramesX and AV1).
        cts_ms: i32,
        /// The frame (length-prefixed NAL units, or AV1 OBUs), a slice of the payload.
        data: Bytes,
    },
    /// A packet that carries no picture for the hub: end of sequence, HDR metadata of a
    /// modelled codec, or an Enhanced RTMP v2 multitrack message.
    Ignored(&'static str),
    /// A codec we pass through without parsing (legacy ids other than 7, Enhanced RTMP FourCCs).
    Opaque {
        /// Which codec.
        codec: OpaqueCodec,
        /// A random access frame.
        keyframe: bool,
        /// The body carries the decoder configuration (Enhanced RTMP SequenceStart).
        sequence_header: bool,
        /// The whole tag body.
        body: Bytes,
    },
    /// Video info/command frame (frame type 5, e.g. seek markers): carries no picture.
    Command,
}

/// A parsed FLV audio tag body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// AAC AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    /// One raw AAC access unit, a slice of the message payload.
    AacRaw(Bytes),
    /// Enhanced RTMP v2 audio decoder configuration of a modelled codec (OpusHead, ASC).
    ExSequenceStart {
        /// Which codec.
        codec: ExAudioCodec,
        /// The configuration, a slice of the message payload.
        config: Bytes,
    },
    /// Enhanced RTMP v2 coded audio frame of a modelled codec.
    ExCodedFrame {
        /// Which codec.
        codec: ExAudioCodec,
        /// One packet, a slice of the message payload.
        data: Bytes,
    },
    /// A packet that carries no audio for the hub (end of sequence, channel layout, multitrack).
    Ignored(&'static str),
    /// A sound format we pass through without parsing.
    Opaque {
        /// Which codec.
        codec: OpaqueCodec,
        /// The body carries the decoder configuration (Enhanced RTMP audio SequenceStart).
        sequence_header: bool,
        /// The whole tag body.
        body: Bytes,
    },
}

/// Errors from parsing FLV tag bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body is shorter than its header.
    #[error("flv {what}: {len} bytes, need {need}")]
    Truncated {
        /// Which header.
        what: &'static str,
        /// Body length.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// An AVC or AAC packet type outside the spec's values.
    #[error("flv {what}: invalid packet type {packet_type} at byte 1")]
    InvalidPacketType {
        /// Which codec.
        what: &'static str,
        /// The packet type byte.
        packet_type: u8,
    },
}

fn need(what: &'static str, body: &Bytes, n: usize) -> Result<(), FlvError> {
    if body.len() < n {
        return Err(FlvError::Truncated {
            what,
            len: body.len(),
            need: n,
        });
    }
    Ok(())
}

/// Parses one FLV video tag body (an RTMP video message payload).
pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    need("video tag", body, 1)?;
    let b0 = body[0];
    if b0 & 0x80 != 0 {
        return parse_ex_video_tag(body);
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Command);
    }
    let keyframe = frame_type == FRAME_TYPE_KEY;
    if codec_id != VIDEO_CODEC_AVC {
        return Ok(VideoTag::Opaque {
            codec: OpaqueCodec::FlvId(codec_id),
            keyframe,
            sequence_header: codec_id == VIDEO_CODEC_HEVC_LEGACY
                && body.get(1) == Some(&AVC_SEQUENCE_HEADER),
            body: body.clone(),
        });
    }
    need("avc video tag", body, 5)?;
    let packet_type = body[1];
    // CompositionTime is SI24: shift into the top of an i32 and back to sign-extend.
    let cts_ms = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
    match packet_type {
        AVC_SEQUENCE_HEADER => Ok(VideoTag::AvcSequenceHeader(body.slice(5..))),
        AVC_NALU => Ok(VideoTag::AvcNalu {
            keyframe,
            cts_ms,
            data: body.slice(5..),
        }),
        AVC_END_OF_SEQUENCE => Ok(VideoTag::AvcEndOfSequence),
        _ => Err(FlvError::InvalidPacketType {
            what: "avc",
            packet_type,
        }),
    }
}

/// Skips Enhanced RTMP v2 ModEx prefixes: returns the real packet type and the offset of the
/// FourCC. A ModEx carries a size-prefixed blob (a nanosecond timestamp offset today) that the
/// hub's 90 kHz clock cannot use, then `modExType(4) | packetType(4)`.
fn skip_mod_ex(body: &Bytes, what: &'static str) -> Result<(u8, usize), FlvError> {
    let mut packet_type = body[0] & 0x0f;
    let mut pos = 1;
    // Each round consumes at least two bytes, so a hostile body ends the loop by length.
    while packet_type == EX_PACKET_MOD_EX {
        need(what, body, pos + 1)?;
        let mut size = usize::from(body[pos]) + 1;
        pos += 1;
        if size == 256 {
            need(what, body, pos + 2)?;
            size = usize::from(u16::from_be_bytes([body[pos], body[pos + 1]])) + 1;
            pos += 2;
        }
        pos += size;
        need(what, body, pos + 1)?;
        packet_type = body[pos] & 0x0f;
        pos += 1;
    }
    need(what, body, pos + 4)?;
    Ok((packet_type, pos))
}

/// Enhanced RTMP ExVideoTagHeader: `1 | FrameType(3) | PacketType(4)`, ModEx, then a FourCC.
fn parse_ex_video_tag(body: &Bytes) -> Result<VideoTag, FlvError> {
    need("enhanced video tag", body, 5)?;
    let frame_type = (body[0] >> 4) & 0x07;
    let (packet_type, at) = skip_mod_ex(body, "enhanced video tag")?;
    // A command frame carries a VideoCommand instead of a picture, unless it is metadata
    // (e.g. HDR colour info) that players need, which travels on frame type 5 too.
    if frame_type == FRAME_TYPE_COMMAND && packet_type != EX_PACKET_METADATA {
        return Ok(VideoTag::Command);
    }
    let keyframe = frame_type == FRAME_TYPE_KEY;
    if packet_type == EX_PACKET_MULTITRACK_VIDEO {
        return Ok(
            match default_track(body, at, "enhanced video multitrack")? {
                Some(t) => match ExVideoCodec::from_fourcc(t.fourcc) {
                    Some(codec) => ex_video_packet(body, keyframe, t.packet_type, codec, t.data)?,
                    // An unmodelled codec cannot pass through whole: the body would still be
                    // multitrack, which legacy players cannot read.
                    None => VideoTag::Ignored("multitrack video of a codec not modelled"),
                },
                None => VideoTag::Ignored("multitrack video without its default track"),
            },
        );
    }
    let fourcc = [body[at], body[at + 1], body[at + 2], body[at + 3]];
    let Some(codec) = ExVideoCodec::from_fourcc(fourcc) else {
        return Ok(VideoTag::Opaque {
            codec: OpaqueCodec::FourCc(fourcc),
            keyframe,
            sequence_header: packet_type == EX_PACKET_SEQUENCE_START,
            body: body.clone(),
        });
    };
    ex_video_packet(body, keyframe, packet_type, codec, at + 4..body.len())
}

/// The body of one Enhanced RTMP video packet of a modelled codec, in `body[data]`.
fn ex_video_packet(
    body: &Bytes,
    keyframe: bool,
    packet_type: u8,
    codec: ExVideoCodec,
    data: std::ops::Range<usize>,
) -> Result<VideoTag, FlvError> {
    let (start, end) = (data.start, data.end);
    match packet_type {
        EX_PACKET_SEQUENCE_START => Ok(VideoTag::ExSequenceStart {
            codec,
            record: body.slice(data),
        }),
        EX_PACKET_CODED_FRAMES if codec.has_cts() => {
            if end < start + 3 {
                return Err(FlvError::Truncated {
                    what: "enhanced video tag",
                    len: end - start,
                    need: 3,
                });
            }
            let cts_ms =
                i32::from_be_bytes([body[start], body[start + 1], body[start + 2], 0]) >> 8;
            Ok(VideoTag::ExCodedFrame {
                codec,
                keyframe,
                cts_ms,
                data: body.slice(start + 3..end),
            })
        }
        EX_PACKET_CODED_FRAMES | EX_PACKET_CODED_FRAMES_X => Ok(VideoTag::ExCodedFrame {
            codec,
            keyframe,
            cts_ms: 0,
            data: body.slice(data),
        }),
        EX_PACKET_SEQUENCE_END => Ok(VideoTag::Ignored("end of sequence")),
        EX_PACKET_METADATA => Ok(VideoTag::ExMetadata {
            codec,
            data: body.slice(data),
        }),
        // MPEG2TSSequenceStart and packet types of later revisions: nothing the hub carries,
        // and no reason to drop the publisher.
        _ => Ok(VideoTag::Ignored("video packet type not modelled")),
    }
}

/// `AvMultitrackType` of Enhanced RTMP v2: one track, no size field. (1, ManyTracks: several
/// tracks of one codec, each with a size.)
const MULTITRACK_ONE_TRACK: u8 = 0;
/// `AvMultitrackType`: several tracks, each with its own FourCC and a size.
const MULTITRACK_MANY_TRACKS_MANY_CODECS: u8 = 2;

/// One track of a multitrack message.
struct Track {
    packet_type: u8,
    fourcc: [u8; 4],
    /// Its packet body within the message.
    data: std::ops::Range<usize>,
}

/// The default track (id 0) of an Enhanced RTMP v2 multitrack message whose
/// `avMultitrackType | packetType` byte is at `at`: what the hub and legacy players take.
/// Other tracks (ffmpeg sends a second video or audio stream as track 1) are skipped.
fn default_track(body: &Bytes, at: usize, what: &'static str) -> Result<Option<Track>, FlvError> {
    need(what, body, at + 1)?;
    let kind = body[at] >> 4;
    let packet_type = body[at] & 0x0f;
    if kind > MULTITRACK_MANY_TRACKS_MANY_CODECS {
        return Ok(None);
    }
    let fourcc_at = |pos: usize| -> Result<[u8; 4], FlvError> {
        need(what, body, pos + 4)?;
        Ok([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]])
    };
    let mut pos = at + 1;
    let shared = if kind == MULTITRACK_MANY_TRACKS_MANY_CODECS {
        None
    } else {
        pos += 4;
        Some(fourcc_at(pos - 4)?)
    };
    // Each round consumes at least two bytes, so a hostile body ends the loop by length.
    while pos < body.len() {
        let fourcc = match shared {
            Some(f) => f,
            None => {
                pos += 4;
                fourcc_at(pos - 4)?
            }
        };
        need(what, body, pos + 1)?;
        let id = body[pos];
        pos += 1;
        let end = if kind == MULTITRACK_ONE_TRACK {
            body.len()
        } else {
            need(what, body, pos + 3)?;
            let size = usize::from(body[pos]) << 16
                | usize::from(body[pos + 1]) << 8
                | usize::from(body[pos + 2]);
            pos += 3;
            need(what, body, pos + size)?;
            pos + size
        };
        if id == 0 {
            return Ok(Some(Track {
                packet_type,
                fourcc,
                data: pos..end,
            }));
        }
        pos = end;
    }
    Ok(None)
}

/// Parses one FLV audio tag body (an RTMP audio message payload).
pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, FlvError> {
    need("audio tag", body, 1)?;
    let sound_format = body[0] >> 4;
    match sound_format {
        SOUND_FORMAT_AAC => {
            need("aac audio tag", body, 2)?;
            match body[1] {
                AAC_SEQUENCE_HEADER => Ok(AudioTag::AacSequenceHeader(body.slice(2..))),
                AAC_RAW => Ok(AudioTag::AacRaw(body.slice(2..))),
                packet_type => Err(FlvError::InvalidPacketType {
                    what: "aac",
                    packet_type,
                }),
            }
        }
        // Enhanced RTMP v2 reuses the reserved sound format 9 for `9 | PacketType(4)` + FourCC
        // (Opus, FLAC, AC-3 from OBS 30+ and ffmpeg 7+); pass it through like v1 video.
        SOUND_FORMAT_EX_HEADER => {
            need("enhanced audio tag", body, 5)?;
            let (packet_type, at) = skip_mod_ex(body, "enhanced audio tag")?;
            if packet_type == EX_PACKET_MULTITRACK_AUDIO {
                return Ok(
                    match default_track(body, at, "enhanced audio multitrack")? {
                        Some(t) => match ExAudioCodec::from_fourcc(t.fourcc) {
                            Some(codec) => {
                                ex_audio_packet(t.packet_type, codec, body.slice(t.data))
                            }
                            None => AudioTag::Ignored("multitrack audio of a codec not modelled"),
                        },
                        None => AudioTag::Ignored("multitrack audio without its default track"),
                    },
                );
            }
            let fourcc = [body[at], body[at + 1], body[at + 2], body[at + 3]];
            let Some(codec) = ExAudioCodec::from_fourcc(fourcc) else {
                return Ok(AudioTag::Opaque {
                    codec: OpaqueCodec::FourCc(fourcc),
                    sequence_header: packet_type == EX_PACKET_SEQUENCE_START,
                    body: body.clone(),
                });
            };
            Ok(ex_audio_packet(packet_type, codec, body.slice(at + 4..)))
        }
        _ => Ok(AudioTag::Opaque {
            codec: OpaqueCodec::FlvId(sound_format),
            sequence_header: false,
            body: body.clone(),
        }),
    }
}

/// One Enhanced RTMP audio packet of a modelled codec, its body `data`.
fn ex_audio_packet(packet_type: u8, codec: ExAudioCodec, data: Bytes) -> AudioTag {
    match packet_type {
        EX_PACKET_SEQUENCE_START => AudioTag::ExSequenceStart {
            codec,
            config: data,
        },
        EX_PACKET_CODED_FRAMES => AudioTag::ExCodedFrame { codec, data },
        EX_PACKET_SEQUENCE_END => AudioTag::Ignored("end of sequence"),
        // MultichannelConfig: the layout is in the OpusHead / ASC already.
        EX_PACKET_METADATA => AudioTag::Ignored("multichannel config"),
        _ => AudioTag::Ignored("audio packet type not modelled"),
    }
}

/// The 5-byte header of an H.264 video tag; `cts_ms` is clamped to the signed 24-bit range.
pub fn avc_video_header(keyframe: bool, packet_type: u8, cts_ms: i32) -> [u8; 5] {
    let frame_type = if keyframe {
        FRAME_TYPE_KEY
    } else {
        FRAME_TYPE_INTER
    };
    let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
    [
        (frame_type << 4) | VIDEO_CODEC_AVC,
        packet_type,
        cts[1],
        cts[2],
        cts[3],
    ]
}

/// The 2-byte header of an AAC audio tag.
///
/// FLV spec E.4.2.1: for AAC the rate/size/type bits are fixed at 44 kHz, 16-bit, stereo
/// whatever the stream is (the decoder reads the AudioSpecificConfig), which is also what
/// ffmpeg's flvenc writes, so the first byte is always 0xAF; `_config` is kept in the signature
/// for codecs where the bits matter.
pub fn aac_audio_header(_config: &AacConfig, packet_type: u8) -> [u8; 2] {
    [
        (SOUND_FORMAT_AAC << 4) | (3 << 2) | (1 << 1) | 1,
        packet_type,
    ]
}

/// The 5-byte video tag header for an H.264 frame: keyframe flag and pts - dts in milliseconds.
pub fn avc_frame_header(frame: &Frame) -> [u8; 5] {
    let cts = media::ticks_to_ms(frame.pts - frame.dts);
    let cts = i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX });
    avc_video_header(frame.keyframe, AVC_NALU, cts)
}

/// The Enhanced RTMP header of a video tag: `1 | FrameType | PacketType`, the FourCC, and for
/// AVC/HEVC CodedFrames the SI24 composition time. Returns the bytes and how many are used.
pub fn ex_video_header(
    codec: ExVideoCodec,
    keyframe: bool,
    packet_type: u8,
    cts_ms: i32,
) -> ([u8; 8], usize) {
    let frame_type = if keyframe {
        FRAME_TYPE_KEY
    } else {
        FRAME_TYPE_INTER
    };
    let cc = codec.fourcc();
    let mut h = [
        0x80 | (frame_type << 4) | packet_type,
        cc[0],
        cc[1],
        cc[2],
        cc[3],
        0,
        0,
        0,
    ];
    if packet_type == EX_PACKET_CODED_FRAMES && codec.has_cts() {
        let cts = cts_ms.clamp(-(1 << 23), (1 << 23) - 1).to_be_bytes();
        h[5..].copy_from_slice(&cts[1..]);
        return (h, 8);
    }
    (h, 5)
}

/// The Enhanced RTMP v2 header of an audio tag: `9 | PacketType`, then the FourCC.
pub fn ex_audio_header(codec: ExAudioCodec, packet_type: u8) -> [u8; 5] {
    let cc = codec.fourcc();
    [
        (SOUND_FORMAT_EX_HEADER << 4) | packet_type,
        cc[0],
        cc[1],
        cc[2],
        cc[3],
    ]
}

/// The Enhanced RTMP header of a coded video frame of `codec`.
pub fn ex_frame_header(codec: ExVideoCodec, frame: &Frame) -> ([u8; 8], usize) {
    let cts = media::ticks_to_ms(frame.pts - frame.dts);
    let cts = i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX });
    ex_video_header(codec, frame.keyframe, EX_PACKET_CODED_FRAMES, cts)
}

/// The codec header that precedes a payload in a tag body: at most 8 bytes (an Enhanced RTMP
/// FourCC header with a composition time), kept on the stack so each frame costs no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagPrefix {
    bytes: [u8; 8],
    len: u8,
}

impl TagPrefix {
    /// A prefix of the first `len` bytes of `bytes`.
    fn new(bytes: [u8; 8], len: usize) -> Self {
        TagPrefix {
            bytes,
            len: len.min(8) as u8,
        }
    }

    fn from_slice(h: &[u8]) -> Self {
        let mut bytes = [0; 8];
        let n = h.len().min(8);
        bytes[..n].copy_from_slice(&h[..n]);
        TagPrefix::new(bytes, n)
    }

    /// The header bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The video sequence header tag of `codec` as (codec header, configuration record); `None`
/// when the codec has none yet. H.264 keeps the legacy layout every player reads; HEVC and AV1
/// use Enhanced RTMP's SequenceStart.
pub fn video_sequence_header(codec: &VideoCodec) -> Option<(TagPrefix, Bytes)> {
    let ex = |c: ExVideoCodec, record: &Bytes| {
        let (h, n) = ex_video_header(c, true, EX_PACKET_SEQUENCE_START, 0);
        Some((TagPrefix::new(h, n), record.clone()))
    };
    match codec {
        VideoCodec::H264(cfg) => Some((
            TagPrefix::from_slice(&avc_video_header(true, AVC_SEQUENCE_HEADER, 0)),
            cfg.record.clone(),
        )),
        VideoCodec::H265(cfg) => ex(ExVideoCodec::Hevc, &cfg.record),
        VideoCodec::Av1(cfg) => ex(ExVideoCodec::Av1, &cfg.record),
        VideoCodec::Opaque {
            sequence_header, ..
        } => sequence_header
            .as_ref()
            .map(|b| (TagPrefix::default(), b.clone())),
    }
}

/// The tag of the publisher's Enhanced RTMP video metadata (`colorInfo`) as (codec header,
/// AMF values), for HEVC and AV1, which only Enhanced RTMP players receive; it follows the
/// sequence start, as ffmpeg and OBS send it. H.264 goes out in the legacy layout, whose
/// players would take the Enhanced header for another codec.
pub fn video_metadata_tag(info: &media::MediaInfo) -> Option<(TagPrefix, Bytes)> {
    let codec = match info.video.as_ref()? {
        VideoCodec::H265(_) => ExVideoCodec::Hevc,
        VideoCodec::Av1(_) => ExVideoCodec::Av1,
        _ => return None,
    };
    let data = info.video_metadata.clone()?;
    let cc = codec.fourcc();
    // Frame type 5 (command), as ffmpeg writes it: no picture, never taken for a keyframe.
    let header = [
        0x80 | (FRAME_TYPE_COMMAND << 4) | EX_PACKET_METADATA,
        cc[0],
        cc[1],
        cc[2],
        cc[3],
    ];
    Some((TagPrefix::from_slice(&header), data))
}

/// The audio sequence header tag of `codec` as (codec header, configuration).
pub fn audio_sequence_header(codec: &AudioCodec) -> Option<(TagPrefix, Bytes)> {
    match codec {
        AudioCodec::Aac(cfg) => Some((
            TagPrefix::from_slice(&aac_audio_header(cfg, AAC_SEQUENCE_HEADER)),
            cfg.asc.clone(),
        )),
        AudioCodec::Opus(cfg) if !cfg.head.is_empty() => Some((
            TagPrefix::from_slice(&ex_audio_header(
                ExAudioCodec::Opus,
                EX_PACKET_SEQUENCE_START,
            )),
            cfg.head.clone(),
        )),
        AudioCodec::Opus(_) => None,
        AudioCodec::Opaque {
            sequence_header, ..
        } => sequence_header
            .as_ref()
            .map(|b| (TagPrefix::default(), b.clone())),
    }
}

/// The codec header of a video frame of `codec`; opaque frames are whole bodies already.
pub fn video_frame_prefix(codec: &VideoCodec, frame: &Frame) -> TagPrefix {
    match codec {
        VideoCodec::H264(_) => TagPrefix::from_slice(&avc_frame_header(frame)),
        VideoCodec::H265(_) => {
            let (h, n) = ex_frame_header(ExVideoCodec::Hevc, frame);
            TagPrefix::new(h, n)
        }
        VideoCodec::Av1(_) => {
            let (h, n) = ex_frame_header(ExVideoCodec::Av1, frame);
            TagPrefix::new(h, n)
        }
        VideoCodec::Opaque { .. } => TagPrefix::default(),
    }
}

/// The codec header of an audio frame of `codec`; opaque frames are whole bodies already.
pub fn audio_frame_prefix(codec: &AudioCodec) -> TagPrefix {
    match codec {
        AudioCodec::Aac(cfg) => TagPrefix::from_slice(&aac_audio_header(cfg, AAC_RAW)),
        AudioCodec::Opus(_) => {
            TagPrefix::from_slice(&ex_audio_header(ExAudioCodec::Opus, EX_PACKET_CODED_FRAMES))
        }
        AudioCodec::Opaque { .. } => TagPrefix::default(),
    }
}

/// The `videocodecid` of `onMetaData`: the legacy id, or the FourCC as a big-endian number as
/// ffmpeg writes for Enhanced RTMP.
pub fn video_codec_id(codec: &VideoCodec) -> f64 {
    match codec {
        VideoCodec::H264(_) => f64::from(VIDEO_CODEC_AVC),
        VideoCodec::H265(_) => f64::from(u32::from_be_bytes(ExVideoCodec::Hevc.fourcc())),
        VideoCodec::Av1(_) => f64::from(u32::from_be_bytes(ExVideoCodec::Av1.fourcc())),
        VideoCodec::Opaque {
            codec: OpaqueCodec::FlvId(id),
            ..
        } => f64::from(*id),
        VideoCodec::Opaque {
            codec: OpaqueCodec::FourCc(cc),
            ..
        } => f64::from(u32::from_be_bytes(*cc)),
    }
}

/// The `audiocodecid` of `onMetaData`, as [`video_codec_id`].
pub fn audio_codec_id(codec: &AudioCodec) -> f64 {
    match codec {
        AudioCodec::Aac(_) => f64::from(SOUND_FORMAT_AAC),
        AudioCodec::Opus(_) => f64::from(u32::from_be_bytes(ExAudioCodec::Opus.fourcc())),
        AudioCodec::Opaque {
            codec: OpaqueCodec::FlvId(id),
            ..
        } => f64::from(*id),
        AudioCodec::Opaque {
            codec: OpaqueCodec::FourCc(cc),
            ..
        } => f64::from(u32::from_be_bytes(*cc)),
    }
}

/// Enhanced RTMP capabilities a server states in its `connect` `_result` properties: every
/// FourCC it forwards (`fourCcList`, v1), the v2 per-codec maps (`*`: can forward anything),
/// and `capsEx` ModEx, which the parser skips.
pub fn server_connect_capabilities() -> [(&'static str, crate::amf0::Amf0Value); 4] {
    use crate::amf0::Amf0Value;
    let list = [
        "av01", "vp09", "hvc1", "avc1", "Opus", "mp4a", "fLaC", "ac-3", "ec-3",
    ];
    let forward = || Amf0Value::object([("*", Amf0Value::Number(f64::from(FOURCC_CAN_FORWARD)))]);
    [
        (
            "fourCcList",
            Amf0Value::StrictArray(list.iter().map(|s| (*s).into()).collect()),
        ),
        ("videoFourCcInfoMap", forward()),
        ("audioFourCcInfoMap", forward()),
        ("capsEx", Amf0Value::Number(f64::from(CAPS_EX_MOD_EX))),
    ]
}

/// The `fourCcList` a client sends in `connect`, the one OBS 30+ sends: servers that speak
/// Enhanced RTMP (YouTube, SRS, MediaMTX) then accept and send HEVC, AV1 and VP9.
pub fn client_fourcc_list() -> crate::amf0::Amf0Value {
    crate::amf0::Amf0Value::StrictArray(vec!["av01".into(), "vp09".into(), "hvc1".into()])
}

/// `FourCcInfoMask.CanForward` of Enhanced RTMP v2.
const FOURCC_CAN_FORWARD: u8 = 4;
/// `CapsExMask.ModEx` of Enhanced RTMP v2.
const CAPS_EX_MOD_EX: u8 = 4;

impl VideoTag {
    /// The hub frame for a picture tag at decode time `dts_ms` (the extended RTMP timestamp);
    /// `None` for sequence headers, end of sequence and command frames, which are not frames.
    pub fn into_frame(self, dts_ms: i64) -> Option<Frame> {
        match self {
            VideoTag::AvcNalu {
                keyframe,
                cts_ms,
                data,
            }
            | VideoTag::ExCodedFrame {
                keyframe,
                cts_ms,
                data,
                ..
            } => Some(Frame {
                track: TrackKind::Video,
                dts: ms_to_ticks(dts_ms),
                pts: ms_to_ticks(dts_ms + i64::from(cts_ms)),
                keyframe,
                payload: data,
            }),
            VideoTag::Opaque {
                keyframe,
                sequence_header: false,
                body,
                ..
            } => Some(Frame {
                track: TrackKind::Video,
                dts: ms_to_ticks(dts_ms),
                pts: ms_to_ticks(dts_ms),
                keyframe,
                payload: body,
            }),
            _ => None,
        }
    }
}

impl AudioTag {
    /// The hub frame for an audio tag at `dts_ms`; `None` for sequence headers.
    pub fn into_frame(self, dts_ms: i64) -> Option<Frame> {
        let payload = match self {
            AudioTag::AacRaw(data) | AudioTag::ExCodedFrame { data, .. } => data,
            AudioTag::Opaque {
                sequence_header: false,
                body,
                ..
            } => body,
            _ => return None,
        };
        Some(Frame {
            track: TrackKind::Audio,
            dts: ms_to_ticks(dts_ms),
            pts: ms_to_ticks(dts_ms),
            keyframe: true,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::AvcConfig;

    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    struct Tag {
        tag_type: u8,
        timestamp: u32,
        body: Bytes,
    }

    /// Walks an FLV file: 9-byte header, PreviousTagSize0, then 11-byte tag headers + bodies.
    fn read_flv(file: &'static [u8]) -> Vec<Tag> {
        assert_eq!(&file[..3], b"FLV");
        let file = Bytes::from_static(file);
        let mut pos =
            usize::try_from(u32::from_be_bytes(file[5..9].try_into().unwrap())).unwrap() + 4;
        let mut tags = Vec::new();
        while pos + 11 <= file.len() {
            let h = &file[pos..pos + 11];
            let size = usize::try_from(u32::from_be_bytes([0, h[1], h[2], h[3]])).unwrap();
            let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let body = file.slice(pos + 11..pos + 11 + size);
            let prev =
                u32::from_be_bytes(file[pos + 11 + size..pos + 15 + size].try_into().unwrap());
            assert_eq!(prev as usize, size + 11);
            tags.push(Tag {
                tag_type: h[0] & 0x1f,
                timestamp,
                body,
            });
            pos += 15 + size;
        }
        assert_eq!(pos, file.len());
        tags
    }

    #[test]
    fn ffmpeg_h264_aac_file() {
        let tags = read_flv(FLV);
        let video: Vec<_> = tags.iter().filter(|t| t.tag_type == 9).collect();
        let audio: Vec<_> = tags.iter().filter(|t| t.tag_type == 8).collect();
        assert_eq!(tags[0].tag_type, 18);

        let VideoTag::AvcSequenceHeader(record) = parse_video_tag(&video[0].body).unwrap() else {
            panic!("first video tag is not a sequence header")
        };
        let avc = AvcConfig::parse(record).unwrap();
        assert_eq!((avc.width, avc.height), (320, 240));
        assert_eq!(avc.nal_length_size, 4);

        let mut frames = Vec::new();
        for t in &video[1..] {
            match parse_video_tag(&t.body).unwrap() {
                VideoTag::AvcNalu {
                    keyframe,
                    cts_ms,
                    data,
                } => {
                    assert!(!data.is_empty());
                    // Zero-copy: the payload points into the tag body.
                    assert_eq!(data.as_ptr(), t.body[5..].as_ptr());
                    assert_eq!(keyframe, media::avc::avcc_contains_idr(&data, 4));
                    frames.push((t.timestamp, keyframe, cts_ms));
                }
                VideoTag::AvcEndOfSequence => assert!(std::ptr::eq(*t, *video.last().unwrap())),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(frames.len(), 25);
        let keys: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.1)
            .map(|(i, _)| i)
            .collect();
        // -g 25 over one second at 25 fps: a single GOP opened by the first frame.
        assert_eq!(keys, [0]);
        // x264 uses B-frames: some cts > 0, none negative, and pts (dts + cts) values are the
        // 40 ms grid in presentation order, each used once.
        assert!(frames.iter().any(|f| f.2 > 0));
        assert!(frames.iter().all(|f| f.2 >= 0));
        let mut pts: Vec<i64> = frames
            .iter()
            .map(|f| i64::from(f.0) + i64::from(f.2))
            .collect();
        pts.sort_unstable();
        let first = pts[0];
        for (i, p) in pts.iter().enumerate() {
            assert_eq!(p - first, 40 * i as i64);
        }

        let AudioTag::AacSequenceHeader(asc) = parse_audio_tag(&audio[0].body).unwrap() else {
            panic!("first audio tag is not a sequence header")
        };
        let aac = AacConfig::parse(asc).unwrap();
        assert_eq!(aac.sample_rate, 44100);
        assert_eq!(aac.channel_config, 1);
        for t in &audio {
            assert_eq!(
                t.body[0], 0xAF,
                "ffmpeg writes 0xAF for AAC whatever the layout"
            );
            assert_eq!(&t.body[..2], aac_audio_header(&aac, t.body[1]));
        }
        for t in &audio[1..] {
            let tag = parse_audio_tag(&t.body).unwrap();
            assert!(matches!(&tag, AudioTag::AacRaw(d) if !d.is_empty()));
            let f = tag.into_frame(i64::from(t.timestamp)).unwrap();
            assert_eq!(f.track, TrackKind::Audio);
            assert_eq!(f.dts, ms_to_ticks(i64::from(t.timestamp)));
        }
    }

    #[test]
    fn headers_round_trip_on_real_tags() {
        for t in read_flv(FLV).iter().filter(|t| t.tag_type == 9) {
            let tag = parse_video_tag(&t.body).unwrap();
            let (keyframe, packet_type, cts) = match &tag {
                VideoTag::AvcSequenceHeader(_) => (true, AVC_SEQUENCE_HEADER, 0),
                VideoTag::AvcNalu {
                    keyframe, cts_ms, ..
                } => (*keyframe, AVC_NALU, *cts_ms),
                VideoTag::AvcEndOfSequence => (true, AVC_END_OF_SEQUENCE, 0),
                _ => unreachable!(),
            };
            assert_eq!(avc_video_header(keyframe, packet_type, cts), t.body[..5]);
            if let Some(f) = tag.into_frame(i64::from(t.timestamp)) {
                assert_eq!(avc_frame_header(&f), t.body[..5]);
            }
        }
    }

    #[test]
    fn avc_header_round_trip() {
        for (key, pt, cts) in [
            (true, AVC_NALU, 0),
            (false, AVC_NALU, 80),
            (false, AVC_NALU, -40),
            (false, AVC_NALU, (1 << 23) - 1),
            (false, AVC_NALU, -(1 << 23)),
        ] {
            let mut body = avc_video_header(key, pt, cts).to_vec();
            body.extend_from_slice(&[0, 0, 0, 1, 0x65]);
            let tag = parse_video_tag(&Bytes::from(body)).unwrap();
            assert_eq!(
                tag,
                VideoTag::AvcNalu {
                    keyframe: key,
                    cts_ms: cts,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x65])
                }
            );
        }
        // Out-of-range CTS is clamped, not wrapped.
        assert_eq!(avc_video_header(false, 1, 1 << 30)[2..], [0x7f, 0xff, 0xff]);
        assert_eq!(avc_video_header(false, 1, i32::MIN)[2..], [0x80, 0, 0]);
        let body = Bytes::copy_from_slice(&avc_video_header(true, AVC_SEQUENCE_HEADER, 0));
        assert_eq!(
            parse_video_tag(&body).unwrap(),
            VideoTag::AvcSequenceHeader(Bytes::new())
        );
        let body = Bytes::copy_from_slice(&avc_video_header(true, AVC_END_OF_SEQUENCE, 0));
        assert_eq!(parse_video_tag(&body).unwrap(), VideoTag::AvcEndOfSequence);
    }

    #[test]
    fn frame_conversion() {
        let tag = VideoTag::AvcNalu {
            keyframe: false,
            cts_ms: 80,
            data: Bytes::from_static(b"x"),
        };
        let f = tag.into_frame(1000).unwrap();
        assert_eq!((f.dts, f.pts), (90_000, 97_200));
        assert_eq!(avc_frame_header(&f), [0x27, 1, 0, 0, 80]);
        assert_eq!(
            VideoTag::AvcSequenceHeader(Bytes::new()).into_frame(0),
            None
        );
        assert_eq!(VideoTag::Command.into_frame(0), None);
        assert_eq!(
            AudioTag::AacSequenceHeader(Bytes::new()).into_frame(0),
            None
        );
    }

    #[test]
    fn enhanced_rtmp_video() {
        // OBS 30 HEVC: SequenceStart keyframe, then CodedFramesX (packet type 3).
        let seq = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        let tag = parse_video_tag(&seq).unwrap();
        assert_eq!(
            tag,
            VideoTag::ExSequenceStart {
                codec: ExVideoCodec::Hevc,
                record: seq.slice(5..)
            }
        );
        assert_eq!(tag.into_frame(0), None);
        // AV1 CodedFrames carry no composition time; the data starts after the FourCC.
        let inter = Bytes::from_static(&[0xA1, b'a', b'v', b'0', b'1', 9]);
        let tag = parse_video_tag(&inter).unwrap();
        assert_eq!(
            tag,
            VideoTag::ExCodedFrame {
                codec: ExVideoCodec::Av1,
                keyframe: false,
                cts_ms: 0,
                data: inter.slice(5..)
            }
        );
        let f = tag.into_frame(40).unwrap();
        assert_eq!(f.payload, inter.slice(5..));
        // HEVC CodedFrames: SI24 composition time, here -40 ms.
        let b = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xd8, 7]);
        let f = parse_video_tag(&b).unwrap().into_frame(100).unwrap();
        assert_eq!((f.dts, f.pts, f.keyframe), (9000, 5400, true));
        assert_eq!(f.payload, b.slice(8..));
        assert_eq!(
            ex_frame_header(ExVideoCodec::Hevc, &f),
            ([0x91, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xd8], 8)
        );
        // A FourCC the gateway does not model (VP9) passes through whole.
        let vp9 = Bytes::from_static(&[0x91, b'v', b'p', b'0', b'9', 1]);
        assert!(matches!(
            parse_video_tag(&vp9).unwrap(),
            VideoTag::Opaque { codec: OpaqueCodec::FourCc(c), keyframe: true, sequence_header: false, .. } if &c == b"vp09"
        ));
        // Command frames are ignored; metadata (frame type 5) and sequence end carry no
        // picture for the hub.
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0xD1, b'h', b'v', b'c', b'1', 0])).unwrap(),
            VideoTag::Command
        );
        // ffmpeg 9's colorInfo (frame type 5, packet type 4) is read, and written back the
        // same after an HEVC sequence start.
        let color = Bytes::from_static(include_bytes!(
            "../../../testdata/ffmpeg9-hevc-colorinfo.metadata"
        ));
        let VideoTag::ExMetadata { codec, data } = parse_video_tag(&color).unwrap() else {
            panic!("colorInfo not read as metadata")
        };
        assert_eq!(codec, ExVideoCodec::Hevc);
        assert_eq!(&data[..12], b"\x02\x00\x09colorInfo");
        let mut info = media::MediaInfo {
            video: Some(VideoCodec::H265(
                media::HevcConfig::parse(Bytes::from_static(include_bytes!(
                    "../../../testdata/hevc-1280x720-main.hvcc"
                )))
                .unwrap(),
            )),
            video_metadata: Some(data),
            ..Default::default()
        };
        let (h, body) = video_metadata_tag(&info).unwrap();
        assert_eq!([h.as_slice(), &body[..]].concat(), color);
        // H.264 goes out as legacy FLV: no Enhanced metadata for its players.
        info.video = Some(VideoCodec::H264(
            media::AvcConfig::parse(Bytes::from_static(include_bytes!(
                "../../../testdata/h264-320x240-baseline.avcc"
            )))
            .unwrap(),
        ));
        assert!(video_metadata_tag(&info).is_none());
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[0x92, b'h', b'v', b'c', b'1'])).unwrap(),
            VideoTag::Ignored(_)
        ));
        // v2 ModEx (a 3-byte nanosecond offset, then CodedFramesX) is skipped to the FourCC.
        let modex = Bytes::from_static(&[0x97, 2, 0, 0, 9, 0x03, b'h', b'v', b'c', b'1', 5]);
        assert_eq!(
            parse_video_tag(&modex).unwrap(),
            VideoTag::ExCodedFrame {
                codec: ExVideoCodec::Hevc,
                keyframe: true,
                cts_ms: 0,
                data: modex.slice(10..)
            }
        );
        assert!(parse_video_tag(&Bytes::from_static(&[0x90, b'h', b'v', b'c'])).is_err());
        assert!(parse_video_tag(&Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0])).is_err());
        assert!(parse_video_tag(&Bytes::from_static(&[0x97, 0xff, 0xff])).is_err());
    }

    /// Enhanced RTMP v2 multitrack: the default track (id 0) is taken as if sent alone, the
    /// others are skipped, and sizes that run past the message are errors.
    #[test]
    fn multitrack_takes_the_default_track() {
        // ffmpeg 9 sends a second stream as track 1 (OneTrack): nothing for the hub.
        let audio1 = Bytes::from_static(include_bytes!(
            "../../../testdata/ffmpeg9-multitrack-track1-aac.seqstart"
        ));
        let video1 = Bytes::from_static(include_bytes!(
            "../../../testdata/ffmpeg9-multitrack-track1-hevc.codedframesx"
        ));
        assert!(matches!(
            parse_audio_tag(&audio1).unwrap(),
            AudioTag::Ignored(_)
        ));
        assert!(matches!(
            parse_video_tag(&video1).unwrap(),
            VideoTag::Ignored(_)
        ));
        // The same messages as track 0 are the track's own packets.
        let mut a = audio1.to_vec();
        a[6] = 0;
        let audio0 = Bytes::from(a);
        assert_eq!(
            parse_audio_tag(&audio0).unwrap(),
            AudioTag::ExSequenceStart {
                codec: ExAudioCodec::Aac,
                config: audio0.slice(7..)
            }
        );
        let mut v = video1.to_vec();
        v[6] = 0;
        let video0 = Bytes::from(v);
        assert_eq!(
            parse_video_tag(&video0).unwrap(),
            VideoTag::ExCodedFrame {
                codec: ExVideoCodec::Hevc,
                keyframe: false,
                cts_ms: 0,
                data: video0.slice(7..)
            }
        );
        // ManyTracks: track 1 (3 bytes), then track 0 (CodedFrames: SI24 cts 40, 2 bytes).
        let many = Bytes::from_static(&[
            0x96, 0x11, b'h', b'v', b'c', b'1', 1, 0, 0, 3, 9, 9, 9, 0, 0, 0, 5, 0, 0, 40, 7, 8,
        ]);
        assert_eq!(
            parse_video_tag(&many).unwrap(),
            VideoTag::ExCodedFrame {
                codec: ExVideoCodec::Hevc,
                keyframe: true,
                cts_ms: 40,
                data: many.slice(20..22)
            }
        );
        // ManyTracksManyCodecs: an unmodelled codec on track 1, Opus on track 0.
        let mixed = Bytes::from_static(&[
            0x95, 0x21, b'f', b'L', b'a', b'C', 1, 0, 0, 1, 9, b'O', b'p', b'u', b's', 0, 0, 0, 2,
            0xfc, 1,
        ]);
        assert_eq!(
            parse_audio_tag(&mixed).unwrap(),
            AudioTag::ExCodedFrame {
                codec: ExAudioCodec::Opus,
                data: mixed.slice(19..21)
            }
        );
        // Track 0 of a codec the gateway does not model, and a message without track 0.
        assert!(matches!(
            parse_audio_tag(&Bytes::from_static(&[
                0x95, 0x21, b'f', b'L', b'a', b'C', 0, 0, 0, 1, 9
            ]))
            .unwrap(),
            AudioTag::Ignored(_)
        ));
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[
                0x96, 0x11, b'h', b'v', b'c', b'1', 2, 0, 0, 1, 9
            ]))
            .unwrap(),
            VideoTag::Ignored(_)
        ));
        // A track size past the end, a cut FourCC, and a cut CodedFrames are errors.
        for bad in [
            &[0x96, 0x11, b'h', b'v', b'c', b'1', 0, 0, 0, 9, 1][..],
            &[0x96, 0x21, b'h', b'v', b'c'][..],
            &[0x96, 0x01, b'h', b'v', b'c', b'1', 0, 0][..],
        ] {
            assert!(
                parse_video_tag(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn enhanced_rtmp_audio() {
        let head = Bytes::from_static(&[0x90, b'O', b'p', b'u', b's', 1]);
        assert_eq!(
            parse_audio_tag(&head).unwrap(),
            AudioTag::ExSequenceStart {
                codec: ExAudioCodec::Opus,
                config: head.slice(5..)
            }
        );
        let pkt = Bytes::from_static(&[0x91, b'O', b'p', b'u', b's', 0xfc, 1]);
        let tag = parse_audio_tag(&pkt).unwrap();
        assert_eq!(
            tag,
            AudioTag::ExCodedFrame {
                codec: ExAudioCodec::Opus,
                data: pkt.slice(5..)
            }
        );
        assert_eq!(tag.into_frame(20).unwrap().payload, pkt.slice(5..));
        assert_eq!(ex_audio_header(ExAudioCodec::Opus, 1), pkt[..5]);
        // AAC by FourCC maps to the modelled AAC; FLAC and AC-3 pass through whole.
        assert!(matches!(
            parse_audio_tag(&Bytes::from_static(&[
                0x90, b'm', b'p', b'4', b'a', 0x11, 0x90
            ]))
            .unwrap(),
            AudioTag::ExSequenceStart {
                codec: ExAudioCodec::Aac,
                ..
            }
        ));
        assert!(matches!(
            parse_audio_tag(&Bytes::from_static(&[0x90, b'f', b'L', b'a', b'C', 1])).unwrap(),
            AudioTag::Opaque { codec: OpaqueCodec::FourCc(c), sequence_header: true, .. } if &c == b"fLaC"
        ));
        // MultichannelConfig carries nothing for the hub.
        assert!(matches!(
            parse_audio_tag(&Bytes::from_static(&[
                0x94, b'O', b'p', b'u', b's', 1, 2, 0, 0, 0, 3
            ]))
            .unwrap(),
            AudioTag::Ignored(_)
        ));
    }

    #[test]
    fn legacy_opaque_codecs() {
        // VP6 (4) inter frame, legacy HEVC (12) sequence header, and a video info frame.
        let vp6 = Bytes::from_static(&[0x24, 0, 1]);
        assert_eq!(
            parse_video_tag(&vp6).unwrap(),
            VideoTag::Opaque {
                codec: OpaqueCodec::FlvId(4),
                keyframe: false,
                sequence_header: false,
                body: vp6.clone()
            }
        );
        assert!(matches!(
            parse_video_tag(&Bytes::from_static(&[0x1c, 0, 0, 0, 0])).unwrap(),
            VideoTag::Opaque {
                codec: OpaqueCodec::FlvId(12),
                keyframe: true,
                sequence_header: true,
                ..
            }
        ));
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x57, 0])).unwrap(),
            VideoTag::Command
        );
        // MP3 (2).
        let mp3 = Bytes::from_static(&[0x2f, 0xff, 0xfb]);
        assert_eq!(
            parse_audio_tag(&mp3).unwrap(),
            AudioTag::Opaque {
                codec: OpaqueCodec::FlvId(2),
                sequence_header: false,
                body: mp3.clone()
            }
        );
    }

    #[test]
    fn invalid_packet_types() {
        assert_eq!(
            parse_video_tag(&Bytes::from_static(&[0x17, 3, 0, 0, 0])),
            Err(FlvError::InvalidPacketType {
                what: "avc",
                packet_type: 3
            })
        );
        assert_eq!(
            parse_audio_tag(&Bytes::from_static(&[0xaf, 2])),
            Err(FlvError::InvalidPacketType {
                what: "aac",
                packet_type: 2
            })
        );
    }

    #[test]
    fn truncated_bodies_never_panic() {
        assert!(parse_video_tag(&Bytes::new()).is_err());
        assert!(parse_audio_tag(&Bytes::new()).is_err());
        for len in 1..5 {
            assert!(matches!(
                parse_video_tag(&Bytes::copy_from_slice(&[0x17, 1, 0, 0][..len.min(4)])),
                Err(FlvError::Truncated { need: 5, .. })
            ));
        }
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf])).is_err());
        for t in read_flv(FLV) {
            for len in 0..t.body.len().min(64) {
                let b = t.body.slice(..len);
                let _ = parse_video_tag(&b);
                let _ = parse_audio_tag(&b);
            }
        }
        for b0 in 0..=u8::MAX {
            for len in 0..8 {
                let mut v = vec![b0];
                v.extend((0..len).map(|i| i * 7));
                let b = Bytes::from(v);
                let _ = parse_video_tag(&b).map(|t| t.into_frame(0));
                let _ = parse_audio_tag(&b).map(|t| t.into_frame(0));
            }
        }
    }
}
