//! A JSON client for the REST API (`/api/v1`), on top of the std-only HTTP client.

use super::http;
use serde_json::Value;
use std::net::SocketAddr;

/// Calls the API of one server, with a bearer token or without.
#[derive(Clone, Debug)]
pub struct Api {
    addr: SocketAddr,
    token: Option<String>,
}

/// A complete API answer; `json` is `Null` when the body is not JSON.
#[derive(Debug)]
pub struct Reply {
    /// What was asked, for assertion messages (`PATCH /api/v1/streams/x`).
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr, token: None }
    }

    /// The same client sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            addr: self.addr,
            token: Some(token.to_owned()),
        }
    }

    /// `method path` with a JSON body (if any) and the token (if any); panics on a transport
    /// error. `path` is relative to `/api/v1` unless it starts with `/`.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let text = body.map(|b| b.to_string());
        let mut headers = Vec::new();
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.raw(method, path, &headers, text.as_deref().map(str::as_bytes))
    }

    /// `method path` with exactly these headers (plus the token) and body bytes.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/api/v1/{path}")
        };
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        let what = format!("{method} {path}");
        let r = http::request(self.addr, method, &path, &all, body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = r.text();
        Reply {
            what,
            status: r.status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers: r.headers,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    pub fn put(&self, path: &str, body: &Value) -> Reply {
        self.call("PUT", path, Some(body))
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call("PATCH", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None)
    }

    /// `GET streams/{code}`, asserting 200.
    pub fn stream(&self, code: &str) -> Value {
        self.get(&format!("streams/{code}")).ok(200)
    }

    /// `GET sessions[?query]`, asserting 200; the `data` array.
    pub fn sessions(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("sessions{query}")).ok(200);
        let data = r["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(r["total"], data.len(), "sessions total: {r:#}");
        data
    }
}

impl Reply {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.text
        );
        self.json
    }

    /// Asserts an error answer: `status`, a JSON content type, exactly
    /// `{"error": {"code": code, "message": ..., "field"?: ...}}` (a `field`, when present,
    /// starts the message as `field: reason`), and a message containing every `needles` entry
    /// (the field it names, typically). Returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str, needles: &[&str]) -> String {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.what, self.status, self.text
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{}: error without a JSON content type ({:?}): {}",
            self.what,
            self.header("content-type"),
            self.text
        );
        let top = self.json.as_object().unwrap_or_else(|| {
            panic!(
                "{}: error body is not a JSON object: {}",
                self.what, self.text
            )
        });
        assert_eq!(
            top.keys().collect::<Vec<_>>(),
            ["error"],
            "{}: error body must be exactly {{error}}: {}",
            self.what,
            self.text
        );
        let err = top["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: `error` is not an object: {}", self.what, self.text));
        let mut keys: Vec<&String> = err.keys().filter(|k| *k != "field").collect();
        keys.sort();
        assert_eq!(
            keys,
            ["code", "message"],
            "{}: error must have exactly code, message and an optional field: {}",
            self.what,
            self.text
        );
        if let Some(field) = err.get("field") {
            let field = field.as_str().unwrap_or_default();
            let message = err["message"].as_str().unwrap_or_default();
            assert!(
                !field.is_empty()
                    && (message.starts_with(&format!("{field}: "))
                        || message.contains(&format!(" {field}: "))),
                "{}: `field` must be named at the start of the message: {}",
                self.what,
                self.text
            );
        }
        assert_eq!(
            err["code"], code,
            "{}: error code: {}",
            self.what, self.text
        );
        let message = err["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: message is not a string: {}", self.what, self.text))
            .to_owned();
        for n in needles {
            assert!(
                message.contains(n),
                "{}: the message does not mention {n:?}: {message:?}",
                self.what
            );
        }
        message
    }
}
