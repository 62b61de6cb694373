//! Where an api.video client asks its media to go: the `rtmp` URL of its `start` event.
//!
//! A URL that names this gateway becomes a stream code and goes through the same admission
//! as any RTMP publisher. A URL elsewhere is relayed by ffmpeg, as the api.video server does,
//! but only when the operator's allow-list names it: otherwise anyone who can reach the page
//! could use the gateway's CPU and address to push anywhere.

/// What a `start` event's `rtmp` field resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This gateway's stream `code`, with the URL's query (`key=...`) for admission.
    Local {
        /// Stream code (the stream name in the URL).
        code: String,
        /// Decoded query pairs.
        args: Vec<(String, String)>,
    },
    /// Another RTMP server, allowed by `relay_allow`; ffmpeg pushes there itself.
    Relay(String),
}

/// Why a target was refused; the message is safe to show the client (no key in it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not `rtmp://` or `rtmps://`.
    #[error("the rtmp target must be an rtmp:// or rtmps:// URL")]
    Scheme,
    /// No host, or not `/app/name`.
    #[error("the rtmp target must look like rtmp://host[:port]/{0}/STREAM")]
    Shape(String),
    /// The app is not this gateway's.
    #[error("this gateway publishes under the application {0:?}")]
    App(String),
    /// The stream name is not a valid code.
    #[error("invalid stream name (allowed: A-Z a-z 0-9 _ -, at most 128 characters)")]
    Code,
    /// A remote server that the allow-list does not name.
    #[error("relaying to {0} is not allowed on this gateway")]
    RelayRefused(String),
}

/// Resolves `url` for a client that reached the gateway as `request_host` (its `Host`
/// header, without the port). `local_hosts` are further names of this gateway; loopback
/// names always are. `relay_allow` holds URL prefixes that may be relayed to.
pub fn resolve(
    url: &str,
    request_host: Option<&str>,
    local_hosts: &[String],
    app: &str,
    relay_allow: &[String],
) -> Result<Target, TargetError> {
    let rest = url
        .strip_prefix("rtmp://")
        .or_else(|| url.strip_prefix("rtmps://"))
        .ok_or(TargetError::Scheme)?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| TargetError::Shape(app.to_owned()))?;
    let host = host_of(authority).ok_or_else(|| TargetError::Shape(app.to_owned()))?;
    // The operator's explicit list wins, so a relay to another server on this machine (a
    // local nginx-rtmp) is possible.
    if relay_allow.iter().any(|p| url.starts_with(p.as_str())) {
        return Ok(Target::Relay(url.to_owned()));
    }
    let local = is_loopback(&host)
        || request_host.is_some_and(|h| h.eq_ignore_ascii_case(&host))
        || local_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
    if !local {
        return Err(TargetError::RelayRefused(format!(
            "{host} ({})",
            masked(url)
        )));
    }
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut parts = path.split('/');
    let (Some(a), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TargetError::Shape(app.to_owned()));
    };
    if a != app {
        return Err(TargetError::App(app.to_owned()));
    }
    if !hub::valid_code(name) {
        return Err(TargetError::Code);
    }
    let (_, args) = rtmp::session::split_query(&format!("?{}", query.unwrap_or("")));
    Ok(Target::Local {
        code: name.to_owned(),
        args,
    })
}

/// The URL with its stream name (the key, on most platforms), query and credentials hidden:
/// RTMP's rule, as for pushes.
pub use rtmp::url::masked;

/// The host of `host[:port]` or `[v6]:port`, lowercased; `None` when empty or with userinfo.
pub(crate) fn host_of(authority: &str) -> Option<String> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(url: &str) -> Result<Target, TargetError> {
        resolve(
            url,
            Some("gw.example"),
            &["media.example".into()],
            "live",
            &[
                "rtmp://a.rtmp.youtube.com/live2/".into(),
                "rtmp://127.0.0.1:1936/".into(),
            ],
        )
    }

    fn local(code: &str, args: &[(&str, &str)]) -> Result<Target, TargetError> {
        Ok(Target::Local {
            code: code.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn this_gateway_by_any_of_its_names() {
        assert_eq!(r("rtmp://localhost/live/demo"), local("demo", &[]));
        assert_eq!(
            r("rtmp://127.0.0.1:1935/live/demo?key=s%20x"),
            local("demo", &[("key", "s x")])
        );
        assert_eq!(r("rtmps://[::1]:443/live/a-b_c"), local("a-b_c", &[]));
        assert_eq!(r("rtmp://GW.example/live/demo"), local("demo", &[]));
        assert_eq!(r("rtmp://media.example/live/demo"), local("demo", &[]));
    }

    #[test]
    fn malformed_targets_are_refused_with_a_reason() {
        assert_eq!(r("http://localhost/live/demo"), Err(TargetError::Scheme));
        assert_eq!(
            r("rtmp://localhost"),
            Err(TargetError::Shape("live".into()))
        );
        assert_eq!(
            r("rtmp://localhost/live"),
            Err(TargetError::Shape("live".into()))
        );
        assert_eq!(
            r("rtmp://localhost/live/a/b"),
            Err(TargetError::Shape("live".into()))
        );
        assert_eq!(
            r("rtmp://localhost/app/demo"),
            Err(TargetError::App("live".into()))
        );
        assert_eq!(r("rtmp://localhost/live/d%2Fe"), Err(TargetError::Code));
        assert_eq!(
            r("rtmp://u:p@localhost/live/d"),
            Err(TargetError::Shape("live".into()))
        );
    }

    #[test]
    fn relays_only_to_allowed_prefixes_and_never_shows_the_key() {
        assert_eq!(
            r("rtmp://a.rtmp.youtube.com/live2/secret-key"),
            Ok(Target::Relay(
                "rtmp://a.rtmp.youtube.com/live2/secret-key".into()
            ))
        );
        let e = r("rtmp://evil.example/app/secret-key").unwrap_err();
        assert!(matches!(e, TargetError::RelayRefused(_)));
        assert!(!e.to_string().contains("secret-key"), "{e}");
        // A listed prefix on this machine is a relay, not this gateway.
        assert_eq!(
            r("rtmp://127.0.0.1:1936/live/x"),
            Ok(Target::Relay("rtmp://127.0.0.1:1936/live/x".into()))
        );
        assert_eq!(masked("rtmp://h/app/key?x=1"), "rtmp://h/app/****?****");
        assert_eq!(masked("rtmp://h/"), "rtmp://h/");
    }
}
