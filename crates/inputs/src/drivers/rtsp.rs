//! `rtsp://` through retina (TCP interleaved or UDP, Basic and Digest auth); `rtsps://`, which
//! retina does not speak, through an ffmpeg child remuxing to FLV.

use super::{DriverConfig, InputError};
use crate::source::Emitter;
use bytes::Bytes;
use futures_util::StreamExt;
use media::{AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TIMEBASE, TrackKind, VideoCodec};
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use store::{InputSpec, RtspTransport};

pub(crate) async fn run(
    spec: &InputSpec,
    out: &Emitter,
    config: &DriverConfig,
) -> Result<(), InputError> {
    if spec
        .url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("rtsps://"))
    {
        let transport = match spec.rtsp_transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        };
        let args = ["-rtsp_transport", transport, "-i", spec.url.as_str()];
        return super::file::run_ffmpeg(&args, out, config).await;
    }
    let (url, creds) = split_credentials(&spec.url)?;
    let options = SessionOptions::default()
        .creds(creds)
        .user_agent(concat!("ferrocast/", env!("CARGO_PKG_VERSION")).to_owned());
    let mut session = tokio::time::timeout(config.connect_timeout, Session::describe(url, options))
        .await
        .map_err(|_| InputError::Connect("no answer to DESCRIBE".into()))?
        .map_err(|e| InputError::Connect(format!("DESCRIBE: {e}")))?;
    let mut video = None;
    let mut audio = None;
    for (i, s) in session.streams().iter().enumerate() {
        match (s.media(), s.encoding_name()) {
            ("video", "h264") if video.is_none() => video = Some(i),
            ("audio", "mpeg4-generic") if audio.is_none() => audio = Some(i),
            (media, enc) => tracing::debug!(media, enc, "rtsp input: stream skipped"),
        }
    }
    if video.is_none() && audio.is_none() {
        return Err(InputError::Source(
            "the source offers neither H.264 video nor AAC audio".into(),
        ));
    }
    for i in [video, audio].into_iter().flatten() {
        let transport = match spec.rtsp_transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        tokio::time::timeout(
            config.connect_timeout,
            // MP4 framing: 4-byte NAL lengths (our AVCC), parameter sets only in the config,
            // raw AAC access units.
            session.setup(
                i,
                SetupOptions::default()
                    .transport(transport)
                    .frame_format(FrameFormat::MP4),
            ),
        )
        .await
        .map_err(|_| InputError::Connect("no answer to SETUP".into()))?
        .map_err(|e| InputError::Connect(format!("SETUP: {e}")))?;
    }
    let mut tracks = Tracks {
        video: video.and_then(|i| video_codec(session.streams()[i].parameters())),
        audio: audio.and_then(|i| audio_codec(session.streams()[i].parameters())),
        announced: None,
    };
    let playing =
        tokio::time::timeout(config.connect_timeout, session.play(PlayOptions::default()))
            .await
            .map_err(|_| InputError::Connect("no answer to PLAY".into()))?
            .map_err(|e| InputError::Connect(format!("PLAY: {e}")))?
            .demuxed()
            .map_err(|e| InputError::Source(format!("demux: {e}")))?;
    tokio::pin!(playing);
    while let Some(item) = playing.next().await {
        let item = item.map_err(|e| InputError::Source(e.to_string()))?;
        match item {
            CodecItem::VideoFrame(f) if Some(f.stream_id()) == video => {
                if f.has_new_parameters() {
                    let params = playing.streams()[f.stream_id()].parameters();
                    tracks.video = video_codec(params);
                }
                let pts = f.timestamp().elapsed();
                let keyframe = f.is_random_access_point();
                let frame = Frame {
                    track: TrackKind::Video,
                    // retina gives presentation times only; cameras send no B-frames.
                    dts: pts,
                    pts,
                    keyframe,
                    payload: Bytes::from(f.into_data()),
                };
                tracks.announce(out).await?;
                out.frame(frame).await?;
            }
            CodecItem::AudioFrame(f) if Some(f.stream_id()) == audio => {
                let ts = f.timestamp();
                let rate = i64::from(ts.clock_rate().get());
                let ticks = ts.elapsed() * TIMEBASE / rate;
                tracks.announce(out).await?;
                out.frame(Frame {
                    track: TrackKind::Audio,
                    dts: ticks,
                    pts: ticks,
                    keyframe: true,
                    payload: Bytes::copy_from_slice(f.data()),
                })
                .await?;
            }
            _ => {}
        }
    }
    Err(InputError::Ended("the RTSP session ended".into()))
}

struct Tracks {
    video: Option<VideoCodec>,
    audio: Option<AudioCodec>,
    announced: Option<MediaInfo>,
}

impl Tracks {
    /// Announces the tracks when they differ from the last announcement.
    async fn announce(&mut self, out: &Emitter) -> Result<(), InputError> {
        let info = MediaInfo {
            video_metadata: None,
            video: self.video.clone(),
            audio: self.audio.clone(),
            framerate: None,
        };
        if self.announced.as_ref() != Some(&info) {
            out.tracks(info.clone()).await?;
            self.announced = Some(info);
        }
        Ok(())
    }
}

fn video_codec(params: Option<ParametersRef<'_>>) -> Option<VideoCodec> {
    let Some(ParametersRef::Video(v)) = params else {
        return None;
    };
    match AvcConfig::parse(Bytes::copy_from_slice(v.extra_data())) {
        Ok(cfg) => Some(VideoCodec::H264(cfg)),
        Err(e) => {
            tracing::warn!(error = %e, "rtsp input: unusable H.264 parameters");
            None
        }
    }
}

fn audio_codec(params: Option<ParametersRef<'_>>) -> Option<AudioCodec> {
    let Some(ParametersRef::Audio(a)) = params else {
        return None;
    };
    match AacConfig::parse(Bytes::copy_from_slice(a.extra_data())) {
        Ok(cfg) => Some(AudioCodec::Aac(cfg)),
        Err(e) => {
            tracing::warn!(error = %e, "rtsp input: unusable AAC configuration");
            None
        }
    }
}

/// retina takes credentials apart from the URL; `user:pass@` is percent-decoded.
fn split_credentials(input: &str) -> Result<(url::Url, Option<Credentials>), InputError> {
    let mut url = url::Url::parse(input).map_err(|e| InputError::Connect(format!("URL: {e}")))?;
    let creds = if url.username().is_empty() {
        None
    } else {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Some(Credentials {
            username: decode(url.username()),
            password: decode(url.password().unwrap_or_default()),
        })
    };
    // Both only fail for URLs that cannot have credentials, which an rtsp:// URL can.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_decoded() {
        let (url, creds) = split_credentials("rtsp://ad%40min:p%3Ass@cam:8554/live").unwrap();
        assert_eq!(url.as_str(), "rtsp://cam:8554/live");
        let creds = creds.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("ad@min", "p:ss")
        );
        assert!(split_credentials("rtsp://cam/x").unwrap().1.is_none());
    }
}
