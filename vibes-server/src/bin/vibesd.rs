//! The `vibesd` binary: parse the command line, set up tracing, and run
//! the daemon or a client subcommand. Everything else is in the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use vibes_server::cli::{Cli, Command};

fn main() -> ExitCode {
    let mut command = Cli::command();
    let plugins = vibes_server::cli::plugin_help();
    if !plugins.is_empty() {
        command = command.after_help(plugins);
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIBESD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let config = cli.global.config()?;
                // Listening for the signals starts here, before the daemon
                // says it is ready: a SIGTERM sent right after that line
                // must stop it cleanly, not kill it.
                let shutdown = shutdown_signal();
                vibes_server::run(config, shutdown).await?;
                Ok(())
            }
            command => vibes_server::cli::client(&cli.global, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts listening for SIGTERM and SIGINT now; the future resolves at the
/// first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            tracing::error!("cannot listen for SIGTERM/SIGINT; stop vibesd with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
