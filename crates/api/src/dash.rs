//! `/live/<code>/...` DASH files: `index.mpd`, the low-latency `index-ll.mpd`,
//! `init-{v,a}-<period>.mp4`, `{v,a}-<period>-<time>.m4s` (the segment being written goes out
//! with chunked transfer, part by part), all from the [`::dash::DashService`] store.

use crate::AppState;
use crate::live::{media_response, not_found};
use ::dash::{GrowingSegment, MpdClient, MpdClock, SegmentBody, SegmentCut};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use control::Output;
use futures_util::{StreamExt, TryStreamExt};
use media::TrackKind;
use std::time::SystemTime;

pub(crate) const MPD: &str = "application/dash+xml";

/// The low-latency MPD (OvenMediaEngine serves its own as `manifest_ll.mpd`).
const LOW_LATENCY_MPD: &str = "index-ll.mpd";

const M3U8: &str = "application/vnd.apple.mpegurl";

/// Whether `file` is one of the DASH names (so the caller can route it here); the segments
/// and parts are shared with HLS over CMAF.
pub(crate) fn is_dash_file(file: &str) -> bool {
    matches!(file, "index.mpd" | LOW_LATENCY_MPD)
        || file.ends_with(".m4s")
        || file.starts_with("init-")
        // A DVR MPD's initialization segments (`rec-<id>-<v|a>-init.mp4`).
        || file.starts_with("rec-") && file.ends_with("-init.mp4")
}

/// Whether `file` is a playlist of HLS over the DASH packager's CMAF segments.
pub(crate) fn is_cmaf_playlist(file: &str) -> bool {
    matches!(file, ::dash::MULTIVARIANT | "cmaf-v.m3u8" | "cmaf-a.m3u8")
}

/// Serves an HLS-over-CMAF playlist of `code`, holding a blocking reload (`_HLS_msn`,
/// `_HLS_part`) until the playlist has what it asks for.
pub(crate) async fn serve_hls(
    state: &AppState,
    code: &str,
    file: &str,
    directives: &[(String, String)],
) -> Response {
    let track = match file {
        "cmaf-v.m3u8" => TrackKind::Video,
        "cmaf-a.m3u8" => TrackKind::Audio,
        _ => {
            if let Some(ladder) = crate::ladder::cmaf_master(state, code).await {
                return ladder;
            }
            return match state.dash.hls_multivariant(code) {
                Some(text) => media_response(M3U8, "no-cache", Body::from(text)),
                None => not_found(),
            };
        }
    };
    let request = match ::dash::HlsRequest::parse(directives) {
        Ok(r) => r,
        Err(why) => return plain(StatusCode::BAD_REQUEST, why),
    };
    match state.dash.hls_media(code, track, request).await {
        ::dash::HlsAnswer::Playlist(mut text) => {
            // A live Low-Latency video playlist of a ladder says where its siblings are.
            if track == TrackKind::Video
                && text.contains("#EXT-X-PART-INF")
                && !text.contains("#EXT-X-ENDLIST")
            {
                text.push_str(&crate::ladder::rendition_reports(state, code));
            }
            media_response(M3U8, "no-cache", Body::from(text))
        }
        ::dash::HlsAnswer::NotFound => not_found(),
        ::dash::HlsAnswer::BadRequest(why) => plain(StatusCode::BAD_REQUEST, why),
        ::dash::HlsAnswer::Timeout => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the requested segment or part did not come in time",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn track(letter: &str) -> Option<TrackKind> {
    match letter {
        "v" => Some(TrackKind::Video),
        "a" => Some(TrackKind::Audio),
        _ => None,
    }
}

pub(crate) fn content_type(track: TrackKind) -> &'static str {
    match track {
        TrackKind::Video => "video/mp4",
        TrackKind::Audio => "audio/mp4",
    }
}

/// Serves a DASH file of `code`; 404 when DASH is off for it, unknown, or expired.
pub(crate) async fn serve(
    state: &AppState,
    code: &str,
    file: &str,
    headers: &HeaderMap,
) -> Response {
    if !state.control.output_enabled(code, Output::Dash) {
        return not_found();
    }
    if file == "index.mpd" || file == LOW_LATENCY_MPD {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let client = match file {
            LOW_LATENCY_MPD => MpdClient::LowLatency,
            _ => MpdClient::from_user_agent(user_agent),
        };
        let time_url = clock_url(headers);
        let clock = MpdClock {
            time_url: &time_url,
            now_ms: crate::time::system_ms(SystemTime::now()),
        };
        // With a ladder, `index.mpd` lists every rung in one video AdaptationSet (the
        // low-latency MPD, and GStreamer's variant of the timeline, stay the source's alone).
        let ladder = state
            .control
            .transcode(code)
            .filter(|t| t.active() && file == "index.mpd" && client == MpdClient::Generic);
        let text = match ladder {
            Some(spec) => {
                let rungs: Vec<(String, String)> = crate::ladder::ladder_members(state, code)
                    .map(|(_, members)| members)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| m != code)
                    .map(|m| {
                        let prefix = format!("../{}/", crate::ladder::leaf(&m));
                        (m, prefix)
                    })
                    .collect();
                state
                    .dash
                    .ladder_mpd(code, &rungs, spec.has_source(), client, &clock)
            }
            None => state.dash.mpd(code, client, &clock),
        };
        return match text {
            Some(text) => media_response(MPD, "no-cache", Body::from(text)),
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
    // A part: `{v,a}-<period>-<segment time>-p<index>.m4s`.
    if let Some(rest) = file.strip_suffix(".m4s")
        && let Some((rest, part)) = rest.rsplit_once("-p")
        && let Some((letter, rest)) = rest.split_once('-')
        && let Some((period, segment)) = rest.split_once('-')
        && let (Some(track), Ok(period), Ok(segment), Ok(part)) = (
            track(letter),
            period.parse::<u64>(),
            segment.parse::<u64>(),
            part.parse::<u32>(),
        )
    {
        return match state.dash.part_body(code, track, period, segment, part) {
            Some(SegmentBody::Complete(chunks)) => complete_response(state, code, track, chunks),
            Some(SegmentBody::Growing(mut growing)) => match growing.next().await {
                // Headers go out with the part's first chunk: a hinted part that never begins
                // (its segment closed first) is a 404, not a cut body.
                Ok(Some(first)) => growing_response(state, code, track, first, growing),
                Ok(None) | Err(SegmentCut) => not_found(),
            },
            None => not_found(),
        };
    }
    if let Some(rest) = file.strip_suffix(".m4s")
        && let Some((letter, rest)) = rest.split_once('-')
        && let Some((period, time)) = rest.split_once('-')
        && let (Some(track), Ok(period), Ok(time)) =
            (track(letter), period.parse::<u64>(), time.parse::<u64>())
    {
        return match state.dash.segment_body(code, track, period, time) {
            Some(SegmentBody::Complete(pieces)) => complete_response(state, code, track, pieces),
            Some(SegmentBody::Growing(growing)) => {
                growing_response(state, code, track, Vec::new(), growing)
            }
            None => not_found(),
        };
    }
    not_found()
}

/// A finished segment or part: its buffers as they are (its chunks'), one after the other.
fn complete_response(
    state: &AppState,
    code: &str,
    track: TrackKind,
    pieces: Vec<Bytes>,
) -> Response {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    state.hub.record_sent(code, len);
    let body = Body::from_stream(futures_util::stream::iter(
        pieces.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    let mut resp = media_response(content_type(track), "public, max-age=60", body);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// The segment or part being written, sent chunk by chunk as they are cut (chunked transfer:
/// no length), `first` first. It ends with the segment or part; one that cannot complete cuts
/// the connection, so neither the player nor a cache takes the short body for the whole.
/// Caches may keep the finished response like any segment's: its bytes are the same.
fn growing_response(
    state: &AppState,
    code: &str,
    track: TrackKind,
    first: Vec<Bytes>,
    growing: GrowingSegment,
) -> Response {
    let hub = state.hub.clone();
    let code = code.to_owned();
    hub.record_sent(&code, first.iter().map(Bytes::len).sum());
    let first = futures_util::stream::iter(first.into_iter().map(Ok::<_, SegmentCut>));
    let pieces = futures_util::stream::try_unfold(growing, move |mut growing| {
        let hub = hub.clone();
        let code = code.clone();
        async move {
            let Some(pieces) = growing.next().await? else {
                return Ok(None);
            };
            hub.record_sent(&code, pieces.iter().map(Bytes::len).sum());
            Ok::<_, SegmentCut>(Some((
                futures_util::stream::iter(pieces.into_iter().map(Ok::<_, SegmentCut>)),
                growing,
            )))
        }
    })
    .try_flatten();
    media_response(
        content_type(track),
        "public, max-age=60",
        Body::from_stream(first.chain(pieces)),
    )
}

/// The absolute URL of the server clock for the MPD's `UTCTiming`, as the player reached this
/// server: `Forwarded: proto=..;host=..` (RFC 7239, first element), else `X-Forwarded-Proto`
/// with `Host`, else `http://` + `Host`. It must be absolute: dash.js resolves it against the
/// page (another origin for an embedded player) and GStreamer's dashdemux fetches it as given,
/// failing on a protocol-relative `//host/time`. A header value that is not a plain scheme or
/// host name falls back to the next source; with no usable host the path stays relative.
pub(crate) fn clock_url(headers: &HeaderMap) -> String {
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .map(forwarded_first)
        .unwrap_or_default();
    let host = forwarded
        .1
        .or_else(|| header_str(headers, header::HOST).filter(|h| valid_host(h)));
    let proto = forwarded.0.or_else(|| {
        header_str(headers, "x-forwarded-proto")
            .and_then(|v| v.split(',').next())
            .and_then(scheme)
    });
    match host {
        Some(host) => format!(
            "{}://{host}{}",
            proto.unwrap_or("http"),
            ::dash::UTC_TIMING_PATH
        ),
        None => ::dash::UTC_TIMING_PATH.to_owned(),
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `proto` and `host` of the first element of a `Forwarded` header (the proxy nearest the
/// client), each only when valid.
fn forwarded_first(value: &str) -> (Option<&'static str>, Option<&str>) {
    let first = value.split(',').next().unwrap_or("");
    let (mut proto, mut host) = (None, None);
    for pair in first.split(';') {
        let Some((name, v)) = pair.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        match name.trim().to_ascii_lowercase().as_str() {
            "proto" => proto = scheme(v),
            "host" if valid_host(v) => host = Some(v),
            _ => {}
        }
    }
    (proto, host)
}

/// `http` or `https`, any case; nothing else is a scheme a player can fetch the clock with.
fn scheme(v: &str) -> Option<&'static str> {
    match v.trim() {
        s if s.eq_ignore_ascii_case("https") => Some("https"),
        s if s.eq_ignore_ascii_case("http") => Some("http"),
        _ => None,
    }
}

/// A host name, IPv4 or bracketed IPv6 address, with an optional port: nothing that could
/// end the attribute or change the URL's meaning (no `/`, `@`, `"`, spaces).
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn url(pairs: &[(&'static str, &'static str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        clock_url(&h)
    }

    #[test]
    fn clock_url_is_absolute_for_the_request() {
        assert_eq!(
            url(&[("host", "127.0.0.1:8080")]),
            "http://127.0.0.1:8080/time"
        );
        assert_eq!(url(&[("host", "[::1]:8080")]), "http://[::1]:8080/time");
        assert_eq!(
            url(&[("host", "a.example"), ("x-forwarded-proto", "HTTPS, http")]),
            "https://a.example/time"
        );
        assert_eq!(
            url(&[
                ("host", "internal:8080"),
                (
                    "forwarded",
                    "for=1.2.3.4;proto=https;host=\"cdn.example\", proto=http"
                )
            ]),
            "https://cdn.example/time"
        );
        // Forwarded without host keeps Host; its proto wins over X-Forwarded-Proto.
        assert_eq!(
            url(&[
                ("host", "a.example"),
                ("forwarded", "proto=https"),
                ("x-forwarded-proto", "http")
            ]),
            "https://a.example/time"
        );
    }

    #[test]
    fn clock_url_ignores_odd_header_values() {
        assert_eq!(
            url(&[("host", "a.example"), ("x-forwarded-proto", "javascript")]),
            "http://a.example/time"
        );
        assert_eq!(
            url(&[
                ("host", "a.example"),
                ("forwarded", "proto=ftp;host=\"ev\"il/x\"")
            ]),
            "http://a.example/time"
        );
        assert_eq!(url(&[("host", "a.example/evil")]), "/time");
        assert_eq!(url(&[("host", "a\"b")]), "/time");
        assert_eq!(url(&[]), "/time");
    }
}
