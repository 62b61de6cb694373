//! `/api/v1/sessions`: every publisher and reader on every protocol; kick any of them.

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::time::{rfc3339, system_ms};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One connected publisher or reader.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    id: u64,
    stream: String,
    protocol: String,
    /// `publisher` or `reader`.
    role: &'static str,
    remote_addr: Option<String>,
    started_at: String,
    /// Payload bytes received (publisher) or sent (reader).
    bytes: u64,
    /// Id an external system (the JWT callback) gave a publish session, if any.
    external_id: Option<String>,
}

/// The API's view of a hub session.
pub(crate) fn session_view(s: hub::SessionInfo) -> SessionView {
    SessionView {
        id: s.id,
        stream: s.stream,
        protocol: s.protocol.to_owned(),
        role: s.role.as_str(),
        remote_addr: s.remote_addr.map(|a| a.to_string()),
        started_at: rfc3339(system_ms(s.started_at)),
        bytes: s.bytes,
        external_id: s.external_id,
    }
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    data: Vec<SessionView>,
    total: usize,
}

/// Filters for the session list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only sessions of this stream code.
    stream: Option<String>,
    /// Only sessions of this protocol (`rtmp`, `mpegts`, ...).
    protocol: Option<String>,
}

/// Lists sessions, oldest first.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    params(SessionQuery),
    responses(
        (status = 200, description = "Sessions", body = SessionList),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    query: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let data: Vec<SessionView> = state
        .hub
        .sessions()
        .into_iter()
        .filter(|s| q.stream.as_deref().is_none_or(|c| c == s.stream))
        .filter(|s| q.protocol.as_deref().is_none_or(|p| p == s.protocol))
        .map(session_view)
        .collect();
    let total = data.len();
    Ok(Json(SessionList { data, total }))
}

/// Disconnects one session on any protocol.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    params(("id" = u64, Path, description = "Session id")),
    responses(
        (status = 204, description = "Kicked"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown session", body = ErrorBody),
    )
)]
pub async fn kick_session(
    State(state): State<AppState>,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|_| {
        ApiError::bad_field(ErrorCode::InvalidId, "id", "expected a session number")
    })?;
    if state.hub.kick_session(id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("session {id} not found")))
    }
}

/// Which broadcast `close` may end.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CloseQuery {
    /// The publisher session's `external_id` (given by the signed callback).
    stream_id: String,
}

/// Disconnects the publisher of a stream (Redis `kill-session>CODE`), on whichever node of
/// the cluster holds it.
#[utoipa::path(
    post,
    path = "/streams/{code}/kill",
    tag = "sessions",
    params(("code" = String, Path, description = "Stream code")),
    responses(
        (status = 204, description = "Publisher disconnected"),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No live publisher", body = ErrorBody),
        (status = 503, description = "The node holding it did not answer", body = ErrorBody),
    )
)]
pub async fn kill_publisher(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Published on another node of the cluster: that node disconnects it. (A publisher
    // here may be only this node's pull of it, which the kill is not about.)
    if let Some(cluster) = &state.cluster
        && cluster
            .locate(&code)
            .await
            .is_some_and(|node| node != cluster.node_id())
    {
        return match cluster.kill_remote(&code).await {
            Ok(node) => {
                tracing::info!(stream = %code, node = %node, "publisher disconnected on another node");
                Ok(StatusCode::NO_CONTENT)
            }
            Err(cluster::KillError::NotLive) => Err(ApiError::not_found(format!(
                "stream {code:?} has no live publisher"
            ))),
            Err(cluster::KillError::Unavailable(why)) => Err(ApiError::unavailable(format!(
                "stream {code:?} is published on another node, which could not be reached: {why}"
            ))),
        };
    }
    if state.hub.kick_publisher(&code) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "stream {code:?} has no live publisher"
        )))
    }
}

/// Disconnects the publisher of a stream if its session is `stream_id` (Redis
/// `close-stream>CODE|STREAM_ID`).
#[utoipa::path(
    post,
    path = "/streams/{code}/close",
    tag = "sessions",
    params(("code" = String, Path, description = "Stream code"), CloseQuery),
    responses(
        (status = 204, description = "Publisher disconnected"),
        (status = 400, description = "Missing stream_id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "No live publisher with that stream_id", body = ErrorBody),
    )
)]
pub async fn close_publisher(
    State(state): State<AppState>,
    Path(code): Path<String>,
    query: Result<Query<CloseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) =
        query.map_err(|_| ApiError::bad_field(ErrorCode::InvalidQuery, "stream_id", "required"))?;
    if state.hub.kick_publisher_with_id(&code, &q.stream_id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "stream {code:?} has no live publisher with stream_id {:?}",
            q.stream_id
        )))
    }
}
