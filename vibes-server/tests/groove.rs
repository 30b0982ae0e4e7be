//! The assessment plugin in the real daemon: its group runs like the
//! built-in ones, its routes and `vibesd groove` show what it found, its
//! store is rebuilt identically after deletion, a seek back or kill -9, and
//! (opt-in) `vibesd hook` answers a session whose breaker is open.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::history::caught_up;
use crate::support::{Client, Daemon, wait_for};

/// A hook payload of `session`.
fn hook(session: &str, name: &str, fields: Value) -> Value {
    let mut payload = json!({ "session_id": session, "hook_event_name": name, "cwd": "/src" });
    if let (Some(payload), Value::Object(fields)) = (payload.as_object_mut(), fields) {
        payload.extend(fields);
    }
    payload
}

fn prompt(session: &str, text: &str) -> Value {
    hook(session, "UserPromptSubmit", json!({ "prompt": text }))
}

fn bash(session: &str, command: &str, stdout: &str, exit_code: i64) -> Value {
    hook(
        session,
        "PostToolUse",
        json!({
            "tool_name": "Bash",
            "tool_input": { "command": command },
            "tool_response": { "stdout": stdout, "stderr": "", "exit_code": exit_code, "interrupted": false },
        }),
    )
}

/// A session that goes badly: failing tests, corrections, frustration.
pub(crate) fn rough_session(session: &str) -> Vec<Value> {
    vec![
        hook(session, "SessionStart", json!({})),
        prompt(session, "please fix the failing tests"),
        bash(
            session,
            "cargo test",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored",
            101,
        ),
        prompt(session, "no, that's wrong, undo that"),
        bash(
            session,
            "cargo build",
            "error[E0308]: mismatched types\nerror: could not compile `app`",
            101,
        ),
        prompt(session, "ugh, this still doesn't work"),
        bash(
            session,
            "cargo test",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored",
            101,
        ),
        prompt(session, "this is so frustrating, why did you do that"),
        bash(
            session,
            "cargo test",
            "test result: FAILED. 4 passed; 1 failed; 0 ignored",
            101,
        ),
        prompt(session, "stop. revert that"),
    ]
}

/// A session that goes well, and ends.
fn smooth_session(session: &str) -> Vec<Value> {
    vec![
        hook(session, "SessionStart", json!({})),
        prompt(session, "add a readme"),
        bash(
            session,
            "cargo test",
            "test result: ok. 12 passed; 0 failed; 0 ignored",
            0,
        ),
        prompt(session, "thanks, perfect"),
        hook(session, "SessionEnd", json!({ "reason": "exit" })),
    ]
}

pub(crate) async fn post_hooks(client: &Client, hooks: &[Value]) {
    for payload in hooks {
        let (status, body) = client.post("/api/hooks/claude", payload).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Like [`post_hooks`], with the prompts typed in another client
/// (`user_input` events) rather than sent by a hook: only the test's own
/// `UserPromptSubmit` hook can then be answered.
async fn post_without_prompt_hooks(client: &Client, hooks: &[Value]) {
    for payload in hooks {
        let (status, body) = if payload["hook_event_name"] == "UserPromptSubmit" {
            let event = json!({
                "type": "user_input",
                "session_id": payload["session_id"],
                "content": payload["prompt"],
                "source": "cli",
            });
            client.post("/api/events", &event).await
        } else {
            client.post("/api/hooks/claude", payload).await
        };
        assert_eq!(status, 200, "{body}");
    }
}

/// Everything groove shows: its totals, its sessions and every session's
/// whole timeline (paged), as the routes answer.
async fn everything(client: &Client) -> Value {
    let (status, mut totals) = client.get("/api/plugins/groove/totals").await;
    assert_eq!(status, 200, "{totals}");
    // Where the store stands is not what it derived.
    if let Some(totals) = totals.as_object_mut() {
        totals.remove("applied_offset");
    }
    let (status, sessions) = client.get("/api/plugins/groove/sessions").await;
    assert_eq!(status, 200, "{sessions}");
    let mut timelines = Vec::new();
    for session in sessions["sessions"].as_array().unwrap() {
        let id = session["id"].as_str().unwrap().to_owned();
        let mut records = Vec::new();
        let mut after = None::<u64>;
        loop {
            let path = match after {
                Some(after) => format!("/api/plugins/groove/sessions/{id}?limit=7&after={after}"),
                None => format!("/api/plugins/groove/sessions/{id}?limit=7"),
            };
            let (status, page) = client.get(&path).await;
            assert_eq!(status, 200, "{page}");
            records.extend(page["records"].as_array().unwrap().iter().cloned());
            match page["next_after"].as_u64() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        timelines.push(json!({ "session": session, "records": records }));
    }
    json!({ "totals": totals, "timelines": timelines })
}

async fn session(client: &Client, id: &str) -> Value {
    let (status, sessions) = client.get("/api/plugins/groove/sessions").await;
    assert_eq!(status, 200, "{sessions}");
    sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|session| session["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no session {id} in {sessions}"))
}

fn config_file(dir: &tempfile::TempDir, toml: &str) -> String {
    let path = dir.path().join("vibesd.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs `vibesd` with `args` against `daemon`, `stdin` on its standard
/// input; its exit status and standard output.
fn vibesd(
    daemon: &Daemon,
    args: &[&str],
    stdin: &str,
) -> (std::process::ExitStatus, String, String) {
    let bind = daemon.url.trim_start_matches("http://");
    // The global flags first: a plugin's command takes every argument
    // after its name as its own.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(["--bind", bind, "--data-dir"])
        .arg(&daemon.data_dir)
        .args(args)
        .env("XDG_CONFIG_HOME", daemon.data_dir.join("no-config"))
        .env_remove("VIBESD_CONFIG")
        .env_remove("VIBESD_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assessment_group_runs_and_its_routes_and_command_show_what_it_found() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    post_hooks(&client, &rough_session("rough")).await;
    post_hooks(&client, &smooth_session("smooth")).await;
    caught_up(&client, "assessment").await;

    // Supervised like a built-in group: in /api/groups, /api/actors, /metrics.
    assert_eq!(client.group("assessment").await["state"], "running");
    let (_, tree) = client.get("/api/actors").await;
    assert!(
        tree.to_string().contains("\"name\":\"assessment\""),
        "{tree}"
    );

    let rough = session(&client, "rough").await;
    let smooth = session(&client, "smooth").await;
    assert!(
        rough["frustration"].as_f64().unwrap() > smooth["frustration"].as_f64().unwrap(),
        "{rough} {smooth}"
    );
    assert!(
        smooth["success"].as_f64().unwrap() > rough["success"].as_f64().unwrap(),
        "{rough} {smooth}"
    );
    let (status, timeline) = client.get("/api/plugins/groove/sessions/rough").await;
    assert_eq!(status, 200, "{timeline}");
    let text = timeline.to_string();
    for kind in [
        "test_failed",
        "build_failed",
        "correction",
        "negative_phrase",
    ] {
        assert!(text.contains(kind), "no {kind} in {timeline}");
    }
    let (status, timeline) = client.get("/api/plugins/groove/sessions/smooth").await;
    assert_eq!(status, 200);
    assert!(timeline.to_string().contains("test_passed"), "{timeline}");
    assert!(
        timeline.to_string().contains("checkpoint"),
        "the session end checkpoints: {timeline}"
    );

    // Bad input gets its own answer.
    let (status, body) = client.get("/api/plugins/groove/sessions/nobody").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_session"))
    );
    let (status, body) = client
        .get("/api/plugins/groove/sessions/rough?limit=0")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );

    // The command, against the running daemon.
    let (status, out, err) = vibesd(&daemon, &["groove"], "");
    assert!(status.success(), "{err}");
    assert!(out.contains("rough") && out.contains("smooth"), "{out}");
    let (status, out, err) = vibesd(&daemon, &["groove", "rough"], "");
    assert!(status.success(), "{err}");
    assert!(out.contains("test_failed"), "{out}");
    let (status, _, err) = vibesd(&daemon, &["groove", "a", "b"], "");
    assert!(!status.success());
    assert!(err.contains("vibesd groove"), "{err}");
    let (status, _, err) = vibesd(&daemon, &["grove"], "");
    assert!(!status.success());
    assert!(err.contains("unknown command \"grove\""), "{err}");
}

/// Before: the assessment lived only in memory and replayed the whole log
/// on every start; its timers ran on the wall clock, so a replay differed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_rebuilds_identically_after_deletion_a_seek_back_and_kill_9() {
    // Small batches: many commits for a kill -9 to land between.
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, "[groups.assessment]\nbatch_size = 2\n");
    let mut daemon = Daemon::start(&["--config", &config]);
    let client = daemon.client();
    for n in 0..3 {
        post_hooks(&client, &rough_session(&format!("rough-{n}"))).await;
        post_hooks(&client, &smooth_session(&format!("smooth-{n}"))).await;
    }
    caught_up(&client, "assessment").await;
    let live = everything(&client).await;

    // (a) The store deleted: the next start reads the log again from 0.
    let client = without_the_store(&mut daemon).await;
    assert_eq!(
        everything(&client).await,
        live,
        "a rebuilt store is the same"
    );

    // (b) Seeked to the beginning: what it derives is the same again.
    let (status, body) = client
        .post("/api/groups/assessment/seek", &json!({"to": "beginning"}))
        .await;
    assert_eq!(status, 200, "{body}");
    caught_up(&client, "assessment").await;
    assert_eq!(everything(&client).await, live, "a replay is the same");

    // (c) kill -9 while it catches up on more: after the restart every
    // event is assessed exactly once, as a clean rebuild says.
    for n in 3..30 {
        post_hooks(&client, &rough_session(&format!("rough-{n}"))).await;
    }
    let (status, body) = client
        .post("/api/groups/assessment/seek", &json!({"to": "beginning"}))
        .await;
    assert_eq!(status, 200, "{body}");
    daemon.kill9();
    daemon.restart();
    let client = daemon.client();
    caught_up(&client, "assessment").await;
    let after_kill = everything(&client).await;
    let client = without_the_store(&mut daemon).await;
    assert_eq!(
        everything(&client).await,
        after_kill,
        "after kill -9 no assessment is missing or doubled"
    );
}

/// Stops `daemon`, deletes groove's store and starts it again; its client
/// once the store is rebuilt.
async fn without_the_store(daemon: &mut Daemon) -> Client {
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(daemon.path(&format!("groove.sqlite{suffix}")));
    }
    daemon.restart();
    let client = daemon.client();
    caught_up(&client, "assessment").await;
    client
}

/// A daemon configured by `toml` whose session `s1` went badly enough to
/// open its breaker; its prompts were typed, not sent by a hook.
async fn with_an_open_breaker(dir: &tempfile::TempDir, toml: &str) -> (Daemon, Client) {
    let config = config_file(dir, toml);
    let daemon = Daemon::start(&["--config", &config]);
    let client = daemon.client();
    post_without_prompt_hooks(&client, &rough_session("s1")).await;
    caught_up(&client, "assessment").await;
    wait_for("the breaker to open", || async {
        session(&client, "s1").await["breaker"] == "open"
    })
    .await;
    (daemon, client)
}

/// While a session's breaker is open, `vibesd hook` answers its next prompt
/// with Claude Code's hook output, once per opening; off by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_answers_the_next_prompt_through_vibesd_hook_once() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, client) = with_an_open_breaker(&dir, "[plugins.groove]\nintervene = true\n").await;

    let payload = prompt("s1", "try again").to_string();
    let (status, out, err) = vibesd(&daemon, &["hook"], &payload);
    assert!(status.success(), "{err}");
    let output: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|_| panic!("not Claude Code's hook output: {out:?} ({err})"));
    assert_eq!(
        output["hookSpecificOutput"]["hookEventName"], "UserPromptSubmit",
        "{output}"
    );
    let note = output["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(note.contains("Bash") || note.contains("test"), "{note}");
    // Recorded in the log, and so in the timeline.
    caught_up(&client, "assessment").await;
    wait_for("the intervention to be recorded", || async {
        session(&client, "s1").await["interventions"] == 1
    })
    .await;

    // The same opening is answered once.
    let (status, out, err) = vibesd(&daemon, &["hook"], &payload);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "", "a second answer for the same opening");

    // Other sessions, and other hooks, are not answered.
    let (status, out, _) = vibesd(&daemon, &["hook"], &prompt("other", "hello").to_string());
    assert!(status.success());
    assert_eq!(out.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_intervene_the_hook_prints_nothing_even_with_an_open_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _client) = with_an_open_breaker(&dir, "").await;
    let (status, out, err) = vibesd(&daemon, &["hook"], &prompt("s1", "again").to_string());
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "");
}

#[test]
fn bad_plugin_config_stops_start_up_naming_the_key() {
    for (toml, expected) in [
        (
            "[plugins.groove]\nnonsense = 1\n",
            "plugins.groove.nonsense",
        ),
        ("[plugins.groove]\nalpha = 0\n", "plugins.groove.alpha"),
        (
            "[plugins.groove]\nenabled = \"yes\"\n",
            "plugins.groove.enabled",
        ),
        ("[plugins.nope]\n", "unknown plugin \"nope\""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(&dir, toml);
        let output = Command::new(env!("CARGO_BIN_EXE_vibesd"))
            .args([
                "serve",
                "--backend",
                "memory",
                "--bind",
                "127.0.0.1:0",
                "--config",
                &config,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{toml}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{toml}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_plugin_runs_no_group_and_serves_no_route() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, "[plugins.groove]\nenabled = false\n");
    let daemon = Daemon::start(&["--config", &config]);
    let client = daemon.client();
    let (_, groups) = client.get("/api/groups").await;
    assert!(!groups.to_string().contains("assessment"), "{groups}");
    let (status, _) = client.get("/api/plugins/groove/sessions").await;
    assert_eq!(status, 404);
    assert!(!daemon.path("groove.sqlite").exists());
}
