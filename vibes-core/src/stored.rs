//! The envelope the log stores: an event with its id and time of acceptance.
//!
//! The stored form is the JSON of [`StoredEvent`]; every backend keeps these
//! same bytes, so a record written by one can be read by any.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::VibesEvent;

/// An event as the log stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// A UUIDv7: unique, and ordered by creation time.
    pub event_id: Uuid,
    /// When vibesd accepted the event.
    pub timestamp: DateTime<Utc>,
    pub event: VibesEvent,
}

impl StoredEvent {
    /// Wraps `event` with a fresh UUIDv7 and the current time.
    pub fn new(event: VibesEvent) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            timestamp: Utc::now(),
            event,
        }
    }

    /// The stored form: the JSON of this envelope.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string and
        // no field has a fallible `Serialize`.
        serde_json::to_vec(self).unwrap_or_else(|err| unreachable!("StoredEvent encodes: {err}"))
    }

    /// Reads the stored form back: the same answer as `Deserialize`, faster
    /// (the event is decoded straight from its text, see
    /// [`VibesEvent::from_json_str`]); every read of the log comes here.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        /// The envelope, its event left as text.
        #[derive(Deserialize)]
        struct Envelope<'a> {
            event_id: Uuid,
            timestamp: DateTime<Utc>,
            #[serde(borrow)]
            event: &'a RawValue,
        }
        let failed = |err: serde_json::Error| DecodeError {
            message: err.to_string(),
        };
        let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(failed)?;
        Ok(Self {
            event_id: envelope.event_id,
            timestamp: envelope.timestamp,
            event: VibesEvent::from_json_str(envelope.event.get()).map_err(failed)?,
        })
    }
}

/// Stored bytes that are not a [`StoredEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// What the decoder said, with line and column.
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a stored event: {}", self.message)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encode_then_decode_gives_back_the_same_event() {
        let stored = StoredEvent::new(VibesEvent::ClientConnected {
            client_id: "c1".into(),
        });
        assert_eq!(StoredEvent::decode(&stored.encode()).unwrap(), stored);
        assert_eq!(stored.event_id.get_version_num(), 7);
    }

    /// What `Deserialize` makes of `bytes`, the reference for `decode`.
    fn reference(bytes: &[u8]) -> Result<StoredEvent, String> {
        serde_json::from_slice(bytes).map_err(|err| err.to_string())
    }

    #[test]
    fn decode_reads_every_kind_of_event_as_deserialize_does() {
        let events = [
            json!({"type":"user_input","session_id":"s1","content":"hi \"there\" \u{e9}","source":"web"}),
            json!({"type":"claude","session_id":"s1","event":{"type":"text_delta","text":"Hi"}}),
            json!({"type":"claude","session_id":"s1","event":{"type":"turn_complete",
                   "usage":{"input_tokens":1,"output_tokens":2}}}),
            json!({"type":"claude","session_id":"s1","event":{"type":"image_delta","png":"…"}}),
            json!({"type":"hook","session_id":"s1","event":{"hook_event_name":"PreToolUse",
                   "tool_input":{"command":"ls"},"permission_mode":"default"}}),
            json!({"type":"permission_response","session_id":"s1","request_id":"3","approved":false,
                   "request_offset":3,"message":"no","decided_by":{"route":"r"}}),
            json!({"session_id":"s1","type":"session_created"}),
            json!({"type":"session_renamed","session_id":"s1","name":{"deep":[1,2]}}),
            json!({"type":"plugin","plugin":"groove","kind":"k","data":null}),
        ];
        for event in events {
            let envelope = json!({"event_id":"0199b6a4-0000-7000-8000-000000000000",
                                  "timestamp":"2026-12-07T10:00:00.500Z","event":event});
            let bytes = serde_json::to_vec(&envelope).unwrap();
            let decoded = StoredEvent::decode(&bytes).unwrap();
            assert_eq!(Ok(&decoded), reference(&bytes).as_ref(), "{event}");
            assert_eq!(serde_json::to_value(&decoded).unwrap(), envelope);
        }
    }

    #[test]
    fn decode_refuses_what_deserialize_refuses_with_the_same_words() {
        let envelope = |event: &str| {
            format!(
                r#"{{"event_id":"0199b6a4-0000-7000-8000-000000000000","timestamp":"2026-12-07T10:00:00Z","event":{event}}}"#
            )
        };
        for (event, says) in [
            (
                r#"{"type":"user_input","session_id":"s1","source":"web"}"#,
                "invalid `user_input` event: missing field `content`",
            ),
            (
                r#"{"type":"claude","session_id":"s1","event":{"type":"text_delta"}}"#,
                "invalid `claude` event",
            ),
            (
                r#"{"type":3}"#,
                "expected a JSON object with a string \"type\"",
            ),
            (
                r#"{"session_id":"s1"}"#,
                "expected a JSON object with a string \"type\"",
            ),
            (
                r#"["user_input","s1"]"#,
                "expected a JSON object with a string \"type\"",
            ),
            (
                r#""claude""#,
                "expected a JSON object with a string \"type\"",
            ),
        ] {
            let bytes = envelope(event).into_bytes();
            let err = StoredEvent::decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(says), "{event}: {err}");
            assert!(reference(&bytes).is_err(), "{event} decodes by Deserialize");
        }
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for bad in [&b""[..], b"\xff\xfe", b"{\"event_id\":1}", b"null"] {
            let err = StoredEvent::decode(bad).unwrap_err();
            assert!(err.to_string().starts_with("not a stored event"), "{err}");
        }
    }
}
