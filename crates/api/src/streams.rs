//! `/api/v1/streams`: stream configuration CRUD with each stream's runtime state.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorCode, LenientJson};
use crate::time::{rfc3339, system_ms};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hub::{SessionRole, StreamStats};
use media::{AudioCodec, VideoCodec};
use push::url::masked as mask_url;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::{
    AudioMode, Corner, Failover, HwAccel, InputSpec, Protocols, PushDestination, RecordingFormat,
    RecordingSpec, RenditionSpec, RetryPolicy, RtspTransport, StreamRecord, TextOverlay,
    TranscodeAudio, TranscodeSpec, Watermark,
};
use utoipa::{IntoParams, ToSchema};

// ---------------------------------------------------------------------------------------------
// Request bodies

/// Output switches; an omitted switch is on for PUT/POST and unchanged for PATCH.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolsInput {
    hls: Option<bool>,
    dash: Option<bool>,
    rtmp: Option<bool>,
    srt: Option<bool>,
    rtsp: Option<bool>,
    mpegts: Option<bool>,
}

impl ProtocolsInput {
    pub(crate) fn apply(&self, base: Protocols) -> Protocols {
        Protocols {
            hls: self.hls.unwrap_or(base.hls),
            dash: self.dash.unwrap_or(base.dash),
            rtmp: self.rtmp.unwrap_or(base.rtmp),
            srt: self.srt.unwrap_or(base.srt),
            rtsp: self.rtsp.unwrap_or(base.rtsp),
            mpegts: self.mpegts.unwrap_or(base.mpegts),
        }
    }
}

/// Backoff between push attempts.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryInput {
    /// First delay in seconds (default 1).
    initial_s: Option<f64>,
    /// Largest delay in seconds (default 30).
    max_s: Option<f64>,
}

/// A push destination.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushInput {
    /// `rtmp://host[:1935]/app/key` or `rtmps://host[:443]/app/key`.
    url: String,
    /// Default true.
    enabled: Option<bool>,
    /// Connect and handshake budget in seconds (default 10). Open-Streamer's `timeout_sec`
    /// is accepted for it.
    #[serde(alias = "timeout_sec")]
    timeout_s: Option<u32>,
    retry: Option<RetryInput>,
    /// Open-Streamer's fixed delay between attempts, in seconds: a `retry` whose first and
    /// largest delays are both this. An explicit `retry` wins.
    retry_timeout_sec: Option<f64>,
    /// Consecutive failed attempts before giving up; 0 (default) retries forever.
    limit: Option<u32>,
    comment: Option<String>,
    /// A rung of the stream's `transcode` ladder to push (`720p`) instead of the stream
    /// itself (omitted or empty).
    rendition: Option<String>,
}

/// Push URLs are write-only: reads show them masked. A client that sends back what it read
/// (GET, edit, PUT) means "keep this destination", so a masked URL that matches a configured
/// one gets the real URL back; one that matches nothing is refused rather than pushed to a
/// literal `****` key.
pub(crate) fn restore_masked_urls(
    inputs: &mut [PushInput],
    old: Option<&StreamRecord>,
) -> Result<(), ApiError> {
    for (i, input) in inputs.iter_mut().enumerate() {
        if !input.url.contains("****") {
            continue;
        }
        let known = old
            .into_iter()
            .flat_map(|r| r.push.iter())
            .find(|d| mask_url(&d.url) == input.url);
        match known {
            Some(d) => input.url = d.url.clone(),
            None => {
                return Err(ApiError::unprocessable(
                    format!("push[{i}].url"),
                    "a masked URL that matches no configured destination; send the full URL",
                ));
            }
        }
    }
    Ok(())
}

impl PushInput {
    pub(crate) fn into_record(self) -> PushDestination {
        let retry = self.retry.unwrap_or(match self.retry_timeout_sec {
            Some(fixed) => RetryInput {
                initial_s: Some(fixed),
                max_s: Some(fixed),
            },
            None => RetryInput::default(),
        });
        let defaults = RetryPolicy::default();
        PushDestination {
            url: self.url,
            enabled: self.enabled.unwrap_or(true),
            timeout_s: self.timeout_s.unwrap_or(10),
            retry: RetryPolicy {
                initial_s: retry.initial_s.unwrap_or(defaults.initial_s),
                max_s: retry.max_s.unwrap_or(defaults.max_s),
            },
            limit: self.limit.unwrap_or(0),
            comment: self.comment.unwrap_or_default(),
            rendition: self.rendition.unwrap_or_default(),
        }
    }
}

/// A source of the stream; lower `priority` is preferred.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputInput {
    /// `publish://` (an encoder pushes), `rtmp(s)://`, `rtsp(s)://`, `srt://host:port?streamid=`
    /// (caller), `udp://[group]:port?localaddr=`, `http(s)://` MPEG-TS or `.m3u8`, `file:///path`.
    url: String,
    /// Default: the position in the list.
    priority: Option<u32>,
    /// Default true.
    enabled: Option<bool>,
    /// RTSP only: `tcp` (default) or `udp`.
    #[schema(value_type = Option<String>)]
    rtsp_transport: Option<RtspTransport>,
    comment: Option<String>,
}

impl InputInput {
    fn into_record(self, index: usize) -> InputSpec {
        InputSpec {
            url: self.url,
            priority: self.priority.unwrap_or(index as u32),
            enabled: self.enabled.unwrap_or(true),
            rtsp_transport: self.rtsp_transport.unwrap_or_default(),
            comment: self.comment.unwrap_or_default(),
        }
    }
}

pub(crate) fn input_records(inputs: Vec<InputInput>) -> Vec<InputSpec> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| input.into_record(i))
        .collect()
}

/// Input URLs are write-only like push URLs: a masked URL sent back keeps the configured one.
pub(crate) fn restore_masked_inputs(
    inputs: &mut [InputInput],
    old: Option<&StreamRecord>,
) -> Result<(), ApiError> {
    for (i, input) in inputs.iter_mut().enumerate() {
        if !input.url.contains("****") {
            continue;
        }
        let known = old
            .into_iter()
            .flat_map(|r| r.inputs.iter())
            .find(|d| ::inputs::url::masked(&d.url) == input.url);
        match known {
            Some(d) => input.url = d.url.clone(),
            None => {
                return Err(ApiError::unprocessable(
                    format!("inputs[{i}].url"),
                    "a masked URL that matches no configured input; send the full URL",
                ));
            }
        }
    }
    Ok(())
}

/// Health and switching rules; omitted fields take their defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverInput {
    /// An input silent this long is down (default 30, at least 1).
    packet_timeout_s: Option<f64>,
    /// A preferred input must be healthy this long before the stream returns to it (default 10).
    failback_after_s: Option<f64>,
    /// Pull only while the stream has readers (default false).
    on_demand: Option<bool>,
    /// With `on_demand`, stop pulling after this long without readers (default 10).
    close_after_s: Option<f64>,
    /// Reconnect backoff of pulled inputs (default 1 to 10 s).
    retry: Option<RetryInput>,
}

impl FailoverInput {
    pub(crate) fn apply(self, base: Failover) -> Failover {
        let retry = self.retry.unwrap_or_default();
        Failover {
            packet_timeout_s: self.packet_timeout_s.unwrap_or(base.packet_timeout_s),
            failback_after_s: self.failback_after_s.unwrap_or(base.failback_after_s),
            on_demand: self.on_demand.unwrap_or(base.on_demand),
            close_after_s: self.close_after_s.unwrap_or(base.close_after_s),
            retry: RetryPolicy {
                initial_s: retry.initial_s.unwrap_or(base.retry.initial_s),
                max_s: retry.max_s.unwrap_or(base.retry.max_s),
            },
        }
    }
}

/// Recording to disk; omitted fields take their defaults (POST, PUT) or are kept (PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingSpecInput {
    /// Record every publish of the stream (default false).
    enabled: Option<bool>,
    /// File format: `ts` (MPEG-TS, the default) or `fmp4` (fragmented MP4 files, `.mp4`).
    #[schema(value_type = Option<String>)]
    format: Option<RecordingFormat>,
    /// Start a new file at the first keyframe after this many seconds (default 600, at
    /// least 1).
    rotate_s: Option<f64>,
    /// Also start a new file once the current one reaches this many bytes (default 0: no
    /// limit; else at least 1048576).
    rotate_bytes: Option<u64>,
    /// Delete files older than this many seconds (default 0: keep forever).
    max_age_s: Option<f64>,
    /// Delete the oldest files while the stream's recordings exceed this many bytes (default
    /// 0: no limit; else at least 1048576).
    max_bytes: Option<u64>,
    /// Daily windows `HH:MM-HH:MM` (UTC, may cross midnight) to record in; empty: always.
    schedule: Option<Vec<String>>,
}

impl RecordingSpecInput {
    pub(crate) fn apply(self, base: RecordingSpec) -> RecordingSpec {
        RecordingSpec {
            enabled: self.enabled.unwrap_or(base.enabled),
            format: self.format.unwrap_or(base.format),
            rotate_s: self.rotate_s.unwrap_or(base.rotate_s),
            rotate_bytes: self.rotate_bytes.unwrap_or(base.rotate_bytes),
            max_age_s: self.max_age_s.unwrap_or(base.max_age_s),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            schedule: self.schedule.unwrap_or(base.schedule),
        }
    }
}

/// Renditions made from the stream by a transcoder (an ABR ladder); omitted fields take their
/// defaults (POST, PUT) or are kept (PATCH).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscodeSpecInput {
    /// Run the ladder whenever the stream is live (default false); needs a rung other than
    /// `source`.
    enabled: Option<bool>,
    /// The ladder, best first, at most 8 rungs; replaces the whole list. Each rung is played
    /// and pushed as the stream `<code>_<name>`.
    profiles: Option<Vec<RenditionSpecInput>>,
    /// Video encoder family: `auto` (default: the first hardware encoder that works, else
    /// x264), `none` (x264), `nvenc`, `vaapi` or `qsv`.
    #[schema(value_type = Option<String>)]
    hwaccel: Option<HwAccel>,
    /// Keyframe cadence in seconds when the ladder has no `source` rung (default 2, 0.5 to
    /// 20).
    keyframe_interval_s: Option<f64>,
    /// Changes only the fields given.
    audio: Option<TranscodeAudioInput>,
    /// An image over every rendition; `null` removes it, an object changes only the fields
    /// given.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<WatermarkInput>)]
    watermark: Option<Option<WatermarkInput>>,
    /// Text over every rendition; `null` removes it, an object changes only the fields given.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<TextOverlayInput>)]
    text: Option<Option<TextOverlayInput>>,
}

impl TranscodeSpecInput {
    pub(crate) fn apply(self, base: TranscodeSpec) -> TranscodeSpec {
        let audio = self.audio.unwrap_or_default();
        TranscodeSpec {
            enabled: self.enabled.unwrap_or(base.enabled),
            profiles: match self.profiles {
                Some(p) => p.into_iter().map(RenditionSpecInput::into_spec).collect(),
                None => base.profiles,
            },
            hwaccel: self.hwaccel.unwrap_or(base.hwaccel),
            keyframe_interval_s: self.keyframe_interval_s.unwrap_or(base.keyframe_interval_s),
            audio: TranscodeAudio {
                mode: audio.mode.unwrap_or(base.audio.mode),
                bitrate_kbps: audio.bitrate_kbps.unwrap_or(base.audio.bitrate_kbps),
            },
            watermark: match self.watermark {
                Some(Some(w)) => Some(w.apply(base.watermark.unwrap_or_default())),
                Some(None) => None,
                None => base.watermark,
            },
            text: match self.text {
                Some(Some(t)) => Some(t.apply(base.text.unwrap_or_default())),
                Some(None) => None,
                None => base.text,
            },
        }
    }
}

/// One rung of a ladder. A preset name (`1080p`, `720p`, `480p`, `360p`, `240p`) fills every
/// field omitted or 0/empty; `source` is the stream itself, untouched; any other name needs
/// `height` and `video_bitrate_kbps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpecInput {
    /// `[a-z0-9-]{1,16}`, unique in the ladder.
    name: String,
    /// Even, 16 to 7680; 0 (default) keeps the source's aspect ratio.
    width: Option<u32>,
    /// Even, 16 to 4320; 0 (default) takes the preset's.
    height: Option<u32>,
    /// 50 to 100000 kbit/s; 0 (default) takes the preset's.
    video_bitrate_kbps: Option<u32>,
    /// 1 to 240; 0 (default) keeps the source's rate (under the preset's cap).
    max_framerate: Option<f64>,
    /// `baseline`, `main` or `high`; empty (default) takes the preset's.
    profile: Option<String>,
    /// `3.0` to `5.2`; empty (default) takes the preset's.
    level: Option<String>,
}

impl RenditionSpecInput {
    fn into_spec(self) -> RenditionSpec {
        RenditionSpec {
            name: self.name,
            width: self.width.unwrap_or_default(),
            height: self.height.unwrap_or_default(),
            video_bitrate_kbps: self.video_bitrate_kbps.unwrap_or_default(),
            max_framerate: self.max_framerate.unwrap_or_default(),
            profile: self.profile.unwrap_or_default(),
            level: self.level.unwrap_or_default(),
        }
    }
}

/// Audio of the renditions; omitted fields take their defaults or are kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranscodeAudioInput {
    /// `passthrough` (default: the source's audio) or `aac`.
    #[schema(value_type = Option<String>)]
    mode: Option<AudioMode>,
    /// With `aac`: 32 to 512 kbit/s (default 128).
    bitrate_kbps: Option<u32>,
}

/// An image over the picture; omitted fields take their defaults or are kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatermarkInput {
    /// An image file on the gateway's disk (PNG, or any image ffmpeg reads); required.
    path: Option<String>,
    /// `top-left`, `top-right` (default), `bottom-left` or `bottom-right`.
    #[schema(value_type = Option<String>)]
    position: Option<Corner>,
    /// 0 (invisible) to 1 (opaque), default 0.8.
    opacity: Option<f64>,
    /// Pixels from the edges (default 16).
    margin: Option<u32>,
}

impl WatermarkInput {
    fn apply(self, base: Watermark) -> Watermark {
        Watermark {
            path: self.path.unwrap_or(base.path),
            position: self.position.unwrap_or(base.position),
            opacity: self.opacity.unwrap_or(base.opacity),
            margin: self.margin.unwrap_or(base.margin),
        }
    }
}

/// Text burnt into the picture; omitted fields take their defaults or are kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextOverlayInput {
    /// Fixed text, at most 256 characters on one line; may be empty when `timestamp` is on.
    text: Option<String>,
    /// Also draw each frame's wall-clock time, UTC (default true).
    timestamp: Option<bool>,
    /// `top-left`, `top-right`, `bottom-left` (default) or `bottom-right`.
    #[schema(value_type = Option<String>)]
    position: Option<Corner>,
    /// Glyph height in pixels of a 720p picture, 8 to 200 (default 28); scaled with each
    /// rendition.
    font_size: Option<u32>,
}

impl TextOverlayInput {
    fn apply(self, base: TextOverlay) -> TextOverlay {
        TextOverlay {
            text: self.text.unwrap_or(base.text),
            timestamp: self.timestamp.unwrap_or(base.timestamp),
            position: self.position.unwrap_or(base.position),
            font_size: self.font_size.unwrap_or(base.font_size),
        }
    }
}

/// A whole stream configuration (PUT replaces everything; omitted fields take defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamInput {
    /// Required for POST; for PUT, if given, it must equal the path.
    code: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    /// When set, publishing needs `?key=<stream_key>`.
    stream_key: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    protocols: ProtocolsInput,
    #[serde(default)]
    push: Vec<PushInput>,
    /// Sources by priority; empty (default) means whoever publishes to the code.
    #[serde(default)]
    inputs: Vec<InputInput>,
    #[serde(default)]
    failover: FailoverInput,
    #[serde(default)]
    recording: RecordingSpecInput,
    #[serde(default)]
    transcode: TranscodeSpecInput,
}

impl StreamInput {
    fn into_record(self, code: String) -> StreamRecord {
        StreamRecord {
            code,
            name: self.name,
            description: self.description,
            tags: self.tags,
            stream_key: self.stream_key,
            disabled: self.disabled,
            protocols: self.protocols.apply(Protocols::default()),
            push: self.push.into_iter().map(PushInput::into_record).collect(),
            inputs: input_records(self.inputs),
            failover: self.failover.apply(Failover::default()),
            recording: self.recording.apply(RecordingSpec::default()),
            transcode: self.transcode.apply(TranscodeSpec::default()),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A partial change: omitted fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamPatch {
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// A string sets the key, `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    stream_key: Option<Option<String>>,
    disabled: Option<bool>,
    protocols: Option<ProtocolsInput>,
    /// Replaces the whole list.
    push: Option<Vec<PushInput>>,
    /// Replaces the whole list.
    inputs: Option<Vec<InputInput>>,
    /// Changes only the fields given.
    failover: Option<FailoverInput>,
    /// Changes only the fields given.
    recording: Option<RecordingSpecInput>,
    /// Changes only the fields given (`profiles` as a whole list).
    transcode: Option<TranscodeSpecInput>,
}

impl StreamPatch {
    fn apply(self, r: &mut StreamRecord) {
        if let Some(v) = self.name {
            r.name = v;
        }
        if let Some(v) = self.description {
            r.description = v;
        }
        if let Some(v) = self.tags {
            r.tags = v;
        }
        if let Some(v) = self.stream_key {
            r.stream_key = v;
        }
        if let Some(v) = self.disabled {
            r.disabled = v;
        }
        if let Some(p) = self.protocols {
            r.protocols = p.apply(r.protocols);
        }
        if let Some(v) = self.push {
            r.push = v.into_iter().map(PushInput::into_record).collect();
        }
        if let Some(v) = self.inputs {
            r.inputs = input_records(v);
        }
        if let Some(f) = self.failover {
            r.failover = f.apply(r.failover);
        }
        if let Some(v) = self.recording {
            r.recording = v.apply(std::mem::take(&mut r.recording));
        }
        if let Some(v) = self.transcode {
            r.transcode = v.apply(std::mem::take(&mut r.transcode));
        }
    }
}

/// A stream to create (`POST /streams`, the code in the body) or to create or merge into
/// (`POST /streams/{code}`). An omitted field comes from `template` when one is named, else
/// from the stream merged into (configured, or a runtime stream made from a template), else
/// takes its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamCreate {
    /// Required for `POST /streams`; for `POST /streams/{code}`, if given, it must equal the
    /// path.
    code: Option<String>,
    /// A template (`/api/v1/templates`) whose settings (tags, stream_key when set, protocols,
    /// push, inputs, failover, recording, transcode) fill the fields this body omits. The
    /// stream copies them: later changes to the template do not reach it.
    template: Option<String>,
    name: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// A string sets the key, `null` removes it; when set, publishing needs `?key=`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    stream_key: Option<Option<String>>,
    disabled: Option<bool>,
    /// An omitted switch keeps its value (on for a new stream without a template).
    protocols: Option<ProtocolsInput>,
    /// Replaces the whole list.
    push: Option<Vec<PushInput>>,
    /// Replaces the whole list; empty means whoever publishes to the code.
    inputs: Option<Vec<InputInput>>,
    /// Changes only the fields given.
    failover: Option<FailoverInput>,
    /// Changes only the fields given.
    recording: Option<RecordingSpecInput>,
    /// Changes only the fields given (`profiles` as a whole list).
    transcode: Option<TranscodeSpecInput>,
}

impl StreamCreate {
    /// The code and template named, and the rest as a change to the starting record.
    fn split(self) -> (Option<String>, Option<String>, StreamPatch) {
        let patch = StreamPatch {
            name: self.name,
            description: self.description,
            tags: self.tags,
            stream_key: self.stream_key,
            disabled: self.disabled,
            protocols: self.protocols,
            push: self.push,
            inputs: self.inputs,
            failover: self.failover,
            recording: self.recording,
            transcode: self.transcode,
        };
        (self.code, self.template, patch)
    }
}

/// A stream with every field at its default, the start of a create without a template.
fn default_record(code: &str) -> StreamRecord {
    StreamRecord {
        code: code.to_owned(),
        name: String::new(),
        description: String::new(),
        tags: Vec::new(),
        stream_key: None,
        disabled: false,
        protocols: Protocols::default(),
        push: Vec::new(),
        inputs: Vec::new(),
        failover: Failover::default(),
        recording: RecordingSpec::default(),
        transcode: TranscodeSpec::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// The template `name`, or a 422 naming the `template` field.
fn find_template(state: &AppState, name: &str) -> Result<Arc<store::TemplateRecord>, ApiError> {
    state.control.template(name).ok_or_else(|| {
        ApiError::unprocessable(
            "template",
            format!("no template named {name:?} (see GET /api/v1/templates)"),
        )
    })
}

/// Puts what `t` carries into `r`, as a create from it does: the stream key only when the
/// template sets one, so applying a template never drops a stream's key.
fn overlay_template(r: &mut StreamRecord, t: &store::TemplateRecord) {
    let from = control::stream_from_template(t, &r.code);
    r.tags = from.tags;
    if from.stream_key.is_some() {
        r.stream_key = from.stream_key;
    }
    r.protocols = from.protocols;
    r.push = from.push;
    r.inputs = from.inputs;
    r.failover = from.failover;
    r.recording = from.recording;
    r.transcode = from.transcode;
}

/// Fills in masked URLs of `patch` from `old` (see [`restore_masked_urls`]).
fn restore_patch_urls(patch: &mut StreamPatch, old: Option<&StreamRecord>) -> Result<(), ApiError> {
    if let Some(push) = patch.push.as_mut() {
        restore_masked_urls(push, old)?;
    }
    if let Some(inputs) = patch.inputs.as_mut() {
        restore_masked_inputs(inputs, old)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Output switches.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProtocolsView {
    hls: bool,
    dash: bool,
    rtmp: bool,
    srt: bool,
    rtsp: bool,
    mpegts: bool,
}

impl From<Protocols> for ProtocolsView {
    fn from(p: Protocols) -> Self {
        ProtocolsView {
            hls: p.hls,
            dash: p.dash,
            rtmp: p.rtmp,
            srt: p.srt,
            rtsp: p.rtsp,
            mpegts: p.mpegts,
        }
    }
}

/// Backoff between push attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    initial_s: f64,
    max_s: f64,
}

/// A configured push destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushView {
    /// The URL with its key, query and credentials masked (write-only; sending it back
    /// unchanged keeps the configured URL).
    url: String,
    enabled: bool,
    timeout_s: u32,
    retry: RetryView,
    limit: u32,
    comment: String,
    /// The rung of the stream's ladder pushed; empty: the stream itself.
    rendition: String,
}

/// A configured input.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputView {
    /// The URL with credentials, keys and secret query values masked (write-only; sending it
    /// back unchanged keeps the configured URL).
    url: String,
    /// `publish`, `rtmp`, `rtsp`, `srt`, `udp`, `http-ts`, `hls` or `file`.
    kind: &'static str,
    priority: u32,
    enabled: bool,
    /// `tcp` or `udp`.
    #[schema(value_type = String)]
    rtsp_transport: RtspTransport,
    comment: String,
}

/// Health and switching rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailoverView {
    packet_timeout_s: f64,
    failback_after_s: f64,
    on_demand: bool,
    close_after_s: f64,
    retry: RetryView,
}

/// Recording to disk.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingSpecView {
    enabled: bool,
    /// `ts` or `fmp4`.
    #[schema(value_type = String)]
    format: RecordingFormat,
    rotate_s: f64,
    /// 0: no limit.
    rotate_bytes: u64,
    /// 0: keep forever.
    max_age_s: f64,
    /// 0: no limit.
    max_bytes: u64,
    /// Daily UTC windows to record in; empty: always.
    schedule: Vec<String>,
}

impl From<&RecordingSpec> for RecordingSpecView {
    fn from(r: &RecordingSpec) -> Self {
        RecordingSpecView {
            enabled: r.enabled,
            format: r.format,
            rotate_s: r.rotate_s,
            rotate_bytes: r.rotate_bytes,
            max_age_s: r.max_age_s,
            max_bytes: r.max_bytes,
            schedule: r.schedule.clone(),
        }
    }
}

/// Renditions made from the stream (an ABR ladder), as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscodeSpecView {
    enabled: bool,
    /// The rungs as given: 0 and empty fields take the preset's when the ladder runs.
    profiles: Vec<RenditionSpecView>,
    /// `auto`, `none`, `nvenc`, `vaapi` or `qsv`.
    #[schema(value_type = String)]
    hwaccel: HwAccel,
    keyframe_interval_s: f64,
    audio: TranscodeAudioView,
    watermark: Option<WatermarkView>,
    text: Option<TextOverlayView>,
}

/// One rung of a ladder, as given.
#[derive(Debug, Serialize, ToSchema)]
pub struct RenditionSpecView {
    name: String,
    /// 0: from `height`, keeping the aspect ratio.
    width: u32,
    /// 0: the preset's.
    height: u32,
    /// 0: the preset's.
    video_bitrate_kbps: u32,
    /// 0: the source's (under the preset's cap).
    max_framerate: f64,
    /// Empty: the preset's.
    profile: String,
    /// Empty: the preset's.
    level: String,
}

/// Audio of the renditions.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscodeAudioView {
    /// `passthrough` or `aac`.
    #[schema(value_type = String)]
    mode: AudioMode,
    bitrate_kbps: u32,
}

/// An image over the picture.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatermarkView {
    path: String,
    /// `top-left`, `top-right`, `bottom-left` or `bottom-right`.
    #[schema(value_type = String)]
    position: Corner,
    opacity: f64,
    margin: u32,
}

/// Text burnt into the picture.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextOverlayView {
    text: String,
    timestamp: bool,
    /// `top-left`, `top-right`, `bottom-left` or `bottom-right`.
    #[schema(value_type = String)]
    position: Corner,
    font_size: u32,
}

impl From<&TranscodeSpec> for TranscodeSpecView {
    fn from(t: &TranscodeSpec) -> Self {
        TranscodeSpecView {
            enabled: t.enabled,
            profiles: t
                .profiles
                .iter()
                .map(|p| RenditionSpecView {
                    name: p.name.clone(),
                    width: p.width,
                    height: p.height,
                    video_bitrate_kbps: p.video_bitrate_kbps,
                    max_framerate: p.max_framerate,
                    profile: p.profile.clone(),
                    level: p.level.clone(),
                })
                .collect(),
            hwaccel: t.hwaccel,
            keyframe_interval_s: t.keyframe_interval_s,
            audio: TranscodeAudioView {
                mode: t.audio.mode,
                bitrate_kbps: t.audio.bitrate_kbps,
            },
            watermark: t.watermark.as_ref().map(|w| WatermarkView {
                path: w.path.clone(),
                position: w.position,
                opacity: w.opacity,
                margin: w.margin,
            }),
            text: t.text.as_ref().map(|x| TextOverlayView {
                text: x.text.clone(),
                timestamp: x.timestamp,
                position: x.position,
                font_size: x.font_size,
            }),
        }
    }
}

pub(crate) fn input_views(inputs: &[InputSpec]) -> Vec<InputView> {
    inputs
        .iter()
        .map(|i| InputView {
            url: ::inputs::url::masked(&i.url),
            kind: ::inputs::url::kind(&i.url).map_or("unknown", |k| k.as_str()),
            priority: i.priority,
            enabled: i.enabled,
            rtsp_transport: i.rtsp_transport,
            comment: i.comment.clone(),
        })
        .collect()
}

impl From<&Failover> for FailoverView {
    fn from(f: &Failover) -> Self {
        FailoverView {
            packet_timeout_s: f.packet_timeout_s,
            failback_after_s: f.failback_after_s,
            on_demand: f.on_demand,
            close_after_s: f.close_after_s,
            retry: RetryView {
                initial_s: f.retry.initial_s,
                max_s: f.retry.max_s,
            },
        }
    }
}

/// The current publisher.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublisherView {
    /// Kick with `DELETE /api/v1/sessions/{id}`.
    session_id: u64,
    protocol: String,
    remote_addr: Option<String>,
    started_at: String,
    uptime_s: f64,
    /// Id an external system (the JWT callback) gave this publish session, if any.
    external_id: Option<String>,
}

/// One track as the publisher sends it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackView {
    /// `video` or `audio`.
    kind: &'static str,
    /// `h264`, `h265`, `av1`, `aac`, `opus`, or the FLV codec id / FourCC of a passed-through
    /// codec.
    codec: String,
    profile: Option<String>,
    level: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<f64>,
    sample_rate: Option<u32>,
    channels: Option<u8>,
    /// Outputs that carry this track (`rtmp`, `flv`, `hls`, `hls-fmp4`, `ll-hls`, `dash`,
    /// `srt`, `ts`, `rtsp`).
    outputs: Vec<&'static str>,
    /// Outputs that cannot carry this codec and leave the track out.
    skipped_by: Vec<&'static str>,
}

/// Live state of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeView {
    /// `idle` or `live`.
    status: &'static str,
    publisher: Option<PublisherView>,
    tracks: Vec<TrackView>,
    /// Ingest bitrate over the last 5 s.
    bitrate_in_kbps: u64,
    /// Sum sent to all readers over the last 5 s.
    bitrate_out_kbps: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Connected readers per protocol (HLS is stateless HTTP and is not counted here).
    readers: BTreeMap<String, u32>,
    readers_total: u32,
    /// Frames slow readers skipped to catch up.
    frames_dropped: u64,
    /// State of each running push destination, in configuration order.
    pushes: Vec<PushStatusView>,
    /// The inputs' state and switch history, for a stream with inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<crate::inputs::InputsRuntimeView>,
    /// The rendition ladder's ffmpeg child, for a stream with `transcode` on.
    #[serde(skip_serializing_if = "Option::is_none")]
    transcode: Option<crate::ladder::TranscodeRuntimeView>,
    /// The last five minutes of bitrates, oldest first, one sample a second; only in the
    /// responses about one stream (`GET /streams/{code}` and the writes), not in lists or
    /// events, whose clients append the current figures themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    bitrate_history: Option<Vec<RateSampleView>>,
    /// Where the stream is in the cluster, on a node that is part of one (only in the
    /// responses about one stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterRuntimeView>,
}

/// A stream's place in the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterRuntimeView {
    /// The node that answered.
    node: String,
    /// The node its publisher is on (`null`: none).
    origin: Option<String>,
    /// Connected readers per node, as each reported them within the last third of
    /// `cluster.ttl` (HLS and DASH players are stateless HTTP and not counted).
    readers_by_node: BTreeMap<String, u32>,
    /// Their sum.
    readers_total: u32,
}

/// One point of a stream's bitrate history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateSampleView {
    at: String,
    in_kbps: u64,
    out_kbps: u64,
}

impl RuntimeView {
    /// Whether a publisher is live.
    pub(crate) fn is_live(&self) -> bool {
        self.status == "live"
    }
}

/// One recorded push failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushErrorView {
    message: String,
    at: String,
}

/// Live state of one push destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushStatusView {
    /// Position of the destination in the stream's `push` list, for
    /// `POST /streams/{code}/push/{index}/retry` (masked URLs can look alike).
    index: Option<usize>,
    /// The destination with its stream key masked.
    url: String,
    /// `starting`, `active`, `reconnecting` or `failed`.
    status: &'static str,
    /// Attempts made since the stream went live (1 = first connection).
    attempt: u64,
    connected_at: Option<String>,
    next_retry_at: Option<String>,
    /// Up to five, newest first; includes the remote's onStatus code and description.
    last_errors: Vec<PushErrorView>,
    bytes_sent: u64,
    bitrate_kbps: u64,
    /// Frames skipped because the destination was slower than the stream.
    frames_dropped: u64,
}

impl From<push::PushSnapshot> for PushStatusView {
    fn from(s: push::PushSnapshot) -> Self {
        PushStatusView {
            index: None,
            url: mask_url(&s.url),
            status: s.state.as_str(),
            attempt: s.attempt,
            connected_at: s.connected_at.map(|t| rfc3339(system_ms(t))),
            next_retry_at: s.next_retry_at.map(|t| rfc3339(system_ms(t))),
            last_errors: s
                .last_errors
                .into_iter()
                .map(|e| PushErrorView {
                    message: e.message,
                    at: rfc3339(system_ms(e.at)),
                })
                .collect(),
            bytes_sent: s.bytes_sent,
            bitrate_kbps: s.bitrate_kbps,
            frames_dropped: s.frames_dropped,
        }
    }
}

/// A stream: configuration and runtime state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    code: String,
    name: String,
    description: String,
    tags: Vec<String>,
    /// Whether publishing needs `?key=`; the key itself is write-only and never read back.
    has_stream_key: bool,
    disabled: bool,
    protocols: ProtocolsView,
    push: Vec<PushView>,
    inputs: Vec<InputView>,
    failover: FailoverView,
    recording: RecordingSpecView,
    transcode: TranscodeSpecView,
    /// False for a runtime stream created by publishing to an unknown code (not stored).
    persistent: bool,
    /// For a runtime stream made from a template by a publish: the template's name. Absent
    /// otherwise, so a configured stream's view still goes back unchanged in a PUT.
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    runtime: RuntimeView,
}

/// A page of streams.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    data: Vec<StreamView>,
    total: usize,
}

/// Every output protocol, in the order the runtime API lists them.
const OUTPUTS: [&str; 9] = [
    "rtmp", "flv", "hls", "hls-fmp4", "ll-hls", "dash", "srt", "ts", "rtsp",
];

/// The outputs that carry a track of codec `codec` (a [`VideoCodec::name`] or
/// [`AudioCodec::name`]). MPEG-TS (HLS, SRT, TS over HTTP) has H.264, H.265 and AAC, and SRT
/// and TS over HTTP mono or stereo Opus; fMP4 (DASH, CMAF HLS) adds AV1 and surround Opus;
/// RTSP has H.264, H.265, AV1, AAC and Opus; FLV carries everything, codecs the gateway does
/// not model included.
fn carried_by(codec: &str) -> Vec<&'static str> {
    let fmp4 = ["hls-fmp4", "ll-hls", "dash"];
    OUTPUTS
        .into_iter()
        .filter(|o| match codec {
            "h264" | "h265" | "aac" => true,
            // Not in HLS's TS segments: Apple's HLS has no Opus in TS (see `mpegts`).
            "opus" => *o != "hls",
            "opus-surround" => fmp4.contains(o) || matches!(*o, "rtmp" | "flv" | "rtsp"),
            "av1" => fmp4.contains(o) || matches!(*o, "rtmp" | "flv" | "rtsp"),
            _ => matches!(*o, "rtmp" | "flv"),
        })
        .collect()
}

fn track_view(kind: &'static str, codec: String) -> TrackView {
    let outputs = carried_by(&codec);
    let skipped_by = OUTPUTS
        .into_iter()
        .filter(|o| !outputs.contains(o))
        .collect();
    TrackView {
        kind,
        codec,
        profile: None,
        level: None,
        width: None,
        height: None,
        fps: None,
        sample_rate: None,
        channels: None,
        outputs,
        skipped_by,
    }
}

fn track_views(stats: &StreamStats) -> Vec<TrackView> {
    let Some(info) = &stats.info else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(v) = &info.video {
        let mut t = track_view("video", v.name());
        if let Some((w, h)) = info.video_size() {
            t.width = Some(w);
            t.height = Some(h);
        }
        t.fps = info.fps();
        match v {
            VideoCodec::H264(c) => {
                t.profile = Some(c.profile_name().into());
                t.level = Some(format!("{}.{}", c.level_idc / 10, c.level_idc % 10));
            }
            VideoCodec::H265(c) => {
                t.profile = Some(c.profile_name().into());
                // general_level_idc is 30 times the level: 93 is 3.1.
                t.level = Some(format!("{}.{}", c.level_idc / 30, c.level_idc % 30 / 3));
            }
            VideoCodec::Av1(c) => {
                t.profile = Some(
                    match c.profile {
                        0 => "Main",
                        1 => "High",
                        2 => "Professional",
                        _ => "other",
                    }
                    .into(),
                );
                // AV1 Annex A.3: seq_level_idx = (X - 2) * 4 + Y for level X.Y.
                t.level = Some(format!("{}.{}", 2 + c.level_idx / 4, c.level_idx % 4));
            }
            VideoCodec::Opaque { .. } => {}
        }
        out.push(t);
    }
    if let Some(a) = &info.audio {
        let mut t = track_view("audio", a.name());
        match a {
            AudioCodec::Aac(c) => {
                t.profile = Some(
                    match c.object_type {
                        2 => "LC",
                        5 => "HE-AAC",
                        29 => "HE-AACv2",
                        1 => "Main",
                        _ => "other",
                    }
                    .into(),
                );
                t.sample_rate = Some(c.sample_rate);
                t.channels = Some(c.channel_config);
            }
            AudioCodec::Opus(c) => {
                t.sample_rate = Some(48_000);
                t.channels = Some(c.channels);
                if c.mapping_family != 0 {
                    // TS carries mono and stereo Opus only (see `mpegts`).
                    let outputs = carried_by("opus-surround");
                    t.skipped_by = OUTPUTS
                        .into_iter()
                        .filter(|o| !outputs.contains(o))
                        .collect();
                    t.outputs = outputs;
                }
            }
            AudioCodec::Opaque { .. } => {}
        }
        out.push(t);
    }
    out
}

/// Readers per protocol of every stream, from the session registry (external readers only).
fn readers_by_stream(state: &AppState) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for s in state.hub.sessions() {
        if s.role == SessionRole::Reader {
            *out.entry(s.stream)
                .or_default()
                .entry(s.protocol.to_owned())
                .or_default() += 1;
        }
    }
    out
}

fn runtime(
    stats: Option<&StreamStats>,
    readers: Option<&BTreeMap<String, u32>>,
    pushes: Vec<PushStatusView>,
) -> RuntimeView {
    let readers = readers.cloned().unwrap_or_default();
    let readers_total = readers.values().sum();
    match stats {
        None => RuntimeView {
            status: "idle",
            publisher: None,
            tracks: Vec::new(),
            bitrate_in_kbps: 0,
            bitrate_out_kbps: 0,
            bytes_in: 0,
            bytes_out: 0,
            readers,
            readers_total,
            frames_dropped: 0,
            pushes,
            inputs: None,
            transcode: None,
            bitrate_history: None,
            cluster: None,
        },
        Some(s) => RuntimeView {
            status: if s.live { "live" } else { "idle" },
            publisher: s.publisher.as_ref().map(|p| PublisherView {
                session_id: p.session_id,
                protocol: p.protocol.to_owned(),
                remote_addr: p.remote_addr.map(|a| a.to_string()),
                started_at: rfc3339(system_ms(p.started_at)),
                uptime_s: (p.uptime.as_millis() as f64) / 1000.0,
                external_id: p.external_id.clone(),
            }),
            tracks: track_views(s),
            bitrate_in_kbps: s.bitrate_in_kbps,
            bitrate_out_kbps: s.bitrate_out_kbps,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            readers,
            readers_total,
            frames_dropped: s.frames_dropped,
            pushes,
            inputs: None,
            transcode: None,
            bitrate_history: None,
            cluster: None,
        },
    }
}

pub(crate) fn push_views(push: &[PushDestination]) -> Vec<PushView> {
    push.iter()
        .map(|p| PushView {
            url: mask_url(&p.url),
            enabled: p.enabled,
            timeout_s: p.timeout_s,
            retry: RetryView {
                initial_s: p.retry.initial_s,
                max_s: p.retry.max_s,
            },
            limit: p.limit,
            comment: p.comment.clone(),
            rendition: p.rendition.clone(),
        })
        .collect()
}

/// Builds the view of a configured stream (`record`) or a runtime-only one (`None`).
fn view(
    state: &AppState,
    code: &str,
    record: Option<&StreamRecord>,
    stats: Option<&StreamStats>,
    readers: Option<&BTreeMap<String, u32>>,
) -> StreamView {
    let pushes = state
        .control
        .push()
        .map(|p| p.status(code))
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            // Destinations are unique by URL (validation refuses duplicates).
            let index = record.and_then(|r| r.push.iter().position(|d| d.url == s.url));
            PushStatusView { index, ..s.into() }
        })
        .collect();
    let mut runtime = runtime(stats, readers, pushes);
    runtime.inputs = crate::inputs::runtime(state, code);
    runtime.transcode = crate::ladder::runtime(state, code);
    // A record is configured unless a template made it for a publish.
    let template = record.and_then(|_| state.control.runtime_template(code));
    match record {
        Some(r) => StreamView {
            code: r.code.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            tags: r.tags.clone(),
            has_stream_key: r.stream_key.is_some(),
            disabled: r.disabled,
            protocols: r.protocols.into(),
            push: push_views(&r.push),
            inputs: input_views(&r.inputs),
            failover: (&r.failover).into(),
            recording: (&r.recording).into(),
            transcode: (&r.transcode).into(),
            persistent: template.is_none(),
            template,
            created_at: Some(rfc3339(r.created_at_ms)),
            updated_at: Some(rfc3339(r.updated_at_ms)),
            runtime,
        },
        None => StreamView {
            code: code.to_owned(),
            name: String::new(),
            description: String::new(),
            tags: Vec::new(),
            has_stream_key: false,
            disabled: false,
            protocols: Protocols::default().into(),
            push: Vec::new(),
            inputs: Vec::new(),
            failover: (&Failover::default()).into(),
            recording: (&RecordingSpec::default()).into(),
            transcode: (&TranscodeSpec::default()).into(),
            persistent: false,
            template: None,
            created_at: None,
            updated_at: None,
            runtime,
        },
    }
}

pub(crate) fn check_code(code: &str) -> Result<(), ApiError> {
    if hub::valid_code(code) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            ErrorCode::InvalidCode,
            "code",
            "must match [A-Za-z0-9_/-]{1,128}, with / only between names",
        ))
    }
}

fn single_view(state: &AppState, code: &str, record: Option<&StreamRecord>) -> StreamView {
    let stats = state.hub.stats(code);
    let readers = readers_by_stream(state);
    let mut v = view(state, code, record, stats.as_ref(), readers.get(code));
    let history = state.hub.bitrate_history(code);
    v.runtime.bitrate_history = Some(
        history
            .into_iter()
            .map(|s| RateSampleView {
                at: rfc3339(system_ms(s.at)),
                in_kbps: s.in_kbps,
                out_kbps: s.out_kbps,
            })
            .collect(),
    );
    v
}

/// Configured streams and live runtime streams by code (only `only` when given), as the list
/// and the event stream show them.
pub(crate) fn stream_views(state: &AppState, only: Option<&str>) -> Vec<StreamView> {
    let records: Vec<Arc<StreamRecord>> = match only {
        Some(code) => state.control.get(code).into_iter().collect(),
        // Runtime streams made from templates are listed until they are reaped.
        None => {
            let mut all = state.control.list();
            all.extend(state.control.runtime_streams());
            all
        }
    };
    let stats: Vec<StreamStats> = match only {
        Some(code) => state.hub.stats(code).into_iter().collect(),
        None => state.hub.list(),
    };
    let stats: BTreeMap<String, StreamStats> =
        stats.into_iter().map(|s| (s.code.clone(), s)).collect();
    let readers = readers_by_stream(state);
    let mut codes: BTreeSet<&str> = records.iter().map(|r| r.code.as_str()).collect();
    // Auto-created streams exist only while live.
    codes.extend(stats.values().filter(|s| s.live).map(|s| s.code.as_str()));
    let by_code: BTreeMap<&str, &StreamRecord> = records
        .iter()
        .map(|r| (r.code.as_str(), r.as_ref()))
        .collect();
    codes
        .into_iter()
        .map(|code| {
            view(
                state,
                code,
                by_code.get(code).copied(),
                stats.get(code),
                readers.get(code),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Filter for the stream list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `idle` or `live`.
    status: Option<String>,
}

/// Lists configured streams and live runtime streams.
#[utoipa::path(
    get,
    path = "/streams",
    tag = "streams",
    params(ListQuery),
    responses(
        (status = 200, description = "Streams, by code", body = StreamList),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn list_streams(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StreamList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let want_live = match query.status.as_deref() {
        None => None,
        Some("live") => Some(true),
        Some("idle") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_field(
                ErrorCode::InvalidQuery,
                "status",
                format!("expected idle or live, got {other:?}"),
            ));
        }
    };
    let data: Vec<StreamView> = stream_views(&state, None)
        .into_iter()
        .filter(|v| want_live.is_none_or(|live| v.runtime.is_live() == live))
        .collect();
    let total = data.len();
    Ok(Json(StreamList { data, total }))
}

/// One stream (secrets masked: `has_stream_key`, push URLs without keys).
#[utoipa::path(
    get,
    path = "/streams/{code}",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
    )
)]
pub async fn get_stream(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    check_code(&code)?;
    let record = state.control.get(&code);
    let places = match &state.cluster {
        Some(c) => c.places(&code).await.map(|p| (c.node_id().to_owned(), p)),
        None => None,
    };
    // A runtime stream (auto-created by its publisher) published on another node is known
    // here through the cluster.
    let elsewhere = places.as_ref().is_some_and(|(_, p)| p.origin.is_some());
    if record.is_none() && !state.hub.is_live(&code) && !elsewhere {
        return Err(ApiError::not_found(format!("stream {code:?} not found")));
    }
    let mut view = single_view(&state, &code, record.as_deref());
    if let Some((node, places)) = places {
        view.runtime.cluster = Some(ClusterRuntimeView {
            node,
            origin: places.origin,
            readers_total: places.readers.values().sum(),
            readers_by_node: places.readers,
        });
    }
    Ok(Json(view))
}

/// Creates a stream; the code goes in the body. With `template`, the fields the body omits
/// come from that template.
#[utoipa::path(
    post,
    path = "/streams",
    tag = "streams",
    request_body = StreamCreate,
    responses(
        (status = 201, description = "Created", body = StreamView),
        (status = 400, description = "Malformed body or code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 409, description = "The code exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken, or no such template", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn create_stream(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<StreamCreate>,
) -> Result<Response, ApiError> {
    let (code, template, mut patch) = body.split();
    let code =
        code.ok_or_else(|| ApiError::bad_field(ErrorCode::InvalidCode, "code", "required"))?;
    check_code(&code)?;
    let mut record = match &template {
        Some(name) => control::stream_from_template(&*find_template(&state, name)?, &code),
        None => default_record(&code),
    };
    // A masked URL copied from the template's view means that template destination.
    restore_patch_urls(&mut patch, Some(&record))?;
    patch.apply(&mut record);
    let record = state.control.create(record).await?;
    let view = single_view(&state, &code, Some(&record));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Creates (201) or merges into (200) the stream `code`, as Open-Streamer's clients expect.
///
/// A field the body gives replaces the stream's as PATCH does (lists whole, `protocols`,
/// `failover`, `recording` and `transcode` field by field); an omitted one is kept. A new stream starts
/// from `template` when one is named, else from the runtime stream of that code a template made
/// (which this stores), else from the defaults. On an existing stream, `template` applies the
/// template's settings first, then the body's.
#[utoipa::path(
    post,
    path = "/streams/{code}",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    request_body = StreamCreate,
    responses(
        (status = 200, description = "Merged into the existing stream", body = StreamView),
        (status = 201, description = "Created", body = StreamView),
        (status = 400, description = "Malformed body or code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Deleted while being merged into; retry", body = ErrorBody),
        (status = 409, description = "Created meanwhile; retry", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken, or no such template", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn upsert_stream(
    State(state): State<AppState>,
    Path(code): Path<String>,
    // Open-Streamer's endpoint: its clients' extra fields are dropped with a warning.
    LenientJson(body): LenientJson<StreamCreate>,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let (body_code, template, patch) = body.split();
    if body_code.as_deref().is_some_and(|c| c != code) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidCode,
            "code",
            "differs from the path",
        ));
    }
    let template = template
        .map(|name| find_template(&state, &name))
        .transpose()?;
    upsert(&state, code, template, patch).await
}

/// Creates (201) or merges into (200) the stream `code`: see [`upsert_stream`].
async fn upsert(
    state: &AppState,
    code: String,
    template: Option<Arc<store::TemplateRecord>>,
    mut patch: StreamPatch,
) -> Result<Response, ApiError> {
    let runtime = state.control.runtime_template(&code).is_some();
    if let Some(old) = state.control.get(&code).filter(|_| !runtime) {
        let mut base = (*old).clone();
        if let Some(t) = &template {
            overlay_template(&mut base, t);
        }
        restore_patch_urls(&mut patch, Some(&base))?;
        let record = state
            .control
            .update(&code, |r| {
                if let Some(t) = &template {
                    overlay_template(r, t);
                }
                patch.apply(r);
            })
            .await?;
        let view = single_view(state, &code, Some(&record));
        return Ok((StatusCode::OK, Json(view)).into_response());
    }
    let mut record = match (&template, state.control.get(&code)) {
        (Some(t), _) => control::stream_from_template(t, &code),
        (None, Some(made)) => (*made).clone(),
        (None, None) => default_record(&code),
    };
    restore_patch_urls(&mut patch, Some(&record))?;
    patch.apply(&mut record);
    let record = state.control.create(record).await?;
    let view = single_view(state, &code, Some(&record));
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Creates (201) or replaces (200) a stream; omitted fields take their defaults.
#[utoipa::path(
    put,
    path = "/streams/{code}",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    request_body = StreamInput,
    responses(
        (status = 200, description = "Replaced", body = StreamView),
        (status = 201, description = "Created", body = StreamView),
        (status = 400, description = "Malformed body or code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn put_stream(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<StreamInput>,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    if body.code.as_deref().is_some_and(|c| c != code) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidCode,
            "code",
            "differs from the path",
        ));
    }
    let mut body = body;
    let old = state.control.get(&code);
    restore_masked_urls(&mut body.push, old.as_deref())?;
    restore_masked_inputs(&mut body.inputs, old.as_deref())?;
    let (record, outcome) = state.control.put(body.into_record(code.clone())).await?;
    let status = match outcome {
        store::PutOutcome::Created => StatusCode::CREATED,
        store::PutOutcome::Replaced => StatusCode::OK,
    };
    Ok((status, Json(single_view(&state, &code, Some(&record)))).into_response())
}

/// Changes some fields of a stream; omitted fields are kept. A runtime stream (made by a
/// publish) is stored with the change (201).
#[utoipa::path(
    patch,
    path = "/streams/{code}",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    request_body = StreamPatch,
    responses(
        (status = 200, description = "Changed", body = StreamView),
        (status = 201, description = "A runtime stream (made by a publish) stored with the change", body = StreamView),
        (status = 400, description = "Malformed body or code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn patch_stream(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ApiJson(patch): ApiJson<StreamPatch>,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    // A runtime stream (made by a publish, from a template or not) is stored with the change,
    // as the dashboard's "saving stores it" promises: the create-or-merge of POST.
    let made_by_publish = state.control.runtime_template(&code).is_some()
        || (state.control.get(&code).is_none() && state.hub.is_live(&code));
    if made_by_publish {
        return upsert(&state, code, None, patch).await;
    }
    let mut patch = patch;
    let old = state.control.get(&code);
    if let Some(push) = patch.push.as_mut() {
        restore_masked_urls(push, old.as_deref())?;
    }
    if let Some(inputs) = patch.inputs.as_mut() {
        restore_masked_inputs(inputs, old.as_deref())?;
    }
    let record = state.control.update(&code, |r| patch.apply(r)).await?;
    Ok(Json(single_view(&state, &code, Some(&record))).into_response())
}

/// Deletes a stream; its publisher and readers are disconnected.
#[utoipa::path(
    delete,
    path = "/streams/{code}",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn delete_stream(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_code(&code)?;
    state.control.delete(&code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fuzzing entry point (`fuzz/`, target `api_stream_body`; not an API): `body` through the
/// steps the POST (`method` "POST"), PUT and PATCH handlers take before the store, with
/// `existing` as the stored stream `path_code`: JSON parse as `ApiJson` does (axum's
/// `Json::from_bytes`), code checks, masked push URLs, building the record, and
/// `control::validate`. Returns the record that would be stored, or the client's error
/// (a body that does not parse is always a 400 here).
#[doc(hidden)]
pub fn fuzz_stream_body(
    method: &str,
    path_code: &str,
    body: &[u8],
    existing: Option<&StreamRecord>,
) -> Result<StreamRecord, ApiError> {
    fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
        Json::<T>::from_bytes(body)
            .map(|Json(v)| v)
            .map_err(|r| ApiError::bad_request(ErrorCode::InvalidBody, r.body_text()))
    }
    let invalid = |e: control::Invalid| ApiError::from(control::ControlError::from(e));
    let record = match method {
        "POST" => {
            // As `create_stream` with no templates configured.
            let (code, template, mut patch) = json::<StreamCreate>(body)?.split();
            let code = code
                .ok_or_else(|| ApiError::bad_field(ErrorCode::InvalidCode, "code", "required"))?;
            check_code(&code)?;
            if let Some(name) = template {
                return Err(ApiError::unprocessable(
                    "template",
                    format!("no template named {name:?}"),
                ));
            }
            let mut record = default_record(&code);
            restore_patch_urls(&mut patch, Some(&record))?;
            patch.apply(&mut record);
            record
        }
        "PUT" => {
            let mut body: StreamInput = json(body)?;
            let code = path_code.to_owned();
            check_code(&code)?;
            if body.code.as_deref().is_some_and(|c| c != code) {
                return Err(ApiError::bad_field(
                    ErrorCode::InvalidCode,
                    "code",
                    "differs from the path",
                ));
            }
            restore_masked_urls(&mut body.push, existing)?;
            restore_masked_inputs(&mut body.inputs, existing)?;
            body.into_record(code)
        }
        _ => {
            let mut patch: StreamPatch = json(body)?;
            check_code(path_code)?;
            if let Some(push) = patch.push.as_mut() {
                restore_masked_urls(push, existing)?;
            }
            if let Some(inputs) = patch.inputs.as_mut() {
                restore_masked_inputs(inputs, existing)?;
            }
            let old = existing.ok_or_else(|| ApiError::not_found("no such stream"))?;
            let mut record = old.clone();
            patch.apply(&mut record);
            record.code = old.code.clone();
            record
        }
    };
    control::validate(&record).map_err(invalid)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_key_of_push_urls() {
        assert_eq!(
            mask_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh"),
            "rtmp://a.rtmp.youtube.com/live2/****"
        );
        assert_eq!(
            mask_url("rtmps://h:443/app/k?x=1"),
            "rtmps://h:443/app/****?****"
        );
        assert_eq!(mask_url("rtmp://h/app"), "rtmp://h/app");
    }
}

/// Retries a push destination now (failed, or waiting for its next attempt).
#[utoipa::path(
    post,
    path = "/streams/{code}/push/{index}/retry",
    tag = "streams",
    params(
        ("code" = String, Path, description = "Stream code"),
        ("index" = usize, Path, description = "Position in the stream's push list"),
    ),
    responses(
        (status = 202, description = "Retry started", body = PushStatusView),
        (status = 400, description = "Invalid code or index", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream or index", body = ErrorBody),
        (status = 409, description = "Nothing to retry: stream not live, destination disabled, or push not waiting", body = ErrorBody),
    )
)]
pub async fn retry_push(
    State(state): State<AppState>,
    path: Result<Path<(String, usize)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((code, index)) = path.map_err(|_| {
        ApiError::bad_field(
            ErrorCode::InvalidId,
            "index",
            "expected a non-negative number",
        )
    })?;
    check_code(&code)?;
    let record = state
        .control
        .get(&code)
        .ok_or_else(|| ApiError::not_found(format!("stream {code:?} not found")))?;
    let dest = record.push.get(index).ok_or_else(|| {
        ApiError::not_found(format!("stream {code:?} has no push destination {index}"))
    })?;
    let conflict = |m: &str| ApiError::conflict(m);
    if !dest.enabled {
        return Err(conflict("destination disabled"));
    }
    let manager = state
        .control
        .push()
        .ok_or_else(|| conflict("push workers are not running"))?;
    match manager.retry(&code, &dest.url) {
        push::RetryOutcome::Started => {}
        push::RetryOutcome::NotRunning => {
            return Err(conflict("stream not live: no push is running"));
        }
        push::RetryOutcome::NotWaiting(state) => {
            return Err(conflict(&format!(
                "push is {}; only a reconnecting or failed push can be retried",
                state.as_str()
            )));
        }
    }
    let status = manager
        .status(&code)
        .into_iter()
        .find(|s| s.url == dest.url)
        .map(|s| PushStatusView {
            index: Some(index),
            ..s.into()
        });
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}
