//! Remote permission decisions, end to end: `vibesd hook` runs as Claude
//! Code runs it (a child process fed a real `PermissionRequest` payload),
//! and a decision comes through the API, the CLI or (in `ui.rs`) the web
//! UI.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::notifications::daemon_with;
use crate::support::{Client, DEADLINE, Daemon};

/// A config with remote approval on, waiting `wait_secs`.
pub(crate) fn approval_config(wait_secs: u64, tools: &[&str]) -> String {
    let tools: Vec<String> = tools.iter().map(|tool| format!("{tool:?}")).collect();
    format!(
        "[remote_approval]\nenabled = true\nwait_secs = {wait_secs}\ntools = [{}]\n",
        tools.join(", ")
    )
}

/// A `PermissionRequest` hook payload as Claude Code sends it.
pub(crate) fn bash_request(session: &str, command: &str) -> Value {
    json!({
        "session_id": session,
        "transcript_path": "/tmp/transcript.jsonl",
        "cwd": "/home/dev/project",
        "permission_mode": "default",
        "hook_event_name": "PermissionRequest",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "Run it"},
    })
}

/// An `Edit` permission request: one line of `src/main.rs` changed.
pub(crate) fn edit_request(session: &str) -> Value {
    json!({
        "session_id": session,
        "cwd": "/home/dev/project",
        "hook_event_name": "PermissionRequest",
        "tool_name": "Edit",
        "tool_input": {"file_path": "/home/dev/project/src/main.rs", "old_string": "a", "new_string": "b"},
    })
}

/// `vibesd hook`, running.
pub(crate) struct Hook {
    child: tokio::process::Child,
    started: Instant,
}

/// How a `vibesd hook` ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

impl Ended {
    /// The JSON it printed for Claude Code.
    pub(crate) fn output(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|err| panic!("hook output {:?} is not JSON: {err}", self.stdout))
    }
}

impl Hook {
    /// Starts `vibesd hook` against the vibesd at `url` (`http://host:port`)
    /// and writes `payload` to its stdin, as Claude Code does.
    pub(crate) async fn start(url: &str, data_dir: &std::path::Path, payload: &Value) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
            .args(["--bind", url.trim_start_matches("http://"), "--data-dir"])
            .arg(data_dir)
            .arg("hook")
            .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
            .env_remove("VIBESD_CONFIG")
            .env_remove("VIBESD_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(payload.to_string().as_bytes())
            .await
            .unwrap();
        drop(stdin);
        Self { child, started }
    }

    /// Waits for it to exit (within the test deadline).
    pub(crate) async fn ended(mut self) -> Ended {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut out = self.child.stdout.take().unwrap();
        let mut err = self.child.stderr.take().unwrap();
        let status = tokio::time::timeout(DEADLINE, async {
            let (_, _, status) = tokio::join!(
                out.read_to_string(&mut stdout),
                err.read_to_string(&mut stderr),
                self.child.wait()
            );
            status.unwrap()
        })
        .await
        .expect("vibesd hook did not exit");
        Ended {
            success: status.success(),
            stdout,
            stderr,
            took: self.started.elapsed(),
        }
    }
}

/// `vibesd` with `args`, against `daemon`: its exit, stdout and stderr.
async fn vibesd(daemon: &Daemon, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args([
            "--bind",
            daemon.url.trim_start_matches("http://"),
            "--data-dir",
        ])
        .arg(&daemon.data_dir)
        .args(args)
        .env("XDG_CONFIG_HOME", daemon.data_dir.join("no-config"))
        .env_remove("VIBESD_CONFIG")
        .env_remove("VIBESD_TOKEN")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until `probe` finds something; what it found.
async fn found<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the request of `session` is pending; its offset.
pub(crate) async fn pending(client: &Client, session: &str) -> u64 {
    found("the request to be pending", || async {
        let (_, body) = client.get("/api/permissions").await;
        body["requests"].as_array().and_then(|requests| {
            requests
                .iter()
                .find(|r| r["session_id"] == session && r["state"] == "pending")
                .and_then(|r| r["offset"].as_u64())
        })
    })
    .await
}

/// Every event of the log, decoded.
async fn events(client: &Client) -> Vec<Value> {
    let (status, page) = client.get("/api/events?from=0&limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| frame["event"].clone())
        .collect()
}

/// The events of `kind` about the request at `offset`.
async fn about(client: &Client, kind: &str, offset: u64) -> Vec<Value> {
    events(client)
        .await
        .into_iter()
        .filter(|event| event["type"] == kind && event["request_offset"] == offset)
        .collect()
}

/// Waits for the outcome the hook records for the request at `offset`.
async fn outcome(client: &Client, offset: u64) -> String {
    found("the hook's outcome in the log", || async {
        about(client, "permission_outcome", offset)
            .await
            .first()
            .map(|event| event["outcome"].as_str().unwrap().to_owned())
    })
    .await
}

async fn decide(client: &Client, offset: u64, body: &Value) -> (u16, Value) {
    client
        .post(&format!("/api/permissions/{offset}/decision"), body)
        .await
}

fn allow_output() -> Value {
    json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_from_the_api_reaches_the_hook_and_is_audited() {
    let (daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(
        &daemon.url,
        &daemon.data_dir,
        &bash_request("s1", "cargo test"),
    )
    .await;
    let offset = pending(&client, "s1").await;
    let (status, request) = client.get(&format!("/api/permissions/{offset}")).await;
    assert_eq!(status, 200, "{request}");
    assert_eq!(request["tool"], "Bash");
    assert_eq!(request["tool_input"]["command"], "cargo test");

    let (status, decided) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["state"], "decided");

    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.output(), allow_output(), "{ended:?}");

    // Audited: the response names the request, the route and the client.
    let responses = about(&client, "permission_response", offset).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    let response = &responses[0];
    assert_eq!(response["approved"], true);
    assert_eq!(response["session_id"], "s1");
    assert_eq!(
        response["decided_by"]["route"],
        "POST /api/permissions/{offset}/decision"
    );
    let peer = response["decided_by"]["client"].as_str().unwrap();
    assert!(peer.starts_with("127.0.0.1:"), "{response}");
    assert_eq!(outcome(&client, offset).await, "decided");
    let (_, request) = client.get(&format!("/api/permissions/{offset}")).await;
    assert_eq!(request["state"], "closed", "{request}");
    assert_eq!(request["outcome"], "decided", "{request}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_from_the_cli_carries_its_message_to_claude() {
    let (daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(&daemon.url, &daemon.data_dir, &edit_request("s2")).await;
    let offset = pending(&client, "s2").await;

    let (ok, stdout, stderr) = vibesd(
        &daemon,
        &[
            "deny",
            &offset.to_string(),
            "--message",
            "not on main; open a branch first",
        ],
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("denied the Edit request"), "{stdout}");

    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(
        ended.output(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": "not on main; open a branch first"}}})
    );
    let responses = about(&client, "permission_response", offset).await;
    assert_eq!(responses[0]["approved"], false);
    assert_eq!(responses[0]["message"], "not on main; open a branch first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_decision_the_hook_prints_nothing_once_its_wait_is_up() {
    const WAIT: Duration = Duration::from_secs(2);
    let (daemon, _config) = daemon_with(&approval_config(WAIT.as_secs(), &[]));
    let client = daemon.client();
    let hook = Hook::start(&daemon.url, &daemon.data_dir, &bash_request("s3", "ls")).await;
    let offset = pending(&client, "s3").await;

    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.stdout, "", "{ended:?}");
    assert!(ended.took >= WAIT, "it gave up early: {ended:?}");
    assert!(
        ended.took < WAIT + Duration::from_secs(5),
        "it waited past its wait: {ended:?}"
    );
    assert_eq!(outcome(&client, offset).await, "timed_out");

    // The terminal has the dialog now: a late decision is refused.
    let (status, body) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_pending", "{body}");
    assert!(
        about(&client, "permission_response", offset)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_vibesd_down_the_hook_prints_nothing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = Hook::start(
        &format!("http://127.0.0.1:{port}"),
        dir.path(),
        &bash_request("s4", "ls"),
    )
    .await;
    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.stdout, "", "{ended:?}");
    assert!(ended.stderr.contains("not recorded"), "{ended:?}");
    assert!(ended.took < Duration::from_secs(5), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_taken_before_the_hook_subscribes_is_not_missed() {
    // A long wait: a hook that missed the decision on the firehose would
    // only get it from the refusal of its timed_out outcome, at the end.
    const WAIT: Duration = Duration::from_secs(60);
    let (daemon, _config) = daemon_with(&approval_config(WAIT.as_secs(), &[]));
    let client = daemon.client();
    // The hook reaches vibesd through a proxy that holds its firehose
    // connection until the decision is in the log.
    let proxy = HoldingProxy::start(&daemon.url).await;
    let hook = Hook::start(&proxy.url, &daemon.data_dir, &bash_request("s5", "make")).await;
    let offset = pending(&client, "s5").await;
    proxy.held().await;

    let (ok, stdout, stderr) = vibesd(&daemon, &["approve", &offset.to_string()]).await;
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(about(&client, "permission_response", offset).await.len(), 1);
    proxy.release();

    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.output(), allow_output(), "{ended:?}");
    assert!(
        ended.took < WAIT / 2,
        "the hook got the decision only when its wait ran out: {ended:?}"
    );
    assert_eq!(outcome(&client, offset).await, "decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_decision_is_refused_with_the_first() {
    let (daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(
        &daemon.url,
        &daemon.data_dir,
        &bash_request("s6", "rm -rf target"),
    )
    .await;
    let offset = pending(&client, "s6").await;

    let (status, _) = decide(&client, offset, &json!({"behavior": "deny"})).await;
    assert_eq!(status, 200);
    let (status, body) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "already_decided", "{body}");
    assert_eq!(body["decision"]["behavior"], "deny", "{body}");
    let (ok, _, stderr) = vibesd(&daemon, &["approve", &offset.to_string()]).await;
    assert!(!ok);
    assert!(stderr.contains("409"), "{stderr}");

    let ended = hook.ended().await;
    assert_eq!(
        ended.output()["hookSpecificOutput"]["decision"]["behavior"],
        "deny",
        "{ended:?}"
    );
    // Once the hook has taken it, a late decision still hears of the first.
    assert_eq!(outcome(&client, offset).await, "decided");
    let (status, body) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "already_decided", "{body}");
    assert_eq!(body["decision"]["behavior"], "deny", "{body}");
    let responses = about(&client, "permission_response", offset).await;
    assert_eq!(
        responses.len(),
        1,
        "only the first is in the log: {responses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_outside_the_allow_list_never_waits() {
    let (daemon, _config) = daemon_with(&approval_config(30, &["Bash"]));
    let client = daemon.client();
    let ended = Hook::start(&daemon.url, &daemon.data_dir, &edit_request("s7"))
        .await
        .ended()
        .await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.stdout, "", "{ended:?}");
    assert!(ended.took < Duration::from_secs(10), "{ended:?}");
    // Recorded all the same, and nothing waits.
    let hooks: Vec<Value> = events(&client)
        .await
        .into_iter()
        .filter(|event| event["type"] == "hook" && event["session_id"] == "s7")
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let (_, body) = client.get("/api/permissions").await;
    assert_eq!(body["requests"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_remote_approval_off_the_hook_never_waits() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let ended = Hook::start(&daemon.url, &daemon.data_dir, &bash_request("s8", "ls"))
        .await
        .ended()
        .await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.stdout, "", "{ended:?}");
    let (_, body) = client.get("/api/permissions").await;
    assert_eq!(body["enabled"], false, "{body}");
    assert_eq!(body["requests"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_from_a_foreign_origin_is_refused() {
    let (daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(&daemon.url, &daemon.data_dir, &bash_request("s9", "ls")).await;
    let offset = pending(&client, "s9").await;
    let path = format!("{}/api/permissions/{offset}/decision", daemon.url);

    let send = |origin: String| {
        client
            .http
            .post(&path)
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"behavior":"allow"}"#)
            .send()
    };
    let refused = send("https://evil.example".into()).await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "origin_refused", "{body}");
    assert!(
        about(&client, "permission_response", offset)
            .await
            .is_empty()
    );
    let (_, request) = client.get(&format!("/api/permissions/{offset}")).await;
    assert_eq!(request["state"], "pending", "{request}");

    // vibesd's own page may, and the decision records it.
    let accepted = send(daemon.url.clone()).await.unwrap();
    assert_eq!(accepted.status(), 200);
    let ended = hook.ended().await;
    assert_eq!(ended.output(), allow_output(), "{ended:?}");
    let responses = about(&client, "permission_response", offset).await;
    assert_eq!(responses[0]["decided_by"]["origin"], daemon.url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_a_decision_needs_the_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vibesd.toml");
    std::fs::write(
        &config,
        format!("token = \"s3cret-token\"\n{}", approval_config(30, &[])),
    )
    .unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--bind",
        &format!("0.0.0.0:{port}"),
    ]);
    let url = format!("http://127.0.0.1:{port}");
    let anonymous = Client {
        url: url.clone(),
        ..daemon.client()
    };
    let client = Client {
        url: url.clone(),
        ..daemon.client()
    }
    .with_token("s3cret-token");
    // The hook reads the token from the config, as Claude Code runs it.
    let mut hook = tokio::process::Command::new(env!("CARGO_BIN_EXE_vibesd"));
    hook.args(["--bind", &format!("0.0.0.0:{port}"), "--config"])
        .arg(&config)
        .arg("hook")
        .env_remove("VIBESD_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = hook.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(bash_request("s10", "ls").to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let offset = pending(&client, "s10").await;

    let (status, body) = decide(&anonymous, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{body}");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stdout, allow_output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_the_wait_ends_it_with_no_output() {
    let (mut daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(&daemon.url, &daemon.data_dir, &bash_request("s11", "ls")).await;
    let offset = pending(&client, "s11").await;
    assert!(daemon.sigterm().success());

    let ended = hook.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(ended.stdout, "", "never a decision nobody took: {ended:?}");
    assert!(ended.took < Duration::from_secs(20), "{ended:?}");

    // After the restart the request takes no decision.
    daemon.restart();
    let client = daemon.client();
    let (status, body) = decide(&client, offset, &json!({"behavior": "allow"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_pending", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_decisions_get_their_own_error_and_write_nothing() {
    let (daemon, _config) = daemon_with(&approval_config(30, &[]));
    let client = daemon.client();
    let hook = Hook::start(&daemon.url, &daemon.data_dir, &bash_request("s12", "ls")).await;
    let offset = pending(&client, "s12").await;
    let other =
        crate::notifications::append(&client, &crate::support::user_input("s12", "hi")).await;
    let before = client.high_water_mark().await;

    let long = "x".repeat(2001);
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            format!("{offset}"),
            json!({"behavior": "maybe"}),
            400,
            "invalid_decision",
        ),
        (
            format!("{offset}"),
            json!({"approved": true}),
            400,
            "invalid_decision",
        ),
        (
            format!("{offset}"),
            json!({"behavior": "allow", "message": "fine"}),
            400,
            "invalid_decision",
        ),
        (
            format!("{offset}"),
            json!({"behavior": "deny", "message": long}),
            400,
            "message_too_long",
        ),
        (
            "nine".into(),
            json!({"behavior": "allow"}),
            400,
            "invalid_offset",
        ),
        (
            format!("{other}"),
            json!({"behavior": "allow"}),
            404,
            "no_such_request",
        ),
        (
            "999999".into(),
            json!({"behavior": "allow"}),
            404,
            "no_such_request",
        ),
    ];
    for (at, body, status, error) in cases {
        let (got, answer) = client
            .post(&format!("/api/permissions/{at}/decision"), &body)
            .await;
        assert_eq!(got, status, "{at} {body}: {answer}");
        assert_eq!(answer["error"], error, "{at} {body}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (status, answer) = client
        .post(
            &format!("/api/permissions/{offset}/outcome"),
            &json!({"outcome": "decided"}),
        )
        .await;
    assert_eq!(status, 409, "no decision was taken: {answer}");
    assert_eq!(
        client.high_water_mark().await,
        before,
        "nothing was written"
    );
    let (_, request) = client.get(&format!("/api/permissions/{offset}")).await;
    assert_eq!(request["state"], "pending", "{request}");
    drop(hook);
}

/// A TCP proxy to vibesd that passes every connection at once but a
/// firehose upgrade, which it holds until released.
struct HoldingProxy {
    url: String,
    held: tokio::sync::watch::Receiver<bool>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HoldingProxy {
    async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_owned();
        let (release, released) = tokio::sync::watch::channel(false);
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = target.clone();
                let mut released = released.clone();
                let hold = hold.clone();
                tokio::spawn(async move {
                    // Enough of the request line to tell a firehose upgrade.
                    let mut head = vec![0; 64];
                    let mut read = 0;
                    while read < "GET /ws/firehose".len() {
                        match inbound.read(&mut head[read..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n,
                        }
                    }
                    head.truncate(read);
                    if head.starts_with(b"GET /ws/firehose") {
                        let _ = hold.send(true);
                        let _ = released.wait_for(|released| *released).await;
                    }
                    let mut outbound = tokio::net::TcpStream::connect(&target).await.unwrap();
                    outbound.write_all(&head).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Self { url, held, release }
    }

    /// Waits until it holds a firehose connection.
    async fn held(&self) {
        let mut held = self.held.clone();
        tokio::time::timeout(DEADLINE, held.wait_for(|held| *held))
            .await
            .expect("the hook never opened the firehose")
            .unwrap();
    }

    fn release(&self) {
        let _ = self.release.send(true);
    }
}
