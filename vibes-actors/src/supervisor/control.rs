//! The Supervisor as its callers see it: [`SupervisorHandle`], the control
//! operations' refusals ([`ControlError`]) and what a seek reports.
//!
//! Snapshots (`groups`, `snapshot`, `actors`, `dead_letters`) read the
//! shared view and send no message; control operations are messages, which
//! the Supervisor forwards to the group or to a task, so none waits behind
//! another group.

use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use serde::Serialize;
use vibes_iggy::{LogError, Offset, SeekTo};

use super::SupervisorMsg;
use super::view::{ActorTree, SupervisorSnapshot, View};
use crate::dead_letters::DeadLetter;
use crate::group::{GroupSnapshot, GroupSpec, GroupState};
use crate::writer::{LogWriterHandle, WriterError};

/// How long a caller waits for the answer to a control operation. A group
/// answers after the step it is in, so a stuck handler makes a pause of
/// that group (and only that group) wait this long.
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a control operation can refuse. Each refusal keeps its kind (and
/// its cause), so the API picks a status by variant, never by reading the
/// message.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no consumer group named {0:?}")]
    UnknownGroup(String),
    #[error("a consumer group named {0:?} is already registered")]
    AlreadyRegistered(String),
    #[error("consumer group {group:?} is {state:?}, not running; restart it first")]
    NotRunning { group: String, state: GroupState },
    #[error("consumer group {group:?} has no open dead letter at offset {offset}")]
    NoSuchDeadLetter { group: String, offset: Offset },
    /// A seek or replay named an offset the log does not hold.
    #[error(
        "offset {offset} is out of range: the log's high-water mark is {high_water_mark} \
         (seeks may name offsets up to it)"
    )]
    OffsetOutOfRange {
        offset: Offset,
        high_water_mark: Offset,
    },
    /// The handler failed again on a replayed dead letter; it stays open.
    #[error(
        "the handler of {group:?} failed again on offset {offset}: {error}; the dead letter \
         stays open"
    )]
    ReplayFailed {
        group: String,
        offset: Offset,
        error: String,
    },
    /// A dead letter whose record does not decode can never be handled.
    #[error(
        "the event at offset {offset} cannot be decoded ({error}), so {group:?} can never \
         handle it; skip the dead letter instead"
    )]
    Undecodable {
        group: String,
        offset: Offset,
        error: String,
    },
    /// The group did not answer in time (its handler is busy); the
    /// operation may still take effect once it does.
    #[error("consumer group {group:?} did not answer the {operation} in time; try again")]
    NoAnswer {
        group: String,
        operation: &'static str,
    },
    /// The log failed the operation; nothing changed.
    #[error("the log could not do it")]
    Log(#[source] LogError),
    /// The LogWriter did not take the event that records the operation;
    /// nothing changed.
    #[error("the log writer did not take the record of it")]
    Writer(#[source] WriterError),
    #[error("vibesd is shutting down")]
    ShuttingDown,
}

impl From<LogError> for ControlError {
    fn from(err: LogError) -> Self {
        match err {
            LogError::OffsetOutOfRange {
                offset,
                high_water_mark,
            } => Self::OffsetOutOfRange {
                offset,
                high_water_mark,
            },
            other => Self::Log(other),
        }
    }
}

/// What a seek did, or with `dry_run`, would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeekReport {
    /// The offset the group read next before the seek.
    pub from: Offset,
    /// The offset it reads next after it.
    pub to: Offset,
    /// Events it handles again (seeking back).
    pub replayed: u64,
    /// Events it never handles (seeking forward).
    pub skipped: u64,
    pub dry_run: bool,
}

impl SeekReport {
    /// A move from `from` to `to`.
    pub(crate) fn new(from: Offset, to: Offset, dry_run: bool) -> Self {
        Self {
            from,
            to,
            replayed: from.saturating_sub(to),
            skipped: to.saturating_sub(from),
            dry_run,
        }
    }

    /// The report of the move as it landed, at `position` (the log's end
    /// may have moved since the report was made).
    pub(crate) fn landed_at(self, position: Offset) -> Self {
        Self::new(self.from, position, self.dry_run)
    }
}

/// A cheap, cloneable way to talk to the Supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    pub(super) actor: ActorRef<SupervisorMsg>,
    pub(super) view: Arc<View>,
}

impl SupervisorHandle {
    pub fn actor(&self) -> &ActorRef<SupervisorMsg> {
        &self.actor
    }

    /// The LogWriter: every producer appends through it.
    pub fn writer(&self) -> &LogWriterHandle {
        &self.view.writer
    }

    async fn ask<T: Send + 'static>(
        &self,
        operation: &'static str,
        group: &str,
        build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T, ControlError> {
        match self.actor.call(build, Some(CONTROL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => Ok(answer),
            Ok(_) => Err(ControlError::NoAnswer {
                group: group.to_owned(),
                operation,
            }),
            // The Supervisor is gone.
            Err(_) => Err(ControlError::ShuttingDown),
        }
    }

    /// Whether the Supervisor answers a message within `timeout` (the
    /// systemd watchdog asks).
    pub async fn ping(&self, timeout: Duration) -> bool {
        matches!(
            self.actor.call(SupervisorMsg::Ping, Some(timeout)).await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    pub async fn register(&self, spec: GroupSpec) -> Result<(), ControlError> {
        let name = spec.config.name.clone();
        self.ask("registration", &name, |reply| {
            SupervisorMsg::Register(spec, reply)
        })
        .await?
    }

    /// Every group, by name; read from shared counters, no message sent.
    pub async fn groups(&self) -> Vec<GroupSnapshot> {
        self.view.groups().await
    }

    pub async fn group(&self, name: &str) -> Result<GroupSnapshot, ControlError> {
        self.groups()
            .await
            .into_iter()
            .find(|group| group.name == name)
            .ok_or_else(|| ControlError::UnknownGroup(name.to_owned()))
    }

    pub async fn pause(&self, group: &str) -> Result<(), ControlError> {
        let name = group.to_owned();
        self.ask("pause", group, |reply| SupervisorMsg::Pause(name, reply))
            .await?
    }

    pub async fn resume(&self, group: &str) -> Result<(), ControlError> {
        let name = group.to_owned();
        self.ask("resume", group, |reply| SupervisorMsg::Resume(name, reply))
            .await?
    }

    pub async fn restart(&self, group: &str) -> Result<(), ControlError> {
        let name = group.to_owned();
        self.ask("restart", group, |reply| {
            SupervisorMsg::Restart(name, reply)
        })
        .await?
    }

    pub async fn seek(
        &self,
        group: &str,
        to: SeekTo,
        dry_run: bool,
    ) -> Result<SeekReport, ControlError> {
        let name = group.to_owned();
        self.ask("seek", group, |reply| SupervisorMsg::Seek {
            group: name,
            to,
            dry_run,
            reply,
        })
        .await?
    }

    /// The log, the writer and every group; no message sent.
    pub async fn snapshot(&self) -> SupervisorSnapshot {
        self.view.snapshot().await
    }

    /// The actor tree as it runs now; no message sent.
    pub fn actors(&self) -> ActorTree {
        self.view.actors()
    }

    /// Every open dead letter; no message sent.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.view.dead_letters()
    }

    pub async fn replay(&self, group: &str, offset: Offset) -> Result<(), ControlError> {
        let name = group.to_owned();
        self.ask("replay", group, |reply| SupervisorMsg::Replay {
            group: name,
            offset,
            reply,
        })
        .await?
    }

    pub async fn skip(&self, group: &str, offset: Offset) -> Result<(), ControlError> {
        let name = group.to_owned();
        self.ask("skip", group, |reply| SupervisorMsg::Skip {
            group: name,
            offset,
            reply,
        })
        .await?
    }

    /// Stops every group (each commits what it handled), then the managed
    /// `iggy-server`, then the Supervisor; returns when all of it is done.
    pub async fn shutdown(&self) -> Result<(), ControlError> {
        // Shutdown waits for groups (up to their stop deadline) and the
        // server; the call itself is not bounded by CONTROL_TIMEOUT.
        match self.actor.call(SupervisorMsg::Shutdown, None).await {
            Ok(_) => {}
            Err(_) => return Err(ControlError::ShuttingDown),
        }
        // Its state (and with it the log) is gone once the actor has exited.
        let _ = self.actor.get_cell().wait(Some(CONTROL_TIMEOUT)).await;
        Ok(())
    }
}
