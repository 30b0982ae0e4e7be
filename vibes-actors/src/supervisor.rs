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
//!
//! This file holds the messages, the state and the actor; its jobs are in
//! `supervisor/`: starting, restarting and stopping children
//! (`children.rs`), the control operations (`operations.rs`), restart
//! intensity (`restart.rs`), the handle and its errors (`control.rs`), and
//! what readers see without a message (`view.rs`).

mod children;
mod control;
mod operations;
mod restart;
mod view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use tokio::task::JoinSet;
use vibes_iggy::iggy::IggyManager;
use vibes_iggy::{EventLog, Offset, OpenedLog, SeekTo};

pub use self::control::{ControlError, SeekReport, SupervisorHandle};
use self::restart::Restarts;
pub use self::view::View;
pub use self::view::{ActorKind, ActorNode, ActorTree, IggyServerSnapshot, SupervisorSnapshot};
use crate::dead_letters::DeadLetters;
use crate::group::{ConsumerGroupMsg, GroupMetrics, GroupSpec, RestartPolicy};
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
    /// Moved back to this offset while not running: its next start tells
    /// the handler.
    rewound: Option<Offset>,
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
