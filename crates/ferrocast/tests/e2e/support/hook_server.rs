//! A recording HTTP hook receiver: the operator's service that `hooks.on_*` and `callback.url`
//! point at. It records every request and answers from a per-path script: a status with
//! headers (a 302 with `Location`), an answer held back past the server's hook timeout, or a
//! connection closed without any answer.
//!
//! std only: one accept thread and one thread per connection, HTTP/1.1 keep-alive (the hook
//! client reuses its connections), bodies with Content-Length or chunked.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a connection thread wakes up to notice the server was dropped.
const POLL: Duration = Duration::from_millis(200);
/// Largest request head or body accepted; the hook client sends a few hundred bytes.
const MAX_REQUEST: usize = 1 << 20;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string (without `?`), empty if none.
    pub query: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The query string's arguments, decoded.
    pub query_args: Vec<(String, String)>,
    /// The body's arguments when it is `application/x-www-form-urlencoded`, decoded.
    pub form: Vec<(String, String)>,
    /// When the request was complete.
    pub at: Instant,
}

impl Call {
    /// First value of argument `name`: the form body's, else the query string's.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(&self.query_args)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Argument `name`, failing the test (with the whole call) when it is missing.
    #[track_caller]
    pub fn must(&self, name: &str) -> &str {
        self.arg(name)
            .unwrap_or_else(|| panic!("hook call without argument {name:?}: {self:#?}"))
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `call=` (nginx-rtmp's event name), empty if absent.
    pub fn call(&self) -> &str {
        self.arg("call").unwrap_or("")
    }
}

/// What the hook server does with a request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// `None`: close the connection without answering.
    status: Option<u16>,
    headers: Vec<(String, String)>,
    /// Held back this long before answering (or closing).
    delay: Duration,
}

impl Reply {
    /// An empty answer with `status`.
    pub fn status(status: u16) -> Reply {
        Reply {
            status: Some(status),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// 200 OK.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// 302 with `Location: location` (nginx-rtmp: rename the stream).
    pub fn redirect(location: &str) -> Reply {
        Reply::status(302).header("Location", location)
    }

    /// Closes the connection without a byte of answer.
    pub fn close() -> Reply {
        Reply {
            status: None,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers only after `delay` (past the server's hook timeout: a hook that hangs).
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

struct Shared {
    calls: Mutex<Vec<Call>>,
    scripts: Mutex<HashMap<String, Script>>,
    stop: AtomicBool,
}

impl Shared {
    fn script(&self, path: &str) -> Option<Script> {
        lock(&self.scripts).get(path).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread leaves the data consistent (whole pushes only).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hook receiver; stops accepting on drop. Paths without a script answer 200.
pub struct HookServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookServer")
            .field("addr", &self.addr)
            .field("calls", &lock(&self.shared.calls).len())
            .finish()
    }
}

impl HookServer {
    /// Listens on a free 127.0.0.1 port.
    pub fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook server");
        let addr = listener.local_addr().expect("hook server address");
        let shared = Arc::new(Shared {
            calls: Mutex::new(Vec::new()),
            scripts: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name("hook-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if accept_shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = accept_shared.clone();
                    // Detached: it ends when the peer closes or within POLL of `stop`.
                    let _ = std::thread::Builder::new()
                        .name("hook-conn".into())
                        .spawn(move || serve(conn, &shared));
                }
            })
            .expect("spawn hook server thread");
        HookServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers every request to `path` with `reply` (replacing an earlier script).
    pub fn reply(&self, path: &str, reply: Reply) {
        self.reply_with(path, move |_| reply.clone());
    }

    /// Answers requests to `path` with what `script` decides from the request (by `name`,
    /// by a token, by a JWT claim...), replacing an earlier script.
    pub fn reply_with(&self, path: &str, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        lock(&self.shared.scripts).insert(path.to_owned(), Arc::new(script));
    }

    /// Every request to `path` so far, oldest first.
    pub fn calls(&self, path: &str) -> Vec<Call> {
        lock(&self.shared.calls)
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// The first request to `path` that `pred` accepts, waiting up to `timeout`; fails the
    /// test with every call to that path otherwise.
    #[track_caller]
    pub fn wait_call(&self, path: &str, pred: impl Fn(&Call) -> bool, timeout: Duration) -> Call {
        let start = Instant::now();
        loop {
            if let Some(c) = self.calls(path).into_iter().find(|c| pred(c)) {
                return c;
            }
            assert!(
                start.elapsed() < timeout,
                "no matching request to {path} within {timeout:?}; requests to it:\n{:#?}",
                self.calls(path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// An http URL on 127.0.0.1 where nothing listens (connection refused): a port bound and
/// released at once.
pub fn refused_url(path: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("local_addr");
    drop(l);
    format!("http://{addr}{path}")
}

/// Serves requests on one connection until the peer closes, a script closes it, or the server
/// is dropped.
fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(POLL));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let call = match read_request(&mut reader, shared) {
            Ok(Some(call)) => call,
            Ok(None) | Err(_) => return,
        };
        let reply = match shared.script(&call.path) {
            Some(script) => script(&call),
            None => Reply::ok(),
        };
        lock(&shared.calls).push(call);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let Some(status) = reply.status else {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Content-Length: 0\r\n\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return; // the client gave up waiting (hook timeout)
        }
    }
}

/// Reads one request; `None` at a clean EOF between requests or once the server stops.
fn read_request(r: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Option<Call>> {
    let Some(request_line) = read_line(r, shared, true)? else {
        return Ok(None);
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, shared, false)?.ok_or_else(|| bad("EOF inside the head"))?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("header line without a colon"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(r, shared)?
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if len > MAX_REQUEST {
            return Err(bad("body too large"));
        }
        let mut body = vec![0; len];
        read_exact(r, &mut body, shared)?;
        body
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let form = if header("content-type")
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    {
        decode_form(&body)
    } else {
        Vec::new()
    };
    Ok(Some(Call {
        method,
        path,
        query_args: decode_form(query.as_bytes()),
        query,
        headers,
        body,
        form,
        at: Instant::now(),
    }))
}

/// One CRLF-terminated line without its terminator. Read timeouts only poll the stop flag; an
/// EOF before any byte of a request line is a clean end (`None`) when `idle` is set.
fn read_line(
    r: &mut BufReader<TcpStream>,
    shared: &Shared,
    idle: bool,
) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match r.read_until(b'\n', &mut line) {
            Ok(0) if line.is_empty() && idle => return Ok(None),
            Ok(0) => return Err(bad("EOF inside a line")),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
        if line.len() > MAX_REQUEST {
            return Err(bad("line too long"));
        }
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_exact(r: &mut BufReader<TcpStream>, buf: &mut [u8], shared: &Shared) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(bad("server stopped"));
        }
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Err(bad("EOF inside the body")),
            Ok(n) => filled += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_chunked(r: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, shared, false)?.ok_or_else(|| bad("EOF in a chunk size"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            while !read_line(r, shared, false)?
                .ok_or_else(|| bad("EOF in trailers"))?
                .is_empty()
            {}
            return Ok(body);
        }
        if body.len() + size > MAX_REQUEST {
            return Err(bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        read_exact(r, &mut body[start..], shared)?;
        let mut crlf = [0; 2];
        read_exact(r, &mut crlf, shared)?;
    }
}

fn decode_form(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
