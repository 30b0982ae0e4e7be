//! The bearer token, required on every route but `/healthz` when a token
//! is set (always, when vibesd listens beyond loopback).

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "missing_token",
            "this vibesd needs `Authorization: Bearer <token>` (the token is in the config, \
             or in the data directory's `token` file)",
        )
        .into_response(),
        Some(given) if !same(given.as_bytes(), token.as_bytes()) => ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "wrong_token",
            "the bearer token is not this vibesd's",
        )
        .into_response(),
        Some(_) => next.run(request).await,
    }
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
