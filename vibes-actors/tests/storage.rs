//! Groups over a log whose storage fails for a while (a full disk, an I/O
//! error): they back off by themselves, keep their restart budget, skip
//! nothing and catch up once it works; and a group that did fail comes back
//! after its cool-down.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use vibes_actors::backoff::Backoff;
use vibes_actors::group::{GroupSpec, GroupState};
use vibes_actors::supervisor::{ControlError, SupervisorHandle};
use vibes_core::StoredEvent;
use vibes_iggy::{
    BackendKind, EventConsumer, EventLog, LogError, Offset, Record, SeekTo, StartPosition,
};

use crate::support::{Script, TestLog, fast_group, fill, start_supervisor, wait_for};

/// Which operations of a [`FailingLog`] fail, as a full disk (writes) or a
/// broken one (reads) would fail them.
#[derive(Debug, Default)]
struct Faults {
    /// Polls.
    reads: AtomicBool,
    /// Commits and seeks (a group's offset).
    offsets: AtomicBool,
    /// Appends (a dead letter).
    appends: AtomicBool,
}

fn full_disk(action: &'static str) -> LogError {
    LogError::Unavailable {
        backend: BackendKind::Embedded,
        action,
        source: "database or disk is full".into(),
    }
}

/// A real log whose writes or reads fail while a fault is set.
#[derive(Debug)]
struct FailingLog {
    inner: Arc<dyn EventLog>,
    faults: Arc<Faults>,
}

#[async_trait]
impl EventLog for FailingLog {
    fn backend(&self) -> BackendKind {
        self.inner.backend()
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        if self.faults.appends.load(Ordering::SeqCst) {
            return Err(full_disk("append events"));
        }
        self.inner.append_batch(events).await
    }

    async fn append_records(
        &self,
        payloads: Vec<vibes_iggy::Bytes>,
    ) -> Result<Range<Offset>, LogError> {
        if self.faults.appends.load(Ordering::SeqCst) {
            return Err(full_disk("append records"));
        }
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
        let inner = self.inner.consumer(group, start).await?;
        Ok(Box::new(FailingConsumer {
            group: group.to_owned(),
            position: inner.position(),
            inner: tokio::sync::Mutex::new(inner),
            faults: self.faults.clone(),
        }))
    }
}

#[derive(Debug)]
struct FailingConsumer {
    group: String,
    /// The inner consumer's, after each call.
    position: Offset,
    /// In a mutex only to make the consumer `Sync`: it is never contended.
    inner: tokio::sync::Mutex<Box<dyn EventConsumer>>,
    faults: Arc<Faults>,
}

#[async_trait]
impl EventConsumer for FailingConsumer {
    fn group(&self) -> &str {
        &self.group
    }

    fn position(&self) -> Offset {
        self.position
    }

    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        if self.faults.reads.load(Ordering::SeqCst) {
            return Err(full_disk("read events"));
        }
        let inner = self.inner.get_mut();
        let records = inner.poll(max, timeout).await;
        self.position = inner.position();
        records
    }

    async fn commit(&mut self, offset: Offset) -> Result<(), LogError> {
        if self.faults.offsets.load(Ordering::SeqCst) {
            return Err(full_disk("store a group's offset"));
        }
        self.inner.get_mut().commit(offset).await
    }

    async fn seek(&mut self, to: SeekTo) -> Result<Offset, LogError> {
        if self.faults.offsets.load(Ordering::SeqCst) {
            return Err(full_disk("store a group's offset"));
        }
        let inner = self.inner.get_mut();
        let position = inner.seek(to).await;
        self.position = inner.position();
        position
    }

    async fn committed_offset(&self) -> Result<Option<Offset>, LogError> {
        self.inner.lock().await.committed_offset().await
    }
}

/// A group that retries storage fast, and that the budget of 2 restarts
/// would mark `failed` quickly if storage failures spent it.
fn group(name: &str, script: &Arc<Script>) -> GroupSpec {
    let mut spec = fast_group(name, script);
    spec.config.batch_size = 10;
    spec.config.storage_retry = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
    spec.config.restart.max_restarts = 2;
    spec
}

async fn state(supervisor: &SupervisorHandle, group: &str) -> GroupState {
    supervisor.group(group).await.unwrap().state
}

/// Before: a commit or poll that failed on a full disk failed the actor;
/// ten of them in a minute marked the group `failed` for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_do_not_spend_the_restart_budget() {
    let test_log = TestLog::embedded();
    let faults = Arc::new(Faults::default());
    let log: Arc<dyn EventLog> = Arc::new(FailingLog {
        inner: test_log.log.clone(),
        faults: faults.clone(),
    });
    fill(&*test_log.log, 20).await;
    let script = Arc::new(Script::default());
    // Offset 25 is poison: its dead letter must be written, not skipped,
    // even though the disk is full when it is given up on.
    script.fail_always.lock().unwrap().insert(25);
    faults.reads.store(true, Ordering::SeqCst);
    let supervisor = start_supervisor(log, vec![group("g", &script)]).await;

    // Polls fail: it backs off, names the failure, handles nothing.
    wait_for("the group to back off on failing reads", || async {
        let group = supervisor.group("g").await.unwrap();
        group.state == GroupState::BackingOff
            && group
                .last_error
                .is_some_and(|error| error.contains("storage") && error.contains("disk is full"))
    })
    .await;
    assert_eq!(script.total_seen(), 0);

    // Reads work, offsets cannot be stored: a batch is handled, its commit
    // fails, and it waits there.
    faults.offsets.store(true, Ordering::SeqCst);
    faults.reads.store(false, Ordering::SeqCst);
    wait_for("the first batch to be handled", || async {
        script.total_seen() >= 10
    })
    .await;
    fill(&*test_log.log, 20).await;
    wait_for("the group to back off on failing commits", || async {
        let group = supervisor.group("g").await.unwrap();
        group.state == GroupState::BackingOff
            && group
                .last_error
                .is_some_and(|error| error.contains("store a group's offset"))
    })
    .await;

    // Control messages are answered while it backs off.
    supervisor.pause("g").await.unwrap();
    wait_for("the pause", || async {
        state(&supervisor, "g").await == GroupState::Paused
    })
    .await;
    supervisor.resume("g").await.unwrap();
    wait_for("the resume", || async {
        state(&supervisor, "g").await == GroupState::BackingOff
    })
    .await;
    let err = supervisor
        .seek("g", SeekTo::Offset(0), false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ControlError::Log(cause) if cause.is_transient()),
        "{err:?}"
    );
    assert_eq!(supervisor.group("g").await.unwrap().committed, None);

    // Offsets work, appends fail: it goes on up to the poison event, whose
    // dead letter cannot be written, and waits there.
    faults.appends.store(true, Ordering::SeqCst);
    faults.offsets.store(false, Ordering::SeqCst);
    wait_for("the group to back off on the dead letter", || async {
        let group = supervisor.group("g").await.unwrap();
        group.state == GroupState::BackingOff
            && script.seen(25) >= 3
            && group
                .last_error
                .is_some_and(|error| error.contains("append events"))
    })
    .await;
    let group = supervisor.group("g").await.unwrap();
    assert_eq!(group.committed, Some(24), "nothing past the poison event");
    assert!(supervisor.dead_letters().is_empty());
    assert_eq!(group.restarts, 0, "{group:?}");

    // The disk has room again: it catches up by itself.
    faults.appends.store(false, Ordering::SeqCst);
    // 40 events and the dead letter of offset 25.
    wait_for("the group to commit everything", || async {
        supervisor.group("g").await.unwrap().committed == Some(40)
    })
    .await;
    wait_for("the group to run again", || async {
        state(&supervisor, "g").await == GroupState::Running
    })
    .await;
    let group = supervisor.group("g").await.unwrap();
    assert_eq!(group.restarts, 0, "{group:?}");
    for offset in 0..40 {
        assert!(script.seen(offset) >= 1, "offset {offset} was skipped");
    }
    let letters = supervisor.dead_letters();
    assert_eq!(
        letters.iter().map(|l| l.offset).collect::<Vec<_>>(),
        vec![25],
        "only the poison event is dead-lettered, once: {letters:?}"
    );
    supervisor.shutdown().await.unwrap();
}

/// Before: a group marked `failed` stayed stopped until an operator
/// restarted it, however long ago its trouble passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_is_retried_after_its_cooldown() {
    let test_log = TestLog::memory();
    fill(&*test_log.log, 10).await;
    let script = Arc::new(Script::default());
    script.panic_everything.store(true, Ordering::SeqCst);
    let mut spec = fast_group("doomed", &script);
    spec.config.restart.max_restarts = 2;
    spec.config.restart.crash_loop_limit = 100;
    spec.config.restart.cooldown = Duration::from_millis(500);
    let supervisor = start_supervisor(test_log.log.clone(), vec![spec]).await;

    wait_for("the group to be marked failed", || async {
        state(&supervisor, "doomed").await == GroupState::Failed
    })
    .await;
    // Whatever crashed it passes while it is failed.
    script.panic_everything.store(false, Ordering::SeqCst);
    wait_for("the group to come back by itself", || async {
        supervisor.group("doomed").await.unwrap().committed == Some(9)
    })
    .await;
    let group = supervisor.group("doomed").await.unwrap();
    assert_eq!(group.state, GroupState::Running);
    assert_eq!(group.restarts, 3, "two restarts, then the cool-down's");
    supervisor.shutdown().await.unwrap();
}
