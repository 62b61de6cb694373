//! RTMP: a sans-I/O core (handshake, chunk stream, AMF0, messages, FLV <-> frames) and, with the
//! `server` feature, the tokio driver that connects it to the hub.
//!
//! Nothing in the core touches a socket: parsers take bytes and return values or
//! `Ok(None)` when more input is needed, encoders append to a [`chunk::OutQueue`].
//!
//! The server embeds in other programs: `server::Server::builder()` with a
//! `handle_new_client` callback gets every published stream as frames (see
//! `server::handler` and `examples/record.rs`). The gateway is one user of that API.

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod flv;
#[cfg(feature = "server")]
pub mod flv_mux;
pub mod flv_stream;
pub mod handshake;
#[cfg(feature = "server")]
pub mod ingest;
pub mod message;
#[cfg(feature = "server")]
pub mod play;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "server")]
pub mod tls;
pub mod url;
