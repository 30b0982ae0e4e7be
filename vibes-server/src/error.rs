//! The one error type of the API: `4xx {"error","detail"}` a person can act
//! on; `5xx` generic to the client and logged once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vibes_actors::WriterError;
use vibes_actors::supervisor::ControlError;
use vibes_iggy::LogError;

/// An API error: a status, a stable machine-readable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable code, e.g. `malformed_json`, `unknown_group`.
    pub error: &'static str,
    pub detail: String,
    /// For 503 busy: when to try again, in seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(error: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    pub fn not_found(error: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, detail)
    }

    /// A failure of vibesd itself: logged here with its causes, generic to
    /// the client.
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!("{context}: {}", vibes_core::ErrorChain(err));
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "vibesd could not do this; its log says why",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "detail": self.detail });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if matches!(self.error, "body_too_large" | "body_timeout") {
            // The rest of the body was never read: the connection cannot
            // carry another request, and the client should not try.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<LogError> for ApiError {
    fn from(err: LogError) -> Self {
        match err {
            LogError::OffsetOutOfRange { .. } => {
                Self::bad_request("offset_out_of_range", err.to_string())
            }
            LogError::EventTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                err.to_string(),
            ),
            LogError::EventTooDeep { .. } => Self::bad_request("event_too_deep", err.to_string()),
            LogError::InvalidGroupName { .. } => {
                Self::bad_request("invalid_group_name", err.to_string())
            }
            LogError::Unavailable { .. } | LogError::Storage { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log_unavailable",
                format!("{}; nothing was written", vibes_core::ErrorChain(&err)),
            ),
            other => Self::internal("log", &other),
        }
    }
}

impl From<WriterError> for ApiError {
    fn from(err: WriterError) -> Self {
        match err {
            WriterError::Busy { retry_after, .. } => Self {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("{err}; nothing was written, try again shortly"),
                )
            },
            WriterError::BatchOverBound { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                err.to_string(),
            ),
            WriterError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "vibesd is shutting down; nothing was written",
            ),
            WriterError::Restarting => Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "writer_restarting",
                    format!("{err}; try again shortly"),
                )
            },
            WriterError::Log(log) => match log.as_ref() {
                LogError::EventTooLarge { .. }
                | LogError::EventTooDeep { .. }
                | LogError::Unavailable { .. }
                | LogError::Storage { .. }
                | LogError::OffsetOutOfRange { .. } => Self::from_log_ref(&log),
                _ => Self::internal("append", log.as_ref()),
            },
        }
    }
}

impl ApiError {
    fn from_log_ref(err: &LogError) -> Self {
        match err {
            LogError::EventTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                err.to_string(),
            ),
            LogError::EventTooDeep { .. } => Self::bad_request("event_too_deep", err.to_string()),
            LogError::OffsetOutOfRange { .. } => {
                Self::bad_request("offset_out_of_range", err.to_string())
            }
            _ => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log_unavailable",
                format!("{}; nothing was written", vibes_core::ErrorChain(err)),
            ),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        // The log's and the writer's own refusals keep their own answers.
        let err = match err {
            ControlError::Log(cause) => return cause.into(),
            ControlError::Writer(cause) => return cause.into(),
            other => other,
        };
        match &err {
            ControlError::UnknownGroup(_) => Self::not_found("unknown_group", err.to_string()),
            ControlError::NoSuchDeadLetter { .. } => {
                Self::not_found("unknown_dead_letter", err.to_string())
            }
            ControlError::AlreadyRegistered(_) => {
                Self::new(StatusCode::CONFLICT, "group_exists", err.to_string())
            }
            ControlError::NotRunning { .. } => {
                Self::new(StatusCode::CONFLICT, "group_not_running", err.to_string())
            }
            ControlError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                err.to_string(),
            ),
            ControlError::OffsetOutOfRange { .. } => {
                Self::bad_request("offset_out_of_range", err.to_string())
            }
            ControlError::ReplayFailed { .. } => {
                Self::new(StatusCode::CONFLICT, "replay_failed", err.to_string())
            }
            ControlError::Undecodable { .. } => {
                Self::new(StatusCode::CONFLICT, "undecodable_event", err.to_string())
            }
            ControlError::NoAnswer { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "group_busy",
                err.to_string(),
            ),
            ControlError::Log(_) | ControlError::Writer(_) => {
                unreachable!("answered above")
            }
        }
    }
}
