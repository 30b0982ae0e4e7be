//! Transcript files of the session-collector: appending a batch's lines
//! from a session's applied length, and reading (once) a transcript
//! written before the index existed.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vibes_core::{Delivery, StoredEvent, VibesEvent};

/// One session's row of the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Entry {
    pub(super) events: u64,
    pub(super) first: String,
    pub(super) last: String,
    pub(super) last_micros: i64,
    /// Every event of the session up to this offset is in the file.
    pub(super) last_offset: Option<u64>,
    /// The file's applied length.
    pub(super) file_len: u64,
    pub(super) closed_by: Option<&'static str>,
}

/// One transcript line, serialized straight from the event.
#[derive(Serialize)]
pub(super) struct Line<'a> {
    pub(super) offset: u64,
    pub(super) event_id: &'a uuid::Uuid,
    pub(super) timestamp: String,
    pub(super) event: &'a VibesEvent,
}

/// What an import reads of a line written before the index existed.
#[derive(Deserialize)]
struct LineHead {
    offset: u64,
    timestamp: String,
    event: Value,
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

/// [`closing`] for an event read back from a transcript line.
fn closing_json(event: &Value) -> Option<&'static str> {
    if event["type"] == "session_removed" {
        Some("session_removed")
    } else if event["type"] == "hook" && event["event"]["hook_event_name"] == "SessionEnd" {
        Some("session_end")
    } else {
        None
    }
}

pub(super) fn timestamp(stored: &StoredEvent) -> String {
    stored
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Appends `new` (offset order, all past `entry.last_offset`) to the
/// transcript at `path` from its applied length, fsyncs it, and returns
/// the session's entry once these lines are in.
pub(super) fn append(path: &Path, mut entry: Entry, new: &[&Delivery]) -> std::io::Result<Entry> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > entry.file_len {
        // A torn line, or lines whose index update a crash lost: they come
        // again in this delivery.
        file.set_len(entry.file_len)?;
    } else if len < entry.file_len {
        tracing::warn!(
            path = %path.display(),
            "transcript shorter than its index ({len} of {} bytes): it was cut outside vibesd; appending after what is left",
            entry.file_len
        );
        entry.file_len = len;
    }
    file.seek(SeekFrom::Start(entry.file_len))?;
    let mut out = BufWriter::with_capacity(64 * 1024, &mut file);
    for (offset, stored) in new {
        serde_json::to_writer(
            &mut out,
            &Line {
                offset: *offset,
                event_id: &stored.event_id,
                timestamp: timestamp(stored),
                event: &stored.event,
            },
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    file.sync_data()?;
    if entry.events == 0 {
        // A new file's name is durable once its directory is synced.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    let (first, last) = (new[0], new[new.len() - 1]);
    if entry.events == 0 {
        entry.first = timestamp(&first.1);
    }
    entry.events += new.len() as u64;
    entry.last = timestamp(&last.1);
    entry.last_micros = last.1.timestamp.timestamp_micros();
    entry.last_offset = Some(last.0);
    entry.file_len = file.stream_position()?;
    entry.closed_by = closing(&last.1.event);
    Ok(entry)
}

/// Reads a transcript written before the index existed, line by line, and
/// cuts off a torn last line. `None` for an empty file.
pub(super) fn import_file(path: &Path) -> std::io::Result<Option<Entry>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut reader = BufReader::new(&file);
    let mut entry = Entry::default();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let read = reader.read_until(b'\n', &mut raw)?;
        if read == 0 {
            break;
        }
        let parsed = raw
            .ends_with(b"\n")
            .then(|| serde_json::from_slice::<LineHead>(&raw).ok())
            .flatten();
        let Some(line) = parsed else {
            tracing::warn!(path = %path.display(), "cutting off a torn last line");
            file.set_len(entry.file_len)?;
            file.sync_data()?;
            break;
        };
        if entry.events == 0 {
            entry.first = line.timestamp.clone();
        }
        entry.events += 1;
        entry.last_micros = chrono::DateTime::parse_from_rfc3339(&line.timestamp)
            .map(|at| at.timestamp_micros())
            .unwrap_or_default();
        entry.last = line.timestamp;
        entry.last_offset = Some(line.offset);
        entry.file_len += read as u64;
        entry.closed_by = closing_json(&line.event);
    }
    // Written by the old rule: a file on disk was a finished session.
    entry.closed_by = entry.closed_by.or(Some("idle"));
    Ok((entry.events > 0).then_some(entry))
}
