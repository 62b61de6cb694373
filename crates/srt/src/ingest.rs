//! SRT publisher: payloads → [`mpegts::TsDemuxer`] → hub.

use crate::{Error, MediaSocket};
use hub::Publisher;
use mpegts::{DemuxEvent, TsDemuxer};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Why an ingest ended (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestEnd {
    /// The peer closed the connection.
    PeerClosed,
    /// Nothing arrived within the publisher timeout.
    Silent,
    /// Kicked through the API or the stream was disabled.
    Kicked,
    /// The server is shutting down.
    Shutdown,
}

/// Feeds everything `socket` receives into `publisher` until one side ends.
///
/// The publisher is dropped (unpublishing the code) when this returns.
pub async fn run<S: MediaSocket>(
    mut socket: S,
    publisher: Publisher,
    silent_timeout: Duration,
    shutdown: CancellationToken,
) -> Result<IngestEnd, Error> {
    let mut demux = TsDemuxer::new();
    let kill = publisher.kill_token();
    let end = loop {
        let payload = tokio::select! {
            _ = shutdown.cancelled() => break IngestEnd::Shutdown,
            _ = kill.cancelled() => break IngestEnd::Kicked,
            r = tokio::time::timeout(silent_timeout, socket.recv()) => match r {
                Err(_) => break IngestEnd::Silent,
                Ok(None) => break IngestEnd::PeerClosed,
                Ok(Some(Err(e))) => {
                    socket.close().await;
                    return Err(e.into());
                }
                Ok(Some(Ok(payload))) => payload,
            },
        };
        demux.push(&payload);
        drain(&mut demux, &publisher);
    };
    // The last PES has no successor to end it; flush so its frame is not lost.
    demux.flush();
    drain(&mut demux, &publisher);
    match end {
        IngestEnd::Silent => {
            warn!(timeout = ?silent_timeout, "srt publisher sent nothing; closing")
        }
        IngestEnd::Kicked => info!("srt publisher kicked"),
        _ => debug!(?end, "srt ingest ended"),
    }
    socket.close().await;
    Ok(end)
}

fn drain(demux: &mut TsDemuxer, publisher: &Publisher) {
    while let Some(ev) = demux.poll_event() {
        match ev {
            DemuxEvent::Tracks(info) => publisher.announce(*info),
            DemuxEvent::Frame(frame) => publisher.write(frame),
            DemuxEvent::Discontinuity { pid, reason } => debug!(pid, reason, "ts discontinuity"),
        }
    }
}
