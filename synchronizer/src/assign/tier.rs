//! Tier rules: which tier a segment belongs to, decided from its id.
//!
//! A rule is a pattern and a tier name; the first rule whose pattern matches the id wins, and an
//! id no rule matches is in tier [`DEFAULT_TIER`]. Three kinds of pattern:
//!
//! - `regex:RE`: `RE` is searched for anywhere in the id (unanchored, like `regex::Regex::is_match`;
//!   anchor it with `^…$`). The supported syntax is a small, linear-time subset: literals, `.`,
//!   classes `[a-z0-9_]` / `[^…]`, the escapes `\d \D \w \W \s \S` and escaped punctuation, groups
//!   `(…)` / `(?:…)` / `(?P<name>…)`, alternation `|`, the quantifiers `* + ? {n} {n,} {n,m}`
//!   (a trailing lazy `?` is accepted and changes nothing, since only *whether* it matches
//!   matters), and the anchors `^ $`. Anything else (flags, backreferences, look-around, `\b`)
//!   is rejected by [`TierRule::validate`] rather than silently misread. Matching is a Pike VM
//!   over the id's bytes, so a hostile pattern cannot take exponential time.
//! - a pattern containing `*` or `?`: a glob over the whole id, where `*` matches any run of
//!   characters (including none) and `?` exactly one. `prefix*` is the common case.
//! - anything else: the exact id.
//!
//! [`tier_for`] compiles each rule as it goes (an invalid regex matches nothing); to classify
//! many ids, compile the rules once with [`TierMatcher::new`], which also reports invalid rules.

use serde::{Deserialize, Serialize};
use trough_core::SegmentId;

/// The tier of a segment that no rule matches, and whose replication factor applies to segments
/// of unknown tiers.
pub const DEFAULT_TIER: &str = "default";

/// Maximum number of compiled instructions of one `regex:` pattern (bounds memory and time).
const MAX_PROGRAM_LEN: usize = 10_000;

/// Largest count allowed in a `{n,m}` repetition.
const MAX_REPEAT: u32 = 1_000;

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
    Regex(Program),
}

impl Pattern {
    fn compile(pattern: &str) -> Result<Self, PatternError> {
        if let Some(re) = pattern.strip_prefix("regex:") {
            let program = Parser::new(re.as_bytes())
                .parse()
                .and_then(|ast| Program::compile(&ast))
                .map_err(|reason| PatternError {
                    pattern: pattern.to_owned(),
                    reason,
                })?;
            Ok(Self::Regex(program))
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
            Self::Regex(program) => program.is_match(id.as_bytes()),
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

// ---------------------------------------------------------------------------------------------
// The `regex:` subset: parser, compiler to a Pike VM program, and the VM.

/// A set of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: Self = Self([0; 4]);

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.insert(b);
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn union(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }

    fn negated(&self) -> Self {
        Self(self.0.map(|w| !w))
    }

    /// `.`: any byte but a newline, as in the `regex` crate.
    fn any() -> Self {
        let mut set = Self::EMPTY.negated();
        set.0[0] &= !(1 << b'\n');
        set
    }
}

#[derive(Clone, Debug)]
enum Ast {
    Empty,
    Set(ByteSet),
    Literal(u8),
    Start,
    End,
    Concat(Vec<Ast>),
    Alternate(Vec<Ast>),
    Repeat {
        inner: Box<Ast>,
        min: u32,
        max: Option<u32>,
    },
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            depth: 0,
        }
    }

    fn parse(mut self) -> Result<Ast, String> {
        let ast = self.alternation()?;
        match self.peek() {
            None => Ok(ast),
            Some(b')') => Err(format!("unopened ')' at offset {}", self.pos)),
            Some(c) => Err(format!(
                "unexpected {:?} at offset {}",
                char::from(c),
                self.pos
            )),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn alternation(&mut self) -> Result<Ast, String> {
        let mut branches = vec![self.concatenation()?];
        while self.eat(b'|') {
            branches.push(self.concatenation()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Ast::Empty)
        } else {
            Ast::Alternate(branches)
        })
    }

    fn concatenation(&mut self) -> Result<Ast, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Ast::Empty,
            1 => items.pop().unwrap_or(Ast::Empty),
            _ => Ast::Concat(items),
        })
    }

    fn quantified(&mut self, atom: Ast) -> Result<Ast, String> {
        let (min, max) = match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                (0, None)
            }
            Some(b'+') => {
                self.pos += 1;
                (1, None)
            }
            Some(b'?') => {
                self.pos += 1;
                (0, Some(1))
            }
            Some(b'{') => {
                self.pos += 1;
                self.counted()?
            }
            _ => return Ok(atom),
        };
        self.eat(b'?'); // lazy: irrelevant to whether it matches
        if matches!(self.peek(), Some(b'*' | b'+' | b'?' | b'{')) {
            return Err(format!("repeated quantifier at offset {}", self.pos));
        }
        Ok(Ast::Repeat {
            inner: Box::new(atom),
            min,
            max,
        })
    }

    /// After `{`: `n}`, `n,}` or `n,m}`; leaves the position just past `}`.
    fn counted(&mut self) -> Result<(u32, Option<u32>), String> {
        let min = self
            .number()?
            .ok_or_else(|| format!("expected a count at offset {}", self.pos))?;
        let max = if self.eat(b',') {
            self.number()?
        } else {
            Some(min)
        };
        if !self.eat(b'}') {
            return Err(format!(
                "unclosed counted repetition at offset {}",
                self.pos
            ));
        }
        if max.is_some_and(|max| max < min) {
            return Err(format!("invalid repetition {{{min},{max:?}}}"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Result<Option<u32>, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        let digits = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        match digits.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(Some(n)),
            _ => Err(format!("repetition count {digits} exceeds {MAX_REPEAT}")),
        }
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let at = self.pos;
        let Some(c) = self.next() else {
            return Err("unexpected end of pattern".into());
        };
        match c {
            b'(' => self.group(),
            b'[' => self.class(),
            b'.' => Ok(Ast::Set(ByteSet::any())),
            b'^' => Ok(Ast::Start),
            b'$' => Ok(Ast::End),
            b'\\' => self.escape(false),
            b'*' | b'+' | b'?' | b'{' => Err(format!(
                "quantifier {:?} without anything to repeat at offset {at}",
                char::from(c)
            )),
            _ => Ok(Ast::Literal(c)),
        }
    }

    fn group(&mut self) -> Result<Ast, String> {
        let open = self.pos - 1;
        if self.eat(b'?') {
            if self.eat(b':') {
                // non-capturing group
            } else if (self.eat(b'P') && self.eat(b'<')) || self.eat(b'<') {
                while let Some(c) = self.next() {
                    if c == b'>' {
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == b'_') {
                        return Err(format!("invalid group name at offset {}", self.pos - 1));
                    }
                }
            } else {
                return Err(format!(
                    "unsupported group syntax (flags or look-around) at offset {open}"
                ));
            }
        }
        self.depth += 1;
        if self.depth > 100 {
            return Err("groups nested too deeply".into());
        }
        let inner = self.alternation()?;
        self.depth -= 1;
        if !self.eat(b')') {
            return Err(format!("unclosed group opened at offset {open}"));
        }
        Ok(inner)
    }

    /// After `\`. Inside a class, only sets and literals are allowed.
    fn escape(&mut self, in_class: bool) -> Result<Ast, String> {
        let at = self.pos - 1;
        let Some(c) = self.next() else {
            return Err("pattern ends with a lone backslash".into());
        };
        let mut set = ByteSet::EMPTY;
        let (base, negate) = match c {
            b'd' | b'D' => {
                set.insert_range(b'0', b'9');
                (set, c == b'D')
            }
            b'w' | b'W' => {
                set.insert_range(b'0', b'9');
                set.insert_range(b'a', b'z');
                set.insert_range(b'A', b'Z');
                set.insert(b'_');
                (set, c == b'W')
            }
            b's' | b'S' => {
                for b in [b' ', b'\t', b'\n', b'\r', 0x0b, 0x0c] {
                    set.insert(b);
                }
                (set, c == b'S')
            }
            b'n' => return Ok(Ast::Literal(b'\n')),
            b't' => return Ok(Ast::Literal(b'\t')),
            b'r' => return Ok(Ast::Literal(b'\r')),
            c if c.is_ascii_punctuation() => return Ok(Ast::Literal(c)),
            c => {
                let what = if in_class { " in a class" } else { "" };
                return Err(format!(
                    "unsupported escape \\{}{what} at offset {at}",
                    char::from(c)
                ));
            }
        };
        Ok(Ast::Set(if negate { base.negated() } else { base }))
    }

    /// After `[`.
    fn class(&mut self) -> Result<Ast, String> {
        let open = self.pos - 1;
        let negate = self.eat(b'^');
        let mut set = ByteSet::EMPTY;
        let mut first = true;
        loop {
            let Some(c) = self.next() else {
                return Err(format!("unclosed class opened at offset {open}"));
            };
            let lo = match c {
                b']' if !first => break,
                b'[' => return Err(format!("nested class at offset {}", self.pos - 1)),
                b'\\' => match self.escape(true)? {
                    Ast::Literal(b) => b,
                    Ast::Set(s) => {
                        set.union(&s);
                        first = false;
                        continue;
                    }
                    _ => unreachable!("escape yields a literal or a set"),
                },
                c if c.is_ascii() => c,
                _ => {
                    return Err(format!(
                        "non-ASCII byte in a class at offset {}",
                        self.pos - 1
                    ))
                }
            };
            first = false;
            // A range `lo-hi`, unless the `-` is the last character before `]`.
            if self.peek() == Some(b'-') && self.input.get(self.pos + 1).is_some_and(|&n| n != b']')
            {
                self.pos += 1;
                let hi = match self.next() {
                    Some(b'\\') => match self.escape(true)? {
                        Ast::Literal(b) => b,
                        _ => return Err(format!("invalid class range end at offset {}", self.pos)),
                    },
                    Some(b'[') => return Err(format!("nested class at offset {}", self.pos - 1)),
                    Some(h) if h.is_ascii() => h,
                    _ => return Err(format!("invalid class range at offset {}", self.pos)),
                };
                if hi < lo {
                    return Err(format!(
                        "invalid class range {}-{}",
                        char::from(lo),
                        char::from(hi)
                    ));
                }
                set.insert_range(lo, hi);
            } else {
                set.insert(lo);
            }
        }
        Ok(Ast::Set(if negate { set.negated() } else { set }))
    }
}

#[derive(Clone, Copy, Debug)]
enum Inst {
    Byte(u8),
    Set(ByteSet),
    /// Continue at both targets (order is irrelevant: we only answer "does it match").
    Split(usize, usize),
    Jump(usize),
    AssertStart,
    AssertEnd,
    Match,
}

/// A compiled `regex:` pattern.
#[derive(Clone, Debug)]
struct Program(Vec<Inst>);

impl Program {
    fn compile(ast: &Ast) -> Result<Self, String> {
        let mut insts = Vec::new();
        emit(ast, &mut insts)?;
        insts.push(Inst::Match);
        Ok(Self(insts))
    }

    /// Unanchored search: is there a match starting anywhere in `text`?
    fn is_match(&self, text: &[u8]) -> bool {
        let insts = &self.0;
        let mut current = ThreadList::new(insts.len());
        let mut next = ThreadList::new(insts.len());
        let mut stack = Vec::new();
        for pos in 0..=text.len() {
            // A new thread starts at every position (the search is unanchored).
            if current.add(insts, 0, pos, text.len(), &mut stack) {
                return true;
            }
            let Some(&byte) = text.get(pos) else {
                break;
            };
            next.clear();
            for &pc in &current.dense {
                let advances = match insts[pc] {
                    Inst::Byte(b) => b == byte,
                    Inst::Set(set) => set.contains(byte),
                    _ => false,
                };
                if advances && next.add(insts, pc + 1, pos + 1, text.len(), &mut stack) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }
}

fn emit(ast: &Ast, out: &mut Vec<Inst>) -> Result<(), String> {
    if out.len() > MAX_PROGRAM_LEN {
        return Err(format!(
            "pattern too large (over {MAX_PROGRAM_LEN} instructions)"
        ));
    }
    match ast {
        Ast::Empty => {}
        Ast::Literal(b) => out.push(Inst::Byte(*b)),
        Ast::Set(set) => out.push(Inst::Set(*set)),
        Ast::Start => out.push(Inst::AssertStart),
        Ast::End => out.push(Inst::AssertEnd),
        Ast::Concat(items) => {
            for item in items {
                emit(item, out)?;
            }
        }
        Ast::Alternate(branches) => {
            // split L1, next; L1: branch; jump end; next: split L2, next2; ...
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = out.len();
                    out.push(Inst::Split(split + 1, 0));
                    emit(branch, out)?;
                    jumps.push(out.len());
                    out.push(Inst::Jump(0));
                    let after = out.len();
                    out[split] = Inst::Split(split + 1, after);
                } else {
                    emit(branch, out)?;
                }
            }
            let end = out.len();
            for j in jumps {
                out[j] = Inst::Jump(end);
            }
        }
        Ast::Repeat { inner, min, max } => {
            for _ in 0..*min {
                emit(inner, out)?;
            }
            match max {
                None => {
                    // loop: split body, exit; body; jump loop
                    let split = out.len();
                    out.push(Inst::Split(split + 1, 0));
                    emit(inner, out)?;
                    out.push(Inst::Jump(split));
                    let exit = out.len();
                    out[split] = Inst::Split(split + 1, exit);
                }
                Some(max) => {
                    // (max - min) optional copies: split body, end; body; ...
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(out.len());
                        out.push(Inst::Split(0, 0));
                        emit(inner, out)?;
                    }
                    let end = out.len();
                    for s in splits {
                        out[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
    if out.len() > MAX_PROGRAM_LEN {
        return Err(format!(
            "pattern too large (over {MAX_PROGRAM_LEN} instructions)"
        ));
    }
    Ok(())
}

/// The Pike VM's set of threads at one position (a sparse set of program counters).
struct ThreadList {
    dense: Vec<usize>,
    sparse: Vec<usize>,
}

impl ThreadList {
    fn new(len: usize) -> Self {
        Self {
            dense: Vec::with_capacity(len),
            sparse: vec![0; len],
        }
    }

    fn clear(&mut self) {
        self.dense.clear();
    }

    fn contains(&self, pc: usize) -> bool {
        self.sparse[pc] < self.dense.len() && self.dense[self.sparse[pc]] == pc
    }

    /// Adds `pc` and its epsilon closure at `pos`; true if `Match` is reached.
    fn add(
        &mut self,
        insts: &[Inst],
        pc: usize,
        pos: usize,
        len: usize,
        stack: &mut Vec<usize>,
    ) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if self.contains(pc) {
                continue;
            }
            self.sparse[pc] = self.dense.len();
            self.dense.push(pc);
            match insts[pc] {
                Inst::Match => return true,
                Inst::Jump(to) => stack.push(to),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::AssertStart if pos == 0 => stack.push(pc + 1),
                Inst::AssertEnd if pos == len => stack.push(pc + 1),
                _ => {}
            }
        }
        false
    }
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

    fn re(pattern: &str) -> Program {
        match Pattern::compile(&format!("regex:{pattern}")) {
            Ok(Pattern::Regex(p)) => p,
            other => panic!("{pattern}: {other:?}"),
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
    fn unsupported_regex_syntax_is_rejected() {
        for bad in [
            "(?i)abc",
            "a(?=b)",
            "\\bword",
            "\\1",
            "a**",
            "*a",
            "a{2,1}",
            "a{1001}",
            "[a",
            "[z-a]",
            "a)",
            "\\",
            "[[:alpha:]]",
            "x{2",
        ] {
            assert!(
                rule(&format!("regex:{bad}"), "t").validate().is_err(),
                "{bad} should be rejected"
            );
        }
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
    fn regex_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "xxabcxx", true),
            ("^abc", "xxabc", false),
            ("abc$", "abcx", false),
            ("^a.c$", "abc", true),
            ("^(ab|cd)+$", "abcdab", true),
            ("^(ab|cd)+$", "abca", false),
            ("^a{2,3}$", "aaaa", false),
            ("^a{2,3}$", "aaa", true),
            ("^a{2,}$", "aaaaaa", true),
            ("^a{2}$", "a", false),
            ("^[a-c]+-[^0-9]$", "abc-x", true),
            ("^[a-c]+-[^0-9]$", "abc-1", false),
            ("^\\d+\\.\\w*$", "123.x_y", true),
            ("^\\d+\\.\\w*$", "123-x", false),
            ("[-a]", "-", true),
            ("[a-]", "-", true),
            ("^(?:x|y)?z$", "z", true),
            ("^(?P<n>x)z$", "xz", true),
            ("^$", "", true),
            ("", "anything", true),
            ("a|", "b", true),
            (
                "^(a*)*$",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
                false,
            ),
            ("a+?b", "aab", true),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(
                re(pattern).is_match(text.as_bytes()),
                want,
                "{pattern} on {text}"
            );
        }
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

    mod differential {
        use super::*;
        use proptest::prelude::*;

        /// Patterns from a grammar both engines support, over a small alphabet so that matches
        /// are frequent.
        fn pattern() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("a".to_string()),
                Just("b".to_string()),
                Just("-".to_string()),
                Just(".".to_string()),
                Just("[ab]".to_string()),
                Just("[^a]".to_string()),
                Just("[a-c]".to_string()),
                Just("\\d".to_string()),
                Just("\\w".to_string()),
                Just("\\.".to_string()),
                Just("1".to_string()),
            ];
            let tree = leaf.prop_recursive(4, 24, 3, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 1..4).prop_map(|v| v.concat()),
                    (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("(?:{a}|{b})")),
                    inner.clone().prop_map(|a| format!("(?:{a})*")),
                    inner.clone().prop_map(|a| format!("(?:{a})+")),
                    inner.clone().prop_map(|a| format!("(?:{a})?")),
                    (inner, 0u32..3, 0u32..3)
                        .prop_map(|(a, m, extra)| format!("(?:{a}){{{m},{}}}", m + extra)),
                ]
            });
            (any::<bool>(), tree, any::<bool>()).prop_map(|(start, body, end)| {
                format!(
                    "{}{body}{}",
                    if start { "^" } else { "" },
                    if end { "$" } else { "" }
                )
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn agrees_with_the_regex_crate(p in pattern(), text in "[ab1.-]{0,12}") {
                let ours = re(&p).is_match(text.as_bytes());
                let theirs = regex::Regex::new(&p).unwrap().is_match(&text);
                prop_assert_eq!(ours, theirs, "pattern {:?} text {:?}", p, text);
            }
        }
    }
}
