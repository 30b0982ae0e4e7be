//! Status, health, consumer groups and dead letters.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vibes_actors::group::{GroupSnapshot, GroupState};
use vibes_iggy::{Offset, SeekTo};

use crate::api::ApiPath;
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/status", get(status))
        .route("/api/groups", get(groups))
        .route("/api/actors", get(actors))
        .route("/metrics", get(crate::metrics::scrape))
        .route("/api/groups/{name}/seek", post(seek))
        .route("/api/groups/{name}/{action}", post(group_action))
        .route("/api/dead-letters", get(dead_letters))
        .route(
            "/api/dead-letters/{group}/{offset}/{action}",
            post(dead_letter_action),
        )
}

async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let high_water_mark = state.log.high_water_mark().await?;
    let snapshot = state.supervisor.snapshot().await;
    let writer = &snapshot.writer;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "backend": state.backend.kind,
        "backend_reason": state.backend.reason,
        "iggy": state.backend.iggy,
        "high_water_mark": high_water_mark,
        "writer": {
            "open": writer.open,
            "queued_events": writer.queued_events,
            "max_queued_events": writer.max_queued_events,
            "events_written": writer.events_written,
            "restarts": writer.restarts,
            "append_latency": writer.append_latency,
        },
        "iggy_server": snapshot.iggy_server,
    })))
}

/// Ready: the log answers, the LogWriter takes appends, and every group
/// runs or was paused on purpose.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut problems = Vec::new();
    if let Err(err) = state.log.high_water_mark().await {
        problems.push(format!("log: {err}"));
    }
    if !state.writer.is_open() {
        problems.push("the log writer is not taking appends".to_owned());
    }
    for group in state.supervisor.groups().await {
        match group.state {
            GroupState::Running | GroupState::Paused => {}
            GroupState::Stuck => {
                let batch = group
                    .batch
                    .as_ref()
                    .map(|batch| {
                        format!(
                            " on offsets {}..={} for {:.0} s",
                            batch.first, batch.last, batch.running_seconds
                        )
                    })
                    .unwrap_or_default();
                problems.push(format!(
                    "group {} is stuck: its handler has been{batch} (stuck_after_secs is {:.0})",
                    group.name, group.stuck_after_seconds
                ));
            }
            state => {
                // Why it is not running: a failing disk, a crash.
                let why = group
                    .last_error
                    .as_deref()
                    .map(|error| format!(" ({error})"))
                    .unwrap_or_default();
                problems.push(format!("group {} is {}{why}", group.name, state.as_str()));
            }
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "problems": problems })),
        )
    }
}

/// A group as `/api/groups` shows it.
fn group_json(group: &GroupSnapshot) -> Value {
    json!({
        "name": group.name,
        "state": group.state,
        "committed_offset": group.committed,
        "position": group.position,
        "high_water_mark": group.high_water_mark,
        "lag": group.lag_events,
        "lag_seconds": group.lag_seconds,
        "restarts": group.restarts,
        "last_error": group.last_error,
        "events_handled": group.events_handled,
        "handler_errors": group.handler_errors,
        "dead_letters": group.open_dead_letters,
        "handler_latency": group.handler_latency,
        "batch": group.batch,
        "stuck_after_seconds": group.stuck_after_seconds,
    })
}

/// The actor tree as it runs now.
async fn actors(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.supervisor.actors()))
}

async fn groups(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    let groups = state.supervisor.groups().await;
    Ok(Json(groups.iter().map(group_json).collect()))
}

async fn group_action(
    State(state): State<AppState>,
    ApiPath((name, action)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    match action.as_str() {
        "pause" => state.supervisor.pause(&name).await?,
        "resume" => state.supervisor.resume(&name).await?,
        "restart" => state.supervisor.restart(&name).await?,
        other => {
            return Err(ApiError::not_found(
                "unknown_action",
                format!("unknown group action {other:?}: pause, resume, restart or seek"),
            ));
        }
    }
    let group = state.supervisor.group(&name).await?;
    Ok(Json(group_json(&group)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    to: Value,
    #[serde(default)]
    dry_run: bool,
}

/// `"beginning"`, `"end"` or an offset.
pub(super) fn seek_target(to: &Value) -> Result<SeekTo, ApiError> {
    match to {
        Value::String(s) if s == "beginning" => Ok(SeekTo::Beginning),
        Value::String(s) if s == "end" => Ok(SeekTo::End),
        Value::Number(n) => n.as_u64().map(SeekTo::Offset).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_seek",
                format!("{n} is not an offset (a whole number ≥ 0)"),
            )
        }),
        other => Err(ApiError::bad_request(
            "invalid_seek",
            format!("\"to\" must be \"beginning\", \"end\" or an offset, not {other}"),
        )),
    }
}

async fn seek(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let bytes =
        bytes.map_err(|err| ApiError::new(err.status(), "unreadable_body", err.body_text()))?;
    let body: SeekBody = serde_json::from_slice(&bytes).map_err(|err| {
        ApiError::bad_request(
            "invalid_seek",
            format!(
                "expected {{\"to\": \"beginning\"|\"end\"|<offset>, \"dry_run\": bool}}: {err}"
            ),
        )
    })?;
    let to = seek_target(&body.to)?;
    let report = state.supervisor.seek(&name, to, body.dry_run).await?;
    Ok(Json(json!(report)))
}

async fn dead_letters(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.supervisor.dead_letters())))
}

async fn dead_letter_action(
    State(state): State<AppState>,
    ApiPath((group, offset, action)): ApiPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let offset: Offset = offset.parse().map_err(|_| {
        ApiError::bad_request("invalid_offset", format!("{offset:?} is not an offset"))
    })?;
    match action.as_str() {
        "replay" => state.supervisor.replay(&group, offset).await?,
        "skip" => state.supervisor.skip(&group, offset).await?,
        other => {
            return Err(ApiError::not_found(
                "unknown_action",
                format!("unknown dead-letter action {other:?}: replay or skip"),
            ));
        }
    }
    Ok(Json(
        json!({ "group": group, "offset": offset, "resolved": action }),
    ))
}
