//! MSB-first bit reader and writer for codec headers (AudioSpecificConfig, ADTS, ...).
//!
//! No exp-Golomb here: H.264 RBSP parsing goes through `h264-reader`, which also strips
//! emulation-prevention bytes. These types are for plain bit-packed syntax.

use crate::MediaError;

/// Reads bits most-significant first from a byte slice, never past its end.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// Starts reading at the first bit of `data`; `what` names the structure in errors.
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    /// Bits not yet read.
    pub fn bits_left(&self) -> usize {
        // `pos` never exceeds the bit length: every advance is checked against it first.
        self.data.len() * 8 - self.pos
    }

    /// Position in bits from the start of the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn truncated(&self) -> MediaError {
        MediaError::Truncated {
            what: self.what,
            offset: self.pos / 8,
        }
    }

    /// Reads `n` bits (at most 32) as an unsigned big-endian number.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, MediaError> {
        if n > 32 {
            return Err(MediaError::Invalid {
                what: self.what,
                reason: format!("cannot read {n} bits at once"),
            });
        }
        // Widening u32 -> usize is lossless on every target Rust supports with 32+ bit usize.
        let n = n as usize;
        if n > self.bits_left() {
            return Err(self.truncated());
        }
        let mut value: u64 = 0;
        for _ in 0..n {
            // In bounds: bits_left() >= n was checked above.
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            value = (value << 1) | u64::from(bit);
            self.pos += 1;
        }
        // At most 32 bits were shifted in.
        Ok(value as u32)
    }

    /// Reads one bit as a flag.
    pub fn read_bit(&mut self) -> Result<bool, MediaError> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), MediaError> {
        if n > self.bits_left() {
            return Err(self.truncated());
        }
        self.pos += n;
        Ok(())
    }
}

/// Writes bits most-significant first into a growing byte buffer.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Bits already used in the last byte of `buf` (0 means it is full or `buf` is empty).
    used: u8,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the low `n` bits (at most 32) of `value`; higher bits are ignored.
    pub fn write_bits(&mut self, value: u32, n: u32) {
        let n = n.min(32);
        for i in (0..n).rev() {
            let bit = ((value >> i) & 1) as u8;
            if self.used == 0 {
                self.buf.push(0);
            }
            if let Some(last) = self.buf.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }

    /// Appends one bit.
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u32::from(bit), 1);
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        match self.used {
            0 => self.buf.len() * 8,
            used => (self.buf.len() - 1) * 8 + usize::from(used),
        }
    }

    /// Returns the bytes written, the last one padded with zero bits.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_byte_boundaries() {
        let mut r = BitReader::new(&[0b1010_1100, 0b0101_0011, 0xff], "test");
        assert_eq!(r.read_bits(3).unwrap(), 0b101);
        assert_eq!(r.read_bits(7).unwrap(), 0b011_0001);
        assert!(!r.read_bit().unwrap());
        assert_eq!(r.bits_left(), 13);
        r.skip(5).unwrap();
        assert_eq!(r.read_bits(8).unwrap(), 0xff);
        assert_eq!(r.read_bits(0).unwrap(), 0);
        assert_eq!(
            r.read_bits(1),
            Err(MediaError::Truncated {
                what: "test",
                offset: 3
            })
        );
    }

    #[test]
    fn read_32_bits_and_reject_more() {
        let mut r = BitReader::new(&[0xde, 0xad, 0xbe, 0xef, 0x01], "test");
        assert!(r.read_bits(33).is_err());
        assert_eq!(r.read_bits(32).unwrap(), 0xdead_beef);
        assert!(r.skip(9).is_err());
        assert_eq!(r.position(), 32);
        r.skip(8).unwrap();
        assert_eq!(r.bits_left(), 0);
    }

    #[test]
    fn failed_read_consumes_nothing() {
        let mut r = BitReader::new(&[0xf0], "test");
        r.skip(4).unwrap();
        assert!(r.read_bits(5).is_err());
        assert_eq!(r.read_bits(4).unwrap(), 0);
    }

    #[test]
    fn writer_round_trips_through_reader() {
        let mut w = BitWriter::new();
        w.write_bits(2, 5);
        w.write_bits(3, 4);
        w.write_bit(true);
        w.write_bits(0xabc_def0, 32);
        w.write_bits(0xff, 2);
        assert_eq!(w.bit_len(), 44);
        let bytes = w.finish();
        assert_eq!(bytes.len(), 6);
        let mut r = BitReader::new(&bytes, "test");
        assert_eq!(r.read_bits(5).unwrap(), 2);
        assert_eq!(r.read_bits(4).unwrap(), 3);
        assert!(r.read_bit().unwrap());
        assert_eq!(r.read_bits(32).unwrap(), 0xabc_def0);
        assert_eq!(r.read_bits(2).unwrap(), 3);
        assert_eq!(r.bits_left(), 4);
    }
}
