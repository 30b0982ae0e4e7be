//! vibesd: the daemon.
//!
//! [`run`] opens the log, starts the Supervisor with the built-in consumer
//! groups, serves the API ([`api::app`]) until `shutdown` resolves, then
//! shuts everything down in order. The `vibesd` binary (`src/bin/vibesd.rs`)
//! parses the command line and calls it; its client subcommands are in
//! `cli.rs`.

pub mod api;
pub mod cli;
pub mod clip;
pub mod config;
pub mod consumers;
pub mod error;
pub mod state;
mod systemd;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use vibes_actors::supervisor::{Supervisor, SupervisorArgs};
use vibes_iggy::BackendKind;

use crate::config::{Config, ConfigError};
use crate::state::{AppState, BackendInfo, IggyInfo};

/// Why vibesd could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the event log: {0}")]
    Log(#[from] vibes_iggy::LogError),
    #[error(transparent)]
    Consumer(#[from] consumers::ConsumerError),
    #[error("cannot start the actors: {0}")]
    Actors(String),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot keep the token in {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// How long shutdown waits for WebSocket clients to be told and gone.
const CONNECTIONS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The line vibesd logs once it listens; tests and scripts wait for it.
pub const LISTENING: &str = "vibesd listening on";

/// Runs vibesd until `shutdown` resolves, then stops taking requests,
/// drains the LogWriter, lets every group commit, and stops `iggy-server`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let data_dir = config.data_dir()?;
    std::fs::create_dir_all(&data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let token = token(&config, &data_dir)?;
    let opened = vibes_iggy::open(&config.backend_config(&data_dir)).await?;
    let backend = BackendInfo {
        kind: opened.backend().to_string(),
        reason: opened.reason.clone(),
        iggy: (opened.backend() == BackendKind::Iggy).then(|| match &opened.manager {
            Some(manager) => IggyInfo {
                address: manager.connection().address,
                managed: true,
            },
            None => IggyInfo {
                address: config.iggy.address.clone().unwrap_or_default(),
                managed: false,
            },
        }),
    };
    let log = opened.log.clone();
    let (groups, services) = consumers::build(&config, &data_dir)?;
    let (supervisor, supervisor_done) = Supervisor::start(SupervisorArgs {
        log: opened,
        groups,
        writer: config.writer_config(),
    })
    .await
    .map_err(|err| ServerError::Actors(err.to_string()))?;

    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(listener) => listener,
        Err(source) => {
            let _ = supervisor.shutdown().await;
            return Err(ServerError::Bind {
                address: config.bind,
                source,
            });
        }
    };
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    let (lifecycle, stop, mut connections_gone) = state::Lifecycle::new();
    let state = AppState {
        supervisor: supervisor.clone(),
        writer: supervisor.writer().clone(),
        log,
        config: Arc::new(config),
        token,
        backend,
        started: Instant::now(),
        services,
        lifecycle,
    };
    let app = api::app(state.clone());
    tracing::info!(
        backend = %state.backend.kind,
        data_dir = %data_dir.display(),
        "{LISTENING} http://{address}"
    );
    systemd::ready();
    let watchdog = systemd::watchdog(supervisor.clone());
    // Only the router's copy of the state stays, and the connections'.
    drop(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // WebSocket connections outlive the HTTP server's shutdown.
            let _ = stop.send(true);
        })
        .await;
    systemd::stopping();
    watchdog.abort();
    // Let WebSocket clients say goodbye (and append their last events)
    // while the LogWriter still takes appends.
    if tokio::time::timeout(CONNECTIONS_TIMEOUT, connections_gone.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "WebSocket connections still open after {CONNECTIONS_TIMEOUT:?}; closing them"
        );
    }
    tracing::info!("shutting down: draining appends, committing every group");
    if let Err(err) = supervisor.shutdown().await {
        tracing::error!("shutdown: {err}");
    }
    let _ = supervisor_done.await;
    tracing::info!("vibesd stopped");
    served.map_err(ServerError::Serve)
}

/// The token: configured, else (beyond loopback) the one in the data
/// directory, generated at the first start and readable by the owner only.
fn token(config: &Config, data_dir: &Path) -> Result<Option<Arc<str>>, ServerError> {
    if let Some(token) = &config.token {
        return Ok(Some(token.as_str().into()));
    }
    if config.bind.ip().is_loopback() {
        return Ok(None);
    }
    let path = data_dir.join("token");
    let failed = |source| ServerError::Token {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().into())),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err)),
    }
    use rand::Rng;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    file.write_all(token.as_bytes()).map_err(failed)?;
    tracing::warn!(
        path = %path.display(),
        "listening beyond loopback: every route but /healthz needs the bearer token in this file"
    );
    Ok(Some(token.into()))
}
