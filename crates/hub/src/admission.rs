//! The control plane's say on who may publish or play, consulted by every protocol server.

use crate::sessions::SessionInfo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// What a client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Publish (ingest) a stream.
    Publish,
    /// Play (read) a stream.
    Play,
}

/// What the protocol knows about the client: RTMP `connect` fields and the connection id.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Process-unique connection id (nginx-rtmp's `clientid`).
    pub connection_id: u64,
    /// Application from `connect` (RTMP) or the URL path (`live`).
    pub app: String,
    /// `flashVer` from RTMP `connect`; empty elsewhere.
    pub flash_ver: String,
    /// `swfUrl` from RTMP `connect`; empty elsewhere.
    pub swf_url: String,
    /// `tcUrl` from RTMP `connect`; empty elsewhere.
    pub tc_url: String,
    /// `pageUrl` from RTMP `connect`; empty elsewhere.
    pub page_url: String,
    /// Query arguments given with the app at connect (`live?token=x`, or in tcUrl).
    pub connect_args: Vec<(String, String)>,
    /// The server's RTMP handshake epoch in ms (nginx-rtmp's `epoch`); 0 elsewhere.
    pub epoch: u32,
}

/// What an RTMP `publish` or `play` command carried besides the stream name; nginx-rtmp's
/// hooks send it (`type`; `start`, `duration`, `reset`). Empty for other protocols.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandArgs {
    /// `publish` type: `live`, `record` or `append`.
    pub publish_type: Option<String>,
    /// `play` start (ms; -2 live or recorded, -1 live only, as the client sent it).
    pub start: Option<f64>,
    /// `play` duration (ms; -1 to the end).
    pub duration: Option<f64>,
    /// `play` reset flag.
    pub reset: Option<bool>,
}

/// One request to publish or play, with everything a decision may use.
#[derive(Clone, Debug)]
pub struct AccessRequest {
    /// Publish or play.
    pub action: Action,
    /// Stream code asked for.
    pub code: String,
    /// Protocol of the client (`rtmp`, `hls`, `mpegts`, ...).
    pub protocol: &'static str,
    /// Client address.
    pub remote_addr: Option<SocketAddr>,
    /// Query arguments the client sent with the name (`?key=...`).
    pub args: Vec<(String, String)>,
    /// The connection the request came on, where the protocol has one (RTMP); `None` for
    /// SRT, RTSP and HTTP.
    pub client: Option<Arc<ClientInfo>>,
    /// The RTMP command's own arguments (see [`CommandArgs`]).
    pub command: CommandArgs,
}

impl AccessRequest {
    /// The first value of query argument `name`.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A refusal, with a reason safe to show the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Denied {
    /// Why, e.g. `stream disabled`.
    pub reason: String,
}

impl Denied {
    /// A refusal for `reason`.
    pub fn new(reason: impl Into<String>) -> Denied {
        Denied {
            reason: reason.into(),
        }
    }
}

/// An allowed request: the stream code to use (a hook may rename it) and, for publishers, an
/// id an external system gave the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admit {
    /// Stream code to publish or play.
    pub code: String,
    /// Id an external system (a JWT callback) gave the publish session; shown in the API.
    pub external_id: Option<String>,
}

impl Admit {
    /// Allows `code` with no external id.
    pub fn new(code: impl Into<String>) -> Admit {
        Admit {
            code: code.into(),
            external_id: None,
        }
    }
}

/// The decision on a publish or play request.
pub type Decision = Result<Admit, Denied>;

/// A pending decision; may involve I/O (an HTTP hook), so it is a future.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send>>;

/// A pending decision on an RTMP `connect`: the app to use, or a refusal.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<String, Denied>> + Send>>;

/// Decides who may publish or play, and hears about connections and sessions.
///
/// The notification methods (`disconnect`, `session_opened`, `session_closed`) are called from
/// `Drop` guards and hub bookkeeping, outside every hub lock: they must neither block nor
/// panic, and should hand any I/O to a task of their own.
pub trait Admission: Send + Sync + 'static {
    /// Decides on one request.
    fn check(&self, request: AccessRequest) -> DecisionFuture;

    /// Decides on an RTMP `connect`: Ok(app to use — a hook may rename it) or a refusal.
    fn connect(&self, client: Arc<ClientInfo>, _remote_addr: SocketAddr) -> ConnectFuture {
        Box::pin(std::future::ready(Ok(client.app.clone())))
    }

    /// An RTMP connection whose `connect` this admission allowed has closed. Called exactly
    /// once per allowed connect, whatever ended the connection.
    fn disconnect(&self, _client: Arc<ClientInfo>, _remote_addr: SocketAddr) {}

    /// A publisher or reader session was registered (after admission and hub registration).
    fn session_opened(&self, _session: &SessionInfo) {}

    /// A session ended (its registration dropped); `bytes` holds its final count.
    fn session_closed(&self, _session: &SessionInfo) {}
}

/// Allows everything; the default until a control plane is installed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Admission for AllowAll {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        Box::pin(std::future::ready(Ok(Admit::new(request.code))))
    }
}
