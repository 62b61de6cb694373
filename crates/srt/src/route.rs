//! Stream id → what the caller wants: sans-I/O, so every form is unit-tested.
//!
//! Accepted forms (`<app>` is the configured application, like `rtmp.app`):
//! - `publish:<app>/<code>[?k=v&...]` or `#!::r=<app>/<code>,m=publish` → publish;
//! - `<app>/<code>[?k=v&...]` or `#!::r=<app>/<code>[,m=request]` → play.
//!
//! The `#!::` form is the SRT access-control syntax (draft-sharabayko-srt-00 appendix B);
//! keys other than the standard ones are passed on as arguments (e.g. `key=...`).

use hub::Action;
use srt_protocol::access::{
    AccessControlList, ConnectionMode, ConnectionType, StandardAccessControlEntry,
};

/// Most query arguments taken from one stream id; the id is at most 512 bytes anyway.
const MAX_ARGS: usize = 16;

/// What a caller asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Publish or play.
    pub action: Action,
    /// Stream code.
    pub code: String,
    /// Arguments (`key=...`) for admission.
    pub args: Vec<(String, String)>,
}

/// Why a stream id was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No stream id at all.
    #[error("no stream id")]
    Missing,
    /// A `#!::` id that does not parse, or has no `r=`.
    #[error("malformed access-control stream id")]
    Malformed,
    /// `m=` other than `request` or `publish`, or `t=` other than `stream`.
    #[error("unsupported mode or type")]
    Unsupported,
    /// The resource is not `<app>/<code>`.
    #[error("unknown application")]
    WrongApp,
    /// The code is not `[A-Za-z0-9_-]{{1,128}}`.
    #[error("invalid stream code")]
    InvalidCode,
}

/// Parses `stream_id` for application `app`.
pub fn parse(stream_id: Option<&str>, app: &str) -> Result<Route, RouteError> {
    let id = stream_id
        .filter(|s| !s.is_empty())
        .ok_or(RouteError::Missing)?;
    let mut args = Vec::new();
    let (action, resource) = if id.starts_with("#!::") {
        let acl: AccessControlList = id.parse().map_err(|_| RouteError::Malformed)?;
        let mut action = Action::Play;
        let mut resource = None;
        for entry in acl.0 {
            if !matches!(entry.key.as_str(), "u" | "r" | "h" | "s" | "t" | "m") {
                if args.len() < MAX_ARGS {
                    args.push((entry.key, entry.value));
                }
                continue;
            }
            // Only an unparsable `t=` or `m=` value fails here.
            match StandardAccessControlEntry::try_from(entry) {
                Ok(StandardAccessControlEntry::ResourceName(r)) => resource = Some(r),
                Ok(StandardAccessControlEntry::Mode(ConnectionMode::Publish)) => {
                    action = Action::Publish
                }
                Ok(StandardAccessControlEntry::Mode(ConnectionMode::Request)) => {
                    action = Action::Play
                }
                Ok(StandardAccessControlEntry::Mode(_)) | Err(()) => {
                    return Err(RouteError::Unsupported);
                }
                Ok(StandardAccessControlEntry::Type(t)) if t != ConnectionType::Stream => {
                    return Err(RouteError::Unsupported);
                }
                Ok(_) => {}
            }
        }
        (action, resource.ok_or(RouteError::Malformed)?)
    } else if let Some(rest) = id.strip_prefix("publish:") {
        (Action::Publish, rest.to_owned())
    } else {
        (Action::Play, id.to_owned())
    };
    let (path, query) = match resource.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (resource.as_str(), None),
    };
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() || args.len() >= MAX_ARGS {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push((k.to_owned(), v.to_owned()));
    }
    let (a, code) = path.split_once('/').ok_or(RouteError::WrongApp)?;
    if a != app {
        return Err(RouteError::WrongApp);
    }
    if !hub::valid_code(code) {
        return Err(RouteError::InvalidCode);
    }
    Ok(Route {
        action,
        code: code.to_owned(),
        args,
    })
}

/// The stream id without its secrets, for logs: arguments after `?` and every `#!::` key
/// but the resource and mode are dropped (`key=`, `u=`, `s=` carry credentials).
pub fn redacted(stream_id: &str) -> String {
    let id: String = stream_id.chars().take(256).collect();
    if let Some(pairs) = id.strip_prefix("#!::") {
        let kept: Vec<&str> = pairs
            .split(',')
            .filter(|kv| kv.starts_with("r=") || kv.starts_with("m="))
            .map(|kv| kv.split_once('?').map_or(kv, |(base, _)| base))
            .collect();
        return format!("#!::{}", kept.join(","));
    }
    match id.split_once('?') {
        Some((base, _)) => format!("{base}?****"),
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> Route {
        parse(Some(id), "live").unwrap()
    }

    #[test]
    fn simple_forms() {
        let r = ok("publish:live/cam1?key=abc");
        assert_eq!(r.action, Action::Publish);
        assert_eq!(r.code, "cam1");
        assert_eq!(r.args, vec![("key".into(), "abc".into())]);
        let r = ok("live/cam1");
        assert_eq!((r.action, r.code.as_str()), (Action::Play, "cam1"));
    }

    #[test]
    fn access_control_forms() {
        let r = ok("#!::r=live/x,m=publish");
        assert_eq!((r.action, r.code.as_str()), (Action::Publish, "x"));
        let r = ok("#!::r=live/x,m=request,key=k1");
        assert_eq!((r.action, r.code.as_str()), (Action::Play, "x"));
        assert_eq!(r.args, vec![("key".into(), "k1".into())]);
        assert_eq!(ok("#!::m=publish,r=live/y").action, Action::Publish);
        assert_eq!(ok("#!::r=live/y").action, Action::Play);
    }

    #[test]
    fn rejects() {
        assert_eq!(parse(None, "live"), Err(RouteError::Missing));
        assert_eq!(parse(Some(""), "live"), Err(RouteError::Missing));
        assert_eq!(parse(Some("other/x"), "live"), Err(RouteError::WrongApp));
        assert_eq!(parse(Some("x"), "live"), Err(RouteError::WrongApp));
        assert_eq!(
            parse(Some("live/a b"), "live"),
            Err(RouteError::InvalidCode)
        );
        assert_eq!(
            parse(Some("live/a//b"), "live"),
            Err(RouteError::InvalidCode)
        );
        // Open-Streamer's namespaced codes.
        assert_eq!(
            parse(Some("live/region/north/news"), "live").map(|r| r.code),
            Ok("region/north/news".to_owned())
        );
        assert_eq!(parse(Some("live/"), "live"), Err(RouteError::InvalidCode));
        assert_eq!(
            parse(Some("#!::m=publish"), "live"),
            Err(RouteError::Malformed)
        );
        assert_eq!(parse(Some("#!::r"), "live"), Err(RouteError::Malformed));
        assert_eq!(
            parse(Some("#!::r=live/x,m=bidirectional"), "live"),
            Err(RouteError::Unsupported)
        );
        assert_eq!(
            parse(Some("#!::r=live/x,t=file"), "live"),
            Err(RouteError::Unsupported)
        );
    }

    #[test]
    fn redacts_credentials_for_logs() {
        assert_eq!(redacted("publish:live/x?key=s3cret"), "publish:live/x?****");
        assert_eq!(
            redacted("#!::r=live/x,m=publish,key=s3cret,u=bob"),
            "#!::r=live/x,m=publish"
        );
        assert_eq!(redacted("#!::r=live/x?key=s3cret"), "#!::r=live/x");
        assert_eq!(redacted("live/x"), "live/x");
    }
}
