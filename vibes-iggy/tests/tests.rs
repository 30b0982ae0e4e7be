//! Integration tests of vibes-iggy: the conformance suite run against each
//! backend, and each backend's own tests.

mod conformance;
mod embedded;
mod memory;
