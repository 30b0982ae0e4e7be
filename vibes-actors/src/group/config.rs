//! A group's configuration, fixed when it is registered: its handler
//! factory, how it polls and retries, and when the Supervisor restarts it.

use std::sync::Arc;
use std::time::Duration;

use vibes_core::Handler;
use vibes_iggy::StartPosition;

use crate::backoff::Backoff;

/// Makes a fresh handler: at the first start and after every restart.
pub type HandlerFactory = Arc<dyn Fn() -> Box<dyn Handler> + Send + Sync>;

/// How a group runs, fixed when it is registered.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name in the log.
    pub name: String,
    /// Where a group that never committed starts.
    pub start: StartPosition,
    /// The most events handed to the handler at once.
    pub batch_size: usize,
    /// How long one step waits for an event before it yields to the
    /// mailbox (and control messages).
    pub poll_timeout: Duration,
    /// Handler failures in a row at one event before it is dead-lettered.
    pub max_attempts: u32,
    /// The delays between those attempts.
    pub retry: Backoff,
    /// The delays between tries of a step the storage under the log failed
    /// (a full disk, an I/O error): the group waits, it does not fail.
    pub storage_retry: Backoff,
    /// When and how often the Supervisor restarts the group.
    pub restart: RestartPolicy,
    /// A batch in the handler for longer than this shows the group as
    /// `stuck` (in `/api/groups`, `/metrics` and `/readyz`); the group is
    /// not stopped for it.
    pub stuck_after: Duration,
}

impl GroupConfig {
    /// A group with the defaults: from the beginning, batches of 100,
    /// 3 attempts per event.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            start: StartPosition::Beginning,
            batch_size: 100,
            poll_timeout: Duration::from_millis(100),
            max_attempts: 3,
            retry: Backoff {
                min: Duration::from_millis(50),
                max: Duration::from_secs(5),
            },
            storage_retry: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            restart: RestartPolicy::default(),
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

/// How long a batch may be in the handler before the group shows `stuck`,
/// by default: longer than a webhook's retries take.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(120);

/// How long a `failed` group waits before it is tried again, by default.
pub const DEFAULT_FAILED_COOLDOWN: Duration = Duration::from_secs(300);

/// When the Supervisor restarts a failed group, and when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delays before restarts (about 100 ms up to 30 s).
    pub backoff: Backoff,
    /// More than this many restarts within `window` marks the group
    /// `failed` and leaves it stopped for `cooldown`, or until an operator
    /// restarts it.
    pub max_restarts: usize,
    pub window: Duration,
    /// How long a `failed` group stays stopped before it is tried again
    /// (with a fresh restart window).
    pub cooldown: Duration,
    /// Restarts in a row that crash at the same offset before that event is
    /// dead-lettered.
    pub crash_loop_limit: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            max_restarts: 10,
            window: Duration::from_secs(60),
            cooldown: DEFAULT_FAILED_COOLDOWN,
            crash_loop_limit: 3,
        }
    }
}

/// A group as registered with the Supervisor.
#[derive(Clone)]
pub struct GroupSpec {
    pub config: GroupConfig,
    pub handler: HandlerFactory,
}

impl std::fmt::Debug for GroupSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSpec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
