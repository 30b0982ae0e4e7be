//! Consumer group benchmarks: figures, not pass/fail.
//!
//! - **append → handled**: producers append through the LogWriter at a
//!   paced 10k events/s (64 tasks) while a live group handles them; the
//!   latency of each event from its creation to its handler call.
//! - **panic → handling again**: a handler panics once; the time from the
//!   panic to the restarted group's next handler call, with the default
//!   restart policy (the first back-off is 50–100 ms).
//!
//! Run: `cargo bench -p vibes-actors --bench groups`: the embedded backend
//! in a temporary directory, and the append → handled run again on a managed
//! `iggy-server` when `VIBES_IGGY_SERVER` names one (one line says it is
//! skipped otherwise). `VIBES_BENCH_SECONDS` sets the paced run's length
//! (default 5).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use vibes_actors::LogWriterConfig;
use vibes_actors::group::{GroupConfig, GroupSpec, HandlerFactory};
use vibes_actors::metrics::Histogram;
use vibes_actors::supervisor::{Supervisor, SupervisorArgs, SupervisorHandle};
use vibes_core::{Delivery, Handled, Handler, StoredEvent, VibesEvent};
use vibes_iggy::embedded::EmbeddedLog;
use vibes_iggy::iggy::{IggyConfig, IggyLog, IggyManager};
use vibes_iggy::{EventLog, LogOptions, OpenedLog, StartPosition};

/// The offered load of the paced run.
const EVENTS_PER_SEC: u64 = 10_000;
const PRODUCERS: u64 = 64;
/// How many panics the recovery figure is taken over.
const PANICS: usize = 20;

fn event(i: u64) -> StoredEvent {
    StoredEvent::new(VibesEvent::UserInput {
        session_id: format!("session-{}", i % 64),
        content: format!("event {i} {}", "x".repeat(100)),
        source: "bench".into(),
    })
}

/// Which log a run uses.
enum Backend {
    Embedded,
    /// A managed `iggy-server`, this binary.
    Iggy(std::path::PathBuf),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Iggy(_) => "iggy",
        }
    }
}

async fn supervisor(backend: &Backend, dir: &std::path::Path) -> SupervisorHandle {
    let (log, manager): (Arc<dyn EventLog>, _) = match backend {
        Backend::Embedded => (
            Arc::new(EmbeddedLog::open(dir, LogOptions::default()).expect("open the log")),
            None,
        ),
        Backend::Iggy(binary) => {
            let config = IggyConfig {
                server_binary: Some(binary.clone()),
                ..IggyConfig::default()
            };
            let manager = IggyManager::start(&config, dir)
                .await
                .expect("start iggy-server");
            let log = IggyLog::connect(&manager.connection(), LogOptions::default())
                .await
                .expect("connect to iggy-server");
            (Arc::new(log), Some(manager))
        }
    };
    let (supervisor, _join) = Supervisor::start(SupervisorArgs {
        log: OpenedLog {
            log,
            manager,
            reason: "bench".into(),
            lock: None,
        },
        groups: Vec::new(),
        writer: LogWriterConfig::default(),
    })
    .await
    .expect("start the supervisor");
    supervisor
}

/// Records how long each event took from creation to its handler.
struct Latency(Arc<Histogram>);

#[async_trait]
impl Handler for Latency {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        let now = Utc::now();
        for (_, stored) in batch {
            if let Ok(age) = (now - stored.timestamp).to_std() {
                self.0.record_duration(age);
            }
        }
        Handled::All
    }
}

async fn append_to_handled(backend: Backend, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let supervisor = supervisor(&backend, dir.path()).await;
    let latency = Arc::new(Histogram::durations());
    let handler_latency = latency.clone();
    let factory: HandlerFactory =
        Arc::new(move || Box::new(Latency(handler_latency.clone())) as Box<dyn Handler>);
    let mut config = GroupConfig::new("live");
    config.start = StartPosition::End;
    supervisor
        .register(GroupSpec {
            config,
            handler: factory,
        })
        .await
        .expect("register");

    let append_latency = Arc::new(Histogram::durations());
    let per_producer = EVENTS_PER_SEC * seconds / PRODUCERS;
    let period = Duration::from_secs_f64(PRODUCERS as f64 / EVENTS_PER_SEC as f64);
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let writer = supervisor.writer().clone();
            let append_latency = append_latency.clone();
            tokio::spawn(async move {
                // Spread the producers over one period.
                let offset = period.mul_f64(producer as f64 / PRODUCERS as f64);
                let mut busy = 0u64;
                for i in 0..per_producer {
                    let due = started + offset + period.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let sent = Instant::now();
                    match writer.append(event(i)).await {
                        Ok(_) => append_latency.record_duration(sent.elapsed()),
                        Err(_) => busy += 1,
                    }
                }
                busy
            })
        })
        .collect();
    let mut refused = 0;
    for producer in producers {
        refused += producer.await.expect("producer");
    }
    let offered = per_producer * PRODUCERS;
    let elapsed = started.elapsed();
    // Wait until the group has handled everything appended.
    let deadline = Instant::now() + Duration::from_secs(60);
    while latency.latency_summary().count < offered - refused && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let appended = append_latency.latency_summary();
    let handled = latency.latency_summary();
    println!(
        "{}: offered {offered} events in {:.1} s ({:.0} ev/s achieved), {refused} refused busy",
        backend.name(),
        elapsed.as_secs_f64(),
        (offered - refused) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| append latency (durable)   | p50 {:>7.2} ms | p99 {:>7.2} ms | max {:>7.2} ms |",
        ms(appended.p50_us),
        ms(appended.p99_us),
        ms(appended.max_us)
    );
    println!(
        "| append → handled (live)    | p50 {:>7.2} ms | p99 {:>7.2} ms | max {:>7.2} ms |",
        ms(handled.p50_us),
        ms(handled.p99_us),
        ms(handled.max_us)
    );
    let writer = supervisor.writer().snapshot();
    println!(
        "writer: {} group commits, batch size p50 {} p99 {} max {}",
        writer.group_commits, writer.batch_size.p50, writer.batch_size.p99, writer.batch_size.max
    );
    supervisor.shutdown().await.expect("shutdown");
}

/// Panics once, at its first event, and notes when.
struct PanicOnce {
    panicked_at: Arc<Mutex<Option<Instant>>>,
    recovered: Arc<Histogram>,
}

#[async_trait]
impl Handler for PanicOnce {
    async fn handle(&mut self, _batch: &[Delivery]) -> Handled {
        let panicked = self
            .panicked_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(Instant::now());
        match panicked {
            None => panic!("bench: injected panic"),
            Some(at) => {
                self.recovered.record_duration(at.elapsed());
                Handled::All
            }
        }
    }
}

async fn panic_to_handling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let supervisor = supervisor(&Backend::Embedded, dir.path()).await;
    supervisor.writer().append(event(0)).await.expect("append");
    let recovered = Arc::new(Histogram::durations());
    // A new group each time: each measures a first restart.
    for i in 0..PANICS {
        let panicked_at = Arc::new(Mutex::new(None));
        let (at, done) = (panicked_at.clone(), recovered.clone());
        let factory: HandlerFactory = Arc::new(move || {
            Box::new(PanicOnce {
                panicked_at: at.clone(),
                recovered: done.clone(),
            }) as Box<dyn Handler>
        });
        supervisor
            .register(GroupSpec {
                config: GroupConfig::new(format!("panics-{i}")),
                handler: factory,
            })
            .await
            .expect("register");
        let deadline = Instant::now() + Duration::from_secs(10);
        while recovered.latency_summary().count < i as u64 + 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let summary = recovered.latency_summary();
    println!(
        "| panic → handling again     | p50 {:>7.2} ms | p99 {:>7.2} ms | max {:>7.2} ms | ({} panics, first restart each)",
        ms(summary.p50_us),
        ms(summary.p99_us),
        ms(summary.max_us),
        summary.count
    );
    supervisor.shutdown().await.expect("shutdown");
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn main() {
    // The injected panics are expected; keep them out of the report.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|message| message.starts_with("bench: injected"));
        if !injected {
            default(info);
        }
    }));
    let seconds = std::env::var("VIBES_BENCH_SECONDS")
        .ok()
        .map(|s| s.parse().expect("VIBES_BENCH_SECONDS is a number"))
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let iggy = std::env::var_os("VIBES_IGGY_SERVER")
        .filter(|path| !path.is_empty())
        .map(std::path::PathBuf::from);
    runtime.block_on(async {
        append_to_handled(Backend::Embedded, seconds).await;
        match iggy {
            Some(binary) => append_to_handled(Backend::Iggy(binary), seconds).await,
            None => println!(
                "skipped: iggy append → handled (set VIBES_IGGY_SERVER to an iggy-server binary)"
            ),
        }
        panic_to_handling().await;
    });
}
