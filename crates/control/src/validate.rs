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
    }
    validate_inputs(r)?;
    validate_recording(&r.recording)
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
