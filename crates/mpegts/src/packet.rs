//! Transport packet framing: headers, adaptation fields, PSI sections and PES splitting.

use crate::PACKET_SIZE;
use crate::crc::crc32_mpeg2;
use bytes::{BufMut, BytesMut};

const SYNC: u8 = 0x47;
const HEADER_LEN: usize = 4;
const PAYLOAD_MAX: usize = PACKET_SIZE - HEADER_LEN;

/// Adaptation field content for the first packet of a PES.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Adaptation {
    /// PCR base in 90 kHz ticks (extension written as 0).
    pub pcr: Option<u64>,
    /// discontinuity_indicator: the time base restarts at this packet.
    pub discontinuity: bool,
    /// random_access_indicator: a decoder can start here.
    pub random_access: bool,
}

impl Adaptation {
    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.discontinuity {
            f |= 0x80;
        }
        if self.random_access {
            f |= 0x40;
        }
        if self.pcr.is_some() {
            f |= 0x10;
        }
        f
    }

    /// Bytes of the field when present (length byte, flags byte, PCR), before stuffing.
    fn min_len(&self) -> usize {
        if self.pcr.is_some() {
            8
        } else if self.flags() != 0 {
            2
        } else {
            0
        }
    }
}

fn header(out: &mut BytesMut, pid: u16, start: bool, cc: &mut u8, has_adaptation: bool) {
    out.put_u8(SYNC);
    out.put_u16(if start { 0x4000 } else { 0 } | (pid & 0x1fff));
    // adaptation_field_control: 01 payload only, 11 adaptation field then payload.
    let afc = if has_adaptation { 0x30 } else { 0x10 };
    out.put_u8(afc | (*cc & 0x0f));
    *cc = (*cc + 1) & 0x0f;
}

/// Writes an adaptation field of exactly `total` bytes (length byte included, `total >= 1`).
fn adaptation_field(out: &mut BytesMut, total: usize, af: &Adaptation) {
    // total <= 184 by construction of every caller, so it fits the length byte.
    out.put_u8((total - 1) as u8);
    if total == 1 {
        return;
    }
    out.put_u8(af.flags());
    let mut used = 2;
    if let Some(pcr) = af.pcr {
        // program_clock_reference_base (33 bits), 6 reserved bits, extension (9 bits) = 0.
        let v = ((pcr & ((1 << 33) - 1)) << 15) | (0x3f << 9);
        out.put_slice(&v.to_be_bytes()[2..]);
        used += 6;
    }
    out.put_bytes(0xff, total - used);
}

/// Splits one PES into packets; the first carries `af`, the last is stuffed to 188 bytes.
pub(crate) fn write_pes_packets(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    af: Adaptation,
    pes: &[u8],
) {
    out.reserve((pes.len() / PAYLOAD_MAX + 2) * PACKET_SIZE);
    let mut rest = pes;
    let mut first = true;
    loop {
        let wanted = if first { af.min_len() } else { 0 };
        let room = PAYLOAD_MAX - wanted;
        let take = rest.len().min(room);
        // Stuffing fills whatever the payload leaves; it lives in the adaptation field.
        let af_len = PAYLOAD_MAX - take;
        header(out, pid, first, cc, af_len > 0);
        if af_len > 0 {
            let field = if first { af } else { Adaptation::default() };
            adaptation_field(out, af_len, &field);
        }
        out.put_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
        if rest.is_empty() {
            break;
        }
    }
}

/// Writes one PSI section (long form) in a single packet, padded with 0xFF.
pub(crate) fn write_section(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    table_id: u8,
    id: u16,
    version: u8,
    body: &[u8],
) {
    let mut section = Vec::with_capacity(12 + body.len());
    section.push(table_id);
    // section_syntax_indicator 1, '0', reserved '11'; length counts from after this field to
    // the CRC inclusive. Our bodies are a few dozen bytes, so the 12-bit field never overflows.
    let length = (5 + body.len() + 4) as u16;
    section.extend_from_slice(&(0xb000 | (length & 0x0fff)).to_be_bytes());
    section.extend_from_slice(&id.to_be_bytes());
    section.push(0xc1 | ((version & 0x1f) << 1)); // reserved, version, current_next_indicator
    section.extend_from_slice(&[0, 0]); // section_number, last_section_number
    section.extend_from_slice(body);
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());

    header(out, pid, true, cc, false);
    out.put_u8(0); // pointer_field
    let room = PAYLOAD_MAX - 1;
    let take = section.len().min(room);
    out.put_slice(&section[..take]);
    out.put_bytes(0xff, room - take);
}
