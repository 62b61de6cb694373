//! ferrocast's own SRT socket layer: one UDP socket, srt-protocol's sans-I/O handshake and
//! connection state machines, and no tasks but ours.
//!
//! srt-tokio ran a listener task and a task per connection, and a payload crossed two channels
//! and two tasks on its way out: the player's task, then its connection's. Here one endpoint
//! task reads the socket, answers handshakes through srt-protocol's [`MultiplexListener`] and
//! passes each open connection's packets to that connection's queue; a [`Conn`] is driven
//! inline by the task that uses it (ingest, or a stream's players), which writes its packets
//! straight to the shared socket.
//!
//! The handshake's last response is sent before the connection is handed over, so data can
//! never overtake it (with srt-tokio, libsrt callers dropped the first data packets).

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener,
    NextInputContext, ResultOf, SessionId,
};
use srt_protocol::options::KeySize;
use srt_protocol::packet::{Packet, ReceivePacketError, RejectReason, ServerRejectReason};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use std::collections::HashMap;
use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Packets queued for one connection's task; a connection this far behind loses packets, as
/// a full UDP buffer would, and SRT recovers them.
const CONN_QUEUE: usize = 512;
/// Connection requests waiting for the server's accept loop.
const REQUEST_QUEUE: usize = 128;
/// Datagrams read per wake-up of the endpoint task before it yields.
const RECV_BATCH: usize = 64;
/// A caller that starts a handshake and neither finishes nor is answered is forgotten after
/// this long (libsrt gives up after 3 s).
const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most half-open handshakes remembered at once; datagrams from new addresses beyond it are
/// dropped, so spoofed sources cannot grow the table.
const MAX_PENDING: usize = 4096;
/// Largest datagram read: an SRT packet is at most 1500 bytes, and a longer one is garbage.
const MAX_DATAGRAM: usize = 2048;
/// Kernel buffers asked for the socket (capped by `net.core.[rw]mem_max`): a GOP burst to a
/// few dozen players must not overflow them.
const UDP_BUFFER: usize = 4 << 20;

/// A bound SRT socket, not yet serving.
#[derive(Debug)]
pub struct Endpoint {
    socket: Arc<UdpSocket>,
    settings: ConnInitSettings,
    local_addr: SocketAddr,
}

impl Endpoint {
    /// Binds `addr`; every connection gets `settings` (latency, buffers).
    pub fn bind(addr: SocketAddr, settings: ConnInitSettings) -> io::Result<Endpoint> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        // Best effort: the kernel caps these, and a smaller buffer still works.
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local_addr = socket.local_addr()?;
        Ok(Endpoint {
            socket: Arc::new(socket),
            settings,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the socket until `stop`, sending each caller that finished its handshake's
    /// first half to `requests`.
    pub async fn run(self, requests: mpsc::Sender<ConnectionRequest>, stop: CancellationToken) {
        let (responses, mut response_rx) = mpsc::channel(REQUEST_QUEUE);
        let mut state = State {
            listener: MultiplexListener::new(Instant::now(), self.local_addr, self.settings),
            socket: self.socket,
            ipv6: self.local_addr.is_ipv6(),
            requests,
            responses,
            awaiting: HashMap::new(),
            open: HashMap::new(),
            pending: HashMap::new(),
            out: BytesMut::with_capacity(MAX_DATAGRAM),
            queue_full: 0,
        };
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = state.socket.readable() => {
                    if let Err(e) = r {
                        warn!(error = %e, "srt socket failed");
                        break;
                    }
                    state.read_batch(&mut buf);
                }
                Some((id, response)) = response_rx.recv() => {
                    state.step(Instant::now(), Input::AccessResponse(Some((id, response))));
                }
                _ = sweep.tick() => state.sweep(Instant::now()),
            }
        }
        // Dropping every connection's queue ends the connections still open.
        debug!(open = state.open.len(), "srt endpoint stopped");
    }
}

/// Where an accepted connection goes: its state machine and its queue of packets.
#[derive(Debug)]
struct Opened {
    connection: Connection,
    packets: mpsc::Receiver<(Packet, SocketAddr)>,
}

/// The endpoint task's state.
struct State {
    listener: MultiplexListener,
    socket: Arc<UdpSocket>,
    ipv6: bool,
    requests: mpsc::Sender<ConnectionRequest>,
    responses: mpsc::Sender<(SessionId, AccessControlResponse)>,
    /// Callers waiting for the server's answer, and where their connection goes.
    awaiting: HashMap<SessionId, oneshot::Sender<Opened>>,
    /// Open connections by peer address.
    open: HashMap<SocketAddr, mpsc::Sender<(Packet, SocketAddr)>>,
    /// Sessions the listener holds that are not open, and when each started.
    pending: HashMap<SessionId, Instant>,
    out: BytesMut,
    /// Packets dropped because their connection's queue was full, since the last report.
    queue_full: u64,
}

impl State {
    fn read_batch(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => {
                    let now = Instant::now();
                    self.datagram(now, &buf[..n], from);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Unconnected UDP reports little; whatever it is concerns one datagram.
                Err(e) => {
                    debug!(error = %e, "srt receive failed");
                    return;
                }
            }
        }
    }

    fn datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let packet = match Packet::parse(&mut Cursor::new(data), self.ipv6) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, error = %e, "srt datagram not understood");
                return;
            }
        };
        if let Some(queue) = self.open.get(&from) {
            match queue.try_send((packet, from)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.queue_full += 1;
                    return;
                }
                // The connection ended: forget it, and let this packet start over (a caller
                // reusing its port for a new handshake).
                Err(mpsc::error::TrySendError::Closed((p, _))) => {
                    self.open.remove(&from);
                    self.forget(now, SessionId(from));
                    return self.handshake(now, p, from);
                }
            }
        }
        self.handshake(now, packet, from);
    }

    fn handshake(&mut self, now: Instant, packet: Packet, from: SocketAddr) {
        let id = SessionId(from);
        if !self.pending.contains_key(&id) {
            if self.pending.len() >= MAX_PENDING {
                debug!(%from, "srt handshake table full; datagram dropped");
                return;
            }
            self.pending.insert(id, now);
        }
        self.step(now, Input::Packet(Ok((packet, from))));
    }

    /// Runs the listener from `input` until it waits, doing what each action asks.
    fn step(&mut self, now: Instant, mut input: Input) {
        loop {
            let action = self.listener.handle_input(now, input);
            let next = NextInputContext::for_action(&action);
            input = match action {
                Action::SendPacket((packet, to)) => next.input_from(self.send(&packet, to)),
                Action::RequestAccess(id, request) => match self.request(id, request) {
                    Ok(()) => next.input_from(Ok::<(), ()>(())),
                    Err(reason) => {
                        Input::AccessResponse(Some((id, AccessControlResponse::Rejected(reason))))
                    }
                },
                Action::RejectConnection(id, packet) => {
                    if let Some((packet, to)) = packet {
                        let _ = self.send(&packet, to);
                    }
                    self.awaiting.remove(&id);
                    self.pending.remove(&id);
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::OpenConnection(id, opened) => {
                    let (packet, connection) = *opened;
                    // The response goes out before the connection can send anything.
                    if let Some((packet, to)) = packet {
                        let _ = self.send(&packet, to);
                    }
                    let r = self.open(id, connection);
                    if r.is_err() {
                        self.forget(now, id);
                    }
                    next.input_from(r)
                }
                Action::DelegatePacket(id, packet) => {
                    let r = match self.open.get(&id.0) {
                        Some(queue) => queue.try_send(packet).map_err(|_| ()),
                        None => Err(()),
                    };
                    next.input_from(r)
                }
                Action::DropConnection(id) => {
                    self.open.remove(&id.0);
                    self.awaiting.remove(&id);
                    self.pending.remove(&id);
                    next.input_from(Ok::<(), ()>(()))
                }
                Action::UpdateStatistics(_) => next.input_from(Ok::<(), ()>(())),
                Action::WaitForInput | Action::Close => return,
            };
        }
    }

    fn send(&mut self, packet: &Packet, to: SocketAddr) -> io::Result<usize> {
        self.out.clear();
        packet.serialize(&mut self.out);
        self.socket.try_send_to(&self.out, to).inspect_err(|e| {
            debug!(%to, error = %e, "srt handshake packet not sent");
        })
    }

    fn request(
        &mut self,
        id: SessionId,
        request: AccessControlRequest,
    ) -> Result<(), RejectReason> {
        let (tx, rx) = oneshot::channel();
        let request = ConnectionRequest {
            request,
            id,
            responses: self.responses.clone(),
            opened: rx,
            socket: self.socket.clone(),
        };
        match self.requests.try_send(request) {
            Ok(()) => {
                self.awaiting.insert(id, tx);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "srt callers arrive faster than they are answered; rejecting");
                Err(ServerRejectReason::Overload.into())
            }
        }
    }

    fn open(&mut self, id: SessionId, connection: Connection) -> Result<(), ()> {
        let tx = self.awaiting.remove(&id).ok_or(())?;
        let (queue, packets) = mpsc::channel(CONN_QUEUE);
        tx.send(Opened {
            connection,
            packets,
        })
        .map_err(|_| ())?;
        self.open.insert(id.0, queue);
        self.pending.remove(&id);
        Ok(())
    }

    /// Makes the listener drop `id`'s session, open or not.
    fn forget(&mut self, now: Instant, id: SessionId) {
        self.awaiting.remove(&id);
        self.pending.remove(&id);
        self.step(now, Input::Success(ResultOf::DropConnection(id)));
    }

    /// Forgets ended connections and handshakes that stalled.
    fn sweep(&mut self, now: Instant) {
        let ended: Vec<SocketAddr> = self
            .open
            .iter()
            .filter(|(_, q)| q.is_closed())
            .map(|(a, _)| *a)
            .collect();
        for addr in ended {
            self.open.remove(&addr);
            self.forget(now, SessionId(addr));
        }
        let stale: Vec<SessionId> = self
            .pending
            .iter()
            .filter(|(id, since)| {
                now.duration_since(**since) > PENDING_TIMEOUT
                    && self.awaiting.get(id).is_none_or(|tx| tx.is_closed())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.forget(now, id);
        }
        if self.queue_full > 0 {
            debug!(
                dropped = std::mem::take(&mut self.queue_full),
                "srt packets dropped: a connection's queue was full"
            );
        }
    }
}

/// A caller whose handshake waits for the server's decision.
#[derive(Debug)]
pub struct ConnectionRequest {
    request: AccessControlRequest,
    id: SessionId,
    responses: mpsc::Sender<(SessionId, AccessControlResponse)>,
    opened: oneshot::Receiver<Opened>,
    socket: Arc<UdpSocket>,
}

impl ConnectionRequest {
    /// The caller's address.
    pub fn remote(&self) -> SocketAddr {
        self.request.remote
    }

    /// The caller's stream id, if it sent one.
    pub fn stream_id(&self) -> Option<&str> {
        self.request.stream_id.as_deref().map(|s| s.as_str())
    }

    /// The key size the caller announced (libsrt callers announce none).
    pub fn key_size(&self) -> KeySize {
        self.request.key_size
    }

    /// Completes the handshake (with `key` for an encrypted connection).
    pub async fn accept(self, key: Option<KeySettings>) -> io::Result<Conn> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped");
        self.responses
            .send((self.id, AccessControlResponse::Accepted(key)))
            .await
            .map_err(|_| gone())?;
        // A wrong passphrase ends in a rejection, which drops the sender.
        let opened = self.opened.await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "srt handshake not completed",
            )
        })?;
        Ok(Conn::new(opened, self.socket))
    }

    /// Refuses the caller with `reason`.
    pub async fn reject(self, reason: RejectReason) -> io::Result<()> {
        self.responses
            .send((self.id, AccessControlResponse::Rejected(reason)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped"))
    }
}

/// One open SRT connection, driven by the task that owns it.
///
/// Every method is cancel-safe: the state lives in `self`, and the only awaits are on timers,
/// the packet queue and socket readiness.
#[derive(Debug)]
pub struct Conn {
    conn: DuplexConnection,
    socket: Arc<UdpSocket>,
    packets: mpsc::Receiver<(Packet, SocketAddr)>,
    out: BytesMut,
    /// Where the serialized packet in `out` goes, when the socket had no room for it.
    stalled: Option<SocketAddr>,
}

impl Conn {
    fn new(opened: Opened, socket: Arc<UdpSocket>) -> Conn {
        Conn {
            conn: DuplexConnection::new(opened.connection),
            socket,
            packets: opened.packets,
            out: BytesMut::with_capacity(MAX_DATAGRAM),
            stalled: None,
        }
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.conn.settings().remote
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    /// Queues `payloads` (each at most one SRT payload) and sends what the sender allows.
    pub fn send(&mut self, payloads: &[Bytes]) {
        let now = Instant::now();
        for p in payloads {
            self.conn.handle_data_input(now, Some((now, p.clone())));
        }
        self.conn.check_timers(now);
        self.flush(now);
    }

    /// Runs the connection until the peer's next payload; `None` once it is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            let now = Instant::now();
            let deadline = self.conn.check_timers(now);
            self.flush(now);
            if let Some((_, data)) = self.conn.next_data(now) {
                return Some(data);
            }
            if !self.conn.is_open() {
                return None;
            }
            self.wait(deadline).await;
        }
    }

    /// Flushes what is queued and says goodbye, within `timeout`.
    pub async fn close(&mut self, timeout: Duration) {
        let now = Instant::now();
        if self.conn.is_open() {
            self.conn.handle_data_input(now, None);
        }
        let _ = tokio::time::timeout(timeout, async { while self.recv().await.is_some() {} }).await;
    }

    /// Waits for a packet, socket room, or `deadline`, and takes in the packets that came.
    async fn wait(&mut self, deadline: Instant) {
        tokio::select! {
            biased;
            p = self.packets.recv() => {
                let now = Instant::now();
                match p {
                    Some(p) => {
                        self.conn.handle_packet_input(now, Ok(p));
                        // Whatever else queued meanwhile, in the same wake-up.
                        for _ in 0..RECV_BATCH {
                            match self.packets.try_recv() {
                                Ok(p) => self.conn.handle_packet_input(now, Ok(p)),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        let gone = io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped");
                        self.conn.handle_packet_input(now, Err(ReceivePacketError::Io(gone)));
                    }
                }
            }
            _ = self.socket.writable(), if self.stalled.is_some() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }

    /// Writes the connection's outgoing packets until none is left or the socket is full.
    fn flush(&mut self, now: Instant) {
        if let Some(to) = self.stalled {
            match self.socket.try_send_to(&self.out, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => self.stalled = None,
            }
        }
        while let Some((packet, to)) = self.conn.next_packet(now) {
            self.out.clear();
            packet.serialize(&mut self.out);
            match self.socket.try_send_to(&self.out, to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled = Some(to);
                    return;
                }
                // A lost datagram, as far as SRT is concerned: it retransmits.
                Err(e) => debug!(%to, error = %e, "srt packet not sent"),
            }
        }
    }
}
