//! Configuration errors: the binary refuses to start with a message an operator can act on.

use crate::support::ScratchDir;
use crate::support::proc::{Finished, run};
use crate::support::server::{base_command, free_addrs, free_udp_addr};
use std::net::TcpListener;
use std::time::Duration;

fn assert_clean_failure(out: &Finished, what: &str) {
    assert!(out.exited(), "{what}: the binary did not exit within 15 s");
    assert!(
        !out.success(),
        "{what}: the binary exited 0\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(
            !out.stderr.contains(bad),
            "{what}: stderr looks like a panic ({bad:?}):\n{}",
            out.stderr
        );
    }
}

#[test]
fn unknown_config_key_is_named_and_fatal() {
    let dir = ScratchDir::new();
    let file = dir.path().join("ferrocast.yaml");
    let (rtmp, http) = free_addrs();
    std::fs::write(
        &file,
        format!("rtmp:\n  listen: {rtmp}\n  handshake_timout: 3\nhttp:\n  listen: {http}\n"),
    )
    .expect("write config");
    let out = run(
        base_command(dir.path()).arg("--config").arg(&file),
        Duration::from_secs(15),
    );
    assert_clean_failure(&out, "unknown key");
    assert!(
        out.stderr.contains("handshake_timout"),
        "stderr does not name the unknown key:\n{}",
        out.stderr
    );
}

#[test]
fn port_in_use_is_a_one_line_error_naming_the_address() {
    let dir = ScratchDir::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let (free_a, free_b) = free_addrs();
    // RTSP and SRT on free ports too: their defaults may be taken on this machine, and the
    // error must be about the port the test took.
    let (rtsp, _) = free_addrs();
    let srt = free_udp_addr();
    for (what, rtmp, http) in [
        ("RTMP port in use", taken_addr, free_a),
        ("HTTP port in use", free_b, taken_addr),
    ] {
        let out = run(
            base_command(dir.path())
                .env("RUST_BACKTRACE", "1")
                .env("FERROCAST_RTMP__LISTEN", rtmp.to_string())
                .env("FERROCAST_HTTP__LISTEN", http.to_string())
                .env("FERROCAST_RTSP__LISTEN", rtsp.to_string())
                .env("FERROCAST_SRT__LISTEN", srt.to_string()),
            Duration::from_secs(15),
        );
        assert_clean_failure(&out, what);
        let stderr = out.stderr.trim();
        assert_eq!(
            stderr.lines().count(),
            1,
            "{what}: expected a one-line error, got:\n{stderr}"
        );
        assert!(
            stderr.contains(&taken_addr.to_string()),
            "{what}: the error does not mention {taken_addr}:\n{stderr}"
        );
    }
    drop(taken);
}

/// `--check-config` as `nginx -t`: the first error names its key and exits 2; a valid file
/// prints the effective configuration, environment overrides applied and secrets masked.
#[test]
fn check_config_names_the_bad_key_and_masks_secrets() {
    let dir = ScratchDir::new();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "hls:\n  window: many\n").expect("write");
    let out = run(
        base_command(dir.path()).arg("--check-config").arg(&bad),
        Duration::from_secs(15),
    );
    assert_clean_failure(&out, "--check-config on a bad value");
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("hls.window"), "{}", out.stderr);

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "api:\n  token: api-secret-123\ndatabase:\n  url: postgres://gw:db-password@db/gw\n\
         hooks:\n  on_publish: http://auth.example/publish?token=hook-secret\n",
    )
    .expect("write");
    let out = run(
        base_command(dir.path())
            .env("FERROCAST_SRT__PASSPHRASE", "srt-passphrase-1")
            .env("FERROCAST_RTMP__CHUNK_SIZE", "8192")
            .arg("--check-config")
            .arg(&good),
        Duration::from_secs(15),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let effective: serde_json::Value =
        serde_saphyr::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", out.stdout));
    assert_eq!(
        effective["rtmp"]["chunk_size"], 8192,
        "the environment applies"
    );
    assert_eq!(effective["api"]["token"], "***");
    assert_eq!(effective["srt"]["passphrase"], "***");
    assert_eq!(effective["database"]["url"], "postgres://gw:***@db/gw");
    for secret in [
        "api-secret-123",
        "db-password",
        "hook-secret",
        "srt-passphrase-1",
    ] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} printed:\n{}",
            out.stdout
        );
    }
}
