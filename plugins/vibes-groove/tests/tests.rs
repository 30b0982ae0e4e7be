//! The crate's integration tests, a module per area, through the public API
//! the daemon uses.

// A failed unwrap is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

mod hooks;
mod intervention;
mod plugin;
mod replay;
mod routes;
mod store;
mod support;
