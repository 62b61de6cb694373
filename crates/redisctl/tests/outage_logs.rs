//! Log output of the listener across outages. A binary of its own: tracing caches each
//! callsite's interest process-wide, so a capture installed by one test misses events when
//! other tests run the same callsites on other threads at the same time.

// The package is ferrocast-redisctl; its dependents know it as `redisctl`, and so does this test.
extern crate ferrocast_redisctl as redisctl;

mod common;

use common::*;
use redisctl::{LinkState, RedisConfig, Tuning};
use std::time::Duration;

#[tokio::test]
async fn outages_log_one_warning_each() {
    use tracing::Level;
    let Some(bin) = redis_server_bin() else {
        return skip("redis-server not found");
    };
    // The test runtime is single-threaded, so the listener task logs on this thread.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let mut server = Server::stopped(bin, None);
    let tuning = Tuning {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..fast()
    };
    let mut run = start(RedisConfig::new(server.url()), tuning);
    run.wait_state(
        "failing",
        |s| matches!(s, LinkState::Disconnected { failures, .. } if *failures >= 4),
    )
    .await;
    server.restart().await;
    run.connected().await;
    assert_eq!(capture.count(Level::WARN, "unavailable"), 1);
    assert!(capture.count(Level::DEBUG, "still unavailable") >= 3);
    assert_eq!(capture.count(Level::INFO, "recovered"), 1);

    server.kill();
    run.wait_state(
        "failing again",
        |s| matches!(s, LinkState::Disconnected { failures, .. } if *failures >= 3),
    )
    .await;
    server.restart().await;
    run.connected().await;
    run.stop().await;
    assert_eq!(capture.count(Level::WARN, "lost"), 1);
    assert_eq!(capture.count(Level::WARN, ""), 2, "one warning per outage");
    assert_eq!(capture.count(Level::INFO, "recovered"), 2);
}
