//! The HLS multivariant playlists of a stream with a rendition ladder: `index.m3u8` lists the
//! source (`media.m3u8`) when the ladder has a `source` rung, and each rendition's own
//! playlist at its stable URL (`../<code>_<name>/index.m3u8`), best first; `cmaf.m3u8` does the
//! same over the CMAF playlists (`../<code>_<name>/cmaf-v.m3u8`), whose Low-Latency video
//! playlists then report where every other rung ends (`EXT-X-RENDITION-REPORT`).

use crate::AppState;
use crate::live::{M3U8, media_response, not_found};
use axum::body::Body;
use axum::response::Response;
use media::{AudioCodec, MediaInfo, VideoCodec};
use std::fmt::Write;
use std::time::Duration;

/// How long a multivariant request waits for rungs that are starting to have a segment.
const RUNG_WAIT: Duration = Duration::from_secs(8);
const POLL: Duration = Duration::from_millis(200);

/// `CODECS` of a variant, when every track's codec string is known.
fn codecs(info: &MediaInfo) -> Option<String> {
    let video = info.video.as_ref().map(VideoCodec::codec_string);
    let audio = info.audio.as_ref().map(AudioCodec::codec_string);
    let all: Option<Vec<String>> = video.into_iter().chain(audio).collect();
    all.filter(|v| !v.is_empty()).map(|v| v.join(","))
}

/// The `EXT-X-STREAM-INF` line of `code`, if it has segments to describe.
fn stream_inf(state: &AppState, code: &str) -> Option<String> {
    let stats = state.hls.variant_stats(code)?;
    let mut line = format!(
        "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
        stats.peak_bps, stats.average_bps
    );
    if let Some(info) = state.hub.stats(code).and_then(|s| s.info) {
        if let Some((w, h)) = info.video_size() {
            let _ = write!(line, ",RESOLUTION={w}x{h}");
        }
        if let Some(c) = codecs(&info) {
            let _ = write!(line, ",CODECS=\"{c}\"");
        }
        if let Some(fps) = info.fps().filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(line, ",FRAME-RATE={fps:.3}");
        }
    }
    Some(line)
}

/// The members of the ladder whose source is `code` (`None` for a stream that is no ladder's
/// source), once every one is `ready`: a ladder that is starting gets at most [`RUNG_WAIT`]
/// to have every rung listed; one that failed (no ffmpeg, say) is not waited for, and the
/// playlist lists what exists.
async fn source_ladder(
    state: &AppState,
    code: &str,
    ready: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let (parent, members) = ladder_members(state, code)?;
    if parent != code {
        return None;
    }
    let starting = || {
        state.transcoder.status(code).is_some_and(|s| {
            matches!(
                s.state,
                transcode::State::Starting | transcode::State::Running
            )
        })
    };
    let deadline = tokio::time::Instant::now() + RUNG_WAIT;
    while state.hub.is_live(code)
        && starting()
        && members.iter().any(|c| !ready(c))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(POLL).await;
    }
    Some(members)
}

/// The ladder `code` belongs to, as its source or one of its rungs: the codes its
/// multivariant playlists list, in the ladder's order (the source only when it is a rung).
pub(crate) fn ladder_members(state: &AppState, code: &str) -> Option<(String, Vec<String>)> {
    let parent = match state.control.rendition_of(code) {
        Some((parent, _)) => parent,
        None => code.to_owned(),
    };
    let spec = state.control.transcode(&parent).filter(|t| t.active())?;
    let members = spec
        .profiles
        .iter()
        .map(|p| {
            if p.is_source() {
                parent.clone()
            } else {
                transcode::rendition_code(&parent, &p.name)
            }
        })
        .collect();
    Some((parent, members))
}

/// The last path segment of a code: a sibling's playlist is at `../<leaf>/`.
pub(crate) fn leaf(code: &str) -> &str {
    code.rsplit('/').next().unwrap_or(code)
}

/// The CMAF multivariant playlist (`cmaf.m3u8`) of a stream with a ladder: every rung's CMAF
/// video playlist, best first, sharing the source's audio rendition.
pub(crate) async fn cmaf_master(state: &AppState, code: &str) -> Option<Response> {
    let members = source_ladder(state, code, |c| state.dash.hls_variant(c).is_some()).await?;
    let audio = state
        .dash
        .hls_variant(code)
        .and_then(|v| v.audio_group("cmaf-a.m3u8"));
    let variants: Vec<(::dash::HlsVariant, String)> = members
        .iter()
        .filter_map(|m| {
            let v = state.dash.hls_variant(m)?;
            v.video_codecs.as_ref()?;
            let uri = if m == code {
                "cmaf-v.m3u8".to_owned()
            } else {
                format!("../{}/cmaf-v.m3u8", leaf(m))
            };
            Some((v, uri))
        })
        .collect();
    if variants.is_empty() {
        return Some(not_found());
    }
    let text = ::dash::multivariant(&variants, audio.as_ref());
    Some(media_response(M3U8, "no-cache", Body::from(text)))
}

/// `EXT-X-RENDITION-REPORT`s for the video playlist of `code` in a ladder: where each other
/// rung's Low-Latency playlist ends, so a player switching to it asks for the right part at
/// once (RFC 8216bis 4.4.5.4).
pub(crate) fn rendition_reports(state: &AppState, code: &str) -> String {
    let Some((_, members)) = ladder_members(state, code) else {
        return String::new();
    };
    let mut out = String::new();
    for m in members.iter().filter(|m| *m != code) {
        if let Some((msn, part)) = state.dash.hls_report(m, media::TrackKind::Video) {
            let _ = write!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"../{}/cmaf-v.m3u8\",LAST-MSN={msn}",
                leaf(m)
            );
            if let Some(p) = part {
                let _ = write!(out, ",LAST-PART={p}");
            }
            out.push('\n');
        }
    }
    out
}

/// Serves the multivariant playlist of `code` when it has a ladder (`None` otherwise).
pub(crate) async fn master(state: &AppState, code: &str) -> Option<Response> {
    let members = source_ladder(state, code, |c| state.hls.variant_stats(c).is_some()).await?;
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut listed = 0;
    for m in &members {
        if let Some(inf) = stream_inf(state, m) {
            // The source is listed as its own media playlist, beside index.m3u8.
            if m == code {
                let _ = write!(out, "{inf}\nmedia.m3u8\n");
            } else {
                let _ = write!(out, "{inf}\n../{}/index.m3u8\n", leaf(m));
            }
            listed += 1;
        }
    }
    if listed == 0 {
        return Some(not_found());
    }
    Some(media_response(M3U8, "no-cache", Body::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::{AacConfig, AvcConfig};

    #[test]
    fn codecs_name_every_track_or_nothing() {
        let avc = AvcConfig::parse(bytes::Bytes::from_static(include_bytes!(
            "../../../testdata/h264-1280x720-high.avcc"
        )))
        .expect("avcc");
        let aac = AacConfig::parse(bytes::Bytes::from_static(include_bytes!(
            "../../../testdata/aac-48k-stereo.asc"
        )))
        .expect("asc");
        let info = MediaInfo {
            video_metadata: None,
            video: Some(VideoCodec::H264(avc)),
            audio: Some(AudioCodec::Aac(aac)),
            framerate: Some(30.0),
        };
        assert_eq!(codecs(&info).as_deref(), Some("avc1.64001f,mp4a.40.2"));
        let video_only = MediaInfo {
            audio: None,
            ..info
        };
        assert_eq!(codecs(&video_only).as_deref(), Some("avc1.64001f"));
        assert_eq!(codecs(&MediaInfo::default()), None);
    }
}

/// One rung of a running ladder.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RenditionRuntimeView {
    name: String,
    /// The code every output serves it under (`<code>_<name>`).
    code: String,
    width: u32,
    height: u32,
    video_bitrate_kbps: u32,
    /// Whether the rung is being published now.
    live: bool,
}

/// The ladder's ffmpeg child, for a stream with `transcode` on.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TranscodeRuntimeView {
    /// `waiting` (source not live), `starting`, `running` or `restarting`.
    state: &'static str,
    /// ffmpeg's H.264 encoder (`libx264`, `h264_nvenc`, `h264_vaapi`, `h264_qsv`).
    encoder: Option<String>,
    /// Why no hardware encoder is used although `hwaccel` asked for one.
    hwaccel_note: Option<String>,
    fps: f64,
    /// 1.0 keeps up with real time.
    speed: f64,
    frames: u64,
    /// Runs that failed and were restarted.
    restarts: u64,
    last_error: Option<String>,
    renditions: Vec<RenditionRuntimeView>,
}

/// The ladder of `code`, if it has one running or waiting.
pub(crate) fn runtime(state: &AppState, code: &str) -> Option<TranscodeRuntimeView> {
    let s = state.transcoder.status(code)?;
    Some(TranscodeRuntimeView {
        state: s.state.as_str(),
        encoder: s.encoder,
        hwaccel_note: s.hwaccel_note,
        fps: s.fps,
        speed: s.speed,
        frames: s.frames,
        restarts: s.restarts,
        last_error: s.last_error,
        renditions: s
            .renditions
            .into_iter()
            .map(|r| RenditionRuntimeView {
                live: state.hub.is_live(&r.code),
                name: r.name,
                code: r.code,
                width: r.width,
                height: r.height,
                video_bitrate_kbps: r.video_bitrate_kbps,
            })
            .collect(),
    })
}
