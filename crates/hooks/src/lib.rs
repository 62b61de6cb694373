//! HTTP hooks that let an operator's own service admit, rename or refuse sessions.
//!
//! Two dialects, so existing backends keep working unchanged:
//! - [`notify`]: nginx-rtmp's notify module (`on_connect`, `on_publish`, `on_play`,
//!   `on_update`, `on_*_done`, `on_disconnect`): form-encoded POST (or GET) with the same
//!   argument names, and the same meaning of 2xx / 3xx + `Location` / anything else.
//! - [`callback`]: AgustinSRG/rtmp-server's `CALLBACK_URL`: an empty POST carrying an HS256 JWT
//!   in the `rtmp-event` header; `start` must get HTTP 200 and returns the `stream-id` header.
//!
//! The crate only decides; the servers own the sessions and call in here. Replies that matter
//! are awaited ([`Notifier::decide`], [`Callback::start`]); the rest are fire-and-forget on a
//! task tracker owned by the hook client, bounded, and drained by `close()` at shutdown.

mod cache;
pub mod callback;
mod http;
pub mod notify;
mod outbox;
#[cfg(test)]
mod test_server;

pub use cache::DecisionCache;
pub use callback::{Callback, CallbackConfig, CallbackError};
pub use notify::{
    HookArgs, HookEvent, HookReply, Notifier, NotifyConfig, NotifyMethod, Role, Session,
};

/// A hook configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration field is invalid; `field` is its name (e.g. `on_publish`).
    #[error("{field}: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it (never the URL itself: it may hold credentials).
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("HTTP client: {0}")]
    Client(String),
}
