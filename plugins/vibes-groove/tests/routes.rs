//! The routes in-process: their JSON shapes, paging, and error bodies.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{corpus, feed, open};

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn assessed() -> (tempfile::TempDir, axum::Router, u64) {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let (store, mut handler) = open(dir.path());
    feed(&mut handler, &corpus, 100).await;
    let last = corpus.last().unwrap().0;
    (dir, vibes_groove::routes(store), last)
}

#[tokio::test]
async fn sessions_lists_every_session_with_its_scores_and_breaker() {
    let (_dir, router, last) = assessed().await;
    let (status, body) = get(&router, "/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied_offset"], last);
    let sessions = body["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["calm", "flaky", "sess ión/3", "short", "troubled"]);
    for session in sessions {
        for key in ["frustration", "success", "failure_score"] {
            let x = session[key].as_f64().unwrap();
            assert!(x >= 0.0, "{key} {x}");
        }
        assert!(["closed", "open", "half_open"].contains(&session["breaker"].as_str().unwrap()));
        for key in [
            "interventions",
            "checkpoints",
            "last_offset",
            "first_offset",
            "events",
            "signals",
        ] {
            assert!(session[key].is_u64(), "{key} in {session}");
        }
        assert!(
            session["last_time"]
                .as_str()
                .unwrap()
                .starts_with("2001-09-09T")
        );
    }
    let troubled = sessions.iter().find(|s| s["id"] == "troubled").unwrap();
    assert_eq!(troubled["interventions"], 1);
}

#[tokio::test]
async fn a_timeline_pages_in_offset_order_without_splitting_an_event() {
    let (_dir, router, _) = assessed().await;
    let (status, whole) = get(&router, "/sessions/troubled?limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whole["session"]["id"], "troubled");
    assert!(whole["next_after"].is_null());
    let all = whole["records"].as_array().unwrap().clone();
    assert!(all.len() > 20);
    let offsets: Vec<u64> = all.iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    for kind in ["signal", "transition", "checkpoint", "intervention"] {
        assert!(all.iter().any(|r| r["type"] == kind), "no {kind}");
    }

    // Pages of 3 give back every record once, in the same order.
    let mut paged = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let uri = match after {
            Some(after) => format!("/sessions/troubled?limit=3&after={after}"),
            None => "/sessions/troubled?limit=3".to_owned(),
        };
        let (status, page) = get(&router, &uri).await;
        assert_eq!(status, StatusCode::OK);
        let records = page["records"].as_array().unwrap();
        assert!(!records.is_empty() || page["next_after"].is_null());
        paged.extend(records.iter().cloned());
        match page["next_after"].as_u64() {
            Some(next) => {
                assert_eq!(records.last().unwrap()["offset"], next);
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(paged, all);

    // A limit of 1 still moves on: an event's records come whole.
    let (_, page) = get(&router, "/sessions/troubled?limit=1").await;
    let first = page["records"].as_array().unwrap();
    assert!(!first.is_empty());
    assert!(first.iter().all(|r| r["offset"] == first[0]["offset"]));
}

#[tokio::test]
async fn a_session_id_is_percent_decoded() {
    let (_dir, router, _) = assessed().await;
    let uri = format!("/sessions/{}", "sess%20i%C3%B3n%2F3");
    let (status, body) = get(&router, &uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["id"], "sess ión/3");
}

#[tokio::test]
async fn errors_are_json_with_a_code_and_a_detail() {
    let (_dir, router, _) = assessed().await;
    let (status, body) = get(&router, "/sessions/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown_session");
    assert!(body["detail"].as_str().unwrap().contains("nobody"));
    for bad in [
        "/sessions/calm?limit=0",
        "/sessions/calm?limit=1001",
        "/sessions/calm?limit=many",
        "/sessions/calm?after=-1",
        "/sessions/calm?before=3",
    ] {
        let (status, body) = get(&router, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "invalid_query", "{bad}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_unknown_route_or_method_is_a_json_error_too() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _handler) = open(dir.path());
    let router = vibes_groove::routes(store);
    let (status, body) = get(&router, "/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let response = router
        .clone()
        .oneshot(Request::post("/sessions").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn totals_count_signals_breakers_and_checkpoints() {
    let (_dir, router, last) = assessed().await;
    let (status, totals) = get(&router, "/totals").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(totals["applied_offset"], last);
    assert_eq!(totals["sessions"], 5);
    let breakers: u64 = totals["breakers"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(breakers, 5);
    assert_eq!(totals["interventions"], 2);
    for kind in vibes_groove::SignalKind::ALL {
        assert!(
            totals["signals"][kind.as_str()].as_u64().unwrap() > 0,
            "{}",
            kind.as_str()
        );
    }
    for trigger in vibes_groove::CheckpointTrigger::ALL {
        assert!(totals["checkpoints"][trigger.as_str()].is_u64());
    }
}

#[tokio::test]
async fn an_empty_store_answers_empty_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _handler) = open(dir.path());
    let router = vibes_groove::routes(store);
    let (_, sessions) = get(&router, "/sessions").await;
    assert_eq!(sessions["sessions"], serde_json::json!([]));
    assert!(sessions["applied_offset"].is_null());
    let (_, totals) = get(&router, "/totals").await;
    assert_eq!(totals["sessions"], 0);
}
