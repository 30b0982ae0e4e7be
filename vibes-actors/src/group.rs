//! The ConsumerGroup actor: poll a batch, hand it to the handler, commit.
//!
//! The loop is messages to itself: each [`ConsumerGroupMsg::Step`] does one
//! bounded poll → handle → commit and casts the next step, so control
//! messages (pause, resume, seek, replay, stop) wait at most one step.
//!
//! - It starts at `committed + 1` (the group's start position applies only
//!   to a group that never committed).
//! - A handler error ([`Handled::Failed`]) is retried from the failed event
//!   with back-off; after `max_attempts` failures in a row the event is
//!   dead-lettered and the group moves on. A record that does not decode is
//!   dead-lettered at once.
//! - A storage failure (a transient [`LogError`], see
//!   [`LogError::is_transient`]) in a poll, commit, seek or dead-letter
//!   append is not the handler's fault: the group keeps its actor, shows
//!   `backing_off` with the failure as its `last_error`, and tries the same
//!   step again after `storage_retry` back-off, first redoing what the
//!   failure left undone (a `Repair`). Nothing is skipped or
//!   dead-lettered for it, and no restart is spent; it is `running` again
//!   once the storage works. Any other log error fails the actor.
//! - A handler panic fails the actor; its Supervisor restarts it. Before
//!   each handler call the batch's offsets are published in the group's
//!   metrics, so the Supervisor knows which offsets were in flight: a
//!   restarted group goes through those one event at a time, and an offset
//!   that crashes it on `crash_loop_limit` restarts in a row is
//!   dead-lettered by the next restart ([`ConsumerGroupArgs::quarantine`]).
//!
//! This file is the actor and its loop; the group's configuration
//! ([`GroupConfig`], [`RestartPolicy`], [`GroupSpec`]) is in `group/config.rs`,
//! its state and counters ([`GroupState`], [`GroupMetrics`],
//! [`GroupSnapshot`]) in `group/metrics.rs`, and the storage back-off (what a
//! failed step left to redo) in `group/storage.rs`.

mod config;
mod metrics;
mod storage;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use vibes_core::{Delivery, Handled, Handler, StoredEvent, VibesEvent};
use vibes_iggy::{EventConsumer, EventLog, LogError, Offset, SeekTo};

pub use self::config::{
    DEFAULT_FAILED_COOLDOWN, DEFAULT_STUCK_AFTER, GroupConfig, GroupSpec, HandlerFactory,
    RestartPolicy,
};
pub use self::metrics::{BatchSnapshot, GroupMetrics, GroupSnapshot, GroupState};
use self::metrics::{InFlight, lock};
use self::storage::{Repair, Stalled, resume_at};
use crate::dead_letters::DeadLetters;
use crate::supervisor::{ControlError, SeekReport};
use crate::writer::LogWriterHandle;

/// The ConsumerGroup actor; its configuration is fixed for its lifetime.
#[derive(Debug)]
pub struct ConsumerGroup {
    pub config: GroupConfig,
}

/// Everything a ConsumerGroup answers.
#[derive(Debug)]
pub enum ConsumerGroupMsg {
    /// One poll → handle → commit step; the actor casts it to itself.
    Step,
    /// Stop polling until [`ConsumerGroupMsg::Resume`]; answered once
    /// taken, that is after the step in progress.
    Pause(RpcReplyPort<Result<(), ControlError>>),
    /// Go on polling after a pause; answered once taken.
    Resume(RpcReplyPort<Result<(), ControlError>>),
    /// Move the group (and its committed offset) and answer what the move
    /// did: the Supervisor's report, with where the group reads now.
    Seek(
        SeekTo,
        SeekReport,
        RpcReplyPort<Result<SeekReport, ControlError>>,
    ),
    /// Hand the event at this offset (a dead letter) to the handler once
    /// more, alone; answers whether the handler took it.
    Replay(Offset, RpcReplyPort<Result<(), ControlError>>),
}

/// What a ConsumerGroup is started with (again at every restart).
pub struct ConsumerGroupArgs {
    /// For reading; the group writes (dead letters) through `writer`.
    pub log: Arc<dyn EventLog>,
    pub writer: LogWriterHandle,
    pub handler: Box<dyn Handler>,
    pub metrics: Arc<GroupMetrics>,
    pub dead_letters: Arc<DeadLetters>,
    /// Start paused (an operator paused it before a restart).
    pub paused: bool,
    /// Offsets that were in flight when the previous run crashed: handle
    /// them one event at a time, to find the one that crashes.
    pub careful: Option<RangeInclusive<Offset>>,
    /// An offset that crashed the group on too many restarts in a row:
    /// dead-letter it before anything else. `(offset, attempts, error)`.
    pub quarantine: Option<(Offset, u32, String)>,
    /// The group was moved back to this offset while it was not running:
    /// its handler is told first ([`Handler::rewound`]).
    pub rewound: Option<Offset>,
}

impl std::fmt::Debug for ConsumerGroupArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroupArgs")
            .field("paused", &self.paused)
            .field("careful", &self.careful)
            .field("quarantine", &self.quarantine)
            .finish_non_exhaustive()
    }
}

/// A running group's state, built in `pre_start`.
pub struct ConsumerGroupState {
    log: Arc<dyn EventLog>,
    writer: LogWriterHandle,
    consumer: Box<dyn EventConsumer>,
    handler: Box<dyn Handler>,
    metrics: Arc<GroupMetrics>,
    dead_letters: Arc<DeadLetters>,
    paused: bool,
    /// Handle one event at a time up to and including this offset.
    careful_until: Option<Offset>,
    /// The offset that failed last, and how many times in a row.
    failures: Option<(Offset, u32)>,
    /// A retry is scheduled: steps before it are ignored.
    backing_off: bool,
    /// What a storage failure left undone, redone before the next poll.
    repair: Option<Repair>,
    /// Steps in a row the storage failed (0: it works).
    storage_failures: u32,
}

impl std::fmt::Debug for ConsumerGroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerGroupState")
            .field("position", &self.consumer.position())
            .field("paused", &self.paused)
            .field("careful_until", &self.careful_until)
            .field("failures", &self.failures)
            .field("repair", &self.repair)
            .field("storage_failures", &self.storage_failures)
            .finish_non_exhaustive()
    }
}

impl Actor for ConsumerGroup {
    type Msg = ConsumerGroupMsg;
    type State = ConsumerGroupState;
    type Arguments = ConsumerGroupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut consumer = args
            .log
            .consumer(&self.config.name, self.config.start)
            .await?;
        let mut handler = args.handler;
        if let Some(to) = args.rewound {
            let from = self.rewind_handler(&mut *handler, to).await;
            if from < consumer.position() {
                consumer.seek(SeekTo::Offset(from)).await?;
            }
        }
        // A handler whose own state is behind the group (its store was
        // deleted, or is older) rebuilds it from the log.
        if let Some(at) = handler.resume_at()
            && at < consumer.position()
        {
            tracing::warn!(
                group = %self.config.name, from = at, committed_next = consumer.position(),
                "the handler's state is behind the group: reading the log again from where it stands"
            );
            consumer.seek(SeekTo::Offset(at)).await?;
        }
        let committed = consumer.committed_offset().await?;
        *lock(&args.metrics.committed) = committed;
        args.metrics
            .position
            .store(consumer.position(), Ordering::Relaxed);
        let mut state = ConsumerGroupState {
            log: args.log,
            writer: args.writer,
            consumer,
            handler,
            metrics: args.metrics,
            dead_letters: args.dead_letters,
            paused: args.paused,
            careful_until: args.careful.map(|range| *range.end()),
            failures: None,
            backing_off: false,
            repair: None,
            storage_failures: 0,
        };
        if let Some((offset, attempts, error)) = args.quarantine {
            // Only if the group has not moved past it in the meantime.
            if offset >= state.consumer.position()
                && let Err(stalled) = self.give_up(&mut state, offset, attempts, error).await
            {
                if !stalled.error.is_transient() {
                    return Err(stalled.error.into());
                }
                // The first step redoes it.
                state.repair = stalled.repair;
            }
        }
        state.metrics.set_state(if state.paused {
            GroupState::Paused
        } else {
            GroupState::Running
        });
        myself.cast(ConsumerGroupMsg::Step)?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConsumerGroupMsg::Step => {
                // After a storage failure it shows `backing_off` until a
                // step works again.
                if std::mem::take(&mut state.backing_off)
                    && !state.paused
                    && state.storage_failures == 0
                {
                    state.metrics.set_state(GroupState::Running);
                }
                if state.paused {
                    // The chain of steps ends here; Resume starts a new one.
                    return Ok(());
                }
                match self.step(state).await {
                    Ok(go_on) => {
                        self.storage_works(state);
                        if go_on {
                            myself.cast(ConsumerGroupMsg::Step)?;
                        } else {
                            self.back_off(&myself, state);
                        }
                    }
                    Err(stalled) if stalled.error.is_transient() => {
                        self.storage_back_off(&myself, state, stalled);
                    }
                    // Not the storage: the log refused something it should
                    // not have been asked, or is damaged. A restart starts
                    // over from the committed offset.
                    Err(stalled) => return Err(stalled.error.into()),
                }
            }
            ConsumerGroupMsg::Pause(reply) => {
                state.paused = true;
                state.metrics.set_state(GroupState::Paused);
                let _ = reply.send(Ok(()));
            }
            ConsumerGroupMsg::Resume(reply) => {
                if state.paused {
                    state.paused = false;
                    state.metrics.set_state(if state.storage_failures > 0 {
                        GroupState::BackingOff
                    } else {
                        GroupState::Running
                    });
                    if !state.backing_off {
                        myself.cast(ConsumerGroupMsg::Step)?;
                    }
                }
                let _ = reply.send(Ok(()));
            }
            ConsumerGroupMsg::Seek(to, report, reply) => {
                let before = state.consumer.position();
                let mut result = state.consumer.seek(to).await;
                if let Ok(position) = result
                    && position < before
                {
                    // Moved back: the handler drops what it derived from
                    // there, and may need to read from further back.
                    let from = self.rewind_handler(&mut *state.handler, position).await;
                    if from < position {
                        result = state.consumer.seek(SeekTo::Offset(from)).await;
                    }
                }
                let answer = match result {
                    Ok(position) => {
                        state.failures = None;
                        state.careful_until = None;
                        // The group is where the operator put it now.
                        state.repair = None;
                        self.moved(state, position);
                        tracing::info!(group = %self.config.name, ?report, "consumer group sought");
                        Ok(report.landed_at(position))
                    }
                    Err(err) => Err(err.into()),
                };
                // The caller may have given up waiting; the seek stands.
                let _ = reply.send(answer);
            }
            ConsumerGroupMsg::Replay(offset, reply) => {
                let result = self.replay(state, offset).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped on purpose; a failure (panic) does not get here, and the
        // Supervisor sets the state it decides.
        state.metrics.set_state(GroupState::Stopped);
        Ok(())
    }
}

impl ConsumerGroup {
    /// Redoes what a storage failure left undone, then one poll → handle →
    /// commit. `Ok(true)`: go on at once; `Ok(false)`: an event failed and
    /// the next step waits for the retry back-off.
    async fn step(&self, state: &mut ConsumerGroupState) -> Result<bool, Stalled> {
        if let Some(repair) = state.repair.take() {
            self.repair(state, repair).await?;
        }
        let position = state.consumer.position();
        let max = match state.careful_until {
            Some(until) if position <= until => 1,
            Some(_) => {
                state.careful_until = None;
                self.config.batch_size
            }
            None => self.config.batch_size,
        };
        // A failed poll moved nothing: the step is simply tried again.
        let records = state.consumer.poll(max, self.config.poll_timeout).await?;
        let mut batch: Vec<Delivery> = Vec::with_capacity(records.len());
        for record in records {
            match record.event() {
                Ok(event) => batch.push((record.offset, event)),
                Err(err) => {
                    // Whatever decoded before it goes first, in order.
                    if !batch.is_empty() && !self.run_handler(state, &batch).await? {
                        return Ok(false);
                    }
                    batch.clear();
                    // The records after it in this poll go on as usual.
                    self.give_up(state, record.offset, 1, vibes_core::error_chain(&err))
                        .await?;
                }
            }
        }
        if batch.is_empty() {
            return Ok(true);
        }
        self.run_handler(state, &batch).await
    }

    /// Hands `batch` to the handler and commits as far as it says.
    /// `Ok(false)`: an event failed and will be retried after a back-off.
    async fn run_handler(
        &self,
        state: &mut ConsumerGroupState,
        batch: &[Delivery],
    ) -> Result<bool, Stalled> {
        let (Some((first, _)), Some((last, _))) = (batch.first(), batch.last()) else {
            return Ok(true);
        };
        let (first, last) = (*first, *last);
        let started = Instant::now();
        *lock(&state.metrics.in_flight) = Some(InFlight {
            offsets: first..=last,
            since: started,
        });
        let outcome = state.handler.handle(batch).await;
        state
            .metrics
            .handler_latency
            .record_duration(started.elapsed());
        *lock(&state.metrics.in_flight) = None;
        match outcome {
            Handled::All => {
                self.count_handled(state, batch.len());
                state.failures = None;
                self.commit(state, last)
                    .await
                    .map_err(Stalled::redo(resume_at(state, last + 1)))?;
                Ok(true)
            }
            Handled::UpTo(done) => {
                self.count_handled(state, batch.len());
                state.failures = None;
                if let Some(done) = done.map(|done| done.min(last)) {
                    // Redone as a seek when more of the poll is left, the
                    // events the handler holds unflushed are handed to it
                    // again: at least once, never lost.
                    self.commit(state, done)
                        .await
                        .map_err(Stalled::redo(resume_at(state, done + 1)))?;
                }
                Ok(true)
            }
            Handled::Failed { offset, error } => {
                // An offset outside the batch is the handler's mistake: the
                // whole batch counts as failed at its first event.
                let offset = if (first..=last).contains(&offset) {
                    offset
                } else {
                    first
                };
                let done_before = batch.iter().take_while(|(o, _)| *o < offset).count();
                self.count_handled(state, done_before);
                state.metrics.handler_errors.fetch_add(1, Ordering::Relaxed);
                let attempts = match state.failures {
                    Some((failed, count)) if failed == offset => count + 1,
                    _ => 1,
                };
                tracing::warn!(
                    group = %self.config.name, offset, attempts, %error,
                    "handler failed"
                );
                state
                    .metrics
                    .set_last_error(format!("offset {offset}: {error}"));
                if attempts >= self.config.max_attempts {
                    state.failures = None;
                    self.give_up(state, offset, attempts, error).await?;
                    // The events after it in this batch are read again.
                    self.seek(state, offset + 1)
                        .await
                        .map_err(Stalled::redo(Repair::Seek(offset + 1)))?;
                    Ok(true)
                } else {
                    state.failures = Some((offset, attempts));
                    // Done up to the failed event; read it again next.
                    self.seek(state, offset)
                        .await
                        .map_err(Stalled::redo(Repair::Seek(offset)))?;
                    Ok(false)
                }
            }
        }
    }

    fn count_handled(&self, state: &ConsumerGroupState, events: usize) {
        state
            .metrics
            .handled
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Commits `offset` unless the group is already past it.
    async fn commit(&self, state: &mut ConsumerGroupState, offset: Offset) -> Result<(), LogError> {
        if state.metrics.committed().is_some_and(|done| done >= offset) {
            return Ok(());
        }
        state.consumer.commit(offset).await?;
        *lock(&state.metrics.committed) = Some(offset);
        state
            .metrics
            .position
            .store(state.consumer.position(), Ordering::Relaxed);
        Ok(())
    }

    async fn seek(&self, state: &mut ConsumerGroupState, offset: Offset) -> Result<(), LogError> {
        let position = state.consumer.seek(SeekTo::Offset(offset)).await?;
        self.moved(state, position);
        Ok(())
    }

    /// Records that the group now reads `position` next and has committed
    /// everything before it.
    fn moved(&self, state: &ConsumerGroupState, position: Offset) {
        *lock(&state.metrics.committed) = position.checked_sub(1);
        state.metrics.position.store(position, Ordering::Relaxed);
    }

    /// Dead-letters the event at `offset`: writes a `dead_letter` event to
    /// the log, then commits the offset so the group moves on.
    async fn give_up(
        &self,
        state: &mut ConsumerGroupState,
        offset: Offset,
        attempts: u32,
        error: String,
    ) -> Result<(), Stalled> {
        self.write_dead_letter(state, offset, attempts, error)
            .await?;
        if offset >= state.consumer.position() {
            self.seek(state, offset + 1)
                .await
                .map_err(Stalled::redo(Repair::Seek(offset + 1)))
        } else {
            // The rest of this poll is not handled yet: if the commit
            // fails, it is read again.
            self.commit(state, offset)
                .await
                .map_err(Stalled::redo(resume_at(state, offset + 1)))
        }
    }

    /// Appends the `dead_letter` event for `offset`; the group has not
    /// moved past it yet.
    async fn write_dead_letter(
        &self,
        state: &mut ConsumerGroupState,
        offset: Offset,
        attempts: u32,
        error: String,
    ) -> Result<(), Stalled> {
        let event = VibesEvent::DeadLetter {
            group: self.config.name.clone(),
            offset,
            error: error.clone(),
            attempts,
        };
        if let Err(err) = state.writer.append(StoredEvent::new(event.clone())).await {
            return Err(Stalled {
                error: err.into(),
                repair: Some(Repair::DeadLetter {
                    offset,
                    attempts,
                    error,
                }),
            });
        }
        tracing::error!(
            group = %self.config.name, offset, attempts, %error,
            "event dead-lettered"
        );
        state.dead_letters.apply(&event);
        state.metrics.dead_letters.fetch_add(1, Ordering::Relaxed);
        state
            .metrics
            .set_last_error(format!("offset {offset} dead-lettered: {error}"));
        Ok(())
    }

    /// Hands one dead letter to the handler again; on success records that
    /// it was replayed.
    async fn replay(
        &self,
        state: &mut ConsumerGroupState,
        offset: Offset,
    ) -> Result<(), ControlError> {
        let group = &self.config.name;
        let record = state.log.read(offset, 1).await?.into_iter().next().ok_or(
            ControlError::OffsetOutOfRange {
                offset,
                high_water_mark: offset,
            },
        )?;
        let event = match record.event() {
            Ok(event) => event,
            Err(LogError::Decode { source, .. }) => {
                return Err(ControlError::Undecodable {
                    group: group.clone(),
                    offset,
                    error: source.message,
                });
            }
            Err(other) => return Err(other.into()),
        };
        match state.handler.handle(&[(offset, event)]).await {
            Handled::All | Handled::UpTo(_) => {}
            Handled::Failed { error, .. } => {
                return Err(ControlError::ReplayFailed {
                    group: group.clone(),
                    offset,
                    error,
                });
            }
        }
        self.count_handled(state, 1);
        let resolved = VibesEvent::DeadLetterResolved {
            group: group.clone(),
            offset,
            resolution: "replayed".into(),
        };
        state
            .writer
            .append(StoredEvent::new(resolved.clone()))
            .await
            .map_err(ControlError::Writer)?;
        state.dead_letters.apply(&resolved);
        Ok(())
    }

    /// Tells the handler the group was moved back to `to`; the offset it
    /// needs to read from (at most `to`). A handler that fails to rewind is
    /// reported and read from `to`, as the seek said.
    async fn rewind_handler(&self, handler: &mut dyn Handler, to: Offset) -> Offset {
        match handler.rewound(to).await {
            Ok(from) => from.min(to),
            Err(error) => {
                tracing::error!(
                    group = %self.config.name, to, %error,
                    "the handler could not drop what it derived past the seek"
                );
                to
            }
        }
    }

    /// Schedules the retry of a failed event.
    fn back_off(&self, myself: &ActorRef<ConsumerGroupMsg>, state: &mut ConsumerGroupState) {
        let attempts = state.failures.map_or(1, |(_, attempts)| attempts);
        let delay = self.config.retry.delay(attempts);
        state.backing_off = true;
        if !state.paused {
            state.metrics.set_state(GroupState::BackingOff);
        }
        myself.send_after(delay, || ConsumerGroupMsg::Step);
    }
}
