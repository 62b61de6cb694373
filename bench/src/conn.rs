//! The thin tokio driver around [`ClientSession`]: connect, write its queue, read and feed.

use bytes::BytesMut;
use rtmp::client::{ClientConfig, ClientError, ClientRole, ClientSession};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read buffer headroom: one syscall reads up to this much.
const READ_CHUNK: usize = 64 << 10;
/// iovecs per `writev`.
const MAX_IOVECS: usize = 64;

/// Where to connect and what to say in `connect`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub app: String,
    pub name: String,
    pub tc_url: String,
}

impl Target {
    /// Parses `rtmp://host:port/app/name` (port defaults to 1935; host must be an IP).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| format!("{url:?}: only rtmp:// URLs are supported"))?;
        let (hostport, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{url:?}: missing /app/name"))?;
        let (app, name) = path
            .split_once('/')
            .filter(|(a, n)| !a.is_empty() && !n.is_empty())
            .ok_or_else(|| format!("{url:?}: missing /app/name"))?;
        let hostport = if hostport.contains(':') {
            hostport.to_owned()
        } else {
            format!("{hostport}:1935")
        };
        let addr = hostport
            .parse()
            .map_err(|e| format!("{url:?}: host must be IP:port ({e})"))?;
        Ok(Target {
            addr,
            app: app.to_owned(),
            name: name.to_owned(),
            tc_url: format!("rtmp://{hostport}/{app}"),
        })
    }
}

/// One client connection: socket, session and read buffer.
pub struct Conn {
    pub stream: TcpStream,
    pub session: ClientSession,
    pub buf: BytesMut,
}

#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Rtmp(ClientError),
    Closed,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "io: {e}"),
            ConnError::Rtmp(e) => write!(f, "rtmp: {e}"),
            ConnError::Closed => write!(f, "closed by server"),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl Conn {
    pub async fn open(target: &Target, role: ClientRole, seed: u64) -> Result<Conn, ConnError> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let config = ClientConfig::new(target.app.clone(), target.tc_url.clone());
        let session = ClientSession::new(config, role, 0, seed);
        let mut conn = Conn {
            stream,
            session,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        conn.flush().await?;
        Ok(conn)
    }

    /// Writes everything the session has queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.session.out().is_empty() {
            let n = {
                let out = self.session.out();
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let k = out.io_slices(&mut slices);
                self.stream.write_vectored(&slices[..k]).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.session.out().advance(n);
        }
        Ok(())
    }

    /// Reads once (cancel safe) into the buffer; `Closed` at end of stream.
    pub async fn read(&mut self) -> Result<(), ConnError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(ConnError::Closed),
            _ => Ok(()),
        }
    }

    /// Feeds the buffered input to the session (events are then polled by the caller).
    pub fn feed(&mut self) -> Result<(), ConnError> {
        self.session.feed(&mut self.buf).map_err(ConnError::Rtmp)
    }
}
