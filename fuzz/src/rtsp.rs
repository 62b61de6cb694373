//! RTSP: request framing and parsing as `rtsp::conn` does it (rtsp-types), the request fields
//! the server reads (`rtsp::request`), and the SDP it writes for `DESCRIBE` (`rtsp::sdp`).

use bytes::Bytes;
use media::{AacConfig, AudioCodec, AvcConfig, MediaInfo, VideoCodec};
use rtsp::request::{self, TransportRequest};
use rtsp_types::{Message, Method, ParseError, Response, StatusCode, Version, headers};

use crate::Rng;

/// Application name the RTSP targets serve, as `rtsp.app` in the example config.
const APP: &str = "live";

// ---------------------------------------------------------------------------------------------
// rtsp_request

/// What the connection loop does with a buffer: the messages it takes, then how it stops.
#[derive(Debug, PartialEq)]
enum Framing {
    /// Waiting for more bytes, holding this many.
    Incomplete(usize),
    /// More than `rtsp::conn::MAX_REQUEST_BYTES` buffered without a whole message.
    TooLarge,
    /// Garbage at this offset of the stream: 400 and close.
    Malformed(u64),
}

/// `rtsp::conn::serve`'s read loop over `stream`, fed in pieces of `piece()` bytes.
fn frame(stream: &[u8], mut piece: impl FnMut() -> usize) -> (Vec<Message<Vec<u8>>>, Framing) {
    let mut input = Vec::new();
    let mut consumed = 0u64;
    let mut msgs = Vec::new();
    let mut rest = stream;
    loop {
        loop {
            match Message::<Vec<u8>>::parse(&input[..]) {
                Ok((msg, used)) => {
                    assert!(used > 0 && used <= input.len(), "parse used {used} bytes");
                    input.drain(..used);
                    consumed += used as u64;
                    msgs.push(msg);
                }
                Err(ParseError::Incomplete(_)) => {
                    if input.len() > rtsp::conn::MAX_REQUEST_BYTES {
                        return (msgs, Framing::TooLarge);
                    }
                    break;
                }
                Err(ParseError::Error) => return (msgs, Framing::Malformed(consumed)),
            }
        }
        if rest.is_empty() {
            return (msgs, Framing::Incomplete(input.len()));
        }
        let n = piece().clamp(1, rest.len());
        input.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// The response head `rtsp::conn` writes (`response()`), echoing the request's CSeq.
fn response(status: StatusCode, cseq: Option<&str>) -> Vec<u8> {
    let mut b = Response::builder(Version::V1_0, status).header(headers::SERVER, "ferrocast");
    if let Some(c) = cseq {
        b = b.header(headers::CSEQ, c.to_owned());
    }
    let mut out = Vec::new();
    b.build(Vec::<u8>::new())
        .write(&mut out)
        .expect("writing to a Vec");
    out
}

/// A byte stream from an RTSP client, read as `rtsp::conn::serve` reads it: rtsp-types'
/// `Message::parse` on the buffered bytes, taking whole messages, waiting on `Incomplete` up
/// to `MAX_REQUEST_BYTES`, closing on garbage. For every request, the fields the server acts
/// on: CSeq, the URL path (`rtsp::request::path`) and query, and for SETUP the `Transport`
/// header (`rtsp::request::transport`). Checks: nothing panics; a parse never claims more bytes
/// than it had; reading a stream of whole messages whole or in pseudo-random pieces gives the
/// same messages (below the size cap; for garbage, the messages before it agree); the
/// response echoing a request's CSeq parses back as a response, with that CSeq when it is a
/// number.
///
/// Layout: `[piece-size seed][stream ...]`.
pub fn rtsp_request(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let (msgs, end) = frame(stream, || usize::MAX);
    for msg in &msgs {
        let Message::Request(req) = msg else {
            continue;
        };
        let cseq = req.header(&headers::CSEQ).map(|v| v.as_str().to_owned());
        let target = req.request_uri().map(|url| {
            let args: Vec<(String, String)> = url
                .query_pairs()
                .take(32)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            (request::path(url.path(), APP), args)
        });
        if *req.method() == Method::Setup
            && let Some(t) = req.header(&headers::TRANSPORT)
        {
            let track = match &target {
                Some((Ok(p), _)) => p.track.unwrap_or(0),
                _ => 0,
            };
            let _ = request::transport(t.as_str(), track);
        }
        let out = response(StatusCode::Ok, cseq.as_deref());
        match Message::<Vec<u8>>::parse(&out[..]) {
            Ok((Message::Response(r), used)) => {
                assert_eq!(used, out.len(), "response not parsed whole");
                // RFC 2326 12.17: CSeq is digits. Anything else (e.g. two CSeq headers, which
                // rtsp-types joins with ", ") only has to give a response that parses.
                if cseq
                    .as_deref()
                    .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
                {
                    assert_eq!(
                        r.header(&headers::CSEQ).map(|v| v.as_str().to_owned()),
                        cseq,
                        "CSeq not echoed intact"
                    );
                }
            }
            other => panic!(
                "our response to CSeq {cseq:?} does not parse: {other:?}\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    if stream.len() <= rtsp::conn::MAX_REQUEST_BYTES {
        let mut rng = Rng::new(u64::from(seed));
        let max = 1 + usize::from(seed) * 4;
        let (chunked, chunked_end) = frame(stream, || 1 + rng.below(max));
        if end == Framing::Incomplete(0) {
            // A stream of whole messages reads the same however TCP cuts it.
            assert_eq!(msgs, chunked, "reading in pieces changed the messages");
            assert_eq!(end, chunked_end, "reading in pieces changed the end");
        } else {
            // Garbage may be refused at a different point (rtsp-types can call a prefix
            // malformed that it calls incomplete once more bytes are there), but what was
            // taken before must agree.
            let n = msgs.len().min(chunked.len());
            assert_eq!(
                msgs[..n],
                chunked[..n],
                "reading in pieces changed the messages"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rtsp_transport

/// `rtsp::request::transport` and `rtsp::request::path` on any string: never panic; a chosen
/// transport is what the header asked for, and the `Transport` reply the server builds from
/// it (`RTP/AVP/TCP;unicast;interleaved=a-b` / `RTP/AVP;unicast;client_port=a-b;...`) parses
/// back to the same choice; a path target has a valid code and track 0 or 1.
///
/// Layout: `[bit 7: path, else Transport; bit 0: track][string, UTF-8 (lossy) ...]`.
pub fn rtsp_transport(data: &[u8]) {
    let [sel, s @ ..] = data else {
        return;
    };
    let s = String::from_utf8_lossy(s);
    if sel & 0x80 != 0 {
        if let Ok(t) = request::path(&s, APP) {
            assert!(hub::valid_code(t.code) && t.track.is_none_or(|t| t < 2));
            let mut again = format!("/{APP}/{}", t.code);
            if let Some(i) = t.track {
                again.push_str(&format!("/trackID={i}"));
            }
            assert_eq!(request::path(&again, APP), Ok(t));
        }
        return;
    }
    let track = usize::from(sel & 1);
    let Ok(choice) = request::transport(&s, track) else {
        return;
    };
    let reply = match choice {
        TransportRequest::Interleaved { rtp, rtcp } => {
            format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}")
        }
        TransportRequest::Udp { rtp, rtcp } => {
            format!("RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port=6970-6971")
        }
    };
    assert_eq!(
        request::transport(&reply, track),
        Ok(choice),
        "reply {reply:?}"
    );
    assert!(s.to_ascii_uppercase().contains("RTP/AVP"));
}

// ---------------------------------------------------------------------------------------------
// sdp_describe

/// `rtsp::sdp::describe` for a publisher's codec configuration (the avcC record and
/// AudioSpecificConfig an RTMP/SRT publisher sends, parsed by `AvcConfig::parse` /
/// `AacConfig::parse`), any session name and origin address. Checks: every line ends in CRLF
/// and none has a bare CR or LF; sdp-types parses the whole text; there is one `m=` per track
/// in order, each with the `rtpmap`/`fmtp`/`control` of its payload type; the H.264
/// `sprop-parameter-sets` decode back to the SPS/PPS and `profile-level-id` matches the SPS;
/// the AAC `config=` decodes back to the AudioSpecificConfig and `rtpmap` carries its rate.
///
/// Layout: `[flags: bit 0 video, bit 1 audio, bit 2 IPv6 origin][avcC len: u16 LE][avcC]
/// [asc len: u8][asc][session name, UTF-8 (lossy) ...]`.
pub fn sdp_describe(data: &[u8]) {
    let [flags, l0, l1, rest @ ..] = data else {
        return;
    };
    let (record, rest) = rest.split_at(usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len()));
    let Some((&asc_len, rest)) = rest.split_first() else {
        return;
    };
    let (asc, name) = rest.split_at(usize::from(asc_len).min(rest.len()));
    let avc = (flags & 1 != 0)
        .then(|| AvcConfig::parse(Bytes::copy_from_slice(record)).ok())
        .flatten();
    let aac = (flags & 2 != 0)
        .then(|| AacConfig::parse(Bytes::copy_from_slice(asc)).ok())
        .flatten();
    let info = MediaInfo {
        video: avc.clone().map(VideoCodec::H264),
        audio: aac.clone().map(AudioCodec::Aac),
        framerate: None,
    };
    let name = String::from_utf8_lossy(name);
    let origin = if flags & 4 != 0 {
        "2001:db8::1"
    } else {
        "192.0.2.1"
    };
    let sdp = rtsp::sdp::describe(&info, &name, origin);
    check_sdp(&sdp, avc.as_ref(), aac.as_ref());
}

fn check_sdp(sdp: &str, avc: Option<&AvcConfig>, aac: Option<&AacConfig>) {
    assert!(sdp.ends_with("\r\n"), "{sdp:?}");
    for line in sdp.split_terminator("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR or LF in line {line:?}"
        );
        let b = line.as_bytes();
        assert!(
            b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=',
            "not a <type>=<value> line: {line:?}"
        );
    }
    let session = sdp_types::Session::parse(sdp.as_bytes())
        .unwrap_or_else(|e| panic!("sdp-types refuses our SDP ({e:?}):\n{sdp}"));
    let mut expected = Vec::new();
    if avc.is_some() {
        expected.push((
            "video",
            rtsp::sdp::VIDEO_PAYLOAD_TYPE,
            rtsp::sdp::VIDEO_CONTROL,
        ));
    }
    if aac.is_some() {
        expected.push((
            "audio",
            rtsp::sdp::AUDIO_PAYLOAD_TYPE,
            rtsp::sdp::AUDIO_CONTROL,
        ));
    }
    assert_eq!(session.medias.len(), expected.len(), "{sdp}");
    for (m, (kind, pt, control)) in session.medias.iter().zip(expected) {
        assert_eq!(m.media, kind);
        assert_eq!(m.fmt, pt.to_string());
        let attr = |name: &str| {
            let v: Vec<&str> = m
                .attributes
                .iter()
                .filter(|a| a.attribute == name)
                .filter_map(|a| a.value.as_deref())
                .collect();
            assert_eq!(v.len(), 1, "one a={name} in the {kind} section:\n{sdp}");
            v[0].to_owned()
        };
        assert_eq!(attr("control"), control);
        let rtpmap = attr("rtpmap");
        let fmtp = attr("fmtp");
        let fmtp = fmtp
            .strip_prefix(&format!("{pt} "))
            .unwrap_or_else(|| panic!("fmtp of another payload type: {fmtp}"));
        let params: Vec<(&str, &str)> = fmtp
            .split(';')
            .map(|p| p.split_once('=').expect("fmtp parameters are key=value"))
            .collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        if let ("video", Some(avc)) = (kind, avc) {
            assert_eq!(rtpmap, format!("{pt} H264/90000"));
            let sets: Vec<Vec<u8>> = param("sprop-parameter-sets")
                .map(|s| s.split(',').map(unbase64).collect())
                .unwrap_or_default();
            let want: Vec<Vec<u8>> = avc
                .sps
                .iter()
                .chain(&avc.pps)
                .filter(|s| !s.is_empty())
                .map(|s| s.to_vec())
                .collect();
            assert_eq!(sets, want, "sprop-parameter-sets");
            let pli = param("profile-level-id").expect("profile-level-id");
            if let Some(sps) = avc.sps.first().and_then(|s| s.get(1..4)) {
                assert_eq!(pli, format!("{:02X}{:02X}{:02X}", sps[0], sps[1], sps[2]));
            }
        } else if let ("audio", Some(aac)) = (kind, aac) {
            assert!(
                rtpmap.starts_with(&format!("{pt} MPEG4-GENERIC/{}", aac.sample_rate)),
                "{rtpmap}"
            );
            let config = param("config").expect("config");
            assert_eq!(unhex(config), aac.asc.to_vec(), "config=");
        }
    }
}

fn unbase64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert!(s.len().is_multiple_of(4), "base64 length {s:?}");
    let mut out = Vec::new();
    for quad in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        let mut pad = 0;
        for &c in quad {
            n <<= 6;
            if c == b'=' {
                pad += 1;
            } else {
                assert_eq!(pad, 0, "base64 data after padding in {s:?}");
                n |= ALPHABET.iter().position(|&a| a == c).expect("base64 digit") as u32;
            }
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "hex length {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}
