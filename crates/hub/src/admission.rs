//! The control plane's say on who may publish or play, consulted by every protocol server.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// What a client asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Publish (ingest) a stream.
    Publish,
    /// Play (read) a stream.
    Play,
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

/// The decision: the stream code to use (a hook may rename it) or a refusal.
pub type Decision = Result<String, Denied>;

/// A pending decision; may involve I/O (an HTTP hook), so it is a future.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send>>;

/// Decides who may publish or play.
pub trait Admission: Send + Sync + 'static {
    /// Decides on one request.
    fn check(&self, request: AccessRequest) -> DecisionFuture;
}

/// Allows everything; the default until a control plane is installed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Admission for AllowAll {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        Box::pin(std::future::ready(Ok(request.code)))
    }
}
