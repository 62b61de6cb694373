//! H.264: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), SPS facts, AVCC <-> Annex-B.

use crate::MediaError;
use bytes::Bytes;

/// Parsed H.264 decoder configuration plus the SPS facts outputs and stats need.
#[derive(Clone, Debug, PartialEq)]
pub struct AvcConfig {
    /// The raw AVCDecoderConfigurationRecord (`avcC` box body / RTMP sequence header body).
    pub record: Bytes,
    /// Bytes in each NAL unit length prefix of AVCC frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets, without start codes or length prefixes.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, without start codes or length prefixes.
    pub pps: Vec<Bytes>,
    /// `profile_idc` of the first SPS.
    pub profile_idc: u8,
    /// The constraint_set flags byte of the first SPS.
    pub constraint_flags: u8,
    /// `level_idc` of the first SPS.
    pub level_idc: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
    /// Frame rate from the SPS VUI timing info, if present.
    pub fps: Option<f64>,
}

use h264_reader::nal::sps::{ChromaFormat, SeqParameterSet};
use h264_reader::rbsp::{BitReader, decode_nal};

/// NAL unit type of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

const WHAT_RECORD: &str = "AVCDecoderConfigurationRecord";
const WHAT_SPS: &str = "H.264 SPS";

/// `nal_unit_type` of a NAL unit (low 5 bits of its first byte); 0 (unspecified) when empty.
pub fn nal_unit_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The SPS facts kept in [`AvcConfig`].
struct SpsInfo {
    width: u32,
    height: u32,
    fps: Option<f64>,
    /// chroma_format_idc, bit_depth_luma_minus8, bit_depth_chroma_minus8 for the record trailer.
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
}

fn parse_sps(nal: &[u8]) -> Result<SpsInfo, MediaError> {
    // Header, profile_idc, constraint flags and level_idc come before anything variable-length;
    // shorter input also makes h264-reader's decode_nal underflow its capacity estimate.
    if nal.len() < 4 {
        return Err(MediaError::Truncated {
            what: WHAT_SPS,
            offset: nal.len(),
        });
    }
    if nal_unit_type(nal) != NAL_SPS {
        return Err(MediaError::Invalid {
            what: WHAT_SPS,
            reason: format!("NAL unit type {} is not an SPS", nal_unit_type(nal)),
        });
    }
    // The last byte of an RBSP holds its stop bit, so trailing zero bytes are stream padding
    // (trailing_zero_8bits) that some muxers leave on; h264-reader rejects them.
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let nal = nal.get(..end).unwrap_or(nal);
    let rbsp = decode_nal(nal).map_err(|e| MediaError::Invalid {
        what: WHAT_SPS,
        reason: format!("emulation prevention: {e}"),
    })?;
    let sps =
        SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| MediaError::Invalid {
            what: WHAT_SPS,
            reason: format!("{e:?}"),
        })?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| MediaError::Invalid {
        what: WHAT_SPS,
        reason: format!("{e:?}"),
    })?;
    let fps = sps
        .vui_parameters
        .as_ref()
        .and_then(|vui| vui.timing_info.as_ref())
        .filter(|t| t.num_units_in_tick > 0 && t.time_scale > 0)
        // H.264 E.2.1: one tick is one field, so a frame lasts two ticks.
        .map(|t| f64::from(t.time_scale) / (2.0 * f64::from(t.num_units_in_tick)));
    let chroma_format_idc = match sps.chroma_info.chroma_format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(idc) => {
            return Err(MediaError::Invalid {
                what: WHAT_SPS,
                reason: format!("chroma_format_idc {idc}"),
            });
        }
    };
    Ok(SpsInfo {
        width,
        height,
        fps,
        chroma_format_idc,
        bit_depth_luma_minus8: sps.chroma_info.bit_depth_luma_minus8,
        bit_depth_chroma_minus8: sps.chroma_info.bit_depth_chroma_minus8,
    })
}

/// Profiles whose record carries the chroma/bit-depth trailer (ISO/IEC 14496-15 5.3.3.1.2 as
/// amended; ffmpeg writes it for every profile but these three).
fn has_record_trailer(profile_idc: u8) -> bool {
    !matches!(profile_idc, 66 | 77 | 88)
}

/// Reads `[u16 length][bytes]` parameter sets, returning zero-copy slices of `record`.
fn read_parameter_sets(
    record: &Bytes,
    pos: &mut usize,
    count: usize,
    nal_type: u8,
) -> Result<Vec<Bytes>, MediaError> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let len_bytes = record.get(*pos..*pos + 2).ok_or(MediaError::Truncated {
            what: WHAT_RECORD,
            offset: record.len(),
        })?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let start = *pos + 2;
        let end = start + len;
        if end > record.len() {
            return Err(MediaError::Truncated {
                what: WHAT_RECORD,
                offset: record.len(),
            });
        }
        let nal = record.slice(start..end);
        if nal_unit_type(&nal) != nal_type {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: format!(
                    "parameter set at byte {start} has NAL unit type {}, expected {nal_type}",
                    nal_unit_type(&nal)
                ),
            });
        }
        sets.push(nal);
        *pos = end;
    }
    Ok(sets)
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord; SPS/PPS are zero-copy slices of `record`.
    ///
    /// Bytes after the PPS array (the high-profile chroma/bit-depth trailer, or padding some
    /// encoders add) are ignored: the SPS says the same thing authoritatively.
    pub fn parse(record: Bytes) -> Result<AvcConfig, MediaError> {
        let header = record.get(..6).ok_or(MediaError::Truncated {
            what: WHAT_RECORD,
            offset: record.len(),
        })?;
        if header[0] != 1 {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: format!("configurationVersion {}", header[0]),
            });
        }
        let nal_length_size = (header[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: "lengthSizeMinusOne 2 (3-byte NAL lengths)".into(),
            });
        }
        let num_sps = usize::from(header[5] & 0x1f);
        if num_sps == 0 {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: "no SPS".into(),
            });
        }
        let mut pos = 6;
        let sps = read_parameter_sets(&record, &mut pos, num_sps, NAL_SPS)?;
        let num_pps = usize::from(*record.get(pos).ok_or(MediaError::Truncated {
            what: WHAT_RECORD,
            offset: pos,
        })?);
        pos += 1;
        let pps = read_parameter_sets(&record, &mut pos, num_pps, NAL_PPS)?;
        let first = &sps[0]; // num_sps >= 1 was checked above.
        let info = parse_sps(first)?;
        // parse_sps checked the SPS holds at least 4 bytes.
        let (profile_idc, constraint_flags, level_idc) = (first[1], first[2], first[3]);
        Ok(AvcConfig {
            nal_length_size,
            profile_idc,
            constraint_flags,
            level_idc,
            width: info.width,
            height: info.height,
            fps: info.fps,
            sps,
            pps,
            record,
        })
    }

    /// Builds the record (4-byte NAL lengths) from in-band parameter sets, e.g. from MPEG-TS.
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<AvcConfig, MediaError> {
        let first = sps.first().ok_or(MediaError::Invalid {
            what: WHAT_RECORD,
            reason: "no SPS".into(),
        })?;
        let info = parse_sps(first)?;
        if sps.len() > 31 || pps.len() > 255 {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: format!(
                    "{} SPS and {} PPS do not fit the record",
                    sps.len(),
                    pps.len()
                ),
            });
        }
        let mut out =
            Vec::with_capacity(16 + sps.iter().chain(&pps).map(|p| p.len() + 2).sum::<usize>());
        // parse_sps checked the first SPS holds at least 4 bytes.
        let profile_idc = first[1];
        out.extend_from_slice(&[1, profile_idc, first[2], first[3], 0xfc | 3]);
        // Both counts were checked above, so the casts are lossless.
        out.push(0xe0 | sps.len() as u8);
        for set in &sps {
            push_parameter_set(&mut out, set, NAL_SPS)?;
        }
        out.push(pps.len() as u8);
        for set in &pps {
            push_parameter_set(&mut out, set, NAL_PPS)?;
        }
        if has_record_trailer(profile_idc) {
            out.extend_from_slice(&[
                0xfc | info.chroma_format_idc,
                0xf8 | info.bit_depth_luma_minus8,
                0xf8 | info.bit_depth_chroma_minus8,
                0, // numOfSequenceParameterSetExt
            ]);
        }
        Self::parse(Bytes::from(out))
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }

    /// Human-readable profile name (`Baseline`, `Main`, `High`, ...), as ffmpeg prints it.
    pub fn profile_name(&self) -> &'static str {
        let set1 = self.constraint_flags & 0x40 != 0;
        let set3 = self.constraint_flags & 0x10 != 0;
        match self.profile_idc {
            66 if set1 => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 if set3 => "High 10 Intra",
            110 => "High 10",
            122 if set3 => "High 4:2:2 Intra",
            122 => "High 4:2:2",
            244 if set3 => "High 4:4:4 Intra",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            83 => "Scalable Baseline",
            86 => "Scalable High",
            118 => "Multiview High",
            128 => "Stereo High",
            _ => "Unknown",
        }
    }

    /// Appends every SPS then PPS with 4-byte start codes, as MPEG-TS wants before an IDR.
    pub fn write_parameter_sets_annexb(&self, out: &mut Vec<u8>) {
        for set in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(set);
        }
    }
}

fn push_parameter_set(out: &mut Vec<u8>, set: &[u8], nal_type: u8) -> Result<(), MediaError> {
    push_length_prefixed(out, set, nal_unit_type(set), nal_type, WHAT_RECORD)
}

/// Appends `[u16 length][set]` to a decoder configuration record (`what`) after checking that
/// the set's NAL unit type, `found` (read the codec's way), is `want`. Shared by AVC and HEVC.
pub(crate) fn push_length_prefixed(
    out: &mut Vec<u8>,
    set: &[u8],
    found: u8,
    want: u8,
    what: &'static str,
) -> Result<(), MediaError> {
    if found != want {
        return Err(MediaError::Invalid {
            what,
            reason: format!("parameter set has NAL unit type {found}, expected {want}"),
        });
    }
    let len = u16::try_from(set.len()).map_err(|_| MediaError::Invalid {
        what,
        reason: format!("parameter set of {} bytes exceeds 65535", set.len()),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(set);
    Ok(())
}

/// Iterator over the NAL units of an AVCC (length-prefixed) payload; see [`avcc_nal_units`].
#[derive(Clone, Debug)]
pub struct AvccNals<'a> {
    data: &'a [u8],
    pos: usize,
    nal_length_size: u8,
    done: bool,
}

/// Iterates the NAL units of an AVCC payload; a bad length yields one error, then the end.
///
/// Zero-length NAL units are skipped: they carry nothing and would become bare start codes.
pub fn avcc_nal_units(payload: &[u8], nal_length_size: u8) -> AvccNals<'_> {
    AvccNals {
        data: payload,
        pos: 0,
        nal_length_size,
        done: false,
    }
}

impl<'a> Iterator for AvccNals<'a> {
    type Item = Result<&'a [u8], MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done || self.pos >= self.data.len() {
                return None;
            }
            let size = usize::from(self.nal_length_size);
            if !(1..=4).contains(&size) {
                self.done = true;
                return Some(Err(MediaError::Invalid {
                    what: "AVCC payload",
                    reason: format!("NAL length size {size}"),
                }));
            }
            let start = self.pos + size;
            let Some(prefix) = self.data.get(self.pos..start) else {
                self.done = true;
                return Some(Err(MediaError::Truncated {
                    what: "AVCC NAL length",
                    offset: self.pos,
                }));
            };
            let len = prefix
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            // Saturating keeps a huge length on a 32-bit target from wrapping into range.
            let Some(nal) = self.data.get(start..start.saturating_add(len)) else {
                self.done = true;
                return Some(Err(MediaError::Truncated {
                    what: "AVCC NAL unit",
                    offset: self.pos,
                }));
            };
            self.pos = start + len;
            if !nal.is_empty() {
                return Some(Ok(nal));
            }
        }
    }
}

/// Iterator over the NAL units of an Annex-B byte stream; see [`annexb_nal_units`].
#[derive(Clone, Debug)]
pub struct AnnexbNals<'a> {
    /// Input from just after the last start code found; empty once exhausted.
    rest: &'a [u8],
}

/// Position of the first `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// Iterates the NAL units of an Annex-B stream, without start codes or trailing zero bytes.
///
/// Bytes before the first start code are not a NAL unit and are skipped, as are empty units.
pub fn annexb_nal_units(data: &[u8]) -> AnnexbNals<'_> {
    let rest = match find_start_code(data) {
        Some(i) => &data[i + 3..],
        None => &[],
    };
    AnnexbNals { rest }
}

impl<'a> Iterator for AnnexbNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (nal, rest) = match find_start_code(self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 3..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // A NAL unit never ends in 0x00 (its last byte holds the RBSP stop bit or an
            // emulation-prevention 0x03), so trailing zeros are the next 4-byte start code's
            // zero_byte or trailing_zero_8bits.
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return Some(&nal[..end]);
            }
        }
        None
    }
}

/// Appends `payload` converted from AVCC to Annex-B (4-byte start codes) to `out`.
///
/// On error `out` is restored to its length before the call.
pub fn avcc_to_annexb(
    payload: &[u8],
    nal_length_size: u8,
    out: &mut Vec<u8>,
) -> Result<(), MediaError> {
    let original_len = out.len();
    out.reserve(payload.len() + 16);
    for nal in avcc_nal_units(payload, nal_length_size) {
        match nal {
            Ok(nal) => {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(nal);
            }
            Err(e) => {
                out.truncate(original_len);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Appends Annex-B `data` converted to AVCC with 4-byte lengths to `out`.
pub fn annexb_to_avcc(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + 16);
    for nal in annexb_nal_units(data) {
        // A NAL unit over 4 GiB cannot be described by a 4-byte length; no encoder makes one,
        // and dropping it beats writing a wrapped length that desynchronises every reader.
        let Ok(len) = u32::try_from(nal.len()) else {
            continue;
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
}

/// Whether an AVCC payload holds an IDR slice (NAL units after a bad length are not seen).
pub fn avcc_contains_idr(payload: &[u8], nal_length_size: u8) -> bool {
    avcc_nal_units(payload, nal_length_size)
        .map_while(Result::ok)
        .any(|nal| nal_unit_type(nal) == NAL_IDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIGH_720P: &[u8] = include_bytes!("../../../testdata/h264-1280x720-high.avcc");
    const BASELINE_240P: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
    const MAIN_1080P: &[u8] = include_bytes!("../../../testdata/h264-1920x1080-main.avcc");
    const BASELINE_IDR_FRAME: &[u8] =
        include_bytes!("../../../testdata/h264-320x240-baseline-idr.avcc-frame");
    const ANNEXB_3_FRAMES: &[u8] = include_bytes!("../../../testdata/h264-160x120-3frames.h264");

    /// Deterministic xorshift so mutation tests are reproducible without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn assert_zero_copy(config: &AvcConfig) {
        let range = config.record.as_ptr_range();
        for set in config.sps.iter().chain(&config.pps) {
            assert!(range.contains(&set.as_ptr()), "parameter set copied");
        }
    }

    #[test]
    fn ffmpeg_x264_high_720p() {
        let c = AvcConfig::parse(Bytes::from_static(HIGH_720P)).unwrap();
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(
            (c.profile_idc, c.constraint_flags, c.level_idc),
            (100, 0, 31)
        );
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(c.profile_name(), "High");
        assert_eq!(c.fps, Some(30.0));
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
        assert_eq!(nal_unit_type(&c.sps[0]), NAL_SPS);
        assert_eq!(nal_unit_type(&c.pps[0]), NAL_PPS);
        assert_zero_copy(&c);
    }

    #[test]
    fn ffmpeg_x264_baseline_320x240() {
        let c = AvcConfig::parse(Bytes::from_static(BASELINE_240P)).unwrap();
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.profile_idc, 66);
        assert_eq!(c.profile_name(), "Constrained Baseline");
        assert_eq!(c.codec_string(), "avc1.42c00d");
        assert_eq!(c.fps, Some(25.0));
        assert_zero_copy(&c);
    }

    #[test]
    fn ffmpeg_x264_1080p_is_cropped_from_1088() {
        let c = AvcConfig::parse(Bytes::from_static(MAIN_1080P)).unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!(c.profile_name(), "Main");
        assert_eq!(c.codec_string(), "avc1.4d4028");
    }

    #[test]
    fn from_parameter_sets_rebuilds_ffmpeg_records_exactly() {
        for record in [HIGH_720P, BASELINE_240P, MAIN_1080P] {
            let parsed = AvcConfig::parse(Bytes::from_static(record)).unwrap();
            let built =
                AvcConfig::from_parameter_sets(parsed.sps.clone(), parsed.pps.clone()).unwrap();
            assert_eq!(&built.record[..], record);
            assert_eq!(built, parsed);
            assert_zero_copy(&built);
        }
    }

    #[test]
    fn from_parameter_sets_rejects_bad_input() {
        let c = AvcConfig::parse(Bytes::from_static(HIGH_720P)).unwrap();
        assert!(AvcConfig::from_parameter_sets(vec![], c.pps.clone()).is_err());
        assert!(AvcConfig::from_parameter_sets(c.pps.clone(), c.pps.clone()).is_err());
        assert!(AvcConfig::from_parameter_sets(c.sps.clone(), c.sps.clone()).is_err());
        assert!(AvcConfig::from_parameter_sets(vec![c.sps[0].slice(..3)], vec![]).is_err());
        let pps = vec![c.pps[0].clone(); 256];
        assert!(AvcConfig::from_parameter_sets(c.sps.clone(), pps).is_err());
        // In-band parameter sets may arrive with the stream's trailing zero padding.
        let mut padded = c.sps[0].to_vec();
        padded.extend_from_slice(&[0, 0]);
        let built =
            AvcConfig::from_parameter_sets(vec![Bytes::from(padded)], c.pps.clone()).unwrap();
        assert_eq!((built.width, built.height), (1280, 720));
    }

    #[test]
    fn record_without_pps_or_trailer_is_accepted() {
        let c = AvcConfig::parse(Bytes::from_static(HIGH_720P)).unwrap();
        let sps_end = 6 + 2 + c.sps[0].len();
        let mut record = HIGH_720P[..sps_end].to_vec();
        record.push(0);
        let c = AvcConfig::parse(Bytes::from(record)).unwrap();
        assert!(c.pps.is_empty());
    }

    #[test]
    fn record_header_errors() {
        let mut bad_version = HIGH_720P.to_vec();
        bad_version[0] = 0;
        assert!(matches!(
            AvcConfig::parse(Bytes::from(bad_version)),
            Err(MediaError::Invalid { .. })
        ));
        let mut three_byte_lengths = HIGH_720P.to_vec();
        three_byte_lengths[4] = 0xfe;
        assert!(AvcConfig::parse(Bytes::from(three_byte_lengths)).is_err());
        let mut two_byte_lengths = HIGH_720P.to_vec();
        two_byte_lengths[4] = 0xfd;
        let c = AvcConfig::parse(Bytes::from(two_byte_lengths)).unwrap();
        assert_eq!(c.nal_length_size, 2);
        let mut no_sps = HIGH_720P.to_vec();
        no_sps[5] = 0xe0;
        assert!(AvcConfig::parse(Bytes::from(no_sps)).is_err());
        let mut pps_as_sps = HIGH_720P.to_vec();
        pps_as_sps[8] = 0x68;
        assert!(AvcConfig::parse(Bytes::from(pps_as_sps)).is_err());
    }

    #[test]
    fn truncated_records_error_without_panicking() {
        for record in [HIGH_720P, BASELINE_240P, MAIN_1080P] {
            let full = AvcConfig::parse(Bytes::from_static(record)).unwrap();
            let pps_end = 6 + 2 + full.sps[0].len() + 1 + 2 + full.pps[0].len();
            for len in 0..record.len() {
                let result = AvcConfig::parse(Bytes::copy_from_slice(&record[..len]));
                if len < pps_end {
                    assert!(result.is_err(), "accepted a {len}-byte prefix");
                } else {
                    assert_eq!(result.unwrap().sps, full.sps);
                }
            }
        }
    }

    #[test]
    fn mutated_records_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let source = [HIGH_720P, BASELINE_240P, MAIN_1080P][rng.below(3)];
            let mut record = source.to_vec();
            for _ in 0..=rng.below(3) {
                let i = rng.below(record.len());
                record[i] ^= 1 << rng.below(8);
            }
            let _ = AvcConfig::parse(Bytes::from(record));
        }
    }

    #[test]
    fn nal_unit_type_masks_header_bits() {
        assert_eq!(nal_unit_type(&[0x67, 0x64]), NAL_SPS);
        assert_eq!(nal_unit_type(&[0x65]), NAL_IDR);
        assert_eq!(nal_unit_type(&[0x41]), NAL_SLICE);
        assert_eq!(nal_unit_type(&[0x06]), NAL_SEI);
        assert_eq!(nal_unit_type(&[0x09, 0x10]), NAL_AUD);
        assert_eq!(nal_unit_type(&[]), 0);
    }

    #[test]
    fn avcc_frame_from_ffmpeg_flv() {
        let types: Vec<u8> = avcc_nal_units(BASELINE_IDR_FRAME, 4)
            .map(|nal| nal_unit_type(nal.unwrap()))
            .collect();
        assert_eq!(types, [NAL_SEI, NAL_IDR]);
        assert!(avcc_contains_idr(BASELINE_IDR_FRAME, 4));

        let mut annexb = vec![0xaa];
        avcc_to_annexb(BASELINE_IDR_FRAME, 4, &mut annexb).unwrap();
        assert_eq!(annexb.len(), 1 + BASELINE_IDR_FRAME.len());
        assert_eq!(&annexb[..5], &[0xaa, 0, 0, 0, 1]);
        let mut avcc = Vec::new();
        annexb_to_avcc(&annexb[1..], &mut avcc);
        assert_eq!(avcc, BASELINE_IDR_FRAME);
    }

    #[test]
    fn truncated_avcc_yields_one_error_then_stops() {
        for len in 0..BASELINE_IDR_FRAME.len() {
            let data = &BASELINE_IDR_FRAME[..len];
            let items: Vec<_> = avcc_nal_units(data, 4).collect();
            let errors = items.iter().filter(|r| r.is_err()).count();
            assert!(errors <= 1);
            if errors == 1 {
                assert!(items.last().unwrap().is_err());
            }
            let mut out = vec![7];
            match avcc_to_annexb(data, 4, &mut out) {
                Ok(()) => assert_eq!(errors, 0),
                Err(_) => assert_eq!(out, [7]),
            }
            let _ = avcc_contains_idr(data, 4);
        }
        // Cut inside the SEI: the IDR after it is never reached.
        assert!(!avcc_contains_idr(&BASELINE_IDR_FRAME[..100], 4));
    }

    #[test]
    fn avcc_with_short_lengths_and_odd_sizes() {
        let nals: [&[u8]; 3] = [&[0x09, 0xf0], &[0x65, 1, 2, 3], &[0x41, 9]];
        for size in [1u8, 2, 3, 4] {
            let mut payload = Vec::new();
            for nal in nals {
                let len = (nal.len() as u32).to_be_bytes();
                payload.extend_from_slice(&len[4 - usize::from(size)..]);
                payload.extend_from_slice(nal);
            }
            // A zero-length unit in the middle is skipped, not yielded.
            payload.extend(std::iter::repeat_n(0, usize::from(size)));
            let got: Vec<&[u8]> = avcc_nal_units(&payload, size).map(Result::unwrap).collect();
            assert_eq!(got, nals);
            assert!(avcc_contains_idr(&payload, size));
        }
        for size in [0u8, 5, 255] {
            let items: Vec<_> = avcc_nal_units(&[0, 0, 0, 1, 0x65], size).collect();
            assert_eq!(items.len(), 1);
            assert!(items[0].is_err());
        }
        assert_eq!(avcc_nal_units(&[], 0).count(), 0);
        let huge = [0xff, 0xff, 0xff, 0xff, 0x65];
        assert!(matches!(
            avcc_nal_units(&huge, 4).next(),
            Some(Err(MediaError::Truncated { offset: 0, .. }))
        ));
    }

    #[test]
    fn annexb_stream_from_ffmpeg() {
        let types: Vec<u8> = annexb_nal_units(ANNEXB_3_FRAMES)
            .map(nal_unit_type)
            .collect();
        assert_eq!(types, [9, 7, 8, 6, 5, 9, 1, 9, 7, 8, 5]);
        let nals: Vec<&[u8]> = annexb_nal_units(ANNEXB_3_FRAMES).collect();
        assert_eq!(nals[0], [0x09, 0x10]);
        assert!(nals.iter().all(|n| n.last() != Some(&0)));
        // The in-band SPS/PPS are the same ones a record would carry.
        let c = AvcConfig::from_parameter_sets(
            vec![Bytes::copy_from_slice(nals[1])],
            vec![Bytes::copy_from_slice(nals[2])],
        )
        .unwrap();
        assert_eq!((c.width, c.height), (160, 120));
        let mut with_sets = Vec::new();
        c.write_parameter_sets_annexb(&mut with_sets);
        let sets: Vec<&[u8]> = annexb_nal_units(&with_sets).collect();
        assert_eq!(sets, &nals[1..3]);

        let mut avcc = Vec::new();
        annexb_to_avcc(ANNEXB_3_FRAMES, &mut avcc);
        let mut annexb = Vec::new();
        avcc_to_annexb(&avcc, 4, &mut annexb).unwrap();
        let again: Vec<&[u8]> = annexb_nal_units(&annexb).collect();
        assert_eq!(again, nals);
        assert!(avcc_contains_idr(&avcc, 4));
    }

    #[test]
    fn annexb_edge_cases() {
        let none: [&[u8]; 0] = [];
        assert_eq!(annexb_nal_units(&[]).collect::<Vec<_>>(), none);
        assert_eq!(annexb_nal_units(&[0x65, 1, 2]).collect::<Vec<_>>(), none);
        assert_eq!(annexb_nal_units(&[0, 0, 1]).collect::<Vec<_>>(), none);
        assert_eq!(
            annexb_nal_units(&[0, 0, 0, 1, 0, 0, 1]).collect::<Vec<_>>(),
            none
        );
        let data = [
            0xee, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0,
        ];
        let nals: Vec<&[u8]> = annexb_nal_units(&data).collect();
        let expected: [&[u8]; 3] = [&[0x67, 1], &[0x68, 2], &[0x65, 0, 0, 3, 1]];
        assert_eq!(nals, expected);
    }

    #[test]
    fn annexb_truncations_never_panic() {
        let mut out = Vec::new();
        for len in 0..ANNEXB_3_FRAMES.len() {
            let data = &ANNEXB_3_FRAMES[..len];
            for nal in annexb_nal_units(data) {
                assert!(!nal.is_empty());
            }
            out.clear();
            annexb_to_avcc(data, &mut out);
            let mut back = Vec::new();
            avcc_to_annexb(&out, 4, &mut back).unwrap();
        }
    }
}
