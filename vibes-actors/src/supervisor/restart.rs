//! Restart intensity: how the Supervisor decides, when a child fails,
//! between a restart after back-off and giving up for a cool-down. Groups
//! and the LogWriter follow the same rule.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::group::RestartPolicy;

/// What to do with a child that just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Restart it after this back-off.
    Restart(Duration),
    /// It restarted more than `max_restarts` times within `window`: leave
    /// it stopped for this cool-down (or until an operator acts).
    GiveUp(Duration),
}

/// The restarts of one child within its policy's window.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    within_window: VecDeque<Instant>,
}

impl Restarts {
    /// Counts a failure now and decides.
    pub(super) fn failed(&mut self, policy: &RestartPolicy) -> Decision {
        let now = Instant::now();
        self.within_window.push_back(now);
        while self
            .within_window
            .front()
            .is_some_and(|at| now.duration_since(*at) > policy.window)
        {
            self.within_window.pop_front();
        }
        let count = self.within_window.len();
        if count > policy.max_restarts {
            Decision::GiveUp(policy.cooldown)
        } else {
            Decision::Restart(
                policy
                    .backoff
                    .delay(u32::try_from(count).unwrap_or(u32::MAX)),
            )
        }
    }

    /// How many restarts the window holds.
    pub(super) fn len(&self) -> usize {
        self.within_window.len()
    }

    /// A fresh window: an operator restarted the child, or its cool-down
    /// is over.
    pub(super) fn clear(&mut self) {
        self.within_window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_restarts_than_the_policy_allows_in_its_window_give_up() {
        let policy = RestartPolicy {
            max_restarts: 2,
            ..RestartPolicy::default()
        };
        let mut restarts = Restarts::default();
        assert!(matches!(restarts.failed(&policy), Decision::Restart(_)));
        assert!(matches!(restarts.failed(&policy), Decision::Restart(_)));
        assert_eq!(restarts.failed(&policy), Decision::GiveUp(policy.cooldown));
        restarts.clear();
        assert!(matches!(restarts.failed(&policy), Decision::Restart(_)));
    }
}
