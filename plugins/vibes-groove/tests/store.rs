//! The store: exactly once, where it resumes, what a rewind drops, what a
//! reopen keeps, and a failed batch.

use std::sync::Arc;

use vibes_core::{ClaudeEvent, Handled, Handler, Usage};
use vibes_groove::{AssessmentHandler, GrooveConfig, GrooveStore};

use crate::support::{claude, corpus, failing_bash, feed, numbered, open, prompt, stored};

#[tokio::test]
async fn a_batch_applied_twice_changes_nothing() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus[..150], 50).await;
    let once = store.dump().unwrap();
    // The same batches again, and overlapping ones: all re-deliveries.
    feed(&mut handler, &corpus[..150], 50).await;
    feed(&mut handler, &corpus[20..130], 37).await;
    assert_eq!(store.dump().unwrap(), once);

    // A batch half old, half new applies only the new half.
    feed(&mut handler, &corpus[100..200], 100).await;
    let dir2 = tempfile::tempdir().unwrap();
    let (straight, mut straight_handler) = open(dir2.path());
    feed(&mut straight_handler, &corpus[..200], 100).await;
    assert_eq!(store.dump().unwrap(), straight.dump().unwrap());
}

#[tokio::test]
async fn resume_at_is_the_first_offset_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    assert_eq!(handler.resume_at(), Some(0));
    assert_eq!(store.resume_at().unwrap(), 0);
    let events = numbered(
        40,
        vec![
            stored(0.0, prompt("s", "hello")),
            stored(1.0, prompt("s", "wtf")),
        ],
    );
    feed(&mut handler, &events, 10).await;
    assert_eq!(handler.resume_at(), Some(42));
    // A fresh handler (a restart of the group) over the same store agrees.
    assert_eq!(
        AssessmentHandler::new(store.clone(), vibes_plugin::Notices::none()).resume_at(),
        Some(42)
    );
    // Events without a session still move the applied offset.
    let lone = numbered(
        42,
        vec![stored(
            2.0,
            vibes_core::VibesEvent::ClientConnected {
                client_id: "c".into(),
            },
        )],
    );
    feed(&mut handler, &lone, 10).await;
    assert_eq!(handler.resume_at(), Some(43));
}

#[tokio::test]
async fn a_rewind_behind_the_store_clears_it_and_one_past_it_drops_nothing() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus[..100], 100).await;
    let before = store.dump().unwrap();
    // Nothing derived from 100 on: nothing dropped, reading goes on at 100.
    assert_eq!(handler.rewound(100).await.unwrap(), 100);
    assert_eq!(handler.rewound(500).await.unwrap(), 100);
    assert_eq!(store.dump().unwrap(), before);
    // Back into what it derived: everything goes, reading starts at 0.
    assert_eq!(handler.rewound(99).await.unwrap(), 0);
    assert_eq!(store.applied_offset().unwrap(), None);
    assert!(store.sessions().unwrap().is_empty());
    assert_eq!(store.totals().unwrap()["signals"]["tool_failure"], 0);
    // An empty store rewinds to 0 whatever it is asked.
    assert_eq!(handler.rewound(7).await.unwrap(), 0);
}

#[tokio::test]
async fn a_streamed_message_survives_a_reopen_and_counts_once() {
    let session = "s";
    let delta = |text: &str| claude(session, ClaudeEvent::TextDelta { text: text.into() });
    let events = numbered(
        0,
        vec![
            stored(0.0, delta("I apologize, ")),
            stored(1.0, delta("the test was wrong.")),
            stored(
                2.0,
                claude(
                    session,
                    ClaudeEvent::TurnComplete {
                        usage: Usage::default(),
                    },
                ),
            ),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, mut handler) = open(dir.path());
        feed(&mut handler, &events[..2], 10).await;
    }
    // A restart: a new store on the same file, a new handler; the first
    // delta is delivered again.
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &events[1..], 10).await;
    let totals = store.totals().unwrap();
    assert_eq!(totals["signals"]["assistant_message"], 1);
    assert_eq!(totals["signals"]["apology"], 1);
    let page = store.timeline(session, None, 10).unwrap().unwrap();
    let message = page
        .records
        .iter()
        .find(|r| r["kind"] == "assistant_message")
        .unwrap();
    assert_eq!(message["detail"], "32 chars");
}

#[tokio::test]
async fn other_assessment_settings_rebuild_the_store_and_intervene_does_not() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus[..100], 100).await;
    drop((store, handler));
    let intervening = GrooveConfig {
        intervene: true,
        max_interventions: 9,
        ..GrooveConfig::default()
    };
    let store = GrooveStore::open(dir.path(), &intervening).unwrap();
    assert_eq!(store.applied_offset().unwrap(), Some(99));
    drop(store);
    let other = GrooveConfig {
        alpha: 0.9,
        ..GrooveConfig::default()
    };
    let store = GrooveStore::open(dir.path(), &other).unwrap();
    assert_eq!(
        store.applied_offset().unwrap(),
        None,
        "derived under alpha 0.2"
    );
    assert!(store.sessions().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_the_store_cannot_take_fails_at_its_first_offset_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    let events = numbered(
        10,
        vec![
            stored(0.0, failing_bash("s", "make")),
            stored(1.0, failing_bash("s", "make")),
        ],
    );
    feed(&mut handler, &events[..1], 10).await;
    // Break the store behind its back.
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute_batch("DROP TABLE signals").unwrap();
    let more = numbered(
        11,
        vec![
            stored(1.0, failing_bash("s", "make")),
            stored(2.0, prompt("s", "wtf")),
        ],
    );
    let Handled::Failed { offset, error } = handler.handle(&more).await else {
        panic!("the batch was taken");
    };
    assert_eq!(offset, 11);
    assert!(error.contains("signals"), "{error}");
    assert_eq!(store.applied_offset().unwrap(), Some(10));
}

#[tokio::test]
async fn the_handler_factory_shares_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GrooveStore::open(dir.path(), &GrooveConfig::default()).unwrap());
    let mut first = AssessmentHandler::new(store.clone(), vibes_plugin::Notices::none());
    let events = numbered(0, vec![stored(0.0, prompt("s", "wtf"))]);
    feed(&mut first, &events, 1).await;
    let second = AssessmentHandler::new(store.clone(), vibes_plugin::Notices::none());
    assert_eq!(second.resume_at(), Some(1));
}
