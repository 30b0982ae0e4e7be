//! How deeply JSON nests, and how deeply a stored event may.
//!
//! serde_json refuses to read JSON nested more than 128 objects and arrays
//! deep. An event is stored inside an envelope ([`crate::StoredEvent`]),
//! and read back inside further wrappers (an API page, a transcript line),
//! so an event that was fine as sent could become unreadable once stored.
//! The log therefore refuses, at append, any event whose stored form nests
//! deeper than [`MAX_STORED_DEPTH`]: what is acknowledged always decodes,
//! with room to spare for every wrapper vibesd puts around it.

/// The deepest nesting of a stored envelope the log accepts: the event
/// itself may nest one level less ([`MAX_EVENT_DEPTH`]).
pub const MAX_STORED_DEPTH: usize = MAX_EVENT_DEPTH + 1;

/// The deepest nesting of objects and arrays an event may have, counting
/// the event object itself as 1. serde_json reads 128; the rest is left
/// for the envelope and the wrappers of every read path.
pub const MAX_EVENT_DEPTH: usize = 100;

/// The deepest nesting of objects and arrays in `json`: `{}` is 1,
/// `{"a":[1]}` is 2, a scalar is 0. Brackets inside strings do not count.
/// The input is assumed to be JSON; on anything else the answer is still
/// an upper bound of how deep a parser would have to go.
pub fn json_depth(json: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoredEvent, VibesEvent};

    #[test]
    fn depth_counts_objects_and_arrays_but_not_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"{}"), 1);
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"[[[{{{\"]]]"}"#), 1);
        assert_eq!(json_depth(br#"[[],[[]],[]]"#), 3);
    }

    /// The payload of a `hook` event nested `levels` deep inside its
    /// `tool_input`, so the whole event nests `levels + 2`.
    fn hook_nested(levels: usize) -> VibesEvent {
        let mut value = serde_json::json!(1);
        for _ in 0..levels {
            value = serde_json::json!([value]);
        }
        let json = serde_json::json!({
            "type": "hook", "session_id": "s",
            "event": {"hook_event_name": "PreToolUse", "tool_input": value},
        });
        serde_json::from_value(json).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn every_envelope_within_the_limit_decodes_with_room_for_wrappers() {
        for levels in 0..=MAX_EVENT_DEPTH - 2 {
            let stored = StoredEvent::new(hook_nested(levels));
            let bytes = stored.encode();
            assert_eq!(json_depth(&bytes), levels + 3);
            assert!(json_depth(&bytes) <= MAX_STORED_DEPTH);
            assert_eq!(StoredEvent::decode(&bytes).as_ref(), Ok(&stored));
        }
        // The widest wrapper vibesd reads back with serde_json, a page of
        // `GET /api/events` (`{"events":[{..frame..}]}`), adds 2 levels:
        // serde_json's limit of 128 leaves more than that.
        const { assert!(MAX_STORED_DEPTH + 2 < 128) };
    }
}
