//! SRT for ferrocast: one UDP listener whose stream id routes each caller to ingest
//! (SRT → MPEG-TS demux → hub) or play (hub → MPEG-TS mux → SRT).
//!
//! The SRT implementation (`srt-tokio`, dormant since 2024) sits behind [`MediaSocket`], so
//! ingest and play are tested without it and it can be replaced without touching them. Players
//! of one stream share one TS mux ([`feed`]).

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
/// Longest a batch may wait on the SRT sender queue; a peer that stalls longer is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a graceful close may take before the socket is simply dropped.
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
    /// The peer stopped taking data for longer than the send timeout.
    #[error("srt peer stalled for {0:?}")]
    SendTimeout(Duration),
}

/// The connected-socket operations ingest and play need: whole SRT payloads in and out.
pub trait MediaSocket: Send {
    /// Next payload from the peer; `None` once the connection is closed.
    fn recv(&mut self) -> impl Future<Output = Option<io::Result<Bytes>>> + Send;
    /// Queues payloads (each at most [`PAYLOAD_SIZE`] bytes) for sending, in order.
    fn send_batch(&mut self, payloads: &[Bytes]) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the connection, flushing what is queued as far as the peer allows.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

impl MediaSocket for srt_tokio::SrtSocket {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        use futures_util::StreamExt;
        self.next().await.map(|r| r.map(|(_, b)| b))
    }

    async fn send_batch(&mut self, payloads: &[Bytes]) -> io::Result<()> {
        use futures_util::SinkExt;
        // One source time per batch: the payloads of a burst were muxed together, and
        // srt-tokio stamps each packet from it (TSBPD) anyway.
        let now = std::time::Instant::now();
        // `feed` queues without flushing, so the connection task is woken once per batch
        // instead of once per payload; the queue (128 items) still bounds what is in flight.
        let queue = async {
            for p in payloads {
                SinkExt::feed(self, (now, p.clone())).await?;
            }
            SinkExt::flush(self).await
        };
        match tokio::time::timeout(SEND_TIMEOUT, queue).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                Error::SendTimeout(SEND_TIMEOUT),
            )),
        }
    }

    async fn close(&mut self) {
        use futures_util::SinkExt;
        // Data in flight at close can be lost (a known srt-tokio limit); bounded either way.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, SinkExt::close(self)).await;
    }
}
