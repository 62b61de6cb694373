//! SRT player: its stream's shared [`crate::feed`] → 1316-byte SRT payloads.

use crate::feed::{FeedReader, Item};
use crate::{Error, MediaSocket, PAYLOAD_SIZE};
use bytes::Bytes;
use hub::Seat;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Feed items sent per wake-up, so one burst (the GOP cache) is paced by the socket.
const MAX_BATCH: usize = 64;

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

/// Appends `data` (whole TS packets) as payloads of at most [`PAYLOAD_SIZE`] bytes, each a
/// slice of the shared buffer; returns the bytes added.
fn split_into(data: &Bytes, out: &mut Vec<Bytes>) -> usize {
    let mut at = 0;
    while at < data.len() {
        let end = (at + PAYLOAD_SIZE).min(data.len());
        out.push(data.slice(at..end));
        at = end;
    }
    data.len()
}

/// Sends the stream `seat` is seated at, read through `feed`, to `socket` until the publisher
/// leaves, the peer closes, or a kick.
pub async fn run<S: MediaSocket>(
    mut socket: S,
    seat: Seat,
    mut feed: FeedReader,
    shutdown: CancellationToken,
) -> Result<PlayEnd, Error> {
    let kill = seat.kill_token();
    let meter = seat.meter();
    let mut batch: Vec<Bytes> = Vec::with_capacity(MAX_BATCH);
    let end = loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break PlayEnd::Shutdown,
            _ = kill.cancelled() => break PlayEnd::Kicked,
            item = feed.cursor.recv() => match item {
                Some(Item::Ts { data, .. }) => data,
                Some(Item::End) | None => break PlayEnd::Unpublished,
            },
            // Players send nothing but SRT control traffic; this only notices the close.
            r = socket.recv() => match r {
                None | Some(Err(_)) => break PlayEnd::PeerClosed,
                Some(Ok(_)) => continue,
            },
        };
        let mut bytes = split_into(&first, &mut batch);
        let mut ended = false;
        for _ in 1..MAX_BATCH {
            match feed.cursor.try_recv() {
                Some(Item::Ts { data, .. }) => bytes += split_into(&data, &mut batch),
                Some(Item::End) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        // One hand-over per batch: the connection task wakes once, not once per payload.
        let sent = socket.send_batch(&batch).await;
        batch.clear();
        if let Err(e) = sent {
            debug!(error = %e, "srt send failed");
            break PlayEnd::PeerClosed;
        }
        meter.record(bytes);
        if ended {
            break PlayEnd::Unpublished;
        }
    };
    if feed.cursor.dropped() > 0 {
        debug!(dropped = feed.cursor.dropped(), "srt player fell behind");
    }
    debug!(?end, "srt play ended");
    socket.close().await;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Feeds;
    use hub::{Hub, HubConfig, PublisherMeta, ReaderMeta};
    use media::{Frame, MediaInfo, TrackKind};
    use std::io;
    use std::time::Duration;
    use tokio::sync::mpsc;
    use tokio_util::task::TaskTracker;

    /// A socket whose sent payloads go to a channel; `recv` stays open until dropped.
    struct FakeSocket {
        sent: mpsc::UnboundedSender<Bytes>,
        batches: usize,
    }

    impl MediaSocket for FakeSocket {
        async fn recv(&mut self) -> Option<io::Result<Bytes>> {
            std::future::pending().await
        }
        async fn send_batch(&mut self, payloads: &[Bytes]) -> io::Result<()> {
            self.batches += 1;
            for p in payloads {
                let _ = self.sent.send(p.clone());
            }
            Ok(())
        }
        async fn close(&mut self) {}
    }

    fn reader() -> ReaderMeta {
        ReaderMeta {
            protocol: "srt",
            remote_addr: None,
            client: None,
            args: Vec::new(),
        }
    }

    #[tokio::test]
    async fn players_get_whole_packets_in_payloads_and_end_with_the_publisher() {
        let hub = Hub::new(HubConfig::default());
        let tracker = TaskTracker::new();
        let feeds = Feeds::new(hub.clone(), tracker.clone());
        let publisher = hub.publish("p", PublisherMeta::default()).expect("publish");
        publisher.announce(MediaInfo {
            audio: Some(media::AudioCodec::Aac(
                media::AacConfig::parse(Bytes::from_static(include_bytes!(
                    "../../../testdata/aac-48k-stereo.asc"
                )))
                .expect("ASC"),
            )),
            ..Default::default()
        });
        let mut players = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::unbounded_channel();
            let socket = FakeSocket {
                sent: tx,
                batches: 0,
            };
            let seat = hub.seat("p", reader());
            let feed = feeds.join("p");
            let task = tokio::spawn(run(socket, seat, feed, CancellationToken::new()));
            players.push((task, rx));
        }
        assert_eq!(hub.reader_sessions("p"), 2);
        for i in 0..20 {
            publisher.write(Frame {
                track: TrackKind::Audio,
                dts: i * 1920,
                pts: i * 1920,
                keyframe: true,
                payload: Bytes::from(vec![0x21; 1500]),
            });
        }
        drop(publisher);
        let mut streams = Vec::new();
        for (task, mut rx) in players {
            let end = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("player did not end")
                .expect("player panicked")
                .expect("player failed");
            assert_eq!(end, PlayEnd::Unpublished);
            let mut ts = Vec::new();
            while let Ok(p) = rx.try_recv() {
                assert!(p.len() <= PAYLOAD_SIZE && p.len() % 188 == 0, "{}", p.len());
                ts.extend_from_slice(&p);
            }
            streams.push(ts);
        }
        assert!(!streams[0].is_empty());
        assert_eq!(streams[0], streams[1], "players got different TS");
        assert_eq!(hub.reader_sessions("p"), 0);
    }
}
