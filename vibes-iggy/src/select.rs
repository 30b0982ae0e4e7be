//! Choosing and opening a backend: `auto | iggy | embedded | memory`.
//!
//! The data directory decides first: the backend recorded there (see
//! `record.rs`) is the one opened, and a configuration that asks for
//! another is refused. A new directory gets what is configured; under
//! `auto`, an external Iggy server if an address is configured, else a
//! managed `iggy-server` if its binary is found and starts, else the
//! embedded store; the choice is then recorded. The choice and its reason
//! are logged and kept in [`OpenedLog`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::embedded::EmbeddedLog;
use crate::iggy::{IggyConfig, IggyLog, IggyManager};
use crate::memory::MemoryLog;
use crate::record::{DataDirLock, Found, MANAGED_IGGY_DIR, RECORD_FILE, Recorded};
use crate::{BackendKind, EventLog, LogError, LogOptions};

/// Which backend to run, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Whatever the data directory records. A new one gets external Iggy
    /// if an address is configured, else a managed `iggy-server` if found
    /// and it starts, else embedded.
    #[default]
    Auto,
    /// Iggy only: external if `iggy.address` is set, else managed. Fails if
    /// neither can be had, rather than falling back, and refuses a data
    /// directory that holds another log.
    Iggy,
    /// The SQLite file in the data directory.
    Embedded,
    /// Process memory; everything is lost on exit.
    Memory,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "iggy" => Ok(Self::Iggy),
            "embedded" => Ok(Self::Embedded),
            "memory" => Ok(Self::Memory),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, iggy, embedded or memory"
            )),
        }
    }
}

/// Everything needed to open the log.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub backend: BackendChoice,
    /// vibesd's data directory: the embedded store and a managed
    /// `iggy-server`'s data live under it.
    pub data_dir: PathBuf,
    pub options: LogOptions,
    pub iggy: IggyConfig,
}

/// An open log and what keeps it running.
#[derive(Debug)]
pub struct OpenedLog {
    pub log: Arc<dyn EventLog>,
    /// The `iggy-server` subprocess, when vibesd manages one. Whoever owns
    /// the log owns this too and stops it after the log's last use.
    pub manager: Option<IggyManager>,
    /// Why this backend was chosen, in words for logs and `/api/status`.
    pub reason: String,
    /// The data directory's lock, held as long as the log is open; `None`
    /// for the memory backend, which leaves the data directory alone.
    pub lock: Option<DataDirLock>,
}

impl OpenedLog {
    pub fn backend(&self) -> BackendKind {
        self.log.backend()
    }
}

impl BackendConfig {
    /// What the configuration itself asks for, if anything: `auto` without
    /// an address leaves it to the data directory.
    fn wanted(&self) -> Option<Recorded> {
        let external = self
            .iggy
            .address
            .clone()
            .map(|address| Recorded::ExternalIggy { address });
        match self.backend {
            BackendChoice::Embedded => Some(Recorded::Embedded),
            BackendChoice::Iggy => Some(external.unwrap_or(Recorded::ManagedIggy)),
            BackendChoice::Auto => external,
            BackendChoice::Memory => None,
        }
    }
}

/// What the data directory holds: its record, else what its files show
/// (`wanted` settles a directory that holds both logs). `None`: new.
pub(crate) fn recorded(
    data_dir: &Path,
    wanted: Option<&Recorded>,
) -> Result<Option<(Recorded, bool)>, LogError> {
    if let Some(recorded) = Recorded::read(data_dir)? {
        return Ok(Some((recorded, true)));
    }
    match Recorded::infer(data_dir) {
        Found::Nothing => Ok(None),
        Found::One(found) => Ok(Some((found, false))),
        Found::Both => match wanted {
            Some(wanted @ (Recorded::Embedded | Recorded::ManagedIggy)) => {
                Ok(Some((wanted.clone(), false)))
            }
            _ => Err(LogError::AmbiguousDataDir {
                data_dir: data_dir.to_owned(),
            }),
        },
    }
}

/// Opens the log the data directory holds, or for a new directory the one
/// the configuration asks for, and records it.
pub async fn open(config: &BackendConfig) -> Result<OpenedLog, LogError> {
    if config.backend == BackendChoice::Memory {
        let reason = "backend = memory: every event is lost when vibesd stops".to_owned();
        tracing::warn!("{reason}");
        return Ok(OpenedLog {
            log: Arc::new(MemoryLog::new(config.options)),
            manager: None,
            reason,
            lock: None,
        });
    }
    let data_dir = &config.data_dir;
    let lock = DataDirLock::take(data_dir)?;
    let wanted = config.wanted();
    let found = recorded(data_dir, wanted.as_ref())?;
    let mut opened = match (found, wanted) {
        (Some((recorded, _)), Some(configured)) if configured != recorded => {
            return Err(LogError::BackendMismatch {
                data_dir: data_dir.clone(),
                to: configured.kind(),
                recorded,
                configured,
            });
        }
        (Some((recorded, was_recorded)), _) => {
            let why = if was_recorded {
                format!("the data directory records {recorded}")
            } else {
                format!("the data directory holds {recorded} (now recorded)")
            };
            let opened = open_recorded(config, &recorded, why).await?;
            if !was_recorded {
                recorded.write(data_dir)?;
                tracing::info!(
                    record = %data_dir.join(RECORD_FILE).display(),
                    "this data directory holds {recorded}; recorded it"
                );
            }
            opened
        }
        (None, wanted) => {
            let opened = match wanted {
                Some(wanted) => {
                    let why = format!("a new data directory, configured for {wanted}");
                    open_recorded(config, &wanted, why).await?
                }
                None => open_new_auto(config).await?,
            };
            let recorded = match (&opened.manager, opened.backend()) {
                (Some(_), _) => Recorded::ManagedIggy,
                (None, BackendKind::Iggy) => Recorded::ExternalIggy {
                    address: config.iggy.address.clone().unwrap_or_default(),
                },
                (None, _) => Recorded::Embedded,
            };
            recorded.write(data_dir)?;
            opened
        }
    };
    opened.lock = Some(lock);
    tracing::info!(backend = %opened.backend(), reason = %opened.reason, "event log open");
    Ok(opened)
}

/// Opens the log `recorded` names; the data directory's lock is the
/// caller's.
pub(crate) async fn open_recorded(
    config: &BackendConfig,
    recorded: &Recorded,
    why: String,
) -> Result<OpenedLog, LogError> {
    match recorded {
        Recorded::Embedded => open_embedded(config, format!("{why}: using the embedded store")),
        Recorded::ManagedIggy => open_managed(config, &why).await,
        Recorded::ExternalIggy { address } => open_external(config, address, &why).await,
    }
}

/// A new data directory under `auto` without an address: a managed
/// `iggy-server` if its binary is found and starts, else the embedded store.
async fn open_new_auto(config: &BackendConfig) -> Result<OpenedLog, LogError> {
    let Some(binary) = IggyManager::find_binary(&config.iggy) else {
        let reason = format!(
            "backend = auto, a new data directory, no iggy.address is configured and no \
             iggy-server binary was found (set iggy.server_binary or put iggy-server on PATH): \
             using the embedded store in {}",
            config.data_dir.display()
        );
        tracing::warn!("{reason}");
        return open_embedded(config, reason);
    };
    let iggy_dir = config.data_dir.join(MANAGED_IGGY_DIR);
    let existed = iggy_dir.exists();
    match open_managed(
        config,
        "backend = auto, a new data directory, and iggy-server was found",
    )
    .await
    {
        Ok(opened) => Ok(opened),
        Err(err) => {
            // Nothing was ever stored there: leave no half-made server
            // data behind to puzzle whoever looks.
            if !existed && let Err(err) = std::fs::remove_dir_all(&iggy_dir) {
                tracing::debug!(dir = %iggy_dir.display(), error = %err, "cannot remove");
            }
            let reason = format!(
                "backend = auto and iggy-server ({}) was found but did not start ({}): using \
                 the embedded store in {} for this new data directory",
                binary.display(),
                vibes_core::error_chain(&err),
                config.data_dir.display()
            );
            tracing::warn!("{reason}");
            open_embedded(config, reason)
        }
    }
}

fn open_embedded(config: &BackendConfig, reason: String) -> Result<OpenedLog, LogError> {
    Ok(OpenedLog {
        log: Arc::new(EmbeddedLog::open(&config.data_dir, config.options)?),
        manager: None,
        reason,
        lock: None,
    })
}

async fn open_external(
    config: &BackendConfig,
    address: &str,
    why: &str,
) -> Result<OpenedLog, LogError> {
    let log = IggyLog::connect(&config.iggy.external_connection(address), config.options).await?;
    Ok(OpenedLog {
        log: Arc::new(log),
        manager: None,
        reason: format!("{why}: using the external Iggy server at {address}"),
        lock: None,
    })
}

async fn open_managed(config: &BackendConfig, why: &str) -> Result<OpenedLog, LogError> {
    let manager = IggyManager::start(&config.iggy, &config.data_dir).await?;
    let log = match IggyLog::connect(&manager.connection(), config.options).await {
        Ok(log) => log,
        Err(err) => {
            manager.stop().await;
            return Err(err);
        }
    };
    let reason = format!(
        "{why}: running a managed iggy-server on {}",
        manager.connection().address
    );
    Ok(OpenedLog {
        log: Arc::new(log),
        manager: Some(manager),
        reason,
        lock: None,
    })
}
