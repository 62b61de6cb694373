//! Several gateway nodes on one PostgreSQL (and, for stream location, one Redis).
//!
//! Each node keeps the whole configuration in memory (see `control`). A stream, template or
//! webhook written on one node reaches the others through the store's change feed
//! (PostgreSQL `LISTEN`/`NOTIFY`, fired by triggers, so hand edits count too); each node
//! reads the one record again and applies only the difference, as after a local write.
//! PostgreSQL does the ordering and the durability: there is no consensus of our own.
//!
//! Where each live stream is published is in Redis ([`Registry`]): a second publisher of a
//! code on another node is refused, and a reader on a node without the stream makes that
//! node pull it once from the origin over RTMP and fan it out locally ([`admission`]). HLS
//! and DASH are the exception: an edge passes on the origin's own files ([`EdgeHttp`]), so
//! their names and bytes are the same on every node.

mod admission;
mod edge_http;
mod registry;

pub use admission::{Pulls, admission};
pub use edge_http::{Cut, EdgeHttp, Fetch, FetchReader, Head, MAX_IN_FLIGHT};
pub use registry::{CLUSTER_ARG, Claim, KillError, Registry, RegistryConfig, StreamPlaces};
/// The method of an API call to another node ([`EdgeHttp::ask`]).
pub use reqwest::Method;

use std::time::Duration;
use store::{ChangeFeed, ConfigChange};
use tokio_util::sync::CancellationToken;

/// Locks `m`. Its holders make whole-value inserts, removes and updates only, so a map a
/// panicking holder poisoned is still consistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait before applying a change again after the store failed to answer.
const RETRY: Duration = Duration::from_secs(1);

/// Applies every change `feed` reports to `control` and `webhooks` until `shutdown`.
///
/// A change that cannot be read back (the database went away between the notification and
/// the read) turns into a full resync, retried every second until the store answers.
pub async fn follow_config(
    mut feed: Box<dyn ChangeFeed>,
    control: control::Control,
    webhooks: events::Webhooks,
    shutdown: CancellationToken,
) {
    loop {
        let mut change = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = feed.next() => change,
        };
        loop {
            let applied = match &change {
                ConfigChange::Stream(code) => control.reload(code).await,
                ConfigChange::Template(name) => control.reload_template(name).await,
                ConfigChange::Hook(id) => webhooks.reload(id).await,
                ConfigChange::Resync => match control.resync().await {
                    Ok(()) => webhooks.resync().await,
                    Err(e) => Err(e),
                },
            };
            let Err(e) = applied else { break };
            tracing::warn!(?change, error = %e, "cluster: configuration change not applied; resyncing");
            change = ConfigChange::Resync;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
