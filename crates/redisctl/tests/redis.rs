//! The listener against real servers: a private `redis-server` per test (skipped when the binary
//! is absent), fake servers for failure paths, and `TEST_REDIS_URL` when set.

// The package is ferrocast-redisctl; its dependents know it as `redisctl`, and so does this test.
extern crate ferrocast_redisctl as redisctl;

mod common;

use common::*;
use redisctl::{LinkState, RedisConfig, Tuning, url_from_parts};
use std::net::TcpListener as StdTcpListener;
use std::time::Duration;

#[tokio::test]
async fn delivers_in_order_and_ignores_garbage() {
    let Some(bin) = redis_server_bin() else {
        return skip("redis-server not found");
    };
    let server = Server::start(bin, None).await;
    let mut run = start(RedisConfig::new(server.url()), fast());
    run.connected().await;

    let url = server.url();
    let ch = redisctl::DEFAULT_CHANNEL;
    publish(&url, ch, "kill-session>a").await;
    publish(&url, ch, "garbage").await;
    publish(&url, ch, "close-stream>b|s1").await;
    publish(&url, ch, "close-stream>no-id").await;
    publish(&url, ch, &format!("kill-session>{}", "x".repeat(100_000))).await;
    publish(&url, ch, "KILL-SESSION>upper").await;
    let others = publish_once(&url, "other_channel", "kill-session>z").await;
    assert_eq!(others.unwrap(), 0);
    publish(&url, ch, " kill-session>c ").await;

    assert_eq!(run.next().await, kill("a"));
    assert_eq!(run.next().await, close("b", "s1"));
    assert_eq!(run.next().await, kill("c"));
    assert!(run.commands.try_recv().is_err(), "nothing else");
    run.stop().await;
}

#[tokio::test]
async fn reconnects_after_server_restart() {
    let Some(bin) = redis_server_bin() else {
        return skip("redis-server not found");
    };
    let mut server = Server::start(bin, None).await;
    let mut cfg = RedisConfig::new(server.url());
    cfg.channel = "ctl".into();
    let mut run = start(cfg, fast());
    run.connected().await;
    publish(&server.url(), "ctl", "kill-session>before").await;
    assert_eq!(run.next().await, kill("before"));

    server.kill();
    let s = run
        .wait_state("disconnected", |s| {
            matches!(s, LinkState::Disconnected { .. })
        })
        .await;
    let LinkState::Disconnected { failures, .. } = s else {
        unreachable!()
    };
    assert!(failures >= 1);
    // Let a few attempts fail against the closed port before the server comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    run.connected().await;
    publish(&server.url(), "ctl", "close-stream>after|9").await;
    assert_eq!(run.next().await, close("after", "9"));

    // And once more, to see the backoff does not stick.
    server.restart().await;
    run.connected().await;
    publish(&server.url(), "ctl", "kill-session>again").await;
    assert_eq!(run.next().await, kill("again"));
    run.stop().await;
}

#[tokio::test]
async fn password_is_sent_percent_encoded() {
    let Some(bin) = redis_server_bin() else {
        return skip("redis-server not found");
    };
    let password = "p@ss:w/rd%?&=+";
    let server = Server::start(bin, Some(password)).await;
    let mut run = start(RedisConfig::new(server.url()), fast());
    run.connected().await;
    publish(
        &server.url(),
        redisctl::DEFAULT_CHANNEL,
        "kill-session>secret",
    )
    .await;
    assert_eq!(run.next().await, kill("secret"));
    run.stop().await;

    // A wrong password: the listener keeps retrying and says why, and still stops promptly.
    let bad = url_from_parts("127.0.0.1", server.port, Some("wrong"), false);
    let mut run = start(RedisConfig::new(bad), fast());
    let s = run
        .wait_state(
            "failing",
            |s| matches!(s, LinkState::Disconnected { failures, .. } if *failures >= 2),
        )
        .await;
    let LinkState::Disconnected { last_error, .. } = s else {
        unreachable!()
    };
    assert!(
        last_error.to_ascii_lowercase().contains("pass")
            || last_error.to_ascii_lowercase().contains("auth"),
        "{last_error}"
    );
    assert!(
        !last_error.contains("wrong"),
        "no password in errors: {last_error}"
    );
    run.stop().await;
}

#[tokio::test]
async fn shutdown_while_connected_is_prompt() {
    let Some(bin) = redis_server_bin() else {
        return skip("redis-server not found");
    };
    let server = Server::start(bin, None).await;
    let mut run = start(RedisConfig::new(server.url()), fast());
    run.connected().await;
    run.stop().await;
}

#[tokio::test]
async fn shutdown_while_backing_off_is_prompt() {
    // Nothing listens on this port: every attempt is refused at once.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let tuning = Tuning {
        initial_backoff: Duration::from_secs(60),
        ..fast()
    };
    let mut run = start(RedisConfig::new(url), tuning);
    let s = run
        .wait_state("disconnected", |s| {
            matches!(s, LinkState::Disconnected { .. })
        })
        .await;
    let LinkState::Disconnected {
        failures, retry_in, ..
    } = s
    else {
        unreachable!()
    };
    assert_eq!(failures, 1);
    assert!(retry_in >= Duration::from_secs(45), "{retry_in:?}");
    run.stop().await;
}

#[tokio::test]
async fn silent_server_times_out_and_shutdown_is_prompt_while_connecting() {
    // Accepts TCP (the kernel does, via the backlog) but never answers.
    let silent = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let tuning = Tuning {
        connect_timeout: Duration::from_millis(300),
        ..fast()
    };
    let mut run = start(RedisConfig::new(url.clone()), tuning);
    let s = run
        .wait_state("timed out", |s| matches!(s, LinkState::Disconnected { .. }))
        .await;
    let LinkState::Disconnected { last_error, .. } = s else {
        unreachable!()
    };
    assert!(last_error.contains("no answer"), "{last_error}");
    run.stop().await;

    // Cancelled in the middle of a (long) connect.
    let tuning = Tuning {
        connect_timeout: Duration::from_secs(60),
        ..fast()
    };
    let mut run = start(RedisConfig::new(url), tuning);
    run.wait_state("connecting", |s| matches!(s, LinkState::Connecting { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.stop().await;
    drop(silent);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rediss_against_plain_tcp_fails_without_panicking() {
    // Accepts and hangs up: the TLS handshake fails; the rustls provider must be available.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            drop(sock);
        }
    });
    let mut run = start(RedisConfig::new(format!("rediss://{addr}")), fast());
    let s = run
        .wait_state("failing", |s| matches!(s, LinkState::Disconnected { .. }))
        .await;
    assert!(matches!(s, LinkState::Disconnected { .. }));
    run.stop().await;
    closer.abort();
}

#[tokio::test]
async fn external_server_from_env() {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        return skip("TEST_REDIS_URL not set");
    };
    // A channel of our own, so parallel runs and other users of that server do not interfere.
    let channel = format!("redisctl_test_{}_{}", std::process::id(), free_port());
    let mut cfg = RedisConfig::new(url.clone());
    cfg.channel = channel.clone();
    let mut run = start(cfg, fast());
    run.connected().await;
    publish(&url, &channel, "close-stream>ext|1").await;
    assert_eq!(run.next().await, close("ext", "1"));
    run.stop().await;
}
