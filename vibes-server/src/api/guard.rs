//! The guard in front of every route: no web page from another origin may
//! read or write vibesd.
//!
//! A browser lets any page send a "simple" request (a POST with a
//! `text/plain` body, no preflight) to any address, loopback included, and
//! open a WebSocket to it; the bearer token cannot help, since vibesd on
//! loopback needs none. Three checks close that, on every route:
//!
//! - **Origin.** A browser says which page sent a request in `Origin`. A
//!   request that carries one is refused (403) unless it is vibesd's own
//!   (same host and port as `Host`) or one of the configured
//!   `allowed_origins`. Clients outside a browser (the CLI, `vibesd hook`,
//!   curl, scripts) send none and are let through.
//! - **Host.** A DNS-rebinding page has its own name point at 127.0.0.1, so
//!   its requests are same-origin as far as the browser knows, and `Origin`
//!   and `Host` both carry that name. A daemon bound to loopback therefore
//!   refuses (403) a `Host` that is not a loopback name or address (or the
//!   host of an allowed origin, for a reverse proxy that keeps it).
//! - **Content-Type.** Every body vibesd reads is JSON: a request with a
//!   body that is not `application/json` is refused (415). A browser cannot
//!   send `application/json` to another origin without a CORS preflight,
//!   which vibesd never grants.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, StatusCode, Uri, header};

use crate::error::ApiError;
use crate::state::AppState;

/// Refuses a request from a foreign page, or with a body that is not
/// JSON, before it reaches the token check or a route.
pub(super) fn check_request(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let config = &state.config;
    check_head(request)?;
    check(request.headers(), config.bind, &config.allowed_origins)?;
    // An HTTP/1.1 request has a body only if its headers say so.
    let has_body = declares_body(request.headers());
    check_content_type(request.headers(), has_body)
}

/// `Ok` when the request comes from no browser page, or from vibesd's own
/// (or an allowed one), through a name that cannot be a rebinding.
pub(crate) fn check(
    headers: &HeaderMap,
    bind: SocketAddr,
    allowed_origins: &[String],
) -> Result<(), ApiError> {
    let refused = |error: &'static str, why: String| {
        ApiError::new(StatusCode::FORBIDDEN, error, format!("refused: {why}"))
    };
    let host: Option<Authority> = match headers.get(header::HOST) {
        None => None,
        Some(host) => Some(
            host.to_str()
                .ok()
                .and_then(|host| host.parse().ok())
                .ok_or_else(|| {
                    refused("host_refused", "the Host header is not a host name".into())
                })?,
        ),
    };
    if bind.ip().is_loopback()
        && let Some(host) = &host
        && !is_loopback_name(host.host())
        && !allowed_origins
            .iter()
            .filter_map(|origin| origin.parse::<Uri>().ok())
            .any(|origin| {
                origin
                    .host()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host.host()))
            })
    {
        return Err(refused(
            "host_refused",
            format!(
                "vibesd listens on loopback but was reached as {}: use localhost or \
                 127.0.0.1 (or list the origin in allowed_origins)",
                crate::clip::clip(host.as_str())
            ),
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| refused("origin_refused", "the Origin header is not text".into()))?;
    let foreign = || {
        refused(
            "origin_refused",
            format!(
                "a page from {} may not use this vibesd (add it to allowed_origins to allow it)",
                crate::clip::clip(origin)
            ),
        )
    };
    if allowed_origins
        .iter()
        .any(|allowed| same_origin(allowed, origin))
    {
        return Ok(());
    }
    let uri: Uri = origin.parse().map_err(|_| foreign())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(foreign());
    };
    let Some(host) = host else {
        return Err(refused(
            "origin_refused",
            "the request has no Host header to compare its Origin with".into(),
        ));
    };
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let same_host = authority.host().eq_ignore_ascii_case(host.host());
    let same_port =
        authority.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port);
    if same_host && same_port {
        Ok(())
    } else {
        Err(foreign())
    }
}

/// Whether two origins (`scheme://host[:port]`) are the same, default
/// ports and letter case aside.
fn same_origin(a: &str, b: &str) -> bool {
    let parts = |origin: &str| {
        let uri: Uri = origin.parse().ok()?;
        let scheme = uri.scheme()?.as_str().to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some((scheme, uri.host()?.to_ascii_lowercase(), port))
    };
    parts(a).is_some_and(|a| parts(b) == Some(a))
}

/// Checks an allowed origin from the config: `scheme://host[:port]`,
/// nothing more.
pub(crate) fn valid_origin(origin: &str) -> Result<(), String> {
    let uri: Uri = origin
        .parse()
        .map_err(|_| format!("{origin:?} is not a URL"))?;
    let ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some()
        && uri.path_and_query().is_none_or(|path| path.as_str() == "/")
        && !origin.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} is not an origin: write scheme://host[:port], e.g. \"https://vibes.example.com\""
        ))
    }
}

/// The longest request target vibesd reads; no route needs more.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes (names and values) a request may carry.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses a request line or header block larger than any client of vibesd
/// sends, with the same JSON as every other refusal. (Beyond the HTTP
/// layer's own hard limits, 64 KiB of URI and about 400 KiB of head, the
/// connection is refused by it with a bare status before any route runs.)
fn check_head(request: &Request) -> Result<(), ApiError> {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |path| path.as_str().len());
    if uri > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri} bytes long; at most {MAX_URI_BYTES}"),
        ));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are {headers} bytes; at most {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(())
}

/// A body is read only as JSON: one of another type is refused.
fn check_content_type(headers: &HeaderMap, has_body: bool) -> Result<(), ApiError> {
    if !has_body {
        return Ok(());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("(not text)"));
    let json = content_type.is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        match content_type {
            Some(other) => format!(
                "request bodies are JSON: send `Content-Type: application/json`, not {}",
                crate::clip::clip(other)
            ),
            None => "request bodies are JSON: send `Content-Type: application/json`".into(),
        },
    ))
}

/// Whether the headers announce a body.
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
}

fn is_loopback_name(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn own_origin_or_none_is_let_through_and_others_are_refused() {
        let loopback: SocketAddr = "127.0.0.1:7432".parse().unwrap();
        let anywhere: SocketAddr = "0.0.0.0:7432".parse().unwrap();
        let allowed = ["https://ui.example".to_owned()];
        let ok = [
            (None, "127.0.0.1:7432", loopback),
            (Some("http://127.0.0.1:7432"), "127.0.0.1:7432", loopback),
            (Some("http://LOCALHOST:7432"), "localhost:7432", loopback),
            (Some("http://[::1]:7432"), "[::1]:7432", loopback),
            (Some("http://box.lan"), "box.lan:80", anywhere),
            (Some("https://ui.example:443"), "127.0.0.1:7432", loopback),
            // A reverse proxy that keeps an allowed origin's Host.
            (Some("https://ui.example"), "ui.example", loopback),
        ];
        for (origin, host, bind) in ok {
            assert!(
                check(&headers(origin, host), bind, &allowed).is_ok(),
                "{origin:?} {host}"
            );
        }
        let refused = [
            (Some("http://evil.example"), "127.0.0.1:7432", loopback),
            (Some("http://127.0.0.1:9999"), "127.0.0.1:7432", loopback),
            (Some("null"), "127.0.0.1:7432", loopback),
            (Some("http://ui.example"), "127.0.0.1:7432", loopback),
            // DNS rebinding: the page's own name, resolved to loopback,
            // with or without an Origin (a same-origin GET has none).
            (
                Some("http://evil.example:7432"),
                "evil.example:7432",
                loopback,
            ),
            (None, "evil.example:7432", loopback),
        ];
        for (origin, host, bind) in refused {
            let err = check(&headers(origin, host), bind, &allowed).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{origin:?} {host}");
        }
    }

    #[test]
    fn a_body_must_be_json() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            check_content_type(&headers, declares_body(&headers))
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[(header::CONTENT_LENGTH, "0")]).is_ok());
        assert!(
            with(&[
                (header::CONTENT_LENGTH, "2"),
                (header::CONTENT_TYPE, "Application/JSON; charset=utf-8")
            ])
            .is_ok()
        );
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            let err =
                with(&[(header::CONTENT_LENGTH, "2"), (header::CONTENT_TYPE, bad)]).unwrap_err();
            assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        let err = with(&[(header::TRANSFER_ENCODING, "chunked")]).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        assert!(valid_origin("https://vibes.example.com").is_ok());
        assert!(valid_origin("http://localhost:5173").is_ok());
        for bad in [
            "*",
            "vibes.example.com",
            "https://x.example/path",
            "https://x.example/",
            "ftp://x",
        ] {
            assert!(valid_origin(bad).is_err(), "{bad}");
        }
    }
}
