//! restic-compatible include/exclude patterns.
//!
//! This module reproduces restic 0.14.0's `internal/filter` package together
//! with the pattern handling of `cmd/restic` (`--exclude`, `--iexclude`,
//! `--exclude-file`, `--iexclude-file`, `--exclude-if-present`,
//! `--exclude-caches`, `--exclude-larger-than`, and restore's
//! `--include`/`--iinclude`/`--exclude`/`--iexclude`).
//!
//! # Pattern syntax and semantics
//!
//! * A leading `!` negates a pattern. Within one [`PatternSet`] the *last*
//!   pattern that matches a path decides: a plain pattern selects it, a negated
//!   one deselects it again (restic's `filter.List`).
//! * The rest of the pattern is cleaned like Go's `filepath.Clean` (`//`
//!   collapsed, `.` and `..` resolved, trailing `/` dropped) and split on `/`.
//! * A component `**` matches any number (including zero) of path components.
//!   Any other component is matched against one path component with Go's
//!   `filepath.Match` rules: `*` (any run of bytes), `?` (one character),
//!   `[...]` classes with `^` negation and `lo-hi` ranges, and `\` escapes.
//!   Malformed components (an unclosed `[`, a trailing `\`, an empty class)
//!   are rejected when the pattern is parsed, with an error naming the
//!   pattern.
//! * A pattern starting with `/` is anchored at the root. Any other pattern
//!   may match starting at any component of the path.
//! * The pattern does not need to cover the whole path: it matches if it
//!   matches the path or any of its parents, so excluding `foo` also excludes
//!   `/x/foo/bar`, and `/home/*` matches `/home/user/file`.
//! * Paths are split on `/` without being cleaned; the leading `/` of an
//!   absolute path is a component of its own that only an absolute pattern can
//!   match. An empty path never matches.
//! * Case-insensitive sets (`--iexclude`, `--iinclude`) lower-case both the
//!   patterns and the paths exactly like Go's `strings.ToLower` (simple
//!   per-character mapping; invalid UTF-8 bytes become U+FFFD).
//!
//! Matching works on bytes, so non-UTF-8 file names are handled exactly as
//! restic handles them ([`PatternSet::matches_path`] /
//! [`PatternSet::matches_bytes`]).
//!
//! # Faithfully reproduced quirks of restic 0.14
//!
//! restic expands each `**` into 0..n single-component wildcards with an upper
//! bound computed from the number of path components *before* the other `**`
//! are expanded, which treats every not-yet-expanded `**` as if it occupied one
//! component. The visible effect is with several `**`: `/**/a/**` matches
//! `/x/a/b` but not `/x/a` (yet `/a/**` matches `/a`), and the relative
//! `a/**/b/**` matches `/a/x/b` but not the relative path `a/x/b`. This module
//! gives exactly the same answers (checked against a literal port of restic's
//! algorithm in the tests), without restic's exponential expansion.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a pattern component is malformed (Go's `filepath.ErrBadPattern`, with
/// the reason spelled out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPattern {
    #[error("character class is not closed with ']'")]
    UnclosedClass,
    #[error("malformed character class (empty, or unescaped '-' or ']')")]
    MalformedClass,
    #[error("trailing backslash")]
    TrailingBackslash,
    #[error("invalid UTF-8 in character class")]
    InvalidUtf8,
}

/// Errors from parsing patterns, reading pattern files and option values.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// [`Pattern::parse`] was given the empty string.
    #[error("empty pattern")]
    Empty,
    /// A component of the pattern is not a valid `filepath.Match` pattern.
    #[error("invalid pattern {pattern:?}: {reason} in {component:?}")]
    Invalid {
        pattern: String,
        component: String,
        reason: BadPattern,
    },
    /// A pattern file could not be read.
    #[error("reading pattern file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of a pattern file is not UTF-8 (restic would use the raw bytes).
    #[error("pattern file {}: line {line} is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// A malformed `--exclude-if-present` value.
    #[error("invalid --exclude-if-present value {spec:?}: {reason}")]
    ExcludeIfPresent { spec: String, reason: &'static str },
    /// A malformed size such as for `--exclude-larger-than`.
    #[error("invalid size {value:?}: {reason}")]
    InvalidSize { value: String, reason: String },
}

mod files;
#[cfg(test)]
mod files_tests;
mod gocompat;
mod present;
#[cfg(test)]
mod tests;

pub use files::{read_pattern_file, read_pattern_files};
use gocompat::*;
pub use present::{exceeds_size, parse_size, ExcludeIfPresent, TagFileWarning};

// ---------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------

/// One pre-compiled pattern component.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// `**`: any number of components.
    DoubleStar,
    /// Compared byte for byte (restic's `isSimple`; also the root marker `/`).
    Literal(Box<[u8]>),
    /// `*` (or `***`...): any name without `/`.
    AnyName,
    /// `*` followed by a literal: names ending in it.
    Suffix(Box<[u8]>),
    /// A literal followed by `*`: names starting with it.
    Prefix(Box<[u8]>),
    /// Anything else: full `filepath.Match`.
    Glob(Box<[u8]>),
}

fn has_meta(s: &[u8]) -> bool {
    s.iter()
        .any(|b| matches!(b, b'\\' | b'[' | b']' | b'*' | b'?'))
}

impl Part {
    /// Compiles a component that is known to be syntactically valid.
    fn compile(comp: &str) -> Part {
        let b = comp.as_bytes();
        if comp.is_empty() || comp == "**" {
            return Part::DoubleStar;
        }
        if !has_meta(b) {
            return Part::Literal(b.into());
        }
        if b.iter().all(|&c| c == b'*') {
            return Part::AnyName;
        }
        if let Some(rest) = b.strip_prefix(b"*") {
            if !has_meta(rest) {
                return Part::Suffix(rest.into());
            }
        }
        if let Some(rest) = b.strip_suffix(b"*") {
            if !has_meta(rest) {
                return Part::Prefix(rest.into());
            }
        }
        Part::Glob(b.into())
    }

    /// Whether this (non-`**`) part matches one path component.
    #[inline]
    fn matches(&self, comp: &[u8]) -> bool {
        match self {
            Part::Literal(l) => **l == *comp,
            Part::AnyName | Part::DoubleStar => !comp.contains(&b'/'),
            Part::Suffix(suf) => {
                comp.ends_with(suf) && !comp[..comp.len() - suf.len()].contains(&b'/')
            }
            Part::Prefix(pre) => comp.starts_with(pre) && !comp[pre.len()..].contains(&b'/'),
            // Validated at parse time, so an error cannot happen here.
            Part::Glob(g) => go_match(g, comp).unwrap_or(false),
        }
    }
}

/// A parsed restic pattern (see the [module documentation](self)).
#[derive(Clone, Debug)]
pub struct Pattern {
    original: String,
    negated: bool,
    absolute: bool,
    parts: Box<[Part]>,
    /// Number of parts that are not `**`.
    n_fixed: usize,
    /// Number of `**` parts.
    n_dstar: usize,
    /// Index of the first `**`, or `parts.len()`.
    first_dstar: usize,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Pattern {
    /// Parses and validates a pattern; a leading `!` negates it.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let (negated, body) = match s.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let cleaned = go_clean(body);
        let absolute = cleaned.starts_with('/');
        let mut parts = Vec::new();
        for (i, comp) in cleaned.split('/').enumerate() {
            if i == 0 && comp.is_empty() {
                parts.push(Part::Literal(Box::from(&b"/"[..])));
                continue;
            }
            if !comp.is_empty() && comp != "**" && has_meta(comp.as_bytes()) {
                if let Err(reason) = go_match(comp.as_bytes(), b"") {
                    return Err(PatternError::Invalid {
                        pattern: s.to_string(),
                        component: comp.to_string(),
                        reason,
                    });
                }
            }
            parts.push(Part::compile(comp));
        }
        let n_dstar = parts.iter().filter(|p| **p == Part::DoubleStar).count();
        let first_dstar = parts
            .iter()
            .position(|p| *p == Part::DoubleStar)
            .unwrap_or(parts.len());
        Ok(Pattern {
            original: s.to_string(),
            negated,
            absolute,
            n_fixed: parts.len() - n_dstar,
            n_dstar,
            first_dstar,
            parts: parts.into_boxed_slice(),
        })
    }

    /// The pattern as given (including a leading `!`).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Whether the pattern starts with `!`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether the pattern is anchored at the root (starts with `/`).
    pub fn is_absolute(&self) -> bool {
        self.absolute
    }

    /// restic's `filter.Match`: whether the pattern matches the path or one
    /// of its parents. The negation flag is ignored here; it only matters in a
    /// [`PatternSet`].
    pub fn matches(&self, path: &str) -> bool {
        self.matches_bytes(path.as_bytes())
    }

    /// [`Pattern::matches`] for a raw (possibly non-UTF-8) path.
    pub fn matches_bytes(&self, path: &[u8]) -> bool {
        !path.is_empty() && with_components(path, |strs| self.match_components(strs))
    }

    /// restic's `filter.ChildMatch`: whether children of `dir` could match.
    /// Always true for relative patterns.
    pub fn child_may_match(&self, dir: &str) -> bool {
        !dir.is_empty() && with_components(dir.as_bytes(), |strs| self.child_components(strs))
    }

    fn match_components(&self, strs: &[&[u8]]) -> bool {
        let s = strs.len();
        let n = self.n_fixed;
        let k = self.n_dstar;
        if s == 0 {
            return false;
        }
        // A relative pattern never matches the root marker of an absolute path.
        let min_off = usize::from(!self.absolute && strs[0] == b"/");
        if k == 0 {
            if n > s {
                return false;
            }
            if self.absolute {
                return self.window_matches(strs, 0);
            }
            return (min_off..=s - n).any(|o| self.window_matches(strs, o));
        }
        // restic only expands the first `**` if the pattern (with that `**`
        // counting as nothing) fits into the path.
        if n + k > s + 1 {
            return false;
        }
        if n == 0 {
            // Only `**`s: restic needs a window of at least one component.
            return s > min_off;
        }
        if self.absolute {
            return self.greedy(strs, 0);
        }
        (min_off..=s - n).any(|o| self.greedy(strs, o))
    }

    /// All parts (no `**`) matched against `strs[o..]`.
    fn window_matches(&self, strs: &[&[u8]], o: usize) -> bool {
        self.parts.iter().zip(&strs[o..]).all(|(p, c)| p.matches(c))
    }

    /// Whether the pattern (with `**`) matches a window starting at `o`.
    ///
    /// restic enumerates the star counts `i_1..i_k` of the `k` double stars
    /// under the constraints `n + (k - j) + (i_1 + .. + i_j) <= s` for every
    /// `j`, then matches the expanded pattern as a window at `o`. All these are
    /// upper bounds on prefix sums of the gaps, and placing every fixed segment
    /// at its earliest possible position (giving the whole gap of a run of
    /// `**` to its last one) minimises all prefix sums at once, so it suffices
    /// to check that one placement.
    fn greedy(&self, strs: &[&[u8]], o: usize) -> bool {
        let parts = &self.parts[..];
        let (s, n, k) = (strs.len(), self.n_fixed, self.n_dstar);
        let mut pos = o;
        let mut idx = 0;
        // The leading fixed segment is anchored at `o`.
        while idx < parts.len() && parts[idx] != Part::DoubleStar {
            if pos >= s || !parts[idx].matches(strs[pos]) {
                return false;
            }
            pos += 1;
            idx += 1;
        }
        let mut j = 0; // double stars handled so far
        let mut prefix = 0; // components consumed by them
        while idx < parts.len() {
            let run_start = idx;
            while idx < parts.len() && parts[idx] == Part::DoubleStar {
                idx += 1;
            }
            let run = idx - run_start;
            // The first `**` of the run expands to nothing.
            if n + (k - (j + 1)) + prefix > s {
                return false;
            }
            let seg_start = idx;
            while idx < parts.len() && parts[idx] != Part::DoubleStar {
                idx += 1;
            }
            let seg = &parts[seg_start..idx];
            j += run;
            if seg.is_empty() {
                // Trailing `**`s expand to nothing.
                break;
            }
            let Some(q) = (pos..=s.saturating_sub(seg.len()))
                .find(|&q| seg.iter().zip(&strs[q..]).all(|(p, c)| p.matches(c)))
            else {
                return false;
            };
            let gap = q - pos;
            if n + (k - j) + prefix + gap > s {
                return false;
            }
            prefix += gap;
            pos = q + seg.len();
        }
        true
    }

    fn child_components(&self, strs: &[&[u8]]) -> bool {
        if !self.absolute {
            // A relative pattern can always match further down.
            return true;
        }
        // Compare the pattern prefix up to the first `**` with the path.
        let m = strs.len().min(self.first_dstar);
        self.parts[..m]
            .iter()
            .zip(&strs[..m])
            .all(|(p, c)| p.matches(c))
    }
}

/// Number of path components split without allocating.
const INLINE_COMPONENTS: usize = 64;

/// Splits a path like restic's `splitPath` (no cleaning; a leading empty
/// component becomes the root marker `/`) and hands the components to `f`.
fn with_components<R>(path: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let mut inline: [&[u8]; INLINE_COMPONENTS] = [&[]; INLINE_COMPONENTS];
    let mut n = 0;
    let mut spill: Vec<&[u8]> = Vec::new();
    for (i, comp) in path.split(|&b| b == b'/').enumerate() {
        let comp: &[u8] = if i == 0 && comp.is_empty() {
            b"/"
        } else {
            comp
        };
        if n < INLINE_COMPONENTS {
            inline[n] = comp;
            n += 1;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline);
            }
            spill.push(comp);
        }
    }
    if spill.is_empty() {
        f(&inline[..n])
    } else {
        f(&spill)
    }
}

// ---------------------------------------------------------------------------
// Pattern sets
// ---------------------------------------------------------------------------

/// One restic pattern list: negations act within the list only.
#[derive(Clone, Debug)]
struct Group {
    case_insensitive: bool,
    has_negated: bool,
    patterns: Vec<Pattern>,
}

impl Group {
    /// restic's `filter.List`: the last matching pattern decides.
    fn matches(&self, strs: &[&[u8]]) -> bool {
        self.patterns
            .iter()
            .rev()
            .find(|p| p.match_components(strs))
            .is_some_and(|p| !p.negated)
    }

    /// restic's `filter.ListWithChild`.
    fn matches_with_child(&self, strs: &[&[u8]]) -> (bool, bool) {
        let mut matched = false;
        let mut child = false;
        for p in &self.patterns {
            if p.negated {
                if (matched || child) && p.match_components(strs) {
                    matched = false;
                    child = false;
                }
            } else {
                matched = matched || p.match_components(strs);
                child = child || p.child_components(strs);
                if matched && child && !self.has_negated {
                    break;
                }
            }
        }
        (matched, child)
    }
}

/// A set of restic patterns, e.g. all `--exclude`/`--exclude-file` patterns
/// plus all `--iexclude`/`--iexclude-file` patterns of one command.
///
/// Like restic, case-sensitive and case-insensitive patterns form two
/// separate lists (a `!pattern` only overrides patterns of its own list); a
/// path matches the set if it matches either list.
#[derive(Clone, Debug, Default)]
pub struct PatternSet {
    groups: Vec<Group>,
}

impl PatternSet {
    /// Parses patterns (empty strings are skipped, like restic). Case-
    /// insensitive sets lower-case patterns and paths. The first invalid
    /// pattern is reported.
    pub fn new(patterns: &[String], case_insensitive: bool) -> Result<PatternSet, PatternError> {
        let mut parsed = Vec::with_capacity(patterns.len());
        for s in patterns.iter().filter(|s| !s.is_empty()) {
            // Validate (and report errors) on the pattern as given.
            let p = Pattern::parse(s)?;
            let p = if case_insensitive {
                let mut lower = Pattern::parse(&go_lower_str(s))?;
                lower.original.clone_from(s);
                lower
            } else {
                p
            };
            parsed.push(p);
        }
        let mut set = PatternSet::default();
        if !parsed.is_empty() {
            set.groups.push(Group {
                case_insensitive,
                has_negated: parsed.iter().any(|p| p.negated),
                patterns: parsed,
            });
        }
        Ok(set)
    }

    /// Adds the patterns of `other` after those of `self`. Patterns join the
    /// list of the same case sensitivity (so `!` negations in a later
    /// `--exclude-file` override earlier `--exclude` patterns, as in restic).
    pub fn extend(&mut self, other: PatternSet) {
        for g in other.groups {
            match self
                .groups
                .iter_mut()
                .find(|m| m.case_insensitive == g.case_insensitive)
            {
                Some(mine) => {
                    mine.has_negated |= g.has_negated;
                    mine.patterns.extend(g.patterns);
                }
                None => self.groups.push(g),
            }
        }
    }

    /// True if the set has no patterns (it then matches nothing).
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.patterns.is_empty())
    }

    /// Number of patterns in the set.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.patterns.len()).sum()
    }

    /// The patterns (case-sensitive list first if it was created first).
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.groups.iter().flat_map(|g| g.patterns.iter())
    }

    /// True if the absolute path (or one of its parents) is matched (taking
    /// negations into account).
    pub fn matches(&self, path: &str) -> bool {
        self.matches_bytes(path.as_bytes())
    }

    /// [`PatternSet::matches`] for a file system path, using its raw bytes.
    pub fn matches_path(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        self.matches_bytes(path.as_os_str().as_bytes())
    }

    /// [`PatternSet::matches`] for a raw (possibly non-UTF-8) path.
    pub fn matches_bytes(&self, path: &[u8]) -> bool {
        self.run(path, |g, strs| g.matches(strs))
    }

    /// For include filters: true if some descendant of `dir` could match (so a
    /// walker should descend), restic's `childMayMatch`. Relative patterns can
    /// always match below; negated patterns that match `dir` itself cancel.
    pub fn child_may_match(&self, dir: &str) -> bool {
        self.matches_with_child(dir).1
    }

    /// restic's `ListWithChild`: `(matches, child_may_match)` in one pass.
    pub fn matches_with_child(&self, path: &str) -> (bool, bool) {
        self.matches_with_child_bytes(path.as_bytes())
    }

    /// [`PatternSet::matches_with_child`] for a raw path.
    pub fn matches_with_child_bytes(&self, path: &[u8]) -> (bool, bool) {
        let mut result = (false, false);
        self.run(path, |g, strs| {
            let (m, c) = g.matches_with_child(strs);
            result.0 |= m;
            result.1 |= c;
            result.0 && result.1
        });
        result
    }

    /// Calls `f` for each non-empty group with the split (and, if needed,
    /// lower-cased) path until it returns true.
    fn run(&self, path: &[u8], mut f: impl FnMut(&Group, &[&[u8]]) -> bool) -> bool {
        if path.is_empty() {
            return false;
        }
        let mut lowered: Option<Cow<'_, [u8]>> = None;
        for g in self.groups.iter().filter(|g| !g.patterns.is_empty()) {
            let p: &[u8] = if g.case_insensitive {
                lowered.get_or_insert_with(|| go_lower(path))
            } else {
                path
            };
            if with_components(p, |strs| f(g, strs)) {
                return true;
            }
        }
        false
    }
}
