//! The Iggy backend: the log kept by an `iggy-server`, either one that
//! vibesd runs as a subprocess ([`IggyManager`]) or an external one.
//!
//! - [`IggyLog`] (in `iggy/log.rs`) implements the contract of `log.rs` over
//!   stream `vibes`, topic `events`, one partition: offsets are that
//!   partition's offsets, each group is an Iggy consumer group whose offset
//!   Iggy stores. Its module doc says how appends are made durable and how
//!   their offsets are found.
//! - `iggy/session.rs` is one authenticated TCP connection that replaces
//!   itself when the server goes away, so the log outlives server restarts.
//! - [`IggyManager`] (in `iggy/manager.rs`) runs `iggy-server` with its data
//!   under vibesd's data directory, restarts it if it dies and stops it on
//!   shutdown; `iggy/repair.rs` mends what a killed server leaves half
//!   written before it starts again.

mod log;
mod manager;
mod repair;
mod session;

use std::path::PathBuf;

pub use log::IggyLog;
pub use manager::{IggyManager, ManagerError, ServerStatus};

/// The stream that holds the log.
pub const STREAM: &str = "vibes";
/// The topic that holds the log; it has exactly one partition.
pub const TOPIC: &str = "events";
/// The one partition of [`TOPIC`] (Iggy numbers partitions from 0).
pub const PARTITION: u32 = 0;

/// Iggy settings from vibesd's config.
#[derive(Debug, Clone, Default)]
pub struct IggyConfig {
    /// An external server's TCP address; when set, vibesd manages none.
    pub address: Option<String>,
    /// The user for an external server (default `iggy`). A managed server
    /// uses the credentials vibesd generated for it instead.
    pub username: Option<String>,
    /// The password for an external server (default `iggy`).
    pub password: Option<String>,
    /// The `iggy-server` binary; else it is looked up on `PATH`.
    pub server_binary: Option<PathBuf>,
    /// The managed server's TCP port; 0 picks a free one.
    pub tcp_port: u16,
    /// Extra `IGGY_*` variables for the managed server, applied after
    /// vibesd's own (so they win): for tuning, e.g.
    /// `IGGY_SYSTEM_SEGMENT_SIZE`. Changing the address, data path,
    /// credentials or fsync settings this way breaks what vibesd relies on.
    pub server_env: Vec<(String, String)>,
}

/// How to reach a server.
#[derive(Clone)]
pub struct Connection {
    /// `host:port` of the server's TCP transport.
    pub address: String,
    pub username: String,
    pub password: String,
    /// The server writes and fsyncs every batch before it answers the send
    /// (a server vibesd manages is set up so), so an append needs no flush.
    /// `false` (external servers): every append is flushed with fsync.
    pub fsyncs_each_send: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs; the password must not.
        f.debug_struct("Connection")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("fsyncs_each_send", &self.fsyncs_each_send)
            .finish()
    }
}

impl IggyConfig {
    /// How to reach the external server at `address`.
    pub fn external_connection(&self, address: &str) -> Connection {
        Connection {
            address: address.to_owned(),
            username: self.username.clone().unwrap_or_else(|| "iggy".into()),
            password: self.password.clone().unwrap_or_else(|| "iggy".into()),
            fsyncs_each_send: false,
        }
    }
}
