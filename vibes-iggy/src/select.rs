//! Choosing and opening a backend: `auto | iggy | embedded | memory`.
//!
//! `auto` uses an external Iggy server if an address is configured, else a
//! managed `iggy-server` if its binary is found, else the embedded store.
//! The choice and its reason are logged and kept in [`OpenedLog`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::embedded::EmbeddedLog;
use crate::iggy::{IggyConfig, IggyLog, IggyManager};
use crate::memory::MemoryLog;
use crate::{BackendKind, EventLog, LogError, LogOptions};

/// Which backend to run, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// External Iggy if configured, else a managed `iggy-server` if found,
    /// else embedded.
    #[default]
    Auto,
    /// Iggy only: external if `iggy.address` is set, else managed. Fails if
    /// neither can be had, rather than falling back.
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
}

impl OpenedLog {
    pub fn backend(&self) -> BackendKind {
        self.log.backend()
    }
}

/// Opens the configured backend.
pub async fn open(config: &BackendConfig) -> Result<OpenedLog, LogError> {
    let opened = match config.backend {
        BackendChoice::Memory => {
            let reason = "backend = memory: every event is lost when vibesd stops".to_owned();
            tracing::warn!("{reason}");
            OpenedLog {
                log: Arc::new(MemoryLog::new(config.options)),
                manager: None,
                reason,
            }
        }
        BackendChoice::Embedded => open_embedded(config, "backend = embedded".into())?,
        BackendChoice::Iggy => match &config.iggy.address {
            Some(address) => open_external(config, address).await?,
            None => open_managed(config, "backend = iggy").await?,
        },
        BackendChoice::Auto => match &config.iggy.address {
            Some(address) => open_external(config, address).await?,
            None if IggyManager::find_binary(&config.iggy).is_some() => {
                open_managed(config, "backend = auto and iggy-server was found").await?
            }
            None => {
                let reason = format!(
                    "backend = auto, no iggy.address is configured and no iggy-server binary \
                     was found (set iggy.server_binary or put iggy-server on PATH): using the \
                     embedded store in {}",
                    config.data_dir.display()
                );
                tracing::warn!("{reason}");
                open_embedded(config, reason)?
            }
        },
    };
    tracing::info!(backend = %opened.backend(), reason = %opened.reason, "event log open");
    Ok(opened)
}

fn open_embedded(config: &BackendConfig, reason: String) -> Result<OpenedLog, LogError> {
    Ok(OpenedLog {
        log: Arc::new(EmbeddedLog::open(&config.data_dir, config.options)?),
        manager: None,
        reason,
    })
}

async fn open_external(config: &BackendConfig, address: &str) -> Result<OpenedLog, LogError> {
    let log = IggyLog::connect(&config.iggy.external_connection(address), config.options).await?;
    Ok(OpenedLog {
        log: Arc::new(log),
        manager: None,
        reason: format!("iggy.address = {address}: using that external Iggy server"),
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
    })
}
