//! One simulated HLS or DASH player on its own keep-alive connection, behaving as real players
//! do: load the playlist, fetch the segments it has not fetched yet (starting a few from the
//! live edge), reload on the schedule the format asks for.

use super::client::{HttpConn, Response};
use super::playlist::{parse_m3u8, parse_mpd, resolve};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};

/// Request kinds, in report order.
pub const KINDS: [&str; 3] = ["playlist", "segment", "init"];
const PLAYLIST: usize = 0;
const SEGMENT: usize = 1;
const INIT: usize = 2;

/// Segments a player starts behind the newest listed one (hls.js and Safari start about three
/// target durations from the end, RFC 8216 6.3.3).
const LIVE_EDGE_SEGMENTS: usize = 3;
/// Pause after a failed playlist load.
const RETRY: Duration = Duration::from_millis(500);
/// How long requests in flight at the end of the window may take to finish.
const END_GRACE: Duration = Duration::from_secs(3);

/// Which format the players read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HLS media playlist (`.m3u8`).
    Hls,
    /// DASH MPD (`.mpd`).
    Dash,
}

/// When an HLS player reloads its playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// RFC 8216 6.3.4: a target duration after a load that changed the playlist, half of it
    /// after one that did not (hls.js, Safari).
    Spec,
    /// Every half target duration, whatever the playlist did.
    Half,
}

/// What every player shares.
#[derive(Debug)]
pub struct Ctx {
    /// Server address.
    pub addr: SocketAddr,
    /// Host header.
    pub host: String,
    /// Path of the playlist or MPD.
    pub path: String,
    /// Format.
    pub mode: Mode,
    /// HLS reload policy.
    pub reload: Reload,
    /// Requests completing from here on are counted.
    pub window_start: Instant,
    /// No request starts from here on; requests completing after it are not counted.
    pub window_end: Instant,
    /// Bound of one request.
    pub request_timeout: Duration,
}

/// Counts of one request kind.
#[derive(Debug, Default)]
pub struct KindStats {
    /// Responses received (any status).
    pub responses: u64,
    /// Responses with a non-2xx status plus requests that got no response.
    pub errors: u64,
    /// Body bytes of all responses.
    pub bytes: u64,
    /// Response times of 2xx responses, µs (request written to last body byte).
    pub latency_us: Vec<u32>,
}

/// What one player saw inside the window.
#[derive(Debug, Default)]
pub struct ClientReport {
    /// Per kind, indexed like [`KINDS`].
    pub kinds: [KindStats; 3],
    /// Error texts (`status:404`, `timeout`, ...) with counts.
    pub errors: BTreeMap<String, u64>,
    /// Connections reopened, whole run.
    pub reconnects: u64,
    /// HLS segments that left the playlist before this player got to them.
    pub skipped: u64,
    /// Whether a request completed in the window.
    pub active: bool,
}

struct Player<'a> {
    ctx: &'a Ctx,
    conn: HttpConn,
    report: ClientReport,
}

impl Player<'_> {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.ctx.window_start && at < self.ctx.window_end
    }

    /// GET `path`, counted under `kind`; the response when it was a 2xx.
    async fn fetch(&mut self, kind: usize, path: &str, keep_body: bool) -> Option<Response> {
        let started = Instant::now();
        let deadline = (started + self.ctx.request_timeout).min(self.ctx.window_end + END_GRACE);
        let result = self.conn.get(path, keep_body, deadline).await;
        let done = Instant::now();
        let counted = self.in_window(done);
        if counted {
            self.report.active = true;
        }
        let stats = &mut self.report.kinds[kind];
        match result {
            Ok(resp) => {
                if counted {
                    stats.responses += 1;
                    stats.bytes += resp.body_len;
                }
                if (200..300).contains(&resp.status) {
                    if counted {
                        let us = (done - started).as_micros();
                        stats.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Some(resp)
                } else {
                    if counted {
                        stats.errors += 1;
                        *self
                            .report
                            .errors
                            .entry(format!("{} status {}", KINDS[kind], resp.status))
                            .or_default() += 1;
                    }
                    None
                }
            }
            Err(e) => {
                if counted {
                    stats.errors += 1;
                    *self
                        .report
                        .errors
                        .entry(format!("{} {e}", KINDS[kind]))
                        .or_default() += 1;
                }
                None
            }
        }
    }

    /// Sleeps until `at` or the end of the window; false when the window is over.
    async fn wait(&self, at: Instant) -> bool {
        sleep_until(at.min(self.ctx.window_end)).await;
        Instant::now() < self.ctx.window_end
    }

    async fn run_hls(&mut self) {
        let ctx = self.ctx;
        let mut next_seq: Option<u64> = None;
        let mut last_state: Option<(u64, usize)> = None;
        while Instant::now() < ctx.window_end {
            let loaded_at = Instant::now();
            let pl = match self.fetch(PLAYLIST, &ctx.path, true).await {
                Some(resp) => std::str::from_utf8(&resp.body).ok().and_then(parse_m3u8),
                None => None,
            };
            let Some(pl) = pl else {
                if !self.wait(loaded_at + RETRY).await {
                    break;
                }
                continue;
            };
            let state = (pl.media_sequence, pl.uris.len());
            let changed = last_state != Some(state);
            last_state = Some(state);
            let first = pl.media_sequence;
            let end = first + pl.uris.len() as u64;
            let from = match next_seq {
                None => end.saturating_sub(LIVE_EDGE_SEGMENTS as u64).max(first),
                Some(n) if n < first => {
                    if self.in_window(Instant::now()) {
                        self.report.skipped += first - n;
                    }
                    first
                }
                Some(n) => n,
            };
            for seq in from..end {
                if Instant::now() >= ctx.window_end {
                    return;
                }
                let uri = &pl.uris[usize::try_from(seq - first).unwrap_or(usize::MAX)];
                let path = resolve(&ctx.path, uri);
                self.fetch(SEGMENT, &path, false).await;
                next_seq = Some(seq + 1);
            }
            if next_seq.is_none() {
                next_seq = Some(from);
            }
            if pl.ended {
                break;
            }
            let wait = match ctx.reload {
                Reload::Spec if changed => pl.target,
                _ => pl.target / 2,
            };
            if !self.wait(loaded_at + wait).await {
                break;
            }
        }
    }

    async fn run_dash(&mut self) {
        let ctx = self.ctx;
        // Per track index: the init URL fetched, and the start time of the last segment.
        let mut inits: Vec<Option<String>> = Vec::new();
        let mut last: Vec<Option<u64>> = Vec::new();
        while Instant::now() < ctx.window_end {
            let loaded_at = Instant::now();
            let mpd = match self.fetch(PLAYLIST, &ctx.path, true).await {
                Some(resp) => std::str::from_utf8(&resp.body).ok().and_then(parse_mpd),
                None => None,
            };
            let Some(mpd) = mpd else {
                if !self.wait(loaded_at + RETRY).await {
                    break;
                }
                continue;
            };
            inits.resize(mpd.tracks.len(), None);
            last.resize(mpd.tracks.len(), None);
            let mut todo: Vec<(f64, usize, u64, String)> = Vec::new();
            for (i, track) in mpd.tracks.iter().enumerate() {
                if track.init.is_some() && track.init != inits[i] {
                    // A new period: its timeline starts over.
                    if let Some(init) = &track.init {
                        let path = resolve(&ctx.path, init);
                        if self.fetch(INIT, &path, false).await.is_none() {
                            continue;
                        }
                    }
                    inits[i].clone_from(&track.init);
                    last[i] = None;
                }
                let from = match last[i] {
                    None => track.segments.len().saturating_sub(LIVE_EDGE_SEGMENTS),
                    Some(t) => track
                        .segments
                        .iter()
                        .position(|s| s.0 > t)
                        .unwrap_or(track.segments.len()),
                };
                for (t, url) in &track.segments[from..] {
                    let secs = *t as f64 / track.timescale.max(1) as f64;
                    todo.push((secs, i, *t, url.clone()));
                }
            }
            // Tracks interleaved by time, as a player filling both buffers does.
            todo.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, i, t, url) in todo {
                if Instant::now() >= ctx.window_end {
                    return;
                }
                self.fetch(SEGMENT, &resolve(&ctx.path, &url), false).await;
                last[i] = Some(t);
            }
            let Some(period) = mpd.minimum_update_period else {
                break;
            };
            if !self
                .wait(loaded_at + period.max(Duration::from_millis(100)))
                .await
            {
                break;
            }
        }
    }
}

/// Runs one player until the end of the window.
pub async fn run(ctx: &Ctx) -> ClientReport {
    let mut p = Player {
        ctx,
        conn: HttpConn::new(ctx.addr, ctx.host.clone()),
        report: ClientReport::default(),
    };
    match ctx.mode {
        Mode::Hls => p.run_hls().await,
        Mode::Dash => p.run_dash().await,
    }
    p.report.reconnects = p.conn.reconnects;
    p.report
}
