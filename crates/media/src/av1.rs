//! AV1: AV1CodecConfigurationRecord (`av1C`, AV1-ISOBMFF 2.3), the sequence header OBU facts,
//! OBU walking, and the codec string.

use crate::MediaError;
use crate::bits::BitReader;
use bytes::Bytes;
use std::ops::Range;

/// OBU type of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type of a frame header without tile data.
pub const OBU_FRAME_HEADER: u8 = 3;
/// OBU type of a tile group.
pub const OBU_TILE_GROUP: u8 = 4;
/// OBU type of metadata (HDR, timecode, ...).
pub const OBU_METADATA: u8 = 5;
/// OBU type of a frame header followed by its tile group.
pub const OBU_FRAME: u8 = 6;
/// OBU type of a redundant copy of the frame header.
pub const OBU_REDUNDANT_FRAME_HEADER: u8 = 7;
/// OBU type of a tile list (large scale tile decoding only).
pub const OBU_TILE_LIST: u8 = 8;
/// OBU type of padding.
pub const OBU_PADDING: u8 = 15;

const RECORD: &str = "AV1CodecConfigurationRecord";
const SEQ: &str = "AV1 sequence header";
const OBU: &str = "AV1 OBU";

/// `obu_size` and every other `leb128()` value may not exceed this (AV1 4.10.5).
const LEB128_MAX: u64 = (1 << 32) - 1;

/// Parsed AV1 decoder configuration plus the sequence header facts outputs need.
#[derive(Clone, Debug, PartialEq)]
pub struct Av1Config {
    /// The raw AV1CodecConfigurationRecord (`av1C` box body / Enhanced RTMP SequenceStart).
    pub record: Bytes,
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// `seq_level_idx[0]`.
    pub level_idx: u8,
    /// `seq_tier[0]`: the High tier.
    pub high_tier: bool,
    /// Bit depth: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
    /// The sequence header OBU (with its header and size field), if the record carries one.
    pub sequence_header: Option<Bytes>,
    /// `max_frame_width_minus_1 + 1` of the sequence header (0 if the record has none).
    pub width: u32,
    /// `max_frame_height_minus_1 + 1` of the sequence header (0 if the record has none).
    pub height: u32,
}

/// One OBU located in a buffer of low-overhead format OBUs (AV1 5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obu {
    /// `obu_type` (see the `OBU_*` constants).
    pub obu_type: u8,
    /// `temporal_id` and `spatial_id` of the extension header, if the OBU has one.
    pub extension: Option<(u8, u8)>,
    /// `obu_has_size_field`; without it the OBU runs to the end of the buffer.
    pub has_size_field: bool,
    /// The whole OBU (header, size field and payload) within the buffer.
    pub range: Range<usize>,
    /// The payload within the buffer.
    pub payload: Range<usize>,
}

/// Iterator over low-overhead format OBUs; see [`obus`].
#[derive(Clone, Debug)]
pub struct Obus<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

/// Iterates the OBUs of `data` (a temporal unit, configOBUs, an `-f obu` stream); a malformed
/// OBU yields one error, then the end.
pub fn obus(data: &[u8]) -> Obus<'_> {
    obus_from(data, 0)
}

/// Like [`obus`] but starting at `start`, so ranges and error offsets count from `data`'s start.
fn obus_from(data: &[u8], start: usize) -> Obus<'_> {
    Obus {
        data,
        pos: start,
        done: false,
    }
}

impl Iterator for Obus<'_> {
    type Item = Result<Obu, MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        match parse_obu(self.data, self.pos) {
            Ok(obu) => {
                // Progress is guaranteed: every OBU has at least its one header byte.
                self.pos = obu.range.end;
                Some(Ok(obu))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_obu(data: &[u8], start: usize) -> Result<Obu, MediaError> {
    let truncated = |offset| MediaError::Truncated { what: OBU, offset };
    let header = *data.get(start).ok_or(truncated(start))?;
    if header & 0x80 != 0 {
        return Err(MediaError::Invalid {
            what: OBU,
            reason: format!("forbidden bit set at byte {start}"),
        });
    }
    let obu_type = (header >> 3) & 0x0f;
    let has_size_field = header & 0x02 != 0;
    let mut pos = start + 1;
    let extension = if header & 0x04 != 0 {
        let ext = *data.get(pos).ok_or(truncated(pos))?;
        pos += 1;
        Some((ext >> 5, (ext >> 3) & 0x03))
    } else {
        None
    };
    let payload = if has_size_field {
        let (size, len) = read_leb128(data, pos, OBU)?;
        pos += len;
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| pos.checked_add(size))
            .filter(|&end| end <= data.len())
            .ok_or(truncated(data.len()))?;
        pos..end
    } else {
        pos..data.len()
    };
    Ok(Obu {
        obu_type,
        extension,
        has_size_field,
        range: start..payload.end,
        payload,
    })
}

/// Reads a `leb128()` (AV1 4.10.5) at `pos`: the value and the number of bytes it took.
pub fn read_leb128(
    data: &[u8],
    pos: usize,
    what: &'static str,
) -> Result<(u64, usize), MediaError> {
    let mut value = 0u64;
    // The spec caps the encoding at 8 bytes, which also keeps the shifts below 64.
    for i in 0..8 {
        let offset = pos.saturating_add(i);
        let byte = *data
            .get(offset)
            .ok_or(MediaError::Truncated { what, offset })?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if value > LEB128_MAX {
                return Err(MediaError::Invalid {
                    what,
                    reason: format!("leb128 value {value} exceeds 2^32 - 1"),
                });
            }
            return Ok((value, i + 1));
        }
    }
    Err(MediaError::Invalid {
        what,
        reason: "leb128 longer than 8 bytes".into(),
    })
}

/// Appends `value` as a minimal `leb128()`.
pub fn write_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        // Masked to 7 bits, so the cast cannot truncate.
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The first sequence header OBU (header, size and payload) of a temporal unit, if any.
pub fn find_sequence_header(access_unit: &[u8]) -> Option<Bytes> {
    obus(access_unit)
        .map_while(Result::ok)
        .find(|obu| obu.obu_type == OBU_SEQUENCE_HEADER)
        .and_then(|obu| access_unit.get(obu.range))
        .map(Bytes::copy_from_slice)
}

/// Whether a temporal unit starts with a shown key frame, i.e. decoding can start there.
///
/// AV1-ISOBMFF sync samples also need a sequence header OBU in the temporal unit; that is not
/// required here because the decoder already has one from the `av1C` record.
pub fn is_key_temporal_unit(tu: &[u8]) -> bool {
    let mut reduced_still_picture_header = false;
    for obu in obus(tu) {
        let Ok(obu) = obu else { return false };
        let first = tu.get(obu.payload.start).copied();
        match obu.obu_type {
            OBU_SEQUENCE_HEADER => {
                // seq_profile(3) still_picture(1) reduced_still_picture_header(1)
                reduced_still_picture_header = first.is_some_and(|b| b & 0x08 != 0);
            }
            OBU_FRAME_HEADER | OBU_FRAME => {
                // A reduced header codes no frame type: every frame is a shown key frame.
                if reduced_still_picture_header {
                    return true;
                }
                // show_existing_frame(1) = 0, frame_type(2) = KEY_FRAME (0), show_frame(1) = 1.
                return first.is_some_and(|b| b & 0xf0 == 0x10);
            }
            _ => {}
        }
    }
    false
}

/// Facts of a sequence header OBU payload (AV1 5.5), for operating point 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile`.
    pub profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `reduced_still_picture_header`.
    pub reduced_still_picture_header: bool,
    /// `seq_level_idx[0]`.
    pub level_idx: u8,
    /// `seq_tier[0]`.
    pub high_tier: bool,
    /// `num_units_in_display_tick` and `time_scale` when timing info is present.
    pub timing: Option<(u32, u32)>,
    /// `max_frame_width_minus_1 + 1`.
    pub width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub height: u32,
    /// `BitDepth`: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `color_primaries`, `transfer_characteristics`, `matrix_coefficients` (2 = unspecified).
    pub color_description: (u8, u8, u8),
    /// `color_range`: full range.
    pub full_range: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
    /// `film_grain_params_present`.
    pub film_grain_params_present: bool,
}

/// The part of a sequence header up to the frame dimensions.
struct SeqTop {
    profile: u8,
    still_picture: bool,
    reduced: bool,
    level_idx: u8,
    high_tier: bool,
    timing: Option<(u32, u32)>,
    width: u32,
    height: u32,
}

/// `f(n)` for n <= 8, narrowed to a byte.
fn read_u8(r: &mut BitReader<'_>, n: u32) -> Result<u8, MediaError> {
    // Callers pass n <= 8, so the value fits.
    Ok(r.read_bits(n.min(8))? as u8)
}

/// `uvlc()` (AV1 4.10.3); only the syntax matters here, so the value is dropped.
fn skip_uvlc(r: &mut BitReader<'_>) -> Result<(), MediaError> {
    let mut leading_zeros = 0u32;
    // Terminates: each iteration consumes a bit and the reader errors at the end of data.
    while !r.read_bit()? {
        leading_zeros += 1;
    }
    // A value of 32 or more leading zeros is defined as 2^32 - 1 with no value bits.
    if leading_zeros < 32 {
        r.read_bits(leading_zeros)?;
    }
    Ok(())
}

fn read_seq_top(r: &mut BitReader<'_>) -> Result<SeqTop, MediaError> {
    let profile = read_u8(r, 3)?;
    let still_picture = r.read_bit()?;
    let reduced = r.read_bit()?;
    let mut timing = None;
    let level_idx;
    let mut high_tier = false;
    if reduced {
        level_idx = read_u8(r, 5)?;
    } else {
        let mut buffer_delay_length = 0;
        let mut decoder_model_info_present = false;
        if r.read_bit()? {
            // timing_info()
            let num_units_in_display_tick = r.read_bits(32)?;
            let time_scale = r.read_bits(32)?;
            if r.read_bit()? {
                skip_uvlc(r)?;
            }
            timing = Some((num_units_in_display_tick, time_scale));
            decoder_model_info_present = r.read_bit()?;
            if decoder_model_info_present {
                // buffer_delay_length_minus_1(5) num_units_in_decoding_tick(32)
                // buffer_removal_time_length_minus_1(5) frame_presentation_time_length_minus_1(5)
                buffer_delay_length = r.read_bits(5)? + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.read_bit()?;
        let operating_points = r.read_bits(5)? + 1;
        let mut first = None;
        for _ in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let level = read_u8(r, 5)?;
            let tier = level > 7 && r.read_bit()?;
            if decoder_model_info_present && r.read_bit()? {
                // decoder_buffer_delay(n) encoder_buffer_delay(n) low_delay_mode_flag(1)
                r.skip(2 * buffer_delay_length as usize + 1)?;
            }
            if initial_display_delay_present && r.read_bit()? {
                r.skip(4)?; // initial_display_delay_minus_1
            }
            first.get_or_insert((level, tier));
        }
        // operating_points >= 1, so the loop ran at least once.
        let (level, tier) = first.unwrap_or_default();
        level_idx = level;
        high_tier = tier;
    }
    let width_bits = r.read_bits(4)? + 1;
    let height_bits = r.read_bits(4)? + 1;
    // At most 16 bits each, so adding one cannot overflow.
    let width = r.read_bits(width_bits)? + 1;
    let height = r.read_bits(height_bits)? + 1;
    Ok(SeqTop {
        profile,
        still_picture,
        reduced,
        level_idx,
        high_tier,
        timing,
        width,
        height,
    })
}

/// Parses a sequence header OBU payload (without OBU header and size) through `color_config`.
pub fn parse_sequence_header(payload: &[u8]) -> Result<SequenceHeader, MediaError> {
    read_sequence_header(&mut BitReader::new(payload, SEQ))
}

fn read_sequence_header(r: &mut BitReader<'_>) -> Result<SequenceHeader, MediaError> {
    let top = read_seq_top(r)?;
    if top.profile > 2 {
        // color_config leaves BitDepth undefined for reserved profiles.
        return Err(MediaError::Unsupported {
            what: SEQ,
            reason: format!("seq_profile {}", top.profile),
        });
    }
    if !top.reduced && r.read_bit()? {
        // frame_id_numbers_present_flag: delta_frame_id_length_minus_2(4)
        // additional_frame_id_length_minus_1(3)
        r.skip(7)?;
    }
    // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    r.skip(3)?;
    if !top.reduced {
        // enable_interintra_compound, enable_masked_compound, enable_warped_motion,
        // enable_dual_filter
        r.skip(4)?;
        let enable_order_hint = r.read_bit()?;
        if enable_order_hint {
            r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        // seq_choose_screen_content_tools selects SELECT_SCREEN_CONTENT_TOOLS (2), which counts
        // as forced on for the integer MV syntax that follows.
        let screen_content_tools = r.read_bit()? || r.read_bit()?;
        if screen_content_tools && !r.read_bit()? {
            r.skip(1)?; // seq_force_integer_mv
        }
        if enable_order_hint {
            r.skip(3)?; // order_hint_bits_minus_1
        }
    }
    // enable_superres, enable_cdef, enable_restoration
    r.skip(3)?;

    // color_config()
    let high_bitdepth = r.read_bit()?;
    let bit_depth = match (top.profile, high_bitdepth) {
        (_, false) => 8,
        (2, true) if r.read_bit()? => 12,
        (_, true) => 10,
    };
    let monochrome = top.profile != 1 && r.read_bit()?;
    let color_description = if r.read_bit()? {
        (read_u8(r, 8)?, read_u8(r, 8)?, read_u8(r, 8)?)
    } else {
        (2, 2, 2)
    };
    let full_range;
    let (mut subsampling_x, mut subsampling_y) = (true, true);
    let mut chroma_sample_position = 0;
    if monochrome {
        full_range = r.read_bit()?;
    } else if color_description == (1, 13, 0) {
        // BT.709 primaries, sRGB transfer, identity matrix: 4:4:4 RGB, no range flag coded.
        full_range = true;
        (subsampling_x, subsampling_y) = (false, false);
    } else {
        full_range = r.read_bit()?;
        match top.profile {
            0 => {}
            1 => (subsampling_x, subsampling_y) = (false, false),
            _ if bit_depth == 12 => {
                subsampling_x = r.read_bit()?;
                subsampling_y = subsampling_x && r.read_bit()?;
            }
            _ => subsampling_y = false,
        }
        if subsampling_x && subsampling_y {
            chroma_sample_position = read_u8(r, 2)?;
        }
    }
    if !monochrome {
        r.skip(1)?; // separate_uv_delta_q
    }
    let film_grain_params_present = r.read_bit()?;
    Ok(SequenceHeader {
        profile: top.profile,
        still_picture: top.still_picture,
        reduced_still_picture_header: top.reduced,
        level_idx: top.level_idx,
        high_tier: top.high_tier,
        timing: top.timing,
        width: top.width,
        height: top.height,
        bit_depth,
        monochrome,
        color_description,
        full_range,
        subsampling_x,
        subsampling_y,
        chroma_sample_position,
        film_grain_params_present,
    })
}

impl Av1Config {
    /// Parses an AV1CodecConfigurationRecord and the sequence header OBU in its configOBUs.
    pub fn parse(record: Bytes) -> Result<Av1Config, MediaError> {
        let Some(&[b0, b1, b2, _]) = record.first_chunk::<4>() else {
            return Err(MediaError::Truncated {
                what: RECORD,
                offset: record.len(),
            });
        };
        if b0 & 0x80 == 0 {
            return Err(MediaError::Invalid {
                what: RECORD,
                reason: "marker bit is 0".into(),
            });
        }
        if b0 & 0x7f != 1 {
            return Err(MediaError::Unsupported {
                what: RECORD,
                reason: format!("version {}", b0 & 0x7f),
            });
        }
        let profile = b1 >> 5;
        let high_bitdepth = b2 & 0x40 != 0;
        let twelve_bit = b2 & 0x20 != 0;
        let bit_depth = match (high_bitdepth, twelve_bit && profile == 2) {
            (false, _) => 8,
            (true, true) => 12,
            (true, false) => 10,
        };
        // The sequence header must come first, but tolerating other OBUs before it costs
        // nothing; anything after it is not needed.
        let mut seq = None;
        for obu in obus_from(&record, 4) {
            let obu = obu?;
            if obu.obu_type == OBU_SEQUENCE_HEADER {
                seq = Some(obu);
                break;
            }
        }
        let (sequence_header, width, height) = match seq {
            Some(obu) => {
                let payload = record.get(obu.payload).unwrap_or_default();
                let top = read_seq_top(&mut BitReader::new(payload, SEQ))?;
                (Some(record.slice(obu.range)), top.width, top.height)
            }
            None => (None, 0, 0),
        };
        Ok(Av1Config {
            profile,
            level_idx: b1 & 0x1f,
            high_tier: b2 & 0x80 != 0,
            bit_depth,
            monochrome: b2 & 0x10 != 0,
            subsampling_x: b2 & 0x08 != 0,
            subsampling_y: b2 & 0x04 != 0,
            chroma_sample_position: b2 & 0x03,
            sequence_header,
            width,
            height,
            record,
        })
    }

    /// Builds the configuration and its record from a sequence header OBU found in-band.
    ///
    /// Bytes after the first OBU are ignored; an OBU without a size field gets one, since
    /// configOBUs must be self-delimiting.
    pub fn from_sequence_header(obu: Bytes) -> Result<Av1Config, MediaError> {
        let first = obus(&obu).next().ok_or(MediaError::Truncated {
            what: OBU,
            offset: 0,
        })??;
        if first.obu_type != OBU_SEQUENCE_HEADER {
            return Err(MediaError::Invalid {
                what: SEQ,
                reason: format!("OBU type {} is not a sequence header", first.obu_type),
            });
        }
        let payload = obu.get(first.payload.clone()).unwrap_or_default();
        let seq = parse_sequence_header(payload)?;
        let mut record = Vec::with_capacity(4 + first.range.len() + 8);
        record.push(0x81); // marker, version 1
        record.push((seq.profile << 5) | seq.level_idx);
        record.push(
            (u8::from(seq.high_tier) << 7)
                | (u8::from(seq.bit_depth > 8) << 6)
                | (u8::from(seq.bit_depth == 12) << 5)
                | (u8::from(seq.monochrome) << 4)
                | (u8::from(seq.subsampling_x) << 3)
                | (u8::from(seq.subsampling_y) << 2)
                | seq.chroma_sample_position,
        );
        // No initial_presentation_delay: it describes a stored file, not a live stream.
        record.push(0);
        if first.has_size_field {
            record.extend_from_slice(obu.get(first.range).unwrap_or_default());
        } else {
            let header = obu.get(..first.payload.start).unwrap_or_default();
            if let Some((&byte, extension)) = header.split_first() {
                record.push(byte | 0x02);
                record.extend_from_slice(extension);
            }
            // The payload length comes from a slice, so it fits in u64.
            write_leb128(&mut record, payload.len() as u64);
            record.extend_from_slice(payload);
        }
        Av1Config::parse(Bytes::from(record))
    }

    /// Codec string per AV1-ISOBMFF Annex A, e.g. `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.profile,
            self.level_idx,
            if self.high_tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVT_640X360: &[u8] = include_bytes!("../../../testdata/av1-640x360-main.av1c");
    const SVT_640X360_KEY: &[u8] = include_bytes!("../../../testdata/av1-640x360-key.obus");
    const SVT_1080P10: &[u8] = include_bytes!("../../../testdata/av1-1920x1080-10bit.av1c");
    const AOM_422P12: &[u8] = include_bytes!("../../../testdata/av1-160x90-422p12.av1c");
    const AOM_MODEL: &[u8] = include_bytes!("../../../testdata/av1-160x90-model.obus");
    const AOM_TIMING: &[u8] = include_bytes!("../../../testdata/av1-160x90-timing.obus");
    const AOM_STILL: &[u8] = include_bytes!("../../../testdata/av1-160x90-still.obus");
    const AOM_GRAY: &[u8] = include_bytes!("../../../testdata/av1-160x90-gray.obus");
    const AOM_444: &[u8] = include_bytes!("../../../testdata/av1-160x90-444.obus");
    const AOM_COLOR: &[u8] = include_bytes!("../../../testdata/av1-160x90-color.obus");

    const RECORDS: [&[u8]; 3] = [SVT_640X360, SVT_1080P10, AOM_422P12];
    const TEMPORAL_UNITS: [&[u8]; 7] = [
        SVT_640X360_KEY,
        AOM_MODEL,
        AOM_TIMING,
        AOM_STILL,
        AOM_GRAY,
        AOM_444,
        AOM_COLOR,
    ];

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

    fn seq_payload(tu: &[u8]) -> &[u8] {
        let obu = obus(tu)
            .map(Result::unwrap)
            .find(|o| o.obu_type == OBU_SEQUENCE_HEADER)
            .unwrap();
        &tu[obu.payload]
    }

    /// Parses and checks that exactly `trailing_bits()` (a one, then zeros) follow the syntax,
    /// which proves every conditional field was consumed.
    fn parse_checking_length(payload: &[u8]) -> SequenceHeader {
        let mut r = BitReader::new(payload, SEQ);
        let seq = read_sequence_header(&mut r).unwrap();
        let rest = r.bits_left();
        assert!((1..=8).contains(&rest), "{rest} bits left");
        assert_eq!(r.read_bits(rest as u32).unwrap(), 1 << (rest - 1));
        seq
    }

    #[test]
    fn svt_640x360_record() {
        let c = Av1Config::parse(Bytes::from_static(SVT_640X360)).unwrap();
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(
            (c.profile, c.level_idx, c.high_tier, c.bit_depth),
            (0, 1, false, 8)
        );
        assert!(!c.monochrome && c.subsampling_x && c.subsampling_y);
        assert_eq!(c.chroma_sample_position, 0);
        assert_eq!(c.codec_string(), "av01.0.01M.08");
        let seq = c.sequence_header.as_ref().unwrap();
        assert_eq!(&seq[..], &SVT_640X360[4..]);
        // Zero copy: the OBU is a view into the record.
        assert_eq!(seq.as_ptr(), c.record[4..].as_ptr());
    }

    #[test]
    fn svt_1080p_10bit_record() {
        let c = Av1Config::parse(Bytes::from_static(SVT_1080P10)).unwrap();
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!(
            (c.profile, c.level_idx, c.high_tier, c.bit_depth),
            (0, 8, false, 10)
        );
        assert_eq!(c.codec_string(), "av01.0.08M.10");
        let seq = parse_checking_length(seq_payload(&SVT_1080P10[4..]));
        assert_eq!(
            (seq.level_idx, seq.high_tier, seq.bit_depth),
            (8, false, 10)
        );
    }

    #[test]
    fn aom_422_12bit_professional_record() {
        let c = Av1Config::parse(Bytes::from_static(AOM_422P12)).unwrap();
        assert_eq!((c.width, c.height), (160, 90));
        assert_eq!((c.profile, c.bit_depth), (2, 12));
        assert!(c.subsampling_x && !c.subsampling_y);
        assert_eq!(c.codec_string(), "av01.2.00M.12");
        let seq = parse_checking_length(seq_payload(&AOM_422P12[4..]));
        assert_eq!(
            (seq.bit_depth, seq.subsampling_x, seq.subsampling_y),
            (12, true, false)
        );
    }

    #[test]
    fn from_sequence_header_rebuilds_ffmpeg_records_exactly() {
        for record in RECORDS {
            let obu = Bytes::copy_from_slice(&record[4..]);
            let rebuilt = Av1Config::from_sequence_header(obu).unwrap();
            assert_eq!(&rebuilt.record[..], record);
            assert_eq!(
                rebuilt,
                Av1Config::parse(Bytes::from_static(record)).unwrap()
            );
        }
    }

    #[test]
    fn key_frame_obus_carry_the_records_dimensions() {
        let kinds: Vec<u8> = obus(SVT_640X360_KEY).map(|o| o.unwrap().obu_type).collect();
        assert_eq!(
            kinds,
            [OBU_TEMPORAL_DELIMITER, OBU_SEQUENCE_HEADER, OBU_FRAME]
        );
        let last = obus(SVT_640X360_KEY).last().unwrap().unwrap();
        assert_eq!(last.range.end, SVT_640X360_KEY.len());
        assert!(is_key_temporal_unit(SVT_640X360_KEY));

        let obu = find_sequence_header(SVT_640X360_KEY).unwrap();
        assert_eq!(&obu[..2], [0x0a, 0x0c]);
        let c = Av1Config::from_sequence_header(obu.clone()).unwrap();
        let from_record = Av1Config::parse(Bytes::from_static(SVT_640X360)).unwrap();
        assert_eq!((c.width, c.height), (from_record.width, from_record.height));
        assert_eq!(c.codec_string(), from_record.codec_string());
        // SVT-AV1's in-band header enables more tools than its extradata one, so only the
        // 4 fixed bytes can match the muxer's record.
        assert_eq!(&c.record[..4], &SVT_640X360[..4]);
        assert_eq!(c.sequence_header, Some(obu));
        assert_eq!(c, Av1Config::parse(c.record.clone()).unwrap());
    }

    #[test]
    fn libaom_sequence_headers_match_ffmpeg_trace_headers() {
        // Expected values from `ffmpeg -bsf:v trace_headers` on each capture.
        let seq = parse_checking_length(seq_payload(AOM_MODEL));
        assert_eq!(seq.timing, Some((1, 30)));
        assert_eq!((seq.width, seq.height, seq.bit_depth), (160, 90, 8));
        let seq = parse_checking_length(seq_payload(AOM_TIMING));
        assert_eq!(seq.timing, Some((1, 30)));
        assert_eq!((seq.width, seq.height), (160, 90));

        let seq = parse_checking_length(seq_payload(AOM_STILL));
        assert!(seq.still_picture && seq.reduced_still_picture_header);
        assert_eq!((seq.width, seq.height, seq.level_idx), (160, 90, 0));

        let seq = parse_checking_length(seq_payload(AOM_GRAY));
        assert!(seq.monochrome && seq.full_range);
        assert!(seq.subsampling_x && seq.subsampling_y);

        let seq = parse_checking_length(seq_payload(AOM_444));
        assert_eq!(seq.profile, 1);
        assert!(!seq.monochrome && !seq.subsampling_x && !seq.subsampling_y);

        let seq = parse_checking_length(seq_payload(AOM_COLOR));
        assert_eq!(seq.color_description, (2, 2, 1));
        assert!(seq.full_range && !seq.film_grain_params_present);
    }

    #[test]
    fn from_sequence_header_over_every_capture() {
        for tu in TEMPORAL_UNITS {
            assert!(is_key_temporal_unit(tu));
            let obu = find_sequence_header(tu).unwrap();
            let seq = parse_sequence_header(seq_payload(tu)).unwrap();
            let c = Av1Config::from_sequence_header(obu).unwrap();
            assert_eq!((c.width, c.height), (seq.width, seq.height));
            assert_eq!((c.profile, c.bit_depth), (seq.profile, seq.bit_depth));
            assert_eq!(c.monochrome, seq.monochrome);
            assert_eq!(c, Av1Config::parse(c.record.clone()).unwrap());
        }
        let gray = Av1Config::from_sequence_header(find_sequence_header(AOM_GRAY).unwrap());
        assert_eq!(gray.unwrap().record[2], 0x1c); // mono, 4:2:0
        let yuv444 = Av1Config::from_sequence_header(find_sequence_header(AOM_444).unwrap());
        assert_eq!(yuv444.unwrap().codec_string(), "av01.1.00M.08");
    }

    #[test]
    fn from_sequence_header_adds_a_missing_size_field() {
        let sized = find_sequence_header(AOM_COLOR).unwrap();
        // Same OBU with obu_has_size_field cleared and the leb128 size removed.
        let mut unsized_obu = vec![sized[0] & !0x02];
        unsized_obu.extend_from_slice(&sized[2..]);
        let c = Av1Config::from_sequence_header(Bytes::from(unsized_obu)).unwrap();
        assert_eq!(c.sequence_header, Some(sized.clone()));
        // Trailing OBUs after the sequence header are dropped.
        let mut followed = sized.to_vec();
        followed.extend_from_slice(&[0x12, 0x00]);
        let d = Av1Config::from_sequence_header(Bytes::from(followed)).unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn from_sequence_header_rejects_other_input() {
        assert!(matches!(
            Av1Config::from_sequence_header(Bytes::new()),
            Err(MediaError::Truncated { .. })
        ));
        assert!(matches!(
            Av1Config::from_sequence_header(Bytes::from_static(&[0x12, 0x00])),
            Err(MediaError::Invalid { .. })
        ));
        // seq_profile 3 is reserved.
        let mut obu = find_sequence_header(AOM_COLOR).unwrap().to_vec();
        obu[2] |= 0x60;
        assert!(matches!(
            Av1Config::from_sequence_header(Bytes::from(obu)),
            Err(MediaError::Unsupported { .. })
        ));
    }

    #[test]
    fn synthetic_high_tier_and_extension_header() {
        // Operating point 0 at level 5.1 (idx 13) High tier, then 160x90 and a 4:2:0 8-bit
        // color config, wrapped in an OBU with an extension header (temporal 1, spatial 2).
        let mut w = crate::bits::BitWriter::new();
        w.write_bits(0, 3); // seq_profile
        w.write_bits(0, 2); // still_picture, reduced_still_picture_header
        w.write_bits(0, 2); // timing_info_present_flag, initial_display_delay_present_flag
        w.write_bits(1, 5); // operating_points_cnt_minus_1: two points
        w.write_bits(0x101, 12);
        w.write_bits(13, 5);
        w.write_bit(true); // seq_tier
        w.write_bits(0x100, 12);
        w.write_bits(4, 5); // level <= 7: no tier bit
        w.write_bits(7, 4);
        w.write_bits(6, 4);
        w.write_bits(159, 8);
        w.write_bits(89, 7);
        w.write_bits(0, 4); // frame ids, 128x128, filter intra, intra edge
        w.write_bits(0, 5); // interintra, masked, warped, dual filter, order hint
        w.write_bits(0b01, 2); // screen content not chosen, forced on
        w.write_bits(0b1, 1); // seq_choose_integer_mv
        w.write_bits(0, 3); // superres, cdef, restoration
        w.write_bits(0, 3); // high_bitdepth, mono_chrome, color_description_present_flag
        w.write_bits(0, 1); // color_range
        w.write_bits(2, 2); // chroma_sample_position: colocated
        w.write_bits(0, 2); // separate_uv_delta_q, film_grain_params_present
        let pad = 8 - (w.bit_len() % 8) as u32;
        w.write_bits(1 << (pad - 1), pad); // trailing_bits()
        let payload = w.finish();
        parse_checking_length(&payload);
        let mut obu = vec![0x0e, (1 << 5) | (2 << 3)];
        write_leb128(&mut obu, payload.len() as u64);
        obu.extend_from_slice(&payload);

        let walked = obus(&obu).next().unwrap().unwrap();
        assert_eq!(walked.extension, Some((1, 2)));
        assert_eq!(walked.payload, 3..obu.len());
        let c = Av1Config::from_sequence_header(Bytes::from(obu)).unwrap();
        assert_eq!(
            (c.level_idx, c.high_tier, c.chroma_sample_position),
            (13, true, 2)
        );
        assert_eq!((c.width, c.height), (160, 90));
        assert_eq!(c.codec_string(), "av01.0.13H.08");
        assert_eq!(&c.record[..4], [0x81, 0x0d, 0x8e, 0x00]);
    }

    #[test]
    fn record_without_config_obus() {
        let c = Av1Config::parse(Bytes::from_static(&SVT_640X360[..4])).unwrap();
        assert_eq!((c.width, c.height, &c.sequence_header), (0, 0, &None));
        assert_eq!(c.codec_string(), "av01.0.01M.08");
        // Only a metadata OBU: still no sequence header.
        let c =
            Av1Config::parse(Bytes::from_static(&[0x81, 0, 0x0c, 0, 0x2a, 0x01, 0x04])).unwrap();
        assert_eq!(c.sequence_header, None);
    }

    #[test]
    fn record_header_errors() {
        let mut bad = SVT_640X360.to_vec();
        bad[0] = 0x01;
        assert!(matches!(
            Av1Config::parse(Bytes::from(bad.clone())),
            Err(MediaError::Invalid { .. })
        ));
        bad[0] = 0x82;
        assert!(matches!(
            Av1Config::parse(Bytes::from(bad.clone())),
            Err(MediaError::Unsupported { .. })
        ));
        // obu_size larger than what follows.
        bad = SVT_640X360.to_vec();
        bad[5] = 0x0d;
        assert_eq!(
            Av1Config::parse(Bytes::from(bad.clone())),
            Err(MediaError::Truncated {
                what: OBU,
                offset: SVT_640X360.len()
            })
        );
        // A 5-byte leb128 of 2^35: over the 2^32 - 1 limit.
        bad.truncate(5);
        bad.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(matches!(
            Av1Config::parse(Bytes::from(bad.clone())),
            Err(MediaError::Invalid { .. })
        ));
        // Forbidden bit.
        bad.truncate(4);
        bad.extend_from_slice(&[0x8a, 0x00]);
        assert!(matches!(
            Av1Config::parse(Bytes::from(bad)),
            Err(MediaError::Invalid { .. })
        ));
    }

    #[test]
    fn leb128_round_trips_and_limits() {
        for value in [0u64, 1, 127, 128, 300, 16_383, 16_384, LEB128_MAX] {
            let mut out = vec![0xff];
            write_leb128(&mut out, value);
            assert_eq!(read_leb128(&out, 1, "t"), Ok((value, out.len() - 1)));
        }
        // Non-minimal encodings are legal.
        assert_eq!(read_leb128(&[0x85, 0x80, 0x00], 0, "t"), Ok((5, 3)));
        assert!(read_leb128(&[0x80; 9], 0, "t").is_err());
        assert_eq!(
            read_leb128(&[0x80, 0x80], 0, "t"),
            Err(MediaError::Truncated {
                what: "t",
                offset: 2
            })
        );
        assert!(read_leb128(&[], usize::MAX, "t").is_err());
    }

    #[test]
    fn obu_walk_errors_once_then_stops() {
        // TD, then a sequence header claiming 12 bytes with 2 present.
        let data = [0x12, 0x00, 0x0a, 0x0c, 0x00, 0x00];
        let mut it = obus(&data);
        assert_eq!(it.next().unwrap().unwrap().obu_type, OBU_TEMPORAL_DELIMITER);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        assert_eq!(find_sequence_header(&data), None);
        // An OBU without a size field runs to the end.
        let data = [0x30, 0x10, 0x00, 0x00];
        let all: Vec<_> = obus(&data).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_ref().unwrap().payload, 1..4);
        assert!(obus(&[]).next().is_none());
        // Extension flag with no extension byte.
        assert!(obus(&[0x14]).next().unwrap().is_err());
    }

    #[test]
    fn key_temporal_unit_detection() {
        // TD + FRAME (show_existing_frame 0, frame_type INTER, show_frame 1).
        assert!(!is_key_temporal_unit(&[0x12, 0x00, 0x32, 0x01, 0x30]));
        // Same with a KEY_FRAME.
        assert!(is_key_temporal_unit(&[0x12, 0x00, 0x32, 0x01, 0x10]));
        // A hidden key frame is not a random access point by itself.
        assert!(!is_key_temporal_unit(&[0x32, 0x01, 0x00]));
        // show_existing_frame.
        assert!(!is_key_temporal_unit(&[0x1a, 0x01, 0x80]));
        // No frame at all, an empty frame, or garbage.
        assert!(!is_key_temporal_unit(&[0x12, 0x00]));
        assert!(!is_key_temporal_unit(&[0x32, 0x00]));
        assert!(!is_key_temporal_unit(&[0xff, 0xff]));
        assert!(!is_key_temporal_unit(&[]));
    }

    #[test]
    fn codec_string_pads_and_marks_tier() {
        let mut c = Av1Config::parse(Bytes::from_static(SVT_1080P10)).unwrap();
        c.level_idx = 19;
        c.high_tier = true;
        assert_eq!(c.codec_string(), "av01.0.19H.10");
    }

    #[test]
    fn every_prefix_is_handled_without_panicking() {
        for record in RECORDS {
            for len in 0..record.len() {
                let result = Av1Config::parse(Bytes::copy_from_slice(&record[..len]));
                match len {
                    0..4 => assert!(matches!(result, Err(MediaError::Truncated { .. }))),
                    4 => assert_eq!(result.unwrap().sequence_header, None),
                    _ => assert!(result.is_err(), "accepted a {len}-byte prefix"),
                }
            }
        }
        for tu in TEMPORAL_UNITS {
            let obu = find_sequence_header(tu).unwrap();
            for len in 0..obu.len() {
                assert!(Av1Config::from_sequence_header(obu.slice(..len)).is_err());
            }
            let payload = seq_payload(tu);
            for len in 0..payload.len() {
                let _ = parse_sequence_header(&payload[..len]);
            }
            for len in 0..tu.len().min(64) {
                let _ = is_key_temporal_unit(&tu[..len]);
                let _ = find_sequence_header(&tu[..len]);
            }
        }
    }

    #[test]
    fn mutated_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let source = RECORDS[rng.below(RECORDS.len())];
            let mut data = source.to_vec();
            for _ in 0..=rng.below(3) {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            let _ = Av1Config::parse(Bytes::from(data.clone()));
            let _ = Av1Config::from_sequence_header(Bytes::copy_from_slice(&data[4..]));
            let _ = is_key_temporal_unit(&data[4..]);
            let _ = obus(&data).count();
        }
    }
}
