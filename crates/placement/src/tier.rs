//! Tier rules: which tier a segment belongs to, decided from its id.
//!
//! A rule is a pattern and a tier name; the first rule whose pattern matches the id wins, and an
//! id no rule matches is in tier [`DEFAULT_TIER`]. Three kinds of pattern:
//!
//! - `regex:RE`: `RE` is searched for anywhere in the id (unanchored, like `regex::Regex::is_match`;
//!   anchor it with `^…$`), with the `regex` crate's syntax. That crate matches in linear time, so
//!   a hostile pattern cannot take exponential time, and its compiled size is capped
//!   ([`MAX_REGEX_BYTES`]).
//! - a pattern containing `*` or `?`: a glob over the whole id, where `*` matches any run of
//!   characters (including none) and `?` exactly one. `prefix*` is the common case.
//! - anything else: the exact id.
//!
//! [`tier_for`] compiles each rule as it goes (an invalid regex matches nothing); to classify
//! many ids, compile the rules once with [`TierMatcher::new`], which also reports invalid rules.

use serde::{Deserialize, Serialize};
use trough_types::SegmentId;

/// The tier of a segment that no rule matches, and whose replication factor applies to segments
/// of unknown tiers.
pub const DEFAULT_TIER: &str = "default";

/// Largest compiled size of one `regex:` pattern, in bytes (bounds memory and time).
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// One tier rule of the configuration: segments whose id matches `pattern` belong to `tier`.
///
/// In TOML: `[[tier_rules]]` with `pattern = "logs-*"` and `tier = "cold"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    /// `regex:RE`, a glob with `*` / `?`, or an exact id (see the module documentation).
    pub pattern: String,
    /// The tier the matching segments belong to.
    pub tier: String,
}

impl TierRule {
    /// Checks that the pattern compiles (only `regex:` patterns can be invalid).
    pub fn validate(&self) -> Result<(), PatternError> {
        Pattern::compile(&self.pattern).map(|_| ())
    }

    /// Whether `id` matches this rule's pattern; an invalid pattern matches nothing.
    pub fn matches(&self, id: &str) -> bool {
        Pattern::compile(&self.pattern).is_ok_and(|p| p.matches(id))
    }
}

/// A `regex:` pattern that could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tier rule pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The whole pattern, as written in the rule.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The tier of segment `id`: the tier of the first rule whose pattern matches, else
/// [`DEFAULT_TIER`]. A rule whose `regex:` pattern is invalid matches nothing.
///
/// Compiles the rules on every call; use [`TierMatcher`] to classify many ids.
pub fn tier_for<'a>(id: &SegmentId, rules: &'a [TierRule]) -> &'a str {
    rules
        .iter()
        .find(|rule| rule.matches(id.as_str()))
        .map_or(DEFAULT_TIER, |rule| rule.tier.as_str())
}

/// Tier rules compiled once, to classify many segment ids.
#[derive(Clone, Debug)]
pub struct TierMatcher {
    rules: Vec<(Pattern, String)>,
}

impl TierMatcher {
    /// Compiles `rules`, failing on the first invalid pattern.
    pub fn new(rules: &[TierRule]) -> Result<Self, PatternError> {
        let rules = rules
            .iter()
            .map(|rule| Ok((Pattern::compile(&rule.pattern)?, rule.tier.clone())))
            .collect::<Result<_, PatternError>>()?;
        Ok(Self { rules })
    }

    /// The tier of `id`; same answer as [`tier_for`] with the same rules.
    pub fn tier_for(&self, id: &SegmentId) -> &str {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(id.as_str()))
            .map_or(DEFAULT_TIER, |(_, tier)| tier.as_str())
    }
}

/// A compiled pattern.
#[derive(Clone, Debug)]
enum Pattern {
    Exact(String),
    Glob(Vec<u8>),
    Regex(regex::Regex),
}

impl Pattern {
    fn compile(pattern: &str) -> Result<Self, PatternError> {
        if let Some(re) = pattern.strip_prefix("regex:") {
            let compiled = regex::RegexBuilder::new(re)
                .size_limit(MAX_REGEX_BYTES)
                .build()
                .map_err(|e| PatternError {
                    pattern: pattern.to_owned(),
                    reason: e.to_string(),
                })?;
            Ok(Self::Regex(compiled))
        } else if pattern.contains(['*', '?']) {
            Ok(Self::Glob(pattern.as_bytes().to_vec()))
        } else {
            Ok(Self::Exact(pattern.to_owned()))
        }
    }

    fn matches(&self, id: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == id,
            Self::Glob(glob) => glob_match(glob, id.as_bytes()),
            Self::Regex(re) => re.is_match(id),
        }
    }
}

/// Glob match of the whole `text`: `*` any run, `?` one byte (ids are ASCII).
///
/// The classic greedy algorithm with one backtrack point: linear in practice, O(n·m) at worst.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    g = sg + 1;
                    t = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SegmentId {
        SegmentId::new(s).unwrap()
    }

    fn rule(pattern: &str, tier: &str) -> TierRule {
        TierRule {
            pattern: pattern.into(),
            tier: tier.into(),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_default_is_default() {
        let rules = [
            rule("logs-2024*", "cold"),
            rule("logs-*", "warm"),
            rule("hot-one", "hot"),
            rule("regex:^metrics-\\d{4}$", "metrics"),
        ];
        assert_eq!(tier_for(&id("logs-2024-01"), &rules), "cold");
        assert_eq!(tier_for(&id("logs-2023-01"), &rules), "warm");
        assert_eq!(tier_for(&id("hot-one"), &rules), "hot");
        assert_eq!(tier_for(&id("hot-one-more"), &rules), DEFAULT_TIER);
        assert_eq!(tier_for(&id("metrics-2024"), &rules), "metrics");
        assert_eq!(tier_for(&id("metrics-20245"), &rules), DEFAULT_TIER);
        assert_eq!(tier_for(&id("other"), &rules), "default");
        assert_eq!(tier_for(&id("anything"), &[]), "default");
        let matcher = TierMatcher::new(&rules).unwrap();
        for s in ["logs-2024-01", "logs-x", "hot-one", "metrics-2024", "zzz"] {
            assert_eq!(matcher.tier_for(&id(s)), tier_for(&id(s), &rules), "{s}");
        }
    }

    #[test]
    fn invalid_regex_is_reported_and_never_matches() {
        let rules = [rule("regex:(unclosed", "broken"), rule("*", "all")];
        assert!(rules[0].validate().is_err());
        assert!(rules[1].validate().is_ok());
        assert_eq!(tier_for(&id("unclosed"), &rules), "all");
        let err = TierMatcher::new(&rules).unwrap_err();
        assert_eq!(err.pattern, "regex:(unclosed");
        assert!(err.to_string().contains("unclosed group"), "{err}");
    }

    #[test]
    fn glob_semantics() {
        assert!(glob_match(b"abc*", b"abc"));
        assert!(glob_match(b"abc*", b"abcdef"));
        assert!(!glob_match(b"abc*", b"xabc"));
        assert!(glob_match(b"*abc", b"xxabc"));
        assert!(!glob_match(b"*abc", b"abcx"));
        assert!(glob_match(b"a*b*c", b"a-b-b-c"));
        assert!(!glob_match(b"a*b*c", b"a-c-b"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"**", b"x"));
        assert!(!glob_match(b"?", b""));
    }

    #[test]
    fn exact_pattern_is_not_a_prefix() {
        let rules = [rule("seg-1", "hot")];
        assert_eq!(tier_for(&id("seg-1"), &rules), "hot");
        assert_eq!(tier_for(&id("seg-10"), &rules), "default");
        // `.` is literal outside `regex:`
        let rules = [rule("seg.1", "hot")];
        assert_eq!(tier_for(&id("seg-1"), &rules), "default");
    }

    #[test]
    fn rules_deserialize_from_toml_and_reject_unknown_fields() {
        #[derive(Deserialize)]
        struct Config {
            tier_rules: Vec<TierRule>,
        }
        let config: Config = toml::from_str(
            "[[tier_rules]]\npattern = \"logs-*\"\ntier = \"cold\"\n\n\
             [[tier_rules]]\npattern = \"regex:^m-\\\\d+$\"\ntier = \"hot\"\n",
        )
        .unwrap();
        assert_eq!(
            config.tier_rules,
            vec![rule("logs-*", "cold"), rule("regex:^m-\\d+$", "hot")]
        );
        assert_eq!(tier_for(&id("m-12"), &config.tier_rules), "hot");
        assert!(toml::from_str::<Config>(
            "[[tier_rules]]\npattern = \"a\"\ntier = \"b\"\ntypo = 1\n"
        )
        .is_err());
    }
}
