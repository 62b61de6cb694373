//! RTMP chunk stream (spec 5.3): a sans-I/O decoder and a zero-copy encoder.
//!
//! The decoder reassembles messages from interleaved chunk streams under hard memory limits.
//! The encoder never copies payloads: it queues small header pieces and `Bytes` slices of the
//! payload in an [`OutQueue`] that the driver writes with vectored I/O.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Chunk size both sides start with (spec 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Lowest chunk stream id a basic header can carry (0 and 1 select the longer forms).
pub const MIN_CSID: u32 = 2;
/// Highest chunk stream id a basic header can carry (3-byte form).
pub const MAX_CSID: u32 = 65_599;
/// Largest message length the 24-bit length field can carry.
pub const MAX_MESSAGE_LENGTH: u32 = 0xFF_FFFF;

/// Marker in the 24-bit timestamp field meaning "the real value follows in 4 bytes".
const EXTENDED: u32 = 0xFF_FFFF;
/// Largest chunk header: 3-byte basic + 11-byte fmt 0 + 4-byte extended timestamp.
const MAX_HEADER_LEN: usize = 18;
/// Scratch growth block for header bytes: one allocation serves hundreds of chunk headers.
/// Header bytes for dozens of frames; small because every player holds one.
const SCRATCH_BLOCK: usize = 1024;

/// One reassembled RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp in ms (wraps at 2^32).
    pub timestamp: u32,
    /// Message type id (1 = Set Chunk Size, 8 = audio, 9 = video, 20 = AMF0 command, ...).
    pub type_id: u8,
    /// Message stream id (0 for control and NetConnection commands).
    pub stream_id: u32,
    /// Message body.
    pub payload: Bytes,
}

/// Memory and size limits that protect the decoder from a hostile peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest chunk size the peer may set.
    pub max_chunk_size: u32,
    /// Largest message length accepted.
    pub max_message_size: u32,
    /// Most distinct chunk stream ids tracked per connection.
    pub max_chunk_streams: usize,
    /// Most payload bytes held across all partial messages.
    pub max_pending_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 65_536,
            max_message_size: 8 << 20,
            max_chunk_streams: 64,
            max_pending_bytes: 16 << 20,
        }
    }
}

/// Chunk stream errors. `offset` is the connection byte offset (after the handshake) of the
/// chunk that caused it, i.e. [`ChunkDecoder::bytes_consumed`] at the chunk start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// Set Chunk Size with 0, the high bit set, or above the configured maximum.
    #[error("invalid chunk size {size} (allowed 1..={max})")]
    InvalidChunkSize {
        /// Requested size.
        size: u32,
        /// Configured maximum.
        max: u32,
    },
    /// A message header declared a length above the limit.
    #[error("message of {len} bytes on csid {csid} exceeds limit {max} at offset {offset}")]
    MessageTooLarge {
        /// Chunk stream id.
        csid: u32,
        /// Declared length.
        len: u32,
        /// Configured maximum.
        max: u32,
        /// Chunk start offset.
        offset: u64,
    },
    /// The peer opened more chunk streams than allowed.
    #[error("chunk stream {csid} would exceed the limit of {max} chunk streams at offset {offset}")]
    TooManyChunkStreams {
        /// The new chunk stream id.
        csid: u32,
        /// Configured maximum.
        max: usize,
        /// Chunk start offset.
        offset: u64,
    },
    /// Partial messages would hold more bytes than allowed.
    #[error(
        "partial messages would hold {pending} bytes (limit {max}) on csid {csid} at offset {offset}"
    )]
    PendingBytesExceeded {
        /// Chunk stream id.
        csid: u32,
        /// Bytes that would be pending.
        pending: usize,
        /// Configured maximum.
        max: usize,
        /// Chunk start offset.
        offset: u64,
    },
    /// The first chunk on a chunk stream was fmt 2 or 3, so its length is unknown.
    #[error("fmt {fmt} chunk on csid {csid} without a previous header at offset {offset}")]
    Fmt123WithoutPrevious {
        /// Chunk stream id.
        csid: u32,
        /// Chunk header format.
        fmt: u8,
        /// Chunk start offset.
        offset: u64,
    },
    /// A fmt 0 chunk, or a fmt 1 chunk with a different length, arrived while a message on the
    /// same chunk stream was incomplete.
    #[error("fmt {fmt} chunk on csid {csid} in the middle of a message at offset {offset}")]
    HeaderMidMessage {
        /// Chunk stream id.
        csid: u32,
        /// Chunk header format.
        fmt: u8,
        /// Chunk start offset.
        offset: u64,
    },
}

/// Errors from encoding a message whose header cannot be expressed in RTMP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// Chunk stream id outside 2..=65599.
    #[error("chunk stream id {0} outside {MIN_CSID}..={MAX_CSID}")]
    InvalidCsid(u32),
    /// Payload longer than the 24-bit length field.
    #[error("payload of {0} bytes exceeds the RTMP message length limit {MAX_MESSAGE_LENGTH}")]
    PayloadTooLarge(usize),
}

/// Per chunk stream decoder state: the last header seen plus any partial message.
#[derive(Debug)]
struct InStream {
    csid: u32,
    /// Timestamp of the current (or last) message.
    timestamp: u32,
    /// Last timestamp field value (absolute for fmt 0, delta for fmt 1/2, extended if needed);
    /// a fmt 3 chunk starting a new message adds it again.
    ts_field: u32,
    /// Whether the last fmt 0/1/2 header used the extended timestamp.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload received so far of an incomplete multi-chunk message.
    partial: Option<BytesMut>,
}

/// Reassembles RTMP messages from a chunk stream.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    chunk_size: u32,
    streams: Vec<InStream>,
    pending_bytes: usize,
    consumed: u64,
}

enum Step {
    NeedMore,
    Partial,
    Message(RawMessage),
}

impl ChunkDecoder {
    /// Creates a decoder with chunk size 128.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            pending_bytes: 0,
            consumed: 0,
        }
    }

    /// Applies a Set Chunk Size received from the peer.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size & 0x8000_0000 != 0 || size > self.limits.max_chunk_size {
            return Err(ChunkError::InvalidChunkSize {
                size,
                max: self.limits.max_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Current incoming chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Drops the partial message on `csid` (the peer sent Abort Message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid)
            && let Some(p) = s.partial.take()
        {
            self.pending_bytes -= p.len();
        }
    }

    /// Total bytes consumed from the input, for acknowledgements and error offsets.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// Payload bytes currently held in partial messages.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Decodes the next complete message, consuming whole chunks only; `Ok(None)` means more
    /// input is needed. Call in a loop. After an error the connection must be closed.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            match self.decode_chunk(input)? {
                Step::NeedMore => return Ok(None),
                Step::Partial => {}
                Step::Message(m) => return Ok(Some(m)),
            }
        }
    }

    fn decode_chunk(&mut self, input: &mut BytesMut) -> Result<Step, ChunkError> {
        let offset = self.consumed;
        let buf = &input[..];
        let Some(&b0) = buf.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, basic_len) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(Step::NeedMore),
            },
            n => (u32::from(n), 1),
        };
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.map(|i| &self.streams[i]);
        let continuing = prev.is_some_and(|s| s.partial.is_some());
        if continuing && fmt == 0 {
            // Spec 5.3.1.2: continuation chunks are fmt 3; a fmt 0 here would splice two
            // messages together, so refuse rather than guess (SRS refuses it too).
            return Err(ChunkError::HeaderMidMessage { csid, fmt, offset });
        }
        if prev.is_none() {
            // nginx-rtmp and SRS tolerate a first chunk of fmt 1 (all but the stream id is
            // present; it defaults to 0 with a zero base timestamp). fmt 2/3 lack the length.
            if fmt >= 2 {
                return Err(ChunkError::Fmt123WithoutPrevious { csid, fmt, offset });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams {
                    csid,
                    max: self.limits.max_chunk_streams,
                    offset,
                });
            }
        }
        let mh_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = buf.get(basic_len..basic_len + mh_len) else {
            return Ok(Step::NeedMore);
        };
        let ts3 = if fmt <= 2 { be24(&mh[0..3]) } else { 0 };
        // Whether this chunk carries the 4-byte extended timestamp field.
        let has_ext = match prev {
            _ if fmt <= 2 => ts3 == EXTENDED,
            Some(p) => p.extended,
            None => false,
        };
        let header_len = basic_len + mh_len + if has_ext { 4 } else { 0 };
        let ext = if has_ext {
            match buf.get(basic_len + mh_len..header_len) {
                Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                None => return Ok(Step::NeedMore),
            }
        } else {
            0
        };
        let (prev_ts, prev_field, prev_ext, prev_len, prev_type, prev_sid) = match prev {
            Some(p) => (
                p.timestamp,
                p.ts_field,
                p.extended,
                p.length,
                p.type_id,
                p.stream_id,
            ),
            None => (0, 0, false, 0, 0, 0),
        };
        let (timestamp, ts_field, extended, length, type_id, stream_id) = if continuing {
            // SRS accepts fmt 1/2 continuation chunks as long as the length does not change;
            // their header fields are ignored, the message keeps its first chunk's header.
            if fmt == 1 && be24(&mh[3..6]) != prev_len {
                return Err(ChunkError::HeaderMidMessage { csid, fmt, offset });
            }
            (prev_ts, prev_field, prev_ext, prev_len, prev_type, prev_sid)
        } else {
            let ts_field = match fmt {
                0..=2 if has_ext => ext,
                0..=2 => ts3,
                // fmt 3 repeats the extended field when the last header had one (ffmpeg,
                // librtmp and OBS all send it). Like ffmpeg's rtmppkt.c, a new message takes
                // the repeated value as its delta.
                _ if has_ext => ext,
                _ => prev_field,
            };
            let timestamp = match fmt {
                0 => ts_field,
                // Spec 5.3.1.2.4: fmt 1/2 carry a delta; a fmt 3 chunk starting a message
                // reuses the previous one.
                _ => prev_ts.wrapping_add(ts_field),
            };
            let (length, type_id) = if fmt <= 1 {
                (be24(&mh[3..6]), mh[6])
            } else {
                (prev_len, prev_type)
            };
            let stream_id = if fmt == 0 {
                u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]])
            } else {
                prev_sid
            };
            (timestamp, ts_field, has_ext, length, type_id, stream_id)
        };
        if !continuing && length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                csid,
                len: length,
                max: self.limits.max_message_size,
                offset,
            });
        }
        let received = prev
            .and_then(|p| p.partial.as_ref())
            .map_or(0, BytesMut::len);
        // `received < length` holds for any stored partial, and `length` fits in 24 bits.
        let data_len = (length as usize - received).min(self.chunk_size as usize);
        if input.len() < header_len + data_len {
            return Ok(Step::NeedMore);
        }
        let whole = !continuing && data_len == length as usize;
        if !whole && self.pending_bytes.saturating_add(data_len) > self.limits.max_pending_bytes {
            return Err(ChunkError::PendingBytesExceeded {
                csid,
                pending: self.pending_bytes.saturating_add(data_len),
                max: self.limits.max_pending_bytes,
                offset,
            });
        }

        // The chunk is complete and valid: commit.
        let idx = match idx {
            Some(i) => i,
            None => {
                self.streams.push(InStream {
                    csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[idx];
        s.timestamp = timestamp;
        s.ts_field = ts_field;
        s.extended = extended;
        s.length = length;
        s.type_id = type_id;
        s.stream_id = stream_id;
        input.advance(header_len);
        self.consumed += (header_len + data_len) as u64;
        let message = |payload| RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        };
        if whole {
            // Copied, not sliced: a slice would keep the whole read block (64 KiB for a
            // publisher) alive for as long as any output holds the frame, and the GOP cache
            // and the players' rings hold frames for seconds. One copy at ingest is the only
            // one the frame gets.
            let payload = Bytes::copy_from_slice(&input[..data_len]);
            input.advance(data_len);
            return Ok(Step::Message(message(payload)));
        }
        // Grow with the data actually received, never by the declared length: a peer could
        // declare many large messages and send nothing.
        let partial = s.partial.get_or_insert_with(BytesMut::new);
        partial.extend_from_slice(&input[..data_len]);
        input.advance(data_len);
        self.pending_bytes += data_len;
        if partial.len() < length as usize {
            return Ok(Step::Partial);
        }
        let payload = s.partial.take().map(BytesMut::freeze).unwrap_or_default();
        self.pending_bytes -= payload.len();
        Ok(Step::Message(message(payload)))
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

/// Header of a message to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream id, 2..=65599.
    pub csid: u32,
    /// Absolute timestamp in ms.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// Per chunk stream encoder state: the last header sent.
#[derive(Debug)]
struct OutStream {
    csid: u32,
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits messages into chunks with per-stream header compression, without copying payloads.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<OutStream>,
    /// Never compress headers: two writers share one connection (a player's fan-out task and
    /// its connection task), and the peer's per-chunk-stream state must not depend on which
    /// of them wrote last.
    full_headers: bool,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// Creates an encoder with chunk size 128.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            full_headers: false,
        }
    }

    /// Current outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the outgoing chunk size; send the Set Chunk Size message first, with the old
    /// size. Values are clamped to 1..=0x7FFFFFFF (the only ones the message can carry).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, 0x7FFF_FFFF);
    }

    /// With `on`, every message starts with a fmt 0 header, so the peer's decoding of it
    /// depends on no earlier message.
    pub fn set_full_headers(&mut self, on: bool) {
        self.full_headers = on;
    }

    /// Appends `payload` as chunks to `out`; nothing is queued on error.
    pub fn encode(
        &mut self,
        header: &MessageHeader,
        payload: &Bytes,
        out: &mut OutQueue,
    ) -> Result<(), EncodeError> {
        self.encode_with_prefix(header, &[], payload, out)
    }

    /// Like [`ChunkEncoder::encode`] for a message body of `prefix` followed by `payload`: the
    /// few prefix bytes (an FLV tag header) are copied, the payload is only sliced.
    pub fn encode_with_prefix(
        &mut self,
        header: &MessageHeader,
        prefix: &[u8],
        payload: &Bytes,
        out: &mut OutQueue,
    ) -> Result<(), EncodeError> {
        if !prefix.is_empty() && prefix.len() >= self.chunk_size as usize {
            return self.encode_with_prefix(header, &[], &joined(prefix, payload), out);
        }
        let csid = header.csid;
        let length = checked_length(csid, prefix.len() + payload.len())?;
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let previous = idx.map(|i| &self.streams[i]).filter(|_| !self.full_headers);
        let (fmt, field) = match previous {
            // Deltas only go forward and within one message stream; anything else restarts the
            // chunk stream with an absolute fmt 0 header (this also covers 2^32 wraparound).
            Some(p) if p.stream_id == header.stream_id && header.timestamp >= p.timestamp => {
                let delta = header.timestamp - p.timestamp;
                if p.length == length && p.type_id == header.type_id {
                    (2u8, delta)
                } else {
                    (1, delta)
                }
            }
            _ => (0, header.timestamp),
        };
        let extended = field >= EXTENDED;

        let mut h = [0u8; MAX_HEADER_LEN];
        let mut n = put_basic(&mut h, fmt, csid);
        h[n..n + 3].copy_from_slice(&field.min(EXTENDED).to_be_bytes()[1..]);
        n += 3;
        if fmt <= 1 {
            h[n..n + 3].copy_from_slice(&length.to_be_bytes()[1..]);
            h[n + 3] = header.type_id;
            n += 4;
        }
        if fmt == 0 {
            h[n..n + 4].copy_from_slice(&header.stream_id.to_le_bytes());
            n += 4;
        }
        if extended {
            h[n..n + 4].copy_from_slice(&field.to_be_bytes());
            n += 4;
        }
        out.push_small(&h[..n]);
        if !prefix.is_empty() {
            out.push_small(prefix);
        }

        // From here on positions are in `payload`; the first chunk is shortened by the prefix.
        let total = payload.len();
        let chunk = self.chunk_size as usize;
        let first = total.min(chunk - prefix.len());
        if first > 0 {
            out.push(payload.slice(..first));
        }
        if first < total {
            // Every continuation header is identical: write it once and share it.
            let mut c = [0u8; 7];
            let mut m = put_basic(&mut c, 3, csid);
            if extended {
                // ffmpeg, librtmp and OBS expect the extended field repeated on fmt 3 chunks.
                c[m..m + 4].copy_from_slice(&field.to_be_bytes());
                m += 4;
            }
            let cont = out.small(&c[..m]);
            let mut pos = first;
            while pos < total {
                let end = total.min(pos + chunk);
                out.push(cont.clone());
                out.push(payload.slice(pos..end));
                pos = end;
            }
        }

        let state = OutStream {
            csid,
            timestamp: header.timestamp,
            length,
            type_id: header.type_id,
            stream_id: header.stream_id,
        };
        match idx {
            Some(i) => self.streams[i] = state,
            None => self.streams.push(state),
        }
        Ok(())
    }
}

/// `prefix` then `payload` in one buffer: only for chunk sizes so small (under the few bytes of
/// an FLV tag header) that the prefix would span chunks.
fn joined(prefix: &[u8], payload: &Bytes) -> Bytes {
    let mut joined = Vec::with_capacity(prefix.len() + payload.len());
    joined.extend_from_slice(prefix);
    joined.extend_from_slice(payload);
    Bytes::from(joined)
}

/// The message length field for a body of `total` bytes on chunk stream `csid`, or why the
/// message cannot be sent.
fn checked_length(csid: u32, total: usize) -> Result<u32, EncodeError> {
    if !(MIN_CSID..=MAX_CSID).contains(&csid) {
        return Err(EncodeError::InvalidCsid(csid));
    }
    match u32::try_from(total) {
        Ok(l) if l <= MAX_MESSAGE_LENGTH => Ok(l),
        _ => Err(EncodeError::PayloadTooLarge(total)),
    }
}

/// One whole message as chunks that depend on no chunk-stream state: a fmt 0 header, then fmt 3
/// continuations. So one encoding can be written to every player whose chunk size, stream id
/// and timestamp match. The pieces are the headers (a few bytes, allocated here) and slices of
/// `payload`, which is not copied.
pub fn encode_standalone(
    header: &MessageHeader,
    prefix: &[u8],
    payload: &Bytes,
    chunk_size: u32,
) -> Result<Vec<Bytes>, EncodeError> {
    let chunk = chunk_size.clamp(1, 0x7FFF_FFFF) as usize;
    if !prefix.is_empty() && prefix.len() >= chunk {
        return encode_standalone(header, &[], &joined(prefix, payload), chunk_size);
    }
    let csid = header.csid;
    let length = checked_length(csid, prefix.len() + payload.len())?;
    let extended = header.timestamp >= EXTENDED;
    let mut h = [0u8; MAX_HEADER_LEN];
    let mut n = put_basic(&mut h, 0, csid);
    h[n..n + 3].copy_from_slice(&header.timestamp.min(EXTENDED).to_be_bytes()[1..]);
    h[n + 3..n + 6].copy_from_slice(&length.to_be_bytes()[1..]);
    h[n + 6] = header.type_id;
    h[n + 7..n + 11].copy_from_slice(&header.stream_id.to_le_bytes());
    n += 11;
    if extended {
        h[n..n + 4].copy_from_slice(&header.timestamp.to_be_bytes());
        n += 4;
    }
    let mut head = Vec::with_capacity(n + prefix.len());
    head.extend_from_slice(&h[..n]);
    head.extend_from_slice(prefix);
    let first = payload.len().min(chunk - prefix.len());
    let mut pieces = Vec::with_capacity(2 + 2 * (payload.len() - first).div_ceil(chunk));
    pieces.push(Bytes::from(head));
    if first > 0 {
        pieces.push(payload.slice(..first));
    }
    if first < payload.len() {
        let mut c = [0u8; 7];
        let mut m = put_basic(&mut c, 3, csid);
        if extended {
            // ffmpeg, librtmp and OBS expect the extended field repeated on fmt 3 chunks.
            c[m..m + 4].copy_from_slice(&header.timestamp.to_be_bytes());
            m += 4;
        }
        let cont = Bytes::copy_from_slice(&c[..m]);
        let mut pos = first;
        while pos < payload.len() {
            let end = payload.len().min(pos + chunk);
            pieces.push(cont.clone());
            pieces.push(payload.slice(pos..end));
            pos = end;
        }
    }
    Ok(pieces)
}

/// Writes a basic header for a csid already checked to lie in 2..=65599; returns its length.
fn put_basic(h: &mut [u8], fmt: u8, csid: u32) -> usize {
    let f = fmt << 6;
    if csid < 64 {
        h[0] = f | csid as u8;
        1
    } else if csid < 320 {
        h[0] = f;
        h[1] = (csid - 64) as u8;
        2
    } else {
        let v = csid - 64;
        h[0] = f | 1;
        h[1] = v as u8;
        h[2] = (v >> 8) as u8;
        3
    }
}

/// Bytes waiting to be written: small header pieces interleaved with shared payload slices.
#[derive(Debug)]
pub struct OutQueue {
    pieces: VecDeque<Bytes>,
    len: usize,
    scratch: BytesMut,
}

impl Default for OutQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl OutQueue {
    /// Creates an empty queue.
    pub fn new() -> Self {
        Self {
            pieces: VecDeque::new(),
            len: 0,
            scratch: BytesMut::new(),
        }
    }

    /// Queues bytes as they are (e.g. handshake output); empty pieces are skipped.
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pieces.push_back(b);
        }
    }

    /// Queues a copy of a few bytes, packed into a shared scratch allocation.
    pub fn push_small(&mut self, bytes: &[u8]) {
        let b = self.small(bytes);
        self.push(b);
    }

    /// Copies `bytes` into the scratch block and returns them frozen (no allocation unless the
    /// block is full; then one new block of at least 4 KiB).
    fn small(&mut self, bytes: &[u8]) -> Bytes {
        if self.scratch.capacity() < bytes.len() {
            self.scratch.reserve(SCRATCH_BLOCK.max(bytes.len()));
        }
        self.scratch.extend_from_slice(bytes);
        self.scratch.split().freeze()
    }

    /// Queued bytes not yet written.
    pub fn len_bytes(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of queued pieces.
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Fills `dst` with the front pieces for `write_vectored`; returns how many were filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(self.pieces.iter()) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// Drops `n` written bytes from the front (clamped to what is queued).
    pub fn advance(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.pieces.pop_front();
        }
        if self.pieces.is_empty() && self.pieces.capacity() > 128 {
            // A GOP burst needs hundreds of pieces once; steady play needs a few per write.
            self.pieces.shrink_to(16);
        }
    }

    /// Frees the rest of the scratch block once everything is written. For queues that
    /// carry a few control messages and then sit idle (a fan-out player's), where thousands
    /// of players would each keep a block for nothing.
    pub fn release_idle(&mut self) {
        if self.pieces.is_empty() && self.scratch.capacity() > 0 {
            self.scratch = BytesMut::new();
        }
    }

    /// Moves everything queued in `other` behind what is queued here.
    pub fn append(&mut self, other: &mut OutQueue) {
        self.len += other.len;
        other.len = 0;
        self.pieces.append(&mut other.pieces);
    }

    /// Removes everything queued.
    pub fn clear(&mut self) {
        self.pieces.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_PUBLISH: &[u8] = include_bytes!("../../../testdata/ffmpeg-publish.bin");
    const FFMPEG_PUBLISH_EXTTS: &[u8] =
        include_bytes!("../../../testdata/ffmpeg-publish-extts.bin");

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: u32) -> u32 {
            self.next() % n
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn flatten(q: &OutQueue) -> Vec<u8> {
        let mut v = Vec::with_capacity(q.len_bytes());
        for p in &q.pieces {
            v.extend_from_slice(p);
        }
        v
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn header(m: &RawMessage) -> MessageHeader {
        MessageHeader {
            csid: m.csid,
            timestamp: m.timestamp,
            type_id: m.type_id,
            stream_id: m.stream_id,
        }
    }

    /// Decodes everything, feeding `step` bytes at a time and applying Set Chunk Size like the
    /// session does.
    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8], step: usize) -> Vec<RawMessage> {
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            input.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut input).unwrap() {
                if m.type_id == 1 {
                    let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                    dec.set_chunk_size(size & 0x7FFF_FFFF).unwrap();
                }
                out.push(m);
            }
        }
        assert!(input.is_empty(), "{} bytes left over", input.len());
        assert_eq!(dec.bytes_consumed(), bytes.len() as u64);
        assert_eq!(dec.pending_bytes(), 0);
        out
    }

    fn encode_all(enc: &mut ChunkEncoder, msgs: &[RawMessage]) -> Vec<u8> {
        let mut q = OutQueue::new();
        for m in msgs {
            enc.encode(&header(m), &m.payload, &mut q).unwrap();
            if m.type_id == 1 {
                let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                enc.set_chunk_size(size);
            }
        }
        flatten(&q)
    }

    fn set_chunk_size_msg(size: u32) -> RawMessage {
        msg(2, 0, 1, 0, &size.to_be_bytes())
    }

    fn round_trip(msgs: &[RawMessage], steps: &[usize]) {
        let bytes = encode_all(&mut ChunkEncoder::new(), msgs);
        for &step in steps {
            let got = decode_all(
                &mut ChunkDecoder::new(DecoderLimits::default()),
                &bytes,
                step,
            );
            assert_eq!(got, msgs, "step {step}");
        }
    }

    #[test]
    fn spec_example_1_fmt_0_2_3_3() {
        // Spec 5.3.2.1: four 32-byte audio messages, 20 ms apart.
        let mut wire = vec![0x03, 0x00, 0x03, 0xE8, 0, 0, 32, 8, 0x39, 0x30, 0, 0];
        wire.extend([1u8; 32]);
        wire.extend([0x83, 0, 0, 20]);
        wire.extend([2u8; 32]);
        wire.push(0xC3);
        wire.extend([3u8; 32]);
        wire.push(0xC3);
        wire.extend([4u8; 32]);
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [1000, 1020, 1040, 1060]);
        for (i, m) in got.iter().enumerate() {
            assert_eq!((m.csid, m.type_id, m.stream_id), (3, 8, 12345));
            assert_eq!(&m.payload[..], &[i as u8 + 1; 32]);
        }
    }

    #[test]
    fn spec_example_2_one_message_three_chunks() {
        // Spec 5.3.2.2: a 307-byte video message at chunk size 128.
        let body: Vec<u8> = (0..307u32).map(|i| i as u8).collect();
        let mut wire = vec![0x04, 0x00, 0x03, 0xE8, 0, 0x01, 0x33, 9, 0x39, 0x30, 0, 0];
        wire.extend(&body[..128]);
        wire.push(0xC4);
        wire.extend(&body[128..256]);
        wire.push(0xC4);
        wire.extend(&body[256..]);
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 5);
        assert_eq!(got, [msg(4, 1000, 9, 12345, &body)]);
        // Our encoder produces exactly these bytes.
        assert_eq!(encode_all(&mut ChunkEncoder::new(), &got), wire);
    }

    #[test]
    fn encoder_picks_each_fmt() {
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let cases: [(RawMessage, u8); 6] = [
            (msg(3, 100, 20, 0, b"abc"), 0),  // first use
            (msg(3, 150, 20, 0, b"xyz"), 2),  // same length and type
            (msg(3, 160, 20, 0, b"long"), 1), // length changed
            (msg(3, 170, 8, 0, b"long"), 1),  // type changed
            (msg(3, 160, 8, 0, b"long"), 0),  // timestamp went back
            (msg(3, 160, 8, 1, b"long"), 0),  // stream id changed
        ];
        let mut all = Vec::new();
        for (m, fmt) in &cases {
            q.clear();
            enc.encode(&header(m), &m.payload, &mut q).unwrap();
            assert_eq!(q.pieces[0][0] >> 6, *fmt, "{m:?}");
            all.push(m.clone());
        }
        round_trip(&all, &[1, 3, 1000]);
    }

    #[test]
    fn continuation_chunks_are_fmt3_and_share_one_header() {
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let payload = Bytes::from(vec![7u8; 1000]);
        let h = MessageHeader {
            csid: 6,
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
        };
        enc.encode(&h, &payload, &mut q).unwrap();
        // 8 chunks: header + slice each.
        assert_eq!(q.pieces(), 16);
        assert_eq!(q.len_bytes(), 12 + 1000 + 7);
        for i in 1..8 {
            assert_eq!(&q.pieces[2 * i][..], &[0xC6]);
            assert_eq!(q.pieces[2 * i].as_ptr(), q.pieces[2].as_ptr());
        }
        // Payload pieces are slices of the caller's buffer, never copies.
        for i in 0..8 {
            let p = q.pieces[2 * i + 1].as_ptr() as usize;
            let base = payload.as_ptr() as usize;
            assert_eq!(p, base + 128 * i);
        }
    }

    #[test]
    fn header_pieces_share_one_scratch_allocation() {
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let payload = Bytes::from_static(b"hello");
        for ts in 0..10 {
            let h = MessageHeader {
                csid: 4,
                timestamp: ts * 10,
                type_id: 8,
                stream_id: 1,
            };
            enc.encode(&h, &payload, &mut q).unwrap();
        }
        let first = q.pieces[0].as_ptr() as usize;
        let mut expect = first + q.pieces[0].len();
        for i in 1..10 {
            let p = &q.pieces[2 * i];
            assert_eq!(
                p.as_ptr() as usize,
                expect,
                "header {i} adjacent in scratch"
            );
            expect += p.len();
        }
    }

    #[test]
    fn all_chunk_sizes_round_trip() {
        let mut rng = Lcg(1);
        let sizes = (1..=1100).chain([2047, 4095, 4096, 4097, 60_000, 65_535, 65_536]);
        for size in sizes {
            let mut msgs = vec![set_chunk_size_msg(size)];
            for len in [
                0,
                1,
                size as usize - 1,
                size as usize,
                size as usize + 1,
                2 * size as usize + 3,
            ] {
                let ts = msgs.len() as u32 * 33;
                msgs.push(msg(6, ts, 9, 1, &rng.bytes(len)));
            }
            let bytes = encode_all(&mut ChunkEncoder::new(), &msgs);
            let got = decode_all(
                &mut ChunkDecoder::new(DecoderLimits::default()),
                &bytes,
                4096,
            );
            assert_eq!(got, msgs, "chunk size {size}");
        }
    }

    #[test]
    fn chunk_size_changes_mid_stream_byte_by_byte() {
        let mut rng = Lcg(2);
        let mut msgs = Vec::new();
        for (i, size) in [128u32, 1, 7, 4096, 129, 65_536, 2].into_iter().enumerate() {
            msgs.push(set_chunk_size_msg(size));
            msgs.push(msg(4, i as u32 * 20, 8, 1, &rng.bytes(300)));
            msgs.push(msg(6, i as u32 * 20, 9, 1, &rng.bytes(5000)));
        }
        round_trip(&msgs, &[1, 13, 100_000]);
    }

    #[test]
    fn all_csid_forms() {
        let msgs: Vec<RawMessage> = [2, 3, 63, 64, 65, 318, 319, 320, 321, 1000, 65_598, 65_599]
            .into_iter()
            .map(|c| msg(c, c, 20, 0, &[c as u8; 200]))
            .collect();
        round_trip(&msgs, &[1, 64]);
        // The non-canonical 3-byte form of a small csid decodes too.
        let wire = [0x01, 0x05, 0x00, 0, 0, 1, 0, 0, 1, 8, 0, 0, 0, 0, 0xAA];
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        assert_eq!(got, [msg(69, 1, 8, 0, &[0xAA])]);
    }

    #[test]
    fn interleaved_audio_and_video_chunks() {
        // Encode each message alone, then interleave chunks across csids as OBS-style muxers do.
        let mut rng = Lcg(3);
        let mut enc = ChunkEncoder::new();
        let mut per_csid: Vec<(u32, VecDeque<Vec<u8>>)> = Vec::new();
        let mut expected: Vec<RawMessage> = Vec::new();
        for i in 0..200u32 {
            let csid = [4, 6, 7, 100][rng.below(4) as usize];
            let len = rng.below(700) as usize;
            let m = msg(csid, i * 10, 8 + (csid % 2) as u8, 1, &rng.bytes(len));
            let mut q = OutQueue::new();
            enc.encode(&header(&m), &m.payload, &mut q).unwrap();
            let pieces: Vec<&Bytes> = q.pieces.iter().collect();
            let entry = match per_csid.iter().position(|(c, _)| *c == csid) {
                Some(e) => e,
                None => {
                    per_csid.push((csid, VecDeque::new()));
                    per_csid.len() - 1
                }
            };
            for pair in pieces.chunks(2) {
                // A zero-length message is a lone header; every other chunk is header + data.
                let mut c = pair[0].to_vec();
                if let Some(d) = pair.get(1) {
                    c.extend_from_slice(d);
                }
                per_csid[entry].1.push_back(c);
            }
            expected.push(m);
        }
        let mut wire = Vec::new();
        while per_csid.iter().any(|(_, q)| !q.is_empty()) {
            let i = rng.below(per_csid.len() as u32) as usize;
            if let Some(c) = per_csid[i].1.pop_front() {
                wire.extend(c);
            }
        }
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        assert_eq!(got.len(), expected.len());
        for csid in [4, 6, 7, 100] {
            let a: Vec<_> = got.iter().filter(|m| m.csid == csid).collect();
            let b: Vec<_> = expected.iter().filter(|m| m.csid == csid).collect();
            assert_eq!(a, b, "csid {csid}");
        }
    }

    #[test]
    fn extended_timestamps_in_every_fmt() {
        let big = 0xFF_FFFF;
        let msgs = vec![
            msg(4, big - 1, 8, 1, &[1; 300]),      // fmt 0, no extension
            msg(4, big, 8, 1, &[2; 300]),          // fmt 2 delta 1
            msg(5, big, 8, 1, &[3; 300]),          // fmt 0 extended, fmt 3 extended
            msg(5, big + 10, 8, 1, &[4; 300]),     // fmt 2 small delta after extended
            msg(5, 2 * big + 10, 8, 1, &[5; 10]),  // fmt 1 extended delta
            msg(5, 3 * big + 10, 8, 1, &[6; 400]), // fmt 1 extended delta, fmt 3 extended
            msg(6, u32::MAX, 9, 1, &[7; 129]),     // fmt 0 at the very top
        ];
        let bytes = encode_all(&mut ChunkEncoder::new(), &msgs);
        // The third message: fmt 0 header with 0xFFFFFF then the 4-byte value, and its
        // continuation repeats the value after the 0xC5 basic header.
        let third = bytes
            .windows(4)
            .position(|w| w == [0x05, 0xFF, 0xFF, 0xFF])
            .unwrap();
        assert_eq!(&bytes[third + 12..third + 16], &big.to_be_bytes());
        let cont = third + 16 + 128;
        assert_eq!(&bytes[cont..cont + 5], &[0xC5, 0x00, 0xFF, 0xFF, 0xFF]);
        round_trip(&msgs, &[1, 17, 100_000]);
    }

    #[test]
    fn fmt3_new_message_after_extended_header_uses_the_repeated_field() {
        // fmt 1 with extended delta 0x01000000, then a fmt 3 starting a new message: ffmpeg
        // sends the 4-byte field again and means "same delta".
        let mut wire = vec![0x04, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0xAA]; // fmt 0 ts 0
        wire.extend([0x44, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8, 1, 0, 0, 0, 0xBB]);
        wire.extend([0xC4, 1, 0, 0, 0, 0xCC]);
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [0, 0x0100_0000, 0x0200_0000]);
        assert_eq!(&got[2].payload[..], &[0xCC]);
    }

    #[test]
    fn fmt3_new_message_after_fmt0_adds_its_field_like_ffmpeg() {
        // ffmpeg/librtmp treat the fmt 0 timestamp as the field a later fmt 3 repeats.
        let wire = [0x04, 0, 0, 40, 0, 0, 1, 8, 1, 0, 0, 0, 0xAA, 0xC4, 0xBB];
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        assert_eq!(got[1].timestamp, 80);
    }

    #[test]
    fn timestamp_wraparound() {
        let msgs: Vec<RawMessage> = [u32::MAX - 30, u32::MAX - 10, u32::MAX, 5, 25, 0x0100_0000]
            .into_iter()
            .map(|ts| msg(4, ts, 8, 1, &[9; 50]))
            .collect();
        round_trip(&msgs, &[1, 1000]);
        // Decoder side: a fmt 2 delta that crosses 2^32 wraps.
        let wire = [
            0x04, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0xAA, 0x84, 0,
            0, 0x20, 0xBB,
        ];
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        assert_eq!(got[0].timestamp, 0xFFFF_FFF0);
        assert_eq!(got[1].timestamp, 0x10);
    }

    #[test]
    fn payloads_own_their_memory_and_keep_no_read_buffer_alive() {
        let msgs = vec![
            msg(3, 0, 20, 0, &[1; 100]),
            msg(4, 0, 8, 1, &[2; 128]),
            msg(6, 0, 9, 1, &[3; 300]),
        ];
        let bytes = encode_all(&mut ChunkEncoder::new(), &msgs);
        let mut input = BytesMut::from(&bytes[..]);
        let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let a = dec.decode(&mut input).unwrap().unwrap();
        let b = dec.decode(&mut input).unwrap().unwrap();
        let c = dec.decode(&mut input).unwrap().unwrap();
        for m in [&a, &b, &c] {
            assert!(
                !range.contains(&(m.payload.as_ptr() as usize)),
                "a frame must not pin the read buffer"
            );
        }
        assert_eq!([a, b, c], msgs.as_slice());
    }

    #[test]
    fn decode_returns_none_until_whole_chunk_and_consumes_nothing_partial() {
        let bytes = encode_all(&mut ChunkEncoder::new(), &[msg(3, 0, 20, 0, &[5; 200])]);
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut input = BytesMut::from(&bytes[..12 + 127]);
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(input.len(), 12 + 127);
        assert_eq!(dec.bytes_consumed(), 0);
        input.extend_from_slice(&bytes[12 + 127..12 + 128 + 1]);
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(dec.bytes_consumed(), 140, "first chunk consumed whole");
        assert_eq!(&input[..], &[0xC3]);
        assert_eq!(dec.pending_bytes(), 128);
        input.extend_from_slice(&bytes[12 + 128 + 1..]);
        assert!(dec.decode(&mut input).unwrap().is_some());
        assert_eq!(dec.pending_bytes(), 0);
    }

    #[test]
    fn decode_stops_after_each_message() {
        // Two messages in one buffer: the first decode must not eat chunks of the second, so
        // that a Set Chunk Size can take effect in between.
        let msgs = [set_chunk_size_msg(4096), msg(3, 0, 20, 0, &[1; 1000])];
        let bytes = encode_all(&mut ChunkEncoder::new(), &msgs);
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut input = BytesMut::from(&bytes[..]);
        assert_eq!(dec.decode(&mut input).unwrap().unwrap(), msgs[0]);
        assert_eq!(input.len(), 12 + 1000);
        dec.set_chunk_size(4096).unwrap();
        assert_eq!(dec.decode(&mut input).unwrap().unwrap(), msgs[1]);
    }

    #[test]
    fn set_chunk_size_limits() {
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        for bad in [0, 65_537, 0x8000_0080, u32::MAX] {
            assert_eq!(
                dec.set_chunk_size(bad),
                Err(ChunkError::InvalidChunkSize {
                    size: bad,
                    max: 65_536
                })
            );
        }
        assert_eq!(dec.chunk_size(), 128);
        dec.set_chunk_size(65_536).unwrap();
        dec.set_chunk_size(1).unwrap();
        assert_eq!(dec.chunk_size(), 1);
    }

    #[test]
    fn message_too_large() {
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_message_size: 1000,
            ..DecoderLimits::default()
        });
        let ok = encode_all(&mut ChunkEncoder::new(), &[msg(3, 0, 20, 0, &[0; 1000])]);
        let mut input = BytesMut::from(&ok[..]);
        assert!(dec.decode(&mut input).unwrap().is_some());
        // Rejected on the header alone, before any payload arrives.
        let mut input = BytesMut::from(&[0x43u8, 0, 0, 0, 0, 0x03, 0xE9, 8][..]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::MessageTooLarge {
                csid: 3,
                len: 1001,
                max: 1000,
                offset: ok.len() as u64,
            })
        );
    }

    #[test]
    fn too_many_chunk_streams() {
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_chunk_streams: 2,
            ..DecoderLimits::default()
        });
        let bytes = encode_all(
            &mut ChunkEncoder::new(),
            &[
                msg(3, 0, 20, 0, b"a"),
                msg(4, 0, 8, 1, b"b"),
                msg(3, 5, 20, 0, b"c"),
            ],
        );
        let got = decode_all(&mut dec, &bytes, 1);
        assert_eq!(got.len(), 3);
        let mut input = BytesMut::from(&[0x05u8][..]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::TooManyChunkStreams {
                csid: 5,
                max: 2,
                offset: bytes.len() as u64
            })
        );
    }

    #[test]
    fn pending_bytes_exceeded_and_abort() {
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_pending_bytes: 300,
            ..DecoderLimits::default()
        });
        // Two partial 1000-byte messages declared; payload grows only as chunks arrive.
        let mut enc = ChunkEncoder::new();
        let mut qa = OutQueue::new();
        let mut qb = OutQueue::new();
        let h = |csid| MessageHeader {
            csid,
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
        };
        enc.encode(&h(4), &Bytes::from(vec![1; 1000]), &mut qa)
            .unwrap();
        enc.encode(&h(6), &Bytes::from(vec![2; 1000]), &mut qb)
            .unwrap();
        let a = flatten(&qa);
        let b = flatten(&qb);
        let mut input = BytesMut::new();
        input.extend_from_slice(&a[..12 + 128]);
        input.extend_from_slice(&b[..12 + 128]);
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(dec.pending_bytes(), 256);
        let offset = dec.bytes_consumed();
        input.extend_from_slice(&a[12 + 128..12 + 128 + 129]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::PendingBytesExceeded {
                csid: 4,
                pending: 384,
                max: 300,
                offset
            })
        );
        // Abort frees the partial message; the next chunk on that csid must start afresh.
        dec.abort(6);
        dec.abort(99);
        assert_eq!(dec.pending_bytes(), 128);
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert_eq!(dec.pending_bytes(), 256);
    }

    #[test]
    fn fmt_2_or_3_without_previous_header() {
        for (b0, fmt) in [(0x83u8, 2u8), (0xC3, 3)] {
            let mut dec = ChunkDecoder::new(DecoderLimits::default());
            let mut input = BytesMut::from(&[b0, 0, 0, 0][..]);
            assert_eq!(
                dec.decode(&mut input),
                Err(ChunkError::Fmt123WithoutPrevious {
                    csid: 3,
                    fmt,
                    offset: 0
                })
            );
        }
        // fmt 1 first is tolerated like nginx-rtmp: stream id 0, delta from 0.
        let wire = [0x42, 0, 0, 9, 0, 0, 1, 20, 0xAA];
        let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
        assert_eq!(got, [msg(2, 9, 20, 0, &[0xAA])]);
    }

    #[test]
    fn new_header_in_the_middle_of_a_message() {
        let bytes = encode_all(&mut ChunkEncoder::new(), &[msg(3, 7, 20, 0, &[1; 200])]);
        for (hdr, fmt) in [
            (&[0x03u8, 0, 0, 1, 0, 0, 200, 20, 0, 0, 0, 0][..], 0u8),
            (&[0x43, 0, 0, 1, 0, 0, 201, 20][..], 1),
        ] {
            let mut dec = ChunkDecoder::new(DecoderLimits::default());
            let mut input = BytesMut::from(&bytes[..140]);
            input.extend_from_slice(hdr);
            assert_eq!(
                dec.decode(&mut input),
                Err(ChunkError::HeaderMidMessage {
                    csid: 3,
                    fmt,
                    offset: 140
                })
            );
        }
        // Like SRS, fmt 1 (same length) and fmt 2 continuations are accepted; the message
        // keeps its first header.
        for hdr in [
            &[0x43u8, 0, 0, 1, 0, 0, 200, 9][..],
            &[0x83, 0, 0, 1][..],
            &[0x83, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4][..],
        ] {
            let mut wire = bytes[..140].to_vec();
            wire.extend_from_slice(hdr);
            wire.extend_from_slice(&[1; 72]);
            let got = decode_all(&mut ChunkDecoder::new(DecoderLimits::default()), &wire, 1);
            assert_eq!(got, [msg(3, 7, 20, 0, &[1; 200])]);
        }
    }

    #[test]
    fn encode_errors_queue_nothing() {
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        for csid in [0, 1, 65_600] {
            let h = MessageHeader {
                csid,
                timestamp: 0,
                type_id: 8,
                stream_id: 1,
            };
            assert_eq!(
                enc.encode(&h, &Bytes::new(), &mut q),
                Err(EncodeError::InvalidCsid(csid))
            );
        }
        let h = MessageHeader {
            csid: 4,
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
        };
        let big = Bytes::from(vec![0; 1 << 24]);
        assert_eq!(
            enc.encode(&h, &big, &mut q),
            Err(EncodeError::PayloadTooLarge(1 << 24))
        );
        assert!(q.is_empty());
        assert_eq!(q.pieces(), 0);
        // The largest legal payload works.
        enc.set_chunk_size(65_536);
        enc.encode(&h, &big.slice(1..), &mut q).unwrap();
        assert_eq!(q.len_bytes(), 12 + 0xFF_FFFF + 255);
    }

    #[test]
    fn out_queue_partial_writes() {
        let mut q = OutQueue::new();
        q.push(Bytes::from_static(b"hello"));
        q.push(Bytes::new());
        q.push_small(b" ");
        q.push(Bytes::from_static(b"world"));
        assert_eq!(q.pieces(), 3);
        assert_eq!(q.len_bytes(), 11);
        let mut slots = [IoSlice::new(&[]); 2];
        assert_eq!(q.io_slices(&mut slots), 2);
        assert_eq!(&*slots[0], b"hello");
        assert_eq!(&*slots[1], b" ");
        q.advance(3);
        let mut slots = [IoSlice::new(&[]); 8];
        let n = q.io_slices(&mut slots);
        let joined: Vec<u8> = slots[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, b"lo world");
        q.advance(3);
        assert_eq!(q.pieces(), 1);
        assert_eq!(q.len_bytes(), 5);
        q.advance(100);
        assert!(q.is_empty());
        assert_eq!(q.pieces(), 0);
    }

    #[test]
    fn an_idle_queue_gives_its_scratch_block_back() {
        let mut q = OutQueue::new();
        q.push_small(b"status");
        assert!(q.scratch.capacity() > 0);
        // Still queued: the block stays.
        q.release_idle();
        assert!(q.scratch.capacity() > 0);
        q.advance(6);
        q.release_idle();
        assert_eq!(q.scratch.capacity(), 0);
        // And it is allocated again when needed.
        q.push_small(b"again");
        assert_eq!(q.len_bytes(), 5);
    }

    #[test]
    fn randomized_round_trip() {
        let mut rng = Lcg(0xF3);
        let csids = [2, 3, 4, 5, 8, 63, 64, 300, 320, 65_599];
        let mut ts = [0u32; 10];
        let mut msgs = Vec::new();
        for _ in 0..3000 {
            if rng.below(40) == 0 {
                let size = match rng.below(4) {
                    0 => 1 + rng.below(16),
                    1 => 128,
                    2 => 4096,
                    _ => 1 + rng.below(65_536),
                };
                msgs.push(set_chunk_size_msg(size));
                continue;
            }
            let k = rng.below(csids.len() as u32) as usize;
            ts[k] = match rng.below(20) {
                0 => ts[k].wrapping_sub(rng.below(1000)),
                1 => ts[k].wrapping_add(0xFF_FFFF + rng.below(3)),
                2 => u32::MAX - rng.below(3),
                3 => ts[k],
                _ => ts[k].wrapping_add(rng.below(100)),
            };
            let len = match rng.below(10) {
                0 => 0,
                1 => rng.below(20_000),
                _ => rng.below(600),
            } as usize;
            let sid = [0, 1, 1, 1, 2][rng.below(5) as usize];
            let type_id = [8, 9, 18, 20][rng.below(4) as usize];
            msgs.push(msg(csids[k], ts[k], type_id, sid, &rng.bytes(len)));
        }
        let bytes = encode_all(&mut ChunkEncoder::new(), &msgs);
        // Random read sizes, like a socket.
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let n = (1 + rng.below(3000) as usize).min(bytes.len() - pos);
            input.extend_from_slice(&bytes[pos..pos + n]);
            pos += n;
            while let Some(m) = dec.decode(&mut input).unwrap() {
                if m.type_id == 1 {
                    let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                    dec.set_chunk_size(size).unwrap();
                }
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        assert_eq!(dec.bytes_consumed(), bytes.len() as u64);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Lcg(99);
        let limits = DecoderLimits {
            max_chunk_size: 4096,
            max_message_size: 5000,
            max_chunk_streams: 8,
            max_pending_bytes: 20_000,
        };
        let valid = encode_all(
            &mut ChunkEncoder::new(),
            &[
                msg(3, 0, 20, 0, &[1; 300]),
                msg(4, 0xFF_FFFF, 8, 1, &[2; 300]),
                msg(4, 0x0200_0000, 8, 1, &[3; 300]),
                msg(320, 5, 9, 1, &[4; 50]),
            ],
        );
        for round in 0..20_000 {
            let data = if round % 2 == 0 {
                let n = 1 + rng.below(400) as usize;
                rng.bytes(n)
            } else {
                // Valid stream with a few bytes flipped: reaches deeper states than noise.
                let mut v = valid.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(v.len() as u32) as usize;
                    v[i] = rng.next() as u8;
                }
                v
            };
            let mut dec = ChunkDecoder::new(limits);
            let mut input = BytesMut::new();
            'feed: for piece in data.chunks(1 + rng.below(64) as usize) {
                input.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut input) {
                        Ok(Some(m)) => {
                            assert!(m.payload.len() <= 5000);
                            if m.type_id == 1 && m.payload.len() >= 4 {
                                let size = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
                                if dec.set_chunk_size(size).is_err() {
                                    break 'feed;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                    assert!(dec.pending_bytes() <= 20_000);
                }
            }
            assert!(dec.bytes_consumed() as usize + input.len() <= data.len());
        }
    }

    #[test]
    fn ffmpeg_publish_capture() {
        for step in [1, 7, 4096, FFMPEG_PUBLISH.len()] {
            let mut dec = ChunkDecoder::new(DecoderLimits::default());
            let got = decode_all(&mut dec, FFMPEG_PUBLISH, step);
            assert_eq!(got.len(), 66);
            let connect = &got[0];
            assert_eq!(
                (connect.csid, connect.type_id, connect.stream_id),
                (3, 20, 0)
            );
            assert_eq!(connect.payload.len(), 140, "spans two chunks at size 128");
            assert!(connect.payload.starts_with(b"\x02\x00\x07connect"));
            let names: Vec<&[u8]> = got
                .iter()
                .filter(|m| m.type_id == 20)
                .map(|m| &m.payload[3..3 + usize::from(m.payload[2])])
                .collect();
            let expect: [&[u8]; 7] = [
                b"connect",
                b"releaseStream",
                b"FCPublish",
                b"createStream",
                b"publish",
                b"FCUnpublish",
                b"deleteStream",
            ];
            assert_eq!(names, expect);
            let publish = got
                .iter()
                .find(|m| m.payload.starts_with(b"\x02\x00\x07publish"));
            assert_eq!(publish.map(|m| (m.csid, m.stream_id)), Some((8, 1)));
            let video: Vec<&RawMessage> = got.iter().filter(|m| m.type_id == 9).collect();
            let audio: Vec<&RawMessage> = got.iter().filter(|m| m.type_id == 8).collect();
            assert_eq!((video.len(), audio.len()), (12, 46));
            assert!(video.iter().all(|m| m.csid == 6 && m.stream_id == 1));
            assert!(audio.iter().all(|m| m.csid == 4 && m.stream_id == 1));
            assert_eq!(
                video[0].payload[..2],
                [0x17, 0x00],
                "AVC sequence header first"
            );
            assert_eq!(video[1].payload.len(), 1418);
            assert_eq!(video[2].timestamp, 100);
            assert!(video.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            assert!(audio.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        }
    }

    #[test]
    fn ffmpeg_publish_capture_with_extended_timestamps() {
        for step in [1, 4096] {
            let mut dec = ChunkDecoder::new(DecoderLimits::default());
            let got = decode_all(&mut dec, FFMPEG_PUBLISH_EXTTS, step);
            assert_eq!(got.len(), 66);
            let video: Vec<&RawMessage> = got.iter().filter(|m| m.type_id == 9).collect();
            // The keyframe arrives as a fmt 1 with extended delta 19999800 plus fmt 3
            // continuations that repeat it.
            assert_eq!(video[1].payload.len(), 1418);
            assert_eq!(video[1].timestamp, 19_999_800);
            let ts: Vec<u32> = video[1..11].iter().map(|m| m.timestamp).collect();
            let want: Vec<u32> = (0..10).map(|i| 19_999_800 + 100 * i).collect();
            assert_eq!(ts, want);
            // ffmpeg ends with an AVC end-of-sequence tag at the last frame's time.
            assert_eq!(video[11].payload[..2], [0x17, 0x02]);
            assert_eq!(video[11].timestamp, 20_000_700);
            let audio: Vec<u32> = got
                .iter()
                .filter(|m| m.type_id == 8)
                .map(|m| m.timestamp)
                .collect();
            assert!(audio[1] > 19_999_900 && audio.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn ffmpeg_capture_re_encodes_identically() {
        for capture in [FFMPEG_PUBLISH, FFMPEG_PUBLISH_EXTTS] {
            let msgs = decode_all(
                &mut ChunkDecoder::new(DecoderLimits::default()),
                capture,
                4096,
            );
            round_trip(&msgs, &[1, 333]);
        }
    }
}

#[cfg(test)]
mod standalone_tests {
    use super::*;

    /// A standalone encoding decodes to the same message as the stateful encoder's, after any
    /// earlier message on the same chunk stream (fmt 0 needs no history).
    #[test]
    fn standalone_encoding_decodes_like_the_stateful_one() {
        for &(chunk, len, ts) in &[
            (128u32, 0usize, 0u32),
            (128, 1, 40),
            (128, 128, 80),
            (128, 129, 120),
            (4096, 10_000, 0x00FF_FFFE),
            (4096, 10_000, 0x0100_0000),
            (3, 17, 7),
            (60_000, 70_000, 0xFFFF_FFFF),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let prefix = [0x17u8, 1, 0, 0, 0];
            let header = MessageHeader {
                csid: 6,
                timestamp: ts,
                type_id: 9,
                stream_id: 1,
            };
            // An earlier message on the same csid, so a compressed header would be wrong.
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk);
            let mut q = OutQueue::new();
            let earlier = MessageHeader {
                timestamp: 5,
                ..header
            };
            enc.encode(&earlier, &Bytes::from_static(b"abc"), &mut q)
                .unwrap();
            let mut wire = BytesMut::new();
            while !q.is_empty() {
                let taken = {
                    let mut slices = [IoSlice::new(&[]); 256];
                    let n = q.io_slices(&mut slices);
                    for s in &slices[..n] {
                        wire.extend_from_slice(s);
                    }
                    slices[..n].iter().map(|s| s.len()).sum::<usize>()
                };
                q.advance(taken);
            }
            let payload = Bytes::from(payload);
            for piece in encode_standalone(&header, &prefix, &payload, chunk).unwrap() {
                wire.extend_from_slice(&piece);
            }

            let mut dec = ChunkDecoder::new(DecoderLimits {
                max_message_size: 1 << 20,
                ..DecoderLimits::default()
            });
            dec.set_chunk_size(chunk).unwrap();
            let first = dec.decode(&mut wire).unwrap().expect("first message");
            assert_eq!(&first.payload[..], b"abc");
            let m = dec.decode(&mut wire).unwrap().expect("standalone message");
            assert!(wire.is_empty(), "chunk {chunk} len {len}: bytes left over");
            assert_eq!((m.csid, m.timestamp, m.type_id, m.stream_id), (6, ts, 9, 1));
            let mut want = prefix.to_vec();
            want.extend_from_slice(&payload);
            assert_eq!(&m.payload[..], &want[..], "chunk {chunk} len {len}");
        }
    }

    #[test]
    fn standalone_encoding_refuses_what_the_stateful_one_refuses() {
        let h = MessageHeader {
            csid: 1,
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
        };
        assert!(encode_standalone(&h, &[], &Bytes::from_static(b"x"), 128).is_err());
    }
}
