//! Sans-I/O parsing of the request fields the server acts on: the request path and the
//! `Transport` header of `SETUP` (RFC 2326 12.39). `conn.rs` calls these; `fuzz/` fuzzes them.

use rtsp_types::StatusCode;

/// Most comma-separated alternatives read from one `Transport` header.
const MAX_TRANSPORT_SPECS: usize = 8;
/// Most `;` parameters read from one transport spec.
const MAX_TRANSPORT_PARAMS: usize = 16;

/// The transport a client asked for, as this server will use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportRequest {
    /// `RTP/AVP/TCP`: interleaved in the RTSP connection on these channels (RFC 2326 10.12).
    Interleaved {
        /// Channel of the RTP packets.
        rtp: u8,
        /// Channel of the RTCP packets.
        rtcp: u8,
    },
    /// `RTP/AVP[/UDP]`: to the client's UDP port pair.
    Udp {
        /// The client's RTP port.
        rtp: u16,
        /// The client's RTCP port.
        rtcp: u16,
    },
}

/// Parses a `client_port=a-b` / `interleaved=a-b` value; a single `a` means `a-(a+1)`.
pub fn port_pair(v: &str) -> Option<(u16, u16)> {
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let a: u16 = v.trim().parse().ok()?;
            (a, a.checked_add(1)?)
        }
    };
    Some((a, b))
}

/// Picks the first alternative of a `Transport` header this server supports, for track
/// `track` (its default interleaved channels are `2 * track` and `2 * track + 1`).
///
/// A TCP spec with bad `interleaved` channels is a 400; a UDP spec without `client_port` is
/// skipped; no usable spec is a 461.
pub fn transport(header: &str, track: usize) -> Result<TransportRequest, StatusCode> {
    for spec in header.split(',').take(MAX_TRANSPORT_SPECS) {
        let mut fields = spec.split(';').map(str::trim);
        let proto = fields.next().unwrap_or_default();
        let params: Vec<&str> = fields.take(MAX_TRANSPORT_PARAMS).collect();
        let find = |key: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        };
        if proto.eq_ignore_ascii_case("RTP/AVP/TCP") {
            let (a, b) = match find("interleaved") {
                Some(v) => port_pair(v).ok_or(StatusCode::BadRequest)?,
                None => {
                    let a = u16::try_from(track)
                        .ok()
                        .and_then(|t| t.checked_mul(2))
                        .ok_or(StatusCode::BadRequest)?;
                    (a, a.checked_add(1).ok_or(StatusCode::BadRequest)?)
                }
            };
            let rtp = u8::try_from(a).map_err(|_| StatusCode::BadRequest)?;
            let rtcp = u8::try_from(b).map_err(|_| StatusCode::BadRequest)?;
            return Ok(TransportRequest::Interleaved { rtp, rtcp });
        }
        let udp =
            proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVP/UDP");
        if let (true, Some((rtp, rtcp))) = (udp, find("client_port").and_then(port_pair)) {
            return Ok(TransportRequest::Udp { rtp, rtcp });
        }
    }
    Err(StatusCode::UnsupportedTransport)
}

/// The path of a request URL: `/<app>/<code>[/trackID=<0|1>]`, where the code may hold
/// namespaces (`/live/region/north/news`); a leading slash may be doubled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathTarget<'a> {
    /// Stream code (valid per [`hub::valid_code`]).
    pub code: &'a str,
    /// Track index, for a track URL.
    pub track: Option<usize>,
}

/// Parses a request path for application `app`; anything else is a 404.
pub fn path<'a>(path: &'a str, app: &str) -> Result<PathTarget<'a>, StatusCode> {
    let path = path.trim_start_matches('/');
    let path = path.strip_suffix('/').unwrap_or(path);
    let (a, rest) = path.split_once('/').ok_or(StatusCode::NotFound)?;
    if a != app {
        return Err(StatusCode::NotFound);
    }
    // Some clients double the slash after the application.
    let rest = rest.trim_start_matches('/');
    let (code, track) = match rest.rsplit_once('/') {
        Some((code, "trackID=0")) => (code, Some(0)),
        Some((code, "trackID=1")) => (code, Some(1)),
        Some((_, t)) if t.starts_with("trackID=") => return Err(StatusCode::NotFound),
        _ => (rest, None),
    };
    if !hub::valid_code(code) {
        return Err(StatusCode::NotFound);
    }
    Ok(PathTarget { code, track })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_and_gstreamer_transports() {
        // Lavf59.27.100 and GStreamer 1.22 rtspsrc (fuzz/seeds/rtsp_transport).
        assert_eq!(
            transport("RTP/AVP/TCP;unicast;interleaved=2-3", 1),
            Ok(TransportRequest::Interleaved { rtp: 2, rtcp: 3 })
        );
        assert_eq!(
            transport("RTP/AVP/UDP;unicast;client_port=6166-6167", 0),
            Ok(TransportRequest::Udp {
                rtp: 6166,
                rtcp: 6167
            })
        );
        assert_eq!(
            transport("RTP/AVP;unicast;client_port=34768-34769", 0),
            Ok(TransportRequest::Udp {
                rtp: 34768,
                rtcp: 34769
            })
        );
    }

    #[test]
    fn transport_choices_and_refusals() {
        // Defaults to the track's channels; skips a UDP spec without ports; 255 has no pair.
        assert_eq!(
            transport("RTP/AVP/TCP", 1),
            Ok(TransportRequest::Interleaved { rtp: 2, rtcp: 3 })
        );
        assert_eq!(
            transport("RTP/AVP;unicast,RTP/AVP/TCP;interleaved=4", 0),
            Ok(TransportRequest::Interleaved { rtp: 4, rtcp: 5 })
        );
        assert_eq!(
            transport("RTP/AVP/TCP;interleaved=255", 0),
            Err(StatusCode::BadRequest)
        );
        assert_eq!(
            transport("RTP/AVP/TCP", usize::MAX),
            Err(StatusCode::BadRequest)
        );
        assert_eq!(
            transport("RTP/SAVP;client_port=1-2", 0),
            Err(StatusCode::UnsupportedTransport)
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            path("/live/cam-1/trackID=1", "live"),
            Ok(PathTarget {
                code: "cam-1",
                track: Some(1)
            })
        );
        assert_eq!(path("//live//cam-1", "live").map(|t| t.track), Ok(None));
        assert_eq!(
            path("/live/cam-1/trackID=2", "live"),
            Err(StatusCode::NotFound)
        );
        assert_eq!(path("/other/cam-1", "live"), Err(StatusCode::NotFound));
        // Open-Streamer's namespaced codes.
        assert_eq!(
            path("/live/region/north/news/trackID=0", "live"),
            Ok(PathTarget {
                code: "region/north/news",
                track: Some(0)
            })
        );
        assert_eq!(path("/live/a/b/", "live").map(|t| t.code), Ok("a/b"));
        assert_eq!(path("/live/a//b", "live"), Err(StatusCode::NotFound));
        assert_eq!(path("/live/a.b", "live"), Err(StatusCode::NotFound));
    }
}
