//! vibesd's resident memory idle and under sustained mixed load: figures,
//! not pass/fail.
//!
//! Starts the real vibesd (release build, embedded store, every group
//! live), reads its `VmRSS` from `/proc` once it is ready and has idled for
//! a few seconds, then for `VIBES_MEMORY_BENCH_SECS` (default 600) offers
//! `VIBES_MEMORY_BENCH_RATE` events/s (default 2,000) of the synthetic
//! session stream (prompts, streamed text, tool calls, hooks) in batches of
//! 20 from 4 connections, while a firehose client reads every event. RSS is
//! sampled every second; the peak (`VmHWM`) is read at the end.
//!
//! Run: `cargo bench -p vibes-server --bench memory`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

mod daemon;
#[path = "../../plugins/vibes-groove/benches/stream/mod.rs"]
#[allow(dead_code)]
mod stream;

const BATCH: usize = 20;
const CONNECTIONS: usize = 4;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/<pid>/status` field in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("vibesd runs");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the field");
    kib / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = env_u64("VIBES_MEMORY_BENCH_SECS", 600);
    let rate = env_u64("VIBES_MEMORY_BENCH_RATE", 2000);
    let vibesd = daemon::Vibesd::start();
    let (pid, url) = (vibesd.pid(), vibesd.url.clone());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(Instant::now() < deadline, "vibesd never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idle: ready, every group polling an empty log.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = status_mib(pid, "VmRSS:");

    let firehose_read = Arc::new(AtomicU64::new(0));
    let firehose = {
        let read = firehose_read.clone();
        let ws = format!("{}/ws/firehose?from=end", url.replace("http://", "ws://"));
        tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(ws.as_str())
                .await
                .expect("the firehose");
            while let Some(Ok(_)) = socket.next().await {
                read.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The stream, as the JSON clients send, cut into batches.
    let total = (rate * secs) as usize + BATCH;
    let events: Vec<Value> = stream::stream(total.min(2_000_000))
        .into_iter()
        .map(|stored| serde_json::to_value(&stored.event).expect("json"))
        .collect();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        events
            .chunks(BATCH)
            .map(|chunk| serde_json::to_vec(chunk).expect("json"))
            .collect(),
    );
    drop(events);
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut producers = Vec::new();
    for c in 0..CONNECTIONS {
        let (bodies, sent, url) = (bodies.clone(), sent.clone(), url.clone());
        producers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let every = Duration::from_secs_f64((BATCH * CONNECTIONS) as f64 / rate as f64);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = c;
            while Instant::now() < until {
                tick.tick().await;
                let body = bodies[n % bodies.len()].clone();
                n += CONNECTIONS;
                let answer = http
                    .post(format!("{url}/api/events"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("vibesd answers");
                assert!(answer.status().is_success(), "{}", answer.status());
                sent.fetch_add(BATCH as u64, Ordering::Relaxed);
            }
        }));
    }
    let mut samples = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(status_mib(pid, "VmRSS:"));
    }
    for producer in producers {
        producer.await.expect("a producer");
    }
    let end = status_mib(pid, "VmRSS:");
    let peak = status_mib(pid, "VmHWM:");
    firehose.abort();
    drop(vibesd);

    samples.sort_by(f64::total_cmp);
    let p50 = samples.get(samples.len() / 2).copied().unwrap_or(end);
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!("| measurement | MiB |");
    println!("|---|---|");
    println!("| idle RSS (ready, 5 s after start) | {idle:.1} |");
    println!("| RSS under load, p50 of 1 s samples | {p50:.1} |");
    println!("| RSS at the end of the load | {end:.1} |");
    println!("| peak RSS (VmHWM) | {peak:.1} |");
    println!();
    println!(
        "load: {} events in {elapsed:.0} s ({:.0} ev/s offered {rate}), the firehose client read {}",
        sent.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed) as f64 / elapsed,
        firehose_read.load(Ordering::Relaxed)
    );
}
