//! The conformance suite against the Iggy backend, and what only that
//! backend promises: a managed `iggy-server` that survives `kill -9`, clear
//! start-up errors, private reusable credentials, other producers.
//!
//! Each test starts its own `iggy-server` (the binary named by
//! `VIBES_IGGY_SERVER`) in a temporary directory; without that variable the
//! tests that need a server return at once, after one line on stderr.

// A failing test should stop at the failure, with the value in the message.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use iggy::prelude::{
    AutoLogin, Client, CompressionAlgorithm, Identifier, IggyError, IggyExpiry, IggyMessage,
    MaxTopicSize, MessageClient, Partitioning, StreamClient, TcpClient, TcpClientConfigBuilder,
    TopicClient,
};
use iggy_common::Credentials;
use tempfile::TempDir;
use tokio::time::Instant;
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::iggy::{Connection, IggyConfig, IggyLog, IggyManager, ManagerError};
use vibes_iggy::{EventLog, LogError, LogOptions, Offset, StartPosition};

use crate::conformance::Fixture;

/// The longest any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The `iggy-server` to run, or `None` (said once per process) to skip.
fn server_binary() -> Option<PathBuf> {
    static SAID: AtomicBool = AtomicBool::new(false);
    match std::env::var_os("VIBES_IGGY_SERVER") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            if !SAID.swap(true, Ordering::Relaxed) {
                // Straight to stderr: the harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: iggy backend tests (set VIBES_IGGY_SERVER to an iggy-server \
                     binary to run them)"
                );
            }
            None
        }
    }
}

fn config(binary: &Path) -> IggyConfig {
    IggyConfig {
        server_binary: Some(binary.to_owned()),
        ..IggyConfig::default()
    }
}

/// A managed server in a temporary directory; every open connects anew.
struct IggyFixture {
    manager: IggyManager,
    // Dropped after the manager, whose drop kills the server.
    _dir: TempDir,
}

/// Logs to the test's output, filtered by `RUST_LOG` (nothing by default).
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn fixture() -> Option<IggyFixture> {
    let binary = server_binary()?;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let manager = IggyManager::start(&config(&binary), dir.path())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "start iggy-server: {err}: {:?}",
                std::error::Error::source(&err)
            )
        });
    Some(IggyFixture { manager, _dir: dir })
}

#[async_trait]
impl Fixture for IggyFixture {
    async fn open(&self, options: LogOptions) -> Arc<dyn EventLog> {
        Arc::new(
            IggyLog::connect(&self.manager.connection(), options)
                .await
                .expect("connect"),
        )
    }

    async fn append_raw(&self, bytes: &[u8]) {
        let producer = RawProducer::connect(&self.manager.connection()).await;
        producer.send(bytes).await;
    }
}

crate::conformance_suite!(fixture().await);

/// The suite again, against a server set up as an external one would be
/// (Iggy's default of keeping batches in memory until a flush), reached the
/// way vibesd reaches external servers: flushing with fsync after each send.
mod flushed {
    use super::*;

    struct FlushedFixture(IggyFixture);

    async fn fixture() -> Option<FlushedFixture> {
        let binary = server_binary()?;
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let config = IggyConfig {
            server_env: vec![(
                "IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE".into(),
                "1024".into(),
            )],
            ..config(&binary)
        };
        let manager = IggyManager::start(&config, dir.path()).await.unwrap();
        assert!(!manager.connection().fsyncs_each_send);
        Some(FlushedFixture(IggyFixture { manager, _dir: dir }))
    }

    #[async_trait]
    impl Fixture for FlushedFixture {
        async fn open(&self, options: LogOptions) -> Arc<dyn EventLog> {
            self.0.open(options).await
        }

        async fn append_raw(&self, bytes: &[u8]) {
            self.0.append_raw(bytes).await;
        }
    }

    crate::conformance_suite!(fixture().await);
}

/// A producer that is not vibesd: the plain SDK writing to the topic.
struct RawProducer {
    client: TcpClient,
    stream: Identifier,
    topic: Identifier,
}

impl RawProducer {
    async fn connect(connection: &Connection) -> Self {
        let config = TcpClientConfigBuilder::new()
            .with_server_address(connection.address.clone())
            .with_auto_sign_in(AutoLogin::Enabled(Credentials::UsernamePassword(
                connection.username.clone(),
                connection.password.clone().into(),
            )))
            .with_no_delay()
            .build()
            .unwrap();
        let client = TcpClient::create(Arc::new(config)).unwrap();
        client.connect().await.unwrap();
        let stream = Identifier::named("vibes").unwrap();
        let topic = Identifier::named("events").unwrap();
        // It may run before vibesd ever created the topic.
        if client.get_stream(&stream).await.unwrap().is_none() {
            match client.create_stream("vibes").await {
                Ok(_) | Err(IggyError::StreamNameAlreadyExists(_)) => {}
                Err(err) => panic!("create stream: {err}"),
            }
        }
        if client.get_topic(&stream, &topic).await.unwrap().is_none() {
            client
                .create_topic(
                    &stream,
                    "events",
                    1,
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::NeverExpire,
                    MaxTopicSize::Unlimited,
                )
                .await
                .unwrap();
        }
        Self {
            client,
            stream,
            topic,
        }
    }

    async fn send(&self, payload: &[u8]) {
        let mut messages = vec![
            IggyMessage::builder()
                .payload(payload.to_vec().into())
                .build()
                .unwrap(),
        ];
        self.client
            .send_messages(
                &self.stream,
                &self.topic,
                &Partitioning::partition_id(0),
                &mut messages,
            )
            .await
            .unwrap();
        self.client
            .flush_unsaved_buffer(&self.stream, &self.topic, 0, true)
            .await
            .unwrap();
    }
}

fn event(i: usize) -> StoredEvent {
    StoredEvent::new(VibesEvent::UserInput {
        session_id: "s".into(),
        content: format!("event {i}"),
        source: "iggy-test".into(),
    })
}

fn manager_error(err: &LogError) -> &ManagerError {
    let LogError::Unavailable { source, .. } = err else {
        panic!("expected a manager error, got {err}");
    };
    source
        .downcast_ref::<ManagerError>()
        .unwrap_or_else(|| panic!("expected a manager error, got {err}: {source}"))
}

/// Waits for `condition` with a deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_of_the_server_and_appends_go_on() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let log = fixture.open(LogOptions::default()).await;
    let mut group = log
        .consumer("survivor", StartPosition::Beginning)
        .await
        .unwrap();

    // Appends run throughout; each acknowledged one is recorded.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(Offset, StoredEvent)>::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (log, acked, failures, stop) =
            (log.clone(), acked.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<StoredEvent> = (0..1 + i % 3).map(|k| event(i * 10 + k)).collect();
                i += 1;
                match log.append_batch(batch.clone()).await {
                    Ok(range) => {
                        assert_eq!(range.end - range.start, batch.len() as Offset);
                        acked.lock().unwrap().extend(range.zip(batch));
                    }
                    // Allowed while the server is down; nothing acknowledged.
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    wait_until("50 events are acknowledged", || acked_count() >= 50).await;
    group.commit(10).await.unwrap();

    let pid = fixture.manager.server_pid().expect("the server runs");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let before_kill = acked_count();
    let restarted = fixture.manager.wait_for_restart(pid, DEADLINE).await;
    assert!(restarted.is_some(), "the manager restarted the server");
    wait_until("appends go on after the restart", || {
        acked_count() >= before_kill + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    tracing::info!(
        acked = acked_count(),
        before_kill,
        failed_appends = failures.load(Ordering::Relaxed),
        "appends around the kill"
    );

    // Every acknowledged event is where its append said, exactly once.
    let acked = acked.lock().unwrap().clone();
    let end = log.high_water_mark().await.unwrap();
    let stored = log.read(0, end as usize).await.unwrap();
    assert_eq!(stored.len() as Offset, end);
    let mut seen: HashMap<_, usize> = HashMap::new();
    for record in &stored {
        if let Ok(event) = record.event() {
            *seen.entry(event.event_id).or_default() += 1;
        }
    }
    for (offset, event) in &acked {
        let record = &stored[*offset as usize];
        assert_eq!(&record.event().unwrap(), event, "event at offset {offset}");
        assert_eq!(
            seen[&event.event_id], 1,
            "event at offset {offset} is stored once"
        );
    }

    // The group kept its offset and can commit again (it joins anew).
    assert_eq!(group.committed_offset().await.unwrap(), Some(10));
    group.commit(20).await.unwrap();
    assert_eq!(group.committed_offset().await.unwrap(), Some(20));
    let records = group.poll(5, Duration::from_secs(5)).await.unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(0));
    fixture.manager.stop().await;
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-iggy-server");
    let err = IggyManager::start(&config(&missing), dir.path())
        .await
        .unwrap_err();
    let manager_err = manager_error(&err);
    assert!(
        matches!(manager_err, ManagerError::BinaryMissing { .. }),
        "{manager_err}"
    );
    let message = manager_err.to_string();
    assert!(
        message.contains("no-such-iggy-server") && message.contains("does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let Some(binary) = server_binary() else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let err = IggyManager::start(
        &IggyConfig {
            tcp_port: port,
            ..config(&binary)
        },
        dir.path(),
    )
    .await
    .unwrap_err();
    let manager_err = manager_error(&err);
    assert!(
        matches!(manager_err, ManagerError::PortInUse { .. }),
        "{manager_err}"
    );
    assert!(
        manager_err.to_string().contains(&port.to_string()),
        "{manager_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_private_and_reused_across_restarts() {
    let Some(binary) = server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manager = IggyManager::start(&config(&binary), dir.path())
        .await
        .unwrap();
    let path = dir.path().join("iggy").join("credentials");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are private");
    let written = std::fs::read_to_string(&path).unwrap();
    let first = manager.connection();
    assert!(written.contains(&first.password));
    assert!(
        first.fsyncs_each_send,
        "the managed server fsyncs every send"
    );

    // A second manager on the same directory is refused while one runs.
    let err = IggyManager::start(&config(&binary), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");

    let log = IggyLog::connect(&first, LogOptions::default())
        .await
        .unwrap();
    log.append(event(0)).await.unwrap();
    drop(log);
    let pid = manager.server_pid().unwrap();
    manager.stop().await;
    assert!(!process_exists(pid), "stop ends the server");

    let manager = IggyManager::start(&config(&binary), dir.path())
        .await
        .unwrap();
    let again = manager.connection();
    assert_eq!(
        (&again.username, &again.password),
        (&first.username, &first.password)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        written,
        "the file is reused"
    );
    let log = IggyLog::connect(&again, LogOptions::default())
        .await
        .unwrap();
    assert_eq!(
        log.high_water_mark().await.unwrap(),
        1,
        "the data is still there"
    );
    manager.stop().await;
}

/// A poll started before the append, on a log whose idle polls would not
/// ask the server again for ten minutes: only the append's wake can end it
/// before the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_through_the_log_wakes_an_idle_poll_at_once() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let log = IggyLog::connect(&fixture.manager.connection(), LogOptions::default())
        .await
        .unwrap();
    let never = Duration::from_secs(600);
    log.set_poll_pauses(never, never);
    let mut consumer = log.consumer("live", StartPosition::End).await.unwrap();
    let (asked, asked_rx) = tokio::sync::oneshot::channel();
    let waiting = tokio::spawn(async move {
        // An empty first answer proves the poll below starts idle.
        assert!(consumer.poll(10, Duration::ZERO).await.unwrap().is_empty());
        let _ = asked.send(());
        let records = consumer.poll(10, 2 * never).await.unwrap();
        records.iter().map(|r| r.offset).collect::<Vec<_>>()
    });
    asked_rx.await.unwrap();
    // Whether the append lands before the poll's first request or during
    // its pause, the poll must return it long before either pause ends.
    assert_eq!(log.append(event(0)).await.unwrap(), 0);
    let offsets = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("an append through the log did not wake the idle poll")
        .unwrap();
    assert_eq!(offsets, vec![0]);
}

/// Another producer's append wakes nothing here; the poll finds it by
/// asking again, within the pause limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_finds_another_producers_append_by_asking_again() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let log = IggyLog::connect(&fixture.manager.connection(), LogOptions::default())
        .await
        .unwrap();
    log.set_poll_pauses(Duration::from_millis(1), Duration::from_millis(20));
    let mut consumer = log.consumer("live", StartPosition::End).await.unwrap();
    let waiting =
        tokio::spawn(async move { consumer.poll(10, Duration::from_secs(600)).await.unwrap() });
    let other = RawProducer::connect(&fixture.manager.connection()).await;
    other.send(b"from another producer").await;
    let records = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the poll never found another producer's append")
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].payload[..], b"from another producer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_producer_moves_the_high_water_mark() {
    let Some(fixture) = fixture().await else {
        return;
    };
    let log = fixture.open(LogOptions::default()).await;
    assert_eq!(
        log.append_batch((0..3).map(event).collect()).await.unwrap(),
        0..3
    );

    let other = RawProducer::connect(&fixture.manager.connection()).await;
    other.send(b"from another producer").await;
    other.send(b"and another").await;
    assert_eq!(log.high_water_mark().await.unwrap(), 5);

    // Our next appends get the offsets the server gave them, not a count of
    // our own.
    assert_eq!(log.append(event(3)).await.unwrap(), 5);
    other.send(b"interleaved").await;
    assert_eq!(
        log.append_batch((4..6).map(event).collect()).await.unwrap(),
        7..9
    );
    let stored = log.read(0, 10).await.unwrap();
    assert_eq!(stored.len(), 9);
    assert!(stored[3].event().is_err() && stored[6].event().is_err());
    assert_eq!(stored[5].event().unwrap().event, event(3).event);
}
