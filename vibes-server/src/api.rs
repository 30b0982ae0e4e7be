//! The HTTP API: one router built from each area's routes.
//!
//! - `events.rs`: appending (`POST /api/events`, `POST /api/hooks/claude`)
//!   and reading (`GET /api/events`);
//! - `control.rs`: status, health, groups, dead letters and the actor tree;
//! - `GET /metrics` is `crate::metrics` (Prometheus);
//! - `ws.rs`: `WS /ws`, the client protocol (sessions, input, permission
//!   answers);
//! - `notifications.rs`: the web UI's notifications, `GET
//!   /api/notifications` and `WS /ws/notifications`;
//! - `permissions.rs`: remote decisions on Claude Code's permission
//!   dialogs, `/api/permissions…` and `WS /ws/permissions`;
//! - the web UI itself, `/` and `/assets/…`, is `crate::ui`;
//! - the built-in consumers add their own routes (firehose, sessions,
//!   search), and each plugin its own under `/api/plugins/<name>/`.
//!
//! In front of every route, in this order: `guard.rs` refuses requests from
//! other web pages (`Origin`, `Host`) and bodies that are not JSON; then,
//! bound to anything but loopback, every route but `/healthz` and the UI's
//! files needs `Authorization: Bearer <token>` (`auth.rs`). Only then is the route
//! matched, so an unknown route beyond loopback is a 401 before a 404.

mod auth;
mod control;
mod events;
mod extract;
mod guard;
mod notifications;
mod permissions;
mod ws;

use axum::Router;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::state::AppState;

pub(crate) use auth::with_protocol;
pub use events::{frame, stored_frame};
pub use extract::ApiPath;
pub(crate) use guard::valid_origin;

/// In front of every route, one layer (one layer's cost per request, not
/// three): the guard, then the token check, and around both the request's
/// count and duration by route template, so that what they refuse is
/// counted too.
async fn front(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tracked = crate::metrics::Tracked::start(&request);
    let checked =
        guard::check_request(&state, &request).and_then(|()| auth::check_token(&state, &request));
    let response = match checked {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    };
    tracked.finish(&state.metrics, &response);
    response
}

/// The whole API, used by the daemon and by tests alike.
pub fn app(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let body_timeout = Duration::from_secs(state.config.limits.body_timeout_secs);
    let mut router = Router::new()
        .merge(events::router())
        .merge(control::router())
        .merge(ws::router())
        .merge(notifications::router())
        .merge(permissions::router())
        .merge(crate::ui::router())
        .merge(crate::consumers::router());
    // Each plugin's routes under /api/plugins/<name>/, behind the same
    // layers as vibesd's own.
    for plugin in state.plugins.iter() {
        router = router.nest(
            &format!("/api/plugins/{}", plugin.name),
            plugin.running.routes().with_state(()),
        );
    }
    router
        // Before the layers, so that they guard unknown routes too.
        .fallback(|| async {
            crate::error::ApiError::not_found("no_such_route", "no such route; see docs/api.md")
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            crate::error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route does not take {method}; see docs/api.md"),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .layer(DefaultBodyLimit::max(limit))
        // A body that stalls is answered 408 (see `events::body`), not
        // waited for: a slow client holds a connection, not the daemon.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .with_state(state)
}
