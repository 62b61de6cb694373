//! A small FLV file reader (FLV specification v10.1, annex E.2/E.3): the 9-byte header, then
//! tags with 11-byte headers, each followed by a 4-byte PreviousTagSize.

use bytes::Bytes;

/// FLV tag type of audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (onMetaData).
pub const TAG_SCRIPT: u8 = 18;

/// One FLV tag: its type, timestamp (ms) and body, shared with the file buffer.
#[derive(Clone, Debug)]
pub struct Tag {
    pub kind: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

impl Tag {
    /// AVC or AAC sequence header (decoder configuration), which a looped file sends only once.
    pub fn is_sequence_header(&self) -> bool {
        is_sequence_header(self.kind == TAG_VIDEO, &self.body)
    }

    /// AVC end of sequence (AVCPacketType 2), which ffmpeg writes as the last video tag.
    pub fn is_end_of_sequence(&self) -> bool {
        self.kind == TAG_VIDEO
            && matches!(&self.body[..], [b0, 2, ..] if matches!(b0 & 0x0f, 7 | 12))
    }
}

/// Whether an RTMP/FLV audio or video body is an AVC/AAC sequence header.
pub fn is_sequence_header(video: bool, body: &[u8]) -> bool {
    match (video, body) {
        // AVC (codec 7) or legacy HEVC (12) with AVCPacketType 0.
        (true, [b0, 0, ..]) => matches!(b0 & 0x0f, 7 | 12),
        // Enhanced RTMP: IsExHeader bit with PacketType SequenceStart.
        (true, [b0, ..]) if b0 & 0x80 != 0 => b0 & 0x0f == 0,
        // AAC (sound format 10) with AACPacketType 0.
        (false, [b0, 0, ..]) => b0 >> 4 == 10,
        _ => false,
    }
}

/// Whether a video body is a keyframe.
pub fn is_keyframe(body: &[u8]) -> bool {
    body.first().is_some_and(|b| (b >> 4) & 0x07 == 1)
}

/// Parses every complete tag of an FLV file; a truncated last tag is ignored.
pub fn read_tags(data: &Bytes) -> Result<Vec<Tag>, String> {
    if data.len() < 9 || &data[..3] != b"FLV" {
        return Err("not an FLV file (missing FLV signature)".into());
    }
    let header_len = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
    // PreviousTagSize0 follows the header.
    let mut pos = header_len.max(9).saturating_add(4);
    let mut tags = Vec::new();
    while let Some(h) = data.get(pos..pos + 11) {
        let kind = h[0] & 0x1f;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let end = start + size;
        if end > data.len() {
            break;
        }
        if matches!(kind, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) && size > 0 {
            tags.push(Tag {
                kind,
                timestamp,
                body: data.slice(start..end),
            });
        }
        pos = end + 4;
    }
    if tags.is_empty() {
        return Err("FLV file has no tags".into());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        v
    }

    #[test]
    fn reads_tags_and_ignores_truncation() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        f.extend(tag(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]));
        f.extend(tag(TAG_AUDIO, 0x0100_0023, &[0xaf, 1, 5]));
        f.extend(&tag(TAG_VIDEO, 40, &[0x27, 1, 0, 0, 0, 9])[..12]);
        let tags = read_tags(&Bytes::from(f)).unwrap();
        assert_eq!(tags.len(), 2);
        assert!(tags[0].is_sequence_header());
        assert_eq!(tags[1].timestamp, 0x0100_0023);
        assert!(!tags[1].is_sequence_header());
        assert!(is_keyframe(&tags[0].body));
        assert!(!tags[0].is_end_of_sequence());
        let eos = Tag {
            kind: TAG_VIDEO,
            timestamp: 0,
            body: Bytes::from_static(&[0x17, 2, 0, 0, 0]),
        };
        assert!(eos.is_end_of_sequence() && !eos.is_sequence_header());
        assert!(read_tags(&Bytes::from_static(b"FLX")).is_err());
    }
}
