//! vibesd as a process: kill -9 under load, SIGTERM, the token beyond
//! loopback, and configuration errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::{Daemon, user_input, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let acknowledged: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let producers: Vec<_> = (0..8)
        .map(|producer| {
            let client = client.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let content = format!("p{producer}-{i}");
                    let request = client
                        .http
                        .post(format!("{}/api/events", client.url))
                        .json(&user_input("load", &content))
                        .send()
                        .await;
                    // Once vibesd is killed, requests fail: stop there.
                    let Ok(response) = request else { break };
                    let Ok(body) = response.json::<Value>().await else {
                        break;
                    };
                    if let Some(offset) = body["offsets"][0].as_u64() {
                        acknowledged.lock().unwrap().insert(offset, content);
                    }
                }
            })
        })
        .collect();
    wait_for("a few hundred acknowledged appends", || async {
        acknowledged.lock().unwrap().len() > 300
    })
    .await;
    daemon.kill9();
    for producer in producers {
        producer.await.unwrap();
    }

    daemon.restart();
    let client = daemon.client();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let end = client.high_water_mark().await;
    let mut stored = HashMap::new();
    let mut from = 0;
    while from < end {
        let (_, page) = client
            .get(&format!("/api/events?from={from}&limit=1000"))
            .await;
        for frame in page["events"].as_array().unwrap() {
            let offset = frame["offset"].as_u64().unwrap();
            stored.insert(
                offset,
                frame["event"]["content"].as_str().unwrap().to_owned(),
            );
            from = offset + 1;
        }
    }
    for (offset, content) in &acknowledged {
        assert_eq!(
            stored.get(offset),
            Some(content),
            "acknowledged offset {offset}"
        );
    }
    // Every group resumes from its commit and catches up (session-collector
    // holds its commit back while the session is open, by design).
    wait_for("every group to catch up after kill -9", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().is_some_and(|groups| {
            groups.len() >= 2
                && groups.iter().all(|group| {
                    group["state"] == "running"
                        && (group["name"] == "session-collector"
                            || group["committed_offset"].as_u64() == Some(end - 1))
                })
        })
    })
    .await;
    // And the restarted daemon takes appends again.
    let (status, _) = client.post("/api/events", &user_input("s", "after")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_code_0() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let (status, _) = client.post("/api/events", &user_input("s", "x")).await;
    assert_eq!(status, 200);
    let status = daemon.sigterm();
    assert!(status.success(), "{status:?}\n{}", daemon.logs());
    assert!(
        daemon.logs().contains("vibesd stopped"),
        "{}",
        daemon.logs()
    );
    daemon.restart();
    assert_eq!(daemon.client().high_water_mark().await, 1);
}

#[tokio::test]
async fn beyond_loopback_every_route_but_healthz_needs_the_token() {
    let daemon = Daemon::start(&["--bind", "0.0.0.0:0"]);
    let token = std::fs::read_to_string(daemon.path("token")).unwrap();
    assert!(token.len() >= 32);
    let mode = std::fs::metadata(daemon.path("token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let client = daemon.client();
    assert_eq!(client.get("/healthz").await.0, 200);
    for path in ["/api/status", "/metrics", "/api/actors"] {
        let (status, body) = client.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("missing_token")),
            "{path}"
        );
    }
    let (status, body) = client.clone().with_token("wrong").get("/api/status").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("wrong_token")));
    let (status, body) = client
        .clone()
        .with_token("wrong")
        .post("/api/events", &user_input("s", "x"))
        .await;
    assert_eq!(status, 401, "{body}");
    let client = client.with_token(&token);
    for path in ["/api/status", "/metrics", "/api/actors"] {
        assert_eq!(client.get(path).await.0, 200, "{path}");
    }
    assert_eq!(
        client.high_water_mark().await,
        0,
        "the refused append wrote nothing"
    );
    let (status, body) = client
        .post("/api/events", &json!([user_input("s", "x")]))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_bad_config_stops_start_up_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vibesd.toml");
    std::fs::write(&config, "bind = \"127.0.0.1:0\"\nbakend = \"embedded\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bakend"), "{stderr}");
    assert!(
        !dir.path().join("events.sqlite").exists(),
        "nothing was opened"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(["--backend", "postgres", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("postgres") && stderr.contains("embedded"),
        "{stderr}"
    );
}

#[test]
fn the_hook_command_never_fails_the_session() {
    // No daemon on this port: one line on stderr, exit 0, quickly.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(["hook", "--bind", "127.0.0.1:9"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"session_id":"s","hook_event_name":"Stop"}"#)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not recorded"), "{stderr}");
}

/// vibesd on a managed iggy-server, when `VIBES_IGGY_SERVER` names one:
/// it starts the server, appends survive a restart of vibesd, and SIGTERM
/// stops the server too.
#[tokio::test]
async fn on_a_managed_iggy_server() {
    let Some(binary) = std::env::var_os("VIBES_IGGY_SERVER").filter(|path| !path.is_empty()) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: vibesd on iggy (set VIBES_IGGY_SERVER to an iggy-server binary to run it)"
        );
        return;
    };
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("vibesd.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"iggy\"\n[iggy]\nserver_binary = {:?}\n",
            binary.to_string_lossy()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let mut daemon = Daemon::start(&["--config", &config, "--backend", "iggy"]);
    let client = daemon.client();
    let (status, body) = client.get("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["backend"], "iggy", "{body}");
    assert_eq!(body["iggy"]["managed"], true, "{body}");
    // The status view shows the managed server's state.
    assert_eq!(body["iggy_server"]["up"], true, "{body}");
    assert!(body["iggy_server"]["pid"].as_u64().is_some(), "{body}");
    let (status, body) = client
        .post(
            "/api/events",
            &json!([user_input("s", "a"), user_input("s", "b")]),
        )
        .await;
    assert_eq!((status, body["offsets"].clone()), (200, json!([0, 1])));
    // The server is a node of the actor tree, and a series of /metrics.
    let (_, tree) = client.get("/api/actors").await;
    let server = tree["supervisor"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["kind"] == "iggy_server")
        .cloned()
        .unwrap_or_else(|| panic!("no iggy_server in {tree}"));
    assert_eq!(server["state"], "up", "{server}");
    assert!(server["pid"].as_u64().is_some(), "{server}");
    let metrics = reqwest::get(format!("{}/metrics", client.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\nvibesd_iggy_server_up 1\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("pid=\"{}\"", server["pid"])),
        "{metrics}"
    );
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    daemon.restart();
    let client = daemon.client();
    assert_eq!(client.high_water_mark().await, 2);
    let (_, page) = client.get("/api/events?from=0").await;
    assert_eq!(page["events"][1]["event"]["content"], "b");
}

/// SIGTERM while appends flow: exit 0, and after a restart every group
/// resumes from what it committed: chat history ends with each message
/// exactly once, and the groups reach the end of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_commits_and_every_group_resumes() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let content = format!("m{i}");
                let request = client
                    .http
                    .post(format!("{}/api/events", client.url))
                    .json(&user_input("term", &content))
                    .timeout(std::time::Duration::from_secs(5))
                    .send()
                    .await;
                // A stopping or stopped daemon refuses or drops requests.
                match request {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.lock().unwrap().push(content);
                    }
                    _ => break,
                }
            }
        })
    };
    wait_for("some appends", || async {
        acknowledged.lock().unwrap().len() > 50
    })
    .await;
    let status = daemon.sigterm();
    assert!(status.success(), "{status:?}\n{}", daemon.logs());
    // Requests to a stopped daemon fail; the producer stops on its own.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), producer).await;

    daemon.restart();
    let client = daemon.client();
    let end = client.high_water_mark().await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(end >= acknowledged.len() as u64);
    // session-collector holds its commit back while the session is open
    // (by design); every other group catches up with the log.
    wait_for("every group to reach the end of the log", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().is_some_and(|groups| {
            groups.len() >= 2
                && groups
                    .iter()
                    .filter(|group| group["name"] != "session-collector")
                    .all(|group| group["committed_offset"].as_u64() == Some(end - 1))
        })
    })
    .await;
    let (status, page) = client.get("/api/sessions/term/messages?limit=500").await;
    assert_eq!(status, 200, "{page}");
    let mut contents: Vec<String> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["text"].as_str().map(str::to_owned))
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..end).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(contents, expected, "each stored message exactly once");
    for content in &acknowledged {
        assert!(contents.contains(content), "acknowledged {content}");
    }
}

/// The client subcommands against a running daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_talk_to_the_daemon() {
    let daemon = Daemon::start(&[]);
    let bind = daemon.url.trim_start_matches("http://").to_owned();
    let data_dir = daemon.data_dir.clone();
    let run = move |args: Vec<String>| {
        let bind = bind.clone();
        let data_dir = data_dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
                    .args(&args)
                    .arg("--bind")
                    .arg(&bind)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let event = user_input("cli", "from the command line").to_string();
    let output = run(vec!["append".into(), event]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["offsets"], json!([0]));

    let output = run(vec!["status".into()]).await;
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["high_water_mark"], 1);

    let output = run(vec!["groups".into()]).await;
    let groups: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "chat-history")
    );

    let output = run(vec![
        "seek".into(),
        "chat-history".into(),
        "beginning".into(),
        "--dry-run".into(),
    ])
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["dry_run"], true);

    let output = run(vec![
        "tail".into(),
        "--from".into(),
        "beginning".into(),
        "--no-follow".into(),
    ])
    .await;
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"]["content"], "from the command line");

    // Bad input: a clear message and a failing exit code.
    let output = run(vec!["append".into(), "{oops".into()]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not JSON"));
    let output = run(vec!["seek".into(), "nope".into(), "beginning".into()]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no consumer group named"));
}

// Data files were created world-readable (0644 under a usual umask) while
// the token next to them was 0600: the log, transcripts and chat history
// are now private to vibesd's user, and so is a data dir made by hand.
#[tokio::test]
async fn data_files_and_directories_are_private_to_vibesds_user() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = Daemon::start_in(&data_dir);
    let client = daemon.client();
    client.post("/api/events", &user_input("s1", "hello")).await;
    let end = json!({"type": "session_removed", "session_id": "s1", "reason": "user"});
    client.post("/api/events", &end).await;
    wait_for("the transcript", || async {
        daemon.path("transcripts/s1.jsonl").exists()
    })
    .await;
    assert!(daemon.sigterm().success());
    let mut seen = 0;
    let mut stack = vec![data_dir.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "the log, the chat history and a transcript at least"
    );
}

// A token with a space, a line break or non-ASCII was taken at start, and
// then no client could send it: it is now refused, from a flag, the
// environment or the token file, with one line that says why.
#[test]
fn a_token_no_client_can_send_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "two words\n").unwrap();
    let vibesd = |args: &[&str], env: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vibesd"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("VIBESD_TOKEN")
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error.len(), 1, "{stderr}");
        error[0].to_owned()
    };
    let error = vibesd(&["--bind", "127.0.0.1:0", "--token", "line\nbreak"], &[]);
    assert!(
        error.contains("--token") && error.contains("line break"),
        "{error}"
    );
    let error = vibesd(&["--bind", "127.0.0.1:0"], &[("VIBESD_TOKEN", "ünï")]);
    assert!(error.contains("VIBESD_TOKEN"), "{error}");
    let error = vibesd(&["--bind", "0.0.0.0:0"], &[]);
    assert!(error.contains("token") && error.contains("' '"), "{error}");
}

// A browser cannot send `Authorization` on a WebSocket, so beyond loopback
// no web page could open one; the token now also travels as a subprotocol,
// checked like the header on every WebSocket route.
#[tokio::test]
async fn beyond_loopback_every_websocket_takes_the_token_as_a_subprotocol() {
    use base64::Engine;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let daemon = Daemon::start(&["--bind", "0.0.0.0:0", "--token", "s3cret"]);
    let port = daemon.url.rsplit(':').next().unwrap().to_owned();
    let encode = |token: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
    for path in ["/ws", "/ws/firehose", "/ws/notifications"] {
        let url = format!("ws://127.0.0.1:{port}{path}");
        for (protocols, accepted) in [
            (None, false),
            (
                Some(format!("vibesd, vibesd.bearer.{}", encode("wrong"))),
                false,
            ),
            (
                Some(format!("vibesd, vibesd.bearer.{}", encode("s3cret"))),
                true,
            ),
        ] {
            let mut request = url.as_str().into_client_request().unwrap();
            if let Some(protocols) = &protocols {
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", protocols.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Ok((_, response)) => {
                    assert!(accepted, "{path} {protocols:?} was accepted");
                    assert_eq!(
                        response.headers()["sec-websocket-protocol"],
                        "vibesd",
                        "{path}: a browser needs the protocol answered"
                    );
                }
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert!(!accepted, "{path} {protocols:?}: {}", response.status());
                    assert_eq!(response.status(), 401, "{path}");
                }
                Err(err) => panic!("{path}: {err}"),
            }
        }
    }
}

// The page that asks for the token must load without it: the UI's files
// hold no data, while every API route still needs the token.
#[tokio::test]
async fn beyond_loopback_the_web_ui_loads_without_the_token_and_its_api_does_not() {
    let daemon = Daemon::start(&["--bind", "0.0.0.0:0", "--token", "s3cret"]);
    let http = reqwest::Client::new();
    for path in ["/", "/groups", "/sessions/s1", "/assets/app.js"] {
        let response = http
            .get(format!("{}{path}", daemon.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let page = http
        .get(format!("{}/firehose", daemon.url))
        .send()
        .await
        .unwrap();
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Revalidated by its ETag: unchanged files are not sent again.
    let script = http
        .get(format!("{}/assets/app.js", daemon.url))
        .send()
        .await
        .unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let etag = script.headers()["etag"].clone();
    let again = http
        .get(format!("{}/assets/app.js", daemon.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let client = daemon.client();
    for path in [
        "/api/status",
        "/api/notifications",
        "/assets/../api/status",
        "/groupsx",
    ] {
        let (status, body) = client.get(path).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, body) = client.get("/assets/nope.js").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no_such_asset"))
    );
}

// The sockets that take no input buffered whatever a client sent, up to
// the WebSocket library's 64 MiB; now an oversized message closes them.
#[tokio::test]
async fn a_socket_that_takes_no_input_closes_on_an_oversized_message() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let daemon = Daemon::start(&[]);
    for path in ["/ws/firehose", "/ws/notifications"] {
        let url = format!("{}{path}", daemon.url.replacen("http://", "ws://", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::text("x".repeat(64 * 1024))).await.unwrap();
        let ended = tokio::time::timeout(crate::support::DEADLINE, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("the socket stayed open");
        if let Some(code) = ended {
            assert_eq!(code, 1009, "{path}");
        }
    }
    // vibesd goes on serving.
    assert_eq!(daemon.client().get("/healthz").await.0, 200);
}
