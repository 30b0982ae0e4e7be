//! [`IggyManager`]: `iggy-server` as a subprocess of vibesd.
//!
//! - The server keeps its data in `<data_dir>/iggy` (its `system.path`), next
//!   to `credentials` (mode 0600): the root user and a random password,
//!   generated on the first start and reused after. `vibesd.lock` in the same
//!   directory keeps a second vibesd from running a second server on it.
//! - It is configured through `IGGY_*` environment variables (see
//!   [`server_env`]): TCP only, on 127.0.0.1 (port 0 picks a free one, read
//!   back from `runtime/current_config.toml`, the file the server writes once
//!   it listens); HTTP, QUIC and WebSocket off, so they never collide with
//!   anything; one CPU shard unless `IGGY_SYSTEM_SHARDING_CPU_ALLOCATION` is
//!   already set; every batch written and fsynced as it arrives (see
//!   `iggy/log.rs`); no log file (its output goes to `tracing`, target
//!   `iggy_server`). [`IggyConfig::server_env`] adds or overrides variables;
//!   an operator may also add a config file at `<data_dir>/iggy/server.toml`,
//!   which every variable overrides.
//! - Before every start, `iggy/repair.rs` cuts off what a killed server
//!   wrote but never indexed (and never acknowledged).
//! - Start-up waits until a client can connect and log in. Failures say what
//!   to do: missing binary, port taken, io_uring unavailable or its locked
//!   memory limit too low, or the server's own last words.
//! - A supervising task owns the child and restarts it with exponential
//!   back-off (100 ms to 30 s) if it exits unexpectedly, on the same port so
//!   that clients reconnect. [`IggyManager::stop`] sends SIGTERM, waits up to
//!   10 s, then kills. The child is also killed if the supervisor is dropped
//!   (`kill_on_drop`) and, on Linux, when vibesd dies (`PR_SET_PDEATHSIG`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use iggy::prelude::IggyError;
use rand::Rng;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::repair::repair_partitions;
use super::session::Session;
use super::{Connection, IggyConfig};
use crate::{BackendKind, LogError};

/// The binary looked up on `PATH` when none is configured.
const BINARY_NAME: &str = "iggy-server";

/// How long the server may take to accept a login after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`IggyManager::stop`] waits after SIGTERM before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often start-up checks for readiness.
const STARTUP_POLL: Duration = Duration::from_millis(25);
/// Restart back-off bounds.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A server that ran this long before exiting restarts without back-off
/// history: it was not crash-looping.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How many of the server's last output lines are kept for error messages.
const KEPT_LINES: usize = 80;
/// How many of those an error message shows.
const SHOWN_LINES: usize = 25;

/// The root user vibesd creates on a managed server.
const ROOT_USERNAME: &str = "vibesd";
const PASSWORD_LENGTH: usize = 32;

/// What went wrong running `iggy-server`; wrapped in
/// [`LogError::Unavailable`] with the action "start iggy-server".
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(
        "iggy-server binary {path} does not exist: install iggy-server there or fix \
         iggy.server_binary"
    )]
    BinaryMissing { path: PathBuf },

    #[error(
        "no iggy-server binary on PATH: install it, set iggy.server_binary, or choose the \
         embedded backend"
    )]
    BinaryNotFound,

    #[error("cannot run iggy-server binary {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot prepare iggy's data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the credentials file {path} is unreadable: {reason}; delete it only together with the iggy data next to it"
    )]
    CredentialsFile { path: PathBuf, reason: String },

    #[error(
        "iggy-server's tcp address {address} is already in use: stop whatever listens there \
         or set iggy.tcp_port to another port (0 picks a free one)"
    )]
    PortInUse { address: String },

    #[error(
        "iggy-server cannot lock enough memory for io_uring (RLIMIT_MEMLOCK is too low): \
         raise it, e.g. LimitMEMLOCK=infinity in the systemd unit or `ulimit -l unlimited`, \
         or choose the embedded backend; its last output:\n{output}"
    )]
    MemlockTooLow { output: String },

    #[error(
        "iggy-server needs io_uring, which this system refuses it (kernel older than 5.19, \
         io_uring disabled by sysctl kernel.io_uring_disabled, or blocked by seccomp in a \
         container): enable it or choose the embedded backend; its last output:\n{output}"
    )]
    IoUringUnavailable { output: String },

    #[error("iggy-server exited during start-up ({status}); its last output:\n{output}")]
    ExitedDuringStartup { status: String, output: String },

    #[error("iggy-server did not accept a login within {timeout:?}; its last output:\n{output}")]
    StartupTimeout { timeout: Duration, output: String },

    #[error(
        "iggy-server refused the credentials in {path}: its data in {data} was created with \
         other ones; restore that file or move the data away"
    )]
    Credentials {
        path: PathBuf,
        data: PathBuf,
        #[source]
        source: Box<IggyError>,
    },
}

impl From<ManagerError> for LogError {
    fn from(err: ManagerError) -> Self {
        LogError::unavailable(BackendKind::Iggy, "start iggy-server", err)
    }
}

/// The managed server as the actor tree and `/metrics` show it; cheap to
/// clone, read without waiting.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    address: String,
    pid: watch::Receiver<Option<u32>>,
    restarts: Arc<AtomicU64>,
}

impl ServerStatus {
    /// The server's TCP address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The running server's pid; `None` while it is down (between a crash
    /// and its restart, or once stopped).
    pub fn pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// Whether a server process runs.
    pub fn up(&self) -> bool {
        self.pid().is_some()
    }

    /// Restarts after the server exited unexpectedly.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

/// A running `iggy-server` and the task that keeps it running.
#[derive(Debug)]
pub struct IggyManager {
    connection: Connection,
    /// `<data_dir>/iggy`: the server's data.
    dir: PathBuf,
    /// The running server's pid, `None` between a crash and its restart;
    /// published by the supervisor.
    pid: watch::Receiver<Option<u32>>,
    /// Restarts after the server exited unexpectedly; counted by the
    /// supervisor.
    restarts: Arc<AtomicU64>,
    /// Asks the supervisor to stop the server; taken by [`Self::stop`].
    stop: Option<oneshot::Sender<()>>,
    /// The supervisor, which owns the child. Awaited by [`Self::stop`],
    /// aborted on drop (which kills the child).
    supervisor: Option<JoinHandle<()>>,
    /// Held while the manager lives: one server per data directory.
    _lock: File,
}

impl IggyManager {
    /// The binary to run: `iggy.server_binary` if set (whether or not it
    /// exists: [`Self::start`] says so), else `iggy-server` on `PATH`.
    pub fn find_binary(config: &IggyConfig) -> Option<PathBuf> {
        if let Some(path) = &config.server_binary {
            return Some(path.clone());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(BINARY_NAME))
            .find(|candidate| is_executable(candidate))
    }

    /// Starts `iggy-server` with its data in `<data_dir>/iggy` and returns
    /// once it accepts logins.
    pub async fn start(config: &IggyConfig, data_dir: &Path) -> Result<Self, LogError> {
        let binary = match Self::find_binary(config) {
            Some(path) if is_executable(&path) => path,
            Some(path) => return Err(ManagerError::BinaryMissing { path }.into()),
            None => return Err(ManagerError::BinaryNotFound.into()),
        };
        let dir = data_dir.join("iggy");
        fs::create_dir_all(&dir).map_err(|source| ManagerError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let lock = lock(&dir)?;
        let credentials = Credentials::load_or_create(&dir.join("credentials"))?;

        let requested = format!("127.0.0.1:{}", config.tcp_port);
        if config.tcp_port != 0 {
            // The server would only say so in its log; this says it at once.
            if let Err(err) = TcpListener::bind(&requested)
                && err.kind() == io::ErrorKind::AddrInUse
            {
                return Err(ManagerError::PortInUse { address: requested }.into());
            }
        }

        let server = Server {
            binary,
            dir: dir.clone(),
            credentials,
            extra_env: config.server_env.clone(),
            output: Arc::new(Output::default()),
        };
        let mut process = server
            .spawn(&requested)
            .map_err(|source| ManagerError::Spawn {
                path: server.binary.clone(),
                source,
            })?;
        let address = match server.wait_ready(&mut process, &requested).await {
            Ok(address) => address,
            Err(err) => {
                process.kill().await;
                return Err(err.into());
            }
        };
        tracing::info!(%address, pid = ?process.child.id(), dir = %dir.display(), "iggy-server is ready");

        let connection = Connection {
            address: address.clone(),
            username: server.credentials.username.clone(),
            password: server.credentials.password.clone(),
            fsyncs_each_send: server.fsyncs_each_send(),
        };
        let (pid_sender, pid) = watch::channel(process.child.id());
        let (stop, stop_requested) = oneshot::channel();
        let restarts = Arc::new(AtomicU64::new(0));
        let supervisor = tokio::spawn(server.supervise(
            process,
            address,
            pid_sender,
            restarts.clone(),
            stop_requested,
        ));
        Ok(Self {
            connection,
            dir,
            pid,
            restarts,
            stop: Some(stop),
            supervisor: Some(supervisor),
            _lock: lock,
        })
    }

    /// How to reach the server.
    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// The server's data directory, `<data_dir>/iggy`.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The running server's process id; `None` while it is being restarted.
    pub fn server_pid(&self) -> Option<u32> {
        *self.pid.borrow()
    }

    /// A view of the server that outlives no one and asks nothing: its
    /// address, pid and restarts, read as they change.
    pub fn status(&self) -> ServerStatus {
        ServerStatus {
            address: self.connection.address.clone(),
            pid: self.pid.clone(),
            restarts: self.restarts.clone(),
        }
    }

    /// Waits until a server runs whose pid is not `old` (after a crash and
    /// restart), or `timeout` passes; returns the new pid.
    pub async fn wait_for_restart(&self, old: u32, timeout: Duration) -> Option<u32> {
        let mut pid = self.pid.clone();
        let restarted = pid.wait_for(|pid| pid.is_some_and(|pid| pid != old));
        match tokio::time::timeout(timeout, restarted).await {
            Ok(Ok(pid)) => *pid,
            _ => None,
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(supervisor) = self.supervisor.take()
            && let Err(err) = supervisor.await
        {
            tracing::error!(error = %err, "iggy-server supervisor failed");
        }
    }
}

impl Drop for IggyManager {
    fn drop(&mut self) {
        // Not stopped: abort the supervisor, whose child is killed when the
        // aborted task drops it.
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn lock(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("vibesd.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ManagerError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked {
            path: dir.to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(ManagerError::DataDir { path, source }.into()),
    }
}

/// The root user of the managed server, kept in `<data_dir>/iggy/credentials`.
#[derive(Clone, Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the file, or creates it (mode 0600) with a random password.
    fn load_or_create(path: &Path) -> Result<Self, ManagerError> {
        let unreadable = |reason: String| ManagerError::CredentialsFile {
            path: path.to_owned(),
            reason,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path)
                    .map_err(|err| unreadable(err.to_string()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "credentials file was readable by others; making it 0600");
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                        .map_err(|err| unreadable(err.to_string()))?;
                }
                let credentials: Self =
                    toml::from_str(&text).map_err(|err| unreadable(err.to_string()))?;
                if credentials.username.len() < 3 || credentials.password.len() < 3 {
                    return Err(unreadable(
                        "username or password is shorter than 3 characters".into(),
                    ));
                }
                Ok(credentials)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let credentials = Self {
                    username: ROOT_USERNAME.to_owned(),
                    password: rand::rng()
                        .sample_iter(rand::distr::Alphanumeric)
                        .take(PASSWORD_LENGTH)
                        .map(char::from)
                        .collect(),
                };
                credentials
                    .write_new(path)
                    .map_err(|err| unreadable(format!("cannot create it: {err}")))?;
                tracing::info!(path = %path.display(), "generated credentials for the managed iggy-server");
                Ok(credentials)
            }
            Err(err) => Err(unreadable(err.to_string())),
        }
    }

    fn write_new(&self, path: &Path) -> io::Result<()> {
        // Alphanumeric values need no escaping in a TOML string.
        let text = format!(
            "# The root user of the iggy-server that vibesd manages, generated on its first\n\
             # start. Its data next to this file only opens with these: keep them together.\n\
             username = \"{}\"\npassword = \"{}\"\n",
            self.username, self.password
        );
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

/// The environment that configures the managed server.
fn server_env(
    dir: &Path,
    address: &str,
    credentials: &Credentials,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        (
            "IGGY_CONFIG_PATH",
            dir.join("server.toml").display().to_string(),
        ),
        ("IGGY_SYSTEM_PATH", dir.display().to_string()),
        ("IGGY_ROOT_USERNAME", credentials.username.clone()),
        ("IGGY_ROOT_PASSWORD", credentials.password.clone()),
        ("IGGY_TCP_ENABLED", "true".into()),
        ("IGGY_TCP_ADDRESS", address.into()),
        ("IGGY_HTTP_ENABLED", "false".into()),
        ("IGGY_QUIC_ENABLED", "false".into()),
        ("IGGY_WEBSOCKET_ENABLED", "false".into()),
        // Durability: every batch is written and fsynced before the server
        // answers the send; see iggy/log.rs.
        (
            "IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE",
            "1".into(),
        ),
        ("IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC", "true".into()),
        ("IGGY_SYSTEM_STATE_ENFORCE_FSYNC", "true".into()),
        // Its output goes to tracing; a second copy on disk is waste.
        ("IGGY_SYSTEM_LOGGING_FILE_ENABLED", "false".into()),
        ("IGGY_SYSTEM_LOGGING_SYSINFO_PRINT_INTERVAL", "0s".into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    // One shard is plenty for one partition, and fits a 2-core machine.
    if std::env::var_os("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION").is_none() {
        env.push(("IGGY_SYSTEM_SHARDING_CPU_ALLOCATION".into(), "1".into()));
    }
    // Later entries win when the command's environment is built.
    env.extend(extra.iter().cloned());
    env
}

/// The last lines the server printed, for error messages.
#[derive(Debug, Default)]
struct Output {
    lines: Mutex<VecDeque<String>>,
}

impl Output {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn all(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }

    fn clear(&self) {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The last few lines, indented, for an error message.
    fn tail(&self) -> String {
        let lines = self.all();
        let shown = &lines[lines.len().saturating_sub(SHOWN_LINES)..];
        if shown.is_empty() {
            return "  (nothing)".into();
        }
        shown
            .iter()
            .map(|line| format!("  {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Why a server that exited during start-up did, judged by what it said.
fn startup_failure(status: ExitStatus, address: &str, output: &Output) -> ManagerError {
    let text = output.all().join("\n");
    let tail = output.tail();
    if text.contains("Cannot bind to socket") || text.contains("Address already in use") {
        ManagerError::PortInUse {
            address: address.to_owned(),
        }
    } else if text.contains("Locked Memory Limit") || text.contains("RLIMIT_MEMLOCK") {
        ManagerError::MemlockTooLow { output: tail }
    } else if text.contains("io_uring") || text.contains("Cannot create runtime") {
        ManagerError::IoUringUnavailable { output: tail }
    } else {
        ManagerError::ExitedDuringStartup {
            status: status.to_string(),
            output: tail,
        }
    }
}

/// The part of `runtime/current_config.toml` that says where the server
/// listens.
#[derive(Debug, Deserialize)]
struct CurrentConfig {
    tcp: CurrentTcp,
}

#[derive(Debug, Deserialize)]
struct CurrentTcp {
    address: String,
}

/// How to run the server; shared by the first start and the restarts.
#[derive(Debug)]
struct Server {
    binary: PathBuf,
    dir: PathBuf,
    credentials: Credentials,
    /// [`IggyConfig::server_env`].
    extra_env: Vec<(String, String)>,
    output: Arc<Output>,
}

/// One run of the server.
#[derive(Debug)]
struct Process {
    child: Child,
    /// The tasks that forward its stdout and stderr; they end at EOF.
    forwarders: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Process {
    /// Kills the server at once and waits for it.
    async fn kill(&mut self) {
        if let Err(err) = self.child.kill().await {
            tracing::warn!(error = %err, "cannot kill iggy-server");
        }
        self.finish_output().await;
    }

    /// SIGTERM, then SIGKILL if it is still running after [`STOP_TIMEOUT`].
    async fn terminate(&mut self) {
        let Some(pid) = self.child.id() else {
            return; // Already reaped.
        };
        if let Err(err) = sigterm(pid) {
            tracing::warn!(error = %err, pid, "cannot send SIGTERM to iggy-server; killing it");
            self.kill().await;
            return;
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => tracing::info!(%status, "iggy-server stopped"),
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot wait for iggy-server"),
            Err(_) => {
                tracing::warn!(timeout = ?STOP_TIMEOUT, "iggy-server did not stop after SIGTERM; killing it");
                self.kill().await;
            }
        }
        self.finish_output().await;
    }

    /// Waits briefly for the forwarders to pass on the last lines.
    async fn finish_output(&mut self) {
        for forwarder in self.forwarders.drain(..) {
            let abort = forwarder.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), forwarder)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        for forwarder in &self.forwarders {
            forwarder.abort();
        }
    }
}

impl Server {
    /// Whether the server writes and fsyncs each batch as it arrives: as
    /// [`server_env`] sets it up, unless `server_env` in the config changes
    /// how partitions are saved.
    fn fsyncs_each_send(&self) -> bool {
        !self
            .extra_env
            .iter()
            .any(|(key, _)| key.starts_with("IGGY_SYSTEM_PARTITION_"))
    }

    fn current_config_path(&self) -> PathBuf {
        self.dir.join("runtime").join("current_config.toml")
    }

    /// Spawns the server listening on `address`.
    fn spawn(&self, address: &str) -> io::Result<Process> {
        // A server killed mid-write leaves a tail it would trip over.
        repair_partitions(&self.dir);
        // A file left by an earlier run would announce the wrong address.
        match fs::remove_file(self.current_config_path()) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut command = Command::new(&self.binary);
        command
            .envs(server_env(
                &self.dir,
                address,
                &self.credentials,
                &self.extra_env,
            ))
            // Its relative default paths and `.env` lookup start here.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        self.output.clear();
        let mut forwarders = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            forwarders.push(tokio::spawn(forward(stdout, self.output.clone(), false)));
        }
        if let Some(stderr) = child.stderr.take() {
            forwarders.push(tokio::spawn(forward(stderr, self.output.clone(), true)));
        }
        Ok(Process {
            child,
            forwarders,
            started: Instant::now(),
        })
    }

    /// Waits until the server accepts a login; returns its address.
    async fn wait_ready(
        &self,
        process: &mut Process,
        requested: &str,
    ) -> Result<String, ManagerError> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut address = None;
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                process.finish_output().await;
                return Err(startup_failure(status, requested, &self.output));
            }
            if address.is_none() {
                address = fs::read_to_string(self.current_config_path())
                    .ok()
                    .and_then(|text| toml::from_str::<CurrentConfig>(&text).ok())
                    .map(|config| config.tcp.address);
            }
            if let Some(address) = &address {
                let connection = Connection {
                    address: address.clone(),
                    username: self.credentials.username.clone(),
                    password: self.credentials.password.clone(),
                    fsyncs_each_send: false,
                };
                match Session::open(&connection, Instant::now() + Duration::from_millis(500)).await
                {
                    Ok(_session) => return Ok(address.clone()),
                    Err(
                        source @ (IggyError::InvalidCredentials
                        | IggyError::InvalidUsername
                        | IggyError::InvalidPassword
                        | IggyError::UserInactive),
                    ) => {
                        return Err(ManagerError::Credentials {
                            path: self.dir.join("credentials"),
                            data: self.dir.clone(),
                            source: Box::new(source),
                        });
                    }
                    Err(err) => tracing::debug!(error = %err, "iggy-server not ready yet"),
                }
            }
            if Instant::now() >= deadline {
                return Err(ManagerError::StartupTimeout {
                    timeout: STARTUP_TIMEOUT,
                    output: self.output.tail(),
                });
            }
            tokio::time::sleep(STARTUP_POLL).await;
        }
    }

    /// Owns the server: restarts it when it exits unexpectedly, stops it
    /// when asked.
    async fn supervise(
        self,
        mut process: Process,
        address: String,
        pid: watch::Sender<Option<u32>>,
        restarts: Arc<AtomicU64>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let status = tokio::select! {
                _ = &mut stop => {
                    process.terminate().await;
                    pid.send_replace(None);
                    return;
                }
                status = process.child.wait() => status,
            };
            process.finish_output().await;
            pid.send_replace(None);
            if process.started.elapsed() >= STABLE_RUN {
                backoff = FIRST_BACKOFF;
            }
            match status {
                Ok(status) => tracing::error!(
                    %status,
                    restart_in = ?backoff,
                    "iggy-server exited unexpectedly; its last output:\n{}",
                    self.output.tail()
                ),
                Err(err) => {
                    tracing::error!(error = %err, restart_in = ?backoff, "lost track of iggy-server")
                }
            }
            // Restart, backing off, until a spawn succeeds or stop is asked.
            process = loop {
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                match self.spawn(&address) {
                    Ok(process) => break process,
                    Err(err) => tracing::error!(
                        error = %err,
                        binary = %self.binary.display(),
                        retry_in = ?backoff,
                        "cannot restart iggy-server"
                    ),
                }
            };
            tracing::warn!(pid = ?process.child.id(), %address, "iggy-server restarted");
            restarts.fetch_add(1, Ordering::Relaxed);
            pid.send_replace(process.child.id());
        }
    }
}

/// Passes each line the server prints to `tracing` (target `iggy_server`)
/// at the level the line names, and keeps it for error messages.
async fn forward(stream: impl AsyncRead + Unpin, output: Arc<Output>, stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => strip_ansi(&line),
            Ok(None) => return,
            Err(err) => {
                tracing::debug!(error = %err, "stopped reading iggy-server output");
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match log_level(&line) {
            Some((level, message)) => match level {
                "ERROR" => tracing::error!(target: "iggy_server", "{message}"),
                // vibesd configures the server through variables, so a
                // missing config file is expected, not a warning.
                "WARN" if message.contains("Configuration file not found") => {
                    tracing::debug!(target: "iggy_server", "{message}");
                }
                "WARN" => tracing::warn!(target: "iggy_server", "{message}"),
                "INFO" => tracing::info!(target: "iggy_server", "{message}"),
                "DEBUG" => tracing::debug!(target: "iggy_server", "{message}"),
                _ => tracing::trace!(target: "iggy_server", "{message}"),
            },
            // Panics and diagnostics go to stderr unformatted; the banner
            // to stdout.
            None if stderr => tracing::warn!(target: "iggy_server", "{line}"),
            None => tracing::debug!(target: "iggy_server", "{line}"),
        }
        output.push(line);
    }
}

/// Splits `2026-01-01T00:00:00.000000Z  INFO thread target: message` into
/// its level and the rest.
fn log_level(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start();
    let (timestamp, rest) = rest.split_once(char::is_whitespace)?;
    if !timestamp.starts_with(|c: char| c.is_ascii_digit()) || !timestamp.contains('T') {
        return None;
    }
    let rest = rest.trim_start();
    let (level, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE")
        .then(|| (level, message.trim_start()))
}

/// Removes terminal colour codes (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes the kernel kill the child when the thread that spawned it (a
/// runtime worker, which lives as long as vibesd's runtime) exits, so that
/// a crashed vibesd leaves no server behind.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: prctl(2) and getppid(2) are plain
    // system calls, and the closure neither allocates nor takes locks
    // (`last_os_error` and `from_raw_os_error` only read errno / wrap an
    // integer).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Asks the server to shut down cleanly.
#[allow(unsafe_code)]
fn sigterm(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our
    // child's, which is not reaped yet (its `Child` has not seen it exit),
    // so it cannot name another process.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing test should stop at the failure.
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_split_into_level_and_message() {
        let line = strip_ansi(
            "\u{1b}[2m2026-11-24T14:42:44.234894Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m main \
             \u{1b}[2miggy_common::alloc\u{1b}[0m\u{1b}[2m:\u{1b}[0m Initializing",
        );
        assert_eq!(
            log_level(&line),
            Some(("INFO", "main iggy_common::alloc: Initializing"))
        );
        assert_eq!(log_level(" ___  ____ "), None);
        assert_eq!(log_level("thread 'main' panicked at x"), None);
    }

    fn output(lines: &[&str]) -> Output {
        let output = Output::default();
        for line in lines {
            output.push((*line).to_owned());
        }
        output
    }

    #[test]
    fn startup_failures_are_recognised_from_the_output() {
        use std::os::unix::process::ExitStatusExt;
        let status = ExitStatus::from_raw(0);
        let port = output(&[
            "2026-11-24T14:43:00Z ERROR shard-0 x: Cannot bind to socket with addr: 127.0.0.1:5",
        ]);
        assert!(matches!(
            startup_failure(status, "127.0.0.1:5", &port),
            ManagerError::PortInUse { .. }
        ));
        let memlock = output(&[
            "=== Locked Memory Limit Information ===",
            "Current soft limit: 8 KB",
        ]);
        let err = startup_failure(status, "a", &memlock);
        assert!(matches!(err, ManagerError::MemlockTooLow { .. }));
        assert!(err.to_string().contains("LimitMEMLOCK"), "{err}");
        let uring = output(&["=== io_uring Permission Denied ==="]);
        let err = startup_failure(status, "a", &uring);
        assert!(matches!(err, ManagerError::IoUringUnavailable { .. }));
        assert!(err.to_string().contains("io_uring"), "{err}");
        let other = output(&["thread 'main' panicked at core/server/src/bootstrap.rs: boom"]);
        let err = startup_failure(status, "a", &other);
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn credentials_are_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let first = Credentials::load_or_create(&path).unwrap();
        assert_eq!(first.password.len(), PASSWORD_LENGTH);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Credentials::load_or_create(&path).unwrap();
        assert_eq!(
            (again.username, again.password),
            (first.username, first.password)
        );
    }
}
