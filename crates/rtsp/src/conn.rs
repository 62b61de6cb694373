//! One RTSP connection: request handling (OPTIONS .. TEARDOWN) and media delivery over TCP
//! interleaved channels or UDP port pairs.
//!
//! Messages are parsed by `rtsp-types` (sans-I/O); this file is the tokio glue around it and the
//! packetizers of this crate. A slow TCP reader never blocks the publisher: frames wait in the
//! hub's bounded per-reader queue, which skips to the next keyframe on overflow.
//!
//! Over UDP the GOP cache a reader starts with is paced ([`Pacer`]): sent at once it overflows
//! the player's socket buffer and the kernel drops the packets. The frames waiting meanwhile
//! stay in the hub's per-reader queue, so pacing delays only this reader.

use crate::pace::Pacer;
use crate::request::{self, TransportRequest};
use crate::rtcp::{MediaClock, SenderReport};
use crate::rtp::{AacPacketizer, DEFAULT_MTU, H264Packetizer};
use crate::sdp::{self, AUDIO_PAYLOAD_TYPE, VIDEO_PAYLOAD_TYPE};
use bytes::{BufMut, Bytes, BytesMut};
use hub::{AccessRequest, Action, Event, Hub, ReaderMeta, Subscription};
use media::{Frame, MediaInfo, TrackKind};
use rtsp_types::{Message, Method, ParseError, Response, StatusCode, Version, headers};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Largest request head (plus body) accepted; a client sending more is cut off.
pub const MAX_REQUEST_BYTES: usize = 16 << 10;
/// A write that cannot make progress for this long means the client is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long DESCRIBE waits for the hub to hand over the track info of a live stream.
const TRACKS_WAIT: Duration = Duration::from_secs(5);
/// RTCP sender report interval per track (RFC 3550 6.2 suggests 5 s minimum).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Frames handled per wake-up before going back to the socket, so requests are never starved.
const FRAME_BATCH: usize = 64;
/// Longest PLAY waits for the first frame to announce its RTP time.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(2);
/// Most events held back while looking for the first frame.
const MAX_PENDING: usize = 16;
/// How far before the first frame the announced timelines start (90 kHz): the first frame
/// of the other track may be a little earlier than the first frame seen.
const RTPTIME_LEAD: i64 = 90_000 / 2;

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Application name in the URL path.
    pub app: String,
    /// Idle time after which the session is closed.
    pub session_timeout: Duration,
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer stopped reading for longer than the write timeout.
    #[error("write timed out")]
    WriteTimeout,
    /// The request head exceeded [`MAX_REQUEST_BYTES`].
    #[error("request larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    /// The peer sent bytes that are not an RTSP message.
    #[error("malformed request at byte {offset}")]
    Malformed {
        /// Offset in the connection's input stream.
        offset: u64,
    },
}

/// Where one track's packets go.
enum Transport {
    /// Interleaved in the RTSP connection (RFC 2326 10.12).
    Tcp { rtp: u8, rtcp: u8 },
    /// A UDP port pair of the server, sending to the client's pair.
    Udp {
        rtp: UdpSocket,
        rtcp: UdpSocket,
        dest_rtp: SocketAddr,
        dest_rtcp: SocketAddr,
    },
}

enum Packetizer {
    Video(H264Packetizer),
    Audio(AacPacketizer),
}

impl Packetizer {
    fn pull(&mut self) -> Option<Bytes> {
        match self {
            Packetizer::Video(p) => p.pull(),
            Packetizer::Audio(p) => p.pull(),
        }
    }
    fn next_sequence(&self) -> u16 {
        match self {
            Packetizer::Video(p) => p.next_sequence(),
            Packetizer::Audio(p) => p.next_sequence(),
        }
    }
    /// RTP timestamp of the 90 kHz media time `pts` in this track's clock.
    fn rtp_timestamp(&self, pts: i64) -> u32 {
        match self {
            Packetizer::Video(_) => crate::rtp::wrap_u32(i128::from(pts)),
            Packetizer::Audio(p) => p.rtp_timestamp(pts),
        }
    }

    /// The sender report for media time `pts` at wall time `ntp_time`.
    fn report(&self, ntp_time: SystemTime, pts: i64) -> SenderReport {
        let (ssrc, packets, octets) = match self {
            Packetizer::Video(p) => (p.ssrc(), p.packet_count(), p.octet_count()),
            Packetizer::Audio(p) => (p.ssrc(), p.packet_count(), p.octet_count()),
        };
        SenderReport {
            ssrc,
            ntp_time,
            rtp_timestamp: self.rtp_timestamp(pts),
            packet_count: packets,
            octet_count: octets,
        }
    }
}

struct Track {
    transport: Transport,
    packetizer: Packetizer,
    /// Whether a sender report went out for this track yet.
    reported: bool,
    /// RTP packets handed to the socket.
    sent: u64,
    /// RTP or RTCP packets the kernel refused to send (UDP only; TCP errors end the session).
    send_errors: u64,
}

impl Track {
    fn is_udp(&self) -> bool {
        matches!(self.transport, Transport::Udp { .. })
    }
}

/// Lifecycle of the RTSP session on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No SETUP yet.
    Init,
    /// Set up (or paused): media does not flow.
    Ready,
    /// Media flows.
    Playing,
}

/// The parts of a request URL this server understands.
struct Target {
    code: String,
    track: Option<usize>,
    args: Vec<(String, String)>,
}

struct Conn {
    hub: Hub,
    cfg: ConnConfig,
    peer: SocketAddr,
    local: SocketAddr,
    writer: OwnedWriteHalf,
    state: State,
    session_id: String,
    code: Option<String>,
    sub: Option<Subscription>,
    kill: CancellationToken,
    info: Option<Arc<MediaInfo>>,
    tracks: [Option<Track>; 2],
    out: BytesMut,
    clock: MediaClock,
    /// Events taken from the subscription ahead of time (at PLAY, to learn the first
    /// frame's timestamp), delivered before anything newer.
    pending: VecDeque<Event>,
    /// Schedule of the frames sent over UDP.
    pacer: Pacer,
    /// The frame the pacer holds back, and when it may go; nothing after it goes first.
    held: Option<(std::time::Instant, Frame)>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let [video, audio] = &self.tracks;
        let sent = |t: &Option<Track>| t.as_ref().map_or(0, |t| t.sent);
        let errors: u64 = self.tracks.iter().flatten().map(|t| t.send_errors).sum();
        debug!(
            video_packets = sent(video),
            audio_packets = sent(audio),
            send_errors = errors,
            paced_frames = self.pacer.held(),
            "rtsp session ended"
        );
    }
}

/// Serves one connection until the client leaves, times out, is kicked, or `shutdown`.
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    hub: Hub,
    cfg: ConnConfig,
    shutdown: CancellationToken,
) -> Result<(), ConnError> {
    let local = socket.local_addr()?;
    // Media packets are small and latency matters more than coalescing.
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let mut conn = Conn {
        hub,
        cfg,
        peer,
        local,
        writer,
        state: State::Init,
        session_id: session_id(),
        code: None,
        sub: None,
        kill: CancellationToken::new(),
        info: None,
        tracks: [None, None],
        out: BytesMut::new(),
        clock: MediaClock::new(Instant::now().into_std(), SystemTime::now()),
        pending: VecDeque::new(),
        pacer: Pacer::new(),
        held: None,
    };
    let mut input = BytesMut::with_capacity(4096);
    let mut consumed_total: u64 = 0;
    let mut deadline = Instant::now() + conn.cfg.session_timeout;
    let mut rtcp = tokio::time::interval(RTCP_INTERVAL);
    rtcp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let playing = conn.state == State::Playing && conn.sub.is_some();
        let held = conn.held.as_ref().map(|(at, _)| Instant::from_std(*at));
        let kill = conn.kill.clone();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = kill.cancelled() => {
                debug!("rtsp reader kicked");
                return Ok(());
            }
            _ = sleep_until(deadline) => {
                debug!("rtsp session timed out");
                return Ok(());
            }
            r = reader.read_buf(&mut input) => {
                if r? == 0 {
                    return Ok(());
                }
                deadline = Instant::now() + conn.cfg.session_timeout;
                loop {
                    match Message::<Vec<u8>>::parse(&input[..]) {
                        Ok((msg, used)) => {
                            let _ = input.split_to(used);
                            consumed_total += used as u64;
                            match msg {
                                Message::Request(req) => {
                                    if !conn.request(req).await? {
                                        return Ok(());
                                    }
                                }
                                // RTCP receiver reports on the interleaved channels: they only
                                // prove the client is alive, which the deadline above recorded.
                                Message::Data(_) | Message::Response(_) => {}
                            }
                        }
                        Err(ParseError::Incomplete(_)) => {
                            if input.len() > MAX_REQUEST_BYTES {
                                return Err(ConnError::TooLarge);
                            }
                            break;
                        }
                        Err(ParseError::Error) => {
                            // The stream cannot be resynchronised after garbage: answer and close.
                            let resp = response(StatusCode::BadRequest, None, &[], Vec::new());
                            conn.out.put_slice(&resp);
                            let _ = conn.flush().await;
                            return Err(ConnError::Malformed { offset: consumed_total });
                        }
                    }
                }
            }
            ev = recv(&mut conn.pending, &mut conn.sub), if playing && held.is_none() => {
                let Some(ev) = ev else { return Ok(()) };
                conn.event(ev).await?;
                conn.drain().await?;
                conn.flush().await?;
            }
            _ = sleep_until(held.unwrap_or(deadline)), if playing && held.is_some() => {
                if let Some((_, frame)) = conn.held.take() {
                    conn.send_frame(frame).await?;
                }
                conn.drain().await?;
                conn.flush().await?;
            }
            _ = rtcp.tick(), if playing => {
                conn.sender_reports(true).await?;
                conn.flush().await?;
            }
        }
    }
}

async fn recv(pending: &mut VecDeque<Event>, sub: &mut Option<Subscription>) -> Option<Event> {
    if let Some(ev) = pending.pop_front() {
        return Some(ev);
    }
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Index in `Conn::tracks` (the SDP's trackID) of a frame's track.
fn index_of(frame: &Frame) -> usize {
    match frame.track {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

/// A session id that is hard to guess for another client: time and a counter, hashed.
fn session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 finaliser: spreads the bits so consecutive ids do not look consecutive.
    let mut z = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{:016X}", z ^ (z >> 31))
}

/// Serializes a response; writing into a `Vec` cannot fail.
fn response(
    status: StatusCode,
    cseq: Option<&str>,
    extra: &[(rtsp_types::HeaderName, String)],
    body: Vec<u8>,
) -> Vec<u8> {
    let mut b = Response::builder(Version::V1_0, status).header(headers::SERVER, "ferrocast");
    if let Some(c) = cseq {
        b = b.header(headers::CSEQ, c.to_owned());
    }
    for (name, value) in extra {
        b = b.header(name.clone(), value.clone());
    }
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = b.build(body).write(&mut out);
    out
}

impl Conn {
    /// Handles one request; `false` closes the connection.
    async fn request(&mut self, req: rtsp_types::Request<Vec<u8>>) -> Result<bool, ConnError> {
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned());
        let cseq = cseq.as_deref();
        let method = req.method().clone();
        let (status, extra, body, keep) = match method {
            Method::Options => (
                StatusCode::Ok,
                vec![(
                    headers::PUBLIC,
                    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER".to_owned(),
                )],
                Vec::new(),
                true,
            ),
            Method::Describe => match self.target(&req) {
                Err(s) => (s, vec![], vec![], true),
                Ok(t) => match self.open(&t).await {
                    Err(s) => (s, vec![], vec![], true),
                    Ok(info) => {
                        let base = self.base_url(&t.code);
                        let ip = self.local.ip().to_string();
                        let sdp = sdp::describe(&info, &t.code, &ip);
                        (
                            StatusCode::Ok,
                            vec![
                                (headers::CONTENT_TYPE, "application/sdp".to_owned()),
                                (headers::CONTENT_BASE, format!("{base}/")),
                            ],
                            sdp.into_bytes(),
                            true,
                        )
                    }
                },
            },
            Method::Setup => match self.setup(&req).await {
                Ok(h) => (StatusCode::Ok, h, vec![], true),
                Err(s) => (s, vec![], vec![], true),
            },
            Method::Play => {
                if self.state == State::Init || self.sub.is_none() {
                    (StatusCode::MethodNotValidInThisState, vec![], vec![], true)
                } else {
                    self.state = State::Playing;
                    let base = self
                        .code
                        .as_deref()
                        .map(|c| self.base_url(c))
                        .unwrap_or_default();
                    let start = self.first_pts().await.map(|pts| pts - RTPTIME_LEAD);
                    let mut info = Vec::new();
                    for (i, t) in self.tracks.iter().enumerate() {
                        if let Some(t) = t {
                            let mut entry = format!(
                                "url={base}/trackID={i};seq={}",
                                t.packetizer.next_sequence()
                            );
                            // rtptime is where the reader's timeline starts, and strict readers
                            // (retina) refuse packets before it; it is optional (RFC 2326
                            // 12.33), so it is left out when no frame is known yet.
                            if let Some(pts) = start {
                                entry.push_str(&format!(
                                    ";rtptime={}",
                                    t.packetizer.rtp_timestamp(pts)
                                ));
                            }
                            info.push(entry);
                        }
                    }
                    (
                        StatusCode::Ok,
                        vec![
                            (headers::RANGE, "npt=now-".to_owned()),
                            (headers::RTP_INFO, info.join(",")),
                            (headers::SESSION, self.session_header()),
                        ],
                        vec![],
                        true,
                    )
                }
            }
            Method::Pause => {
                if self.state == State::Playing {
                    self.state = State::Ready;
                }
                (
                    StatusCode::Ok,
                    vec![(headers::SESSION, self.session_header())],
                    vec![],
                    true,
                )
            }
            Method::Teardown => (StatusCode::Ok, vec![], vec![], false),
            Method::GetParameter | Method::SetParameter => (
                StatusCode::Ok,
                vec![(headers::SESSION, self.session_header())],
                vec![],
                true,
            ),
            _ => (StatusCode::NotImplemented, vec![], vec![], true),
        };
        let resp = response(status, cseq, &extra, body);
        self.out.put_slice(&resp);
        self.flush().await?;
        Ok(keep)
    }

    /// Timestamp of the first frame this session will send, waiting briefly for it: the
    /// subscription's events up to it are kept in `pending` and sent first.
    async fn first_pts(&mut self) -> Option<i64> {
        if let Some(pts) = self.pending.iter().find_map(|ev| match ev {
            Event::Frame(f) => Some(f.pts),
            _ => None,
        }) {
            return Some(pts);
        }
        let sub = self.sub.as_mut()?;
        let deadline = Instant::now() + FIRST_FRAME_WAIT;
        while self.pending.len() < MAX_PENDING {
            let ev = match tokio::time::timeout_at(deadline, sub.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) | Err(_) => return None,
            };
            let pts = match &ev {
                Event::Frame(f) => Some(f.pts),
                _ => None,
            };
            let end = matches!(ev, Event::End);
            self.pending.push_back(ev);
            if pts.is_some() || end {
                return pts;
            }
        }
        None
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.session_id,
            self.cfg.session_timeout.as_secs()
        )
    }

    fn base_url(&self, code: &str) -> String {
        format!("rtsp://{}/{}/{}", self.local, self.cfg.app, code)
    }

    /// Extracts app, code and track from the request URL.
    fn target(&self, req: &rtsp_types::Request<Vec<u8>>) -> Result<Target, StatusCode> {
        let url = req.request_uri().ok_or(StatusCode::BadRequest)?;
        let request::PathTarget { code, track } = request::path(url.path(), &self.cfg.app)?;
        let args = url
            .query_pairs()
            .take(32)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Target {
            code: code.to_owned(),
            track,
            args,
        })
    }

    /// Admits the client and subscribes to the stream, once per connection.
    async fn open(&mut self, t: &Target) -> Result<Arc<MediaInfo>, StatusCode> {
        if let (Some(code), Some(info)) = (&self.code, &self.info) {
            if *code == t.code {
                return Ok(info.clone());
            }
            // One stream per connection keeps the session model simple.
            return Err(StatusCode::AggregateOperationNotAllowed);
        }
        let decision = self
            .hub
            .authorize(AccessRequest {
                action: Action::Play,
                code: t.code.clone(),
                protocol: "rtsp",
                remote_addr: Some(self.peer),
                args: t.args.clone(),
                client: None,
            })
            .await;
        let code = match decision {
            Ok(admit) => admit.code,
            Err(denied) => {
                debug!(reason = %denied, "rtsp play refused");
                return Err(if self.hub.is_live(&t.code) {
                    StatusCode::Forbidden
                } else {
                    StatusCode::NotFound
                });
            }
        };
        let meta = ReaderMeta {
            protocol: "rtsp",
            remote_addr: Some(self.peer),
            client: None,
            args: t.args.clone(),
        };
        let mut sub = self
            .hub
            .subscribe_live(&code, meta)
            .ok_or(StatusCode::NotFound)?;
        let info = match timeout(TRACKS_WAIT, sub.recv()).await {
            Ok(Some(Event::Tracks { info, .. })) => info,
            _ => return Err(StatusCode::NotFound),
        };
        if info.avc().is_none() && info.aac().is_none() {
            // Only H.264 and AAC can be described; other codecs have no RTP mapping here.
            return Err(StatusCode::UnsupportedMediaType);
        }
        if let Some(k) = sub.kill_token() {
            self.kill = k;
        }
        self.sub = Some(sub);
        self.code = Some(code);
        self.info = Some(info.clone());
        Ok(info)
    }

    /// SETUP of one track; returns the response headers.
    async fn setup(
        &mut self,
        req: &rtsp_types::Request<Vec<u8>>,
    ) -> Result<Vec<(rtsp_types::HeaderName, String)>, StatusCode> {
        let t = self.target(req)?;
        let info = self.open(&t).await?;
        let index = t.track.ok_or(StatusCode::AggregateOperationNotAllowed)?;
        let transport = req
            .header(&headers::TRANSPORT)
            .map(|v| v.as_str().to_owned())
            .ok_or(StatusCode::BadRequest)?;
        // Clients may list alternatives; take the first one this server supports.
        let (transport, reply) = match request::transport(&transport, index)? {
            TransportRequest::Interleaved { rtp: a, rtcp: b } => (
                Transport::Tcp { rtp: a, rtcp: b },
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}"),
            ),
            TransportRequest::Udp { rtp: a, rtcp: b } => {
                let ip: IpAddr = self.local.ip();
                let rtp = UdpSocket::bind((ip, 0))
                    .await
                    .map_err(|_| StatusCode::InternalServerError)?;
                let rtcp = UdpSocket::bind((ip, 0))
                    .await
                    .map_err(|_| StatusCode::InternalServerError)?;
                let (sa, sb) = match (rtp.local_addr(), rtcp.local_addr()) {
                    (Ok(x), Ok(y)) => (x.port(), y.port()),
                    _ => return Err(StatusCode::InternalServerError),
                };
                let peer_ip = self.peer.ip();
                (
                    Transport::Udp {
                        rtp,
                        rtcp,
                        dest_rtp: SocketAddr::new(peer_ip, a),
                        dest_rtcp: SocketAddr::new(peer_ip, b),
                    },
                    format!("RTP/AVP;unicast;client_port={a}-{b};server_port={sa}-{sb}"),
                )
            }
        };
        let ssrc = u32::from_str_radix(&self.session_id[8..], 16).unwrap_or(1) ^ index as u32;
        let seq = (ssrc >> 7) as u16;
        let packetizer = match index {
            0 => {
                if info.avc().is_none() {
                    return Err(StatusCode::NotFound);
                }
                Packetizer::Video(
                    H264Packetizer::new(VIDEO_PAYLOAD_TYPE, ssrc, DEFAULT_MTU).with_sequence(seq),
                )
            }
            _ => {
                let aac = info.aac().ok_or(StatusCode::NotFound)?;
                Packetizer::Audio(
                    AacPacketizer::new(AUDIO_PAYLOAD_TYPE, ssrc, aac, DEFAULT_MTU)
                        .with_sequence(seq),
                )
            }
        };
        self.tracks[index] = Some(Track {
            transport,
            packetizer,
            reported: false,
            sent: 0,
            send_errors: 0,
        });
        if self.state == State::Init {
            self.state = State::Ready;
        }
        Ok(vec![
            (headers::TRANSPORT, format!("{reply};ssrc={ssrc:08X}")),
            (headers::SESSION, self.session_header()),
        ])
    }

    /// Handles what is already queued, so each wake-up writes a batch, until the pacer holds a
    /// frame back.
    async fn drain(&mut self) -> Result<(), ConnError> {
        for _ in 0..FRAME_BATCH {
            if self.held.is_some() {
                break;
            }
            let next = match self.pending.pop_front() {
                Some(ev) => Some(ev),
                None => self.sub.as_mut().and_then(Subscription::try_recv),
            };
            let Some(ev) = next else { break };
            self.event(ev).await?;
        }
        Ok(())
    }

    /// One hub event while playing.
    async fn event(&mut self, ev: Event) -> Result<(), ConnError> {
        match ev {
            Event::Tracks { info, .. } => {
                self.info = Some(info);
                // A new configuration (a republish) may restart the timestamps.
                self.pacer.reset();
            }
            // The publisher left: RTSP 1.0 has no in-band end of stream, so close the session.
            Event::End => return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Event::Frame(frame) => {
                let Some(track) = self.tracks[index_of(&frame)].as_ref() else {
                    return Ok(());
                };
                // TCP has flow control; a UDP reader gets the GOP cache no faster than the
                // pacer allows (see crate::pace).
                if track.is_udp()
                    && let Some(at) = self.pacer.schedule(frame.dts, std::time::Instant::now())
                {
                    self.held = Some((at, frame));
                    return Ok(());
                }
                self.send_frame(frame).await?;
            }
        }
        Ok(())
    }

    /// Packetizes and sends one frame now.
    async fn send_frame(&mut self, frame: Frame) -> Result<(), ConnError> {
        let Some(info) = self.info.clone() else {
            return Ok(());
        };
        let index = index_of(&frame);
        if self.tracks[index].is_none() {
            return Ok(());
        }
        self.clock.observe(frame.pts, std::time::Instant::now());
        self.sender_reports(false).await?;
        let Some(track) = self.tracks[index].as_mut() else {
            return Ok(());
        };
        let pushed = match (&mut track.packetizer, info.avc()) {
            (Packetizer::Video(p), Some(cfg)) => p.push(&frame, cfg),
            (Packetizer::Audio(p), _) => p.push(&frame),
            _ => return Ok(()),
        };
        if let Err(e) = pushed {
            debug!(error = %e, "rtsp frame dropped");
            return Ok(());
        }
        // Collected first: sending borrows the connection mutably.
        let packets: Vec<Bytes> = std::iter::from_fn(|| track.packetizer.pull()).collect();
        let mut sent = 0;
        for pkt in packets {
            sent += pkt.len();
            self.send(index, false, pkt).await?;
        }
        if let Some(sub) = &self.sub {
            sub.record_sent(sent);
        }
        Ok(())
    }

    /// Queues (TCP) or sends (UDP) one RTP or RTCP packet of track `index`.
    async fn send(&mut self, index: usize, is_rtcp: bool, pkt: Bytes) -> Result<(), ConnError> {
        let Some(track) = self.tracks[index].as_ref() else {
            return Ok(());
        };
        match &track.transport {
            Transport::Tcp { rtp, rtcp } => {
                let Ok(len) = u16::try_from(pkt.len()) else {
                    return Ok(());
                };
                self.out.put_u8(b'$');
                self.out.put_u8(if is_rtcp { *rtcp } else { *rtp });
                self.out.put_u16(len);
                self.out.put_slice(&pkt);
                // Bound the local buffer: flush once it holds a few packets' worth.
                if self.out.len() > 64 << 10 {
                    self.flush().await?;
                }
            }
            Transport::Udp {
                rtp,
                rtcp,
                dest_rtp,
                dest_rtcp,
            } => {
                let (sock, dest) = if is_rtcp {
                    (rtcp, dest_rtcp)
                } else {
                    (rtp, dest_rtp)
                };
                // Waiting for room in our socket buffer delays only this reader (a dropped
                // packet would be a sequence gap at the player); an ICMP error from the client
                // (its port closed) drops the packet, as UDP does.
                let sent = match timeout(WRITE_TIMEOUT, sock.send_to(&pkt, *dest)).await {
                    Ok(r) => r.is_ok(),
                    Err(_) => return Err(ConnError::WriteTimeout),
                };
                if let Some(track) = self.tracks[index].as_mut() {
                    track.send_errors += u64::from(!sent);
                }
            }
        }
        if !is_rtcp && let Some(track) = self.tracks[index].as_mut() {
            track.sent += 1;
        }
        Ok(())
    }

    /// Sends a sender report for every track (`all`), or only for tracks without one yet.
    ///
    /// The first reports go out before the first RTP packet: ffmpeg times a track's packets
    /// from its first packet until that track's first report and from the reports after, so
    /// media sent before the report would jump in time (backwards, when the other track's
    /// first frame is later) once the report arrives.
    async fn sender_reports(&mut self, all: bool) -> Result<(), ConnError> {
        if !all && self.tracks.iter().flatten().all(|t| t.reported) {
            return Ok(());
        }
        let Some((wall, pts)) = self.clock.at(std::time::Instant::now()) else {
            return Ok(());
        };
        for index in 0..2 {
            let Some(track) = self.tracks[index].as_mut() else {
                continue;
            };
            if track.reported && !all {
                continue;
            }
            track.reported = true;
            let sr = track.packetizer.report(wall, pts);
            self.send(index, true, sr.to_bytes("ferrocast")).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let data = self.out.split();
        match timeout(WRITE_TIMEOUT, self.writer.write_all(&data)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnError::WriteTimeout),
        }
    }
}
