//! The groove store, `<data_dir>/groove.sqlite`: every session's state and
//! summary, the records the assessment derived, running totals, and the
//! last offset applied, all written in one transaction per batch.
//!
//! Exactly once, as chat-history does it: events at or below
//! `meta.applied_offset` are re-deliveries and are skipped, so a batch
//! applied twice changes nothing. The store is derived state: deleted, it
//! is rebuilt from the log ([`GrooveStore::resume_at`] answers 0); when its
//! group is moved back it is cleared and rebuilt from the beginning
//! ([`GrooveStore::rewind`]), which gives the same rows because the
//! assessment is a pure function of the log. A store written by another
//! schema or under other assessment settings is cleared when opened.
//!
//! Memory: a batch loads the states of the sessions it touches and saves
//! them at its end; nothing is kept between batches.
//!
//! This file writes; `store/query.rs` reads (for the routes and hooks).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use vibes_core::Delivery;

use crate::assess::Assessor;
use crate::config::GrooveConfig;
use crate::error::GrooveError;
use crate::record::{BreakerState, Record, Transition};
use crate::session::SessionState;

mod query;

pub use query::TimelinePage;

/// The store's file name in the data directory.
pub const FILE_NAME: &str = "groove.sqlite";

/// The schema this build writes, kept in `PRAGMA user_version`; a store of
/// another version is dropped and rebuilt.
const SCHEMA_VERSION: i64 = 1;

/// The tables of records, each `(id, session_id, log_offset, seq, <key>,
/// body)`: `seq` orders the records of one event, `<key>` is what totals
/// and filters use, `body` the record's JSON.
const RECORD_TABLES: [(&str, &str); 4] = [
    ("signals", "kind"),
    ("transitions", "to_state"),
    ("checkpoints", "trigger"),
    ("interventions", "open_offset"),
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id            TEXT PRIMARY KEY,
    breaker       TEXT NOT NULL,
    frustration   REAL NOT NULL,
    success       REAL NOT NULL,
    failure_score REAL NOT NULL,
    interventions INTEGER NOT NULL,
    checkpoints   INTEGER NOT NULL,
    signals       INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    first_offset  INTEGER NOT NULL,
    last_offset   INTEGER NOT NULL,
    last_time     TEXT NOT NULL,
    state         TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, log_offset INTEGER NOT NULL,
    seq INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_by_session ON signals (session_id, log_offset, seq);
CREATE TABLE IF NOT EXISTS transitions (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, log_offset INTEGER NOT NULL,
    seq INTEGER NOT NULL, to_state TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_by_session ON transitions (session_id, log_offset, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, log_offset INTEGER NOT NULL,
    seq INTEGER NOT NULL, trigger TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints (session_id, log_offset, seq);
CREATE TABLE IF NOT EXISTS interventions (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, log_offset INTEGER NOT NULL,
    seq INTEGER NOT NULL, open_offset INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interventions_by_session ON interventions (session_id, log_offset, seq);
CREATE TABLE IF NOT EXISTS totals (
    category TEXT NOT NULL,
    key      TEXT NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (category, key)
) WITHOUT ROWID;
";

/// Every table, in the order a dump lists them: its sort key, and whether
/// it has a rowid (dumped too, so that insertion order is compared).
const DUMP_TABLES: [(&str, &str, bool); 7] = [
    ("meta", "key", false),
    ("sessions", "id", true),
    ("signals", "id", true),
    ("transitions", "id", true),
    ("checkpoints", "id", true),
    ("interventions", "id", true),
    ("totals", "category, key", false),
];

/// The store, shared by the group's handler (writes), the routes (reads)
/// and hook answers (reads). It lives as long as the running plugin.
pub struct GrooveStore {
    path: PathBuf,
    assessor: Assessor,
    /// The handler's connection; each batch holds it for one transaction.
    writer: Mutex<Connection>,
    /// The routes' connection; WAL lets it read while a batch is written.
    reader: Mutex<Connection>,
    /// Hook answers' own connection, so a long page read never delays one.
    hooks: Mutex<Connection>,
}

impl std::fmt::Debug for GrooveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrooveStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic mid-transaction rolled it back when the Transaction dropped.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    // The group commit may be durable before a NORMAL-synced transaction
    // is: FULL keeps the stored offset honest.
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    Ok(conn)
}

fn applied_offset(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'applied_offset'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|value| value.map(|value| value as u64))
}

fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DELETE FROM sessions; DELETE FROM signals; DELETE FROM transitions;
         DELETE FROM checkpoints; DELETE FROM interventions; DELETE FROM totals;
         DELETE FROM meta WHERE key = 'applied_offset';",
    )
}

impl GrooveStore {
    /// Opens (or creates) the store in `data_dir` for an assessment under
    /// `config`.
    pub fn open(data_dir: &Path, config: &GrooveConfig) -> Result<Self, GrooveError> {
        let assessor = Assessor::new(config)?;
        let path = data_dir.join(FILE_NAME);
        let failed = |source| GrooveError::Open {
            path: path.clone(),
            source,
        };
        let mut writer = connection(&path).map_err(failed)?;
        prepare(&mut writer, &config.fingerprint(), &path).map_err(failed)?;
        let reader = connection(&path).map_err(failed)?;
        let hooks = connection(&path).map_err(failed)?;
        Ok(Self {
            path,
            assessor,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            hooks: Mutex::new(hooks),
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last offset whose effect is in the store.
    pub fn applied_offset(&self) -> Result<Option<u64>, GrooveError> {
        Ok(applied_offset(&lock(&self.reader))?)
    }

    /// The first offset the store has not applied: 0 for an empty store.
    pub fn resume_at(&self) -> Result<u64, GrooveError> {
        Ok(self.applied_offset()?.map_or(0, |applied| applied + 1))
    }

    /// The group was moved back to read `to` next. Nothing derived from `to`
    /// on: nothing to drop, and reading goes on from where the store stands
    /// (at most `to`). Otherwise every table is cleared and the answer is 0:
    /// the assessment is a pure function of the log, so re-deriving from
    /// the beginning gives the same rows, and nothing has to know which of
    /// a session's state came from before `to`.
    pub fn rewind(&self, to: u64) -> Result<u64, GrooveError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let next = match applied_offset(&tx)? {
            None => 0,
            Some(applied) if applied < to => applied + 1,
            Some(_) => {
                clear(&tx)?;
                0
            }
        };
        tx.commit()?;
        Ok(next.min(to))
    }

    /// Applies a batch in one transaction, with the offset of its last event;
    /// events at or below the applied offset are skipped. Answers the
    /// breakers it opened, with their sessions.
    pub(crate) fn apply(
        &self,
        batch: &[Delivery],
    ) -> Result<Vec<(String, Transition)>, GrooveError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        let applied = applied_offset(&tx)?;
        let mut touched = Touched::default();
        let mut totals: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
        let mut last = None;
        let mut opened = Vec::new();
        for (offset, stored) in batch {
            if applied.is_some_and(|applied| *offset <= applied) {
                continue; // A re-delivery: its effect is already here.
            }
            last = Some(*offset);
            let Some(session) = stored.event.session_id() else {
                continue;
            };
            let state = touched.state(&tx, session)?;
            let records = self.assessor.step(state, *offset, stored);
            for (seq, record) in records.iter().enumerate() {
                insert(&tx, session, seq, record)?;
                *totals.entry(total_key(record)).or_default() += 1;
                if let Record::Transition(transition) = record
                    && transition.to == BreakerState::Open
                {
                    opened.push((session.to_owned(), transition.clone()));
                }
            }
        }
        let Some(last) = last else {
            return Ok(opened);
        };
        touched.save(&tx)?;
        let mut add = tx.prepare_cached(
            "INSERT INTO totals (category, key, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (category, key) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((category, key), count) in &totals {
            add.execute(params![category, key, count])?;
        }
        drop(add);
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('applied_offset', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [last as i64],
        )?;
        tx.commit()?;
        Ok(opened)
    }
}

/// Creates the schema (dropping one of another version) and clears what
/// was derived under another config.
fn prepare(conn: &mut Connection, fingerprint: &str, path: &Path) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != SCHEMA_VERSION {
        if version != 0 {
            tracing::info!(path = %path.display(), version, "groove: store of another schema, rebuilding it from the log");
        }
        for (table, _, _) in DUMP_TABLES {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {table}"))?;
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    let stored: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'config'", [], |row| {
            row.get(0)
        })
        .optional()?;
    if stored.as_deref() != Some(fingerprint) {
        if stored.is_some() {
            tracing::info!(path = %path.display(), "groove: assessment settings changed, rebuilding the store from the log");
        }
        clear(&tx)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('config', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [fingerprint],
        )?;
    }
    tx.commit()
}

fn decode_state(session_id: &str, body: &str) -> Result<SessionState, GrooveError> {
    serde_json::from_str(body).map_err(|source| GrooveError::State {
        session: session_id.to_owned(),
        source,
    })
}

/// The sessions a batch touched, in the order it first touched them (so
/// that new rows get the same rowids however the log is cut into batches).
#[derive(Default)]
struct Touched {
    index: HashMap<String, usize>,
    states: Vec<(String, SessionState)>,
}

impl Touched {
    fn state(
        &mut self,
        tx: &Transaction<'_>,
        session: &str,
    ) -> Result<&mut SessionState, GrooveError> {
        let at = match self.index.get(session) {
            Some(at) => *at,
            None => {
                let body: Option<String> = tx
                    .prepare_cached("SELECT state FROM sessions WHERE id = ?1")?
                    .query_row([session], |row| row.get(0))
                    .optional()?;
                let state = match body {
                    Some(body) => decode_state(session, &body)?,
                    None => SessionState::default(),
                };
                self.states.push((session.to_owned(), state));
                self.index.insert(session.to_owned(), self.states.len() - 1);
                self.states.len() - 1
            }
        };
        Ok(&mut self.states[at].1)
    }

    fn save(&self, tx: &Transaction<'_>) -> Result<(), GrooveError> {
        let mut statement = tx.prepare_cached(
            "INSERT INTO sessions (id, breaker, frustration, success, failure_score,
                 interventions, checkpoints, signals, events, first_offset, last_offset,
                 last_time, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (id) DO UPDATE SET
                 breaker = excluded.breaker, frustration = excluded.frustration,
                 success = excluded.success, failure_score = excluded.failure_score,
                 interventions = excluded.interventions, checkpoints = excluded.checkpoints,
                 signals = excluded.signals, events = excluded.events,
                 first_offset = excluded.first_offset, last_offset = excluded.last_offset,
                 last_time = excluded.last_time, state = excluded.state",
        )?;
        for (id, state) in &self.states {
            let body = serde_json::to_string(state).map_err(|source| GrooveError::Encode {
                offset: state.last_offset,
                source,
            })?;
            let last_time = chrono::DateTime::from_timestamp_millis(state.last_time_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            statement.execute(params![
                id,
                state.breaker.as_str(),
                state.frustration,
                state.success,
                state.failure_score,
                state.interventions,
                state.checkpoints as i64,
                state.signals as i64,
                state.events as i64,
                state.first_offset as i64,
                state.last_offset as i64,
                last_time,
                body,
            ])?;
        }
        Ok(())
    }
}

fn insert(
    tx: &Transaction<'_>,
    session: &str,
    seq: usize,
    record: &Record,
) -> Result<(), GrooveError> {
    let offset = record.offset();
    let body = record
        .body()
        .map_err(|source| GrooveError::Encode { offset, source })?;
    let (table, key): (&str, rusqlite::types::Value) = match record {
        Record::Signal(signal) => ("signals", signal.kind.as_str().to_owned().into()),
        Record::Transition(transition) => ("transitions", transition.to.as_str().to_owned().into()),
        Record::Checkpoint(checkpoint) => {
            ("checkpoints", checkpoint.trigger.as_str().to_owned().into())
        }
        Record::Intervention(intervention) => {
            ("interventions", (intervention.open_offset as i64).into())
        }
    };
    let column = RECORD_TABLES
        .iter()
        .find(|(name, _)| *name == table)
        .map_or("kind", |(_, column)| column);
    tx.prepare_cached(&format!(
        "INSERT INTO {table} (id, session_id, log_offset, seq, {column}, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))?
    .execute(params![
        record.id(),
        session,
        offset as i64,
        seq as i64,
        key,
        body
    ])?;
    Ok(())
}

fn total_key(record: &Record) -> (&'static str, String) {
    match record {
        Record::Signal(signal) => ("signal", signal.kind.as_str().to_owned()),
        Record::Transition(transition) => ("transition", transition.to.as_str().to_owned()),
        Record::Checkpoint(checkpoint) => ("checkpoint", checkpoint.trigger.as_str().to_owned()),
        Record::Intervention(_) => ("intervention", "all".to_owned()),
    }
}
