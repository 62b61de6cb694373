//! The native browser path: a plain WebSocket that carries what WebCodecs encoded, so the
//! server never touches the video.
//!
//! `ws(s)://HOST/ws/publish/CODE?key=KEY` (further query pairs go to admission, as with RTMP).
//!
//! Client to server:
//! - first, a text message `{"type":"start","video":true,"audio":{"codec":"opus",
//!   "sampleRate":48000,"channels":2}}` (`audio` null or absent for video only);
//! - then binary messages `[kind: u8][timestamp: u32 BE, ms][payload]`: kind 9 carries an FLV
//!   VIDEODATA body (the AVC sequence header built from WebCodecs' `avcC` description, then
//!   AVCC access units), passed into the hub untouched; kind 8 carries one raw Opus packet,
//!   which an audio-only ffmpeg turns into AAC;
//! - `{"type":"stop"}` ends the session after ffmpeg flushed its audio.
//!
//! Server to client, text: `{"type":"ready","code":...}` once admitted, `{"type":"stats",...}`
//! every second, and `{"type":"error","name","message","fatal"}` (the api.video names) before
//! a close.

use crate::feed::Feed;
use crate::ffmpeg::{self, Ffmpeg, SpawnError, StdinFeed};
use crate::names::*;
use crate::ogg::{self, OggOpusWriter};
use crate::{BrowserIngest, ServerError};
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};
use tracing::{Instrument, debug, info, info_span, warn};

/// Binary message kind: an FLV video tag body.
pub const KIND_VIDEO: u8 = 9;
/// Binary message kind: one Opus packet.
pub const KIND_OPUS: u8 = 8;
/// How long the client has to send `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message to the client may take before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The `/ws/publish/{code}` route.
pub fn router(b: BrowserIngest) -> Router {
    Router::new()
        .route("/ws/publish/{*code}", get(upgrade))
        .with_state(b)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Control {
    Start {
        #[serde(default = "yes")]
        video: bool,
        #[serde(default)]
        audio: Option<AudioStart>,
    },
    Stop,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AudioStart {
    codec: String,
    #[serde(default = "opus_rate")]
    sample_rate: u32,
    #[serde(default = "stereo")]
    channels: u8,
}

fn opus_rate() -> u32 {
    48_000
}

fn stereo() -> u8 {
    2
}

async fn upgrade(
    State(b): State<BrowserIngest>,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
    mut req: Request,
) -> Response {
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (StatusCode::BAD_REQUEST, "a WebSocket upgrade is required\n").into_response();
    };
    if !is_ws || !version_ok {
        return (
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade (version 13) is required\n",
        )
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let peer = crate::peer_of(&parts);
    req = Request::from_parts(parts, body);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (_, args) = rtmp::session::split_query(&format!("?{}", query.unwrap_or_default()));
    let max = b.config().max_chunk_bytes;
    let span = info_span!("browser", protocol = "ws", peer = ?peer, code = %code);
    let tasks = b.inner.tasks.clone();
    tasks.spawn(
        async move {
            let io = match on_upgrade.await {
                Ok(io) => TokioIo::new(io),
                Err(e) => {
                    debug!(error = %e, "websocket upgrade failed");
                    return;
                }
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            Conn {
                b,
                ws,
                peer,
                code,
                args,
            }
            .run()
            .await;
        }
        .instrument(span),
    );
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        )
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

struct Conn {
    b: BrowserIngest,
    ws: Ws,
    peer: Option<SocketAddr>,
    code: String,
    args: Vec<(String, String)>,
}

/// How a session ended, for the close frame.
struct End {
    code: CloseCode,
    error: Option<ServerError>,
}

impl End {
    fn normal() -> Self {
        End {
            code: CloseCode::Normal,
            error: None,
        }
    }

    fn error(code: CloseCode, e: ServerError) -> Self {
        End {
            code,
            error: Some(e),
        }
    }
}

/// The audio half: Opus in Ogg to ffmpeg, AAC in FLV back.
struct Audio {
    child: Ffmpeg,
    /// `None` once the client said stop.
    stdin: Option<StdinFeed>,
    ogg: OggOpusWriter,
    channels: u8,
    rate: u32,
    started: bool,
}

impl Conn {
    async fn send_json(&mut self, v: serde_json::Value) -> bool {
        let msg = Message::Text(v.to_string().into());
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, self.ws.send(msg)).await,
            Ok(Ok(()))
        )
    }

    async fn close(&mut self, end: End) {
        if let Some(e) = &end.error {
            warn!(name = e.name, message = %e.message, "browser websocket session ended");
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["type"] = json!("error");
            self.send_json(v).await;
        }
        let frame = CloseFrame {
            code: end.code,
            reason: end.error.as_ref().map(|e| e.name).unwrap_or("").into(),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.ws.close(Some(frame))).await;
    }

    async fn run(mut self) {
        let shutdown = self.b.inner.shutdown.clone();
        // The start message, within a bound.
        let start = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = tokio::time::timeout(START_TIMEOUT, self.ws.next()) => m,
        };
        let (video, audio) = match start {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<Control>(&t) {
                Ok(Control::Start { video, audio }) => (video, audio),
                _ => {
                    let e = ServerError::fatal(
                        INVALID_PARAMETERS,
                        "the first message must be {\"type\":\"start\",...}",
                    );
                    return self.close(End::error(CloseCode::Policy, e)).await;
                }
            },
            Ok(Some(Ok(Message::Binary(_)))) => {
                let e = ServerError::fatal(
                    FFMPEG_NOT_RUNNING,
                    "media before start; send {\"type\":\"start\"} first",
                );
                return self.close(End::error(CloseCode::Policy, e)).await;
            }
            Ok(Some(Ok(_))) | Ok(Some(Err(_))) | Ok(None) => return,
            Err(_) => {
                let e = ServerError::fatal(INVALID_PARAMETERS, "no start message within 10 s");
                return self.close(End::error(CloseCode::Policy, e)).await;
            }
        };
        if !video && audio.is_none() {
            let e = ServerError::fatal(INVALID_PARAMETERS, "start names neither video nor audio");
            return self.close(End::error(CloseCode::Policy, e)).await;
        }
        if let Some(a) = &audio
            && (a.codec != "opus"
                || !(1..=2).contains(&a.channels)
                || !(8_000..=48_000).contains(&a.sample_rate))
        {
            let e = ServerError::fatal(
                INVALID_PARAMETERS,
                "audio must be Opus (WebCodecs 'opus'), 1 or 2 channels, 8 to 48 kHz",
            );
            return self.close(End::error(CloseCode::Policy, e)).await;
        }
        let publisher = match self
            .b
            .publish(self.code.clone(), self.args.clone(), self.peer)
            .await
        {
            Ok(p) => p,
            Err(reason) => {
                let e = ServerError::fatal(
                    RTMP_CONNECTION_FAILED,
                    format!("publish refused: {reason}"),
                );
                return self.close(End::error(CloseCode::Policy, e)).await;
            }
        };
        let mut audio = match audio {
            None => None,
            Some(a) => {
                let cfg = self.b.config();
                match ffmpeg::spawn(
                    &cfg.ffmpeg,
                    &audio_args(a.channels),
                    &self.b.inner.cap,
                    cfg.max_pending_bytes,
                    true,
                    &self.b.inner.tasks,
                ) {
                    Ok(mut child) => match child.stdin.clone() {
                        Some(stdin) => Some(Audio {
                            child,
                            stdin: Some(stdin),
                            ogg: OggOpusWriter::new(publisher.session() as u32),
                            channels: a.channels,
                            rate: a.sample_rate,
                            started: false,
                        }),
                        None => {
                            child.kill().await;
                            None
                        }
                    },
                    Err(e) => {
                        let e = match e {
                            SpawnError::NotFound => {
                                ServerError::fatal(FFMPEG_NOT_FOUND, e.to_string())
                            }
                            e => ServerError::fatal(CANT_START_FFMPEG, e.to_string()),
                        };
                        return self.close(End::error(CloseCode::Again, e)).await;
                    }
                }
            }
        };
        let feed = Feed::native(publisher, audio.is_some());
        info!(
            session = feed.publisher().session(),
            audio = audio.is_some(),
            "browser publisher started (native WebCodecs)"
        );
        let code = feed.publisher().code().to_owned();
        if !self.send_json(json!({"type": "ready", "code": code})).await {
            if let Some(a) = audio.as_mut() {
                a.child.kill().await;
            }
            return;
        }
        let end = self.session(feed, &mut audio).await;
        if let Some(a) = audio.as_mut() {
            a.child.kill().await;
        }
        self.close(end).await;
    }

    /// The publish loop; the feed (and with it the publisher) is dropped when it returns.
    async fn session(&mut self, mut feed: Feed, audio: &mut Option<Audio>) -> End {
        let shutdown = self.b.inner.shutdown.clone();
        let kicked = feed.publisher().kill_token();
        let timeout = self.b.config().publisher_timeout;
        let mut stdout = audio.as_mut().and_then(|a| a.child.stdout.take());
        let tail = audio
            .as_ref()
            .map(|a| a.child.tail.clone())
            .unwrap_or_default();
        let mut buf = BytesMut::with_capacity(16 << 10);
        let mut stats = tokio::time::interval(Duration::from_secs(1));
        let mut last_data = Instant::now();
        let mut bytes_in = 0u64;
        let mut window = (Instant::now(), 0u64);
        let started = Instant::now();
        let mut stopping: Option<tokio::time::Instant> = None;
        let send_details = self.b.config().send_error_details;
        let details = |tail: &ffmpeg::Tail| send_details.then(|| tail.text());
        let end = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break End::error(
                    CloseCode::Away,
                    ServerError::fatal(FFMPEG_UNEXPECTED_END, "the gateway is shutting down"),
                ),
                _ = kicked.cancelled() => break End::error(
                    CloseCode::Policy,
                    ServerError::fatal(FFMPEG_UNEXPECTED_END, "the gateway ended this publish session"),
                ),
                _ = tokio::time::sleep_until(stopping.unwrap_or_else(tokio::time::Instant::now)), if stopping.is_some() => {
                    break End::normal();
                }
                m = self.ws.next(), if stopping.is_none() => match m {
                    None | Some(Ok(Message::Close(_))) => break End::normal(),
                    Some(Err(e)) => {
                        let too_big = matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_));
                        if too_big {
                            let max = self.b.config().max_chunk_bytes;
                            break End::error(CloseCode::Size, ServerError::fatal(
                                INVALID_PARAMETERS,
                                format!("a message exceeds the {max}-byte bound"),
                            ));
                        }
                        debug!(error = %e, "websocket read failed");
                        break End::normal();
                    }
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<Control>(&t) {
                        Ok(Control::Stop) => {
                            // Let ffmpeg flush the last audio, then end.
                            if let Some(a) = audio.as_mut() {
                                a.child.stdin = None;
                                a.stdin = None;
                            }
                            stopping = Some(tokio::time::Instant::now() + if audio.is_some() { ffmpeg::FLUSH_GRACE } else { Duration::ZERO });
                        }
                        _ => break End::error(CloseCode::Policy, ServerError::fatal(INVALID_PARAMETERS, "unexpected control message")),
                    },
                    Some(Ok(Message::Binary(data))) => {
                        last_data = Instant::now();
                        bytes_in += data.len() as u64;
                        window.1 += data.len() as u64;
                        if let Err(e) = media(&mut feed, audio, data) {
                            break End::error(CloseCode::Unsupported, e);
                        }
                    }
                    Some(Ok(_)) => {}
                },
                r = async { stdout.as_mut().expect("guarded").read_buf(&mut buf).await }, if stdout.is_some() => {
                    match r {
                        Ok(0) | Err(_) => {
                            if stopping.is_some() {
                                break End::normal();
                            }
                            break End::error(CloseCode::Error, ServerError::fatal(FFMPEG_UNEXPECTED_END, "the audio ffmpeg ended unexpectedly").with_details(details(&tail)));
                        }
                        Ok(_) => {
                            if let Err(e) = feed.ffmpeg_output(&buf) {
                                break End::error(CloseCode::Error, ServerError::fatal(FFMPEG_ERROR, e.to_string()).with_details(details(&tail)));
                            }
                            buf.clear();
                        }
                    }
                }
                _ = stats.tick() => {
                    if stopping.is_none() && last_data.elapsed() > timeout {
                        break End::error(CloseCode::Policy, ServerError::fatal(
                            FFMPEG_UNEXPECTED_END,
                            format!("no media for {timeout:?}; session closed"),
                        ));
                    }
                    let secs = window.0.elapsed().as_secs_f64().max(0.001);
                    let bitrate = (window.1 as f64 * 8.0 / secs) as u64;
                    window = (Instant::now(), 0);
                    let readers = self.b.inner.hub.stats(feed.publisher().code()).map(|s| s.readers.iter().map(|(_, n)| u64::from(*n)).sum::<u64>()).unwrap_or(0);
                    let v = json!({
                        "type": "stats",
                        "bytesIn": bytes_in,
                        "bitrate": bitrate,
                        "frames": feed.frames(),
                        "readers": readers,
                        "uptime": started.elapsed().as_secs(),
                    });
                    if !self.send_json(v).await {
                        break End::normal();
                    }
                }
            }
        };
        info!(
            secs = started.elapsed().as_secs(),
            frames = feed.frames(),
            bytes_in,
            "browser publisher ended"
        );
        drop(feed);
        end
    }
}

/// One binary message into the feed (video) or the audio ffmpeg (Opus).
fn media(feed: &mut Feed, audio: &mut Option<Audio>, mut data: Bytes) -> Result<(), ServerError> {
    let bad = |m: String| ServerError::fatal(INVALID_PARAMETERS, m);
    if data.len() < 5 {
        return Err(bad(format!(
            "a media message of {} bytes has no header",
            data.len()
        )));
    }
    let kind = data.get_u8();
    let ts = data.get_u32();
    match kind {
        KIND_VIDEO => feed
            .video(ts, &data)
            .map_err(|e| bad(format!("video: {e}"))),
        KIND_OPUS => {
            let Some(a) = audio.as_mut() else {
                return Err(bad("Opus audio on a session started without audio".into()));
            };
            let Some(stdin) = a.stdin.as_ref() else {
                return Ok(());
            };
            if data.len() > ogg::MAX_PACKET {
                return Err(bad(format!("an Opus packet of {} bytes", data.len())));
            }
            let samples = ogg::packet_samples(&data)
                .ok_or_else(|| bad("not an Opus packet (bad TOC)".into()))?;
            if !a.started {
                a.started = true;
                feed.set_audio_offset(ts);
                let headers = a.ogg.headers(a.channels, a.rate);
                stdin
                    .send(headers, None)
                    .map_err(|e| ServerError::fatal(FFMPEG_WRITE_ERROR, e.to_string()))?;
            }
            let page = a.ogg.packet(&data, samples);
            stdin
                .send(page, None)
                .map_err(|e| ServerError::fatal(FFMPEG_WRITE_ERROR, e.to_string()))
        }
        k => Err(bad(format!("unknown media kind {k} (8 Opus, 9 video)"))),
    }
}

/// The audio ffmpeg: Ogg Opus in, AAC in FLV out, nothing buffered that need not be.
pub fn audio_args(channels: u8) -> Vec<String> {
    let codecs = ["-vn", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac"]
        .map(str::to_owned)
        .into_iter()
        .chain([channels.to_string()])
        .collect::<Vec<_>>();
    ffmpeg::flv_command(
        &["-probesize", "4096", "-analyzeduration", "0", "-f", "ogg"],
        &codecs,
        "pipe:1",
    )
}
