//! groove: the assessment plugin of vibesd.
//!
//! One consumer group, `assessment`, reads the whole log from the beginning
//! and derives, per session: signals (negative and positive phrases,
//! finished assistant messages, apologies, tool failures, corrections,
//! retries, test and build outcomes), frustration and success scores, a
//! circuit breaker (closed, open, half-open) moved by a decaying failure
//! score, and checkpoints summarising each segment of the session. All of
//! it lives in `<data_dir>/groove.sqlite` with the applied offset, as a pure
//! function of the log: delete the file and it is rebuilt.
//!
//! - [`Groove`]: the [`vibes_plugin::Plugin`] vibesd links;
//!   [`RunningGroove`]: what it starts (group, routes, hook answers).
//! - [`GrooveConfig`]: `[plugins.groove]`, checked with [`ConfigError`]s
//!   that name `plugins.groove.<key>`.
//! - [`GrooveStore`] and [`AssessmentHandler`]: the store and the group's
//!   handler over it; [`routes`]: `GET /sessions`, `/sessions/{id}`,
//!   `/totals`.
//! - [`SignalKind`], [`BreakerState`], [`CheckpointTrigger`] and the
//!   records ([`Signal`], [`Transition`], [`Checkpoint`], [`Intervention`])
//!   as they are stored and served.
//!
//! `docs/groove.md` explains what is detected and why, and every setting.

mod assess;
mod canonical;
mod cli;
mod config;
mod detect;
mod error;
mod handler;
mod note;
mod plugin;
mod record;
mod routes;
mod session;
mod store;
mod toolchain;

pub use config::{
    ConfigError, DEFAULT_NEGATIVE_PATTERNS, DEFAULT_POSITIVE_PATTERNS, GrooveConfig, KEYS,
};
pub use error::GrooveError;
pub use handler::AssessmentHandler;
pub use plugin::{GROUP, Groove, NAME, RunningGroove};
pub use record::{
    BreakerState, Checkpoint, CheckpointTrigger, Intervention, Record, Signal, SignalKind, Snippet,
    Transition,
};
pub use routes::{DEFAULT_LIMIT, MAX_LIMIT, routes};
pub use store::{FILE_NAME, GrooveStore, TimelinePage};
