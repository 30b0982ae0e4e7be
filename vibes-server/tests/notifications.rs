//! The `notifications` group against a real webhook: a small HTTP server in
//! the test process that records what it gets and fails when told to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::support::{Client, Daemon, wait_for};

/// One request the webhook received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    title: Option<String>,
    /// ntfy's `Click`: where tapping the notification leads.
    click: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// The webhook's shared state: what it got, and how to answer.
#[derive(Default)]
struct Hook {
    /// Every request, failed ones included.
    requests: AtomicUsize,
    /// The requests it answered with success.
    received: Mutex<Vec<Received>>,
    /// Fail this many more requests (`usize::MAX`: fail them all).
    fail_next: AtomicUsize,
    /// The status a failure answers with.
    fail_status: AtomicUsize,
}

/// A webhook on 127.0.0.1:0, served until the test ends.
pub(crate) struct Webhook {
    state: Arc<Hook>,
    address: SocketAddr,
    _server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(Hook::default());
        state.fail_status.store(500, Ordering::SeqCst);
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let state = shared.clone();
            async move { state.answer(&headers, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            state,
            address,
            _server: server,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// Fails the next `n` requests with `status`.
    pub(crate) fn fail(&self, n: usize, status: u16) {
        self.state
            .fail_status
            .store(status.into(), Ordering::SeqCst);
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Hook {
    fn answer(&self, headers: &HeaderMap, body: String) -> StatusCode {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if failing {
            let status = self.fail_status.load(Ordering::SeqCst) as u16;
            return StatusCode::from_u16(status).unwrap();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        self.received.lock().unwrap().push(Received {
            title: header("title"),
            click: header("click"),
            content_type: header("content-type"),
            body,
        });
        StatusCode::OK
    }
}

/// Starts vibesd with `config` (TOML) as its config file.
pub(crate) fn daemon_with(config: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("vibesd.toml");
    std::fs::write(&path, config).unwrap();
    let daemon = Daemon::start(&["--config", path.to_str().unwrap()]);
    (daemon, dir)
}

/// The group starts at the end of the log: events appended before it runs
/// are not its business, so the tests wait for it first.
pub(crate) async fn notifications_running(client: &Client) {
    wait_for("the notifications group to run", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().is_some_and(|groups| {
            groups
                .iter()
                .any(|group| group["name"] == "notifications" && group["state"] == "running")
        })
    })
    .await;
}

pub(crate) fn permission_request(session: &str, tool: &str) -> Value {
    json!({
        "type": "claude", "session_id": session,
        "event": {"type": "permission_request", "id": "p1", "tool": tool, "description": format!("run {tool}")}
    })
}

pub(crate) async fn append(client: &Client, event: &Value) -> u64 {
    let (status, body) = client.post("/api/events", event).await;
    assert_eq!(status, 200, "{body}");
    body["offsets"][0].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_request_reaches_the_webhook_as_json() {
    let webhook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\nkinds = [\"permission_request\"]\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;

    let offset = append(&client, &permission_request("s1", "Bash")).await;
    wait_for("the webhook to get it", || async {
        !webhook.received().is_empty()
    })
    .await;

    let received = webhook.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(
        received[0].content_type.as_deref(),
        Some("application/json")
    );
    let body: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["kind"], "permission_request");
    assert_eq!(body["session_id"], "s1");
    assert_eq!(body["title"], "Permission needed: Bash");
    assert_eq!(body["message"], "run Bash");
    assert_eq!(body["offset"], offset);
    let (_, page) = client
        .get(&format!("/api/events?from={offset}&limit=1"))
        .await;
    assert_eq!(body["event_id"], page["events"][0]["event_id"], "{page}");
    assert!(body["timestamp"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_webhooks_get_the_message_as_body_and_only_their_kinds() {
    let webhook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\nkinds = [\"notification\"]\nformat = \"text\"\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;

    let hook = |name: &str, message: &str| json!({"session_id": "s2", "hook_event_name": name, "message": message});
    for payload in [
        hook("Notification", "Claude needs your permission to use Bash"),
        // A Stop (waiting_for_input) and a permission request: not asked for.
        hook("Stop", ""),
    ] {
        let (status, body) = client.post("/api/hooks/claude", &payload).await;
        assert_eq!(status, 200, "{body}");
    }
    append(&client, &permission_request("s2", "Edit")).await;
    let (status, _) = client
        .post("/api/hooks/claude", &hook("Notification", "second"))
        .await;
    assert_eq!(status, 200);

    // Events are handled in order: once "second" is in, the others were seen.
    wait_for("both notifications", || async {
        webhook.received().len() >= 2
    })
    .await;
    let received = webhook.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].body, "Claude needs your permission to use Bash");
    assert_eq!(received[0].title.as_deref(), Some("Claude Code"));
    assert!(
        received[0]
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/plain")),
        "{received:?}"
    );
    assert_eq!(received[1].body, "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_a_few_times_gets_the_notification_once() {
    let webhook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!("[[webhooks]]\nurl = \"{}\"\n", webhook.url()));
    let client = daemon.client();
    notifications_running(&client).await;

    webhook.fail(2, 503);
    append(&client, &permission_request("s3", "Bash")).await;
    wait_for("the retried delivery", || async {
        !webhook.received().is_empty()
    })
    .await;
    assert_eq!(webhook.requests(), 3);
    assert_eq!(webhook.received().len(), 1);
    let (_, dead) = client.get("/api/dead-letters").await;
    assert_eq!(dead, json!([]));
}

/// Waits for the dead letter of the notifications group at `offset`.
async fn dead_letter_at(client: &Client, offset: u64) -> Value {
    let found = Arc::new(Mutex::new(Value::Null));
    wait_for("the dead letter", || {
        let found = found.clone();
        async move {
            let (_, dead) = client.get("/api/dead-letters").await;
            let letter = dead.as_array().and_then(|letters| {
                letters
                    .iter()
                    .find(|letter| letter["group"] == "notifications" && letter["offset"] == offset)
                    .cloned()
            });
            letter
                .map(|letter| *found.lock().unwrap() = letter)
                .is_some()
        }
    })
    .await;
    found.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_for_good_ends_in_a_dead_letter_and_the_group_moves_on() {
    let webhook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\n\n[groups.notifications]\nmax_attempts = 2\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;

    webhook.fail(usize::MAX, 500);
    let poison = append(&client, &permission_request("s4", "Bash")).await;
    let letter = dead_letter_at(&client, poison).await;
    assert_eq!(letter["attempts"], 2, "{letter}");
    assert!(
        letter["error"].as_str().is_some_and(|e| e.contains("500")),
        "{letter}"
    );
    // Each of the group's attempts retried the POST itself.
    assert!(webhook.requests() > 2, "{}", webhook.requests());

    webhook.fail(0, 500);
    let next = append(&client, &permission_request("s4", "Edit")).await;
    wait_for("the next notification", || async {
        !webhook.received().is_empty()
    })
    .await;
    let body: Value = serde_json::from_str(&webhook.received()[0].body).unwrap();
    assert_eq!(body["offset"], next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_answer_is_not_retried_within_an_attempt() {
    let webhook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\n\n[groups.notifications]\nmax_attempts = 2\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;

    webhook.fail(usize::MAX, 404);
    let offset = append(&client, &permission_request("s5", "Bash")).await;
    let letter = dead_letter_at(&client, offset).await;
    assert!(
        letter["error"].as_str().is_some_and(|e| e.contains("404")),
        "{letter}"
    );
    // One request per attempt of the group, none more.
    assert_eq!(webhook.requests(), 2);
}

#[test]
fn an_unknown_webhook_kind_stops_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vibesd.toml");
    std::fs::write(
        &path,
        "[[webhooks]]\nurl = \"http://127.0.0.1:9/\"\nkinds = [\"lunch\"]\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(["serve", "--backend", "memory", "--bind", "127.0.0.1:0"])
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must stop by itself; if it runs, fail rather than wait forever.
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vibesd started with an unknown webhook kind");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("lunch"), "{stderr}");
}

// The notifications group ran only with a webhook, so a browser had
// nothing to show; it now always runs and feeds the web UI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_notifications_reach_the_api_and_the_websocket() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    notifications_running(&client).await;
    let first = append(&client, &permission_request("s1", "Bash")).await;
    wait_for("the first notification", || async {
        let (_, body) = client.get("/api/notifications").await;
        body["notifications"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    })
    .await;
    let (_, body) = client.get("/api/notifications").await;
    let kept = &body["notifications"][0];
    assert_eq!(
        (
            kept["kind"].as_str(),
            kept["offset"].as_u64(),
            kept["session_id"].as_str()
        ),
        (Some("permission_request"), Some(first), Some("s1")),
        "{body}"
    );

    let url = format!(
        "{}/ws/notifications",
        daemon.url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let replayed = next_json(&mut ws).await;
    assert_eq!(
        (replayed["offset"].as_u64(), &replayed["replayed"]),
        (Some(first), &json!(true))
    );
    let waiting = append(
        &client,
        &json!({"type": "session_state_changed", "session_id": "s1", "state": "waiting_for_input"}),
    )
    .await;
    let live = next_json(&mut ws).await;
    assert_eq!(live["kind"], "waiting_for_input", "{live}");
    assert_eq!(live["offset"].as_u64(), Some(waiting));
    assert!(
        live.get("replayed").is_none(),
        "a new one is not a replay: {live}"
    );
    // Events that notify nobody make no notification.
    append(&client, &crate::support::user_input("s1", "hello")).await;
    let (_, body) = client.get("/api/notifications").await;
    assert_eq!(body["notifications"].as_array().unwrap().len(), 2, "{body}");
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    use futures::StreamExt;
    let message = tokio::time::timeout(crate::support::DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_request_hook_links_webhooks_to_its_page() {
    let json_hook = Webhook::start().await;
    let text_hook = Webhook::start().await;
    let (daemon, _config) = daemon_with(&format!(
        "public_url = \"https://vibes.example\"\n\
         [[webhooks]]\nurl = \"{}\"\n\
         [[webhooks]]\nurl = \"{}\"\nformat = \"text\"\n\
         [remote_approval]\nenabled = true\ntools = [\"Bash\"]\n",
        json_hook.url(),
        text_hook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;

    let (status, answer) = client
        .post(
            "/api/hooks/claude",
            &crate::permissions::bash_request("s1", "cargo publish"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let offset = answer["permission"]["offset"].as_u64().unwrap();
    wait_for("both webhooks to get it", || async {
        !json_hook.received().is_empty() && !text_hook.received().is_empty()
    })
    .await;

    let link = format!("https://vibes.example/permissions/{offset}");
    let json: Value = serde_json::from_str(&json_hook.received()[0].body).unwrap();
    assert_eq!(json["kind"], "permission_request", "{json}");
    assert_eq!(json["title"], "Permission needed: Bash", "{json}");
    assert_eq!(json["message"], "cargo publish", "{json}");
    assert_eq!(json["link"], link.as_str(), "{json}");
    let text = &text_hook.received()[0];
    assert_eq!(text.click.as_deref(), Some(link.as_str()), "{text:?}");
    assert_eq!(text.body, "cargo publish");
    // The web UI's feed links to the page on vibesd itself.
    let (_, feed) = client.get("/api/notifications").await;
    assert_eq!(
        feed["notifications"][0]["link"],
        format!("/permissions/{offset}").as_str(),
        "{feed}"
    );

    // A request that does not wait (a tool outside the list) links nowhere.
    let mut edit = crate::permissions::bash_request("s2", "");
    edit["tool_name"] = "Edit".into();
    edit["tool_input"] = json!({"file_path": "/src/main.rs"});
    let (status, answer) = client.post("/api/hooks/claude", &edit).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("permission").is_none(), "{answer}");
    wait_for("the second notification", || async {
        json_hook.received().len() == 2
    })
    .await;
    let json: Value = serde_json::from_str(&json_hook.received()[1].body).unwrap();
    assert_eq!(json["message"], "/src/main.rs", "{json}");
    assert!(json.get("link").is_none(), "{json}");
}
