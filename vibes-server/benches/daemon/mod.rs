//! The real vibesd for the benchmarks: release build, embedded store, a
//! fresh data directory, every group live.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running vibesd; killed when dropped.
pub(crate) struct Vibesd {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl Vibesd {
    /// Starts it and waits until it listens.
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vibesd"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--backend",
                "embedded",
                "--data-dir",
            ])
            .arg(dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
            .env("VIBESD_LOG", "warn,vibes_server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vibesd starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("vibesd exited before listening")
                .expect("a line");
            if let Some(at) = line.find("listening on http://") {
                break line[at + "listening on ".len()..]
                    .split_whitespace()
                    .next()
                    .expect("a url")
                    .to_owned();
            }
        };
        // Keep draining its logs.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            url,
            _dir: dir,
        }
    }

    // Only the memory benchmark reads it.
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Vibesd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
