//! LogWriter benchmarks: figures, not pass/fail.
//!
//! 1. Throughput: P producers (1, 16, 64) each making single-event `append`
//!    calls through the LogWriter, next to direct `EventLog::append_batch`
//!    doing the same events the best way for it (one task, batches of 1000),
//!    on a fresh log each, in the same run.
//! 2. Latency: an open-loop load of `VIBES_WRITER_BENCH_RATE` events/s
//!    (default 10,000) from 64 paced producers for `VIBES_WRITER_BENCH_SECS`
//!    seconds (default 5); each append is its own task, timed from its send,
//!    so a slow writer cannot slow the load down and hide its own latency.
//!
//! Run: `cargo bench -p vibes-actors --bench writer`. Event counts:
//! `VIBES_WRITER_BENCH_EVENTS` (default 200,000 per row) and
//! `VIBES_WRITER_BENCH_SINGLE` (default 2,000, for the one-producer rows,
//! where every append waits for its own durable write).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use vibes_actors::metrics::Histogram;
use vibes_actors::writer::{LogWriter, LogWriterConfig};
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::embedded::EmbeddedLog;
use vibes_iggy::memory::MemoryLog;
use vibes_iggy::{EventLog, LogOptions};

/// The batch size direct appends use: big enough that the per-write cost
/// is spread thin.
const DIRECT_BATCH: usize = 1000;

/// A fresh log, and the directory it lives in.
struct Fresh {
    log: Arc<dyn EventLog>,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Embedded,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Embedded => "embedded",
        }
    }

    fn open(self) -> Fresh {
        match self {
            Self::Memory => Fresh {
                log: Arc::new(MemoryLog::new(LogOptions::default())),
                _dir: None,
            },
            Self::Embedded => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let log = EmbeddedLog::open(dir.path(), LogOptions::default())
                    .expect("an embedded log in a fresh directory");
                Fresh {
                    log: Arc::new(log),
                    _dir: Some(dir),
                }
            }
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// `count` distinct events of about 200 bytes encoded.
fn events(count: usize) -> Vec<StoredEvent> {
    (0..count)
        .map(|n| {
            StoredEvent::new(VibesEvent::UserInput {
                session_id: format!("session-{}", n % 16),
                content: format!("{n:08} {}", "lorem ipsum dolor sit amet ".repeat(3)),
                source: "bench".to_owned(),
            })
        })
        .collect()
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

/// One task writing `events` in batches of [`DIRECT_BATCH`].
async fn direct(backend: Backend, events: &[StoredEvent]) -> f64 {
    let fresh = backend.open();
    let batches: Vec<Vec<StoredEvent>> = events.chunks(DIRECT_BATCH).map(<[_]>::to_vec).collect();
    let started = Instant::now();
    for batch in batches {
        fresh
            .log
            .append_batch(batch)
            .await
            .expect("a direct append");
    }
    rate(events.len(), started.elapsed())
}

/// `producers` tasks each appending its share of `events` one event per
/// direct `EventLog::append_batch` call: the same work as through the
/// writer, without it.
async fn direct_producers(backend: Backend, events: &[StoredEvent], producers: usize) -> f64 {
    let fresh = backend.open();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for share in events.chunks(events.len().div_ceil(producers)) {
        let log = fresh.log.clone();
        let share = share.to_vec();
        tasks.spawn(async move {
            for event in share {
                log.append_batch(vec![event])
                    .await
                    .expect("a direct append");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a producer");
    }
    rate(events.len(), started.elapsed())
}

/// What a LogWriter run measured.
struct WriterRun {
    events_per_sec: f64,
    group_commits: u64,
    batch_p50: u64,
}

/// `producers` tasks sharing `events`, each appending its share one event
/// per call through a LogWriter.
async fn through_writer(backend: Backend, events: &[StoredEvent], producers: usize) -> WriterRun {
    let fresh = backend.open();
    let (_actor, writer, join) =
        LogWriter::start(fresh.log.clone(), LogWriterConfig::default(), None)
            .await
            .expect("the writer starts");
    let shares: Vec<Vec<StoredEvent>> = events
        .chunks(events.len().div_ceil(producers))
        .map(<[_]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for share in shares {
        let writer = writer.clone();
        tasks.spawn(async move {
            for event in share {
                writer
                    .append(event)
                    .await
                    .expect("an append through the writer");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a producer");
    }
    let elapsed = started.elapsed();
    let snapshot = writer.snapshot();
    writer.drain().await;
    let _ = join.await;
    WriterRun {
        events_per_sec: rate(events.len(), elapsed),
        group_commits: snapshot.group_commits,
        batch_p50: snapshot.batch_size.p50,
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

async fn throughput(backend: Backend, total: usize, single: usize) {
    for producers in [1, 16, 64] {
        let count = if producers == 1 { single } else { total };
        let events = events(count);
        // Direct first, then the writer, each on a fresh log. Direct
        // single appends cost an fsync each, so they get fewer events.
        let same_work = direct_producers(backend, &events[..single.min(count)], producers).await;
        let direct = direct(backend, &events).await;
        let run = through_writer(backend, &events, producers).await;
        println!(
            "| {:<8} | {:>9} | {:>9} | {:>11} | {:>11} | {:>6.2}x | {:>11} | {:>5.2}x | {:>8} | {:>9} |",
            backend.name(),
            producers,
            thousands(count as f64),
            thousands(run.events_per_sec),
            thousands(same_work),
            run.events_per_sec / same_work,
            thousands(direct),
            run.events_per_sec / direct,
            thousands(run.group_commits as f64),
            run.batch_p50,
        );
    }
}

/// 64 paced producers offering `per_sec` events/s in total for `secs`.
async fn latency(backend: Backend, per_sec: usize, secs: usize) {
    const PRODUCERS: usize = 64;
    let fresh = backend.open();
    let (_actor, writer, join) =
        LogWriter::start(fresh.log.clone(), LogWriterConfig::default(), None)
            .await
            .expect("the writer starts");
    let latencies = Arc::new(Histogram::durations());
    let each = (per_sec / PRODUCERS).max(1);
    let period = Duration::from_secs_f64(1.0 / each as f64);
    let sends = each * secs;
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for producer in 0..PRODUCERS {
        let writer = writer.clone();
        let latencies = latencies.clone();
        let events = events(sends);
        producers.spawn(async move {
            // Spread the producers' ticks over one period.
            let offset = period.mul_f64(producer as f64 / PRODUCERS as f64);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut appends = JoinSet::new();
            for event in events {
                ticks.tick().await;
                // Timed from the send: the timer's own lateness (up to a
                // millisecond) is not the writer's.
                let sent = Instant::now();
                let writer = writer.clone();
                let latencies = latencies.clone();
                // Open loop: the next send does not wait for this one.
                appends.spawn(async move {
                    writer
                        .append(event)
                        .await
                        .expect("an append through the writer");
                    latencies.record_duration(sent.elapsed());
                });
            }
            while let Some(done) = appends.join_next().await {
                done.expect("an append");
            }
        });
    }
    while let Some(done) = producers.join_next().await {
        done.expect("a producer");
    }
    let elapsed = started.elapsed();
    let offered = latencies.latency_summary();
    let snapshot = writer.snapshot();
    writer.drain().await;
    let _ = join.await;
    let micros = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    println!(
        "| {:<8} | {:>9} | {:>9} | {:>9} | {:>9} | {:>12} | {:>9} |",
        backend.name(),
        thousands(rate(PRODUCERS * sends, elapsed)),
        micros(offered.p50_us),
        micros(offered.p99_us),
        micros(offered.max_us),
        micros(snapshot.append_latency.p99_us),
        snapshot.batch_size.p50,
    );
}

fn main() {
    let total = env_usize("VIBES_WRITER_BENCH_EVENTS", 200_000);
    let single = env_usize("VIBES_WRITER_BENCH_SINGLE", 2_000);
    let per_sec = env_usize("VIBES_WRITER_BENCH_RATE", 10_000);
    let secs = env_usize("VIBES_WRITER_BENCH_SECS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        println!(
            "\nThroughput: P producers each making single-event `append` calls through the \
             LogWriter,\nvs. the same P producers calling `EventLog::append_batch` directly \
             with one event each (same work),\nand vs. one task appending the same events \
             directly in batches of {DIRECT_BATCH} (ideal batching)\n(fresh log each; events/s; \
             commits and p50 batch are the writer's group commits)\n"
        );
        println!(
            "| backend  | producers |    events |      writer | same direct |   ratio | ideal batch |  ratio |  commits | p50 batch |"
        );
        println!(
            "|----------|-----------|-----------|-------------|-------------|---------|-------------|--------|----------|-----------|"
        );
        for backend in [Backend::Memory, Backend::Embedded] {
            throughput(backend, total, single).await;
        }

        println!(
            "\nLatency: 64 paced producers offering {} events/s in total for {secs} s, open loop;\n\
             each append timed from its send to its durable reply\n",
            thousands(per_sec as f64)
        );
        println!(
            "| backend  | done ev/s |       p50 |       p99 |       max | p99 (handle) | p50 batch |"
        );
        println!(
            "|----------|-----------|-----------|-----------|-----------|--------------|-----------|"
        );
        for backend in [Backend::Memory, Backend::Embedded] {
            latency(backend, per_sec, secs).await;
        }
    });
}
