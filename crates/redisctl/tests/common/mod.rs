//! Helpers shared by the Redis test binaries.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::TcpListener as StdTcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use redisctl::{Command, CommandSink, LinkState, Listener, RedisConfig, Tuning, url_from_parts};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(10);

// A skipped test should say so in `cargo test -- --nocapture` output; stderr is the place.
#[allow(clippy::print_stderr)]
pub fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

pub fn redis_server_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

pub fn free_port() -> u16 {
    let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A private redis-server, killed on drop.
pub struct Server {
    pub bin: PathBuf,
    pub port: u16,
    pub password: Option<String>,
    pub child: Option<Child>,
}

impl Server {
    /// Picks a port; nothing listens until [`restart`](Self::restart).
    pub fn stopped(bin: PathBuf, password: Option<&str>) -> Self {
        Self {
            bin,
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
        }
    }

    pub async fn start(bin: PathBuf, password: Option<&str>) -> Self {
        let mut s = Self::stopped(bin, password);
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        url_from_parts("127.0.0.1", self.port, self.password.as_deref(), false)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(cmd.spawn().unwrap());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if publish_once(&self.url(), "warmup", "x").await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn publish_once(url: &str, channel: &str, msg: &str) -> redis::RedisResult<i64> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(msg)
        .query_async(&mut con)
        .await
}

/// Publishes and checks that exactly one subscriber (the listener) got it.
pub async fn publish(url: &str, channel: &str, msg: &str) {
    assert_eq!(publish_once(url, channel, msg).await.unwrap(), 1, "{msg}");
}

pub fn fast() -> Tuning {
    Tuning {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        connect_timeout: Duration::from_secs(2),
        ..Tuning::default()
    }
}

pub struct Running {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub state: watch::Receiver<LinkState>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

pub fn start(config: RedisConfig, tuning: Tuning) -> Running {
    let (tx, commands) = mpsc::unbounded_channel();
    let sink: Arc<dyn CommandSink> = Arc::new(move |c: Command| {
        let _ = tx.send(c);
    });
    let listener = Listener::new(config, sink).unwrap().with_tuning(tuning);
    let state = listener.state();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(listener.run(shutdown.clone()));
    Running {
        commands,
        state,
        shutdown,
        task,
    }
}

impl Running {
    pub async fn wait_state(&mut self, what: &str, f: impl FnMut(&LinkState) -> bool) -> LinkState {
        let got = match tokio::time::timeout(WAIT, self.state.wait_for(f)).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        got.unwrap_or_else(|| panic!("never {what}; state {:?}", *self.state.borrow()))
    }

    pub async fn connected(&mut self) {
        self.wait_state("connected", |s| *s == LinkState::Connected)
            .await;
    }

    pub async fn next(&mut self) -> Command {
        tokio::time::timeout(WAIT, self.commands.recv())
            .await
            .expect("no command delivered")
            .unwrap()
    }

    /// Cancels and checks that `run` returns promptly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), &mut self.task)
            .await
            .expect("run did not return within 1 s of shutdown")
            .unwrap();
        assert_eq!(*self.state.borrow(), LinkState::Stopped);
    }
}

pub fn kill(code: &str) -> Command {
    Command::KillSession { code: code.into() }
}

pub fn close(code: &str, id: &str) -> Command {
    Command::CloseStream {
        code: code.into(),
        stream_id: id.into(),
    }
}

/// Records (level, message) of every event on this thread.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl Capture {
    pub fn count(&self, level: tracing::Level, needle: &str) -> usize {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter(|(l, m)| *l == level && m.contains(needle))
            .count()
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), m.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
