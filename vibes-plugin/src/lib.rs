//! The plugin API of vibesd.
//!
//! A plugin is a crate that depends on this one and `vibes-core` (never on
//! `vibes-server`). It declares, through [`Plugin`]:
//!
//! - its name, which names its config section (`[plugins.<name>]` in
//!   `vibesd.toml`), its routes (`/api/plugins/<name>/…`) and its CLI
//!   subcommand (`vibesd <name> …`);
//! - whether it runs when the config says nothing (`enabled` is read by
//!   vibesd; every other key of the section is the plugin's to check);
//! - once started for a daemon ([`Plugin::start`]): the consumer groups it
//!   runs, each a name, a start position and a [`Handler`] factory, which the
//!   Supervisor supervises like the built-in ones (restarts, dead letters,
//!   lag, metrics, control API); its HTTP routes; and its answers to Claude
//!   Code hooks ([`RunningPlugin::answer_hook`]);
//! - a CLI subcommand, if it has one ([`PluginCli`]): the plugin turns the
//!   arguments into a GET of one of its routes and renders the answer.
//!
//! vibesd links the plugins it was built with (a cargo feature per plugin,
//! on by default) and starts each one its config enables.

use std::path::PathBuf;
use std::sync::Arc;

mod blocking;
pub use blocking::run_blocking;

use serde_json::Value;
use vibes_core::{Handler, HookPayload, VibesEvent};

/// Makes a fresh handler: at a group's first start and after every restart.
pub type HandlerFactory = Arc<dyn Fn() -> Box<dyn Handler> + Send + Sync>;

/// Where a group that has never committed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Replays the whole log first.
    Beginning,
    /// Only what is appended from now on.
    End,
}

/// A consumer group a plugin runs.
#[derive(Clone)]
pub struct PluginGroup {
    /// The group's name in the log; unique across vibesd.
    pub name: String,
    pub start: Start,
    pub handler: HandlerFactory,
}

impl std::fmt::Debug for PluginGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginGroup")
            .field("name", &self.name)
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

/// What a plugin is started with.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// vibesd's data directory; a plugin keeps its state in files named
    /// after it there (e.g. `<data>/groove.sqlite`).
    pub data_dir: PathBuf,
    /// `[plugins.<name>]` without `enabled`; empty when absent. Already
    /// checked by [`Plugin::check_config`].
    pub config: toml::Table,
    /// Where the plugin raises notifications for the people watching (the
    /// web UI's notifications, next to vibesd's own).
    pub notices: Notices,
}

/// A notification a plugin raises about an event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// What it is about, e.g. `breaker_open`; vibesd's own kinds are
    /// `permission_request`, `notification` and `waiting_for_input`.
    pub kind: &'static str,
    pub session_id: String,
    pub title: String,
    pub message: String,
    /// The offset of the event it is about: with `kind`, its identity (a
    /// notice raised again for the same event is shown once).
    pub offset: u64,
    pub event_id: String,
    /// When vibesd accepted that event (RFC 3339).
    pub timestamp: String,
}

/// Takes a plugin's [`Notice`]s; cheap to clone.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(Notice) + Send + Sync>);

impl Notices {
    pub fn new(sink: impl Fn(Notice) + Send + Sync + 'static) -> Self {
        Self(Arc::new(sink))
    }

    /// Notices that go nowhere (tests, tools).
    pub fn none() -> Self {
        Self::new(|_| {})
    }

    pub fn raise(&self, notice: Notice) {
        (self.0)(notice);
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notices")
    }
}

/// Why a plugin could not start.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {message}")]
pub struct PluginError {
    pub plugin: &'static str,
    pub message: String,
}

/// A plugin as vibesd links it.
pub trait Plugin: Send + Sync + 'static {
    /// Its name: `[plugins.<name>]`, `/api/plugins/<name>/`, `vibesd <name>`.
    fn name(&self) -> &'static str;

    /// Whether it runs when its section does not set `enabled`.
    fn enabled_by_default(&self) -> bool;

    /// The names of the consumer groups it runs, known before it starts,
    /// so that `[groups.<name>]` may tune them.
    fn group_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks `[plugins.<name>]` (without `enabled`) when vibesd loads its
    /// config; the error names the bad key as `plugins.<name>.<key>`.
    fn check_config(&self, section: &toml::Table) -> Result<(), String>;

    /// Starts the plugin for a daemon: opens its state and says what it
    /// runs.
    fn start(&self, context: &PluginContext) -> Result<Box<dyn RunningPlugin>, PluginError>;

    /// Its `vibesd <name>` subcommand, if it has one.
    fn cli(&self) -> Option<PluginCli> {
        None
    }
}

/// A started plugin.
pub trait RunningPlugin: Send + Sync + 'static {
    /// The consumer groups it runs.
    fn groups(&self) -> Vec<PluginGroup>;

    /// Its routes, with paths relative to `/api/plugins/<name>` (e.g.
    /// `/sessions` is served at `/api/plugins/<name>/sessions`). vibesd puts
    /// them behind the same guard, token and limits as its own.
    fn routes(&self) -> axum::Router;

    /// A Claude Code hook payload of `session_id` was recorded; the plugin
    /// may answer it. Called for every hook, so it must be quick and must
    /// not wait on anything but its own state.
    fn answer_hook(&self, session_id: &str, payload: &HookPayload) -> Option<HookAnswer> {
        let _ = (session_id, payload);
        None
    }
}

/// A plugin's answer to a hook.
#[derive(Debug, Clone, PartialEq)]
pub struct HookAnswer {
    /// What `vibesd hook` prints on stdout for Claude Code, e.g.
    /// `{"hookSpecificOutput": {...}}`.
    pub output: Value,
    /// Appended to the log (through the LogWriter) before the answer is
    /// given, so that the answer is recorded: a [`VibesEvent::Plugin`].
    pub record: Option<VibesEvent>,
}

/// A plugin's `vibesd <name> [args…]` subcommand, which talks to a running
/// daemon through the plugin's routes.
#[derive(Debug, Clone, Copy)]
pub struct PluginCli {
    /// One line for `vibesd --help`.
    pub about: &'static str,
    /// The route to GET for `args`, relative to `/api/plugins/<name>`
    /// (e.g. `/sessions`), or the usage error to print.
    pub request: fn(args: &[String]) -> Result<String, String>,
    /// What to print for `args`, given the route's JSON answer.
    pub render: fn(args: &[String], answer: &Value) -> String,
}
