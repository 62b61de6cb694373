//! One RTSP connection: request handling (OPTIONS .. TEARDOWN) and media delivery over TCP
//! interleaved channels or UDP port pairs.
//!
//! Messages are parsed by `rtsp-types` (sans-I/O); this file is the tokio glue around it and the
//! packetizers of this crate. A slow TCP reader never blocks the publisher: frames wait in the
//! hub's bounded per-reader queue, which skips to the next keyframe on overflow.
//!
//! Frames are packetized once per stream ([`crate::share`]) and every reader sends the same
//! packet bodies; a reader only rewrites the packet heads ([`RtpSender`]) and writes heads and
//! shared bodies together with `writev` ([`OutQueue`]).
//!
//! Over UDP the GOP cache a reader starts with is paced ([`Pacer`]): sent at once it overflows
//! the player's socket buffer and the kernel drops the packets. The frames waiting meanwhile
//! stay in the hub's per-reader queue, so pacing delays only this reader.

use crate::out::OutQueue;
use crate::pace::Pacer;
use crate::request::{self, TransportRequest};
use crate::rtcp::{MediaClock, SenderReport};
use crate::rtp::{FRAMING_LEN, MAX_HEAD_LEN, RtpFrame, RtpSender, rtp_timestamp};
use crate::sdp::{self, RtpFormat};
use crate::share::{SharedPacketizers, StreamPacketizer};
use bytes::{Bytes, BytesMut};
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
/// Queued TCP output that is written at once rather than after the current batch; bounds the
/// queue (what it holds beyond this is references to shared packet bodies, not copies).
const OUT_FLUSH: usize = 64 << 10;
/// Slices handed to one `writev` (Linux takes up to 1024).
const MAX_IOV: usize = 512;
/// Readers of a stream from which a TCP reader's audio waits for the next video frame instead
/// of being written on its own (see [`Conn::flush_media`]).
const COALESCE_READERS: usize = 8;
/// Longest audio waits for a video frame to be written with.
const AUDIO_HOLD: Duration = Duration::from_millis(40);

/// Per-connection settings.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Application name in the URL path.
    pub app: String,
    /// Idle time after which the session is closed.
    pub session_timeout: Duration,
    /// The packetizers shared by every connection of the server.
    pub packetizers: SharedPacketizers,
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
    /// Interleaved in the RTSP connection (RFC 2326 10.12); the RTP channel is the sender's.
    Tcp { rtcp: u8 },
    /// A UDP port pair of the server, sending to the client's pair.
    Udp {
        rtp: UdpSocket,
        rtcp: UdpSocket,
        dest_rtp: SocketAddr,
        dest_rtcp: SocketAddr,
    },
}

struct Track {
    transport: Transport,
    /// This reader's sequence numbers, SSRC, timestamp offset and RTCP counts.
    sender: RtpSender,
    /// Payload format (and RTP clock rate) announced in the SDP.
    format: RtpFormat,
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

    /// This reader's RTP timestamp of the 90 kHz media time `pts`.
    fn rtp_timestamp(&self, pts: i64) -> u32 {
        self.sender
            .timestamp(rtp_timestamp(pts, self.format.clock_rate()))
    }

    /// The sender report for media time `pts` at wall time `ntp_time`.
    fn report(&self, ntp_time: SystemTime, pts: i64) -> SenderReport {
        SenderReport {
            ssrc: self.sender.ssrc(),
            ntp_time,
            rtp_timestamp: self.rtp_timestamp(pts),
            packet_count: self.sender.packet_count(),
            octet_count: self.sender.octet_count(),
        }
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
    /// The stream's shared packetizer for the current track set, held while playing.
    packets: Option<Arc<StreamPacketizer>>,
    /// TCP output: responses, RTCP, and RTP heads with their shared bodies.
    out: OutQueue,
    /// One UDP datagram being assembled (a head and a shared body).
    datagram: Vec<u8>,
    /// The newest frame in `out` is audio.
    audio_queued: bool,
    /// When queued audio is written even if no video frame came to carry it.
    flush_at: Option<Instant>,
    /// RTP bytes queued or sent and not yet added to the stream's statistics.
    unrecorded: usize,
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
        packets: None,
        out: OutQueue::new(),
        datagram: Vec::new(),
        audio_queued: false,
        flush_at: None,
        unrecorded: 0,
        clock: MediaClock::new(Instant::now().into_std(), SystemTime::now()),
        pending: VecDeque::new(),
        pacer: Pacer::new(),
        held: None,
    };
    let mut input = BytesMut::with_capacity(4096);
    let mut consumed_total: u64 = 0;
    let mut rtcp = tokio::time::interval(RTCP_INTERVAL);
    rtcp.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The loop wakes for every frame of the stream, so the futures that wait all session
    // (shutdown, kick, idle timeout) live across iterations: made anew each time, each would
    // register with its token or the timer wheel and deregister on every frame. Polling a
    // token locks it; a child token per connection keeps readers off the server's one lock.
    let shutdown = shutdown.child_token();
    let stop = shutdown.cancelled();
    tokio::pin!(stop);
    let kill = conn.kill.clone().cancelled_owned();
    tokio::pin!(kill);
    let idle = sleep_until(Instant::now() + conn.cfg.session_timeout);
    tokio::pin!(idle);
    loop {
        let playing = conn.state == State::Playing && conn.sub.is_some();
        let held = conn.held.as_ref().map(|(at, _)| Instant::from_std(*at));
        let flush_at = conn.flush_at;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = &mut kill => {
                debug!("rtsp reader kicked");
                return Ok(());
            }
            _ = &mut idle => {
                debug!("rtsp session timed out");
                return Ok(());
            }
            r = reader.read_buf(&mut input) => {
                if r? == 0 {
                    return Ok(());
                }
                idle.as_mut().reset(Instant::now() + conn.cfg.session_timeout);
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
                                    // DESCRIBE or SETUP may have swapped in the reader's token.
                                    kill.set(conn.kill.clone().cancelled_owned());
                                }
                                // RTCP receiver reports on the interleaved channels: they only
                                // prove the client is alive, which the idle reset above recorded.
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
                            conn.out.push_bytes(Bytes::from(resp));
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
                conn.flush_media().await?;
            }
            _ = sleep_while_some(held), if playing && held.is_some() => {
                if let Some((_, frame)) = conn.held.take() {
                    conn.send_frame(frame).await?;
                }
                conn.drain().await?;
                conn.flush_media().await?;
            }
            _ = sleep_while_some(flush_at), if flush_at.is_some() => {
                conn.flush().await?;
            }
            _ = rtcp.tick(), if playing => {
                conn.sender_reports(true).await?;
                conn.flush().await?;
            }
        }
    }
}

/// Sleeps until `at`, or forever without one. Unlike a `Sleep` made for a disabled branch,
/// it costs nothing until polled.
async fn sleep_while_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
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

/// 64 bits that are hard to guess for another client: time and a counter, hashed.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 finaliser: spreads the bits so consecutive values do not look consecutive.
    let mut z = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A session id that is hard to guess for another client.
fn session_id() -> String {
    format!("{:016X}", random_u64())
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
                            let mut entry =
                                format!("url={base}/trackID={i};seq={}", t.sender.next_sequence());
                            // rtptime is where the reader's timeline starts, and strict readers
                            // (retina) refuse packets before it; it is optional (RFC 2326
                            // 12.33), so it is left out when no frame is known yet.
                            if let Some(pts) = start {
                                entry.push_str(&format!(";rtptime={}", t.rtp_timestamp(pts)));
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
                // Taken again at the next frame played; meanwhile the stream's last reader
                // may leave and free it.
                self.packets = None;
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
        self.out.push_bytes(Bytes::from(resp));
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
                command: Default::default(),
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
        // An on-demand source (a pull this request started) is given time to go live.
        if !self.hub.live_on_demand(&code, hub::ON_DEMAND_WAIT).await {
            return Err(StatusCode::NotFound);
        }
        let mut sub = self
            .hub
            .subscribe_live(&code, meta)
            .ok_or(StatusCode::NotFound)?;
        let info = match timeout(TRACKS_WAIT, sub.recv()).await {
            Ok(Some(Event::Tracks { info, .. })) => info,
            _ => return Err(StatusCode::NotFound),
        };
        let left_out: Vec<String> = [
            info.video
                .as_ref()
                .filter(|_| RtpFormat::video(&info).is_none())
                .map(|v| v.name()),
            info.audio
                .as_ref()
                .filter(|_| RtpFormat::audio(&info).is_none())
                .map(|a| a.name()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !left_out.is_empty() {
            tracing::warn!(stream = %code, ?left_out, "rtsp: tracks without an RTP mapping are left out");
        }
        if RtpFormat::video(&info).is_none() && RtpFormat::audio(&info).is_none() {
            // Only H.264, H.265, AV1, AAC and Opus can be described; other codecs (opaque
            // ones) have no RTP mapping here, and an SDP without media is of no use.
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
        let (transport, channel, reply) = match request::transport(&transport, index)? {
            TransportRequest::Interleaved { rtp: a, rtcp: b } => (
                Transport::Tcp { rtcp: b },
                a,
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
                    0,
                    format!("RTP/AVP;unicast;client_port={a}-{b};server_port={sa}-{sb}"),
                )
            }
        };
        let format = RtpFormat::of_track(&info, index).ok_or(StatusCode::NotFound)?;
        let ssrc = u32::from_str_radix(&self.session_id[8..], 16).unwrap_or(1) ^ index as u32;
        // RFC 3550 5.1: random first sequence number and timestamp, per reader and track.
        let r = random_u64();
        let sender = RtpSender::new(ssrc, r as u16, (r >> 32) as u32).with_channel(channel);
        self.tracks[index] = Some(Track {
            transport,
            sender,
            format,
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
                // RTSP 1.0 cannot announce a new payload format or clock rate mid-session;
                // closing makes the player DESCRIBE again and learn it. A track that lost its
                // mapping just stops, as its frames are no longer packetized.
                for (index, track) in self.tracks.iter().enumerate() {
                    if let (Some(track), Some(format)) = (track, RtpFormat::of_track(&info, index))
                        && format != track.format
                    {
                        debug!(
                            from = ?track.format,
                            to = ?format,
                            "rtsp payload format changed; closing the session"
                        );
                        return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                self.info = Some(info);
                // Packets of the new track set come from its own shared packetizer.
                self.packets = None;
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

    /// The shared packets of `frame`, from the stream's packetizer for the current track set.
    fn shared_packets(&mut self, frame: &Frame) -> Option<Arc<RtpFrame>> {
        let info = self.info.as_ref()?;
        let current = self
            .packets
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p.info(), info));
        if !current {
            let code = self.code.as_deref()?;
            self.packets = Some(self.cfg.packetizers.get(code, info));
        }
        self.packets.as_ref()?.packets(frame)
    }

    /// Sends one frame now: queued for the next flush (TCP) or sent (UDP).
    async fn send_frame(&mut self, frame: Frame) -> Result<(), ConnError> {
        let index = index_of(&frame);
        if self.tracks[index].is_none() {
            return Ok(());
        }
        self.clock.observe(frame.pts, std::time::Instant::now());
        self.sender_reports(false).await?;
        let Some(rtp) = self.shared_packets(&frame) else {
            return Ok(());
        };
        let Some(track) = self.tracks[index].as_mut() else {
            return Ok(());
        };
        let mut sent = 0;
        let udp = track.is_udp();
        match &track.transport {
            Transport::Tcp { .. } => {
                for packet in rtp.packets() {
                    sent += self.out.push_rtp(&mut track.sender, packet);
                    track.sent += 1;
                }
                self.audio_queued = frame.track == TrackKind::Audio;
            }
            Transport::Udp {
                rtp: sock,
                dest_rtp,
                ..
            } => {
                let mut head = [0u8; MAX_HEAD_LEN];
                for packet in rtp.packets() {
                    let len = track.sender.head(packet, &mut head);
                    // tokio has no vectored send_to; one datagram's copy is small next to the
                    // system call that sends it.
                    self.datagram.clear();
                    self.datagram.extend_from_slice(&head[FRAMING_LEN..len]);
                    self.datagram.extend_from_slice(packet.body());
                    // Waiting for room in our socket buffer delays only this reader (a dropped
                    // packet would be a sequence gap at the player); an ICMP error from the
                    // client (its port closed) drops the packet, as UDP does.
                    let ok = match timeout(WRITE_TIMEOUT, sock.send_to(&self.datagram, *dest_rtp))
                        .await
                    {
                        Ok(r) => r.is_ok(),
                        Err(_) => return Err(ConnError::WriteTimeout),
                    };
                    track.send_errors += u64::from(!ok);
                    track.sent += 1;
                    sent += self.datagram.len();
                }
            }
        }
        self.unrecorded += sent;
        if udp {
            self.record_sent();
        } else if self.out.len() > OUT_FLUSH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Adds the bytes sent since the last call to the stream's and session's counters: once a
    /// write, not once a frame, as every reader of the stream updates the same counter.
    fn record_sent(&mut self) {
        if self.unrecorded > 0
            && let Some(sub) = &self.sub
        {
            sub.record_sent(self.unrecorded);
        }
        self.unrecorded = 0;
    }

    /// Queues (TCP) or sends (UDP) one RTCP packet of track `index`.
    async fn send_rtcp(&mut self, index: usize, pkt: Bytes) -> Result<(), ConnError> {
        let Some(track) = self.tracks[index].as_mut() else {
            return Ok(());
        };
        match &track.transport {
            Transport::Tcp { rtcp } => self.out.push_rtcp(*rtcp, pkt),
            Transport::Udp {
                rtcp, dest_rtcp, ..
            } => {
                let ok = match timeout(WRITE_TIMEOUT, rtcp.send_to(&pkt, *dest_rtcp)).await {
                    Ok(r) => r.is_ok(),
                    Err(_) => return Err(ConnError::WriteTimeout),
                };
                track.send_errors += u64::from(!ok);
            }
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
            let sr = track.report(wall, pts);
            self.send_rtcp(index, sr.to_bytes("ferrocast")).await?;
        }
        Ok(())
    }

    /// Writes the media queued by the frames just handled, unless it ends in audio that can
    /// wait for the next video frame.
    ///
    /// A write costs a system call and a TCP segment (on loopback, also the receive path and
    /// the player's wake-up), and these, not the bytes, are most of a reader's cost. A stream
    /// has about 1.5 audio frames per video frame, so when its audience is large
    /// ([`COALESCE_READERS`]) audio rides with the next video frame: about half the writes, for
    /// at most [`AUDIO_HOLD`] (one frame interval at 25 fps and up) of added audio delay. A
    /// small audience, audio-only streams and UDP readers are written at once as before.
    async fn flush_media(&mut self) -> Result<(), ConnError> {
        let large = self
            .packets
            .as_ref()
            .is_some_and(|p| Arc::strong_count(p) >= COALESCE_READERS);
        // Video must come through this queue too, or nothing would carry the audio.
        let video = self.tracks[0].as_ref().is_some_and(|t| !t.is_udp())
            && self
                .info
                .as_ref()
                .is_some_and(|i| RtpFormat::video(i).is_some());
        if self.audio_queued && large && video && self.out.len() < OUT_FLUSH {
            if self.flush_at.is_none() {
                self.flush_at = Some(Instant::now() + AUDIO_HOLD);
            }
            return Ok(());
        }
        self.flush().await
    }

    /// Writes everything queued, heads and shared bodies gathered by `writev`.
    async fn flush(&mut self) -> Result<(), ConnError> {
        self.flush_at = None;
        self.audio_queued = false;
        self.record_sent();
        while !self.out.is_empty() {
            let slices = self.out.io_slices(MAX_IOV);
            // The timeout is per write: a client that still reads, however slowly, stays.
            let written = match timeout(WRITE_TIMEOUT, self.writer.write_vectored(&slices)).await {
                Ok(r) => r?,
                Err(_) => return Err(ConnError::WriteTimeout),
            };
            drop(slices);
            if written == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(written);
        }
        Ok(())
    }
}
