//! Hostile and broken RTMP peers, each while a real publisher is live on another code: the bad
//! connection is closed, and the server, the publisher, HLS and RTMP play are unharmed.

use crate::support::ffmpeg::{self, stream_of};
use crate::support::raw_rtmp::{RawClient, pseudo_random_bytes};
use crate::support::server::ServerBuilder;
use crate::support::{Fixture, Publisher, Server};
use bytes::Bytes;
use rtmp::amf0::Amf0Value;
use rtmp::handshake::{ClientHandshake, HANDSHAKE_SIZE};
use rtmp::message;
use std::time::Duration;

/// How long the server may take to close a connection it must reject.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

struct Live {
    server: Server,
    publisher: Publisher,
}

impl Live {
    fn start(builder: ServerBuilder) -> Live {
        let server = builder.start();
        let publisher = server.publish("good", Fixture::Small);
        server.wait_playlist("good", "a segment", Duration::from_secs(30), |p| {
            !p.segments.is_empty()
        });
        Live { server, publisher }
    }

    fn tc_url(&self) -> String {
        format!("rtmp://{}/live", self.server.rtmp)
    }

    /// The server runs, the publisher still publishes, HLS advances and RTMP play works.
    fn assert_unharmed(&mut self, after: &str) {
        assert!(self.server.is_running(), "the server died after {after}");
        self.publisher
            .assert_running(&format!("after {after} on another connection"));
        let last = self
            .server
            .playlist("good")
            .and_then(|p| p.last_seq())
            .unwrap_or_else(|| panic!("the live playlist is gone after {after}"));
        self.server.wait_playlist(
            "good",
            &format!("HLS to advance after {after}"),
            Duration::from_secs(20),
            |p| p.last_seq().is_some_and(|s| s > last),
        );
        let streams = ffmpeg::streams(&self.server.rtmp_url("good"));
        assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
        assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
        self.publisher
            .assert_running(&format!("at the end, after {after}"));
        let log = self.server.log();
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    }
}

#[test]
fn random_bytes_are_rejected() {
    let mut live = Live::start(Server::builder());
    // Not RTMP at all.
    let mut junk = pseudo_random_bytes(64 << 10, 0xBAD_5EED);
    if junk[0] == 3 {
        junk[0] = 0xFF;
    }
    let mut c = RawClient::connect(live.server.rtmp);
    let _ = c.write(&junk); // the server may close before it has read everything
    c.expect_closed(CLOSE_WITHIN);

    // A valid version byte, then random C1, C2 and "chunks".
    let mut c = RawClient::connect(live.server.rtmp);
    junk[0] = 3;
    let _ = c.write(&junk);
    c.expect_closed(CLOSE_WITHIN);

    live.assert_unharmed("64 KiB of random bytes");
}

#[test]
fn truncated_handshake_is_dropped() {
    let mut live = Live::start(Server::builder());
    let mut hs = ClientHandshake::new(0, 7);
    let c0c1 = hs.poll_transmit().expect("C0C1");
    let mut c = RawClient::connect(live.server.rtmp);
    c.write(&c0c1[..1 + HANDSHAKE_SIZE / 2])
        .expect("write C0 + half C1");
    c.shutdown_write();
    c.expect_closed(CLOSE_WITHIN);
    live.assert_unharmed("a truncated handshake");
}

#[test]
fn silent_client_after_c0c1_is_closed_at_handshake_timeout() {
    let mut live = Live::start(Server::builder().set("rtmp.handshake_timeout", 1));
    let mut hs = ClientHandshake::new(0, 9);
    let c0c1 = hs.poll_transmit().expect("C0C1");
    let mut c = RawClient::connect(live.server.rtmp);
    c.write(&c0c1).expect("write C0C1");
    // The server answers S0S1S2 at once, then waits for C2 that never comes.
    c.read_at_least(1 + 2 * HANDSHAKE_SIZE, Duration::from_secs(5));
    let (took, _) = c.expect_closed(Duration::from_secs(3));
    assert!(
        took >= Duration::from_millis(500),
        "closed after {took:?}, well before the 1 s handshake timeout"
    );
    live.server
        .wait_log("handshake not finished", Duration::from_secs(5));
    live.assert_unharmed("a client that went silent mid-handshake");
}

#[test]
fn invalid_set_chunk_size_closes_the_connection() {
    let mut live = Live::start(Server::builder());
    for size in [0x7FFF_FFFFu32, 0] {
        let mut c = RawClient::connect(live.server.rtmp);
        c.handshake();
        c.connect_app("live", &live.tc_url());
        // Raw payload: message::set_chunk_size() would clamp 0 to 1.
        let payload = Bytes::copy_from_slice(&size.to_be_bytes());
        c.send(
            message::CSID_PROTOCOL,
            message::TYPE_SET_CHUNK_SIZE,
            0,
            &payload,
        );
        c.expect_closed(CLOSE_WITHIN);
    }
    // Says why it closed (the line may land just after the socket closes).
    live.server
        .wait_log("invalid chunk size", Duration::from_secs(5));
    live.assert_unharmed("Set Chunk Size 0x7FFFFFFF and 0");
}

#[test]
fn deeply_nested_connect_object_closes_the_connection() {
    let mut live = Live::start(Server::builder());
    let mut nested = Amf0Value::object([("leaf", Amf0Value::Number(1.0))]);
    for _ in 0..999 {
        nested = Amf0Value::object([("nest", nested)]);
    }
    let object = Amf0Value::object([("app", Amf0Value::from("live")), ("nest", nested)]);
    let mut c = RawClient::connect(live.server.rtmp);
    c.handshake();
    c.send_connect(&object);
    let (_, commands) = c.expect_closed(CLOSE_WITHIN);
    assert!(
        !commands.iter().any(|n| n == "_result"),
        "the server accepted a connect nested 1000 levels deep: {commands:?}"
    );
    live.assert_unharmed("a connect nested 1000 levels deep");
}

#[test]
fn message_over_the_size_cap_closes_the_connection() {
    let mut live = Live::start(Server::builder());
    let mut c = RawClient::connect(live.server.rtmp);
    c.handshake();
    c.connect_app("live", &live.tc_url());
    // fmt 0 on csid 4: timestamp 0, length 0xFFFFFF (16 MiB - 1, over the 8 MiB cap),
    // type 9 (video), message stream 1; then one 128-byte chunk of it.
    let mut bytes = vec![
        0x04,
        0,
        0,
        0,
        0xFF,
        0xFF,
        0xFF,
        message::TYPE_VIDEO,
        1,
        0,
        0,
        0,
    ];
    bytes.extend_from_slice(&[0u8; 128]);
    let _ = c.write(&bytes);
    c.expect_closed(CLOSE_WITHIN);
    live.server
        .wait_log("exceeds limit", Duration::from_secs(5));
    live.assert_unharmed("a 16 MiB message header");
}

#[test]
fn connection_that_neither_publishes_nor_plays_is_closed_at_idle_timeout() {
    let mut live = Live::start(Server::builder().set("rtmp.idle_timeout", 1));
    let mut c = RawClient::connect(live.server.rtmp);
    c.handshake();
    c.connect_app("live", &live.tc_url());
    let (took, _) = c.expect_closed(Duration::from_secs(4));
    assert!(
        took >= Duration::from_millis(500),
        "closed after {took:?}, before the 1 s idle timeout"
    );
    live.server
        .wait_log("neither published nor played", Duration::from_secs(5));
    live.assert_unharmed("an idle connection");
}

#[test]
fn silent_publisher_is_closed_and_frees_its_code() {
    let mut live = Live::start(Server::builder().set("rtmp.publisher_timeout", 1));
    let mut c = RawClient::connect(live.server.rtmp);
    c.handshake();
    c.connect_app("live", &live.tc_url());
    let null = Amf0Value::Null;
    c.send(
        message::CSID_COMMAND,
        message::TYPE_COMMAND_AMF0,
        0,
        &message::command("createStream", 2.0, &null, &[]),
    );
    c.send(
        message::CSID_COMMAND,
        message::TYPE_COMMAND_AMF0,
        1,
        &message::command("publish", 3.0, &null, &["silent".into(), "live".into()]),
    );
    // Publish accepted, then nothing: the server gives up after publisher_timeout.
    c.expect_closed(Duration::from_secs(5));
    live.server
        .wait_log("publisher sent nothing", Duration::from_secs(5));
    // The code is free again for a real publisher.
    let mut again = live.server.publish("silent", Fixture::Small);
    live.server.wait_live("silent");
    again.assert_running("publishing on the freed code");
    live.assert_unharmed("a silent publisher");
}
