//! The contract every backend keeps: [`EventLog`] (append, read, high-water
//! mark, open a consumer) and [`EventConsumer`] (poll, commit, seek).
//!
//! The semantics are written here once; `docs/log.md` explains them for
//! operators and `tests/conformance.rs` checks them against every backend.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use vibes_core::StoredEvent;

use crate::LogError;

/// A position in the log. Offsets are dense, 0-based and totally ordered.
pub type Offset = u64;

/// The largest encoded event the log takes unless configured otherwise.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Settings every backend shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// The largest encoded [`StoredEvent`] an append accepts, in bytes.
    pub max_event_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Which backend a log runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// An `iggy-server`, managed by vibesd or external.
    Iggy,
    /// The SQLite file in the data directory.
    Embedded,
    /// Process memory: lost on exit.
    Memory,
}

impl BackendKind {
    /// The lowercase name used in config, logs and `/api/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iggy => "iggy",
            Self::Embedded => "embedded",
            Self::Memory => "memory",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a group starts the first time it is opened. Ignored once the group
/// has committed (or been seeked): it then resumes at `committed + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// Replay the whole log.
    Beginning,
    /// Only events appended after the group was first opened. The position
    /// is recorded when the group is created, so a restart before its first
    /// commit does not skip what arrived in between.
    End,
}

/// Where [`EventConsumer::seek`] moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// Offset 0: every event is read again.
    Beginning,
    /// The high-water mark: every event so far counts as done.
    End,
    /// The next event read is this offset; `0..=high_water_mark` are valid.
    Offset(Offset),
}

/// One record read from the log: its offset and the bytes stored there.
///
/// Records are decoded on demand, not by `poll`: a consumer that forwards
/// the stored JSON (a firehose, a history page) never pays for decoding, and
/// one that decodes can do it wherever it likes. A record that does not
/// decode never hides the records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    /// The stored form: the JSON of a [`StoredEvent`], exactly as written.
    pub payload: Bytes,
}

impl Record {
    /// The event, or a [`LogError::Decode`] naming this record's offset.
    pub fn event(&self) -> Result<StoredEvent, LogError> {
        StoredEvent::decode(&self.payload).map_err(|source| LogError::Decode {
            offset: self.offset,
            source,
        })
    }
}

/// A consumer group and its committed offset, as [`EventLog::groups`] lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub group: String,
    /// The last committed offset; `None` if nothing is done yet.
    pub committed: Option<Offset>,
}

/// The durable, ordered event log.
///
/// Every method may be called concurrently from many tasks.
#[async_trait]
pub trait EventLog: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> BackendKind;

    /// Appends one event and returns its offset once it is durable.
    async fn append(&self, event: StoredEvent) -> Result<Offset, LogError> {
        let range = self.append_batch(vec![event]).await?;
        Ok(range.start)
    }

    /// Appends every event or none, at contiguous offsets, and returns them
    /// once the whole batch is durable. An empty batch writes nothing and
    /// returns an empty range at the high-water mark.
    ///
    /// An event larger than [`LogOptions::max_event_bytes`] fails the whole
    /// batch with [`LogError::EventTooLarge`], one nested deeper than
    /// [`vibes_core::MAX_EVENT_DEPTH`] with [`LogError::EventTooDeep`], and
    /// nothing is written.
    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError>;

    /// Appends records exactly as given, at contiguous offsets, all or none:
    /// for copying a log to another backend (`vibesd migrate`), so the bytes
    /// are neither decoded nor held to the size limit, and a record that does
    /// not decode is copied as it is.
    async fn append_records(&self, payloads: Vec<Bytes>) -> Result<Range<Offset>, LogError>;

    /// Every consumer group the log holds and its committed offset, by name.
    async fn groups(&self) -> Result<Vec<GroupOffset>, LogError>;

    /// The next offset to be assigned (the number of events in the log).
    async fn high_water_mark(&self) -> Result<Offset, LogError>;

    /// Reads up to `max` records from `from` on, without any group: for
    /// history pages. `from == high_water_mark` gives an empty page; beyond
    /// it is [`LogError::OffsetOutOfRange`].
    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError>;

    /// Opens a consumer for `group`. A group that has never committed starts
    /// at `start`; an existing group resumes at `committed + 1`.
    ///
    /// One consumer per group at a time: two consumers of the same group in
    /// one or several processes would overwrite each other's offset.
    async fn consumer(
        &self,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError>;
}

/// One consumer group's reader: its own position and committed offset.
#[async_trait]
pub trait EventConsumer: Send + fmt::Debug {
    /// The group's name.
    fn group(&self) -> &str;

    /// The next offset [`poll`](Self::poll) reads.
    fn position(&self) -> Offset;

    /// Returns up to `max` records from [`position`](Self::position) on and
    /// advances past them. Returns as soon as at least one record is
    /// available; returns an empty batch only once `timeout` has passed.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError>;

    /// Records that every event up to and including `offset` is done: after
    /// a restart the group resumes at `offset + 1`. Committing does not move
    /// the read position. `offset` must be below the high-water mark.
    async fn commit(&mut self, offset: Offset) -> Result<(), LogError>;

    /// Moves the group and records the move as its committed offset, so it
    /// survives a restart: `Offset(n)` means `0..n` are done and `n` is read
    /// next. Returns the new position. A seek past the high-water mark is
    /// [`LogError::OffsetOutOfRange`] and moves nothing.
    async fn seek(&mut self, to: SeekTo) -> Result<Offset, LogError>;

    /// The last committed offset, or `None` if nothing is done yet.
    async fn committed_offset(&self) -> Result<Option<Offset>, LogError>;
}

/// The committed offset that a position implies: everything before it done.
pub(crate) fn committed_before(position: Offset) -> Option<Offset> {
    position.checked_sub(1)
}

/// Below this many events a batch is encoded on the calling thread: a
/// thread costs more than it saves.
const PARALLEL_ENCODE_MIN: usize = 256;

/// Encodes `events` in order, on every core the machine has when the batch
/// is large enough to pay for it: encoding is a third of the cost of a
/// durable append of small events, and needs no lock.
pub(crate) fn encode_batch(events: &[StoredEvent]) -> Vec<Vec<u8>> {
    // Asked once: the answer reads cgroup files, which costs more than
    // encoding a small batch.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    let threads = cores.min(events.len() / PARALLEL_ENCODE_MIN).max(1);
    if threads == 1 {
        return events.iter().map(StoredEvent::encode).collect();
    }
    let mut chunks = events.chunks(events.len().div_ceil(threads));
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks
            .map(|chunk| {
                scope.spawn(move || chunk.iter().map(StoredEvent::encode).collect::<Vec<_>>())
            })
            .collect();
        let mut encoded: Vec<Vec<u8>> = first.iter().map(StoredEvent::encode).collect();
        for other in others {
            // Encoding does not panic (see `StoredEvent::encode`); if it
            // ever did, the panic belongs to the caller.
            match other.join() {
                Ok(part) => encoded.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        encoded
    })
}

/// Refuses the event at `index` of a batch if its encoding is over `limit`
/// bytes, or nests deeper than a reader can follow
/// ([`vibes_core::MAX_STORED_DEPTH`]): what the log acknowledges must decode
/// on every read path.
pub(crate) fn check_encoded(index: usize, encoded: &[u8], limit: usize) -> Result<(), LogError> {
    if encoded.len() > limit {
        return Err(LogError::EventTooLarge {
            index,
            size: encoded.len(),
            limit,
        });
    }
    let depth = vibes_core::json_depth(encoded);
    if depth > vibes_core::MAX_STORED_DEPTH {
        // Counted as the client sees it: the event, without the envelope.
        return Err(LogError::EventTooDeep {
            index,
            depth: depth - 1,
            limit: vibes_core::MAX_EVENT_DEPTH,
        });
    }
    Ok(())
}

/// Refuses a batch if any of its encoded events fails [`check_encoded`].
pub(crate) fn check_batch(encoded: &[Vec<u8>], limit: usize) -> Result<(), LogError> {
    encoded
        .iter()
        .enumerate()
        .try_for_each(|(index, bytes)| check_encoded(index, bytes, limit))
}

/// Checks that `group` is a name every backend can store.
pub(crate) fn check_group_name(group: &str) -> Result<(), LogError> {
    let reason = if group.is_empty() {
        Some("it is empty")
    } else if group.len() > 64 {
        Some("it is longer than 64 bytes")
    } else if !group
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LogError::InvalidGroupName {
            group: group.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Resolves a seek target against the high-water mark.
pub(crate) fn seek_target(to: SeekTo, high_water_mark: Offset) -> Result<Offset, LogError> {
    match to {
        SeekTo::Beginning => Ok(0),
        SeekTo::End => Ok(high_water_mark),
        SeekTo::Offset(offset) if offset <= high_water_mark => Ok(offset),
        SeekTo::Offset(offset) => Err(LogError::OffsetOutOfRange {
            offset,
            high_water_mark,
        }),
    }
}

/// Checks that a commit names an offset the log holds.
pub(crate) fn check_commit(offset: Offset, high_water_mark: Offset) -> Result<(), LogError> {
    if offset < high_water_mark {
        Ok(())
    } else {
        Err(LogError::OffsetOutOfRange {
            offset,
            high_water_mark,
        })
    }
}

/// Checks that a read starts at an offset the log holds or at its end.
pub(crate) fn check_read(from: Offset, high_water_mark: Offset) -> Result<(), LogError> {
    if from <= high_water_mark {
        Ok(())
    } else {
        Err(LogError::OffsetOutOfRange {
            offset: from,
            high_water_mark,
        })
    }
}
