//! Exponential back-off with jitter, for handler retries and restarts.

use std::time::Duration;

use rand::Rng;

/// Bounds of an exponential back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter).
    pub min: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first):
    /// `min · 2^(attempt-1)`, capped at `max`, then scaled by a random factor
    /// in [0.5, 1.0] so that many failing actors do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let base = self.min.saturating_mul(1u32 << doublings).min(self.max);
        base.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_jitter() {
        let backoff = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (9, 25_600),
            (10, 30_000),
            (40, 30_000),
        ] {
            let delay = backoff.delay(attempt);
            let full = Duration::from_millis(full);
            assert!(
                delay <= full && delay >= full / 2,
                "attempt {attempt}: {delay:?}"
            );
        }
    }
}
