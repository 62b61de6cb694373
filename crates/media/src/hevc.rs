//! H.265/HEVC: HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1), SPS facts,
//! length-prefixed (hvcC) <-> Annex-B, and the RFC 6381 codec string.

use crate::MediaError;
use crate::avc::avcc_nal_units;
use crate::bits::BitReader;
use bytes::Bytes;

/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 35;
/// NAL unit type of a prefix SEI message.
pub const NAL_SEI_PREFIX: u8 = 39;

/// Parsed H.265 decoder configuration plus the SPS facts outputs and stats need.
#[derive(Clone, Debug, PartialEq)]
pub struct HevcConfig {
    /// The raw HEVCDecoderConfigurationRecord (`hvcC` box body / Enhanced RTMP SequenceStart).
    pub record: Bytes,
    /// Bytes in each NAL unit length prefix of frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// Video parameter sets, without start codes or length prefixes.
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets, without start codes or length prefixes.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, without start codes or length prefixes.
    pub pps: Vec<Bytes>,
    /// `general_profile_space` (0 in every stream seen in practice).
    pub profile_space: u8,
    /// `general_tier_flag`: the High tier.
    pub high_tier: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, 3 Main Still Picture, 4 RExt).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`, bit 31 is flag 0.
    pub profile_compatibility: u32,
    /// The 48 bits of general constraint indicator flags, in the low bits.
    pub constraint_flags: u64,
    /// `general_level_idc` (30 x the level number: 93 is level 3.1).
    pub level_idc: u8,
    /// `chroma_format_idc` (1 is 4:2:0).
    pub chroma_format_idc: u8,
    /// Luma bit depth (8, 10, ...).
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Displayed width in pixels (after the conformance window).
    pub width: u32,
    /// Displayed height in pixels (after the conformance window).
    pub height: u32,
    /// Frame rate from the VPS/SPS VUI timing info, if present.
    pub fps: Option<f64>,
}

/// `nal_unit_type` of an HEVC NAL unit (bits 1..7 of its first byte); 0 when empty.
pub fn nal_unit_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// Whether `nal_type` is an IRAP picture (BLA, IDR or CRA: 16..=23), a random access point.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// `nuh_layer_id` of an HEVC NAL unit (0 for the base layer); 0 when shorter than the header.
pub fn nuh_layer_id(nal: &[u8]) -> u8 {
    match nal {
        [a, b, ..] => ((a & 1) << 5) | (b >> 3),
        _ => 0,
    }
}

const WHAT_RECORD: &str = "HEVCDecoderConfigurationRecord";
const WHAT_SPS: &str = "H.265 SPS";
const WHAT_VPS: &str = "H.265 VPS";

/// Fixed part of the record before `numOfArrays`' arrays.
const RECORD_HEADER_LEN: usize = 23;

/// Largest picture dimension accepted: sqrt(8 x MaxLumaPs) of level 6.2 (H.265 A.4.1), the
/// most any conforming stream can code.
const MAX_DIMENSION: u32 = 16_888;

/// `general_profile_space`, tier, profile, compatibility, constraint and level fields.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ProfileTierLevel {
    profile_space: u8,
    high_tier: bool,
    profile_idc: u8,
    compatibility: u32,
    constraint_flags: u64,
    level_idc: u8,
}

impl ProfileTierLevel {
    /// Reads the 12 bytes shared by the record and the general part of profile_tier_level().
    fn from_bytes(b: &[u8; 12]) -> Self {
        ProfileTierLevel {
            profile_space: b[0] >> 6,
            high_tier: b[0] & 0x20 != 0,
            profile_idc: b[0] & 0x1f,
            compatibility: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
            constraint_flags: b[5..11]
                .iter()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
            level_idc: b[11],
        }
    }

    /// The 12-byte form written into a record.
    fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = (self.profile_space << 6) | (u8::from(self.high_tier) << 5) | self.profile_idc;
        b[1..5].copy_from_slice(&self.compatibility.to_be_bytes());
        b[5..11].copy_from_slice(&self.constraint_flags.to_be_bytes()[2..]);
        b[11] = self.level_idc;
        b
    }

    /// A record written by a muxer that knew nothing about the stream (all zero).
    fn is_unset(&self) -> bool {
        self.profile_idc == 0 && self.compatibility == 0 && self.level_idc == 0
    }
}

/// The SPS facts kept in [`HevcConfig`] or needed to build a record.
#[derive(Clone, Debug, PartialEq)]
struct SpsInfo {
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
    ptl: ProfileTierLevel,
    chroma_format_idc: u8,
    bit_depth_luma: u8,
    bit_depth_chroma: u8,
    width: u32,
    height: u32,
    fps: Option<f64>,
}

/// Removes the 2-byte NAL header and emulation-prevention bytes (`00 00 03` -> `00 00`).
///
/// Hand-rolled rather than h264-reader's `decode_nal`: that one assumes a 1-byte header and
/// rejects trailing zero bytes, which muxers leave on parameter sets.
fn rbsp_of(nal: &[u8]) -> Vec<u8> {
    let payload = nal.get(2..).unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0usize;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Exp-Golomb reads on top of the plain bit reader.
trait ExpGolomb {
    /// `ue(v)`: unsigned Exp-Golomb.
    fn ue(&mut self) -> Result<u32, MediaError>;
    /// `se(v)`: signed Exp-Golomb.
    fn se(&mut self) -> Result<i32, MediaError>;
    /// `ue(v)` that must not exceed `max` (bounds loops and shifts on hostile input).
    fn ue_max(&mut self, max: u32, field: &'static str) -> Result<u32, MediaError>;
}

impl ExpGolomb for BitReader<'_> {
    fn ue(&mut self) -> Result<u32, MediaError> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            // 32 leading zeros would code at least 2^32 - 1, beyond every ue(v) in H.265.
            if zeros > 31 {
                return Err(MediaError::Invalid {
                    what: WHAT_SPS,
                    reason: "Exp-Golomb code longer than 32 bits".into(),
                });
            }
        }
        let rest = u64::from(self.read_bits(zeros)?);
        // zeros <= 31, so the value is at most 2^32 - 2.
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    fn se(&mut self) -> Result<i32, MediaError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31 - 1 because k <= 2^32 - 2.
        Ok(v as i32)
    }

    fn ue_max(&mut self, max: u32, field: &'static str) -> Result<u32, MediaError> {
        let v = self.ue()?;
        if v > max {
            return Err(MediaError::Invalid {
                what: WHAT_SPS,
                reason: format!("{field} {v} exceeds {max}"),
            });
        }
        Ok(v)
    }
}

/// profile_tier_level(1, max_sub_layers_minus1): the general part, skipping the sub-layers'.
fn read_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> Result<ProfileTierLevel, MediaError> {
    let mut general = [0u8; 12];
    for b in &mut general {
        // read_bits(8) never exceeds a byte.
        *b = r.read_bits(8)? as u8;
    }
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    let n = usize::from(max_sub_layers_minus1);
    for i in 0..n {
        profile_present[i] = r.read_bit()?;
        level_present[i] = r.read_bit()?;
    }
    if n > 0 {
        // reserved_zero_2bits for the unused sub-layer slots keep the flags at 16 bits.
        r.skip(2 * (8 - n))?;
    }
    for i in 0..n {
        if profile_present[i] {
            // sub_layer profile space, tier, idc, compatibility and constraint flags.
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    Ok(ProfileTierLevel::from_bytes(&general))
}

/// Parses an SPS up to the bit depths (required), then on to the VUI timing info (best effort).
fn parse_sps(nal: &[u8]) -> Result<SpsInfo, MediaError> {
    check_header(nal, NAL_SPS, WHAT_SPS)?;
    let rbsp = rbsp_of(nal);
    let mut r = BitReader::new(&rbsp, WHAT_SPS);
    r.skip(4)?; // sps_video_parameter_set_id
    // Three bits are never more than 7.
    let max_sub_layers_minus1 = r.read_bits(3)? as u8;
    if max_sub_layers_minus1 > 6 {
        return Err(MediaError::Invalid {
            what: WHAT_SPS,
            reason: "sps_max_sub_layers_minus1 7".into(),
        });
    }
    let temporal_id_nesting = r.read_bit()?;
    let ptl = read_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue_max(15, "sps_seq_parameter_set_id")?;
    // ue_max bounds make the narrowing casts below lossless.
    let chroma_format_idc = r.ue_max(3, "chroma_format_idc")? as u8;
    if chroma_format_idc == 3 {
        // separate_colour_plane_flag: the planes are coded as monochrome pictures, but the
        // window units stay 1x1 as for 4:4:4, so it changes nothing here.
        r.skip(1)?;
    }
    let coded_width = r.ue()?;
    let coded_height = r.ue()?;
    for (field, v) in [
        ("pic_width_in_luma_samples", coded_width),
        ("pic_height_in_luma_samples", coded_height),
    ] {
        if v == 0 || v > MAX_DIMENSION {
            return Err(MediaError::Invalid {
                what: WHAT_SPS,
                reason: format!("{field} {v} (must be 1..={MAX_DIMENSION})"),
            });
        }
    }
    let (sub_width, sub_height) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (mut width, mut height) = (coded_width, coded_height);
    if r.read_bit()? {
        // Offsets are bounded by the picture size, so u64 sums cannot overflow.
        let mut offsets = [0u64; 4];
        for o in &mut offsets {
            *o = u64::from(r.ue()?);
        }
        let [left, right, top, bottom] = offsets;
        let crop_w = sub_width * (left + right);
        let crop_h = sub_height * (top + bottom);
        if crop_w >= u64::from(coded_width) || crop_h >= u64::from(coded_height) {
            return Err(MediaError::Invalid {
                what: WHAT_SPS,
                reason: format!(
                    "conformance window crops {crop_w}x{crop_h} of {coded_width}x{coded_height}"
                ),
            });
        }
        // Both crops are below a u32 picture size, checked just above.
        width = coded_width - crop_w as u32;
        height = coded_height - crop_h as u32;
    }
    let bit_depth_luma = r.ue_max(8, "bit_depth_luma_minus8")? as u8 + 8;
    let bit_depth_chroma = r.ue_max(8, "bit_depth_chroma_minus8")? as u8 + 8;
    // Everything after this point only feeds the frame rate; a stream using syntax this parser
    // gets wrong must still play, so failures there are not errors.
    let fps = parse_sps_to_timing(&mut r, max_sub_layers_minus1)
        .ok()
        .flatten();
    Ok(SpsInfo {
        max_sub_layers_minus1,
        temporal_id_nesting,
        ptl,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        width,
        height,
        fps,
    })
}

/// Checks the NAL unit header (forbidden bit, type, base layer) of a parameter set.
fn check_header(nal: &[u8], nal_type: u8, what: &'static str) -> Result<(), MediaError> {
    // Header plus a few payload bytes: anything shorter cannot hold the fixed fields.
    if nal.len() < 4 {
        return Err(MediaError::Truncated {
            what,
            offset: nal.len(),
        });
    }
    if nal[0] & 0x80 != 0 {
        return Err(MediaError::Invalid {
            what,
            reason: "forbidden_zero_bit set".into(),
        });
    }
    if nal_unit_type(nal) != nal_type {
        return Err(MediaError::Invalid {
            what,
            reason: format!(
                "NAL unit type {} where {nal_type} was expected",
                nal_unit_type(nal)
            ),
        });
    }
    if nuh_layer_id(nal) != 0 {
        // Layered (MV-HEVC/SHVC) parameter sets use different syntax.
        return Err(MediaError::Unsupported {
            what,
            reason: format!("nuh_layer_id {}", nuh_layer_id(nal)),
        });
    }
    Ok(())
}

/// The rest of the SPS up to the VUI timing info: the frame rate, if signalled.
fn parse_sps_to_timing(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u8,
) -> Result<Option<f64>, MediaError> {
    let log2_max_poc_lsb = r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")? + 4;
    let ordering_info_present = r.read_bit()?;
    let first = if ordering_info_present {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.ue()?; // sps_max_dec_pic_buffering_minus1
        r.ue()?; // sps_max_num_reorder_pics
        r.ue()?; // sps_max_latency_increase_plus1
    }
    for _ in 0..6 {
        // log2_min/diff luma coding and transform block sizes, transform hierarchy depths.
        r.ue()?;
    }
    if r.read_bit()? && r.read_bit()? {
        // scaling_list_enabled_flag, then sps_scaling_list_data_present_flag.
        skip_scaling_list_data(r)?;
    }
    r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.read_bit()? {
        // pcm_enabled_flag: sample bit depths (4 + 4), block sizes, loop filter flag.
        r.skip(8)?;
        r.ue()?;
        r.ue()?;
        r.skip(1)?;
    }
    let num_sets = r.ue_max(64, "num_short_term_ref_pic_sets")?;
    let mut sets: Vec<RefPicSet> = Vec::new();
    for _ in 0..num_sets {
        let set = read_st_ref_pic_set(r, &sets)?;
        sets.push(set);
    }
    if r.read_bit()? {
        // long_term_ref_pics_present_flag
        let n = r.ue_max(32, "num_long_term_ref_pics_sps")?;
        for _ in 0..n {
            // lt_ref_pic_poc_lsb_sps u(v), used_by_curr_pic_lt_sps_flag
            r.skip(log2_max_poc_lsb as usize + 1)?;
        }
    }
    r.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if !r.read_bit()? {
        return Ok(None); // no VUI
    }
    read_vui_timing(r)
}

/// scaling_list_data() (H.265 7.3.4), read only to get past it.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<(), MediaError> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.read_bit()? {
                r.ue()?; // scaling_list_pred_matrix_id_delta
                continue;
            }
            let coef_num = 64.min(1 << (4 + (size_id << 1)));
            if size_id > 1 {
                r.se()?; // scaling_list_dc_coef_minus8
            }
            for _ in 0..coef_num {
                r.se()?; // scaling_list_delta_coef
            }
        }
    }
    Ok(())
}

/// The delta POCs of one short-term reference picture set, needed to size the next one when it
/// is predicted from this (inter_ref_pic_set_prediction_flag).
#[derive(Clone, Debug, Default)]
struct RefPicSet {
    /// DeltaPocS0: negative, closest first.
    negative: Vec<i64>,
    /// DeltaPocS1: positive, closest first.
    positive: Vec<i64>,
}

/// Most delta POCs a set may hold: sps_max_dec_pic_buffering_minus1 is at most 15 (A.4.2).
const MAX_DELTA_POCS: usize = 16;

/// st_ref_pic_set(stRpsIdx) in an SPS (H.265 7.3.7, derivation 7.4.8), where `previous` holds
/// the sets 0..stRpsIdx.
fn read_st_ref_pic_set(
    r: &mut BitReader<'_>,
    previous: &[RefPicSet],
) -> Result<RefPicSet, MediaError> {
    let inter = !previous.is_empty() && r.read_bit()?;
    let mut set = RefPicSet::default();
    if inter {
        // In an SPS delta_idx_minus1 is absent (inferred 0): the reference is the previous set.
        let Some(reference) = previous.last() else {
            return Ok(set);
        };
        let sign = r.read_bit()?;
        let abs = i64::from(r.ue_max((1 << 15) - 1, "abs_delta_rps_minus1")?) + 1;
        let delta_rps = if sign { -abs } else { abs };
        let n_neg = reference.negative.len();
        let n_total = n_neg + reference.positive.len();
        // used_by_curr_pic_flag / use_delta_flag for each reference picture, then for the
        // reference set's own picture (index n_total).
        let mut use_delta = [false; MAX_DELTA_POCS + 1];
        for flag in use_delta.iter_mut().take(n_total + 1) {
            let used = r.read_bit()?;
            *flag = used || r.read_bit()?;
        }
        // Equations 7-61 and 7-62.
        for (j, &d) in reference.positive.iter().enumerate().rev() {
            let d = d + delta_rps;
            if d < 0 && use_delta[n_neg + j] {
                set.negative.push(d);
            }
        }
        if delta_rps < 0 && use_delta[n_total] {
            set.negative.push(delta_rps);
        }
        for (j, &d) in reference.negative.iter().enumerate() {
            let d = d + delta_rps;
            if d < 0 && use_delta[j] {
                set.negative.push(d);
            }
        }
        for (j, &d) in reference.negative.iter().enumerate().rev() {
            let d = d + delta_rps;
            if d > 0 && use_delta[j] {
                set.positive.push(d);
            }
        }
        if delta_rps > 0 && use_delta[n_total] {
            set.positive.push(delta_rps);
        }
        for (j, &d) in reference.positive.iter().enumerate() {
            let d = d + delta_rps;
            if d > 0 && use_delta[n_neg + j] {
                set.positive.push(d);
            }
        }
    } else {
        let max = MAX_DELTA_POCS as u32;
        let num_negative = r.ue_max(max, "num_negative_pics")?;
        let num_positive = r.ue_max(max, "num_positive_pics")?;
        let mut poc = 0i64;
        for _ in 0..num_negative {
            poc -= i64::from(r.ue()?) + 1; // delta_poc_s0_minus1
            r.skip(1)?; // used_by_curr_pic_s0_flag
            set.negative.push(poc);
        }
        poc = 0;
        for _ in 0..num_positive {
            poc += i64::from(r.ue()?) + 1; // delta_poc_s1_minus1
            r.skip(1)?; // used_by_curr_pic_s1_flag
            set.positive.push(poc);
        }
    }
    if set.negative.len() + set.positive.len() > MAX_DELTA_POCS {
        return Err(MediaError::Invalid {
            what: WHAT_SPS,
            reason: "short-term reference picture set larger than the DPB".into(),
        });
    }
    Ok(set)
}

/// vui_parameters() (H.265 E.2.1) up to the timing info: the frame rate, if signalled.
fn read_vui_timing(r: &mut BitReader<'_>) -> Result<Option<f64>, MediaError> {
    if r.read_bit()? {
        // aspect_ratio_info_present_flag; 255 is EXTENDED_SAR with explicit 16-bit sar sizes.
        if r.read_bits(8)? == 255 {
            r.skip(32)?;
        }
    }
    if r.read_bit()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_bit()? {
        // video_signal_type_present_flag: video_format, video_full_range_flag.
        r.skip(4)?;
        if r.read_bit()? {
            r.skip(24)?; // colour primaries, transfer characteristics, matrix coefficients
        }
    }
    if r.read_bit()? {
        r.ue()?; // chroma_sample_loc_type_top_field
        r.ue()?; // chroma_sample_loc_type_bottom_field
    }
    // neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
    r.skip(3)?;
    if r.read_bit()? {
        for _ in 0..4 {
            r.ue()?; // default display window offsets
        }
    }
    if !r.read_bit()? {
        return Ok(None);
    }
    Ok(timing_fps(r.read_bits(32)?, r.read_bits(32)?))
}

/// Frame rate of `num_units_in_tick` / `time_scale`: in H.265 one tick is one picture.
fn timing_fps(num_units_in_tick: u32, time_scale: u32) -> Option<f64> {
    (num_units_in_tick > 0 && time_scale > 0)
        .then(|| f64::from(time_scale) / f64::from(num_units_in_tick))
}

/// The frame rate from a VPS's timing info (H.265 7.3.2.1), if it has any.
fn parse_vps_fps(nal: &[u8]) -> Result<Option<f64>, MediaError> {
    check_header(nal, NAL_VPS, WHAT_VPS)?;
    let rbsp = rbsp_of(nal);
    let mut r = BitReader::new(&rbsp, WHAT_VPS);
    // vps_video_parameter_set_id, base layer internal/available flags, vps_max_layers_minus1.
    r.skip(12)?;
    // Three bits are never more than 7.
    let max_sub_layers_minus1 = r.read_bits(3)? as u8;
    if max_sub_layers_minus1 > 6 {
        return Ok(None);
    }
    r.skip(17)?; // vps_temporal_id_nesting_flag, vps_reserved_0xffff_16bits
    read_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    let first = if r.read_bit()? {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        for _ in 0..3 {
            r.ue()?; // max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase
        }
    }
    let max_layer_id = r.read_bits(6)? as usize;
    let num_layer_sets_minus1 = r.ue_max(1023, "vps_num_layer_sets_minus1")? as usize;
    // layer_id_included_flag[i][j]; the count is bounded by 1023 x 64 bits.
    r.skip(num_layer_sets_minus1 * (max_layer_id + 1))?;
    if !r.read_bit()? {
        return Ok(None);
    }
    Ok(timing_fps(r.read_bits(32)?, r.read_bits(32)?))
}

/// The first SPS of the base layer, the one whose facts describe the stream.
fn base_layer_sps(sps: &[Bytes]) -> Result<&Bytes, MediaError> {
    sps.iter()
        .find(|s| nuh_layer_id(s) == 0)
        .ok_or(MediaError::Unsupported {
            what: WHAT_RECORD,
            reason: "SPS only for layers above the base layer".into(),
        })
}

/// Reads `u8` at `pos` of the record.
fn byte_at(record: &[u8], pos: usize) -> Result<u8, MediaError> {
    record.get(pos).copied().ok_or(MediaError::Truncated {
        what: WHAT_RECORD,
        offset: record.len(),
    })
}

/// Reads a big-endian `u16` at `pos` of the record.
fn u16_at(record: &[u8], pos: usize) -> Result<u16, MediaError> {
    Ok(u16::from_be_bytes([
        byte_at(record, pos)?,
        byte_at(record, pos + 1)?,
    ]))
}

impl HevcConfig {
    /// Parses an HEVCDecoderConfigurationRecord and the first SPS it carries.
    ///
    /// Parameter sets are zero-copy slices of `record`; arrays of other NAL unit types (SEI)
    /// and bytes after the last array are ignored. Profile, tier and level come from the record
    /// header; picture size, chroma format and bit depths from the SPS, which is authoritative.
    pub fn parse(record: Bytes) -> Result<HevcConfig, MediaError> {
        let header: &[u8; RECORD_HEADER_LEN] = record
            .get(..RECORD_HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(MediaError::Truncated {
                what: WHAT_RECORD,
                offset: record.len(),
            })?;
        if header[0] != 1 {
            let reason = if header[..3] == [0, 0, 1] || header[..4] == [0, 0, 0, 1] {
                "Annex-B start code where a configurationVersion 1 record was expected".into()
            } else {
                format!("configurationVersion {}", header[0])
            };
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason,
            });
        }
        let mut general = [0u8; 12];
        general.copy_from_slice(&header[1..13]);
        let record_ptl = ProfileTierLevel::from_bytes(&general);
        let nal_length_size = (header[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: "lengthSizeMinusOne 2 (3-byte NAL lengths)".into(),
            });
        }
        let num_arrays = header[22];
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut pos = RECORD_HEADER_LEN;
        for _ in 0..num_arrays {
            let array_type = byte_at(&record, pos)? & 0x3f;
            let num_nalus = u16_at(&record, pos + 1)?;
            pos += 3;
            for _ in 0..num_nalus {
                let len = usize::from(u16_at(&record, pos)?);
                let start = pos + 2;
                let end = start + len;
                if end > record.len() {
                    return Err(MediaError::Truncated {
                        what: WHAT_RECORD,
                        offset: record.len(),
                    });
                }
                pos = end;
                let list = match array_type {
                    NAL_VPS => &mut vps,
                    NAL_SPS => &mut sps,
                    NAL_PPS => &mut pps,
                    _ => continue,
                };
                let nal = record.slice(start..end);
                if nal_unit_type(&nal) != array_type {
                    return Err(MediaError::Invalid {
                        what: WHAT_RECORD,
                        reason: format!(
                            "NAL unit at byte {start} has type {} in the array of type \
                             {array_type}",
                            nal_unit_type(&nal)
                        ),
                    });
                }
                list.push(nal);
            }
        }
        // Only the SPS is required: a record missing VPS or PPS (hev1 may carry them in-band)
        // is still worth passing through.
        if sps.is_empty() {
            return Err(MediaError::Invalid {
                what: WHAT_RECORD,
                reason: "no SPS".into(),
            });
        }
        let info = parse_sps(base_layer_sps(&sps)?)?;
        // Some muxers leave the header zero; the SPS holds the same fields.
        let ptl = if record_ptl.is_unset() {
            info.ptl
        } else {
            record_ptl
        };
        let avg_frame_rate = u16::from_be_bytes([header[19], header[20]]);
        let fps = info
            .fps
            .or_else(|| vps.iter().find_map(|v| parse_vps_fps(v).ok().flatten()))
            // avgFrameRate is in frames per 256 s; 0 means unspecified.
            .or_else(|| (avg_frame_rate > 0).then(|| f64::from(avg_frame_rate) / 256.0));
        Ok(HevcConfig {
            nal_length_size,
            vps,
            sps,
            pps,
            profile_space: ptl.profile_space,
            high_tier: ptl.high_tier,
            profile_idc: ptl.profile_idc,
            profile_compatibility: ptl.compatibility,
            constraint_flags: ptl.constraint_flags,
            level_idc: ptl.level_idc,
            chroma_format_idc: info.chroma_format_idc,
            bit_depth_luma: info.bit_depth_luma,
            bit_depth_chroma: info.bit_depth_chroma,
            width: info.width,
            height: info.height,
            fps,
            record,
        })
    }

    /// Builds the configuration (and its record, 4-byte lengths) from in-band parameter sets,
    /// as MPEG-TS and RTP carry them.
    pub fn from_parameter_sets(
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    ) -> Result<HevcConfig, MediaError> {
        for (list, name) in [(&vps, "VPS"), (&sps, "SPS"), (&pps, "PPS")] {
            if list.is_empty() {
                return Err(MediaError::Invalid {
                    what: WHAT_RECORD,
                    reason: format!("no {name}"),
                });
            }
        }
        let info = parse_sps(base_layer_sps(&sps)?)?;
        let total: usize = [&vps, &sps, &pps]
            .iter()
            .flat_map(|l| l.iter())
            .map(|p| p.len() + 2)
            .sum();
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + 9 + total);
        out.push(1); // configurationVersion
        out.extend_from_slice(&info.ptl.to_bytes());
        // min_spatial_segmentation_idc and parallelismType 0 (unknown): both are hints only.
        out.extend_from_slice(&[0xf0, 0x00, 0xfc]);
        out.push(0xfc | info.chroma_format_idc);
        out.push(0xf8 | (info.bit_depth_luma - 8));
        out.push(0xf8 | (info.bit_depth_chroma - 8));
        out.extend_from_slice(&[0, 0]); // avgFrameRate: unspecified
        // constantFrameRate 0 (unknown), numTemporalLayers, temporalIdNested, 4-byte lengths.
        let temporal =
            ((info.max_sub_layers_minus1 + 1) << 3) | u8::from(info.temporal_id_nesting) << 2;
        out.push(temporal | 3);
        out.push(3); // numOfArrays
        for (list, nal_type) in [(&vps, NAL_VPS), (&sps, NAL_SPS), (&pps, NAL_PPS)] {
            let count = u16::try_from(list.len()).map_err(|_| MediaError::Invalid {
                what: WHAT_RECORD,
                reason: format!("{} parameter sets of type {nal_type}", list.len()),
            })?;
            out.push(0x80 | nal_type); // array_completeness: every set is here
            out.extend_from_slice(&count.to_be_bytes());
            for set in list.iter() {
                push_parameter_set(&mut out, set, nal_type)?;
            }
        }
        Self::parse(Bytes::from(out))
    }

    /// RFC 6381 / ISO 14496-15 Annex E codec string, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = match self.profile_space {
            0 => "",
            1 => "A",
            2 => "B",
            _ => "C",
        };
        let tier = if self.high_tier { 'H' } else { 'L' };
        // Annex E writes the flags in reverse bit order: flag 0 becomes the lowest bit.
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.profile_idc,
            self.profile_compatibility.reverse_bits(),
            self.level_idc
        );
        let bytes = self.constraint_flags.to_be_bytes();
        let constraint = &bytes[2..];
        let used = constraint
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for b in &constraint[..used] {
            s.push_str(&format!(".{b:02X}"));
        }
        s
    }

    /// Profile name for logs and stats: `Main`, `Main 10`, ...
    pub fn profile_name(&self) -> &'static str {
        let idc = if self.profile_idc == 0 {
            // Bit 31 is compatibility flag 0, so the lowest set flag is the leading one.
            match self.profile_compatibility.leading_zeros() {
                32 => 0,
                // At most 31.
                j => j as u8,
            }
        } else {
            self.profile_idc
        };
        match idc {
            1 => "Main",
            2 => "Main 10",
            3 => "Main Still Picture",
            4 => "Rext",
            5 => "High Throughput",
            9 => "Screen Content",
            _ => "Unknown",
        }
    }

    /// Appends VPS, SPS and PPS as Annex-B NAL units (4-byte start codes).
    pub fn write_parameter_sets_annexb(&self, out: &mut Vec<u8>) {
        for set in self.vps.iter().chain(&self.sps).chain(&self.pps) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(set);
        }
    }
}

/// Appends `[u16 length][set]` after checking the set's NAL unit type.
fn push_parameter_set(out: &mut Vec<u8>, set: &[u8], nal_type: u8) -> Result<(), MediaError> {
    crate::avc::push_length_prefixed(out, set, nal_unit_type(set), nal_type, WHAT_RECORD)
}

/// Whether a length-prefixed HEVC access unit holds an IRAP picture.
///
/// NAL units after a bad length are not looked at; the ones before it still count.
pub fn contains_irap(payload: &[u8], nal_length_size: u8) -> bool {
    avcc_nal_units(payload, nal_length_size)
        .map_while(Result::ok)
        .any(|nal| is_irap(nal_unit_type(nal)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;

    /// ffmpeg 9 + x265 ultrafast, 1280x720 30 fps Main@L3.1 (plus an SEI array).
    const MAIN_720P: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-main.hvcc");
    /// x265 medium with 16x16 minimum CUs: coded 1920x1088, cropped to 1080 by the window.
    const MAIN_1080P: &[u8] = include_bytes!("../../../testdata/hevc-1920x1080-main.hvcc");
    const MAIN10_360P: &[u8] = include_bytes!("../../../testdata/hevc-640x360-main10.hvcc");
    /// 4:2:2 10-bit at an odd size: the window is in 2x1 chroma units.
    const REXT422_358P: &[u8] = include_bytes!("../../../testdata/hevc-638x358-rext422.hvcc");
    const IDR_FRAME: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-idr.hvcc-frame");

    fn parse(record: &'static [u8]) -> HevcConfig {
        HevcConfig::parse(Bytes::from_static(record)).unwrap()
    }

    #[test]
    fn parses_x265_720p_record() {
        let c = parse(MAIN_720P);
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
        assert_eq!(nal_unit_type(&c.vps[0]), NAL_VPS);
        assert_eq!(nal_unit_type(&c.sps[0]), NAL_SPS);
        assert_eq!(nal_unit_type(&c.pps[0]), NAL_PPS);
        assert_eq!(c.profile_space, 0);
        assert!(!c.high_tier);
        assert_eq!(c.profile_idc, 1);
        assert_eq!(c.profile_compatibility, 0x6000_0000);
        assert_eq!(c.constraint_flags, 0x9000_0000_0000);
        assert_eq!(c.level_idc, 93);
        assert_eq!(c.chroma_format_idc, 1);
        assert_eq!((c.bit_depth_luma, c.bit_depth_chroma), (8, 8));
        assert_eq!(c.fps, Some(30.0));
        assert_eq!(c.profile_name(), "Main");
        // ffmpeg 9's HLS muxer writes CODECS="hvc1.1.6.L93.90" for this stream: x265 4.3 sets
        // progressive_source and frame_only (0x90), not non_packed as older x265 did (0xB0).
        assert_eq!(c.codec_string(), "hvc1.1.6.L93.90");
    }

    #[test]
    fn parses_1080p_record_with_conformance_window() {
        let c = parse(MAIN_1080P);
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!((c.profile_idc, c.level_idc), (1, 120));
        assert_eq!(c.fps, Some(25.0));
        assert_eq!(c.codec_string(), "hvc1.1.6.L120.90");
    }

    #[test]
    fn parses_main10_record() {
        let c = parse(MAIN10_360P);
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!((c.bit_depth_luma, c.bit_depth_chroma), (10, 10));
        assert_eq!(c.chroma_format_idc, 1);
        assert_eq!(c.profile_idc, 2);
        assert_eq!(c.profile_name(), "Main 10");
        assert_eq!(c.fps, Some(24.0));
        assert_eq!(c.codec_string(), "hvc1.2.4.L63.90");
    }

    #[test]
    fn parses_rext_422_record_with_odd_size() {
        let c = parse(REXT422_358P);
        assert_eq!((c.width, c.height), (638, 358));
        assert_eq!(c.chroma_format_idc, 2);
        assert_eq!((c.bit_depth_luma, c.bit_depth_chroma), (10, 10));
        assert_eq!(c.profile_name(), "Rext");
        assert_eq!(c.constraint_flags, 0x9d08_0000_0000);
        // Annex E keeps every constraint byte up to the last non-zero one, as Media3 does;
        // ffmpeg 9's HLS muxer writes only the first ("hvc1.4.10.L63.9d").
        assert_eq!(c.codec_string(), "hvc1.4.10.L63.9D.08");
    }

    fn config_with(
        profile_space: u8,
        high_tier: bool,
        profile_idc: u8,
        compat: u32,
        constraint: u64,
        level: u8,
    ) -> HevcConfig {
        let mut c = parse(MAIN_720P);
        c.profile_space = profile_space;
        c.high_tier = high_tier;
        c.profile_idc = profile_idc;
        c.profile_compatibility = compat;
        c.constraint_flags = constraint;
        c.level_idc = level;
        c
    }

    #[test]
    fn codec_string_follows_annex_e() {
        // Apple's HLS authoring spec example for Main 10 High tier... on the Main tier.
        let c = config_with(0, false, 2, 0x2000_0000, 0xb000_0000_0000, 123);
        assert_eq!(c.codec_string(), "hvc1.2.4.L123.B0");
        // 14496-15 E.3 example: profile space 1, High tier, inner zero bytes kept.
        let c = config_with(1, true, 4, 0x8200_0000, 0xb000_0000_0023, 120);
        assert_eq!(c.codec_string(), "hvc1.A4.41.H120.B0.00.00.00.00.23");
        let c = config_with(3, false, 1, 0, 0, 0);
        assert_eq!(c.codec_string(), "hvc1.C1.0.L0");
    }

    #[test]
    fn profile_name_falls_back_to_compatibility_flags() {
        assert_eq!(
            config_with(0, false, 0, 0x2000_0000, 0, 0).profile_name(),
            "Main 10"
        );
        assert_eq!(
            config_with(0, false, 0, 0x6000_0000, 0, 0).profile_name(),
            "Main"
        );
        assert_eq!(config_with(0, false, 0, 0, 0, 0).profile_name(), "Unknown");
        assert_eq!(
            config_with(0, false, 3, 0, 0, 0).profile_name(),
            "Main Still Picture"
        );
        assert_eq!(
            config_with(0, false, 5, 0, 0, 0).profile_name(),
            "High Throughput"
        );
        assert_eq!(
            config_with(0, false, 9, 0, 0, 0).profile_name(),
            "Screen Content"
        );
        assert_eq!(config_with(0, false, 7, 0, 0, 0).profile_name(), "Unknown");
    }

    #[test]
    fn from_parameter_sets_round_trips() {
        for record in [MAIN_720P, MAIN_1080P, MAIN10_360P, REXT422_358P] {
            let a = parse(record);
            let b = HevcConfig::from_parameter_sets(a.vps.clone(), a.sps.clone(), a.pps.clone())
                .unwrap();
            assert_eq!((b.width, b.height), (a.width, a.height));
            assert_eq!(b.profile_idc, a.profile_idc);
            assert_eq!(b.level_idc, a.level_idc);
            assert_eq!(b.codec_string(), a.codec_string());
            assert_eq!(b.profile_name(), a.profile_name());
            assert_eq!(b.fps, a.fps);
            assert_eq!(b.chroma_format_idc, a.chroma_format_idc);
            assert_eq!(b.bit_depth_luma, a.bit_depth_luma);
            assert_eq!((&b.vps, &b.sps, &b.pps), (&a.vps, &a.sps, &a.pps));
            assert_eq!(b.nal_length_size, 4);
            // The header ffmpeg writes and the one built here agree except for the fields
            // ffmpeg derives from the whole stream (min_spatial_segmentation, parallelism).
            assert_eq!(b.record[..13], a.record[..13]);
            assert_eq!(b.record[15..19], a.record[15..19]);
            assert_eq!(b.record[21] & 0x3f, a.record[21] & 0x3f);
            assert_eq!(b.record[22], 3);
            let again = HevcConfig::parse(b.record.clone()).unwrap();
            assert_eq!(again, b);
        }
    }

    #[test]
    fn from_parameter_sets_needs_each_kind_of_the_right_type() {
        let a = parse(MAIN_720P);
        let none = |v: &[Bytes], s: &[Bytes], p: &[Bytes]| {
            HevcConfig::from_parameter_sets(v.to_vec(), s.to_vec(), p.to_vec())
        };
        assert!(matches!(
            none(&[], &a.sps, &a.pps),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            none(&a.vps, &[], &a.pps),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            none(&a.vps, &a.sps, &[]),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            none(&a.pps, &a.sps, &a.pps),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            none(&a.vps, &a.pps, &a.pps),
            Err(MediaError::Invalid { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_record_is_an_error() {
        for record in [MAIN_720P, MAIN_1080P, MAIN10_360P, REXT422_358P] {
            for len in 0..record.len() {
                let r = HevcConfig::parse(Bytes::copy_from_slice(&record[..len]));
                assert!(r.is_err(), "prefix of {len} bytes parsed");
            }
        }
    }

    /// xorshift64: deterministic noise without a dependency.
    fn noise(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn corrupted_records_and_garbage_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for record in [MAIN_720P, MAIN_1080P, MAIN10_360P, REXT422_358P] {
            // Every bit of the header and the parameter sets (the SEI text after is inert).
            for bit in 0..8 * 160 {
                let mut r = record.to_vec();
                r[bit / 8] ^= 0x80 >> (bit % 8);
                let _ = HevcConfig::parse(Bytes::from(r));
            }
            for _ in 0..2000 {
                let mut r = record.to_vec();
                for _ in 0..1 + noise(&mut state) % 4 {
                    let i = (noise(&mut state) % 160) as usize;
                    r[i] = noise(&mut state) as u8;
                }
                let _ = HevcConfig::parse(Bytes::from(r));
            }
        }
        for _ in 0..2000 {
            let len = (noise(&mut state) % 300) as usize;
            let mut r: Vec<u8> = (0..len).map(|_| noise(&mut state) as u8).collect();
            if let Some(b) = r.first_mut() {
                *b = 1;
            }
            let _ = contains_irap(&r, 4);
            let _ = HevcConfig::parse(Bytes::from(r));
        }
    }

    fn header_only(num_arrays: u8, length_size_minus1: u8) -> Vec<u8> {
        let mut r = MAIN_720P[..RECORD_HEADER_LEN].to_vec();
        r[21] = (r[21] & 0xfc) | length_size_minus1;
        r[22] = num_arrays;
        r
    }

    #[test]
    fn rejects_bad_records_with_a_reason() {
        let err = |r: Vec<u8>| HevcConfig::parse(Bytes::from(r)).unwrap_err();
        let mut v0 = MAIN_720P.to_vec();
        v0[0] = 0;
        assert!(matches!(err(v0), MediaError::Invalid { .. }));
        let annexb = [&[0u8, 0, 0, 1][..], &MAIN_720P[..40]].concat();
        match err(annexb) {
            MediaError::Invalid { reason, .. } => assert!(reason.contains("Annex-B"), "{reason}"),
            e => panic!("{e:?}"),
        }
        let mut three = MAIN_720P.to_vec();
        three[21] = (three[21] & 0xfc) | 2;
        assert!(matches!(err(three), MediaError::Invalid { .. }));
        assert_eq!(
            err(header_only(0, 3)),
            MediaError::Invalid {
                what: WHAT_RECORD,
                reason: "no SPS".into()
            }
        );
        // One SPS array claiming a 65535-byte NAL unit.
        let mut lying = header_only(1, 3);
        lying.extend_from_slice(&[0xa1, 0, 1, 0xff, 0xff, 0x42, 0x01]);
        assert!(matches!(err(lying), MediaError::Truncated { .. }));
        // 65535 NAL units announced, none there.
        let mut many = header_only(1, 3);
        many.extend_from_slice(&[0xa1, 0xff, 0xff]);
        assert!(matches!(err(many), MediaError::Truncated { .. }));
        // A PPS in the SPS array.
        let c = parse(MAIN_720P);
        let mut wrong = header_only(1, 3);
        wrong.extend_from_slice(&[0xa1, 0, 1]);
        wrong.extend_from_slice(&(c.pps[0].len() as u16).to_be_bytes());
        wrong.extend_from_slice(&c.pps[0]);
        assert!(matches!(err(wrong), MediaError::Invalid { .. }));
        // An SPS shorter than its fixed fields.
        let mut short = header_only(1, 3);
        short.extend_from_slice(&[0xa1, 0, 1, 0, 3, 0x42, 0x01, 0x01]);
        assert!(matches!(err(short), MediaError::Truncated { .. }));
    }

    #[test]
    fn record_without_vps_and_pps_still_parses() {
        let c = parse(MAIN_720P);
        let mut r = header_only(1, 3);
        r.extend_from_slice(&[0xa1, 0, 1]);
        r.extend_from_slice(&(c.sps[0].len() as u16).to_be_bytes());
        r.extend_from_slice(&c.sps[0]);
        let d = HevcConfig::parse(Bytes::from(r)).unwrap();
        assert_eq!((d.width, d.height, d.fps), (1280, 720, Some(30.0)));
        assert!(d.vps.is_empty() && d.pps.is_empty());
    }

    /// Knobs of [`build_sps`].
    #[derive(Clone)]
    struct SpsParams {
        max_sub_layers_minus1: u32,
        chroma_format_idc: u32,
        coded: (u32, u32),
        /// Conformance window offsets: left, right, top, bottom.
        window: Option<[u32; 4]>,
        bit_depth_minus8: u32,
        /// Everything optional before the VUI: scaling lists, PCM, inter-predicted short-term
        /// reference picture sets, long-term pictures.
        rich: bool,
        /// num_short_term_ref_pic_sets when not `rich`.
        num_st_rps: u32,
        /// VUI timing (num_units_in_tick, time_scale); `None` for no VUI at all.
        timing: Option<(u32, u32)>,
    }

    impl Default for SpsParams {
        fn default() -> Self {
            SpsParams {
                max_sub_layers_minus1: 0,
                chroma_format_idc: 1,
                coded: (1280, 720),
                window: None,
                bit_depth_minus8: 0,
                rich: false,
                num_st_rps: 0,
                timing: Some((1, 30)),
            }
        }
    }

    struct Writer(BitWriter);

    impl Writer {
        fn u(&mut self, n: u32, v: u32) {
            self.0.write_bits(v, n);
        }
        fn flag(&mut self, b: bool) {
            self.0.write_bit(b);
        }
        fn ue(&mut self, v: u32) {
            let v = u64::from(v) + 1;
            let len = 64 - v.leading_zeros();
            self.0.write_bits(0, len - 1);
            for i in (0..len).rev() {
                self.0.write_bit((v >> i) & 1 == 1);
            }
        }
        fn se(&mut self, v: i32) {
            self.ue(if v > 0 {
                2 * v as u32 - 1
            } else {
                2 * v.unsigned_abs()
            });
        }
        /// rbsp_trailing_bits, 2-byte header for `nal_type`, emulation prevention.
        fn finish_nal(mut self, nal_type: u8) -> Vec<u8> {
            self.flag(true);
            while !self.0.bit_len().is_multiple_of(8) {
                self.flag(false);
            }
            let mut nal = vec![nal_type << 1, 1];
            let mut zeros = 0;
            for b in self.0.finish() {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    /// profile_tier_level(1, n) of Main@L4 with sub-layer 0 carrying profile and level and
    /// sub-layer 1 only a level.
    fn write_ptl(w: &mut Writer, max_sub_layers_minus1: u32) {
        w.u(8, 0x01); // space 0, Main tier, Main
        w.u(32, 0x6000_0000);
        w.u(16, 0x9000);
        w.u(32, 0);
        w.u(8, 120);
        let n = max_sub_layers_minus1;
        for i in 0..n {
            w.flag(i == 0);
            w.flag(true);
        }
        if n > 0 {
            w.u(2 * (8 - n), 0);
        }
        for i in 0..n {
            if i == 0 {
                w.u(8, 0x01);
                w.u(32, 0x6000_0000);
                w.u(32, 0x9000_0000);
                w.u(16, 0);
            }
            w.u(8, 90);
        }
    }

    fn build_sps(p: &SpsParams) -> Vec<u8> {
        let mut w = Writer(BitWriter::new());
        w.u(4, 0); // sps_video_parameter_set_id
        w.u(3, p.max_sub_layers_minus1);
        w.flag(true); // sps_temporal_id_nesting_flag
        write_ptl(&mut w, p.max_sub_layers_minus1);
        w.ue(0); // sps_seq_parameter_set_id
        w.ue(p.chroma_format_idc);
        if p.chroma_format_idc == 3 {
            w.flag(false);
        }
        w.ue(p.coded.0);
        w.ue(p.coded.1);
        w.flag(p.window.is_some());
        for o in p
            .window
            .unwrap_or_default()
            .into_iter()
            .take(4 * usize::from(p.window.is_some()))
        {
            w.ue(o);
        }
        w.ue(p.bit_depth_minus8);
        w.ue(p.bit_depth_minus8);
        w.ue(4); // log2_max_pic_order_cnt_lsb_minus4: 8-bit POC LSBs
        w.flag(true); // sps_sub_layer_ordering_info_present_flag
        for _ in 0..=p.max_sub_layers_minus1 {
            w.ue(4);
            w.ue(2);
            w.ue(0);
        }
        w.ue(0); // log2_min_luma_coding_block_size_minus3
        w.ue(3); // log2_diff_max_min_luma_coding_block_size
        w.ue(0); // log2_min_luma_transform_block_size_minus2
        w.ue(3); // log2_diff_max_min_luma_transform_block_size
        w.ue(1); // max_transform_hierarchy_depth_inter
        w.ue(1); // max_transform_hierarchy_depth_intra
        w.flag(p.rich); // scaling_list_enabled_flag
        if p.rich {
            w.flag(true); // sps_scaling_list_data_present_flag
            for size_id in 0..4u32 {
                let step = if size_id == 3 { 3 } else { 1 };
                for matrix_id in (0..6u32).step_by(step) {
                    // Explicit lists for matrix 0 (and 1 of the 4x4s), predicted otherwise.
                    let explicit = matrix_id == 0 || (size_id == 0 && matrix_id == 1);
                    w.flag(explicit);
                    if !explicit {
                        w.ue(if size_id == 3 { 1 } else { matrix_id.min(1) });
                        continue;
                    }
                    if size_id > 1 {
                        w.se(8); // scaling_list_dc_coef_minus8: DC 16
                    }
                    for i in 0..64.min(1 << (4 + 2 * size_id)) {
                        w.se(if i % 2 == 0 { 3 } else { -2 });
                    }
                }
            }
        }
        w.flag(p.rich); // amp_enabled_flag
        w.flag(true); // sample_adaptive_offset_enabled_flag
        w.flag(p.rich); // pcm_enabled_flag
        if p.rich {
            w.u(4, 7);
            w.u(4, 7);
            w.ue(0);
            w.ue(1);
            w.flag(true);
        }
        if p.rich {
            w.ue(4); // num_short_term_ref_pic_sets
            // Set 0, explicit: S0 = [-1, -3], S1 = [2].
            w.ue(2);
            w.ue(1);
            w.ue(0);
            w.flag(true);
            w.ue(1);
            w.flag(true);
            w.ue(1);
            w.flag(true);
            // Set 1 from set 0, deltaRps -1: S0 = [-1, -2, -4], S1 = [].
            w.flag(true); // inter_ref_pic_set_prediction_flag
            w.flag(true); // delta_rps_sign
            w.ue(0); // abs_delta_rps_minus1
            for (used, use_delta) in [(true, true), (false, true), (false, false), (true, true)] {
                w.flag(used);
                if !used {
                    w.flag(use_delta);
                }
            }
            // Set 2 from set 1, deltaRps +2: S0 = [-2], S1 = [1, 2] (the 0 is dropped).
            w.flag(true);
            w.flag(false);
            w.ue(1);
            for (used, use_delta) in [(true, true), (false, false), (true, true), (true, true)] {
                w.flag(used);
                if !used {
                    w.flag(use_delta);
                }
            }
            // Set 3 from set 2, deltaRps -1: S0 = [-1, -3], S1 = [1]; four flag pairs, so
            // a wrong size of set 2 shifts everything after.
            w.flag(true);
            w.flag(true);
            w.ue(0);
            for (used, use_delta) in [(true, true), (false, false), (false, true), (true, true)] {
                w.flag(used);
                if !used {
                    w.flag(use_delta);
                }
            }
            w.flag(true); // long_term_ref_pics_present_flag
            w.ue(2);
            w.u(8, 0xa5);
            w.flag(true);
            w.u(8, 0x5a);
            w.flag(false);
        } else {
            w.ue(p.num_st_rps);
            for _ in 0..p.num_st_rps.min(64) {
                w.ue(1);
                w.ue(0);
                w.ue(0);
                w.flag(true);
            }
            w.flag(false);
        }
        w.flag(true); // sps_temporal_mvp_enabled_flag
        w.flag(true); // strong_intra_smoothing_enabled_flag
        w.flag(p.timing.is_some()); // vui_parameters_present_flag
        if let Some((num_units_in_tick, time_scale)) = p.timing {
            w.flag(true);
            w.u(8, 255); // EXTENDED_SAR
            w.u(16, 4);
            w.u(16, 3);
            w.flag(true);
            w.flag(false); // overscan_appropriate_flag
            w.flag(true);
            w.u(3, 5);
            w.flag(false);
            w.flag(true); // colour_description_present_flag
            w.u(8, 1);
            w.u(8, 1);
            w.u(8, 1);
            w.flag(true); // chroma_loc_info_present_flag
            w.ue(0);
            w.ue(0);
            w.u(3, 0);
            w.flag(true); // default_display_window_flag
            for _ in 0..4 {
                w.ue(0);
            }
            w.flag(true); // vui_timing_info_present_flag
            w.u(32, num_units_in_tick);
            w.u(32, time_scale);
            w.flag(false);
            w.flag(false);
            w.flag(false);
        }
        w.flag(false); // sps_extension_present_flag
        w.finish_nal(NAL_SPS)
    }

    /// A VPS with one layer and, optionally, timing info.
    fn build_vps(timing: Option<(u32, u32)>) -> Vec<u8> {
        let mut w = Writer(BitWriter::new());
        w.u(4, 0);
        w.flag(true);
        w.flag(true);
        w.u(6, 0);
        w.u(3, 2); // vps_max_sub_layers_minus1
        w.flag(true);
        w.u(16, 0xffff);
        write_ptl(&mut w, 2);
        w.flag(true);
        for _ in 0..3 {
            w.ue(4);
            w.ue(2);
            w.ue(0);
        }
        w.u(6, 0); // vps_max_layer_id
        w.ue(1); // vps_num_layer_sets_minus1
        w.flag(true);
        w.flag(timing.is_some());
        if let Some((num_units_in_tick, time_scale)) = timing {
            w.u(32, num_units_in_tick);
            w.u(32, time_scale);
            w.flag(false); // vps_poc_proportional_to_timing_flag
            w.ue(0); // vps_num_hrd_parameters
        }
        w.flag(false); // vps_extension_flag
        w.finish_nal(NAL_VPS)
    }

    fn from_sets(vps: Vec<u8>, sps: Vec<u8>) -> Result<HevcConfig, MediaError> {
        let pps = parse(MAIN_720P).pps;
        HevcConfig::from_parameter_sets(vec![Bytes::from(vps)], vec![Bytes::from(sps)], pps)
    }

    #[test]
    fn synthetic_sps_with_every_optional_part_reaches_the_vui() {
        let p = SpsParams {
            max_sub_layers_minus1: 2,
            coded: (1920, 1088),
            window: Some([0, 0, 0, 4]),
            rich: true,
            timing: Some((1001, 60_000)),
            ..SpsParams::default()
        };
        let c = from_sets(build_vps(None), build_sps(&p)).unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!(c.fps, Some(60_000.0 / 1001.0));
        assert_eq!(c.codec_string(), "hvc1.1.6.L120.90");
        // Numbers of temporal layers and nesting go into the built record.
        assert_eq!(c.record[21], (3 << 3) | (1 << 2) | 3);
    }

    #[test]
    fn corrupted_synthetic_parameter_sets_never_panic() {
        let p = SpsParams {
            max_sub_layers_minus1: 2,
            rich: true,
            ..SpsParams::default()
        };
        let sps = build_sps(&p);
        let vps = build_vps(Some((1, 25)));
        for bit in 16..8 * sps.len() {
            let mut s = sps.clone();
            s[bit / 8] ^= 0x80 >> (bit % 8);
            let _ = from_sets(vps.clone(), s);
        }
        for bit in 16..8 * vps.len() {
            let mut v = vps.clone();
            v[bit / 8] ^= 0x80 >> (bit % 8);
            let _ = from_sets(v, sps.clone());
        }
    }

    #[test]
    fn sps_window_units_follow_the_chroma_format() {
        for (chroma, expect) in [
            (0, (1276, 716)),
            (1, (1272, 712)),
            (2, (1272, 716)),
            (3, (1276, 716)),
        ] {
            let p = SpsParams {
                chroma_format_idc: chroma,
                window: Some([1, 3, 2, 2]),
                ..SpsParams::default()
            };
            let c = from_sets(build_vps(None), build_sps(&p)).unwrap();
            assert_eq!((c.width, c.height), expect, "chroma_format_idc {chroma}");
            assert_eq!(c.chroma_format_idc as u32, chroma);
        }
    }

    #[test]
    fn frame_rate_falls_back_to_the_vps_and_stays_optional() {
        let no_vui = SpsParams {
            timing: None,
            ..SpsParams::default()
        };
        let c = from_sets(build_vps(Some((1, 50))), build_sps(&no_vui)).unwrap();
        assert_eq!(c.fps, Some(50.0));
        let c = from_sets(build_vps(None), build_sps(&no_vui)).unwrap();
        assert_eq!(c.fps, None);
        // The SPS wins over the VPS.
        let c = from_sets(build_vps(Some((1, 50))), build_sps(&SpsParams::default())).unwrap();
        assert_eq!(c.fps, Some(30.0));
        // Zero timing values mean nothing.
        let zero = SpsParams {
            timing: Some((0, 30)),
            ..SpsParams::default()
        };
        assert_eq!(
            from_sets(build_vps(None), build_sps(&zero)).unwrap().fps,
            None
        );
    }

    #[test]
    fn unparseable_sps_tail_loses_only_the_frame_rate() {
        // 65 short-term sets is one more than H.265 allows.
        let p = SpsParams {
            num_st_rps: 65,
            ..SpsParams::default()
        };
        let c = from_sets(build_vps(None), build_sps(&p)).unwrap();
        assert_eq!((c.width, c.height, c.fps), (1280, 720, None));
        // Cut soon after the bit depths (bit 151 of the RBSP, plus escapes), or in the VUI.
        let full = build_sps(&SpsParams::default());
        for len in [26, full.len() - 6] {
            let c = from_sets(build_vps(None), full[..len].to_vec()).unwrap();
            assert_eq!((c.width, c.height, c.fps), (1280, 720, None), "{len} bytes");
        }
    }

    #[test]
    fn absurd_sps_values_are_invalid() {
        for p in [
            SpsParams {
                coded: (0, 720),
                ..SpsParams::default()
            },
            SpsParams {
                coded: (1280, 100_000),
                ..SpsParams::default()
            },
            SpsParams {
                chroma_format_idc: 4,
                ..SpsParams::default()
            },
            SpsParams {
                bit_depth_minus8: 9,
                ..SpsParams::default()
            },
            SpsParams {
                window: Some([320, 320, 0, 0]),
                ..SpsParams::default()
            },
            SpsParams {
                max_sub_layers_minus1: 7,
                ..SpsParams::default()
            },
        ] {
            let r = from_sets(build_vps(None), build_sps(&p));
            assert!(matches!(r, Err(MediaError::Invalid { .. })), "{r:?}");
        }
        // 33 leading zero bits: an Exp-Golomb code no field can hold.
        let mut w = Writer(BitWriter::new());
        w.u(8, 0x01);
        write_ptl(&mut w, 0);
        w.u(32, 0);
        w.u(8, 0);
        let r = from_sets(build_vps(None), w.finish_nal(NAL_SPS));
        assert!(matches!(r, Err(MediaError::Invalid { .. })), "{r:?}");
        // Layered SPS.
        let mut sps = build_sps(&SpsParams::default());
        sps[1] = 0x09; // nuh_layer_id 1
        let r = from_sets(build_vps(None), sps);
        assert!(matches!(r, Err(MediaError::Unsupported { .. })), "{r:?}");
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            rbsp_of(&[0x42, 0x01, 0, 0, 3, 1, 0, 0, 3]),
            vec![0, 0, 1, 0, 0]
        );
        assert_eq!(
            rbsp_of(&[0x42, 0x01, 0, 0, 0, 3, 0, 3]),
            vec![0, 0, 0, 0, 3]
        );
        assert_eq!(rbsp_of(&[0x42]), Vec::<u8>::new());
        // The writer's own escaping round-trips through the parser (a VPS full of zeros).
        assert!(build_vps(None).windows(3).any(|w| w == [0, 0, 3]));
    }

    #[test]
    fn writes_parameter_sets_as_annexb() {
        let c = parse(MAIN_720P);
        let mut out = vec![0xaa];
        c.write_parameter_sets_annexb(&mut out);
        let expected = [
            &[0xaa][..],
            &[0, 0, 0, 1],
            &c.vps[0],
            &[0, 0, 0, 1],
            &c.sps[0],
            &[0, 0, 0, 1],
            &c.pps[0],
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn finds_irap_pictures() {
        assert!(contains_irap(IDR_FRAME, 4));
        assert_eq!(nal_unit_type(&IDR_FRAME[4..]), 20); // IDR_N_LP
        // TRAIL_R and a prefix SEI: no random access point.
        let trail = [0, 0, 0, 3, 0x02, 0x01, 0xaa, 0, 0, 0, 3, 0x4e, 0x01, 0x05];
        assert!(!contains_irap(&trail, 4));
        // CRA after a 2-byte length, behind an AUD.
        let cra = [0, 3, 0x46, 0x01, 0x50, 0, 3, 0x2a, 0x01, 0xaf];
        assert!(contains_irap(&cra, 2));
        // A lying length hides what follows but does not panic.
        assert!(!contains_irap(&[0xff, 0xff, 0xff, 0xff, 0x28, 0x01], 4));
        assert!(!contains_irap(&IDR_FRAME[..3], 4));
        assert!(!contains_irap(IDR_FRAME, 3));
        assert!(!contains_irap(&[], 4));
    }

    #[test]
    fn nal_header_helpers() {
        assert_eq!(nal_unit_type(&[0x40, 0x01]), NAL_VPS);
        assert_eq!(nal_unit_type(&[0x42, 0x01]), NAL_SPS);
        assert_eq!(nal_unit_type(&[0x44, 0x01]), NAL_PPS);
        assert_eq!(nal_unit_type(&[0x46, 0x01]), NAL_AUD);
        assert_eq!(nal_unit_type(&[0x4e, 0x01]), NAL_SEI_PREFIX);
        assert_eq!(nal_unit_type(&[]), 0);
        assert!(is_irap(16) && is_irap(19) && is_irap(21) && is_irap(23));
        assert!(!is_irap(15) && !is_irap(24) && !is_irap(1));
        assert_eq!(nuh_layer_id(&[0x43, 0x09]), 33);
        assert_eq!(nuh_layer_id(&[0x42, 0x01]), 0);
        assert_eq!(nuh_layer_id(&[0x43]), 0);
    }
}
