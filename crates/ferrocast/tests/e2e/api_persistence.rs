//! Stream configuration survives restarts (SIGTERM and SIGKILL) on SQLite and PostgreSQL, and
//! a database outage fails API writes with 503 while media keeps flowing.

use crate::api::{config_of, full_stream};
use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::pg::PgSchema;
use crate::support::proc::{ChildGuard, read_lossy};
use crate::support::server::Stop;
use crate::support::{Fixture, Server, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

/// Every stream as `GET streams/{code}` shows it, without runtime state, in list order.
fn snapshot(api: &Api) -> Vec<Value> {
    let list = api.get("streams").ok(200);
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| {
            let code = s["code"].as_str().expect("code");
            let mut v = api.stream(code);
            v.as_object_mut().expect("object").remove("runtime");
            v
        })
        .collect()
}

/// Creates streams covering every field through PUT, POST and PATCH, plus one deleted.
fn create_streams(api: &Api) {
    api.put("streams/full", &full_stream("full")).ok(201);
    api.put("streams/bare", &json!({})).ok(201);
    let mut other = full_stream("other");
    other["disabled"] = json!(true);
    other["stream_key"] = Value::Null;
    other["protocols"] = json!({"hls": false, "rtmp": false, "mpegts": false});
    other["push"] = json!([{"url": "rtmps://x.example/app/k", "limit": 3}]);
    api.post("streams", &other).ok(201);
    api.patch(
        "streams/bare",
        &json!({"tags": ["patched"], "stream_key": "k-2", "protocols": {"dash": false}}),
    )
    .ok(200);
    api.put("streams/deleted", &json!({"name": "doomed"}))
        .ok(201);
    assert_eq!(api.delete("streams/deleted").status, 204);
}

#[track_caller]
fn assert_same(before: &[Value], after: &[Value], when: &str) {
    assert_eq!(
        before.len(),
        after.len(),
        "{when}: stream count {before:#?} vs {after:#?}"
    );
    for (b, a) in before.iter().zip(after) {
        assert_eq!(a, b, "{when}: stream {} differs", b["code"]);
    }
}

#[test]
fn restart_after_sigterm_keeps_every_field() {
    let mut server = Server::start();
    let api = Api::new(server.http);
    create_streams(&api);
    let before = snapshot(&api);
    let codes: Vec<&str> = before.iter().filter_map(|s| s["code"].as_str()).collect();
    assert_eq!(codes, ["bare", "full", "other"]);
    let full = &before[1];
    assert_eq!(full["has_stream_key"], true);
    assert_eq!(full["tags"], full_stream("full")["tags"]);
    assert_eq!(full["push"].as_array().map(Vec::len), Some(3));
    assert_eq!(before[2]["disabled"], true);

    server.restart(Stop::Term);
    assert_same(&before, &snapshot(&api), "after SIGTERM and restart");
    api.get("streams/deleted").error(404, "NOT_FOUND", &[]);

    // The restarted server keeps working on the loaded state.
    let v = api
        .patch("streams/full", &json!({"name": "after restart"}))
        .ok(200);
    assert_eq!(v["created_at"], before[1]["created_at"]);
    api.post("streams", &json!({"code": "full"}))
        .error(409, "ALREADY_EXISTS", &["full"]);
}

#[test]
fn kill_9_right_after_writes_keeps_them() {
    let mut server = Server::start();
    let api = Api::new(server.http);
    create_streams(&api);
    // The last write before the kill is a replace; SIGKILL follows its answer at once.
    api.put("streams/last", &full_stream("last")).ok(201);
    api.put(
        "streams/last",
        &json!({"name": "replaced", "protocols": {"mpegts": false}}),
    )
    .ok(200);
    let before = snapshot(&api);
    server.restart(Stop::Kill);
    assert_same(&before, &snapshot(&api), "after SIGKILL and restart");

    // A delete right before a kill stays deleted.
    assert_eq!(api.delete("streams/last").status, 204);
    server.restart(Stop::Kill);
    api.get("streams/last").error(404, "NOT_FOUND", &[]);
    assert_eq!(snapshot(&api).len(), before.len() - 1);
}

#[test]
fn postgres_crud_and_restart() {
    let Some(pg) = PgSchema::create("crud") else {
        return;
    };
    let mut server = Server::builder().set("database.url", pg.url()).start();
    let health = server.get("/healthz").text();
    assert!(health.contains("postgres"), "/healthz: {health}");
    let api = Api::new(server.http);
    create_streams(&api);
    api.post("streams", &json!({"code": "full"}))
        .error(409, "ALREADY_EXISTS", &["full"]);
    let before = snapshot(&api);
    assert_eq!(before.len(), 3);
    // The rows are in this test's schema and nowhere else.
    assert_eq!(
        pg.psql(&format!(
            "SELECT string_agg(code, ',' ORDER BY code) FROM \"{}\".streams",
            pg.name
        )),
        "bare,full,other"
    );

    server.restart(Stop::Term);
    assert_same(
        &before,
        &snapshot(&api),
        "PostgreSQL, after SIGTERM and restart",
    );
    api.put("streams/k9", &json!({"name": "k9"})).ok(201);
    server.restart(Stop::Kill);
    assert_eq!(api.stream("k9")["name"], "k9", "PostgreSQL, after SIGKILL");
}

/// Writes fail with 503 while the table is gone; reads, publishing and playing carry on.
#[test]
fn postgres_outage_fails_writes_with_503_while_media_flows() {
    let Some(pg) = PgSchema::create("outage") else {
        return;
    };
    let server = Server::builder().set("database.url", pg.url()).start();
    let api = Api::new(server.http);
    api.put("streams/live", &json!({"name": "live", "stream_key": "k"}))
        .ok(201);
    let mut publisher = server.publish("live?key=k", Fixture::Small);
    server.wait_playlist("live", "a segment", Duration::from_secs(30), |p| {
        !p.segments.is_empty()
    });
    let progress = server.dir().join("player.progress");
    let mut player = ChildGuard::spawn(
        "RTMP player",
        ffmpeg::ffmpeg()
            .args([
                "-i",
                &server.rtmp_url("live"),
                "-f",
                "null",
                "-",
                "-nostats",
            ])
            .arg("-progress")
            .arg(&progress),
        &server.dir().join("player.log"),
    );
    let frames = || ffmpeg::parse_progress(&read_lossy(&progress)).0;
    wait_until("the player to decode", Duration::from_secs(15), || {
        (frames() > 0).then_some(())
    });
    let before = api.stream("live");

    // The outage: every statement on the streams table now fails.
    pg.psql(&format!("DROP TABLE \"{}\".streams", pg.name));
    let body = json!({"name": "x"});
    let writes = [
        api.put("streams/new", &body),
        api.put("streams/live", &body),
        api.post("streams", &json!({"code": "new2"})),
        api.patch("streams/live", &json!({"disabled": true})),
        api.delete("streams/live"),
    ];
    for r in &writes {
        r.error(503, "UNAVAILABLE", &["database"]);
    }

    // Nothing changed, reads still answer from memory, and media never stopped.
    let after = api.stream("live");
    assert_eq!(
        config_of(&after),
        config_of(&before),
        "a failed write changed the stream"
    );
    assert_eq!(after["runtime"]["status"], "live");
    api.get("streams/new").error(404, "NOT_FOUND", &[]);
    assert_eq!(api.get("streams").ok(200)["total"], 1);
    let n = frames();
    wait_until(
        "the player to keep decoding",
        Duration::from_secs(10),
        || (frames() > n + 15).then_some(()),
    );
    assert!(player.is_running(), "the player exited during the outage");
    publisher.assert_running("during the database outage");
    let last = server
        .playlist("live")
        .and_then(|p| p.last_seq())
        .expect("playlist");
    server.wait_playlist("live", "HLS to advance", Duration::from_secs(10), |p| {
        p.last_seq().is_some_and(|s| s > last)
    });
    assert_eq!(
        server.get("/healthz").status,
        200,
        "media is healthy through an outage"
    );
}
