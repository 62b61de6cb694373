//! Sans-I/O media half of the RTSP play server.
//!
//! Turns hub [`media::Frame`]s into RTP packets ([`rtp`]), describes a stream for `DESCRIBE`
//! ([`sdp`]) and builds RTCP sender reports ([`rtcp`]). Nothing here touches a socket or a clock:
//! the server driver feeds frames in, pulls packets out and passes the wall-clock time it reads.

pub mod rtcp;
pub mod rtp;
pub mod sdp;

pub use rtcp::SenderReport;
pub use rtp::{AacPacketizer, DEFAULT_MTU, H264Packetizer, RtpError, RtpHeader};
pub use sdp::describe;

#[cfg(feature = "server")]
pub mod conn;
#[cfg(feature = "server")]
pub mod listener;
