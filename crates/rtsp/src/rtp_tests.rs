use super::*;
use media::TrackKind;

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const IDR_FRAME: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline-idr.avcc-frame");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");

/// A parsed RTP packet as the test depacketizers see it.
#[derive(Debug)]
struct Packet {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

fn parse(p: &[u8]) -> Packet {
    assert!(p.len() > 12, "packet too short: {}", p.len());
    assert_eq!(p[0], 0x80, "V=2, no padding/extension/CSRC");
    Packet {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7f,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload: p[12..].to_vec(),
    }
}

fn drain(pull: impl FnMut() -> Option<Bytes>) -> Vec<Packet> {
    std::iter::from_fn(pull).map(|b| parse(&b)).collect()
}

/// Minimal RFC 6184 depacketizer: single NAL unit packets and FU-A, strict about S/E order.
/// Returns the NAL units of one access unit (packets must all share a timestamp).
fn depacketize_h264(packets: &[Packet]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in packets {
        let kind = p.payload[0] & 0x1f;
        assert_eq!(p.payload[0] & 0x80, 0, "F bit");
        match kind {
            1..=23 => {
                assert!(fu.is_none(), "single NAL inside an FU-A");
                nals.push(p.payload.clone());
            }
            28 => {
                let (ind, hdr) = (p.payload[0], p.payload[1]);
                let (s, e) = (hdr & 0x80 != 0, hdr & 0x40 != 0);
                assert_eq!(hdr & 0x20, 0, "R bit");
                if s {
                    assert!(fu.is_none(), "S while an FU-A is open");
                    assert!(!e, "S and E in one fragment");
                    fu = Some(vec![(ind & 0xe0) | (hdr & 0x1f)]);
                }
                let nal = fu.as_mut().expect("FU-A continuation without start");
                assert_eq!(nal[0] & 0x1f, hdr & 0x1f, "type changed mid FU-A");
                assert_eq!(nal[0] & 0x60, ind & 0x60, "NRI changed mid FU-A");
                nal.extend_from_slice(&p.payload[2..]);
                if e {
                    nals.push(fu.take().unwrap());
                }
            }
            other => panic!("unexpected payload NAL type {other}"),
        }
    }
    assert!(fu.is_none(), "FU-A never ended");
    nals
}

fn avcc_frame(nals: &[&[u8]], pts: i64) -> Frame {
    let mut payload = Vec::new();
    for nal in nals {
        payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        payload.extend_from_slice(nal);
    }
    Frame {
        track: TrackKind::Video,
        dts: pts,
        pts,
        keyframe: nals.iter().any(|n| n[0] & 0x1f == 5),
        payload: Bytes::from(payload),
    }
}

fn config() -> AvcConfig {
    AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()
}

/// Checks the per-access-unit invariants and returns the NALs.
fn check_au(packets: &[Packet], pts: i64, ssrc: u32) -> Vec<Vec<u8>> {
    assert!(!packets.is_empty());
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.pt, 96);
        assert_eq!(p.ssrc, ssrc);
        assert_eq!(p.ts, pts as u32, "timestamp = pts in 90 kHz");
        assert_eq!(
            p.marker,
            i + 1 == packets.len(),
            "marker only on the last packet"
        );
        assert!(p.payload.len() <= 1400);
    }
    depacketize_h264(packets)
}

fn check_seq(packets: &[Packet], first: u16) {
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(
            p.seq,
            first.wrapping_add(i as u16),
            "sequence continuity at {i}"
        );
    }
}

fn in_band_nals(frame: &[u8]) -> Vec<Vec<u8>> {
    media::avc::avcc_nal_units(frame, 4)
        .map(|n| n.unwrap().to_vec())
        .collect()
}

#[test]
fn h264_real_idr_gets_parameter_sets_first() {
    let cfg = config();
    let frame = Frame {
        track: TrackKind::Video,
        dts: 3600,
        pts: 7200,
        keyframe: true,
        payload: Bytes::from_static(IDR_FRAME),
    };
    let mut p = H264Packetizer::new(96, 0x1234_5678, DEFAULT_MTU);
    p.push(&frame, &cfg).unwrap();
    let packets = drain(|| p.pull());
    check_seq(&packets, 0);
    let nals = check_au(&packets, 7200, 0x1234_5678);

    let mut expected = vec![cfg.sps[0].to_vec(), cfg.pps[0].to_vec()];
    expected.extend(in_band_nals(IDR_FRAME));
    assert_eq!(
        nals, expected,
        "SPS, PPS, then the frame's SEI and IDR byte-identical"
    );
    assert_eq!(nals.last().unwrap()[0] & 0x1f, 5);
    // The 4.4 kB frame holds a NAL larger than the MTU, so FU-A was exercised on real data.
    assert!(packets.iter().any(|p| p.payload[0] & 0x1f == 28));
    assert_eq!(p.packet_count(), packets.len() as u32);
    let octets: usize = packets.iter().map(|p| p.payload.len()).sum();
    assert_eq!(p.octet_count(), octets as u32);
    assert_eq!(p.last_timestamp(), Some(7200));
}

#[test]
fn h264_fu_a_large_nal_and_sequence_wrap() {
    let cfg = config();
    // A synthetic non-IDR slice (NRI 2) of 5000 bytes: 4 FU-A fragments at MTU 1400.
    let mut big = vec![0x41u8];
    big.extend((0..4999u32).map(|i| (i * 7 % 251) as u8));
    let small = [0x01u8, 0xaa, 0xbb];
    let mut p = H264Packetizer::new(96, 7, 1400).with_sequence(65533);
    assert_eq!(p.next_sequence(), 65533);

    let f1 = avcc_frame(&[&big], 90_000);
    p.push(&f1, &cfg).unwrap();
    let packets = drain(|| p.pull());
    assert_eq!(packets.len(), 4);
    check_seq(&packets, 65533);
    assert_eq!(packets[3].seq, 0, "wrapped");
    let nals = check_au(&packets, 90_000, 7);
    assert_eq!(
        nals,
        vec![big.clone()],
        "no parameter sets before a non-IDR"
    );
    // Every FU-A keeps NRI of the original header.
    assert!(packets.iter().all(|p| p.payload[0] == 0x40 | 28));

    let f2 = avcc_frame(&[&small, &big], 93_600);
    p.push(&f2, &cfg).unwrap();
    let packets2 = drain(|| p.pull());
    check_seq(&packets2, 1);
    let nals = check_au(&packets2, 93_600, 7);
    assert_eq!(nals, vec![small.to_vec(), big]);
    assert!(
        !packets2[0].marker,
        "single NAL packet before the FU-A has no marker"
    );
}

#[test]
fn h264_skips_aud_and_in_band_duplicates_before_idr() {
    let cfg = config();
    let aud: &[u8] = &[0x09, 0xf0];
    let idr: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
    let new_pps: &[u8] = &[0x68, 0xce, 0x01, 0x02];
    let frame = avcc_frame(&[aud, &cfg.sps[0], &cfg.pps[0], new_pps, idr], 0);
    let mut p = H264Packetizer::new(96, 1, DEFAULT_MTU);
    p.push(&frame, &cfg).unwrap();
    let nals = check_au(&drain(|| p.pull()), 0, 1);
    assert_eq!(
        nals,
        vec![
            cfg.sps[0].to_vec(),
            cfg.pps[0].to_vec(),
            new_pps.to_vec(),
            idr.to_vec()
        ],
        "AUD and duplicate SPS/PPS dropped, a changed PPS forwarded after the config's"
    );
}

#[test]
fn h264_timestamp_wraps_and_negative_pts() {
    let cfg = config();
    let mut p = H264Packetizer::new(96, 1, DEFAULT_MTU);
    p.push(&avcc_frame(&[&[0x01, 0x02]], (1 << 32) + 5), &cfg)
        .unwrap();
    assert_eq!(parse(&p.pull().unwrap()).ts, 5);
    p.push(&avcc_frame(&[&[0x01, 0x02]], -1), &cfg).unwrap();
    assert_eq!(parse(&p.pull().unwrap()).ts, u32::MAX);
}

#[test]
fn h264_malformed_frame_queues_nothing() {
    let cfg = config();
    let mut p = H264Packetizer::new(96, 1, DEFAULT_MTU);
    // Valid first NAL, then a length that runs past the end: the whole frame is dropped.
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 0,
        keyframe: false,
        payload: Bytes::from_static(&[0, 0, 0, 2, 0x01, 0xaa, 0, 0, 0, 9, 0x01]),
    };
    assert!(matches!(
        p.push(&frame, &cfg),
        Err(RtpError::Avcc { pts: 0, .. })
    ));
    assert!(p.pull().is_none());
    assert_eq!(p.dropped(), 1);
    assert_eq!(p.next_sequence(), 0, "no sequence numbers consumed");
}

#[test]
fn h264_no_panic_on_arbitrary_payloads() {
    // Deterministic xorshift mutation of the real frame: every outcome is Ok or Err, no panic,
    // and every packet stays within the MTU.
    let cfg = config();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut p = H264Packetizer::new(96, 1, 10); // clamped to the 64-byte floor
    assert_eq!(p.mtu(), 64);
    for _ in 0..300 {
        let mut data = IDR_FRAME.to_vec();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng % data.len() as u64) as usize;
            data[i] = (rng >> 32) as u8;
        }
        let frame = Frame {
            track: TrackKind::Video,
            dts: 0,
            pts: rng as i64,
            keyframe: true,
            payload: Bytes::from(data),
        };
        let _ = p.push(&frame, &cfg);
        while let Some(pkt) = p.pull() {
            assert!(pkt.len() <= 12 + 64);
        }
    }
}

fn aac_config() -> AacConfig {
    AacConfig::parse(Bytes::from_static(ASC)).unwrap()
}

fn aac_frame(au: Vec<u8>, pts: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts: pts,
        pts,
        keyframe: true,
        payload: Bytes::from(au),
    }
}

/// Minimal RFC 3640 AAC-hbr depacketizer: one AU per packet, or fragments of one AU whose
/// AU-header repeats the whole size; returns (timestamp, AU) pairs.
fn depacketize_aac(packets: &[Packet]) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut partial: Option<(u32, usize, Vec<u8>)> = None;
    for p in packets {
        assert_eq!(p.pt, 97);
        let headers_bits = u16::from_be_bytes([p.payload[0], p.payload[1]]);
        assert_eq!(headers_bits, 16, "one 16-bit AU-header");
        let header = u16::from_be_bytes([p.payload[2], p.payload[3]]);
        assert_eq!(header & 7, 0, "AU-index 0");
        let size = usize::from(header >> 3);
        let data = &p.payload[4..];
        let (ts, want, mut buf) = partial.take().unwrap_or((p.ts, size, Vec::new()));
        assert_eq!(
            (ts, want),
            (p.ts, size),
            "fragments share timestamp and AU-size"
        );
        buf.extend_from_slice(data);
        if p.marker {
            assert_eq!(buf.len(), size, "AU-size is the whole AU");
            out.push((ts, buf));
        } else {
            assert!(buf.len() < size);
            partial = Some((ts, size, buf));
        }
    }
    assert!(partial.is_none());
    out
}

#[test]
fn aac_round_trip_48k_timestamps() {
    let cfg = aac_config();
    assert_eq!(cfg.sample_rate, 48_000);
    let mut p = AacPacketizer::new(97, 42, &cfg, DEFAULT_MTU).with_sequence(65535);
    let aus: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8 + 1; 200 + i * 37]).collect();
    let start = 1_000_000i64;
    let mut packets = Vec::new();
    for (i, au) in aus.iter().enumerate() {
        p.push(&aac_frame(au.clone(), start + 1920 * i as i64))
            .unwrap();
        packets.extend(drain(|| p.pull()));
    }
    assert_eq!(packets.len(), 5);
    check_seq(&packets, 65535);
    assert!(packets.iter().all(|p| p.marker && p.ssrc == 42));
    let got = depacketize_aac(&packets);
    let base = (start * 48_000 / 90_000) as u32;
    for (i, (ts, au)) in got.iter().enumerate() {
        assert_eq!(
            *ts,
            base + 1024 * i as u32,
            "1920 ticks of 90 kHz = 1024 samples"
        );
        assert_eq!(au, &aus[i]);
    }
}

#[test]
fn aac_timestamp_rounding_44k() {
    let cfg = AacConfig::parse(Bytes::from_static(include_bytes!(
        "../../../testdata/aac-44k-mono.asc"
    )))
    .unwrap();
    let p = AacPacketizer::new(97, 1, &cfg, DEFAULT_MTU);
    // 1024 samples at 44.1 kHz = 2089.795... ticks; pts from RTMP are whole ms (23 ms = 2070).
    assert_eq!(p.rtp_timestamp(2070), 1014); // 1014.3
    assert_eq!(p.rtp_timestamp(90_000), 44_100);
    assert_eq!(p.rtp_timestamp(-90_000), (-44_100i64) as u32);
    // Exact at large pts (100 000 s), where the sample count wraps 2^32.
    assert_eq!(
        p.rtp_timestamp(100_000 * 90_000),
        (100_000u64 * 44_100 % (1 << 32)) as u32
    );
}

#[test]
fn aac_fragments_large_au_and_rejects_oversize() {
    let cfg = aac_config();
    let mut p = AacPacketizer::new(97, 1, &cfg, 1000);
    let au: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    p.push(&aac_frame(au.clone(), 1920)).unwrap();
    let packets = drain(|| p.pull());
    assert_eq!(packets.len(), 4, "996 bytes per fragment");
    assert_eq!(
        packets.iter().map(|p| p.marker).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert!(
        packets
            .iter()
            .all(|p| p.ts == 1024 && p.payload.len() <= 1000)
    );
    assert_eq!(depacketize_aac(&packets), vec![(1024, au)]);

    let err = p.push(&aac_frame(vec![0; 8192], 0)).unwrap_err();
    assert_eq!(err, RtpError::AacTooLarge { pts: 0, size: 8192 });
    assert_eq!(
        p.push(&aac_frame(Vec::new(), 5)),
        Err(RtpError::AacEmpty { pts: 5 })
    );
    assert_eq!(p.dropped(), 2);
    assert!(p.pull().is_none());
    // 8191 bytes is the largest AU-size and still goes through.
    p.push(&aac_frame(vec![1; 8191], 0)).unwrap();
    assert_eq!(depacketize_aac(&drain(|| p.pull()))[0].1.len(), 8191);
}

#[test]
fn header_layout() {
    let mut buf = Vec::new();
    RtpHeader {
        payload_type: 0xff,
        marker: true,
        sequence: 0x0102,
        timestamp: 0x0304_0506,
        ssrc: 0x0708_090a,
    }
    .write(&mut buf);
    assert_eq!(buf, [0x80, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn shared_frame_bodies_are_slices_of_the_frame() {
    let cfg = config();
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from_static(IDR_FRAME),
    };
    let rtp = packetize_h264(&frame, &cfg, 96, DEFAULT_MTU).unwrap();
    let range = frame.payload.as_ptr_range();
    let params = rtp
        .packets()
        .take_while(|p| !range.contains(&p.body().as_ptr()) && p.head().len() == FRAMING_LEN + 12);
    assert_eq!(params.count(), 2, "the configuration's SPS and PPS first");
    for p in rtp.packets().skip(2) {
        assert!(range.contains(&p.body().as_ptr()), "no copy of the media");
        assert!(p.body().as_ptr_range().end <= range.end);
    }
}

#[test]
fn senders_rewrite_only_their_fields_of_shared_heads() {
    let cfg = config();
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 7200,
        keyframe: true,
        payload: Bytes::from_static(IDR_FRAME),
    };
    let rtp = packetize_h264(&frame, &cfg, 96, DEFAULT_MTU).unwrap();
    let mut a = RtpSender::new(0xaaaa_aaaa, 65_535, 0).with_channel(4);
    let mut b = RtpSender::new(0xbbbb_bbbb, 1000, u32::MAX - 100);
    let mut head = [0u8; MAX_HEAD_LEN];
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    for p in rtp.packets() {
        let len = a.head(p, &mut head);
        assert_eq!(&head[..2], &[b'$', 4]);
        assert_eq!(
            usize::from(u16::from_be_bytes([head[2], head[3]])),
            p.rtp_len()
        );
        pa.push([&head[FRAMING_LEN..len], p.body()].concat());
        let len = b.head(p, &mut head);
        assert_eq!(head[1], 0);
        pb.push([&head[FRAMING_LEN..len], p.body()].concat());
    }
    let (pa, pb): (Vec<Packet>, Vec<Packet>) = (
        pa.iter().map(|p| parse(p)).collect(),
        pb.iter().map(|p| parse(p)).collect(),
    );
    check_seq(&pa, 65_535);
    check_seq(&pb, 1000);
    check_au(&pa, 7200, 0xaaaa_aaaa);
    // 7200 plus an offset of 2^32 - 101 wraps to 7099.
    assert!(pb.iter().all(|p| p.ssrc == 0xbbbb_bbbb && p.ts == 7099));
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!((x.marker, x.pt, &x.payload), (y.marker, y.pt, &y.payload));
    }
    // Sender report counts: packets, and payload octets without the RTP header.
    let octets: usize = pa.iter().map(|p| p.payload.len()).sum();
    assert_eq!(a.packet_count(), pa.len() as u32);
    assert_eq!(a.octet_count(), octets as u32);
    assert_eq!(
        (b.packet_count(), b.octet_count()),
        (a.packet_count(), a.octet_count())
    );
    assert_eq!(a.next_sequence(), (pa.len() - 1) as u16);
    assert_eq!(b.timestamp(0), u32::MAX - 100);
}

#[test]
fn packetizers_and_shared_frames_make_the_same_packets() {
    let aac = aac_config();
    let frame = aac_frame((0..3000u32).map(|i| i as u8).collect(), 1920);
    let mut p = AacPacketizer::new(97, 5, &aac, 1000).with_sequence(9);
    p.push(&frame).unwrap();
    let pulled: Vec<Bytes> = std::iter::from_fn(|| p.pull()).collect();
    let rtp = packetize_aac(&frame, aac.sample_rate, 97, 1000).unwrap();
    let mut s = RtpSender::new(5, 9, 0);
    let mut head = [0u8; MAX_HEAD_LEN];
    let shared: Vec<Vec<u8>> = rtp
        .packets()
        .map(|pk| {
            let len = s.head(pk, &mut head);
            [&head[FRAMING_LEN..len], pk.body()].concat()
        })
        .collect();
    assert_eq!(pulled, shared);
    assert_eq!(rtp_timestamp(1920, 48_000), 1024);
    assert_eq!(rtp_timestamp(-1, 90_000), u32::MAX);
}
