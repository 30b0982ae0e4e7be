//! Appending and reading events.
//!
//! - `POST /api/events`: one `VibesEvent` JSON object or an array of them,
//!   appended atomically through the LogWriter; `200 {"offsets":[...]}`
//!   once durable.
//! - `POST /api/hooks/claude`: a Claude Code hook payload, stored as a
//!   `hook` event plus the events it implies.
//! - `GET /api/events?from=&limit=`: a page of the log.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vibes_core::{HookPayload, StoredEvent, VibesEvent};
use vibes_iggy::{Offset, Record};

use crate::error::ApiError;
use crate::state::AppState;

/// The most events one `GET /api/events` returns.
const MAX_PAGE: usize = 1000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", post(append).get(page))
        .route("/api/hooks/claude", post(hook))
}

/// The body, or the reason it could not be read (too large, mostly).
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                "the request body is over the configured limit (limits.max_body_bytes)",
            )
        } else if timed_out(&rejection) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stalled for longer than limits.body_timeout_secs; \
                 send it whole, or raise the limit",
            )
        } else {
            ApiError::new(status, "unreadable_body", rejection.body_text())
        }
    })
}

/// Whether the body failed because it stalled (tower-http's body timeout,
/// somewhere in the rejection's causes).
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    // Deeper than this cannot be an event (an array of events adds one
    // level); the log checks each event's own depth exactly.
    let depth = vibes_core::json_depth(bytes);
    if depth > vibes_core::MAX_EVENT_DEPTH + 1 {
        return Err(ApiError::bad_request(
            "event_too_deep",
            format!(
                "the body nests {depth} levels of JSON objects and arrays; an event may nest \
                 at most {}",
                vibes_core::MAX_EVENT_DEPTH
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        ApiError::bad_request("malformed_json", format!("the body is not JSON: {err}"))
    })
}

/// Events clients may not send: vibesd writes them itself.
const RESERVED: &[&str] = &[
    "dead_letter",
    "dead_letter_resolved",
    "plugin",
    "permission_outcome",
];

/// One client-sent event, checked: a known type, well-formed.
pub(crate) fn client_event(value: Value, index: Option<usize>) -> Result<VibesEvent, ApiError> {
    let at = index.map_or_else(String::new, |i| format!(" (element {i})"));
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_event",
                format!("\"type\" must be a string{at}"),
            ));
        }
        None if value.is_object() => {
            return Err(ApiError::bad_request(
                "invalid_event",
                format!(
                    "an event needs a \"type\"{at}; known types: {}",
                    known_kinds()
                ),
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "invalid_event",
                format!("an event is a JSON object with a \"type\"{at}"),
            ));
        }
    };
    if RESERVED.contains(&kind.as_str()) || !VibesEvent::KINDS.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(
            "unknown_event_type",
            format!(
                "unknown event type {kind:?}{at}; known types: {}",
                known_kinds()
            ),
        ));
    }
    let event: VibesEvent = serde_json::from_value(value)
        .map_err(|err| ApiError::bad_request("invalid_event", format!("{err}{at}")))?;
    if let VibesEvent::Claude { event: inner, .. } = &event
        && let vibes_core::ClaudeEvent::Unknown(unknown) = inner
    {
        return Err(ApiError::bad_request(
            "unknown_event_type",
            format!("unknown claude event type {:?}{at}", unknown.kind()),
        ));
    }
    if let VibesEvent::PermissionResponse {
        request_offset,
        decided_by,
        ..
    } = &event
        && (request_offset.is_some() || decided_by.is_some())
    {
        return Err(ApiError::bad_request(
            "reserved_field",
            format!(
                "\"request_offset\" and \"decided_by\" of a permission_response are written by \
                 vibesd alone{at}; send the answer with \
                 \"session_id\", \"request_id\" and \"approved\" only"
            ),
        ));
    }
    Ok(event)
}

fn known_kinds() -> String {
    VibesEvent::KINDS
        .iter()
        .filter(|kind| !RESERVED.contains(kind))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Serialize)]
struct Appended {
    offsets: Vec<Offset>,
    /// A plugin's answer to a hook, for `vibesd hook` to print for Claude
    /// Code.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    /// For a `PermissionRequest` hook that may be decided remotely: the
    /// request to wait for, and how long (see `docs/hooks.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    permission: Option<crate::permissions::Wait>,
}

async fn append(
    State(state): State<AppState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Appended>, ApiError> {
    let bytes = body(bytes)?;
    let events = match parse_json(&bytes)? {
        Value::Array(values) => {
            if values.is_empty() {
                return Err(ApiError::bad_request(
                    "empty_batch",
                    "the array holds no events",
                ));
            }
            values
                .into_iter()
                .enumerate()
                .map(|(i, value)| client_event(value, Some(i)))
                .collect::<Result<Vec<_>, _>>()?
        }
        value => vec![client_event(value, None)?],
    };
    let stored = events.into_iter().map(StoredEvent::new).collect();
    let range = state.writer.append_batch(stored).await?;
    Ok(Json(Appended {
        offsets: range.collect(),
        output: None,
        permission: None,
    }))
}

/// The events a hook payload stands for: the `hook` event itself, then
/// what it implies for the session.
pub(crate) fn hook_events(payload: HookPayload) -> Result<Vec<VibesEvent>, ApiError> {
    let session_id = match payload.extra.get("session_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_hook",
                "a hook payload needs a non-empty string \"session_id\"",
            ));
        }
    };
    let mut events = Vec::with_capacity(2);
    let derived = match payload.hook_event_name.as_str() {
        "UserPromptSubmit" => payload.prompt.clone().map(|content| VibesEvent::UserInput {
            session_id: session_id.clone(),
            content,
            source: "hook".into(),
        }),
        "SessionStart" => Some(VibesEvent::SessionCreated {
            session_id: session_id.clone(),
            name: payload.cwd.clone(),
        }),
        "SessionEnd" => Some(VibesEvent::SessionRemoved {
            session_id: session_id.clone(),
            reason: payload
                .extra
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("session_end")
                .to_owned(),
        }),
        "Stop" => Some(VibesEvent::SessionStateChanged {
            session_id: session_id.clone(),
            state: "waiting_for_input".into(),
        }),
        _ => None,
    };
    events.push(VibesEvent::Hook {
        session_id,
        event: payload,
    });
    events.extend(derived);
    Ok(events)
}

async fn hook(
    State(state): State<AppState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Appended>, ApiError> {
    let bytes = body(bytes)?;
    let value = parse_json(&bytes)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_hook",
            "a hook payload is a JSON object",
        ));
    }
    let payload: HookPayload = serde_json::from_value(value)
        .map_err(|err| ApiError::bad_request("invalid_hook", err.to_string()))?;
    let events = hook_events(payload.clone())?;
    let session_id = events
        .first()
        .and_then(VibesEvent::session_id)
        .unwrap_or_default()
        .to_owned();
    let stored = events.into_iter().map(StoredEvent::new).collect();
    let range = state.writer.append_batch(stored).await?;
    let output = plugin_answer(&state, &session_id, &payload).await;
    // A plugin that answered has decided for Claude Code: nothing to wait for.
    let permission = match output {
        Some(_) => None,
        None => {
            state
                .permissions
                .register(range.start, &session_id, &payload)
                .await
        }
    };
    Ok(Json(Appended {
        offsets: range.collect(),
        output,
        permission,
    }))
}

/// The first plugin answer to a hook, once what records it is durable. An
/// answer whose record the log did not take is not given: the hook is
/// recorded either way, and Claude Code goes on without it.
async fn plugin_answer(state: &AppState, session_id: &str, payload: &HookPayload) -> Option<Value> {
    for plugin in state.plugins.iter() {
        let Some(answer) = plugin.running.answer_hook(session_id, payload) else {
            continue;
        };
        if let Some(record) = answer.record
            && let Err(err) = state.writer.append(StoredEvent::new(record)).await
        {
            tracing::warn!(
                plugin = plugin.name, %session_id,
                error = %vibes_core::ErrorChain(&err),
                "a plugin's answer to a hook is dropped: its record was not written"
            );
            return None;
        }
        return Some(answer.output);
    }
    None
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    from: Offset,
    limit: Option<usize>,
}

/// A record as the API shows it: `{offset, event_id, timestamp, event}`,
/// or `{offset, error}` for a record that does not decode.
pub fn frame(record: &Record) -> Value {
    match record.event() {
        Ok(stored) => stored_frame(record.offset, &stored),
        Err(err) => json!({ "offset": record.offset, "error": vibes_core::error_chain(&err) }),
    }
}

/// The frame of an event already decoded: `{offset, event_id, timestamp, event}`.
pub fn stored_frame(offset: Offset, stored: &StoredEvent) -> Value {
    json!({
        "offset": offset,
        "event_id": stored.event_id,
        "timestamp": stored.timestamp,
        "event": stored.event,
    })
}

async fn page(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::bad_request("invalid_query", err.body_text()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let records = state.log.read(query.from, limit).await?;
    let end = state.log.high_water_mark().await?;
    let next = records
        .last()
        .map(|record| record.offset + 1)
        .filter(|next| *next < end);
    let events: Vec<Value> = records.iter().map(frame).collect();
    Ok(Json(json!({ "events": events, "next": next })))
}
