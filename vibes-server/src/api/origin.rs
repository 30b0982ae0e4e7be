//! The `Origin` check of the WebSocket routes.
//!
//! A browser lets any web page open a WebSocket to any address, but it says
//! which page did so in `Origin`; the bearer token cannot help here, since a
//! browser sends no `Authorization` on a WebSocket and vibesd on loopback
//! needs none. So an upgrade is refused unless its `Origin` is vibesd's own
//! `Host` (same host and port). Clients outside a browser (the CLI, scripts)
//! send no `Origin` and are let through.
//!
//! Matching `Host` alone would let a DNS-rebinding page through (its name
//! now points at 127.0.0.1, and `Origin` and `Host` both carry that name),
//! so a daemon bound to loopback also requires `Host` to be a loopback name.

use std::net::{IpAddr, SocketAddr};

use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, StatusCode, Uri, header};

use crate::error::ApiError;

/// `Ok` when the request may be upgraded: no `Origin`, or vibesd's own.
pub(crate) fn check(headers: &HeaderMap, bind: SocketAddr) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let refused = |why: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_refused",
            format!("WebSocket upgrade refused: {why}"),
        )
    };
    let origin = origin
        .to_str()
        .map_err(|_| refused("the Origin header is not text"))?;
    let uri: Uri = origin
        .parse()
        .map_err(|_| refused(&format!("Origin {origin:?} is not a URL")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(refused(&format!("Origin {origin:?} is not a web origin")));
    };
    let host: Authority = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse().ok())
        .ok_or_else(|| refused("the request has no valid Host header to compare Origin with"))?;
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let same_host = authority.host().eq_ignore_ascii_case(host.host());
    let same_port =
        authority.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port);
    if !(same_host && same_port) {
        return Err(refused(&format!(
            "Origin {origin:?} is not this vibesd ({host})"
        )));
    }
    if bind.ip().is_loopback() && !is_loopback_name(host.host()) {
        return Err(refused(&format!(
            "vibesd listens on loopback but was reached as {host}"
        )));
    }
    Ok(())
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
        let ok = [
            (None, "127.0.0.1:7432", loopback),
            (Some("http://127.0.0.1:7432"), "127.0.0.1:7432", loopback),
            (Some("http://LOCALHOST:7432"), "localhost:7432", loopback),
            (Some("http://[::1]:7432"), "[::1]:7432", loopback),
            (Some("http://box.lan"), "box.lan:80", anywhere),
        ];
        for (origin, host, bind) in ok {
            assert!(check(&headers(origin, host), bind).is_ok(), "{origin:?}");
        }
        let refused = [
            (Some("http://evil.example"), "127.0.0.1:7432", loopback),
            (Some("http://127.0.0.1:9999"), "127.0.0.1:7432", loopback),
            (Some("null"), "127.0.0.1:7432", loopback),
            // DNS rebinding: the page's own name, resolved to loopback.
            (
                Some("http://evil.example:7432"),
                "evil.example:7432",
                loopback,
            ),
        ];
        for (origin, host, bind) in refused {
            let err = check(&headers(origin, host), bind).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{origin:?}");
        }
    }
}
