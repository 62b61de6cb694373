//! SRT for ferrocast: one UDP listener whose stream id routes each caller to ingest
//! (SRT → MPEG-TS demux → hub) or play (hub → MPEG-TS mux → SRT).
//!
//! The SRT protocol is srt-protocol's sans-I/O state machines, driven by our own socket layer
//! ([`endpoint`]). A publisher's connection is driven by its ingest task, through
//! [`MediaSocket`]; the players of one stream share one TS mux and one task ([`feed`],
//! [`play`]).

pub mod endpoint;
pub mod feed;
pub mod ingest;
pub mod listener;
pub mod play;
pub mod route;

pub use listener::{Server, ServerConfig, bind};
pub use route::{Route, RouteError};

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::time::Duration;

/// TS packets per SRT payload: 7 × 188 = 1316 bytes fits a 1500-byte MTU with SRT/UDP/IP
/// headers, and is what ffmpeg and srt-live-transmit send.
pub const TS_PER_PAYLOAD: usize = 7;
/// Bytes in one SRT payload.
pub const PAYLOAD_SIZE: usize = TS_PER_PAYLOAD * 188;
/// Longest a graceful close may take before the connection is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors of the SRT server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket-level failure (bind, send, receive).
    #[error("srt i/o: {0}")]
    Io(#[from] io::Error),
    /// The configured passphrase is not 10..=79 bytes (SRT's `SRTO_PASSPHRASE` rule).
    #[error("srt passphrase must be 10..=79 bytes, got {0}")]
    Passphrase(usize),
}

/// The connected-socket operations ingest needs: whole SRT payloads in.
pub trait MediaSocket: Send {
    /// Next payload from the peer; `None` once the connection is closed.
    fn recv(&mut self) -> impl Future<Output = Option<io::Result<Bytes>>> + Send;
    /// Closes the connection, flushing what is queued as far as the peer allows.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

impl MediaSocket for endpoint::Conn {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        endpoint::Conn::recv(self).await.map(Ok)
    }

    async fn close(&mut self) {
        endpoint::Conn::close(self, CLOSE_TIMEOUT).await
    }
}
