//! What the assessment costs over reading the log: figures, not pass/fail.
//!
//! Writes a synthetic stream (`VIBES_BENCH_EVENTS`, default 200,000 events
//! over 200 sessions: prompts, streamed text, tool calls through hooks and
//! the Claude stream, test runs that fail a fifth of the time) to a real
//! embedded log in a temporary directory, then, in the same run, reads it
//! back in batches of 100 as a consumer group does and measures:
//!
//! - read + decode: every batch read and every event decoded;
//! - read + decode + assess: the same, each batch then handed to the
//!   assessment handler over a fresh groove store (one SQLite transaction,
//!   `synchronous=FULL`, per batch, as in vibesd).
//!
//! Run: `cargo bench -p vibes-groove --bench assessment`.

use std::sync::Arc;
use std::time::Instant;

use vibes_groove::{AssessmentHandler, GrooveConfig, GrooveStore};

mod stream;
use stream::{SESSIONS, filled_log, read_through as run, thousands};

/// Events per batch, as a consumer group polls them.
const BATCH: usize = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let filled = Instant::now();
        let (total, log, _dir) = filled_log().await;
        println!(
            "wrote {total} events ({SESSIONS} sessions) to an embedded log in {:.1} s",
            filled.elapsed().as_secs_f64()
        );
        let total = total as u64;

        // Once to warm the page cache, so both measure the same reads.
        run(&log, total, BATCH, None).await;
        let decode = run(&log, total, BATCH, None).await;
        let store_dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            GrooveStore::open(store_dir.path(), &GrooveConfig::default()).expect("open store"),
        );
        let mut handler = AssessmentHandler::new(store.clone(), vibes_plugin::Notices::none());
        let assess = run(&log, total, BATCH, Some(&mut handler)).await;
        let totals = store.totals().expect("totals");

        println!();
        println!("| measurement (batches of {BATCH})  | events/s      |");
        println!("|-------------------------------|---------------|");
        println!(
            "| read + decode                 | {:>13} |",
            thousands(decode)
        );
        println!(
            "| read + decode + assess        | {:>13} |",
            thousands(assess)
        );
        println!();
        println!(
            "assess / decode: {:.3}x (the assessment takes {:.1} µs an event)",
            assess / decode,
            (1.0 / assess - 1.0 / decode) * 1e6
        );
        println!(
            "derived: {} sessions, signals {}, checkpoints {}",
            totals["sessions"], totals["signals"], totals["checkpoints"]
        );
    });
}
