//! What the assessment derives and stores: signals, breaker transitions,
//! checkpoints and interventions, each tied to the offset of the event that
//! caused it and with an id derived from that event, so that a replay
//! writes the very same records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a signal says about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A user prompt matched a negative phrase.
    NegativePhrase,
    /// A user prompt matched a positive phrase.
    PositivePhrase,
    /// The assistant finished a message (counted once, never per delta).
    AssistantMessage,
    /// A finished assistant message apologises: a weak negative.
    Apology,
    /// A tool call failed.
    ToolFailure,
    /// A user prompt rejected or undid the last action, right after it.
    Correction,
    /// The same tool with the same input, after it failed.
    Retry,
    /// A test run (cargo, jest, pytest, go) reported failures.
    TestFailed,
    /// A test run passed.
    TestPassed,
    /// A build reported compiler errors.
    BuildFailed,
}

/// Whether a signal counts against a session, for it, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Valence {
    Negative,
    Positive,
    Neutral,
}

impl SignalKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [SignalKind; 10] = [
        Self::NegativePhrase,
        Self::PositivePhrase,
        Self::AssistantMessage,
        Self::Apology,
        Self::ToolFailure,
        Self::Correction,
        Self::Retry,
        Self::TestFailed,
        Self::TestPassed,
        Self::BuildFailed,
    ];

    /// The kind's name, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NegativePhrase => "negative_phrase",
            Self::PositivePhrase => "positive_phrase",
            Self::AssistantMessage => "assistant_message",
            Self::Apology => "apology",
            Self::ToolFailure => "tool_failure",
            Self::Correction => "correction",
            Self::Retry => "retry",
            Self::TestFailed => "test_failed",
            Self::TestPassed => "test_passed",
            Self::BuildFailed => "build_failed",
        }
    }

    pub(crate) fn valence(self) -> Valence {
        match self {
            Self::PositivePhrase | Self::TestPassed => Valence::Positive,
            Self::AssistantMessage => Valence::Neutral,
            Self::NegativePhrase
            | Self::Apology
            | Self::ToolFailure
            | Self::Correction
            | Self::Retry
            | Self::TestFailed
            | Self::BuildFailed => Valence::Negative,
        }
    }
}

/// The state of a session's circuit breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Things are going fine, or not badly enough to step in.
    #[default]
    Closed,
    /// The failure score crossed the threshold: groove may intervene.
    Open,
    /// The cooldown passed: one success closes it, one failure reopens it.
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// The state's name, as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Why a checkpoint was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointTrigger {
    /// Enough events and enough event time since the last one.
    Interval,
    /// Frustration rose to the threshold.
    Frustration,
    /// Repeated tool failures within a few events.
    RepeatedFailures,
    /// The session ended.
    SessionEnd,
}

impl CheckpointTrigger {
    pub const ALL: [CheckpointTrigger; 4] = [
        Self::Interval,
        Self::Frustration,
        Self::RepeatedFailures,
        Self::SessionEnd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interval => "interval",
            Self::Frustration => "frustration",
            Self::RepeatedFailures => "repeated_failures",
            Self::SessionEnd => "session_end",
        }
    }
}

/// One signal found in one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// `"{offset}:{kind}:{n}"`: the n-th signal of this kind in the event.
    pub id: String,
    pub offset: u64,
    /// The event's time (RFC 3339, UTC, microseconds).
    pub time: String,
    pub kind: SignalKind,
    /// The pattern matched or the reason, e.g. `exit_code 1`, `cargo: 2 failed`.
    pub detail: String,
    /// How sure the signal is, in (0, 1].
    pub confidence: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool: Option<String>,
    /// A short, one-line piece of the text it was found in.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub excerpt: Option<String>,
}

/// A change of a session's breaker state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// `"{offset}:transition:{n}"`.
    pub id: String,
    pub offset: u64,
    pub time: String,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
    /// The failure score at the transition.
    pub failure_score: f64,
}

/// One of a checkpoint's strongest negative snippets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snippet {
    pub offset: u64,
    pub kind: SignalKind,
    pub confidence: f64,
    pub text: String,
}

/// A summary of a session's segment since its previous checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `"{offset}:checkpoint:0"`.
    pub id: String,
    pub offset: u64,
    pub time: String,
    pub trigger: CheckpointTrigger,
    /// The segment's first and last offsets (this event's).
    pub from_offset: u64,
    pub to_offset: u64,
    /// The session's events in the segment.
    pub events: u64,
    /// Signals in the segment, by kind.
    pub signals: BTreeMap<String, u64>,
    /// Tool failures in the segment, by tool.
    pub failures_by_tool: BTreeMap<String, u64>,
    pub frustration: f64,
    pub success: f64,
    pub failure_score: f64,
    pub breaker: BreakerState,
    /// The strongest negative snippets of the segment, at most three.
    pub snippets: Vec<Snippet>,
}

/// A note groove gave the session while its breaker was open, as the log
/// recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// `"{offset}:intervention:0"`.
    pub id: String,
    pub offset: u64,
    pub time: String,
    /// The offset of the transition that opened the breaker it answered.
    pub open_offset: u64,
    pub note: String,
}

/// Anything the assessment derives from one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Signal(Signal),
    Transition(Transition),
    Checkpoint(Checkpoint),
    Intervention(Intervention),
}

impl Record {
    /// The record's `type` in a timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Signal(_) => "signal",
            Self::Transition(_) => "transition",
            Self::Checkpoint(_) => "checkpoint",
            Self::Intervention(_) => "intervention",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Signal(record) => &record.id,
            Self::Transition(record) => &record.id,
            Self::Checkpoint(record) => &record.id,
            Self::Intervention(record) => &record.id,
        }
    }

    pub fn offset(&self) -> u64 {
        match self {
            Self::Signal(record) => record.offset,
            Self::Transition(record) => record.offset,
            Self::Checkpoint(record) => record.offset,
            Self::Intervention(record) => record.offset,
        }
    }

    /// The record as stored: its JSON, fields in declaration order.
    pub(crate) fn body(&self) -> serde_json::Result<String> {
        match self {
            Self::Signal(record) => serde_json::to_string(record),
            Self::Transition(record) => serde_json::to_string(record),
            Self::Checkpoint(record) => serde_json::to_string(record),
            Self::Intervention(record) => serde_json::to_string(record),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kind_names_match_their_serde_names() {
        for kind in SignalKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        for state in BreakerState::ALL {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().into())
            );
        }
        for trigger in CheckpointTrigger::ALL {
            assert_eq!(
                serde_json::to_value(trigger).unwrap(),
                serde_json::Value::String(trigger.as_str().into())
            );
        }
    }
}
