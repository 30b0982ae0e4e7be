//! How the Supervisor starts, restarts and stops its children: a group's
//! spawn (in a task, answered by `Spawned`), its end (on purpose, or a
//! failure to restart from after back-off, or to give up on for a
//! cool-down), an operator's restart, the LogWriter's restart, and the
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort, SpawnErr};
use tokio::task::JoinSet;

use super::restart::{Decision, Restarts};
use super::{
    ControlError, GroupEntry, SHUTDOWN_GRACE, STOP_GRACE, Supervisor, SupervisorMsg,
    SupervisorState,
};
use crate::group::{
    ConsumerGroup, ConsumerGroupArgs, ConsumerGroupMsg, GroupMetrics, GroupSpec, GroupState,
};
use crate::metrics::ActorRun;
use crate::writer::LogWriter;

impl Supervisor {
    pub(super) fn register(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        spec: GroupSpec,
    ) -> Result<(), ControlError> {
        if state.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let name = spec.config.name.clone();
        if state.groups.contains_key(&name) {
            return Err(ControlError::AlreadyRegistered(name));
        }
        let metrics = Arc::new(GroupMetrics::default());
        state
            .view
            .add_group(&name, metrics.clone(), spec.config.stuck_after);
        state.groups.insert(
            name.clone(),
            GroupEntry {
                spec,
                metrics,
                actor: None,
                generation: 0,
                restarts: Restarts::default(),
                paused: false,
                spawned_paused: false,
                crash: None,
                careful: None,
                rewound: None,
                stopping: false,
                restart_replies: Vec::new(),
            },
        );
        self.spawn(myself, state, &name);
        Ok(())
    }

    /// Starts `name`'s actor in a task, which answers with
    /// [`SupervisorMsg::Spawned`]: the actor's start opens its consumer,
    /// which is the log's time, not the Supervisor's.
    pub(super) fn spawn(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            return;
        };
        entry.generation += 1;
        if entry.metrics.generation() > 0 {
            entry.metrics.count_restart();
        }
        entry.metrics.count_spawn();
        let limit = entry.spec.config.restart.crash_loop_limit;
        let quarantine = match entry.crash {
            Some((offset, crashes)) if crashes >= limit => {
                entry.crash = None;
                entry.careful = None;
                let why = entry.metrics.last_error().unwrap_or_default();
                Some((
                    offset,
                    crashes,
                    format!("the handler crashed the group on {crashes} restarts in a row: {why}"),
                ))
            }
            _ => None,
        };
        entry.metrics.set_state(GroupState::Starting);
        entry.spawned_paused = entry.paused;
        let args = ConsumerGroupArgs {
            log: state.log.clone(),
            writer: state.writer.handle.clone(),
            handler: (entry.spec.handler)(),
            metrics: entry.metrics.clone(),
            dead_letters: state.dead_letters.clone(),
            paused: entry.paused,
            careful: entry.careful.clone(),
            rewound: entry.rewound,
            quarantine,
        };
        let group = ConsumerGroup {
            config: entry.spec.config.clone(),
        };
        let generation = entry.generation;
        let supervisor = myself.clone();
        let name = name.to_owned();
        state.tasks.spawn(async move {
            let result = Actor::spawn_linked(None, group, args, supervisor.get_cell())
                .await
                .map(|(actor, _)| actor);
            let _ = supervisor.cast(SupervisorMsg::Spawned {
                group: name,
                generation,
                result,
            });
        });
    }

    /// A spawn task is done.
    pub(super) fn spawned(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
        generation: u64,
        result: Result<ActorRef<ConsumerGroupMsg>, SpawnErr>,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            return;
        };
        let actor = match result {
            Ok(actor) => actor,
            Err(err) => {
                if entry.generation != generation || state.shutting_down {
                    return;
                }
                let error = format!("could not start: {err}");
                tracing::error!(group = %name, %error, "consumer group failed");
                for reply in entry.restart_replies.drain(..) {
                    let _ = reply.send(Err(ControlError::NotRunning {
                        group: name.to_owned(),
                        state: GroupState::BackingOff,
                    }));
                }
                self.failed(myself, state, name, error);
                return;
            }
        };
        if entry.generation != generation || entry.actor.is_some() || state.shutting_down {
            // An operator acted (or shutdown began) while it started. One
            // that already ended is only forgotten; the others are stopped,
            // and their end is not the group's.
            if state.ended_early.remove(&actor.get_id()).is_none() {
                state.discarded.insert(actor.get_id());
                actor.stop(Some("superseded".into()));
            }
            return;
        }
        let id = actor.get_id();
        entry.metrics.started(ActorRun::now(id));
        // Its handler was told in its start.
        entry.rewound = None;
        if let Some(error) = state.ended_early.remove(&id) {
            entry.metrics.ended();
            let error = error.unwrap_or_else(|| "the group stopped by itself".into());
            tracing::error!(group = %name, %error, "consumer group failed");
            self.failed(myself, state, name, error);
            return;
        }
        if entry.paused != entry.spawned_paused {
            // Paused or resumed while it started: tell it now.
            let (reply, _) = ractor::concurrency::oneshot();
            let message = if entry.paused {
                ConsumerGroupMsg::Pause(reply.into())
            } else {
                ConsumerGroupMsg::Resume(reply.into())
            };
            let _ = actor.cast(message);
        }
        state.by_actor.insert(id, name.to_owned());
        entry.actor = Some(actor);
        for reply in entry.restart_replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
    }

    /// A group's actor ended: on purpose, or as a failure to restart from.
    pub(super) fn group_ended(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
        error: Option<String>,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            return;
        };
        entry.actor = None;
        entry.metrics.ended();
        if state.shutting_down || entry.stopping {
            // Stopped (or killed) on purpose: what it was handling is no
            // crash, and is read again from the committed offset.
            entry.metrics.take_in_flight();
        }
        if state.shutting_down {
            entry.metrics.set_state(GroupState::Stopped);
            return;
        }
        if std::mem::take(&mut entry.stopping) {
            if entry.restart_replies.is_empty() {
                entry.metrics.set_state(GroupState::Stopped);
            } else {
                tracing::info!(group = %name, "consumer group restarted by an operator");
                self.spawn(myself, state, name);
            }
            return;
        }
        let error = error.unwrap_or_else(|| "the group stopped by itself".into());
        tracing::error!(group = %name, %error, "consumer group failed");
        self.failed(myself, state, name, error);
    }

    /// A group failed: schedule its restart, or mark it failed.
    pub(super) fn failed(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
        error: String,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            return;
        };
        entry.metrics.set_last_error(error);
        if let Some(in_flight) = entry.metrics.take_in_flight() {
            let at = *in_flight.start();
            entry.crash = match entry.crash {
                Some((offset, crashes)) if offset == at => Some((offset, crashes + 1)),
                _ => Some((at, 1)),
            };
            entry.careful = Some(in_flight);
        }
        let policy = entry.spec.config.restart;
        entry.generation += 1;
        let generation = entry.generation;
        let group = name.to_owned();
        match entry.restarts.failed(&policy) {
            Decision::GiveUp(cooldown) => {
                tracing::error!(
                    group = %name,
                    restarts = entry.restarts.len(),
                    window = ?policy.window,
                    ?cooldown,
                    "consumer group restarted too often: failed, until its cool-down is over or \
                     an operator restarts it"
                );
                entry.metrics.set_state(GroupState::Failed);
                myself.send_after(cooldown, move || SupervisorMsg::CooledDown {
                    group,
                    generation,
                });
            }
            Decision::Restart(delay) => {
                tracing::warn!(group = %name, ?delay, "restarting consumer group after back-off");
                entry.metrics.set_state(GroupState::BackingOff);
                myself.send_after(delay, move || SupervisorMsg::Respawn { group, generation });
            }
        }
    }

    /// Stops `actor`, and kills it if it has not stopped after `grace`
    /// (its handler is stuck): its batch was not committed, so it is read
    /// again.
    pub(super) fn stop_child(
        tasks: &mut JoinSet<()>,
        actor: ActorCell,
        reason: &str,
        grace: Duration,
    ) {
        actor.stop(Some(reason.to_owned()));
        tasks.spawn(async move {
            if actor.wait(Some(grace)).await.is_err() {
                tracing::warn!(
                    actor = %actor.get_id(),
                    ?grace,
                    "consumer group did not stop in time; killing it"
                );
                actor.kill();
            }
        });
    }

    pub(super) fn operator_restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
        reply: RpcReplyPort<Result<(), ControlError>>,
    ) {
        if state.shutting_down {
            let _ = reply.send(Err(ControlError::ShuttingDown));
            return;
        }
        let Some(entry) = state.groups.get_mut(name) else {
            let _ = reply.send(Err(ControlError::UnknownGroup(name.to_owned())));
            return;
        };
        entry.restarts.clear();
        entry.crash = None;
        entry.restart_replies.push(reply);
        match entry.actor.take() {
            // Spawned again once it has stopped (`group_ended`).
            Some(actor) => {
                entry.stopping = true;
                // Its pending timers are stale from here on.
                entry.generation += 1;
                Self::stop_child(
                    &mut state.tasks,
                    actor.get_cell(),
                    "restarted by an operator",
                    STOP_GRACE,
                );
            }
            None if entry.stopping => {}
            None => {
                tracing::info!(group = %name, "consumer group restarted by an operator");
                self.spawn(myself, state, name);
            }
        }
    }

    /// The LogWriter ended. Unless vibesd is shutting down, it failed:
    /// restart it after back-off, or give up for a cool-down.
    pub(super) fn writer_ended(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        error: Option<String>,
    ) {
        state.writer.actor = None;
        if state.shutting_down {
            return;
        }
        let error = error.unwrap_or_else(|| "the log writer stopped by itself".into());
        state.writer.handle.set_last_error(error.clone());
        state.writer.generation += 1;
        let generation = state.writer.generation;
        let policy = state.writer.policy;
        let delay = match state.writer.restarts.failed(&policy) {
            Decision::Restart(delay) => {
                tracing::error!(%error, ?delay, "the log writer failed; restarting it after back-off");
                delay
            }
            Decision::GiveUp(cooldown) => {
                tracing::error!(
                    %error,
                    ?cooldown,
                    "the log writer failed too often; appends are refused until its cool-down \
                     is over"
                );
                state.writer.restarts.clear();
                cooldown
            }
        };
        myself.send_after(delay, move || SupervisorMsg::RespawnWriter { generation });
    }

    /// Starts a new LogWriter behind the same handles. Its start does no
    /// I/O, so it is awaited here.
    pub(super) async fn respawn_writer(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) {
        match LogWriter::restart(&state.writer.handle, state.log.clone(), myself.get_cell()).await {
            Ok((actor, _)) => {
                tracing::warn!(actor = %actor.get_id(), "log writer restarted: appends are taken again");
                state.writer.actor = Some(actor.get_id());
            }
            Err(err) => self.writer_ended(myself, state, Some(format!("could not start: {err}"))),
        }
    }

    /// Shuts down in a task: drain the writer, stop every group (killing
    /// the ones still busy after [`SHUTDOWN_GRACE`]), stop the server,
    /// answer, then stop the Supervisor.
    pub(super) fn shutdown(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        reply: RpcReplyPort<()>,
    ) {
        state.shutting_down = true;
        let mut groups = Vec::new();
        for (name, entry) in &mut state.groups {
            if let Some(actor) = entry.actor.take() {
                entry.stopping = true;
                groups.push((name.clone(), actor));
            } else {
                entry.metrics.set_state(GroupState::Stopped);
            }
        }
        let writer = state.writer.handle.clone();
        let manager = state.manager.take();
        let supervisor = myself.clone();
        state.tasks.spawn(async move {
            // No new appends; everything queued is written (and answered).
            writer.drain().await;
            let mut stops = JoinSet::new();
            for (name, actor) in groups {
                stops.spawn(async move {
                    actor.stop(None);
                    if actor.get_cell().wait(Some(SHUTDOWN_GRACE)).await.is_err() {
                        tracing::error!(
                            group = %name,
                            "consumer group did not stop in time; killing it (it reads its \
                             last batch again at the next start)"
                        );
                        actor.kill();
                    }
                });
            }
            while stops.join_next().await.is_some() {}
            if let Some(manager) = manager {
                manager.stop().await;
            }
            tracing::info!("supervisor stopped");
            let _ = reply.send(());
            supervisor.stop(Some("shutdown".into()));
        });
    }
}
