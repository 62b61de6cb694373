//! SRT players: every player of a stream is driven by that stream's feed task ([`crate::feed`]).
//!
//! A player's connection is a [`Link`] (srt-protocol's state machine). The feed task hands
//! each muxed item to every link and writes their packets to the socket in the same wake-up,
//! and the endpoint gathers the players' ACKs and NAKs in one inbox: a stream costs one task
//! wake-up per item, per timer tick and per NAK, not one per player and packet. Timers of all
//! links are served together on a coarse tick.

use crate::endpoint::{Link, Outbox};
use crate::feed::{Cursor, GopCache, Item};
use crate::{CLOSE_TIMEOUT, PAYLOAD_SIZE};
use bytes::Bytes;
use hub::{Seat, SentMeter};
use srt_protocol::packet::Packet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Timers of the players are served at most this often (ACK, NAK and keep-alive periods are
/// 10 ms and more); data and the peers' packets are handled as they come.
const TICK: Duration = Duration::from_millis(10);

/// The first multiple of [`TICK`] from `epoch` that is after `now` and not before `due`.
///
/// Each link's timers run on their own phase; fifty links due at fifty instants would wake
/// the feed fifty times a period. On one grid they are served together.
fn on_grid(epoch: Instant, now: Instant, due: Instant) -> Instant {
    let tick = TICK.as_nanos();
    let after_now = now.saturating_duration_since(epoch).as_nanos() / tick + 1;
    let covering = due
        .saturating_duration_since(epoch)
        .as_nanos()
        .div_ceil(tick);
    let k = after_now.max(covering);
    epoch + Duration::from_nanos(u64::try_from(k * tick).unwrap_or(u64::MAX))
}

/// Why a play ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayEnd {
    /// The publisher left.
    Unpublished,
    /// The peer closed the connection, or stopped answering.
    PeerClosed,
    /// Kicked through the API, or the SRT output was switched off.
    Kicked,
    /// The server is shutting down.
    Shutdown,
}

/// A player on its way into a feed.
#[derive(Debug)]
pub struct Join {
    /// The player's connection, its packets already queued to the feed.
    pub link: Link,
    /// Its seat in the hub (reader accounting, kicks, bytes out).
    pub seat: Seat,
    /// Told why the play ended.
    pub done: oneshot::Sender<PlayEnd>,
}

#[derive(Debug)]
struct Player {
    link: Link,
    /// Held for the reader accounting; released when the play ends.
    _seat: Seat,
    meter: SentMeter,
    kill: CancellationToken,
    done: Option<oneshot::Sender<PlayEnd>>,
    cursor: Cursor,
    /// When its timers are next due.
    due: Instant,
    /// Closing: why, and the latest it may take.
    closing: Option<(PlayEnd, Instant)>,
}

impl Player {
    fn send(&mut self, now: Instant, payloads: &[Bytes], bytes: usize) {
        self.link.push(now, payloads);
        self.meter.record(bytes);
        self.due = now;
    }

    fn close(&mut self, now: Instant, why: PlayEnd) {
        if self.closing.is_none() {
            self.closing = Some((why, now + CLOSE_TIMEOUT));
            self.link.close(now);
            self.due = now;
        }
    }
}

/// The players of one stream.
#[derive(Debug)]
pub(crate) struct Players {
    /// Where the timer grid starts.
    epoch: Instant,
    players: Vec<Player>,
    by_addr: HashMap<SocketAddr, usize>,
    outbox: Option<Outbox>,
    /// Scratch: one item split into payloads, shared by every player.
    payloads: Vec<Bytes>,
}

impl Default for Players {
    fn default() -> Players {
        Players {
            epoch: Instant::now(),
            players: Vec::new(),
            by_addr: HashMap::new(),
            outbox: None,
            payloads: Vec::new(),
        }
    }
}

impl Players {
    /// Whether no player is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.players.is_empty()
    }

    /// Seats a player; it starts with the cached GOP.
    pub(crate) fn add(&mut self, now: Instant, join: Join, gop: &GopCache) {
        let Join { link, seat, done } = join;
        if self.outbox.is_none() {
            self.outbox = Some(Outbox::new(link.socket().clone()));
        }
        self.by_addr.insert(link.remote(), self.players.len());
        let mut p = Player {
            kill: seat.kill_token(),
            meter: seat.meter(),
            link,
            _seat: seat,
            done: Some(done),
            cursor: gop.cursor(),
            due: now,
            closing: None,
        };
        for item in gop.items() {
            let bytes = split(item, &mut self.payloads);
            p.send(now, &self.payloads, bytes);
        }
        self.players.push(p);
    }

    /// Hands `item` to every player; it is cut into payloads once for all of them.
    pub(crate) fn deliver(&mut self, now: Instant, item: &Item) {
        let bytes = split(item, &mut self.payloads);
        for p in &mut self.players {
            if p.closing.is_some() || !p.cursor.admit(item) {
                continue;
            }
            match item {
                Item::Ts { .. } => p.send(now, &self.payloads, bytes),
                Item::End => p.close(now, PlayEnd::Unpublished),
            }
        }
    }

    /// Ends every play for `why` (gracefully, within the close timeout).
    pub(crate) fn close_all(&mut self, now: Instant, why: PlayEnd) {
        for p in &mut self.players {
            p.close(now, why);
        }
    }

    /// Takes in a packet from a player's peer.
    pub(crate) fn handle(&mut self, now: Instant, packet: (Packet, SocketAddr)) {
        if let Some(&i) = self.by_addr.get(&packet.1) {
            let p = &mut self.players[i];
            p.link.handle(now, packet);
            p.due = now;
        }
    }

    /// Serves due timers, sends what is queued, ends finished plays; returns when the next
    /// call is due (`None` without players).
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Instant> {
        let out = self.outbox.as_mut()?;
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.players.len() {
            let p = &mut self.players[i];
            if p.closing.is_none() && p.kill.is_cancelled() {
                p.close(now, PlayEnd::Kicked);
            }
            if p.due <= now {
                p.due = on_grid(self.epoch, now, p.link.poll(now, out));
            }
            let end = match p.closing {
                _ if !p.link.is_open() => Some(p.closing.map_or(PlayEnd::PeerClosed, |c| c.0)),
                Some((why, by)) if now >= by => Some(why),
                _ => None,
            };
            if let Some(why) = end {
                remove(&mut self.players, &mut self.by_addr, i, why);
                continue;
            }
            let due = self.players[i].due;
            next = Some(next.map_or(due, |n| n.min(due)));
            i += 1;
        }
        out.flush();
        next
    }

    /// Whether datagrams wait for room in the socket.
    pub(crate) fn is_stalled(&self) -> bool {
        self.outbox.as_ref().is_some_and(Outbox::is_stalled)
    }

    /// Waits for room in the socket and sends what waited.
    pub(crate) async fn unstall(&mut self) {
        if let Some(out) = self.outbox.as_mut() {
            out.unstall().await;
        }
    }
}

/// Ends the play of `players[i]` for `why`.
fn remove(
    players: &mut Vec<Player>,
    by_addr: &mut HashMap<SocketAddr, usize>,
    i: usize,
    why: PlayEnd,
) {
    let mut p = players.swap_remove(i);
    by_addr.remove(&p.link.remote());
    if let Some(moved) = players.get(i) {
        by_addr.insert(moved.link.remote(), i);
    }
    if p.cursor.dropped() > 0 {
        debug!(peer = %p.link.remote(), skipped = p.cursor.dropped(), "srt player skipped TS");
    }
    let st = p.link.statistics();
    debug!(
        peer = %p.link.remote(),
        ?why,
        sent = st.tx_data,
        retransmitted = st.tx_retransmit_data,
        dropped = st.tx_dropped_data,
        acks = st.rx_ack,
        light_acks = st.rx_light_ack,
        naks = st.rx_nak,
        "srt play ended"
    );
    if let Some(done) = p.done.take() {
        let _ = done.send(why);
    }
}

/// Cuts `item`'s TS into `out` (emptied first); returns its bytes.
fn split(item: &Item, out: &mut Vec<Bytes>) -> usize {
    out.clear();
    match item {
        Item::Ts { data, .. } => split_into(data, out),
        Item::End => 0,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fall_on_one_grid_strictly_after_now() {
        let epoch = Instant::now();
        let ms = |n: u64| epoch + Duration::from_millis(n);
        // Due at once or soon: the next grid point after now.
        assert_eq!(on_grid(epoch, ms(3), ms(0)), ms(10));
        assert_eq!(on_grid(epoch, ms(3), ms(7)), ms(10));
        // Exactly on a grid point that is still ahead: kept.
        assert_eq!(on_grid(epoch, ms(3), ms(20)), ms(20));
        // Now on a grid point: the next one, so the feed never spins.
        assert_eq!(on_grid(epoch, ms(10), ms(10)), ms(20));
        // Later: rounded up.
        assert_eq!(on_grid(epoch, ms(3), ms(1001)), ms(1010));
    }

    #[test]
    fn items_split_into_whole_payloads_sharing_one_buffer() {
        let data = Bytes::from(vec![0x47u8; 188 * 17]);
        let mut out = Vec::new();
        assert_eq!(split_into(&data, &mut out), 188 * 17);
        let lens: Vec<usize> = out.iter().map(Bytes::len).collect();
        assert_eq!(lens, [PAYLOAD_SIZE, PAYLOAD_SIZE, 188 * 3]);
        assert_eq!(out[0].as_ptr(), data.as_ptr(), "a slice, not a copy");
    }
}
