//! The server side of RFC 6455 that a player needs, sans I/O: binary frames out whose payload
//! is a list of shared pieces (written with vectored I/O, never copied into a frame buffer),
//! and the client's frames in, of which only ping and close matter.
//!
//! Frame headers are parsed and formatted by tungstenite's [`FrameHeader`]; tungstenite's
//! own `WebSocketStream` is not used for this output because it formats every message into
//! its write buffer, a copy of every payload for every viewer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{Cursor, IoSlice};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Largest control frame payload (RFC 6455 5.5).
const MAX_CONTROL: u64 = 125;

/// A client frame the server answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    /// Answer with a pong carrying the same bytes (RFC 6455 5.5.2).
    Ping(Bytes),
    /// The client closes (RFC 6455 5.5.1): answer with a close and hang up.
    Close,
}

/// Why the client's bytes are not WebSocket.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WsError {
    /// A header tungstenite refuses (a reserved opcode).
    #[error("invalid websocket frame header: {0}")]
    Header(String),
    /// RFC 6455 5.1: a client must mask every frame.
    #[error("unmasked client frame")]
    Unmasked,
    /// RFC 6455 5.5: control frames are final and at most 125 bytes.
    #[error("control frame of {0} bytes or fragmented")]
    BadControl(u64),
}

impl WsError {
    /// The close code to send before hanging up.
    pub(crate) fn close_code(&self) -> CloseCode {
        CloseCode::Protocol
    }
}

/// Incremental reader of client frames. A player has nothing to say: text and binary
/// messages are skipped as they arrive, never buffered, so memory stays at one control frame.
#[derive(Debug, Default)]
pub(crate) struct ClientFrames {
    buf: BytesMut,
    /// Payload bytes of a data frame still to skip.
    skip: u64,
}

impl ClientFrames {
    /// The buffer to read into; call [`ClientFrames::next`] after every read.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(2048);
        }
        &mut self.buf
    }

    /// Bytes held: a partial frame header and at most one control payload.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame that needs an answer, `Ok(None)` when more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<ClientFrame>, WsError> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let mut cursor = Cursor::new(&self.buf[..]);
            let Some((header, len)) =
                FrameHeader::parse(&mut cursor).map_err(|e| WsError::Header(e.to_string()))?
            else {
                return Ok(None);
            };
            // The cursor is over the buffer, so its position fits in usize.
            let head = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            let Some(mask) = header.mask else {
                return Err(WsError::Unmasked);
            };
            let control = match header.opcode {
                OpCode::Control(c) => c,
                OpCode::Data(_) => {
                    self.buf.advance(head);
                    self.skip = len;
                    continue;
                }
            };
            if len > MAX_CONTROL || !header.is_final {
                return Err(WsError::BadControl(len));
            }
            // len <= 125.
            let len = len as usize;
            if self.buf.len() < head + len {
                return Ok(None);
            }
            self.buf.advance(head);
            let mut payload = self.buf.split_to(len);
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match control {
                Control::Ping => return Ok(Some(ClientFrame::Ping(payload.freeze()))),
                Control::Close => return Ok(Some(ClientFrame::Close)),
                // Pongs answer nothing we asked; reserved opcodes never parse.
                _ => continue,
            }
        }
    }
}

/// An unmasked, final server frame header for a payload of `len` bytes.
fn header(opcode: OpCode, len: usize) -> Bytes {
    let h = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let mut out = Vec::with_capacity(10);
    // Writing into a Vec cannot fail.
    let _ = h.format(len as u64, &mut out);
    Bytes::from(out)
}

/// One binary message carrying `pieces` in order: the frame header, then the pieces as given.
pub(crate) fn binary(pieces: Vec<Bytes>) -> Pieces {
    let len = pieces.iter().map(Bytes::len).sum();
    let mut out = Pieces::default();
    out.push(header(OpCode::Data(Data::Binary), len));
    for p in pieces {
        out.push(p);
    }
    out
}

/// A pong echoing a ping's payload.
pub(crate) fn pong(payload: Bytes) -> Pieces {
    let mut out = Pieces::default();
    out.push(header(OpCode::Control(Control::Pong), payload.len()));
    out.push(payload);
    out
}

/// A close frame with `code` and a short `reason` (at most 123 bytes are kept).
pub(crate) fn close(code: CloseCode, reason: &str) -> Pieces {
    let mut reason = reason.as_bytes();
    reason = &reason[..reason.len().min(123)];
    let mut body = BytesMut::with_capacity(2 + reason.len());
    body.put_u16(code.into());
    body.put_slice(reason);
    let mut out = Pieces::default();
    out.push(header(OpCode::Control(Control::Close), body.len()));
    out.push(body.freeze());
    out
}

/// A list of shared buffers read as one [`Buf`], so a vectored write takes them all at once.
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    list: VecDeque<Bytes>,
    remaining: usize,
}

impl Pieces {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.list.push_back(b);
        }
    }
}

impl Buf for Pieces {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.list.front().map_or(&[], |b| &b[..])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(&self.list) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of Pieces");
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.list.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.list.pop_front();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tungstenite::protocol::frame::Frame;

    /// A masked client frame as a browser sends it.
    pub(crate) fn client(opcode: OpCode, payload: &[u8], is_final: bool) -> Vec<u8> {
        let header = FrameHeader {
            is_final,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: Some([0x12, 0x34, 0x56, 0x78]),
        };
        let mut out = Vec::new();
        Frame::from_payload(header, Bytes::copy_from_slice(payload))
            .format(&mut out)
            .unwrap();
        out
    }

    fn drain(p: &mut Pieces) -> Vec<u8> {
        let mut out = Vec::new();
        while p.has_remaining() {
            let c = p.chunk().to_vec();
            p.advance(c.len());
            out.extend(c);
        }
        out
    }

    #[test]
    fn binary_frames_parse_as_websocket_and_share_their_payloads() {
        let big = Bytes::from(vec![7u8; 70_000]);
        for payload in [
            vec![Bytes::from_static(b"FLV")],
            vec![Bytes::from_static(&[1; 200]), big.clone()],
        ] {
            let want: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
            let ptrs: Vec<*const u8> = payload.iter().map(|b| b.as_ptr()).collect();
            let mut p = binary(payload);
            let mut slices = [IoSlice::new(&[]); 8];
            let n = p.chunks_vectored(&mut slices);
            assert_eq!(n, ptrs.len() + 1);
            for (s, ptr) in slices[1..n].iter().zip(&ptrs) {
                assert_eq!(s.as_ptr(), *ptr, "payload copied");
            }
            let bytes = drain(&mut p);
            let mut cursor = Cursor::new(&bytes);
            let (h, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert_eq!(h.opcode, OpCode::Data(Data::Binary));
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(len as usize, want.len());
            assert_eq!(&bytes[cursor.position() as usize..], &want[..]);
        }
    }

    #[test]
    fn partial_advance_keeps_the_rest() {
        let mut p = binary(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
        ]);
        assert_eq!(p.remaining(), 2 + 7);
        p.advance(3);
        assert_eq!(p.chunk(), b"bc");
        p.advance(3);
        assert_eq!(p.chunk(), b"efg");
        assert_eq!(drain(&mut p), b"efg");
    }

    #[test]
    fn pings_are_unmasked_data_is_skipped_close_is_seen() {
        let mut r = ClientFrames::default();
        let mut bytes = client(OpCode::Data(Data::Binary), &[9; 300], true);
        bytes.extend(client(OpCode::Control(Control::Ping), b"hello", true));
        bytes.extend(client(OpCode::Control(Control::Pong), b"x", true));
        bytes.extend(client(OpCode::Data(Data::Text), b"chat", true));
        bytes.extend(client(OpCode::Control(Control::Close), &[3, 232], true));
        // Byte by byte: every state survives a split anywhere.
        let mut seen = Vec::new();
        for b in &bytes {
            r.buf().put_u8(*b);
            while let Some(f) = r.next().unwrap() {
                seen.push(f);
            }
            assert!(r.buf.len() <= 14 + 125, "buffered {}", r.buf.len());
        }
        assert_eq!(
            seen,
            [
                ClientFrame::Ping(Bytes::from_static(b"hello")),
                ClientFrame::Close
            ]
        );
        // At once, too.
        let mut r = ClientFrames::default();
        r.buf().extend_from_slice(&bytes);
        assert_eq!(
            r.next().unwrap(),
            Some(ClientFrame::Ping(Bytes::from_static(b"hello")))
        );
        assert_eq!(r.next().unwrap(), Some(ClientFrame::Close));
        assert_eq!(r.next().unwrap(), None);
    }

    #[test]
    fn protocol_errors() {
        let mut r = ClientFrames::default();
        // Unmasked (what a server would send).
        r.buf().extend_from_slice(&[0x89, 0]);
        assert_eq!(r.next(), Err(WsError::Unmasked));
        // A ping over 125 bytes.
        let mut r = ClientFrames::default();
        r.buf()
            .extend_from_slice(&client(OpCode::Control(Control::Ping), &[0; 126], true));
        assert_eq!(r.next(), Err(WsError::BadControl(126)));
        // A fragmented close.
        let mut r = ClientFrames::default();
        r.buf()
            .extend_from_slice(&client(OpCode::Control(Control::Close), &[], false));
        assert!(matches!(r.next(), Err(WsError::BadControl(0))));
        // A reserved opcode.
        let mut r = ClientFrames::default();
        r.buf().extend_from_slice(&[0x83, 0x80, 0, 0, 0, 0]);
        assert!(matches!(r.next(), Err(WsError::Header(_))));
        assert_eq!(WsError::Unmasked.close_code(), CloseCode::Protocol);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_grow() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut r = ClientFrames::default();
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                r.buf().put_u8((seed >> 24) as u8);
                if r.next().is_err() {
                    break;
                }
                assert!(r.buf.len() <= 14 + 125);
            }
        }
    }

    #[test]
    fn close_and_pong_frames() {
        let bytes = drain(&mut close(CloseCode::Away, "server shutting down"));
        let mut cursor = Cursor::new(&bytes);
        let (h, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(h.opcode, OpCode::Control(Control::Close));
        assert_eq!(len as usize, 2 + "server shutting down".len());
        let body = &bytes[cursor.position() as usize..];
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), 1001);
        let long = "x".repeat(300);
        assert_eq!(drain(&mut close(CloseCode::Normal, &long)).len(), 2 + 125);
        assert_eq!(
            drain(&mut pong(Bytes::from_static(b"hi"))),
            [0x8A, 2, b'h', b'i']
        );
    }
}
