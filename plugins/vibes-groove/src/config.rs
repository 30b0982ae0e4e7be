//! `[plugins.groove]`: every key, its default and its range, checked when
//! vibesd loads its config so that a bad value stops start-up with a message
//! naming `plugins.groove.<key>`.
//!
//! The keys that shape the assessment (everything but `intervene`) are also
//! the store's fingerprint ([`GrooveConfig::fingerprint`]): a store derived
//! under other settings is rebuilt from the log rather than continued.

use regex::{RegexSet, RegexSetBuilder};
use serde_json::json;

use crate::canonical::canonical_json;

/// Phrases in a user prompt that say the session is going badly. Each is a
/// case-insensitive regex; `negative_patterns` adds to them.
pub const DEFAULT_NEGATIVE_PATTERNS: &[&str] = &[
    r"\bwtf\b",
    r"\b(still|again)\s+(broken|failing|wrong|not working)\b",
    r"\b(is|it's|its|still)\s+not\s+working\b",
    r"\b(doesn't|does not|didn't|did not|won't)\s+work\b",
    r"\bnot what i (asked|wanted|meant)\b",
    r"\bwhy (did|would|do) you\b",
    r"\byou (broke|ruined|deleted|removed)\b",
    r"\b(frustrat|annoy)\w*",
    r"\bi (already|just) (told|said|asked)\b",
    r"\bthat's (wrong|not right|incorrect)\b",
    r"\bstop (doing|changing|touching|adding)\b",
    r"\bugh+\b",
    r"\bseriously\s*\?",
    r"\buseless\b",
];

/// Phrases in a user prompt that say it is going well; `positive_patterns`
/// adds to them.
pub const DEFAULT_POSITIVE_PATTERNS: &[&str] = &[
    r"\b(thanks|thank you|thx|ty)\b",
    r"\b(perfect|excellent|awesome|great job|nice work|nice job|well done)\b",
    r"\b(works|working) now\b",
    r"\bthat (works|worked|did it|fixed it)\b",
    r"\blooks (good|great)\b",
    r"\blgtm\b",
];

/// The most patterns one list may hold, so that matching a prompt stays a
/// bounded amount of work.
const MAX_PATTERNS: usize = 256;

/// A week: the longest duration any key takes.
const MAX_SECS: i64 = 7 * 24 * 3600;

/// The checked `[plugins.groove]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct GrooveConfig {
    /// `intervene` (default false): answer `UserPromptSubmit` hooks with a
    /// note while the session's breaker is open.
    pub intervene: bool,
    /// `negative_patterns` (default none): more negative phrases.
    pub negative_patterns: Vec<String>,
    /// `positive_patterns` (default none): more positive phrases.
    pub positive_patterns: Vec<String>,
    /// `replace_default_patterns` (default false): the lists above replace
    /// the built-in phrases instead of extending them.
    pub replace_default_patterns: bool,
    /// `alpha` (default 0.2, in (0, 1]): the weight of the newest
    /// signal-bearing event in the frustration and success averages.
    pub alpha: f64,
    /// `breaker_threshold` (default 2.5, in (0, 1000]): the failure score at
    /// which a closed breaker opens.
    pub breaker_threshold: f64,
    /// `breaker_cooldown_secs` (default 300, 0 to a week): how long, in event
    /// time, an open breaker stays open before it half-opens.
    pub breaker_cooldown_secs: i64,
    /// `failure_half_life_secs` (default 600, 1 s to a week): the failure
    /// score halves every this long in event time.
    pub failure_half_life_secs: i64,
    /// `max_interventions` (default 3, 0 to 1000): notes per session at most.
    pub max_interventions: u32,
    /// `checkpoint_every_events` (default 50, 1 to 1,000,000): events since
    /// the last checkpoint before an interval checkpoint...
    pub checkpoint_every_events: u64,
    /// `checkpoint_interval_secs` (default 600, 0 to a week): ...and event
    /// time since it.
    pub checkpoint_interval_secs: i64,
    /// `checkpoint_frustration` (default 0.5, in (0, 1)): frustration rising
    /// to this makes a checkpoint.
    pub checkpoint_frustration: f64,
    /// `repeated_failures` (default 3, 2 to 100): this many tool failures...
    pub repeated_failures: usize,
    /// `repeated_failures_window` (default 10, `repeated_failures` to 1000):
    /// ...within this many session events make a checkpoint.
    pub repeated_failures_window: u64,
    /// `correction_window` (default 6, 1 to 100): a rejecting prompt within
    /// this many session events (streamed deltas not counted) after a tool
    /// use is a correction.
    pub correction_window: u64,
}

impl Default for GrooveConfig {
    fn default() -> Self {
        Self {
            intervene: false,
            negative_patterns: Vec::new(),
            positive_patterns: Vec::new(),
            replace_default_patterns: false,
            alpha: 0.2,
            breaker_threshold: 2.5,
            breaker_cooldown_secs: 300,
            failure_half_life_secs: 600,
            max_interventions: 3,
            checkpoint_every_events: 50,
            checkpoint_interval_secs: 600,
            checkpoint_frustration: 0.5,
            repeated_failures: 3,
            repeated_failures_window: 10,
            correction_window: 6,
        }
    }
}

/// Every key `[plugins.groove]` takes besides `enabled`, which vibesd reads.
pub const KEYS: &[&str] = &[
    "intervene",
    "negative_patterns",
    "positive_patterns",
    "replace_default_patterns",
    "alpha",
    "breaker_threshold",
    "breaker_cooldown_secs",
    "failure_half_life_secs",
    "max_interventions",
    "checkpoint_every_events",
    "checkpoint_interval_secs",
    "checkpoint_frustration",
    "repeated_failures",
    "repeated_failures_window",
    "correction_window",
];

/// A key of `[plugins.groove]` that is unknown or holds a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("plugins.groove.{key}: unknown key (groove takes: {known})", known = KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("plugins.groove.{key}: must be {expected}, got {got}")]
    Invalid {
        key: &'static str,
        expected: String,
        got: String,
    },
    #[error("plugins.groove.{key}: pattern {pattern:?} is not a valid regex: {message}")]
    BadPattern {
        key: &'static str,
        pattern: String,
        message: String,
    },
}

impl GrooveConfig {
    /// Checks `[plugins.groove]` (without `enabled`) and fills in defaults.
    pub fn from_table(section: &toml::Table) -> Result<Self, ConfigError> {
        // `enabled` is vibesd's and normally stripped before this; a caller
        // that passes it anyway is not wrong.
        if let Some(key) = section
            .keys()
            .find(|key| !KEYS.contains(&key.as_str()) && key.as_str() != "enabled")
        {
            return Err(ConfigError::UnknownKey { key: key.clone() });
        }
        let mut config = Self::default();
        let get = |key: &'static str| section.get(key).map(|value| (key, value));
        if let Some((key, value)) = get("intervene") {
            config.intervene = boolean(key, value)?;
        }
        if let Some((key, value)) = get("replace_default_patterns") {
            config.replace_default_patterns = boolean(key, value)?;
        }
        if let Some((key, value)) = get("negative_patterns") {
            config.negative_patterns = patterns(key, value)?;
        }
        if let Some((key, value)) = get("positive_patterns") {
            config.positive_patterns = patterns(key, value)?;
        }
        if let Some((key, value)) = get("alpha") {
            config.alpha = number(key, value, "a number in (0, 1]", |x| x > 0.0 && x <= 1.0)?;
        }
        if let Some((key, value)) = get("breaker_threshold") {
            config.breaker_threshold = number(key, value, "a number in (0, 1000]", |x| {
                x > 0.0 && x <= 1000.0
            })?;
        }
        if let Some((key, value)) = get("checkpoint_frustration") {
            config.checkpoint_frustration =
                number(key, value, "a number in (0, 1)", |x| x > 0.0 && x < 1.0)?;
        }
        if let Some((key, value)) = get("breaker_cooldown_secs") {
            config.breaker_cooldown_secs = integer(key, value, 0, MAX_SECS)?;
        }
        if let Some((key, value)) = get("failure_half_life_secs") {
            config.failure_half_life_secs = integer(key, value, 1, MAX_SECS)?;
        }
        if let Some((key, value)) = get("checkpoint_interval_secs") {
            config.checkpoint_interval_secs = integer(key, value, 0, MAX_SECS)?;
        }
        if let Some((key, value)) = get("max_interventions") {
            config.max_interventions = integer(key, value, 0, 1000)? as u32;
        }
        if let Some((key, value)) = get("checkpoint_every_events") {
            config.checkpoint_every_events = integer(key, value, 1, 1_000_000)? as u64;
        }
        if let Some((key, value)) = get("repeated_failures") {
            config.repeated_failures = integer(key, value, 2, 100)? as usize;
        }
        if let Some((key, value)) = get("repeated_failures_window") {
            let min = config.repeated_failures as i64;
            config.repeated_failures_window =
                integer(key, value, min, 1000).map_err(|err| match err {
                    ConfigError::Invalid { key, got, .. } => ConfigError::Invalid {
                        key,
                        expected: format!(
                            "an integer from plugins.groove.repeated_failures ({min}) to 1000"
                        ),
                        got,
                    },
                    other => other,
                })? as u64;
        } else if config.repeated_failures_window < config.repeated_failures as u64 {
            // Only `repeated_failures` was raised: the window follows it.
            config.repeated_failures_window = config.repeated_failures as u64;
        }
        if let Some((key, value)) = get("correction_window") {
            config.correction_window = integer(key, value, 1, 100)? as u64;
        }
        // Compiling here reports a bad pattern at load, not at start.
        config.phrase_sets()?;
        Ok(config)
    }

    /// The negative and positive phrase sets this config matches prompts
    /// with, case-insensitive.
    pub(crate) fn phrase_sets(&self) -> Result<(PhraseSet, PhraseSet), ConfigError> {
        let negative = PhraseSet::new(
            "negative_patterns",
            DEFAULT_NEGATIVE_PATTERNS,
            &self.negative_patterns,
            self.replace_default_patterns,
        )?;
        let positive = PhraseSet::new(
            "positive_patterns",
            DEFAULT_POSITIVE_PATTERNS,
            &self.positive_patterns,
            self.replace_default_patterns,
        )?;
        Ok((negative, positive))
    }

    /// Everything that shapes what the assessment derives, as canonical
    /// JSON: a store derived under another fingerprint is rebuilt.
    pub fn fingerprint(&self) -> String {
        let Self {
            intervene: _,
            negative_patterns,
            positive_patterns,
            replace_default_patterns,
            alpha,
            breaker_threshold,
            breaker_cooldown_secs,
            failure_half_life_secs,
            max_interventions: _,
            checkpoint_every_events,
            checkpoint_interval_secs,
            checkpoint_frustration,
            repeated_failures,
            repeated_failures_window,
            correction_window,
        } = self;
        canonical_json(&json!({
            "negative_patterns": negative_patterns,
            "positive_patterns": positive_patterns,
            "replace_default_patterns": replace_default_patterns,
            // The defaults are part of what is derived: a build with other
            // built-in phrases rebuilds too.
            "default_negative_patterns": DEFAULT_NEGATIVE_PATTERNS,
            "default_positive_patterns": DEFAULT_POSITIVE_PATTERNS,
            "alpha": alpha,
            "breaker_threshold": breaker_threshold,
            "breaker_cooldown_secs": breaker_cooldown_secs,
            "failure_half_life_secs": failure_half_life_secs,
            "checkpoint_every_events": checkpoint_every_events,
            "checkpoint_interval_secs": checkpoint_interval_secs,
            "checkpoint_frustration": checkpoint_frustration,
            "repeated_failures": repeated_failures,
            "repeated_failures_window": repeated_failures_window,
            "correction_window": correction_window,
        }))
    }
}

/// A list of phrases compiled into one [`RegexSet`], so a prompt is matched
/// against all of them in one pass.
#[derive(Debug, Clone)]
pub(crate) struct PhraseSet {
    set: RegexSet,
}

impl PhraseSet {
    fn new(
        key: &'static str,
        defaults: &[&str],
        extra: &[String],
        replace: bool,
    ) -> Result<Self, ConfigError> {
        let mut patterns: Vec<&str> = if replace {
            Vec::new()
        } else {
            defaults.to_vec()
        };
        patterns.extend(extra.iter().map(String::as_str));
        // Each pattern is compiled alone first so that the error names it.
        for pattern in &patterns {
            RegexSetBuilder::new([pattern])
                .case_insensitive(true)
                .build()
                .map_err(|err| ConfigError::BadPattern {
                    key,
                    pattern: (*pattern).to_owned(),
                    message: regex_message(&err),
                })?;
        }
        let set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .build()
            .map_err(|err| ConfigError::BadPattern {
                key,
                pattern: patterns.join(" | "),
                message: regex_message(&err),
            })?;
        Ok(Self { set })
    }

    /// The patterns `text` matches, in list order.
    pub(crate) fn matches<'a>(&'a self, text: &str) -> impl Iterator<Item = &'a str> + 'a {
        let patterns = self.set.patterns();
        self.set
            .matches(text)
            .into_iter()
            .map(move |index| patterns[index].as_str())
    }
}

/// The one line of a regex error that says what is wrong.
fn regex_message(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or_default())
        .to_owned()
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("the string {text:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(_) => "a datetime".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn invalid(key: &'static str, expected: &str, value: &toml::Value) -> ConfigError {
    ConfigError::Invalid {
        key,
        expected: expected.to_owned(),
        got: describe(value),
    }
}

fn boolean(key: &'static str, value: &toml::Value) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| invalid(key, "true or false", value))
}

fn number(
    key: &'static str,
    value: &toml::Value,
    expected: &str,
    in_range: impl Fn(f64) -> bool,
) -> Result<f64, ConfigError> {
    let x = match value {
        toml::Value::Float(x) => *x,
        toml::Value::Integer(n) => *n as f64,
        _ => return Err(invalid(key, expected, value)),
    };
    if x.is_finite() && in_range(x) {
        Ok(x)
    } else {
        Err(invalid(key, expected, value))
    }
}

fn integer(key: &'static str, value: &toml::Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let expected = format!("an integer from {min} to {max}");
    match value {
        toml::Value::Integer(n) if (min..=max).contains(n) => Ok(*n),
        _ => Err(invalid(key, &expected, value)),
    }
}

fn patterns(key: &'static str, value: &toml::Value) -> Result<Vec<String>, ConfigError> {
    let expected = format!("an array of at most {MAX_PATTERNS} regex strings");
    let toml::Value::Array(items) = value else {
        return Err(invalid(key, &expected, value));
    };
    if items.len() > MAX_PATTERNS {
        return Err(ConfigError::Invalid {
            key,
            expected,
            got: format!("{} patterns", items.len()),
        });
    }
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid(key, &expected, item))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn error(text: &str) -> String {
        GrooveConfig::from_table(&table(text))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_empty_section_is_every_default() {
        assert_eq!(
            GrooveConfig::from_table(&toml::Table::new()).unwrap(),
            GrooveConfig::default()
        );
    }

    #[test]
    fn every_key_is_read() {
        let config = GrooveConfig::from_table(&table(
            r#"
            intervene = true
            negative_patterns = ["bad"]
            positive_patterns = ["good"]
            replace_default_patterns = true
            alpha = 1
            breaker_threshold = 4.5
            breaker_cooldown_secs = 60
            failure_half_life_secs = 30
            max_interventions = 0
            checkpoint_every_events = 5
            checkpoint_interval_secs = 0
            checkpoint_frustration = 0.7
            repeated_failures = 4
            repeated_failures_window = 4
            correction_window = 2
            "#,
        ))
        .unwrap();
        assert!(config.intervene && config.replace_default_patterns);
        assert_eq!(config.alpha, 1.0);
        assert_eq!(config.breaker_threshold, 4.5);
        assert_eq!(
            (config.breaker_cooldown_secs, config.failure_half_life_secs),
            (60, 30)
        );
        assert_eq!(config.max_interventions, 0);
        assert_eq!(
            (
                config.checkpoint_every_events,
                config.checkpoint_interval_secs
            ),
            (5, 0)
        );
        assert_eq!(
            (config.repeated_failures, config.repeated_failures_window),
            (4, 4)
        );
        assert_eq!(config.correction_window, 2);
        assert_eq!(config.negative_patterns, ["bad"]);
    }

    #[test]
    fn config_errors_name_the_key_and_what_it_must_be() {
        assert!(error("colour = 1").starts_with("plugins.groove.colour: unknown key"));
        assert_eq!(
            error("alpha = 0"),
            "plugins.groove.alpha: must be a number in (0, 1], got 0"
        );
        assert_eq!(
            error("alpha = 1.5"),
            "plugins.groove.alpha: must be a number in (0, 1], got 1.5"
        );
        assert_eq!(
            error("intervene = \"yes\""),
            "plugins.groove.intervene: must be true or false, got the string \"yes\""
        );
        assert_eq!(
            error("breaker_cooldown_secs = -1"),
            "plugins.groove.breaker_cooldown_secs: must be an integer from 0 to 604800, got -1"
        );
        assert_eq!(
            error("failure_half_life_secs = 0"),
            "plugins.groove.failure_half_life_secs: must be an integer from 1 to 604800, got 0"
        );
        assert!(error("breaker_threshold = 0").starts_with("plugins.groove.breaker_threshold:"));
        assert!(error("max_interventions = 1.5").starts_with("plugins.groove.max_interventions:"));
        assert!(
            error("checkpoint_frustration = 1")
                .starts_with("plugins.groove.checkpoint_frustration:")
        );
        assert!(
            error("checkpoint_every_events = 0")
                .starts_with("plugins.groove.checkpoint_every_events:")
        );
        assert_eq!(
            error("repeated_failures = 5\nrepeated_failures_window = 4"),
            "plugins.groove.repeated_failures_window: must be an integer from \
             plugins.groove.repeated_failures (5) to 1000, got 4"
        );
        assert!(error("correction_window = 0").starts_with("plugins.groove.correction_window:"));
        assert!(
            error("negative_patterns = \"x\"")
                .starts_with("plugins.groove.negative_patterns: must be an array")
        );
        assert!(
            error("positive_patterns = [1]")
                .starts_with("plugins.groove.positive_patterns: must be an array")
        );
    }

    #[test]
    fn an_invalid_regex_names_the_key_and_the_pattern() {
        assert_eq!(
            error(r#"negative_patterns = ["fine", "(unclosed"]"#),
            "plugins.groove.negative_patterns: pattern \"(unclosed\" is not a valid regex: \
             unclosed group"
        );
        assert!(
            error(r#"positive_patterns = ["[z-a]"]"#)
                .starts_with("plugins.groove.positive_patterns: pattern \"[z-a]\"")
        );
    }

    #[test]
    fn enabled_is_vibesd_s_and_passes() {
        assert!(GrooveConfig::from_table(&table("enabled = true")).is_ok());
    }

    #[test]
    fn raising_repeated_failures_alone_widens_the_window() {
        let config = GrooveConfig::from_table(&table("repeated_failures = 20")).unwrap();
        assert_eq!(config.repeated_failures_window, 20);
    }

    #[test]
    fn the_fingerprint_ignores_intervene_but_not_thresholds() {
        let base = GrooveConfig::default();
        let intervening = GrooveConfig {
            intervene: true,
            max_interventions: 9,
            ..GrooveConfig::default()
        };
        let other = GrooveConfig {
            alpha: 0.5,
            ..GrooveConfig::default()
        };
        assert_eq!(base.fingerprint(), intervening.fingerprint());
        assert_ne!(base.fingerprint(), other.fingerprint());
    }
}
