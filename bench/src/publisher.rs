//! The publisher: reads an FLV file and publishes it in real time, looping it seamlessly, and
//! records when every media message left.

use crate::conn::{Conn, ConnError, Target};
use crate::flv::{self, TAG_SCRIPT, TAG_VIDEO, Tag};
use crate::workers::Tap;
use bytes::Bytes;
use rtmp::amf0::{self, Amf0Value};
use rtmp::client::{ClientEvent, ClientRole};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};

/// How long send records are kept: far longer than any sane delivery latency.
const KEEP: Duration = Duration::from_secs(10);
/// Gap inserted between the last tag of one pass over the file and the first of the next.
const LOOP_GAP_MS: u32 = 33;

pub const AUDIO: usize = 0;
pub const VIDEO: usize = 1;

/// When each media message was sent, by (track, RTMP timestamp), with its sequence number on
/// its track. Bounded by [`KEEP`].
#[derive(Default)]
pub struct SendLog {
    map: HashMap<(u8, u32), (Instant, u64)>,
    order: VecDeque<((u8, u32), Instant)>,
    next_seq: [u64; 2],
}

impl SendLog {
    /// Logs a message about to be written at `at`; returns its sequence number on its track.
    fn record(&mut self, track: usize, ts: u32, at: Instant) -> u64 {
        let seq = self.next_seq[track];
        self.insert(track, ts, at, seq);
        seq
    }

    /// Logs a message numbered elsewhere (a worker process copying the parent's log). Records
    /// of one track must come in order.
    pub fn insert(&mut self, track: usize, ts: u32, at: Instant, seq: u64) {
        let key = (track as u8, ts);
        self.next_seq[track] = self.next_seq[track].max(seq + 1);
        self.map.insert(key, (at, seq));
        self.order.push_back((key, at));
        while let Some(&(k, t)) = self.order.front() {
            if at.duration_since(t) <= KEEP {
                break;
            }
            self.order.pop_front();
            self.map.remove(&k);
        }
    }

    /// Send instant and per-track sequence number of a message.
    pub fn lookup(&self, track: usize, ts: u32) -> Option<(Instant, u64)> {
        self.map.get(&(track as u8, ts)).copied()
    }

    /// Messages sent so far per track.
    pub fn sent(&self) -> [u64; 2] {
        self.next_seq
    }
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct PublishReport {
    pub messages: u64,
    pub bytes: u64,
    pub loops: u32,
    pub max_lateness: Duration,
    pub error: Option<String>,
}

/// Publishes `tags` until `stop`, then closes politely. Every send record also goes to `tap`
/// when players run in worker processes.
pub async fn run(
    target: Target,
    tags: Arc<[Tag]>,
    log: &RwLock<SendLog>,
    tap: Option<Tap>,
    stop: Instant,
) -> PublishReport {
    let mut report = PublishReport::default();
    let out = Out {
        log,
        tap: tap.as_ref(),
    };
    if let Err(e) = publish(&target, &tags, out, stop, &mut report).await {
        report.error = Some(e);
    }
    report
}

/// Where send records go.
#[derive(Clone, Copy)]
struct Out<'a> {
    log: &'a RwLock<SendLog>,
    tap: Option<&'a Tap>,
}

async fn publish(
    target: &Target,
    tags: &[Tag],
    out: Out<'_>,
    stop: Instant,
    report: &mut PublishReport,
) -> Result<(), String> {
    let role = ClientRole::Publish {
        name: target.name.clone(),
    };
    let mut conn = Conn::open(target, role, 1)
        .await
        .map_err(|e| format!("publisher connect: {e}"))?;
    timeout(Duration::from_secs(5), wait_publishing(&mut conn))
        .await
        .map_err(|_| "publisher: no NetStream.Publish.Start within 5 s".to_owned())??;

    let span = tags.iter().map(|t| t.timestamp).max().unwrap_or(0) - tags[0].timestamp;
    let base_ts = tags[0].timestamp;
    let start = Instant::now();
    let mut offset: u32 = 0;
    let mut first_pass = true;
    'outer: loop {
        for tag in tags {
            // End-of-sequence tags would make players reset their decoder at every loop (and
            // ffmpeg stamps them with the last frame's timestamp); decoder configuration and
            // metadata are sent once.
            if tag.is_end_of_sequence()
                || (!first_pass && (tag.kind == TAG_SCRIPT || tag.is_sequence_header()))
            {
                continue;
            }
            let ts = tag.timestamp.saturating_sub(base_ts).wrapping_add(offset);
            let due = start + Duration::from_millis(u64::from(ts));
            if due >= stop {
                break 'outer;
            }
            let now = Instant::now();
            if due > now && !conn.session.out().is_empty() {
                conn.flush()
                    .await
                    .map_err(|e| format!("publisher write: {e}"))?;
            }
            // Read (acks, pings) while waiting for the tag's time.
            while Instant::now() < due {
                tokio::select! {
                    r = conn.read() => {
                        r.map_err(|e| format!("publisher read: {e}"))?;
                        conn.feed().map_err(|e| format!("publisher: {e}"))?;
                        while let Some(ev) = conn.session.poll_event() {
                            if let ClientEvent::Status { level, code, .. } = ev
                                && level == "error"
                            {
                                return Err(format!("publisher got {code}"));
                            }
                        }
                        conn.flush().await.map_err(|e| format!("publisher write: {e}"))?;
                    }
                    _ = sleep_until(due) => {}
                }
            }
            report.max_lateness = report.max_lateness.max(Instant::now() - due);
            send_tag(&mut conn, tag, ts, out, report).await?;
        }
        first_pass = false;
        offset = offset.wrapping_add(span + LOOP_GAP_MS);
        report.loops += 1;
    }
    conn.session.close();
    let _ = conn.flush().await;
    Ok(())
}

async fn wait_publishing(conn: &mut Conn) -> Result<(), String> {
    loop {
        conn.read().await.map_err(|e| format!("publisher: {e}"))?;
        conn.feed().map_err(|e| format!("publisher: {e}"))?;
        while let Some(ev) = conn.session.poll_event() {
            match ev {
                ClientEvent::Publishing => {
                    conn.flush().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                ClientEvent::Error {
                    command,
                    description,
                } => return Err(format!("publisher: {command} failed: {description}")),
                ClientEvent::Status { level, code, .. } if level == "error" => {
                    return Err(format!("publisher: {code}"));
                }
                _ => {}
            }
        }
        conn.flush().await.map_err(|e| e.to_string())?;
    }
}

async fn send_tag(
    conn: &mut Conn,
    tag: &Tag,
    ts: u32,
    out: Out<'_>,
    report: &mut PublishReport,
) -> Result<(), String> {
    if tag.kind == TAG_SCRIPT {
        if let Ok(values) = amf0::decode_all(&tag.body) {
            let mut it = values.into_iter();
            if it.next().as_ref().and_then(Amf0Value::as_str) == Some("onMetaData")
                && let Some(meta) = it.next()
            {
                conn.session.send_metadata(meta);
            }
        }
        return Ok(());
    }
    let video = tag.kind == TAG_VIDEO;
    conn.session.send_raw_media(video, ts, &tag.body);
    if !flv::is_sequence_header(video, &tag.body) {
        // Logged before the write: under load a player may otherwise receive the message
        // before the publisher task gets to log it.
        let track = if video { VIDEO } else { AUDIO };
        let at = Instant::now();
        let seq = out.log.write().map(|mut l| l.record(track, ts, at));
        if let (Some(tap), Ok(seq)) = (out.tap, seq) {
            tap.record(track, ts, seq, at);
        }
    }
    conn.flush()
        .await
        .map_err(|e| format!("publisher write: {}", ConnError::Io(e)))?;
    report.messages += 1;
    report.bytes += tag.body.len() as u64;
    Ok(())
}

/// Loads an FLV file.
pub fn load(path: &str) -> Result<Arc<[Tag]>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let tags = flv::read_tags(&Bytes::from(data)).map_err(|e| format!("{path}: {e}"))?;
    if !tags.iter().any(|t| t.kind == TAG_VIDEO) {
        return Err(format!("{path}: no video tags"));
    }
    Ok(tags.into())
}

/// Time between the first two keyframes (the GOP length), used to spread the starts of many
/// publishers evenly over one GOP.
pub fn keyframe_interval(tags: &[Tag]) -> Option<Duration> {
    let mut keys = tags
        .iter()
        .filter(|t| t.kind == TAG_VIDEO && !t.is_sequence_header() && flv::is_keyframe(&t.body))
        .map(|t| t.timestamp);
    let first = keys.next()?;
    let second = keys.find(|&ts| ts > first)?;
    Some(Duration::from_millis(u64::from(second - first)))
}
