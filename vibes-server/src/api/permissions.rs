//! Remote decisions on Claude Code's permission dialogs (see
//! `crate::permissions` and `docs/hooks.md`).
//!
//! - `GET /api/permissions`: the requests kept, newest first;
//! - `GET /api/permissions/{offset}`: one request;
//! - `POST /api/permissions/{offset}/decision` `{"behavior":"allow"|"deny",
//!   "message"?}`: the decision, recorded with the route, the client's
//!   address and the page's `Origin`; `409` when another came first or the
//!   request no longer waits;
//! - `POST /api/permissions/{offset}/outcome` `{"outcome":…}`: how
//!   `vibesd hook`'s wait ended;
//! - `WS /ws/permissions`: `{"type":"snapshot","requests":[…]}` on
//!   connecting (and again after falling behind), then
//!   `{"type":"request","request":{…}}` for each change.
//!
//! The guard and the token check in front of every route apply: a page
//! from another origin cannot decide, nor can a client beyond loopback
//! without the token.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use vibes_core::DecidedBy;
use vibes_iggy::Offset;

use super::ApiPath;
use crate::consumers::websocket::{NO_INPUT_MESSAGE_BYTES, not_a_websocket};
use crate::error::ApiError;
use crate::permissions::{Behavior, Outcome, Permissions, Refused, Request};
use crate::state::AppState;

/// The route a decision through the API records.
const DECISION_ROUTE: &str = "POST /api/permissions/{offset}/decision";

/// The longest message a denial may carry to Claude.
const MAX_MESSAGE_CHARS: usize = 2000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/permissions", get(list))
        .route("/api/permissions/{offset}", get(one))
        .route("/api/permissions/{offset}/decision", post(decide))
        .route("/api/permissions/{offset}/outcome", post(outcome))
        .route("/ws/permissions", get(connect))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "enabled": state.config.remote_approval.enabled,
        "requests": state.permissions.list().await,
    }))
}

fn offset_of(text: &str) -> Result<Offset, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_offset",
            format!(
                "{:?} is not an offset: a request is named by the offset of its hook event, \
                 e.g. /api/permissions/42",
                crate::clip::clip(text)
            ),
        )
    })
}

async fn one(
    State(state): State<AppState>,
    ApiPath(offset): ApiPath<String>,
) -> Result<Json<Request>, ApiError> {
    let offset = offset_of(&offset)?;
    state
        .permissions
        .get(offset)
        .await
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_request",
                format!("no permission request at offset {offset} is kept here"),
            )
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    behavior: Behavior,
    #[serde(default)]
    message: Option<String>,
}

fn json_body<T: serde::de::DeserializeOwned>(
    bytes: Result<Bytes, BytesRejection>,
    error: &'static str,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes =
        bytes.map_err(|err| ApiError::new(err.status(), "unreadable_body", err.body_text()))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::bad_request(error, format!("expected {expected}: {err}")))
}

async fn decide(
    State(state): State<AppState>,
    ApiPath(offset): ApiPath<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let offset = offset_of(&offset)?;
        let body: DecisionBody = json_body(
            bytes,
            "invalid_decision",
            "{\"behavior\": \"allow\"|\"deny\", \"message\": \"…\" (deny only)}",
        )?;
        let message = body.message.filter(|message| !message.trim().is_empty());
        if let Some(message) = &message {
            if body.behavior == Behavior::Allow {
                return Err(ApiError::bad_request(
                    "invalid_decision",
                    "a message goes with a denial only: Claude Code shows it to Claude \
                     in place of the tool's result",
                ));
            }
            let chars = message.chars().count();
            if chars > MAX_MESSAGE_CHARS {
                return Err(ApiError::bad_request(
                    "message_too_long",
                    format!("the message is {chars} characters; at most {MAX_MESSAGE_CHARS}"),
                ));
            }
        }
        let decided_by = DecidedBy {
            route: DECISION_ROUTE.to_owned(),
            client: peer.map(|Extension(ConnectInfo(addr))| addr.to_string()),
            origin: headers
                .get(header::ORIGIN)
                .and_then(|origin| origin.to_str().ok())
                .map(|origin| origin.chars().take(256).collect()),
        };
        Ok((offset, body.behavior, message, decided_by))
    }
    .await;
    let (offset, behavior, message, decided_by) = match result {
        Ok(parts) => parts,
        Err(err) => return err.into_response(),
    };
    match state
        .permissions
        .decide(offset, behavior, message, decided_by)
        .await
    {
        Ok(request) => Json(request).into_response(),
        Err(refused) => refusal(offset, refused),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    outcome: Outcome,
}

async fn outcome(
    State(state): State<AppState>,
    ApiPath(offset): ApiPath<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = offset_of(&offset).and_then(|offset| {
        let body: OutcomeBody = json_body(
            bytes,
            "invalid_outcome",
            "{\"outcome\": \"decided\"|\"timed_out\"|\"unreachable\"}",
        )?;
        Ok((offset, body.outcome))
    });
    let (offset, outcome) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return err.into_response(),
    };
    match state.permissions.outcome(offset, outcome).await {
        Ok(Some(request)) => Json(request).into_response(),
        Ok(None) => Json(json!({ "offset": offset, "outcome": outcome })).into_response(),
        Err(refused) => refusal(offset, refused),
    }
}

/// A refused decision or outcome: `409` with what happened instead.
fn refusal(offset: Offset, refused: Refused) -> Response {
    let conflict = |error: &str, detail: String, request: Option<&Request>| {
        let mut body = json!({ "error": error, "detail": detail });
        if let Some(request) = request {
            body["request"] = serde_json::to_value(request).unwrap_or_default();
            if let Some(decision) = &request.decision {
                body["decision"] = serde_json::to_value(decision).unwrap_or_default();
            }
        }
        (StatusCode::CONFLICT, Json(body)).into_response()
    };
    match refused {
        Refused::NotFound => ApiError::not_found(
            "no_such_request",
            format!(
                "the event at offset {offset} is no PermissionRequest hook waiting for a decision"
            ),
        )
        .into_response(),
        Refused::AlreadyDecided(request) => {
            let how = match request.decision.as_ref().map(|decision| decision.behavior) {
                Some(Behavior::Allow) => "allowed",
                _ => "denied",
            };
            conflict(
                "already_decided",
                format!(
                    "the request at offset {offset} was already {how}; the first decision stands"
                ),
                Some(&request),
            )
        }
        Refused::NotPending(request) => {
            let why = match request.as_ref().and_then(|request| request.outcome) {
                Some(Outcome::Decided) => "it was decided and Claude Code has the decision",
                Some(Outcome::TimedOut) => "its wait ended: the dialog went to the terminal",
                Some(Outcome::Unreachable) => {
                    "its hook lost vibesd: the dialog went to the terminal"
                }
                None => {
                    "vibesd restarted since, which ended its wait: the dialog went to the terminal"
                }
            };
            conflict(
                "not_pending",
                format!("the request at offset {offset} takes no decision any more: {why}"),
                request.as_deref(),
            )
        }
        Refused::NotDecided => conflict(
            "not_decided",
            format!("no decision was taken for the request at offset {offset}"),
            None,
        ),
        Refused::Api(err) => err.into_response(),
    }
}

async fn connect(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(not_a_websocket)?;
    Ok(super::auth::with_protocol(upgrade)
        .max_message_size(NO_INPUT_MESSAGE_BYTES)
        .on_upgrade(move |socket| push(state, socket)))
}

async fn push(state: AppState, mut socket: WebSocket) {
    let _counted = state
        .metrics
        .websocket_client(crate::metrics::WS_PERMISSIONS_ROUTE);
    let mut lifecycle = state.lifecycle.clone();
    tokio::select! {
        () = serve(&mut socket, &state.permissions) => {}
        () = lifecycle.stopping() => {
            let close = CloseFrame {
                code: close_code::AWAY,
                reason: "vibesd is shutting down".into(),
            };
            crate::state::goodbye(&mut socket, close).await;
        }
    }
}

/// The snapshot, then each change, until the client goes.
async fn serve(socket: &mut WebSocket, permissions: &Permissions) {
    // Subscribed before the snapshot, so no change falls between.
    let mut live = permissions.subscribe();
    loop {
        let snapshot = json!({ "type": "snapshot", "requests": permissions.list().await });
        if send(socket, &snapshot).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                // The client says nothing but its close.
                received = socket.recv() => match received {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                },
            };
            match next {
                Ok(request) => {
                    let change = json!({ "type": "request", "request": &*request });
                    if send(socket, &change).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        live = live.resubscribe();
    }
}

async fn send(socket: &mut WebSocket, message: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_string().into())).await
}
