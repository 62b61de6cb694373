//! `/api/v1/templates`, streams made from templates, `POST /streams/{code}` and
//! `/api/v1/config`, through the router as a client sees them.

use crate::tests::state;
use crate::{AdminAccess, AppState, EffectiveConfig};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use hub::{AccessRequest, Action};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower_service::Service;

struct Client {
    app: Router,
    state: AppState,
}

impl Client {
    async fn new() -> Client {
        let state = state(AdminAccess::local_only()).await;
        Client {
            app: crate::router(state.clone()),
            state,
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let resp = self.app.call(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    async fn post(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn patch(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// A publish to `code` as the admission sees it (what makes runtime streams).
    fn publish(&self, code: &str) -> Result<(), hub::Denied> {
        self.state.control.decide(&AccessRequest {
            action: Action::Publish,
            code: code.into(),
            protocol: "rtmp",
            remote_addr: None,
            args: Vec::new(),
            client: None,
            command: Default::default(),
        })
    }
}

const PUSH: &str = "rtmp://a.example/live/push-s3cret";

fn cams() -> Value {
    json!({
        "name": "cams",
        "prefix": "cam-",
        "description": "east wing",
        "tags": ["cctv"],
        "stream_key": "tpl-key-s3cret",
        "protocols": {"hls": false},
        "push": [{"url": PUSH, "comment": "backup"}],
        "inputs": [{"url": "publish://"}],
        "failover": {"packet_timeout_s": 4},
        "recording": {"enabled": true, "max_age_s": 86400},
        "transcode": {"enabled": true, "profiles": [{"name": "720p"}, {"name": "360p", "max_framerate": 25}]},
    })
}

#[tokio::test]
async fn templates_crud_with_masked_secrets_and_named_errors() {
    let mut c = Client::new().await;
    let (status, t) = c.post("/api/v1/templates", cams()).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["name"], "cams");
    assert_eq!(t["prefix"], "cam-");
    assert_eq!(t["has_stream_key"], true);
    assert_eq!(t["protocols"]["hls"], false);
    assert_eq!(t["protocols"]["dash"], true, "omitted switches are on");
    assert_eq!(t["push"][0]["url"], "rtmp://a.example/live/****");
    assert_eq!(t["inputs"][0]["kind"], "publish");
    assert_eq!(t["failover"]["packet_timeout_s"], 4.0);
    assert_eq!(
        t["recording"],
        json!({"enabled": true, "format": "ts", "rotate_s": 600.0, "rotate_bytes": 0,
               "max_age_s": 86400.0, "max_bytes": 0, "schedule": []}),
        "omitted recording fields take their defaults"
    );
    assert_eq!(
        (
            &t["transcode"]["enabled"],
            &t["transcode"]["hwaccel"],
            &t["transcode"]["profiles"][1]["name"],
            &t["transcode"]["profiles"][1]["max_framerate"],
            &t["transcode"]["watermark"],
        ),
        (
            &json!(true),
            &json!("auto"),
            &json!("360p"),
            &json!(25.0),
            &Value::Null
        ),
        "omitted transcode fields take their defaults"
    );
    assert_eq!(t["runtime_streams"], json!([]));
    assert!(!t.to_string().contains("s3cret"), "{t}");

    let (status, list) = c.get("/api/v1/templates").await;
    assert_eq!((status, &list["total"]), (StatusCode::OK, &json!(1)));
    assert_eq!(c.get("/api/v1/templates/cams").await.1, t);

    // GET, edit, PUT back: masked URLs keep the configured destination.
    let mut back = t.clone();
    for k in [
        "has_stream_key",
        "runtime_streams",
        "created_at",
        "updated_at",
    ] {
        back.as_object_mut().unwrap().remove(k);
    }
    back["inputs"][0].as_object_mut().unwrap().remove("kind");
    back["description"] = "edited".into();
    let (status, put) = c.put("/api/v1/templates/cams", back).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    let stored = c.state.control.template("cams").unwrap();
    assert_eq!(stored.push[0].url, PUSH);
    assert_eq!(stored.description, "edited");
    assert_eq!(
        (stored.recording.enabled, stored.recording.max_age_s),
        (true, 86400.0),
        "the view's recording goes back unchanged"
    );
    assert_eq!(
        stored.transcode.profiles.len(),
        2,
        "the view's transcode goes back unchanged"
    );
    assert_eq!(
        stored.stream_key, None,
        "PUT replaces: an omitted key is gone"
    );

    // PATCH changes what it names; null removes the prefix.
    let (status, p) = c
        .patch(
            "/api/v1/templates/cams",
            json!({"prefix": null, "tags": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (&p["prefix"], &p["tags"], &p["description"]),
        (&Value::Null, &json!(["x"]), &json!("edited"))
    );
    let (status, p) = c
        .patch(
            "/api/v1/templates/cams",
            json!({"recording": {"rotate_s": 60}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (&p["recording"]["rotate_s"], &p["recording"]["enabled"]),
        (&json!(60.0), &json!(true)),
        "PATCH changes only the recording fields given"
    );
    let (status, p) = c
        .patch(
            "/api/v1/templates/cams",
            json!({"transcode": {"hwaccel": "qsv"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (
            &p["transcode"]["hwaccel"],
            &p["transcode"]["profiles"][0]["name"]
        ),
        (&json!("qsv"), &json!("720p")),
        "PATCH changes only the transcode fields given"
    );
    let (status, _) = c
        .put("/api/v1/templates/new", json!({"prefix": "cam-"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Errors name the field.
    for (method, path, body, want, field) in [
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "new"}),
            StatusCode::CONFLICT,
            None,
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "prefix": "cam-"}),
            StatusCode::CONFLICT,
            Some("prefix"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "a b"}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "prefix": "a//b"}),
            StatusCode::BAD_REQUEST,
            Some("prefix"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "push": [{"url": "rtmp://h/a/****"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("push[0].url"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "failover": {"packet_timeout_s": 0.1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("failover.packet_timeout_s"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "recording": {"rotate_bytes": 5}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("recording.rotate_bytes"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "transcode": {"profiles": [{"name": "hd"}]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("transcode.profiles[0]"),
        ),
        (
            Method::POST,
            "/api/v1/templates",
            json!({"name": "x", "push": [{"url": "rtmp://h/a/b", "rendition": "720p"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("push[0].rendition"),
        ),
        (
            Method::PATCH,
            "/api/v1/templates/cams",
            json!({"recording": {"format": "mp4"}}),
            StatusCode::BAD_REQUEST,
            Some("recording.format"),
        ),
        (
            Method::PUT,
            "/api/v1/templates/cams",
            json!({"name": "other"}),
            StatusCode::BAD_REQUEST,
            Some("name"),
        ),
        (
            Method::PATCH,
            "/api/v1/templates/nope",
            json!({}),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::GET,
            "/api/v1/templates/nope",
            Value::Null,
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/templates/nope",
            Value::Null,
            StatusCode::NOT_FOUND,
            None,
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, err) = c.call(method.clone(), path, body).await;
        assert_eq!(status, want, "{method} {path}: {err}");
        assert_eq!(
            err["error"]["field"].as_str(),
            field,
            "{method} {path}: {err}"
        );
    }

    let (status, _) = c.call(Method::DELETE, "/api/v1/templates/cams", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get("/api/v1/templates/cams").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn streams_start_from_a_template_and_post_to_a_code_creates_or_merges() {
    let mut c = Client::new().await;
    assert_eq!(
        c.post("/api/v1/templates", cams()).await.0,
        StatusCode::CREATED
    );

    let (status, s) = c
        .post(
            "/api/v1/streams",
            json!({"code": "s1", "template": "cams", "name": "One", "protocols": {"dash": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["name"], "One");
    assert_eq!(
        s["description"], "",
        "the template's description is its own"
    );
    assert_eq!(s["tags"], json!(["cctv"]));
    assert_eq!(s["has_stream_key"], true);
    assert_eq!(
        (&s["protocols"]["hls"], &s["protocols"]["dash"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(s["push"][0]["url"], "rtmp://a.example/live/****");
    assert_eq!(s["failover"]["packet_timeout_s"], 4.0);
    assert_eq!(s["recording"]["enabled"], true);
    assert_eq!(s["recording"]["max_age_s"], 86400.0);
    assert_eq!(
        (
            &s["transcode"]["hwaccel"],
            &s["transcode"]["profiles"][1]["name"]
        ),
        (&json!("auto"), &json!("360p"))
    );
    assert_eq!(s["persistent"], true);
    let stored = c.state.control.get("s1").unwrap();
    assert_eq!(stored.push[0].url, PUSH);
    assert_eq!(stored.stream_key.as_deref(), Some("tpl-key-s3cret"));

    // A masked URL copied from the template's view means that destination.
    let (status, s) = c
        .post("/api/v1/streams", json!({"code": "s2", "template": "cams", "push": [{"url": "rtmp://a.example/live/****"}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(c.state.control.get("s2").unwrap().push[0].url, PUSH);
    let (status, e) = c
        .post("/api/v1/streams", json!({"code": "s3", "template": "nope"}))
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("template"))
    );
    assert!(c.state.control.get("s3").is_none());

    // POST /streams/{code}: 201, then 200 merging, keeping what is omitted.
    let (status, s) = c
        .post("/api/v1/streams/s4", json!({"name": "Four", "tags": ["a"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(
        (&s["protocols"]["hls"], &s["push"]),
        (&json!(true), &json!([]))
    );
    let (status, s) = c
        .post(
            "/api/v1/streams/s4",
            json!({"code": "s4", "protocols": {"rtsp": false}, "stream_key": "k-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (&s["name"], &s["tags"], &s["has_stream_key"]),
        (&json!("Four"), &json!(["a"]), &json!(true))
    );
    assert_eq!(
        (&s["protocols"]["rtsp"], &s["protocols"]["hls"]),
        (&json!(false), &json!(true))
    );
    // A template named on an existing stream: its settings, then the body's; the key stays
    // when the template sets none.
    c.state
        .control
        .update_template("cams", |t| t.stream_key = None)
        .await
        .unwrap();
    let (status, s) = c
        .post(
            "/api/v1/streams/s4",
            json!({"template": "cams", "tags": ["b"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (&s["name"], &s["tags"], &s["has_stream_key"]),
        (&json!("Four"), &json!(["b"]), &json!(true))
    );
    assert_eq!(
        (&s["protocols"]["hls"], &s["protocols"]["rtsp"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(s["push"][0]["url"], "rtmp://a.example/live/****");
    // The path decides the code.
    let (status, e) = c.post("/api/v1/streams/s5", json!({"code": "s6"})).await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code"))
    );
    let (status, e) = c
        .post(
            "/api/v1/streams/s5",
            json!({"push": [{"url": "rtmp://h/a/****"}]}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("push[0].url"))
    );
    assert!(
        c.state.control.get("s5").is_none(),
        "a refused create stores nothing"
    );
}

#[tokio::test]
async fn a_runtime_stream_from_a_template_is_shown_as_such_and_stored_by_a_write() {
    let mut c = Client::new().await;
    let mut t = cams();
    t.as_object_mut().unwrap().remove("stream_key");
    assert_eq!(c.post("/api/v1/templates", t).await.0, StatusCode::CREATED);
    c.publish("cam-1").unwrap();
    c.publish("cam-2").unwrap();

    let (status, s) = c.get("/api/v1/streams/cam-1").await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (&s["persistent"], &s["template"]),
        (&json!(false), &json!("cams"))
    );
    assert_eq!(s["protocols"]["hls"], false);
    assert_eq!(s["push"][0]["url"], "rtmp://a.example/live/****");
    assert!(s["created_at"].is_string());
    let (_, list) = c.get("/api/v1/streams").await;
    let codes: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        ["cam-1", "cam-2"],
        "listed while they exist, idle or not"
    );
    assert_eq!(
        c.get("/api/v1/templates/cams").await.1["runtime_streams"],
        json!(["cam-1", "cam-2"])
    );

    // PATCH (the dashboard's save) stores it with the change: 201, then an ordinary stream.
    let (status, s) = c
        .patch("/api/v1/streams/cam-1", json!({"name": "Lobby"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(
        (&s["persistent"], &s["name"], &s["protocols"]["hls"]),
        (&json!(true), &json!("Lobby"), &json!(false))
    );
    assert!(s.get("template").is_none());
    assert_eq!(c.state.control.get("cam-1").unwrap().push[0].url, PUSH);
    let (status, _) = c
        .patch("/api/v1/streams/cam-1", json!({"name": "Lobby 2"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // POST /streams/{code} on a runtime stream stores it too, from its settings.
    let (status, s) = c
        .post("/api/v1/streams/cam-2", json!({"description": "kept"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(
        (&s["persistent"], &s["protocols"]["hls"], &s["description"]),
        (&json!(true), &json!(false), &json!("kept"))
    );
    assert_eq!(
        c.get("/api/v1/templates/cams").await.1["runtime_streams"],
        json!([])
    );

    // DELETE of a runtime stream ends it.
    c.publish("cam-3").unwrap();
    let (status, _) = c.call(Method::DELETE, "/api/v1/streams/cam-3", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.get("/api/v1/streams/cam-3").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn config_shows_what_the_binary_handed_over_masked() {
    let mut st = state(AdminAccess::local_only()).await;
    st.config = EffectiveConfig::new(json!({
        "api": {"token": "t-s3cret"},
        "database": {"url": "postgres://u:pw-s3cret@db/x"},
        "rtmp": {"listen": "0.0.0.0:1935"},
    }));
    let mut c = Client {
        app: crate::router(st.clone()),
        state: st,
    };
    let (status, v) = c.get("/api/v1/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!v.to_string().contains("s3cret"), "{v}");
    assert_eq!(v["api"]["token"], "***");
    assert_eq!(v["database"]["url"], "postgres://u:***@db/x");
    assert_eq!(v["rtmp"]["listen"], "0.0.0.0:1935");
    // Behind the admin rules like the rest of the API.
    let mut remote = crate::router(state(AdminAccess::local_only()).await);
    let mut req = Request::get("/api/v1/config").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 1))));
    assert_eq!(
        remote.call(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}
