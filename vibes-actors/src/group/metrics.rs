//! What a group is doing and what it has counted: its state, counters and
//! snapshots. The counters are shared by the group's actor and the
//! Supervisor, and outlive every restart of the actor.

use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vibes_iggy::Offset;

pub(crate) use crate::metrics::lock;
use crate::metrics::{ActorRun, Buckets, DURATION_BOUNDS_US, Histogram, LatencySummary};

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
    /// Running, but its handler has been on one batch for longer than the
    /// group's `stuck_after`. Only snapshots say it: the actor itself is
    /// `Running` and carries on when the handler returns.
    Stuck,
}

impl GroupState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [Self; 7] = [
        Self::Starting,
        Self::Running,
        Self::Paused,
        Self::BackingOff,
        Self::Failed,
        Self::Stopped,
        Self::Stuck,
    ];

    /// The state's name, as the API and `/metrics` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::BackingOff => "backing_off",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Stuck => "stuck",
        }
    }
}

/// The batch a group's handler is working on.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) offsets: RangeInclusive<Offset>,
    pub(crate) since: Instant,
}

/// A group's counters, shared by its actor and the Supervisor (they outlive
/// every restart of the actor).
#[derive(Debug)]
pub struct GroupMetrics {
    state: Mutex<GroupState>,
    last_error: Mutex<Option<String>>,
    /// The actor running now (or last), set by the Supervisor at each spawn.
    run: Mutex<Option<ActorRun>>,
    /// Whether that actor still runs; cleared when it ends.
    alive: AtomicBool,
    /// Spawns of the actor so far (1 for the first run).
    generation: AtomicU64,
    /// The offsets handed to the handler and not yet answered.
    pub(super) in_flight: Mutex<Option<InFlight>>,
    pub(super) committed: Mutex<Option<Offset>>,
    pub(super) position: AtomicU64,
    restarts: AtomicU64,
    pub(super) handled: AtomicU64,
    pub(super) handler_errors: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    /// Time per handler call, in microseconds.
    pub(crate) handler_latency: Histogram,
}

impl Default for GroupMetrics {
    fn default() -> Self {
        Self {
            state: Mutex::new(GroupState::Starting),
            last_error: Mutex::new(None),
            run: Mutex::new(None),
            alive: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            in_flight: Mutex::new(None),
            committed: Mutex::new(None),
            position: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            handler_errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            handler_latency: Histogram::durations(),
        }
    }
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
        lock(&self.in_flight).take().map(|batch| batch.offsets)
    }

    /// A new actor runs the group.
    pub(crate) fn started(&self, run: ActorRun) {
        *lock(&self.run) = Some(run);
        self.alive.store(true, Ordering::Release);
    }

    /// The group's actor ended (stopped, failed or killed).
    pub(crate) fn ended(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// Whether an actor runs the group now.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Counts a spawn of the group's actor.
    pub(crate) fn count_spawn(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The actor running now or last.
    pub fn run(&self) -> Option<ActorRun> {
        lock(&self.run).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
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
    /// A running group whose batch has been in the handler for longer than
    /// `stuck_after` shows as [`GroupState::Stuck`].
    pub(crate) fn snapshot(
        &self,
        name: &str,
        high_water_mark: Offset,
        lag_seconds: f64,
        open_dead_letters: usize,
        stuck_after: Duration,
    ) -> GroupSnapshot {
        let committed = self.committed();
        let done = committed.map_or(0, |offset| offset + 1);
        let batch = lock(&self.in_flight).as_ref().map(|batch| BatchSnapshot {
            first: *batch.offsets.start(),
            last: *batch.offsets.end(),
            running_seconds: batch.since.elapsed().as_secs_f64(),
        });
        let mut state = self.state();
        if state == GroupState::Running
            && batch
                .as_ref()
                .is_some_and(|batch| batch.running_seconds > stuck_after.as_secs_f64())
        {
            state = GroupState::Stuck;
        }
        GroupSnapshot {
            name: name.to_owned(),
            state,
            batch,
            stuck_after_seconds: stuck_after.as_secs_f64(),
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
            handler_latency: self.handler_latency.latency_summary(),
            handler_durations: self.handler_latency.buckets(DURATION_BOUNDS_US),
        }
    }
}

/// Where a group stands, for the control API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSnapshot {
    pub name: String,
    pub state: GroupState,
    /// The batch in the handler now, if any.
    pub batch: Option<BatchSnapshot>,
    /// How long a batch may run before the group shows `stuck`.
    pub stuck_after_seconds: f64,
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
    /// The same, as Prometheus buckets over
    /// [`crate::metrics::DURATION_BOUNDS_US`].
    #[serde(skip)]
    pub handler_durations: Buckets,
}

/// The batch a group's handler is working on, in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchSnapshot {
    pub first: Offset,
    pub last: Offset,
    /// How long the handler has been on it.
    pub running_seconds: f64,
}
