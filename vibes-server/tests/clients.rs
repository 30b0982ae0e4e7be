//! Slow, half-open and never-reading clients against the real binary: none
//! of them may starve other clients or hold up a shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{DEADLINE, Daemon, user_input, wait_for};

/// Writes `text` as vibesd's config file in `dir`; returns the flag for it.
fn config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("vibesd.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `host:port` of a daemon.
fn address(daemon: &Daemon) -> String {
    daemon.url.trim_start_matches("http://").to_owned()
}

/// A socket that sent only the first line of a request.
fn half_open(address: &str) -> TcpStream {
    let mut socket = TcpStream::connect(address).unwrap();
    socket.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    socket
}

/// Reads until vibesd closes the socket (end of file or a reset), within
/// the deadline; returns what it sent.
fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(err) => panic!("the socket was not closed: {err}"),
        }
    }
}

/// A `GET /healthz` that answers 200 within a second.
async fn healthy(url: &str) -> bool {
    let answer = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    answer.is_ok_and(|response| response.status() == 200)
}

// Hundreds of sockets that sent half a request were held forever: vibesd
// ran out of file descriptors and every route, /healthz too, timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_starve_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        &dir,
        // The cap is reached long before the first half-open socket times
        // out, however slowly a loaded machine accepts them.
        "[limits]\nmax_connections = 128\nheader_timeout_secs = 5\n",
    );
    let daemon = Daemon::start_with_nofile(&["--config", &config], 512);
    let address = address(&daemon);
    let mut sockets: Vec<TcpStream> = (0..600).map(|_| half_open(&address)).collect();

    wait_for("/healthz to answer", || healthy(&daemon.url)).await;
    let client = daemon.client();
    let (status, body) = client
        .post("/api/events", &user_input("s", "through"))
        .await;
    assert_eq!(status, 200, "{body}");

    // Every half-open socket is closed by vibesd: past the cap at once
    // (503, when the answer got through), the others after the header
    // timeout.
    let answers: Vec<Vec<u8>> = sockets.iter_mut().map(read_until_closed).collect();
    let refused = answers
        .iter()
        .filter(|answer| String::from_utf8_lossy(answer).starts_with("HTTP/1.1 503"))
        .count();
    assert!(refused > 0, "no socket was told 503 too_many_connections");
    assert!(
        !daemon.logs().contains("Too many open files"),
        "{}",
        daemon.logs()
    );
    assert_eq!(client.high_water_mark().await, 1);
}

// Not a regression: the header timeout covers the wait between requests on
// a keep-alive connection too.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, "[limits]\nheader_timeout_secs = 1\n");
    let daemon = Daemon::start(&["--config", &config]);
    let address = address(&daemon);
    let mut socket = TcpStream::connect(&address).unwrap();
    write!(socket, "GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let answer = String::from_utf8(read_until_closed(&mut socket)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
}

// With a few half-open sockets open, SIGTERM neither drained nor exited:
// shutdown waited for connections that would never finish a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_its_deadline_with_half_open_clients() {
    let dir = tempfile::tempdir().unwrap();
    // A header timeout longer than the test: only shutdown closes them.
    let config = config(&dir, "[limits]\nheader_timeout_secs = 3600\n");
    let mut daemon = Daemon::start(&["--config", &config]);
    let client = daemon.client();
    let (status, body) = client.post("/api/events", &user_input("s", "kept")).await;
    assert_eq!(status, 200, "{body}");
    let address = address(&daemon);
    let _sockets: Vec<TcpStream> = (0..8).map(|_| half_open(&address)).collect();
    // And one that sends half a body.
    let mut slow = TcpStream::connect(&address).unwrap();
    write!(
        slow,
        "POST /api/events HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"type\":"
    )
    .unwrap();

    let started = Instant::now();
    let status = daemon.sigterm();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", daemon.logs());
    // 5 s of grace for connections, and a margin for a busy machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    daemon.restart();
    assert_eq!(daemon.client().high_water_mark().await, 1);
}

// A firehose client that never read held shutdown up for seconds: its
// pump was stuck sending and never heard that vibesd was stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_delayed_by_a_firehose_client_that_never_reads() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    // Far more than the socket buffers hold.
    let content = "x".repeat(500_000);
    for _ in 0..40 {
        let (status, body) = client.post("/api/events", &user_input("s", &content)).await;
        assert_eq!(status, 200, "{body}");
    }
    let address = address(&daemon);
    let mut socket = TcpStream::connect(&address).unwrap();
    write!(
        socket,
        "GET /ws/firehose?from=beginning HTTP/1.1\r\nHost: {address}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    // Frames pile up unread on our side: the pump is sending into full
    // buffers.
    let mut peeked = vec![0u8; 1 << 20];
    let deadline = Instant::now() + DEADLINE;
    while socket.peek(&mut peeked).unwrap() < 64 * 1024 {
        assert!(Instant::now() < deadline, "no frames arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    let end = client.high_water_mark().await;
    wait_for("every group to reach the end of the log", || async {
        let (_, groups) = client.get("/api/groups").await;
        groups.as_array().is_some_and(|groups| {
            groups
                .iter()
                .filter(|group| group["name"] != "session-collector")
                .all(|group| group["committed_offset"].as_u64() == Some(end - 1))
        })
    })
    .await;

    let started = Instant::now();
    let status = daemon.sigterm();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", daemon.logs());
    // It used to take the whole 5 s wait for WebSocket clients, and more.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(socket);
}

// A request body that stalled held its connection (and the handler) for
// as long as the client liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out_with_408_or_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir, "[limits]\nbody_timeout_secs = 1\n");
    let daemon = Daemon::start(&["--config", &config]);
    let address = address(&daemon);
    let mut socket = TcpStream::connect(&address).unwrap();
    write!(
        socket,
        "POST /api/events HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"type\":"
    )
    .unwrap();
    // Answered, and closed: the rest of the body would be read as a
    // request.
    let answer = String::from_utf8(read_until_closed(&mut socket)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(answer.contains("limits.body_timeout_secs"), "{answer}");
    // Nothing was appended, and vibesd serves others as before.
    let client = daemon.client();
    assert_eq!(client.high_water_mark().await, 0);
    let (status, body) = client
        .post("/api/events", &json!(user_input("s", "x")))
        .await;
    assert_eq!(status, 200, "{body}");
}
