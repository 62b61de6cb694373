//! SRT: the vendored srt-protocol's packet, handshake and stream-id parsers, its sans-I/O
//! listener and connection state machines as ferrocast drives them (`srt::endpoint`), and
//! ferrocast's stream-id routing (`srt::route`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::access::{AccessControlList, StandardAccessControlEntry};
use srt_protocol::connection::{self, DuplexConnection};
use srt_protocol::listener::{
    AccessControlResponse, Action, Input, MultiplexListener, NextInputContext, SessionId,
};
use srt_protocol::options::{ByteCount, KeySize, Passphrase, SocketOptions};
use srt_protocol::packet::{
    ControlTypes, Packet, ReceivePacketError, RejectReason, ServerRejectReason, ShakeType,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

/// Parses one datagram as the endpoint does (`Packet::parse` on the whole UDP payload); checks the
/// parsed packet re-serializes to exactly `wire_size() - 28` bytes that parse again, and that
/// serializing is then a fixed point.
fn packet_roundtrip(datagram: &[u8], ipv6: bool) -> Option<Packet> {
    let p = Packet::parse(&mut &datagram[..], ipv6).ok()?;
    // srt-protocol formats packets at debug level (`log`); that must not panic either.
    let _ = format!("{p:?}");
    let s1 = serialize(&p);
    let p2 = Packet::parse(&mut &s1[..], ipv6).expect("a serialized packet parses");
    let s2 = serialize(&p2);
    assert_eq!(
        s1, s2,
        "serialize -> parse -> serialize is not a fixed point"
    );
    Some(p)
}

/// Serializes `p`, checking its announced wire size (IPv4 + UDP + SRT headers included).
fn serialize(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    p.serialize(&mut out);
    assert_eq!(out.len() + 28, p.wire_size(), "wire_size disagrees: {p:?}");
    out
}

// ---------------------------------------------------------------------------------------------
// srt_packet

/// `Packet::parse` (data, control, handshake CIFs and extensions) on any datagram never panics;
/// parsed packets format with `Debug` and serialize consistently (see `packet_roundtrip`).
///
/// Layout: `[bit 0: IPv6 listener][datagram ...]`.
pub fn srt_packet(data: &[u8]) {
    let [flags, datagram @ ..] = data else {
        return;
    };
    packet_roundtrip(datagram, flags & 1 != 0);
}

// ---------------------------------------------------------------------------------------------
// srt_handshake

/// The handshake path without the fuzzer having to find the control header: a handshake
/// control header (type 0, socket 0) is put in front of the fuzzed CIF, which carries the HSv5
/// extension blocks (HSREQ, KMREQ, stream id, congestion, filter, group). Same checks as
/// `srt_packet`; a parsed handshake's extensions also serialize alone.
///
/// Layout: `[bit 0: IPv6 listener][handshake CIF + extensions ...]`.
pub fn srt_handshake(data: &[u8]) {
    let [flags, cif @ ..] = data else {
        return;
    };
    let mut datagram = Vec::with_capacity(16 + cif.len());
    datagram.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    datagram.extend_from_slice(cif);
    let Some(Packet::Control(c)) = packet_roundtrip(&datagram, flags & 1 != 0) else {
        return;
    };
    if let ControlTypes::Handshake(hs) = &c.control_type
        && let srt_protocol::packet::HandshakeVsInfo::V5(v5) = &hs.info
    {
        for ext in [&v5.ext_hs, &v5.ext_km, &v5.ext_group]
            .into_iter()
            .flatten()
        {
            let mut out = Vec::new();
            ext.serialize(&mut out);
            assert_eq!(out.len(), usize::from(ext.size_words()) * 4, "{ext:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// srt_stream_id

/// The stream id of an SRT caller, as the listener hands it to ferrocast:
/// `AccessControlList::from_str` (`#!::k=v,...`) never panics and, when it parses, displays
/// back to the same string; every entry converts to a `StandardAccessControlEntry` or not
/// without panicking; `srt::route::parse` never panics, and a route it returns has a valid
/// code, at most 16 arguments, and parses again from its canonical simple form
/// (`[publish:]<app>/<code>`) to the same action and code; `srt::route::redacted` (the id as
/// logged) never panics and keeps only the resource and mode of an access-control id, and
/// nothing after `?` of a simple one.
///
/// Layout: `[app selector][stream id, UTF-8 (lossy) ...]`.
pub fn srt_stream_id(data: &[u8]) {
    let [sel, id @ ..] = data else {
        return;
    };
    let app = ["live", "", "a/b", "live?x"][usize::from(sel & 3)];
    let id = String::from_utf8_lossy(id);
    if let Ok(acl) = id.parse::<AccessControlList>() {
        assert_eq!(acl.to_string(), id, "ACL display differs from its source");
        for entry in acl.0 {
            let _ = StandardAccessControlEntry::try_from(entry).map(|e| e.to_string());
        }
    }
    let shown = srt::route::redacted(&id);
    let Ok(route) = srt::route::parse(Some(&id), app) else {
        return;
    };
    assert!(hub::valid_code(&route.code), "{route:?}");
    assert!(route.args.len() <= 16, "{route:?}");
    // The redacted id keeps only the resource and mode of an access-control id, without
    // arguments, and masks the arguments of a simple one.
    match shown.strip_prefix("#!::") {
        Some(pairs) if id.starts_with("#!::") => {
            for kv in pairs.split(',').filter(|kv| !kv.is_empty()) {
                assert!(
                    (kv.starts_with("r=") || kv.starts_with("m=")) && !kv.contains('?'),
                    "redacted stream id {shown:?} keeps {kv:?} of {id:?}"
                );
            }
        }
        _ => {
            let base = shown.strip_suffix("?****").unwrap_or(&shown);
            assert!(
                !base.contains('?') && id.starts_with(base),
                "redacted stream id {shown:?} shows arguments of {id:?}"
            );
        }
    }
    let simple = match route.action {
        hub::Action::Publish => format!("publish:{app}/{}", route.code),
        hub::Action::Play => format!("{app}/{}", route.code),
    };
    let again = srt::route::parse(Some(&simple), app).expect("the simple form of a route parses");
    assert_eq!(
        (again.action, &again.code),
        (route.action, &route.code),
        "{simple}"
    );
}

// ---------------------------------------------------------------------------------------------
// srt_listener

/// Whether `FERROCAST_FUZZ_TRACE` is set: `srt_listener` then prints what the state machines
/// do, to read a reproducer.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FERROCAST_FUZZ_TRACE").is_some())
}

/// A passphrase within SRT's 10..=79 bytes.
const PASSPHRASE: &str = "ferrocast-fuzz-passphrase";
/// Most actions one input may cause before the state machines must wait for more input.
const MAX_ACTIONS: usize = 100_000;

/// Listener settings as `srt::bind` builds them: the latency both ways, and the send buffer at
/// libsrt's default.
fn listener_settings(latency: Duration) -> ConnInitSettings {
    let mut o = SocketOptions::default();
    o.sender.peer_latency = latency;
    o.receiver.latency = latency;
    o.sender.buffer_size = ByteCount(8192 * 1456);
    ConnInitSettings::from(o)
}

/// ferrocast's answer to a connection request (`srt::listener::Server::serve`, without the
/// hub's admission): stream id routing, then the key decision.
fn decide(
    request: &srt_protocol::listener::AccessControlRequest,
    passphrase: Option<&Passphrase>,
) -> AccessControlResponse {
    let id = request.stream_id.as_ref().map(|s| s.to_string());
    if let Err(e) = srt::route::parse(id.as_deref(), "live") {
        let why = match e {
            srt::RouteError::WrongApp | srt::RouteError::InvalidCode => {
                ServerRejectReason::Notfound
            }
            srt::RouteError::Unsupported => ServerRejectReason::BadMode,
            srt::RouteError::Missing | srt::RouteError::Malformed => ServerRejectReason::BadRequest,
        };
        return AccessControlResponse::Rejected(why.into());
    }
    match (passphrase, request.key_size) {
        (None, KeySize::Unspecified) => AccessControlResponse::Accepted(None),
        (None, _) => AccessControlResponse::Rejected(RejectReason::Core(
            srt_protocol::packet::CoreRejectReason::Unsecure,
        )),
        (Some(p), size) => AccessControlResponse::Accepted(Some(KeySettings {
            key_size: size,
            passphrase: p.clone(),
        })),
    }
}

/// One peer as the fuzz driver sees it.
#[derive(Default)]
struct Peer {
    /// Cookie of the last induction response sent to this peer.
    cookie: Option<i32>,
    /// The open connection the listener handed over.
    conn: Option<DuplexConnection>,
}

struct ListenerDriver {
    listener: MultiplexListener,
    passphrase: Option<Passphrase>,
    peers: HashMap<SocketAddr, Peer>,
    responses: Vec<(SessionId, AccessControlResponse)>,
    start: Instant,
    now: Instant,
}

/// Checks a packet the gateway sends: it serializes to its wire size and parses back.
fn check_outgoing(p: &Packet) {
    let bytes = serialize(p);
    let back = Packet::parse(&mut &bytes[..], false).expect("an outgoing packet parses");
    assert_eq!(
        serialize(&back),
        bytes,
        "outgoing packet does not round-trip"
    );
}

impl ListenerDriver {
    /// Runs the listener from `input` until it waits, doing what the endpoint task does with
    /// each action.
    fn listener_input(&mut self, input: Input) {
        let mut input = input;
        for _ in 0..MAX_ACTIONS {
            let action = self.listener.handle_input(self.now, input);
            if tracing() {
                eprintln!("listener: {action:?}");
            }
            let next = NextInputContext::for_action(&action);
            let mut delegated = None;
            match action {
                Action::SendPacket((p, to)) => {
                    check_outgoing(&p);
                    if let Packet::Control(c) = &p
                        && let ControlTypes::Handshake(hs) = &c.control_type
                        && hs.shake_type == ShakeType::Induction
                    {
                        self.peers.entry(to).or_default().cookie = Some(hs.syn_cookie);
                    }
                }
                Action::RequestAccess(id, request) => {
                    let _ = format!("{request:?}");
                    let response = decide(&request, self.passphrase.as_ref());
                    self.responses.push((id, response));
                }
                Action::RejectConnection(id, p) => {
                    if let Some((p, _)) = p {
                        check_outgoing(&p);
                    }
                    if let Some(peer) = self.peers.get_mut(&id.0) {
                        peer.conn = None;
                    }
                }
                Action::OpenConnection(id, open) => {
                    let (p, conn) = *open;
                    if let Some((p, _)) = p {
                        check_outgoing(&p);
                    }
                    self.peers.entry(id.0).or_default().conn = Some(DuplexConnection::new(conn));
                }
                Action::DelegatePacket(id, packet) => delegated = Some((id, packet)),
                Action::DropConnection(id) => {
                    if let Some(peer) = self.peers.get_mut(&id.0) {
                        peer.conn = None;
                    }
                }
                Action::UpdateStatistics(_) => {}
                Action::WaitForInput | Action::Close => return,
            }
            if let Some((id, packet)) = delegated {
                self.connection_input(id.0, connection::Input::Packet(Ok(packet)));
            }
            input = next.input_from(Ok::<(), ()>(()));
        }
        panic!("the listener did not settle within {MAX_ACTIONS} actions");
    }

    /// Runs `peer`'s open connection from `input` until it waits (`handle_input` runs the same
    /// packet handling, timers and output as the endpoint's `Link`); a closed connection is
    /// dropped.
    fn connection_input(&mut self, peer: SocketAddr, input: connection::Input) {
        let now = self.now;
        let Some(conn) = self.peers.get_mut(&peer).and_then(|p| p.conn.as_mut()) else {
            return;
        };
        let mut input = input;
        for _ in 0..MAX_ACTIONS {
            let action = conn.handle_input(now, input);
            if tracing() {
                eprintln!("connection {peer}: {action:?}");
            }
            input = match action {
                connection::Action::SendPacket((p, _)) => {
                    check_outgoing(&p);
                    connection::Input::PacketSent
                }
                connection::Action::ReleaseData(_) => connection::Input::DataReleased,
                connection::Action::UpdateStatistics(_) => connection::Input::StatisticsUpdated,
                connection::Action::WaitForData(_) => return,
                connection::Action::Close => {
                    self.peers.get_mut(&peer).map(|p| p.conn.take());
                    return;
                }
            };
        }
        panic!("the connection did not settle within {MAX_ACTIONS} actions");
    }

    fn deliver_responses(&mut self) {
        for (id, response) in std::mem::take(&mut self.responses) {
            self.listener_input(Input::AccessResponse(Some((id, response))));
        }
    }
}

/// Datagrams from two callers into the listener-side state machines ferrocast runs:
/// `MultiplexListener` (induction, conclusion, access control with ferrocast's own routing and
/// key decision, rejection) and, once a caller is accepted, its `DuplexConnection` (receiver,
/// sender with data from the "hub", ACK/NAK/ACKACK, key material, shutdown), with time moving
/// as the input says. Checks: nothing panics; every packet the gateway sends serializes to its
/// wire size and parses back; no input makes a state machine spin.
///
/// Layout: `[config][records ...]`; config bit 0: a passphrase is configured; bits 1-2 pick
/// the latency. A record is `[op][len: u16 LE][len bytes]`; `op & 7`:
/// 0 datagram, parsed as is; 1 datagram whose handshake gets the cookie the listener sent this
/// caller (srt-protocol's cookie depends on the wall clock, so a fuzzer cannot guess it);
/// 2 advance time by `len` ms and fire timers; 3 data (`len` bytes) to send on the caller's
/// connection; 4 answer pending access requests; 5 close the caller's data stream.
/// `op & 8` picks the caller.
pub fn srt_listener(data: &[u8]) {
    let Some((&config, mut rest)) = data.split_first() else {
        return;
    };
    let latency = [120, 0, 2000, 20][usize::from((config >> 1) & 3)];
    let now = Instant::now();
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 9000);
    let mut d = ListenerDriver {
        listener: MultiplexListener::new(
            now,
            local,
            listener_settings(Duration::from_millis(latency)),
        ),
        passphrase: (config & 1 != 0)
            .then(|| Passphrase::try_from(PASSPHRASE.to_owned()).expect("valid passphrase")),
        peers: HashMap::new(),
        responses: Vec::new(),
        start: now,
        now,
    };
    let callers = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 5001),
    ];
    while let [op, l0, l1, tail @ ..] = rest {
        let (op, len) = (*op, usize::from(u16::from_le_bytes([*l0, *l1])));
        let (body, after) = tail.split_at(len.min(tail.len()));
        rest = after;
        let from = callers[usize::from(op >> 3 & 1)];
        match op & 7 {
            0 | 1 => {
                let parsed = Packet::parse(&mut &body[..], false);
                let packet = match parsed {
                    Ok(mut p) => {
                        let cookie = d.peers.get(&from).and_then(|p| p.cookie);
                        if op & 7 == 1
                            && let (Packet::Control(c), Some(cookie)) = (&mut p, cookie)
                            && let ControlTypes::Handshake(hs) = &mut c.control_type
                        {
                            hs.syn_cookie = cookie;
                        }
                        Ok((p, from))
                    }
                    Err(e) => Err(ReceivePacketError::Parse(e)),
                };
                d.listener_input(Input::Packet(packet));
            }
            2 => {
                d.now += Duration::from_millis(len as u64);
                d.listener_input(Input::Timer);
                let open: Vec<SocketAddr> = d
                    .peers
                    .iter()
                    .filter(|(_, p)| p.conn.is_some())
                    .map(|(a, _)| *a)
                    .collect();
                for peer in open {
                    d.connection_input(peer, connection::Input::Timer);
                }
            }
            3 => {
                let payload = Bytes::copy_from_slice(body);
                d.connection_input(from, connection::Input::Data(Some((d.now, payload))));
            }
            4 => d.deliver_responses(),
            5 => d.connection_input(from, connection::Input::Data(None)),
            _ => {}
        }
    }
    d.deliver_responses();
    assert!(d.now >= d.start);
}
