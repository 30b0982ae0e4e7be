//! The Iggy backend (placeholder: being written).

use std::path::{Path, PathBuf};

use crate::{BackendKind, LogError, LogOptions};

/// Iggy settings from vibesd's config.
#[derive(Debug, Clone, Default)]
pub struct IggyConfig {
    /// An external server's TCP address; when set, vibesd manages none.
    pub address: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `iggy-server` binary; else it is looked up on `PATH`.
    pub server_binary: Option<PathBuf>,
    /// The managed server's TCP port; 0 picks a free one.
    pub tcp_port: u16,
}

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Connection {
    pub address: String,
    pub username: String,
    pub password: String,
}

impl IggyConfig {
    pub fn external_connection(&self, address: &str) -> Connection {
        Connection {
            address: address.to_owned(),
            username: self.username.clone().unwrap_or_else(|| "iggy".into()),
            password: self.password.clone().unwrap_or_else(|| "iggy".into()),
        }
    }
}

#[derive(Debug)]
pub struct IggyLog;

impl IggyLog {
    pub async fn connect(_connection: &Connection, _options: LogOptions) -> Result<Self, LogError> {
        Err(LogError::unavailable(
            BackendKind::Iggy,
            "connect",
            "not written yet",
        ))
    }
}

#[derive(Debug)]
pub struct IggyManager;

impl IggyManager {
    pub fn find_binary(_config: &IggyConfig) -> Option<PathBuf> {
        None
    }
    pub async fn start(_config: &IggyConfig, _data_dir: &Path) -> Result<Self, LogError> {
        Err(LogError::unavailable(
            BackendKind::Iggy,
            "start iggy-server",
            "not written yet",
        ))
    }
    pub fn connection(&self) -> Connection {
        unreachable!()
    }
    pub async fn stop(self) {}
}

#[async_trait::async_trait]
impl crate::EventLog for IggyLog {
    fn backend(&self) -> BackendKind {
        BackendKind::Iggy
    }
    async fn append_batch(
        &self,
        _e: Vec<vibes_core::StoredEvent>,
    ) -> Result<std::ops::Range<crate::Offset>, LogError> {
        unreachable!()
    }
    async fn high_water_mark(&self) -> Result<crate::Offset, LogError> {
        unreachable!()
    }
    async fn read(
        &self,
        _from: crate::Offset,
        _max: usize,
    ) -> Result<Vec<crate::Record>, LogError> {
        unreachable!()
    }
    async fn consumer(
        &self,
        _g: &str,
        _s: crate::StartPosition,
    ) -> Result<Box<dyn crate::EventConsumer>, LogError> {
        unreachable!()
    }
}
