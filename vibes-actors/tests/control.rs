//! The control plane answers whatever one child does: a group stuck in its
//! handler holds up no other group, no snapshot and no ping; a crashed
//! group comes back as a new actor; a failed LogWriter is restarted, and
//! the appends it held are answered, never left waiting or acknowledged
//! without being written.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use vibes_actors::WriterError;
use vibes_actors::group::{GroupSpec, GroupState};
use vibes_actors::supervisor::{ActorKind, ActorNode};
use vibes_core::{Delivery, Handled, Handler};
use vibes_iggy::SeekTo;

use crate::support::{
    self, GatedLog, INJECTED, Script, TestLog, events, fast_group, fill, start_supervisor, wait_for,
};

/// How fast a control answer or snapshot must be while a group is stuck.
const PROMPT: Duration = Duration::from_secs(1);

/// Panics unless `future` finishes within [`PROMPT`].
async fn promptly<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PROMPT:?}"))
}

/// A handler that returns from no batch until `release` is closed.
struct Blocking {
    release: Arc<tokio::sync::Semaphore>,
    script: Arc<Script>,
}

#[async_trait]
impl Handler for Blocking {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        for (offset, _) in batch {
            *self.script.seen.lock().unwrap().entry(*offset).or_default() += 1;
        }
        // Never granted: it waits until the semaphore is closed.
        let _ = self.release.acquire().await;
        Handled::All
    }
}

fn blocking_group(
    name: &str,
    script: &Arc<Script>,
    release: &Arc<tokio::sync::Semaphore>,
) -> GroupSpec {
    let mut spec = fast_group(name, script);
    spec.config.stuck_after = Duration::from_millis(200);
    let (script, release) = (script.clone(), release.clone());
    spec.handler = Arc::new(move || {
        Box::new(Blocking {
            release: release.clone(),
            script: script.clone(),
        }) as Box<dyn Handler>
    });
    spec
}

fn node<'a>(tree: &'a ActorNode, name: &str) -> &'a ActorNode {
    tree.children
        .iter()
        .find(|child| child.name == name)
        .unwrap_or_else(|| panic!("no {name:?} in the actor tree: {tree:?}"))
}

/// Before: the Supervisor awaited its children in its own mailbox, so a
/// seek or stop of a busy group held every snapshot, every other group's
/// control and the watchdog's probe for up to 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_handler_holds_up_no_other_group_nor_the_supervisor() {
    let test_log = TestLog::memory();
    fill(&*test_log.log, 10).await;
    let stuck_script = Arc::new(Script::default());
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let other = Arc::new(Script::default());
    let supervisor = start_supervisor(
        test_log.log.clone(),
        vec![
            blocking_group("stuck", &stuck_script, &release),
            fast_group("other", &other),
        ],
    )
    .await;
    wait_for("the stuck group to show stuck", || async {
        supervisor.group("stuck").await.unwrap().state == GroupState::Stuck
    })
    .await;
    let stuck = supervisor.group("stuck").await.unwrap();
    let batch = stuck.batch.clone().unwrap();
    assert_eq!(batch.first, 0, "{stuck:?}");
    assert!(batch.running_seconds > 0.2, "{stuck:?}");

    // Everything else answers at once.
    assert!(promptly("a ping", supervisor.ping(PROMPT)).await);
    promptly("the groups", supervisor.groups()).await;
    promptly("a snapshot", supervisor.snapshot()).await;
    let tree = supervisor.actors();
    assert_eq!(node(&tree.supervisor, "stuck").state, "stuck");
    promptly("pausing another group", supervisor.pause("other"))
        .await
        .unwrap();
    assert_eq!(
        supervisor.group("other").await.unwrap().state,
        GroupState::Paused
    );
    promptly("resuming it", supervisor.resume("other"))
        .await
        .unwrap();
    let report = promptly(
        "a dry-run seek of the stuck group",
        supervisor.seek("stuck", SeekTo::Beginning, true),
    )
    .await
    .unwrap();
    assert!(report.dry_run);
    promptly(
        "a seek of another group",
        supervisor.seek("other", SeekTo::End, false),
    )
    .await
    .unwrap();

    // An operator's restart of the stuck group kills it after its grace
    // period; the batch it never finished is handed to the new actor.
    let old_id = node(&supervisor.actors().supervisor, "stuck")
        .actor_id
        .clone()
        .unwrap();
    let restart = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.restart("stuck").await }
    });
    // While the stuck group is asked to stop (and, after its grace, killed),
    // the Supervisor goes on answering.
    assert!(promptly("a ping during the restart", supervisor.ping(PROMPT)).await);
    promptly(
        "pausing another group during the restart",
        supervisor.pause("other"),
    )
    .await
    .unwrap();
    assert!(
        !restart.is_finished(),
        "the stuck handler still holds its actor"
    );
    tokio::time::timeout(Duration::from_secs(20), restart)
        .await
        .expect("the restart of a stuck group answers once it was killed and restarted")
        .unwrap()
        .unwrap();
    let tree = supervisor.actors();
    let restarted = node(&tree.supervisor, "stuck");
    assert_ne!(restarted.actor_id.as_deref(), Some(old_id.as_str()));
    wait_for("the unfinished batch to be handed again", || async {
        stuck_script.seen(0) == 2
    })
    .await;
    release.close();
    supervisor.shutdown().await.unwrap();
}

/// A handler panic ends the group's actor: the tree shows a new actor id,
/// one more restart and one more generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_handler_panic_the_group_runs_as_a_new_actor() {
    let test_log = TestLog::memory();
    let script = Arc::new(Script::default());
    script.panic_once.lock().unwrap().insert(3);
    fill(&*test_log.log, 10).await;
    let supervisor = start_supervisor(test_log.log.clone(), vec![fast_group("g", &script)]).await;
    wait_for("the group to start", || async {
        node(&supervisor.actors().supervisor, "g")
            .actor_id
            .is_some()
    })
    .await;
    wait_for("every event handled", || async {
        supervisor.group("g").await.unwrap().committed == Some(9)
    })
    .await;
    let tree = supervisor.actors();
    let group = node(&tree.supervisor, "g");
    assert_eq!(group.kind, ActorKind::ConsumerGroup);
    assert_eq!(group.restarts, 1, "{group:?}");
    assert_eq!(group.generation, Some(2), "{group:?}");
    assert!(
        group.last_error.as_deref().unwrap_or("").contains(INJECTED),
        "{group:?}"
    );
    assert_eq!(tree.supervisor.kind, ActorKind::Supervisor);
    assert!(tree.supervisor.actor_id.is_some());
    assert_eq!(node(&tree.supervisor, "log-writer").state, "running");
    supervisor.shutdown().await.unwrap();
}

/// Before: a LogWriter that died stayed dead, and every append failed
/// until vibesd was restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_writer_is_restarted_and_answers_what_it_held() {
    support::quiet_injected_panics();
    let test_log = TestLog::memory();
    let log = GatedLog::new(test_log.log.clone());
    log.open();
    let supervisor = start_supervisor(log.clone(), Vec::new()).await;
    let writer = supervisor.writer().clone();
    assert_eq!(writer.append(events(1).remove(0)).await.unwrap(), 0);
    let first_id = node(&supervisor.actors().supervisor, "log-writer")
        .actor_id
        .clone()
        .unwrap();

    // The next write panics; the producers queue behind it while it waits.
    log.close();
    log.panic_writes(&[log.writes() + 1]);
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(events(1).remove(0)).await })
        })
        .collect();
    wait_for("the write to start", || async {
        writer.snapshot().queued_events == 8
    })
    .await;
    log.open();
    for producer in producers {
        let answer = tokio::time::timeout(Duration::from_secs(10), producer)
            .await
            .expect("an append held by a failed writer is answered, not left waiting")
            .unwrap();
        assert!(
            matches!(answer, Err(WriterError::Restarting)),
            "an append the failed writer held is refused, never acknowledged: {answer:?}"
        );
    }
    wait_for("the writer to be restarted", || async { writer.is_open() }).await;
    assert_eq!(
        test_log.log.high_water_mark().await.unwrap(),
        1,
        "nothing of the failed write reached the log"
    );
    assert_eq!(writer.append(events(1).remove(0)).await.unwrap(), 1);

    let tree = supervisor.actors();
    let node = node(&tree.supervisor, "log-writer");
    assert_eq!(node.kind, ActorKind::LogWriter);
    assert_eq!(node.restarts, 1, "{node:?}");
    assert_ne!(node.actor_id.as_deref(), Some(first_id.as_str()));
    assert!(
        node.last_error.as_deref().unwrap_or("").contains(INJECTED),
        "{node:?}"
    );
    supervisor.shutdown().await.unwrap();
}
