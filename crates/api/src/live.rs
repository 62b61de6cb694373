//! `/live/<code>/...`: HLS playlists and segments from memory (DASH files in `dash.rs`),
//! MPEG-TS as a chunked stream.

use crate::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use control::Output;
use hub::{AccessRequest, Action, Event, ON_DEMAND_WAIT, ReaderMeta, Subscription};
use mpegts::TsMuxer;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub(crate) const M3U8: &str = "application/vnd.apple.mpegurl";
const MP2T: &str = "video/mp2t";

/// The client address when the server was started with connect info (tests may not be).
pub(crate) struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// `/live/<path>`: `<code>.flv` (HTTP-FLV and WS-FLV) or `<code>/<file>`, where the code may
/// hold namespaces (`/live/region/north/news/index.m3u8`).
pub(crate) async fn route(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Peer(peer): Peer,
    Query(args): Query<Vec<(String, String)>>,
    // The whole request rather than a `HeaderMap`, whose extractor clones every header: only
    // an MPD request reads a few of them.
    request: Request,
) -> Response {
    match path.rsplit_once('/') {
        Some((code, file)) if !file.ends_with(".flv") => {
            serve(state, code.to_owned(), file.to_owned(), peer, args, request).await
        }
        _ => crate::flv::serve(state, &path, args, request).await,
    }
}

/// Dispatches on the file name: `index.m3u8`, `<seq>.ts`, `mpegts`.
async fn serve(
    state: AppState,
    code: String,
    file: String,
    peer: Option<SocketAddr>,
    args: Vec<(String, String)>,
    request: Request,
) -> Response {
    if !hub::valid_code(&code) {
        return not_found();
    }
    if file == "mpegts" {
        return mpegts(&state, code, peer, args).await;
    }
    // Every playlist, manifest and segment request is admitted like any other player; the
    // installed admission caches HTTP decisions, so only a player's first request can wait on
    // a hook.
    let dash = crate::dash::is_dash_file(&file);
    let cmaf_hls = crate::dash::is_cmaf_playlist(&file);
    let (protocol, output) = if dash {
        ("dash", Output::Dash)
    } else {
        ("hls", Output::Hls)
    };
    // A switched-off output is absent (404), as before admission, not forbidden. HLS over
    // CMAF comes from the DASH packager, so it needs both.
    if !state.control.output_enabled(&code, output)
        || cmaf_hls && !state.control.output_enabled(&code, Output::Dash)
    {
        return not_found();
    }
    // Another node fetching for its player: answered here, never passed on again (two nodes
    // with stale views of where the stream is would bounce it between them).
    let from_a_node = args.iter().any(|(k, _)| k == cluster::CLUSTER_ARG);
    // LL-HLS delivery directives change with every reload: kept out of the admission, whose
    // decisions are cached per query. So are the DVR window's (`ago` changes every request).
    let (directives, args): (Vec<_>, Vec<_>) =
        args.into_iter().partition(|(k, _)| k.starts_with("_HLS_"));
    let (dvr_args, args): (Vec<_>, Vec<_>) = args
        .into_iter()
        .partition(|(k, _)| matches!(k.as_str(), "from" | "ago" | "dur" | "delay" | "dvr"));
    let code = match admit(&state, code, protocol, peer, args).await {
        Ok(code) => code,
        Err(refused) => return refused,
    };
    // Published on another node: that node's own files, so every node names and numbers
    // them alike. Recordings and DVR windows stay with the node whose disk holds them.
    if let Some(edge) = &state.edge
        && !from_a_node
        && !file.starts_with("rec-")
        && dvr_args.is_empty()
        && let Some(base) = edge.origin(&code).await
    {
        let path = format!("/live/{code}/{file}");
        let mpd = dash && file.ends_with(".mpd");
        return crate::edge::pass_on(
            edge,
            &code,
            &base,
            &path,
            &directives,
            mpd,
            request.headers(),
        )
        .await;
    }
    state.hub.touch(&code);
    // Recordings are served for streams that exist (configured or live), not for a deleted
    // one whose files are still on disk.
    let known = || state.control.get(&code).is_some() || state.hub.is_live(&code);
    if dash && file.starts_with("rec-") {
        if !known() {
            return not_found();
        }
        return crate::recordings::serve_dash_recorded(&state, &code, &file).await;
    }
    if file == "index.mpd"
        && let Some(dvr) = crate::recordings::dvr_request(&dvr_args, media::unix_ms_now())
    {
        if !known() {
            return not_found();
        }
        return match dvr {
            Ok(dvr) => crate::recordings::dash_dvr(&state, &code, dvr, request.headers()).await,
            Err(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
        };
    }
    if dash {
        if file.ends_with(".mpd") {
            // Live is not enough: the MPD exists once the first segment does.
            wait_first_segment(&state, &code, || {
                state.dash.stats(&code).is_some_and(|s| s.segments > 0)
            })
            .await;
        }
        return crate::dash::serve(&state, &code, &file, request.headers()).await;
    }
    if cmaf_hls {
        if file == ::dash::MULTIVARIANT {
            wait_first_segment(&state, &code, || {
                state.dash.hls_multivariant(&code).is_some()
            })
            .await;
        }
        return crate::dash::serve_hls(&state, &code, &file, &directives).await;
    }
    if !state.control.output_enabled(&code, Output::Hls) {
        return not_found();
    }
    if file == "index.m3u8"
        && let Some(dvr) = crate::recordings::dvr_request(&dvr_args, media::unix_ms_now())
    {
        if !known() {
            return not_found();
        }
        use crate::recordings::Dvr;
        return match dvr {
            Ok(Dvr::Window(from, to)) => {
                crate::recordings::dvr_playlist(&state, &code, (from, to)).await
            }
            Ok(Dvr::Delay(ms)) => crate::recordings::delayed_playlist(&state, &code, ms).await,
            Ok(Dvr::Live(ms)) => crate::recordings::live_dvr_playlist(&state, &code, ms).await,
            Err(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
        };
    }
    if let Some((id, ext)) = file
        .strip_prefix("rec-")
        .and_then(|f| f.split_once('.'))
        .and_then(|(id, ext)| Some((id.parse::<u64>().ok()?, ext)))
    {
        if !known() {
            return not_found();
        }
        return crate::recordings::serve_recorded(&state, &code, id, ext, request.headers()).await;
    }
    if file == "index.m3u8"
        && let Some(master) = crate::ladder::master(&state, &code).await
    {
        return master;
    }
    // `media.m3u8` is always the stream's own media playlist: with a ladder, `index.m3u8` is
    // the multivariant playlist and lists this one as the source rung.
    if file == "index.m3u8" || file == "media.m3u8" {
        // Looked up once: the rendered playlist is shared `Bytes`, so this is a reference
        // count, not a copy.
        let mut playlist = state.hls.playlist(&code);
        if playlist.is_none() {
            wait_first_segment(&state, &code, || state.hls.playlist(&code).is_some()).await;
            playlist = state.hls.playlist(&code);
        }
        return match playlist {
            Some(text) => media_response(M3U8, "no-cache", Body::from(text)),
            None => not_found(),
        };
    }
    match file
        .strip_suffix(".ts")
        .and_then(|s| s.parse::<u64>().ok())
        .and_then(|seq| state.hls.segment(&code, seq))
    {
        // A segment never changes once listed, so caches may keep it.
        Some(data) => {
            state.hub.record_sent(&code, data.len());
            media_response(MP2T, "public, max-age=60", Body::from(data))
        }
        None => not_found(),
    }
}

/// Holds a playlist or manifest request for a stream that is live (or starts on demand) but
/// has no segment yet until `ready`, so a player that comes right after the publisher (or an
/// edge node asking on a player's behalf) gets it a moment later instead of a 404.
async fn wait_first_segment(state: &AppState, code: &str, ready: impl Fn() -> bool) {
    // A stream an edge only relays is never packaged here.
    if !state.hub.is_relay(code) {
        wait_on_demand(state, code, ready).await;
    }
}

/// Holds a request for a stream whose source starts on demand, or whose output is being
/// made, until `ready` (the request itself may have started the source), rather than
/// answering 404 to the first viewer.
pub(crate) async fn wait_on_demand(state: &AppState, code: &str, ready: impl Fn() -> bool) {
    state
        .hub
        .wait_until_ready(code, ON_DEMAND_WAIT, ready)
        .await;
}

/// Lets a long-lived HTTP reader (MPEG-TS, HTTP-FLV) of `code` in, through `output`'s switch
/// and admission, then waits for an on-demand source: the code to read, or the answer to
/// send (404 for a stream that is not there, 403 when refused).
pub(crate) async fn admit_reader(
    state: &AppState,
    code: String,
    output: Output,
    protocol: &'static str,
    remote_addr: Option<SocketAddr>,
    args: Vec<(String, String)>,
) -> Result<String, Response> {
    let there = |code: &str| state.hub.is_live(code) || state.hub.on_demand(code);
    // Absent is 404 before any admission work, unless another node of a cluster may have it.
    if !state.control.output_enabled(&code, output) || (state.cluster.is_none() && !there(&code)) {
        return Err(not_found());
    }
    let code = admit(state, code, protocol, remote_addr, args).await?;
    // Asked again after admission, which may have started the source (a cluster's edge pull).
    if !there(&code) {
        return Err(not_found());
    }
    wait_on_demand(state, &code, || state.hub.is_live(&code)).await;
    Ok(code)
}

/// Asks the installed admission whether this HTTP player may read `code`: the code to serve
/// (a hook may rename it), or the 403 to send.
pub(crate) async fn admit(
    state: &AppState,
    code: String,
    protocol: &'static str,
    remote_addr: Option<SocketAddr>,
    args: Vec<(String, String)>,
) -> Result<String, Response> {
    let decision = state
        .hub
        .authorize(AccessRequest {
            action: Action::Play,
            code,
            protocol,
            remote_addr,
            args,
            client: None,
            command: Default::default(),
        })
        .await;
    decision.map(|a| a.code).map_err(|denied| {
        // Debug: a refused player retries every segment; the decision itself is logged once.
        tracing::debug!(reason = %denied, protocol, "http play refused");
        (StatusCode::FORBIDDEN, format!("{}\n", denied.reason)).into_response()
    })
}

/// A long-lived reader: asks the control plane like any player, and is a kickable session.
async fn mpegts(
    state: &AppState,
    code: String,
    remote_addr: Option<SocketAddr>,
    args: Vec<(String, String)>,
) -> Response {
    let code = match admit_reader(
        state,
        code,
        Output::Mpegts,
        "mpegts",
        remote_addr,
        args.clone(),
    )
    .await
    {
        Ok(code) => code,
        Err(answer) => return answer,
    };
    let meta = ReaderMeta {
        protocol: "mpegts",
        remote_addr,
        client: None,
        args,
    };
    match state.hub.subscribe_live(&code, meta) {
        Some(sub) => {
            let mut resp = media_response(MP2T, "no-cache, no-store", ts_body(sub));
            // An endless body: a reverse proxy (nginx) must pass it on as it comes, not buffer
            // it. Open-Streamer sends this too.
            resp.headers_mut()
                .insert("x-accel-buffering", HeaderValue::from_static("no"));
            resp
        }
        None => not_found(),
    }
}

/// Open-Streamer's MPEG-TS path, `/<code>/mpegts`: the same stream as `/live/<code>/mpegts`.
pub(crate) async fn serve_mpegts(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Peer(peer): Peer,
    Query(args): Query<Vec<(String, String)>>,
) -> Response {
    if !hub::valid_code(&code) {
        return not_found();
    }
    mpegts(&state, code, peer, args).await
}

pub(crate) fn media_response(
    content_type: &'static str,
    cache: &'static str,
    body: Body,
) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // Browser players (hls.js) are usually served from another origin than the media.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

pub(crate) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "stream or segment not found\n").into_response()
}

struct TsStream {
    kill: CancellationToken,
    sub: Subscription,
    mux: TsMuxer,
    muxing: bool,
    warned: bool,
    ended: bool,
}

/// A chunked body that muxes the subscription to TS until the publisher leaves.
fn ts_body(sub: Subscription) -> Body {
    let state = TsStream {
        kill: sub.kill_token().unwrap_or_default(),
        sub,
        mux: TsMuxer::new(),
        muxing: false,
        warned: false,
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let mut buf = BytesMut::new();
        loop {
            if st.ended {
                return None;
            }
            let ev = tokio::select! {
                ev = st.sub.recv() => match ev {
                    Some(Event::End) | None => return None,
                    Some(ev) => ev,
                },
                // Kicked through the API, or the output was switched off.
                _ = st.kill.cancelled() => return None,
            };
            st.push(ev, &mut buf);
            // Take whatever else is ready so one chunk carries it.
            while buf.len() < 256 << 10 {
                match st.sub.try_recv() {
                    Some(Event::End) => {
                        st.ended = true;
                        break;
                    }
                    Some(ev) => st.push(ev, &mut buf),
                    None => break,
                }
            }
            if !buf.is_empty() {
                let chunk: Bytes = buf.split().freeze();
                st.sub.record_sent(chunk.len());
                return Some((Ok::<_, std::io::Error>(chunk), st));
            }
        }
    });
    Body::from_stream(stream)
}

impl TsStream {
    fn push(&mut self, ev: Event, buf: &mut BytesMut) {
        match ev {
            Event::Tracks { info, .. } => {
                let skipped = self.mux.set_tracks(&info);
                if !skipped.is_empty() && !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        stream = self.sub.code(),
                        ?skipped,
                        "tracks not carried in MPEG-TS"
                    );
                }
                self.mux.write_tables(buf);
                self.muxing = true;
            }
            Event::Frame(f) if self.muxing => {
                if let Err(e) = self.mux.write_frame(&f, buf) {
                    tracing::debug!(stream = self.sub.code(), error = %e, "frame not muxed");
                }
            }
            Event::Frame(_) | Event::End => {}
        }
    }
}
