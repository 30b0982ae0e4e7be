//! The chat-history and session-collector groups of a real `vibesd`:
//! messages, search, transcripts, and what survives `kill -9`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{Client, Daemon, user_input, wait_for};

/// Waits until `group` has committed everything appended so far.
pub(crate) async fn caught_up(client: &Client, group: &str) {
    wait_for(&format!("{group} to catch up"), || async {
        let (status, groups) = client.get("/api/groups").await;
        assert_eq!(status, 200, "{groups}");
        groups.as_array().unwrap().iter().any(|g| {
            g["name"] == group
                && g["high_water_mark"]
                    .as_u64()
                    .is_some_and(|hwm| hwm == 0 || g["committed_offset"].as_u64() == Some(hwm - 1))
        })
    })
    .await;
}

fn claude(session: &str, event: Value) -> Value {
    json!({ "type": "claude", "session_id": session, "event": event })
}

/// Every message of a session, oldest first, through the paged API.
async fn all_messages(client: &Client, session: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut before = None::<u64>;
    loop {
        let path = match before {
            Some(id) => format!("/api/sessions/{session}/messages?limit=500&before={id}"),
            None => format!("/api/sessions/{session}/messages?limit=500"),
        };
        let (status, page) = client.get(&path).await;
        assert_eq!(status, 200, "{page}");
        messages.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_u64() {
            Some(id) => before = Some(id),
            None => break,
        }
    }
    messages.reverse();
    messages
}

async fn get_text(client: &Client, path: &str) -> (u16, String) {
    let response = client
        .http
        .get(format!("{}{path}", client.url))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn messages_are_merged_paged_and_searchable() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let batch = json!([
        {"type": "session_created", "session_id": "s1", "name": "demo"},
        user_input("s1", "please refactor the parser"),
        claude("s1", json!({"type": "turn_start"})),
        claude("s1", json!({"type": "text_delta", "text": "Sure, "})),
        claude("s1", json!({"type": "thinking_delta", "text": "hmm"})),
        claude("s1", json!({"type": "text_delta", "text": "looking at the lexer."})),
        claude("s1", json!({"type": "tool_use_start", "id": "t1", "name": "Read"})),
        claude("s1", json!({"type": "tool_input_delta", "id": "t1", "delta": "{\"path\":"})),
        claude("s1", json!({"type": "tool_input_delta", "id": "t1", "delta": "\"lexer.rs\"}"})),
        claude("s1", json!({"type": "tool_result", "id": "t1", "output": "fn lex()", "is_error": false})),
        claude("s1", json!({"type": "text_delta", "text": "Done."})),
        claude("s1", json!({"type": "turn_complete", "usage": {"input_tokens": 1, "output_tokens": 2}})),
    ]);
    let (status, body) = client.post("/api/events", &batch).await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "chat-history").await;

    let messages = all_messages(&client, "s1").await;
    let shape: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        shape,
        [
            ("user", "please refactor the parser"),
            ("assistant", "Sure, looking at the lexer."),
            ("tool_call", "{\"path\":\"lexer.rs\"}"),
            ("tool_result", "fn lex()"),
            ("assistant", "Done."),
        ]
    );
    assert_eq!(messages[2]["meta"]["tool"], "Read");

    let (status, page) = client.get("/api/sessions/s1/messages?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["text"], "Done.");
    let next = page["next_before"].as_u64().unwrap();
    let (_, older) = client
        .get(&format!("/api/sessions/s1/messages?limit=2&before={next}"))
        .await;
    assert_eq!(older["messages"][0]["role"], "tool_call");

    let (status, found) = client.get("/api/search?q=lexer").await;
    assert_eq!(status, 200, "{found}");
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{found}");
    assert!(results.iter().all(|r| r["session_id"] == "s1"));
    let (_, found) = client.get("/api/search?q=refactor%20AND%20parser").await;
    assert_eq!(found["results"][0]["text"], "please refactor the parser");
}

#[tokio::test]
async fn bad_history_requests_get_4xx() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    client.post("/api/events", &user_input("s1", "hi")).await;
    caught_up(&client, "chat-history").await;
    let cases = [
        ("/api/search?q=%22unterminated", 400, "invalid_search"),
        ("/api/search?q=nosuchcolumn:word", 400, "invalid_search"),
        ("/api/search", 400, "invalid_search"),
        ("/api/search?q=hi&limit=0", 400, "invalid_limit"),
        ("/api/search?q=hi&limit=many", 400, "invalid_query"),
        ("/api/sessions/nobody/messages", 404, "unknown_session"),
        ("/api/sessions/s1/messages?limit=0", 400, "invalid_limit"),
        (
            "/api/sessions/s1/messages?limit=100000",
            400,
            "invalid_limit",
        ),
        ("/api/sessions/s1/messages?limit=-1", 400, "invalid_query"),
        ("/api/sessions/s1/messages?before=x", 400, "invalid_query"),
        ("/api/sessions/s1/messages?sort=up", 400, "invalid_query"),
        ("/api/sessions/nobody/transcript", 404, "unknown_session"),
        (
            "/api/sessions/..%2Fetc/transcript",
            400,
            "invalid_session_id",
        ),
    ];
    for (path, expected, code) in cases {
        let (status, body) = client.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (expected, Some(code)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn chat_history_has_each_message_once_after_kill_9_under_load() {
    let mut daemon = Daemon::start(&[]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut producers = Vec::new();
    for producer in 0..6 {
        let client = daemon.client();
        let acked = acked.clone();
        producers.push(tokio::spawn(async move {
            for n in 0..200 {
                let content = format!("input-{producer}-{n}");
                let sent = client
                    .http
                    .post(format!("{}/api/events", client.url))
                    .json(&user_input("load", &content))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().unwrap().push(content);
                    }
                    // Killed under us (or busy): this one is not acknowledged.
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for("some inputs to be acknowledged", || async {
        acked.lock().unwrap().len() >= 300
    })
    .await;
    daemon.kill9();
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    daemon.restart();
    let client = daemon.client();
    caught_up(&client, "chat-history").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for message in all_messages(&client, "load").await {
        *seen
            .entry(message["text"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|a| !seen.contains_key(*a)).collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    // Everything the log holds is there, not only what was acknowledged.
    assert_eq!(seen.len() as u64, client.high_water_mark().await);
}

/// The offsets of a transcript's lines.
fn offsets(text: &str) -> Vec<u64> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_transcript_is_written_as_its_events_arrive() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let batch = json!([
        {"type": "session_created", "session_id": "done", "name": "a"},
        user_input("done", "first"),
        user_input("open", "still going"),
        claude("done", json!({"type": "text_delta", "text": "ok"})),
        {"type": "session_removed", "session_id": "done", "reason": "user"},
    ]);
    let (status, body) = client.post("/api/events", &batch).await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "session-collector").await;
    let done = std::fs::read_to_string(daemon.path("transcripts/done.jsonl")).unwrap();
    assert_eq!(offsets(&done), [0, 1, 3, 4]);
    // An open session's events are on disk too, not waiting in memory.
    let open = std::fs::read_to_string(daemon.path("transcripts/open.jsonl")).unwrap();
    assert_eq!(offsets(&open), [2]);

    let (status, listed) = client.get("/api/sessions").await;
    assert_eq!(status, 200, "{listed}");
    let sessions = listed["sessions"].as_array().unwrap();
    let by_id = |id: &str| {
        sessions
            .iter()
            .find(|s| s["session_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("done")["state"], "closed");
    assert_eq!(by_id("done")["closed_by"], "session_removed");
    assert_eq!(by_id("done")["events"], 4);
    assert_eq!(by_id("open")["state"], "open");
    assert_eq!(by_id("open")["events"], 1);
    let (status, text) = get_text(&client, "/api/sessions/open/transcript").await;
    assert_eq!(status, 200);
    assert_eq!(text, open);
    let (status, text) = get_text(&client, "/api/sessions/done/transcript").await;
    assert_eq!(status, 200);
    assert_eq!(text, done);
}

#[tokio::test]
async fn session_collector_lag_returns_to_zero_on_a_quiet_log() {
    // Its commit stopped before the oldest open session's first event, so
    // a session that never ended kept the lag above 0 for good.
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    for n in 0..3 {
        let (status, body) = client
            .post("/api/events", &user_input("never-ends", &format!("{n}")))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    caught_up(&client, "session-collector").await;
    let (_, groups) = client.get("/api/groups").await;
    let group = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "session-collector")
        .unwrap()
        .clone();
    assert_eq!(group["lag"], 0, "{group}");
    let (_, listed) = client.get("/api/sessions").await;
    assert_eq!(listed["sessions"][0]["state"], "open");
}

#[tokio::test]
async fn transcripts_have_each_event_once_after_kill_9_under_load() {
    let mut daemon = Daemon::start(&[]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut producers = Vec::new();
    for producer in 0..4 {
        let client = daemon.client();
        let acked = acked.clone();
        producers.push(tokio::spawn(async move {
            for n in 0..300 {
                let content = format!("input-{producer}-{n}");
                let sent = client
                    .http
                    .post(format!("{}/api/events", client.url))
                    .json(&user_input(&format!("load-{}", n % 3), &content))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().unwrap().push(content);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for("some inputs to be acknowledged", || async {
        acked.lock().unwrap().len() >= 300
    })
    .await;
    daemon.kill9();
    for producer in producers {
        producer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    daemon.restart();
    let client = daemon.client();
    caught_up(&client, "session-collector").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut lines = 0;
    for session in ["load-0", "load-1", "load-2"] {
        let (status, text) =
            get_text(&client, &format!("/api/sessions/{session}/transcript")).await;
        assert_eq!(status, 200, "{text}");
        // Whole lines in offset order: a torn line was cut off and its
        // event written again.
        let found = offsets(&text);
        assert!(
            found.windows(2).all(|w| w[0] < w[1]),
            "{session}: {found:?}"
        );
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            let content = value["event"]["content"].as_str().unwrap().to_owned();
            *seen.entry(content).or_default() += 1;
            lines += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|a| !seen.contains_key(*a)).collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    // Everything the log holds is there, not only what was acknowledged.
    assert_eq!(lines, client.high_water_mark().await);
}

#[tokio::test]
async fn a_huge_invalid_session_id_is_not_copied_whole_into_the_log() {
    // The warning for an id that cannot name a file printed the whole id.
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let huge = "/".repeat(512 * 1024);
    let (status, body) = client.post("/api/events", &user_input(&huge, "hi")).await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "session-collector").await;
    wait_for("the warning", || async {
        daemon.logs().contains("cannot name a file")
    })
    .await;
    let logs = daemon.logs();
    let longest = logs.lines().map(str::len).max().unwrap_or_default();
    assert!(longest < 2000, "a log line of {longest} bytes");
    assert!(logs.contains("(524288 bytes)"), "{logs}");
    let (_, listed) = client.get("/api/sessions").await;
    assert_eq!(listed["sessions"], json!([]));
}

#[tokio::test]
async fn an_idle_session_is_closed_without_more_events_and_reopens() {
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("vibesd.toml");
    std::fs::write(&path, "[groups.session-collector]\nidle_timeout_secs = 1\n").unwrap();
    let daemon = Daemon::start(&["--config", path.to_str().unwrap()]);
    let client = daemon.client();
    client
        .post("/api/events", &user_input("quiet", "anyone?"))
        .await;
    wait_for("the session to go idle", || async {
        let (_, listed) = client.get("/api/sessions").await;
        listed["sessions"][0]["state"] == "closed"
    })
    .await;
    let (_, listed) = client.get("/api/sessions").await;
    assert_eq!(listed["sessions"][0]["closed_by"], "idle");
    assert_eq!(listed["sessions"][0]["events"], 1);
    // A closed session that gets new events reopens.
    client
        .post("/api/events", &user_input("quiet", "back"))
        .await;
    caught_up(&client, "session-collector").await;
    let (_, listed) = client.get("/api/sessions").await;
    assert_eq!(listed["sessions"][0]["events"], 2);
}

/// The messages as the API shows them, without the row ids a rebuild may
/// number differently.
async fn message_texts(client: &Client, session: &str) -> Vec<(Value, Value, Value)> {
    all_messages(client, session)
        .await
        .into_iter()
        .map(|message| {
            (
                message["offset"].clone(),
                message["role"].clone(),
                message["text"].clone(),
            )
        })
        .collect()
}

/// Before: chat history was derived state that could not be rebuilt: a
/// deleted database stayed empty (the group's offset was past everything),
/// and a seek back re-applied nothing (every event was below the database's
/// applied offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_history_rebuilds_when_deleted_and_after_a_seek_back() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let batch: Vec<Value> = (0..30)
        .map(|n| user_input(if n % 2 == 0 { "a" } else { "b" }, &format!("message {n}")))
        .collect();
    let (status, body) = client.post("/api/events", &json!(batch)).await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "chat-history").await;
    let before = (
        message_texts(&client, "a").await,
        message_texts(&client, "b").await,
    );
    assert_eq!(before.0.len(), 15);

    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(daemon.path(&format!("chat-history.sqlite{suffix}")));
    }
    daemon.restart();
    let client = daemon.client();
    caught_up(&client, "chat-history").await;
    wait_for("the history to be rebuilt", || async {
        message_texts(&client, "a").await.len() == 15
    })
    .await;
    let rebuilt = (
        message_texts(&client, "a").await,
        message_texts(&client, "b").await,
    );
    assert_eq!(rebuilt, before, "a deleted history rebuilds as it was");

    let (status, body) = client
        .post("/api/groups/chat-history/seek", &json!({"to": 20}))
        .await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "chat-history").await;
    let after_seek = (
        message_texts(&client, "a").await,
        message_texts(&client, "b").await,
    );
    assert_eq!(
        after_seek, before,
        "a seek back neither loses nor doubles a message"
    );
}
