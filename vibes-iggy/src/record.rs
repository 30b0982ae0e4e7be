//! Which backend a data directory's log lives on, recorded in the directory
//! itself (`<data_dir>/backend`), and the lock that keeps one vibesd at a
//! time on the directory (`<data_dir>/vibesd.lock`).
//!
//! The backend belongs to the data directory: it is chosen once, on the
//! first start, and every later start follows the record, so installing
//! `iggy-server` later never moves vibesd to a new, empty log. A directory
//! written before the record existed is recognised by what it holds
//! (`events.sqlite`: embedded; `iggy/`: a managed `iggy-server`) and
//! recorded on its next start. Moving a log is `vibesd migrate`.

use std::fmt;
use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::Path;

use serde::Deserialize;

use crate::{BackendKind, LogError};

/// The record's file name in the data directory.
pub const RECORD_FILE: &str = "backend";

/// The lock held by whoever uses the data directory's log.
pub const LOCK_FILE: &str = "vibesd.lock";

/// The directory a managed `iggy-server` keeps its data in.
pub const MANAGED_IGGY_DIR: &str = "iggy";

/// Where a data directory's log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `events.sqlite` in the data directory.
    Embedded,
    /// A managed `iggy-server` with its data in `<data_dir>/iggy`.
    ManagedIggy,
    /// An external `iggy-server` at this address.
    ExternalIggy { address: String },
}

impl Recorded {
    /// The backend the log runs on.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Embedded => BackendKind::Embedded,
            Self::ManagedIggy | Self::ExternalIggy { .. } => BackendKind::Iggy,
        }
    }

    /// Where the log is, for messages about a data directory.
    pub fn location(&self, data_dir: &Path) -> String {
        match self {
            Self::Embedded => format!("{}*", data_dir.join(crate::embedded::FILE_NAME).display()),
            Self::ManagedIggy => format!("{}/", data_dir.join(MANAGED_IGGY_DIR).display()),
            Self::ExternalIggy { address } => {
                format!(
                    "stream {} on the iggy-server at {address}",
                    crate::iggy::STREAM
                )
            }
        }
    }

    /// How to delete this log once it is no longer wanted.
    pub fn how_to_delete(&self, data_dir: &Path) -> String {
        match self {
            Self::Embedded => {
                let file = data_dir.join(crate::embedded::FILE_NAME);
                format!("rm {0} {0}-wal {0}-shm {0}.lock", file.display())
            }
            Self::ManagedIggy => format!("rm -r {}", data_dir.join(MANAGED_IGGY_DIR).display()),
            Self::ExternalIggy { address } => format!(
                "delete stream {} on the iggy-server at {address} (e.g. with the iggy cli)",
                crate::iggy::STREAM
            ),
        }
    }

    /// Reads the record; `Ok(None)` if there is none.
    pub fn read(data_dir: &Path) -> Result<Option<Self>, LogError> {
        let path = data_dir.join(RECORD_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(bad_record(&path, err.to_string())),
        };
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            backend: String,
            address: Option<String>,
        }
        let file: File = toml::from_str(&text).map_err(|err| bad_record(&path, err.to_string()))?;
        match (file.backend.as_str(), file.address) {
            ("embedded", None) => Ok(Some(Self::Embedded)),
            ("iggy", None) => Ok(Some(Self::ManagedIggy)),
            ("iggy", Some(address)) => Ok(Some(Self::ExternalIggy { address })),
            (other, _) => Err(bad_record(
                &path,
                format!("backend {other:?} with this address or none is not one vibesd records"),
            )),
        }
    }

    /// Writes the record, replacing any other at once (write, fsync,
    /// rename), so a crash leaves the old record or the new one.
    pub fn write(&self, data_dir: &Path) -> Result<(), LogError> {
        let path = data_dir.join(RECORD_FILE);
        let mut text = String::from(
            "# The log backend of this data directory, written by vibesd on its first start.\n\
             # vibesd follows it on every start; move the log with `vibesd migrate`.\n",
        );
        match self {
            Self::Embedded => text.push_str("backend = \"embedded\"\n"),
            Self::ManagedIggy => text.push_str("backend = \"iggy\"\n"),
            Self::ExternalIggy { address } => {
                // Debug quoting escapes `"` and `\` the way TOML does.
                text.push_str(&format!("backend = \"iggy\"\naddress = {address:?}\n"));
            }
        }
        let temp = data_dir.join(format!("{RECORD_FILE}.tmp"));
        let write = || -> io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(data_dir)?.sync_all()
        };
        write().map_err(|source| LogError::DataDir {
            path: data_dir.to_owned(),
            action: "write the backend record in",
            source,
        })
    }

    /// What a data directory without a record holds, judged by its files.
    pub fn infer(data_dir: &Path) -> Found {
        let embedded = data_dir.join(crate::embedded::FILE_NAME).is_file();
        let managed = data_dir.join(MANAGED_IGGY_DIR).is_dir();
        match (embedded, managed) {
            (false, false) => Found::Nothing,
            (true, false) => Found::One(Self::Embedded),
            (false, true) => Found::One(Self::ManagedIggy),
            (true, true) => Found::Both,
        }
    }
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("an embedded log"),
            Self::ManagedIggy => f.write_str("the log of a managed iggy-server"),
            Self::ExternalIggy { address } => {
                write!(f, "the log on the external iggy-server at {address}")
            }
        }
    }
}

/// What [`Recorded::infer`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A new data directory.
    Nothing,
    One(Recorded),
    /// Both an embedded log and a managed server's data.
    Both,
}

fn bad_record(path: &Path, reason: String) -> LogError {
    LogError::Record {
        path: path.to_owned(),
        reason,
    }
}

/// An exclusive lock on `<data_dir>/vibesd.lock`, held while the data
/// directory's log is in use; released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or fails with [`LogError::Locked`] if another process
    /// holds it.
    pub fn take(data_dir: &Path) -> Result<Self, LogError> {
        let failed = |action, source| LogError::DataDir {
            path: data_dir.to_owned(),
            action,
            source,
        };
        fs::create_dir_all(data_dir).map_err(|err| failed("create the data directory", err))?;
        let file = File::create(data_dir.join(LOCK_FILE))
            .map_err(|err| failed("create the lock file in", err))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LogError::Locked {
                path: data_dir.to_owned(),
            }),
            Err(TryLockError::Error(err)) => Err(failed("lock the data directory", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_record_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Recorded::read(dir.path()).unwrap(), None);
        for recorded in [
            Recorded::Embedded,
            Recorded::ManagedIggy,
            Recorded::ExternalIggy {
                address: "iggy.example:8090".into(),
            },
        ] {
            recorded.write(dir.path()).unwrap();
            assert_eq!(Recorded::read(dir.path()).unwrap(), Some(recorded));
        }
    }

    #[test]
    fn a_record_vibesd_did_not_write_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "backend = \"postgres\"\n",
            "backend = \"embedded\"\naddress = \"x:1\"\n",
            "nonsense",
        ] {
            std::fs::write(dir.path().join(RECORD_FILE), text).unwrap();
            let err = Recorded::read(dir.path()).unwrap_err().to_string();
            assert!(err.contains(RECORD_FILE), "{text}: {err}");
        }
    }

    #[test]
    fn a_directory_without_a_record_is_judged_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Recorded::infer(dir.path()), Found::Nothing);
        std::fs::write(dir.path().join(crate::embedded::FILE_NAME), b"").unwrap();
        assert_eq!(Recorded::infer(dir.path()), Found::One(Recorded::Embedded));
        std::fs::create_dir(dir.path().join(MANAGED_IGGY_DIR)).unwrap();
        assert_eq!(Recorded::infer(dir.path()), Found::Both);
        std::fs::remove_file(dir.path().join(crate::embedded::FILE_NAME)).unwrap();
        assert_eq!(
            Recorded::infer(dir.path()),
            Found::One(Recorded::ManagedIggy)
        );
    }
}
