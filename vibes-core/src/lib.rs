//! Domain types of vibesd, shared by the log, the actors, the server and
//! plugins.
//!
//! - [`VibesEvent`]: everything that happens around an AI coding session,
//!   as it travels over the API and through the log.
//! - [`StoredEvent`]: the envelope the log stores (id, time, event).
//! - [`Handler`]: what a consumer group (built in or a plugin) runs for
//!   each batch, and [`Handled`], how far it got.
//! - [`json_depth`], [`MAX_EVENT_DEPTH`]: how deeply an event may nest so
//!   that what the log acknowledges always reads back.
//! - [`default_data_dir`]: where data lives unless configured otherwise.
//!
//! This crate has no heavy dependencies on purpose: a plugin that consumes
//! events depends on it alone.

mod chain;
mod depth;
mod event;
mod handler;
mod paths;
mod stored;

pub use chain::{ErrorChain, error_chain};
pub use depth::{MAX_EVENT_DEPTH, MAX_STORED_DEPTH, json_depth};
pub use event::{ClaudeEvent, DecidedBy, HookPayload, UnknownEvent, Usage, VibesEvent};
pub use handler::{Delivery, Handled, Handler};
pub use paths::default_data_dir;
pub use stored::{DecodeError, StoredEvent};
