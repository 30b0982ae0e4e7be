//! The embedded backend: one SQLite file, `events.sqlite`, in the data
//! directory, for machines without `iggy-server`.
//!
//! - `events(log_offset INTEGER PRIMARY KEY, payload BLOB)`: the encoded
//!   [`StoredEvent`]s keyed by offset; `group_offsets(group_name, committed)`:
//!   every registered group and its committed offset (NULL: nothing done).
//! - WAL with `synchronous=FULL`: a transaction is on disk when its commit
//!   returns, so an append is acknowledged only after its commit.
//! - Every write (appends, commits, seeks, new groups) goes through one
//!   writer connection, one transaction each; reads use a small pool of
//!   reader connections, which WAL lets run beside the writer.
//! - The high-water mark is kept in memory (the file is locked to this
//!   process) and published to waiting consumers after each commit, so a
//!   poll wakes on appends instead of re-querying on a timer.
//! - SQLite calls block, so they run on tokio's blocking threads.

use std::fs::{self, File, TryLockError};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use vibes_core::StoredEvent;

use crate::log::{
    check_batch, check_commit, check_group_name, check_read, committed_before, encode_batch,
    seek_target,
};
use crate::wait::HighWaterMark;
use crate::{
    BackendKind, EventConsumer, EventLog, GroupOffset, LogError, LogOptions, Offset, Record,
    SeekTo, StartPosition,
};

/// The file name of the log in the data directory.
pub const FILE_NAME: &str = "events.sqlite";

/// The schema this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        log_offset INTEGER PRIMARY KEY,
        payload BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS group_offsets (
        group_name TEXT PRIMARY KEY,
        committed INTEGER,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
";

/// Reader connections kept open between reads; more are opened on demand.
const IDLE_READERS: usize = 4;

/// A log in a SQLite file. Cheap to clone; clones share the file.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    options: LogOptions,
    /// The one connection that writes; held for the duration of a write.
    writer: Mutex<Connection>,
    /// Idle reader connections.
    readers: Mutex<Vec<Connection>>,
    /// The next offset to assign: advanced under the writer lock after a
    /// commit, read by consumers to wait for appends.
    high_water_mark: HighWaterMark,
    /// An exclusive lock on `events.sqlite.lock`, held while the log is open
    /// so that a second process cannot write the same file.
    _lock: File,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `data_dir`.
    ///
    /// A file or directory that cannot be created or written (a full disk,
    /// a read-only data directory) is [`LogError::Storage`], naming what
    /// failed; only a file that is not this log is [`LogError::Corrupt`].
    pub fn open(data_dir: &Path, options: LogOptions) -> Result<Self, LogError> {
        let path = data_dir.join(FILE_NAME);
        let io = |action, path: &Path, err: std::io::Error| LogError::Storage {
            action,
            path: path.to_owned(),
            source: err.into(),
        };
        fs::create_dir_all(data_dir)
            .map_err(|err| io("create the data directory", data_dir, err))?;
        let lock_path = data_dir.join(format!("{FILE_NAME}.lock"));
        let lock =
            File::create(&lock_path).map_err(|err| io("create the lock file", &lock_path, err))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LogError::Locked { path }),
            Err(TryLockError::Error(err)) => return Err(io("lock", &lock_path, err)),
        }

        let writer = open_connection(&path, true)?;
        let high_water_mark: Offset = writer
            .query_row(
                "SELECT COALESCE(MAX(log_offset) + 1, 0) FROM events",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|next| next as Offset)
            .map_err(|err| opening(&path, "read the event log", err))?;
        tracing::info!(path = %path.display(), high_water_mark, "embedded log open");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                options,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                high_water_mark: HighWaterMark::new(high_water_mark),
                _lock: lock,
            }),
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// Opens a connection with the log's pragmas; the writer also creates and
/// checks the schema.
fn open_connection(path: &Path, writer: bool) -> Result<Connection, LogError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // What a failure stops: a new log is created (its first write is the
    // WAL header and the schema), an old one opened and brought up to date.
    let (open, setup_schema) = if !writer {
        (
            "open a reader of the event log",
            "open a reader of the event log",
        )
    } else if path.exists() {
        ("open the event log", "migrate the event log")
    } else {
        ("create the event log", "create the event log")
    };
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|err| opening(path, open, err))?;
    let setup = || -> rusqlite::Result<()> {
        // Another connection may hold the write lock for a moment (a
        // checkpoint); wait for it rather than fail.
        conn.busy_timeout(Duration::from_secs(10))?;
        if writer {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode is {mode}, not wal"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(())
    };
    setup().map_err(|err| opening(path, setup_schema, err))?;
    if writer {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|err| opening(path, open, err))?;
        if version > SCHEMA_VERSION {
            return Err(LogError::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "it was written by a newer vibesd (schema {version}; this build knows \
                     {SCHEMA_VERSION}): upgrade vibesd"
                ),
            });
        }
        conn.execute_batch(SCHEMA)
            .and_then(|()| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
            .map_err(|err| opening(path, setup_schema, err))?;
    }
    Ok(conn)
}

/// A failure while opening: [`LogError::Corrupt`] only when SQLite says the
/// file is not a sound database; anything else (a full disk, no
/// permission, an I/O error) is a storage failure that names the action.
fn opening(path: &Path, action: &'static str, err: rusqlite::Error) -> LogError {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => LogError::Corrupt {
            path: path.to_owned(),
            reason: err.to_string(),
        },
        // SQLite's own sentence ("database or disk is full"), once: the
        // error's source only repeats it with a code.
        _ => LogError::Storage {
            action,
            path: path.to_owned(),
            source: err.to_string().into(),
        },
    }
}

fn storage(
    action: &'static str,
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> LogError {
    LogError::unavailable(BackendKind::Embedded, action, err)
}

impl Inner {
    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a write leaves the connection usable: SQLite rolls
        // back the open transaction when its handle drops.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on an idle reader connection, opening one if none is idle.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let idle = self.lock_readers().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, false)?,
        };
        let result = f(&conn);
        let mut readers = self.lock_readers();
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Writes `events` in one transaction.
    fn append(&self, events: &[StoredEvent]) -> Result<Range<Offset>, LogError> {
        let encoded = encode_batch(events);
        check_batch(&encoded, self.options.max_event_bytes)?;
        self.append_encoded(&encoded)
    }

    /// Writes encoded records in one transaction, as they are.
    fn append_encoded(&self, encoded: &[impl AsRef<[u8]>]) -> Result<Range<Offset>, LogError> {
        let mut conn = self.writer();
        let start = self.high_water_mark.get();
        if encoded.is_empty() {
            return Ok(start..start);
        }
        let failed = |err| storage("append events", err);
        // Dropped without a commit, the transaction rolls back.
        let tx = conn.transaction().map_err(failed)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (log_offset, payload) VALUES (?1, ?2)")
                .map_err(failed)?;
            for (offset, bytes) in (start..).zip(encoded) {
                insert
                    .execute(params![offset as i64, bytes.as_ref()])
                    .map_err(failed)?;
            }
        }
        tx.commit().map_err(failed)?;
        let end = start + encoded.len() as Offset;
        self.high_water_mark.advance(end);
        Ok(start..end)
    }

    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_records(
        &self,
        conn: &Connection,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Record>, LogError> {
        check_read(from, self.high_water_mark.get())?;
        let read = || -> rusqlite::Result<Vec<Record>> {
            let mut stmt = conn.prepare_cached(
                "SELECT log_offset, payload FROM events WHERE log_offset >= ?1 \
                 ORDER BY log_offset LIMIT ?2",
            )?;
            // Every payload goes into one buffer, which the records then
            // share: one allocation per read, not one per record.
            let mut buffer = BytesMut::new();
            let mut spans = Vec::new();
            let mut rows = stmt.query(params![from as i64, max as i64])?;
            while let Some(row) = rows.next()? {
                let offset = row.get::<_, i64>(0)? as Offset;
                let payload = row.get_ref(1)?;
                // A payload stored as TEXT by another writer is read as its
                // bytes; anything else is an empty, undecodable record.
                let bytes = payload
                    .as_blob_or_null()
                    .ok()
                    .flatten()
                    .or_else(|| payload.as_str().ok().map(str::as_bytes))
                    .unwrap_or_default();
                buffer.extend_from_slice(bytes);
                spans.push((offset, bytes.len()));
            }
            let mut buffer = buffer.freeze();
            Ok(spans
                .into_iter()
                .map(|(offset, len)| Record {
                    offset,
                    payload: buffer.split_to(len),
                })
                .collect())
        };
        read().map_err(|err| storage("read events", err))
    }

    fn committed(
        &self,
        conn: &Connection,
        group: &str,
    ) -> Result<Option<Option<Offset>>, LogError> {
        conn.prepare_cached("SELECT committed FROM group_offsets WHERE group_name = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([group], |row| row.get::<_, Option<i64>>(0))
                    .optional()
            })
            .map(|found| found.map(|committed| committed.map(|offset| offset as Offset)))
            .map_err(|err| storage("read a group's offset", err))
    }

    /// Stores `group`'s committed offset (`None`: nothing done).
    ///
    /// Offsets are written with `synchronous=NORMAL`: the commit is in the
    /// WAL before this returns, so it survives a crash of vibesd at once, and
    /// survives a machine crash from the next fsync on (the next append or
    /// checkpoint). Losing one to a power cut only re-delivers events, which
    /// at-least-once allows; an fsync per commit would cost more than the
    /// reads it acknowledges. Appends keep `synchronous=FULL`.
    fn store_committed(
        &self,
        conn: &Connection,
        group: &str,
        committed: Option<Offset>,
    ) -> Result<(), LogError> {
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|err| storage("store a group's offset", err))?;
        let stored = self.write_committed(conn, group, committed);
        let restored = conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|err| storage("restore synchronous=FULL", err));
        stored.and(restored)
    }

    fn write_committed(
        &self,
        conn: &Connection,
        group: &str,
        committed: Option<Offset>,
    ) -> Result<(), LogError> {
        conn.prepare_cached(
            "INSERT INTO group_offsets (group_name, committed) VALUES (?1, ?2) \
             ON CONFLICT (group_name) DO UPDATE SET committed = excluded.committed, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .and_then(|mut stmt| stmt.execute(params![group, committed.map(|offset| offset as i64)]))
        .map(drop)
        .map_err(|err| storage("store a group's offset", err))
    }
}

/// Every group in `group_offsets`, by name.
fn list_groups(conn: &Connection) -> Result<Vec<GroupOffset>, LogError> {
    let list = || -> rusqlite::Result<Vec<GroupOffset>> {
        let mut stmt = conn.prepare_cached(
            "SELECT group_name, committed FROM group_offsets ORDER BY group_name",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(GroupOffset {
                group: row.get(0)?,
                committed: row.get::<_, Option<i64>>(1)?.map(|offset| offset as Offset),
            })
        })?;
        rows.collect()
    };
    list().map_err(|err| storage("list the groups", err))
}

/// Runs short blocking SQLite work (reads, offset commits; appends go
/// through [`on_pool`]) without stalling other tasks.
///
/// On a multi-threaded runtime the work runs right here, after handing this
/// worker's other tasks to another worker (`block_in_place`): handing a
/// short call to a blocking thread costs two cross-thread wake-ups, which
/// measured a quarter of its time on a 2-core VM. A current-thread runtime
/// (tests) cannot do that, so there it goes to the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(f);
    }
    on_pool(f).await
}

/// Runs SQLite work on the blocking pool: every append (a durable write,
/// which waits for its fsync), and [`blocking`]'s calls on a current-thread
/// runtime.
///
/// Appends do not use `block_in_place`, as the short calls above are: that hands the
/// worker's core, and every task queued on it, to another thread for each
/// write, and under HTTP load that churn of threads (one per group commit)
/// held the append path back. With it gone and the LogWriter no longer
/// yielding before a write, 64 HTTP connections went from 21–24k to 27–30k
/// events/s (see docs/benchmarks.md). Against an fsync, the two
/// cross-thread wake-ups this costs instead are small; in-process
/// producers do feel them.
async fn on_pool<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| storage("run a blocking task", err))?
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn backend(&self) -> BackendKind {
        BackendKind::Embedded
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        let inner = self.inner.clone();
        on_pool(move || inner.append(&events)).await
    }

    async fn append_records(&self, payloads: Vec<Bytes>) -> Result<Range<Offset>, LogError> {
        let inner = self.inner.clone();
        on_pool(move || inner.append_encoded(&payloads)).await
    }

    async fn groups(&self) -> Result<Vec<GroupOffset>, LogError> {
        let inner = self.inner.clone();
        blocking(move || inner.with_reader(list_groups)).await
    }

    async fn high_water_mark(&self) -> Result<Offset, LogError> {
        Ok(self.inner.high_water_mark.get())
    }

    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        let inner = self.inner.clone();
        blocking(move || inner.with_reader(|conn| inner.read_records(conn, from, max))).await
    }

    async fn consumer(
        &self,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError> {
        check_group_name(group)?;
        let inner = self.inner.clone();
        let name = group.to_owned();
        let committed = blocking(move || {
            let conn = inner.writer();
            if let Some(committed) = inner.committed(&conn, &name)? {
                return Ok(committed);
            }
            let committed = match start {
                StartPosition::Beginning => None,
                StartPosition::End => committed_before(inner.high_water_mark.get()),
            };
            inner.store_committed(&conn, &name, committed)?;
            Ok(committed)
        })
        .await?;
        Ok(Box::new(EmbeddedConsumer {
            log: self.clone(),
            group: group.to_owned(),
            position: committed.map_or(0, |offset| offset + 1),
        }))
    }
}

/// A group's reader over an [`EmbeddedLog`].
#[derive(Debug)]
struct EmbeddedConsumer {
    log: EmbeddedLog,
    group: String,
    position: Offset,
}

#[async_trait]
impl EventConsumer for EmbeddedConsumer {
    fn group(&self) -> &str {
        &self.group
    }

    fn position(&self) -> Offset {
        self.position
    }

    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        let inner = self.log.inner.clone();
        if !inner
            .high_water_mark
            .wait_beyond(self.position, timeout)
            .await
        {
            return Ok(Vec::new());
        }
        let from = self.position;
        let records =
            blocking(move || inner.with_reader(|conn| inner.read_records(conn, from, max))).await?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    async fn commit(&mut self, offset: Offset) -> Result<(), LogError> {
        let inner = self.log.inner.clone();
        let group = self.group.clone();
        blocking(move || {
            let conn = inner.writer();
            check_commit(offset, inner.high_water_mark.get())?;
            inner.store_committed(&conn, &group, Some(offset))
        })
        .await
    }

    async fn seek(&mut self, to: SeekTo) -> Result<Offset, LogError> {
        let inner = self.log.inner.clone();
        let group = self.group.clone();
        let position = blocking(move || {
            let conn = inner.writer();
            let position = seek_target(to, inner.high_water_mark.get())?;
            inner.store_committed(&conn, &group, committed_before(position))?;
            Ok(position)
        })
        .await?;
        self.position = position;
        Ok(position)
    }

    async fn committed_offset(&self) -> Result<Option<Offset>, LogError> {
        let inner = self.log.inner.clone();
        let group = self.group.clone();
        blocking(move || inner.with_reader(|conn| inner.committed(conn, &group)))
            .await
            .map(Option::flatten)
    }
}
