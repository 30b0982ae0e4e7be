//! A real `vibesd` on a real disk that fills up: a small tmpfs, filled with
//! a file and freed again. Mounting needs root (or a user namespace that
//! allows it); without it these tests say `skipped` and pass.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::firehose::{connect, frames_through, next_json};
use crate::support::{Client, Daemon, serve, user_input, wait_for};

/// A tmpfs of a few MiB mounted on a temporary directory, unmounted when
/// dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after saying so) when this machine does not let the test
    /// mount one.
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|output| output.status.success());
        if !mounted {
            // Straight to stderr: the harness captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test} (cannot mount a tmpfs here; it needs root)"
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file until the file system has no room left.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.path("filler")).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
        // A last flush may find the disk full too; the file is as big as
        // it gets either way.
        let _ = file.sync_all();
    }

    /// Gives the room back.
    fn free(&self) {
        std::fs::remove_file(self.path("filler")).unwrap();
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a vibesd the test killed may still be letting go.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `vibesd serve` on `data_dir` until it exits by itself: its stderr.
fn failed_start(data_dir: &Path) -> String {
    let output = serve(data_dir, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "vibesd started:\n{stderr}");
    stderr
}

/// Before: a full disk at start said the log "is unreadable", as if the
/// file were corrupt, when creating it had failed.
#[test]
fn a_full_disk_at_start_says_the_write_failed() {
    let Some(disk) = Tmpfs::mount("a_full_disk_at_start_says_the_write_failed", "1m") else {
        return;
    };
    disk.fill();
    let stderr = failed_start(&disk.path("data"));
    assert!(
        stderr.contains("cannot create the event log") && stderr.contains("disk is full"),
        "{stderr}"
    );
    assert!(!stderr.contains("unreadable"), "{stderr}");
}

/// Before: a data directory vibesd cannot write had its cause printed
/// twice; it must name the directory and the cause once.
#[test]
fn an_unwritable_data_dir_at_start_says_what_failed() {
    let Some(disk) = Tmpfs::mount("an_unwritable_data_dir_at_start_says_what_failed", "1m") else {
        return;
    };
    disk.read_only();
    let data_dir = disk.path("data");
    let stderr = failed_start(&data_dir);
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap();
    assert_eq!(
        line,
        format!(
            "error: cannot create the data directory {}: Read-only file system (os error 30)",
            data_dir.display()
        )
    );
}

async fn append(client: &Client, content: &str) -> (u16, Value) {
    client.post("/api/events", &user_input("s1", content)).await
}

/// Before: on a full disk the `websocket` group's commits failed it ten
/// times in a minute, it was marked `failed`, and the live firehose and
/// `/readyz` stayed down after the disk had room again, until an operator
/// restarted the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_a_running_daemon_heals_without_an_operator() {
    let Some(disk) = Tmpfs::mount(
        "a_full_disk_under_a_running_daemon_heals_without_an_operator",
        "16m",
    ) else {
        return;
    };
    let mut daemon = Daemon::start_in(&disk.path("data"));
    let client = daemon.client();
    wait_for("ready", || async { client.get("/readyz").await.0 == 200 }).await;
    let mut firehose = connect(&daemon, "/ws/firehose").await;
    let mut acknowledged = Vec::new();
    let (status, body) = append(&client, "before").await;
    assert_eq!(status, 200, "{body}");
    acknowledged.push("before".to_owned());
    assert_eq!(next_json(&mut firehose).await["event"]["content"], "before");

    // Events the firehose group has not committed yet when the disk fills.
    let (status, body) = client.post_raw("/api/groups/websocket/pause", "").await;
    assert_eq!(status, 200, "{body}");
    wait_for("the pause", || async {
        client.group("websocket").await["state"] == "paused"
    })
    .await;
    for content in ["queued 1", "queued 2"] {
        let (status, body) = append(&client, content).await;
        assert_eq!(status, 200, "{body}");
        acknowledged.push(content.to_owned());
    }
    let high_water_mark = client.high_water_mark().await;

    disk.fill();
    let (status, body) = append(&client, "on a full disk").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("log_unavailable")),
        "{body}"
    );
    assert_eq!(client.high_water_mark().await, high_water_mark);

    // Its commit fails: it backs off and says why, and is not failed.
    let (status, body) = client.post_raw("/api/groups/websocket/resume", "").await;
    assert_eq!(status, 200, "{body}");
    wait_for("the group to back off on the full disk", || async {
        let group = client.group("websocket").await;
        group["state"] == "backing_off"
            && group["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("disk is full"))
    })
    .await;
    wait_for("/readyz to name the problem", || async {
        let (status, body) = client.get("/readyz").await;
        status == 503 && body["problems"].to_string().contains("disk is full")
    })
    .await;

    // Room again, and nobody restarts anything.
    disk.free();
    wait_for("/readyz to be 200 again", || async {
        client.get("/readyz").await.0 == 200
    })
    .await;
    let websocket = client.group("websocket").await;
    assert_eq!(websocket["state"], "running", "{websocket}");
    assert_eq!(websocket["restarts"], 0, "{websocket}");
    let (status, body) = append(&client, "after").await;
    assert_eq!(status, 200, "{body}");
    acknowledged.push("after".to_owned());
    let live = loop {
        let frame = next_json(&mut firehose).await;
        if frame["event"]["content"] == "after" {
            break frame;
        }
    };
    let last = live["offset"].as_u64().unwrap();

    // Nothing acknowledged is lost, even to a kill -9.
    daemon.kill9();
    daemon.restart();
    let mut replay = connect(&daemon, "/ws/firehose?from=beginning").await;
    let stored: Vec<String> = frames_through(&mut replay, last)
        .await
        .iter()
        .filter_map(|frame| frame["event"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stored, acknowledged);
}
