//! The backend belongs to the data directory: recorded on the first start,
//! followed on every later one, never silently switched; contradictions are
//! refused; `vibesd migrate` moves the log with its offsets and commits.
//!
//! The tests that need a real `iggy-server` (the binary named by
//! `VIBES_IGGY_SERVER`) say `skipped` in one line and return without one.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use serde_json::json;
use vibes_iggy::iggy::{Connection, IggyConfig, IggyLog, IggyManager};
use vibes_iggy::{EventLog, GroupOffset, LogOptions};

use crate::support::{DEADLINE, Daemon, user_input, wait_for};

/// The `iggy-server` to run, or `None` after one line saying what is skipped.
fn iggy_server(what: &str) -> Option<PathBuf> {
    match std::env::var_os("VIBES_IGGY_SERVER").filter(|path| !path.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {what} (set VIBES_IGGY_SERVER to an iggy-server binary to run it)"
            );
            None
        }
    }
}

/// An executable named `iggy-server` that fails at once, leaving `ran`
/// behind as proof that it was started.
struct FakeIggyServer {
    binary: PathBuf,
    ran: PathBuf,
    _dir: tempfile::TempDir,
}

fn fake_iggy_server() -> FakeIggyServer {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("iggy-server");
    let ran = dir.path().join("ran");
    std::fs::write(
        &binary,
        format!(
            "#!/bin/sh\n: > '{}'\necho 'fake iggy-server: cannot start' >&2\nexit 1\n",
            ran.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    FakeIggyServer {
        binary,
        ran,
        _dir: dir,
    }
}

/// A config file in its own directory, `text` as its content.
fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vibesd.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

fn binary_config(binary: &Path) -> String {
    format!("[iggy]\nserver_binary = {:?}\n", binary.to_string_lossy())
}

/// An environment whose `PATH` holds no `iggy-server`.
fn no_iggy_on_path() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    (dir, vec![("PATH".to_owned(), path)])
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Runs `vibesd` on `data_dir` to its end, within the deadline.
fn vibesd(data_dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_vibesd"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("VIBESD_CONFIG")
        .env_remove("VIBESD_BACKEND")
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
        .env("VIBESD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("vibesd {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// The line starting with `error:` that a failed vibesd printed.
fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "vibesd succeeded: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    errors[0].to_owned()
}

fn record(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("backend")).unwrap_or_default()
}

async fn status(daemon: &Daemon) -> serde_json::Value {
    let (status, body) = daemon.client().get("/api/status").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn append(daemon: &Daemon, n: usize) {
    let events: Vec<_> = (0..n)
        .map(|i| user_input("s", &format!("message {i}")))
        .collect();
    let (status, body) = daemon.client().post("/api/events", &json!(events)).await;
    assert_eq!(status, 200, "{body}");
}

// Installing iggy-server later moved `auto` off the embedded log onto a new, empty Iggy log.
#[tokio::test]
async fn auto_keeps_the_embedded_log_when_iggy_server_appears_later() {
    let fake = fake_iggy_server();
    let (_path_dir, env) = no_iggy_on_path();
    let mut daemon = Daemon::start_with_env(&["--backend", "auto"], &env_refs(&env));
    assert_eq!(status(&daemon).await["backend"], "embedded");
    append(&daemon, 3).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    assert!(
        record(&daemon.data_dir).contains("backend = \"embedded\""),
        "{}",
        record(&daemon.data_dir)
    );

    // iggy-server appears: the record keeps the embedded log.
    let (_config_dir, config) = config_file(&binary_config(&fake.binary));
    daemon.restart_with(&["--backend", "auto", "--config", &config]);
    let body = status(&daemon).await;
    assert_eq!(body["backend"], "embedded", "{body}");
    assert_eq!(body["high_water_mark"], 3, "{body}");
    assert!(!fake.ran.exists(), "iggy-server was tried");
    assert!(daemon.sigterm().success(), "{}", daemon.logs());

    // A data directory from before the record: its files say embedded.
    std::fs::remove_file(daemon.path("backend")).unwrap();
    daemon.restart();
    let body = status(&daemon).await;
    assert_eq!(body["backend"], "embedded", "{body}");
    assert_eq!(body["high_water_mark"], 3, "{body}");
    assert!(!fake.ran.exists(), "iggy-server was tried");
    assert!(record(&daemon.data_dir).contains("backend = \"embedded\""));
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

#[tokio::test]
async fn memory_records_nothing_and_leaves_a_recorded_log_alone() {
    let mut daemon = Daemon::start(&["--backend", "memory"]);
    append(&daemon, 1).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    assert!(!daemon.path("backend").exists(), "memory was recorded");
    assert!(!daemon.path("events.sqlite").exists());

    daemon.restart_with(&["--backend", "embedded"]);
    append(&daemon, 2).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    daemon.restart_with(&["--backend", "memory"]);
    assert_eq!(daemon.client().high_water_mark().await, 0);
    append(&daemon, 5).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    daemon.restart_with(&["--backend", "auto"]);
    assert_eq!(daemon.client().high_water_mark().await, 2);
    assert!(record(&daemon.data_dir).contains("backend = \"embedded\""));
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

// `--backend iggy` (or an iggy.address) on an embedded data dir served a new, empty log.
#[tokio::test]
async fn a_backend_that_contradicts_the_data_dir_is_refused() {
    let fake = fake_iggy_server();
    let mut daemon = Daemon::start(&[]);
    append(&daemon, 2).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    let before = std::fs::read(daemon.path("events.sqlite")).unwrap();

    let (_managed_dir, managed) = config_file(&binary_config(&fake.binary));
    let (_external_dir, external) = config_file(&format!(
        "{}address = \"127.0.0.1:9\"\n",
        binary_config(&fake.binary)
    ));
    for args in [
        vec!["serve", "--backend", "iggy", "--config", &managed],
        vec!["serve", "--backend", "auto", "--config", &external],
    ] {
        let error = error_line(&vibesd(&daemon.data_dir, &args));
        assert!(
            error.contains("holds an embedded log") && error.contains("vibesd migrate --to iggy"),
            "{args:?}: {error}"
        );
        assert!(!fake.ran.exists(), "iggy-server was tried");
        assert!(!daemon.path("iggy").exists(), "an iggy data dir was made");
    }
    assert_eq!(
        std::fs::read(daemon.path("events.sqlite")).unwrap(),
        before,
        "the log changed"
    );
    daemon.restart();
    assert_eq!(daemon.client().high_water_mark().await, 2);
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

// An iggy-server that failed to start (or log in) made vibesd exit instead of running at all.
#[tokio::test]
async fn auto_falls_back_to_embedded_when_iggy_server_fails_on_a_new_data_dir() {
    let fake = fake_iggy_server();
    let (_config_dir, config) = config_file(&binary_config(&fake.binary));
    let mut daemon = Daemon::start(&["--backend", "auto", "--config", &config]);
    let body = status(&daemon).await;
    assert_eq!(body["backend"], "embedded", "{body}");
    assert!(fake.ran.exists(), "iggy-server was not tried");
    assert!(
        daemon.logs().contains("did not start"),
        "no warning:\n{}",
        daemon.logs()
    );
    assert!(record(&daemon.data_dir).contains("backend = \"embedded\""));
    assert!(
        !daemon.path("iggy").exists(),
        "the failed server's data dir stayed"
    );
    append(&daemon, 1).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

#[tokio::test]
async fn migrate_is_refused_while_running_onto_itself_and_into_a_log_that_is_not_empty() {
    let mut daemon = Daemon::start(&[]);
    append(&daemon, 2).await;
    let error = error_line(&vibesd(&daemon.data_dir, &["migrate", "--to", "iggy"]));
    assert!(error.contains("vibesd is running"), "{error}");
    assert!(daemon.sigterm().success(), "{}", daemon.logs());

    let error = error_line(&vibesd(&daemon.data_dir, &["migrate", "--to", "embedded"]));
    assert!(error.contains("already holds an embedded log"), "{error}");

    // A directory recorded as iggy whose embedded log is still there.
    let iggy_record = "backend = \"iggy\"\n";
    std::fs::write(daemon.path("backend"), iggy_record).unwrap();
    let error = error_line(&vibesd(&daemon.data_dir, &["migrate", "--to", "embedded"]));
    assert!(
        error.contains("is not empty (2 events") && error.contains("events.sqlite"),
        "{error}"
    );
    assert_eq!(record(&daemon.data_dir), iggy_record, "the record changed");

    std::fs::write(daemon.path("backend"), "backend = \"embedded\"\n").unwrap();
    daemon.restart();
    assert_eq!(daemon.client().high_water_mark().await, 2);
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

type Snapshot = (Vec<(u64, Vec<u8>)>, Vec<GroupOffset>);

/// Every record and group of the embedded log in `data_dir`, read with
/// SQLite itself.
fn embedded_snapshot(data_dir: &Path) -> Snapshot {
    let conn = rusqlite::Connection::open(data_dir.join("events.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT log_offset, payload FROM events ORDER BY log_offset")
        .unwrap();
    let events = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT group_name, committed FROM group_offsets ORDER BY group_name")
        .unwrap();
    let groups = stmt
        .query_map([], |row| {
            Ok(GroupOffset {
                group: row.get(0)?,
                committed: row.get::<_, Option<i64>>(1)?.map(|offset| offset as u64),
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (events, groups)
}

/// Every record and group of a log, read through the library.
async fn log_snapshot(log: &dyn EventLog) -> Snapshot {
    let records = log.read(0, 100_000).await.unwrap();
    let events = records
        .into_iter()
        .map(|record| (record.offset, record.payload.to_vec()))
        .collect();
    (events, log.groups().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_to_iggy_and_back_keeps_offsets_and_group_commits() {
    let Some(binary) = iggy_server("migrating between embedded and iggy") else {
        return;
    };
    let mut daemon = Daemon::start(&[]);
    append(&daemon, 20).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    // A record that does not decode, as damage or an older writer leaves.
    let conn = rusqlite::Connection::open(daemon.path("events.sqlite")).unwrap();
    conn.execute(
        "INSERT INTO events (log_offset, payload) VALUES (20, ?1)",
        [b"{\"not\": \"an event\"".as_slice()],
    )
    .unwrap();
    drop(conn);
    let original = embedded_snapshot(&daemon.data_dir);
    assert_eq!(original.0.len(), 21);
    assert!(!original.1.is_empty(), "no groups to carry over");

    let (_config_dir, config) = config_file(&binary_config(&binary));
    let output = vibesd(
        &daemon.data_dir,
        &["migrate", "--to", "iggy", "--config", &config],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains(&format!("moved 21 events and {} groups", original.1.len())),
        "{stdout}"
    );
    assert!(stdout.contains("events.sqlite"), "{stdout}");
    assert!(record(&daemon.data_dir).contains("backend = \"iggy\""));

    // The managed server now holds the same records and commits.
    let iggy = IggyConfig {
        server_binary: Some(binary.clone()),
        ..IggyConfig::default()
    };
    let manager = IggyManager::start(&iggy, &daemon.data_dir).await.unwrap();
    let log = IggyLog::connect(&manager.connection(), LogOptions::default())
        .await
        .unwrap();
    assert_eq!(log_snapshot(&log).await, original);
    drop(log);
    manager.stop().await;

    // vibesd follows the record onto the copy.
    daemon.restart_with(&["--backend", "auto", "--config", &config]);
    let client = daemon.client();
    let (_, body) = client.get("/api/status").await;
    assert_eq!(body["backend"], "iggy", "{body}");
    // At least: the groups dead-letter the broken record, which appends.
    assert!(body["high_water_mark"].as_u64().unwrap() >= 21, "{body}");
    // Dead letters go through the LogWriter, which shutdown drains first:
    // let every group dead-letter it and catch up before the stop, so that
    // the way back carries them (else the next start writes them again).
    wait_for("every group to catch up on iggy", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups
            .as_array()
            .is_some_and(|groups| groups.iter().all(|group| group["lag"] == 0))
    })
    .await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());

    // Back: the old embedded log is in the way until it is deleted, as the
    // first migration said.
    let error = error_line(&vibesd(
        &daemon.data_dir,
        &["migrate", "--to", "embedded", "--config", &config],
    ));
    assert!(error.contains("not empty"), "{error}");
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(daemon.path(&format!("events.sqlite{suffix}")));
    }
    let manager = IggyManager::start(&iggy, &daemon.data_dir).await.unwrap();
    let log = IggyLog::connect(&manager.connection(), LogOptions::default())
        .await
        .unwrap();
    let on_iggy = log_snapshot(&log).await;
    drop(log);
    manager.stop().await;
    let output = vibesd(
        &daemon.data_dir,
        &["migrate", "--to", "embedded", "--config", &config],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("rm -r"), "{stdout}");
    let back = embedded_snapshot(&daemon.data_dir);
    assert_eq!(back, on_iggy);
    assert_eq!(back.0[..21], original.0, "records changed on the way");

    daemon.restart_with(&["--backend", "auto", "--config", &config]);
    let (_, body) = daemon.client().get("/api/status").await;
    assert_eq!(body["backend"], "embedded", "{body}");
    assert_eq!(body["high_water_mark"], back.0.len(), "{body}");
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
}

/// An `iggy-server` the test runs itself, as an operator would: its own
/// data directory, credentials and port; killed when dropped.
struct ExternalServer {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

const EXTERNAL_USER: &str = "operator";
const EXTERNAL_PASSWORD: &str = "external-secret";

impl ExternalServer {
    async fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let output = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let child = Command::new(binary)
            .current_dir(dir.path())
            .env("IGGY_CONFIG_PATH", dir.path().join("server.toml"))
            .env("IGGY_SYSTEM_PATH", dir.path().join("data"))
            .env("IGGY_ROOT_USERNAME", EXTERNAL_USER)
            .env("IGGY_ROOT_PASSWORD", EXTERNAL_PASSWORD)
            .env("IGGY_TCP_ENABLED", "true")
            .env("IGGY_TCP_ADDRESS", &address)
            .env("IGGY_HTTP_ENABLED", "false")
            .env("IGGY_QUIC_ENABLED", "false")
            .env("IGGY_WEBSOCKET_ENABLED", "false")
            .env("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            address,
            _dir: dir,
        };
        server.wait_ready().await;
        server
    }

    fn connection(&self) -> Connection {
        Connection {
            address: self.address.clone(),
            username: EXTERNAL_USER.into(),
            password: EXTERNAL_PASSWORD.into(),
            fsyncs_each_send: false,
        }
    }

    /// Waits until a client can log in.
    async fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if IggyLog::connect(&self.connection(), LogOptions::default())
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "iggy-server exited ({status}): {}",
                    std::fs::read_to_string(self._dir.path().join("output.log"))
                        .unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "iggy-server did not accept a login"
            );
        }
    }
}

impl Drop for ExternalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vibesd_runs_on_an_external_iggy_server_and_records_its_address() {
    let Some(binary) = iggy_server("vibesd on an external iggy-server") else {
        return;
    };
    let server = ExternalServer::start(&binary).await;
    let (_config_dir, config) = config_file(&format!(
        "[iggy]\naddress = {:?}\nusername = {EXTERNAL_USER:?}\npassword = {EXTERNAL_PASSWORD:?}\n",
        server.address
    ));
    let mut daemon = Daemon::start(&["--backend", "auto", "--config", &config]);
    let body = status(&daemon).await;
    assert_eq!(body["backend"], "iggy", "{body}");
    assert_eq!(body["iggy"]["managed"], false, "{body}");
    assert_eq!(body["iggy"]["address"], server.address.as_str(), "{body}");
    append(&daemon, 3).await;
    assert!(daemon.sigterm().success(), "{}", daemon.logs());
    let recorded = record(&daemon.data_dir);
    assert!(
        recorded.contains(&format!("address = {:?}", server.address)),
        "{recorded}"
    );
    assert!(
        !daemon.path("iggy").exists(),
        "a managed server was started"
    );

    // The events are on the server, where vibesd finds them again.
    let log = IggyLog::connect(&server.connection(), LogOptions::default())
        .await
        .unwrap();
    assert_eq!(log.high_water_mark().await.unwrap(), 3);
    daemon.restart();
    assert_eq!(daemon.client().high_water_mark().await, 3);
    assert!(daemon.sigterm().success(), "{}", daemon.logs());

    // Another address is another log: refused.
    let (_other_dir, other) = config_file(&format!(
        "[iggy]\naddress = \"127.0.0.1:9\"\nusername = {EXTERNAL_USER:?}\npassword = {EXTERNAL_PASSWORD:?}\n"
    ));
    let error = error_line(&vibesd(&daemon.data_dir, &["serve", "--config", &other]));
    assert!(
        error.contains(&format!("external iggy-server at {}", server.address))
            && error.contains("vibesd migrate"),
        "{error}"
    );
}
