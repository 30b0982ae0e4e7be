//! The control operations a running Supervisor answers for a group:
//! pause and resume, seek, replay and skip. Each is forwarded to the group
//! with its reply port, or run in a task; none waits for a child here.

use ractor::RpcReplyPort;
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::{EventLog, LogError, Offset, SeekTo};

use super::{ControlError, SeekReport, Supervisor, SupervisorState};
use crate::group::{ConsumerGroupMsg, GroupMetrics};

impl Supervisor {
    /// Pauses or resumes a group. A running group answers `reply` itself
    /// once it has taken the message (after its current step), so the
    /// answer shows the new state and the Supervisor waits for nothing.
    pub(super) fn set_paused(
        &self,
        state: &mut SupervisorState,
        name: &str,
        paused: bool,
        reply: RpcReplyPort<Result<(), ControlError>>,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            let _ = reply.send(Err(ControlError::UnknownGroup(name.to_owned())));
            return;
        };
        entry.paused = paused;
        // Not running: it starts paused (or not) when it next starts.
        let Some(actor) = &entry.actor else {
            let _ = reply.send(Ok(()));
            return;
        };
        let message = if paused {
            ConsumerGroupMsg::Pause(reply)
        } else {
            ConsumerGroupMsg::Resume(reply)
        };
        if let Err(err) = actor.cast(message) {
            // The group is stopping; it starts paused (or not) next time.
            tracing::warn!(group = %name, "pause/resume reached no actor: {err}");
        }
    }

    /// A running group is sent the seek with `reply`, and answers it; one
    /// that is not running has its stored offset moved here.
    pub(super) async fn seek(
        &self,
        state: &mut SupervisorState,
        name: &str,
        to: SeekTo,
        dry_run: bool,
        reply: RpcReplyPort<Result<SeekReport, ControlError>>,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            let _ = reply.send(Err(ControlError::UnknownGroup(name.to_owned())));
            return;
        };
        let report = match plan_seek(&*state.log, &entry.metrics, to, dry_run).await {
            Ok(report) => report,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        if dry_run {
            let _ = reply.send(Ok(report));
            return;
        }
        if let Some(actor) = &entry.actor {
            if let Err(err) = actor.cast(ConsumerGroupMsg::Seek(to, report, reply)) {
                tracing::warn!(group = %name, "seek reached no actor: {err}");
            }
            return;
        }
        // Not running: move its stored offset directly, before anything
        // can start it again.
        let moved = async {
            let mut consumer = state.log.consumer(name, entry.spec.config.start).await?;
            let before = consumer.position();
            let position = consumer.seek(to).await?;
            if position < before {
                // Its handler is told when it next starts.
                let to = entry
                    .rewound
                    .map_or(position, |earlier| earlier.min(position));
                entry.rewound = Some(to);
            }
            let committed = consumer.committed_offset().await?;
            Ok::<_, LogError>((position, committed))
        }
        .await;
        let answer = match moved {
            Ok((position, committed)) => {
                entry.metrics.set_committed(committed, position);
                tracing::info!(group = %name, ?report, "consumer group sought");
                Ok(report.landed_at(position))
            }
            Err(err) => Err(err.into()),
        };
        let _ = reply.send(answer);
    }

    pub(super) fn replay(
        &self,
        state: &mut SupervisorState,
        name: &str,
        offset: Offset,
        reply: RpcReplyPort<Result<(), ControlError>>,
    ) {
        let Some(entry) = state.groups.get(name) else {
            let _ = reply.send(Err(ControlError::UnknownGroup(name.to_owned())));
            return;
        };
        if state.dead_letters.get(name, offset).is_none() {
            let _ = reply.send(Err(ControlError::NoSuchDeadLetter {
                group: name.to_owned(),
                offset,
            }));
            return;
        }
        let not_running = || ControlError::NotRunning {
            group: name.to_owned(),
            state: entry.metrics.state(),
        };
        match &entry.actor {
            // The group answers once its handler has had the event.
            Some(actor) => {
                if let Err(err) = actor.cast(ConsumerGroupMsg::Replay(offset, reply)) {
                    tracing::warn!(group = %name, "replay reached no actor: {err}");
                }
            }
            None => {
                let _ = reply.send(Err(not_running()));
            }
        }
    }

    /// Records the skip through the LogWriter, in a task.
    pub(super) fn skip(
        &self,
        state: &mut SupervisorState,
        name: String,
        offset: Offset,
        reply: RpcReplyPort<Result<(), ControlError>>,
    ) {
        if !state.groups.contains_key(&name) {
            let _ = reply.send(Err(ControlError::UnknownGroup(name)));
            return;
        }
        if state.dead_letters.get(&name, offset).is_none() {
            let _ = reply.send(Err(ControlError::NoSuchDeadLetter {
                group: name,
                offset,
            }));
            return;
        }
        let writer = state.writer.handle.clone();
        let dead_letters = state.dead_letters.clone();
        state.tasks.spawn(async move {
            let resolved = VibesEvent::DeadLetterResolved {
                group: name,
                offset,
                resolution: "skipped".into(),
            };
            let answer = match writer.append(StoredEvent::new(resolved.clone())).await {
                Ok(_) => {
                    dead_letters.apply(&resolved);
                    Ok(())
                }
                Err(err) => Err(ControlError::Writer(err)),
            };
            let _ = reply.send(answer);
        });
    }
}

/// What a seek of the group with `metrics` to `to` does, checked against
/// the log's end.
async fn plan_seek(
    log: &dyn EventLog,
    metrics: &GroupMetrics,
    to: SeekTo,
    dry_run: bool,
) -> Result<SeekReport, ControlError> {
    let high_water_mark = log.high_water_mark().await?;
    let target = match to {
        SeekTo::Beginning => 0,
        SeekTo::End => high_water_mark,
        SeekTo::Offset(offset) if offset <= high_water_mark => offset,
        SeekTo::Offset(offset) => {
            return Err(ControlError::OffsetOutOfRange {
                offset,
                high_water_mark,
            });
        }
    };
    let from = metrics.committed().map_or(0, |offset| offset + 1);
    Ok(SeekReport::new(from, target, dry_run))
}
