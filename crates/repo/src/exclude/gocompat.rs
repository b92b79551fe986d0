//! Go compatibility helpers for restic's patterns: UTF-8 decoding as Go does, Go's
//! `strings.ToLower`, `filepath.Match` and `filepath.Clean`.

use super::BadPattern;
use std::borrow::Cow;

pub(super) const RUNE_ERROR: u32 = 0xFFFD;

/// Go's `utf8.DecodeRune`: invalid or truncated sequences decode as
/// (U+FFFD, 1); the empty input as (U+FFFD, 0).
pub(super) fn decode_rune(s: &[u8]) -> (u32, usize) {
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
pub(super) fn lower_rune(r: u32) -> u32 {
    let Some(c) = char::from_u32(r) else {
        return r;
    };
    // Rust's full mapping differs from Go's simple one only for U+0130, which
    // becomes "i\u{307}"; Go maps it to plain 'i', the first char here.
    c.to_lowercase().next().map_or(r, u32::from)
}

pub(super) fn push_rune(out: &mut Vec<u8>, r: u32) {
    let c = char::from_u32(r).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Go's `strings.ToLower` on arbitrary bytes. Borrows when nothing changes.
pub(super) fn go_lower(s: &[u8]) -> Cow<'_, [u8]> {
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

pub(super) fn go_lower_str(s: &str) -> String {
    match go_lower(s.as_bytes()) {
        Cow::Borrowed(_) => s.to_string(),
        // Lower-casing valid UTF-8 rune by rune yields valid UTF-8.
        Cow::Owned(v) => String::from_utf8(v)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Go's `filepath.Match` (Unix, Go >= 1.16: malformed patterns are always
/// reported, whatever the name).
pub(super) fn go_match(pattern: &[u8], name: &[u8]) -> Result<bool, BadPattern> {
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
pub(super) fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
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
pub(super) fn match_chunk<'a>(chunk: &[u8], s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
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
pub(super) fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
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
pub(super) fn go_clean(p: &str) -> String {
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
