//! The `vibesd` command line: `serve` (the default) runs the daemon; the
//! other subcommands talk to a running one over its API, but `migrate`,
//! which moves the log of a stopped one to another backend.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::config::Config;

/// A durable, ordered event log for AI coding sessions, with supervised
/// consumers over it.
#[derive(Debug, Parser)]
#[command(name = "vibesd", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct Global {
    /// The config file. Default: $XDG_CONFIG_HOME/vibes/vibesd.toml (or
    /// ~/.config/vibes/vibesd.toml), used only if it exists.
    #[arg(long, global = true, env = "VIBESD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the log and everything vibesd keeps live. Default:
    /// $STATE_DIRECTORY under systemd, else $XDG_DATA_HOME/vibes.
    #[arg(long, global = true, env = "VIBESD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address to listen on (serve) or to reach (clients). Default:
    /// 127.0.0.1:7432. Beyond loopback, every route but /healthz needs the
    /// bearer token.
    #[arg(long, global = true, env = "VIBESD_BIND")]
    pub bind: Option<SocketAddr>,
    /// The log backend: auto, iggy, embedded or memory (memory loses every
    /// event when vibesd stops).
    #[arg(long, global = true, env = "VIBESD_BACKEND")]
    pub backend: Option<String>,
    /// The bearer token (serve: require it; clients: send it).
    #[arg(long, global = true, env = "VIBESD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default when no subcommand is given).
    Serve,
    /// Show the daemon's version, uptime, backend and high-water mark.
    Status,
    /// List the consumer groups: state, committed offset, lag, restarts.
    Groups,
    /// Print events as JSON lines, from an offset, then follow new ones.
    Tail {
        /// Where to start: an offset, `beginning` or `end`.
        #[arg(long, default_value = "end")]
        from: String,
        /// Stop at the end of the log instead of following it.
        #[arg(long)]
        no_follow: bool,
    },
    /// Append one event (or a JSON array of events); prints their offsets.
    Append {
        /// The event, e.g. '{"type":"user_input","session_id":"s1","content":"hi","source":"cli"}'.
        json: String,
    },
    /// Read a Claude Code hook payload on stdin and send it to the daemon.
    /// Never fails the hook: on any problem it says so in one line on
    /// stderr and exits 0.
    Hook,
    /// Move the data directory's log to another backend, with its offsets
    /// and every group's committed offset; vibesd must be stopped. The old
    /// log is kept (the command says where and how to delete it). `iggy`
    /// means the server at iggy.address if one is configured, else a
    /// managed iggy-server.
    Migrate {
        /// The backend to move to.
        #[arg(long, value_enum)]
        to: MigrateTarget,
    },
    /// Move a consumer group to `beginning`, `end` or an offset.
    Seek {
        group: String,
        /// `beginning`, `end` or an offset.
        to: String,
        /// Only say how many events would be replayed or skipped.
        #[arg(long)]
        dry_run: bool,
    },
    /// A plugin's command (`vibesd <plugin> [args…]`; see "Plugin commands"
    /// in `vibesd --help`).
    #[command(external_subcommand)]
    Plugin(Vec<String>),
}

/// The "Plugin commands" section of `vibesd --help`: each linked plugin
/// that has a command, with its one line. Empty if none has.
pub fn plugin_help() -> String {
    let lines: Vec<String> = crate::plugins::linked()
        .iter()
        .filter_map(|plugin| {
            plugin
                .cli()
                .map(|cli| format!("  {:<8} {}", plugin.name(), cli.about))
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("Plugin commands:\n{}", lines.join("\n"))
    }
}

/// A backend a log can move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateTarget {
    Iggy,
    Embedded,
}

/// Runs `vibesd migrate`: moves the data directory's log and says where
/// the old one stays.
pub async fn migrate(global: &Global, to: MigrateTarget) -> anyhow::Result<()> {
    let config = global.config()?;
    let data_dir = config.data_dir()?;
    let to = match to {
        MigrateTarget::Iggy => vibes_iggy::BackendKind::Iggy,
        MigrateTarget::Embedded => vibes_iggy::BackendKind::Embedded,
    };
    let migrated = vibes_iggy::migrate::migrate(&config.backend_config(&data_dir), to).await?;
    println!(
        "moved {} events and {} groups from {} to {}; {} now uses the new log.\n\
         The old log stays in {}; once you no longer need it, delete it with:\n  {}",
        migrated.events,
        migrated.groups,
        migrated.from,
        migrated.to,
        data_dir.display(),
        migrated.old_location,
        migrated.delete_old,
    );
    Ok(())
}

impl Global {
    /// The config file's settings with the flags and `VIBESD_*` variables
    /// laid over them.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path, true)?,
            None => match default_config_path() {
                Some(path) => Config::load(&path, false)?,
                None => Config::default(),
            },
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(backend) = &self.backend {
            config.backend = backend
                .parse()
                .map_err(|err: String| anyhow::anyhow!("--backend / VIBESD_BACKEND: {err}"))?;
        }
        if let Some(token) = &self.token {
            if let Err(err) = crate::config::check_token(token) {
                bail!("invalid --token / VIBESD_TOKEN: {err}");
            }
            config.token = Some(token.clone());
        }
        Ok(config)
    }
}

fn default_config_path() -> Option<PathBuf> {
    let absolute = |name| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .map(|base| base.join("vibes").join("vibesd.toml"))
}

/// A client of a running daemon.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(global: &Global, timeout: Duration) -> anyhow::Result<Self> {
        let config = global.config()?;
        let address = global.bind.unwrap_or(config.bind);
        // A daemon listening on every address is reached on loopback.
        let host = if address.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), address.port())
        } else {
            address
        };
        let token = config.token.clone().or_else(|| {
            let dir = config.data_dir().ok()?;
            std::fs::read_to_string(dir.join("token"))
                .ok()
                .map(|token| token.trim().to_owned())
        });
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            base: format!("http://{host}"),
            token,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach vibesd at {} (is it running?)", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("no detail");
            bail!("vibesd answered {status}: {detail}");
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }
}

fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a client subcommand.
pub async fn client(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => unreachable!("serve is not a client command"),
        Command::Migrate { to } => migrate(global, to).await,
        Command::Hook => hook(global).await,
        Command::Status => print(
            &Client::new(global, Duration::from_secs(10))?
                .get("/api/status")
                .await?,
        ),
        Command::Groups => print(
            &Client::new(global, Duration::from_secs(10))?
                .get("/api/groups")
                .await?,
        ),
        Command::Append { json } => {
            let client = Client::new(global, Duration::from_secs(30))?;
            print(&client.post("/api/events", json.into_bytes()).await?)
        }
        Command::Seek { group, to, dry_run } => {
            let to: Value =
                match to.as_str() {
                    "beginning" | "end" => Value::String(to),
                    offset => Value::from(offset.parse::<u64>().with_context(|| {
                        format!("{offset:?} is not beginning, end or an offset")
                    })?),
                };
            let body = serde_json::to_vec(&serde_json::json!({ "to": to, "dry_run": dry_run }))?;
            let client = Client::new(global, Duration::from_secs(60))?;
            print(
                &client
                    .post(&format!("/api/groups/{group}/seek"), body)
                    .await?,
            )
        }
        Command::Tail { from, no_follow } => tail(global, &from, !no_follow).await,
        Command::Plugin(args) => plugin_command(global, &args).await,
    }
}

/// `vibesd <plugin> [args…]`: the plugin says which of its routes to ask
/// and renders the answer.
async fn plugin_command(global: &Global, args: &[String]) -> anyhow::Result<()> {
    let Some((name, rest)) = args.split_first() else {
        bail!("no command given; see vibesd --help");
    };
    let cli = crate::plugins::find(name)
        .and_then(|plugin| plugin.cli())
        .with_context(|| format!("unknown command {name:?}; see vibesd --help"))?;
    let path = (cli.request)(rest).map_err(|usage| anyhow::anyhow!("vibesd {name}: {usage}"))?;
    let client = Client::new(global, Duration::from_secs(10))?;
    let answer = client.get(&format!("/api/plugins/{name}{path}")).await?;
    print!("{}", (cli.render)(rest, &answer));
    Ok(())
}

async fn tail(global: &Global, from: &str, follow: bool) -> anyhow::Result<()> {
    let client = Client::new(global, Duration::from_secs(30))?;
    let mut next: u64 = match from {
        "beginning" => 0,
        "end" => client.get("/api/status").await?["high_water_mark"]
            .as_u64()
            .unwrap_or(0),
        offset => offset
            .parse()
            .with_context(|| format!("--from {offset:?} is not beginning, end or an offset"))?,
    };
    loop {
        let page = client
            .get(&format!("/api/events?from={next}&limit=1000"))
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            println!("{event}");
            if let Some(offset) = event["offset"].as_u64() {
                next = offset + 1;
            }
        }
        if events.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The largest hook payload read from stdin.
const MAX_HOOK_BYTES: u64 = 4 * 1024 * 1024;

/// Sends a hook payload; never fails the user's Claude Code session.
async fn hook(global: &Global) -> anyhow::Result<()> {
    let result = async {
        let mut payload = Vec::new();
        std::io::stdin()
            .take(MAX_HOOK_BYTES)
            .read_to_end(&mut payload)
            .context("cannot read the hook payload on stdin")?;
        let client = Client::new(global, Duration::from_secs(2))?;
        client.post("/api/hooks/claude", payload).await
    }
    .await;
    match result {
        // A plugin's answer (the assessment's note while a session's
        // breaker is open) is Claude Code's hook output.
        Ok(answer) => {
            if let Some(output) = answer.get("output") {
                println!("{output}");
            }
        }
        Err(err) => eprintln!("vibesd hook: event not recorded: {err:#}"),
    }
    Ok(())
}
