//! What every actor counts, read through snapshots.
//!
//! Counters live in `Arc`s shared between an actor and its supervisor, so a
//! snapshot can be taken even while the actor is busy, backing off or dead.
//! Snapshots are plain serializable values, for the control API and
//! `/metrics`.
//!
//! [`Histogram`] is the one histogram of the actors: durations (in
//! microseconds) and counts (events per group commit) alike. It keeps
//! percentiles for the JSON snapshots and gives Prometheus its buckets.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::ActorId;
use serde::Serialize;

/// Locks a mutex of counters or snapshots. Each is consistent on its own
/// after any panic elsewhere, so a poisoned one is taken back.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One run of an actor: which actor (its ractor id) and since when. A
/// restart is a new actor, with a new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorRun {
    /// ractor's id of the actor, e.g. `0.12`.
    pub actor_id: String,
    pub started_at: DateTime<Utc>,
}

impl ActorRun {
    /// The run of `actor`, starting now.
    pub(crate) fn now(actor: ActorId) -> Self {
        Self {
            actor_id: actor.to_string(),
            started_at: Utc::now(),
        }
    }
}

/// Bucket bounds of every duration histogram's Prometheus buckets, in
/// microseconds: 100 µs to 60 s.
pub const DURATION_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Bucket bounds of the events-per-group-commit histogram.
pub const COUNT_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

/// A histogram of `u64` values from 1 to `max` at 3 significant digits.
#[derive(Debug)]
pub struct Histogram {
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Histogram {
    /// Values from 1 to `max`; larger ones are clamped to it.
    fn with_max(max: u64) -> Self {
        let histogram = hdrhistogram::Histogram::new_with_bounds(1, max, 3)
            .unwrap_or_else(|err| unreachable!("constant histogram bounds are valid: {err}"));
        Self {
            histogram: Mutex::new(histogram),
        }
    }

    /// For durations in microseconds, from 1 µs to 1 hour.
    pub fn durations() -> Self {
        Self::with_max(3_600_000_000)
    }

    /// For counts, from 1 to 2^32.
    pub fn counts() -> Self {
        Self::with_max(u64::from(u32::MAX))
    }

    /// Records one duration, in microseconds.
    pub fn record_duration(&self, duration: Duration) {
        self.record(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one value (clamped into the histogram's range).
    pub fn record(&self, value: u64) {
        self.lock().saturating_record(value.max(1));
    }

    /// Count, percentiles and maximum so far, of durations.
    pub fn latency_summary(&self) -> LatencySummary {
        let histogram = self.lock();
        LatencySummary {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        }
    }

    /// Count, percentiles and maximum so far, of counts.
    pub fn count_summary(&self) -> CountSummary {
        let histogram = self.lock();
        CountSummary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        }
    }

    /// The histogram in Prometheus's terms: the sum of the values, their
    /// count, and how many fall in each bucket (at most its bound and more
    /// than the bound before; not cumulative), ending with `+Inf`. The
    /// bounds are in the recorded unit, ascending. The sum is the
    /// histogram's mean times its count, as exact as its 3 digits.
    pub fn buckets(&self, bounds: &[u64]) -> Buckets {
        let histogram = self.lock();
        let mut counts = vec![0; bounds.len() + 1];
        for value in histogram.iter_recorded() {
            let at = value.value_iterated_to();
            let bucket = bounds.partition_point(|bound| *bound < at);
            counts[bucket] += value.count_since_last_iteration();
        }
        Buckets {
            sum: histogram.mean() * histogram.len() as f64,
            count: histogram.len(),
            counts,
        }
    }

    fn lock(&self) -> MutexGuard<'_, hdrhistogram::Histogram<u64>> {
        lock(&self.histogram)
    }
}

/// [`Histogram::buckets`]: what a Prometheus histogram shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// The sum of every value, in the recorded unit.
    pub sum: f64,
    pub count: u64,
    /// Per bound, then one for `+Inf`; not cumulative.
    pub counts: Vec<u64>,
}

/// A summary of durations; all times in microseconds (0 when empty).
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

/// A summary of counted sizes (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CountSummary {
    /// How many were recorded.
    pub count: u64,
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest recorded.
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_value_once_under_the_first_bound_that_holds_it() {
        let histogram = Histogram::counts();
        for value in [1, 5, 10, 11, 1000, 5000] {
            histogram.record(value);
        }
        let buckets = histogram.buckets(&[1, 10, 100, 1000]);
        assert_eq!(buckets.counts, vec![1, 2, 1, 1, 1]);
        assert_eq!(buckets.count, 6);
        let exact = 6027.0;
        assert!(
            (buckets.sum - exact).abs() / exact < 0.01,
            "{}",
            buckets.sum
        );
    }
}
