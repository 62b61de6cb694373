//! Ogg Opus, write side only: wraps the raw Opus packets that WebCodecs' `AudioEncoder`
//! produces so the audio ffmpeg can read them from a pipe (RFC 7845 on RFC 3533 pages).
//!
//! Each packet gets a page of its own. That costs 27 bytes and more per 20 ms, and it is what
//! keeps latency down: ffmpeg's Ogg demuxer hands a packet on only once its page is complete.

use bytes::{BufMut, Bytes, BytesMut};

/// Opus always runs its granule clock at 48 kHz, whatever the input rate (RFC 7845 §4).
pub const GRANULE_RATE: u32 = 48_000;

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1); `None` for an
/// empty or malformed packet.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    // RFC 6716 §3.2.5: at most 120 ms in a packet.
    let samples = frames * frame;
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// Writes one logical Ogg Opus stream.
#[derive(Debug)]
pub struct OggOpusWriter {
    serial: u32,
    sequence: u32,
    granule: u64,
}

impl OggOpusWriter {
    /// A writer for a stream with this serial number.
    pub fn new(serial: u32) -> Self {
        OggOpusWriter {
            serial,
            sequence: 0,
            granule: 0,
        }
    }

    /// The two header pages (`OpusHead` with BOS, then `OpusTags`).
    pub fn headers(&mut self, channels: u8, input_rate: u32) -> Bytes {
        let mut head = BytesMut::with_capacity(19);
        head.put_slice(b"OpusHead");
        head.put_u8(1); // version
        head.put_u8(channels);
        // Pre-skip 0: WebCodecs hands out packets without the encoder's delay marked, and a
        // few milliseconds of warm-up at the start of a live stream harm nobody.
        head.put_u16_le(0);
        head.put_u32_le(input_rate);
        head.put_i16_le(0); // output gain
        head.put_u8(0); // mapping family 0: mono or stereo
        let mut tags = BytesMut::new();
        let vendor = b"ferrocast";
        tags.put_slice(b"OpusTags");
        tags.put_u32_le(vendor.len() as u32);
        tags.put_slice(vendor);
        tags.put_u32_le(0);
        let mut out = BytesMut::new();
        self.page(&mut out, 0x02, 0, &head);
        self.page(&mut out, 0x00, 0, &tags);
        out.freeze()
    }

    /// One page holding `packet`; the granule position advances by the packet's samples.
    pub fn packet(&mut self, packet: &[u8], samples: u32) -> Bytes {
        self.granule += u64::from(samples);
        let mut out = BytesMut::with_capacity(packet.len() + 27 + packet.len() / 255 + 1);
        let granule = self.granule;
        self.page(&mut out, 0x00, granule, packet);
        out.freeze()
    }

    fn page(&mut self, out: &mut BytesMut, flags: u8, granule: u64, packet: &[u8]) {
        let start = out.len();
        // Lacing: 255s, then one value below 255 (a 0 when the length is a multiple of 255).
        let full = packet.len() / 255;
        let segments = full + 1;
        debug_assert!(segments <= 255, "callers bound packets well below 64 KiB");
        out.put_slice(b"OggS");
        out.put_u8(0);
        out.put_u8(flags);
        out.put_u64_le(granule);
        out.put_u32_le(self.serial);
        out.put_u32_le(self.sequence);
        out.put_u32_le(0); // CRC, filled in below
        out.put_u8(segments as u8);
        out.put_bytes(255, full);
        out.put_u8((packet.len() % 255) as u8);
        out.put_slice(packet);
        let crc = crc32(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.sequence = self.sequence.wrapping_add(1);
    }
}

/// Largest Opus packet put on one page (255 lacing values).
pub const MAX_PACKET: usize = 255 * 254;

/// Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, zero initial value and no final XOR.
fn crc32(data: &[u8]) -> u32 {
    media::crc::crc32_msb(0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRC done bit by bit, straight from RFC 3533's description.
    fn crc_bitwise(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc_matches_the_definition() {
        for data in [&b""[..], b"OggS", &[0xff; 300], b"123456789"] {
            assert_eq!(crc32(data), crc_bitwise(data));
        }
        // The widely published check value of CRC-32/MPEG-2 without its init/xorout.
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn toc_gives_samples() {
        // CELT 20 ms, one frame: what Chromium's WebCodecs Opus encoder sends by default.
        assert_eq!(packet_samples(&[0xfc, 0, 0]), Some(960));
        // SILK 60 ms.
        assert_eq!(packet_samples(&[0x18]), Some(2880));
        // Two CELT 10 ms frames.
        assert_eq!(packet_samples(&[(30 << 3) | 1]), Some(960));
        // Code 3 with 6 frames of 20 ms = 120 ms; 7 would exceed the limit.
        assert_eq!(packet_samples(&[0xff, 6]), Some(5760));
        assert_eq!(packet_samples(&[0xff, 7]), None);
        assert_eq!(packet_samples(&[0xff, 0]), None);
        assert_eq!(packet_samples(&[0xff]), None);
        assert_eq!(packet_samples(&[]), None);
    }

    #[test]
    fn pages_are_well_formed() {
        let mut w = OggOpusWriter::new(7);
        let h = w.headers(2, 48_000);
        assert_eq!(&h[..4], b"OggS");
        assert_eq!(h[5], 0x02, "BOS on the first page");
        let first_len = 27 + 1 + 19;
        assert_eq!(&h[28..36], b"OpusHead");
        assert_eq!(&h[first_len..first_len + 4], b"OggS");
        // A 510-byte packet laces as 255, 255, 0.
        let p = w.packet(&[0xfc; 510], 960);
        assert_eq!(p[26], 3);
        assert_eq!(&p[27..30], &[255, 255, 0]);
        assert_eq!(u64::from_le_bytes(p[6..14].try_into().unwrap()), 960);
        assert_eq!(u32::from_le_bytes(p[18..22].try_into().unwrap()), 2);
        // The stored CRC is that of the page with the field zeroed.
        let mut zeroed = p.to_vec();
        zeroed[22..26].fill(0);
        assert_eq!(
            u32::from_le_bytes(p[22..26].try_into().unwrap()),
            crc_bitwise(&zeroed)
        );
        let p = w.packet(&[0xfc; 10], 960);
        assert_eq!(u64::from_le_bytes(p[6..14].try_into().unwrap()), 1920);
    }
}
