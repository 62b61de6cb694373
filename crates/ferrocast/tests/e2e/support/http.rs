//! A minimal HTTP/1.1 client over `std::net::TcpStream`: any method with extra headers and a
//! body; enough for status, headers, fixed-length and chunked bodies, and reading a
//! never-ending chunked stream piece by piece.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response whose body has not been read yet.
#[derive(Debug)]
pub struct Stream {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<usize>,
    done: bool,
}

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET path` and reads the status line and headers; every read waits at most `timeout`.
pub fn open(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Stream> {
    open_request(addr, "GET", path, &[], None, timeout)
}

/// Sends `method path` with extra `headers` and, if given, `body` (with its Content-Length),
/// then reads the status line and headers; every read or write waits at most `timeout`.
///
/// A server may answer and close before it has read a large body (413): a failed body write
/// is then ignored so the answer can still be read.
pub fn open_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Stream> {
    let mut sock = TcpStream::connect_timeout(&addr, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ferrocast-e2e\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes())?;
    if let Some(b) = body
        && let Err(e) = sock.write_all(b)
    {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {}
            _ => return Err(e),
        }
    }
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed inside the headers".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let remaining = header(&headers, "content-length").and_then(|v| v.parse().ok());
    Ok(Stream {
        status,
        headers,
        reader,
        chunked,
        remaining,
        done: false,
    })
}

/// `GET path` to completion.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    read_all(open(addr, path, Duration::from_secs(10))?)
}

/// `method path` with extra `headers` and an optional `body`, to completion.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    read_all(open_request(
        addr,
        method,
        path,
        headers,
        body,
        Duration::from_secs(10),
    )?)
}

fn read_all(mut s: Stream) -> io::Result<Response> {
    let mut body = Vec::new();
    while let Some(piece) = s.next_piece()? {
        body.extend_from_slice(&piece);
    }
    Ok(Response {
        status: s.status,
        headers: s.headers,
        body,
    })
}

impl Stream {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next piece of body (one chunk of a chunked body); `None` at a clean end: the
    /// terminating zero-length chunk, the end of a Content-Length body, or EOF when neither
    /// applies. An EOF inside a chunked body is an error.
    pub fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if self.chunked {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "chunked body ended without its terminating chunk",
                ));
            }
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers (none expected) up to the empty line.
                loop {
                    line.clear();
                    if self.reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(None);
            }
            let mut data = vec![0; size];
            self.reader.read_exact(&mut data)?;
            let mut crlf = [0; 2];
            self.reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(bad("chunk not followed by CRLF".into()));
            }
            return Ok(Some(data));
        }
        let want = self.remaining.unwrap_or(64 << 10).min(64 << 10);
        if want == 0 {
            self.done = true;
            return Ok(None);
        }
        let mut data = vec![0; want];
        let n = self.reader.read(&mut data)?;
        if n == 0 {
            self.done = true;
            return match self.remaining {
                Some(left) if left > 0 => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended {left} bytes short of its Content-Length"),
                )),
                _ => Ok(None),
            };
        }
        data.truncate(n);
        if let Some(r) = &mut self.remaining {
            *r -= n;
        }
        Ok(Some(data))
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// GETs `path`, a body sent while it grows: asserts 200 with chunked transfer and no length,
/// and returns every piece as it came, with when the first and the last arrived (from the
/// request).
pub fn read_growing(
    addr: std::net::SocketAddr,
    path: &str,
) -> (Vec<Vec<u8>>, std::time::Duration, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let mut stream = open(addr, path, std::time::Duration::from_secs(10)).expect(path);
    assert_eq!(stream.status, 200, "{path}");
    assert!(stream.header("content-length").is_none(), "{path}");
    assert!(
        stream
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "{path}"
    );
    let mut pieces = Vec::new();
    let mut first = None;
    while let Some(piece) = stream.next_piece().expect("chunked body") {
        first.get_or_insert(t0.elapsed());
        pieces.push(piece);
    }
    (pieces, first.expect("a first piece"), t0.elapsed())
}
