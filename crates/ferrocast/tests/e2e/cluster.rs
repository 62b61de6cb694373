//! Several nodes on one PostgreSQL (issue 18): configuration written on any node, or by hand
//! in psql, shows on every other within a second and is applied to its running streams.

use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::pg::PgSchema;
use crate::support::proc::{ChildGuard, run};
use crate::support::server::{ServerBuilder, free_addrs, free_udp_addr};
use crate::support::{Fixture, Server, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

/// One PostgreSQL schema and a Redis key prefix private to a test: the shared ground of its
/// nodes.
struct Cluster {
    pg: PgSchema,
    redis: String,
    prefix: String,
}

impl Cluster {
    /// `None`, after saying so, without `TEST_DATABASE_URL` or `TEST_REDIS_URL`.
    fn new(test: &str) -> Option<Cluster> {
        let pg = PgSchema::create(test)?;
        let Ok(redis) = std::env::var("TEST_REDIS_URL") else {
            eprintln!("{test}: TEST_REDIS_URL not set, skipping");
            return None;
        };
        let prefix = format!(
            "e2e-{}-{}-",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        Some(Cluster { pg, redis, prefix })
    }

    /// The settings of node `id` of this cluster.
    fn node(&self, id: &str) -> ServerBuilder {
        Server::builder()
            .set("database.url", self.pg.url())
            .set("cluster.redis_url", self.redis.as_str())
            .set("cluster.node_id", id)
            .set("cluster.prefix", self.prefix.as_str())
    }
}

/// An ffmpeg player of `url` that decodes nothing and runs until the stream ends, logging
/// into `node`'s directory as `<log>.log`.
fn player(node: &Server, name: &str, url: &str, log: &str) -> ChildGuard {
    ChildGuard::spawn(
        name,
        ffmpeg::ffmpeg()
            .args(["-v", "error", "-i", url])
            .args(["-f", "null", "-"]),
        &node.dir().join(format!("{log}.log")),
    )
}

/// Polls until `check` holds and returns how long that took; fails after 1 s, the issue's
/// bound.
fn within_a_second(what: &str, check: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    wait_until(what, Duration::from_secs(1), || check().then_some(()));
    t0.elapsed()
}

#[test]
fn configuration_changed_on_any_node_reaches_the_others_within_a_second() {
    let Some(pg) = PgSchema::create("cluster_config") else {
        return;
    };
    let nodes: Vec<Server> = (0..3)
        .map(|_| Server::builder().set("database.url", pg.url()).start())
        .collect();
    let apis: Vec<Api> = nodes.iter().map(|n| Api::new(n.http)).collect();
    let (a, b, c) = (&apis[0], &apis[1], &apis[2]);
    let mut delays = Vec::new();

    // Created on B: A and C list it with the same fields.
    b.put("streams/news", &json!({"name": "News", "tags": ["eu"]}))
        .ok(201);
    for (i, api) in [(0, a), (2, c)] {
        delays.push(within_a_second(&format!("node {i} to see news"), || {
            let r = api.get("streams/news");
            r.status == 200 && r.json["name"] == "News"
        }));
    }
    // Changed on C: A and B follow.
    c.patch("streams/news", &json!({"name": "News 24"})).ok(200);
    for (i, api) in [(0, a), (1, b)] {
        delays.push(within_a_second(
            &format!("node {i} to see the rename"),
            || api.get("streams/news").json["name"] == "News 24",
        ));
    }
    // Edited by hand in psql: every node follows.
    pg.psql(&format!(
        "UPDATE \"{}\".streams SET name = 'by hand' WHERE code = 'news'",
        pg.name
    ));
    for (i, api) in apis.iter().enumerate() {
        delays.push(within_a_second(
            &format!("node {i} to see the hand edit"),
            || api.get("streams/news").json["name"] == "by hand",
        ));
    }
    // A template made on A is known on C.
    a.put("templates/cams", &json!({"prefix": "cam-"})).ok(201);
    delays.push(within_a_second("node 2 to see the template", || {
        c.get("templates/cams").status == 200
    }));

    // Applied, not only listed: disabled on B, the stream's publisher on A is disconnected.
    let publisher = nodes[0].publish("news", Fixture::Small);
    nodes[0].wait_live("news");
    b.patch("streams/news", &json!({"disabled": true})).ok(200);
    delays.push(within_a_second(
        "the publisher on node 0 to be disconnected",
        || nodes[0].get("/live/news/mpegts").status != 200,
    ));
    drop(publisher);

    // The LISTEN sessions are cut (a PostgreSQL restart, a proxy's idle kill): each node
    // reconnects, reads everything again, and hears the next changes.
    let cut = pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%ferrocast_config%'",
    );
    assert!(
        cut.parse::<u32>().unwrap_or(0) >= 3,
        "LISTEN sessions cut: {cut}"
    );
    pg.psql(&format!(
        "UPDATE \"{}\".streams SET name = 'while deaf' WHERE code = 'news'",
        pg.name
    ));
    for (i, api) in apis.iter().enumerate() {
        wait_until(
            &format!("node {i} to catch up"),
            Duration::from_secs(5),
            || (api.get("streams/news").json["name"] == "while deaf").then_some(()),
        );
    }
    b.patch("streams/news", &json!({"name": "after"})).ok(200);
    for (i, api) in [(0, a), (2, c)] {
        delays.push(within_a_second(&format!("node {i} to hear again"), || {
            api.get("streams/news").json["name"] == "after"
        }));
    }

    // Deleted on C: gone everywhere.
    assert_eq!(c.delete("streams/news").status, 204);
    for (i, api) in [(0, a), (1, b)] {
        delays.push(within_a_second(&format!("node {i} to forget news"), || {
            api.get("streams/news").status == 404
        }));
    }
    delays.sort();
    eprintln!(
        "cluster config: {} changes seen, slowest after {:?}, median {:?}",
        delays.len(),
        delays.last().unwrap(),
        delays[delays.len() / 2]
    );
}

/// Three nodes on one PostgreSQL and one Redis (`TEST_REDIS_URL`): a stream published on A
/// plays over RTMP from B and over HLS from C (each pulls it once from A); a second publisher
/// on B is refused; a kill through C's API ends the publisher on A; when A dies (SIGKILL) B's reader ends and, once A's registration
/// expires, a publisher on C takes the code and B plays that one.
#[test]
fn a_stream_published_on_one_node_plays_from_the_others_and_has_one_publisher() {
    let Some(cluster) = Cluster::new("cluster_location") else {
        return;
    };
    let node = |id: &str| cluster.node(id).set("cluster.ttl", 2).start();
    let mut nodes = vec![node("a"), node("b"), node("c")];
    let publisher = nodes[0].publish("main", Fixture::Hd720);
    nodes[0].wait_live("main");

    let t0 = Instant::now();
    let rtmp = ffmpeg::streams(&nodes[1].rtmp_url("main"));
    let rtmp_after = t0.elapsed();
    let v = ffmpeg::stream_of(&rtmp, "video");
    assert_eq!(
        (
            v["codec_name"].as_str(),
            v["width"].as_u64(),
            v["height"].as_u64()
        ),
        (Some("h264"), Some(1280), Some(720)),
        "RTMP from node b: {v:#}"
    );
    assert_eq!(ffmpeg::stream_of(&rtmp, "audio")["codec_name"], "aac");
    let t0 = Instant::now();
    let hls = ffmpeg::streams(&nodes[2].hls_url("main"));
    let hls_after = t0.elapsed();
    let v = ffmpeg::stream_of(&hls, "video");
    assert_eq!(
        (v["codec_name"].as_str(), v["width"].as_u64()),
        (Some("h264"), Some(1280)),
        "HLS from node c: {v:#}"
    );
    assert_eq!(ffmpeg::stream_of(&hls, "audio")["codec_name"], "aac");
    // For scale: ffprobe's own probing, on the origin itself.
    let t0 = Instant::now();
    ffmpeg::streams(&nodes[0].rtmp_url("main"));
    let origin_after = t0.elapsed();
    eprintln!(
        "cluster: ffprobe read RTMP from b in {rtmp_after:?}, HLS from c in {hls_after:?} \
         (RTMP from the origin itself: {origin_after:?})"
    );

    // One publisher per code in the cluster.
    let second = run(
        ffmpeg::ffmpeg()
            .args(["-v", "error", "-re", "-t", "5", "-i"])
            .arg(Fixture::Small.path())
            .args(["-c", "copy", "-f", "flv", &nodes[1].rtmp_url("main")]),
        Duration::from_secs(30),
    );
    assert!(
        !second.success(),
        "a second publisher on node b was accepted"
    );
    nodes[1].wait_log("stream is live on node a", Duration::from_secs(5));

    // A kill sent to c's API ends the publisher on a.
    let t0 = Instant::now();
    let kill = Api::new(nodes[2].http).post("streams/main/kill", &json!({}));
    assert_eq!(kill.status, 204, "kill through node c: {}", kill.text);
    wait_until("a's publisher to end", Duration::from_secs(5), || {
        (!nodes[0].is_live("main")).then_some(())
    });
    eprintln!(
        "cluster: a kill through c ended a's publisher in {:?}",
        t0.elapsed()
    );
    drop(publisher);
    let publisher = nodes[0].publish("main", Fixture::Hd720);
    nodes[0].wait_live("main");

    // A reader on b; then a dies.
    let reader = player(
        &nodes[1],
        "reader on b",
        &nodes[1].rtmp_url("main"),
        "reader-b",
    );
    // Any node answers for the cluster: the origin, and readers per node (b's reader; on a,
    // the edges' pulls).
    let count =
        |view: &serde_json::Value, node: &str| view["readers_by_node"][node].as_u64().unwrap_or(0);
    let view = wait_until(
        "c's API to count b's reader and the edges' pulls on a",
        Duration::from_secs(10),
        || {
            let c = Api::new(nodes[2].http).stream("main")["runtime"]["cluster"].clone();
            (count(&c, "b") >= 1 && count(&c, "a") >= 1).then_some(c)
        },
    );
    assert_eq!(view["node"], "c", "{view:#}");
    assert_eq!(view["origin"], "a", "{view:#}");

    // The sessions of the whole cluster, asked of c: a's publisher and b's reader. A kick
    // sent to c ends b's reader, on b.
    let (sessions, on_b) = wait_until("c to list b's reader", Duration::from_secs(10), || {
        let all = Api::new(nodes[2].http).sessions("?stream=main");
        let on_b = all
            .iter()
            .find(|s| s["node"] == "b" && s["role"] == "reader" && s["protocol"] == "rtmp")
            .cloned();
        on_b.map(|r| (all, r))
    });
    assert!(
        sessions
            .iter()
            .any(|s| s["node"] == "a" && s["role"] == "publisher" && s["protocol"] == "rtmp"),
        "{sessions:#?}"
    );
    let here = Api::new(nodes[2].http).sessions("?stream=main&scope=node");
    assert!(here.iter().all(|s| s["node"] == "c"), "{here:#?}");
    let id = on_b["id"].as_u64().unwrap();
    let kick = Api::new(nodes[2].http).delete(&format!("sessions/{id}?node=b"));
    assert_eq!(kick.status, 204, "kick through c: {}", kick.text);
    let mut reader = reader;
    wait_until(
        "the kicked reader on b to end",
        Duration::from_secs(10),
        || (!reader.is_running()).then_some(()),
    );
    Api::new(nodes[2].http)
        .delete(&format!("sessions/{id}?node=nowhere"))
        .error(404, "NOT_FOUND", &["nowhere"]);
    // Waits until the node's own sessions (`query` narrowing them) list a reader.
    let reader_listed = |what: &str, http, query: &str| {
        wait_until(what, Duration::from_secs(10), || {
            Api::new(http)
                .sessions(query)
                .iter()
                .any(|s| s["role"] == "reader")
                .then_some(())
        })
    };
    let reader = player(
        &nodes[1],
        "reader on b",
        &nodes[1].rtmp_url("main"),
        "reader-b2",
    );
    reader_listed(
        "the new reader on b",
        nodes[1].http,
        "?stream=main&protocol=rtmp&scope=node",
    );
    // And one on c, over HTTP-FLV.
    let flv = format!("http://{}/live/main.flv", nodes[2].http);
    let mut flv_reader = player(&nodes[2], "reader on c", &flv, "reader-c");
    reader_listed("the reader on c", nodes[2].http, "?stream=main&scope=node");
    // a dies (SIGKILL): the readers on b and c end, the edges' pulls having lost their origin.
    drop(publisher);
    drop(nodes.remove(0));
    let mut reader = reader;
    wait_until(
        "the readers on b and c to end",
        Duration::from_secs(20),
        || (!reader.is_running() && !flv_reader.is_running()).then_some(()),
    );
    // c takes the code once a's registration expires (2 s); until then it refuses.
    let c_publisher = wait_until(
        "a publisher on c to take main",
        Duration::from_secs(20),
        || {
            let p = nodes[1].publish("main", Fixture::Small);
            std::thread::sleep(Duration::from_secs(2));
            nodes[1].is_live("main").then_some(p)
        },
    );
    let streams = ffmpeg::streams(&nodes[0].rtmp_url("main"));
    assert_eq!(
        ffmpeg::stream_of(&streams, "video")["width"].as_u64(),
        Some(320),
        "node b plays c's stream"
    );
    drop(c_publisher);
}

/// Every output of an edge starts the pull from the origin on its first reader: SRT, RTSP,
/// DASH, MPEG-TS over HTTP and HTTP-FLV each read a different stream of node A from node B,
/// which had none of them. A's play rules refuse every player of its own, not B's pulls and
/// fetches, which carry the cluster key; B's API shows its pulls with the key masked.
#[test]
fn every_output_of_an_edge_pulls_from_the_origin() {
    let Some(cluster) = Cluster::new("cluster_outputs") else {
        return;
    };
    let srt = free_udp_addr();
    let (rtsp, _) = free_addrs();
    // The origin admits no player of its own here, and its hooks refuse every play and drop
    // every player at each update: the edge's pulls and fetches get in by the cluster key
    // alone, and no hook hears of them.
    let hooks = crate::support::hook_server::HookServer::start();
    hooks.reply("/play", crate::support::hook_server::Reply::status(403));
    hooks.reply_with("/update", |call| {
        if call.call() == "update_play" {
            crate::support::hook_server::Reply::status(403)
        } else {
            crate::support::hook_server::Reply::ok()
        }
    });
    let a = cluster
        .node("a")
        .set("access.play_allow", "[10.0.0.0/8]")
        .set("hooks.on_play", hooks.url("/play"))
        .set("hooks.on_update", hooks.url("/update"))
        .set("hooks.on_play_done", hooks.url("/play_done"))
        .set("hooks.update_interval", 1)
        .start();
    let b = cluster
        .node("b")
        .set("srt.listen", srt)
        .set("rtsp.listen", rtsp)
        .start();
    let codes = ["s-srt", "s-rtsp", "s-dash", "s-ts", "s-flv"];
    let _publishers: Vec<_> = codes.iter().map(|c| a.publish(c, Fixture::Small)).collect();
    for c in codes {
        wait_until(&format!("{c} live on a"), Duration::from_secs(20), || {
            let r = Api::new(a.http).get(&format!("streams/{c}"));
            (r.status == 200 && r.json["runtime"]["status"] == "live").then_some(())
        });
    }
    let refused = a.get("/live/s-ts/mpegts");
    assert_eq!(refused.status, 403, "a player on the origin itself");
    let guessed = a.get("/live/s-ts/mpegts?ferrocast_cluster=0123456789abcdef0123456789abcdef");
    assert_eq!(guessed.status, 403, "a player with a made-up cluster key");
    for (code, url) in [
        ("s-srt", format!("srt://{srt}?streamid=live/s-srt")),
        ("s-rtsp", format!("rtsp://{rtsp}/live/s-rtsp")),
        ("s-dash", format!("http://{}/live/s-dash/index.mpd", b.http)),
        ("s-ts", format!("http://{}/live/s-ts/mpegts", b.http)),
        ("s-flv", format!("http://{}/live/s-flv.flv", b.http)),
    ] {
        // A caller may be turned away while the edge starts its pull (SRT answers within
        // libsrt's 3 s connect timeout, which a loaded machine can miss): players retry.
        let t0 = Instant::now();
        let mut tries = 0;
        let streams = wait_until(
            &format!("{code} from the edge"),
            Duration::from_secs(30),
            || {
                tries += 1;
                ffmpeg::try_streams(&url).ok()
            },
        );
        let v = ffmpeg::stream_of(&streams, "video");
        assert_eq!(
            (v["codec_name"].as_str(), v["width"].as_u64()),
            (Some("h264"), Some(320)),
            "{code} from the edge: {v:#}"
        );
        eprintln!(
            "cluster: {code} read from the edge in {:?} ({tries} tries)",
            t0.elapsed()
        );
    }
    let pulled = Api::new(b.http).stream("s-flv")["runtime"]["inputs"]["inputs"][0]["url"].clone();
    let url = pulled.as_str().unwrap_or_default();
    assert!(
        url.contains("ferrocast_cluster=****"),
        "the key is masked: {pulled}"
    );
    let key = run(
        std::process::Command::new("redis-cli")
            .args(["-u", &cluster.redis, "GET"])
            .arg(format!("{}key", cluster.prefix)),
        Duration::from_secs(10),
    );
    let key = key.stdout.trim();
    assert_eq!(key.len(), 32, "the cluster key in Redis: {key:?}");
    for path in ["/play", "/update", "/play_done"] {
        for call in hooks.calls(path) {
            assert!(
                call.call() != "update_play" && call.call() != "play_done",
                "a hook heard of an edge's pull: {call:#?}"
            );
            assert!(
                !call.query.contains(key) && !String::from_utf8_lossy(&call.body).contains(key),
                "a hook got the cluster key: {call:#?}"
            );
        }
    }
    for (node, log) in [("a", a.log()), ("b", b.log())] {
        assert!(
            !log.contains(key),
            "node {node}'s log shows the cluster key"
        );
    }
}

/// `GET path` from `node`, as status and body.
fn fetch(node: &Server, path: &str) -> (u16, Vec<u8>) {
    let r = crate::support::http::get(node.http, path)
        .unwrap_or_else(|e| panic!("GET {path} from {}: {e}", node.http));
    (r.status, r.body)
}

/// The same request asked of every node until they all answer alike (a playlist moves on
/// between the requests now and then): that answer.
fn same_on_every_node(nodes: &[Server], path: &str) -> Vec<u8> {
    wait_until(
        &format!("{path} to read the same on every node"),
        Duration::from_secs(10),
        || {
            let answers: Vec<_> = nodes.iter().map(|n| fetch(n, path)).collect();
            (answers[0].0 == 200 && answers.iter().all(|a| *a == answers[0]))
                .then(|| answers[0].1.clone())
        },
    )
}

/// HLS and DASH read the same on every node (the origin's own files, passed on): playlists,
/// MPD, segments and parts are byte-identical whichever node is asked, so hls.js in Chromium
/// whose every request goes to the next of the three nodes plays 30 s without a stall.
#[test]
fn hls_and_dash_are_the_same_files_on_every_node_and_a_round_robin_player_plays() {
    let Some(cluster) = Cluster::new("cluster_http") else {
        return;
    };
    let node = |id: &str| cluster.node(id).set("dash.part_duration", 0.25).start();
    let nodes = vec![node("a"), node("b"), node("c")];
    // Recorded: by its origin alone, not again by each edge that pulls it.
    Api::new(nodes[0].http)
        .put(
            "streams/rr",
            &json!({"name": "rr", "recording": {"enabled": true, "rotate_s": 2}}),
        )
        .ok(201);
    let _publisher = nodes[0].publish("rr", Fixture::Small);
    nodes[0].wait_live("rr");
    wait_until("two segments on a", Duration::from_secs(20), || {
        let (status, body) = fetch(&nodes[0], "/live/rr/index.m3u8");
        (status == 200 && String::from_utf8_lossy(&body).matches("#EXTINF").count() >= 2)
            .then_some(())
    });

    // The TS playlist, and every segment it lists, from each node.
    let playlist = String::from_utf8(same_on_every_node(&nodes, "/live/rr/index.m3u8")).unwrap();
    let segments: Vec<&str> = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(segments.len() >= 2, "{playlist}");
    for uri in &segments {
        let from_origin = fetch(&nodes[0], &format!("/live/rr/{uri}"));
        assert_eq!(from_origin.0, 200, "{uri} from a");
        for node in &nodes[1..] {
            assert!(
                fetch(node, &format!("/live/rr/{uri}")) == from_origin,
                "{uri} from {} differs from a's",
                node.http
            );
        }
    }
    // HLS over CMAF (the DASH packager's segments), its init segment and a segment.
    same_on_every_node(&nodes, "/live/rr/cmaf.m3u8");
    let cmaf = String::from_utf8(same_on_every_node(&nodes, "/live/rr/cmaf-v.m3u8")).unwrap();
    let mut files: Vec<String> = cmaf
        .lines()
        .filter_map(|l| l.split_once("#EXT-X-MAP:URI=\"").map(|(_, r)| r))
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect();
    files.extend(
        cmaf.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .take(1)
            .map(str::to_owned),
    );
    assert_eq!(files.len(), 2, "an init and a media segment: {cmaf}");
    for file in &files {
        let path = format!("/live/rr/{file}");
        let from_origin = fetch(&nodes[0], &path);
        assert_eq!(from_origin.0, 200, "{file} from a");
        assert!(fetch(&nodes[2], &path) == from_origin, "{file} from c");
    }
    // LL-HLS: a part still being written reaches a player on an edge chunk by chunk, and
    // the pieces make up the part the origin finishes.
    let media = String::from_utf8(fetch(&nodes[1], "/live/rr/cmaf-v.m3u8").1).unwrap();
    let hint = media
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no preload hint:\n{media}"))
        .to_owned();
    let path = format!("/live/rr/{hint}");
    let (pieces, first, last) = crate::support::http::read_growing(nodes[1].http, &path);
    assert!(
        pieces.len() >= 3 && last - first >= Duration::from_millis(100),
        "{} pieces through the edge, the first after {first:?}, the last after {last:?}",
        pieces.len()
    );
    assert_eq!(
        pieces.concat(),
        fetch(&nodes[0], &path).1,
        "the edge's pieces make up the origin's part"
    );
    // The MPD: the same but for the clock URL, which names the host the player reached.
    let without_clock = |node: &Server| {
        let (status, body) = fetch(node, "/live/rr/index.mpd");
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        let clock = format!("http://{}/", node.http);
        assert!(text.contains(&clock), "the clock is {clock}: {text}");
        // The inline clock is each answer's own time.
        let direct = "utc:direct:2014\" value=\"";
        let at = text.find(direct).expect("a direct clock") + direct.len();
        let end = at + text[at..].find('"').unwrap();
        format!("{}{}", &text[..at], &text[end..]).replace(&clock, "http://NODE/")
    };
    wait_until(
        "the MPD to read the same on a and b",
        Duration::from_secs(10),
        || (without_clock(&nodes[0]) == without_clock(&nodes[1])).then_some(()),
    );
    // An edge answers from its cache: nothing was pulled over RTMP for HLS or DASH.
    for node in &nodes[1..] {
        let runtime = Api::new(node.http).stream("rr")["runtime"].clone();
        assert_eq!(runtime["status"], "idle", "{runtime:#}");
    }
    // An RTMP player on b makes b pull the stream; b fans it out and records nothing.
    let streams = ffmpeg::streams(&nodes[1].rtmp_url("rr"));
    let v = ffmpeg::stream_of(&streams, "video");
    assert_eq!(v["width"].as_u64(), Some(320), "{v:#}");
    let recordings = |node: &Server| {
        Api::new(node.http).get("streams/rr/recordings").ok(200)["files"]
            .as_array()
            .map_or(0, Vec::len)
    };
    wait_until("a's recording", Duration::from_secs(10), || {
        (recordings(&nodes[0]) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        recordings(&nodes[1]),
        0,
        "the edge recorded the stream it pulls"
    );

    let Some(_browser) = crate::dash::browser_ready() else {
        return;
    };
    let bases: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.http)).collect();
    let report = crate::dash::hls_js(
        "hls.js",
        &nodes[0].hls_url("rr"),
        30,
        "default",
        &bases,
        Duration::from_secs(120),
    );
    assert_eq!(report["ok"], true, "{report:#}");
    for base in &bases {
        assert!(
            report["bases"][base].as_u64().unwrap_or(0) >= 5,
            "every node took requests: {report:#}"
        );
    }
    assert!(
        report["played"].as_f64().unwrap_or(0.0) >= 27.0,
        "{report:#}"
    );
    assert!(
        report["longestStall"].as_f64().unwrap_or(99.0) < 1.5,
        "{report:#}"
    );
    assert_eq!(report["discontinuities"], 0, "{report:#}");
    eprintln!(
        "cluster: hls.js round robin over 3 nodes: played {} s, longest stall {} s, requests {}",
        report["played"], report["longestStall"], report["bases"]
    );

    // The same in hls.js's low-latency mode: parts, blocking reloads and preload hints, each
    // request to the next node.
    let report = crate::dash::hls_js(
        "hls.js",
        &format!("http://{}/live/rr/cmaf.m3u8", nodes[0].http),
        20,
        "ll",
        &bases,
        Duration::from_secs(120),
    );
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["parts"].as_u64().unwrap_or(0) > 10
            && report["blockingReloads"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    // As in the single-node LL test: hls.js may stall once right after it starts.
    assert!(
        report["played"].as_f64().unwrap_or(0.0) >= 10.0,
        "{report:#}"
    );
    eprintln!(
        "cluster: hls.js LL round robin: played {} s, longest stall {} s, latency p50 {} s, requests {}",
        report["played"], report["longestStall"], report["latency"]["p50"], report["bases"]
    );
}
