//! The dashboard: the files of `web/`, embedded at build time (see `build.rs`), served at `/`
//! with their ETag, revalidated on every use, and with a content security policy that allows
//! only the gateway's own scripts.
//!
//! The files are public (they hold no data); everything the pages show comes from `/api/v1`
//! with the API's own authorization.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
pub(crate) struct WebFile {
    /// Path under `web/`, `/`-separated, no leading slash.
    pub(crate) path: &'static str,
    pub(crate) body: &'static [u8],
    pub(crate) content_type: &'static str,
    /// Quoted strong validator derived from the content.
    pub(crate) etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

/// Scripts only from the gateway, no inline script (pages escape API text, and this stops what
/// an escaping slip would let through); media and workers from blob: for MSE players (hls.js,
/// dash.js); connections to any HTTP(S)/WS origin because media may be on another port.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream: http: https:; \
    worker-src 'self' blob:; connect-src 'self' http: https: ws: wss:; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn find(path: &str) -> Option<&'static WebFile> {
    FILES
        .binary_search_by(|f| f.path.cmp(path))
        .ok()
        .map(|i| &FILES[i])
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 13.1.2).
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn respond(file: &WebFile, headers: &HeaderMap) -> Response {
    let not_modified = matches(headers, file.etag);
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.body.into_response()
    };
    let h = resp.headers_mut();
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
    }
    h.insert(header::ETAG, HeaderValue::from_static(file.etag));
    // File names carry no version, so a cached copy must be revalidated (a 304) every time:
    // after an upgrade a page never runs with an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if file.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CACHE_CONTROL, "no-cache")],
        "not found\n",
    )
        .into_response()
}

/// `GET /`: the dashboard's entry page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    find("index.html").map_or_else(not_found, |f| respond(f, &headers))
}

/// Any other path not routed elsewhere: an embedded file by exact path, or 404. The lookup is
/// an exact match in the table, so `..` or encoded separators can never reach the disk.
pub(crate) async fn file(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "method not allowed\n",
        )
            .into_response();
    }
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    find(path).map_or_else(not_found, |f| respond(f, &headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdminAccess;
    use crate::tests::state;
    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use std::net::SocketAddr;
    use tower_service::Service;

    async fn get(app: &mut Router, method: Method, path: &str, inm: Option<&str>) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(tag) = inm {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 1))));
        app.call(req).await.unwrap()
    }

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 16 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn the_table_is_sorted_and_has_the_pages_and_players() {
        assert!(FILES.windows(2).all(|w| w[0].path < w[1].path));
        for path in [
            "index.html",
            "vendor/hls.min.js",
            "vendor/dash.all.min.js",
            "vendor/LICENSE.hls.js.txt",
            "vendor/LICENSE.dash.js.md",
        ] {
            assert!(find(path).is_some(), "{path} embedded");
        }
        assert!(FILES.iter().all(|f| !f.path.ends_with(".map")));
    }

    #[tokio::test]
    async fn the_dashboard_is_served_at_the_root_with_types_and_etags() {
        // From a remote address with a token configured: the files are public, the API is not.
        let mut app = crate::router(state(AdminAccess::new(Some("t0ken"), None)).await);
        let r = get(&mut app, Method::GET, "/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache");
        assert!(header_of(&r, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
        let etag = header_of(&r, header::ETAG).to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
            "{etag}"
        );
        let body = body_of(r).await;
        assert_eq!(body, find("index.html").unwrap().body);
        assert!(String::from_utf8_lossy(&body).contains("<!doctype html>"));

        for (path, ctype) in [
            ("/index.html", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/js/app.js", "text/javascript; charset=utf-8"),
            ("/vendor/hls.min.js", "text/javascript; charset=utf-8"),
            ("/vendor/LICENSE.hls.js.txt", "text/plain; charset=utf-8"),
        ] {
            let r = get(&mut app, Method::GET, path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), ctype, "{path}");
            assert_eq!(header_of(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }

        // Revalidation: the tag as sent, weak, in a list, or `*` gives a 304 without a body.
        for inm in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let r = get(&mut app, Method::GET, "/", Some(&inm)).await;
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "If-None-Match: {inm}");
            assert_eq!(header_of(&r, header::ETAG), etag);
            assert!(body_of(r).await.is_empty());
        }
        let r = get(&mut app, Method::GET, "/", Some("\"stale\"")).await;
        assert_eq!(r.status(), StatusCode::OK);
        // Another file has another tag.
        let css = get(&mut app, Method::GET, "/style.css", None).await;
        assert_ne!(header_of(&css, header::ETAG), etag);

        let head = get(&mut app, Method::HEAD, "/js/app.js", None).await;
        assert_eq!(head.status(), StatusCode::OK);
        let post = get(&mut app, Method::POST, "/index.html", None).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn unknown_files_and_traversal_are_404() {
        let mut app = crate::router(state(AdminAccess::local_only()).await);
        for path in [
            "/nope.html",
            "/vendor/",
            "/vendor",
            "/js",
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/vendor/../index.html",
            "/vendor/..%2findex.html",
            "//etc/passwd",
            "/crates/api/build.rs",
            "/vendor/hls.min.js.map",
        ] {
            let r = get(&mut app, Method::GET, path, None).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        // API routes keep their JSON 404, media its own.
        let api = get(&mut app, Method::GET, "/api/v1/nowhere", None).await;
        assert_eq!(
            api.status(),
            StatusCode::FORBIDDEN,
            "remote, before the route"
        );
        let media = get(&mut app, Method::GET, "/live/x/index.m3u8", None).await;
        assert_eq!(media.status(), StatusCode::NOT_FOUND);
        assert_ne!(body_of(media).await, b"not found\n");
    }

    #[tokio::test]
    async fn the_media_port_does_not_serve_the_dashboard_when_the_api_has_its_own() {
        let st = state(AdminAccess::local_only()).await;
        let mut media = crate::media_router(st.clone());
        assert_eq!(
            get(&mut media, Method::GET, "/", None).await.status(),
            StatusCode::NOT_FOUND
        );
        let mut admin = crate::admin_listener_router(st);
        assert_eq!(
            get(&mut admin, Method::GET, "/", None).await.status(),
            StatusCode::OK
        );
    }
}
