//! `/live/<code>.flv`: HTTP-FLV (a chunked response) and WS-FLV (the same bytes in binary
//! WebSocket messages after an Upgrade on the same URL), as SRS and Node-Media-Server serve
//! them and flv.js / mpegts.js play them.
//!
//! The FLV bytes come from [`rtmp::flv_mux::FlvMuxer`]: the tags of RTMP play, starting with
//! the FLV header, `onMetaData`, the sequence headers and the GOP cache, with every payload
//! sent as the hub's own `Bytes`. A reader is admitted, counted, kickable and accounted like
//! the MPEG-TS reader of `live.rs`, reads the hub through its bounded [`Subscription`] (a
//! slow viewer skips to the next keyframe, nobody else waits), and stays connected across a
//! republish or an input switch with increasing timestamps. There is no `flv` output switch
//! yet: these readers follow the stream's `rtmp` switch (same tags, same players' world). The
//! control plane kicks the readers of a switched-off output by protocol name and does not know
//! `flv`, so a reader checks the switch itself, every [`OUTPUT_CHECK`].

mod ws;

/// The WS-FLV client-frame reader on any bytes in any split: never panics, holds at most
/// one frame header and one control payload, answers only pings and closes. For `fuzz/`;
/// not an API.
#[doc(hidden)]
pub fn fuzz_ws_client_frames(data: &[u8], split: usize) {
    let mut r = ws::ClientFrames::default();
    for piece in data.chunks(split.max(1)) {
        r.buf().extend_from_slice(piece);
        loop {
            match r.next() {
                Ok(Some(ws::ClientFrame::Ping(p))) => assert!(p.len() <= 125),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(r.buffered() <= 14 + 125, "{} bytes held", r.buffered());
    }
}

use crate::AppState;
use crate::live::{admit_reader, media_response, not_found};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use control::{Control, Output};
use hub::{Event, ReaderMeta, Subscription};
use hyper_util::rt::TokioIo;
use rtmp::flv_mux::FlvMuxer;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::CloseCode;

const FLV: &str = "video/x-flv";

/// How long a reader whose publisher left waits for a republish before its response ends:
/// the default `end_grace` of HLS and DASH, well inside the HTTP idle timeout.
const REPUBLISH_GRACE: Duration = Duration::from_secs(10);
/// How often a reader checks that its stream's output is still switched on.
const OUTPUT_CHECK: Duration = Duration::from_secs(1);
/// Most bytes of tags taken from the hub into one batch (one WebSocket message).
const MAX_BATCH_BYTES: usize = 256 << 10;
/// Most hub events in one batch.
const MAX_BATCH_EVENTS: usize = 512;
/// How long one WebSocket message may take to leave before the viewer counts as gone. A
/// slow viewer loses frames in the hub long before this; a vanished one is cut here (HTTP
/// responses have the listener's idle timeout for that).
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Time given to the close frame at the end of a WebSocket session.
const WS_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /live/<code>.flv`, plain or with a WebSocket Upgrade.
pub(crate) async fn serve(
    state: AppState,
    file: &str,
    args: Vec<(String, String)>,
    mut req: Request,
) -> Response {
    let Some(code) = file.strip_suffix(".flv").filter(|c| hub::valid_code(c)) else {
        return not_found();
    };
    let upgrade = match websocket_key(req.headers()) {
        Ok(key) => key,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let shutdown = req
        .extensions()
        .get::<crate::server::ShutdownSignal>()
        .map(|s| s.0.clone())
        .unwrap_or_default();
    // A switched-off output or a stream that is not there: absent (404), as for MPEG-TS.
    let code = match admit_reader(
        &state,
        code.to_owned(),
        Output::Rtmp,
        "flv",
        peer,
        args.clone(),
    )
    .await
    {
        Ok(code) => code,
        Err(answer) => return answer,
    };
    let meta = ReaderMeta {
        protocol: "flv",
        remote_addr: peer,
        client: None,
        args,
    };
    let Some(sub) = state.hub.subscribe_live(&code, meta) else {
        return not_found();
    };
    let source = FlvSource::new(sub, state.control.clone(), shutdown);
    match upgrade {
        None => media_response(FLV, "no-cache, no-store", http_body(source)),
        Some(key) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let span = debug_span!("flv", protocol = "ws-flv", peer = ?peer, stream = %code);
            // The upgraded connection outlives this request: it becomes a task of the
            // process's tracker, ended by the session's kill token, the listener's shutdown
            // signal or the hub (End plus the republish grace) within WS_CLOSE_TIMEOUT, and a
            // viewer that stops taking bytes is cut after WS_SEND_TIMEOUT.
            state.tasks.spawn(
                async move {
                    match on_upgrade.await {
                        Ok(io) => ws_session(TokioIo::new(io), source).await,
                        Err(e) => debug!(error = %e, "websocket upgrade failed"),
                    }
                }
                .instrument(span),
            );
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(&key))
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// `Ok(None)` for a plain request, the key of a valid WebSocket Upgrade (RFC 6455 4.2.1), or
/// why an Upgrade to WebSocket is not one (a 400).
fn websocket_key(h: &HeaderMap) -> Result<Option<Vec<u8>>, &'static str> {
    let wants_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_ws {
        return Ok(None);
    }
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    match h.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if version_ok => Ok(Some(key.as_bytes().to_vec())),
        _ => Err("a WebSocket upgrade (version 13, with a key) is required\n"),
    }
}

/// Why a reader's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The publisher left and nobody published again within [`REPUBLISH_GRACE`].
    Ended,
    /// Kicked through the API (or the stream was disabled or deleted).
    Kicked,
    /// The stream's output was switched off.
    OutputOff,
    /// The server is shutting down.
    Shutdown,
}

impl Stop {
    fn close_code(self) -> (CloseCode, &'static str) {
        match self {
            Stop::Ended => (CloseCode::Normal, "stream ended"),
            Stop::Kicked => (CloseCode::Policy, "session closed"),
            Stop::OutputOff => (CloseCode::Policy, "output disabled"),
            Stop::Shutdown => (CloseCode::Away, "server shutting down"),
        }
    }
}

/// One viewer: the hub subscription and the FLV muxer, producing batches of pieces.
struct FlvSource {
    sub: Subscription,
    mux: FlvMuxer,
    kill: CancellationToken,
    shutdown: CancellationToken,
    control: Control,
    /// Set while the publisher is away: when to give up waiting for a republish.
    grace: Option<Instant>,
    /// How long to wait for a republish ([`REPUBLISH_GRACE`]).
    grace_period: Duration,
    next_check: Instant,
    stop: Option<Stop>,
}

impl FlvSource {
    fn new(sub: Subscription, control: Control, shutdown: CancellationToken) -> Self {
        FlvSource {
            kill: sub.kill_token().unwrap_or_default(),
            sub,
            mux: FlvMuxer::new(),
            shutdown,
            control,
            grace: None,
            grace_period: REPUBLISH_GRACE,
            next_check: Instant::now() + OUTPUT_CHECK,
            stop: None,
        }
    }

    /// The next batch of pieces to send, in order, or why the stream ended. Cancel-safe:
    /// what was muxed before a cancellation is in the next batch.
    async fn next(&mut self) -> Result<Vec<Bytes>, Stop> {
        loop {
            if let Some(stop) = self.stop {
                return Err(stop);
            }
            let grace = self.grace;
            let ev = tokio::select! {
                ev = self.sub.recv() => ev,
                () = self.kill.cancelled() => {
                    self.stop = Some(Stop::Kicked);
                    continue;
                }
                () = self.shutdown.cancelled() => {
                    self.stop = Some(Stop::Shutdown);
                    continue;
                }
                () = tokio::time::sleep_until(grace.unwrap_or_else(Instant::now)), if grace.is_some() => {
                    self.stop = Some(Stop::Ended);
                    continue;
                }
                () = tokio::time::sleep_until(self.next_check) => {
                    self.check_output();
                    continue;
                }
            };
            let Some(ev) = ev else {
                // The stream is gone for good.
                self.stop = Some(Stop::Ended);
                continue;
            };
            self.push(ev);
            // Take what else is ready, so one write carries it.
            let mut taken = 1;
            while self.mux.pending_bytes() < MAX_BATCH_BYTES && taken < MAX_BATCH_EVENTS {
                let Some(ev) = self.sub.try_recv() else {
                    break;
                };
                self.push(ev);
                taken += 1;
            }
            if Instant::now() >= self.next_check {
                self.check_output();
            }
            let pieces = self.mux.take();
            if !pieces.is_empty() {
                self.sub.record_sent(pieces.iter().map(Bytes::len).sum());
                return Ok(pieces);
            }
        }
    }

    fn push(&mut self, ev: Event) {
        match ev {
            Event::Tracks { info, session } => {
                self.grace = None;
                self.mux.tracks(info, session);
            }
            Event::Frame(f) => {
                self.mux.frame(&f);
            }
            Event::End => {
                self.mux.end();
                self.grace = Some(Instant::now() + self.grace_period);
            }
        }
    }

    fn check_output(&mut self) {
        self.next_check = Instant::now() + OUTPUT_CHECK;
        if !self.control.output_enabled(self.sub.code(), Output::Rtmp) {
            self.stop = Some(Stop::OutputOff);
        }
    }
}

/// A chunked body of the viewer's FLV bytes: every piece is one chunk, payloads included,
/// which hyper writes with vectored I/O.
fn http_body(source: FlvSource) -> Body {
    let stream = futures_util::stream::unfold(
        (source, VecDeque::new()),
        |(mut source, mut queue)| async move {
            loop {
                if let Some(piece) = queue.pop_front() {
                    return Some((Ok::<Bytes, std::io::Error>(piece), (source, queue)));
                }
                match source.next().await {
                    Ok(pieces) => queue.extend(pieces),
                    Err(stop) => {
                        debug!(stream = source.sub.code(), ?stop, "http-flv response ends");
                        return None;
                    }
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// A WS-FLV viewer: one binary message per batch, pings answered, a close frame at the end.
async fn ws_session<S>(mut io: S, mut source: FlvSource)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut client = ws::ClientFrames::default();
    let close = loop {
        tokio::select! {
            read = io.read_buf(client.buf()) => {
                match read {
                    Ok(0) => {
                        debug!("ws-flv viewer hung up");
                        break None;
                    }
                    Err(e) => {
                        debug!(error = %e, "ws-flv read failed");
                        break None;
                    }
                    Ok(_) => {}
                }
                match answer(&mut io, &mut client).await {
                    Ok(None) => {}
                    Ok(Some(close)) => break Some(close),
                    Err(e) => {
                        debug!(error = %e, "ws-flv write failed");
                        break None;
                    }
                }
            }
            batch = source.next() => match batch {
                Ok(pieces) => {
                    let mut msg = ws::binary(pieces);
                    match tokio::time::timeout(WS_SEND_TIMEOUT, io.write_all_buf(&mut msg)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            debug!(error = %e, "ws-flv viewer gone");
                            break None;
                        }
                        Err(_) => {
                            debug!(timeout = ?WS_SEND_TIMEOUT, "ws-flv viewer stalled; closing");
                            break None;
                        }
                    }
                }
                Err(stop) => {
                    debug!(?stop, "ws-flv session ends");
                    break Some(stop.close_code());
                }
            },
        }
    };
    if let Some((code, reason)) = close {
        let mut frame = ws::close(code, reason);
        let _ = tokio::time::timeout(WS_CLOSE_TIMEOUT, async {
            io.write_all_buf(&mut frame).await?;
            io.shutdown().await
        })
        .await;
    }
}

/// Answers what the client sent so far; `Some` when the session is to be closed.
async fn answer<S>(
    io: &mut S,
    client: &mut ws::ClientFrames,
) -> std::io::Result<Option<(CloseCode, &'static str)>>
where
    S: tokio::io::AsyncWrite + Unpin,
{
    loop {
        match client.next() {
            Ok(None) => return Ok(None),
            Ok(Some(ws::ClientFrame::Ping(payload))) => {
                let mut pong = ws::pong(payload);
                tokio::time::timeout(WS_CLOSE_TIMEOUT, io.write_all_buf(&mut pong))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            }
            Ok(Some(ws::ClientFrame::Close)) => {
                debug!("ws-flv viewer closed");
                return Ok(Some((CloseCode::Normal, "")));
            }
            Err(e) => {
                debug!(error = %e, "ws-flv viewer sent invalid frames");
                return Ok(Some((e.close_code(), "protocol error")));
            }
        }
    }
}

#[cfg(test)]
mod tests;
