//! RTP (RFC 3550) header writer and packetizers for H.264 (RFC 6184), H.265 (RFC 7798), AAC
//! (RFC 3640) and Opus (RFC 7587).
//!
//! Packetizing is split in two so a stream is packetized once however many readers it has:
//! [`packetize_h264`], [`packetize_h265`], [`packetize_aac`] and [`packetize_opus`] turn one
//! access unit into an [`RtpFrame`], packet heads as templates and payloads as slices of the
//! frame itself (nothing of the media is copied), and each reader's [`RtpSender`] writes its
//! own sequence number, SSRC and timestamp offset into a copy of a head, which goes on the wire
//! in front of the shared payload.
//!
//! [`H264Packetizer`], [`H265Packetizer`], [`AacPacketizer`] and [`OpusPacketizer`] wrap both
//! halves for one receiver with a push/pull contract, the inverse of retina's depacketizers:
//! [`push`] one access unit, then [`pull`] until `None`, one contiguous RTP packet (header
//! included) per call. Packets of one access unit share a single allocation, so the per-frame
//! cost is one `BytesMut`.
//!
//! [`push`]: H264Packetizer::push
//! [`pull`]: H264Packetizer::pull

use bytes::{BufMut, Bytes, BytesMut};
use media::avc::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use media::hevc;
use media::{AacConfig, AvcConfig, Frame, HevcConfig, MediaError, TIMEBASE};
use std::collections::VecDeque;

/// Default maximum RTP payload in bytes: fits a 1500-byte Ethernet MTU with IP/UDP/RTP headers
/// and leaves room for TCP interleaving or a tunnel.
pub const DEFAULT_MTU: usize = 1400;

/// Smallest accepted payload size: an FU-A needs 2 header bytes plus at least one data byte, and
/// an AAC packet 4 header bytes; a larger floor keeps the packet count of a big frame sane.
const MIN_MTU: usize = 64;

/// RFC 6184 5.4: NAL unit type 28 is a fragmentation unit A.
const NAL_FU_A: u8 = 28;
/// RFC 7798 4.4.2: NAL unit type 48 is an aggregation packet (never sent here; a NAL unit of
/// this type, or of the two below, in a frame would be misread as that structure).
const HEVC_NAL_AP: u8 = 48;
/// RFC 7798 4.4.3: NAL unit type 49 is a fragmentation unit.
const HEVC_NAL_FU: u8 = 49;
/// RFC 7798 4.4.4: NAL unit type 50 is a PACI packet.
const HEVC_NAL_PACI: u8 = 50;

/// RFC 7587 4.1: the Opus RTP clock is 48 kHz whatever the encoder's input rate.
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// AU-size is a 13-bit field (RFC 3640 AAC-hbr `sizeLength=13`), so an AU can be at most this big.
const AAC_MAX_AU: usize = (1 << 13) - 1;
/// AU-headers-length (2 bytes) plus one 16-bit AU-header.
const AAC_HEADER_LEN: usize = 4;

/// Errors from packetizing one access unit; the unit is dropped, the packetizer stays usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    /// The AVCC payload has a bad NAL length; nothing of the frame was sent.
    #[error("H.264 frame at pts {pts}: {source}")]
    Avcc {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
        /// What was wrong with the payload.
        source: MediaError,
    },
    /// The AAC access unit does not fit the 13-bit AU-size field of AAC-hbr.
    #[error("AAC frame at pts {pts}: access unit of {size} bytes exceeds {AAC_MAX_AU}")]
    AacTooLarge {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
        /// Size of the access unit in bytes.
        size: usize,
    },
    /// The AAC access unit is empty.
    #[error("AAC frame at pts {pts}: empty access unit")]
    AacEmpty {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
    },
    /// The length-prefixed H.265 payload has a bad NAL length; nothing of the frame was sent.
    #[error("H.265 frame at pts {pts}: {source}")]
    Hvcc {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
        /// What was wrong with the payload.
        source: MediaError,
    },
    /// The Opus packet does not fit one RTP packet; RFC 7587 has no fragmentation.
    #[error("Opus frame at pts {pts}: packet of {size} bytes exceeds the MTU of {mtu}")]
    OpusTooLarge {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
        /// Size of the Opus packet in bytes.
        size: usize,
        /// Largest payload a packet may carry.
        mtu: usize,
    },
    /// The Opus packet is empty (RFC 6716 3.1: a packet has at least its TOC byte).
    #[error("Opus frame at pts {pts}: empty packet")]
    OpusEmpty {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
    },
    /// The AV1 temporal unit has a malformed OBU; nothing of the frame was sent.
    #[error("AV1 frame at pts {pts}: {source}")]
    Obu {
        /// Presentation timestamp of the dropped frame, 90 kHz ticks.
        pts: i64,
        /// What was wrong with the payload.
        source: MediaError,
    },
}

/// The fixed 12-byte RTP header (RFC 3550 5.1) without CSRCs, extension or padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits; higher bits are masked off).
    pub payload_type: u8,
    /// Marker bit: last packet of an access unit for H.264, H.265 and AAC; clear for Opus.
    pub marker: bool,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp in the payload's clock rate.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Encoded size in bytes.
    pub const LEN: usize = 12;

    /// Appends the header to `buf`.
    pub fn write(&self, buf: &mut impl BufMut) {
        // V=2, P=0, X=0, CC=0.
        buf.put_u8(0x80);
        buf.put_u8((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        buf.put_u16(self.sequence);
        buf.put_u32(self.timestamp);
        buf.put_u32(self.ssrc);
    }
}

/// Largest accepted payload size: the length field of interleaved framing (RFC 2326 10.12) is
/// 16 bits and counts the RTP header too.
const MAX_MTU: usize = u16::MAX as usize - RtpHeader::LEN;

/// Bytes of interleaved framing (RFC 2326 10.12: `$`, channel, 16-bit length) in front of an
/// RTP packet sent on the RTSP connection.
pub const FRAMING_LEN: usize = 4;

/// Longest packet head of an [`RtpFrame`]: framing, RTP header and the longest payload header
/// (AAC's AU-headers-length and one AU-header; an H.265 FU's 3 bytes are fewer).
pub const MAX_HEAD_LEN: usize = FRAMING_LEN + RtpHeader::LEN + AAC_HEADER_LEN;

fn clamp_mtu(mtu: usize) -> usize {
    mtu.clamp(MIN_MTU, MAX_MTU)
}

/// Reduces a timestamp modulo 2^32, as RTP timestamps wrap.
pub(crate) fn wrap_u32(ts: i128) -> u32 {
    // rem_euclid keeps negative timestamps in range; the result is < 2^32 so the cast is exact.
    ts.rem_euclid(1i128 << 32) as u32
}

/// RTP timestamp at `clock_rate` of the 90 kHz media time `pts`: rounded to nearest, modulo
/// 2^32, and exact at 90 kHz.
///
/// Computed from the absolute time each call (never accumulated), so 44.1 kHz streams whose
/// 90 kHz pts are themselves rounded do not drift.
pub fn rtp_timestamp(pts: i64, clock_rate: u32) -> u32 {
    let timebase = i128::from(TIMEBASE);
    let scaled = i128::from(pts) * i128::from(clock_rate);
    wrap_u32((scaled + timebase / 2).div_euclid(timebase))
}

/// One access unit packetized once, for any number of receivers.
///
/// Every packet is a head and a body. The head is a template: interleaved framing (channel 0),
/// the RTP header (sequence number and SSRC 0, the timestamp in the track's clock without any
/// receiver's offset) and the FU-A, H.265 FU or AAC payload header. The body is a slice of the
/// frame's payload or of the configuration's parameter sets, so building an `RtpFrame` copies
/// no media and every receiver sends the same bytes. Receivers rewrite a copy of each head with
/// [`RtpSender::head`].
#[derive(Clone, Debug, Default)]
pub struct RtpFrame {
    timestamp: u32,
    /// The heads of all packets, back to back.
    heads: Vec<u8>,
    packets: Vec<Part>,
}

#[derive(Clone, Debug)]
struct Part {
    /// Where this packet's head starts in `RtpFrame::heads`.
    head_start: u32,
    head_len: u8,
    body: Bytes,
}

/// One packet of an [`RtpFrame`].
#[derive(Clone, Copy, Debug)]
pub struct SharedPacket<'a> {
    head: &'a [u8],
    body: &'a Bytes,
}

impl<'a> SharedPacket<'a> {
    /// Framing, RTP header and payload header as templates (at most [`MAX_HEAD_LEN`] bytes).
    pub fn head(&self) -> &'a [u8] {
        self.head
    }

    /// The rest of the RTP payload, the same `Bytes` for every receiver.
    pub fn body(&self) -> &'a Bytes {
        self.body
    }

    /// RTP payload octets (payload header and body), as sender reports count them.
    pub fn payload_len(&self) -> usize {
        self.head.len() - FRAMING_LEN - RtpHeader::LEN + self.body.len()
    }

    /// Size of the RTP packet, header included, without interleaved framing.
    pub fn rtp_len(&self) -> usize {
        self.head.len() - FRAMING_LEN + self.body.len()
    }

    /// Whether the marker bit is set: the last packet of the access unit.
    pub fn marker(&self) -> bool {
        self.head[FRAMING_LEN + 1] & 0x80 != 0
    }
}

impl RtpFrame {
    fn new(timestamp: u32, packets: usize) -> Self {
        RtpFrame {
            timestamp,
            heads: Vec::with_capacity(packets * (FRAMING_LEN + RtpHeader::LEN + 2)),
            packets: Vec::with_capacity(packets),
        }
    }

    /// RTP timestamp of the access unit in the track's clock, before any receiver's offset.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether the access unit produced no packet (it held only dropped NAL units).
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The packets in sending order.
    pub fn packets(&self) -> impl ExactSizeIterator<Item = SharedPacket<'_>> + '_ {
        self.packets.iter().map(|p| {
            let start = p.head_start as usize;
            SharedPacket {
                head: &self.heads[start..start + usize::from(p.head_len)],
                body: &p.body,
            }
        })
    }

    fn push(&mut self, payload_type: u8, marker: bool, payload_header: &[u8], body: Bytes) {
        let head_start = self.heads.len();
        // The MTU clamp keeps every packet within the 16-bit length.
        let rtp_len = RtpHeader::LEN + payload_header.len() + body.len();
        self.heads.put_u8(b'$');
        self.heads.put_u8(0);
        self.heads
            .put_u16(u16::try_from(rtp_len).unwrap_or(u16::MAX));
        RtpHeader {
            payload_type,
            marker,
            sequence: 0,
            timestamp: self.timestamp,
            ssrc: 0,
        }
        .write(&mut self.heads);
        self.heads.put_slice(payload_header);
        self.packets.push(Part {
            // A frame's heads stay far below 4 GiB: at most ~20 bytes per packet of >= 64.
            head_start: u32::try_from(head_start).unwrap_or(u32::MAX),
            head_len: (FRAMING_LEN + RtpHeader::LEN + payload_header.len()) as u8,
            body,
        });
    }
}

/// RFC 6184 packetization-mode=1 of one AVCC access unit: single NAL unit packets and FU-A, at
/// most `mtu` payload bytes each (clamped to 64..=65523).
///
/// Before an IDR the SPS and PPS of `config` are sent, and in-band copies of them are skipped,
/// so a player joining at this keyframe can always decode; in-band parameter sets that differ
/// from `config` are forwarded, since they are a newer configuration. Access unit delimiters
/// are dropped (RFC 6184 leaves them optional and they only cost packets). A malformed payload
/// is an error and nothing of it is packetized.
pub fn packetize_h264(
    frame: &Frame,
    config: &AvcConfig,
    payload_type: u8,
    mtu: usize,
) -> Result<RtpFrame, RtpError> {
    let mtu = clamp_mtu(mtu);
    let mut nals: Vec<Bytes> = Vec::new();
    let mut idr = false;
    for nal in avc::avcc_nal_units(&frame.payload, config.nal_length_size) {
        let nal = nal.map_err(|source| RtpError::Avcc {
            pts: frame.pts,
            source,
        })?;
        match avc::nal_unit_type(nal) {
            NAL_AUD => {}
            NAL_SPS if config.sps.iter().any(|s| s.as_ref() == nal) => {}
            NAL_PPS if config.pps.iter().any(|p| p.as_ref() == nal) => {}
            t => {
                idr |= t == NAL_IDR;
                // `nal` was cut from this very payload, which is all `slice_ref` asks.
                nals.push(frame.payload.slice_ref(nal));
            }
        }
    }
    let params = config
        .sps
        .iter()
        .chain(&config.pps)
        .filter(|b| idr && !b.is_empty())
        .cloned();
    let all: Vec<Bytes> = params.chain(nals).collect();
    // RFC 6184 5.8: FU-A. The indicator keeps F and NRI, the FU header carries the original
    // type; the original NAL header byte itself is not repeated.
    let fu = |h: &[u8], first: bool, last: bool| {
        [
            (h[0] & 0xe0) | NAL_FU_A,
            (u8::from(first) << 7) | (u8::from(last) << 6) | (h[0] & 0x1f),
            0,
        ]
    };
    Ok(packetize_nal_units(
        wrap_u32(i128::from(frame.pts)),
        all,
        payload_type,
        mtu,
        1,
        fu,
    ))
}

/// RFC 7798 packetization of one length-prefixed H.265 access unit: single NAL unit packets
/// and fragmentation units, at most `mtu` payload bytes each (clamped to 64..=65523).
///
/// Parameter sets are handled as [`packetize_h264`] does: before an IRAP picture (IDR, CRA or
/// BLA) the VPS, SPS and PPS of `config` are sent, in-band copies of them are skipped and
/// in-band sets that differ are forwarded; access unit delimiters are dropped. Like the H.264
/// path this sends no aggregation packets. A malformed payload is an error and nothing of it
/// is packetized.
pub fn packetize_h265(
    frame: &Frame,
    config: &HevcConfig,
    payload_type: u8,
    mtu: usize,
) -> Result<RtpFrame, RtpError> {
    let mtu = clamp_mtu(mtu);
    let mut nals: Vec<Bytes> = Vec::new();
    let mut irap = false;
    for nal in avc::avcc_nal_units(&frame.payload, config.nal_length_size) {
        let nal = nal.map_err(|source| RtpError::Hvcc {
            pts: frame.pts,
            source,
        })?;
        let known = |sets: &[Bytes]| sets.iter().any(|s| s.as_ref() == nal);
        match hevc::nal_unit_type(nal) {
            // Shorter than the 2-byte NAL header: no decoder can use it, and a receiver would
            // read the next bytes as one.
            _ if nal.len() < 2 => {}
            hevc::NAL_AUD | HEVC_NAL_AP | HEVC_NAL_FU | HEVC_NAL_PACI => {}
            hevc::NAL_VPS if known(&config.vps) => {}
            hevc::NAL_SPS if known(&config.sps) => {}
            hevc::NAL_PPS if known(&config.pps) => {}
            t => {
                irap |= hevc::is_irap(t);
                // `nal` was cut from this very payload, which is all `slice_ref` asks.
                nals.push(frame.payload.slice_ref(nal));
            }
        }
    }
    let params = config
        .vps
        .iter()
        .chain(&config.sps)
        .chain(&config.pps)
        .filter(|b| irap && b.len() >= 2)
        .cloned();
    let all: Vec<Bytes> = params.chain(nals).collect();
    // RFC 7798 4.4.3: the PayloadHdr copies F, LayerId and TID from the NAL header with type
    // 49; the FU header carries S, E and the original type. The NAL header is not repeated.
    let fu = |h: &[u8], first: bool, last: bool| {
        [
            (h[0] & 0x81) | (HEVC_NAL_FU << 1),
            h[1],
            (u8::from(first) << 7) | (u8::from(last) << 6) | ((h[0] >> 1) & 0x3f),
        ]
    };
    Ok(packetize_nal_units(
        wrap_u32(i128::from(frame.pts)),
        all,
        payload_type,
        mtu,
        2,
        fu,
    ))
}

/// Single NAL unit packets, or fragmentation units for NAL units longer than `mtu`, with the
/// marker bit on the last packet of the access unit.
///
/// `header_len` is the codec's NAL header size. `fu_header(nal_header, first, last)` gives a
/// fragment's payload header, of which the first `header_len + 1` bytes are sent; fragments
/// carry the NAL unit without its header, which the receiver rebuilds from theirs.
fn packetize_nal_units(
    timestamp: u32,
    nals: Vec<Bytes>,
    payload_type: u8,
    mtu: usize,
    header_len: usize,
    fu_header: impl Fn(&[u8], bool, bool) -> [u8; 3],
) -> RtpFrame {
    // The MTU clamp keeps this at 61 bytes or more.
    let per_fragment = mtu - header_len - 1;
    let packets = nals
        .iter()
        .map(|nal| {
            if nal.len() <= mtu {
                1
            } else {
                (nal.len() - header_len).div_ceil(per_fragment)
            }
        })
        .sum();
    let mut out = RtpFrame::new(timestamp, packets);
    let count = nals.len();
    for (i, nal) in nals.into_iter().enumerate() {
        let last_nal = i + 1 == count;
        if nal.len() <= mtu {
            // Single NAL unit packet (RFC 6184 5.6, RFC 7798 4.4.1): the NAL unit is the
            // payload.
            out.push(payload_type, last_nal, &[], nal);
            continue;
        }
        // Longer than the MTU, so longer than its header.
        let mut start = header_len;
        while start < nal.len() {
            let end = (start + per_fragment).min(nal.len());
            let last = end == nal.len();
            let header = fu_header(&nal[..header_len], start == header_len, last);
            out.push(
                payload_type,
                last_nal && last,
                &header[..=header_len],
                nal.slice(start..end),
            );
            start = end;
        }
    }
    out
}

/// RFC 3640 AAC-hbr packetization (`sizeLength=13; indexLength=3; indexDeltaLength=3`) of one
/// raw AAC access unit, in an RTP clock of `sample_rate`.
///
/// One access unit per packet. An AU larger than the MTU is fragmented per RFC 3640 3.2.3: every
/// fragment repeats the AU-header carrying the whole AU's size, and only the last one has the
/// marker bit. An AU larger than 8191 bytes cannot be described by the 13-bit AU-size and is
/// refused with [`RtpError::AacTooLarge`].
pub fn packetize_aac(
    frame: &Frame,
    sample_rate: u32,
    payload_type: u8,
    mtu: usize,
) -> Result<RtpFrame, RtpError> {
    let au = &frame.payload;
    if au.is_empty() {
        return Err(RtpError::AacEmpty { pts: frame.pts });
    }
    if au.len() > AAC_MAX_AU {
        return Err(RtpError::AacTooLarge {
            pts: frame.pts,
            size: au.len(),
        });
    }
    let per_packet = clamp_mtu(mtu) - AAC_HEADER_LEN;
    let mut out = RtpFrame::new(
        rtp_timestamp(frame.pts, sample_rate),
        au.len().div_ceil(per_packet),
    );
    // AU-headers-length counts bits: one 16-bit AU-header. AU-size in the top 13 bits of the
    // AU-header, AU-index 0 in the low 3; the size check above keeps the shift within 16 bits.
    let [size_hi, size_lo] = ((au.len() as u16) << 3).to_be_bytes();
    let payload_header = [0, 16, size_hi, size_lo];
    let mut start = 0;
    while start < au.len() {
        let end = (start + per_packet).min(au.len());
        out.push(
            payload_type,
            end == au.len(),
            &payload_header,
            au.slice(start..end),
        );
        start = end;
    }
    Ok(out)
}

/// The aggregation header's `W` field for one OBU element without a length field, which runs to
/// the end of the packet (AV1 RTP payload format 4.4).
const AV1_ONE_ELEMENT: u8 = 1 << 4;

/// Packetization of one AV1 temporal unit (the AOM "RTP Payload Format For AV1", v1.0, which
/// ffmpeg and GStreamer read): one OBU element per packet (`W` = 1), an OBU larger than a packet
/// split across several (`Y` on all but its last fragment, `Z` on all but its first), the
/// marker bit on the temporal unit's last packet, and `N` on the first packet of a key temporal
/// unit (a new coded video sequence).
///
/// As the format asks, temporal delimiters, tile lists and padding are not sent, and each OBU
/// goes without its `obu_size` (its element's length says it): the rewritten one- or two-byte
/// OBU header is the packet's payload header, and the body a slice of the frame. A key temporal
/// unit without a sequence header gets the configuration's in front, since RTP has no other
/// way to carry it.
pub fn packetize_av1(
    frame: &Frame,
    config: &media::Av1Config,
    payload_type: u8,
    mtu: usize,
) -> Result<RtpFrame, RtpError> {
    use media::av1;
    let mtu = clamp_mtu(mtu);
    let err = |source| RtpError::Obu {
        pts: frame.pts,
        source,
    };
    // (header bytes without the size flag, payload) of each OBU to send, in order.
    let mut elements: Vec<([u8; 2], usize, Bytes)> = Vec::new();
    let mut push = |data: &Bytes, obu: &av1::Obu| {
        if matches!(
            obu.obu_type,
            av1::OBU_TEMPORAL_DELIMITER | av1::OBU_TILE_LIST | av1::OBU_PADDING
        ) {
            return;
        }
        let mut header = [data[obu.range.start] & !0x02, 0];
        let header_len = if obu.extension.is_some() {
            header[1] = data[obu.range.start + 1];
            2
        } else {
            1
        };
        elements.push((header, header_len, data.slice(obu.payload.clone())));
    };
    let mut has_sequence_header = false;
    let mut found = Vec::new();
    for obu in av1::obus(&frame.payload) {
        let obu = obu.map_err(err)?;
        has_sequence_header |= obu.obu_type == av1::OBU_SEQUENCE_HEADER;
        found.push(obu);
    }
    let key = frame.keyframe;
    if key
        && !has_sequence_header
        && let Some(seq) = &config.sequence_header
        && let Some(Ok(obu)) = av1::obus(seq).next()
    {
        push(seq, &obu);
    }
    for obu in &found {
        push(&frame.payload, obu);
    }
    let mut out = RtpFrame::new(
        rtp_timestamp(frame.pts, 90_000),
        elements.len() + frame.payload.len() / mtu,
    );
    let count = elements.len();
    let mut first_packet = true;
    for (i, (header, header_len, payload)) in elements.into_iter().enumerate() {
        let last_element = i + 1 == count;
        let mut start = 0;
        loop {
            let continuation = start > 0;
            let room = mtu - 1 - if continuation { 0 } else { header_len };
            let end = (start + room).min(payload.len());
            let more = end < payload.len();
            let mut agg = AV1_ONE_ELEMENT;
            if continuation {
                agg |= 0x80;
            }
            if more {
                agg |= 0x40;
            }
            if key && first_packet {
                agg |= 0x08;
            }
            first_packet = false;
            let payload_header = [agg, header[0], header[1]];
            let head_len = if continuation { 1 } else { 1 + header_len };
            out.push(
                payload_type,
                last_element && !more,
                &payload_header[..head_len],
                payload.slice(start..end),
            );
            start = end;
            if !more {
                break;
            }
        }
    }
    Ok(out)
}

/// RFC 7587 packetization of one Opus packet: the whole packet is the RTP payload, in the
/// 48 kHz RTP clock.
///
/// RFC 7587 has no fragmentation, so a packet larger than the MTU is refused with
/// [`RtpError::OpusTooLarge`]. A frame is at most 1275 bytes (RFC 6716 3.4), so only a
/// multi-frame packet near the top bitrate (60 ms at 510 kb/s is 3.8 kB) can be; streaming
/// encoders stay far below. The marker bit stays clear: it marks the start of a talkspurt
/// after silence (RFC 3551 4.1), and this stream is sent without gaps.
pub fn packetize_opus(frame: &Frame, payload_type: u8, mtu: usize) -> Result<RtpFrame, RtpError> {
    let packet = &frame.payload;
    if packet.is_empty() {
        return Err(RtpError::OpusEmpty { pts: frame.pts });
    }
    let mtu = clamp_mtu(mtu);
    if packet.len() > mtu {
        return Err(RtpError::OpusTooLarge {
            pts: frame.pts,
            size: packet.len(),
            mtu,
        });
    }
    let mut out = RtpFrame::new(rtp_timestamp(frame.pts, OPUS_CLOCK_RATE), 1);
    out.push(payload_type, false, &[], packet.clone());
    Ok(out)
}

/// One receiver's RTP stream of a track: the header fields that differ between receivers of the
/// same [`RtpFrame`]s, and the counts its RTCP sender reports need.
#[derive(Clone, Debug)]
pub struct RtpSender {
    ssrc: u32,
    next_sequence: u16,
    timestamp_offset: u32,
    channel: u8,
    packet_count: u32,
    octet_count: u32,
}

impl RtpSender {
    /// A sender with SSRC `ssrc` whose first packet gets sequence number `sequence` and whose
    /// timestamps run `timestamp_offset` ahead of the track clock.
    ///
    /// RFC 3550 5.1 asks for random initial values of both; the caller chooses them.
    pub fn new(ssrc: u32, sequence: u16, timestamp_offset: u32) -> Self {
        RtpSender {
            ssrc,
            next_sequence: sequence,
            timestamp_offset,
            channel: 0,
            packet_count: 0,
            octet_count: 0,
        }
    }

    /// Sets the interleaved channel (RFC 2326 10.12) written into the framing of each head.
    pub fn with_channel(mut self, channel: u8) -> Self {
        self.channel = channel;
        self
    }

    /// The SSRC written into every packet.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The next packet's sequence number (for the `RTP-Info` header of a `PLAY` response).
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Packets written so far (wrapping), for RTCP sender reports.
    pub fn packet_count(&self) -> u32 {
        self.packet_count
    }

    /// Payload octets written so far (wrapping), for RTCP sender reports.
    pub fn octet_count(&self) -> u32 {
        self.octet_count
    }

    /// This receiver's RTP timestamp for `timestamp` in the track's clock.
    pub fn timestamp(&self, timestamp: u32) -> u32 {
        timestamp.wrapping_add(self.timestamp_offset)
    }

    /// Writes `packet`'s head as this receiver sends it into `out` and returns its length,
    /// framing included (UDP sends from [`FRAMING_LEN`] on); counts the packet for sender
    /// reports and advances the sequence number.
    pub fn head(&mut self, packet: SharedPacket<'_>, out: &mut [u8; MAX_HEAD_LEN]) -> usize {
        // Heads only come from an RtpFrame, which never makes one longer than MAX_HEAD_LEN.
        let len = packet.head.len();
        out[..len].copy_from_slice(packet.head);
        out[1] = self.channel;
        let rtp = &mut out[FRAMING_LEN..FRAMING_LEN + RtpHeader::LEN];
        rtp[2..4].copy_from_slice(&self.next_sequence.to_be_bytes());
        let timestamp = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
        rtp[4..8].copy_from_slice(&self.timestamp(timestamp).to_be_bytes());
        rtp[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.next_sequence = self.next_sequence.wrapping_add(1);
        // RFC 3550 6.4.1: counts wrap; octets are payload only, without the RTP header.
        self.packet_count = self.packet_count.wrapping_add(1);
        self.octet_count = self
            .octet_count
            .wrapping_add(u32::try_from(packet.payload_len()).unwrap_or(u32::MAX));
        len
    }
}

/// One receiver's state in the push/pull packetizers: its header fields, output queue and RTCP
/// counters.
#[derive(Debug)]
struct Stream {
    payload_type: u8,
    mtu: usize,
    sender: RtpSender,
    queue: VecDeque<Bytes>,
    packet_count: u32,
    octet_count: u32,
    last_timestamp: Option<u32>,
    dropped: u64,
}

impl Stream {
    fn new(payload_type: u8, ssrc: u32, mtu: usize) -> Self {
        Stream {
            payload_type,
            mtu: clamp_mtu(mtu),
            sender: RtpSender::new(ssrc, 0, 0),
            queue: VecDeque::new(),
            packet_count: 0,
            octet_count: 0,
            last_timestamp: None,
            dropped: 0,
        }
    }

    /// Queues the packets of `frame` as contiguous RTP packets, or counts the error.
    fn enqueue(&mut self, frame: Result<RtpFrame, RtpError>) -> Result<(), RtpError> {
        let frame = frame.inspect_err(|_| self.dropped += 1)?;
        let total = frame.packets().map(|p| p.rtp_len()).sum();
        let mut buf = BytesMut::with_capacity(total);
        let mut head = [0u8; MAX_HEAD_LEN];
        for packet in frame.packets() {
            let len = self.sender.head(packet, &mut head);
            buf.put_slice(&head[FRAMING_LEN..len]);
            buf.put_slice(packet.body());
            // `split` hands out the written bytes and keeps the spare capacity for the next
            // packet, so all packets of one access unit share one allocation.
            self.queue.push_back(buf.split().freeze());
        }
        self.last_timestamp = Some(frame.timestamp());
        Ok(())
    }

    fn pull(&mut self) -> Option<Bytes> {
        let packet = self.queue.pop_front()?;
        // RFC 3550 6.4.1: counts wrap; octets are payload only, without the RTP header.
        self.packet_count = self.packet_count.wrapping_add(1);
        let payload = packet.len().saturating_sub(RtpHeader::LEN);
        self.octet_count = self
            .octet_count
            .wrapping_add(u32::try_from(payload).unwrap_or(u32::MAX));
        Some(packet)
    }
}

/// Accessors common to both packetizers; implemented by delegation to [`Stream`].
macro_rules! stream_accessors {
    () => {
        /// Starts the sequence at `seq` (RFC 3550 recommends a random start; the caller chooses).
        pub fn with_sequence(mut self, seq: u16) -> Self {
            self.stream.sender.next_sequence = seq;
            self
        }

        /// The next packet's sequence number (for the `RTP-Info` header of a `PLAY` response).
        pub fn next_sequence(&self) -> u16 {
            self.stream.sender.next_sequence
        }

        /// The SSRC written into every packet.
        pub fn ssrc(&self) -> u32 {
            self.stream.sender.ssrc
        }

        /// Maximum RTP payload per packet actually used (the requested MTU within 64..=65523).
        pub fn mtu(&self) -> usize {
            self.stream.mtu
        }

        /// Packets handed out by `pull` so far (wrapping), for RTCP sender reports.
        pub fn packet_count(&self) -> u32 {
            self.stream.packet_count
        }

        /// Payload octets handed out by `pull` so far (wrapping), for RTCP sender reports.
        pub fn octet_count(&self) -> u32 {
            self.stream.octet_count
        }

        /// RTP timestamp of the most recently pushed access unit.
        pub fn last_timestamp(&self) -> Option<u32> {
            self.stream.last_timestamp
        }

        /// Access units dropped because `push` returned an error.
        pub fn dropped(&self) -> u64 {
            self.stream.dropped
        }

        /// The next RTP packet, or `None` when everything pushed has been pulled.
        pub fn pull(&mut self) -> Option<Bytes> {
            self.stream.pull()
        }
    };
}

/// RFC 6184 packetization-mode=1 H.264 packetizer for one receiver (see [`packetize_h264`]).
#[derive(Debug)]
pub struct H264Packetizer {
    stream: Stream,
}

impl H264Packetizer {
    /// A packetizer for `payload_type`/`ssrc` whose packets carry at most `mtu` payload bytes.
    ///
    /// The sequence starts at 0 unless [`with_sequence`](Self::with_sequence) says otherwise.
    pub fn new(payload_type: u8, ssrc: u32, mtu: usize) -> Self {
        H264Packetizer {
            stream: Stream::new(payload_type, ssrc, mtu),
        }
    }

    stream_accessors!();

    /// Packetizes one AVCC access unit as [`packetize_h264`] does; its packets are then
    /// available from [`pull`](Self::pull). On a malformed payload nothing of the frame is
    /// queued.
    pub fn push(&mut self, frame: &Frame, config: &AvcConfig) -> Result<(), RtpError> {
        let s = &mut self.stream;
        s.enqueue(packetize_h264(frame, config, s.payload_type, s.mtu))
    }
}

/// RFC 7798 H.265 packetizer for one receiver (see [`packetize_h265`]).
#[derive(Debug)]
pub struct H265Packetizer {
    stream: Stream,
}

impl H265Packetizer {
    /// A packetizer for `payload_type`/`ssrc` whose packets carry at most `mtu` payload bytes.
    ///
    /// The sequence starts at 0 unless [`with_sequence`](Self::with_sequence) says otherwise.
    pub fn new(payload_type: u8, ssrc: u32, mtu: usize) -> Self {
        H265Packetizer {
            stream: Stream::new(payload_type, ssrc, mtu),
        }
    }

    stream_accessors!();

    /// Packetizes one length-prefixed access unit as [`packetize_h265`] does; its packets are
    /// then available from [`pull`](Self::pull). On a malformed payload nothing of the frame
    /// is queued.
    pub fn push(&mut self, frame: &Frame, config: &HevcConfig) -> Result<(), RtpError> {
        let s = &mut self.stream;
        s.enqueue(packetize_h265(frame, config, s.payload_type, s.mtu))
    }
}

/// RFC 3640 AAC-hbr packetizer for one receiver (see [`packetize_aac`]).
///
/// Refused access units are counted in [`dropped`](Self::dropped).
#[derive(Debug)]
pub struct AacPacketizer {
    stream: Stream,
    sample_rate: u32,
}

impl AacPacketizer {
    /// A packetizer whose RTP clock is `config`'s sample rate (as announced in the SDP rtpmap).
    pub fn new(payload_type: u8, ssrc: u32, config: &AacConfig, mtu: usize) -> Self {
        AacPacketizer {
            stream: Stream::new(payload_type, ssrc, mtu),
            sample_rate: config.sample_rate,
        }
    }

    stream_accessors!();

    /// RTP timestamp for a 90 kHz `pts` (see [`rtp_timestamp`]).
    pub fn rtp_timestamp(&self, pts: i64) -> u32 {
        rtp_timestamp(pts, self.sample_rate)
    }

    /// Packetizes one raw AAC access unit; its packets are then available from
    /// [`pull`](Self::pull).
    pub fn push(&mut self, frame: &Frame) -> Result<(), RtpError> {
        let s = &mut self.stream;
        s.enqueue(packetize_aac(
            frame,
            self.sample_rate,
            s.payload_type,
            s.mtu,
        ))
    }
}

/// RFC 7587 Opus packetizer for one receiver (see [`packetize_opus`]).
///
/// Refused packets are counted in [`dropped`](Self::dropped).
#[derive(Debug)]
pub struct OpusPacketizer {
    stream: Stream,
}

impl OpusPacketizer {
    /// A packetizer for `payload_type`/`ssrc` whose packets carry at most `mtu` payload bytes.
    pub fn new(payload_type: u8, ssrc: u32, mtu: usize) -> Self {
        OpusPacketizer {
            stream: Stream::new(payload_type, ssrc, mtu),
        }
    }

    stream_accessors!();

    /// Packetizes one Opus packet; its RTP packet is then available from
    /// [`pull`](Self::pull).
    pub fn push(&mut self, frame: &Frame) -> Result<(), RtpError> {
        let s = &mut self.stream;
        s.enqueue(packetize_opus(frame, s.payload_type, s.mtu))
    }
}

#[cfg(test)]
#[path = "rtp_tests.rs"]
mod tests;
