//! The built-in consumer groups, and what they share with the API.
//!
//! | group | start | effect |
//! |---|---|---|
//! | `websocket` | End | broadcasts every event to `/ws/firehose` clients |
//! | `session-collector` | Beginning | one transcript file per session |
//! | `chat-history` | Beginning | SQLite database of sessions and messages |
//! | `notifications` | End | configured webhooks |

pub mod notifications;

use vibes_actors::group::GroupSpec;

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
pub struct Services {}

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
    _data_dir: &std::path::Path,
) -> Result<(Vec<GroupSpec>, Services), ConsumerError> {
    let mut specs = Vec::new();
    // Only with a webhook to post to: an idle group would still poll.
    if let Some(spec) = notifications::spec(config).map_err(|message| ConsumerError {
        group: notifications::GROUP,
        message,
    })? {
        specs.push(spec);
    }
    let services = Services::default();
    Ok((specs, services))
}

/// The routes of the built-in consumers (firehose, sessions, search).
pub fn router() -> axum::Router<crate::state::AppState> {
    axum::Router::new()
}
