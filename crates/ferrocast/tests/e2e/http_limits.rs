//! The HTTP port faces the internet: slowloris clients are capped per address and cut at the
//! header deadline while players elsewhere keep playing, and the admin surface (API, metrics)
//! answers only loopback by default, or only on `api.listen`.

use crate::support::http;
use crate::support::server::free_addrs;
use crate::support::{Fixture, Server};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Attackers come from another loopback address than the players, as they would from
/// another host.
const ATTACKER: &str = "127.0.0.2";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn half_request(server: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(format!("{ATTACKER}:0").parse().expect("addr"))?;
    let mut s = sock.connect(server).await?;
    use tokio::io::AsyncWriteExt;
    // Headers that never end: no blank line.
    s.write_all(format!("GET /live/x/index.m3u8?{i} HTTP/1.1\r\nHost: h\r\nX-A: ").as_bytes())
        .await?;
    Ok(s)
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        // A server may answer 408 before closing; the close follows.
        Ok(Ok(_)) => matches!(
            tokio::time::timeout(wait, s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ),
        Err(_) => false,
    }
}

#[test]
fn slowloris_is_capped_per_address_and_cut_at_the_header_timeout() {
    let server = Server::builder()
        .set("http.header_timeout", "3s")
        .set("http.max_connections_per_ip", 256)
        .start();
    let _publisher = server.publish("good", Fixture::Small);
    server.wait_playlist("good", "a segment", Duration::from_secs(30), |p| {
        !p.segments.is_empty()
    });
    let rt = runtime();
    let http_addr = server.http;
    let mut conns = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..1500 {
            match half_request(http_addr, i).await {
                Ok(s) => out.push(s),
                // Refused at connect is as good as closed.
                Err(e) => panic!("connect {i}: {e}"),
            }
        }
        out
    });
    let opened = Instant::now();
    // Over the cap: closed at once.
    let closed_early = rt.block_on(async {
        let mut n = 0;
        for s in &mut conns {
            if closed(s, Duration::from_millis(2)).await {
                n += 1;
            }
        }
        n
    });
    assert!(
        closed_early >= 1500 - 256,
        "only {closed_early} of 1500 half-open connections were refused at once"
    );
    // A player on another address is served during the attack.
    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
    let playlist = server
        .playlist("good")
        .expect("the playlist during the attack");
    assert!(!playlist.segments.is_empty());
    // Past the header deadline, every one of them is gone.
    let still_open = rt.block_on(async {
        let mut n = 0;
        for s in &mut conns {
            let left = Duration::from_secs(6).saturating_sub(opened.elapsed());
            if !closed(s, left.max(Duration::from_millis(1))).await {
                n += 1;
            }
        }
        n
    });
    assert_eq!(
        still_open, 0,
        "connections that never sent their headers stayed open"
    );
    assert!(opened.elapsed() < Duration::from_secs(7));
    // The attacker's place is free again.
    let after = rt.block_on(half_request(http_addr, 0));
    assert!(after.is_ok());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("http connection refused by limits"),
        "refusals are logged"
    );
}

#[test]
fn api_and_metrics_move_to_api_listen() {
    let (api_addr, _) = free_addrs();
    let server = Server::builder().set("api.listen", api_addr).start();
    for path in ["/api/v1/streams", "/metrics", "/api/v1/openapi.json"] {
        let media_port = server.get(path);
        assert_eq!(media_port.status, 404, "{path} on the media port");
        let admin_port = http::get(api_addr, path).expect("admin port");
        assert_eq!(admin_port.status, 200, "{path} on api.listen");
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(http::get(api_addr, "/healthz").expect("health").status, 200);
}

#[test]
fn api_refuses_proxied_and_unlisted_clients() {
    let server = Server::start();
    // A local reverse proxy forwarding the world is not a loopback client.
    let proxied = http::request(
        server.http,
        "GET",
        "/api/v1/streams",
        &[("X-Forwarded-For", "198.51.100.7")],
        None,
    )
    .expect("request");
    assert_eq!(proxied.status, 403, "{}", proxied.text());
    let direct = server.get("/api/v1/streams");
    assert_eq!(direct.status, 200);

    let server = Server::builder().set("api.allow", "10.0.0.0/8").start();
    for path in ["/api/v1/streams", "/metrics"] {
        let r = server.get(path);
        assert_eq!(r.status, 403, "{path} from an address outside api.allow");
        assert!(
            r.text().contains("api.allow"),
            "the refusal says why: {}",
            r.text()
        );
    }
    assert_eq!(
        server.get("/live/none/index.m3u8").status,
        404,
        "media stays public"
    );
}
