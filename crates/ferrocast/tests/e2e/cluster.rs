//! Several nodes on one PostgreSQL (issue 18): configuration written on any node, or by hand
//! in psql, shows on every other within a second and is applied to its running streams.

use crate::support::api::Api;
use crate::support::pg::PgSchema;
use crate::support::{Fixture, Server, wait_until};
use serde_json::json;
use std::time::{Duration, Instant};

/// Polls `api` until `check` holds for its answer to `GET path` (status and body), and
/// returns how long that took; fails after 1 s, the bound.
fn within_a_second(what: &str, check: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    wait_until(what, Duration::from_secs(1), || check().then_some(()));
    t0.elapsed()
}

#[test]
fn configuration_changed_on_any_node_reaches_the_others_within_a_second() {
    let Some(pg) = PgSchema::create("cluster_config") else {
        return;
    };
    let nodes: Vec<Server> = (0..3)
        .map(|_| Server::builder().set("database.url", pg.url()).start())
        .collect();
    let apis: Vec<Api> = nodes.iter().map(|n| Api::new(n.http)).collect();
    let (a, b, c) = (&apis[0], &apis[1], &apis[2]);
    let mut delays = Vec::new();

    // Created on B: A and C list it with the same fields.
    b.put("streams/news", &json!({"name": "News", "tags": ["eu"]}))
        .ok(201);
    for (i, api) in [(0, a), (2, c)] {
        delays.push(within_a_second(&format!("node {i} to see news"), || {
            let r = api.get("streams/news");
            r.status == 200 && r.json["name"] == "News"
        }));
    }
    // Changed on C: A and B follow.
    c.patch("streams/news", &json!({"name": "News 24"})).ok(200);
    for (i, api) in [(0, a), (1, b)] {
        delays.push(within_a_second(
            &format!("node {i} to see the rename"),
            || api.get("streams/news").json["name"] == "News 24",
        ));
    }
    // Edited by hand in psql: every node follows.
    pg.psql(&format!(
        "UPDATE \"{}\".streams SET name = 'by hand' WHERE code = 'news'",
        pg.name
    ));
    for (i, api) in apis.iter().enumerate() {
        delays.push(within_a_second(
            &format!("node {i} to see the hand edit"),
            || api.get("streams/news").json["name"] == "by hand",
        ));
    }
    // A template made on A is known on C.
    a.put("templates/cams", &json!({"prefix": "cam-"})).ok(201);
    delays.push(within_a_second("node 2 to see the template", || {
        c.get("templates/cams").status == 200
    }));

    // Applied, not only listed: disabled on B, the stream's publisher on A is disconnected.
    let publisher = nodes[0].publish("news", Fixture::Small);
    nodes[0].wait_live("news");
    b.patch("streams/news", &json!({"disabled": true})).ok(200);
    delays.push(within_a_second(
        "the publisher on node 0 to be disconnected",
        || nodes[0].get("/live/news/mpegts").status != 200,
    ));
    drop(publisher);

    // The LISTEN sessions are cut (a PostgreSQL restart, a proxy's idle kill): each node
    // reconnects, reads everything again, and hears the next changes.
    let cut = pg.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%ferrocast_config%'",
    );
    assert!(
        cut.parse::<u32>().unwrap_or(0) >= 3,
        "LISTEN sessions cut: {cut}"
    );
    pg.psql(&format!(
        "UPDATE \"{}\".streams SET name = 'while deaf' WHERE code = 'news'",
        pg.name
    ));
    for (i, api) in apis.iter().enumerate() {
        wait_until(
            &format!("node {i} to catch up"),
            Duration::from_secs(5),
            || (api.get("streams/news").json["name"] == "while deaf").then_some(()),
        );
    }
    b.patch("streams/news", &json!({"name": "after"})).ok(200);
    for (i, api) in [(0, a), (2, c)] {
        delays.push(within_a_second(&format!("node {i} to hear again"), || {
            api.get("streams/news").json["name"] == "after"
        }));
    }

    // Deleted on C: gone everywhere.
    assert_eq!(c.delete("streams/news").status, 204);
    for (i, api) in [(0, a), (1, b)] {
        delays.push(within_a_second(&format!("node {i} to forget news"), || {
            api.get("streams/news").status == 404
        }));
    }
    delays.sort();
    eprintln!(
        "cluster config: {} changes seen, slowest after {:?}, median {:?}",
        delays.len(),
        delays.last().unwrap(),
        delays[delays.len() / 2]
    );
}
