//! SDP (RFC 4566) session description for RTSP `DESCRIBE`.

use crate::rtp::OPUS_CLOCK_RATE;
use media::{AacConfig, AudioCodec, AvcConfig, HevcConfig, MediaInfo, OpusConfig, VideoCodec};
use std::fmt::Write;

/// RTP payload type of the video track (H.264, H.265 or AV1).
pub const VIDEO_PAYLOAD_TYPE: u8 = 96;
/// RTP payload type of the audio track (AAC or Opus).
pub const AUDIO_PAYLOAD_TYPE: u8 = 97;
/// `a=control` value of the video track (relative to the content base).
pub const VIDEO_CONTROL: &str = "trackID=0";
/// `a=control` value of the audio track (relative to the content base).
pub const AUDIO_CONTROL: &str = "trackID=1";

/// RTP clock rate of H.264 and H.265 (RFC 6184 8.2.1, RFC 7798 7.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// The RTP payload format a track is described and packetized in.
///
/// A player set up from one SDP can only depacketize the format it was told, so a new track
/// set whose format differs needs a new `DESCRIBE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpFormat {
    /// H.264, RFC 6184 packetization-mode 1.
    H264,
    /// H.265, RFC 7798.
    H265,
    /// AV1, the AOM RTP payload format.
    Av1,
    /// AAC, RFC 3640 AAC-hbr, clocked at the sample rate.
    Aac {
        /// The RTP clock rate: the AAC sample rate.
        sample_rate: u32,
    },
    /// Opus, RFC 7587 (mono or stereo; multistream packets have no mapping).
    Opus,
}

impl RtpFormat {
    /// The format of `info`'s video track; `None` when its codec has no RTP mapping here.
    pub fn video(info: &MediaInfo) -> Option<RtpFormat> {
        match &info.video {
            Some(VideoCodec::H264(_)) => Some(RtpFormat::H264),
            Some(VideoCodec::H265(_)) => Some(RtpFormat::H265),
            Some(VideoCodec::Av1(_)) => Some(RtpFormat::Av1),
            _ => None,
        }
    }

    /// The format of `info`'s audio track; `None` when its codec has no RTP mapping here.
    pub fn audio(info: &MediaInfo) -> Option<RtpFormat> {
        match &info.audio {
            Some(AudioCodec::Aac(aac)) => Some(RtpFormat::Aac {
                sample_rate: aac.sample_rate,
            }),
            Some(AudioCodec::Opus(opus)) if opus_stereo(opus).is_some() => Some(RtpFormat::Opus),
            _ => None,
        }
    }

    /// The format of track `index` (the SDP's trackID: 0 video, 1 audio).
    pub fn of_track(info: &MediaInfo, index: usize) -> Option<RtpFormat> {
        match index {
            0 => RtpFormat::video(info),
            1 => RtpFormat::audio(info),
            _ => None,
        }
    }

    /// RTP clock rate announced in the SDP `rtpmap`.
    pub fn clock_rate(self) -> u32 {
        match self {
            RtpFormat::H264 | RtpFormat::H265 | RtpFormat::Av1 => VIDEO_CLOCK_RATE,
            RtpFormat::Aac { sample_rate } => sample_rate,
            RtpFormat::Opus => OPUS_CLOCK_RATE,
        }
    }
}

/// Whether an Opus stream is stereo, or `None` when its packets hold several Opus streams.
///
/// RFC 7587 carries one Opus stream (mono or stereo) per packet; the multistream packets of
/// surround mapping families would be misdecoded by every player, so they are not described.
pub fn opus_stereo(opus: &OpusConfig) -> Option<bool> {
    match (opus.mapping_family, &opus.mapping) {
        (0, _) => match opus.channels {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        },
        // A mapping table with a single stream: its packets are plain Opus packets.
        (_, Some((1, coupled, _))) => Some(*coupled > 0),
        _ => None,
    }
}

/// Describes the H.264 or H.265 and the AAC or Opus tracks of `info`; tracks of other codecs
/// (and multistream Opus) are left out.
///
/// Lines end in CRLF (RFC 4566 5). The origin's session id and version are both a hash of the
/// media sections, so the text is deterministic for a given configuration and the version changes
/// when a republish brings new parameter sets. `session_name` comes from the stream name, which a
/// publisher chose: CR and LF are replaced so it cannot add lines.
pub fn describe(info: &MediaInfo, session_name: &str, origin_addr: &str) -> String {
    let mut media = String::new();
    match &info.video {
        Some(VideoCodec::H264(avc)) => write_h264(&mut media, avc),
        Some(VideoCodec::H265(hevc)) => write_h265(&mut media, hevc),
        Some(VideoCodec::Av1(av1)) => write_av1(&mut media, av1),
        _ => {}
    }
    match &info.audio {
        Some(AudioCodec::Aac(aac)) => write_aac(&mut media, aac),
        Some(AudioCodec::Opus(opus)) => {
            if let Some(stereo) = opus_stereo(opus) {
                write_opus(&mut media, stereo);
            }
        }
        _ => {}
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

fn write_h264(out: &mut String, avc: &AvcConfig) {
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

fn write_av1(out: &mut String, av1: &media::Av1Config) {
    let pt = VIDEO_PAYLOAD_TYPE;
    // AV1 RTP 7.2: profile, level-idx and tier (optional, defaults 0; stated so a receiver
    // knows before the first sequence header).
    let _ = write!(
        out,
        "m=video 0 RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} AV1/90000\r\n\
         a=fmtp:{pt} profile={};level-idx={};tier={}\r\n\
         a=control:{VIDEO_CONTROL}\r\n",
        av1.profile,
        av1.level_idx,
        u8::from(av1.high_tier)
    );
}

fn write_h265(out: &mut String, hevc: &HevcConfig) {
    let pt = VIDEO_PAYLOAD_TYPE;
    let _ = write!(
        out,
        "m=video 0 RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} H265/90000\r\n"
    );
    // RFC 7798 7.1: profile, tier and level default to Main, Main tier and 3.1; stating them
    // keeps a Main 10 or level 5 stream from being taken for those. Parameters are separated
    // by "; " as in the RFC's examples, ffmpeg and MediaMTX.
    let mut params = Vec::new();
    if hevc.profile_space != 0 {
        params.push(format!("profile-space={}", hevc.profile_space));
    }
    if hevc.profile_idc != 0 {
        params.push(format!("profile-id={}", hevc.profile_idc));
    }
    params.push(format!("tier-flag={}", u8::from(hevc.high_tier)));
    if hevc.level_idc != 0 {
        params.push(format!("level-id={}", hevc.level_idc));
    }
    for (name, sets) in [
        ("sprop-vps", &hevc.vps),
        ("sprop-sps", &hevc.sps),
        ("sprop-pps", &hevc.pps),
    ] {
        let sets: Vec<String> = sets
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| base64(s))
            .collect();
        if !sets.is_empty() {
            params.push(format!("{name}={}", sets.join(",")));
        }
    }
    let _ = write!(
        out,
        "a=fmtp:{pt} {}\r\na=control:{VIDEO_CONTROL}\r\n",
        params.join("; ")
    );
}

fn write_opus(out: &mut String, stereo: bool) {
    let pt = AUDIO_PAYLOAD_TYPE;
    // RFC 7587 7: the rtpmap always says 2 channels, whatever the stream has; sprop-stereo
    // tells a receiver that stereo is worth decoding (its default 0 means mono).
    let _ = write!(
        out,
        "m=audio 0 RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} opus/{OPUS_CLOCK_RATE}/2\r\n"
    );
    if stereo {
        let _ = write!(out, "a=fmtp:{pt} sprop-stereo=1\r\n");
    }
    let _ = write!(out, "a=control:{AUDIO_CONTROL}\r\n");
}

fn write_aac(out: &mut String, aac: &AacConfig) {
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
