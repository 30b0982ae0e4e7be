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
    /// stderr and exits 0. With remote approval on, a PermissionRequest
    /// waits for a decision from the web UI or `vibesd approve`/`deny` and
    /// prints it for Claude Code; without one in time it prints nothing
    /// (the dialog shows in the terminal).
    Hook,
    /// Allow the permission request at OFFSET (the offset of its
    /// PermissionRequest hook event, as the web UI and notifications show).
    Approve { offset: u64 },
    /// Deny the permission request at OFFSET.
    Deny {
        offset: u64,
        /// What Claude is told instead of the tool's result.
        #[arg(long)]
        message: Option<String>,
    },
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

    /// The status and JSON body (`Null` if none) of `request`'s answer.
    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach vibesd at {} (is it running?)", self.base))?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let (status, body) = self.answer(request).await?;
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

    fn post_request(&self, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(self.post_request(path, body)).await
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
        Command::Approve { offset } => decide(global, offset, "allow", None).await,
        Command::Deny { offset, message } => decide(global, offset, "deny", message).await,
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

/// How long `vibesd hook` gives each request to vibesd.
const HOOK_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends a hook payload; never fails the user's Claude Code session.
async fn hook(global: &Global) -> anyhow::Result<()> {
    let sent = async {
        let mut payload = Vec::new();
        std::io::stdin()
            .take(MAX_HOOK_BYTES)
            .read_to_end(&mut payload)
            .context("cannot read the hook payload on stdin")?;
        let session_id = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|payload| payload.get("session_id")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        let client = Client::new(global, HOOK_REQUEST_TIMEOUT)?;
        let answer = client.post("/api/hooks/claude", payload).await?;
        anyhow::Ok((client, session_id, answer))
    }
    .await;
    let (client, session_id, answer) = match sent {
        Ok(sent) => sent,
        Err(err) => {
            eprintln!("vibesd hook: event not recorded: {err:#}");
            return Ok(());
        }
    };
    // A plugin's answer (the assessment's note while a session's breaker
    // is open) is Claude Code's hook output.
    if let Some(output) = answer.get("output") {
        println!("{output}");
        return Ok(());
    }
    let Some(wait) = answer
        .get("permission")
        .and_then(|wait| serde_json::from_value::<PermissionWait>(wait.clone()).ok())
    else {
        return Ok(());
    };
    if let Some(decision) = await_decision(&client, &session_id, wait).await {
        println!("{}", decision.output());
        // Claude Code has it once this process exits; the record may fail.
        report(&client, wait.offset, "decided").await;
    }
    Ok(())
}

/// What vibesd told the hook to wait for.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct PermissionWait {
    offset: u64,
    wait_secs: u64,
}

/// A remote decision, as the hook gives it to Claude Code.
#[derive(Debug, Clone, PartialEq)]
struct HookDecision {
    allow: bool,
    message: Option<String>,
}

impl HookDecision {
    /// Claude Code's `PermissionRequest` hook output.
    fn output(&self) -> Value {
        let decision = if self.allow {
            serde_json::json!({ "behavior": "allow" })
        } else {
            serde_json::json!({
                "behavior": "deny",
                "message": self.message.as_deref().unwrap_or("The user denied this through vibesd."),
            })
        };
        serde_json::json!({
            "hookSpecificOutput": {
                "hookEventName": "PermissionRequest",
                "decision": decision,
            }
        })
    }

    /// The decision of a `permission_response` event for the request at
    /// `offset`, if `event` is one written by vibesd's decision route.
    fn of_event(event: &Value, offset: u64) -> Option<Self> {
        let answers = event.get("type")?.as_str()? == "permission_response"
            && event.get("request_offset")?.as_u64()? == offset
            && event.get("decided_by").is_some_and(Value::is_object);
        answers.then(|| Self {
            allow: event.get("approved").and_then(Value::as_bool) == Some(true),
            message: event
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// The decision in a refusal of an outcome (`decision` of a 409).
    fn of_refusal(body: &Value) -> Option<Self> {
        let decision = body.get("decision")?;
        let allow = match decision.get("behavior")?.as_str()? {
            "allow" => true,
            "deny" => false,
            _ => return None,
        };
        Some(Self {
            allow,
            message: decision
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// Waits for the decision on the request at `wait.offset`, up to
/// `wait.wait_secs`: on the firehose from the request's own offset, so a
/// decision taken before the socket opened is read from the log. Without
/// one (time up, vibesd gone), the hook reports how its wait ended; a
/// decision taken meanwhile comes back in the answer.
async fn await_decision(
    client: &Client,
    session_id: &str,
    wait: PermissionWait,
) -> Option<HookDecision> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.wait_secs);
    let outcome =
        match tokio::time::timeout_at(deadline, watch(client, session_id, wait.offset)).await {
            Ok(Ok(decision)) => return Some(decision),
            Ok(Err(err)) => {
                eprintln!(
                    "vibesd hook: lost vibesd while waiting for a decision ({err:#}); \
                 the dialog goes to the terminal"
                );
                "unreachable"
            }
            Err(_) => "timed_out",
        };
    let (status, body) = report(client, wait.offset, outcome).await?;
    if status == reqwest::StatusCode::CONFLICT {
        return HookDecision::of_refusal(&body);
    }
    None
}

/// Posts how the wait for the request at `offset` ended; the answer, if
/// vibesd gave one.
async fn report(
    client: &Client,
    offset: u64,
    outcome: &str,
) -> Option<(reqwest::StatusCode, Value)> {
    let body = serde_json::json!({ "outcome": outcome })
        .to_string()
        .into_bytes();
    let request = client.post_request(&format!("/api/permissions/{offset}/outcome"), body);
    match client.answer(request).await {
        Ok(answer) => Some(answer),
        Err(err) => {
            eprintln!("vibesd hook: the outcome {outcome} was not recorded: {err:#}");
            None
        }
    }
}

/// Follows the firehose from `offset`, for the session's permission
/// responses, until the one for `offset` comes.
async fn watch(client: &Client, session_id: &str, offset: u64) -> anyhow::Result<HookDecision> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut url = reqwest::Url::parse(&format!("{}/ws/firehose", client.base))?;
    url.set_scheme("ws")
        .map_err(|()| anyhow::anyhow!("cannot make a WebSocket address of {}", client.base))?;
    url.query_pairs_mut()
        .append_pair("from", &offset.to_string())
        .append_pair("types", "permission_response")
        .append_pair("session", session_id);
    let mut request = url.as_str().into_client_request()?;
    if let Some(token) = &client.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("cannot open the firehose")?;
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text)?;
                if let Some(decision) = frame
                    .get("event")
                    .and_then(|event| HookDecision::of_event(event, offset))
                {
                    return Ok(decision);
                }
            }
            Message::Close(close) => bail!(
                "vibesd closed the firehose: {}",
                close.map_or_else(|| "no reason".to_owned(), |close| close.reason.to_string())
            ),
            _ => {}
        }
    }
    bail!("the firehose ended")
}

/// `vibesd approve` / `vibesd deny`.
async fn decide(
    global: &Global,
    offset: u64,
    behavior: &str,
    message: Option<String>,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "behavior": behavior });
    if let Some(message) = message {
        body["message"] = Value::String(message);
    }
    let client = Client::new(global, Duration::from_secs(10))?;
    let request = client
        .post(
            &format!("/api/permissions/{offset}/decision"),
            serde_json::to_vec(&body)?,
        )
        .await?;
    println!(
        "{} the {} request at offset {offset} (session {})",
        if behavior == "allow" {
            "allowed"
        } else {
            "denied"
        },
        request["tool"].as_str().unwrap_or("tool"),
        request["session_id"].as_str().unwrap_or("?"),
    );
    Ok(())
}
