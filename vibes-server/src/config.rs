//! vibesd's configuration: a TOML file, overridden by `VIBESD_*`
//! environment variables and command-line flags (see `cli.rs`).
//!
//! Every section is optional; with no file at all vibesd runs on
//! 127.0.0.1:7432 with its data in the XDG data directory. An unknown key or
//! a bad value stops start-up with a message that names it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vibes_actors::LogWriterConfig;
use vibes_actors::group::{GroupConfig, GroupSpec};
use vibes_iggy::iggy::IggyConfig;
use vibes_iggy::{BackendChoice, BackendConfig, LogOptions, StartPosition};

/// The address vibesd listens on unless configured otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:7432";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser's message names the key and line.
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("invalid {what}: {message}")]
    Value { what: String, message: String },
    #[error(
        "no data directory: neither STATE_DIRECTORY, XDG_DATA_HOME nor HOME is set; \
         pass --data-dir or set data_dir in the config"
    )]
    NoDataDir,
}

/// Checks a bearer token: a client must be able to send it in an
/// `Authorization` header, so it is 1 to 512 printable ASCII characters
/// without spaces.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("it is empty".into());
    }
    if token.len() > 512 {
        return Err(format!("it is {} bytes long; at most 512", token.len()));
    }
    if let Some(bad) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "it holds {bad:?}; a token is printable ASCII (letters, digits, punctuation) \
             without spaces or line breaks"
        ));
    }
    Ok(())
}

/// The whole configuration, as the file spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address the API listens on. Anything but loopback requires a
    /// bearer token on every route but `/healthz`.
    pub bind: SocketAddr,
    /// Where the log and everything vibesd keeps live.
    pub data_dir: Option<PathBuf>,
    /// `auto`, `iggy`, `embedded` or `memory`.
    #[serde(deserialize_with = "from_str")]
    pub backend: BackendChoice,
    /// The bearer token; generated at first start when vibesd listens on a
    /// non-loopback address and none is given.
    pub token: Option<String>,
    /// Web origins (`scheme://host[:port]`) besides vibesd's own whose
    /// pages may use the API and WebSockets, e.g. a UI served elsewhere.
    /// Every other page is refused (see `docs/api.md`, "Browsers").
    pub allowed_origins: Vec<String>,
    pub limits: Limits,
    pub iggy: IggySection,
    pub supervisor: SupervisorSection,
    /// Per built-in group settings, by group name.
    pub groups: BTreeMap<String, GroupSection>,
    pub webhooks: Vec<Webhook>,
    /// Where people reach the web UI (`scheme://host[:port]`), for the
    /// links in notifications; default `http://<bind>`.
    pub public_url: Option<String>,
    pub remote_approval: RemoteApproval,
    /// `[plugins.<name>]`: `enabled`, read here, and the plugin's own keys,
    /// which it checks.
    pub plugins: BTreeMap<String, toml::Table>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND
                .parse()
                .unwrap_or_else(|err| unreachable!("the default address parses: {err}")),
            data_dir: None,
            backend: BackendChoice::Auto,
            token: None,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
            iggy: IggySection::default(),
            supervisor: SupervisorSection::default(),
            groups: BTreeMap::new(),
            webhooks: Vec::new(),
            public_url: None,
            remote_approval: RemoteApproval::default(),
            plugins: BTreeMap::new(),
        }
    }
}

/// Sizes and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest encoded event the log takes.
    pub max_event_bytes: usize,
    /// The largest request body the API reads.
    pub max_body_bytes: usize,
    /// Events queued for the LogWriter before producers get "busy".
    pub max_queued_events: usize,
    /// Live events the firehose holds for a client that reads slower than
    /// they come; a client that falls further behind is disconnected (and
    /// told where to resume).
    pub firehose_buffer: usize,
    /// The most client connections open at once, WebSockets included; one
    /// more is answered 503 and closed. Keep it well below the process's
    /// file limit (`ulimit -n`, `LimitNOFILE=`): the log needs files too.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's head (request line
    /// and headers), and an idle keep-alive connection may wait for its
    /// next request, before vibesd closes the connection.
    pub header_timeout_secs: u64,
    /// Seconds a request body may go without sending anything before
    /// vibesd answers 408 and closes the connection.
    pub body_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: vibes_iggy::DEFAULT_MAX_EVENT_BYTES,
            max_body_bytes: 4 * 1024 * 1024,
            max_queued_events: LogWriterConfig::default().max_queued_events,
            firehose_buffer: 1024,
            max_connections: 512,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
        }
    }
}

/// The longest wait `vibesd hook` may be given for a remote decision:
/// Claude Code's own hook timeout is 60 s unless set in the hooks block.
pub const MAX_APPROVAL_WAIT_SECS: u64 = 600;

/// Answering Claude Code's permission dialogs from the web UI, the API or
/// `vibesd approve`/`deny` (see `docs/hooks.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteApproval {
    /// Off by default: `vibesd hook` then never waits.
    pub enabled: bool,
    /// The tools whose requests may be decided remotely (`Bash`, `Edit`,
    /// `mcp__github__create_issue`, …); empty: every tool.
    pub tools: Vec<String>,
    /// How long `vibesd hook` waits for a decision before it leaves the
    /// dialog to the terminal.
    pub wait_secs: u64,
}

impl Default for RemoteApproval {
    fn default() -> Self {
        Self {
            enabled: false,
            tools: Vec::new(),
            wait_secs: 30,
        }
    }
}

impl RemoteApproval {
    /// Whether a request for `tool` waits for a remote decision.
    pub fn decides(&self, tool: &str) -> bool {
        self.enabled && (self.tools.is_empty() || self.tools.iter().any(|t| t == tool))
    }
}

/// How to reach Iggy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IggySection {
    /// An external server's `host:port`; when set, vibesd manages none.
    pub address: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `iggy-server` binary to manage; else it is looked up on `PATH`.
    pub server_binary: Option<PathBuf>,
    /// The managed server's TCP port (0: any free one).
    pub tcp_port: u16,
}

/// The longest cool-down a `failed` group may be given: a week.
const MAX_FAILED_COOLDOWN_SECS: u64 = 7 * 24 * 3600;

/// How the Supervisor treats every group (a group's own section may
/// override it).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorSection {
    /// Seconds a group marked `failed` (restarted too often) stays stopped
    /// before it is started again by itself.
    pub failed_cooldown_secs: u64,
    /// Seconds one batch may be in a group's handler before the group shows
    /// `stuck` (in `/api/groups`, `/metrics` and `/readyz`, which then
    /// answers 503). The group is not stopped for it.
    pub stuck_after_secs: u64,
}

impl Default for SupervisorSection {
    fn default() -> Self {
        Self {
            failed_cooldown_secs: vibes_actors::group::DEFAULT_FAILED_COOLDOWN.as_secs(),
            stuck_after_secs: vibes_actors::group::DEFAULT_STUCK_AFTER.as_secs(),
        }
    }
}

/// Settings of one consumer group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSection {
    pub batch_size: Option<usize>,
    pub poll_timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    /// Overrides `supervisor.failed_cooldown_secs` for this group.
    pub failed_cooldown_secs: Option<u64>,
    /// Overrides `supervisor.stuck_after_secs` for this group.
    pub stuck_after_secs: Option<u64>,
    /// Leave the group out entirely.
    pub disabled: bool,
    /// `session-collector` only: seconds without an event after which an
    /// open session's transcript is written (default 600).
    pub idle_timeout_secs: Option<u64>,
}

/// A webhook the `notifications` group posts to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Which notifications it gets (`permission_request`, `notification`,
    /// `waiting_for_input`); empty: all of them.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// `json` (default) or `text` (ntfy-style plain body).
    #[serde(default = "json_format")]
    pub format: String,
}

fn json_format() -> String {
    "json".into()
}

fn from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads `path`; a missing file is an error only if `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the TOML of a config file. Every error is one line that
    /// names the key (and, for syntax, the line and column).
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|err| {
            let message = err.message().trim().replace('\n', " ");
            match err.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    // The line itself names the key (a value's error does not).
                    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                    let source = crate::clip::clip(source);
                    format!("line {line}, column {column} ({source}): {message}")
                }
                None => message,
            }
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let at_least_one = [
            ("limits.max_event_bytes", self.limits.max_event_bytes),
            ("limits.max_body_bytes", self.limits.max_body_bytes),
            ("limits.max_queued_events", self.limits.max_queued_events),
        ];
        if self.supervisor.stuck_after_secs == 0 {
            return Err(
                "supervisor.stuck_after_secs = 0 cannot work: it must be at least 1".to_owned(),
            );
        }
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(format!("{key} = 0 cannot work: it must be at least 1"));
            }
        }
        for origin in &self.allowed_origins {
            crate::api::valid_origin(origin).map_err(|err| format!("allowed_origins: {err}"))?;
        }
        if let Some(token) = &self.token {
            check_token(token).map_err(|err| format!("token: {err}"))?;
        }
        for (name, section) in &self.groups {
            let zero = [
                ("batch_size", section.batch_size.map(|n| n as u64)),
                ("poll_timeout_ms", section.poll_timeout_ms),
                ("max_attempts", section.max_attempts.map(u64::from)),
                ("stuck_after_secs", section.stuck_after_secs),
            ];
            for (key, value) in zero {
                if value == Some(0) {
                    return Err(format!(
                        "groups.{name}.{key} = 0 cannot work: it must be at least 1"
                    ));
                }
            }
        }
        let plugins = crate::plugins::linked();
        for name in self.groups.keys() {
            let of_a_plugin = plugins
                .iter()
                .any(|plugin| plugin.group_names().contains(&name.as_str()));
            if !crate::consumers::BUILT_IN.contains(&name.as_str()) && !of_a_plugin {
                return Err(format!(
                    "unknown group {name:?} in [groups]: the groups are {}",
                    crate::consumers::BUILT_IN
                        .iter()
                        .chain(plugins.iter().flat_map(|plugin| plugin.group_names()))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        for (name, section) in &self.plugins {
            let Some(plugin) = plugins.iter().find(|plugin| plugin.name() == name) else {
                let linked: Vec<_> = plugins.iter().map(|plugin| plugin.name()).collect();
                return Err(format!(
                    "unknown plugin {name:?} in [plugins]: this vibesd was built with {}",
                    if linked.is_empty() {
                        "none".to_owned()
                    } else {
                        linked.join(", ")
                    }
                ));
            };
            if let Some(enabled) = section.get("enabled")
                && !enabled.is_bool()
            {
                return Err(format!(
                    "plugins.{name}.enabled must be true or false, not a {}",
                    enabled.type_str()
                ));
            }
            let mut own = section.clone();
            own.remove("enabled");
            plugin.check_config(&own)?;
        }
        for (name, section) in &self.groups {
            match section.idle_timeout_secs {
                Some(_) if name != "session-collector" => {
                    return Err(format!(
                        "idle_timeout_secs in [groups.{name}]: only session-collector has one"
                    ));
                }
                Some(0) => {
                    return Err(format!(
                        "groups.{name}.idle_timeout_secs = 0 cannot work: it must be at least 1"
                    ));
                }
                _ => {}
            }
        }
        let cooldowns = self
            .groups
            .iter()
            .filter_map(|(name, section)| {
                section
                    .failed_cooldown_secs
                    .map(|secs| (format!("groups.{name}.failed_cooldown_secs"), secs))
            })
            .chain([(
                "supervisor.failed_cooldown_secs".to_owned(),
                self.supervisor.failed_cooldown_secs,
            )]);
        for (key, secs) in cooldowns {
            if !(1..=MAX_FAILED_COOLDOWN_SECS).contains(&secs) {
                return Err(format!(
                    "{key} {secs} must be between 1 and {MAX_FAILED_COOLDOWN_SECS} (a week)"
                ));
            }
        }
        for webhook in &self.webhooks {
            if !webhook.url.starts_with("http://") && !webhook.url.starts_with("https://") {
                return Err(format!(
                    "webhook url {:?} must start with http:// or https://",
                    webhook.url
                ));
            }
        }
        if !(1..=1 << 20).contains(&self.limits.firehose_buffer) {
            return Err(format!(
                "limits.firehose_buffer {} must be between 1 and {}",
                self.limits.firehose_buffer,
                1 << 20
            ));
        }
        // Beyond these, a value is a typo, and a timer that far away would
        // overflow the clock.
        for (key, value, max) in [
            (
                "max_connections",
                u64::try_from(self.limits.max_connections).unwrap_or(u64::MAX),
                1 << 20,
            ),
            (
                "header_timeout_secs",
                self.limits.header_timeout_secs,
                86_400,
            ),
            ("body_timeout_secs", self.limits.body_timeout_secs, 86_400),
        ] {
            if !(1..=max).contains(&value) {
                return Err(format!("limits.{key} {value} must be between 1 and {max}"));
            }
        }
        crate::consumers::notifications::check(&self.webhooks)?;
        if let Some(url) = &self.public_url {
            crate::api::valid_origin(url).map_err(|err| format!("public_url: {err}"))?;
        }
        let approval = &self.remote_approval;
        if !(1..=MAX_APPROVAL_WAIT_SECS).contains(&approval.wait_secs) {
            return Err(format!(
                "remote_approval.wait_secs {} must be between 1 and {MAX_APPROVAL_WAIT_SECS}; \
                 keep it below the hook's timeout in Claude Code's settings",
                approval.wait_secs
            ));
        }
        if let Some(tool) = approval.tools.iter().find(|tool| tool.trim().is_empty()) {
            return Err(format!(
                "remote_approval.tools holds {tool:?}: a tool is named as Claude Code names it \
                 (Bash, Edit, Write, …)"
            ));
        }
        if approval.enabled
            && self
                .groups
                .get(crate::consumers::websocket::GROUP)
                .is_some_and(|group| group.disabled)
        {
            return Err(
                "remote_approval.enabled needs the websocket group (vibesd hook waits on the \
                 firehose); remove disabled = true from [groups.websocket]"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Where people reach the web UI: `public_url`, else `http://<bind>`
    /// (loopback for a daemon bound to every address).
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let address = if self.bind.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), self.bind.port())
        } else {
            self.bind
        };
        format!("http://{address}")
    }

    /// The data directory: configured, else `$STATE_DIRECTORY` (systemd),
    /// else the XDG data directory.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        if let Some(state) = std::env::var_os("STATE_DIRECTORY").filter(|dir| !dir.is_empty()) {
            // systemd may pass several, colon-separated; the first is ours.
            let first = state
                .to_string_lossy()
                .split(':')
                .next()
                .map(PathBuf::from)
                .unwrap_or_default();
            return Ok(first);
        }
        vibes_core::default_data_dir().ok_or(ConfigError::NoDataDir)
    }

    /// How the log is opened.
    pub fn backend_config(&self, data_dir: &Path) -> BackendConfig {
        BackendConfig {
            backend: self.backend,
            data_dir: data_dir.to_owned(),
            options: LogOptions {
                max_event_bytes: self.limits.max_event_bytes,
            },
            iggy: IggyConfig {
                address: self.iggy.address.clone(),
                username: self.iggy.username.clone(),
                password: self.iggy.password.clone(),
                server_binary: self.iggy.server_binary.clone(),
                tcp_port: self.iggy.tcp_port,
                server_env: Vec::new(),
            },
        }
    }

    /// How the HTTP server treats its clients; `grace` is how long open
    /// connections get at shutdown.
    pub(crate) fn serve_limits(&self, grace: Duration) -> crate::serve::ServeLimits {
        crate::serve::ServeLimits {
            max_connections: self.limits.max_connections,
            header_timeout: Duration::from_secs(self.limits.header_timeout_secs),
            grace,
        }
    }

    /// The LogWriter's settings.
    pub fn writer_config(&self) -> LogWriterConfig {
        LogWriterConfig {
            max_queued_events: self.limits.max_queued_events,
            ..LogWriterConfig::default()
        }
    }

    /// A plugin's section without `enabled`, if the plugin is enabled
    /// (`enabled` in it, else `by_default`).
    pub fn plugin_section(&self, name: &str, by_default: bool) -> Option<toml::Table> {
        let mut section = self.plugins.get(name).cloned().unwrap_or_default();
        let enabled = section
            .remove("enabled")
            .and_then(|value| value.as_bool())
            .unwrap_or(by_default);
        enabled.then_some(section)
    }

    /// A plugin's group as the Supervisor runs it, with the same settings
    /// and `[groups.<name>]` overrides as a built-in group (`disabled`
    /// aside: a plugin is disabled in `[plugins.<name>]`).
    pub fn plugin_group(&self, group: vibes_plugin::PluginGroup) -> GroupSpec {
        let start = match group.start {
            vibes_plugin::Start::Beginning => StartPosition::Beginning,
            vibes_plugin::Start::End => StartPosition::End,
        };
        let section = self.groups.get(&group.name).cloned().unwrap_or_default();
        GroupSpec {
            config: self.group_with(&group.name, start, &section),
            handler: group.handler,
        }
    }

    /// A built-in group's settings, with this config's overrides; `None`
    /// if it is disabled.
    pub fn group(&self, name: &str, start: StartPosition) -> Option<GroupConfig> {
        let section = self.groups.get(name).cloned().unwrap_or_default();
        if section.disabled {
            return None;
        }
        Some(self.group_with(name, start, &section))
    }

    /// `name`'s settings: the defaults, this config's supervisor settings,
    /// and `section`'s overrides.
    fn group_with(&self, name: &str, start: StartPosition, section: &GroupSection) -> GroupConfig {
        let mut config = GroupConfig::new(name);
        config.start = start;
        if let Some(batch_size) = section.batch_size {
            config.batch_size = batch_size;
        }
        if let Some(ms) = section.poll_timeout_ms {
            config.poll_timeout = Duration::from_millis(ms);
        }
        if let Some(attempts) = section.max_attempts {
            config.max_attempts = attempts;
        }
        config.restart.cooldown = Duration::from_secs(
            section
                .failed_cooldown_secs
                .unwrap_or(self.supervisor.failed_cooldown_secs),
        );
        config.stuck_after = Duration::from_secs(
            section
                .stuck_after_secs
                .unwrap_or(self.supervisor.stuck_after_secs),
        );
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert_eq!(config.backend, BackendChoice::Auto);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::parse("bnd = \"x\"").unwrap_err();
        assert!(err.contains("bnd"), "{err}");
        let err = Config::parse("backend = \"postgres\"").unwrap_err();
        assert!(err.contains("postgres"), "{err}");
        let err = Config::parse("bind = \"nowhere\"").unwrap_err();
        assert!(err.contains("bind"), "{err}");
        let err = Config::parse("[groups.nope]\nbatch_size = 5").unwrap_err();
        assert!(err.contains("nope"), "{err}");
        let err = Config::parse("[groups.websocket]\nidle_timeout_secs = 5").unwrap_err();
        assert!(err.contains("idle_timeout_secs"), "{err}");
        let err = Config::parse("[[webhooks]]\nurl = \"ftp://x\"").unwrap_err();
        assert!(err.contains("ftp://x"), "{err}");
        let err = Config::parse("[supervisor]\nstuck_after_secs = 0").unwrap_err();
        assert!(err.contains("supervisor.stuck_after_secs = 0"), "{err}");
        let err = Config::parse("[groups.websocket]\nstuck_after_secs = 0").unwrap_err();
        assert!(
            err.contains("groups.websocket.stuck_after_secs = 0"),
            "{err}"
        );
        let err = Config::parse("[supervisor]\nfailed_cooldown_secs = 0").unwrap_err();
        assert!(err.contains("supervisor.failed_cooldown_secs 0"), "{err}");
        let err = Config::parse("[groups.websocket]\nfailed_cooldown_secs = 99999999").unwrap_err();
        assert!(
            err.contains("groups.websocket.failed_cooldown_secs 99999999"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_groups_cooldown_is_global_unless_the_group_sets_its_own() {
        let start = StartPosition::Beginning;
        let defaults = Config::parse("").unwrap();
        assert_eq!(
            defaults.group("websocket", start).unwrap().restart.cooldown,
            Duration::from_secs(300)
        );
        let config = Config::parse(
            "[supervisor]\nfailed_cooldown_secs = 60\n\
             [groups.chat-history]\nfailed_cooldown_secs = 5",
        )
        .unwrap();
        assert_eq!(
            config.group("websocket", start).unwrap().restart.cooldown,
            Duration::from_secs(60)
        );
        assert_eq!(
            config
                .group("chat-history", start)
                .unwrap()
                .restart
                .cooldown,
            Duration::from_secs(5)
        );
    }

    // A limit, batch size, attempt count or poll timeout of 0 was taken
    // (or silently raised to 1): each is now refused, naming its key.
    #[test]
    fn values_that_cannot_work_are_refused_naming_the_key() {
        for (toml, key) in [
            ("[limits]\nmax_event_bytes = 0", "limits.max_event_bytes"),
            ("[limits]\nmax_body_bytes = 0", "limits.max_body_bytes"),
            (
                "[limits]\nmax_queued_events = 0",
                "limits.max_queued_events",
            ),
            ("[limits]\nfirehose_buffer = 0", "limits.firehose_buffer"),
            (
                "[groups.chat-history]\nbatch_size = 0",
                "groups.chat-history.batch_size",
            ),
            (
                "[groups.websocket]\nmax_attempts = 0",
                "groups.websocket.max_attempts",
            ),
            (
                "[groups.websocket]\npoll_timeout_ms = 0",
                "groups.websocket.poll_timeout_ms",
            ),
            (
                "[groups.session-collector]\nidle_timeout_secs = 0",
                "groups.session-collector.idle_timeout_secs",
            ),
            ("allowed_origins = [\"*\"]", "allowed_origins"),
            ("public_url = \"vibes.example\"", "public_url"),
            (
                "[remote_approval]\nwait_secs = 0",
                "remote_approval.wait_secs",
            ),
            (
                "[remote_approval]\nwait_secs = 601",
                "remote_approval.wait_secs",
            ),
            (
                "[remote_approval]\ntools = [\" \"]",
                "remote_approval.tools",
            ),
            ("[remote_approval]\nenabld = true", "enabld"),
            (
                "[remote_approval]\nenabled = true\n[groups.websocket]\ndisabled = true",
                "remote_approval.enabled",
            ),
        ] {
            let err = Config::parse(toml).unwrap_err();
            assert!(err.contains(key), "{toml}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    // A token holding a space, a newline or non-ASCII was taken, and then no
    // client could send it in an Authorization header.
    #[test]
    fn tokens_no_client_can_send_are_refused() {
        for bad in [
            "",
            "two words",
            "line\nbreak",
            "tab\there",
            "ünïcode",
            &"x".repeat(513),
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(check_token("Abc-123_~+/=.").is_ok());
        let err = Config::parse("token = \"a b\"").unwrap_err();
        assert!(err.starts_with("token:"), "{err}");
    }

    // The TOML parser's error spans several lines (a snippet with a caret);
    // a config error is one line with the line and column.
    #[test]
    fn remote_approval_is_off_unless_turned_on_and_then_covers_the_listed_tools() {
        let off = Config::parse("").unwrap().remote_approval;
        assert!(!off.decides("Bash"));
        assert_eq!(off.wait_secs, 30);
        let every = Config::parse("[remote_approval]\nenabled = true").unwrap();
        assert!(every.remote_approval.decides("Bash"));
        assert!(every.remote_approval.decides("mcp__github__create_issue"));
        let listed =
            Config::parse("[remote_approval]\nenabled = true\ntools = [\"Bash\"]").unwrap();
        assert!(listed.remote_approval.decides("Bash"));
        assert!(!listed.remote_approval.decides("Edit"));
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_position() {
        let err = Config::parse("bind = \"127.0.0.1:0\"\n[limits\n").unwrap_err();
        assert!(err.starts_with("line 2, column"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = Config::parse("[limits]\nmax_body = 3").unwrap_err();
        assert!(err.contains("max_body") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn a_zero_connection_limit_or_timeout_is_refused_naming_the_key() {
        for key in [
            "max_connections",
            "header_timeout_secs",
            "body_timeout_secs",
        ] {
            let err = Config::parse(&format!("[limits]\n{key} = 0")).unwrap_err();
            assert!(err.contains(&format!("limits.{key}")), "{err}");
        }
        let limits = Config::parse("").unwrap().limits;
        assert!(limits.max_connections > 0 && limits.header_timeout_secs > 0);
    }
}
