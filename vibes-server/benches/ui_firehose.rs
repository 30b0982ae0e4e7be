//! The web UI's firehose view under load: a real vibesd (embedded store),
//! a real headless Chromium on `/firehose`, and a producer appending a few
//! thousand events per second over HTTP. Prints how far the newest row the
//! page shows trails the log's high-water mark, and the tab's frame times.
//!
//! `cargo bench -p vibes-server --bench ui_firehose` (`just bench` runs it
//! with the others). `UI_BENCH_RATE` (events/s, default 4000) and
//! `UI_BENCH_SECS` (default 15) change the load.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../tests/browser.rs"]
mod browser;
mod daemon;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// Events per POST: the producer sends a batch every `BATCH / rate` s.
const BATCH: u64 = 40;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_u64("UI_BENCH_RATE", 4000);
    let secs = env_u64("UI_BENCH_SECS", 15);
    let vibesd = daemon::Vibesd::start();
    let url = vibesd.url.clone();

    let browser = browser::Browser::launch().await;
    let tab = browser
        .open(&format!("{url}/firehose"), "bench-firehose")
        .await;
    tab.wait("the firehose", "window.__vibes?.firehose").await;
    let _: bool = tab
        .eval(
            "(() => { window.__frames = []; let last = performance.now(); \
             const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); }; \
             requestAnimationFrame(tick); return true; })()",
        )
        .await;

    let http = reqwest::Client::new();
    let acked = Arc::new(AtomicU64::new(0));
    let producing = {
        let acked = acked.clone();
        let http = http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let batch: Vec<_> = (0..BATCH)
                .map(|n| json!({"type": "user_input", "session_id": "bench", "content": format!("event {n} of a batch"), "source": "bench"}))
                .collect();
            let body = serde_json::to_vec(&batch).unwrap();
            let every = Duration::from_secs_f64(BATCH as f64 / rate as f64);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                tick.tick().await;
                let answer: serde_json::Value = http
                    .post(format!("{url}/api/events"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(last) = answer["offsets"]
                    .as_array()
                    .and_then(|o| o.last())
                    .and_then(|o| o.as_u64())
                {
                    acked.fetch_max(last, Ordering::SeqCst);
                }
            }
        })
    };

    // Sample how far the newest row shown trails what the log acknowledged.
    let started = Instant::now();
    let mut trailing = Vec::new();
    let mut received_trailing = Vec::new();
    let mut group_trailing = Vec::new();
    let mut rows_max = 0u64;
    while !producing.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let newest: Option<u64> = tab
            .eval("(() => { const r = document.querySelector('[data-testid=\"event-row\"]'); return r ? Number(r.dataset.offset) : null; })()")
            .await;
        let rows: u64 = tab
            .eval("document.querySelectorAll('[data-testid=\"event-row\"]').length")
            .await;
        let received: Option<u64> = tab.eval("window.__vibes.firehose.lastOffset").await;
        let groups: serde_json::Value = http
            .get(format!("{url}/api/groups"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let broadcast = groups
            .as_array()
            .and_then(|groups| groups.iter().find(|group| group["name"] == "websocket"))
            .and_then(|group| group["position"].as_u64());
        rows_max = rows_max.max(rows);
        let hwm = acked.load(Ordering::SeqCst);
        if let Some(newest) = newest
            && started.elapsed() > Duration::from_secs(1)
        {
            trailing.push(hwm.saturating_sub(newest) as f64);
            if let Some(received) = received {
                received_trailing.push(hwm.saturating_sub(received) as f64);
            }
            if let Some(position) = broadcast {
                group_trailing.push((hwm + 1).saturating_sub(position) as f64);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = acked.load(Ordering::SeqCst) + 1;
    // The page catches up after the producer stops.
    let caught = Instant::now();
    tab.wait(
        "the last event",
        &format!("window.__vibes.firehose.lastOffset >= {}", total - 1),
    )
    .await;
    let catch_up = caught.elapsed();
    let mut frames: Vec<f64> = tab.eval("window.__frames.slice(10)").await;
    frames.sort_by(f64::total_cmp);
    trailing.sort_by(f64::total_cmp);
    received_trailing.sort_by(f64::total_cmp);
    group_trailing.sort_by(f64::total_cmp);
    let long = frames.iter().filter(|f| **f > 50.0).count();

    println!(
        "ui firehose: {rate} ev/s offered for {secs} s in batches of {BATCH}; {:.0} ev/s appended",
        total as f64 / elapsed
    );
    println!(
        "  newest row behind the high-water mark (events): p50 {:.0}  p99 {:.0}  max {:.0}  ({} samples)",
        percentile(&trailing, 50.0),
        percentile(&trailing, 99.0),
        percentile(&trailing, 100.0),
        trailing.len()
    );
    println!(
        "  of which not yet received by the page: p50 {:.0}  p99 {:.0}; not yet broadcast by the websocket group: p50 {:.0}  p99 {:.0}",
        percentile(&received_trailing, 50.0),
        percentile(&received_trailing, 99.0),
        percentile(&group_trailing, 50.0),
        percentile(&group_trailing, 99.0),
    );
    println!(
        "  frame times (ms): p50 {:.1}  p99 {:.1}  max {:.1}  frames over 50 ms: {long} of {}",
        percentile(&frames, 50.0),
        percentile(&frames, 99.0),
        percentile(&frames, 100.0),
        frames.len()
    );
    println!(
        "  rows in the DOM at most: {rows_max}; last event shown {catch_up:?} after the producer stopped"
    );
    drop(vibesd);
}
