//! The note groove gives a session whose breaker is open: what has been
//! failing, in a sentence, from the negative signals kept in the session's
//! state. No model is asked; the note only restates what the log shows.

use std::collections::BTreeMap;

use crate::canonical::truncate;
use crate::record::SignalKind;
use crate::session::SessionState;

/// The longest note, in bytes: it is added to the model's context.
const NOTE_BYTES: usize = 600;

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// The note for `state`'s recent trouble.
pub(crate) fn note(state: &SessionState) -> String {
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tests: Vec<&str> = Vec::new();
    let mut compiler: Vec<&str> = Vec::new();
    let (mut corrections, mut retries, mut phrases) = (0, 0, 0);
    for trouble in &state.trouble {
        match trouble.kind {
            SignalKind::ToolFailure => {
                *failures
                    .entry(trouble.tool.as_deref().unwrap_or("a tool"))
                    .or_default() += 1;
            }
            SignalKind::TestFailed if !tests.contains(&trouble.detail.as_str()) => {
                tests.push(&trouble.detail);
            }
            SignalKind::BuildFailed if !compiler.contains(&trouble.detail.as_str()) => {
                compiler.push(&trouble.detail);
            }
            SignalKind::Correction => corrections += 1,
            SignalKind::Retry => retries += 1,
            SignalKind::NegativePhrase => phrases += 1,
            _ => {}
        }
    }
    let mut parts = Vec::new();
    let mut by_count: Vec<(&str, usize)> = failures.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let tools: Vec<String> = by_count
        .iter()
        .take(4)
        .map(|(tool, n)| format!("{tool} failed {}", times(*n)))
        .collect();
    if !tools.is_empty() {
        parts.push(tools.join(", "));
    }
    if !tests.is_empty() {
        parts.push(format!(
            "failing tests ({})",
            tests[..tests.len().min(2)].join("; ")
        ));
    }
    if !compiler.is_empty() {
        parts.push(format!("compiler errors ({})", compiler[0]));
    }
    if retries > 0 {
        parts.push(format!(
            "a failed call was retried unchanged {}",
            times(retries)
        ));
    }
    if corrections > 0 {
        parts.push(format!(
            "the user rejected the last action {}",
            times(corrections)
        ));
    }
    if phrases > 0 {
        parts.push(format!(
            "the user's prompts sounded frustrated {}",
            times(phrases)
        ));
    }
    if parts.is_empty() {
        parts.push("repeated failures".into());
    }
    let note = format!(
        "vibesd groove: this session keeps failing: {}. Re-read the errors and rethink the \
         approach before trying the same thing again.",
        parts.join("; ")
    );
    truncate(&note, NOTE_BYTES).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::TroubleNote;

    fn trouble(kind: SignalKind, tool: Option<&str>, detail: &str) -> TroubleNote {
        TroubleNote {
            kind,
            tool: tool.map(str::to_owned),
            detail: detail.into(),
        }
    }

    #[test]
    fn the_note_names_failing_tools_tests_and_corrections() {
        let mut state = SessionState::default();
        for note in [
            trouble(SignalKind::ToolFailure, Some("Bash"), "exit_code 1"),
            trouble(SignalKind::ToolFailure, Some("Edit"), "is_error"),
            trouble(SignalKind::ToolFailure, Some("Bash"), "exit_code 101"),
            trouble(
                SignalKind::TestFailed,
                Some("Bash"),
                "cargo: 2 failed, 5 passed",
            ),
            trouble(
                SignalKind::TestFailed,
                Some("Bash"),
                "cargo: 2 failed, 5 passed",
            ),
            trouble(SignalKind::Correction, None, "revert"),
        ] {
            state.push_trouble(note);
        }
        assert_eq!(
            note(&state),
            "vibesd groove: this session keeps failing: Bash failed twice, Edit failed once; \
             failing tests (cargo: 2 failed, 5 passed); the user rejected the last action once. \
             Re-read the errors and rethink the approach before trying the same thing again."
        );
    }
}
