//! The envelope the log stores: an event with its id and time of acceptance.
//!
//! The stored form is the JSON of [`StoredEvent`]; every backend keeps these
//! same bytes, so a record written by one can be read by any.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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

    /// Reads the stored form back.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|err| DecodeError {
            message: err.to_string(),
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

    #[test]
    fn encode_then_decode_gives_back_the_same_event() {
        let stored = StoredEvent::new(VibesEvent::ClientConnected {
            client_id: "c1".into(),
        });
        assert_eq!(StoredEvent::decode(&stored.encode()).unwrap(), stored);
        assert_eq!(stored.event_id.get_version_num(), 7);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for bad in [&b""[..], b"\xff\xfe", b"{\"event_id\":1}", b"null"] {
            let err = StoredEvent::decode(bad).unwrap_err();
            assert!(err.to_string().starts_with("not a stored event"), "{err}");
        }
    }
}
