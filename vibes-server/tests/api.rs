//! The HTTP API of a real `vibesd`: appends, reads, control, and every bad
//! input answered with its 4xx and nothing written.

use serde_json::{Value, json};

use crate::support::{Daemon, user_input};

#[tokio::test]
async fn an_appended_event_is_durable_and_readable() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let (status, body) = client.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = client.get("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["backend"], "embedded");
    assert_eq!(body["high_water_mark"], 0);
    assert!(body["iggy"].is_null());

    let (status, body) = client.post("/api/events", &user_input("s1", "hello")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"], json!([0]));
    let batch = json!([user_input("s1", "a"), user_input("s1", "b")]);
    let (status, body) = client.post("/api/events", &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"], json!([1, 2]));

    let (status, page) = client.get("/api/events?from=1&limit=10").await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["offset"], 1);
    assert_eq!(events[0]["event"]["content"], "a");
    assert!(events[0]["event_id"].is_string() && events[0]["timestamp"].is_string());
    assert_eq!(page["next"], Value::Null);
    let (_, page) = client.get("/api/events?from=0&limit=1").await;
    assert_eq!(page["next"], 1);
}

#[tokio::test]
async fn a_claude_code_hook_is_stored_with_the_events_it_implies() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let payload = json!({
        "session_id": "abc", "hook_event_name": "UserPromptSubmit",
        "prompt": "fix the tests", "cwd": "/src", "transcript_path": "/t.jsonl",
        "some_future_field": {"kept": true}
    });
    let (status, body) = client.post("/api/hooks/claude", &payload).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"], json!([0, 1]));
    let (_, page) = client.get("/api/events?from=0").await;
    let hook = &page["events"][0]["event"];
    assert_eq!(hook["type"], "hook");
    assert_eq!(hook["session_id"], "abc");
    assert_eq!(hook["event"]["some_future_field"], json!({"kept": true}));
    let input = &page["events"][1]["event"];
    assert_eq!(input["type"], "user_input");
    assert_eq!(input["content"], "fix the tests");
    assert_eq!(input["source"], "hook");
}

#[tokio::test]
async fn bad_input_gets_its_own_error_and_writes_nothing() {
    let daemon = Daemon::start(&["--token", "ignored-on-loopback-unless-set"]);
    let client = daemon.client().with_token("ignored-on-loopback-unless-set");
    // The 413 is answered before the 5 MiB body is read, and the server then
    // closes that connection; a pooled client could send the next case on it
    // and fail with IncompleteMessage (seen when tests run in parallel).
    let client = crate::support::Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        ..client
    };
    client.post("/api/events", &user_input("s", "x")).await;
    let before = client.high_water_mark().await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/api/events", b"{not json".to_vec(), 400, "malformed_json"),
        ("/api/events", b"[]".to_vec(), 400, "empty_batch"),
        ("/api/events", b"42".to_vec(), 400, "invalid_event"),
        ("/api/events", br#"{"session_id":"s"}"#.to_vec(), 400, "invalid_event"),
        ("/api/events", br#"{"type":"teleport","session_id":"s"}"#.to_vec(), 400, "unknown_event_type"),
        ("/api/events", br#"{"type":"dead_letter","group":"g","offset":0,"error":"e","attempts":1}"#.to_vec(), 400, "unknown_event_type"),
        ("/api/events", br#"{"type":"permission_outcome","session_id":"s","request_offset":0,"outcome":"decided"}"#.to_vec(), 400, "unknown_event_type"),
        ("/api/events", br#"{"type":"permission_response","session_id":"s","request_id":"0","approved":true,"request_offset":0}"#.to_vec(), 400, "reserved_field"),
        ("/api/events", br#"{"type":"permission_response","session_id":"s","request_id":"0","approved":true,"decided_by":{"route":"forged"}}"#.to_vec(), 400, "reserved_field"),
        ("/api/events", br#"{"type":"user_input","session_id":"s","source":"x"}"#.to_vec(), 400, "invalid_event"),
        ("/api/events", br#"{"type":"user_input","session_id":5,"content":"c","source":"x"}"#.to_vec(), 400, "invalid_event"),
        ("/api/events", br#"[{"type":"user_input","session_id":"s","content":"ok","source":"x"},{"type":"nope"}]"#.to_vec(), 400, "unknown_event_type"),
        ("/api/events", br#"{"type":"claude","session_id":"s","event":{"type":"warp"}}"#.to_vec(), 400, "unknown_event_type"),
        ("/api/events", vec![b' '; 5 * 1024 * 1024], 413, "body_too_large"),
        ("/api/hooks/claude", br#"{"hook_event_name":"Stop"}"#.to_vec(), 400, "invalid_hook"),
        ("/api/hooks/claude", br#"{"session_id":"s"}"#.to_vec(), 400, "invalid_hook"),
        ("/api/hooks/claude", b"[1]".to_vec(), 400, "invalid_hook"),
        ("/api/groups/nope/pause", b"".to_vec(), 404, "unknown_group"),
        ("/api/groups/nope/seek", br#"{"to":"beginning"}"#.to_vec(), 404, "unknown_group"),
        ("/api/dead-letters/nope/1/skip", b"".to_vec(), 404, "unknown_group"),
        ("/api/dead-letters/nope/x/skip", b"".to_vec(), 400, "invalid_offset"),
    ];
    for (path, body, status, error) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        // A fresh connection per case: vibesd answers an oversize body
        // without reading it and closes that connection, and a pooled
        // client may race the close by sending the next case on it.
        let client = daemon.client().with_token("ignored-on-loopback-unless-set");
        let (got, answer) = client.post_raw(path, body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(error)),
            "{path} {shown}: {answer}"
        );
        assert!(
            answer["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
    }
    let (status, answer) = client.get("/api/events?from=99").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("offset_out_of_range"))
    );
    let (status, answer) = client.get("/api/events?from=-1").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_query"))
    );
    assert_eq!(
        client.high_water_mark().await,
        before,
        "nothing was written"
    );
}

/// `levels` arrays nested around `1`.
fn nested(levels: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..levels {
        value = json!([value]);
    }
    value
}

// An event nested 125 levels deep was acknowledged, but its stored envelope
// went past serde_json's recursion limit: every read path failed on it and
// every group dead-lettered it. What is acknowledged must now read back.
#[tokio::test]
async fn an_acknowledged_event_decodes_on_every_read_path_at_any_depth() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let limit = vibes_core::MAX_EVENT_DEPTH;
    let mut accepted = Vec::new();
    let depths: Vec<usize> = (limit - 5..=limit + 5).chain(120..=130).collect();
    for &depth in &depths {
        // Through /api/events: the event object, its hook payload, then
        // arrays, `depth` levels in all.
        let event = json!({
            "type": "hook", "session_id": "deep",
            "event": {"hook_event_name": "PreToolUse", "tool_input": nested(depth - 2)},
        });
        // Through /api/hooks/claude: the payload is stored one level down,
        // inside its `hook` event, so it nests `depth` levels as stored too.
        let payload = json!({
            "session_id": "deep", "hook_event_name": "PreToolUse", "tool_input": nested(depth - 2),
        });
        for (path, body) in [("/api/events", event), ("/api/hooks/claude", payload)] {
            let before = client.high_water_mark().await;
            let (status, answer) = client.post(path, &body).await;
            if depth <= limit {
                assert_eq!(status, 200, "{path} at depth {depth}: {answer}");
                accepted.extend(answer["offsets"].as_array().unwrap().iter().cloned());
            } else {
                assert_eq!(
                    (status, answer["error"].as_str()),
                    (400, Some("event_too_deep")),
                    "{path} at depth {depth}: {answer}"
                );
                assert_eq!(client.high_water_mark().await, before, "nothing written");
            }
        }
    }
    assert_eq!(accepted.len(), 2 * 6, "depths up to the limit are taken");
    let end_session = json!({"type": "session_removed", "session_id": "deep", "reason": "user"});
    assert_eq!(client.post("/api/events", &end_session).await.0, 200);
    let end = client.high_water_mark().await;
    // The history page, as the API and `vibesd tail` read it.
    let (status, page) = client.get(&format!("/api/events?from=0&limit={end}")).await;
    assert_eq!(status, 200, "{page}");
    for frame in page["events"].as_array().unwrap() {
        assert!(frame.get("error").is_none(), "unreadable: {frame}");
    }
    let tail = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(["tail", "--from", "beginning", "--no-follow", "--bind"])
        .arg(daemon.url.trim_start_matches("http://"))
        .env("XDG_CONFIG_HOME", daemon.path("no-config"))
        .output()
        .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&tail.stdout).lines().count() as u64,
        end
    );
    // Every group handles every one of them: none is dead-lettered.
    crate::support::wait_for("every group to reach the end", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().unwrap().iter().all(|group| {
            group["name"] == "websocket" || group["committed_offset"].as_u64() == Some(end - 1)
        })
    })
    .await;
    let (_, letters) = client.get("/api/dead-letters").await;
    assert_eq!(letters, json!([]), "no group dead-lettered a deep event");
    let (status, transcript) = client.get("/api/sessions/deep/transcript").await;
    assert_eq!(status, 200, "{transcript}");
}

// Replaying the dead letter of a record that cannot be decoded answered
// 500: it can never succeed, and now says so with a 409 and the reason.
#[tokio::test]
async fn replaying_an_undecodable_dead_letter_is_a_409_with_the_reason() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    client.post("/api/events", &user_input("s", "fine")).await;
    let bad = client.high_water_mark().await;
    daemon.sigterm();
    {
        let db = rusqlite::Connection::open(daemon.path("events.sqlite")).unwrap();
        db.execute(
            "INSERT INTO events (log_offset, payload) VALUES (?1, ?2)",
            rusqlite::params![bad as i64, &b"{\"not\":\"an event\"}"[..]],
        )
        .unwrap();
    }
    daemon.restart();
    let client = daemon.client();
    crate::support::wait_for("chat-history to dead-letter the bad record", || async {
        let (_, letters) = client.get("/api/dead-letters").await;
        letters.as_array().unwrap().iter().any(|letter| {
            letter["group"] == "chat-history" && letter["offset"].as_u64() == Some(bad)
        })
    })
    .await;
    let path = format!("/api/dead-letters/chat-history/{bad}/replay");
    let (status, answer) = client.post_raw(&path, Vec::new()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("undecodable_event")),
        "{answer}"
    );
    assert!(
        answer["detail"].as_str().unwrap().contains("skip"),
        "{answer}"
    );
    let path = format!("/api/dead-letters/chat-history/{bad}/skip");
    let (status, answer) = client.post_raw(&path, Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
}

// A text/plain POST from a page on another site appended events; the real
// daemon now refuses it and a foreign Origin, and curl-like clients work.
#[tokio::test]
async fn the_real_daemon_refuses_cross_site_requests() {
    let daemon = Daemon::start(&[]);
    let http = reqwest::Client::new();
    let url = format!("{}/api/events", daemon.url);
    let body = user_input("s", "approve").to_string();
    let simple = http
        .post(&url)
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 415);
    let foreign = http
        .post(&url)
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let answer: Value = foreign.json().await.unwrap();
    assert_eq!(answer["error"], "origin_refused");
    assert_eq!(daemon.client().high_water_mark().await, 0);
    let plain = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
}
