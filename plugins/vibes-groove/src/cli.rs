//! `vibesd groove [SESSION]`: every session as a table, or one session's
//! timeline, one line per record, from the plugin's routes.

use std::fmt::Write as _;

use serde_json::Value;
use vibes_plugin::PluginCli;

const USAGE: &str = "usage: vibesd groove [SESSION]\n  \
    without SESSION: every session groove assessed, as a table\n  \
    with SESSION: that session's timeline (signals, breaker transitions, checkpoints, \
    interventions)";

/// The subcommand as vibesd links it.
pub(crate) fn cli() -> PluginCli {
    PluginCli {
        about: "Show groove's assessment: every session, or one session's timeline",
        request,
        render,
    }
}

/// Characters a path segment keeps as they are (RFC 3986 unreserved).
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `text` percent-encoded as one path segment.
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if unreserved(byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The route to GET for `args`.
pub(crate) fn request(args: &[String]) -> Result<String, String> {
    match args {
        [] => Ok("/sessions".into()),
        [flag] if flag == "-h" || flag == "--help" => Err(USAGE.into()),
        [session] if session.is_empty() => Err(format!("a session id is never empty\n{USAGE}")),
        [session] => Ok(format!("/sessions/{}", encode_segment(session))),
        _ => Err(format!("too many arguments\n{USAGE}")),
    }
}

fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(x) if value.is_f64() => format!("{x:.2}"),
        _ => text(value),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// What to print for `args`, given the route's answer.
pub(crate) fn render(args: &[String], answer: &Value) -> String {
    if let Some(error) = answer.get("error") {
        let detail = answer.get("detail").map(text).unwrap_or_default();
        return format!("error: {} ({detail})\n", text(error));
    }
    if args.is_empty() {
        render_sessions(answer)
    } else {
        render_timeline(answer)
    }
}

fn render_sessions(answer: &Value) -> String {
    let sessions = answer
        .get("sessions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if sessions.is_empty() {
        return "no sessions assessed yet\n".into();
    }
    let header = [
        "SESSION",
        "BREAKER",
        "FRUSTRATION",
        "SUCCESS",
        "INTERVENTIONS",
        "CHECKPOINTS",
        "LAST OFFSET",
    ];
    let rows: Vec<[String; 7]> = sessions
        .iter()
        .map(|session| {
            [
                text(&session["id"]),
                text(&session["breaker"]),
                number(&session["frustration"]),
                number(&session["success"]),
                text(&session["interventions"]),
                text(&session["checkpoints"]),
                text(&session["last_offset"]),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            // Names left, figures right.
            if i < 2 {
                let _ = write!(text, "{cell:<width$}");
            } else {
                let _ = write!(text, "{cell:>width$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn render_timeline(answer: &Value) -> String {
    let session = &answer["session"];
    let mut out = format!(
        "session {}: breaker {}, frustration {}, success {}, {} intervention(s), {} checkpoint(s)\n",
        text(&session["id"]),
        text(&session["breaker"]),
        number(&session["frustration"]),
        number(&session["success"]),
        text(&session["interventions"]),
        text(&session["checkpoints"]),
    );
    let records = answer
        .get("records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if records.is_empty() {
        out.push_str("no records\n");
    }
    for record in records {
        let offset = text(&record["offset"]);
        let kind = text(&record["type"]);
        let _ = writeln!(out, "{offset:>8}  {kind:<12}  {}", describe(record));
    }
    if let Some(next) = answer.get("next_after").and_then(Value::as_u64) {
        let _ = writeln!(
            out,
            "… more after offset {next}: GET /api/plugins/groove/sessions/{}?after={next}",
            encode_segment(&text(&session["id"]))
        );
    }
    out
}

/// One record as a line.
fn describe(record: &Value) -> String {
    match record["type"].as_str() {
        Some("signal") => {
            let tool = record
                .get("tool")
                .and_then(Value::as_str)
                .map(|tool| format!(" {tool}"))
                .unwrap_or_default();
            let excerpt = record
                .get("excerpt")
                .and_then(Value::as_str)
                .map(|text| format!(" \"{text}\""))
                .unwrap_or_default();
            format!(
                "{}{tool}: {} ({}){excerpt}",
                text(&record["kind"]),
                text(&record["detail"]),
                number(&record["confidence"]),
            )
        }
        Some("transition") => format!(
            "{} -> {}: {}",
            text(&record["from"]),
            text(&record["to"]),
            text(&record["reason"])
        ),
        Some("checkpoint") => {
            let signals = record["signals"]
                .as_object()
                .map(|signals| {
                    signals
                        .iter()
                        .map(|(kind, n)| format!("{kind} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!(
                "{}: offsets {}..{}, {} events, frustration {}, success {}, breaker {}; {}",
                text(&record["trigger"]),
                text(&record["from_offset"]),
                text(&record["to_offset"]),
                text(&record["events"]),
                number(&record["frustration"]),
                number(&record["success"]),
                text(&record["breaker"]),
                if signals.is_empty() {
                    "no signals".to_owned()
                } else {
                    signals
                }
            )
        }
        Some("intervention") => format!(
            "for the open at {}: {}",
            text(&record["open_offset"]),
            text(&record["note"])
        ),
        _ => record.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn the_request_is_the_sessions_or_one_encoded_session() {
        assert_eq!(request(&[]).as_deref(), Ok("/sessions"));
        assert_eq!(
            request(&args(&["a b/c?d"])).as_deref(),
            Ok("/sessions/a%20b%2Fc%3Fd")
        );
        assert_eq!(request(&args(&["é"])).as_deref(), Ok("/sessions/%C3%A9"));
        assert!(request(&args(&["a", "b"])).unwrap_err().contains("usage:"));
        assert!(request(&args(&[""])).is_err());
    }

    #[test]
    fn sessions_render_as_an_aligned_table() {
        let answer = json!({"sessions": [
            {"id": "s1", "breaker": "open", "frustration": 0.5, "success": 0.0,
             "interventions": 1, "checkpoints": 2, "last_offset": 17},
            {"id": "session-two", "breaker": "closed", "frustration": 0.125, "success": 0.75,
             "interventions": 0, "checkpoints": 0, "last_offset": 1234},
        ], "applied_offset": 1234});
        let out = render(&[], &answer);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SESSION      BREAKER  FRUSTRATION"));
        assert!(lines[1].starts_with("s1           open            0.50"));
        assert!(lines[2].ends_with("1234"));
        assert_eq!(
            render(&[], &json!({"sessions": []})),
            "no sessions assessed yet\n"
        );
    }

    #[test]
    fn a_timeline_renders_one_line_per_record() {
        let answer = json!({
            "session": {"id": "s1", "breaker": "open", "frustration": 0.5, "success": 0.1,
                        "interventions": 0, "checkpoints": 1},
            "records": [
                {"type": "signal", "offset": 3, "kind": "tool_failure", "tool": "Bash",
                 "detail": "exit_code 1", "confidence": 0.9, "excerpt": "boom"},
                {"type": "transition", "offset": 3, "from": "closed", "to": "open",
                 "reason": "failure score 2.70 reached the threshold 2.50"},
                {"type": "checkpoint", "offset": 3, "trigger": "repeated_failures",
                 "from_offset": 0, "to_offset": 3, "events": 4, "frustration": 0.5,
                 "success": 0.1, "breaker": "open", "signals": {"tool_failure": 3}},
                {"type": "intervention", "offset": 9, "open_offset": 3, "note": "n"},
            ],
            "next_after": 9,
        });
        let out = render(&args(&["s1"]), &answer);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{out}");
        assert_eq!(
            lines[1],
            "       3  signal        tool_failure Bash: exit_code 1 (0.90) \"boom\""
        );
        assert!(lines[2].contains("closed -> open"));
        assert!(lines[3].contains("repeated_failures: offsets 0..3"));
        assert!(lines[4].contains("for the open at 3: n"));
        assert!(lines[5].contains("after=9"));
    }

    #[test]
    fn an_error_answer_renders_its_detail() {
        let answer = json!({"error": "unknown_session", "detail": "no such session"});
        assert_eq!(
            render(&args(&["x"]), &answer),
            "error: unknown_session (no such session)\n"
        );
    }
}
