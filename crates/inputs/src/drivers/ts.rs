//! MPEG-TS sources: UDP (unicast or multicast), HTTP(S) and SRT in caller mode.

use super::{DriverConfig, InputError};
use crate::source::{Emitter, SourceEvent};
use crate::url;
use bytes::Bytes;
use futures_util::StreamExt;
use mpegts::{DemuxEvent, TsDemuxer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::UdpSocket;

/// Demuxes TS bytes and forwards what comes out.
#[derive(Default)]
pub(crate) struct TsFeed {
    demux: TsDemuxer,
}

impl TsFeed {
    /// Pushes `data` (any split) and forwards complete frames and track changes.
    pub(crate) async fn push(&mut self, data: &[u8], out: &Emitter) -> Result<(), InputError> {
        self.demux.push(data);
        self.drain(out).await
    }

    /// Forwards the last PES, which has no successor to end it.
    pub(crate) async fn finish(&mut self, out: &Emitter) -> Result<(), InputError> {
        self.demux.flush();
        self.drain(out).await
    }

    /// Demuxes one whole HLS segment and returns what came out, for a caller that paces it.
    pub(crate) fn segment(&mut self, data: &[u8]) -> Vec<SourceEvent> {
        self.demux.push(data);
        self.events()
    }

    /// The last PES, ended by a discontinuity rather than by its successor.
    pub(crate) fn finish_events(&mut self) -> Vec<SourceEvent> {
        self.demux.flush();
        self.events()
    }

    fn events(&mut self) -> Vec<SourceEvent> {
        std::iter::from_fn(|| self.next_event()).collect()
    }

    /// Forwards what is ready without collecting it: this runs once per datagram.
    async fn drain(&mut self, out: &Emitter) -> Result<(), InputError> {
        while let Some(ev) = self.next_event() {
            out.send(ev).await?;
        }
        Ok(())
    }

    /// The next demuxer event the supervisor cares about.
    fn next_event(&mut self) -> Option<SourceEvent> {
        loop {
            match self.demux.poll_event()? {
                DemuxEvent::Tracks(info) => return Some(SourceEvent::Tracks(info)),
                DemuxEvent::Frame(frame) => return Some(SourceEvent::Frame(frame)),
                DemuxEvent::Discontinuity { pid, reason } => {
                    tracing::debug!(pid, reason, "input ts discontinuity")
                }
            }
        }
    }
}

/// `udp://[group or host]:port[?localaddr=IP&interface=IP]`: binds the port (joining the group
/// when the address is multicast, on the given source interface) and demuxes each datagram.
pub(crate) async fn run_udp(input: &str, out: &Emitter) -> Result<(), InputError> {
    let rest = input.split_once("://").map_or(input, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = url::host_port(authority);
    let port = port.ok_or_else(|| InputError::Connect("udp:// needs a port".into()))?;
    let group: Option<IpAddr> = if host.is_empty() {
        None
    } else {
        Some(
            host.parse()
                .map_err(|_| InputError::Connect(format!("udp host {host:?} is not an IP")))?,
        )
    };
    let query = url::query(input);
    let iface: Option<Ipv4Addr> = query
        .iter()
        .find(|(k, _)| k == "localaddr" || k == "interface")
        .map(|(_, v)| {
            v.parse()
                .map_err(|_| InputError::Connect(format!("interface {v:?} is not an IPv4 address")))
        })
        .transpose()?;
    let socket = match group {
        Some(IpAddr::V4(g)) if g.is_multicast() => {
            let s = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
                .await
                .map_err(|e| InputError::Connect(format!("bind udp :{port}: {e}")))?;
            s.join_multicast_v4(g, iface.unwrap_or(Ipv4Addr::UNSPECIFIED))
                .map_err(|e| InputError::Connect(format!("join {g}: {e}")))?;
            s
        }
        Some(IpAddr::V6(g)) if g.is_multicast() => {
            let s = UdpSocket::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)))
                .await
                .map_err(|e| InputError::Connect(format!("bind udp :{port}: {e}")))?;
            s.join_multicast_v6(&g, 0)
                .map_err(|e| InputError::Connect(format!("join {g}: {e}")))?;
            s
        }
        // Unicast: listen on the named local address (or every one) for what is sent there.
        Some(ip) => UdpSocket::bind(SocketAddr::new(ip, port))
            .await
            .map_err(|e| InputError::Connect(format!("bind udp {ip}:{port}: {e}")))?,
        None => UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .await
            .map_err(|e| InputError::Connect(format!("bind udp :{port}: {e}")))?,
    };
    let mut feed = TsFeed::default();
    // 7 TS packets per datagram is the norm; 64 KiB takes any datagram whole.
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| InputError::Source(format!("udp receive: {e}")))?;
        feed.push(&buf[..n], out).await?;
    }
}

/// `http(s)://...`: one long GET of a continuous TS body.
pub(crate) async fn run_http(
    input: &str,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let client = crate::drivers::hls::client(config)?;
    let resp = client
        .get(input)
        .send()
        .await
        .map_err(|e| InputError::Connect(http_error(e)))?;
    if !resp.status().is_success() {
        return Err(InputError::Connect(format!("HTTP {}", resp.status())));
    }
    let mut body = resp.bytes_stream();
    let mut feed = TsFeed::default();
    while let Some(chunk) = body.next().await {
        let chunk: Bytes = chunk.map_err(|e| InputError::Source(http_error(e)))?;
        feed.push(&chunk, out).await?;
    }
    feed.finish(out).await?;
    Err(InputError::Ended("the server closed the body".into()))
}

/// reqwest errors without the URL (it may carry a token), with their causes.
pub(crate) fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// `srt://host:port?streamid=...&passphrase=...&latency=ms&pbkeylen=16`, caller mode.
pub(crate) async fn run_srt(
    input: &str,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let addr = url::resolve(input, 0).await.map_err(InputError::Connect)?;
    let query = url::query(input);
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let latency = match get("latency") {
        // ffmpeg's srt:// takes microseconds, srt-live-transmit milliseconds; values below
        // 10 000 can only be milliseconds.
        Some(v) => {
            let n: u64 = v
                .parse()
                .map_err(|_| InputError::Connect(format!("latency {v:?} is not a number")))?;
            std::time::Duration::from_millis(if n >= 10_000 { n / 1000 } else { n })
        }
        None => std::time::Duration::from_millis(120),
    };
    let mut builder = srt_tokio::SrtSocket::builder().latency(latency);
    if let Some(pass) = get("passphrase") {
        let key_size: u16 = match get("pbkeylen").as_deref() {
            None | Some("16") => 16,
            Some("24") => 24,
            Some("32") => 32,
            Some(other) => {
                return Err(InputError::Connect(format!(
                    "pbkeylen {other:?}: expected 16, 24 or 32"
                )));
            }
        };
        let passphrase = srt_protocol::options::Passphrase::try_from(pass)
            .map_err(|_| InputError::Connect("passphrase must be 10 to 79 characters".into()))?;
        let key_size = srt_protocol::options::KeySize::try_from(key_size)
            .map_err(|_| InputError::Connect("invalid pbkeylen".into()))?;
        builder = builder.set(move |o| {
            o.encryption.key_size = key_size;
            o.encryption.passphrase = Some(passphrase);
        });
    }
    let streamid = get("streamid");
    let mut socket = tokio::time::timeout(
        config.connect_timeout,
        builder.call(addr, streamid.as_deref()),
    )
    .await
    .map_err(|_| InputError::Connect(format!("no SRT handshake from {addr}")))?
    .map_err(|e| InputError::Connect(format!("srt call {addr}: {e}")))?;
    let mut feed = TsFeed::default();
    while let Some(item) = socket.next().await {
        let (_, payload) = item.map_err(|e| InputError::Source(format!("srt: {e}")))?;
        feed.push(&payload, out).await?;
    }
    feed.finish(out).await?;
    Err(InputError::Ended(
        "the SRT peer closed the connection".into(),
    ))
}
