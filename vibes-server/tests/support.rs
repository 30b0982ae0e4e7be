//! Runs the real `vibesd` binary for black-box tests: on port 0, with a
//! temporary data directory, stopped with real signals.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any condition may take before a test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// A running `vibesd serve`.
pub(crate) struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub(crate) url: String,
    pub(crate) data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    args: Vec<String>,
    /// Extra environment variables for vibesd, set after the defaults.
    env: Vec<(String, String)>,
    /// The file descriptor limit (`ulimit -n`) vibesd runs under, if set.
    nofile: Option<u32>,
    /// Every line vibesd wrote on stderr so far (filled by a thread).
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts vibesd on the embedded store in a fresh data directory, with
    /// `args` added to its command line.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Daemon::start`], with `env` added to vibesd's environment.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut daemon = Self {
            child: None,
            url: String::new(),
            data_dir: temp.path().to_owned(),
            _temp: Some(temp),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            nofile: None,
            logs: Default::default(),
        };
        daemon.spawn();
        daemon
    }

    /// Like [`Daemon::start`], with vibesd limited to `nofile` open files.
    pub(crate) fn start_with_nofile(args: &[&str], nofile: u32) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let mut daemon = Self {
            child: None,
            url: String::new(),
            data_dir: temp.path().to_owned(),
            _temp: Some(temp),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: Vec::new(),
            nofile: Some(nofile),
            logs: Default::default(),
        };
        daemon.spawn();
        daemon
    }

    /// Starts vibesd on the embedded store in `data_dir`, which the caller
    /// owns (a file system it mounted, say).
    pub(crate) fn start_in(data_dir: &std::path::Path) -> Self {
        let mut daemon = Self {
            child: None,
            url: String::new(),
            data_dir: data_dir.to_owned(),
            _temp: None,
            args: Vec::new(),
            env: Vec::new(),
            nofile: None,
            logs: Default::default(),
        };
        daemon.spawn();
        daemon
    }

    /// Starts it again on the same data directory with other `args`.
    pub(crate) fn restart_with(&mut self, args: &[&str]) {
        self.args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self.restart();
    }

    /// Starts it again on the same data directory (after a stop or kill).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// Starts it again on the same data directory with other `args`.
    pub(crate) fn restart_with_args(mut self, args: &[&str]) -> Self {
        assert!(self.child.is_none(), "stop it first");
        self.args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self.spawn();
        self
    }

    fn spawn(&mut self) {
        // Under a watchdog, systemd names the watched process in
        // WATCHDOG_PID, which must be vibesd's own.
        let watched = self.env.iter().any(|(name, _)| name == "WATCHDOG_USEC");
        let mut command = serve_in_shell(&self.data_dir, &self.args, self.nofile, watched);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = found.send(url);
                }
                logs.lock().unwrap().push(line);
            }
        });
        match listening.recv_timeout(DEADLINE) {
            Ok(url) => self.url = url,
            Err(_) => panic!("vibesd did not start:\n{}", self.logs()),
        }
        self.child = Some(child);
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGKILL, and wait for it to be gone.
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and its exit status.
    pub(crate) fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY-free: a plain kill(2) of our own child.
        let pid = child.id() as libc::pid_t;
        assert_eq!(unsafe_kill(pid, libc::SIGTERM), 0);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vibesd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running daemon's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Its memory as the kernel counts it, in bytes: resident now
    /// (`VmRSS`) and the peak so far (`VmHWM`).
    pub(crate) fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status"))
                * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.data_dir.join(relative)
    }

    pub(crate) fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            token: None,
        }
    }
}

/// `vibesd serve` on `data_dir` with `args`, on port 0 and the embedded
/// store unless `args` say otherwise; stderr piped, stdout dropped.
pub(crate) fn serve(data_dir: &std::path::Path, args: &[String]) -> Command {
    serve_in_shell(data_dir, args, None, false)
}

/// [`serve`], under a limit of `nofile` open files when one is given, and
/// with `WATCHDOG_PID` set to vibesd's pid when `watched`.
fn serve_in_shell(
    data_dir: &std::path::Path,
    args: &[String],
    nofile: Option<u32>,
    watched: bool,
) -> Command {
    let mut command = if nofile.is_some() || watched {
        // The shell sets the limit (and the pid systemd would name) and
        // execs vibesd in its place, so the child's pid is vibesd's and
        // signals reach it.
        let mut script = String::new();
        if nofile.is_some() {
            script.push_str("ulimit -n \"$0\" && ");
        }
        if watched {
            script.push_str("export WATCHDOG_PID=$$ && ");
        }
        script.push_str("exec \"$@\"");
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(script)
            .arg(nofile.unwrap_or_default().to_string())
            .arg(env!("CARGO_BIN_EXE_vibesd"));
        shell
    } else {
        Command::new(env!("CARGO_BIN_EXE_vibesd"))
    };
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        // Nothing from the environment of the test run leaks in.
        .env_remove("VIBESD_CONFIG")
        .env_remove("VIBESD_TOKEN")
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
        .env("VIBESD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if !args.iter().any(|arg| arg == "--bind") {
        command.args(["--bind", "127.0.0.1:0"]);
    }
    if !args.iter().any(|arg| arg == "--backend") {
        command.args(["--backend", "embedded"]);
    }
    command
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: libc::pid_t, signal: libc::c_int) -> libc::c_int {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, signal) }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) rss: u64,
    pub(crate) peak: u64,
}

/// A plain HTTP client of one daemon.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl Client {
    pub(crate) fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// GET `path`: status and JSON body.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .auth(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POST raw bytes as JSON: status and JSON body.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .auth(self.http.post(format!("{}{path}", self.url)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, serde_json::to_vec(body).unwrap()).await
    }

    /// The group `name` as `/api/groups` shows it.
    pub(crate) async fn group(&self, name: &str) -> Value {
        let (status, groups) = self.get("/api/groups").await;
        assert_eq!(status, 200, "{groups}");
        groups
            .as_array()
            .and_then(|groups| groups.iter().find(|group| group["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no group {name} in {groups}"))
    }

    pub(crate) async fn high_water_mark(&self) -> u64 {
        let (status, body) = self.get("/api/status").await;
        assert_eq!(status, 200, "{body}");
        body["high_water_mark"].as_u64().unwrap()
    }
}

/// Waits until `condition` holds, checking every few milliseconds.
pub(crate) async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `user_input` event as JSON.
pub(crate) fn user_input(session: &str, content: &str) -> Value {
    serde_json::json!({
        "type": "user_input", "session_id": session, "content": content, "source": "test"
    })
}
