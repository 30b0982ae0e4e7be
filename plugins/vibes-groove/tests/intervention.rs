//! Hook answers: only with `intervene = true`, only for `UserPromptSubmit`,
//! only while the session's breaker is open, once per Open, and at most
//! `max_interventions` per session.

use std::path::Path;

use serde_json::json;
use vibes_core::{Delivery, Handler, HookPayload, VibesEvent};
use vibes_groove::Groove;
use vibes_plugin::{HookAnswer, Plugin, PluginContext, RunningPlugin};

use crate::support::{failing_bash, feed, numbered, stored};

fn start(dir: &Path, config: &str) -> Box<dyn RunningPlugin> {
    let context = PluginContext {
        data_dir: dir.to_owned(),
        config: config.parse().unwrap(),
        notices: vibes_plugin::Notices::none(),
    };
    Groove.start(&context).unwrap()
}

fn handler(plugin: &dyn RunningPlugin) -> Box<dyn Handler> {
    (plugin.groups()[0].handler)()
}

fn submit() -> HookPayload {
    HookPayload {
        hook_event_name: "UserPromptSubmit".into(),
        prompt: Some("try again".into()),
        ..HookPayload::default()
    }
}

/// Session `s` with its breaker opened at offset 2 (three failed calls).
fn opening() -> Vec<Delivery> {
    numbered(
        0,
        vec![
            stored(0.0, failing_bash("s", "make a")),
            stored(5.0, failing_bash("s", "make b")),
            stored(10.0, failing_bash("s", "make c")),
        ],
    )
}

/// The record the answer asks vibesd to append, at `offset`.
fn recorded(answer: &HookAnswer, offset: u64, secs: f64) -> Vec<Delivery> {
    numbered(offset, vec![stored(secs, answer.record.clone().unwrap())])
}

#[tokio::test]
async fn no_note_unless_intervene_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path(), "");
    feed(handler(plugin.as_ref()).as_mut(), &opening(), 10).await;
    assert_eq!(plugin.answer_hook("s", &submit()), None);
}

#[tokio::test]
async fn a_note_only_for_user_prompt_submit_while_the_breaker_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path(), "intervene = true");
    let mut handler = handler(plugin.as_ref());
    assert_eq!(plugin.answer_hook("s", &submit()), None, "unknown session");
    feed(handler.as_mut(), &opening()[..2], 10).await;
    assert_eq!(plugin.answer_hook("s", &submit()), None, "still closed");
    feed(handler.as_mut(), &opening()[2..], 10).await;
    let pre_tool = HookPayload {
        hook_event_name: "PreToolUse".into(),
        ..HookPayload::default()
    };
    assert_eq!(plugin.answer_hook("s", &pre_tool), None);
    assert_eq!(plugin.answer_hook("other", &submit()), None);

    let answer = plugin.answer_hook("s", &submit()).unwrap();
    let note = answer.output["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        answer.output,
        json!({"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": note}})
    );
    assert!(note.contains("Bash failed 3 times"), "{note}");
    assert_eq!(
        answer.record,
        Some(VibesEvent::Plugin {
            plugin: "groove".into(),
            kind: "intervention".into(),
            session_id: Some("s".into()),
            data: json!({"open_offset": 2, "note": note}),
        })
    );
}

#[tokio::test]
async fn each_open_intervenes_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path(), "intervene = true");
    let mut handler = handler(plugin.as_ref());
    feed(handler.as_mut(), &opening(), 10).await;
    let answer = plugin.answer_hook("s", &submit()).unwrap();
    // Before the group has read the record: the plugin remembers.
    assert_eq!(plugin.answer_hook("s", &submit()), None);
    feed(handler.as_mut(), &recorded(&answer, 3, 11.0), 10).await;
    drop((handler, plugin));
    // After a restart, with nothing in memory: the store remembers.
    let plugin = start(dir.path(), "intervene = true");
    assert_eq!(plugin.answer_hook("s", &submit()), None);
    let page = vibes_groove::GrooveStore::open(dir.path(), &vibes_groove::GrooveConfig::default())
        .unwrap()
        .timeline("s", None, 100)
        .unwrap()
        .unwrap();
    assert_eq!(page.session["interventions"], 1);
    assert!(
        page.records
            .iter()
            .any(|r| r["type"] == "intervention" && r["open_offset"] == 2)
    );
}

#[tokio::test]
async fn a_new_open_intervenes_again_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let config = "intervene = true\nmax_interventions = 2";
    let plugin = start(dir.path(), config);
    let mut handler = handler(plugin.as_ref());
    feed(handler.as_mut(), &opening(), 10).await;
    let first = plugin.answer_hook("s", &submit()).unwrap();
    // The cooldown passes and the next call fails: a new Open, at 3.
    feed(
        handler.as_mut(),
        &numbered(3, vec![stored(400.0, failing_bash("s", "make d"))]),
        10,
    )
    .await;
    let second = plugin.answer_hook("s", &submit()).unwrap();
    assert_eq!(
        second.record.as_ref().map(|r| r.session_id()),
        Some(Some("s"))
    );
    let VibesEvent::Plugin { data, .. } = second.record.clone().unwrap() else {
        panic!("not a plugin record");
    };
    assert_eq!(data["open_offset"], 3);
    // A third Open: two notes given, none recorded yet, the cap is two.
    feed(
        handler.as_mut(),
        &numbered(4, vec![stored(800.0, failing_bash("s", "make e"))]),
        10,
    )
    .await;
    assert_eq!(plugin.answer_hook("s", &submit()), None);

    // Recorded and restarted: the store's count holds the cap.
    feed(handler.as_mut(), &recorded(&first, 5, 801.0), 10).await;
    feed(handler.as_mut(), &recorded(&second, 6, 802.0), 10).await;
    drop((handler, plugin));
    let plugin = start(dir.path(), config);
    let mut handler = (plugin.groups()[0].handler)();
    feed(
        handler.as_mut(),
        &numbered(7, vec![stored(1300.0, failing_bash("s", "make f"))]),
        10,
    )
    .await;
    assert_eq!(plugin.answer_hook("s", &submit()), None);
    // Raising the cap (a setting the store does not depend on) allows one more.
    drop((handler, plugin));
    let plugin = start(dir.path(), "intervene = true\nmax_interventions = 3");
    assert!(plugin.answer_hook("s", &submit()).is_some());
}
