//! What the SRT integration tests share: an srt-tokio caller (a peer no code here wrote).

use srt_protocol::options::{KeySize, Passphrase};
use srt_tokio::SrtSocket;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest any step of a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// How a caller connects.
#[derive(Clone, Copy, Default)]
pub struct Caller<'a> {
    /// The local UDP port to call from (a free one if `None`).
    pub from_port: Option<u16>,
    /// The AES-128 passphrase, for an encrypted connection.
    pub passphrase: Option<&'a str>,
}

impl Caller<'_> {
    /// Calls `addr` with stream id `sid` (60 ms latency); panics if the handshake stalls.
    pub async fn call(self, addr: SocketAddr, sid: &str) -> std::io::Result<SrtSocket> {
        let mut b = SrtSocket::builder().latency(Duration::from_millis(60));
        if let Some(port) = self.from_port {
            b = b.local("127.0.0.1:0").local_port(port);
        }
        if let Some(p) = self.passphrase {
            let p = Passphrase::try_from(p.to_owned()).expect("passphrase");
            b = b.set(move |o| {
                o.encryption.key_size = KeySize::AES128;
                o.encryption.passphrase = Some(p);
            });
        }
        tokio::time::timeout(WAIT, b.call(addr, Some(sid)))
            .await
            .expect("call timed out")
    }
}

/// A UDP port free on the loopback interface right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}
