//! The parts of an event that carry signals, read without any session
//! state: phrases in a prompt, an apology in a finished assistant message,
//! the shape of a failed tool call, a prompt that rejects the last action.

use std::sync::LazyLock;

use regex::{Regex, RegexSet, RegexSetBuilder};
use serde_json::Value;

use crate::canonical::excerpt;

fn set(patterns: &[&str]) -> RegexSet {
    RegexSetBuilder::new(patterns)
        .case_insensitive(true)
        .build()
        .unwrap_or_else(|err| panic!("built-in regex set: {err}"))
}

/// A prompt that rejects or undoes what was just done. "no" and "stop"
/// count only as the prompt's first word: "no idea why" in the middle of a
/// sentence rejects nothing.
static CORRECTION: LazyLock<RegexSet> = LazyLock::new(|| {
    set(&[
        r"^\W*(no|nope|stop)\b",
        r"\bundo (that|this|it|the)\b",
        r"\brevert\b",
        r"\broll ?back\b",
        r"\bput it back\b",
        r"\bthat('s| is) (wrong|not right|incorrect|not what)\b",
        r"\b(don't|do not) do that\b",
    ])
});

/// The ways an assistant message owns up to a mistake.
static APOLOGY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\bi apologi[sz]e\b|\byou('re| are) (absolutely |totally |completely )?right,? i\b|\bmy (apologies|mistake)\b|\bsorry (about|for) (that|the confusion)\b",
    )
    .unwrap_or_else(|err| panic!("built-in regex: {err}"))
});

/// The correction pattern a prompt matches, if any.
pub(crate) fn correction(prompt: &str) -> Option<&'static str> {
    let index = CORRECTION.matches(prompt).into_iter().next()?;
    // The set's patterns live as long as the static.
    CORRECTION.patterns().get(index).map(String::as_str)
}

/// The apology in a finished assistant message, from its first word on.
pub(crate) fn apology(text: &str) -> Option<String> {
    let found = APOLOGY.find(text)?;
    Some(excerpt(&text[found.start()..]))
}

/// How a tool call failed, read from a `PostToolUse` `tool_response`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// `is_error`, `error`, `interrupted`, `exit_code 2`, `stderr`.
    pub(crate) reason: String,
    pub(crate) confidence: f64,
    pub(crate) excerpt: Option<String>,
}

/// The fields of a tool response that hold its output, joined.
pub(crate) fn output_text(response: &Value) -> String {
    match response {
        Value::String(text) => text.clone(),
        Value::Object(map) => ["stdout", "stderr", "output"]
            .iter()
            .filter_map(|key| map.get(*key).and_then(Value::as_str))
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The line of `text` most worth showing: the first that mentions an
/// error, else the first non-blank one.
fn telling_line(text: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.clone().next()?;
    let line = lines
        .find(|line| line.to_ascii_lowercase().contains("error"))
        .unwrap_or(first);
    Some(excerpt(line))
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => telling_line(text),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
        other => Some(excerpt(&other.to_string())),
    }
}

fn non_zero_exit(map: &serde_json::Map<String, Value>) -> Option<i64> {
    ["exit_code", "exitCode", "returncode"]
        .iter()
        .filter_map(|key| map.get(*key))
        .find_map(|code| match code {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|x| x as i64)),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        })
        .filter(|code| *code != 0)
}

/// Whether a `PostToolUse` response says the call failed, and how.
/// `passed` says the output holds a passing build or test summary: then
/// text on a Bash command's stderr alone is the toolchain's progress output
/// (cargo writes `Compiling` and `Running` there), not a failure.
pub(crate) fn tool_failure(tool: &str, response: &Value, passed: bool) -> Option<Failure> {
    let Value::Object(map) = response else {
        return None;
    };
    let failure = |reason: String, confidence, excerpt| {
        Some(Failure {
            reason,
            confidence,
            excerpt,
        })
    };
    let flag = |key: &str| map.get(key).and_then(Value::as_bool) == Some(true);
    let stderr = map.get("stderr").and_then(text_of);
    if flag("is_error") || flag("isError") {
        let text = ["error", "content", "output", "stderr"]
            .iter()
            .find_map(|key| map.get(*key).and_then(text_of));
        return failure("is_error".into(), 0.9, text);
    }
    if let Some(error) = map.get("error").filter(|error| match error {
        Value::Null | Value::Bool(false) => false,
        Value::String(text) => !text.trim().is_empty(),
        _ => true,
    }) {
        return failure("error".into(), 0.9, text_of(error));
    }
    if flag("interrupted") {
        return failure("interrupted".into(), 0.6, stderr);
    }
    if let Some(code) = non_zero_exit(map) {
        let text = stderr.or_else(|| map.get("stdout").and_then(text_of));
        return failure(format!("exit_code {code}"), 0.9, text);
    }
    if tool == "Bash" && !passed && stderr.is_some() {
        return failure("stderr".into(), 0.5, stderr);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(tool: &str, response: Value) -> Option<String> {
        tool_failure(tool, &response, false).map(|failure| failure.reason)
    }

    #[test]
    fn each_tool_failure_shape_is_a_failure() {
        assert_eq!(
            reason("Edit", json!({"is_error": true, "content": "no match"})).as_deref(),
            Some("is_error")
        );
        assert_eq!(
            reason("Read", json!({"isError": true})).as_deref(),
            Some("is_error")
        );
        assert_eq!(
            reason("Write", json!({"error": "permission denied"})).as_deref(),
            Some("error")
        );
        assert_eq!(
            reason("Task", json!({"error": {"code": 5}})).as_deref(),
            Some("error")
        );
        assert_eq!(
            reason("Bash", json!({"stdout": "", "interrupted": true})).as_deref(),
            Some("interrupted")
        );
        assert_eq!(
            reason("Bash", json!({"exit_code": 2})).as_deref(),
            Some("exit_code 2")
        );
        assert_eq!(
            reason("Bash", json!({"exitCode": 1})).as_deref(),
            Some("exit_code 1")
        );
        assert_eq!(
            reason("Bash", json!({"returncode": 127})).as_deref(),
            Some("exit_code 127")
        );
        assert_eq!(
            reason(
                "Bash",
                json!({"stdout": "", "stderr": "ls: cannot access 'x'"})
            )
            .as_deref(),
            Some("stderr")
        );
    }

    #[test]
    fn successes_are_no_failure() {
        for response in [
            json!({"stdout": "ok", "stderr": "", "interrupted": false}),
            json!({"exit_code": 0, "error": null}),
            json!({"error": ""}),
            json!("plain text"),
            json!({"is_error": false}),
        ] {
            assert_eq!(reason("Bash", response.clone()), None, "{response}");
        }
        // stderr is a failure for Bash only.
        assert_eq!(reason("Grep", json!({"stderr": "warning"})), None);
        // cargo's progress on stderr beside a passing summary is no failure.
        let progress = json!({"stdout": "test result: ok.", "stderr": "   Compiling x"});
        assert_eq!(tool_failure("Bash", &progress, true), None);
    }

    #[test]
    fn the_excerpt_is_the_line_that_names_the_error() {
        let failure = tool_failure(
            "Bash",
            &json!({"exit_code": 101, "stderr": "   Compiling x\nerror[E0425]: cannot find value\n"}),
            false,
        );
        assert_eq!(
            failure.and_then(|failure| failure.excerpt).as_deref(),
            Some("error[E0425]: cannot find value")
        );
    }

    #[test]
    fn corrections_reject_the_last_action() {
        for prompt in [
            "no, that's not it",
            "Stop.",
            "please undo that",
            "revert the last change",
            "that's wrong",
            "don't do that",
            "roll back",
        ] {
            assert!(correction(prompt).is_some(), "{prompt}");
        }
        for prompt in ["I have no idea", "add a stop button", "looks fine"] {
            assert!(correction(prompt).is_none(), "{prompt}");
        }
    }

    #[test]
    fn apologies_are_found_in_finished_messages() {
        assert!(apology("I apologize for the confusion.").is_some());
        assert!(apology("You're right, I missed the second case.").is_some());
        assert!(apology("Here is the change you asked for.").is_none());
    }
}
