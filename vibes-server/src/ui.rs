//! The web UI: its files, embedded in the binary from `vibes-server/ui/`,
//! served at `/` (and at each view's path, so that deep links and reloads
//! work) and under `/assets/`.
//!
//! The UI is plain ES modules with its third-party code vendored
//! (`ui/vendor/README.md` lists each library, its version and licence): no
//! build step, no CDN. It talks to vibesd through the same API as any
//! client; `docs/ui.md` describes its views and how it sends the token.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`; the page adds a
//! Content Security Policy allowing vibesd's own scripts only, and refuses
//! to be framed (another site could otherwise overlay its buttons).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

/// The first path segment of each view; `index.html` is served for each.
const VIEWS: &[&str] = &[
    "groups",
    "firehose",
    "actors",
    "dead-letters",
    "sessions",
    "search",
    "assessment",
    "status",
    "notifications",
    "permissions",
];

const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; \
                   img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/", get(page))
        .route("/assets/{*path}", get(asset));
    for view in VIEWS {
        router = router
            .route(&format!("/{view}"), get(page))
            .route(&format!("/{view}/{{*rest}}"), get(page));
    }
    router
}

/// Whether `path` is one of the UI's files (which need no token: they hold
/// no data).
pub(crate) fn is_ui_path(path: &str) -> bool {
    if path == "/" || path.starts_with("/assets/") {
        return true;
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    VIEWS.contains(&first)
}

async fn page(headers: HeaderMap) -> Response {
    let mut response = file("index.html", &headers);
    let set = response.headers_mut();
    set.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    set.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file(&path, &headers)
}

/// An embedded file, revalidated by its hash: a browser asks again each
/// time (`no-cache`) and gets a 304 while the file is the one it has, so a
/// new vibesd's UI is never hidden behind a cached old one.
fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::not_found("no_such_asset", "the web UI has no such file").into_response();
    };
    let etag = format!("\"{}\"", base64_hash(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| given.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, file.metadata.mimetype().to_owned())],
            file.data.into_owned(),
        )
            .into_response()
    };
    let set = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        set.insert(header::ETAG, etag);
    }
    set.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn base64_hash(hash: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_its_views_and_assets_are_ui_paths() {
        for path in ["/", "/groups", "/sessions/s1", "/assets/app.js", "/search"] {
            assert!(is_ui_path(path), "{path}");
        }
        for path in [
            "/api/status",
            "/metrics",
            "/ws",
            "/groupsx",
            "/readyz",
            "/nope",
        ] {
            assert!(!is_ui_path(path), "{path}");
        }
    }

    #[test]
    fn the_page_and_every_vendored_library_are_embedded() {
        assert!(Assets::get("index.html").is_some());
        let vendored: Vec<_> = Assets::iter()
            .filter(|path| path.starts_with("vendor/"))
            .collect();
        assert!(
            vendored.iter().any(|path| path.ends_with("README.md")),
            "{vendored:?}"
        );
    }
}
