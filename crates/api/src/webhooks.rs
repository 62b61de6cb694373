//! `/api/v1/hooks`: the event sinks (signed, batched HTTP webhooks and JSON-lines files) with
//! their delivery counters, and `POST /hooks/{id}/test` to check a receiver.
//!
//! Not to be confused with the nginx-rtmp style `hooks.on_*` of the config file, which decide
//! admissions; these only report what happened. Secrets are write-only (`has_secret`), and
//! URLs show without their password and query, as push URLs do.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorCode};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use events::{HookDefaults, HookError, HookStatus, SinkStats};
use serde::{Deserialize, Deserializer, Serialize};
use store::{HookKind, HookRecord};
use utoipa::ToSchema;

/// A sink to create (`POST /hooks`) or to create or replace (`PUT /hooks/{id}`); omitted
/// settings take the server's defaults (`events.*` in the configuration).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookInput {
    /// `[A-Za-z0-9_-]{1,64}`; generated for POST when omitted; for PUT, if given, it must
    /// equal the path.
    id: Option<String>,
    name: Option<String>,
    /// `http` or `file`; by default `file` when `path` is given, else `http`.
    kind: Option<String>,
    /// `http(s)://...` receiver of `POST`s of JSON arrays of events (kind `http`).
    url: Option<String>,
    /// File under the server's events directory to append JSON lines to (kind `file`).
    path: Option<String>,
    /// Key of `X-Ferrocast-Signature: sha256=<hex HMAC-SHA256 of the body>` (kind `http`);
    /// write-only.
    secret: Option<String>,
    /// Default true.
    enabled: Option<bool>,
    /// Event types (`stream.started`) and prefixes (`input.*`); empty or omitted: all.
    events: Option<Vec<String>>,
    /// Stream codes (`cam1`) and prefixes (`cam-*`); empty or omitted: all.
    streams: Option<Vec<String>>,
    /// Most events in one delivery (1..=10000).
    batch_max: Option<u32>,
    /// Longest an event waits for its batch to fill, ms (0..=60000).
    batch_delay_ms: Option<u32>,
    /// Most events queued; beyond it the oldest are dropped and counted (1..=1000000).
    queue_max: Option<u32>,
    /// Time allowed for one delivery attempt, ms (100..=60000).
    timeout_ms: Option<u32>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A partial change: omitted fields are kept.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookPatch {
    name: Option<String>,
    /// Makes it (or keeps it) an HTTP sink with this URL.
    url: Option<String>,
    /// Makes it (or keeps it) a file sink with this path; its secret is removed.
    path: Option<String>,
    /// A string sets the signing key, `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    secret: Option<Option<String>>,
    enabled: Option<bool>,
    /// Replaces the whole list.
    events: Option<Vec<String>>,
    /// Replaces the whole list.
    streams: Option<Vec<String>>,
    batch_max: Option<u32>,
    batch_delay_ms: Option<u32>,
    queue_max: Option<u32>,
    timeout_ms: Option<u32>,
}

/// The URL a client sent back: a masked one (as read) that matches the configured URL means
/// "keep it"; one that matches nothing is refused rather than posted to a literal `****`.
fn restore_url(url: String, old: Option<&HookRecord>) -> Result<String, ApiError> {
    if !url.contains("****") {
        return Ok(url);
    }
    match old.filter(|r| r.kind == HookKind::Http) {
        Some(r) if events::masked_url(&r.target) == url => Ok(r.target.clone()),
        _ => Err(ApiError::unprocessable(
            "url",
            "a masked URL that matches no configured one; send the full URL",
        )),
    }
}

impl HookInput {
    fn into_record(
        self,
        id: String,
        defaults: HookDefaults,
        old: Option<&HookRecord>,
    ) -> Result<HookRecord, ApiError> {
        let kind = match (self.kind.as_deref(), &self.url, &self.path) {
            (Some(k), _, _) => HookKind::parse(k).ok_or_else(|| {
                ApiError::bad_field(ErrorCode::ValidationFailed, "kind", "expected http or file")
            })?,
            (None, None, Some(_)) => HookKind::File,
            (None, _, _) => HookKind::Http,
        };
        let target = match kind {
            HookKind::Http => {
                if self.path.is_some() {
                    return Err(ApiError::bad_field(
                        ErrorCode::ValidationFailed,
                        "path",
                        "only for kind file",
                    ));
                }
                let url = self.url.ok_or_else(|| {
                    ApiError::bad_field(
                        ErrorCode::ValidationFailed,
                        "url",
                        "required for kind http",
                    )
                })?;
                restore_url(url, old)?
            }
            HookKind::File => {
                if self.url.is_some() {
                    return Err(ApiError::bad_field(
                        ErrorCode::ValidationFailed,
                        "url",
                        "only for kind http",
                    ));
                }
                self.path.ok_or_else(|| {
                    ApiError::bad_field(
                        ErrorCode::ValidationFailed,
                        "path",
                        "required for kind file",
                    )
                })?
            }
        };
        Ok(HookRecord {
            id,
            name: self.name.unwrap_or_default(),
            kind,
            target,
            secret: self.secret,
            enabled: self.enabled.unwrap_or(true),
            events: self.events.unwrap_or_default(),
            streams: self.streams.unwrap_or_default(),
            batch_max: self.batch_max.unwrap_or(defaults.batch_max),
            batch_delay_ms: self.batch_delay_ms.unwrap_or(defaults.batch_delay_ms),
            queue_max: self.queue_max.unwrap_or(defaults.queue_max),
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            created_at_ms: 0,
            updated_at_ms: 0,
        })
    }
}

impl HookPatch {
    /// Checks what can be checked before the change is applied (a masked URL).
    fn prepare(&mut self, old: &HookRecord) -> Result<(), ApiError> {
        if self.url.is_some() && self.path.is_some() {
            return Err(ApiError::bad_field(
                ErrorCode::ValidationFailed,
                "path",
                "give url or path, not both",
            ));
        }
        if let Some(url) = self.url.take() {
            self.url = Some(restore_url(url, Some(old))?);
        }
        Ok(())
    }

    fn apply(self, r: &mut HookRecord) {
        if let Some(v) = self.name {
            r.name = v;
        }
        if let Some(url) = self.url {
            r.kind = HookKind::Http;
            r.target = url;
        }
        if let Some(path) = self.path {
            r.kind = HookKind::File;
            r.target = path;
            r.secret = None;
        }
        if let Some(v) = self.secret {
            r.secret = v;
        }
        if let Some(v) = self.enabled {
            r.enabled = v;
        }
        if let Some(v) = self.events {
            r.events = v;
        }
        if let Some(v) = self.streams {
            r.streams = v;
        }
        if let Some(v) = self.batch_max {
            r.batch_max = v;
        }
        if let Some(v) = self.batch_delay_ms {
            r.batch_delay_ms = v;
        }
        if let Some(v) = self.queue_max {
            r.queue_max = v;
        }
        if let Some(v) = self.timeout_ms {
            r.timeout_ms = v;
        }
    }
}

/// Delivery numbers of a sink.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookRuntimeView {
    /// Events waiting in the queue.
    queued: usize,
    /// Events in the batch being delivered or waiting for its retry (1, 5, then 30 s).
    in_flight: usize,
    /// Events delivered (2xx, or written).
    delivered: u64,
    /// Events in batches given up after the last retry.
    failed: u64,
    /// Events dropped because the queue was full (the oldest go first).
    dropped: u64,
    /// Attempts that were retries.
    retries: u64,
    /// Status of the last HTTP answer.
    last_status: Option<u16>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    last_delivery_at: Option<String>,
}

impl From<SinkStats> for HookRuntimeView {
    fn from(s: SinkStats) -> Self {
        HookRuntimeView {
            queued: s.queued,
            in_flight: s.in_flight,
            delivered: s.delivered,
            failed: s.failed,
            dropped: s.dropped,
            retries: s.retries,
            last_status: s.last_status,
            last_error: s.last_error,
            last_error_at: s.last_error_at,
            last_delivery_at: s.last_delivery_at,
        }
    }
}

/// A sink as the API shows it: the secret only as `has_secret`, the URL masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookView {
    id: String,
    name: String,
    /// `http` or `file`.
    kind: &'static str,
    /// Kind `http`: the receiver, password and query masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// Kind `file`: the path under the events directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    has_secret: bool,
    enabled: bool,
    events: Vec<String>,
    streams: Vec<String>,
    batch_max: u32,
    batch_delay_ms: u32,
    queue_max: u32,
    timeout_ms: u32,
    created_at: String,
    updated_at: String,
    runtime: HookRuntimeView,
}

fn time(ms: i64) -> String {
    crate::time::rfc3339(ms)
}

fn view(s: HookStatus) -> HookView {
    let r = s.record;
    let (url, path) = match r.kind {
        HookKind::Http => (Some(events::masked_url(&r.target)), None),
        HookKind::File => (None, Some(r.target)),
    };
    HookView {
        id: r.id,
        name: r.name,
        kind: r.kind.as_str(),
        url,
        path,
        has_secret: r.secret.is_some(),
        enabled: r.enabled,
        events: r.events,
        streams: r.streams,
        batch_max: r.batch_max,
        batch_delay_ms: r.batch_delay_ms,
        queue_max: r.queue_max,
        timeout_ms: r.timeout_ms,
        created_at: time(r.created_at_ms),
        updated_at: time(r.updated_at_ms),
        runtime: s.stats.into(),
    }
}

/// Every sink.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookList {
    data: Vec<HookView>,
    total: usize,
}

/// What `POST /hooks/{id}/test` sent and how it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookTestView {
    /// Delivered: a 2xx answer, or the line written.
    ok: bool,
    /// The receiver's HTTP status, when it answered.
    status: Option<u16>,
    /// Why it failed.
    error: Option<String>,
    /// From sending to the answer or the failure.
    latency_ms: u64,
    /// The `hook.test` event sent (as the one element of the JSON array, or the line).
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

impl From<HookError> for ApiError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::NotFound(_) => ApiError::not_found(e.to_string()),
            HookError::Conflict(_) => ApiError::already_exists(e.to_string()),
            HookError::Invalid(inv) => ApiError::unprocessable(inv.field, inv.reason),
            HookError::Store(ref s) => ApiError::store(s, "running hooks"),
            HookError::Client(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                e.to_string(),
            ),
        }
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if events::valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            ErrorCode::InvalidId,
            "id",
            "must match [A-Za-z0-9_-]{1,64}",
        ))
    }
}

/// Lists the event sinks with their delivery numbers.
#[utoipa::path(
    get,
    path = "/hooks",
    tag = "hooks",
    responses(
        (status = 200, description = "Sinks, by id", body = HookList),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn list_hooks(State(state): State<AppState>) -> Json<HookList> {
    let data: Vec<HookView> = state.webhooks.list().into_iter().map(view).collect();
    let total = data.len();
    Json(HookList { data, total })
}

/// Creates an event sink; the id goes in the body or is generated.
#[utoipa::path(
    post,
    path = "/hooks",
    tag = "hooks",
    request_body = HookInput,
    responses(
        (status = 201, description = "Created", body = HookView),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 409, description = "The id exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn create_hook(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<HookInput>,
) -> Result<Response, ApiError> {
    let id = match body.id.clone() {
        Some(id) => {
            check_id(&id)?;
            id
        }
        None => events::new_id(),
    };
    let defaults = state.webhooks.settings().defaults;
    let record = body.into_record(id, defaults, None)?;
    let created = state.webhooks.create(record).await?;
    Ok((StatusCode::CREATED, Json(view(created))).into_response())
}

/// One event sink.
#[utoipa::path(
    get,
    path = "/hooks/{id}",
    tag = "hooks",
    params(("id" = String, Path, description = "Sink id")),
    responses(
        (status = 200, description = "The sink", body = HookView),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown sink", body = ErrorBody),
    )
)]
pub async fn get_hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HookView>, ApiError> {
    check_id(&id)?;
    let s = state
        .webhooks
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("hook {id:?} not found")))?;
    Ok(Json(view(s)))
}

/// Creates (201) or replaces (200) an event sink; omitted settings take their defaults. A
/// replaced sink keeps its queued events and its counters.
#[utoipa::path(
    put,
    path = "/hooks/{id}",
    tag = "hooks",
    params(("id" = String, Path, description = "Sink id")),
    request_body = HookInput,
    responses(
        (status = 200, description = "Replaced", body = HookView),
        (status = 201, description = "Created", body = HookView),
        (status = 400, description = "Malformed body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn put_hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<HookInput>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    if body.id.as_deref().is_some_and(|i| i != id) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidId,
            "id",
            "differs from the path",
        ));
    }
    let old = state.webhooks.get(&id).map(|s| s.record);
    let defaults = state.webhooks.settings().defaults;
    let record = body.into_record(id, defaults, old.as_ref())?;
    let (s, outcome) = state.webhooks.put(record).await?;
    let status = match outcome {
        store::PutOutcome::Created => StatusCode::CREATED,
        store::PutOutcome::Replaced => StatusCode::OK,
    };
    Ok((status, Json(view(s))).into_response())
}

/// Changes some settings of an event sink; omitted fields are kept.
#[utoipa::path(
    patch,
    path = "/hooks/{id}",
    tag = "hooks",
    params(("id" = String, Path, description = "Sink id")),
    request_body = HookPatch,
    responses(
        (status = 200, description = "Changed", body = HookView),
        (status = 400, description = "Malformed body or id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown sink", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule is broken", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn patch_hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<HookPatch>,
) -> Result<Json<HookView>, ApiError> {
    check_id(&id)?;
    let old = state
        .webhooks
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("hook {id:?} not found")))?;
    let mut patch = patch;
    patch.prepare(&old.record)?;
    let s = state.webhooks.update(&id, |r| patch.apply(r)).await?;
    Ok(Json(view(s)))
}

/// Deletes an event sink; the events it had queued are dropped.
#[utoipa::path(
    delete,
    path = "/hooks/{id}",
    tag = "hooks",
    params(("id" = String, Path, description = "Sink id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown sink", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn delete_hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    state.webhooks.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends one `hook.test` event to this sink only, now, with one attempt (no queue, no
/// filters, no retries; a disabled sink too), and answers how it went: 200 either way, with
/// `ok`, the receiver's status or the error, and the latency.
#[utoipa::path(
    post,
    path = "/hooks/{id}/test",
    tag = "hooks",
    params(("id" = String, Path, description = "Sink id")),
    responses(
        (status = 200, description = "The delivery's outcome", body = HookTestView),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown sink", body = ErrorBody),
    )
)]
pub async fn test_hook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<HookTestView>, ApiError> {
    check_id(&id)?;
    let (d, event) = state.webhooks.test(&id).await?;
    Ok(Json(HookTestView {
        ok: d.ok,
        status: d.status,
        error: d.error,
        latency_ms: d.latency_ms,
        event: serde_json::to_value(&event).unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests;
