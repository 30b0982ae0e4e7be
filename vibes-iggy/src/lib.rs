//! The durable event log of vibesd.
//!
//! [`EventLog`] and [`EventConsumer`] are the contract (see `log.rs` for the
//! semantics every backend keeps); the backends are:
//!
//! - [`iggy`]: an `iggy-server`, either managed by vibesd as a subprocess
//!   ([`iggy::IggyManager`]) or external;
//! - [`embedded`]: a SQLite file in the data directory, the default where no
//!   `iggy-server` is installed;
//! - [`memory`]: process memory, for tests and throwaway runs
//!   (`--backend memory`).
//!
//! [`open`] opens the one the data directory records (`record.rs`), or for
//! a new directory picks one from a [`BackendConfig`] the way `auto`
//! describes; [`migrate::migrate`] moves a data directory's log to another
//! backend.
//! `docs/log.md` explains the semantics for operators and users.

mod error;
mod log;
mod wait;

pub mod embedded;
pub mod iggy;
pub mod memory;
pub mod migrate;
pub mod record;
mod select;

/// The bytes of a record, as [`EventLog::append_records`] takes them.
pub use bytes::Bytes;
pub use error::LogError;
pub use log::{
    BackendKind, DEFAULT_MAX_EVENT_BYTES, EventConsumer, EventLog, GroupOffset, LogOptions, Offset,
    Record, SeekTo, StartPosition,
};
pub use select::{BackendChoice, BackendConfig, OpenedLog, open};
