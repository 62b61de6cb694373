//! The HTTP plumbing both dialects share: client construction, URL checks, log-safe URLs and
//! failure classification.

use crate::Error;
use reqwest::Url;
use std::error::Error as _;
use std::time::Duration;

/// One client per hook target set: connection reuse across calls, and the settings that make a
/// hook safe to call on the session's critical path.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    if timeout.is_zero() {
        return Err(Error::Config {
            field: "timeout",
            reason: "must be greater than zero".into(),
        });
    }
    reqwest::Client::builder()
        // A redirect is an answer (nginx-rtmp: rename the stream), never something to follow;
        // following it would also hand the signed callback token to another host.
        .redirect(reqwest::redirect::Policy::none())
        // Total time: a hook that hangs must not hold a publisher longer than this.
        .timeout(timeout)
        .build()
        .map_err(|e| Error::Client(innermost(&e)))
}

/// Parses a configured hook URL; only absolute http(s) URLs with a host are accepted.
pub(crate) fn parse_url(field: &'static str, raw: &str) -> Result<Url, Error> {
    let bad = |reason: String| Error::Config { field, reason };
    let url = Url::parse(raw).map_err(|e| bad(format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("URL has no host".into()));
    }
    Ok(url)
}

/// `scheme://host:port/path` without user info, query or fragment: hook URLs often carry a
/// shared secret in the query, and logs are read by more people than the config.
pub(crate) fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// Why a request produced no HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The total timeout elapsed.
    Timeout,
    /// Connecting failed: refused, DNS, TLS handshake.
    Unreachable(String),
    /// Anything else (the connection broke mid-response, a malformed reply).
    Other(String),
}

impl Failure {
    pub(crate) fn classify(e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            Failure::Timeout
        } else if e.is_connect() {
            Failure::Unreachable(innermost(e))
        } else {
            Failure::Other(innermost(e))
        }
    }
}

/// The most specific cause ("Connection refused (os error 111)") instead of reqwest's generic
/// top line, which also embeds the full URL.
fn innermost(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = e.source();
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c);
        cause = c.source();
    }
    match last {
        Some(c) => c.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_drops_credentials_query_and_fragment() {
        let url = Url::parse("https://user:pw@hooks.example:8443/rtmp/on_publish?key=s#f").unwrap();
        assert_eq!(redacted(&url), "https://hooks.example:8443/rtmp/on_publish");
        let url = Url::parse("http://127.0.0.1/x?secret=1").unwrap();
        assert_eq!(redacted(&url), "http://127.0.0.1/x");
    }

    #[test]
    fn only_absolute_http_urls_with_a_host_pass() {
        assert!(parse_url("on_play", "http://127.0.0.1:1/p").is_ok());
        assert!(parse_url("on_play", "https://h/p?x=1").is_ok());
        for bad in [
            "ftp://h/p",
            "rtmp://h/live",
            "/relative",
            "h:80/p",
            "file:///etc/passwd",
        ] {
            let err = parse_url("on_play", bad).unwrap_err().to_string();
            assert!(err.starts_with("on_play: "), "{bad}: {err}");
        }
    }

    #[test]
    fn zero_timeout_is_a_config_error() {
        let err = client(Duration::ZERO).unwrap_err().to_string();
        assert!(err.starts_with("timeout: "), "{err}");
    }
}
