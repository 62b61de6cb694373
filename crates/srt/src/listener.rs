//! The SRT listener: one UDP port; each caller's stream id is routed, admitted and checked
//! against the hub *before* the handshake completes, so a refused caller gets an SRT reject
//! reason instead of a connection that is accepted and then dropped.

use crate::endpoint::{ConnectionRequest, Endpoint};
use crate::feed::Feeds;
use crate::route::{self, Route, RouteError};
use crate::{Error, ingest};
use hub::{AccessRequest, Action, Admit, Hub, PublishError, PublisherMeta, ReaderMeta};
use srt_protocol::options::{ByteCount, KeySize, Passphrase, SocketOptions};
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

/// Settings of the SRT listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Application name in stream ids (`<app>/<code>`), like `rtmp.app`.
    pub app: String,
    /// SRT latency (both directions); more latency gives more time to recover losses.
    pub latency: Duration,
    /// AES passphrase callers must use; `None` for unencrypted SRT.
    pub passphrase: Option<String>,
    /// A publisher that sends nothing for this long is closed, freeing its stream code.
    pub publisher_timeout: Duration,
    /// Most connections (including pending handshakes) served at once.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            app: "live".into(),
            latency: Duration::from_millis(120),
            passphrase: None,
            publisher_timeout: Duration::from_secs(10),
            max_connections: 1_000,
        }
    }
}

/// A bound SRT listener, ready for [`Server::run`].
#[derive(Debug)]
pub struct Listener {
    endpoint: Endpoint,
}

impl Listener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr()
    }
}

/// Send buffer of every connection (SRTO_SNDBUF), in bytes: libsrt's default of 8192 packets.
///
/// srt-protocol's own default (46 592 B, 32 packets) is smaller than the GOP-cache burst a new
/// player gets, so most of the burst would be evicted from the buffer before it was sent.
/// (Eviction used to stall the sender for good; vendor/srt-protocol fixes that.) A buffer this
/// size only fills if the peer stalls for seconds, and packets older than the latency window
/// are dropped properly before that.
const SEND_BUFFER_BYTES: u64 = 8192 * 1456;

/// Binds the SRT listener on `addr` (separate from [`Server::run`] so that a port in use is
/// reported at start-up).
pub async fn bind(addr: SocketAddr, latency: Duration) -> io::Result<Listener> {
    let mut options = SocketOptions::default();
    options.sender.peer_latency = latency;
    options.receiver.latency = latency;
    options.sender.buffer_size = ByteCount(SEND_BUFFER_BYTES);
    Ok(Listener {
        endpoint: Endpoint::bind(addr, ConnInitSettings::from(options))?,
    })
}

/// The SRT server.
#[derive(Clone, Debug)]
pub struct Server {
    hub: Hub,
    config: Arc<ServerConfig>,
    passphrase: Option<Passphrase>,
    /// Every connection and every stream's shared mux; `run` waits for all of them.
    tracker: TaskTracker,
    feeds: Feeds,
    /// Cancelled by `run` at shutdown: the feeds end their plays.
    closing: CancellationToken,
}

impl Server {
    /// A server publishing into and playing from `hub`; fails on an invalid passphrase.
    pub fn new(hub: Hub, config: ServerConfig) -> Result<Server, Error> {
        let passphrase = match &config.passphrase {
            None => None,
            Some(p) => {
                Some(Passphrase::try_from(p.clone()).map_err(|_| Error::Passphrase(p.len()))?)
            }
        };
        let tracker = TaskTracker::new();
        let closing = CancellationToken::new();
        Ok(Server {
            feeds: Feeds::new(hub.clone(), tracker.clone(), closing.clone()),
            closing,
            hub,
            config: Arc::new(config),
            passphrase,
            tracker,
        })
    }

    /// Serves callers until `shutdown`, then waits for every connection to close.
    pub async fn run(self, listener: Listener, shutdown: CancellationToken) -> Result<(), Error> {
        // Where clients find this server, for the API's URL list, while it runs.
        let _announced = self.hub.announce_listener(hub::ListenerInfo {
            protocol: "srt",
            addr: listener.local_addr(),
            app: self.config.app.clone(),
        });
        let tracker = self.tracker.clone();
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        // The socket outlives the connections: they close through it after `shutdown`.
        let (requests, mut incoming) = tokio::sync::mpsc::channel(64);
        let stop_endpoint = CancellationToken::new();
        let endpoint = tokio::spawn(
            listener
                .endpoint
                .run(requests, stop_endpoint.clone())
                .instrument(info_span!("srt endpoint")),
        );
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = incoming.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            let peer = request.remote();
            let permit = permits.clone().try_acquire_owned().ok();
            let server = self.clone();
            let shutdown = shutdown.clone();
            let span = info_span!("srt", %peer, code = tracing::field::Empty);
            // Admission may call an HTTP hook: never decide inside the accept loop.
            tracker.spawn(
                async move {
                    if permit.is_none() {
                        warn!("srt connection limit reached; rejecting");
                        reject(request, ServerRejectReason::Overload.into()).await;
                        return;
                    }
                    server.serve(request, peer, shutdown).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        drop(incoming);
        self.closing.cancel();
        tracker.close();
        tracker.wait().await;
        stop_endpoint.cancel();
        let _ = endpoint.await;
        Ok(())
    }

    async fn serve(
        &self,
        request: ConnectionRequest,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let stream_id = request.stream_id().map(str::to_owned);
        let route = match route::parse(stream_id.as_deref(), &self.config.app) {
            Ok(r) => r,
            Err(e) => {
                let shown = stream_id.as_deref().map(route::redacted);
                warn!(stream_id = ?shown, error = %e, "srt stream id refused");
                let why = match e {
                    RouteError::WrongApp | RouteError::InvalidCode => ServerRejectReason::Notfound,
                    RouteError::Unsupported => ServerRejectReason::BadMode,
                    RouteError::Missing | RouteError::Malformed => ServerRejectReason::BadRequest,
                };
                reject(request, why.into()).await;
                return;
            }
        };
        let key = match (&self.passphrase, request.key_size()) {
            (None, KeySize::Unspecified) => None,
            (None, _) => {
                warn!("srt caller wants encryption but no passphrase is configured");
                reject(request, RejectReason::Core(CoreRejectReason::Unsecure)).await;
                return;
            }
            // The caller's own size: libsrt callers announce none (Unspecified) and send their
            // key material, whose size the listener then takes.
            (Some(p), size) => Some(KeySettings {
                key_size: size,
                passphrase: p.clone(),
            }),
        };
        let Route { action, code, args } = route;
        let admit = match self
            .hub
            .authorize(AccessRequest {
                action,
                code,
                protocol: "srt",
                remote_addr: Some(peer),
                args: args.clone(),
                client: None,
                command: Default::default(),
            })
            .await
        {
            Ok(admit) => admit,
            Err(denied) => {
                warn!(reason = %denied, ?action, "srt refused by admission");
                reject(request, ServerRejectReason::Forbidden.into()).await;
                return;
            }
        };
        tracing::Span::current().record("code", admit.code.as_str());
        match action {
            Action::Publish => {
                self.publish(request, peer, admit, args, key, shutdown)
                    .await
            }
            Action::Play => self.play(request, peer, admit.code, args, key).await,
        }
    }

    async fn publish(
        &self,
        request: ConnectionRequest,
        peer: SocketAddr,
        admit: Admit,
        args: Vec<(String, String)>,
        key: Option<KeySettings>,
        shutdown: CancellationToken,
    ) {
        let Admit { code, external_id } = admit;
        // Checked before the handshake so a second publisher gets a reject reason; claimed
        // only after it, so a caller with a wrong passphrase never marks the stream live.
        if self.hub.is_live(&code) {
            warn!("srt publish refused: stream already has a publisher");
            reject(request, ServerRejectReason::Conflict.into()).await;
            return;
        }
        let mut socket = match request.accept(key).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "srt handshake failed (wrong passphrase?)");
                return;
            }
        };
        let meta = PublisherMeta {
            protocol: "srt",
            remote_addr: Some(peer),
            client: None,
            args,
            external_id,
        };
        let publisher = match self.hub.publish(&code, meta) {
            Ok(p) => p,
            Err(e @ (PublishError::AlreadyPublishing(_) | PublishError::InvalidCode(_))) => {
                // Lost a race with another publisher during the handshake.
                warn!(error = %e, "srt publish refused");
                crate::MediaSocket::close(&mut socket).await;
                return;
            }
        };
        info!(session = publisher.session(), "srt publishing");
        match ingest::run(socket, publisher, self.config.publisher_timeout, shutdown).await {
            Ok(end) => info!(?end, "srt unpublished"),
            Err(e) => info!(error = %e, "srt unpublished"),
        }
    }

    async fn play(
        &self,
        request: ConnectionRequest,
        peer: SocketAddr,
        code: String,
        args: Vec<(String, String)>,
        key: Option<KeySettings>,
    ) {
        let meta = ReaderMeta {
            protocol: "srt",
            remote_addr: Some(peer),
            client: None,
            args,
        };
        // Checked before the handshake so a caller of an idle code gets a reject reason; an
        // on-demand source (a pull this request started) is given time to go live.
        // Within libsrt's default 3 s connect timeout, so the caller still hears the answer.
        if !self
            .hub
            .live_on_demand(&code, std::time::Duration::from_millis(2500))
            .await
        {
            warn!("srt play refused: stream not live");
            reject(request, ServerRejectReason::Notfound.into()).await;
            return;
        }
        // The feed muxes once for every player of the stream and drives their connections,
        // so the connection's packets go to its inbox from the handshake on.
        let feed = self.feeds.join(&code);
        let link = match request.accept_into(key, feed.inbox()).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "srt handshake failed (wrong passphrase?)");
                return;
            }
        };
        // Seated only after the handshake, so a caller with a wrong passphrase is never
        // counted as a reader.
        let seat = self.hub.seat(&code, meta);
        info!("srt playing");
        let end = feed.play(link, seat).await;
        info!(?end, "srt play ended");
    }
}

async fn reject(request: ConnectionRequest, reason: RejectReason) {
    if let Err(e) = request.reject(reason).await {
        debug!(error = %e, "srt reject not delivered");
    }
}
