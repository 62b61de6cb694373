//! The REST API with real media: runtime state, sessions and kicking them, stream keys and
//! admission, and configuration changes applied to a live stream without disturbing what did
//! not change.

use crate::api::metric;
use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::http;
use crate::support::proc::{ChildGuard, Finished, read_lossy, run};
use crate::support::{Fixture, Server, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An ffmpeg RTMP player decoding to null, reporting progress to a file.
struct Player {
    child: ChildGuard,
    progress: PathBuf,
}

impl Player {
    fn start(server: &Server, code: &str, name: &str) -> Player {
        let progress = server.dir().join(format!("{name}.progress"));
        let child = ChildGuard::spawn(
            name,
            ffmpeg::ffmpeg()
                .args(["-i", &server.rtmp_url(code), "-f", "null", "-", "-nostats"])
                .arg("-progress")
                .arg(&progress),
            &server.dir().join(format!("{name}.log")),
        );
        Player { child, progress }
    }

    fn frames(&self) -> u64 {
        ffmpeg::parse_progress(&read_lossy(&self.progress)).0
    }

    /// Asserts the player is running and decodes at least 10 more frames within 10 s.
    #[track_caller]
    fn assert_decoding(&mut self, when: &str) {
        let from = self.frames();
        let start = Instant::now();
        loop {
            assert!(
                self.child.is_running(),
                "RTMP player exited {when} ({:?}):\n{}",
                self.child.try_status(),
                self.child.log()
            );
            if self.frames() >= from + 10 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "RTMP player stopped decoding {when}: {} frames, was {from}",
                self.frames()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to 10 s for the player to exit.
    #[track_caller]
    fn assert_exits(&mut self, why: &str) {
        assert!(
            self.child.wait_timeout(Duration::from_secs(10)).is_some(),
            "RTMP player still running 10 s after {why} ({} frames)",
            self.frames()
        );
    }
}

/// A raw `/mpegts` reader on its own thread, counting bytes until the body ends.
struct TsReader {
    bytes: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl TsReader {
    fn start(server: &Server, code: &str) -> TsReader {
        let mut s = http::open(
            server.http,
            &format!("/live/{code}/mpegts"),
            Duration::from_secs(10),
        )
        .expect("GET mpegts");
        assert_eq!(s.status, 200, "GET /live/{code}/mpegts");
        let bytes = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (b, e) = (bytes.clone(), ended.clone());
        let thread = std::thread::spawn(move || {
            let result = loop {
                match s.next_piece() {
                    Ok(Some(p)) => {
                        b.fetch_add(p.len() as u64, Ordering::Relaxed);
                    }
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err.to_string()),
                }
            };
            e.store(true, Ordering::Relaxed);
            result
        });
        TsReader {
            bytes,
            ended,
            thread: Some(thread),
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    #[track_caller]
    fn assert_receiving(&self, when: &str) {
        let from = self.bytes();
        wait_until(
            &format!("the MPEG-TS reader to receive more {when}"),
            Duration::from_secs(10),
            || (self.bytes() > from + 1000).then_some(()),
        );
        assert!(
            !self.ended.load(Ordering::Relaxed),
            "MPEG-TS body ended {when}"
        );
    }

    /// Waits for the body to end; `Ok` if it ended with its terminating chunk.
    fn wait_end(&mut self, within: Duration) -> Result<(), String> {
        wait_until("the MPEG-TS body to end", within, || {
            self.ended.load(Ordering::Relaxed).then_some(())
        });
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("reader thread")
    }
}

/// Publishes `fixture` to `path` (`code?key=...`) to completion with a time limit: for
/// publishers that must be refused.
fn publish_once(server: &Server, path: &str, fixture: Fixture) -> Finished {
    run(
        &mut ffmpeg::publish_command(&fixture.path(), &server.rtmp_url(path)),
        Duration::from_secs(15),
    )
}

#[track_caller]
fn assert_refused(out: &Finished, what: &str) {
    assert!(
        out.exited(),
        "{what}: the publisher was neither refused nor stopped within 15 s"
    );
    assert!(
        !out.success(),
        "{what}: the publisher exited 0:\n{}",
        out.stderr
    );
}

/// Waits until `GET streams/{code}` satisfies `ok`; returns that view.
fn wait_stream(api: &Api, code: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = api.stream(code);
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {code:?}: {what}; last view:\n{v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn session_of<'a>(sessions: &'a [Value], protocol: &str, role: &str) -> &'a Value {
    sessions
        .iter()
        .find(|s| s["protocol"] == protocol && s["role"] == role)
        .unwrap_or_else(|| panic!("no {protocol} {role} among {sessions:#?}"))
}

#[track_caller]
fn assert_hls_advances(server: &Server, code: &str, when: &str) {
    let last = server
        .playlist(code)
        .and_then(|p| p.last_seq())
        .unwrap_or_else(|| panic!("no HLS playlist for {code:?} {when}"));
    server.wait_playlist(
        code,
        &format!("the media sequence to advance {when}"),
        Duration::from_secs(10),
        |p| p.last_seq().is_some_and(|s| s > last),
    );
}

/// Runtime state, sessions, kicking sessions, list filters and `/metrics` while a keyed
/// publisher, an RTMP player and an MPEG-TS reader are attached.
#[test]
fn runtime_sessions_kick_and_metrics_while_live() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put(
        "streams/rt",
        &json!({"name": "Runtime", "stream_key": "k3y"}),
    )
    .ok(201);
    api.put("streams/idle", &json!({})).ok(201);
    let mut publisher = server.publish("rt?key=k3y", Fixture::Small);
    server.wait_live("rt");

    let v = wait_stream(&api, "rt", "live with two tracks", |v| {
        v["runtime"]["status"] == "live"
            && v["runtime"]["tracks"]
                .as_array()
                .is_some_and(|t| t.len() == 2)
    });
    let rt = &v["runtime"];
    let publ = &rt["publisher"];
    assert_eq!(publ["protocol"], "rtmp", "{rt:#}");
    assert!(
        publ["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "publisher remote_addr: {rt:#}"
    );
    assert!(
        publ["session_id"].is_u64() && publ["started_at"].is_string(),
        "{rt:#}"
    );
    assert!(
        publ["uptime_s"].as_f64().is_some_and(|u| u >= 0.0),
        "{rt:#}"
    );
    let video = &rt["tracks"][0];
    assert_eq!(video["kind"], "video", "{rt:#}");
    assert_eq!(video["codec"], "h264");
    assert_eq!(
        video["profile"], "High",
        "libx264's default profile: {video:#}"
    );
    let level = video["level"].as_str().expect("level");
    assert!(
        level.split('.').count() == 2 && level.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "H.264 level {level:?}"
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    let audio = &rt["tracks"][1];
    assert_eq!(audio["kind"], "audio", "{rt:#}");
    assert_eq!(audio["codec"], "aac");
    assert_eq!(audio["profile"], "LC");
    assert_eq!(audio["sample_rate"], 48000);
    assert_eq!(audio["channels"], 2);

    let mut player = Player::start(&server, "rt", "rtmp-player");
    let mut ts = TsReader::start(&server, "rt");
    player.assert_decoding("after it started");
    ts.assert_receiving("after it started");

    let v = wait_stream(&api, "rt", "readers, bitrates and bytes", |v| {
        let r = &v["runtime"];
        r["readers"] == json!({"mpegts": 1, "rtmp": 1})
            && r["readers_total"] == 2
            && r["bitrate_in_kbps"].as_u64() > Some(0)
            && r["bytes_in"].as_u64() > Some(0)
            && r["bytes_out"].as_u64() > Some(0)
    });
    let publisher_id = v["runtime"]["publisher"]["session_id"]
        .as_u64()
        .expect("id");
    // A 320x240 fixture with 128k audio: far from zero, far from absurd.
    let kbps = v["runtime"]["bitrate_in_kbps"].as_u64().unwrap_or(0);
    assert!((50..20_000).contains(&kbps), "bitrate_in_kbps {kbps}");

    // Sessions: the publisher and both readers, with bytes, and the filters.
    let sessions = wait_until(
        "every session to have bytes",
        Duration::from_secs(10),
        || {
            let s = api.sessions("");
            (s.len() == 3 && s.iter().all(|x| x["bytes"].as_u64() > Some(0))).then_some(s)
        },
    );
    let p = session_of(&sessions, "rtmp", "publisher");
    assert_eq!(
        p["id"], publisher_id,
        "publisher session vs runtime.publisher"
    );
    let rtmp_reader = session_of(&sessions, "rtmp", "reader")["id"]
        .as_u64()
        .expect("id");
    let ts_reader = session_of(&sessions, "mpegts", "reader")["id"]
        .as_u64()
        .expect("id");
    for s in &sessions {
        assert_eq!(s["stream"], "rt", "{s:#}");
        assert!(s["started_at"].is_string(), "{s:#}");
        assert!(
            s["remote_addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:")),
            "{s:#}"
        );
    }
    let ids = |q: &str| -> Vec<u64> {
        let mut v: Vec<u64> = api
            .sessions(q)
            .iter()
            .filter_map(|s| s["id"].as_u64())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<u64>| {
        v.sort();
        v
    };
    assert_eq!(
        ids("?stream=rt"),
        sorted(vec![publisher_id, rtmp_reader, ts_reader])
    );
    assert_eq!(ids("?stream=idle"), Vec::<u64>::new());
    assert_eq!(ids("?protocol=mpegts"), vec![ts_reader]);
    assert_eq!(
        ids("?protocol=rtmp"),
        sorted(vec![publisher_id, rtmp_reader])
    );
    assert_eq!(ids("?stream=rt&protocol=mpegts"), vec![ts_reader]);
    assert_eq!(ids("?stream=idle&protocol=rtmp"), Vec::<u64>::new());

    // List filters by runtime status.
    let codes = |q: &str| -> Vec<String> {
        api.get(&format!("streams{q}")).ok(200)["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|s| s["code"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(codes("?status=live"), ["rt"]);
    assert_eq!(codes("?status=idle"), ["idle"]);
    assert_eq!(codes(""), ["idle", "rt"]);

    // /metrics while both readers are attached.
    api.get("streams/missing").error(404, "NOT_FOUND", &[]);
    let m = server.get("/metrics").text();
    assert_eq!(metric(&m, "ferrocast_streams_live"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, r#"ferrocast_readers{protocol="rtmp"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"ferrocast_readers{protocol="mpegts"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"ferrocast_publishers{protocol="rtmp"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(&m, "ferrocast_received_bytes_total").is_some_and(|b| b > 0.0),
        "{m}"
    );
    assert!(
        metric(&m, "ferrocast_sent_bytes_total").is_some_and(|b| b > 0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"ferrocast_stream_received_bits_per_second{stream="rt"}"#
        )
        .is_some_and(|b| b > 0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"ferrocast_api_requests_total{route="/api/v1/streams/{code}",status="404"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );

    // Kick the RTMP player: it exits, the MPEG-TS reader and the publisher carry on.
    let r = api.delete(&format!("sessions/{rtmp_reader}"));
    assert_eq!(r.status, 204, "kick RTMP player: {}", r.text);
    player.assert_exits("its session was deleted");
    ts.assert_receiving("after the RTMP player was kicked");
    publisher.assert_running("after the RTMP player was kicked");
    wait_stream(&api, "rt", "only the MPEG-TS reader", |v| {
        v["runtime"]["readers"] == json!({"mpegts": 1})
    });
    api.delete(&format!("sessions/{rtmp_reader}")).error(
        404,
        "NOT_FOUND",
        &[&rtmp_reader.to_string()],
    );

    // Kick the MPEG-TS reader: its body ends; the publisher carries on.
    assert_eq!(api.delete(&format!("sessions/{ts_reader}")).status, 204);
    let end = ts.wait_end(Duration::from_secs(10));
    assert!(
        end.is_ok(),
        "kicked MPEG-TS body did not end cleanly: {end:?}"
    );
    publisher.assert_running("after both readers were kicked");
    let v = wait_stream(&api, "rt", "no readers", |v| {
        v["runtime"]["readers_total"] == 0
    });
    assert_eq!(v["runtime"]["status"], "live");
    assert_eq!(ids(""), vec![publisher_id]);

    // Bad and unknown ids.
    for bad in ["abc", "-1", "1.5", "99999999999999999999999"] {
        api.delete(&format!("sessions/{bad}"))
            .error(400, "INVALID_ID", &["id"]);
    }
    api.delete("sessions/987654321")
        .error(404, "NOT_FOUND", &["987654321"]);
}

/// A stream key is required and checked; changing it keeps the current publisher; disabling
/// kicks it and refuses new ones until enabled again.
#[test]
fn stream_key_and_disabled_control_publishing() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/sk", &json!({"stream_key": "right-key"}))
        .ok(201);

    let refused: Vec<(String, Finished)> = ["sk", "sk?key=wrong-key", "sk?key=right-ke", "sk?key="]
        .into_iter()
        .map(|p| {
            let server_rtmp = server.rtmp_url(p);
            let file = Fixture::Small.path();
            let p = p.to_owned();
            std::thread::spawn(move || {
                let out = run(
                    &mut ffmpeg::publish_command(&file, &server_rtmp),
                    Duration::from_secs(15),
                );
                (p, out)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("publisher thread"))
        .collect();
    for (p, out) in &refused {
        assert_refused(out, &format!("publish to {p}"));
    }
    assert!(
        server.log().contains("invalid stream key"),
        "no refusal reason in the log"
    );
    assert_eq!(api.stream("sk")["runtime"]["status"], "idle");

    let mut publisher = server.publish("sk?key=right-key", Fixture::Small);
    server.wait_live("sk");
    let v = wait_stream(&api, "sk", "live", |v| v["runtime"]["status"] == "live");
    let id = v["runtime"]["publisher"]["session_id"].clone();
    let bytes = v["runtime"]["bytes_in"].as_u64().unwrap_or(0);

    // A new key applies to the next publish; the current publisher stays.
    let v = api
        .patch("streams/sk", &json!({"stream_key": "new-key"}))
        .ok(200);
    assert_eq!(v["has_stream_key"], true);
    assert!(
        v.get("stream_key").is_none(),
        "the key is write-only: {v:#}"
    );
    std::thread::sleep(Duration::from_secs(2));
    publisher.assert_running("after the stream key changed");
    let v = wait_stream(&api, "sk", "bytes to keep coming in", |v| {
        v["runtime"]["bytes_in"].as_u64() > Some(bytes + 10_000)
    });
    assert_eq!(v["runtime"]["status"], "live");
    assert_eq!(
        v["runtime"]["publisher"]["session_id"], id,
        "publisher reconnected?"
    );

    // Disabling kicks the publisher and refuses the right key.
    api.patch("streams/sk", &json!({"disabled": true})).ok(200);
    wait_until(
        "the publisher to be kicked",
        Duration::from_secs(10),
        || (!publisher.is_running()).then_some(()),
    );
    wait_stream(&api, "sk", "idle after disabling", |v| {
        v["runtime"]["status"] == "idle"
    });
    assert_refused(
        &publish_once(&server, "sk?key=new-key", Fixture::Small),
        "publish to a disabled stream",
    );
    assert!(
        server.log().contains("stream disabled"),
        "no refusal reason in the log"
    );
    assert_eq!(server.get("/live/sk/mpegts").status, 404);

    // Enabled again: the new key works.
    api.patch("streams/sk", &json!({"disabled": false})).ok(200);
    let _again = server.publish("sk?key=new-key", Fixture::Small);
    server.wait_live("sk");
}

#[test]
fn auto_create_off_refuses_unknown_codes_but_not_configured_ones() {
    let server = Server::builder().set("ingest.auto_create", false).start();
    let api = Api::new(server.http);
    api.put("streams/known", &json!({})).ok(201);

    assert_refused(
        &publish_once(&server, "unknown", Fixture::Small),
        "publish to an unknown code with auto_create off",
    );
    assert!(
        server.log().contains("unknown stream"),
        "no refusal reason in the log"
    );
    api.get("streams/unknown").error(404, "NOT_FOUND", &[]);

    let mut publisher = server.publish("known", Fixture::Small);
    server.wait_live("known");
    wait_stream(&api, "known", "live", |v| v["runtime"]["status"] == "live");
    let live = api.get("streams?status=live").ok(200);
    assert_eq!(live["total"], 1, "{live:#}");
    publisher.assert_running("at the end");
}

/// With auto_create on (the default), publishing to an unknown code makes a runtime stream
/// that the API shows as live and not persistent, and forgets once it ends.
#[test]
fn auto_created_stream_is_listed_while_live_and_not_persistent() {
    let server = Server::start();
    let api = Api::new(server.http);
    let mut publisher = server.publish("adhoc", Fixture::Small);
    server.wait_live("adhoc");
    let v = wait_stream(&api, "adhoc", "live", |v| v["runtime"]["status"] == "live");
    assert_eq!(v["persistent"], false, "{v:#}");
    assert!(v["created_at"].is_null(), "{v:#}");
    let list = api.get("streams?status=live").ok(200);
    assert_eq!(list["total"], 1, "{list:#}");
    publisher.stop();
    wait_until(
        "the runtime stream to go away",
        Duration::from_secs(10),
        || (api.get("streams/adhoc").status == 404).then_some(()),
    );
    assert_eq!(api.get("streams").ok(200)["total"], 0);
}

/// Switching DASH, the push list and HLS while an RTMP player and HLS run: the player and the
/// other outputs never notice; HLS goes away at once and comes back.
#[test]
fn hot_changes_leave_unchanged_outputs_alone() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/hot", &json!({"name": "hot"})).ok(201);
    let mut publisher = server.publish("hot", Fixture::Small);
    server.wait_playlist("hot", "2 segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 2
    });
    let mut player = Player::start(&server, "hot", "rtmp-player");
    player.assert_decoding("after it started");
    let player_id = wait_until("the player's session", Duration::from_secs(10), || {
        api.sessions("?protocol=rtmp")
            .iter()
            .find(|s| s["role"] == "reader")
            .and_then(|s| s["id"].as_u64())
    });

    for (dash, when) in [
        (false, "after DASH was switched off"),
        (true, "after DASH was switched on"),
    ] {
        let v = api
            .patch("streams/hot", &json!({"protocols": {"dash": dash}}))
            .ok(200);
        assert_eq!(v["protocols"]["dash"], dash);
        player.assert_decoding(when);
        assert_hls_advances(&server, "hot", when);
    }

    for (push, when) in [
        (
            json!([{"url": "rtmp://127.0.0.1:9/live/a"}, {"url": "rtmps://127.0.0.1:9/live/b"}]),
            "after adding push destinations",
        ),
        (
            json!([{"url": "rtmps://127.0.0.1:9/live/b", "enabled": false}]),
            "after changing push destinations",
        ),
        (json!([]), "after removing push destinations"),
    ] {
        api.patch("streams/hot", &json!({"push": push})).ok(200);
        player.assert_decoding(when);
    }
    assert_hls_advances(&server, "hot", "after the push changes");

    // HLS off: the playlist and its segments 404 at once; RTMP unaffected.
    let seg = server
        .playlist("hot")
        .and_then(|p| p.segments.last().cloned())
        .expect("segment");
    api.patch("streams/hot", &json!({"protocols": {"hls": false}}))
        .ok(200);
    assert_eq!(
        server.get("/live/hot/index.m3u8").status,
        404,
        "playlist right after hls=false"
    );
    assert_eq!(
        server.get(&format!("/live/hot/{}", seg.uri)).status,
        404,
        "segment after hls=false"
    );
    player.assert_decoding("after HLS was switched off");
    assert_eq!(
        server.get("/live/hot/index.m3u8").status,
        404,
        "playlist while hls=false"
    );

    // HLS on again: the playlist comes back and advances.
    api.patch("streams/hot", &json!({"protocols": {"hls": true}}))
        .ok(200);
    server.wait_playlist("hot", "to come back", Duration::from_secs(10), |p| {
        !p.segments.is_empty()
    });
    assert_hls_advances(&server, "hot", "after HLS was switched on again");
    player.assert_decoding("after HLS was switched on again");

    // The same player session throughout, and the publisher never noticed.
    let readers = api.sessions("?protocol=rtmp");
    assert!(
        readers.iter().any(|s| s["id"] == player_id),
        "the RTMP player's session changed: {readers:#?}"
    );
    publisher.assert_running("at the end");
}

/// Switching RTMP play off disconnects RTMP players and refuses new ones; HLS carries on.
#[test]
fn rtmp_off_kicks_rtmp_players_and_leaves_hls_alone() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/r", &json!({})).ok(201);
    let mut publisher = server.publish("r", Fixture::Small);
    server.wait_playlist("r", "2 segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 2
    });
    let mut player = Player::start(&server, "r", "rtmp-player");
    player.assert_decoding("after it started");
    let ts = TsReader::start(&server, "r");

    api.patch("streams/r", &json!({"protocols": {"rtmp": false}}))
        .ok(200);
    player.assert_exits("RTMP play was switched off");
    let probe = run(
        ffmpeg::ffprobe().args(["-show_streams", &server.rtmp_url("r")]),
        Duration::from_secs(20),
    );
    assert!(
        probe.exited() && !probe.success(),
        "RTMP play with rtmp=false was not refused ({:?} after {:?}):\n{}",
        probe.status,
        probe.elapsed,
        probe.stdout
    );
    assert!(
        server.log().contains("rtmp output disabled"),
        "no refusal reason in the log"
    );
    assert_hls_advances(&server, "r", "after RTMP play was switched off");
    ts.assert_receiving("after RTMP play was switched off");
    publisher.assert_running("after RTMP play was switched off");
    let v = api.stream("r");
    assert_eq!(v["runtime"]["readers"], json!({"mpegts": 1}), "{v:#}");

    // On again: a new player works.
    api.patch("streams/r", &json!({"protocols": {"rtmp": true}}))
        .ok(200);
    let d = ffmpeg::decode(&server.rtmp_url("r"), 1.0, Duration::from_secs(20));
    d.assert_clean("RTMP player after rtmp=true");
    drop(ts);
}
