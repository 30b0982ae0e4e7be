//! The Supervisor actor: owns the log, runs one ConsumerGroup per group,
//! restarts them, and answers the control operations.
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
//! - It starts and owns the LogWriter, whose handle producers get from
//!   [`SupervisorHandle::writer`].
//! - Shutdown drains the LogWriter, stops every group (each finishes its
//!   step, and so commits) and then the `iggy-server`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use serde::Serialize;
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::iggy::IggyManager;
use vibes_iggy::{EventLog, LogError, Offset, OpenedLog, SeekTo};

use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::group::{
    ConsumerGroup, ConsumerGroupArgs, ConsumerGroupMsg, GroupMetrics, GroupSnapshot, GroupSpec,
    GroupState,
};
use crate::writer::{LogWriter, LogWriterConfig, LogWriterHandle, WriterSnapshot};

/// How long the Supervisor waits for a group to answer a control call, and
/// for a group to finish its step at shutdown.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// What a control operation can refuse. Each refusal keeps its kind, so
/// the API picks a status by variant, never by reading the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A group did not answer a control call in time (its handler is busy).
    #[error("consumer group {group:?} did not answer the {operation} in time; try again")]
    NoAnswer {
        group: String,
        operation: &'static str,
    },
    /// The log could not do it just now; nothing changed.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    #[error("vibesd is shutting down")]
    ShuttingDown,
    /// Anything else; the message says why.
    #[error("{0}")]
    Failed(String),
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
            LogError::Unavailable { .. } => Self::Unavailable(vibes_core::error_chain(&err)),
            other => Self::Failed(vibes_core::error_chain(&other)),
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

/// Everything the Supervisor knows, for `/api/status`, `/metrics` and the UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupervisorSnapshot {
    pub backend: String,
    /// Why that backend runs.
    pub backend_reason: String,
    pub high_water_mark: Offset,
    pub writer: WriterSnapshot,
    pub groups: Vec<GroupSnapshot>,
}

/// The Supervisor actor.
#[derive(Debug)]
pub struct Supervisor;

/// Everything the Supervisor answers.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Adds a group and starts it.
    Register(GroupSpec, RpcReplyPort<Result<(), ControlError>>),
    /// A snapshot of every group, by name.
    Groups(RpcReplyPort<Vec<GroupSnapshot>>),
    /// Stops a group polling until resumed (kept across restarts).
    Pause(String, RpcReplyPort<Result<(), ControlError>>),
    Resume(String, RpcReplyPort<Result<(), ControlError>>),
    /// Restarts a group now, whatever its state; for one that `failed`,
    /// this is the operator's way back.
    Restart(String, RpcReplyPort<Result<(), ControlError>>),
    /// Moves a group; with `dry_run`, only says how many events that would
    /// replay or skip.
    Seek {
        group: String,
        to: SeekTo,
        dry_run: bool,
        reply: RpcReplyPort<Result<SeekReport, ControlError>>,
    },
    /// A snapshot of the log and every group.
    Snapshot(RpcReplyPort<SupervisorSnapshot>),
    /// Every open dead letter.
    DeadLetters(RpcReplyPort<Vec<DeadLetter>>),
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
    /// The LogWriter's handle, for producers.
    Writer(RpcReplyPort<LogWriterHandle>),
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
    /// Outlive every restart of the actor.
    metrics: Arc<GroupMetrics>,
    actor: Option<ActorRef<ConsumerGroupMsg>>,
    /// Bumped by every spawn and operator action; a stale respawn timer
    /// carries an older one.
    generation: u64,
    /// When it was restarted within the current window.
    restarts: VecDeque<Instant>,
    paused: bool,
    /// The offset the last crashes happened at, and how many in a row.
    crash: Option<(Offset, u32)>,
    /// The offsets in flight at the last crash.
    careful: Option<RangeInclusive<Offset>>,
    /// It is being stopped on purpose: its termination is not a failure.
    stopping: bool,
    spawned_once: bool,
}

/// The Supervisor's state, built in `pre_start`.
pub struct SupervisorState {
    log: Arc<dyn EventLog>,
    /// The managed `iggy-server`, stopped at shutdown after every group.
    manager: Option<IggyManager>,
    backend_reason: String,
    /// Every producer's way into the log; drained first at shutdown.
    writer: LogWriterHandle,
    groups: BTreeMap<String, GroupEntry>,
    by_actor: HashMap<ActorId, String>,
    dead_letters: Arc<DeadLetters>,
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

/// A cheap, cloneable way to talk to the Supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
    writer: LogWriterHandle,
}

impl Supervisor {
    /// Starts the Supervisor, which opens the dead-letter index from the log
    /// and starts every group of `args`.
    pub async fn start(
        args: SupervisorArgs,
    ) -> Result<(SupervisorHandle, tokio::task::JoinHandle<()>), SpawnErr> {
        let (actor, join) = Actor::spawn(None, Supervisor, args).await?;
        let writer = match actor.call(SupervisorMsg::Writer, Some(CHILD_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(writer)) => writer,
            _ => {
                actor.stop(None);
                return Err(SpawnErr::StartupFailed(
                    "the supervisor did not hand out its log writer".into(),
                ));
            }
        };
        Ok((SupervisorHandle { actor, writer }, join))
    }
}

/// The call failed because the Supervisor is gone.
fn gone<T>(_: T) -> ControlError {
    ControlError::ShuttingDown
}

impl SupervisorHandle {
    pub fn actor(&self) -> &ActorRef<SupervisorMsg> {
        &self.actor
    }

    /// The LogWriter: every producer appends through it.
    pub fn writer(&self) -> &LogWriterHandle {
        &self.writer
    }

    async fn ask<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> SupervisorMsg,
    ) -> Result<T, ControlError> {
        match self.actor.call(build, Some(CHILD_TIMEOUT * 2)).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => Ok(answer),
            Ok(_) => Err(ControlError::Failed(
                "the supervisor did not answer in time".into(),
            )),
            Err(err) => Err(gone(err)),
        }
    }

    pub async fn register(&self, spec: GroupSpec) -> Result<(), ControlError> {
        self.ask(|reply| SupervisorMsg::Register(spec, reply))
            .await?
    }

    pub async fn groups(&self) -> Result<Vec<GroupSnapshot>, ControlError> {
        self.ask(SupervisorMsg::Groups).await
    }

    pub async fn group(&self, name: &str) -> Result<GroupSnapshot, ControlError> {
        self.groups()
            .await?
            .into_iter()
            .find(|group| group.name == name)
            .ok_or_else(|| ControlError::UnknownGroup(name.to_owned()))
    }

    pub async fn pause(&self, group: &str) -> Result<(), ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Pause(group, reply)).await?
    }

    pub async fn resume(&self, group: &str) -> Result<(), ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Resume(group, reply))
            .await?
    }

    pub async fn restart(&self, group: &str) -> Result<(), ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Restart(group, reply))
            .await?
    }

    pub async fn seek(
        &self,
        group: &str,
        to: SeekTo,
        dry_run: bool,
    ) -> Result<SeekReport, ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Seek {
            group,
            to,
            dry_run,
            reply,
        })
        .await?
    }

    pub async fn snapshot(&self) -> Result<SupervisorSnapshot, ControlError> {
        self.ask(SupervisorMsg::Snapshot).await
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, ControlError> {
        self.ask(SupervisorMsg::DeadLetters).await
    }

    pub async fn replay(&self, group: &str, offset: Offset) -> Result<(), ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Replay {
            group,
            offset,
            reply,
        })
        .await?
    }

    pub async fn skip(&self, group: &str, offset: Offset) -> Result<(), ControlError> {
        let group = group.to_owned();
        self.ask(|reply| SupervisorMsg::Skip {
            group,
            offset,
            reply,
        })
        .await?
    }

    /// Stops every group (each commits what it handled), then the managed
    /// `iggy-server`, then the Supervisor; returns when all of it is done.
    pub async fn shutdown(&self) -> Result<(), ControlError> {
        self.ask(SupervisorMsg::Shutdown).await?;
        // Its state (and with it the log) is gone once the actor has exited.
        self.actor
            .get_cell()
            .wait(Some(CHILD_TIMEOUT))
            .await
            .map_err(|_| ControlError::Failed("the supervisor did not stop in time".into()))
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
        let (_, writer, _) =
            LogWriter::start(log.clone(), args.writer, Some(myself.get_cell())).await?;
        let mut state = SupervisorState {
            log,
            manager: args.log.manager,
            backend_reason: args.log.reason,
            writer,
            groups: BTreeMap::new(),
            by_actor: HashMap::new(),
            dead_letters,
            shutting_down: false,
        };
        for spec in args.groups {
            if let Err(err) = self.register(&myself, &mut state, spec).await {
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
        match message {
            SupervisorMsg::Register(spec, reply) => {
                let result = self.register(&myself, state, spec).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Groups(reply) => {
                let high_water_mark = state.log.high_water_mark().await.unwrap_or(0);
                let _ = reply.send(self.group_snapshots(state, high_water_mark).await);
            }
            SupervisorMsg::Pause(group, reply) => self.set_paused(state, &group, true, reply),
            SupervisorMsg::Resume(group, reply) => self.set_paused(state, &group, false, reply),
            SupervisorMsg::Restart(group, reply) => {
                let result = self.operator_restart(&myself, state, &group).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Seek {
                group,
                to,
                dry_run,
                reply,
            } => {
                let _ = reply.send(self.seek(state, &group, to, dry_run).await);
            }
            SupervisorMsg::Snapshot(reply) => {
                let high_water_mark = state.log.high_water_mark().await.unwrap_or(0);
                let groups = self.group_snapshots(state, high_water_mark).await;
                let _ = reply.send(SupervisorSnapshot {
                    backend: state.log.backend().to_string(),
                    backend_reason: state.backend_reason.clone(),
                    high_water_mark,
                    writer: state.writer.snapshot(),
                    groups,
                });
            }
            SupervisorMsg::DeadLetters(reply) => {
                let _ = reply.send(state.dead_letters.list());
            }
            SupervisorMsg::Replay {
                group,
                offset,
                reply,
            } => {
                let _ = reply.send(self.replay(state, &group, offset).await);
            }
            SupervisorMsg::Skip {
                group,
                offset,
                reply,
            } => {
                let _ = reply.send(self.skip(state, &group, offset).await);
            }
            SupervisorMsg::Respawn { group, generation } => {
                let current = state
                    .groups
                    .get(&group)
                    .is_some_and(|entry| entry.generation == generation && entry.actor.is_none());
                if current && !state.shutting_down {
                    self.spawn(&myself, state, &group).await;
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
                    self.spawn(&myself, state, &group).await;
                }
            }
            SupervisorMsg::Writer(reply) => {
                let _ = reply.send(state.writer.clone());
            }
            SupervisorMsg::Shutdown(reply) => {
                self.shutdown(state).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
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
        let Some(name) = state.by_actor.remove(&cell.get_id()) else {
            // Not a group: the LogWriter, which only stops when drained.
            if !state.shutting_down {
                tracing::error!(
                    error = error.as_deref().unwrap_or("stopped"),
                    "the log writer stopped: appends fail until vibesd restarts"
                );
            }
            return Ok(());
        };
        let Some(entry) = state.groups.get_mut(&name) else {
            return Ok(());
        };
        entry.actor = None;
        if std::mem::take(&mut entry.stopping) || state.shutting_down {
            entry.metrics.set_state(GroupState::Stopped);
            return Ok(());
        }
        let error = error.unwrap_or_else(|| "the group stopped by itself".into());
        tracing::error!(group = %name, %error, "consumer group failed");
        self.failed(&myself, state, &name, error);
        Ok(())
    }
}

impl Supervisor {
    async fn register(
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
        state.groups.insert(
            name.clone(),
            GroupEntry {
                spec,
                metrics: Arc::new(GroupMetrics::default()),
                actor: None,
                generation: 0,
                restarts: VecDeque::new(),
                paused: false,
                crash: None,
                careful: None,
                stopping: false,
                spawned_once: false,
            },
        );
        self.spawn(myself, state, &name).await;
        Ok(())
    }

    /// Starts `name`'s actor now. A failure to start (its consumer cannot
    /// be opened) counts as a failure of the group.
    async fn spawn(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
    ) {
        let Some(entry) = state.groups.get_mut(name) else {
            return;
        };
        entry.generation += 1;
        if std::mem::replace(&mut entry.spawned_once, true) {
            entry.metrics.count_restart();
        }
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
        let args = ConsumerGroupArgs {
            log: state.log.clone(),
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
        match Actor::spawn_linked(None, group, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                state.by_actor.insert(actor.get_id(), name.to_owned());
                if let Some(entry) = state.groups.get_mut(name) {
                    entry.actor = Some(actor);
                }
            }
            Err(err) => {
                let error = format!("could not start: {err}");
                tracing::error!(group = %name, %error, "consumer group failed");
                self.failed(myself, state, name, error);
            }
        }
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
        let now = Instant::now();
        entry.restarts.push_back(now);
        while entry
            .restarts
            .front()
            .is_some_and(|at| now.duration_since(*at) > policy.window)
        {
            entry.restarts.pop_front();
        }
        if entry.restarts.len() > policy.max_restarts {
            tracing::error!(
                group = %name,
                restarts = entry.restarts.len(),
                window = ?policy.window,
                cooldown = ?policy.cooldown,
                "consumer group restarted too often: failed, until its cool-down is over or \
                 an operator restarts it"
            );
            entry.metrics.set_state(GroupState::Failed);
            entry.generation += 1;
            let generation = entry.generation;
            let group = name.to_owned();
            myself.send_after(policy.cooldown, move || SupervisorMsg::CooledDown {
                group,
                generation,
            });
            return;
        }
        let delay = policy.backoff.delay(entry.restarts.len() as u32);
        tracing::warn!(group = %name, ?delay, "restarting consumer group after back-off");
        entry.metrics.set_state(GroupState::BackingOff);
        entry.generation += 1;
        let generation = entry.generation;
        let group = name.to_owned();
        myself.send_after(delay, move || SupervisorMsg::Respawn { group, generation });
    }

    async fn operator_restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        name: &str,
    ) -> Result<(), ControlError> {
        if state.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let entry = state
            .groups
            .get_mut(name)
            .ok_or_else(|| ControlError::UnknownGroup(name.to_owned()))?;
        entry.restarts.clear();
        entry.crash = None;
        if let Some(actor) = entry.actor.take() {
            entry.stopping = true;
            let _ = actor.stop_and_wait(None, Some(CHILD_TIMEOUT)).await;
        }
        tracing::info!(group = %name, "consumer group restarted by an operator");
        self.spawn(myself, state, name).await;
        Ok(())
    }

    fn entry<'a>(
        &self,
        state: &'a mut SupervisorState,
        name: &str,
    ) -> Result<&'a mut GroupEntry, ControlError> {
        state
            .groups
            .get_mut(name)
            .ok_or_else(|| ControlError::UnknownGroup(name.to_owned()))
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
        let entry = match self.entry(state, name) {
            Ok(entry) => entry,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
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

    async fn seek(
        &self,
        state: &mut SupervisorState,
        name: &str,
        to: SeekTo,
        dry_run: bool,
    ) -> Result<SeekReport, ControlError> {
        let log = state.log.clone();
        let entry = self.entry(state, name)?;
        let high_water_mark = log.high_water_mark().await?;
        let target = match to {
            SeekTo::Beginning => 0,
            SeekTo::End => high_water_mark,
            SeekTo::Offset(offset) if offset <= high_water_mark => offset,
            SeekTo::Offset(offset) => {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    high_water_mark,
                }
                .into());
            }
        };
        let from = entry.metrics.committed().map_or(0, |offset| offset + 1);
        let report = SeekReport {
            from,
            to: target,
            replayed: from.saturating_sub(target),
            skipped: target.saturating_sub(from),
            dry_run,
        };
        if dry_run {
            return Ok(report);
        }
        match &entry.actor {
            Some(actor) => {
                match actor
                    .call(
                        |reply| ConsumerGroupMsg::Seek(to, reply),
                        Some(CHILD_TIMEOUT),
                    )
                    .await
                {
                    Ok(ractor::rpc::CallResult::Success(result)) => {
                        result?;
                    }
                    _ => {
                        return Err(ControlError::NoAnswer {
                            group: name.to_owned(),
                            operation: "seek",
                        });
                    }
                }
            }
            None => {
                // Not running: move its stored offset directly.
                let mut consumer = log.consumer(name, entry.spec.config.start).await?;
                let position = consumer.seek(to).await?;
                let committed = consumer.committed_offset().await?;
                drop(consumer);
                entry.metrics.set_committed(committed, position);
            }
        }
        tracing::info!(group = %name, ?report, "consumer group sought");
        Ok(report)
    }

    async fn replay(
        &self,
        state: &mut SupervisorState,
        name: &str,
        offset: Offset,
    ) -> Result<(), ControlError> {
        if state.dead_letters.get(name, offset).is_none() {
            return Err(ControlError::NoSuchDeadLetter {
                group: name.to_owned(),
                offset,
            });
        }
        let entry = self.entry(state, name)?;
        let Some(actor) = &entry.actor else {
            return Err(ControlError::NotRunning {
                group: name.to_owned(),
                state: entry.metrics.state(),
            });
        };
        match actor
            .call(
                |reply| ConsumerGroupMsg::Replay(offset, reply),
                Some(CHILD_TIMEOUT),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(ControlError::NoAnswer {
                group: name.to_owned(),
                operation: "replay",
            }),
        }
    }

    async fn skip(
        &self,
        state: &mut SupervisorState,
        name: &str,
        offset: Offset,
    ) -> Result<(), ControlError> {
        self.entry(state, name)?;
        if state.dead_letters.get(name, offset).is_none() {
            return Err(ControlError::NoSuchDeadLetter {
                group: name.to_owned(),
                offset,
            });
        }
        let resolved = VibesEvent::DeadLetterResolved {
            group: name.to_owned(),
            offset,
            resolution: "skipped".into(),
        };
        state.log.append(StoredEvent::new(resolved.clone())).await?;
        state.dead_letters.apply(&resolved);
        Ok(())
    }

    async fn group_snapshots(
        &self,
        state: &SupervisorState,
        high_water_mark: Offset,
    ) -> Vec<GroupSnapshot> {
        let mut snapshots = Vec::with_capacity(state.groups.len());
        for (name, entry) in &state.groups {
            let next = entry.metrics.committed().map_or(0, |offset| offset + 1);
            let lag_seconds = if next < high_water_mark {
                oldest_age(&*state.log, next).await
            } else {
                0.0
            };
            snapshots.push(entry.metrics.snapshot(
                name,
                high_water_mark,
                lag_seconds,
                state.dead_letters.count(name),
            ));
        }
        snapshots
    }

    async fn shutdown(&self, state: &mut SupervisorState) {
        state.shutting_down = true;
        // No new appends; everything queued is written (and answered).
        state.writer.drain().await;
        for (name, entry) in &mut state.groups {
            if let Some(actor) = entry.actor.take() {
                entry.stopping = true;
                if let Err(err) = actor.stop_and_wait(None, Some(CHILD_TIMEOUT)).await {
                    tracing::error!(group = %name, %err, "consumer group did not stop in time");
                }
            }
            entry.metrics.set_state(GroupState::Stopped);
        }
        if let Some(manager) = state.manager.take() {
            manager.stop().await;
        }
        tracing::info!("supervisor stopped");
    }
}

/// Seconds since the event at `offset` was accepted (0 if unreadable).
async fn oldest_age(log: &dyn EventLog, offset: Offset) -> f64 {
    let Ok(records) = log.read(offset, 1).await else {
        return 0.0;
    };
    records
        .first()
        .and_then(|record| record.event().ok())
        .map_or(0.0, |stored| {
            (Utc::now() - stored.timestamp)
                .to_std()
                .map_or(0.0, |age| age.as_secs_f64())
        })
}
