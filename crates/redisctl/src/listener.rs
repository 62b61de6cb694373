//! The tokio driver: subscribe, hand commands to the sink, reconnect when Redis goes away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::backoff::Backoff;
use crate::{Command, ConfigError, RedisConfig, parse_bytes};

/// Receives parsed commands.
///
/// Called on the listener task, in message order: it must not block. Forward the command to
/// the stream's owner (a channel `try_send`) rather than acting on it here.
pub trait CommandSink: Send + Sync + 'static {
    /// Acts on one command. A command for a code nobody publishes is simply ignored.
    fn apply(&self, cmd: Command);
}

impl<F> CommandSink for F
where
    F: Fn(Command) + Send + Sync + 'static,
{
    fn apply(&self, cmd: Command) {
        self(cmd);
    }
}

/// Where the link to Redis stands, for the API, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting and subscribing; `attempt` counts from 1 since the last healthy link.
    Connecting {
        /// 1 for the first try after start or after a loss.
        attempt: u32,
    },
    /// Subscribed: commands published now are received.
    Connected,
    /// Waiting before the next attempt.
    Disconnected {
        /// Attempts failed in a row (a lost connection counts as one).
        failures: u32,
        /// Why the last attempt failed or the connection ended.
        last_error: String,
        /// The wait before the next attempt, as chosen when entering this state.
        retry_in: Duration,
    },
    /// `run` has returned.
    Stopped,
}

/// Timing knobs; the defaults suit production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// First reconnect delay (default 0.5 s).
    pub initial_backoff: Duration,
    /// Longest reconnect delay (default 30 s).
    pub max_backoff: Duration,
    /// Limit on connecting plus subscribing (default 10 s), for hosts that drop packets.
    pub connect_timeout: Duration,
    /// A link up this long resets the backoff (default 10 s); shorter ones keep it growing so a
    /// server that accepts and drops at once is not hammered.
    pub healthy_after: Duration,
    /// How often to PING an idle link to notice a silently dead peer (default 30 s).
    pub ping_interval: Duration,
    /// How long a PING may take before the link is declared dead (default 5 s).
    pub ping_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            healthy_after: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
        }
    }
}

/// Listens on the command channel until shut down.
pub struct Listener {
    client: redis::Client,
    config: RedisConfig,
    sink: Arc<dyn CommandSink>,
    tuning: Tuning,
    state: watch::Sender<LinkState>,
}

/// Connects, subscribes and applies commands until `shutdown`, reconnecting as needed; fails
/// only if the configuration can never work.
pub async fn run(
    config: RedisConfig,
    sink: Arc<dyn CommandSink>,
    shutdown: CancellationToken,
) -> Result<(), ConfigError> {
    Listener::new(config, sink)?.run(shutdown).await;
    Ok(())
}

impl Listener {
    /// Checks the configuration; connects only in [`run`](Self::run).
    pub fn new(config: RedisConfig, sink: Arc<dyn CommandSink>) -> Result<Self, ConfigError> {
        if config.channel.is_empty() {
            return Err(ConfigError::EmptyChannel);
        }
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| ConfigError::InvalidUrl {
                url: config.redacted_url(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            config,
            sink,
            tuning: Tuning::default(),
            state: watch::channel(LinkState::Connecting { attempt: 1 }).0,
        })
    }

    /// Replaces the timing knobs.
    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// Follows the link state; stays readable after `run` returns.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.subscribe()
    }

    /// Runs until `shutdown` is cancelled, returning promptly whether connecting, connected or
    /// waiting to retry.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = tracing::info_span!(
            "redisctl",
            url = %self.config.redacted_url(),
            channel = %self.config.channel
        );
        async {
            self.run_inner(&shutdown).await;
            self.state.send_replace(LinkState::Stopped);
            debug!("redis control listener stopped");
        }
        .instrument(span)
        .await;
    }

    async fn run_inner(&self, shutdown: &CancellationToken) {
        let t = &self.tuning;
        let mut backoff = Backoff::new(t.initial_backoff, t.max_backoff);
        let mut failures: u32 = 0;
        let mut ignored = IgnoredLog::default();
        loop {
            self.state.send_replace(LinkState::Connecting {
                attempt: failures.saturating_add(1),
            });
            let connected = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = self.connect() => r,
            };
            let last_error = match connected {
                Ok((ping_sink, stream)) => {
                    if failures == 0 {
                        info!("listening for commands");
                    } else {
                        info!(
                            failures,
                            "redis control channel recovered; listening for commands"
                        );
                    }
                    self.state.send_replace(LinkState::Connected);
                    let up_since = Instant::now();
                    let error = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        e = self.read(ping_sink, stream, &mut ignored) => e,
                    };
                    if up_since.elapsed() >= t.healthy_after {
                        backoff.reset();
                    }
                    warn!(%error, "redis control channel lost; reconnecting");
                    failures = 1;
                    error
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        warn!(%error, "redis control channel unavailable; retrying with backoff");
                    } else {
                        debug!(%error, failures, "redis control channel still unavailable");
                    }
                    error
                }
            };
            let retry_in = backoff.next();
            self.state.send_replace(LinkState::Disconnected {
                failures,
                last_error,
                retry_in,
            });
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
    }

    /// Opens a dedicated pub/sub connection and subscribes; the whole exchange is time-limited.
    async fn connect(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let attempt = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.config.channel.as_str()).await?;
            Ok::<_, redis::RedisError>(pubsub.split())
        };
        match tokio::time::timeout(self.tuning.connect_timeout, attempt).await {
            Ok(Ok(parts)) => Ok(parts),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {:?}",
                self.tuning.connect_timeout
            )),
        }
    }

    /// Applies messages until the connection ends; returns why it ended.
    async fn read(
        &self,
        mut ping_sink: PubSubSink,
        mut stream: PubSubStream,
        ignored: &mut IgnoredLog,
    ) -> String {
        let t = &self.tuning;
        let mut ping = tokio::time::interval_at(Instant::now() + t.ping_interval, t.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.handle(msg.get_payload_bytes(), ignored),
                    None => return "connection closed".to_owned(),
                },
                _ = ping.tick() => {
                    // Messages keep queueing in the client meanwhile; they are read right after.
                    match tokio::time::timeout(t.ping_timeout, ping_sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return format!("no ping reply within {:?}", t.ping_timeout),
                    }
                }
            }
        }
    }

    fn handle(&self, payload: &[u8], ignored: &mut IgnoredLog) {
        match parse_bytes(payload) {
            Ok(cmd) => {
                debug!(%cmd, "redis command");
                self.sink.apply(cmd);
            }
            Err(error) => ignored.report(&error, payload),
        }
    }
}

/// Rate limit for "ignored message" warnings: anyone who can publish on the channel could
/// otherwise flood the log.
#[derive(Default)]
struct IgnoredLog {
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl IgnoredLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn report(&mut self, error: &crate::ParseError, payload: &[u8]) {
        let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(64)]);
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            warn!(%error, message = ?excerpt, suppressed = self.suppressed, "ignored redis message");
            self.last_warn = Some(now);
            self.suppressed = 0;
        } else {
            debug!(%error, message = ?excerpt, "ignored redis message");
            self.suppressed += 1;
        }
    }
}
