//! HLS pull: a master playlist picks its highest-bandwidth variant; the media playlist is
//! polled, new segments are fetched in order and demuxed (MPEG-TS, or fMP4 after an
//! `EXT-X-MAP`), and frames are released at their own pace, as a player would.

use super::ts::{TsFeed, http_error};
use super::{DriverConfig, InputError};
use crate::source::Emitter;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Segments a live start begins behind the edge (as hls.js's default `liveSyncDurationCount`).
const LIVE_START_SEGMENTS: usize = 3;
/// Frames may leave this far ahead of their wall-clock time.
const PACE_LEAD: Duration = Duration::from_millis(500);

/// The HTTP client of HLS and HTTP-TS inputs: no redirects across hosts are special here
/// (CDNs redirect), a bound on connect time, rustls with the platform roots.
pub(crate) fn client(config: &DriverConfig) -> Result<reqwest::Client, InputError> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .user_agent(concat!("ferrocast/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| InputError::Connect(http_error(e)))
}

/// One media playlist, as far as a reader needs it.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MediaPlaylist {
    pub(crate) target_duration: f64,
    pub(crate) media_sequence: u64,
    pub(crate) segments: Vec<Segment>,
    pub(crate) ended: bool,
}

/// One segment of a media playlist.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) uri: String,
    pub(crate) duration: f64,
    pub(crate) discontinuity: bool,
    /// `EXT-X-MAP` URI in force for this segment (fMP4).
    pub(crate) map: Option<String>,
}

/// What a playlist turned out to be.
#[derive(Debug, PartialEq)]
pub(crate) enum Playlist {
    /// Variants as (bandwidth, uri).
    Master(Vec<(u64, String)>),
    Media(MediaPlaylist),
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    // Attribute lists are `NAME=value,NAME="quoted, value"`.
    let mut rest = attrs;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Parses a playlist (RFC 8216 §4); unknown tags are ignored, as the RFC requires.
pub(crate) fn parse(text: &str) -> Result<Playlist, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("not an M3U8 playlist (no #EXTM3U)".into());
    }
    let mut variants = Vec::new();
    let mut pending_bw: Option<u64> = None;
    let mut media = MediaPlaylist::default();
    let mut duration: Option<f64> = None;
    let mut discontinuity = false;
    let mut map: Option<String> = None;
    for line in lines {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending_bw = Some(
                attr(attrs, "BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0),
            );
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            media.target_duration = v.parse().map_err(|_| "bad EXT-X-TARGETDURATION")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media.media_sequence = v.parse().map_err(|_| "bad EXT-X-MEDIA-SEQUENCE")?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or_default();
            duration = Some(d.parse().map_err(|_| "bad EXTINF duration")?);
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if line == "#EXT-X-ENDLIST" {
            media.ended = true;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-MAP:") {
            map = attr(attrs, "URI").map(str::to_owned);
        } else if line.starts_with('#') {
            continue;
        } else if let Some(bw) = pending_bw.take() {
            variants.push((bw, line.to_owned()));
        } else if let Some(d) = duration.take() {
            media.segments.push(Segment {
                seq: 0,
                uri: line.to_owned(),
                duration: d,
                discontinuity: std::mem::take(&mut discontinuity),
                map: map.clone(),
            });
        }
    }
    // Numbered once everything is read: a (non-conforming) EXT-X-MEDIA-SEQUENCE after the
    // first segment still numbers them all, as players do.
    for (i, seg) in media.segments.iter_mut().enumerate() {
        seg.seq = media.media_sequence.saturating_add(i as u64);
    }
    if !variants.is_empty() {
        return Ok(Playlist::Master(variants));
    }
    Ok(Playlist::Media(media))
}

/// `reference` resolved against `base` (RFC 3986), as playlist URIs are.
fn resolve(base: &url::Url, reference: &str) -> Result<url::Url, InputError> {
    base.join(reference)
        .map_err(|e| InputError::Source(format!("bad URI {reference:?}: {e}")))
}

async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    config: &DriverConfig,
) -> Result<bytes::Bytes, InputError> {
    let resp = tokio::time::timeout(config.connect_timeout * 3, client.get(url.clone()).send())
        .await
        .map_err(|_| InputError::Source("HTTP request timed out".into()))?
        .map_err(|e| InputError::Connect(http_error(e)))?;
    if !resp.status().is_success() {
        return Err(InputError::Connect(format!("HTTP {}", resp.status())));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > config.max_download_bytes)
    {
        return Err(InputError::Source(
            "response larger than the download cap".into(),
        ));
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = tokio::time::timeout(config.connect_timeout * 3, resp.chunk())
        .await
        .map_err(|_| InputError::Source("HTTP body stalled".into()))?
        .map_err(|e| InputError::Source(http_error(e)))?
    {
        if body.len() + chunk.len() > config.max_download_bytes {
            return Err(InputError::Source(
                "response larger than the download cap".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// Releases frames at the pace of their timestamps (with a small lead), like a player.
struct Pacer {
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    async fn wait(&mut self, dts: i64) {
        let now = Instant::now();
        let (d0, t0) = *self.origin.get_or_insert((dts, now));
        let offset = dts - d0;
        let due = t0 + Duration::from_micros((offset.max(0) as u64) * 1000 / 90);
        // A jump (discontinuity, a stall of the source) re-anchors instead of bursting or
        // sleeping for the size of the jump.
        if offset < 0 || due > now + Duration::from_secs(5) || due + Duration::from_secs(5) < now {
            self.origin = Some((dts, now));
            return;
        }
        if due > now + PACE_LEAD {
            tokio::time::sleep_until(due - PACE_LEAD).await;
        }
    }
}

pub(crate) async fn run(
    input: &str,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    let client = client(config)?;
    let mut url = url::Url::parse(input).map_err(|e| InputError::Connect(format!("URL: {e}")))?;
    let mut text = fetch(&client, &url, config).await?;
    let mut playlist = parse(&String::from_utf8_lossy(&text)).map_err(InputError::Source)?;
    if let Playlist::Master(variants) = &playlist {
        let (_, best) = variants
            .iter()
            .max_by_key(|(bw, _)| *bw)
            .ok_or_else(|| InputError::Source("empty master playlist".into()))?;
        url = resolve(&url, best)?;
        text = fetch(&client, &url, config).await?;
        playlist = parse(&String::from_utf8_lossy(&text)).map_err(InputError::Source)?;
    }
    let Playlist::Media(mut media) = playlist else {
        return Err(InputError::Source(
            "a master playlist points to another master".into(),
        ));
    };
    let mut queue: VecDeque<Segment> = VecDeque::new();
    let start = if media.ended {
        0
    } else {
        media.segments.len().saturating_sub(LIVE_START_SEGMENTS)
    };
    queue.extend(media.segments.drain(start..));
    let mut next_seq = queue
        .back()
        .map_or(media.media_sequence, |s| s.seq.saturating_add(1));
    let mut ts = TsFeed::default();
    let mut fmp4: Option<(String, super::fmp4::Fmp4Feed)> = None;
    let mut pacer = Pacer { origin: None };
    let mut last_reload = Instant::now();
    loop {
        while let Some(seg) = queue.pop_front() {
            let seg_url = resolve(&url, &seg.uri)?;
            let data = fetch(&client, &seg_url, config).await?;
            if seg.discontinuity {
                for ev in ts.finish_events() {
                    out.send(ev).await?;
                }
                ts = TsFeed::default();
                pacer.origin = None;
            }
            let frames = match &seg.map {
                None => ts.segment(&data),
                Some(map) => {
                    if fmp4.as_ref().is_none_or(|(m, _)| m != map) {
                        let init = fetch(&client, &resolve(&url, map)?, config).await?;
                        let feed = super::fmp4::Fmp4Feed::new(&init).map_err(InputError::Source)?;
                        fmp4 = Some((map.clone(), feed));
                    }
                    let Some((_, feed)) = fmp4.as_mut() else {
                        unreachable!("set just above")
                    };
                    feed.segment(&data).map_err(InputError::Source)?
                }
            };
            for ev in frames {
                match ev {
                    crate::source::SourceEvent::Frame(f) => {
                        pacer.wait(f.dts).await;
                        out.frame(f).await?;
                    }
                    other => out.send(other).await?,
                }
            }
        }
        if media.ended {
            return Err(InputError::Ended(
                "the playlist ended (EXT-X-ENDLIST)".into(),
            ));
        }
        // RFC 8216 §6.3.4: reload after the target duration, or half of it when nothing new.
        let wait = Duration::from_secs_f64(media.target_duration.clamp(0.5, 30.0) / 2.0);
        tokio::time::sleep_until(last_reload + wait).await;
        last_reload = Instant::now();
        let text = fetch(&client, &url, config).await?;
        let Playlist::Media(fresh) =
            parse(&String::from_utf8_lossy(&text)).map_err(InputError::Source)?
        else {
            return Err(InputError::Source(
                "the media playlist became a master".into(),
            ));
        };
        if fresh
            .segments
            .last()
            .is_some_and(|s| s.seq.saturating_add(1) < next_seq)
        {
            // The sequence went backwards: the origin restarted; start again at its edge.
            next_seq = 0;
        }
        let fresh_start = if next_seq == 0 {
            fresh.segments.len().saturating_sub(LIVE_START_SEGMENTS)
        } else {
            0
        };
        for seg in fresh.segments.iter().skip(fresh_start) {
            if seg.seq >= next_seq {
                queue.push_back(seg.clone());
                next_seq = seg.seq.saturating_add(1);
            }
        }
        media = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_live_ts_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
            #EXTINF:2.000,\nseg41.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.5,\nhttp://cdn/seg42.ts?t=1\n";
        let Ok(Playlist::Media(m)) = parse(text) else {
            panic!("not a media playlist")
        };
        assert_eq!(
            (m.target_duration, m.media_sequence, m.ended),
            (2.0, 41, false)
        );
        assert_eq!(m.segments.len(), 2);
        assert_eq!(
            (m.segments[0].seq, m.segments[0].discontinuity),
            (41, false)
        );
        assert_eq!(m.segments[1].uri, "http://cdn/seg42.ts?t=1");
        assert_eq!((m.segments[1].seq, m.segments[1].discontinuity), (42, true));
    }

    #[test]
    fn parses_a_master_and_an_fmp4_playlist() {
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401f,mp4a.40.2\"\n\
            low/index.m3u8\n#EXT-X-STREAM-INF:RESOLUTION=1280x720,BANDWIDTH=2500000\nhigh/index.m3u8\n";
        assert_eq!(
            parse(master),
            Ok(Playlist::Master(vec![
                (800_000, "low/index.m3u8".to_owned()),
                (2_500_000, "high/index.m3u8".to_owned())
            ]))
        );
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init.mp4\"\n\
            #EXTINF:4,\n0.m4s\n#EXT-X-ENDLIST\n";
        let Ok(Playlist::Media(m)) = parse(media) else {
            panic!()
        };
        assert!(m.ended);
        assert_eq!(m.segments[0].map.as_deref(), Some("init.mp4"));
    }

    #[test]
    fn a_late_media_sequence_still_numbers_every_segment() {
        // Found by the hls_playlist fuzz target (testdata/fuzz/hls_playlist-late-sequence.bin).
        let text = include_str!("../../../../testdata/fuzz/hls_playlist-late-sequence.bin");
        let Ok(Playlist::Media(m)) = parse(text) else {
            panic!("not a media playlist")
        };
        for (i, seg) in m.segments.iter().enumerate() {
            assert_eq!(seg.seq, m.media_sequence.saturating_add(i as u64));
        }
    }

    #[test]
    fn refuses_what_is_not_a_playlist() {
        assert!(parse("<html>").is_err());
        assert!(parse("#EXTM3U\n#EXTINF:abc,\nx.ts\n").is_err());
    }
}
