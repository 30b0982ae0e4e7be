//! The log contract, written once and run against every backend.
//!
//! A backend's test module implements [`Fixture`] and invokes
//! [`conformance_suite!`], which makes one `#[tokio::test]` per behaviour
//! below. Each behaviour is something a consumer of the log depends on; see
//! `vibes-iggy/src/log.rs` for the contract itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{Instant, timeout};
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::{
    Bytes, EventLog, GroupOffset, LogError, LogOptions, Offset, SeekTo, StartPosition,
};

/// How a backend's storage is opened for a test.
#[async_trait]
pub(crate) trait Fixture: Send + Sync {
    /// Opens the log; every open sees what earlier opens wrote, as a
    /// restarted daemon would.
    async fn open(&self, options: LogOptions) -> Arc<dyn EventLog>;

    /// Writes `bytes` as one record, as a writer other than vibesd (or
    /// damage at rest) could. Called while no log of the fixture is open.
    async fn append_raw(&self, bytes: &[u8]);
}

/// Makes one test per behaviour of the contract for the fixture that
/// `$fixture` (an expression of type `Option<impl Fixture>`; `None` skips)
/// builds.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@tests $fixture;
            offsets_are_dense_and_ordered,
            append_batch_is_contiguous,
            append_batch_is_all_or_nothing,
            poll_returns_as_soon_as_an_event_arrives,
            poll_returns_empty_only_after_its_timeout,
            group_resumes_after_commit_and_reopen,
            groups_are_independent,
            new_group_starts_at_beginning_or_end,
            end_start_is_kept_across_a_restart_before_the_first_commit,
            seek_moves_and_persists,
            seek_past_the_end_is_refused_and_moves_nothing,
            commit_past_the_end_is_refused,
            read_pages_through_the_log_without_a_group,
            oversize_event_is_refused_with_nothing_written,
            undecodable_record_is_reported_with_its_offset,
            event_of_a_newer_version_is_read_as_unknown,
            concurrent_appenders_get_unique_dense_offsets,
            invalid_group_names_are_refused,
            append_records_keeps_every_byte_at_contiguous_offsets,
            groups_lists_every_group_with_its_committed_offset,
        );
    };
    (@tests $fixture:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $fixture else { return };
                $crate::conformance::$name(&fixture).await;
            }
        )+
    };
}

/// The longest any single step may take before the test fails: generous,
/// since CI machines are shared and slow, but finite.
const DEADLINE: Duration = Duration::from_secs(30);

/// A short poll timeout for reads that should find data at once.
const POLL: Duration = Duration::from_secs(5);

fn event(i: usize) -> StoredEvent {
    StoredEvent::new(VibesEvent::UserInput {
        session_id: format!("session-{}", i % 7),
        content: format!("message {i}"),
        source: "test".into(),
    })
}

fn events(range: std::ops::Range<usize>) -> Vec<StoredEvent> {
    range.map(event).collect()
}

async fn open(fixture: &impl Fixture) -> Arc<dyn EventLog> {
    fixture.open(LogOptions::default()).await
}

/// Appends `n` events one by one.
async fn fill(log: &dyn EventLog, n: usize) -> Vec<StoredEvent> {
    let events = events(0..n);
    log.append_batch(events.clone()).await.expect("append");
    events
}

/// Polls until `n` records arrived (or the deadline passed) and returns
/// their offsets.
async fn poll_offsets(consumer: &mut dyn vibes_iggy::EventConsumer, n: usize) -> Vec<Offset> {
    let deadline = Instant::now() + DEADLINE;
    let mut offsets = Vec::new();
    while offsets.len() < n {
        assert!(Instant::now() < deadline, "only {offsets:?} arrived of {n}");
        let records = consumer.poll(n - offsets.len(), POLL).await.expect("poll");
        offsets.extend(records.iter().map(|record| record.offset));
    }
    offsets
}

pub(crate) async fn offsets_are_dense_and_ordered(fixture: &impl Fixture) {
    let log = open(fixture).await;
    assert_eq!(log.high_water_mark().await.unwrap(), 0);
    let sent = events(0..10);
    for (i, event) in sent.iter().enumerate() {
        assert_eq!(log.append(event.clone()).await.unwrap(), i as Offset);
    }
    assert_eq!(log.high_water_mark().await.unwrap(), 10);
    let read = log.read(0, 100).await.unwrap();
    let offsets: Vec<Offset> = read.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    for (record, sent) in read.into_iter().zip(&sent) {
        assert_eq!(&record.event().unwrap(), sent);
    }
}

pub(crate) async fn append_batch_is_contiguous(fixture: &impl Fixture) {
    let log = open(fixture).await;
    assert_eq!(log.append_batch(events(0..5)).await.unwrap(), 0..5);
    assert_eq!(log.append(event(5)).await.unwrap(), 5);
    assert_eq!(log.append_batch(events(6..9)).await.unwrap(), 6..9);
    assert_eq!(
        log.append_batch(Vec::new()).await.unwrap(),
        9..9,
        "an empty batch writes nothing"
    );
    assert_eq!(log.high_water_mark().await.unwrap(), 9);
}

pub(crate) async fn append_batch_is_all_or_nothing(fixture: &impl Fixture) {
    let log = fixture
        .open(LogOptions {
            max_event_bytes: 2_000,
        })
        .await;
    fill(&*log, 3).await;
    let mut batch = events(3..8);
    batch[2] = StoredEvent::new(VibesEvent::SessionRemoved {
        session_id: "s".into(),
        reason: "x".repeat(4_000),
    });
    let err = log.append_batch(batch).await.unwrap_err();
    assert!(
        matches!(err, LogError::EventTooLarge { index: 2, .. }),
        "{err}"
    );
    assert_eq!(log.high_water_mark().await.unwrap(), 3, "nothing written");
    assert_eq!(log.read(0, 100).await.unwrap().len(), 3);
    assert_eq!(log.append_batch(events(3..5)).await.unwrap(), 3..5);
}

pub(crate) async fn poll_returns_as_soon_as_an_event_arrives(fixture: &impl Fixture) {
    let log = open(fixture).await;
    let mut consumer = log.consumer("live", StartPosition::End).await.unwrap();
    // The poll's own timeout is far beyond the test's deadline: only the
    // arrival of the event can end it in time.
    let waiting = tokio::spawn(async move {
        let records = consumer.poll(10, Duration::from_secs(600)).await.unwrap();
        records.iter().map(|r| r.offset).collect::<Vec<_>>()
    });
    log.append(event(0)).await.unwrap();
    let offsets = timeout(DEADLINE, waiting)
        .await
        .expect("poll did not return when an event arrived")
        .unwrap();
    assert_eq!(offsets, vec![0]);
}

pub(crate) async fn poll_returns_empty_only_after_its_timeout(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 2).await;
    let mut consumer = log.consumer("idle", StartPosition::End).await.unwrap();
    let wait = Duration::from_millis(200);
    let started = Instant::now();
    let records = consumer.poll(10, wait).await.unwrap();
    assert!(records.is_empty());
    assert!(
        started.elapsed() >= wait,
        "returned empty before its timeout"
    );
}

pub(crate) async fn group_resumes_after_commit_and_reopen(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 10).await;
    let mut consumer = log.consumer("g", StartPosition::Beginning).await.unwrap();
    assert_eq!(consumer.committed_offset().await.unwrap(), None);
    assert_eq!(
        poll_offsets(&mut *consumer, 10).await,
        (0..10).collect::<Vec<_>>()
    );
    consumer.commit(6).await.unwrap();
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(6));
    drop(consumer);
    drop(log);

    let log = open(fixture).await;
    assert_eq!(log.high_water_mark().await.unwrap(), 10, "nothing lost");
    let mut consumer = log.consumer("g", StartPosition::Beginning).await.unwrap();
    assert_eq!(consumer.group(), "g");
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(6));
    assert_eq!(consumer.position(), 7);
    assert_eq!(poll_offsets(&mut *consumer, 3).await, vec![7, 8, 9]);
}

pub(crate) async fn groups_are_independent(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 8).await;
    let mut a = log.consumer("a", StartPosition::Beginning).await.unwrap();
    let mut b = log.consumer("b", StartPosition::Beginning).await.unwrap();
    poll_offsets(&mut *a, 8).await;
    a.commit(7).await.unwrap();
    poll_offsets(&mut *b, 3).await;
    b.commit(2).await.unwrap();
    drop((a, b));
    let a = log.consumer("a", StartPosition::Beginning).await.unwrap();
    let b = log.consumer("b", StartPosition::Beginning).await.unwrap();
    assert_eq!(a.committed_offset().await.unwrap(), Some(7));
    assert_eq!(b.committed_offset().await.unwrap(), Some(2));
    assert_eq!((a.position(), b.position()), (8, 3));
}

pub(crate) async fn new_group_starts_at_beginning_or_end(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 5).await;
    let mut replay = log
        .consumer("replay", StartPosition::Beginning)
        .await
        .unwrap();
    let mut live = log.consumer("live", StartPosition::End).await.unwrap();
    assert_eq!(replay.position(), 0);
    assert_eq!(live.position(), 5);
    log.append(event(5)).await.unwrap();
    assert_eq!(
        poll_offsets(&mut *replay, 6).await,
        (0..6).collect::<Vec<_>>()
    );
    assert_eq!(poll_offsets(&mut *live, 1).await, vec![5]);
    // An existing group ignores the start position it is opened with.
    live.commit(5).await.unwrap();
    drop(live);
    let live = log
        .consumer("live", StartPosition::Beginning)
        .await
        .unwrap();
    assert_eq!(live.position(), 6);
}

pub(crate) async fn end_start_is_kept_across_a_restart_before_the_first_commit(
    fixture: &impl Fixture,
) {
    let log = open(fixture).await;
    fill(&*log, 4).await;
    drop(log.consumer("late", StartPosition::End).await.unwrap());
    log.append_batch(events(4..6)).await.unwrap();
    drop(log);
    // The daemon restarts before the group committed anything: the events
    // that arrived meanwhile are still delivered.
    let log = open(fixture).await;
    let mut late = log.consumer("late", StartPosition::End).await.unwrap();
    assert_eq!(late.position(), 4);
    assert_eq!(poll_offsets(&mut *late, 2).await, vec![4, 5]);
}

pub(crate) async fn seek_moves_and_persists(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 10).await;
    let mut consumer = log.consumer("s", StartPosition::Beginning).await.unwrap();

    assert_eq!(consumer.seek(SeekTo::Offset(4)).await.unwrap(), 4);
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(3));
    assert_eq!(poll_offsets(&mut *consumer, 2).await, vec![4, 5]);

    assert_eq!(consumer.seek(SeekTo::End).await.unwrap(), 10);
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(9));

    assert_eq!(consumer.seek(SeekTo::Beginning).await.unwrap(), 0);
    assert_eq!(consumer.committed_offset().await.unwrap(), None);
    assert_eq!(poll_offsets(&mut *consumer, 1).await, vec![0]);

    assert_eq!(consumer.seek(SeekTo::Offset(7)).await.unwrap(), 7);
    drop(consumer);
    drop(log);
    let log = open(fixture).await;
    let mut consumer = log.consumer("s", StartPosition::Beginning).await.unwrap();
    assert_eq!(consumer.position(), 7, "a seek survives a restart");
    assert_eq!(poll_offsets(&mut *consumer, 3).await, vec![7, 8, 9]);
}

pub(crate) async fn seek_past_the_end_is_refused_and_moves_nothing(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 5).await;
    let mut consumer = log.consumer("s", StartPosition::Beginning).await.unwrap();
    consumer.commit(1).await.unwrap();
    poll_offsets(&mut *consumer, 2).await;
    let err = consumer.seek(SeekTo::Offset(6)).await.unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                offset: 6,
                high_water_mark: 5
            }
        ),
        "{err}"
    );
    assert_eq!(consumer.position(), 2);
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(1));
    // Seeking to the high-water mark itself is the end, and allowed.
    assert_eq!(consumer.seek(SeekTo::Offset(5)).await.unwrap(), 5);
}

pub(crate) async fn commit_past_the_end_is_refused(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 3).await;
    let mut consumer = log.consumer("c", StartPosition::Beginning).await.unwrap();
    consumer.commit(2).await.unwrap();
    let err = consumer.commit(3).await.unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { offset: 3, .. }),
        "{err}"
    );
    assert_eq!(consumer.committed_offset().await.unwrap(), Some(2));
}

pub(crate) async fn read_pages_through_the_log_without_a_group(fixture: &impl Fixture) {
    let log = open(fixture).await;
    fill(&*log, 7).await;
    let page: Vec<Offset> = log
        .read(3, 2)
        .await
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(page, vec![3, 4]);
    let tail: Vec<Offset> = log
        .read(5, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(tail, vec![5, 6]);
    assert!(
        log.read(7, 10).await.unwrap().is_empty(),
        "the end is an empty page"
    );
    let err = log.read(8, 10).await.unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { offset: 8, .. }),
        "{err}"
    );
}

pub(crate) async fn oversize_event_is_refused_with_nothing_written(fixture: &impl Fixture) {
    assert_eq!(LogOptions::default().max_event_bytes, 1024 * 1024);
    let limit = 4_096;
    let log = fixture
        .open(LogOptions {
            max_event_bytes: limit,
        })
        .await;
    let big = StoredEvent::new(VibesEvent::ClientConnected {
        client_id: "x".repeat(limit),
    });
    let err = log.append(big).await.unwrap_err();
    let LogError::EventTooLarge { size, limit: l, .. } = err else {
        panic!("expected EventTooLarge, got {err}");
    };
    assert!(size > limit && l == limit);
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(log.high_water_mark().await.unwrap(), 0);
    // Just under the limit is fine.
    let fits = StoredEvent::new(VibesEvent::ClientConnected {
        client_id: "x".repeat(limit - 200),
    });
    assert_eq!(log.append(fits).await.unwrap(), 0);
}

pub(crate) async fn undecodable_record_is_reported_with_its_offset(fixture: &impl Fixture) {
    let log = open(fixture).await;
    log.append(event(0)).await.unwrap();
    drop(log);
    fixture.append_raw(b"{\"not\": \"an event\"").await;
    let log = open(fixture).await;
    log.append(event(2)).await.unwrap();
    assert_eq!(log.high_water_mark().await.unwrap(), 3);

    let mut consumer = log.consumer("g", StartPosition::Beginning).await.unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while records.len() < 3 {
        assert!(Instant::now() < deadline);
        records.extend(consumer.poll(10, POLL).await.unwrap());
    }
    assert!(records[0].event().is_ok());
    assert!(
        records[2].event().is_ok(),
        "a bad record hides nothing after it"
    );
    let err = records[1].event().unwrap_err();
    assert!(matches!(err, LogError::Decode { offset: 1, .. }), "{err}");
    assert!(err.to_string().contains("offset 1"), "{err}");
    let read = log.read(1, 1).await.unwrap();
    assert!(read[0].event().is_err());
}

pub(crate) async fn event_of_a_newer_version_is_read_as_unknown(fixture: &impl Fixture) {
    let newer = br#"{"event_id":"01936f4e-7f7a-7cc2-9a3e-1f2a3b4c5d6e","timestamp":"2026-11-24T12:00:00Z","event":{"type":"session_forked","session_id":"s1","from":"s0"}}"#;
    fixture.append_raw(newer).await;
    let log = open(fixture).await;
    let record = log.read(0, 1).await.unwrap().remove(0);
    let event = record.event().expect("a newer event decodes");
    assert_eq!(event.event.kind(), "session_forked");
    assert!(matches!(event.event, VibesEvent::Unknown(_)));
}

pub(crate) async fn concurrent_appenders_get_unique_dense_offsets(fixture: &impl Fixture) {
    let log = open(fixture).await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20 {
                    if i % 4 == 0 {
                        let batch = events(task * 1000 + i * 10..task * 1000 + i * 10 + 3);
                        let range = log.append_batch(batch.clone()).await.unwrap();
                        assert_eq!(range.end - range.start, 3);
                        acked.extend(range.zip(batch));
                    } else {
                        let event = event(task * 1000 + i);
                        acked.push((log.append(event.clone()).await.unwrap(), event));
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(timeout(DEADLINE, task).await.unwrap().unwrap());
    }
    let total = acked.len() as Offset;
    let offsets: HashSet<Offset> = acked.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets.len() as Offset, total, "offsets are unique");
    assert_eq!(offsets, (0..total).collect(), "offsets are dense");
    assert_eq!(log.high_water_mark().await.unwrap(), total);
    let stored = log.read(0, total as usize).await.unwrap();
    for (offset, event) in acked {
        let record = stored[offset as usize].clone();
        assert_eq!(record.event().unwrap(), event, "event at its acked offset");
    }
}

pub(crate) async fn invalid_group_names_are_refused(fixture: &impl Fixture) {
    let log = open(fixture).await;
    for bad in ["", "has space", "slash/y", &"x".repeat(65)] {
        let err = log.consumer(bad, StartPosition::End).await.unwrap_err();
        assert!(
            matches!(err, LogError::InvalidGroupName { .. }),
            "{bad:?}: {err}"
        );
    }
    log.consumer("chat-history_v2.1", StartPosition::End)
        .await
        .unwrap();
}

/// A copied log (`vibesd migrate`) must read back byte for byte, records
/// that do not decode and records over the size limit included.
pub(crate) async fn append_records_keeps_every_byte_at_contiguous_offsets(fixture: &impl Fixture) {
    let log = fixture
        .open(LogOptions {
            max_event_bytes: 2048,
        })
        .await;
    log.append(event(0)).await.unwrap();
    let oversize = StoredEvent::new(VibesEvent::UserInput {
        session_id: "s".into(),
        content: "x".repeat(4096),
        source: "test".into(),
    });
    let records: Vec<Bytes> = vec![
        event(1).encode().into(),
        Bytes::from_static(b"{\"not\": \"an event\""),
        // Key order and spacing a re-encoding would not keep.
        Bytes::from(format!(
            "{{ \"event\": {{\"type\":\"brand_new\"}}, \"timestamp\": \"2030-01-01T00:00:00Z\", \"event_id\": \"{}\" }}",
            uuid_like()
        )),
        oversize.encode().into(),
    ];
    assert_eq!(log.append_records(records.clone()).await.unwrap(), 1..5);
    assert_eq!(log.append_records(Vec::new()).await.unwrap(), 5..5);
    assert_eq!(log.append(event(5)).await.unwrap(), 5);
    let read = log.read(1, 10).await.unwrap();
    let payloads: Vec<Bytes> = read.iter().take(4).map(|r| r.payload.clone()).collect();
    assert_eq!(payloads, records);
    assert_eq!(read[4].offset, 5);
    assert!(read[1].event().is_err(), "the broken record stays broken");
}

fn uuid_like() -> String {
    StoredEvent::new(VibesEvent::UserInput {
        session_id: String::new(),
        content: String::new(),
        source: String::new(),
    })
    .event_id
    .to_string()
}

pub(crate) async fn groups_lists_every_group_with_its_committed_offset(fixture: &impl Fixture) {
    let log = open(fixture).await;
    assert_eq!(log.groups().await.unwrap(), Vec::new());
    fill(log.as_ref(), 10).await;
    let mut done = log
        .consumer("b-done", StartPosition::Beginning)
        .await
        .unwrap();
    done.commit(6).await.unwrap();
    let untouched = log
        .consumer("a-new", StartPosition::Beginning)
        .await
        .unwrap();
    let live = log.consumer("c-live", StartPosition::End).await.unwrap();
    let mut seeked = log.consumer("d-seeked", StartPosition::End).await.unwrap();
    seeked.seek(SeekTo::Beginning).await.unwrap();
    drop((done, untouched, live, seeked, log));
    let log = open(fixture).await;
    let group = |name: &str, committed| GroupOffset {
        group: name.to_owned(),
        committed,
    };
    assert_eq!(
        log.groups().await.unwrap(),
        vec![
            group("a-new", None),
            group("b-done", Some(6)),
            group("c-live", Some(9)),
            group("d-seeked", None),
        ]
    );
}
