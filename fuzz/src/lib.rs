//! Fuzz properties for ferrocast's parsers and encoders.
//!
//! Each `pub fn <target>(data: &[u8])` is the whole body of the cargo-fuzz target of the same
//! name (`fuzz_targets/<target>.rs` only wraps it), so `cargo test` in this directory replays seed
//! corpora and crash reproducers (`../testdata/fuzz/<target>-*.bin`) through exactly the code
//! libFuzzer runs, on stable and without libFuzzer. Every function documents the property it
//! checks; a violated property panics.

use std::io::IoSlice;

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec, avc};
use rtmp::amf0::{self, Amf0Value};
use rtmp::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits, MAX_CSID, MIN_CSID, MessageHeader,
    OutQueue, RawMessage,
};
use rtmp::flv::{self, AudioTag, VideoTag};
use rtmp::message::{self, Message};
use rtmp::session::{ServerSession, SessionConfig, SessionEvent};

#[cfg(feature = "api")]
mod api;
mod rtsp;
mod srt;

#[cfg(feature = "api")]
pub use api::api_stream_body;
pub use rtsp::{rtsp_request, rtsp_transport, sdp_describe};
pub use srt::{srt_handshake, srt_listener, srt_packet, srt_stream_id};

/// Real configurations from `testdata/` (see testdata/README.md).
pub const AVC_BASELINE: &[u8] = include_bytes!("../../testdata/h264-320x240-baseline.avcc");
/// AAC-LC 48 kHz stereo AudioSpecificConfig.
pub const AAC_48K_STEREO: &[u8] = include_bytes!("../../testdata/aac-48k-stereo.asc");
/// ffmpeg's C0+C1 (FP9 digest variant).
pub const FFMPEG_C0C1: &[u8] = include_bytes!("../../testdata/ffmpeg-c0c1.bin");

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Targets that need the `api` feature (see Cargo.toml).
#[cfg(feature = "api")]
const API_TARGETS: &[(&str, Target)] = &[
    ("api_stream_body", api_stream_body),
    ("ws_flv_client", ws_flv_client),
];
#[cfg(not(feature = "api"))]
const API_TARGETS: &[(&str, Target)] = &[];
/// Names of the targets that need the `api` feature, so a replay without it can say what it
/// skipped.
pub const API_TARGET_NAMES: &[&str] = &["api_stream_body", "ws_flv_client"];

/// Every target built with this feature set: [`TARGETS`] plus the `api` ones when enabled.
pub fn targets() -> impl Iterator<Item = &'static (&'static str, Target)> {
    TARGETS.iter().chain(API_TARGETS)
}

/// Every target that builds without optional features, by name, for the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("rtmp_chunk_decode", rtmp_chunk_decode),
    ("rtmp_chunk_roundtrip", rtmp_chunk_roundtrip),
    ("amf0_decode", amf0_decode),
    ("amf0_roundtrip", amf0_roundtrip),
    ("rtmp_message_parse", rtmp_message_parse),
    ("flv_tags", flv_tags),
    ("flv_stream", flv_stream),
    ("rtmp_session", rtmp_session),
    ("media_codec_config", media_codec_config),
    ("ts_mux", ts_mux),
    ("ts_demux", ts_demux),
    ("srt_packet", srt_packet),
    ("srt_handshake", srt_handshake),
    ("srt_stream_id", srt_stream_id),
    ("srt_listener", srt_listener),
    ("rtsp_request", rtsp_request),
    ("rtsp_transport", rtsp_transport),
    ("sdp_describe", sdp_describe),
    ("hls_playlist", hls_playlist),
    ("fmp4_segment", fmp4_segment),
];

/// xorshift64*: cheap, deterministic choices (piece sizes, driver decisions) from a fuzz seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Takes everything queued in `out`, as a driver's `write_vectored` + `advance` would.
fn drain(out: &mut OutQueue) -> Vec<u8> {
    let len = out.len_bytes();
    let mut v = Vec::with_capacity(len);
    {
        let mut slices = vec![IoSlice::new(&[]); out.pieces()];
        let n = out.io_slices(&mut slices);
        assert_eq!(n, out.pieces());
        for s in &slices[..n] {
            v.extend_from_slice(s);
        }
    }
    assert_eq!(
        v.len(),
        len,
        "OutQueue::len_bytes disagrees with its pieces"
    );
    out.advance(len);
    assert!(out.is_empty() && out.pieces() == 0);
    v
}

fn be_u32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// rtmp_chunk_decode

/// How a chunk stream decode ended.
#[derive(Debug, PartialEq)]
enum DecodeEnd {
    /// All input consumed or waiting for more.
    NeedMore { buffered: usize },
    /// The decoder refused the stream.
    Error(ChunkError),
    /// A Set Chunk Size the decoder refused (the session closes the connection there).
    BadChunkSize(u32),
}

fn decode_in_pieces(
    stream: &[u8],
    limits: DecoderLimits,
    mut piece: impl FnMut() -> usize,
) -> (Vec<RawMessage>, DecodeEnd) {
    let mut dec = ChunkDecoder::new(limits);
    let mut input = BytesMut::new();
    let mut msgs = Vec::new();
    let mut rest = stream;
    let mut fed = 0usize;
    while !rest.is_empty() {
        let n = piece().clamp(1, rest.len());
        input.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        fed += n;
        loop {
            let r = dec.decode(&mut input);
            // Consumed + buffered is everything fed; partial payloads are bounded by the limit
            // and can only hold bytes that were actually received.
            assert_eq!(dec.bytes_consumed() + input.len() as u64, fed as u64);
            assert!(dec.pending_bytes() <= limits.max_pending_bytes);
            assert!(dec.pending_bytes() as u64 <= dec.bytes_consumed());
            let m = match r {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return (msgs, DecodeEnd::Error(e)),
            };
            assert!((MIN_CSID..=MAX_CSID).contains(&m.csid));
            assert!(m.payload.len() <= limits.max_message_size as usize);
            // Protocol control as the session applies it: chunk size changes come from the input.
            match m.type_id {
                message::TYPE_SET_CHUNK_SIZE => {
                    if let Some(size) = be_u32(&m.payload) {
                        if dec.set_chunk_size(size).is_err() {
                            msgs.push(m);
                            return (msgs, DecodeEnd::BadChunkSize(size));
                        }
                        assert_eq!(dec.chunk_size(), size);
                    }
                }
                message::TYPE_ABORT => {
                    if let Some(csid) = be_u32(&m.payload) {
                        let before = dec.pending_bytes();
                        dec.abort(csid);
                        assert!(dec.pending_bytes() <= before);
                    }
                }
                _ => {}
            }
            msgs.push(m);
        }
    }
    (
        msgs,
        DecodeEnd::NeedMore {
            buffered: input.len(),
        },
    )
}

/// `ChunkDecoder::decode` on arbitrary bytes with input-chosen limits, fed in input-chosen piece
/// sizes, applying Set Chunk Size / Abort messages from the stream itself. Checks: no panic;
/// consumed + buffered == fed; pending partial bytes stay under `max_pending_bytes` and never
/// exceed what was received; messages respect `max_message_size` and the csid range; and the
/// result (messages and how it ended) is the same whether the bytes arrive at once or in pieces.
///
/// Layout: `[piece size - 1][limits selector][chunk stream ...]`.
pub fn rtmp_chunk_decode(data: &[u8]) {
    let [piece, sel, stream @ ..] = data else {
        return;
    };
    let limits = DecoderLimits {
        max_chunk_size: [128, 4096, 65_536, 0x7FFF_FFFF][usize::from(sel & 3)],
        max_message_size: [64, 4096, 65_536, 8 << 20][usize::from((sel >> 2) & 3)],
        max_chunk_streams: [1, 3, 16, 64][usize::from((sel >> 4) & 3)],
        max_pending_bytes: [0, 300, 4096, 16 << 20][usize::from(sel >> 6)],
    };
    let whole = decode_in_pieces(stream, limits, || usize::MAX);
    let step = usize::from(*piece) + 1;
    let pieces = decode_in_pieces(stream, limits, || step);
    assert_eq!(whole, pieces, "decode depends on how the input is split");
}

// ---------------------------------------------------------------------------------------------
// rtmp_chunk_roundtrip

#[derive(Arbitrary, Debug)]
enum Csid {
    /// A few ids, so header compression (fmt 1/2) and stream reuse happen.
    Few(u8),
    /// Any id, including the 2- and 3-byte basic header forms.
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Timestamp {
    Absolute(u32),
    /// Forward from the previous message (fmt 1/2 deltas).
    Delta(u16),
    /// At or beyond the 24-bit field: extended timestamps.
    Extended(u16),
}

#[derive(Arbitrary, Debug)]
struct RoundtripMessage {
    csid: Csid,
    timestamp: Timestamp,
    type_id: u8,
    stream_id: u32,
    prefix: Vec<u8>,
    payload: Vec<u8>,
    /// Filler appended to `payload` so large messages cost little fuzz input.
    extra_len: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum RoundtripOp {
    Message(RoundtripMessage),
    /// Send Set Chunk Size (with the old size), then switch the encoder.
    SetChunkSize(u32),
}

#[derive(Arbitrary, Debug)]
struct RoundtripInput {
    chunk_size: u32,
    ops: Vec<RoundtripOp>,
    /// Seed of the piece sizes the decoder is fed in.
    split_seed: u64,
}

fn chunk_size_of(raw: u32) -> u32 {
    1 + raw % 65_536
}

/// Queues a Set Chunk Size message (at the old size), then switches the encoder to `size`.
fn send_chunk_size(
    enc: &mut ChunkEncoder,
    out: &mut OutQueue,
    size: u32,
    exp: &mut Vec<RawMessage>,
) {
    let body = message::set_chunk_size(size);
    let header = MessageHeader {
        csid: message::CSID_PROTOCOL,
        timestamp: 0,
        type_id: message::TYPE_SET_CHUNK_SIZE,
        stream_id: 0,
    };
    enc.encode(&header, &body, out)
        .expect("control message encodes");
    enc.set_chunk_size(size);
    assert_eq!(enc.chunk_size(), size);
    exp.push(RawMessage {
        csid: header.csid,
        timestamp: 0,
        type_id: header.type_id,
        stream_id: 0,
        payload: body,
    });
}

/// Arbitrary messages (csid 2..=65599, timestamps including >= 0xFFFFFF, any type and stream
/// id, payload <= 64 KiB plus an optional prefix) and chunk size changes (1..=65536) through
/// `ChunkEncoder::encode` / `encode_with_prefix`, then `ChunkDecoder` fed in random pieces,
/// gives back exactly the same messages (prefix + payload), with nothing left over.
pub fn rtmp_chunk_roundtrip(data: &[u8]) {
    let Ok(input) = RoundtripInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    let mut expected = Vec::new();
    // The decoder starts at the default size; announce the initial size like a real peer.
    send_chunk_size(
        &mut enc,
        &mut out,
        chunk_size_of(input.chunk_size),
        &mut expected,
    );
    let mut last_ts = 0u32;
    let mut total = 0usize;
    let mut chunks = 0usize;
    for op in input.ops.iter().take(64) {
        match op {
            RoundtripOp::SetChunkSize(raw) => {
                send_chunk_size(&mut enc, &mut out, chunk_size_of(*raw), &mut expected);
            }
            RoundtripOp::Message(m) => {
                let csid = match m.csid {
                    Csid::Few(n) => MIN_CSID + u32::from(n % 6),
                    Csid::Any(n) => MIN_CSID + n % (MAX_CSID - MIN_CSID + 1),
                };
                let timestamp = match m.timestamp {
                    Timestamp::Absolute(t) => t,
                    Timestamp::Delta(d) => last_ts.wrapping_add(u32::from(d)),
                    Timestamp::Extended(d) => 0xFF_FFFF + u32::from(d),
                };
                last_ts = timestamp;
                // Type 1 is the Set Chunk Size this harness sends itself.
                let type_id = if m.type_id == message::TYPE_SET_CHUNK_SIZE {
                    0
                } else {
                    m.type_id
                };
                let mut payload = m.payload.clone();
                payload.truncate(65_536);
                let extra = usize::from(m.extra_len.unwrap_or(0)).min(65_536 - payload.len());
                payload.extend((0..extra).map(|i| i as u8));
                // At most ~1024 chunks per message and 4096 per input: chunk size 1 with
                // 64 KiB messages only repeats the same path 65536 times, and the per-chunk
                // work (under coverage tracing) is what bounds the fuzzer's speed.
                let chunk_size = enc.chunk_size() as usize;
                payload.truncate(chunk_size * 1024);
                let prefix = &m.prefix[..m.prefix.len().min(16)];
                total += payload.len();
                chunks += (prefix.len() + payload.len()).div_ceil(chunk_size).max(1);
                if total > 1 << 20 || chunks > 4096 {
                    break;
                }
                let header = MessageHeader {
                    csid,
                    timestamp,
                    type_id,
                    stream_id: m.stream_id,
                };
                let payload = Bytes::from(payload);
                let r = if prefix.is_empty() {
                    enc.encode(&header, &payload, &mut out)
                } else {
                    enc.encode_with_prefix(&header, prefix, &payload, &mut out)
                };
                r.expect("a valid csid and a payload under 16 MiB always encode");
                let mut body = prefix.to_vec();
                body.extend_from_slice(&payload);
                expected.push(RawMessage {
                    csid,
                    timestamp,
                    type_id,
                    stream_id: m.stream_id,
                    payload: Bytes::from(body),
                });
            }
        }
    }
    let wire = drain(&mut out);

    let limits = DecoderLimits {
        max_chunk_size: 65_536,
        max_message_size: rtmp::chunk::MAX_MESSAGE_LENGTH,
        max_chunk_streams: 1 << 20,
        max_pending_bytes: usize::MAX,
    };
    let mut rng = Rng::new(input.split_seed);
    // Tiny pieces only for small streams: slow, and they add nothing at 1 MiB.
    let max_piece = match [1, 13, 200, 5000, usize::MAX][rng.below(5)] {
        n if n < 5000 && wire.len() > 16 * 1024 => 5000,
        n => n,
    };
    let (got, end) = decode_in_pieces(&wire, limits, || {
        if max_piece == usize::MAX {
            max_piece
        } else {
            1 + rng.below(max_piece)
        }
    });
    assert_eq!(end, DecodeEnd::NeedMore { buffered: 0 });
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "message {i} differs after encode + decode");
    }
}

// ---------------------------------------------------------------------------------------------
// AMF0

fn count_values(v: &Amf0Value, depth: usize, max_depth: &mut usize) -> usize {
    *max_depth = (*max_depth).max(depth);
    1 + match v {
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => p
            .iter()
            .map(|(_, v)| count_values(v, depth + 1, max_depth))
            .sum(),
        Amf0Value::StrictArray(items) => items
            .iter()
            .map(|v| count_values(v, depth + 1, max_depth))
            .sum(),
        _ => 0,
    }
}

/// `amf0::decode_all` and `amf0::decode_one` on arbitrary bytes never panic; a successful
/// decode stays within `MAX_VALUES` values and `MAX_DEPTH` nesting; `decode_one` only moves
/// forward and never past the end.
pub fn amf0_decode(data: &[u8]) {
    if let Ok(values) = amf0::decode_all(data) {
        let mut depth = 0;
        let n: usize = values.iter().map(|v| count_values(v, 0, &mut depth)).sum();
        assert!(n <= amf0::MAX_VALUES);
        assert!(depth <= amf0::MAX_DEPTH);
        for v in &values {
            let _ = (
                v.as_str(),
                v.as_f64(),
                v.as_bool(),
                v.get("app"),
                v.is_null(),
            );
        }
    }
    let mut pos = 0;
    while pos < data.len() {
        let before = pos;
        match amf0::decode_one(data, &mut pos) {
            Ok(_) => assert!(pos > before && pos <= data.len()),
            Err(_) => {
                assert_eq!(pos, before, "decode_one moved on error");
                break;
            }
        }
    }
}

fn encode_values(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    amf0::encode_all(values, &mut out);
    out
}

/// Equality that treats NaN bitwise: `Debug` text (NaN prints as `NaN`, -0.0 as `-0.0`) plus
/// identical encodings (the same f64 bits).
fn assert_same_values(a: &[Amf0Value], b: &[Amf0Value], what: &str) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}");
    assert_eq!(
        encode_values(a),
        encode_values(b),
        "{what}: encodings differ"
    );
}

/// What `amf0::encode` makes of a value, as documented there: a `String` over 65535 bytes is
/// written as a long string and a property name over 65535 bytes is cut at a character
/// boundary. Decoding reaches both only through `from_utf8_lossy` expansion (each invalid byte
/// becomes 3 bytes of U+FFFD), e.g. `02 75 30` + 30000 x `FF`: a String of 90000 bytes.
fn as_encoded(v: &Amf0Value) -> Amf0Value {
    fn key(k: &str) -> String {
        let mut end = k.len().min(usize::from(u16::MAX));
        while !k.is_char_boundary(end) {
            end -= 1;
        }
        k[..end].to_owned()
    }
    let props =
        |p: &[(String, Amf0Value)]| p.iter().map(|(k, v)| (key(k), as_encoded(v))).collect();
    match v {
        Amf0Value::String(s) if s.len() > usize::from(u16::MAX) => Amf0Value::LongString(s.clone()),
        Amf0Value::Object(p) => Amf0Value::Object(props(p)),
        Amf0Value::EcmaArray(p) => Amf0Value::EcmaArray(props(p)),
        Amf0Value::StrictArray(items) => {
            Amf0Value::StrictArray(items.iter().map(as_encoded).collect())
        }
        other => other.clone(),
    }
}

/// Bounded generator of AMF0 values the encoder can represent exactly (strings and keys under
/// 64 KiB, few values, shallow nesting).
fn gen_value(
    u: &mut Unstructured<'_>,
    depth: usize,
    budget: &mut usize,
) -> arbitrary::Result<Amf0Value> {
    if *budget == 0 {
        return Ok(Amf0Value::Null);
    }
    *budget -= 1;
    let kinds = if depth >= 6 { 6 } else { 9 };
    Ok(match u.choose_index(kinds)? {
        0 => Amf0Value::Number(f64::from_bits(u.arbitrary()?)),
        1 => Amf0Value::Boolean(u.arbitrary()?),
        2 => Amf0Value::String(u.arbitrary()?),
        3 => Amf0Value::LongString(u.arbitrary()?),
        4 => {
            if u.arbitrary()? {
                Amf0Value::Null
            } else {
                Amf0Value::Undefined
            }
        }
        5 => Amf0Value::Date {
            millis: f64::from_bits(u.arbitrary()?),
            tz: u.arbitrary()?,
        },
        6 | 7 => {
            let n = u.int_in_range(0..=8)?;
            let mut props = Vec::with_capacity(n);
            for _ in 0..n {
                props.push((u.arbitrary::<String>()?, gen_value(u, depth + 1, budget)?));
            }
            if u.arbitrary()? {
                Amf0Value::Object(props)
            } else {
                Amf0Value::EcmaArray(props)
            }
        }
        _ => {
            let n = u.int_in_range(0..=8)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(gen_value(u, depth + 1, budget)?);
            }
            Amf0Value::StrictArray(items)
        }
    })
}

/// Two round trips. (1) Bytes that decode re-encode to bytes that decode to the same values
/// (NaN compared bitwise; modulo the documented long-string promotion, see [`as_encoded`]),
/// and encoding is then a fixed point. (2) Values generated from the
/// same input (within what AMF0 can carry: strings < 64 KiB) encode, then decode to themselves.
pub fn amf0_roundtrip(data: &[u8]) {
    if let Ok(v1) = amf0::decode_all(data) {
        let b1 = encode_values(&v1);
        let v2 = amf0::decode_all(&b1).expect("re-encoded values decode");
        let expected: Vec<_> = v1.iter().map(as_encoded).collect();
        assert_same_values(
            &expected,
            &v2,
            "decode -> encode -> decode changed the values",
        );
        assert_eq!(b1, encode_values(&v2), "encoding is not a fixed point");
    }
    let mut u = Unstructured::new(data);
    let mut values = Vec::new();
    let mut budget = 256;
    while !u.is_empty() && values.len() < 16 {
        match gen_value(&mut u, 0, &mut budget) {
            Ok(v) => values.push(v),
            Err(_) => break,
        }
    }
    let b = encode_values(&values);
    let back = amf0::decode_all(&b).expect("encoded values decode");
    assert_same_values(&values, &back, "encode -> decode changed generated values");
}

// ---------------------------------------------------------------------------------------------
// rtmp_message_parse

/// `Message::parse(type_id, payload)` never panics, and for messages that parse,
/// `Message::encode` gives a type and payload that parse back to the same message (NaN compared
/// bitwise through `Debug`), whose encoding is a fixed point.
///
/// Layout: `[type id][payload ...]`.
pub fn rtmp_message_parse(data: &[u8]) {
    let [type_id, payload @ ..] = data else {
        return;
    };
    let payload = Bytes::copy_from_slice(payload);
    let Ok(m) = Message::parse(*type_id, &payload) else {
        return;
    };
    let (t, p) = m.encode();
    let m2 = Message::parse(t, &p).expect("an encoded message parses");
    // AMF0 bodies follow the encoder's long-string rule (see `as_encoded`).
    let expected = match m {
        Message::Data { values } => Message::Data {
            values: values.iter().map(as_encoded).collect(),
        },
        Message::Command(mut c) => {
            c.object = as_encoded(&c.object);
            c.args = c.args.iter().map(as_encoded).collect();
            Message::Command(c)
        }
        other => other,
    };
    assert_eq!(
        format!("{expected:?}"),
        format!("{m2:?}"),
        "parse -> encode -> parse changed it"
    );
    assert_eq!((t, p), m2.encode(), "message encoding is not a fixed point");
}

// ---------------------------------------------------------------------------------------------
// flv_tags

/// `flv::parse_video_tag` / `parse_audio_tag` never panic; AVC/AAC sequence headers they yield
/// go through `AvcConfig::parse` / `AacConfig::parse` without panicking; H.264 and AAC frames
/// rebuilt with `avc_video_header` / `avc_frame_header` / `aac_audio_header` parse back to the
/// same tag; `into_frame` keeps pts - dts equal to the composition offset.
///
/// Layout: `[bit 0: 1 = audio][tag body ...]`.
pub fn flv_tags(data: &[u8]) {
    let [sel, body @ ..] = data else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    // An RTMP timestamp extended past one 2^32 ms wrap, as the ingest produces.
    let dts_ms = i64::from(u32::MAX) + 12_345;
    if sel & 1 == 1 {
        let Ok(tag) = flv::parse_audio_tag(&body) else {
            return;
        };
        match &tag {
            AudioTag::AacSequenceHeader(asc) => {
                if let Ok(c) = AacConfig::parse(asc.clone()) {
                    let _ = (c.codec_string(), c.adts_header(body.len()));
                }
            }
            AudioTag::AacRaw(raw) => {
                let cfg = AacConfig::parse(Bytes::from_static(AAC_48K_STEREO)).expect("testdata");
                let mut rebuilt = flv::aac_audio_header(&cfg, flv::AAC_RAW).to_vec();
                rebuilt.extend_from_slice(raw);
                let again = flv::parse_audio_tag(&Bytes::from(rebuilt)).expect("rebuilt tag");
                assert_eq!(again, tag);
            }
            AudioTag::Opaque { .. } => {}
        }
        if let Some(f) = tag.into_frame(dts_ms) {
            assert_eq!(f.track, TrackKind::Audio);
            assert_eq!(f.pts, f.dts);
        }
        return;
    }
    let Ok(tag) = flv::parse_video_tag(&body) else {
        return;
    };
    match &tag {
        VideoTag::AvcSequenceHeader(record) => {
            if let Ok(c) = AvcConfig::parse(record.clone()) {
                let mut annexb = Vec::new();
                c.write_parameter_sets_annexb(&mut annexb);
                let _ = (c.codec_string(), c.profile_name());
            }
        }
        VideoTag::AvcNalu {
            keyframe,
            cts_ms,
            data,
        } => {
            let header = flv::avc_video_header(*keyframe, flv::AVC_NALU, *cts_ms);
            let mut rebuilt = header.to_vec();
            rebuilt.extend_from_slice(data);
            let again = flv::parse_video_tag(&Bytes::from(rebuilt)).expect("rebuilt tag");
            assert_eq!(again, tag);
            let _ = avc::avcc_contains_idr(data, 4);
            let frame = tag
                .clone()
                .into_frame(dts_ms)
                .expect("an AVC NALU tag is a frame");
            assert_eq!(
                frame.pts - frame.dts,
                media::ms_to_ticks(i64::from(*cts_ms))
            );
            assert_eq!(flv::avc_frame_header(&frame), header);
        }
        VideoTag::AvcEndOfSequence | VideoTag::Command | VideoTag::Opaque { .. } => {
            if let Some(f) = tag.clone().into_frame(dts_ms) {
                assert_eq!(f.track, TrackKind::Video);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rtmp_session

/// Events `ServerSession::feed` may leave queued (its `MAX_EVENTS`).
const SESSION_MAX_EVENTS: usize = 1024;

/// A `ServerSession` gets a valid handshake (ffmpeg's real C0+C1, then a C2) followed by the
/// fuzz chunk stream, all split into pieces at input-seeded positions, with a driver that
/// accepts, renames or rejects `connect`, accepts or rejects publish/play requests, echoes
/// media and metadata to players and drains the out queue in random amounts. Checks: never
/// panics; one `feed` leaves at most `MAX_EVENTS` events; what one `feed` queues is bounded
/// by a constant plus 32x the bytes it consumed (the session never amplifies without limit);
/// S0+S1+S2 is 3073 bytes.
///
/// Layout: `[8-byte little-endian seed][chunk stream after C2 ...]`.
pub fn rtmp_session(data: &[u8]) {
    let (seed, stream) = data.split_at(data.len().min(8));
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..seed.len()].copy_from_slice(seed);
    let mut rng = Rng::new(u64::from_le_bytes(seed_bytes));

    let mut wire = FFMPEG_C0C1.to_vec();
    wire.extend_from_slice(&[0u8; 1536]); // C2 is not validated
    wire.extend_from_slice(stream);

    let mut s = ServerSession::new(SessionConfig::default(), 1000, 7);
    let max_piece = [1, 7, 128, 1500, 1 << 20][rng.below(5)];
    let mut input = BytesMut::new();
    let mut rest = &wire[..];
    let mut players: Vec<u32> = Vec::new();
    let mut handshake_checked = false;
    let mut written = 0usize;
    let mut idle_rounds = 0;
    loop {
        let n = (1 + rng.below(max_piece)).min(rest.len());
        input.extend_from_slice(&rest[..n]);
        rest = &rest[n..];

        let before_in = input.len();
        let before_out = s.out().len_bytes();
        let before_rx = s.bytes_received();
        let r = s.feed(&mut input);
        let consumed = before_in - input.len();
        let queued = s.out().len_bytes() - before_out;
        assert!(s.bytes_received() >= before_rx);
        assert!(
            queued <= 4096 + 32 * consumed,
            "feed of {consumed} bytes queued {queued} bytes"
        );
        if !handshake_checked && s.handshake_done() {
            handshake_checked = true;
            assert!(written + s.out().len_bytes() >= 3073, "S0+S1+S2 missing");
        }

        let mut events = 0;
        while let Some(ev) = s.poll_event() {
            events += 1;
            match ev {
                SessionEvent::PublishRequest {
                    stream_id, name, ..
                } => {
                    if rng.below(4) == 0 {
                        s.reject_publish(stream_id, "no");
                        return; // the driver closes the connection
                    }
                    s.accept_publish(stream_id, &name);
                }
                SessionEvent::PlayRequest {
                    stream_id, name, ..
                } => {
                    if rng.below(4) == 0 {
                        s.reject_play(stream_id, "no");
                        return;
                    }
                    s.accept_play(stream_id, &name);
                    players.push(stream_id);
                }
                SessionEvent::StreamClosed { stream_id } => {
                    s.unpublished(stream_id, "x");
                    if let Some(i) = players.iter().position(|&p| p == stream_id) {
                        s.play_unpublished(stream_id, "x");
                        players.swap_remove(i);
                    }
                }
                SessionEvent::Metadata(v) => {
                    if let Some(&p) = players.first() {
                        s.send_metadata(p, v);
                    }
                }
                SessionEvent::Audio { timestamp, payload } => {
                    if let Some(&p) = players.first() {
                        s.send_media(p, false, timestamp, &[0xaf, 1], &payload);
                    }
                }
                SessionEvent::Video { timestamp, payload } => {
                    if let Some(&p) = players.first() {
                        let prefix = flv::avc_video_header(timestamp % 2 == 0, 1, 0);
                        s.send_media(p, true, timestamp, &prefix, &payload);
                    }
                }
                SessionEvent::ConnectRequest(info) => {
                    // The admission refuses, allows as given, or renames to the served app.
                    match rng.below(8) {
                        0 => {
                            s.reject_connect("no");
                            return; // the driver flushes and closes
                        }
                        1..=3 => {
                            if s.accept_connect(&info.app).is_err() {
                                return;
                            }
                        }
                        _ => s.accept_connect("live").expect("the configured app"),
                    }
                }
            }
        }
        assert!(
            events <= SESSION_MAX_EVENTS,
            "{events} events from one feed"
        );

        // The driver writes some of what is queued.
        let queued_now = s.out().len_bytes();
        if queued_now > 0 {
            let n = rng.below(queued_now + 1);
            s.out().advance(n);
            written += n;
            assert_eq!(s.out().len_bytes(), queued_now - n);
        }

        if r.is_err() {
            return;
        }
        if rest.is_empty() {
            // Input left behind by the event cap is decoded by further feeds without new data.
            if consumed == 0 && events == 0 {
                idle_rounds += 1;
                if idle_rounds > 2 {
                    return;
                }
            } else {
                idle_rounds = 0;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// media_codec_config

fn f64_bits(x: Option<f64>) -> Option<u64> {
    x.map(f64::to_bits)
}

/// On the same bytes: `AvcConfig::parse` (and, when it succeeds, `from_parameter_sets` rebuilds
/// an equivalent record), `AacConfig::parse` and `AacConfig::from_adts` (configs round-trip
/// through `adts_header` -> `from_adts` and through their `asc`), the AVCC iterator with NAL
/// length sizes 0..=5 (`avcc_to_annexb` restores `out` on error), and Annex-B: every unit is
/// non-empty and has no trailing zero or start code; annexb -> avcc -> annexb gives back the
/// same units and, for an input rewritten with 4-byte start codes, the same bytes.
pub fn media_codec_config(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);

    if let Ok(c) = AvcConfig::parse(bytes.clone()) {
        assert!(matches!(c.nal_length_size, 1 | 2 | 4));
        assert!(!c.sps.is_empty());
        let _ = (c.codec_string(), c.profile_name());
        let rebuilt = AvcConfig::from_parameter_sets(c.sps.clone(), c.pps.clone())
            .expect("parameter sets of a parsed record rebuild a record");
        assert_eq!(rebuilt.sps, c.sps);
        assert_eq!(rebuilt.pps, c.pps);
        assert_eq!(rebuilt.nal_length_size, 4);
        assert_eq!(
            (
                rebuilt.profile_idc,
                rebuilt.constraint_flags,
                rebuilt.level_idc
            ),
            (c.profile_idc, c.constraint_flags, c.level_idc)
        );
        assert_eq!((rebuilt.width, rebuilt.height), (c.width, c.height));
        assert_eq!(f64_bits(rebuilt.fps), f64_bits(c.fps));
    }

    if let Ok(c) = AacConfig::parse(bytes.clone()) {
        assert!(c.sample_rate > 0);
        let _ = c.codec_string();
        if let Ok(h) = c.adts_header(data.len()) {
            let (a, frame_len, header_len) = AacConfig::from_adts(&h).expect("our ADTS header");
            assert_eq!((frame_len, header_len), (data.len() + 7, 7));
            assert_eq!(
                (a.sampling_frequency_index, a.sample_rate, a.channel_config),
                (c.sampling_frequency_index, c.sample_rate, c.channel_config)
            );
            let expected_aot = if matches!(c.object_type, 5 | 29) {
                2
            } else {
                c.object_type
            };
            assert_eq!(a.object_type, expected_aot);
        }
    }

    if let Ok((c, frame_len, header_len)) = AacConfig::from_adts(data) {
        assert!(header_len == 7 || header_len == 9);
        assert!(frame_len >= header_len && frame_len < 1 << 13);
        assert_eq!(
            AacConfig::parse(c.asc.clone()).as_ref(),
            Ok(&c),
            "ADTS asc re-parse"
        );
        let h = c
            .adts_header(frame_len - 7)
            .expect("fields from an ADTS header fit one");
        assert_eq!(AacConfig::from_adts(&h), Ok((c, frame_len, 7)));
    }

    if let [nls, payload @ ..] = data {
        let nls = nls % 6;
        let mut seen_err = false;
        for nal in avc::avcc_nal_units(payload, nls) {
            assert!(!seen_err, "AVCC iterator yielded after an error");
            match nal {
                Ok(n) => assert!(!n.is_empty()),
                Err(_) => seen_err = true,
            }
        }
        let mut out = b"junk".to_vec();
        match avc::avcc_to_annexb(payload, nls, &mut out) {
            Ok(()) => assert!(!seen_err),
            Err(_) => assert_eq!(out, b"junk", "avcc_to_annexb left output behind on error"),
        }
        let _ = avc::avcc_contains_idr(payload, nls);
    }

    let nals: Vec<&[u8]> = avc::annexb_nal_units(data).collect();
    for n in &nals {
        assert!(!n.is_empty() && n.last() != Some(&0));
        assert!(
            !n.windows(3).any(|w| w == [0, 0, 1]),
            "start code inside a NAL unit"
        );
    }
    let mut avcc = Vec::new();
    avc::annexb_to_avcc(data, &mut avcc);
    let from_avcc: Vec<&[u8]> = avc::avcc_nal_units(&avcc, 4)
        .collect::<Result<_, _>>()
        .expect("annexb_to_avcc output is valid AVCC");
    assert_eq!(from_avcc, nals);
    let mut annexb = Vec::new();
    avc::avcc_to_annexb(&avcc, 4, &mut annexb).expect("valid AVCC");
    let mut canonical = Vec::new();
    for n in &nals {
        canonical.extend_from_slice(&[0, 0, 0, 1]);
        canonical.extend_from_slice(n);
    }
    assert_eq!(annexb, canonical);
    // The canonical (4-byte start code) form is a fixed point of annexb -> avcc -> annexb.
    let again: Vec<&[u8]> = avc::annexb_nal_units(&canonical).collect();
    assert_eq!(again, nals);
    let mut avcc2 = Vec::new();
    avc::annexb_to_avcc(&canonical, &mut avcc2);
    assert_eq!(avcc2, avcc);
}

// ---------------------------------------------------------------------------------------------
// ts_mux

#[derive(Arbitrary, Debug)]
enum TsPayload {
    Raw(Vec<u8>),
    /// NAL units (type, body) wrapped as AVCC with 4-byte lengths, so most frames validate.
    Nals(Vec<(u8, Vec<u8>)>),
    /// Filler of this length (large audio/video frames for little input).
    Filler(u16),
}

#[derive(Arbitrary, Debug)]
enum TsOp {
    Frame {
        video: bool,
        dts: i64,
        pts: i64,
        keyframe: bool,
        payload: TsPayload,
    },
    /// 0: H.264 + AAC, 1: H.264 only, 2: AAC only, 3: neither.
    SetTracks(u8),
    WriteTables,
}

/// The operations `ts_mux` decodes from `data`, for reports (`cargo fuzz fmt` shows bytes only).
pub fn describe_ts_mux(data: &[u8]) -> String {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < 64 && !u.is_empty() {
        let Ok(op) = TsOp::arbitrary(&mut u) else {
            break;
        };
        ops.push(format!("{op:?}"));
    }
    ops.join("\n")
}

fn media_info(sel: u8) -> MediaInfo {
    let avc = AvcConfig::parse(Bytes::from_static(AVC_BASELINE)).expect("testdata avcC");
    let aac = AacConfig::parse(Bytes::from_static(AAC_48K_STEREO)).expect("testdata asc");
    MediaInfo {
        video: (sel % 4 < 2).then_some(VideoCodec::H264(avc)),
        audio: sel.is_multiple_of(2).then_some(AudioCodec::Aac(aac)),
        framerate: None,
    }
}

/// Arbitrary frames (track, dts, pts, keyframe, payload), track changes and table writes through
/// `mpegts::TsMuxer` set up with the real H.264 + AAC configs from testdata. Checks: never
/// panics; output is whole 188-byte packets each starting with 0x47; a failed `write_frame`
/// appends nothing; continuity counters advance by one per packet on every PID.
pub fn ts_mux(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut mux = mpegts::TsMuxer::new();
    let skipped = mux.set_tracks(&media_info(0));
    assert!(skipped.is_empty());
    let mut out = BytesMut::new();
    let mut cc: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
    let mut checked = 0;
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let Ok(op) = TsOp::arbitrary(&mut u) else {
            break;
        };
        let before = out.len();
        match op {
            TsOp::SetTracks(sel) => {
                mux.set_tracks(&media_info(sel));
            }
            TsOp::WriteTables => mux.write_tables(&mut out),
            TsOp::Frame {
                video,
                dts,
                pts,
                keyframe,
                payload,
            } => {
                let payload = match payload {
                    TsPayload::Raw(b) => b,
                    TsPayload::Nals(nals) => {
                        let mut b = Vec::new();
                        for (t, body) in nals {
                            b.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
                            b.push(t);
                            b.extend_from_slice(&body);
                        }
                        b
                    }
                    TsPayload::Filler(n) => vec![0x55; usize::from(n)],
                };
                let frame = Frame {
                    track: if video {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    },
                    dts,
                    pts,
                    keyframe,
                    payload: Bytes::from(payload),
                };
                if mux.write_frame(&frame, &mut out).is_err() {
                    assert_eq!(out.len(), before, "failed write_frame appended output");
                }
            }
        }
        assert_eq!(out.len() % mpegts::PACKET_SIZE, 0, "partial packet");
        for p in out[checked..].chunks(mpegts::PACKET_SIZE) {
            assert_eq!(p[0], 0x47, "packet without sync byte");
            let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
            let c = p[3] & 0x0f;
            assert!(p[3] & 0x10 != 0, "every packet carries payload");
            if let Some(prev) = cc.insert(pid, c) {
                assert_eq!(
                    c,
                    (prev + 1) & 0x0f,
                    "continuity counter jump on PID {pid:#x}"
                );
            }
        }
        checked = out.len();
    }
}

// ---------------------------------------------------------------------------------------------
// ts_demux

/// Demuxes `data` (after a 1-byte piece-size seed) with `mpegts::TsDemuxer`, once whole and once
/// in pseudo-random pieces of 1..=256*(seed+1) bytes. Checks: never panics; both runs give the
/// same events and stats (chunking does not matter); no frame before the first `Tracks`; video
/// payloads are valid AVCC with 4-byte lengths and no AUD/SPS/PPS; audio AUs fit an ADTS frame;
/// every counted packet was fed.
pub fn ts_demux(data: &[u8]) {
    let Some((&seed, ts)) = data.split_first() else {
        return;
    };
    let run = |pieces: Option<u64>| {
        let mut d = mpegts::TsDemuxer::new();
        let mut events = Vec::new();
        let mut rest = ts;
        let mut rng = Rng::new(pieces.unwrap_or(0));
        while !rest.is_empty() {
            let n = match pieces {
                Some(s) => 1 + rng.below(256 * (s as usize + 1)),
                None => rest.len(),
            }
            .min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(e) = d.poll_event() {
                events.push(e);
            }
        }
        d.flush();
        while let Some(e) = d.poll_event() {
            events.push(e);
        }
        (events, d.stats())
    };
    let (events, stats) = run(None);
    // Every byte fed was either part of a packet or skipped.
    assert_eq!(
        stats.packets * mpegts::PACKET_SIZE as u64 + stats.skipped_bytes,
        ts.len() as u64
    );
    let mut tracks = false;
    for e in &events {
        match e {
            mpegts::DemuxEvent::Tracks(_) => tracks = true,
            mpegts::DemuxEvent::Frame(f) => {
                assert!(tracks, "frame before tracks");
                assert!(!f.payload.is_empty());
                match f.track {
                    TrackKind::Video => {
                        for nal in avc::avcc_nal_units(&f.payload, 4) {
                            let t = avc::nal_unit_type(nal.expect("valid AVCC"));
                            assert!(![avc::NAL_AUD, avc::NAL_SPS, avc::NAL_PPS].contains(&t));
                        }
                    }
                    TrackKind::Audio => assert!(f.payload.len() < 8192 && f.dts == f.pts),
                }
            }
            mpegts::DemuxEvent::Discontinuity { .. } => {}
        }
    }
    let (chunked, chunked_stats) = run(Some(u64::from(seed)));
    assert_eq!(events, chunked, "chunking changed the events");
    assert_eq!(stats, chunked_stats, "chunking changed the stats");
}

/// `flv_stream`: `[piece size][FLV byte stream]`. The FLV reader that takes ffmpeg's output
/// back from a pipe must never panic, must give the same tags (or the same error) whether the
/// bytes come whole or in pieces, and stays failed after an error.
pub fn flv_stream(data: &[u8]) {
    use rtmp::flv_stream::FlvReader;
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let read = |piece: usize| {
        let mut r = FlvReader::new(1 << 16);
        let mut tags = Vec::new();
        let mut error = None;
        for chunk in stream.chunks(piece.max(1)) {
            r.push(chunk);
            loop {
                match r.next_tag() {
                    Ok(Some(t)) => {
                        assert!(t.body.len() <= 1 << 16);
                        tags.push(t);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error.get_or_insert(e);
                        break;
                    }
                }
            }
            if error.is_some() {
                assert_eq!(r.next_tag(), Ok(None), "a failed reader stays failed");
                break;
            }
        }
        (tags, error)
    };
    let whole = read(stream.len());
    let pieces = read(usize::from(piece) + 1);
    assert_eq!(whole, pieces);
}

// ---------------------------------------------------------------------------------------------
// Inputs: HLS pull

/// The HLS pull's M3U8 parser on any text: no panic; every media segment has a URI and the
/// sequence numbers run on from `EXT-X-MEDIA-SEQUENCE`.
pub fn hls_playlist(data: &[u8]) {
    inputs::fuzzing::hls_playlist(data);
}

/// An fMP4 init segment and media segments, framed as `[u32 BE length][bytes]` records (the
/// first is the init), through the HLS pull's demuxer: no panic, frames only after tracks,
/// payloads within the input, decode times per track never decreasing within a segment.
pub fn fmp4_segment(data: &[u8]) {
    let mut parts = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 && parts.len() < 8 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let n = n.min(rest.len() - 4);
        parts.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    if let Some((init, segments)) = parts.split_first() {
        inputs::fuzzing::fmp4_segments(init, segments);
    }
}

/// What a WS-FLV viewer sends back (masked frames: pings, pongs, closes, data it may send),
/// through the server's client-frame reader in pieces of `1 + data[0]` bytes: no panic, at
/// most one frame header and one control payload held, pings answered with <= 125 bytes.
#[cfg(feature = "api")]
pub fn ws_flv_client(data: &[u8]) {
    let [split, frames @ ..] = data else {
        return;
    };
    ::api::fuzz_ws_client_frames(frames, 1 + usize::from(*split));
}
