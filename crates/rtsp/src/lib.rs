//! Sans-I/O media half of the RTSP play server.
//!
//! Turns hub [`media::Frame`]s into RTP packets ([`rtp`]) once per stream for all its readers
//! ([`share`]), queues them for vectored writes ([`out`]), describes a stream for `DESCRIBE`
//! ([`sdp`]), builds RTCP sender reports ([`rtcp`]) and paces a joining reader's catch-up over
//! UDP ([`pace`]). Nothing here touches a socket or a clock:
//! the server driver feeds frames in, pulls packets out and passes the wall-clock time it reads.

pub mod out;
pub mod pace;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod share;

pub use rtcp::SenderReport;
pub use rtp::{
    AacPacketizer, DEFAULT_MTU, H264Packetizer, H265Packetizer, OpusPacketizer, RtpError, RtpFrame,
    RtpHeader, RtpSender, packetize_aac, packetize_h264, packetize_h265, packetize_opus,
};
pub use sdp::{RtpFormat, describe};
pub use share::{SharedPacketizers, StreamPacketizer};

#[cfg(feature = "server")]
pub mod conn;
#[cfg(feature = "server")]
pub mod listener;
#[cfg(feature = "server")]
pub mod request;
