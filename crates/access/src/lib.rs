//! Who may connect: IP networks and lists, and concurrent connection limits.
//!
//! Pure data and counters, no I/O: listeners ask [`IpList::allows`] / [`IpList::contains`] and
//! [`ConnLimiter::try_acquire`] with the peer address right after accept, and keep the returned
//! [`ConnGuard`] for as long as the connection lives.

mod limit;
mod list;
mod net;

pub use limit::{ConnGuard, ConnLimiter, LimitError, LimitsConfig};
pub use list::IpList;
pub use net::{IpNet, IpNetError};

#[cfg(test)]
mod tests;
