//! Integration tests of vibes-actors, a module per actor.

// A failed unwrap is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

mod control;
mod derived;
mod storage;
mod supervisor;
mod support;
mod writer;
