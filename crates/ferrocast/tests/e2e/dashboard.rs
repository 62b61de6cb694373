//! The web dashboard (`web/`, embedded and served at `/`) in headless Chromium, driven by
//! `tests/browser/dashboard.mjs` as an operator would use it: create a stream through the form
//! (field errors shown beside the fields first), publish 1280x720 to it with ffmpeg, see it
//! live in the list at that resolution, play the preview with HLS and DASH, see its push to
//! a second path of the same gateway go `active`, kick a reader, take it idle and back, and
//! edit it; with `api.token`, the page asking for the token once; and a stream pulling two
//! inputs (UDP MPEG-TS from ffmpeg, and a looped file) created through the form, their states
//! in the Inputs card, a switch to the backup from the page, the primary going down, a
//! refused switch, a restart, and an edit that keeps both.
//!
//! `FERROCAST_DASHBOARD_SCREENSHOTS=DIR` also saves a screenshot of each page into DIR (how
//! `docs/screenshots/` is made).

use crate::dash::browser_ready;
use crate::support::api::Api;
use crate::support::proc::run;
use crate::support::server::free_udp_addr;
use crate::support::{Fixture, Server};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "dashboard-e2e-token";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/dashboard.mjs")
}

/// Runs the script against `server` with `args`; returns its report, failing with it (and the
/// server log) unless every step passed.
fn drive(server: &Server, args: &[String]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(script())
        .arg("--base")
        .arg(format!("http://{}", server.http))
        .args(args);
    if let Some(dir) = std::env::var_os("FERROCAST_DASHBOARD_SCREENSHOTS") {
        cmd.arg("--screenshots").arg(dir);
    }
    let out = run(&mut cmd, Duration::from_secs(300));
    let report: Value = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    // The error and the last step passed come first: CI shows only part of a long report.
    let last_step = report["steps"]
        .as_array()
        .and_then(|s| s.last())
        .map(|s| s["step"].to_string())
        .unwrap_or_default();
    assert!(
        out.success() && report["ok"] == true,
        "dashboard run failed ({:?} after {:?}): {} (after step {last_step})\n{}\n{}\n\
         --- server log ---\n{}",
        out.status,
        out.elapsed,
        report["error"].as_str().unwrap_or("no error in the report"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
        out.stderr,
        crate::support::proc::tail(&server.log(), 40)
    );
    report
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name:?} in {report:#}"))
}

#[test]
fn dashboard_create_publish_play_push_kick_in_chromium() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let server = Server::start();
    // The embedded files from the real binary: the page, a player, revalidation.
    let index = server.get("/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(index.header("etag").is_some());
    let hls = server.get("/vendor/hls.min.js");
    assert_eq!(hls.status, 200);
    assert!(hls.body.len() > 100_000, "hls.js is embedded");

    let fixture = Fixture::Hd720.path();
    let report = drive(
        &server,
        &[
            "--rtmp".into(),
            format!("rtmp://{}", server.rtmp),
            "--fixture".into(),
            fixture.display().to_string(),
        ],
    );
    for name in ["HLS preview plays", "DASH preview plays"] {
        let s = step(&report, name);
        assert_eq!(
            (s["width"].as_u64(), s["height"].as_u64()),
            (Some(1280), Some(720))
        );
    }
    assert!(
        step(&report, "field error beside code")["message"]
            .as_str()
            .is_some_and(|m| m.contains("must match"))
    );
    eprintln!(
        "dashboard: {} steps in {} ms",
        report["steps"].as_array().map_or(0, Vec::len),
        report["elapsed_ms"]
    );

    // What the form stored, as any API client sees it: the key set but never shown.
    let api = Api::new(server.http);
    let s = api.stream("studio");
    assert_eq!(s["name"], "Main studio");
    assert_eq!(s["has_stream_key"], true);
    assert!(!s.to_string().contains("e2e-Key_123"));
    let push = &s["push"][0];
    assert_eq!(push["comment"], "loopback");
    assert_eq!(push["url"], format!("rtmp://{}/live/****", server.rtmp));
    let waiting = &s["push"][1];
    assert_eq!(waiting["timeout_s"], 2);
    assert_eq!(waiting["retry"]["initial_s"], 120.0);
}

#[test]
fn dashboard_asks_for_the_api_token_once() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let server = Server::builder().set("api.token", TOKEN).start();
    drive(&server, &["--token".into(), TOKEN.into()]);
    // The page used the header, never the URL: nothing in the log carries the token.
    assert!(!server.log().contains(TOKEN));
}

#[test]
fn dashboard_inputs_card_shows_states_and_switches_in_chromium() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let server = Server::start();
    // The script feeds this address with ffmpeg, and stops it to take the primary down.
    let udp = free_udp_addr();
    let report = drive(
        &server,
        &[
            "--inputs-udp".into(),
            format!("udp://{udp}"),
            "--fixture".into(),
            Fixture::Small.path().display().to_string(),
        ],
    );
    assert!(
        step(&report, "field error beside inputs[0].url")["message"]
            .as_str()
            .is_some_and(|m| m.contains("unsupported scheme"))
    );
    let top = &step(&report, "switched to the backup from the page")["top"];
    assert_eq!(top["from"], "0");
    assert_eq!(top["to"], "1");
    assert_eq!(top["reason"], "manual");
    assert!(
        step(
            &report,
            "a switch to a down input is refused with the reason"
        )["refused"]
            .as_str()
            .is_some_and(|m| m.contains("not delivering media"))
    );
    eprintln!(
        "dashboard inputs: {} steps in {} ms",
        report["steps"].as_array().map_or(0, Vec::len),
        report["elapsed_ms"]
    );

    // What the page did, as any API client sees it: the manual switch and the restart are in
    // the history, and the stream runs on the backup, no longer pinned.
    let api = Api::new(server.http);
    let s = api.stream("feeds");
    assert_eq!(s["name"], "Feeds with failover");
    assert_eq!(s["inputs"][1]["priority"], 5);
    assert_eq!(s["failover"]["packet_timeout_s"], 2.0);
    let inputs = &s["runtime"]["inputs"];
    assert_eq!(inputs["active"], 1, "{inputs:#}");
    assert_eq!(inputs["pinned"], Value::Null, "{inputs:#}");
    let reasons: Vec<&str> = inputs["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    let manual = reasons.iter().position(|r| *r == "manual");
    let restart = reasons.iter().position(|r| *r == "restart");
    assert!(manual.is_some() && restart > manual, "history: {inputs:#}");
}
