//! What anyone may read about the actors without asking one: the groups'
//! counters, the LogWriter's, the managed `iggy-server`'s, and the open dead
//! letters. The Supervisor adds a group here when it registers it; readers
//! (`/api/groups`, `/metrics`, `/readyz`, `/api/actors`, the watchdog) take
//! snapshots from shared counters, so a busy, stuck or dead actor never
//! holds them up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use vibes_iggy::iggy::ServerStatus;
use vibes_iggy::{BackendKind, EventLog, Offset};

use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::group::{GroupMetrics, GroupSnapshot};
use crate::metrics::ActorRun;
use crate::writer::{LogWriterHandle, WriterSnapshot};

/// How long a snapshot waits for the log (its high-water mark, the age of a
/// group's oldest pending event) before it answers with what it knew last.
const LOG_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Everything the Supervisor knows, for `/metrics` and the control API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupervisorSnapshot {
    pub backend: String,
    /// Why that backend runs.
    pub backend_reason: String,
    pub high_water_mark: Offset,
    pub writer: WriterSnapshot,
    pub groups: Vec<GroupSnapshot>,
    /// The managed `iggy-server`, when vibesd runs one.
    pub iggy_server: Option<IggyServerSnapshot>,
}

/// The managed `iggy-server`, in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IggyServerSnapshot {
    pub address: String,
    /// `None` while it is down.
    pub pid: Option<u32>,
    pub up: bool,
    /// Restarts after it exited unexpectedly.
    pub restarts: u64,
}

/// The actor tree as it runs now: the Supervisor and its children.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorTree {
    pub supervisor: ActorNode,
}

/// What a node of the actor tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Supervisor,
    LogWriter,
    ConsumerGroup,
    /// Not an actor: the `iggy-server` process, which the Supervisor owns.
    IggyServer,
}

/// One node of the actor tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorNode {
    pub kind: ActorKind,
    pub name: String,
    /// ractor's id of the actor running now; `None` while none does (a
    /// group backing off before its restart, a failed one).
    pub actor_id: Option<String>,
    /// `running`, or a group's state (`backing_off`, `failed`, `stuck`, …),
    /// or `restarting` / `stopped` for the writer, `up` / `down` for the
    /// server.
    pub state: String,
    /// Restarts after failures (for a group, operator restarts too).
    pub restarts: u64,
    /// Actors started for it so far: 1 for the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// When the actor running now (or last) started.
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The server's pid, for the `iggy_server` node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The server's address, for the `iggy_server` node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ActorNode>,
}

/// One registered group, as readers see it.
struct GroupView {
    /// Shared with the group's actor; outlives its restarts.
    metrics: Arc<GroupMetrics>,
    stuck_after: Duration,
}

/// Shared by the Supervisor (which adds groups) and every handle; read
/// through [`super::SupervisorHandle`].
pub struct View {
    /// For reads; let go when the Supervisor stops, so that the log (and
    /// its lock on the data directory) ends with it, not with the last
    /// handle.
    log: RwLock<Option<Arc<dyn EventLog>>>,
    backend: BackendKind,
    backend_reason: String,
    pub(super) writer: LogWriterHandle,
    pub(super) dead_letters: Arc<DeadLetters>,
    /// The Supervisor actor's run.
    supervisor: ActorRun,
    iggy_server: Option<ServerStatus>,
    groups: RwLock<BTreeMap<String, GroupView>>,
    /// The high-water mark last read, answered when the log is slow.
    last_high_water_mark: AtomicU64,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("backend", &self.backend)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}

impl View {
    pub(super) fn new(
        log: Arc<dyn EventLog>,
        backend_reason: String,
        writer: LogWriterHandle,
        dead_letters: Arc<DeadLetters>,
        supervisor: ActorRun,
        iggy_server: Option<ServerStatus>,
    ) -> Self {
        Self {
            backend: log.backend(),
            log: RwLock::new(Some(log)),
            backend_reason,
            writer,
            dead_letters,
            supervisor,
            iggy_server,
            groups: RwLock::new(BTreeMap::new()),
            last_high_water_mark: AtomicU64::new(0),
        }
    }

    /// The log, until the Supervisor has stopped.
    fn log(&self) -> Option<Arc<dyn EventLog>> {
        self.log
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lets go of the log: the Supervisor has stopped.
    pub(super) fn close(&self) {
        self.log
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    pub(super) fn add_group(&self, name: &str, metrics: Arc<GroupMetrics>, stuck_after: Duration) {
        self.groups
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                name.to_owned(),
                GroupView {
                    metrics,
                    stuck_after,
                },
            );
    }

    /// Every group's metrics and `stuck_after`, by name, copied out of the
    /// lock so that no await holds it.
    fn group_views(&self) -> Vec<(String, Arc<GroupMetrics>, Duration)> {
        self.groups
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, view)| (name.clone(), view.metrics.clone(), view.stuck_after))
            .collect()
    }

    /// The log's high-water mark, or the last one read if the log does not
    /// answer within [`LOG_READ_TIMEOUT`].
    pub(crate) async fn high_water_mark(&self) -> Offset {
        let Some(log) = self.log() else {
            return self.last_high_water_mark.load(Ordering::Relaxed);
        };
        match tokio::time::timeout(LOG_READ_TIMEOUT, log.high_water_mark()).await {
            Ok(Ok(mark)) => {
                self.last_high_water_mark.fetch_max(mark, Ordering::Relaxed);
                mark
            }
            _ => self.last_high_water_mark.load(Ordering::Relaxed),
        }
    }

    pub(crate) async fn groups(&self) -> Vec<GroupSnapshot> {
        let high_water_mark = self.high_water_mark().await;
        self.group_snapshots(high_water_mark).await
    }

    async fn group_snapshots(&self, high_water_mark: Offset) -> Vec<GroupSnapshot> {
        let views = self.group_views();
        let mut snapshots = Vec::with_capacity(views.len());
        for (name, metrics, stuck_after) in views {
            let next = metrics.committed().map_or(0, |offset| offset + 1);
            let lag_seconds = if next < high_water_mark {
                self.oldest_age(next).await
            } else {
                0.0
            };
            snapshots.push(metrics.snapshot(
                &name,
                high_water_mark,
                lag_seconds,
                self.dead_letters.count(&name),
                stuck_after,
            ));
        }
        snapshots
    }

    pub(crate) async fn snapshot(&self) -> SupervisorSnapshot {
        let high_water_mark = self.high_water_mark().await;
        SupervisorSnapshot {
            backend: self.backend.to_string(),
            backend_reason: self.backend_reason.clone(),
            high_water_mark,
            writer: self.writer.snapshot(),
            groups: self.group_snapshots(high_water_mark).await,
            iggy_server: self.iggy_server.as_ref().map(|server| IggyServerSnapshot {
                address: server.address().to_owned(),
                pid: server.pid(),
                up: server.up(),
                restarts: server.restarts(),
            }),
        }
    }

    pub(crate) fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.list()
    }

    /// The actor tree. Group states come without `stuck` or lag (no log
    /// read): `/api/groups` has those.
    pub(crate) fn actors(&self) -> ActorTree {
        let writer = self.writer.run();
        let mut children = vec![ActorNode {
            kind: ActorKind::LogWriter,
            name: "log-writer".to_owned(),
            actor_id: writer.run.as_ref().map(|run| run.actor_id.clone()),
            state: if writer.run.is_some() {
                "running"
            } else if writer.drained {
                "stopped"
            } else {
                "restarting"
            }
            .to_owned(),
            restarts: writer.restarts,
            generation: Some(writer.restarts + 1),
            started_at: writer.run.as_ref().map(|run| run.started_at),
            last_error: writer.last_error,
            pid: None,
            address: None,
            children: Vec::new(),
        }];
        for (name, metrics, stuck_after) in self.group_views() {
            let snapshot = metrics.snapshot(&name, 0, 0.0, 0, stuck_after);
            let run = metrics.run();
            children.push(ActorNode {
                kind: ActorKind::ConsumerGroup,
                name,
                actor_id: run
                    .as_ref()
                    .filter(|_| metrics.alive())
                    .map(|run| run.actor_id.clone()),
                state: snapshot.state.as_str().to_owned(),
                restarts: snapshot.restarts,
                generation: Some(metrics.generation()),
                started_at: run.map(|run| run.started_at),
                last_error: snapshot.last_error,
                pid: None,
                address: None,
                children: Vec::new(),
            });
        }
        if let Some(server) = &self.iggy_server {
            children.push(ActorNode {
                kind: ActorKind::IggyServer,
                name: "iggy-server".to_owned(),
                actor_id: None,
                state: if server.up() { "up" } else { "down" }.to_owned(),
                restarts: server.restarts(),
                generation: None,
                started_at: None,
                last_error: None,
                pid: server.pid(),
                address: Some(server.address().to_owned()),
                children: Vec::new(),
            });
        }
        ActorTree {
            supervisor: ActorNode {
                kind: ActorKind::Supervisor,
                name: "supervisor".to_owned(),
                actor_id: Some(self.supervisor.actor_id.clone()),
                state: "running".to_owned(),
                restarts: 0,
                generation: None,
                started_at: Some(self.supervisor.started_at),
                last_error: None,
                pid: None,
                address: None,
                children,
            },
        }
    }

    /// Seconds since the event at `offset` was accepted (0 if unreadable or
    /// slow to read).
    async fn oldest_age(&self, offset: Offset) -> f64 {
        let Some(log) = self.log() else {
            return 0.0;
        };
        let Ok(Ok(records)) = tokio::time::timeout(LOG_READ_TIMEOUT, log.read(offset, 1)).await
        else {
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
}
