//! One driver per source kind. Each runs one connection to its source and returns when it
//! ends; the input's worker (crate::worker) owns reconnection and backoff. Drivers are
//! cancelled by drop, so every resource they hold (sockets, ffmpeg children) is released by
//! its own `Drop`.

mod file;
pub(crate) mod fmp4;
pub(crate) mod hls;
mod rtmp;
mod rtsp;
mod ts;

use crate::source::{Closed, Emitter};
use crate::url::Kind;
use store::InputSpec;

/// Why one connection to a source ended.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The source could not be reached or refused us (DNS, TCP, auth, 404).
    #[error("connect: {0}")]
    Connect(String),
    /// The source answered with something we cannot use.
    #[error("{0}")]
    Source(String),
    /// The source ended (EOF, closed connection, stream finished).
    #[error("ended: {0}")]
    Ended(String),
    /// The supervisor stopped; not a source failure.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// Limits every driver respects.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Budget for connecting and the first answer.
    pub connect_timeout: std::time::Duration,
    /// Largest HLS playlist or segment fetched.
    pub max_download_bytes: usize,
    /// The ffmpeg binary for `file://` and `rtsps://` inputs.
    pub ffmpeg: std::path::PathBuf,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            connect_timeout: std::time::Duration::from_secs(10),
            max_download_bytes: 64 << 20,
            ffmpeg: "ffmpeg".into(),
        }
    }
}

/// Runs one connection of `spec` until it ends or the future is dropped.
pub(crate) async fn run_once(
    spec: &InputSpec,
    kind: Kind,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    match kind {
        Kind::Publish => Err(InputError::Source(
            "publish:// inputs are fed by encoders, not pulled".into(),
        )),
        Kind::Rtmp => rtmp::run(&spec.url, out, config).await,
        Kind::Rtsp => rtsp::run(spec, out, config).await,
        Kind::Srt => ts::run_srt(&spec.url, out, config).await,
        Kind::Udp => ts::run_udp(&spec.url, out).await,
        Kind::HttpTs => ts::run_http(&spec.url, out, config).await,
        Kind::Hls => hls::run(&spec.url, out, config).await,
        Kind::File => file::run(&spec.url, out, config).await,
    }
}
