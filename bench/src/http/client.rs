//! A minimal HTTP/1.1 keep-alive GET client: one connection, one request at a time, bodies
//! counted (and kept only when asked). Small on purpose: the load tool shares two cores with
//! the server it measures, so it must spend as little as a client can.

use std::fmt;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Bytes read per `read` call; segments are read through this buffer and dropped.
const READ_BUF: usize = 64 << 10;
/// Response headers larger than this are refused.
const MAX_HEAD: usize = 16 << 10;
/// A kept body (playlist, MPD) larger than this is refused.
const MAX_KEPT_BODY: usize = 1 << 20;

/// Why a request failed, classified for the report.
#[derive(Debug)]
pub enum HttpError {
    /// The TCP connect failed or timed out.
    Connect(String),
    /// The deadline passed before the response was complete.
    Timeout,
    /// The server closed the connection before the response was complete.
    Closed,
    /// A socket error.
    Io(std::io::ErrorKind),
    /// A malformed or oversized response.
    Parse(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "connect: {e}"),
            HttpError::Timeout => f.write_str("timeout"),
            HttpError::Closed => f.write_str("closed"),
            HttpError::Io(k) => write!(f, "io: {k:?}"),
            HttpError::Parse(e) => write!(f, "parse: {e}"),
        }
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body bytes received (after de-chunking).
    pub body_len: u64,
    /// The body, when asked for.
    pub body: Vec<u8>,
}

/// How the body's end is known.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// One keep-alive connection to `addr`, reopened when the server closes it.
pub struct HttpConn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[pos..len]`.
    pos: usize,
    len: usize,
    request: Vec<u8>,
    /// Connections opened after the first (the server closed one, or an error).
    pub reconnects: u64,
    opened: bool,
}

impl HttpConn {
    /// A connection to `addr` sending `host` as the Host header; opened by the first request.
    pub fn new(addr: SocketAddr, host: String) -> Self {
        HttpConn {
            addr,
            host,
            stream: None,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            pos: 0,
            len: 0,
            request: Vec::with_capacity(256),
            reconnects: 0,
            opened: false,
        }
    }

    async fn connect(&mut self, deadline: Instant) -> Result<(), HttpError> {
        let stream = match timeout_at(deadline, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(HttpError::Connect(format!("{:?}", e.kind()))),
            Err(_) => return Err(HttpError::Connect("timeout".into())),
        };
        let _ = stream.set_nodelay(true);
        if self.opened {
            self.reconnects += 1;
        }
        self.opened = true;
        self.stream = Some(stream);
        self.pos = 0;
        self.len = 0;
        Ok(())
    }

    /// GET `path`; the body is returned when `keep_body`, else only counted. A request on a
    /// reused connection that the server had already closed is retried once on a new one,
    /// as browsers do.
    pub async fn get(
        &mut self,
        path: &str,
        keep_body: bool,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let reused = self.stream.is_some();
        match self.get_once(path, keep_body, deadline).await {
            Err(HttpError::Closed | HttpError::Io(_)) if reused => {
                self.stream = None;
                self.get_once(path, keep_body, deadline).await
            }
            other => other,
        }
    }

    async fn get_once(
        &mut self,
        path: &str,
        keep_body: bool,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        if self.stream.is_none() {
            self.connect(deadline).await?;
        }
        self.request.clear();
        self.request.extend_from_slice(b"GET ");
        self.request.extend_from_slice(path.as_bytes());
        self.request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.request.extend_from_slice(self.host.as_bytes());
        self.request
            .extend_from_slice(b"\r\nUser-Agent: ferrocast-http\r\nAccept: */*\r\n\r\n");
        let result = self.exchange(keep_body, deadline).await;
        if result.is_err() {
            // The connection's state is unknown after a failure: never reuse it.
            self.stream = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        keep_body: bool,
        deadline: Instant,
    ) -> Result<Response, HttpError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::Closed);
        };
        match timeout_at(deadline, stream.write_all(&self.request)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(HttpError::Io(e.kind())),
            Err(_) => return Err(HttpError::Timeout),
        }
        let (status, framing, close) = self.read_head(deadline).await?;
        let mut body = Vec::new();
        let body_len = match framing {
            Framing::Length(n) => {
                self.read_exact_body(n, keep_body, &mut body, deadline)
                    .await?
            }
            Framing::Chunked => self.read_chunked(keep_body, &mut body, deadline).await?,
            Framing::UntilClose => self.read_to_close(keep_body, &mut body, deadline).await?,
        };
        if close || matches!(framing, Framing::UntilClose) {
            self.stream = None;
        }
        Ok(Response {
            status,
            body_len,
            body,
        })
    }

    /// Reads more bytes into the buffer (compacting it first); errors on EOF.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, HttpError> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        } else if self.len == self.buf.len() {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
            if self.len == self.buf.len() {
                return Err(HttpError::Parse("line too long"));
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(HttpError::Closed);
        };
        match timeout_at(deadline, stream.read(&mut self.buf[self.len..])).await {
            Ok(Ok(0)) => Err(HttpError::Closed),
            Ok(Ok(n)) => {
                self.len += n;
                Ok(n)
            }
            Ok(Err(e)) => Err(HttpError::Io(e.kind())),
            Err(_) => Err(HttpError::Timeout),
        }
    }

    async fn read_head(&mut self, deadline: Instant) -> Result<(u16, Framing, bool), HttpError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[self.pos..self.len]) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut framing = Framing::UntilClose;
                    let mut close = resp.version == Some(0);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .ok_or(HttpError::Parse("content-length"))?;
                            framing = Framing::Length(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                            && contains_token(h.value, b"chunked")
                        {
                            framing = Framing::Chunked;
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = contains_token(h.value, b"close");
                        }
                    }
                    if status == 204 || status == 304 || (100..200).contains(&status) {
                        framing = Framing::Length(0);
                    }
                    self.pos += n;
                    return Ok((status, framing, close));
                }
                Ok(httparse::Status::Partial) => {
                    if self.len - self.pos >= MAX_HEAD {
                        return Err(HttpError::Parse("headers too large"));
                    }
                }
                Err(_) => return Err(HttpError::Parse("bad response head")),
            }
            self.fill(deadline).await?;
        }
    }

    /// Takes up to `want` buffered bytes, appending them to `body` when kept.
    fn take(&mut self, want: u64, keep: bool, body: &mut Vec<u8>) -> Result<u64, HttpError> {
        let n = (self.len - self.pos).min(usize::try_from(want).unwrap_or(usize::MAX));
        if keep {
            if body.len() + n > MAX_KEPT_BODY {
                return Err(HttpError::Parse("body too large"));
            }
            body.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        }
        self.pos += n;
        Ok(n as u64)
    }

    async fn read_exact_body(
        &mut self,
        len: u64,
        keep: bool,
        body: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<u64, HttpError> {
        let mut left = len;
        loop {
            left -= self.take(left, keep, body)?;
            if left == 0 {
                return Ok(len);
            }
            self.fill(deadline).await?;
        }
    }

    async fn read_to_close(
        &mut self,
        keep: bool,
        body: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<u64, HttpError> {
        let mut total = 0;
        loop {
            total += self.take(u64::MAX, keep, body)?;
            match self.fill(deadline).await {
                Ok(_) => {}
                Err(HttpError::Closed) => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }

    /// One CRLF-terminated line from the buffer, without the CRLF.
    async fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(i) = self.buf[self.pos..self.len]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.len - self.pos > 1024 {
                return Err(HttpError::Parse("chunk line too long"));
            }
            self.fill(deadline).await?;
        }
    }

    async fn read_chunked(
        &mut self,
        keep: bool,
        body: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<u64, HttpError> {
        let mut total = 0;
        loop {
            let line = self.line(deadline).await?;
            let hex = line.split(|b| *b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(hex)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or(HttpError::Parse("chunk size"))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.line(deadline).await?.is_empty() {}
                return Ok(total);
            }
            total += self.read_exact_body(size, keep, body, deadline).await?;
            if !self.line(deadline).await?.is_empty() {
                return Err(HttpError::Parse("chunk end"));
            }
        }
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}
