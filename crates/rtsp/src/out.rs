//! What an RTSP/TCP connection still owes its client, written with vectored I/O.
//!
//! RTP packets go out as two pieces: the head this reader rewrote (framing and RTP header, 16
//! to 20 bytes, held inline) and the body shared with every other reader of the stream (a
//! `Bytes` slice of the frame). `writev` gathers them, so media bytes are never copied in user
//! space, once per stream or per reader. Responses and RTCP are owned `Bytes`.
//!
//! Sans-I/O: the driver asks for [`io_slices`](OutQueue::io_slices), writes what it can and
//! reports it with [`advance`](OutQueue::advance).

use crate::rtp::{FRAMING_LEN, MAX_HEAD_LEN, RtpSender, SharedPacket};
use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;

enum Chunk {
    /// A head owned by this reader; `start..end` is still to be written.
    Head {
        bytes: [u8; MAX_HEAD_LEN],
        start: u8,
        end: u8,
    },
    Bytes(Bytes),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Head { bytes, start, end } => &bytes[usize::from(*start)..usize::from(*end)],
            Chunk::Bytes(b) => b,
        }
    }
}

/// Bytes queued for one TCP connection, in order; bounded by the caller, which flushes when
/// [`len`](Self::len) passes its limit.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl OutQueue {
    /// An empty queue.
    pub fn new() -> Self {
        OutQueue::default()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues owned bytes (a response).
    pub fn push_bytes(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Bytes(bytes));
    }

    /// Queues `packet` as `sender`'s reader sends it on its interleaved channel; returns the
    /// RTP packet's size (without framing).
    pub fn push_rtp(&mut self, sender: &mut RtpSender, packet: SharedPacket<'_>) -> usize {
        let mut bytes = [0u8; MAX_HEAD_LEN];
        let len = sender.head(packet, &mut bytes);
        self.len += len;
        self.chunks.push_back(Chunk::Head {
            bytes,
            start: 0,
            // At most MAX_HEAD_LEN (20).
            end: len as u8,
        });
        let body = packet.body();
        if !body.is_empty() {
            self.len += body.len();
            // A reference count, not a copy: every reader queues the same bytes.
            self.chunks.push_back(Chunk::Bytes(body.clone()));
        }
        len - FRAMING_LEN + body.len()
    }

    /// Queues an RTCP packet with its interleaved framing on `channel`. A packet longer than
    /// the 16-bit framing length cannot be sent and is skipped.
    pub fn push_rtcp(&mut self, channel: u8, packet: Bytes) {
        let Ok(len) = u16::try_from(packet.len()) else {
            return;
        };
        let mut bytes = [0u8; MAX_HEAD_LEN];
        let [hi, lo] = len.to_be_bytes();
        bytes[..FRAMING_LEN].copy_from_slice(&[b'$', channel, hi, lo]);
        self.len += FRAMING_LEN;
        self.chunks.push_back(Chunk::Head {
            bytes,
            start: 0,
            end: FRAMING_LEN as u8,
        });
        self.push_bytes(packet);
    }

    /// The queued bytes in order, at most `max` slices (the kernel takes up to 1024 a call).
    pub fn io_slices(&self, max: usize) -> Vec<IoSlice<'_>> {
        self.chunks
            .iter()
            .take(max)
            .map(|c| IoSlice::new(c.as_slice()))
            .collect()
    }

    /// Drops the first `n` bytes, which were written.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let left = front.as_slice().len();
            if n >= left {
                n -= left;
                self.chunks.pop_front();
                continue;
            }
            match front {
                // n < end - start, so start + n stays within the head.
                Chunk::Head { start, .. } => *start += n as u8,
                Chunk::Bytes(b) => b.advance(n),
            }
            n = 0;
        }
    }

    /// The shared bodies queued, for tests that check they are the same allocation.
    #[cfg(test)]
    pub(crate) fn bodies(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter().filter_map(|c| match c {
            Chunk::Bytes(b) => Some(b),
            Chunk::Head { .. } => None,
        })
    }

    /// Everything queued, copied into one buffer, for tests.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|c| c.as_slice())
            .copied()
            .collect()
    }
}

#[cfg(test)]
#[path = "out_tests.rs"]
mod tests;
