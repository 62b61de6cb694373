//! RTCP sender report (RFC 3550 6.4.1) with an SDES CNAME chunk (6.5), as one compound packet.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// RTCP packet type of a sender report.
const PT_SR: u8 = 200;
/// RTCP packet type of source description items.
const PT_SDES: u8 = 202;
/// SDES item type of the canonical name.
const SDES_CNAME: u8 = 1;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET: i128 = 2_208_988_800;

/// The sender information of one RTP stream at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// SSRC of the RTP stream being reported.
    pub ssrc: u32,
    /// Wall-clock time at which the stream's clock read `rtp_timestamp`.
    pub ntp_time: SystemTime,
    /// RTP timestamp corresponding to `ntp_time`, in the stream's clock rate.
    pub rtp_timestamp: u32,
    /// Packets sent since the start of the stream (wrapping).
    pub packet_count: u32,
    /// Payload octets sent since the start of the stream (wrapping).
    pub octet_count: u32,
}

/// Ticks per second of the hub's media clock.
const MEDIA_HZ: i128 = 90_000;

/// The wall-clock to media-clock mapping a session's sender reports announce.
///
/// A receiver that syncs tracks by RTCP (ffmpeg, VLC) re-derives every timestamp from the
/// latest report, so the mapping must advance exactly with wall-clock time: reports stamped
/// with the RTP time of whatever frame was sent last jump whenever the GOP-cache burst or a
/// network stall makes sending run ahead of or behind real time, and the reader sees
/// timestamps go backwards. The mapping is fixed at the first report, from how far ahead of
/// wall-clock time the newest frames seen so far were, and both tracks share it, so their
/// reports agree on one clock.
#[derive(Clone, Debug)]
pub struct MediaClock {
    start: Instant,
    start_wall: SystemTime,
    /// Largest `pts - elapsed` seen: the live edge relative to `start`.
    lead: Option<i64>,
    /// `lead` frozen at the first report.
    anchor: Option<i64>,
}

impl MediaClock {
    /// A clock whose elapsed time counts from `start`, which `start_wall` names in wall time.
    pub fn new(start: Instant, start_wall: SystemTime) -> Self {
        MediaClock {
            start,
            start_wall,
            lead: None,
            anchor: None,
        }
    }

    fn elapsed_ticks(&self, now: Instant) -> i64 {
        let ticks =
            now.saturating_duration_since(self.start).as_nanos() as i128 * MEDIA_HZ / 1_000_000_000;
        i64::try_from(ticks).unwrap_or(i64::MAX)
    }

    /// Notes that a frame with 90 kHz `pts` was sent at `now`.
    pub fn observe(&mut self, pts: i64, now: Instant) {
        let lead = pts.saturating_sub(self.elapsed_ticks(now));
        self.lead = Some(self.lead.map_or(lead, |l| l.max(lead)));
    }

    /// Wall-clock time and the 90 kHz media time it maps to at `now`; `None` before any frame.
    pub fn at(&mut self, now: Instant) -> Option<(SystemTime, i64)> {
        let anchor = *self.anchor.get_or_insert(self.lead?);
        let wall = self.start_wall + now.saturating_duration_since(self.start);
        Some((wall, self.elapsed_ticks(now).saturating_add(anchor)))
    }
}

/// 64-bit NTP timestamp (RFC 3550 4): seconds since 1900 in the high word, fraction in the low.
///
/// Times before 1900 clamp to 0; times from 2036 on wrap into the next NTP era, as the 32-bit
/// seconds field does (RFC 5905 6), which receivers that compare timestamps handle.
pub fn ntp_timestamp(time: SystemTime) -> u64 {
    // Signed nanoseconds since the Unix epoch, so times before 1970 work as well.
    let unix_nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let nanos = (unix_nanos + NTP_UNIX_OFFSET * 1_000_000_000).max(0);
    let seconds = nanos / 1_000_000_000;
    let fraction = ((nanos % 1_000_000_000) << 32) / 1_000_000_000;
    // Seconds modulo 2^32 is the era wrap; the fraction is < 2^32 by construction.
    ((seconds.rem_euclid(1 << 32) as u64) << 32) | fraction as u64
}

impl SenderReport {
    /// Encodes the compound packet: the SR (no reception report blocks, as a send-only server
    /// receives nothing) followed by an SDES chunk with `cname`.
    ///
    /// RFC 3550 6.1 requires a CNAME in every compound packet, which is why the two come
    /// together. A `cname` longer than 255 bytes is cut at a character boundary (the item length
    /// is one byte).
    pub fn to_bytes(&self, cname: &str) -> Bytes {
        let cname = truncate(cname, 255);
        // Chunk: SSRC, CNAME item (type, length, text), then at least one null octet ending the
        // item list, padded to a 32-bit boundary (RFC 3550 6.5).
        let items = 2 + cname.len();
        let chunk = 4 + (items + 1).div_ceil(4) * 4;
        let mut buf = BytesMut::with_capacity(28 + 4 + chunk);

        // RFC 3550 6.4.1: V=2, P=0, RC=0; length in 32-bit words minus one (28 bytes -> 6).
        buf.put_u8(0x80);
        buf.put_u8(PT_SR);
        buf.put_u16(6);
        buf.put_u32(self.ssrc);
        buf.put_u64(ntp_timestamp(self.ntp_time));
        buf.put_u32(self.rtp_timestamp);
        buf.put_u32(self.packet_count);
        buf.put_u32(self.octet_count);

        // RFC 3550 6.5: V=2, P=0, SC=1.
        buf.put_u8(0x81);
        buf.put_u8(PT_SDES);
        // At most 4 + 4 + 260 bytes, so the word count always fits.
        buf.put_u16(((4 + chunk) / 4 - 1) as u16);
        buf.put_u32(self.ssrc);
        buf.put_u8(SDES_CNAME);
        // `truncate` keeps the length at most 255.
        buf.put_u8(cname.len() as u8);
        buf.put_slice(cname.as_bytes());
        buf.put_bytes(0, chunk - 4 - items);
        buf.freeze()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "rtcp_tests.rs"]
mod tests;
