//! AgustinSRG/rtmp-server compatible publish callback (`CALLBACK_URL`, `JWT_SECRET`).
//!
//! Mirrored from its `rtmp_callback.go` and README:
//! - every event is a POST with an empty body and the header `rtmp-event: <JWT>`, HS256-signed
//!   with `JWT_SECRET`, expiring 120 s after it is made;
//! - `start` claims: `sub` (`CUSTOM_JWT_SUBJECT`, default `rtmp_event`), `event`, `channel`,
//!   `key`, `client_ip`, `rtmp_host` (`RTMP_HOST`), `rtmp_port` (a JSON number: Go's `int`),
//!   `exp` (Unix seconds); `stop` claims: `sub`, `event`, `channel`, `key`, `stream_id`,
//!   `client_ip`, `exp` (the Go server sends no host or port with `stop`);
//! - `start` is accepted on status 200 only; the stream id is the `stream-id` response header.
//!   A 200 without it is accepted with an empty id, as the Go server does (`Header.Get` → "").
//! - `client_ip` is the bare address; an IPv4-mapped IPv6 peer shows as IPv4, as Go prints it.
//!
//! Differences: the Go server's HTTP client has no timeout and follows redirects; we bound each
//! call by `timeout` and treat a redirect as a refusal, so the signed token is never forwarded to
//! a host the operator did not configure.

use crate::Error;
use crate::http::{self, Failure};
use crate::outbox::{MAX_IN_FLIGHT, Outbox};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;
use reqwest::header::CONTENT_LENGTH;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lifetime of the signed token, as in the Go server.
const TOKEN_LIFETIME_SECS: u64 = 120;

/// Where and how to send callbacks.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    /// `CALLBACK_URL`: http(s) URL that receives every event.
    pub url: String,
    /// `JWT_SECRET`: HMAC key shared with the callback receiver.
    pub jwt_secret: String,
    /// `CUSTOM_JWT_SUBJECT`: the `sub` claim (default `rtmp_event`).
    pub subject: String,
    /// `RTMP_HOST`: sent as `rtmp_host` so the receiver knows which server asks.
    pub rtmp_host: String,
    /// `RTMP_PORT`: sent as `rtmp_port` (default 1935).
    pub rtmp_port: u16,
    /// Total time allowed per call (default 10 s).
    pub timeout: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            url: String::new(),
            jwt_secret: String::new(),
            subject: "rtmp_event".into(),
            rtmp_host: String::new(),
            rtmp_port: 1935,
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for CallbackConfig {
    // Hand-written so the secret never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url).map_or_else(|_| "<invalid>".into(), |u| http::redacted(&u));
        f.debug_struct("CallbackConfig")
            .field("url", &url)
            .field("jwt_secret", &"<redacted>")
            .field("subject", &self.subject)
            .field("rtmp_host", &self.rtmp_host)
            .field("rtmp_port", &self.rtmp_port)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a callback did not admit the stream.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The receiver answered, but not with 200: the key is refused.
    #[error("callback refused the stream: HTTP {0}")]
    Refused(u16),
    /// No answer within the configured timeout.
    #[error("callback timed out")]
    Timeout,
    /// The receiver could not be reached (refused, DNS, TLS).
    #[error("callback unreachable: {0}")]
    Unreachable(String),
    /// The exchange broke (connection reset, malformed reply).
    #[error("callback failed: {0}")]
    Failed(String),
    /// The token could not be signed.
    #[error("callback token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

impl CallbackError {
    /// Whether the receiver itself said no (as opposed to being unavailable): the one case
    /// where retrying with the same key is pointless.
    pub fn is_refusal(&self) -> bool {
        matches!(self, CallbackError::Refused(_))
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    event: &'a str,
    channel: &'a str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_id: Option<&'a str>,
    client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtmp_host: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtmp_port: Option<u16>,
    exp: u64,
}

/// AgustinSRG-style callback client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Callback {
    inner: Arc<Inner>,
}

struct Inner {
    config: CallbackConfig,
    url: Url,
    key: EncodingKey,
    http: reqwest::Client,
    outbox: Outbox,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("config", &self.config)
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl Callback {
    /// Validates `config` (http(s) URL, non-empty secret) and builds the HTTP client.
    pub fn new(config: CallbackConfig) -> Result<Callback, Error> {
        Callback::with_limit(config, MAX_IN_FLIGHT)
    }

    fn with_limit(config: CallbackConfig, limit: usize) -> Result<Callback, Error> {
        let url = http::parse_url("url", &config.url)?;
        // The Go server would sign with an empty key; anyone could then forge a `start`.
        if config.jwt_secret.is_empty() {
            return Err(Error::Config {
                field: "jwt_secret",
                reason: "must not be empty".into(),
            });
        }
        let http = http::client(config.timeout)?;
        let key = EncodingKey::from_secret(config.jwt_secret.as_bytes());
        let outbox = Outbox::new(limit, config.timeout + Duration::from_secs(1));
        Ok(Callback {
            inner: Arc::new(Inner {
                config,
                url,
                key,
                http,
                outbox,
            }),
        })
    }

    /// Asks whether `channel`/`key` may publish; `Ok` carries the stream id the receiver
    /// assigned (empty if it sent none).
    pub async fn start(
        &self,
        channel: &str,
        key: &str,
        client_ip: IpAddr,
    ) -> Result<String, CallbackError> {
        let config = &self.inner.config;
        let claims = Claims {
            sub: &config.subject,
            event: "start",
            channel,
            key,
            stream_id: None,
            client_ip: client_ip.to_canonical().to_string(),
            rtmp_host: Some(&config.rtmp_host),
            rtmp_port: Some(config.rtmp_port),
            exp: expiry(),
        };
        let result = self.post(&claims).await;
        match &result {
            Ok(stream_id) => {
                tracing::debug!(channel, stream_id, "callback: start accepted");
            }
            Err(e) => tracing::warn!(channel, error = %e, "callback: start refused"),
        }
        result
    }

    /// Reports that a stream accepted by [`Callback::start`] ended. Runs in the background;
    /// dropped and counted when too many are in flight or after [`Callback::close`].
    pub fn stop(&self, channel: &str, key: &str, client_ip: IpAddr, stream_id: &str) {
        let this = self.clone();
        let (channel, key, stream_id) = (channel.to_owned(), key.to_owned(), stream_id.to_owned());
        self.inner.outbox.spawn("callback stop", async move {
            let config = &this.inner.config;
            let claims = Claims {
                sub: &config.subject,
                event: "stop",
                channel: &channel,
                key: &key,
                stream_id: Some(&stream_id),
                client_ip: client_ip.to_canonical().to_string(),
                rtmp_host: None,
                rtmp_port: None,
                exp: expiry(),
            };
            if let Err(e) = this.post(&claims).await {
                tracing::debug!(channel, stream_id, error = %e, "callback: stop not delivered");
            }
        });
    }

    /// Stops accepting `stop` events and waits for those in flight (at most timeout + 1 s).
    pub async fn close(&self) {
        self.inner.outbox.close().await;
    }

    /// `stop` events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.inner.outbox.dropped()
    }

    /// `stop` events currently running.
    pub fn in_flight(&self) -> usize {
        self.inner.outbox.in_flight()
    }

    async fn post(&self, claims: &Claims<'_>) -> Result<String, CallbackError> {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.inner.key)?;
        tracing::debug!(
            url = %http::redacted(&self.inner.url),
            event = claims.event,
            channel = claims.channel,
            "callback call"
        );
        let response = self
            .inner
            .http
            .post(self.inner.url.clone())
            .header("rtmp-event", token)
            // Go's client sends `Content-Length: 0` with an empty POST and some front proxies
            // demand it (411); hyper omits it for an empty body unless told.
            .header(CONTENT_LENGTH, "0")
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| match Failure::classify(&e) {
                Failure::Timeout => CallbackError::Timeout,
                Failure::Unreachable(why) => CallbackError::Unreachable(why),
                Failure::Other(why) => CallbackError::Failed(why),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(CallbackError::Refused(status));
        }
        Ok(response
            .headers()
            .get("stream-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default())
    }
}

fn expiry() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    now + TOKEN_LIFETIME_SECS
}

#[cfg(test)]
mod tests;
