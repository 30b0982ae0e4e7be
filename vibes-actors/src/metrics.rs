//! What every actor counts, read through snapshots.
//!
//! Counters live in `Arc`s shared between an actor and its supervisor, so a
//! snapshot can be taken even while the actor is busy, backing off or dead.
//! Snapshots are plain serializable values, for the control API, `/metrics`
//! and the UI.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, from 1 µs to 1 hour at 3
/// significant digits.
#[derive(Debug)]
pub struct LatencyHistogram {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|err| unreachable!("constant histogram bounds are valid: {err}"));
        Self {
            histogram: Mutex::new(histogram),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration (clamped into the histogram's range).
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.lock().saturating_record(micros.max(1));
    }

    /// Count, percentiles and maximum so far.
    pub fn summary(&self) -> LatencySummary {
        let histogram = self.lock();
        LatencySummary {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        // A histogram is consistent after any panic: take it back.
        self.histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A histogram's summary; all times in microseconds (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// How many durations were recorded.
    pub count: u64,
    /// The median.
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    /// The longest.
    pub max_us: u64,
}
