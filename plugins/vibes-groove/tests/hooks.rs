//! Sessions as `vibesd hook` records them (each hook, then what vibesd
//! derives from it), through the plugin as the daemon runs it.

use serde_json::{Value, json};
use vibes_core::{HookPayload, StoredEvent, VibesEvent};
use vibes_groove::Groove;
use vibes_plugin::{Plugin, PluginContext};

use crate::support::{feed, numbered, stored};

/// The events vibesd appends for one hook payload.
fn recorded(session: &str, name: &str, fields: Value) -> Vec<VibesEvent> {
    let mut payload = json!({"session_id": session, "hook_event_name": name, "cwd": "/src"});
    if let (Some(payload), Value::Object(fields)) = (payload.as_object_mut(), fields) {
        payload.extend(fields);
    }
    let payload: HookPayload = serde_json::from_value(payload).unwrap();
    let derived = match name {
        "UserPromptSubmit" => Some(VibesEvent::UserInput {
            session_id: session.into(),
            content: payload.prompt.clone().unwrap_or_default(),
            source: "hook".into(),
        }),
        "SessionStart" => Some(VibesEvent::SessionCreated {
            session_id: session.into(),
            name: payload.cwd.clone(),
        }),
        "SessionEnd" => Some(VibesEvent::SessionRemoved {
            session_id: session.into(),
            reason: "exit".into(),
        }),
        _ => None,
    };
    let mut events = vec![VibesEvent::Hook {
        session_id: session.into(),
        event: payload,
    }];
    events.extend(derived);
    events
}

fn prompt(session: &str, text: &str) -> Vec<VibesEvent> {
    recorded(session, "UserPromptSubmit", json!({"prompt": text}))
}

fn bash(session: &str, command: &str, stdout: &str, exit_code: i64) -> Vec<VibesEvent> {
    recorded(
        session,
        "PostToolUse",
        json!({
            "tool_name": "Bash",
            "tool_input": {"command": command},
            "tool_response": {"stdout": stdout, "stderr": "", "exit_code": exit_code, "interrupted": false},
        }),
    )
}

fn rough(session: &str) -> Vec<VibesEvent> {
    [
        recorded(session, "SessionStart", json!({})),
        prompt(session, "please fix the failing tests"),
        bash(
            session,
            "cargo test",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored",
            101,
        ),
        prompt(session, "no, that's wrong, undo that"),
        bash(
            session,
            "cargo build",
            "error[E0308]: mismatched types\nerror: could not compile `app`",
            101,
        ),
        prompt(session, "ugh, this still doesn't work"),
        bash(
            session,
            "cargo test",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored",
            101,
        ),
        prompt(session, "this is so frustrating, why did you do that"),
    ]
    .concat()
}

fn smooth(session: &str) -> Vec<VibesEvent> {
    [
        recorded(session, "SessionStart", json!({})),
        prompt(session, "add a readme"),
        bash(
            session,
            "cargo test",
            "test result: ok. 12 passed; 0 failed; 0 ignored",
            0,
        ),
        prompt(session, "thanks, perfect"),
        recorded(session, "SessionEnd", json!({"reason": "exit"})),
    ]
    .concat()
}

#[tokio::test]
async fn a_rough_and_a_smooth_session_read_as_such_and_the_rough_one_gets_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let context = PluginContext {
        data_dir: dir.path().to_owned(),
        config: "intervene = true\nbreaker_threshold = 1.0".parse().unwrap(),
        notices: vibes_plugin::Notices::none(),
    };
    let plugin = Groove.start(&context).unwrap();
    let mut handler = (plugin.groups()[0].handler)();
    let events: Vec<StoredEvent> = [rough("rough"), smooth("smooth")]
        .concat()
        .into_iter()
        .enumerate()
        .map(|(n, event)| stored(n as f64, event))
        .collect();
    feed(handler.as_mut(), &numbered(0, events), 2).await;

    let router = plugin.routes();
    let get = |uri: &'static str| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let rough = get("/sessions/rough").await;
    let text = rough.to_string();
    for kind in [
        "test_failed",
        "build_failed",
        "correction",
        "negative_phrase",
    ] {
        assert!(text.contains(kind), "no {kind} in {rough}");
    }
    let smooth = get("/sessions/smooth").await;
    assert!(smooth.to_string().contains("test_passed"));
    assert!(
        smooth["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "session_end")
    );
    let (r, s) = (&rough["session"], &smooth["session"]);
    assert!(r["frustration"].as_f64() > s["frustration"].as_f64());
    assert!(s["success"].as_f64() > r["success"].as_f64());
    assert_eq!(r["breaker"], "open");

    let submit = HookPayload {
        hook_event_name: "UserPromptSubmit".into(),
        prompt: Some("try again".into()),
        ..HookPayload::default()
    };
    let answer = plugin.answer_hook("rough", &submit).unwrap();
    let note = answer.output["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(note.contains("Bash failed"), "{note}");
    assert!(
        note.contains("failing tests (cargo: 2 failed, 3 passed)"),
        "{note}"
    );
    assert!(note.contains("rejected the last action"), "{note}");
    assert_eq!(plugin.answer_hook("smooth", &submit), None);
}
