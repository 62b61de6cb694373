//! RTP (RFC 3550) header writer and packetizers for H.264 (RFC 6184) and AAC (RFC 3640).
//!
//! Packetizers follow a push/pull contract, the inverse of retina's depacketizers: [`push`] one
//! access unit, then [`pull`] until `None`, one RTP packet (header included) per call. Packets of
//! one access unit share a single allocation, so the per-frame cost is one `BytesMut`.
//!
//! [`push`]: H264Packetizer::push
//! [`pull`]: H264Packetizer::pull

use bytes::{BufMut, Bytes, BytesMut};
use media::avc::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};
use media::{AacConfig, AvcConfig, Frame, MediaError, TIMEBASE};
use std::collections::VecDeque;

/// Default maximum RTP payload in bytes: fits a 1500-byte Ethernet MTU with IP/UDP/RTP headers
/// and leaves room for TCP interleaving or a tunnel.
pub const DEFAULT_MTU: usize = 1400;

/// Smallest accepted payload size: an FU-A needs 2 header bytes plus at least one data byte, and
/// an AAC packet 4 header bytes; a larger floor keeps the packet count of a big frame sane.
const MIN_MTU: usize = 64;

/// RFC 6184 5.4: NAL unit type 28 is a fragmentation unit A.
const NAL_FU_A: u8 = 28;

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
}

/// The fixed 12-byte RTP header (RFC 3550 5.1) without CSRCs, extension or padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits; higher bits are masked off).
    pub payload_type: u8,
    /// Marker bit: last packet of an access unit for H.264 and AAC.
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

/// State shared by both packetizers: header fields, the output queue and RTCP counters.
#[derive(Debug)]
struct Stream {
    payload_type: u8,
    ssrc: u32,
    mtu: usize,
    next_sequence: u16,
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
            ssrc,
            mtu: mtu.max(MIN_MTU),
            next_sequence: 0,
            queue: VecDeque::new(),
            packet_count: 0,
            octet_count: 0,
            last_timestamp: None,
            dropped: 0,
        }
    }

    /// Writes the header of the next packet into `buf` and advances the sequence number.
    fn header(&mut self, buf: &mut BytesMut, timestamp: u32, marker: bool) {
        RtpHeader {
            payload_type: self.payload_type,
            marker,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.ssrc,
        }
        .write(buf);
        self.next_sequence = self.next_sequence.wrapping_add(1);
    }

    /// Moves everything written to `buf` so far into the queue as one packet.
    fn finish_packet(&mut self, buf: &mut BytesMut) {
        // `split` hands out the written bytes and keeps the spare capacity for the next packet,
        // so all packets of one access unit share one allocation.
        self.queue.push_back(buf.split().freeze());
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
            self.stream.next_sequence = seq;
            self
        }

        /// The next packet's sequence number (for the `RTP-Info` header of a `PLAY` response).
        pub fn next_sequence(&self) -> u16 {
            self.stream.next_sequence
        }

        /// The SSRC written into every packet.
        pub fn ssrc(&self) -> u32 {
            self.stream.ssrc
        }

        /// Maximum RTP payload per packet actually used (the requested MTU, at least 64).
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

/// Reduces a timestamp modulo 2^32, as RTP timestamps wrap.
pub(crate) fn wrap_u32(ts: i128) -> u32 {
    // rem_euclid keeps negative timestamps in range; the result is < 2^32 so the cast is exact.
    ts.rem_euclid(1i128 << 32) as u32
}

/// RFC 6184 packetization-mode=1 H.264 packetizer: single NAL unit packets and FU-A.
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

    /// Packetizes one AVCC access unit; its packets are then available from [`pull`](Self::pull).
    ///
    /// Before an IDR the SPS and PPS of `config` are sent, and in-band copies of them are
    /// skipped, so a player joining at this keyframe can always decode; in-band parameter sets
    /// that differ from `config` are forwarded, since they are a newer configuration. Access
    /// unit delimiters are dropped (RFC 6184 leaves them optional and they only cost packets).
    /// On a malformed payload nothing of the frame is queued.
    pub fn push(&mut self, frame: &Frame, config: &AvcConfig) -> Result<(), RtpError> {
        let mut nals: Vec<&[u8]> = Vec::new();
        let mut idr = false;
        for nal in avc::avcc_nal_units(&frame.payload, config.nal_length_size) {
            let nal = match nal {
                Ok(nal) => nal,
                Err(source) => {
                    self.stream.dropped += 1;
                    return Err(RtpError::Avcc {
                        pts: frame.pts,
                        source,
                    });
                }
            };
            match avc::nal_unit_type(nal) {
                NAL_AUD => {}
                NAL_SPS if config.sps.iter().any(|s| s.as_ref() == nal) => {}
                NAL_PPS if config.pps.iter().any(|p| p.as_ref() == nal) => {}
                t => {
                    idr |= t == NAL_IDR;
                    nals.push(nal);
                }
            }
        }
        let params: Vec<&[u8]> = if idr {
            config
                .sps
                .iter()
                .chain(&config.pps)
                .map(|b| b.as_ref())
                .filter(|b| !b.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        let timestamp = wrap_u32(i128::from(frame.pts));
        self.stream.last_timestamp = Some(timestamp);

        let all: Vec<&[u8]> = params.into_iter().chain(nals).collect();
        let mtu = self.stream.mtu;
        let capacity: usize = all
            .iter()
            .map(|nal| {
                if nal.len() <= mtu {
                    RtpHeader::LEN + nal.len()
                } else {
                    let fragments = (nal.len() - 1).div_ceil(mtu - 2);
                    fragments * (RtpHeader::LEN + 2) + nal.len() - 1
                }
            })
            .sum();
        let mut buf = BytesMut::with_capacity(capacity);
        let count = all.len();
        for (i, nal) in all.into_iter().enumerate() {
            let last_nal = i + 1 == count;
            if nal.len() <= mtu {
                // RFC 6184 5.6: single NAL unit packet, the NAL unit is the payload.
                self.stream.header(&mut buf, timestamp, last_nal);
                buf.put_slice(nal);
                self.stream.finish_packet(&mut buf);
                continue;
            }
            // RFC 6184 5.8: FU-A. The indicator keeps F and NRI, the FU header carries the
            // original type; the original NAL header byte itself is not repeated.
            let (&nal_header, body) = match nal.split_first() {
                Some(split) => split,
                None => continue,
            };
            let indicator = (nal_header & 0xe0) | NAL_FU_A;
            let mut chunks = body.chunks(mtu - 2).peekable();
            let mut start = true;
            while let Some(chunk) = chunks.next() {
                let end = chunks.peek().is_none();
                let fu_header = (u8::from(start) << 7) | (u8::from(end) << 6) | (nal_header & 0x1f);
                self.stream.header(&mut buf, timestamp, last_nal && end);
                buf.put_u8(indicator);
                buf.put_u8(fu_header);
                buf.put_slice(chunk);
                self.stream.finish_packet(&mut buf);
                start = false;
            }
        }
        Ok(())
    }
}

/// RFC 3640 AAC-hbr packetizer (`sizeLength=13; indexLength=3; indexDeltaLength=3`).
///
/// One access unit per packet. An AU larger than the MTU is fragmented per RFC 3640 3.2.3: every
/// fragment repeats the AU-header carrying the whole AU's size, and only the last one has the
/// marker bit. An AU larger than 8191 bytes cannot be described by the 13-bit AU-size and is
/// dropped with [`RtpError::AacTooLarge`] (counted in [`dropped`](Self::dropped)).
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

    /// RTP timestamp for a 90 kHz `pts`: `pts * rate / 90000` rounded to nearest, modulo 2^32.
    ///
    /// Computed from the absolute pts each time (never accumulated), so 44.1 kHz streams whose
    /// 90 kHz pts are themselves rounded do not drift.
    pub fn rtp_timestamp(&self, pts: i64) -> u32 {
        let timebase = i128::from(TIMEBASE);
        let scaled = i128::from(pts) * i128::from(self.sample_rate);
        wrap_u32((scaled + timebase / 2).div_euclid(timebase))
    }

    /// Packetizes one raw AAC access unit; its packets are then available from
    /// [`pull`](Self::pull).
    pub fn push(&mut self, frame: &Frame) -> Result<(), RtpError> {
        let au = frame.payload.as_ref();
        if au.is_empty() {
            self.stream.dropped += 1;
            return Err(RtpError::AacEmpty { pts: frame.pts });
        }
        if au.len() > AAC_MAX_AU {
            self.stream.dropped += 1;
            return Err(RtpError::AacTooLarge {
                pts: frame.pts,
                size: au.len(),
            });
        }
        let timestamp = self.rtp_timestamp(frame.pts);
        self.stream.last_timestamp = Some(timestamp);
        let per_packet = self.stream.mtu - AAC_HEADER_LEN;
        let fragments = au.len().div_ceil(per_packet);
        let mut buf =
            BytesMut::with_capacity(fragments * (RtpHeader::LEN + AAC_HEADER_LEN) + au.len());
        // AU-size in the top 13 bits, AU-index 0 in the low 3; the size check above keeps the
        // shift within 16 bits.
        let au_header = (au.len() as u16) << 3;
        let mut chunks = au.chunks(per_packet).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            self.stream.header(&mut buf, timestamp, last);
            // AU-headers-length counts bits: one 16-bit AU-header.
            buf.put_u16(16);
            buf.put_u16(au_header);
            buf.put_slice(chunk);
            self.stream.finish_packet(&mut buf);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "rtp_tests.rs"]
mod tests;
