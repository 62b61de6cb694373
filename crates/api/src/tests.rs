//! Admission to the admin surface, for every route the OpenAPI document lists, from loopback,
//! from a remote address, through a local proxy, and with right and wrong tokens.

use super::*;
use axum::body::Body;
use axum::http::{Method, Request};
use std::net::IpAddr;
use tower_service::Service;

const TOKEN: &str = "right-token-123";
const REMOTE: &str = "203.0.113.7";

pub(crate) async fn state(admin: AdminAccess) -> AppState {
    let hub = Hub::new(hub::HubConfig::default());
    let hls = HlsService::new(hub.clone(), hls::HlsConfig::default());
    let dash = DashService::new(hub.clone(), ::dash::DashConfig::default());
    let store = store::open("sqlite::memory:")
        .await
        .expect("in-memory store");
    let webhooks = ::events::Webhooks::new(
        ::events::EventBus::default(),
        store.clone(),
        ::events::Settings {
            file_dir: std::env::temp_dir()
                .join(format!("ferrocast-api-events-{}", std::process::id())),
            ..Default::default()
        },
    );
    let control = Control::load(store, hub.clone(), hls.clone(), Default::default())
        .await
        .expect("control");
    let recorder = record::Recorder::new(
        hub.clone(),
        record::RecordConfig {
            dir: std::env::temp_dir()
                .join(format!("ferrocast-api-recordings-{}", std::process::id())),
        },
    );
    AppState {
        cluster: None,
        edge: None,
        tasks: tokio_util::task::TaskTracker::new(),
        transcoder: transcode::Transcoder::new(hub.clone(), Default::default()),
        recorder,
        hub,
        hls,
        dash,
        control,
        admin,
        requests: Arc::default(),
        readiness: Default::default(),
        config: Default::default(),
        webhooks,
    }
}

/// Every (method, path) of the admin surface: the OpenAPI routes with their parameters filled
/// in, the document itself, and `/metrics`.
fn admin_routes() -> Vec<(Method, String)> {
    let doc = serde_json::to_value(openapi()).expect("document");
    let mut out = vec![
        (Method::GET, "/api/v1/openapi.json".to_owned()),
        (Method::GET, "/metrics".to_owned()),
        (Method::GET, "/api/v1/nowhere".to_owned()),
    ];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let path = path
            .replace("{code}", "demo")
            .replace("{index}", "0")
            .replace("{name}", "demo")
            .replace("{id}", "1");
        for method in item.as_object().expect("path item").keys() {
            out.push((
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                path.clone(),
            ));
        }
    }
    assert!(out.len() >= 12, "routes found: {out:?}");
    out
}

async fn call(
    app: &mut Router,
    method: Method,
    path: &str,
    from: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let ip: IpAddr = from.parse().unwrap();
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if path.starts_with("/api/v1/streams") {
        req = req.header("content-type", "application/json");
        Body::from(r#"{"code":"demo"}"#)
    } else {
        Body::empty()
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    app.call(req).await.unwrap().status()
}

#[tokio::test]
async fn without_a_token_only_loopback_reaches_the_api() {
    let mut app = router(state(AdminAccess::local_only()).await);
    for (method, path) in admin_routes() {
        let remote = call(&mut app, method.clone(), &path, REMOTE, &[]).await;
        assert_eq!(
            remote,
            StatusCode::FORBIDDEN,
            "{method} {path} from {REMOTE}"
        );
        let mapped = call(&mut app, method.clone(), &path, "::ffff:203.0.113.7", &[]).await;
        assert_eq!(
            mapped,
            StatusCode::FORBIDDEN,
            "{method} {path} from mapped v4"
        );
        // A local reverse proxy forwarding a remote client is not a local client.
        for header in ["x-forwarded-for", "forwarded"] {
            let proxied = call(
                &mut app,
                method.clone(),
                &path,
                "127.0.0.1",
                &[(header, "for=198.51.100.1")],
            )
            .await;
            assert_eq!(
                proxied,
                StatusCode::FORBIDDEN,
                "{method} {path} via a proxy ({header})"
            );
        }
        for local in ["127.0.0.1", "::1", "127.1.2.3"] {
            let got = call(&mut app, method.clone(), &path, local, &[]).await;
            assert!(
                got != StatusCode::FORBIDDEN && got != StatusCode::UNAUTHORIZED,
                "{method} {path} from {local}: {got}"
            );
        }
    }
}

#[tokio::test]
async fn with_a_token_every_route_needs_it_from_everywhere() {
    let mut app = router(state(AdminAccess::new(Some(TOKEN), None)).await);
    for (method, path) in admin_routes() {
        for from in [REMOTE, "127.0.0.1"] {
            let none = call(&mut app, method.clone(), &path, from, &[]).await;
            assert_eq!(
                none,
                StatusCode::UNAUTHORIZED,
                "{method} {path} from {from}, no token"
            );
            for wrong in [
                "Bearer wrong-token-123",
                "Bearer right-token-12",
                "Basic cmlnaHQ=",
                "Bearer",
            ] {
                let got = call(
                    &mut app,
                    method.clone(),
                    &path,
                    from,
                    &[("authorization", wrong)],
                )
                .await;
                assert_eq!(
                    got,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} from {from} with {wrong:?}"
                );
            }
            let auth = format!("bearer {TOKEN}");
            let right = call(
                &mut app,
                method.clone(),
                &path,
                from,
                &[("authorization", &auth)],
            )
            .await;
            assert!(
                right != StatusCode::FORBIDDEN && right != StatusCode::UNAUTHORIZED,
                "{method} {path} from {from} with the token: {right}"
            );
        }
    }
}

#[tokio::test]
async fn an_allow_list_opens_networks_and_still_takes_the_token() {
    let allow = access::IpList::parse(["203.0.113.0/24"]).unwrap();
    let mut app = router(state(AdminAccess::new(None, Some(allow.clone()))).await);
    let ok = call(&mut app, Method::GET, "/api/v1/streams", REMOTE, &[]).await;
    assert_eq!(ok, StatusCode::OK);
    // Explicitly listed networks are the operator's word, proxied or not; loopback is not in it.
    let local = call(&mut app, Method::GET, "/api/v1/streams", "127.0.0.1", &[]).await;
    assert_eq!(local, StatusCode::FORBIDDEN);
    let other = call(&mut app, Method::GET, "/metrics", "198.51.100.1", &[]).await;
    assert_eq!(other, StatusCode::FORBIDDEN);

    let mut app = router(state(AdminAccess::new(Some(TOKEN), Some(allow))).await);
    let outside = call(
        &mut app,
        Method::GET,
        "/api/v1/streams",
        "198.51.100.1",
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(
        outside,
        StatusCode::FORBIDDEN,
        "the token does not open other networks"
    );
    let inside = call(&mut app, Method::GET, "/api/v1/streams", REMOTE, &[]).await;
    assert_eq!(inside, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn media_clock_and_health_stay_public() {
    let mut app = router(state(AdminAccess::new(Some(TOKEN), None)).await);
    for path in [
        "/healthz",
        "/time",
        "/live/demo/index.m3u8",
        "/live/demo/index.mpd",
    ] {
        let got = call(&mut app, Method::GET, path, REMOTE, &[]).await;
        assert!(
            got == StatusCode::OK || got == StatusCode::NOT_FOUND,
            "{path} from {REMOTE}: {got}"
        );
    }
}

#[tokio::test]
async fn the_media_router_has_no_admin_routes() {
    let mut app = media_router(state(AdminAccess::local_only()).await);
    for (method, path) in admin_routes() {
        let got = call(&mut app, method.clone(), &path, "127.0.0.1", &[]).await;
        assert!(
            got == StatusCode::NOT_FOUND || got == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} on the media port: {got}"
        );
    }
}

#[tokio::test]
async fn secrets_are_write_only_on_every_read_path() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = router(st.clone());
    let body = serde_json::json!({
        "stream_key": "k3y-s3cret",
        "push": [
            {"url": "rtmp://a.rtmp.youtube.com/live2/yt-s3cret"},
            {"url": "rtmps://bob:pw-s3cret@live.example:443/app/fb-s3cret?sig=q-s3cret"},
        ]
    });
    let mut seen = Vec::new();
    for (method, path, body) in [
        (Method::PUT, "/api/v1/streams/demo", Some(body.clone())),
        (Method::GET, "/api/v1/streams/demo", None),
        (Method::GET, "/api/v1/streams", None),
        (
            Method::PATCH,
            "/api/v1/streams/demo",
            Some(serde_json::json!({"name": "x"})),
        ),
        (Method::GET, "/api/v1/sessions", None),
    ] {
        let mut req = Request::builder().method(method.clone()).uri(path);
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let resp = app.call(req).await.unwrap();
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            !text.contains("s3cret"),
            "{method} {path} leaks a secret: {text}"
        );
        seen.push(text);
    }
    let one: serde_json::Value = serde_json::from_str(&seen[1]).unwrap();
    assert_eq!(one["has_stream_key"], true);
    assert!(one.get("stream_key").is_none());
    assert_eq!(
        one["push"][0]["url"],
        "rtmp://a.rtmp.youtube.com/live2/****"
    );
    assert_eq!(
        one["push"][1]["url"],
        "rtmps://****@live.example:443/app/****?****"
    );

    // GET, edit, PUT back: the masked URLs keep the configured destinations.
    let mut back = one.clone();
    for k in [
        "runtime",
        "persistent",
        "created_at",
        "updated_at",
        "has_stream_key",
    ] {
        back.as_object_mut().unwrap().remove(k);
    }
    back["name"] = "renamed".into();
    let mut req = Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/streams/demo")
        .header("content-type", "application/json")
        .body(Body::from(back.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let status = app.call(req).await.unwrap().status();
    assert_eq!(status, StatusCode::OK);
    let stored: Vec<String> = st
        .control
        .get("demo")
        .map(|r| r.push.iter().map(|p| p.url.clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        stored,
        vec![
            "rtmp://a.rtmp.youtube.com/live2/yt-s3cret".to_owned(),
            "rtmps://bob:pw-s3cret@live.example:443/app/fb-s3cret?sig=q-s3cret".to_owned()
        ]
    );

    // A masked URL that matches nothing configured is refused, not pushed to "****".
    let mut req = Request::builder()
        .method(Method::PATCH)
        .uri("/api/v1/streams/demo")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"push":[{"url":"rtmp://other.example/live2/****"}]}"#,
        ))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let status = app.call(req).await.unwrap().status();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn readyz_follows_startup_and_shutdown_while_healthz_stays_alive() {
    let state = state(AdminAccess::local_only()).await;
    let readiness = state.readiness.clone();
    let app = crate::media_router(state);
    let get = |path: &'static str| {
        let mut app = app.clone();
        async move {
            let r = app
                .call(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (code, body) = get("/readyz").await;
    assert_eq!((code, body["status"].as_str()), (503, Some("starting")));
    readiness.set_ready();
    let (code, body) = get("/readyz").await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ready")));
    readiness.set_draining();
    readiness.set_ready();
    let (code, body) = get("/readyz").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (503, Some("draining")),
        "never undone"
    );
    let (code, _) = get("/healthz").await;
    assert_eq!(code, 200, "alive while draining");
}

#[tokio::test]
async fn open_streamer_push_fields_timeout_sec_and_retry_timeout_sec_are_accepted() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = router(st.clone());
    let body = serde_json::json!({
        "push": [
            {"url": "rtmp://a.example/live/k1", "timeout_sec": 7, "retry_timeout_sec": 5},
            {"url": "rtmp://b.example/live/k2", "retry_timeout_sec": 5,
             "retry": {"initial_s": 2, "max_s": 9}},
        ]
    });
    for (method, body) in [(Method::PUT, Some(body.to_string())), (Method::GET, None)] {
        let mut req = Request::builder()
            .method(method.clone())
            .uri("/api/v1/streams/demo");
        let b = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let mut req = req.body(b).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new([127, 0, 0, 1].into(), 40000)));
        let res = app.call(req).await.unwrap();
        assert!(res.status().is_success(), "{method}: {}", res.status());
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let push = &v["push"];
        assert_eq!(push[0]["timeout_s"], 7, "{v}");
        assert_eq!(push[0]["retry"]["initial_s"], 5.0);
        assert_eq!(push[0]["retry"]["max_s"], 5.0);
        assert_eq!(push[1]["timeout_s"], 10, "the default");
        assert_eq!(push[1]["retry"]["initial_s"], 2.0, "an explicit retry wins");
        assert_eq!(push[1]["retry"]["max_s"], 9.0);
    }
    // The alias and the name together are one field given twice.
    let twice = r#"{"push":[{"url":"rtmp://a.example/live/k","timeout_s":1,"timeout_sec":2}]}"#;
    let mut req = Request::builder()
        .method(Method::PUT)
        .uri("/api/v1/streams/demo2")
        .header("content-type", "application/json")
        .body(Body::from(twice))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new([127, 0, 0, 1].into(), 40000)));
    let res = app.call(req).await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
}

/// Open-Streamer's clients branch on the error body's `code`: where that server has the
/// situation, the body carries its name for it (and a `field` where one is at fault).
#[tokio::test]
async fn open_streamer_error_codes_in_the_body() {
    let st = state(AdminAccess::local_only()).await;
    // Inputs run as in the binary, so a switch reaches the stream's supervisor.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let inputs = ::inputs::InputManager::new(st.hub.clone(), Default::default());
    inputs.start(&[], shutdown.clone());
    st.control.set_inputs(inputs);
    let mut app = router(st);
    let mut send = async |method: Method, path: &str, body: Option<&str>| {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = app.call(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        (status, v)
    };
    let error = |(status, v): (u16, serde_json::Value)| {
        let e = &v["error"];
        (
            status,
            e["code"].as_str().map(str::to_owned),
            e["field"].as_str().map(str::to_owned),
        )
    };
    let s = |x: &str| Some(x.to_owned());

    let got = send(Method::GET, "/api/v1/streams/nobody", None).await;
    assert_eq!(error(got), (404, s("NOT_FOUND"), None), "unknown stream");
    let got = send(Method::POST, "/api/v1/streams/cam", Some(r#"{"name": "#)).await;
    assert_eq!(error(got), (400, s("INVALID_BODY"), None), "malformed JSON");
    let got = send(
        Method::POST,
        "/api/v1/streams/cam",
        Some(r#"{"disabled": "yes"}"#),
    )
    .await;
    assert_eq!(
        error(got),
        (400, s("INVALID_BODY"), s("disabled")),
        "a known field of the wrong type"
    );
    let got = send(Method::POST, "/api/v1/streams/bad.code", Some("{}")).await;
    assert_eq!(
        error(got),
        (400, s("INVALID_CODE"), s("code")),
        "invalid code"
    );
    let got = send(Method::GET, "/api/v1/streams?status=bogus", None).await;
    assert_eq!(error(got), (400, s("INVALID_QUERY"), s("status")));
    let got = send(
        Method::POST,
        "/api/v1/streams/cam",
        Some(r#"{"stream_key": "", "runtime": {}}"#),
    )
    .await;
    assert_eq!(
        error(got),
        (422, s("VALIDATION_FAILED"), s("stream_key")),
        "a rule is broken"
    );

    let cam = r#"{"inputs": [{"url": "publish://", "priority": 1}]}"#;
    let (status, _) = send(Method::POST, "/api/v1/streams/cam", Some(cam)).await;
    assert_eq!(status, 201);
    let got = send(Method::POST, "/api/v1/streams", Some(r#"{"code": "cam"}"#)).await;
    assert_eq!(error(got), (409, s("ALREADY_EXISTS"), None));
    let got = send(
        Method::POST,
        "/api/v1/streams/cam/switch",
        Some(r#"{"priority": 7}"#),
    )
    .await;
    // Open-Streamer answers 400; this API keeps 409 for a refused switch.
    assert_eq!(
        error(got),
        (409, s("SWITCH_FAILED"), None),
        "no input has priority 7"
    );
    let got = send(Method::POST, "/api/v1/streams/cam/switch", Some("[")).await;
    assert_eq!(error(got), (400, s("INVALID_BODY"), None));
    let got = send(
        Method::POST,
        "/api/v1/streams/nobody/switch",
        Some(r#"{"priority": 1}"#),
    )
    .await;
    assert_eq!(error(got), (404, s("NOT_FOUND"), None));

    let (status, _) = send(
        Method::PATCH,
        "/api/v1/streams/cam",
        Some(r#"{"disabled": true}"#),
    )
    .await;
    assert_eq!(status, 200);
    let got = send(Method::POST, "/api/v1/streams/cam/restart", None).await;
    assert_eq!(error(got), (409, s("STREAM_DISABLED"), None));
    shutdown.cancel();
}

/// `recording` goes in on create, comes back on every read, changes field by field on PATCH
/// and breaks its rules with the field named, as `failover` does.
#[tokio::test]
async fn recording_settings_round_trip_and_are_validated() {
    use serde_json::json;
    let st = state(AdminAccess::local_only()).await;
    let mut app = router(st.clone());
    let mut send = async |method: Method, path: &str, body: Option<serde_json::Value>| {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = app.call(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        (status, v)
    };
    let (status, created) = send(
        Method::POST,
        "/api/v1/streams",
        Some(json!({"code": "rec", "recording":
            {"enabled": true, "rotate_s": 30, "max_bytes": 10_485_760}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let want = json!({"enabled": true, "format": "ts", "rotate_s": 30.0, "rotate_bytes": 0,
                      "max_age_s": 0.0, "max_bytes": 10_485_760, "schedule": []});
    assert_eq!(
        created["recording"], want,
        "omitted fields take their defaults"
    );
    let (status, got) = send(Method::GET, "/api/v1/streams/rec", None).await;
    assert_eq!((status, &got["recording"]), (200, &want));
    let (_, list) = send(Method::GET, "/api/v1/streams", None).await;
    assert_eq!(list["data"][0]["recording"], want);
    assert_eq!(
        st.control.recording("rec").map(|r| (r.enabled, r.rotate_s)),
        Some((true, 30.0))
    );

    let (status, patched) = send(
        Method::PATCH,
        "/api/v1/streams/rec",
        Some(json!({"recording": {"rotate_s": 120}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let mut want = want;
    want["rotate_s"] = json!(120.0);
    assert_eq!(
        patched["recording"], want,
        "PATCH keeps the fields it omits"
    );

    // A schedule window must be HH:MM-HH:MM.
    let (status, bad) = send(
        Method::PATCH,
        "/api/v1/streams/rec",
        Some(json!({"recording": {"schedule": ["08:00-09:00", "25:00-01:00"]}})),
    )
    .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["error"]["field"], "recording.schedule[1]", "{bad}");

    // A stream without recording settings has the defaults, off.
    let (status, plain) = send(Method::PUT, "/api/v1/streams/plain", Some(json!({}))).await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(
        plain["recording"],
        json!({"enabled": false, "format": "ts", "rotate_s": 600.0, "rotate_bytes": 0,
               "max_age_s": 0.0, "max_bytes": 0, "schedule": []})
    );

    // Broken rules: 422 naming the field, like failover's; an unknown format does not decode
    // (400, like an unknown rtsp_transport) and the message names the one there is.
    for (body, want_status, want_code, want_field) in [
        (
            json!({"recording": {"rotate_s": 0}}),
            422,
            "VALIDATION_FAILED",
            "recording.rotate_s",
        ),
        (
            json!({"recording": {"max_bytes": 1000}}),
            422,
            "VALIDATION_FAILED",
            "recording.max_bytes",
        ),
        (
            json!({"recording": {"format": "mkv"}}),
            400,
            "INVALID_BODY",
            "recording.format",
        ),
        (
            json!({"recording": {"retention": 5}}),
            400,
            "INVALID_BODY",
            "recording.retention",
        ),
    ] {
        let (status, err) = send(Method::PATCH, "/api/v1/streams/rec", Some(body.clone())).await;
        assert_eq!(
            (
                status,
                err["error"]["code"].as_str(),
                err["error"]["field"].as_str()
            ),
            (want_status, Some(want_code), Some(want_field)),
            "{body}: {err}"
        );
        if want_field == "recording.format" {
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("`ts`"), "{message}");
        }
    }
    let (_, unchanged) = send(Method::GET, "/api/v1/streams/rec", None).await;
    assert_eq!(
        unchanged["recording"], want,
        "refused changes changed nothing"
    );

    // The document describes both shapes.
    let doc = serde_json::to_value(openapi()).expect("document");
    let schemas = &doc["components"]["schemas"];
    for name in ["RecordingSpecInput", "RecordingSpecView"] {
        assert!(
            schemas[name]["properties"]["rotate_s"].is_object(),
            "{name}"
        );
    }
    assert_eq!(
        schemas["StreamView"]["properties"]["recording"]["$ref"],
        "#/components/schemas/RecordingSpecView"
    );
}

/// `transcode` goes in on create, comes back on every read as given (presets unresolved),
/// changes field by field on PATCH, goes back unchanged in a PUT, and breaks its rules with
/// the field named; a push names a rung of the ladder or nothing.
#[tokio::test]
async fn transcode_settings_round_trip_and_are_validated() {
    use serde_json::json;
    let st = state(AdminAccess::local_only()).await;
    let mut app = router(st.clone());
    let mut send = async |method: Method, path: &str, body: Option<serde_json::Value>| {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let mut req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = app.call(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        (status, v)
    };
    let (status, created) = send(
        Method::POST,
        "/api/v1/streams",
        Some(json!({"code": "abr",
            "transcode": {"enabled": true, "hwaccel": "none",
                "profiles": [{"name": "source"}, {"name": "480p"},
                             {"name": "270p", "height": 270, "video_bitrate_kbps": 500}],
                "watermark": {"path": "/srv/logo.png"},
                "text": {"text": "Käse", "timestamp": false}},
            "push": [{"url": "rtmp://h.example/live/k1", "rendition": "480p"},
                     {"url": "rtmp://b.example/live/k2"}]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let rung = |name: &str, height: u32, kbps: u32| {
        json!({"name": name, "width": 0, "height": height, "video_bitrate_kbps": kbps,
               "max_framerate": 0.0, "profile": "", "level": ""})
    };
    let want = json!({
        "enabled": true,
        "profiles": [rung("source", 0, 0), rung("480p", 0, 0), rung("270p", 270, 500)],
        "hwaccel": "none",
        "keyframe_interval_s": 2.0,
        "audio": {"mode": "passthrough", "bitrate_kbps": 128},
        "watermark": {"path": "/srv/logo.png", "position": "top-right", "opacity": 0.8,
                      "margin": 16},
        "text": {"text": "Käse", "timestamp": false, "position": "bottom-left",
                 "font_size": 28},
    });
    assert_eq!(
        created["transcode"], want,
        "omitted fields take their defaults; rungs as given"
    );
    assert_eq!(
        (
            &created["push"][0]["rendition"],
            &created["push"][1]["rendition"]
        ),
        (&json!("480p"), &json!(""))
    );
    let (status, got) = send(Method::GET, "/api/v1/streams/abr", None).await;
    assert_eq!((status, &got["transcode"]), (200, &want));
    let (_, list) = send(Method::GET, "/api/v1/streams", None).await;
    assert_eq!(list["data"][0]["transcode"], want);
    let stored = st.control.transcode("abr").expect("stored");
    assert!(stored.active());
    assert_eq!(stored.profiles[2].resolve().map(|r| r.height), Some(270));
    assert_eq!(
        st.control.rendition_of("abr_480p"),
        Some(("abr".into(), "480p".into()))
    );
    assert_eq!(st.control.get("abr").unwrap().push[0].rendition, "480p");

    // What was read goes back unchanged.
    let (status, put) = send(
        Method::PUT,
        "/api/v1/streams/abr",
        Some(json!({"transcode": got["transcode"], "push": got["push"]})),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!((&put["transcode"], &put["push"]), (&want, &got["push"]));

    let (status, patched) = send(
        Method::PATCH,
        "/api/v1/streams/abr",
        Some(
            json!({"transcode": {"keyframe_interval_s": 4, "audio": {"mode": "aac"},
                                  "watermark": null, "text": {"font_size": 40}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let mut want = want;
    want["keyframe_interval_s"] = json!(4.0);
    want["audio"]["mode"] = json!("aac");
    want["watermark"] = json!(null);
    want["text"]["font_size"] = json!(40);
    assert_eq!(
        patched["transcode"], want,
        "PATCH keeps the fields it omits; null removes the watermark"
    );

    // Broken rules: 422 naming the field; unknown names and fields do not decode (400).
    for (body, want_status, want_code, want_field) in [
        (
            json!({"transcode": {"profiles": [{"name": "480p"}, {"name": "hd"}]}}),
            422,
            "VALIDATION_FAILED",
            "transcode.profiles[1]",
        ),
        (
            json!({"transcode": {"profiles": [{"name": "480p", "height": 481}]}}),
            422,
            "VALIDATION_FAILED",
            "transcode.profiles[0].height",
        ),
        (
            json!({"push": [], "transcode": {"profiles": [{"name": "source"}]}}),
            422,
            "VALIDATION_FAILED",
            "transcode.profiles",
        ),
        (
            json!({"transcode": {"profiles": [{"name": "480p"}, {"name": "480p"}]}}),
            422,
            "VALIDATION_FAILED",
            "transcode.profiles[1].name",
        ),
        (
            json!({"transcode": {"profiles": [{"name": "480p"}, {"name": "Big"}]}}),
            400,
            "VALIDATION_FAILED",
            "transcode.profiles[1].name",
        ),
        (
            json!({"transcode": {"text": {"text": "a\nb"}}}),
            422,
            "VALIDATION_FAILED",
            "transcode.text.text",
        ),
        (
            json!({"transcode": {"audio": {"bitrate_kbps": 8}}}),
            422,
            "VALIDATION_FAILED",
            "transcode.audio.bitrate_kbps",
        ),
        (
            json!({"transcode": {"hwaccel": "amf"}}),
            400,
            "INVALID_BODY",
            "transcode.hwaccel",
        ),
        (
            json!({"transcode": {"profiles": [{"name": "480p", "crf": 23}]}}),
            400,
            "INVALID_BODY",
            "transcode.profiles[0].crf",
        ),
        // A push names a rung of the ladder other than `source`.
        (
            json!({"push": [{"url": "rtmp://h.example/live/k1", "rendition": "720p"}]}),
            422,
            "VALIDATION_FAILED",
            "push[0].rendition",
        ),
        (
            json!({"push": [{"url": "rtmp://h.example/live/k1", "rendition": "source"}]}),
            422,
            "VALIDATION_FAILED",
            "push[0].rendition",
        ),
    ] {
        let (status, err) = send(Method::PATCH, "/api/v1/streams/abr", Some(body.clone())).await;
        assert_eq!(
            (
                status,
                err["error"]["code"].as_str(),
                err["error"]["field"].as_str()
            ),
            (want_status, Some(want_code), Some(want_field)),
            "{body}: {err}"
        );
        if want_field == "transcode.profiles[1]" {
            assert_eq!(
                err["error"]["message"],
                "transcode.profiles[1]: rung 'hd' names no preset (1080p, 720p, 480p, 360p, 240p) and lacks height or video_bitrate_kbps",
                "{err}"
            );
        }
    }
    let (_, unchanged) = send(Method::GET, "/api/v1/streams/abr", None).await;
    assert_eq!(
        unchanged["transcode"], want,
        "refused changes changed nothing"
    );
    // Dropping the rung a push sends is refused as well: the push would send nothing.
    let (status, err) = send(
        Method::PATCH,
        "/api/v1/streams/abr",
        Some(
            json!({"transcode": {"profiles": [{"name": "source"}, {"name": "270p",
            "height": 270, "video_bitrate_kbps": 500}]}}),
        ),
    )
    .await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (422, &json!("push[0].rendition"))
    );
    // A stream without a ladder has no renditions to push.
    let (status, err) = send(
        Method::POST,
        "/api/v1/streams",
        Some(json!({"code": "flat",
            "push": [{"url": "rtmp://h.example/live/k3", "rendition": "480p"}]})),
    )
    .await;
    assert_eq!(
        (status, &err["error"]["field"]),
        (422, &json!("push[0].rendition"))
    );
    let (status, plain) = send(Method::PUT, "/api/v1/streams/plain", Some(json!({}))).await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(
        plain["transcode"],
        json!({"enabled": false, "profiles": [], "hwaccel": "auto", "keyframe_interval_s": 2.0,
               "audio": {"mode": "passthrough", "bitrate_kbps": 128}, "watermark": null,
               "text": null}),
        "the defaults: off"
    );

    // The document describes every shape.
    let doc = serde_json::to_value(openapi()).expect("document");
    let schemas = &doc["components"]["schemas"];
    for (name, field) in [
        ("TranscodeSpecInput", "profiles"),
        ("TranscodeSpecView", "profiles"),
        ("RenditionSpecInput", "video_bitrate_kbps"),
        ("RenditionSpecView", "video_bitrate_kbps"),
        ("TranscodeAudioInput", "bitrate_kbps"),
        ("TranscodeAudioView", "bitrate_kbps"),
        ("WatermarkInput", "opacity"),
        ("WatermarkView", "opacity"),
        ("TextOverlayInput", "font_size"),
        ("TextOverlayView", "font_size"),
        ("PushInput", "rendition"),
        ("PushView", "rendition"),
    ] {
        assert!(
            schemas[name]["properties"][field].is_object(),
            "{name}.{field}: {}",
            schemas[name]
        );
    }
    assert_eq!(
        schemas["StreamView"]["properties"]["transcode"]["$ref"],
        "#/components/schemas/TranscodeSpecView"
    );
    assert_eq!(
        schemas["TemplateView"]["properties"]["transcode"]["$ref"],
        "#/components/schemas/TranscodeSpecView"
    );
}

/// Every code the API can answer is listed where the OpenAPI document describes `code`.
#[test]
fn the_error_code_list_in_the_document_is_complete() {
    let doc = serde_json::to_value(openapi()).expect("document");
    let schemas = &doc["components"]["schemas"];
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("ErrorCode schema: {}", schemas["ErrorCode"]))
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(codes.contains(&"SWITCH_FAILED"), "{codes:?}");
    let detail = schemas["ErrorDetail"].to_string();
    for code in codes {
        assert_eq!(code, code.to_uppercase());
        assert!(
            detail.contains(&format!("`{code}`")),
            "{code} missing from ErrorDetail.code's description: {detail}"
        );
    }
}
