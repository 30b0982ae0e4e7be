//! A synthetic stream of coding sessions for the benchmarks of the groups
//! that derive from the log (the assessment here, chat-history and the
//! session transcripts in vibes-server, which include this file).

use std::time::Instant;

use serde_json::json;
use vibes_core::{
    ClaudeEvent, Delivery, Handled, Handler, HookPayload, StoredEvent, Usage, VibesEvent,
};
use vibes_iggy::EventLog;
use vibes_iggy::embedded::EmbeddedLog;

/// Sessions the stream spreads its turns over.
pub(crate) const SESSIONS: u64 = 200;

/// A 64-bit LCG: the same stream on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn hook(session: &str, payload: HookPayload) -> VibesEvent {
    VibesEvent::Hook {
        session_id: session.to_owned(),
        event: payload,
    }
}

/// One turn of a session: about 16 events.
fn turn(rng: &mut Lcg, session: &str, n: u64) -> Vec<VibesEvent> {
    let prompts = [
        "add the flag and its tests",
        "wtf, it is still broken",
        "thanks, that works now",
        "no, undo that",
        "explain the retry loop",
    ];
    let text = prompts[rng.below(prompts.len() as u64) as usize];
    let mut events = vec![
        hook(
            session,
            HookPayload {
                hook_event_name: "UserPromptSubmit".into(),
                prompt: Some(text.into()),
                ..HookPayload::default()
            },
        ),
        VibesEvent::UserInput {
            session_id: session.to_owned(),
            content: text.into(),
            source: "hook".into(),
        },
    ];
    let claude = |event| VibesEvent::Claude {
        session_id: session.to_owned(),
        event,
    };
    for _ in 0..6 {
        events.push(claude(ClaudeEvent::TextDelta {
            text: "Let me look at the parser first. ".into(),
        }));
    }
    let id = format!("toolu_{n}");
    events.push(claude(ClaudeEvent::ToolUseStart {
        id: id.clone(),
        name: "Edit".into(),
    }));
    let edit_fails = rng.below(10) == 0;
    events.push(claude(ClaudeEvent::ToolResult {
        id,
        output: if edit_fails { "not found" } else { "ok" }.into(),
        is_error: edit_fails,
    }));
    let input = json!({"command": "cargo test", "description": "run the tests"});
    let response = if rng.below(5) == 0 {
        json!({"stdout": "test result: FAILED. 10 passed; 1 failed; 0 ignored", "stderr": "   Compiling x", "exit_code": 101})
    } else {
        json!({"stdout": "test result: ok. 11 passed; 0 failed; 0 ignored", "stderr": "   Compiling x"})
    };
    events.push(hook(
        session,
        HookPayload {
            hook_event_name: "PreToolUse".into(),
            tool_name: Some("Bash".into()),
            tool_input: Some(input.clone()),
            ..HookPayload::default()
        },
    ));
    events.push(hook(
        session,
        HookPayload {
            hook_event_name: "PostToolUse".into(),
            tool_name: Some("Bash".into()),
            tool_input: Some(input),
            tool_response: Some(response),
            ..HookPayload::default()
        },
    ));
    events.push(claude(ClaudeEvent::TurnComplete {
        usage: Usage {
            input_tokens: 1000,
            output_tokens: 200,
            ..Usage::default()
        },
    }));
    events.push(hook(
        session,
        HookPayload {
            hook_event_name: "Stop".into(),
            ..HookPayload::default()
        },
    ));
    events.push(VibesEvent::SessionStateChanged {
        session_id: session.to_owned(),
        state: "waiting_for_input".into(),
    });
    events
}

/// `total` events: sessions take turns, one turn at a time, 250 ms of event
/// time apart.
pub(crate) fn stream(total: usize) -> Vec<StoredEvent> {
    let mut rng = Lcg(42);
    let base = chrono::DateTime::from_timestamp_millis(1_000_000_000_000).expect("a valid time");
    let mut events = Vec::with_capacity(total + 32);
    let mut n = 0u64;
    while events.len() < total {
        let session = format!("session-{:03}", rng.below(SESSIONS));
        for event in turn(&mut rng, &session, n) {
            let mut stored = StoredEvent::new(event);
            stored.timestamp = base + chrono::Duration::milliseconds(events.len() as i64 * 250);
            events.push(stored);
        }
        n += 1;
    }
    events.truncate(total);
    events
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(rate: f64) -> String {
    let digits = format!("{rate:.0}");
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Reads the whole log in batches of `batch`, decoding every event, and
/// hands each batch to `handler` if there is one; answers events per second.
pub(crate) async fn read_through(
    log: &EmbeddedLog,
    total: u64,
    batch: usize,
    handler: Option<&mut dyn Handler>,
) -> f64 {
    let mut handler = handler;
    let started = Instant::now();
    let mut from = 0;
    while from < total {
        let records = log.read(from, batch).await.expect("read the log");
        let deliveries: Vec<Delivery> = records
            .iter()
            .map(|record| (record.offset, record.event().expect("decodes")))
            .collect();
        if let Some(handler) = handler.as_deref_mut() {
            assert_eq!(handler.handle(&deliveries).await, Handled::All);
        }
        from += records.len() as u64;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// `VIBES_BENCH_EVENTS` (default 200,000) events of the stream in a real
/// embedded log in a temporary directory; the count, the log and the
/// directory.
pub(crate) async fn filled_log() -> (usize, EmbeddedLog, tempfile::TempDir) {
    let total: usize = std::env::var("VIBES_BENCH_EVENTS")
        .ok()
        .map(|n| n.parse().expect("VIBES_BENCH_EVENTS is a number"))
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = EmbeddedLog::open(&dir.path().join("log"), vibes_iggy::LogOptions::default())
        .expect("open the log");
    let events = stream(total);
    for chunk in events.chunks(1000) {
        log.append_batch(chunk.to_vec()).await.expect("append");
    }
    (total, log, dir)
}
