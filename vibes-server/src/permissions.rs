//! Claude Code permission requests that wait for a remote decision.
//!
//! With `[remote_approval] enabled = true`, a `PermissionRequest` hook for
//! a tool the config allows is registered here once its `hook` event is
//! durable, under that event's offset: the request's one name everywhere
//! (the API, the UI, `vibesd approve`, the `permission_response` that
//! answers it). `vibesd hook` then waits on the firehose for that answer.
//!
//! A request is `pending` until the first decision (`decided`), and
//! `closed` once the hook says how its wait ended (`decided`, `timed_out`,
//! `unreachable`; each a `permission_outcome` event). A decision is taken
//! only while the request is pending: the first wins, and one that comes
//! after another, or after the hook gave the dialog back to the terminal,
//! is refused with what happened instead. A request whose hook never
//! reports is closed as `timed_out` a little after its wait.
//!
//! The table lives in memory: after a restart of vibesd no request is
//! pending (each waiting hook lost its socket and left the dialog to the
//! terminal), and a decision for one is refused after a look at the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, broadcast};
use vibes_actors::LogWriterHandle;
use vibes_core::{DecidedBy, HookPayload, StoredEvent, VibesEvent};
use vibes_iggy::{EventLog, Offset};

use crate::config::RemoteApproval;
use crate::error::ApiError;

/// How long past its wait a request whose hook never reported stays
/// pending: the hook's own outcome normally comes first.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long a closed request stays listed, for the UI to show what became
/// of it.
const KEEP_CLOSED: Duration = Duration::from_secs(600);

/// The most requests kept at once, pending ones included; the oldest
/// closed ones go first.
const MAX_KEPT: usize = 1000;

/// A request as the API and the UI see it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// The offset of the request's `hook` event.
    pub offset: Offset,
    pub session_id: String,
    pub tool: String,
    /// The tool's input, as Claude Code sent it (a Bash `command`, an
    /// Edit's `file_path`, `old_string` and `new_string`, …).
    pub tool_input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// When the request stops taking decisions at the latest.
    pub expires_at: DateTime<Utc>,
    /// `pending`, `decided` or `closed`.
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// How the hook's wait ended, once `closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Decided,
    Closed,
}

/// A decision taken, as its `permission_response` records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `allow` or `deny`.
    pub behavior: Behavior,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The offset of the `permission_response`.
    pub offset: Offset,
    pub decided_by: DecidedBy,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    Allow,
    Deny,
}

/// How a hook's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Claude Code got the decision.
    Decided,
    /// None came in time: the dialog went to the terminal.
    TimedOut,
    /// The hook lost vibesd while it waited: the dialog went to the
    /// terminal.
    Unreachable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decided => "decided",
            Self::TimedOut => "timed_out",
            Self::Unreachable => "unreachable",
        }
    }
}

/// What the hook is told to wait for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Wait {
    pub offset: Offset,
    pub wait_secs: u64,
}

/// Why a decision or an outcome was not taken.
#[derive(Debug)]
pub enum Refused {
    /// No permission request at that offset waited here.
    NotFound,
    /// Another decision came first.
    AlreadyDecided(Box<Request>),
    /// The request no longer takes decisions (its wait ended).
    NotPending(Option<Box<Request>>),
    /// An outcome of `decided` for a request nobody decided.
    NotDecided,
    /// The log did not take the event.
    Api(ApiError),
}

impl From<ApiError> for Refused {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

/// The requests, shared by the hook route, the decision routes and the
/// UI's socket; cheap to clone.
#[derive(Clone)]
pub struct Permissions {
    inner: Arc<Inner>,
}

struct Inner {
    config: RemoteApproval,
    writer: LogWriterHandle,
    log: Arc<dyn EventLog>,
    table: Mutex<BTreeMap<Offset, Request>>,
    live: broadcast::Sender<Arc<Request>>,
}

impl std::fmt::Debug for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permissions")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Permissions {
    pub fn new(config: RemoteApproval, writer: LogWriterHandle, log: Arc<dyn EventLog>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                writer,
                log,
                table: Mutex::default(),
                live: broadcast::channel(256).0,
            }),
        }
    }

    /// Registers the `PermissionRequest` hook recorded at `offset`, if the
    /// config lets it be decided remotely; the hook is then told to wait.
    pub async fn register(
        &self,
        offset: Offset,
        session_id: &str,
        payload: &HookPayload,
    ) -> Option<Wait> {
        if payload.hook_event_name != "PermissionRequest" {
            return None;
        }
        let tool = payload
            .tool_name
            .as_deref()
            .filter(|tool| !tool.is_empty())?;
        if !self.inner.config.decides(tool) {
            return None;
        }
        let wait = Duration::from_secs(self.inner.config.wait_secs);
        let now = Utc::now();
        let request = Request {
            offset,
            session_id: session_id.to_owned(),
            tool: tool.to_owned(),
            tool_input: payload.tool_input.clone().unwrap_or(Value::Null),
            cwd: payload.cwd.clone(),
            requested_at: now,
            expires_at: now + wait + GRACE,
            state: State::Pending,
            decision: None,
            outcome: None,
        };
        {
            let mut table = self.inner.table.lock().await;
            prune(&mut table, now);
            table.insert(offset, request.clone());
        }
        self.publish(request);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait + GRACE).await;
            this.expire(offset).await;
        });
        Some(Wait {
            offset,
            wait_secs: self.inner.config.wait_secs,
        })
    }

    /// The requests kept, newest first.
    pub async fn list(&self) -> Vec<Request> {
        let table = self.inner.table.lock().await;
        table.values().rev().cloned().collect()
    }

    pub async fn get(&self, offset: Offset) -> Option<Request> {
        self.inner.table.lock().await.get(&offset).cloned()
    }

    /// Changes from now on, one request (as it now stands) each.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Request>> {
        self.inner.live.subscribe()
    }

    /// Takes a decision for the pending request at `offset`: appends its
    /// `permission_response` and answers the request as it now stands.
    pub async fn decide(
        &self,
        offset: Offset,
        behavior: Behavior,
        message: Option<String>,
        decided_by: DecidedBy,
    ) -> Result<Request, Refused> {
        let mut table = self.inner.table.lock().await;
        let Some(request) = table.get_mut(&offset) else {
            drop(table);
            return Err(self.unknown(offset).await);
        };
        // A second decision hears of the first, whether or not the hook
        // has taken it yet.
        match request.state {
            State::Decided => return Err(Refused::AlreadyDecided(Box::new(request.clone()))),
            State::Closed if request.decision.is_some() => {
                return Err(Refused::AlreadyDecided(Box::new(request.clone())));
            }
            State::Closed => return Err(Refused::NotPending(Some(Box::new(request.clone())))),
            State::Pending => {}
        }
        let message = message.filter(|_| behavior == Behavior::Deny);
        let event = VibesEvent::PermissionResponse {
            session_id: request.session_id.clone(),
            request_id: offset.to_string(),
            approved: behavior == Behavior::Allow,
            request_offset: Some(offset),
            message: message.clone(),
            decided_by: Some(decided_by.clone()),
        };
        // Under the lock: a second decision waits for this one, then sees it.
        let stored = StoredEvent::new(event);
        let decided_at = stored.timestamp;
        let at = self
            .inner
            .writer
            .append(stored)
            .await
            .map_err(ApiError::from)?;
        request.state = State::Decided;
        request.decision = Some(Decision {
            behavior,
            message,
            offset: at,
            decided_by,
            decided_at,
        });
        let now = request.clone();
        drop(table);
        self.publish(now.clone());
        Ok(now)
    }

    /// Records how the hook's wait for the request at `offset` ended.
    ///
    /// A wait that ended without a decision while one was taken is refused
    /// with that decision, for the hook to give Claude Code after all.
    /// `None`: recorded for a request from before a restart of vibesd.
    pub async fn outcome(
        &self,
        offset: Offset,
        outcome: Outcome,
    ) -> Result<Option<Request>, Refused> {
        let mut table = self.inner.table.lock().await;
        let Some(request) = table.get_mut(&offset) else {
            drop(table);
            // A hook that lost vibesd to a restart reports to the new one:
            // recorded if the log holds such a request.
            return match self.unknown(offset).await {
                Refused::NotPending(None) if outcome != Outcome::Decided => {
                    let session_id = self.session_of(offset).await.unwrap_or_default();
                    self.append_outcome(session_id, offset, outcome).await?;
                    Ok(None)
                }
                refused => Err(refused),
            };
        };
        match (request.state, outcome) {
            (State::Closed, _) => return Err(Refused::NotPending(Some(Box::new(request.clone())))),
            (State::Pending, Outcome::Decided) => return Err(Refused::NotDecided),
            (State::Decided, Outcome::TimedOut | Outcome::Unreachable) => {
                return Err(Refused::AlreadyDecided(Box::new(request.clone())));
            }
            (State::Pending, _) | (State::Decided, Outcome::Decided) => {}
        }
        self.append_outcome(request.session_id.clone(), offset, outcome)
            .await?;
        request.state = State::Closed;
        request.outcome = Some(outcome);
        let now = request.clone();
        drop(table);
        self.publish(now.clone());
        Ok(Some(now))
    }

    /// Closes the request at `offset` if its hook never reported.
    async fn expire(&self, offset: Offset) {
        match self.outcome(offset, Outcome::TimedOut).await {
            Ok(Some(_)) => tracing::info!(
                offset,
                "a permission request's hook never reported; closed as timed out"
            ),
            Err(Refused::Api(err)) => tracing::warn!(
                offset,
                error = err.detail,
                "a permission request that outlived its wait could not be closed"
            ),
            Ok(None) | Err(_) => {}
        }
    }

    async fn append_outcome(
        &self,
        session_id: String,
        offset: Offset,
        outcome: Outcome,
    ) -> Result<(), ApiError> {
        let event = VibesEvent::PermissionOutcome {
            session_id,
            request_offset: offset,
            outcome: outcome.as_str().to_owned(),
        };
        self.inner.writer.append(StoredEvent::new(event)).await?;
        Ok(())
    }

    /// What to answer for an offset the table does not hold: a request
    /// from before a restart (no longer pending), or none at all.
    async fn unknown(&self, offset: Offset) -> Refused {
        match self.session_of(offset).await {
            Some(_) => Refused::NotPending(None),
            None => Refused::NotFound,
        }
    }

    /// The session of the `PermissionRequest` hook event at `offset`, if
    /// the log holds one there.
    async fn session_of(&self, offset: Offset) -> Option<String> {
        let records = self.inner.log.read(offset, 1).await.ok()?;
        let record = records.first().filter(|record| record.offset == offset)?;
        match record.event().ok()?.event {
            VibesEvent::Hook { session_id, event }
                if event.hook_event_name == "PermissionRequest" =>
            {
                Some(session_id)
            }
            _ => None,
        }
    }

    fn publish(&self, request: Request) {
        // Nobody watching is fine.
        let _ = self.inner.live.send(Arc::new(request));
    }
}

/// Drops closed requests older than [`KEEP_CLOSED`], and the oldest closed
/// ones beyond [`MAX_KEPT`].
fn prune(table: &mut BTreeMap<Offset, Request>, now: DateTime<Utc>) {
    let keep = chrono::Duration::from_std(KEEP_CLOSED).unwrap_or_default();
    table.retain(|_, request| request.state != State::Closed || now - request.expires_at < keep);
    while table.len() >= MAX_KEPT {
        let oldest = table
            .iter()
            .find(|(_, request)| request.state != State::Pending)
            .map(|(offset, _)| *offset);
        match oldest {
            Some(offset) => table.remove(&offset),
            // Every one pending: the oldest goes, its hook's wait ends at
            // the terminal.
            None => table.pop_first().map(|(_, request)| request),
        };
    }
}
