//! The driver against real sockets: what the admission hears of connects, sessions and
//! disconnects, whatever ends the connection.

use super::*;
use crate::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use hub::{Admit, ConnectFuture, DecisionFuture, Denied, HubConfig, SessionInfo, SessionRole};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn coalesce_window_grows_with_readers_up_to_the_cap() {
    let max = Duration::from_millis(20);
    assert_eq!(coalesce_window(0, max, 200), Duration::ZERO);
    assert_eq!(coalesce_window(1, max, 200), Duration::ZERO);
    let mid = coalesce_window(100, max, 200);
    assert!(
        mid > Duration::from_millis(9) && mid < Duration::from_millis(11),
        "{mid:?}"
    );
    assert_eq!(coalesce_window(200, max, 200), max);
    assert_eq!(coalesce_window(5000, max, 200), max);
    assert_eq!(coalesce_window(500, Duration::ZERO, 200), Duration::ZERO);
}

#[test]
fn client_info_merges_app_and_tc_url_arguments() {
    let info = ConnectInfo {
        app: "live".into(),
        app_args: vec![("token".into(), "a".into())],
        tc_url: Some("rtmp://h:1935/live?token=a&user=b".into()),
        flash_ver: Some("FMLE/3.0".into()),
        swf_url: None,
        page_url: Some("https://example.invalid/p".into()),
    };
    let c = client_info(9, 0, info);
    assert_eq!(c.connection_id, 9);
    assert_eq!(c.app, "live");
    assert_eq!(c.tc_url, "rtmp://h:1935/live?token=a&user=b");
    assert_eq!((c.flash_ver.as_str(), c.swf_url.as_str()), ("FMLE/3.0", ""));
    assert_eq!(c.page_url, "https://example.invalid/p");
    assert_eq!(
        c.connect_args,
        vec![
            ("token".to_owned(), "a".to_owned()),
            ("user".to_owned(), "b".to_owned())
        ]
    );
}

/// How the recording admission answers `connect`.
#[derive(Clone)]
enum OnConnect {
    Allow,
    Rename(&'static str),
    Refuse(&'static str),
    /// Never answers (a hung hook).
    Hang,
}

/// Records every call in order; publish gets an external id.
struct Rec {
    on_connect: OnConnect,
    log: Mutex<Vec<String>>,
    clients: Mutex<Vec<Arc<ClientInfo>>>,
    requests: Mutex<Vec<AccessRequest>>,
    sessions: Mutex<Vec<SessionInfo>>,
}

impl Rec {
    fn new(on_connect: OnConnect) -> Arc<Rec> {
        Arc::new(Rec {
            on_connect,
            log: Mutex::default(),
            clients: Mutex::default(),
            requests: Mutex::default(),
            sessions: Mutex::default(),
        })
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn push(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }

    /// Waits until the log holds `what`; the server tells the admission after it closed the
    /// socket, so the client may see EOF first.
    async fn wait_for(&self, what: &str) {
        for _ in 0..500 {
            if self.log().iter().any(|l| l == what) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what:?} never logged: {:?}", self.log());
    }
}

impl Admission for Rec {
    fn check(&self, r: AccessRequest) -> DecisionFuture {
        self.push(format!("check {:?} {}", r.action, r.code));
        let admit = Admit {
            code: r.code.clone(),
            external_id: (r.action == Action::Publish).then(|| "ext-1".to_owned()),
        };
        self.requests.lock().unwrap().push(r);
        Box::pin(std::future::ready(Ok(admit)))
    }

    fn connect(&self, client: Arc<ClientInfo>, _peer: SocketAddr) -> ConnectFuture {
        self.push(format!("connect {}", client.app));
        self.clients.lock().unwrap().push(client.clone());
        match self.on_connect.clone() {
            OnConnect::Allow => Box::pin(std::future::ready(Ok(client.app.clone()))),
            OnConnect::Rename(app) => Box::pin(std::future::ready(Ok(app.to_owned()))),
            OnConnect::Refuse(why) => Box::pin(std::future::ready(Err(Denied::new(why)))),
            OnConnect::Hang => Box::pin(std::future::pending()),
        }
    }

    fn disconnect(&self, client: Arc<ClientInfo>, _peer: SocketAddr) {
        self.push(format!("disconnect {}", client.app));
        self.clients.lock().unwrap().push(client);
    }

    fn session_opened(&self, s: &SessionInfo) {
        self.push(format!("opened {}", s.role.as_str()));
        self.sessions.lock().unwrap().push(s.clone());
    }

    fn session_closed(&self, s: &SessionInfo) {
        self.push(format!("closed {}", s.role.as_str()));
    }
}

/// A server on a loopback port with `admission` installed.
struct Fixture {
    hub: Hub,
    fanout: Arc<Registry>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<io::Result<()>>,
}

impl Fixture {
    async fn start(admission: Arc<Rec>) -> Fixture {
        let hub = Hub::new(HubConfig::default());
        hub.set_admission(admission);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = Server::new(hub.clone(), ServerConfig::default());
        let fanout = server.fanout.clone();
        let server = tokio::spawn(server.run(listener, shutdown.clone()));
        Fixture {
            hub,
            fanout,
            addr,
            shutdown,
            server,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

/// The sans-I/O client over a real socket.
struct Client {
    tcp: TcpStream,
    session: ClientSession,
    rbuf: BytesMut,
    events: Vec<ClientEvent>,
    eof: bool,
}

impl Client {
    async fn connect(addr: SocketAddr, app: &str, role: ClientRole) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let config = ClientConfig::new(app, format!("rtmp://{addr}/{app}"));
        Client {
            tcp,
            session: ClientSession::new(config, role, 0, 3),
            rbuf: BytesMut::new(),
            events: Vec::new(),
            eof: false,
        }
    }

    /// Moves bytes until `done` holds for the events so far or the server closes.
    async fn run_until(&mut self, done: impl Fn(&[ClientEvent]) -> bool) {
        let work = async {
            loop {
                let out = self.session.out();
                while !out.is_empty() {
                    let mut slices = [IoSlice::new(&[]); 16];
                    let n = out.io_slices(&mut slices);
                    let bytes: Vec<u8> =
                        slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
                    out.advance(bytes.len());
                    self.tcp.write_all(&bytes).await.unwrap();
                }
                if done(&self.events) {
                    return;
                }
                match self.tcp.read_buf(&mut self.rbuf).await {
                    Ok(0) | Err(_) => {
                        self.eof = true;
                        return;
                    }
                    Ok(_) => {}
                }
                if self.session.feed(&mut self.rbuf).is_err() {
                    self.eof = true;
                    return;
                }
                while let Some(e) = self.session.poll_event() {
                    self.events.push(e);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .expect("client timed out");
    }

    /// Reads until the server closes the connection.
    async fn until_eof(&mut self) {
        self.run_until(|_| false).await;
        assert!(self.eof);
    }
}

fn has(events: &[ClientEvent], want: &ClientEvent) -> bool {
    events.contains(want)
}

#[tokio::test]
async fn publisher_connect_session_and_kick_reach_the_admission_once_each() {
    let rec = Rec::new(OnConnect::Allow);
    let fx = Fixture::start(rec.clone()).await;
    let role = ClientRole::Publish {
        name: "cam?key=k1".into(),
    };
    let mut c = Client::connect(fx.addr, "live?token=t1", role).await;
    c.run_until(|e| has(e, &ClientEvent::Publishing)).await;

    let client = rec.clients.lock().unwrap()[0].clone();
    assert_eq!(client.app, "live");
    assert!(client.connection_id > 0);
    assert_eq!(client.flash_ver, "FMLE/3.0 (compatible; ferrocast)");
    assert!(
        client.tc_url.ends_with("/live?token=t1"),
        "{}",
        client.tc_url
    );
    assert_eq!(
        client.connect_args,
        vec![("token".to_owned(), "t1".to_owned())]
    );
    {
        let requests = rec.requests.lock().unwrap();
        let req = &requests[0];
        assert_eq!((req.action, req.code.as_str()), (Action::Publish, "cam"));
        assert_eq!(req.args, vec![("key".to_owned(), "k1".to_owned())]);
        let req_client = req.client.as_ref().expect("RTMP requests carry the client");
        assert!(Arc::ptr_eq(req_client, &client));
    }
    let opened = rec.sessions.lock().unwrap()[0].clone();
    assert_eq!(opened.role, SessionRole::Publisher);
    assert_eq!(opened.external_id.as_deref(), Some("ext-1"));
    assert_eq!(opened.args, vec![("key".to_owned(), "k1".to_owned())]);
    assert_eq!(
        opened.client.as_ref().map(|c| c.connection_id),
        Some(client.connection_id)
    );
    let listed = fx.hub.sessions();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].external_id.as_deref(), Some("ext-1"));

    assert!(fx.hub.kick_publisher("cam"));
    c.until_eof().await;
    rec.wait_for("disconnect live").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        rec.log(),
        vec![
            "connect live",
            "check Publish cam",
            "opened publisher",
            "closed publisher",
            "disconnect live"
        ]
    );
    fx.stop().await;
    assert_eq!(rec.log().len(), 5, "nothing more after shutdown");
}

#[tokio::test]
async fn refused_connect_gets_the_reason_and_a_disconnect() {
    let rec = Rec::new(OnConnect::Refuse("banned"));
    let fx = Fixture::start(rec.clone()).await;
    let role = ClientRole::Publish { name: "cam".into() };
    let mut c = Client::connect(fx.addr, "live", role).await;
    c.until_eof().await;
    assert_eq!(
        c.events,
        vec![ClientEvent::Error {
            command: "connect".into(),
            description: "banned".into()
        }]
    );
    // nginx-rtmp reports every session's end, admitted or not.
    rec.wait_for("disconnect live").await;
    assert_eq!(rec.log(), vec!["connect live", "disconnect live"]);
    fx.stop().await;
}

#[tokio::test]
async fn a_handshake_without_connect_still_disconnects() {
    let rec = Rec::new(OnConnect::Allow);
    let fx = Fixture::start(rec.clone()).await;
    let mut s = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    let mut hs = crate::handshake::ClientHandshake::new(0, 7);
    let mut rbuf = bytes::BytesMut::new();
    s.write_all(&hs.poll_transmit().unwrap()).await.unwrap();
    while !hs.is_done() {
        s.read_buf(&mut rbuf).await.unwrap();
        hs.feed(&mut rbuf).unwrap();
        if let Some(c2) = hs.poll_transmit() {
            s.write_all(&c2).await.unwrap();
        }
    }
    drop(s);
    rec.wait_for("disconnect ").await;
    assert_eq!(rec.log(), vec!["disconnect "]);

    // Half a handshake is not a client: nothing to report.
    let mut s = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    s.write_all(&[3u8; 100]).await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    fx.stop().await;
    assert_eq!(rec.log(), vec!["disconnect "]);
}

#[tokio::test]
async fn renamed_app_is_what_counts() {
    // Renamed to ours: accepted, and the player's requests carry the new app.
    let rec = Rec::new(OnConnect::Rename("live"));
    let fx = Fixture::start(rec.clone()).await;
    let role = ClientRole::Play {
        name: "cam?tok=9".into(),
    };
    let mut c = Client::connect(fx.addr, "legacy", role).await;
    // Nothing is published: the player waits, so keep its bytes moving in a task.
    let player = tokio::spawn(async move { c.until_eof().await });
    rec.wait_for("opened reader").await;
    let reader = rec.sessions.lock().unwrap()[0].clone();
    assert_eq!(reader.args, vec![("tok".to_owned(), "9".to_owned())]);
    assert_eq!(reader.client.as_ref().unwrap().app, "live");
    assert_eq!(reader.external_id, None);
    // The player hangs up.
    player.abort();
    rec.wait_for("disconnect live").await;
    assert_eq!(
        rec.log(),
        vec![
            "connect legacy",
            "check Play cam",
            "opened reader",
            "closed reader",
            "disconnect live"
        ]
    );
    fx.stop().await;

    // Renamed to an app we do not serve: refused as unknown, but the admission allowed it,
    // so it still hears the disconnect.
    let rec = Rec::new(OnConnect::Rename("elsewhere"));
    let fx = Fixture::start(rec.clone()).await;
    let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    c.until_eof().await;
    assert!(matches!(
        &c.events[..],
        [ClientEvent::Error { command, description }]
            if command == "connect" && description.contains("elsewhere")
    ));
    rec.wait_for("disconnect elsewhere").await;
    assert_eq!(rec.log(), vec!["connect live", "disconnect elsewhere"]);
    fx.stop().await;
}

#[tokio::test]
async fn shutdown_disconnects_idle_connections_and_does_not_wait_for_a_hung_hook() {
    let rec = Rec::new(OnConnect::Allow);
    let fx = Fixture::start(rec.clone()).await;
    let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    c.run_until(|e| has(e, &ClientEvent::Connected)).await;
    fx.stop().await;
    assert_eq!(
        rec.log()
            .iter()
            .filter(|l| l.starts_with("disconnect"))
            .count(),
        1
    );

    let rec = Rec::new(OnConnect::Hang);
    let fx = Fixture::start(rec.clone()).await;
    let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    let client = tokio::spawn(async move {
        c.until_eof().await;
        c
    });
    rec.wait_for("connect live").await;
    // The hook never answers; shutdown must not wait for it.
    fx.stop().await;
    let c = client.await.unwrap();
    assert!(c.events.is_empty(), "{:?}", c.events);
    assert_eq!(
        rec.log(),
        vec!["connect live", "disconnect live"],
        "never answered, but the session still ended"
    );
}

#[tokio::test]
async fn shutdown_tells_players_the_stream_ended_before_closing() {
    let rec = Rec::new(OnConnect::Allow);
    let fx = Fixture::start(rec.clone()).await;
    let publisher = fx
        .hub
        .publish(
            "x",
            hub::PublisherMeta {
                protocol: "test",
                ..hub::PublisherMeta::default()
            },
        )
        .unwrap();
    publisher.announce(media::MediaInfo {
        video_metadata: None,
        video: Some(media::VideoCodec::Opaque {
            codec: media::OpaqueCodec::FlvId(7),
            sequence_header: None,
        }),
        audio: None,
        framerate: None,
    });
    publisher.write(media::Frame {
        track: media::TrackKind::Video,
        dts: 0,
        pts: 0,
        keyframe: true,
        payload: bytes::Bytes::from_static(&[0x17, 1, 0, 0, 0, 1, 2, 3]),
    });
    let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    c.run_until(|e| has(e, &ClientEvent::Playing)).await;
    let client = tokio::spawn(async move {
        c.until_eof().await;
        c
    });
    // The publisher stays: only the shutdown can have ended the play.
    fx.stop().await;
    let c = client.await.unwrap();
    let codes: Vec<&str> = c
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status { code, .. } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        codes.contains(&"NetStream.Play.UnpublishNotify"),
        "no end-of-stream status before the close: {codes:?}"
    );
    drop(publisher);
}

fn opaque_video() -> media::MediaInfo {
    media::MediaInfo {
        video_metadata: None,
        video: Some(media::VideoCodec::Opaque {
            codec: media::OpaqueCodec::FlvId(7),
            sequence_header: None,
        }),
        audio: None,
        framerate: None,
    }
}

/// An opaque FLV video tag body of `len` bytes whose last 4 bytes carry `n`.
fn numbered(n: u32, key: bool, len: usize) -> media::Frame {
    let mut body = vec![if key { 0x17 } else { 0x27 }; len.max(8)];
    let end = body.len();
    body[end - 4..].copy_from_slice(&n.to_be_bytes());
    media::Frame {
        track: media::TrackKind::Video,
        dts: i64::from(n) * 90 * 40,
        pts: i64::from(n) * 90 * 40,
        keyframe: key,
        payload: bytes::Bytes::from(body),
    }
}

fn frame_numbers(events: &[ClientEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Video { payload, .. } if payload.len() >= 8 => {
                let end = payload.len();
                Some(u32::from_be_bytes(payload[end - 4..].try_into().unwrap()))
            }
            _ => None,
        })
        .collect()
}

fn status_codes(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status { code, .. } => Some(code.clone()),
            _ => None,
        })
        .collect()
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

fn rtmp_readers(hub: &Hub) -> u32 {
    let stats = hub.stats("x").unwrap();
    stats
        .readers
        .iter()
        .find(|(p, _)| *p == "rtmp")
        .map_or(0, |(_, n)| *n)
}

fn test_publisher(hub: &Hub, code: &str) -> hub::Publisher {
    hub.publish(
        code,
        hub::PublisherMeta {
            protocol: "test",
            ..hub::PublisherMeta::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn players_of_a_stream_share_one_writer_and_get_the_gop_then_every_frame() {
    let fx = Fixture::start(Rec::new(OnConnect::Allow)).await;
    let publisher = test_publisher(&fx.hub, "x");
    publisher.announce(opaque_video());
    // A GOP bigger than one chunk per frame, so chunking is exercised.
    for n in 0..5 {
        publisher.write(numbered(n, n == 0, 10_000));
    }
    let mut players = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
        c.run_until(|e| frame_numbers(e).len() >= 5).await;
        assert_eq!(
            frame_numbers(&c.events),
            [0, 1, 2, 3, 4],
            "cached GOP first"
        );
        players.push(c);
    }
    assert_eq!(fx.fanout.tasks(), 1, "one writer for the stream");
    assert_eq!(rtmp_readers(&fx.hub), 3);
    for n in 5..40 {
        publisher.write(numbered(n, n % 10 == 0, 300 + n as usize * 97));
    }
    for c in &mut players {
        c.run_until(|e| frame_numbers(e).len() >= 40).await;
        assert_eq!(frame_numbers(&c.events), (0..40).collect::<Vec<_>>());
        let stamps: Vec<u32> = c
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Video { timestamp, .. } => Some(*timestamp),
                _ => None,
            })
            .collect();
        assert_eq!(stamps, (0..40).map(|n| n * 40).collect::<Vec<_>>());
    }
    drop(players);
    wait_until("the writer retires", || fx.fanout.tasks() == 0).await;
    wait_until("readers leave", || {
        fx.hub.stats("x").unwrap().readers.is_empty()
    })
    .await;
    drop(publisher);
    fx.stop().await;
}

#[tokio::test]
async fn a_stalled_player_neither_stalls_the_others_nor_grows_without_bound() {
    let fx = Fixture::start(Rec::new(OnConnect::Allow)).await;
    let publisher = test_publisher(&fx.hub, "x");
    publisher.announce(opaque_video());
    publisher.write(numbered(0, true, 1000));
    let mut stalled = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    stalled.run_until(|e| !frame_numbers(e).is_empty()).await;
    let mut live = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    live.run_until(|e| !frame_numbers(e).is_empty()).await;
    // 30 MB through a player that reads nothing: far beyond its socket buffers and the
    // writer's ring.
    let last = 1500;
    for n in 1..=last {
        publisher.write(numbered(n, n % 50 == 0, 20_000));
        if n % 20 == 0 {
            live.run_until(|e| frame_numbers(e).last() == Some(&n))
                .await;
        }
    }
    let got = frame_numbers(&live.events);
    assert_eq!(
        got,
        (0..=last).collect::<Vec<_>>(),
        "the reading player lost nothing"
    );
    // The stalled one is still connected and resumes at a keyframe when it reads again.
    publisher.write(numbered(last + 1, true, 1000));
    publisher.write(numbered(last + 2, false, 1000));
    stalled
        .run_until(|e| frame_numbers(e).last() == Some(&(last + 2)))
        .await;
    let seen = frame_numbers(&stalled.events);
    assert!(seen.len() < got.len(), "the stalled player skipped frames");
    let mut resumed = seen.clone();
    resumed.dedup();
    assert_eq!(resumed, seen, "no frame twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    drop(publisher);
    fx.stop().await;
}

#[tokio::test]
async fn kicked_player_is_closed_and_republish_is_announced_to_the_rest() {
    let fx = Fixture::start(Rec::new(OnConnect::Allow)).await;
    let publisher = test_publisher(&fx.hub, "x");
    publisher.announce(opaque_video());
    publisher.write(numbered(0, true, 100));
    let mut a = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    a.run_until(|e| !frame_numbers(e).is_empty()).await;
    let mut b = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    b.run_until(|e| !frame_numbers(e).is_empty()).await;
    let session = fx
        .hub
        .sessions()
        .into_iter()
        .find(|s| s.role == SessionRole::Reader)
        .unwrap();
    assert!(fx.hub.kick_session(session.id));
    // One of them is kicked; find out which by who sees EOF.
    let (mut kicked, mut kept) = (a, b);
    let closed = tokio::time::timeout(Duration::from_secs(2), kicked.tcp.readable()).await;
    assert!(closed.is_ok());
    kicked.run_until(|_| false).await;
    if !kicked.eof {
        std::mem::swap(&mut kicked, &mut kept);
        kicked.until_eof().await;
    }
    drop(publisher);
    let publisher = test_publisher(&fx.hub, "x");
    publisher.announce(opaque_video());
    publisher.write(numbered(1, true, 100));
    kept.run_until(|e| frame_numbers(e).last() == Some(&1))
        .await;
    let codes = status_codes(&kept.events);
    let unpublished = codes
        .iter()
        .position(|c| c == "NetStream.Play.UnpublishNotify")
        .expect("told of the unpublish");
    let published = codes
        .iter()
        .position(|c| c == "NetStream.Play.PublishNotify")
        .expect("told of the republish");
    assert!(unpublished < published, "{codes:?}");
    assert_eq!(rtmp_readers(&fx.hub), 1);
    drop(publisher);
    fx.stop().await;
}

/// Video frame numbers and status codes in the order the player saw them.
fn timeline(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status { code, .. } => Some(code.clone()),
            ClientEvent::Video { .. } => frame_numbers(std::slice::from_ref(e))
                .first()
                .map(|n| n.to_string()),
            _ => None,
        })
        .collect()
}

fn saw(events: &[ClientEvent], code: &str) -> bool {
    status_codes(events).iter().any(|c| c == code)
}

#[tokio::test]
async fn nginx_rtmp_player_controls_pause_receive_video_and_play_stop() {
    use crate::amf0::Amf0Value;
    let fx = Fixture::start(Rec::new(OnConnect::Allow)).await;
    let publisher = test_publisher(&fx.hub, "x");
    publisher.announce(opaque_video());
    publisher.write(numbered(0, true, 100));
    let mut c = Client::connect(fx.addr, "live", ClientRole::Play { name: "x".into() }).await;
    c.run_until(|e| frame_numbers(e) == [0]).await;

    // pause: nothing is sent until unpause, which resumes where the player was (same GOP).
    c.session
        .stream_command("pause", vec![true.into(), Amf0Value::Number(0.0)]);
    c.run_until(|e| saw(e, "NetStream.Pause.Notify")).await;
    for n in 1..=3 {
        publisher.write(numbered(n, false, 100));
    }
    c.session
        .stream_command("pause", vec![false.into(), Amf0Value::Number(40.0)]);
    c.run_until(|e| frame_numbers(e).last() == Some(&3)).await;
    let t = timeline(&c.events);
    let paused = t
        .iter()
        .position(|x| x == "NetStream.Pause.Notify")
        .unwrap();
    let resumed = t
        .iter()
        .position(|x| x == "NetStream.Unpause.Notify")
        .unwrap();
    assert_eq!(
        resumed,
        paused + 1,
        "nothing between pause and unpause: {t:?}"
    );
    assert_eq!(&t[resumed + 1..], ["1", "2", "3"], "{t:?}");

    // receiveVideo false: no video; true again: from the next keyframe on. A pause and
    // unpause after each command proves the server applied it.
    c.session.stream_command("receiveVideo", vec![false.into()]);
    c.session
        .stream_command("pause", vec![true.into(), Amf0Value::Number(0.0)]);
    c.session
        .stream_command("pause", vec![false.into(), Amf0Value::Number(0.0)]);
    c.run_until(|e| status_codes(e).len() >= 6).await;
    publisher.write(numbered(4, false, 100));
    publisher.write(numbered(5, true, 100));
    c.session.stream_command("receiveVideo", vec![true.into()]);
    c.session
        .stream_command("pause", vec![true.into(), Amf0Value::Number(0.0)]);
    c.session
        .stream_command("pause", vec![false.into(), Amf0Value::Number(0.0)]);
    c.run_until(|e| status_codes(e).len() >= 8).await;
    publisher.write(numbered(6, false, 100));
    publisher.write(numbered(7, true, 100));
    publisher.write(numbered(8, false, 100));
    c.run_until(|e| frame_numbers(e).last() == Some(&8)).await;
    assert_eq!(frame_numbers(&c.events), [0, 1, 2, 3, 7, 8]);

    // deleteStream: StreamEOF and NetStream.Play.Stop, and the player is no reader any more.
    c.session.close();
    c.run_until(|e| saw(e, "NetStream.Play.Stop")).await;
    wait_until("the reader leaves", || rtmp_readers(&fx.hub) == 0).await;
    drop(publisher);
    fx.stop().await;
}
