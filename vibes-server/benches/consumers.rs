//! What chat-history and the session transcripts cost over reading the
//! log, next to raw SQLite doing their storage work: figures, not pass/fail.
//!
//! Writes the synthetic stream of the assessment benchmark
//! (`VIBES_BENCH_EVENTS`, default 200,000 events over 200 sessions) to a
//! real embedded log in a temporary directory, then, in the same run, for
//! each batch size a group may poll (100, the default, and 1000):
//!
//! - read + decode: every batch read and every event decoded;
//! - chat-history: the same, each batch handed to its handler over a fresh
//!   database (one transaction per batch, `synchronous=FULL`, as in vibesd);
//! - raw FTS5: the message rows chat-history derived, inserted into a fresh
//!   database with the same tables the plain way: prepared statements, one
//!   transaction per batch of the log, `synchronous=FULL`, the FTS5 index
//!   written directly rather than by a trigger;
//! - session-collector: each batch handed to the transcripts' handler.
//!
//! Run: `cargo bench -p vibes-server --bench consumers`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use vibes_server::consumers::chat_history::{ChatHistory, ChatHistoryHandler, FILE_NAME};
use vibes_server::consumers::sessions::{Collector, SessionCollector};

#[path = "../../plugins/vibes-groove/benches/stream/mod.rs"]
mod stream;
use stream::{SESSIONS, filled_log, read_through as run, thousands};

/// A message row as chat-history stores it.
struct Row {
    session_id: String,
    log_offset: i64,
    role: String,
    text: String,
    meta: String,
    timestamp: String,
}

fn rows_of(db: &Path) -> Vec<Row> {
    let conn = Connection::open(db).expect("open chat-history");
    let mut statement = conn
        .prepare(
            "SELECT session_id, log_offset, role, text, meta, timestamp FROM messages ORDER BY id",
        )
        .expect("prepare");
    statement
        .query_map([], |row| {
            Ok(Row {
                session_id: row.get(0)?,
                log_offset: row.get(1)?,
                role: row.get(2)?,
                text: row.get(3)?,
                meta: row.get(4)?,
                timestamp: row.get(5)?,
            })
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The rows inserted the plain way, one transaction per `batch` events of
/// the log; answers the log's events per second.
fn raw_fts5(dir: &Path, rows: &[Row], total: u64, batch: usize) -> f64 {
    let mut conn = Connection::open(dir.join("raw.sqlite")).expect("open");
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .expect("wal");
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE messages (
             id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
             log_offset INTEGER NOT NULL UNIQUE, role TEXT NOT NULL, text TEXT NOT NULL,
             meta TEXT NOT NULL, timestamp TEXT NOT NULL);
         CREATE INDEX messages_by_session ON messages (session_id, id);
         CREATE VIRTUAL TABLE messages_fts USING fts5 (text, content = 'messages', content_rowid = 'id');",
    )
    .expect("schema");
    let started = Instant::now();
    let mut rest = rows;
    let mut from = 0u64;
    while from < total {
        let end = (from + batch as u64) as i64;
        let split = rest.partition_point(|row| row.log_offset < end);
        let (now, later) = rest.split_at(split);
        let tx = conn.transaction().expect("begin");
        {
            let mut message = tx
                .prepare_cached(
                    "INSERT INTO messages (session_id, log_offset, role, text, meta, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .expect("prepare");
            let mut fts = tx
                .prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")
                .expect("prepare");
            for row in now {
                let id = message
                    .insert(params![
                        row.session_id,
                        row.log_offset,
                        row.role,
                        row.text,
                        row.meta,
                        row.timestamp
                    ])
                    .expect("insert");
                fts.execute(params![id, row.text]).expect("index");
            }
        }
        tx.commit().expect("commit");
        rest = later;
        from += batch as u64;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let (total, log, _dir) = filled_log().await;
        println!("{total} events over {SESSIONS} sessions in an embedded log");
        let total = total as u64;
        // Once to warm the page cache, so every row reads the same way.
        run(&log, total, 1000, None).await;

        let mut table = Vec::new();
        for batch in [100, 1000] {
            let decode = run(&log, total, batch, None).await;

            let history_dir = tempfile::tempdir().expect("temp dir");
            let history = Arc::new(ChatHistory::open(history_dir.path()).expect("open"));
            let mut handler = ChatHistoryHandler::new(history.clone());
            let chat = run(&log, total, batch, Some(&mut handler)).await;
            drop(handler);
            drop(history);
            let rows = rows_of(&history_dir.path().join(FILE_NAME));
            let raw_dir = tempfile::tempdir().expect("temp dir");
            let raw = raw_fts5(raw_dir.path(), &rows, total, batch);

            let sessions_dir = tempfile::tempdir().expect("temp dir");
            let collector = Arc::new(
                Collector::open(sessions_dir.path(), Duration::from_secs(600)).expect("open"),
            );
            let mut handler = SessionCollector::new(collector);
            let sessions = run(&log, total, batch, Some(&mut handler)).await;
            table.push((batch, decode, chat, raw, rows.len(), sessions));
        }

        println!();
        println!(
            "| batch | read + decode | chat-history  | raw FTS5      | ratio | rows    | session-collector | ratio to decode |"
        );
        println!(
            "|-------|---------------|---------------|---------------|-------|---------|-------------------|-----------------|"
        );
        for (batch, decode, chat, raw, rows, sessions) in table {
            println!(
                "| {batch:>5} | {:>13} | {:>13} | {:>13} | {:>4.2}x | {rows:>7} | {:>17} | {:>14.2}x |",
                thousands(decode),
                thousands(chat),
                thousands(raw),
                chat / raw,
                thousands(sessions),
                sessions / decode,
            );
        }
        println!();
        println!("events per second; ratio: chat-history / raw FTS5 of the same rows");
    });
}
