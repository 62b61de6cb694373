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
