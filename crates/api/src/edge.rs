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
/// differs by player family and by the host the player reached (its clock URL), so those
/// travel with the request and keep the cached answers apart.
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
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let client = ::dash::MpdClient::from_user_agent(Some(user_agent));
        let clock = crate::dash::clock_url(headers);
        if let Some((proto, rest)) = clock.split_once("://") {
            let host = rest.split('/').next().unwrap_or_default();
            sent.push(("forwarded", format!("proto={proto};host=\"{host}\"")));
        }
        if client != ::dash::MpdClient::Generic {
            sent.push(("user-agent", user_agent.to_owned()));
        }
        variant = format!("{client:?} {clock}");
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
        // Small, and its inline clock must be this answer's time, not the cached one's.
        let mut reader = fetch.reader();
        let mut text = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => {
                    return (
                        StatusCode::BAD_GATEWAY,
                        "the node that publishes this stream cut its answer\n",
                    )
                        .into_response();
                }
            }
        }
        let text = String::from_utf8_lossy(&text);
        let body = restamp_direct_clock(&text, media::unix_ms_now());
        return headed(status, head, Some(body.len() as u64), Body::from(body));
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

/// The MPD with its `urn:mpeg:dash:utc:direct:2014` time set to `now_ms`.
fn restamp_direct_clock(mpd: &str, now_ms: i64) -> String {
    const SCHEME: &str = "urn:mpeg:dash:utc:direct:2014\" value=\"";
    let Some(start) = mpd.find(SCHEME).map(|i| i + SCHEME.len()) else {
        return mpd.to_owned();
    };
    let Some(len) = mpd[start..].find('"') else {
        return mpd.to_owned();
    };
    let mut out = String::with_capacity(mpd.len());
    out.push_str(&mpd[..start]);
    media::write_iso8601(&mut out, now_ms);
    out.push_str(&mpd[start + len..]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_passed_on_mpd_tells_the_time_of_its_own_answer() {
        let mpd = "<MPD>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"2026-01-01T00:00:00.000Z\"/>\n</MPD>\n";
        let out = super::restamp_direct_clock(mpd, 1_000);
        assert_eq!(
            out,
            "<MPD>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"1970-01-01T00:00:01.000Z\"/>\n</MPD>\n"
        );
        assert_eq!(super::restamp_direct_clock("<MPD/>", 1), "<MPD/>");
    }
}
