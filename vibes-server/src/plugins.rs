//! The plugins this vibesd was built with (a cargo feature each, on by
//! default), the ones its config enables, and what they add to a running
//! daemon: their consumer groups (supervised like the built-in ones), their
//! routes under `/api/plugins/<name>/`, their answers to Claude Code hooks
//! and their `vibesd <name>` subcommand.

use std::path::Path;
use std::sync::Arc;

use vibes_plugin::{Plugin, PluginContext, PluginError, RunningPlugin};

use crate::config::Config;

/// Every plugin linked into this build.
pub fn linked() -> Vec<Box<dyn Plugin>> {
    vec![
        #[cfg(feature = "groove")]
        Box::new(vibes_groove::Groove),
    ]
}

/// The linked plugin called `name`.
pub fn find(name: &str) -> Option<Box<dyn Plugin>> {
    linked().into_iter().find(|plugin| plugin.name() == name)
}

/// A plugin running in this daemon.
pub struct Started {
    pub name: &'static str,
    pub running: Box<dyn RunningPlugin>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The consumer groups of the started `plugins`, as the Supervisor runs
/// them (with `[groups.<name>]` overrides).
pub fn group_specs(config: &Config, plugins: &[Started]) -> Vec<vibes_actors::group::GroupSpec> {
    plugins
        .iter()
        .flat_map(|plugin| plugin.running.groups())
        .map(|group| config.plugin_group(group))
        .collect()
}

/// Starts every linked plugin the config enables.
pub fn start(
    config: &Config,
    data_dir: &Path,
    feed: &crate::consumers::notifications::Feed,
) -> Result<Arc<[Started]>, PluginError> {
    let mut started = Vec::new();
    for plugin in linked() {
        let name = plugin.name();
        let Some(section) = config.plugin_section(name, plugin.enabled_by_default()) else {
            tracing::info!(plugin = name, "plugin disabled in the config");
            continue;
        };
        let context = PluginContext {
            data_dir: data_dir.to_owned(),
            config: section,
            notices: {
                let feed = feed.clone();
                vibes_plugin::Notices::new(move |notice| feed.push(notice.into()))
            },
        };
        let running = plugin.start(&context)?;
        tracing::info!(plugin = name, "plugin started");
        started.push(Started { name, running });
    }
    Ok(started.into())
}
