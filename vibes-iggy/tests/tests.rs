//! Integration tests of vibes-iggy: the conformance suite run against each
//! backend, and each backend's own tests.

// A failed unwrap is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

mod conformance;
mod embedded;
mod iggy;
mod memory;
