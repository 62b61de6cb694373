use super::*;
use crate::test_server::{Reply, Request, TestServer, closed_port};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

const SECRET: &str = "s3cret";

fn config(url: String) -> CallbackConfig {
    CallbackConfig {
        url,
        jwt_secret: SECRET.into(),
        rtmp_host: "ingest-1.example".into(),
        rtmp_port: 1936,
        timeout: Duration::from_secs(5),
        ..CallbackConfig::default()
    }
}

fn ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies the `rtmp-event` token like a receiver would and returns its claims.
fn claims(request: &Request, secret: &str) -> jsonwebtoken::errors::Result<Value> {
    let token = request.header("rtmp-event").expect("rtmp-event header");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.sub = Some("rtmp_event".into());
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
}

fn assert_empty_post(request: &Request) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/events");
    assert!(request.body.is_empty());
    assert_eq!(request.header("content-length"), Some("0"));
    let lengths = request
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length");
    assert_eq!(lengths.count(), 1);
}

#[tokio::test]
async fn start_sends_the_signed_claims_and_returns_the_stream_id() {
    let server = TestServer::start(Reply::status(200).header("stream-id", "st-123")).await;
    let callback = Callback::new(config(server.url("/events"))).unwrap();
    let stream_id = callback.start("channel1", "key-abc", ip()).await.unwrap();
    assert_eq!(stream_id, "st-123");

    let request = server.next().await;
    assert_empty_post(&request);
    let mut claims = claims(&request, SECRET).unwrap();
    let exp = claims["exp"].as_u64().expect("exp is a number");
    assert!((now() + 115..=now() + 125).contains(&exp), "exp {exp}");
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        claims,
        json!({
            "sub": "rtmp_event",
            "event": "start",
            "channel": "channel1",
            "key": "key-abc",
            "client_ip": "198.51.100.7",
            "rtmp_host": "ingest-1.example",
            "rtmp_port": 1936,
        })
    );
}

#[tokio::test]
async fn a_wrong_secret_does_not_verify() {
    let server = TestServer::start(Reply::status(200)).await;
    let callback = Callback::new(config(server.url("/events"))).unwrap();
    callback.start("c", "k", ip()).await.unwrap();
    let request = server.next().await;
    assert!(claims(&request, "not-the-secret").is_err());
    assert!(claims(&request, SECRET).is_ok());
}

#[tokio::test]
async fn custom_subject_and_mapped_client_ip() {
    let server = TestServer::start(Reply::status(200)).await;
    let callback = Callback::new(CallbackConfig {
        subject: "my_subject".into(),
        ..config(server.url("/events"))
    })
    .unwrap();
    let mapped: IpAddr = "::ffff:192.0.2.44".parse().unwrap();
    callback.start("c", "k", mapped).await.unwrap();
    let token = server.next().await;
    let token = token.header("rtmp-event").unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.sub = Some("my_subject".into());
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["client_ip"], "192.0.2.44");
}

#[tokio::test]
async fn ok_without_stream_id_is_accepted_with_an_empty_id() {
    let server = TestServer::start(Reply::status(200)).await;
    let callback = Callback::new(config(server.url("/events"))).unwrap();
    assert_eq!(callback.start("c", "k", ip()).await.unwrap(), "");
}

#[tokio::test]
async fn anything_but_200_is_a_refusal() {
    let server = TestServer::start(Reply::status(200)).await;
    let callback = Callback::new(config(server.url("/events"))).unwrap();
    for status in [201, 204, 302, 403, 500] {
        server.set_reply(
            Reply::status(status)
                .header("stream-id", "x")
                .header("Location", "/y"),
        );
        let err = callback.start("c", "k", ip()).await.unwrap_err();
        assert!(
            matches!(err, CallbackError::Refused(s) if s == status),
            "{err}"
        );
        assert!(err.is_refusal());
    }
    assert_eq!(server.drain().await.len(), 5, "redirects are not followed");
}

#[tokio::test]
async fn unreachable_and_slow_receivers_are_errors() {
    let port = closed_port().await;
    let callback = Callback::new(config(format!("http://127.0.0.1:{port}/events"))).unwrap();
    let err = callback.start("c", "k", ip()).await.unwrap_err();
    assert!(matches!(err, CallbackError::Unreachable(_)), "{err}");
    assert!(!err.is_refusal());

    let server = TestServer::start(Reply::status(200).delay(Duration::from_secs(30))).await;
    let callback = Callback::new(CallbackConfig {
        timeout: Duration::from_millis(300),
        ..config(server.url("/events"))
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = callback.start("c", "k", ip()).await.unwrap_err();
    assert!(matches!(err, CallbackError::Timeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn stop_carries_the_stream_id_and_close_waits() {
    let server = TestServer::start(Reply::status(200).delay(Duration::from_millis(200))).await;
    let callback = Callback::new(config(server.url("/events"))).unwrap();
    callback.stop("channel1", "key-abc", ip(), "st-123");
    callback.close().await;
    assert_eq!(callback.in_flight(), 0);

    let request = server.next().await;
    assert_empty_post(&request);
    let mut claims = claims(&request, SECRET).unwrap();
    assert!(claims["exp"].as_u64().is_some());
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        claims,
        json!({
            "sub": "rtmp_event",
            "event": "stop",
            "channel": "channel1",
            "key": "key-abc",
            "stream_id": "st-123",
            "client_ip": "198.51.100.7",
        })
    );

    callback.stop("channel1", "key-abc", ip(), "st-123");
    assert_eq!(callback.dropped(), 1, "closed callback drops");
}

#[tokio::test]
async fn stops_over_the_bound_are_dropped() {
    let server = TestServer::start(Reply::status(200).delay(Duration::from_millis(300))).await;
    let callback = Callback::with_limit(config(server.url("/events")), 1).unwrap();
    callback.stop("c", "k", ip(), "1");
    callback.stop("c", "k", ip(), "2");
    assert_eq!(callback.dropped(), 1);
    callback.close().await;
    assert_eq!(server.drain().await.len(), 1);
}

#[test]
fn config_is_checked_and_the_secret_stays_out_of_debug() {
    let err = Callback::new(config("rtmp://h/x".into()))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("url: "), "{err}");
    let err = Callback::new(CallbackConfig {
        jwt_secret: String::new(),
        ..config("http://127.0.0.1:1/events".into())
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("jwt_secret: "), "{err}");

    let debug = format!("{:?}", config("http://127.0.0.1:1/events?token=q".into()));
    assert!(
        !debug.contains(SECRET) && !debug.contains("token=q"),
        "{debug}"
    );
    let defaults = CallbackConfig::default();
    assert_eq!(
        (defaults.subject.as_str(), defaults.rtmp_port),
        ("rtmp_event", 1935)
    );
}
