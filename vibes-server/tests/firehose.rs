//! The WebSocket routes of a real `vibesd`: the firehose (history, then
//! live, with no gap or duplicate at the seam; filters; slow clients) and
//! the client protocol of `/ws`; and the Origin check guarding both.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{Client, DEADLINE, Daemon, user_input, wait_for};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(daemon: &Daemon, path: &str) -> String {
    format!("{}{path}", daemon.url.replacen("http://", "ws://", 1))
}

pub(crate) async fn connect(daemon: &Daemon, path: &str) -> Ws {
    let (ws, _) = timeout(
        DEADLINE,
        tokio_tungstenite::connect_async(ws_url(daemon, path)),
    )
    .await
    .expect("connect timed out")
    .unwrap_or_else(|err| panic!("cannot connect to {path}: {err}"));
    ws
}

/// The HTTP answer to a refused upgrade: status and JSON body.
async fn refused(daemon: &Daemon, path: &str, origin: Option<&str>) -> (u16, Value) {
    let mut request = ws_url(daemon, path).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let result = timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out");
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
        Err(err) => panic!("{path}: expected an HTTP refusal, got {err}"),
        Ok(_) => panic!("{path}: the upgrade was accepted"),
    }
}

/// The next message, which must come before the deadline.
async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let message = timeout(DEADLINE, ws.next())
            .await
            .expect("no message before the deadline")
            .expect("the connection ended")
            .unwrap();
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The next text message, as JSON.
pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    match next_message(ws).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, value: &Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// Frames until (and including) the one at `last`, in order received.
pub(crate) async fn frames_through(ws: &mut Ws, last: u64) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_json(ws).await;
        let offset = frame["offset"].as_u64().unwrap();
        frames.push(frame);
        if offset >= last {
            return frames;
        }
    }
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .map(|frame| frame["offset"].as_u64().unwrap())
        .collect()
}

async fn append(client: &Client, event: &Value) -> u64 {
    let (status, body) = client.post("/api/events", event).await;
    assert_eq!(status, 200, "{body}");
    body["offsets"][0].as_u64().unwrap()
}

#[tokio::test]
async fn an_event_appended_over_http_reaches_a_firehose_client() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    append(&client, &user_input("s1", "before")).await;
    let mut ws = connect(&daemon, "/ws/firehose").await;
    let offset = append(&client, &user_input("s1", "hello")).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["offset"], offset, "{frame}");
    assert_eq!(frame["event"]["content"], "hello");
    assert!(frame["event_id"].is_string() && frame["timestamp"].is_string());
}

#[tokio::test]
async fn from_an_offset_gives_exactly_the_events_from_there_then_live_ones() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    for i in 0..10 {
        append(&client, &user_input("s1", &format!("old {i}"))).await;
    }
    // Appends race the connection: some land before the history read, some
    // between it and the subscription, some after; none may be lost or
    // doubled at the seam.
    let appender = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                append(&client, &user_input("s1", &format!("new {i}"))).await;
            }
        })
    };
    let mut ws = connect(&daemon, "/ws/firehose?from=5").await;
    let frames = frames_through(&mut ws, 109).await;
    assert_eq!(offsets(&frames), (5..=109).collect::<Vec<_>>());
    assert_eq!(frames[0]["event"]["content"], "old 5");
    appender.await.unwrap();

    // Nothing else is on its way: the next frame is the next event.
    let marker = append(&client, &user_input("s1", "marker")).await;
    assert_eq!(next_json(&mut ws).await["offset"], marker);

    let mut all = connect(&daemon, "/ws/firehose?from=beginning").await;
    let frames = frames_through(&mut all, marker).await;
    assert_eq!(offsets(&frames), (0..=marker).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_firehose_filters_by_event_type_and_session() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let created = json!({"type":"session_created","session_id":"s1","name":"one"});
    let wanted = [
        append(&client, &created).await,
        append(&client, &user_input("s1", "a")).await,
    ];
    append(&client, &user_input("s2", "other session")).await;
    append(
        &client,
        &json!({"type":"session_state_changed","session_id":"s1","state":"idle"}),
    )
    .await;
    let path = "/ws/firehose?from=beginning&types=user_input,session_created&session=s1";
    let mut ws = connect(&daemon, path).await;
    let frames = frames_through(&mut ws, wanted[1]).await;
    assert_eq!(offsets(&frames), wanted);

    append(&client, &user_input("s2", "still another session")).await;
    let live = append(&client, &user_input("s1", "b")).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["offset"], live, "{frame}");
    assert_eq!(frame["event"]["content"], "b");
}

#[tokio::test]
async fn bad_firehose_queries_are_refused_before_the_upgrade() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    append(&client, &user_input("s1", "a")).await;
    let cases = [
        ("/ws/firehose?from=xyz", "invalid_query"),
        ("/ws/firehose?from=2", "offset_out_of_range"),
        ("/ws/firehose?types=user_inptu", "unknown_event_type"),
        ("/ws/firehose?types=", "invalid_query"),
        ("/ws/firehose?sesion=s1", "invalid_query"),
    ];
    for (path, code) in cases {
        let (status, body) = refused(&daemon, path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{path}"
        );
        assert!(body["detail"].is_string(), "{path}: {body}");
    }
    // The end itself is a fine place to start.
    connect(&daemon, "/ws/firehose?from=1").await;
    // Plain HTTP is told what this route is.
    let (status, body) = client.get("/ws/firehose").await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"], "not_a_websocket");
}

#[tokio::test]
async fn the_client_protocol_appends_its_events_and_answers_bad_messages() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let mut ws = connect(&daemon, "/ws").await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    let client_id = hello["client_id"].as_str().unwrap().to_owned();

    let requests = [
        json!({"type":"create_session","session_id":"s1","name":"web","id":1}),
        json!({"type":"input","session_id":"s1","content":"hi","id":2}),
        json!({"type":"permission_response","session_id":"s1","request_id":"r1","approved":true,"id":3}),
        json!({"type":"remove_session","session_id":"s1","id":4}),
    ];
    for request in &requests {
        send(&mut ws, request).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["ok"], true, "{request} -> {reply}");
        assert_eq!(reply["id"], request["id"]);
        assert_eq!(reply["offsets"].as_array().unwrap().len(), 1);
    }
    send(&mut ws, &json!({"type":"create_session"})).await;
    let reply = next_json(&mut ws).await;
    assert!(
        reply["session_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{reply}"
    );

    let before = client.high_water_mark().await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"], "malformed_json");
    let bad = [
        (json!({"type":"teleport","id":"x"}), "unknown_message_type"),
        (json!({"type":"input","session_id":"s1"}), "invalid_message"),
        (json!({"session_id":"s1"}), "invalid_message"),
        (
            json!({"type":"input","session_id":"","content":"c"}),
            "invalid_message",
        ),
    ];
    for (request, code) in bad {
        send(&mut ws, &request).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["error"], code, "{request} -> {reply}");
        assert!(reply["detail"].is_string());
    }
    assert_eq!(client.high_water_mark().await, before, "bad messages wrote");

    ws.close(None).await.unwrap();
    wait_for("client_disconnected", || async {
        client.high_water_mark().await > before
    })
    .await;
    let (_, page) = client.get("/api/events?from=0").await;
    let events: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| &frame["event"])
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "client_connected",
            "session_created",
            "user_input",
            "permission_response",
            "session_removed",
            "session_created",
            "client_disconnected"
        ]
    );
    assert_eq!(events[0]["client_id"], client_id.as_str());
    assert_eq!(events[2]["source"], "web");
    assert_eq!(events[3]["approved"], true);
    assert_eq!(events[4]["reason"], "user");
    assert_eq!(events[6]["client_id"], client_id.as_str());
}

#[tokio::test]
async fn a_websocket_from_another_origin_is_refused() {
    let daemon = Daemon::start(&[]);
    for path in ["/ws", "/ws/firehose"] {
        let (status, body) = refused(&daemon, path, Some("http://evil.example")).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"], "origin_refused");
        let mut request = ws_url(&daemon, path).into_client_request().unwrap();
        let own = HeaderValue::from_str(&daemon.url).unwrap();
        request.headers_mut().insert("origin", own);
        timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|err| panic!("{path}: own origin refused: {err}"));
    }
}

#[tokio::test]
async fn a_client_too_slow_for_the_firehose_is_told_where_to_resume() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[limits]\nfirehose_buffer = 2\n").unwrap();
    let daemon = Daemon::start(&["--config", config.path().to_str().unwrap()]);
    let client = daemon.client();
    let mut ws = connect(&daemon, "/ws/firehose").await;
    // The client reads nothing while far more than the socket buffers and
    // the broadcast buffer hold goes by.
    let big = "x".repeat(512 * 1024);
    let mut last = 0;
    for _ in 0..48 {
        last = append(&client, &user_input("s1", &big)).await;
    }
    let mut got = Vec::new();
    let reason = loop {
        match next_message(&mut ws).await {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                got.push(frame["offset"].as_u64().unwrap());
            }
            Message::Close(Some(close)) => {
                assert_eq!(close.code, CloseCode::Again, "{close:?}");
                break close.reason.to_string();
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(got.len() < 48, "it was never closed");
    let resume = got.last().map_or(0, |offset| offset + 1);
    assert!(
        reason.ends_with(&format!("reconnect with from={resume}")),
        "{reason} after {got:?}"
    );
    let mut again = connect(&daemon, &format!("/ws/firehose?from={resume}")).await;
    let frames = frames_through(&mut again, last).await;
    assert_eq!(offsets(&frames), (resume..=last).collect::<Vec<_>>());
}

#[tokio::test]
async fn sigterm_says_goodbye_to_websocket_clients_and_records_the_disconnect() {
    let mut daemon = Daemon::start(&[]);
    let mut firehose = connect(&daemon, "/ws/firehose").await;
    let mut ws = connect(&daemon, "/ws").await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connected");
    let client_id = hello["client_id"].as_str().unwrap().to_owned();
    let mut daemon = tokio::task::spawn_blocking(move || {
        let status = daemon.sigterm();
        assert!(status.success(), "{status}");
        daemon
    })
    .await
    .unwrap();
    // Both connections are closed as "going away", rather than dropped.
    for socket in [&mut firehose, &mut ws] {
        let close = timeout(DEADLINE, async {
            loop {
                match socket.next().await {
                    Some(Ok(Message::Close(frame))) => return frame,
                    Some(Ok(_)) => {}
                    _ => return None,
                }
            }
        })
        .await
        .expect("a connection outlived vibesd");
        let frame = close.expect("a close frame, not a dropped connection");
        assert_eq!(frame.code, CloseCode::Away);
        assert!(frame.reason.contains("shutting down"), "{}", frame.reason);
    }
    // The /ws client's disconnect made it into the log before the end.
    daemon.restart();
    let (_, page) = daemon.client().get("/api/events?from=0").await;
    let disconnected = page["events"].as_array().unwrap().iter().any(|frame| {
        frame["event"]["type"] == "client_disconnected"
            && frame["event"]["client_id"] == client_id.as_str()
    });
    assert!(disconnected, "{page}");
}
