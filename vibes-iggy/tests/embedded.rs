//! The conformance suite against the embedded (SQLite) backend, and what
//! only that backend promises: one process per file, a real file on disk.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::embedded::{EmbeddedLog, FILE_NAME};
use vibes_iggy::{EventLog, LogError, LogOptions, StartPosition};

use crate::conformance::Fixture;

/// A temporary data directory; every open opens the log in it anew.
struct EmbeddedFixture {
    dir: TempDir,
}

fn fixture() -> Option<EmbeddedFixture> {
    Some(EmbeddedFixture {
        dir: tempfile::tempdir().unwrap(),
    })
}

#[async_trait]
impl Fixture for EmbeddedFixture {
    async fn open(&self, options: LogOptions) -> Arc<dyn EventLog> {
        // The previous open may still be closing on another thread (its
        // last blocking task holds the file lock); wait for it with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match EmbeddedLog::open(self.dir.path(), options) {
                Ok(log) => return Arc::new(log),
                Err(LogError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    tokio::task::yield_now().await;
                }
                Err(err) => panic!("open: {err}"),
            }
        }
    }

    async fn append_raw(&self, bytes: &[u8]) {
        // The schema exists once the log has been opened.
        drop(self.open(LogOptions::default()).await);
        // Another writer, straight into the same SQLite file.
        let conn = rusqlite::Connection::open(self.dir.path().join(FILE_NAME)).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute(
            "INSERT INTO events (log_offset, payload) \
             VALUES ((SELECT COALESCE(MAX(log_offset) + 1, 0) FROM events), ?1)",
            [bytes],
        )
        .unwrap();
    }
}

crate::conformance_suite!(fixture());

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap();
    let err = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[tokio::test]
async fn the_log_is_a_real_sqlite_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap();
    log.append(StoredEvent::new(VibesEvent::ClientConnected {
        client_id: "c".into(),
    }))
    .await
    .unwrap();
    let conn = rusqlite::Connection::open(log.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(FILE_NAME),
        b"these are not the bytes of a database",
    )
    .unwrap();
    let err = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(FILE_NAME), "{err}");
}

#[tokio::test]
async fn a_log_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("upgrade vibesd"), "{err}");
}

/// Set in the child process of [`acknowledged_appends_survive_kill_9`].
const CHILD_DIR: &str = "VIBES_TEST_KILL9_DIR";

/// kill -9 of a process in the middle of appending: every append it
/// acknowledged (printed) before it died is in the log after a reopen, at
/// the offset it was acknowledged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded::kill_9_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(acked) = line.strip_prefix("acked ") {
                let (offset, id) = acked.split_once(' ').unwrap();
                let _ = sender.send((offset.parse::<u64>().unwrap(), id.to_owned()));
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 300 {
        acked.push(
            receiver
                .recv_timeout(Duration::from_secs(60))
                .expect("child appends"),
        );
    }
    // SIGKILL: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    acked.extend(receiver.try_iter());

    let log = EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap();
    let high_water_mark = log.high_water_mark().await.unwrap();
    let stored = log.read(0, high_water_mark as usize).await.unwrap();
    for (offset, id) in &acked {
        let event = stored[*offset as usize].event().unwrap();
        assert_eq!(
            &event.event_id.to_string(),
            id,
            "event at acked offset {offset}"
        );
    }
    let group = log
        .consumer("after", StartPosition::Beginning)
        .await
        .unwrap();
    assert_eq!(group.position(), 0);
}

/// The appender that [`acknowledged_appends_survive_kill_9`] kills; does
/// nothing when run on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by acknowledged_appends_survive_kill_9 in a child process"]
async fn kill_9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let log = EmbeddedLog::open(dir.as_ref(), LogOptions::default()).unwrap();
    for i in 0.. {
        let batch: Vec<StoredEvent> = (0..(i % 5 + 1))
            .map(|j| {
                StoredEvent::new(VibesEvent::UserInput {
                    session_id: "s".into(),
                    content: format!("{i}.{j}"),
                    source: "kill-9".into(),
                })
            })
            .collect();
        let range = log.append_batch(batch.clone()).await.unwrap();
        for (offset, event) in range.zip(&batch) {
            println!("acked {offset} {}", event.event_id);
        }
    }
}
