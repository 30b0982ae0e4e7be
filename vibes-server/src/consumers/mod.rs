//! The built-in consumer groups, and what they share with the API.
//!
//! | group | start | effect |
//! |---|---|---|
//! | `websocket` | End | broadcasts every event to `/ws/firehose` clients |
//! | `session-collector` | Beginning | one transcript file per session (`sessions.rs`) |
//! | `chat-history` | Beginning | SQLite database of sessions and messages (`chat_history.rs`) |
//! | `notifications` | End | the web UI's notifications, configured webhooks |
//!
//! `docs/consumers.md` describes each group, its commit rule and its routes.

pub mod chat_history;
mod routes;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

pub mod websocket;

pub mod notifications;

use vibes_actors::group::GroupSpec;
use vibes_iggy::StartPosition;

use crate::config::Config;

/// The names of the built-in groups, as `[groups.<name>]` in the config.
pub const BUILT_IN: &[&str] = &[
    "websocket",
    "session-collector",
    "chat-history",
    "notifications",
];

/// What the built-in consumers share with the API handlers.
#[derive(Clone, Debug, Default)]
pub struct Services {
    /// Fed by the `websocket` group, read by `/ws/firehose` clients.
    pub firehose: websocket::Firehose,
    /// The chat-history database; `None` when the group is disabled.
    pub chat_history: Option<Arc<chat_history::ChatHistory>>,
    /// The session-collector's transcripts and their index; `None` when
    /// the group is disabled.
    pub sessions: Option<Arc<sessions::Collector>>,
    /// The last notifications, fed by the `notifications` group and the
    /// plugins, pushed to web UIs.
    pub notifications: notifications::Feed,
}

/// Why a built-in consumer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the {group} consumer: {message}")]
pub struct ConsumerError {
    pub group: &'static str,
    pub message: String,
}

/// The built-in groups this config enables, and their shared services.
pub fn build(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<(Vec<GroupSpec>, Services), ConsumerError> {
    let mut specs = Vec::new();
    let mut services = Services::default();
    if let Some((spec, firehose)) = websocket::spec(config) {
        specs.push(spec);
        services.firehose = firehose;
    }

    if let Some(group) = config.group("chat-history", StartPosition::Beginning) {
        let db =
            Arc::new(
                chat_history::ChatHistory::open(data_dir).map_err(|err| ConsumerError {
                    group: "chat-history",
                    message: vibes_core::error_chain(&err),
                })?,
            );
        let for_handler = db.clone();
        specs.push(GroupSpec {
            config: group,
            handler: Arc::new(move || {
                Box::new(chat_history::ChatHistoryHandler::new(for_handler.clone()))
            }),
        });
        services.chat_history = Some(db);
    }

    if let Some(group) = config.group("session-collector", StartPosition::Beginning) {
        let idle = config
            .groups
            .get("session-collector")
            .and_then(|section| section.idle_timeout_secs)
            .map_or(sessions::DEFAULT_IDLE_TIMEOUT, Duration::from_secs);
        let collector =
            Arc::new(
                sessions::Collector::open(data_dir, idle).map_err(|err| ConsumerError {
                    group: "session-collector",
                    message: vibes_core::error_chain(&err),
                })?,
            );
        let for_handler = collector.clone();
        specs.push(GroupSpec {
            config: group,
            handler: Arc::new(move || {
                Box::new(sessions::SessionCollector::new(for_handler.clone()))
            }),
        });
        services.sessions = Some(collector);
    }

    if let Some(spec) =
        notifications::spec(config, &services.notifications).map_err(|message| ConsumerError {
            group: notifications::GROUP,
            message,
        })?
    {
        specs.push(spec);
    }

    Ok((specs, services))
}

/// The routes of the built-in consumers (firehose, sessions, search).
pub fn router() -> axum::Router<crate::state::AppState> {
    routes::router().merge(websocket::router())
}
