//! The `assessment` group's handler: applies each batch to the groove store
//! on a blocking thread and commits only once the store has. A breaker that
//! opens on a recent event is raised as a notice for the web UI.

use std::sync::Arc;

use async_trait::async_trait;
use vibes_core::{Delivery, Handled, Handler};
use vibes_plugin::{Notice, Notices};

use crate::record::Transition;
use crate::store::GrooveStore;

/// A breaker opened on an event older than this (a rebuild of the store,
/// a backlog) is stored but not raised: nobody needs last week's alert.
const NOTICE_HORIZON: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The handler over the shared store; the group's factory makes a fresh one
/// on each (re)start, over the same store.
pub struct AssessmentHandler {
    store: Arc<GrooveStore>,
    notices: Notices,
}

impl std::fmt::Debug for AssessmentHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssessmentHandler")
            .field("store", &self.store.path())
            .finish()
    }
}

impl AssessmentHandler {
    pub fn new(store: Arc<GrooveStore>, notices: Notices) -> Self {
        Self { store, notices }
    }

    fn raise(&self, batch: &[Delivery], session_id: String, transition: &Transition) {
        let Some((offset, stored)) = batch
            .iter()
            .find(|(offset, _)| *offset == transition.offset)
        else {
            return;
        };
        if chrono::Utc::now() - stored.timestamp > NOTICE_HORIZON {
            return;
        }
        self.notices.raise(Notice {
            kind: "breaker_open",
            title: "Session in trouble".to_owned(),
            message: format!(
                "The assessment breaker of {session_id} opened: {}",
                transition.reason
            ),
            session_id,
            offset: *offset,
            event_id: stored.event_id.to_string(),
            timestamp: stored.timestamp.to_rfc3339(),
        });
    }
}

#[async_trait]
impl Handler for AssessmentHandler {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        let first = batch.first().map(|(offset, _)| *offset).unwrap_or_default();
        match vibes_plugin::run_blocking(|| self.store.apply(batch)) {
            Ok(Ok(opened)) => {
                for (session_id, transition) in opened {
                    self.raise(batch, session_id, &transition);
                }
                Handled::All
            }
            // The batch's transaction rolled back: none of it is applied.
            Ok(Err(err)) => Handled::Failed {
                offset: first,
                error: vibes_core::error_chain(&err),
            },
            Err(panic) => Handled::Failed {
                offset: first,
                error: format!("groove assessment panicked: {panic}"),
            },
        }
    }

    fn resume_at(&self) -> Option<u64> {
        match self.store.resume_at() {
            Ok(next) => Some(next),
            Err(err) => {
                // From 0 is always safe: what the store holds is skipped.
                tracing::warn!(
                    "groove: cannot read the applied offset ({}); reading from 0",
                    vibes_core::ErrorChain(&err)
                );
                Some(0)
            }
        }
    }

    async fn rewound(&mut self, to: u64) -> Result<u64, String> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.rewind(to)).await {
            Ok(result) => result.map_err(|err| vibes_core::error_chain(&err)),
            Err(join) => Err(format!("groove rewind panicked: {join}")),
        }
    }
}
