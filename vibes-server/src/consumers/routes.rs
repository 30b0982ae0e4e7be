//! The HTTP routes of the session-collector and chat-history groups.
//!
//! - `GET /api/sessions`: every session the transcripts index knows;
//! - `GET /api/sessions/{id}/transcript`: its JSON lines, streamed from
//!   the file;
//! - `GET /api/sessions/{id}/messages?before=&limit=`: chat history pages,
//!   newest first;
//! - `GET /api/search?q=&limit=`: full-text search over messages.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::chat_history::{ChatHistory, HistoryError};
use super::sessions::{Collector, valid_session_id};
use crate::api::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

/// The most messages one page or search answers.
const MAX_LIMIT: usize = 500;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}/transcript", get(transcript))
        .route("/api/sessions/{id}/messages", get(messages))
        .route("/api/search", get(search))
}

fn disabled(group: &str) -> ApiError {
    ApiError::not_found(
        "group_disabled",
        format!("the {group} group is disabled in the config"),
    )
}

fn collector(state: &AppState) -> Result<Arc<Collector>, ApiError> {
    state
        .services
        .sessions
        .clone()
        .ok_or_else(|| disabled("session-collector"))
}

fn history(state: &AppState) -> Result<Arc<ChatHistory>, ApiError> {
    state
        .services
        .chat_history
        .clone()
        .ok_or_else(|| disabled("chat-history"))
}

fn unknown_session(id: &str) -> ApiError {
    ApiError::not_found("unknown_session", format!("no session {id:?}"))
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    if valid_session_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_session_id",
            "a session id is 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'",
        ))
    }
}

fn limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
        n if n > MAX_LIMIT => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
        n => Ok(n),
    }
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|err| ApiError::bad_request("invalid_query", err.body_text()))
}

/// Runs a blocking read off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| ApiError::internal("history read", &err))?
}

async fn list_sessions(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let collector = collector(&state)?;
    let sessions = blocking(move || {
        collector
            .sessions()
            .map_err(|err| ApiError::internal("sessions index", &err))
    })
    .await?;
    Ok(Json(json!({ "sessions": sessions })))
}

async fn transcript(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    let collector = collector(&state)?;
    let lookup = id.clone();
    let found = blocking(move || {
        collector
            .transcript(&lookup)
            .map_err(|err| ApiError::internal("transcript", &err))
    })
    .await?
    .ok_or_else(|| unknown_session(&id))?;
    let body = match tokio::fs::File::open(&found.path).await {
        // Only what the index says is applied: a batch being appended is
        // not part of the answer yet.
        Ok(file) => Body::from_stream(chunks(file.take(found.len))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Body::empty(),
        Err(err) => return Err(ApiError::internal("transcript", &err)),
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `reader` as a stream of chunks of at most 64 KiB, so a transcript of
/// any length is sent with a bounded buffer.
fn chunks(
    reader: impl AsyncRead + Unpin + Send + 'static,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buffer = vec![0; 64 * 1024];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(reader)))
            }
            Err(err) => Some((Err(err), None)),
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

async fn messages(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    page: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let page = query(page)?;
    let limit = limit(page.limit, 50)?;
    let db = history(&state)?;
    let lookup = id.clone();
    let found = blocking(move || {
        db.messages(&lookup, page.before, limit)
            .map_err(|err| ApiError::internal("chat history", &err))
    })
    .await?;
    let (messages, next_before) = found.ok_or_else(|| unknown_session(&id))?;
    Ok(Json(
        json!({ "messages": messages, "next_before": next_before }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
}

async fn search(
    State(state): State<AppState>,
    search: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let search = query(search)?;
    let limit = limit(search.limit, 20)?;
    let Some(q) = search.q.filter(|q| !q.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_search",
            "q, the FTS5 query, is required",
        ));
    };
    let db = history(&state)?;
    let results = blocking(move || {
        db.search(&q, limit).map_err(|err| match err {
            HistoryError::BadQuery(message) => ApiError::bad_request(
                "invalid_search",
                format!("not an FTS5 query ({message}); quote words with special characters"),
            ),
            other => ApiError::internal("search", &other),
        })
    })
    .await?;
    Ok(Json(json!({ "results": results })))
}
