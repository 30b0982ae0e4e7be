//! The errors of the log. Each says what was wrong and carries the offsets,
//! sizes, names or paths needed to act on it.

use std::path::PathBuf;

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

    /// The stored data is not what this version of vibesd wrote.
    #[error("the log in {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// The backend could not write (or read) its files while opening the
    /// log: a full disk, a data directory that is not writable. The stored
    /// log itself may be fine; once the cause is gone it opens again.
    #[error("cannot {action} {path}")]
    Storage {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

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
    /// Whether the failure is in the storage under the log (a full disk, an
    /// I/O error, a busy database, a lost connection) and may pass by
    /// itself: the same operation, tried again later, can succeed. Every
    /// other error says something about the request or the stored data.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Storage { .. })
    }

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
