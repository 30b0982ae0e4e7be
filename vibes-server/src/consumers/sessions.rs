//! The `session-collector` group: one transcript file per session,
//! `<data_dir>/transcripts/<session_id>.jsonl`, one line per event
//! (`{"offset","event_id","timestamp","event"}`) in offset order, and a
//! small SQLite index of the sessions, `<data_dir>/transcripts/index.sqlite`.
//!
//! Each batch's lines are appended to their session files as they arrive:
//! nothing of a session is held in memory, and the group commits every
//! batch ([`Handled::All`]) once it is durable.
//!
//! Exactly once: the index keeps, per session, the length of its file and
//! the last offset in it. A batch appends to each file from that length
//! (cutting off whatever lies past it: a torn line or the lines of a batch
//! whose index update a crash lost), fsyncs the files, then updates the
//! index in one transaction. Events at or below a session's last offset
//! are re-deliveries and are skipped. So the file and the index agree on
//! what is applied, whatever the log's group commit says.
//!
//! The index also answers `GET /api/sessions` (event count, first and last
//! timestamp, open or closed and why) without reading any transcript. A
//! session is closed by `session_removed`, a `SessionEnd` hook, or going
//! idle (no event for `idle_timeout`, by the events' timestamps; a timer
//! owned by the handler checks every fraction of that window); a closed
//! session that gets new events reopens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use vibes_core::{Delivery, Handled, Handler};

use crate::clip::clip;
use transcript::{Entry, append, import_file};

mod transcript;

/// How long a session may go without events before it counts as closed,
/// unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The index's file name in the transcripts directory.
pub const INDEX_FILE: &str = "index.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id              TEXT PRIMARY KEY,
    events          INTEGER NOT NULL,
    first_timestamp TEXT NOT NULL,
    last_timestamp  TEXT NOT NULL,
    last_micros     INTEGER NOT NULL,
    last_offset     INTEGER NOT NULL,
    file_len        INTEGER NOT NULL,
    closed_by       TEXT
);
CREATE INDEX IF NOT EXISTS open_sessions ON sessions (last_micros) WHERE closed_by IS NULL;
";

/// Why the transcripts directory or its index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("transcripts directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("transcripts index {path}")]
    Index {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("transcripts index")]
    Read(#[from] rusqlite::Error),
}

/// Whether `id` may name a transcript file: 1 to 128 ASCII letters,
/// digits, `-`, `_` or `.`, not starting with a dot.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A session as `GET /api/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// Why it is closed: `session_removed`, `session_end`, `idle`.
    pub closed_by: Option<String>,
    pub events: u64,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
}

/// A transcript to stream: the file, and how much of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptFile {
    pub path: PathBuf,
    /// Bytes past this are a write in progress (or a crash's leftover).
    pub len: u64,
}

/// The collector's index, shared by the group's handler and the API.
pub struct Collector {
    dir: PathBuf,
    idle_timeout: Duration,
    /// The handler's (and idle timer's) connection.
    writer: Mutex<Connection>,
    /// The API's connection; WAL lets it read while a batch is applied.
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("dir", &self.dir)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic mid-transaction rolled it back when the Transaction dropped.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

impl Collector {
    /// Opens `<data_dir>/transcripts` and its index. Transcripts written
    /// before the index existed are read once, line by line, into it.
    pub fn open(data_dir: &Path, idle_timeout: Duration) -> Result<Self, CollectorError> {
        let dir = data_dir.join("transcripts");
        std::fs::create_dir_all(&dir).map_err(|source| CollectorError::Dir {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(INDEX_FILE);
        let fresh = !path.exists();
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            // The group commit may be durable before a NORMAL-synced
            // transaction is: FULL keeps the index honest.
            conn.execute_batch("PRAGMA synchronous = FULL")?;
            Ok(conn)
        };
        let failed = |source| CollectorError::Index {
            path: path.clone(),
            source,
        };
        let writer = open(&path).map_err(failed)?;
        writer.execute_batch(SCHEMA).map_err(failed)?;
        let reader = open(&path).map_err(failed)?;
        let collector = Self {
            dir,
            idle_timeout,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        };
        if fresh {
            collector.import()?;
        }
        Ok(collector)
    }

    fn path(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.jsonl"))
    }

    /// Indexes the transcripts already in the directory (written before
    /// the index existed), streaming each file once.
    fn import(&self) -> Result<(), CollectorError> {
        let failed = |source| CollectorError::Dir {
            path: self.dir.clone(),
            source,
        };
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        for entry in std::fs::read_dir(&self.dir).map_err(failed)? {
            let path = entry.map_err(failed)?.path();
            let Some(id) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".jsonl"))
                .filter(|id| valid_session_id(id))
            else {
                continue;
            };
            match import_file(&path) {
                Ok(Some(entry)) => store(&tx, id, &entry)?,
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), "unreadable transcript, not indexed: {err}");
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends a batch to its sessions' files, then records it in the
    /// index, and says how far the group may commit.
    fn apply(&self, batch: &[Delivery]) -> Handled {
        // Each session's events, in offset order, sessions in order of
        // their first event.
        let mut order: HashMap<&str, usize> = HashMap::new();
        let mut sessions: Vec<(&str, Vec<&Delivery>)> = Vec::new();
        for delivery in batch {
            let (offset, stored) = delivery;
            let Some(session) = stored.event.session_id() else {
                continue;
            };
            if !valid_session_id(session) {
                tracing::warn!(
                    offset,
                    session_id = %clip(session),
                    "session-collector: a session id that cannot name a file; no transcript"
                );
                continue;
            }
            let at = *order.entry(session).or_insert_with(|| {
                sessions.push((session, Vec::new()));
                sessions.len() - 1
            });
            sessions[at].1.push(delivery);
        }
        if sessions.is_empty() {
            return Handled::All;
        }
        let mut conn = lock(&self.writer);
        let mut done = Vec::new();
        let mut failure: Option<(u64, String)> = None;
        for (session, events) in sessions {
            let first = events[0].0;
            let written = load(&conn, session)
                .map_err(|err| err.to_string())
                .and_then(|entry| {
                    let entry = entry.unwrap_or_default();
                    let new: Vec<&Delivery> = events
                        .into_iter()
                        .filter(|(offset, _)| entry.last_offset.is_none_or(|last| *offset > last))
                        .collect();
                    if new.is_empty() {
                        return Ok(None);
                    }
                    let path = self.path(session);
                    append(&path, entry, &new)
                        .map(Some)
                        .map_err(|err| format!("transcript {}: {err}", path.display()))
                });
            match written {
                Ok(Some(entry)) => done.push((session, entry)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!("session-collector: {error}");
                    if failure.as_ref().is_none_or(|(offset, _)| first < *offset) {
                        failure = Some((first, error));
                    }
                }
            }
        }
        // The files are durable: record how far each is applied.
        let recorded = conn.transaction().and_then(|tx| {
            for (session, entry) in &done {
                store(&tx, session, entry)?;
            }
            tx.commit()
        });
        if let Err(err) = recorded {
            // Nothing of the batch is recorded: it all comes again, and
            // the lines written are cut off then.
            return Handled::Failed {
                offset: batch.first().map(|(offset, _)| *offset).unwrap_or_default(),
                error: format!("session-collector index: {err}"),
            };
        }
        match failure {
            Some((offset, error)) => Handled::Failed { offset, error },
            None => Handled::All,
        }
    }

    /// Marks closed (`idle`) every open session whose last event is older
    /// than the idle timeout, as of `now`.
    pub fn close_idle(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), CollectorError> {
        let window = chrono::Duration::from_std(self.idle_timeout).unwrap_or(chrono::Duration::MAX);
        let cutoff = now
            .checked_sub_signed(window)
            .map_or(i64::MIN, |cutoff| cutoff.timestamp_micros());
        lock(&self.writer).execute(
            "UPDATE sessions SET closed_by = 'idle'
             WHERE closed_by IS NULL AND last_micros <= ?1",
            [cutoff],
        )?;
        Ok(())
    }

    /// Every session known, by id.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, CollectorError> {
        let conn = lock(&self.reader);
        let mut statement = conn.prepare_cached(
            "SELECT id, events, first_timestamp, last_timestamp, closed_by
             FROM sessions ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            let closed_by: Option<String> = row.get(4)?;
            Ok(SessionInfo {
                session_id: row.get(0)?,
                state: if closed_by.is_some() {
                    "closed"
                } else {
                    "open"
                },
                closed_by,
                events: from_sql(row.get(1)?),
                first_timestamp: Some(row.get(2)?),
                last_timestamp: Some(row.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where a session's transcript is and how much of it to read; `None`
    /// for a session never seen.
    pub fn transcript(&self, session_id: &str) -> Result<Option<TranscriptFile>, CollectorError> {
        if !valid_session_id(session_id) {
            return Ok(None);
        }
        let conn = lock(&self.reader);
        let len = conn
            .query_row(
                "SELECT file_len FROM sessions WHERE id = ?1",
                [session_id],
                |row| row.get::<_, i64>(0),
            )
            .optional()?;
        Ok(len.map(|len| TranscriptFile {
            path: self.path(session_id),
            len: from_sql(len),
        }))
    }
}

fn closed_by_name(name: &str) -> Option<&'static str> {
    ["session_removed", "session_end", "idle"]
        .into_iter()
        .find(|known| *known == name)
}

fn load(conn: &Connection, session: &str) -> rusqlite::Result<Option<Entry>> {
    conn.prepare_cached(
        "SELECT events, first_timestamp, last_timestamp, last_micros, last_offset, file_len,
                closed_by
         FROM sessions WHERE id = ?1",
    )?
    .query_row([session], |row| {
        let closed_by: Option<String> = row.get(6)?;
        Ok(Entry {
            events: from_sql(row.get(0)?),
            first: row.get(1)?,
            last: row.get(2)?,
            last_micros: row.get(3)?,
            last_offset: Some(from_sql(row.get(4)?)),
            file_len: from_sql(row.get(5)?),
            closed_by: closed_by.as_deref().and_then(closed_by_name),
        })
    })
    .optional()
}

fn store(conn: &Connection, session: &str, entry: &Entry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, events, first_timestamp, last_timestamp, last_micros,
                               last_offset, file_len, closed_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET
             events = excluded.events, first_timestamp = excluded.first_timestamp,
             last_timestamp = excluded.last_timestamp, last_micros = excluded.last_micros,
             last_offset = excluded.last_offset, file_len = excluded.file_len,
             closed_by = excluded.closed_by",
    )?
    .execute(params![
        session,
        to_sql(entry.events),
        entry.first,
        entry.last,
        entry.last_micros,
        entry.last_offset.map(to_sql),
        to_sql(entry.file_len),
        entry.closed_by,
    ])?;
    Ok(())
}

/// The group's handler. It owns the idle timer: dropping the handler (a
/// crash, a restart, shutdown) stops it.
#[derive(Debug)]
pub struct SessionCollector {
    collector: Arc<Collector>,
    _idle_timer: Option<IdleTimer>,
}

#[derive(Debug)]
struct IdleTimer(tokio::task::JoinHandle<()>);

impl Drop for IdleTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SessionCollector {
    /// A new handler; the index on disk is all it starts from.
    pub fn new(collector: Arc<Collector>) -> Self {
        let idle_timer = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let collector = collector.clone();
            let period = (collector.idle_timeout / 4)
                .clamp(Duration::from_millis(50), Duration::from_secs(30));
            IdleTimer(runtime.spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let collector = collector.clone();
                    let closed = tokio::task::spawn_blocking(move || {
                        collector.close_idle(chrono::Utc::now())
                    })
                    .await;
                    match closed {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            tracing::error!(
                                "session-collector idle check: {}",
                                vibes_core::error_chain(&err)
                            );
                        }
                        Err(err) => tracing::error!("session-collector idle check failed: {err}"),
                    }
                }
            }))
        });
        Self {
            collector,
            _idle_timer: idle_timer,
        }
    }
}

#[async_trait]
impl Handler for SessionCollector {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        // File and SQLite writes block: they run in place, with no copy
        // of a batch that may hold megabytes of events.
        vibes_plugin::run_blocking(|| self.collector.apply(batch)).unwrap_or_else(|panic| {
            Handled::Failed {
                offset: batch.first().map(|(offset, _)| *offset).unwrap_or_default(),
                error: format!("session-collector handler panicked: {panic}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fs::OpenOptions;
    use std::io::Write;

    use serde_json::Value;
    use vibes_core::{StoredEvent, VibesEvent};

    use super::transcript::{Line, timestamp};
    use super::*;

    fn event(event: VibesEvent) -> StoredEvent {
        StoredEvent::new(event)
    }

    fn input(session: &str, text: &str) -> StoredEvent {
        event(VibesEvent::UserInput {
            session_id: session.into(),
            content: text.into(),
            source: "test".into(),
        })
    }

    fn removed(session: &str) -> StoredEvent {
        event(VibesEvent::SessionRemoved {
            session_id: session.into(),
            reason: "user".into(),
        })
    }

    fn offsets(text: &str) -> Vec<u64> {
        text.lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["offset"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    fn file(dir: &Path, session: &str) -> String {
        std::fs::read_to_string(dir.join(format!("transcripts/{session}.jsonl"))).unwrap()
    }

    fn info(collector: &Collector, session: &str) -> SessionInfo {
        collector
            .sessions()
            .unwrap()
            .into_iter()
            .find(|s| s.session_id == session)
            .unwrap()
    }

    #[tokio::test]
    async fn every_batch_is_appended_and_committed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap());
        let mut handler = SessionCollector::new(collector.clone());
        let batch = vec![
            (0, input("a", "1")),
            (1, input("b", "1")),
            (2, removed("a")),
        ];
        assert_eq!(handler.handle(&batch).await, Handled::All);
        assert_eq!(offsets(&file(dir.path(), "a")), [0, 2]);
        assert_eq!(offsets(&file(dir.path(), "b")), [1]);
        let a = info(&collector, "a");
        assert_eq!(
            (a.state, a.closed_by.as_deref(), a.events),
            ("closed", Some("session_removed"), 2)
        );
        assert_eq!(info(&collector, "b").state, "open");
        assert_eq!(handler.handle(&[(3, input("b", "2"))]).await, Handled::All);
        assert_eq!(offsets(&file(dir.path(), "b")), [1, 3]);
        let b = info(&collector, "b");
        assert_eq!(b.events, 2);
        assert_eq!(b.first_timestamp.unwrap(), timestamp(&batch[1].1));
        let streamed = collector.transcript("b").unwrap().unwrap();
        assert_eq!(streamed.len, file(dir.path(), "b").len() as u64);
    }

    #[tokio::test]
    async fn redelivery_after_a_crash_adds_no_line_and_repairs_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap());
        let batch = vec![
            (0, input("a", "1")),
            (1, input("b", "1")),
            (2, input("a", "2")),
        ];
        let mut handler = SessionCollector::new(collector.clone());
        assert_eq!(handler.handle(&batch).await, Handled::All);
        let first = file(dir.path(), "a");
        // A crash after the next batch's append but before its index
        // update: a complete line and a torn one past the applied length.
        let path = dir.path().join("transcripts/a.jsonl");
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(b"{\"offset\":3,\"event_id\":\"x\"}\n{\"offset\":4,\"ev")
            .unwrap();
        drop(raw);
        drop(handler);
        let mut handler = SessionCollector::new(collector.clone());
        // The log delivers again from its last commit, and further.
        let again = vec![
            (1, batch[1].1.clone()),
            (2, batch[2].1.clone()),
            (3, input("a", "3")),
            (4, removed("a")),
        ];
        assert_eq!(handler.handle(&again).await, Handled::All);
        let text = file(dir.path(), "a");
        assert!(text.starts_with(&first));
        assert_eq!(offsets(&text), [0, 2, 3, 4]);
        assert_eq!(offsets(&file(dir.path(), "b")), [1]);
        // And after a daemon restart, the index is still there.
        drop(handler);
        drop(collector);
        let reopened = Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap();
        let a = info(&reopened, "a");
        assert_eq!(
            (a.events, a.closed_by.as_deref()),
            (4, Some("session_removed"))
        );
    }

    #[tokio::test]
    async fn an_idle_session_is_closed_and_can_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), Duration::from_secs(60)).unwrap());
        let mut handler = SessionCollector::new(collector.clone());
        handler.handle(&[(0, input("a", "1"))]).await;
        collector.close_idle(chrono::Utc::now()).unwrap();
        assert_eq!(info(&collector, "a").state, "open");
        collector
            .close_idle(chrono::Utc::now() + chrono::Duration::seconds(61))
            .unwrap();
        let a = info(&collector, "a");
        assert_eq!((a.state, a.closed_by.as_deref()), ("closed", Some("idle")));
        assert_eq!(handler.handle(&[(1, input("a", "2"))]).await, Handled::All);
        let a = info(&collector, "a");
        assert_eq!((a.state, a.closed_by, a.events), ("open", None, 2));
        handler.handle(&[(2, removed("a"))]).await;
        assert_eq!(offsets(&file(dir.path(), "a")), [0, 1, 2]);
    }

    #[test]
    fn transcripts_written_before_the_index_are_indexed_once_and_a_torn_line_cut() {
        let dir = tempfile::tempdir().unwrap();
        let transcripts = dir.path().join("transcripts");
        std::fs::create_dir_all(&transcripts).unwrap();
        let done = [(0, input("old", "1")), (4, removed("old"))]
            .iter()
            .map(|(offset, stored)| {
                let line = Line {
                    offset: *offset,
                    event_id: &stored.event_id,
                    timestamp: timestamp(stored),
                    event: &stored.event,
                };
                format!("{}\n", serde_json::to_string(&line).unwrap())
            })
            .collect::<String>();
        std::fs::write(transcripts.join("old.jsonl"), format!("{done}{{\"offse")).unwrap();
        let collector = Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap();
        let old = info(&collector, "old");
        assert_eq!(
            (old.events, old.closed_by.as_deref()),
            (2, Some("session_removed"))
        );
        assert_eq!(file(dir.path(), "old"), done);
        assert_eq!(
            collector.transcript("old").unwrap().unwrap().len,
            done.len() as u64
        );
    }

    #[test]
    fn session_ids_that_are_not_file_names_are_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "a\\b",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!valid_session_id(bad), "{bad:?}");
        }
        assert!(valid_session_id("0198c3b2-7e4d-7a35-9c1e-2f1b3a4c5d6e"));
    }
}
