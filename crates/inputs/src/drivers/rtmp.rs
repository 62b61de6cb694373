//! `rtmp://` and `rtmps://` play from another server (an origin, nginx-rtmp, a CDN).

use super::{DriverConfig, InputError};
use crate::flv::FlvFeed;
use crate::source::Emitter;
use bytes::BytesMut;
use rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use std::io::IoSlice;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The platform roots, loaded once for every rtmps:// input.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, InputError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| rtmp::tls::client_config(None).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| InputError::Connect(format!("TLS: {e}")))
}

pub(crate) async fn run(
    input: &str,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let target = push::url::parse(input).map_err(InputError::Connect)?;
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| InputError::Connect(format!("connect {addr}: timed out")))?
        .map_err(|e| InputError::Connect(format!("connect {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return play(tcp, &target, out, config).await;
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| InputError::Connect(format!("TLS name: {e}")))?;
    let tls = tokio::time::timeout(
        config.connect_timeout,
        tokio_rustls::TlsConnector::from(tls_config()?).connect(name, tcp),
    )
    .await
    .map_err(|_| InputError::Connect("TLS handshake timed out".into()))?
    .map_err(|e| InputError::Connect(format!("TLS: {e}")))?;
    play(tls, &target, out, config).await
}

async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    target: &push::url::Target,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut session = ClientSession::new(
        ClientConfig::new(target.app.clone(), target.tc_url.clone()),
        ClientRole::Play {
            name: target.name.clone(),
        },
        epoch as u32,
        epoch,
    );
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(16 << 10);
    let mut feed = FlvFeed::default();
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut playing = false;
    loop {
        flush(&mut wr, &mut session).await?;
        let n = if playing {
            rd.read_buf(&mut rbuf).await
        } else {
            tokio::time::timeout_at(deadline, rd.read_buf(&mut rbuf))
                .await
                .map_err(|_| InputError::Connect("no NetStream.Play.Start".into()))?
        }
        .map_err(|e| InputError::Source(format!("read: {e}")))?;
        if n == 0 {
            return Err(InputError::Ended("the server closed the connection".into()));
        }
        session
            .feed(&mut rbuf)
            .map_err(|e| InputError::Source(format!("RTMP: {e}")))?;
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Playing => playing = true,
                ClientEvent::Status {
                    level,
                    code,
                    description,
                } if level == "error" || code == "NetStream.Play.StreamNotFound" => {
                    return Err(InputError::Connect(format!("{code}: {description}")));
                }
                ClientEvent::Status { code, .. }
                    if code == "NetStream.Play.UnpublishNotify"
                        || code == "NetStream.Play.Stop" =>
                {
                    return Err(InputError::Ended(format!("{code} from the origin")));
                }
                ClientEvent::Error {
                    command,
                    description,
                } => {
                    return Err(InputError::Connect(format!(
                        "{command} failed: {description}"
                    )));
                }
                ClientEvent::Metadata(meta) => feed.metadata(&meta, out).await?,
                ClientEvent::Video { timestamp, payload } => {
                    feed.video(timestamp, &payload, out).await?
                }
                ClientEvent::Audio { timestamp, payload } => {
                    feed.audio(timestamp, &payload, out).await?
                }
                _ => {}
            }
        }
        if rbuf.capacity() > 256 << 10 && rbuf.is_empty() {
            rbuf = BytesMut::with_capacity(16 << 10);
        }
    }
}

/// Writes what the session queued (acknowledgements, commands).
async fn flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    session: &mut ClientSession,
) -> Result<(), InputError> {
    let q = session.out();
    if q.is_empty() {
        return Ok(());
    }
    while !q.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = q.io_slices(&mut slices);
        let written = wr
            .write_vectored(&slices[..n])
            .await
            .map_err(|e| InputError::Source(format!("write: {e}")))?;
        if written == 0 {
            return Err(InputError::Source("write: connection closed".into()));
        }
        q.advance(written);
    }
    wr.flush()
        .await
        .map_err(|e| InputError::Source(format!("write: {e}")))
}
