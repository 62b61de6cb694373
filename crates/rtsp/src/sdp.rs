//! SDP (RFC 4566) session description for RTSP `DESCRIBE`.

use media::{AacConfig, AvcConfig, MediaInfo};
use std::fmt::Write;

/// RTP payload type of the H.264 track.
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
/// RTP payload type of the AAC track.
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;
/// `a=control` value of the video track (relative to the content base).
pub const VIDEO_CONTROL: &str = "trackID=0";
/// `a=control` value of the audio track (relative to the content base).
pub const AUDIO_CONTROL: &str = "trackID=1";

/// Describes the H.264 and AAC tracks of `info`; tracks of other codecs are left out.
///
/// Lines end in CRLF (RFC 4566 5). The origin's session id and version are both a hash of the
/// media sections, so the text is deterministic for a given configuration and the version changes
/// when a republish brings new parameter sets. `session_name` comes from the stream name, which a
/// publisher chose: CR and LF are replaced so it cannot add lines.
pub fn describe(info: &MediaInfo, session_name: &str, origin_addr: &str) -> String {
    let mut media = String::new();
    if let Some(avc) = info.avc() {
        write_video(&mut media, avc);
    }
    if let Some(aac) = info.aac() {
        write_audio(&mut media, aac);
    }
    let id = fnv1a(media.as_bytes());
    let addr_type = if origin_addr.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let name: String = session_name
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    // RFC 4566 5.3: a session without a meaningful name SHOULD use a single space.
    let name = if name.is_empty() { " " } else { name.as_str() };
    let mut out = String::with_capacity(media.len() + 128);
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    let _ = write!(
        out,
        "v=0\r\n\
         o=- {id} {id} IN {addr_type} {origin_addr}\r\n\
         s={name}\r\n\
         c=IN {addr_type} {unspecified}\r\n\
         t=0 0\r\n\
         a=control:*\r\n",
        // RFC 4566 5.7 requires a c= line; the real destination is negotiated by SETUP.
        unspecified = if addr_type == "IP6" { "::" } else { "0.0.0.0" },
    );
    out.push_str(&media);
    out
}

fn write_video(out: &mut String, avc: &AvcConfig) {
    let pt = VIDEO_PAYLOAD_TYPE;
    // RFC 6184 8.1: profile_idc, constraint flags and level_idc, the 3 bytes after the NAL
    // header of the SPS; fall back to the parsed fields if the SPS is oddly short.
    let (profile, constraints, level) = match avc.sps.first().and_then(|s| s.get(1..4)) {
        Some(&[p, c, l]) => (p, c, l),
        _ => (avc.profile_idc, avc.constraint_flags, avc.level_idc),
    };
    let _ = write!(
        out,
        "m=video 0 RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} H264/90000\r\n\
         a=fmtp:{pt} packetization-mode=1;profile-level-id={profile:02X}{constraints:02X}{level:02X}"
    );
    let sets: Vec<String> = avc
        .sps
        .iter()
        .chain(&avc.pps)
        .filter(|s| !s.is_empty())
        .map(|s| base64(s))
        .collect();
    if !sets.is_empty() {
        let _ = write!(out, ";sprop-parameter-sets={}", sets.join(","));
    }
    let _ = write!(out, "\r\na=control:{VIDEO_CONTROL}\r\n");
}

fn write_audio(out: &mut String, aac: &AacConfig) {
    let pt = AUDIO_PAYLOAD_TYPE;
    let _ = write!(out, "m=audio 0 RTP/AVP {pt}\r\n");
    let _ = write!(out, "a=rtpmap:{pt} MPEG4-GENERIC/{}", aac.sample_rate);
    // ISO/IEC 14496-3 table 1.19: configurations 1..=6 have that many channels, 7 has 8; 0
    // means a program config element decides, and RFC 3640 lets the channel count be omitted.
    match aac.channel_config {
        0 => {}
        7 => out.push_str("/8"),
        n => {
            let _ = write!(out, "/{n}");
        }
    }
    let _ = write!(
        out,
        "\r\na=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
         indexlength=3;indexdeltalength=3;config="
    );
    for b in aac.asc.iter() {
        let _ = write!(out, "{b:02X}");
    }
    let _ = write!(out, "\r\na=control:{AUDIO_CONTROL}\r\n");
}

/// 32-bit FNV-1a: a stable, dependency-free hash for the SDP origin id.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Standard base64 (RFC 4648 4) with padding, as `sprop-parameter-sets` requires (RFC 6184 8.1).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
