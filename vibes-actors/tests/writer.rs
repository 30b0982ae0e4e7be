//! The LogWriter against real backends (memory, and embedded in a temporary
//! directory): group commit, bounded admission, oversize batches, retries
//! and draining. Every case is written once and run against each backend.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use vibes_actors::writer::{LogWriter, LogWriterConfig, WriterError};
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::embedded::EmbeddedLog;
use vibes_iggy::memory::MemoryLog;
use vibes_iggy::{BackendKind, EventLog, LogError, LogOptions, Offset, Record};

use crate::support::GatedLog;

/// How long any condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A real backend, and the directory it lives in (if any).
struct Backend {
    log: Arc<dyn EventLog>,
    _dir: Option<tempfile::TempDir>,
}

fn memory(options: LogOptions) -> Backend {
    Backend {
        log: Arc::new(MemoryLog::new(options)),
        _dir: None,
    }
}

fn embedded(options: LogOptions) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), options).unwrap();
    Backend {
        log: Arc::new(log),
        _dir: Some(dir),
    }
}

/// Runs each named case against every backend.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$case(super::memory).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$case(super::embedded).await;
                }
            }
        )*
    };
}

on_every_backend!(
    concurrent_producers_get_dense_offsets_in_few_commits,
    a_full_queue_answers_busy_and_loses_nothing_acknowledged,
    an_oversize_batch_fails_alone,
    drain_writes_everything_queued_then_refuses,
    unavailable_is_retried_where_rollback_makes_it_safe,
    an_iggy_failure_is_not_retried_and_never_acknowledged,
    appends_after_the_writer_stopped_are_refused,
);

/// The Iggy log of the running Iggy test (a `fn` backend cannot capture it).
static IGGY: std::sync::OnceLock<Arc<dyn EventLog>> = std::sync::OnceLock::new();

/// 64 producers through the LogWriter onto a real iggy-server, when
/// `VIBES_IGGY_SERVER` names one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iggy_concurrent_producers_get_dense_offsets() {
    let Some(server) = crate::support::TestLog::iggy().await else {
        return;
    };
    let _ = IGGY.set(server.log.clone());
    concurrent_producers_get_dense_offsets_in_few_commits(|_| Backend {
        log: IGGY.get().cloned().unwrap(),
        _dir: None,
    })
    .await;
}

fn event(n: usize) -> StoredEvent {
    StoredEvent::new(VibesEvent::UserInput {
        session_id: format!("s{}", n % 7),
        content: format!("message {n}"),
        source: "test".to_owned(),
    })
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Starts `future` and polls it once. A writer call has sent its message
/// by then, so the actor's mailbox holds these calls in the order made.
async fn sent<F: Future>(future: F) -> Pin<Box<F>> {
    let mut future = Box::pin(future);
    std::future::poll_fn(|cx| {
        assert!(
            future.as_mut().poll(cx).is_pending(),
            "the call finished while the log was held"
        );
        Poll::Ready(())
    })
    .await;
    future
}

/// Awaits `future`, failing the test after [`DEADLINE`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Every record of the log, in offset order.
async fn read_all(log: &dyn EventLog) -> Vec<Record> {
    let end = log.high_water_mark().await.unwrap();
    let mut records = Vec::new();
    while (records.len() as Offset) < end {
        let page = log.read(records.len() as Offset, 1000).await.unwrap();
        assert!(!page.is_empty(), "the log ended before its high-water mark");
        records.extend(page);
    }
    records
}

/// Checks that the log holds exactly the acknowledged events, each at its
/// offset, with offsets dense from 0.
async fn assert_log_holds_exactly(log: &dyn EventLog, acked: &HashMap<Offset, StoredEvent>) {
    let records = read_all(log).await;
    assert_eq!(
        records.len(),
        acked.len(),
        "the log holds something other than what was acknowledged"
    );
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.offset, index as Offset, "offsets are not dense");
        let stored = record.event().unwrap();
        assert_eq!(
            acked.get(&record.offset).map(|event| event.event_id),
            Some(stored.event_id),
            "offset {} holds an event nobody was told was there",
            record.offset
        );
    }
}

/// Records acknowledged `events` at `range`, failing on any offset twice.
fn acknowledge(
    acked: &mut HashMap<Offset, StoredEvent>,
    range: Range<Offset>,
    events: &[StoredEvent],
) {
    assert_eq!(range.end - range.start, events.len() as Offset);
    for (offset, event) in range.zip(events) {
        assert!(
            acked.insert(offset, event.clone()).is_none(),
            "offset {offset} was given out twice"
        );
    }
}

async fn concurrent_producers_get_dense_offsets_in_few_commits(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions::default());
    let (_actor, writer, _join) =
        LogWriter::start(backend.log.clone(), LogWriterConfig::default(), None)
            .await
            .unwrap();
    const PRODUCERS: usize = 64;
    const SINGLES: usize = 40;
    const BATCHES: usize = 4;
    const BATCH: usize = 5;

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..SINGLES + BATCHES {
                    let events: Vec<_> = if n % (SINGLES / BATCHES + 1) == 0 && n > 0 {
                        (0..BATCH)
                            .map(|i| event(producer * 1000 + n * 10 + i))
                            .collect()
                    } else {
                        vec![event(producer * 1000 + n * 10)]
                    };
                    let range = if events.len() == 1 {
                        let offset = writer.append(events[0].clone()).await.unwrap();
                        offset..offset + 1
                    } else {
                        writer.append_batch(events.clone()).await.unwrap()
                    };
                    acked.push((range, events));
                }
                acked
            })
        })
        .collect();

    let mut acked = HashMap::new();
    for producer in producers {
        for (range, events) in within("the producers", producer).await.unwrap() {
            acknowledge(&mut acked, range, &events);
        }
    }
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;

    let snapshot = writer.snapshot();
    let appends = (PRODUCERS * (SINGLES + BATCHES)) as u64;
    assert_eq!(snapshot.events_written, acked.len() as u64);
    assert_eq!(
        snapshot.queued_events, 0,
        "answered appends still count as queued"
    );
    assert!(
        snapshot.group_commits < appends,
        "{} group commits for {appends} appends: nothing was batched",
        snapshot.group_commits
    );
    assert!(snapshot.batch_size.max > 1);
    assert_eq!(snapshot.append_latency.count, appends);
    assert_eq!(snapshot.busy_rejections, 0);
}

async fn a_full_queue_answers_busy_and_loses_nothing_acknowledged(
    backend: fn(LogOptions) -> Backend,
) {
    let backend = backend(LogOptions::default());
    let gated = GatedLog::new(backend.log.clone());
    let config = LogWriterConfig {
        max_queued_events: 8,
        busy_retry_after: Duration::from_secs(2),
        ..LogWriterConfig::default()
    };
    let (_actor, writer, _join) = LogWriter::start(gated.clone(), config, None).await.unwrap();

    // A batch the bound could never admit is refused as such, not as busy.
    let too_many = (0..9).map(event).collect();
    assert!(matches!(
        writer.append_batch(too_many).await,
        Err(WriterError::BatchOverBound {
            events: 9,
            bound: 8
        })
    ));

    // The log holds every write until some producer has been refused.
    const PRODUCERS: usize = 64;
    const EACH: usize = 10;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..EACH {
                    let event = event(producer * 100 + n);
                    outcomes.push((writer.append(event.clone()).await, event));
                }
                outcomes
            })
        })
        .collect();
    wait_until("a producer is refused", || {
        writer.snapshot().busy_rejections > 0
    })
    .await;
    assert!(writer.snapshot().queued_events <= 8);
    gated.open();

    let mut acked = HashMap::new();
    let mut busy = 0;
    for producer in producers {
        for (outcome, event) in within("the producers", producer).await.unwrap() {
            match outcome {
                Ok(offset) => acknowledge(&mut acked, offset..offset + 1, &[event]),
                Err(WriterError::Busy {
                    queued,
                    bound,
                    retry_after,
                }) => {
                    assert_eq!(bound, 8);
                    assert!(queued <= bound);
                    assert_eq!(retry_after, Duration::from_secs(2));
                    busy += 1;
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
    }
    assert!(busy > 0);
    assert!(!acked.is_empty());
    assert_eq!(acked.len() + busy, PRODUCERS * EACH);
    // Refused events were never written: the log is exactly the acknowledged.
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;
    let snapshot = writer.snapshot();
    assert_eq!(snapshot.busy_rejections, busy as u64);
    assert_eq!(snapshot.queued_events, 0);
}

async fn an_oversize_batch_fails_alone(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions {
        max_event_bytes: 512,
    });
    let gated = GatedLog::new(backend.log.clone());
    let (_actor, writer, _join) = LogWriter::start(gated.clone(), LogWriterConfig::default(), None)
        .await
        .unwrap();

    // A first write held at the gate, so that everything after it queues up
    // and goes into one group commit.
    let plug = sent(writer.append(event(0))).await;
    wait_until("the first write reaches the log", || gated.writes() == 1).await;

    let big = StoredEvent::new(VibesEvent::UserInput {
        session_id: "s".to_owned(),
        content: "x".repeat(1000),
        source: "test".to_owned(),
    });
    let batches = vec![
        vec![event(1), event(2)],
        vec![event(3), big, event(4)],
        vec![event(5)],
        vec![event(6), event(7), event(8)],
    ];
    let mut appends = Vec::new();
    for batch in &batches {
        appends.push(sent(writer.append_batch(batch.clone())).await);
    }
    gated.open();

    let mut acked = HashMap::new();
    let offset = within("the first write", plug).await.unwrap();
    acknowledge(
        &mut acked,
        offset..offset + 1,
        &[event_at(&gated, offset).await],
    );
    for (append, batch) in appends.into_iter().zip(&batches) {
        match within("a batch", append).await {
            Ok(range) => acknowledge(&mut acked, range, batch),
            Err(err) => {
                assert_eq!(batch.len(), 3, "a good batch failed: {err}");
                assert!(
                    matches!(
                        err.log_error(),
                        Some(LogError::EventTooLarge {
                            index: 1,
                            limit: 512,
                            ..
                        })
                    ),
                    "the oversize batch got {err:?}, not EventTooLarge naming its own index"
                );
            }
        }
    }
    assert_eq!(acked.len(), 1 + 6);
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;
    let snapshot = writer.snapshot();
    assert_eq!(snapshot.failed_writes, 1);
    // The good batches went out together, in one group commit after the plug.
    assert_eq!(snapshot.group_commits, 2);
    assert_eq!(snapshot.batch_size.max, 6);
}

/// The event stored at `offset`.
async fn event_at(log: &GatedLog, offset: Offset) -> StoredEvent {
    log.read(offset, 1).await.unwrap()[0].event().unwrap()
}

async fn drain_writes_everything_queued_then_refuses(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions::default());
    let gated = GatedLog::new(backend.log.clone());
    let (_actor, writer, join) = LogWriter::start(gated.clone(), LogWriterConfig::default(), None)
        .await
        .unwrap();

    const QUEUED: usize = 50;
    let events: Vec<_> = (0..QUEUED).map(event).collect();
    let mut appends = Vec::new();
    for event in &events {
        appends.push(sent(writer.append(event.clone())).await);
    }
    let drain = sent(writer.drain()).await;
    // New appends are refused as soon as the drain begins.
    assert!(!writer.is_open());
    assert!(matches!(
        writer.append(event(1000)).await,
        Err(WriterError::Stopped)
    ));
    gated.open();
    within("the drain", drain).await;

    // Everything queued before the drain was written and acknowledged.
    let mut acked = HashMap::new();
    for (append, event) in appends.into_iter().zip(events) {
        let offset = within("an append", append).await.unwrap();
        acknowledge(&mut acked, offset..offset + 1, &[event]);
    }
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;

    within("the writer to stop", join).await.unwrap();
    assert!(matches!(
        writer.append(event(1001)).await,
        Err(WriterError::Stopped)
    ));
    assert!(!writer.snapshot().open);
    // Draining again is harmless.
    within("a second drain", writer.drain()).await;
}

async fn unavailable_is_retried_where_rollback_makes_it_safe(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions::default());
    let flaky = GatedLog::new(backend.log.clone());
    flaky.open();
    flaky.fail_writes(&[1, 2]);
    let config = LogWriterConfig {
        retry_min_delay: Duration::from_millis(1),
        ..LogWriterConfig::default()
    };
    let (_actor, writer, _join) = LogWriter::start(flaky.clone(), config, None).await.unwrap();

    let events: Vec<_> = (0..3).map(event).collect();
    let range = within("the append", writer.append_batch(events.clone()))
        .await
        .unwrap();
    assert_eq!(range, 0..3);
    assert_eq!(flaky.writes(), 3, "two failures and one success");
    let mut acked = HashMap::new();
    acknowledge(&mut acked, range, &events);
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;
    assert_eq!(writer.snapshot().failed_writes, 0);
}

async fn an_iggy_failure_is_not_retried_and_never_acknowledged(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions::default());
    let flaky = GatedLog::new(backend.log.clone()).posing_as(BackendKind::Iggy);
    flaky.fail_writes(&[2]);
    let (_actor, writer, _join) = LogWriter::start(flaky.clone(), LogWriterConfig::default(), None)
        .await
        .unwrap();

    // A first write held at the gate, so that the next two producers queue
    // up behind it and share the failing group commit.
    let plug = sent(writer.append(event(0))).await;
    wait_until("the first write reaches the log", || flaky.writes() == 1).await;
    let first = sent(writer.append(event(1))).await;
    let second = sent(writer.append(event(2))).await;
    flaky.open();
    let plugged = within("the first write", plug).await.unwrap();
    for err in [
        within("an append", first).await.unwrap_err(),
        within("an append", second).await.unwrap_err(),
    ] {
        assert!(
            matches!(err.log_error(), Some(LogError::Unavailable { .. })),
            "got {err:?}"
        );
    }
    assert_eq!(flaky.writes(), 2, "the writer retried an iggy write");
    assert_eq!(writer.snapshot().failed_writes, 1);

    // The writer carries on after a failed write, and the failed events
    // left no trace.
    let last = event(3);
    let offset = writer.append(last.clone()).await.unwrap();
    let mut acked = HashMap::new();
    acknowledge(
        &mut acked,
        plugged..plugged + 1,
        &[event_at(&flaky, plugged).await],
    );
    acknowledge(&mut acked, offset..offset + 1, &[last]);
    assert_log_holds_exactly(backend.log.as_ref(), &acked).await;
}

async fn appends_after_the_writer_stopped_are_refused(backend: fn(LogOptions) -> Backend) {
    let backend = backend(LogOptions::default());
    let (actor, writer, join) =
        LogWriter::start(backend.log.clone(), LogWriterConfig::default(), None)
            .await
            .unwrap();
    assert_eq!(writer.append(event(0)).await.unwrap(), 0);
    actor.stop(None);
    within("the writer to stop", join).await.unwrap();
    assert!(matches!(
        writer.append(event(1)).await,
        Err(WriterError::Stopped)
    ));
    assert_eq!(backend.log.high_water_mark().await.unwrap(), 1);
}
