//! Which node holds each live stream, in Redis: `<prefix>stream:<code>` is the holding node's
//! id and `<prefix>node:<id>` the node's RTMP base URL (with the app) and HTTP base URL, which
//! other nodes pull from, both with a TTL that the holder's heartbeat keeps renewing;
//! `<prefix>nodes` is the set of node ids that ever registered (a dead one is dropped from it
//! when its node key is found expired). A node that dies stops renewing, and its streams
//! are free again one TTL later: Redis does the expiry, there is no election of our own.

use crate::lock;
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on one Redis round trip: a publish or play never waits longer on the registry.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// After Redis failed to answer, calls fail at once for this long instead of each waiting
/// out its timeout.
const DOWN_BACKOFF: Duration = Duration::from_secs(1);

/// Sets the key to this node when it is free or already ours (or always, with takeover) and
/// returns the holder.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] or ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return v";
/// Renews the key if this node holds it; returns the holder (nil when it expired).
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v";
/// The holder of a code and that node's URLs, in one round trip: `{node, urls}`, `{node}`
/// when the node's key expired, or nil.
const ORIGIN: &str = r"
local node = redis.call('GET', KEYS[1])
if not node then return nil end
return {node, redis.call('GET', ARGV[1] .. node)}";
/// Deletes the key if this node holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Settings of the registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `redis://` or `rediss://` URL.
    pub redis_url: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where other nodes reach this node's RTMP server, app included, e.g.
    /// `rtmp://10.0.0.5:1935/live`.
    pub rtmp_url: String,
    /// Where other nodes reach this node's HTTP server, e.g. `http://10.0.0.5:8080`.
    pub http_url: String,
    /// Prefix of every key, so clusters can share one Redis.
    pub prefix: String,
    /// How long a registration outlives its last renewal.
    pub ttl: Duration,
    /// A publish on this node takes a code held by another node (whose publisher is then
    /// disconnected), instead of being refused.
    pub takeover: bool,
}

/// The outcome of claiming a code for a publisher on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node holds it now.
    Ours,
    /// Another node holds it.
    Taken(String),
    /// Redis did not answer: the publish goes ahead on this node alone.
    Unavailable,
}

/// The stream location registry of one node.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    client: redis::Client,
    conn: Mutex<Link>,
    /// Codes whose publisher runs here, with that publisher's session id; the heartbeat
    /// renews them.
    held: Mutex<HashMap<String, u64>>,
    /// The cluster key, once read from Redis, and when it was last read again.
    key: Mutex<Option<String>>,
    key_reread: Mutex<Option<Instant>>,
}

/// The shared connection, and since when Redis is known to be away.
#[derive(Default)]
struct Link {
    conn: Option<MultiplexedConnection>,
    down_until: Option<Instant>,
}

/// What the cluster knows of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPlaces {
    /// The node its publisher is on, if any.
    pub origin: Option<String>,
    /// Connected readers per node, as each node last reported them (every third of the TTL).
    pub readers: std::collections::BTreeMap<String, u32>,
}

/// Why a kill through another node did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillError {
    /// No node holds the code.
    NotLive,
    /// Redis is away, no node heard the request, or the holder did not let go in time.
    Unavailable(String),
}

impl std::fmt::Display for KillError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillError::NotLive => f.write_str("live on no node"),
            KillError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node_id", &self.inner.config.node_id)
            .finish_non_exhaustive()
    }
}

/// The query argument carrying the cluster key (see [`Registry::cluster_key`]); the hub keeps
/// it out of session arguments.
pub const CLUSTER_ARG: &str = hub::INTERNAL_ARG;

/// 128 random bits in hex, from the kernel.
fn random_hex() -> Option<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The two URLs of a node key's value.
fn split_urls(value: &str) -> Option<(String, String)> {
    let (rtmp, http) = value.split_once(' ')?;
    Some((rtmp.to_owned(), http.to_owned()))
}

impl Registry {
    /// A registry on `config.redis_url`; connects on first use.
    pub fn new(config: RegistryConfig) -> Result<Registry, redis::RedisError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        Ok(Registry {
            inner: Arc::new(Inner {
                config,
                client,
                conn: Mutex::new(Link::default()),
                held: Mutex::new(HashMap::new()),
                key: Mutex::new(None),
                key_reread: Mutex::new(None),
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    fn stream_key(&self, code: &str) -> String {
        format!("{}stream:{code}", self.inner.config.prefix)
    }

    fn readers_key(&self, code: &str) -> String {
        format!("{}readers:{code}", self.inner.config.prefix)
    }

    /// Where `code` is published and read in the cluster; `None` when Redis is away.
    pub async fn places(&self, code: &str) -> Option<StreamPlaces> {
        let origin = self.locate_checked(code).await?;
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.readers_key(code));
        let readers = self
            .call::<std::collections::BTreeMap<String, u32>>(&cmd)
            .await?;
        Some(StreamPlaces { origin, readers })
    }

    /// The holder of `code`: `None` when Redis is away, `Some(None)` when no node holds it.
    async fn locate_checked(&self, code: &str) -> Option<Option<String>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.stream_key(code));
        self.call::<Option<String>>(&cmd).await
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}node:{node}", self.inner.config.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.config.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `cmd` on the shared connection (see [`Registry::conn`]).
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.conn().await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<T>(&mut conn)).await;
        self.outcome(answer)
    }

    /// Runs `pipe` on the shared connection, in one round trip.
    async fn call_pipe(&self, pipe: &redis::Pipeline) -> Option<()> {
        let mut conn = self.conn().await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        self.outcome(answer)
    }

    /// The shared connection, opened when needed. No lock is held while waiting on Redis
    /// (the multiplexed connection is a cheap handle), so calls overlap; while Redis is
    /// known to be away, `None` at once.
    async fn conn(&self) -> Option<MultiplexedConnection> {
        let cached = {
            let link = lock(&self.inner.conn);
            if link.down_until.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            link.conn.clone()
        };
        if let Some(c) = cached {
            return Some(c);
        }
        let opened = tokio::time::timeout(
            CALL_TIMEOUT,
            self.inner.client.get_multiplexed_async_connection(),
        )
        .await;
        match opened {
            Ok(Ok(c)) => {
                lock(&self.inner.conn).conn = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => self.down(&format!("not reachable: {e}")),
            Err(_) => self.down("no answer"),
        }
    }

    /// What a call's answer means: the value, or Redis noted as away.
    fn outcome<T>(
        &self,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match answer {
            Ok(Ok(v)) => {
                lock(&self.inner.conn).down_until = None;
                Some(v)
            }
            Ok(Err(e)) => self.down(&format!("call failed: {e}")),
            Err(_) => self.down("call timed out"),
        }
    }

    /// Notes Redis as away: the connection is dropped and calls fail at once for a while.
    fn down<T>(&self, why: &str) -> Option<T> {
        let mut link = lock(&self.inner.conn);
        // Said once per outage, not once per call.
        if link.down_until.is_none() {
            tracing::warn!(
                why,
                "cluster: Redis away; this node works alone until it answers"
            );
        }
        link.conn = None;
        link.down_until = Some(Instant::now() + DOWN_BACKOFF);
        None
    }

    fn eval(script: &str, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(key);
        cmd
    }

    /// Claims `code` for a publisher on this node.
    pub async fn claim(&self, code: &str) -> Claim {
        let mut cmd = Self::eval(CLAIM, &self.stream_key(code));
        cmd.arg(self.node_id())
            .arg(self.ttl_ms())
            .arg(if self.inner.config.takeover { "1" } else { "0" });
        match self.call::<String>(&cmd).await {
            Some(holder) if holder == self.node_id() => Claim::Ours,
            Some(holder) => Claim::Taken(holder),
            None => Claim::Unavailable,
        }
    }

    /// The node holding `code`, if any and Redis answers.
    pub async fn locate(&self, code: &str) -> Option<String> {
        self.locate_checked(code).await.flatten()
    }

    /// The node holding `code` and its RTMP and HTTP base URLs, in one round trip; `None`
    /// when no live node holds it or Redis is away.
    pub async fn origin(&self, code: &str) -> Option<(String, String, String)> {
        let mut cmd = Self::eval(ORIGIN, &self.stream_key(code));
        cmd.arg(format!("{}node:", self.inner.config.prefix));
        let (node, urls): (String, Option<String>) = self
            .call::<Option<(String, Option<String>)>>(&cmd)
            .await
            .flatten()?;
        let (rtmp, http) = split_urls(&urls?)?;
        Some((node, rtmp, http))
    }

    /// Where `node` takes HTTP requests, as it registered it.
    pub async fn http_url(&self, node: &str) -> Option<String> {
        Some(self.node_urls(node).await?.1)
    }

    /// `node`'s RTMP and HTTP base URLs: one value, `<rtmp> <http>` (neither holds a space).
    async fn node_urls(&self, node: &str) -> Option<(String, String)> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.node_key(node));
        split_urls(&self.call::<Option<String>>(&cmd).await.flatten()?)
    }

    /// Every node alive now (its registration renewed within the TTL), with its HTTP base URL,
    /// sorted by id; `None` when Redis is away.
    pub async fn nodes(&self) -> Option<Vec<(String, String)>> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(self.nodes_key());
        let mut ids: Vec<String> = self.call(&cmd).await?;
        ids.sort();
        if ids.is_empty() {
            return Some(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for id in &ids {
            cmd.arg(self.node_key(id));
        }
        let values: Vec<Option<String>> = self.call(&cmd).await?;
        let mut alive = Vec::with_capacity(ids.len());
        for (id, value) in ids.into_iter().zip(values) {
            match value.as_deref().and_then(split_urls) {
                Some((_, http)) => alive.push((id, http)),
                None => {
                    // Expired: the node stopped (or died). Its id goes until it comes back.
                    let mut cmd = redis::cmd("SREM");
                    cmd.arg(self.nodes_key()).arg(&id);
                    let _ = self.call::<i64>(&cmd).await;
                }
            }
        }
        Some(alive)
    }

    /// The cluster key: a random value the first node to ask stored in `<prefix>key`, which
    /// every node reads. A node's pulls and fetches from another node carry it
    /// ([`CLUSTER_ARG`]), and the other node admits them without its play rules (stream
    /// keys, hooks, IP rules are for players, and the player was admitted by the edge).
    /// `None` when Redis is away.
    pub async fn cluster_key(&self) -> Option<String> {
        if let Some(key) = lock(&self.inner.key).clone() {
            return Some(key);
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key_name()).arg(random_hex()?).arg("NX");
        self.call::<Option<String>>(&cmd).await?;
        self.read_cluster_key().await
    }

    /// The cluster key read from Redis again, at most once a second (`None` otherwise): a
    /// key that does not match ours may be a new one, stored after Redis lost the old one.
    pub async fn reread_cluster_key(&self) -> Option<String> {
        {
            let mut at = lock(&self.inner.key_reread);
            if at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *at = Some(Instant::now());
        }
        self.read_cluster_key().await
    }

    /// Reads the cluster key from Redis and keeps it.
    async fn read_cluster_key(&self) -> Option<String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key_name());
        let key = self.call::<Option<String>>(&cmd).await.flatten()?;
        *lock(&self.inner.key) = Some(key.clone());
        Some(key)
    }

    /// The cluster key if [`Registry::cluster_key`] read it already.
    pub fn known_cluster_key(&self) -> Option<String> {
        lock(&self.inner.key).clone()
    }

    fn key_name(&self) -> String {
        format!("{}key", self.inner.config.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.inner.config.prefix)
    }

    fn control_channel(&self) -> String {
        format!("{}control", self.inner.config.prefix)
    }

    /// Disconnects the publisher of `code` on whichever node holds it: `Ok(node)` once that
    /// node let go of the code (within 3 s).
    pub async fn kill_remote(&self, code: &str) -> Result<String, KillError> {
        let node = match self.locate_checked(code).await {
            None => return Err(KillError::Unavailable("Redis is away".into())),
            Some(None) => return Err(KillError::NotLive),
            Some(Some(node)) => node,
        };
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.control_channel())
            .arg(format!("kill|{node}|{code}"));
        if self.call::<i64>(&cmd).await.unwrap_or(0) == 0 {
            return Err(KillError::Unavailable("no node heard the request".into()));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.locate(code).await.as_deref() != Some(node.as_str()) {
                return Ok(node);
            }
        }
        Err(KillError::Unavailable(format!(
            "node {node} did not let go of the stream within 3 s"
        )))
    }

    /// Carries out what other nodes ask of this one over `<prefix>control` (`kill|node|code`:
    /// disconnect the publisher of `code`) until `shutdown`, resubscribing after Redis drops.
    pub async fn listen(
        self,
        kill: impl Fn(&str) -> bool + Send + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use futures_util::StreamExt;
        let channel = self.control_channel();
        loop {
            let subscribed = async {
                let mut pubsub = self.inner.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = subscribed => r,
            };
            match pubsub {
                Ok(pubsub) => {
                    let (mut sink, mut messages) = pubsub.split();
                    // A connection dropped silently (a NAT's idle timeout) ends no stream:
                    // a ping each TTL finds it, and the loop subscribes again.
                    let mut keepalive = tokio::time::interval(self.inner.config.ttl);
                    keepalive.tick().await;
                    loop {
                        let msg = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            m = messages.next() => m,
                            _ = keepalive.tick() => {
                                let pong = tokio::time::timeout(
                                    CALL_TIMEOUT * 4,
                                    sink.ping::<redis::Value>(),
                                )
                                .await;
                                if matches!(pong, Ok(Ok(_))) {
                                    continue;
                                }
                                break;
                            }
                        };
                        let Some(msg) = msg else { break };
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let mut parts = text.splitn(3, '|');
                        if let (Some("kill"), Some(node), Some(code)) =
                            (parts.next(), parts.next(), parts.next())
                            && node == self.node_id()
                        {
                            let done = kill(code);
                            tracing::info!(
                                stream = code,
                                done,
                                "cluster: publisher kill asked by another node"
                            );
                        }
                    }
                    tracing::warn!("cluster: Redis control subscription lost; resubscribing");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: Redis control channel not subscribed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Publisher session `session` of `code` runs here: the heartbeat keeps its registration.
    pub fn hold(&self, code: &str, session: u64) {
        lock(&self.inner.held).insert(code.to_owned(), session);
        let this = self.clone();
        let code = code.to_owned();
        // Claimed at admission already for RTMP, SRT and RTSP publishers; inputs and browser
        // ingest publish without one, so claim here too (it is idempotent).
        tokio::spawn(async move {
            match this.claim(&code).await {
                Claim::Taken(other) => {
                    tracing::warn!(stream = %code, node = %other, "cluster: stream also held by another node");
                }
                // The session may have ended while the claim was on its way: undo it.
                Claim::Ours if !this.holds(&code, session) && !this.holds_any(&code) => {
                    this.delete_if_ours(&code).await;
                }
                _ => {}
            }
        });
    }

    /// Publisher session `session` of `code` ended: the registration goes at once, unless a
    /// newer publisher of the code holds it here by now (or `session` never held it, as an
    /// edge pull does not).
    pub fn release(&self, code: &str, session: u64) {
        {
            let mut held = lock(&self.inner.held);
            if held.get(code) != Some(&session) {
                return;
            }
            held.remove(code);
        }
        let this = self.clone();
        let code = code.to_owned();
        tokio::spawn(async move {
            if !this.holds_any(&code) {
                this.delete_if_ours(&code).await;
            }
        });
    }

    /// Releases a claim made at admission whose session has not opened `wait` later (the
    /// client went away in between), instead of leaving it registered for a whole TTL. A
    /// session that opens later still claims the code again (see [`Registry::hold`]).
    pub fn forget_unopened(&self, code: &str, wait: Duration) {
        let this = self.clone();
        let code = code.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if !this.holds_any(&code) {
                this.delete_if_ours(&code).await;
            }
        });
    }

    fn holds(&self, code: &str, session: u64) -> bool {
        lock(&self.inner.held).get(code) == Some(&session)
    }

    fn holds_any(&self, code: &str) -> bool {
        lock(&self.inner.held).contains_key(code)
    }

    async fn delete_if_ours(&self, code: &str) {
        let mut cmd = Self::eval(RELEASE, &self.stream_key(code));
        cmd.arg(self.node_id());
        let _ = self.call::<i64>(&cmd).await;
    }

    /// Publishes this node's reader count of each stream (`<prefix>readers:<code>`, a hash
    /// of node -> count that expires three TTLs after the last report). A count is sent when
    /// it changed, and otherwise once a TTL to keep it from expiring: Redis hears a stream's
    /// readers at most once per heartbeat per node, and a steady audience once per TTL.
    async fn report_readers(
        &self,
        counts: Vec<(String, u32)>,
        reported: &mut HashMap<String, (u32, u32)>,
    ) {
        let now: HashMap<String, u32> = counts.into_iter().collect();
        let gone: Vec<String> = reported
            .keys()
            .filter(|c| !now.contains_key(*c))
            .cloned()
            .collect();
        for code in gone {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(self.readers_key(&code)).arg(self.node_id());
            if self.call::<i64>(&cmd).await.is_none() {
                return;
            }
            reported.remove(&code);
        }
        for (code, n) in now {
            let due = match reported.get_mut(&code) {
                Some((last, rounds)) if *last == n && *rounds < 2 => {
                    *rounds += 1;
                    false
                }
                _ => true,
            };
            if !due {
                continue;
            }
            let key = self.readers_key(&code);
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg(self.node_id())
                .arg(n)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(self.ttl_ms().saturating_mul(3))
                .ignore();
            if self.call_pipe(&pipe).await.is_none() {
                return;
            }
            reported.insert(code, (n, 0));
        }
    }

    /// `code` is `other`'s now: no longer renewed here, and `lost` hears it once.
    fn lose(&self, code: &str, other: &str, lost: &impl Fn(&str, &str)) {
        lock(&self.inner.held).remove(code);
        lost(code, other);
    }

    /// Renews this node's registration and every held code's, each third of the TTL, until
    /// `shutdown`; `lost(code, holder)` hears of a code another node took.
    pub async fn run(
        self,
        lost: impl Fn(&str, &str) + Send + 'static,
        readers: impl Fn() -> Vec<(String, u32)> + Send + 'static,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let period = (self.inner.config.ttl / 3).max(Duration::from_millis(100));
        // What this node last reported per code (count, heartbeats since), so unchanged
        // counts are sent once a TTL and a count that fell to zero is taken back.
        let mut reported: HashMap<String, (u32, u32)> = HashMap::new();
        loop {
            self.report_readers(readers(), &mut reported).await;
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(self.node_key(self.node_id()))
                .arg(format!(
                    "{} {}",
                    self.inner.config.rtmp_url, self.inner.config.http_url
                ))
                .arg("PX")
                .arg(self.ttl_ms())
                .ignore()
                .cmd("SADD")
                .arg(self.nodes_key())
                .arg(self.node_id())
                .ignore();
            // Stored again if Redis lost it (a restart without persistence, a failover), so
            // nodes started since agree with the running ones.
            if let Some(key) = self.known_cluster_key() {
                pipe.cmd("SET")
                    .arg(self.key_name())
                    .arg(key)
                    .arg("NX")
                    .ignore();
            }
            let _ = self.call_pipe(&pipe).await;
            let held: Vec<String> = lock(&self.inner.held).keys().cloned().collect();
            for code in held {
                let mut cmd = Self::eval(RENEW, &self.stream_key(&code));
                cmd.arg(self.node_id()).arg(self.ttl_ms());
                match self.call::<Option<String>>(&cmd).await {
                    Some(Some(h)) if h == self.node_id() => {}
                    // Redis away: local streams go on; the rest of the round would fail too.
                    None => break,
                    // Expired while Redis was away: take it back unless someone else did.
                    Some(None) => {
                        if let Claim::Taken(other) = self.claim(&code).await {
                            self.lose(&code, &other, &lost);
                        }
                    }
                    Some(Some(other)) => self.lose(&code, &other, &lost),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
        }
        // A clean stop frees every code at once instead of one TTL later.
        let held: Vec<String> = lock(&self.inner.held).drain().map(|(c, _)| c).collect();
        for code in held {
            self.delete_if_ours(&code).await;
        }
    }
}
