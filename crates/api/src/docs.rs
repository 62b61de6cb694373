//! `/api/docs`: the API reference, Swagger UI served from the binary (no CDN), reading the
//! OpenAPI document this build generates.
//!
//! The page and Swagger UI are embedded like the dashboard (`web/api-docs.html`,
//! `web/vendor/swagger-ui/`, see `build.rs`), with the dashboard's content security policy:
//! scripts only from the gateway, the start-up code in its own file (`web/js/api-docs.js`).
//! Like the dashboard's files they are public. So is the document at
//! `/api/docs/openapi.json`: it describes this build's routes and holds no data, and a
//! browser opening the page cannot send the API token, which `/api/v1/openapi.json` needs.
//! Calls made from the page ("Try it out") go to `/api/v1` with the API's authorization.

use crate::web;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::OnceLock;

/// `GET /api/docs`: the reference page (`web/api-docs.html`, with the dashboard's headers).
pub(crate) async fn page(method: Method, headers: HeaderMap) -> Response {
    web::file(method, Uri::from_static("/api-docs.html"), headers).await
}

/// `GET /api/docs/` and Open-Streamer's `/swagger`: to the page, which lives at one address.
pub(crate) async fn slash() -> Redirect {
    Redirect::permanent("/api/docs")
}

/// `GET /api/docs/openapi.json` (and Open-Streamer's `/swagger/doc.json`): the OpenAPI
/// document of `/api/v1`, as `/api/v1/openapi.json` serves it.
pub(crate) async fn spec() -> Response {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOC.get_or_init(|| {
        // A derived document always serializes; an empty body would show as an error.
        serde_json::to_vec(&crate::openapi()).unwrap_or_default()
    });
    let mut resp = (StatusCode::OK, body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Fixed for a build, but the same URL serves a new build after an upgrade.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use crate::AdminAccess;
    use crate::tests::state;
    use axum::Router;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Method, Request, StatusCode, header};
    use axum::response::Response;
    use std::net::SocketAddr;
    use tower_service::Service;

    async fn get(app: &mut Router, path: &str) -> Response {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        // From a remote address with a token configured: the page is public, the API is not.
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 1))));
        app.call(req).await.unwrap()
    }

    fn header_of(r: &Response, name: header::HeaderName) -> String {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    async fn text(r: Response) -> String {
        let body = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn the_reference_page_its_assets_and_the_document_are_served() {
        let mut app = crate::router(state(AdminAccess::new(Some("t0ken-t0ken"), None)).await);
        let page = get(&mut app, "/api/docs").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
        let html = text(page).await;
        // Everything the page loads is the gateway's own, and no script is inline.
        let mut assets = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for piece in html.split(attr).skip(1) {
                let url = piece.split('"').next().unwrap_or_default();
                assert!(url.starts_with('/'), "{url} is not the gateway's");
                assets.push(url.to_owned());
            }
        }
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
        );
        for want in [
            "/vendor/swagger-ui/swagger-ui-bundle.js",
            "/vendor/swagger-ui/swagger-ui.css",
            "/js/api-docs.js",
        ] {
            assert!(assets.iter().any(|a| a == want), "{want} not in {assets:?}");
        }
        for asset in &assets {
            let r = get(&mut app, asset).await;
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
            let ctype = header_of(&r, header::CONTENT_TYPE);
            let want = if asset.ends_with(".css") {
                "text/css; charset=utf-8"
            } else if asset.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else {
                ""
            };
            if !want.is_empty() {
                assert_eq!(ctype, want, "{asset}");
            }
        }
        let bundle = text(get(&mut app, "/vendor/swagger-ui/swagger-ui-bundle.js").await).await;
        assert!(bundle.len() > 500_000 && bundle.contains("SwaggerUIBundle"));
        let init = text(get(&mut app, "/js/api-docs.js").await).await;
        assert!(init.contains("/api/docs/openapi.json"), "{init}");
        for notice in [
            "/vendor/swagger-ui/LICENSE",
            "/vendor/swagger-ui/NOTICE",
            "/vendor/swagger-ui/README.md",
        ] {
            assert_eq!(
                get(&mut app, notice).await.status(),
                StatusCode::OK,
                "{notice}"
            );
        }

        // The document: public, JSON, the same one the API serves, with the new routes.
        let doc = get(&mut app, "/api/docs/openapi.json").await;
        assert_eq!(doc.status(), StatusCode::OK);
        assert_eq!(header_of(&doc, header::CONTENT_TYPE), "application/json");
        let doc: serde_json::Value = serde_json::from_str(&text(doc).await).unwrap();
        assert_eq!(doc, serde_json::to_value(crate::openapi()).unwrap());
        for path in [
            "/api/v1/templates",
            "/api/v1/templates/{name}",
            "/api/v1/config",
            "/api/v1/streams/{code}",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} documented");
        }
        assert!(doc["paths"]["/api/v1/streams/{code}"].get("post").is_some());

        for old in ["/api/docs/", "/swagger", "/swagger/", "/swagger/index.html"] {
            let r = get(&mut app, old).await;
            assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT, "{old}");
            assert_eq!(header_of(&r, header::LOCATION), "/api/docs", "{old}");
        }
        let compat = get(&mut app, "/swagger/doc.json").await;
        assert_eq!(compat.status(), StatusCode::OK);
        let compat: serde_json::Value = serde_json::from_str(&text(compat).await).unwrap();
        assert_eq!(compat, doc);
        // The API itself still wants the token.
        let api = get(&mut app, "/api/v1/openapi.json").await;
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_media_only_port_has_no_reference_page() {
        let st = state(AdminAccess::local_only()).await;
        let mut media = crate::media_router(st.clone());
        assert_eq!(
            get(&mut media, "/api/docs").await.status(),
            StatusCode::NOT_FOUND
        );
        let mut admin = crate::admin_listener_router(st);
        assert_eq!(get(&mut admin, "/api/docs").await.status(), StatusCode::OK);
    }
}
