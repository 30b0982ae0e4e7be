//! The log end to end: open the configured backend in a data directory,
//! append a session's worth of events, then read everything the consumer
//! group `quickstart` has not yet done, and commit it.
//!
//! Run it twice: the second run appends more and reads only what is new,
//! because the group resumes after its committed offset.
//!
//! ```text
//! cargo run --release -p vibes-iggy --example quickstart -- [--data-dir DIR] [--backend auto|iggy|embedded|memory]
//! ```
//!
//! The data directory defaults to `$XDG_DATA_HOME/vibes` (or
//! `~/.local/share/vibes`); `auto` uses the embedded store unless an
//! `iggy-server` binary is on `PATH`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use vibes_core::{ClaudeEvent, HookPayload, StoredEvent, VibesEvent};
use vibes_iggy::iggy::IggyConfig;
use vibes_iggy::{BackendChoice, BackendConfig, LogOptions, StartPosition};

const USAGE: &str = "usage: quickstart [--data-dir DIR] [--backend auto|iggy|embedded|memory]";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<BackendConfig, String> {
    let mut data_dir = None;
    let mut backend = BackendChoice::Auto;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--backend" => backend = value("--backend")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let data_dir = match data_dir.or_else(vibes_core::default_data_dir) {
        Some(dir) => dir,
        None => return Err("neither XDG_DATA_HOME nor HOME is set: pass --data-dir".into()),
    };
    Ok(BackendConfig {
        backend,
        data_dir,
        options: LogOptions::default(),
        iggy: IggyConfig::default(),
    })
}

async fn run(config: BackendConfig) -> Result<(), vibes_iggy::LogError> {
    let opened = vibes_iggy::open(&config).await?;
    println!("data directory: {}", config.data_dir.display());
    println!("backend:        {} ({})", opened.backend(), opened.reason);
    let log = opened.log.clone();

    let session = format!("demo-{}", log.high_water_mark().await?);
    let appended = log.append_batch(session_events(&session)).await?;
    println!(
        "appended:       offsets {}..={} (durable)",
        appended.start,
        appended.end - 1
    );

    let mut group = log.consumer("quickstart", StartPosition::Beginning).await?;
    println!(
        "group {:?} resumes at offset {}",
        group.group(),
        group.position()
    );
    loop {
        let records = group.poll(100, Duration::from_millis(200)).await?;
        let Some(last) = records.last().map(|record| record.offset) else {
            break;
        };
        for record in &records {
            match record.event() {
                Ok(stored) => println!("  {:>6}  {}", record.offset, describe(&stored.event)),
                Err(err) => println!("  {:>6}  (undecodable: {err})", record.offset),
            }
        }
        group.commit(last).await?;
    }
    match group.committed_offset().await? {
        Some(offset) => println!("committed:      {offset}; the next run starts after it"),
        None => println!("committed:      nothing yet"),
    }
    drop(group);
    drop(log);
    if let Some(manager) = opened.manager {
        manager.stop().await;
    }
    Ok(())
}

/// What a short session looks like in the log.
fn session_events(session: &str) -> Vec<StoredEvent> {
    let claude = |event| VibesEvent::Claude {
        session_id: session.into(),
        event,
    };
    [
        VibesEvent::SessionCreated {
            session_id: session.into(),
            name: Some("quickstart".into()),
        },
        VibesEvent::UserInput {
            session_id: session.into(),
            content: "list the files here".into(),
            source: "cli".into(),
        },
        claude(ClaudeEvent::TurnStart),
        claude(ClaudeEvent::TextDelta {
            text: "Listing them now.".into(),
        }),
        VibesEvent::Hook {
            session_id: session.into(),
            event: HookPayload {
                hook_event_name: "PreToolUse".into(),
                tool_name: Some("Bash".into()),
                tool_input: Some(serde_json::json!({"command": "ls"})),
                ..HookPayload::default()
            },
        },
        claude(ClaudeEvent::TurnComplete {
            usage: Default::default(),
        }),
    ]
    .into_iter()
    .map(StoredEvent::new)
    .collect()
}

fn describe(event: &VibesEvent) -> String {
    let session = event.session_id().unwrap_or("-");
    match event {
        VibesEvent::Claude { event, .. } => format!("claude/{:<16} {session}", event.kind()),
        other => format!("{:<23} {session}", other.kind()),
    }
}
