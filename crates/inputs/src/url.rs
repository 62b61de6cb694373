//! What an input URL names: the source kind and its address, checked once for the API and
//! parsed again by the driver that uses it.

use std::net::SocketAddr;

/// The kind of source an input URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `publish://`: an encoder pushes to the gateway (RTMP, RTMPS, SRT, browser).
    Publish,
    /// `rtmp://` or `rtmps://` play from another server.
    Rtmp,
    /// `rtsp://` or `rtsps://` from a camera or server.
    Rtsp,
    /// `srt://host:port` in caller mode.
    Srt,
    /// `udp://[group@]host:port`: MPEG-TS, unicast or multicast.
    Udp,
    /// `http(s)://...` MPEG-TS.
    HttpTs,
    /// `http(s)://....m3u8`: HLS with TS or fMP4 segments.
    Hls,
    /// `file:///path`, played in a loop at its own pace.
    File,
}

impl Kind {
    /// Short name for the API, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Publish => "publish",
            Kind::Rtmp => "rtmp",
            Kind::Rtsp => "rtsp",
            Kind::Srt => "srt",
            Kind::Udp => "udp",
            Kind::HttpTs => "http-ts",
            Kind::Hls => "hls",
            Kind::File => "file",
        }
    }

    /// Whether the gateway connects to the source (everything but `publish://`).
    pub fn is_pull(self) -> bool {
        self != Kind::Publish
    }
}

/// Longest accepted input URL.
pub const MAX_URL_LEN: usize = 2048;

/// Classifies `url`; the error says what is wrong in words fit for an API answer.
pub fn kind(url: &str) -> Result<Kind, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected scheme://, e.g. rtsp://camera/stream")?;
    let scheme = scheme.to_ascii_lowercase();
    let kind = match scheme.as_str() {
        "publish" => return Ok(Kind::Publish),
        "rtmp" | "rtmps" => Kind::Rtmp,
        "rtsp" | "rtsps" => Kind::Rtsp,
        "srt" => Kind::Srt,
        "udp" => Kind::Udp,
        "http" | "https" => {
            let path = rest.split(['?', '#']).next().unwrap_or_default();
            if path.to_ascii_lowercase().ends_with(".m3u8") {
                Kind::Hls
            } else {
                Kind::HttpTs
            }
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err("file:// needs an absolute path, e.g. file:///srv/demo.mp4".into());
            }
            return Ok(Kind::File);
        }
        other => {
            return Err(format!(
                "unsupported scheme {other:?}: expected publish, rtmp(s), rtsp(s), srt, udp, http(s) or file"
            ));
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host_port(authority).0;
    // `udp://@:5000` (ffmpeg's spelling) listens on every interface.
    if host.is_empty() && kind != Kind::Udp {
        return Err("missing host".into());
    }
    if matches!(kind, Kind::Srt | Kind::Udp) && host_port(authority).1.is_none() {
        return Err(format!("{scheme}:// needs a port"));
    }
    if kind == Kind::Rtmp {
        let path = rest[authority.len()..]
            .split('?')
            .next()
            .unwrap_or_default();
        if path.split('/').filter(|s| !s.is_empty()).count() < 2 {
            return Err("needs /app/stream after the host".into());
        }
    }
    Ok(kind)
}

/// Splits `[user:pass@]host[:port]` into host and port.
pub fn host_port(authority: &str) -> (&str, Option<u16>) {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
        return (h, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (hostport, None),
    }
}

/// Query parameters of a URL, percent-decoded.
pub fn query(url: &str) -> Vec<(String, String)> {
    let Some((_, q)) = url.split_once('?') else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or_default();
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `scheme://[user:pass@]host:port` resolved to one address (the first the resolver gives).
pub async fn resolve(url: &str, default_port: u16) -> Result<SocketAddr, String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = host_port(authority);
    let port = port.unwrap_or(default_port);
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Query keys whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "passphrase",
    "password",
    "pass",
    "pwd",
    "key",
    "token",
    "secret",
    "auth",
    "sig",
    "signature",
    "streamid",
    // A cluster edge's pull of another node carries the cluster key.
    hub::INTERNAL_ARG,
];

/// The URL with its secrets hidden, for the API, logs and events: `user:password@`, secret
/// query values, and the stream key of an `rtmp(s)://` source (its last path segment).
pub fn masked(url: &str) -> String {
    let (base, q) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("****@{host}"),
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}");
    if let Some(p) = path {
        let is_rtmp = scheme.eq_ignore_ascii_case("rtmp") || scheme.eq_ignore_ascii_case("rtmps");
        match p.rsplit_once('/') {
            Some((app, key)) if is_rtmp && !key.is_empty() => {
                out.push_str(&format!("/{app}/****"));
            }
            _ => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if let Some(q) = q {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=****")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// `text` with every URL in it masked (for ffmpeg's messages, which quote their input).
pub fn masked_text(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") {
                let start = word.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(0);
                format!("{}{}", &word[..start], masked(&word[start..]))
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_scheme() {
        let cases = [
            ("publish://", Kind::Publish),
            ("rtmp://origin/live/cam", Kind::Rtmp),
            ("rtmps://origin:443/live/cam?k=1", Kind::Rtmp),
            ("rtsp://admin:pw@10.0.0.9:554/Streaming/101", Kind::Rtsp),
            ("RTSPS://cam/x", Kind::Rtsp),
            ("srt://studio:9000?streamid=feed&latency=200", Kind::Srt),
            ("udp://239.1.1.1:5000?localaddr=10.0.0.2", Kind::Udp),
            ("udp://@:5000", Kind::Udp),
            ("http://cdn/feed.ts", Kind::HttpTs),
            ("https://cdn/live/index.M3U8?token=x", Kind::Hls),
            ("file:///srv/demo.mp4", Kind::File),
        ];
        for (url, want) in cases {
            assert_eq!(kind(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn refuses_what_cannot_work() {
        for url in [
            "",
            "rtsp:/cam",
            "gopher://x/y",
            "srt://studio",
            "udp://239.1.1.1",
            "rtmp://origin/live",
            "rtsp:///path",
            "file://relative.mp4",
            "rtsp://cam/a b",
        ] {
            assert!(kind(url).is_err(), "{url} accepted");
        }
        assert!(kind(&format!("rtsp://h/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn udp_any_address_has_an_empty_host() {
        assert_eq!(host_port("@:5000"), ("", Some(5000)));
        assert_eq!(host_port("[::1]:5000"), ("::1", Some(5000)));
        assert_eq!(host_port("u:p@cam"), ("cam", None));
    }

    #[test]
    fn masks_credentials_keys_and_secret_query_values() {
        assert_eq!(
            masked("rtsp://admin:p@ss@cam:554/Streaming/101?transport=udp"),
            "rtsp://****@cam:554/Streaming/101?transport=udp"
        );
        assert_eq!(
            masked("rtmp://origin/live/secretkey"),
            "rtmp://origin/live/****"
        );
        assert_eq!(
            masked("srt://studio:9000?streamid=abc&passphrase=0123456789&latency=200"),
            "srt://studio:9000?streamid=****&passphrase=****&latency=200"
        );
        assert_eq!(masked("publish://"), "publish://");
        assert_eq!(masked("file:///srv/a.mp4"), "file:///srv/a.mp4");
        // A cluster edge's pull: the cluster key is hidden like any secret.
        assert_eq!(
            masked("rtmp://o/live/cam?ferrocast_cluster=0123abcd&x=1"),
            "rtmp://o/live/****?ferrocast_cluster=****&x=1"
        );
    }

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            query("srt://h:1?streamid=%23!%3A%3Ar%3Dlive&latency=120"),
            vec![
                ("streamid".to_owned(), "#!::r=live".to_owned()),
                ("latency".to_owned(), "120".to_owned())
            ]
        );
    }
}
