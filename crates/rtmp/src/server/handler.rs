//! What the server does with a client that asks to publish: the embeddable side of the RTMP
//! server, on Membrane.RTMPServer's model.
//!
//! [`NewClientHandler::handle_new_client`] is called once per `publish` with the client's
//! application and stream key, and returns a [`ClientHandler`] (or a refusal). The handler's
//! callbacks then run on the connection's task: [`ClientHandler::data_available`] for each
//! track announcement and frame, [`ClientHandler::metadata`], [`ClientHandler::delete_stream`],
//! [`ClientHandler::connection_closed`] and [`ClientHandler::info`].
//!
//! Publishing is demand-gated: the client's `publish` is acknowledged (`NetStream.Publish.Start`)
//! only once a consumer calls [`Client::demand`]. A client nothing demands within the server's
//! `client_timeout` is closed. Once flowing, [`ClientHandler::poll_ready`] lets a consumer slow
//! the client down: while it is pending, the socket is not read and TCP pushes back.
//!
//! The gateway's own binary is one user of this API: [`HubPublishing`] admits a publisher
//! through the hub's admission and writes what it sends into the hub.

use crate::amf0::Amf0Value;
use crate::ingest::IngestOutput;
use hub::{AccessRequest, Action, ClientInfo, CommandArgs, Hub, PublishError, PublisherMeta};
use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Messages a client's [`ClientHandler::info`] may have queued before it reads them.
const INFO_QUEUE: usize = 64;

/// The future [`NewClientHandler::handle_new_client`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Accepted, Refused>> + Send>>;

/// Decides what happens to each client that asks to publish.
///
/// Closures `Fn(NewClient) -> impl Future<Output = Result<Accepted, Refused>>` implement it.
pub trait NewClientHandler: Send + Sync + 'static {
    /// Called once per `publish`; the connection waits (only it) for the answer.
    fn handle_new_client(&self, client: NewClient) -> HandlerFuture;
}

impl<F, Fut> NewClientHandler for F
where
    F: Fn(NewClient) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Accepted, Refused>> + Send + 'static,
{
    fn handle_new_client(&self, client: NewClient) -> HandlerFuture {
        Box::pin(self(client))
    }
}

/// A client asking to publish, as [`NewClientHandler::handle_new_client`] sees it.
#[derive(Debug)]
pub struct NewClient {
    /// Handle to demand its data, close it, or send its handler messages.
    pub client: Client,
    /// Application from `connect` (`live` in `rtmp://host/live/key`).
    pub app: String,
    /// Stream key from `publish`, without its query (`key` in `rtmp://host/live/key?a=b`).
    pub stream_key: String,
    /// Query arguments given with the key.
    pub args: Vec<(String, String)>,
    /// The `publish` command's type (`live`, `record`, `append`).
    pub command: CommandArgs,
    /// What `connect` said (flash version, tcUrl, its query arguments, ...).
    pub connect: Arc<ClientInfo>,
}

/// A [`NewClientHandler`]'s yes: the handler that gets the client's data.
pub struct Accepted {
    pub(crate) handler: Box<dyn ClientHandler>,
    pub(crate) name: Option<String>,
}

impl Accepted {
    /// Accepts the client; `handler` gets its data.
    pub fn new(handler: impl ClientHandler) -> Self {
        Accepted {
            handler: Box::new(handler),
            name: None,
        }
    }

    /// The name the client is told it publishes as, and that the connection logs, when it is
    /// not the stream key it asked for (a hook renamed it).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A [`NewClientHandler`]'s no: the client gets `NetStream.Publish.BadName` with the reason
/// as its description, then the connection closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Refused {
    /// A refusal with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Refused(reason.into())
    }
}

/// One publishing client's callbacks. They run on the client's connection task, so a slow
/// callback slows only that client; none may block for long.
pub trait ClientHandler: Send + 'static {
    /// Tracks announced (again after a codec change), or one frame.
    fn data_available(&mut self, data: IngestOutput);

    /// `onMetaData` as the client sent it (tracks are announced from it and the sequence
    /// headers through [`ClientHandler::data_available`]).
    fn metadata(&mut self, _metadata: &Amf0Value) {}

    /// The client ended its publish (`deleteStream`, `FCUnpublish`, `closeStream`). The
    /// handler is dropped after this; [`ClientHandler::connection_closed`] is not called.
    fn delete_stream(&mut self) {}

    /// The connection closed while publishing, for any reason (EOF, error, kick, shutdown,
    /// client timeout).
    fn connection_closed(&mut self) {}

    /// A message sent with [`Client::send_info`].
    fn info(&mut self, _message: Box<dyn Any + Send>) {}

    /// Ready for more data. While this is pending, the client's socket is not read, so TCP
    /// pushes back on the client; the connection polls again when the waker fires.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    /// A token that, once cancelled, closes the client (besides [`Client::close`]).
    fn kill_token(&self) -> Option<CancellationToken> {
        None
    }
}

/// Handle to one publishing client, cheap to clone and safe to keep after it closes.
#[derive(Clone, Debug)]
pub struct Client {
    shared: Arc<Shared>,
    info: mpsc::Sender<Box<dyn Any + Send>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    peer: SocketAddr,
    demanded: AtomicBool,
    demand: Notify,
    close: CancellationToken,
}

/// The connection's end of a [`Client`].
pub(crate) struct ClientEnd {
    pub(crate) shared: Arc<Shared>,
    pub(crate) info: mpsc::Receiver<Box<dyn Any + Send>>,
}

/// Why [`Client::send_info`] did not deliver.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoError {
    /// The client's connection has closed.
    #[error("client closed")]
    Closed,
    /// Its handler has not read the messages already queued.
    #[error("info queue full")]
    Full,
}

impl Client {
    /// A client handle and the connection's end of it.
    pub(crate) fn new(id: u64, peer: SocketAddr) -> (Client, ClientEnd) {
        let shared = Arc::new(Shared {
            id,
            peer,
            demanded: AtomicBool::new(false),
            demand: Notify::new(),
            close: CancellationToken::new(),
        });
        let (tx, rx) = mpsc::channel(INFO_QUEUE);
        (
            Client {
                shared: shared.clone(),
                info: tx,
            },
            ClientEnd { shared, info: rx },
        )
    }

    /// The connection's process-unique id (nginx-rtmp's `clientid`).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// A consumer wants this client's data: its publish is acknowledged and data flows.
    /// Calling it again does nothing.
    pub fn demand(&self) {
        if !self.shared.demanded.swap(true, Ordering::AcqRel) {
            self.shared.demand.notify_one();
        }
    }

    /// Whether [`Client::demand`] was called.
    pub fn demanded(&self) -> bool {
        self.shared.demanded.load(Ordering::Acquire)
    }

    /// Closes the client's connection.
    pub fn close(&self) {
        self.shared.close.cancel();
    }

    /// Whether the connection was closed through [`Client::close`].
    pub fn is_closed(&self) -> bool {
        self.shared.close.is_cancelled() || self.info.is_closed()
    }

    /// Delivers `message` to the handler's [`ClientHandler::info`], on the connection's task.
    pub fn send_info(&self, message: impl Any + Send) -> Result<(), InfoError> {
        self.info.try_send(Box::new(message)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InfoError::Full,
            mpsc::error::TrySendError::Closed(_) => InfoError::Closed,
        })
    }
}

/// Resolves once a consumer demands the client's data (at once if it already has).
pub(crate) async fn demanded(shared: &Shared) {
    loop {
        let notified = shared.demand.notified();
        if shared.demanded.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

impl ClientEnd {
    /// Whether a consumer demanded data.
    pub(crate) fn is_demanded(&self) -> bool {
        self.shared.demanded.load(Ordering::Acquire)
    }

    /// The token [`Client::close`] cancels.
    pub(crate) fn close_token(&self) -> CancellationToken {
        self.shared.close.clone()
    }
}

/// The gateway's publishing: admission through the hub (hooks, keys, IP rules), one hub
/// publisher per client, and data from the start (the hub always demands).
#[derive(Clone, Debug)]
pub struct HubPublishing {
    hub: Hub,
}

impl HubPublishing {
    /// Publishes every admitted client into `hub`.
    pub fn new(hub: Hub) -> Self {
        HubPublishing { hub }
    }
}

impl NewClientHandler for HubPublishing {
    fn handle_new_client(&self, new: NewClient) -> HandlerFuture {
        let hub = self.hub.clone();
        Box::pin(async move {
            let name = new.stream_key;
            if !hub::valid_code(&name) {
                return Err(Refused::new("invalid stream name"));
            }
            let admit = hub
                .authorize(AccessRequest {
                    action: Action::Publish,
                    code: name,
                    protocol: "rtmp",
                    remote_addr: Some(new.client.peer()),
                    args: new.args.clone(),
                    client: Some(new.connect.clone()),
                    command: new.command,
                })
                .await
                .map_err(|denied| Refused(denied.reason))?;
            let meta = PublisherMeta {
                protocol: "rtmp",
                remote_addr: Some(new.client.peer()),
                client: Some(new.connect),
                args: new.args,
                external_id: admit.external_id,
            };
            let publisher = hub.publish(&admit.code, meta).map_err(|e| {
                Refused::new(match e {
                    PublishError::AlreadyPublishing(_) => "stream is already being published",
                    PublishError::InvalidCode(_) => "invalid stream name",
                })
            })?;
            tracing::info!(session = publisher.session(), "publishing");
            new.client.demand();
            Ok(Accepted::new(HubClient { publisher }).named(admit.code))
        })
    }
}

/// One client publishing into the hub.
struct HubClient {
    publisher: hub::Publisher,
}

impl ClientHandler for HubClient {
    fn data_available(&mut self, data: IngestOutput) {
        match data {
            IngestOutput::Announce(info) => {
                tracing::info!(
                    video = ?info.video.as_ref().map(|v| v.name()),
                    audio = ?info.audio.as_ref().map(|a| a.name()),
                    "tracks announced"
                );
                self.publisher.announce(*info)
            }
            IngestOutput::Frame(f) => self.publisher.write(f),
        }
    }

    fn delete_stream(&mut self) {
        tracing::info!(session = self.publisher.session(), "unpublished");
    }

    fn kill_token(&self) -> Option<CancellationToken> {
        Some(self.publisher.kill_token())
    }
}
