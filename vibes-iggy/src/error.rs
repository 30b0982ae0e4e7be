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

    /// An append held an event that nests too deeply to be read back
    /// (see [`vibes_core::MAX_EVENT_DEPTH`]); nothing was written.
    #[error(
        "event {index} of the batch nests {depth} levels of JSON objects and arrays, over the \
         limit of {limit}; nothing was written"
    )]
    EventTooDeep {
        index: usize,
        depth: usize,
        limit: usize,
    },

    /// The record at `offset` is not a stored event (see [`crate::Record`]).
    #[error("record at offset {offset} cannot be decoded")]
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
    /// The index in its batch of an event the log refused for what it is
    /// (too large, too deep), as opposed to a failure of the log.
    pub fn refused_event(&self) -> Option<usize> {
        match self {
            Self::EventTooLarge { index, .. } | Self::EventTooDeep { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The same refusal of an event, naming it by `index` (its place in a
    /// producer's own batch rather than in a group commit).
    pub fn at_index(self, index: usize) -> Self {
        match self {
            Self::EventTooLarge { size, limit, .. } => Self::EventTooLarge { index, size, limit },
            Self::EventTooDeep { depth, limit, .. } => Self::EventTooDeep {
                index,
                depth,
                limit,
            },
            other => other,
        }
    }

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
