//! Templates and the rest of the publisher-service API, against the real binary: a publish
//! with ffmpeg to an unknown code matching a template's prefix gets the template's output
//! switches and push (to a second path of the same gateway), shows as a runtime stream naming
//! its template, survives the template's deletion and is reaped once idle; streams created
//! from templates and `POST /streams/{code}` create-or-merge; `GET /api/v1/config` with every
//! secret set; and the API reference at `/api/docs` (in Chromium when it is installed).

use crate::dash::browser_ready;
use crate::support::api::Api;
use crate::support::proc::run;
use crate::support::{Fixture, Server, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "templates-e2e-token";

/// `GET streams/{code}` once it answers 200 and `ok` accepts it.
#[track_caller]
fn wait_stream(api: &Api, code: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_until(
        &format!("stream {code}: {what}"),
        Duration::from_secs(30),
        || {
            let r = api.get(&format!("streams/{code}"));
            (r.status == 200 && ok(&r.json)).then_some(r.json)
        },
    )
}

#[test]
fn a_publish_to_a_template_prefix_gets_its_settings_and_is_reaped_when_idle() {
    // auto_create off: only the template's prefix lets an unknown code in.
    let server = Server::builder()
        .set("ingest.auto_create", false)
        .set("ingest.runtime_idle", 3)
        .set("dash.enabled", false)
        .start();
    let api = Api::new(server.http);
    // The push target: a configured stream on the same gateway.
    api.put("streams/relay", &json!({})).ok(201);
    let push_url = format!("rtmp://{}/live/relay", server.rtmp);
    let t = api
        .post(
            "templates",
            &json!({
                "name": "cams",
                "prefix": "cam-",
                "description": "east wing",
                "tags": ["e2e"],
                "protocols": {"hls": false, "srt": false},
                "push": [{"url": push_url, "timeout_s": 5, "retry": {"initial_s": 0.5, "max_s": 2}}],
                "failover": {"packet_timeout_s": 5},
            }),
        )
        .ok(201);
    assert_eq!(t["prefix"], "cam-");
    assert_eq!(
        t["push"][0]["url"],
        format!("rtmp://{}/live/****", server.rtmp),
        "push URLs are write-only on templates too"
    );

    let mut publisher = server.publish("cam-lobby", Fixture::Small);
    server.wait_live("cam-lobby");
    let s = wait_stream(&api, "cam-lobby", "push active", |s| {
        s["runtime"]["pushes"][0]["status"] == "active"
    });
    assert_eq!(s["persistent"], false, "{s:#}");
    assert_eq!(s["template"], "cams");
    assert_eq!(s["protocols"]["hls"], false);
    assert_eq!(s["protocols"]["srt"], false);
    assert_eq!(s["protocols"]["rtmp"], true);
    assert_eq!(s["tags"], json!(["e2e"]));
    assert_eq!(s["failover"]["packet_timeout_s"], 5.0);
    assert_eq!(
        s["push"][0]["url"],
        format!("rtmp://{}/live/****", server.rtmp)
    );
    assert_eq!(s["runtime"]["status"], "live");
    // The push arrives: the relay stream goes live from the runtime stream's worker.
    server.wait_live("relay");
    // The template's switches hold: no HLS for this stream, MPEG-TS yes.
    let hls = server.get("/live/cam-lobby/index.m3u8");
    assert!(
        hls.status == 403 || hls.status == 404,
        "HLS answered {}",
        hls.status
    );
    // Listed as a runtime stream, and on the template.
    let list = api.get("streams").ok(200);
    let row = list["data"]
        .as_array()
        .and_then(|d| d.iter().find(|s| s["code"] == "cam-lobby"))
        .cloned()
        .unwrap_or_else(|| panic!("cam-lobby not listed: {list:#}"));
    assert_eq!(
        (&row["persistent"], &row["template"]),
        (&json!(false), &json!("cams"))
    );
    assert_eq!(
        api.get("templates/cams").ok(200)["runtime_streams"],
        json!(["cam-lobby"])
    );
    // Not stored: the configured list is the relay alone.
    let configured: Vec<&Value> = list["data"]
        .as_array()
        .map(|d| d.iter().filter(|s| s["persistent"] == true).collect())
        .unwrap_or_default();
    assert_eq!(configured.len(), 1, "{list:#}");

    // Deleting the template leaves the stream as it is.
    api.delete("templates/cams").ok(204);
    let s = api.stream("cam-lobby");
    assert_eq!(
        (&s["template"], &s["protocols"]["hls"]),
        (&json!("cams"), &json!(false))
    );
    assert_eq!(s["runtime"]["pushes"][0]["status"], "active");

    // Publisher gone: reaped after ingest.runtime_idle (3 s), not at once.
    publisher.stop();
    let left = Instant::now();
    wait_until("cam-lobby reaped", Duration::from_secs(15), || {
        (api.get("streams/cam-lobby").status == 404).then_some(())
    });
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "reaped {:?} after the publisher left",
        left.elapsed()
    );
    server.wait_log("idle runtime stream reaped", Duration::from_secs(5));
    // The relay is configured: it stays.
    api.get("streams/relay").ok(200);
}

#[test]
fn streams_start_from_templates_and_post_to_a_code_creates_or_merges() {
    let server = Server::builder()
        .set("hls.enabled", false)
        .set("dash.enabled", false)
        .start();
    let api = Api::new(server.http);
    let push = "rtmp://backup.example/live/tpl-push-s3cret";
    api.put(
        "templates/studio",
        &json!({
            "protocols": {"dash": false},
            "push": [{"url": push}],
            "stream_key": "tpl-Key_123",
            "tags": ["studio"],
        }),
    )
    .ok(201);
    let t = api.get("templates/studio").ok(200);
    assert_eq!(t["has_stream_key"], true);
    assert!(!t.to_string().contains("s3cret") && !t.to_string().contains("tpl-Key"));

    // POST /streams with a template: what the body omits comes from it.
    let s = api
        .post(
            "streams",
            &json!({"code": "s1", "template": "studio", "name": "Studio 1", "tags": ["own"]}),
        )
        .ok(201);
    assert_eq!(s["name"], "Studio 1");
    assert_eq!(s["tags"], json!(["own"]), "given fields win");
    assert_eq!(s["protocols"]["dash"], false);
    assert_eq!(s["has_stream_key"], true);
    assert_eq!(s["push"][0]["url"], "rtmp://backup.example/live/****");
    assert_eq!(s["persistent"], true);
    assert!(s.get("template").is_none(), "only runtime streams name one");
    api.post("streams", &json!({"code": "s2", "template": "nope"}))
        .error(422, "VALIDATION_FAILED", &["template"]);
    // Without a template POST /streams is what it was: defaults, and 409 on a taken code.
    let plain = api.post("streams", &json!({"code": "s2"})).ok(201);
    assert_eq!(plain["protocols"]["dash"], true);
    api.post("streams", &json!({"code": "s2"}))
        .error(409, "ALREADY_EXISTS", &[]);

    // POST /streams/{code}: 201 on create, 200 on merge (omitted fields kept).
    let created = api.post("streams/s3", &json!({"name": "Three"})).ok(201);
    assert_eq!(created["name"], "Three");
    let merged = api
        .post(
            "streams/s3",
            &json!({"description": "merged", "protocols": {"rtsp": false}}),
        )
        .ok(200);
    assert_eq!(
        (&merged["name"], &merged["description"]),
        (&json!("Three"), &json!("merged"))
    );
    assert_eq!(
        (&merged["protocols"]["rtsp"], &merged["protocols"]["hls"]),
        (&json!(false), &json!(true))
    );
    // Naming a template on an existing stream applies its settings, then the body's.
    let applied = api
        .post(
            "streams/s3",
            &json!({"template": "studio", "protocols": {"hls": false}}),
        )
        .ok(200);
    assert_eq!(applied["name"], "Three");
    assert_eq!(applied["push"][0]["url"], "rtmp://backup.example/live/****");
    assert_eq!(
        (&applied["protocols"]["dash"], &applied["protocols"]["hls"]),
        (&json!(false), &json!(false))
    );
    // A masked URL sent back keeps the destination.
    let again = api
        .post("streams/s3", &json!({"push": applied["push"].clone()}))
        .ok(200);
    assert_eq!(again["push"], applied["push"]);
    api.post("streams/s4", &json!({"code": "other"}))
        .error(400, "INVALID_CODE", &["code"]);
    // Open-Streamer's endpoint drops unknown fields (its clients send some); ours refuse them.
    api.post("streams/s4", &json!({"bogus": 1})).ok(201);
    api.patch("streams/s4", &json!({"bogus": 1}))
        .error(400, "INVALID_BODY", &["bogus"]);

    // Template CRUD rules.
    api.post("templates", &json!({"name": "studio"}))
        .error(409, "ALREADY_EXISTS", &[]);
    api.put("templates/cams", &json!({"prefix": "cam-"}))
        .ok(201);
    api.post("templates", &json!({"name": "thief", "prefix": "cam-"}))
        .error(409, "PREFIX_OVERLAP", &["prefix", "cams"]);
    api.post("templates", &json!({"name": "bad", "prefix": "no//slash"}))
        .error(400, "INVALID_PREFIX", &["prefix"]);
    api.post(
        "templates",
        &json!({"name": "pull", "prefix": "p-", "inputs": [{"url": "rtsp://cam.example/1"}]}),
    )
    .error(422, "INVALID_PREFIX", &["prefix"]);
    api.post(
        "templates",
        &json!({"name": "badpush", "push": [{"url": "http://x/y/z"}]}),
    )
    .error(400, "VALIDATION_FAILED", &["push[0].url"]);
    let patched = api
        .patch(
            "templates/cams",
            &json!({"prefix": null, "description": "now manual"}),
        )
        .ok(200);
    assert_eq!(
        (&patched["prefix"], &patched["description"]),
        (&Value::Null, &json!("now manual"))
    );
    let list = api.get("templates").ok(200);
    assert_eq!(list["total"], 2);
    api.delete("templates/studio").ok(204);
    api.get("templates/studio")
        .error(404, "NOT_FOUND", &["studio"]);
    // Streams made from it keep what they copied.
    let s1 = api.stream("s1");
    assert_eq!(
        (&s1["has_stream_key"], &s1["protocols"]["dash"]),
        (&json!(true), &json!(false))
    );

    // Persisted: a restart loads templates back.
    server_restart_keeps_templates(server);
}

fn server_restart_keeps_templates(mut server: Server) {
    server.restart(crate::support::server::Stop::Term);
    let api = Api::new(server.http);
    let list = api.get("templates").ok(200);
    assert_eq!(list["total"], 1, "{list:#}");
    assert_eq!(list["data"][0]["name"], "cams");
    assert_eq!(list["data"][0]["description"], "now manual");
}

fn docs_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/apidocs.mjs")
}

#[test]
fn config_is_shown_without_secrets_and_the_api_reference_is_served() {
    let secrets = [
        "srt-passphrase-s3cret",
        "jwt-s3cret",
        "redis-pw-s3cret",
        "hook-q-s3cret",
        "cb-q-s3cret",
    ];
    let server = Server::builder()
        .set("api.token", TOKEN)
        .set("srt.passphrase", secrets[0])
        // AgustinSRG's names, as its users set them.
        .env("CALLBACK_URL", "http://127.0.0.1:9/cb?sig=cb-q-s3cret")
        .env("JWT_SECRET", secrets[1])
        .env("REDIS_USE", "YES")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", "9")
        .env("REDIS_PASSWORD", secrets[2])
        .set(
            "hooks.on_play_done",
            "http://127.0.0.1:9/done?token=hook-q-s3cret",
        )
        .set("ingest.runtime_idle", 7)
        .start();
    let anon = Api::new(server.http);
    anon.get("config").error(401, "UNAUTHORIZED", &[]);
    let api = anon.with_token(TOKEN);
    let r = api.get("config");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let c = r.ok(200);
    let text = c.to_string();
    for secret in secrets.iter().chain([&TOKEN]) {
        assert!(!text.contains(secret), "{secret} in /api/v1/config: {c:#}");
    }
    assert_eq!(c["api"]["token"], "***");
    assert_eq!(c["srt"]["passphrase"], "***");
    assert_eq!(c["callback"]["jwt_secret"], "***");
    assert_eq!(c["redis"]["url"], "redis://:***@127.0.0.1:9");
    // The effective values, environment applied.
    assert_eq!(c["http"]["listen"], server.http.to_string());
    assert_eq!(c["ingest"]["runtime_idle"], 7.0);
    assert!(!server.log().contains(TOKEN));

    // The reference page and what it loads, without the token (the files are public).
    let page = server.get("/api/docs");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'self'"))
    );
    for (path, ctype, min) in [
        (
            "/vendor/swagger-ui/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
            1_000_000,
        ),
        (
            "/vendor/swagger-ui/swagger-ui.css",
            "text/css; charset=utf-8",
            100_000,
        ),
        ("/js/api-docs.js", "text/javascript; charset=utf-8", 100),
        ("/api/docs/openapi.json", "application/json", 10_000),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert!(r.body.len() >= min, "{path}: {} bytes", r.body.len());
    }
    let doc: Value = serde_json::from_slice(&server.get("/api/docs/openapi.json").body).unwrap();
    let served = api.get("openapi.json").ok(200);
    assert_eq!(doc, served, "one document");
    for path in [
        "/api/v1/templates",
        "/api/v1/templates/{name}",
        "/api/v1/config",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }

    let Some(_browser) = browser_ready() else {
        return;
    };
    let out = run(
        Command::new("node")
            .arg(docs_script())
            .arg("--base")
            .arg(format!("http://{}", server.http))
            .arg("--token")
            .arg(TOKEN),
        Duration::from_secs(120),
    );
    let report: Value = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    assert!(
        out.success() && report["ok"] == true,
        "API reference in Chromium failed ({:?}):\n{}\n{}",
        out.status,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
        out.stderr
    );
}
