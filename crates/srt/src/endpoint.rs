//! ferrocast's own SRT socket layer: one UDP socket, srt-protocol's sans-I/O handshake and
//! connection state machines, and no tasks but ours.
//!
//! srt-tokio ran a listener task and a task per connection, and a payload crossed two channels
//! and two tasks on its way out: the player's task, then its connection's. Here one endpoint
//! task reads the socket, answers handshakes through srt-protocol's [`MultiplexListener`] and
//! passes each open connection's packets on: to a publisher's own queue ([`Conn`], driven by
//! its ingest task), or to the [`Inbox`] its stream's players share ([`Link`]s driven together
//! by the stream's feed task, see [`crate::play`]). Those tasks write their packets straight to the
//! shared socket through an [`Outbox`].
//!
//! The handshake's last response is sent before the connection is handed over, so data can
//! never overtake it (with srt-tokio, libsrt callers dropped the first data packets).
//!
//! The socket is not registered with the runtime for writability, and for readability only
//! while traffic is light. Registered, every datagram sent (its buffer released) and every
//! one received woke a runtime thread parked in `epoll_wait`: at fifty players, about a
//! thousand thread wake-ups a second that did nothing but note readiness. Busy, the endpoint
//! reads on a fixed pace instead, a batch per `recvmmsg` (see [`Reader`]); a full socket, rare,
//! is retried on a timer by the [`Outbox`].

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener,
    NextInputContext, ResultOf, SessionId,
};
use srt_protocol::options::KeySize;
use srt_protocol::packet::{
    ControlPacket, ControlTypes, Packet, ReceivePacketError, RejectReason, ServerRejectReason,
};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Packets queued for one connection's task; a connection this far behind loses packets, as
/// a full UDP buffer would, and SRT recovers them.
const CONN_QUEUE: usize = 512;
/// Connection requests waiting for the server's accept loop.
const REQUEST_QUEUE: usize = 128;
/// Datagrams read per `recvmmsg`, and per wake-up of a connection's task.
const RECV_BATCH: usize = 64;
/// While busy, the endpoint reads the socket this often: a NAK, a handshake or a publisher's
/// packet waits at most this long, small next to SRT's latency (120 ms by default).
const READ_PACE: Duration = Duration::from_millis(5);
/// Datagrams a second above which the endpoint reads on its pace, and below which it goes
/// back to waiting for readiness (apart, so it does not flap).
const PACED_ABOVE: u64 = 400;
const READY_BELOW: u64 = 100;
/// How often the endpoint reconsiders how it reads.
const RATE_WINDOW: Duration = Duration::from_millis(200);
/// How soon an [`Outbox`] tries a full socket again.
const STALL_RETRY: Duration = Duration::from_millis(1);
/// A caller that starts a handshake and neither finishes nor is answered is forgotten after
/// this long (libsrt gives up after 3 s).
const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most half-open handshakes remembered at once; datagrams from new addresses beyond it are
/// dropped, so spoofed sources cannot grow the table.
const MAX_PENDING: usize = 4096;
/// Largest datagram read: an SRT packet is at most 1500 bytes, and a longer one is garbage.
const MAX_DATAGRAM: usize = 2048;
/// Packets an [`Inbox`] holds; a burst beyond it is dropped, as a full UDP buffer would.
const INBOX_CAP: usize = 8192;
/// Datagrams an [`Outbox`] keeps while the socket is full; beyond that they are dropped (SRT
/// retransmits what the peer reports lost).
const MAX_STALLED: usize = 8192;
/// Kernel buffers asked for the socket (capped by `net.core.[rw]mem_max`): a GOP burst to a
/// few dozen players must not overflow them.
const UDP_BUFFER: usize = 4 << 20;

/// The endpoint's UDP socket (non-blocking), shared by its reader and every [`Outbox`].
pub type SharedSocket = Arc<UdpSocket>;

/// Reads the endpoint's socket: on readiness while datagrams are few, every [`READ_PACE`]
/// once they are many, a batch of up to [`RECV_BATCH`] per system call either way.
///
/// At fifty players the players' ACKs alone are thousands of datagrams a second; read on
/// readiness, each woke the runtime (a thread switch, two reads, a park). On the pace, a
/// wake-up reads a dozen at once. For readiness, a duplicate of the socket is registered with
/// the runtime only while the reader waits on it.
struct Reader {
    socket: SharedSocket,
    /// The registered duplicate; `None` while reading on the pace.
    ready: Option<tokio::net::UdpSocket>,
    next_read: tokio::time::Instant,
    /// The last batch filled the buffer: read again at once.
    more: bool,
    buf: Vec<u8>,
    /// The last batch: where each datagram is in `buf`, its length and sender.
    got: Vec<(usize, usize, SocketAddr)>,
    window_start: Instant,
    window_count: u64,
}

impl Reader {
    fn new(socket: SharedSocket) -> io::Result<Reader> {
        let ready = Some(tokio::net::UdpSocket::from_std(socket.try_clone()?)?);
        Ok(Reader {
            socket,
            ready,
            next_read: tokio::time::Instant::now(),
            more: false,
            buf: vec![0; RECV_BATCH * MAX_DATAGRAM],
            got: Vec::with_capacity(RECV_BATCH),
            window_start: Instant::now(),
            window_count: 0,
        })
    }

    /// Waits for datagrams (readiness or the pace) and reads a batch; cancel-safe.
    async fn read(&mut self) -> io::Result<()> {
        self.got.clear();
        match &self.ready {
            Some(dup) => {
                dup.readable().await?;
                let (buf, got) = (&mut self.buf, &mut self.got);
                // A short batch emptied the socket: answering WouldBlock makes tokio wait
                // for the next edge (a datagram that arrived meanwhile keeps the readiness,
                // tokio checks its tick), without another read to learn it.
                let r = dup.try_io(tokio::io::Interest::READABLE, || {
                    match recv_batch(&self.socket, buf, got)? {
                        n if n < RECV_BATCH => Err(io::ErrorKind::WouldBlock.into()),
                        n => Ok(n),
                    }
                });
                match r {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                    _ => {}
                }
            }
            None => {
                if !self.more {
                    tokio::time::sleep_until(self.next_read).await;
                    self.next_read = tokio::time::Instant::now() + READ_PACE;
                }
                recv_batch(&self.socket, &mut self.buf, &mut self.got)?;
            }
        }
        self.more = self.got.len() == RECV_BATCH;
        self.adapt();
        Ok(())
    }

    /// The last batch's datagrams.
    fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.got
            .iter()
            .map(|&(at, len, from)| (&self.buf[at..at + len], from))
    }

    /// Switches between readiness and the pace by the rate of datagrams.
    fn adapt(&mut self) {
        self.window_count += self.got.len() as u64;
        let now = Instant::now();
        let elapsed = now.duration_since(self.window_start);
        if elapsed < RATE_WINDOW {
            return;
        }
        let rate = self.window_count * 1000 / elapsed.as_millis().max(1) as u64;
        self.window_start = now;
        self.window_count = 0;
        match &self.ready {
            Some(_) if rate > PACED_ABOVE => {
                debug!(rate, "srt endpoint reads on its pace");
                self.ready = None;
                self.next_read = tokio::time::Instant::now() + READ_PACE;
            }
            None if rate < READY_BELOW => match self
                .socket
                .try_clone()
                .and_then(tokio::net::UdpSocket::from_std)
            {
                Ok(dup) => {
                    debug!(rate, "srt endpoint reads on readiness");
                    self.ready = Some(dup);
                }
                Err(e) => debug!(error = %e, "srt endpoint stays on its pace"),
            },
            _ => {}
        }
    }
}

/// Reads up to [`RECV_BATCH`] datagrams with one `recvmmsg` into `buf`, noting each in `got`;
/// none (not an error) when the socket is empty. Datagrams longer than [`MAX_DATAGRAM`] are
/// not SRT and are skipped.
fn recv_batch(
    socket: &UdpSocket,
    buf: &mut [u8],
    got: &mut Vec<(usize, usize, SocketAddr)>,
) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
    let mut slots: Vec<[io::IoSliceMut<'_>; 1]> = buf
        .chunks_mut(MAX_DATAGRAM)
        .take(RECV_BATCH)
        .map(|c| [io::IoSliceMut::new(c)])
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slots.len(), None);
    let results = match recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slots.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    ) {
        Ok(r) => r,
        Err(nix::errno::Errno::EAGAIN) => return Ok(0),
        // Unconnected UDP reports little; whatever it is concerns one datagram.
        Err(e) => {
            debug!(error = %e, "srt receive failed");
            return Ok(0);
        }
    };
    let mut n = 0;
    for (i, r) in results.enumerate() {
        n += 1;
        if r.flags.contains(MsgFlags::MSG_TRUNC) {
            continue;
        }
        let from = r.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                })
        });
        if let Some(from) = from {
            got.push((i * MAX_DATAGRAM, r.bytes, from));
        }
    }
    Ok(n)
}

/// A bound SRT socket, not yet serving.
#[derive(Debug)]
pub struct Endpoint {
    socket: SharedSocket,
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
        let socket = UdpSocket::from(socket);
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
        let (left, mut left_rx) = mpsc::unbounded_channel();
        let mut state = State {
            left,
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
        let mut reader = match Reader::new(state.socket.clone()) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "srt socket failed");
                return;
            }
        };
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = reader.read() => {
                    if let Err(e) = r {
                        warn!(error = %e, "srt socket failed");
                        break;
                    }
                    let now = Instant::now();
                    for (data, from) in reader.datagrams() {
                        state.datagram(now, data, from);
                    }
                }
                Some((id, response, inbox)) = response_rx.recv() => {
                    if let (Some(i), Some(a)) = (inbox, state.awaiting.get_mut(&id)) {
                        a.1 = Some(i);
                    }
                    state.step(Instant::now(), Input::AccessResponse(Some((id, response))));
                }
                Some(addr) = left_rx.recv() => {
                    if state.open.remove(&addr).is_some() {
                        state.forget(Instant::now(), SessionId(addr));
                    }
                }
                _ = sweep.tick() => state.sweep(Instant::now()),
            }
        }
        // Dropping every connection's queue ends the connections still open.
        debug!(open = state.open.len(), "srt endpoint stopped");
    }
}

/// The packets of connections driven together (accepted with
/// [`ConnectionRequest::accept_into`]), gathered for their task.
///
/// Acknowledgements only free send buffer and time the round trip, so they wait for the
/// task's next wake-up (its next media item or timer tick); anything else (a NAK, a
/// shutdown, a handshake) wakes it. With fifty players, ACKs are most of what arrives.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: Mutex<Vec<(Packet, SocketAddr)>>,
    notify: Notify,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Arc<Inbox> {
        Arc::default()
    }

    /// Queues a packet; `false` when the inbox is full.
    fn push(&self, packet: Packet, from: SocketAddr) -> bool {
        let urgent = !matches!(
            packet,
            Packet::Control(ControlPacket {
                control_type: ControlTypes::Ack(_),
                ..
            })
        );
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= INBOX_CAP {
                return false;
            }
            q.push((packet, from));
        }
        if urgent {
            self.notify.notify_one();
        }
        true
    }

    /// Moves every queued packet to `into`.
    pub fn take(&self, into: &mut Vec<(Packet, SocketAddr)>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut q);
    }

    /// Resolves when a packet that cannot wait arrived (at once if one did since the last
    /// call).
    pub async fn urgent(&self) {
        self.notify.notified().await
    }
}

/// Where an open connection's packets go.
#[derive(Debug)]
enum Route {
    /// Its own queue, read by the task that drives it alone.
    Own(mpsc::Sender<(Packet, SocketAddr)>),
    /// The inbox it shares; gone once their task ended.
    Shared(Weak<Inbox>),
}

/// What became of a packet passed on.
// Returned by value and matched at once; boxing the packet would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Delivery {
    Delivered,
    /// Dropped: the route is full.
    Full,
    /// The connection (or its task) is gone; the packet is handed back.
    Gone(Packet),
}

impl Route {
    fn deliver(&self, packet: Packet, from: SocketAddr) -> Delivery {
        match self {
            Route::Own(q) => match q.try_send((packet, from)) {
                Ok(()) => Delivery::Delivered,
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                Err(mpsc::error::TrySendError::Closed((p, _))) => Delivery::Gone(p),
            },
            Route::Shared(inbox) => match inbox.upgrade() {
                None => Delivery::Gone(packet),
                Some(i) if i.push(packet, from) => Delivery::Delivered,
                Some(_) => Delivery::Full,
            },
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Route::Own(q) => q.is_closed(),
            Route::Shared(inbox) => inbox.strong_count() == 0,
        }
    }
}

/// Where an accepted connection goes: its state machine, and its own queue of packets unless
/// it shares one.
#[derive(Debug)]
struct Opened {
    connection: Connection,
    packets: Option<mpsc::Receiver<(Packet, SocketAddr)>>,
    left: mpsc::UnboundedSender<SocketAddr>,
}

/// Answers to callers: the decision, and the inbox an accepted connection's packets go to.
type Response = (SessionId, AccessControlResponse, Option<Arc<Inbox>>);

/// The endpoint task's state.
struct State {
    listener: MultiplexListener,
    socket: SharedSocket,
    ipv6: bool,
    requests: mpsc::Sender<ConnectionRequest>,
    responses: mpsc::Sender<Response>,
    /// Where connections report that they ended.
    left: mpsc::UnboundedSender<SocketAddr>,
    /// Callers waiting for the server's answer: where their connection goes, and the inbox
    /// it shares if it shares one.
    awaiting: HashMap<SessionId, (oneshot::Sender<Opened>, Option<Arc<Inbox>>)>,
    /// Open connections' routes by peer address.
    open: HashMap<SocketAddr, Route>,
    /// Sessions the listener holds that are not open, and when each started.
    pending: HashMap<SessionId, Instant>,
    out: BytesMut,
    /// Packets dropped because their connection's queue was full, since the last report.
    queue_full: u64,
}

impl State {
    fn datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let packet = match Packet::parse(&mut Cursor::new(data), self.ipv6) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, error = %e, "srt datagram not understood");
                return;
            }
        };
        if let Some(route) = self.open.get(&from) {
            match route.deliver(packet, from) {
                Delivery::Delivered => return,
                Delivery::Full => {
                    self.queue_full += 1;
                    return;
                }
                // The connection ended: forget it, and let this packet start over (a caller
                // reusing its port for a new handshake).
                Delivery::Gone(p) => {
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
                        Some(route) => match route.deliver(packet.0, packet.1) {
                            Delivery::Delivered => Ok(()),
                            Delivery::Full | Delivery::Gone(_) => Err(()),
                        },
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
        self.socket.send_to(&self.out, to).inspect_err(|e| {
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
                self.awaiting.insert(id, (tx, None));
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "srt callers arrive faster than they are answered; rejecting");
                Err(ServerRejectReason::Overload.into())
            }
        }
    }

    fn open(&mut self, id: SessionId, connection: Connection) -> Result<(), ()> {
        let (tx, shared) = self.awaiting.remove(&id).ok_or(())?;
        let (route, packets) = match shared {
            Some(inbox) => (Route::Shared(Arc::downgrade(&inbox)), None),
            None => {
                let (q, rx) = mpsc::channel(CONN_QUEUE);
                (Route::Own(q), Some(rx))
            }
        };
        tx.send(Opened {
            connection,
            packets,
            left: self.left.clone(),
        })
        .map_err(|_| ())?;
        self.open.insert(id.0, route);
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
                    && self.awaiting.get(id).is_none_or(|(tx, _)| tx.is_closed())
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
    responses: mpsc::Sender<Response>,
    opened: oneshot::Receiver<Opened>,
    socket: SharedSocket,
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

    /// Completes the handshake (with `key` for an encrypted connection); the connection gets
    /// its own packet queue, for a task that drives it alone.
    pub async fn accept(self, key: Option<KeySettings>) -> io::Result<Conn> {
        let socket = self.socket.clone();
        let (link, packets) = self.complete(key, None).await?;
        let packets = packets.ok_or_else(|| io::Error::other("srt connection without a queue"))?;
        Ok(Conn {
            outbox: Outbox::new(socket),
            link,
            packets,
        })
    }

    /// Completes the handshake; the connection's packets go to `inbox`, which the task that
    /// drives it and others reads.
    pub async fn accept_into(
        self,
        key: Option<KeySettings>,
        inbox: Arc<Inbox>,
    ) -> io::Result<Link> {
        Ok(self.complete(key, Some(inbox)).await?.0)
    }

    async fn complete(
        self,
        key: Option<KeySettings>,
        inbox: Option<Arc<Inbox>>,
    ) -> io::Result<(Link, Option<mpsc::Receiver<(Packet, SocketAddr)>>)> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped");
        self.responses
            .send((self.id, AccessControlResponse::Accepted(key), inbox))
            .await
            .map_err(|_| gone())?;
        // A wrong passphrase ends in a rejection, which drops the sender.
        let opened = self.opened.await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "srt handshake not completed",
            )
        })?;
        let link = Link {
            conn: DuplexConnection::new(opened.connection),
            socket: self.socket,
            left: opened.left,
        };
        Ok((link, opened.packets))
    }

    /// Refuses the caller with `reason`.
    pub async fn reject(self, reason: RejectReason) -> io::Result<()> {
        self.responses
            .send((self.id, AccessControlResponse::Rejected(reason), None))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped"))
    }
}

/// One open SRT connection's state machine: sans-I/O, apart from knowing its socket.
///
/// Dropping it tells the endpoint to forget the connection.
#[derive(Debug)]
pub struct Link {
    conn: DuplexConnection,
    socket: SharedSocket,
    left: mpsc::UnboundedSender<SocketAddr>,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.left.send(self.conn.settings().remote);
    }
}

impl Link {
    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.conn.settings().remote
    }

    /// The shared socket, for an [`Outbox`].
    pub fn socket(&self) -> &SharedSocket {
        &self.socket
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.conn.is_open()
    }

    /// Queues `payloads` (each at most one SRT payload); [`Link::poll`] sends them.
    pub fn push(&mut self, now: Instant, payloads: &[Bytes]) {
        for p in payloads {
            self.conn.handle_data_input(now, Some((now, p.clone())));
        }
    }

    /// Starts a graceful close: what is queued is sent, then a shutdown.
    pub fn close(&mut self, now: Instant) {
        if self.conn.is_open() {
            self.conn.handle_data_input(now, None);
        }
    }

    /// Takes in a packet from the peer.
    pub fn handle(&mut self, now: Instant, packet: (Packet, SocketAddr)) {
        self.conn.handle_packet_input(now, Ok(packet));
    }

    /// The packet queue is gone (the endpoint stopped): the connection closes.
    pub fn handle_gone(&mut self, now: Instant) {
        let gone = io::Error::new(io::ErrorKind::NotConnected, "srt endpoint stopped");
        self.conn
            .handle_packet_input(now, Err(ReceivePacketError::Io(gone)));
    }

    /// Runs due timers and hands what the connection has to send to `out` (which the caller
    /// flushes); returns when it next needs a call.
    ///
    /// Control packets (ACKACKs, mostly) go after the data: a short datagram may end a
    /// segmentation-offload train but not start one, so this way they ride with the data in
    /// one send and one wake-up of the peer instead of costing their own.
    pub fn poll(&mut self, now: Instant, out: &mut Outbox) -> Instant {
        let next = self.conn.check_timers(now);
        while let Some((packet, to)) = self.conn.next_packet(now) {
            match packet {
                Packet::Data(_) => out.send(&packet, to),
                Packet::Control(_) => out.held.push((packet, to)),
            }
        }
        let mut held = std::mem::take(&mut out.held);
        for (packet, to) in held.drain(..) {
            out.send(&packet, to);
        }
        out.held = held;
        next
    }

    /// The connection's counters (packets, ACKs, NAKs, retransmissions).
    pub fn statistics(&self) -> &srt_protocol::statistics::SocketStatistics {
        self.conn.statistics()
    }

    /// The peer's next payload, if one is due.
    pub fn next_data(&mut self, now: Instant) -> Option<Bytes> {
        self.conn.next_data(now).map(|(_, data)| data)
    }
}

/// Most datagrams one GSO send carries (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_SEGMENTS: usize = 64;
/// An SRT data packet's header, in bytes.
const DATA_HEADER: usize = 16;
/// Most bytes one GSO send carries: an IP datagram's limit, less headers.
const GSO_BYTES: usize = 65_000;

/// Writes datagrams to the shared socket, and keeps them in order while it is full.
///
/// Consecutive datagrams to one peer (a player's share of a media item: up to dozens of
/// 1,332-byte packets) form a train that goes out in one `sendmsg` with `UDP_SEGMENT`
/// (generic segmentation offload): one system call and one pass through the IP stack instead
/// of one per packet. Where the kernel refuses it, datagrams go one by one. Call
/// [`Outbox::flush`] when a round of sending is done.
#[derive(Debug)]
pub struct Outbox {
    socket: SharedSocket,
    /// The datagram being serialized.
    one: BytesMut,
    /// The train: datagrams of `seg` bytes to `to`, the last possibly shorter.
    train: BytesMut,
    to: Option<SocketAddr>,
    seg: usize,
    count: usize,
    /// The last datagram of the train is shorter than `seg`: nothing may follow it.
    short: bool,
    /// The kernel takes `UDP_SEGMENT` (until a send says otherwise).
    gso: bool,
    stalled: VecDeque<(Bytes, SocketAddr)>,
    /// A link's control packets, sent after its data (see [`Link::poll`]).
    held: Vec<(Packet, SocketAddr)>,
    /// Datagrams dropped because too many were stalled.
    dropped: u64,
}

impl Outbox {
    /// An outbox writing to `socket`.
    pub fn new(socket: SharedSocket) -> Outbox {
        Outbox {
            socket,
            one: BytesMut::with_capacity(MAX_DATAGRAM),
            train: BytesMut::with_capacity(GSO_BYTES),
            to: None,
            seg: 0,
            count: 0,
            short: false,
            gso: true,
            stalled: VecDeque::new(),
            held: Vec::new(),
            dropped: 0,
        }
    }

    /// Queues `packet` for `to`; it is sent by the time [`Outbox::flush`] returns, or kept
    /// if the socket is full.
    pub fn send(&mut self, packet: &Packet, to: SocketAddr) {
        // A data packet is serialized straight into the train (its size is known); control
        // packets are few and small.
        let len = match packet {
            Packet::Data(d) => DATA_HEADER + d.payload.len(),
            Packet::Control(_) => {
                self.one.clear();
                packet.serialize(&mut self.one);
                self.one.len()
            }
        };
        let joins = self.gso
            && self.count > 0
            && self.to == Some(to)
            && !self.short
            && len <= self.seg
            && self.count < GSO_SEGMENTS
            && self.train.len() + len <= GSO_BYTES;
        if !joins {
            self.flush();
            self.to = Some(to);
            self.seg = len;
        }
        match packet {
            Packet::Data(_) => {
                let start = self.train.len();
                packet.serialize(&mut self.train);
                debug_assert_eq!(self.train.len() - start, len);
            }
            Packet::Control(_) => self.train.extend_from_slice(&self.one),
        }
        self.count += 1;
        self.short = len < self.seg;
    }

    /// Sends the train waiting in the outbox.
    pub fn flush(&mut self) {
        let Some(to) = self.to.take() else {
            return;
        };
        let (seg, count) = (self.seg, std::mem::take(&mut self.count));
        self.short = false;
        let train = self.train.split().freeze();
        if !self.stalled.is_empty() {
            return self.stall(&train, seg, to);
        }
        let sent = if count == 1 {
            self.socket.send_to(&train, to).map(drop)
        } else {
            self.send_gso(&train, seg, to)
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stall(&train, seg, to),
            Err(e) if count > 1 => {
                // No segmentation offload here (an old kernel, an odd device): one by one
                // from now on.
                warn!(error = %e, "srt: UDP segmentation offload refused; sending packets one by one");
                self.gso = false;
                for d in train.chunks(seg) {
                    if let Err(e) = self.socket.send_to(d, to) {
                        debug!(%to, error = %e, "srt packet not sent");
                    }
                }
            }
            // A lost datagram, as far as SRT is concerned: a NAK gets it resent.
            Err(e) => debug!(%to, error = %e, "srt packet not sent"),
        }
    }

    fn send_gso(&self, train: &[u8], seg: usize, to: SocketAddr) -> io::Result<()> {
        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
        let seg = u16::try_from(seg).map_err(io::Error::other)?;
        let addr = SockaddrStorage::from(to);
        sendmsg(
            self.socket.as_raw_fd(),
            &[io::IoSlice::new(train)],
            &[ControlMessage::UdpGsoSegments(&seg)],
            MsgFlags::MSG_DONTWAIT,
            Some(&addr),
        )
        .map(drop)
        .map_err(io::Error::from)
    }

    /// Keeps a train's datagrams until the socket has room.
    fn stall(&mut self, train: &Bytes, seg: usize, to: SocketAddr) {
        for at in (0..train.len()).step_by(seg.max(1)) {
            if self.stalled.len() >= MAX_STALLED {
                self.dropped += 1;
                continue;
            }
            let end = (at + seg).min(train.len());
            self.stalled.push_back((train.slice(at..end), to));
        }
    }

    /// Whether datagrams wait for room in the socket.
    pub fn is_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// Sends what waited as far as the socket takes it; if it is still full, tries again a
    /// moment later. The socket is not registered for writability (see the module's notes),
    /// so a full one is polled: at once each time this is called (each wake-up of the task
    /// that owns the outbox), and every [`STALL_RETRY`] while nothing else wakes it.
    pub async fn unstall(&mut self) {
        if !self.send_stalled() {
            tokio::time::sleep(STALL_RETRY).await;
            self.send_stalled();
        }
    }

    /// Sends stalled datagrams in order until the socket refuses one; `true` when none is left.
    fn send_stalled(&mut self) -> bool {
        while let Some((data, to)) = self.stalled.front() {
            match self.socket.send_to(data, *to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                _ => {
                    self.stalled.pop_front();
                }
            }
        }
        if self.dropped > 0 {
            debug!(
                dropped = std::mem::take(&mut self.dropped),
                "srt datagrams dropped: socket full"
            );
        }
        true
    }
}

/// One open SRT connection driven alone by the task that owns it (a publisher).
///
/// Every method is cancel-safe: the state lives in `self`, and the only awaits are on timers,
/// the packet queue and socket readiness.
#[derive(Debug)]
pub struct Conn {
    link: Link,
    outbox: Outbox,
    packets: mpsc::Receiver<(Packet, SocketAddr)>,
}

impl Conn {
    /// Queues `payloads` (each at most one SRT payload) and sends what the sender allows.
    pub fn send(&mut self, payloads: &[Bytes]) {
        let now = Instant::now();
        self.link.push(now, payloads);
        self.link.poll(now, &mut self.outbox);
        self.outbox.flush();
    }

    /// Runs the connection until the peer's next payload; `None` once it is closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            let now = Instant::now();
            let deadline = self.link.poll(now, &mut self.outbox);
            self.outbox.flush();
            if let Some(data) = self.link.next_data(now) {
                return Some(data);
            }
            if !self.link.is_open() {
                return None;
            }
            self.wait(deadline).await;
        }
    }

    /// Flushes what is queued and says goodbye, within `timeout`.
    pub async fn close(&mut self, timeout: Duration) {
        self.link.close(Instant::now());
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
                        self.link.handle(now, p);
                        // Whatever else queued meanwhile, in the same wake-up.
                        for _ in 0..RECV_BATCH {
                            match self.packets.try_recv() {
                                Ok(p) => self.link.handle(now, p),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.link.handle_gone(now),
                }
            }
            _ = self.outbox.unstall(), if self.outbox.is_stalled() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control packet of type `ty` to socket 0 with `cif`.
    fn control(ty: u16, cif: &[u8]) -> Packet {
        let mut p = Vec::new();
        p.extend_from_slice(&(0x8000 | ty).to_be_bytes());
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&1000u32.to_be_bytes()); // timestamp
        p.extend_from_slice(&0u32.to_be_bytes()); // destination socket
        p.extend_from_slice(cif);
        Packet::parse(&mut Cursor::new(&p[..]), false).expect("packet")
    }

    /// A data packet of `len` payload bytes with sequence number `seq`.
    fn data(seq: u32, len: usize) -> Packet {
        let mut p = Vec::new();
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(0xc000_0000u32 | seq).to_be_bytes()); // a whole message
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.resize(16 + len, seq as u8);
        Packet::parse(&mut Cursor::new(&p[..]), false).expect("packet")
    }

    /// A non-blocking socket on a free loopback port.
    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_nonblocking(true).expect("non-blocking");
        s
    }

    #[tokio::test]
    async fn trains_arrive_as_the_datagrams_they_were_built_from() {
        let (a, b) = (socket(), socket());
        let (to_a, to_b) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
        let mut out = Outbox::new(Arc::new(socket()));
        // To a: a train of 70 full packets (more than one send takes), then a short one and
        // a full one after it (which must start a new train); to b in between.
        for seq in 0..70 {
            out.send(&data(seq, 1316), to_a);
        }
        out.send(&data(70, 188), to_a);
        out.send(&data(71, 1316), to_a);
        out.send(&data(100, 1316), to_b);
        out.send(&data(101, 1316), to_b);
        out.send(&data(72, 376), to_a);
        out.flush();
        assert!(!out.is_stalled());
        let recv = |s: &UdpSocket, n: usize| {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < n {
                let len = s
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("a datagram is missing after {got:?}: {e}"));
                let p = Packet::parse(&mut Cursor::new(&buf[..len]), false).expect("parse");
                let Packet::Data(d) = p else {
                    panic!("not data")
                };
                got.push((d.seq_number.as_raw(), d.payload.len()));
            }
            got
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = recv(&a, 73);
        let want: Vec<(u32, usize)> = (0..70)
            .map(|s| (s, 1316))
            .chain([(70, 188), (71, 1316), (72, 376)])
            .collect();
        assert_eq!(got, want);
        assert_eq!(recv(&b, 2), [(100, 1316), (101, 1316)]);
        assert!(out.gso, "this kernel refused segmentation offload");
    }

    #[tokio::test]
    async fn datagrams_the_socket_refused_wait_in_order_until_it_has_room() {
        let a = socket();
        let to = a.local_addr().expect("a");
        let mut out = Outbox::new(Arc::new(socket()));
        // A loopback UDP socket is hardly ever full: refuse a train as a full one would, then
        // see that what follows queues behind it instead of overtaking.
        let mut train = BytesMut::new();
        for seq in 0..3 {
            data(seq, 1316).serialize(&mut train);
        }
        out.stall(&train.freeze(), DATA_HEADER + 1316, to);
        assert!(out.is_stalled());
        for seq in 3..5 {
            out.send(&data(seq, 1316), to);
        }
        out.flush();
        assert!(out.is_stalled());
        tokio::time::timeout(Duration::from_secs(1), async {
            while out.is_stalled() {
                out.unstall().await;
            }
        })
        .await
        .expect("never unstalled");
        let a = tokio::net::UdpSocket::from_std(a).expect("tokio socket");
        let mut buf = [0u8; 2048];
        for seq in 0..5u32 {
            let len = tokio::time::timeout(Duration::from_secs(1), a.recv(&mut buf))
                .await
                .expect("datagram missing")
                .expect("recv");
            let Ok(Packet::Data(d)) = Packet::parse(&mut Cursor::new(&buf[..len]), false) else {
                panic!("not a data packet");
            };
            assert_eq!(d.seq_number.as_raw(), seq);
        }
    }

    #[tokio::test]
    async fn the_reader_paces_itself_under_load_and_waits_for_readiness_when_quiet() {
        let socket = Arc::new(socket());
        let to = socket.local_addr().expect("addr");
        let mut reader = Reader::new(socket).expect("reader");
        let peer = socket_on_tokio();
        let from = peer.local_addr().expect("peer");
        // A few datagrams: read on readiness, each as it comes, contents intact.
        for i in 0..3u8 {
            peer.send_to(&[i; 44], to).await.expect("send");
            tokio::time::timeout(Duration::from_secs(1), reader.read())
                .await
                .expect("not read")
                .expect("read");
            let got: Vec<_> = reader.datagrams().map(|(d, f)| (d.to_vec(), f)).collect();
            assert_eq!(got, [(vec![i; 44], from)]);
        }
        assert!(reader.ready.is_some());
        // A flood (about 2,000 a second): every datagram read, in batches, on the pace.
        let sender = tokio::spawn(async move {
            for i in 0..800u32 {
                peer.send_to(&i.to_be_bytes(), to).await.expect("send");
                if i % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            peer
        });
        let mut seen = Vec::new();
        let mut reads = 0;
        while seen.len() < 800 {
            tokio::time::timeout(Duration::from_secs(2), reader.read())
                .await
                .unwrap_or_else(|_| panic!("stalled after {} datagrams", seen.len()))
                .expect("read");
            reads += 1;
            seen.extend(
                reader
                    .datagrams()
                    .map(|(d, _)| u32::from_be_bytes(d.try_into().expect("four bytes"))),
            );
        }
        assert_eq!(seen, (0..800).collect::<Vec<u32>>());
        assert!(reader.ready.is_none(), "still reading on readiness");
        assert!(reads < 400, "{reads} reads for 800 datagrams");
        let peer = sender.await.expect("sender");
        // Quiet again: after a rate window it waits for readiness, and still reads.
        let quiet = tokio::time::Instant::now() + RATE_WINDOW * 2;
        while tokio::time::Instant::now() < quiet && reader.ready.is_none() {
            reader.read().await.expect("read");
        }
        assert!(reader.ready.is_some(), "still on the pace");
        peer.send_to(b"late", to).await.expect("send");
        tokio::time::timeout(Duration::from_secs(1), reader.read())
            .await
            .expect("not read")
            .expect("read");
        assert_eq!(reader.datagrams().count(), 1);
    }

    /// A tokio socket on a free loopback port.
    fn socket_on_tokio() -> tokio::net::UdpSocket {
        tokio::net::UdpSocket::from_std(socket()).expect("tokio socket")
    }

    #[tokio::test]
    async fn acks_wait_in_the_inbox_and_anything_else_wakes_its_task() {
        let inbox = Inbox::new();
        let from: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        // A light ACK (one word): no wake-up.
        assert!(inbox.push(control(2, &0x10u32.to_be_bytes()), from));
        let woke = tokio::time::timeout(Duration::from_millis(50), inbox.urgent()).await;
        assert!(woke.is_err(), "an ACK woke the task");
        // A NAK wakes it.
        assert!(inbox.push(control(3, &0x11u32.to_be_bytes()), from));
        tokio::time::timeout(Duration::from_secs(1), inbox.urgent())
            .await
            .expect("a NAK did not wake the task");
        let mut got = Vec::new();
        inbox.take(&mut got);
        assert_eq!(got.len(), 2, "both wait to be taken, in order");
        assert!(matches!(
            got[0].0,
            Packet::Control(ControlPacket {
                control_type: ControlTypes::Ack(_),
                ..
            })
        ));
        // Bounded: a flood is dropped at the cap.
        for _ in 0..INBOX_CAP {
            assert!(inbox.push(control(2, &0x10u32.to_be_bytes()), from));
        }
        assert!(!inbox.push(control(2, &0x10u32.to_be_bytes()), from));
    }
}
