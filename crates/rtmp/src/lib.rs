//! RTMP: a sans-I/O core (handshake, chunk stream, AMF0, messages, FLV <-> frames).
//!
//! Nothing in the core touches a socket: parsers take bytes and return values or
//! `Ok(None)` when more input is needed, encoders append to an [`chunk::OutQueue`].

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod handshake;
pub mod message;
