//! HLS and DASH requests for a stream published on another node of the cluster: answered with
//! the origin's own files through the node's shared fetch cache (`cluster::EdgeHttp`), so the
//! names, numbers and bytes a player sees are the same whichever node it asks.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cluster::{EdgeHttp, FetchReader};

/// Answers `path` (`/live/<code>/<file>`) from the origin at `base`, with `query`: the LL-HLS
/// delivery directives only, since the origin admits this node by the cluster key and a
/// player's own arguments (tokens, cache busters) would only split the shared fetches. An MPD
/// differs by player family, which travels with the request and keeps the cached answers
/// apart; its clock is this node's (see [`own_clock`]).
pub(crate) async fn pass_on(
    edge: &EdgeHttp,
    code: &str,
    base: &str,
    path: &str,
    query: &[(String, String)],
    mpd: bool,
    headers: &HeaderMap,
) -> Response {
    let mut sent: Vec<(&'static str, String)> = Vec::new();
    let mut variant = String::new();
    if mpd {
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let client = ::dash::MpdClient::from_user_agent(user_agent);
        if let Some(ua) = user_agent.filter(|_| client != ::dash::MpdClient::Generic) {
            sent.push(("user-agent", ua.to_owned()));
        }
        variant = format!("{client:?}");
    }
    let Some(fetch) = edge.get(base, path, query, &variant, &sent) else {
        tracing::warn!(
            max = cluster::MAX_IN_FLIGHT,
            "cluster: too many fetches from origins under way; request refused"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests to other nodes under way\n",
        )
            .into_response();
    };
    let head = fetch.head().await;
    // The origin is gone, or no longer has the stream's playlist (it moved): asked again
    // next time rather than trusted for the rest of its lookup's lifetime.
    let playlist = path.ends_with(".m3u8") || path.ends_with(".mpd");
    if head.as_ref().is_none_or(|h| playlist && h.status >= 400) {
        edge.forget_origin(code);
    }
    let Some(head) = head else {
        return (
            StatusCode::BAD_GATEWAY,
            "the node that publishes this stream did not answer\n",
        )
            .into_response();
    };
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if mpd && status == StatusCode::OK {
        return match own_clock(&fetch, headers).await {
            Some(text) => headed(status, head, Some(text.len() as u64), Body::from(text)),
            None => (
                StatusCode::BAD_GATEWAY,
                "the node that publishes this stream cut its answer\n",
            )
                .into_response(),
        };
    }
    let length = fetch.complete_len().or(head.content_length);
    let reader = fetch.reader();
    let body = Body::from_stream(futures_util::stream::unfold(
        Some(reader),
        |reader: Option<FetchReader>| async move {
            let mut reader = reader?;
            match reader.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                // Cut here too: no cache downstream keeps a short copy.
                Err(cut) => Some((Err(cut), None)),
            }
        },
    ));
    headed(status, head, length, body)
}

/// `body` with the origin's status and headers.
fn headed(status: StatusCode, head: cluster::Head, length: Option<u64>, body: Body) -> Response {
    let mut resp = body.into_response();
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, head.content_type),
        (header::CACHE_CONTROL, head.cache_control),
        (header::CONTENT_LENGTH, length.map(|l| l.to_string())),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// The origin's MPD finished with this node's clock, as its own MPDs are: the `UTCTiming`
/// URL of the host the player reached, and the time of this answer rather than the cached
/// one's. `None` when the origin cut it.
async fn own_clock(fetch: &std::sync::Arc<cluster::Fetch>, headers: &HeaderMap) -> Option<String> {
    let mut reader = fetch.reader();
    let mut text = Vec::new();
    while let Some(chunk) = reader.next().await.ok()? {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    let Some(body) = ::dash::mpd_body(&text) else {
        return Some(text.into_owned());
    };
    let time_url = crate::dash::clock_url(headers);
    Some(::dash::finish_mpd(
        body,
        &::dash::MpdClock {
            time_url: &time_url,
            now_ms: crate::time::system_ms(std::time::SystemTime::now()),
        },
    ))
}
