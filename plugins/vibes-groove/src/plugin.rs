//! groove as vibesd links it: [`Groove`] (name, config check, start, CLI)
//! and [`RunningGroove`] (the `assessment` group, the routes, and the
//! answer to `UserPromptSubmit` while a session's breaker is open).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;
use vibes_core::{HookPayload, VibesEvent};
use vibes_plugin::{
    HookAnswer, Notices, Plugin, PluginCli, PluginContext, PluginError, PluginGroup, RunningPlugin,
    Start,
};

use crate::assess::{INTERVENTION, PLUGIN};
use crate::config::GrooveConfig;
use crate::handler::AssessmentHandler;
use crate::note::note;
use crate::record::BreakerState;
use crate::store::GrooveStore;

/// The plugin's name: `[plugins.groove]`, `/api/plugins/groove`,
/// `vibesd groove`.
pub const NAME: &str = "groove";
/// Its one consumer group.
pub const GROUP: &str = "assessment";

/// Interventions remembered until the group has recorded them; older ones
/// are in the store by then (the group is seconds behind at most, when it
/// is running at all).
const GIVEN: usize = 1024;

/// The assessment plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Groove;

impl Plugin for Groove {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled_by_default(&self) -> bool {
        true
    }

    fn group_names(&self) -> &'static [&'static str] {
        &[GROUP]
    }

    fn check_config(&self, section: &toml::Table) -> Result<(), String> {
        GrooveConfig::from_table(section)
            .map(drop)
            .map_err(|err| err.to_string())
    }

    fn start(&self, context: &PluginContext) -> Result<Box<dyn RunningPlugin>, PluginError> {
        let failed = |message: String| PluginError {
            plugin: NAME,
            message,
        };
        let config =
            GrooveConfig::from_table(&context.config).map_err(|err| failed(err.to_string()))?;
        let store = GrooveStore::open(&context.data_dir, &config)
            .map_err(|err| failed(vibes_core::error_chain(&err)))?;
        Ok(Box::new(RunningGroove::new(
            Arc::new(store),
            config,
            context.notices.clone(),
        )))
    }

    fn cli(&self) -> Option<PluginCli> {
        Some(crate::cli::cli())
    }
}

/// groove started for a daemon. Owns the store (shared with the group's
/// handlers and the routes) until the daemon drops it at shutdown.
pub struct RunningGroove {
    store: Arc<GrooveStore>,
    config: GrooveConfig,
    notices: Notices,
    /// (session, open offset) of the notes given, newest last: the group
    /// may not have read their records yet, and each Open gets one note.
    given: Mutex<VecDeque<(String, u64)>>,
}

impl std::fmt::Debug for RunningGroove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGroove")
            .field("store", &self.store)
            .field("intervene", &self.config.intervene)
            .finish_non_exhaustive()
    }
}

impl RunningGroove {
    /// groove over `store`, with `config` (as checked by
    /// [`GrooveConfig::from_table`]).
    pub fn new(store: Arc<GrooveStore>, config: GrooveConfig, notices: Notices) -> Self {
        Self {
            store,
            config,
            notices,
            given: Mutex::new(VecDeque::new()),
        }
    }

    /// The store the group writes and the routes read.
    pub fn store(&self) -> &Arc<GrooveStore> {
        &self.store
    }
}

impl RunningPlugin for RunningGroove {
    fn groups(&self) -> Vec<PluginGroup> {
        let store = self.store.clone();
        let notices = self.notices.clone();
        vec![PluginGroup {
            name: GROUP.into(),
            start: Start::Beginning,
            handler: Arc::new(move || {
                Box::new(AssessmentHandler::new(store.clone(), notices.clone()))
            }),
        }]
    }

    fn routes(&self) -> axum::Router {
        crate::routes::routes(self.store.clone())
    }

    /// A note for a `UserPromptSubmit` of a session whose breaker is open,
    /// once per Open and at most `max_interventions` per session, when
    /// `intervene` is on. One indexed SQLite read; nothing else waits.
    fn answer_hook(&self, session_id: &str, payload: &HookPayload) -> Option<HookAnswer> {
        if !self.config.intervene || payload.hook_event_name != "UserPromptSubmit" {
            return None;
        }
        let state = match self.store.session_state(session_id) {
            Ok(state) => state?,
            Err(err) => {
                tracing::warn!(
                    session_id,
                    "groove: no intervention, the store cannot be read: {}",
                    vibes_core::ErrorChain(&err)
                );
                return None;
            }
        };
        if state.breaker != BreakerState::Open {
            return None;
        }
        let open = state.open_offset?;
        if state.intervened_open.is_some_and(|done| done >= open) {
            return None;
        }
        let mut given = self.given.lock().unwrap_or_else(PoisonError::into_inner);
        if given
            .iter()
            .any(|(session, offset)| session == session_id && *offset == open)
        {
            return None;
        }
        // Notes given that the group has not recorded yet count too.
        let pending = given
            .iter()
            .filter(|(session, offset)| {
                session == session_id && state.intervened_open.is_none_or(|done| *offset > done)
            })
            .count() as u32;
        if state.interventions + pending >= self.config.max_interventions {
            return None;
        }
        if given.len() == GIVEN {
            given.pop_front();
        }
        given.push_back((session_id.to_owned(), open));
        drop(given);

        let note = note(&state);
        Some(HookAnswer {
            output: json!({
                "hookSpecificOutput": {
                    "hookEventName": "UserPromptSubmit",
                    "additionalContext": note,
                }
            }),
            record: Some(VibesEvent::Plugin {
                plugin: PLUGIN.into(),
                kind: INTERVENTION.into(),
                session_id: Some(session_id.to_owned()),
                data: json!({ "open_offset": open, "note": note }),
            }),
        })
    }
}
