//! The registry against a real Redis (`TEST_REDIS_URL`, skipped without it).

use crate::{Claim, Registry, RegistryConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[expect(clippy::print_stderr, reason = "the one-line skip note is the point")]
fn nodes(test: &str, ttl: Duration, takeover: bool) -> Option<(Registry, Registry)> {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("{test}: TEST_REDIS_URL not set, skipping");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("test-{test}-{}-{nanos}:", std::process::id());
    let node = |id: &str, takeover| {
        Registry::new(RegistryConfig {
            redis_url: url.clone(),
            node_id: id.into(),
            rtmp_url: format!("rtmp://{id}.example/live"),
            http_url: format!("http://{id}.example:8080"),
            prefix: prefix.clone(),
            ttl,
            takeover,
        })
        .unwrap()
    };
    Some((node("a", false), node("b", takeover)))
}

/// One holder per code; the holder's address is known; a release frees the code at once.
#[tokio::test]
async fn one_node_holds_a_code_until_it_releases_it() {
    let Some((a, b)) = nodes("hold", Duration::from_secs(10), false) else {
        return;
    };
    assert_eq!(a.claim("cam").await, Claim::Ours);
    assert_eq!(
        a.claim("cam").await,
        Claim::Ours,
        "claiming again is idempotent"
    );
    assert_eq!(b.claim("cam").await, Claim::Taken("a".into()));
    assert_eq!(b.locate("cam").await.as_deref(), Some("a"));
    assert_eq!(b.locate("other").await, None);
    let stop = CancellationToken::new();
    let heartbeat = tokio::spawn(a.clone().run(
        |_: &str, _: &str| {},
        || vec![("cam".to_owned(), 3)],
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.http_url("a").await.as_deref(),
        Some("http://a.example:8080")
    );
    // One cluster key, created by whichever node asks first, read by every node.
    let key = b.cluster_key().await.expect("a key");
    assert_eq!(key.len(), 32);
    assert_eq!(a.cluster_key().await, Some(key.clone()));
    assert_eq!(a.known_cluster_key(), Some(key.clone()));
    // The holder and its URLs in one call; none for a code nobody holds.
    assert_eq!(
        b.origin("cam").await,
        Some((
            "a".to_owned(),
            "rtmp://a.example/live".to_owned(),
            "http://a.example:8080".to_owned()
        ))
    );
    assert_eq!(b.origin("other").await, None);
    // Only a node that renews its registration is listed.
    assert_eq!(
        b.nodes().await,
        Some(vec![("a".to_owned(), "http://a.example:8080".to_owned())])
    );
    // The cluster's view: where it is published, and readers per node.
    let places = b.places("cam").await.expect("Redis answers");
    assert_eq!(places.origin.as_deref(), Some("a"));
    assert_eq!(places.readers.get("a"), Some(&3));
    a.hold("cam", 7);
    // A session that never held the code releases nothing.
    a.release("cam", 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.locate("cam").await.as_deref(), Some("a"));
    a.release("cam", 7);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.locate("cam").await, None);
    // A claim whose session never opens goes soon, not a TTL later; one that opened stays.
    assert_eq!(b.claim("unopened").await, Claim::Ours);
    b.forget_unopened("unopened", Duration::from_millis(100));
    assert_eq!(b.claim("opened").await, Claim::Ours);
    b.hold("opened", 11);
    b.forget_unopened("opened", Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.locate("unopened").await, None);
    assert_eq!(a.locate("opened").await.as_deref(), Some("b"));
    b.release("opened", 11);
    // A session that ends before its claim lands leaves nothing behind.
    a.hold("brief", 9);
    a.release("brief", 9);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.locate("brief").await, None);
    assert_eq!(b.claim("cam").await, Claim::Ours);
    stop.cancel();
    heartbeat.await.unwrap();
}

/// A holder's heartbeat keeps its code past the TTL; a holder that stops renewing loses it
/// one TTL later; with takeover, a claim wins at once and the old holder hears it lost.
#[tokio::test]
async fn the_ttl_frees_a_dead_node_and_takeover_tells_the_loser() {
    let ttl = Duration::from_millis(600);
    let Some((a, b)) = nodes("ttl", ttl, true) else {
        return;
    };
    let lost: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = CancellationToken::new();
    let heard = lost.clone();
    let heartbeat = tokio::spawn(a.clone().run(
        move |code: &str, node: &str| heard.lock().unwrap().push((code.into(), node.into())),
        Vec::new,
        stop.clone(),
    ));
    a.hold("kept", 1);
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(b.locate("kept").await.as_deref(), Some("a"), "renewed");
    // Takeover: b claims it; a's next heartbeat hears it lost.
    assert_eq!(b.claim("kept").await, Claim::Ours);
    tokio::time::sleep(ttl).await;
    assert_eq!(
        lost.lock().unwrap().as_slice(),
        [("kept".to_owned(), "b".to_owned())]
    );
    // A node that stops renewing (a crash) loses its codes one TTL later.
    stop.cancel();
    heartbeat.await.unwrap();
    assert_eq!(a.claim("gone").await, Claim::Ours);
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(b.locate("gone").await, None);
    // ...and leaves the list of nodes.
    assert_eq!(b.nodes().await, Some(Vec::new()));
}

/// Redis unreachable: claims say so (the publish goes ahead), lookups find nothing, and no
/// call waits longer than its bound.
#[tokio::test]
async fn without_redis_a_node_works_alone() {
    let r = offline_registry("a");
    let t0 = std::time::Instant::now();
    assert_eq!(r.claim("cam").await, Claim::Unavailable);
    assert_eq!(r.locate("cam").await, None);
    assert_eq!(r.nodes().await, None);
    assert!(matches!(
        r.kill_remote("cam").await,
        Err(crate::KillError::Unavailable(_))
    ));
    // After the first failure, calls fail at once instead of each waiting.
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// A registry of node `id` whose Redis never answers.
pub(crate) fn offline_registry(id: &str) -> Registry {
    Registry::new(RegistryConfig {
        redis_url: "redis://127.0.0.1:1".into(),
        node_id: id.into(),
        rtmp_url: String::new(),
        http_url: String::new(),
        prefix: "x:".into(),
        ttl: Duration::from_secs(5),
        takeover: false,
    })
    .unwrap()
}
