//! The router in-process (`app(state).oneshot(request)`) on a memory log:
//! the guard against other web pages, auth order, error mapping and
//! limits, without a process per case.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use vibes_actors::supervisor::{Supervisor, SupervisorArgs, SupervisorHandle};
use vibes_iggy::BackendChoice;
use vibes_server::config::Config;
use vibes_server::state::{AppState, BackendInfo, Lifecycle};

use crate::support::user_input;

/// vibesd's router on a memory log, with the built-in groups running.
pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) supervisor: SupervisorHandle,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl App {
    /// The router of a vibesd configured by `toml`.
    pub(crate) async fn start(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(toml).unwrap();
        config.backend = BackendChoice::Memory;
        config.data_dir = Some(dir.path().to_owned());
        let opened = vibes_iggy::open(&config.backend_config(dir.path()))
            .await
            .unwrap();
        let log = opened.log.clone();
        let (mut groups, services) = vibes_server::consumers::build(&config, dir.path()).unwrap();
        let plugins =
            vibes_server::plugins::start(&config, dir.path(), &services.notifications).unwrap();
        groups.extend(vibes_server::plugins::group_specs(&config, &plugins));
        let (supervisor, _done) = Supervisor::start(SupervisorArgs {
            log: opened,
            groups,
            writer: config.writer_config(),
        })
        .await
        .unwrap();
        let (lifecycle, stop, _gone) = Lifecycle::new();
        let permissions = vibes_server::permissions::Permissions::new(
            config.remote_approval.clone(),
            supervisor.writer().clone(),
            log.clone(),
        );
        let state = AppState::new(vibes_server::state::Shared {
            permissions,
            supervisor: supervisor.clone(),
            writer: supervisor.writer().clone(),
            log,
            token: config.token.as_deref().map(Into::into),
            config: std::sync::Arc::new(config),
            backend: BackendInfo {
                kind: "memory".into(),
                reason: "test".into(),
                iggy: None,
            },
            started: std::time::Instant::now(),
            services,
            lifecycle,
            metrics: std::sync::Arc::default(),
            plugins,
        });
        Self {
            router: vibes_server::api::app(state),
            supervisor,
            _stop: stop,
            _dir: dir,
        }
    }

    /// Sends `request`; the status and the JSON body (`Null` if none).
    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub(crate) async fn high_water_mark(&self) -> u64 {
        let (status, body) = self.send(get("/api/status")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["high_water_mark"].as_u64().unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move {
            let _ = supervisor.shutdown().await;
        });
    }
}

/// A request as a local client without a browser sends it.
fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:7432")
}

pub(crate) fn get(path: &str) -> Request<Body> {
    request("GET", path).body(Body::empty()).unwrap()
}

/// A request with `body`, its length said as a real client says it.
fn with_body(
    builder: axum::http::request::Builder,
    content_type: &str,
    body: String,
) -> Request<Body> {
    builder
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

pub(crate) fn post_json(path: &str, body: &Value) -> Request<Body> {
    with_body(request("POST", path), "application/json", body.to_string())
}

/// Every route that reads or changes something, with a body it takes.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("POST", "/api/events", Some(user_input("s", "approve"))),
        (
            "POST",
            "/api/hooks/claude",
            Some(json!({"session_id":"s","hook_event_name":"Stop"})),
        ),
        ("POST", "/api/groups/chat-history/pause", None),
        ("POST", "/api/groups/chat-history/resume", None),
        ("POST", "/api/groups/chat-history/restart", None),
        (
            "POST",
            "/api/groups/chat-history/seek",
            Some(json!({"to":"end"})),
        ),
        ("POST", "/api/dead-letters/chat-history/0/skip", None),
        ("POST", "/api/dead-letters/chat-history/0/replay", None),
        ("GET", "/api/events?from=0", None),
        ("GET", "/api/status", None),
        ("GET", "/api/groups", None),
        ("GET", "/api/actors", None),
        ("GET", "/metrics", None),
        ("GET", "/api/plugins/groove/sessions", None),
        ("GET", "/api/plugins/groove/totals", None),
        ("GET", "/api/dead-letters", None),
        ("GET", "/api/sessions", None),
        ("GET", "/api/sessions/s/messages", None),
        ("GET", "/api/sessions/s/transcript", None),
        ("GET", "/api/search?q=approve", None),
        ("GET", "/readyz", None),
        ("GET", "/ws", None),
        ("GET", "/ws/firehose", None),
        ("GET", "/no/such/route", None),
    ]
}

// A page on another site could append a `permission_response` with a
// no-cors `text/plain` POST, pause or seek groups, and (by DNS rebinding)
// read the whole log: every route now refuses it.
#[tokio::test]
async fn cross_site_pages_cannot_write_read_or_control_the_loopback_daemon() {
    let app = App::start("").await;
    let before = app.high_water_mark().await;
    for (method, path, body) in routes() {
        let build = || {
            let builder = request(method, path);
            match &body {
                Some(body) => with_body(builder, "application/json", body.to_string()),
                None => builder.body(Body::empty()).unwrap(),
            }
        };
        let mut foreign = build();
        foreign
            .headers_mut()
            .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        let (status, answer) = app.send(foreign).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("origin_refused")),
            "{method} {path} from a foreign page: {answer}"
        );
        let mut rebound = build();
        rebound
            .headers_mut()
            .insert(header::HOST, "evil.example:7432".parse().unwrap());
        let (status, answer) = app.send(rebound).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("host_refused")),
            "{method} {path} through a rebound name: {answer}"
        );
        if method == "POST" {
            let simple = with_body(
                request(method, path),
                "text/plain;charset=UTF-8",
                body.as_ref().map_or("{}".into(), Value::to_string),
            );
            let (status, answer) = app.send(simple).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Some("unsupported_media_type")
                ),
                "{method} {path} with a text/plain body: {answer}"
            );
        }
    }
    assert_eq!(app.high_water_mark().await, before, "nothing was appended");
    let (_, groups) = app.send(get("/api/groups")).await;
    for group in groups.as_array().unwrap() {
        assert_ne!(group["state"], "paused", "{group}");
    }
}

#[tokio::test]
async fn clients_without_a_browser_and_the_daemons_own_pages_are_let_through() {
    let app = App::start("allowed_origins = [\"https://ui.example\"]").await;
    // No Origin: the CLI, `vibesd hook`, curl.
    let (status, body) = app
        .send(post_json("/api/events", &user_input("s", "a")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for origin in ["http://127.0.0.1:7432", "https://ui.example"] {
        let mut own = post_json("/api/events", &user_input("s", "b"));
        own.headers_mut()
            .insert(header::ORIGIN, origin.parse().unwrap());
        let (status, body) = app.send(own).await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
    }
    let mut localhost = get("/api/status");
    localhost
        .headers_mut()
        .insert(header::HOST, "localhost:7432".parse().unwrap());
    assert_eq!(app.send(localhost).await.0, StatusCode::OK);
    assert_eq!(app.high_water_mark().await, 3);
}

// 405, 414, 431 and a bad percent-escape in a path answered with an empty
// or plain-text body; every 4xx is now JSON with an `error` code.
#[tokio::test]
async fn every_4xx_is_json_with_an_error_code() {
    let app = App::start("").await;
    let long = format!("/api/events?from=0&pad={}", "x".repeat(9000));
    let mut big_headers = get("/api/status");
    for i in 0..20 {
        big_headers.headers_mut().insert(
            header::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
            "y".repeat(4000).parse().unwrap(),
        );
    }
    let cases = vec![
        (
            request("DELETE", "/api/events")
                .body(Body::empty())
                .unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            get("/api/events/nope"),
            StatusCode::NOT_FOUND,
            "no_such_route",
        ),
        (get(&long), StatusCode::URI_TOO_LONG, "uri_too_long"),
        (
            big_headers,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        ),
        (
            request("POST", "/api/groups/%FF/pause")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            get("/api/sessions/%C3%28/messages"),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
    ];
    for (request, status, error) in cases {
        let shown = format!("{} {}", request.method(), request.uri().path());
        let (got, body) = app.send(request).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{shown}: {body}"
        );
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

// Beyond loopback an unknown route answered 404 before asking for the
// token, telling a stranger which routes exist.
#[tokio::test]
async fn beyond_loopback_an_unknown_route_is_401_before_404() {
    let app = App::start("bind = \"0.0.0.0:7432\"\ntoken = \"s3cret-token\"").await;
    let (status, body) = app.send(get("/no/such/route")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    let mut with_token = get("/no/such/route");
    with_token.headers_mut().insert(
        header::AUTHORIZATION,
        "Bearer s3cret-token".parse().unwrap(),
    );
    let (status, body) = app.send(with_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_route"))
    );
    assert_eq!(app.send(get("/healthz")).await.0, StatusCode::OK);
}

// Pause and resume answered with the group as it was before the change.
#[tokio::test]
async fn pause_and_resume_answer_the_new_state() {
    let app = App::start("").await;
    crate::support::wait_for("chat-history to run", || async {
        let (_, groups) = app.send(get("/api/groups")).await;
        groups.as_array().is_some_and(|groups| {
            groups
                .iter()
                .any(|g| g["name"] == "chat-history" && g["state"] == "running")
        })
    })
    .await;
    let post = |path: &str| request("POST", path).body(Body::empty()).unwrap();
    let (status, group) = app.send(post("/api/groups/chat-history/pause")).await;
    assert_eq!(
        (status, group["state"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let (status, group) = app.send(post("/api/groups/chat-history/resume")).await;
    assert_eq!(
        (status, group["state"].as_str()),
        (StatusCode::OK, Some("running"))
    );
}

// The black-box tests found the token check and the 413 through a real
// socket; these pin the mapping in-process, one request each.
#[tokio::test]
async fn the_token_and_the_body_limit_map_to_their_4xx() {
    let app = App::start(
        "bind = \"0.0.0.0:7432\"\ntoken = \"s3cret-token\"\n[limits]\nmax_body_bytes = 1024",
    )
    .await;
    let body = user_input("s", "hi");
    let (status, answer) = app.send(post_json("/api/events", &body)).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    let authorized = |mut request: Request<Body>, token: &str| {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        request
    };
    let (status, answer) = app
        .send(authorized(post_json("/api/events", &body), "not-it"))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong_token"))
    );
    let (status, answer) = app
        .send(authorized(post_json("/api/events", &body), "s3cret-token"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let big = user_input("s", &"x".repeat(2000));
    let (status, answer) = app
        .send(authorized(post_json("/api/events", &big), "s3cret-token"))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")),
        "{answer}"
    );
    let (status, answer) = app
        .send(authorized(get("/api/status"), "s3cret-token"))
        .await;
    assert_eq!(answer["high_water_mark"], 1, "{status} {answer}");
}

/// A handler that panics on its first batch, then handles everything.
struct PanicsOnce(std::sync::Arc<std::sync::atomic::AtomicBool>);

#[async_trait::async_trait]
impl vibes_core::Handler for PanicsOnce {
    async fn handle(&mut self, _batch: &[vibes_core::Delivery]) -> vibes_core::Handled {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("the handler of crashy panics once");
        }
        vibes_core::Handled::All
    }
}

/// The exposition's value of `series`, if it has it.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

async fn scrape(app: &App) -> String {
    let response = app.router.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The actor id of the group `name` in `/api/actors`.
async fn actor_id(app: &App, name: &str) -> Option<String> {
    let (status, tree) = app.send(get("/api/actors")).await;
    assert_eq!(status, StatusCode::OK, "{tree}");
    tree["supervisor"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["name"] == name)
        .and_then(|node| node["actor_id"].as_str().map(str::to_owned))
}

// A handler panic restarts its group as a new actor: /metrics counts the
// restart, and /api/actors shows the new actor id and generation.
#[tokio::test]
async fn a_handler_panic_counts_a_restart_and_shows_a_new_actor() {
    let app = App::start("").await;
    let panicked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut config = vibes_actors::group::GroupConfig::new("crashy");
    config.restart.backoff = vibes_actors::backoff::Backoff {
        min: std::time::Duration::from_millis(1),
        max: std::time::Duration::from_millis(10),
    };
    let handler = panicked.clone();
    app.supervisor
        .register(vibes_actors::group::GroupSpec {
            config,
            handler: std::sync::Arc::new(move || {
                Box::new(PanicsOnce(handler.clone())) as Box<dyn vibes_core::Handler>
            }),
        })
        .await
        .unwrap();
    crate::support::wait_for("crashy to start", || async {
        actor_id(&app, "crashy").await.is_some()
    })
    .await;
    let first = actor_id(&app, "crashy").await.unwrap();
    let restarts = "vibesd_group_restarts_total{group=\"crashy\"}";
    assert_eq!(sample(&scrape(&app).await, restarts), Some(0.0));

    let (status, body) = app
        .send(post_json("/api/events", &user_input("s", "hi")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    crate::support::wait_for("the restart to show in /metrics", || async {
        sample(&scrape(&app).await, restarts) == Some(1.0)
    })
    .await;
    crate::support::wait_for("crashy to run again", || async {
        actor_id(&app, "crashy").await.is_some_and(|id| id != first)
    })
    .await;
    let (_, tree) = app.send(get("/api/actors")).await;
    let node = tree["supervisor"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["name"] == "crashy")
        .unwrap()
        .clone();
    assert_eq!(node["restarts"], 1, "{node}");
    assert_eq!(node["generation"], 2, "{node}");
    assert!(
        node["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("panics once"),
        "{node}"
    );
}
