//! Config problems in words. serde's and toml's messages speak Rust ("invalid type:
//! string \"7\", expected u32"); a person reads "expected a whole number, found the string
//! \"7\"". This module is the one place those messages are taken apart and rephrased, and
//! where an io error on a file the config names becomes "does not exist" or "permission
//! denied" with what to do. It reads no files and knows no config keys beyond the few
//! whose strings have a format (durations, schedules, sizes).

use std::io;
use std::path::Path;

/// A serde/toml deserialization message, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Serde {
    /// `unknown field `x`, expected one of `a`, `b``: the key and the valid keys.
    UnknownKey { key: String, valid: Vec<String> },
    /// `missing field `x``.
    MissingKey(String),
    /// `invalid type: FOUND, expected EXPECTED`.
    WrongType { found: String, expected: String },
    /// `invalid value: FOUND, expected EXPECTED` (an integer out of range, mostly).
    WrongValue { found: String, expected: String },
    /// `unknown variant `x`, expected one of `a`, `b``.
    UnknownVariant { word: String, valid: Vec<String> },
    /// Anything else, trimmed.
    Other(String),
}

/// The words between backticks: `a`, `b` → [a, b].
fn ticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

pub(super) fn parse(message: &str) -> Serde {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let mut words = ticked(rest);
        if !words.is_empty() {
            let key = words.remove(0);
            return Serde::UnknownKey { key, valid: words };
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let mut words = ticked(rest);
        if !words.is_empty() {
            let word = words.remove(0);
            return Serde::UnknownVariant { word, valid: words };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        if let Some(key) = ticked(rest).into_iter().next() {
            return Serde::MissingKey(key);
        }
    }
    for (prefix, wrong_type) in [("invalid type: ", true), ("invalid value: ", false)] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                let (found, expected) = (found.to_string(), expected.to_string());
                return if wrong_type {
                    Serde::WrongType { found, expected }
                } else {
                    Serde::WrongValue { found, expected }
                };
            }
        }
    }
    Serde::Other(message.to_string())
}

/// What a string-valued key takes, when its strings have a format worth naming.
fn string_format(key: &str) -> Option<&'static str> {
    Some(match key {
        "max-age" | "timeout" | "keep-within" | "session-timeout" => {
            "a duration like \"30s\" or \"1h\""
        }
        "schedule" | "prune" => "a schedule like \"daily\", \"03:00\" or \"Mon..Fri 02:30\"",
        "exclude-larger-than" => "a size like \"500M\" or \"2G\"",
        "read-data-subset" => "a share like \"5%\", \"1/4\" or \"all\"",
        _ => return None,
    })
}

/// serde's name of an expected type (`u32`, `a sequence`, `struct Plan`) in words, for
/// the value of `key` (the last part of its path).
pub(super) fn expected(serde: &str, key: &str) -> String {
    let s = serde.trim();
    let words = match s {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "an integer" => "a whole number",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "f32" | "f64" | "a float" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "a str" | "a string or bytes" | "a character" => {
            return string_format(key).unwrap_or("a string").to_string()
        }
        "a sequence" | "a tuple" => "a list",
        "a map" | "a table" => "a table",
        _ if s.starts_with("struct ") => "a table",
        _ if s.starts_with("one of ") => {
            return format!("one of {}", ticked(s).join(", "));
        }
        _ => s,
    };
    words.to_string()
}

/// The range of an integer type, for a value out of it: `i32` → "a whole number from
/// -2147483648 to 2147483647".
pub(super) fn range(serde: &str) -> Option<String> {
    let (lo, hi): (i128, i128) = match serde.trim() {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        _ => return None,
    };
    Some(format!("a whole number from {lo} to {hi}"))
}

/// serde's description of a found value (`string "7"`, `integer `5``) in words.
pub(super) fn found(serde: &str) -> String {
    let s = serde.trim();
    if let Some(rest) = s.strip_prefix("string ") {
        return format!("the string {rest}");
    }
    for p in ["integer ", "floating point "] {
        if let Some(rest) = s.strip_prefix(p) {
            return format!("the number {}", rest.trim_matches('`'));
        }
    }
    if let Some(rest) = s.strip_prefix("boolean ") {
        return rest.trim_matches('`').to_string();
    }
    match s {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.into(),
    }
}

/// The kind of a found value without the value itself (it may be a secret).
pub(super) fn kind(serde: &str) -> String {
    let s = serde.trim();
    let kind = if s.starts_with("string") {
        "a string"
    } else if s.starts_with("integer") || s.starts_with("floating point") {
        "a number"
    } else if s.starts_with("boolean") {
        "true or false"
    } else if s.starts_with("sequence") {
        "a list"
    } else if s.starts_with("map") {
        "a table"
    } else {
        "another kind of value"
    };
    kind.to_string()
}

/// A JSON Schema (of `raw::File`, from schemars) in words: `{"type": "integer"}` → "a
/// whole number", an array of strings → "a list of strings", `anyOf` → "X or Y". None when
/// the schema says nothing useful (no type).
pub(super) fn schema(s: &serde_json::Value, defs: &serde_json::Value) -> Option<String> {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next()?;
        return schema(defs.get(name)?, defs);
    }
    for k in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(k).and_then(|a| a.as_array()) {
            let words: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(|t| t.as_str()) != Some("null"))
                .map(|a| schema(a, defs))
                .collect::<Option<_>>()?;
            return (!words.is_empty()).then(|| words.join(" or "));
        }
    }
    let types: Vec<&str> = match s.get("type")? {
        serde_json::Value::String(t) => vec![t.as_str()],
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => return None,
    };
    let words: Vec<String> = types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "integer" if s.get("minimum").and_then(|m| m.as_f64()) == Some(0.0) => {
                "a whole number (0 or more)".to_string()
            }
            "integer" => "a whole number".into(),
            "number" => "a number".into(),
            "boolean" => "true or false".into(),
            "string" => "a string".into(),
            "object" => "a table".into(),
            "array" => match s.get("items").and_then(|i| schema(i, defs)).as_deref() {
                Some("a string") => "a list of strings".into(),
                Some("a table") => "a list of tables".into(),
                Some(w) if w.starts_with("a whole number") => "a list of whole numbers".into(),
                _ => "a list".into(),
            },
            other => other.into(),
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" or "))
}

/// The schema's words refined by the key: a string key with a format says which.
pub(super) fn refine(words: String, key: &str) -> String {
    if words == "a string" {
        if let Some(f) = string_format(key) {
            return f.to_string();
        }
    }
    words
}

/// Why a file could not be read, in words, and what to do about it. `missing` is the
/// advice for a file that does not exist (it depends on who named the file).
pub(super) fn unreadable(path: &Path, e: &io::Error, missing: &str) -> (String, String) {
    match e.kind() {
        io::ErrorKind::NotFound => (
            format!("cannot read {}: it does not exist", path.display()),
            missing.to_string(),
        ),
        io::ErrorKind::PermissionDenied => (
            format!("cannot read {}: permission denied", path.display()),
            denied_help(path),
        ),
        _ => (
            format!("cannot read {}: {}", path.display(), io_words(e)),
            "check that the path names a readable file".into(),
        ),
    }
}

/// Advice for a permission error: who owns the file (or the directory that stops us)
/// and who cairn runs as.
fn denied_help(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    let name_of = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid {uid}"))
    };
    // The file itself when it can be seen, else the nearest directory above it that can.
    let owner = std::iter::successors(Some(path), |p| p.parent()).find_map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (p.to_path_buf(), m.uid()))
    });
    match owner {
        Some((p, uid)) if p == path => format!(
            "it belongs to {} and cairn runs as {}: run cairn as {}, or let this user read \
             it (chown/chmod {})",
            name_of(uid),
            name_of(me.as_raw()),
            name_of(uid),
            path.display()
        ),
        Some((dir, uid)) => format!(
            "cairn runs as {} and may not enter {} (owned by {}): run cairn as {}, or chmod \
             that directory",
            name_of(me.as_raw()),
            dir.display(),
            name_of(uid),
            name_of(uid)
        ),
        None => format!(
            "run cairn as the user that owns {}, or let {} read it",
            path.display(),
            name_of(me.as_raw())
        ),
    }
}

/// An io error in lower-case words without "(os error N)".
fn io_words(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_taken_apart() {
        assert_eq!(
            parse("unknown field `retension`, expected one of `repository`, `retention`"),
            Serde::UnknownKey {
                key: "retension".into(),
                valid: vec!["repository".into(), "retention".into()]
            }
        );
        assert_eq!(
            parse("unknown field `x`, there are no fields"),
            Serde::UnknownKey {
                key: "x".into(),
                valid: vec![]
            }
        );
        assert_eq!(
            parse("missing field `repository`"),
            Serde::MissingKey("repository".into())
        );
        assert_eq!(
            parse("invalid type: string \"seven\", expected i64"),
            Serde::WrongType {
                found: "string \"seven\"".into(),
                expected: "i64".into()
            }
        );
        assert_eq!(
            parse("invalid value: integer `99999999999`, expected i32\n"),
            Serde::WrongValue {
                found: "integer `99999999999`".into(),
                expected: "i32".into()
            }
        );
        assert_eq!(
            parse("unknown variant `zfz`, expected one of `btrfs`, `zfs`"),
            Serde::UnknownVariant {
                word: "zfz".into(),
                valid: vec!["btrfs".into(), "zfs".into()]
            }
        );
        assert_eq!(
            parse(" whatever else "),
            Serde::Other("whatever else".into())
        );
    }

    #[test]
    fn integers_are_whole_numbers() {
        for t in ["i8", "i16", "i32", "i64", "an integer"] {
            assert_eq!(expected(t, "nice"), "a whole number", "{t}");
        }
        for t in ["u8", "u16", "u32", "u64", "usize"] {
            assert_eq!(expected(t, "files"), "a whole number (0 or more)", "{t}");
        }
    }

    #[test]
    fn floats_booleans_lists_and_tables_are_named() {
        assert_eq!(expected("f64", "x"), "a number");
        assert_eq!(expected("a boolean", "one-file-system"), "true or false");
        assert_eq!(expected("a sequence", "paths"), "a list");
        assert_eq!(expected("a map", "env"), "a table");
        assert_eq!(expected("struct Retention", "retention"), "a table");
        assert_eq!(
            expected("one of `btrfs`, `zfs`", "kind"),
            "one of btrfs, zfs"
        );
        // A message of our own (a hand-written Deserialize) is kept.
        assert_eq!(
            expected(
                "a table of check settings, or a list of such tables",
                "check"
            ),
            "a table of check settings, or a list of such tables"
        );
    }

    #[test]
    fn strings_with_a_format_say_which() {
        assert_eq!(expected("a string", "url"), "a string");
        assert_eq!(
            expected("a string", "max-age"),
            "a duration like \"30s\" or \"1h\""
        );
        assert_eq!(
            expected("a string", "keep-within"),
            "a duration like \"30s\" or \"1h\""
        );
        assert!(expected("a string", "schedule").starts_with("a schedule like"));
        assert!(expected("a string", "exclude-larger-than").starts_with("a size like"));
        assert_eq!(
            refine("a string".into(), "timeout"),
            expected("a string", "timeout")
        );
        assert_eq!(
            refine("a list of strings".into(), "timeout"),
            "a list of strings"
        );
    }

    #[test]
    fn ranges_are_given_for_integers_only() {
        assert_eq!(
            range("i32").as_deref(),
            Some("a whole number from -2147483648 to 2147483647")
        );
        assert_eq!(
            range("u16").as_deref(),
            Some("a whole number from 0 to 65535")
        );
        assert_eq!(range("a string"), None);
    }

    #[test]
    fn found_values_are_described() {
        assert_eq!(found("string \"7\""), "the string \"7\"");
        assert_eq!(found("integer `5`"), "the number 5");
        assert_eq!(found("floating point `1.5`"), "the number 1.5");
        assert_eq!(found("boolean `true`"), "true");
        assert_eq!(found("sequence"), "a list");
        assert_eq!(found("map"), "a table");
        assert_eq!(kind("string \"hunter2\""), "a string");
        assert_eq!(kind("integer `123456`"), "a number");
        assert_eq!(kind("sequence"), "a list");
    }

    #[test]
    fn schemas_are_described() {
        use serde_json::json;
        let defs = json!({ "Check": { "type": "object" } });
        let s = |v: serde_json::Value| schema(&v, &defs);
        assert_eq!(
            s(json!({"type": "integer"})).as_deref(),
            Some("a whole number")
        );
        assert_eq!(
            s(json!({"type": ["integer", "null"], "minimum": 0})).as_deref(),
            Some("a whole number (0 or more)")
        );
        assert_eq!(
            s(json!({"type": "boolean"})).as_deref(),
            Some("true or false")
        );
        assert_eq!(
            s(json!({"type": "array", "items": {"type": "string"}})).as_deref(),
            Some("a list of strings")
        );
        assert_eq!(
            s(json!({"type": "object", "additionalProperties": {"type": "string"}})).as_deref(),
            Some("a table")
        );
        assert_eq!(
            s(json!({"anyOf": [
                {"$ref": "#/$defs/Check"},
                {"type": "array", "items": {"$ref": "#/$defs/Check"}},
                {"type": "null"}
            ]}))
            .as_deref(),
            Some("a table or a list of tables")
        );
        assert_eq!(s(json!({"description": "anything"})), None);
    }

    #[test]
    fn io_errors_say_missing_or_denied() {
        let p = Path::new("/etc/cairn/conf.d/x.toml");
        let (msg, help) = unreadable(
            p,
            &io::Error::from(io::ErrorKind::NotFound),
            "create it or remove it from include",
        );
        assert_eq!(
            msg,
            "cannot read /etc/cairn/conf.d/x.toml: it does not exist"
        );
        assert_eq!(help, "create it or remove it from include");
        let (msg, help) = unreadable(
            p,
            &io::Error::from(io::ErrorKind::PermissionDenied),
            "create it",
        );
        assert_eq!(
            msg,
            "cannot read /etc/cairn/conf.d/x.toml: permission denied"
        );
        assert!(!help.contains("create"), "{help}");
        assert!(help.contains("run cairn as"), "{help}");
        let (msg, _) = unreadable(p, &io::Error::from_raw_os_error(libc::EISDIR), "create it");
        assert_eq!(msg, "cannot read /etc/cairn/conf.d/x.toml: is a directory");
    }
}
