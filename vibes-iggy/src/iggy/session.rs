//! One authenticated TCP connection to `iggy-server` that heals itself.
//!
//! The SDK's own reconnection is switched off, on purpose: its client keeps
//! state across reconnects that can wedge it (a login that fails leaves it
//! "authenticating" for good, and every connect or disconnect queues a
//! diagnostic event on a bounded channel nobody drains, so after a few
//! hundred reconnects the next one blocks forever). Instead a [`Session`]
//! replaces its whole client when a call fails for want of a connection, and
//! [`call!`](crate::iggy::session::call) retries the call until a deadline.
//!
//! Every replacement bumps [`Session::generation`]: whatever the server keeps
//! per connection (consumer-group membership) must be set up again by whoever
//! relies on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use iggy::prelude::{
    AutoLogin, Client, IggyError, TcpClient, TcpClientConfig, TcpClientConfigBuilder,
};
use iggy_common::Credentials;
use tokio::time::Instant;

use super::Connection;

/// How long one connect-and-login attempt may take before it is abandoned.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(5);
/// The first pause between connect attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// How long an operation keeps retrying while the server is unreachable
/// (a managed server restarts within a second or two).
pub(crate) const RECONNECT_WINDOW: Duration = Duration::from_secs(20);

/// A connection that replaces itself when the server goes away.
pub(crate) struct Session {
    connection: Connection,
    /// The current client. Replaced (never mutated) by [`Session::reconnect`];
    /// calls in flight keep the client they started on.
    client: RwLock<Arc<TcpClient>>,
    /// Held while a replacement client connects, so that concurrent failures
    /// reconnect once.
    reconnecting: tokio::sync::Mutex<()>,
    /// Bumped on every replacement.
    generation: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("address", &self.connection.address)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects and logs in, retrying while the server is unreachable until
    /// `deadline`.
    pub(crate) async fn open(
        connection: &Connection,
        deadline: Instant,
    ) -> Result<Self, IggyError> {
        let client = connect(connection, deadline).await?;
        Ok(Self {
            connection: connection.clone(),
            client: RwLock::new(Arc::new(client)),
            reconnecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    /// The current client and its generation.
    pub(crate) fn client(&self) -> (Arc<TcpClient>, u64) {
        // The lock only guards an `Arc` swap, which cannot be left half done.
        let client = self
            .client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (client, self.generation())
    }

    /// How many times the client was replaced.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the client of generation `failed` with a newly connected
    /// one, unless another task already did.
    pub(crate) async fn reconnect(&self, failed: u64, deadline: Instant) -> Result<(), IggyError> {
        let _reconnecting = self.reconnecting.lock().await;
        if self.generation() != failed {
            return Ok(());
        }
        tracing::warn!(address = %self.connection.address, "lost the connection to iggy-server; reconnecting");
        let client = connect(&self.connection, deadline).await?;
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(client);
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(address = %self.connection.address, "reconnected to iggy-server");
        Ok(())
    }
}

/// Whether `err` means the connection (not the request) failed, so that the
/// request may be tried again on a new connection.
pub(crate) fn is_transient(err: &IggyError) -> bool {
    matches!(
        err,
        IggyError::Disconnected
            | IggyError::NotConnected
            | IggyError::CannotEstablishConnection
            | IggyError::TcpError
            | IggyError::EmptyResponse
            | IggyError::ConnectionClosed
            | IggyError::Unauthenticated
            | IggyError::StaleClient
    )
}

fn client_config(connection: &Connection) -> Result<TcpClientConfig, IggyError> {
    let credentials = Credentials::UsernamePassword(
        connection.username.clone(),
        connection.password.clone().into(),
    );
    let mut config = TcpClientConfigBuilder::new()
        .with_server_address(connection.address.clone())
        .with_auto_sign_in(AutoLogin::Enabled(credentials))
        // Without it every mid-size request waits ~40 ms for delayed ACKs.
        .with_no_delay()
        .build()?;
    config.reconnection.enabled = false;
    Ok(config)
}

/// A new client, connected and logged in; retries while the server is
/// unreachable until `deadline`.
async fn connect(connection: &Connection, deadline: Instant) -> Result<TcpClient, IggyError> {
    let config = Arc::new(client_config(connection)?);
    let mut pause = FIRST_PAUSE;
    loop {
        let client = TcpClient::create(config.clone())?;
        let attempt_ends = deadline.min(Instant::now() + CONNECT_ATTEMPT);
        let err = match tokio::time::timeout_at(attempt_ends, client.connect()).await {
            Ok(Ok(())) => return Ok(client),
            Ok(Err(err)) if !is_transient(&err) => return Err(err),
            Ok(Err(err)) => err,
            Err(_elapsed) => IggyError::CannotEstablishConnection,
        };
        if Instant::now() + pause >= deadline {
            return Err(err);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Runs `$body` (an expression that awaits a call on `$client`, the current
/// `&TcpClient`) and retries it on a new connection while it fails for want
/// of one, until `$deadline`. Evaluates to the call's `Result`.
///
/// Only for calls that are safe to repeat; appends handle their failures
/// themselves.
macro_rules! call {
    ($session:expr, $deadline:expr, |$client:ident| $body:expr) => {{
        let session: &$crate::iggy::session::Session = &$session;
        let deadline: ::tokio::time::Instant = $deadline;
        loop {
            let (client, generation) = session.client();
            let $client: &::iggy::prelude::TcpClient = &client;
            match $body {
                Ok(value) => break Ok(value),
                Err(err)
                    if $crate::iggy::session::is_transient(&err)
                        && ::tokio::time::Instant::now() < deadline =>
                {
                    if let Err(err) = session.reconnect(generation, deadline).await {
                        break Err(err);
                    }
                }
                Err(err) => break Err(err),
            }
        }
    }};
}
pub(crate) use call;
