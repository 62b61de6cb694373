//! Browser ingest: a tab goes live with no plug-in and no RTMP.
//!
//! Two paths end in the hub as an ordinary publisher, after the same admission as RTMP
//! (stream key, IP rules, hooks, the signed callback):
//! - [`socketio`]: the socket.io protocol of `@api.video/browser-to-rtmp-client`. MediaRecorder
//!   WebM goes to an ffmpeg child (H.264 zerolatency, GOP 2x framerate, AAC), whose FLV output
//!   is read back into the hub. No loopback RTMP hop.
//! - [`native`]: a plain WebSocket carrying WebCodecs H.264 as FLV video tag bodies, passed
//!   through untouched, and Opus packets that an audio-only ffmpeg turns into AAC.
//!
//! Every ffmpeg child counts against one cap, has a bounded input queue, and is killed and
//! reaped when its socket goes.

pub mod feed;
pub mod ffmpeg;
pub mod native;
pub mod ogg;
pub mod socketio;
pub mod target;

use axum::Router;
use hub::{AccessRequest, Action, Hub, PublishError, Publisher, PublisherMeta};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Protocol name of browser publishers in sessions, hooks and logs.
pub const PROTOCOL: &str = "browser";

/// Settings of browser ingest.
#[derive(Clone, Debug)]
pub struct BrowserConfig {
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
    /// Most ffmpeg children at once, over both paths (api.video's `maxFfmpegInstances`).
    pub max_ffmpeg: usize,
    /// Largest media chunk (socket.io `binarystream` or WebSocket message) accepted.
    pub max_chunk_bytes: usize,
    /// Most bytes queued for one child's stdin before the session is ended.
    pub max_pending_bytes: usize,
    /// RTMP URL prefixes that api.video clients may relay to (nothing by default).
    pub relay_allow: Vec<String>,
    /// Further host names of this gateway, so `rtmp://NAME/live/CODE` targets are local.
    pub local_hosts: Vec<String>,
    /// RTMP application that local targets use (`rtmp://host/APP/CODE`).
    pub app: String,
    /// Forward ffmpeg's stderr to api.video clients as `ffmpegOutput` events.
    pub send_ffmpeg_output: bool,
    /// Put ffmpeg's last output lines in errors' `details`.
    pub send_error_details: bool,
    /// A publisher that sends nothing for this long is closed.
    pub publisher_timeout: Duration,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            ffmpeg: PathBuf::from("ffmpeg"),
            max_ffmpeg: 8,
            max_chunk_bytes: 4 << 20,
            max_pending_bytes: 16 << 20,
            relay_allow: Vec::new(),
            local_hosts: Vec::new(),
            app: "live".into(),
            send_ffmpeg_output: false,
            send_error_details: true,
            publisher_timeout: Duration::from_secs(30),
        }
    }
}

/// The error names of api.video's server, kept so its clients' handling works unchanged.
pub mod names {
    /// ffmpeg could not be started (the cap, a start hook, an I/O error).
    pub const CANT_START_FFMPEG: &str = "CANT_START_FFMPEG";
    /// `start` lacked or had invalid values; also a refused target or an oversized chunk.
    pub const INVALID_PARAMETERS: &str = "INVALID_PARAMETERS";
    /// Media arrived with no session running (not fatal).
    pub const FFMPEG_NOT_RUNNING: &str = "FFMPEG_NOT_RUNNING";
    /// Media could not be handed to ffmpeg (or ffmpeg is too far behind).
    pub const FFMPEG_WRITE_ERROR: &str = "FFMPEG_WRITE_ERROR";
    /// The publish was refused (admission) or the relay target could not be reached.
    pub const RTMP_CONNECTION_FAILED: &str = "RTMP_CONNECTION_FAILED";
    /// ffmpeg exited while the session ran, or the gateway ended the session.
    pub const FFMPEG_UNEXPECTED_END: &str = "FFMPEG_UNEXPECTED_END";
    /// The ffmpeg program is not installed.
    pub const FFMPEG_NOT_FOUND: &str = "FFMPEG_NOT_FOUND";
    /// Any other ffmpeg failure.
    pub const FFMPEG_ERROR: &str = "FFMPEG_ERROR";
}

/// An error as api.video's server sends it: `{name, message, details?, fatal?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerError {
    /// One of [`names`].
    pub name: &'static str,
    /// What happened, for people.
    pub message: String,
    /// ffmpeg's last output, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The session is over.
    pub fatal: bool,
}

impl ServerError {
    /// A fatal error.
    pub fn fatal(name: &'static str, message: impl Into<String>) -> Self {
        ServerError {
            name,
            message: message.into(),
            details: None,
            fatal: true,
        }
    }

    /// An error the session survives.
    pub fn warning(name: &'static str, message: impl Into<String>) -> Self {
        ServerError {
            fatal: false,
            ..Self::fatal(name, message)
        }
    }

    /// With `details` added.
    pub fn with_details(mut self, details: Option<String>) -> Self {
        self.details = details.filter(|d| !d.is_empty());
        self
    }
}

/// Browser ingest, shared by every connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct BrowserIngest {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    config: BrowserConfig,
    cap: ffmpeg::Cap,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl BrowserIngest {
    /// Browser ingest into `hub`; every session ends when `shutdown` is cancelled.
    pub fn new(hub: Hub, config: BrowserConfig, shutdown: CancellationToken) -> Self {
        BrowserIngest {
            inner: Arc::new(Inner {
                hub,
                cap: ffmpeg::Cap::new(config.max_ffmpeg),
                config,
                tasks: TaskTracker::new(),
                shutdown,
            }),
        }
    }

    /// The routes: socket.io at `/socket.io/` and the native WebSocket at `/ws/publish/{code}`.
    pub fn router(&self) -> Router {
        socketio::router(self.clone()).merge(native::router(self.clone()))
    }

    /// ffmpeg children running now.
    pub fn ffmpeg_running(&self) -> usize {
        self.inner.cap.running()
    }

    /// Waits for every session task to end (after shutdown).
    pub async fn wait(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn config(&self) -> &BrowserConfig {
        &self.inner.config
    }

    /// Admission, then the hub claim: the same checks as an RTMP publish.
    async fn publish(
        &self,
        code: String,
        args: Vec<(String, String)>,
        peer: Option<SocketAddr>,
    ) -> Result<Publisher, String> {
        let decision = self.inner.hub.authorize(AccessRequest {
            action: Action::Publish,
            code,
            protocol: PROTOCOL,
            remote_addr: peer,
            args: args.clone(),
            client: None,
            command: Default::default(),
        });
        let admit = tokio::select! {
            d = decision => d.map_err(|d| d.reason)?,
            _ = self.inner.shutdown.cancelled() => return Err("the gateway is shutting down".into()),
        };
        let meta = PublisherMeta {
            protocol: PROTOCOL,
            remote_addr: peer,
            client: None,
            args,
            external_id: admit.external_id,
        };
        self.inner
            .hub
            .publish(&admit.code, meta)
            .map_err(|e| match e {
                PublishError::AlreadyPublishing(_) => "the stream already has a publisher".into(),
                e => e.to_string(),
            })
    }
}

/// The peer address that the HTTP server put in the request.
fn peer_of(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The `Host` header's host, without the port.
fn host_of(parts: &axum::http::request::Parts) -> Option<String> {
    target::host_of(parts.headers.get(axum::http::header::HOST)?.to_str().ok()?)
}
