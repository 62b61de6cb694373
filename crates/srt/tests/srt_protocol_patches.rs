//! Regression tests for the peer-reachable bugs fixed in the vendored srt-protocol
//! (vendor/srt-protocol/FERROCAST-PATCHES.md), found by the fuzz targets in fuzz/ (their
//! minimized inputs are in testdata/fuzz/). The vendored crate ships without its test
//! dependencies, so its fixes are tested here, through the public API the SRT server uses.

// The package is ferrocast-srt; its dependents know it as `srt`, and so does this test.
extern crate ferrocast_srt as srt;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::connection::{self, Connection, ConnectionSettings, DuplexConnection};
use srt_protocol::options::{LiveBandwidthMode, PacketCount, PacketSize};
use srt_protocol::packet::{ControlTypes, HandshakeVsInfo, Packet, SeqNumber, SocketId};
use srt_protocol::protocol::handshake::Handshake;
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::settings::ConnInitSettings;

fn caller() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5000)
}

/// A control packet: header of type `ty` (subtype `reserved`) to socket 0, then `cif`.
fn control(ty: u16, reserved: u16, extra: u32, cif: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(0x8000 | ty).to_be_bytes());
    p.extend_from_slice(&reserved.to_be_bytes());
    p.extend_from_slice(&extra.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0u32.to_be_bytes()); // destination socket
    p.extend_from_slice(cif);
    p
}

/// A handshake CIF (HSv5 unless `version` says otherwise) followed by `extensions`.
fn handshake(version: u32, flags: u16, mss: u32, shake: i32, cookie: i32, ext: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&version.to_be_bytes());
    c.extend_from_slice(&0u16.to_be_bytes()); // encryption
    c.extend_from_slice(&flags.to_be_bytes()); // extension flags (HSv5) / socket type (HSv4)
    c.extend_from_slice(&0x1234u32.to_be_bytes()); // initial sequence number
    c.extend_from_slice(&mss.to_be_bytes());
    c.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    c.extend_from_slice(&shake.to_be_bytes());
    c.extend_from_slice(&0x0A0B_0C0Du32.to_be_bytes()); // socket id
    c.extend_from_slice(&cookie.to_be_bytes());
    c.extend_from_slice(&[127, 0, 0, 1]);
    c.extend_from_slice(&[0; 12]);
    c.extend_from_slice(ext);
    c
}

fn parse(datagram: &[u8]) -> Packet {
    Packet::parse(&mut &datagram[..], false).expect("parses")
}

#[test]
fn empty_stream_id_extension_is_an_empty_string() {
    // Extension 5 (stream id) with a size of 0 words: used to panic reading its last word.
    let p = parse(&control(
        0,
        0,
        0,
        &handshake(5, 0x4, 1500, -1, 0, &[0, 5, 0, 0]),
    ));
    let Packet::Control(c) = &p else {
        panic!("{p:?}")
    };
    let ControlTypes::Handshake(hs) = &c.control_type else {
        panic!("{c:?}")
    };
    let HandshakeVsInfo::V5(v5) = &hs.info else {
        panic!("{hs:?}")
    };
    assert_eq!(v5.sid.as_deref(), Some(""));
    // ... and serializes back to the same bytes.
    let mut out = Vec::new();
    p.serialize(&mut out);
    assert_eq!(parse(&out), p);
}

#[test]
fn short_group_extension_is_refused() {
    // Extension 8 (group) needs one word; with none it used to panic.
    let d = control(0, 0, 0, &handshake(5, 0x4, 1500, -1, 0, &[0, 8, 0, 0]));
    assert!(Packet::parse(&mut &d[..], false).is_err());
}

#[test]
fn key_material_without_keys_is_refused() {
    // KMREQ with neither the even nor the odd key flag: it parsed, and serializing it (the
    // listener echoes a caller's extensions in a rejection) divided by zero, in the listener
    // task that serves every SRT caller.
    let mut km = vec![0, 3, 0, 10]; // extension 3 (KMREQ), 10 words
    km.extend_from_slice(&[0x12, 0x20, 0x29, 0x00]); // version 1, KM message, sign, KF = 0
    km.extend_from_slice(&[0, 0, 0, 0]); // KEKI
    km.extend_from_slice(&[2, 0, 2, 0]); // AES-CTR, no auth, SRT encapsulation
    km.extend_from_slice(&[0, 0, 4, 4]); // salt 16 bytes, key 16 bytes
    km.extend_from_slice(&[0x5a; 16 + 8]); // salt, then the wrap's 8 bytes and no key
    let d = control(0, 0, 0, &handshake(5, 0x2, 1500, -1, 0, &km));
    assert!(Packet::parse(&mut &d[..], false).is_err());
}

#[test]
fn srt_control_subtype_0_has_a_wire_size() {
    // Control type 0x7fff (SRT) with subtype 0 parses as `SrtControlPacket::Reject`; the
    // receive statistics of an open connection call `wire_size`, which was `unimplemented!`.
    let p = parse(&control(0x7fff, 0, 0, &[]));
    assert_eq!(p.wire_size(), 44);
}

#[test]
fn unterminated_nak_range_formats() {
    // A NAK whose last word starts a range (top bit set) without an end: `Debug` (debug logs)
    // used to panic.
    let p = parse(&control(3, 0, 0, &0x8000_0010u32.to_be_bytes()));
    assert!(format!("{p:?}").contains("16..?"));
}

#[test]
fn minimum_rtt_in_an_ack_formats() {
    // A full ACK with RTT i32::MIN: `Debug` of the time span negated it and overflowed.
    let mut cif = Vec::new();
    cif.extend_from_slice(&0x10u32.to_be_bytes()); // acknowledged sequence number
    cif.extend_from_slice(&i32::MIN.to_be_bytes()); // RTT
    cif.extend_from_slice(&0i32.to_be_bytes()); // RTT variance
    cif.extend_from_slice(&100u32.to_be_bytes()); // available buffer
    let p = parse(&control(2, 0, 1, &cif));
    let _ = format!("{p:?}");
}

#[test]
fn last_extension_of_size_0_survives_parse_and_serialize() {
    // The extension loop read extensions while more than 4 bytes were left, dropping a last
    // extension of 0 words, so a parsed handshake serialized differently.
    let p = parse(&control(
        0,
        0,
        0,
        &handshake(5, 0x4, 1500, -1, 0, &[0, 5, 0, 0]),
    ));
    let mut once = Vec::new();
    p.serialize(&mut once);
    let mut twice = Vec::new();
    parse(&once).serialize(&mut twice);
    assert_eq!(once, twice);
}

/// Induction, then a conclusion with the listener's cookie and `mss`; what the listener does.
fn conclude(mss: u32) -> ConnectionResult {
    let mut listen = Listen::new(ConnInitSettings::default(), false);
    let now = Instant::now();
    let induction = parse(&control(0, 0, 0, &handshake(4, 2, 1500, 1, 0, &[])));
    let cookie = match listen.handle_packet(now, Ok((induction, caller()))) {
        ConnectionResult::SendPacket((Packet::Control(c), _)) => match c.control_type {
            ControlTypes::Handshake(hs) => hs.syn_cookie,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    // HSREQ: SRT 1.5.1, TSBPD both ways, 120 ms each.
    let hsreq = [
        0, 1, 0, 3, 0, 1, 5, 1, 0, 0, 0, 0x3, 0, 120, 0, 120, //
    ];
    let conclusion = parse(&control(
        0,
        0,
        0,
        &handshake(5, 0x1, mss, -1, cookie, &hsreq),
    ));
    listen.handle_packet(now, Ok((conclusion, caller())))
}

#[test]
fn conclusion_with_max_packet_size_0_is_rejected() {
    // A caller announcing a maximum packet size of 0 made the sender split every message into
    // empty packets forever; such a handshake is rogue.
    assert!(matches!(conclude(0), ConnectionResult::Reject(..)));
    assert!(matches!(conclude(1500), ConnectionResult::Connected(..)));
}

/// An open connection (as the listener side) whose sender has sent `n` packets.
fn sending_connection(n: usize) -> DuplexConnection {
    let now = Instant::now();
    let settings = ConnectionSettings {
        remote: caller(),
        remote_sockid: SocketId(1),
        // The socket `control` addresses: a packet to another one is ignored unread.
        local_sockid: SocketId(0),
        socket_start_time: now,
        rtt: Duration::from_millis(10),
        init_seq_num: SeqNumber::new_truncate(0x10),
        max_packet_size: PacketSize(1316),
        max_flow_size: PacketCount(8192),
        send_tsbpd_latency: Duration::from_millis(120),
        recv_tsbpd_latency: Duration::from_millis(120),
        too_late_packet_drop: true,
        peer_idle_timeout: Duration::from_secs(5),
        recv_buffer_size: PacketCount(8192),
        send_buffer_size: PacketCount(8192),
        cipher: None,
        stream_id: None,
        bandwidth: LiveBandwidthMode::default(),
        statistics_interval: Duration::from_secs(1),
    };
    let mut conn = DuplexConnection::new(Connection {
        settings,
        handshake: Handshake::Connector,
    });
    for _ in 0..n {
        conn.handle_data_input(now, Some((now, Bytes::from_static(&[0x47; 188]))));
    }
    let later = now + Duration::from_millis(50);
    while let connection::Action::SendPacket(_) = conn.handle_input(later, connection::Input::Timer)
    {
    }
    conn
}

#[test]
fn nak_with_a_huge_range_is_cheap() {
    // A NAK range [0x10, 0x10 + 2^30) made the sender visit every number in it (seconds of
    // CPU per datagram, 2^30 iterations); only the send window is visited now.
    let mut conn = sending_connection(8);
    let mut cif = Vec::new();
    cif.extend_from_slice(&0x8000_0010u32.to_be_bytes());
    cif.extend_from_slice(&(0x10u32 + (1 << 30) - 1).to_be_bytes());
    let nak = parse(&control(3, 0, 0, &cif));
    let start = Instant::now();
    conn.handle_packet_input(Instant::now(), Ok((nak, caller())));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn nak_with_an_unterminated_or_inverted_range_is_harmless() {
    // An unterminated range panicked ("unterminated loop while decompressing loss list"); an
    // inverted one counted up through the 32-bit space.
    let mut conn = sending_connection(8);
    for cif in [
        0x8000_0012u32.to_be_bytes().to_vec(),
        [0x8000_0014u32.to_be_bytes(), 0x11u32.to_be_bytes()].concat(),
    ] {
        let nak = parse(&control(3, 0, 0, &cif));
        let start = Instant::now();
        conn.handle_packet_input(Instant::now(), Ok((nak, caller())));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}

/// Data packets the connection sends when its timers run at `at`.
fn data_sent_at(conn: &mut DuplexConnection, at: Instant) -> Vec<SeqNumber> {
    let mut seqs = Vec::new();
    while let connection::Action::SendPacket((p, _)) =
        conn.handle_input(at, connection::Input::Timer)
    {
        if let Packet::Data(d) = p {
            seqs.push(d.seq_number);
        }
    }
    seqs
}

#[test]
fn unacknowledged_packets_wait_for_a_nak_instead_of_a_timer() {
    // A receiver that was late to acknowledge (ACKs 40-160 ms apart on a busy machine) got
    // packets twice from the retransmission timer; libsrt's live sender resends only what a
    // NAK reports while the receiver sends periodic NAK reports.
    let start = Instant::now();
    let mut conn = sending_connection(8);
    let late = start + Duration::from_millis(600);
    assert_eq!(data_sent_at(&mut conn, late), [], "resent without a NAK");
    let nak = parse(&control(3, 0, 0, &0x12u32.to_be_bytes()));
    conn.handle_packet_input(late, Ok((nak, caller())));
    assert_eq!(
        data_sent_at(&mut conn, late + Duration::from_millis(1)),
        [SeqNumber::new_truncate(0x12)],
        "a reported loss is resent at once"
    );
}
