//! What the tests share: a recorded corpus of sessions, event builders, and
//! feeding a handler in batches.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use vibes_core::{
    ClaudeEvent, Delivery, Handled, Handler, HookPayload, StoredEvent, Usage, VibesEvent,
};
use vibes_groove::{AssessmentHandler, GrooveConfig, GrooveStore};

/// 2001-09-09T01:46:40Z: event time nowhere near the wall clock.
pub(crate) const BASE_MS: i64 = 1_000_000_000_000;

pub(crate) fn at(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(BASE_MS + (secs * 1000.0) as i64).unwrap()
}

/// `event` stored at `secs` of event time.
pub(crate) fn stored(secs: f64, event: VibesEvent) -> StoredEvent {
    let mut stored = StoredEvent::new(event);
    stored.timestamp = at(secs);
    stored
}

/// `events` at offsets `first..`.
pub(crate) fn numbered(first: u64, events: Vec<StoredEvent>) -> Vec<Delivery> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| (first + i as u64, event))
        .collect()
}

pub(crate) fn hook(session: &str, payload: HookPayload) -> VibesEvent {
    VibesEvent::Hook {
        session_id: session.into(),
        event: payload,
    }
}

pub(crate) fn prompt(session: &str, text: &str) -> VibesEvent {
    hook(
        session,
        HookPayload {
            hook_event_name: "UserPromptSubmit".into(),
            prompt: Some(text.into()),
            ..HookPayload::default()
        },
    )
}

pub(crate) fn named_hook(session: &str, name: &str) -> VibesEvent {
    hook(
        session,
        HookPayload {
            hook_event_name: name.into(),
            ..HookPayload::default()
        },
    )
}

pub(crate) fn post_tool(session: &str, tool: &str, input: Value, response: Value) -> VibesEvent {
    hook(
        session,
        HookPayload {
            hook_event_name: "PostToolUse".into(),
            tool_name: Some(tool.into()),
            tool_input: Some(input),
            tool_response: Some(response),
            ..HookPayload::default()
        },
    )
}

pub(crate) fn failing_bash(session: &str, command: &str) -> VibesEvent {
    post_tool(
        session,
        "Bash",
        json!({"command": command}),
        json!({"stdout": "", "stderr": "boom", "exit_code": 1}),
    )
}

pub(crate) fn claude(session: &str, event: ClaudeEvent) -> VibesEvent {
    VibesEvent::Claude {
        session_id: session.into(),
        event,
    }
}

pub(crate) fn intervention(session: &str, open_offset: u64) -> VibesEvent {
    VibesEvent::Plugin {
        plugin: "groove".into(),
        kind: "intervention".into(),
        session_id: Some(session.into()),
        data: json!({"open_offset": open_offset, "note": "recorded note"}),
    }
}

/// Feeds `deliveries` to `handler` in batches of `size`, each handled whole.
pub(crate) async fn feed(handler: &mut dyn Handler, deliveries: &[Delivery], size: usize) {
    for batch in deliveries.chunks(size) {
        assert_eq!(handler.handle(batch).await, Handled::All);
    }
}

/// A store in `dir` with the default config, and a handler over it.
pub(crate) fn open(dir: &Path) -> (Arc<GrooveStore>, AssessmentHandler) {
    let store = Arc::new(GrooveStore::open(dir, &GrooveConfig::default()).unwrap());
    let handler = AssessmentHandler::new(store.clone(), vibes_plugin::Notices::none());
    (store, handler)
}

/// A small deterministic generator (a 64-bit LCG): the corpus is the same
/// on every run, with no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const PROMPTS: &[&str] = &[
    "add a --verbose flag to the cli",
    "now write the tests for it",
    "wtf, it is still broken",
    "this doesn't work, why did you change the parser?",
    "thanks, that works now",
    "perfect, looks good",
    "no, undo that",
    "revert the last change please",
    "can you explain what the retry loop does?",
    "I already told you to keep the old API, this is frustrating",
];

/// One session's events, each with its event time, as Claude Code and
/// vibesd would record them; `troubled` sessions fail most of their calls.
fn session_events(
    rng: &mut Lcg,
    id: &str,
    start: f64,
    turns: usize,
    troubled: bool,
    ends: bool,
) -> Vec<(f64, VibesEvent)> {
    let mut t = start;
    let mut events = Vec::new();
    let mut push = |t: f64, event| events.push((t, event));
    push(t, named_hook(id, "SessionStart"));
    push(
        t,
        VibesEvent::SessionCreated {
            session_id: id.into(),
            name: Some("/src/project".into()),
        },
    );
    let mut tool_n = 0;
    for turn in 0..turns {
        // Now and then the person steps away for a while: cooldowns pass
        // and failure scores decay.
        t += if rng.chance(15) {
            400.0 + rng.below(1600) as f64
        } else {
            5.0 + rng.below(40) as f64
        };
        let text = PROMPTS[rng.below(PROMPTS.len() as u64) as usize];
        push(t, prompt(id, text));
        push(
            t,
            VibesEvent::UserInput {
                session_id: id.into(),
                content: text.into(),
                source: "hook".into(),
            },
        );
        for _ in 0..(2 + rng.below(6)) {
            t += 0.2;
            push(
                t,
                claude(
                    id,
                    ClaudeEvent::TextDelta {
                        text: "Let me look at that. ".into(),
                    },
                ),
            );
        }
        if rng.chance(20) {
            t += 0.2;
            push(
                t,
                claude(
                    id,
                    ClaudeEvent::TextDelta {
                        text: "You're right, I broke the parser.".into(),
                    },
                ),
            );
        }
        // A claude tool call, whose result may fail.
        tool_n += 1;
        let tool_id = format!("toolu_{id}_{tool_n}");
        t += 1.0;
        push(
            t,
            claude(
                id,
                ClaudeEvent::ToolUseStart {
                    id: tool_id.clone(),
                    name: "Edit".into(),
                },
            ),
        );
        push(
            t,
            claude(
                id,
                ClaudeEvent::ToolInputDelta {
                    id: tool_id.clone(),
                    delta: "{\"file\":".into(),
                },
            ),
        );
        t += 1.0;
        let edit_fails = rng.chance(if troubled { 50 } else { 10 });
        push(
            t,
            claude(
                id,
                ClaudeEvent::ToolResult {
                    id: tool_id,
                    output: if edit_fails {
                        "String to replace not found".into()
                    } else {
                        "ok".into()
                    },
                    is_error: edit_fails,
                },
            ),
        );
        // A shell command through the hooks: tests, builds, plain commands.
        let command = [
            "cargo test",
            "cargo build",
            "npm test",
            "pytest -q",
            "go test ./...",
            "ls",
        ][rng.below(6) as usize];
        let fails = rng.chance(if troubled { 70 } else { 20 });
        let response = match (command, fails) {
            ("cargo test", true) => {
                json!({"stdout": "test result: FAILED. 3 passed; 2 failed; 0 ignored", "stderr": "   Compiling x", "exit_code": 101})
            }
            ("cargo test", false) => {
                json!({"stdout": "test result: ok. 5 passed; 0 failed; 0 ignored", "stderr": "   Compiling x\n    Finished"})
            }
            ("cargo build", true) => {
                json!({"stdout": "", "stderr": "error[E0308]: mismatched types\nerror: could not compile `x`", "exit_code": 101})
            }
            ("cargo build", false) => json!({"stdout": "", "stderr": "", "exit_code": 0}),
            ("npm test", true) => {
                json!({"stdout": "Tests:       1 failed, 4 passed, 5 total", "exitCode": 1})
            }
            ("npm test", false) => {
                json!({"stdout": "Tests:       5 passed, 5 total", "exitCode": 0})
            }
            ("pytest -q", true) => {
                json!({"stdout": "2 failed, 8 passed in 0.31s", "returncode": 1})
            }
            ("pytest -q", false) => json!({"stdout": "10 passed in 0.30s", "returncode": 0}),
            ("go test ./...", true) => {
                json!({"stdout": "--- FAIL: TestParse (0.00s)\nFAIL\texample.com/p\t0.01s", "exit_code": 1})
            }
            ("go test ./...", false) => json!({"stdout": "ok  \texample.com/p\t0.01s"}),
            (_, true) => {
                json!({"stdout": "", "stderr": "ls: cannot access 'x': No such file or directory"})
            }
            _ => json!({"stdout": "Cargo.toml\nsrc", "stderr": ""}),
        };
        let input = json!({"command": command, "description": "run it"});
        t += 2.0;
        push(
            t,
            hook(
                id,
                HookPayload {
                    hook_event_name: "PreToolUse".into(),
                    tool_name: Some("Bash".into()),
                    tool_input: Some(input.clone()),
                    ..HookPayload::default()
                },
            ),
        );
        t += 3.0 + rng.below(20) as f64;
        push(t, post_tool(id, "Bash", input.clone(), response.clone()));
        // A failed command is often tried again unchanged.
        if fails && rng.chance(50) {
            t += 4.0;
            push(t, post_tool(id, "Bash", input, response));
        }
        t += 0.5;
        push(
            t,
            claude(
                id,
                ClaudeEvent::TurnComplete {
                    usage: Usage {
                        input_tokens: 100,
                        output_tokens: 50 + turn as u64,
                        ..Usage::default()
                    },
                },
            ),
        );
        push(t, named_hook(id, "Stop"));
        push(
            t,
            VibesEvent::SessionStateChanged {
                session_id: id.into(),
                state: "waiting_for_input".into(),
            },
        );
    }
    if ends {
        t += 10.0;
        push(t, named_hook(id, "SessionEnd"));
        push(
            t,
            VibesEvent::SessionRemoved {
                session_id: id.into(),
                reason: "session_end".into(),
            },
        );
    }
    events
}

/// The recorded corpus: five sessions (two of them troubled, three that
/// end) interleaved by event time over several hours, with clients coming
/// and going, groove's own intervention records, and one event of a type
/// this build does not know. About 500 events.
pub(crate) fn corpus() -> Vec<Delivery> {
    let mut rng = Lcg(7);
    let sessions = [
        ("calm", 0.0, 12, false, true),
        ("troubled", 120.0, 14, true, true),
        ("sess ión/3", 300.0, 10, false, false),
        ("flaky", 900.0, 14, true, false),
        ("short", 2000.0, 4, false, true),
    ];
    let mut timed: Vec<(f64, usize, VibesEvent)> = Vec::new();
    for (n, (id, start, turns, troubled, ends)) in sessions.into_iter().enumerate() {
        for (t, event) in session_events(&mut rng, id, start, turns, troubled, ends) {
            timed.push((t, n, event));
        }
    }
    for k in 0..6 {
        timed.push((
            k as f64 * 1500.0,
            9,
            VibesEvent::ClientConnected {
                client_id: format!("c{k}"),
            },
        ));
    }
    // groove's records of notes it gave (their open offsets as recorded).
    timed.push((700.0, 1, intervention("troubled", 40)));
    timed.push((4000.0, 3, intervention("flaky", 300)));
    let newer: VibesEvent = serde_json::from_value(
        json!({"type": "session_renamed", "session_id": "calm", "name": "x"}),
    )
    .unwrap();
    timed.push((50.0, 0, newer));
    // Stable: events of one session keep their order at equal times.
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let events = timed
        .into_iter()
        .map(|(t, _, event)| stored(t, event))
        .collect();
    numbered(0, events)
}
