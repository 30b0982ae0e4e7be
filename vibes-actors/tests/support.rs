//! What the actor tests share: logs on real backends, a scriptable handler,
//! and waiting for conditions with a deadline.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use vibes_actors::backoff::Backoff;
use vibes_actors::group::{GroupConfig, GroupSpec, RestartPolicy};
use vibes_core::{Delivery, Handled, Handler, StoredEvent, VibesEvent};
use vibes_iggy::iggy::{IggyConfig, IggyLog, IggyManager};
use vibes_iggy::{
    BackendKind, EventConsumer, EventLog, LogError, LogOptions, Offset, OpenedLog, Record,
    StartPosition,
};

/// How long any condition may take before a test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `condition` holds, checking every few milliseconds; panics
/// with `what` after [`DEADLINE`].
pub(crate) async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `condition` becomes true within `window` (for checking that
/// something does *not* happen).
pub(crate) async fn happens_within<F, Fut>(window: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A log on a real backend, and what keeps it alive.
pub(crate) struct TestLog {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) dir: Option<tempfile::TempDir>,
    /// A managed `iggy-server`, handed to the first Supervisor.
    pub(crate) manager: Mutex<Option<IggyManager>>,
}

impl TestLog {
    pub(crate) fn memory() -> Self {
        Self {
            log: Arc::new(vibes_iggy::memory::MemoryLog::new(LogOptions::default())),
            dir: None,
            manager: Mutex::new(None),
        }
    }

    pub(crate) fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log =
            vibes_iggy::embedded::EmbeddedLog::open(dir.path(), LogOptions::default()).unwrap();
        Self {
            log: Arc::new(log),
            dir: Some(dir),
            manager: Mutex::new(None),
        }
    }

    /// A managed `iggy-server` when `VIBES_IGGY_SERVER` names one; else
    /// `None`, after saying once that the Iggy tests are skipped.
    pub(crate) async fn iggy() -> Option<Self> {
        static SAID: AtomicBool = AtomicBool::new(false);
        let Some(binary) = std::env::var_os("VIBES_IGGY_SERVER").filter(|path| !path.is_empty())
        else {
            if !SAID.swap(true, Ordering::Relaxed) {
                // Straight to stderr: the harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: iggy actor tests (set VIBES_IGGY_SERVER to an iggy-server binary \
                     to run them)"
                );
            }
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = IggyConfig {
            server_binary: Some(binary.into()),
            ..IggyConfig::default()
        };
        let manager = IggyManager::start(&config, dir.path()).await.unwrap();
        let log = IggyLog::connect(&manager.connection(), LogOptions::default())
            .await
            .unwrap();
        Some(Self {
            log: Arc::new(log),
            dir: Some(dir),
            manager: Mutex::new(Some(manager)),
        })
    }

    /// The log as the Supervisor takes it.
    pub(crate) fn opened(&self) -> OpenedLog {
        OpenedLog {
            log: self.log.clone(),
            manager: self.manager.lock().unwrap().take(),
            reason: "test".into(),
            lock: None,
        }
    }
}

/// `count` distinct events.
pub(crate) fn events(count: usize) -> Vec<StoredEvent> {
    (0..count)
        .map(|i| {
            StoredEvent::new(VibesEvent::UserInput {
                session_id: "s".into(),
                content: format!("event {i}"),
                source: "test".into(),
            })
        })
        .collect()
}

pub(crate) async fn fill(log: &dyn EventLog, count: usize) {
    for chunk in events(count).chunks(1000) {
        log.append_batch(chunk.to_vec()).await.unwrap();
    }
}

/// What a [`Script`] handler does, shared by every handler it makes (they
/// outlive restarts, as the log does).
#[derive(Default)]
pub(crate) struct Script {
    /// How many times each offset was handed to a handler.
    pub(crate) seen: Mutex<HashMap<u64, u32>>,
    /// Offsets that panic the first time they are seen.
    pub(crate) panic_once: Mutex<HashSet<u64>>,
    /// Offsets that panic every time.
    pub(crate) panic_always: Mutex<HashSet<u64>>,
    /// Offsets whose handling fails every time.
    pub(crate) fail_always: Mutex<HashSet<u64>>,
    /// Every batch panics while this is set.
    pub(crate) panic_everything: AtomicBool,
}

pub(crate) const INJECTED: &str = "injected crash";

impl Script {
    pub(crate) fn factory(self: &Arc<Self>) -> vibes_actors::group::HandlerFactory {
        quiet_injected_panics();
        let script = self.clone();
        Arc::new(move || Box::new(ScriptHandler(script.clone())) as Box<dyn Handler>)
    }

    pub(crate) fn seen(&self, offset: u64) -> u32 {
        self.seen.lock().unwrap().get(&offset).copied().unwrap_or(0)
    }

    pub(crate) fn total_seen(&self) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .values()
            .map(|n| u64::from(*n))
            .sum()
    }
}

struct ScriptHandler(Arc<Script>);

#[async_trait]
impl Handler for ScriptHandler {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        let script = &self.0;
        for (offset, _) in batch {
            *script.seen.lock().unwrap().entry(*offset).or_default() += 1;
            if script.panic_everything.load(Ordering::SeqCst)
                || script.panic_always.lock().unwrap().contains(offset)
                || script.panic_once.lock().unwrap().remove(offset)
            {
                panic!("{INJECTED} at offset {offset}");
            }
            if script.fail_always.lock().unwrap().contains(offset) {
                return Handled::Failed {
                    offset: *offset,
                    error: format!("offset {offset} is poison"),
                };
            }
        }
        Handled::All
    }
}

/// Keeps the injected panics out of the test output; every other panic is
/// printed as usual.
pub(crate) fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|message| message.starts_with(INJECTED));
            if !injected {
                default(info);
            }
        }));
    });
}

/// A Supervisor over `log` (no managed server) running `groups`.
pub(crate) async fn start_supervisor(
    log: Arc<dyn EventLog>,
    groups: Vec<GroupSpec>,
) -> vibes_actors::supervisor::SupervisorHandle {
    let (supervisor, _join) =
        vibes_actors::supervisor::Supervisor::start(vibes_actors::supervisor::SupervisorArgs {
            log: OpenedLog {
                log,
                manager: None,
                reason: "test".into(),
                lock: None,
            },
            groups,
            writer: vibes_actors::LogWriterConfig::default(),
        })
        .await
        .unwrap();
    supervisor
}

/// A group that retries and restarts fast, for tests.
pub(crate) fn fast_group(name: &str, script: &Arc<Script>) -> GroupSpec {
    let mut config = GroupConfig::new(name);
    config.retry = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(5),
    };
    config.restart = RestartPolicy {
        backoff: Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(10),
        },
        max_restarts: 1000,
        window: Duration::from_secs(60),
        cooldown: Duration::from_secs(300),
        crash_loop_limit: 3,
    };
    GroupSpec {
        config,
        handler: script.factory(),
    }
}

/// A real log behind a gate: writes wait until the test opens it; chosen
/// writes fail as unavailable without reaching the log (as a rolled-back
/// transaction would), or panic the writer that makes them.
#[derive(Debug, Clone)]
pub(crate) struct GatedLog {
    inner: Arc<dyn EventLog>,
    backend: BackendKind,
    gate: Arc<watch::Sender<bool>>,
    /// `append_batch` calls so far, failed ones included.
    writes: Arc<AtomicUsize>,
    /// Which writes fail, counted from 1.
    failing: Arc<Mutex<Vec<usize>>>,
    /// Which writes panic, counted from 1.
    panicking: Arc<Mutex<Vec<usize>>>,
}

impl GatedLog {
    pub(crate) fn new(inner: Arc<dyn EventLog>) -> Arc<Self> {
        Arc::new(Self {
            backend: inner.backend(),
            inner,
            gate: Arc::new(watch::channel(false).0),
            writes: Arc::default(),
            failing: Arc::default(),
            panicking: Arc::default(),
        })
    }

    pub(crate) fn posing_as(self: Arc<Self>, backend: BackendKind) -> Arc<Self> {
        let mut log = Arc::unwrap_or_clone(self);
        log.backend = backend;
        Arc::new(log)
    }

    pub(crate) fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Writes wait again until [`GatedLog::open`].
    pub(crate) fn close(&self) {
        self.gate.send_replace(false);
    }

    pub(crate) fn panic_writes(&self, writes: &[usize]) {
        *self.panicking.lock().unwrap() = writes.to_vec();
    }

    pub(crate) fn fail_writes(&self, writes: &[usize]) {
        *self.failing.lock().unwrap() = writes.to_vec();
    }

    pub(crate) fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventLog for GatedLog {
    fn backend(&self) -> BackendKind {
        self.backend
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        let write = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut gate = self.gate.subscribe();
        gate.wait_for(|open| *open).await.unwrap();
        if self.panicking.lock().unwrap().contains(&write) {
            panic!("{INJECTED}: write {write} of the log writer");
        }
        if self.failing.lock().unwrap().contains(&write) {
            return Err(LogError::Unavailable {
                backend: self.backend,
                action: "append events",
                source: "injected failure".into(),
            });
        }
        self.inner.append_batch(events).await
    }

    async fn append_records(
        &self,
        payloads: Vec<vibes_iggy::Bytes>,
    ) -> Result<Range<Offset>, LogError> {
        self.inner.append_records(payloads).await
    }

    async fn groups(&self) -> Result<Vec<vibes_iggy::GroupOffset>, LogError> {
        self.inner.groups().await
    }

    async fn high_water_mark(&self) -> Result<Offset, LogError> {
        self.inner.high_water_mark().await
    }

    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        self.inner.read(from, max).await
    }

    async fn consumer(
        &self,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError> {
        self.inner.consumer(group, start).await
    }
}
