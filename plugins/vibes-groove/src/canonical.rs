//! Deterministic forms: JSON with sorted keys, a stable hash of it, and
//! bounded excerpts of text.
//!
//! Everything groove stores must come out the same on every replay and in
//! every build, so nothing here depends on map order (serde_json's map may
//! keep insertion order when another crate enables `preserve_order`) or on
//! a hasher whose keys or algorithm may change between Rust versions.

use std::fmt::Write as _;

use serde_json::Value;

/// `value` as compact JSON with every object's keys sorted.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The 64-bit FNV-1a hash of `value`'s canonical JSON, as 16 hex digits:
/// stable across runs, builds and platforms.
pub(crate) fn stable_hash(value: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical_json(value).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut hex = String::with_capacity(16);
    let _ = write!(hex, "{hash:016x}");
    hex
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How long an excerpt may be, in bytes (plus an ellipsis).
pub(crate) const EXCERPT_BYTES: usize = 160;

/// A one-line excerpt of `text`: whitespace runs collapsed to one space,
/// cut to [`EXCERPT_BYTES`] with `…` if longer.
pub(crate) fn excerpt(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(EXCERPT_BYTES + 4));
    for word in text.split_whitespace() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        if line.len() > EXCERPT_BYTES {
            break;
        }
    }
    if line.len() > EXCERPT_BYTES {
        let cut = truncate(&line, EXCERPT_BYTES).trim_end().len();
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": null}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn the_hash_is_the_same_for_the_same_json_in_any_key_order() {
        let a: Value = serde_json::from_str(r#"{"command":"ls","timeout":5}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"timeout":5,"command":"ls"}"#).unwrap_or_default();
        assert_eq!(stable_hash(&a), stable_hash(&b));
        assert_ne!(stable_hash(&a), stable_hash(&json!({"command": "ls -l"})));
        // Pinned: a change of algorithm would silently break replays.
        assert_eq!(stable_hash(&json!(null)), "5b9bc4ba528108e4");
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt("  a\n\tb  c "), "a b c");
        let long = "é".repeat(200);
        let cut = excerpt(&long);
        assert!(cut.len() <= EXCERPT_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
