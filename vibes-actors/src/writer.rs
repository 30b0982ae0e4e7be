//! The LogWriter: one actor through which every producer appends, so that
//! the appends of many producers become one durable write (group commit).
//!
//! Producers hold a [`LogWriterHandle`]. The handle admits a batch only while
//! fewer than [`LogWriterConfig::max_queued_events`] events are queued or in
//! flight, and answers [`WriterError::Busy`] at once otherwise. An admitted
//! batch goes into the writer's queue, a bounded queue the handles and the
//! actor share (ractor mailboxes are unbounded, so appends do not travel as
//! messages), and if no write is scheduled the handle casts the actor
//! [`LogWriterMsg::Flush`]. Each flush writes everything queued when it
//! starts, up to the group-commit bounds, as one [`EventLog::append_batch`],
//! so whatever arrives during a write goes into the next one; each producer
//! gets its own sub-range back once the write returned, that is once it is
//! durable. One message per group commit, not one per append, keeps the
//! writer's own cost per event low.
//!
//! [`LogWriterHandle::drain`] closes the queue (later appends get
//! [`WriterError::Stopped`]), writes everything admitted before, answers
//! every producer, and stops the writer: the Supervisor's shutdown step.
//!
//! Failures are never acknowledged:
//!
//! - every producer of a failed group commit gets the error;
//! - [`LogError::Unavailable`] is retried with back-off on the memory and
//!   embedded backends, which roll a failed transaction back, so a retry
//!   cannot write an event twice; the iggy backend already resends by
//!   message id, so the writer does not retry it again;
//! - an event the log refuses by itself ([`LogError::EventTooLarge`],
//!   [`LogError::EventTooDeep`]) is never retried. The error names the
//!   event's index in the group commit, so the writer refuses the producer
//!   batch holding it (with the index within that batch) and writes the
//!   others again as one group commit: one bad producer never fails the
//!   rest.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use serde::{Deserialize, Serialize};
use vibes_core::StoredEvent;
use vibes_iggy::{BackendKind, EventLog, LogError, Offset};

use crate::metrics::{
    ActorRun, Buckets, COUNT_BOUNDS, CountSummary, DURATION_BOUNDS_US, Histogram, LatencySummary,
    lock,
};

/// Why an append was not acknowledged. Nothing of a refused batch was
/// acknowledged; see each variant for whether it may have been written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriterError {
    /// The writer already holds its bound of queued events; nothing was
    /// queued. Try again after `retry_after` (HTTP 503 with `Retry-After`).
    #[error(
        "the log writer is busy: {queued} events are queued of at most {bound}; \
         retry after {retry_after:?}"
    )]
    Busy {
        /// Events queued or in flight when the batch was refused.
        queued: usize,
        /// [`LogWriterConfig::max_queued_events`].
        bound: usize,
        /// [`LogWriterConfig::busy_retry_after`].
        retry_after: Duration,
    },

    /// The batch alone holds more events than the writer ever queues, so it
    /// could never be admitted; nothing was queued. Split it.
    #[error(
        "a batch of {events} events is more than the log writer queues at once ({bound}); \
         split it into smaller batches"
    )]
    BatchOverBound {
        /// Events in the refused batch.
        events: usize,
        /// [`LogWriterConfig::max_queued_events`].
        bound: usize,
    },

    /// The writer was drained at shutdown; nothing was queued.
    #[error("the log writer has stopped; the append was not acknowledged")]
    Stopped,

    /// The writer failed and the Supervisor is restarting it. The batch was
    /// not acknowledged; only if the writer died in the middle of the write
    /// may it have reached the log. Try again shortly.
    #[error("the log writer failed and is restarting; the append was not acknowledged")]
    Restarting,

    /// The log refused or failed the write; nothing of the batch was
    /// written. Shared because one failed group commit fails many producers.
    #[error("the log did not take the append; nothing of it was written")]
    Log(#[source] Arc<LogError>),
}

impl WriterError {
    /// The log's error, if the log refused the write.
    pub fn log_error(&self) -> Option<&LogError> {
        match self {
            Self::Log(err) => Some(err),
            _ => None,
        }
    }

    /// Whether the same append may succeed if tried again later, unchanged:
    /// the writer was busy or restarting, or the storage failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Busy { .. } | Self::Restarting | Self::Stopped => true,
            Self::BatchOverBound { .. } => false,
            Self::Log(err) => err.is_transient(),
        }
    }
}

/// How the writer batches, bounds and retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogWriterConfig {
    /// Events queued or in flight at most; beyond it producers get
    /// [`WriterError::Busy`].
    pub max_queued_events: usize,
    /// Events in one group commit at most. A producer batch larger than this
    /// is written alone, never split: a batch stays all-or-nothing.
    pub max_batch_events: usize,
    /// Encoded bytes in one group commit at most, with the same exception.
    pub max_batch_bytes: usize,
    /// What [`WriterError::Busy`] tells producers to wait.
    #[serde(with = "millis")]
    pub busy_retry_after: Duration,
    /// Retries of a write the backend could not do, where a retry cannot
    /// duplicate events (memory and embedded backends).
    pub max_retries: usize,
    /// The first retry's delay; it doubles (with jitter) up to 1 s.
    #[serde(with = "millis")]
    pub retry_min_delay: Duration,
}

impl Default for LogWriterConfig {
    fn default() -> Self {
        Self {
            max_queued_events: 16_384,
            max_batch_events: 4096,
            max_batch_bytes: 8 * 1024 * 1024,
            busy_retry_after: Duration::from_secs(1),
            max_retries: 3,
            retry_min_delay: Duration::from_millis(20),
        }
    }
}

/// Durations in config files are whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        u64::deserialize(de).map(Duration::from_millis)
    }
}

/// The actor. Its value is the immutable config; everything that changes
/// lives in [`LogWriterState`].
#[derive(Debug)]
pub struct LogWriter {
    config: LogWriterConfig,
}

/// What the writer is sent. Appends do not travel as messages: producers
/// put them in the queue through [`LogWriterHandle`], which bounds it.
#[derive(Debug)]
pub enum LogWriterMsg {
    /// Write one group commit from the queue. Cast by the handle that finds
    /// no flush scheduled, and by the writer to itself while the queue is not
    /// empty, so a backlog is written one bounded step per message.
    Flush,
    /// Stop taking appends, write everything queued, reply, then stop. For
    /// shutdown; [`LogWriterHandle::drain`] sends it.
    Drain(RpcReplyPort<()>),
    /// Answered at once: the writer takes messages (the systemd watchdog
    /// asks). Waits behind at most the group commit being written.
    Ping(RpcReplyPort<()>),
}

/// One producer batch on its way to the log, with where to send its offsets.
#[derive(Debug)]
struct AppendRequest {
    events: Vec<StoredEvent>,
    /// The events' total encoded size, measured by the producer's task.
    bytes: usize,
    reply: RpcReplyPort<Result<Range<Offset>, WriterError>>,
    /// Releases the batch's place in the queue when the writer is done with
    /// it, replied to or dropped.
    admission: Admission,
}

impl AppendRequest {
    /// Gives the batch's place in the queue back, then answers the producer,
    /// so a producer that has its answer never finds its own events queued.
    fn answer(self, result: Result<Range<Offset>, WriterError>) {
        let Self {
            reply, admission, ..
        } = self;
        drop(admission);
        // A producer that gave up waiting is no reason to stop.
        let _ = reply.send(result);
    }
}

/// What the writer is spawned with; built by [`LogWriter::start`].
#[derive(Debug)]
pub struct LogWriterArgs {
    /// The log every group commit goes to; shared with the Supervisor.
    log: Arc<dyn EventLog>,
    /// The queue and counters the handles and the writer share.
    shared: Arc<Shared>,
}

/// The writer's mutable state, built in `pre_start`.
#[derive(Debug)]
pub struct LogWriterState {
    log: Arc<dyn EventLog>,
    backend: BackendKind,
    shared: Arc<Shared>,
    /// Closes the queue when the state ends, however the actor stops
    /// (drained, stopped, killed or panicked), and drops what it held so its
    /// producers hear an error rather than wait forever.
    _closer: CloseOnDrop,
}

impl LogWriter {
    /// Spawns a writer over `log` and returns its ref, a handle for
    /// producers and its join handle. With a `supervisor`, the writer is
    /// linked to it, so the Supervisor hears when it stops or fails.
    pub async fn start(
        log: Arc<dyn EventLog>,
        config: LogWriterConfig,
        supervisor: Option<ActorCell>,
    ) -> Result<(ActorRef<LogWriterMsg>, LogWriterHandle, JoinHandle<()>), SpawnErr> {
        let handle = LogWriterHandle {
            shared: Arc::new(Shared::new(config, supervisor.is_some())),
        };
        let (actor, join) = Self::spawn(&handle, log, supervisor).await?;
        Ok((actor, handle, join))
    }

    /// Starts a new writer behind `handle`, whose writer failed: the
    /// handle's clones, its queue and its counters carry on, and appends are
    /// taken again once it runs. Counts a restart.
    pub async fn restart(
        handle: &LogWriterHandle,
        log: Arc<dyn EventLog>,
        supervisor: ActorCell,
    ) -> Result<(ActorRef<LogWriterMsg>, JoinHandle<()>), SpawnErr> {
        handle.shared.restarts.fetch_add(1, Ordering::Relaxed);
        Self::spawn(handle, log, Some(supervisor)).await
    }

    async fn spawn(
        handle: &LogWriterHandle,
        log: Arc<dyn EventLog>,
        supervisor: Option<ActorCell>,
    ) -> Result<(ActorRef<LogWriterMsg>, JoinHandle<()>), SpawnErr> {
        let shared = handle.shared.clone();
        let writer = Self {
            config: shared.config.clone(),
        };
        let args = LogWriterArgs { log, shared };
        match supervisor {
            Some(supervisor) => Actor::spawn_linked(None, writer, args, supervisor).await,
            None => Actor::spawn(None, writer, args).await,
        }
    }

    /// Takes the oldest queued batches that fit one group commit: at least
    /// one, so a batch over the bounds goes alone and whole. Empty when
    /// nothing is queued.
    fn take_group(&self, shared: &Shared) -> Vec<AppendRequest> {
        let mut queue = shared.lock_queue();
        let mut events = 0;
        let mut bytes = 0;
        let count = queue
            .requests
            .iter()
            .take_while(|request| {
                events += request.events.len();
                bytes += request.bytes;
                events <= self.config.max_batch_events && bytes <= self.config.max_batch_bytes
            })
            .count()
            .max(1)
            .min(queue.requests.len());
        queue.requests.drain(..count).collect()
    }

    /// Writes one group commit and answers each of its producers.
    async fn commit(&self, state: &LogWriterState, mut group: Vec<AppendRequest>) {
        while !group.is_empty() {
            let events: usize = group.iter().map(|request| request.events.len()).sum();
            match self.write(state, &group, events).await {
                Ok(range) => {
                    let shared = &state.shared;
                    shared.group_commits.fetch_add(1, Ordering::Relaxed);
                    shared
                        .events_written
                        .fetch_add(events as u64, Ordering::Relaxed);
                    shared.batch_sizes.record(events as u64);
                    let mut start = range.start;
                    for request in group {
                        let end = start + request.events.len() as Offset;
                        request.answer(Ok(start..end));
                        start = end;
                    }
                    return;
                }
                Err(err) if err.refused_event().is_some() => {
                    // Refuse the producer batch holding the event and write
                    // the others again: they did nothing wrong.
                    let index = err.refused_event().unwrap_or_default();
                    let (culprit, index) = locate(&group, index);
                    let err = err.at_index(index);
                    let request = group.remove(culprit);
                    state.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
                    request.answer(Err(WriterError::Log(Arc::new(err))));
                }
                Err(err) => {
                    tracing::warn!(
                        error = %vibes_core::ErrorChain(&err),
                        events,
                        producers = group.len(),
                        "log writer: group commit failed; its producers get the error"
                    );
                    state.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
                    let err = WriterError::Log(Arc::new(err));
                    for request in group {
                        request.answer(Err(err.clone()));
                    }
                    return;
                }
            }
        }
    }

    /// One `append_batch` of the whole group, retried where that is safe.
    async fn write(
        &self,
        state: &LogWriterState,
        group: &[AppendRequest],
        events: usize,
    ) -> Result<Range<Offset>, LogError> {
        // The log takes the events by value, so each attempt gets a copy:
        // the originals are what a retry, or the others after an oversize
        // refusal, are written from.
        let attempt = || {
            let mut batch = Vec::with_capacity(events);
            for request in group {
                batch.extend(request.events.iter().cloned());
            }
            state.log.append_batch(batch)
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(Duration::from_secs(1))
            .with_max_times(self.config.max_retries)
            .with_jitter();
        let backend = state.backend;
        attempt
            .retry(backoff)
            .when(|err| retryable(backend, err))
            .notify(|err, delay| {
                tracing::warn!(
                    error = %vibes_core::ErrorChain(&err),
                    ?delay,
                    events,
                    "log writer: write failed, retrying (the backend rolled it back)"
                );
            })
            .await
    }
}

/// Whether a failed write may be tried again without writing an event twice.
fn retryable(backend: BackendKind, err: &LogError) -> bool {
    match backend {
        // A failed transaction is rolled back, so nothing of it is stored.
        BackendKind::Memory | BackendKind::Embedded => {
            matches!(err, LogError::Unavailable { .. })
        }
        // The iggy backend already resends by message id after a broken
        // connection; retrying here would only repeat what it gave up on.
        BackendKind::Iggy => false,
    }
}

/// Which request of `group` holds the event at `index` of the group commit,
/// and that event's index within the request.
fn locate(group: &[AppendRequest], index: usize) -> (usize, usize) {
    let mut start = 0;
    for (position, request) in group.iter().enumerate() {
        let end = start + request.events.len();
        if index < end {
            return (position, index - start);
        }
        start = end;
    }
    // The log names an index of the batch it was given; should it not, the
    // last batch is refused, which still ends the loop in `commit`.
    (group.len().saturating_sub(1), index.saturating_sub(start))
}

impl Actor for LogWriter {
    type Msg = LogWriterMsg;
    type State = LogWriterState;
    type Arguments = LogWriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let shared = args.shared;
        // A new incarnation: what an earlier one leaves behind when its
        // state drops no longer closes this one's queue.
        let incarnation = shared.incarnation.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut queue = shared.lock_queue();
            // A drained writer stays closed: vibesd is shutting down.
            queue.open = !queue.drained;
            queue.flush_scheduled = false;
            queue.actor = Some(myself.clone());
        }
        *lock(&shared.run) = Some(ActorRun::now(myself.get_id()));
        Ok(LogWriterState {
            backend: args.log.backend(),
            log: args.log,
            _closer: CloseOnDrop {
                shared: shared.clone(),
                incarnation,
            },
            shared,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LogWriterMsg::Flush => {
                // At once, with what is queued: the disk is the bottleneck, so
                // it should never wait for the CPU. (Yielding first, to let
                // the producers just answered join, made in-process producers'
                // commits larger but kept HTTP producers, whose next append
                // takes a round trip, waiting behind every runnable task:
                // see docs/benchmarks.md.)
                let group = self.take_group(&state.shared);
                if !group.is_empty() {
                    self.commit(state, group).await;
                }
                // What arrived during the write is the next group commit.
                let mut queue = state.shared.lock_queue();
                if queue.requests.is_empty() {
                    queue.flush_scheduled = false;
                } else {
                    myself.cast(LogWriterMsg::Flush)?;
                }
            }
            LogWriterMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            LogWriterMsg::Drain(reply) => {
                {
                    let mut queue = state.shared.lock_queue();
                    queue.open = false;
                    queue.drained = true;
                }
                loop {
                    let group = self.take_group(&state.shared);
                    if group.is_empty() {
                        break;
                    }
                    self.commit(state, group).await;
                }
                tracing::info!("log writer drained: every queued append is written");
                let _ = reply.send(());
                myself.stop(Some("drained".to_owned()));
            }
        }
        Ok(())
    }
}

/// A producer's way to the writer. Cheap to clone; clones share the bound
/// and the metrics.
#[derive(Debug, Clone)]
pub struct LogWriterHandle {
    shared: Arc<Shared>,
}

impl LogWriterHandle {
    /// Appends one event and returns its offset once it is durable.
    pub async fn append(&self, event: StoredEvent) -> Result<Offset, WriterError> {
        self.append_batch(vec![event])
            .await
            .map(|range| range.start)
    }

    /// Appends every event or none, at contiguous offsets, and returns them
    /// once the whole batch is durable. An empty batch writes nothing and
    /// returns an empty range.
    ///
    /// Fails at once with [`WriterError::Busy`] when the writer's queue is
    /// full, with [`WriterError::Restarting`] while a failed writer is
    /// restarted, and with [`WriterError::Stopped`] once it is drained.
    /// A batch is queued by the first poll of this future; dropping the
    /// future after that does not take it back.
    pub async fn append_batch(
        &self,
        events: Vec<StoredEvent>,
    ) -> Result<Range<Offset>, WriterError> {
        let started = Instant::now();
        let (reply, answer) = ractor::concurrency::oneshot();
        self.enqueue(events, reply.into())?;
        // A dropped reply port means the writer went away with the batch.
        let result = match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.closed()),
        };
        if result.is_ok() {
            self.shared
                .append_latency
                .record_duration(started.elapsed());
        }
        result
    }

    /// Stops taking appends, waits until everything queued is written (or
    /// failed) and answered, and stops the writer. Appends after this get
    /// [`WriterError::Stopped`]. Draining a stopped writer does nothing.
    pub async fn drain(&self) {
        let actor = {
            let mut queue = self.shared.lock_queue();
            queue.open = false;
            queue.drained = true;
            queue.actor.clone()
        };
        // No writer (it failed and was not restarted yet): nothing is
        // queued, since its queue went with it.
        if let Some(actor) = actor {
            // An error means the writer is already gone, and with it the queue.
            let _ = actor.call(LogWriterMsg::Drain, None).await;
        }
    }

    /// Whether the writer takes appends now.
    pub fn is_open(&self) -> bool {
        self.shared.lock_queue().open
    }

    /// Whether the writer answers a message within `timeout`: it is alive
    /// and not stuck in a write.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let Some(actor) = self.actor() else {
            return false;
        };
        matches!(
            actor.call(LogWriterMsg::Ping, Some(timeout)).await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    /// The writer actor running now, if one is.
    pub fn actor(&self) -> Option<ActorRef<LogWriterMsg>> {
        self.shared.lock_queue().actor.clone()
    }

    /// The actor running now (its id and since when), how often it was
    /// restarted, and why it last failed.
    pub fn run(&self) -> WriterRun {
        let running = self.actor().is_some();
        WriterRun {
            run: running.then(|| lock(&self.shared.run).clone()).flatten(),
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            last_error: lock(&self.shared.last_error).clone(),
            drained: self.shared.lock_queue().drained,
        }
    }

    /// Records why the writer failed (the Supervisor saw it).
    pub fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.shared.last_error) = Some(error.into());
    }

    /// Why a closed queue takes nothing: drained, or its writer failed.
    fn closed(&self) -> WriterError {
        self.shared.closed(&self.shared.lock_queue())
    }

    /// The writer's counters, read without a message to the actor.
    pub fn snapshot(&self) -> WriterSnapshot {
        let shared = &self.shared;
        WriterSnapshot {
            open: shared.lock_queue().open,
            queued_events: shared.queued.load(Ordering::Acquire),
            max_queued_events: shared.bound,
            group_commits: shared.group_commits.load(Ordering::Relaxed),
            events_written: shared.events_written.load(Ordering::Relaxed),
            batch_size: shared.batch_sizes.count_summary(),
            busy_rejections: shared.busy_rejections.load(Ordering::Relaxed),
            failed_writes: shared.failed_writes.load(Ordering::Relaxed),
            append_latency: shared.append_latency.latency_summary(),
            restarts: shared.restarts.load(Ordering::Relaxed),
            append_durations: shared.append_latency.buckets(DURATION_BOUNDS_US),
            commit_sizes: shared.batch_sizes.buckets(COUNT_BOUNDS),
        }
    }

    /// Admits `events` into the queue and makes sure a flush will take
    /// them, or says why not.
    fn enqueue(
        &self,
        events: Vec<StoredEvent>,
        reply: RpcReplyPort<Result<Range<Offset>, WriterError>>,
    ) -> Result<(), WriterError> {
        let shared = &self.shared;
        let count = events.len();
        if count > shared.bound {
            return Err(WriterError::BatchOverBound {
                events: count,
                bound: shared.bound,
            });
        }
        // Measured here, on the producer's task, not in the writer.
        let bytes = events.iter().map(encoded_len).sum();
        let mut queue = shared.lock_queue();
        if !queue.open {
            return Err(shared.closed(&queue));
        }
        let admission = self.admit(count)?;
        queue.requests.push_back(AppendRequest {
            events,
            bytes,
            reply,
            admission,
        });
        if !queue.flush_scheduled {
            let cast = queue
                .actor
                .as_ref()
                .map(|actor| actor.cast(LogWriterMsg::Flush));
            if !matches!(cast, Some(Ok(()))) {
                // The writer is gone: nothing will take what is queued.
                queue.open = false;
                queue.actor = None;
                let orphans = std::mem::take(&mut queue.requests);
                let err = shared.closed(&queue);
                drop(queue);
                drop(orphans);
                return Err(err);
            }
            queue.flush_scheduled = true;
        }
        Ok(())
    }

    /// Reserves room for `events` under the bound, or answers busy.
    fn admit(&self, events: usize) -> Result<Admission, WriterError> {
        let shared = &self.shared;
        let reserved = shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued
                    .checked_add(events)
                    .filter(|total| *total <= shared.bound)
            });
        match reserved {
            Ok(_) => Ok(Admission {
                shared: shared.clone(),
                events,
            }),
            Err(queued) => {
                shared.busy_rejections.fetch_add(1, Ordering::Relaxed);
                Err(WriterError::Busy {
                    queued,
                    bound: shared.bound,
                    retry_after: shared.busy_retry_after,
                })
            }
        }
    }
}

/// The size of `event`'s stored form, counted without building it.
fn encoded_len(event: &StoredEvent) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Counting cannot fail, and neither can serializing an event (see
    // `StoredEvent::encode`); the count so far is all there is to report.
    let _ = serde_json::to_writer(&mut count, event);
    count.0
}

/// A batch's place in the writer's queue, given back when dropped.
#[derive(Debug)]
struct Admission {
    shared: Arc<Shared>,
    events: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.queued.fetch_sub(self.events, Ordering::AcqRel);
    }
}

/// Closes the queue when the state of the writer of `incarnation` ends,
/// unless a newer writer runs already.
#[derive(Debug)]
struct CloseOnDrop {
    shared: Arc<Shared>,
    incarnation: u64,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut queue = self.shared.lock_queue();
        if self.shared.incarnation.load(Ordering::Acquire) != self.incarnation {
            return;
        }
        queue.open = false;
        queue.actor = None;
        let orphans = std::mem::take(&mut queue.requests);
        drop(queue);
        // Dropping their reply ports tells each producer the writer is gone
        // (stopped, or restarting): never an acknowledgement.
        drop(orphans);
    }
}

/// The appends waiting for the writer, and whether it takes more.
#[derive(Debug)]
struct Queue {
    /// Whether appends are taken: false from the start of a drain, or once
    /// the writer is gone (until a restarted one runs).
    open: bool,
    /// Drained at shutdown: closed for good.
    drained: bool,
    /// The writer running now; `None` while a failed one is restarted.
    actor: Option<ActorRef<LogWriterMsg>>,
    /// Admitted batches not yet taken by a flush, oldest first.
    requests: VecDeque<AppendRequest>,
    /// Whether a [`LogWriterMsg::Flush`] is in the mailbox or running; the
    /// writer clears it when a flush finds the queue empty.
    flush_scheduled: bool,
}

/// What the handles and the writer share. Lives as long as the last handle
/// or the writer, so snapshots outlive a stopped writer, and a restarted
/// writer takes over the queue of the one that failed.
#[derive(Debug)]
struct Shared {
    /// Every incarnation of the writer runs with it.
    config: LogWriterConfig,
    /// A Supervisor restarts the writer when it fails; without one, a
    /// writer that is gone stays gone.
    supervised: bool,
    /// Bumped by each writer's start.
    incarnation: AtomicU64,
    /// The writer running now or last: its actor id and start.
    run: Mutex<Option<ActorRun>>,
    restarts: AtomicU64,
    /// Why the writer last failed.
    last_error: Mutex<Option<String>>,
    /// [`LogWriterConfig::max_queued_events`].
    bound: usize,
    /// [`LogWriterConfig::busy_retry_after`].
    busy_retry_after: Duration,
    /// The appends waiting for the writer. Held only to push or take.
    queue: Mutex<Queue>,
    /// Events admitted and not yet answered.
    queued: AtomicUsize,
    group_commits: AtomicU64,
    events_written: AtomicU64,
    busy_rejections: AtomicU64,
    failed_writes: AtomicU64,
    batch_sizes: Histogram,
    append_latency: Histogram,
}

impl Shared {
    fn new(config: LogWriterConfig, supervised: bool) -> Self {
        Self {
            supervised,
            bound: config.max_queued_events,
            busy_retry_after: config.busy_retry_after,
            config,
            incarnation: AtomicU64::new(0),
            run: Mutex::new(None),
            restarts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            queue: Mutex::new(Queue {
                // Opened by the writer's start.
                open: false,
                drained: false,
                actor: None,
                requests: VecDeque::new(),
                flush_scheduled: false,
            }),
            queued: AtomicUsize::new(0),
            group_commits: AtomicU64::new(0),
            events_written: AtomicU64::new(0),
            busy_rejections: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            batch_sizes: Histogram::counts(),
            append_latency: Histogram::durations(),
        }
    }

    /// Why a closed queue takes nothing: drained or unsupervised, the
    /// writer is gone for good; else it is being restarted.
    fn closed(&self, queue: &Queue) -> WriterError {
        if queue.drained || !self.supervised {
            WriterError::Stopped
        } else {
            WriterError::Restarting
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Each critical section is one push, one take or one flag, so the
        // queue is consistent even after a panic elsewhere.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's counters at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriterSnapshot {
    /// Whether appends are taken (false once draining or stopped).
    pub open: bool,
    /// Events admitted and not yet answered.
    pub queued_events: usize,
    /// The bound on `queued_events`.
    pub max_queued_events: usize,
    /// Successful group commits (one `append_batch` each).
    pub group_commits: u64,
    /// Events acknowledged.
    pub events_written: u64,
    /// Events per successful group commit.
    pub batch_size: CountSummary,
    /// Appends refused with [`WriterError::Busy`].
    pub busy_rejections: u64,
    /// Writes the log failed or refused, after any retries.
    pub failed_writes: u64,
    /// From the handle call to the durable reply, of acknowledged appends.
    pub append_latency: LatencySummary,
    /// Restarts of the writer after it failed.
    pub restarts: u64,
    /// `append_latency` as Prometheus buckets over
    /// [`crate::metrics::DURATION_BOUNDS_US`].
    #[serde(skip)]
    pub append_durations: Buckets,
    /// `batch_size` as Prometheus buckets over
    /// [`crate::metrics::COUNT_BOUNDS`].
    #[serde(skip)]
    pub commit_sizes: Buckets,
}

/// The writer as an actor, for the actor tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriterRun {
    /// The actor running now; `None` while a failed writer is restarted,
    /// and once drained.
    pub run: Option<ActorRun>,
    pub restarts: u64,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Drained at shutdown.
    pub drained: bool,
}
