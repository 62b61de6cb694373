//! A hand-driven RTMP client over a blocking socket, built from the `rtmp` crate's sans-I/O
//! pieces, for sending exactly the bytes a hostile or broken peer would.

use bytes::{Bytes, BytesMut};
use rtmp::amf0::Amf0Value;
use rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, MessageHeader, OutQueue, RawMessage};
use rtmp::handshake::ClientHandshake;
use rtmp::message::{self, Message};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How a read attempt ended.
#[derive(Debug)]
pub enum ReadOutcome {
    Data,
    /// EOF, or the peer reset the connection: either way it is closed.
    Closed,
    TimedOut,
}

#[derive(Debug)]
pub struct RawClient {
    sock: TcpStream,
    rbuf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        sock.set_nodelay(true).expect("nodelay");
        sock.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("write timeout");
        RawClient {
            sock,
            rbuf: BytesMut::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            encoder: ChunkEncoder::new(),
        }
    }

    /// Writes raw bytes; errors are returned (the server may close while we write).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Half-closes our side.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// One read into the buffer, waiting at most `timeout`.
    pub fn read_some(&mut self, timeout: Duration) -> ReadOutcome {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut buf = [0u8; 16 << 10];
        match self.sock.read(&mut buf) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => {
                self.rbuf.extend_from_slice(&buf[..n]);
                ReadOutcome::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ReadOutcome::TimedOut
            }
            Err(_) => ReadOutcome::Closed,
        }
    }

    /// Reads until at least `n` bytes are buffered.
    pub fn read_at_least(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.rbuf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(left) {
                ReadOutcome::Data => {}
                other => panic!(
                    "wanted {n} bytes from the server, got {} then {other:?}",
                    self.rbuf.len()
                ),
            }
        }
    }

    /// Full client handshake: C0C1, S0S1S2, C2.
    pub fn handshake(&mut self) {
        let mut hs = ClientHandshake::new(0, 0x5EED_1234);
        let c0c1 = hs.poll_transmit().expect("C0C1 ready");
        self.write(&c0c1).expect("write C0C1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !hs.is_done() {
            hs.feed(&mut self.rbuf).expect("server handshake is valid");
            if let Some(c2) = hs.poll_transmit() {
                self.write(&c2).expect("write C2");
            }
            if hs.is_done() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(left) {
                ReadOutcome::Data => {}
                other => panic!("handshake: {other:?} after {} bytes", self.rbuf.len()),
            }
        }
    }

    /// Encodes and writes one message.
    pub fn send(&mut self, csid: u32, type_id: u8, stream_id: u32, payload: &Bytes) {
        let mut q = OutQueue::new();
        let header = MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        self.encoder
            .encode(&header, payload, &mut q)
            .expect("encodable message");
        let mut bytes = Vec::with_capacity(q.len_bytes());
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = q.io_slices(&mut slices);
            let len: usize = slices[..n].iter().map(|s| s.len()).sum();
            for s in &slices[..n] {
                bytes.extend_from_slice(s);
            }
            q.advance(len);
        }
        self.write(&bytes).expect("write message");
    }

    /// Sends `connect` with `object` as its command object.
    pub fn send_connect(&mut self, object: &Amf0Value) {
        let body = message::command("connect", 1.0, object, &[]);
        self.send(message::CSID_COMMAND, message::TYPE_COMMAND_AMF0, 0, &body);
    }

    /// `connect` to `app` and waits for its `_result`.
    pub fn connect_app(&mut self, app: &str, tc_url: &str) {
        self.send_connect(&Amf0Value::object([
            ("app", app.into()),
            ("tcUrl", tc_url.into()),
            ("flashVer", "FMLE/3.0 (compatible; ferrocast-e2e)".into()),
        ]));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .next_message(left)
                .unwrap_or_else(|| panic!("no answer to connect within 5 s"));
            if let Some(name) = command_name(&msg)
                && name != "onBWDone"
            {
                assert_eq!(name, "_result", "connect was not accepted");
                return;
            }
        }
    }

    /// The next complete message from the server, applying its Set Chunk Size; `None` if the
    /// connection closed or nothing came within `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<RawMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self
                .decoder
                .decode(&mut self.rbuf)
                .expect("server chunk stream is valid")
            {
                if m.type_id == message::TYPE_SET_CHUNK_SIZE
                    && let Ok(Message::SetChunkSize(size)) = Message::parse(m.type_id, &m.payload)
                {
                    self.decoder.set_chunk_size(size).expect("sane chunk size");
                }
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.read_some(left) {
                ReadOutcome::Data => {}
                ReadOutcome::Closed | ReadOutcome::TimedOut => return None,
            }
        }
    }

    /// Reads (and decodes what it can) until the server closes the connection; returns the
    /// time it took and the names of the commands received meanwhile. Panics after `within`.
    pub fn expect_closed(&mut self, within: Duration) -> (Duration, Vec<String>) {
        let start = Instant::now();
        let mut commands = Vec::new();
        let mut decodable = true;
        loop {
            while decodable {
                match self.decoder.decode(&mut self.rbuf) {
                    Ok(Some(m)) => commands.extend(command_name(&m)),
                    Ok(None) => break,
                    Err(_) => decodable = false,
                }
            }
            if !decodable {
                self.rbuf.clear();
            }
            let left = within.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "the server kept the connection open for {within:?} (commands received: \
                 {commands:?})"
            );
            if let ReadOutcome::Closed = self.read_some(left) {
                return (start.elapsed(), commands);
            }
        }
    }
}

/// Name of an AMF0 command message.
pub fn command_name(m: &RawMessage) -> Option<String> {
    match Message::parse(m.type_id, &m.payload) {
        Ok(Message::Command(c)) => Some(c.name),
        _ => None,
    }
}

/// `n` pseudo-random bytes from a fixed seed (xorshift64*), reproducible run to run.
pub fn pseudo_random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}
