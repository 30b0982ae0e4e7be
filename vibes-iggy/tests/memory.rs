//! The conformance suite against the memory backend.

use std::sync::Arc;

use async_trait::async_trait;
use vibes_iggy::memory::MemoryLog;
use vibes_iggy::{EventLog, LogOptions};

use crate::conformance::Fixture;

/// One in-memory log; each open hands out a clone sharing it, with the
/// options that open asked for.
struct MemoryFixture {
    log: std::sync::Mutex<Option<MemoryLog>>,
}

fn fixture() -> Option<MemoryFixture> {
    Some(MemoryFixture {
        log: std::sync::Mutex::new(None),
    })
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn open(&self, options: LogOptions) -> Arc<dyn EventLog> {
        let mut log = self.log.lock().unwrap();
        Arc::new(log.get_or_insert_with(|| MemoryLog::new(options)).clone())
    }

    async fn append_raw(&self, bytes: &[u8]) {
        let mut log = self.log.lock().unwrap();
        log.get_or_insert_with(|| MemoryLog::new(LogOptions::default()))
            .append_raw(bytes);
    }
}

crate::conformance_suite!(fixture());
