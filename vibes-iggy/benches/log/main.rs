//! Log benchmarks: figures, not pass/fail.
//!
//! For each backend: durable `append_batch` throughput at batch sizes 1, 100
//! and 1000 with ~200-byte events, and catch-up throughput (poll + commit)
//! over `VIBES_BENCH_EVENTS` events (default 1,000,000), each next to the
//! raw storage doing the same work in the same run, with the ratio.
//!
//! Run: `cargo bench -p vibes-iggy --bench log`. The Iggy rows run when
//! `VIBES_IGGY_SERVER` names an `iggy-server` binary.

mod embedded;
mod iggy;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::{EventLog, LogError, StartPosition};

/// The size of each encoded event, as the workload asks.
const EVENT_BYTES: usize = 200;

/// How many events each append measurement writes, per batch size.
const APPEND_WORKLOAD: [(usize, usize); 3] = [(1, 2_000), (100, 100_000), (1000, 500_000)];

/// How many events a catch-up poll asks for, and commits after.
const CATCH_UP_BATCH: usize = 1000;

/// What every backend's bench gets.
pub(crate) struct Workload {
    /// How many events catch-up reads.
    pub(crate) catch_up_events: usize,
}

/// One row of the report: our figure next to the raw backend's.
pub(crate) struct Row {
    pub(crate) backend: &'static str,
    pub(crate) what: String,
    pub(crate) events_per_sec: f64,
    pub(crate) raw_events_per_sec: Option<f64>,
}

impl Row {
    fn print(&self) {
        let raw = self
            .raw_events_per_sec
            .map_or_else(|| "-".to_owned(), thousands);
        let ratio = self.raw_events_per_sec.map_or_else(
            || "-".to_owned(),
            |raw| format!("{:.2}x", self.events_per_sec / raw),
        );
        println!(
            "| {:<10} | {:<26} | {:>13} | {:>13} | {:>6} |",
            self.backend,
            self.what,
            thousands(self.events_per_sec),
            raw,
            ratio
        );
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(events_per_sec: f64) -> String {
    let digits = format!("{events_per_sec:.0}");
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `count` distinct events of about [`EVENT_BYTES`] encoded.
pub(crate) fn events(count: usize) -> Vec<StoredEvent> {
    let probe = StoredEvent::new(event(0, String::new())).encode().len();
    (0..count)
        .map(|i| {
            let mut content = format!("{i} ");
            content.extend(std::iter::repeat_n(
                'x',
                EVENT_BYTES.saturating_sub(probe + content.len()),
            ));
            StoredEvent::new(event(i, content))
        })
        .collect()
}

fn event(i: usize, content: String) -> VibesEvent {
    VibesEvent::UserInput {
        session_id: format!("session-{:04}", i % 1000),
        content,
        source: "bench".into(),
    }
}

/// Events per second of `count` events done in `elapsed`.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// How many times [`paired`] runs each side.
const ROUNDS: usize = 3;

/// Runs `raw` and `ours` (each returning a rate) alternately [`ROUNDS`]
/// times and returns the median of each. A VM's disk drifts by tens of
/// percent over seconds; alternating lets both sides see the same drift.
pub(crate) async fn paired<R, RF, O, OF>(mut raw: R, mut ours: O) -> (f64, f64)
where
    R: FnMut() -> RF,
    RF: Future<Output = f64>,
    O: FnMut() -> OF,
    OF: Future<Output = f64>,
{
    let mut raws = Vec::with_capacity(ROUNDS);
    let mut ourss = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        raws.push(raw().await);
        ourss.push(ours().await);
    }
    (median(raws), median(ourss))
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Times `f`, which does `count` events of work.
pub(crate) async fn timed<F: Future<Output = ()>>(count: usize, f: F) -> f64 {
    let started = Instant::now();
    f.await;
    rate(count, started.elapsed())
}

/// `events` cut into batches of `batch`, made before the clock starts.
pub(crate) fn batches(events: &[StoredEvent], batch: usize) -> Vec<Vec<StoredEvent>> {
    events.chunks(batch).map(<[StoredEvent]>::to_vec).collect()
}

/// Appends every batch, each waited for (durable).
pub(crate) async fn append_all(
    log: &dyn EventLog,
    batches: Vec<Vec<StoredEvent>>,
) -> Result<(), LogError> {
    for batch in batches {
        log.append_batch(batch).await?;
    }
    Ok(())
}

/// How a catch-up treats each record it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Records {
    /// Poll and commit only, as a consumer that forwards stored JSON does.
    Forwarded,
    /// Also decode every event, as a consumer that looks inside does.
    Decoded,
}

impl Records {
    /// The measurement's name in the report.
    pub(crate) fn what(self, total: usize) -> String {
        match self {
            Self::Forwarded => format!("catch-up {total}"),
            Self::Decoded => format!("catch-up+decode {total}"),
        }
    }
}

/// The envelope decoded the generic way, the event left as JSON: what
/// decoding costs without vibesd's typed events, the raw side of
/// `catch-up+decode`.
#[derive(serde::Deserialize)]
pub(crate) struct GenericEnvelope {
    pub(crate) event_id: uuid::Uuid,
    pub(crate) timestamp: chrono::DateTime<chrono::Utc>,
    pub(crate) event: serde_json::Value,
}

/// Decodes a stored record generically (see [`GenericEnvelope`]).
pub(crate) fn generic_decode(payload: &[u8]) {
    let envelope: GenericEnvelope = serde_json::from_slice(payload).expect("decodes");
    assert!(envelope.event.is_object() && !envelope.event_id.is_nil());
    std::hint::black_box(envelope.timestamp);
}

/// Reads the whole log as a new group: poll `CATCH_UP_BATCH`, then commit
/// each batch.
pub(crate) async fn catch_up(
    log: &dyn EventLog,
    total: u64,
    records: Records,
) -> Result<(), LogError> {
    // A new group each time, so every catch-up reads from the beginning.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let group = format!("catch-up-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    let mut consumer = log.consumer(&group, StartPosition::Beginning).await?;
    let mut read = 0u64;
    while read < total {
        let polled = consumer
            .poll(CATCH_UP_BATCH, Duration::from_secs(10))
            .await?;
        let last = polled.last().expect("the log holds the events").offset;
        if records == Records::Decoded {
            for record in &polled {
                assert!(record.event().is_ok(), "record {} decodes", record.offset);
            }
        }
        consumer.commit(last).await?;
        read += polled.len() as u64;
    }
    Ok(())
}

fn main() {
    let catch_up_events = std::env::var("VIBES_BENCH_EVENTS")
        .ok()
        .map(|n| n.parse().expect("VIBES_BENCH_EVENTS is a number"))
        .unwrap_or(1_000_000);
    let workload = Workload { catch_up_events };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    runtime.block_on(async {
        rows.extend(embedded::run(&workload).await);
        rows.extend(iggy::run(&workload).await);
    });
    println!();
    println!(
        "| backend    | measurement                | vibes (ev/s)  | raw (ev/s)    | ratio  |"
    );
    println!(
        "|------------|----------------------------|---------------|---------------|--------|"
    );
    for row in &rows {
        row.print();
    }
}
