//! RTMP URLs: what a client needs from `rtmp(s)://host[:port]/app/name` ([`parse`]), the
//! embedded server's strict `app/key` form ([`parse_url`]), and masking for logs ([`masked`]).

/// A parsed `rtmp://host[:port]/app/name` or `rtmps://...` destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// TLS (`rtmps://`).
    pub tls: bool,
    /// Host name or address, without brackets; also the TLS server name.
    pub host: String,
    /// Port (default 1935, or 443 for rtmps).
    pub port: u16,
    /// Application: everything between the host and the last `/`.
    pub app: String,
    /// Stream name (the stream key), with any query.
    pub name: String,
    /// `tcUrl` for `connect`: `scheme://host[:port]/app`.
    pub tc_url: String,
}

/// Splits an RTMP URL the way an RTMP client (and nginx-rtmp, and ffmpeg) reads it: the app
/// is everything between the host and the last `/`, which may itself hold `/`.
pub fn parse(url: &str) -> Result<Target, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("rtmps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("rtmp://") {
        (false, r)
    } else {
        return Err("scheme must be rtmp:// or rtmps://".into());
    };
    let (authority, path) = rest.split_once('/').ok_or("missing /app/stream")?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port {p:?}"))?,
        None if tls => 443,
        None => 1935,
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    // Name = last segment (with its query); app = the rest, as nginx-rtmp and ffmpeg read it.
    let (app, name) = path.rsplit_once('/').ok_or("missing /app/stream")?;
    if app.is_empty() || name.is_empty() {
        return Err("missing /app/stream".into());
    }
    let scheme = if tls { "rtmps" } else { "rtmp" };
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
        app: app.to_owned(),
        name: name.to_owned(),
        tc_url: format!("{scheme}://{authority}/{app}"),
    })
}

/// Membrane.RTMPServer's `parse_url`: `rtmp(s)://host[:port]/app/key` as `(tls, port, app,
/// key)`. The port defaults to 1935 (443 for `rtmps`). A scheme other than `rtmp` or `rtmps`, a
/// missing app or key, and any path segment beyond the two are errors.
///
/// ```
/// use ferrocast_rtmp::url::parse_url;
///
/// assert_eq!(
///     parse_url("rtmps://example.com:4443/app/key").unwrap(),
///     (true, 4443, "app".to_owned(), "key".to_owned())
/// );
/// assert_eq!(parse_url("rtmp://localhost/live/abc").unwrap().1, 1935);
/// assert!(parse_url("http://localhost/live/abc").is_err());
/// assert!(parse_url("rtmp://localhost/live/abc/extra").is_err());
/// ```
pub fn parse_url(url: &str) -> Result<(bool, u16, String, String), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let url = match scheme.as_deref() {
        Some(s @ ("rtmp" | "rtmps")) => format!("{s}{}", &url[s.len()..]),
        Some(other) => return Err(format!("unknown scheme {other:?}")),
        None => return Err("not a URL: no scheme".into()),
    };
    let t = parse(&url)?;
    if t.app.contains('/') {
        return Err("extra path segments: expected /app/key".into());
    }
    Ok((t.tls, t.port, t.app, t.name))
}

/// The URL with every secret hidden, for the API, status and logs: the stream key (last path
/// segment), the query (`?key=...` tokens) and a `user:password@`.
pub fn masked(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest
                .split_once('/')
                .map_or((rest, None), |(a, p)| (a, Some(p)));
            // The last '@': one inside the password must not leak its tail.
            let authority = match authority.rsplit_once('@') {
                Some((_, host)) => format!("****@{host}"),
                None => authority.to_owned(),
            };
            match path {
                Some(p) => format!("{scheme}://{authority}/{p}"),
                None => format!("{scheme}://{authority}"),
            }
        }
        None => base.to_owned(),
    };
    let mut out = match base.rsplit_once('/') {
        Some((head, key)) if !key.is_empty() && head.matches('/').count() >= 3 => {
            format!("{head}/****")
        }
        _ => base,
    };
    if !query.is_empty() {
        out.push_str("?****");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_urls() {
        let t = parse("rtmp://a.rtmp.youtube.com/live2/abcd-1234").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (false, "a.rtmp.youtube.com", 1935)
        );
        assert_eq!((t.app.as_str(), t.name.as_str()), ("live2", "abcd-1234"));
        assert_eq!(t.tc_url, "rtmp://a.rtmp.youtube.com/live2");
        let t = parse("rtmps://live-api-s.facebook.com:443/rtmp/FB-1?s_bl=1").unwrap();
        assert_eq!((t.tls, t.port, t.name.as_str()), (true, 443, "FB-1?s_bl=1"));
        let t = parse("rtmps://h/app/inst/key").unwrap();
        assert_eq!(
            (t.port, t.app.as_str(), t.name.as_str()),
            (443, "app/inst", "key")
        );
        let t = parse("rtmp://[::1]:1936/live/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1936));
        for bad in [
            "http://h/a/b",
            "rtmp://h/onlyapp",
            "rtmp://:1/a/b",
            "rtmp://h:x/a/b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_url_takes_exactly_app_and_key() {
        assert_eq!(
            parse_url("rtmp://h/app/key").unwrap(),
            (false, 1935, "app".into(), "key".into())
        );
        assert_eq!(
            parse_url("RTMPS://h/app/key").unwrap(),
            (true, 443, "app".into(), "key".into())
        );
        assert_eq!(parse_url("rtmp://[::1]:1936/a/k").unwrap().1, 1936);
        for bad in [
            "rtmpt://h/app/key",
            "srt://h/app/key",
            "h/app/key",
            "rtmp://h/app",
            "rtmp://h/app/",
            "rtmp:///app/key",
            "rtmp://h/app/key/more",
            "rtmp://h/a/b/c",
            "rtmp://h:99999/app/key",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_keys() {
        assert_eq!(
            masked("rtmp://h/live2/secret?x=1"),
            "rtmp://h/live2/****?****"
        );
        assert_eq!(masked("rtmp://h/live2/secret"), "rtmp://h/live2/****");
        assert_eq!(
            masked("rtmps://bob:p@ss:w@h:443/app/k"),
            "rtmps://****@h:443/app/****"
        );
        assert_eq!(masked("rtmp://token@h/app/k"), "rtmp://****@h/app/****");
        assert_eq!(masked("rtmp://h/app"), "rtmp://h/app");
        assert_eq!(masked("rtmp://h/app?sig=1"), "rtmp://h/app?****");
        for secret in ["s3cr3t", "p@ss"] {
            let url = format!("rtmp://u:{secret}@h/a/{secret}?k={secret}");
            assert!(!masked(&url).contains(secret), "{}", masked(&url));
        }
    }
}
