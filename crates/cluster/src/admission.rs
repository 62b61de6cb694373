//! The cluster's say on publish and play, wrapped around the node's own admission: a publish
//! of a code another node holds is refused (or takes it over), and a play of a code live on
//! another node starts an edge pull from that node's RTMP server (HLS and DASH excepted: the
//! origin's files are passed on instead, see `EdgeHttp`).

use crate::registry::{CLUSTER_ARG, Claim, Registry};
use hub::{
    AccessRequest, Action, Admission, ClientInfo, ConnectFuture, DecisionFuture, Denied, Hub,
    SessionInfo, SessionRole,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// Edge pulls, carried out by the input manager's relay pulls.
pub trait Pulls: Send + Sync + 'static {
    /// Pulls `url` into the local stream `code` while it has readers; nothing new when that
    /// pull runs already.
    fn pull(&self, code: &str, url: &str) -> Result<(), String>;
    /// Ends the pull into `code`; `false` if there was none.
    fn stop(&self, code: &str) -> bool;
    /// The URL pulled into `code`, while a pull runs.
    fn pulling(&self, code: &str) -> Option<String>;
}

/// How long a publish or play waits for an ended pull to let go of its code.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a publish admitted here may take to open its session before its claim goes
/// (RTMP and SRT open at once; an RTSP client sends its SETUPs and RECORD within this).
const UNOPENED_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The protocol the input manager publishes pulled media under.
const INPUT_PROTOCOL: &str = "input";

/// `inner` with the cluster's rules added; install it with [`Hub::set_admission`]. Marks the
/// codes this node pulls from another as relays ([`Hub::set_relay`]).
pub fn admission(
    inner: Arc<dyn Admission>,
    registry: Registry,
    hub: Hub,
    pulls: Arc<dyn Pulls>,
) -> Arc<dyn Admission> {
    // What this node pulls from another is that node's to package, record, transcode and
    // push; here it is only fanned out. (A hook's relay pull of an outside server is this
    // node's own stream, and carries no cluster key.)
    let relayed = pulls.clone();
    hub.set_relay(Arc::new(move |code: &str| {
        relayed
            .pulling(code)
            .is_some_and(|url| url.contains(CLUSTER_ARG))
    }));
    Arc::new(ClusterAdmission {
        inner,
        registry,
        hub,
        pulls,
    })
}

struct ClusterAdmission {
    inner: Arc<dyn Admission>,
    registry: Registry,
    hub: Hub,
    /// The input manager knows which codes it pulls from another node, so no map of
    /// our own is kept (nor left behind when a pull ends by itself).
    pulls: Arc<dyn Pulls>,
}

impl ClusterAdmission {
    /// The publisher of an edge pull: the origin holds the code, not this node.
    fn is_edge_pull(&self, s: &SessionInfo) -> bool {
        s.protocol == INPUT_PROTOCOL && self.hub.is_relay(&s.stream)
    }
}

/// Ends the edge pull of `code`, if any, and waits (briefly) until its intake let go of the
/// code, so what comes next (a local publisher, a pull from the new origin) gets it.
async fn end_pull(hub: &Hub, pulls: &dyn Pulls, code: &str) {
    if !pulls.stop(code) {
        return;
    }
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    while hub.on_demand(code) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Makes sure `code`, live on another node, is pulled from that node: started once, and
/// moved when the stream's origin changed (it died and a publisher on another node took over).
async fn edge_pull(registry: &Registry, hub: &Hub, pulls: &dyn Pulls, code: &str) {
    let Some((node, base, _)) = registry.origin(code).await else {
        return;
    };
    if node == registry.node_id() {
        return;
    }
    let Some(key) = registry.cluster_key().await else {
        return;
    };
    let url = format!("{}/{code}?{CLUSTER_ARG}={key}", base.trim_end_matches('/'));
    if pulls.pulling(code).is_some_and(|p| p != url) {
        tracing::info!(stream = code, origin = %node, "cluster: the stream moved; pulling from its new origin");
        end_pull(hub, pulls, code).await;
    }
    match pulls.pull(code, &url) {
        Ok(()) => tracing::debug!(stream = code, origin = %node, "cluster: edge pull"),
        Err(e) => {
            tracing::warn!(stream = code, origin = %node, error = %e, "cluster: edge pull not started");
        }
    }
}

impl Admission for ClusterAdmission {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        let action = request.action;
        // Another node of the cluster, pulling or fetching for a player it admitted itself.
        let given_key = request
            .args
            .iter()
            .find(|(k, _)| k == CLUSTER_ARG)
            .map(|(_, v)| v.clone());
        if action == Action::Play
            && let Some(given) = given_key
        {
            let registry = self.registry.clone();
            let inner = self.inner.clone();
            return Box::pin(async move {
                let matches = |k: Option<String>| {
                    k.is_some_and(|k| hub::constant_time_eq(k.as_bytes(), given.as_bytes()))
                };
                if matches(registry.cluster_key().await)
                    || matches(registry.reread_cluster_key().await)
                {
                    return Ok(hub::Admit::new(request.code));
                }
                // Debug: anyone may send the argument; the play is then judged as any other.
                tracing::debug!(stream = %request.code, "cluster: a play with a wrong cluster key");
                inner.check(request).await
            });
        }
        // HLS and DASH of a stream published elsewhere are the origin's own files, passed
        // on (`EdgeHttp`): no pull for them.
        let passed_on = matches!(request.protocol, "hls" | "dash");
        let decided = self.inner.check(request);
        let registry = self.registry.clone();
        let hub = self.hub.clone();
        let pulls = self.pulls.clone();
        Box::pin(async move {
            let admit = decided.await?;
            let code = admit.code.as_str();
            match action {
                Action::Publish => match registry.claim(code).await {
                    Claim::Taken(node) => {
                        tracing::info!(stream = code, node = %node, "cluster: publish refused, the stream is live on another node");
                        Err(Denied::new(format!("stream is live on node {node}")))
                    }
                    Claim::Ours | Claim::Unavailable => {
                        // The origin this node pulled from is gone: its own publisher now.
                        end_pull(&hub, pulls.as_ref(), code).await;
                        registry.forget_unopened(code, UNOPENED_WAIT);
                        Ok(admit)
                    }
                },
                Action::Play => {
                    if !passed_on && !hub.is_live(code) {
                        edge_pull(&registry, &hub, pulls.as_ref(), code).await;
                    }
                    Ok(admit)
                }
            }
        })
    }

    fn connect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) -> ConnectFuture {
        self.inner.connect(client, remote_addr)
    }

    fn disconnect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) {
        self.inner.disconnect(client, remote_addr);
    }

    fn session_opened(&self, s: &SessionInfo) {
        self.inner.session_opened(s);
        if s.role == SessionRole::Publisher && !self.is_edge_pull(s) {
            self.registry.hold(&s.stream, s.id);
        }
    }

    fn session_closed(&self, s: &SessionInfo) {
        self.inner.session_closed(s);
        // A session that never held the code (an edge pull) releases nothing.
        if s.role == SessionRole::Publisher {
            self.registry.release(&s.stream, s.id);
        }
    }
}
