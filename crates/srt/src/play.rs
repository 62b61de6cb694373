//! SRT player: hub subscription → [`mpegts::TsMuxer`] → 1316-byte SRT payloads.

use crate::{Error, MediaSocket, PAYLOAD_SIZE};
use bytes::BytesMut;
use hub::{Event, Subscription};
use media::TrackKind;
use mpegts::TsMuxer;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Hub events muxed per wake-up, so one burst (the GOP cache) is paced by the socket.
const MAX_BATCH: usize = 64;
/// Pause before the first payload. srt-tokio sends the handshake response from its listener
/// task and our data from the connection's task, so data can overtake the response; libsrt
/// then drops it and logs "received DATA while HANDSHAKE expected" (ffmpeg prints that).
const HANDSHAKE_HEAD_START: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a play ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayEnd {
    /// The publisher left.
    Unpublished,
    /// The peer closed the connection.
    PeerClosed,
    /// Kicked through the API, or the SRT output was switched off.
    Kicked,
    /// The server is shutting down.
    Shutdown,
}

/// Muxing state of one player: waits for tracks, then for a keyframe (a decoder cannot start
/// elsewhere), then muxes everything.
#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    NoTracks,
    WaitKeyframe,
    Muxing,
}

#[derive(Debug, Default)]
struct Player {
    mux: TsMuxer,
    state: State,
    warned: bool,
}

impl Player {
    fn push(&mut self, ev: Event, out: &mut BytesMut) {
        match ev {
            Event::Tracks { info, .. } => {
                let skipped = self.mux.set_tracks(&info);
                if !skipped.is_empty() && !self.warned {
                    self.warned = true;
                    warn!(?skipped, "tracks not carried over srt");
                }
                self.mux.write_tables(out);
                self.state = if self.mux.carries(TrackKind::Video) {
                    State::WaitKeyframe
                } else {
                    State::Muxing
                };
            }
            Event::Frame(f) => {
                if self.state == State::WaitKeyframe && f.track == TrackKind::Video && f.keyframe {
                    self.state = State::Muxing;
                }
                if self.state != State::Muxing || !self.mux.carries(f.track) {
                    return;
                }
                if let Err(e) = self.mux.write_frame(&f, out) {
                    debug!(error = %e, "frame not muxed");
                }
            }
            Event::End => {}
        }
    }
}

/// Sends `sub` to `socket` until the publisher leaves, the peer closes, or a kick.
pub async fn run<S: MediaSocket>(
    mut socket: S,
    mut sub: Subscription,
    shutdown: CancellationToken,
) -> Result<PlayEnd, Error> {
    let kill = sub.kill_token().unwrap_or_default();
    let mut player = Player::default();
    let mut out = BytesMut::with_capacity(64 << 10);
    tokio::time::sleep(HANDSHAKE_HEAD_START).await;
    let end = 'outer: loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break PlayEnd::Shutdown,
            _ = kill.cancelled() => break PlayEnd::Kicked,
            ev = sub.recv() => match ev {
                Some(Event::End) | None => break PlayEnd::Unpublished,
                Some(ev) => ev,
            },
            // Players send nothing but SRT control traffic; this only notices the close.
            r = socket.recv() => match r {
                None | Some(Err(_)) => break PlayEnd::PeerClosed,
                Some(Ok(_)) => continue,
            },
        };
        player.push(first, &mut out);
        let mut ended = false;
        for _ in 1..MAX_BATCH {
            match sub.try_recv() {
                Some(Event::End) => {
                    ended = true;
                    break;
                }
                Some(ev) => player.push(ev, &mut out),
                None => break,
            }
        }
        // `out` holds whole 188-byte packets, so every payload is a multiple of 188.
        while !out.is_empty() {
            let n = out.len().min(PAYLOAD_SIZE);
            let payload = out.split_to(n).freeze();
            if let Err(e) = socket.send(payload).await {
                debug!(error = %e, "srt send failed");
                break 'outer PlayEnd::PeerClosed;
            }
            sub.record_sent(n);
        }
        if ended {
            break PlayEnd::Unpublished;
        }
    };
    debug!(?end, "srt play ended");
    socket.close().await;
    Ok(end)
}
