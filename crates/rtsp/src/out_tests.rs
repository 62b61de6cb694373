use super::*;
use crate::rtp::{RtpFrame, packetize_aac};
use media::{Frame, TrackKind};

fn aac_frame(len: usize) -> RtpFrame {
    let frame = Frame {
        track: TrackKind::Audio,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>()),
    };
    packetize_aac(&frame, 48_000, 97, 400).expect("packetize")
}

/// What a client reads: the queue's slices back to back.
fn written(q: &OutQueue) -> Vec<u8> {
    q.io_slices(usize::MAX)
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect()
}

#[test]
fn rtp_heads_and_shared_bodies_interleave_in_order() {
    let frame = aac_frame(1000);
    let mut sender = RtpSender::new(0xabcd, 7, 0).with_channel(2);
    let mut q = OutQueue::new();
    q.push_bytes(Bytes::from_static(b"RTSP/1.0 200 OK\r\n\r\n"));
    let mut rtp_bytes = 0;
    for p in frame.packets() {
        rtp_bytes += q.push_rtp(&mut sender, p);
    }
    q.push_rtcp(3, Bytes::from_static(&[0x80, 200, 0, 0]));
    let out = written(&q);
    assert_eq!(out.len(), q.len());
    assert_eq!(out, q.to_vec());
    assert_eq!(
        rtp_bytes,
        3 * (12 + 4) + 1000,
        "three packets of 396 bytes at most"
    );

    let mut rest = &out[19..];
    assert!(out.starts_with(b"RTSP/1.0 200 OK"));
    let mut seqs = Vec::new();
    let mut payload = Vec::new();
    while rest[1] == 2 {
        assert_eq!(rest[0], b'$');
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let rtp = &rest[4..4 + len];
        seqs.push(u16::from_be_bytes([rtp[2], rtp[3]]));
        assert_eq!(&rtp[8..12], &0xabcdu32.to_be_bytes());
        payload.extend_from_slice(&rtp[16..]);
        rest = &rest[4 + len..];
    }
    assert_eq!(seqs, [7, 8, 9]);
    assert_eq!(payload, (0..1000).map(|i| i as u8).collect::<Vec<u8>>());
    assert_eq!(
        rest,
        [b'$', 3, 0, 4, 0x80, 200, 0, 0],
        "RTCP framed on its channel"
    );
}

#[test]
fn bodies_are_queued_by_reference() {
    let frame = aac_frame(300);
    let mut a = OutQueue::new();
    let mut b = OutQueue::new();
    for p in frame.packets() {
        a.push_rtp(&mut RtpSender::new(1, 0, 0), p);
        b.push_rtp(&mut RtpSender::new(2, 0, 0), p);
    }
    let pa: Vec<*const u8> = a.bodies().map(|x| x.as_ptr()).collect();
    let pb: Vec<*const u8> = b.bodies().map(|x| x.as_ptr()).collect();
    assert_eq!(pa, pb);
    assert_eq!(pa.len(), 1);
}

#[test]
fn partial_writes_resume_mid_head_and_mid_body() {
    let frame = aac_frame(1000);
    let mut sender = RtpSender::new(9, 0, 0);
    let mut q = OutQueue::new();
    for p in frame.packets() {
        q.push_rtp(&mut sender, p);
    }
    let all = written(&q);
    // Writes of awkward sizes, as a congested socket returns them.
    let mut got = Vec::new();
    for step in [1usize, 3, 17, 5, 400, 2, 333, 1000].iter().cycle() {
        if q.is_empty() {
            break;
        }
        let now = written(&q);
        let n = (*step).min(now.len());
        got.extend_from_slice(&now[..n]);
        q.advance(n);
        assert_eq!(q.len(), all.len() - got.len());
    }
    assert_eq!(got, all);
    assert!(q.io_slices(16).is_empty());
}

#[test]
fn io_slices_respects_the_limit() {
    let frame = aac_frame(1000);
    let mut sender = RtpSender::new(9, 0, 0);
    let mut q = OutQueue::new();
    for p in frame.packets() {
        q.push_rtp(&mut sender, p);
    }
    assert_eq!(q.io_slices(4).len(), 4);
    assert_eq!(q.io_slices(100).len(), 6, "a head and a body per packet");
    q.push_bytes(Bytes::new());
    assert_eq!(q.io_slices(100).len(), 6, "empty bytes are not queued");
}
