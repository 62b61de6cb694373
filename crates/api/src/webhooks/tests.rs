//! `/api/v1/hooks` through the router: CRUD with write-only secrets and masked URLs, the
//! error shapes, the test delivery against a real receiver, and the sink metrics.

use super::*;
use crate::AdminAccess;
use crate::tests::state;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower_service::Service;

async fn call(
    app: &mut axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = app.call(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn hooks_round_trip_with_write_only_secrets_and_masked_urls() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = crate::router(st.clone());
    let (status, created) = call(
        &mut app,
        "POST",
        "/api/v1/hooks",
        Some(json!({
            "name": "ops",
            "url": "https://u:pw@hooks.example/in?token=abc",
            "secret": "s3cret-key",
            "events": ["stream.*", "input.down"],
            "streams": ["cam1"],
            "queue_max": 50,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(::events::valid_id(&id), "{id}");
    assert_eq!(created["kind"], "http");
    assert_eq!(created["url"], "https://u:****@hooks.example/in?****");
    assert_eq!(created["has_secret"], true);
    assert!(!created.to_string().contains("s3cret-key"), "{created}");
    assert!(!created.to_string().contains("token=abc"), "{created}");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["queue_max"], 50);
    assert_eq!(created["batch_max"], 100, "default");
    assert_eq!(created["batch_delay_ms"], 1000, "default");
    assert!(created.get("path").is_none());
    assert_eq!(created["runtime"]["delivered"], 0);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, list) = call(&mut app, "GET", "/api/v1/hooks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["data"][0]["id"], id.as_str());

    // What was read, sent back with a change: the masked URL keeps the real one.
    let mut edited = created.clone();
    let obj = edited.as_object_mut().unwrap();
    for k in ["runtime", "has_secret", "created_at", "updated_at", "kind"] {
        obj.remove(k);
    }
    obj.insert("name".into(), json!("renamed"));
    let (status, put) = call(
        &mut app,
        "PUT",
        &format!("/api/v1/hooks/{id}"),
        Some(edited),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["name"], "renamed");
    assert_eq!(put["has_secret"], false, "PUT without a secret removes it");
    assert_eq!(
        st.webhooks.get(&id).unwrap().record.target,
        "https://u:pw@hooks.example/in?token=abc"
    );
    assert_eq!(put["created_at"], created["created_at"]);

    let (status, patched) = call(
        &mut app,
        "PATCH",
        &format!("/api/v1/hooks/{id}"),
        Some(json!({"secret": "other", "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["has_secret"].clone(), patched["enabled"].clone()),
        (json!(true), json!(false))
    );
    let (_, patched) = call(
        &mut app,
        "PATCH",
        &format!("/api/v1/hooks/{id}"),
        Some(json!({"secret": null, "path": "ops/events.jsonl"})),
    )
    .await;
    assert_eq!(patched["kind"], "file");
    assert_eq!(patched["path"], "ops/events.jsonl");
    assert!(patched.get("url").is_none());
    assert_eq!(patched["has_secret"], false);

    let (status, _) = call(&mut app, "DELETE", &format!("/api/v1/hooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&mut app, "GET", &format!("/api/v1/hooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, _) = call(&mut app, "DELETE", &format!("/api/v1/hooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_hooks_are_refused_naming_the_field() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = crate::router(st);
    for (body, status, field) in [
        (
            json!({"url": "http://h/x", "events": ["stream.bogus"]}),
            422,
            "events[0]",
        ),
        (
            json!({"url": "http://h/x", "streams": ["a b"]}),
            422,
            "streams[0]",
        ),
        (json!({"url": "ftp://h/x"}), 422, "url"),
        (json!({"path": "../../etc/passwd"}), 422, "path"),
        (json!({"path": "x.jsonl", "secret": "k"}), 422, "secret"),
        (
            json!({"url": "http://h/x", "batch_max": 0}),
            422,
            "batch_max",
        ),
        (json!({"kind": "smtp", "url": "http://h/x"}), 400, "kind"),
        (json!({"kind": "file", "url": "http://h/x"}), 400, "url"),
        (json!({}), 400, "url"),
        (json!({"id": "a/b", "url": "http://h/x"}), 400, "id"),
        (json!({"url": "http://h/x", "bogus": 1}), 400, "bogus"),
        (json!({"url": "http://h/x?k=****"}), 422, "url"),
    ] {
        let (got, err) = call(&mut app, "POST", "/api/v1/hooks", Some(body.clone())).await;
        assert_eq!(got.as_u16(), status, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let hook = json!({"id": "dup", "url": "http://h/x"});
    let (s, _) = call(&mut app, "POST", "/api/v1/hooks", Some(hook.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, err) = call(&mut app, "POST", "/api/v1/hooks", Some(hook)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    let (s, err) = call(
        &mut app,
        "PUT",
        "/api/v1/hooks/dup",
        Some(json!({"id": "other", "url": "http://h/"})),
    )
    .await;
    assert_eq!(
        (s, err["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("id"))
    );
    let (s, _) = call(
        &mut app,
        "PUT",
        "/api/v1/hooks/new-one",
        Some(json!({"url": "http://h/"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &mut app,
        "PATCH",
        "/api/v1/hooks/none",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&mut app, "POST", "/api/v1/hooks/none/test", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A receiver for one request: answers `status` and returns the request's head and body.
async fn one_request(status: u16) -> (SocketAddr, tokio::task::JoinHandle<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                s.write_all(reply.as_bytes()).await.unwrap();
                return (head, buf[end + 4..end + 4 + len].to_vec());
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn the_test_delivery_reaches_that_hook_signed_and_reports_the_outcome() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = crate::router(st.clone());
    let (addr, got) = one_request(202).await;
    let (s, _) = call(
        &mut app,
        "POST",
        "/api/v1/hooks",
        Some(json!({"id": "rx", "url": format!("http://{addr}/hook"), "secret": "k3y", "enabled": false})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, out) = call(&mut app, "POST", "/api/v1/hooks/rx/test", None).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["status"], 202);
    assert!(out["latency_ms"].is_u64());
    assert_eq!(out["event"]["type"], "hook.test");
    let (head, body) = got.await.unwrap();
    let sig = head
        .lines()
        .find_map(|l| l.strip_prefix("x-ferrocast-signature: "))
        .expect("signed");
    assert_eq!(sig, ::events::signature("k3y", &body));
    let sent: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent, [out["event"].clone()]);

    // A receiver that is not there: 200 with the failure.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (s, _) = call(
        &mut app,
        "PUT",
        "/api/v1/hooks/rx",
        Some(json!({"url": format!("http://{gone}/hook")})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, out) = call(&mut app, "POST", "/api/v1/hooks/rx/test", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(out["ok"], false);
    assert!(out.get("status").is_none_or(Value::is_null), "{out}");
    assert!(
        out["error"].as_str().unwrap().starts_with("cannot connect"),
        "{out}"
    );
}

#[tokio::test]
async fn sinks_show_in_metrics_by_id() {
    let st = state(AdminAccess::local_only()).await;
    let mut app = crate::router(st.clone());
    let (s, _) = call(
        &mut app,
        "POST",
        "/api/v1/hooks",
        Some(json!({"id": "m1", "url": "http://127.0.0.1:9/x", "queue_max": 2, "batch_delay_ms": 60000})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for _ in 0..5 {
        st.webhooks
            .bus()
            .emit(::events::EventKind::StreamStarted, Some("c"), json!({}));
    }
    let mut req = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = app.call(req).await.unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "ferrocast_webhook_events_dropped_total{hook=\"m1\",kind=\"http\"} 3",
        "ferrocast_webhook_events_queued{hook=\"m1\",kind=\"http\"} 2",
        "ferrocast_webhook_events_delivered_total{hook=\"m1\",kind=\"http\"} 0",
        "ferrocast_webhook_events_failed_total{hook=\"m1\",kind=\"http\"} 0",
        "ferrocast_events_total 5",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    let (_, view) = call(&mut app, "GET", "/api/v1/hooks/m1", None).await;
    assert_eq!(view["runtime"]["dropped"], 3);
    assert_eq!(view["runtime"]["queued"], 2);
}
