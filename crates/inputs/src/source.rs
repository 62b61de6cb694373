//! What a driver hands the supervisor, and the channel it hands it through.

use media::{Frame, MediaInfo};
use tokio::sync::mpsc;

/// One thing an input produced.
#[derive(Debug)]
pub enum SourceEvent {
    /// The input's tracks (first, and again when a codec configuration changes).
    Tracks(Box<MediaInfo>),
    /// One access unit, in the input's own timeline.
    Frame(Frame),
    /// The input stopped delivering: connection lost, publisher left, end of data.
    Down(String),
}

/// An event tagged with the run of the input that produced it: every start of an input gets a
/// new id, so events from a driver that was already replaced are ignored.
#[derive(Debug)]
pub(crate) struct Tagged {
    pub(crate) lane: u64,
    pub(crate) event: SourceEvent,
}

/// A driver's way into its stream's supervisor. Sending waits when the supervisor is behind,
/// which slows only this input's own socket reads.
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Tagged>,
    lane: u64,
}

/// The supervisor is gone; the driver should stop.
#[derive(Debug, thiserror::Error)]
#[error("the stream's supervisor stopped")]
pub struct Closed;

impl Emitter {
    pub(crate) fn new(tx: mpsc::Sender<Tagged>, lane: u64) -> Self {
        Emitter { tx, lane }
    }

    /// Hands `event` to the supervisor.
    pub async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx
            .send(Tagged {
                lane: self.lane,
                event,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Announces tracks.
    pub async fn tracks(&self, info: MediaInfo) -> Result<(), Closed> {
        self.send(SourceEvent::Tracks(Box::new(info))).await
    }

    /// Forwards one frame.
    pub async fn frame(&self, frame: Frame) -> Result<(), Closed> {
        self.send(SourceEvent::Frame(frame)).await
    }
}
