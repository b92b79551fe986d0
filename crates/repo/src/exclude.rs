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
use std::io::Read;
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

// ---------------------------------------------------------------------------
// Go compatibility helpers: UTF-8 decoding, ToLower, filepath.Match, Clean.
// ---------------------------------------------------------------------------

const RUNE_ERROR: u32 = 0xFFFD;

/// Go's `utf8.DecodeRune`: invalid or truncated sequences decode as
/// (U+FFFD, 1); the empty input as (U+FFFD, 0).
fn decode_rune(s: &[u8]) -> (u32, usize) {
    const ERR: (u32, usize) = (RUNE_ERROR, 1);
    let Some(&b0) = s.first() else {
        return (RUNE_ERROR, 0);
    };
    if b0 < 0x80 {
        return (u32::from(b0), 1);
    }
    let (len, lo, hi) = match b0 {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return ERR,
    };
    if s.len() < len || s[1] < lo || s[1] > hi {
        return ERR;
    }
    if s[2..len].iter().any(|&b| b & 0xC0 != 0x80) {
        return ERR;
    }
    let mut r = u32::from(b0) & (0x7F >> len);
    for &b in &s[1..len] {
        r = (r << 6) | u32::from(b & 0x3F);
    }
    (r, len)
}

/// Go's `unicode.ToLower` (simple case mapping).
fn lower_rune(r: u32) -> u32 {
    let Some(c) = char::from_u32(r) else {
        return r;
    };
    // Rust's full mapping differs from Go's simple one only for U+0130, which
    // becomes "i\u{307}"; Go maps it to plain 'i', the first char here.
    c.to_lowercase().next().map_or(r, u32::from)
}

fn push_rune(out: &mut Vec<u8>, r: u32) {
    let c = char::from_u32(r).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Go's `strings.ToLower` on arbitrary bytes. Borrows when nothing changes.
fn go_lower(s: &[u8]) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        if s.iter().any(u8::is_ascii_uppercase) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    let mut i = 0;
    while i < s.len() {
        let (r, n) = decode_rune(&s[i..]);
        if (r == RUNE_ERROR && n == 1) || lower_rune(r) != r {
            break;
        }
        i += n;
    }
    if i == s.len() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    out.extend_from_slice(&s[..i]);
    while i < s.len() {
        let (r, n) = decode_rune(&s[i..]);
        push_rune(&mut out, lower_rune(r));
        i += n;
    }
    Cow::Owned(out)
}

fn go_lower_str(s: &str) -> String {
    match go_lower(s.as_bytes()) {
        Cow::Borrowed(_) => s.to_string(),
        // Lower-casing valid UTF-8 rune by rune yields valid UTF-8.
        Cow::Owned(v) => String::from_utf8(v)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Go's `filepath.Match` (Unix, Go >= 1.16: malformed patterns are always
/// reported, whatever the name).
fn go_match(pattern: &[u8], name: &[u8]) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // Trailing * matches the rest of the name unless it has a '/'.
            return Ok(!name.contains(&b'/'));
        }
        // Look for a match at the current position; if this is the last
        // chunk it must exhaust the name.
        if let Some(t) = match_chunk(chunk, name)? {
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            // Look for a match skipping i+1 bytes; '*' cannot skip '/'.
            for (i, &c) in name.iter().enumerate() {
                if c == b'/' {
                    break;
                }
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pattern.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
            }
        }
        // Before returning false, check that the rest of the pattern is
        // syntactically valid.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Next segment of the pattern: a non-star string possibly preceded by stars.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut p = pattern;
    let mut star = false;
    while let [b'*', rest @ ..] = p {
        p = rest;
        star = true;
    }
    let mut inrange = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            // A trailing backslash is reported by match_chunk.
            b'\\' if i + 1 < p.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Whether `chunk` (single-character operators only) matches the beginning of
/// `s`; returns the rest of `s`. The whole chunk is always parsed, so syntax
/// errors are reported even when the match already failed.
fn match_chunk<'a>(chunk: &[u8], s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(&c0) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c0 {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (c, n) = decode_rune(s);
                    r = c;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let mut c = c0;
                if c == b'\\' {
                    chunk = &chunk[1..];
                    match chunk.first() {
                        Some(&e) => c = e,
                        None => return Err(BadPattern::TrailingBackslash),
                    }
                }
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// A possibly escaped character of a character class. The returned rest is
/// never empty (a class must still be closed).
fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
    let mut chunk = match chunk.first() {
        None => return Err(BadPattern::UnclosedClass),
        Some(b'-' | b']') => return Err(BadPattern::MalformedClass),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern::UnclosedClass);
        }
    }
    let (r, n) = decode_rune(chunk);
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern::UnclosedClass);
    }
    if r == RUNE_ERROR && n == 1 {
        return Err(BadPattern::InvalidUtf8);
    }
    Ok((r, rest))
}

/// Go's `filepath.Clean` for Unix paths.
fn go_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            _ => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

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

// ---------------------------------------------------------------------------
// Pattern files
// ---------------------------------------------------------------------------

/// Reads an exclude file like restic: one pattern per line, `#` comments,
/// blank lines skipped, surrounding whitespace trimmed, `$VAR`/`${VAR}`
/// expanded from the environment (unset variables become empty, `$$` is a
/// literal `$`). A UTF-8 BOM is skipped and UTF-16 files with a BOM are
/// decoded, like restic's `textfile.Read`.
pub fn read_pattern_file(path: &Path) -> Result<Vec<String>, PatternError> {
    let data = std::fs::read(path).map_err(|source| PatternError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pattern_file(&data, path, getenv_or_dollar)
}

/// Reads several exclude files, concatenating their patterns in order.
pub fn read_pattern_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<String>, PatternError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(read_pattern_file(p.as_ref())?);
    }
    Ok(out)
}

/// restic's `getenvOrDollar`.
fn getenv_or_dollar(name: &str) -> String {
    if name == "$" {
        return "$".to_string();
    }
    if name.is_empty() || name.contains(['=', '\0']) {
        return String::new();
    }
    std::env::var_os(name)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// restic's `textfile.Decode`: strips a UTF-8 BOM, decodes UTF-16 with BOM.
fn decode_text(data: &[u8]) -> Cow<'_, [u8]> {
    if let Some(rest) = data.strip_prefix(b"\xEF\xBB\xBF") {
        return Cow::Borrowed(rest);
    }
    let big_endian = match data {
        [0xFE, 0xFF, ..] => true,
        [0xFF, 0xFE, ..] => false,
        _ => return Cow::Borrowed(data),
    };
    let units = data[2..].chunks(2).map(|c| match c {
        [a, b] if big_endian => u16::from_be_bytes([*a, *b]),
        [a, b] => u16::from_le_bytes([*a, *b]),
        // A lone trailing byte decodes as U+FFFD.
        _ => 0xDC00,
    });
    let text: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    Cow::Owned(text.into_bytes())
}

fn parse_pattern_file(
    data: &[u8],
    path: &Path,
    lookup: impl Fn(&str) -> String,
) -> Result<Vec<String>, PatternError> {
    let data = decode_text(data);
    let mut out = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|_| PatternError::NotUtf8 {
            path: path.to_path_buf(),
            line: i + 1,
        })?;
        // Go's strings.TrimSpace and Rust's trim use the same White_Space set.
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(expand_vars(line, &lookup));
    }
    Ok(out)
}

/// Go's `os.Expand`.
fn expand_vars(s: &str, mapping: impl Fn(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut expanded = false;
    let mut i = 0;
    let mut j = 0;
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            expanded = true;
            out.push_str(&s[i..j]);
            let (name, w) = shell_name(&s[j + 1..]);
            if name.is_empty() && w > 0 {
                // Invalid syntax ("${" or "${}"): eat the characters.
            } else if name.is_empty() {
                // '$' not followed by a name: keep it.
                out.push('$');
            } else {
                out.push_str(&mapping(name));
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    if !expanded {
        return s.to_string();
    }
    out.push_str(&s[i..]);
    out
}

fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go's `getShellName`: the variable name at the start of `s` (non-empty)
/// and the number of bytes it takes.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(p) => (&s[1..p + 1], p + 2),
            None => ("", 1),
        };
    }
    if is_shell_special(b[0]) {
        return (&s[..1], 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..n], n)
}

// ---------------------------------------------------------------------------
// --exclude-if-present, --exclude-caches, --exclude-larger-than
// ---------------------------------------------------------------------------

/// A problem with a tag file that restic reports as a warning; the directory
/// is then not excluded.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TagFileWarning {
    /// The tag file.
    pub path: PathBuf,
    /// restic's warning text.
    pub message: String,
}

/// `--exclude-if-present NAME[:HEADER]`: a directory is excluded if it
/// contains file NAME (whose content starts with HEADER, if given).
///
/// Note restic's exact semantics (see [`ExcludeIfPresent::excludes_path`]):
/// it excludes the *contents* of such a directory except the tag file itself;
/// the directory and its tag file are still backed up.
#[derive(Clone, Debug)]
pub struct ExcludeIfPresent {
    pub filename: String,
    /// `None` if no header was given (an empty header counts as none).
    pub header: Option<Vec<u8>>,
}

impl ExcludeIfPresent {
    /// The spec `--exclude-caches` adds (Cache Directory Tagging Standard).
    pub const CACHEDIR_TAG: &'static str =
        "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

    /// Splits `NAME[:HEADER]` at the first `:`. Never fails; an empty NAME
    /// excludes nothing (use [`ExcludeIfPresent::try_parse`] to reject it
    /// like restic).
    pub fn parse(s: &str) -> ExcludeIfPresent {
        let (name, header) = match s.split_once(':') {
            Some((n, h)) => (n, h),
            None => (s, ""),
        };
        ExcludeIfPresent {
            filename: name.to_string(),
            header: (!header.is_empty()).then(|| header.as_bytes().to_vec()),
        }
    }

    /// Like [`ExcludeIfPresent::parse`], with restic's errors for an empty
    /// spec or an empty NAME.
    pub fn try_parse(s: &str) -> Result<ExcludeIfPresent, PatternError> {
        let reason = if s.is_empty() {
            "name for exclusion tagfile is empty"
        } else if s.starts_with(':') {
            "no name for exclusion tagfile provided"
        } else {
            return Ok(Self::parse(s));
        };
        Err(PatternError::ExcludeIfPresent {
            spec: s.to_string(),
            reason,
        })
    }

    /// `--exclude-caches`.
    pub fn cachedir_tag() -> ExcludeIfPresent {
        Self::parse(Self::CACHEDIR_TAG)
    }

    /// Whether `dir` contains the tag file (with the right header), silently
    /// treating problems as "no".
    pub fn excludes_dir(&self, dir: &Path) -> bool {
        self.check_dir(dir).unwrap_or(false)
    }

    /// restic's `isDirExcludedByFile`: `Ok(true)` if `dir` holds the tag file
    /// (any kind of entry, found with lstat) and, if a header is set, the file
    /// starts with it. `Err` is a warning restic would print (the directory is
    /// then not excluded).
    pub fn check_dir(&self, dir: &Path) -> Result<bool, TagFileWarning> {
        if self.filename.is_empty() {
            return Ok(false);
        }
        let tf = dir.join(&self.filename);
        let warn = |message: String| TagFileWarning {
            path: tf.clone(),
            message,
        };
        match std::fs::symlink_metadata(&tf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(warn(format!("could not access exclusion tagfile: {e}"))),
        }
        let Some(header) = self.header.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(true);
        };
        let mut f = std::fs::File::open(&tf)
            .map_err(|e| warn(format!("could not open exclusion tagfile: {e}")))?;
        let mut buf = vec![0u8; header.len()];
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(warn(format!(
                        "could not read signature from exclusion tagfile {:?}: {e}",
                        tf.display().to_string()
                    )))
                }
            }
        }
        if got == 0 {
            return Err(warn(format!(
                "invalid (too short) signature in exclusion tagfile {:?}",
                tf.display().to_string()
            )));
        }
        if got < buf.len() {
            return Err(warn(format!(
                "could not read signature from exclusion tagfile {:?}: unexpected EOF",
                tf.display().to_string()
            )));
        }
        if buf != header {
            return Err(warn(format!(
                "invalid signature in exclusion tagfile {:?}",
                tf.display().to_string()
            )));
        }
        Ok(true)
    }

    /// restic's `isExcludedByFile` for a backup item: true if the item's
    /// parent directory is tagged ([`ExcludeIfPresent::excludes_dir`]) and
    /// the item is not the tag file itself. A walker that uses this keeps the
    /// tagged directory and its tag file, and drops everything else in it.
    pub fn excludes_path(&self, path: &Path) -> bool {
        if self.filename.is_empty() {
            return false;
        }
        if path.file_name() == Some(std::ffi::OsStr::new(&self.filename)) {
            return false;
        }
        let dir = path.parent().unwrap_or(path);
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        self.excludes_dir(dir)
    }
}

/// restic's `parseSizeStr` for `--exclude-larger-than` (and similar
/// options): a decimal number with an optional unit suffix `b`, `k`, `m`,
/// `g`, `t` (either case, powers of 1024). Unlike restic, negative values and
/// overflowing values are rejected instead of wrapping.
pub fn parse_size(s: &str) -> Result<u64, PatternError> {
    let err = |reason: &str| PatternError::InvalidSize {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let Some(&last) = s.as_bytes().last() else {
        return Err(err("expected size, got empty string"));
    };
    let unit: u64 = match last {
        b'b' | b'B' => 1,
        b'k' | b'K' => 1 << 10,
        b'm' | b'M' => 1 << 20,
        b'g' | b'G' => 1 << 30,
        b't' | b'T' => 1 << 40,
        _ => 0,
    };
    let num = if unit == 0 { s } else { &s[..s.len() - 1] };
    let value: i64 = num
        .parse()
        .map_err(|e: std::num::ParseIntError| err(&e.to_string()))?;
    let value = u64::try_from(value).map_err(|_| err("size must not be negative"))?;
    value
        .checked_mul(unit.max(1))
        .ok_or_else(|| err("size is too large"))
}

/// restic's `rejectBySize`: whether a non-directory of `size` bytes is
/// excluded by `--exclude-larger-than max` (directories never are).
pub fn exceeds_size(size: u64, is_dir: bool, max: u64) -> bool {
    !is_dir && size > max
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// restic's `filter.Match`, including its "empty pattern matches
    /// everything" rule.
    fn restic_match(pattern: &str, path: &str) -> bool {
        if pattern.is_empty() {
            return true;
        }
        Pattern::parse(pattern).unwrap().matches(path)
    }

    fn restic_child_match(pattern: &str, path: &str) -> bool {
        if pattern.is_empty() {
            return true;
        }
        Pattern::parse(pattern).unwrap().child_may_match(path)
    }

    fn set(patterns: &[&str], ci: bool) -> PatternSet {
        let v: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        PatternSet::new(&v, ci).unwrap()
    }

    // restic 0.14.0 internal/filter/filter_test.go: matchTests.
    const MATCH_TESTS: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("", "foo", true),
        ("", "/x/y/z/foo", true),
        ("*.go", "/foo/bar/test.go", true),
        ("*.c", "/foo/bar/test.go", false),
        ("*", "/foo/bar/test.go", true),
        ("**", "/foo/bar/test.go", true),
        ("foo*", "/foo/bar/test.go", true),
        ("bar*", "/foo/bar/test.go", true),
        ("/bar*", "/foo/bar/test.go", false),
        ("bar/*", "/foo/bar/test.go", true),
        ("baz/*", "/foo/bar/test.go", false),
        ("bar/test.go", "/foo/bar/test.go", true),
        ("bar/*.go", "/foo/bar/test.go", true),
        ("ba*/*.go", "/foo/bar/test.go", true),
        ("bb*/*.go", "/foo/bar/test.go", false),
        ("test.*", "/foo/bar/test.go", true),
        ("tesT.*", "/foo/bar/test.go", false),
        ("bar/*", "/foo/bar/baz", true),
        ("bar", "/foo/bar", true),
        ("/foo/bar", "/foo/bar", true),
        ("/foo/bar/", "/foo/bar", true),
        ("/foo/bar", "/foo/baz", false),
        ("/foo/bar", "/foo/baz/", false),
        ("/foo///bar", "/foo/bar", true),
        ("/foo/../bar", "/foo/bar", false),
        ("/foo/../bar", "/bar", true),
        ("/foo", "/foo/baz", true),
        ("/foo/", "/foo/baz", true),
        ("/foo/*", "/foo", false),
        ("/foo/*", "/foo/baz", true),
        ("bar", "/foo/bar/baz", true),
        ("bar", "/foo/bar/test.go", true),
        ("/foo/*test.*", "/foo/bar/test.go", false),
        ("/foo/*/test.*", "/foo/bar/test.go", true),
        ("/foo/*/bar/test.*", "/foo/bar/test.go", false),
        ("/*/*/bar/test.*", "/foo/bar/test.go", false),
        ("/*/*/bar/test.*", "/foo/bar/baz/test.go", false),
        ("/*/*/baz/test.*", "/foo/bar/baz/test.go", true),
        ("/*/foo/bar/test.*", "/foo/bar/baz/test.go", false),
        ("/foo/bar/test.*", "bar/baz/test.go", false),
        ("/x/y/bar/baz/test.*", "bar/baz/test.go", false),
        ("/x/y/bar/baz/test.c", "bar/baz/test.go", false),
        ("baz/test.*", "bar/baz/test.go", true),
        ("baz/tesT.*", "bar/baz/test.go", false),
        ("test.go", "bar/baz/test.go", true),
        ("*.go", "bar/baz/test.go", true),
        ("*.c", "bar/baz/test.go", false),
        ("sdk", "/foo/bar/sdk", true),
        ("sdk", "/foo/bar/sdk/test/sdk_foo.go", true),
        (
            "sdk/*/cpp/*/*vars*.html",
            "/usr/share/doc/libreoffice/sdk/docs/cpp/ref/a00517.html",
            false,
        ),
        (
            "foo/**/bar/*.go",
            "/home/user/foo/work/special/project/bar/test.go",
            true,
        ),
        ("foo/**/bar/*.go", "/home/user/foo/bar/test.go", true),
        ("foo/**/bar/*.go", "x/foo/bar/test.go", true),
        ("foo/**/bar/*.go", "foo/bar/test.go", true),
        ("foo/**/bar/*.go", "foo/bar/baz/bar/test.go", true),
        ("foo/**/bar/*.go", "/home/user/foo/test.c", false),
        ("foo/**/bar/*.go", "bar/foo/main.go", false),
        ("foo/**/bar/*.go", "/foo/bar/main.go", true),
        ("foo/**/bar/*.go", "bar/main.go", false),
        ("foo/**/bar", "/home/user/foo/x/y/bar", true),
        ("foo/**/bar", "/home/user/foo/x/y/bar/main.go", true),
        ("foo/**/bar/**/x", "/home/user/foo/bar/x", true),
        (
            "foo/**/bar/**/x",
            "/home/user/foo/blaaa/blaz/bar/shared/work/x",
            true,
        ),
        ("user/**/important*", "/home/user/work/x/y/hidden/x", false),
        (
            "user/**/hidden*/**/c",
            "/home/user/work/x/y/hidden/z/a/b/c",
            true,
        ),
        ("c:/foo/*test.*", "c:/foo/bar/test.go", false),
        ("c:/foo", "c:/foo/bar", true),
        ("c:/foo/", "c:/foo/bar", true),
        ("c:/foo/*/test.*", "c:/foo/bar/test.go", true),
        ("c:/foo/*/bar/test.*", "c:/foo/bar/test.go", false),
    ];

    // More cases: classes, escapes, `?`, `**` placement, cleaning, quirks.
    // Every expectation is also checked against the literal port of restic's
    // algorithm below.
    const MORE_MATCH_TESTS: &[(&str, &str, bool)] = &[
        // character classes
        ("/home/[uU]ser/?.go", "/home/user/F.go", true),
        ("/home/[uU]ser/?.go", "/home/User/F.go", true),
        ("/home/[uU]ser/?.go", "/home/xser/F.go", false),
        ("/home/[uU]ser/?.go", "/home/user/FF.go", false),
        ("[a-c]*.txt", "/x/b1.txt", true),
        ("[a-c]*.txt", "/x/d1.txt", false),
        ("[^a-c]*.txt", "/x/d1.txt", true),
        ("[^a-c]*.txt", "/x/a1.txt", false),
        ("[a-cx-z]", "/q/y", true),
        ("[a-cx-z]", "/q/m", false),
        ("[\\]]", "/q/]", true),
        ("[\\-]", "/q/-", true),
        ("[a\\-c]", "/q/b", false),
        ("?", "/q/é", true),
        ("??", "/q/é", false),
        ("[à-ü]", "/q/é", true),
        ("[^é]", "/é", false),
        ("[^é]", "/q/é", true),
        // escapes
        ("\\*.go", "/x/*.go", true),
        ("\\*.go", "/x/a.go", false),
        ("a\\?", "/x/a?", true),
        ("a\\?", "/x/ab", false),
        ("\\[x]", "/y/[x]", true),
        ("\\a\\b", "/y/ab", true),
        // `*` within a component
        ("*", "/", true),
        ("a*b*c", "/x/abxbyc", true),
        ("a*b*c", "/x/abxbyd", false),
        ("*.tar.*", "/x/a.tar.gz", true),
        ("*x", "/a/x/b", true),
        // relative vs absolute, parents
        ("foo", "/foo", true),
        ("foo", "foo", true),
        ("foo", "/a/foo/b/c", true),
        ("foo", "/a/foobar", false),
        ("/foo", "foo", false),
        ("/foo", "/a/foo", false),
        ("/", "/anything/at/all", true),
        ("/", "/", true),
        ("a/b", "/x/a/b/c", true),
        ("a/b", "/x/a/c/b", false),
        ("./foo", "/x/foo", true),
        ("foo/./bar/../baz", "/x/foo/baz", true),
        ("../foo", "/x/foo", false),
        ("/../foo", "/foo/x", true),
        (".", "/x/./y", true),
        // `**`
        ("**", "/", true),
        ("**", "a", true),
        ("/**", "/x", true),
        ("/**", "/", true),
        ("**/foo", "/foo", true),
        ("**/foo", "/a/b/foo/c", true),
        ("**/foo", "/a/b/fo", false),
        ("/**/foo", "/a/b/foo", true),
        ("/**/foo", "/foo", true),
        ("/a/**", "/a", true),
        ("/a/**", "/a/b/c", true),
        ("/a/**", "/b", false),
        ("/a/**/b", "/a/b", true),
        ("/a/**/b", "/a/x/y/b/z", true),
        ("/a/**/b", "/x/a/b", false),
        ("a/**/b/**/c", "/a/b/c", true),
        ("a/**/b/**/c", "/a/x/b/y/c/z", true),
        ("a/**/b/**/c", "/a/x/c/y/b", false),
        ("a/**/**/b", "/a/b", true),
        ("a/**/**/b", "/a/x/y/b", true),
        ("**/**", "/a", true),
        ("**/**/**/**", "/", false),
        ("**/**/**", "/", true),
        // restic 0.14 quirks of several `**` (see module docs)
        ("/**/a/**", "/x/a", false),
        ("/**/a/**", "/x/a/b", true),
        ("/**/a/**", "/a", false),
        ("/**/a/**", "/a/b", true),
        ("a/**/b/**", "a/x/b", false),
        ("a/**/b/**", "/a/x/b", true),
        ("a/**/b/**", "a/x/b/c", true),
        ("a/b/**", "a/b", true),
        // unclean paths are not cleaned
        ("/foo/bar", "/foo//bar", false),
        ("foo/*", "/foo/", true),
    ];

    // restic 0.14.0 filter_test.go: childMatchTests.
    const CHILD_MATCH_TESTS: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("", "/foo", true),
        ("", "/x/y/z/foo", true),
        ("foo/bar", "/foo", true),
        ("baz/bar", "/foo", true),
        ("foo", "/foo/bar", true),
        ("bar", "/foo", true),
        ("baz", "/foo/bar", true),
        ("*", "/foo", true),
        ("*", "/foo/bar", true),
        ("/foo/bar", "/foo", true),
        ("/foo/bar/baz", "/foo", true),
        ("/foo/bar/baz", "/foo/bar", true),
        ("/foo/bar/baz", "/foo/baz", false),
        ("/foo/**/baz", "/foo/bar/baz", true),
        ("/foo/**/baz", "/foo/bar/baz/blah", true),
        ("/foo/**/qux", "/foo/bar/baz/qux", true),
        ("/foo/**/qux", "/foo/bar/baz", true),
        ("/foo/**/qux", "/foo/bar/baz/boo", true),
        ("/foo/**", "/foo/bar/baz", true),
        ("/foo/**", "/foo/bar", true),
        ("foo/**/bar/**/x", "/home/user/foo", true),
        ("foo/**/bar/**/x", "/home/user/foo/bar", true),
        (
            "foo/**/bar/**/x",
            "/home/user/foo/blaaa/blaz/bar/shared/work/x",
            true,
        ),
        ("/foo/*/qux", "/foo/bar", true),
        ("/foo/*/qux", "/foo/bar/boo", false),
        ("/foo/*/qux", "/foo/bar/boo/xx", false),
        ("/baz/bar", "/foo", false),
        ("/foo", "/foo/bar", true),
        ("/*", "/foo", true),
        ("/*", "/foo/bar", true),
        ("/foo", "/foo/bar", true),
        ("/**", "/foo", true),
        ("/*/**", "/foo", true),
        ("/*/**", "/foo/bar", true),
        ("/*/bar", "/foo", true),
        ("/bar/*", "/foo", false),
        ("/foo/*/baz", "/foo/bar", true),
        ("/foo/*/baz", "/foo/baz", true),
        ("/foo/*/baz", "/bar/baz", false),
        ("/**/*", "/foo", true),
        ("/**/bar", "/foo/bar", true),
        // more
        ("/home/[uU]ser/docs", "/home/User", true),
        ("/home/[uU]ser/docs", "/home/other", false),
        ("/home/user/docs", "/", false), // "/" splits into ["/", ""]
        ("/a/b", "/b", false),
        ("/a/**/c", "/b", false),
        ("/a/**/c", "/a/x/y/z", true),
    ];

    // restic 0.14.0 filter_test.go: filterListTests (patterns, path, match,
    // childMatch).
    #[allow(clippy::type_complexity)]
    const LIST_TESTS: &[(&[&str], &str, bool, bool)] = &[
        (&[], "/foo/bar/test.go", false, false),
        (&["*.go"], "/foo/bar/test.go", true, true),
        (&["*.go"], "/foo/bar", false, true),
        (&["*.c"], "/foo/bar/test.go", false, true),
        (&["*.go", "*.c"], "/foo/bar/test.go", true, true),
        (&["*"], "/foo/bar/test.go", true, true),
        (&["x"], "/foo/bar/test.go", false, true),
        (&["?"], "/foo/bar/test.go", false, true),
        (&["?", "x"], "/foo/bar/x", true, true),
        (&["/*/*/bar/test.*"], "/foo/bar/test.go", false, false),
        (&["/*/*/bar/test.*"], "/foo/bar/bar", false, true),
        (&["/*/*/bar/test.*", "*.go"], "/foo/bar/test.go", true, true),
        (&["", "*.c"], "/foo/bar/test.go", false, true),
        (&["!**", "*.go"], "/foo/bar/test.go", true, true),
        (&["!**", "*.c"], "/foo/bar/test.go", false, true),
        (&["/foo/*/test.*", "!*.c"], "/foo/bar/test.c", false, false),
        (&["/foo/*/test.*", "!*.c"], "/foo/bar/test.go", true, true),
        (
            &["/foo/*/*", "!test.*", "*.c"],
            "/foo/bar/test.go",
            false,
            true,
        ),
        (
            &["/foo/*/*", "!test.*", "*.c"],
            "/foo/bar/test.c",
            true,
            true,
        ),
        (
            &["/foo/*/*", "!test.*", "*.c"],
            "/foo/bar/file.go",
            true,
            true,
        ),
        (
            &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
            "/foo/other/test.go",
            true,
            true,
        ),
        (
            &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
            "/foo/bar",
            false,
            false,
        ),
        (
            &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
            "/foo/bar/test.go",
            false,
            false,
        ),
        (
            &["/**/*", "!/foo", "/foo/*", "!/foo/bar"],
            "/foo/bar/test.go/child",
            false,
            false,
        ),
        (
            &["/**/*", "!/foo", "/foo/*", "!/foo/bar", "/foo/bar/test*"],
            "/foo/bar/test.go/child",
            true,
            true,
        ),
        (&["/foo/bar/*"], "/foo", false, true),
        (&["/foo/bar/*", "!/foo/bar/[a-m]*"], "/foo", false, true),
        (&["/foo/**/test.c"], "/foo/bar/foo/bar/test.c", true, true),
        (&["/foo/*/test.c"], "/foo/bar/foo/bar/test.c", false, false),
        // more
        (&["/home/*/.cache"], "/home", false, true),
        (&["/home/*/.cache"], "/etc", false, false),
        (&["/home/*/.cache"], "/home/u/.cache/x", true, true),
        (&["*.o", "!keep.o"], "/src/keep.o", false, false),
        (&["*.o", "!keep.o"], "/src/other.o", true, true),
        (&["!*.o"], "/src/other.o", false, false),
        (&["*.o", "!keep.o", "keep.o"], "/src/keep.o", true, true),
        (
            &["/data", "!/data/important"],
            "/data/important/x",
            false,
            false,
        ),
        (&["/data", "!/data/important"], "/data/other", true, true),
        (&["/data", "!/data/important"], "/data", true, true),
        (&["/a/b", "/c/d"], "/a", false, true),
        (&["/a/b", "/c/d"], "/c", false, true),
        (&["/a/b", "/c/d"], "/e", false, false),
    ];

    #[test]
    fn exclude_match_table() {
        for &(pattern, path, want) in MATCH_TESTS.iter().chain(MORE_MATCH_TESTS) {
            assert_eq!(
                restic_match(pattern, path),
                want,
                "Match({pattern:?}, {path:?})"
            );
        }
    }

    #[test]
    fn exclude_match_table_agrees_with_reference() {
        for &(pattern, path, _) in MATCH_TESTS.iter().chain(MORE_MATCH_TESTS) {
            if pattern.is_empty() || path.is_empty() {
                continue;
            }
            let p = Pattern::parse(pattern).unwrap();
            with_components(path.as_bytes(), |strs| {
                assert_eq!(
                    p.match_components(strs),
                    reference::matches(&p.parts, strs),
                    "Match({pattern:?}, {path:?})"
                );
            });
        }
    }

    #[test]
    fn exclude_child_match_table() {
        for &(pattern, path, want) in CHILD_MATCH_TESTS {
            assert_eq!(
                restic_child_match(pattern, path),
                want,
                "ChildMatch({pattern:?}, {path:?})"
            );
            if !pattern.is_empty() && !path.is_empty() {
                let p = Pattern::parse(pattern).unwrap();
                with_components(path.as_bytes(), |strs| {
                    assert_eq!(
                        p.child_components(strs),
                        reference::child_matches(&p.parts, strs),
                        "ChildMatch({pattern:?}, {path:?}) vs reference"
                    );
                });
            }
        }
    }

    #[test]
    fn exclude_list_table() {
        for &(patterns, path, want_match, want_child) in LIST_TESTS {
            let s = set(patterns, false);
            assert_eq!(s.matches(path), want_match, "List({patterns:?}, {path:?})");
            assert_eq!(
                s.matches_with_child(path),
                (want_match, want_child),
                "ListWithChild({patterns:?}, {path:?})"
            );
            assert_eq!(s.child_may_match(path), want_child);
            // The same patterns in a case-insensitive set behave the same on
            // lower-case paths.
            let ci = set(patterns, true);
            assert_eq!(ci.matches_with_child(path), (want_match, want_child));
        }
    }

    #[test]
    fn exclude_empty_inputs() {
        assert!(matches!(Pattern::parse(""), Err(PatternError::Empty)));
        let s = set(&["", ""], false);
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert!(!s.matches("/foo"));
        assert!(!s.child_may_match("/foo"));
        let s = set(&["*"], false);
        assert!(!s.is_empty());
        assert!(!s.matches(""), "empty path never matches");
        assert_eq!(s.matches_with_child(""), (false, false));
        assert!(PatternSet::default().is_empty());
        assert!(!PatternSet::default().matches("/x"));
    }

    #[test]
    fn exclude_invalid_patterns() {
        for (pattern, component) in [
            ("test/[", "["),
            ("test/**/[", "["),
            ("[a", "[a"),
            ("/x/[]", "[]"),
            ("[]a]", "[]a]"),
            ("[^]", "[^]"),
            ("foo\\", "foo\\"),
            ("a[b-]c", "a[b-]c"),
            ("[a-", "[a-"),
            ("!x/*[", "*["),
            ("[\\", "[\\"),
            ("ok/a\\/b", "a\\"),
        ] {
            match Pattern::parse(pattern) {
                Err(e @ PatternError::Invalid { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("{pattern:?}")), "{msg}");
                    assert!(msg.contains(&format!("{component:?}")), "{msg}");
                }
                other => panic!("{pattern:?}: expected an error, got {other:?}"),
            }
            let v = vec!["ok".to_string(), pattern.to_string()];
            assert!(PatternSet::new(&v, false).is_err(), "{pattern:?}");
            assert!(PatternSet::new(&v, true).is_err(), "{pattern:?}");
        }
        let e = Pattern::parse("test/[").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid pattern \"test/[\": character class is not closed with ']' in \"[\""
        );
        // Valid odd ones.
        for ok in ["]", "a]", "[\\]]", "[!]", "[a-a]", "[z-a]", "\\\\", "a[*]b"] {
            assert!(Pattern::parse(ok).is_ok(), "{ok:?}");
        }
        assert!(Pattern::parse("[]]]").is_err());
        assert!(restic_match("[*]", "/x/*"));
        assert!(!restic_match("[*]", "/x/a"));
        assert!(!restic_match("[z-a]", "/x/m"));
    }

    #[test]
    fn exclude_go_match_direct() {
        // Go path/filepath match_test.go cases (Unix).
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
        ];
        for &(p, n, want) in cases {
            let got = go_match(p.as_bytes(), n.as_bytes()).map_err(|_| ());
            assert_eq!(got, want, "filepath.Match({p:?}, {n:?})");
        }
    }

    #[test]
    fn exclude_go_clean() {
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
        ] {
            assert_eq!(go_clean(input), want, "Clean({input:?})");
        }
    }

    #[test]
    fn exclude_case_insensitive() {
        let ci = set(&["*.JPG", "/Home/USER/Cache", "[A-C]x"], true);
        assert!(ci.matches("/photos/IMG_1.jpg"));
        assert!(ci.matches("/photos/img_1.JpG"));
        assert!(ci.matches("/home/user/cache/x"));
        assert!(ci.matches("/HOME/USER/CACHE"));
        assert!(ci.matches("/q/bX"));
        assert!(!ci.matches("/q/dx"));
        let cs = set(&["*.JPG"], false);
        assert!(!cs.matches("/photos/IMG_1.jpg"));
        assert!(cs.matches("/photos/IMG_1.JPG"));
        // Non-ASCII, Go's simple case mapping (U+0130 lowers to plain 'i').
        let ci = set(&["ÄRGER", "İstanbul"], true);
        assert!(ci.matches("/x/ärger"));
        assert!(ci.matches("/x/ÄrGeR/y"));
        assert!(ci.matches("/x/istanbul"));
        assert!(ci.matches("/x/İSTANBUL"));
        // The original spelling is kept for display.
        assert_eq!(ci.patterns().next().unwrap().as_str(), "ÄRGER");
        // Invalid UTF-8 bytes in a case-insensitive path become U+FFFD.
        let ci = set(&["a?b"], true);
        assert!(ci.matches_bytes(b"/x/A\xffB"));
        assert_eq!(
            &*go_lower(b"A\xff\xe2\x82B"),
            "a\u{fffd}\u{fffd}\u{fffd}b".as_bytes()
        );
        assert!(matches!(go_lower(b"/plain/path"), Cow::Borrowed(_)));
        assert!(matches!(go_lower("/grüße".as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn exclude_extend_keeps_lists_separate() {
        let mut s = set(&["*.go"], false);
        s.extend(set(&["!x.go"], false));
        s.extend(set(&["X.GO"], true));
        assert_eq!(s.len(), 3);
        // Case-sensitive list: "*.go" then "!x.go" -> not matched; the
        // case-insensitive list matches on its own.
        assert!(s.matches("/a/x.go"));
        let mut s = set(&["*.go"], false);
        s.extend(set(&["Y.GO"], true));
        s.extend(set(&["!x.go"], false));
        assert!(
            !s.matches("/a/x.go"),
            "negation joins the case-sensitive list"
        );
        assert!(s.matches("/a/y.go"));
        assert!(s.matches("/a/z.go"));
        let mut s = PatternSet::default();
        s.extend(set(&[], true));
        assert!(s.is_empty());
        s.extend(set(&["/a/b"], true));
        assert!(s.child_may_match("/A"));
        assert!(!s.child_may_match("/c"));
    }

    #[test]
    fn exclude_non_utf8_paths() {
        let s = set(&["*.bin", "/data/?"], false);
        assert!(s.matches_bytes(b"/x/\xff\xfe.bin"));
        assert!(s.matches_bytes(b"/data/\xff/y"));
        assert!(!s.matches_bytes(b"/data/\xff\xfe"));
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xe9t\xe9.bin"));
        assert!(s.matches_path(p));
    }

    #[test]
    fn exclude_deep_paths_spill() {
        let deep: String = (0..200).map(|i| format!("/d{i}")).collect();
        let s = set(&["d150"], false);
        assert!(s.matches(&deep));
        let s = set(&["/d0/**/d199"], false);
        assert!(s.matches(&deep));
        let s = set(&["d200"], false);
        assert!(!s.matches(&deep));
    }

    #[test]
    fn exclude_expand_vars() {
        let env = |name: &str| match name {
            "HOME" => "/home/me".to_string(),
            "X" => "x".to_string(),
            "$" => "$".to_string(),
            "1" => "one".to_string(),
            _ => String::new(),
        };
        for (input, want) in [
            ("plain", "plain"),
            ("$HOME/.cache", "/home/me/.cache"),
            ("${HOME}/.cache", "/home/me/.cache"),
            ("${X}y", "xy"),
            ("$Xy", ""),
            ("$X-y", "x-y"),
            ("$$HOME", "$HOME"),
            ("a$$", "a$"),
            ("cost$", "cost$"),
            ("$ x", "$ x"),
            ("$/x", "$/x"),
            ("$UNSET/x", "/x"),
            ("${}x", "x"),
            ("${x", "x"),
            ("$1a", "onea"),
            ("${1}a", "onea"),
            ("${*}", ""),
            ("ä$X", "äx"),
            ("${ä}b", "b"),
        ] {
            assert_eq!(expand_vars(input, env), want, "Expand({input:?})");
        }
    }

    #[test]
    fn exclude_read_pattern_file() {
        let dir = tempfile::tempdir().unwrap();
        let var = "CAIRN_EXCLUDE_TEST_VAR_2F9A";
        std::env::set_var(var, "/from/env");
        let path = dir.path().join("excludes.txt");
        let content = "# a comment\n\n   *.tmp   \r\n\t/var/cache\n  # indented comment\n\
                       $@V@/x\n${@V@}\n#$@V@\ncost$$\n$CAIRN_EXCLUDE_UNSET_77\nno-newline"
            .replace("@V@", var);
        std::fs::write(&path, content).unwrap();
        let got = read_pattern_file(&path).unwrap();
        assert_eq!(
            got,
            vec![
                "*.tmp",
                "/var/cache",
                "/from/env/x",
                "/from/env",
                "cost$",
                "", // an unset variable: kept like restic, skipped by PatternSet
                "no-newline"
            ]
        );
        // BOMs.
        let p8 = dir.path().join("bom8");
        std::fs::write(&p8, b"\xEF\xBB\xBF*.o\n").unwrap();
        assert_eq!(read_pattern_file(&p8).unwrap(), vec!["*.o"]);
        let mut le = vec![0xFF, 0xFE];
        for u in "*.ä\r\n# c\nb".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        let p16 = dir.path().join("bom16le");
        std::fs::write(&p16, &le).unwrap();
        assert_eq!(read_pattern_file(&p16).unwrap(), vec!["*.ä", "b"]);
        let mut be = vec![0xFE, 0xFF];
        for u in "x\ny".encode_utf16() {
            be.extend_from_slice(&u.to_be_bytes());
        }
        let p16 = dir.path().join("bom16be");
        std::fs::write(&p16, &be).unwrap();
        assert_eq!(read_pattern_file(&p16).unwrap(), vec!["x", "y"]);
        // Several files in order.
        assert_eq!(
            read_pattern_files(&[&p8, &p16]).unwrap(),
            vec!["*.o", "x", "y"]
        );
        // Errors name the file.
        let missing = dir.path().join("missing");
        let e = read_pattern_file(&missing).unwrap_err();
        assert!(matches!(e, PatternError::Io { .. }));
        assert!(e.to_string().contains("missing"), "{e}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"ok\n\xff\xfe\n").unwrap();
        let e = read_pattern_file(&bad).unwrap_err();
        assert!(matches!(e, PatternError::NotUtf8 { line: 2, .. }), "{e:?}");
        // Patterns read from a file feed a set.
        let s = PatternSet::new(&got, false).unwrap();
        assert!(s.matches("/from/env/x/y"));
        assert!(s.matches("/a/b.tmp"));
    }

    #[test]
    fn exclude_if_present() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = dir.path().join("tagged");
        let plain = dir.path().join("plain");
        let cache = dir.path().join("cache");
        let badcache = dir.path().join("badcache");
        let short = dir.path().join("short");
        let empty = dir.path().join("empty");
        for d in [&tagged, &plain, &cache, &badcache, &short, &empty] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(tagged.join(".nobackup"), b"").unwrap();
        std::fs::write(
            cache.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n# comment\n",
        )
        .unwrap();
        std::fs::write(
            badcache.join("CACHEDIR.TAG"),
            b"Signature: 00000000000000000000000000000000 (wrong)\n",
        )
        .unwrap();
        std::fs::write(short.join("CACHEDIR.TAG"), b"Signature").unwrap();
        std::fs::write(empty.join("CACHEDIR.TAG"), b"").unwrap();

        let nb = ExcludeIfPresent::parse(".nobackup");
        assert_eq!(nb.filename, ".nobackup");
        assert!(nb.header.is_none());
        assert!(nb.excludes_dir(&tagged));
        assert!(!nb.excludes_dir(&plain));
        assert!(!nb.excludes_dir(&dir.path().join("does-not-exist")));
        // restic's per-item semantics: contents go, the tag file stays.
        assert!(nb.excludes_path(&tagged.join("file")));
        assert!(nb.excludes_path(&tagged.join("sub")));
        assert!(!nb.excludes_path(&tagged.join(".nobackup")));
        assert!(!nb.excludes_path(&tagged));
        assert!(!nb.excludes_path(&plain.join("file")));

        let c = ExcludeIfPresent::cachedir_tag();
        assert_eq!(c.filename, "CACHEDIR.TAG");
        assert_eq!(
            c.header.as_deref(),
            Some(&b"Signature: 8a477f597d28d172789f06886806bc55"[..])
        );
        assert!(c.excludes_dir(&cache));
        assert!(!c.excludes_dir(&plain));
        assert!(!c.excludes_dir(&badcache));
        let w = c.check_dir(&badcache).unwrap_err();
        assert!(w.to_string().starts_with("invalid signature"), "{w}");
        let w = c.check_dir(&short).unwrap_err();
        assert!(w.to_string().contains("unexpected EOF"), "{w}");
        let w = c.check_dir(&empty).unwrap_err();
        assert!(w.to_string().contains("too short"), "{w}");
        assert!(!c.excludes_dir(&short));
        // Without a header the mere presence counts.
        assert!(ExcludeIfPresent::parse("CACHEDIR.TAG").excludes_dir(&badcache));
        assert!(ExcludeIfPresent::parse("CACHEDIR.TAG:").excludes_dir(&empty));
        assert!(ExcludeIfPresent::parse("CACHEDIR.TAG:").header.is_none());
        // Header split at the first colon only.
        let h = ExcludeIfPresent::parse("T:a:b");
        assert_eq!(
            (h.filename.as_str(), h.header.as_deref()),
            ("T", Some(&b"a:b"[..]))
        );
        // Empty names.
        assert!(!ExcludeIfPresent::parse(":x").excludes_dir(&tagged));
        assert!(ExcludeIfPresent::try_parse("").is_err());
        assert!(ExcludeIfPresent::try_parse(":hdr").is_err());
        assert!(ExcludeIfPresent::try_parse(ExcludeIfPresent::CACHEDIR_TAG).is_ok());
    }

    #[test]
    fn exclude_parse_size() {
        for (s, want) in [
            ("0", 0),
            ("100", 100),
            ("100b", 100),
            ("100B", 100),
            ("1k", 1024),
            ("2K", 2048),
            ("3m", 3 << 20),
            ("1G", 1 << 30),
            ("1t", 1 << 40),
            ("+5", 5),
        ] {
            assert_eq!(parse_size(s).unwrap(), want, "{s:?}");
        }
        for s in [
            "",
            "k",
            "1.5M",
            "10x",
            " 1k",
            "-1k",
            "99999999999999999999",
            "9000000000000000t",
        ] {
            assert!(parse_size(s).is_err(), "{s:?}");
        }
        assert!(exceeds_size(1025, false, 1024));
        assert!(!exceeds_size(1024, false, 1024));
        assert!(!exceeds_size(1 << 40, true, 1024));
    }

    /// A literal, allocating port of restic 0.14's `match` and `childMatch`,
    /// used as the oracle for the optimised matcher.
    mod reference {
        use super::super::Part;

        fn is_root(p: &Part) -> bool {
            *p == Part::Literal(Box::from(&b"/"[..]))
        }

        pub fn matches(parts: &[Part], strs: &[&[u8]]) -> bool {
            if let Some(pos) = parts.iter().position(|p| *p == Part::DoubleStar) {
                let limit = strs.len() as isize - parts.len() as isize + 1;
                let mut i = 0;
                while i <= limit {
                    let mut expanded: Vec<Part> = parts[..pos].to_vec();
                    for _ in 0..i {
                        expanded.push(Part::Glob(Box::from(&b"*"[..])));
                    }
                    expanded.extend_from_slice(&parts[pos + 1..]);
                    if matches(&expanded, strs) {
                        return true;
                    }
                    i += 1;
                }
                return false;
            }
            if parts.is_empty() {
                return strs.is_empty();
            }
            if parts.len() <= strs.len() {
                let mut min = 0;
                let mut max = strs.len() - parts.len();
                if is_root(&parts[0]) {
                    max = 0;
                } else if strs[0] == b"/" {
                    min = 1;
                }
                for off in (min..=max).rev() {
                    if parts
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.matches(strs[off + i]))
                    {
                        return true;
                    }
                }
            }
            false
        }

        pub fn child_matches(parts: &[Part], strs: &[&[u8]]) -> bool {
            if !is_root(&parts[0]) {
                return true;
            }
            let mut strs = strs;
            if let Some(pos) = parts.iter().position(|p| *p == Part::DoubleStar) {
                if strs.len() >= pos {
                    strs = &strs[..pos];
                }
            }
            let l = strs.len().min(parts.len());
            matches(&parts[..l], strs)
        }
    }

    fn pattern_strategy() -> impl Strategy<Value = String> {
        let comp = prop_oneof![
            Just("a"),
            Just("b"),
            Just("ab"),
            Just("*"),
            Just("**"),
            Just("?"),
            Just("[ab]"),
            Just("[^a]"),
            Just("a*"),
            Just("*b"),
            Just("."),
            Just(".."),
        ];
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(comp, 1..7),
        )
            .prop_map(|(neg, abs, comps)| {
                format!(
                    "{}{}{}",
                    if neg { "!" } else { "" },
                    if abs { "/" } else { "" },
                    comps.join("/")
                )
            })
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let comp = prop_oneof![Just("a"), Just("b"), Just("ab"), Just("ba"), Just("")];
        (any::<bool>(), prop::collection::vec(comp, 1..10)).prop_map(|(abs, comps)| {
            let p = format!("{}{}", if abs { "/" } else { "" }, comps.join("/"));
            // restic rejects empty paths before matching.
            if p.is_empty() {
                "a".to_string()
            } else {
                p
            }
        })
    }

    proptest! {
        #[test]
        fn exclude_prop_matches_reference(pattern in pattern_strategy(), path in path_strategy()) {
            let p = Pattern::parse(&pattern).unwrap();
            with_components(path.as_bytes(), |strs| {
                prop_assert_eq!(
                    p.match_components(strs),
                    reference::matches(&p.parts, strs),
                    "Match({:?}, {:?})", pattern, path
                );
                prop_assert_eq!(
                    p.child_components(strs),
                    reference::child_matches(&p.parts, strs),
                    "ChildMatch({:?}, {:?})", pattern, path
                );
                Ok(())
            })?;
        }

        #[test]
        fn exclude_prop_fast_paths_equal_go_match(
            glob in "[ab*?/\\\\\\[\\]^-]{0,6}",
            name in "[ab*/\\[\\]-]{0,6}",
        ) {
            if let Ok(m) = go_match(glob.as_bytes(), name.as_bytes()) {
                if !glob.is_empty() && !glob.contains('/') && glob != "**" {
                    prop_assert_eq!(Part::compile(&glob).matches(name.as_bytes()), m);
                }
            }
        }

        #[test]
        fn exclude_prop_never_panics(
            patterns in prop::collection::vec(".{0,12}", 0..4),
            path in prop::collection::vec(any::<u8>(), 0..40),
            ci in any::<bool>(),
        ) {
            if let Ok(s) = PatternSet::new(&patterns, ci) {
                let _ = s.matches_bytes(&path);
                let _ = s.matches_with_child_bytes(&path);
                if let Ok(p) = std::str::from_utf8(&path) {
                    let _ = s.matches(p);
                    let _ = s.child_may_match(p);
                }
            }
            for p in &patterns {
                let _ = Pattern::parse(p);
                let _ = go_match(p.as_bytes(), &path);
                let _ = expand_vars(p, |_| String::new());
                let _ = ExcludeIfPresent::parse(p);
                let _ = parse_size(p);
            }
            let _ = go_lower(&path);
        }

        #[test]
        fn exclude_prop_never_panics_glob_heavy(
            patterns in prop::collection::vec("[!/a*?\\[\\]\\\\^.-]{1,10}", 1..4),
            path in "[/a*?\\[\\].-]{0,16}",
        ) {
            if let Ok(s) = PatternSet::new(&patterns, false) {
                let _ = s.matches_with_child(&path);
            }
        }
    }
}
