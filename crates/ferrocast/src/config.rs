//! Configuration: embedded defaults, an optional YAML file, then `FERROCAST_*` environment
//! overrides. Unknown keys are errors naming the key, so a typo never silently does nothing.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Prefix of environment overrides; `__` separates nesting levels
/// (`FERROCAST_RTMP__LISTEN=0.0.0.0:1936`, `FERROCAST_DATA_DIR=/var/lib/ferrocast`).
pub const ENV_PREFIX: &str = "FERROCAST_";

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for persistent state.
    pub data_dir: PathBuf,
    /// Log filter, e.g. `info` or `info,ferrocast_rtmp=debug`; `RUST_LOG` wins when set.
    pub log: String,
    /// `text` for people, `json` for machines: one object per line with the span fields
    /// (peer, protocol, stream code, connection id).
    pub log_format: LogFormat,
    /// Time allowed for sessions to close after SIGINT/SIGTERM.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long HTTP keeps serving the ended playlists (`EXT-X-ENDLIST`) so
    /// polling players see a clean end; at most half of `shutdown_grace`, skipped with no
    /// playlist.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub shutdown_drain: Duration,
    /// RTMP listener.
    pub rtmp: RtmpConfig,
    /// HTTP listener.
    pub http: HttpConfig,
    /// HLS output.
    pub hls: HlsConfig,
    /// DASH output.
    pub dash: DashConfig,
    /// Stream hub memory bounds.
    pub hub: HubConfig,
    /// Where stream configuration is stored.
    pub database: DatabaseConfig,
    /// REST API settings.
    pub api: ApiConfig,
    /// Ingest policy.
    pub ingest: IngestConfig,
    /// RTMPS listener (off unless `rtmps.listen` is set).
    pub rtmps: RtmpsConfig,
    /// RTSP play server.
    pub rtsp: RtspConfig,
    /// Outgoing TLS (rtmps:// pushes).
    pub tls: TlsConfig,
    /// SRT listener (ingest and play on one UDP port).
    pub srt: SrtConfig,
    /// nginx-rtmp style HTTP notifications (`on_publish`, `on_play`, ...).
    pub hooks: HooksConfig,
    /// Signed event callback (AgustinSRG rtmp-server's `CALLBACK_URL`).
    pub callback: CallbackSection,
    /// The event bus and the defaults of its sinks (`/api/v1/hooks`).
    pub events: EventsSection,
    /// Who may publish and play, by address.
    pub access: AccessConfig,
    /// Connection limits checked at accept time.
    pub limits: access::LimitsConfig,
    /// Redis control channel (`kill-session>CODE`, `close-stream>CODE|ID`).
    pub redis: RedisSection,
    /// Browser ingest: api.video's socket.io protocol and the native WebSocket path.
    pub browser: BrowserSection,
    /// Where recordings go (which streams are recorded is each stream's `recording`).
    pub recording: RecordingSection,
    /// The ffmpeg that makes renditions (which streams have a ladder is each stream's
    /// `transcode`).
    pub transcode: TranscodeSection,
    /// Several nodes on one PostgreSQL and one Redis (off unless `cluster.redis_url` is set).
    pub cluster: ClusterSection,
}

/// `cluster.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `redis://...` where nodes register which streams they hold; unset: this node neither
    /// registers its streams nor pulls from other nodes.
    #[serde(serialize_with = "ser_url_opt")]
    pub redis_url: Option<String>,
    /// This node's id, unique in the cluster; empty: the host name.
    pub node_id: String,
    /// The RTMP base URL other nodes pull this node's streams from, app included (e.g.
    /// `rtmp://10.0.0.5:1935/live`); empty: `rtmp://127.0.0.1:<rtmp port>/<rtmp app>`, which
    /// only nodes on the same host reach.
    pub rtmp_url: String,
    /// The HTTP base URL other nodes fetch this node's HLS and DASH from (e.g.
    /// `http://10.0.0.5:8080`); empty: `http://127.0.0.1:<http port>`, which only nodes on
    /// the same host reach.
    pub http_url: String,
    /// Prefix of the Redis keys, so several clusters can share one Redis.
    pub prefix: String,
    /// How long a node's streams stay registered after its last heartbeat (a third of it
    /// apart): how soon a republish on another node may take a dead node's stream.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub ttl: Duration,
    /// A publish of a code live on another node takes it over (that node disconnects its
    /// publisher) instead of being refused.
    pub takeover: bool,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis_url: None,
            node_id: String::new(),
            rtmp_url: String::new(),
            http_url: String::new(),
            prefix: "ferrocast:".into(),
            ttl: Duration::from_secs(6),
            takeover: false,
        }
    }
}

impl Config {
    /// This node's id in a cluster: `cluster.node_id`, else the host name.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("node-{}", std::process::id()))
    }

    /// Where other nodes fetch this node's HLS and DASH (see [`ClusterSection::http_url`]).
    pub fn cluster_http_url(&self) -> String {
        if !self.cluster.http_url.is_empty() {
            return self.cluster.http_url.trim_end_matches('/').to_owned();
        }
        format!("http://127.0.0.1:{}", self.http.listen.port())
    }

    /// Where other nodes pull this node's streams from (see [`ClusterSection::rtmp_url`]).
    pub fn cluster_rtmp_url(&self) -> String {
        if !self.cluster.rtmp_url.is_empty() {
            return self.cluster.rtmp_url.clone();
        }
        format!(
            "rtmp://127.0.0.1:{}/{}",
            self.rtmp.listen.port(),
            self.rtmp.app
        )
    }
}

/// `transcode.*`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeSection {
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
    /// Most ladders running at once (each is one ffmpeg child).
    pub max_children: usize,
}

impl Default for TranscodeSection {
    fn default() -> Self {
        TranscodeSection {
            ffmpeg: PathBuf::from("ffmpeg"),
            max_children: 8,
        }
    }
}

/// `recording.*`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingSection {
    /// Root of the recordings; empty: `<data_dir>/recordings`.
    pub dir: Option<PathBuf>,
}

impl RecordingSection {
    /// The recordings' root directory.
    pub fn dir(&self, data_dir: &std::path::Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings"))
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

/// `browser.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSection {
    /// Whether `/socket.io/` and `/ws/publish/{code}` are served on the HTTP port.
    pub enabled: bool,
    /// The ffmpeg program (a name on PATH or a path).
    pub ffmpeg: PathBuf,
    /// Most ffmpeg children at once over both paths (api.video's `maxFfmpegInstances`).
    pub max_ffmpeg: usize,
    /// Largest media chunk accepted from a browser.
    pub max_chunk_bytes: usize,
    /// Most bytes queued for one ffmpeg before its session is ended.
    pub max_pending_bytes: usize,
    /// RTMP URL prefixes api.video clients may relay to (api.video's `rtmpUrlRegexp`);
    /// empty: only this gateway.
    pub relay_allow: Vec<String>,
    /// Further host names of this gateway (`rtmp://NAME/live/CODE` publishes here).
    pub local_hosts: Vec<String>,
    /// Send ffmpeg's output to api.video clients as `ffmpegOutput` events.
    pub send_ffmpeg_output: bool,
    /// Put ffmpeg's last output lines in errors' `details`.
    pub send_error_details: bool,
}

impl Default for BrowserSection {
    fn default() -> Self {
        let d = browser::BrowserConfig::default();
        BrowserSection {
            enabled: true,
            ffmpeg: d.ffmpeg,
            max_ffmpeg: d.max_ffmpeg,
            max_chunk_bytes: d.max_chunk_bytes,
            max_pending_bytes: d.max_pending_bytes,
            relay_allow: d.relay_allow,
            local_hosts: d.local_hosts,
            send_ffmpeg_output: d.send_ffmpeg_output,
            send_error_details: d.send_error_details,
        }
    }
}

/// `events.*`: the event bus's node name and what `/api/v1/hooks` sinks get by default.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// `node` of every event; empty: the host name.
    pub node: String,
    /// File sinks write under this directory; empty: `<data_dir>/events`.
    pub file_dir: Option<PathBuf>,
    /// Events queued per sink before the oldest are dropped, for sinks that do not say.
    pub queue_max: u32,
    /// Most events in one delivery, for sinks that do not say.
    pub batch_max: u32,
    /// Longest an event waits for its batch to fill, for sinks that do not say.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub batch_delay: Duration,
    /// Time allowed for one delivery attempt, for sinks that do not say.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// At shutdown, time allowed to deliver what the sinks still hold.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub shutdown_flush: Duration,
}

impl Default for EventsSection {
    fn default() -> Self {
        let d = events::Settings::default();
        EventsSection {
            node: String::new(),
            file_dir: None,
            queue_max: d.defaults.queue_max,
            batch_max: d.defaults.batch_max,
            batch_delay: Duration::from_millis(u64::from(d.defaults.batch_delay_ms)),
            timeout: Duration::from_millis(u64::from(d.defaults.timeout_ms)),
            shutdown_flush: d.shutdown_flush,
        }
    }
}

impl EventsSection {
    /// The node name events carry: the configured one, else the host name.
    pub fn node(&self) -> Option<String> {
        if self.node.is_empty() {
            events::host_name()
        } else {
            Some(self.node.clone())
        }
    }

    /// The sinks' settings, with `data_dir` for the default file directory.
    pub fn settings(&self, data_dir: &std::path::Path) -> events::Settings {
        events::Settings {
            file_dir: self
                .file_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("events")),
            defaults: events::HookDefaults {
                batch_max: self.batch_max,
                batch_delay_ms: self.batch_delay.as_millis() as u32,
                queue_max: self.queue_max,
                timeout_ms: self.timeout.as_millis() as u32,
            },
            shutdown_flush: self.shutdown_flush,
        }
    }

    fn validate(&self) -> Result<()> {
        // The same bounds as a sink's own settings (`events::validate`).
        if !(1..=1_000_000).contains(&self.queue_max) {
            bail!("events.queue_max must be 1..=1000000");
        }
        if !(1..=10_000).contains(&self.batch_max) {
            bail!("events.batch_max must be 1..=10000");
        }
        if self.batch_delay > Duration::from_secs(60) {
            bail!("events.batch_delay must be at most 60s");
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(60) {
            bail!("events.timeout must be 0.1s..=60s");
        }
        if self.shutdown_flush > Duration::from_secs(60) {
            bail!("events.shutdown_flush must be at most 60s");
        }
        Ok(())
    }
}

/// `hooks.*`: each `on_*` is an http(s) URL; unset events are not called.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Before an RTMP `connect` is answered.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_connect: Option<String>,
    /// Before a publish is accepted (every protocol).
    #[serde(serialize_with = "ser_url_opt")]
    pub on_publish: Option<String>,
    /// Before a play is accepted (every protocol, HTTP included).
    #[serde(serialize_with = "ser_url_opt")]
    pub on_play: Option<String>,
    /// After a publisher left.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_publish_done: Option<String>,
    /// After a player left.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_play_done: Option<String>,
    /// After either left.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_done: Option<String>,
    /// After an RTMP connection closed.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_disconnect: Option<String>,
    /// Every `update_interval` for each session.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_update: Option<String>,
    /// After a recorded file was closed.
    #[serde(serialize_with = "ser_url_opt")]
    pub on_record_done: Option<String>,
    /// `post` (form body) or `get` (query string).
    pub method: HookMethod,
    /// Longest a hook may take; a timeout refuses.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Period of `on_update`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub update_interval: Duration,
    /// A failed `on_update` (timeout, unreachable) drops the session, not only a refusal.
    pub update_strict: bool,
    /// How long an HTTP player's decision is reused, so segment requests never wait on a hook.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub cache_ttl: Duration,
    /// nginx-rtmp's `notify_relay_redirect`: an `rtmp://` redirect renames the local stream
    /// to the MD5 hex of the URL.
    pub relay_redirect: bool,
}

impl Default for HooksConfig {
    fn default() -> Self {
        let n = hooks::NotifyConfig::default();
        HooksConfig {
            on_connect: None,
            on_publish: None,
            on_play: None,
            on_publish_done: None,
            on_play_done: None,
            on_done: None,
            on_disconnect: None,
            on_update: None,
            on_record_done: None,
            method: HookMethod::Post,
            timeout: n.timeout,
            update_interval: n.update_interval,
            update_strict: n.update_strict,
            cache_ttl: n.cache_ttl,
            relay_redirect: n.relay_redirect,
        }
    }
}

impl HooksConfig {
    /// The hook client's view of this section.
    pub fn notify(&self) -> hooks::NotifyConfig {
        hooks::NotifyConfig {
            on_connect: self.on_connect.clone(),
            on_publish: self.on_publish.clone(),
            on_play: self.on_play.clone(),
            on_publish_done: self.on_publish_done.clone(),
            on_play_done: self.on_play_done.clone(),
            on_done: self.on_done.clone(),
            on_disconnect: self.on_disconnect.clone(),
            on_update: self.on_update.clone(),
            on_record_done: self.on_record_done.clone(),
            method: match self.method {
                HookMethod::Post => hooks::NotifyMethod::Post,
                HookMethod::Get => hooks::NotifyMethod::Get,
            },
            timeout: self.timeout,
            update_interval: self.update_interval,
            update_strict: self.update_strict,
            cache_ttl: self.cache_ttl,
            relay_redirect: self.relay_redirect,
        }
    }
}

/// `hooks.method`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HookMethod {
    /// Form-encoded body.
    Post,
    /// Arguments in the query string.
    Get,
}

/// `callback.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackSection {
    /// URL receiving `start`/`stop` events; unset disables the callback.
    #[serde(serialize_with = "ser_url_opt")]
    pub url: Option<String>,
    /// HS256 secret the event tokens are signed with (required with `url`).
    #[serde(serialize_with = "ser_secret")]
    pub jwt_secret: Option<String>,
    /// `sub` claim of the tokens.
    pub subject: String,
    /// `rtmp_host` claim: how the platform names this server.
    pub rtmp_host: String,
    /// Longest a `start` may take; a timeout refuses the publish.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub timeout: Duration,
}

impl Default for CallbackSection {
    fn default() -> Self {
        CallbackSection {
            url: None,
            jwt_secret: None,
            subject: "rtmp_event".into(),
            rtmp_host: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// `access.*`: lists of IPs and CIDRs (`10.0.0.0/8`, `::1`, `*`); empty allows everyone.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Who may publish, on every protocol.
    pub publish_allow: access::IpList,
    /// Who may play, on every protocol.
    pub play_allow: access::IpList,
    /// Longest stream code accepted (AgustinSRG's `ID_MAX_LENGTH`), at most 128.
    pub id_max_length: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            publish_allow: access::IpList::default(),
            play_allow: access::IpList::default(),
            id_max_length: 128,
        }
    }
}

/// `redis.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://[:password@]host:port` or `rediss://...`; unset disables the channel.
    #[serde(serialize_with = "ser_url_opt")]
    pub url: Option<String>,
    /// Channel to subscribe to.
    pub channel: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: None,
            channel: redisctl::DEFAULT_CHANNEL.into(),
        }
    }
}

/// `srt.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrtConfig {
    /// Whether the SRT listener runs.
    pub enabled: bool,
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// SRT latency, both directions: time SRT has to recover lost packets.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub latency: Duration,
    /// AES passphrase (10..=79 bytes) every caller must use; unencrypted when null.
    #[serde(serialize_with = "ser_secret")]
    pub passphrase: Option<String>,
    /// Application name in stream ids (`publish:<app>/<code>`, `<app>/<code>`).
    pub app: String,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            enabled: true,
            listen: ([0, 0, 0, 0], 9000).into(),
            latency: Duration::from_millis(120),
            passphrase: None,
            app: "live".into(),
        }
    }
}

/// `rtmps.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpsConfig {
    /// Address to listen on; `null` (default) disables RTMPS.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// How often the two files are checked for changes (reloaded without a restart).
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub reload_interval: Duration,
}

impl Default for RtmpsConfig {
    fn default() -> Self {
        RtmpsConfig {
            listen: None,
            cert_file: None,
            key_file: None,
            reload_interval: Duration::from_secs(30),
        }
    }
}

/// `tls.*`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Extra CA certificate(s), PEM, trusted for rtmps:// pushes besides the platform's roots.
    pub extra_ca_file: Option<PathBuf>,
}

/// `database.*`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; empty means `sqlite://<data_dir>/ferrocast.db`.
    #[serde(serialize_with = "ser_url")]
    pub url: String,
}

/// `api.*`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// When set, every `/api` and `/metrics` call needs `Authorization: Bearer <token>`.
    #[serde(serialize_with = "ser_secret")]
    pub token: Option<String>,
    /// Networks whose clients may reach `/api` and `/metrics`. Unset: loopback only without a
    /// token, everyone (with the token) when `token` is set.
    pub allow: Option<access::IpList>,
    /// A separate address for `/api` and `/metrics`; when set, the main HTTP port serves
    /// media only.
    pub listen: Option<SocketAddr>,
}

/// `ingest.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Publishing to an unknown code creates a runtime stream instead of being refused.
    pub auto_create: bool,
    /// How long a runtime stream made from a template (a publish to a code matching its
    /// prefix) lives without a publisher or a reader.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub runtime_idle: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            auto_create: true,
            runtime_idle: control::RUNTIME_IDLE_TIMEOUT,
        }
    }
}

/// `rtsp.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspConfig {
    /// Serve `rtsp://host/<app>/<code>` players.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Application name in `rtsp://host/<app>/<code>`.
    pub app: String,
    /// A session without any request or RTCP for this long is closed.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub session_timeout: Duration,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 8554)),
            app: "live".into(),
            session_timeout: Duration::from_secs(60),
        }
    }
}

/// `rtmp.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Application name in `rtmp://host/<app>/<code>`.
    pub app: String,
    /// How RTMP URLs name streams.
    pub url_scheme: UrlScheme,
    /// A ping request goes to every connection this often; 0 = never.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub ping_interval: Duration,
    /// A player that sends nothing, not even a ping response, for this long is closed;
    /// 0 = never.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub player_read_timeout: Duration,
    /// Chunk size we send with.
    pub chunk_size: u32,
    /// Largest chunk size a peer may announce.
    pub max_incoming_chunk_size: u32,
    /// Largest message a peer may send.
    pub max_message_size: u32,
    /// Time a client has to complete the handshake.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub handshake_timeout: Duration,
    /// Time a player waits for a stream that is not live yet.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub play_wait_timeout: Duration,
    /// A connection that neither publishes nor plays this long after the handshake is closed.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// A publisher that sends nothing for this long is closed, freeing its stream code.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub publisher_timeout: Duration,
    /// Most RTMP connections at once.
    pub max_connections: usize,
    /// Longest time a player's frames may wait to be merged into one write; 0 (the default)
    /// writes each frame at once.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub play_coalesce: Duration,
    /// Readers of one stream at which the merge window reaches `play_coalesce`.
    pub play_coalesce_readers: u64,
    /// Players one fan-out task writes; a larger audience is split over more tasks.
    pub play_group_size: usize,
}

/// `rtmp.url_scheme`: how the path of an RTMP URL names a stream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UrlScheme {
    /// `rtmp://HOST/<app>/<code>`, tokens in the query (`?key=`).
    #[default]
    AppName,
    /// AgustinSRG rtmp-server's `rtmp://HOST/<channel>/<key>`: the channel is the stream code
    /// and players must give the publisher's key.
    ChannelKey,
}

/// `http.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A request's headers must be complete within this, counted from the accept or from the
    /// end of the previous response, so it also bounds how long an idle keep-alive connection
    /// is kept.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// No byte received or sent for this long closes the connection (a player that stopped
    /// reading a response, a body that stalls).
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Most HTTP connections open at once from one address (`limits.exempt` lifts it); they
    /// also count toward `limits.max_connections*`. `null` = no HTTP-only cap.
    pub max_connections_per_ip: Option<usize>,
}

/// `hls.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Produce HLS at all.
    pub enabled: bool,
    /// Target segment duration; segments are cut at the first keyframe after it.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub segment_duration: Duration,
    /// Segments listed in the playlist.
    pub window: usize,
    /// How long after the publisher leaves the playlist waits for a republish before ENDLIST.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub end_grace: Duration,
    /// How long a finished playlist stays served.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub linger: Duration,
}

/// `dash.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashConfig {
    /// Produce DASH at all.
    pub enabled: bool,
    /// Target segment duration; segments are cut at the first keyframe after it.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub segment_duration: Duration,
    /// Segments per track listed in the MPD (the time-shift buffer).
    pub window: usize,
    /// How long after the publisher leaves the MPD waits for a republish before it ends.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub end_grace: Duration,
    /// How long an ended MPD stays served.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub linger: Duration,
    /// MPD `minimumUpdatePeriod`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub minimum_update_period: Duration,
    /// MPD `suggestedPresentationDelay`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub suggested_presentation_delay: Duration,
    /// MPD `minBufferTime`.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub min_buffer_time: Duration,
    /// Segments are also published in parts of about this long while they are written: the
    /// parts of Low-Latency HLS over the same CMAF segments (`cmaf.m3u8`) and the chunks of
    /// low-latency DASH (`index-ll.mpd`); 0 = whole segments only.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub part_duration: Duration,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            enabled: true,
            segment_duration: Duration::from_secs(2),
            window: 6,
            end_grace: Duration::from_secs(10),
            linger: Duration::from_secs(60),
            minimum_update_period: Duration::from_secs(2),
            suggested_presentation_delay: Duration::from_secs(6),
            min_buffer_time: Duration::from_secs(2),
            part_duration: Duration::from_millis(250),
        }
    }
}

/// `hub.*`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// Keep the current GOP so new readers start at once on a keyframe.
    pub gop_cache: bool,
    /// Byte cap of one stream's GOP cache.
    pub gop_cache_max_bytes: usize,
    /// A GOP over the cap loses its oldest frames rather than the whole cache.
    pub gop_cache_evict_oldest: bool,
    /// Frames a reader may fall behind before it skips to the next keyframe.
    pub reader_queue_frames: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            log: "info".into(),
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(5),
            shutdown_drain: Duration::from_secs(3),
            rtmp: RtmpConfig::default(),
            http: HttpConfig::default(),
            hls: HlsConfig::default(),
            dash: DashConfig::default(),
            hub: HubConfig::default(),
            database: DatabaseConfig::default(),
            api: ApiConfig::default(),
            ingest: IngestConfig::default(),
            rtmps: RtmpsConfig::default(),
            rtsp: RtspConfig::default(),
            tls: TlsConfig::default(),
            srt: SrtConfig::default(),
            hooks: HooksConfig::default(),
            callback: CallbackSection::default(),
            events: EventsSection::default(),
            access: AccessConfig::default(),
            limits: access::LimitsConfig::default(),
            redis: RedisSection::default(),
            browser: BrowserSection::default(),
            recording: RecordingSection::default(),
            transcode: TranscodeSection::default(),
            cluster: ClusterSection::default(),
        }
    }
}

impl Config {
    /// The effective configuration as JSON with secrets masked, as `--check-config` prints it
    /// and `GET /api/v1/config` shows it.
    pub fn masked_json(&self) -> serde_json::Value {
        // The masking lives in the Serialize impls (`ser_secret`, `ser_url`).
        serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("cannot show the configuration: {e}") }),
        )
    }

    /// The database URL, defaulting to a SQLite file in `data_dir`.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}/ferrocast.db", self.data_dir.display())
        } else {
            self.database.url.clone()
        }
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: ([0, 0, 0, 0], 1935).into(),
            app: "live".into(),
            url_scheme: UrlScheme::AppName,
            ping_interval: Duration::ZERO,
            player_read_timeout: Duration::ZERO,
            chunk_size: 4096,
            max_incoming_chunk_size: 65536,
            max_message_size: 8 << 20,
            handshake_timeout: Duration::from_secs(5),
            play_wait_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            publisher_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            play_coalesce: Duration::ZERO,
            play_coalesce_readers: 200,
            play_group_size: 512,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([0, 0, 0, 0], 8080).into(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: Some(256),
        }
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            enabled: true,
            segment_duration: Duration::from_secs(2),
            window: 6,
            end_grace: Duration::from_secs(10),
            linger: Duration::from_secs(60),
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            gop_cache: true,
            gop_cache_max_bytes: 16 << 20,
            gop_cache_evict_oldest: false,
            reader_queue_frames: 1024,
        }
    }
}

/// Accepts seconds as a number (`2`, `0.5`) or a string with a unit (`500ms`, `5s`, `1m`).
/// Durations print as seconds, the unit the file takes.
fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A secret prints as `"***"` when set: `--check-config` output may be pasted anywhere.
fn ser_secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}

/// A URL prints without its password and query (tokens ride there).
fn ser_url<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(v))
}

fn ser_url_opt<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_str(&mask_url(u)),
        None => s.serialize_none(),
    }
}

/// `scheme://user:***@host/path?***`: the API's `/config` masks URLs the same way.
pub use api::mask_url;

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Text(String),
    }
    let secs = match Raw::deserialize(d)? {
        Raw::Num(n) => n,
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom)?,
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(serde::de::Error::custom(format!("bad duration {secs}")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_duration(t: &str) -> Result<f64, String> {
    let t = t.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("bad duration {t:?} (use seconds, or 500ms, 5s, 1m)"))
}

impl Config {
    /// Loads defaults, then `file` if given, then environment overrides, then validates.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let v: serde_json::Value = serde_saphyr::from_str(&text)
                    .with_context(|| format!("config file {} is not valid YAML", path.display()))?;
                if v.is_null() {
                    serde_json::json!({})
                } else {
                    v
                }
            }
            None => serde_json::json!({}),
        };
        let vars: Vec<(String, String)> = std::env::vars().collect();
        // FERROCAST_* is applied last, so it wins over the compatibility names.
        apply_compat_env(&mut tree, &vars)?;
        apply_env(&mut tree, vars)?;
        // serde_path_to_error names the key (`rtmp.chunk_size: invalid type ...`).
        let config: Config = serde_path_to_error::deserialize(tree)
            .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner()))
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            bail!(
                "rtmp.chunk_size must be 128..=65536, got {}",
                self.rtmp.chunk_size
            );
        }
        if !(128..=(1 << 24)).contains(&self.rtmp.max_incoming_chunk_size) {
            bail!("rtmp.max_incoming_chunk_size must be 128..=16777216");
        }
        if self.rtmp.max_message_size < 64 << 10 || self.rtmp.max_message_size > 1 << 28 {
            bail!("rtmp.max_message_size must be 64 KiB..=256 MiB");
        }
        if self.http.header_timeout.is_zero() || self.http.idle_timeout.is_zero() {
            bail!("http.header_timeout and http.idle_timeout must be above 0");
        }
        if self.browser.max_ffmpeg == 0 {
            bail!(
                "browser.max_ffmpeg must be at least 1 (set browser.enabled: false to turn it off)"
            );
        }
        if !(64 << 10..=64 << 20).contains(&self.browser.max_chunk_bytes) {
            bail!("browser.max_chunk_bytes must be 64 KiB..=64 MiB");
        }
        if self.browser.max_pending_bytes < self.browser.max_chunk_bytes {
            bail!("browser.max_pending_bytes must be at least browser.max_chunk_bytes");
        }
        if let Some(p) = self.browser.relay_allow.iter().find(|p| {
            !(p.starts_with("rtmp://") || p.starts_with("rtmps://")) || p.matches('/').count() < 3
        }) {
            bail!("browser.relay_allow entries are rtmp(s)://host/app/ prefixes, got {p:?}");
        }
        if self.api.token.as_deref().is_some_and(|t| t.len() < 8) {
            bail!("api.token must be at least 8 characters");
        }
        if self.rtmps.listen.is_some()
            && (self.rtmps.cert_file.is_none() || self.rtmps.key_file.is_none())
        {
            bail!("rtmps.listen needs rtmps.cert_file and rtmps.key_file");
        }
        if let Some(p) = &self.srt.passphrase
            && !(10..=79).contains(&p.len())
        {
            bail!("srt.passphrase must be 10..=79 bytes");
        }
        if !hub::valid_name(&self.srt.app) {
            bail!("srt.app must match [A-Za-z0-9_-]{{1,128}}");
        }
        if !hub::valid_name(&self.rtmp.app) {
            bail!("rtmp.app must match [A-Za-z0-9_-]{{1,128}}");
        }
        if !hub::valid_name(&self.rtsp.app) {
            bail!("rtsp.app must match [A-Za-z0-9_-]{{1,128}}");
        }
        if self.rtsp.session_timeout < Duration::from_secs(5) {
            bail!("rtsp.session_timeout must be at least 5s");
        }
        if self.rtmp.play_coalesce > Duration::from_millis(500) {
            bail!("rtmp.play_coalesce must be at most 500ms");
        }
        if self.hls.segment_duration < Duration::from_millis(100) {
            bail!("hls.segment_duration must be at least 0.1 s");
        }
        if self.hls.window == 0 || self.hls.window > 100 {
            bail!("hls.window must be 1..=100");
        }
        if self.dash.segment_duration < Duration::from_millis(100) {
            bail!("dash.segment_duration must be at least 0.1 s");
        }
        if self.dash.window == 0 || self.dash.window > 100 {
            bail!("dash.window must be 1..=100");
        }
        if self.dash.minimum_update_period < Duration::from_millis(100) {
            bail!("dash.minimum_update_period must be at least 0.1 s");
        }
        if !(1..=128).contains(&self.access.id_max_length) {
            bail!("access.id_max_length must be 1..=128");
        }
        let notify = self.hooks.notify();
        notify.validate().context("hooks")?;
        self.events.validate()?;
        if self.callback.url.is_some()
            && self
                .callback
                .jwt_secret
                .as_deref()
                .is_none_or(str::is_empty)
        {
            bail!("callback.url needs callback.jwt_secret");
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("redis.url must start with redis:// or rediss://");
        }
        if self.ingest.runtime_idle < Duration::from_secs(1) {
            bail!("ingest.runtime_idle must be at least 1s");
        }
        if self.hub.reader_queue_frames < 16 || self.hub.reader_queue_frames > 1 << 16 {
            bail!("hub.reader_queue_frames must be 16..=65536");
        }
        Ok(())
    }
}

/// Sets `path` (`a.b`) in the config tree.
fn set_path(tree: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut node = tree;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            *node = serde_json::json!({});
        }
        let serde_json::Value::Object(map) = node else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return;
        }
        node = map
            .entry((*part).to_owned())
            .or_insert_with(|| serde_json::json!({}));
    }
}

/// The variables of AgustinSRG's rtmp-server; any of them set means its defaults apply.
const COMPAT_VARS: &[&str] = &[
    "RTMP_PORT",
    "BIND_ADDRESS",
    "SSL_PORT",
    "SSL_CERT",
    "SSL_KEY",
    "SSL_CHECK_RELOAD_SECONDS",
    "RTMP_CHUNK_SIZE",
    "ID_MAX_LENGTH",
    "MAX_IP_CONCURRENT_CONNECTIONS",
    "CONCURRENT_LIMIT_WHITELIST",
    "RTMP_PLAY_WHITELIST",
    "PLAY_ALLOWED_FROM",
    "GOP_CACHE_SIZE_MB",
    "CALLBACK_URL",
    "JWT_SECRET",
    "CUSTOM_JWT_SUBJECT",
    "RTMP_HOST",
    "REDIS_USE",
];

/// Sets `path` only where the configuration file left it unset.
fn set_default(tree: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut node = &*tree;
    for part in path.split('.') {
        match node.get(part) {
            Some(next) => node = next,
            None => return set_path(tree, path, value),
        }
    }
}

/// AgustinSRG rtmp-server's `YES`/`NO` switches (also `true`/`1`).
fn yes(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "1" | "on"
    )
}

/// Maps the environment of AgustinSRG's rtmp-server onto this configuration, so its users can
/// switch by changing the image name (see the README for the table).
fn apply_compat_env(tree: &mut serde_json::Value, vars: &[(String, String)]) -> Result<()> {
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let port = |name: &str| -> Result<Option<u16>> {
        get(name)
            .map(|v| {
                v.parse::<u16>()
                    .with_context(|| format!("environment variable {name}: not a port: {v:?}"))
            })
            .transpose()
    };
    let number = |name: &str| -> Result<Option<u64>> {
        get(name)
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("environment variable {name}: not a number: {v:?}"))
            })
            .transpose()
    };
    let bind: Option<std::net::IpAddr> = get("BIND_ADDRESS")
        .map(|v| {
            v.parse()
                .with_context(|| format!("environment variable BIND_ADDRESS: not an IP: {v:?}"))
        })
        .transpose()?;
    let host = bind.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let rtmp_port = port("RTMP_PORT")?;
    if rtmp_port.is_some() || bind.is_some() {
        let addr = SocketAddr::new(host, rtmp_port.unwrap_or(1935));
        set_path(tree, "rtmp.listen", addr.to_string().into());
    }
    if let Some(p) = port("SSL_PORT")? {
        set_path(
            tree,
            "rtmps.listen",
            SocketAddr::new(host, p).to_string().into(),
        );
    }
    if let Some(v) = get("SSL_CERT") {
        set_path(tree, "rtmps.cert_file", v.into());
    }
    if let Some(v) = get("SSL_KEY") {
        set_path(tree, "rtmps.key_file", v.into());
    }
    if let Some(n) = number("SSL_CHECK_RELOAD_SECONDS")? {
        set_path(tree, "rtmps.reload_interval", n.into());
    }
    if let Some(n) = number("RTMP_CHUNK_SIZE")? {
        set_path(tree, "rtmp.chunk_size", n.into());
    }
    if let Some(n) = number("ID_MAX_LENGTH")? {
        set_path(tree, "access.id_max_length", n.into());
    }
    if let Some(n) = number("MAX_IP_CONCURRENT_CONNECTIONS")? {
        set_path(tree, "limits.max_connections_per_ip", n.into());
    }
    if let Some(v) = get("CONCURRENT_LIMIT_WHITELIST") {
        set_path(tree, "limits.exempt", v.into());
    }
    // `PLAY_ALLOWED_FROM` is the name its example compose file uses.
    if let Some(v) = get("RTMP_PLAY_WHITELIST").or_else(|| get("PLAY_ALLOWED_FROM")) {
        set_path(tree, "access.play_allow", v.into());
    }
    if let Some(mb) = number("GOP_CACHE_SIZE_MB")? {
        if mb == 0 {
            set_path(tree, "hub.gop_cache", false.into());
        } else {
            let bytes = mb.saturating_mul(1 << 20);
            set_path(tree, "hub.gop_cache_max_bytes", bytes.into());
        }
    }
    if let Some(v) = get("CALLBACK_URL") {
        set_path(tree, "callback.url", v.into());
    }
    if let Some(v) = get("JWT_SECRET") {
        set_path(tree, "callback.jwt_secret", v.into());
    }
    if let Some(v) = get("CUSTOM_JWT_SUBJECT") {
        set_path(tree, "callback.subject", v.into());
    }
    if let Some(v) = get("RTMP_HOST") {
        set_path(tree, "callback.rtmp_host", v.into());
    }
    // That server's own defaults, where its users rely on them, unless the file (or the
    // variable) says otherwise: its `/CHANNEL/KEY` URLs, 4 connections per IP, a 256 MB GOP
    // cache that evicts its oldest packets, a 30 s ping with a 60 s read deadline, and RTMPS
    // on 443 once a certificate and key are given.
    if COMPAT_VARS.iter().any(|name| get(name).is_some()) {
        set_default(tree, "rtmp.url_scheme", "channel_key".into());
        set_default(tree, "rtmp.ping_interval", 30.into());
        set_default(tree, "rtmp.player_read_timeout", 60.into());
        set_default(tree, "hub.gop_cache_evict_oldest", true.into());
        if get("MAX_IP_CONCURRENT_CONNECTIONS").is_none() {
            set_default(tree, "limits.max_connections_per_ip", 4.into());
        }
        if get("GOP_CACHE_SIZE_MB").is_none() {
            set_default(tree, "hub.gop_cache_max_bytes", (256u64 << 20).into());
        }
        if get("SSL_PORT").is_none() && get("SSL_CERT").is_some() && get("SSL_KEY").is_some() {
            let addr = SocketAddr::new(host, 443);
            set_default(tree, "rtmps.listen", addr.to_string().into());
        }
    }
    if get("REDIS_USE").is_some_and(|v| yes(&v)) {
        let host = get("REDIS_HOST").unwrap_or_else(|| "localhost".into());
        let p = port("REDIS_PORT")?.unwrap_or(redisctl::DEFAULT_PORT);
        let password = get("REDIS_PASSWORD");
        let tls = get("REDIS_TLS").is_some_and(|v| yes(&v));
        let url = redisctl::url_from_parts(&host, p, password.as_deref(), tls);
        set_path(tree, "redis.url", url.into());
        if let Some(c) = get("REDIS_CHANNEL") {
            set_path(tree, "redis.channel", c.into());
        }
    }
    // LOG_DEBUG=YES shows everything; LOG_REQUESTS=NO hides per-session lines (info).
    if get("LOG_DEBUG").is_some_and(|v| yes(&v)) {
        set_path(tree, "log", "debug".into());
    } else if get("LOG_REQUESTS").is_some_and(|v| !yes(&v)) {
        set_path(tree, "log", "warn".into());
    }
    Ok(())
}

/// Applies `FERROCAST_A__B=value` as `a.b: value`; the value is read as a YAML scalar.
fn apply_env(
    tree: &mut serde_json::Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    for (key, raw) in vars {
        let Some(path) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            bail!("environment variable {key}: empty key segment");
        }
        let value: serde_json::Value =
            serde_saphyr::from_str(&raw).unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
        let mut node = &mut *tree;
        for (i, part) in parts.iter().enumerate() {
            let serde_json::Value::Object(map) = node else {
                bail!("environment variable {key}: {part:?} is not a section");
            };
            if i + 1 == parts.len() {
                map.insert(part.clone(), value.clone());
                break;
            }
            node = map
                .entry(part.clone())
                .or_insert_with(|| serde_json::json!({}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(y: &str) -> Result<Config> {
        let mut tree: serde_json::Value = serde_saphyr::from_str(y)?;
        apply_env(&mut tree, Vec::new())?;
        let c: Config = serde_json::from_value(tree)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.rtmp.listen.port(), 1935);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.hls.segment_duration, Duration::from_secs(2));
        assert_eq!(c.hls.window, 6);
        assert_eq!(c.rtmp.chunk_size, 4096);
        assert_eq!(c.rtmp.handshake_timeout, Duration::from_secs(5));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = from_yaml("rtmp:\n  listn: 0.0.0.0:1\n").unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
        let err = from_yaml("bogus: 1\n").unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }

    #[test]
    fn durations_accept_numbers_and_units() {
        let c =
            from_yaml("hls:\n  segment_duration: 4\nrtmp:\n  handshake_timeout: 500ms\n").unwrap();
        assert_eq!(c.hls.segment_duration, Duration::from_secs(4));
        assert_eq!(c.rtmp.handshake_timeout, Duration::from_millis(500));
        assert!(from_yaml("hls:\n  segment_duration: soon\n").is_err());
    }

    #[test]
    fn env_overrides_nested_keys() {
        let mut tree = serde_json::json!({"rtmp": {"app": "live"}});
        apply_env(
            &mut tree,
            vec![
                ("FERROCAST_RTMP__LISTEN".into(), "127.0.0.1:1999".into()),
                ("FERROCAST_HLS__WINDOW".into(), "3".into()),
                ("FERROCAST_DATA_DIR".into(), "/tmp/x".into()),
                ("OTHER".into(), "ignored".into()),
            ],
        )
        .unwrap();
        let c: Config = serde_json::from_value(tree).unwrap();
        assert_eq!(c.rtmp.listen, "127.0.0.1:1999".parse().unwrap());
        assert_eq!(c.hls.window, 3);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.rtmp.app, "live");
    }

    #[test]
    fn agustinsrg_variables_bring_its_defaults_unless_the_file_says_otherwise() {
        let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let load = |mut tree: serde_json::Value, v: &[(&str, &str)]| -> Config {
            apply_compat_env(&mut tree, &vars(v)).unwrap();
            serde_json::from_value(tree).unwrap()
        };
        let plain = load(serde_json::json!({}), &[]);
        let compat = load(
            serde_json::json!({}),
            &[("SSL_CERT", "/c.pem"), ("SSL_KEY", "/k.pem")],
        );
        assert_eq!(compat.limits.max_connections_per_ip, Some(4));
        assert_ne!(plain.limits.max_connections_per_ip, Some(4));
        assert_eq!(compat.hub.gop_cache_max_bytes, 256 << 20);
        assert_eq!(compat.rtmps.listen, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(compat.rtmp.url_scheme, UrlScheme::ChannelKey);
        assert_eq!(plain.rtmp.url_scheme, UrlScheme::AppName);
        assert!(compat.hub.gop_cache_evict_oldest && !plain.hub.gop_cache_evict_oldest);
        assert_eq!(compat.rtmp.ping_interval, Duration::from_secs(30));
        assert_eq!(compat.rtmp.player_read_timeout, Duration::from_secs(60));
        assert_eq!(plain.rtmp.ping_interval, Duration::ZERO);
        // The file and the variables themselves win.
        let mine = load(
            serde_json::json!({"limits": {"max_connections_per_ip": 50}, "rtmp": {"url_scheme": "app_name"}}),
            &[("CALLBACK_URL", "http://x"), ("GOP_CACHE_SIZE_MB", "8")],
        );
        assert_eq!(mine.limits.max_connections_per_ip, Some(50));
        assert_eq!(mine.rtmp.url_scheme, UrlScheme::AppName);
        assert_eq!(mine.hub.gop_cache_max_bytes, 8 << 20);
        assert_eq!(mine.rtmps.listen, plain.rtmps.listen);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(from_yaml("rtmp:\n  chunk_size: 0\n").is_err());
        assert!(from_yaml("hls:\n  window: 0\n").is_err());
        assert!(from_yaml("rtmp:\n  listen: nowhere\n").is_err());
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../../../config.example.yaml");
        let c = from_yaml(text).unwrap();
        let d = Config::default();
        assert_eq!(c.rtmp.listen, d.rtmp.listen);
        assert_eq!(c.hls.window, d.hls.window);
        assert_eq!(c.hub.gop_cache_max_bytes, d.hub.gop_cache_max_bytes);
        assert_eq!(c.browser.max_ffmpeg, d.browser.max_ffmpeg);
        assert_eq!(c.browser.max_chunk_bytes, d.browser.max_chunk_bytes);
        assert_eq!(c.browser.max_pending_bytes, d.browser.max_pending_bytes);
    }

    /// `GET /api/v1/config` gets what this prints, masked once more by the API: with every
    /// secret the configuration can hold set, none of them comes out.
    #[test]
    fn the_api_view_of_the_configuration_has_no_secret() {
        let mut c = Config::default();
        c.api.token = Some("api-token-s3cret".into());
        c.callback.url = Some("https://cb.example/rtmp?sig=cb-query-s3cret".into());
        c.callback.jwt_secret = Some("jwt-s3cret".into());
        c.srt.passphrase = Some("srt-pass-s3cret".into());
        c.database.url = "postgres://gw:db-pw-s3cret@db.example/gw?sslpassword=db-q-s3cret".into();
        c.redis.url = Some("rediss://:redis-pw-s3cret@cache.example:6380".into());
        c.hooks.on_publish = Some("https://hook-user:hook-pw-s3cret@auth.example/p".into());
        c.hooks.on_play = Some("https://auth.example/play?token=hook-q-s3cret".into());
        // A token as the whole user part: it was shown as `hook-token-s3cret:***@`.
        c.hooks.on_done = Some("https://hook-token-s3cret@auth.example/done".into());
        c.rtmps.key_file = Some("/etc/ferrocast/tls/key.pem".into());
        c.validate().unwrap();
        let shown = api::EffectiveConfig::new(c.masked_json());
        let text = shown.value().to_string();
        for secret in [
            "api-token-s3cret",
            "cb-query-s3cret",
            "jwt-s3cret",
            "srt-pass-s3cret",
            "db-pw-s3cret",
            "db-q-s3cret",
            "redis-pw-s3cret",
            "hook-pw-s3cret",
            "hook-q-s3cret",
            "hook-token-s3cret",
        ] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        let v = shown.value();
        assert_eq!(v["api"]["token"], "***");
        assert_eq!(v["srt"]["passphrase"], "***");
        assert_eq!(v["callback"]["jwt_secret"], "***");
        assert_eq!(v["database"]["url"], "postgres://gw:***@db.example/gw?***");
        // What is not secret is there, as the file would write it.
        assert_eq!(v["rtmp"]["listen"], "0.0.0.0:1935");
        assert_eq!(v["rtmps"]["key_file"], "/etc/ferrocast/tls/key.pem");
        assert_eq!(v["ingest"]["runtime_idle"], 30.0);
        assert_eq!(v["hls"]["segment_duration"], 2.0);
        // And it reads back as a configuration (the masks aside).
        let back: Config = serde_json::from_value(c.masked_json()).unwrap();
        assert_eq!(back.ingest.runtime_idle, Duration::from_secs(30));
    }

    #[test]
    fn events_defaults_and_bounds() {
        let c = Config::default();
        let s = c.events.settings(std::path::Path::new("/var/lib/f"));
        assert_eq!(s.file_dir, PathBuf::from("/var/lib/f/events"));
        assert_eq!(s.defaults, events::HookDefaults::default());
        let c = from_yaml(
            "events:\n  node: edge-1\n  file_dir: /tmp/ev\n  queue_max: 50\n  batch_delay: 250ms\n",
        )
        .unwrap();
        assert_eq!(c.events.node().as_deref(), Some("edge-1"));
        let s = c.events.settings(std::path::Path::new("/x"));
        assert_eq!(s.file_dir, PathBuf::from("/tmp/ev"));
        assert_eq!((s.defaults.queue_max, s.defaults.batch_delay_ms), (50, 250));
        assert!(from_yaml("events:\n  queue_max: 0\n").is_err());
        assert!(from_yaml("events:\n  timeout: 5ms\n").is_err());
        assert!(from_yaml("events:\n  bogus: 1\n").is_err());
    }

    #[test]
    fn browser_bounds_are_checked() {
        assert!(from_yaml("browser:\n  max_ffmpeg: 0\n").is_err());
        assert!(from_yaml("browser:\n  max_chunk_bytes: 10\n").is_err());
        assert!(from_yaml("browser:\n  max_pending_bytes: 65536\n").is_err());
        assert!(from_yaml("browser:\n  relay_allow: [\"http://x/\"]\n").is_err());
        let c =
            from_yaml("browser:\n  relay_allow: [\"rtmp://a.rtmp.youtube.com/live2/\"]\n").unwrap();
        assert_eq!(c.browser.relay_allow.len(), 1);
    }
}
