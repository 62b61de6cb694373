//! Chaos, CI-sized (`scripts/chaos` runs the long versions): kill -9 during a stream of API
//! writes keeps every acknowledged write and never a half-written record; PostgreSQL going
//! away while a stream is live fails writes with 503 and recovers without a restart; Redis
//! going away while live does not touch media and the control channel comes back by itself.

use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::http;
use crate::support::pg::PgSchema;
use crate::support::proc::{ChildGuard, read_lossy, run};
use crate::support::server::{Stop, free_addrs};
use crate::support::{Fixture, ScratchDir, Server, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CODES: [&str; 6] = ["c0", "c1", "c2", "c3", "c4", "c5"];

/// The write in flight when the server died: after the restart it may have landed or not.
#[derive(Clone, Debug)]
struct Pending {
    code: String,
    op: &'static str,
    marker: String,
    push_len: usize,
}

/// What the writer knows: every acknowledged write's result, per code.
#[derive(Debug, Default)]
struct Model {
    streams: BTreeMap<String, Value>,
    pending: Option<Pending>,
}

/// A tiny deterministic generator (xorshift), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// A write body whose marker-carrying fields (name, description, first tag, every push
/// comment) all say `marker`: a record with mixed markers is half-written.
fn body(marker: &str, rng: &mut Rng, patch: bool) -> Value {
    let push: Vec<Value> = (0..rng.below(4))
        .map(|i| {
            json!({"url": format!("rtmp://127.0.0.1:9/app{i}/key-{marker}"), "comment": marker,
                   "enabled": rng.coin(), "limit": i + 1})
        })
        .collect();
    let mut b = json!({
        "name": marker,
        "description": format!("description of {marker}"),
        "tags": [marker, "chaos"],
        "push": push,
        "protocols": {"hls": rng.coin(), "mpegts": rng.coin()},
    });
    if !patch {
        b["disabled"] = json!(rng.below(5) == 0);
        b["stream_key"] = if rng.coin() {
            json!(format!("k-{marker}"))
        } else {
            Value::Null
        };
    }
    b
}

fn without_runtime(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("runtime");
    }
    v
}

/// Every marker-carrying field of a stream view.
fn markers(v: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().unwrap_or("<missing>").to_owned();
    let mut out = vec![
        s(&v["name"]),
        s(&v["description"])
            .trim_start_matches("description of ")
            .to_owned(),
        s(&v["tags"][0]),
    ];
    if let Some(push) = v["push"].as_array() {
        out.extend(push.iter().map(|p| s(&p["comment"])));
    }
    out
}

fn consistent(v: &Value) -> bool {
    let m = markers(v);
    m.iter().all(|x| *x == m[0])
}

/// Writes back to back until a transport error (the server died) or `stop`; every 2xx answer
/// goes into the model before the next write starts.
fn writer(
    addr: SocketAddr,
    model: &Mutex<Model>,
    round: u64,
    acked: &AtomicUsize,
    stop: &AtomicBool,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (round * 0x1000_0001));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && seq < 100_000 {
        seq += 1;
        let code = CODES[rng.below(CODES.len() as u64) as usize];
        let marker = format!("{code}-{round}-{seq}");
        let exists = model.lock().expect("model").streams.contains_key(code);
        let op = match (exists, rng.below(10)) {
            (false, n) if n < 5 => "PUT",
            (false, _) => "POST",
            (true, n) if n < 4 => "PUT",
            (true, n) if n < 8 => "PATCH",
            (true, _) => "DELETE",
        };
        let (path, b) = match op {
            "PUT" => (
                format!("/api/v1/streams/{code}"),
                Some(body(&marker, &mut rng, false)),
            ),
            "POST" => {
                let mut b = body(&marker, &mut rng, false);
                b["code"] = json!(code);
                ("/api/v1/streams".to_owned(), Some(b))
            }
            "PATCH" => (
                format!("/api/v1/streams/{code}"),
                Some(body(&marker, &mut rng, true)),
            ),
            _ => (format!("/api/v1/streams/{code}"), None),
        };
        let push_len = b
            .as_ref()
            .map_or(0, |b| b["push"].as_array().map_or(0, Vec::len));
        model.lock().expect("model").pending = Some(Pending {
            code: code.to_owned(),
            op,
            marker: marker.clone(),
            push_len,
        });
        let text = b.as_ref().map(Value::to_string);
        let headers: &[(&str, &str)] = if text.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let Ok(r) = http::request(addr, op, &path, headers, text.as_deref().map(str::as_bytes))
        else {
            return; // the server is gone: `pending` stays set
        };
        let mut m = model.lock().expect("model");
        m.pending = None;
        match (op, r.status) {
            ("DELETE", 204) => {
                m.streams.remove(code);
            }
            ("PUT", 200 | 201) | ("POST", 201) | ("PATCH", 200) => {
                let v = without_runtime(serde_json::from_slice(&r.body).expect("JSON answer"));
                assert!(
                    consistent(&v) && v["name"] == marker.as_str(),
                    "{op} {code}: the answer is not what was sent: {v:#}"
                );
                m.streams.insert(code.to_owned(), v);
            }
            (_, status) => panic!("{op} {path}: unexpected {status}: {}", r.text()),
        }
        acked.fetch_add(1, Ordering::Relaxed);
    }
}

/// Compares the restarted server with the model; returns whether the in-flight write landed
/// and resets the model to what the server has.
fn verify(api: &Api, model: &mut Model, when: &str) -> &'static str {
    let pending = model.pending.take();
    let mut landed = "none in flight";
    for code in CODES {
        let r = api.get(&format!("streams/{code}"));
        let got = match r.status {
            200 => Some(without_runtime(r.json)),
            404 => None,
            s => panic!("{when}: GET streams/{code} answered {s}: {}", r.text),
        };
        if let Some(g) = &got {
            assert!(consistent(g), "{when}: {code} is half-written: {g:#}");
        }
        let want = model.streams.get(code);
        match &pending {
            Some(p) if p.code == code => {
                if got.as_ref() == want {
                    landed = "in-flight write not applied";
                } else if p.op == "DELETE" && got.is_none() {
                    landed = "in-flight write applied";
                } else if let Some(g) = got.as_ref().filter(|g| g["name"] == p.marker.as_str()) {
                    assert_eq!(
                        g["push"].as_array().map_or(0, Vec::len),
                        p.push_len,
                        "{when}: {code}: push list of the in-flight write is not intact: {g:#}"
                    );
                    landed = "in-flight write applied";
                } else {
                    panic!(
                        "{when}: {code} is neither the acknowledged version {want:#?} nor the in-flight {p:?}: {got:#?}"
                    );
                }
            }
            _ => assert_eq!(
                got.as_ref(),
                want,
                "{when}: {code} lost an acknowledged write"
            ),
        }
        match got {
            Some(g) => model.streams.insert(code.to_owned(), g),
            None => model.streams.remove(code),
        };
    }
    landed
}

fn kill_rounds(mut server: Server, rounds: u64, what: &str) {
    let api = Api::new(server.http);
    let model = Arc::new(Mutex::new(Model::default()));
    for round in 1..=rounds {
        let acked = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let addr = server.http;
        std::thread::scope(|s| {
            let m = &*model;
            let (acked, stop) = (&acked, &stop);
            let w = s.spawn(move || writer(addr, m, round, acked, stop));
            // Kill in the middle of the writes, at a different count each round.
            let target = 10 + (round as usize * 7) % 25;
            let reached = (0..300).any(|_| {
                std::thread::sleep(Duration::from_millis(20));
                acked.load(Ordering::Relaxed) >= target || w.is_finished()
            });
            server.process().signal("KILL");
            stop.store(true, Ordering::Relaxed);
            w.join().expect("writer panicked");
            assert!(
                reached,
                "{what}: only {} writes in 6 s",
                acked.load(Ordering::Relaxed)
            );
        });
        server.restart(Stop::Kill);
        let mut m = model.lock().expect("model");
        let landed = verify(&api, &mut m, &format!("{what}, kill {round}"));
        eprintln!(
            "{what}: kill {round}: {} writes acknowledged, all present; {landed}",
            acked.load(Ordering::Relaxed)
        );
    }
}

#[test]
fn kill_9_during_writes_keeps_every_acknowledged_write() {
    kill_rounds(Server::start(), 3, "SQLite");
}

#[test]
fn postgres_kill_9_during_writes_keeps_every_acknowledged_write() {
    let Some(pg) = PgSchema::create("chaos_kill") else {
        return;
    };
    kill_rounds(
        Server::builder().set("database.url", pg.url()).start(),
        3,
        "PostgreSQL",
    );
}

// ---------------------------------------------------------------------------------------------
// Outages while live

/// A TCP relay to PostgreSQL that can be cut: live connections are shut down and new ones are
/// closed at once, as when the database goes away.
struct CutProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    done: Arc<AtomicBool>,
}

impl CutProxy {
    fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (u, c, d) = (up.clone(), conns.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                if !u.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (
                        from.try_clone().expect("clone"),
                        to.try_clone().expect("clone"),
                    );
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                let mut all = c.lock().expect("conns");
                all.push(client);
                all.push(server);
            }
        });
        CutProxy {
            addr,
            up,
            conns,
            done,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::Relaxed);
        for s in self.conns.lock().expect("conns").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// A publisher, an HLS reader (ffmpeg) and the playlist: media must keep moving.
struct Live {
    _publisher: crate::support::Publisher,
    reader: ChildGuard,
    progress: std::path::PathBuf,
}

impl Live {
    fn start(server: &Server, code: &str) -> Live {
        let publisher = server.publish(code, Fixture::Small);
        server.wait_playlist(code, "a segment", Duration::from_secs(30), |p| {
            !p.segments.is_empty()
        });
        let progress = server.dir().join(format!("{code}-hls-reader.progress"));
        let reader = ChildGuard::spawn(
            "HLS reader",
            ffmpeg::ffmpeg()
                .args([
                    "-i",
                    &server.hls_url(code),
                    "-c",
                    "copy",
                    "-f",
                    "null",
                    "-",
                    "-nostats",
                ])
                .arg("-progress")
                .arg(&progress),
            &server.dir().join(format!("{code}-hls-reader.log")),
        );
        let live = Live {
            _publisher: publisher,
            reader,
            progress,
        };
        wait_until(
            "the HLS reader to read frames",
            Duration::from_secs(20),
            || (live.frames() > 0).then_some(()),
        );
        live
    }

    fn frames(&self) -> u64 {
        ffmpeg::parse_progress(&read_lossy(&self.progress)).0
    }

    /// The playlist advances by two segments and the reader by 30 frames within `within`.
    fn assert_flowing(&mut self, server: &Server, code: &str, when: &str) {
        let last = server
            .playlist(code)
            .and_then(|p| p.last_seq())
            .expect("playlist");
        let frames = self.frames();
        server.wait_playlist(
            code,
            &format!("HLS to advance {when}"),
            Duration::from_secs(10),
            |p| p.last_seq().is_some_and(|s| s >= last + 2),
        );
        wait_until(
            &format!("the HLS reader to advance {when}"),
            Duration::from_secs(10),
            || (self.frames() > frames + 30).then_some(()),
        );
        assert!(self.reader.is_running(), "the HLS reader exited {when}");
    }
}

#[test]
fn postgres_away_while_live_answers_503_and_recovers_by_itself() {
    let Some(pg) = PgSchema::create("chaos_outage") else {
        return;
    };
    let mut url = url::Url::parse(&pg.url()).expect("TEST_DATABASE_URL");
    let upstream = (
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(5432),
    );
    let upstream: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&upstream)
        .expect("resolve the database host")
        .next()
        .expect("an address");
    let proxy = CutProxy::start(upstream);
    url.set_ip_host(proxy.addr.ip()).expect("host");
    url.set_port(Some(proxy.addr.port())).expect("port");
    let mut server = Server::builder().set("database.url", url.as_str()).start();
    let pid = server.process().pid();
    let api = Api::new(server.http);
    api.put("streams/live", &json!({"name": "live"})).ok(201);
    let mut live = Live::start(&server, "live");

    proxy.cut();
    for n in 0..3 {
        api.patch(
            "streams/live",
            &json!({"description": format!("outage {n}")}),
        )
        .error(503, "UNAVAILABLE", &["database"]);
    }
    assert_eq!(
        api.stream("live")["runtime"]["status"],
        "live",
        "reads answer from memory"
    );
    live.assert_flowing(&server, "live", "while the database is away");

    proxy.restore();
    let v = wait_until(
        "a write to succeed after the database is back",
        Duration::from_secs(30),
        || {
            let r = api.patch("streams/live", &json!({"description": "back"}));
            (r.status == 200).then_some(r.json)
        },
    );
    assert_eq!(v["description"], "back");
    assert_eq!(server.process().pid(), pid, "the gateway was not restarted");
    assert!(server.is_running(), "the gateway exited");
    live.assert_flowing(&server, "live", "after the database came back");
}

/// A private `redis-server` that can be killed and started again on the same port.
struct Redis {
    child: Option<ChildGuard>,
    dir: ScratchDir,
    port: u16,
    starts: usize,
}

impl Redis {
    fn start() -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return None;
        }
        let mut r = Redis {
            child: None,
            dir: ScratchDir::new(),
            port: free_addrs().0.port(),
            starts: 0,
        };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        self.starts += 1;
        self.child = Some(ChildGuard::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(self.dir.path()),
            &self.dir.path().join(format!("redis-{}.log", self.starts)),
        ));
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || (self.cli(&["PING"]) == "PONG").then_some(()),
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.signal("KILL");
            c.wait_timeout(Duration::from_secs(10));
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = run(
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args),
            Duration::from_secs(10),
        );
        out.stdout.trim().to_owned()
    }

    fn subscribers(&self) -> u64 {
        self.cli(&["PUBSUB", "NUMSUB", "rtmp_commands"])
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

#[test]
fn redis_away_while_live_leaves_media_alone_and_reconnects() {
    let Some(mut redis) = Redis::start() else {
        eprintln!("redis_away_while_live: redis-server not installed, skipping");
        return;
    };
    let server = Server::builder()
        .set("redis.url", format!("redis://127.0.0.1:{}", redis.port))
        .start();
    wait_until("the gateway to subscribe", Duration::from_secs(15), || {
        (redis.subscribers() >= 1).then_some(())
    });
    let mut live = Live::start(&server, "live");
    let mut victim = server.publish("victim", Fixture::Small);
    server.wait_live("victim");

    redis.kill();
    live.assert_flowing(&server, "live", "while Redis is away");
    redis.up();
    wait_until(
        "the gateway to subscribe again",
        Duration::from_secs(30),
        || (redis.subscribers() >= 1).then_some(()),
    );
    assert_eq!(
        redis.cli(&["PUBLISH", "rtmp_commands", "kill-session>victim"]),
        "1"
    );
    wait_until(
        "kill-session to end the victim's publisher",
        Duration::from_secs(15),
        || (!victim.is_running()).then_some(()),
    );
    live.assert_flowing(&server, "live", "after Redis came back");
    let api = Api::new(server.http);
    assert_eq!(api.stream("live")["runtime"]["status"], "live");
}
