//! The HTTP append path next to the LogWriter it feeds: figures, not
//! pass/fail.
//!
//! Starts the real vibesd (embedded store, a temporary data directory) and
//! drives `POST /api/events` from N keep-alive connections of a lean client
//! (see [`over_http`]), each sending
//! one request after another (single events, or batches of 100) for
//! `VIBES_HTTP_BENCH_SECS` seconds (default 5): first with every consumer
//! group paused (the append path alone), then with the groups live. In the
//! same run, N producers append the same events to an in-process LogWriter
//! on a fresh embedded log, with no HTTP in between. Each row prints
//! events/s, the p50 and p99 of a request (an append), the events per group
//! commit on each side (vibesd's from its `/metrics`), and the ratio. First
//! of all, the floor: the same client against a bare hyper + axum server
//! (this bench binary again, in a process of its own) that answers at once.
//!
//! Run: `cargo bench -p vibes-server --bench http`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use vibes_actors::writer::{LogWriter, LogWriterConfig};
use vibes_core::{StoredEvent, VibesEvent};
use vibes_iggy::LogOptions;
use vibes_iggy::embedded::EmbeddedLog;

mod daemon;
#[path = "../../plugins/vibes-groove/benches/stream/mod.rs"]
#[allow(dead_code)]
mod stream;
use stream::thousands;

/// A run's count of events and the latency of each request.
struct Run {
    events: usize,
    latencies: Vec<Duration>,
    secs: f64,
    /// Events per group commit, where a LogWriter took them.
    per_commit: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.secs
    }

    fn percentile(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank].as_secs_f64() * 1e3
    }
}

/// One `user_input` of about 200 bytes, as a client sends it.
fn event(n: usize) -> Value {
    json!({"type": "user_input", "session_id": format!("session-{:03}", n % 200),
           "content": format!("{n} the quick brown fox jumps over the lazy dog, again and again"),
           "source": "bench"})
}

/// `connections` clients, each with one keep-alive connection, posting
/// `batch` events a request until `secs` are up.
///
/// The client is lean on purpose, as wrk is: each request is the same bytes,
/// built once, written to a raw TCP connection, and the answer is parsed no
/// further than its status and length. Client and vibesd share this
/// machine's cores, so every cycle a heavier client spends is one vibesd
/// does not get.
async fn over_http(address: &str, connections: usize, batch: usize, secs: f64) -> Run {
    let mut clients = JoinSet::new();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    for c in 0..connections {
        let address = address.to_owned();
        clients.spawn(async move {
            let body = if batch == 1 {
                serde_json::to_vec(&event(c)).expect("json")
            } else {
                let events: Vec<Value> = (0..batch).map(|n| event(c * batch + n)).collect();
                serde_json::to_vec(&events).expect("json")
            };
            let mut request = format!(
                "POST /api/events HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(&body);
            let mut connection = Connection::open(&address).await;
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                let status = connection.exchange(&request).await;
                assert!((200..300).contains(&status), "vibesd answered {status}");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    collect(clients, batch, started).await
}

/// One keep-alive HTTP/1.1 connection that sends a request and reads its
/// answer, one at a time.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> Self {
        let stream = TcpStream::connect(address)
            .await
            .expect("connect to vibesd");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends `request` and returns the status of its answer, once the whole
    /// answer is read.
    async fn exchange(&mut self, request: &[u8]) -> u16 {
        self.stream.write_all(request).await.expect("send");
        self.buffer.clear();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut answer = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                answer.parse(&self.buffer).expect("an HTTP answer")
            {
                let length: usize = answer
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                    .map(|header| {
                        std::str::from_utf8(header.value)
                            .expect("a length")
                            .parse()
                            .expect("a length")
                    })
                    .expect("answers carry content-length");
                let status = answer.code.expect("a status");
                while self.buffer.len() < head + length {
                    self.read().await;
                }
                return status;
            }
            self.read().await;
        }
    }

    async fn read(&mut self) {
        let read = self.stream.read_buf(&mut self.buffer).await.expect("read");
        assert!(read > 0, "vibesd closed the connection");
    }
}

/// `producers` tasks appending to an in-process LogWriter the same way.
async fn through_writer(producers: usize, batch: usize, secs: f64) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let log =
        std::sync::Arc::new(EmbeddedLog::open(dir.path(), LogOptions::default()).expect("log"));
    let (_actor, writer, join) = LogWriter::start(log, LogWriterConfig::default(), None)
        .await
        .expect("the writer starts");
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    for p in 0..producers {
        let writer = writer.clone();
        tasks.spawn(async move {
            let stored = |n: usize| -> StoredEvent {
                let event: VibesEvent = serde_json::from_value(event(n)).expect("an event");
                StoredEvent::new(event)
            };
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let events: Vec<StoredEvent> = (0..batch).map(|n| stored(p * batch + n)).collect();
                let sent = Instant::now();
                writer.append_batch(events).await.expect("an append");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut run = collect(tasks, batch, started).await;
    let written = writer.snapshot();
    run.per_commit = written.events_written as f64 / written.group_commits as f64;
    writer.drain().await;
    let _ = join.await;
    run
}

async fn collect(mut tasks: JoinSet<Vec<Duration>>, batch: usize, started: Instant) -> Run {
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("a producer"));
    }
    Run {
        events: latencies.len() * batch,
        secs: started.elapsed().as_secs_f64(),
        latencies,
        per_commit: f64::NAN,
    }
}

/// Pauses (or resumes) every consumer group.
async fn every_group(url: &str, action: &str) {
    let http = reqwest::Client::new();
    let groups: Value = http
        .get(format!("{url}/api/groups"))
        .send()
        .await
        .expect("groups")
        .json()
        .await
        .expect("json");
    for group in groups.as_array().expect("a list") {
        let name = group["name"].as_str().expect("a name");
        let answer = http
            .post(format!("{url}/api/groups/{name}/{action}"))
            .send()
            .await
            .expect("an answer");
        assert!(
            answer.status().is_success(),
            "{action} {name}: {}",
            answer.status()
        );
    }
}

/// Set in the environment of the bare server's process.
const BARE_SERVER: &str = "VIBES_HTTP_BENCH_BARE_SERVER";

/// The floor of this machine's HTTP: the server stack vibesd is built on
/// (hyper's HTTP/1.1 connections, an axum route taking the body as bytes),
/// answering each request at once, in a process of its own as vibesd is.
/// Prints its address, then serves until killed.
async fn bare_server() {
    use axum::routing::post;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let app = axum::Router::new().route(
        "/api/events",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(&body);
            ([("content-type", "application/json")], r#"{"offsets":[0]}"#)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("{}", listener.local_addr().expect("an address"));
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Starts [`bare_server`] as a child process; killed when dropped.
struct Bare {
    child: std::process::Child,
    address: String,
}

impl Bare {
    fn start() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().expect("this bench"))
            .env(BARE_SERVER, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the bare server starts");
        let mut address = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("its address");
        Self {
            child,
            address: address.trim().to_owned(),
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if std::env::var_os(BARE_SERVER).is_some() {
        runtime.block_on(bare_server());
    } else {
        runtime.block_on(bench());
    }
}

/// The writer's commits and events so far, from vibesd's `/metrics`.
async fn written(url: &str) -> (f64, f64) {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let counter = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} in /metrics"))
            .parse()
            .expect("a number")
    };
    (
        counter("vibesd_writer_commits_total"),
        counter("vibesd_writer_events_written_total"),
    )
}

/// [`over_http`] against vibesd, with the events per group commit its
/// writer wrote meanwhile.
async fn through_vibesd(url: &str, connections: usize, batch: usize, secs: f64) -> Run {
    let address = url.trim_start_matches("http://");
    let (commits, events) = written(url).await;
    let mut run = over_http(address, connections, batch, secs).await;
    let (commits_after, events_after) = written(url).await;
    run.per_commit = (events_after - events) / (commits_after - commits);
    run
}

async fn bench() {
    let secs: f64 = std::env::var("VIBES_HTTP_BENCH_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5.0);

    // The floor: this machine's HTTP with nothing behind it.
    let bare = Bare::start();
    let mut floor = over_http(&bare.address, 64, 1, secs).await;
    drop(bare);

    let vibesd = daemon::Vibesd::start();
    let url = vibesd.url.clone();
    let mut rows = Vec::new();
    every_group(&url, "pause").await;
    for (groups, connections, batch) in [
        ("paused", 16, 1),
        ("paused", 64, 1),
        ("paused", 64, 100),
        ("live", 64, 1),
    ] {
        if groups == "live" {
            every_group(&url, "resume").await;
        }
        let http = through_vibesd(&url, connections, batch, secs).await;
        let writer = through_writer(connections, batch, secs).await;
        rows.push((groups, connections, batch, http, writer));
    }
    drop(vibesd);

    println!();
    println!(
        "| groups | connections | events a request | HTTP ev/s | p50 ms | p99 ms | ev/commit | LogWriter ev/s | p99 ms | ev/commit | ratio |"
    );
    println!(
        "|--------|-------------|------------------|-----------|--------|--------|-----------|----------------|--------|-----------|-------|"
    );
    for (groups, connections, batch, mut http, mut writer) in rows {
        println!(
            "| {groups:<6} | {connections:>11} | {batch:>16} | {:>9} | {:>6.2} | {:>6.2} | {:>9.1} | {:>14} | {:>6.2} | {:>9.1} | {:>4.2}x |",
            thousands(http.rate()),
            http.percentile(50.0),
            http.percentile(99.0),
            http.per_commit,
            thousands(writer.rate()),
            writer.percentile(99.0),
            writer.per_commit,
            http.rate() / writer.rate(),
        );
    }
    println!();
    println!("ratio: HTTP / the in-process LogWriter with as many producers, in the same run");
    println!(
        "floor: the same client, 64 connections, one event a request, against a bare hyper + axum \
         server that answers at once: {} requests/s, p99 {:.2} ms",
        thousands(floor.rate()),
        floor.percentile(99.0)
    );
}
