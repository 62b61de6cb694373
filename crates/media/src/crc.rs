//! CRC-32 with the polynomial 0x04C11DB7, most significant bit first and no final xor: the one
//! MPEG-TS sections (13818-1 Annex A, initial value all ones) and Ogg pages (RFC 3533, initial
//! value zero) both use.

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// The CRC of `data` from initial value `init`.
pub fn crc32_msb(init: u32, data: &[u8]) -> u32 {
    data.iter().fold(init, |crc, &b| {
        (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_check_values() {
        // CRC-32/MPEG-2 and, with init 0, CRC-32/POSIX before its final xor.
        assert_eq!(crc32_msb(0xffff_ffff, b"123456789"), 0x0376_e6e7);
        assert_eq!(crc32_msb(0, b"123456789"), 0x89a1_897f);
    }
}
