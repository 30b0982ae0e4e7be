//! The dead letters: events a group gave up on, and what became of them.
//!
//! The log is the one source of truth: a group writes a `dead_letter` event
//! when it gives up on an offset, and an operator's replay or skip writes a
//! `dead_letter_resolved` event. This registry is the index of the ones
//! still open, rebuilt from the log when the Supervisor starts and kept up
//! to date as groups write new ones.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use vibes_core::VibesEvent;
use vibes_iggy::{EventLog, LogError, Offset};

/// An event a group gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub group: String,
    /// The offset of the event given up on.
    pub offset: Offset,
    /// The handler's last error, or why the event could not be handled.
    pub error: String,
    /// How many times it was tried.
    pub attempts: u32,
}

/// The open dead letters of every group, by group and offset.
#[derive(Debug, Default)]
pub struct DeadLetters {
    open: Mutex<BTreeMap<(String, Offset), DeadLetter>>,
}

/// How many records the start-up scan reads at a time.
const SCAN_PAGE: usize = 1000;

impl DeadLetters {
    /// Rebuilds the registry by reading the whole log. Only records that
    /// mention a dead letter are decoded, so the scan costs little more
    /// than reading.
    pub async fn load(log: &dyn EventLog) -> Result<Self, LogError> {
        let letters = Self::default();
        let end = log.high_water_mark().await?;
        let mut next = 0;
        while next < end {
            let records = log.read(next, SCAN_PAGE).await?;
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            for record in records {
                if contains(&record.payload, b"\"dead_letter")
                    && let Ok(stored) = record.event()
                {
                    letters.apply(&stored.event);
                }
            }
        }
        Ok(letters)
    }

    /// Applies a `dead_letter` or `dead_letter_resolved` event; other
    /// events change nothing.
    pub fn apply(&self, event: &VibesEvent) {
        match event {
            VibesEvent::DeadLetter {
                group,
                offset,
                error,
                attempts,
            } => {
                self.lock().insert(
                    (group.clone(), *offset),
                    DeadLetter {
                        group: group.clone(),
                        offset: *offset,
                        error: error.clone(),
                        attempts: *attempts,
                    },
                );
            }
            VibesEvent::DeadLetterResolved { group, offset, .. } => {
                self.lock().remove(&(group.clone(), *offset));
            }
            _ => {}
        }
    }

    /// Every open dead letter, by group then offset.
    pub fn list(&self) -> Vec<DeadLetter> {
        self.lock().values().cloned().collect()
    }

    /// The open dead letter of `group` at `offset`, if there is one.
    pub fn get(&self, group: &str, offset: Offset) -> Option<DeadLetter> {
        self.lock().get(&(group.to_owned(), offset)).cloned()
    }

    /// How many dead letters `group` has open.
    pub fn count(&self, group: &str) -> usize {
        self.lock().keys().filter(|(name, _)| name == group).count()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, Offset), DeadLetter>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
