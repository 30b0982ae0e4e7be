//! vibesd: the daemon.
//!
//! [`run`] opens the log, starts the Supervisor with the built-in consumer
//! groups, serves the API ([`api::app`]) until `shutdown` resolves, then
//! shuts everything down in order. The `vibesd` binary (`src/bin/vibesd.rs`)
//! parses the command line and calls it; its client subcommands are in
//! `cli.rs`; the web UI it serves is `ui.rs`.

pub mod api;
pub mod cli;
pub mod clip;
pub mod config;
pub mod consumers;
pub mod error;
pub mod metrics;
pub mod permissions;
pub mod plugins;
mod serve;
pub mod state;
mod systemd;
mod ui;

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
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log's own error says what failed (a full disk creating the file
    /// is not a corrupt log); it is printed once, as the cause.
    #[error("cannot open the event log")]
    Log(#[from] vibes_iggy::LogError),
    #[error(transparent)]
    Consumer(#[from] consumers::ConsumerError),
    #[error(transparent)]
    Plugin(#[from] vibes_plugin::PluginError),
    #[error("cannot start the actors")]
    Actors(#[source] vibes_actors::SpawnErr),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot keep the token in {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token in {path} cannot be sent by a client ({reason}); fix or delete the file")]
    BadToken { path: PathBuf, reason: String },
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// How long shutdown waits for requests in flight to finish and for
/// WebSocket clients to be told and gone; then their connections are
/// closed.
const CONNECTIONS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long shutdown waits for the LogWriter to drain and every group to
/// commit. With [`CONNECTIONS_TIMEOUT`] this bounds SIGTERM-to-exit, well
/// within the unit's `TimeoutStopSec=60`.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(40);

/// The line vibesd logs once it listens; tests and scripts wait for it.
pub const LISTENING: &str = "vibesd listening on";

/// Runs vibesd until `shutdown` resolves, then stops taking requests,
/// drains the LogWriter, lets every group commit, and stops `iggy-server`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let data_dir = config.data_dir()?;
    private_data_dir(&data_dir)?;
    let token = token(&config, &data_dir)?;
    let mut opened = vibes_iggy::open(&config.backend_config(&data_dir)).await?;
    // Held until vibesd is done with the data directory, so that `vibesd
    // migrate` cannot move the log under it.
    let _data_dir_lock = opened.lock.take();
    let backend = BackendInfo {
        kind: opened.backend().to_string(),
        reason: opened.reason.clone(),
        iggy: (opened.backend() == BackendKind::Iggy).then(|| match &opened.manager {
            Some(manager) => IggyInfo {
                address: manager.connection().address,
                managed: true,
            },
            None => IggyInfo {
                // A data directory recorded on an external server may be
                // followed without a configured address.
                address: match vibes_iggy::record::Recorded::read(&data_dir) {
                    Ok(Some(vibes_iggy::record::Recorded::ExternalIggy { address })) => address,
                    _ => config.iggy.address.clone().unwrap_or_default(),
                },
                managed: false,
            },
        }),
    };
    let log = opened.log.clone();
    let (mut groups, services) = consumers::build(&config, &data_dir)?;
    let plugins = plugins::start(&config, &data_dir, &services.notifications)?;
    groups.extend(plugins::group_specs(&config, &plugins));
    let (supervisor, supervisor_done) = Supervisor::start(SupervisorArgs {
        log: opened,
        groups,
        writer: config.writer_config(),
    })
    .await
    .map_err(ServerError::Actors)?;

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
    let permissions = permissions::Permissions::new(
        config.remote_approval.clone(),
        supervisor.writer().clone(),
        log.clone(),
    );
    let state = AppState::new(crate::state::Shared {
        supervisor: supervisor.clone(),
        writer: supervisor.writer().clone(),
        log,
        config: Arc::new(config),
        token,
        backend,
        started: Instant::now(),
        services,
        lifecycle,
        metrics: Arc::default(),
        permissions,
        plugins,
    });
    let app = api::app(state.clone());
    let limits = state.config.serve_limits(CONNECTIONS_TIMEOUT);
    tracing::info!(
        backend = %state.backend.kind,
        data_dir = %data_dir.display(),
        "{LISTENING} http://{address}"
    );
    systemd::ready();
    let watchdog = systemd::watchdog(supervisor.clone());
    // Only the router's copy of the state stays, and the connections'.
    drop(state);
    let deadline = serve::serve(listener, app, limits, shutdown, &stop).await;
    systemd::stopping();
    watchdog.abort();
    // Let WebSocket clients say goodbye (and append their last events)
    // while the LogWriter still takes appends, within the same grace
    // period as the HTTP connections.
    if tokio::time::timeout_at(deadline, connections_gone.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "WebSocket connections still open after {CONNECTIONS_TIMEOUT:?}; closing them"
        );
    }
    tracing::info!("shutting down: draining appends, committing every group");
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        if let Err(err) = supervisor.shutdown().await {
            tracing::error!("shutdown: {err}");
        }
        let _ = supervisor_done.await;
    })
    .await;
    if drained.is_err() {
        // Acknowledged appends are durable already; a group that did not
        // commit re-reads its last batch at the next start.
        tracing::error!("the actors did not stop within {DRAIN_TIMEOUT:?}; exiting without them");
    }
    tracing::info!("vibesd stopped");
    Ok(())
}

/// Makes the data directory private to vibesd's user: the directory is
/// 0700, and every file or directory vibesd (or SQLite, or a managed
/// `iggy-server`) creates from here on is 0600 / 0700, like the token.
fn private_data_dir(data_dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let failed = |source| ServerError::DataDir {
        path: data_dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(failed)?;
    // A directory made before (or by hand) becomes private too.
    if let Err(err) = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)) {
        tracing::warn!(
            path = %data_dir.display(),
            "cannot make the data directory private (mode 0700): {err}"
        );
    }
    Ok(())
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
        Ok(token) if !token.trim().is_empty() => {
            let token = token.trim();
            config::check_token(token).map_err(|reason| ServerError::BadToken {
                path: path.clone(),
                reason,
            })?;
            return Ok(Some(token.into()));
        }
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
