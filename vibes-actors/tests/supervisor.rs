//! The Supervisor and its ConsumerGroups on real backends: crashes,
//! poison events, crash loops, restart intensity, control operations and
//! shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vibes_actors::group::{GroupConfig, GroupSpec, GroupState};
use vibes_actors::supervisor::{ControlError, Supervisor, SupervisorArgs, SupervisorHandle};
use vibes_iggy::{EventLog, LogOptions, SeekTo};

use vibes_actors::WriterError;

use crate::support::{Script, TestLog, events, fast_group, fill, happens_within, wait_for};

async fn start(log: &TestLog, groups: Vec<GroupSpec>) -> SupervisorHandle {
    let (supervisor, _join) = Supervisor::start(SupervisorArgs {
        log: log.opened(),
        groups,
        writer: vibes_actors::LogWriterConfig::default(),
    })
    .await
    .unwrap();
    supervisor
}

/// Waits until `group` has committed everything below `end`.
async fn wait_committed(supervisor: &SupervisorHandle, group: &str, end: u64) {
    wait_for(&format!("{group} to commit up to {}", end - 1), || async {
        supervisor.group(group).await.unwrap().committed == Some(end - 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_offsets_lose_nothing_and_redeliver_at_most_a_batch_each() {
    crash_injection(TestLog::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iggy_crashes_at_random_offsets_lose_nothing() {
    if let Some(log) = TestLog::iggy().await {
        crash_injection(log).await;
    }
}

/// A handler that panics at 20 seeded random offsets over 100k events:
/// every offset is handled at least once, the group commits the whole log,
/// and each crash re-delivers at most one batch.
async fn crash_injection(log: TestLog) {
    const EVENTS: usize = 100_000;
    const CRASHES: usize = 20;
    fill(&*log.log, EVENTS).await;
    let script = Arc::new(Script::default());
    let mut rng = StdRng::seed_from_u64(0x5eed);
    while script.panic_once.lock().unwrap().len() < CRASHES {
        let offset = rng.random_range(0..EVENTS as u64);
        script.panic_once.lock().unwrap().insert(offset);
    }
    let spec = fast_group("crashy", &script);
    let batch = spec.config.batch_size as u64;
    let supervisor = start(&log, vec![spec]).await;

    wait_committed(&supervisor, "crashy", EVENTS as u64).await;

    for offset in 0..EVENTS as u64 {
        assert!(
            script.seen(offset) >= 1,
            "offset {offset} was never handled"
        );
    }
    let redelivered = script.total_seen() - EVENTS as u64;
    assert!(
        redelivered <= CRASHES as u64 * batch,
        "{redelivered} redeliveries for {CRASHES} crashes of batches of {batch}"
    );
    let group = supervisor.group("crashy").await.unwrap();
    assert_eq!(group.restarts, CRASHES as u64);
    assert_eq!(group.state, GroupState::Running);
    assert_eq!(group.lag_events, 0);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_after_its_attempts_and_the_group_goes_on() {
    poison(TestLog::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iggy_a_poison_event_is_dead_lettered() {
    if let Some(log) = TestLog::iggy().await {
        poison(log).await;
    }
}

async fn poison(log: TestLog) {
    fill(&*log.log, 10).await;
    let script = Arc::new(Script::default());
    script.fail_always.lock().unwrap().insert(5);
    let supervisor = start(&log, vec![fast_group("poisoned", &script)]).await;

    // 10 events plus the dead letter the group wrote (and then read).
    wait_committed(&supervisor, "poisoned", 11).await;

    assert_eq!(script.seen(5), 3, "tried max_attempts times");
    for offset in (0..10).filter(|offset| *offset != 5) {
        assert_eq!(script.seen(offset), 1, "offset {offset}");
    }
    let letters = supervisor.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].group.as_str(), letters[0].offset),
        ("poisoned", 5)
    );
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].error.contains("poison"), "{}", letters[0].error);
    let group = supervisor.group("poisoned").await.unwrap();
    assert_eq!((group.handler_errors, group.dead_letters), (3, 1));
    assert_eq!(group.open_dead_letters, 1);
    assert_eq!(group.state, GroupState::Running);

    // Replaying while it still fails keeps it open; once fixed, it closes.
    let err = supervisor.replay("poisoned", 5).await.unwrap_err();
    assert!(err.to_string().contains("failed again"), "{err}");
    script.fail_always.lock().unwrap().clear();
    supervisor.replay("poisoned", 5).await.unwrap();
    assert!(supervisor.dead_letters().is_empty());
    assert_eq!(script.seen(5), 5);
    assert!(matches!(
        supervisor.replay("poisoned", 5).await,
        Err(ControlError::NoSuchDeadLetter { offset: 5, .. })
    ));
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_rebuilt_from_the_log_and_can_be_skipped() {
    let log = TestLog::embedded();
    fill(&*log.log, 5).await;
    let script = Arc::new(Script::default());
    script.fail_always.lock().unwrap().insert(2);
    let supervisor = start(&log, vec![fast_group("g", &script)]).await;
    wait_committed(&supervisor, "g", 6).await;
    supervisor.shutdown().await.unwrap();

    // A new Supervisor on the same log finds the open dead letter.
    let supervisor = start(&log, vec![fast_group("g", &script)]).await;
    let letters = supervisor.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    supervisor.skip("g", 2).await.unwrap();
    assert!(supervisor.dead_letters().is_empty());
    assert!(matches!(
        supervisor.skip("g", 2).await,
        Err(ControlError::NoSuchDeadLetter { .. })
    ));
    assert!(matches!(
        supervisor.skip("nope", 2).await,
        Err(ControlError::UnknownGroup(_))
    ));
    supervisor.shutdown().await.unwrap();
    let supervisor = start(&log, vec![]).await;
    assert!(
        supervisor.dead_letters().is_empty(),
        "the skip is in the log"
    );
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_dead_lettered_at_once() {
    let memory = vibes_iggy::memory::MemoryLog::new(LogOptions::default());
    let log = TestLog {
        log: Arc::new(memory.clone()),
        dir: None,
        manager: std::sync::Mutex::new(None),
    };
    fill(&*log.log, 3).await;
    memory.append_raw(b"not json");
    fill(&*log.log, 3).await;
    let script = Arc::new(Script::default());
    let supervisor = start(&log, vec![fast_group("g", &script)]).await;
    wait_committed(&supervisor, "g", 8).await;
    let letters = supervisor.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].offset, letters[0].attempts), (3, 1));
    assert!(
        letters[0].error.contains("offset 3"),
        "{}",
        letters[0].error
    );
    for offset in [0, 1, 2, 4, 5, 6] {
        assert_eq!(script.seen(offset), 1, "offset {offset}");
    }
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_that_crashes_every_restart_is_quarantined() {
    crash_loop(TestLog::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iggy_an_offset_that_crashes_every_restart_is_quarantined() {
    if let Some(log) = TestLog::iggy().await {
        crash_loop(log).await;
    }
}

async fn crash_loop(log: TestLog) {
    fill(&*log.log, 10).await;
    let script = Arc::new(Script::default());
    script.panic_always.lock().unwrap().insert(3);
    let supervisor = start(&log, vec![fast_group("looping", &script)]).await;

    wait_committed(&supervisor, "looping", 11).await;
    let letters = supervisor.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].offset, 3);
    assert!(letters[0].attempts >= 3);
    assert!(letters[0].error.contains("crashed"), "{}", letters[0].error);
    for offset in 4..10 {
        assert!(script.seen(offset) >= 1, "offset {offset}");
    }
    let group = supervisor.group("looping").await.unwrap();
    assert_eq!(group.state, GroupState::Running);
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_restarts_mark_a_group_failed_until_an_operator_restarts_it() {
    let log = TestLog::memory();
    fill(&*log.log, 10).await;
    let script = Arc::new(Script::default());
    script.panic_everything.store(true, Ordering::SeqCst);
    let mut spec = fast_group("doomed", &script);
    spec.config.restart.max_restarts = 3;
    spec.config.restart.crash_loop_limit = 100;
    let other = Arc::new(Script::default());
    let supervisor = start(&log, vec![spec, fast_group("bystander", &other)]).await;

    wait_for("the group to be marked failed", || async {
        supervisor.group("doomed").await.unwrap().state == GroupState::Failed
    })
    .await;
    let group = supervisor.group("doomed").await.unwrap();
    assert_eq!(group.restarts, 3);
    assert!(group.last_error.unwrap().contains("injected crash"));
    // A failed group stays stopped, and the others go on.
    wait_committed(&supervisor, "bystander", 10).await;
    assert!(
        !happens_within(Duration::from_millis(300), || async {
            supervisor.group("doomed").await.unwrap().state != GroupState::Failed
        })
        .await
    );

    script.panic_everything.store(false, Ordering::SeqCst);
    supervisor.restart("doomed").await.unwrap();
    wait_committed(&supervisor, "doomed", 10).await;
    assert_eq!(
        supervisor.group("doomed").await.unwrap().state,
        GroupState::Running
    );
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_seek_with_a_dry_run() {
    let log = TestLog::embedded();
    fill(&*log.log, 10).await;
    let script = Arc::new(Script::default());
    let supervisor = start(&log, vec![fast_group("g", &script)]).await;
    wait_committed(&supervisor, "g", 10).await;

    supervisor.pause("g").await.unwrap();
    wait_for("the pause", || async {
        supervisor.group("g").await.unwrap().state == GroupState::Paused
    })
    .await;
    fill(&*log.log, 5).await;
    assert!(
        !happens_within(Duration::from_millis(300), || async {
            script.total_seen() > 10
        })
        .await,
        "a paused group handles nothing"
    );
    let group = supervisor.group("g").await.unwrap();
    assert_eq!(group.lag_events, 5);
    assert!(group.lag_seconds > 0.0);

    let report = supervisor.seek("g", SeekTo::Offset(2), true).await.unwrap();
    assert_eq!(
        (report.from, report.to, report.replayed, report.skipped),
        (10, 2, 8, 0)
    );
    assert_eq!(
        supervisor.group("g").await.unwrap().committed,
        Some(9),
        "a dry run moves nothing"
    );
    let report = supervisor.seek("g", SeekTo::End, true).await.unwrap();
    assert_eq!((report.replayed, report.skipped), (0, 5));
    assert!(matches!(
        supervisor.seek("g", SeekTo::Offset(99), true).await,
        Err(ControlError::OffsetOutOfRange { .. })
    ));

    supervisor
        .seek("g", SeekTo::Offset(2), false)
        .await
        .unwrap();
    supervisor.resume("g").await.unwrap();
    wait_committed(&supervisor, "g", 15).await;
    for offset in 2..10 {
        assert_eq!(script.seen(offset), 2, "offset {offset} replayed once");
    }
    assert!(matches!(
        supervisor.pause("nope").await,
        Err(ControlError::UnknownGroup(_))
    ));
    supervisor.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_handled_and_a_restart_resumes_there() {
    let mut test_log = TestLog::embedded();
    let temp = test_log.dir.take().unwrap();
    let dir = temp.path().to_owned();
    fill(&*test_log.log, 1000).await;
    let script = Arc::new(Script::default());
    let supervisor = start(&test_log, vec![fast_group("g", &script)]).await;
    // Producers go on appending through the LogWriter while it shuts down.
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let writer = supervisor.writer().clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for event in events(500) {
                    match writer.append(event.clone()).await {
                        Ok(offset) => acknowledged.push((offset, event)),
                        Err(WriterError::Stopped) => break,
                        Err(WriterError::Busy { .. }) => {}
                        Err(err) => panic!("append failed: {err}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    wait_for("some progress", || async { script.total_seen() > 100 }).await;
    supervisor.shutdown().await.unwrap();
    let mut acknowledged = Vec::new();
    for producer in producers {
        acknowledged.extend(producer.await.unwrap());
    }
    assert!(matches!(
        supervisor.writer().append(events(1).remove(0)).await,
        Err(WriterError::Stopped)
    ));
    let handled = script.seen.lock().unwrap().keys().max().copied().unwrap();
    drop(test_log);

    let log = vibes_iggy::embedded::EmbeddedLog::open(&dir, LogOptions::default()).unwrap();
    let consumer = log
        .consumer("g", vibes_iggy::StartPosition::Beginning)
        .await
        .unwrap();
    assert_eq!(
        consumer.committed_offset().await.unwrap(),
        Some(handled),
        "every handled event is committed"
    );
    let end = log.high_water_mark().await.unwrap();
    assert_eq!(
        end,
        1000 + acknowledged.len() as u64,
        "nothing but what was acknowledged"
    );
    for (offset, event) in &acknowledged {
        let record = log.read(*offset, 1).await.unwrap().remove(0);
        assert_eq!(
            &record.event().unwrap(),
            event,
            "acknowledged event at {offset}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_name_twice_is_refused() {
    let log = TestLog::memory();
    let script = Arc::new(Script::default());
    let supervisor = start(&log, vec![fast_group("g", &script)]).await;
    let again = GroupSpec {
        config: GroupConfig::new("g"),
        handler: script.factory(),
    };
    assert!(matches!(
        supervisor.register(again).await,
        Err(ControlError::AlreadyRegistered(name)) if name == "g"
    ));
    supervisor.shutdown().await.unwrap();
    assert!(
        !supervisor.ping(Duration::from_secs(1)).await,
        "the supervisor is gone"
    );
    assert!(matches!(
        supervisor.pause("g").await,
        Err(ControlError::ShuttingDown)
    ));
}
