//! THE REPLAY TEST: the store is a pure function of the log. The recorded
//! corpus, run through the handler, gives the same rows byte for byte after
//! the store is deleted and rebuilt, after a rewind to 0, and whatever the
//! batch sizes.

use crate::support::{corpus, feed, open};
use vibes_core::Handler;

#[tokio::test]
async fn a_replay_writes_identical_rows_after_delete_after_rewind_and_in_any_batch_sizes() {
    let corpus = corpus();
    assert!(
        corpus.len() > 300,
        "the corpus holds {} events",
        corpus.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus, 100).await;
    let reference = store.dump().unwrap();
    let last = corpus.last().unwrap().0;
    assert_eq!(store.applied_offset().unwrap(), Some(last));
    assert_eq!(handler.resume_at(), Some(last + 1));

    // The dump is worth comparing: every kind of record is in it.
    let dump = reference.join("\n");
    for needle in [
        "kind=\"negative_phrase\"",
        "kind=\"positive_phrase\"",
        "kind=\"assistant_message\"",
        "kind=\"apology\"",
        "kind=\"tool_failure\"",
        "kind=\"correction\"",
        "kind=\"retry\"",
        "kind=\"test_failed\"",
        "kind=\"test_passed\"",
        "kind=\"build_failed\"",
        "to_state=\"open\"",
        "to_state=\"half_open\"",
        "to_state=\"closed\"",
        "trigger=\"repeated_failures\"",
        "trigger=\"session_end\"",
        "trigger=\"frustration\"",
        "trigger=\"interval\"",
        "interventions: rowid=1",
    ] {
        assert!(dump.contains(needle), "the dump has no {needle}");
    }

    // (a) The store deleted: a fresh one reads from 0 and rebuilds the same.
    drop(handler);
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let path = dir
            .path()
            .join(format!("{}{suffix}", vibes_groove::FILE_NAME));
        if path.exists() {
            std::fs::remove_file(path).unwrap();
        }
    }
    let (store, mut handler) = open(dir.path());
    assert_eq!(handler.resume_at(), Some(0));
    feed(&mut handler, &corpus, 100).await;
    assert_eq!(store.dump().unwrap(), reference, "rebuilt after delete");

    // (b) Rewound to 0: replaying from the offset it answers, the same.
    let from = handler.rewound(0).await.unwrap();
    assert_eq!(from, 0);
    assert_eq!(store.applied_offset().unwrap(), None);
    feed(&mut handler, &corpus[from as usize..], 100).await;
    assert_eq!(store.dump().unwrap(), reference, "rebuilt after rewind");

    // (c) Other batch sizes, each into a store of its own.
    for size in [1, 7, 64, 333, corpus.len()] {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut handler) = open(dir.path());
        feed(&mut handler, &corpus, size).await;
        assert_eq!(store.dump().unwrap(), reference, "batches of {size}");
    }
}

#[tokio::test]
async fn a_rewind_to_the_middle_rebuilds_from_the_beginning_to_the_same_rows() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus, 50).await;
    let reference = store.dump().unwrap();
    let from = handler.rewound(200).await.unwrap();
    assert!(from <= 200);
    feed(&mut handler, &corpus[from as usize..], 50).await;
    assert_eq!(store.dump().unwrap(), reference);
}
