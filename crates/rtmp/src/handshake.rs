//! RTMP plain handshake (spec 5.2), sans-I/O, for both the server and the client side.
//!
//! Only the plain handshake is spoken. Clients that open with the Flash Player 9 "digest"
//! variant of C1 (ffmpeg, librtmp/OBS) fall back to it because our S1 carries a zero version
//! field: ffmpeg only validates the server digest when S1 byte 4 >= 3 (`rtmp_handshake` in
//! libavformat/rtmpproto.c), librtmp skips it when `serversig[4] == 0`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The only RTMP version spoken: C0/S0 byte of the plain handshake.
pub const RTMP_VERSION: u8 = 3;
/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// Errors a handshake peer can cause.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// C0/S0 was not 3 (the byte is at offset 0 of the connection).
    #[error("unsupported RTMP version {0} at offset 0 (only 3 is supported)")]
    UnsupportedVersion(u8),
}

/// Progress of a handshake after feeding it bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// More bytes must be received (and possibly transmitted).
    InProgress,
    /// The handshake is over; remaining input is chunk stream data.
    Done,
}

/// Server side of the plain handshake: reads C0C1 then C2, answers S0S1S2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    epoch_ms: u32,
    rng: XorShift,
    transmit: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

impl ServerHandshake {
    /// Creates a server handshake; `epoch_ms` is our S1 time, `random_seed` feeds S1's filler.
    pub fn new(epoch_ms: u32, random_seed: u64) -> Self {
        Self {
            state: ServerState::AwaitC0C1,
            epoch_ms,
            rng: XorShift::new(random_seed),
            transmit: None,
        }
    }

    /// Consumes the handshake bytes it needs from `input`; leftover chunk data stays there.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<HandshakeStatus, HandshakeError> {
        if self.state == ServerState::AwaitC0C1 {
            // Reject on the first byte so that HTTP or TLS probes fail before 1537 bytes arrive.
            match input.first() {
                None => return Ok(HandshakeStatus::InProgress),
                Some(&v) if v != RTMP_VERSION => return Err(HandshakeError::UnsupportedVersion(v)),
                Some(_) => {}
            }
            if input.len() < 1 + HANDSHAKE_SIZE {
                return Ok(HandshakeStatus::InProgress);
            }
            input.advance(1);
            let c1 = input.split_to(HANDSHAKE_SIZE);
            let mut out = BytesMut::with_capacity(1 + 2 * HANDSHAKE_SIZE);
            out.put_u8(RTMP_VERSION);
            put_c1s1(&mut out, self.epoch_ms, &mut self.rng);
            put_echo(&mut out, &c1, self.epoch_ms);
            self.transmit = Some(out.freeze());
            self.state = ServerState::AwaitC2;
        }
        if self.state == ServerState::AwaitC2 {
            // C2 is not validated: many clients (and the FP9 variant) do not echo S1 exactly.
            if input.len() < HANDSHAKE_SIZE {
                return Ok(HandshakeStatus::InProgress);
            }
            input.advance(HANDSHAKE_SIZE);
            self.state = ServerState::Done;
        }
        Ok(HandshakeStatus::Done)
    }

    /// Bytes to send to the client: S0+S1+S2 (3073 bytes) once C0C1 has been received.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }

    /// Whether C2 has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }
}

/// Client side of the plain handshake: sends C0C1, reads S0S1 (answers C2), then S2.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    epoch_ms: u32,
    transmit: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0S1,
    AwaitS2,
    Done,
}

impl ClientHandshake {
    /// Creates a client handshake; C0C1 is ready in [`Self::poll_transmit`] right away.
    pub fn new(epoch_ms: u32, random_seed: u64) -> Self {
        let mut rng = XorShift::new(random_seed);
        let mut out = BytesMut::with_capacity(1 + HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        put_c1s1(&mut out, epoch_ms, &mut rng);
        Self {
            state: ClientState::AwaitS0S1,
            epoch_ms,
            transmit: Some(out.freeze()),
        }
    }

    /// Consumes S0S1S2 from `input`; leftover chunk data stays there.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<HandshakeStatus, HandshakeError> {
        if self.state == ClientState::AwaitS0S1 {
            match input.first() {
                None => return Ok(HandshakeStatus::InProgress),
                Some(&v) if v != RTMP_VERSION => return Err(HandshakeError::UnsupportedVersion(v)),
                Some(_) => {}
            }
            if input.len() < 1 + HANDSHAKE_SIZE {
                return Ok(HandshakeStatus::InProgress);
            }
            input.advance(1);
            let s1 = input.split_to(HANDSHAKE_SIZE);
            let mut c2 = BytesMut::with_capacity(HANDSHAKE_SIZE);
            put_echo(&mut c2, &s1, self.epoch_ms);
            // C0C1 may not have been taken yet if the driver feeds before polling; keep order.
            self.transmit = Some(match self.transmit.take() {
                Some(c0c1) => {
                    let mut both = BytesMut::with_capacity(c0c1.len() + c2.len());
                    both.extend_from_slice(&c0c1);
                    both.extend_from_slice(&c2);
                    both.freeze()
                }
                None => c2.freeze(),
            });
            self.state = ClientState::AwaitS2;
        }
        if self.state == ClientState::AwaitS2 {
            // S2 is not validated: servers in the field echo C1 loosely.
            if input.len() < HANDSHAKE_SIZE {
                return Ok(HandshakeStatus::InProgress);
            }
            input.advance(HANDSHAKE_SIZE);
            self.state = ClientState::Done;
        }
        Ok(HandshakeStatus::Done)
    }

    /// Bytes to send to the server: C0+C1 first, then C2 once S1 has been received.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }

    /// Whether S2 has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }
}

/// Writes C1/S1: time, zero version (forces the plain handshake), random filler.
fn put_c1s1(out: &mut BytesMut, epoch_ms: u32, rng: &mut XorShift) {
    out.put_u32(epoch_ms);
    out.put_u32(0);
    for _ in 0..(HANDSHAKE_SIZE - 8) / 8 {
        out.put_u64(rng.next_u64());
    }
}

/// Writes C2/S2 echoing the peer's C1/S1: its time, our time, its random bytes.
fn put_echo(out: &mut BytesMut, peer: &[u8], epoch_ms: u32) {
    out.put_slice(&peer[..4]);
    out.put_u32(epoch_ms);
    out.put_slice(&peer[8..HANDSHAKE_SIZE]);
}

/// xorshift64*: handshake filler only, not cryptographic.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is the one fixed point of xorshift; replace it with any odd constant.
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_C0C1: &[u8] = include_bytes!("../../../testdata/ffmpeg-c0c1.bin");

    /// Runs a client against a server, moving `step` bytes at a time each way.
    fn converse(step: usize, trailer: &[u8]) -> (BytesMut, BytesMut) {
        let mut server = ServerHandshake::new(1000, 7);
        let mut client = ClientHandshake::new(2000, 9);
        let mut to_server: Vec<u8> = Vec::new();
        let mut to_client: Vec<u8> = Vec::new();
        let mut s_in = BytesMut::new();
        let mut c_in = BytesMut::new();
        let mut trailer_sent = false;
        for _ in 0..100_000 {
            if let Some(b) = client.poll_transmit() {
                to_server.extend_from_slice(&b);
            }
            if client.is_done() && !trailer_sent {
                // Clients send chunk data right behind C2.
                to_server.extend_from_slice(trailer);
                to_client.extend_from_slice(trailer);
                trailer_sent = true;
            }
            if let Some(b) = server.poll_transmit() {
                to_client.extend_from_slice(&b);
            }
            let n = step.min(to_server.len());
            s_in.extend_from_slice(&to_server[..n]);
            to_server.drain(..n);
            let n = step.min(to_client.len());
            c_in.extend_from_slice(&to_client[..n]);
            to_client.drain(..n);
            if !server.is_done() {
                server.feed(&mut s_in).unwrap();
            }
            if !client.is_done() {
                client.feed(&mut c_in).unwrap();
            }
            if trailer_sent
                && server.is_done()
                && client.is_done()
                && to_server.is_empty()
                && to_client.is_empty()
            {
                return (s_in, c_in);
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn client_and_server_agree_whole_and_byte_by_byte() {
        for step in [1, 7, 1536, 1537, 4000] {
            let (s_left, c_left) = converse(step, b"");
            assert!(s_left.is_empty() && c_left.is_empty(), "step {step}");
        }
    }

    #[test]
    fn leftover_chunk_data_stays_in_input() {
        for step in [1, 100, 10_000] {
            let (s_left, c_left) = converse(step, b"\x03chunk");
            assert_eq!(&s_left[..], b"\x03chunk", "step {step}");
            assert_eq!(&c_left[..], b"\x03chunk", "step {step}");
        }
        // All at once: C0C1C2 + data in one read.
        let mut client = ClientHandshake::new(5, 5);
        let mut server = ServerHandshake::new(6, 6);
        let c0c1 = client.poll_transmit().unwrap();
        let mut s_in = BytesMut::from(&c0c1[..]);
        assert_eq!(server.feed(&mut s_in), Ok(HandshakeStatus::InProgress));
        let mut c_in = BytesMut::from(&server.poll_transmit().unwrap()[..]);
        c_in.extend_from_slice(b"xyz");
        assert_eq!(client.feed(&mut c_in), Ok(HandshakeStatus::Done));
        assert_eq!(&c_in[..], b"xyz");
        s_in.extend_from_slice(&client.poll_transmit().unwrap());
        s_in.extend_from_slice(b"abc");
        assert_eq!(server.feed(&mut s_in), Ok(HandshakeStatus::Done));
        assert_eq!(&s_in[..], b"abc");
        // Feeding after Done consumes nothing.
        assert_eq!(server.feed(&mut s_in), Ok(HandshakeStatus::Done));
        assert_eq!(&s_in[..], b"abc");
    }

    #[test]
    fn s0s1s2_layout() {
        let mut client = ClientHandshake::new(0x0102_0304, 1);
        let c0c1 = client.poll_transmit().unwrap();
        assert_eq!(c0c1.len(), 1537);
        assert_eq!(&c0c1[1..9], &[1, 2, 3, 4, 0, 0, 0, 0]);
        let mut server = ServerHandshake::new(0x0A0B_0C0D, 2);
        let mut input = BytesMut::from(&c0c1[..]);
        server.feed(&mut input).unwrap();
        assert!(input.is_empty());
        let out = server.poll_transmit().unwrap();
        assert_eq!(out.len(), 3073);
        assert!(server.poll_transmit().is_none());
        assert_eq!(out[0], 3);
        let (s1, s2) = (&out[1..1537], &out[1537..]);
        assert_eq!(&s1[..8], &[0x0A, 0x0B, 0x0C, 0x0D, 0, 0, 0, 0]);
        assert!(s1[8..].iter().any(|&b| b != 0));
        assert_eq!(&s2[..4], &c0c1[1..5]);
        assert_eq!(&s2[4..8], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(&s2[8..], &c0c1[9..]);
        // C2 echoes S1.
        let mut c_in = BytesMut::from(&out[..]);
        client.feed(&mut c_in).unwrap();
        let c2 = client.poll_transmit().unwrap();
        assert_eq!(&c2[..4], &s1[..4]);
        assert_eq!(&c2[4..8], &[1, 2, 3, 4]);
        assert_eq!(&c2[8..], &s1[8..]);
    }

    #[test]
    fn client_fed_before_polling_keeps_c0c1_first() {
        let mut client = ClientHandshake::new(1, 1);
        let mut server = ServerHandshake::new(2, 2);
        let c0c1 = client.transmit.clone().unwrap();
        server.feed(&mut BytesMut::from(&c0c1[..])).unwrap();
        let mut c_in = BytesMut::from(&server.poll_transmit().unwrap()[..]);
        client.feed(&mut c_in).unwrap();
        let out = client.poll_transmit().unwrap();
        assert_eq!(out.len(), 1537 + 1536);
        assert_eq!(&out[..1537], &c0c1[..]);
    }

    #[test]
    fn bad_version_is_rejected_on_first_byte() {
        let mut server = ServerHandshake::new(0, 0);
        let mut input = BytesMut::from(&b"G"[..]);
        assert_eq!(
            server.feed(&mut input),
            Err(HandshakeError::UnsupportedVersion(b'G'))
        );
        let mut server = ServerHandshake::new(0, 0);
        let mut input = BytesMut::from(&[6u8; 1537][..]);
        assert_eq!(
            server.feed(&mut input),
            Err(HandshakeError::UnsupportedVersion(6))
        );
        let mut client = ClientHandshake::new(0, 0);
        let mut input = BytesMut::from(&[0x16u8, 3, 1][..]);
        assert_eq!(
            client.feed(&mut input),
            Err(HandshakeError::UnsupportedVersion(0x16))
        );
        assert!(server.poll_transmit().is_none());
    }

    #[test]
    fn empty_input_is_in_progress() {
        let mut server = ServerHandshake::new(0, 0);
        assert_eq!(
            server.feed(&mut BytesMut::new()),
            Ok(HandshakeStatus::InProgress)
        );
        let mut client = ClientHandshake::new(0, 0);
        assert_eq!(
            client.feed(&mut BytesMut::new()),
            Ok(HandshakeStatus::InProgress)
        );
    }

    #[test]
    fn ffmpeg_fp9_c0c1_gets_plain_answer() {
        // ffmpeg 5.1 sends the FP9 digest variant: version field 9.0.124.2 in C1 bytes 4..8.
        assert_eq!(FFMPEG_C0C1.len(), 1537);
        assert_eq!(&FFMPEG_C0C1[5..9], &[9, 0, 124, 2]);
        let mut server = ServerHandshake::new(12345, 42);
        let mut input = BytesMut::from(FFMPEG_C0C1);
        assert_eq!(server.feed(&mut input), Ok(HandshakeStatus::InProgress));
        assert!(input.is_empty());
        let out = server.poll_transmit().unwrap();
        assert_eq!(out.len(), 3073);
        assert_eq!(out[0], 3);
        assert_eq!(
            &out[5..9],
            &[0, 0, 0, 0],
            "zero S1 version => plain handshake"
        );
        assert_eq!(&out[1537..1541], &FFMPEG_C0C1[1..5]);
        assert_eq!(&out[1545..], &FFMPEG_C0C1[9..]);
        // ffmpeg then echoes S1 as C2 and sends connect right behind it.
        input.extend_from_slice(&out[1..1537]);
        input.extend_from_slice(&[0x03, 0, 0, 0]);
        assert_eq!(server.feed(&mut input), Ok(HandshakeStatus::Done));
        assert_eq!(&input[..], &[0x03, 0, 0, 0]);
    }

    #[test]
    fn xorshift_zero_seed_is_not_stuck() {
        let mut r = XorShift::new(0);
        assert_ne!(r.next_u64(), 0);
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
