//! The `chat-history` group: a SQLite database of sessions and their
//! messages, with full-text search, at `<data_dir>/chat-history.sqlite`.
//!
//! Exactly-once: every batch is applied in one SQLite transaction that also
//! stores the last offset applied (`meta.applied_offset`). Events at or
//! below it are re-deliveries and are skipped, so the handler can answer
//! [`Handled::All`] and the log's group commit may lag (or be lost in a
//! crash) without a row ever being written twice.
//!
//! Streamed output is merged: consecutive `text_delta`s of a session become
//! one assistant message, and a `tool_use_start` with its
//! `tool_input_delta`s one tool call. The message being accumulated lives in
//! the `pending` table, written in the same transaction as the offset, so a
//! crash in the middle of a turn loses nothing; it becomes a message when
//! its turn completes or another kind of message of the session arrives.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vibes_core::{ClaudeEvent, Delivery, Handled, Handler, StoredEvent, VibesEvent};

/// The database's file name in the data directory.
pub const FILE_NAME: &str = "chat-history.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    state      TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    removed    TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    log_offset INTEGER NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    text       TEXT NOT NULL,
    meta       TEXT NOT NULL,
    timestamp  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages (session_id, id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts
    USING fts5 (text, content = 'messages', content_rowid = 'id');
-- The index is written by the batch itself, after its other writes: a
-- trigger made every message insert a statement with a savepoint, and FTS5
-- writes its pending terms to disk at each savepoint (a new segment per
-- message, then merges).
DROP TRIGGER IF EXISTS messages_fts_insert;
CREATE TABLE IF NOT EXISTS pending (
    session_id TEXT PRIMARY KEY,
    body       TEXT NOT NULL
);
";

/// Why the database could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("chat history database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The FTS5 query does not parse.
    #[error("invalid search query: {0}")]
    BadQuery(String),
    #[error("chat history database error")]
    Sql(#[from] rusqlite::Error),
}

/// The database, shared by the group's handler (writes) and the API (reads).
pub struct ChatHistory {
    path: PathBuf,
    /// The handler's connection; each batch holds it for one transaction.
    writer: Mutex<Connection>,
    /// The API's connection; WAL lets it read while a batch is written.
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for ChatHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(mutex: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic mid-transaction rolled it back when the Transaction dropped.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A page of messages, newest first, and the `before` of the next page.
pub type MessagePage = (Vec<Value>, Option<i64>);

/// A message being accumulated from streamed deltas.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    role: String,
    offset: u64,
    timestamp: String,
    text: String,
    meta: Value,
}

/// One event the database could not take, and at which offset.
#[derive(Debug)]
struct ApplyError {
    offset: u64,
    source: rusqlite::Error,
}

impl ChatHistory {
    /// Opens (or creates) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, HistoryError> {
        let path = data_dir.join(FILE_NAME);
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            // The group commit may be durable before a NORMAL-synced
            // transaction is: FULL keeps the stored offset honest.
            conn.execute_batch("PRAGMA synchronous = FULL")?;
            Ok(conn)
        };
        let failed = |source| HistoryError::Open {
            path: path.clone(),
            source,
        };
        let writer = open(&path).map_err(failed)?;
        writer.execute_batch(SCHEMA).map_err(failed)?;
        let reader = open(&path).map_err(failed)?;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// The last offset whose effect is in the database.
    pub fn applied_offset(&self) -> Result<Option<u64>, HistoryError> {
        Ok(applied_offset(&lock(&self.reader))?)
    }

    /// Drops everything the database derived, applied offset included, in
    /// one transaction: the group was moved back, and the history is read
    /// again from the start of the log (what it holds before the new
    /// position comes out the same, since it is a function of the log).
    pub fn clear(&self) -> Result<(), HistoryError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM messages;
             INSERT INTO messages_fts (messages_fts) VALUES ('delete-all');
             DELETE FROM sessions;
             DELETE FROM pending;
             DELETE FROM meta WHERE key = 'applied_offset';",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Applies a batch in one transaction; if that fails, event by event,
    /// so the error names the event that cannot be applied and the ones
    /// before it are kept.
    fn apply(&self, batch: &[Delivery]) -> Result<(), ApplyError> {
        let mut conn = lock(&self.writer);
        match apply_in_transaction(&mut conn, batch) {
            Ok(()) => Ok(()),
            Err(err) if batch.len() == 1 => Err(err),
            Err(err) => {
                tracing::warn!(
                    offset = err.offset,
                    "chat-history: batch failed ({}); applying it event by event",
                    err.source
                );
                for delivery in batch {
                    apply_in_transaction(&mut conn, std::slice::from_ref(delivery))?;
                }
                Ok(())
            }
        }
    }

    /// One page of a session's messages, newest first: those with an id
    /// below `before`, at most `limit`. `None` if the session is unknown.
    pub fn messages(
        &self,
        session_id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Option<MessagePage>, HistoryError> {
        let conn = lock(&self.reader);
        let known = conn
            .query_row("SELECT 1 FROM sessions WHERE id = ?1", [session_id], |_| {
                Ok(())
            })
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut statement = conn.prepare_cached(
            "SELECT id, session_id, log_offset, role, text, meta, timestamp FROM messages
             WHERE session_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![session_id, before.unwrap_or(i64::MAX), limit as i64 + 1],
            |row| message_json(row, None),
        )?;
        let mut messages = rows.collect::<Result<Vec<_>, _>>()?;
        let next_before = if messages.len() > limit {
            messages.truncate(limit);
            messages.last().and_then(|last| last["id"].as_i64())
        } else {
            None
        };
        Ok(Some((messages, next_before)))
    }

    /// Messages matching an FTS5 query, best match first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Value>, HistoryError> {
        let conn = lock(&self.reader);
        let mut statement = conn.prepare_cached(
            "SELECT m.id, m.session_id, m.log_offset, m.role, m.text, m.meta, m.timestamp,
                    snippet(messages_fts, 0, '[', ']', '…', 16)
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
             WHERE messages_fts MATCH ?1 ORDER BY rank LIMIT ?2",
        )?;
        let rows = statement
            .query_map(params![query, limit as i64], |row| {
                let snippet: String = row.get(7)?;
                message_json(row, Some(snippet))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(|err| match err {
            // The statement is fixed and valid: a plain SQL error here is
            // the query's (FTS5 syntax, an unknown column filter).
            rusqlite::Error::SqliteFailure(code, message)
                if code.code == rusqlite::ErrorCode::Unknown =>
            {
                HistoryError::BadQuery(message.unwrap_or_else(|| code.to_string()))
            }
            other => HistoryError::Sql(other),
        })
    }
}

fn message_json(row: &rusqlite::Row<'_>, snippet: Option<String>) -> rusqlite::Result<Value> {
    let meta: String = row.get(5)?;
    let mut message = json!({
        "id": row.get::<_, i64>(0)?,
        "session_id": row.get::<_, String>(1)?,
        "offset": row.get::<_, i64>(2)?,
        "role": row.get::<_, String>(3)?,
        "text": row.get::<_, String>(4)?,
        "meta": serde_json::from_str::<Value>(&meta).unwrap_or(Value::Null),
        "timestamp": row.get::<_, String>(6)?,
    });
    if let Some(snippet) = snippet {
        message["snippet"] = Value::String(snippet);
    }
    Ok(message)
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

fn apply_in_transaction(conn: &mut Connection, batch: &[Delivery]) -> Result<(), ApplyError> {
    let first = batch.first().map(|(offset, _)| *offset).unwrap_or_default();
    let at = |offset| move |source| ApplyError { offset, source };
    let tx = conn.transaction().map_err(at(first))?;
    let applied = applied_offset(&tx).map_err(at(first))?;
    let mut writer = BatchWriter {
        tx: &tx,
        pending: HashMap::new(),
        stored_pending: HashSet::new(),
        last_seen: HashMap::new(),
        to_index: Vec::new(),
    };
    let mut last = None;
    for (offset, stored) in batch {
        if applied.is_some_and(|applied| *offset <= applied) {
            continue; // A re-delivery: its effect is already here.
        }
        writer.apply(*offset, stored).map_err(at(*offset))?;
        last = Some(*offset);
    }
    let Some(last) = last else {
        return Ok(());
    };
    // Errors from here on are the batch's as a whole; the first event
    // not yet applied is the one to retry from.
    let first_new = batch
        .iter()
        .map(|(offset, _)| *offset)
        .find(|offset| applied.is_none_or(|applied| *offset > applied))
        .unwrap_or(last);
    writer.finish().map_err(at(first_new))?;
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('applied_offset', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut statement| statement.execute([last as i64]))
    .map_err(at(first_new))?;
    tx.commit().map_err(at(first_new))
}

/// The writes of one batch, with the pending messages and the sessions it
/// touched. Every statement is prepared once per connection
/// (`prepare_cached`): preparing cost more than running them.
struct BatchWriter<'a> {
    tx: &'a Transaction<'a>,
    /// Loaded on first use; written back once at the end of the batch.
    pending: HashMap<String, Option<Pending>>,
    /// The sessions whose pending message was in the database at load.
    stored_pending: HashSet<String>,
    /// The time of each touched session's last event in the batch, and
    /// whether it moved since its row was written on the session's first
    /// event; written once at the end.
    last_seen: HashMap<String, (String, bool)>,
    /// The messages inserted, by row id, for the full-text index.
    to_index: Vec<(i64, String)>,
}

impl BatchWriter<'_> {
    fn apply(&mut self, offset: u64, stored: &StoredEvent) -> rusqlite::Result<()> {
        let Some(session) = stored.event.session_id() else {
            return Ok(());
        };
        let session = session.to_owned();
        let timestamp = timestamp(stored);
        if let Some((last_seen, moved)) = self.last_seen.get_mut(&session) {
            last_seen.clone_from(&timestamp);
            *moved = true;
        } else {
            self.tx
                .prepare_cached(
                    "INSERT INTO sessions (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                     ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                )?
                .execute(params![session, timestamp])?;
            self.last_seen
                .insert(session.clone(), (timestamp.clone(), false));
        }
        let new = |role: &str, text: String, meta: Value| Pending {
            role: role.into(),
            offset,
            timestamp: timestamp.clone(),
            text,
            meta,
        };
        match &stored.event {
            VibesEvent::Claude { event, .. } => match event {
                ClaudeEvent::TextDelta { text } => {
                    self.accumulate(&session, "assistant", None, text, || {
                        new("assistant", String::new(), json!({}))
                    })?;
                }
                ClaudeEvent::ToolUseStart { id, name } => {
                    self.flush(&session)?;
                    self.pending_mut(&session)?.replace(new(
                        "tool_call",
                        String::new(),
                        json!({ "tool_id": id, "tool": name }),
                    ));
                }
                ClaudeEvent::ToolInputDelta { id, delta } => {
                    self.accumulate(&session, "tool_call", Some(id), delta, || {
                        new("tool_call", String::new(), json!({ "tool_id": id }))
                    })?;
                }
                ClaudeEvent::ToolResult {
                    id,
                    output,
                    is_error,
                } => self.message(
                    &session,
                    new(
                        "tool_result",
                        output.clone(),
                        json!({ "tool_id": id, "is_error": is_error }),
                    ),
                )?,
                ClaudeEvent::Error {
                    message,
                    recoverable,
                } => self.message(
                    &session,
                    new(
                        "error",
                        message.clone(),
                        json!({ "recoverable": recoverable }),
                    ),
                )?,
                ClaudeEvent::PermissionRequest {
                    id,
                    tool,
                    description,
                } => self.message(
                    &session,
                    new(
                        "permission_request",
                        description.clone(),
                        json!({ "request_id": id, "tool": tool }),
                    ),
                )?,
                ClaudeEvent::TurnStart | ClaudeEvent::TurnComplete { .. } => {
                    self.flush(&session)?;
                }
                // Thinking is not part of the conversation's record.
                ClaudeEvent::ThinkingDelta { .. } | ClaudeEvent::Unknown(_) => {}
            },
            VibesEvent::UserInput {
                content, source, ..
            } => self.message(
                &session,
                new("user", content.clone(), json!({ "source": source })),
            )?,
            VibesEvent::PermissionResponse {
                request_id,
                approved,
                ..
            } => self.message(
                &session,
                new(
                    "permission_response",
                    if *approved { "approved" } else { "denied" }.into(),
                    json!({ "request_id": request_id, "approved": approved }),
                ),
            )?,
            VibesEvent::SessionCreated { name, .. } => {
                self.tx
                    .prepare_cached(
                        "UPDATE sessions SET name = ?2, state = coalesce(state, 'created') WHERE id = ?1",
                    )?
                    .execute(params![session, name])?;
            }
            VibesEvent::SessionStateChanged { state, .. } => {
                self.tx
                    .prepare_cached("UPDATE sessions SET state = ?2 WHERE id = ?1")?
                    .execute(params![session, state])?;
            }
            VibesEvent::SessionRemoved { reason, .. } => {
                self.flush(&session)?;
                self.tx
                    .prepare_cached(
                        "UPDATE sessions SET state = 'removed', removed = ?2 WHERE id = ?1",
                    )?
                    .execute(params![session, reason])?;
            }
            VibesEvent::Hook { event, .. } => {
                let as_text = |value: &Option<Value>| match value {
                    Some(Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let meta = json!({ "tool": event.tool_name, "source": "hook" });
                match event.hook_event_name.as_str() {
                    "PreToolUse" => {
                        self.message(&session, new("tool_call", as_text(&event.tool_input), meta))?
                    }
                    "PostToolUse" => self.message(
                        &session,
                        new("tool_result", as_text(&event.tool_response), meta),
                    )?,
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn pending_mut(&mut self, session: &str) -> rusqlite::Result<&mut Option<Pending>> {
        if !self.pending.contains_key(session) {
            let body: Option<String> = self
                .tx
                .prepare_cached("SELECT body FROM pending WHERE session_id = ?1")?
                .query_row([session], |row| row.get(0))
                .optional()?;
            if body.is_some() {
                self.stored_pending.insert(session.to_owned());
            }
            let pending = body.and_then(|body| serde_json::from_str(&body).ok());
            self.pending.insert(session.to_owned(), pending);
        }
        Ok(self.pending.entry(session.to_owned()).or_default())
    }

    /// Appends `text` to the session's pending message of `role` (and tool
    /// id), or flushes what is pending and starts a new one.
    fn accumulate(
        &mut self,
        session: &str,
        role: &str,
        tool_id: Option<&str>,
        text: &str,
        start: impl FnOnce() -> Pending,
    ) -> rusqlite::Result<()> {
        let matches = |pending: &Pending| {
            pending.role == role
                && tool_id.is_none_or(|id| pending.meta["tool_id"].as_str() == Some(id))
        };
        if !self.pending_mut(session)?.as_ref().is_some_and(matches) {
            self.flush(session)?;
            self.pending_mut(session)?.replace(start());
        }
        if let Some(pending) = self.pending_mut(session)? {
            pending.text.push_str(text);
        }
        Ok(())
    }

    /// Writes a finished message, after whatever was pending before it.
    fn message(&mut self, session: &str, message: Pending) -> rusqlite::Result<()> {
        self.flush(session)?;
        self.insert(session, &message)
    }

    fn flush(&mut self, session: &str) -> rusqlite::Result<()> {
        if let Some(pending) = self.pending_mut(session)?.take() {
            self.insert(session, &pending)?;
        }
        Ok(())
    }

    fn insert(&mut self, session: &str, message: &Pending) -> rusqlite::Result<()> {
        let id = self
            .tx
            .prepare_cached(
                "INSERT INTO messages (session_id, log_offset, role, text, meta, timestamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .insert(params![
                session,
                message.offset as i64,
                message.role,
                message.text,
                message.meta.to_string(),
                message.timestamp
            ])?;
        self.to_index.push((id, message.text.clone()));
        Ok(())
    }

    /// Writes back what the batch kept in memory: the touched sessions'
    /// last event times, their pending messages and, last, the full-text
    /// index of the new messages.
    fn finish(&self) -> rusqlite::Result<()> {
        let mut seen = self
            .tx
            .prepare_cached("UPDATE sessions SET last_seen = ?2 WHERE id = ?1")?;
        for (session, (last_seen, moved)) in &self.last_seen {
            if *moved {
                seen.execute(params![session, last_seen])?;
            }
        }
        for (session, pending) in &self.pending {
            match pending {
                Some(pending) => {
                    let body = serde_json::to_string(pending)
                        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?;
                    self.tx
                        .prepare_cached(
                            "INSERT INTO pending (session_id, body) VALUES (?1, ?2)
                             ON CONFLICT (session_id) DO UPDATE SET body = excluded.body",
                        )?
                        .execute(params![session, body])?;
                }
                None if self.stored_pending.contains(session) => {
                    self.tx
                        .prepare_cached("DELETE FROM pending WHERE session_id = ?1")?
                        .execute([session])?;
                }
                None => {}
            }
        }
        let mut index = self
            .tx
            .prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")?;
        for (id, text) in &self.to_index {
            index.execute(params![id, text])?;
        }
        Ok(())
    }
}

/// RFC 3339 in UTC with fixed precision, so text order is time order.
fn timestamp(stored: &StoredEvent) -> String {
    stored
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The group's handler: applies each batch in place (see
/// [`vibes_plugin::run_blocking`]).
pub struct ChatHistoryHandler {
    db: Arc<ChatHistory>,
}

impl std::fmt::Debug for ChatHistoryHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatHistoryHandler").finish_non_exhaustive()
    }
}

impl ChatHistoryHandler {
    pub fn new(db: Arc<ChatHistory>) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Handler for ChatHistoryHandler {
    fn resume_at(&self) -> Option<u64> {
        // Unreadable: the group's own offset decides, and the first batch
        // says what is wrong.
        self.db
            .applied_offset()
            .ok()
            .map(|applied| applied.map_or(0, |offset| offset + 1))
    }

    async fn rewound(&mut self, _to: u64) -> Result<u64, String> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.clear()).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(err)) => Err(vibes_core::error_chain(&err)),
            Err(join) => Err(format!("chat-history rewind panicked: {join}")),
        }
    }

    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        let first = batch.first().map(|(offset, _)| *offset).unwrap_or_default();
        match vibes_plugin::run_blocking(|| self.db.apply(batch)) {
            Ok(Ok(())) => Handled::All,
            Ok(Err(err)) => Handled::Failed {
                offset: err.offset,
                error: vibes_core::error_chain(&err.source),
            },
            // A panic rolled its transaction back: nothing of the batch is
            // applied, so the whole batch is retried.
            Err(panic) => Handled::Failed {
                offset: first,
                error: format!("chat-history handler panicked: {panic}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use vibes_core::Usage;

    fn claude(session: &str, event: ClaudeEvent) -> StoredEvent {
        StoredEvent::new(VibesEvent::Claude {
            session_id: session.into(),
            event,
        })
    }

    fn delta(text: &str) -> StoredEvent {
        claude("s1", ClaudeEvent::TextDelta { text: text.into() })
    }

    fn input(text: &str) -> StoredEvent {
        StoredEvent::new(VibesEvent::UserInput {
            session_id: "s1".into(),
            content: text.into(),
            source: "test".into(),
        })
    }

    fn texts(db: &ChatHistory) -> Vec<(String, String)> {
        let (messages, _) = db.messages("s1", None, 100).unwrap().unwrap();
        messages
            .iter()
            .rev()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn numbered(events: Vec<StoredEvent>) -> Vec<Delivery> {
        events
            .into_iter()
            .enumerate()
            .map(|(offset, event)| (offset as u64, event))
            .collect()
    }

    #[tokio::test]
    async fn deltas_merge_and_redelivery_writes_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        let events = numbered(vec![
            input("hello there"),
            delta("Hi, "),
            delta("how can I help?"),
            claude(
                "s1",
                ClaudeEvent::TurnComplete {
                    usage: Usage::default(),
                },
            ),
            delta("more "),
            delta("text"),
            input("bye"),
        ]);
        let mut handler = ChatHistoryHandler::new(db.clone());
        // A crash between the two halves: the second handler gets the
        // first half again, then everything.
        assert_eq!(handler.handle(&events[..5]).await, Handled::All);
        let mut restarted = ChatHistoryHandler::new(db.clone());
        assert_eq!(restarted.handle(&events[..2]).await, Handled::All);
        assert_eq!(restarted.handle(&events[2..]).await, Handled::All);
        assert_eq!(restarted.handle(&events).await, Handled::All);
        let expected = [
            ("user", "hello there"),
            ("assistant", "Hi, how can I help?"),
            ("assistant", "more text"),
            ("user", "bye"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(r, t)| ((*r).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(texts(&db), expected);
        assert_eq!(db.applied_offset().unwrap(), Some(6));
    }

    #[tokio::test]
    async fn a_partial_assistant_message_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let events = numbered(vec![delta("half "), delta("way"), input("next")]);
        {
            let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
            ChatHistoryHandler::new(db).handle(&events[..2]).await;
        }
        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        ChatHistoryHandler::new(db.clone())
            .handle(&events[2..])
            .await;
        let (role, text) = &texts(&db)[0];
        assert_eq!((role.as_str(), text.as_str()), ("assistant", "half way"));
    }

    #[tokio::test]
    async fn search_finds_words_and_refuses_bad_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        let events = numbered(vec![input("the quick brown fox"), input("lazy dog")]);
        ChatHistoryHandler::new(db.clone()).handle(&events).await;
        let found = db.search("quick", 10).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["text"], "the quick brown fox");
        assert!(found[0]["snippet"].as_str().unwrap().contains("[quick]"));
        for bad in ["\"unterminated", "AND", "nope:word", "(("] {
            assert!(
                matches!(db.search(bad, 10), Err(HistoryError::BadQuery(_))),
                "{bad}"
            );
        }
    }

    /// The index rows of `word` and FTS5's own check that the index
    /// matches the messages.
    fn indexed(dir: &Path, word: &str) -> i64 {
        let conn = Connection::open(dir.join(FILE_NAME)).unwrap();
        conn.execute(
            "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
        conn.query_row(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
            [word],
            |row| row.get(0),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_database_the_old_trigger_indexed_is_indexed_once_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        drop(ChatHistory::open(dir.path()).unwrap());
        // What an older vibesd left: its trigger, and a message it indexed.
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
                 INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
             END;
             INSERT INTO sessions (id, first_seen, last_seen) VALUES ('s1', 't', 't');
             INSERT INTO messages (session_id, log_offset, role, text, meta, timestamp)
                 VALUES ('s1', 0, 'user', 'an older walrus', '{}', 't');
             INSERT INTO meta (key, value) VALUES ('applied_offset', 0);",
        )
        .unwrap();
        drop(conn);
        assert_eq!(indexed(dir.path(), "walrus"), 1);

        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        let events = numbered(vec![
            input("ignored: offset 0 is applied"),
            input("a newer walrus"),
        ]);
        assert_eq!(
            ChatHistoryHandler::new(db.clone()).handle(&events).await,
            Handled::All
        );
        assert_eq!(
            indexed(dir.path(), "walrus"),
            2,
            "each message indexed once"
        );
        assert_eq!(db.search("walrus", 10).unwrap().len(), 2);
        let triggers: i64 = Connection::open(dir.path().join(FILE_NAME))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(
            triggers, 0,
            "the old trigger would index every new message twice"
        );
    }

    #[tokio::test]
    async fn a_session_seen_many_times_in_a_batch_keeps_its_first_and_last_times() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        let base = chrono::DateTime::from_timestamp_millis(1_000_000_000_000).unwrap();
        let events: Vec<StoredEvent> = (0..3)
            .map(|n| {
                let mut event = input(&format!("m{n}"));
                event.timestamp = base + chrono::Duration::seconds(n);
                event
            })
            .collect();
        let (first, last) = (timestamp(&events[0]), timestamp(&events[2]));
        ChatHistoryHandler::new(db.clone())
            .handle(&numbered(events))
            .await;
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let seen: (String, String) = conn
            .query_row(
                "SELECT first_seen, last_seen FROM sessions WHERE id = 's1'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(seen, (first, last));
        assert_eq!(indexed(dir.path(), "m2"), 1);
    }

    #[tokio::test]
    async fn pages_go_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(ChatHistory::open(dir.path()).unwrap());
        let events = numbered((0..5).map(|n| input(&format!("m{n}"))).collect());
        ChatHistoryHandler::new(db.clone()).handle(&events).await;
        let (page, next) = db.messages("s1", None, 2).unwrap().unwrap();
        assert_eq!(page[0]["text"], "m4");
        assert_eq!(page[1]["text"], "m3");
        let (page, next) = db.messages("s1", next, 2).unwrap().unwrap();
        assert_eq!(page[1]["text"], "m1");
        let (page, next) = db.messages("s1", next, 2).unwrap().unwrap();
        assert_eq!((page.len(), next), (1, None));
        assert!(db.messages("nobody", None, 2).unwrap().is_none());
    }
}
