//! The web UI in a real headless Chromium against a real vibesd: every
//! view with real data, the actions an operator takes, the firehose across
//! a restart, and the token beyond loopback.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Browser, Tab};
use crate::notifications::{
    Webhook, append, daemon_with, notifications_running, permission_request,
};
use crate::support::{Client, Daemon, user_input, wait_for};

/// `[data-testid="<id>"]`.
fn id(testid: &str) -> String {
    format!("[data-testid=\"{testid}\"]")
}

/// A session with messages, a reply and a permission request.
async fn seed(client: &Client) {
    for event in [
        json!({"type": "session_created", "session_id": "s1", "name": "refactor"}),
        user_input("s1", "please refactor the parser module"),
        json!({"type": "claude", "session_id": "s1", "event": {"type": "text_delta", "text": "Reading the parser now."}}),
        json!({"type": "claude", "session_id": "s1", "event": {"type": "turn_complete", "usage": {"input_tokens": 120, "output_tokens": 30}}}),
    ] {
        append(client, &event).await;
    }
}

/// Waits until every group but the live-only ones has handled the log.
async fn caught_up(client: &Client) {
    let end = client.high_water_mark().await;
    wait_for("every group to catch up", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().unwrap().iter().all(|group| {
            group["committed_offset"]
                .as_u64()
                .is_some_and(|committed| committed + 1 >= end)
                || group["lag"] == 0
        })
    })
    .await;
}

async fn online(tab: &Tab) {
    tab.wait(
        "the page to be online",
        &format!(
            "document.querySelector('{}')?.dataset.state === 'online'",
            id("connection")
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_shows_real_data_and_the_page_reports_no_error() {
    let webhook = Webhook::start().await;
    webhook.fail(usize::MAX, 404);
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\n\n[groups.notifications]\nmax_attempts = 1\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;
    seed(&client).await;
    #[cfg(feature = "groove")]
    crate::groove::post_hooks(&client, &crate::groove::rough_session("rough")).await;
    // A notification the webhook refuses: a dead letter to show.
    let refused = append(&client, &permission_request("s1", "Bash")).await;
    wait_for("the dead letter", || async {
        let (_, letters) = client.get("/api/dead-letters").await;
        letters
            .as_array()
            .is_some_and(|letters| !letters.is_empty())
    })
    .await;
    caught_up(&client).await;

    let browser = Browser::launch().await;
    let tab = browser.open(&daemon.url, "every-view").await;
    online(&tab).await;

    // `/` is the groups view.
    tab.wait(
        "a row per group",
        &format!(
            "document.querySelectorAll('{}').length >= 4",
            id("group-row")
        ),
    )
    .await;
    let state = tab
        .text(&format!(
            "{}[data-group=\"chat-history\"] [data-field=\"state\"]",
            id("group-row")
        ))
        .await;
    assert!(state.contains("running"), "{state}");
    tab.wait(
        "the lag chart",
        &format!("document.querySelector('{} canvas')", id("lag-chart")),
    )
    .await;
    if let Ok(dir) = std::env::var("VIBES_UI_SCREENSHOTS") {
        tab.screenshot(&std::path::Path::new(&dir).join("ui-groups.png"))
            .await;
    }

    tab.go("/firehose").await;
    tab.wait(
        "the firehose connected",
        "window.__vibes && window.__vibes.firehose",
    )
    .await;

    tab.go("/actors").await;
    tab.wait("the writer and the groups in the tree", &format!(
        "document.querySelector('{0}[data-kind=\"log_writer\"]') && document.querySelector('{0}[data-name=\"chat-history\"]')",
        id("actor-node")
    ))
    .await;
    // A restart shows as it happens: a new actor id, listed as a change.
    let (status, body) = client
        .post_raw("/api/groups/chat-history/restart", Vec::new())
        .await;
    assert_eq!(status, 200, "{body}");
    tab.wait("the restart in the tree", &format!(
        "[...document.querySelectorAll('{}')].some(c => c.textContent.includes('chat-history'))",
        id("actor-change")
    ))
    .await;

    tab.go("/dead-letters").await;
    tab.wait(
        "the dead letter",
        &format!(
            "document.querySelector('{}[data-group=\"notifications\"][data-offset=\"{refused}\"]')",
            id("dead-letter-row")
        ),
    )
    .await;

    tab.go("/sessions").await;
    tab.wait(
        "the session",
        &format!(
            "document.querySelector('{}[data-session=\"s1\"]')",
            id("session-row")
        ),
    )
    .await;
    tab.click(&format!("{}[data-session=\"s1\"]", id("session-row")))
        .await;
    tab.wait("its messages", &format!(
        "[...document.querySelectorAll('{}')].some(m => m.textContent.includes('refactor the parser'))",
        id("message")
    ))
    .await;
    tab.wait(
        "its transcript",
        &format!(
            "document.querySelector('{}')?.textContent.includes('session_created')",
            id("transcript")
        ),
    )
    .await;

    #[cfg(feature = "groove")]
    {
        tab.go("/assessment").await;
        tab.wait(
            "the rough session",
            &format!(
                "document.querySelector('{}[data-session=\"rough\"]')",
                id("assessment-row")
            ),
        )
        .await;
        tab.page
            .goto(format!("{}/assessment/rough", daemon.url))
            .await
            .unwrap();
        tab.wait(
            "its breaker",
            &format!(
                "document.querySelector('{}')?.textContent.includes('open')",
                id("breaker-state")
            ),
        )
        .await;
        tab.wait(
            "its score chart",
            &format!("document.querySelector('{} canvas')", id("score-chart")),
        )
        .await;
        tab.wait(
            "its signals",
            &format!(
                "document.querySelector('{}[data-type=\"signal\"]')",
                id("assessment-record")
            ),
        )
        .await;
    }

    tab.go("/status").await;
    tab.wait("the status", &format!(
        "document.querySelector('{} [data-field=\"backend\"]')?.textContent.includes('embedded')",
        id("status")
    ))
    .await;
    let end = client.high_water_mark().await;
    tab.wait("the high-water mark", &format!(
        "document.querySelector('{} [data-field=\"high_water_mark\"]')?.textContent.includes('{end}')",
        id("status")
    ))
    .await;
    assert!(
        tab.eval::<bool>(&format!(
            "!!document.querySelector('{}[href=\"/metrics\"]')",
            id("metrics-link")
        ))
        .await
    );

    // A notification is pushed to the open page as it happens.
    let asked = append(&client, &permission_request("s1", "Edit")).await;
    tab.wait(
        "the toast",
        &format!(
            "document.querySelector('{}')?.textContent.includes('Edit')",
            id("toast")
        ),
    )
    .await;
    tab.go("/notifications").await;
    tab.wait("the notification", &format!(
        "document.querySelector('{}[data-kind=\"permission_request\"][data-offset=\"{asked}\"]')",
        id("notification")
    ))
    .await;

    // Back and forward walk the views visited.
    tab.eval::<bool>("(history.back(), true)").await;
    tab.wait("back to the status", "location.pathname === '/status'")
        .await;
    tab.eval::<bool>("(history.forward(), true)").await;
    tab.wait(
        "forward to notifications",
        "location.pathname === '/notifications'",
    )
    .await;
    // A deep link loads its view.
    tab.page
        .goto(format!("{}/sessions/s1", daemon.url))
        .await
        .unwrap();
    tab.wait(
        "the session's messages from a deep link",
        &format!("document.querySelector('{}')", id("message")),
    )
    .await;
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_appended_through_the_api_shows_in_the_firehose_within_a_second() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    seed(&client).await;
    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{}/firehose", daemon.url), "firehose-live")
        .await;
    online(&tab).await;
    tab.wait("the firehose connected", "window.__vibes?.firehose")
        .await;
    // Give the socket its subscription: the first live event must show.
    let warm = append(&client, &user_input("s1", "warm-up")).await;
    tab.wait(
        "the warm-up row",
        &format!(
            "document.querySelector('{}[data-offset=\"{warm}\"]')",
            id("event-row")
        ),
    )
    .await;

    let offset = append(&client, &user_input("s1", "look at me")).await;
    let appended = Instant::now();
    tab.wait(
        "the new row",
        &format!(
            "document.querySelector('{}[data-offset=\"{offset}\"]')",
            id("event-row")
        ),
    )
    .await;
    let took = appended.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the row showed after {took:?}"
    );
    let row = tab
        .text(&format!("{}[data-offset=\"{offset}\"]", id("event-row")))
        .await;
    assert!(row.contains("user_input") && row.contains("s1"), "{row}");
    // A row expands to its JSON.
    tab.click(&format!("{}[data-offset=\"{offset}\"]", id("event-row")))
        .await;
    tab.wait(
        "the event's JSON",
        &format!(
            "document.querySelector('{}')?.textContent.includes('look at me')",
            id("event-json")
        ),
    )
    .await;

    // Filters: only the session asked for.
    tab.type_into(&id("firehose-session"), "other").await;
    tab.choose(&id("firehose-from"), "beginning").await;
    tab.click(&id("firehose-apply")).await;
    tab.wait(
        "the URL to carry the filter",
        "location.search.includes('session=other')",
    )
    .await;
    let other = append(&client, &user_input("other", "elsewhere")).await;
    tab.wait(
        "the other session's row",
        &format!(
            "document.querySelector('{}[data-offset=\"{other}\"]')",
            id("event-row")
        ),
    )
    .await;
    let shown: Vec<u64> = tab
        .eval(&format!(
            "[...document.querySelectorAll('{}')].map(r => Number(r.dataset.offset))",
            id("event-row")
        ))
        .await;
    assert_eq!(shown, vec![other], "only the filtered session is shown");

    // Pausing the view holds rows back, resuming shows them.
    tab.click(&id("firehose-pause")).await;
    let held = append(&client, &user_input("other", "while paused")).await;
    tab.wait(
        "the firehose to have received it",
        &format!("window.__vibes.firehose.lastOffset >= {held}"),
    )
    .await;
    let shown_now: bool = tab
        .eval(&format!(
            "!!document.querySelector('{}[data-offset=\"{held}\"]')",
            id("event-row")
        ))
        .await;
    assert!(!shown_now, "a paused view shows no new row");
    tab.click(&id("firehose-pause")).await;
    tab.wait(
        "the held row after resuming",
        &format!(
            "document.querySelector('{}[data-offset=\"{held}\"]')",
            id("event-row")
        ),
    )
    .await;
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_paused_from_the_ui_is_paused_and_a_seek_shows_its_dry_run_first() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    seed(&client).await;
    caught_up(&client).await;
    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{}/groups", daemon.url), "groups-actions")
        .await;
    let row = format!("{}[data-group=\"chat-history\"]", id("group-row"));

    tab.click(&format!("{row} [data-action=\"pause\"]")).await;
    wait_for("chat-history paused", || async {
        client.group("chat-history").await["state"] == "paused"
    })
    .await;
    tab.wait(
        "the row to say paused",
        &format!(
            "document.querySelector('{row} [data-field=\"state\"]')?.textContent.includes('paused')"
        ),
    )
    .await;
    tab.click(&format!("{row} [data-action=\"resume\"]")).await;
    wait_for("chat-history running", || async {
        client.group("chat-history").await["state"] == "running"
    })
    .await;

    let committed = client.group("chat-history").await["committed_offset"].clone();
    tab.click(&format!("{row} [data-action=\"seek\"]")).await;
    tab.wait(
        "the seek dialog",
        &format!("document.querySelector('{}')", id("seek-dialog")),
    )
    .await;
    tab.choose(&id("seek-target"), "beginning").await;
    let confirm_disabled: bool = tab
        .eval(&format!(
            "document.querySelector('{}').disabled",
            id("seek-confirm")
        ))
        .await;
    assert!(confirm_disabled, "confirming needs the dry run first");
    tab.click(&id("seek-preview")).await;
    tab.wait(
        "the dry run's answer",
        &format!(
            "/replayed|replay/.test(document.querySelector('{}')?.textContent ?? '')",
            id("seek-dry-run")
        ),
    )
    .await;
    // The dry run moved nothing.
    assert_eq!(
        client.group("chat-history").await["committed_offset"],
        committed
    );
    tab.click(&id("seek-confirm")).await;
    tab.wait(
        "the seek's result",
        &format!("document.querySelector('{}')", id("seek-result")),
    )
    .await;
    wait_for(
        "chat-history to have read from the beginning again",
        || async { client.group("chat-history").await["events_handled"].as_u64() > Some(4) },
    )
    .await;
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_from_the_ui() {
    let webhook = Webhook::start().await;
    webhook.fail(usize::MAX, 404);
    let (daemon, _config) = daemon_with(&format!(
        "[[webhooks]]\nurl = \"{}\"\n\n[groups.notifications]\nmax_attempts = 1\n",
        webhook.url()
    ));
    let client = daemon.client();
    notifications_running(&client).await;
    let offset = append(&client, &permission_request("s1", "Bash")).await;
    wait_for("the dead letter", || async {
        let (_, letters) = client.get("/api/dead-letters").await;
        letters
            .as_array()
            .is_some_and(|letters| !letters.is_empty())
    })
    .await;
    webhook.fail(0, 404);

    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{}/dead-letters", daemon.url), "dead-letters")
        .await;
    let row = format!(
        "{}[data-group=\"notifications\"][data-offset=\"{offset}\"]",
        id("dead-letter-row")
    );
    tab.click(&format!("{row} [data-action=\"replay\"]")).await;
    tab.wait(
        "the replay's result",
        &format!(
            "document.querySelector('{}')?.textContent.includes('replay')",
            id("dead-letter-result")
        ),
    )
    .await;
    let (_, letters) = client.get("/api/dead-letters").await;
    assert_eq!(letters, json!([]), "the replay closed the dead letter");
    assert_eq!(webhook.received().len(), 1, "the replay delivered it");
    tab.wait(
        "the row to go",
        &format!("!document.querySelector('{row}')"),
    )
    .await;
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_from_the_ui_finds_a_message() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    seed(&client).await;
    append(
        &client,
        &user_input("s2", "the tokenizer drops unicode escapes"),
    )
    .await;
    caught_up(&client).await;
    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{}/sessions", daemon.url), "search")
        .await;
    tab.type_into(&id("search-input"), "tokenizer").await;
    tab.page
        .find_element(&id("search-input"))
        .await
        .unwrap()
        .press_key("Enter")
        .await
        .unwrap();
    tab.wait(
        "the search URL",
        "location.pathname === '/search' && location.search.includes('tokenizer')",
    )
    .await;
    tab.wait("the match", &format!(
        "[...document.querySelectorAll('{}')].some(r => r.textContent.includes('unicode') && r.textContent.includes('s2'))",
        id("search-result")
    ))
    .await;
    let results: u64 = tab
        .eval(&format!(
            "document.querySelectorAll('{}').length",
            id("search-result")
        ))
        .await;
    assert_eq!(results, 1);
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firehose_resumes_after_a_restart_without_a_gap_or_a_duplicate() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let port = daemon.url.rsplit(':').next().unwrap().to_owned();
    for n in 0..20 {
        append(&client, &user_input("s1", &format!("before {n}"))).await;
    }
    let browser = Browser::launch().await;
    let tab = browser
        .open(
            &format!("{}/firehose?from=beginning", daemon.url),
            "firehose-restart",
        )
        .await;
    tab.wait("the history", "window.__vibes?.firehose?.lastOffset === 19")
        .await;

    daemon.sigterm();
    tab.wait(
        "the page to say it is offline",
        &format!(
            "document.querySelector('{}')?.dataset.state === 'offline'",
            id("connection")
        ),
    )
    .await;
    daemon.restart_with(&["--bind", &format!("127.0.0.1:{port}")]);
    let client = daemon.client();
    // Appended while the page is still away, and after it is back.
    for n in 0..10 {
        append(&client, &user_input("s1", &format!("after {n}"))).await;
    }
    online(&tab).await;
    for n in 10..20 {
        append(&client, &user_input("s1", &format!("after {n}"))).await;
    }
    let end = client.high_water_mark().await;
    // Rows render on the next animation frame after an event arrives:
    // wait for the last one to be on the page, not only received.
    tab.wait(
        "every event, on the page",
        &format!(
            "window.__vibes.firehose.lastOffset === {last} \
             && !!document.querySelector('{}[data-offset=\"{last}\"]')",
            id("event-row"),
            last = end - 1
        ),
    )
    .await;
    let shown: Vec<u64> = tab
        .eval(&format!(
            "[...document.querySelectorAll('{}')].map(r => Number(r.dataset.offset))",
            id("event-row")
        ))
        .await;
    let mut sorted = shown.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), shown.len(), "no duplicate row: {shown:?}");
    let user_rows: Vec<u64> = (0..end).collect();
    assert_eq!(sorted, user_rows, "every offset once, none missing");
    let received: u64 = tab.eval("window.__vibes.firehose.received").await;
    assert_eq!(received, end, "each event received once");
    // While vibesd was down, Chromium reported the refused connections;
    // nothing else.
    let errors: Vec<String> = tab
        .errors()
        .into_iter()
        .filter(|error| !error.contains("net::ERR_CONNECTION_REFUSED"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_ui_asks_for_the_token_and_refuses_a_wrong_one() {
    let daemon = Daemon::start(&["--bind", "0.0.0.0:0", "--token", "the-right-token"]);
    let port = daemon.url.rsplit(':').next().unwrap().to_owned();
    let url = format!("http://127.0.0.1:{port}");
    let client = daemon.client().with_token("the-right-token");
    seed(&client).await;

    let browser = Browser::launch().await;
    let tab = browser.open(&format!("{url}/groups"), "token").await;
    tab.wait(
        "the token prompt",
        &format!("document.querySelector('{}')", id("token-dialog")),
    )
    .await;
    tab.type_into(&id("token-input"), "not-the-token").await;
    tab.click(&id("token-submit")).await;
    tab.wait(
        "the refusal",
        &format!(
            "document.querySelector('{}')?.textContent.length > 0",
            id("token-error")
        ),
    )
    .await;
    tab.type_into(&id("token-input"), "the-right-token").await;
    tab.click(&id("token-submit")).await;
    tab.wait(
        "the prompt to close",
        &format!(
            "!document.querySelector('{} input')?.checkVisibility?.()",
            id("token-dialog")
        ),
    )
    .await;
    tab.wait(
        "the groups",
        &format!(
            "document.querySelectorAll('{}').length >= 4",
            id("group-row")
        ),
    )
    .await;
    // The WebSockets carry the token too: live events reach the firehose.
    tab.go("/firehose").await;
    online(&tab).await;
    let offset = append(&client, &user_input("s1", "through the token")).await;
    tab.wait(
        "the live row",
        &format!(
            "document.querySelector('{}[data-offset=\"{offset}\"]')",
            id("event-row")
        ),
    )
    .await;
    // The token is asked once: a reload does not ask again.
    tab.page.reload().await.unwrap();
    tab.wait("the firehose after a reload", "window.__vibes?.firehose")
        .await;
    online(&tab).await;
    let prompted: bool = tab
        .eval(&format!(
            "!!document.querySelector('{} input')?.checkVisibility?.()",
            id("token-dialog")
        ))
        .await;
    assert!(!prompted, "the stored token is used");
    // The 401s of the wrong token are the page's own doing, not errors.
    let errors: Vec<String> = tab
        .errors()
        .into_iter()
        .filter(|error| !error.contains("401"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_sized_screen_and_by_keyboard_the_views_work() {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    seed(&client).await;
    caught_up(&client).await;
    let browser = Browser::launch().await;
    let tab = browser.open("about:blank", "phone").await;
    tab.page
        .execute(SetDeviceMetricsOverrideParams::new(375, 812, 2.0, true))
        .await
        .unwrap();
    tab.page
        .goto(format!("{}/groups", daemon.url))
        .await
        .unwrap();
    tab.wait(
        "the groups",
        &format!(
            "document.querySelectorAll('{}').length >= 4",
            id("group-row")
        ),
    )
    .await;
    for view in [
        "/groups",
        "/firehose",
        "/sessions",
        "/status",
        "/permissions",
    ] {
        tab.page
            .goto(format!("{}{view}", daemon.url))
            .await
            .unwrap();
        tab.wait(
            &format!("{view} to render"),
            "document.querySelector('main, .view')",
        )
        .await;
        let wide: f64 = tab.eval("document.documentElement.scrollWidth").await;
        assert!(
            wide <= 376.0,
            "{view} scrolls sideways on a phone: {wide} px wide"
        );
    }
    // The keyboard reaches the views: Tab moves focus onto the nav links.
    tab.page
        .goto(format!("{}/status", daemon.url))
        .await
        .unwrap();
    tab.wait(
        "the status",
        &format!(
            "document.querySelector('{} [data-field=\"backend\"]')",
            id("status")
        ),
    )
    .await;
    let mut reached = false;
    for _ in 0..12 {
        tab.page
            .find_element("body")
            .await
            .unwrap()
            .press_key("Tab")
            .await
            .unwrap();
        let focused: String = tab
            .eval("document.activeElement?.getAttribute('data-testid') ?? ''")
            .await;
        if focused == "nav-groups" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the groups link");
    tab.page
        .find_element(&id("nav-groups"))
        .await
        .unwrap()
        .press_key("Enter")
        .await
        .unwrap();
    tab.wait(
        "Enter on the link to open the groups",
        "location.pathname === '/groups'",
    )
    .await;
    tab.assert_no_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_is_allowed_and_another_denied_from_the_ui_and_the_hooks_get_them() {
    use crate::permissions::{Hook, approval_config, bash_request, edit_request, pending};
    let (daemon, _config) = daemon_with(&approval_config(60, &[]));
    let client = daemon.client();
    notifications_running(&client).await;
    let browser = Browser::launch().await;
    let tab = browser
        .open(&format!("{}/permissions", daemon.url), "permissions")
        .await;
    online(&tab).await;
    tab.wait(
        "the empty list",
        &format!("document.querySelector('{}')", id("permissions-empty")),
    )
    .await;

    // A request shows while the page is open, with its command and a count in the nav.
    let bash = Hook::start(
        &daemon.url,
        &daemon.data_dir,
        &bash_request("s1", "cargo test --workspace"),
    )
    .await;
    let bash_at = pending(&client, "s1").await;
    let row = format!("{}[data-offset=\"{bash_at}\"]", id("permission-row"));
    tab.wait(
        "the request's row",
        &format!("document.querySelector('{row}')?.dataset.state === 'pending'"),
    )
    .await;
    assert_eq!(
        tab.text(&format!("{row} {}", id("permission-command")))
            .await,
        "$ cargo test --workspace"
    );
    assert_eq!(tab.text(&id("permissions-count")).await, "1");
    tab.click(&format!("{row} [data-action=\"allow\"]")).await;
    let ended = bash.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(
        ended.output(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}),
        "{ended:?}"
    );
    tab.wait("the row to say Claude Code got it", &format!(
        "document.querySelector('{row}')?.dataset.state === 'closed' && document.querySelector('{row} {}').textContent.includes('Claude Code got the decision')",
        id("permission-status")
    ))
    .await;
    tab.wait(
        "the count to go",
        &format!("!document.querySelector('{}')", id("permissions-count")),
    )
    .await;

    // The next one is reached from its notification, shows its diff, and is denied with a message.
    let edit = Hook::start(&daemon.url, &daemon.data_dir, &edit_request("s2")).await;
    let edit_at = pending(&client, "s2").await;
    tab.go("/notifications").await;
    let link = format!("/permissions/{edit_at}");
    tab.wait(
        "the notification linking to the request",
        &format!(
            "document.querySelector('{}[data-kind=\"permission_request\"] a[href=\"{link}\"]')",
            id("notification")
        ),
    )
    .await;
    tab.go(&link).await;
    let row = format!("{}[data-offset=\"{edit_at}\"]", id("permission-row"));
    tab.wait(
        "the request's page",
        &format!("document.querySelector('{row}')?.dataset.state === 'pending'"),
    )
    .await;
    let diff = tab.text(&format!("{row} {}", id("permission-diff"))).await;
    assert!(diff.contains("- a") && diff.contains("+ b"), "{diff}");
    tab.type_into(
        &format!("{row} {}", id("deny-message")),
        "not on main; open a branch first",
    )
    .await;
    tab.click(&format!("{row} [data-action=\"deny\"]")).await;
    let ended = edit.ended().await;
    assert!(ended.success, "{ended:?}");
    assert_eq!(
        ended.output(),
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": "not on main; open a branch first"}}}),
        "{ended:?}"
    );
    tab.wait(
        "the denial on the page",
        &format!(
            "document.querySelector('{row} {}')?.textContent.includes('not on main')",
            id("permission-status")
        ),
    )
    .await;

    // The log says it was this page that decided.
    let (_, page) = client.get("/api/events?from=0&limit=1000").await;
    let responses: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| &frame["event"])
        .filter(|event| event["type"] == "permission_response")
        .collect();
    assert_eq!(responses.len(), 2, "{responses:?}");
    for response in responses {
        assert_eq!(
            response["decided_by"]["origin"],
            daemon.url.as_str(),
            "{response}"
        );
    }

    // A request's link opened as a webhook's tap opens it: a fresh load of
    // its page, which shows how it ended.
    tab.page
        .goto(format!("{}/permissions/{bash_at}", daemon.url))
        .await
        .unwrap();
    let row = format!("{}[data-offset=\"{bash_at}\"]", id("permission-row"));
    tab.wait("the first request's page, loaded by its link", &format!(
        "document.querySelector('{row}')?.dataset.state === 'closed' && document.querySelector('{row} {}').textContent.includes('Claude Code got the decision')",
        id("permission-status")
    ))
    .await;
    tab.assert_no_errors().await;
}
