//! Black-box tests of the `vibesd` binary, a module per area.

// A failed unwrap is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

mod api;
mod backend;
mod browser;
mod clients;
mod disk;
mod firehose;
#[cfg(feature = "groove")]
mod groove;
mod history;
mod lifecycle;
mod memory;
mod notifications;
mod observe;
mod permissions;
mod router;
mod support;
mod systemd;
mod ui;
