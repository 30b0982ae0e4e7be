//! The embedded backend against plain `rusqlite` doing the same work on the
//! same kind of file (WAL, `synchronous=FULL`, one transaction per batch).

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};
use vibes_core::StoredEvent;
use vibes_iggy::embedded::EmbeddedLog;
use vibes_iggy::memory::MemoryLog;
use vibes_iggy::{EventLog, LogOptions};

use crate::{
    APPEND_WORKLOAD, CATCH_UP_BATCH, Records, Row, Workload, append_all, batches, catch_up, events,
    generic_decode, paired, timed,
};

pub(crate) async fn run(workload: &Workload) -> Vec<Row> {
    let mut rows = Vec::new();
    for (batch, count) in APPEND_WORKLOAD {
        let events = &events(count);
        let (raw, ours) = paired(
            move || async move {
                let dir = tempfile::tempdir().expect("temp dir");
                let mut conn = raw_connection(dir.path());
                timed(count, async { raw_append(&mut conn, events, batch) }).await
            },
            move || async move {
                let dir = tempfile::tempdir().expect("temp dir");
                let log = EmbeddedLog::open(dir.path(), LogOptions::default()).expect("open");
                let prepared = batches(events, batch);
                timed(count, async {
                    append_all(&log, prepared).await.expect("append");
                })
                .await
            },
        )
        .await;
        rows.push(report(Row {
            backend: "embedded",
            what: format!("append_batch({batch})"),
            events_per_sec: ours,
            raw_events_per_sec: Some(raw),
        }));
    }

    let total = workload.catch_up_events;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = &EmbeddedLog::open(dir.path(), LogOptions::default()).expect("open");
    append_all(log, batches(&events(total), 1000))
        .await
        .expect("fill");
    // The very file the embedded log wrote, read with plain SQL.
    let conn = &Connection::open(log.path()).expect("open events file");
    raw_connection_setup(conn);
    for records in [Records::Forwarded, Records::Decoded] {
        let (raw, ours) = paired(
            move || async move { timed(total, async { raw_catch_up(conn, total, records) }).await },
            move || async move {
                timed(total, async {
                    catch_up(log, total as u64, records)
                        .await
                        .expect("catch up");
                })
                .await
            },
        )
        .await;
        rows.push(report(Row {
            backend: "embedded",
            what: records.what(total),
            events_per_sec: ours,
            raw_events_per_sec: Some(raw),
        }));
    }

    // The memory backend has no raw counterpart: it is the floor of what
    // the contract itself costs (encoding, decoding, bookkeeping).
    let (batch, count) = APPEND_WORKLOAD[2];
    let log: Arc<dyn EventLog> = Arc::new(MemoryLog::new(LogOptions::default()));
    let small = crate::events(count);
    let prepared = batches(&small, batch);
    let appended = timed(count, async {
        append_all(&*log, prepared).await.expect("append");
    })
    .await;
    rows.push(report(Row {
        backend: "memory",
        what: format!("append_batch({batch})"),
        events_per_sec: appended,
        raw_events_per_sec: None,
    }));
    for records in [Records::Forwarded, Records::Decoded] {
        let caught_up = timed(count, async {
            catch_up(&*log, count as u64, records)
                .await
                .expect("catch up");
        })
        .await;
        rows.push(report(Row {
            backend: "memory",
            what: records.what(count),
            events_per_sec: caught_up,
            raw_events_per_sec: None,
        }));
    }
    rows
}

fn report(row: Row) -> Row {
    row.print();
    row
}

/// The same file set-up the embedded backend uses.
fn raw_connection(dir: &Path) -> Connection {
    let conn = Connection::open(dir.join("raw.sqlite")).expect("open raw sqlite");
    raw_connection_setup(&conn);
    conn
}

/// WAL, `synchronous=FULL` and the raw tables, on any connection.
fn raw_connection_setup(conn: &Connection) {
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS raw_events (log_offset INTEGER PRIMARY KEY, payload BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS raw_offsets (group_name TEXT PRIMARY KEY, committed INTEGER);",
    )
    .expect("schema");
}

/// Plain inserts of the events as JSON, one transaction per batch.
fn raw_append(conn: &mut Connection, events: &[StoredEvent], batch: usize) {
    let mut offset = 0i64;
    for chunk in events.chunks(batch) {
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO raw_events (log_offset, payload) VALUES (?1, ?2)")
                .expect("prepare");
            for event in chunk {
                let bytes = serde_json::to_vec(event).expect("encode");
                insert.execute(params![offset, bytes]).expect("insert");
                offset += 1;
            }
        }
        tx.commit().expect("commit");
    }
}

/// Plain range reads of the rows the embedded log wrote, with an offset
/// update after each batch (`synchronous=NORMAL`, as the log commits
/// offsets): the storage work of catch-up; with [`Records::Decoded`], each
/// row also decoded generically.
fn raw_catch_up(conn: &Connection, total: usize, records: Records) {
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("normal");
    let mut select = conn
        .prepare("SELECT log_offset, payload FROM events WHERE log_offset >= ?1 ORDER BY log_offset LIMIT ?2")
        .expect("prepare");
    let mut commit = conn
        .prepare(
            "INSERT INTO raw_offsets (group_name, committed) VALUES ('raw', ?1) \
             ON CONFLICT (group_name) DO UPDATE SET committed = excluded.committed",
        )
        .expect("prepare");
    let mut next = 0i64;
    let mut bytes = 0usize;
    while (next as usize) < total {
        let mut rows = select
            .query(params![next, CATCH_UP_BATCH as i64])
            .expect("select");
        while let Some(row) = rows.next().expect("row") {
            next = row.get::<_, i64>(0).expect("offset") + 1;
            let payload = row.get_ref(1).expect("payload").as_blob().expect("blob");
            if records == Records::Decoded {
                generic_decode(payload);
            }
            bytes += payload.len();
        }
        commit.execute([next - 1]).expect("commit");
    }
    assert!(bytes > 0);
}
