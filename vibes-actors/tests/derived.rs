//! Handlers with derived state of their own: a group reads the log again
//! from where that state stands, and tells the handler when it is moved
//! back, live or while it was stopped.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use vibes_actors::group::{GroupSpec, GroupState};
use vibes_actors::supervisor::SupervisorHandle;
use vibes_core::{Delivery, Handled, Handler};
use vibes_iggy::SeekTo;

use crate::support::{Script, TestLog, fast_group, fill, start_supervisor, wait_for};

/// A store that remembers every offset applied, once, and what it was told.
#[derive(Debug, Default)]
struct Store {
    applied: Vec<u64>,
    rewinds: Vec<u64>,
    /// Every batch panics while set.
    broken: bool,
}

struct StoreHandler(Arc<Mutex<Store>>);

#[async_trait]
impl Handler for StoreHandler {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        let mut store = self.0.lock().unwrap();
        if store.broken {
            drop(store);
            panic!("{}: the store is broken", crate::support::INJECTED);
        }
        for (offset, _) in batch {
            if store.applied.last().is_none_or(|last| offset > last) {
                store.applied.push(*offset);
            }
        }
        Handled::All
    }

    fn resume_at(&self) -> Option<u64> {
        Some(
            self.0
                .lock()
                .unwrap()
                .applied
                .last()
                .map_or(0, |last| last + 1),
        )
    }

    async fn rewound(&mut self, to: u64) -> Result<u64, String> {
        let mut store = self.0.lock().unwrap();
        store.rewinds.push(to);
        // Like the built-in ones: drop it all, read from the start.
        store.applied.clear();
        Ok(0)
    }
}

fn group(store: &Arc<Mutex<Store>>) -> GroupSpec {
    let mut spec = fast_group("derived", &Arc::new(Script::default()));
    // One crash marks it failed: a group that is not running.
    spec.config.restart.max_restarts = 0;
    let store = store.clone();
    spec.handler = Arc::new(move || Box::new(StoreHandler(store.clone())) as Box<dyn Handler>);
    spec
}

async fn start(test_log: &TestLog, store: &Arc<Mutex<Store>>) -> SupervisorHandle {
    start_supervisor(test_log.log.clone(), vec![group(store)]).await
}

async fn applied_all(store: &Arc<Mutex<Store>>, count: u64) {
    wait_for("the store to hold every offset once", || async {
        store.lock().unwrap().applied == (0..count).collect::<Vec<_>>()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_is_rebuilt_and_a_seek_back_rewinds_it() {
    let test_log = TestLog::embedded();
    fill(&*test_log.log, 20).await;
    let store = Arc::new(Mutex::new(Store::default()));
    let supervisor = start(&test_log, &store).await;
    applied_all(&store, 20).await;

    // The store is lost while vibesd is down: the next start reads the
    // log again from where the (empty) store stands, not from the commit.
    supervisor.shutdown().await.unwrap();
    *store.lock().unwrap() = Store::default();
    let supervisor = start(&test_log, &store).await;
    applied_all(&store, 20).await;
    assert!(store.lock().unwrap().rewinds.is_empty());

    // A seek back while it runs: the handler is told, and what it asks
    // to read again is read again.
    supervisor
        .seek("derived", SeekTo::Offset(15), false)
        .await
        .unwrap();
    applied_all(&store, 20).await;
    assert_eq!(store.lock().unwrap().rewinds, vec![15]);

    // A seek back while it is not running (failed): its next start tells
    // the handler.
    store.lock().unwrap().broken = true;
    fill(&*test_log.log, 1).await;
    wait_for("the group to fail", || async {
        supervisor.group("derived").await.unwrap().state == GroupState::Failed
    })
    .await;
    supervisor
        .seek("derived", SeekTo::Offset(5), false)
        .await
        .unwrap();
    assert_eq!(store.lock().unwrap().rewinds, vec![15], "not told yet");
    store.lock().unwrap().broken = false;
    supervisor.restart("derived").await.unwrap();
    applied_all(&store, 21).await;
    assert_eq!(store.lock().unwrap().rewinds, vec![15, 5]);
    supervisor.shutdown().await.unwrap();
}
