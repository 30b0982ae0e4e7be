//! An error printed with its causes, once each.
//!
//! vibesd's errors keep their cause as `#[source]` and leave it out of
//! their own message, so that whoever prints one walks the chain and
//! every cause appears exactly once.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes: `outer: inner: innermost`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// `err` with its causes, as one line.
pub fn error_chain(err: &dyn Error) -> String {
    ErrorChain(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_appears_once() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&err), "outer: inner");
    }
}
