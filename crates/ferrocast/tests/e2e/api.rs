//! The REST API over real HTTP without media: CRUD, every error status with its JSON shape,
//! the bearer token, the OpenAPI document and the request counters in `/metrics`.

use crate::support::Server;
use crate::support::api::Api;
use crate::support::http;
use crate::support::proc::run;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// A stream with every field set to something other than its default.
pub fn full_stream(code: &str) -> Value {
    json!({
        "code": code,
        "name": "Main camera",
        "description": "line one\nline two, with \"quotes\" and 'apostrophes'",
        "tags": ["news", "Käse 🧀", "日本語"],
        "stream_key": "s3cr3t-key_1.~",
        "disabled": false,
        "protocols": {"hls": true, "dash": false, "rtmp": true, "srt": false, "rtsp": false, "mpegts": true},
        "push": [
            {"url": "rtmp://a.example/live2/primary-key", "comment": "primary"},
            {
                "url": "rtmps://b.example:443/app/second-key?x=1",
                "enabled": false,
                "timeout_s": 3,
                "retry": {"initial_s": 0.5, "max_s": 120.25},
                "limit": 7,
                "comment": "backup"
            },
            {"url": "rtmp://c.example:1936/app/third", "timeout_s": 300, "retry": {"initial_s": 2, "max_s": 2}}
        ]
    })
}

/// The configuration part of a stream view: what a client set, without timestamps and
/// runtime state.
pub fn config_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("runtime");
        o.remove("created_at");
        o.remove("updated_at");
    }
    v
}

#[test]
fn put_creates_then_replaces_keeping_created_at() {
    let server = Server::start();
    let api = Api::new(server.http);

    let created = api
        .put(
            "streams/cam",
            &json!({"name": "Cam", "tags": ["a"], "protocols": {"dash": false}}),
        )
        .ok(201);
    assert_eq!(created["code"], "cam");
    assert_eq!(created["name"], "Cam");
    assert_eq!(created["tags"], json!(["a"]));
    assert_eq!(created["persistent"], true);
    assert_eq!(created["has_stream_key"], false);
    assert_eq!(created["disabled"], false);
    assert_eq!(
        created["protocols"],
        json!({"hls": true, "dash": false, "rtmp": true, "srt": true, "rtsp": true, "mpegts": true}),
        "omitted switches are on"
    );
    assert_eq!(created["runtime"]["status"], "idle");
    assert_eq!(created["created_at"], created["updated_at"], "{created:#}");
    let created_at = created["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    assert_eq!(api.stream("cam"), created, "GET after PUT");

    // A code in the body must match the path.
    api.put("streams/cam", &json!({"code": "other"}))
        .error(400, "INVALID_CODE", &["code"]);

    let replaced = api
        .put(
            "streams/cam",
            &json!({"code": "cam", "name": "Cam 2", "description": "d"}),
        )
        .ok(200);
    assert_eq!(replaced["name"], "Cam 2");
    assert_eq!(replaced["description"], "d");
    assert_eq!(
        replaced["tags"],
        json!([]),
        "PUT replaces: omitted tags empty"
    );
    assert_eq!(
        replaced["protocols"]["dash"], true,
        "PUT replaces: dash on again"
    );
    assert_eq!(
        replaced["created_at"],
        created_at.as_str(),
        "created_at kept"
    );
    let updated_at = replaced["updated_at"].as_str().expect("updated_at");
    assert!(
        updated_at > created_at.as_str(),
        "updated_at {updated_at} not after created_at {created_at}"
    );
    assert_eq!(api.stream("cam"), replaced, "GET after replace");
}

#[test]
fn post_creates_and_conflicts() {
    let server = Server::start();
    let api = Api::new(server.http);

    let v = api
        .post("streams", &json!({"code": "new-1", "name": "first"}))
        .ok(201);
    assert_eq!(v["code"], "new-1");
    assert_eq!(v["name"], "first");
    assert_eq!(v["persistent"], true);

    api.post("streams", &json!({"code": "new-1", "name": "intruder"}))
        .error(409, "ALREADY_EXISTS", &["new-1"]);
    assert_eq!(
        api.stream("new-1")["name"],
        "first",
        "a conflict changes nothing"
    );

    api.post("streams", &json!({"name": "no code"}))
        .error(400, "INVALID_CODE", &["code"]);
    api.post("streams", &json!({"code": "bad code"}))
        .error(400, "INVALID_CODE", &["code"]);
    let list = api.get("streams").ok(200);
    assert_eq!(list["total"], 1, "{list:#}");
}

#[test]
fn secrets_are_write_only_in_get_one_and_in_lists() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/full", &full_stream("full")).ok(201);
    api.put("streams/bare", &json!({})).ok(201);

    let one = api.stream("full");
    assert!(
        one.get("stream_key").is_none(),
        "the key is write-only: {one:#}"
    );
    assert_eq!(one["has_stream_key"], true);
    let urls: Vec<&str> = one["push"]
        .as_array()
        .expect("push")
        .iter()
        .map(|p| p["url"].as_str().expect("url"))
        .collect();
    assert_eq!(
        urls,
        [
            "rtmp://a.example/live2/****",
            "rtmps://b.example:443/app/****?****",
            "rtmp://c.example:1936/app/****"
        ],
        "GET one masks push URLs too"
    );

    let list = api.get("streams");
    let text = list.text.clone();
    let list = list.ok(200);
    assert_eq!(list["total"], 2, "{list:#}");
    let data = list["data"].as_array().expect("data");
    let codes: Vec<&str> = data.iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["bare", "full"], "list ordered by code");
    let full = &data[1];
    assert!(
        full.get("stream_key").is_none(),
        "a list must not carry stream_key: {full:#}"
    );
    assert_eq!(full["has_stream_key"], true);
    let masked: Vec<&str> = full["push"]
        .as_array()
        .expect("push")
        .iter()
        .map(|p| p["url"].as_str().expect("url"))
        .collect();
    assert_eq!(
        masked,
        [
            "rtmp://a.example/live2/****",
            "rtmps://b.example:443/app/****?****",
            "rtmp://c.example:1936/app/****"
        ]
    );
    for secret in ["s3cr3t", "primary-key", "second-key", "third"] {
        assert!(!text.contains(secret), "the list leaks {secret:?}: {text}");
    }
    // Apart from the key and the URLs the list shows what GET one shows.
    assert_eq!(
        full["push"][1]["retry"],
        json!({"initial_s": 0.5, "max_s": 120.25})
    );
    assert_eq!(full["tags"], one["tags"]);
    assert!(data[0].get("stream_key").is_none());
    assert_eq!(data[0]["has_stream_key"], false);
}

#[test]
fn patch_keeps_omitted_fields_and_null_clears_the_key() {
    let server = Server::start();
    let api = Api::new(server.http);
    let before = api.put("streams/p", &full_stream("p")).ok(201);

    let after = api.patch("streams/p", &json!({"name": "renamed"})).ok(200);
    let mut want = config_of(&before);
    want["name"] = json!("renamed");
    assert_eq!(config_of(&after), want, "PATCH name changed something else");
    assert_eq!(after["created_at"], before["created_at"]);
    assert!(after["updated_at"].as_str() > before["updated_at"].as_str());

    // A partial protocols object changes only the named switch.
    let after = api
        .patch("streams/p", &json!({"protocols": {"hls": false}}))
        .ok(200);
    want["protocols"]["hls"] = json!(false);
    assert_eq!(config_of(&after), want, "PATCH protocols.hls");

    // null removes the key; omitted keeps it.
    let after = api.patch("streams/p", &json!({"stream_key": null})).ok(200);
    assert!(after.get("stream_key").is_none(), "{after:#}");
    assert_eq!(after["has_stream_key"], false);
    let got = api.stream("p");
    assert!(got.get("stream_key").is_none(), "{got:#}");
    want.as_object_mut().unwrap().remove("stream_key");
    want["has_stream_key"] = json!(false);
    assert_eq!(config_of(&got), want, "after clearing the key");

    // The push list is replaced as a whole.
    let after = api
        .patch(
            "streams/p",
            &json!({"push": [{"url": "rtmp://d.example/app/k"}]}),
        )
        .ok(200);
    assert_eq!(
        after["push"],
        json!([{"url": "rtmp://d.example/app/****", "enabled": true, "timeout_s": 10,
                "retry": {"initial_s": 1.0, "max_s": 30.0}, "limit": 0, "comment": "", "rendition": ""}]),
        "push defaults"
    );

    api.patch("streams/nobody", &json!({"name": "x"}))
        .error(404, "NOT_FOUND", &["nobody"]);
}

#[test]
fn delete_then_404_and_unknown_api_routes_are_404_json() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/gone", &json!({"name": "x"})).ok(201);

    let r = api.delete("streams/gone");
    assert_eq!(r.status, 204, "DELETE: {}", r.text);
    assert!(r.text.is_empty(), "204 with a body: {:?}", r.text);
    api.get("streams/gone").error(404, "NOT_FOUND", &["gone"]);
    api.delete("streams/gone")
        .error(404, "NOT_FOUND", &["gone"]);
    assert_eq!(api.get("streams").ok(200)["total"], 0);

    for path in [
        "nope",
        "streams/a/b",
        "sessions/1/2",
        "streamz?status=live",
        "streams/",
    ] {
        api.get(path).error(404, "NOT_FOUND", &[]);
    }
    api.call("POST", "nope", Some(&json!({})))
        .error(404, "NOT_FOUND", &[]);
}

/// The API root with a trailing slash is an unknown route under /api/v1 like any other: a
/// JSON 404, counted in `/metrics`.
#[test]
fn api_root_with_trailing_slash_is_a_json_404() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.get("/api/v1").error(404, "NOT_FOUND", &[]);
    api.get("/api/v1/").error(404, "NOT_FOUND", &[]);
}

#[test]
fn list_filter_rejects_a_bogus_status() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/a", &json!({})).ok(201);
    assert_eq!(api.get("streams?status=idle").ok(200)["total"], 1);
    assert_eq!(api.get("streams?status=live").ok(200)["total"], 0);
    api.get("streams?status=bogus")
        .error(400, "INVALID_QUERY", &["status", "bogus"]);
    api.get("sessions?bogus=1")
        .error(400, "INVALID_QUERY", &["bogus"]);
    assert_eq!(api.sessions("?stream=a&protocol=rtmp").len(), 0);
}

#[test]
fn malformed_bodies_are_400_naming_the_field() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/s", &json!({})).ok(201);

    // Wrong types, on PUT, POST and PATCH, top-level and nested.
    api.put("streams/s", &json!({"disabled": "yes"}))
        .error(400, "INVALID_BODY", &["disabled"]);
    api.post("streams", &json!({"code": "t", "tags": "news"}))
        .error(400, "INVALID_BODY", &["tags"]);
    api.patch("streams/s", &json!({"protocols": {"hls": 1}}))
        .error(400, "INVALID_BODY", &["hls"]);
    api.patch(
        "streams/s",
        &json!({"push": [{"url": "rtmp://h/a/b", "timeout_s": -1}]}),
    )
    .error(400, "INVALID_BODY", &["timeout_s"]);

    // Unknown fields, top-level and nested.
    api.put("streams/s", &json!({"nmae": "typo"}))
        .error(400, "INVALID_BODY", &["nmae"]);
    api.patch("streams/s", &json!({"protocols": {"webrtc": true}}))
        .error(400, "INVALID_BODY", &["webrtc"]);
    api.post(
        "streams",
        &json!({"code": "t", "push": [{"url": "rtmp://h/a/b", "retry": {"jitter": 1}}]}),
    )
    .error(400, "INVALID_BODY", &["jitter"]);

    // Invalid code in the path, on every method.
    let long = "a".repeat(129);
    for path in ["streams/bad%20code".to_owned(), format!("streams/{long}")] {
        api.get(&path).error(400, "INVALID_CODE", &["code"]);
        api.put(&path, &json!({}))
            .error(400, "INVALID_CODE", &["code"]);
        api.patch(&path, &json!({}))
            .error(400, "INVALID_CODE", &["code"]);
        api.delete(&path).error(400, "INVALID_CODE", &["code"]);
    }
    // 128 characters is still a valid code.
    api.put(&format!("streams/{}", &long[..128]), &json!({}))
        .ok(201);

    // A push URL that is not rtmp(s):// is malformed (400), on PUT and PATCH.
    api.put("streams/s", &json!({"push": [{"url": "http://h/app/key"}]}))
        .error(400, "VALIDATION_FAILED", &["push[0].url", "rtmp"]);
    api.patch(
        "streams/s",
        &json!({"push": [{"url": "rtmp://h/app/k"}, {"url": "srt://h:1/x/y"}]}),
    )
    .error(400, "VALIDATION_FAILED", &["push[1].url"]);

    // Malformed JSON.
    let r = api.raw(
        "PUT",
        "streams/s",
        &[("Content-Type", "application/json")],
        Some(b"{\"name\": "),
    );
    r.error(400, "INVALID_BODY", &[]);

    // Nothing above changed the stream.
    let s = api.stream("s");
    assert_eq!(s["name"], "");
    assert_eq!(s["push"], json!([]));
}

#[test]
fn rule_violations_are_422_naming_the_field_and_change_nothing() {
    let server = Server::start();
    let api = Api::new(server.http);
    let before = api.put("streams/s", &full_stream("s")).ok(201);

    let push = |p: Value| json!({"push": [p]});
    let cases: [(Value, &str); 8] = [
        (
            push(json!({"url": "rtmp://h/app/k", "timeout_s": 0})),
            "push[0].timeout_s",
        ),
        (
            push(json!({"url": "rtmp://h/app/k", "timeout_s": 301})),
            "push[0].timeout_s",
        ),
        (
            push(json!({"url": "rtmp://h/app/k", "retry": {"initial_s": 5, "max_s": 2}})),
            "push[0].retry.max_s",
        ),
        (
            push(json!({"url": "rtmp://h/app/k", "retry": {"initial_s": 0}})),
            "push[0].retry.initial_s",
        ),
        (json!({"name": "n".repeat(300)}), "name"),
        (json!({"stream_key": "has space"}), "stream_key"),
        (json!({"stream_key": ""}), "stream_key"),
        (json!({"tags": ["ok", ""]}), "tags[1]"),
    ];
    for (body, field) in &cases {
        api.put("streams/s", body)
            .error(422, "VALIDATION_FAILED", &[field]);
        api.patch("streams/s", body)
            .error(422, "VALIDATION_FAILED", &[field]);
        let mut post = body.clone();
        post["code"] = json!("fresh");
        api.post("streams", &post)
            .error(422, "VALIDATION_FAILED", &[field]);
    }
    api.put(
        "streams/s",
        &json!({"push": [{"url": "rtmp://h/app/k"}, {"url": "rtmp://h/app/k"}]}),
    )
    .error(422, "VALIDATION_FAILED", &["push[1].url", "duplicate"]);

    assert_eq!(
        api.stream("s"),
        before,
        "a refused write changed the stream"
    );
    api.get("streams/fresh").error(404, "NOT_FOUND", &[]);
}

#[test]
fn body_without_json_content_type_is_415_and_oversized_body_is_413() {
    let server = Server::start();
    let api = Api::new(server.http);
    api.put("streams/s", &json!({})).ok(201);
    let body = br#"{"name": "x"}"#;

    for headers in [
        &[][..],
        &[("Content-Type", "text/plain")][..],
        &[("Content-Type", "application/x-www-form-urlencoded")][..],
    ] {
        for (method, path) in [
            ("PUT", "streams/s"),
            ("PATCH", "streams/s"),
            ("POST", "streams"),
        ] {
            api.raw(method, path, headers, Some(body)).error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                &["Content-Type", "application/json"],
            );
        }
    }
    // A JSON type with parameters is still JSON.
    api.raw(
        "PATCH",
        "streams/s",
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(body),
    )
    .ok(200);

    // 100 KB: over the 64 KiB limit.
    let big = json!({"name": "n", "description": "x".repeat(100 << 10)}).to_string();
    for (method, path) in [
        ("PUT", "streams/s"),
        ("PATCH", "streams/s"),
        ("POST", "streams"),
    ] {
        api.raw(
            method,
            path,
            &[("Content-Type", "application/json")],
            Some(big.as_bytes()),
        )
        .error(413, "BODY_TOO_LARGE", &["bytes"]);
    }
    assert_eq!(api.stream("s")["name"], "x");
}

#[test]
fn token_guards_every_api_route_and_metrics_but_not_media_or_health() {
    let token = "e2e-secret-token";
    let server = Server::builder().set("api.token", token).start();
    let anon = Api::new(server.http);
    let wrong = anon.with_token("e2e-secret-tokeN");
    let prefix = anon.with_token("e2e-secret");
    let good = anon.with_token(token);

    let body = json!({"name": "x"});
    let calls: [(&str, &str, Option<&Value>); 11] = [
        ("GET", "streams", None),
        ("POST", "streams", Some(&body)),
        ("GET", "streams/a", None),
        ("PUT", "streams/a", Some(&body)),
        ("PATCH", "streams/a", Some(&body)),
        ("DELETE", "streams/a", None),
        ("GET", "sessions", None),
        ("DELETE", "sessions/1", None),
        ("GET", "openapi.json", None),
        ("GET", "nope", None),
        ("GET", "streams?status=bogus", None),
    ];
    for (method, path, body) in calls {
        for client in [&anon, &wrong, &prefix] {
            let r = client.call(method, path, body);
            r.error(401, "UNAUTHORIZED", &["token"]);
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer"),
                "{method} {path}: 401 without WWW-Authenticate: Bearer"
            );
        }
        // Other schemes and a bare token are not a bearer token.
        for auth in [
            format!("Basic {token}"),
            token.to_owned(),
            format!("bearer{token}"),
        ] {
            anon.raw(method, path, &[("Authorization", &auth)], None)
                .error(401, "UNAUTHORIZED", &[]);
        }
    }
    // Nothing was created by the refused calls.
    assert_eq!(good.get("streams").ok(200)["total"], 0);

    // With the token every route works.
    good.put("streams/a", &body).ok(201);
    good.post("streams", &json!({"code": "b"})).ok(201);
    good.get("streams/a").ok(200);
    good.patch("streams/a", &json!({"name": "y"})).ok(200);
    assert_eq!(good.get("streams").ok(200)["total"], 2);
    good.get("sessions").ok(200);
    good.delete("sessions/424242")
        .error(404, "NOT_FOUND", &["424242"]);
    assert_eq!(good.delete("streams/a").status, 204);
    assert!(good.get("openapi.json").ok(200)["openapi"].is_string());

    // Metrics take the token too (Prometheus sends it with `authorization` in the scrape
    // config); media and health stay open.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/metrics").status, 401);
    let auth = format!("Bearer {token}");
    let m = http::request(
        server.http,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        None,
    )
    .expect("metrics");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("ferrocast_streams_live"));
    for path in ["/live/b/index.m3u8", "/live/b/mpegts", "/live/b/0.ts"] {
        assert_eq!(
            server.get(path).status,
            404,
            "{path} must not need the token"
        );
    }
}

/// RFC 7235 section 2.1: the authentication scheme is a case-insensitive token, so
/// `authorization: bearer <token>` (as some clients and proxies send it) is the right token.
#[test]
fn bearer_scheme_is_case_insensitive() {
    let token = "e2e-secret-token";
    let server = Server::builder().set("api.token", token).start();
    let api = Api::new(server.http);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {token}");
        let r = api.raw("GET", "streams", &[("Authorization", &auth)], None);
        assert_eq!(
            r.status, 200,
            "Authorization: {scheme} <right token> was refused: {}",
            r.text
        );
    }
}

/// Every route with the methods it answers, as registered.
const ROUTES: [(&str, &[&str]); 5] = [
    ("/api/v1/streams", &["get", "post"]),
    (
        "/api/v1/streams/{code}",
        &["get", "post", "put", "patch", "delete"],
    ),
    (
        "/api/v1/templates/{name}",
        &["get", "put", "patch", "delete"],
    ),
    ("/api/v1/sessions", &["get"]),
    ("/api/v1/sessions/{id}", &["delete"]),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[test]
fn openapi_document_lists_every_route_and_error() {
    let server = Server::start();
    let api = Api::new(server.http);
    let r = api.get("openapi.json");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "openapi.json content type {:?}",
        r.header("content-type")
    );
    let text = r.text.clone();
    let doc = r.ok(200);
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "openapi {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let paths = doc["paths"].as_object().expect("paths");
    // Every documented operation is served: not the API's "no such route" 404, not a 405.
    for (path, item) in paths {
        let concrete: String = path
            .split('/')
            .map(|seg| match seg {
                "{code}" => "nope",
                s if s.starts_with('{') => "0",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for m in item.as_object().expect("path item").keys() {
            if !METHODS.contains(&m.as_str()) {
                continue;
            }
            let method = m.to_ascii_uppercase();
            // An event stream never ends: read its head and first event, not a whole body.
            let streams = item[m]["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some();
            if streams {
                let mut s = http::open(server.http, &concrete, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("GET {concrete}: {e}"));
                assert_eq!(s.status, 200, "documented {method} {path}");
                assert_eq!(s.header("content-type"), Some("text/event-stream"));
                let first = s.next_piece().expect("first event").unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(&first).starts_with("event: snapshot"),
                    "{path}: {}",
                    String::from_utf8_lossy(&first)
                );
                continue;
            }
            let body = ["PUT", "POST", "PATCH"]
                .contains(&method.as_str())
                .then(|| json!({}));
            let r = api.call(&method, &concrete, body.as_ref());
            assert!(
                r.status != 405 && !r.text.contains("no such API route"),
                "documented {method} {path} is not served ({method} {concrete} -> {}: {})",
                r.status,
                r.text
            );
        }
    }
    // The routes this suite knows are all documented, with exactly their methods.
    for (path, methods) in ROUTES {
        let item = paths
            .get(path)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let mut documented: Vec<&str> = item
            .keys()
            .map(String::as_str)
            .filter(|k| METHODS.contains(k))
            .collect();
        documented.sort();
        let mut expected = methods.to_vec();
        expected.sort();
        assert_eq!(documented, expected, "methods of {path}");
        for m in methods {
            let op = &item[*m];
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{m} {path} has no responses"));
            let errors: Vec<&String> = responses
                .keys()
                .filter(|s| s.starts_with('4') || s.starts_with('5'))
                .collect();
            assert!(
                responses.contains_key("401") && responses.keys().any(|s| s == "400"),
                "{m} {path} does not document 400 and 401: {errors:?}"
            );
            let body_methods = ["put", "post", "patch"];
            if body_methods.contains(m) {
                for s in ["413", "415", "422", "503"] {
                    assert!(
                        responses.contains_key(s),
                        "{m} {path} lacks {s}: {errors:?}"
                    );
                }
                assert!(
                    op["requestBody"]["content"]["application/json"].is_object(),
                    "{m} {path} has no JSON request body"
                );
            }
            // PUT creates a missing stream; every other operation on one item can miss.
            if path.contains('{') && *m != "put" {
                assert!(responses.contains_key("404"), "{m} {path} lacks 404");
            }
            for (status, resp) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{m} {path} {status} does not use ErrorBody"
                    );
                }
            }
        }
    }
    assert!(paths["/api/v1/streams"]["post"]["responses"]["409"].is_object());

    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for s in ["StreamView", "StreamInput", "StreamPatch", "ErrorBody"] {
        assert!(schemas.contains_key(s), "components.schemas lacks {s}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "bearer security scheme"
    );

    // Parameters: path ones exist in the template; the list filters are optional queries.
    // (path, method, [(parameter, in)])
    type Params<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let expected_params: [Params; 7] = [
        ("/api/v1/streams", "get", &[("status", "query")]),
        ("/api/v1/streams/{code}", "get", &[("code", "path")]),
        ("/api/v1/streams/{code}", "put", &[("code", "path")]),
        ("/api/v1/streams/{code}", "patch", &[("code", "path")]),
        ("/api/v1/streams/{code}", "delete", &[("code", "path")]),
        (
            "/api/v1/sessions",
            "get",
            &[
                ("stream", "query"),
                ("protocol", "query"),
                ("scope", "query"),
            ],
        ),
        (
            "/api/v1/sessions/{id}",
            "delete",
            &[("id", "path"), ("node", "query")],
        ),
    ];
    for (path, m, want) in expected_params {
        let params = paths[path][m]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let got: Vec<(String, String, bool)> = params
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_owned(),
                    p["in"].as_str().unwrap_or("").to_owned(),
                    p["required"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let want: Vec<(String, String, bool)> = want
            .iter()
            .map(|(n, i)| ((*n).to_owned(), (*i).to_owned(), *i == "path"))
            .collect();
        assert_eq!(
            got, want,
            "{m} {path}: parameters (name, in, required) as documented vs as served"
        );
    }

    // Full validation when the validator is installed (`pip install openapi-spec-validator`).
    let have = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("note: python3 openapi_spec_validator not installed; structural checks only");
        return;
    }
    let file = server.dir().join("openapi.json");
    std::fs::write(&file, &text).expect("write openapi.json");
    let out = run(
        Command::new("python3")
            .args([
                "-c",
                "import sys; from openapi_spec_validator import validate; \
                 from openapi_spec_validator.readers import read_from_filename; \
                 validate(read_from_filename(sys.argv[1])[0]); print('valid')",
            ])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(
        out.success() && out.stdout.contains("valid"),
        "openapi-spec-validator rejected the document:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn metrics_count_api_requests_by_route_template() {
    let server = Server::start();
    let api = Api::new(server.http);
    for code in ["x1", "x2", "x3"] {
        api.get(&format!("streams/{code}"))
            .error(404, "NOT_FOUND", &[]);
    }
    api.put("streams/y", &json!({})).ok(201);
    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "metrics content type {:?}",
        m.header("content-type")
    );
    let text = m.text();
    assert_eq!(
        metric(
            &text,
            r#"ferrocast_api_requests_total{route="/api/v1/streams/{code}",status="404"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"ferrocast_api_requests_total{route="/api/v1/streams/{code}",status="201"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("x1"),
        "codes must not become labels:\n{text}"
    );
    assert_eq!(metric(&text, "ferrocast_streams_live"), Some(0.0), "{text}");
}

/// The value of the sample named exactly `name` (with its labels) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
