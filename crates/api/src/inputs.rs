//! The runtime side of a stream's inputs: their state and switch history in the stream view,
//! and the manual switch and restart.

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode, LenientJson};
use crate::streams::check_code;
use crate::time::{rfc3339, system_ms};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One recorded input failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputErrorView {
    message: String,
    at: String,
}

/// Live state of one input.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputStatusView {
    /// Position in the stream's `inputs` list.
    index: usize,
    /// The URL with its secrets masked.
    url: String,
    kind: &'static str,
    priority: u32,
    enabled: bool,
    /// `stopped`, `connecting`, `up`, `down` or `retrying`.
    state: &'static str,
    /// Whether readers see this input now.
    active: bool,
    /// Connection attempts since the input started.
    attempts: u64,
    /// Up to five, newest first.
    last_errors: Vec<InputErrorView>,
    last_packet_at: Option<String>,
    next_retry_at: Option<String>,
    bitrate_kbps: u64,
    bytes_in: u64,
    frames_in: u64,
}

/// One change of the active input.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchView {
    at: String,
    /// Index of the input before, if any.
    from: Option<usize>,
    /// Index of the input after; null when every input went down.
    to: Option<usize>,
    /// `started`, `input N down: ...`, `failback`, `manual`, `restart`, ...
    reason: String,
}

/// Live state of a stream's inputs.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputsRuntimeView {
    /// Index of the input readers see.
    active: Option<usize>,
    /// Index chosen by `POST .../switch`, kept until that input goes down.
    pinned: Option<usize>,
    inputs: Vec<InputStatusView>,
    /// Oldest first, at most 32.
    history: Vec<SwitchView>,
}

impl From<inputs::StreamInputs> for InputsRuntimeView {
    fn from(s: inputs::StreamInputs) -> Self {
        let time = |t: std::time::SystemTime| rfc3339(system_ms(t));
        InputsRuntimeView {
            active: s.active,
            pinned: s.pinned,
            inputs: s
                .inputs
                .into_iter()
                .map(|i| InputStatusView {
                    index: i.index,
                    // Masked by the input manager, an edge pull's cluster key included.
                    url: i.url,
                    kind: i.kind,
                    priority: i.priority,
                    enabled: i.enabled,
                    state: i.state.as_str(),
                    active: i.active,
                    attempts: i.attempts,
                    last_errors: i
                        .last_errors
                        .into_iter()
                        .map(|e| InputErrorView {
                            message: e.message,
                            at: time(e.at),
                        })
                        .collect(),
                    last_packet_at: i.last_packet_at.map(time),
                    next_retry_at: i.next_retry_at.map(time),
                    bitrate_kbps: i.bitrate_kbps,
                    bytes_in: i.bytes_in,
                    frames_in: i.frames_in,
                })
                .collect(),
            history: s
                .history
                .into_iter()
                .map(|h| SwitchView {
                    at: time(h.at),
                    from: h.from,
                    to: h.to,
                    reason: h.reason,
                })
                .collect(),
        }
    }
}

/// The runtime view of `code`'s inputs, if it runs any.
pub(crate) fn runtime(state: &AppState, code: &str) -> Option<InputsRuntimeView> {
    state
        .control
        .inputs()
        .and_then(|m| m.status(code))
        .map(Into::into)
}

/// Which input to make active.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchInput {
    /// The priority of the input (as configured).
    priority: u32,
}

/// The manager running `code`'s inputs. Without one the request is refused (409) with the
/// code `refused` picks for the stream.
fn manager(
    state: &AppState,
    code: &str,
    refused: impl FnOnce(&store::StreamRecord) -> ErrorCode,
) -> Result<inputs::InputManager, ApiError> {
    check_code(code)?;
    let Some(record) = state.control.get(code) else {
        return Err(ApiError::not_found(format!("stream {code:?} not found")));
    };
    if let Some(m) = state.control.inputs().filter(|m| m.has(code)) {
        return Ok(m);
    }
    let message = if record.disabled {
        "the stream is disabled, so it runs no inputs"
    } else {
        "the stream runs no inputs (none configured)"
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        refused(&record),
        message,
    ))
}

/// Makes the input with `priority` active now and keeps it until it goes down (failback is
/// suspended meanwhile).
#[utoipa::path(
    post,
    path = "/streams/{code}/switch",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    request_body = SwitchInput,
    responses(
        (status = 200, description = "Switched; the inputs' state", body = InputsRuntimeView),
        (status = 400, description = "Malformed body or code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 409, description = "SWITCH_FAILED: no such input, it delivers no media, or the stream runs no inputs", body = ErrorBody),
    )
)]
pub async fn switch_input(
    State(state): State<AppState>,
    Path(code): Path<String>,
    LenientJson(body): LenientJson<SwitchInput>,
) -> Result<Json<Option<InputsRuntimeView>>, ApiError> {
    let m = manager(&state, &code, |_| ErrorCode::SwitchFailed)?;
    m.switch(&code, body.priority).await.map_err(|e| {
        // Open-Streamer's clients branch on SWITCH_FAILED for every refused switch.
        ApiError::new(StatusCode::CONFLICT, ErrorCode::SwitchFailed, e.to_string())
    })?;
    Ok(Json(runtime(&state, &code)))
}

/// Stops and starts every input of the stream again (readers see the stream end and resume).
#[utoipa::path(
    post,
    path = "/streams/{code}/restart",
    tag = "streams",
    params(("code" = String, Path, description = "Stream code")),
    responses(
        (status = 202, description = "Restarting; the inputs' state", body = InputsRuntimeView),
        (status = 400, description = "Invalid code", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown stream", body = ErrorBody),
        (status = 409, description = "CONFLICT: the stream runs no inputs; STREAM_DISABLED: it is disabled", body = ErrorBody),
    )
)]
pub async fn restart_inputs(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<(StatusCode, Json<Option<InputsRuntimeView>>), ApiError> {
    let m = manager(&state, &code, |r| {
        if r.disabled {
            ErrorCode::StreamDisabled
        } else {
            ErrorCode::Conflict
        }
    })?;
    m.restart(&code)
        .await
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(runtime(&state, &code))))
}
