//! One error shape for the whole API: `{"error": {"code": "...", "message": "...", "field":
//! "..."}}`, where `field` (present only when one request field is at fault) lets a form show
//! the message beside that field.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API failure with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
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
    /// `bad_request`, `unauthorized`, `not_found`, `conflict`, `unsupported_media_type`,
    /// `payload_too_large`, `too_many_requests`, `unprocessable`, `unavailable`, `internal`.
    code: &'static str,
    message: String,
    /// Path of the request field at fault, e.g. `code`, `stream_key`, `push[1].retry.max_s`;
    /// absent when the error is not about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
        code: &'static str,
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
    pub fn bad_field(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::field(StatusCode::BAD_REQUEST, "bad_request", field, reason)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "api error");
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
        use control::{ControlError, InvalidKind};
        match e {
            ControlError::NotFound(_) => ApiError::not_found(e.to_string()),
            ControlError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            ControlError::Invalid(inv) => match inv.kind {
                InvalidKind::Malformed => ApiError::bad_field(inv.field, inv.reason),
                InvalidKind::Semantic => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unprocessable",
                    inv.field,
                    inv.reason,
                ),
            },
            ControlError::Store(s) => match s {
                store::StoreError::Unavailable(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{s}; live streams are not affected, retry the change later"),
                ),
                other => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                ),
            },
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
                        ApiError::bad_request(reason)
                    } else {
                        ApiError::bad_field(field, reason)
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
            let mut e = ApiError::bad_request(message);
            e.field = data_error_field(&e.message);
            e
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(message),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body over {} bytes", crate::MAX_BODY),
        ),
        other => ApiError::new(other.status(), "bad_request", message),
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
            serde_json::json!({"error": {"code": "not_found", "message": "no such stream"}})
        );
        let field = body(ApiError::bad_field(
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
