//! The SRT server's players against srt-tokio callers: one feed drives every player of a
//! stream, each gets the same TS from a keyframe on, and kicks, unpublish and shutdown end
//! them.

extern crate ferrocast_srt as srt;

mod common;

use bytes::Bytes;
use common::{Caller, WAIT, free_udp_port};
use futures_util::StreamExt;
use hub::{Hub, HubConfig, Publisher, PublisherMeta};
use media::{Frame, MediaInfo, TrackKind};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running server on a free port, with its hub.
async fn server() -> (
    Hub,
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let hub = Hub::new(HubConfig::default());
    let listener = srt::bind(
        "127.0.0.1:0".parse().expect("addr"),
        Duration::from_millis(60),
    )
    .await
    .expect("bind");
    let addr = listener.local_addr();
    let server = srt::Server::new(hub.clone(), srt::ServerConfig::default()).expect("server");
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            server.run(listener, stop).await.expect("run");
        }
    });
    (hub, addr, stop, task)
}

/// A publisher of `code` with an audio track (AAC, 48 kHz stereo).
fn publisher(hub: &Hub, code: &str) -> Publisher {
    let p = hub
        .publish(code, PublisherMeta::default())
        .expect("publish");
    p.announce(MediaInfo {
        audio: Some(media::AudioCodec::Aac(
            media::AacConfig::parse(Bytes::from_static(include_bytes!(
                "../../../testdata/aac-48k-stereo.asc"
            )))
            .expect("ASC"),
        )),
        ..Default::default()
    });
    p
}

fn audio(i: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts: i * 1920,
        pts: i * 1920,
        keyframe: true,
        payload: Bytes::from(vec![0x21; 400]),
    }
}

/// Writes an audio frame every 20 ms, forever.
fn feed_forever(publisher: Publisher) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 1.. {
            publisher.write(audio(i));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Waits until `code`'s reader count satisfies `ok`; panics with `what` otherwise.
async fn wait_readers(hub: &Hub, code: &str, ok: impl Fn(usize) -> bool, what: &str) {
    let seated = tokio::time::timeout(WAIT, async {
        while !ok(hub.reader_sessions(code)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(seated.is_ok(), "{what}");
}

/// Plays `code` until the server ends the play; returns the TS received.
async fn play(addr: SocketAddr, code: &str) -> Vec<u8> {
    play_as(Caller::default(), addr, code).await
}

/// [`play`] as `caller`.
async fn play_as(caller: Caller<'_>, addr: SocketAddr, code: &str) -> Vec<u8> {
    let mut s = caller
        .call(addr, &format!("live/{code}"))
        .await
        .expect("call (refused, or the port still routed to an earlier connection?)");
    let mut ts = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(WAIT, s.next()).await {
        match item {
            Ok((_, payload)) => ts.extend_from_slice(&payload),
            Err(_) => break,
        }
    }
    ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_of_a_stream_get_the_same_ts_and_end_with_the_publisher() {
    let (hub, addr, stop, task) = server().await;
    let publisher = publisher(&hub, "p");
    publisher.write(audio(0));
    let players: Vec<_> = (0..3).map(|_| tokio::spawn(play(addr, "p"))).collect();
    wait_readers(&hub, "p", |n| n >= 3, "players not seated").await;
    for i in 1..100 {
        publisher.write(audio(i));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // srt-tokio's callers lose what is unacknowledged when the connection closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(publisher);
    let mut got = Vec::new();
    for p in players {
        got.push(
            tokio::time::timeout(WAIT, p)
                .await
                .expect("player did not end")
                .expect("player"),
        );
    }
    assert!(got[0].len() > 188 * 50, "only {} bytes", got[0].len());
    assert_eq!(got[0].len() % 188, 0);
    // Audio-only TS starts with the tables, from the cached GOP or the live edge alike.
    assert_eq!(&got[0][..4], &[0x47, 0x40, 0x00, 0x10], "not a PAT first");
    // Joined at different times, so each starts at its own sync point: compare the tails.
    let tail = |ts: &Vec<u8>| ts[ts.len() - 188 * 20..].to_vec();
    assert_eq!(tail(&got[0]), tail(&got[1]));
    assert_eq!(tail(&got[0]), tail(&got[2]));
    wait_readers(&hub, "p", |n| n == 0, "readers still seated").await;
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("server did not stop")
        .expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_ends_one_player_and_shutdown_the_others() {
    let (hub, addr, stop, task) = server().await;
    let publisher = publisher(&hub, "k");
    publisher.write(audio(0));
    let players: Vec<_> = (0..2).map(|_| tokio::spawn(play(addr, "k"))).collect();
    let feeding = feed_forever(publisher);
    wait_readers(&hub, "k", |n| n >= 2, "players not seated").await;
    let session = hub
        .sessions()
        .into_iter()
        .find(|s| s.protocol == "srt")
        .expect("an srt session")
        .id;
    assert!(hub.kick_session(session));
    wait_readers(&hub, "k", |n| n <= 1, "kicked player still seated").await;
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("server did not stop")
        .expect("server");
    for p in players {
        tokio::time::timeout(WAIT, p)
            .await
            .expect("player did not end")
            .expect("player");
    }
    assert_eq!(hub.reader_sessions("k"), 0);
    feeding.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_player_reconnects_from_the_same_port() {
    let (hub, addr, stop, task) = server().await;
    let publisher = publisher(&hub, "r");
    publisher.write(audio(0));
    let feeding = feed_forever(publisher);
    // A second player keeps the stream's feed (and its shared packet queue) alive throughout.
    let steady = tokio::spawn(play(addr, "r"));
    wait_readers(&hub, "r", |n| n >= 1, "steady player not seated").await;
    let steady_session = hub
        .sessions()
        .into_iter()
        .find(|s| s.protocol == "srt")
        .expect("session")
        .id;
    let port = free_udp_port();
    for round in 0..2 {
        let caller = Caller {
            from_port: Some(port),
            ..Caller::default()
        };
        let player = tokio::spawn(async move { play_as(caller, addr, "r").await });
        let what = format!("round {round}: player not seated");
        wait_readers(&hub, "r", |n| n >= 2, &what).await;
        let seen = hub
            .sessions()
            .into_iter()
            .find(|s| s.protocol == "srt" && s.id != steady_session)
            .expect("the reconnecting player's session");
        assert_eq!(seen.remote_addr.map(|a| a.port()), Some(port));
        assert!(hub.kick_session(seen.id));
        tokio::time::timeout(WAIT, player)
            .await
            .expect("kicked player did not end")
            .expect("player");
        wait_readers(&hub, "r", |n| n <= 1, "kicked player still seated").await;
    }
    assert!(!steady.is_finished(), "the other player was disturbed");
    feeding.abort();
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("server did not stop")
        .expect("server");
}
