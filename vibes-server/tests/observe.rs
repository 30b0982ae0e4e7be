//! Watching the real daemon: `/metrics` as Prometheus reads it (checked by
//! `promtool`), the alert rules shipped in `contrib/`, and a control plane
//! that answers, and a watchdog that is fed, while one group's handler is
//! stuck on a webhook that never answers.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::firehose::connect;
use crate::support::{Client, Daemon, user_input, wait_for};
use crate::systemd::NotifySocket;

/// Runs `promtool` with `args` and `stdin`; fails the test if promtool is
/// missing (`.ci/run` installs Debian's `prometheus` package, which ships
/// it) or says no.
fn promtool(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): install Debian's prometheus package, as .ci/run does"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} says:\n{said}");
    said
}

/// The exposition as `curl` (or promtool) gets it.
async fn scrape(client: &Client) -> String {
    let response = reqwest::get(format!("{}/metrics", client.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the series `series` (name and labels, exactly as
/// exposed), if the exposition has it.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_metrics_pass_promtool_and_a_paused_groups_lag_reads_n() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let (status, body) = client
        .post("/api/groups/chat-history/pause", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let before = client.high_water_mark().await;
    let committed = body["committed_offset"]
        .as_u64()
        .map_or(0, |offset| offset + 1);
    let n = 7;
    let batch: Vec<Value> = (0..n)
        .map(|i| user_input("s1", &format!("hi {i}")))
        .collect();
    let (status, body) = client.post("/api/events", &json!(batch)).await;
    assert_eq!(status, 200, "{body}");
    // Something on every family: a firehose client, a 404, a refusal.
    let _firehose = connect(&daemon, "/ws/firehose?from=end").await;
    let (status, _) = client.get("/no/such/route").await;
    assert_eq!(status, 404);

    let exposition = scrape(&client).await;
    promtool(&["check", "metrics"], &exposition);
    assert_eq!(
        sample(
            &exposition,
            "vibesd_group_lag_events{group=\"chat-history\"}"
        ),
        Some((before + n - committed) as f64),
        "{exposition}"
    );
    for (series, value) in [
        (
            "vibesd_group_state{group=\"chat-history\",state=\"paused\"}",
            1.0,
        ),
        (
            "vibesd_group_state{group=\"chat-history\",state=\"running\"}",
            0.0,
        ),
        ("vibesd_build_info{version=\"0.1.0\"}", 1.0),
        ("vibesd_log_backend_info{backend=\"embedded\"}", 1.0),
        ("vibesd_log_high_water_mark", (before + n) as f64),
        ("vibesd_writer_up", 1.0),
        ("vibesd_websocket_clients{route=\"/ws/firehose\"}", 1.0),
        ("vibesd_websocket_clients{route=\"/ws\"}", 0.0),
        (
            "vibesd_http_requests_total{route=\"/api/groups/{name}/{action}\",method=\"POST\",status=\"200\"}",
            1.0,
        ),
        (
            "vibesd_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&exposition, series),
            Some(value),
            "{series}\n{exposition}"
        );
    }
    for family in [
        "vibesd_process_resident_memory_bytes",
        "vibesd_process_open_fds",
        "vibesd_process_cpu_seconds_total",
        "vibesd_process_start_time_seconds",
        "vibesd_writer_append_duration_seconds_count",
        "vibesd_writer_events_per_commit_count",
        "vibesd_group_handler_duration_seconds_count{group=\"websocket\"}",
        "vibesd_group_lag_seconds{group=\"chat-history\"}",
        "vibesd_group_restarts_total{group=\"websocket\"}",
        "vibesd_firehose_slow_clients_closed_total",
    ] {
        assert!(
            sample(&exposition, family).is_some(),
            "no {family} in\n{exposition}"
        );
    }
    // No raw path or offset ever becomes a label.
    assert!(!exposition.contains("/no/such/route"), "{exposition}");

    // Prometheus itself asks for OpenMetrics, and gets it.
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", client.url))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(response.text().await.unwrap().ends_with("# EOF\n"));
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus/vibesd-alerts.yml");
    let said = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(said.contains("SUCCESS"), "{said}");
}

/// A webhook that takes connections and never answers them.
fn silent_webhook() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (listener, url)
}

/// Before: the Supervisor awaited its children, so a group blocked in its
/// handler could hold `/api/groups`, `/readyz` and the watchdog's probe, and
/// under `WatchdogSec=` get a healthy daemon killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_holds_up_no_route_and_the_watchdog_is_fed() {
    let (_listener, url) = silent_webhook();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vibesd.toml");
    std::fs::write(
        &config,
        format!(
            "[supervisor]\nstuck_after_secs = 1\n\n[[webhooks]]\nurl = \"{url}\"\nkinds = [\"permission_request\"]\n"
        ),
    )
    .unwrap();
    let notify = NotifySocket::bind();
    let daemon = Daemon::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &notify.path), ("WATCHDOG_USEC", "500000")],
    );
    let client = daemon.client();
    notify.wait_for("WATCHDOG=1");
    wait_for("the notifications group to run", || async {
        client.group("notifications").await["state"] == "running"
    })
    .await;
    let request = json!({
        "type": "claude", "session_id": "s1",
        "event": {"type": "permission_request", "id": "p1", "tool": "Bash", "description": "run ls"}
    });
    let (status, body) = client.post("/api/events", &request).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the notifications group to show stuck", || async {
        client.group("notifications").await["state"] == "stuck"
    })
    .await;

    // A seek of the stuck group waits for its handler (the group answers
    // after its step); the Supervisor forwards it and goes on answering.
    let seek = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post("/api/groups/notifications/seek", &json!({"to": "end"}))
                .await
        }
    });
    let prompt = Duration::from_secs(1);
    let timed = |path: &'static str| {
        let client = client.clone();
        async move {
            let started = std::time::Instant::now();
            let (status, body) = tokio::time::timeout(prompt, client.get(path))
                .await
                .unwrap_or_else(|_| panic!("GET {path} took longer than {prompt:?}"));
            assert!(started.elapsed() < prompt);
            (status, body)
        }
    };
    let (status, body) = timed("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("notifications is stuck"),
        "{body}"
    );
    let (status, groups) = timed("/api/groups").await;
    assert_eq!(status, 200);
    let stuck = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["name"] == "notifications")
        .unwrap();
    assert!(
        stuck["batch"]["running_seconds"].as_f64().unwrap() > 1.0,
        "{stuck}"
    );
    let (status, tree) = timed("/api/actors").await;
    assert_eq!(status, 200);
    assert!(tree.to_string().contains("\"state\":\"stuck\""), "{tree}");
    let started = std::time::Instant::now();
    let exposition = tokio::time::timeout(prompt, scrape(&client))
        .await
        .expect("a scrape while a handler is stuck answers in under a second");
    assert!(started.elapsed() < prompt);
    assert_eq!(
        sample(
            &exposition,
            "vibesd_group_state{group=\"notifications\",state=\"stuck\"}"
        ),
        Some(1.0)
    );
    let (status, body) = tokio::time::timeout(
        prompt,
        client.post("/api/groups/chat-history/pause", &json!({})),
    )
    .await
    .expect("pausing another group answers in under a second");
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("paused")),
        "{body}"
    );

    // The daemon is healthy: its watchdog goes on being fed.
    for _ in 0..3 {
        notify.wait_for("WATCHDOG=1");
    }
    assert_eq!(
        client.group("notifications").await["state"],
        "stuck",
        "still stuck: what was fed was not a recovered group"
    );
    assert!(!seek.is_finished(), "the seek waits for the stuck group");
    seek.abort();
}

// The guard, the token check and the request count are one layer; a
// refusal by either check must still be counted (and timed) under the
// route it was refused on, or a stranger's probing never shows in
// `/metrics`.
#[tokio::test]
async fn requests_the_guard_or_the_token_check_refuses_are_counted_by_route() {
    let daemon = Daemon::start(&["--bind", "0.0.0.0:0"]);
    let token = std::fs::read_to_string(daemon.path("token")).unwrap();
    let client = daemon.client();
    let events = format!("{}/api/events", client.url);
    let body = serde_json::to_vec(&user_input("s", "x")).unwrap();
    let foreign = client
        .http
        .post(&events)
        .bearer_auth(&token)
        .header("origin", "https://elsewhere.example")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let not_json = client
        .http
        .post(&events)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let (status, _) = client.get("/api/status").await;
    assert_eq!(status, 401);
    let (status, _) = client.clone().with_token("wrong").get("/api/status").await;
    assert_eq!(status, 401);

    let response = client
        .http
        .get(format!("{}/metrics", client.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let exposition = response.text().await.unwrap();
    promtool(&["check", "metrics"], &exposition);
    for (series, value) in [
        (
            "vibesd_http_requests_total{route=\"/api/events\",method=\"POST\",status=\"403\"}",
            1.0,
        ),
        (
            "vibesd_http_requests_total{route=\"/api/events\",method=\"POST\",status=\"415\"}",
            1.0,
        ),
        (
            "vibesd_http_requests_total{route=\"/api/status\",method=\"GET\",status=\"401\"}",
            2.0,
        ),
        (
            "vibesd_http_request_duration_seconds_count{route=\"/api/events\",method=\"POST\"}",
            2.0,
        ),
        (
            "vibesd_http_request_duration_seconds_count{route=\"/api/status\",method=\"GET\"}",
            2.0,
        ),
    ] {
        assert_eq!(
            sample(&exposition, series),
            Some(value),
            "{series}\n{exposition}"
        );
    }
    assert_eq!(
        client.with_token(&token).high_water_mark().await,
        0,
        "a refused append wrote nothing"
    );
}
