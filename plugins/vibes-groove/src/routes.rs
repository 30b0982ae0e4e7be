//! groove's routes, served by vibesd under `/api/plugins/groove`:
//!
//! - `GET /sessions`: every session's summary;
//! - `GET /sessions/{id}?after=<offset>&limit=<n>`: one page of a
//!   session's timeline (signals, transitions, checkpoints, interventions
//!   in offset order);
//! - `GET /totals`: counts over every session.
//!
//! Each answers from SQLite on a blocking thread. Errors are
//! `{"error": code, "detail": sentence}`: `invalid_query` (400),
//! `unknown_session` (404), `internal` (500, logged once, generic here).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::GrooveError;
use crate::store::GrooveStore;

/// A page's size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

/// groove's router, paths relative to its mount point.
pub fn routes(store: Arc<GrooveStore>) -> Router {
    Router::new()
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", get(timeline))
        .route("/totals", get(totals))
        .fallback(unknown_route)
        .method_not_allowed_fallback(not_allowed)
        .with_state(store)
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    let detail = format!(
        "groove has no route {}; it serves GET /sessions, /sessions/{{id}} and /totals",
        uri.path()
    );
    let body = Json(json!({ "error": "not_found", "detail": detail }));
    (StatusCode::NOT_FOUND, body).into_response()
}

async fn not_allowed() -> Response {
    let body = Json(json!({
        "error": "method_not_allowed",
        "detail": "groove's routes are read-only: use GET",
    }));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// An error of a groove route.
#[derive(Debug)]
enum RouteError {
    InvalidQuery(String),
    UnknownSession(String),
    Internal,
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        let (status, error, detail) = match self {
            Self::InvalidQuery(detail) => (StatusCode::BAD_REQUEST, "invalid_query", detail),
            Self::UnknownSession(id) => (
                StatusCode::NOT_FOUND,
                "unknown_session",
                format!("groove has assessed no session {id:?}"),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "groove could not read its store; vibesd's log says why".to_owned(),
            ),
        };
        (status, Json(json!({ "error": error, "detail": detail }))).into_response()
    }
}

impl From<GrooveError> for RouteError {
    fn from(err: GrooveError) -> Self {
        tracing::error!("groove route: {}", vibes_core::ErrorChain(&err));
        Self::Internal
    }
}

/// Runs a store read on a blocking thread.
async fn read<T: Send + 'static>(
    store: Arc<GrooveStore>,
    f: impl FnOnce(&GrooveStore) -> Result<T, GrooveError> + Send + 'static,
) -> Result<T, RouteError> {
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => Ok(result?),
        Err(join) => {
            tracing::error!("groove route panicked: {join}");
            Err(RouteError::Internal)
        }
    }
}

async fn sessions(State(store): State<Arc<GrooveStore>>) -> Result<Json<Value>, RouteError> {
    let (sessions, applied) = read(store, |store| {
        Ok((store.sessions()?, store.applied_offset()?))
    })
    .await?;
    Ok(Json(
        json!({ "sessions": sessions, "applied_offset": applied }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn timeline(
    State(store): State<Arc<GrooveStore>>,
    Path(id): Path<String>,
    query: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Json<Value>, RouteError> {
    let Query(query) = query.map_err(|rejection| {
        RouteError::InvalidQuery(format!(
            "{}; the query takes after=<offset> and limit=<1 to {MAX_LIMIT}>",
            rejection.body_text()
        ))
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(RouteError::InvalidQuery(format!(
            "limit must be from 1 to {MAX_LIMIT}, got {limit}"
        )));
    }
    let after = query.after;
    let session = id.clone();
    let page = read(store, move |store| store.timeline(&session, after, limit)).await?;
    let Some(page) = page else {
        return Err(RouteError::UnknownSession(id));
    };
    Ok(Json(json!({
        "session": page.session,
        "records": page.records,
        "next_after": page.next_after,
    })))
}

async fn totals(State(store): State<Arc<GrooveStore>>) -> Result<Json<Value>, RouteError> {
    Ok(Json(read(store, GrooveStore::totals).await?))
}
