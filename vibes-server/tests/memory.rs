//! The daemon's memory under volume: one huge session, and a catch-up of
//! many events, measured on the real binary from `/proc/<pid>/status`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::history::caught_up;
use crate::support::{Client, Daemon, Memory};

const MIB: u64 = 1024 * 1024;

/// Posts `events` `user_input`s of about `size` bytes into `session`, one
/// request at a time, and returns the peak memory seen meanwhile.
async fn post_one_session(
    daemon: &Daemon,
    client: &Client,
    session: &str,
    events: u64,
    size: usize,
) -> Memory {
    let content = "x".repeat(size);
    let body = serde_json::to_vec(&json!({
        "type": "user_input", "session_id": session, "content": content, "source": "test"
    }))
    .unwrap();
    for _ in 0..events {
        let (status, answer) = client.post_raw("/api/events", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    daemon.memory()
}

/// Reads a transcript through the API chunk by chunk, returning its size.
async fn transcript_bytes(client: &Client, session: &str) -> u64 {
    let mut response = client
        .http
        .get(format!("{}/api/sessions/{session}/transcript", client.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut total = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    total
}

fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("vibesd.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn session_collector_memory_does_not_grow_with_one_huge_session() {
    // Every event of an open session stayed in memory: 1.5 GB posted into
    // one session took the daemon to 1.6 GB resident.
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let events = 160;
    post_one_session(&daemon, &client, "huge", events, MIB as usize - 4096).await;
    caught_up(&client, "session-collector").await;
    let (_, listed) = client.get("/api/sessions").await;
    assert_eq!(listed["sessions"][0]["events"], events, "{listed}");
    let on_disk = std::fs::metadata(daemon.path("transcripts/huge.jsonl"))
        .unwrap()
        .len();
    assert!(on_disk > events * (MIB - 4096), "{on_disk}");
    assert_eq!(transcript_bytes(&client, "huge").await, on_disk);
    let memory = daemon.memory();
    println!(
        "{} MiB into one session: RSS {} MiB, peak {} MiB",
        on_disk / MIB,
        memory.rss / MIB,
        memory.peak / MIB
    );
    // Buffering would hold the 160 MiB posted on top of the ~50 MiB the
    // daemon needs anyway; the bound leaves room for batches in flight
    // (the log, chat-history), not for the session.
    assert!(
        memory.peak < 144 * MIB,
        "peak RSS {} MiB after {} MiB into one session",
        memory.peak / MIB,
        on_disk / MIB
    );
}

/// The full-scale figures of `docs/benchmarks.md`: 1.5 GB into one session
/// (`VIBES_MEMORY_BYTES`), then a catch-up of 1.5M small events of one
/// session (`VIBES_MEMORY_EVENTS`) by a session-collector that starts from
/// the beginning (`VIBES_MEMORY_BYTES=0` skips the first part). Run with
/// `--ignored --nocapture`.
#[tokio::test]
#[ignore = "minutes of I/O; run by hand for docs/benchmarks.md"]
async fn session_collector_memory_stays_bounded_at_full_scale() {
    let from_env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let bytes = from_env("VIBES_MEMORY_BYTES", 1_500_000_000);
    let small = from_env("VIBES_MEMORY_EVENTS", 1_500_000);

    if bytes > 0 {
        one_huge_session(bytes).await;
    }

    // The log first, with the collector (and chat-history, whose own
    // catch-up is not measured here) left out; then a daemon whose
    // collector reads it all from the beginning.
    let dir = tempfile::tempdir().unwrap();
    let without = config_file(
        &dir,
        "[groups.session-collector]\ndisabled = true\n[groups.chat-history]\ndisabled = true\n",
    );
    let mut daemon = Daemon::start(&["--config", &without]);
    let client = daemon.client();
    let batch: Vec<_> = (0..1000)
        .map(|n| json!({"type": "user_input", "session_id": "long", "content": format!("event {n}"), "source": "test"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    for _ in 0..small.div_ceil(1000) {
        let (status, answer) = client.post_raw("/api/events", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let end = client.high_water_mark().await;
    assert!(daemon.sigterm().success());
    let with = config_file(&dir, "[groups.chat-history]\ndisabled = true\n");
    let daemon = restart_with(daemon, &with);
    let client = daemon.client();
    let started = Instant::now();
    let mut peak_seen = 0;
    loop {
        let (_, groups) = client.get("/api/groups").await;
        let committed = groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "session-collector")
            .and_then(|g| g["committed_offset"].as_u64());
        peak_seen = peak_seen.max(daemon.memory().peak);
        if committed == Some(end - 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "catch-up too slow"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let memory = daemon.memory();
    let (_, listed) = client.get("/api/sessions").await;
    println!(
        "catch-up of {} events of one session: {:.0} s; RSS {} MiB, peak {} MiB",
        listed["sessions"][0]["events"],
        started.elapsed().as_secs_f64(),
        memory.rss / MIB,
        memory.peak.max(peak_seen) / MIB
    );
    assert!(memory.peak < 150 * MIB, "peak {} MiB", memory.peak / MIB);
}

/// 1.5 GB into one session, in 1 MiB events.
async fn one_huge_session(bytes: u64) {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let size = MIB - 4096;
    let started = Instant::now();
    let during = post_one_session(&daemon, &client, "huge", bytes / size, size as usize).await;
    caught_up(&client, "session-collector").await;
    let after = daemon.memory();
    println!(
        "one session, {} MiB in {} events of 1 MiB: {:.0} s; RSS {} MiB at the end of posting, {} MiB after; peak {} MiB",
        bytes / MIB,
        bytes / size,
        started.elapsed().as_secs_f64(),
        during.rss / MIB,
        after.rss / MIB,
        after.peak / MIB
    );
    assert!(after.peak < 150 * MIB, "peak {} MiB", after.peak / MIB);
}

/// The same data directory under a new command line.
fn restart_with(daemon: Daemon, config: &str) -> Daemon {
    daemon.restart_with_args(&["--config", config])
}
