//! The gate's local rules and their order, without hooks (the hook and callback paths are
//! driven end to end against a recording HTTP server in crates/ferrocast/tests/e2e/hooks.rs).

use super::*;
use hub::{HubConfig, PublisherMeta};

async fn gate(config: GateConfig) -> (Gate, Hub) {
    let hub = Hub::new(HubConfig::default());
    let store = store::open("sqlite::memory:")
        .await
        .expect("in-memory store");
    let hls = hls::HlsService::new(hub.clone(), hls::HlsConfig::default());
    let control = Control::load(
        store,
        hub.clone(),
        hls,
        control::ControlConfig { auto_create: true },
    )
    .await
    .expect("control");
    let gate = Gate::new(hub.clone(), control, config).expect("gate");
    hub.set_admission(Arc::new(gate.clone()));
    (gate, hub)
}

fn request(action: Action, code: &str, protocol: &'static str, from: &str) -> AccessRequest {
    AccessRequest {
        action,
        code: code.into(),
        protocol,
        remote_addr: Some(from.parse().expect("socket address")),
        args: Vec::new(),
        client: None,
        command: Default::default(),
    }
}

fn list(s: &str) -> IpList {
    s.parse().expect("ip list")
}

#[tokio::test]
async fn allow_lists_apply_per_action_and_to_every_protocol() {
    let (gate, _hub) = gate(GateConfig {
        publish_allow: list("10.0.0.0/8, 2001:db8::/32"),
        play_allow: list("192.168.1.7"),
        ..GateConfig::default()
    })
    .await;
    let ok = |r: Decision| r.expect("allowed").code;
    let denied = |r: Decision| r.expect_err("refused").reason;
    assert_eq!(
        ok(gate
            .check(request(Action::Publish, "a", "rtmp", "10.1.2.3:5000"))
            .await),
        "a"
    );
    assert_eq!(
        ok(gate
            .check(request(Action::Publish, "a", "srt", "[2001:db8::1]:5000"))
            .await),
        "a"
    );
    // An IPv4 client seen through a dual-stack socket matches the IPv4 rule.
    assert_eq!(
        ok(gate
            .check(request(Action::Publish, "a", "rtmp", "[::ffff:10.0.0.1]:1"))
            .await),
        "a"
    );
    assert_eq!(
        denied(
            gate.check(request(Action::Publish, "a", "rtmp", "127.0.0.1:1"))
                .await
        ),
        "address not allowed"
    );
    for protocol in ["rtmp", "rtsp", "srt", "hls", "dash", "mpegts"] {
        assert!(
            gate.check(request(Action::Play, "a", protocol, "192.168.1.7:1"))
                .await
                .is_ok(),
            "{protocol}"
        );
        assert_eq!(
            denied(
                gate.check(request(Action::Play, "a", protocol, "10.1.2.3:1"))
                    .await
            ),
            "address not allowed",
            "{protocol}"
        );
    }
}

#[tokio::test]
async fn code_length_limit_and_stream_rules_run_before_hooks() {
    // A port nothing listens on: bound by the kernel, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (gate, hub) = gate(GateConfig {
        max_code_len: 4,
        // A hook that would refuse everything if it were ever reached.
        notify: hooks::NotifyConfig {
            on_publish: Some(format!("http://127.0.0.1:{closed}/refuse")),
            timeout: Duration::from_millis(200),
            ..hooks::NotifyConfig::default()
        },
        ..GateConfig::default()
    })
    .await;
    let r = gate
        .check(request(Action::Publish, "toolong", "rtmp", "127.0.0.1:1"))
        .await;
    assert_eq!(r.expect_err("refused").reason, "invalid stream name");
    // Within the limit the (unreachable) hook decides: refused as unreachable, not allowed.
    let r = gate
        .check(request(Action::Publish, "ok", "rtmp", "127.0.0.1:1"))
        .await;
    assert!(r.expect_err("refused").reason.contains("on_publish"));
    // No hook configured for play: allowed without any call.
    let _ = hub
        .publish("ok", PublisherMeta::default())
        .expect("publish");
    assert!(
        gate.check(request(Action::Play, "ok", "rtmp", "127.0.0.1:1"))
            .await
            .is_ok()
    );
}
