//! The Supervisor actor: owns the log, runs one ConsumerGroup per group and
//! the LogWriter, restarts them, and answers the control operations.
//!
//! - It owns the [`EventLog`] and, when vibesd manages one, the
//!   `iggy-server` ([`IggyManager`]); it stops the server last at shutdown.
//! - Each registered group runs as a linked [`ConsumerGroup`] actor. When
//!   one fails (a handler panic, or the log failing under it), it is
//!   respawned after an exponential back-off with jitter; more than
//!   `max_restarts` restarts within `window` marks it `failed` and leaves it
//!   stopped for its `cooldown` (then it is tried again, with a fresh
//!   window) or until an operator restarts it. A child's failure never
//!   stops the Supervisor: every error in handling one is logged, not
//!   returned. (A failing disk is not a child's failure: a group backs off
//!   by itself and never fails for it.)
//! - Crash loops: the offsets a group had in flight when it crashed are
//!   handled one at a time after the restart; an offset that crashes it on
//!   `crash_loop_limit` restarts in a row is dead-lettered by the next one.
//! - It starts the LogWriter, whose handle producers get from
//!   [`SupervisorHandle::writer`], and restarts it by the same rules when
//!   it fails: the appends queued then are answered with an error, never
//!   left waiting, and the handles work again once the new writer runs.
//! - Its mailbox is never blocked by a child. Control operations are
//!   forwarded with their reply port to the group (pause, resume, replay,
//!   seek), or run in a task it owns (spawns, skips, shutdown); a group that
//!   does not stop when asked is killed after a grace period. Snapshots
//!   (`view.rs`) send it no message at all.
//! - Shutdown drains the LogWriter, stops every group (each finishes its
//!   step, and so commits) and then the `iggy-server`.

mod control;
mod restart;
mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::task::JoinSet;
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::iggy::IggyManager;
use vibes_iggy::{EventLog, LogError, Offset, OpenedLog, SeekTo};

pub use self::control::{ControlError, SeekReport, SupervisorHandle};
use self::restart::{Decision, Restarts};
pub use self::view::View;
pub use self::view::{ActorKind, ActorNode, ActorTree, IggyServerSnapshot, SupervisorSnapshot};
use crate::dead_letters::DeadLetters;
use crate::group::{
    ConsumerGroup, ConsumerGroupArgs, ConsumerGroupMsg, GroupMetrics, GroupSpec, GroupState,
    RestartPolicy,
};
use crate::metrics::ActorRun;
use crate::writer::{LogWriter, LogWriterConfig, LogWriterHandle};

/// How long a group asked to stop (an operator's restart) may finish its
/// step before it is killed. A killed group did not commit its batch: it is
/// read again, so nothing is lost.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown waits for every group to finish its step and commit
/// before it kills the ones still busy.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The Supervisor actor.
#[derive(Debug)]
pub struct Supervisor;

/// Everything the Supervisor answers.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Adds a group and starts it.
    Register(GroupSpec, RpcReplyPort<Result<(), ControlError>>),
    /// Stops a group polling until resumed (kept across restarts).
    Pause(String, RpcReplyPort<Result<(), ControlError>>),
    Resume(String, RpcReplyPort<Result<(), ControlError>>),
    /// Restarts a group now, whatever its state; for one that `failed`,
    /// this is the operator's way back. Answered once the new actor runs.
    Restart(String, RpcReplyPort<Result<(), ControlError>>),
    /// Moves a group; with `dry_run`, only says how many events that would
    /// replay or skip.
    Seek {
        group: String,
        to: SeekTo,
        dry_run: bool,
        reply: RpcReplyPort<Result<SeekReport, ControlError>>,
    },
    /// Hands a dead letter to its group's handler again.
    Replay {
        group: String,
        offset: Offset,
        reply: RpcReplyPort<Result<(), ControlError>>,
    },
    /// Closes a dead letter without handling it.
    Skip {
        group: String,
        offset: Offset,
        reply: RpcReplyPort<Result<(), ControlError>>,
    },
    /// Answered at once: the Supervisor takes messages.
    Ping(RpcReplyPort<()>),
    /// Sent by the task that spawned a group's actor. A spawn whose
    /// generation is stale (an operator acted since) is stopped again.
    Spawned {
        group: String,
        generation: u64,
        result: Result<ActorRef<ConsumerGroupMsg>, SpawnErr>,
    },
    /// Sent to itself when a group's back-off is over. A respawn whose
    /// generation is stale (an operator acted since) is ignored.
    Respawn {
        group: String,
        generation: u64,
    },
    /// Sent to itself when a `failed` group's cool-down is over: it is
    /// started again with a fresh restart window, unless an operator acted
    /// since (a stale generation).
    CooledDown {
        group: String,
        generation: u64,
    },
    /// Sent to itself when the failed LogWriter's back-off (or cool-down)
    /// is over.
    RespawnWriter {
        generation: u64,
    },
    /// The handle's way in: the shared view (and with it the writer).
    View(RpcReplyPort<Arc<View>>),
    /// Drains the LogWriter, stops every group, then the `iggy-server`,
    /// then itself.
    Shutdown(RpcReplyPort<()>),
}

/// What the Supervisor is started with.
#[derive(Debug)]
pub struct SupervisorArgs {
    pub log: OpenedLog,
    pub groups: Vec<GroupSpec>,
    pub writer: LogWriterConfig,
}

/// One registered group.
struct GroupEntry {
    spec: GroupSpec,
    /// Outlive every restart of the actor; shared with the view.
    metrics: Arc<GroupMetrics>,
    /// The running actor; `None` while it is spawned, backs off, failed or
    /// stopped.
    actor: Option<ActorRef<ConsumerGroupMsg>>,
    /// Bumped by every spawn and operator action; a stale timer or spawn
    /// carries an older one.
    generation: u64,
    restarts: Restarts,
    paused: bool,
    /// What the actor being started (or running) was told about `paused`.
    spawned_paused: bool,
    /// The offset the last crashes happened at, and how many in a row.
    crash: Option<(Offset, u32)>,
    /// The offsets in flight at the last crash.
    careful: Option<RangeInclusive<Offset>>,
    /// It is being stopped on purpose: its termination is not a failure.
    stopping: bool,
    /// Operators waiting for its restart; answered once the new actor runs.
    restart_replies: Vec<RpcReplyPort<Result<(), ControlError>>>,
}

/// The LogWriter's supervision.
struct WriterEntry {
    handle: LogWriterHandle,
    /// The running writer's id; `None` while it is restarted.
    actor: Option<ActorId>,
    generation: u64,
    restarts: Restarts,
    policy: RestartPolicy,
}

/// The Supervisor's state, built in `pre_start`.
pub struct SupervisorState {
    log: Arc<dyn EventLog>,
    /// The managed `iggy-server`, stopped at shutdown after every group.
    manager: Option<IggyManager>,
    view: Arc<View>,
    writer: WriterEntry,
    groups: BTreeMap<String, GroupEntry>,
    by_actor: HashMap<ActorId, String>,
    /// Actors that ended before their `Spawned` arrived (a child's
    /// supervision event outruns the spawning task's message), with why.
    ended_early: HashMap<ActorId, Option<String>>,
    /// Actors spawned for a stale generation and stopped at once.
    discarded: HashSet<ActorId>,
    dead_letters: Arc<DeadLetters>,
    /// Spawns, skips, stop deadlines and the shutdown; aborted with the
    /// state.
    tasks: JoinSet<()>,
    shutting_down: bool,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorState")
            .field("backend", &self.log.backend())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts the Supervisor, which opens the dead-letter index from the log,
    /// starts the LogWriter and every group of `args`.
    pub async fn start(
        args: SupervisorArgs,
    ) -> Result<(SupervisorHandle, tokio::task::JoinHandle<()>), SpawnErr> {
        let (actor, join) = Actor::spawn(None, Supervisor, args).await?;
        let view = match actor
            .call(SupervisorMsg::View, Some(control::CONTROL_TIMEOUT))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(view)) => view,
            _ => {
                actor.stop(None);
                return Err(SpawnErr::StartupFailed(
                    "the supervisor did not hand out its view".into(),
                ));
            }
        };
        Ok((SupervisorHandle { actor, view }, join))
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let log = args.log.log;
        let dead_letters = Arc::new(DeadLetters::load(&*log).await?);
        let (writer_actor, writer, _) =
            LogWriter::start(log.clone(), args.writer, Some(myself.get_cell())).await?;
        let view = Arc::new(View::new(
            log.clone(),
            args.log.reason,
            writer.clone(),
            dead_letters.clone(),
            ActorRun::now(myself.get_id()),
            args.log.manager.as_ref().map(IggyManager::status),
        ));
        let mut state = SupervisorState {
            log,
            manager: args.log.manager,
            view,
            writer: WriterEntry {
                handle: writer,
                actor: Some(writer_actor.get_id()),
                generation: 0,
                restarts: Restarts::default(),
                policy: RestartPolicy::default(),
            },
            groups: BTreeMap::new(),
            by_actor: HashMap::new(),
            ended_early: HashMap::new(),
            discarded: HashSet::new(),
            dead_letters,
            tasks: JoinSet::new(),
            shutting_down: false,
        };
        for spec in args.groups {
            if let Err(err) = self.register(&myself, &mut state, spec) {
                tracing::error!("{err}");
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Reap the tasks that are done; the rest stay owned.
        while state.tasks.try_join_next().is_some() {}
        match message {
            SupervisorMsg::Register(spec, reply) => {
                let _ = reply.send(self.register(&myself, state, spec));
            }
            SupervisorMsg::Pause(group, reply) => self.set_paused(state, &group, true, reply),
            SupervisorMsg::Resume(group, reply) => self.set_paused(state, &group, false, reply),
            SupervisorMsg::Restart(group, reply) => {
                self.operator_restart(&myself, state, &group, reply);
            }
            SupervisorMsg::Seek {
                group,
                to,
                dry_run,
                reply,
            } => self.seek(state, &group, to, dry_run, reply).await,
            SupervisorMsg::Replay {
                group,
                offset,
                reply,
            } => self.replay(state, &group, offset, reply),
            SupervisorMsg::Skip {
                group,
                offset,
                reply,
            } => self.skip(state, group, offset, reply),
            SupervisorMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            SupervisorMsg::Spawned {
                group,
                generation,
                result,
            } => self.spawned(&myself, state, &group, generation, result),
            SupervisorMsg::Respawn { group, generation } => {
                let current = state
                    .groups
                    .get(&group)
                    .is_some_and(|entry| entry.generation == generation && entry.actor.is_none());
                if current && !state.shutting_down {
                    self.spawn(&myself, state, &group);
                }
            }
            SupervisorMsg::CooledDown { group, generation } => {
                let Some(entry) = state.groups.get_mut(&group) else {
                    return Ok(());
                };
                if entry.generation == generation && entry.actor.is_none() && !state.shutting_down {
                    entry.restarts.clear();
                    tracing::warn!(
                        group = %group,
                        "failed consumer group's cool-down is over: starting it again"
                    );
                    self.spawn(&myself, state, &group);
                }
            }
            SupervisorMsg::RespawnWriter { generation } => {
                if generation == state.writer.generation
                    && state.writer.actor.is_none()
                    && !state.shutting_down
                {
                    self.respawn_writer(&myself, state).await;
                }
            }
            SupervisorMsg::View(reply) => {
                let _ = reply.send(state.view.clone());
            }
            SupervisorMsg::Shutdown(reply) => self.shutdown(&myself, state, reply),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.view.close();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if state.writer.actor == Some(id) {
            self.writer_ended(&myself, state, error);
            return Ok(());
        }
        if state.discarded.remove(&id) {
            return Ok(());
        }
        let Some(name) = state.by_actor.remove(&id) else {
            // A group whose spawn this Supervisor has not heard of yet.
            state.ended_early.insert(id, error);
            return Ok(());
        };
        self.group_ended(&myself, state, &name, error);
        Ok(())
    }
}

impl Supervisor {
    fn register(
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
    fn spawn(&self, myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, name: &str) {
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
    fn spawned(
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
            // An operator acted (or shutdown began) while it started.
            state.discarded.insert(actor.get_id());
            actor.stop(Some("superseded".into()));
            return;
        }
        let id = actor.get_id();
        entry.metrics.started(ActorRun::now(id));
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
    fn group_ended(
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
    fn failed(
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
    fn stop_child(tasks: &mut JoinSet<()>, actor: ActorCell, reason: &str, grace: Duration) {
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

    fn operator_restart(
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

    /// Pauses or resumes a group. A running group answers `reply` itself
    /// once it has taken the message (after its current step), so the
    /// answer shows the new state and the Supervisor waits for nothing.
    fn set_paused(
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
    async fn seek(
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
            let position = consumer.seek(to).await?;
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

    fn replay(
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
    fn skip(
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

    /// The LogWriter ended. Unless vibesd is shutting down, it failed:
    /// restart it after back-off, or give up for a cool-down.
    fn writer_ended(
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
    async fn respawn_writer(&self, myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
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
    fn shutdown(
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
