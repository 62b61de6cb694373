//! Just enough of an HLS media playlist and a DASH MPD reader for a load-generating player:
//! which segment URLs exist and how often to reload. Not a validator.

use std::time::Duration;

/// A media playlist (RFC 8216 4.3.3).
#[derive(Debug, PartialEq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION`.
    pub target: Duration,
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent, RFC 8216 4.3.3.2).
    pub media_sequence: u64,
    /// Segment URIs in order; the first has `media_sequence`.
    pub uris: Vec<String>,
    /// `#EXT-X-ENDLIST` seen.
    pub ended: bool,
}

/// Parses a media playlist; `None` when it is not one.
pub fn parse_m3u8(text: &str) -> Option<MediaPlaylist> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "#EXTM3U" {
        return None;
    }
    let mut pl = MediaPlaylist {
        target: Duration::from_secs(2),
        media_sequence: 0,
        uris: Vec::new(),
        ended: false,
    };
    for line in lines {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            pl.target = Duration::from_secs(v.trim().parse().ok()?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            pl.media_sequence = v.trim().parse().ok()?;
        } else if line == "#EXT-X-ENDLIST" {
            pl.ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            pl.uris.push(line.to_owned());
        }
    }
    Some(pl)
}

/// One track (adaptation set) of the last period of an MPD.
#[derive(Debug, PartialEq)]
pub struct DashTrack {
    /// Initialization segment URL, if any.
    pub init: Option<String>,
    /// `SegmentTemplate@timescale`.
    pub timescale: u64,
    /// `(start time, URL)` of every segment the timeline lists.
    pub segments: Vec<(u64, String)>,
}

/// What a player needs from a dynamic MPD.
#[derive(Debug, PartialEq)]
pub struct Mpd {
    /// `MPD@minimumUpdatePeriod`; `None` for a static (ended) presentation.
    pub minimum_update_period: Option<Duration>,
    /// Tracks of the last period.
    pub tracks: Vec<DashTrack>,
}

/// The value of attribute `name` in the tag text `tag` (`<Name a="1" b="2"`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let i = rest.find(name)?;
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        rest = after;
        if before.is_some_and(char::is_whitespace)
            && let Some(v) = after.strip_prefix("=\"")
        {
            return v.split('"').next();
        }
    }
}

/// The text of the first `<name ...>` start tag in `s` and what follows it.
fn tag<'a>(s: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("<{name}");
    let mut from = 0;
    loop {
        let i = from + s[from..].find(&open)?;
        let after = &s[i + open.len()..];
        if after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/') {
            let end = after.find('>')?;
            return Some((&after[..end], &after[end + 1..]));
        }
        from = i + open.len();
    }
}

/// `xs:duration` of the `PnDTnHnMnS` form; years and months are refused.
pub fn xs_duration(v: &str) -> Option<Duration> {
    let v = v.strip_prefix('P')?;
    let (days, time) = match v.split_once('T') {
        Some((d, t)) => (d, t),
        None => (v, ""),
    };
    let mut secs = 0.0;
    if let Some(d) = days.strip_suffix('D') {
        secs += d.parse::<f64>().ok()? * 86_400.0;
    } else if !days.is_empty() {
        return None;
    }
    let mut num = String::new();
    for c in time.chars() {
        let unit = match c {
            'H' => 3600.0,
            'M' => 60.0,
            'S' => 1.0,
            _ => {
                num.push(c);
                continue;
            }
        };
        secs += num.parse::<f64>().ok()? * unit;
        num.clear();
    }
    (num.is_empty() && secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn template(t: &str, rep_id: &str, time: Option<u64>, number: Option<u64>) -> String {
    let mut s = t.replace("$RepresentationID$", rep_id);
    if let Some(time) = time {
        s = s.replace("$Time$", &time.to_string());
    }
    if let Some(n) = number {
        s = s.replace("$Number$", &n.to_string());
    }
    s
}

/// Parses the last period of an MPD using `SegmentTemplate` with a `SegmentTimeline`
/// (ferrocast's and nginx-rtmp's shape), wherever the template sits in the adaptation set.
pub fn parse_mpd(text: &str) -> Option<Mpd> {
    let (mpd_tag, _) = tag(text, "MPD")?;
    let minimum_update_period = attr(mpd_tag, "minimumUpdatePeriod").and_then(xs_duration);
    let last_period = &text[text.rfind("<Period")?..];
    let mut tracks = Vec::new();
    for set in last_period.split("<AdaptationSet").skip(1) {
        let set = set.split("</AdaptationSet>").next().unwrap_or(set);
        let rep_id = tag(set, "Representation")
            .and_then(|(t, _)| attr(t, "id"))
            .unwrap_or("");
        let Some((tmpl, after)) = tag(set, "SegmentTemplate") else {
            continue;
        };
        let timescale = attr(tmpl, "timescale")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let start_number: u64 = attr(tmpl, "startNumber")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let media = attr(tmpl, "media")?;
        let init = attr(tmpl, "initialization").map(|i| template(i, rep_id, None, None));
        let timeline = after.split("</SegmentTimeline>").next().unwrap_or("");
        let mut segments = Vec::new();
        let mut t = 0u64;
        let mut number = start_number;
        let mut rest = timeline;
        while let Some((s, after)) = tag(rest, "S") {
            rest = after;
            if let Some(start) = attr(s, "t").and_then(|v| v.parse().ok()) {
                t = start;
            }
            let d: u64 = attr(s, "d")?.parse().ok()?;
            let r: u64 = attr(s, "r").and_then(|v| v.parse().ok()).unwrap_or(0);
            for _ in 0..=r.min(10_000) {
                segments.push((t, template(media, rep_id, Some(t), Some(number))));
                t += d;
                number += 1;
            }
        }
        tracks.push(DashTrack {
            init,
            timescale,
            segments,
        });
    }
    Some(Mpd {
        minimum_update_period,
        tracks,
    })
}

/// Resolves a playlist-relative `uri` against the directory of `base` (a path).
pub fn resolve(base: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ferrocast_playlist() {
        let pl = parse_m3u8(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
             #EXTINF:2.000,\n41.ts\n#EXTINF:2.000,\n42.ts\n",
        )
        .unwrap();
        assert_eq!(pl.media_sequence, 41);
        assert_eq!(pl.uris, ["41.ts", "42.ts"]);
        assert_eq!(pl.target, Duration::from_secs(2));
        assert_eq!(resolve("/live/a/index.m3u8", "42.ts"), "/live/a/42.ts");
        assert_eq!(resolve("/hls/a.m3u8", "/x/1.ts"), "/x/1.ts");
    }

    #[test]
    fn reads_an_nginx_rtmp_mpd() {
        let mpd = parse_mpd(
            r#"<?xml version="1.0"?>
<MPD type="dynamic" xmlns="urn:mpeg:dash:schema:mpd:2011" minimumUpdatePeriod="PT5S" minBufferTime="PT2S">
  <Period start="PT0S" id="dash">
    <AdaptationSet id="1" segmentAlignment="true">
      <Representation id="bench_H264" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="1">
        <SegmentTemplate presentationTimeOffset="0" timescale="1000"
            media="bench-$Time$.m4v" initialization="bench-init.m4v">
          <SegmentTimeline>
             <S t="0" d="2000"/>
             <S t="2000" d="2000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"#,
        )
        .unwrap();
        assert_eq!(mpd.minimum_update_period, Some(Duration::from_secs(5)));
        assert_eq!(mpd.tracks.len(), 1);
        assert_eq!(mpd.tracks[0].init.as_deref(), Some("bench-init.m4v"));
        assert_eq!(
            mpd.tracks[0].segments,
            [(0, "bench-0.m4v".into()), (2000, "bench-2000.m4v".into())]
        );
    }

    #[test]
    fn reads_a_ferrocast_mpd() {
        let mpd = parse_mpd(
            r#"<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT2S">
  <Period id="7" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="90000" presentationTimeOffset="0" initialization="init-v-7.mp4" media="v-7-$Time$.m4s">
        <SegmentTimeline>
          <S t="180000" d="180000" r="1"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v7" codecs="avc1" width="1" height="1" sar="1:1" bandwidth="1"/>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="und">
      <SegmentTemplate timescale="44100" presentationTimeOffset="0" initialization="init-a-7.mp4" media="a-7-$Time$.m4s">
        <SegmentTimeline>
          <S t="88200" d="88200"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a7" codecs="mp4a.40.2" audioSamplingRate="44100" bandwidth="1"/>
    </AdaptationSet>
  </Period>
</MPD>"#,
        )
        .unwrap();
        assert_eq!(mpd.minimum_update_period, Some(Duration::from_secs(2)));
        assert_eq!(
            mpd.tracks[0].segments,
            [
                (180_000, "v-7-180000.m4s".into()),
                (360_000, "v-7-360000.m4s".into())
            ]
        );
        assert_eq!(mpd.tracks[1].timescale, 44100);
        assert_eq!(mpd.tracks[1].init.as_deref(), Some("init-a-7.mp4"));
        assert_eq!(xs_duration("PT1M2.5S"), Some(Duration::from_millis(62_500)));
    }
}
