//! `/api/v1/sessions`: every publisher and reader on every protocol; kick any of them. In a
//! cluster the list covers every node (each asked over its own API) and a kick or close goes
//! to the node that holds the session.

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::time::{rfc3339, system_ms};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One connected publisher or reader.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The node it is connected to, in a cluster. Session ids are unique per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    id: u64,
    stream: String,
    protocol: String,
    /// `publisher` or `reader`.
    role: String,
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
        node: None,
        id: s.id,
        stream: s.stream,
        protocol: s.protocol.to_owned(),
        role: s.role.as_str().to_owned(),
        remote_addr: s.remote_addr.map(|a| a.to_string()),
        started_at: rfc3339(system_ms(s.started_at)),
        bytes: s.bytes,
        external_id: s.external_id,
    }
}

/// A page of sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    data: Vec<SessionView>,
    total: usize,
    /// Nodes of the cluster that did not answer: their sessions are missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unreachable: Vec<String>,
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
    /// `cluster` (the default): every node's sessions; `node`: the node asked only.
    scope: Option<String>,
}

/// Which node a kick or close is for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NodeQuery {
    /// The node the session is on (its `node` in the list); absent: the node asked.
    node: Option<String>,
}

/// The caller's `Authorization`, passed on to the other nodes it makes this node ask.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The HTTP base URL of node `id` of the cluster, when it is another node than this one;
/// `Ok(None)` for this node (or no cluster).
async fn other_node(state: &AppState, id: Option<&str>) -> Result<Option<String>, ApiError> {
    let (Some(id), Some(cluster)) = (id, &state.cluster) else {
        return Ok(None);
    };
    if id == cluster.node_id() {
        return Ok(None);
    }
    match cluster.http_url(id).await {
        Some(base) => Ok(Some(base)),
        None => Err(ApiError::not_found(format!(
            "node {id:?} is not in the cluster (or Redis is away)"
        ))),
    }
}

/// Carries a kick or close out on node `base`: its answer, passed on.
async fn ask_node(
    state: &AppState,
    method: cluster::Method,
    base: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &HeaderMap,
) -> Result<StatusCode, ApiError> {
    let edge = state
        .edge
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("no cluster".to_owned()))?;
    let (status, body) = edge
        .ask(method, base, path, query, authorization(headers))
        .await
        .map_err(|e| ApiError::unavailable(format!("the node did not answer: {e}")))?;
    match status {
        204 => Ok(StatusCode::NO_CONTENT),
        404 => Err(ApiError::not_found(remote_message(&body))),
        _ => Err(ApiError::unavailable(format!(
            "the node answered {status}: {}",
            remote_message(&body)
        ))),
    }
}

/// The message of another node's error body (its text when it is not one).
fn remote_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
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
    headers: HeaderMap,
    query: Result<Query<SessionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let whole_cluster = match q.scope.as_deref() {
        None | Some("cluster") => true,
        Some("node") => false,
        Some(other) => {
            return Err(ApiError::bad_field(
                ErrorCode::InvalidQuery,
                "scope",
                format!("expected cluster or node, not {other:?}"),
            ));
        }
    };
    let node = state.cluster.as_ref().map(|c| c.node_id().to_owned());
    let mut data: Vec<SessionView> = state
        .hub
        .sessions()
        .into_iter()
        .filter(|s| q.stream.as_deref().is_none_or(|c| c == s.stream))
        .filter(|s| q.protocol.as_deref().is_none_or(|p| p == s.protocol))
        .map(|s| SessionView {
            node: node.clone(),
            ..session_view(s)
        })
        .collect();
    let mut unreachable = Vec::new();
    if whole_cluster && let (Some(cluster), Some(edge)) = (&state.cluster, &state.edge) {
        let Some(nodes) = cluster.nodes().await else {
            return Err(ApiError::unavailable(
                "Redis is away: the cluster's nodes are unknown (scope=node lists this node's)"
                    .to_owned(),
            ));
        };
        let mut query = vec![("scope", "node")];
        query.extend(q.stream.as_deref().map(|c| ("stream", c)));
        query.extend(q.protocol.as_deref().map(|p| ("protocol", p)));
        let asked = nodes
            .iter()
            .filter(|(id, _)| id != cluster.node_id())
            .map(|(id, base)| {
                let query = &query;
                let auth = authorization(&headers);
                async move {
                    let answer = edge
                        .ask(cluster::Method::GET, base, "/api/v1/sessions", query, auth)
                        .await;
                    (id, answer)
                }
            });
        for (id, answer) in futures_util::future::join_all(asked).await {
            match answer
                .map(|(status, body)| (status, serde_json::from_slice::<SessionList>(&body)))
            {
                Ok((200, Ok(list))) => data.extend(list.data.into_iter().map(|s| SessionView {
                    node: Some(id.clone()),
                    ..s
                })),
                other => {
                    tracing::warn!(node = %id, answer = ?other.map(|(s, _)| s), "sessions: a node of the cluster did not answer");
                    unreachable.push(id.clone());
                }
            }
        }
        data.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    }
    let total = data.len();
    Ok(Json(SessionList {
        data,
        total,
        unreachable,
    }))
}

/// Disconnects one session on any protocol.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    params(("id" = u64, Path, description = "Session id"), NodeQuery),
    responses(
        (status = 204, description = "Kicked"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
        (status = 404, description = "Unknown session or node", body = ErrorBody),
        (status = 503, description = "The node holding it did not answer", body = ErrorBody),
    )
)]
pub async fn kick_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id.map_err(|_| {
        ApiError::bad_field(ErrorCode::InvalidId, "id", "expected a session number")
    })?;
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    if let Some(base) = other_node(&state, q.node.as_deref()).await? {
        let path = format!("/api/v1/sessions/{id}");
        return ask_node(&state, cluster::Method::DELETE, &base, &path, &[], &headers).await;
    }
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
        (status = 503, description = "The node holding it did not answer", body = ErrorBody),
    )
)]
pub async fn close_publisher(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CloseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) =
        query.map_err(|_| ApiError::bad_field(ErrorCode::InvalidQuery, "stream_id", "required"))?;
    // Published on another node: that node closes it.
    if let Some(cluster) = &state.cluster
        && let Some((node, _, base)) = cluster.origin(&code).await
        && node != cluster.node_id()
    {
        let path = format!("/api/v1/streams/{code}/close");
        let query = [("stream_id", q.stream_id.as_str())];
        return ask_node(
            &state,
            cluster::Method::POST,
            &base,
            &path,
            &query,
            &headers,
        )
        .await;
    }
    if state.hub.kick_publisher_with_id(&code, &q.stream_id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "stream {code:?} has no live publisher with stream_id {:?}",
            q.stream_id
        )))
    }
}
