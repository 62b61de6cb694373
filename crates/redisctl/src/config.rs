//! Where to listen: server URL and channel.

use std::fmt;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Channel AgustinSRG's rtmp-server listens on when `REDIS_CHANNEL` is unset.
pub const DEFAULT_CHANNEL: &str = "rtmp_commands";

/// Port used when `REDIS_PORT` is unset.
pub const DEFAULT_PORT: u16 = 6379;

/// Redis connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: String,
    /// The pub/sub channel carrying commands.
    pub channel: String,
}

impl RedisConfig {
    /// Settings for `url` and the default channel.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channel: DEFAULT_CHANNEL.to_owned(),
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for RedisConfig {
    // Hand-written so a password in the URL never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("channel", &self.channel)
            .finish()
    }
}

/// Builds a URL from AgustinSRG-style settings (`REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`,
/// `REDIS_TLS=YES`); the password is percent-encoded, an empty one means no AUTH, and an IPv6
/// host is bracketed.
pub fn url_from_parts(host: &str, port: u16, password: Option<&str>, tls: bool) -> String {
    let scheme = if tls { "rediss" } else { "redis" };
    let auth = match password {
        Some(p) if !p.is_empty() => format!(":{}@", utf8_percent_encode(p, NON_ALPHANUMERIC)),
        _ => String::new(),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{auth}{host}:{port}")
}

/// Why the settings cannot work, however often we retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse or names an unsupported scheme (`rediss://` needs the `tls`
    /// feature).
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The client library's explanation.
        reason: String,
    },
    /// The channel name is empty.
    #[error("Redis channel name is empty")]
    EmptyChannel,
}

fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The last '@' ends the userinfo: an unencoded '@' may appear in a careless password.
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    // Keep a username (`user:pw@`) for diagnosis; a lone `x@` could be a password, hide it.
    let shown = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_parts() {
        assert_eq!(
            url_from_parts("127.0.0.1", 6379, None, false),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            url_from_parts("redis.example", 6380, Some(""), true),
            "rediss://redis.example:6380"
        );
        assert_eq!(
            url_from_parts("::1", 6379, Some("p@ss:w/rd %?#"), false),
            "redis://:p%40ss%3Aw%2Frd%20%25%3F%23@[::1]:6379"
        );
        assert_eq!(url_from_parts("[::1]", 1, None, false), "redis://[::1]:1");
    }

    #[test]
    fn redaction() {
        let c = RedisConfig::new("redis://:secret@host:6379/0");
        assert_eq!(c.redacted_url(), "redis://:***@host:6379/0");
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(redact("rediss://user:pw@h:1"), "rediss://user:***@h:1");
        assert_eq!(redact("redis://user@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact("redis://:a@b@h:1"), "redis://:***@h:1");
        assert_eq!(redact("not a url"), "not a url");
    }
}
