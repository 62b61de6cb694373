//! Tokio driver of the RTMP server: accept loop and one task per connection.
//!
//! All protocol logic lives in [`ServerSession`], [`Ingest`] and [`Play`]; this file only moves
//! bytes between the socket and them, and between them and the hub.

use crate::chunk::{DecoderLimits, OutQueue};
use crate::ingest::Ingest;
use crate::play::Play;
use crate::session::{ConnectInfo, ServerSession, SessionConfig, SessionEvent, split_query};
use bytes::BytesMut;
use fanout::{Change, Joiner, Membership, Registry};
use handler::{
    Accepted, Client, ClientEnd, ClientHandler, HubPublishing, NewClient, NewClientHandler, Refused,
};
use hub::{AccessRequest, Action, Admission, ClientInfo, CommandArgs, Hub, ReaderMeta, Seat};
use std::any::Any;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

mod fanout;
pub mod handler;

/// Query arguments of a publish or play, in the client's order.
type Args = Vec<(String, String)>;

/// Read buffer growth for publishers, whose messages are large.
const READ_CHUNK: usize = 64 << 10;
/// Read buffer of everyone else: players only send acknowledgements and pings, and thousands
/// of them must stay cheap.
const SMALL_READ_CHUNK: usize = 2 << 10;
/// iovecs handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// How the path of an RTMP URL names a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UrlScheme {
    /// `rtmp://HOST/<app>/<code>`: the configured application, the stream code as the name
    /// (tokens go in the query: `?key=`).
    #[default]
    AppName,
    /// AgustinSRG rtmp-server's `rtmp://HOST/<channel>/<key>`: the application is the stream
    /// and the name its key, given to the admission as the `key` argument. A player must give
    /// the publisher's key.
    ChannelKey,
}

/// Settings of the RTMP listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How URLs name streams.
    pub url_scheme: UrlScheme,
    /// With [`UrlScheme::ChannelKey`], players from these addresses need not give the
    /// publisher's key (AgustinSRG's `RTMP_PLAY_WHITELIST`, e.g. the HLS encoders that pull).
    pub play_key_exempt: Option<access::IpList>,
    /// Sends every connection a ping request this often (`None`: never).
    pub ping_interval: Option<Duration>,
    /// A player that sends nothing, not even a ping response, for this long is closed
    /// (`None`: never; write errors still end dead players).
    pub player_read_timeout: Option<Duration>,
    /// Session settings (application name, chunk size, decoder limits).
    pub session: SessionConfig,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Time a player waits for a publisher that is not live yet.
    pub play_wait_timeout: Duration,
    /// A connection that neither publishes nor plays this long after the handshake is closed.
    pub idle_timeout: Duration,
    /// A publisher whose data no consumer demands this long after its `publish` is closed
    /// (see [`handler::Client::demand`]).
    pub client_timeout: Duration,
    /// A publisher that sends nothing for this long is closed, freeing its stream code.
    pub publisher_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest a player's frames may wait to be merged into one write (see [`coalesce_window`]).
    pub play_coalesce_max: Duration,
    /// Readers of a stream at which the merge window reaches `play_coalesce_max`.
    pub play_coalesce_readers: u64,
    /// Players one fan-out task writes; a larger audience gets more tasks (and threads).
    pub play_group_size: usize,
    /// Connection limits (global and per address), shared with the other TCP listeners.
    pub limiter: Option<access::ConnLimiter>,
}

impl ServerConfig {
    /// Whether a player from `ip` need not give the publisher's key (`play_key_exempt`).
    fn needs_no_key(&self, ip: std::net::IpAddr) -> bool {
        self.play_key_exempt
            .as_ref()
            .is_some_and(|list| list.contains(ip))
    }
}

/// Whether `args` carry the publisher's `key` (compared in constant time).
fn holds_key(args: &[(String, String)], key: &str) -> bool {
    args.iter()
        .any(|(k, v)| k == "key" && hub::constant_time_eq(v.as_bytes(), key.as_bytes()))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            url_scheme: UrlScheme::AppName,
            play_key_exempt: None,
            ping_interval: None,
            player_read_timeout: None,
            session: SessionConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            play_wait_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            client_timeout: Duration::from_secs(5),
            publisher_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            play_coalesce_max: Duration::ZERO,
            play_coalesce_readers: 200,
            play_group_size: 512,
            limiter: None,
        }
    }
}

/// Checks `limiter` for a connection just accepted from `peer`; a refused one is dropped
/// (closed) by the caller before any byte is read, and logged here.
pub fn admit_connection(
    limiter: Option<&access::ConnLimiter>,
    peer: SocketAddr,
    protocol: &str,
) -> Result<Option<access::ConnGuard>, access::LimitError> {
    match limiter.map(|l| l.try_acquire(peer.ip())).transpose() {
        Ok(guard) => Ok(guard),
        Err(e) => {
            warn!(%peer, protocol, reason = %e, "connection refused by limits");
            Err(e)
        }
    }
}

/// How long a player may hold frames to merge them into one write.
///
/// Each write to a player costs a syscall plus the TCP and wake-up work behind it. A lone
/// player gets every frame at once; as readers grow the window grows linearly up to `max`, so
/// the added latency stays within `max`. Off by default: frames of a 30 fps stream with audio
/// come about 14 ms apart, and the fan-out task merges whatever arrives while it walks its
/// sockets, so at 500 players a 10 ms window merged almost nothing and doubled the p99
/// latency. A much larger window trades latency for CPU, as SRS's merged writes do.
pub fn coalesce_window(readers: u64, max: Duration, full_at: u64) -> Duration {
    if readers <= 1 || full_at <= 1 || max.is_zero() {
        return Duration::ZERO;
    }
    let fraction = ((readers - 1) as f64 / (full_at - 1) as f64).min(1.0);
    max.mul_f64(fraction)
}

/// The readiness-based socket API the connection driver needs: plain TCP for RTMP, and one end
/// of a Unix socket pair behind a TLS pump for RTMPS. Readiness plus `try_*` calls let one task
/// wait on the socket, the hub and timers at once without splitting the socket.
pub trait Socket: Send + Sync + 'static {
    /// Polls until a read may make progress. The poll form keeps one waker slot per
    /// direction instead of a waiter-list entry added and removed on every wake-up.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Polls until a write may make progress.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is available without waiting.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes what the socket takes without waiting.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Like `try_write_vectored`, through `sendmsg(2)`: a socket's direct path, where
    /// `writev` goes through the file layer first (its position lock and checks cost about 8 %
    /// of a busy fan-out's cycles).
    fn try_send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

macro_rules! impl_socket {
    ($t:ty) => {
        impl Socket for $t {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_write_ready(self, cx)
            }
            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$t>::try_read_buf(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$t>::try_write_vectored(self, bufs)
            }
            fn try_send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                // Inside `try_io`, so tokio clears readiness only for the readiness it saw.
                self.try_io(tokio::io::Interest::WRITABLE, || {
                    socket2::SockRef::from(self).send_vectored(bufs)
                })
            }
        }
    };
}
impl_socket!(TcpStream);
impl_socket!(UnixStream);

/// The RTMP server.
#[derive(Clone)]
pub struct Server {
    hub: Hub,
    config: Arc<ServerConfig>,
    fanout: Arc<Registry>,
    /// What becomes of publishers.
    publishing: Arc<dyn NewClientHandler>,
    /// Whether `play` is served (from the hub); an embedded server without a hub refuses it.
    play: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("play", &self.play)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server publishing into and playing from `hub`: the builder with [`Builder::hub`].
    pub fn new(hub: Hub, config: ServerConfig) -> Self {
        Server::builder().config(config).hub(hub).build()
    }

    /// A builder: an embedded server by default, the gateway's with [`Builder::hub`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Tells the hub (and so the API's URL list) where this server listens, while it runs.
    fn announce(
        &self,
        listener: &TcpListener,
        protocol: &'static str,
    ) -> Option<hub::ListenerGuard> {
        let addr = listener.local_addr().ok()?;
        Some(self.hub.announce_listener(hub::ListenerInfo {
            protocol,
            addr,
            app: self.config.session.app.clone(),
        }))
    }

    /// Accepts connections until `shutdown`, then waits for every connection to close.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        let _announced = self.announce(&listener, "rtmp");
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "rtmp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                warn!(%peer, "rtmp connection limit reached; closing");
                continue;
            };
            let Ok(limit) = admit_connection(self.config.limiter.as_ref(), peer, "rtmp") else {
                continue;
            };
            // Without this, small control replies and frames wait out Nagle + delayed ACK.
            if let Err(e) = socket.set_nodelay(true) {
                debug!(%peer, error = %e, "set_nodelay failed");
            }
            let id = self.hub.next_connection_id();
            let mut conn = Conn::new(socket, peer, id, &self);
            let shutdown = shutdown.clone();
            let span = info_span!("rtmp", %peer, conn = id, code = tracing::field::Empty);
            tracker.spawn(
                async move {
                    conn.serve(shutdown).await;
                    drop((conn, permit, limit));
                }
                .instrument(span),
            );
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }

    /// Like [`Server::run`] for RTMPS: each connection's TLS is terminated by a pump task that
    /// feeds the same RTMP driver through a Unix socket pair, so the plain-RTMP fast path stays
    /// free of TLS and of a second code path.
    pub async fn run_tls(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let _announced = self.announce(&listener, "rtmps");
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "rtmps accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                warn!(%peer, "rtmps connection limit reached; closing");
                continue;
            };
            let Ok(limit) = admit_connection(self.config.limiter.as_ref(), peer, "rtmps") else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let acceptor = acceptor.clone();
            let server = self.clone();
            let config = self.config.clone();
            let shutdown = shutdown.clone();
            let id = self.hub.next_connection_id();
            let span = info_span!("rtmps", %peer, conn = id, code = tracing::field::Empty);
            tracker.spawn(
                async move {
                    let handshake =
                        tokio::time::timeout(config.handshake_timeout, acceptor.accept(socket));
                    let tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            info!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            info!("TLS handshake timed out");
                            return;
                        }
                    };
                    let (inner, outer) = match UnixStream::pair() {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(error = %e, "cannot create a socket pair for RTMPS");
                            return;
                        }
                    };
                    let pump = tokio::spawn(pump_tls(tls, outer));
                    let mut conn = Conn::new(inner, peer, id, &server);
                    conn.serve(shutdown).await;
                    // Closing the RTMP side: the pump sees EOF, sends close_notify and ends.
                    drop(conn);
                    let _ = pump.await;
                    drop((permit, limit));
                }
                .instrument(span),
            );
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

/// Builds a [`Server`]: the bind address, RTMPS, `client_timeout` and what becomes of each
/// publishing client.
///
/// ```no_run
/// use ferrocast_rtmp::server::Server;
/// use ferrocast_rtmp::server::handler::{Accepted, ClientHandler, NewClient, Refused};
/// use ferrocast_rtmp::ingest::IngestOutput;
///
/// struct Count(u64);
/// impl ClientHandler for Count {
///     fn data_available(&mut self, data: IngestOutput) {
///         if let IngestOutput::Frame(_) = data {
///             self.0 += 1;
///         }
///     }
///     fn delete_stream(&mut self) {
///         println!("{} frames", self.0);
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::builder()
///     .bind("127.0.0.1:1935".parse().unwrap())
///     .handle_new_client(|new: NewClient| async move {
///         if new.app != "live" {
///             return Err(Refused::new("unknown application"));
///         }
///         new.client.demand();
///         Ok(Accepted::new(Count(0)))
///     })
///     .start()
///     .await?;
/// println!("listening on port {}", server.port());
/// server.stop().await
/// # }
/// ```
pub struct Builder {
    config: ServerConfig,
    hub: Option<Hub>,
    publishing: Option<Arc<dyn NewClientHandler>>,
    bind: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Builder {
    fn default() -> Self {
        let mut config = ServerConfig::default();
        // An embedded server takes any application; the gateway configures its own.
        config.session.app = String::new();
        Builder {
            config,
            hub: None,
            publishing: None,
            bind: SocketAddr::from(([0, 0, 0, 0], 1935)),
            tls: None,
        }
    }
}

impl Builder {
    /// Every setting at once; an empty `session.app` accepts any application.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Where [`Builder::start`] listens (default `0.0.0.0:1935`; port 0 picks a free one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Serves RTMPS with this TLS configuration (see [`crate::tls::ReloadingCert`] for
    /// certificate files reloaded when they change).
    pub fn tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long a publishing client may wait for a consumer's demand before it is closed
    /// (default 5 s).
    pub fn client_timeout(mut self, timeout: Duration) -> Self {
        self.config.client_timeout = timeout;
        self
    }

    /// What becomes of each client that asks to publish.
    pub fn handle_new_client(mut self, handler: impl NewClientHandler) -> Self {
        self.publishing = Some(Arc::new(handler));
        self
    }

    /// Plays from `hub`, and publishes into it unless [`Builder::handle_new_client`] says
    /// otherwise (the gateway's setup).
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The server, to run on a listener of the caller's ([`Server::run`], [`Server::run_tls`]).
    /// Without a handler or a hub, every publish is refused.
    pub fn build(self) -> Server {
        let play = self.hub.is_some();
        let hub = self
            .hub
            .unwrap_or_else(|| Hub::new(hub::HubConfig::default()));
        let publishing = self.publishing.unwrap_or_else(|| {
            if play {
                Arc::new(HubPublishing::new(hub.clone()))
            } else {
                Arc::new(|_: NewClient| async { Err(Refused::new("publishing is not served")) })
            }
        });
        Server {
            hub,
            config: Arc::new(self.config),
            fanout: Arc::new(Registry::new()),
            publishing,
            play,
        }
    }

    /// Binds, and serves in a task of its own until [`RunningServer::stop`].
    pub async fn start(self) -> io::Result<RunningServer> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let tls = self.tls.clone();
        let server = self.build();
        let shutdown = CancellationToken::new();
        let task = match tls {
            Some(tls) => tokio::spawn(server.run_tls(listener, tls, shutdown.clone())),
            None => tokio::spawn(server.run(listener, shutdown.clone())),
        };
        Ok(RunningServer {
            addr,
            shutdown,
            task,
        })
    }
}

/// A server started by [`Builder::start`].
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// The port it listens on (the one picked when bound to port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection (publishers' handlers hear
    /// `connection_closed`) and waits for them.
    pub async fn stop(self) -> io::Result<()> {
        self.shutdown.cancel();
        self.task.await.map_err(io::Error::other)?
    }
}

/// Copies between the TLS connection and the driver's end of the socket pair.
async fn pump_tls(mut tls: tokio_rustls::server::TlsStream<TcpStream>, mut plain: UnixStream) {
    if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut plain).await {
        debug!(error = %e, "rtmps pump ended");
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Session(#[from] crate::session::SessionError),
    #[error("{0}")]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("read buffer over {0} bytes")]
    ReadBuffer(usize),
    #[error("server shutting down")]
    Shutdown,
}

/// How long a closing player's last bytes may take to leave at shutdown.
const GOODBYE_FLUSH: Duration = Duration::from_millis(500);

enum Role {
    Idle,
    Publishing {
        handler: Handled,
        end: ClientEnd,
        ingest: Box<Ingest>,
        stream_id: u32,
        /// The name the client publishes as.
        name: String,
        /// Whether a consumer demanded the data: the publish is acknowledged then.
        flowing: bool,
        /// Closed if nothing demands its data by then.
        demand_deadline: Instant,
    },
    Playing {
        /// The player's fan-out task writes its media; declared first so the player leaves
        /// the task before its seat is given up.
        member: Membership,
        seat: Seat,
        stream_id: u32,
        /// Give up if the stream is not live by then.
        wait_deadline: Option<Instant>,
    },
}

enum Wake {
    Shutdown,
    Readable,
    Writable,
    Killed,
    Deadline,
    /// A consumer demanded the publisher's data.
    Demanded,
    /// A message for the publisher's handler.
    Info(Box<dyn Any + Send>),
}

/// A publisher's handler, told `connection_closed` when dropped unless its stream was deleted.
struct Handled {
    handler: Box<dyn ClientHandler>,
    deleted: bool,
}

impl Drop for Handled {
    fn drop(&mut self) {
        if !self.deleted {
            self.handler.connection_closed();
        }
    }
}

/// An RTMP connection past its handshake. Dropping it tells the admission the connection
/// closed, exactly once, whatever closed it (EOF, an error, a refusal, a kick, shutdown, the
/// task being dropped), and whether or not its `connect` was allowed or even sent: nginx-rtmp
/// fires `on_disconnect` for every session. Connections that never finish the handshake are
/// not RTMP clients yet (port probes, floods) and stay silent.
struct Connected {
    admission: Arc<dyn Admission>,
    /// What `connect` said; only the connection id and epoch before it arrives.
    client: Arc<ClientInfo>,
    peer: SocketAddr,
    /// Whether the admission allowed `connect`: requests carry the client only then.
    admitted: bool,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.admission.disconnect(self.client.clone(), self.peer);
    }
}

/// What the admission sees of a `connect`: its fields, and the query arguments given with the
/// app or in `tcUrl` (some encoders put `?token=` only in one of them), without repeats.
fn client_info(connection_id: u64, epoch: u32, info: ConnectInfo) -> ClientInfo {
    let mut connect_args = info.app_args;
    if let Some(tc_url) = info.tc_url.as_deref() {
        for kv in split_query(tc_url).1 {
            if !connect_args.contains(&kv) {
                connect_args.push(kv);
            }
        }
    }
    ClientInfo {
        connection_id,
        app: info.app,
        flash_ver: info.flash_ver.unwrap_or_default(),
        swf_url: info.swf_url.unwrap_or_default(),
        tc_url: info.tc_url.unwrap_or_default(),
        page_url: info.page_url.unwrap_or_default(),
        connect_args,
        epoch,
    }
}

/// Waits for `decision` (an admission hook may take a while), or `None` if the server shuts
/// down first, so a slow hook cannot hold up shutdown.
async fn until_shutdown<T>(
    shutdown: &CancellationToken,
    decision: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        r = decision => Some(r),
    }
}

struct Conn<S: Socket> {
    socket: Arc<S>,
    peer: SocketAddr,
    /// Process-unique connection id, given to the admission as `clientid`.
    id: u64,
    /// The handshake epoch (ms), nginx-rtmp's `epoch`.
    epoch: u32,
    hub: Hub,
    /// This connection's shutdown signal (a child of the server's).
    shutdown: CancellationToken,
    config: Arc<ServerConfig>,
    fanout: Arc<Registry>,
    publishing: Arc<dyn NewClientHandler>,
    play: bool,
    session: ServerSession,
    rbuf: BytesMut,
    role: Role,
    /// Flush what is queued, then close (after a refusal).
    closing: bool,
    /// Kick switch of the current publish or play session, as a future made once per role.
    kill: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// When the connection last entered `Role::Idle`.
    idle_since: Instant,
    last_read: Instant,
    /// When the connection was accepted (ping timestamps count from it).
    started: Instant,
    /// When the next ping request goes out, once `connect` was accepted.
    next_ping: Option<Instant>,
    max_rbuf: usize,
    /// Set once the handshake is done. Declared last so it drops last: the admission hears
    /// the publish or play session close before the connection.
    connected: Option<Connected>,
}

static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

impl<S: Socket> Conn<S> {
    fn new(socket: S, peer: SocketAddr, id: u64, server: &Server) -> Self {
        let config = server.config.clone();
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u32)
            .unwrap_or(0);
        let session = ServerSession::new(config.session.clone(), epoch, seed());
        let epoch_ms = epoch;
        let limits: &DecoderLimits = &config.session.limits;
        // One partial chunk plus one read: anything beyond means the decoder is not consuming.
        let max_rbuf = limits.max_chunk_size as usize + 18 + READ_CHUNK * 2;
        Conn {
            socket: Arc::new(socket),
            peer,
            id,
            epoch: epoch_ms,
            hub: server.hub.clone(),
            shutdown: CancellationToken::new(),
            config,
            fanout: server.fanout.clone(),
            publishing: server.publishing.clone(),
            play: server.play,
            session,
            rbuf: BytesMut::with_capacity(4096),
            role: Role::Idle,
            closing: false,
            kill: None,
            idle_since: Instant::now(),
            last_read: Instant::now(),
            started: Instant::now(),
            next_ping: None,
            max_rbuf,
            connected: None,
        }
    }

    /// Serves the connection to its end. By reference, not by value: an async fn keeps its
    /// by-value arguments besides its body's copy, and thousands of connection tasks would
    /// each carry the connection twice more.
    async fn serve(&mut self, shutdown: CancellationToken) {
        match self.run(shutdown).await {
            Ok(()) => debug!("connection closed"),
            Err(ConnError::Io(e)) => debug!(error = %e, "connection ended"),
            Err(ConnError::Shutdown) => debug!("server shut down during an admission decision"),
            Err(e) => warn!(error = %e, "connection closed on error"),
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), ConnError> {
        let handshake_deadline = Instant::now() + self.config.handshake_timeout;
        // A child token per connection: polling a token locks its tree node, and the root is
        // shared by every connection. Pinned once: re-creating the future would register and
        // deregister a waiter on every wake.
        self.shutdown = shutdown.child_token();
        let shutdown = self.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            self.flush().await?;
            if self.closing && self.session.out().is_empty() {
                return Ok(());
            }
            match self.wait(cancelled.as_mut(), handshake_deadline).await {
                Wake::Shutdown => {
                    debug!("server shutting down");
                    Box::pin(self.say_goodbye()).await;
                    return Ok(());
                }
                Wake::Deadline => {
                    let now = Instant::now();
                    if !self.session.handshake_done() {
                        return Err(ConnError::HandshakeTimeout(self.config.handshake_timeout));
                    }
                    if let (Some(at), Some(every)) = (self.next_ping, self.config.ping_interval)
                        && at <= now
                    {
                        let ms = now.duration_since(self.started).as_millis() as u32;
                        let ping = crate::message::UserControl::PingRequest(ms);
                        self.session
                            .writer()
                            .send_user_control(crate::message::user_control(&ping));
                        self.next_ping = Some(now + every);
                    }
                    if let (Role::Playing { .. }, Some(limit)) =
                        (&self.role, self.config.player_read_timeout)
                        && self.last_read + limit <= now
                    {
                        info!(timeout = ?limit, "player sent nothing, not even a ping response; closing");
                        return Ok(());
                    }
                    match &mut self.role {
                        Role::Playing {
                            member,
                            wait_deadline: wait @ Some(_),
                            ..
                        } if member.started() => *wait = None,
                        Role::Playing {
                            stream_id,
                            wait_deadline: Some(at),
                            ..
                        } if *at <= now => {
                            let id = *stream_id;
                            info!("no publisher within the play wait timeout");
                            Box::pin(self.stop_playing()).await;
                            self.session.reject_play(id, "stream not found");
                            self.closing = true;
                        }
                        Role::Idle if self.idle_since + self.config.idle_timeout <= now => {
                            info!(timeout = ?self.config.idle_timeout, "closing a connection that neither published nor played");
                            return Ok(());
                        }
                        Role::Publishing {
                            flowing: false,
                            demand_deadline,
                            ..
                        } if *demand_deadline <= now => {
                            info!(timeout = ?self.config.client_timeout, "no consumer demanded the publisher's data; closing");
                            return Ok(());
                        }
                        Role::Publishing { flowing: true, .. }
                            if self.last_read + self.config.publisher_timeout <= now =>
                        {
                            warn!(timeout = ?self.config.publisher_timeout, "publisher sent nothing; closing");
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                Wake::Readable => {
                    if !self.read().await? {
                        return Ok(());
                    }
                }
                Wake::Writable => {}
                Wake::Demanded => {
                    if let Role::Publishing {
                        flowing,
                        stream_id,
                        name,
                        ..
                    } = &mut self.role
                    {
                        debug!("a consumer demanded the data; publish acknowledged");
                        *flowing = true;
                        self.session.accept_publish(*stream_id, name);
                        self.last_read = Instant::now();
                    }
                }
                Wake::Info(message) => {
                    if let Role::Publishing { handler, .. } = &mut self.role {
                        handler.handler.info(message);
                    }
                }
                Wake::Killed => {
                    match &self.role {
                        Role::Playing { seat, .. } if !seat.kill_token().is_cancelled() => {
                            info!("player dropped by its fan-out task")
                        }
                        _ => info!("session kicked by the control plane"),
                    }
                    return Ok(());
                }
            }
        }
    }

    async fn wait(
        &mut self,
        cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
        handshake_deadline: Instant,
    ) -> Wake {
        // A player's bytes are written by its fan-out task.
        let want_write =
            !self.session.out().is_empty() && !matches!(self.role, Role::Playing { .. });
        let deadline = if !self.session.handshake_done() {
            Some(handshake_deadline)
        } else {
            match &self.role {
                Role::Playing { wait_deadline, .. } => *wait_deadline,
                Role::Idle if !self.closing => Some(self.idle_since + self.config.idle_timeout),
                Role::Publishing {
                    flowing: false,
                    demand_deadline,
                    ..
                } => Some(*demand_deadline),
                Role::Publishing { .. } => Some(self.last_read + self.config.publisher_timeout),
                Role::Idle => None,
            }
        };
        let read_deadline = match (&self.role, self.config.player_read_timeout) {
            (Role::Playing { .. }, Some(limit)) => Some(self.last_read + limit),
            _ => None,
        };
        let ping = self.next_ping.filter(|_| !self.closing);
        let deadline = [deadline, ping, read_deadline].into_iter().flatten().min();
        let socket = &self.socket;
        let closing = self.closing;
        // A publisher is read only once its data is demanded, and while its handler is ready.
        let (mut handler, end, flowing) = match &mut self.role {
            Role::Publishing {
                handler,
                end,
                flowing,
                ..
            } => (Some(&mut handler.handler), Some(end), *flowing),
            _ => (None, None, true),
        };
        let (shared, info) = match end {
            Some(end) => {
                let ClientEnd { shared, info } = end;
                (Some(&*shared), Some(info))
            }
            None => (None, None),
        };
        let demanded = async {
            match shared {
                Some(shared) if !flowing => handler::demanded(shared).await,
                _ => std::future::pending().await,
            }
        };
        let info = async {
            match info {
                Some(rx) => match rx.recv().await {
                    Some(message) => message,
                    // Every `Client` handle is gone: nothing more can come.
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let readable = async {
            if let Some(h) = handler.as_mut() {
                std::future::poll_fn(|cx| h.poll_ready(cx)).await;
            }
            std::future::poll_fn(|cx| socket.poll_read_ready(cx)).await
        };
        // The role's end signal: a publisher's kick, or a player's kick or removal.
        let killed = async {
            match &mut self.kill {
                Some(k) => k.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancelled => Wake::Shutdown,
            _ = killed => Wake::Killed,
            _ = async { sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => Wake::Deadline,
            _ = demanded => Wake::Demanded,
            message = info => Wake::Info(message),
            r = std::future::poll_fn(|cx| socket.poll_write_ready(cx)), if want_write => { let _ = r; Wake::Writable }
            r = readable, if !closing && flowing => { let _ = r; Wake::Readable }
        }
    }

    /// Reads what is available and feeds the session; `false` on EOF.
    async fn read(&mut self) -> Result<bool, ConnError> {
        // Bounded so one fast peer cannot hold the worker thread; readiness stays set and the
        // next wait returns at once.
        for _ in 0..16 {
            let grow = match self.role {
                Role::Publishing { .. } => READ_CHUNK,
                _ if !self.session.handshake_done() => 4 << 10,
                _ => SMALL_READ_CHUNK,
            };
            self.rbuf.reserve(grow);
            match self.socket.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Ok(false),
                Ok(_) => {
                    self.last_read = Instant::now();
                    if self.rbuf.len() > self.max_rbuf {
                        return Err(ConnError::ReadBuffer(self.max_rbuf));
                    }
                    self.feed().await?;
                    let playing = matches!(self.role, Role::Playing { .. });
                    if self.rbuf.is_empty()
                        && (playing
                            || self.rbuf.capacity() > SMALL_READ_CHUNK
                                && !matches!(self.role, Role::Publishing { .. }))
                    {
                        // The handshake needed 3 KiB; a player sends an acknowledgement every
                        // few seconds, so its buffer is better allocated per read than kept
                        // by each of thousands of players.
                        self.rbuf = BytesMut::new();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Feeds the session and acts on its events until it consumes nothing more: the session
    /// decodes nothing while `connect` awaits the admission, so what the client sent behind it
    /// is still in `rbuf` once it is answered.
    async fn feed(&mut self) -> Result<(), ConnError> {
        loop {
            let before = self.rbuf.len();
            self.session.feed(&mut self.rbuf)?;
            if self.connected.is_none() && self.session.handshake_done() {
                self.connected = Some(Connected {
                    admission: self.hub.admission(),
                    client: Arc::new(ClientInfo {
                        connection_id: self.id,
                        epoch: self.epoch,
                        ..ClientInfo::default()
                    }),
                    peer: self.peer,
                    admitted: false,
                });
            }
            self.events().await?;
            if self.closing || self.rbuf.is_empty() || self.rbuf.len() == before {
                return Ok(());
            }
        }
    }

    async fn events(&mut self) -> Result<(), ConnError> {
        let mut outputs = Vec::new();
        while let Some(ev) = self.session.poll_event() {
            // The rare steps (admission and its hooks, leaving, pause) run boxed: inline, their
            // futures would size every connection's task, thousands of players, for its life.
            match ev {
                SessionEvent::ConnectRequest(info) => Box::pin(self.on_connect(info)).await?,
                SessionEvent::PublishRequest {
                    stream_id,
                    name,
                    args,
                    kind,
                } => {
                    let (name, args) = match self.route(name, args) {
                        Ok(routed) => routed,
                        Err(why) => {
                            warn!(why, "publish refused");
                            self.session.reject_publish(stream_id, why);
                            self.closing = true;
                            continue;
                        }
                    };
                    let command = CommandArgs {
                        publish_type: kind,
                        ..CommandArgs::default()
                    };
                    Box::pin(self.on_publish(stream_id, name, args, command)).await?
                }
                SessionEvent::PlayRequest {
                    stream_id,
                    name,
                    args,
                    start,
                    duration,
                    reset,
                } => {
                    let (name, args) = match self.route(name, args) {
                        Ok(routed) => routed,
                        Err(why) => {
                            warn!(why, "play refused");
                            self.session.reject_play(stream_id, why);
                            self.closing = true;
                            continue;
                        }
                    };
                    let command = CommandArgs {
                        start,
                        duration,
                        reset,
                        ..CommandArgs::default()
                    };
                    Box::pin(self.on_play(stream_id, name, args, command)).await?
                }
                SessionEvent::Metadata(meta) => {
                    if let Role::Publishing {
                        ingest, handler, ..
                    } = &mut self.role
                    {
                        handler.handler.metadata(&meta);
                        ingest.metadata(&meta, &mut outputs);
                    }
                }
                SessionEvent::Audio { timestamp, payload } => {
                    if let Role::Publishing { ingest, .. } = &mut self.role {
                        ingest.audio(timestamp, &payload, &mut outputs)?;
                    }
                }
                SessionEvent::Video { timestamp, payload } => {
                    if let Role::Publishing { ingest, .. } = &mut self.role {
                        ingest.video(timestamp, &payload, &mut outputs)?;
                    }
                }
                SessionEvent::StreamClosed { stream_id } => {
                    Box::pin(self.on_stream_closed(stream_id)).await
                }
                SessionEvent::Pause { stream_id, paused } => {
                    if self.playing_on(stream_id) {
                        debug!(paused, "player paused or unpaused");
                        self.session.play_paused(stream_id, paused);
                        let change = if paused {
                            Change::Pause
                        } else {
                            Change::Resume
                        };
                        Box::pin(self.forward(Some(change))).await?;
                    }
                }
                SessionEvent::Receive {
                    stream_id,
                    video,
                    on,
                } => {
                    if self.playing_on(stream_id) {
                        debug!(video, on, "player chose its tracks");
                        Box::pin(self.forward(Some(Change::Receive { video, on }))).await?;
                    }
                }
            }
            if let Role::Publishing { handler, .. } = &mut self.role {
                for out in outputs.drain(..) {
                    handler.handler.data_available(out);
                }
            }
        }
        Ok(())
    }

    /// Asks the admission about `connect`; the connection waits (only it) while a hook decides.
    async fn on_connect(&mut self, info: ConnectInfo) -> Result<(), ConnError> {
        let client = Arc::new(client_info(self.id, self.epoch, info));
        // tcUrl may carry ?key= tokens: log it without its query.
        let tc_url = client
            .tc_url
            .split_once('?')
            .map_or(client.tc_url.as_str(), |(b, _)| b);
        debug!(app = %client.app, %tc_url, flash_ver = %client.flash_ver, "connect");
        let admission = self.hub.admission();
        let connected = self.connected.get_or_insert_with(|| Connected {
            admission: admission.clone(),
            client: client.clone(),
            peer: self.peer,
            admitted: false,
        });
        // A refused or unanswered connect still ends in a disconnect with what it said.
        connected.client = client.clone();
        let decision = until_shutdown(&self.shutdown, admission.connect(client.clone(), self.peer))
            .await
            .ok_or(ConnError::Shutdown)?;
        let app = match decision {
            Ok(app) => app,
            Err(denied) => {
                warn!(app = %client.app, reason = %denied, "connect refused by admission");
                self.session.reject_connect(&denied.reason);
                self.closing = true;
                return Ok(());
            }
        };
        if app != client.app {
            debug!(from = %client.app, to = %app, "admission renamed the app");
            let renamed = Arc::new(ClientInfo {
                app: app.clone(),
                ..ClientInfo::clone(&client)
            });
            if let Some(c) = &mut self.connected {
                c.client = renamed;
            }
        }
        if let Some(c) = &mut self.connected {
            c.admitted = true;
        }
        match self.session.accept_connect(&app) {
            Ok(()) => {
                self.idle_since = Instant::now();
                self.next_ping = self
                    .config
                    .ping_interval
                    .map(|every| self.idle_since + every);
            }
            Err(e) => {
                warn!(error = %e, "connect refused");
                self.closing = true;
            }
        }
        Ok(())
    }

    /// The stream code and arguments a publish or play means under the URL scheme: with
    /// [`UrlScheme::ChannelKey`] the app is the stream and the name its `key` argument.
    fn route(
        &self,
        name: String,
        mut args: Vec<(String, String)>,
    ) -> Result<(String, Args), &'static str> {
        match self.config.url_scheme {
            UrlScheme::AppName => Ok((self.namespaced(name), args)),
            UrlScheme::ChannelKey => {
                let channel = self.client().map(|c| c.app.clone()).unwrap_or_default();
                if !hub::valid_name(&channel) {
                    return Err("invalid channel");
                }
                if !hub::valid_name(&name) {
                    return Err("Invalid stream key provided");
                }
                // The path's key wins over a `?key=` in the query.
                args.retain(|(k, _)| k != "key");
                args.push(("key".into(), name));
                Ok((channel, args))
            }
        }
    }

    /// The stream code a publish or play name means: under app `live/<ns>`, `<ns>/<name>`
    /// (Open-Streamer's namespaced codes); the name itself under `live`.
    fn namespaced(&self, name: String) -> String {
        let ns = self.client().and_then(|c| {
            c.app
                .strip_prefix(self.config.session.app.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .map(str::to_owned)
        });
        match ns {
            Some(ns) if !name.is_empty() => format!("{ns}/{name}"),
            _ => name,
        }
    }

    /// The accepted connection's client info, for requests and sessions.
    fn client(&self) -> Option<Arc<ClientInfo>> {
        self.connected
            .as_ref()
            .filter(|c| c.admitted)
            .map(|c| c.client.clone())
    }

    /// Asks the control plane; the connection waits (only it) while a hook decides.
    async fn authorize(
        &mut self,
        action: Action,
        name: String,
        args: Vec<(String, String)>,
        command: CommandArgs,
    ) -> Result<hub::Decision, ConnError> {
        let request = self.hub.authorize(AccessRequest {
            action,
            code: name,
            protocol: "rtmp",
            remote_addr: Some(self.peer),
            args,
            client: self.client(),
            command,
        });
        until_shutdown(&self.shutdown, request)
            .await
            .ok_or(ConnError::Shutdown)
    }

    async fn on_publish(
        &mut self,
        stream_id: u32,
        name: String,
        args: Vec<(String, String)>,
        command: CommandArgs,
    ) -> Result<(), ConnError> {
        tracing::Span::current().record("code", name.as_str());
        if !matches!(self.role, Role::Idle) {
            self.session
                .reject_publish(stream_id, "connection already publishing or playing");
            self.closing = true;
            return Ok(());
        }
        if !hub::valid_code(&name) {
            warn!("publish refused: invalid stream name");
            self.session
                .reject_publish(stream_id, "invalid stream name");
            self.closing = true;
            return Ok(());
        }
        let connect = self.client().unwrap_or_else(|| {
            Arc::new(ClientInfo {
                connection_id: self.id,
                epoch: self.epoch,
                ..ClientInfo::default()
            })
        });
        let (client, end) = Client::new(self.id, self.peer);
        let new = NewClient {
            client,
            app: connect.app.clone(),
            stream_key: name.clone(),
            args,
            command,
            connect,
        };
        let decision = self.publishing.handle_new_client(new);
        let accepted = until_shutdown(&self.shutdown, decision)
            .await
            .ok_or(ConnError::Shutdown)?;
        let Accepted {
            handler,
            name: renamed,
        } = match accepted {
            Ok(accepted) => accepted,
            Err(Refused(reason)) => {
                warn!(%reason, "publish refused");
                self.session.reject_publish(stream_id, &reason);
                self.closing = true;
                return Ok(());
            }
        };
        let name = renamed.unwrap_or(name);
        tracing::Span::current().record("code", name.as_str());
        let close = end.close_token();
        let kill = handler.kill_token();
        self.kill = Some(Box::pin(async move {
            match kill {
                Some(kill) => tokio::select! {
                    _ = close.cancelled() => {}
                    _ = kill.cancelled() => {}
                },
                None => close.cancelled().await,
            }
        }));
        if self.config.url_scheme == UrlScheme::ChannelKey
            && let Some(key) = self.hub.publisher_arg(&name, "key")
        {
            // Players left from an earlier publisher must hold this one's key, unless their
            // address needs none.
            let config = &self.config;
            let kicked = self.hub.kick_readers_unless(&name, "rtmp", |reader| {
                reader
                    .remote_addr
                    .is_some_and(|addr| config.needs_no_key(addr.ip()))
                    || holds_key(&reader.args, &key)
            });
            if kicked > 0 {
                info!(kicked, "players without the new publisher's key dropped");
            }
        }
        let flowing = end.is_demanded();
        if flowing {
            self.session.accept_publish(stream_id, &name);
        } else {
            debug!("publish waits for a consumer's demand");
        }
        self.role = Role::Publishing {
            handler: Handled {
                handler,
                deleted: false,
            },
            end,
            ingest: Box::default(),
            stream_id,
            name,
            flowing,
            demand_deadline: Instant::now() + self.config.client_timeout,
        };
        Ok(())
    }

    async fn on_play(
        &mut self,
        stream_id: u32,
        name: String,
        args: Vec<(String, String)>,
        command: CommandArgs,
    ) -> Result<(), ConnError> {
        tracing::Span::current().record("code", name.as_str());
        if !self.play {
            warn!("play refused: this server only takes publishers");
            self.session
                .reject_play(stream_id, "play is not served here");
            self.closing = true;
            return Ok(());
        }
        if !matches!(self.role, Role::Idle) || !hub::valid_code(&name) {
            warn!("play refused: invalid name or connection busy");
            self.session.reject_play(stream_id, "invalid stream name");
            self.closing = true;
            return Ok(());
        }
        let code = match self
            .authorize(Action::Play, name, args.clone(), command)
            .await?
        {
            Ok(admit) => admit.code,
            Err(denied) => {
                warn!(reason = %denied, "play refused");
                self.session.reject_play(stream_id, &denied.reason);
                self.closing = true;
                return Ok(());
            }
        };
        tracing::Span::current().record("code", code.as_str());
        let check_key = self.config.url_scheme == UrlScheme::ChannelKey
            && !self.config.needs_no_key(self.peer.ip());
        if check_key {
            match self.hub.publisher_arg(&code, "key") {
                Some(theirs) if holds_key(&args, &theirs) => {}
                Some(_) => {
                    warn!("play refused: not the publisher's key");
                    self.session
                        .reject_play(stream_id, "Invalid stream key provided");
                    self.closing = true;
                    return Ok(());
                }
                // Not live yet: the player waits like any other, and the publisher's arrival
                // drops it unless it holds the key (see the publish path), before any media.
                // Waiting here instead would leave this connection unread for the whole wait.
                None if self.hub.stats(&code).is_none_or(|s| s.publisher.is_none()) => {}
                None => {
                    warn!("play refused: the live publisher gave no key");
                    self.session
                        .reject_play(stream_id, "Invalid stream key provided");
                    self.closing = true;
                    return Ok(());
                }
            }
        }
        info!("playing");
        let recheck = check_key.then(|| args.clone());
        let seat = self.hub.seat(
            &code,
            ReaderMeta {
                protocol: "rtmp",
                remote_addr: Some(self.peer),
                client: self.client(),
                args,
            },
        );
        // A publisher that went live between the check above and this seat may have kicked
        // the waiting players before this one was among them: look once more.
        if let Some(args) = &recheck
            && let Some(theirs) = self.hub.publisher_arg(&code, "key")
            && !holds_key(args, &theirs)
        {
            warn!("play refused: not the publisher's key");
            drop(seat);
            self.session
                .reject_play(stream_id, "Invalid stream key provided");
            self.closing = true;
            return Ok(());
        }
        // From here on this task and the fan-out task both write to the socket.
        self.session.writer().set_full_headers();
        let joiner = Joiner {
            socket: self.socket.clone(),
            play: Play::new(stream_id, &code),
            chunk_size: self.session.out_chunk_size(),
            pending: std::mem::take(self.session.out()),
            meter: seat.meter(),
            kill: seat.kill_token(),
        };
        let Some(member) = self
            .fanout
            .join(&self.hub, &self.config, &code, joiner)
            .await
        else {
            self.closing = true;
            return Ok(());
        };
        self.kill = Some(Box::pin(member.gone().cancelled_owned()));
        self.role = Role::Playing {
            member,
            seat,
            stream_id,
            wait_deadline: Some(Instant::now() + self.config.play_wait_timeout),
        };
        Ok(())
    }

    /// Takes the player back from its fan-out task, with what it had not written, so this
    /// task writes again; the role becomes idle.
    async fn stop_playing(&mut self) -> Option<Play> {
        let Role::Playing { .. } = self.role else {
            return None;
        };
        let Role::Playing { member, seat, .. } = std::mem::replace(&mut self.role, Role::Idle)
        else {
            return None;
        };
        self.kill = None;
        self.idle_since = Instant::now();
        let back = member.leave().await;
        drop(seat);
        let mut back = back?;
        // Unwritten media first: it was queued before anything this task has now.
        let mut mine = std::mem::take(self.session.out());
        back.out.append(&mut mine);
        *self.session.out() = back.out;
        Some(back.play)
    }

    async fn on_stream_closed(&mut self, stream_id: u32) {
        match &self.role {
            Role::Publishing { stream_id: id, .. } if *id == stream_id => {
                if let Role::Publishing {
                    mut handler, name, ..
                } = std::mem::replace(&mut self.role, Role::Idle)
                {
                    handler.deleted = true;
                    handler.handler.delete_stream();
                    self.session.unpublished(stream_id, &name);
                }
                self.kill = None;
                self.idle_since = Instant::now();
            }
            Role::Playing { stream_id: id, .. } if *id == stream_id => {
                debug!("player closed its stream");
                if let Some(mut play) = self.stop_playing().await {
                    play.stop(self.session.writer());
                }
            }
            _ => {}
        }
    }

    /// Writes as much queued output as the socket takes without blocking.
    /// At shutdown a player is told the stream ended (UnpublishNotify, StreamEOF), as when
    /// its publisher leaves, so it ends cleanly rather than on a bare close; what is queued
    /// gets [`GOODBYE_FLUSH`] to leave, so a stalled player cannot hold up the exit.
    async fn say_goodbye(&mut self) {
        if let Some(mut play) = self.stop_playing().await {
            play.end(self.session.writer());
        }
        let deadline = Instant::now() + GOODBYE_FLUSH;
        loop {
            if self.flush().await.is_err() || self.session.out().is_empty() {
                return;
            }
            let socket = &self.socket;
            let ready = std::future::poll_fn(|cx| socket.poll_write_ready(cx));
            if tokio::time::timeout_at(deadline, ready).await.is_err() {
                return;
            }
        }
    }

    /// Writes what is queued, or hands it to the fan-out task while playing.
    async fn flush(&mut self) -> Result<(), ConnError> {
        if matches!(self.role, Role::Playing { .. }) {
            return self.forward(None).await;
        }
        flush(&*self.socket, self.session.out())
    }

    /// Hands what is queued and a playback `change` to the player's fan-out task.
    async fn forward(&mut self, change: Option<Change>) -> Result<(), ConnError> {
        if let Role::Playing { member, .. } = &self.role
            && !member.forward(self.session.out(), change).await
        {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
        }
        Ok(())
    }

    fn playing_on(&self, stream_id: u32) -> bool {
        matches!(self.role, Role::Playing { stream_id: id, .. } if id == stream_id)
    }
}

fn flush(socket: &impl Socket, out: &mut OutQueue) -> Result<(), ConnError> {
    loop {
        if out.is_empty() {
            return Ok(());
        }
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = out.io_slices(&mut slices);
            match socket.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(written) => written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        };
        out.advance(written);
    }
}

#[cfg(test)]
mod tests;
