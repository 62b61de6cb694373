//! Client side of one RTMP connection, sans I/O: bytes in, [`ClientEvent`]s and bytes out.
//!
//! Used by the load tool and by push workers. The session runs the whole dialogue a client
//! needs: handshake, `connect`, `createStream` (preceded by `releaseStream`/`FCPublish` for a
//! publisher, as ffmpeg and OBS do), then `publish` or `play`. It answers protocol control on
//! its own (acknowledgements, pings, Set Chunk Size) and reports what the driver needs to know
//! as events. The driver writes [`ClientSession::out`] to the socket and feeds what it reads.
//!
//! Everything is bounded: the decoder by [`DecoderLimits`], the event queue by
//! [`MAX_EVENTS`] (`feed` stops decoding when it is full and leaves the rest of the input for
//! the next call), outstanding transactions by [`MAX_PENDING`]. No input makes it panic.

use crate::amf0::Amf0Value;
use crate::chunk::{
    ChunkDecoder, ChunkEncoder, DecoderLimits, MessageHeader, OutQueue, RawMessage,
};
use crate::handshake::{ClientHandshake, HandshakeStatus};
use crate::message::{self, Command, Message, UserControl};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Events queued before the driver must drain them with [`ClientSession::poll_event`].
pub const MAX_EVENTS: usize = 1024;
/// Transactions awaiting a `_result`/`_error`; the session itself sends at most four at once.
pub const MAX_PENDING: usize = 8;
/// Buffer length a player announces (ffmpeg's default `rtmp_buffer`, in ms).
const PLAY_BUFFER_MS: u32 = 3000;
/// Window acknowledgement size we announce to the server after `connect` succeeds (ffmpeg's).
const CLIENT_WINDOW: u32 = 2_500_000;
/// Longest status or error text kept in an event; servers may send anything.
const MAX_TEXT: usize = 1024;

/// Settings of a client session.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Application name (`live` in `rtmp://host/live/code`), sent as `connect.app`.
    pub app: String,
    /// `tcUrl`: the URL up to and including the app (`rtmp://host:1935/live`).
    pub tc_url: String,
    /// `flashVer`; encoders send `FMLE/3.0 (compatible; ...)`.
    pub flash_ver: String,
    /// Chunk size we send with (announced with Set Chunk Size before `connect`).
    pub out_chunk_size: u32,
    /// Limits applied to what the server sends.
    pub limits: DecoderLimits,
}

impl ClientConfig {
    /// A config for `app` at `tc_url` with ferrocast's flashVer, 4096-byte chunks and the
    /// default decoder limits.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            flash_ver: "FMLE/3.0 (compatible; ferrocast)".into(),
            out_chunk_size: 4096,
            limits: DecoderLimits::default(),
        }
    }
}

/// What the client does once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRole {
    /// Publish under `name` (may carry a `?query`, e.g. a stream key's token).
    Publish {
        /// Stream name as sent in `publish`.
        name: String,
    },
    /// Play `name`.
    Play {
        /// Stream name as sent in `play`.
        name: String,
    },
}

/// What the driver learns from the session.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// `NetStream.Publish.Start`: media may be sent.
    Publishing,
    /// `NetStream.Play.Start`: media will arrive.
    Playing,
    /// Every `onStatus` the server sends, including the ones above.
    Status {
        /// `status`, `warning` or `error`.
        level: String,
        /// E.g. `NetStream.Publish.BadName`.
        code: String,
        /// Free text from the server.
        description: String,
    },
    /// An `_error` reply; `command` names the command it answers (`connect`, ...).
    Error {
        /// The command that failed, or `unknown` for an unexpected transaction id.
        command: String,
        /// `description` (or `code`) of the error info object.
        description: String,
    },
    /// `onMetaData` sent to a player.
    Metadata(Amf0Value),
    /// An FLV audio tag body.
    Audio {
        /// Message timestamp in ms (wrapping).
        timestamp: u32,
        /// Tag body, shared with the receive buffer.
        payload: Bytes,
    },
    /// An FLV video tag body.
    Video {
        /// Message timestamp in ms (wrapping).
        timestamp: u32,
        /// Tag body, shared with the receive buffer.
        payload: Bytes,
    },
}

/// Where a client session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Exchanging C0C1/S0S1S2/C2.
    Handshake,
    /// `connect` sent, waiting for its `_result`.
    Connecting,
    /// `createStream` sent, waiting for the stream id.
    CreatingStream,
    /// `publish` or `play` sent, waiting for `onStatus`.
    Starting,
    /// `NetStream.Publish.Start` received.
    Publishing,
    /// `NetStream.Play.Start` received.
    Playing,
    /// Closed by [`ClientSession::close`], or refused by the server.
    Closed,
}

/// A fatal protocol error; the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad handshake from the server.
    #[error("handshake: {0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    /// Bad chunk stream from the server.
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::chunk::ChunkError),
    /// Bad message payload from the server (at chunk stream byte `offset`).
    #[error("message at offset {offset}: {source}")]
    Message {
        /// The parse error.
        source: crate::message::MessageError,
        /// Bytes consumed after the handshake when the message completed.
        offset: u64,
    },
}

/// Internal lifecycle with the data each phase needs.
#[derive(Debug)]
enum Phase {
    Handshake(ClientHandshake),
    Connecting,
    CreatingStream,
    Starting { stream_id: u32 },
    Publishing { stream_id: u32 },
    Playing { stream_id: u32 },
    Closed,
}

/// What an outstanding transaction id was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Connect,
    ReleaseStream,
    FcPublish,
    CreateStream,
}

impl Pending {
    fn name(self) -> &'static str {
        match self {
            Pending::Connect => "connect",
            Pending::ReleaseStream => "releaseStream",
            Pending::FcPublish => "FCPublish",
            Pending::CreateStream => "createStream",
        }
    }
}

/// Client side of one RTMP connection.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    role: ClientRole,
    phase: Phase,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: OutQueue,
    events: VecDeque<ClientEvent>,
    pending: Vec<(f64, Pending)>,
    next_txid: f64,
    /// Window after which we owe the server an acknowledgement (0 = none asked).
    peer_ack_window: u32,
    last_ack_sent: u64,
    /// Media handed to `send_media`/`send_raw_media` outside the publishing state.
    media_dropped: u64,
}

impl ClientSession {
    /// Starts a session; C0C1 is queued in [`Self::out`] right away.
    pub fn new(config: ClientConfig, role: ClientRole, epoch_ms: u32, seed: u64) -> Self {
        let mut hs = ClientHandshake::new(epoch_ms, seed);
        let mut out = OutQueue::new();
        if let Some(c0c1) = hs.poll_transmit() {
            out.push(c0c1);
        }
        let decoder = ChunkDecoder::new(config.limits);
        ClientSession {
            config,
            role,
            phase: Phase::Handshake(hs),
            decoder,
            encoder: ChunkEncoder::new(),
            out,
            events: VecDeque::new(),
            pending: Vec::new(),
            next_txid: 1.0,
            peer_ack_window: 0,
            last_ack_sent: 0,
            media_dropped: 0,
        }
    }

    /// Where the session is in its life.
    pub fn state(&self) -> ClientState {
        match self.phase {
            Phase::Handshake(_) => ClientState::Handshake,
            Phase::Connecting => ClientState::Connecting,
            Phase::CreatingStream => ClientState::CreatingStream,
            Phase::Starting { .. } => ClientState::Starting,
            Phase::Publishing { .. } => ClientState::Publishing,
            Phase::Playing { .. } => ClientState::Playing,
            Phase::Closed => ClientState::Closed,
        }
    }

    /// The message stream id the server gave us, once `createStream` succeeded.
    pub fn stream_id(&self) -> Option<u32> {
        match self.phase {
            Phase::Starting { stream_id }
            | Phase::Publishing { stream_id }
            | Phase::Playing { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// Bytes waiting to be written to the server.
    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.out
    }

    /// Next event for the driver.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Total bytes consumed from the server after the handshake.
    pub fn bytes_received(&self) -> u64 {
        self.decoder.bytes_consumed()
    }

    /// Media messages dropped because they were sent while not publishing.
    pub fn media_dropped(&self) -> u64 {
        self.media_dropped
    }

    /// Consumes what it can from `input`; incomplete data stays for the next call, and so does
    /// everything after the message that filled the event queue.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<(), ClientError> {
        if let Phase::Handshake(hs) = &mut self.phase {
            let status = hs.feed(input)?;
            if let Some(c2) = hs.poll_transmit() {
                self.out.push(c2);
            }
            if status != HandshakeStatus::Done {
                return Ok(());
            }
            self.start_connect();
        }
        while self.events.len() < MAX_EVENTS {
            let Some(raw) = self.decoder.decode(input)? else {
                break;
            };
            self.on_message(raw)?;
        }
        self.maybe_ack();
        Ok(())
    }

    /// Sends `@setDataFrame onMetaData <values>`; dropped unless publishing.
    pub fn send_metadata(&mut self, values: Amf0Value) {
        let Phase::Publishing { stream_id } = self.phase else {
            self.media_dropped += 1;
            return;
        };
        let body = message::data(&["@setDataFrame".into(), "onMetaData".into(), values]);
        self.send_raw(
            message::CSID_DATA,
            0,
            message::TYPE_DATA_AMF0,
            stream_id,
            &body,
        );
    }

    /// Sends an audio or video message whose body is `prefix` (an FLV tag header, a few bytes)
    /// followed by `payload`, without copying `payload`; dropped unless publishing.
    pub fn send_media(&mut self, video: bool, timestamp: u32, prefix: &[u8], payload: &Bytes) {
        let Phase::Publishing { stream_id } = self.phase else {
            self.media_dropped += 1;
            return;
        };
        let header = media_header(video, timestamp, stream_id);
        if let Err(e) = self
            .encoder
            .encode_with_prefix(&header, prefix, payload, &mut self.out)
        {
            // Only a frame over RTMP's 16 MiB message limit gets here.
            self.media_dropped += 1;
            tracing::warn!(error = %e, "frame not sent over RTMP");
        }
    }

    /// Sends a complete FLV tag body as an audio or video message; dropped unless publishing.
    pub fn send_raw_media(&mut self, video: bool, timestamp: u32, body: &Bytes) {
        self.send_media(video, timestamp, &[], body);
    }

    /// Sends a command on the play or publish stream, as players send `pause`,
    /// `receiveAudio` and `receiveVideo`; dropped before the stream exists.
    pub fn stream_command(&mut self, name: &str, args: Vec<Amf0Value>) {
        if let Some(stream_id) = self.stream_id() {
            self.send_command(message::CSID_COMMAND, stream_id, name, args);
        }
    }

    /// Ends the session politely: `FCUnpublish` + `deleteStream` for a publisher,
    /// `deleteStream` for a player. The driver should flush [`Self::out`] and close.
    pub fn close(&mut self) {
        if let Some(stream_id) = self.stream_id() {
            if let ClientRole::Publish { name } = &self.role {
                let arg = Amf0Value::from(name.as_str());
                self.send_command(message::CSID_COMMAND, 0, "FCUnpublish", vec![arg]);
            }
            self.send_command(
                message::CSID_COMMAND,
                0,
                "deleteStream",
                vec![Amf0Value::from(stream_id)],
            );
        }
        self.phase = Phase::Closed;
    }

    fn start_connect(&mut self) {
        let size = self.config.out_chunk_size.clamp(1, message::MAX_CHUNK_SIZE);
        self.send_control(message::TYPE_SET_CHUNK_SIZE, message::set_chunk_size(size));
        self.encoder.set_chunk_size(size);
        let c = &self.config;
        let mut props: Vec<(&str, Amf0Value)> = vec![
            ("app", c.app.as_str().into()),
            ("type", "nonprivate".into()),
            ("flashVer", c.flash_ver.as_str().into()),
            ("tcUrl", c.tc_url.as_str().into()),
            ("fourCcList", crate::flv::client_fourcc_list()),
        ];
        if matches!(self.role, ClientRole::Play { .. }) {
            // What ffmpeg sends when playing; some servers look at the codec masks.
            props.extend([
                ("fpad", false.into()),
                ("capabilities", 15.0.into()),
                ("audioCodecs", 4071.0.into()),
                ("videoCodecs", 252.0.into()),
                ("videoFunction", 1.0.into()),
            ]);
        }
        let object = Amf0Value::object(props);
        let txid = self.expect(Pending::Connect);
        let body = message::command("connect", txid, &object, &[]);
        self.send_raw(
            message::CSID_COMMAND,
            0,
            message::TYPE_COMMAND_AMF0,
            0,
            &body,
        );
        self.phase = Phase::Connecting;
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

    fn on_message(&mut self, raw: RawMessage) -> Result<(), ClientError> {
        let msg =
            Message::parse(raw.type_id, &raw.payload).map_err(|source| ClientError::Message {
                source,
                offset: self.decoder.bytes_consumed(),
            })?;
        match msg {
            Message::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            Message::Abort { csid } => self.decoder.abort(csid),
            Message::WindowAckSize(size) => self.peer_ack_window = size,
            Message::Acknowledgement { .. } | Message::SetPeerBandwidth { .. } => {}
            Message::UserControl(UserControl::PingRequest(t)) => {
                self.send_control(message::TYPE_USER_CONTROL, message::ping_response(t));
            }
            Message::UserControl(_) => {}
            Message::Audio(payload) => self.events.push_back(ClientEvent::Audio {
                timestamp: raw.timestamp,
                payload,
            }),
            Message::Video(payload) => self.events.push_back(ClientEvent::Video {
                timestamp: raw.timestamp,
                payload,
            }),
            Message::Data { values } => self.on_data(values),
            Message::Command(cmd) => self.on_command(cmd),
            Message::Other { type_id, .. } => {
                tracing::debug!(type_id, "ignoring RTMP message type");
            }
        }
        Ok(())
    }

    fn on_data(&mut self, values: Vec<Amf0Value>) {
        // Servers send ["onMetaData", {..}]; relays sometimes keep ["@setDataFrame", ...].
        let mut it = values.into_iter().peekable();
        if it.peek().and_then(|v| v.as_str()) == Some("@setDataFrame") {
            it.next();
        }
        if it.next().as_ref().and_then(|v| v.as_str()) != Some("onMetaData") {
            return;
        }
        if let Some(obj) = it.next() {
            self.events.push_back(ClientEvent::Metadata(obj));
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd.name.as_str() {
            "_result" => self.on_result(cmd),
            "_error" => self.on_error(cmd),
            "onStatus" => self.on_status(cmd),
            // onBWDone, onFCPublish, |RtmpSampleAccess, ... need no answer.
            other => tracing::debug!(command = other, "ignoring RTMP command"),
        }
    }

    fn take_pending(&mut self, txid: f64) -> Option<Pending> {
        let i = self.pending.iter().position(|(t, _)| *t == txid)?;
        Some(self.pending.swap_remove(i).1)
    }

    fn on_result(&mut self, cmd: Command) {
        match self.take_pending(cmd.transaction_id) {
            Some(Pending::Connect) if matches!(self.phase, Phase::Connecting) => {
                self.events.push_back(ClientEvent::Connected);
                self.send_control(
                    message::TYPE_WINDOW_ACK_SIZE,
                    message::window_ack_size(CLIENT_WINDOW),
                );
                if let ClientRole::Publish { name } = &self.role {
                    let arg = Amf0Value::from(name.as_str());
                    let t = self.expect(Pending::ReleaseStream);
                    self.send_txn(t, "releaseStream", vec![arg.clone()]);
                    let t = self.expect(Pending::FcPublish);
                    self.send_txn(t, "FCPublish", vec![arg]);
                }
                let t = self.expect(Pending::CreateStream);
                self.send_txn(t, "createStream", Vec::new());
                self.phase = Phase::CreatingStream;
            }
            Some(Pending::CreateStream) if matches!(self.phase, Phase::CreatingStream) => {
                let id = cmd
                    .arg(0)
                    .and_then(|v| v.as_f64())
                    .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX))
                    .map_or(message::MEDIA_STREAM_ID, |n| n as u32);
                self.start_stream(id);
            }
            // releaseStream/FCPublish answers, or replies that arrive after close.
            _ => {}
        }
    }

    fn start_stream(&mut self, stream_id: u32) {
        match &self.role {
            ClientRole::Publish { name } => {
                let args = vec![name.as_str().into(), "live".into()];
                self.send_command(message::CSID_DATA, stream_id, "publish", args);
            }
            ClientRole::Play { name } => {
                let args = vec![name.as_str().into(), (-2.0).into()];
                self.send_command(message::CSID_DATA, stream_id, "play", args);
                let body = message::user_control(&UserControl::SetBufferLength {
                    stream_id,
                    ms: PLAY_BUFFER_MS,
                });
                self.send_control(message::TYPE_USER_CONTROL, body);
            }
        }
        self.phase = Phase::Starting { stream_id };
    }

    fn on_error(&mut self, cmd: Command) {
        let pending = self.take_pending(cmd.transaction_id);
        let info = cmd.arg(0);
        let text = |k: &str| info.and_then(|i| i.get(k)).and_then(|v| v.as_str());
        let description = text("description").or_else(|| text("code")).unwrap_or("");
        self.events.push_back(ClientEvent::Error {
            command: pending.map_or("unknown", Pending::name).to_owned(),
            description: clip(description),
        });
        // Without a connection or a stream there is nothing left to do; releaseStream and
        // FCPublish errors are harmless (several servers do not know them).
        if matches!(pending, Some(Pending::Connect | Pending::CreateStream)) {
            self.phase = Phase::Closed;
        }
    }

    fn on_status(&mut self, cmd: Command) {
        // The info object is the first argument; a few servers put it in the command object.
        let info = cmd
            .arg(0)
            .filter(|v| !v.is_null())
            .unwrap_or(&cmd.object)
            .clone();
        let text = |k: &str| clip(info.get(k).and_then(|v| v.as_str()).unwrap_or(""));
        let (level, code, description) = (text("level"), text("code"), text("description"));
        if let Phase::Starting { stream_id } = self.phase {
            match (code.as_str(), &self.role) {
                ("NetStream.Publish.Start", ClientRole::Publish { .. }) => {
                    self.phase = Phase::Publishing { stream_id };
                    self.events.push_back(ClientEvent::Publishing);
                }
                ("NetStream.Play.Start", ClientRole::Play { .. }) => {
                    self.phase = Phase::Playing { stream_id };
                    self.events.push_back(ClientEvent::Playing);
                }
                _ if level == "error" => self.phase = Phase::Closed,
                _ => {}
            }
        }
        self.events.push_back(ClientEvent::Status {
            level,
            code,
            description,
        });
    }

    /// Allocates a transaction id for `what`, forgetting the oldest if too many are open.
    fn expect(&mut self, what: Pending) -> f64 {
        let txid = self.next_txid;
        self.next_txid += 1.0;
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending.push((txid, what));
        txid
    }

    /// A connection-level command with a transaction id that expects a reply.
    fn send_txn(&mut self, txid: f64, name: &str, args: Vec<Amf0Value>) {
        let body = message::command(name, txid, &Amf0Value::Null, &args);
        self.send_raw(
            message::CSID_COMMAND,
            0,
            message::TYPE_COMMAND_AMF0,
            0,
            &body,
        );
    }

    /// A command that expects no `_result` (publish, play, deleteStream, FCUnpublish).
    fn send_command(&mut self, csid: u32, stream_id: u32, name: &str, args: Vec<Amf0Value>) {
        let txid = self.next_txid;
        self.next_txid += 1.0;
        let body = message::command(name, txid, &Amf0Value::Null, &args);
        self.send_raw(csid, 0, message::TYPE_COMMAND_AMF0, stream_id, &body);
    }

    fn send_control(&mut self, type_id: u8, body: Bytes) {
        self.send_raw(message::CSID_PROTOCOL, 0, type_id, 0, &body);
    }

    fn send_raw(&mut self, csid: u32, timestamp: u32, type_id: u8, stream_id: u32, body: &Bytes) {
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        if let Err(e) = self.encoder.encode(&header, body, &mut self.out) {
            // Fixed csids and small bodies (metadata is the largest): only absurd metadata.
            tracing::warn!(error = %e, "RTMP message not encoded");
        }
    }
}

fn media_header(video: bool, timestamp: u32, stream_id: u32) -> MessageHeader {
    MessageHeader {
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
    }
}

/// Copies at most [`MAX_TEXT`] bytes of server-provided text, on a char boundary.
fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;

    fn config() -> ClientConfig {
        ClientConfig::new("live", "rtmp://127.0.0.1:1935/live")
    }

    /// Takes everything queued in `q` as one buffer, the way a driver's `writev` would.
    fn drain(q: &mut OutQueue) -> Vec<u8> {
        let mut v = Vec::with_capacity(q.len_bytes());
        while !q.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); 16];
                let n = q.io_slices(&mut slices);
                let mut w = 0;
                for s in &slices[..n] {
                    v.extend_from_slice(s);
                    w += s.len();
                }
                w
            };
            q.advance(written);
        }
        v
    }

    #[test]
    fn new_queues_c0c1() {
        let mut c = ClientSession::new(config(), ClientRole::Play { name: "x".into() }, 1, 2);
        assert_eq!(c.state(), ClientState::Handshake);
        let out = drain(c.out());
        assert_eq!(out.len(), 1537);
        assert_eq!(out[0], 3);
    }

    #[test]
    fn garbage_never_panics() {
        // A crude deterministic fuzz: random bytes after a valid S0S1S2, in varying splits.
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let role = if round % 2 == 0 {
                ClientRole::Play { name: "a".into() }
            } else {
                ClientRole::Publish { name: "b".into() }
            };
            let mut c = ClientSession::new(config(), role, 0, round);
            let mut input = BytesMut::new();
            input.extend_from_slice(&[3u8]);
            input.extend_from_slice(&[0u8; 2 * 1536]);
            let len = (next() % 4096) as usize;
            for _ in 0..len {
                input.extend_from_slice(&[(next() & 0xff) as u8]);
            }
            for _ in 0..10 {
                if c.feed(&mut input).is_err() {
                    break;
                }
                while c.poll_event().is_some() {}
            }
            c.close();
            assert_eq!(c.state(), ClientState::Closed);
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(MAX_TEXT);
        let c = clip(&s);
        assert!(c.len() <= MAX_TEXT && c.chars().all(|ch| ch == 'é'));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn media_before_publishing_is_dropped() {
        let mut c = ClientSession::new(config(), ClientRole::Publish { name: "x".into() }, 0, 0);
        drain(c.out());
        c.send_raw_media(true, 0, &Bytes::from_static(&[0x17, 1, 0, 0, 0]));
        c.send_metadata(Amf0Value::Null);
        assert!(c.out().is_empty());
        assert_eq!(c.media_dropped(), 2);
    }

    #[cfg(feature = "server")]
    mod with_server {
        use super::*;
        use crate::session::{ServerSession, SessionConfig, SessionEvent};

        /// What the fake server driver does with a publish or play request.
        #[derive(Clone, Copy, PartialEq)]
        enum Answer {
            Accept,
            Reject,
            /// Refuse `connect` itself, as an admission hook would.
            RefuseConnect,
        }

        struct Pair {
            client: ClientSession,
            server: ServerSession,
            c_in: BytesMut,
            s_in: BytesMut,
            server_events: Vec<SessionEvent>,
            client_events: Vec<ClientEvent>,
            server_failed: bool,
            answer: Answer,
        }

        impl Pair {
            fn new(role: ClientRole, client_app: &str) -> Self {
                let mut cfg = config();
                cfg.app = client_app.into();
                Pair {
                    client: ClientSession::new(cfg, role, 100, 1),
                    server: ServerSession::new(SessionConfig::default(), 200, 2),
                    c_in: BytesMut::new(),
                    s_in: BytesMut::new(),
                    server_events: Vec::new(),
                    client_events: Vec::new(),
                    server_failed: false,
                    answer: Answer::Accept,
                }
            }

            /// Moves bytes both ways, `step` bytes at a time, until nothing moves.
            fn pump(&mut self, step: usize) {
                for _ in 0..100_000 {
                    let to_server = drain(self.client.out());
                    let to_client = drain(self.server.out());
                    if to_server.is_empty() && to_client.is_empty() {
                        return;
                    }
                    for piece in to_server.chunks(step) {
                        self.s_in.extend_from_slice(piece);
                        self.feed_server();
                    }
                    for piece in to_client.chunks(step) {
                        self.c_in.extend_from_slice(piece);
                        self.client.feed(&mut self.c_in).unwrap();
                        while let Some(e) = self.client.poll_event() {
                            self.client_events.push(e);
                        }
                    }
                }
                panic!("pump did not settle");
            }

            fn feed_server(&mut self) {
                // Like the driver: after answering `connect`, feed again, since the session
                // decoded nothing while the answer was pending.
                while !self.server_failed && self.feed_server_once() {}
            }

            /// One feed and its events; whether a `connect` was accepted.
            fn feed_server_once(&mut self) -> bool {
                if self.server.feed(&mut self.s_in).is_err() {
                    // The driver would flush what is queued (e.g. `_error`) and close.
                    self.server_failed = true;
                }
                let mut accepted = false;
                while let Some(e) = self.server.poll_event() {
                    match &e {
                        SessionEvent::ConnectRequest(info) => match self.answer {
                            Answer::RefuseConnect => {
                                self.server.reject_connect("not allowed");
                                self.server_failed = true;
                            }
                            _ => match self.server.accept_connect(&info.app) {
                                Ok(()) => accepted = true,
                                Err(_) => self.server_failed = true,
                            },
                        },
                        SessionEvent::PublishRequest {
                            stream_id, name, ..
                        } => match self.answer {
                            Answer::Accept => self.server.accept_publish(*stream_id, name),
                            _ => self.server.reject_publish(*stream_id, "taken"),
                        },
                        SessionEvent::PlayRequest {
                            stream_id, name, ..
                        } => match self.answer {
                            Answer::Accept => self.server.accept_play(*stream_id, name),
                            _ => self.server.reject_play(*stream_id, "none"),
                        },
                        _ => {}
                    }
                    self.server_events.push(e);
                }
                accepted
            }
        }

        #[test]
        fn publish_media_close() {
            for step in [1, 13, 4096, 1 << 20] {
                let mut p = Pair::new(
                    ClientRole::Publish {
                        name: "cam?key=s3cret".into(),
                    },
                    "live",
                );
                p.pump(step);
                assert_eq!(p.client.state(), ClientState::Publishing, "step {step}");
                assert_eq!(
                    &p.client_events[..2],
                    &[ClientEvent::Connected, ClientEvent::Publishing]
                );
                assert!(matches!(
                    &p.client_events[2],
                    ClientEvent::Status { code, .. } if code == "NetStream.Publish.Start"
                ));
                assert!(matches!(
                    &p.server_events[1],
                    SessionEvent::PublishRequest { name, args, .. }
                        if name == "cam" && args == &[("key".to_owned(), "s3cret".to_owned())]
                ));
                let SessionEvent::ConnectRequest(info) = &p.server_events[0] else {
                    panic!("no connect");
                };
                assert_eq!(info.app, "live");
                assert_eq!(
                    info.flash_ver.as_deref(),
                    Some("FMLE/3.0 (compatible; ferrocast)")
                );
                p.server_events.clear();

                let meta = Amf0Value::ecma_array([("width", 1280.0.into())]);
                p.client.send_metadata(meta.clone());
                let seq = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
                p.client.send_raw_media(true, 0, &seq);
                // A frame bigger than a chunk, with the tag header given as a prefix.
                let big = Bytes::from(vec![0xAB; 10_000]);
                p.client.send_media(true, 33, &[0x17, 1, 0, 0, 0], &big);
                p.client
                    .send_raw_media(false, 23, &Bytes::from_static(&[0xaf, 1, 9, 9]));
                p.pump(step);
                assert_eq!(p.server_events.len(), 4);
                assert_eq!(p.server_events[0], SessionEvent::Metadata(meta));
                assert_eq!(
                    p.server_events[1],
                    SessionEvent::Video {
                        timestamp: 0,
                        payload: seq.clone()
                    }
                );
                let SessionEvent::Video { timestamp, payload } = &p.server_events[2] else {
                    panic!("no video");
                };
                assert_eq!(*timestamp, 33);
                assert_eq!(payload.len(), 10_005);
                assert_eq!(&payload[..5], &[0x17, 1, 0, 0, 0]);
                assert!(payload[5..].iter().all(|&b| b == 0xAB));
                assert!(matches!(
                    &p.server_events[3],
                    SessionEvent::Audio { timestamp: 23, .. }
                ));
                p.server_events.clear();

                p.client.close();
                assert_eq!(p.client.state(), ClientState::Closed);
                p.pump(step);
                // FCUnpublish, then deleteStream(1).
                assert_eq!(
                    p.server_events,
                    vec![
                        SessionEvent::StreamClosed { stream_id: 1 },
                        SessionEvent::StreamClosed { stream_id: 1 },
                    ]
                );
                assert!(!p.server_failed);
            }
        }

        #[test]
        fn play_receives_metadata_and_media() {
            let mut p = Pair::new(ClientRole::Play { name: "cam".into() }, "live");
            p.pump(7);
            assert_eq!(p.client.state(), ClientState::Playing);
            assert_eq!(p.client.stream_id(), Some(1));
            assert_eq!(p.client_events[0], ClientEvent::Connected);
            let codes: Vec<&str> = p
                .client_events
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::Status { code, .. } => Some(code.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
            assert!(p.client_events.contains(&ClientEvent::Playing));
            assert!(matches!(
                &p.server_events[1],
                SessionEvent::PlayRequest { name, stream_id: 1, .. } if name == "cam"
            ));
            p.client_events.clear();

            let meta = Amf0Value::ecma_array([("framerate", 30.0.into())]);
            p.server.send_metadata(1, meta.clone());
            let frame = Bytes::from(vec![7u8; 9000]);
            p.server
                .send_media(1, true, 1000, &[0x27, 1, 0, 0, 0], &frame);
            p.server
                .send_media(1, false, 1010, &[0xaf, 1], &Bytes::from_static(&[1, 2, 3]));
            // Crosses the server's acknowledgement window several times.
            let filler = Bytes::from(vec![0u8; 60_000]);
            for i in 0..50 {
                p.server
                    .send_media(1, true, 1100 + i, &[0x27, 1, 0, 0, 0], &filler);
            }
            p.pump(100_000);
            assert_eq!(p.client_events[0], ClientEvent::Metadata(meta));
            let ClientEvent::Video { timestamp, payload } = &p.client_events[1] else {
                panic!("no video");
            };
            assert_eq!(*timestamp, 1000);
            assert_eq!(payload.len(), 9005);
            assert_eq!(
                p.client_events[2],
                ClientEvent::Audio {
                    timestamp: 1010,
                    payload: Bytes::from_static(&[0xaf, 1, 1, 2, 3])
                }
            );
            assert_eq!(p.client_events.len(), 53);
            assert!(!p.server_failed);

            p.client.close();
            p.server_events.clear();
            p.pump(7);
            assert_eq!(
                p.server_events,
                vec![SessionEvent::StreamClosed { stream_id: 1 }]
            );
        }

        #[test]
        fn acknowledges_the_server_window() {
            let mut p = Pair::new(ClientRole::Play { name: "cam".into() }, "live");
            p.pump(4096);
            let filler = Bytes::from(vec![0u8; 1 << 20]);
            for i in 0..3 {
                p.server
                    .send_media(1, true, i, &[0x27, 1, 0, 0, 0], &filler);
            }
            let before = p.client.out().len_bytes();
            assert_eq!(before, 0);
            // Feed the client directly to see what it queues.
            let bytes = drain(p.server.out());
            p.c_in.extend_from_slice(&bytes);
            p.client.feed(&mut p.c_in).unwrap();
            let out = drain(p.client.out());
            // One acknowledgement (window 2.5 MB, ~3 MB received): a compressed header on csid
            // 2 and the byte count so far.
            let seq = (p.client.bytes_received() as u32).to_be_bytes();
            assert!(out.len() <= 16 && out.len() >= 8, "{out:?}");
            assert_eq!(&out[out.len() - 4..], &seq);
            assert_eq!(out[0] & 0x3f, 2);
        }

        #[test]
        fn answers_ping() {
            let mut p = Pair::new(ClientRole::Play { name: "cam".into() }, "live");
            p.pump(4096);
            let mut enc = ChunkEncoder::new();
            let mut q = OutQueue::new();
            let h = MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id: message::TYPE_USER_CONTROL,
                stream_id: 0,
            };
            enc.encode(&h, &message::ping_request(77), &mut q).unwrap();
            // The server's chunk size is 4096 now; a 6-byte message fits any size.
            p.c_in.extend_from_slice(&drain(&mut q));
            p.client.feed(&mut p.c_in).unwrap();
            let out = drain(p.client.out());
            // Header on csid 2 (compressed against earlier control messages), then the body.
            assert_eq!(out[0] & 0x3f, 2);
            assert_eq!(&out[out.len() - 6..], &message::ping_response(77)[..]);
        }

        #[test]
        fn rejected_publish_reports_bad_name() {
            let mut p = Pair::new(ClientRole::Publish { name: "cam".into() }, "live");
            p.answer = Answer::Reject;
            p.pump(4096);
            assert_eq!(p.client.state(), ClientState::Closed);
            assert!(p.client_events.iter().any(|e| matches!(
                e,
                ClientEvent::Status { level, code, description }
                    if level == "error" && code == "NetStream.Publish.BadName"
                        && description == "taken"
            )));
            assert!(!p.client_events.contains(&ClientEvent::Publishing));
            p.client
                .send_raw_media(true, 0, &Bytes::from_static(&[0x17, 1, 0, 0, 0]));
            assert!(p.client.out().is_empty());
        }

        #[test]
        fn rejected_play_reports_not_found() {
            let mut p = Pair::new(ClientRole::Play { name: "cam".into() }, "live");
            p.answer = Answer::Reject;
            p.pump(4096);
            assert_eq!(p.client.state(), ClientState::Closed);
            assert!(p.client_events.iter().any(|e| matches!(
                e,
                ClientEvent::Status { code, .. } if code == "NetStream.Play.StreamNotFound"
            )));
        }

        #[test]
        fn wrong_app_reports_connect_error() {
            let mut p = Pair::new(ClientRole::Publish { name: "cam".into() }, "nope");
            p.pump(4096);
            assert!(p.server_failed);
            assert_eq!(p.client.state(), ClientState::Closed);
            assert_eq!(p.client_events.len(), 1);
            let ClientEvent::Error {
                command,
                description,
            } = &p.client_events[0]
            else {
                panic!("expected an error event, got {:?}", p.client_events);
            };
            assert_eq!(command, "connect");
            assert!(description.contains("nope"), "{description}");
        }

        #[test]
        fn refused_connect_reports_the_reason() {
            let mut p = Pair::new(ClientRole::Publish { name: "cam".into() }, "live");
            p.answer = Answer::RefuseConnect;
            p.pump(4096);
            assert!(p.server_failed);
            assert_eq!(p.client.state(), ClientState::Closed);
            assert_eq!(
                p.client_events,
                vec![ClientEvent::Error {
                    command: "connect".into(),
                    description: "not allowed".into()
                }]
            );
            assert_eq!(p.server_events.len(), 1, "nothing decoded past connect");
        }

        #[test]
        fn event_queue_is_bounded() {
            let mut p = Pair::new(ClientRole::Play { name: "cam".into() }, "live");
            p.pump(4096);
            while p.client.poll_event().is_some() {}
            for i in 0..(MAX_EVENTS as u32 + 10) {
                p.server
                    .send_media(1, false, i, &[0xaf, 1], &Bytes::from_static(&[0]));
            }
            p.c_in.extend_from_slice(&drain(p.server.out()));
            p.client.feed(&mut p.c_in).unwrap();
            assert!(!p.c_in.is_empty(), "input past a full queue stays unread");
            let mut n = 0;
            while p.client.poll_event().is_some() {
                n += 1;
            }
            assert_eq!(n, MAX_EVENTS);
            p.client.feed(&mut p.c_in).unwrap();
            assert!(p.c_in.is_empty());
            let mut m = 0;
            while p.client.poll_event().is_some() {
                m += 1;
            }
            assert_eq!(m, 10);
        }
    }
}
