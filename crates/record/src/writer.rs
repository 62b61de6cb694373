//! One stream's recording, blocking I/O: hub events in, rotated MPEG-TS or fragmented MP4
//! files and their keyframe index out. Runs on a blocking thread fed by the stream's task.

use crate::catalog::{self, Format, RecordingFile};
use crate::mp4::Mp4Mux;
use bytes::BytesMut;
use hub::Event;
use media::{Frame, MediaInfo, TrackKind, ticks_to_ms};
use mpegts::TsMuxer;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How one stream is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// A new file starts at the first keyframe after this long.
    pub rotate: Duration,
    /// ... or once the file reaches this many bytes (0: no limit).
    pub rotate_bytes: u64,
    /// Files that ended longer ago than this are deleted (`None`: kept).
    pub max_age: Option<Duration>,
    /// The oldest files are deleted while the stream's recordings exceed this (0: no limit).
    pub max_bytes: u64,
    /// Daily (start, stop) minutes of the UTC day to record in; empty: always.
    pub schedule: Vec<(u32, u32)>,
    /// The container of new files.
    pub format: Format,
}

impl Settings {
    /// Whether the schedule allows recording at `unix_ms`.
    pub fn in_schedule(&self, unix_ms: i64) -> bool {
        if self.schedule.is_empty() {
            return true;
        }
        let minute = u32::try_from(unix_ms.rem_euclid(86_400_000) / 60_000).unwrap_or(0);
        self.schedule.iter().any(|&(start, stop)| {
            if start < stop {
                (start..stop).contains(&minute)
            } else {
                // Across midnight: 22:00-06:00.
                minute >= start || minute < stop
            }
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rotate: Duration::from_secs(600),
            rotate_bytes: 0,
            max_age: None,
            max_bytes: 0,
            schedule: Vec::new(),
            format: Format::Ts,
        }
    }
}

/// A closed recording, for `on_record_done` and the `recording.done` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingDone {
    /// Stream code.
    pub code: String,
    /// The file, complete.
    pub file: RecordingFile,
}

/// Appends one index line with a single `write`, newline included: a crash leaves either the
/// whole line or a last line without its newline, which readers leave out.
fn index_line(idx: &mut File, line: std::fmt::Arguments<'_>) -> io::Result<()> {
    idx.write_all(format!("{line}\n").as_bytes())
}

/// The `t` lines of an MP4 index: each recorded track's codecs and size or rate.
fn write_tracks(idx: &mut File, info: &MediaInfo, mp4: &Mp4Mux) -> io::Result<()> {
    if mp4.carries(TrackKind::Video)
        && let Some(codecs) = info.video.as_ref().and_then(|v| v.codec_string())
    {
        let (w, h) = info.video_size().unwrap_or((0, 0));
        index_line(idx, format_args!("t video {codecs} {w} {h}"))?;
    }
    if mp4.carries(TrackKind::Audio)
        && let Some(a) = &info.audio
        && let Some(codecs) = a.codec_string()
    {
        let (rate, channels) = match a {
            media::AudioCodec::Aac(c) => (c.sample_rate, u32::from(c.channel_config)),
            media::AudioCodec::Opus(c) => (48_000, u32::from(c.channels)),
            media::AudioCodec::Opaque { .. } => (0, 0),
        };
        index_line(idx, format_args!("t audio {codecs} {rate} {channels}"))?;
    }
    Ok(())
}

/// How long a frame of `kind` lasts, roughly (audio ~21 ms, video ~33): a file ends one frame
/// past its last frame's start.
fn frame_ms(kind: TrackKind) -> i64 {
    if kind == TrackKind::Video { 33 } else { 21 }
}

/// Audio-only streams get an index point this often (every audio frame is a random access
/// point, but one per frame would make the index as long as the file is in frames).
const AUDIO_INDEX_INTERVAL_MS: i64 = 2000;

struct Open {
    id: u64,
    format: Format,
    path: PathBuf,
    out: BufWriter<File>,
    idx: File,
    bytes: u64,
    /// Unix ms of the first frame, and of the latest frame's end.
    start_ms: i64,
    end_ms: i64,
    last_index_ms: Option<i64>,
    /// MP4: the GOP being fragmented, indexed once it is on disk.
    gop: Option<Gop>,
}

/// Where an MP4 GOP starts, for its index line.
struct Gop {
    unix_ms: i64,
    /// Decode time on the file's timeline.
    ticks: i64,
    offset: u64,
    seq: u64,
    disc: u64,
}

/// Writes one stream's recording.
pub struct Writer {
    root: PathBuf,
    code: String,
    settings: Settings,
    mux: TsMuxer,
    mp4: Mp4Mux,
    info: Option<Arc<MediaInfo>>,
    session: Option<u64>,
    /// `(hub dts, unix ms)` of the session's first frame: the recording's clock.
    anchor: Option<(i64, i64)>,
    file: Option<Open>,
    buf: BytesMut,
    last_id: u64,
    /// The next keyframe's sequence number and this session's number, continued from the
    /// newest index when the writer starts (delayed playlists number segments with them).
    counters: Option<(u64, u64)>,
    /// The discontinuity number of the last MP4 file opened.
    last_file_disc: Option<u64>,
    done: Vec<RecordingDone>,
}

impl Writer {
    /// A writer for `code` under `root`; nothing is written before the first frame.
    pub fn new(root: PathBuf, code: &str, settings: Settings) -> Self {
        Writer {
            root,
            code: code.to_owned(),
            settings,
            mux: TsMuxer::new(),
            mp4: Mp4Mux::new(),
            info: None,
            session: None,
            anchor: None,
            file: None,
            buf: BytesMut::new(),
            last_id: 0,
            counters: None,
            last_file_disc: None,
            done: Vec::new(),
        }
    }

    /// The id of the file being written, if any.
    pub fn current(&self) -> Option<u64> {
        self.file.as_ref().map(|f| f.id)
    }

    /// Files closed since the last call.
    pub fn take_done(&mut self) -> Vec<RecordingDone> {
        std::mem::take(&mut self.done)
    }

    /// Takes one hub event.
    pub fn event(&mut self, ev: &Event, now_ms: i64) -> io::Result<()> {
        match ev {
            Event::Tracks { info, session } => {
                let republish = self.session.is_some_and(|s| s != *session);
                let changed = self.info.as_deref().is_some_and(|i| i != info.as_ref());
                if self.info.is_some() && !republish && !changed {
                    // The same tracks announced again: the file goes on as it is (resetting
                    // the MP4 muxer would lose the GOP it holds).
                    return Ok(());
                }
                if republish || changed {
                    // nginx-rtmp records a file per publish; a new codec config gets its own
                    // file too, so every file has one PMT and one set of parameter sets.
                    self.close(now_ms)?;
                }
                if republish {
                    self.anchor = None;
                    if let Some((_, disc)) = self.counters.as_mut() {
                        *disc += 1;
                    }
                }
                self.session = Some(*session);
                let skipped = match self.settings.format {
                    Format::Ts => self.mux.set_tracks(info),
                    Format::Mp4 => self.mp4.set_tracks(info),
                };
                if !skipped.is_empty() {
                    tracing::warn!(stream = %self.code, ?skipped, format = self.settings.format.name(), "recording: tracks the format cannot carry are left out");
                }
                self.info = Some(info.clone());
                Ok(())
            }
            Event::Frame(f) => self.frame(f, now_ms),
            Event::End => self.close(now_ms),
        }
    }

    fn carries(&self, kind: TrackKind) -> bool {
        match self.settings.format {
            Format::Ts => self.mux.carries(kind),
            Format::Mp4 => self.mp4.carries(kind),
        }
    }

    fn frame(&mut self, f: &Frame, now_ms: i64) -> io::Result<()> {
        if !self.carries(f.track) {
            return Ok(());
        }
        let has_video = self.carries(TrackKind::Video);
        let random_access = if has_video {
            f.track == TrackKind::Video && f.keyframe
        } else {
            true
        };
        if self.anchor.is_none() && (self.file.is_some() || !random_access) {
            // Not a frame a file can start on: nothing is recorded before one.
            return Ok(());
        }
        let (base_dts, base_ms) = *self.anchor.get_or_insert((f.dts, now_ms));
        let unix_ms = base_ms + ticks_to_ms(f.dts - base_dts);
        if let Some(open) = &self.file {
            let due = random_access
                && (unix_ms - open.start_ms
                    >= i64::try_from(self.settings.rotate.as_millis()).unwrap_or(i64::MAX)
                    || (self.settings.rotate_bytes > 0
                        && open.bytes >= self.settings.rotate_bytes));
            if due {
                self.close_at(now_ms, Some(f))?;
            }
        }
        if self.file.is_none() {
            if !random_access {
                // A file starts on a keyframe so every file plays from its first byte.
                return Ok(());
            }
            self.open(unix_ms, f.dts)?;
        }
        if self.settings.format == Format::Mp4 {
            return self.mp4_frame(f, unix_ms, random_access, has_video);
        }
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        let index_due = random_access
            && (has_video
                || open
                    .last_index_ms
                    .is_none_or(|last| unix_ms - last >= AUDIO_INDEX_INTERVAL_MS));
        if index_due {
            // The bytes before this point are on disk before the index names it.
            open.out.flush()?;
            let (seq, disc) = self
                .counters
                .get_or_insert_with(|| catalog::next_counters(&self.root, &self.code));
            index_line(
                &mut open.idx,
                format_args!("k {unix_ms} {} {seq} {disc}", open.bytes),
            )?;
            *seq += 1;
            open.last_index_ms = Some(unix_ms);
            if open.bytes == 0 {
                // The muxer writes PAT/PMT before a keyframe; audio-only files need them too.
                self.mux.write_tables(&mut self.buf);
            }
        }
        if let Err(e) = self.mux.write_frame(f, &mut self.buf) {
            tracing::debug!(stream = %self.code, error = %e, "recording: frame not muxed");
        }
        open.out.write_all(&self.buf)?;
        open.bytes += self.buf.len() as u64;
        self.buf.clear();
        open.end_ms = open.end_ms.max(unix_ms + frame_ms(f.track));
        Ok(())
    }

    /// An MP4 frame: a random access point that starts a GOP writes the one before as
    /// fragments, then indexes it.
    fn mp4_frame(
        &mut self,
        f: &Frame,
        unix_ms: i64,
        random_access: bool,
        has_video: bool,
    ) -> io::Result<()> {
        let Some(open) = self.file.as_ref() else {
            return Ok(());
        };
        let gop_starts = random_access
            && open
                .gop
                .as_ref()
                .is_none_or(|g| has_video || unix_ms - g.unix_ms >= AUDIO_INDEX_INTERVAL_MS);
        self.mp4.push(f);
        if gop_starts {
            self.end_gop(unix_ms, None)?;
            let (seq, disc) = self
                .counters
                .get_or_insert_with(|| catalog::next_counters(&self.root, &self.code));
            let gop = Gop {
                unix_ms,
                ticks: self.mp4.file_time(f.dts),
                offset: self.file.as_ref().map_or(0, |o| o.bytes),
                seq: *seq,
                disc: *disc,
            };
            *seq += 1;
            if let Some(open) = self.file.as_mut() {
                open.gop = Some(gop);
            }
        } else if self.mp4.overfull() {
            self.mp4.write_fragments(&mut self.buf);
            self.write_buf()?;
        }
        if let Some(open) = self.file.as_mut() {
            open.end_ms = open.end_ms.max(unix_ms + frame_ms(f.track));
        }
        Ok(())
    }

    /// Writes the fragments of the GOP in progress (all of it when the file ends: `finish`
    /// holds the next file's first video DTS, if known), flushes them, and indexes the GOP as
    /// ending at `end_ms` and the bytes written.
    fn end_gop(&mut self, end_ms: i64, finish: Option<Option<i64>>) -> io::Result<()> {
        match finish {
            Some(next) => self.mp4.finish(next, &mut self.buf),
            None => self.mp4.write_fragments(&mut self.buf),
        }
        self.write_buf()?;
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        if let Some(g) = open.gop.take()
            && open.bytes > g.offset
        {
            // The fragments are on disk before the line that names them.
            open.out.flush()?;
            index_line(
                &mut open.idx,
                format_args!(
                    "k {} {} {} {} {} {} {}",
                    g.unix_ms,
                    g.offset,
                    g.seq,
                    g.disc,
                    end_ms,
                    open.bytes,
                    g.ticks.max(0)
                ),
            )?;
        }
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if let Some(open) = self.file.as_mut()
            && !self.buf.is_empty()
        {
            result = open.out.write_all(&self.buf);
            if result.is_ok() {
                open.bytes += self.buf.len() as u64;
            }
        }
        // Written or not, these bytes are never written again: after a failed write the
        // stream task stops recording this publish, and a later file must not start with them.
        self.buf.clear();
        result
    }

    fn open(&mut self, unix_ms: i64, dts: i64) -> io::Result<()> {
        // Ids are start times; two files of one stream never share one.
        let id = u64::try_from(unix_ms).unwrap_or(0).max(self.last_id + 1);
        self.last_id = id;
        let format = self.settings.format;
        let (path, idx_path) = catalog::file_paths(&self.root, &self.code, id, format);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let out = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        let idx = File::create(&idx_path)?;
        // Whatever a failed write left behind is not this file's.
        self.buf.clear();
        match format {
            Format::Ts => {
                // Fresh tables and parameter sets at the head of every file.
                if let Some(info) = self.info.clone() {
                    self.mux.set_tracks(&info);
                }
            }
            Format::Mp4 => {
                // Each file has its own timeline from 0, so it plays and probes on its own
                // like any MP4 (ffprobe takes a fragmented file's last time as its
                // duration). A playlist crossing files therefore crosses a discontinuity:
                // each MP4 file after the first of a writer counts one more.
                self.mp4.start_file(dts, &mut self.buf);
                let (_, disc) = self
                    .counters
                    .get_or_insert_with(|| catalog::next_counters(&self.root, &self.code));
                if self.last_file_disc == Some(*disc) {
                    *disc += 1;
                }
                self.last_file_disc = Some(*disc);
            }
        }
        tracing::info!(stream = %self.code, path = %path.display(), "recording started");
        self.file = Some(Open {
            id,
            format,
            path,
            out,
            idx,
            bytes: 0,
            start_ms: unix_ms,
            end_ms: unix_ms,
            last_index_ms: None,
            gop: None,
        });
        self.write_buf()?;
        if format == Format::Mp4
            && let Some(open) = self.file.as_mut()
        {
            // The header is on disk before the index says how long it is.
            open.out.flush()?;
            index_line(&mut open.idx, format_args!("f mp4 {}", open.bytes))?;
            if let Some(info) = &self.info {
                write_tracks(&mut open.idx, info, &self.mp4)?;
            }
        }
        Ok(())
    }

    /// Closes the file being written, if any: data flushed and synced, then the end line.
    pub fn close(&mut self, now_ms: i64) -> io::Result<()> {
        self.close_at(now_ms, None)
    }

    /// Closes the file; `next` is the frame that starts the next file (a rotation), which
    /// gives the last frames of this one their exact duration.
    fn close_at(&mut self, now_ms: i64, next: Option<&Frame>) -> io::Result<()> {
        let Some(format) = self.file.as_ref().map(|o| o.format) else {
            return Ok(());
        };
        if format == Format::Mp4 {
            // The next file's first frame, or the last frame's end, on the recording's clock.
            let end_dts = next.map(|f| f.dts).or_else(|| self.mp4.end_dts());
            let end_ms = match (end_dts, self.anchor) {
                (Some(dts), Some((base_dts, base_ms))) => base_ms + ticks_to_ms(dts - base_dts),
                _ => self.file.as_ref().map_or(0, |o| o.end_ms),
            };
            let next_video = next.filter(|f| f.track == TrackKind::Video).map(|f| f.dts);
            self.end_gop(end_ms, Some(next_video))?;
            if let Some(open) = self.file.as_mut() {
                open.end_ms = end_ms;
            }
        }
        let Some(mut open) = self.file.take() else {
            return Ok(());
        };
        open.out.flush()?;
        open.out.get_ref().sync_data()?;
        index_line(
            &mut open.idx,
            format_args!("e {} {}", open.end_ms, open.bytes),
        )?;
        open.idx.sync_data()?;
        tracing::info!(stream = %self.code, path = %open.path.display(), bytes = open.bytes, "recording closed");
        if let Some(file) = catalog::find(&self.root, &self.code, open.id) {
            self.done.push(RecordingDone {
                code: self.code.clone(),
                file,
            });
        }
        self.retention(now_ms);
        Ok(())
    }

    /// Applies the retention limits now (the file being written is never deleted).
    pub fn retention(&mut self, now_ms: i64) {
        let max_age_ms = self
            .settings
            .max_age
            .map_or(0, |a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
        for f in catalog::enforce_retention(
            &self.root,
            &self.code,
            max_age_ms,
            self.settings.max_bytes,
            now_ms,
        ) {
            tracing::info!(stream = %self.code, path = %f.path.display(), "recording deleted by retention");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::{AacConfig, AudioCodec, AvcConfig, VideoCodec, ms_to_ticks};
    use std::path::Path;

    fn info() -> Arc<MediaInfo> {
        let avc = AvcConfig::parse(Bytes::from_static(include_bytes!(
            "../../../testdata/h264-320x240-baseline.avcc"
        )))
        .unwrap();
        let aac = AacConfig::parse(Bytes::from_static(include_bytes!(
            "../../../testdata/aac-48k-stereo.asc"
        )))
        .unwrap();
        Arc::new(MediaInfo {
            video_metadata: None,
            video: Some(VideoCodec::H264(avc)),
            audio: Some(AudioCodec::Aac(aac)),
            framerate: Some(25.0),
        })
    }

    fn idr() -> Bytes {
        Bytes::from_static(include_bytes!(
            "../../../testdata/h264-320x240-baseline-idr.avcc-frame"
        ))
    }

    fn video(ms: i64, key: bool) -> Event {
        // Inter frames reuse the IDR's bytes: the writer does not decode, it cuts and indexes.
        Event::Frame(Frame {
            track: TrackKind::Video,
            dts: ms_to_ticks(ms),
            pts: ms_to_ticks(ms),
            keyframe: key,
            payload: idr(),
        })
    }

    fn audio(ms: i64) -> Event {
        Event::Frame(Frame {
            track: TrackKind::Audio,
            dts: ms_to_ticks(ms),
            pts: ms_to_ticks(ms),
            keyframe: true,
            payload: Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
        })
    }

    fn temp_root(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferrocast-record-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A writer of `code` under `root` that has seen the tracks of session 1.
    fn started(root: &Path, code: &str, settings: Settings) -> Writer {
        let mut w = Writer::new(root.to_path_buf(), code, settings);
        w.event(
            &Event::Tracks {
                info: info(),
                session: 1,
            },
            0,
        )
        .unwrap();
        w
    }

    /// 25 fps video with a keyframe every second and audio between, from `start_ms` for `secs`.
    fn feed(w: &mut Writer, start_ms: i64, secs: i64, wall0: i64) {
        for i in 0..secs * 25 {
            let ms = start_ms + i * 40;
            w.event(&video(ms, i % 25 == 0), wall0 + ms).unwrap();
            w.event(&audio(ms + 5), wall0 + ms).unwrap();
        }
    }

    #[test]
    fn rotates_on_keyframes_indexes_every_keyframe_and_closes_cleanly() {
        let root = temp_root("rotate");
        let settings = Settings {
            rotate: Duration::from_secs(3),
            ..Settings::default()
        };
        let mut w = started(&root, "live/a", settings);
        // Frames before the first keyframe are not recorded.
        w.event(&video(-40, false), 1_000_000).unwrap();
        assert_eq!(w.current(), None);
        feed(&mut w, 0, 10, 1_000_000);
        w.event(&Event::End, 1_010_000).unwrap();
        let done = w.take_done();
        let files = catalog::list(&root, "live/a");
        // 10 s in 3 s files, each opening on a keyframe: 3 + 3 + 3 + 1.
        assert_eq!(files.len(), 4, "{files:#?}");
        assert_eq!(done.len(), 4);
        for f in &files {
            assert!(f.complete);
            let len = fs::metadata(&f.path).unwrap().len();
            assert_eq!(len, f.bytes);
            assert_eq!(len % 188, 0);
            let data = fs::read(&f.path).unwrap();
            // Each file starts with a PAT, and each keyframe offset with one too.
            for k in &f.keyframes {
                let at = usize::try_from(k.offset).unwrap();
                assert_eq!(data[at], 0x47);
                assert_eq!(
                    u16::from_be_bytes([data[at + 1], data[at + 2]]) & 0x1fff,
                    0,
                    "PAT at {at}"
                );
            }
            assert_eq!(f.keyframes[0].offset, 0);
        }
        assert_eq!(files[0].keyframes.len(), 3);
        assert_eq!(files[0].start_ms, 1_000_000);
        assert_eq!(files[1].start_ms, 1_003_000);
        assert!(
            (files[3].end_ms - 1_010_000).abs() < 100,
            "{}",
            files[3].end_ms
        );
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn a_republish_starts_a_new_file_and_byte_rotation_applies() {
        let root = temp_root("republish");
        let settings = Settings {
            rotate: Duration::from_secs(600),
            rotate_bytes: 20_000,
            ..Settings::default()
        };
        let mut w = started(&root, "b", settings);
        feed(&mut w, 0, 2, 0);
        w.event(
            &Event::Tracks {
                info: info(),
                session: 2,
            },
            5000,
        )
        .unwrap();
        feed(&mut w, 0, 2, 5000);
        w.close(9000).unwrap();
        let files = catalog::list(&root, "b");
        // The keyframe is ~7 KB here: 20 KB makes a file every few keyframes, and the new
        // session never continues an old file.
        assert!(files.len() >= 3, "{}", files.len());
        assert!(files.iter().any(|f| f.start_ms == 5000));
        // Keyframes are numbered across files; the session number steps at the republish.
        let keys: Vec<_> = files.iter().flat_map(|f| f.keyframes.clone()).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.seq, Some(i as u64));
            assert_eq!(k.disc, Some(u64::from(k.unix_ms >= 5000)));
        }
        // A writer started later (a restart) continues both counters.
        let mut again = Writer::new(root.clone(), "b", Settings::default());
        again
            .event(
                &Event::Tracks {
                    info: info(),
                    session: 9,
                },
                20_000,
            )
            .unwrap();
        feed(&mut again, 0, 1, 20_000);
        again.close(21_000).unwrap();
        let last = catalog::list(&root, "b").pop().unwrap();
        assert_eq!(last.keyframes[0].seq, Some(keys.len() as u64));
        assert_eq!(last.keyframes[0].disc, Some(2));
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn retention_deletes_the_oldest_files_over_the_byte_limit() {
        let root = temp_root("retention");
        let settings = Settings {
            rotate: Duration::from_secs(1),
            max_bytes: 400_000,
            ..Settings::default()
        };
        let mut w = started(&root, "c", settings);
        feed(&mut w, 0, 12, 0);
        w.close(12_000).unwrap();
        let files = catalog::list(&root, "c");
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        assert!(total <= 400_000, "{total} bytes kept");
        assert!(files.len() >= 2, "{files:#?}");
        // The newest are the ones kept.
        assert_eq!(files.last().unwrap().start_ms, 11_000);
        assert!(files.first().unwrap().start_ms > 0);
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn schedule_windows_include_their_start_and_cross_midnight() {
        let at = |h: i64, m: i64| 1_796_428_800_000 + (h * 60 + m) * 60_000; // a UTC midnight
        let s = Settings {
            schedule: vec![(8 * 60, 9 * 60), (22 * 60, 6 * 60 + 30)],
            ..Settings::default()
        };
        assert!(s.in_schedule(at(8, 0)));
        assert!(!s.in_schedule(at(9, 0)));
        assert!(s.in_schedule(at(23, 59)));
        assert!(s.in_schedule(at(0, 10)));
        assert!(!s.in_schedule(at(6, 30)));
        assert!(!s.in_schedule(at(12, 0)));
        assert!(Settings::default().in_schedule(at(12, 0)));
    }

    /// The top-level boxes of an MP4 file: (type, offset, size).
    fn boxes(data: &[u8]) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            let kind = String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned();
            assert!(size >= 8 && at + size <= data.len(), "{kind} at {at}");
            out.push((kind, at, size));
            at += size;
        }
        assert_eq!(at, data.len(), "the file ends on a box boundary");
        out
    }

    fn mp4_settings(rotate_s: u64) -> Settings {
        Settings {
            rotate: Duration::from_secs(rotate_s),
            format: Format::Mp4,
            ..Settings::default()
        }
    }

    #[test]
    fn mp4_files_hold_a_header_then_a_fragment_per_track_per_gop() {
        let root = temp_root("mp4");
        let mut w = started(&root, "m", mp4_settings(3));
        feed(&mut w, 0, 8, 1_000_000);
        // The file in progress already names every GOP but the one being fragmented.
        let live = catalog::list(&root, "m").pop().unwrap();
        assert!(!live.complete);
        let last = live.keyframes.last().unwrap();
        assert_eq!(last.end.map(|e| e.1), Some(live.bytes), "{live:#?}");
        assert_eq!(live.keyframes.len(), 1);
        w.close(1_008_000).unwrap();
        let files = catalog::list(&root, "m");
        // 8 s in 3 s files: 3 + 3 + 2.
        assert_eq!(files.len(), 3, "{files:#?}");
        for f in &files {
            assert!(f.complete);
            assert_eq!(f.format, Format::Mp4);
            assert_eq!(f.path.extension().unwrap(), "mp4");
            let data = fs::read(&f.path).unwrap();
            assert_eq!(data.len() as u64, f.bytes);
            let b = boxes(&data);
            assert_eq!(b[0].0, "ftyp");
            assert_eq!(b[1].0, "moov");
            assert_eq!(f.header_len as usize, b[1].1 + b[1].2);
            // Every GOP: one moof (a traf per track) and its mdat; its index line spans them.
            for (i, k) in f.keyframes.iter().enumerate() {
                let (end_ms, end) = k.end.unwrap();
                let inside: Vec<&str> = b
                    .iter()
                    .filter(|x| x.1 as u64 >= k.offset && (x.1 as u64) < end)
                    .map(|x| x.0.as_str())
                    .collect();
                assert_eq!(inside, ["moof", "mdat"], "GOP {i}");
                // The stream's last GOP ends with its last audio frame, 5 ms after the video.
                assert!((1000..=1005).contains(&(end_ms - k.unix_ms)), "GOP {i}");
                if let Some(next) = f.keyframes.get(i + 1) {
                    assert_eq!(next.offset, end);
                }
            }
            assert_eq!(f.keyframes.last().unwrap().end.unwrap().1, f.bytes);
        }
        assert_eq!(files[0].keyframes.len(), 3);
        let ticks: Vec<u64> = files[0]
            .keyframes
            .iter()
            .map(|k| k.ticks.unwrap())
            .collect();
        assert_eq!(ticks, [0, 90_000, 180_000]);
        assert!(
            matches!(
                &files[0].tracks[..],
                [
                    catalog::RecordedTrack::Video {
                        width: 320,
                        height: 240,
                        ..
                    },
                    catalog::RecordedTrack::Audio {
                        sample_rate: 48_000,
                        channels: 2,
                        ..
                    }
                ]
            ),
            "{:?}",
            files[0].tracks
        );
        assert_eq!(files[1].start_ms, 1_003_000);
        assert_eq!(files[1].end_ms, 1_006_000);
        assert_eq!(files[2].end_ms, 1_008_005);
        // Each file's timeline starts at 0: the second file's first video tfdt is 0 (a v1
        // tfdt: box header, version and flags, then 8 bytes).
        let data = fs::read(&files[1].path).unwrap();
        let moof = usize::try_from(files[1].keyframes[0].offset).unwrap();
        let tfdt = moof + data[moof..].windows(4).position(|w| w == b"tfdt").unwrap();
        let t = u64::from_be_bytes(data[tfdt + 8..tfdt + 16].try_into().unwrap());
        assert_eq!(t, 0);
        // The audio fragment of the second GOP starts with the frame at 0.965 s: the last one
        // before the keyframe waits for its duration and goes out with the next GOP.
        let moof2 = usize::try_from(files[1].keyframes[1].offset).unwrap();
        let audio_tfdt = moof2
            + data[moof2..]
                .windows(4)
                .enumerate()
                .filter(|(_, w)| *w == b"tfdt")
                .nth(1)
                .unwrap()
                .0;
        let t = u64::from_be_bytes(data[audio_tfdt + 8..audio_tfdt + 16].try_into().unwrap());
        assert_eq!(t, 86_850, "audio decode time of the second GOP");
        // Every file is a discontinuity of its own: the delayed playlist marks it.
        let discs: Vec<u64> = files.iter().map(|f| f.keyframes[0].disc.unwrap()).collect();
        assert_eq!(discs, [0, 1, 2]);

        // DVR over MP4 files: a map per file, version 7.
        let segments = catalog::dvr_segments(&files, 0, i64::MAX, true);
        let text = catalog::dvr_playlist(&segments, "rec-").unwrap();
        assert!(text.contains("#EXT-X-VERSION:7\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-MAP:").count(), 3, "{text}");
        assert!(
            text.contains(&format!(
                "#EXT-X-MAP:URI=\"rec-{}.mp4\",BYTERANGE=\"{}@0\"",
                files[0].id, files[0].header_len
            )),
            "{text}"
        );
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn an_mp4_file_cut_by_a_crash_is_repaired_to_its_last_whole_gop() {
        let root = temp_root("mp4crash");
        let mut w = started(&root, "n", mp4_settings(600));
        feed(&mut w, 0, 3, 0);
        // Half a GOP more, then the process dies mid-write.
        for i in 0..10 {
            w.event(&video(3000 + i * 40, i == 0), 3000 + i * 40)
                .unwrap();
        }
        let id = w.current().unwrap();
        let open = w.file.take().unwrap();
        drop(open.out.into_parts());
        let (path, _) = catalog::file_paths(&root, "n", id, Format::Mp4);
        let whole = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\0\0\x10\0moof\x01\x02")
            .unwrap();
        let f = catalog::find(&root, "n", id).unwrap();
        assert!(!f.complete);
        assert!(catalog::repair(&f).unwrap());
        let f = catalog::find(&root, "n", id).unwrap();
        assert!(f.complete);
        assert_eq!(f.bytes, whole);
        assert_eq!(f.keyframes.len(), 3);
        assert_eq!(f.end_ms, 3000);
        boxes(&fs::read(&path).unwrap());
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn the_index_cache_keeps_closed_files_only_and_drops_the_oldest_past_its_capacity() {
        let root = temp_root("cache");
        let mut w = Writer::new(
            root.clone(),
            "c",
            Settings {
                rotate: Duration::from_secs(1),
                ..Settings::default()
            },
        );
        w.event(
            &Event::Tracks {
                info: info(),
                session: 1,
            },
            0,
        )
        .unwrap();
        feed(&mut w, 0, 4, 0);
        let files = catalog::list(&root, "c");
        assert_eq!(files.len(), 4);
        let cache = catalog::IndexCache::new(2);
        let open = files.last().unwrap();
        assert!(!open.complete);
        // The file being written is read afresh every time.
        assert_eq!(cache.find(&root, "c", open.id).as_ref(), Some(open));
        assert!(cache.is_empty());
        for f in &files[..3] {
            assert_eq!(cache.find(&root, "c", f.id).as_ref(), Some(f));
        }
        assert_eq!(cache.len(), 2, "the oldest was dropped");
        // A cached file answers even once its index is gone from disk; forget drops it.
        fs::remove_file(&files[2].index_path).unwrap();
        assert_eq!(
            cache.find(&root, "c", files[2].id).as_ref(),
            Some(&files[2])
        );
        cache.forget("c", files[2].id);
        assert_eq!(cache.find(&root, "c", files[2].id), None);
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn a_file_cut_before_its_first_gop_reached_the_disk_is_deleted() {
        let root = temp_root("mp4empty");
        let mut w = started(&root, "e", mp4_settings(600));
        // Half a GOP, then the process dies: only the header (and the index's first lines)
        // are on disk.
        for i in 0..10 {
            w.event(&video(i * 40, i == 0), i * 40).unwrap();
        }
        let id = w.current().unwrap();
        drop(w.file.take().unwrap().out.into_parts());
        let f = catalog::find(&root, "e", id).unwrap();
        assert!(!f.complete && f.keyframes.is_empty());
        assert!(!catalog::repair(&f).unwrap());
        assert!(catalog::find(&root, "e", id).is_none());
        assert!(!f.path.exists() && !f.index_path.exists());
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn a_file_cut_by_a_crash_is_repaired() {
        let root = temp_root("crash");
        let mut w = started(&root, "d", Settings::default());
        feed(&mut w, 0, 3, 0);
        let id = w.current().unwrap();
        // The process dies: buffers lost, no end line; half a packet and half a line on disk.
        let open = w.file.take().unwrap();
        drop(open.out.into_parts());
        let (ts, idx) = catalog::file_paths(&root, "d", id, Format::Ts);
        fs::OpenOptions::new()
            .append(true)
            .open(&ts)
            .unwrap()
            .write_all(&[0x47, 1, 2])
            .unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&idx)
            .unwrap()
            .write_all(b"k 29")
            .unwrap();
        let f = catalog::find(&root, "d", id).unwrap();
        assert!(!f.complete);
        assert!(catalog::repair(&f).unwrap());
        let f = catalog::find(&root, "d", id).unwrap();
        assert!(f.complete);
        assert_eq!(f.bytes % 188, 0);
        assert_eq!(f.keyframes.len(), 3);
        // The file now ends where its last frame began: every PES in it is whole.
        let data = fs::read(&ts).unwrap();
        let mut starts = 0;
        for p in data.chunks_exact(188) {
            assert_eq!(p[0], 0x47);
            starts += usize::from(p[1] & 0x40 != 0);
        }
        assert!(starts > 100, "{starts} PES starts");
        let _ = fs::remove_dir_all(root);
    }
}
