use crate::*;
use bytes::Bytes;
use hub::{Event, Hub, HubConfig, PublisherMeta};
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec};
use mp4_atom::{Any, Decode, TrunSamples};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const AVCC: &[u8] = include_bytes!("../../../testdata/h264-320x240-baseline.avcc");
const AVCC_720P: &[u8] = include_bytes!("../../../testdata/h264-1280x720-high.avcc");
const ASC: &[u8] = include_bytes!("../../../testdata/aac-48k-stereo.asc");
const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");
/// 25 fps.
const FRAME: i64 = 3600;
const MS: i64 = 90;

fn info_with(avcc: &'static [u8]) -> MediaInfo {
    MediaInfo {
        video_metadata: None,
        video: Some(VideoCodec::H264(
            AvcConfig::parse(Bytes::from_static(avcc)).unwrap(),
        )),
        audio: Some(AudioCodec::Aac(
            AacConfig::parse(Bytes::from_static(ASC)).unwrap(),
        )),
        framerate: Some(25.0),
    }
}

fn info() -> MediaInfo {
    info_with(AVCC)
}

fn tracks(session: u64) -> Event {
    Event::Tracks {
        info: Arc::new(info()),
        session,
    }
}

/// Synthetic video frame `i`, keyframe every `gop` frames, PTS one frame after DTS.
fn video(i: i64, gop: i64, base: i64) -> Frame {
    let key = i % gop == 0;
    let nal: &'static [u8] = if key {
        &[0, 0, 0, 2, 0x65, 0x88]
    } else {
        &[0, 0, 0, 2, 0x41, 0x9a]
    };
    Frame {
        track: TrackKind::Video,
        dts: base + i * FRAME,
        pts: base + i * FRAME + FRAME,
        keyframe: key,
        payload: Bytes::from_static(nal),
    }
}

/// AAC frame `n` at 48 kHz with RTMP's millisecond rounding (21 or 22 ms apart).
fn audio(n: i64, base: i64) -> Frame {
    let ms = n * 1024 * 1000 / 48_000;
    Frame {
        track: TrackKind::Audio,
        dts: base + ms * MS,
        pts: base + ms * MS,
        keyframe: true,
        payload: Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
    }
}

/// `secs` of interleaved video (GOP `gop`) and audio, in DTS order, from `base`.
fn interleaved(secs: i64, gop: i64, base: i64) -> Vec<Frame> {
    let mut frames: Vec<Frame> = (0..secs * 25).map(|i| video(i, gop, base)).collect();
    frames.extend((0..secs * 48_000 / 1024).map(|n| audio(n, base)));
    frames.sort_by_key(|f| f.dts);
    frames
}

fn segments(out: &[Output], track: TrackKind) -> Vec<MediaSegment> {
    out.iter()
        .filter_map(|o| match o {
            Output::Segment(s) if s.track == track => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// A segment's pieces as one buffer, as a player receives it.
fn joined(seg: &MediaSegment) -> Vec<u8> {
    seg.data.concat()
}

/// (tfdt, sample durations, sync flags) as mp4-atom reads them back.
fn read_back(seg: &MediaSegment) -> (u64, Vec<u32>, Vec<bool>) {
    let whole = joined(seg);
    let mut buf: &[u8] = &whole;
    let mut moof = None;
    while !buf.is_empty() {
        if let Any::Moof(m) = Any::decode(&mut buf).expect("mp4-atom decodes the segment") {
            moof = Some(m);
        }
    }
    let moof = moof.expect("a moof");
    let traf = &moof.traf[0];
    let TrunSamples::Explicit(entries) = &traf.trun[0].samples else {
        panic!("explicit trun")
    };
    (
        traf.tfdt.as_ref().unwrap().base_media_decode_time,
        entries.iter().map(|e| e.duration.unwrap()).collect(),
        entries
            .iter()
            .map(|e| e.flags.unwrap() == fmp4::SYNC_SAMPLE_FLAGS)
            .collect(),
    )
}

fn run(frames: impl IntoIterator<Item = Frame>, seg: &mut Segmenter, out: &mut Vec<Output>) {
    for f in frames {
        out.extend(seg.push(Event::Frame(f)));
    }
}

#[test]
fn segments_cut_on_keyframes_with_aligned_audio_and_continuous_tfdt() {
    let mut seg = Segmenter::new(Duration::from_secs(2), 1 << 20, 100);
    let mut out = seg.push(tracks(1));
    run(interleaved(12, 30, 0), &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    let Some(Output::Period(p)) = out.first() else {
        panic!("the period comes first: {out:?}")
    };
    assert_eq!((p.id, p.start), (100, 0));
    let avc = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
    assert_eq!(p.video.as_ref().unwrap().codecs, avc.codec_string());
    let v = segments(&out, TrackKind::Video);
    let a = segments(&out, TrackKind::Audio);
    // GOP 1.2 s, target 2 s: cuts at 2.4, 4.8, 7.2, 9.6, then the End at 12 s.
    assert_eq!(v.len(), 5);
    assert_eq!(a.len(), 5);
    let mut video_samples = 0;
    for (n, s) in v.iter().enumerate() {
        let (tfdt, durations, sync) = read_back(s);
        assert_eq!(tfdt, s.time, "tfdt is the segment time");
        assert_eq!(
            durations.iter().map(|&d| u64::from(d)).sum::<u64>(),
            s.duration
        );
        assert_eq!(durations.len(), s.samples);
        assert!(sync[0], "segment {n} starts with a sync sample");
        assert_eq!(sync.iter().filter(|&&k| k).count(), s.samples.div_ceil(30));
        video_samples += s.samples;
        if n + 1 < v.len() {
            assert_eq!(s.time + s.duration, v[n + 1].time, "tfdt continuity");
            assert_eq!(s.duration, 216_000, "2.4 s at 90 kHz");
        }
    }
    assert_eq!(video_samples, 300);
    assert_eq!(v.last().map(|s| s.time + s.duration), Some(12 * 90_000));
    let mut audio_samples = 0;
    for (n, s) in a.iter().enumerate() {
        let (tfdt, durations, _) = read_back(s);
        assert_eq!(tfdt, s.time);
        assert!(durations.iter().all(|&d| d == 1024), "exact AAC cadence");
        assert_eq!(s.duration, 1024 * s.samples as u64);
        audio_samples += s.samples;
        if n + 1 < a.len() {
            assert_eq!(s.time + s.duration, a[n + 1].time, "audio tfdt continuity");
        }
        // Aligned with video: both start within one AAC frame of each other.
        let video_start_48k = v[n].time * 48_000 / 90_000;
        assert!(
            s.time.abs_diff(video_start_48k) <= 1024,
            "audio segment {n} at {} vs video at {video_start_48k}",
            s.time
        );
    }
    assert_eq!(audio_samples, (12 * 48_000 / 1024) as usize);
    assert_eq!(seg.encode_errors(), 0);
}

#[test]
fn nothing_before_the_first_keyframe_and_timeline_starts_at_zero() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    seg.push(tracks(1));
    let mut out = Vec::new();
    // Starts mid-GOP at 50 s on the publisher's clock.
    run(
        (5..80).map(|i| video(i, 25, 50 * 90_000)),
        &mut seg,
        &mut out,
    );
    let v = segments(&out, TrackKind::Video);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].time, 0, "output timeline starts at 0");
    assert_eq!(v[0].samples, 25);
}

#[test]
fn republish_with_same_tracks_continues_the_period_and_timeline() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    let mut out = seg.push(tracks(1));
    run(interleaved(4, 25, 90_000 * 30), &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    out.extend(seg.push(tracks(2)));
    run(interleaved(4, 25, 0), &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    let periods = out
        .iter()
        .filter(|o| matches!(o, Output::Period(_)))
        .count();
    assert_eq!(periods, 1, "same init segments: one period");
    for track in [TrackKind::Video, TrackKind::Audio] {
        let s = segments(&out, track);
        assert!(s.len() >= 7, "{track:?}: {}", s.len());
        for w in s.windows(2) {
            assert_eq!(w[0].time + w[0].duration, w[1].time, "{track:?} continuity");
        }
    }
}

#[test]
fn republish_with_new_tracks_starts_a_new_period_at_the_previous_end() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 7);
    let mut out = seg.push(tracks(1));
    run(interleaved(3, 25, 0), &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    out.extend(seg.push(Event::Tracks {
        info: Arc::new(info_with(AVCC_720P)),
        session: 2,
    }));
    run(interleaved(3, 25, 0), &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    let periods: Vec<Arc<PeriodInfo>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Period(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(periods.len(), 2);
    assert_eq!((periods[0].id, periods[1].id), (7, 8));
    assert_eq!(periods[1].video.as_ref().unwrap().width, 1280);
    let v = segments(&out, TrackKind::Video);
    let first_of_second = v.iter().find(|s| s.period == 8).unwrap();
    assert_eq!(periods[1].start, 3 * 90_000);
    assert_eq!(first_of_second.time, 3 * 90_000);

    // The MPD lists both periods; the second starts where the first's timeline ends.
    let mut m = Manifest::new(10, 0);
    feed(&mut m, out, 1_000_000);
    let text = render(&m).unwrap();
    let mpd = dash_mpd_core::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(mpd.periods.len(), 2, "{text}");
    assert_eq!(mpd.periods[0].start, Some(Duration::ZERO));
    assert_eq!(mpd.periods[1].start, Some(Duration::from_secs(3)));
    let st = mpd.periods[1].adaptations[0]
        .SegmentTemplate
        .as_ref()
        .unwrap();
    assert_eq!(st.presentationTimeOffset, Some(270_000));
    assert_eq!(st.initialization.as_deref(), Some("init-v-8.mp4"));
    assert_eq!(
        mpd.periods[1].adaptations[0].representations[0].width,
        Some(1280)
    );
}

fn timing() -> MpdTiming {
    MpdTiming {
        minimum_update_period: Duration::from_secs(2),
        suggested_presentation_delay: Duration::from_secs(6),
        min_buffer_time: Duration::from_secs(2),
        part_duration: Some(Duration::from_millis(500)),
    }
}

const CLOCK: MpdClock<'static> = MpdClock {
    time_url: "/time",
    now_ms: 0,
};

/// The generic MPD with the clock at `/time` and the server time 0.
fn render(m: &Manifest) -> Option<String> {
    let clock = MpdClock {
        time_url: "/time",
        now_ms: 0,
    };
    m.render(&timing(), MpdClient::Generic, &clock)
}

fn feed(m: &mut Manifest, out: Vec<Output>, now_ms: i64) {
    for o in out {
        match o {
            Output::Period(p) => m.start_period(p, now_ms),
            Output::Chunk(c) => m.push_chunk(c),
            Output::Part(p) => m.push_part(p, now_ms),
            Output::Segment(s) => m.push(s, now_ms),
        }
    }
}

#[test]
fn mpd_parses_with_dash_mpd_core_and_has_what_players_need() {
    let mut seg = Segmenter::new(Duration::from_secs(2), 1 << 20, 42);
    let mut out = seg.push(tracks(1));
    run(interleaved(20, 50, 0), &mut seg, &mut out);
    let mut m = Manifest::new(4, 2);
    assert!(render(&m).is_none(), "nothing before the first segment");
    // The first segment (0..2 s) completes at wall clock 1_800_000_002_000 ms.
    feed(&mut m, out, 1_800_000_002_000);
    let text = render(&m).unwrap();
    let mpd = dash_mpd_core::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(mpd.mpdtype.as_deref(), Some("dynamic"));
    assert_eq!(
        mpd.availabilityStartTime.unwrap().timestamp_millis(),
        1_800_000_000_000
    );
    assert!(mpd.publishTime.is_some());
    assert_eq!(mpd.minimumUpdatePeriod, Some(Duration::from_secs(2)));
    assert_eq!(mpd.suggestedPresentationDelay, Some(Duration::from_secs(6)));
    assert_eq!(mpd.minBufferTime, Some(Duration::from_secs(2)));
    // The longest segment is an audio one, up to a frame over 2 s.
    let max = mpd.maxSegmentDuration.unwrap();
    assert!(
        max >= Duration::from_secs(2) && max <= Duration::from_millis(2022),
        "{max:?}"
    );
    // 19 s of video make 9 complete 2 s segments; 4 are listed.
    assert_eq!(mpd.timeShiftBufferDepth, Some(Duration::from_secs(8)));
    assert!(mpd.mediaPresentationDuration.is_none());
    // The HTTP clock first, the inline server time as the fallback.
    assert_eq!(mpd.UTCTiming.len(), 2);
    assert_eq!(
        mpd.UTCTiming[0].schemeIdUri,
        "urn:mpeg:dash:utc:http-iso:2014"
    );
    assert_eq!(mpd.UTCTiming[0].value.as_deref(), Some("/time"));
    assert_eq!(
        mpd.UTCTiming[1].schemeIdUri,
        "urn:mpeg:dash:utc:direct:2014"
    );
    assert_eq!(
        mpd.UTCTiming[1].value.as_deref(),
        Some("1970-01-01T00:00:00.000Z")
    );
    assert_eq!(mpd.periods.len(), 1);
    let p = &mpd.periods[0];
    assert_eq!(p.id.as_deref(), Some("42"));
    assert_eq!(p.adaptations.len(), 2);
    let (v, a) = (&p.adaptations[0], &p.adaptations[1]);
    assert_eq!(v.contentType.as_deref(), Some("video"));
    assert_eq!(v.mimeType.as_deref(), Some("video/mp4"));
    let vr = &v.representations[0];
    let avc = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
    assert_eq!(vr.codecs.as_deref(), Some(avc.codec_string().as_str()));
    assert_eq!((vr.width, vr.height), (Some(320), Some(240)));
    assert_eq!(vr.frameRate.as_deref(), Some("25"));
    assert!(vr.bandwidth.unwrap() > 0);
    let st = v.SegmentTemplate.as_ref().unwrap();
    assert_eq!(st.timescale, Some(90_000));
    assert_eq!(st.media.as_deref(), Some("v-42-$Time$.m4s"));
    let tl = &st.SegmentTimeline.as_ref().unwrap().segments;
    // One run: t=5*2 s, d=2 s, repeated 3 more times.
    assert_eq!(tl.len(), 1, "{text}");
    assert_eq!(
        (tl[0].t, tl[0].d, tl[0].r),
        (Some(5 * 180_000), 180_000, Some(3))
    );
    assert_eq!(a.contentType.as_deref(), Some("audio"));
    let ar = &a.representations[0];
    assert_eq!(ar.codecs.as_deref(), Some("mp4a.40.2"));
    assert_eq!(ar.audioSamplingRate.as_deref(), Some("48000"));
    let at = a.SegmentTemplate.as_ref().unwrap();
    assert_eq!(at.timescale, Some(48_000));
    let s = &at.SegmentTimeline.as_ref().unwrap().segments;
    let listed: u64 = s.iter().map(|s| s.d * (1 + s.r.unwrap_or(0) as u64)).sum();
    // Audio durations are real (AAC frames), within a frame of each 2 s span.
    assert!(listed.abs_diff(4 * 2 * 48_000) <= 4 * 1024, "{text}");

    // Listed and expired segments are served; older ones are not.
    assert!(m.segment(TrackKind::Video, 42, 8 * 180_000).is_some());
    assert!(
        m.segment(TrackKind::Video, 42, 3 * 180_000).is_some(),
        "expired, kept"
    );
    assert!(m.segment(TrackKind::Video, 42, 2 * 180_000).is_none());
    assert!(m.segment(TrackKind::Video, 43, 8 * 180_000).is_none());
    assert!(m.init(TrackKind::Audio, 42).is_some());
    assert!(m.init(TrackKind::Audio, 41).is_none());

    m.end(1_800_000_030_000);
    let text = render(&m).unwrap();
    let mpd = dash_mpd_core::parse(&text).unwrap();
    assert!(mpd.minimumUpdatePeriod.is_none());
    assert_eq!(mpd.mediaPresentationDuration, Some(Duration::from_secs(18)));
}

#[test]
fn iso8601_formats() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(iso8601(1_795_268_951_123), "2026-11-21T13:49:11.123Z");
}

fn meta() -> PublisherMeta {
    PublisherMeta {
        protocol: "test",
        ..PublisherMeta::default()
    }
}

async fn write_frames(publisher: &hub::Publisher, range: std::ops::Range<i64>, gop: i64) {
    for i in range {
        publisher.write(video(i, gop, 0));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn config() -> DashConfig {
    DashConfig {
        segment_duration: Duration::from_secs(1),
        window: 3,
        end_grace: Duration::from_secs(10),
        linger: Duration::from_secs(60),
        ..DashConfig::default()
    }
}

/// A hub and a DASH service running on it with [`config`].
struct Running {
    hub: Hub,
    dash: DashService,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start() -> Running {
        let hub = Hub::new(HubConfig::default());
        let dash = DashService::new(hub.clone(), config());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(dash.clone().run(shutdown.clone()));
        tokio::task::yield_now().await;
        Running {
            hub,
            dash,
            shutdown,
            run,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn service_serves_mpd_ends_forgets_and_obeys_stop_and_refresh() {
    let Running {
        hub,
        dash,
        shutdown,
        run,
    } = Running::start().await;
    // Decided at each publish: none yet.
    dash.set_enabled(Arc::new(|code: &str| code != "off"));

    let publisher = hub.publish("cam", meta()).unwrap();
    let off = hub.publish("off", meta()).unwrap();
    off.announce(info());
    publisher.announce(info());
    write_frames(&publisher, 0..25, 25).await;
    assert!(
        dash.mpd("cam", MpdClient::Generic, &CLOCK).is_none(),
        "no segment complete yet"
    );
    write_frames(&publisher, 25..26, 25).await;
    let text = dash
        .mpd("cam", MpdClient::Generic, &CLOCK)
        .expect("MPD after the first segment");
    let mpd = dash_mpd_core::parse(&text).unwrap();
    let period: u64 = mpd.periods[0].id.as_deref().unwrap().parse().unwrap();
    assert!(dash.init("cam", TrackKind::Video, period).is_some());
    assert!(dash.segment("cam", TrackKind::Video, period, 0).is_some());
    assert!(
        dash.mpd("off", MpdClient::Generic, &CLOCK).is_none(),
        "the predicate keeps DASH off"
    );

    write_frames(&publisher, 26..201, 25).await;
    assert!(
        dash.segment("cam", TrackKind::Video, period, 0).is_none(),
        "slid out"
    );
    assert_eq!(dash.codes(), ["cam"]);

    dash.stop("cam");
    assert!(dash.mpd("cam", MpdClient::Generic, &CLOCK).is_none());
    write_frames(&publisher, 201..251, 25).await;
    assert!(
        dash.mpd("cam", MpdClient::Generic, &CLOCK).is_none(),
        "a stopped stream stays off"
    );
    dash.refresh("cam");
    write_frames(&publisher, 251..302, 25).await;
    assert!(
        dash.mpd("cam", MpdClient::Generic, &CLOCK).is_some(),
        "refresh started a new task"
    );

    // Gone: the presentation ends after the grace, and is forgotten after the linger.
    drop(publisher);
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mpd = dash_mpd_core::parse(&dash.mpd("cam", MpdClient::Generic, &CLOCK).unwrap()).unwrap();
    assert!(mpd.mediaPresentationDuration.is_some() && mpd.minimumUpdatePeriod.is_none());
    assert!(dash.stats("cam").unwrap().ended);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(dash.mpd("cam", MpdClient::Generic, &CLOCK).is_none());
    shutdown.cancel();
    run.await.unwrap();
    drop(off);
}

#[tokio::test(start_paused = true)]
async fn finish_ends_every_presentation_at_once_and_keeps_serving_it() {
    let Running {
        hub,
        dash,
        shutdown,
        run,
    } = Running::start().await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..40, 25).await;
    let live = dash_mpd_core::parse(&dash.mpd("cam", MpdClient::Generic, &CLOCK).unwrap()).unwrap();
    assert!(live.minimumUpdatePeriod.is_some());

    // The publisher is still there: shutdown must not wait for end_grace (10 s).
    dash.finish();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ended =
        dash_mpd_core::parse(&dash.mpd("cam", MpdClient::Generic, &CLOCK).unwrap()).unwrap();
    assert!(ended.minimumUpdatePeriod.is_none());
    assert_eq!(
        ended.mediaPresentationDuration,
        Some(Duration::from_millis(1600)),
        "the open segment is flushed"
    );
    write_frames(&publisher, 40..100, 25).await;
    let later = dash.mpd("cam", MpdClient::Generic, &CLOCK).unwrap();
    assert_eq!(
        dash_mpd_core::parse(&later)
            .unwrap()
            .mediaPresentationDuration,
        ended.mediaPresentationDuration,
        "nothing is added after the end"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        dash.mpd("cam", MpdClient::Generic, &CLOCK).is_some(),
        "served until the shutdown"
    );
    shutdown.cancel();
    run.await.unwrap();
}

/// Minimal FLV reader, as in the hls tests (rtmp::flv is another crate's concern).
fn flv_frames(offset_ms: i64) -> (MediaInfo, Vec<Frame>) {
    let u24 = |b: &[u8]| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
    let mut pos = 13;
    let mut info = MediaInfo::default();
    let mut frames = Vec::new();
    while pos + 11 <= FLV.len() {
        let len = u24(&FLV[pos + 1..]);
        let ts = u24(&FLV[pos + 4..]) as i64 + offset_ms;
        let body = Bytes::from_static(&FLV[pos + 11..pos + 11 + len]);
        let kind = FLV[pos];
        pos += 15 + len;
        match (kind, body.get(1)) {
            (9, Some(0)) => {
                info.video = Some(VideoCodec::H264(AvcConfig::parse(body.slice(5..)).unwrap()))
            }
            (9, Some(1)) => {
                let cts = ((u24(&body[2..]) as i32) << 8 >> 8) as i64;
                frames.push(Frame {
                    track: TrackKind::Video,
                    dts: media::ms_to_ticks(ts),
                    pts: media::ms_to_ticks(ts + cts),
                    keyframe: body[0] >> 4 == 1,
                    payload: body.slice(5..),
                });
            }
            (8, Some(0)) => {
                info.audio = Some(AudioCodec::Aac(AacConfig::parse(body.slice(2..)).unwrap()))
            }
            (8, Some(1)) => frames.push(Frame {
                track: TrackKind::Audio,
                dts: media::ms_to_ticks(ts),
                pts: media::ms_to_ticks(ts),
                keyframe: true,
                payload: body.slice(2..),
            }),
            _ => {}
        }
    }
    (info, frames)
}

/// ffmpeg decodes init + every segment of each track of a real stream without a word.
#[test]
#[allow(clippy::print_stderr)]
fn ffmpeg_decodes_real_segments_cleanly() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("note: ffmpeg not on PATH; skipping the external check");
        return;
    }
    let (info, mut frames) = flv_frames(0);
    frames.extend(flv_frames(1100).1);
    frames.extend(flv_frames(2200).1);
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    let mut out = seg.push(Event::Tracks {
        info: Arc::new(info),
        session: 1,
    });
    run(frames, &mut seg, &mut out);
    out.extend(seg.push(Event::End));
    let Some(Output::Period(p)) = out.first().cloned() else {
        panic!("period first")
    };
    for (track, desc, codec) in [
        (TrackKind::Video, p.video.clone().unwrap(), "h264"),
        (TrackKind::Audio, p.audio.clone().unwrap(), "aac"),
    ] {
        let segs = segments(&out, track);
        assert!(segs.len() >= 2, "{track:?}");
        let mut file = desc.init.to_vec();
        for s in &segs {
            file.extend_from_slice(&joined(s));
        }
        let path =
            std::env::temp_dir().join(format!("ferrocast-dash-{}-{codec}.mp4", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let decode = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-show_streams", "-of", "compact"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{codec}: {}",
            String::from_utf8_lossy(&decode.stderr)
        );
        let stdout = String::from_utf8_lossy(&probe.stdout);
        assert!(stdout.contains(&format!("codec_name={codec}")), "{stdout}");
    }
}

/// The segment GStreamer's `dashdemux` (1.22) joins a live MPD at: it seeks to
/// `now - suggestedPresentationDelay` with `gst_mpd_client_stream_seek`, whose repeat index is
/// `(ts - S.start + first_S.start) / S.d`. Returns the `$Time$` it requests and `ts`, both in
/// the track timescale (period start and presentationTimeOffset 0).
fn gstreamer_join(text: &str, track: usize, now_ms: i64) -> (u64, u64) {
    let mpd = dash_mpd_core::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ast = mpd.availabilityStartTime.unwrap().timestamp_millis();
    let delay = mpd.suggestedPresentationDelay.unwrap();
    let st = mpd.periods[0].adaptations[track]
        .SegmentTemplate
        .as_ref()
        .unwrap();
    let timescale = st.timescale.unwrap();
    let since_ast_ms = u64::try_from(now_ms - ast).unwrap() - delay.as_millis() as u64;
    let ts = since_ast_ms * timescale / 1000;
    let mut entries = Vec::new(); // (start, d, r)
    let mut start = 0;
    for s in &st.SegmentTimeline.as_ref().unwrap().segments {
        if let Some(t) = s.t.filter(|t| *t > 0) {
            start = t;
        }
        let r = s.r.unwrap_or(0) as u64;
        entries.push((start, s.d, r));
        start += s.d * (r + 1);
    }
    let first = entries[0].0;
    let &(start, d, _) = entries
        .iter()
        .find(|(start, d, r)| ts < start + d * (r + 1))
        .expect("ts before the end of the timeline");
    // Unsigned wrap-around as in C: (ts - start) may be "negative".
    let repeat = ts.wrapping_sub(start).wrapping_add(first) / d;
    (start + repeat * d, ts)
}

#[test]
fn gstreamer_dashdemux_joins_the_live_window_at_a_listed_segment() {
    let mut seg = Segmenter::new(Duration::from_secs(2), 1 << 20, 42);
    let mut out = seg.push(tracks(1));
    run(interleaved(60, 50, 0), &mut seg, &mut out);
    let mut m = Manifest::new(6, 2);
    // Media time 0 is wall clock 1_800_000_000_000; 29 segments of 2 s: the window holds
    // 46..58 s and the player asks half a second after the newest segment was cut.
    feed(&mut m, out, 1_800_000_002_000);
    let now = 1_800_000_058_500;
    let clock = MpdClock {
        time_url: "http://127.0.0.1:8080/time",
        now_ms: now,
    };
    let generic = m.render(&timing(), MpdClient::Generic, &clock).unwrap();
    let gst = m.render(&timing(), MpdClient::GStreamer, &clock).unwrap();
    let listed_video = |text: &str| -> Vec<u64> {
        let mpd = dash_mpd_core::parse(text).unwrap();
        let st = mpd.periods[0].adaptations[0]
            .SegmentTemplate
            .clone()
            .unwrap();
        let mut t = 0;
        let mut all = Vec::new();
        for s in st.SegmentTimeline.unwrap().segments {
            t = s.t.unwrap_or(t);
            for _ in 0..=s.r.unwrap_or(0) {
                all.push(t);
                t += s.d;
            }
        }
        all
    };
    let window: Vec<u64> = (23..29).map(|i| i * 180_000).collect();
    assert_eq!(listed_video(&generic), window, "{generic}");

    // The plain window sends GStreamer 46 s into the future (the bug this works around).
    let (time, ts) = gstreamer_join(&generic, 0, now);
    assert!(time > ts + 40 * 90_000, "{time} vs {ts}");

    // Its own MPD: one S from 0 to the window, then the window; the delay fits the window.
    let mpd = dash_mpd_core::parse(&gst).unwrap_or_else(|e| panic!("{e}\n{gst}"));
    assert!(mpd.suggestedPresentationDelay.unwrap() <= Duration::from_secs(10));
    assert_eq!(mpd.timeShiftBufferDepth, Some(Duration::from_secs(12)));
    assert_eq!(listed_video(&gst)[1..], window[..], "{gst}");
    assert_eq!(listed_video(&gst)[0], 0, "{gst}");
    for (track, timescale) in [(0, 90_000), (1, 48_000)] {
        let (time, ts) = gstreamer_join(&gst, track, now);
        let listed = listed_video(&gst);
        if track == 0 {
            assert!(window.contains(&time), "video joins at {time}:\n{gst}");
        }
        assert!(
            time <= ts && ts - time < 3 * timescale,
            "{track}: {time} {ts}"
        );
        assert!(
            time >= window[0] * timescale / 90_000,
            "{track} joins before the window at {time} ({listed:?})"
        );
    }
    // Everything but the timelines' first S and the delay is the same document.
    assert_eq!(
        gst.lines().count(),
        generic.lines().count() + 2,
        "{generic}\n{gst}"
    );
}

fn parts(out: &[Output], track: TrackKind) -> Vec<MediaPart> {
    out.iter()
        .filter_map(|o| match o {
            Output::Part(p) if p.track == track => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Frames of `secs` seconds (GOP of 2 s) through a segmenter publishing 500 ms parts.
fn with_parts(secs: i64) -> Vec<Output> {
    let mut seg =
        Segmenter::new(Duration::from_secs(2), 1 << 20, 1).with_parts(Duration::from_millis(500));
    let mut out = seg.push(tracks(1));
    run(interleaved(secs, 50, 0), &mut seg, &mut out);
    out.extend(seg.flush());
    out
}

#[test]
fn parts_make_up_their_segment_and_stay_within_the_part_target() {
    let out = with_parts(7);
    for (track, limit) in [(TrackKind::Video, 45_000), (TrackKind::Audio, 24_000)] {
        let segs = segments(&out, track);
        let parts = parts(&out, track);
        assert!(segs.len() >= 3, "{track:?}: {} segments", segs.len());
        for s in &segs {
            let mine: Vec<_> = parts
                .iter()
                .filter(|p| p.period == s.period && p.segment == s.time)
                .collect();
            assert!(
                mine.len() >= 2,
                "{track:?} segment at {}: {} parts",
                s.time,
                mine.len()
            );
            for (i, p) in mine.iter().enumerate() {
                assert_eq!(p.index as usize, i, "parts in order");
                assert!(
                    p.duration <= limit,
                    "{track:?} part of {} ticks",
                    p.duration
                );
            }
            assert!(
                mine[0].independent,
                "a segment starts with an independent part"
            );
            assert_eq!(mine[0].time, s.time);
            assert_eq!(mine.iter().map(|p| p.duration).sum::<u64>(), s.duration);
            // The segment is its parts behind one styp, byte for byte.
            let styp = fmp4::styp();
            let whole = joined(s);
            assert_eq!(&whole[..styp.len()], &styp[..]);
            let parts: Vec<u8> = mine.iter().flat_map(|p| p.data.concat()).collect();
            assert_eq!(&whole[styp.len()..], &parts[..]);
        }
    }
    // Each part is the chunks published before it, in order and the very same buffers; a
    // video chunk is one frame, an audio chunk at most 100 ms.
    for (track, frames_per_chunk) in [(TrackKind::Video, 1..=1), (TrackKind::Audio, 1..=5)] {
        let mut chunks = Vec::new();
        for o in &out {
            match o {
                Output::Chunk(c) if c.track == track => chunks.push(c.clone()),
                Output::Part(p) if p.track == track => {
                    assert_eq!(p.data.len(), chunks.len(), "{track:?} part {}", p.index);
                    for (c, d) in chunks.drain(..).zip(&p.data) {
                        assert_eq!(
                            (c.period, c.segment, c.part),
                            (p.period, p.segment, p.index)
                        );
                        assert_eq!(c.data.as_ptr(), d.as_ptr(), "a chunk is not copied");
                        let Any::Moof(moof) = Any::decode(&mut &c.data[..]).expect("moof") else {
                            panic!("a chunk starts with its moof")
                        };
                        let samples: usize = moof.traf[0]
                            .trun
                            .iter()
                            .map(|t| match &t.samples {
                                TrunSamples::Explicit(e) => e.len(),
                                _ => 0,
                            })
                            .sum();
                        assert!(frames_per_chunk.contains(&samples), "{track:?}: {samples}");
                    }
                }
                _ => {}
            }
        }
        assert!(chunks.is_empty(), "{track:?}: chunks of no part");
    }
    // A part never precedes the period it belongs to.
    let first_period = out.iter().position(|o| matches!(o, Output::Period(_)));
    let first_part = out.iter().position(|o| matches!(o, Output::Part(_)));
    assert!(first_period < first_part);
}

#[test]
fn a_finished_segment_is_one_buffer_and_its_parts_are_slices_of_it() {
    let out = with_parts(7);
    let m = manifest_of(out.clone(), 10);
    for track in [TrackKind::Video, TrackKind::Audio] {
        let segs = segments(&out, track);
        // The parts of the last few segments are kept; those are the ones re-pointed.
        for s in segs.iter().rev().take(2) {
            let served = m.segment(track, s.period, s.time).expect("stored");
            assert_eq!(served.len(), 1, "{track:?}: one buffer");
            let whole = &served[0];
            assert_eq!(whole[..], joined(s)[..], "{track:?}: the pieces, in order");
            let range = whole.as_ptr() as usize..whole.as_ptr() as usize + whole.len();
            let mut at = fmp4::styp().len();
            for p in parts(&out, track)
                .iter()
                .filter(|p| p.period == s.period && p.segment == s.time)
            {
                let kept = m.part(track, s.period, s.time, p.index).expect("part kept");
                assert_eq!(kept.len(), 1, "{track:?} part {}: one slice", p.index);
                assert!(
                    range.contains(&(kept[0].as_ptr() as usize)),
                    "{track:?} part {} shares the segment's memory",
                    p.index
                );
                assert_eq!(kept[0][..], whole[at..at + kept[0].len()]);
                at += kept[0].len();
            }
            assert_eq!(at, whole.len(), "{track:?}: the parts make up the segment");
        }
    }
}

fn manifest_of(out: Vec<Output>, window: usize) -> Manifest {
    let mut m = Manifest::new(window, EXPIRED_SEGMENTS_KEPT);
    feed(&mut m, out, 1_000_000);
    m
}

const LL: HlsTiming = HlsTiming {
    segment_duration: Duration::from_secs(2),
    part_duration: Some(Duration::from_millis(500)),
};

#[test]
fn ll_hls_playlists_list_parts_hint_the_next_and_answer_blocking_reloads() {
    // 7 s: three finished segments and the open one's parts (flush not called).
    let mut seg =
        Segmenter::new(Duration::from_secs(2), 1 << 20, 1).with_parts(Duration::from_millis(500));
    let mut out = seg.push(tracks(1));
    run(interleaved(7, 50, 0), &mut seg, &mut out);
    let m = manifest_of(out, 6);

    let master = m.hls_multivariant().unwrap();
    assert!(
        master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""),
        "{master}"
    );
    assert!(master.contains("URI=\"cmaf-a.m3u8\""), "{master}");
    assert!(master.contains("RESOLUTION=320x240"), "{master}");
    assert!(
        master.contains("CODECS=\"avc1.42c00d,mp4a.40.2\"") || master.contains(",mp4a.40.2\""),
        "{master}"
    );
    assert!(master.contains("AUDIO=\"audio\"\ncmaf-v.m3u8"), "{master}");

    let v = m
        .hls_media(TrackKind::Video, &LL, &HlsRequest::default())
        .unwrap();
    assert!(v.contains("#EXT-X-VERSION:9"), "{v}");
    assert!(v.contains("#EXT-X-TARGETDURATION:2\n"), "{v}");
    assert!(
        v.contains(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000"
        ),
        "{v}"
    );
    assert!(v.contains("#EXT-X-PART-INF:PART-TARGET=0.500"), "{v}");
    assert!(v.contains("#EXT-X-MAP:URI=\"init-v-1.mp4\""), "{v}");
    assert_eq!(v.matches("#EXTINF:").count(), 3, "{v}");
    assert!(
        v.contains("#EXT-X-PART:DURATION=0.480,URI=\"v-1-0-p0.m4s\",INDEPENDENT=YES"),
        "{v}"
    );
    // The open segment (from 6 s) lists its parts after the last EXTINF, then the hint.
    let open = v.split("v-1-360000.m4s\n").nth(1).unwrap();
    assert!(open.starts_with("#EXT-X-PART:DURATION="), "{v}");
    assert!(
        open.contains("URI=\"v-1-540000-p0.m4s\",INDEPENDENT=YES"),
        "{v}"
    );
    assert!(
        open.trim_end()
            .ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v-1-540000-p2.m4s\""),
        "{v}"
    );

    // What another rendition's report says of this one: the open segment (msn 3), part 1.
    assert_eq!(m.hls_report(TrackKind::Video), Some((3, Some(1))));

    // A ladder's multivariant playlist: two variants sharing this stream's audio.
    let source = m.hls_variant().unwrap();
    let audio = source.audio_group("cmaf-a.m3u8");
    let rung = crate::HlsVariant {
        bandwidth: 400_000,
        video_codecs: Some("avc1.4d401e".into()),
        audio_codecs: Some("mp4a.40.2".into()),
        resolution: Some((160, 120)),
        frame_rate: Some(30.0),
        channels: Some(2),
    };
    let ladder = crate::multivariant(
        &[
            (source, "cmaf-v.m3u8".into()),
            (rung, "../x_120p/cmaf-v.m3u8".into()),
        ],
        audio.as_ref(),
    );
    assert_eq!(
        ladder.matches("#EXT-X-MEDIA:TYPE=AUDIO").count(),
        1,
        "{ladder}"
    );
    assert_eq!(ladder.matches("AUDIO=\"audio\"").count(), 2, "{ladder}");
    assert!(
        ladder.contains(
            "BANDWIDTH=400000,CODECS=\"avc1.4d401e,mp4a.40.2\",RESOLUTION=160x120,\
             FRAME-RATE=30.000,AUDIO=\"audio\"\n../x_120p/cmaf-v.m3u8\n"
        ),
        "{ladder}"
    );

    // Blocking reload: msn 3 is the open segment, with parts 0 and 1 so far.
    let ask = |msn, part| HlsRequest {
        msn: Some(msn),
        part,
        skip: false,
    };
    assert!(m.hls_ready(TrackKind::Video, &ask(2, None)));
    assert!(!m.hls_ready(TrackKind::Video, &ask(3, None)));
    assert!(m.hls_ready(TrackKind::Video, &ask(3, Some(1))));
    assert!(!m.hls_ready(TrackKind::Video, &ask(3, Some(2))));
    assert!(!m.hls_too_far(TrackKind::Video, &ask(4, Some(0))));
    assert!(m.hls_too_far(TrackKind::Video, &ask(5, None)));
    // The hinted part may be waited for; one further ahead may not.
    assert!(m.hls_part_pending(TrackKind::Video, 1, 540_000, 2));
    assert!(!m.hls_part_pending(TrackKind::Video, 1, 540_000, 3));
    assert!(m.part(TrackKind::Video, 1, 540_000, 1).is_some());
    assert!(m.part(TrackKind::Video, 1, 540_000, 2).is_none());
}

#[test]
fn ll_hls_delta_updates_skip_what_is_older_than_can_skip_until() {
    let mut seg =
        Segmenter::new(Duration::from_secs(1), 1 << 20, 1).with_parts(Duration::from_millis(500));
    let mut out = seg.push(tracks(1));
    run(interleaved(20, 25, 0), &mut seg, &mut out);
    let m = manifest_of(out, 30);
    let timing = HlsTiming {
        segment_duration: Duration::from_secs(1),
        ..LL
    };
    let full = m
        .hls_media(TrackKind::Video, &timing, &HlsRequest::default())
        .unwrap();
    let delta = m
        .hls_media(
            TrackKind::Video,
            &timing,
            &HlsRequest {
                skip: true,
                ..HlsRequest::default()
            },
        )
        .unwrap();
    // CAN-SKIP-UNTIL is 6 target durations: 6 s of 19 s listed stay.
    let skipped: usize = delta
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .expect("a skip tag")
        .parse()
        .unwrap();
    assert_eq!(
        full.matches("#EXTINF:").count(),
        delta.matches("#EXTINF:").count() + skipped
    );
    assert!(delta.matches("#EXTINF:").count() >= 6, "{delta}");
    // The media sequence still names the first segment, skipped or not.
    let seq = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(seq(&full), seq(&delta));
}

#[test]
fn ll_hls_directives_parse_as_rfc_8216bis_says() {
    let args = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        HlsRequest::parse(&args(&[("_HLS_msn", "12"), ("_HLS_part", "3"), ("x", "1")])),
        Ok(HlsRequest {
            msn: Some(12),
            part: Some(3),
            skip: false
        })
    );
    assert!(
        HlsRequest::parse(&args(&[("_HLS_skip", "v2")]))
            .unwrap()
            .skip
    );
    assert!(
        !HlsRequest::parse(&args(&[("_HLS_skip", "NO")]))
            .unwrap()
            .skip
    );
    assert!(HlsRequest::parse(&args(&[("_HLS_part", "1")])).is_err());
    assert!(HlsRequest::parse(&args(&[("_HLS_msn", "x")])).is_err());
}

/// The video `SegmentTimeline`'s last `S` of `mpd` as (t, d).
fn last_video_s(mpd: &str) -> (u64, u64) {
    let video = mpd.split("contentType=\"audio\"").next().unwrap();
    let s = video.rsplit("<S t=\"").next().unwrap();
    let (t, rest) = s.split_once('"').unwrap();
    let d = rest
        .split("d=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    (t.parse().unwrap(), d.parse().unwrap())
}

#[test]
fn low_latency_mpd_lists_the_open_segment_available_one_part_in() {
    // 7 s: segments at 0, 2 and 4 s, and the open one from 6 s with parts 0 and 1.
    let mut seg =
        Segmenter::new(Duration::from_secs(2), 1 << 20, 1).with_parts(Duration::from_millis(500));
    let mut out = seg.push(tracks(1));
    run(interleaved(7, 50, 0), &mut seg, &mut out);
    let m = manifest_of(out, 6);
    let ll = m
        .render(&timing(), MpdClient::LowLatency, &CLOCK)
        .expect("LL MPD");
    let generic = render(&m).unwrap();
    for needle in [
        "http://www.dashif.org/guidelines/low-latency-live-v5",
        // Six parts of 500 ms.
        "<Latency target=\"3000\" min=\"1500\" max=\"6000\"/>",
        "suggestedPresentationDelay=\"PT3S\"",
        "minimumUpdatePeriod=\"PT1S\"",
        // Expected 2 s like the segment before it, available 0.5 s after it starts (audio
        // segments hold whole AAC frames: 2.005 s).
        "availabilityTimeOffset=\"1.5\" availabilityTimeComplete=\"false\"",
        "availabilityTimeOffset=\"1.505333\" availabilityTimeComplete=\"false\"",
    ] {
        assert!(ll.contains(needle), "no {needle} in\n{ll}");
    }
    assert_eq!(last_video_s(&ll), (540_000, 180_000));
    // The plain MPD lists finished segments only.
    assert!(!generic.contains("availabilityTimeOffset"), "{generic}");
    assert!(!generic.contains("ServiceDescription"), "{generic}");
    assert!(!generic.contains("t=\"540000\""), "{generic}");
    dash_mpd_core::parse(&ll).expect("the LL MPD parses");
    // Without parts there is no low-latency MPD.
    let whole = MpdTiming {
        part_duration: None,
        ..timing()
    };
    assert!(m.render(&whole, MpdClient::LowLatency, &CLOCK).is_none());
}

/// (period, segment, part) of the part the LL-HLS video playlist of `cam` hints.
async fn hinted_part(dash: &DashService) -> (u64, u64, u32) {
    let HlsAnswer::Playlist(playlist) = dash
        .hls_media("cam", TrackKind::Video, HlsRequest::default())
        .await
    else {
        panic!("no playlist")
    };
    let hint = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"v-"))
        .and_then(|l| l.strip_suffix(".m4s\""))
        .expect("a preload hint");
    let (period, rest) = hint.split_once('-').unwrap();
    let (segment, part) = rest.split_once("-p").unwrap();
    (
        period.parse().unwrap(),
        segment.parse().unwrap(),
        part.parse().unwrap(),
    )
}

/// The part an LL-HLS playlist hints is served while it is written, chunk by chunk, and what
/// was sent is exactly the finished part.
#[tokio::test(start_paused = true)]
async fn the_hinted_part_is_served_chunk_by_chunk_while_it_grows() {
    let Running {
        hub,
        dash,
        shutdown,
        run,
    } = Running::start().await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    write_frames(&publisher, 0..33, 25).await;
    let (period, segment, part) = hinted_part(&dash).await;
    let Some(SegmentBody::Growing(mut growing)) =
        dash.part_body("cam", TrackKind::Video, period, segment, part)
    else {
        panic!("the hinted part is not growing");
    };
    let read = async {
        let mut pieces = Vec::new();
        let mut batches = 0;
        while let Some(more) = growing.next().await.unwrap() {
            pieces.extend(more);
            batches += 1;
        }
        (pieces, batches)
    };
    let ((pieces, batches), ()) = tokio::join!(read, write_frames(&publisher, 33..45, 25));
    assert!(batches >= 3, "chunks came one after the other: {batches}");
    let Some(SegmentBody::Complete(whole)) =
        dash.part_body("cam", TrackKind::Video, period, segment, part)
    else {
        panic!("the part did not finish");
    };
    assert_eq!(pieces.len(), whole.len(), "a chunk per frame");
    assert_eq!(
        pieces.concat(),
        whole.concat(),
        "the chunks make up the part"
    );
    // A part far ahead is not waited for; a stream that stops cuts the part being read.
    assert!(
        dash.part_body("cam", TrackKind::Video, period, segment, part + 9)
            .is_none()
    );
    let (period, segment, part) = hinted_part(&dash).await;
    let Some(SegmentBody::Growing(mut growing)) =
        dash.part_body("cam", TrackKind::Video, period, segment, part)
    else {
        panic!("the hinted part is not growing");
    };
    dash.stop("cam");
    assert!(growing.next().await.is_err());
    shutdown.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_segment_being_written_is_served_part_by_part_and_ends_whole() {
    let Running {
        hub,
        dash,
        shutdown,
        run,
    } = Running::start().await;
    let publisher = hub.publish("cam", meta()).unwrap();
    publisher.announce(info());
    // The first segment (1 s), and 320 ms of the second: its first 250 ms part.
    write_frames(&publisher, 0..33, 25).await;
    let ll = dash
        .mpd("cam", MpdClient::LowLatency, &CLOCK)
        .expect("LL MPD");
    let (open, _) = last_video_s(&ll);
    let period: u64 = dash_mpd_core::parse(&ll).unwrap().periods[0]
        .id
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dash.segment("cam", TrackKind::Video, period, open)
            .is_none()
    );
    let Some(SegmentBody::Growing(mut growing)) =
        dash.segment_body("cam", TrackKind::Video, period, open)
    else {
        panic!("segment at {open} is not growing");
    };
    let first = growing.next().await.unwrap().unwrap();
    assert_eq!(first[0], fmp4::styp());
    assert!(first.len() >= 2, "styp and the first part");
    // Read while the publisher writes the rest of it and the start of the next.
    let read = async {
        let mut pieces = first.clone();
        let mut batches = 1;
        while let Some(more) = growing.next().await.unwrap() {
            pieces.extend(more);
            batches += 1;
        }
        (pieces, batches)
    };
    let ((pieces, batches), ()) = tokio::join!(read, write_frames(&publisher, 33..60, 25));
    assert!(batches >= 3, "parts came one after the other: {batches}");
    let whole: Vec<u8> = dash
        .segment("cam", TrackKind::Video, period, open)
        .expect("finished")
        .concat();
    assert_eq!(pieces.concat(), whole, "the chunks make up the segment");

    // A segment that cannot complete cuts the response.
    write_frames(&publisher, 60..68, 25).await;
    let ll = dash.mpd("cam", MpdClient::LowLatency, &CLOCK).unwrap();
    let (open, _) = last_video_s(&ll);
    let Some(SegmentBody::Growing(mut growing)) =
        dash.segment_body("cam", TrackKind::Video, period, open)
    else {
        panic!("segment at {open} is not growing");
    };
    assert!(growing.next().await.unwrap().is_some());
    dash.stop("cam");
    assert!(growing.next().await.is_err());
    // Neither an unknown time nor an unknown stream grows.
    assert!(
        dash.segment_body("cam", TrackKind::Video, period, open + 1)
            .is_none()
    );
    shutdown.cancel();
    run.await.unwrap();
}

/// Opus from Enhanced RTMP (audio only here): 48 kHz timescale, every sample lasting its
/// packet's 960 samples (the TOC says 20 ms, not AAC's 1024), and segments that tile the
/// timeline exactly, the last one included.
#[test]
fn opus_segments_use_the_packet_durations_and_tile_the_timeline() {
    let head = Bytes::from_static(include_bytes!("../../../testdata/opus-48k-stereo.opushead"));
    let packet = Bytes::from_static(include_bytes!("../../../testdata/opus-48k-stereo.packet"));
    let info = MediaInfo {
        audio: Some(media::AudioCodec::Opus(
            media::OpusConfig::parse(head).unwrap(),
        )),
        ..MediaInfo::default()
    };
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    let mut out = seg.push(Event::Tracks {
        info: Arc::new(info),
        session: 1,
    });
    let period = out
        .iter()
        .find_map(|o| match o {
            Output::Period(p) => Some(p.clone()),
            _ => None,
        })
        .or_else(|| seg.period().cloned())
        .expect("a period");
    let audio = period.audio.as_ref().expect("an Opus track");
    assert_eq!((audio.codecs.as_str(), audio.timescale), ("opus", 48_000));
    // 20 ms packets with the millisecond jitter of RTMP timestamps.
    for n in 0..250i64 {
        let ms = n * 20 + if n % 3 == 0 { 1 } else { 0 };
        out.extend(seg.push(Event::Frame(Frame {
            track: TrackKind::Audio,
            dts: ms * 90,
            pts: ms * 90,
            keyframe: true,
            payload: packet.clone(),
        })));
    }
    out.extend(seg.flush());
    let segs = segments(&out, TrackKind::Audio);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    for pair in segs.windows(2) {
        assert_eq!(pair[0].time + pair[0].duration, pair[1].time);
    }
    for s in &segs {
        let (_, durations, _) = read_back(s);
        assert!(durations.iter().all(|&d| d == 960), "{durations:?}");
        assert_eq!(s.duration, 960 * s.samples as u64);
    }
    let total: u64 = segs.iter().map(|s| s.duration).sum();
    assert_eq!(total, 250 * 960);
}

/// A rendition that starts 2 s after its source follows the source's timeline: its first
/// segment is timed where the source's third is, and its Representation, with its own
/// template under the rendition's directory, takes the source's presentationTimeOffset.
#[test]
fn a_follower_shares_its_source_timeline_and_renders_as_a_representation() {
    let base = 50 * 90_000;
    let mut source = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    let mut out = source.push(tracks(1));
    run((0..100).map(|i| video(i, 25, base)), &mut source, &mut out);
    let offset = source.offset().expect("offset after the first frame");
    assert_eq!(offset, -base);

    let mut rendition = Segmenter::new(Duration::from_secs(1), 1 << 20, 7);
    rendition.follow(offset);
    let mut r_out = rendition.push(tracks(1));
    run(
        (50..100).map(|i| video(i, 25, base)),
        &mut rendition,
        &mut r_out,
    );
    let v = segments(&r_out, TrackKind::Video);
    assert_eq!(v[0].time, 2 * 90_000, "on the source's timeline");
    assert_eq!(segments(&out, TrackKind::Video)[2].time, v[0].time);

    // A restarted rendition replays the GOP it last sent: those frames are dropped until a
    // keyframe past what it sent, which starts on the source's timeline again.
    let mut again = rendition.push(tracks(2));
    run(
        (75..150).map(|i| video(i, 25, base)),
        &mut rendition,
        &mut again,
    );
    // The old session's open segment (frames 75-99) closes at the switch; the new one
    // starts at frame 100, not at 75 again nor shifted after it.
    let times: Vec<u64> = segments(&again, TrackKind::Video)
        .iter()
        .map(|s| s.time)
        .collect();
    assert_eq!(times, [75 * FRAME as u64, 100 * FRAME as u64]);

    let mut m = Manifest::new(5, 2);
    feed(&mut m, r_out, 1_000);
    let rep = m
        .video_representation("v-low", "../cam_low/", 0)
        .expect("a Representation");
    assert!(
        rep.contains("<Representation id=\"v-low\" codecs=\"avc1."),
        "{rep}"
    );
    assert!(
        rep.contains("presentationTimeOffset=\"0\" initialization=\"../cam_low/init-v-7.mp4\" media=\"../cam_low/v-7-$Time$.m4s\""),
        "{rep}"
    );
    assert!(rep.contains("<S t=\"180000\" d=\"90000\""), "{rep}");
    assert!(
        Manifest::new(5, 2)
            .video_representation("x", "", 0)
            .is_none()
    );
}

/// The first MPD waits for the first audio segment when audio frames are on their way: an MPD
/// listing video but no audio makes ffmpeg ask for audio at time 0 and retry that 404.
#[test]
fn the_first_mpd_waits_for_its_audio_segment() {
    let mut seg = Segmenter::new(Duration::from_secs(1), 1 << 20, 1);
    let mut out = seg.push(tracks(1));
    run(interleaved(3, 25, 0), &mut seg, &mut out);
    let (audio, rest): (Vec<Output>, Vec<Output>) = out
        .into_iter()
        .partition(|o| matches!(o, Output::Segment(s) if s.track == TrackKind::Audio));
    let mut m = Manifest::new(5, 2);
    feed(&mut m, rest, 0);
    assert!(m.awaits_first_audio());
    feed(&mut m, audio, 0);
    assert!(!m.awaits_first_audio());
    assert!(render(&m).is_some());
}

/// An MPD finished for one player gives back its body, to be finished again for another
/// (an edge node passing the origin's MPD on with its own clock).
#[test]
fn a_finished_mpd_gives_back_its_body() {
    let body = "<?xml version=\"1.0\"?>\n<MPD>\n  <Period/>\n";
    let finished = finish_mpd(body, &CLOCK);
    assert_eq!(mpd_body(&finished), Some(body));
    assert_eq!(mpd_body(body), None);
}
