//! The RTMP server embedded as a library (Membrane.RTMPServer's model), driven by ffmpeg.

use ferrocast_rtmp::amf0::Amf0Value;
use ferrocast_rtmp::ingest::IngestOutput;
use ferrocast_rtmp::server::Server;
use ferrocast_rtmp::server::handler::{Accepted, Client, ClientHandler, NewClient, Refused};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// What a handler saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    New {
        app: String,
        key: String,
        args: Vec<(String, String)>,
    },
    Tracks {
        video: Option<String>,
        audio: Option<String>,
    },
    Frame {
        video: bool,
        at: Instant,
    },
    Metadata,
    Info(String),
    DeleteStream,
    Closed,
}

type Log = Arc<Mutex<Vec<Seen>>>;

struct Recording(Log);

impl ClientHandler for Recording {
    fn data_available(&mut self, data: IngestOutput) {
        let seen = match data {
            IngestOutput::Announce(info) => Seen::Tracks {
                video: info.video.as_ref().map(|v| v.name()),
                audio: info.audio.as_ref().map(|a| a.name()),
            },
            IngestOutput::Frame(f) => Seen::Frame {
                video: f.track == media::TrackKind::Video,
                at: Instant::now(),
            },
        };
        self.0.lock().unwrap().push(seen);
    }
    fn metadata(&mut self, _: &Amf0Value) {
        self.0.lock().unwrap().push(Seen::Metadata);
    }
    fn delete_stream(&mut self) {
        self.0.lock().unwrap().push(Seen::DeleteStream);
    }
    fn connection_closed(&mut self) {
        self.0.lock().unwrap().push(Seen::Closed);
    }
    fn info(&mut self, message: Box<dyn std::any::Any + Send>) {
        let text = message
            .downcast::<&'static str>()
            .map(|s| s.to_string())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen::Info(text));
    }
}

/// ffmpeg publishing `secs` of a 25 fps test picture and a tone to `url`.
fn ffmpeg_publish(url: &str, secs: u32) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "25", "-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A new-client handler that logs into `log`, keeps each `Client`, and demands after
/// `demand_after` (never if `None`).
fn logging(
    log: Log,
    demand_after: Option<Duration>,
    clients: Arc<Mutex<Vec<Client>>>,
) -> impl Fn(NewClient) -> std::future::Ready<Result<Accepted, Refused>> + Send + Sync + 'static {
    move |new: NewClient| {
        log.lock().unwrap().push(Seen::New {
            app: new.app.clone(),
            key: new.stream_key.clone(),
            args: new.args.clone(),
        });
        clients.lock().unwrap().push(new.client.clone());
        match demand_after {
            Some(d) if d.is_zero() => new.client.demand(),
            Some(d) => {
                let client = new.client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    client.demand();
                    client.send_info("demanded").unwrap();
                });
            }
            None => {}
        }
        std::future::ready(Ok(Accepted::new(Recording(log.clone()))))
    }
}

fn frames(log: &[Seen]) -> (usize, usize) {
    let video = log
        .iter()
        .filter(|s| matches!(s, Seen::Frame { video: true, .. }))
        .count();
    let audio = log
        .iter()
        .filter(|s| matches!(s, Seen::Frame { video: false, .. }))
        .count();
    (video, audio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membrane_handler_gets_every_callback_of_a_published_stream() {
    let log: Log = Arc::default();
    let server = Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .handle_new_client(logging(log.clone(), Some(Duration::ZERO), Arc::default()))
        .start()
        .await
        .unwrap();
    let url = format!("rtmp://127.0.0.1:{}/myapp/mykey?token=t1", server.port());
    let out = ffmpeg_publish(&url, 2).output().await.unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log[0],
        Seen::New {
            app: "myapp".into(),
            key: "mykey".into(),
            args: vec![("token".into(), "t1".into())],
        }
    );
    assert!(log.contains(&Seen::Metadata), "{log:?}");
    assert!(
        log.contains(&Seen::Tracks {
            video: Some("h264".into()),
            audio: Some("aac".into())
        }),
        "{log:?}"
    );
    let (video, audio) = frames(&log);
    assert!(video >= 40, "{video} video frames");
    assert!(audio >= 60, "{audio} audio frames");
    // ffmpeg ends with deleteStream: the handler hears that, and not a close besides.
    let ends: Vec<_> = log
        .iter()
        .filter(|s| matches!(s, Seen::DeleteStream | Seen::Closed))
        .collect();
    assert_eq!(ends, [&Seen::DeleteStream], "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membrane_publish_is_acknowledged_only_once_demanded() {
    let log: Log = Arc::default();
    let delay = Duration::from_millis(1500);
    let server = Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .client_timeout(Duration::from_secs(5))
        .handle_new_client(logging(log.clone(), Some(delay), Arc::default()))
        .start()
        .await
        .unwrap();
    let url = format!("rtmp://127.0.0.1:{}/live/late", server.port());
    let started = Instant::now();
    let out = ffmpeg_publish(&url, 2).output().await.unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop().await.unwrap();
    let log = log.lock().unwrap().clone();
    let first = log
        .iter()
        .find_map(|s| match s {
            Seen::Frame { at, .. } => Some(*at),
            _ => None,
        })
        .expect("frames after the demand");
    assert!(
        first.duration_since(started) >= delay,
        "data flowed {:?} after the start, before the demand",
        first.duration_since(started)
    );
    assert!(log.contains(&Seen::Info("demanded".into())), "{log:?}");
    // ffmpeg waits for the acknowledgement, so its whole stream came after the demand.
    assert!(frames(&log).0 >= 40, "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membrane_client_nothing_demands_is_closed_after_client_timeout() {
    let log: Log = Arc::default();
    let clients: Arc<Mutex<Vec<Client>>> = Arc::default();
    let server = Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .client_timeout(Duration::from_secs(1))
        .handle_new_client(logging(log.clone(), None, clients.clone()))
        .start()
        .await
        .unwrap();
    let url = format!("rtmp://127.0.0.1:{}/live/unclaimed", server.port());
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), ffmpeg_publish(&url, 15).output())
        .await
        .expect("ffmpeg ends once its connection is closed")
        .unwrap();
    let took = started.elapsed();
    assert!(
        !out.status.success(),
        "ffmpeg should fail: nothing took its stream"
    );
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    let log = log.lock().unwrap().clone();
    assert_eq!(frames(&log), (0, 0), "{log:?}");
    assert_eq!(log.last(), Some(&Seen::Closed), "{log:?}");
    assert!(clients.lock().unwrap()[0].is_closed());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membrane_embedded_server_without_handler_refuses_publish_and_play() {
    let server = Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let url = format!("rtmp://127.0.0.1:{}/live/x", server.port());
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "5000000", &url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let out = ffmpeg_publish(&url, 1).output().await.unwrap();
    assert!(!out.status.success());
    server.stop().await.unwrap();
}

/// An example program, built beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membrane_record_example_writes_a_playable_flv() {
    let dir = std::env::temp_dir().join(format!("ferrocast-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(example("record"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&dir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the record example is built with the tests");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the example did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("rtmp://127.0.0.1:{port}/live/demo");
    let out = ffmpeg_publish(&url, 3).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("live-demo.flv");
    // The writer task closes the file once the publisher has left.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args([
            "stream=codec_name,width,height:format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).to_string();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(text.contains("h264,320,240"), "{text}");
    assert!(text.contains("aac"), "{text}");
    let duration: f64 = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next()
        .unwrap_or(0.0);
    assert!(duration >= 2.5, "{duration} s recorded: {text}");
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .await
        .unwrap();
    assert!(
        decode.status.success(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
