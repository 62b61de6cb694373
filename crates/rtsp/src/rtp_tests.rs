use super::*;
use media::{HevcConfig, OpusConfig, TrackKind, hevc};

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

/// The RTP packets of `rtp` as `sender` puts them on the wire (its header, then the shared
/// body), without the interleaved framing.
fn on_wire(rtp: &RtpFrame, sender: &mut RtpSender) -> Vec<Vec<u8>> {
    let mut head = [0u8; MAX_HEAD_LEN];
    rtp.packets()
        .map(|pk| {
            let len = sender.head(pk, &mut head);
            [&head[FRAMING_LEN..len], pk.body()].concat()
        })
        .collect()
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
    let shared = on_wire(&rtp, &mut RtpSender::new(5, 9, 0));
    assert_eq!(pulled, shared);
    assert_eq!(rtp_timestamp(1920, 48_000), 1024);
    assert_eq!(rtp_timestamp(-1, 90_000), u32::MAX);
}

const HVCC: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-main.hvcc");
/// x265's IDR access unit: one 22 kB IDR_N_LP NAL unit, 4-byte length, no parameter sets.
const HEVC_IDR_FRAME: &[u8] = include_bytes!("../../../testdata/hevc-1280x720-idr.hvcc-frame");
const OPUS_HEAD: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.opushead");
/// One 20 ms CELT stereo packet (TOC 0xfc).
const OPUS_PACKET: &[u8] = include_bytes!("../../../testdata/opus-48k-stereo.packet");

fn hevc_config() -> HevcConfig {
    HevcConfig::parse(Bytes::from_static(HVCC)).unwrap()
}

/// Minimal RFC 7798 depacketizer: single NAL unit packets and FUs, strict about S/E order and
/// about the PayloadHdr of every fragment matching the NAL header it rebuilds. Aggregation
/// and PACI packets are refused: the packetizer never sends them.
fn depacketize_h265(packets: &[Packet]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in packets {
        assert!(p.payload.len() >= 2, "payload shorter than the PayloadHdr");
        let (h0, h1) = (p.payload[0], p.payload[1]);
        assert_eq!(h0 & 0x80, 0, "F bit");
        assert_ne!(h1 & 0x07, 0, "TID 0 is forbidden");
        match (h0 >> 1) & 0x3f {
            0..=47 => {
                assert!(fu.is_none(), "single NAL inside an FU");
                nals.push(p.payload.clone());
            }
            49 => {
                assert!(p.payload.len() > 3, "FU without data");
                let hdr = p.payload[2];
                let (s, e, kind) = (hdr & 0x80 != 0, hdr & 0x40 != 0, hdr & 0x3f);
                if s {
                    assert!(fu.is_none(), "S while an FU is open");
                    assert!(!e, "S and E in one fragment");
                    // F and LayerId from the PayloadHdr, the type from the FU header.
                    fu = Some(vec![(h0 & 0x81) | (kind << 1), h1]);
                }
                let nal = fu.as_mut().expect("FU continuation without start");
                assert_eq!(
                    [nal[0], nal[1]],
                    [(h0 & 0x81) | (kind << 1), h1],
                    "NAL header changed mid FU"
                );
                nal.extend_from_slice(&p.payload[3..]);
                if e {
                    nals.push(fu.take().unwrap());
                }
            }
            other => panic!("unexpected payload NAL type {other}"),
        }
    }
    assert!(fu.is_none(), "FU never ended");
    nals
}

/// A length-prefixed H.265 frame (4-byte lengths).
fn hvcc_frame(nals: &[&[u8]], pts: i64) -> Frame {
    let mut payload = Vec::new();
    for nal in nals {
        payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        payload.extend_from_slice(nal);
    }
    Frame {
        track: TrackKind::Video,
        dts: pts,
        pts,
        keyframe: nals.iter().any(|n| hevc::is_irap(hevc::nal_unit_type(n))),
        payload: Bytes::from(payload),
    }
}

/// Checks the per-access-unit invariants of an H.265 access unit and returns its NALs.
fn check_h265_au(packets: &[Packet], pts: i64, ssrc: u32, mtu: usize) -> Vec<Vec<u8>> {
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
        assert!(p.payload.len() <= mtu, "{} > {mtu}", p.payload.len());
    }
    depacketize_h265(packets)
}

#[test]
fn h265_real_idr_round_trip_with_parameter_sets_first() {
    let cfg = hevc_config();
    let frame = Frame {
        track: TrackKind::Video,
        dts: 3000,
        pts: 6000,
        keyframe: true,
        payload: Bytes::from_static(HEVC_IDR_FRAME),
    };
    let mut p = H265Packetizer::new(96, 0x0bad_cafe, DEFAULT_MTU).with_sequence(100);
    p.push(&frame, &cfg).unwrap();
    let packets = drain(|| p.pull());
    check_seq(&packets, 100);
    let nals = check_h265_au(&packets, 6000, 0x0bad_cafe, DEFAULT_MTU);

    let in_band = in_band_nals(HEVC_IDR_FRAME);
    assert_eq!(in_band.len(), 1, "the capture is one IDR NAL unit");
    let idr = &in_band[0];
    assert_eq!(hevc::nal_unit_type(idr), 20, "IDR_N_LP");
    let mut expected = vec![
        cfg.vps[0].to_vec(),
        cfg.sps[0].to_vec(),
        cfg.pps[0].to_vec(),
    ];
    expected.push(idr.clone());
    assert_eq!(nals, expected, "VPS, SPS, PPS, then the IDR byte-identical");

    // Parameter sets go as single NAL unit packets, the 22 kB IDR as FUs.
    assert_eq!(
        packets[..3]
            .iter()
            .map(|p| (p.payload[0] >> 1) & 0x3f)
            .collect::<Vec<_>>(),
        [32, 33, 34]
    );
    let fus = &packets[3..];
    assert_eq!(fus.len(), (idr.len() - 2).div_ceil(DEFAULT_MTU - 3));
    for (i, f) in fus.iter().enumerate() {
        // PayloadHdr: type 49 with F, LayerId and TID of the IDR's header.
        assert_eq!(f.payload[0], (idr[0] & 0x81) | (49 << 1));
        assert_eq!(f.payload[1], idr[1]);
        let (s, e) = (f.payload[2] & 0x80 != 0, f.payload[2] & 0x40 != 0);
        assert_eq!((s, e), (i == 0, i + 1 == fus.len()));
        assert_eq!(f.payload[2] & 0x3f, 20, "FuType");
    }
    assert!(
        fus[..fus.len() - 1]
            .iter()
            .all(|f| f.payload.len() == DEFAULT_MTU),
        "full fragments"
    );
    assert_eq!(p.packet_count(), packets.len() as u32);
    let octets: usize = packets.iter().map(|p| p.payload.len()).sum();
    assert_eq!(p.octet_count(), octets as u32);
    assert_eq!(p.last_timestamp(), Some(6000));
}

#[test]
fn h265_every_mtu_round_trips() {
    let cfg = hevc_config();
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 90_000,
        keyframe: true,
        payload: Bytes::from_static(HEVC_IDR_FRAME),
    };
    let idr = in_band_nals(HEVC_IDR_FRAME).remove(0);
    // From the 64-byte floor (the 43-byte SPS still fits whole) to one fragment short of
    // the whole NAL unit, and a size where it fits one packet.
    for mtu in [64, 65, 100, 576, 1200, 1500, 9000, idr.len() - 1, idr.len()] {
        let rtp = packetize_h265(&frame, &cfg, 96, mtu).unwrap();
        let packets: Vec<Packet> = on_wire(&rtp, &mut RtpSender::new(9, 0, 0))
            .iter()
            .map(|p| parse(p))
            .collect();
        let nals = check_h265_au(&packets, 90_000, 9, mtu);
        assert_eq!(nals.len(), 4, "mtu {mtu}");
        assert_eq!(nals[3], idr, "mtu {mtu}");
        let single = idr.len() <= mtu;
        assert_eq!(
            packets.len() == 4,
            single,
            "mtu {mtu}: {} packets",
            packets.len()
        );
    }
}

#[test]
fn h265_parameter_sets_only_before_irap_and_in_band_handling() {
    let cfg = hevc_config();
    let aud: &[u8] = &[0x46, 0x01, 0x50];
    // TRAIL_R (type 1), CRA (type 21) and a changed PPS (type 34, another pps_id).
    let trail: &[u8] = &[0x02, 0x01, 0xd0, 0x11, 0x22];
    let cra: &[u8] = &[0x2a, 0x01, 0xaf, 0x33];
    let new_pps: &[u8] = &[0x44, 0x01, 0xc1, 0x73, 0xc1, 0x89];
    let mut p = H265Packetizer::new(96, 1, DEFAULT_MTU);

    p.push(&hvcc_frame(&[aud, trail], 3600), &cfg).unwrap();
    let nals = check_h265_au(&drain(|| p.pull()), 3600, 1, DEFAULT_MTU);
    assert_eq!(
        nals,
        vec![trail.to_vec()],
        "AUD dropped, no parameter sets before a non-IRAP"
    );

    let frame = hvcc_frame(
        &[aud, &cfg.vps[0], &cfg.sps[0], &cfg.pps[0], new_pps, cra],
        7200,
    );
    p.push(&frame, &cfg).unwrap();
    let nals = check_h265_au(&drain(|| p.pull()), 7200, 1, DEFAULT_MTU);
    assert_eq!(
        nals,
        vec![
            cfg.vps[0].to_vec(),
            cfg.sps[0].to_vec(),
            cfg.pps[0].to_vec(),
            new_pps.to_vec(),
            cra.to_vec()
        ],
        "a CRA is a random access point too; in-band copies dropped, a changed PPS forwarded"
    );

    // NAL units that would read as RTP payload structures, and ones shorter than a NAL
    // header, are not sent.
    let ap: &[u8] = &[48 << 1, 0x01, 0x00, 0x02, 0xaa, 0xbb];
    let fu: &[u8] = &[49 << 1, 0x01, 0x81, 0xaa];
    let paci: &[u8] = &[50 << 1, 0x01, 0x00];
    let short: &[u8] = &[0x02];
    p.push(&hvcc_frame(&[ap, short, fu, paci, trail], 10_800), &cfg)
        .unwrap();
    let nals = check_h265_au(&drain(|| p.pull()), 10_800, 1, DEFAULT_MTU);
    assert_eq!(nals, vec![trail.to_vec()]);
}

#[test]
fn h265_fu_keeps_layer_and_temporal_id() {
    let cfg = hevc_config();
    // TSA_N (type 2) in layer 37, whose top bit is in the first header byte, TemporalId 3
    // (TID 4): 3000 bytes, 3 FUs at MTU 1400.
    let (kind, layer, tid) = (2u8, 37u8, 4u8);
    let mut nal = vec![(kind << 1) | (layer >> 5), ((layer & 0x1f) << 3) | tid];
    nal.extend((0..2998u32).map(|i| (i * 13 % 251) as u8));
    assert_eq!(hevc::nuh_layer_id(&nal), 37);
    assert_eq!(nal[..2], [0x05, 0x2c]);
    let mut p = H265Packetizer::new(96, 2, 1400).with_sequence(u16::MAX);
    p.push(&hvcc_frame(&[nal.as_slice(), &[0x02, 0x01, 0x99]], 0), &cfg)
        .unwrap();
    let packets = drain(|| p.pull());
    check_seq(&packets, u16::MAX);
    assert_eq!(packets.len(), 4);
    let nals = check_h265_au(&packets, 0, 2, 1400);
    assert_eq!(nals, vec![nal.clone(), vec![0x02, 0x01, 0x99]]);
    assert!(
        packets[..3]
            .iter()
            .all(|f| f.payload[..2] == [(49 << 1) | 1, 0x2c])
    );
    assert!(
        !packets[2].marker,
        "the FU's end is not the access unit's end"
    );
}

#[test]
fn h265_two_byte_lengths_and_shared_bodies_are_slices() {
    let mut cfg = hevc_config();
    cfg.nal_length_size = 2;
    let idr = in_band_nals(HEVC_IDR_FRAME).remove(0);
    let mut payload = (idr.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(&idr);
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: Bytes::from(payload),
    };
    let rtp = packetize_h265(&frame, &cfg, 96, DEFAULT_MTU).unwrap();
    let range = frame.payload.as_ptr_range();
    let params: Vec<_> = rtp
        .packets()
        .take_while(|p| !range.contains(&p.body().as_ptr()))
        .collect();
    assert_eq!(
        params.len(),
        3,
        "the configuration's VPS, SPS and PPS first"
    );
    for (p, set) in params.iter().zip([&cfg.vps[0], &cfg.sps[0], &cfg.pps[0]]) {
        assert_eq!(p.body(), set);
        assert_eq!(p.head().len(), FRAMING_LEN + 12, "single NAL unit packet");
    }
    for p in rtp.packets().skip(3) {
        assert!(range.contains(&p.body().as_ptr()), "no copy of the media");
        assert!(p.body().as_ptr_range().end <= range.end);
        assert_eq!(p.head().len(), FRAMING_LEN + 12 + 3, "FU payload header");
    }
}

#[test]
fn h265_malformed_frame_queues_nothing_and_no_panic() {
    let cfg = hevc_config();
    let mut p = H265Packetizer::new(96, 1, DEFAULT_MTU);
    let frame = Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 5,
        keyframe: false,
        payload: Bytes::from_static(&[0, 0, 0, 3, 0x02, 0x01, 0xaa, 0, 0, 0, 9, 0x02]),
    };
    assert!(matches!(
        p.push(&frame, &cfg),
        Err(RtpError::Hvcc { pts: 5, .. })
    ));
    assert!(p.pull().is_none());
    assert_eq!(p.dropped(), 1);
    assert_eq!(p.next_sequence(), 0, "no sequence numbers consumed");

    // Deterministic mutations of the real frame: Ok or Err, never a panic, always within
    // the (clamped) MTU.
    let mut p = H265Packetizer::new(96, 1, 0);
    assert_eq!(p.mtu(), 64);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut data = HEVC_IDR_FRAME.to_vec();
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

fn opus_frame(packet: Bytes, pts: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts: pts,
        pts,
        keyframe: true,
        payload: packet,
    }
}

#[test]
fn opus_one_packet_per_frame_at_48k() {
    let head = OpusConfig::parse(Bytes::from_static(OPUS_HEAD)).unwrap();
    assert_eq!(head.channels, 2);
    let samples = media::opus::packet_samples(OPUS_PACKET).unwrap();
    assert_eq!(samples, 960, "20 ms");
    let mut p = OpusPacketizer::new(97, 0x0909, DEFAULT_MTU).with_sequence(7);
    // 90 kHz pts of consecutive 20 ms packets, from a negative start (pre-skip) on.
    let ticks = i64::from(samples) * 90_000 / 48_000;
    for n in -1..4i64 {
        let frame = opus_frame(Bytes::from_static(OPUS_PACKET), n * ticks);
        p.push(&frame).unwrap();
        let packets = drain(|| p.pull());
        assert_eq!(packets.len(), 1);
        let pk = &packets[0];
        assert_eq!((pk.pt, pk.ssrc, pk.seq), (97, 0x0909, (8 + n) as u16));
        assert_eq!(pk.ts, (n * i64::from(samples)) as u32, "48 kHz timestamps");
        assert!(!pk.marker, "continuous audio has no talkspurt marker");
        assert_eq!(
            pk.payload, OPUS_PACKET,
            "the Opus packet is the whole payload"
        );
    }
    assert_eq!(p.last_timestamp(), Some(3 * samples));
    assert_eq!(p.packet_count(), 5);
    assert_eq!(p.octet_count(), 5 * OPUS_PACKET.len() as u32);

    // Shared: the body is the frame's payload itself.
    let frame = opus_frame(Bytes::from_static(OPUS_PACKET), 1800);
    let rtp = packetize_opus(&frame, 97, DEFAULT_MTU).unwrap();
    assert_eq!(rtp.timestamp(), 960);
    let pk = rtp.packets().next().unwrap();
    assert_eq!(pk.body().as_ptr(), frame.payload.as_ptr());
    assert_eq!(pk.head().len(), FRAMING_LEN + 12);
}

#[test]
fn opus_oversize_and_empty_packets_are_dropped() {
    let mut p = OpusPacketizer::new(97, 1, 400);
    // The real 451-byte packet does not fit a 400-byte payload and cannot be fragmented.
    assert_eq!(
        p.push(&opus_frame(Bytes::from_static(OPUS_PACKET), 9)),
        Err(RtpError::OpusTooLarge {
            pts: 9,
            size: OPUS_PACKET.len(),
            mtu: 400
        })
    );
    assert_eq!(
        p.push(&opus_frame(Bytes::new(), 10)),
        Err(RtpError::OpusEmpty { pts: 10 })
    );
    assert!(p.pull().is_none());
    assert_eq!(p.dropped(), 2);
    assert_eq!(p.next_sequence(), 0);
    // Exactly the MTU fits.
    let exact = Bytes::from(vec![0xfc; 400]);
    p.push(&opus_frame(exact.clone(), 0)).unwrap();
    assert_eq!(parse(&p.pull().unwrap()).payload, exact);
}

/// Reassembles the OBUs of one AV1 temporal unit from its RTP packets (one element per packet,
/// as our packetizer sends them), checking the aggregation headers on the way: (OBU headers
/// and payloads, whether the first packet had N).
/// OBUs as (header, payload) byte strings.
type ObuList = Vec<(Vec<u8>, Vec<u8>)>;

fn depacketize_av1(packets: &[Packet]) -> (ObuList, bool) {
    let mut obus: ObuList = Vec::new();
    let mut open = false;
    for (i, p) in packets.iter().enumerate() {
        let agg = p.payload[0];
        let (z, y, w) = (agg & 0x80 != 0, agg & 0x40 != 0, (agg >> 4) & 0x03);
        assert_eq!(w, 1, "one element per packet");
        assert_eq!(
            z, open,
            "Z says whether this continues the previous packet's OBU"
        );
        assert_eq!(
            p.marker,
            i + 1 == packets.len(),
            "marker on the last packet only"
        );
        let element = &p.payload[1..];
        if z {
            obus.last_mut().unwrap().1.extend_from_slice(element);
        } else {
            let header_len = if element[0] & 0x04 != 0 { 2 } else { 1 };
            assert_eq!(element[0] & 0x02, 0, "no obu_size in RTP");
            obus.push((
                element[..header_len].to_vec(),
                element[header_len..].to_vec(),
            ));
        }
        open = y;
    }
    assert!(!open, "the last OBU is whole");
    (obus, packets[0].payload[0] & 0x08 != 0)
}

#[test]
fn av1_temporal_units_go_one_obu_per_packet_without_size_fields_or_delimiters() {
    use media::av1;
    let config = media::Av1Config::parse(Bytes::from_static(include_bytes!(
        "../../../testdata/av1-640x360-main.av1c"
    )))
    .unwrap();
    let key = Bytes::from_static(include_bytes!("../../../testdata/av1-640x360-key.obus"));
    let expected: Vec<(u8, Vec<u8>)> = av1::obus(&key)
        .map(Result::unwrap)
        .filter(|o| o.obu_type != av1::OBU_TEMPORAL_DELIMITER)
        .map(|o| (o.obu_type, key[o.payload.clone()].to_vec()))
        .collect();
    let has_seq = expected.iter().any(|(t, _)| *t == av1::OBU_SEQUENCE_HEADER);
    let frame = |payload: Bytes, keyframe: bool| Frame {
        track: TrackKind::Video,
        dts: 0,
        pts: 180_000,
        keyframe,
        payload,
    };
    for mtu in [64, 200, 1200, 100_000] {
        let rtp = packetize_av1(&frame(key.clone(), true), &config, 96, mtu).unwrap();
        let packets: Vec<Packet> = on_wire(&rtp, &mut RtpSender::new(7, 0, 0))
            .iter()
            .map(|p| parse(p))
            .collect();
        assert!(packets.iter().all(|p| p.ts == 180_000 && p.pt == 96));
        assert!(
            packets.iter().all(|p| p.payload.len() <= mtu.max(64)),
            "mtu {mtu}"
        );
        let (obus, n) = depacketize_av1(&packets);
        assert!(n, "a key temporal unit starts a coded video sequence");
        let got: Vec<(u8, Vec<u8>)> = obus
            .iter()
            .map(|(h, p)| ((h[0] >> 3) & 0x0f, p.clone()))
            .collect();
        let mut want = expected.clone();
        if !has_seq {
            // The configuration's sequence header goes first.
            let seq = config.sequence_header.clone().unwrap();
            let o = av1::obus(&seq).next().unwrap().unwrap();
            want.insert(0, (av1::OBU_SEQUENCE_HEADER, seq[o.payload].to_vec()));
        }
        assert_eq!(got, want, "mtu {mtu}");
    }
    // An inter temporal unit: no N, no sequence header added.
    let inter = packetize_av1(&frame(key.clone(), false), &config, 96, 1200).unwrap();
    let first = inter.packets().next().unwrap();
    assert_eq!(
        first.body().len() + first.head().len(),
        first.rtp_len() + FRAMING_LEN
    );
    let mut s = RtpSender::new(7, 0, 0);
    let mut head = [0u8; MAX_HEAD_LEN];
    let len = s.head(first, &mut head);
    assert_eq!(
        head[FRAMING_LEN + RtpHeader::LEN] & 0x08,
        0,
        "no N on an inter unit"
    );
    let _ = len;
    // A malformed OBU drops the frame with an error, not a panic.
    let bad = packetize_av1(
        &frame(Bytes::from_static(&[0x32, 0x7f]), false),
        &config,
        96,
        1200,
    );
    assert!(matches!(bad, Err(RtpError::Obu { .. })), "{bad:?}");
}
