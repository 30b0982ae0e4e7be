//! The assessment: one step per event of a session, from the session's
//! state and the event to the records it derives.
//!
//! A step is a pure function of the state, the event, its offset and its
//! own `timestamp` (event time): no wall clock, no randomness, and every id
//! derived from the offset. That is what lets the store be deleted and
//! rebuilt from the log, or rebuilt after a seek back, with the very same
//! rows.
//!
//! Per event, in order: the breaker half-opens if the cooldown has passed
//! since it opened; signals are found; the frustration and success
//! averages take the event if it bore a signal; the failure score (decayed
//! to the event's time) takes its negative signals and the breaker moves on
//! them; an intervention the log recorded is counted; and a checkpoint is
//! made if one of its triggers fired.

use std::collections::BTreeMap;

use serde_json::Value;
use vibes_core::{ClaudeEvent, HookPayload, StoredEvent, VibesEvent};

use crate::canonical::{excerpt, stable_hash, truncate};
use crate::config::{ConfigError, GrooveConfig, PhraseSet};
use crate::detect::{self, output_text};
use crate::record::{
    BreakerState, Checkpoint, CheckpointTrigger, Intervention, Record, Signal, SignalKind, Snippet,
    Transition, Valence,
};
use crate::session::{PENDING_TEXT_BYTES, PendingText, SessionState, TroubleNote};
use crate::toolchain;

/// The plugin name groove's own log records carry.
pub(crate) const PLUGIN: &str = "groove";
/// The `kind` of the record of an intervention.
pub(crate) const INTERVENTION: &str = "intervention";

const PHRASE_CONFIDENCE: f64 = 0.6;
const APOLOGY_CONFIDENCE: f64 = 0.3;
const CORRECTION_CONFIDENCE: f64 = 0.8;
const RETRY_CONFIDENCE: f64 = 0.7;
const OUTCOME_CONFIDENCE: f64 = 0.9;
/// The least confidence of a failure that reopens a half-open breaker.
const REOPEN_CONFIDENCE: f64 = 0.5;

/// A signal found in an event, before it is numbered.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    kind: SignalKind,
    detail: String,
    confidence: f64,
    tool: Option<String>,
    excerpt: Option<String>,
}

impl Found {
    fn new(kind: SignalKind, detail: impl Into<String>, confidence: f64) -> Self {
        Self {
            kind,
            detail: detail.into(),
            confidence,
            tool: None,
            excerpt: None,
        }
    }

    fn tool(mut self, tool: &str) -> Self {
        self.tool = Some(tool.to_owned());
        self
    }

    fn excerpt(mut self, excerpt: Option<String>) -> Self {
        self.excerpt = excerpt.filter(|text| !text.is_empty());
        self
    }

    /// How it reads in a transition's reason.
    fn describe(&self) -> String {
        match &self.tool {
            Some(tool) => format!("{} ({tool}: {})", self.kind.as_str(), self.detail),
            None => format!("{} ({})", self.kind.as_str(), self.detail),
        }
    }
}

/// The assessment under one config.
#[derive(Debug, Clone)]
pub(crate) struct Assessor {
    negative: PhraseSet,
    positive: PhraseSet,
    alpha: f64,
    threshold: f64,
    cooldown_ms: i64,
    half_life_ms: f64,
    every_events: u64,
    interval_ms: i64,
    frustration_threshold: f64,
    repeated_failures: usize,
    failure_window: u64,
    correction_window: u64,
}

/// The records of one event, numbered as they are made.
struct Emitter {
    offset: u64,
    time: String,
    records: Vec<Record>,
    per_kind: BTreeMap<SignalKind, u32>,
    transitions: u32,
}

impl Emitter {
    fn signal(&mut self, found: &Found) {
        let n = self.per_kind.entry(found.kind).or_default();
        self.records.push(Record::Signal(Signal {
            id: format!("{}:{}:{n}", self.offset, found.kind.as_str()),
            offset: self.offset,
            time: self.time.clone(),
            kind: found.kind,
            detail: found.detail.clone(),
            confidence: found.confidence,
            tool: found.tool.clone(),
            excerpt: found.excerpt.clone(),
        }));
        *n += 1;
    }

    fn transition(&mut self, state: &mut SessionState, to: BreakerState, reason: String) {
        self.records.push(Record::Transition(Transition {
            id: format!("{}:transition:{}", self.offset, self.transitions),
            offset: self.offset,
            time: self.time.clone(),
            from: state.breaker,
            to,
            reason,
            failure_score: state.failure_score,
        }));
        self.transitions += 1;
        state.breaker = to;
    }
}

/// RFC 3339 in UTC with fixed precision, as every record's `time`.
pub(crate) fn event_time(stored: &StoredEvent) -> String {
    stored
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn is_delta(event: &VibesEvent) -> bool {
    matches!(
        event,
        VibesEvent::Claude {
            event: ClaudeEvent::TextDelta { .. }
                | ClaudeEvent::ThinkingDelta { .. }
                | ClaudeEvent::ToolInputDelta { .. },
            ..
        }
    )
}

fn is_session_end(event: &VibesEvent) -> bool {
    match event {
        VibesEvent::SessionRemoved { .. } => true,
        VibesEvent::Hook { event, .. } => event.hook_event_name == "SessionEnd",
        _ => false,
    }
}

/// An intervention groove's hook answer recorded: (open offset, note).
fn intervention(event: &VibesEvent) -> Option<(u64, String)> {
    match event {
        VibesEvent::Plugin {
            plugin, kind, data, ..
        } if plugin == PLUGIN && kind == INTERVENTION => {
            let open = data.get("open_offset").and_then(Value::as_u64)?;
            let note = data.get("note").and_then(Value::as_str).unwrap_or_default();
            Some((open, note.to_owned()))
        }
        _ => None,
    }
}

impl Assessor {
    pub(crate) fn new(config: &GrooveConfig) -> Result<Self, ConfigError> {
        let (negative, positive) = config.phrase_sets()?;
        Ok(Self {
            negative,
            positive,
            alpha: config.alpha,
            threshold: config.breaker_threshold,
            cooldown_ms: config.breaker_cooldown_secs * 1000,
            half_life_ms: (config.failure_half_life_secs * 1000) as f64,
            every_events: config.checkpoint_every_events,
            interval_ms: config.checkpoint_interval_secs * 1000,
            frustration_threshold: config.checkpoint_frustration,
            repeated_failures: config.repeated_failures,
            failure_window: config.repeated_failures_window,
            correction_window: config.correction_window,
        })
    }

    /// Takes one event of the session whose state is `state`; answers the
    /// records it derives, in the order they happened.
    pub(crate) fn step(
        &self,
        state: &mut SessionState,
        offset: u64,
        stored: &StoredEvent,
    ) -> Vec<Record> {
        let now = stored.timestamp.timestamp_millis();
        let mut out = Emitter {
            offset,
            time: event_time(stored),
            records: Vec::new(),
            per_kind: BTreeMap::new(),
            transitions: 0,
        };
        if state.events == 0 {
            state.first_offset = offset;
        }
        state.events += 1;
        state.last_offset = offset;
        state.last_time_ms = now;
        if !is_delta(&stored.event) {
            state.steps += 1;
        }
        if state.segment.events == 0 {
            state.segment.from_offset = Some(offset);
            state.segment.started_ms = now;
        }
        state.segment.events += 1;

        self.decay(state, now);
        if state.breaker == BreakerState::Open {
            let open_for = now - state.opened_at_ms;
            if open_for >= self.cooldown_ms {
                let reason = format!(
                    "cooldown of {} s passed in event time ({} s since it opened)",
                    self.cooldown_ms / 1000,
                    open_for / 1000
                );
                out.transition(state, BreakerState::HalfOpen, reason);
            }
        }

        let found = self.detect(state, stored);
        for signal in &found {
            out.signal(signal);
        }
        state.signals += found.len() as u64;
        let prev_frustration = state.frustration;
        self.score(state, &found);
        self.move_breaker(state, &found, now, &mut out);
        self.account(state, offset, &found);

        if let Some((open_offset, note)) = intervention(&stored.event) {
            out.records.push(Record::Intervention(Intervention {
                id: format!("{offset}:{INTERVENTION}:0"),
                offset,
                time: out.time.clone(),
                open_offset,
                note,
            }));
            state.interventions += 1;
            state.intervened_open = state.intervened_open.max(Some(open_offset));
        }

        if let Some(trigger) = self.checkpoint_trigger(state, stored, &found, prev_frustration, now)
        {
            let segment = std::mem::take(&mut state.segment);
            state.checkpoints += 1;
            out.records.push(Record::Checkpoint(Checkpoint {
                id: format!("{offset}:checkpoint:0"),
                offset,
                time: out.time.clone(),
                trigger,
                from_offset: segment.from_offset.unwrap_or(offset),
                to_offset: offset,
                events: segment.events,
                signals: segment.signals,
                failures_by_tool: segment.failures_by_tool,
                frustration: state.frustration,
                success: state.success,
                failure_score: state.failure_score,
                breaker: state.breaker,
                snippets: segment.snippets,
            }));
        }
        out.records
    }

    /// Decays the failure score to `now`: it halves every half-life of
    /// event time. An event older than the last one decays nothing.
    fn decay(&self, state: &mut SessionState, now: i64) {
        let elapsed = now - state.failure_at_ms;
        if elapsed <= 0 {
            return;
        }
        if state.failure_score > 0.0 {
            state.failure_score *= 0.5f64.powf(elapsed as f64 / self.half_life_ms);
            if state.failure_score < 1e-9 {
                state.failure_score = 0.0;
            }
        }
        state.failure_at_ms = now;
    }

    /// The frustration and success averages take the event if it bore a
    /// negative or positive signal: each moves toward the strongest such
    /// signal's confidence (0 if it had none of that side).
    fn score(&self, state: &mut SessionState, found: &[Found]) {
        let strongest = |valence| {
            found
                .iter()
                .filter(|signal| signal.kind.valence() == valence)
                .map(|signal| signal.confidence)
                .fold(None, |max: Option<f64>, c| {
                    Some(max.map_or(c, |m| m.max(c)))
                })
        };
        let negative = strongest(Valence::Negative);
        let positive = strongest(Valence::Positive);
        if negative.is_none() && positive.is_none() {
            return;
        }
        let alpha = self.alpha;
        state.frustration = alpha * negative.unwrap_or(0.0) + (1.0 - alpha) * state.frustration;
        state.success = alpha * positive.unwrap_or(0.0) + (1.0 - alpha) * state.success;
    }

    /// Adds the event's negative signals to the failure score and moves
    /// the breaker. Each kind adds its strongest signal only, so one long
    /// rant is not ten failures; and a failed call's own signals (the
    /// failure, its failing tests, its compiler errors) add once between
    /// them, as they are one failure seen three ways.
    fn move_breaker(&self, state: &mut SessionState, found: &[Found], now: i64, out: &mut Emitter) {
        let mut by_cause: BTreeMap<&'static str, f64> = BTreeMap::new();
        for signal in found
            .iter()
            .filter(|signal| signal.kind.valence() == Valence::Negative)
        {
            let cause = match signal.kind {
                SignalKind::ToolFailure | SignalKind::TestFailed | SignalKind::BuildFailed => {
                    "call"
                }
                other => other.as_str(),
            };
            let strongest = by_cause.entry(cause).or_default();
            *strongest = strongest.max(signal.confidence);
        }
        let added: f64 = by_cause.values().sum();
        state.failure_score += added;
        // Weak signals (an apology, text on stderr alone) add to the score
        // but do not by themselves reopen a half-open breaker.
        let worst = found
            .iter()
            .filter(|signal| {
                signal.kind.valence() == Valence::Negative
                    && (state.breaker != BreakerState::HalfOpen
                        || signal.confidence >= REOPEN_CONFIDENCE)
            })
            .fold(None, |worst: Option<&Found>, signal| match worst {
                Some(w) if w.confidence >= signal.confidence => Some(w),
                _ => Some(signal),
            });
        let success = found
            .iter()
            .find(|signal| signal.kind.valence() == Valence::Positive);
        let open = |state: &mut SessionState, out: &mut Emitter, reason| {
            out.transition(state, BreakerState::Open, reason);
            state.opened_at_ms = now;
            state.open_offset = Some(out.offset);
        };
        match (state.breaker, worst, success) {
            (BreakerState::Closed, Some(worst), _) if state.failure_score >= self.threshold => {
                let reason = format!(
                    "failure score {:.2} reached the threshold {:.2} on {}",
                    state.failure_score,
                    self.threshold,
                    worst.describe()
                );
                open(state, out, reason);
            }
            (BreakerState::HalfOpen, Some(worst), _) => {
                let reason = format!("a failure while half-open: {}", worst.describe());
                open(state, out, reason);
            }
            (BreakerState::HalfOpen, None, Some(success)) if !found_failure(found) => {
                let reason = format!("a success while half-open: {}", success.describe());
                out.transition(state, BreakerState::Closed, reason);
                state.failure_score = 0.0;
                state.trouble.clear();
            }
            _ => {}
        }
    }

    /// Counts the event's signals in the segment and the trouble list.
    fn account(&self, state: &mut SessionState, offset: u64, found: &[Found]) {
        for signal in found {
            *state
                .segment
                .signals
                .entry(signal.kind.as_str().to_owned())
                .or_default() += 1;
            if signal.kind.valence() != Valence::Negative {
                continue;
            }
            if signal.kind == SignalKind::ToolFailure {
                let tool = signal.tool.as_deref().unwrap_or("unknown");
                state.segment.count_failure(tool);
            }
            if let Some(text) = &signal.excerpt {
                state.segment.offer(Snippet {
                    offset,
                    kind: signal.kind,
                    confidence: signal.confidence,
                    text: text.clone(),
                });
            }
            state.push_trouble(TroubleNote {
                kind: signal.kind,
                tool: signal.tool.clone(),
                detail: signal.detail.clone(),
            });
        }
    }

    fn checkpoint_trigger(
        &self,
        state: &mut SessionState,
        stored: &StoredEvent,
        found: &[Found],
        prev_frustration: f64,
        now: i64,
    ) -> Option<CheckpointTrigger> {
        let ending = is_session_end(&stored.event);
        let ends = ending && !state.ended;
        state.ended = ending;

        let mut repeated = false;
        if found
            .iter()
            .any(|signal| signal.kind == SignalKind::ToolFailure)
        {
            let step = state.steps;
            state.failure_steps.push_back(step);
            let window = self.failure_window;
            state.failure_steps.retain(|failed| step - failed < window);
            if state.failure_steps.len() >= self.repeated_failures {
                // Counted once: the next checkpoint needs as many new ones.
                state.failure_steps.clear();
                repeated = true;
            }
        }
        let frustrated = prev_frustration < self.frustration_threshold
            && state.frustration >= self.frustration_threshold;
        let interval = state.segment.events >= self.every_events
            && now - state.segment.started_ms >= self.interval_ms;
        if ends {
            Some(CheckpointTrigger::SessionEnd)
        } else if repeated {
            Some(CheckpointTrigger::RepeatedFailures)
        } else if frustrated {
            Some(CheckpointTrigger::Frustration)
        } else if interval {
            Some(CheckpointTrigger::Interval)
        } else {
            None
        }
    }

    /// The signals of one event. Needs the state for what spans events: the
    /// streamed message, tool-use ids, the correction window, failed calls.
    fn detect(&self, state: &mut SessionState, stored: &StoredEvent) -> Vec<Found> {
        match &stored.event {
            // A hook's prompt arrives twice: as the `UserPromptSubmit` hook
            // and as the `user_input` vibesd derives from it; the hook counts.
            VibesEvent::UserInput {
                content, source, ..
            } if source != "hook" => self.prompt(state, content),
            VibesEvent::Hook { event, .. } => match event.hook_event_name.as_str() {
                "UserPromptSubmit" => self.prompt(state, event.prompt.as_deref().unwrap_or("")),
                "PreToolUse" => {
                    state.last_tool_step = Some(state.steps);
                    Vec::new()
                }
                "PostToolUse" => self.post_tool_use(state, event),
                _ => Vec::new(),
            },
            VibesEvent::Claude { event, .. } => match event {
                ClaudeEvent::TextDelta { text } => {
                    let pending = state.pending.get_or_insert_with(|| PendingText {
                        from_offset: state.last_offset,
                        ..PendingText::default()
                    });
                    let room = PENDING_TEXT_BYTES.saturating_sub(pending.text.len());
                    pending.text.push_str(truncate(text, room));
                    pending.chars += text.chars().count() as u64;
                    Vec::new()
                }
                ClaudeEvent::ToolUseStart { id, name } => {
                    let found = self.finish_message(state);
                    state.remember_tool(id, name);
                    state.last_tool_step = Some(state.steps);
                    found
                }
                ClaudeEvent::ToolResult {
                    id,
                    output,
                    is_error,
                } => {
                    state.last_tool_step = Some(state.steps);
                    let tool = state.tool_name(id).unwrap_or("unknown").to_owned();
                    let mut found = Vec::new();
                    if *is_error {
                        found.push(
                            Found::new(SignalKind::ToolFailure, "is_error", 0.9)
                                .tool(&tool)
                                .excerpt(Some(excerpt(output))),
                        );
                    }
                    if tool == "Bash" {
                        found.extend(outcome_signals(output, &tool));
                    }
                    found
                }
                ClaudeEvent::TurnComplete { .. } | ClaudeEvent::Error { .. } => {
                    self.finish_message(state)
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn prompt(&self, state: &mut SessionState, text: &str) -> Vec<Found> {
        let mut found = Vec::new();
        let snippet = || Some(excerpt(text));
        for pattern in self.negative.matches(text) {
            found.push(
                Found::new(SignalKind::NegativePhrase, pattern, PHRASE_CONFIDENCE)
                    .excerpt(snippet()),
            );
        }
        for pattern in self.positive.matches(text) {
            found.push(
                Found::new(SignalKind::PositivePhrase, pattern, PHRASE_CONFIDENCE)
                    .excerpt(snippet()),
            );
        }
        let after_tool = state
            .last_tool_step
            .is_some_and(|step| state.steps - step <= self.correction_window);
        if after_tool && let Some(pattern) = detect::correction(text) {
            found.push(
                Found::new(SignalKind::Correction, pattern, CORRECTION_CONFIDENCE)
                    .excerpt(snippet()),
            );
            // One correction per tool use.
            state.last_tool_step = None;
        }
        found
    }

    fn post_tool_use(&self, state: &mut SessionState, hook: &HookPayload) -> Vec<Found> {
        state.last_tool_step = Some(state.steps);
        let tool = hook.tool_name.as_deref().unwrap_or("unknown");
        let response = hook.tool_response.as_ref().unwrap_or(&Value::Null);
        let outcomes = if tool == "Bash" {
            outcome_signals(&output_text(response), tool)
        } else {
            Vec::new()
        };
        let passed = outcomes
            .iter()
            .any(|outcome| outcome.kind == SignalKind::TestPassed);
        let input = hook.tool_input.as_ref().unwrap_or(&Value::Null);
        let key = (tool.to_owned(), stable_hash(input));
        let mut found = Vec::new();
        if state.take_failed_input(&key) {
            found.push(
                Found::new(
                    SignalKind::Retry,
                    "the same input as a call that failed",
                    RETRY_CONFIDENCE,
                )
                .tool(tool),
            );
        }
        if let Some(failure) = detect::tool_failure(tool, response, passed) {
            found.push(
                Found::new(SignalKind::ToolFailure, failure.reason, failure.confidence)
                    .tool(tool)
                    .excerpt(failure.excerpt),
            );
            state.remember_failed_input(key);
        }
        found.extend(outcomes);
        found
    }

    /// The streamed message ended: one `assistant_message`, and an
    /// `apology` if it apologised.
    fn finish_message(&self, state: &mut SessionState) -> Vec<Found> {
        let Some(pending) = state.pending.take() else {
            return Vec::new();
        };
        let mut found = vec![Found::new(
            SignalKind::AssistantMessage,
            format!("{} chars", pending.chars),
            1.0,
        )];
        if let Some(apology) = detect::apology(&pending.text) {
            found.push(
                Found::new(SignalKind::Apology, "apology", APOLOGY_CONFIDENCE)
                    .excerpt(Some(apology)),
            );
        }
        found
    }
}

/// Whether the event bore any negative signal, however weak: then its
/// success does not close a half-open breaker.
fn found_failure(found: &[Found]) -> bool {
    found
        .iter()
        .any(|signal| signal.kind.valence() == Valence::Negative)
}

fn outcome_signals(output: &str, tool: &str) -> Vec<Found> {
    toolchain::outcomes(output)
        .into_iter()
        .map(|outcome| {
            Found::new(outcome.kind, outcome.detail, OUTCOME_CONFIDENCE)
                .tool(tool)
                .excerpt(Some(outcome.excerpt))
        })
        .collect()
}

#[cfg(test)]
mod tests;
