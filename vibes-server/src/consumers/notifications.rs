//! The `notifications` consumer group: tells a person, through the web UI
//! and the configured webhooks, when a session needs them.
//!
//! The group always runs (unless disabled). Three kinds of event make a
//! notification:
//!
//! | kind | event |
//! |---|---|
//! | `permission_request` | a Claude `permission_request`, or a Claude Code `PermissionRequest` hook |
//! | `notification` | a Claude Code `Notification` hook |
//! | `waiting_for_input` | `session_state_changed` to `waiting_for_input` (from a `Stop` hook) |
//!
//! A `PermissionRequest` hook that waits for a remote decision (see
//! `crate::permissions`) carries a `link` to its page in the web UI
//! (`public_url`, else `http://<bind>`, then `/permissions/<offset>`): the
//! JSON's `link`, the ntfy `Click` header.
//!
//! Every notification goes first to the [`Feed`]: the last
//! [`FEED_CAPACITY`] notifications, which `GET /api/notifications` answers
//! and `WS /ws/notifications` pushes to connected web UIs. Plugins add
//! theirs to the feed too (groove: `breaker_open`, when a session's
//! assessment breaker opens); those reach the UI, not the webhooks.
//!
//! Each webhook gets the kinds it asked for (all of them if it named none),
//! as JSON or as an ntfy-style plain body with a `Title` header. The group
//! starts at the end of the log (nobody wants last week's alerts) and
//! commits an event once every webhook that wants it has it.
//!
//! A transient failure (no connection, a timeout, 5xx, 429) is retried a few
//! times with back-off inside the handler; when that is spent, or at once on
//! any other 4xx, the handler reports the event as failed and the group's
//! own retry and dead-letter path takes over. Webhooks that already took the
//! event are not sent it again when the group retries it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use vibes_actors::group::{GroupSpec, HandlerFactory};
use vibes_core::{ClaudeEvent, Delivery, Handled, Handler, StoredEvent, VibesEvent};
use vibes_iggy::StartPosition;

use crate::config::{Config, Webhook};

/// The group's name.
pub const GROUP: &str = "notifications";

/// The kinds a webhook can ask for, as the config spells them.
pub const KINDS: &[&str] = &["permission_request", "notification", "waiting_for_input"];

/// How long one POST may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The back-off between the attempts of one POST: 4 attempts at most,
/// at most about 2 s of waiting between them, so a dead webhook holds the
/// group for a bounded time (about 22 s with every attempt timing out).
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(3)
        .with_total_delay(Some(Duration::from_secs(3)))
        .with_jitter()
}

/// How many notifications the feed keeps.
pub const FEED_CAPACITY: usize = 100;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PermissionRequest,
    Notification,
    WaitingForInput,
    /// A plugin's kind, e.g. groove's `breaker_open`.
    Plugin(&'static str),
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::PermissionRequest => "permission_request",
            Self::Notification => "notification",
            Self::WaitingForInput => "waiting_for_input",
            Self::Plugin(kind) => kind,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "permission_request" => Some(Self::PermissionRequest),
            "notification" => Some(Self::Notification),
            "waiting_for_input" => Some(Self::WaitingForInput),
            _ => None,
        }
    }
}

/// What a webhook receives (the JSON format is this, serialized).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub kind: Kind,
    pub session_id: String,
    pub title: String,
    pub message: String,
    /// The event's offset in the log.
    pub offset: u64,
    pub event_id: String,
    /// When vibesd accepted the event (RFC 3339).
    pub timestamp: String,
    /// Where to act on it: the web UI's page for a permission request that
    /// waits for a decision (a path in the UI's feed, a full URL for a
    /// webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl From<vibes_plugin::Notice> for Notification {
    fn from(notice: vibes_plugin::Notice) -> Self {
        Self {
            kind: Kind::Plugin(notice.kind),
            session_id: notice.session_id,
            title: notice.title,
            message: notice.message,
            offset: notice.offset,
            event_id: notice.event_id,
            timestamp: notice.timestamp,
            link: None,
        }
    }
}

/// The last notifications, and the web UIs listening for new ones.
#[derive(Debug, Clone)]
pub struct Feed {
    recent: Arc<std::sync::Mutex<std::collections::VecDeque<Arc<Notification>>>>,
    live: tokio::sync::broadcast::Sender<Arc<Notification>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            recent: Arc::default(),
            live: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl Feed {
    /// Adds a notification, unless one of its kind for its event is there
    /// already (the group retrying the event, a plugin rebuilding).
    pub fn push(&self, notification: Notification) {
        let notification = Arc::new(notification);
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent
                .iter()
                .any(|old| old.offset == notification.offset && old.kind == notification.kind)
            {
                return;
            }
            if recent.len() == FEED_CAPACITY {
                recent.pop_front();
            }
            recent.push_back(notification.clone());
        }
        // No UI listening is fine.
        let _ = self.live.send(notification);
    }

    /// The notifications kept, oldest first.
    pub fn recent(&self) -> Vec<Arc<Notification>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// New notifications from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Notification>> {
        self.live.subscribe()
    }
}

impl Notification {
    /// The notification `stored` (at `offset`) makes, if any.
    pub fn of(offset: u64, stored: &StoredEvent) -> Option<Self> {
        let (kind, session_id, title, message) = match &stored.event {
            VibesEvent::Claude {
                session_id,
                event:
                    ClaudeEvent::PermissionRequest {
                        tool, description, ..
                    },
            } => (
                Kind::PermissionRequest,
                session_id,
                format!("Permission needed: {tool}"),
                description.clone(),
            ),
            VibesEvent::Hook { session_id, event }
                if event.hook_event_name == "PermissionRequest" =>
            {
                (
                    Kind::PermissionRequest,
                    session_id,
                    format!(
                        "Permission needed: {}",
                        event.tool_name.as_deref().unwrap_or("a tool")
                    ),
                    tool_summary(event.tool_input.as_ref()),
                )
            }
            VibesEvent::Hook { session_id, event } if event.hook_event_name == "Notification" => (
                Kind::Notification,
                session_id,
                "Claude Code".to_owned(),
                event.message.clone().unwrap_or_default(),
            ),
            VibesEvent::SessionStateChanged { session_id, state }
                if state == "waiting_for_input" =>
            {
                (
                    Kind::WaitingForInput,
                    session_id,
                    "Waiting for input".to_owned(),
                    format!("Session {session_id} is waiting for input"),
                )
            }
            _ => return None,
        };
        Some(Self {
            kind,
            session_id: session_id.clone(),
            title,
            message,
            offset,
            event_id: stored.event_id.to_string(),
            timestamp: stored.timestamp.to_rfc3339(),
            link: None,
        })
    }
}

/// One line of what a tool is about to do: a Bash command, the file an
/// edit touches, else its input as JSON, clipped.
fn tool_summary(input: Option<&serde_json::Value>) -> String {
    const KEEP: usize = 300;
    let Some(input) = input else {
        return String::new();
    };
    let text = ["command", "file_path", "notebook_path", "url", "pattern"]
        .iter()
        .find_map(|key| input.get(key).and_then(serde_json::Value::as_str))
        .map_or_else(|| input.to_string(), str::to_owned);
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Whether the event at `offset` is a `PermissionRequest` hook that waits
/// for a remote decision under `approval`: then its notification links to
/// the page that decides it.
fn decides(approval: &crate::config::RemoteApproval, stored: &StoredEvent) -> bool {
    matches!(&stored.event, VibesEvent::Hook { event, .. }
        if event.hook_event_name == "PermissionRequest"
            && event.tool_name.as_deref().is_some_and(|tool| approval.decides(tool)))
}

/// How a webhook wants its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The [`Notification`] as JSON.
    Json,
    /// ntfy-style: the message as a plain body, the title in `Title`.
    Text,
}

/// One configured webhook, checked.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    /// Empty: every kind.
    kinds: Vec<Kind>,
    format: Format,
}

impl Target {
    fn new(webhook: &Webhook) -> Result<Self, String> {
        let kinds = webhook
            .kinds
            .iter()
            .map(|name| {
                Kind::parse(name).ok_or_else(|| {
                    format!(
                        "webhook {:?}: unknown kind {name:?}: the kinds are {}",
                        webhook.url,
                        KINDS.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let format = match webhook.format.as_str() {
            "json" => Format::Json,
            "text" => Format::Text,
            other => {
                return Err(format!(
                    "webhook {:?}: format {other:?} must be \"json\" or \"text\"",
                    webhook.url
                ));
            }
        };
        Ok(Self {
            url: webhook.url.clone(),
            kinds,
            format,
        })
    }

    fn wants(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

/// Checks the webhooks of a config (kinds and format), for config loading.
pub fn check(webhooks: &[Webhook]) -> Result<(), String> {
    webhooks
        .iter()
        .try_for_each(|webhook| Target::new(webhook).map(drop))
}

/// Why a POST to a webhook did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("webhook {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("cannot reach webhook {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl SendError {
    /// Worth another try soon: the webhook may answer next time.
    fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
            Self::Transport { .. } => true,
        }
    }
}

/// The `notifications` group feeding `feed`, unless the group is disabled.
pub fn spec(config: &Config, feed: &Feed) -> Result<Option<GroupSpec>, String> {
    let Some(group) = config.group(GROUP, StartPosition::End) else {
        return Ok(None);
    };
    let targets: Arc<[Target]> = config
        .webhooks
        .iter()
        .map(Target::new)
        .collect::<Result<Vec<_>, _>>()?
        .into();
    // rustls (on ring) for https webhooks; naming it here makes a build
    // without TLS fail to compile rather than fail at the first https POST.
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("vibesd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| format!("cannot make the HTTP client: {err}"))?;
    let feed = feed.clone();
    let approval = config.remote_approval.clone();
    let base: Arc<str> = config.public_url().into();
    let handler: HandlerFactory = Arc::new(move || {
        Box::new(Notifier {
            approval: approval.clone(),
            base: base.clone(),
            feed: feed.clone(),
            http: http.clone(),
            targets: targets.clone(),
            delivered: None,
        })
    });
    Ok(Some(GroupSpec {
        config: group,
        handler,
    }))
}

/// The handler: one notification at a time, to every webhook that wants it.
struct Notifier {
    approval: crate::config::RemoteApproval,
    /// Where people reach the web UI, for links.
    base: Arc<str>,
    feed: Feed,
    http: reqwest::Client,
    targets: Arc<[Target]>,
    /// The offset being sent and the targets (by index) that already have
    /// it, so a retry of that event by the group skips them. Forgotten when
    /// the handler is restarted: then they may get it twice.
    delivered: Option<(u64, BTreeSet<usize>)>,
}

#[async_trait]
impl Handler for Notifier {
    async fn handle(&mut self, batch: &[Delivery]) -> Handled {
        for (offset, stored) in batch {
            let Some(mut notification) = Notification::of(*offset, stored) else {
                continue;
            };
            let page = decides(&self.approval, stored).then(|| format!("/permissions/{offset}"));
            notification.link.clone_from(&page);
            self.feed.push(notification.clone());
            notification.link = page.map(|page| format!("{}{page}", self.base));
            if self.delivered.as_ref().is_none_or(|(at, _)| at != offset) {
                self.delivered = Some((*offset, BTreeSet::new()));
            }
            for (index, target) in self.targets.iter().enumerate() {
                let done = self
                    .delivered
                    .as_ref()
                    .is_some_and(|(_, done)| done.contains(&index));
                if done || !target.wants(notification.kind) {
                    continue;
                }
                if let Err(err) = send(&self.http, target, &notification).await {
                    tracing::warn!(offset, error = %vibes_core::ErrorChain(&err), "notification not delivered");
                    return Handled::Failed {
                        offset: *offset,
                        error: vibes_core::error_chain(&err),
                    };
                }
                if let Some((_, done)) = &mut self.delivered {
                    done.insert(index);
                }
            }
        }
        Handled::All
    }
}

/// POSTs `notification` to `target`, retrying transient failures.
async fn send(
    http: &reqwest::Client,
    target: &Target,
    notification: &Notification,
) -> Result<(), SendError> {
    (|| post(http, target, notification))
        .retry(backoff())
        .when(SendError::is_transient)
        .notify(|err, delay| {
            tracing::debug!(error = %vibes_core::ErrorChain(&err), ?delay, "webhook failed; trying again");
        })
        .await
}

async fn post(
    http: &reqwest::Client,
    target: &Target,
    notification: &Notification,
) -> Result<(), SendError> {
    let request = http.post(&target.url);
    let request = match target.format {
        Format::Json => request.json(notification),
        Format::Text => request
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("Title", header_text(&notification.title))
            .body(notification.message.clone()),
    };
    let request = match (&notification.link, target.format) {
        (Some(link), Format::Text) => request.header("Click", header_text(link)),
        _ => request,
    };
    let response = request
        .send()
        .await
        .map_err(|source| SendError::Transport {
            url: target.url.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(SendError::Status {
            url: target.url.clone(),
            status,
        })
    }
}

/// `text` as a header value: control characters (a newline in a tool name)
/// would make it invalid, so they become spaces; UTF-8 passes as it is.
fn header_text(text: &str) -> reqwest::header::HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    reqwest::header::HeaderValue::from_bytes(clean.as_bytes())
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("vibesd"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibes_core::HookPayload;

    fn stored(event: VibesEvent) -> StoredEvent {
        StoredEvent::new(event)
    }

    #[test]
    fn only_the_three_kinds_make_notifications() {
        let permission = stored(VibesEvent::Claude {
            session_id: "s".into(),
            event: ClaudeEvent::PermissionRequest {
                id: "p1".into(),
                tool: "Bash".into(),
                description: "rm -rf target".into(),
            },
        });
        let note = Notification::of(7, &permission).unwrap();
        assert_eq!(note.kind, Kind::PermissionRequest);
        assert_eq!(note.title, "Permission needed: Bash");
        assert_eq!(note.message, "rm -rf target");
        assert_eq!(note.offset, 7);

        let hook = |name: &str| {
            stored(VibesEvent::Hook {
                session_id: "s".into(),
                event: HookPayload {
                    hook_event_name: name.into(),
                    message: Some("Claude needs you".into()),
                    ..HookPayload::default()
                },
            })
        };
        let note = Notification::of(1, &hook("Notification")).unwrap();
        assert_eq!(note.kind, Kind::Notification);
        assert_eq!(note.message, "Claude needs you");
        assert!(Notification::of(1, &hook("PreToolUse")).is_none());

        let state = |state: &str| {
            stored(VibesEvent::SessionStateChanged {
                session_id: "s".into(),
                state: state.into(),
            })
        };
        let note = Notification::of(2, &state("waiting_for_input")).unwrap();
        assert_eq!(note.kind, Kind::WaitingForInput);
        assert!(Notification::of(2, &state("processing")).is_none());
    }

    #[test]
    fn unknown_kinds_are_named() {
        let webhook = Webhook {
            url: "http://localhost/".into(),
            kinds: vec!["permission_request".into(), "lunch".into()],
            format: "json".into(),
        };
        let err = check(&[webhook]).unwrap_err();
        assert!(err.contains("lunch"), "{err}");
    }

    #[test]
    fn only_connection_errors_5xx_and_429_are_transient() {
        let status = |code: u16| SendError::Status {
            url: String::new(),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
        };
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(404).is_transient());
    }

    #[test]
    fn control_characters_never_break_the_title_header() {
        assert_eq!(header_text("a\nb"), "a b");
        assert_eq!(header_text("café").as_bytes(), "café".as_bytes());
    }
}
