//! `/api/v1/templates`: stream templates. A stream created with `"template": NAME` starts from
//! one; a publish to an unknown code starting with a template's `prefix` gets a runtime stream
//! with its settings (see `control::templates`).

use crate::AppState;
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorCode};
use crate::streams::{
    FailoverInput, FailoverView, InputInput, InputView, ProtocolsInput, ProtocolsView, PushInput,
    PushView, RecordingSpecInput, RecordingSpecView, TranscodeSpecInput, TranscodeSpecView,
    input_records, input_views, nullable, push_views, restore_masked_inputs, restore_masked_urls,
};
use crate::time::rfc3339;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use control::TemplateError;
use serde::{Deserialize, Serialize};
use store::{
    Failover, Protocols, PutOutcome, RecordingSpec, StreamRecord, TemplateRecord, TranscodeSpec,
};
use utoipa::ToSchema;

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::NotFound(_) => ApiError::not_found(e.to_string()),
            TemplateError::Conflict(_) => ApiError::already_exists(e.to_string()),
            TemplateError::PrefixTaken { prefix, by } => {
                let owner = if by.is_empty() {
                    "another template".to_owned()
                } else {
                    format!("template {by:?}")
                };
                ApiError::field(
                    StatusCode::CONFLICT,
                    ErrorCode::PrefixOverlap,
                    "prefix",
                    format!("{prefix:?} is already the prefix of {owner}"),
                )
            }
            // Same shapes as for streams: 400 malformed, 422 semantic, 503 store down; the
            // name and the prefix have Open-Streamer's codes of their own.
            TemplateError::Invalid(inv) => {
                let code = match inv.field.as_str() {
                    "name" => ErrorCode::InvalidTemplateCode,
                    "prefix" => ErrorCode::InvalidPrefix,
                    _ => ErrorCode::ValidationFailed,
                };
                ApiError::invalid(inv, code)
            }
            TemplateError::Store(s) => ApiError::store(&s, "live streams"),
        }
    }
}

/// A whole template (POST, and PUT which replaces everything; omitted fields take defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateInput {
    /// `[A-Za-z0-9_-]{1,128}`. Required for POST; for PUT, if given, it must equal the path.
    name: Option<String>,
    /// A publish to an unknown code starting with this gets a runtime stream with the
    /// template's settings (`cam-` takes `cam-1`); unique among templates, and the longest
    /// matching prefix wins. Absent or null: only streams created with `"template"` use it.
    prefix: Option<String>,
    /// About the template; not copied to streams.
    #[serde(default)]
    description: String,
    /// Copied to streams.
    #[serde(default)]
    tags: Vec<String>,
    /// Copied to streams: their publishers need `?key=<stream_key>`.
    stream_key: Option<String>,
    /// An omitted switch is on.
    #[serde(default)]
    protocols: ProtocolsInput,
    #[serde(default)]
    push: Vec<PushInput>,
    /// Sources by priority; empty (default) means whoever publishes to the code. A template
    /// with a `prefix` needs no inputs or an enabled `publish://` one.
    #[serde(default)]
    inputs: Vec<InputInput>,
    #[serde(default)]
    failover: FailoverInput,
    /// Copied to streams.
    #[serde(default)]
    recording: RecordingSpecInput,
    /// Copied to streams.
    #[serde(default)]
    transcode: TranscodeSpecInput,
}

impl TemplateInput {
    fn into_record(self, name: String) -> TemplateRecord {
        TemplateRecord {
            name,
            prefix: self.prefix,
            description: self.description,
            tags: self.tags,
            stream_key: self.stream_key,
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

/// A partial change of a template: omitted fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    /// A string sets the prefix, `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    prefix: Option<Option<String>>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// A string sets the key, `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    stream_key: Option<Option<String>>,
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

impl TemplatePatch {
    fn apply(self, t: &mut TemplateRecord) {
        if let Some(v) = self.prefix {
            t.prefix = v;
        }
        if let Some(v) = self.description {
            t.description = v;
        }
        if let Some(v) = self.tags {
            t.tags = v;
        }
        if let Some(v) = self.stream_key {
            t.stream_key = v;
        }
        if let Some(p) = self.protocols {
            t.protocols = p.apply(t.protocols);
        }
        if let Some(v) = self.push {
            t.push = v.into_iter().map(PushInput::into_record).collect();
        }
        if let Some(v) = self.inputs {
            t.inputs = input_records(v);
        }
        if let Some(f) = self.failover {
            t.failover = f.apply(t.failover);
        }
        if let Some(v) = self.recording {
            t.recording = v.apply(std::mem::take(&mut t.recording));
        }
        if let Some(v) = self.transcode {
            t.transcode = v.apply(std::mem::take(&mut t.transcode));
        }
    }
}

/// The template's settings as a stream record, so the stream rules for masked URLs apply.
fn as_stream(t: &TemplateRecord) -> StreamRecord {
    control::stream_from_template(t, &t.name)
}

/// Push and input URLs are write-only here as on streams: a masked URL sent back keeps the
/// configured one.
fn restore_urls(
    push: Option<&mut Vec<PushInput>>,
    inputs: Option<&mut Vec<InputInput>>,
    old: Option<&TemplateRecord>,
) -> Result<(), ApiError> {
    let old = old.map(as_stream);
    if let Some(push) = push {
        restore_masked_urls(push, old.as_ref())?;
    }
    if let Some(inputs) = inputs {
        restore_masked_inputs(inputs, old.as_ref())?;
    }
    Ok(())
}

/// A template as read: secrets masked like on streams.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    name: String,
    prefix: Option<String>,
    description: String,
    tags: Vec<String>,
    /// Whether streams made from it need `?key=`; the key is write-only and never read back.
    has_stream_key: bool,
    protocols: ProtocolsView,
    push: Vec<PushView>,
    inputs: Vec<InputView>,
    failover: FailoverView,
    recording: RecordingSpecView,
    transcode: TranscodeSpecView,
    /// Runtime streams it made for publishers that exist now, by code.
    runtime_streams: Vec<String>,
    created_at: String,
    updated_at: String,
}

fn template_view(state: &AppState, t: &TemplateRecord) -> TemplateView {
    let runtime_streams = state
        .control
        .runtime_streams()
        .iter()
        .filter(|r| state.control.runtime_template(&r.code).as_deref() == Some(&t.name))
        .map(|r| r.code.clone())
        .collect();
    TemplateView {
        name: t.name.clone(),
        prefix: t.prefix.clone(),
        description: t.description.clone(),
        tags: t.tags.clone(),
        has_stream_key: t.stream_key.is_some(),
        protocols: t.protocols.into(),
        push: push_views(&t.push),
        inputs: input_views(&t.inputs),
        failover: (&t.failover).into(),
        recording: (&t.recording).into(),
        transcode: (&t.transcode).into(),
        runtime_streams,
        created_at: rfc3339(t.created_at_ms),
        updated_at: rfc3339(t.updated_at_ms),
    }
}

/// Every template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    data: Vec<TemplateView>,
    total: usize,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if hub::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            ErrorCode::InvalidTemplateCode,
            "name",
            "must match [A-Za-z0-9_-]{1,128}",
        ))
    }
}

/// Lists templates by name.
#[utoipa::path(
    get,
    path = "/templates",
    tag = "templates",
    responses(
        (status = 200, description = "Templates, by name", body = TemplateList),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn list_templates(State(state): State<AppState>) -> Json<TemplateList> {
    let data: Vec<TemplateView> = state
        .control
        .templates()
        .iter()
        .map(|t| template_view(&state, t))
        .collect();
    let total = data.len();
    Json(TemplateList { data, total })
}

/// Creates a template; the name goes in the body.
#[utoipa::path(
    post,
    path = "/templates",
    tag = "templates",
    request_body = TemplateInput,
    responses(
        (status = 201, description = "Created", body = TemplateView),
        (status = 400, description = "Malformed body, name or prefix", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 409, description = "The name, or the prefix, is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn create_template(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TemplateInput>,
) -> Result<Response, ApiError> {
    let mut body = body;
    let name = body
        .name
        .clone()
        .ok_or_else(|| ApiError::bad_field(ErrorCode::InvalidTemplateCode, "name", "required"))?;
    check_name(&name)?;
    restore_urls(Some(&mut body.push), Some(&mut body.inputs), None)?;
    let t = state
        .control
        .create_template(body.into_record(name))
        .await?;
    Ok((StatusCode::CREATED, Json(template_view(&state, &t))).into_response())
}

/// One template (secrets masked).
#[utoipa::path(
    get,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown template", body = ErrorBody),
    )
)]
pub async fn get_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    check_name(&name)?;
    let t = state
        .control
        .template(&name)
        .ok_or_else(|| ApiError::from(TemplateError::NotFound(name)))?;
    Ok(Json(template_view(&state, &t)))
}

/// Creates (201) or replaces (200) a template; omitted fields take their defaults. Streams
/// already made from it keep their settings.
#[utoipa::path(
    put,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    request_body = TemplateInput,
    responses(
        (status = 200, description = "Replaced", body = TemplateView),
        (status = 201, description = "Created", body = TemplateView),
        (status = 400, description = "Malformed body, name or prefix", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 409, description = "The prefix is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn put_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<TemplateInput>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidTemplateCode,
            "name",
            "differs from the path",
        ));
    }
    let mut body = body;
    let old = state.control.template(&name);
    restore_urls(Some(&mut body.push), Some(&mut body.inputs), old.as_deref())?;
    let (t, outcome) = state.control.put_template(body.into_record(name)).await?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced => StatusCode::OK,
    };
    Ok((status, Json(template_view(&state, &t))).into_response())
}

/// Changes some fields of a template; omitted fields are kept. Streams already made from it
/// keep their settings.
#[utoipa::path(
    patch,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    request_body = TemplatePatch,
    responses(
        (status = 200, description = "Changed", body = TemplateView),
        (status = 400, description = "Malformed body, name or prefix", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown template", body = ErrorBody),
        (status = 409, description = "The prefix is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn patch_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<TemplatePatch>,
) -> Result<Json<TemplateView>, ApiError> {
    check_name(&name)?;
    let mut patch = patch;
    let old = state.control.template(&name);
    restore_urls(patch.push.as_mut(), patch.inputs.as_mut(), old.as_deref())?;
    let t = state
        .control
        .update_template(&name, |t| patch.apply(t))
        .await?;
    Ok(Json(template_view(&state, &t)))
}

/// Deletes a template. Streams made from it, runtime ones included, carry on unchanged.
#[utoipa::path(
    delete,
    path = "/templates/{name}",
    tag = "templates",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown template", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    state.control.delete_template(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests;
