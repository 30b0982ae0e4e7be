//! `WS /ws`: the client protocol of live clients (a web UI, scripts).
//!
//! A connection is a client: connecting appends `client_connected` with a
//! fresh `client_id`, and the first message vibesd sends is
//!
//! ```json
//! {"type":"connected","client_id":"0199…","offset":41}
//! ```
//!
//! Closing appends `client_disconnected`. Every text message the client
//! sends is one JSON request, appended through the LogWriter, and gets one
//! reply, in order, once the events are durable:
//!
//! | request | appends |
//! |---|---|
//! | `{"type":"create_session","session_id"?:..,"name"?:..}` | `session_created` (a new id when none is given) |
//! | `{"type":"input","session_id":..,"content":..}` | `user_input`, source `web` |
//! | `{"type":"permission_response","session_id":..,"request_id":..,"approved":bool,"message"?:..}` | `permission_response` (a remote decision on a `PermissionRequest` hook goes through `POST /api/permissions/{offset}/decision` instead) |
//! | `{"type":"remove_session","session_id":..,"reason"?:..}` | `session_removed` (reason `user` by default) |
//!
//! Replies: `{"ok":true,"offsets":[42]}` (`create_session` adds
//! `"session_id"`), or `{"error":"<code>","detail":"<sentence>"}` with the
//! codes of the HTTP API (`malformed_json`, `unknown_message_type`,
//! `invalid_message`, `busy`, ...). A request may carry an `"id"` (any
//! JSON), which its reply repeats. A bad request appends nothing and leaves
//! the connection open. The events themselves are seen on `/ws/firehose`.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use vibes_core::{StoredEvent, VibesEvent};

use crate::consumers::websocket::not_a_websocket;
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ws", get(connect))
}

/// The `"type"`s of requests.
const REQUESTS: &[&str] = &[
    "create_session",
    "input",
    "permission_response",
    "remove_session",
];

/// One request of a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    CreateSession {
        #[serde(default)]
        session_id: Option<String>,
        #[serde(default)]
        name: Option<String>,
    },
    Input {
        session_id: String,
        content: String,
    },
    PermissionResponse {
        session_id: String,
        request_id: String,
        approved: bool,
        /// With a denial: what Claude is told.
        #[serde(default)]
        message: Option<String>,
    },
    RemoveSession {
        session_id: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

async fn connect(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(not_a_websocket)?;
    let limit = state.config.limits.max_body_bytes;
    Ok(super::auth::with_protocol(upgrade)
        .max_message_size(limit)
        .on_upgrade(move |socket| client(state, socket)))
}

/// One client, from connect to close.
async fn client(state: AppState, mut socket: WebSocket) {
    let _counted = state
        .metrics
        .websocket_client(crate::metrics::WS_CLIENT_ROUTE);
    let client_id = uuid::Uuid::now_v7().to_string();
    let connected = VibesEvent::ClientConnected {
        client_id: client_id.clone(),
    };
    let hello = match state.writer.append(StoredEvent::new(connected)).await {
        Ok(offset) => json!({"type": "connected", "client_id": client_id, "offset": offset}),
        Err(err) => {
            // Nothing was appended, so there is no client to disconnect.
            let reply = error_reply(None, ApiError::from(err));
            let _ = socket.send(Message::Text(reply.to_string().into())).await;
            return;
        }
    };
    let mut open = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    let mut lifecycle = state.lifecycle.clone();
    // Every wait on the client is cut short by shutdown: one that does not
    // read its replies holds nothing up.
    let mut stopping = false;
    while open {
        let received = tokio::select! {
            received = socket.recv() => received,
            () = lifecycle.stopping() => {
                stopping = true;
                break;
            }
        };
        let reply = match received {
            Some(Ok(Message::Text(text))) => answer(&state, text.as_str()).await,
            Some(Ok(Message::Binary(_))) => error_reply(
                None,
                ApiError::bad_request(
                    "binary_message",
                    "requests are JSON text messages, not binary ones",
                ),
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
        };
        open = tokio::select! {
            sent = socket.send(Message::Text(reply.to_string().into())) => sent.is_ok(),
            () = lifecycle.stopping() => {
                stopping = true;
                break;
            }
        };
    }
    if stopping {
        let close = CloseFrame {
            code: close_code::AWAY,
            reason: "vibesd is shutting down".into(),
        };
        crate::state::goodbye(&mut socket, close).await;
    }
    let gone = VibesEvent::ClientDisconnected {
        client_id: client_id.clone(),
    };
    if let Err(err) = state.writer.append(StoredEvent::new(gone)).await {
        tracing::warn!(%client_id, "cannot record that the client disconnected: {}", vibes_core::ErrorChain(&err));
    }
}

/// The reply to one text message.
async fn answer(state: &AppState, text: &str) -> Value {
    let mut value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            return error_reply(
                None,
                ApiError::bad_request("malformed_json", format!("the message is not JSON: {err}")),
            );
        }
    };
    let id = value.as_object_mut().and_then(|object| object.remove("id"));
    let (event, session_id) = match request(value) {
        Ok(found) => found,
        Err(err) => return error_reply(id, err),
    };
    match state.writer.append(StoredEvent::new(event)).await {
        Ok(offset) => {
            let mut reply = json!({"ok": true, "offsets": [offset]});
            if let Some(session_id) = session_id {
                reply["session_id"] = json!(session_id);
            }
            with_id(reply, id)
        }
        Err(err) => error_reply(id, ApiError::from(err)),
    }
}

/// The event a request stands for, and the id of a session it created.
fn request(value: Value) -> Result<(VibesEvent, Option<String>), ApiError> {
    let kind = match value.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_message",
                format!(
                    "a request is a JSON object with a string \"type\": one of {}",
                    REQUESTS.join(", ")
                ),
            ));
        }
    };
    if !REQUESTS.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(
            "unknown_message_type",
            format!(
                "unknown request type {kind:?}; known types: {}",
                REQUESTS.join(", ")
            ),
        ));
    }
    let request: Request = serde_json::from_value(value).map_err(|err| {
        ApiError::bad_request(
            "invalid_message",
            format!("invalid `{kind}` request: {err}"),
        )
    })?;
    let session = |session_id: String| {
        if session_id.is_empty() {
            Err(ApiError::bad_request(
                "invalid_message",
                format!("invalid `{kind}` request: session_id is empty"),
            ))
        } else {
            Ok(session_id)
        }
    };
    Ok(match request {
        Request::CreateSession { session_id, name } => {
            let session_id = match session_id {
                Some(id) => session(id)?,
                None => uuid::Uuid::now_v7().to_string(),
            };
            let event = VibesEvent::SessionCreated {
                session_id: session_id.clone(),
                name,
            };
            (event, Some(session_id))
        }
        Request::Input {
            session_id,
            content,
        } => (
            VibesEvent::UserInput {
                session_id: session(session_id)?,
                content,
                source: "web".into(),
            },
            None,
        ),
        Request::PermissionResponse {
            session_id,
            request_id,
            approved,
            message,
        } => (
            VibesEvent::PermissionResponse {
                session_id: session(session_id)?,
                request_id,
                approved,
                request_offset: None,
                message,
                decided_by: None,
            },
            None,
        ),
        Request::RemoveSession { session_id, reason } => (
            VibesEvent::SessionRemoved {
                session_id: session(session_id)?,
                reason: reason.unwrap_or_else(|| "user".into()),
            },
            None,
        ),
    })
}

/// An error as a reply; a 5xx was logged by [`ApiError::internal`].
fn error_reply(id: Option<Value>, err: ApiError) -> Value {
    with_id(json!({"error": err.error, "detail": err.detail}), id)
}

fn with_id(mut reply: Value, id: Option<Value>) -> Value {
    if let Some(id) = id {
        reply["id"] = id;
    }
    reply
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_become_their_events_and_bad_ones_say_why() {
        let (event, created) =
            request(json!({"type":"input","session_id":"s1","content":"hi"})).unwrap();
        assert_eq!(event.kind(), "user_input");
        assert!(created.is_none());
        let (event, created) = request(json!({"type":"create_session"})).unwrap();
        assert_eq!(event.session_id(), created.as_deref());

        let code = |value| request(value).unwrap_err().error;
        assert_eq!(code(json!({"type":"teleport"})), "unknown_message_type");
        assert_eq!(code(json!([1])), "invalid_message");
        assert_eq!(
            code(json!({"type":"input","session_id":"s"})),
            "invalid_message"
        );
        assert_eq!(
            code(json!({"type":"input","session_id":"","content":"c"})),
            "invalid_message"
        );
        assert_eq!(
            code(json!({"type":"input","session_id":"s","content":"c","extra":1})),
            "invalid_message"
        );
    }

    #[test]
    fn a_socket_cannot_forge_who_decided_a_permission() {
        let (event, _) = request(
            json!({"type":"permission_response","session_id":"s","request_id":"7","approved":true}),
        )
        .unwrap();
        assert!(matches!(
            event,
            VibesEvent::PermissionResponse {
                request_offset: None,
                decided_by: None,
                ..
            }
        ));
        let code = |value| request(value).unwrap_err().error;
        for (forged, error) in [
            (
                json!({"type":"permission_response","session_id":"s","request_id":"7","approved":true,"request_offset":7}),
                "invalid_message",
            ),
            (
                json!({"type":"permission_response","session_id":"s","request_id":"7","approved":true,"decided_by":{"route":"x"}}),
                "invalid_message",
            ),
            (
                json!({"type":"permission_outcome","session_id":"s","request_offset":7,"outcome":"decided"}),
                "unknown_message_type",
            ),
        ] {
            assert_eq!(code(forged.clone()), error, "{forged}");
        }
    }
}
