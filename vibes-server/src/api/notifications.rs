//! The notifications of the web UI: `GET /api/notifications` answers the
//! last ones, `WS /ws/notifications` pushes them as they come.
//!
//! The socket first sends every notification kept (oldest first), marked
//! `"replayed": true`, then each new one, one JSON text message each (the
//! [`Notification`] as the JSON webhooks get). A UI shows only the new ones
//! as they come (a toast, a browser notification); one that reconnects gets
//! the kept ones again and tells them apart by `kind` and `offset`. A client that falls more than
//! [`FEED_CAPACITY`] notifications behind is sent the kept ones again.

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::consumers::notifications::{FEED_CAPACITY, Notification};
use crate::consumers::websocket::{NO_INPUT_MESSAGE_BYTES, not_a_websocket};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", get(recent))
        .route("/ws/notifications", get(connect))
}

async fn recent(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "notifications": state.services.notifications.recent() }))
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
        .websocket_client(crate::metrics::WS_NOTIFICATIONS_ROUTE);
    let mut lifecycle = state.lifecycle.clone();
    let feed = &state.services.notifications;
    tokio::select! {
        () = serve(&mut socket, feed) => {}
        () = lifecycle.stopping() => {
            let close = CloseFrame {
                code: close_code::AWAY,
                reason: "vibesd is shutting down".into(),
            };
            crate::state::goodbye(&mut socket, close).await;
        }
    }
}

/// Sends the kept notifications, then the new ones, until the client goes.
async fn serve(socket: &mut WebSocket, feed: &crate::consumers::notifications::Feed) {
    // Subscribed before reading what is kept, so nothing falls between.
    let mut live = feed.subscribe();
    loop {
        for notification in feed.recent() {
            if send(socket, &notification, true).await.is_err() {
                return;
            }
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
                Ok(notification) => {
                    if send(socket, &notification, false).await.is_err() {
                        return;
                    }
                }
                // Behind by more than the feed keeps: send it all again.
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
        live = live.resubscribe();
        tracing::debug!("a notifications client fell {FEED_CAPACITY} behind; resending");
    }
}

async fn send(
    socket: &mut WebSocket,
    notification: &Notification,
    replayed: bool,
) -> Result<(), axum::Error> {
    let mut message = serde_json::to_value(notification).unwrap_or_default();
    if replayed && let Value::Object(fields) = &mut message {
        fields.insert("replayed".into(), Value::Bool(true));
    }
    let text = message.to_string();
    socket.send(Message::Text(text.into())).await
}
