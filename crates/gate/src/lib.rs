//! The admission the hub consults for every protocol: IP rules, then the control plane's
//! stream rules (unknown, disabled, stream key, output switches), then the operator's HTTP
//! hooks (nginx-rtmp `on_*`), then the signed `start` callback for publishers. It also turns
//! session ends into `on_*_done` / `stop` notifications and runs the `on_update` ticker.
//!
//! Order matters: the cheap local rules refuse first, so a refused or hostile client never
//! costs a hook call, and the callback that registers a broadcast with the platform is only
//! made for a publish every other rule allowed.

use access::IpList;
use control::Control;
use futures_util::StreamExt;
use hooks::{
    Callback, CallbackConfig, DecisionCache, HookArgs, HookEvent, HookReply, Notifier,
    NotifyConfig, Role,
};
use hub::{
    AccessRequest, Action, Admission, Admit, ClientInfo, ConnectFuture, Decision, DecisionFuture,
    Denied, Hub, SessionInfo, SessionRole,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Protocols served over plain HTTP requests, whose decisions are cached (a player fetches a
/// playlist and segments every few seconds; none of those requests may wait on a hook).
const HTTP_PROTOCOLS: [&str; 3] = ["hls", "dash", "mpegts"];
/// Most cached HTTP decisions.
const HTTP_CACHE_ENTRIES: usize = 10_000;
/// `on_update` calls in flight at once.
const UPDATE_CONCURRENCY: usize = 16;

/// Everything the gate decides with.
#[derive(Clone, Debug, Default)]
pub struct GateConfig {
    /// Application name sessions are reported under when the protocol has none (SRT, RTSP).
    pub app: String,
    /// Longest stream code accepted (0 means the hub's own limit).
    pub max_code_len: usize,
    /// Who may publish; empty means everyone.
    pub publish_allow: IpList,
    /// Who may play, on every protocol; empty means everyone.
    pub play_allow: IpList,
    /// nginx-rtmp style hooks; events without a URL are not called.
    pub notify: NotifyConfig,
    /// The signed `start`/`stop` callback, when configured.
    pub callback: Option<CallbackConfig>,
}

/// Who carries out a hook's relay redirect (nginx-rtmp's relay push and pull): the input and
/// push managers, wired in by the binary.
pub trait Relays: Send + Sync {
    /// Pulls `url` into `code` for its players; an error refuses the play.
    fn pull(&self, code: &str, url: &str) -> Result<(), String>;
    /// Pushes the next publish session of `code` to `url`; an error refuses the publish.
    fn push(&self, code: &str, url: &str) -> Result<(), String>;
}

/// Cache key of an HTTP decision: stream, client address, and the client's query.
type HttpKey = (String, Option<IpAddr>, String);

/// The installed [`Admission`]; cheap to clone.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("publish_allow", &self.inner.publish_allow.to_string())
            .field("play_allow", &self.inner.play_allow.to_string())
            .field("hooks", &self.inner.notifier.is_some())
            .field("callback", &self.inner.callback.is_some())
            .finish()
    }
}

struct Inner {
    hub: Hub,
    control: Control,
    app: String,
    max_code_len: usize,
    publish_allow: IpList,
    play_allow: IpList,
    notifier: Option<Notifier>,
    callback: Option<Callback>,
    http_cache: DecisionCache<HttpKey, Decision>,
    /// Set once at startup (the managers exist before the gate, the gate before them runs).
    relays: std::sync::OnceLock<Arc<dyn Relays>>,
    /// Local code -> URL of relay pulls admitted for HTTP players, as long as their decisions
    /// are cached: a cached decision must restart a pull that ended meanwhile.
    http_relays: DecisionCache<String, String>,
}

impl Gate {
    /// Sends `on_record_done` for a closed recording of `code` (nothing without the hook).
    pub fn record_done(&self, code: &str, path: &str, start_ms: i64, end_ms: i64, bytes: u64) {
        if let Some(n) = &self.inner.notifier {
            let args = HookArgs::record_done(&self.inner.app, code, path, start_ms, end_ms, bytes);
            n.notify(HookEvent::RecordDone, args);
        }
    }

    /// A gate over `control`'s rules; fails on an unusable hook or callback configuration.
    pub fn new(hub: Hub, control: Control, config: GateConfig) -> Result<Gate, hooks::Error> {
        let any_hook = HookEvent::ALL
            .iter()
            .any(|e| config.notify.url(*e).is_some());
        let cache_ttl = config.notify.cache_ttl;
        let notifier = if any_hook {
            Some(Notifier::new(config.notify)?)
        } else {
            None
        };
        let callback = config.callback.map(Callback::new).transpose()?;
        Ok(Gate {
            inner: Arc::new(Inner {
                hub,
                control,
                app: config.app,
                max_code_len: config.max_code_len,
                publish_allow: config.publish_allow,
                play_allow: config.play_allow,
                notifier,
                callback,
                http_cache: DecisionCache::new(cache_ttl, HTTP_CACHE_ENTRIES),
                relays: std::sync::OnceLock::new(),
                http_relays: DecisionCache::new(cache_ttl, HTTP_CACHE_ENTRIES),
            }),
        })
    }

    /// Installs who carries out relay redirects; without it they refuse.
    pub fn set_relays(&self, relays: Arc<dyn Relays>) {
        if self.inner.relays.set(relays).is_err() {
            warn!("relay handler already installed; keeping the first");
        }
    }

    /// Carries out a hook's `rtmp://` redirect; returns the local stream code.
    fn relay(&self, req: &AccessRequest, url: &str) -> Result<String, Denied> {
        let Some(relays) = self.inner.relays.get() else {
            return Err(Denied::new("relay redirects are not available"));
        };
        let relay_redirect = self
            .inner
            .notifier
            .as_ref()
            .is_some_and(|n| n.config().relay_redirect);
        // nginx-rtmp's notify_relay_redirect: the local name is the URL's MD5, so relays to
        // different origins never meet in one stream.
        let code = if relay_redirect {
            use md5::Digest;
            let digest = md5::Md5::digest(url.as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            req.code.clone()
        };
        let done = match req.action {
            Action::Publish => {
                if self.inner.hub.is_live(&code) {
                    return Err(Denied::new("stream is already being published"));
                }
                relays.push(&code, url)
            }
            Action::Play => relays.pull(&code, url),
        };
        match done {
            Ok(()) => Ok(code),
            Err(e) => {
                warn!(stream = %req.code, error = %e, "relay redirect refused");
                Err(Denied::new(format!("relay failed: {e}")))
            }
        }
    }

    /// Calls `on_update` for every session each `update_interval` until `shutdown`; a refusal
    /// drops the session (nginx-rtmp's `notify_update_strict` decides what counts as one).
    pub async fn run_updates(self, shutdown: CancellationToken) {
        let Some(notifier) = self.inner.notifier.clone() else {
            return;
        };
        if !notifier.enabled(HookEvent::Update) {
            return;
        }
        let period = notifier
            .config()
            .update_interval
            .max(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sessions = self.inner.hub.sessions();
            futures_util::stream::iter(sessions)
                .for_each_concurrent(UPDATE_CONCURRENCY, |s| {
                    let this = self.clone();
                    let notifier = notifier.clone();
                    async move { this.update(&notifier, s).await }
                })
                .await;
        }
    }

    async fn update(&self, notifier: &Notifier, s: hub::SessionInfo) {
        // Another node's pull: that node's hooks heard of its players.
        if s.internal {
            return;
        }
        let role = match s.role {
            SessionRole::Publisher => Role::Publish,
            SessionRole::Reader => Role::Play,
        };
        let elapsed = SystemTime::now()
            .duration_since(s.started_at)
            .unwrap_or_default();
        let session = self.session(s.protocol, s.client.as_deref(), s.remote_addr, s.id);
        // nginx-rtmp sends the session's RTMP clock (`s->current_time`): the stream's media
        // time, which is what a platform compares across updates to see a stalled encoder.
        let timestamp_ms = self
            .inner
            .hub
            .media_time(&s.stream)
            .map_or(0, |dts| (dts.max(0) / HUB_TICKS_PER_MS) as u32);
        let args = HookArgs::update(
            &session,
            role,
            &s.stream,
            elapsed,
            timestamp_ms,
            &query(&s.args),
        );
        if let HookReply::Refuse(reason) = notifier.decide(HookEvent::Update, &args).await {
            warn!(session = s.id, stream = %s.stream, %reason, "on_update refused: dropping session");
            self.inner.hub.kick_session(s.id);
        }
    }

    /// Waits (bounded) for notifications and `stop` callbacks still in flight.
    pub async fn close(&self) {
        if let Some(n) = &self.inner.notifier {
            n.close().await;
        }
        if let Some(c) = &self.inner.callback {
            c.close().await;
        }
    }

    /// The hook view of one client.
    fn session(
        &self,
        protocol: &str,
        client: Option<&ClientInfo>,
        addr: Option<SocketAddr>,
        fallback_id: u64,
    ) -> hooks::Session {
        let ip = addr.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        match client {
            Some(c) => {
                let mut s = hooks::Session::new(protocol, &c.app, ip, c.connection_id);
                s.flashver.clone_from(&c.flash_ver);
                s.swfurl.clone_from(&c.swf_url);
                s.tcurl.clone_from(&c.tc_url);
                s.pageurl.clone_from(&c.page_url);
                s.epoch = c.epoch;
                s.query = query(&c.connect_args);
                s
            }
            None => hooks::Session::new(protocol, &self.inner.app, ip, fallback_id),
        }
    }

    async fn decide(&self, req: AccessRequest) -> Decision {
        let ip = req.remote_addr.map(|a| a.ip());
        let allow = match req.action {
            Action::Publish => &self.inner.publish_allow,
            Action::Play => &self.inner.play_allow,
        };
        if let Some(ip) = ip
            && !allow.allows(ip)
        {
            return Err(Denied::new("address not allowed"));
        }
        if self.inner.max_code_len > 0 && req.code.len() > self.inner.max_code_len {
            return Err(Denied::new("invalid stream name"));
        }
        self.inner.control.decide(&req)?;
        let http = HTTP_PROTOCOLS.contains(&req.protocol);
        if !http {
            return self.hooks(&req).await;
        }
        // Players do not carry the playlist's query over to segment URLs, so a request
        // without one reuses the decision this address got for the stream.
        let q = query(&req.args);
        let key = (req.code.clone(), ip, q.clone());
        if let Some(d) = self.inner.http_cache.get(&key) {
            return self.renew_relay(d);
        }
        if q.is_empty()
            && let Some(d) = self
                .inner
                .http_cache
                .get(&(req.code.clone(), ip, ANY.into()))
        {
            return self.renew_relay(d);
        }
        let decision = self.hooks(&req).await;
        if decision.is_ok() {
            self.inner
                .http_cache
                .insert((req.code.clone(), ip, ANY.into()), decision.clone());
        }
        self.inner.http_cache.insert(key, decision.clone());
        decision
    }

    /// A cached HTTP decision that admitted a relay pull: the pull may have ended since
    /// (nobody read for a while), so ask for it again; a running one is left alone.
    fn renew_relay(&self, d: Decision) -> Decision {
        if let Ok(admit) = &d
            && let Some(url) = self.inner.http_relays.get(&admit.code)
            && let Some(Err(e)) = self.inner.relays.get().map(|r| r.pull(&admit.code, &url))
        {
            warn!(stream = %admit.code, error = %e, "relay pull could not restart");
        }
        d
    }

    /// The hook and callback part of a decision.
    async fn hooks(&self, req: &AccessRequest) -> Decision {
        let mut admit = Admit::new(req.code.clone());
        if let Some(n) = &self.inner.notifier {
            let event = match req.action {
                Action::Publish => HookEvent::Publish,
                Action::Play => HookEvent::Play,
            };
            if n.enabled(event) {
                let session = self.session(req.protocol, req.client.as_deref(), req.remote_addr, 0);
                let q = query(&req.args);
                let c = &req.command;
                let args = match req.action {
                    Action::Publish => {
                        let kind = c.publish_type.as_deref().unwrap_or("live");
                        HookArgs::publish(&session, &req.code, kind, &q)
                    }
                    Action::Play => {
                        let mut a = HookArgs::play(&session, &req.code, &q);
                        a.set("start", &nginx_uint(c.start.unwrap_or(0.0)))
                            .set("duration", &nginx_uint(c.duration.unwrap_or(0.0)))
                            .set("reset", if c.reset == Some(true) { "1" } else { "0" });
                        a
                    }
                };
                match n.decide(event, &args).await {
                    HookReply::Allow => {}
                    HookReply::Redirect(name) => {
                        if !hub::valid_code(&name) {
                            warn!(from = %req.code, to = %name, "hook renamed to an invalid stream code");
                            return Err(Denied::new("renamed to an invalid stream name"));
                        }
                        info!(from = %req.code, to = %name, "stream renamed by {}", event.directive());
                        admit.code = name;
                    }
                    HookReply::Relay(url) => {
                        admit.code = self.relay(req, &url)?;
                        if req.action == Action::Play && HTTP_PROTOCOLS.contains(&req.protocol) {
                            self.inner.http_relays.insert(admit.code.clone(), url);
                        }
                        info!(stream = %req.code, local = %admit.code, "relay by {}", event.directive());
                    }
                    HookReply::Refuse(reason) => return Err(Denied::new(reason)),
                }
            }
        }
        if req.action == Action::Publish
            && let Some(cb) = &self.inner.callback
        {
            // A second publisher would be refused by the hub anyway; refusing first keeps the
            // platform from registering a broadcast that never starts.
            if self.inner.hub.is_live(&admit.code) {
                return Err(Denied::new("stream is already being published"));
            }
            let ip = req
                .remote_addr
                .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
            let key = req.arg("key").unwrap_or_default();
            match cb.start(&admit.code, key, ip).await {
                Ok(id) => {
                    debug!(stream = %admit.code, external_id = %id, "callback accepted start");
                    admit.external_id = Some(id);
                }
                Err(e) => {
                    warn!(stream = %admit.code, error = %e, "callback refused start");
                    return Err(Denied::new("refused by callback"));
                }
            }
        }
        Ok(admit)
    }
}

/// A play command's number as nginx-rtmp formats it: `(ngx_uint_t) v->start` on x86-64, so
/// ffmpeg's default start of -2000 reaches the hook as 18446744073709549616, fractions cut.
fn nginx_uint(v: f64) -> String {
    if v.is_finite() {
        ((v as i64) as u64).to_string()
    } else {
        "0".into()
    }
}

/// The hub's 90 kHz clock, in ticks per millisecond.
const HUB_TICKS_PER_MS: i64 = 90;

/// Cache key part meaning "any query from this address".
const ANY: &str = "\u{0}any";

/// `args` as a query string (`a=1&b=2`), in the client's order.
fn query(args: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(args.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish()
}

impl Admission for Gate {
    fn check(&self, request: AccessRequest) -> DecisionFuture {
        let this = self.clone();
        Box::pin(async move { this.decide(request).await })
    }

    fn connect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) -> ConnectFuture {
        let this = self.clone();
        Box::pin(async move {
            let Some(n) = this
                .inner
                .notifier
                .as_ref()
                .filter(|n| n.enabled(HookEvent::Connect))
            else {
                return Ok(client.app.clone());
            };
            let session = this.session("rtmp", Some(&client), Some(remote_addr), 0);
            match n
                .decide(HookEvent::Connect, &HookArgs::connect(&session))
                .await
            {
                HookReply::Allow => Ok(client.app.clone()),
                HookReply::Redirect(app) => {
                    info!(from = %client.app, to = %app, "application renamed by on_connect");
                    Ok(app)
                }
                HookReply::Refuse(reason) => Err(Denied::new(reason)),
                // Only on_publish and on_play relay; the notifier never says so for connect.
                HookReply::Relay(_) => Err(Denied::new("on_connect cannot relay")),
            }
        })
    }

    fn disconnect(&self, client: Arc<ClientInfo>, remote_addr: SocketAddr) {
        if let Some(n) = self
            .inner
            .notifier
            .as_ref()
            .filter(|n| n.enabled(HookEvent::Disconnect))
        {
            let session = self.session("rtmp", Some(&client), Some(remote_addr), 0);
            n.notify(HookEvent::Disconnect, HookArgs::disconnect(&session));
        }
    }

    fn session_closed(&self, s: &SessionInfo) {
        if let Some(n) = &self.inner.notifier
            && !s.internal
        {
            let session = self.session(s.protocol, s.client.as_deref(), s.remote_addr, s.id);
            let q = query(&s.args);
            let (event, args) = match s.role {
                SessionRole::Publisher => (
                    HookEvent::PublishDone,
                    HookArgs::publish_done(&session, &s.stream, &q),
                ),
                SessionRole::Reader => (
                    HookEvent::PlayDone,
                    HookArgs::play_done(&session, &s.stream, &q),
                ),
            };
            if n.enabled(event) {
                n.notify(event, args);
            }
            if n.enabled(HookEvent::Done) {
                n.notify(HookEvent::Done, HookArgs::done(&session, &s.stream, &q));
            }
        }
        if s.role == SessionRole::Publisher
            && let Some(cb) = &self.inner.callback
            && let Some(id) = &s.external_id
        {
            let ip = s.remote_addr.map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
            let key = s
                .args
                .iter()
                .find(|(k, _)| k == "key")
                .map_or("", |(_, v)| v.as_str());
            cb.stop(&s.stream, key, ip, id);
        }
    }
}

#[cfg(test)]
mod tests;
