//! Tests of the assessment one event at a time: each signal kind, the
//! scores, every breaker transition in event time, decay, and each
//! checkpoint trigger. Event times are in 2001, far from any wall clock,
//! so a test that passed by reading the clock would fail.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use vibes_core::{ClaudeEvent, HookPayload, StoredEvent, Usage, VibesEvent};

use super::*;
use crate::config::GrooveConfig;
use crate::record::{BreakerState, CheckpointTrigger, Record, SignalKind};
use crate::session::SessionState;

/// 2001-09-09T01:46:40Z: an event time nowhere near the wall clock.
const BASE_MS: i64 = 1_000_000_000_000;

fn at(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(BASE_MS + (secs * 1000.0) as i64).unwrap()
}

/// One session fed event by event, as the store would.
struct Session {
    assessor: Assessor,
    state: SessionState,
    next_offset: u64,
    records: Vec<Record>,
}

impl Session {
    fn new() -> Self {
        Self::with(GrooveConfig::default())
    }

    fn with(config: GrooveConfig) -> Self {
        Self {
            assessor: Assessor::new(&config).unwrap(),
            state: SessionState::default(),
            next_offset: 0,
            records: Vec::new(),
        }
    }

    /// Feeds `event` at `secs` of event time; answers its records.
    fn feed(&mut self, secs: f64, event: VibesEvent) -> Vec<Record> {
        let mut stored = StoredEvent::new(event);
        stored.timestamp = at(secs);
        let offset = self.next_offset;
        self.next_offset += 1;
        let records = self.assessor.step(&mut self.state, offset, &stored);
        self.records.extend(records.clone());
        records
    }

    fn signals(&self, kind: SignalKind) -> Vec<&crate::record::Signal> {
        self.records
            .iter()
            .filter_map(|record| match record {
                Record::Signal(signal) if signal.kind == kind => Some(signal),
                _ => None,
            })
            .collect()
    }

    fn transitions(&self) -> Vec<(BreakerState, BreakerState, u64)> {
        self.records
            .iter()
            .filter_map(|record| match record {
                Record::Transition(t) => Some((t.from, t.to, t.offset)),
                _ => None,
            })
            .collect()
    }

    fn checkpoints(&self) -> Vec<&crate::record::Checkpoint> {
        self.records
            .iter()
            .filter_map(|record| match record {
                Record::Checkpoint(checkpoint) => Some(checkpoint),
                _ => None,
            })
            .collect()
    }
}

fn kinds(records: &[Record]) -> Vec<SignalKind> {
    records
        .iter()
        .filter_map(|record| match record {
            Record::Signal(signal) => Some(signal.kind),
            _ => None,
        })
        .collect()
}

fn hook(payload: HookPayload) -> VibesEvent {
    VibesEvent::Hook {
        session_id: "s1".into(),
        event: payload,
    }
}

fn prompt(text: &str) -> VibesEvent {
    hook(HookPayload {
        hook_event_name: "UserPromptSubmit".into(),
        prompt: Some(text.into()),
        ..HookPayload::default()
    })
}

fn typed(text: &str, source: &str) -> VibesEvent {
    VibesEvent::UserInput {
        session_id: "s1".into(),
        content: text.into(),
        source: source.into(),
    }
}

fn pre_tool(tool: &str, input: Value) -> VibesEvent {
    hook(HookPayload {
        hook_event_name: "PreToolUse".into(),
        tool_name: Some(tool.into()),
        tool_input: Some(input),
        ..HookPayload::default()
    })
}

fn post_tool(tool: &str, input: Value, response: Value) -> VibesEvent {
    hook(HookPayload {
        hook_event_name: "PostToolUse".into(),
        tool_name: Some(tool.into()),
        tool_input: Some(input),
        tool_response: Some(response),
        ..HookPayload::default()
    })
}

fn failing_bash(command: &str) -> VibesEvent {
    post_tool(
        "Bash",
        json!({"command": command}),
        json!({"stdout": "", "stderr": "boom", "exit_code": 1}),
    )
}

fn passing_bash(command: &str) -> VibesEvent {
    post_tool(
        "Bash",
        json!({"command": command}),
        json!({"stdout": "test result: ok. 3 passed; 0 failed; 0 ignored", "stderr": ""}),
    )
}

fn claude(event: ClaudeEvent) -> VibesEvent {
    VibesEvent::Claude {
        session_id: "s1".into(),
        event,
    }
}

fn delta(text: &str) -> VibesEvent {
    claude(ClaudeEvent::TextDelta { text: text.into() })
}

fn turn_complete() -> VibesEvent {
    claude(ClaudeEvent::TurnComplete {
        usage: Usage::default(),
    })
}

fn session_end() -> VibesEvent {
    hook(HookPayload {
        hook_event_name: "SessionEnd".into(),
        ..HookPayload::default()
    })
}

fn removed() -> VibesEvent {
    VibesEvent::SessionRemoved {
        session_id: "s1".into(),
        reason: "session_end".into(),
    }
}

fn other() -> VibesEvent {
    VibesEvent::SessionStateChanged {
        session_id: "s1".into(),
        state: "processing".into(),
    }
}

// Phrases

#[test]
fn negative_and_positive_phrases_in_prompts_are_signals_naming_their_pattern() {
    let mut session = Session::new();
    let records = session.feed(0.0, prompt("WTF, this is still broken"));
    assert_eq!(
        kinds(&records),
        [SignalKind::NegativePhrase, SignalKind::NegativePhrase]
    );
    let Record::Signal(first) = &records[0] else {
        panic!("{records:?}");
    };
    assert_eq!(first.detail, r"\bwtf\b");
    assert_eq!(first.id, "0:negative_phrase:0");
    assert_eq!(first.excerpt.as_deref(), Some("WTF, this is still broken"));
    let Record::Signal(second) = &records[1] else {
        panic!("{records:?}");
    };
    assert_eq!(second.id, "0:negative_phrase:1");

    let records = session.feed(1.0, typed("Perfect, thanks!", "web"));
    assert_eq!(
        kinds(&records),
        [SignalKind::PositivePhrase, SignalKind::PositivePhrase]
    );
    assert!(kinds(&session.feed(2.0, prompt("add a README"))).is_empty());
}

#[test]
fn a_hook_prompt_counts_once_not_again_as_the_user_input_vibesd_derives() {
    let mut session = Session::new();
    assert_eq!(kinds(&session.feed(0.0, prompt("thanks"))).len(), 1);
    assert!(kinds(&session.feed(0.0, typed("thanks", "hook"))).is_empty());
}

#[test]
fn configured_patterns_extend_the_defaults() {
    let mut session = Session::with(GrooveConfig {
        negative_patterns: vec![r"\bmeh\b".into()],
        positive_patterns: vec![r"\bship it\b".into()],
        ..GrooveConfig::default()
    });
    assert_eq!(
        kinds(&session.feed(0.0, prompt("meh, wtf"))),
        [SignalKind::NegativePhrase, SignalKind::NegativePhrase]
    );
    assert_eq!(
        kinds(&session.feed(1.0, prompt("SHIP IT, thanks"))),
        [SignalKind::PositivePhrase, SignalKind::PositivePhrase]
    );
}

#[test]
fn replace_default_patterns_drops_the_built_in_phrases() {
    let mut session = Session::with(GrooveConfig {
        negative_patterns: vec![r"\bmeh\b".into()],
        positive_patterns: Vec::new(),
        replace_default_patterns: true,
        ..GrooveConfig::default()
    });
    assert_eq!(
        kinds(&session.feed(0.0, prompt("meh, wtf"))),
        [SignalKind::NegativePhrase]
    );
    assert!(kinds(&session.feed(1.0, prompt("thanks, perfect"))).is_empty());
}

// Assistant messages

#[test]
fn assistant_text_is_one_message_however_many_deltas_it_streams_in() {
    let mut session = Session::new();
    for n in 0..200 {
        assert!(session.feed(n as f64, delta("word ")).is_empty());
    }
    let records = session.feed(200.0, turn_complete());
    assert_eq!(kinds(&records), [SignalKind::AssistantMessage]);
    let Record::Signal(message) = &records[0] else {
        panic!("{records:?}");
    };
    assert_eq!(message.detail, "1000 chars");
    assert_eq!(message.offset, 200);
    // Nothing pending: the next end makes no message.
    assert!(session.feed(201.0, turn_complete()).is_empty());
    // A tool use and an error end a message too.
    session.feed(202.0, delta("let me look"));
    let records = session.feed(
        203.0,
        claude(ClaudeEvent::ToolUseStart {
            id: "t1".into(),
            name: "Read".into(),
        }),
    );
    assert_eq!(kinds(&records), [SignalKind::AssistantMessage]);
    session.feed(204.0, delta("oops"));
    let records = session.feed(
        205.0,
        claude(ClaudeEvent::Error {
            message: "overloaded".into(),
            recoverable: true,
        }),
    );
    assert_eq!(kinds(&records), [SignalKind::AssistantMessage]);
    assert_eq!(session.signals(SignalKind::AssistantMessage).len(), 3);
}

#[test]
fn pending_assistant_text_is_capped_but_its_length_is_counted() {
    let mut session = Session::new();
    let chunk = "x".repeat(1000);
    for n in 0..100 {
        session.feed(n as f64, delta(&chunk));
    }
    let pending = session.state.pending.as_ref().unwrap();
    assert_eq!(pending.text.len(), crate::session::PENDING_TEXT_BYTES);
    assert_eq!(pending.chars, 100_000);
}

#[test]
fn an_apology_in_a_finished_message_is_a_weak_negative() {
    let mut session = Session::new();
    session.feed(0.0, delta("You're right, I "));
    session.feed(1.0, delta("missed the second case."));
    let records = session.feed(2.0, turn_complete());
    assert_eq!(
        kinds(&records),
        [SignalKind::AssistantMessage, SignalKind::Apology]
    );
    let apology = session.signals(SignalKind::Apology)[0];
    assert!(apology.confidence < 0.5);
    assert_eq!(
        apology.excerpt.as_deref(),
        Some("You're right, I missed the second case.")
    );
}

// Tools

#[test]
fn each_post_tool_use_failure_shape_is_a_tool_failure_with_its_tool() {
    let shapes = [
        (
            "Edit",
            json!({"is_error": true, "error": "old_string not found"}),
            "is_error",
        ),
        ("Write", json!({"error": "permission denied"}), "error"),
        (
            "Bash",
            json!({"interrupted": true, "stdout": ""}),
            "interrupted",
        ),
        ("Bash", json!({"exit_code": 2, "stderr": ""}), "exit_code 2"),
        ("Bash", json!({"exitCode": 1}), "exit_code 1"),
        ("Bash", json!({"returncode": 3}), "exit_code 3"),
        (
            "Bash",
            json!({"stdout": "", "stderr": "cat: x: No such file"}),
            "stderr",
        ),
    ];
    for (n, (tool, response, reason)) in shapes.into_iter().enumerate() {
        let mut session = Session::new();
        let records = session.feed(n as f64, post_tool(tool, json!({"n": n}), response));
        assert_eq!(kinds(&records), [SignalKind::ToolFailure], "{reason}");
        let failure = session.signals(SignalKind::ToolFailure)[0];
        assert_eq!(failure.detail, reason);
        assert_eq!(failure.tool.as_deref(), Some(tool));
    }
    let mut session = Session::new();
    let fine = post_tool("Read", json!({}), json!({"content": "hello"}));
    assert!(session.feed(0.0, fine).is_empty());
}

#[test]
fn a_claude_tool_result_error_is_a_failure_of_the_tool_its_id_started() {
    let mut session = Session::new();
    session.feed(
        0.0,
        claude(ClaudeEvent::ToolUseStart {
            id: "toolu_1".into(),
            name: "Edit".into(),
        }),
    );
    let records = session.feed(
        1.0,
        claude(ClaudeEvent::ToolResult {
            id: "toolu_1".into(),
            output: "String to replace not found".into(),
            is_error: true,
        }),
    );
    assert_eq!(kinds(&records), [SignalKind::ToolFailure]);
    assert_eq!(
        session.signals(SignalKind::ToolFailure)[0].tool.as_deref(),
        Some("Edit")
    );
    let fine = claude(ClaudeEvent::ToolResult {
        id: "toolu_1".into(),
        output: "ok".into(),
        is_error: false,
    });
    assert!(session.feed(2.0, fine).is_empty());
}

#[test]
fn a_rejecting_prompt_right_after_a_tool_use_is_a_correction() {
    let mut session = Session::new();
    session.feed(0.0, pre_tool("Edit", json!({"file": "a"})));
    session.feed(1.0, post_tool("Edit", json!({"file": "a"}), json!({})));
    let records = session.feed(2.0, prompt("no, undo that"));
    assert_eq!(kinds(&records), [SignalKind::Correction]);
    // One correction per tool use.
    assert!(kinds(&session.feed(3.0, prompt("no"))).is_empty());
}

#[test]
fn a_rejecting_prompt_outside_the_window_or_without_a_tool_use_is_no_correction() {
    let mut session = Session::with(GrooveConfig {
        correction_window: 3,
        ..GrooveConfig::default()
    });
    assert!(kinds(&session.feed(0.0, prompt("stop"))).is_empty());
    session.feed(1.0, post_tool("Edit", json!({}), json!({})));
    for n in 0..3 {
        session.feed(2.0 + n as f64, other());
    }
    // Four steps after the tool use, with a window of three.
    assert!(kinds(&session.feed(9.0, prompt("revert it"))).is_empty());

    // Streamed deltas do not use the window up.
    let mut session = Session::with(GrooveConfig {
        correction_window: 3,
        ..GrooveConfig::default()
    });
    session.feed(0.0, post_tool("Edit", json!({}), json!({})));
    for n in 0..50 {
        session.feed(1.0 + n as f64, delta("explaining "));
    }
    session.feed(60.0, turn_complete());
    assert_eq!(
        kinds(&session.feed(61.0, prompt("revert it"))),
        [SignalKind::Correction]
    );
}

#[test]
fn the_same_call_again_after_it_failed_is_a_retry() {
    let mut session = Session::new();
    session.feed(0.0, failing_bash("make"));
    let records = session.feed(1.0, failing_bash("make"));
    assert_eq!(
        kinds(&records),
        [SignalKind::Retry, SignalKind::ToolFailure]
    );
    assert_eq!(
        session.signals(SignalKind::Retry)[0].tool.as_deref(),
        Some("Bash")
    );
    // Another input is no retry; the same input after a success neither.
    assert!(!kinds(&session.feed(2.0, failing_bash("make all"))).contains(&SignalKind::Retry));
    session.feed(3.0, passing_bash("cargo test"));
    assert_eq!(
        kinds(&session.feed(4.0, passing_bash("cargo test"))),
        [SignalKind::TestPassed]
    );
    assert!(!kinds(&session.feed(5.0, passing_bash("cargo test"))).contains(&SignalKind::Retry));
    // Key order in the input does not matter.
    let input_a = json!({"command": "x", "timeout": 5});
    let input_b: Value = serde_json::from_str(r#"{"timeout":5,"command":"x"}"#).unwrap();
    session.feed(6.0, post_tool("Bash", input_a, json!({"exit_code": 1})));
    let records = session.feed(7.0, post_tool("Bash", input_b, json!({"exit_code": 1})));
    assert!(kinds(&records).contains(&SignalKind::Retry));
}

#[test]
fn bash_output_gives_test_and_build_outcomes() {
    let mut session = Session::new();
    let failing = post_tool(
        "Bash",
        json!({"command": "cargo test"}),
        json!({"stdout": "test result: FAILED. 1 passed; 2 failed; 0 ignored", "stderr": "", "exit_code": 101}),
    );
    assert_eq!(
        kinds(&session.feed(0.0, failing)),
        [SignalKind::ToolFailure, SignalKind::TestFailed]
    );
    assert_eq!(
        session.signals(SignalKind::TestFailed)[0].detail,
        "cargo: 2 failed, 1 passed"
    );
    // cargo's progress on stderr is no failure beside a passing summary.
    let passing = post_tool(
        "Bash",
        json!({"command": "cargo test --lib"}),
        json!({"stdout": "test result: ok. 3 passed; 0 failed;", "stderr": "   Compiling x\n    Finished"}),
    );
    assert_eq!(kinds(&session.feed(1.0, passing)), [SignalKind::TestPassed]);
    let broken = post_tool(
        "Bash",
        json!({"command": "cargo build"}),
        json!({"stdout": "", "stderr": "error[E0308]: mismatched types\nerror: could not compile `x`", "exit_code": 101}),
    );
    assert_eq!(
        kinds(&session.feed(2.0, broken)),
        [SignalKind::ToolFailure, SignalKind::BuildFailed]
    );
    for (output, kind) in [
        (
            "Tests:       2 failed, 1 passed, 3 total",
            SignalKind::TestFailed,
        ),
        ("Tests:       3 passed, 3 total", SignalKind::TestPassed),
        (
            "==== 1 failed, 4 passed in 0.20s ====",
            SignalKind::TestFailed,
        ),
        ("==== 4 passed in 0.20s ====", SignalKind::TestPassed),
        (
            "--- FAIL: TestX (0.00s)\nFAIL\texample.com/x\t0.01s",
            SignalKind::TestFailed,
        ),
        ("ok  \texample.com/x\t0.01s", SignalKind::TestPassed),
    ] {
        let event = post_tool(
            "Bash",
            json!({"command": output}),
            json!({"stdout": output}),
        );
        assert_eq!(kinds(&session.feed(3.0, event)), [kind], "{output}");
    }
    // Only Bash output is read for outcomes.
    let read = post_tool(
        "Read",
        json!({}),
        json!({"content": "test result: FAILED. 0 passed; 1 failed;"}),
    );
    assert!(kinds(&session.feed(4.0, read)).is_empty());
}

// Scores

#[test]
fn frustration_and_success_are_moving_averages_over_signal_bearing_events() {
    let mut session = Session::with(GrooveConfig {
        alpha: 0.5,
        ..GrooveConfig::default()
    });
    session.feed(0.0, prompt("wtf"));
    assert!((session.state.frustration - 0.3).abs() < 1e-12);
    assert_eq!(session.state.success, 0.0);
    // An event with no signal leaves both alone.
    session.feed(1.0, other());
    assert!((session.state.frustration - 0.3).abs() < 1e-12);
    session.feed(2.0, prompt("thanks"));
    assert!((session.state.frustration - 0.15).abs() < 1e-12);
    assert!((session.state.success - 0.3).abs() < 1e-12);
    // A neutral signal (a finished message) is not signal-bearing either.
    session.feed(3.0, delta("done"));
    session.feed(4.0, turn_complete());
    assert!((session.state.frustration - 0.15).abs() < 1e-12);
}

// Breaker

/// A session whose breaker opened at offset 2 (second 10): three failed
/// calls of 0.9 each reach the default threshold of 2.5.
fn opened() -> Session {
    let mut session = Session::new();
    session.feed(0.0, failing_bash("a"));
    session.feed(5.0, failing_bash("b"));
    assert_eq!(session.state.breaker, BreakerState::Closed);
    session.feed(10.0, failing_bash("c"));
    assert_eq!(session.state.breaker, BreakerState::Open);
    assert_eq!(session.state.open_offset, Some(2));
    session
}

#[test]
fn a_closed_breaker_opens_when_the_failure_score_reaches_the_threshold() {
    let session = opened();
    assert_eq!(
        session.transitions(),
        [(BreakerState::Closed, BreakerState::Open, 2)]
    );
    let Some(Record::Transition(open)) = session
        .records
        .iter()
        .find(|record| matches!(record, Record::Transition(_)))
    else {
        panic!("no transition");
    };
    assert!(
        open.reason.starts_with("failure score 2.6"),
        "{}",
        open.reason
    );
    assert_eq!(open.id, "2:transition:0");
}

#[test]
fn an_open_breaker_half_opens_after_the_cooldown_in_event_time_only() {
    // Opened at second 10; the cooldown is 300 s of event time.
    let mut session = opened();
    session.feed(11.0, other());
    assert_eq!(session.state.breaker, BreakerState::Open, "1 s later");
    session.feed(309.0, other());
    assert_eq!(session.state.breaker, BreakerState::Open, "299 s later");
    session.feed(311.0, other());
    assert_eq!(session.state.breaker, BreakerState::HalfOpen, "301 s later");
    assert_eq!(
        session.transitions().last(),
        Some(&(BreakerState::Open, BreakerState::HalfOpen, 5))
    );
}

#[test]
fn a_half_open_breaker_closes_on_a_success() {
    let mut session = opened();
    session.feed(400.0, other());
    assert_eq!(session.state.breaker, BreakerState::HalfOpen);
    session.feed(401.0, passing_bash("cargo test"));
    assert_eq!(session.state.breaker, BreakerState::Closed);
    assert_eq!(session.state.failure_score, 0.0);
    assert!(session.state.trouble.is_empty());
}

#[test]
fn a_half_open_breaker_reopens_on_a_failure_as_a_new_open() {
    let mut session = opened();
    // The cooldown and the failure in the same event: half-open, then open.
    session.feed(400.0, failing_bash("d"));
    assert_eq!(session.state.breaker, BreakerState::Open);
    assert_eq!(session.state.open_offset, Some(3));
    assert_eq!(
        session.transitions()[1..],
        [
            (BreakerState::Open, BreakerState::HalfOpen, 3),
            (BreakerState::HalfOpen, BreakerState::Open, 3)
        ]
    );
    let ids: Vec<&str> = session
        .records
        .iter()
        .filter(|record| matches!(record, Record::Transition(_)))
        .map(Record::id)
        .collect();
    assert_eq!(ids, ["2:transition:0", "3:transition:0", "3:transition:1"]);
}

#[test]
fn a_weak_signal_does_not_reopen_a_half_open_breaker() {
    let mut session = opened();
    session.feed(400.0, other());
    session.feed(401.0, delta("I apologize for that."));
    session.feed(402.0, turn_complete());
    assert_eq!(session.signals(SignalKind::Apology).len(), 1);
    assert_eq!(session.state.breaker, BreakerState::HalfOpen);
    session.feed(403.0, prompt("wtf"));
    assert_eq!(session.state.breaker, BreakerState::Open);
}

#[test]
fn a_failed_call_adds_to_the_failure_score_once_however_many_ways_it_shows() {
    let mut session = Session::new();
    let failing_tests = post_tool(
        "Bash",
        json!({"command": "cargo test"}),
        json!({"stdout": "test result: FAILED. 1 passed; 2 failed;", "stderr": "error[E0308]: x", "exit_code": 101}),
    );
    let records = session.feed(0.0, failing_tests);
    assert_eq!(
        kinds(&records),
        [
            SignalKind::ToolFailure,
            SignalKind::TestFailed,
            SignalKind::BuildFailed
        ]
    );
    assert!((session.state.failure_score - 0.9).abs() < 1e-12);
    // The same command failing again is also a retry, a cause of its own.
    session.feed(0.0, failing_bash("cargo test"));
    assert!((session.state.failure_score - (0.9 + 0.7 + 0.9)).abs() < 1e-12);
}

#[test]
fn failures_spread_over_many_half_lives_never_open_the_breaker() {
    let mut session = Session::new();
    for n in 0..20 {
        session.feed(n as f64 * 1800.0, failing_bash(&format!("c{n}")));
    }
    assert_eq!(session.state.breaker, BreakerState::Closed);
}

#[test]
fn the_failure_score_halves_every_half_life_of_event_time() {
    let mut session = Session::with(GrooveConfig {
        failure_half_life_secs: 100,
        ..GrooveConfig::default()
    });
    session.feed(0.0, failing_bash("a"));
    assert!((session.state.failure_score - 0.9).abs() < 1e-12);
    session.feed(100.0, other());
    assert!((session.state.failure_score - 0.45).abs() < 1e-12);
    session.feed(300.0, other());
    assert!((session.state.failure_score - 0.1125).abs() < 1e-12);
    // An event older than the last one decays nothing.
    session.feed(250.0, other());
    assert!((session.state.failure_score - 0.1125).abs() < 1e-12);
}

// Checkpoints

#[test]
fn an_interval_checkpoint_needs_both_enough_events_and_enough_event_time() {
    let mut session = Session::with(GrooveConfig {
        checkpoint_every_events: 5,
        checkpoint_interval_secs: 60,
        ..GrooveConfig::default()
    });
    for n in 0..10 {
        session.feed(n as f64, other());
    }
    assert!(session.checkpoints().is_empty(), "10 events in 9 s");
    session.feed(61.0, other());
    let checkpoints = session.checkpoints();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].trigger, CheckpointTrigger::Interval);
    assert_eq!(
        (checkpoints[0].from_offset, checkpoints[0].to_offset),
        (0, 10)
    );
    assert_eq!(checkpoints[0].events, 11);
    for n in 0..4 {
        session.feed(200.0 + n as f64, other());
    }
    assert_eq!(
        session.checkpoints().len(),
        1,
        "4 events, however long after"
    );
    session.feed(300.0, other());
    assert_eq!(session.checkpoints().len(), 2);
    assert_eq!(session.checkpoints()[1].from_offset, 11);
}

#[test]
fn frustration_rising_to_the_threshold_makes_one_checkpoint() {
    let mut session = Session::with(GrooveConfig {
        alpha: 0.5,
        checkpoint_frustration: 0.4,
        ..GrooveConfig::default()
    });
    session.feed(0.0, prompt("wtf")); // 0.3
    assert!(session.checkpoints().is_empty());
    session.feed(1.0, prompt("wtf")); // 0.45: crosses
    assert_eq!(session.checkpoints().len(), 1);
    assert_eq!(
        session.checkpoints()[0].trigger,
        CheckpointTrigger::Frustration
    );
    session.feed(2.0, prompt("wtf")); // 0.525: already above
    assert_eq!(session.checkpoints().len(), 1);
}

#[test]
fn repeated_tool_failures_within_the_window_make_a_checkpoint() {
    let mut session = Session::with(GrooveConfig {
        repeated_failures: 3,
        repeated_failures_window: 5,
        failure_half_life_secs: 1,
        ..GrooveConfig::default()
    });
    // Three failures, but spread over more than five steps.
    session.feed(0.0, failing_bash("a"));
    for n in 0..3 {
        session.feed(1.0 + n as f64, other());
    }
    session.feed(10.0, failing_bash("b"));
    session.feed(11.0, other());
    session.feed(12.0, failing_bash("c"));
    assert!(session.checkpoints().is_empty());
    session.feed(13.0, failing_bash("d"));
    let checkpoints = session.checkpoints();
    assert_eq!(checkpoints.len(), 1);
    let checkpoint = checkpoints[0];
    assert_eq!(checkpoint.trigger, CheckpointTrigger::RepeatedFailures);
    assert_eq!((checkpoint.from_offset, checkpoint.to_offset), (0, 7));
    assert_eq!(checkpoint.failures_by_tool["Bash"], 4);
    assert_eq!(checkpoint.signals["tool_failure"], 4);
    assert_eq!(checkpoint.snippets.len(), 3);
    assert!(checkpoint.snippets.iter().all(|s| s.text == "boom"));
    assert_eq!(checkpoint.id, "7:checkpoint:0");
}

#[test]
fn a_session_end_makes_one_checkpoint_though_it_arrives_twice() {
    let mut session = Session::new();
    session.feed(0.0, prompt("wtf"));
    session.feed(1.0, session_end());
    session.feed(1.0, removed());
    let checkpoints = session.checkpoints();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].trigger, CheckpointTrigger::SessionEnd);
    assert_eq!(checkpoints[0].signals["negative_phrase"], 1);
    assert_eq!(checkpoints[0].snippets[0].text, "wtf");
    // A resumed session that ends again gets another.
    session.feed(100.0, other());
    session.feed(101.0, removed());
    assert_eq!(session.checkpoints().len(), 2);
}

// Interventions

#[test]
fn an_intervention_record_counts_and_marks_the_open_it_answered() {
    let mut session = opened();
    let records = session.feed(
        12.0,
        VibesEvent::Plugin {
            plugin: "groove".into(),
            kind: "intervention".into(),
            session_id: Some("s1".into()),
            data: json!({"open_offset": 2, "note": "the note"}),
        },
    );
    let [Record::Intervention(intervention)] = records.as_slice() else {
        panic!("{records:?}");
    };
    assert_eq!(intervention.open_offset, 2);
    assert_eq!(intervention.id, "3:intervention:0");
    assert_eq!(session.state.interventions, 1);
    assert_eq!(session.state.intervened_open, Some(2));
    // Another plugin's record is not groove's.
    let records = session.feed(
        13.0,
        VibesEvent::Plugin {
            plugin: "other".into(),
            kind: "intervention".into(),
            session_id: Some("s1".into()),
            data: json!({"open_offset": 2}),
        },
    );
    assert!(records.is_empty());
    assert_eq!(session.state.interventions, 1);
}

#[test]
fn a_step_depends_on_event_time_not_on_when_it_runs() {
    let events = || {
        vec![
            (0.0, failing_bash("a")),
            (1.0, failing_bash("a")),
            (2.0, failing_bash("a")),
            (400.0, passing_bash("cargo test")),
            (401.0, session_end()),
        ]
    };
    let run = || {
        let mut session = Session::new();
        for (secs, event) in events() {
            session.feed(secs, event);
        }
        (session.records, session.state)
    };
    let first = run();
    let second = run();
    assert_eq!(first, second);
}
