//! nginx-rtmp compatible HTTP notifications (`on_publish`, `on_play`, ...).
//!
//! Behaviour mirrored from nginx-rtmp's `ngx_rtmp_notify_module.c` and netcall module:
//! - POST (default) sends the arguments as an `application/x-www-form-urlencoded` body; GET
//!   sends them as the query string (we merge with a query already in the configured URL).
//! - 2xx admits. 3xx with `Location` renames: the new stream name (`on_publish`, `on_play`) or
//!   the new app (`on_connect`). Anything else, and a call that fails or times out, refuses.
//! - `on_update` is repeated every `notify_update_timeout` (30 s); with `notify_update_strict`
//!   off only an error reply (4xx, 5xx) ends the session: 3xx passes, and so does a call that
//!   timed out or found the server unreachable, as our configuration documents (nginx-rtmp
//!   drops the session on those). With it on, anything but 2xx ends the session.
//! - The `*_done` and `disconnect` replies are ignored.
//! - The call is bounded by the netcall timeout, 10 s by default.
//!
//! - A `Location` of `rtmp://host/app/name` (or `rtmps://`) from `on_publish` or `on_play` is a
//!   relay, not a rename ([`HookReply::Relay`]): the caller pushes the publisher there, or
//!   pulls the stream from there for the player; with `notify_relay_redirect` the local stream
//!   is renamed to the MD5 hex of the URL, as nginx-rtmp does.
//!
//! Deliberate differences: nginx-rtmp treats a 3xx without `Location` as "go on unchanged";
//! we refuse, since a hook that meant to rename and forgot the header should not silently
//! admit. Other URLs rename to their last path segment. Redirects are never followed.

mod args;

pub use args::{HookArgs, Role, Session};

use crate::Error;
use crate::http::{self, Failure};
use crate::outbox::{MAX_IN_FLIGHT, Outbox};
use percent_encoding::percent_decode_str;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A notification point, named after nginx-rtmp's `on_*` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookEvent {
    /// `on_connect`: RTMP connect (or the first request of another protocol).
    Connect,
    /// `on_publish`: a publisher asks for a stream name.
    Publish,
    /// `on_play`: a player asks for a stream.
    Play,
    /// `on_publish_done`: a publisher stopped.
    PublishDone,
    /// `on_play_done`: a player stopped.
    PlayDone,
    /// `on_done`: after either of the two above.
    Done,
    /// `on_disconnect`: the connection closed.
    Disconnect,
    /// `on_update`: periodic, while publishing or playing.
    Update,
    /// `on_record_done`: a recorded file was closed.
    RecordDone,
}

impl HookEvent {
    /// Every event, in declaration order.
    pub const ALL: [HookEvent; 9] = [
        HookEvent::Connect,
        HookEvent::Publish,
        HookEvent::Play,
        HookEvent::PublishDone,
        HookEvent::PlayDone,
        HookEvent::Done,
        HookEvent::Disconnect,
        HookEvent::Update,
        HookEvent::RecordDone,
    ];

    /// The `call=` value; for [`HookEvent::Update`] the generic `update` (what nginx-rtmp sends
    /// when neither publishing nor playing): use [`Role::update_call`] for the usual form.
    pub fn call(self) -> &'static str {
        match self {
            HookEvent::Connect => "connect",
            HookEvent::Publish => "publish",
            HookEvent::Play => "play",
            HookEvent::PublishDone => "publish_done",
            HookEvent::PlayDone => "play_done",
            HookEvent::Done => "done",
            HookEvent::Disconnect => "disconnect",
            HookEvent::Update => "update",
            HookEvent::RecordDone => "record_done",
        }
    }

    /// The configuration directive naming this hook's URL (`on_publish`, ...).
    pub fn directive(self) -> &'static str {
        match self {
            HookEvent::Connect => "on_connect",
            HookEvent::Publish => "on_publish",
            HookEvent::Play => "on_play",
            HookEvent::PublishDone => "on_publish_done",
            HookEvent::PlayDone => "on_play_done",
            HookEvent::Done => "on_done",
            HookEvent::Disconnect => "on_disconnect",
            HookEvent::Update => "on_update",
            HookEvent::RecordDone => "on_record_done",
        }
    }
}

/// `notify_method`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotifyMethod {
    /// Form-encoded body (nginx-rtmp's default).
    #[default]
    Post,
    /// Arguments in the query string.
    Get,
}

/// Hook URLs and call settings. Plain `Duration`s: the binary's config maps its own humane
/// duration strings onto this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyConfig {
    /// `on_connect` URL.
    pub on_connect: Option<String>,
    /// `on_publish` URL.
    pub on_publish: Option<String>,
    /// `on_play` URL.
    pub on_play: Option<String>,
    /// `on_publish_done` URL.
    pub on_publish_done: Option<String>,
    /// `on_play_done` URL.
    pub on_play_done: Option<String>,
    /// `on_done` URL.
    pub on_done: Option<String>,
    /// `on_disconnect` URL.
    pub on_disconnect: Option<String>,
    /// `on_update` URL.
    pub on_update: Option<String>,
    /// `on_record_done` URL.
    pub on_record_done: Option<String>,
    /// `notify_method`.
    pub method: NotifyMethod,
    /// Total time allowed per call (nginx-rtmp `netcall_timeout`, 10 s).
    pub timeout: Duration,
    /// `notify_update_timeout`: interval between `on_update` calls (30 s).
    pub update_interval: Duration,
    /// `notify_update_strict`: end the session on any non-2xx update reply, not only errors.
    pub update_strict: bool,
    /// How long an HTTP-delivery decision is reused per client token (30 s; zero disables).
    pub cache_ttl: Duration,
    /// `notify_relay_redirect`: a relay redirect renames the local stream to the MD5 hex of
    /// the URL, so relays to different URLs never share a stream.
    pub relay_redirect: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            on_connect: None,
            on_publish: None,
            on_play: None,
            on_publish_done: None,
            on_play_done: None,
            on_done: None,
            on_disconnect: None,
            on_update: None,
            on_record_done: None,
            method: NotifyMethod::Post,
            timeout: Duration::from_secs(10),
            update_interval: Duration::from_secs(30),
            update_strict: false,
            cache_ttl: Duration::from_secs(30),
            relay_redirect: false,
        }
    }
}

impl NotifyConfig {
    /// The URL configured for `event`.
    pub fn url(&self, event: HookEvent) -> Option<&str> {
        let url = match event {
            HookEvent::Connect => &self.on_connect,
            HookEvent::Publish => &self.on_publish,
            HookEvent::Play => &self.on_play,
            HookEvent::PublishDone => &self.on_publish_done,
            HookEvent::PlayDone => &self.on_play_done,
            HookEvent::Done => &self.on_done,
            HookEvent::Disconnect => &self.on_disconnect,
            HookEvent::Update => &self.on_update,
            HookEvent::RecordDone => &self.on_record_done,
        };
        url.as_deref()
    }

    /// Checks every URL is absolute http(s) and the timeouts are usable; the error names the
    /// field.
    pub fn validate(&self) -> Result<(), Error> {
        self.parsed_urls().map(|_| ())
    }

    fn parsed_urls(&self) -> Result<[Option<Url>; 9], Error> {
        let mut urls: [Option<Url>; 9] = Default::default();
        for event in HookEvent::ALL {
            if let Some(raw) = self.url(event) {
                urls[event as usize] = Some(http::parse_url(event.directive(), raw)?);
            }
        }
        if self.timeout.is_zero() {
            return Err(zero("timeout"));
        }
        if self.on_update.is_some() && self.update_interval.is_zero() {
            return Err(zero("update_interval"));
        }
        Ok(urls)
    }
}

fn zero(field: &'static str) -> Error {
    Error::Config {
        field,
        reason: "must be greater than zero".into(),
    }
}

/// What the hook decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookReply {
    /// Go on unchanged.
    Allow,
    /// Go on under this name (the app, for `on_connect`).
    Redirect(String),
    /// `on_publish` / `on_play` redirected to an `rtmp://` or `rtmps://` URL: relay the
    /// stream there (publish) or from there (play).
    Relay(String),
    /// Refuse; the reason is for logs and may be shown to the client.
    Refuse(String),
}

/// nginx-rtmp style hook client. Cheap to clone; clones share one HTTP client and one set of
/// background notifications.
#[derive(Clone, Debug)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: NotifyConfig,
    urls: [Option<Url>; 9],
    http: reqwest::Client,
    outbox: Outbox,
}

impl Notifier {
    /// Validates `config` and builds the HTTP client.
    pub fn new(config: NotifyConfig) -> Result<Notifier, Error> {
        Notifier::with_limit(config, MAX_IN_FLIGHT)
    }

    fn with_limit(config: NotifyConfig, limit: usize) -> Result<Notifier, Error> {
        let urls = config.parsed_urls()?;
        let http = http::client(config.timeout)?;
        // Every call ends by the client timeout; the margin covers task wake-up.
        let outbox = Outbox::new(limit, config.timeout + Duration::from_secs(1));
        Ok(Notifier {
            inner: Arc::new(Inner {
                config,
                urls,
                http,
                outbox,
            }),
        })
    }

    /// The configuration this notifier was built from.
    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// Whether a URL is configured for `event`.
    pub fn enabled(&self, event: HookEvent) -> bool {
        self.inner.urls[event as usize].is_some()
    }

    /// Calls the hook for `event` and maps the reply; no URL configured admits.
    pub async fn decide(&self, event: HookEvent, args: &HookArgs) -> HookReply {
        let Some(url) = &self.inner.urls[event as usize] else {
            return HookReply::Allow;
        };
        let reply = match self.send(event, url, args).await {
            Ok((status, location)) => reply_for(
                event,
                self.inner.config.update_strict,
                status,
                location.as_deref(),
            ),
            // A periodic update that could not be asked keeps the session unless strict: a
            // hook server that is down for a moment must not drop every live stream.
            Err(failure) if event == HookEvent::Update && !self.inner.config.update_strict => {
                tracing::warn!(
                    hook = event.directive(),
                    call = args.call(),
                    ?failure,
                    "hook failed; session kept (update_strict off)"
                );
                HookReply::Allow
            }
            Err(failure) => HookReply::Refuse(match failure {
                Failure::Timeout => format!("{} timed out", event.directive()),
                Failure::Unreachable(why) => format!("{} unreachable: {why}", event.directive()),
                Failure::Other(why) => format!("{} failed: {why}", event.directive()),
            }),
        };
        match &reply {
            HookReply::Refuse(reason) => {
                tracing::warn!(hook = event.directive(), call = args.call(), %reason, "hook refused");
            }
            HookReply::Redirect(name) => {
                tracing::info!(hook = event.directive(), call = args.call(), %name, "hook redirected");
            }
            HookReply::Relay(url) => {
                // The path holds the stream key: log where, not what.
                let host = url_host(url);
                tracing::info!(hook = event.directive(), call = args.call(), %host, "hook asked for a relay");
            }
            HookReply::Allow => {}
        }
        reply
    }

    /// Sends `event` in the background, ignoring the reply (`*_done`, `disconnect`). Dropped
    /// and counted when too many are in flight or after [`Notifier::close`].
    pub fn notify(&self, event: HookEvent, args: HookArgs) {
        let Some(url) = self.inner.urls[event as usize].clone() else {
            return;
        };
        let this = self.clone();
        self.inner.outbox.spawn(event.directive(), async move {
            if let Err(failure) = this.send(event, &url, &args).await {
                tracing::debug!(hook = event.directive(), ?failure, "notification failed");
            }
        });
    }

    /// Stops accepting notifications and waits for those in flight (at most timeout + 1 s).
    pub async fn close(&self) {
        self.inner.outbox.close().await;
    }

    /// Notifications dropped so far (too many in flight, or sent after `close`).
    pub fn dropped(&self) -> u64 {
        self.inner.outbox.dropped()
    }

    /// Notifications currently running.
    pub fn in_flight(&self) -> usize {
        self.inner.outbox.in_flight()
    }

    async fn send(
        &self,
        event: HookEvent,
        url: &Url,
        args: &HookArgs,
    ) -> Result<(u16, Option<String>), Failure> {
        let started = Instant::now();
        let request = match self.inner.config.method {
            NotifyMethod::Post => self
                .inner
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(args.to_form()),
            NotifyMethod::Get => {
                let mut url = url.clone();
                url.query_pairs_mut().extend_pairs(args.pairs());
                self.inner.http.get(url)
            }
        };
        let result = request.send().await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // A non-UTF-8 Location cannot be a name; keep it distinguishable from "absent".
                let location = response
                    .headers()
                    .get(LOCATION)
                    .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
                tracing::debug!(
                    hook = event.directive(),
                    url = %http::redacted(url),
                    call = args.call(),
                    status,
                    elapsed_ms,
                    "hook call"
                );
                Ok((status, location))
            }
            Err(e) => {
                let failure = Failure::classify(&e);
                tracing::debug!(
                    hook = event.directive(),
                    url = %http::redacted(url),
                    call = args.call(),
                    ?failure,
                    elapsed_ms,
                    "hook call failed"
                );
                Err(failure)
            }
        }
    }
}

/// nginx-rtmp's reading of a reply (`ngx_rtmp_notify_parse_http_retcode`: only the first digit
/// of the status counts), with the differences listed in the module docs.
fn reply_for(event: HookEvent, strict: bool, status: u16, location: Option<&str>) -> HookReply {
    let hook = event.directive();
    match status {
        200..=299 => HookReply::Allow,
        300..=399 if event == HookEvent::Update => {
            if strict {
                HookReply::Refuse(format!("{hook} returned {status}"))
            } else {
                HookReply::Allow
            }
        }
        300..=399 => match location {
            None => HookReply::Refuse(format!("{hook} returned {status} without Location")),
            Some(url)
                if matches!(event, HookEvent::Publish | HookEvent::Play) && is_rtmp_url(url) =>
            {
                HookReply::Relay(url.trim().to_owned())
            }
            Some(location) => match redirect_name(location) {
                Some(name) => HookReply::Redirect(name),
                None => HookReply::Refuse(format!("{hook} redirected to an invalid name")),
            },
        },
        _ => HookReply::Refuse(format!("{hook} returned {status}")),
    }
}

/// `scheme://host:port` of a URL, without credentials, path or query.
fn url_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// nginx-rtmp compares the first seven bytes with `rtmp://`, ignoring case; `rtmps://` is
/// ours (TLS relays).
fn is_rtmp_url(location: &str) -> bool {
    let l = location.trim().as_bytes();
    let starts = |p: &[u8]| l.len() > p.len() && l[..p.len()].eq_ignore_ascii_case(p);
    starts(b"rtmp://") || starts(b"rtmps://")
}

/// The new name a `Location` value asks for: the value itself, or the last path segment (percent
/// decoded) when it is a URL or an absolute path. `None` when that is not a usable name.
fn redirect_name(location: &str) -> Option<String> {
    let location = location.trim();
    let name = if let Some((_, rest)) = location.split_once("://") {
        last_segment(rest.split_once('/').map_or("", |(_, path)| path))?
    } else if location.starts_with('/') {
        last_segment(location)?
    } else {
        location.to_owned()
    };
    valid_name(&name).then_some(name)
}

fn last_segment(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segment = path.rsplit('/').next().unwrap_or_default();
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A name must be one path segment a client could have typed: the rest of the server builds
/// paths and playlist URLs from it.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 256
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"/\\?#%\u{fffd}".contains(c))
}

#[cfg(test)]
mod tests;
