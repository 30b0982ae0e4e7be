//! The memory backend: the whole log in process memory, for tests and
//! `--backend memory` runs. It keeps every promise of the contract except
//! surviving the process; clones share one log, so a test can drop a consumer
//! and open it again.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use vibes_core::StoredEvent;

use crate::log::{
    check_batch, check_commit, check_group_name, check_read, committed_before, encode_batch,
    seek_target,
};
use crate::{
    BackendKind, EventConsumer, EventLog, GroupOffset, LogError, LogOptions, Offset, Record,
    SeekTo, StartPosition, wait::HighWaterMark,
};

/// A log held in memory. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct MemoryLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: LogOptions,
    state: Mutex<State>,
    /// Tells waiting consumers that the log grew; owned by the log, ends with it.
    high_water_mark: HighWaterMark,
}

#[derive(Debug, Default)]
struct State {
    /// The encoded records; the index is the offset.
    records: Vec<Bytes>,
    /// Every registered group and its committed offset.
    groups: HashMap<String, Option<Offset>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new(options: LogOptions) -> Self {
        tracing::warn!("using the memory log: every event is lost when vibesd stops");
        Self {
            inner: Arc::new(Inner {
                options,
                state: Mutex::default(),
                high_water_mark: HighWaterMark::new(0),
            }),
        }
    }

    /// Appends `bytes` as a record without checking them, as a writer other
    /// than vibesd could: for tests of how bad records are reported.
    pub fn append_raw(&self, bytes: &[u8]) -> Offset {
        let mut state = self.inner.lock();
        state.records.push(Bytes::copy_from_slice(bytes));
        let offset = state.records.len() as Offset - 1;
        self.inner.high_water_mark.advance(offset + 1);
        offset
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-written
        // (each critical section is one push or one insert), so a poisoned
        // lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    fn backend(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        let encoded = encode_batch(&events);
        check_batch(&encoded, self.inner.options.max_event_bytes)?;
        let mut state = self.inner.lock();
        let start = state.records.len() as Offset;
        state.records.extend(encoded.into_iter().map(Bytes::from));
        let end = state.records.len() as Offset;
        self.inner.high_water_mark.advance(end);
        Ok(start..end)
    }

    async fn append_records(&self, payloads: Vec<Bytes>) -> Result<Range<Offset>, LogError> {
        let mut state = self.inner.lock();
        let start = state.records.len() as Offset;
        state.records.extend(payloads);
        let end = state.records.len() as Offset;
        self.inner.high_water_mark.advance(end);
        Ok(start..end)
    }

    async fn groups(&self) -> Result<Vec<GroupOffset>, LogError> {
        let state = self.inner.lock();
        let mut groups: Vec<GroupOffset> = state
            .groups
            .iter()
            .map(|(group, committed)| GroupOffset {
                group: group.clone(),
                committed: *committed,
            })
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(groups)
    }

    async fn high_water_mark(&self) -> Result<Offset, LogError> {
        Ok(self.inner.lock().records.len() as Offset)
    }

    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        let state = self.inner.lock();
        read_records(&state, from, max)
    }

    async fn consumer(
        &self,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError> {
        check_group_name(group)?;
        let mut state = self.inner.lock();
        let high_water_mark = state.records.len() as Offset;
        let committed = *state
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| match start {
                StartPosition::Beginning => None,
                StartPosition::End => committed_before(high_water_mark),
            });
        Ok(Box::new(MemoryConsumer {
            log: self.clone(),
            group: group.to_owned(),
            position: committed.map_or(0, |offset| offset + 1),
        }))
    }
}

fn read_records(state: &State, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
    check_read(from, state.records.len() as Offset)?;
    Ok(state
        .records
        .iter()
        .enumerate()
        .skip(from as usize)
        .take(max)
        .map(|(offset, bytes)| Record {
            offset: offset as Offset,
            payload: bytes.clone(),
        })
        .collect())
}

/// A group's reader over a [`MemoryLog`].
#[derive(Debug)]
struct MemoryConsumer {
    log: MemoryLog,
    group: String,
    position: Offset,
}

#[async_trait]
impl EventConsumer for MemoryConsumer {
    fn group(&self) -> &str {
        &self.group
    }

    fn position(&self) -> Offset {
        self.position
    }

    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        if !self
            .log
            .inner
            .high_water_mark
            .wait_beyond(self.position, timeout)
            .await
        {
            return Ok(Vec::new());
        }
        let records = read_records(&self.log.inner.lock(), self.position, max)?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
        }
        Ok(records)
    }

    async fn commit(&mut self, offset: Offset) -> Result<(), LogError> {
        let mut state = self.log.inner.lock();
        check_commit(offset, state.records.len() as Offset)?;
        state.groups.insert(self.group.clone(), Some(offset));
        Ok(())
    }

    async fn seek(&mut self, to: SeekTo) -> Result<Offset, LogError> {
        let mut state = self.log.inner.lock();
        let position = seek_target(to, state.records.len() as Offset)?;
        state
            .groups
            .insert(self.group.clone(), committed_before(position));
        self.position = position;
        Ok(position)
    }

    async fn committed_offset(&self) -> Result<Option<Offset>, LogError> {
        Ok(self
            .log
            .inner
            .lock()
            .groups
            .get(&self.group)
            .copied()
            .flatten())
    }
}
