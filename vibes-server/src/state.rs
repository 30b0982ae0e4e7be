//! What every request handler can reach.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Serialize;
use vibes_actors::LogWriterHandle;
use vibes_actors::supervisor::SupervisorHandle;
use vibes_iggy::EventLog;

use crate::config::Config;
use crate::consumers::Services;

/// Shared by every handler: one [`Shared`] behind an `Arc`, so a clone
/// (axum makes several per request, one per extractor and middleware) is
/// one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler shares.
pub struct Shared {
    pub supervisor: SupervisorHandle,
    /// For reads (history pages, firehose catch-up); appends go through
    /// [`AppState::writer`].
    pub log: Arc<dyn EventLog>,
    pub writer: LogWriterHandle,
    pub config: Arc<Config>,
    /// The bearer token every route but `/healthz` requires, when set.
    pub token: Option<Arc<str>>,
    pub backend: BackendInfo,
    pub started: Instant,
    /// What the built-in consumers share with the API.
    pub services: Services,
    /// Tells long-lived connections that vibesd is stopping, and lets it
    /// wait until they have said goodbye.
    pub lifecycle: Lifecycle,
    /// What the HTTP layer counts for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Permission requests waiting for a remote decision.
    pub permissions: crate::permissions::Permissions,
    /// The plugins running in this daemon.
    pub plugins: Arc<[crate::plugins::Started]>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// How long a WebSocket client gets to take its close frame.
pub const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Shutdown, as long-lived connections (WebSockets) see it.
///
/// Every clone holds the daemon's shutdown open: [`crate::run`] waits,
/// with a deadline, until every clone is dropped before it drains the
/// LogWriter, so a connection can still append its last events (a
/// `client_disconnected`).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    stopping: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Lifecycle {
    /// A lifecycle, the sender that starts the shutdown, and the receiver
    /// that ends once every clone of the lifecycle is gone.
    pub fn new() -> (
        Self,
        tokio::sync::watch::Sender<bool>,
        tokio::sync::mpsc::Receiver<()>,
    ) {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (alive, gone) = tokio::sync::mpsc::channel(1);
        (
            Self {
                stopping,
                _alive: alive,
            },
            stop,
            gone,
        )
    }

    /// Resolves once vibesd begins to shut down.
    pub async fn stopping(&mut self) {
        // An error means the sender is gone: that is a shutdown too.
        let _ = self.stopping.wait_for(|stopping| *stopping).await;
    }
}

/// Sends a WebSocket its close frame, if the client takes it within
/// [`GOODBYE_TIMEOUT`]: a client that does not read is not waited for.
pub(crate) async fn goodbye(socket: &mut WebSocket, close: CloseFrame) {
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, socket.send(Message::Close(Some(close)))).await;
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Which backend runs, for `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    /// `embedded`, `iggy` or `memory`.
    pub kind: String,
    pub reason: String,
    /// Set when the backend is Iggy.
    pub iggy: Option<IggyInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IggyInfo {
    /// The server's TCP address.
    pub address: String,
    /// Whether vibesd runs the server itself.
    pub managed: bool,
}
