//! Build and test outcomes read from a shell command's output: cargo,
//! npm/jest (and tsc), pytest (and Python syntax errors) and go test, by
//! their summary and error lines.
//!
//! A run that reports any failure is a failing run, even when other suites
//! of it passed (a workspace's `cargo test` prints one `test result` per
//! test binary); compiler errors are reported beside it.

use std::sync::LazyLock;

use regex::Regex;

use crate::canonical::excerpt;
use crate::record::SignalKind;

/// One outcome found in an output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) kind: SignalKind,
    /// e.g. `cargo: 2 failed, 10 passed`.
    pub(crate) detail: String,
    /// The line it was read from.
    pub(crate) excerpt: String,
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|err| panic!("built-in regex {pattern}: {err}"))
}

static CARGO_RESULT: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed"));
static CARGO_ERROR: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^(error\[E\d+\].*|error: could not compile.*)$"));
static JEST_TESTS: LazyLock<Regex> = LazyLock::new(|| regex(r"(?m)^Tests:\s+(.*\btotal)\s*$"));
static PYTEST_SUMMARY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?m)^=*\s*((?:\d+ (?:failed|passed|errors?|skipped|xfailed|xpassed|warnings?|deselected)(?:, )?)+) in [\d.]+s\b.*$",
    )
});
static GO_FAIL: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^(--- FAIL: \S+.*|FAIL(?:\s+\S+.*)?)\s*$"));
static GO_OK: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^ok\s+\S+\s+(?:[\d.]+s|\(cached\)).*$"));
static GO_BUILD_FAILED: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^FAIL\s+\S+\s+\[(?:build|setup) failed\]\s*$"));
static TSC_ERROR: LazyLock<Regex> = LazyLock::new(|| regex(r"(?m)^.*\berror TS\d+: .*$"));
static PYTHON_SYNTAX: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^\W*(?:E\s+)?(?:SyntaxError|IndentationError|TabError): .*$"));
static COUNT: LazyLock<Regex> = LazyLock::new(|| regex(r"(\d+) (failed|passed|errors?)\b"));

/// The counts of failed and passed (and errored) tests in a summary.
fn counts(summary: &str) -> (u64, u64) {
    let (mut failed, mut passed) = (0, 0);
    for found in COUNT.captures_iter(summary) {
        let n: u64 = found[1].parse().unwrap_or(0);
        match &found[2] {
            "passed" => passed += n,
            _ => failed += n,
        }
    }
    (failed, passed)
}

fn run(tool: &str, failed: u64, passed: u64, line: &str) -> Outcome {
    let (kind, detail) = if failed > 0 {
        (
            SignalKind::TestFailed,
            format!("{tool}: {failed} failed, {passed} passed"),
        )
    } else {
        (SignalKind::TestPassed, format!("{tool}: {passed} passed"))
    };
    Outcome {
        kind,
        detail,
        excerpt: excerpt(line),
    }
}

/// Every outcome in `output`: at most one test run (failing wins) and one
/// build failure.
pub(crate) fn outcomes(output: &str) -> Vec<Outcome> {
    let mut found = Vec::new();
    let mut runs = Vec::new();

    // cargo
    let (mut failed, mut passed, mut failing_line, mut any) = (0, 0, None, None);
    for result in CARGO_RESULT.captures_iter(output) {
        let line = result.get(0).map_or("", |m| m.as_str());
        passed += result[2].parse::<u64>().unwrap_or(0);
        failed += result[3].parse::<u64>().unwrap_or(0);
        if &result[1] == "FAILED" && failing_line.is_none() {
            failing_line = Some(line);
        }
        any.get_or_insert(line);
    }
    if let Some(line) = failing_line.or(any) {
        runs.push(run("cargo", failed, passed, line));
    }
    // jest
    if let Some(tests) = JEST_TESTS.captures(output) {
        let (failed, passed) = counts(&tests[1]);
        runs.push(run(
            "jest",
            failed,
            passed,
            tests.get(0).map_or("", |m| m.as_str()),
        ));
    }
    // pytest
    if let Some(summary) = PYTEST_SUMMARY.captures(output) {
        let (failed, passed) = counts(&summary[1]);
        let line = summary.get(0).map_or("", |m| m.as_str()).trim_matches('=');
        runs.push(run("pytest", failed, passed, line.trim()));
    }
    // go test
    let go_failures: Vec<&str> = GO_FAIL
        .find_iter(output)
        .map(|m| m.as_str())
        .filter(|line| !GO_BUILD_FAILED.is_match(line))
        .collect();
    let go_passes = GO_OK.find_iter(output).count() as u64;
    if !go_failures.is_empty() {
        let tests = go_failures
            .iter()
            .filter(|line| line.starts_with("--- FAIL"))
            .count() as u64;
        // A bare `FAIL pkg` without `--- FAIL` lines still is a failed run.
        runs.push(run("go", tests.max(1), go_passes, go_failures[0]));
    } else if go_passes > 0 {
        let line = GO_OK.find(output).map_or("", |m| m.as_str());
        runs.push(run("go", 0, go_passes, line));
    }

    // One run outcome: the failing one if any tool reported failures.
    if let Some(failing) = runs.iter().find(|run| run.kind == SignalKind::TestFailed) {
        found.push(failing.clone());
    } else if let Some(passing) = runs.into_iter().next() {
        found.push(passing);
    }

    // Compiler errors: the first toolchain that reports any.
    let compilers: [(&str, &Regex); 3] = [
        ("cargo", &CARGO_ERROR),
        ("tsc", &TSC_ERROR),
        ("python", &PYTHON_SYNTAX),
    ];
    if let Some((tool, lines)) = compilers.iter().find_map(|(tool, errors)| {
        let lines: Vec<&str> = errors.find_iter(output).map(|m| m.as_str()).collect();
        (!lines.is_empty()).then_some((*tool, lines))
    }) {
        found.push(Outcome {
            kind: SignalKind::BuildFailed,
            detail: format!("{tool}: {} compiler error line(s)", lines.len()),
            excerpt: excerpt(lines[0]),
        });
    } else if let Some(build) = GO_BUILD_FAILED.find(output) {
        found.push(Outcome {
            kind: SignalKind::BuildFailed,
            detail: "go: build failed".into(),
            excerpt: excerpt(build.as_str()),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(output: &str) -> Vec<(SignalKind, String)> {
        outcomes(output)
            .into_iter()
            .map(|outcome| (outcome.kind, outcome.detail))
            .collect()
    }

    #[test]
    fn cargo_failing_passing_and_build_failures() {
        let failing = "running 3 tests\n\
            test a ... ok\n\
            test b ... FAILED\n\
            test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(
            kinds(failing),
            [(SignalKind::TestFailed, "cargo: 1 failed, 2 passed".into())]
        );
        let passing = "test result: ok. 5 passed; 0 failed; 0 ignored\n\
            test result: ok. 2 passed; 0 failed; 0 ignored\n";
        assert_eq!(
            kinds(passing),
            [(SignalKind::TestPassed, "cargo: 7 passed".into())]
        );
        let mixed =
            "test result: ok. 5 passed; 0 failed;\ntest result: FAILED. 0 passed; 2 failed;\n";
        assert_eq!(kinds(mixed)[0].0, SignalKind::TestFailed);
        let broken = "   Compiling x v0.1.0\n\
            error[E0308]: mismatched types\n --> src/lib.rs:3:5\n\
            error: could not compile `x` (lib) due to 1 previous error\n";
        let found = outcomes(broken);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, SignalKind::BuildFailed);
        assert_eq!(found[0].excerpt, "error[E0308]: mismatched types");
        assert_eq!(
            kinds("error: could not compile `x`")[0].0,
            SignalKind::BuildFailed
        );
    }

    #[test]
    fn jest_failing_and_passing() {
        let failing = "Test Suites: 1 failed, 1 total\nTests:       1 failed, 2 passed, 3 total\n";
        assert_eq!(
            kinds(failing),
            [(SignalKind::TestFailed, "jest: 1 failed, 2 passed".into())]
        );
        let passing = "Tests:       4 passed, 4 total\nTime: 1.2 s\n";
        assert_eq!(
            kinds(passing),
            [(SignalKind::TestPassed, "jest: 4 passed".into())]
        );
    }

    #[test]
    fn npm_typescript_errors_are_build_failures() {
        let broken = "> tsc\nsrc/index.ts(3,7): error TS2322: Type 'string' is not assignable\n";
        let found = outcomes(broken);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, SignalKind::BuildFailed);
        assert_eq!(found[0].detail, "tsc: 1 compiler error line(s)");
    }

    #[test]
    fn python_syntax_errors_are_build_failures() {
        let broken = "ERROR collecting tests/test_x.py\nE     SyntaxError: invalid syntax\n\
            === 1 error in 0.05s ===\n";
        assert_eq!(
            kinds(broken),
            [
                (SignalKind::TestFailed, "pytest: 1 failed, 0 passed".into()),
                (
                    SignalKind::BuildFailed,
                    "python: 1 compiler error line(s)".into()
                )
            ]
        );
    }

    #[test]
    fn pytest_failing_and_passing_summaries() {
        let failing = "FAILED tests/test_x.py::test_y - assert 1 == 2\n\
            ========================= 2 failed, 3 passed in 0.12s =========================\n";
        assert_eq!(
            kinds(failing),
            [(SignalKind::TestFailed, "pytest: 2 failed, 3 passed".into())]
        );
        assert_eq!(outcomes(failing)[0].excerpt, "2 failed, 3 passed in 0.12s");
        let quiet = "....\n4 passed in 0.05s\n";
        assert_eq!(
            kinds(quiet),
            [(SignalKind::TestPassed, "pytest: 4 passed".into())]
        );
        let errored = "=== 1 error in 0.30s ===\n";
        assert_eq!(kinds(errored)[0].0, SignalKind::TestFailed);
    }

    #[test]
    fn go_test_failing_passing_and_build_failures() {
        let failing = "--- FAIL: TestParse (0.00s)\n    parse_test.go:12: bad\nFAIL\n\
            FAIL\texample.com/p\t0.003s\nok  \texample.com/q\t0.002s\n";
        assert_eq!(
            kinds(failing),
            [(SignalKind::TestFailed, "go: 1 failed, 1 passed".into())]
        );
        let passing = "ok  \texample.com/p\t0.010s\nok  \texample.com/q\t(cached)\n";
        assert_eq!(
            kinds(passing),
            [(SignalKind::TestPassed, "go: 2 passed".into())]
        );
        let build =
            "# example.com/p\n./p.go:3:2: undefined: x\nFAIL\texample.com/p [build failed]\n";
        assert_eq!(
            kinds(build),
            [(SignalKind::BuildFailed, "go: build failed".into())]
        );
    }

    #[test]
    fn ordinary_output_is_no_outcome() {
        assert!(outcomes("total 0\ndrwxr-xr-x 2 me me 40 .\nok then\n").is_empty());
        assert!(outcomes("").is_empty());
    }
}
