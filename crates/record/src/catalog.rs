//! Recordings on disk: where files go, their keyframe index, repair after a crash, retention,
//! and DVR playlists over them.
//!
//! Layout: `<root>/<code>/<YYYY-MM-DD>/<start-unix-ms>.ts` (or `.mp4`), each beside
//! `<start-unix-ms>.idx`, a text index appended while the file grows. `f mp4 <header-bytes>`
//! opens the index of a fragmented MP4 file (`ftyp`+`moov` of that length first); an index
//! without it is MPEG-TS. `k <unix-ms> <offset> <seq> <disc>` marks a keyframe (with its
//! PAT/PMT, or the `moof` of its fragment) at that byte offset: `seq` counts the stream's
//! keyframes across files and restarts, `disc` its publish sessions, so a delayed live playlist
//! numbers its segments the same on every reload. In an MP4 index the line is written once
//! the GOP's fragments are on disk and ends with `<end-unix-ms> <end-offset> <decode-time>`
//! (the GOP's start on the file's 90 kHz timeline), and `t video <codecs> <width> <height>` /
//! `t audio <codecs> <sample-rate> <channels>` lines after the `f` line describe the tracks
//! (what a DASH manifest of the file needs). `e <end-unix-ms>
//! <bytes>` closes the file. A file whose index has no `e` line was being written when the
//! process died; [`repair`] finishes it. Index lines are written only after the bytes before
//! the offsets they name are flushed, so an index never names data that is not on disk.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The container of a recorded file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// MPEG-TS, `.ts`.
    #[default]
    Ts,
    /// Fragmented MP4 (ISO BMFF), `.mp4`: `ftyp`+`moov`, then a `moof`+`mdat` per GOP.
    Mp4,
}

impl Format {
    /// The media file's extension.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Ts => "ts",
            Format::Mp4 => "mp4",
        }
    }

    /// The media type files of this format are served as.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ts => "video/mp2t",
            Format::Mp4 => "video/mp4",
        }
    }

    /// The name the API uses (`ts`, `fmp4`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Ts => "ts",
            Format::Mp4 => "fmp4",
        }
    }
}
/// Extension of the keyframe index beside each file.
pub const INDEX_EXT: &str = "idx";
/// MPEG-TS packet size: a repaired file is cut to a whole number of packets.
const PACKET: u64 = 188;
/// DVR segments shorter than this are merged with the next keyframe interval.
const MIN_SEGMENT_MS: i64 = 1900;
/// Most keyframes kept from one index: 2.3 days of 1 s GOPs. A longer (or hostile) index keeps
/// its first ones, and is still read to its end for its end line, so a long file is never
/// taken for one cut by a crash.
const MAX_INDEX_KEYFRAMES: usize = 200_000;

/// A keyframe of a recorded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keyframe {
    /// Wall-clock time of the frame, Unix ms (the stream's clock anchored at its first frame).
    pub unix_ms: i64,
    /// Byte offset of the tables before the keyframe.
    pub offset: u64,
    /// The stream's keyframe count at this one (the media sequence number of its segment).
    pub seq: Option<u64>,
    /// The stream's publish-session count (the discontinuity sequence number).
    pub disc: Option<u64>,
    /// Where the GOP starting here ends, `(unix ms, byte offset)`, when the index says (MP4).
    pub end: Option<(i64, u64)>,
    /// The GOP's decode time on the file's 90 kHz timeline (MP4).
    pub ticks: Option<u64>,
}

/// A track of a recorded MP4 file, from its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedTrack {
    /// Video: RFC 6381 codecs, picture size.
    Video {
        codecs: String,
        width: u32,
        height: u32,
    },
    /// Audio: RFC 6381 codecs, sample rate, channels.
    Audio {
        codecs: String,
        sample_rate: u32,
        channels: u32,
    },
}

/// One recorded file, as its index describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingFile {
    /// Start time in Unix ms; unique per stream, the file's id in URLs.
    pub id: u64,
    /// The container.
    pub format: Format,
    /// Bytes of the MP4 `ftyp`+`moov` at the head of the file (0 for MPEG-TS).
    pub header_len: u64,
    /// The MP4 file's tracks (empty for MPEG-TS).
    pub tracks: Vec<RecordedTrack>,
    /// The media file.
    pub path: PathBuf,
    /// Its index.
    pub index_path: PathBuf,
    /// Unix ms of the first frame.
    pub start_ms: i64,
    /// Unix ms after the last frame; the latest keyframe while the file is being written.
    pub end_ms: i64,
    /// Bytes on disk.
    pub bytes: u64,
    /// The file was closed (its index has an end line).
    pub complete: bool,
    /// The keyframes, in order.
    pub keyframes: Vec<Keyframe>,
}

impl RecordingFile {
    /// Length in milliseconds.
    pub fn duration_ms(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }
}

/// Where the recordings of `code` live.
pub fn code_dir(root: &Path, code: &str) -> PathBuf {
    // Codes are `[A-Za-z0-9_/-]` (validated before any stream exists), so no component is `..`.
    root.join(code)
}

/// The media and index paths of the `format` file of `code` starting at `start_ms`.
pub fn file_paths(root: &Path, code: &str, start_ms: u64, format: Format) -> (PathBuf, PathBuf) {
    let day = media::iso8601(i64::try_from(start_ms).unwrap_or(i64::MAX));
    let dir = code_dir(root, code).join(&day[..10]);
    (
        dir.join(format!("{start_ms}.{}", format.ext())),
        dir.join(format!("{start_ms}.{INDEX_EXT}")),
    )
}

fn is_day(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// A parsed index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// The container, from the `f` line.
    pub format: Format,
    /// Bytes of the MP4 header.
    pub header_len: u64,
    /// The MP4 tracks.
    pub tracks: Vec<RecordedTrack>,
    /// The keyframes, in order.
    pub keyframes: Vec<Keyframe>,
    /// `(end_ms, bytes)` if the file was closed.
    pub end: Option<(i64, u64)>,
}

/// Parses an index. A last line without its newline was cut by a crash and is left out: each
/// line is written with one `write` and ends with its newline, so only a cut one lacks it.
pub fn read_index(text: &str) -> Index {
    let mut index = Index::default();
    let whole = match text.rfind('\n') {
        Some(at) => &text[..at],
        None => "",
    };
    for line in whole.lines() {
        let mut f = line.split_ascii_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("f"), Some("mp4"), Some(len)) => {
                if let Ok(len) = len.parse() {
                    index.format = Format::Mp4;
                    index.header_len = len;
                }
            }
            (Some("t"), Some(kind), Some(codecs)) => {
                let mut num = || f.next().and_then(|v| v.parse::<u32>().ok());
                let (a, b) = (num(), num());
                let codecs = codecs.to_owned();
                match (kind, a, b) {
                    ("video", Some(width), Some(height)) => {
                        index.tracks.push(RecordedTrack::Video {
                            codecs,
                            width,
                            height,
                        })
                    }
                    ("audio", Some(sample_rate), Some(channels)) => {
                        index.tracks.push(RecordedTrack::Audio {
                            codecs,
                            sample_rate,
                            channels,
                        })
                    }
                    _ => {}
                }
            }
            (Some("k"), Some(ms), Some(off)) if index.keyframes.len() < MAX_INDEX_KEYFRAMES => {
                if let (Ok(unix_ms), Ok(offset)) = (ms.parse(), off.parse()) {
                    let mut num = || f.next().and_then(|v| v.parse::<u64>().ok());
                    let seq = num();
                    let disc = num();
                    let end = match (num(), num()) {
                        (Some(ms), Some(at)) if at > offset => {
                            Some((i64::try_from(ms).unwrap_or(i64::MAX), at))
                        }
                        _ => None,
                    };
                    let ticks = num();
                    if index.format == Format::Mp4 && (end.is_none() || ticks.is_none()) {
                        // An MP4 GOP's line says where it ends; one that does not is not ours.
                        continue;
                    }
                    index.keyframes.push(Keyframe {
                        unix_ms,
                        offset,
                        seq,
                        disc,
                        end,
                        ticks,
                    });
                }
            }
            (Some("e"), Some(ms), Some(bytes)) => {
                if let (Ok(ms), Ok(bytes)) = (ms.parse(), bytes.parse()) {
                    index.end = Some((ms, bytes));
                }
            }
            // A line cut by a crash, or one from a later version: skipped.
            _ => {}
        }
    }
    index
}

fn load(idx: PathBuf, id: u64) -> Option<RecordingFile> {
    let text = fs::read_to_string(&idx).ok()?;
    let Index {
        format,
        header_len,
        tracks,
        keyframes,
        end,
    } = read_index(&text);
    let mut path = idx.with_extension(format.ext());
    let mut format = format;
    if format == Format::Ts && !path.exists() {
        // An MP4 file whose index lost its first line: listed (and so repaired and deleted by
        // retention) as an MP4 file without a whole GOP.
        let mp4 = idx.with_extension(Format::Mp4.ext());
        if mp4.exists() {
            (path, format) = (mp4, Format::Mp4);
        }
    }
    let bytes = fs::metadata(&path).ok()?.len();
    let start_ms = keyframes
        .first()
        .map_or(i64::try_from(id).unwrap_or(i64::MAX), |k| k.unix_ms);
    let (end_ms, complete) = match end {
        Some((ms, _)) => (ms, true),
        None => (
            keyframes
                .last()
                .map_or(start_ms, |k| k.end.map_or(k.unix_ms, |e| e.0)),
            false,
        ),
    };
    Some(RecordingFile {
        id,
        format,
        header_len,
        tracks,
        path,
        index_path: idx,
        start_ms,
        end_ms,
        bytes,
        complete,
        keyframes,
    })
}

/// Every recorded file of `code`, oldest first.
pub fn list(root: &Path, code: &str) -> Vec<RecordingFile> {
    list_range(root, code, i64::MIN, i64::MAX)
}

/// The recorded files of `code` that can hold media of `[from_ms, to_ms]`, oldest first.
/// Only their indexes are read: a file's start is its name, and it ends before the next
/// file starts, so a window of a long archive costs the files it touches, not the archive.
pub fn list_range(root: &Path, code: &str, from_ms: i64, to_ms: i64) -> Vec<RecordingFile> {
    list_range_with(root, code, from_ms, to_ms, |id| find(root, code, id))
}

/// [`list_range`] with each file loaded by `load` (an [`IndexCache`]'s, say).
pub fn list_range_with(
    root: &Path,
    code: &str,
    from_ms: i64,
    to_ms: i64,
    mut load: impl FnMut(u64) -> Option<RecordingFile>,
) -> Vec<RecordingFile> {
    let mut ids = file_ids(root, code);
    ids.sort_unstable();
    let mut out = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let start = i64::try_from(id).unwrap_or(i64::MAX);
        let next = ids
            .get(i + 1)
            .map_or(i64::MAX, |&n| i64::try_from(n).unwrap_or(i64::MAX));
        if start > to_ms || next < from_ms {
            continue;
        }
        if let Some(file) = load(id) {
            out.push(file);
        }
    }
    out
}

/// Parsed indexes of closed files, which never change again: DVR playlists and MPDs, which
/// players reload every few seconds over windows of up to hours, read them from memory rather
/// than parsing every index of the window on each reload. Files being written are always read
/// from disk. Bounded: past `capacity` entries, the oldest file's is dropped.
#[derive(Debug)]
pub struct IndexCache {
    files: std::sync::Mutex<std::collections::HashMap<(String, u64), RecordingFile>>,
    capacity: usize,
}

impl IndexCache {
    /// A cache of at most `capacity` closed files.
    pub fn new(capacity: usize) -> Self {
        IndexCache {
            files: std::sync::Mutex::new(std::collections::HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, u64), RecordingFile>> {
        // Single inserts and removes: a poisoned map is consistent.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file `id` of `code`, from the cache when it was closed when first read.
    pub fn find(&self, root: &Path, code: &str, id: u64) -> Option<RecordingFile> {
        let key = (code.to_owned(), id);
        if let Some(f) = self.lock().get(&key) {
            return Some(f.clone());
        }
        let file = find(root, code, id)?;
        if file.complete {
            let mut files = self.lock();
            if files.len() >= self.capacity
                && let Some(oldest) = files.keys().min_by_key(|k| k.1).cloned()
            {
                files.remove(&oldest);
            }
            files.insert(key, file.clone());
        }
        Some(file)
    }

    /// Drops what is cached of file `id` of `code` (it was deleted).
    pub fn forget(&self, code: &str, id: u64) {
        self.lock().remove(&(code.to_owned(), id));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ids (start times) of `code`'s files, from directory names only.
fn file_ids(root: &Path, code: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(days) = fs::read_dir(code_dir(root, code)) else {
        return out;
    };
    for day in days.flatten() {
        let name = day.file_name();
        if !name.to_str().is_some_and(is_day) {
            continue;
        }
        let Ok(files) = fs::read_dir(day.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some(INDEX_EXT) {
                continue;
            }
            if let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(id);
            }
        }
    }
    out
}

/// The file `id` of `code`, if it exists.
pub fn find(root: &Path, code: &str, id: u64) -> Option<RecordingFile> {
    let (_, idx) = file_paths(root, code, id, Format::Ts);
    load(idx, id)
}

/// Every code under `root` that has recordings (a directory holding `YYYY-MM-DD` directories).
pub fn codes(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    // Codes nest at most a few levels (`region/north/news`); the bound keeps a symlink loop or
    // a hostile tree from running away.
    while let Some((dir, code)) = stack.pop() {
        if out.len() > 100_000 || code.matches('/').count() > 16 {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut has_day = false;
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // A day directory holds files; one holding directories is a code's name that
            // looks like a date (`concert/2026-06-01`), walked like any other.
            let holds_dirs = || {
                fs::read_dir(e.path()).is_ok_and(|mut d| {
                    d.any(|c| c.is_ok_and(|c| c.file_type().is_ok_and(|t| t.is_dir())))
                })
            };
            if is_day(&name) && !holds_dirs() {
                has_day = true;
            } else {
                let child = if code.is_empty() {
                    name
                } else {
                    format!("{code}/{name}")
                };
                stack.push((e.path(), child));
            }
        }
        if has_day && !code.is_empty() {
            out.push(code);
        }
    }
    out.sort();
    out
}

/// Finishes a file the process was writing when it died: cuts off the last frame, which the
/// crash may have cut (each frame's packets are written together, so every frame before it
/// is whole), and closes its index at the file's last write time (at least its last keyframe).
///
/// An MP4 file is cut after the last GOP its index names: the index line of a GOP is written
/// only once its fragments are on disk, so that is the end of the last whole fragment.
///
/// A file with nothing whole in it (the process died before its first GOP reached the disk)
/// is deleted with its index: it would play nothing. Returns whether the file was kept.
pub fn repair(file: &RecordingFile) -> io::Result<bool> {
    let media = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file.path)?;
    let len = media.metadata()?.len();
    // MP4: (end ms, end offset) of the last GOP whose end is on disk (after a power loss the
    // index may name bytes the file never got).
    let last_gop = match file.format {
        Format::Ts => None,
        Format::Mp4 => file
            .keyframes
            .iter()
            .rev()
            .find_map(|k| k.end.filter(|&(_, at)| at <= len)),
    };
    let whole = match file.format {
        Format::Ts => last_frame_start(&media, file, len)?.unwrap_or(len - len % PACKET),
        Format::Mp4 => last_gop.map_or(0, |(_, at)| at),
    };
    if whole == 0 {
        drop(media);
        delete(file)?;
        return Ok(false);
    }
    if whole != len {
        media.set_len(whole)?;
    }
    media.sync_all()?;
    let end = match file.format {
        // The index knows where the last whole GOP ends.
        Format::Mp4 => last_gop.map_or(file.start_ms, |(ms, _)| ms),
        Format::Ts => fs::metadata(&file.path)?
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .unwrap_or(file.end_ms)
            .max(file.end_ms),
    };
    let mut idx = fs::OpenOptions::new().append(true).open(&file.index_path)?;
    // A crash may have cut the last line: the end line starts on a fresh one.
    idx.write_all(format!("\ne {end} {whole}\n").as_bytes())?;
    idx.sync_all()?;
    Ok(true)
}

/// Where the last PES (or table) of the file starts: the offset of the last packet with
/// `payload_unit_start_indicator`, searched from the last indexed keyframe (one GOP).
fn last_frame_start(ts: &fs::File, file: &RecordingFile, len: u64) -> io::Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let from = file.keyframes.last().map_or(0, |k| k.offset).min(len);
    let mut tail = Vec::new();
    let mut r = ts;
    r.seek(SeekFrom::Start(from))?;
    // A GOP of a 50 Mbit/s stream is a few tens of MB; anything beyond is not read.
    r.take(256 << 20).read_to_end(&mut tail)?;
    let packet = usize::try_from(PACKET).unwrap_or(188);
    let last = tail
        .chunks_exact(packet)
        .enumerate()
        .rfind(|(_, p)| p[0] == 0x47 && p[1] & 0x40 != 0)
        .map(|(i, _)| from + (i * packet) as u64);
    Ok(last)
}

/// Deletes one recorded file and its index.
pub fn delete(file: &RecordingFile) -> io::Result<()> {
    fs::remove_file(&file.path)?;
    match fs::remove_file(&file.index_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes the oldest complete files of `code` that are older than `max_age_ms` (ended before
/// `now_ms - max_age_ms`) or make the total exceed `max_bytes` (0: no limit for either).
/// Files being written are never deleted. Returns what was deleted.
pub fn enforce_retention(
    root: &Path,
    code: &str,
    max_age_ms: i64,
    max_bytes: u64,
    now_ms: i64,
) -> Vec<RecordingFile> {
    let files = list(root, code);
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut deleted = Vec::new();
    for f in files.into_iter().filter(|f| f.complete) {
        let too_old = max_age_ms > 0 && f.end_ms < now_ms - max_age_ms;
        let too_big = max_bytes > 0 && total > max_bytes;
        if !(too_old || too_big) {
            // Oldest first: once one file is kept for both reasons, newer ones are too.
            break;
        }
        match delete(&f) {
            Ok(()) => {
                total = total.saturating_sub(f.bytes);
                deleted.push(f);
            }
            Err(e) => {
                tracing::warn!(path = %f.path.display(), error = %e, "recording not deleted");
                break;
            }
        }
    }
    deleted
}

/// One DVR segment: a byte range of a recorded file from one keyframe to a later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvrSegment {
    /// The file's id.
    pub file: u64,
    /// Its container.
    pub format: Format,
    /// Bytes of its MP4 header (the `EXT-X-MAP` range), 0 for MPEG-TS.
    pub header_len: u64,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Unix ms of its first frame.
    pub start_ms: i64,
    /// Length in ms.
    pub duration_ms: i64,
    /// The first segment of a file: timestamps may jump here.
    pub discontinuity: bool,
    /// Media sequence number (the first keyframe's `seq`), when the index has one.
    pub seq: Option<u64>,
    /// Discontinuity sequence number (the publish session), when the index has one.
    pub disc: Option<u64>,
}

/// The keyframe-aligned segments of `files` covering `[from_ms, to_ms)`; with `merge`, short
/// GOPs are joined so each lasts at least about two seconds unless a file ends sooner,
/// without, a segment is one GOP (its `seq` then numbers it).
pub fn dvr_segments(
    files: &[RecordingFile],
    from_ms: i64,
    to_ms: i64,
    merge: bool,
) -> Vec<DvrSegment> {
    let mut out = Vec::new();
    for f in files {
        if f.end_ms <= from_ms || f.start_ms >= to_ms || f.keyframes.is_empty() {
            continue;
        }
        // Cut points: keyframes, then the end of the file.
        let mut cuts: Vec<(i64, u64)> = f.keyframes.iter().map(|k| (k.unix_ms, k.offset)).collect();
        // A file being written ends, for playlists, at its last keyframe: what follows is an
        // unfinished GOP whose length is not known yet.
        // An MP4 index says where its last GOP ends.
        if f.complete {
            cuts.push((f.end_ms, f.bytes));
        } else if let Some(end) = f.keyframes.last().and_then(|k| k.end) {
            cuts.push(end);
        }
        let min_ms = if merge { MIN_SEGMENT_MS } else { 0 };
        let mut first_in_file = true;
        // Merging starts at the keyframe at or before `from_ms`, so a window opens at most one
        // GOP early rather than on a merged pair's boundary, up to two GOPs early.
        let mut i = cuts.windows(2).position(|w| w[1].0 > from_ms).unwrap_or(0);
        while i + 1 < cuts.len() {
            let (start, offset) = cuts[i];
            // Merge short keyframe intervals so players do not fetch many tiny ranges.
            let mut j = i + 1;
            while j + 1 < cuts.len() && cuts[j].0 - start < min_ms {
                j += 1;
            }
            let (end, end_offset) = cuts[j];
            if end > from_ms && start < to_ms && end_offset > offset {
                out.push(DvrSegment {
                    file: f.id,
                    format: f.format,
                    header_len: f.header_len,
                    offset,
                    len: end_offset - offset,
                    start_ms: start,
                    duration_ms: (end - start).max(1),
                    discontinuity: first_in_file && !out.is_empty(),
                    seq: f.keyframes[i].seq,
                    disc: f.keyframes[i].disc,
                });
                first_in_file = false;
            }
            i = j;
        }
    }
    out
}

/// A VOD media playlist of `segments`, each at `<uri_prefix><file id>.ts` with a byte range
/// (RFC 8216 4.3.2.2), dated with `EXT-X-PROGRAM-DATE-TIME`. `None` when there is nothing.
pub fn dvr_playlist(segments: &[DvrSegment], uri_prefix: &str) -> Option<String> {
    let segments = one_format(segments);
    let segments = &segments[..];
    if segments.is_empty() {
        return None;
    }
    let target = segments
        .iter()
        .map(|s| (s.duration_ms + 999) / 1000)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(128 + segments.len() * 160);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n",
        version(segments)
    );
    let mut last: Option<(u64, u64)> = None;
    for s in segments {
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if s.discontinuity || last.is_none() {
            out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
            media::write_iso8601(&mut out, s.start_ms);
            out.push('\n');
        }
        map(&mut out, s, last.map(|l| l.0), uri_prefix);
        let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_ms as f64 / 1000.0);
        // The offset may be left out when the range follows the previous one in the same file.
        if last == Some((s.file, s.offset)) {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}", s.len);
        } else {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", s.len, s.offset);
        }
        let _ = writeln!(out, "{uri_prefix}{}.{}", s.file, s.format.ext());
        last = Some((s.file, s.offset + s.len));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    Some(out)
}

/// The segments of the newest one's format: an `EXT-X-MAP` applies to every segment after it,
/// so a playlist cannot go from MP4 back to TS (a stream whose `recording.format` changed).
fn one_format(segments: &[DvrSegment]) -> Vec<DvrSegment> {
    let Some(last) = segments.last() else {
        return Vec::new();
    };
    segments
        .iter()
        .filter(|s| s.format == last.format)
        .cloned()
        .collect()
}

/// The playlist version the segments need: 7 for `EXT-X-MAP` with a byte range (fragmented
/// MP4), else 4 (byte ranges).
fn version<'a>(segments: impl IntoIterator<Item = &'a DvrSegment>) -> u8 {
    if segments.into_iter().any(|s| s.format == Format::Mp4) {
        7
    } else {
        4
    }
}

/// The `EXT-X-MAP` before the first segment of an MP4 file (`previous`: the file of the
/// segment before): its header's byte range.
fn map(out: &mut String, s: &DvrSegment, previous: Option<u64>, uri_prefix: &str) {
    if s.format == Format::Mp4 && previous != Some(s.file) {
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{uri_prefix}{}.mp4\",BYTERANGE=\"{}@0\"",
            s.file, s.header_len
        );
    }
}

/// A live media playlist of the `window` latest GOPs that ended by `until_ms` (now minus the
/// delay), numbered by the index's keyframe and session counters so every reload agrees:
/// timeshift as Open-Streamer's `?delay=`. `None` when nothing numbered ended by then.
pub fn delayed_playlist(
    segments: &[DvrSegment],
    until_ms: i64,
    window: usize,
    uri_prefix: &str,
) -> Option<String> {
    let segments = one_format(segments);
    let done: Vec<&DvrSegment> = segments
        .iter()
        .filter(|s| s.seq.is_some() && s.start_ms + s.duration_ms <= until_ms)
        .collect();
    let listed = &done[done.len().saturating_sub(window.max(1))..];
    let first = listed.first()?;
    let target = listed
        .iter()
        .map(|s| (s.duration_ms + 999) / 1000)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(160 + listed.len() * 160);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{}\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
        version(listed.iter().copied()),
        first.seq.unwrap_or(0),
        first.disc.unwrap_or(0)
    );
    let mut prev: Option<&DvrSegment> = None;
    for s in listed {
        if let Some(p) = prev
            && (p.disc != s.disc || p.seq.map(|q| q + 1) != s.seq)
        {
            // A new publish session, or keyframes missing in between (a file deleted).
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
        media::write_iso8601(&mut out, s.start_ms);
        out.push('\n');
        map(&mut out, s, prev.map(|p| p.file), uri_prefix);
        let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_ms as f64 / 1000.0);
        let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", s.len, s.offset);
        let _ = writeln!(out, "{uri_prefix}{}.{}", s.file, s.format.ext());
        prev = Some(s);
    }
    Some(out)
}

/// The next keyframe and session counters of `code` from its newest index, so a restarted
/// recorder continues the numbering delayed playlists rely on.
pub fn next_counters(root: &Path, code: &str) -> (u64, u64) {
    let files = list(root, code);
    let last = files
        .iter()
        .rev()
        .find_map(|f| f.keyframes.iter().rev().find(|k| k.seq.is_some()));
    match last {
        Some(k) => (k.seq.unwrap_or(0) + 1, k.disc.unwrap_or(0) + 1),
        None => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: u64, keys: &[(i64, u64)], end: i64, bytes: u64) -> RecordingFile {
        RecordingFile {
            id,
            format: Format::Ts,
            header_len: 0,
            tracks: Vec::new(),
            path: PathBuf::new(),
            index_path: PathBuf::new(),
            start_ms: keys[0].0,
            end_ms: end,
            bytes,
            complete: true,
            keyframes: keys
                .iter()
                .enumerate()
                .map(|(i, &(unix_ms, offset))| Keyframe {
                    unix_ms,
                    offset,
                    seq: Some(id / 1000 + i as u64),
                    disc: Some(id / 10_000),
                    end: None,
                    ticks: None,
                })
                .collect(),
        }
    }

    #[test]
    fn index_lines_parse_and_a_cut_line_is_skipped() {
        let i = read_index("k 1000 0\nk 3000 18800 7 2\ne 5000 37600\n");
        assert_eq!(i.format, Format::Ts);
        assert_eq!(i.keyframes.len(), 2);
        assert_eq!(
            i.keyframes[1],
            Keyframe {
                unix_ms: 3000,
                offset: 18800,
                seq: Some(7),
                disc: Some(2),
                end: None,
                ticks: None,
            }
        );
        assert_eq!((i.keyframes[0].seq, i.keyframes[0].disc), (None, None));
        assert_eq!(i.end, Some((5000, 37600)));
        let i = read_index("k 1000 0\nk 30");
        assert_eq!((i.keyframes.len(), i.end), (1, None));
        assert_eq!(read_index("garbage\n\u{0}\nk x y\n").keyframes, []);
        // An MP4 index: its header, and where each GOP ends (an end before the start is no end).
        let i = read_index(
            "f mp4 712\nt video avc1.64001f 1280 720\nt audio mp4a.40.2 48000 2\nt x y\n\
             k 1000 712 0 0 3000 90712 0\nk 3000 90712 1 0 2000 5\n",
        );
        assert_eq!((i.format, i.header_len), (Format::Mp4, 712));
        assert_eq!(
            i.tracks,
            [
                RecordedTrack::Video {
                    codecs: "avc1.64001f".into(),
                    width: 1280,
                    height: 720
                },
                RecordedTrack::Audio {
                    codecs: "mp4a.40.2".into(),
                    sample_rate: 48_000,
                    channels: 2
                }
            ]
        );
        assert_eq!(i.keyframes[0].end, Some((3000, 90712)));
        assert_eq!(i.keyframes[0].ticks, Some(0));
        // An MP4 GOP line without a sane end is left out.
        assert_eq!(i.keyframes.len(), 1);
    }

    #[test]
    fn codes_are_found_even_when_named_like_dates() {
        let root = std::env::temp_dir().join(format!("ferrocast-codes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for code in ["a", "concert/2026-06-01", "region/north/news"] {
            let (ts, _) = file_paths(&root, code, 1_796_475_929_690, Format::Ts);
            fs::create_dir_all(ts.parent().unwrap()).unwrap();
            fs::write(&ts, b"").unwrap();
        }
        assert_eq!(
            codes(&root),
            ["a", "concert/2026-06-01", "region/north/news"]
        );
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn day_directories() {
        assert!(is_day("2026-12-05"));
        assert!(!is_day("2026-12-5"));
        assert!(!is_day("news"));
        let (ts, idx) = file_paths(Path::new("/r"), "a/b", 1_796_475_929_690, Format::Ts);
        assert_eq!(ts, Path::new("/r/a/b/2026-12-05/1796475929690.ts"));
        assert_eq!(idx.extension().unwrap(), "idx");
    }

    #[test]
    fn dvr_segments_cover_the_range_on_keyframes_and_merge_short_gops() {
        // Two files: 1 s GOPs (merged to 2 s), then a republish with 2 s GOPs.
        let a = file(
            1000,
            &[
                (1000, 0),
                (2000, 100),
                (3000, 200),
                (4000, 300),
                (5000, 400),
            ],
            6000,
            500,
        );
        let b = file(10_000, &[(10_000, 0), (12_000, 1000)], 14_000, 2000);
        let all = dvr_segments(&[a.clone(), b.clone()], 0, i64::MAX, true);
        let spans: Vec<(u64, i64, i64, u64, u64)> = all
            .iter()
            .map(|s| (s.file, s.start_ms, s.duration_ms, s.offset, s.len))
            .collect();
        assert_eq!(
            spans,
            [
                (1000, 1000, 2000, 0, 200),
                (1000, 3000, 2000, 200, 200),
                (1000, 5000, 1000, 400, 100),
                (10_000, 10_000, 2000, 0, 1000),
                (10_000, 12_000, 2000, 1000, 1000),
            ]
        );
        assert!(all[3].discontinuity && !all[0].discontinuity);
        // A window inside the first file starts and ends on the covering keyframes.
        let w = dvr_segments(&[a.clone(), b.clone()], 3500, 4500, true);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].start_ms, w[0].duration_ms), (3000, 2000));
        // One that opens in the second GOP of a merged pair starts on that GOP's keyframe.
        let w = dvr_segments(&[a.clone(), b.clone()], 2500, 3500, true);
        let spans: Vec<(i64, i64, u64)> = w
            .iter()
            .map(|s| (s.start_ms, s.duration_ms, s.offset))
            .collect();
        assert_eq!(spans, [(2000, 2000, 100)]);

        let text = dvr_playlist(&all, "rec/").unwrap();
        assert!(
            text.contains("#EXT-X-BYTERANGE:200@0\nrec/1000.ts"),
            "{text}"
        );
        // Contiguous ranges leave the offset out.
        assert!(text.contains("#EXT-X-BYTERANGE:200\nrec/1000.ts"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert_eq!(dvr_playlist(&[], ""), None);

        // Delayed live: one GOP per segment, numbered by the index, the newest that ended.
        let gops = dvr_segments(&[a, b], 0, i64::MAX, false);
        assert_eq!(gops.len(), 7);
        let live = delayed_playlist(&gops, 12_500, 3, "rec-").unwrap();
        // Ended by 12.5 s: the first file's 5 GOPs and the second's first; the last 3 listed.
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{live}");
        assert!(live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{live}");
        assert_eq!(live.matches("#EXTINF:").count(), 3, "{live}");
        assert_eq!(live.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{live}");
        assert!(!live.contains("ENDLIST"));
        // A later reload slides by whole segments and keeps the numbers.
        let later = delayed_playlist(&gops, 14_000, 3, "rec-").unwrap();
        assert!(later.contains("#EXT-X-MEDIA-SEQUENCE:5\n"), "{later}");
        assert!(
            later.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"),
            "{later}"
        );
        assert_eq!(delayed_playlist(&gops, 1500, 3, ""), None);
    }
}
