//! Opus: the identification header (`OpusHead`, RFC 7845 5.1), the ISOBMFF `dOps` box body
//! (Opus in ISOBMFF 4.3.2), and packet durations from the TOC byte (RFC 6716 3.1).

use crate::MediaError;
use bytes::Bytes;

const WHAT: &str = "OpusHead";
const MAGIC: &[u8; 8] = b"OpusHead";
/// Magic, version, channels, pre-skip, input rate, gain, mapping family.
const HEAD_LEN: usize = 19;
/// RFC 6716 3.4 R5: a packet may not last longer than 120 ms (at 48 kHz).
const MAX_PACKET_SAMPLES: u32 = 5760;
/// RFC 6716 3.4 R2: no frame may be longer than 1275 bytes.
const MAX_FRAME_LEN: usize = 1275;

/// Parsed Opus decoder configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct OpusConfig {
    /// The raw OpusHead (`OpusHead` magic included), as Enhanced RTMP's SequenceStart sends it.
    pub head: Bytes,
    /// Output channel count.
    pub channels: u8,
    /// Samples (at 48 kHz) to discard from the decoder output at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input, informational only (Opus always decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0: mono/stereo, 1: Vorbis order surround, 255: undefined).
    pub mapping_family: u8,
    /// Stream count, coupled count and channel mapping (family != 0 only).
    pub mapping: Option<(u8, u8, Vec<u8>)>,
}

fn invalid(reason: String) -> MediaError {
    MediaError::Invalid { what: WHAT, reason }
}

impl OpusConfig {
    /// Parses an OpusHead identification header.
    ///
    /// Bytes after the header are ignored, as RFC 7845 5.1 asks of demuxers.
    pub fn parse(head: Bytes) -> Result<OpusConfig, MediaError> {
        let truncated = |offset| MediaError::Truncated { what: WHAT, offset };
        let Some(fixed) = head.first_chunk::<HEAD_LEN>() else {
            // Report how far the bytes present are valid: a wrong magic is not a truncation.
            if !MAGIC.starts_with(&head[..head.len().min(MAGIC.len())]) {
                return Err(invalid("missing OpusHead magic".into()));
            }
            return Err(truncated(head.len()));
        };
        if &fixed[..8] != MAGIC {
            return Err(invalid("missing OpusHead magic".into()));
        }
        let version = fixed[8];
        // The high nibble is the major version; minor versions stay compatible (RFC 7845 5.1).
        if version > 15 {
            return Err(MediaError::Unsupported {
                what: WHAT,
                reason: format!("version {version}"),
            });
        }
        let channels = fixed[9];
        if channels == 0 {
            return Err(invalid("channel count 0".into()));
        }
        let pre_skip = u16::from_le_bytes([fixed[10], fixed[11]]);
        let input_sample_rate = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        let output_gain = i16::from_le_bytes([fixed[16], fixed[17]]);
        let mapping_family = fixed[18];
        let mapping = if mapping_family == 0 {
            if channels > 2 {
                return Err(invalid(format!("{channels} channels in mapping family 0")));
            }
            None
        } else {
            let table_end = HEAD_LEN + 2 + usize::from(channels);
            let Some(table) = head.get(HEAD_LEN..table_end) else {
                return Err(truncated(head.len()));
            };
            let (streams, coupled) = (table[0], table[1]);
            if streams == 0 || coupled > streams {
                return Err(invalid(format!("{streams} streams with {coupled} coupled")));
            }
            // RFC 7845 5.1.1: the decoded channels (N + M) index the mapping; 255 is silence.
            let decoded = u16::from(streams) + u16::from(coupled);
            if decoded > 255 {
                return Err(invalid(format!("{decoded} decoded channels")));
            }
            let map = table[2..].to_vec();
            if let Some(&bad) = map.iter().find(|&&c| c != 255 && u16::from(c) >= decoded) {
                return Err(invalid(format!(
                    "channel mapping index {bad} of {decoded} decoded channels"
                )));
            }
            if mapping_family == 1 && channels > 8 {
                return Err(invalid(format!("{channels} channels in mapping family 1")));
            }
            Some((streams, coupled, map))
        };
        Ok(OpusConfig {
            head,
            channels,
            pre_skip,
            input_sample_rate,
            output_gain,
            mapping_family,
            mapping,
        })
    }

    /// A stereo or mono configuration for streams whose sender gave no OpusHead.
    pub fn default_for_channels(channels: u8) -> OpusConfig {
        OpusConfig {
            head: Bytes::new(),
            channels,
            pre_skip: 0,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            mapping: None,
        }
    }

    /// The `dOps` box body (big-endian, version 0) for an fMP4 `Opus` sample entry.
    ///
    /// A hand-built config with a non-zero family but no mapping gets one uncoupled stream per
    /// channel, the only table valid for any channel count.
    pub fn dops(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + 2 + usize::from(self.channels));
        out.push(0); // Version
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        out.push(self.mapping_family);
        if self.mapping_family != 0 {
            match &self.mapping {
                Some((streams, coupled, map)) => {
                    out.push(*streams);
                    out.push(*coupled);
                    out.extend_from_slice(map);
                }
                None => {
                    out.push(self.channels);
                    out.push(0);
                    out.extend(0..self.channels);
                }
            }
        }
        out
    }
}

/// Duration of one Opus packet in 48 kHz samples from its TOC byte and frame count code;
/// `None` for an empty or malformed packet.
///
/// The framing rules of RFC 6716 3.4 (R1 to R7) are checked too, so a packet this accepts
/// also splits into valid frames.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let (&toc, rest) = packet.split_first()?;
    let config = toc >> 3;
    // Frame sizes in 48 kHz samples per configuration group (RFC 6716 table 2).
    let frame: u32 = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => check_last_frame(rest.len()).then_some(1)?,
        // Two frames of equal size.
        1 => (rest.len() % 2 == 0 && check_last_frame(rest.len() / 2)).then_some(2)?,
        // Two frames, the first with an explicit length.
        2 => {
            let (first, used) = frame_length(rest)?;
            let remaining = rest.len() - used;
            (first <= remaining && check_last_frame(remaining - first)).then_some(2)?
        }
        _ => check_code3(rest)?,
    };
    let samples = frame * frames;
    (samples <= MAX_PACKET_SAMPLES).then_some(samples)
}

fn check_last_frame(len: usize) -> bool {
    len <= MAX_FRAME_LEN
}

/// A frame length (RFC 6716 3.2.1): the length and the bytes it took.
fn frame_length(data: &[u8]) -> Option<(usize, usize)> {
    match *data {
        [b0 @ 0..=251, ..] => Some((usize::from(b0), 1)),
        [b0, b1, ..] => Some((usize::from(b1) * 4 + usize::from(b0), 2)),
        _ => None,
    }
}

/// Validates a code 3 packet after its TOC byte; returns the frame count.
fn check_code3(rest: &[u8]) -> Option<u32> {
    let (&count_byte, mut data) = rest.split_first()?;
    let vbr = count_byte & 0x80 != 0;
    let has_padding = count_byte & 0x40 != 0;
    let frames = usize::from(count_byte & 0x3f);
    if frames == 0 {
        return None;
    }
    let mut padding = 0usize;
    if has_padding {
        // Each 255 adds 254 bytes and continues; any other value ends the padding length.
        loop {
            let (&b, tail) = data.split_first()?;
            data = tail;
            if b == 255 {
                padding += 254;
            } else {
                padding += usize::from(b);
                break;
            }
        }
    }
    // Padding sits at the end of the packet, so it must fit in what is left.
    let mut remaining = data.len().checked_sub(padding)?;
    if vbr {
        for _ in 1..frames {
            let (len, used) = frame_length(data)?;
            data = data.get(used..)?;
            remaining = remaining.checked_sub(used)?.checked_sub(len)?;
        }
        check_last_frame(remaining).then_some(())?;
    } else if remaining % frames != 0 || !check_last_frame(remaining / frames) {
        return None;
    }
    // At most 63, so the cast is lossless.
    Some(frames as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEREO_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.opushead");
    const STEREO_DOPS: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.dops");
    const STEREO_PACKET: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.packet");
    const SURROUND_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-5.1.opushead");
    const SURROUND_DOPS: &[u8] = include_bytes!("../../../testdata/opus-48k-5.1.dops");
    const MIXED_PACKETS: &[u8] = include_bytes!("../../../testdata/opus-48k-mixed.packets");

    /// The packets of `opus-48k-mixed.packets` (each after a big-endian u16 length).
    fn mixed_packets() -> Vec<&'static [u8]> {
        let mut out = Vec::new();
        let mut rest = MIXED_PACKETS;
        while let [hi, lo, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            out.push(&tail[..len]);
            rest = &tail[len..];
        }
        out
    }

    #[test]
    fn libopus_stereo_head() {
        let c = OpusConfig::parse(Bytes::from_static(STEREO_HEAD)).unwrap();
        assert_eq!(c.channels, 2);
        assert_eq!(c.pre_skip, 312);
        assert_eq!(c.input_sample_rate, 48_000);
        assert_eq!(c.output_gain, 0);
        assert_eq!((c.mapping_family, &c.mapping), (0, &None));
        assert_eq!(&c.head[..], STEREO_HEAD);
    }

    #[test]
    fn libopus_surround_head() {
        let c = OpusConfig::parse(Bytes::from_static(SURROUND_HEAD)).unwrap();
        assert_eq!((c.channels, c.pre_skip, c.mapping_family), (6, 312, 1));
        assert_eq!(c.mapping, Some((4, 2, vec![0, 4, 1, 2, 3, 5])));
    }

    #[test]
    fn dops_matches_ffmpeg_mp4_byte_for_byte() {
        for (head, dops) in [(STEREO_HEAD, STEREO_DOPS), (SURROUND_HEAD, SURROUND_DOPS)] {
            let c = OpusConfig::parse(Bytes::from_static(head)).unwrap();
            assert_eq!(c.dops(), dops);
        }
    }

    #[test]
    fn dops_is_big_endian_and_signed() {
        let mut head = STEREO_HEAD.to_vec();
        head[10..12].copy_from_slice(&0x1234u16.to_le_bytes());
        head[12..16].copy_from_slice(&44_100u32.to_le_bytes());
        head[16..18].copy_from_slice(&(-256i16).to_le_bytes());
        let c = OpusConfig::parse(Bytes::from(head)).unwrap();
        assert_eq!(
            (c.pre_skip, c.input_sample_rate, c.output_gain),
            (0x1234, 44_100, -256)
        );
        assert_eq!(
            c.dops(),
            [0, 2, 0x12, 0x34, 0, 0, 0xac, 0x44, 0xff, 0x00, 0]
        );
    }

    #[test]
    fn default_config_dops() {
        let c = OpusConfig::default_for_channels(1);
        assert_eq!(c.dops(), [0, 1, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        // A hand-built family 255 config without a table gets uncoupled streams.
        let mut c = OpusConfig::default_for_channels(3);
        c.mapping_family = 255;
        assert_eq!(&c.dops()[11..], [3, 0, 0, 1, 2]);
    }

    #[test]
    fn head_accepts_minor_versions_and_trailing_bytes() {
        let mut head = STEREO_HEAD.to_vec();
        head[8] = 15;
        head.extend_from_slice(b"future fields");
        let c = OpusConfig::parse(Bytes::from(head)).unwrap();
        assert_eq!(c.channels, 2);
        let mut head = STEREO_HEAD.to_vec();
        head[8] = 0;
        assert!(OpusConfig::parse(Bytes::from(head)).is_ok());
    }

    #[test]
    fn head_errors() {
        let parse = |bytes: Vec<u8>| OpusConfig::parse(Bytes::from(bytes));
        let with = |i: usize, v: u8| {
            let mut h = STEREO_HEAD.to_vec();
            h[i] = v;
            h
        };
        assert!(matches!(
            parse(with(0, b'o')),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            parse(b"OpusTags".to_vec()),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            parse(with(8, 16)),
            Err(MediaError::Unsupported { .. })
        ));
        assert!(matches!(parse(with(9, 0)), Err(MediaError::Invalid { .. })));
        assert!(matches!(parse(with(9, 3)), Err(MediaError::Invalid { .. })));
        // Family 1 needs its mapping table.
        assert_eq!(
            parse(with(18, 1)),
            Err(MediaError::Truncated {
                what: WHAT,
                offset: 19
            })
        );
        let surround = |i: usize, v: u8| {
            let mut h = SURROUND_HEAD.to_vec();
            h[i] = v;
            parse(h)
        };
        assert!(surround(19, 0).is_err()); // no streams
        assert!(surround(20, 5).is_err()); // more coupled than streams
        assert!(surround(21, 6).is_err()); // index past N + M = 6
        assert!(surround(21, 255).is_ok()); // silence
        assert!(matches!(
            surround(18, 255),
            Ok(OpusConfig {
                mapping_family: 255,
                ..
            })
        ));
        // 9 channels are too many for family 1 but fine for 255.
        let mut h = SURROUND_HEAD[..19].to_vec();
        h[9] = 9;
        h.extend_from_slice(&[9, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(parse(h.clone()).is_err());
        h[18] = 255;
        assert_eq!(parse(h).unwrap().mapping.unwrap().0, 9);
    }

    #[test]
    fn every_prefix_is_handled_without_panicking() {
        for head in [STEREO_HEAD, SURROUND_HEAD] {
            for len in 0..head.len() {
                let result = OpusConfig::parse(Bytes::copy_from_slice(&head[..len]));
                assert_eq!(
                    result,
                    Err(MediaError::Truncated {
                        what: WHAT,
                        offset: len
                    })
                );
            }
        }
        for packet in mixed_packets().into_iter().chain([STEREO_PACKET]) {
            for len in 0..packet.len() {
                let _ = packet_samples(&packet[..len]);
            }
        }
    }

    #[test]
    fn mutated_heads_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut head = if next() % 2 == 0 {
                STEREO_HEAD
            } else {
                SURROUND_HEAD
            }
            .to_vec();
            let i = (next() % head.len() as u64) as usize;
            head[i] ^= 1 << (next() % 8);
            if let Ok(c) = OpusConfig::parse(Bytes::from(head)) {
                assert_eq!(c.dops().len(), 11 + c.mapping.map_or(0, |m| 2 + m.2.len()));
            }
            let packet: Vec<u8> = (0..next() % 16).map(|_| next() as u8).collect();
            let _ = packet_samples(&packet);
        }
    }

    #[test]
    fn libopus_packet_durations() {
        // The stereo capture: TOC 0xfc, CELT fullband 20 ms, one frame.
        assert_eq!(packet_samples(STEREO_PACKET), Some(960));
        // -frame_duration 60, 120, 2.5, 40, then -application voip at 8 kb/s.
        let durations: Vec<_> = mixed_packets().into_iter().map(packet_samples).collect();
        assert_eq!(
            durations,
            [Some(2880), Some(5760), Some(120), Some(1920), Some(960)]
        );
    }

    #[test]
    fn toc_configurations() {
        let one = |config: u8| packet_samples(&[config << 3]);
        assert_eq!(one(0), Some(480)); // SILK NB 10 ms
        assert_eq!(one(3), Some(2880)); // SILK NB 60 ms
        assert_eq!(one(11), Some(2880)); // SILK WB 60 ms
        assert_eq!(one(12), Some(480)); // Hybrid SWB 10 ms
        assert_eq!(one(15), Some(960)); // Hybrid FB 20 ms
        assert_eq!(one(16), Some(120)); // CELT NB 2.5 ms
        assert_eq!(one(29), Some(240)); // CELT FB 5 ms
        assert_eq!(one(31), Some(960)); // CELT FB 20 ms
        // The stereo bit does not matter.
        assert_eq!(packet_samples(&[(31 << 3) | 0x04]), Some(960));
    }

    #[test]
    fn frame_count_codes() {
        let celt20 = 31 << 3;
        assert_eq!(packet_samples(&[]), None);
        // Code 1: two equal frames, so an even payload.
        assert_eq!(packet_samples(&[celt20 | 1, 1, 2]), Some(1920));
        assert_eq!(packet_samples(&[celt20 | 1, 1, 2, 3]), None);
        // Code 2: the first length must fit.
        assert_eq!(packet_samples(&[celt20 | 2, 1, 9, 9]), Some(1920));
        assert_eq!(packet_samples(&[celt20 | 2, 0]), Some(1920));
        assert_eq!(packet_samples(&[celt20 | 2, 3, 9]), None);
        assert_eq!(packet_samples(&[celt20 | 2]), None);
        assert_eq!(packet_samples(&[celt20 | 2, 252]), None);
        // Code 3: the count byte is needed and may not be 0 or exceed 120 ms.
        assert_eq!(packet_samples(&[celt20 | 3]), None);
        assert_eq!(packet_samples(&[celt20 | 3, 0]), None);
        assert_eq!(packet_samples(&[celt20 | 3, 6]), Some(5760));
        assert_eq!(packet_samples(&[celt20 | 3, 7]), None);
        assert_eq!(packet_samples(&[(16 << 3) | 3, 48]), Some(5760));
        assert_eq!(packet_samples(&[(16 << 3) | 3, 49]), None);
        // Code 3 CBR: the frames split what is left evenly.
        assert_eq!(packet_samples(&[celt20 | 3, 0x02, 7, 7]), Some(1920));
        assert_eq!(packet_samples(&[celt20 | 3, 0x02, 7]), None);
        // Code 3 VBR: M - 1 explicit lengths that must fit.
        assert_eq!(packet_samples(&[celt20 | 3, 0x82, 1, 7, 7]), Some(1920));
        assert_eq!(packet_samples(&[celt20 | 3, 0x82, 5, 7]), None);
        assert_eq!(packet_samples(&[celt20 | 3, 0x83, 0]), None);
        // Padding: its length bytes, then that many bytes at the end.
        assert_eq!(packet_samples(&[celt20 | 3, 0x41, 2, 7, 0, 0]), Some(960));
        assert_eq!(packet_samples(&[celt20 | 3, 0x41, 4, 7, 0, 0]), None);
        assert_eq!(packet_samples(&[celt20 | 3, 0x41, 255]), None);
        let mut padded = vec![celt20 | 3, 0x41, 255, 1];
        padded.resize(padded.len() + 255, 0);
        assert_eq!(packet_samples(&padded), Some(960));
        // Two 60 ms SILK frames are exactly 120 ms.
        assert_eq!(packet_samples(&[(3 << 3) | 1]), Some(5760));
    }

    #[test]
    fn frames_longer_than_1275_bytes_are_malformed() {
        let mut packet = vec![31 << 3];
        packet.resize(1 + 1275, 0);
        assert_eq!(packet_samples(&packet), Some(960));
        packet.push(0);
        assert_eq!(packet_samples(&packet), None);
        // Code 1 with two 1275-byte frames is fine, one byte more each is not.
        let mut packet = vec![(31 << 3) | 1];
        packet.resize(1 + 2 * 1275, 0);
        assert_eq!(packet_samples(&packet), Some(1920));
        packet.resize(1 + 2 * 1276, 0);
        assert_eq!(packet_samples(&packet), None);
    }
}
