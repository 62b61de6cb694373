//! Redis pub/sub control channel, compatible with AgustinSRG's rtmp-server.
//!
//! An operator (or an application enforcing its own limits) publishes `kill-session>CODE` or
//! `close-stream>CODE|STREAM_ID` on a channel (`rtmp_commands` by default); [`run`] keeps a
//! subscription open, survives Redis restarts, and hands each valid [`Command`] to a
//! [`CommandSink`]. Parsing ([`parse`]) is pure; the tokio driver lives in `listener.rs`.

mod backoff;
mod command;
mod config;
mod listener;

pub use command::{Command, MAX_ID_LEN, MAX_MESSAGE_LEN, ParseError, parse, parse_bytes};
pub use config::{ConfigError, DEFAULT_CHANNEL, DEFAULT_PORT, RedisConfig, url_from_parts};
pub use listener::{CommandSink, LinkState, Listener, Tuning, run};

#[cfg(test)]
mod tests;
