//! `GET /api/v1/config`: the effective configuration (file, then environment), secrets masked.
//!
//! The binary owns the configuration type; it hands over the masked form it also prints for
//! `--check-config`, and this module masks once more by key name and URL shape, so a secret
//! added to the configuration later without its masking still never leaves the process.

use crate::AppState;
use crate::error::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// What a masked secret reads as.
const MASK: &str = "***";

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "token",
    "secret",
    "jwt_secret",
    "password",
    "passphrase",
    "stream_key",
    "key",
    "private_key",
];

/// The effective configuration as `/api/v1/config` shows it; cheap to clone.
#[derive(Clone, Debug)]
pub struct EffectiveConfig(Arc<Value>);

impl Default for EffectiveConfig {
    fn default() -> Self {
        EffectiveConfig(Arc::new(Value::Object(serde_json::Map::new())))
    }
}

impl EffectiveConfig {
    /// `config` with every secret masked: values under secret-named keys, and passwords and
    /// query strings of URLs.
    pub fn new(mut config: Value) -> Self {
        mask(&mut config);
        EffectiveConfig(Arc::new(config))
    }

    /// The masked configuration.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) && !v.is_null() {
                    *v = Value::String(MASK.to_owned());
                } else {
                    mask(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        Value::String(s) if s.contains("://") => *s = mask_url(s),
        _ => {}
    }
}

/// `scheme://user:***@host/path?***`: the password and the query (where tokens ride) hidden;
/// a user part alone (`https://TOKEN@host`) is hidden whole, as it may be a token.
pub fn mask_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, "")) => (b, ""),
        Some((b, _)) => (b, "?***"),
        None => (url, ""),
    };
    let masked = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &base[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:{MASK}{}", &base[..scheme + 3], &base[at..]),
                // A lone user part may be a token (`https://TOKEN@host`).
                None if creds.is_empty() => base.to_owned(),
                None => format!("{}{MASK}{}", &base[..scheme + 3], &base[at..]),
            }
        }
        _ => base.to_owned(),
    };
    masked + query
}

/// The effective configuration: the file with the environment applied and defaults filled in;
/// tokens, passwords, passphrases and URL credentials and queries read `***`.
#[utoipa::path(
    get,
    path = "/config",
    tag = "server",
    responses(
        (status = 200, description = "The effective configuration, secrets masked", body = Object),
        (status = 401, description = "Missing or wrong API token", body = ErrorBody),
    )
)]
pub async fn get_config(State(state): State<AppState>) -> Response {
    let mut resp = Json(state.config.value().clone()).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_by_key_and_by_url_shape() {
        let c = EffectiveConfig::new(json!({
            "api": {"token": "tok-123", "allow": null, "listen": null},
            "callback": {"jwt_secret": "jwt-456", "url": "https://cb.example/hook?sig=q-789"},
            "srt": {"passphrase": "pass-phrase-0", "latency": 0.12},
            "database": {"url": "postgres://gw:db-pw@db.example/gw?sslmode=require"},
            "redis": {"url": "redis://:redis-pw@cache:6379"},
            "hooks": {"on_publish": "https://TOKEN-abc@auth.example/p"},
            "future": {"Password": "up-1", "nested": [{"stream_key": "sk-2"}], "key_file": "/etc/k.pem"},
            "rtmps": {"key_file": "/etc/tls/key.pem", "cert_file": "/etc/tls/cert.pem"},
            "plain": {"url": "http://example.com/a", "none": null},
        }));
        let text = c.value().to_string();
        for secret in [
            "tok-123",
            "jwt-456",
            "q-789",
            "pass-phrase-0",
            "db-pw",
            "redis-pw",
            "TOKEN-abc",
            "up-1",
            "sk-2",
            "sslmode",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let v = c.value();
        assert_eq!(v["api"]["token"], "***");
        assert_eq!(v["api"]["allow"], Value::Null, "unset stays null");
        assert_eq!(v["database"]["url"], "postgres://gw:***@db.example/gw?***");
        assert_eq!(v["redis"]["url"], "redis://:***@cache:6379");
        assert_eq!(v["hooks"]["on_publish"], "https://***@auth.example/p");
        assert_eq!(
            v["rtmps"]["key_file"], "/etc/tls/key.pem",
            "paths are not secrets"
        );
        assert_eq!(v["plain"]["url"], "http://example.com/a");
        assert_eq!(v["srt"]["latency"], 0.12);
        // Masking what is already masked changes nothing.
        assert_eq!(EffectiveConfig::new(v.clone()).value(), v);
    }
}
