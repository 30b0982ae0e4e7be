//! Reading the groove store: session summaries, timeline pages, totals,
//! a canonical dump of every row, and a session's state for a hook answer.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::{DUMP_TABLES, GrooveStore, RECORD_TABLES, applied_offset, decode_state, lock};
use crate::error::GrooveError;
use crate::record::{BreakerState, CheckpointTrigger, SignalKind};
use crate::session::SessionState;

/// A page of a session's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    /// The session's summary, as `GET /sessions` lists it.
    pub session: Value,
    /// Its records after the page's `after`, in offset order.
    pub records: Vec<Value>,
    /// The `after` of the next page; `None` on the last one.
    pub next_after: Option<u64>,
}

impl GrooveStore {
    /// Every session's summary, by id.
    pub fn sessions(&self) -> Result<Vec<Value>, GrooveError> {
        let conn = lock(&self.reader);
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sessions ORDER BY id"
        ))?;
        let rows = statement.query_map([], summary_json)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One page of a session's timeline: its records with an offset above
    /// `after`, at most `limit` (and never an event's records split across
    /// pages, unless one event alone has more than `limit`). `None` if the
    /// session is unknown.
    pub fn timeline(
        &self,
        session_id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<TimelinePage>, GrooveError> {
        let limit = limit.max(1);
        let conn = lock(&self.reader);
        let session = conn
            .query_row(
                &format!("SELECT {SUMMARY_COLUMNS} FROM sessions WHERE id = ?1"),
                [session_id],
                summary_json,
            )
            .optional()?;
        let Some(session) = session else {
            return Ok(None);
        };
        let after = after.map_or(-1, |after| after as i64);
        let mut rows: Vec<(u64, i64, &'static str, String)> = Vec::new();
        for (table, _) in RECORD_TABLES {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT log_offset, seq, body FROM {table}
                 WHERE session_id = ?1 AND log_offset > ?2
                 ORDER BY log_offset, seq LIMIT ?3"
            ))?;
            let found =
                statement.query_map(params![session_id, after, limit as i64 + 1], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, i64>(1)?,
                        record_type(table),
                        row.get::<_, String>(2)?,
                    ))
                })?;
            for row in found {
                rows.push(row?);
            }
        }
        rows.sort_by_key(|row| (row.0, row.1));
        let next_after = if rows.len() > limit {
            // Every table's rows below the first one left out were all read
            // (each read `limit + 1`), so those offsets are complete.
            let cut = rows[limit].0;
            rows.retain(|row| row.0 < cut);
            if rows.is_empty() {
                // One event with more than `limit` records: all of them.
                rows = event_records(&conn, session_id, cut)?;
            }
            rows.last().map(|row| row.0)
        } else {
            None
        };
        let records = rows
            .into_iter()
            .map(|(_, _, kind, body)| timeline_json(kind, &body))
            .collect();
        Ok(Some(TimelinePage {
            session,
            records,
            next_after,
        }))
    }

    /// Signals by kind, sessions by breaker state, checkpoints by trigger,
    /// transitions by the state entered, interventions, and the applied
    /// offset.
    pub fn totals(&self) -> Result<Value, GrooveError> {
        let conn = lock(&self.reader);
        let mut signals: Map<String, Value> = SignalKind::ALL
            .iter()
            .map(|kind| (kind.as_str().to_owned(), json!(0)))
            .collect();
        let mut checkpoints: Map<String, Value> = CheckpointTrigger::ALL
            .iter()
            .map(|trigger| (trigger.as_str().to_owned(), json!(0)))
            .collect();
        let mut transitions: Map<String, Value> = BreakerState::ALL
            .iter()
            .map(|state| (state.as_str().to_owned(), json!(0)))
            .collect();
        let mut breakers = transitions.clone();
        let mut interventions = 0i64;
        let mut statement = conn.prepare_cached("SELECT category, key, count FROM totals")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (category, key, count) = row?;
            match category.as_str() {
                "signal" => {
                    signals.insert(key, json!(count));
                }
                "checkpoint" => {
                    checkpoints.insert(key, json!(count));
                }
                "transition" => {
                    transitions.insert(key, json!(count));
                }
                "intervention" => interventions += count,
                _ => {}
            }
        }
        let mut statement =
            conn.prepare_cached("SELECT breaker, count(*) FROM sessions GROUP BY breaker")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        let mut sessions = 0;
        for row in rows {
            let (state, count) = row?;
            sessions += count;
            breakers.insert(state, json!(count));
        }
        Ok(json!({
            "applied_offset": applied_offset(&conn)?,
            "sessions": sessions,
            "signals": signals,
            "breakers": breakers,
            "checkpoints": checkpoints,
            "transitions": transitions,
            "interventions": interventions,
        }))
    }

    /// Every row of every table (with its rowid where it has one), one line
    /// each, tables and rows in a fixed order: two stores derived from the
    /// same log give the same dump.
    pub fn dump(&self) -> Result<Vec<String>, GrooveError> {
        let conn = lock(&self.reader);
        let mut lines = Vec::new();
        for (table, order, rowid) in DUMP_TABLES {
            let columns = if rowid { "rowid, *" } else { "*" };
            let mut statement =
                conn.prepare(&format!("SELECT {columns} FROM {table} ORDER BY {order}"))?;
            let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let mut line = format!("{table}:");
                for (i, name) in names.iter().enumerate() {
                    let _ = write!(line, " {name}=");
                    match row.get_ref(i)? {
                        ValueRef::Null => line.push_str("NULL"),
                        ValueRef::Integer(n) => {
                            let _ = write!(line, "{n}");
                        }
                        // Bits, so that a last-digit difference shows.
                        ValueRef::Real(x) => {
                            let _ = write!(line, "{x:?}/{:016x}", x.to_bits());
                        }
                        ValueRef::Text(text) => {
                            let _ = write!(line, "{:?}", String::from_utf8_lossy(text));
                        }
                        ValueRef::Blob(blob) => {
                            let _ = write!(line, "blob{blob:?}");
                        }
                    }
                }
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// A session's saved state, for a hook answer: one indexed read on the
    /// hooks' own connection.
    pub(crate) fn session_state(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionState>, GrooveError> {
        let conn = lock(&self.hooks);
        let body: Option<String> = conn
            .prepare_cached("SELECT state FROM sessions WHERE id = ?1")?
            .query_row([session_id], |row| row.get(0))
            .optional()?;
        body.map(|body| decode_state(session_id, &body)).transpose()
    }
}

fn record_type(table: &str) -> &'static str {
    match table {
        "signals" => "signal",
        "transitions" => "transition",
        "checkpoints" => "checkpoint",
        _ => "intervention",
    }
}

/// Every record of one event of a session.
fn event_records(
    conn: &Connection,
    session_id: &str,
    offset: u64,
) -> rusqlite::Result<Vec<(u64, i64, &'static str, String)>> {
    let mut rows = Vec::new();
    for (table, _) in RECORD_TABLES {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT seq, body FROM {table} WHERE session_id = ?1 AND log_offset = ?2"
        ))?;
        let found = statement.query_map(params![session_id, offset as i64], |row| {
            Ok((
                offset,
                row.get::<_, i64>(0)?,
                record_type(table),
                row.get(1)?,
            ))
        })?;
        for row in found {
            rows.push(row?);
        }
    }
    rows.sort_by_key(|row| row.1);
    Ok(rows)
}

fn timeline_json(kind: &str, body: &str) -> Value {
    let mut value = serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("type".into(), Value::String(kind.to_owned()));
    }
    value
}

const SUMMARY_COLUMNS: &str = "id, breaker, frustration, success, failure_score, interventions, \
     checkpoints, signals, events, first_offset, last_offset, last_time";

fn summary_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": row.get::<_, String>(0)?,
        "breaker": row.get::<_, String>(1)?,
        "frustration": row.get::<_, f64>(2)?,
        "success": row.get::<_, f64>(3)?,
        "failure_score": row.get::<_, f64>(4)?,
        "interventions": row.get::<_, i64>(5)?,
        "checkpoints": row.get::<_, i64>(6)?,
        "signals": row.get::<_, i64>(7)?,
        "events": row.get::<_, i64>(8)?,
        "first_offset": row.get::<_, i64>(9)?,
        "last_offset": row.get::<_, i64>(10)?,
        "last_time": row.get::<_, String>(11)?,
    }))
}
