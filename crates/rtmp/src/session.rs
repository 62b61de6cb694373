//! Server side of one RTMP connection, sans I/O: bytes in, [`SessionEvent`]s and bytes out.
//!
//! The session answers everything that needs no outside decision (handshake, protocol control,
//! `createStream`, pings, acknowledgements) and hands the decisions that need the hub or the
//! control plane (`connect`, publish, play) to the driver as events.

use crate::amf0::Amf0Value;
use crate::chunk::{
    ChunkDecoder, ChunkEncoder, DecoderLimits, MessageHeader, OutQueue, RawMessage,
};
use crate::handshake::{HandshakeStatus, ServerHandshake};
use crate::message::{self, Command, Message, UserControl};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Acknowledgement window we ask peers to use, and announce as our peer bandwidth.
const WINDOW: u32 = 2_500_000;
/// Events queued before the driver must drain them; a peer cannot grow this without bound
/// because the driver drains after every `feed`.
const MAX_EVENTS: usize = 1024;
/// Message stream ids a client may create on one connection.
const MAX_STREAMS: u32 = 16;

/// Settings of a server session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The only application name accepted in `connect` (e.g. `live`); empty takes any.
    pub app: String,
    /// Chunk size we send with.
    pub out_chunk_size: u32,
    /// Limits applied to what the peer sends.
    pub limits: DecoderLimits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            app: "live".into(),
            out_chunk_size: 4096,
            limits: DecoderLimits::default(),
        }
    }
}

/// Where a session is in its life.
#[derive(Debug)]
enum Phase {
    Handshake(ServerHandshake),
    /// Handshake done, waiting for `connect`.
    AwaitConnect,
    /// `connect` received and handed to the driver; nothing more is decoded until it answers,
    /// so what the client sent meanwhile waits, undecoded, in the caller's input buffer.
    ConnectPending {
        /// Transaction id of `connect`, to answer it.
        transaction_id: f64,
        /// `objectEncoding` the client asked for, echoed in `_result`.
        object_encoding: f64,
    },
    /// `connect` accepted; streams may be created, published or played.
    Connected,
    /// `connect` refused; the driver flushes the `_error` and closes. Nothing more is decoded.
    Refused,
}

/// A `connect` the client sent, for the driver to decide on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectInfo {
    /// Application name without its query.
    pub app: String,
    /// Query arguments given after the app name (`live?token=x`).
    pub app_args: Vec<(String, String)>,
    /// `tcUrl` as the client sent it.
    pub tc_url: Option<String>,
    /// `flashVer` as the client sent it.
    pub flash_ver: Option<String>,
    /// `swfUrl` as the client sent it.
    pub swf_url: Option<String>,
    /// `pageUrl` as the client sent it.
    pub page_url: Option<String>,
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionEvent {
    /// The client sent `connect`; answer with [`ServerSession::accept_connect`] or
    /// [`ServerSession::reject_connect`]. Until then [`ServerSession::feed`] decodes nothing.
    ConnectRequest(ConnectInfo),
    /// The client asks to publish; answer with [`ServerSession::accept_publish`] or
    /// [`ServerSession::reject_publish`].
    PublishRequest {
        /// Message stream id the client publishes on.
        stream_id: u32,
        /// Stream name without its query.
        name: String,
        /// Query arguments after the stream name.
        args: Vec<(String, String)>,
        /// Publish type, when given: `live`, `record` or `append`.
        kind: Option<String>,
    },
    /// The client asks to play; answer with [`ServerSession::accept_play`] or
    /// [`ServerSession::reject_play`].
    PlayRequest {
        /// Message stream id to play on.
        stream_id: u32,
        /// Stream name without its query.
        name: String,
        /// Query arguments after the stream name.
        args: Vec<(String, String)>,
        /// `start`, `duration` and `reset` of the play command, when given.
        start: Option<f64>,
        /// See `start`.
        duration: Option<f64>,
        /// See `start`.
        reset: Option<bool>,
    },
    /// `@setDataFrame`/`onMetaData` from the publisher: the metadata object.
    Metadata(Amf0Value),
    /// An FLV audio tag body with its timestamp (ms).
    Audio {
        /// Message timestamp in milliseconds (wrapping).
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// An FLV video tag body with its timestamp (ms).
    Video {
        /// Message timestamp in milliseconds (wrapping).
        timestamp: u32,
        /// Tag body.
        payload: Bytes,
    },
    /// A player's `pause` (`true`) or unpause (`false`).
    Pause {
        /// Message stream id.
        stream_id: u32,
        /// Paused after this command.
        paused: bool,
    },
    /// A player's `receiveAudio` / `receiveVideo`.
    Receive {
        /// Message stream id.
        stream_id: u32,
        /// Video (else audio).
        video: bool,
        /// Whether the player wants that track.
        on: bool,
    },
    /// The client stopped publishing or playing on `stream_id` (deleteStream, closeStream,
    /// FCUnpublish).
    StreamClosed {
        /// Message stream id.
        stream_id: u32,
    },
}

/// A fatal protocol error; the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Bad handshake.
    #[error("handshake: {0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    /// Bad chunk stream.
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::chunk::ChunkError),
    /// Bad message payload.
    #[error("message: {0}")]
    Message(#[from] crate::message::MessageError),
    /// `connect` named an application we do not serve.
    #[error("connect to unknown app {0:?}")]
    UnknownApp(String),
    /// The peer broke the command protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Server side of one RTMP connection.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    decoder: ChunkDecoder,
    w: MessageWriter,
    events: VecDeque<SessionEvent>,
    next_stream_id: u32,
    /// Window after which we owe the peer an acknowledgement (0 = none asked).
    peer_ack_window: u32,
    last_ack_sent: u64,
}

impl ServerSession {
    /// Starts a session in the handshake phase.
    pub fn new(config: SessionConfig, epoch_ms: u32, seed: u64) -> Self {
        let decoder = ChunkDecoder::new(config.limits);
        ServerSession {
            config,
            phase: Phase::Handshake(ServerHandshake::new(epoch_ms, seed)),
            decoder,
            w: MessageWriter::new(),
            events: VecDeque::new(),
            next_stream_id: message::MEDIA_STREAM_ID,
            peer_ack_window: 0,
            last_ack_sent: 0,
        }
    }

    /// Whether the handshake is finished.
    pub fn handshake_done(&self) -> bool {
        !matches!(self.phase, Phase::Handshake(_))
    }

    /// Whether [`ServerSession::feed`] can consume input now: not while a `connect` awaits the
    /// driver's answer, nor after it was refused.
    pub fn can_feed(&self) -> bool {
        !matches!(self.phase, Phase::ConnectPending { .. } | Phase::Refused)
    }

    /// Bytes waiting to be written to the peer.
    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.w.out
    }

    /// The outgoing side: what players' [`crate::play::Play`] writes through.
    pub fn writer(&mut self) -> &mut MessageWriter {
        &mut self.w
    }

    /// Outgoing chunk size agreed at `connect`.
    pub fn out_chunk_size(&self) -> u32 {
        self.w.encoder.chunk_size()
    }

    /// Total bytes consumed from the peer after the handshake.
    pub fn bytes_received(&self) -> u64 {
        self.decoder.bytes_consumed()
    }

    /// Next event for the driver.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Consumes what it can from `input`; incomplete data stays for the next call. While a
    /// `connect` awaits its answer nothing is consumed: feed again after answering it.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<(), SessionError> {
        if let Phase::Handshake(hs) = &mut self.phase {
            let status = hs.feed(input)?;
            if let Some(reply) = hs.poll_transmit() {
                self.w.out.push(reply);
            }
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            self.phase = Phase::AwaitConnect;
        }
        while self.events.len() < MAX_EVENTS && self.can_feed() {
            let Some(raw) = self.decoder.decode(input)? else {
                break;
            };
            self.on_message(raw)?;
        }
        self.maybe_ack();
        Ok(())
    }

    fn maybe_ack(&mut self) {
        if self.peer_ack_window == 0 {
            return;
        }
        let received = self.decoder.bytes_consumed();
        if received - self.last_ack_sent >= u64::from(self.peer_ack_window) {
            self.last_ack_sent = received;
            // The sequence number wraps at 2^32 by definition (spec 5.4.3).
            let seq = received as u32;
            self.send_control(message::TYPE_ACKNOWLEDGEMENT, message::acknowledgement(seq));
        }
    }

    fn on_message(&mut self, raw: RawMessage) -> Result<(), SessionError> {
        let msg = Message::parse(raw.type_id, &raw.payload)?;
        match msg {
            Message::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            Message::Abort { csid } => self.decoder.abort(csid),
            Message::WindowAckSize(size) => self.peer_ack_window = size,
            Message::Acknowledgement { .. } | Message::SetPeerBandwidth { .. } => {}
            Message::UserControl(UserControl::PingRequest(t)) => {
                let body = message::ping_response(t);
                self.send_control(message::TYPE_USER_CONTROL, body);
            }
            Message::UserControl(_) => {}
            Message::Audio(payload) => self.media(raw.timestamp, payload, true)?,
            Message::Video(payload) => self.media(raw.timestamp, payload, false)?,
            Message::Data { values } => self.on_data(values),
            Message::Command(cmd) => self.on_command(raw.stream_id, cmd)?,
            Message::Other { type_id, .. } => {
                tracing::debug!(type_id, "ignoring RTMP message type");
            }
        }
        Ok(())
    }

    fn media(&mut self, timestamp: u32, payload: Bytes, audio: bool) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::Connected) {
            return Err(SessionError::Protocol("media before connect".into()));
        }
        if payload.is_empty() {
            // Some encoders send empty tags as keep-alives; there is nothing to forward.
            return Ok(());
        }
        self.events.push_back(if audio {
            SessionEvent::Audio { timestamp, payload }
        } else {
            SessionEvent::Video { timestamp, payload }
        });
        Ok(())
    }

    fn on_data(&mut self, values: Vec<Amf0Value>) {
        // ffmpeg/OBS: ["@setDataFrame", "onMetaData", {..}]; some encoders: ["onMetaData", {..}].
        let mut it = values.into_iter().peekable();
        if it.peek().and_then(|v| v.as_str()) == Some("@setDataFrame") {
            it.next();
        }
        if it.next().as_ref().and_then(|v| v.as_str()) != Some("onMetaData") {
            return;
        }
        if let Some(obj) = it.next() {
            self.events.push_back(SessionEvent::Metadata(obj));
        }
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        match (&self.phase, cmd.name.as_str()) {
            (Phase::AwaitConnect, "connect") => self.on_connect(cmd),
            (Phase::AwaitConnect, name) => Err(SessionError::Protocol(format!(
                "command {name:?} before connect"
            ))),
            // `feed` stops decoding in these phases; reaching here would be a bug, not a
            // peer's fault, but it must not panic.
            (Phase::ConnectPending { .. } | Phase::Refused | Phase::Handshake(_), name) => Err(
                SessionError::Protocol(format!("command {name:?} while connect is undecided")),
            ),
            (_, "connect") => Err(SessionError::Protocol("second connect".into())),
            (_, "createStream") => {
                if self.next_stream_id > MAX_STREAMS {
                    return Err(SessionError::Protocol("too many streams".into()));
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.reply_result(cmd.transaction_id, Amf0Value::Null, vec![id.into()]);
                Ok(())
            }
            (_, "releaseStream") | (_, "FCPublish") => {
                // ffmpeg and OBS send these before publish and do not need an answer, but
                // librtmp-based encoders log an error without one.
                if cmd.transaction_id != 0.0 {
                    self.reply_result(
                        cmd.transaction_id,
                        Amf0Value::Null,
                        vec![Amf0Value::Undefined],
                    );
                }
                Ok(())
            }
            (_, "publish") => {
                let raw = cmd.arg(0).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                let (name, args) = split_query(&raw);
                let kind = cmd.arg(1).and_then(|v| v.as_str()).map(str::to_owned);
                self.events.push_back(SessionEvent::PublishRequest {
                    stream_id,
                    name,
                    args,
                    kind,
                });
                Ok(())
            }
            (_, "play") => {
                let raw = cmd.arg(0).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                let (name, args) = split_query(&raw);
                self.events.push_back(SessionEvent::PlayRequest {
                    stream_id,
                    name,
                    args,
                    start: cmd.arg(1).and_then(|v| v.as_f64()),
                    duration: cmd.arg(2).and_then(|v| v.as_f64()),
                    reset: cmd
                        .arg(3)
                        .and_then(|v| v.as_bool().or_else(|| v.as_f64().map(|n| n != 0.0))),
                });
                Ok(())
            }
            (_, "FCUnpublish") | (_, "closeStream") => {
                self.events.push_back(SessionEvent::StreamClosed {
                    stream_id: stream_id.max(1),
                });
                Ok(())
            }
            (_, "deleteStream") => {
                let id = cmd
                    .arg(0)
                    .and_then(|v| v.as_f64())
                    .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX))
                    .map(|n| n as u32)
                    .unwrap_or(stream_id);
                self.events
                    .push_back(SessionEvent::StreamClosed { stream_id: id });
                Ok(())
            }
            (_, "getStreamLength") => {
                if cmd.transaction_id != 0.0 {
                    self.reply_result(cmd.transaction_id, Amf0Value::Null, vec![0.0.into()]);
                }
                Ok(())
            }
            (_, "_checkbw") | (_, "_result") | (_, "_error") | (_, "onBWDone") | (_, "seek") => {
                Ok(())
            }
            (_, "pause") => {
                // `pause <txid> null <pause: bool> <position ms>`; `pauseRaw` is not sent by
                // any player still in use.
                let paused = cmd.arg(0).and_then(|v| v.as_bool()).unwrap_or(true);
                self.events.push_back(SessionEvent::Pause {
                    stream_id: stream_id.max(1),
                    paused,
                });
                Ok(())
            }
            (_, name @ ("receiveAudio" | "receiveVideo")) => {
                let on = cmd.arg(0).and_then(|v| v.as_bool()).unwrap_or(true);
                self.events.push_back(SessionEvent::Receive {
                    stream_id: stream_id.max(1),
                    video: name == "receiveVideo",
                    on,
                });
                Ok(())
            }
            (_, other) => {
                tracing::debug!(command = other, "ignoring unknown RTMP command");
                Ok(())
            }
        }
    }

    fn on_connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        let field = |k: &str| {
            cmd.object
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let raw_app = field("app").unwrap_or_default();
        let (app, app_args) = split_query(raw_app.trim_end_matches('/'));
        let object_encoding = cmd
            .object
            .get("objectEncoding")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        self.phase = Phase::ConnectPending {
            transaction_id: cmd.transaction_id,
            object_encoding,
        };
        self.events
            .push_back(SessionEvent::ConnectRequest(ConnectInfo {
                app,
                app_args,
                tc_url: field("tcUrl"),
                flash_ver: field("flashVer"),
                swf_url: field("swfUrl"),
                page_url: field("pageUrl"),
            }));
        Ok(())
    }

    /// Accepts the pending `connect` for `app` (the client's, or the name the admission gave
    /// it): window, bandwidth and chunk size, then `_result` `NetConnection.Connect.Success`.
    ///
    /// An app other than the configured one is refused like [`ServerSession::reject_connect`]
    /// and reported as [`SessionError::UnknownApp`]; the driver flushes and closes. Without a
    /// pending `connect` this does nothing.
    pub fn accept_connect(&mut self, app: &str) -> Result<(), SessionError> {
        let Phase::ConnectPending {
            transaction_id,
            object_encoding,
        } = self.phase
        else {
            tracing::debug!("accept_connect without a pending connect");
            return Ok(());
        };
        // `live/<namespace>`: encoders split `rtmp://host/live/region/north/news` into that app
        // and the last segment; the stream is the namespaced code `region/north/news`.
        // An empty configured app (an embedded server) takes any valid one.
        let any = self.config.app.is_empty() && valid_namespace(app);
        let ours = any
            || app == self.config.app
            || app
                .strip_prefix(self.config.app.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(valid_namespace);
        if !ours {
            self.reject_connect(&format!("unknown application {app:?}"));
            return Err(SessionError::UnknownApp(app.to_owned()));
        }
        self.send_control(
            message::TYPE_WINDOW_ACK_SIZE,
            message::window_ack_size(WINDOW),
        );
        self.send_control(
            message::TYPE_SET_PEER_BANDWIDTH,
            message::set_peer_bandwidth(WINDOW, message::LIMIT_DYNAMIC),
        );
        let size = self.config.out_chunk_size;
        self.send_control(message::TYPE_SET_CHUNK_SIZE, message::set_chunk_size(size));
        self.w.encoder.set_chunk_size(size);
        let mut props: Vec<(&str, Amf0Value)> = vec![
            ("fmsVer", "FMS/3,0,1,123".into()),
            ("capabilities", 31.0.into()),
        ];
        props.extend(crate::flv::server_connect_capabilities());
        let props = Amf0Value::object(props);
        let info = Amf0Value::object([
            ("level", "status".into()),
            ("code", "NetConnection.Connect.Success".into()),
            ("description", "Connection succeeded.".into()),
            ("objectEncoding", object_encoding.into()),
        ]);
        self.send_command(
            message::CSID_COMMAND,
            0,
            "_result",
            transaction_id,
            props,
            vec![info],
        );
        self.phase = Phase::Connected;
        Ok(())
    }

    /// Refuses the pending `connect` with `_error` `NetConnection.Connect.Rejected` and
    /// `reason` as its description; the driver flushes and closes. Without a pending
    /// `connect` this does nothing.
    pub fn reject_connect(&mut self, reason: &str) {
        let Phase::ConnectPending { transaction_id, .. } = self.phase else {
            tracing::debug!("reject_connect without a pending connect");
            return;
        };
        let info = Amf0Value::object([
            ("level", "error".into()),
            ("code", "NetConnection.Connect.Rejected".into()),
            ("description", reason.into()),
        ]);
        self.send_command(
            message::CSID_COMMAND,
            0,
            "_error",
            transaction_id,
            Amf0Value::Null,
            vec![info],
        );
        self.phase = Phase::Refused;
    }

    /// Confirms a publish: the client may start sending media.
    pub fn accept_publish(&mut self, stream_id: u32, name: &str) {
        self.send_user_control(message::user_control_stream_begin(stream_id));
        self.on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
    }

    /// Refuses a publish with `NetStream.Publish.BadName`; the driver closes afterwards.
    pub fn reject_publish(&mut self, stream_id: u32, description: &str) {
        self.on_status(stream_id, "error", "NetStream.Publish.BadName", description);
    }

    /// Confirms the end of a publish after `deleteStream`/`FCUnpublish`.
    pub fn unpublished(&mut self, stream_id: u32, name: &str) {
        self.on_status(
            stream_id,
            "status",
            "NetStream.Unpublish.Success",
            &format!("{name} is now unpublished."),
        );
    }

    /// Starts playback on `stream_id`: StreamBegin, `Play.Reset`, `Play.Start`, sample access.
    pub fn accept_play(&mut self, stream_id: u32, name: &str) {
        self.w.accept_play(stream_id, name);
    }

    /// Refuses a play with `NetStream.Play.StreamNotFound`; the driver closes afterwards.
    pub fn reject_play(&mut self, stream_id: u32, description: &str) {
        self.w.reject_play(stream_id, description);
    }

    /// Tells a player the publisher left (`Play.UnpublishNotify`, StreamEOF).
    pub fn play_unpublished(&mut self, stream_id: u32, name: &str) {
        self.w.play_unpublished(stream_id, name);
    }

    /// Tells a waiting player the publisher (re)started (`Play.PublishNotify`).
    pub fn play_published(&mut self, stream_id: u32, name: &str) {
        self.w.play_published(stream_id, name);
    }

    /// Sends `onMetaData` to a player.
    pub fn send_metadata(&mut self, stream_id: u32, metadata: Amf0Value) {
        self.w.send_metadata(stream_id, metadata);
    }

    /// Answers a player's pause or unpause (see [`MessageWriter::play_paused`]).
    pub fn play_paused(&mut self, stream_id: u32, paused: bool) {
        self.w.play_paused(stream_id, paused);
    }

    /// Sends an audio or video message (see [`MessageWriter::send_media`]).
    pub fn send_media(
        &mut self,
        stream_id: u32,
        video: bool,
        timestamp: u32,
        prefix: &[u8],
        payload: &Bytes,
    ) {
        self.w
            .send_media(stream_id, video, timestamp, prefix, payload);
    }

    fn on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.w.on_status(stream_id, level, code, description);
    }

    fn reply_result(&mut self, txid: f64, object: Amf0Value, args: Vec<Amf0Value>) {
        self.w.reply_result(txid, object, args);
    }

    fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        txid: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        self.w
            .send_command(csid, stream_id, name, txid, object, args);
    }

    fn send_user_control(&mut self, body: Bytes) {
        self.w.send_user_control(body);
    }

    fn send_control(&mut self, type_id: u8, body: Bytes) {
        self.w.send_control(type_id, body);
    }
}

/// The outgoing half of a connection: a chunk encoder and the bytes it queued. Players of a
/// stream are written by the stream's fan-out task through one of these each, apart from the
/// connection task that reads their commands.
#[derive(Debug, Default)]
pub struct MessageWriter {
    encoder: ChunkEncoder,
    out: OutQueue,
}

impl MessageWriter {
    /// A writer with chunk size 128 and nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer for a connection whose outgoing chunk size is already `chunk_size`, that
    /// starts every message with a full header (see [`ChunkEncoder::set_full_headers`]).
    pub fn full_headers(chunk_size: u32) -> Self {
        let mut w = Self::new();
        w.encoder.set_chunk_size(chunk_size);
        w.encoder.set_full_headers(true);
        w
    }

    /// Makes every later message start with a full header.
    pub fn set_full_headers(&mut self) {
        self.encoder.set_full_headers(true);
    }

    /// Outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    /// Bytes queued for the peer.
    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.out
    }

    /// Starts playback on `stream_id`: StreamBegin, `Play.Reset`, `Play.Start`, sample access.
    pub fn accept_play(&mut self, stream_id: u32, name: &str) {
        self.send_user_control(message::user_control_stream_is_recorded(stream_id));
        self.send_user_control(message::user_control_stream_begin(stream_id));
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            &format!("Playing and resetting {name}."),
        );
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            &format!("Started playing {name}."),
        );
        let access = message::data(&["|RtmpSampleAccess".into(), true.into(), true.into()]);
        self.send_raw(
            message::CSID_DATA,
            0,
            message::TYPE_DATA_AMF0,
            stream_id,
            &access,
        );
    }

    /// Refuses a play with `NetStream.Play.StreamNotFound`; the driver closes afterwards.
    pub fn reject_play(&mut self, stream_id: u32, description: &str) {
        self.on_status(
            stream_id,
            "error",
            "NetStream.Play.StreamNotFound",
            description,
        );
    }

    /// Tells a player the publisher left (`Play.UnpublishNotify`, StreamEOF).
    pub fn play_unpublished(&mut self, stream_id: u32, name: &str) {
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            &format!("{name} is now unpublished."),
        );
        self.send_user_control(message::user_control_stream_eof(stream_id));
    }

    /// Tells a player its play ended at its own request (`deleteStream`, `closeStream`):
    /// StreamEOF and `NetStream.Play.Stop`, as nginx-rtmp sends.
    pub fn play_stopped(&mut self, stream_id: u32, name: &str) {
        self.send_user_control(message::user_control_stream_eof(stream_id));
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.Stop",
            &format!("Stopped playing {name}."),
        );
    }

    /// `NetStream.Pause.Notify`, or StreamBegin and `NetStream.Unpause.Notify`.
    pub fn play_paused(&mut self, stream_id: u32, paused: bool) {
        if paused {
            self.on_status(stream_id, "status", "NetStream.Pause.Notify", "Paused live");
        } else {
            self.send_user_control(message::user_control_stream_begin(stream_id));
            self.on_status(
                stream_id,
                "status",
                "NetStream.Unpause.Notify",
                "Unpaused live",
            );
        }
    }

    /// Tells a waiting player the publisher (re)started (`Play.PublishNotify`).
    pub fn play_published(&mut self, stream_id: u32, name: &str) {
        self.send_user_control(message::user_control_stream_begin(stream_id));
        self.on_status(
            stream_id,
            "status",
            "NetStream.Play.PublishNotify",
            &format!("{name} is now published."),
        );
    }

    /// Sends `onMetaData` to a player.
    pub fn send_metadata(&mut self, stream_id: u32, metadata: Amf0Value) {
        let body = message::data(&["onMetaData".into(), metadata]);
        self.send_raw(
            message::CSID_DATA,
            0,
            message::TYPE_DATA_AMF0,
            stream_id,
            &body,
        );
    }

    /// Sends an audio or video message whose body is `prefix` (FLV tag header, a few bytes)
    /// followed by `payload`, without copying `payload`.
    pub fn send_media(
        &mut self,
        stream_id: u32,
        video: bool,
        timestamp: u32,
        prefix: &[u8],
        payload: &Bytes,
    ) {
        let header = MessageHeader {
            csid: if video {
                message::CSID_VIDEO
            } else {
                message::CSID_AUDIO
            },
            timestamp,
            type_id: if video {
                message::TYPE_VIDEO
            } else {
                message::TYPE_AUDIO
            },
            stream_id,
        };
        if let Err(e) = self
            .encoder
            .encode_with_prefix(&header, prefix, payload, &mut self.out)
        {
            // Only a frame over RTMP's 16 MiB message limit gets here; players skip it.
            tracing::warn!(error = %e, "frame not sent over RTMP");
        }
    }

    pub fn on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let body = message::on_status(level, code, description);
        self.send_raw(
            message::CSID_DATA,
            0,
            message::TYPE_COMMAND_AMF0,
            stream_id,
            &body,
        );
    }

    pub(crate) fn reply_result(&mut self, txid: f64, object: Amf0Value, args: Vec<Amf0Value>) {
        self.send_command(message::CSID_COMMAND, 0, "_result", txid, object, args);
    }

    pub fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        txid: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let body = message::command(name, txid, &object, &args);
        self.send_raw(csid, 0, message::TYPE_COMMAND_AMF0, stream_id, &body);
    }

    pub fn send_user_control(&mut self, body: Bytes) {
        self.send_control(message::TYPE_USER_CONTROL, body);
    }

    pub fn send_control(&mut self, type_id: u8, body: Bytes) {
        self.send_raw(message::CSID_PROTOCOL, 0, type_id, 0, &body);
    }

    pub fn send_raw(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        body: &Bytes,
    ) {
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        if let Err(e) = self.encoder.encode(&header, body, &mut self.out) {
            // Our own control messages are small and use fixed csids: this cannot happen.
            tracing::error!(error = %e, "control message not encoded");
        }
    }
}

/// Splits `name?a=1&b=2` into the name and its decoded query pairs.
pub fn split_query(raw: &str) -> (String, Vec<(String, String)>) {
    let (name, query) = match raw.split_once('?') {
        Some((n, q)) => (n, q),
        None => (raw, ""),
    };
    let args = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect();
    (name.to_owned(), args)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, and bytes that
/// are not UTF-8 become U+FFFD rather than an error.
fn percent_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// `a/b/c` of `[A-Za-z0-9_-]` names (the hub's code rule; the sans-I/O core has no hub).
fn valid_namespace(ns: &str) -> bool {
    ns.len() <= 128
        && ns.split('/').all(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Ingest, IngestOutput};
    use crate::play::Play;
    use media::{MediaInfo, TrackKind, VideoCodec};
    use std::sync::Arc;

    const C0C1: &[u8] = include_bytes!("../../../testdata/ffmpeg-c0c1.bin");
    const PUBLISH: &[u8] = include_bytes!("../../../testdata/ffmpeg-publish.bin");

    /// Everything queued in `out`, as one buffer.
    fn drain(out: &mut OutQueue) -> BytesMut {
        let mut buf = BytesMut::new();
        while !out.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let n = out.io_slices(&mut slices);
            let len: usize = slices[..n].iter().map(|s| s.len()).sum();
            for s in &slices[..n] {
                buf.extend_from_slice(s);
            }
            out.advance(len);
        }
        buf
    }

    /// Messages the server sent after the handshake reply.
    fn server_messages(s: &mut ServerSession, skip_handshake: bool) -> Vec<Message> {
        let mut buf = drain(s.out());
        if skip_handshake {
            let _ = buf.split_to(3073);
        }
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut msgs = Vec::new();
        while let Some(raw) = dec.decode(&mut buf).unwrap() {
            let m = Message::parse(raw.type_id, &raw.payload).unwrap();
            if let Message::SetChunkSize(n) = m {
                dec.set_chunk_size(n).unwrap();
            }
            msgs.push(m);
        }
        assert!(buf.is_empty(), "trailing partial message");
        msgs
    }

    fn status_codes(msgs: &[Message]) -> Vec<String> {
        msgs.iter()
            .filter_map(|m| match m {
                Message::Command(c) if c.name == "onStatus" => c
                    .arg(0)
                    .and_then(|o| o.get("code"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    fn handshaken() -> ServerSession {
        let mut s = ServerSession::new(SessionConfig::default(), 0, 1);
        let mut input = BytesMut::from(C0C1);
        input.extend_from_slice(&[0u8; 1536]);
        s.feed(&mut input).unwrap();
        assert!(s.handshake_done());
        assert!(input.is_empty());
        s
    }

    /// Feeds everything in `input`, accepting `connect` as given, the way the driver does:
    /// after answering a `connect` it feeds again, since nothing was decoded meanwhile.
    fn feed_accepting(s: &mut ServerSession, input: &mut BytesMut) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        loop {
            let before = input.len();
            s.feed(input).unwrap();
            let mut answered = false;
            while let Some(ev) = s.poll_event() {
                if let SessionEvent::ConnectRequest(info) = &ev {
                    s.accept_connect(&info.app).unwrap();
                    answered = true;
                }
                events.push(ev);
            }
            if !answered && input.len() == before {
                return events;
            }
        }
    }

    /// An encoded `connect` for `app`, with a transaction id of 1.
    fn connect_bytes(app: &str) -> BytesMut {
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let connect = message::command(
            "connect",
            1.0,
            &Amf0Value::object([
                ("app", app.into()),
                ("tcUrl", format!("rtmp://h/{app}").into()),
            ]),
            &[],
        );
        let h = MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: message::TYPE_COMMAND_AMF0,
            stream_id: 0,
        };
        enc.encode(&h, &connect, &mut q).unwrap();
        drain(&mut q)
    }

    /// `[name, transaction id, ...]` of every AMF0 command the server sent, decoded with the
    /// amf0 module straight from the message bodies.
    fn sent_commands(s: &mut ServerSession) -> Vec<Vec<Amf0Value>> {
        let mut buf = drain(s.out());
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut out = Vec::new();
        while let Some(raw) = dec.decode(&mut buf).unwrap() {
            match raw.type_id {
                message::TYPE_SET_CHUNK_SIZE => {
                    let n = u32::from_be_bytes(raw.payload[..4].try_into().unwrap());
                    dec.set_chunk_size(n).unwrap();
                }
                message::TYPE_COMMAND_AMF0 => {
                    out.push(crate::amf0::decode_all(&raw.payload).unwrap());
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn ffmpeg_publish_capture_drives_a_full_session() {
        let mut s = handshaken();
        let mut input = BytesMut::from(PUBLISH);
        // Feed in awkward pieces, as TCP would.
        let mut events = Vec::new();
        let mut pending = BytesMut::new();
        while !input.is_empty() {
            let n = input.len().min(333);
            pending.extend_from_slice(&input.split_to(n));
            for ev in feed_accepting(&mut s, &mut pending) {
                if let SessionEvent::PublishRequest {
                    stream_id, name, ..
                } = &ev
                {
                    s.accept_publish(*stream_id, name);
                }
                events.push(ev);
            }
        }
        assert!(pending.is_empty());
        let Some(SessionEvent::ConnectRequest(info)) = events.first() else {
            panic!("first event is connect: {events:?}")
        };
        assert_eq!(info.app, "live");
        assert!(info.tc_url.as_deref().unwrap().ends_with("/live"));
        assert!(events.iter().any(|e| matches!(e,
            SessionEvent::PublishRequest { stream_id: 1, name, .. } if name == "x")));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SessionEvent::Metadata(_)))
        );
        let videos = events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Video { .. }))
            .count();
        let audios = events
            .iter()
            .filter(|e| matches!(e, SessionEvent::Audio { .. }))
            .count();
        assert_eq!((videos, audios), (12, 46));
        assert!(matches!(
            events.last(),
            Some(SessionEvent::StreamClosed { stream_id: 1 })
        ));

        let msgs = server_messages(&mut s, true);
        assert!(msgs.contains(&Message::WindowAckSize(WINDOW)));
        assert!(msgs.contains(&Message::SetChunkSize(4096)));
        let results: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::Command(c) if c.name == "_result" => Some(c.transaction_id),
                _ => None,
            })
            .collect();
        // connect, releaseStream, FCPublish, createStream each get an answer.
        assert_eq!(results.len(), 4, "{msgs:?}");
        assert_eq!(status_codes(&msgs), vec!["NetStream.Publish.Start"]);
    }

    #[test]
    fn capture_through_ingest_announces_h264_and_aac() {
        let mut s = handshaken();
        let mut input = BytesMut::from(PUBLISH);
        let events = feed_accepting(&mut s, &mut input);
        assert!(input.is_empty());
        let mut ingest = Ingest::new();
        let mut out = Vec::new();
        for ev in events {
            match ev {
                SessionEvent::Metadata(m) => ingest.metadata(&m, &mut out),
                SessionEvent::Video { timestamp, payload } => {
                    ingest.video(timestamp, &payload, &mut out).unwrap()
                }
                SessionEvent::Audio { timestamp, payload } => {
                    ingest.audio(timestamp, &payload, &mut out).unwrap()
                }
                _ => {}
            }
        }
        let Some(IngestOutput::Announce(info)) = out.first() else {
            panic!("tracks first: {out:?}")
        };
        let avc = info.avc().unwrap();
        assert_eq!((avc.width, avc.height), (64, 48));
        assert_eq!(info.aac().unwrap().sample_rate, 44100);
        let frames: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        // 12 video tags = sequence header + 10 frames + ffmpeg's end-of-sequence tag;
        // 46 audio tags = sequence header + 45 frames.
        assert_eq!(frames.len(), 10 + 45, "sequence headers are not frames");
        let first_video = frames.iter().find(|f| f.track == TrackKind::Video).unwrap();
        assert!(first_video.keyframe);
        for track in [TrackKind::Video, TrackKind::Audio] {
            let dts: Vec<_> = frames
                .iter()
                .filter(|f| f.track == track)
                .map(|f| f.dts)
                .collect();
            assert!(
                dts.windows(2).all(|w| w[0] <= w[1]),
                "{track:?} dts monotonic"
            );
        }
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, IngestOutput::Announce(_)))
                .count(),
            1
        );
    }

    #[test]
    fn connect_waits_for_the_driver_and_commands_sent_meanwhile_wait_too() {
        let mut s = handshaken();
        let _ = drain(s.out());
        // connect, then createStream and publish pipelined behind it (no client waits for
        // `_result` this way, but nothing forbids it).
        let mut input = connect_bytes("live?token=t1");
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let h = |stream_id| MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: message::TYPE_COMMAND_AMF0,
            stream_id,
        };
        let create = message::command("createStream", 2.0, &Amf0Value::Null, &[]);
        enc.encode(&h(0), &create, &mut q).unwrap();
        let publish = message::command("publish", 0.0, &Amf0Value::Null, &["cam".into()]);
        enc.encode(&h(1), &publish, &mut q).unwrap();
        let behind = drain(&mut q);
        input.extend_from_slice(&behind);

        s.feed(&mut input).unwrap();
        let Some(SessionEvent::ConnectRequest(info)) = s.poll_event() else {
            panic!("connect request expected")
        };
        assert_eq!(info.app, "live");
        assert_eq!(info.app_args, vec![("token".into(), "t1".into())]);
        assert_eq!(info.tc_url.as_deref(), Some("rtmp://h/live?token=t1"));
        assert!(s.poll_event().is_none(), "nothing is decoded past connect");
        assert_eq!(
            &input[..],
            &behind[..],
            "the pipelined commands stay in the buffer"
        );
        assert!(!s.can_feed());
        // Feeding while undecided is harmless and consumes nothing.
        s.feed(&mut input).unwrap();
        assert_eq!(input.len(), behind.len());
        assert!(
            s.out().is_empty(),
            "connect is not answered by the session itself"
        );

        s.accept_connect("live").unwrap();
        assert!(s.can_feed());
        s.feed(&mut input).unwrap();
        assert!(input.is_empty());
        assert!(matches!(
            s.poll_event(),
            Some(SessionEvent::PublishRequest { stream_id: 1, name, .. }) if name == "cam"
        ));
        let cmds = sent_commands(&mut s);
        let answers: Vec<_> = cmds
            .iter()
            .map(|c| (c[0].as_str().unwrap(), c[1].as_f64().unwrap()))
            .collect();
        assert_eq!(answers, vec![("_result", 1.0), ("_result", 2.0)]);
        assert_eq!(
            cmds[0][3].get("code").and_then(|v| v.as_str()),
            Some("NetConnection.Connect.Success")
        );
    }

    #[test]
    fn rejected_connect_gets_error_and_no_result() {
        let mut s = handshaken();
        let _ = drain(s.out());
        let mut input = connect_bytes("live");
        s.feed(&mut input).unwrap();
        assert!(matches!(
            s.poll_event(),
            Some(SessionEvent::ConnectRequest(_))
        ));
        s.reject_connect("token expired");
        let cmds = sent_commands(&mut s);
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        let c = &cmds[0];
        assert_eq!(c[0].as_str(), Some("_error"));
        assert_eq!(c[1].as_f64(), Some(1.0), "answers connect's transaction");
        assert!(c[2].is_null());
        assert_eq!(c[3].get("level").and_then(|v| v.as_str()), Some("error"));
        assert_eq!(
            c[3].get("code").and_then(|v| v.as_str()),
            Some("NetConnection.Connect.Rejected")
        );
        assert_eq!(
            c[3].get("description").and_then(|v| v.as_str()),
            Some("token expired")
        );
        // Refused for good: a late accept or more input changes nothing.
        s.accept_connect("live").unwrap();
        let mut more = connect_bytes("live");
        s.feed(&mut more).unwrap();
        assert!(s.poll_event().is_none());
        assert!(s.out().is_empty());
    }

    #[test]
    fn wrong_app_is_rejected_with_error() {
        let mut s = handshaken();
        let _ = drain(s.out());
        let mut input = connect_bytes("other");
        s.feed(&mut input).unwrap();
        let Some(SessionEvent::ConnectRequest(info)) = s.poll_event() else {
            panic!("connect request expected")
        };
        // The admission let it through unchanged: still not our app.
        assert!(matches!(
            s.accept_connect(&info.app),
            Err(SessionError::UnknownApp(app)) if app == "other"
        ));
        let cmds = sent_commands(&mut s);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0][0].as_str(), Some("_error"));
        assert_eq!(
            cmds[0][3].get("code").and_then(|v| v.as_str()),
            Some("NetConnection.Connect.Rejected")
        );
    }

    #[test]
    fn app_renamed_by_the_admission_is_checked_not_the_clients() {
        let mut s = handshaken();
        let _ = drain(s.out());
        let mut input = connect_bytes("legacy");
        s.feed(&mut input).unwrap();
        assert!(matches!(
            s.poll_event(),
            Some(SessionEvent::ConnectRequest(i)) if i.app == "legacy"
        ));
        s.accept_connect("live").unwrap();
        let cmds = sent_commands(&mut s);
        assert_eq!(cmds[0][0].as_str(), Some("_result"));
    }

    #[test]
    fn app_query_is_split_off() {
        let (name, args) = split_query("demo?key=a%20b&x&y=1+2");
        assert_eq!(name, "demo");
        assert_eq!(
            args,
            vec![
                ("key".to_owned(), "a b".to_owned()),
                ("x".to_owned(), String::new()),
                ("y".to_owned(), "1 2".to_owned())
            ]
        );
        assert_eq!(split_query("a%").0, "a%");
        assert_eq!(split_query("k?v=%zz").1[0].1, "%zz");
    }

    #[test]
    fn media_before_connect_is_a_protocol_error() {
        let mut s = handshaken();
        let mut enc = ChunkEncoder::new();
        let mut q = OutQueue::new();
        let h = MessageHeader {
            csid: 6,
            timestamp: 0,
            type_id: message::TYPE_VIDEO,
            stream_id: 1,
        };
        enc.encode(&h, &Bytes::from_static(&[0x17, 1, 0, 0, 0]), &mut q)
            .unwrap();
        let mut input = drain(&mut q);
        assert!(matches!(s.feed(&mut input), Err(SessionError::Protocol(_))));
    }

    fn avc_info() -> Arc<MediaInfo> {
        let record = Bytes::from_static(include_bytes!(
            "../../../testdata/h264-320x240-baseline.avcc"
        ));
        Arc::new(MediaInfo {
            video_metadata: None,
            video: Some(VideoCodec::H264(media::AvcConfig::parse(record).unwrap())),
            audio: None,
            framerate: Some(25.0),
        })
    }

    fn video(dts_ms: i64, key: bool) -> media::Frame {
        media::Frame {
            track: TrackKind::Video,
            dts: media::ms_to_ticks(dts_ms),
            pts: media::ms_to_ticks(dts_ms + 80),
            keyframe: key,
            payload: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        }
    }

    #[test]
    fn play_sends_status_metadata_headers_then_frames() {
        let mut s = handshaken();
        let _ = drain(s.out());
        let mut play = Play::new(1, "demo");
        play.tracks(s.writer(), avc_info(), 7);
        play.frame(s.writer(), &video(1000, true));
        let msgs = server_messages(&mut s, false);
        assert_eq!(
            status_codes(&msgs),
            vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
        );
        let meta = msgs.iter().find_map(|m| match m {
            Message::Data { values } if values[0].as_str() == Some("onMetaData") => {
                Some(values[1].clone())
            }
            _ => None,
        });
        let meta = meta.expect("onMetaData sent");
        assert_eq!(meta.get("width").and_then(|v| v.as_f64()), Some(320.0));
        let videos: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                Message::Video(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(videos.len(), 2);
        assert_eq!(&videos[0][..2], &[0x17, 0], "AVC sequence header first");
        assert_eq!(
            &videos[1][..5],
            &[0x17, 1, 0, 0, 80],
            "keyframe with 80 ms CTS"
        );
        assert_eq!(&videos[1][5..], &[0, 0, 0, 2, 0x65, 0x88]);
    }

    #[test]
    fn play_keeps_timestamps_monotonic_across_republish() {
        let mut s = handshaken();
        let _ = drain(s.out());
        let mut play = Play::new(1, "demo");
        play.tracks(s.writer(), avc_info(), 1);
        play.frame(s.writer(), &video(50_000, true));
        play.end(s.writer());
        // The new publisher starts its clock at zero.
        play.tracks(s.writer(), avc_info(), 2);
        play.frame(s.writer(), &video(0, true));
        play.frame(s.writer(), &video(40, false));

        let mut buf = drain(s.out());
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut stamps = Vec::new();
        let mut codes = Vec::new();
        while let Some(raw) = dec.decode(&mut buf).unwrap() {
            match Message::parse(raw.type_id, &raw.payload).unwrap() {
                Message::Video(b) if b[1] == 1 => stamps.push(raw.timestamp),
                Message::SetChunkSize(n) => dec.set_chunk_size(n).unwrap(),
                m => codes.extend(status_codes(&[m])),
            }
        }
        assert_eq!(stamps, vec![50_000, 50_001, 50_041]);
        assert!(codes.contains(&"NetStream.Play.UnpublishNotify".to_owned()));
        assert!(codes.contains(&"NetStream.Play.PublishNotify".to_owned()));
    }
}
