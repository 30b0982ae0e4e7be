//! The HTTP server under the API: accepts connections up to a cap, reads
//! request heads under a deadline, and shuts down within a bound whatever
//! clients do.
//!
//! `axum::serve` has neither a header timeout nor a cap, and waits for
//! every connection at shutdown, so a few clients that never finish a
//! request hold vibesd up (and a few hundred exhaust its file descriptors).
//! Here each connection holds a permit of a semaphore of
//! `limits.max_connections` for as long as its socket is open, upgraded
//! WebSockets included; a connection beyond the cap is answered 503 and
//! closed at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// How the server treats its clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeLimits {
    /// The most connections open at once, WebSockets included.
    pub(crate) max_connections: usize,
    /// How long a client may take to send a request head, counted from the
    /// moment vibesd waits for it (an idle keep-alive connection too).
    pub(crate) header_timeout: Duration,
    /// How long open connections get to finish once shutdown begins.
    pub(crate) grace: Duration,
}

/// The answer to a connection beyond the cap; written if the socket takes
/// it at once, never waited for.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 131\r\n\
\r\n\
{\"error\":\"too_many_connections\",\"detail\":\"vibesd has as many connections open as limits.max_connections allows; try again shortly\"}";

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets requests in flight finish until `limits.grace` has
/// passed, and closes whatever is still open. `stopping` is told when
/// shutdown begins. Returns the end of the grace period, which upgraded
/// connections (not tracked here) are held to as well.
/// Connections past the cap answered 503 at the same time, at most.
const REFUSING_AT_ONCE: usize = 64;

/// How long a refused connection is given to take its 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers a connection past the cap with [`REFUSED`] and closes it. What
/// the client sent is read (and dropped) until it closes or the time is
/// up, so that the close is a FIN, not a reset that may discard the answer
/// before the client reads it.
async fn refuse(mut stream: tokio::net::TcpStream, _refusal: tokio::sync::OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(REFUSED).await?;
        stream.shutdown().await?;
        let mut sink = [0; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
    stopping: &watch::Sender<bool>,
) -> Instant {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // Every connection task, so that shutdown can wait for them and, past
    // the grace period, end them; finished ones are reaped as we go.
    let mut connections = JoinSet::new();
    let mut refusing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        if !is_connection_error(&err) {
                            // Out of file descriptors, most likely: the cap
                            // is above the process's limit. Give what is
                            // open a moment to close.
                            tracing::error!("cannot accept a connection: {err}");
                            tokio::select! {
                                () = &mut shutdown => break,
                                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                            }
                        }
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if !refusing {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "refusing connections: as many are open as limits.max_connections allows"
                        );
                        refusing = true;
                    }
                    // Answered by a short task of a bounded number: past
                    // that, a flood of connections is closed unanswered.
                    if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                        connections.spawn(refuse(stream, refusal));
                    }
                    continue;
                };
                refusing = false;
                let io = TokioIo::new(Counted { stream, _permit: permit });
                // Handlers that record who did something (a permission
                // decision) read the client's address from the request.
                let service = TowerToHyperService::new(app.clone().map_request(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request
                    },
                ));
                let connection = builder.serve_connection(io, service).with_upgrades();
                let mut stop = stopping.subscribe();
                connections.spawn(async move {
                    tokio::pin!(connection);
                    tokio::select! {
                        served = connection.as_mut() => {
                            if let Err(err) = served {
                                tracing::debug!("connection ended: {err}");
                            }
                            return;
                        }
                        _ = stop.wait_for(|stopping| *stopping) => {}
                    }
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    if let Err(err) = connection.await {
                        tracing::debug!("connection ended: {err}");
                    }
                });
            }
        }
    }
    drop(listener);
    let deadline = Instant::now() + limits.grace;
    let _ = stopping.send(true);
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after {:?}; closing them",
            limits.grace
        );
        connections.shutdown().await;
    }
    deadline
}

/// Errors of one connection that came and went before it was accepted.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A client's socket and its place under the connection cap, given back
/// when the socket closes (after a WebSocket upgrade too: hyper hands this
/// same value to the WebSocket).
#[derive(Debug)]
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_refusal_is_a_well_formed_response() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "too_many_connections");
    }
}
