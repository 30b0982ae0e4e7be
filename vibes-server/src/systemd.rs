//! systemd integration: `Type=notify` readiness, stopping, and a watchdog
//! that is fed only while the actor system answers.

use std::time::Duration;

use vibes_actors::supervisor::SupervisorHandle;

/// READY=1: the API listens and the log is open. Outside systemd
/// (`NOTIFY_SOCKET` unset) this does nothing.
pub(crate) fn ready() {
    notify(&[sd_notify::NotifyState::Ready]);
}

/// STOPPING=1: shutdown has begun.
pub(crate) fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, state) {
        tracing::warn!("cannot notify systemd: {err}");
    }
}

/// Feeds the watchdog at half its interval while the Supervisor and the
/// LogWriter answer a ping; stops feeding it otherwise, so systemd
/// restarts a vibesd whose actor system is stuck. A group stuck in its
/// handler does not count: `/readyz` and `/metrics` show it.
pub(crate) fn watchdog(supervisor: SupervisorHandle) -> tokio::task::JoinHandle<()> {
    let mut usec = 0;
    let enabled = sd_notify::watchdog_enabled(false, &mut usec);
    tokio::spawn(async move {
        if !enabled || usec == 0 {
            return;
        }
        let period = Duration::from_micros(usec) / 2;
        loop {
            tokio::time::sleep(period).await;
            // A stuck group is no reason to restart vibesd: only the
            // Supervisor's and the LogWriter's own mailboxes count.
            let healthy = supervisor.ping(period).await && supervisor.writer().ping(period).await;
            if healthy {
                notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the actors do not answer: not feeding the systemd watchdog");
            }
        }
    })
}
