//! The actors of vibesd, on `ractor`.
//!
//! - the **Supervisor** ([`supervisor`]) owns the event log (and the
//!   managed `iggy-server`), spawns one **ConsumerGroup** actor per
//!   registered group and restarts it after a failure, and owns the
//!   **LogWriter**;
//! - a **ConsumerGroup** ([`group`]) polls a batch, hands it to its
//!   [`vibes_core::Handler`], commits, and casts itself the next step;
//! - the **LogWriter** ([`writer`]) group-commits the appends of every
//!   producer.
//!
//! `docs/actors.md` draws the tree and the message flow.

pub mod backoff;
pub mod dead_letters;
pub mod group;
pub mod metrics;
pub mod supervisor;
pub mod writer;

pub use writer::{
    LogWriter, LogWriterConfig, LogWriterHandle, LogWriterMsg, WriterError, WriterSnapshot,
};

/// Why an actor (the Supervisor, at start) could not be spawned.
pub use ractor::SpawnErr;
