//! The assessment's state of one session, saved in the store with the rows
//! it produced and loaded again for the next batch that touches the
//! session. Every list in it is capped, so a session's state stays the
//! same small size however long the session runs.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::record::{BreakerState, SignalKind, Snippet};

/// Assistant text kept per message: enough to find an apology, bounded so
/// that a long message costs no more.
pub(crate) const PENDING_TEXT_BYTES: usize = 8 * 1024;
/// Claude tool-use ids remembered to name the tool of a later result.
pub(crate) const TOOL_IDS: usize = 64;
/// Failed (tool, input) pairs remembered to spot a retry.
pub(crate) const FAILED_INPUTS: usize = 16;
/// Recent negative signals kept for the intervention note.
pub(crate) const TROUBLE: usize = 16;
/// Distinct tools counted in a segment; the rest count as `other`.
pub(crate) const SEGMENT_TOOLS: usize = 32;
/// Snippets a checkpoint keeps.
pub(crate) const SNIPPETS: usize = 3;

/// An assistant message being streamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingText {
    /// The first [`PENDING_TEXT_BYTES`] of it.
    pub(crate) text: String,
    /// Its whole length so far, in characters.
    pub(crate) chars: u64,
    pub(crate) from_offset: u64,
}

/// A negative signal, kept for the note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TroubleNote {
    pub(crate) kind: SignalKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    pub(crate) detail: String,
}

/// What a session did since its last checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Segment {
    pub(crate) from_offset: Option<u64>,
    pub(crate) started_ms: i64,
    pub(crate) events: u64,
    /// By kind name; bounded by the number of kinds.
    pub(crate) signals: BTreeMap<String, u64>,
    /// At most [`SEGMENT_TOOLS`] + 1 entries.
    pub(crate) failures_by_tool: BTreeMap<String, u64>,
    /// The strongest negative snippets, strongest first, at most
    /// [`SNIPPETS`].
    pub(crate) snippets: Vec<Snippet>,
}

impl Segment {
    pub(crate) fn count_failure(&mut self, tool: &str) {
        let key = if self.failures_by_tool.contains_key(tool)
            || self.failures_by_tool.len() < SEGMENT_TOOLS
        {
            tool
        } else {
            "other"
        };
        *self.failures_by_tool.entry(key.to_owned()).or_default() += 1;
    }

    /// Keeps `snippet` if it is among the strongest: by confidence, then
    /// the earliest.
    pub(crate) fn offer(&mut self, snippet: Snippet) {
        let at = self
            .snippets
            .iter()
            .position(|kept| snippet.confidence > kept.confidence)
            .unwrap_or(self.snippets.len());
        if at < SNIPPETS {
            self.snippets.insert(at, snippet);
            self.snippets.truncate(SNIPPETS);
        }
    }
}

/// Everything the assessment knows about a session between events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SessionState {
    /// Events of the session seen.
    pub(crate) events: u64,
    /// Events other than streamed deltas: the unit of the correction and
    /// repeated-failure windows.
    pub(crate) steps: u64,
    pub(crate) first_offset: u64,
    pub(crate) last_offset: u64,
    /// The last event's time, in milliseconds since the epoch.
    pub(crate) last_time_ms: i64,
    /// Signals found in the session.
    pub(crate) signals: u64,
    pub(crate) frustration: f64,
    pub(crate) success: f64,
    /// The decaying failure score, as of `failure_at_ms`.
    pub(crate) failure_score: f64,
    pub(crate) failure_at_ms: i64,
    pub(crate) breaker: BreakerState,
    /// When (event time) and at which offset the breaker last opened.
    pub(crate) opened_at_ms: i64,
    pub(crate) open_offset: Option<u64>,
    pub(crate) interventions: u32,
    /// The latest Open an intervention answered, by its offset.
    pub(crate) intervened_open: Option<u64>,
    pub(crate) checkpoints: u64,
    /// The session ended (and nothing happened in it since).
    pub(crate) ended: bool,
    pub(crate) pending: Option<PendingText>,
    /// (tool-use id, tool name), newest last, at most [`TOOL_IDS`].
    pub(crate) tool_ids: VecDeque<(String, String)>,
    /// The step of the last tool use, until a correction answers it.
    pub(crate) last_tool_step: Option<u64>,
    /// (tool, input hash) of recent failed calls, at most
    /// [`FAILED_INPUTS`].
    pub(crate) failed_inputs: VecDeque<(String, String)>,
    /// Steps of the tool failures within the repeated-failure window.
    pub(crate) failure_steps: VecDeque<u64>,
    /// Negative signals since the breaker last closed, at most
    /// [`TROUBLE`].
    pub(crate) trouble: VecDeque<TroubleNote>,
    pub(crate) segment: Segment,
}

impl SessionState {
    pub(crate) fn remember_tool(&mut self, id: &str, name: &str) {
        self.tool_ids.retain(|(known, _)| known != id);
        if self.tool_ids.len() == TOOL_IDS {
            self.tool_ids.pop_front();
        }
        self.tool_ids.push_back((id.to_owned(), name.to_owned()));
    }

    pub(crate) fn tool_name(&self, id: &str) -> Option<&str> {
        self.tool_ids
            .iter()
            .rev()
            .find(|(known, _)| known == id)
            .map(|(_, name)| name.as_str())
    }

    /// Remembers a failed call, newest last.
    pub(crate) fn remember_failed_input(&mut self, key: (String, String)) {
        self.failed_inputs.retain(|known| *known != key);
        if self.failed_inputs.len() == FAILED_INPUTS {
            self.failed_inputs.pop_front();
        }
        self.failed_inputs.push_back(key);
    }

    /// Forgets a failed call once it was retried; answers whether it had
    /// failed.
    pub(crate) fn take_failed_input(&mut self, key: &(String, String)) -> bool {
        let before = self.failed_inputs.len();
        self.failed_inputs.retain(|known| known != key);
        self.failed_inputs.len() != before
    }

    pub(crate) fn push_trouble(&mut self, note: TroubleNote) {
        if self.trouble.len() == TROUBLE {
            self.trouble.pop_front();
        }
        self.trouble.push_back(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snippet(offset: u64, confidence: f64) -> Snippet {
        Snippet {
            offset,
            kind: SignalKind::ToolFailure,
            confidence,
            text: String::new(),
        }
    }

    #[test]
    fn a_segment_keeps_the_three_strongest_snippets_earliest_first_on_ties() {
        let mut segment = Segment::default();
        for (offset, confidence) in [(1, 0.5), (2, 0.9), (3, 0.5), (4, 0.9), (5, 0.6), (6, 0.9)] {
            segment.offer(snippet(offset, confidence));
        }
        let kept: Vec<u64> = segment.snippets.iter().map(|s| s.offset).collect();
        assert_eq!(kept, [2, 4, 6]);
    }

    #[test]
    fn every_list_in_the_state_is_capped() {
        let mut state = SessionState::default();
        let mut segment = Segment::default();
        for n in 0..1000 {
            state.remember_tool(&format!("id{n}"), "Bash");
            state.remember_failed_input((format!("tool{n}"), "h".into()));
            state.push_trouble(TroubleNote {
                kind: SignalKind::Retry,
                tool: None,
                detail: String::new(),
            });
            segment.count_failure(&format!("tool{n}"));
            segment.offer(snippet(n, 0.5));
        }
        assert_eq!(state.tool_ids.len(), TOOL_IDS);
        assert_eq!(state.failed_inputs.len(), FAILED_INPUTS);
        assert_eq!(state.trouble.len(), TROUBLE);
        assert_eq!(segment.failures_by_tool.len(), SEGMENT_TOOLS + 1);
        assert_eq!(segment.snippets.len(), SNIPPETS);
        assert_eq!(state.tool_name("id999"), Some("Bash"));
        assert_eq!(state.tool_name("id0"), None);
    }
}
