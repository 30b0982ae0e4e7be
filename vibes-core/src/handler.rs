//! The [`Handler`] trait: what a consumer group runs for each batch.
//!
//! Built-in consumers and plugins implement it; a consumer group (in
//! `vibes-actors`) polls the log, hands each batch to its handler, and
//! commits as far as the handler says. A handler needs nothing else.

use async_trait::async_trait;

use crate::StoredEvent;

/// One event of a batch, with its offset in the log.
pub type Delivery = (u64, StoredEvent);

/// How far a handler got with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Every event of the batch is done: commit all of it.
    All,
    /// Events up to and including this offset are done; commit only that
    /// far (`None`: nothing yet). The group still goes on to the next batch;
    /// only a restart delivers the uncommitted events again. For handlers
    /// that buffer and flush later.
    UpTo(Option<u64>),
    /// The event at `offset` failed; the events of the batch before it are
    /// done. The group retries from `offset` with back-off, and after too
    /// many failures in a row dead-letters it and moves on.
    Failed { offset: u64, error: String },
}

/// What a consumer group does with the events it reads.
///
/// `handle` gets batches in offset order, each event at least once. A
/// handler that panics is restarted (a new one, from its factory) at the
/// group's committed offset.
///
/// A handler whose effect is derived state kept with its own applied offset
/// (a database, a store) says where that state stands ([`Handler::resume_at`])
/// and drops what it derived when the group moves back
/// ([`Handler::rewound`]), so that deleting its state rebuilds it from the log
/// and a seek backwards never leaves it ahead of the group.
#[async_trait]
pub trait Handler: Send + 'static {
    /// Handles `batch`, which is never empty.
    async fn handle(&mut self, batch: &[Delivery]) -> Handled;

    /// The first offset this handler's own state has not applied, if it
    /// keeps one. At start, a group whose committed offset is past it reads
    /// from here instead (its state was deleted or is older), and one that
    /// is behind it first calls [`Handler::rewound`] (it was moved back
    /// while it was not running). `None`: the group's offset is all there is.
    fn resume_at(&self) -> Option<u64> {
        None
    }

    /// The group was moved back to read `to` next: drop everything derived
    /// from events at `to` or later. Answers the offset to read from, at
    /// most `to`: a handler that cannot drop part of its state can drop it
    /// all and answer 0. An error leaves the group where the seek put it and
    /// is reported.
    async fn rewound(&mut self, to: u64) -> Result<u64, String> {
        Ok(to)
    }
}
