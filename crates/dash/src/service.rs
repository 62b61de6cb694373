//! Tokio driver: one segmenter task per published stream, and the store HTTP reads from.
//! Mirrors `hls::HlsService` (same lifecycle: live, gone for `end_grace`, ended for `linger`).

use crate::hls::{HlsRequest, HlsTiming};
use crate::mpd::{Manifest, MpdClient, MpdClock, MpdTiming, finish_mpd};
use crate::segmenter::{Output, Segmenter};
use crate::{DashConfig, EXPIRED_SEGMENTS_KEPT};
use bytes::Bytes;
use hub::Hub;
use hub::outputs::{Due, Lifecycle, StreamTasks, TaskFn, TaskHandle};
use media::TrackKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub use hub::outputs::{EnabledFn, ParentFn};

/// Cheap per-stream numbers for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashStreamStats {
    /// Segments held, all tracks (listed plus recently expired).
    pub segments: usize,
    /// Bytes of segment data held.
    pub bytes: usize,
    /// Whether the presentation ended (`mediaPresentationDuration` set).
    pub ended: bool,
}

struct Entry {
    manifest: Manifest,
    /// MPD bodies (generic, GStreamer, low-latency), rendered once per change: requests
    /// outnumber segment updates by far. The clock is added per request.
    rendered: [Option<String>; 3],
    /// Bumped at every change; blocking playlist reloads and part requests wait on it.
    changed: tokio::sync::watch::Sender<()>,
}

/// A media segment or part as it is served.
#[derive(Debug)]
pub enum SegmentBody {
    /// Finished: its pieces, refcounted, not copied.
    Complete(Vec<Bytes>),
    /// Being written (the low-latency MPD lists a segment from its first part on, an LL-HLS
    /// playlist hints the next part): its pieces come from [`GrowingSegment::next`] chunk by
    /// chunk as they are cut.
    Growing(GrowingSegment),
}

/// The growing segment or part could not be completed (the stream went away, or no chunk
/// came in time): the response must be cut rather than ended, so no cache keeps a short copy.
#[derive(Debug)]
pub struct SegmentCut;

impl std::fmt::Display for SegmentCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the segment being written was not completed")
    }
}

impl std::error::Error for SegmentCut {}

/// The bytes of `pieces` after the first `skip`, as the pieces' own buffers (the one `skip`
/// ends inside is sliced).
fn bytes_after<'a>(pieces: impl IntoIterator<Item = &'a Bytes>, mut skip: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    for piece in pieces {
        if skip >= piece.len() {
            skip -= piece.len();
        } else {
            out.push(piece.slice(skip..));
            skip = 0;
        }
    }
    out
}

/// What a [`GrowingSegment`] reads.
#[derive(Clone, Copy, Debug)]
enum Scope {
    /// The open segment starting at this time.
    Segment(u64),
    /// Part `part` of the open segment starting at `segment`.
    Part { segment: u64, part: u32 },
}

/// The open segment of a track, or its part being written, read while it is written.
#[derive(Debug)]
pub struct GrowingSegment {
    service: DashService,
    code: String,
    track: TrackKind,
    period: u64,
    scope: Scope,
    /// Bytes of chunks sent so far (counted in bytes, not chunks: a finished segment is one
    /// buffer); a segment's `styp` goes out first, with the first batch, and is not counted.
    sent: usize,
    started: bool,
    done: bool,
}

impl GrowingSegment {
    fn new(service: &DashService, code: &str, track: TrackKind, period: u64, scope: Scope) -> Self {
        GrowingSegment {
            service: service.clone(),
            code: code.to_owned(),
            track,
            period,
            scope,
            sent: 0,
            started: false,
            done: false,
        }
    }

    /// The whole thing once finished: a segment's `styp` and chunks, a part's chunks.
    fn finished(&self, m: &Manifest) -> Option<Vec<Bytes>> {
        match self.scope {
            Scope::Segment(time) => m.segment(self.track, self.period, time),
            Scope::Part { segment, part } => m.part(self.track, self.period, segment, part),
        }
    }

    /// Whether it is finished (its whole is in the manifest), without cloning it.
    fn is_finished(&self, m: &Manifest) -> bool {
        match self.scope {
            Scope::Segment(time) => m.has_segment(self.track, self.period, time),
            Scope::Part { segment, part } => m.has_part(self.track, self.period, segment, part),
        }
    }

    /// The chunks written so far, while not finished: walked in place, so a wake-up per
    /// chunk allocates nothing.
    fn chunks<'m>(&self, m: &'m Manifest) -> impl Iterator<Item = &'m Bytes> + 'm {
        let (track, period) = (self.track, self.period);
        let (segment, part) = match self.scope {
            Scope::Segment(time) => (Some(time), None),
            Scope::Part { segment, part } => (None, Some((segment, part))),
        };
        let whole = segment
            .into_iter()
            .flat_map(move |time| m.segment_chunks(track, period, time));
        let one = part
            .and_then(|(segment, part)| m.open_chunks(track, period, segment, part))
            .into_iter()
            .flatten();
        whole.chain(one)
    }

    /// Whether more may still come: the stream goes on and, for a part, it is the one being
    /// written or the next.
    fn alive(&self, m: &Manifest) -> bool {
        !m.is_ended()
            && match self.scope {
                Scope::Segment(_) => true,
                Scope::Part { segment, part } => {
                    m.hls_part_pending(self.track, self.period, segment, part)
                }
            }
    }

    /// The next pieces, waiting for the next chunk when none is new: `Ok(None)` once the
    /// whole segment or part was given.
    pub async fn next(&mut self) -> Result<Option<Vec<Bytes>>, SegmentCut> {
        if self.done {
            return Ok(None);
        }
        // Chunks come every frame while media flows, parts every part duration; much longer
        // means it stopped.
        let patience = self
            .service
            .inner
            .config
            .part_duration
            .unwrap_or_default()
            .saturating_mul(8)
            .max(std::time::Duration::from_secs(3));
        loop {
            let sent = {
                let store = lock(&self.service.inner.store);
                let m = &store.get(&self.code).ok_or(SegmentCut)?.manifest;
                let mut out = Vec::new();
                let segment = matches!(self.scope, Scope::Segment(_));
                if segment && !self.started {
                    out.push(fmp4::styp());
                    self.started = true;
                }
                if let Some(pieces) = self.finished(m) {
                    // Finished: whatever its chunks did not give yet (a segment's own `styp`
                    // went first).
                    let styp = if segment { fmp4::styp().len() } else { 0 };
                    out.extend(bytes_after(&pieces, styp + self.sent));
                    self.done = true;
                    return Ok(Some(out));
                }
                let before = out.len();
                out.extend(bytes_after(self.chunks(m), self.sent));
                self.sent += crate::mpd::pieces_len(&out[before..]);
                if !out.is_empty() {
                    return Ok(Some(out));
                }
                if !self.alive(m) {
                    return Err(SegmentCut);
                }
                self.sent
            };
            let deadline = Instant::now() + patience;
            let news = |m: &Manifest| {
                !self.alive(m)
                    || self.is_finished(m)
                    || crate::mpd::pieces_len(self.chunks(m)) > sent
            };
            if self.service.wait_for(&self.code, deadline, news).await != Some(true) {
                return Err(SegmentCut);
            }
        }
    }
}

/// How an LL-HLS media playlist request is answered.
#[derive(Debug, PartialEq, Eq)]
pub enum HlsAnswer {
    /// The playlist.
    Playlist(String),
    /// No such stream or track (404).
    NotFound,
    /// A malformed directive or one too far ahead (400).
    BadRequest(&'static str),
    /// What was asked did not come within three target durations (503).
    Timeout,
}

struct Inner {
    hub: Hub,
    config: DashConfig,
    store: Mutex<HashMap<String, Entry>>,
    tasks: StreamTasks,
    /// Tells a rendition's source (see [`DashService::set_parent`]).
    parent: std::sync::RwLock<Option<ParentFn>>,
    /// Each stream's output offset (hub time to output time), for its renditions to follow.
    offsets: Mutex<HashMap<String, i64>>,
}

/// Where a ladder's Representations go in an MPD body: before the end of the video
/// AdaptationSet of the last period; `None` when that period has no video.
fn ladder_insertion(body: &str) -> Option<usize> {
    let period = body.rfind("<Period ")?;
    let video = period + body[period..].find("contentType=\"video\"")?;
    Some(video + body[video..].find("    </AdaptationSet>")?)
}

/// Lock that tolerates poisoning: every critical section below is a single map update, so a
/// panic elsewhere cannot leave the data half-changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// DASH output for every stream of a hub; cheap to clone.
#[derive(Clone)]
pub struct DashService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DashService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DashService {
    /// Creates the service; nothing happens until [`DashService::run`].
    pub fn new(hub: Hub, config: DashConfig) -> Self {
        DashService {
            inner: Arc::new(Inner {
                tasks: StreamTasks::new(hub.clone(), "dash"),
                hub,
                config,
                store: Mutex::new(HashMap::new()),
                parent: std::sync::RwLock::new(None),
                offsets: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Sets how to tell a rendition's source: a rendition's segments are timed on its
    /// source's timeline, so the source's MPD can list them as Representations of its own.
    pub fn set_parent(&self, parent: ParentFn) {
        *self.inner.parent.write().unwrap_or_else(|e| e.into_inner()) = Some(parent);
    }

    /// Ends every presentation now (open segments flushed, MPD static with its duration)
    /// without waiting for `end_grace`: the first step of a graceful shutdown, so players
    /// polling during the drain see a clean end. MPDs stay served until `run`'s shutdown.
    pub fn finish(&self) {
        self.inner.tasks.finish();
    }

    /// Replaces the predicate deciding, at each publish, whether DASH runs for a code.
    pub fn set_enabled(&self, enabled: EnabledFn) {
        self.inner.tasks.set_enabled(enabled);
    }

    fn task(&self) -> TaskFn {
        let inner = self.inner.clone();
        Arc::new(move |code, handle| Box::pin(stream_task(inner.clone(), code, handle)))
    }

    /// Starts a task per published stream until `shutdown`, then waits for all of them.
    pub async fn run(self, shutdown: CancellationToken) {
        self.inner.tasks.run(self.task(), shutdown).await;
    }

    /// Stops DASH for `code` now and forgets its MPD and segments (requests get 404), e.g.
    /// when the stream's DASH output is switched off or the stream is deleted.
    pub fn stop(&self, code: &str) {
        self.inner.tasks.stop(code);
        lock(&self.inner.store).remove(code);
    }

    /// Starts DASH for `code` if it is live, enabled and not running (after a switch-on).
    pub fn refresh(&self, code: &str) {
        self.inner.tasks.refresh(&self.task(), code);
    }

    /// The MPD of `code` for `client`, with `clock`; `None` if unknown or no segment is
    /// complete yet.
    pub fn mpd(&self, code: &str, client: MpdClient, clock: &MpdClock<'_>) -> Option<String> {
        let store = lock(&self.inner.store);
        let body = store.get(code)?.rendered[rendered_index(client)].as_ref()?;
        Some(finish_mpd(body, clock))
    }

    /// The MPD of `code` with a rendition ladder: its video `AdaptationSet` in the current
    /// period holds a `Representation` per rung (`rungs`: each rendition's code and its
    /// directory relative to `code`'s), after the source's own when `with_source`. Rungs
    /// without segments yet are left out. `None` when `code` has no MPD.
    pub fn ladder_mpd(
        &self,
        code: &str,
        rungs: &[(String, String)],
        with_source: bool,
        client: MpdClient,
        clock: &MpdClock<'_>,
    ) -> Option<String> {
        let store = lock(&self.inner.store);
        let entry = store.get(code)?;
        let mut body = entry.rendered[rendered_index(client)].clone()?;
        let reps: String = match entry.manifest.video_pto() {
            Some(pto) => rungs
                .iter()
                .filter_map(|(rcode, prefix)| {
                    let id = format!("v-{}", rcode.rsplit('_').next().unwrap_or(rcode));
                    store
                        .get(rcode)?
                        .manifest
                        .video_representation(&id, prefix, pto)
                })
                .collect(),
            // No video in the current period: the source's own MPD.
            None => String::new(),
        };
        drop(store);
        if let Some(end) = ladder_insertion(&body) {
            body.insert_str(end, &reps);
            if !with_source && !reps.is_empty() {
                // The source's own Representation (the set's SegmentTemplate stays, unused).
                let video = body[..end].rfind("contentType=\"video\"").unwrap_or(end);
                if let Some(start) = body[video..end].find("      <Representation id=\"v") {
                    let start = video + start;
                    if let Some(len) = body[start..].find("/>\n") {
                        body.replace_range(start..start + len + 3, "");
                    }
                }
            }
        }
        Some(finish_mpd(&body, clock))
    }

    fn timing(&self) -> HlsTiming {
        HlsTiming {
            segment_duration: self.inner.config.segment_duration,
            part_duration: self.inner.config.part_duration,
        }
    }

    /// Waits until `ready` holds for `code`'s manifest, or `deadline`; `None` when the stream
    /// is unknown, else whether it became ready.
    async fn wait_for(
        &self,
        code: &str,
        deadline: tokio::time::Instant,
        ready: impl Fn(&Manifest) -> bool,
    ) -> Option<bool> {
        loop {
            let mut changed = {
                let store = lock(&self.inner.store);
                let entry = store.get(code)?;
                if ready(&entry.manifest) {
                    return Some(true);
                }
                entry.changed.subscribe()
            };
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Err(_) => return Some(false),
                // Changed, or the entry was replaced (its sender dropped): look again.
                Ok(Ok(())) => {}
                Ok(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// The CMAF HLS multivariant playlist of `code`; `None` if unknown or no segment yet.
    pub fn hls_multivariant(&self, code: &str) -> Option<String> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .hls_multivariant()
    }

    /// What the CMAF HLS multivariant playlist of `code` says of it, for a ladder's.
    pub fn hls_variant(&self, code: &str) -> Option<crate::HlsVariant> {
        lock(&self.inner.store).get(code)?.manifest.hls_variant()
    }

    /// Where `code`'s CMAF media playlist of `track` ends: (last media sequence number, last
    /// part index), for `EXT-X-RENDITION-REPORT`s in its siblings' playlists.
    pub fn hls_report(&self, code: &str, track: TrackKind) -> Option<(u64, Option<u32>)> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .hls_report(track)
    }

    /// The CMAF HLS media playlist of `track`, once it satisfies `request`'s blocking
    /// directives (held for at most three target durations, RFC 8216bis 6.2.5.2).
    pub async fn hls_media(&self, code: &str, track: TrackKind, request: HlsRequest) -> HlsAnswer {
        let timing = self.timing();
        if request.msn.is_some() {
            let too_far = match lock(&self.inner.store).get(code) {
                None => return HlsAnswer::NotFound,
                Some(e) => e.manifest.hls_too_far(track, &request),
            };
            if too_far {
                return HlsAnswer::BadRequest("_HLS_msn is more than one segment ahead");
            }
            let hold = timing
                .segment_duration
                .max(std::time::Duration::from_secs(1))
                * 3;
            let deadline = tokio::time::Instant::now() + hold;
            match self
                .wait_for(code, deadline, |m| m.hls_ready(track, &request))
                .await
            {
                None => return HlsAnswer::NotFound,
                Some(false) => return HlsAnswer::Timeout,
                Some(true) => {}
            }
        }
        let store = lock(&self.inner.store);
        match store
            .get(code)
            .and_then(|e| e.manifest.hls_media(track, &timing, &request))
        {
            Some(text) => HlsAnswer::Playlist(text),
            None => HlsAnswer::NotFound,
        }
    }

    /// A part of a recent or open segment: whole when finished, growing when it is the part
    /// being written or the next one (the playlist's `EXT-X-PRELOAD-HINT`); `None` if unknown
    /// or expired.
    pub fn part_body(
        &self,
        code: &str,
        track: TrackKind,
        period: u64,
        segment: u64,
        part: u32,
    ) -> Option<SegmentBody> {
        let store = lock(&self.inner.store);
        let m = &store.get(code)?.manifest;
        if let Some(chunks) = m.part(track, period, segment, part) {
            return Some(SegmentBody::Complete(chunks));
        }
        m.hls_part_pending(track, period, segment, part).then(|| {
            SegmentBody::Growing(GrowingSegment::new(
                self,
                code,
                track,
                period,
                Scope::Part { segment, part },
            ))
        })
    }

    /// The init segment of `track` in period `period` of `code`.
    pub fn init(&self, code: &str, track: TrackKind, period: u64) -> Option<Bytes> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .init(track, period)
    }

    /// The media segment of `track` starting at `time` (its `$Time$`) in `period`; `None` if
    /// unknown or expired.
    pub fn segment(
        &self,
        code: &str,
        track: TrackKind,
        period: u64,
        time: u64,
    ) -> Option<Vec<Bytes>> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .segment(track, period, time)
    }

    /// The media segment of `track` starting at `time` in `period`: whole when finished,
    /// growing when it is the one being written and already has a part; `None` if unknown
    /// or expired.
    pub fn segment_body(
        &self,
        code: &str,
        track: TrackKind,
        period: u64,
        time: u64,
    ) -> Option<SegmentBody> {
        let store = lock(&self.inner.store);
        let m = &store.get(code)?.manifest;
        if let Some(pieces) = m.segment(track, period, time) {
            return Some(SegmentBody::Complete(pieces));
        }
        m.segment_chunks(track, period, time)
            .next()
            .is_some()
            .then(|| {
                SegmentBody::Growing(GrowingSegment::new(
                    self,
                    code,
                    track,
                    period,
                    Scope::Segment(time),
                ))
            })
    }

    /// Stats of `code`, if it has a DASH entry.
    pub fn stats(&self, code: &str) -> Option<DashStreamStats> {
        let store = lock(&self.inner.store);
        let m = &store.get(code)?.manifest;
        Some(DashStreamStats {
            segments: m.len(),
            bytes: m.bytes(),
            ended: m.is_ended(),
        })
    }

    /// Codes that currently have a DASH entry, sorted.
    pub fn codes(&self) -> Vec<String> {
        let mut codes: Vec<String> = lock(&self.inner.store).keys().cloned().collect();
        codes.sort();
        codes
    }
}

/// Where [`Entry::rendered`] keeps the MPD body of `client`.
fn rendered_index(client: MpdClient) -> usize {
    match client {
        MpdClient::Generic => 0,
        MpdClient::GStreamer => 1,
        MpdClient::LowLatency => 2,
    }
}

impl Inner {
    fn new_entry(&self) -> Entry {
        Entry {
            manifest: Manifest::new(self.config.window, EXPIRED_SEGMENTS_KEPT),
            rendered: [None, None, None],
            changed: tokio::sync::watch::Sender::new(()),
        }
    }

    fn timing(&self) -> MpdTiming {
        MpdTiming {
            minimum_update_period: self.config.minimum_update_period,
            suggested_presentation_delay: self.config.suggested_presentation_delay,
            min_buffer_time: self.config.min_buffer_time,
            part_duration: self.config.part_duration,
        }
    }

    /// Lists `outputs`; `audio_buffered` (see [`Segmenter::audio_buffered`]) holds the first
    /// MPD back until its audio segment is listed too.
    fn push_outputs(&self, code: &str, outputs: Vec<Output>, audio_buffered: bool) {
        if outputs.is_empty() {
            return;
        }
        // Segments are joined into one buffer here, before the store is locked.
        let outputs: Vec<(Output, Option<Bytes>)> = outputs
            .into_iter()
            .map(|o| {
                let whole = match &o {
                    Output::Segment(seg) => Some(crate::mpd::join(&seg.data)),
                    _ => None,
                };
                (o, whole)
            })
            .collect();
        let now = media::unix_ms_now();
        let mut store = lock(&self.store);
        let entry = store
            .entry(code.to_owned())
            .or_insert_with(|| self.new_entry());
        // Parts change the HLS playlists (rendered per request) but not the MPD, except the
        // first of a segment, which lists it in the low-latency MPD.
        let mut mpd_changed = false;
        for (output, whole) in outputs {
            mpd_changed |= match &output {
                Output::Chunk(_) => false,
                Output::Part(p) => p.index == 0,
                Output::Period(_) | Output::Segment(_) => true,
            };
            match output {
                Output::Period(info) => entry.manifest.start_period(info, now),
                Output::Chunk(chunk) => entry.manifest.push_chunk(chunk),
                Output::Part(part) => entry.manifest.push_part(part, now),
                Output::Segment(seg) => {
                    tracing::debug!(
                        stream = code,
                        track = ?seg.track,
                        time = seg.time,
                        samples = seg.samples,
                        "dash: segment listed"
                    );
                    let whole = whole.unwrap_or_else(|| crate::mpd::join(&seg.data));
                    entry.manifest.push_whole(seg, whole, now);
                }
            }
        }
        if mpd_changed && !(audio_buffered && entry.manifest.awaits_first_audio()) {
            entry.rendered = self.render(&entry.manifest);
        }
        entry.changed.send_replace(());
    }

    fn render(&self, manifest: &Manifest) -> [Option<String>; 3] {
        let timing = self.timing();
        [
            MpdClient::Generic,
            MpdClient::GStreamer,
            MpdClient::LowLatency,
        ]
        .map(|client| manifest.render_body(&timing, client))
    }

    fn end(&self, code: &str) {
        if let Some(entry) = lock(&self.store).get_mut(code) {
            entry.manifest.end(media::unix_ms_now());
            entry.rendered = self.render(&entry.manifest);
            entry.changed.send_replace(());
        }
    }

    fn has_publisher(&self, code: &str) -> bool {
        self.hub.stats(code).is_some_and(|s| s.publisher.is_some())
    }
}

async fn stream_task(inner: Arc<Inner>, code: String, handle: TaskHandle) {
    let inner = &*inner;
    let code = code.as_str();
    let shutdown = handle.stop.clone();
    let config = &inner.config;
    let mut sub = inner.hub.subscribe(code, "dash");
    // Period ids are in every URL: starting them from the wall clock in milliseconds means a
    // stream that comes back after its entry was removed never reuses a URL a cache may hold.
    let first_period = u64::try_from(media::unix_ms_now()).unwrap_or(0);
    let mut segmenter = Segmenter::new(
        config.segment_duration,
        config.max_segment_bytes,
        first_period,
    );
    if let Some(part) = config.part_duration {
        segmenter = segmenter.with_parts(part);
    }
    let mut life = Lifecycle::new(inner.has_publisher(code), config.end_grace, config.linger);
    let mut finished = false;
    let mut warned_skipped = false;
    let parent = inner
        .parent
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .and_then(|f| f(code));
    let mut offset = None;
    tracing::debug!(stream = code, "dash: stream task started");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Ended for shutdown, the MPD is static: only the shutdown is awaited after this.
            _ = handle.finish.cancelled(), if !finished => {
                finished = true;
                inner.push_outputs(code, segmenter.flush(), false);
                inner.end(code);
                tracing::debug!(stream = code, "dash: presentation ended for shutdown");
            }
            _ = sleep_until(life.deadline()), if !finished => {
                let now = Instant::now();
                match life.on_deadline(now, inner.has_publisher(code)) {
                    Due::Nothing => {}
                    Due::Flush => inner.push_outputs(code, segmenter.flush(), false),
                    Due::End => {
                        inner.end(code);
                        tracing::debug!(stream = code, "dash: publisher gone; presentation ended");
                    }
                    Due::Retire => {
                        // Decided under the registry lock: a publish handled by `run` at the
                        // same moment either sees this task or starts a new one.
                        let done = handle.retire_unless(
                            || inner.has_publisher(code),
                            || {
                                lock(&inner.store).remove(code);
                            },
                        );
                        if done {
                            break;
                        }
                        life.keep(now);
                    }
                }
            }
            ev = sub.recv(), if !finished => {
                let Some(ev) = ev else { break };
                if life.on_event(&ev, Instant::now()) {
                    // An ended presentation is final for players that saw it: a comeback
                    // gets a fresh MPD whose period must be announced again; period ids
                    // continue so cached URLs never change meaning.
                    lock(&inner.store).insert(code.to_owned(), inner.new_entry());
                    segmenter.restart_period();
                }
                if let hub::Event::Tracks { info, .. } = &ev
                    && !warned_skipped
                {
                    let left_out: Vec<String> = [
                        info.video.as_ref().filter(|v| matches!(v, media::VideoCodec::Opaque { .. })).map(|v| v.name()),
                        info.audio.as_ref().filter(|a| matches!(a, media::AudioCodec::Opaque { .. })).map(|a| a.name()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    if !left_out.is_empty() {
                        warned_skipped = true;
                        tracing::warn!(stream = code, ?left_out, "dash: tracks with codecs fMP4 does not carry here are left out");
                    }
                }
                if matches!(ev, hub::Event::Tracks { .. })
                    && let Some(parent) = &parent
                    && let Some(o) = lock(&inner.offsets).get(parent).copied()
                {
                    segmenter.follow(o);
                }
                let outputs = segmenter.push(ev);
                if segmenter.offset() != offset {
                    offset = segmenter.offset();
                    if let Some(o) = offset {
                        lock(&inner.offsets).insert(code.to_owned(), o);
                    }
                }
                // A stop() may have removed the entry meanwhile; do not bring it back.
                if !shutdown.is_cancelled() {
                    inner.push_outputs(code, outputs, segmenter.audio_buffered());
                }
            }
        }
    }
    lock(&inner.offsets).remove(code);
    tracing::debug!(stream = code, "dash: stream task stopped");
}
