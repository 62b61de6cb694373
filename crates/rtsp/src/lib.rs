//! Sans-I/O media half of the RTSP play server.
//!
//! Turns hub [`media::Frame`]s into RTP packets ([`rtp`]), describes a stream for `DESCRIBE`
//! ([`sdp`]), builds RTCP sender reports ([`rtcp`]) and paces a joining reader's catch-up over
//! UDP ([`pace`]). Nothing here touches a socket or a clock:
//! the server driver feeds frames in, pulls packets out and passes the wall-clock time it reads.

pub mod pace;
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
#[cfg(feature = "server")]
pub mod request;
