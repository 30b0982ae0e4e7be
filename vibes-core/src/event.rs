//! The events of vibesd.
//!
//! Every event is a JSON object tagged by `"type"` in snake_case. Events are
//! written by one version of vibesd and may be read by an older one, so each
//! tagged enum ends in an `Unknown` variant that keeps the JSON of a type this
//! build does not know: a newer event never stops a consumer.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Something that happened around an AI coding session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case")]
pub enum VibesEvent {
    /// Output of a Claude session (streamed text, tool use, turns, errors).
    Claude {
        session_id: String,
        event: ClaudeEvent,
    },
    /// Input a person typed into a session, from the web UI, the CLI or a hook.
    UserInput {
        session_id: String,
        content: String,
        /// Where the input came from (`web`, `cli`, `hook`, ...).
        source: String,
    },
    /// A person's answer to a permission request: a
    /// [`ClaudeEvent::PermissionRequest`] (named by its `id`), or a Claude
    /// Code `PermissionRequest` hook waiting in `vibesd hook` (named by the
    /// offset of its `hook` event, `request_offset`; `request_id` is that
    /// offset in decimal).
    PermissionResponse {
        session_id: String,
        request_id: String,
        approved: bool,
        /// For a `PermissionRequest` hook: the offset of its `hook` event.
        /// Only vibesd's permission route writes these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_offset: Option<u64>,
        /// With a denial: what Claude is told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Who decided, from where.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decided_by: Option<DecidedBy>,
    },
    /// How `vibesd hook` ended its wait for a decision on the
    /// `PermissionRequest` hook at `request_offset` (only vibesd writes
    /// these).
    PermissionOutcome {
        session_id: String,
        request_offset: u64,
        /// `decided` (Claude Code got the decision), `timed_out` (none came
        /// in time: the dialog went to the terminal) or `unreachable` (the
        /// hook lost vibesd while it waited: the dialog went to the
        /// terminal).
        outcome: String,
    },
    SessionCreated {
        session_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    SessionStateChanged {
        session_id: String,
        /// The new state (`idle`, `processing`, `waiting_for_permission`, ...).
        state: String,
    },
    ClientConnected {
        client_id: String,
    },
    ClientDisconnected {
        client_id: String,
    },
    SessionRemoved {
        session_id: String,
        /// Why the session ended (`user`, `session_end`, `idle`, ...).
        reason: String,
    },
    /// A Claude Code hook payload, as passed to a hook command.
    Hook {
        session_id: String,
        event: HookPayload,
    },
    /// A consumer group gave up on the event at `offset` and moved on.
    DeadLetter {
        group: String,
        offset: u64,
        /// The handler's last error, or why the event could not be handled.
        error: String,
        /// How many times it was tried.
        attempts: u32,
    },
    /// An operator dealt with a dead letter.
    DeadLetterResolved {
        group: String,
        offset: u64,
        /// `replayed` (handled again, successfully) or `skipped`.
        resolution: String,
    },
    /// Something a plugin records in the log (only vibesd writes these),
    /// e.g. the assessment plugin's note that it answered a hook.
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// What the plugin recorded, in its own terms.
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(default)]
        data: Value,
    },
    /// An event of a type this build does not know; its JSON is kept whole.
    #[serde(skip)]
    Unknown(UnknownEvent),
}

impl VibesEvent {
    /// Every `"type"` this build knows.
    pub const KINDS: &[&str] = &[
        "claude",
        "user_input",
        "permission_response",
        "permission_outcome",
        "session_created",
        "session_state_changed",
        "client_connected",
        "client_disconnected",
        "session_removed",
        "hook",
        "dead_letter",
        "dead_letter_resolved",
        "plugin",
    ];

    /// The `"type"` tag of this event, as it appears in JSON.
    pub fn kind(&self) -> &str {
        match self {
            Self::Claude { .. } => "claude",
            Self::UserInput { .. } => "user_input",
            Self::PermissionResponse { .. } => "permission_response",
            Self::PermissionOutcome { .. } => "permission_outcome",
            Self::SessionCreated { .. } => "session_created",
            Self::SessionStateChanged { .. } => "session_state_changed",
            Self::ClientConnected { .. } => "client_connected",
            Self::ClientDisconnected { .. } => "client_disconnected",
            Self::SessionRemoved { .. } => "session_removed",
            Self::Hook { .. } => "hook",
            Self::DeadLetter { .. } => "dead_letter",
            Self::DeadLetterResolved { .. } => "dead_letter_resolved",
            Self::Plugin { .. } => "plugin",
            Self::Unknown(unknown) => unknown.kind(),
        }
    }

    /// The session this event belongs to, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Self::Claude { session_id, .. }
            | Self::UserInput { session_id, .. }
            | Self::PermissionResponse { session_id, .. }
            | Self::PermissionOutcome { session_id, .. }
            | Self::SessionCreated { session_id, .. }
            | Self::SessionStateChanged { session_id, .. }
            | Self::SessionRemoved { session_id, .. }
            | Self::Hook { session_id, .. } => Some(session_id),
            Self::Plugin { session_id, .. } => session_id.as_deref(),
            Self::ClientConnected { .. }
            | Self::ClientDisconnected { .. }
            | Self::DeadLetter { .. }
            | Self::DeadLetterResolved { .. } => None,
            Self::Unknown(unknown) => unknown.0.get("session_id").and_then(Value::as_str),
        }
    }
}

/// One step of a Claude session's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case")]
pub enum ClaudeEvent {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        text: String,
    },
    ToolUseStart {
        id: String,
        name: String,
    },
    ToolInputDelta {
        id: String,
        delta: String,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    TurnStart,
    TurnComplete {
        usage: Usage,
    },
    Error {
        message: String,
        recoverable: bool,
    },
    PermissionRequest {
        id: String,
        tool: String,
        description: String,
    },
    /// A Claude event of a type this build does not know; kept whole.
    #[serde(skip)]
    Unknown(UnknownEvent),
}

impl ClaudeEvent {
    /// The `"type"` tag of this Claude event, as it appears in JSON.
    pub fn kind(&self) -> &str {
        match self {
            Self::TextDelta { .. } => "text_delta",
            Self::ThinkingDelta { .. } => "thinking_delta",
            Self::ToolUseStart { .. } => "tool_use_start",
            Self::ToolInputDelta { .. } => "tool_input_delta",
            Self::ToolResult { .. } => "tool_result",
            Self::TurnStart => "turn_start",
            Self::TurnComplete { .. } => "turn_complete",
            Self::Error { .. } => "error",
            Self::PermissionRequest { .. } => "permission_request",
            Self::Unknown(unknown) => unknown.kind(),
        }
    }

    /// Every `"type"` of a Claude event this build knows.
    pub const KINDS: &[&str] = &[
        "text_delta",
        "thinking_delta",
        "tool_use_start",
        "tool_input_delta",
        "tool_result",
        "turn_start",
        "turn_complete",
        "error",
        "permission_request",
    ];
}

/// Where a decision on a permission request came from, as vibesd saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedBy {
    /// The route that took it, e.g. `POST /api/permissions/{offset}/decision`.
    pub route: String,
    /// The client's address (a reverse proxy's, behind one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The web page that sent it (its `Origin`), for a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// Token usage of one turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
}

/// The JSON Claude Code passes to a hook command on stdin.
///
/// The named fields are the ones vibesd reads; every other field Claude Code
/// sends (now or in a later version) is kept in `extra` and written back
/// unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookPayload {
    /// `PreToolUse`, `PostToolUse`, `UserPromptSubmit`, `Notification`,
    /// `Stop`, `SessionStart`, `SessionEnd`, ...
    pub hook_event_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_path: Option<String>,
    /// Every field not named above, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The JSON of an event whose `"type"` this build does not know.
///
/// It is always an object with a string `"type"`: anything else is not an
/// event at all and fails to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownEvent(Map<String, Value>);

impl UnknownEvent {
    /// The `"type"` tag the newer writer gave this event.
    pub fn kind(&self) -> &str {
        self.0
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The event's JSON, as it was written.
    pub fn json(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl Serialize for UnknownEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The `Serialize` and `Deserialize` of an event enum with an `Unknown`
/// variant. The derive (`remote = "Self"`) handles the known variants;
/// around it, an object whose `"type"` is not in `KINDS` is a newer event and
/// is kept whole, while a known `"type"` with bad fields is a broken event
/// and fails with the derive's own precise message.
macro_rules! tagged_with_unknown {
    ($ty:ident, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    Self::Unknown(unknown) => unknown.serialize(serializer),
                    known => $ty::serialize(known, serializer),
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error;
                let map = Map::<String, Value>::deserialize(deserializer)?;
                let kind = match map.get("type") {
                    Some(Value::String(kind)) => kind,
                    _ => {
                        return Err(D::Error::custom(concat!(
                            "not ",
                            $what,
                            ": expected a JSON object with a string \"type\""
                        )));
                    }
                };
                if !Self::KINDS.contains(&kind.as_str()) {
                    return Ok(Self::Unknown(UnknownEvent(map)));
                }
                let kind = kind.clone();
                $ty::deserialize(Value::Object(map)).map_err(|err| {
                    D::Error::custom(format_args!("invalid `{kind}` {}: {err}", $what))
                })
            }
        }
    };
}

/// The `"type"` of an event's JSON, read without the rest.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// `from_json_str` for an event enum: the same answers as its `Deserialize`
/// (known variants, `Unknown` for a newer type, the same errors), read
/// straight from the text. The `Deserialize` impl has to buffer the whole
/// event as a `Value` to look at its tag first; here the tag is read in a
/// first pass that allocates nothing, then the variant from the text.
macro_rules! from_json_str {
    ($ty:ident, $what:literal) => {
        impl $ty {
            /// Decodes the JSON text of one event; see the macro.
            pub fn from_json_str(json: &str) -> Result<Self, serde_json::Error> {
                use serde::de::Error;
                let not_one = || {
                    serde_json::Error::custom(concat!(
                        "not ",
                        $what,
                        ": expected a JSON object with a string \"type\""
                    ))
                };
                if !json.trim_start().starts_with('{') {
                    return Err(not_one());
                }
                let tag: Tag<'_> = serde_json::from_str(json).map_err(|_| not_one())?;
                let Some(kind) = tag.kind else {
                    return Err(not_one());
                };
                if !Self::KINDS.contains(&kind.as_ref()) {
                    return serde_json::from_str(json).map(|map| Self::Unknown(UnknownEvent(map)));
                }
                let mut text = serde_json::Deserializer::from_str(json);
                Self::nested_from_str(&kind, json)
                    .unwrap_or_else(|| {
                        $ty::deserialize(&mut text).and_then(|event| text.end().map(|()| event))
                    })
                    .map_err(|err| {
                        serde_json::Error::custom(format_args!("invalid `{kind}` {}: {err}", $what))
                    })
            }
        }
    };
}

tagged_with_unknown!(VibesEvent, "event");
tagged_with_unknown!(ClaudeEvent, "claude event");
from_json_str!(VibesEvent, "event");
from_json_str!(ClaudeEvent, "claude event");

impl VibesEvent {
    /// A `claude` event (half of a typical log) with its inner event read
    /// straight from the text too; the derive would buffer it whole first.
    fn nested_from_str(kind: &str, json: &str) -> Option<Result<Self, serde_json::Error>> {
        #[derive(Deserialize)]
        struct Claude<'a> {
            session_id: String,
            #[serde(borrow)]
            event: &'a serde_json::value::RawValue,
        }
        (kind == "claude").then(|| {
            let claude: Claude<'_> = serde_json::from_str(json)?;
            Ok(Self::Claude {
                session_id: claude.session_id,
                event: ClaudeEvent::from_json_str(claude.event.get())?,
            })
        })
    }
}

impl ClaudeEvent {
    /// Nothing nested to read apart.
    fn nested_from_str(_kind: &str, _json: &str) -> Option<Result<Self, serde_json::Error>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_events_round_trip_with_snake_case_tags() {
        let event = VibesEvent::Claude {
            session_id: "s1".into(),
            event: ClaudeEvent::ToolResult {
                id: "t1".into(),
                output: "ok".into(),
                is_error: false,
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            json!({"type":"claude","session_id":"s1",
                   "event":{"type":"tool_result","id":"t1","output":"ok","is_error":false}})
        );
        assert_eq!(serde_json::from_value::<VibesEvent>(json).unwrap(), event);
    }

    #[test]
    fn a_permission_response_stored_before_remote_approval_still_reads() {
        let old = json!({"type":"permission_response","session_id":"s1",
                         "request_id":"r7","approved":true});
        let event: VibesEvent = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), old);

        let decided = VibesEvent::PermissionResponse {
            session_id: "s1".into(),
            request_id: "12".into(),
            approved: false,
            request_offset: Some(12),
            message: Some("not on main".into()),
            decided_by: Some(DecidedBy {
                route: "POST /api/permissions/{offset}/decision".into(),
                client: Some("127.0.0.1:5000".into()),
                origin: None,
            }),
        };
        let json = serde_json::to_value(&decided).unwrap();
        assert_eq!(json["decided_by"]["client"], "127.0.0.1:5000");
        assert!(json["decided_by"].get("origin").is_none());
        assert_eq!(serde_json::from_value::<VibesEvent>(json).unwrap(), decided);
    }

    #[test]
    fn an_event_from_a_newer_version_is_kept_whole() {
        let json = json!({"type":"session_renamed","session_id":"s1","name":"x"});
        let event: VibesEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(event.kind(), "session_renamed");
        assert_eq!(event.session_id(), Some("s1"));
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }

    #[test]
    fn a_newer_claude_event_inside_a_known_event_is_kept_whole() {
        let json =
            json!({"type":"claude","session_id":"s1","event":{"type":"image_delta","png":"..."}});
        let event: VibesEvent = serde_json::from_value(json.clone()).unwrap();
        assert!(matches!(
            event,
            VibesEvent::Claude {
                event: ClaudeEvent::Unknown(_),
                ..
            }
        ));
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }

    #[test]
    fn json_without_a_type_is_not_an_event() {
        for bad in [
            json!({"session_id":"s1"}),
            json!({"type":3}),
            json!([1, 2]),
            json!("claude"),
        ] {
            let err = serde_json::from_value::<VibesEvent>(bad.clone()).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad} decoded");
        }
    }

    #[test]
    fn a_known_type_with_wrong_fields_is_not_silently_unknown() {
        // A `user_input` without `content` is a broken event, not a newer one.
        let bad = json!({"type":"user_input","session_id":"s1","source":"web"});
        let err = serde_json::from_value::<VibesEvent>(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `user_input` event: missing field `content`"
        );
    }

    #[test]
    fn hook_payload_keeps_fields_it_does_not_name() {
        let json = json!({
            "type":"hook","session_id":"s1",
            "event":{"hook_event_name":"PreToolUse","tool_name":"Bash",
                     "tool_input":{"command":"ls"},"permission_mode":"default"}
        });
        let event: VibesEvent = serde_json::from_value(json.clone()).unwrap();
        let VibesEvent::Hook { event: payload, .. } = &event else {
            panic!("not a hook: {event:?}");
        };
        assert_eq!(payload.tool_name.as_deref(), Some("Bash"));
        assert_eq!(payload.extra["permission_mode"], "default");
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }
}
