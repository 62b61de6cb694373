//! `/live/<code>/...` DASH files: `index.mpd`, `init-{v,a}-<period>.mp4`,
//! `{v,a}-<period>-<time>.m4s`, all from the [`::dash::DashService`] store.

use crate::AppState;
use crate::live::{media_response, not_found};
use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::Response;
use control::Output;
use media::TrackKind;

const MPD: &str = "application/dash+xml";

/// Whether `file` is one of the DASH names (so the caller can route it here).
pub(crate) fn is_dash_file(file: &str) -> bool {
    file == "index.mpd" || file.ends_with(".m4s") || file.starts_with("init-")
}

fn track(letter: &str) -> Option<TrackKind> {
    match letter {
        "v" => Some(TrackKind::Video),
        "a" => Some(TrackKind::Audio),
        _ => None,
    }
}

fn content_type(track: TrackKind) -> &'static str {
    match track {
        TrackKind::Video => "video/mp4",
        TrackKind::Audio => "audio/mp4",
    }
}

/// Serves a DASH file of `code`; 404 when DASH is off for it, unknown, or expired.
pub(crate) fn serve(state: &AppState, code: &str, file: &str, headers: &HeaderMap) -> Response {
    if !state.control.output_enabled(code, Output::Dash) {
        return not_found();
    }
    if file == "index.mpd" {
        return match state.dash.mpd(code) {
            Some(text) => {
                let text = absolute_time_url(text, headers);
                media_response(MPD, "no-cache", Body::from(text))
            }
            None => not_found(),
        };
    }
    if let Some(rest) = file
        .strip_prefix("init-")
        .and_then(|r| r.strip_suffix(".mp4"))
        && let Some((letter, period)) = rest.split_once('-')
        && let (Some(track), Ok(period)) = (track(letter), period.parse::<u64>())
    {
        // Init segments never change for a period id, so caches may keep them.
        return match state.dash.init(code, track, period) {
            Some(data) => media_response(content_type(track), "public, max-age=60", data.into()),
            None => not_found(),
        };
    }
    if let Some(rest) = file.strip_suffix(".m4s")
        && let Some((letter, rest)) = rest.split_once('-')
        && let Some((period, time)) = rest.split_once('-')
        && let (Some(track), Ok(period), Ok(time)) =
            (track(letter), period.parse::<u64>(), time.parse::<u64>())
    {
        return match state.dash.segment(code, track, period, time) {
            Some(data) => {
                state.hub.record_sent(code, data.len());
                media_response(content_type(track), "public, max-age=60", data.into())
            }
            None => not_found(),
        };
    }
    not_found()
}

/// Makes the `UTCTiming` URL absolute (`//host/time`): dash.js fetches it relative to the
/// page, not the MPD, so a player page served from another origin would miss the clock.
fn absolute_time_url(text: String, headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
    match host {
        Some(host) => {
            let from = format!("value=\"{}\"", ::dash::UTC_TIMING_PATH);
            let to = format!("value=\"//{host}{}\"", ::dash::UTC_TIMING_PATH);
            text.replacen(&from, &to, 1)
        }
        None => text,
    }
}
