//! The endpoint (ferrocast's SRT socket layer) against srt-tokio's caller: handshakes,
//! payloads both ways, rejection, encryption, and garbage on the port.

extern crate ferrocast_srt as srt;

mod common;

use bytes::Bytes;
use common::{Caller, WAIT, free_udp_port};
use futures_util::{SinkExt, StreamExt};
use srt::endpoint::{ConnectionRequest, Endpoint};
use srt_protocol::options::{KeySize, Passphrase, SocketOptions};
use srt_protocol::packet::ServerRejectReason;
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use srt_tokio::SrtSocket;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Payloads a caller sends at once: srt-tokio's caller buffers 32 packets and evicts the rest.
const N: u8 = 20;

/// An endpoint on a free loopback port, its requests, and the token that stops it.
fn endpoint() -> (
    SocketAddr,
    mpsc::Receiver<ConnectionRequest>,
    CancellationToken,
) {
    let mut options = SocketOptions::default();
    options.sender.peer_latency = Duration::from_millis(60);
    options.receiver.latency = Duration::from_millis(60);
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ConnInitSettings::from(options),
    )
    .expect("bind");
    let addr = ep.local_addr();
    let (tx, rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    tokio::spawn(ep.run(tx, stop.clone()));
    (addr, rx, stop)
}

async fn call(addr: SocketAddr, sid: &str, passphrase: Option<&str>) -> std::io::Result<SrtSocket> {
    Caller {
        passphrase,
        ..Caller::default()
    }
    .call(addr, sid)
    .await
}

fn payload(i: u8) -> Bytes {
    Bytes::from(vec![i; 1316])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_publishes_and_the_connection_reads_every_payload_in_order() {
    let (addr, mut requests, stop) = endpoint();
    let caller = tokio::spawn(async move {
        let mut s = call(addr, "publish:live/a", None).await.expect("call");
        for i in 0..N {
            s.send((Instant::now(), payload(i))).await.expect("send");
        }
        // srt-tokio's caller drops what is unacknowledged when it closes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.close().await.expect("close");
    });
    let request = tokio::time::timeout(WAIT, requests.recv())
        .await
        .expect("no request")
        .expect("endpoint gone");
    assert_eq!(request.stream_id(), Some("publish:live/a"));
    assert_eq!(request.key_size(), KeySize::Unspecified);
    let mut conn = request.accept(None).await.expect("accept");
    let mut got = Vec::new();
    while let Some(p) = tokio::time::timeout(WAIT, conn.recv())
        .await
        .expect("stalled")
    {
        got.push(p);
    }
    assert_eq!(got.len(), N as usize);
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p, &payload(i as u8), "payload {i}");
    }
    caller.await.expect("caller");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_plays_what_the_connection_sends_until_it_closes() {
    let (addr, mut requests, stop) = endpoint();
    let caller = tokio::spawn(async move {
        let mut s = call(addr, "live/a", None).await.expect("call");
        let mut got = Vec::new();
        while let Some(item) = tokio::time::timeout(WAIT, s.next()).await.expect("stalled") {
            got.push(item.expect("receive").1);
        }
        got
    });
    let request = requests.recv().await.expect("request");
    let mut conn = request.accept(None).await.expect("accept");
    // Batches, as a stream's feed hands them over; the first right after the handshake.
    for batch in 0..10u8 {
        let payloads: Vec<Bytes> = (0..10).map(|i| payload(batch * 10 + i)).collect();
        conn.send(&payloads);
        // Sending never waits: ACKs are taken in while it idles.
        let _ = tokio::time::timeout(Duration::from_millis(20), conn.recv()).await;
    }
    conn.close(Duration::from_secs(2)).await;
    let got = caller.await.expect("caller");
    assert_eq!(got.len(), 100, "payloads lost or repeated");
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p, &payload(i as u8), "payload {i}");
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_caller_hears_no_and_the_next_one_connects() {
    let (addr, mut requests, stop) = endpoint();
    let server = tokio::spawn(async move {
        let r = requests.recv().await.expect("request");
        r.reject(ServerRejectReason::Forbidden.into())
            .await
            .expect("reject");
        let r = requests.recv().await.expect("request");
        let mut conn = r.accept(None).await.expect("accept");
        conn.recv().await
    });
    assert!(
        call(addr, "live/no", None).await.is_err(),
        "rejected caller connected"
    );
    let mut s = call(addr, "publish:live/yes", None)
        .await
        .expect("second caller");
    s.send((Instant::now(), payload(7))).await.expect("send");
    let got = tokio::time::timeout(WAIT, server)
        .await
        .expect("server stalled")
        .expect("server task");
    assert_eq!(got, Some(payload(7)));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_callers_need_the_passphrase() {
    let (addr, mut requests, stop) = endpoint();
    // As the server does: the caller's own key size.
    let key = |key_size| KeySettings {
        key_size,
        passphrase: Passphrase::try_from("right-passphrase".to_owned()).expect("pass"),
    };
    let server = tokio::spawn(async move {
        let r = requests.recv().await.expect("request");
        let size = r.key_size();
        let wrong = r.accept(Some(key(size))).await;
        let r = requests.recv().await.expect("request");
        let size = r.key_size();
        let mut conn = r.accept(Some(key(size))).await.expect("accept");
        (wrong.is_err(), conn.recv().await)
    });
    assert!(
        call(addr, "publish:live/e", Some("wrong-passphrase"))
            .await
            .is_err()
    );
    let mut s = call(addr, "publish:live/e", Some("right-passphrase"))
        .await
        .expect("caller with the passphrase");
    s.send((Instant::now(), payload(3))).await.expect("send");
    let (wrong_failed, got) = tokio::time::timeout(WAIT, server)
        .await
        .expect("server stalled")
        .expect("server task");
    assert!(wrong_failed, "a wrong passphrase was accepted");
    assert_eq!(got, Some(payload(3)));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_strangers_do_not_disturb_an_open_connection() {
    let (addr, mut requests, stop) = endpoint();
    let caller = tokio::spawn(async move {
        let mut s = call(addr, "publish:live/g", None).await.expect("call");
        for i in 0..20u8 {
            s.send((Instant::now(), payload(i))).await.expect("send");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.close().await.expect("close");
    });
    let mut conn = requests
        .recv()
        .await
        .expect("request")
        .accept(None)
        .await
        .expect("accept");
    let noise = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for n in [0usize, 1, 3, 16, 17, 64, 1500, 2000, 9000] {
        let mut d = vec![0xa5u8; n];
        if n >= 16 {
            d[0] = 0x80; // a control packet of some unknown kind
        }
        noise.send_to(&d, addr).await.expect("noise");
    }
    let mut got = 0;
    while let Some(p) = tokio::time::timeout(WAIT, conn.recv())
        .await
        .expect("stalled")
    {
        assert_eq!(p, payload(got as u8));
        got += 1;
    }
    assert_eq!(got, 20);
    caller.await.expect("caller");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reconnecting_from_the_same_port_gets_a_fresh_handshake() {
    let (addr, mut requests, stop) = endpoint();
    // A port the caller keeps across both connections.
    let port = free_udp_port();
    let caller = |sid: &'static str| async move {
        let mut s = Caller {
            from_port: Some(port),
            ..Caller::default()
        }
        .call(addr, sid)
        .await
        .expect("call");
        s.send((Instant::now(), payload(1))).await.expect("send");
        // Until the server ends the connection.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, s.next()).await {}
    };
    for sid in ["publish:live/r1", "publish:live/r2"] {
        let peer = tokio::spawn(caller(sid));
        let request = tokio::time::timeout(WAIT, requests.recv())
            .await
            .expect("no request: the endpoint still routes this port to the old connection")
            .expect("endpoint gone");
        assert_eq!(request.stream_id(), Some(sid));
        let mut conn = request.accept(None).await.expect("accept");
        assert_eq!(conn.recv().await, Some(payload(1)));
        // The server ends it; dropping the connection makes the endpoint forget it.
        conn.close(Duration::from_secs(1)).await;
        drop(conn);
        tokio::time::timeout(WAIT, peer)
            .await
            .expect("caller did not see the close")
            .expect("caller");
    }
    stop.cancel();
}
