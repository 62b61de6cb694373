//! RTMP messages: protocol control (spec 5.4), user control (7.1.7), and AMF0 commands and data
//! (7.1.1, 7.1.2, 7.2), parsed from and encoded to message payloads.
//!
//! The chunk layer reassembles payloads and supplies the type id; this module never sees chunk
//! headers. Encoders return the payload only: the caller picks the chunk stream and message
//! stream and hands both to the chunk encoder.

use crate::amf0::{self, Amf0Error, Amf0Value};
use bytes::Bytes;

/// Set Chunk Size (spec 5.4.1).
pub const TYPE_SET_CHUNK_SIZE: u8 = 1;
/// Abort Message (spec 5.4.2).
pub const TYPE_ABORT: u8 = 2;
/// Acknowledgement (spec 5.4.3).
pub const TYPE_ACKNOWLEDGEMENT: u8 = 3;
/// User Control Message (spec 6.2, 7.1.7).
pub const TYPE_USER_CONTROL: u8 = 4;
/// Window Acknowledgement Size (spec 5.4.4).
pub const TYPE_WINDOW_ACK_SIZE: u8 = 5;
/// Set Peer Bandwidth (spec 5.4.5).
pub const TYPE_SET_PEER_BANDWIDTH: u8 = 6;
/// Audio data: one FLV audio tag body (spec 7.1.4).
pub const TYPE_AUDIO: u8 = 8;
/// Video data: one FLV video tag body (spec 7.1.5).
pub const TYPE_VIDEO: u8 = 9;
/// AMF3 data message (spec 7.1.2).
pub const TYPE_DATA_AMF3: u8 = 15;
/// AMF3 shared object message (spec 7.1.3).
pub const TYPE_SHARED_OBJECT_AMF3: u8 = 16;
/// AMF3 command message (spec 7.1.1).
pub const TYPE_COMMAND_AMF3: u8 = 17;
/// AMF0 data message, e.g. `@setDataFrame` (spec 7.1.2).
pub const TYPE_DATA_AMF0: u8 = 18;
/// AMF0 shared object message (spec 7.1.3).
pub const TYPE_SHARED_OBJECT_AMF0: u8 = 19;
/// AMF0 command message (spec 7.1.1).
pub const TYPE_COMMAND_AMF0: u8 = 20;
/// Aggregate message (spec 7.1.6).
pub const TYPE_AGGREGATE: u8 = 22;

/// Chunk stream for protocol control and user control messages (spec 5.4: csid 2, stream 0).
pub const CSID_PROTOCOL: u32 = 2;
/// Chunk stream for connection-level commands (`_result` to connect, createStream, ...).
///
/// This and the three below follow nginx-rtmp (`ngx_rtmp_streams.h`: AMF_INI 3, AMF 5, AUDIO 6,
/// VIDEO 7), the layout most players have been tested against. Audio and video get separate
/// chunk streams so each keeps its own header compression state.
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream for stream-level commands and data (`onStatus`, `onMetaData`, `|RtmpSampleAccess`).
pub const CSID_DATA: u32 = 5;
/// Chunk stream for audio messages we send.
pub const CSID_AUDIO: u32 = 6;
/// Chunk stream for video messages we send.
pub const CSID_VIDEO: u32 = 7;
/// Message stream id we hand out in the `createStream` reply (nginx-rtmp and SRS use 1 too).
pub const MEDIA_STREAM_ID: u32 = 1;

/// Set Peer Bandwidth limit type: the peer should limit its output to the window size.
pub const LIMIT_HARD: u8 = 0;
/// Set Peer Bandwidth limit type: limit to the window size or the current limit, the smaller.
pub const LIMIT_SOFT: u8 = 1;
/// Set Peer Bandwidth limit type: hard if the previous one was hard, else ignore.
pub const LIMIT_DYNAMIC: u8 = 2;

const UC_STREAM_BEGIN: u16 = 0;
const UC_STREAM_EOF: u16 = 1;
const UC_STREAM_DRY: u16 = 2;
const UC_SET_BUFFER_LENGTH: u16 = 3;
const UC_STREAM_IS_RECORDED: u16 = 4;
const UC_PING_REQUEST: u16 = 6;
const UC_PING_RESPONSE: u16 = 7;

/// Largest chunk size the spec allows (the high bit of the payload must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// One parsed RTMP message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// New maximum chunk size for the sender's chunks.
    SetChunkSize(u32),
    /// Discard the partially received message on this chunk stream.
    Abort {
        /// Chunk stream whose partial message to drop.
        csid: u32,
    },
    /// Bytes received so far (wraps at 2^32).
    Acknowledgement {
        /// Total bytes received.
        sequence: u32,
    },
    /// The sender's acknowledgement window.
    WindowAckSize(u32),
    /// Limit on the receiver's output bandwidth.
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// [`LIMIT_HARD`], [`LIMIT_SOFT`] or [`LIMIT_DYNAMIC`].
        limit_type: u8,
    },
    /// A user control event.
    UserControl(UserControl),
    /// An FLV audio tag body, shared with the chunk buffer.
    Audio(Bytes),
    /// An FLV video tag body, shared with the chunk buffer.
    Video(Bytes),
    /// AMF0 data message values, e.g. `["@setDataFrame", "onMetaData", {..}]`.
    Data {
        /// Every value of the body.
        values: Vec<Amf0Value>,
    },
    /// AMF0 (or AMF3-wrapped AMF0) command.
    Command(Command),
    /// Any other message type (shared objects, aggregate, AMF3 data), untouched.
    Other {
        /// Message type id.
        type_id: u8,
        /// Payload, shared with the chunk buffer.
        payload: Bytes,
    },
}

/// User control events (spec 7.1.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserControl {
    /// Stream became functional.
    StreamBegin(u32),
    /// Playback of the stream is over.
    StreamEof(u32),
    /// No more data on the stream for now.
    StreamDry(u32),
    /// Client's buffer length for a stream.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        ms: u32,
    },
    /// The stream is a recording.
    StreamIsRecorded(u32),
    /// Server ping with its timestamp.
    PingRequest(u32),
    /// Reply to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event (e.g. Flash SWF verification 0x1a/0x1b), kept for logging.
    Unknown {
        /// Event type.
        event_type: u16,
        /// Event data after the type.
        data: Bytes,
    },
}

/// An AMF0 command: name, transaction id, command object, then arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Procedure name (`connect`, `publish`, `_result`, ...).
    pub name: String,
    /// Transaction id; 0 when no reply is expected.
    pub transaction_id: f64,
    /// Command object, `Null` when absent.
    pub object: Amf0Value,
    /// Remaining values.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// The `i`th argument after the command object, if present.
    pub fn arg(&self, i: usize) -> Option<&Amf0Value> {
        self.args.get(i)
    }

    /// Encodes this command as an AMF0 command message payload.
    pub fn encode(&self) -> Bytes {
        command(&self.name, self.transaction_id, &self.object, &self.args)
    }
}

/// Errors from parsing a message payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A fixed-size message had too few bytes.
    #[error("message type {type_id}: {len} bytes, need {need}")]
    TooShort {
        /// Message type id.
        type_id: u8,
        /// Payload length received.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// Set Chunk Size of 0 or with the high bit set (spec 5.4.1).
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A command body that is not valid AMF0.
    #[error("message type {type_id}: {source}")]
    Amf0 {
        /// Message type id.
        type_id: u8,
        /// The decode error; its offset is within the AMF0 part of the payload.
        source: Amf0Error,
    },
    /// A command whose first value is not a string.
    #[error("command without a name")]
    MissingCommandName,
}

impl Message {
    /// Parses the payload of a reassembled message of type `type_id`.
    ///
    /// Trailing bytes after fixed-size control messages are ignored: the spec does not forbid
    /// them and rejecting them would only drop sessions.
    pub fn parse(type_id: u8, payload: &Bytes) -> Result<Message, MessageError> {
        let p = payload.as_ref();
        Ok(match type_id {
            TYPE_SET_CHUNK_SIZE => {
                let size = be_u32(type_id, p, 0)?;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(MessageError::InvalidChunkSize(size));
                }
                Message::SetChunkSize(size)
            }
            TYPE_ABORT => Message::Abort {
                csid: be_u32(type_id, p, 0)?,
            },
            TYPE_ACKNOWLEDGEMENT => Message::Acknowledgement {
                sequence: be_u32(type_id, p, 0)?,
            },
            TYPE_WINDOW_ACK_SIZE => Message::WindowAckSize(be_u32(type_id, p, 0)?),
            TYPE_SET_PEER_BANDWIDTH => {
                let size = be_u32(type_id, p, 0)?;
                let limit_type = *p.get(4).ok_or(MessageError::TooShort {
                    type_id,
                    len: p.len(),
                    need: 5,
                })?;
                Message::SetPeerBandwidth { size, limit_type }
            }
            TYPE_USER_CONTROL => Message::UserControl(parse_user_control(payload)?),
            TYPE_AUDIO => Message::Audio(payload.clone()),
            TYPE_VIDEO => Message::Video(payload.clone()),
            TYPE_DATA_AMF0 => Message::Data {
                values: amf0::decode_all(p)
                    .map_err(|source| MessageError::Amf0 { type_id, source })?,
            },
            TYPE_COMMAND_AMF0 => Message::Command(parse_command(type_id, p)?),
            TYPE_COMMAND_AMF3 => {
                // AMF3 commands start with a format byte of 0 followed by plain AMF0 (what
                // Flash Player and FMS send). A command name is a string, never a number, so a
                // leading 0x00 cannot be the start of the AMF0 part.
                let body = p.strip_prefix(&[0u8][..]).unwrap_or(p);
                Message::Command(parse_command(type_id, body)?)
            }
            _ => Message::Other {
                type_id,
                payload: payload.clone(),
            },
        })
    }

    /// The message type id and payload that [`Message::parse`] turns back into this message.
    pub fn encode(&self) -> (u8, Bytes) {
        match self {
            Message::SetChunkSize(n) => (TYPE_SET_CHUNK_SIZE, set_chunk_size(*n)),
            Message::Abort { csid } => (TYPE_ABORT, u32_payload(*csid)),
            Message::Acknowledgement { sequence } => {
                (TYPE_ACKNOWLEDGEMENT, acknowledgement(*sequence))
            }
            Message::WindowAckSize(n) => (TYPE_WINDOW_ACK_SIZE, window_ack_size(*n)),
            Message::SetPeerBandwidth { size, limit_type } => (
                TYPE_SET_PEER_BANDWIDTH,
                set_peer_bandwidth(*size, *limit_type),
            ),
            Message::UserControl(uc) => (TYPE_USER_CONTROL, user_control(uc)),
            Message::Audio(b) => (TYPE_AUDIO, b.clone()),
            Message::Video(b) => (TYPE_VIDEO, b.clone()),
            Message::Data { values } => (TYPE_DATA_AMF0, data(values)),
            Message::Command(c) => (TYPE_COMMAND_AMF0, c.encode()),
            Message::Other { type_id, payload } => (*type_id, payload.clone()),
        }
    }
}

fn be_u32(type_id: u8, p: &[u8], at: usize) -> Result<u32, MessageError> {
    p.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
        .ok_or(MessageError::TooShort {
            type_id,
            len: p.len(),
            need: at + 4,
        })
}

fn parse_user_control(payload: &Bytes) -> Result<UserControl, MessageError> {
    let p = payload.as_ref();
    let t = TYPE_USER_CONTROL;
    let event_type =
        p.get(..2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or(MessageError::TooShort {
                type_id: t,
                len: p.len(),
                need: 2,
            })?;
    Ok(match event_type {
        UC_STREAM_BEGIN => UserControl::StreamBegin(be_u32(t, p, 2)?),
        UC_STREAM_EOF => UserControl::StreamEof(be_u32(t, p, 2)?),
        UC_STREAM_DRY => UserControl::StreamDry(be_u32(t, p, 2)?),
        UC_SET_BUFFER_LENGTH => UserControl::SetBufferLength {
            stream_id: be_u32(t, p, 2)?,
            ms: be_u32(t, p, 6)?,
        },
        UC_STREAM_IS_RECORDED => UserControl::StreamIsRecorded(be_u32(t, p, 2)?),
        UC_PING_REQUEST => UserControl::PingRequest(be_u32(t, p, 2)?),
        UC_PING_RESPONSE => UserControl::PingResponse(be_u32(t, p, 2)?),
        _ => UserControl::Unknown {
            event_type,
            data: payload.slice(2..),
        },
    })
}

fn parse_command(type_id: u8, body: &[u8]) -> Result<Command, MessageError> {
    let values = amf0::decode_all(body).map_err(|source| MessageError::Amf0 { type_id, source })?;
    let mut it = values.into_iter();
    let name = match it.next() {
        Some(Amf0Value::String(s) | Amf0Value::LongString(s)) => s,
        _ => return Err(MessageError::MissingCommandName),
    };
    // A missing or non-numeric transaction id is read as 0 ("no reply expected") rather than
    // an error: some encoders send bare notifications such as `onBWDone` with a null there.
    let transaction_id = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let object = it.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: it.collect(),
    })
}

fn u32_payload(n: u32) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

/// Set Chunk Size payload; `size` is clamped to 1..=[`MAX_CHUNK_SIZE`].
pub fn set_chunk_size(size: u32) -> Bytes {
    u32_payload(size.clamp(1, MAX_CHUNK_SIZE))
}

/// Window Acknowledgement Size payload.
pub fn window_ack_size(size: u32) -> Bytes {
    u32_payload(size)
}

/// Set Peer Bandwidth payload.
pub fn set_peer_bandwidth(size: u32, limit_type: u8) -> Bytes {
    let mut b = Vec::with_capacity(5);
    b.extend_from_slice(&size.to_be_bytes());
    b.push(limit_type);
    Bytes::from(b)
}

/// Acknowledgement payload.
pub fn acknowledgement(sequence: u32) -> Bytes {
    u32_payload(sequence)
}

fn user_control_u32(event_type: u16, value: u32) -> Bytes {
    let mut b = Vec::with_capacity(6);
    b.extend_from_slice(&event_type.to_be_bytes());
    b.extend_from_slice(&value.to_be_bytes());
    Bytes::from(b)
}

/// User control payload for any event.
pub fn user_control(event: &UserControl) -> Bytes {
    match event {
        UserControl::StreamBegin(id) => user_control_u32(UC_STREAM_BEGIN, *id),
        UserControl::StreamEof(id) => user_control_u32(UC_STREAM_EOF, *id),
        UserControl::StreamDry(id) => user_control_u32(UC_STREAM_DRY, *id),
        UserControl::SetBufferLength { stream_id, ms } => {
            let mut b = user_control_u32(UC_SET_BUFFER_LENGTH, *stream_id).to_vec();
            b.extend_from_slice(&ms.to_be_bytes());
            Bytes::from(b)
        }
        UserControl::StreamIsRecorded(id) => user_control_u32(UC_STREAM_IS_RECORDED, *id),
        UserControl::PingRequest(ts) => user_control_u32(UC_PING_REQUEST, *ts),
        UserControl::PingResponse(ts) => user_control_u32(UC_PING_RESPONSE, *ts),
        UserControl::Unknown { event_type, data } => {
            let mut b = Vec::with_capacity(2 + data.len());
            b.extend_from_slice(&event_type.to_be_bytes());
            b.extend_from_slice(data);
            Bytes::from(b)
        }
    }
}

/// User control Stream Begin payload.
pub fn user_control_stream_begin(stream_id: u32) -> Bytes {
    user_control_u32(UC_STREAM_BEGIN, stream_id)
}

/// User control Stream EOF payload.
pub fn user_control_stream_eof(stream_id: u32) -> Bytes {
    user_control_u32(UC_STREAM_EOF, stream_id)
}

/// User control Stream Is Recorded payload.
pub fn user_control_stream_is_recorded(stream_id: u32) -> Bytes {
    user_control_u32(UC_STREAM_IS_RECORDED, stream_id)
}

/// User control Ping Request payload.
pub fn ping_request(timestamp: u32) -> Bytes {
    user_control_u32(UC_PING_REQUEST, timestamp)
}

/// User control Ping Response payload.
pub fn ping_response(timestamp: u32) -> Bytes {
    user_control_u32(UC_PING_RESPONSE, timestamp)
}

/// AMF0 command payload (type [`TYPE_COMMAND_AMF0`]).
pub fn command(name: &str, transaction_id: f64, object: &Amf0Value, args: &[Amf0Value]) -> Bytes {
    let mut out = Vec::with_capacity(64);
    amf0::encode(&Amf0Value::from(name), &mut out);
    amf0::encode(&Amf0Value::Number(transaction_id), &mut out);
    amf0::encode(object, &mut out);
    amf0::encode_all(args, &mut out);
    Bytes::from(out)
}

/// AMF0 data payload (type [`TYPE_DATA_AMF0`]).
pub fn data(values: &[Amf0Value]) -> Bytes {
    let mut out = Vec::with_capacity(64);
    amf0::encode_all(values, &mut out);
    Bytes::from(out)
}

/// `onStatus` command payload: transaction id 0, null command object, and an info object with
/// `level`, `code` and `description`.
pub fn on_status(level: &str, code: &str, description: &str) -> Bytes {
    let info = Amf0Value::object([
        ("level", level.into()),
        ("code", code.into()),
        ("description", description.into()),
    ]);
    command("onStatus", 0.0, &Amf0Value::Null, &[info])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECT: &[u8] = include_bytes!("../../../testdata/ffmpeg-connect.amf0");
    const ON_METADATA: &[u8] = include_bytes!("../../../testdata/ffmpeg-onmetadata.amf0");

    fn round_trip(m: Message) {
        let (t, p) = m.encode();
        assert_eq!(Message::parse(t, &p).unwrap(), m, "type {t}");
    }

    #[test]
    fn round_trips() {
        let cmd = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            object: Amf0Value::Null,
            args: vec!["x".into(), "live".into()],
        };
        for m in [
            Message::SetChunkSize(4096),
            Message::SetChunkSize(MAX_CHUNK_SIZE),
            Message::Abort { csid: 6 },
            Message::Acknowledgement { sequence: u32::MAX },
            Message::WindowAckSize(2_500_000),
            Message::SetPeerBandwidth {
                size: 2_500_000,
                limit_type: LIMIT_DYNAMIC,
            },
            Message::UserControl(UserControl::StreamBegin(1)),
            Message::UserControl(UserControl::StreamEof(1)),
            Message::UserControl(UserControl::StreamDry(1)),
            Message::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                ms: 3000,
            }),
            Message::UserControl(UserControl::StreamIsRecorded(1)),
            Message::UserControl(UserControl::PingRequest(123)),
            Message::UserControl(UserControl::PingResponse(123)),
            Message::UserControl(UserControl::Unknown {
                event_type: 0x1a,
                data: Bytes::from_static(&[0, 1]),
            }),
            Message::Audio(Bytes::from_static(&[0xaf, 1, 2])),
            Message::Video(Bytes::from_static(&[0x17, 1, 0, 0, 0])),
            Message::Data {
                values: vec!["@setDataFrame".into(), "onMetaData".into()],
            },
            Message::Command(cmd),
            Message::Other {
                type_id: TYPE_AGGREGATE,
                payload: Bytes::from_static(b"agg"),
            },
        ] {
            round_trip(m);
        }
    }

    #[test]
    fn encoders_match_spec_bytes() {
        assert_eq!(&set_chunk_size(4096)[..], [0, 0, 0x10, 0]);
        assert_eq!(&set_chunk_size(0)[..], [0, 0, 0, 1]);
        assert_eq!(&set_chunk_size(u32::MAX)[..], [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(&window_ack_size(5_000_000)[..], 5_000_000u32.to_be_bytes());
        assert_eq!(&acknowledgement(7)[..], [0, 0, 0, 7]);
        assert_eq!(&set_peer_bandwidth(256, LIMIT_SOFT)[..], [0, 0, 1, 0, 1]);
        assert_eq!(&user_control_stream_begin(1)[..], [0, 0, 0, 0, 0, 1]);
        assert_eq!(&user_control_stream_eof(1)[..], [0, 1, 0, 0, 0, 1]);
        assert_eq!(&user_control_stream_is_recorded(1)[..], [0, 4, 0, 0, 0, 1]);
        assert_eq!(&ping_request(9)[..], [0, 6, 0, 0, 0, 9]);
        assert_eq!(&ping_response(9)[..], [0, 7, 0, 0, 0, 9]);
    }

    #[test]
    fn on_status_shape() {
        let p = on_status("status", "NetStream.Publish.Start", "Start publishing");
        let Message::Command(c) = Message::parse(TYPE_COMMAND_AMF0, &p).unwrap() else {
            panic!("not a command")
        };
        assert_eq!(c.name, "onStatus");
        assert_eq!(c.transaction_id, 0.0);
        assert_eq!(c.object, Amf0Value::Null);
        let info = c.arg(0).unwrap();
        assert_eq!(
            info.get("level").and_then(Amf0Value::as_str),
            Some("status")
        );
        assert_eq!(
            info.get("code").and_then(Amf0Value::as_str),
            Some("NetStream.Publish.Start")
        );
        assert_eq!(
            info.get("description").and_then(Amf0Value::as_str),
            Some("Start publishing")
        );
    }

    #[test]
    fn ffmpeg_connect_command() {
        let p = Bytes::from_static(CONNECT);
        let Message::Command(c) = Message::parse(TYPE_COMMAND_AMF0, &p).unwrap() else {
            panic!("not a command")
        };
        assert_eq!(c.name, "connect");
        assert_eq!(c.transaction_id, 1.0);
        assert_eq!(
            c.object.get("app").and_then(Amf0Value::as_str),
            Some("live")
        );
        assert!(c.args.is_empty());
        assert_eq!(c.encode(), p);
    }

    #[test]
    fn amf3_command_skips_format_byte() {
        let mut p = vec![0u8];
        p.extend_from_slice(CONNECT);
        let Message::Command(c) = Message::parse(TYPE_COMMAND_AMF3, &Bytes::from(p)).unwrap()
        else {
            panic!("not a command")
        };
        assert_eq!(c.name, "connect");
        // Without the format byte it parses too.
        let m = Message::parse(TYPE_COMMAND_AMF3, &Bytes::from_static(CONNECT)).unwrap();
        assert!(matches!(m, Message::Command(c) if c.name == "connect"));
    }

    #[test]
    fn set_data_frame_as_ffmpeg_sends_it() {
        // ffmpeg's rtmpproto prefixes the FLV script tag body with "@setDataFrame" when
        // publishing; rebuild that payload from the FLV capture.
        let mut p = Vec::new();
        amf0::encode(&"@setDataFrame".into(), &mut p);
        p.extend_from_slice(ON_METADATA);
        let Message::Data { values } = Message::parse(TYPE_DATA_AMF0, &Bytes::from(p)).unwrap()
        else {
            panic!("not data")
        };
        assert_eq!(values[0].as_str(), Some("@setDataFrame"));
        assert_eq!(values[1].as_str(), Some("onMetaData"));
        assert_eq!(
            values[2].get("width").and_then(Amf0Value::as_f64),
            Some(320.0)
        );
    }

    #[test]
    fn command_quirks() {
        // Bare name: transaction id 0 and null object.
        let p = data(&["onBWDone".into()]);
        let Message::Command(c) = Message::parse(TYPE_COMMAND_AMF0, &p).unwrap() else {
            panic!("not a command")
        };
        assert_eq!((c.transaction_id, c.object), (0.0, Amf0Value::Null));
        // Null transaction id.
        let p = data(&["onBWDone".into(), Amf0Value::Null]);
        assert!(Message::parse(TYPE_COMMAND_AMF0, &p).is_ok());
        // Name that is not a string, and an empty body.
        let p = data(&[1.0.into()]);
        assert_eq!(
            Message::parse(TYPE_COMMAND_AMF0, &p),
            Err(MessageError::MissingCommandName)
        );
        assert_eq!(
            Message::parse(TYPE_COMMAND_AMF0, &Bytes::new()),
            Err(MessageError::MissingCommandName)
        );
        assert!(matches!(
            Message::parse(TYPE_COMMAND_AMF0, &Bytes::from_static(&[2, 0, 9, b'x'])),
            Err(MessageError::Amf0 {
                type_id: TYPE_COMMAND_AMF0,
                ..
            })
        ));
    }

    #[test]
    fn media_payloads_are_shared() {
        let p = Bytes::from(vec![0x17u8; 100]);
        let Message::Video(v) = Message::parse(TYPE_VIDEO, &p).unwrap() else {
            panic!("not video")
        };
        assert_eq!(v.as_ptr(), p.as_ptr());
    }

    #[test]
    fn invalid_chunk_sizes() {
        for n in [0u32, 0x8000_0000, u32::MAX] {
            assert_eq!(
                Message::parse(
                    TYPE_SET_CHUNK_SIZE,
                    &Bytes::copy_from_slice(&n.to_be_bytes())
                ),
                Err(MessageError::InvalidChunkSize(n))
            );
        }
    }

    #[test]
    fn short_control_messages_error() {
        let cases: [(u8, usize); 6] = [
            (TYPE_SET_CHUNK_SIZE, 4),
            (TYPE_ABORT, 4),
            (TYPE_ACKNOWLEDGEMENT, 4),
            (TYPE_WINDOW_ACK_SIZE, 4),
            (TYPE_SET_PEER_BANDWIDTH, 5),
            (TYPE_USER_CONTROL, 6),
        ];
        for (t, need) in cases {
            for len in 0..need {
                let p = Bytes::from(vec![0u8; len]);
                assert!(
                    matches!(Message::parse(t, &p), Err(MessageError::TooShort { .. })),
                    "type {t} len {len}"
                );
            }
        }
        // Set Buffer Length needs 10 bytes.
        for len in 2..10 {
            let mut p = vec![0u8; len];
            p[1] = 3;
            assert_eq!(
                Message::parse(TYPE_USER_CONTROL, &Bytes::from(p)),
                Err(MessageError::TooShort {
                    type_id: TYPE_USER_CONTROL,
                    len,
                    need: if len < 6 { 6 } else { 10 }
                })
            );
        }
    }

    #[test]
    fn every_type_and_length_never_panics() {
        let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        for t in 0..=u8::MAX {
            for len in 0..bytes.len() {
                let _ = Message::parse(t, &Bytes::copy_from_slice(&bytes[..len]));
            }
            for len in 0..CONNECT.len() {
                let _ = Message::parse(t, &Bytes::copy_from_slice(&CONNECT[..len]));
            }
        }
    }
}
