//! One error shape for the whole API: `{"error": {"code": "...", "message": "...", "field":
//! "..."}}`, where `field` (present only when one request field is at fault) lets a form show
//! the message beside that field.
//!
//! `code` is one set for every endpoint, [`ErrorCode`]. Where Open-Streamer answers the same
//! situation, the code is its name for it (`NOT_FOUND`, `INVALID_BODY`, `INVALID_CODE`,
//! `SWITCH_FAILED`, ...), so its clients' branches keep working; the situations it lacks get
//! codes in the same style. The HTTP status stays this API's own.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The machine-readable `code` of an error body, one set for the whole API; the `code` of
/// `ErrorDetail` lists them with their HTTP statuses.
// Each variant says its status and, where Open-Streamer has the code, how that server uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: the body is not JSON or does not fit the schema (a wrong type, a missing member,
    /// a field the endpoint does not know). Open-Streamer: 400, a body that does not decode.
    InvalidBody,
    /// 400: a query parameter is malformed, unknown or missing. Open-Streamer: 400, e.g. an
    /// unknown `?status=` filter.
    InvalidQuery,
    /// 400: a stream code is malformed, missing, or differs from the path. Open-Streamer: 400
    /// on `POST /streams/{code}`.
    InvalidCode,
    /// 400: a template name is malformed, missing, or differs from the path. Open-Streamer:
    /// 400, its template code.
    InvalidTemplateCode,
    /// 400: an id in the path (hook id, session number, push index) is malformed.
    /// Open-Streamer: 400, a watermark id.
    InvalidId,
    /// 400 (malformed) or 422 (a rule is broken): a template prefix. Open-Streamer: 400.
    InvalidPrefix,
    /// 400 (a malformed value: a URL of the wrong scheme) or 422 (a well-formed value that
    /// breaks a rule: out of range, duplicate); `field` names the field. Open-Streamer: 422,
    /// its configuration's validation.
    ValidationFailed,
    /// 401: no API token, or a wrong one.
    Unauthorized,
    /// 403: this address may not use the API.
    Forbidden,
    /// 404: no such stream, template, hook, session, push destination or API route.
    /// Open-Streamer: 404, the same.
    NotFound,
    /// 405: the route does not take this method.
    MethodNotAllowed,
    /// 409: a create found the stream code, template name or hook id taken. Open-Streamer:
    /// 409, a VOD mount that exists.
    AlreadyExists,
    /// 409: another template has the prefix. Open-Streamer: 409.
    PrefixOverlap,
    /// 409: a manual input switch was refused (no input has that priority, it delivers no
    /// media, the stream runs no inputs). Open-Streamer: 400.
    SwitchFailed,
    /// 409: an input restart of a disabled stream. Open-Streamer: 400, a restart of one.
    StreamDisabled,
    /// 409: the stream's state does not allow it now (a push that is not waiting to retry, a
    /// restart of a stream that runs no inputs).
    Conflict,
    /// 413: the body is over the API's limit. Open-Streamer: 400, its YAML configuration.
    BodyTooLarge,
    /// 415: a JSON body without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 429: too many open event streams.
    TooManyRequests,
    /// 500: the database failed; nothing changed. Open-Streamer: 500, the same.
    StoreError,
    /// 500: anything else that failed inside.
    Internal,
    /// 503: the database is unreachable; nothing changed, media keeps flowing, retry later.
    Unavailable,
}

/// An API failure with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation, naming the field where there is one.
    pub message: String,
    /// Path of the request field at fault (`code`, `push[1].url`), when there is one.
    pub field: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// One set for the whole API; Open-Streamer's name where it has the situation:
    /// `INVALID_BODY`, `INVALID_QUERY`, `INVALID_CODE`, `INVALID_TEMPLATE_CODE`, `INVALID_ID`,
    /// `INVALID_PREFIX`, `VALIDATION_FAILED` (400; the last two also 422), `UNAUTHORIZED`
    /// (401), `FORBIDDEN` (403), `NOT_FOUND` (404), `METHOD_NOT_ALLOWED` (405),
    /// `ALREADY_EXISTS`, `PREFIX_OVERLAP`, `SWITCH_FAILED`, `STREAM_DISABLED`, `CONFLICT`
    /// (409), `BODY_TOO_LARGE` (413), `UNSUPPORTED_MEDIA_TYPE` (415), `TOO_MANY_REQUESTS`
    /// (429), `STORE_ERROR`, `INTERNAL` (500), `UNAVAILABLE` (503: database down).
    code: ErrorCode,
    message: String,
    /// Path of the request field at fault, e.g. `code`, `stream_key`, `push[1].retry.max_s`;
    /// absent when the error is not about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// An error about one request field: the message reads `field: reason`, as before
    /// `field` existed, so clients that only show the message lose nothing.
    pub fn field(
        status: StatusCode,
        code: ErrorCode,
        field: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> Self {
        let field = field.into();
        ApiError {
            status,
            code,
            message: format!("{field}: {reason}"),
            field: Some(field),
        }
    }

    /// 400 about one field.
    pub fn bad_field(
        code: ErrorCode,
        field: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> Self {
        Self::field(StatusCode::BAD_REQUEST, code, field, reason)
    }

    /// 400.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `INVALID_QUERY`, about the query string.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::bad_request(ErrorCode::InvalidQuery, message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 503 `UNAVAILABLE`: something this depends on (the database, another node) did not
    /// answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }

    /// 409 `CONFLICT`: the state does not allow it now.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 409 `ALREADY_EXISTS`: a create found the name taken.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::AlreadyExists, message)
    }

    /// 422 `VALIDATION_FAILED` about one field: well-formed, but it breaks a rule.
    pub fn unprocessable(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            field,
            reason,
        )
    }

    /// A broken rule of a stream or template: 400 when malformed, 422 when semantic. A
    /// stream code at fault is `INVALID_CODE`, anything else `code`.
    pub(crate) fn invalid(inv: control::Invalid, code: ErrorCode) -> Self {
        let status = match inv.kind {
            control::InvalidKind::Malformed => StatusCode::BAD_REQUEST,
            control::InvalidKind::Semantic => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = if inv.field == "code" {
            ErrorCode::InvalidCode
        } else {
            code
        };
        Self::field(status, code, inv.field, inv.reason)
    }

    /// A database failure: 503 `UNAVAILABLE` when it is unreachable (`unaffected` names what
    /// the outage leaves alone), else 500 `STORE_ERROR`.
    pub(crate) fn store(e: &store::StoreError, unaffected: &str) -> Self {
        match e {
            store::StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("{e}; {unaffected} are not affected, retry the change later"),
            ),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::StoreError,
                other.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, code = ?self.code, message = %self.message, "api error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<control::ControlError> for ApiError {
    fn from(e: control::ControlError) -> Self {
        use control::ControlError;
        match e {
            ControlError::NotFound(_) => ApiError::not_found(e.to_string()),
            ControlError::Conflict(_) => ApiError::already_exists(e.to_string()),
            ControlError::Invalid(inv) => ApiError::invalid(inv, ErrorCode::ValidationFailed),
            ControlError::Store(s) => ApiError::store(&s, "live streams"),
        }
    }
}

/// `Json<T>` whose rejections use the API's error shape: a wrong type or unknown field is a
/// 400 naming the field, a missing JSON content type 415, an oversized body 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// [`ApiJson`] for the endpoints Open-Streamer's clients call (`POST /streams/{code}`,
/// `/switch`): a field this API does not know (a response's `runtime` sent back, a newer
/// console's `playback_policy`) is dropped with a warning, as that server does, instead of
/// refusing the body. A known field of the wrong type is still a 400 naming it.
pub struct LenientJson<T>(pub T);

/// Unknown fields dropped from one body at most; past that the body is refused.
const MAX_IGNORED: usize = 64;

impl<S, T> FromRequest<S> for LenientJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let ApiJson(mut value) = ApiJson::<serde_json::Value>::from_request(req, state).await?;
        let mut ignored = Vec::new();
        loop {
            match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(v) => {
                    if !ignored.is_empty() {
                        tracing::warn!(%path, fields = ?ignored, "ignored unknown fields in a request body");
                    }
                    return Ok(LenientJson(v));
                }
                Err(e) => {
                    let field = e.path().to_string();
                    let reason = e.inner().to_string();
                    if reason.starts_with("unknown field")
                        && ignored.len() < MAX_IGNORED
                        && remove_at(&mut value, e.path())
                    {
                        ignored.push(field);
                        continue;
                    }
                    // A missing field is reported at its parent's path.
                    let missing = reason
                        .strip_prefix("missing field `")
                        .and_then(|r| r.split_once('`'))
                        .map(|(name, _)| name);
                    let field = match (field.as_str(), missing) {
                        (".", Some(name)) => name.to_owned(),
                        (_, Some(name)) => format!("{field}.{name}"),
                        _ => field,
                    };
                    return Err(if field == "." {
                        ApiError::bad_request(ErrorCode::InvalidBody, reason)
                    } else {
                        ApiError::bad_field(ErrorCode::InvalidBody, field, reason)
                    });
                }
            }
        }
    }
}

/// Removes the member `path` ends with; `false` if the path does not lead to one.
fn remove_at(value: &mut serde_json::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    let mut v = value;
    for s in parents {
        let next = match s {
            Segment::Seq { index } => v.get_mut(*index),
            Segment::Map { key } => v.get_mut(key.as_str()),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    v.as_object_mut().is_some_and(|o| o.remove(key).is_some())
}

/// The field a serde data error is about. axum renders it as `<prefix>: <path>: <error>` (the
/// path from serde_path_to_error, absent at the top level), and a top-level unknown or missing
/// field names itself in backquotes.
fn data_error_field(message: &str) -> Option<String> {
    let detail = message
        .split_once("target type: ")
        .map_or(message, |(_, d)| d);
    let is_path = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b))
    };
    let (path, error) = match detail.split_once(": ") {
        Some((p, rest)) if is_path(p) => (Some(p), rest),
        _ => (None, detail),
    };
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|lead| {
            let rest = error.strip_prefix(lead)?;
            rest.split_once('`').map(|(name, _)| name)
        });
    // The path already ends with an unknown field's name; a missing one is named only in
    // the message, at its parent's path.
    match (path, named) {
        (Some(p), Some(n)) if error.starts_with("missing") => Some(format!("{p}.{n}")),
        (Some(p), _) => Some(p.to_owned()),
        (None, n) => n.map(str::to_owned),
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let message = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => {
            // axum says 422 for a type error; to clients a body that does not match the
            // schema is a bad request, and 422 is kept for rule violations.
            let mut e = ApiError::bad_request(ErrorCode::InvalidBody, message);
            e.field = data_error_field(&e.message);
            e
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(ErrorCode::InvalidBody, message),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            format!("request body over {} bytes", crate::MAX_BODY),
        ),
        other => ApiError::new(other.status(), ErrorCode::InvalidBody, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        timeout_s: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        code: String,
        #[serde(default)]
        push: Vec<Inner>,
        #[serde(default)]
        nested: Option<Inner>,
    }

    /// The field axum's own rejection text names, through the real `Json` extractor.
    fn field_of(body: &str) -> Option<String> {
        match Json::<Body>::from_bytes(body.as_bytes()) {
            Err(r @ JsonRejection::JsonDataError(_)) => json_rejection(r).field,
            other => panic!("expected a data error for {body}: {other:?}"),
        }
    }

    #[test]
    fn data_errors_name_the_field() {
        assert_eq!(field_of(r#"{"code": 5}"#).as_deref(), Some("code"));
        assert_eq!(
            field_of(r#"{"code": "a", "push": [{"timeout_s": 1}, {"timeout_s": "x"}]}"#).as_deref(),
            Some("push[1].timeout_s")
        );
        assert_eq!(
            field_of(r#"{"code": "a", "bogus": 1}"#).as_deref(),
            Some("bogus")
        );
        assert_eq!(field_of(r#"{"push": []}"#).as_deref(), Some("code"));
        assert_eq!(
            field_of(r#"{"code": "a", "push": [{}]}"#).as_deref(),
            Some("push[0].timeout_s")
        );
        assert_eq!(
            field_of(r#"{"code": "a", "nested": {"x": 1}}"#).as_deref(),
            Some("nested.x")
        );
    }

    async fn lenient(body: &str) -> Result<Body, ApiError> {
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/streams/x")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        LenientJson::<Body>::from_request(req, &())
            .await
            .map(|j| j.0)
    }

    #[tokio::test]
    async fn lenient_bodies_drop_unknown_fields_and_keep_type_errors() {
        let b = lenient(
            r#"{"code": "a", "runtime": {"status": "live"}, "playback_policy": "public",
                "push": [{"timeout_s": 3, "comment": "x"}], "nested": {"timeout_s": 1, "y": 2}}"#,
        )
        .await
        .unwrap();
        assert_eq!(b.code, "a");
        assert_eq!(b.push[0].timeout_s, 3);
        let e = lenient(r#"{"code": "a", "push": [{"timeout_s": "x", "other": 1}]}"#)
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.field.as_deref(),
            Some("push[0].timeout_s"),
            "{}",
            e.message
        );
        let e = lenient(r#"{"runtime": 1}"#).await.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("code"), "{}", e.message);
        assert!(lenient("[1").await.is_err());
    }

    #[test]
    fn the_field_member_is_added_only_when_known() {
        let body = |e: ApiError| {
            serde_json::to_value(ErrorBody {
                error: ErrorDetail {
                    code: e.code,
                    message: e.message,
                    field: e.field,
                },
            })
            .unwrap()
        };
        let plain = body(ApiError::not_found("no such stream"));
        assert_eq!(
            plain,
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "no such stream"}})
        );
        let field = body(ApiError::bad_field(
            ErrorCode::InvalidCode,
            "code",
            "must match [A-Za-z0-9_-]{1,128}",
        ));
        assert_eq!(field["error"]["field"], "code");
        assert_eq!(
            field["error"]["message"],
            "code: must match [A-Za-z0-9_-]{1,128}"
        );
    }
}
