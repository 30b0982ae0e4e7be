//! The HTTP API: one router built from each area's routes.
//!
//! - `events.rs`: appending (`POST /api/events`, `POST /api/hooks/claude`)
//!   and reading (`GET /api/events`);
//! - `control.rs`: status, health, groups and dead letters;
//! - `ws.rs`: `WS /ws`, the client protocol (sessions, input, permission
//!   answers); `origin.rs` guards every WebSocket upgrade;
//! - the built-in consumers add their own routes (firehose, sessions,
//!   search).
//!
//! Bound to anything but loopback, every route but `/healthz` needs
//! `Authorization: Bearer <token>` (`auth.rs`).

mod auth;
mod control;
mod events;
mod origin;
mod ws;

use axum::Router;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::state::AppState;

pub use events::{frame, stored_frame};
pub(crate) use origin::check as check_origin;

/// The whole API, used by the daemon and by tests alike.
pub fn app(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let body_timeout = Duration::from_secs(state.config.limits.body_timeout_secs);
    Router::new()
        .merge(events::router())
        .merge(control::router())
        .merge(ws::router())
        .merge(crate::consumers::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // A body that stalls is answered 408 (see `events::body`), not
        // waited for: a slow client holds a connection, not the daemon.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .fallback(|| async {
            crate::error::ApiError::not_found("no_such_route", "no such route; see docs/api.md")
        })
        .with_state(state)
}
