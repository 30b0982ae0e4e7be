//! What a consumer group does when the storage under the log fails a step:
//! it keeps what the step left undone (a [`Repair`]), shows `backing_off`,
//! and redoes it after the storage back-off, before the next poll.

use ractor::ActorRef;
use vibes_iggy::{LogError, Offset};

use super::{ConsumerGroup, ConsumerGroupMsg, ConsumerGroupState, GroupState};
use crate::writer::WriterError;

/// What a step the storage failed left undone. At-least-once holds either
/// way: a repair never marks as done an event that was not handled, and at
/// worst hands some to the handler again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Repair {
    /// Commit this offset; the group already reads past it.
    Commit(Offset),
    /// Read from this offset next, everything before it done.
    Seek(Offset),
    /// Write this dead letter, then read from the offset after it.
    DeadLetter {
        offset: Offset,
        attempts: u32,
        error: String,
    },
}

/// A step the log stopped: the error, and what is left to redo if it passes.
#[derive(Debug)]
pub(super) struct Stalled {
    pub(super) error: StepError,
    pub(super) repair: Option<Repair>,
}

/// What stopped a step: the log (reading, committing, seeking) or the
/// LogWriter (appending a dead letter).
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

impl StepError {
    /// Whether the step may pass when tried again: the storage or the
    /// writer was unavailable for a while.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Self::Log(err) => err.is_transient(),
            Self::Writer(err) => err.is_transient(),
        }
    }
}

impl Stalled {
    pub(super) fn redo(repair: Repair) -> impl FnOnce(LogError) -> Self {
        move |error| Self {
            error: error.into(),
            repair: Some(repair),
        }
    }
}

impl From<LogError> for Stalled {
    fn from(error: LogError) -> Self {
        Self {
            error: error.into(),
            repair: None,
        }
    }
}

impl ConsumerGroup {
    /// Redoes what a storage failure left undone; if the storage fails
    /// again, what is still undone.
    pub(super) async fn repair(
        &self,
        state: &mut ConsumerGroupState,
        repair: Repair,
    ) -> Result<(), Stalled> {
        match repair {
            Repair::Commit(offset) => self
                .commit(state, offset)
                .await
                .map_err(Stalled::redo(Repair::Commit(offset))),
            Repair::Seek(offset) => self
                .seek(state, offset)
                .await
                .map_err(Stalled::redo(Repair::Seek(offset))),
            Repair::DeadLetter {
                offset,
                attempts,
                error,
            } => {
                self.write_dead_letter(state, offset, attempts, error)
                    .await?;
                let next = resume_at(state, offset + 1);
                Box::pin(self.repair(state, next)).await
            }
        }
    }

    /// A step worked: if the storage had failed, it works again.
    pub(super) fn storage_works(&self, state: &mut ConsumerGroupState) {
        let failures = std::mem::take(&mut state.storage_failures);
        if failures > 0 {
            tracing::info!(
                group = %self.config.name, failures,
                "the log works again; consumer group resumed"
            );
            if !state.paused && !state.backing_off {
                state.metrics.set_state(GroupState::Running);
            }
        }
    }

    /// The storage failed a step: keep what is left to redo, and try again
    /// after the storage back-off. The actor does not fail, so no restart
    /// is spent on a full disk.
    pub(super) fn storage_back_off(
        &self,
        myself: &ActorRef<ConsumerGroupMsg>,
        state: &mut ConsumerGroupState,
        stalled: Stalled,
    ) {
        if stalled.repair.is_some() {
            state.repair = stalled.repair;
        }
        state.storage_failures = state.storage_failures.saturating_add(1);
        let delay = self.config.storage_retry.delay(state.storage_failures);
        let error = vibes_core::error_chain(&stalled.error);
        tracing::warn!(
            group = %self.config.name, %error, ?delay, failures = state.storage_failures,
            "the log failed; consumer group retries after back-off"
        );
        state.metrics.set_last_error(format!("storage: {error}"));
        state.backing_off = true;
        if !state.paused {
            state.metrics.set_state(GroupState::BackingOff);
        }
        myself.send_after(delay, || ConsumerGroupMsg::Step);
    }
}

/// How to get back to reading `next` with everything before it done: a
/// commit if the group already reads there, else a seek back to it.
pub(super) fn resume_at(state: &ConsumerGroupState, next: Offset) -> Repair {
    match next.checked_sub(1) {
        Some(done) if next == state.consumer.position() => Repair::Commit(done),
        _ => Repair::Seek(next),
    }
}
