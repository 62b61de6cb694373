//! Tokio accept loop of the RTSP server: one task per connection, all owned by a tracker.

use crate::conn::{self, ConnConfig};
use crate::rtp::DEFAULT_MTU;
use crate::share::SharedPacketizers;
use hub::Hub;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

/// Settings of the RTSP server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Application name in `rtsp://host/<app>/<code>`.
    pub app: String,
    /// A session without any request or RTCP for this long is closed.
    pub session_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connection limits (global and per address), shared with the other TCP listeners.
    pub limiter: Option<access::ConnLimiter>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            app: "live".into(),
            session_timeout: Duration::from_secs(60),
            max_connections: 1024,
            limiter: None,
        }
    }
}

/// The RTSP play server.
#[derive(Clone)]
pub struct Server {
    hub: Hub,
    config: Arc<ServerConfig>,
    packetizers: SharedPacketizers,
}

impl Server {
    /// A server reading streams from `hub`.
    pub fn new(hub: Hub, config: ServerConfig) -> Self {
        // A reader at most a hub ring behind still finds its frames packetized.
        let packetizers = SharedPacketizers::new(hub.config().reader_queue_frames, DEFAULT_MTU);
        Server {
            hub,
            config: Arc::new(config),
            packetizers,
        }
    }

    /// Accepts connections until `shutdown`, then waits for every connection to finish.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        // Where clients find this server, for the API's URL list, while it runs.
        let _announced = listener.local_addr().ok().map(|addr| {
            self.hub.announce_listener(hub::ListenerInfo {
                protocol: "rtsp",
                addr,
                app: self.config.app.clone(),
            })
        });
        let tracker = TaskTracker::new();
        let limit = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        loop {
            // Take a permit first so a flood of connections waits in the backlog, bounded.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = limit.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(error = %e, "rtsp accept failed");
                        // Out of file descriptors and the like: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let limit = match self
                .config
                .limiter
                .as_ref()
                .map(|l| l.try_acquire(peer.ip()))
            {
                None => None,
                Some(Ok(guard)) => Some(guard),
                Some(Err(e)) => {
                    warn!(%peer, reason = %e, "rtsp connection refused by limits");
                    continue;
                }
            };
            let cfg = ConnConfig {
                app: self.config.app.clone(),
                session_timeout: self.config.session_timeout,
                packetizers: self.packetizers.clone(),
            };
            let hub = self.hub.clone();
            let shutdown = shutdown.clone();
            let span = info_span!("rtsp", %peer);
            tracker.spawn(
                async move {
                    if let Err(e) = conn::serve(socket, peer, hub, cfg, shutdown).await {
                        debug!(error = %e, "rtsp connection ended");
                    }
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
