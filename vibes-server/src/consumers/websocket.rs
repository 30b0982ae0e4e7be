//! The `websocket` group and the firehose it feeds, `WS /ws/firehose`.
//!
//! The group starts at End and broadcasts each event it handles, as a frame
//! `{offset, event_id, timestamp, event}`, to every firehose client; it
//! commits once the batch is broadcast. Nothing else broadcasts, so a client
//! only ever sees events that are in the log.
//!
//! `WS /ws/firehose?from=beginning|end|<offset>&types=<kinds>&session=<id>`
//! sends history (read from the log, no consumer group involved), then live
//! frames, as one stream without a gap or a duplicate. The seam:
//!
//! 1. read the log from `from` to its end, page by page, and send it;
//! 2. subscribe to the broadcast, then read the log to its end once more:
//!    everything appended before the subscription is now sent, and
//!    everything after it will be broadcast;
//! 3. live: `next` is the first offset not yet considered. A frame below
//!    `next` is dropped (already sent, or re-broadcast after a restart of the
//!    group). A frame above `next` means the group skipped something (an
//!    event it dead-lettered) or broadcast it before step 2, so the offsets
//!    from `next` up to the frame are read from the log first.
//!
//! Filters (`types`, `session`) apply to history and live frames alike;
//! `next` advances over filtered-out events too. A client that falls more
//! than `limits.firehose_buffer` frames behind is closed (code 1013) with a
//! reason naming the offset to resume from.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::broadcast;
use vibes_actors::group::{GroupSpec, HandlerFactory};
use vibes_core::{Delivery, Handled, Handler, VibesEvent};
use vibes_iggy::{EventLog, Offset, SeekTo, StartPosition};

use crate::api::{frame, stored_frame};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// The group's name, as `[groups.websocket]` in the config.
pub const GROUP: &str = "websocket";

/// The most records one read of the log returns while catching up.
const PAGE: usize = 500;

/// One event as the firehose sends it: encoded once by the group, shared by
/// every client.
#[derive(Debug)]
pub struct LiveFrame {
    pub offset: Offset,
    /// The event's `"type"`, for the `types` filter.
    pub kind: String,
    /// The event's session, for the `session` filter.
    pub session_id: Option<String>,
    /// The frame's JSON.
    pub text: Utf8Bytes,
}

/// The live side of the firehose, shared by the group and the API.
#[derive(Clone, Debug, Default)]
pub struct Firehose {
    /// Sent to by the group's handler only; `None` when the group is
    /// disabled. It lives as long as the daemon's state.
    live: Option<broadcast::Sender<Arc<LiveFrame>>>,
}

/// The group's spec and the firehose it feeds; `None` if it is disabled.
pub(crate) fn spec(config: &Config) -> Option<(GroupSpec, Firehose)> {
    let group = config.group(GROUP, StartPosition::End)?;
    let (live, _) = broadcast::channel(config.limits.firehose_buffer);
    let sender = live.clone();
    let handler: HandlerFactory = Arc::new(move || {
        Box::new(Broadcaster {
            live: sender.clone(),
        })
    });
    Some((
        GroupSpec {
            config: group,
            handler,
        },
        Firehose { live: Some(live) },
    ))
}

/// The `websocket` group's handler.
struct Broadcaster {
    live: broadcast::Sender<Arc<LiveFrame>>,
}

#[async_trait]
impl Handler for Broadcaster {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        for (offset, stored) in batch {
            let frame = LiveFrame {
                offset: *offset,
                kind: stored.event.kind().to_owned(),
                session_id: stored.event.session_id().map(str::to_owned),
                text: stored_frame(*offset, stored).to_string().into(),
            };
            // An error only means nobody is watching right now.
            let _ = self.live.send(Arc::new(frame));
        }
        Handled::All
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ws/firehose", get(firehose))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirehoseQuery {
    from: Option<String>,
    types: Option<String>,
    session: Option<String>,
}

/// Which events a client asked for.
#[derive(Debug)]
struct Filter {
    types: Option<Vec<String>>,
    session: Option<String>,
}

impl Filter {
    fn parse(types: Option<String>, session: Option<String>) -> Result<Self, ApiError> {
        let types = match types {
            None => None,
            Some(list) => {
                let kinds: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|kind| !kind.is_empty())
                    .map(str::to_owned)
                    .collect();
                if kinds.is_empty() {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "types is empty; give event types separated by commas, or leave it out",
                    ));
                }
                if let Some(unknown) = kinds
                    .iter()
                    .find(|kind| !VibesEvent::KINDS.contains(&kind.as_str()))
                {
                    return Err(ApiError::bad_request(
                        "unknown_event_type",
                        format!(
                            "unknown event type {unknown:?} in types; known types: {}",
                            VibesEvent::KINDS.join(", ")
                        ),
                    ));
                }
                Some(kinds)
            }
        };
        if session.as_deref().is_some_and(str::is_empty) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "session is empty; give a session id, or leave it out",
            ));
        }
        Ok(Self { types, session })
    }

    /// Whether an event of `kind` in `session` is wanted; a record that does
    /// not decode (`kind` unknown) only when nothing is filtered.
    fn matches(&self, kind: Option<&str>, session: Option<&str>) -> bool {
        let kind_ok = self
            .types
            .as_ref()
            .is_none_or(|types| kind.is_some_and(|kind| types.iter().any(|t| t == kind)));
        let session_ok = self
            .session
            .as_deref()
            .is_none_or(|wanted| session == Some(wanted));
        kind_ok && session_ok
    }
}

/// `from`, as given.
fn parse_from(from: Option<&str>) -> Result<SeekTo, ApiError> {
    match from {
        None | Some("end") => Ok(SeekTo::End),
        Some("beginning") => Ok(SeekTo::Beginning),
        Some(offset) => offset.parse::<Offset>().map(SeekTo::Offset).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("from={offset:?} is not `beginning`, `end` or an offset"),
            )
        }),
    }
}

/// The largest message a client may send on a socket that takes no input
/// (`/ws/firehose`, `/ws/notifications`): a larger one closes it (1009)
/// instead of being buffered whole.
pub(crate) const NO_INPUT_MESSAGE_BYTES: usize = 4096;

/// The answer to a request that is not a WebSocket upgrade.
pub(crate) fn not_a_websocket(rejection: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        "not_a_websocket",
        format!(
            "{}; this route takes a WebSocket connection",
            rejection.body_text()
        ),
    )
}

async fn firehose(
    State(state): State<AppState>,
    query: Result<Query<FirehoseQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|err| ApiError::bad_request("invalid_query", err.body_text()))?;
    let filter = Filter::parse(query.types, query.session)?;
    let from = parse_from(query.from.as_deref())?;
    let Some(live) = state.services.firehose.live.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "firehose_disabled",
            "the websocket group is disabled in the config ([groups.websocket])",
        ));
    };
    let end = state.log.high_water_mark().await?;
    let next = match from {
        SeekTo::Beginning => 0,
        SeekTo::End => end,
        SeekTo::Offset(offset) if offset <= end => offset,
        SeekTo::Offset(offset) => {
            return Err(ApiError::bad_request(
                "offset_out_of_range",
                format!("from={offset} is past the end of the log (the next offset is {end})"),
            ));
        }
    };
    let upgrade = upgrade.map_err(not_a_websocket)?;
    let pump = Pump {
        log: state.log.clone(),
        filter,
        next,
        lifecycle: state.lifecycle.clone(),
        metrics: state.metrics.clone(),
    };
    Ok(crate::api::with_protocol(upgrade)
        .max_message_size(NO_INPUT_MESSAGE_BYTES)
        .on_upgrade(move |socket| pump.run(socket, live)))
}

/// Why a firehose connection ends.
#[derive(Debug)]
enum Stop {
    /// The client went away; nothing more to say.
    Gone,
    /// We close it, saying why.
    Close(u16, String),
}

/// One firehose client's stream.
#[derive(Debug)]
struct Pump {
    log: Arc<dyn EventLog>,
    /// Says when vibesd stops; held until the client is told.
    lifecycle: crate::state::Lifecycle,
    filter: Filter,
    /// The first offset not yet sent or skipped.
    next: Offset,
    /// Counts the client while it is connected, and its close if too slow.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Pump {
    async fn run(mut self, mut socket: WebSocket, live: broadcast::Sender<Arc<LiveFrame>>) {
        // Shutdown cuts short whatever the pump waits for, a client that
        // does not read included.
        let _counted = self
            .metrics
            .websocket_client(crate::metrics::WS_FIREHOSE_ROUTE);
        let mut lifecycle = self.lifecycle.clone();
        let served = tokio::select! {
            served = self.serve(&mut socket, live) => Some(served),
            () = lifecycle.stopping() => None,
        };
        let (code, reason) = match served {
            Some(Ok(()) | Err(Stop::Gone)) => return,
            Some(Err(Stop::Close(code, reason))) => (code, reason),
            None => (
                close_code::AWAY,
                format!("vibesd is shutting down; reconnect with from={}", self.next),
            ),
        };
        let close = CloseFrame {
            code,
            reason: reason.into(),
        };
        crate::state::goodbye(&mut socket, close).await;
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        live: broadcast::Sender<Arc<LiveFrame>>,
    ) -> Result<(), Stop> {
        self.catch_up(socket, None).await?;
        let mut frames = live.subscribe();
        drop(live);
        self.catch_up(socket, None).await?;
        loop {
            tokio::select! {
                received = frames.recv() => match received {
                    Ok(frame) => self.live(socket, &frame).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.metrics.firehose_client_too_slow();
                        return Err(Stop::Close(close_code::AGAIN, too_slow(self.next)));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(Stop::Close(
                            close_code::AWAY,
                            "vibesd is shutting down".into(),
                        ));
                    }
                },
                message = socket.recv() => match message {
                    // The firehose takes no input; pings are answered below us.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(Stop::Gone),
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Sends a live frame, after whatever the log holds before it.
    async fn live(&mut self, socket: &mut WebSocket, frame: &LiveFrame) -> Result<(), Stop> {
        if frame.offset < self.next {
            return Ok(());
        }
        if frame.offset > self.next {
            self.catch_up(socket, Some(frame.offset)).await?;
        }
        if self
            .filter
            .matches(Some(&frame.kind), frame.session_id.as_deref())
        {
            send(socket, Message::Text(frame.text.clone())).await?;
        }
        self.next = frame.offset + 1;
        Ok(())
    }

    /// Sends the log from `next` up to `until` (exclusive), or to its end.
    async fn catch_up(
        &mut self,
        socket: &mut WebSocket,
        until: Option<Offset>,
    ) -> Result<(), Stop> {
        loop {
            let max = match until {
                Some(until) if self.next >= until => return Ok(()),
                Some(until) => PAGE.min(usize::try_from(until - self.next).unwrap_or(PAGE)),
                None => PAGE,
            };
            let records = self.log.read(self.next, max).await.map_err(|err| {
                tracing::error!(
                    offset = self.next,
                    "firehose: cannot read the log: {}",
                    vibes_core::ErrorChain(&err)
                );
                Stop::Close(
                    close_code::ERROR,
                    format!("cannot read the log; reconnect with from={}", self.next),
                )
            })?;
            let Some(last) = records.last().map(|record| record.offset) else {
                return Ok(());
            };
            for record in &records {
                let (wanted, json) = match record.event() {
                    Ok(stored) => (
                        self.filter
                            .matches(Some(stored.event.kind()), stored.event.session_id()),
                        stored_frame(record.offset, &stored),
                    ),
                    Err(_) => (self.filter.matches(None, None), frame(record)),
                };
                if wanted {
                    send(socket, Message::Text(json.to_string().into())).await?;
                }
            }
            self.next = last + 1;
        }
    }
}

/// The close reason of a client that fell behind with `next` the first
/// offset it has not had (at most 123 bytes, as a close frame allows).
fn too_slow(next: Offset) -> String {
    match next.checked_sub(1) {
        Some(last) => format!(
            "too slow: fell behind the live stream after offset {last}; reconnect with from={next}"
        ),
        None => "too slow: fell behind the live stream; reconnect with from=0".into(),
    }
}

async fn send(socket: &mut WebSocket, message: Message) -> Result<(), Stop> {
    socket.send(message).await.map_err(|_| Stop::Gone)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn filters_take_kinds_and_sessions() {
        let filter = Filter::parse(Some("user_input, claude".into()), Some("s1".into())).unwrap();
        assert!(filter.matches(Some("claude"), Some("s1")));
        assert!(!filter.matches(Some("claude"), Some("s2")));
        assert!(!filter.matches(Some("hook"), Some("s1")));
        assert!(!filter.matches(None, None));
        assert!(Filter::parse(None, None).unwrap().matches(None, None));
        let err = Filter::parse(Some("user_inptu".into()), None).unwrap_err();
        assert_eq!(err.error, "unknown_event_type");
        assert!(Filter::parse(Some(",".into()), None).is_err());
    }

    #[test]
    fn the_slow_client_reason_fits_a_close_frame() {
        assert!(too_slow(u64::MAX).len() <= 123);
        assert!(too_slow(13).contains("after offset 12; reconnect with from=13"));
        assert!(too_slow(0).ends_with("from=0"));
    }
}
