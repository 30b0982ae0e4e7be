//! Client-given strings in log lines: a short prefix and the length, so a
//! huge value (a 1 MiB session id) never becomes a huge log line.

use std::fmt;

/// How many characters of a client string a log line keeps.
const KEEP: usize = 64;

/// Shows at most [`KEEP`] characters of a client string, and its length
/// in bytes when it is cut: `"abc…" (1048576 bytes)`.
#[derive(Debug, Clone, Copy)]
pub struct Clipped<'a>(pub &'a str);

/// `value` as a log line may print it.
pub fn clip(value: &str) -> Clipped<'_> {
    Clipped(value)
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(KEEP) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_shown_whole_and_long_ones_cut_with_their_length() {
        assert_eq!(clip("s1").to_string(), "\"s1\"");
        let huge = "x".repeat(1 << 20);
        let shown = clip(&huge).to_string();
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("… (1048576 bytes)"), "{shown}");
        // Never cut inside a character.
        assert!(clip(&"é".repeat(100)).to_string().starts_with("\"éé"));
    }
}
