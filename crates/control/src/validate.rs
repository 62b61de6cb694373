//! Rules a stream configuration must follow, checked before anything is stored.

use store::StreamRecord;

/// Whether a broken rule is a malformed value (HTTP 400) or a well-formed but unacceptable one
/// (HTTP 422).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    /// Wrong shape: a bad code, a URL that is not rtmp(s)://.
    Malformed,
    /// Right shape, wrong value: out of range, too long, contradictory.
    Semantic,
}

/// A broken rule, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// Path of the field, e.g. `push[1].retry.max_s`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
    /// 400 or 422.
    pub kind: InvalidKind,
}

fn malformed(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
        kind: InvalidKind::Malformed,
    }
}

fn semantic(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
        kind: InvalidKind::Semantic,
    }
}

fn max_chars(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.chars().count() > max {
        return Err(semantic(field, format!("longer than {max} characters")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(semantic(field, "contains control characters"));
    }
    Ok(())
}

/// Checks every field of `r`.
pub fn validate(r: &StreamRecord) -> Result<(), Invalid> {
    if !hub::valid_code(&r.code) {
        return Err(malformed(
            "code",
            "must match [A-Za-z0-9_/-]{1,128}, with / only between names",
        ));
    }
    max_chars("name", &r.name, 256)?;
    max_chars("description", &r.description, 4096)?;
    if r.tags.len() > 32 {
        return Err(semantic("tags", "at most 32 tags"));
    }
    for (i, t) in r.tags.iter().enumerate() {
        let field = format!("tags[{i}]");
        if t.is_empty() {
            return Err(semantic(field, "must not be empty"));
        }
        max_chars(&field, t, 64)?;
    }
    if let Some(key) = &r.stream_key {
        // It travels in a URL query (?key=...), so keep it to characters that need no escaping.
        if key.is_empty() || key.len() > 256 {
            return Err(semantic("stream_key", "must be 1 to 256 characters"));
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(semantic(
                "stream_key",
                "may only contain letters, digits and - _ . ~",
            ));
        }
    }
    if r.push.len() > 32 {
        return Err(semantic("push", "at most 32 destinations"));
    }
    for (i, p) in r.push.iter().enumerate() {
        let f = |name: &str| format!("push[{i}].{name}");
        check_push_url(&f("url"), &p.url)?;
        if r.push[..i].iter().any(|q| q.url == p.url) {
            return Err(semantic(f("url"), "duplicate destination"));
        }
        if !(1..=300).contains(&p.timeout_s) {
            return Err(semantic(f("timeout_s"), "must be 1 to 300 seconds"));
        }
        let (initial, max) = (p.retry.initial_s, p.retry.max_s);
        if !(initial.is_finite() && initial > 0.0 && initial <= 3600.0) {
            return Err(semantic(
                f("retry.initial_s"),
                "must be above 0 and at most 3600",
            ));
        }
        if !(max.is_finite() && max >= initial && max <= 3600.0) {
            return Err(semantic(
                f("retry.max_s"),
                "must be at least retry.initial_s and at most 3600",
            ));
        }
        max_chars(&f("comment"), &p.comment, 1024)?;
        // The push reads the rendition's hub stream: a name outside the ladder would push
        // nothing, forever, with no error to show.
        if !p.rendition.is_empty() && r.transcode.rung(&p.rendition).is_none() {
            return Err(semantic(
                f("rendition"),
                format!(
                    "{:?} is not a rung of transcode.profiles (empty pushes the stream itself)",
                    p.rendition
                ),
            ));
        }
    }
    validate_inputs(r)?;
    validate_recording(&r.recording)?;
    validate_transcode(&r.transcode)?;
    // Each rung is published as `<code>_<name>`, which must be a code too.
    for (i, p) in r.transcode.profiles.iter().enumerate() {
        if !p.is_source() && !hub::valid_code(&store::rendition_code(&r.code, &p.name)) {
            return Err(semantic(
                format!("transcode.profiles[{i}].name"),
                format!(
                    "the rendition's code {}_{} is longer than 128 characters",
                    r.code, p.name
                ),
            ));
        }
    }
    Ok(())
}

fn validate_inputs(r: &StreamRecord) -> Result<(), Invalid> {
    if r.inputs.len() > 16 {
        return Err(semantic("inputs", "at most 16 inputs"));
    }
    for (i, input) in r.inputs.iter().enumerate() {
        let f = |name: &str| format!("inputs[{i}].{name}");
        let kind = inputs::url::kind(&input.url).map_err(|e| malformed(f("url"), e))?;
        if r.inputs[..i].iter().any(|q| q.url == input.url) {
            return Err(semantic(f("url"), "duplicate input"));
        }
        if kind == inputs::url::Kind::Publish
            && r.inputs[..i].iter().any(|q| q.url.starts_with("publish:"))
        {
            return Err(semantic(f("url"), "only one publish:// input"));
        }
        if input.priority > 1000 {
            return Err(semantic(f("priority"), "must be 0 to 1000"));
        }
        max_chars(&f("comment"), &input.comment, 1024)?;
    }
    let fo = &r.failover;
    let range = |field: &str, v: f64, lo: f64, hi: f64| {
        if v.is_finite() && (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(semantic(
                format!("failover.{field}"),
                format!("must be {lo} to {hi} seconds"),
            ))
        }
    };
    range("packet_timeout_s", fo.packet_timeout_s, 1.0, 3600.0)?;
    range("failback_after_s", fo.failback_after_s, 0.0, 86_400.0)?;
    range("close_after_s", fo.close_after_s, 1.0, 86_400.0)?;
    range("retry.initial_s", fo.retry.initial_s, 0.1, 3600.0)?;
    if !(fo.retry.max_s.is_finite()
        && fo.retry.max_s >= fo.retry.initial_s
        && fo.retry.max_s <= 3600.0)
    {
        return Err(semantic(
            "failover.retry.max_s",
            "must be at least retry.initial_s and at most 3600",
        ));
    }
    Ok(())
}

/// The smallest size limit a recording takes (1 MiB), so a typo cannot make the recorder
/// start a file per keyframe or delete everything it writes.
const MIN_RECORDING_BYTES: u64 = 1 << 20;
/// 100 years: the longest rotation or age a recording takes.
const MAX_RECORDING_SECS: f64 = 100.0 * 365.25 * 86_400.0;

fn validate_recording(rec: &store::RecordingSpec) -> Result<(), Invalid> {
    // The format is an enum: a name other than `ts` never gets this far (the API and the
    // store refuse it while decoding).
    // Upper bounds keep every duration the recorder builds from these representable.
    if !(rec.rotate_s.is_finite() && (1.0..=MAX_RECORDING_SECS).contains(&rec.rotate_s)) {
        return Err(semantic(
            "recording.rotate_s",
            "must be a number of seconds, at least 1 and at most 100 years",
        ));
    }
    if !(rec.max_age_s.is_finite() && (0.0..=MAX_RECORDING_SECS).contains(&rec.max_age_s)) {
        return Err(semantic(
            "recording.max_age_s",
            "must be a number of seconds, 0 (keep files forever) to 100 years",
        ));
    }
    if rec.schedule.len() > 24 {
        return Err(semantic("recording.schedule", "at most 24 windows"));
    }
    for (i, w) in rec.schedule.iter().enumerate() {
        if store::parse_window(w).is_none() {
            return Err(semantic(
                format!("recording.schedule[{i}]"),
                "must be HH:MM-HH:MM (UTC), two different times of day",
            ));
        }
    }
    for (field, v) in [
        ("rotate_bytes", rec.rotate_bytes),
        ("max_bytes", rec.max_bytes),
    ] {
        if v != 0 && v < MIN_RECORDING_BYTES {
            return Err(semantic(
                format!("recording.{field}"),
                format!("must be 0 (no limit) or at least {MIN_RECORDING_BYTES} bytes (1 MiB)"),
            ));
        }
    }
    Ok(())
}

/// The most rungs a ladder takes: each is a full encode, and eight is past any ladder that
/// players use.
const MAX_RUNGS: usize = 8;
/// H.264 levels a rung may ask for (those x264 and the hardware encoders all take).
const LEVELS: &[&str] = &[
    "3.0", "3.1", "3.2", "4.0", "4.1", "4.2", "5.0", "5.1", "5.2",
];

/// Checks an ABR ladder. Every value ends up in an ffmpeg command line, so ranges are tight
/// and text is kept free of control characters.
fn validate_transcode(t: &store::TranscodeSpec) -> Result<(), Invalid> {
    if t.profiles.len() > MAX_RUNGS {
        return Err(semantic(
            "transcode.profiles",
            format!("at most {MAX_RUNGS} rungs"),
        ));
    }
    for (i, p) in t.profiles.iter().enumerate() {
        let f = |name: &str| format!("transcode.profiles[{i}].{name}");
        // The name becomes part of a stream code (`<code>_<name>`), so it keeps to characters
        // every protocol carries and never contains the `_` that separates it.
        if !(1..=16).contains(&p.name.len())
            || !p
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(malformed(f("name"), "must match [a-z0-9-]{1,16}"));
        }
        if t.profiles[..i].iter().any(|q| q.name == p.name) {
            return Err(semantic(f("name"), "duplicate rung name"));
        }
        if !p.is_source() && p.resolve().is_none() {
            let presets: Vec<&str> = store::PRESETS.iter().map(|p| p.0).collect();
            return Err(semantic(
                format!("transcode.profiles[{i}]"),
                format!(
                    "rung '{}' names no preset ({}) and lacks height or video_bitrate_kbps",
                    p.name,
                    presets.join(", ")
                ),
            ));
        }
        // Even sizes: 4:2:0 chroma halves both, and the encoders refuse odd ones.
        let size = |field: &str, v: u32, max: u32| {
            if v == 0 || ((16..=max).contains(&v) && v.is_multiple_of(2)) {
                Ok(())
            } else {
                Err(semantic(
                    f(field),
                    format!("must be 0 or an even number from 16 to {max}"),
                ))
            }
        };
        size("height", p.height, 4320)?;
        size("width", p.width, 7680)?;
        if p.video_bitrate_kbps != 0 && !(50..=100_000).contains(&p.video_bitrate_kbps) {
            return Err(semantic(
                f("video_bitrate_kbps"),
                "must be 0 or 50 to 100000 kbit/s",
            ));
        }
        if !(p.max_framerate == 0.0
            || (p.max_framerate.is_finite() && (1.0..=240.0).contains(&p.max_framerate)))
        {
            return Err(semantic(
                f("max_framerate"),
                "must be 0 (the source's) or 1 to 240 frames per second",
            ));
        }
        if !(p.profile.is_empty() || ["baseline", "main", "high"].contains(&p.profile.as_str())) {
            return Err(semantic(
                f("profile"),
                "must be empty, baseline, main or high",
            ));
        }
        if !(p.level.is_empty() || LEVELS.contains(&p.level.as_str())) {
            return Err(semantic(
                f("level"),
                format!("must be empty or one of {}", LEVELS.join(" ")),
            ));
        }
    }
    if t.enabled && !t.active() {
        return Err(semantic(
            "transcode.profiles",
            "an enabled ladder needs a rung other than source",
        ));
    }
    if !(t.keyframe_interval_s.is_finite() && (0.5..=20.0).contains(&t.keyframe_interval_s)) {
        return Err(semantic(
            "transcode.keyframe_interval_s",
            "must be 0.5 to 20 seconds",
        ));
    }
    if !(32..=512).contains(&t.audio.bitrate_kbps) {
        return Err(semantic(
            "transcode.audio.bitrate_kbps",
            "must be 32 to 512 kbit/s",
        ));
    }
    if let Some(w) = &t.watermark {
        // An absolute path: ffmpeg would also open URLs (http://, pipe:, ...) given here.
        if !w.path.starts_with('/') {
            return Err(semantic(
                "transcode.watermark.path",
                "must be an absolute path to an image on the gateway's disk",
            ));
        }
        max_chars("transcode.watermark.path", &w.path, 4096)?;
        if !(w.opacity.is_finite() && (0.0..=1.0).contains(&w.opacity)) {
            return Err(semantic(
                "transcode.watermark.opacity",
                "must be 0 (invisible) to 1 (opaque)",
            ));
        }
    }
    if let Some(text) = &t.text {
        let field = "transcode.text.text";
        if text.text.chars().count() > 256 {
            return Err(semantic(field, "longer than 256 characters"));
        }
        // Stricter than max_chars: a newline or tab has no place in a one-line overlay.
        if text.text.chars().any(char::is_control) {
            return Err(semantic(field, "contains control characters"));
        }
        if text.text.is_empty() && !text.timestamp {
            return Err(semantic(field, "must not be empty unless timestamp is on"));
        }
        if !(8..=200).contains(&text.font_size) {
            return Err(semantic(
                "transcode.text.font_size",
                "must be 8 to 200 pixels",
            ));
        }
    }
    Ok(())
}

/// `rtmp://host[:port]/app/key` or `rtmps://...`; anything else is refused.
fn check_push_url(field: &str, url: &str) -> Result<(), Invalid> {
    if url.len() > 2048 {
        return Err(malformed(field, "longer than 2048 bytes"));
    }
    let rest = url
        .strip_prefix("rtmp://")
        .or_else(|| url.strip_prefix("rtmps://"))
        .ok_or_else(|| malformed(field, "scheme must be rtmp:// or rtmps://"))?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| malformed(field, "missing /app/stream after the host"))?;
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
            if !port.is_empty() && port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(malformed(field, "invalid port"));
            }
            h
        }
        _ => authority,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(field, "invalid host"));
    }
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    if segments < 2 {
        return Err(malformed(field, "needs /app/stream after the host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(field, "contains whitespace"));
    }
    Ok(())
}
