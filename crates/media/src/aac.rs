//! AAC: AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and ADTS headers.

use crate::MediaError;
use bytes::Bytes;

/// Parsed AAC AudioSpecificConfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// The raw AudioSpecificConfig bytes.
    pub asc: Bytes,
    /// Audio object type (2 = AAC LC, 5 = SBR/HE-AAC, 29 = PS).
    pub object_type: u8,
    /// Sampling frequency index (0..=12), or 15 when an explicit rate was given.
    pub sampling_frequency_index: u8,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 = mono, 2 = stereo, ...).
    pub channel_config: u8,
}

use crate::bits::{BitReader, BitWriter};

/// Sample rates indexed by `sampling_frequency_index` (ISO/IEC 14496-3 table 1.18).
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// ADTS headers are 7 bytes, or 9 with the CRC that follows when protection is present.
const ADTS_HEADER_LEN: usize = 7;
const ADTS_HEADER_LEN_CRC: usize = 9;
/// `frame_length` is a 13-bit field that counts the header too.
const ADTS_MAX_FRAME_LEN: usize = (1 << 13) - 1;

/// Object type 5: SBR (HE-AAC v1).
const AOT_SBR: u8 = 5;
/// Object type 29: parametric stereo (HE-AAC v2).
const AOT_PS: u8 = 29;

/// Sample rate in Hz for a sampling frequency index, `None` for reserved/explicit (13..=15).
pub fn sample_rate_from_index(i: u8) -> Option<u32> {
    SAMPLE_RATES.get(usize::from(i)).copied()
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, MediaError> {
    // Five bits, or the escape value 31 followed by six more bits (1.6.2.1 GetAudioObjectType).
    // Both reads are at most 6 bits, so the narrowing casts cannot truncate.
    let aot = r.read_bits(5)? as u8;
    if aot == 31 {
        Ok(32 + r.read_bits(6)? as u8)
    } else {
        Ok(aot)
    }
}

fn read_frequency(r: &mut BitReader<'_>) -> Result<(u8, u32), MediaError> {
    // 4 bits, so the cast is lossless.
    let index = r.read_bits(4)? as u8;
    let rate = match index {
        15 => r.read_bits(24)?,
        i => sample_rate_from_index(i).ok_or_else(|| MediaError::Invalid {
            what: "AudioSpecificConfig",
            reason: format!("reserved sampling frequency index {i}"),
        })?,
    };
    Ok((index, rate))
}

impl AacConfig {
    /// Parses an AudioSpecificConfig; GASpecificConfig and any extension bits are kept only in `asc`.
    ///
    /// For explicitly signalled HE-AAC (object type 5 or 29) `object_type` stays 5/29 and the
    /// sampling fields describe the AAC core, whose frames hold 1024 samples at that rate; the
    /// SBR output rate is twice that and is not needed for timing.
    pub fn parse(asc: Bytes) -> Result<Self, MediaError> {
        let mut r = BitReader::new(&asc, "AudioSpecificConfig");
        let object_type = read_object_type(&mut r)?;
        if object_type == 0 {
            return Err(MediaError::Invalid {
                what: "AudioSpecificConfig",
                reason: "audio object type 0 (null)".into(),
            });
        }
        let (sampling_frequency_index, sample_rate) = read_frequency(&mut r)?;
        if sample_rate == 0 {
            return Err(MediaError::Invalid {
                what: "AudioSpecificConfig",
                reason: "explicit sampling frequency 0".into(),
            });
        }
        // 4 bits, so the cast is lossless.
        let channel_config = r.read_bits(4)? as u8;
        if object_type == AOT_SBR || object_type == AOT_PS {
            // Hierarchical signalling: extension (output) frequency, then the core object type.
            // Read only to validate the structure; the fields above already describe the core.
            read_frequency(&mut r)?;
            let core = read_object_type(&mut r)?;
            if core == 22 {
                // ER BSAC carries an extensionChannelConfiguration.
                r.skip(4)?;
            }
        }
        Ok(AacConfig {
            object_type,
            sampling_frequency_index,
            sample_rate,
            channel_config,
            asc,
        })
    }

    /// Builds the config from an ADTS header; returns it with the frame length (header included)
    /// and the header length (7, or 9 when a CRC follows).
    pub fn from_adts(header: &[u8]) -> Result<(AacConfig, usize, usize), MediaError> {
        const WHAT: &str = "ADTS header";
        let mut r = BitReader::new(header, WHAT);
        if r.read_bits(12)? != 0xfff {
            return Err(MediaError::Invalid {
                what: WHAT,
                reason: "missing 0xFFF syncword".into(),
            });
        }
        // ID (MPEG-2 or MPEG-4) does not change the meaning of the fields we use.
        r.skip(1)?;
        if r.read_bits(2)? != 0 {
            return Err(MediaError::Invalid {
                what: WHAT,
                reason: "layer is not 0".into(),
            });
        }
        let protection_absent = r.read_bit()?;
        // Field widths of 2, 4 and 3 bits make every narrowing cast below lossless.
        let profile = r.read_bits(2)? as u8;
        let sampling_frequency_index = r.read_bits(4)? as u8;
        let sample_rate = sample_rate_from_index(sampling_frequency_index).ok_or_else(|| {
            MediaError::Invalid {
                what: WHAT,
                reason: format!("sampling frequency index {sampling_frequency_index}"),
            }
        })?;
        r.skip(1)?; // private_bit
        let channel_config = r.read_bits(3)? as u8;
        r.skip(4)?; // original/copy, home, copyright id bit and start
        let frame_len = r.read_bits(13)? as usize;
        r.skip(11)?; // buffer fullness
        let raw_blocks = r.read_bits(2)?;
        let header_len = if protection_absent {
            ADTS_HEADER_LEN
        } else {
            ADTS_HEADER_LEN_CRC
        };
        if header.len() < header_len {
            return Err(MediaError::Truncated {
                what: WHAT,
                offset: header.len(),
            });
        }
        if frame_len < header_len {
            return Err(MediaError::Invalid {
                what: WHAT,
                reason: format!(
                    "frame length {frame_len} shorter than the {header_len}-byte header"
                ),
            });
        }
        if raw_blocks != 0 {
            // Several raw blocks share one header and, with protection, carry per-block CRCs;
            // encoders feeding live streams do not produce this.
            return Err(MediaError::Unsupported {
                what: WHAT,
                reason: format!("{} raw data blocks in one frame", raw_blocks + 1),
            });
        }
        let object_type = profile + 1;
        let mut w = BitWriter::new();
        w.write_bits(u32::from(object_type), 5);
        w.write_bits(u32::from(sampling_frequency_index), 4);
        w.write_bits(u32::from(channel_config), 4);
        // GASpecificConfig: frameLengthFlag (1024), dependsOnCoreCoder, extensionFlag all 0.
        w.write_bits(0, 3);
        let config = AacConfig {
            asc: Bytes::from(w.finish()),
            object_type,
            sampling_frequency_index,
            sample_rate,
            channel_config,
        };
        Ok((config, frame_len, header_len))
    }

    /// Builds a 7-byte MPEG-4 ADTS header (no CRC) for a raw access unit of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7], MediaError> {
        const WHAT: &str = "ADTS header";
        let profile = match self.object_type {
            1..=4 => self.object_type - 1,
            // HE-AAC is carried as its AAC-LC core in ADTS, as ffmpeg's muxer does; the decoder
            // finds the SBR/PS data implicitly.
            AOT_SBR | AOT_PS => 1,
            other => {
                return Err(MediaError::Unsupported {
                    what: WHAT,
                    reason: format!("audio object type {other}"),
                });
            }
        };
        if self.sampling_frequency_index > 12 {
            return Err(MediaError::Unsupported {
                what: WHAT,
                reason: format!("sampling frequency index {}", self.sampling_frequency_index),
            });
        }
        if self.channel_config > 7 {
            return Err(MediaError::Unsupported {
                what: WHAT,
                reason: format!("channel configuration {}", self.channel_config),
            });
        }
        let frame_len = payload_len
            .checked_add(ADTS_HEADER_LEN)
            .filter(|&len| len <= ADTS_MAX_FRAME_LEN)
            .ok_or_else(|| MediaError::Invalid {
                what: WHAT,
                reason: format!("payload of {payload_len} bytes exceeds the 13-bit frame length"),
            })?;
        // Checked against 8191 above, so the value fits the 13-bit field and u32.
        let frame_len = frame_len as u32;
        let mut w = BitWriter::new();
        w.write_bits(0xfff, 12); // syncword
        w.write_bits(0, 1); // ID: MPEG-4
        w.write_bits(0, 2); // layer
        w.write_bits(1, 1); // protection_absent
        w.write_bits(u32::from(profile), 2);
        w.write_bits(u32::from(self.sampling_frequency_index), 4);
        w.write_bits(0, 1); // private_bit
        w.write_bits(u32::from(self.channel_config), 3);
        w.write_bits(0, 4); // original/copy, home, copyright id bit and start
        w.write_bits(frame_len, 13);
        w.write_bits(0x7ff, 11); // buffer fullness: variable bit rate
        w.write_bits(0, 2); // one raw data block
        // Exactly 56 bits were written above, so `bytes` is 7 long and the copy cannot panic.
        let bytes = w.finish();
        let mut header = [0u8; ADTS_HEADER_LEN];
        header.copy_from_slice(&bytes);
        Ok(header)
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per channel in one access unit at `sample_rate`.
    pub fn samples_per_frame(&self) -> u32 {
        // frameLengthFlag (960-sample frames) is only used by DAB+/DRM, not by live ingest.
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASC_48K_STEREO: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");
    const ASC_44K_MONO: &[u8] = include_bytes!("../../../testdata/aac-44k-mono.asc");
    const ADTS_48K: &[u8] = include_bytes!("../../../testdata/sine-48k.aac");

    fn asc(fields: &[(u32, u32)]) -> Bytes {
        let mut w = BitWriter::new();
        for &(value, bits) in fields {
            w.write_bits(value, bits);
        }
        Bytes::from(w.finish())
    }

    #[test]
    fn ffmpeg_asc_48k_stereo_with_sync_extension() {
        let c = AacConfig::parse(Bytes::from_static(ASC_48K_STEREO)).unwrap();
        assert_eq!(c.object_type, 2);
        assert_eq!(c.sampling_frequency_index, 3);
        assert_eq!(c.sample_rate, 48000);
        assert_eq!(c.channel_config, 2);
        assert_eq!(c.asc.len(), 5);
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(c.samples_per_frame(), 1024);
    }

    #[test]
    fn ffmpeg_asc_44k_mono() {
        let c = AacConfig::parse(Bytes::from_static(ASC_44K_MONO)).unwrap();
        assert_eq!(
            (
                c.object_type,
                c.sampling_frequency_index,
                c.sample_rate,
                c.channel_config
            ),
            (2, 4, 44100, 1)
        );
    }

    #[test]
    fn escaped_object_type_and_explicit_rate() {
        // Object type 42 (USAC) is 31 + 6-bit escape 10; rate 50 kHz given explicitly.
        let c = AacConfig::parse(asc(&[(31, 5), (10, 6), (15, 4), (50_000, 24), (2, 4)])).unwrap();
        assert_eq!(c.object_type, 42);
        assert_eq!((c.sampling_frequency_index, c.sample_rate), (15, 50_000));
        assert_eq!(c.channel_config, 2);
        assert!(matches!(
            c.adts_header(10),
            Err(MediaError::Unsupported { .. })
        ));

        let lc = AacConfig::parse(asc(&[(2, 5), (15, 4), (50_000, 24), (1, 4)])).unwrap();
        assert!(matches!(
            lc.adts_header(10),
            Err(MediaError::Unsupported { .. })
        ));
    }

    #[test]
    fn he_aac_keeps_object_type_and_core_rate() {
        // Typical HE-AAC v1 hierarchical signalling: SBR, 22.05 kHz core, stereo, 44.1 kHz out, LC.
        let c = AacConfig::parse(Bytes::from_static(&[0x2b, 0x92, 0x08, 0x00])).unwrap();
        assert_eq!(c.object_type, 5);
        assert_eq!((c.sampling_frequency_index, c.sample_rate), (7, 22050));
        assert_eq!(c.channel_config, 2);
        assert_eq!(c.codec_string(), "mp4a.40.5");
        let header = c.adts_header(100).unwrap();
        let (back, frame_len, header_len) = AacConfig::from_adts(&header).unwrap();
        assert_eq!((back.object_type, back.sampling_frequency_index), (2, 7));
        assert_eq!((frame_len, header_len), (107, 7));

        let v2 = AacConfig::parse(asc(&[(29, 5), (6, 4), (1, 4), (3, 4), (2, 5)])).unwrap();
        assert_eq!(
            (v2.object_type, v2.sample_rate, v2.channel_config),
            (29, 24000, 1)
        );
        assert_eq!(v2.adts_header(0).unwrap()[2] >> 6, 1);
        // The core object type after the extension must be complete (here its 6-bit escape).
        assert!(AacConfig::parse(asc(&[(5, 5), (6, 4), (2, 4), (3, 4), (31, 5)])).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x2b, 0x92])).is_err());
    }

    #[test]
    fn invalid_asc() {
        assert!(AacConfig::parse(Bytes::new()).is_err());
        assert!(AacConfig::parse(Bytes::from_static(&[0x12])).is_err());
        assert!(AacConfig::parse(asc(&[(0, 5), (4, 4), (1, 4)])).is_err());
        assert!(AacConfig::parse(asc(&[(2, 5), (13, 4), (1, 4)])).is_err());
        assert!(AacConfig::parse(asc(&[(2, 5), (15, 4), (0, 24), (1, 4)])).is_err());
        for len in 0..ASC_48K_STEREO.len() {
            let result = AacConfig::parse(Bytes::copy_from_slice(&ASC_48K_STEREO[..len]));
            assert_eq!(result.is_ok(), len >= 2, "prefix of {len} bytes");
        }
    }

    #[test]
    fn every_ffmpeg_adts_header_is_reproduced() {
        let mut pos = 0;
        let mut frames = 0;
        while pos < ADTS_48K.len() {
            let (config, frame_len, header_len) = AacConfig::from_adts(&ADTS_48K[pos..]).unwrap();
            assert_eq!(header_len, 7);
            assert_eq!(&config.asc[..], [0x11, 0x88]);
            assert_eq!(
                (
                    config.object_type,
                    config.sample_rate,
                    config.channel_config
                ),
                (2, 48000, 1)
            );
            let header = config.adts_header(frame_len - header_len).unwrap();
            assert_eq!(header, ADTS_48K[pos..pos + 7]);
            pos += frame_len;
            frames += 1;
        }
        assert_eq!(pos, ADTS_48K.len());
        assert!(frames > 5);
    }

    #[test]
    fn adts_round_trip() {
        for source in [ASC_48K_STEREO, ASC_44K_MONO] {
            let parsed = AacConfig::parse(Bytes::from_static(source)).unwrap();
            for payload_len in [0, 1, 371, 8184] {
                let header = parsed.adts_header(payload_len).unwrap();
                let (back, frame_len, header_len) = AacConfig::from_adts(&header).unwrap();
                assert_eq!((frame_len, header_len), (payload_len + 7, 7));
                // from_adts builds the minimal 2-byte ASC; ffmpeg's first two bytes are that.
                assert_eq!(
                    back,
                    AacConfig::parse(Bytes::copy_from_slice(&source[..2])).unwrap()
                );
            }
            assert!(matches!(
                parsed.adts_header(8185),
                Err(MediaError::Invalid { .. })
            ));
            assert!(parsed.adts_header(usize::MAX).is_err());
        }
    }

    #[test]
    fn adts_header_errors() {
        let header = &ADTS_48K[..7];
        for len in 0..7 {
            assert!(matches!(
                AacConfig::from_adts(&header[..len]),
                Err(MediaError::Truncated { .. })
            ));
        }
        let mut bad_sync = header.to_vec();
        bad_sync[1] = 0x01;
        assert!(AacConfig::from_adts(&bad_sync).is_err());
        let mut layer = header.to_vec();
        layer[1] |= 0x02;
        assert!(AacConfig::from_adts(&layer).is_err());
        let mut reserved_rate = header.to_vec();
        reserved_rate[2] = (reserved_rate[2] & !0x3c) | (13 << 2);
        assert!(AacConfig::from_adts(&reserved_rate).is_err());
        let mut short_frame = header.to_vec();
        short_frame[3] &= !0x03;
        short_frame[4] = 0;
        short_frame[5] &= 0x1f;
        assert!(AacConfig::from_adts(&short_frame).is_err());
        let mut blocks = header.to_vec();
        blocks[6] |= 0x01;
        assert!(matches!(
            AacConfig::from_adts(&blocks),
            Err(MediaError::Unsupported { .. })
        ));

        // With a CRC the header is 9 bytes, and all 9 must be present.
        let mut crc = ADTS_48K[..9].to_vec();
        crc[1] &= !0x01;
        assert!(matches!(
            AacConfig::from_adts(&crc[..7]),
            Err(MediaError::Truncated { .. })
        ));
        let (_, frame_len, header_len) = AacConfig::from_adts(&crc).unwrap();
        assert_eq!((frame_len, header_len), (219, 9));
    }

    #[test]
    fn adts_header_rejects_what_adts_cannot_carry() {
        let mut c = AacConfig::parse(Bytes::from_static(ASC_48K_STEREO)).unwrap();
        c.channel_config = 8;
        assert!(c.adts_header(10).is_err());
        c.channel_config = 2;
        c.object_type = 23;
        assert!(c.adts_header(10).is_err());
    }

    #[test]
    fn sample_rate_table() {
        assert_eq!(sample_rate_from_index(0), Some(96000));
        assert_eq!(sample_rate_from_index(3), Some(48000));
        assert_eq!(sample_rate_from_index(4), Some(44100));
        assert_eq!(sample_rate_from_index(12), Some(7350));
        assert_eq!(sample_rate_from_index(13), None);
        assert_eq!(sample_rate_from_index(15), None);
        assert_eq!(sample_rate_from_index(255), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..5000 {
            let mut bytes = [0u8; 12];
            for b in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if i % 2 == 0 {
                // Give the ADTS parser a valid syncword often enough to reach the later fields.
                bytes[0] = 0xff;
                bytes[1] |= 0xf0;
            }
            let len = i % 13;
            if let Ok(c) = AacConfig::parse(Bytes::copy_from_slice(&bytes[..len])) {
                let _ = c.adts_header(len * 700);
            }
            if let Ok((c, _, _)) = AacConfig::from_adts(&bytes[..len]) {
                assert_eq!(AacConfig::parse(c.asc.clone()).unwrap(), c);
            }
        }
    }
}
