//! The errors of the log. Each says what was wrong and carries the offsets,
//! sizes, names or paths needed to act on it.

use std::path::PathBuf;

use crate::record::Recorded;
use crate::{BackendKind, Offset};

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A read, commit or seek named an offset the log does not hold.
    #[error(
        "offset {offset} is out of range: the log's high-water mark is {high_water_mark} \
         (valid offsets are below it; seeks may also name it)"
    )]
    OffsetOutOfRange {
        offset: Offset,
        high_water_mark: Offset,
    },

    /// An append held an event over the size limit; nothing was written.
    #[error(
        "event {index} of the batch is {size} bytes encoded, over the limit of {limit} bytes; \
         nothing was written"
    )]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },

    /// The record at `offset` is not a stored event (see [`crate::Record`]).
    #[error("record at offset {offset} cannot be decoded: {source}")]
    Decode {
        offset: Offset,
        #[source]
        source: vibes_core::DecodeError,
    },

    /// A group name the backends cannot store.
    #[error("invalid consumer group name {group:?}: {reason}")]
    InvalidGroupName { group: String, reason: &'static str },

    /// Another process holds the data directory's log.
    #[error(
        "the log in {path} is in use by another process; stop it or choose another data directory"
    )]
    Locked { path: PathBuf },

    /// The data directory cannot be used.
    #[error("cannot {action} {path}")]
    DataDir {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The configuration asks for another log than the data directory holds.
    #[error(
        "the data directory {data_dir} holds {recorded}, but the configuration asks for \
         {configured}: drop that setting (backend, iggy.address, --backend) to keep using this \
         log, or stop vibesd and move the log with `vibesd migrate --to {to}`"
    )]
    BackendMismatch {
        data_dir: PathBuf,
        recorded: Recorded,
        configured: Recorded,
        to: BackendKind,
    },

    /// The data directory's record of its backend is unreadable.
    #[error(
        "the backend record {path} is unusable ({reason}); it should say backend = \"embedded\" \
         or backend = \"iggy\" (with address = \"host:port\" for an external server)"
    )]
    Record { path: PathBuf, reason: String },

    /// A data directory without a record holds two logs.
    #[error(
        "the data directory {data_dir} has no record of its backend and holds both an embedded \
         log (events.sqlite) and a managed iggy-server's data (iggy/): start vibesd once with \
         --backend embedded or --backend iggy to say which is its log"
    )]
    AmbiguousDataDir { data_dir: PathBuf },

    /// The stored data is not what this version of vibesd wrote.
    #[error("the log in {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// The backend could not do the operation; nothing was acknowledged.
    #[error("{backend} log unavailable while trying to {action}")]
    Unavailable {
        backend: BackendKind,
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LogError {
    pub(crate) fn unavailable(
        backend: BackendKind,
        action: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            backend,
            action,
            source: source.into(),
        }
    }
}
