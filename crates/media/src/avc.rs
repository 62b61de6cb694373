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
