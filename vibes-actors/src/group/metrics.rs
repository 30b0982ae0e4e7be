//! What a group is doing and what it has counted: its state, counters and
//! snapshots. The counters are shared by the group's actor and the
//! Supervisor, and outlive every restart of the actor.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use vibes_iggy::Offset;

use crate::metrics::{LatencyHistogram, LatencySummary};

/// What a group is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupState {
    /// Opening its consumer.
    Starting,
    Running,
    /// Paused by an operator: polls nothing until resumed.
    Paused,
    /// Waiting to retry a failed event or a step the storage failed, or to
    /// be restarted.
    BackingOff,
    /// Restarted too often; stopped until its cool-down is over or an
    /// operator restarts it.
    Failed,
    Stopped,
}

/// A group's counters, shared by its actor and the Supervisor (they outlive
/// every restart of the actor).
#[derive(Debug)]
pub struct GroupMetrics {
    state: Mutex<GroupState>,
    last_error: Mutex<Option<String>>,
    /// The offsets handed to the handler and not yet answered.
    pub(super) in_flight: Mutex<Option<RangeInclusive<Offset>>>,
    pub(super) committed: Mutex<Option<Offset>>,
    pub(super) position: AtomicU64,
    restarts: AtomicU64,
    pub(super) handled: AtomicU64,
    pub(super) handler_errors: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    pub(super) handler_latency: LatencyHistogram,
}

impl Default for GroupMetrics {
    fn default() -> Self {
        Self {
            state: Mutex::new(GroupState::Starting),
            last_error: Mutex::new(None),
            in_flight: Mutex::new(None),
            committed: Mutex::new(None),
            position: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            handler_errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            handler_latency: LatencyHistogram::default(),
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every field here is consistent on its own; a panic elsewhere does not
    // make it wrong.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupMetrics {
    pub fn state(&self) -> GroupState {
        *lock(&self.state)
    }

    pub(crate) fn set_state(&self, state: GroupState) {
        *lock(&self.state) = state;
    }

    pub fn committed(&self) -> Option<Offset> {
        *lock(&self.committed)
    }

    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub(crate) fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.last_error) = Some(error.into());
    }

    /// The offsets the handler was working on when the actor failed, once.
    pub(crate) fn take_in_flight(&self) -> Option<RangeInclusive<Offset>> {
        lock(&self.in_flight).take()
    }

    /// Records a move of the group made while its actor was not running.
    pub(crate) fn set_committed(&self, committed: Option<Offset>, position: Offset) {
        *lock(&self.committed) = committed;
        self.position.store(position, Ordering::Relaxed);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, with the log's high-water mark and the age of the oldest
    /// event not yet committed filled in by the caller.
    pub(crate) fn snapshot(
        &self,
        name: &str,
        high_water_mark: Offset,
        lag_seconds: f64,
        open_dead_letters: usize,
    ) -> GroupSnapshot {
        let committed = self.committed();
        let done = committed.map_or(0, |offset| offset + 1);
        GroupSnapshot {
            name: name.to_owned(),
            state: self.state(),
            last_error: self.last_error(),
            committed,
            position: self.position.load(Ordering::Relaxed),
            high_water_mark,
            lag_events: high_water_mark.saturating_sub(done),
            lag_seconds,
            restarts: self.restarts.load(Ordering::Relaxed),
            events_handled: self.handled.load(Ordering::Relaxed),
            handler_errors: self.handler_errors.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            open_dead_letters,
            handler_latency: self.handler_latency.summary(),
        }
    }
}

/// Where a group stands, for the control API, `/metrics` and the UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSnapshot {
    pub name: String,
    pub state: GroupState,
    /// Why it last failed, backed off or dead-lettered.
    pub last_error: Option<String>,
    /// The last offset done (`None`: nothing yet).
    pub committed: Option<Offset>,
    /// The next offset it reads.
    pub position: Offset,
    pub high_water_mark: Offset,
    /// Events in the log not yet committed by this group.
    pub lag_events: u64,
    /// Age of the oldest event not yet committed, in seconds (0 when none).
    pub lag_seconds: f64,
    pub restarts: u64,
    pub events_handled: u64,
    pub handler_errors: u64,
    /// Events this group dead-lettered since vibesd started.
    pub dead_letters: u64,
    /// Its dead letters not yet replayed or skipped (from the log).
    pub open_dead_letters: usize,
    /// Time per handler call (one batch), in microseconds.
    pub handler_latency: LatencySummary,
}
