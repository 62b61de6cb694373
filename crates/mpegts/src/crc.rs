//! CRC-32/MPEG-2 for PSI sections (13818-1 Annex A).

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, no reflection, no final xor).
///
/// Over a whole section including its CRC field the result is 0, which is how readers check it.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    media::crc::crc32_msb(0xffff_ffff, data)
}
