//! vibesd under systemd: the shipped unit passes `systemd-analyze verify`,
//! and the daemon speaks the notify protocol (READY, WATCHDOG, STOPPING) to
//! a socket the test binds where systemd's would be.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{DEADLINE, Daemon};

/// The unit as shipped, from the repository.
fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/vibesd.service");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = unit();
    for needed in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/local/bin/vibesd serve",
        "WatchdogSec=",
        "StateDirectory=vibes",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
    // The connection cap leaves files for the log under the unit's limit.
    let nofile: usize = unit
        .lines()
        .find_map(|line| line.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE=")
        .parse()
        .unwrap();
    let cap = vibes_server::config::Limits::default().max_connections;
    assert!(
        nofile >= 2 * cap,
        "LimitNOFILE={nofile} for {cap} connections"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("VIBESD_SKIP_SYSTEMD_VERIFY").is_some(),
            "systemd-analyze is not installed (apt-get install systemd, as .ci/run does); \
             set VIBESD_SKIP_SYSTEMD_VERIFY=1 to skip this check"
        );
        return;
    }
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vibesd.service");
    let unit = unit.replace("/usr/local/bin/vibesd", env!("CARGO_BIN_EXE_vibesd"));
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // A setting systemd cannot parse is only a warning ("ignoring"), and the
    // exit status stays 0: any line about our unit is a failure.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("vibesd.service"))
        .collect();
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

/// The notify socket systemd would give vibesd.
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    pub(crate) path: String,
}

impl NotifySocket {
    pub(crate) fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            socket,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// Reads messages until one has the line `line`; returns everything read.
    pub(crate) fn wait_for(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buffer) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    let found = message.lines().any(|l| l == line);
                    seen.push(message);
                    if found {
                        return seen;
                    }
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(err) => panic!("notify socket: {err}"),
            }
            assert!(
                Instant::now() < deadline,
                "no {line} from vibesd; got {seen:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vibesd_says_ready_once_it_listens_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind();
    let mut daemon = Daemon::start_with_env(&[], &[("NOTIFY_SOCKET", &notify.path)]);
    let seen = notify.wait_for("READY=1");
    assert!(!seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:?}");
    // READY comes once the API listens.
    let (status, _) = daemon.client().get("/api/status").await;
    assert_eq!(status, 200);

    let status = daemon.sigterm();
    assert!(status.success(), "{status}\n{}", daemon.logs());
    notify.wait_for("STOPPING=1");
}

#[test]
fn vibesd_feeds_the_watchdog_while_its_actors_answer() {
    let notify = NotifySocket::bind();
    let data = tempfile::tempdir().unwrap();
    // systemd names the watched process in WATCHDOG_PID, which must be
    // vibesd's own: the shell exports its pid and execs vibesd in its place.
    let child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" serve --backend memory --bind 127.0.0.1:0 --data-dir \"$1\"")
        .arg(env!("CARGO_BIN_EXE_vibesd"))
        .arg(data.path())
        .env("NOTIFY_SOCKET", &notify.path)
        // Fed every 250 ms.
        .env("WATCHDOG_USEC", "500000")
        .env("XDG_CONFIG_HOME", data.path().join("no-config"))
        .env_remove("VIBESD_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(child);
    notify.wait_for("READY=1");
    notify.wait_for("WATCHDOG=1");
    notify.wait_for("WATCHDOG=1");
}

/// Kills the child when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
