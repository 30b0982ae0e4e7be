//! The bearer token, required on every route but `/healthz` and the web
//! UI's own files when a token is set (always, when vibesd listens beyond
//! loopback).
//!
//! A client sends it as `Authorization: Bearer <token>`. A browser cannot
//! set that header on a WebSocket, so a WebSocket upgrade may carry it as a
//! subprotocol instead: `Sec-WebSocket-Protocol: vibesd,
//! vibesd.bearer.<token as base64url, unpadded>`; vibesd answers with the
//! `vibesd` protocol ([`with_protocol`]). The UI's files (`/`, its views,
//! `/assets/…`) hold no data, so a browser can load the page that then asks
//! for the token.

use axum::extract::Request;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, header};
use base64::Engine;

use crate::error::ApiError;
use crate::state::AppState;

/// Refuses a request without the token, when one is set, unless it is for
/// `/healthz` or the UI's files.
pub(super) fn check_token(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let path = request.uri().path();
    if path == "/healthz" || crate::ui::is_ui_path(path) {
        return Ok(());
    }
    match bearer(request.headers()).as_deref() {
        None => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing_token",
            "this vibesd needs `Authorization: Bearer <token>` (the token is in the config, \
             or in the data directory's `token` file)",
        )),
        Some(given) if !same(given.as_bytes(), token.as_bytes()) => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "wrong_token",
            "the bearer token is not this vibesd's",
        )),
        Some(_) => Ok(()),
    }
}

/// The subprotocol a browser's WebSocket names to carry the token.
pub(crate) const PROTOCOL: &str = "vibesd";

/// The prefix of the subprotocol that carries the token.
const BEARER_PROTOCOL: &str = "vibesd.bearer.";

/// The token a request carries: its `Authorization` header, else (a
/// WebSocket upgrade from a browser) its bearer subprotocol.
fn bearer(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned);
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(BEARER_PROTOCOL))
        .map(|encoded| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                // Not base64: a token that is never right.
                .unwrap_or_default()
        })
}

/// The upgrade, answering with the [`PROTOCOL`] a browser names along with
/// its token (a browser drops a connection whose answer names none).
pub(crate) fn with_protocol(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade.protocols([PROTOCOL])
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about the token.
fn same(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_comes_from_the_header_or_the_websocket_protocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("s3cr,t=?");
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&format!("vibesd, vibesd.bearer.{encoded}")).unwrap(),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("s3cr,t=?"));
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("vibesd.bearer.%%%"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some(""));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
    }
}
