//! Go's `strconv.Quote` and `strconv.Unquote` for node names, as restic 0.14 applies them:
//! a tree stores `Quote(name)` without its surrounding quotes, and reading a tree does
//! `Unquote("\"" + stored + "\"")`. A name is any bytes (a file name need not be UTF-8), so
//! [`quote`] takes bytes and [`unquote`] gives bytes back; `unquote(&quote(b)) == b` for all
//! `b`.
//!
//! Owns only the string escaping, not the JSON layer around it (that is `node`'s).

/// Quotes `bytes` like Go's `strconv.Quote`, without the surrounding `"`: printable runes
/// (Go's `unicode.IsPrint`) as they are, `\a \b \f \n \r \t \v \\ \"` as such, other
/// control bytes and bytes of invalid UTF-8 as `\xNN`, other runes as `\uNNNN` or
/// `\UNNNNNNNN`.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped_char(&mut out, c);
        }
        // Go decodes an invalid sequence one byte at a time (RuneError, width 1), and a
        // byte after the first of an invalid sequence never starts a valid rune.
        for &b in chunk.invalid() {
            push_hex(&mut out, "\\x", b as u32, 2);
        }
    }
    out
}

fn push_hex(out: &mut String, prefix: &str, v: u32, digits: u32) {
    out.push_str(prefix);
    for i in (0..digits).rev() {
        let d = (v >> (4 * i)) & 0xf;
        out.push(char::from_digit(d, 16).unwrap_or('0'));
    }
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => push_hex(out, "\\x", c as u32, 2),
        c if (c as u32) < 0x10000 => push_hex(out, "\\u", c as u32, 4),
        c => push_hex(out, "\\U", c as u32, 8),
    }
}

mod print13;

/// Go 1.19's `strconv.IsPrint` (restic 0.14 is built with it): letters, marks, numbers,
/// punctuation, symbols and U+0020, as Unicode 13.0.0 assigns them. A character assigned
/// later is not printable there, so it is escaped, or trees would differ from restic's.
fn is_print(c: char) -> bool {
    let c = c as u32;
    match c {
        0x20..=0x7e => true,
        0..=0xa0 | 0xad => false,
        0xa1..=0xff => true,
        _ => print13::PRINTABLE
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok(),
    }
}

/// Why a stored name does not unquote: Go's `strconv.ErrSyntax`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSyntax;

impl std::fmt::Display for InvalidSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid syntax")
    }
}

impl std::error::Error for InvalidSyntax {}

/// Unquotes `s` like Go's `strconv.Unquote("\"" + s + "\"")`: the escapes `\a \b \f \n \r
/// \t \v \\ \"`, `\xNN` and three-digit octal `\NNN` (one byte each, so not necessarily
/// UTF-8), `\uNNNN` and `\UNNNNNNNN` (a valid Unicode scalar value, as UTF-8). A raw `"`
/// or newline, `\'`, any other escape, or a truncated one is an error.
pub fn unquote(s: &str) -> Result<Vec<u8>, InvalidSyntax> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\n' => return Err(InvalidSyntax),
            b'\\' => {
                let c = *b.get(i + 1).ok_or(InvalidSyntax)?;
                i += 2;
                let single = match c {
                    b'a' => Some(0x07),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0c),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(0x0b),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    _ => None,
                };
                if let Some(byte) = single {
                    out.push(byte);
                    continue;
                }
                match c {
                    b'x' | b'u' | b'U' => {
                        let n = match c {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let digits = b.get(i..i + n).ok_or(InvalidSyntax)?;
                        let mut v: u32 = 0;
                        for &d in digits {
                            let x = (d as char).to_digit(16).ok_or(InvalidSyntax)?;
                            v = (v << 4) | x;
                        }
                        i += n;
                        if c == b'x' {
                            out.push(v as u8);
                        } else {
                            let ch = char::from_u32(v).ok_or(InvalidSyntax)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    b'0'..=b'7' => {
                        let digits = b.get(i..i + 2).ok_or(InvalidSyntax)?;
                        let mut v = (c - b'0') as u32;
                        for &d in digits {
                            if !(b'0'..=b'7').contains(&d) {
                                return Err(InvalidSyntax);
                            }
                            v = (v << 3) | (d - b'0') as u32;
                        }
                        i += 2;
                        out.push(u8::try_from(v).map_err(|_| InvalidSyntax)?);
                    }
                    _ => return Err(InvalidSyntax),
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_like_go_strconv_quote() {
        // Expected values are what Go 1.19's strconv.Quote returns (without the quotes).
        let cases: &[(&[u8], &str)] = &[
            (b"plain.txt", "plain.txt"),
            (b"new\nline", "new\\nline"),
            (b"quo\"te", "quo\\\"te"),
            (b"back\\slash", "back\\\\slash"),
            (b"\x07\x08\x0c\x0d\x09\x0b", "\\a\\b\\f\\r\\t\\v"),
            (b"\x01\x1f\x7f", "\\x01\\x1f\\x7f"),
            (b"it's", "it's"),
            (b"\xff\xfe", "\\xff\\xfe"),
            (b"\xe2\x80", "\\xe2\\x80"),
            (b"\xe2\x80A", "\\xe2\\x80A"),
            (b"\xed\xa0\x80", "\\xed\\xa0\\x80"), // a surrogate is invalid UTF-8
            (b"\xc0\xaf", "\\xc0\\xaf"),          // overlong
            ("é ü ñ 日本".as_bytes(), "é ü ñ 日本"),
            ("\u{a0}".as_bytes(), "\\u00a0"),
            ("soft\u{ad}hyphen".as_bytes(), "soft\\u00adhyphen"),
            ("\u{2028}\u{2029}".as_bytes(), "\\u2028\\u2029"),
            ("\u{feff}bom".as_bytes(), "\\ufeffbom"),
            ("\u{200b}\u{200d}".as_bytes(), "\\u200b\\u200d"),
            ("e\u{301}".as_bytes(), "e\u{301}"), // combining acute accent (Mn): printable
            ("\u{301}lead".as_bytes(), "\u{301}lead"),
            ("\u{3000}".as_bytes(), "\\u3000"), // ideographic space (Zs)
            ("\u{e000}".as_bytes(), "\\ue000"), // private use
            ("\u{1f600}".as_bytes(), "\u{1f600}"), // emoji (So)
            ("\u{e0001}".as_bytes(), "\\U000e0001"), // language tag (Cf)
            ("\u{10ffff}".as_bytes(), "\\U0010ffff"), // noncharacter (Cn)
            ("\u{fffd}".as_bytes(), "\u{fffd}"), // a real U+FFFD is printable
            ("<&>".as_bytes(), "<&>"),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), *want, "quote({input:x?})");
            assert_eq!(unquote(want).as_deref(), Ok(*input), "unquote({want:?})");
        }
    }

    #[test]
    fn quotes_every_single_byte() {
        for b in 0u8..=255 {
            let q = quote(&[b]);
            let want = match b {
                0x07 => "\\a".to_string(),
                0x08 => "\\b".to_string(),
                0x0c => "\\f".to_string(),
                b'\n' => "\\n".to_string(),
                b'\r' => "\\r".to_string(),
                b'\t' => "\\t".to_string(),
                0x0b => "\\v".to_string(),
                b'"' => "\\\"".to_string(),
                b'\\' => "\\\\".to_string(),
                0x20..=0x7e => (b as char).to_string(),
                _ => format!("\\x{b:02x}"),
            };
            assert_eq!(q, want, "byte {b:#04x}");
            assert_eq!(unquote(&q), Ok(vec![b]));
        }
    }

    #[test]
    fn unquotes_what_go_accepts() {
        let ok: &[(&str, &[u8])] = &[
            ("", b""),
            ("\\x41\\x7F\\xff", b"A\x7f\xff"),
            ("\\101\\000\\377", b"A\x00\xff"),
            ("\\u00e9", "é".as_bytes()),
            ("\\U0001F600", "\u{1f600}".as_bytes()),
            ("raw\ttab\u{1}ctl", b"raw\ttab\x01ctl"),
            ("\u{2028}", "\u{2028}".as_bytes()),
            ("'", b"'"),
        ];
        for (s, want) in ok {
            assert_eq!(unquote(s).as_deref(), Ok(*want), "unquote({s:?})");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for s in [
            "quo\"te",
            "new\nline",
            "back\\slash",
            "\\",
            "end\\",
            "\\'",
            "\\x4",
            "\\xg0",
            "\\400",
            "\\08",
            "\\12",
            "\\u12",
            "\\ud800",
            "\\U00110000",
            "\\uDFFF",
            "\\e",
            "\\ ",
        ] {
            assert_eq!(unquote(s), Err(InvalidSyntax), "unquote({s:?})");
        }
    }

    /// Rust's own idea of printable (newer Unicode): `escape_debug` keeps exactly the
    /// characters of categories L, M, N, P, S and the space, apart from the backslashed
    /// ASCII ones and a grapheme extender at the start of a string.
    fn rust_printable(c: char) -> bool {
        let s = format!("a{c}");
        let mut escaped = s.escape_debug();
        escaped.next() == Some('a') && escaped.next() == Some(c) && escaped.next().is_none()
    }

    #[test]
    fn printable_is_unicode_13_as_go_1_19_has_it() {
        // Everything Go 1.19 prints, Rust's newer tables print too (nothing printable
        // became unprintable), and what only Rust prints was assigned after Unicode 13.
        let mut only_rust = 0;
        for c in (0x100..=0x10ffff).filter_map(char::from_u32) {
            if is_print(c) {
                assert!(rust_printable(c), "{:#x}", c as u32);
            } else if rust_printable(c) {
                only_rust += 1;
            }
        }
        assert!((800..20_000).contains(&only_rust), "{only_rust}");
        // Unicode 14 and 15 additions are escaped, as restic 0.14 escapes them.
        assert_eq!(quote("\u{1fae8}".as_bytes()), "\\U0001fae8"); // shaking face, 15.0
        assert_eq!(quote("\u{1f6dd}".as_bytes()), "\\U0001f6dd"); // playground slide, 14.0
        assert_eq!(quote("\u{1f972}".as_bytes()), "\u{1f972}"); // smiling face with tear, 13.0
    }

    proptest! {
        #[test]
        fn unquote_inverts_quote(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unquote(&quote(&bytes)), Ok(bytes));
        }

        #[test]
        fn unquote_inverts_quote_of_text(s in "\\PC*|.*") {
            prop_assert_eq!(unquote(&quote(s.as_bytes())), Ok(s.into_bytes()));
        }

        #[test]
        fn unquote_never_panics(s in "(\\\\[0-9xuUabfnrtv\"'\\\\]?|[0-9a-fA-F]|.)*") {
            let _ = unquote(&s);
        }

        #[test]
        fn unquote_never_panics_on_any_text(s in any::<String>()) {
            let _ = unquote(&s);
        }
    }
}
