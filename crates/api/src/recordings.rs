//! Recordings of a stream: list, download, delete, start/stop, and the DVR playlists and byte
//! ranges players read them through.

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode, LenientJson};
use crate::streams::check_code;
use crate::time::rfc3339;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::ToSchema;

/// One recorded file.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingView {
    /// The file's id: its start, Unix ms.
    id: u64,
    /// First frame, RFC 3339.
    start: String,
    /// After the last frame (while recording: the latest keyframe), RFC 3339.
    end: String,
    duration_s: f64,
    bytes: u64,
    /// Being written now.
    recording: bool,
    /// `ts` (MPEG-TS, `video/mp2t`) or `fmp4` (fragmented MP4, `video/mp4`).
    format: &'static str,
    /// Where to download it (the API path).
    url: String,
}

/// A stream's recordings and whether it is being recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingsView {
    /// Recorded when live (its `recording` settings, or a start override).
    enabled: bool,
    /// The id of the file being written, if recording now.
    current: Option<u64>,
    /// Oldest first.
    files: Vec<RecordingView>,
    total_bytes: u64,
}

fn view(code: &str, f: &record::RecordingFile, current: Option<u64>) -> RecordingView {
    RecordingView {
        id: f.id,
        start: rfc3339(f.start_ms),
        end: rfc3339(f.end_ms),
        duration_s: f.duration_ms() as f64 / 1000.0,
        bytes: f.bytes,
        recording: current == Some(f.id),
        format: f.format.name(),
        url: format!("/api/v1/streams/{code}/recordings/{}", f.id),
    }
}

async fn recordings_view(state: &AppState, code: &str) -> RecordingsView {
    let current = state.recorder.current(code);
    let files = state.recorder.list(code).await;
    RecordingsView {
        enabled: state.recorder.wanted(code),
        current,
        total_bytes: files.iter().map(|f| f.bytes).sum(),
        files: files.iter().map(|f| view(code, f, current)).collect(),
    }
}

/// The recorded files of a stream (also of a deleted one whose files are still on disk).
#[utoipa::path(
    get,
    path = "/streams/{code}/recordings",
    tag = "recordings",
    params(("code" = String, Path, description = "Stream code")),
    responses(
        (status = 200, description = "The recordings, oldest first", body = RecordingsView),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn list_recordings(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<RecordingsView>, ApiError> {
    check_code(&code)?;
    Ok(Json(recordings_view(&state, &code).await))
}

/// Start, stop, or hand back to the settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingAction {
    /// `start` records the stream whatever its settings say, `stop` stops it, `auto` lets
    /// its `recording` settings decide again. Kept until the process restarts.
    action: String,
}

/// Starts or stops recording a stream now.
#[utoipa::path(
    post,
    path = "/streams/{code}/recording",
    tag = "recordings",
    params(("code" = String, Path, description = "Stream code")),
    request_body = RecordingAction,
    responses(
        (status = 200, description = "Done; the recordings", body = RecordingsView),
        (status = 400, description = "Malformed body or code, or an unknown action", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
    )
)]
pub async fn set_recording(
    State(state): State<AppState>,
    Path(code): Path<String>,
    LenientJson(body): LenientJson<RecordingAction>,
) -> Result<Json<RecordingsView>, ApiError> {
    check_code(&code)?;
    if state.control.get(&code).is_none() && !state.hub.is_live(&code) {
        return Err(ApiError::not_found(format!("stream {code:?} not found")));
    }
    match body.action.as_str() {
        "start" => state.recorder.set_override(&code, true),
        "stop" => state.recorder.set_override(&code, false),
        "auto" => state.recorder.clear_override(&code),
        other => {
            return Err(ApiError::bad_field(
                ErrorCode::ValidationFailed,
                "action",
                format!("{other:?} is not one of start, stop, auto"),
            ));
        }
    }
    // A start takes effect at the stream's next keyframe; a stop closes the file now.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    Ok(Json(recordings_view(&state, &code).await))
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_field(ErrorCode::InvalidId, "id", "must be a recording id"))
}

/// Downloads one recorded file (MPEG-TS or MP4); `Range` requests are answered with 206.
#[utoipa::path(
    get,
    path = "/streams/{code}/recordings/{id}",
    tag = "recordings",
    params(
        ("code" = String, Path, description = "Stream code"),
        ("id" = u64, Path, description = "Recording id"),
    ),
    responses(
        (status = 200, description = "The file (`video/mp2t` or `video/mp4` by its format)", content_type = "video/mp2t"),
        (status = 206, description = "The requested range", content_type = "video/mp2t"),
        (status = 400, description = "Invalid code or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 416, description = "Range outside the file"),
    )
)]
pub async fn download_recording(
    State(state): State<AppState>,
    Path((code, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let id = parse_id(&id)?;
    let Some(file) = state.recorder.find(&code, id).await else {
        return Err(ApiError::not_found(format!(
            "no recording {id} of {code:?}"
        )));
    };
    // Behind the API's token: no shared cache may keep it.
    Ok(serve_file(
        &file.path,
        file.format.content_type(),
        &headers,
        Some(&format!(
            "{}-{id}.{}",
            code.replace('/', "_"),
            file.format.ext()
        )),
        "private, no-cache",
    )
    .await)
}

/// Deletes one recorded file (not the one being written).
#[utoipa::path(
    delete,
    path = "/streams/{code}/recordings/{id}",
    tag = "recordings",
    params(
        ("code" = String, Path, description = "Stream code"),
        ("id" = u64, Path, description = "Recording id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid code or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 409, description = "The file is being recorded", body = ErrorBody),
    )
)]
pub async fn delete_recording(
    State(state): State<AppState>,
    Path((code, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_code(&code)?;
    let id = parse_id(&id)?;
    match state.recorder.delete(&code, id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found(format!(
            "no recording {id} of {code:?}"
        ))),
        Err(e) if state.recorder.current(&code) == Some(id) => {
            Err(ApiError::conflict(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(stream = %code, id, error = %e, "recording not deleted");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the recording could not be deleted",
            ))
        }
    }
}

/// The one `bytes=a-b` / `bytes=a-` / `bytes=-n` range of a `Range` header over `len` bytes;
/// `Err(())` when it is unsatisfiable. Several ranges are answered as the whole file.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    Some(if range.0 > range.1 || range.0 >= len {
        Err(())
    } else {
        Ok(range)
    })
}

/// Streams a recorded file, or the range `headers` ask for, without reading it whole into
/// memory (a 10-hour file costs what a 10-second one does).
pub(crate) async fn serve_file(
    path: &std::path::Path,
    content_type: &'static str,
    headers: &HeaderMap,
    download: Option<&str>,
    cache: &'static str,
) -> Response {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(len) = f.metadata().await.map(|m| m.len()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if f.seek(SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        f.take(count),
        64 * 1024,
    ));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Some(name) = download
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// What an `index.m3u8` query asks of the recording (Open-Streamer's parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dvr {
    /// `from=<unix s>&dur=<s>` or `ago=<s>&dur=<s>`: a VOD window, Unix ms.
    Window(i64, i64),
    /// `delay=<s>`: the live stream that many ms behind.
    Delay(i64),
    /// `dvr=<s>`: the live stream with that many ms of the recording behind it to rewind into
    /// (a live HLS playlist of them, or a DASH `timeShiftBufferDepth`).
    Live(i64),
}

/// Seconds from a query value as ms, refusing what is not a finite, non-negative number or is
/// beyond a century (so no arithmetic on it can overflow).
fn seconds_ms(k: &str, v: &str) -> Result<i64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && (0.0..=3.2e9).contains(x))
        .map(|x| (x * 1000.0) as i64)
        .ok_or_else(|| format!("{k}={v:?} is not a number of seconds"))
}

/// The DVR request of an `index.m3u8` query; `None` when the query has none.
pub(crate) fn dvr_request(args: &[(String, String)], now_ms: i64) -> Option<Result<Dvr, String>> {
    let get = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let num = |k: &str| get(k).map(|v| seconds_ms(k, v));
    if let Some(depth) = num("dvr") {
        if get("from").is_some() || get("ago").is_some() || get("delay").is_some() {
            return Some(Err("give dvr= alone".into()));
        }
        return Some(depth.and_then(|d| {
            if d == 0 || d > MAX_DVR_WINDOW_MS {
                Err(format!(
                    "dvr= is between 1 s and {} hours",
                    MAX_DVR_WINDOW_MS / 3_600_000
                ))
            } else {
                Ok(Dvr::Live(d))
            }
        }));
    }
    if let Some(delay) = num("delay") {
        if get("from").is_some() || get("ago").is_some() {
            return Some(Err("give delay= alone, or from=/ago= with dur=".into()));
        }
        return Some(delay.map(Dvr::Delay));
    }
    let from = match (num("from"), num("ago")) {
        (None, None) => return None,
        (Some(_), Some(_)) => return Some(Err("give from= or ago=, not both".into())),
        (Some(Err(e)), _) | (_, Some(Err(e))) => return Some(Err(e)),
        (Some(Ok(from)), None) => from,
        (None, Some(Ok(ago))) => now_ms.saturating_sub(ago),
    };
    let to = match num("dur") {
        None => now_ms,
        Some(Err(e)) => return Some(Err(e)),
        Some(Ok(d)) => from.saturating_add(d),
    };
    if to <= from {
        return Some(Err("the window is empty".into()));
    }
    // A playlist is built per request on the public port: its size (and the indexes read)
    // are bounded by the window.
    if to - from > MAX_DVR_WINDOW_MS {
        return Some(Err(format!(
            "a window is at most {} hours; ask for several",
            MAX_DVR_WINDOW_MS / 3_600_000
        )));
    }
    Some(Ok(Dvr::Window(from, to)))
}

/// The longest DVR window one playlist covers: 4 hours, at most ~7,200 two-second segments.
const MAX_DVR_WINDOW_MS: i64 = 4 * 3_600_000;

/// Segments a delayed live playlist lists, as the live HLS window does by default.
const DELAY_WINDOW: usize = 6;

/// `index.m3u8?delay=<s>`: the stream as it was `delay` ago, a live playlist of the recording.
pub(crate) async fn delayed_playlist(state: &AppState, code: &str, delay_ms: i64) -> Response {
    match state
        .recorder
        .delayed(code, delay_ms, DELAY_WINDOW, "rec-")
        .await
    {
        Some(text) => playlist_response(text),
        None => (
            StatusCode::NOT_FOUND,
            "nothing recorded that long ago (is the stream recorded?)\n",
        )
            .into_response(),
    }
}

fn playlist_response(text: String) -> Response {
    crate::live::media_response(crate::live::M3U8, "no-cache", Body::from(text))
}

/// `index.m3u8?dvr=<s>`: a live playlist of the last `depth_ms` of the recording, whose
/// segments keep their numbers as it slides, so a player can seek back through all of it.
pub(crate) async fn live_dvr_playlist(state: &AppState, code: &str, depth_ms: i64) -> Response {
    match state.recorder.live_dvr(code, depth_ms, "rec-").await {
        Some(text) => playlist_response(text),
        None => (
            StatusCode::NOT_FOUND,
            "nothing recorded yet (is the stream recorded?)\n",
        )
            .into_response(),
    }
}

/// `index.mpd?from=..&dur=..` / `?ago=..&dur=..` (a static MPD of that window) or `?dvr=<s>`
/// (the live stream with a `timeShiftBufferDepth` of that much recording), over the stream's
/// fragmented MP4 recordings.
pub(crate) async fn dash_dvr(
    state: &AppState,
    code: &str,
    dvr: Dvr,
    headers: &HeaderMap,
) -> Response {
    let now = media::unix_ms_now();
    let (from, to, timeline) = match dvr {
        Dvr::Window(from, to) => (from, to, record::dash::Timeline::Window),
        Dvr::Live(depth) => (
            now.saturating_sub(depth),
            i64::MAX,
            record::dash::Timeline::Live {
                now_ms: now,
                depth_ms: depth,
            },
        ),
        Dvr::Delay(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "delay= is for HLS; a DASH player rewinds a dvr= MPD itself\n",
            )
                .into_response();
        }
    };
    let Some(body) = state.recorder.dash_mpd(code, from, to, timeline).await else {
        return (
            StatusCode::NOT_FOUND,
            "nothing recorded as fragmented MP4 in that window (DASH needs recording.format \
             fmp4)\n",
        )
            .into_response();
    };
    let time_url = crate::dash::clock_url(headers);
    let text = ::dash::finish_mpd(
        &body,
        &::dash::MpdClock {
            time_url: &time_url,
            now_ms: now,
        },
    );
    crate::live::media_response(crate::dash::MPD, "no-cache", Body::from(text))
}

/// `/live/<code>/rec-<id>-<v|a>-<seq>.m4s` (or `-init.mp4`): one track of a recorded MP4
/// GOP, as DVR MPDs name it.
pub(crate) async fn serve_dash_recorded(state: &AppState, code: &str, file: &str) -> Response {
    let Some(name) = record::dash::SegmentName::parse(file) else {
        return crate::live::not_found();
    };
    let Some(data) = state.recorder.dash_segment(code, name).await else {
        return crate::live::not_found();
    };
    let content_type = crate::dash::content_type(if name.video {
        media::TrackKind::Video
    } else {
        media::TrackKind::Audio
    });
    // A GOP on disk never changes once indexed.
    crate::live::media_response(content_type, "public, max-age=3600", Body::from(data))
}

/// `index.m3u8?from=..&dur=..` / `?ago=..&dur=..`: a VOD playlist of the recording over that
/// window, in keyframe-aligned byte ranges of the recorded files.
pub(crate) async fn dvr_playlist(state: &AppState, code: &str, window: (i64, i64)) -> Response {
    let segments = state.recorder.dvr(code, window.0, window.1).await;
    match record::catalog::dvr_playlist(&segments, "rec-") {
        Some(text) => playlist_response(text),
        None => (
            StatusCode::NOT_FOUND,
            "nothing was recorded in that window\n",
        )
            .into_response(),
    }
}

/// `/live/<code>/rec-<id>.ts` (or `.mp4`): a recorded file, as DVR playlists name it, with
/// ranges.
pub(crate) async fn serve_recorded(
    state: &AppState,
    code: &str,
    id: u64,
    ext: &str,
    headers: &HeaderMap,
) -> Response {
    match state.recorder.find(code, id).await {
        // A closed file never changes; the one being written grows.
        Some(f) if f.format.ext() == ext => {
            let cache = if f.complete {
                "public, max-age=3600"
            } else {
                "no-cache"
            };
            let mut r = serve_file(&f.path, f.format.content_type(), headers, None, cache).await;
            // Browser players (hls.js) read it from another origin, as live segments.
            r.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            r
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some(Ok((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=5-1", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=x-1", 1000), None);
    }

    #[test]
    fn dvr_requests() {
        let q = |s: &[(&str, &str)]| -> Vec<(String, String)> {
            s.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
        };
        let now = 1_000_000;
        let w = |from, to| Some(Ok(Dvr::Window(from, to)));
        assert_eq!(dvr_request(&q(&[("key", "x")]), now), None);
        assert_eq!(
            dvr_request(&q(&[("ago", "60"), ("dur", "30")]), now),
            w(940_000, 970_000)
        );
        assert_eq!(
            dvr_request(&q(&[("from", "900"), ("dur", "10")]), now),
            w(900_000, 910_000)
        );
        assert_eq!(
            dvr_request(&q(&[("ago", "10")]), now),
            w(990_000, 1_000_000)
        );
        assert_eq!(
            dvr_request(&q(&[("delay", "30")]), now),
            Some(Ok(Dvr::Delay(30_000)))
        );
        assert_eq!(
            dvr_request(&q(&[("dvr", "3600")]), now),
            Some(Ok(Dvr::Live(3_600_000)))
        );
        for bad in [
            &[("dvr", "0")][..],
            &[("dvr", "20000")],
            &[("dvr", "60"), ("ago", "10")],
        ] {
            assert!(matches!(dvr_request(&q(bad), now), Some(Err(_))), "{bad:?}");
        }
        for bad in [
            &[("ago", "-1")][..],
            &[("ago", "1"), ("from", "1")],
            &[("delay", "5"), ("ago", "1")],
            &[("from", "900"), ("dur", "0")],
            &[("dur", "1e300"), ("from", "1")],
            &[("ago", "NaN")],
            &[("delay", "inf")],
        ] {
            assert!(matches!(dvr_request(&q(bad), now), Some(Err(_))), "{bad:?}");
        }
        // Huge but allowed values saturate instead of overflowing; windows are bounded.
        assert!(matches!(
            dvr_request(&q(&[("ago", "3e9"), ("dur", "60")]), now),
            Some(Ok(Dvr::Window(_, _)))
        ));
        assert!(matches!(
            dvr_request(&q(&[("ago", "3e9")]), now),
            Some(Err(_))
        ));
        assert!(matches!(
            dvr_request(&q(&[("from", "0"), ("dur", "20000")]), now),
            Some(Err(_))
        ));
    }
}
