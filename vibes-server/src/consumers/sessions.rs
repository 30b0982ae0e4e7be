//! The `session-collector` group: one transcript file per session,
//! `<data_dir>/transcripts/<session_id>.jsonl`, one line per event
//! (`{"offset","event_id","timestamp","event"}`) in offset order.
//!
//! The events of an open session are kept in memory and written when the
//! session ends (`session_removed`, or a `SessionEnd` hook) or goes idle
//! (no event for `idle_timeout`, by the events' timestamps; a timer owned
//! by the handler checks every fraction of that window). The handler
//! commits only up to the oldest event still buffered
//! ([`Handled::UpTo`]), so after a crash the log delivers every buffered
//! event again and the buffers rebuild themselves.
//!
//! Writing a transcript merges the file already on disk with the buffer by
//! offset and replaces the file atomically (temporary file, fsync, rename):
//! writing the same events twice gives the same file, so re-deliveries
//! never duplicate a line, and a session that comes back after going idle
//! gets its new events added to the old ones.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use vibes_core::{Delivery, Handled, Handler, StoredEvent, VibesEvent};

/// How long a session may go without events before its transcript is
/// written, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Why the transcripts directory could not be used.
#[derive(Debug, thiserror::Error)]
#[error("transcripts directory {path}: {source}")]
pub struct CollectorError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
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

/// What is known of a transcript on disk.
#[derive(Debug, Clone, PartialEq)]
struct FileSummary {
    events: usize,
    first: Option<String>,
    last: Option<String>,
    /// Every event of the session up to this offset is in the file.
    last_offset: u64,
    /// `session_removed`, `session_end` or `idle`.
    closed_by: &'static str,
}

/// A session as `GET /api/sessions` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    /// `open` (events in memory) or `closed` (all written).
    pub state: &'static str,
    /// Why it was last written: `session_removed`, `session_end`, `idle`.
    pub closed_by: Option<&'static str>,
    pub events: usize,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
}

#[derive(Debug, Default)]
struct CollectorState {
    /// Buffered events of open sessions, in offset order. Owned by the
    /// current handler: emptied when a new one starts, since the log
    /// delivers these events again.
    open: HashMap<String, Vec<Delivery>>,
    /// The transcripts on disk; lives as long as the daemon.
    files: BTreeMap<String, FileSummary>,
}

/// The collector's state, shared by the group's handler and the API.
#[derive(Debug)]
pub struct Collector {
    dir: PathBuf,
    idle_timeout: Duration,
    state: Mutex<CollectorState>,
}

impl Collector {
    /// Opens `<data_dir>/transcripts`, reading what the files there hold.
    pub fn open(data_dir: &Path, idle_timeout: Duration) -> Result<Self, CollectorError> {
        let dir = data_dir.join("transcripts");
        let failed = |source| CollectorError {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(failed)? {
            let path = entry.map_err(failed)?.path();
            let Some(id) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".jsonl"))
                .filter(|id| valid_session_id(id))
            else {
                continue;
            };
            match read_lines(&path) {
                Ok(lines) => {
                    if let Some(summary) = summarize(&lines) {
                        files.insert(id.to_owned(), summary);
                    }
                }
                Err(err) => tracing::warn!(path = %path.display(), "unreadable transcript: {err}"),
            }
        }
        Ok(Self {
            dir,
            idle_timeout,
            state: Mutex::new(CollectorState {
                open: HashMap::new(),
                files,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CollectorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.jsonl"))
    }

    /// Forgets the buffers of a handler that is gone.
    fn reset(&self) {
        self.lock().open.clear();
    }

    /// Buffers a batch, writes the sessions it ends, and says how far the
    /// group may commit.
    fn apply(&self, batch: &[Delivery]) -> Handled {
        let mut state = self.lock();
        for (offset, stored) in batch {
            let Some(session) = stored.event.session_id() else {
                continue;
            };
            if !valid_session_id(session) {
                tracing::warn!(
                    offset,
                    session_id = session,
                    "session-collector: a session id that cannot name a file; no transcript"
                );
                continue;
            }
            let session = session.to_owned();
            let buffer = state.open.entry(session.clone()).or_default();
            // A re-delivery within one handler's life (a retried batch).
            if buffer.last().is_some_and(|(last, _)| last >= offset) {
                continue;
            }
            buffer.push((*offset, stored.clone()));
            if closing(&stored.event).is_some() {
                self.write(&mut state, &session);
            }
        }
        match state
            .open
            .values()
            .filter_map(|buffer| buffer.first().map(|(offset, _)| *offset))
            .min()
        {
            None => Handled::All,
            Some(oldest) => Handled::UpTo(oldest.checked_sub(1)),
        }
    }

    /// Writes every session whose last event is older than the idle
    /// timeout, as of `now`.
    pub fn flush_idle(&self, now: chrono::DateTime<chrono::Utc>) {
        let window = chrono::Duration::from_std(self.idle_timeout).unwrap_or(chrono::Duration::MAX);
        let mut state = self.lock();
        let idle: Vec<String> = state
            .open
            .iter()
            .filter(|(_, buffer)| {
                buffer
                    .last()
                    .is_some_and(|(_, last)| now - last.timestamp >= window)
            })
            .map(|(session, _)| session.clone())
            .collect();
        for session in idle {
            self.write(&mut state, &session);
        }
    }

    /// Merges a session's buffer into its file; on failure the buffer stays
    /// (and keeps the group's commit behind it) for the next try.
    fn write(&self, state: &mut CollectorState, session: &str) {
        let Some(buffer) = state.open.remove(session) else {
            return;
        };
        let path = self.path(session);
        match merge_into_file(&path, &buffer) {
            Ok(summary) => {
                state.files.insert(session.to_owned(), summary);
            }
            Err(err) => {
                tracing::error!(path = %path.display(), "cannot write transcript: {err}");
                state.open.insert(session.to_owned(), buffer);
            }
        }
    }

    /// Every session known, open ones first by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let state = self.lock();
        let mut ids: Vec<&String> = state.open.keys().chain(state.files.keys()).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let file = state.files.get(id);
                match state.open.get(id) {
                    Some(buffer) => {
                        let new: Vec<&Delivery> = buffer
                            .iter()
                            .filter(|(offset, _)| file.is_none_or(|f| *offset > f.last_offset))
                            .collect();
                        let stamp = |d: &&Delivery| timestamp(&d.1);
                        SessionInfo {
                            session_id: id.clone(),
                            state: "open",
                            closed_by: None,
                            events: file.map_or(0, |f| f.events) + new.len(),
                            first_timestamp: file
                                .and_then(|f| f.first.clone())
                                .or_else(|| new.first().map(stamp)),
                            last_timestamp: new
                                .last()
                                .map(stamp)
                                .or_else(|| file.and_then(|f| f.last.clone())),
                        }
                    }
                    None => {
                        let file = file.cloned().unwrap_or(FileSummary {
                            events: 0,
                            first: None,
                            last: None,
                            last_offset: 0,
                            closed_by: "idle",
                        });
                        SessionInfo {
                            session_id: id.clone(),
                            state: "closed",
                            closed_by: Some(file.closed_by),
                            events: file.events,
                            first_timestamp: file.first,
                            last_timestamp: file.last,
                        }
                    }
                }
            })
            .collect()
    }

    /// A session's transcript as JSON lines: the file merged with what is
    /// buffered; `None` for a session never seen.
    pub fn transcript(&self, session_id: &str) -> Result<Option<String>, std::io::Error> {
        if !valid_session_id(session_id) {
            return Ok(None);
        }
        let state = self.lock();
        let buffer = state.open.get(session_id);
        if buffer.is_none() && !state.files.contains_key(session_id) {
            return Ok(None);
        }
        let lines = merged(
            &self.path(session_id),
            buffer.map_or(&[][..], Vec::as_slice),
        )?;
        Ok(Some(render(&lines)))
    }
}

/// Why a session ends with this event, if it does.
fn closing(event: &VibesEvent) -> Option<&'static str> {
    match event {
        VibesEvent::SessionRemoved { .. } => Some("session_removed"),
        VibesEvent::Hook { event, .. } if event.hook_event_name == "SessionEnd" => {
            Some("session_end")
        }
        _ => None,
    }
}

fn timestamp(stored: &StoredEvent) -> String {
    stored
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn line(offset: u64, stored: &StoredEvent) -> Value {
    json!({
        "offset": offset,
        "event_id": stored.event_id,
        "timestamp": timestamp(stored),
        "event": stored.event,
    })
}

/// The lines of a transcript by offset; an absent file has none.
fn read_lines(path: &Path) -> Result<BTreeMap<u64, Value>, std::io::Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(err),
    };
    let mut lines = BTreeMap::new();
    for raw in text.lines().filter(|raw| !raw.trim().is_empty()) {
        let value: Value = serde_json::from_str(raw)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
        let offset = value["offset"].as_u64().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a line without an offset")
        })?;
        lines.insert(offset, value);
    }
    Ok(lines)
}

fn merged(path: &Path, buffer: &[Delivery]) -> Result<BTreeMap<u64, Value>, std::io::Error> {
    let mut lines = read_lines(path)?;
    for (offset, stored) in buffer {
        lines.insert(*offset, line(*offset, stored));
    }
    Ok(lines)
}

fn render(lines: &BTreeMap<u64, Value>) -> String {
    let mut text = String::new();
    for value in lines.values() {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    text
}

fn summarize(lines: &BTreeMap<u64, Value>) -> Option<FileSummary> {
    let (&last_offset, last) = lines.last_key_value()?;
    let text = |value: &Value| value["timestamp"].as_str().map(str::to_owned);
    let closed_by = match &last["event"] {
        event if event["type"] == "session_removed" => "session_removed",
        event if event["type"] == "hook" && event["event"]["hook_event_name"] == "SessionEnd" => {
            "session_end"
        }
        _ => "idle",
    };
    Some(FileSummary {
        events: lines.len(),
        first: lines.first_key_value().and_then(|(_, first)| text(first)),
        last: text(last),
        last_offset,
        closed_by,
    })
}

/// Merges `buffer` into the transcript at `path`, replacing it atomically.
fn merge_into_file(path: &Path, buffer: &[Delivery]) -> Result<FileSummary, std::io::Error> {
    let lines = merged(path, buffer)?;
    let temporary = path.with_extension("jsonl.tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(render(&lines).as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    summarize(&lines).ok_or_else(|| std::io::Error::other("an empty transcript"))
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
    /// A new handler: the buffers of any previous one are dropped, since
    /// the group resumes at its committed offset, before all of them.
    pub fn new(collector: Arc<Collector>) -> Self {
        collector.reset();
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
                    let flushed = tokio::task::spawn_blocking(move || {
                        collector.flush_idle(chrono::Utc::now());
                    })
                    .await;
                    if let Err(err) = flushed {
                        tracing::error!("session-collector idle check failed: {err}");
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
        let collector = self.collector.clone();
        let owned = batch.to_vec();
        match tokio::task::spawn_blocking(move || collector.apply(&owned)).await {
            Ok(handled) => handled,
            Err(join) => Handled::Failed {
                offset: batch.first().map(|(offset, _)| *offset).unwrap_or_default(),
                error: format!("session-collector handler panicked: {join}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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

    #[tokio::test]
    async fn commits_stop_before_the_oldest_open_session() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap());
        let mut handler = SessionCollector::new(collector.clone());
        let batch = vec![
            (0, input("a", "1")),
            (1, input("b", "1")),
            (2, removed("a")),
        ];
        assert_eq!(handler.handle(&batch).await, Handled::UpTo(Some(0)));
        let written = std::fs::read_to_string(dir.path().join("transcripts/a.jsonl")).unwrap();
        assert_eq!(offsets(&written), [0, 2]);
        assert_eq!(handler.handle(&[(3, removed("b"))]).await, Handled::All);
        let sessions = collector.sessions();
        assert_eq!(sessions.len(), 2);
        assert!(
            sessions
                .iter()
                .all(|s| s.state == "closed" && s.events == 2)
        );
    }

    #[tokio::test]
    async fn redelivery_after_a_crash_rewrites_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap());
        let batch = vec![
            (0, input("a", "1")),
            (1, input("b", "1")),
            (2, input("a", "2")),
            (3, removed("a")),
        ];
        let mut handler = SessionCollector::new(collector.clone());
        assert_eq!(handler.handle(&batch).await, Handled::UpTo(Some(0)));
        let first = std::fs::read_to_string(dir.path().join("transcripts/a.jsonl")).unwrap();
        // A crash: a new handler gets at least everything after offset 0 again.
        drop(handler);
        let mut handler = SessionCollector::new(collector.clone());
        handler.handle(&batch).await;
        let again = std::fs::read_to_string(dir.path().join("transcripts/a.jsonl")).unwrap();
        assert_eq!(first, again);
        assert_eq!(offsets(&again), [0, 2, 3]);
        // And after a daemon restart, the index comes from the files.
        let reopened = Collector::open(dir.path(), DEFAULT_IDLE_TIMEOUT).unwrap();
        assert_eq!(reopened.sessions()[0].events, 3);
        assert_eq!(reopened.sessions()[0].closed_by, Some("session_removed"));
    }

    #[tokio::test]
    async fn an_idle_session_is_written_and_can_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let collector = Arc::new(Collector::open(dir.path(), Duration::from_secs(60)).unwrap());
        let mut handler = SessionCollector::new(collector.clone());
        handler.handle(&[(0, input("a", "1"))]).await;
        collector.flush_idle(chrono::Utc::now());
        assert_eq!(collector.sessions()[0].state, "open");
        collector.flush_idle(chrono::Utc::now() + chrono::Duration::seconds(61));
        assert_eq!(collector.sessions()[0].state, "closed");
        assert_eq!(
            handler.handle(&[(1, input("a", "2"))]).await,
            Handled::UpTo(Some(0))
        );
        assert_eq!(collector.sessions()[0].events, 2);
        handler.handle(&[(2, removed("a"))]).await;
        let text = collector.transcript("a").unwrap().unwrap();
        assert_eq!(offsets(&text), [0, 1, 2]);
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
