//! Admission control and hooks: nginx-rtmp `on_*` notifications with their arguments and reply
//! semantics, the AgustinSRG-style signed callback, IP allow-lists, connection limits, the idle
//! timeout, stream keys, the Redis control channel and the AgustinSRG environment variables.
//!
//! The operator's service is [`HookServer`], which records what the gateway sent and answers
//! from a script; every refusal is checked against a stream that is already live and must stay
//! untouched.

use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::hook_server::{Call, HookServer, Reply, refused_url};
use crate::support::http;
use crate::support::proc::{ChildGuard, Finished, run};
use crate::support::raw_rtmp::RawClient;
use crate::support::server::{ServerBuilder, free_addrs, free_udp_addr};
use crate::support::{Fixture, ScratchDir, Server, wait_until};
use serde_json::{Value, json};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The nginx-rtmp notifications that carry a decision or a session end (not `on_update`).
const EVENTS: [&str; 7] = [
    "on_connect",
    "on_publish",
    "on_play",
    "on_publish_done",
    "on_play_done",
    "on_done",
    "on_disconnect",
];

/// Longest a refused client may take to give up; refusals are immediate or bounded by a 1 s
/// hook timeout, so this only guards against a client left hanging.
const REFUSAL_LIMIT: Duration = Duration::from_secs(12);

/// A server builder with `hooks.<event>` pointing at `/<event>` on `hooks`.
fn hooked(hooks: &HookServer, events: &[&str]) -> ServerBuilder {
    events.iter().fold(Server::builder(), |b, e| {
        b.set(&format!("hooks.{e}"), hooks.url(&format!("/{e}")))
    })
}

/// Publishes `Fixture::Small` to `url` until the server refuses it or 20 s pass.
fn publish_once(url: &str) -> Finished {
    run(
        &mut ffmpeg::publish_command(&Fixture::Small.path(), url),
        Duration::from_secs(20),
    )
}

/// A long-running publisher to any URL (another app, an IPv6 address).
fn publisher_to(server: &Server, url: &str, name: &str) -> ChildGuard {
    ChildGuard::spawn(
        name,
        &mut ffmpeg::publish_command(&Fixture::Small.path(), url),
        &server.dir().join(format!("{name}.log")),
    )
}

/// `ffprobe -show_streams url`, at most 20 s.
fn probe(url: &str) -> Finished {
    run(
        ffmpeg::ffprobe().args(["-show_streams", url]),
        Duration::from_secs(20),
    )
}

/// Asserts a client was refused: it exited by itself, non-zero, without hanging.
#[track_caller]
fn assert_refused(out: &Finished, what: &str) {
    assert!(
        out.exited(),
        "{what}: not refused, the client still ran after {:?}:\n{}",
        out.elapsed,
        out.stderr
    );
    assert!(
        !out.success(),
        "{what}: the client exited 0:\n{}",
        out.stderr
    );
    assert!(
        out.elapsed < REFUSAL_LIMIT,
        "{what}: the refusal took {:?}",
        out.elapsed
    );
}

/// Asserts ffprobe reads H.264 from `url`.
#[track_caller]
fn assert_plays(url: &str, what: &str) {
    let out = probe(url);
    assert!(
        out.success(),
        "{what}: ffprobe {url} failed ({:?} after {:?}):\n{}",
        out.status,
        out.elapsed,
        out.stderr
    );
    assert!(
        out.stdout.contains("\"h264\""),
        "{what}: no H.264 stream in ffprobe's answer:\n{}",
        out.stdout
    );
}

/// `runtime.status` of `code` from the API; `None` when the API does not know the code.
/// The API, not `/live/CODE/mpegts`, so checking a stream never makes an `on_play` call.
fn status(server: &Server, code: &str) -> Option<String> {
    let r = Api::new(server.http).get(&format!("streams/{code}"));
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "GET streams/{code}: {}", r.text);
    r.json["runtime"]["status"].as_str().map(str::to_owned)
}

#[track_caller]
fn wait_api_live(server: &Server, code: &str) -> Value {
    wait_until(
        &format!("{code:?} to be live in the API"),
        Duration::from_secs(20),
        || {
            (status(server, code).as_deref() == Some("live"))
                .then(|| Api::new(server.http).stream(code))
        },
    )
}

#[track_caller]
fn wait_api_not_live(server: &Server, code: &str, within: Duration) {
    wait_until(&format!("{code:?} to stop being live"), within, || {
        (status(server, code).as_deref() != Some("live")).then_some(())
    });
}

/// Asserts a stream that a refusal must not have disturbed: its publisher runs, the API shows
/// it live and (when `playable`) ffprobe reads it over RTMP.
#[track_caller]
fn assert_untouched(server: &Server, code: &str, publisher: &mut ChildGuard, playable: bool) {
    assert!(
        publisher.is_running(),
        "the publisher of {code:?} exited ({:?}):\n{}",
        publisher.try_status(),
        publisher.log()
    );
    assert_eq!(
        status(server, code).as_deref(),
        Some("live"),
        "{code:?} is no longer live"
    );
    if playable {
        assert_plays(&server.rtmp_url(code), &format!("{code:?} after refusals"));
    }
}

fn spawn_publisher(server: &Server, code: &str) -> ChildGuard {
    publisher_to(server, &server.rtmp_url(code), &format!("publisher-{code}"))
}

/// Asserts the arguments every RTMP notification carries.
#[track_caller]
fn assert_rtmp_session(c: &Call, call: &str) {
    assert_eq!(c.method, "POST", "{call}: {c:#?}");
    assert!(
        c.header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded")),
        "{call}: content type {:?}",
        c.header("content-type")
    );
    assert_eq!(c.call(), call, "{c:#?}");
    assert_eq!(c.arg("app"), Some("live"), "{call}: {c:#?}");
    assert_eq!(c.arg("addr"), Some("127.0.0.1"), "{call}: {c:#?}");
    assert_eq!(c.arg("protocol"), Some("rtmp"), "{call}: {c:#?}");
    assert!(
        c.arg("tcurl")
            .is_some_and(|t| t.starts_with("rtmp://127.0.0.1")),
        "{call}: tcurl {:?}",
        c.arg("tcurl")
    );
    assert!(
        c.arg("flashver").is_some_and(|f| !f.is_empty()),
        "{call}: flashver {:?}",
        c.arg("flashver")
    );
}

/// `clientid` as a number.
#[track_caller]
fn clientid(c: &Call) -> u64 {
    c.must("clientid")
        .parse()
        .unwrap_or_else(|_| panic!("clientid is not a number: {c:#?}"))
}

// ---------------------------------------------------------------------------------------------
// nginx-rtmp notifications

/// One RTMP publisher and one RTMP player come and go: every notification arrives with
/// nginx-rtmp's arguments, the client's own `token`, and one `clientid` per connection.
#[test]
fn nginx_rtmp_arguments_for_a_publisher_and_a_player() {
    let hooks = HookServer::start();
    let server = hooked(&hooks, &EVENTS).start();
    let mut publisher = spawn_publisher(&server, "cam?token=abc");
    wait_api_live(&server, "cam");
    assert_plays(&server.rtmp_url("cam?token=abc"), "player with a token");
    publisher.stop(Duration::from_secs(10));
    wait_api_not_live(&server, "cam", Duration::from_secs(10));

    let t = Duration::from_secs(10);
    let publish = hooks.wait_call("/on_publish", |_| true, t);
    assert_rtmp_session(&publish, "publish");
    assert_eq!(publish.arg("name"), Some("cam"), "{publish:#?}");
    assert_eq!(publish.arg("type"), Some("live"), "{publish:#?}");
    assert_eq!(publish.arg("token"), Some("abc"), "{publish:#?}");
    assert!(publish.query.is_empty(), "POST with a query: {publish:#?}");
    let publisher_id = clientid(&publish);

    let play = hooks.wait_call("/on_play", |_| true, t);
    assert_rtmp_session(&play, "play");
    assert_eq!(play.arg("name"), Some("cam"), "{play:#?}");
    assert_eq!(play.arg("token"), Some("abc"), "{play:#?}");
    // ffmpeg plays with start = -2000 (live or recorded) and no duration or reset; nginx-rtmp
    // sends `(ngx_uint_t) start`.
    assert_eq!(play.arg("start"), Some("18446744073709549616"), "{play:#?}");
    assert_eq!(play.arg("duration"), Some("0"), "{play:#?}");
    assert_eq!(play.arg("reset"), Some("0"), "{play:#?}");
    let player_id = clientid(&play);
    assert_ne!(player_id, publisher_id, "two connections share a clientid");

    let publish_done = hooks.wait_call("/on_publish_done", |_| true, t);
    assert_rtmp_session(&publish_done, "publish_done");
    assert_eq!(clientid(&publish_done), publisher_id, "{publish_done:#?}");
    assert_eq!(publish_done.arg("name"), Some("cam"), "{publish_done:#?}");
    assert_eq!(publish_done.arg("token"), Some("abc"), "{publish_done:#?}");
    assert!(publish_done.at >= publish.at);

    let play_done = hooks.wait_call("/on_play_done", |_| true, t);
    assert_rtmp_session(&play_done, "play_done");
    assert_eq!(clientid(&play_done), player_id, "{play_done:#?}");
    assert_eq!(play_done.arg("name"), Some("cam"), "{play_done:#?}");

    for (who, id) in [("publisher", publisher_id), ("player", player_id)] {
        let done = hooks.wait_call(
            "/on_done",
            |c| c.arg("clientid") == Some(&*id.to_string()),
            t,
        );
        assert_rtmp_session(&done, "done");
        assert_eq!(done.arg("name"), Some("cam"), "{who}: {done:#?}");
        let disconnect = hooks.wait_call(
            "/on_disconnect",
            |c| c.arg("clientid") == Some(&*id.to_string()),
            t,
        );
        assert_rtmp_session(&disconnect, "disconnect");
    }

    let connects = wait_until("two on_connect calls", t, || {
        let c = hooks.calls("/on_connect");
        (c.len() >= 2).then_some(c)
    });
    for c in &connects {
        assert_rtmp_session(c, "connect");
        assert!(
            c.arg("epoch")
                .is_some_and(|e| e.parse::<u32>().is_ok_and(|e| e > 0)),
            "connect without the handshake epoch: {c:#?}"
        );
    }
    assert_eq!(
        connects.len(),
        2,
        "one connect per connection: {connects:#?}"
    );
    assert_eq!(hooks.calls("/on_publish").len(), 1, "one publish call");
    assert_eq!(hooks.calls("/on_play").len(), 1, "one play call");
    assert_eq!(hooks.calls("/on_publish_done").len(), 1);
    assert_eq!(hooks.calls("/on_play_done").len(), 1);
}

/// `hooks.method: get` sends the same arguments in the query string, after a query the
/// configured URL already has, with no body.
#[test]
fn get_method_sends_the_arguments_in_the_query_string() {
    let hooks = HookServer::start();
    let server = Server::builder()
        .set("hooks.method", "get")
        .set("hooks.on_publish", hooks.url("/on_publish?secret=s1"))
        .set("hooks.on_publish_done", hooks.url("/on_publish_done"))
        .start();
    let mut publisher = spawn_publisher(&server, "q?token=abc");
    wait_api_live(&server, "q");
    publisher.stop(Duration::from_secs(10));

    let c = hooks.wait_call("/on_publish", |_| true, Duration::from_secs(10));
    assert_eq!(c.method, "GET", "{c:#?}");
    assert!(
        c.body.is_empty() && c.form.is_empty(),
        "GET with a body: {c:#?}"
    );
    let q = |name: &str| {
        c.query_args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        q("secret"),
        Some("s1"),
        "the URL's own query was lost: {c:#?}"
    );
    assert_eq!(q("call"), Some("publish"), "{c:#?}");
    assert_eq!(q("name"), Some("q"), "{c:#?}");
    assert_eq!(q("app"), Some("live"), "{c:#?}");
    assert_eq!(q("addr"), Some("127.0.0.1"), "{c:#?}");
    assert_eq!(q("token"), Some("abc"), "{c:#?}");
    assert_eq!(q("protocol"), Some("rtmp"), "{c:#?}");
    assert!(
        q("clientid").is_some_and(|id| id.parse::<u64>().is_ok()),
        "{c:#?}"
    );

    let done = hooks.wait_call("/on_publish_done", |_| true, Duration::from_secs(10));
    assert_eq!(done.method, "GET", "{done:#?}");
    assert!(done.body.is_empty(), "{done:#?}");
    assert_eq!(done.arg("call"), Some("publish_done"), "{done:#?}");
    assert_eq!(done.arg("name"), Some("q"), "{done:#?}");
}

/// The replies a script gives by stream name: 2xx allows, 302 renames, 403 refuses, a hook
/// that answers after `hooks.timeout` or closes without answering refuses.
fn by_name(call: &Call, live: &str, redirect: (&str, &str)) -> Reply {
    match call.arg("name").unwrap_or("") {
        n if n == live => Reply::ok(),
        n if n == redirect.0 => Reply::redirect(redirect.1),
        "deny" => Reply::status(403),
        "slow" => Reply::ok().after(Duration::from_secs(4)),
        "broken" => Reply::close(),
        _ => Reply::status(204),
    }
}

/// `on_publish`: 2xx allows, 302 + Location publishes under the new name, 403, a timeout and a
/// connection closed without an answer refuse; none of it disturbs a live stream.
#[test]
fn on_publish_reply_allows_renames_or_refuses() {
    let hooks = HookServer::start();
    hooks.reply_with("/on_publish", |c| by_name(c, "main", ("old", "renamed")));
    let server = hooked(&hooks, &["on_publish"])
        .set("hooks.timeout", "1s")
        .start();
    let mut main = spawn_publisher(&server, "main");
    wait_api_live(&server, "main");

    for name in ["deny", "slow", "broken"] {
        let out = publish_once(&server.rtmp_url(name));
        assert_refused(&out, &format!("publish to {name:?}"));
        assert_eq!(status(&server, name), None, "{name:?} was created");
        assert_eq!(
            hooks
                .calls("/on_publish")
                .iter()
                .filter(|c| c.arg("name") == Some(name))
                .count(),
            1,
            "one on_publish call for {name:?}"
        );
    }
    server.wait_log("publish refused", Duration::from_secs(5));
    server.wait_log("on_publish timed out", Duration::from_secs(5));
    server.wait_log("on_publish returned 403", Duration::from_secs(5));
    assert_untouched(&server, "main", &mut main, true);

    // 302 Location: renamed -> the stream goes live as `renamed`, never as `old`.
    let mut renamed = spawn_publisher(&server, "old");
    wait_api_live(&server, "renamed");
    assert_eq!(status(&server, "old"), None, "the old name went live too");
    assert_plays(&server.rtmp_url("renamed"), "the renamed stream");
    let publisher = &Api::new(server.http).stream("renamed")["runtime"]["publisher"];
    assert_eq!(publisher["protocol"], "rtmp", "{publisher:#}");
    assert!(
        renamed.is_running(),
        "renamed publisher exited:\n{}",
        renamed.log()
    );
    assert_untouched(&server, "main", &mut main, true);
}

/// A hook URL where nothing listens refuses, on play as on publish.
#[test]
fn unreachable_hook_refuses() {
    let server = Server::builder()
        .set("hooks.on_play", refused_url("/on_play"))
        .set("hooks.timeout", "1s")
        .start();
    let mut main = spawn_publisher(&server, "main");
    wait_api_live(&server, "main");
    assert_refused(
        &probe(&server.rtmp_url("main")),
        "play with on_play unreachable",
    );
    server.wait_log("on_play unreachable", Duration::from_secs(5));
    assert_untouched(&server, "main", &mut main, false);

    let server = Server::builder()
        .set("hooks.on_publish", refused_url("/on_publish"))
        .set("hooks.timeout", "1s")
        .start();
    assert_refused(
        &publish_once(&server.rtmp_url("x")),
        "publish with on_publish unreachable",
    );
    server.wait_log("on_publish unreachable", Duration::from_secs(5));
    assert_eq!(status(&server, "x"), None);
}

/// `on_play`: 2xx plays, 302 plays the stream named by Location, 403 / timeout / no answer
/// refuse the player; the publisher and other players are not disturbed.
#[test]
fn on_play_reply_allows_renames_or_refuses() {
    let hooks = HookServer::start();
    hooks.reply_with("/on_play", |c| by_name(c, "main", ("alias", "main")));
    let server = hooked(&hooks, &["on_play"])
        .set("hooks.timeout", "1s")
        .start();
    let mut main = spawn_publisher(&server, "main");
    wait_api_live(&server, "main");

    assert_plays(
        &server.rtmp_url("alias"),
        "a player redirected from alias to main",
    );
    for name in ["deny", "slow", "broken"] {
        assert_refused(&probe(&server.rtmp_url(name)), &format!("play of {name:?}"));
    }
    server.wait_log("play refused", Duration::from_secs(5));
    server.wait_log("on_play timed out", Duration::from_secs(5));
    let names: Vec<String> = hooks
        .calls("/on_play")
        .iter()
        .map(|c| c.must("name").to_owned())
        .collect();
    for n in ["alias", "deny", "slow", "broken"] {
        assert!(
            names.iter().any(|x| x == n),
            "no on_play for {n:?}: {names:?}"
        );
    }
    assert_untouched(&server, "main", &mut main, true);
}

/// `on_connect`: 403 refuses the connection before any publish; 302 renames the application.
/// nginx-rtmp sends `on_disconnect` for every session, so the refused connection and one that
/// never sent `connect` are reported too.
#[test]
fn on_connect_refuses_or_renames_the_application() {
    let hooks = HookServer::start();
    hooks.reply_with("/on_connect", |c| match c.arg("app").unwrap_or("") {
        "live" => Reply::ok(),
        "alias" => Reply::redirect("live"),
        _ => Reply::status(403),
    });
    let server = hooked(&hooks, &["on_connect", "on_publish", "on_disconnect"]).start();
    let mut main = spawn_publisher(&server, "main");
    wait_api_live(&server, "main");

    let blocked = format!("rtmp://{}/blocked/x", server.rtmp);
    assert_refused(&publish_once(&blocked), "publish on a refused connect");
    server.wait_log("connect refused", Duration::from_secs(5));
    let c = hooks.wait_call(
        "/on_connect",
        |c| c.arg("app") == Some("blocked"),
        Duration::from_secs(5),
    );
    assert_eq!(c.arg("addr"), Some("127.0.0.1"), "{c:#?}");
    assert!(
        hooks
            .calls("/on_publish")
            .iter()
            .all(|c| c.arg("name") != Some("x")),
        "a refused connection reached on_publish"
    );
    // `connect` carries no clientid (as in nginx-rtmp): the app names the refused session.
    let gone = hooks.wait_call(
        "/on_disconnect",
        |d| d.arg("app") == Some("blocked"),
        Duration::from_secs(5),
    );
    assert_eq!(gone.call(), "disconnect", "{gone:#?}");
    assert_eq!(gone.arg("addr"), Some("127.0.0.1"), "{gone:#?}");

    // A client that shakes hands and leaves without `connect`.
    let mut raw = RawClient::connect(server.rtmp);
    raw.handshake();
    let left = Instant::now();
    drop(raw);
    let silent = hooks.wait_call(
        "/on_disconnect",
        |d| d.at >= left && d.arg("app") == Some(""),
        Duration::from_secs(5),
    );
    assert_eq!(silent.arg("addr"), Some("127.0.0.1"), "{silent:#?}");
    assert_ne!(silent.arg("clientid"), gone.arg("clientid"), "{silent:#?}");
    assert_untouched(&server, "main", &mut main, true);

    // 302 Location: live -> the `alias` app is served as `live`.
    let mut aliased = publisher_to(
        &server,
        &format!("rtmp://{}/alias/viaalias", server.rtmp),
        "publisher-alias",
    );
    wait_api_live(&server, "viaalias");
    let p = hooks.wait_call(
        "/on_publish",
        |c| c.arg("name") == Some("viaalias"),
        Duration::from_secs(5),
    );
    assert_eq!(
        p.arg("app"),
        Some("live"),
        "on_publish after the rename: {p:#?}"
    );
    assert!(aliased.is_running(), "{}", aliased.log());
    assert_untouched(&server, "main", &mut main, true);
}

/// nginx-rtmp's relay redirect: an `rtmp://` Location from `on_play` pulls the stream from
/// that URL for the player (and stops once nobody plays), from `on_publish` pushes the
/// publisher there; with `relay_redirect` the local stream is named by the URL's MD5.
#[test]
fn nginx_rtmp_relay_redirects_pull_and_push() {
    let origin = Server::builder().start();
    let mut source = spawn_publisher(&origin, "src");
    wait_api_live(&origin, "src");

    let hooks = HookServer::start();
    let pull_from = origin.rtmp_url("src");
    let push_to = format!("rtmp://{}/live/pushed", origin.rtmp);
    {
        let (pull_from, push_to) = (pull_from.clone(), push_to.clone());
        hooks.reply_with("/on_play", move |c| match c.arg("name") {
            Some("relayed") => Reply::redirect(&pull_from),
            _ => Reply::ok(),
        });
        hooks.reply_with("/on_publish", move |c| match c.arg("name") {
            Some("out") => Reply::redirect(&push_to),
            _ => Reply::ok(),
        });
    }
    let edge = hooked(&hooks, &["on_play", "on_publish"])
        .set("hooks.cache_ttl", "60s")
        .start();

    // Pull: the player asks the edge for a name the edge has never seen.
    assert_plays(&edge.rtmp_url("relayed"), "a relay-pulled stream");
    edge.wait_log("relay pull started", Duration::from_secs(5));
    // Nobody plays any more: the pull ends within close_after (10 s) and a tick.
    edge.wait_log("relay pull ended: no reader", Duration::from_secs(25));
    wait_until(
        "the origin to lose its relay reader",
        Duration::from_secs(10),
        || {
            let rt = &Api::new(origin.http).stream("src")["runtime"];
            (rt["readers"]["rtmp"].as_u64().unwrap_or(0) == 0).then_some(())
        },
    );

    // HLS players are admitted once and then ride the cached decision: when their pull has
    // ended, their next request starts it again.
    let ended = |edge: &Server| edge.log().matches("relay pull ended").count();
    for round in 1..=2 {
        wait_until(
            "an HLS playlist through the relay",
            Duration::from_secs(40),
            || edge.playlist("relayed").filter(|p| !p.segments.is_empty()),
        );
        wait_until("the HLS relay pull to end", Duration::from_secs(30), || {
            (ended(&edge) > round).then_some(())
        });
    }
    let hls_hooks = hooks
        .calls("/on_play")
        .iter()
        .filter(|c| c.arg("protocol") == Some("hls"))
        .count();
    assert_eq!(
        hls_hooks, 1,
        "the second pull came from the cached decision"
    );

    // Push: the publisher of `out` on the edge also reaches the origin as `pushed`.
    let mut out = spawn_publisher(&edge, "out");
    wait_api_live(&edge, "out");
    let push = wait_until(
        "the relay push to be active",
        Duration::from_secs(20),
        || {
            let p = Api::new(edge.http).stream("out")["runtime"]["pushes"][0].clone();
            (p["status"] == "active").then_some(p)
        },
    );
    let masked = format!("rtmp://{}/live/****", origin.rtmp);
    assert_eq!(push["url"].as_str(), Some(masked.as_str()), "{push:#}");
    assert_plays(
        &origin.rtmp_url("pushed"),
        "the relay-pushed stream on the origin",
    );
    // The relay belongs to that publish session: it ends with it.
    out.stop(Duration::from_secs(5));
    wait_api_not_live(&origin, "pushed", Duration::from_secs(20));
    assert_untouched(&origin, "src", &mut source, false);

    // notify_relay_redirect: the local name is the MD5 of the URL.
    let hashed = hooked(&hooks, &["on_play"])
        .set("hooks.relay_redirect", true)
        .start();
    assert_plays(&hashed.rtmp_url("relayed"), "a hashed relay");
    let md5: String = {
        use md5::Digest;
        let d = md5::Md5::digest(pull_from.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect()
    };
    hashed.wait_log(&format!("local={md5}"), Duration::from_secs(5));
}

/// `on_update` arrives every `update_interval` with `call=update_publish` and `time`; with
/// `update_strict`, a 403 drops that publisher and only that one.
#[test]
fn on_update_reports_and_a_refusal_drops_the_publisher() {
    let hooks = HookServer::start();
    let server = Server::builder()
        .set("hooks.on_update", hooks.url("/on_update"))
        .set("hooks.update_interval", "1s")
        .set("hooks.update_strict", true)
        .start();
    let mut doomed = spawn_publisher(&server, "u");
    let mut keep = spawn_publisher(&server, "keep");
    wait_api_live(&server, "u");
    wait_api_live(&server, "keep");

    let t = Duration::from_secs(15);
    let first = hooks.wait_call("/on_update", |c| c.arg("name") == Some("u"), t);
    assert_eq!(first.call(), "update_publish", "{first:#?}");
    assert_eq!(first.arg("protocol"), Some("rtmp"), "{first:#?}");
    assert_eq!(first.arg("app"), Some("live"), "{first:#?}");
    assert_eq!(first.arg("addr"), Some("127.0.0.1"), "{first:#?}");
    let time = |c: &Call| -> u64 {
        c.must("time")
            .parse()
            .unwrap_or_else(|_| panic!("time is not a number: {c:#?}"))
    };
    let t0 = time(&first);
    let timestamp = |c: &Call| -> i64 {
        c.must("timestamp")
            .parse()
            .unwrap_or_else(|_| panic!("timestamp is not a number: {c:#?}"))
    };
    // Periodic: a later call for the same publisher, with a later `time`.
    let later = hooks.wait_call(
        "/on_update",
        |c| c.arg("name") == Some("u") && c.at > first.at + Duration::from_millis(500),
        t,
    );
    assert!(
        time(&later) >= t0,
        "time went backwards: {t0} then {later:#?}"
    );
    assert_eq!(clientid(&later), clientid(&first));
    // `timestamp` is the stream's clock (ffmpeg -re: media time advances with the wall clock),
    // not a wall-clock count of its own.
    let (ts0, ts1) = (timestamp(&first), timestamp(&later));
    let wall = (later.at - first.at).as_millis() as i64;
    assert!(
        ts1 > ts0 && (ts1 - ts0 - wall).abs() < 1500,
        "stream time moved {} ms in {wall} ms of wall time: {first:#?} {later:#?}",
        ts1 - ts0
    );

    hooks.reply_with("/on_update", |c| {
        if c.arg("name") == Some("u") {
            Reply::status(403)
        } else {
            Reply::ok()
        }
    });
    wait_api_not_live(&server, "u", Duration::from_secs(10));
    assert!(
        doomed.wait_timeout(Duration::from_secs(10)).is_some(),
        "the refused publisher is still connected"
    );
    server.wait_log("on_update refused", Duration::from_secs(5));
    // Two more rounds: the other publisher is still asked about, and still live.
    let dropped_at = Instant::now();
    hooks.wait_call(
        "/on_update",
        |c| c.arg("name") == Some("keep") && c.at > dropped_at + Duration::from_millis(1500),
        t,
    );
    assert_untouched(&server, "keep", &mut keep, true);
}

/// HLS over HTTP asks `on_play` with `protocol=hls` and the playlist's query: a bad token is
/// refused, a good one plays, and the segments that follow (no query) reuse the decision
/// instead of calling the hook again.
#[test]
fn hls_play_hook_with_tokens_and_cached_decision() {
    let hooks = HookServer::start();
    hooks.reply_with("/on_play", |c| {
        if c.arg("token") == Some("good") {
            Reply::ok()
        } else {
            Reply::status(403)
        }
    });
    let server = hooked(&hooks, &["on_play"])
        .set("hooks.cache_ttl", "30s")
        .start();
    let _publisher = spawn_publisher(&server, "h");
    wait_api_live(&server, "h");

    wait_until(
        "a playlist with a segment for token=good",
        Duration::from_secs(30),
        || {
            let r = http::get(server.http, "/live/h/index.m3u8?token=good").ok()?;
            let p = crate::support::Playlist::parse(&r.text());
            (r.status == 200 && !p.segments.is_empty()).then_some(())
        },
    );
    let bad = server.get("/live/h/index.m3u8?token=bad");
    assert!(
        matches!(bad.status, 401 | 403 | 404),
        "a refused token got {}: {}",
        bad.status,
        bad.text()
    );
    let good = hooks.wait_call(
        "/on_play",
        |c| c.arg("token") == Some("good"),
        Duration::from_secs(5),
    );
    assert_eq!(good.arg("protocol"), Some("hls"), "{good:#?}");
    assert_eq!(good.arg("name"), Some("h"), "{good:#?}");
    assert_eq!(good.arg("call"), Some("play"), "{good:#?}");
    assert_eq!(good.arg("addr"), Some("127.0.0.1"), "{good:#?}");

    let refused = hooks.wait_call(
        "/on_play",
        |c| c.arg("token") == Some("bad"),
        Duration::from_secs(5),
    );
    assert_eq!(refused.arg("protocol"), Some("hls"), "{refused:#?}");

    // The player goes on without the query: playlist and segment reuse the cached decision.
    let asked = hooks.calls("/on_play").len();
    let again = server.get("/live/h/index.m3u8");
    assert_eq!(
        again.status,
        200,
        "playlist without a query: {}",
        again.text()
    );
    let fresh = crate::support::Playlist::parse(&again.text());
    let newest = fresh
        .segments
        .last()
        .unwrap_or_else(|| panic!("no segment: {}", fresh.text));
    let uri = newest.uri.split('?').next().unwrap_or("");
    let path = if uri.starts_with('/') {
        uri.to_owned()
    } else {
        format!("/live/h/{uri}")
    };
    let segment = server.get(&path);
    assert_eq!(segment.status, 200, "segment {path} without a query");
    assert!(!segment.body.is_empty(), "empty segment {path}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hooks.calls("/on_play").len(),
        asked,
        "requests within cache_ttl called on_play again: {:#?}",
        &hooks.calls("/on_play")[asked..]
    );
}

/// SRT and RTSP clients get the same hook decisions, with `protocol=srt` / `protocol=rtsp`.
#[test]
fn srt_and_rtsp_use_the_same_hooks() {
    let hooks = HookServer::start();
    hooks.reply_with("/on_publish", |c| {
        if c.arg("name") == Some("deny") {
            Reply::status(403)
        } else {
            Reply::ok()
        }
    });
    hooks.reply_with("/on_play", |c| {
        if c.arg("name") == Some("secret") {
            Reply::status(403)
        } else {
            Reply::ok()
        }
    });
    let srt = free_udp_addr();
    let rtsp = free_addrs().0;
    let server = hooked(&hooks, &["on_publish", "on_play"])
        .set("srt.listen", srt)
        .set("rtsp.listen", rtsp)
        .start();
    let srt_publish = |code: &str| {
        let mut c = ffmpeg::ffmpeg();
        c.args(["-re", "-stream_loop", "-1", "-i"])
            .arg(Fixture::Small.path())
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("srt://{srt}?streamid=publish:live/{code}"));
        c
    };
    let mut x = ChildGuard::spawn(
        "srt publisher x",
        &mut srt_publish("x"),
        &server.dir().join("srt-x.log"),
    );
    let mut secret = spawn_publisher(&server, "secret");
    wait_api_live(&server, "x");
    wait_api_live(&server, "secret");
    let t = Duration::from_secs(5);
    let c = hooks.wait_call("/on_publish", |c| c.arg("name") == Some("x"), t);
    assert_eq!(c.arg("protocol"), Some("srt"), "{c:#?}");
    assert_eq!(c.arg("addr"), Some("127.0.0.1"), "{c:#?}");
    assert_eq!(c.arg("app"), Some("live"), "{c:#?}");

    let out = run(&mut srt_publish("deny"), Duration::from_secs(20));
    assert_refused(&out, "SRT publish refused by on_publish");
    let c = hooks.wait_call("/on_publish", |c| c.arg("name") == Some("deny"), t);
    assert_eq!(c.arg("protocol"), Some("srt"), "{c:#?}");
    assert_eq!(status(&server, "deny"), None);

    assert_refused(
        &probe(&format!("rtsp://{rtsp}/live/secret")),
        "RTSP play refused by on_play",
    );
    let c = hooks.wait_call(
        "/on_play",
        |c| c.arg("name") == Some("secret") && c.arg("protocol") == Some("rtsp"),
        t,
    );
    assert_eq!(c.arg("addr"), Some("127.0.0.1"), "{c:#?}");
    assert_refused(
        &probe(&format!("srt://{srt}?streamid=live/secret")),
        "SRT play refused by on_play",
    );
    hooks.wait_call(
        "/on_play",
        |c| c.arg("name") == Some("secret") && c.arg("protocol") == Some("srt"),
        t,
    );

    assert_plays(
        &format!("rtsp://{rtsp}/live/x"),
        "RTSP play allowed by on_play",
    );
    hooks.wait_call(
        "/on_play",
        |c| c.arg("name") == Some("x") && c.arg("protocol") == Some("rtsp"),
        t,
    );
    assert!(x.is_running(), "SRT publisher exited:\n{}", x.log());
    assert_untouched(&server, "secret", &mut secret, false);
    assert_eq!(status(&server, "x").as_deref(), Some("live"));
}

// ---------------------------------------------------------------------------------------------
// AgustinSRG callback

/// A decoded JWT: header, claims, the signed text and the signature.
struct Jwt {
    header: Value,
    claims: Value,
    signed: String,
    signature: Vec<u8>,
}

/// RFC 4648 §5 base64url, padding optional; `None` on a character outside the alphabet.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Splits and decodes a compact JWS; `None` when it is not one.
fn parse_jwt(token: &str) -> Option<Jwt> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Jwt {
        header: serde_json::from_slice(&base64url_decode(h)?).ok()?,
        claims: serde_json::from_slice(&base64url_decode(c)?).ok()?,
        signed: format!("{h}.{c}"),
        signature: base64url_decode(s)?,
    })
}

/// The claims of a callback request's `rtmp-event` token, unverified (for scripts).
fn event_claims(c: &Call) -> Option<Value> {
    parse_jwt(c.header("rtmp-event")?).map(|j| j.claims)
}

/// HMAC-SHA256 of `data` with `key`, computed by `openssl dgst`.
fn hmac_sha256(key: &str, data: &str) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (needed to check the callback's JWT signature)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(data.as_bytes())
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(
        out.status.success(),
        "openssl dgst failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks a callback request (POST, empty body, HS256 token signed with `secret`, expiring in
/// about 120 s) and returns its claims.
#[track_caller]
fn verified_event(c: &Call, secret: &str) -> Value {
    assert_eq!(c.method, "POST", "{c:#?}");
    assert!(c.body.is_empty(), "callback with a body: {c:#?}");
    let token = c
        .header("rtmp-event")
        .unwrap_or_else(|| panic!("callback without an rtmp-event header: {c:#?}"));
    let jwt = parse_jwt(token).unwrap_or_else(|| panic!("rtmp-event is not a JWT: {token:?}"));
    assert_eq!(jwt.header["alg"], "HS256", "JWT header {}", jwt.header);
    assert_eq!(
        hmac_sha256(secret, &jwt.signed),
        jwt.signature,
        "the JWT signature does not verify with the shared secret"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let exp = jwt.claims["exp"]
        .as_u64()
        .unwrap_or_else(|| panic!("exp is not a number: {}", jwt.claims));
    assert!(
        exp.abs_diff(now + 120) <= 10,
        "exp {exp} is not about now + 120 s (now {now})"
    );
    jwt.claims
}

/// The first callback of `event` for `channel`.
#[track_caller]
fn wait_event(hooks: &HookServer, event: &str, channel: &str) -> Call {
    hooks.wait_call(
        "/cb",
        |c| event_claims(c).is_some_and(|j| j["event"] == event && j["channel"] == channel),
        Duration::from_secs(10),
    )
}

/// The signed `start` callback admits on 200 and hands back `stream-id`, shown in the API and
/// sent back with `stop`; any other status refuses without disturbing the live stream.
#[test]
fn jwt_callback_start_and_stop() {
    let hooks = HookServer::start();
    hooks.reply_with("/cb", |c| {
        let Some(claims) = event_claims(c) else {
            return Reply::status(400);
        };
        match (claims["event"].as_str(), claims["channel"].as_str()) {
            (Some("start"), Some("ok")) => Reply::ok().header("stream-id", "abc-123"),
            (Some("start"), Some("created")) => Reply::status(201).header("stream-id", "no"),
            (Some("start"), Some("deny")) => Reply::status(403),
            _ => Reply::ok(),
        }
    });
    let server = Server::builder()
        .set("callback.url", hooks.url("/cb"))
        .set("callback.jwt_secret", "s3cret")
        .start();
    let mut ok = spawn_publisher(&server, "ok?key=kk");
    let v = wait_api_live(&server, "ok");

    let start = verified_event(&wait_event(&hooks, "start", "ok"), "s3cret");
    assert_eq!(start["sub"], "rtmp_event", "{start:#}");
    assert_eq!(start["key"], "kk", "{start:#}");
    assert_eq!(start["client_ip"], "127.0.0.1", "{start:#}");
    assert_eq!(
        start["rtmp_port"].as_u64(),
        Some(u64::from(server.rtmp.port())),
        "rtmp_port must be the RTMP port, as a number: {start:#}"
    );

    assert_eq!(
        v["runtime"]["publisher"]["external_id"], "abc-123",
        "the callback's stream-id in the API: {v:#}"
    );
    let sessions = Api::new(server.http).sessions("");
    assert!(
        sessions
            .iter()
            .any(|s| s["stream"] == "ok" && s["external_id"] == "abc-123"),
        "no session with the external id: {sessions:#?}"
    );

    for (code, why) in [("deny", "403"), ("created", "201")] {
        assert_refused(
            &publish_once(&server.rtmp_url(code)),
            &format!("publish answered {why} by the callback"),
        );
        let claims = verified_event(&wait_event(&hooks, "start", code), "s3cret");
        assert_eq!(claims["key"], "", "no ?key= means an empty key: {claims:#}");
        assert_eq!(status(&server, code), None, "{code:?} went live");
    }
    server.wait_log("refused by callback", Duration::from_secs(5));
    assert_untouched(&server, "ok", &mut ok, true);

    ok.stop(Duration::from_secs(10));
    let stop = verified_event(&wait_event(&hooks, "stop", "ok"), "s3cret");
    assert_eq!(stop["stream_id"], "abc-123", "{stop:#}");
    assert_eq!(stop["key"], "kk", "{stop:#}");
    assert_eq!(stop["sub"], "rtmp_event", "{stop:#}");
    assert_eq!(stop["client_ip"], "127.0.0.1", "{stop:#}");
    let strays: Vec<Value> = hooks
        .calls("/cb")
        .iter()
        .filter_map(event_claims)
        .filter(|c| c["event"] == "stop" && c["channel"] != "ok")
        .collect();
    assert!(strays.is_empty(), "stop for a refused start: {strays:#?}");
}

// ---------------------------------------------------------------------------------------------
// Address rules, limits, idle connections, stream keys

/// `access.publish_allow` / `access.play_allow` by address, as a comma list, a YAML list or `*`.
#[test]
fn publish_and_play_allow_lists() {
    let server = Server::builder()
        .set("access.publish_allow", "10.0.0.0/8")
        .start();
    assert_refused(
        &publish_once(&server.rtmp_url("a")),
        "publish from 127.0.0.1 with publish_allow 10.0.0.0/8",
    );
    server.wait_log("address not allowed", Duration::from_secs(5));
    assert_eq!(status(&server, "a"), None);

    let server = Server::builder()
        .set("access.publish_allow", "10.1.0.0/16, 127.0.0.1/32")
        .set("access.play_allow", "[10.0.0.0/8]")
        .start();
    let mut b = spawn_publisher(&server, "b");
    wait_api_live(&server, "b");
    assert_refused(
        &probe(&server.rtmp_url("b")),
        "RTMP play from 127.0.0.1 with play_allow [10.0.0.0/8]",
    );
    let ts = server.get("/live/b/mpegts");
    assert!(
        matches!(ts.status, 401 | 403),
        "MPEG-TS play with play_allow [10.0.0.0/8] got {}",
        ts.status
    );
    assert_untouched(&server, "b", &mut b, false);

    let server = Server::builder()
        .set("access.publish_allow", "*")
        .set("access.play_allow", "127.0.0.1")
        .start();
    let _c = spawn_publisher(&server, "c");
    wait_api_live(&server, "c");
    assert_plays(&server.rtmp_url("c"), "play with play_allow 127.0.0.1");
}

/// The allow-list matches IPv6 peers (`::1` allowed, `2001:db8::/32` not).
#[test]
fn publish_allow_matches_ipv6_peers() {
    let Ok(probe_v6) = TcpListener::bind("[::1]:0") else {
        // No IPv6 loopback on this machine (some containers): nothing to check.
        eprintln!("publish_allow_matches_ipv6_peers: no ::1 here, skipping");
        return;
    };
    drop(probe_v6);
    for (allow, allowed) in [("::1", true), ("2001:db8::/32", false)] {
        let port = TcpListener::bind("[::1]:0")
            .and_then(|l| l.local_addr())
            .expect("free [::1] port")
            .port();
        let server = Server::builder()
            .set("rtmp.listen", format!("[::1]:{port}"))
            .set("access.publish_allow", allow)
            .start();
        let url = format!("rtmp://[::1]:{port}/live/v6");
        if allowed {
            let mut p = publisher_to(&server, &url, "publisher-v6");
            wait_api_live(&server, "v6");
            let session = &Api::new(server.http).stream("v6")["runtime"]["publisher"];
            assert!(
                session["remote_addr"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("[::1]:")),
                "publisher address: {session:#}"
            );
            assert!(p.is_running(), "{}", p.log());
        } else {
            assert_refused(&publish_once(&url), &format!("publish with allow {allow}"));
            server.wait_log("address not allowed", Duration::from_secs(5));
        }
    }
}

/// Whether the server closed `s` within `within`, with the bytes it sent first.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(got),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// `limits.max_connections_per_ip`, `limits.exempt` and `limits.max_connections` are enforced
/// at accept time: an RTMP connection over a limit is closed before the handshake.
#[test]
fn connection_limits_at_accept() {
    // Long handshake and idle timeouts: only the limits may close these silent sockets.
    let quiet = |b: ServerBuilder| {
        b.set("rtmp.handshake_timeout", "30s")
            .set("rtmp.idle_timeout", "30s")
    };
    let server = quiet(Server::builder().set("limits.max_connections_per_ip", 2)).start();
    // The harness's readiness probe may hold a slot for a moment after the start: take each
    // slot with a connection that stays open.
    let held = |what: &str| {
        wait_until(what, Duration::from_secs(10), || {
            let mut s = connect(server.rtmp);
            closed_within(&mut s, Duration::from_millis(300))
                .is_none()
                .then_some(s)
        })
    };
    let mut a = held("the first slot");
    let mut b = held("the second slot");
    let mut c = connect(server.rtmp);
    let sent = closed_within(&mut c, Duration::from_secs(3))
        .expect("a third connection from one address was not closed");
    assert!(
        sent.is_empty(),
        "the server sent {} bytes first",
        sent.len()
    );
    assert!(
        closed_within(&mut a, Duration::from_millis(300)).is_none(),
        "first closed"
    );
    assert!(
        closed_within(&mut b, Duration::from_millis(300)).is_none(),
        "second closed"
    );
    // Once one closes, a new connection fits again.
    drop(a);
    wait_until(
        "a connection slot to free up",
        Duration::from_secs(10),
        || {
            let mut d = connect(server.rtmp);
            closed_within(&mut d, Duration::from_millis(500))
                .is_none()
                .then_some(d)
        },
    );

    let server = quiet(
        Server::builder()
            .set("limits.max_connections_per_ip", 2)
            .set("limits.exempt", "127.0.0.1"),
    )
    .start();
    let _a = connect(server.rtmp);
    let _b = connect(server.rtmp);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = RawClient::connect(server.rtmp);
    c.handshake();
    c.connect_app("live", &format!("rtmp://{}/live", server.rtmp));

    let server = quiet(Server::builder().set("limits.max_connections", 1)).start();
    // The harness's own readiness probe may still hold the one slot for a moment after the
    // start: take the slot with a connection that stays open.
    let mut a = wait_until("the one connection slot", Duration::from_secs(10), || {
        let mut a = connect(server.rtmp);
        closed_within(&mut a, Duration::from_millis(300))
            .is_none()
            .then_some(a)
    });
    let mut b = connect(server.rtmp);
    assert!(
        closed_within(&mut b, Duration::from_secs(3)).is_some(),
        "a second connection over max_connections 1 was not closed"
    );
    assert!(
        closed_within(&mut a, Duration::from_millis(300)).is_none(),
        "first closed"
    );
}

/// `rtmp.idle_timeout`: a connection that neither publishes nor plays is closed, whether it
/// stopped after the handshake or after `connect`; a publisher is not.
#[test]
fn idle_connections_are_closed() {
    let server = Server::builder().set("rtmp.idle_timeout", "1s").start();
    let mut busy = spawn_publisher(&server, "busy");
    wait_api_live(&server, "busy");

    // `connect` is sent right after the handshake, well within the 1 s.
    let mut after_connect = RawClient::connect(server.rtmp);
    after_connect.handshake();
    after_connect.connect_app("live", &format!("rtmp://{}/live", server.rtmp));
    let mut after_handshake = RawClient::connect(server.rtmp);
    after_handshake.handshake();
    after_handshake.expect_closed(Duration::from_secs(8));
    after_connect.expect_closed(Duration::from_secs(8));
    server.wait_log("neither published nor played", Duration::from_secs(5));
    assert_untouched(&server, "busy", &mut busy, true);
}

/// A stream created with a key: a wrong or missing key is refused, the right one publishes,
/// and the refusals leave another live stream alone.
#[test]
fn stream_key_refusals_leave_live_streams_alone() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.post("streams", &json!({"code": "keyed", "stream_key": "k1"}))
        .ok(201);
    let mut other = spawn_publisher(&server, "other");
    wait_api_live(&server, "other");

    for path in ["keyed?key=wrong", "keyed"] {
        assert_refused(
            &publish_once(&server.rtmp_url(path)),
            &format!("publish to {path}"),
        );
    }
    server.wait_log("invalid stream key", Duration::from_secs(5));
    assert_eq!(status(&server, "keyed").as_deref(), Some("idle"));
    assert_untouched(&server, "other", &mut other, true);

    let _keyed = spawn_publisher(&server, "keyed?key=k1");
    wait_api_live(&server, "keyed");
    assert_plays(&server.rtmp_url("keyed"), "the keyed stream");
}

// ---------------------------------------------------------------------------------------------
// Redis control channel

/// A private `redis-server` on a free port; killed on drop.
struct Redis {
    _child: ChildGuard,
    _dir: ScratchDir,
    port: u16,
}

impl Redis {
    /// `None` when `redis-server` is not installed.
    fn start() -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return None;
        }
        let dir = ScratchDir::new();
        let port = free_addrs().0.port();
        let child = ChildGuard::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(dir.path()),
            &dir.path().join("redis.log"),
        );
        let redis = Redis {
            _child: child,
            _dir: dir,
            port,
        };
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(10),
            || (redis.cli(&["PING"]) == "PONG").then_some(()),
        );
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p PORT args...`, its trimmed output.
    fn cli(&self, args: &[&str]) -> String {
        let out = run(
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args),
            Duration::from_secs(10),
        );
        out.stdout.trim().to_owned()
    }
}

/// Waits until someone (the server) subscribes to `channel`.
fn wait_subscribed(server: &Server, redis_cli: impl Fn(&[&str]) -> String, channel: &str) {
    server.wait_log("listening for commands", Duration::from_secs(15));
    wait_until(
        &format!("a subscriber on {channel}"),
        Duration::from_secs(10),
        || {
            let out = redis_cli(&["PUBSUB", "NUMSUB", channel]);
            let n: u64 = out.lines().last()?.trim().parse().ok()?;
            (n >= 1).then_some(())
        },
    );
}

/// `kill-session>CODE` ends a publisher; `close-stream>CODE|ID` only when ID is the
/// callback's stream id; nonsense is logged and ignored.
#[test]
fn redis_commands_kill_and_close_streams() {
    let Some(redis) = Redis::start() else {
        eprintln!("redis_commands_kill_and_close_streams: redis-server not installed, skipping");
        return;
    };
    let hooks = HookServer::start();
    hooks.reply_with("/cb", |c| {
        let channel = event_claims(c)
            .and_then(|j| j["channel"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let id = if channel == "r2" {
            "sid-2".to_owned()
        } else {
            format!("sid-{channel}")
        };
        Reply::ok().header("stream-id", &id)
    });
    let server = Server::builder()
        .set("redis.url", redis.url())
        .set("callback.url", hooks.url("/cb"))
        .set("callback.jwt_secret", "s3cret")
        .start();
    wait_subscribed(&server, |a| redis.cli(a), "rtmp_commands");
    let mut r1 = spawn_publisher(&server, "r1");
    let mut r2 = spawn_publisher(&server, "r2");
    wait_api_live(&server, "r1");
    wait_api_live(&server, "r2");

    let publish = |cmd: &str| {
        let receivers = redis.cli(&["PUBLISH", "rtmp_commands", cmd]);
        assert_eq!(
            receivers, "1",
            "PUBLISH {cmd:?} reached {receivers} subscribers"
        );
    };
    publish("kill-session>r1");
    wait_api_not_live(&server, "r1", Duration::from_secs(10));
    assert!(
        r1.wait_timeout(Duration::from_secs(10)).is_some(),
        "the killed publisher is still connected"
    );
    assert_eq!(
        status(&server, "r2").as_deref(),
        Some("live"),
        "kill-session>r1 hit r2"
    );

    publish("close-stream>r2|wrong");
    server.wait_log("matched no live publisher", Duration::from_secs(10));
    publish("nonsense");
    server.wait_log("ignored redis message", Duration::from_secs(10));
    assert_eq!(server.get("/healthz").status, 200);
    assert_untouched(&server, "r2", &mut r2, true);

    publish("close-stream>r2|sid-2");
    wait_api_not_live(&server, "r2", Duration::from_secs(10));
    assert!(
        r2.wait_timeout(Duration::from_secs(10)).is_some(),
        "the closed publisher is still connected"
    );
}

/// The same against an external Redis (`TEST_REDIS_URL`), on a channel private to this run.
#[test]
fn redis_commands_with_test_redis_url() {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("redis_commands_with_test_redis_url: TEST_REDIS_URL not set, skipping");
        return;
    };
    let channel = format!(
        "ferrocast-e2e-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let cli = |args: &[&str]| {
        let out = run(
            Command::new("redis-cli").args(["-u", &url]).args(args),
            Duration::from_secs(10),
        );
        out.stdout.trim().to_owned()
    };
    let server = Server::builder()
        .set("redis.url", &url)
        .set("redis.channel", &channel)
        .start();
    wait_subscribed(&server, cli, &channel);
    let mut p = spawn_publisher(&server, "tr");
    wait_api_live(&server, "tr");
    assert_eq!(cli(&["PUBLISH", &channel, "kill-session>tr"]), "1");
    wait_api_not_live(&server, "tr", Duration::from_secs(10));
    assert!(p.wait_timeout(Duration::from_secs(10)).is_some());
}

// ---------------------------------------------------------------------------------------------
// AgustinSRG environment variables

/// `rtmp://HOST/<channel>/<key>` on `server`'s RTMP port: AgustinSRG rtmp-server's URLs.
fn channel_url(server: &Server, channel: &str, key: &str) -> String {
    format!("rtmp://{}/{channel}/{key}", server.rtmp)
}

/// `RTMP_PORT`, `RTMP_PLAY_WHITELIST`, `ID_MAX_LENGTH`, `CALLBACK_URL` + `JWT_SECRET` +
/// `CUSTOM_JWT_SUBJECT` + `RTMP_HOST` configure the server, with that server's
/// `/CHANNEL/KEY` URLs; `FERROCAST_*` wins over them.
#[test]
fn agustinsrg_environment_variables() {
    let hooks = HookServer::start();
    hooks.reply("/cb", Reply::ok().header("stream-id", "env-1"));
    let server = Server::builder()
        .rtmp_port_env()
        .env("RTMP_PLAY_WHITELIST", "10.0.0.0/8")
        .env("ID_MAX_LENGTH", 8)
        .env("CALLBACK_URL", hooks.url("/cb"))
        .env("JWT_SECRET", "s3cret")
        .env("CUSTOM_JWT_SUBJECT", "compat-subject")
        .env("RTMP_HOST", "compat-host")
        .start();
    let url = channel_url(&server, "envcam", "camkey");
    let mut cam = publisher_to(&server, &url, "publisher-envcam");
    wait_api_live(&server, "envcam");
    let start = verified_event(&wait_event(&hooks, "start", "envcam"), "s3cret");
    assert_eq!(
        start["key"], "camkey",
        "the key is the URL's second segment: {start:#}"
    );
    assert_eq!(start["sub"], "compat-subject", "{start:#}");
    assert_eq!(start["rtmp_host"], "compat-host", "{start:#}");
    assert_eq!(
        start["rtmp_port"].as_u64(),
        Some(u64::from(server.rtmp.port())),
        "rtmp_port is RTMP_PORT: {start:#}"
    );
    assert_refused(&probe(&url), "play with RTMP_PLAY_WHITELIST=10.0.0.0/8");
    assert_refused(
        &publish_once(&channel_url(&server, "ninechars", "k")),
        "publish of a 9-character channel with ID_MAX_LENGTH=8",
    );
    assert_untouched(&server, "envcam", &mut cam, false);
    // Its default of 4 connections per IP: beside the publisher three more are taken and the
    // next is closed at once. Retried while the clients above may still hold their slots.
    wait_until(
        "exactly 4 connections from one address",
        Duration::from_secs(10),
        || {
            let mut held = Vec::new();
            while held.len() < 8 {
                let mut s = connect(server.rtmp);
                if closed_within(&mut s, Duration::from_millis(300)).is_some() {
                    break;
                }
                held.push(s);
            }
            (held.len() == 3).then_some(())
        },
    );

    // FERROCAST_* wins: its RTMP address, subject, play list and URL scheme, whatever the old
    // names say.
    let elsewhere = free_addrs().0.port();
    let server = Server::builder()
        .env("RTMP_PORT", elsewhere)
        .env("RTMP_PLAY_WHITELIST", "10.0.0.0/8")
        .env("CALLBACK_URL", hooks.url("/cb"))
        .env("JWT_SECRET", "s3cret")
        .env("CUSTOM_JWT_SUBJECT", "compat-subject")
        .set("callback.subject", "ferrocast-subject")
        .set("access.play_allow", "*")
        .set("rtmp.url_scheme", "app_name")
        .start();
    let _p = spawn_publisher(&server, "winner");
    wait_api_live(&server, "winner");
    let start = verified_event(&wait_event(&hooks, "start", "winner"), "s3cret");
    assert_eq!(start["sub"], "ferrocast-subject", "{start:#}");
    assert_plays(&server.rtmp_url("winner"), "play with access.play_allow *");
}

/// The example compose file of AgustinSRG rtmp-server's README, run against the gateway, and
/// that server's documented behaviour point by point.
#[test]
fn agustinsrg_compose_file_environment() {
    let server = Server::builder()
        .rtmp_port_env()
        .env("PLAY_ALLOWED_FROM", "*")
        .env("CONCURRENT_LIMIT_WHITELIST", "*")
        .env("REDIS_USE", "NO")
        .env("RTMP_CHUNK_SIZE", 5000)
        .env("LOG_REQUESTS", "YES")
        .env("LOG_DEBUG", "NO")
        .env("GOP_CACHE_SIZE_MB", 0)
        .start();
    // 1. `rtmp://HOST/CHANNEL/KEY`: the channel is the stream.
    let url = channel_url(&server, "show", "s3cret-key");
    let mut p = publisher_to(&server, &url, "publisher-show");
    wait_api_live(&server, "show");
    // 2. Players use the same URL; the publisher's key plays (anyone: PLAY_ALLOWED_FROM=*),
    // with the configured chunk size.
    let out = run(
        ffmpeg::ffprobe()
            .args(["-loglevel", "debug", "-show_streams"])
            .arg(&url),
        Duration::from_secs(20),
    );
    assert!(out.success(), "play with the key: {}", out.stderr);
    assert!(out.stdout.contains("\"h264\""), "{}", out.stdout);
    assert!(
        out.stderr.contains("chunk size = 5000"),
        "RTMP_CHUNK_SIZE=5000 not announced:\n{}",
        out.stderr
    );
    // 3. Another key, or none, is refused.
    assert_refused(
        &probe(&channel_url(&server, "show", "wrong-key")),
        "play with a wrong key",
    );
    assert_refused(
        &probe(&format!("rtmp://{}/show", server.rtmp)),
        "play without a key",
    );
    // 4. Keys and channels are `[A-Za-z0-9_-]`.
    assert_refused(
        &publish_once(&format!("rtmp://{}/bad.channel/k", server.rtmp)),
        "publish to a channel with a dot",
    );
    // 5. One publisher per channel, whatever its key.
    assert_refused(
        &publish_once(&channel_url(&server, "show", "other-key")),
        "second publisher of a live channel",
    );
    assert_untouched(&server, "show", &mut p, false);
    // 6. CONCURRENT_LIMIT_WHITELIST=* lifts its 4-per-IP default.
    let held: Vec<_> = (0..6).map(|_| connect(server.rtmp)).collect();
    for mut s in held {
        assert!(
            closed_within(&mut s, Duration::from_millis(300)).is_none(),
            "a connection over 4 from one address was closed despite the whitelist"
        );
    }
    // 7. The stream plays over HLS under the channel's name.
    let hls = run(
        ffmpeg::ffprobe().args(["-show_streams", &server.hls_url("show")]),
        Duration::from_secs(30),
    );
    assert!(hls.success(), "HLS of the channel: {}", hls.stderr);
    // 8. Players that came before the publisher wait for it, and are checked against its key
    // when it arrives.
    let waiting = |key: &'static str| {
        let url = channel_url(&server, "late", key);
        std::thread::spawn(move || probe(&url))
    };
    let wrong = waiting("not-the-key");
    let right = waiting("late-key");
    std::thread::sleep(Duration::from_secs(1));
    let _late = publisher_to(&server, &channel_url(&server, "late", "late-key"), "late");
    assert_refused(&wrong.join().unwrap(), "waiting player with another key");
    let right = right.join().unwrap();
    assert!(
        right.success(),
        "waiting player with the key: {}",
        right.stderr
    );
}

/// Players whose address is listed in `RTMP_PLAY_WHITELIST` need not give the key; with no
/// whitelist everyone must.
#[test]
fn agustinsrg_whitelisted_players_need_no_key() {
    let server = Server::builder()
        .rtmp_port_env()
        .env("RTMP_PLAY_WHITELIST", "127.0.0.1")
        .start();
    let url = channel_url(&server, "trusted", "k1");
    let _p = publisher_to(&server, &url, "publisher-trusted");
    wait_api_live(&server, "trusted");
    assert_plays(
        &channel_url(&server, "trusted", "any-key"),
        "a whitelisted player with another key",
    );
}

/// Its keepalive: a ping every 30 s and a 60 s read deadline for players (shortened here
/// through `FERROCAST_*`): a player that answers (ffmpeg) plays on; a silent one is closed.
#[test]
fn agustinsrg_ping_and_player_read_deadline() {
    let server = Server::builder()
        .env("RTMP_CHUNK_SIZE", 4096)
        .set("rtmp.ping_interval", 1)
        .set("rtmp.player_read_timeout", 3)
        .start();
    let url = channel_url(&server, "keep", "k1");
    let _p = publisher_to(&server, &url, "publisher-keep");
    wait_api_live(&server, "keep");

    let mut silent = silent_player(&server, "keep", "k1");
    let started = Instant::now();
    assert!(
        pinged_within(&mut silent, Duration::from_secs(3)),
        "no ping request within 3 s with rtmp.ping_interval 1"
    );
    silent.expect_closed(Duration::from_secs(10));
    let total = started.elapsed();
    assert!(
        total >= Duration::from_secs(2),
        "a silent player closed after {total:?}, before its read deadline"
    );

    // ffmpeg answers pings: it plays well past the read deadline.
    let out = run(
        ffmpeg::ffmpeg().args(["-v", "error", "-i", &url, "-t", "8", "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(out.success(), "ffmpeg player: {}", out.stderr);
    // The GOP cache arrives at once, so the wall time is a little under 8 s.
    assert!(
        out.elapsed >= Duration::from_secs(5),
        "played only {:?}",
        out.elapsed
    );

    // A player waiting for a channel that is not live yet is served like any connection
    // meanwhile (it used to wait inside its play command, unread and never pinged).
    let mut waiting = silent_player(&server, "notyet", "k2");
    assert!(
        pinged_within(&mut waiting, Duration::from_secs(3)),
        "a player waiting for its publisher got no ping request within 3 s"
    );
}

/// A raw client that connects to `channel`, plays it with `key`, and then sends nothing.
fn silent_player(server: &Server, channel: &str, key: &str) -> RawClient {
    let mut c = RawClient::connect(server.rtmp);
    c.handshake();
    c.connect_app(channel, &format!("rtmp://{}/{channel}", server.rtmp));
    let create = rtmp::message::command("createStream", 2.0, &rtmp::amf0::Amf0Value::Null, &[]);
    c.send(
        rtmp::message::CSID_COMMAND,
        rtmp::message::TYPE_COMMAND_AMF0,
        0,
        &create,
    );
    let play = rtmp::message::command("play", 3.0, &rtmp::amf0::Amf0Value::Null, &[key.into()]);
    c.send(
        rtmp::message::CSID_COMMAND,
        rtmp::message::TYPE_COMMAND_AMF0,
        1,
        &play,
    );
    c
}

/// Whether the server sends `c` a ping request within `limit`.
fn pinged_within(c: &mut RawClient, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        let Some(m) = c.next_message(limit) else {
            return false;
        };
        if m.type_id == rtmp::message::TYPE_USER_CONTROL
            && matches!(
                rtmp::message::Message::parse(m.type_id, &m.payload),
                Ok(rtmp::message::Message::UserControl(
                    rtmp::message::UserControl::PingRequest(_)
                ))
            )
        {
            return true;
        }
    }
    false
}

/// The Redis commands' REST twins: `kill` ends a stream's publisher; `close` only when the
/// callback's stream id matches.
#[test]
fn rest_kill_and_close_publishers() {
    let hooks = HookServer::start();
    hooks.reply_with("/cb", |c| {
        let channel = event_claims(c)
            .and_then(|j| j["channel"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Reply::ok().header("stream-id", &format!("sid-{channel}"))
    });
    let server = Server::builder()
        .set("callback.url", hooks.url("/cb"))
        .set("callback.jwt_secret", "s3cret")
        .start();
    let api = Api::new(server.http);
    let mut k1 = spawn_publisher(&server, "k1");
    let mut k2 = spawn_publisher(&server, "k2");
    wait_api_live(&server, "k1");
    wait_api_live(&server, "k2");

    assert_eq!(api.post("streams/k1/kill", &Value::Null).status, 204);
    wait_api_not_live(&server, "k1", Duration::from_secs(10));
    assert!(
        k1.wait_timeout(Duration::from_secs(10)).is_some(),
        "the killed publisher is still connected"
    );
    assert_eq!(api.post("streams/k1/kill", &Value::Null).status, 404);

    assert_eq!(api.post("streams/k2/close", &Value::Null).status, 400);
    assert_eq!(
        api.post("streams/k2/close?stream_id=sid-other", &Value::Null)
            .status,
        404
    );
    assert_untouched(&server, "k2", &mut k2, false);
    assert_eq!(
        api.post("streams/k2/close?stream_id=sid-k2", &Value::Null)
            .status,
        204
    );
    wait_api_not_live(&server, "k2", Duration::from_secs(10));
}
