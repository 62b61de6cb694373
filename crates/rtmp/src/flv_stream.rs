//! FLV as a byte stream (a file, or ffmpeg's `-f flv pipe:1`), sans I/O: push bytes in any
//! pieces, pull whole tags out.
//!
//! Layout per the FLV specification v10.1, E.2 (header) and E.3 (body: PreviousTagSize, then
//! tags with an 11-byte header). Tag bodies are slices of one frozen buffer, so a frame's
//! payload is never copied after the read.

use bytes::{Buf, Bytes, BytesMut};

/// FLV tag type of audio data.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video data.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// Largest tag body accepted; FLV's own field allows 16 MiB, far beyond any real frame.
pub const DEFAULT_MAX_TAG: usize = 8 << 20;

/// One FLV tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// Milliseconds, with the extended byte folded in.
    pub timestamp: u32,
    /// The tag body (an RTMP audio/video/data message payload).
    pub body: Bytes,
}

/// Why a stream is not FLV.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvStreamError {
    /// The first bytes are not `FLV` version 1.
    #[error("not an FLV stream (bad signature or version)")]
    BadHeader,
    /// The header claims a size below its own 9 bytes or absurdly large.
    #[error("FLV header size {0} is invalid")]
    BadHeaderSize(u32),
    /// A tag is larger than the reader's bound.
    #[error("FLV tag of {size} bytes exceeds the {max}-byte bound")]
    TagTooLarge {
        /// Declared body size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// The stream is encrypted or filtered (the Filter bit), which no encoder here sends.
    #[error("FLV tag type {0} is filtered (encrypted)")]
    Filtered(u8),
}

#[derive(Debug)]
enum State {
    Header,
    /// Skipping the rest of an oversized header, then PreviousTagSize0.
    Skip(usize),
    Tags,
    Failed,
}

/// Incremental FLV reader.
#[derive(Debug)]
pub struct FlvReader {
    buf: BytesMut,
    state: State,
    max_tag: usize,
    offset: u64,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TAG)
    }
}

impl FlvReader {
    /// A reader that refuses tags larger than `max_tag` bytes.
    pub fn new(max_tag: usize) -> Self {
        FlvReader {
            buf: BytesMut::new(),
            state: State::Header,
            max_tag,
            offset: 0,
        }
    }

    /// Bytes of the stream consumed so far (for error messages).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Failed) {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole tag, `Ok(None)` when more bytes are needed. After an error the reader
    /// stays failed: an FLV stream has no resynchronisation point.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvStreamError> {
        let r = self.step();
        if r.is_err() {
            self.state = State::Failed;
            self.buf = BytesMut::new();
        }
        r
    }

    fn step(&mut self) -> Result<Option<FlvTag>, FlvStreamError> {
        loop {
            match self.state {
                State::Failed => return Ok(None),
                State::Header => {
                    if self.buf.len() < 9 {
                        return Ok(None);
                    }
                    if &self.buf[..3] != b"FLV" || self.buf[3] != 1 {
                        return Err(FlvStreamError::BadHeader);
                    }
                    let size =
                        u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
                    if !(9..=1024).contains(&size) {
                        return Err(FlvStreamError::BadHeaderSize(size));
                    }
                    self.advance(9);
                    // The rest of the header, then PreviousTagSize0.
                    self.state = State::Skip(size as usize - 9 + 4);
                }
                State::Skip(n) => {
                    let take = n.min(self.buf.len());
                    self.advance(take);
                    if take < n {
                        self.state = State::Skip(n - take);
                        return Ok(None);
                    }
                    self.state = State::Tags;
                }
                State::Tags => {
                    if self.buf.len() < 11 {
                        return Ok(None);
                    }
                    let h = &self.buf[..11];
                    if h[0] & 0x20 != 0 {
                        return Err(FlvStreamError::Filtered(h[0] & 0x1f));
                    }
                    let tag_type = h[0] & 0x1f;
                    let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
                    let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    if size > self.max_tag {
                        return Err(FlvStreamError::TagTooLarge {
                            size,
                            max: self.max_tag,
                        });
                    }
                    // Header, body and the PreviousTagSize after it. The trailer is not
                    // checked: ffmpeg writes it correctly, and a wrong one harms nothing here.
                    let whole = 11 + size + 4;
                    if self.buf.len() < whole {
                        self.buf.reserve(whole - self.buf.len());
                        return Ok(None);
                    }
                    let mut tag = self.buf.split_to(whole);
                    self.offset += whole as u64;
                    tag.advance(11);
                    tag.truncate(size);
                    return Ok(Some(FlvTag {
                        tag_type,
                        timestamp,
                        body: tag.freeze(),
                    }));
                }
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }
}

/// Why [`FlvIngest`] stopped: the bytes are not FLV, or a tag could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum FlvIngestError {
    /// Not an FLV stream, or a tag beyond the bounds.
    #[error(transparent)]
    Flv(#[from] FlvStreamError),
    /// A tag could not be mapped (a bad codec configuration, a malformed tag).
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
}

/// FLV bytes (ffmpeg's `-f flv` output, an RTMP play's tags) to announced tracks and frames,
/// tag by tag through the RTMP ingest mapper, so every such source announces its tracks
/// exactly as an RTMP publisher would.
#[derive(Debug, Default)]
pub struct FlvIngest {
    reader: FlvReader,
    ingest: crate::ingest::Ingest,
}

impl FlvIngest {
    /// Adds bytes, in any split.
    pub fn push(&mut self, data: &[u8]) {
        self.reader.push(data);
    }

    /// The mapper, for tags that come from elsewhere than the byte stream.
    pub fn ingest(&mut self) -> &mut crate::ingest::Ingest {
        &mut self.ingest
    }

    /// Maps the next complete tag into `out`: `Ok(false)` when no tag is complete yet.
    /// `timestamp(tag_type, ms)` keeps a tag (at the timestamp it returns) or drops it
    /// (`None`). Empty audio and video tags (nginx-rtmp sends them when a player starts)
    /// carry nothing and are dropped. On an error, what the tag produced before it is in
    /// `out` all the same.
    pub fn next(
        &mut self,
        out: &mut Vec<crate::ingest::IngestOutput>,
        mut timestamp: impl FnMut(u8, u32) -> Option<u32>,
    ) -> Result<bool, FlvIngestError> {
        let Some(tag) = self.reader.next_tag()? else {
            return Ok(false);
        };
        let Some(ms) = timestamp(tag.tag_type, tag.timestamp) else {
            return Ok(true);
        };
        match tag.tag_type {
            TAG_AUDIO if !tag.body.is_empty() => self.ingest.audio(ms, &tag.body, out)?,
            TAG_VIDEO if !tag.body.is_empty() => self.ingest.video(ms, &tag.body, out)?,
            TAG_SCRIPT => {
                if let Ok(values) = crate::amf0::decode_all(&tag.body)
                    && let Some(meta) = values.get(1)
                {
                    self.ingest.metadata(meta, out);
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    fn read_all(pieces: usize) -> Vec<FlvTag> {
        let mut r = FlvReader::default();
        let mut tags = Vec::new();
        for chunk in FLV.chunks(pieces) {
            r.push(chunk);
            while let Some(t) = r.next_tag().expect("valid FLV") {
                tags.push(t);
            }
        }
        tags
    }

    #[test]
    fn ffmpeg_file_reads_whole_and_in_pieces() {
        let whole = read_all(FLV.len());
        assert!(whole.len() > 20, "{} tags", whole.len());
        assert_eq!(whole[0].tag_type, TAG_SCRIPT);
        assert!(whole.iter().any(|t| t.tag_type == TAG_VIDEO));
        assert!(whole.iter().any(|t| t.tag_type == TAG_AUDIO));
        // Timestamps are non-decreasing per track in ffmpeg's output.
        let video: Vec<u32> = whole
            .iter()
            .filter(|t| t.tag_type == TAG_VIDEO)
            .map(|t| t.timestamp)
            .collect();
        assert!(video.windows(2).all(|w| w[0] <= w[1]));
        for n in [1, 7, 11, 15, 4096] {
            assert_eq!(read_all(n), whole, "pieces of {n}");
        }
        // Every byte accounted for.
        let body: usize = whole.iter().map(|t| t.body.len() + 15).sum();
        assert_eq!(body + 13, FLV.len());
    }

    #[test]
    fn refuses_what_is_not_flv() {
        let mut r = FlvReader::default();
        r.push(b"\x1aE\xdf\xa3 webm, not flv");
        assert_eq!(r.next_tag(), Err(FlvStreamError::BadHeader));
        // Stays failed without growing.
        r.push(&[0; 4096]);
        assert_eq!(r.next_tag(), Ok(None));
    }

    #[test]
    fn bounds_tag_size() {
        let mut r = FlvReader::new(1000);
        r.push(&FLV[..13]);
        // A tag header claiming 16 MiB.
        r.push(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            r.next_tag(),
            Err(FlvStreamError::TagTooLarge {
                size: 0xff_ffff,
                max: 1000
            })
        );
        let mut r = FlvReader::default();
        r.push(b"FLV\x01\x05\x00\x00\x00\x03");
        assert_eq!(r.next_tag(), Err(FlvStreamError::BadHeaderSize(3)));
    }

    #[test]
    fn flv_ingest_maps_every_tag_and_lets_the_caller_shift_or_drop_them() {
        use crate::ingest::IngestOutput;
        let mut whole = FlvIngest::default();
        whole.push(FLV);
        let mut out = Vec::new();
        while whole.next(&mut out, |_, ms| Some(ms)).unwrap() {}
        let frames = out
            .iter()
            .filter(|o| matches!(o, IngestOutput::Frame(_)))
            .count();
        assert!(matches!(out[0], IngestOutput::Announce(_)), "tracks first");
        assert!(frames > 50, "{frames} frames");
        // Audio only, one second later: the other tags dropped, audio shifted.
        let mut audio = FlvIngest::default();
        let mut shifted = Vec::new();
        for piece in FLV.chunks(333) {
            audio.push(piece);
            while audio
                .next(&mut shifted, |t, ms| (t == TAG_AUDIO).then_some(ms + 1000))
                .unwrap()
            {}
        }
        let dts: Vec<i64> = shifted
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f.dts),
                IngestOutput::Announce(_) => None,
            })
            .collect();
        assert!(!dts.is_empty() && dts[0] >= 1000 * 90, "{:?}", &dts[..1]);
        let mut bad = FlvIngest::default();
        bad.push(b"not flv at all");
        assert!(matches!(
            bad.next(&mut Vec::new(), |_, ms| Some(ms)),
            Err(FlvIngestError::Flv(_))
        ));
    }
}
