//! Every problem of one value, not only the first. serde stops at the first error; here,
//! after each error the key or list item it points at is set aside (or a missing key
//! gets a stand-in) and the value is deserialized again, until it goes through or
//! nothing more can be set aside. Each problem is reported at its place, with the key
//! path (`plans.nightly.retention.keep-daily`) and, in words, what was expected and what
//! was found (`words`).

use super::Loader;
use crate::config::{looks_secret, raw, words};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::OnceLock;
use toml::de::{DeValue, ValueDeserializer};
use toml::Spanned;

/// One step of a key path: a key of a table or an item of a list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `plans.nightly.paths[1]`; keys that are not bare TOML keys are quoted.
fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&toml::Value::String(k.clone()).to_string());
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The last key of a path (a list item's key is its list's).
fn last_key(path: &[Seg]) -> &str {
    path.iter()
        .rev()
        .find_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .unwrap_or("")
}

/// Where `span` is in `v`: the path of the deepest value with exactly that span, or of
/// the key with it (then `true`).
fn locate(
    v: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<Seg>,
) -> Option<(Vec<Seg>, bool)> {
    match v.get_ref() {
        DeValue::Table(t) => {
            for (k, c) in t.iter() {
                path.push(Seg::Key(k.get_ref().to_string()));
                let found = if k.span() == *span {
                    Some((path.clone(), true))
                } else {
                    locate(c, span, path)
                };
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
        }
        DeValue::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                let found = locate(c, span, path);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
        }
        _ => {}
    }
    (v.span() == *span).then(|| (path.clone(), false))
}

fn node_mut<'a, 'i>(
    v: &'a mut Spanned<DeValue<'i>>,
    path: &[Seg],
) -> Option<&'a mut Spanned<DeValue<'i>>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    let child = match (v.get_mut(), first) {
        (DeValue::Table(t), Seg::Key(k)) => t.get_mut(k.as_str())?,
        (DeValue::Array(a), Seg::Index(i)) => a.get_mut(*i)?,
        _ => return None,
    };
    node_mut(child, rest)
}

/// Removes the value at `path` (a key of a table or an item of a list).
fn remove(v: &mut Spanned<DeValue<'_>>, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match (node_mut(v, parent).map(|p| p.get_mut()), last) {
        (Some(DeValue::Table(t)), Seg::Key(k)) => t.remove(k.as_str()).is_some(),
        (Some(DeValue::Array(a)), Seg::Index(i)) if *i < a.len() => {
            let items = std::mem::replace(a, toml::de::DeArray::new());
            *a = items
                .into_iter()
                .enumerate()
                .filter(|(j, _)| j != i)
                .map(|(_, x)| x)
                .collect();
            true
        }
        _ => false,
    }
}

/// The JSON Schema of a config file, to say what a key takes.
fn file_schema() -> Option<&'static serde_json::Value> {
    static SCHEMA: OnceLock<Option<serde_json::Value>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| serde_json::to_value(schemars::schema_for!(raw::File)).ok())
        .as_ref()
}

/// The schema of the value at `path` (from the file's top), through `$ref`s, optional
/// values (`anyOf` with null), tables by name and lists.
fn schema_at<'a>(
    s: &'a serde_json::Value,
    path: &[Seg],
    defs: &'a serde_json::Value,
) -> Option<&'a serde_json::Value> {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
        return schema_at(defs.get(r.rsplit('/').next()?)?, path, defs);
    }
    let Some((first, rest)) = path.split_first() else {
        return Some(s);
    };
    for k in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(k).and_then(|a| a.as_array()) {
            return alts.iter().find_map(|a| schema_at(a, path, defs));
        }
    }
    let next = match first {
        Seg::Key(k) => s
            .get("properties")
            .and_then(|p| p.get(k))
            .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))?,
        Seg::Index(_) => s.get("items")?,
    };
    schema_at(next, rest, defs)
}

/// What the value at `path` takes, in words: from the schema when it says, else from
/// serde's `expected`.
fn expected_at(path: &[Seg], serde_expected: &str) -> String {
    let key = last_key(path);
    let from_schema = file_schema().and_then(|root| {
        let defs = root.get("$defs").unwrap_or(&serde_json::Value::Null);
        words::schema(schema_at(root, path, defs)?, defs)
    });
    match from_schema {
        Some(w) => words::refine(w, key),
        None => words::expected(serde_expected, key),
    }
}

/// Whether the value at `path` may be a secret (then it is not shown). Keys that say
/// where a secret is (`password-file`, `env-command`) are not secrets themselves.
fn secret(path: &[Seg]) -> bool {
    const WHERE: [&str; 5] = ["-file", "-command", "-env", "-credential", "-hash-file"];
    path.iter().any(|s| match s {
        Seg::Key(k) => {
            k == "password"
                || (looks_secret(&k.replace('-', "_")) && !WHERE.iter().any(|w| k.ends_with(w)))
        }
        Seg::Index(_) => false,
    })
}

/// Whether an unknown key looks like a misspelt secret key (`pasword`, `secert`).
fn maybe_secret_typo(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["pas", "pw", "secr", "sekr", "token", "key", "cred", "auth"]
        .iter()
        .any(|w| k.contains(w))
}

impl Loader {
    /// Deserializes `value` (at `path` in text `idx`) as `T`, reporting every problem in
    /// it unless `quiet`. Returns the value, if one could be made (with the bad parts left
    /// out), and whether it had no problem at all.
    pub(super) fn deserialize<T: DeserializeOwned>(
        &mut self,
        idx: usize,
        quiet: bool,
        path: &[Seg],
        value: &Spanned<DeValue<'_>>,
    ) -> (Option<T>, bool) {
        let mut v = value.clone();
        // Keys set aside (their table's path, the key): serde then misses them.
        let mut removed: BTreeSet<(Vec<Seg>, String)> = BTreeSet::new();
        // Stand-ins for missing keys, each with a span no text has.
        let mut stand_ins: BTreeSet<Vec<Seg>> = BTreeSet::new();
        let mut clean = true;
        // Each round sets one key or item aside or adds one stand-in, so the rounds are
        // bounded by the text; the cap only keeps a pathological entry from being slow.
        for round in 0..1000 {
            let e = match T::deserialize(ValueDeserializer::from(v.clone())) {
                Ok(x) => return (Some(x), clean),
                Err(e) => e,
            };
            let spot = e.span().and_then(|span| {
                locate(&v, &span, &mut Vec::new()).map(|(p, on_key)| (span, p, on_key))
            });
            let Some((span, at, on_key)) = spot else {
                // Nowhere to point at: report it at the value, and stop.
                self.report(idx, quiet, path, value.span(), &e, None, false);
                return (None, false);
            };
            if stand_ins.contains(&at) {
                // A stand-in of the wrong type: the key's own problem is reported already.
                return (None, false);
            }
            let full: Vec<Seg> = path.iter().chain(&at).cloned().collect();
            if let words::Serde::MissingKey(k) = words::parse(e.message()) {
                let mut key_path = at.clone();
                key_path.push(Seg::Key(k.clone()));
                if stand_ins.contains(&key_path) {
                    return (None, false);
                }
                if !removed.contains(&(at.clone(), k.clone())) {
                    self.report(idx, quiet, &full, span.clone(), &e, None, false);
                    clean = false;
                }
                let Some(DeValue::Table(t)) = node_mut(&mut v, &at).map(|n| n.get_mut()) else {
                    return (None, false);
                };
                let nowhere = usize::MAX - round;
                t.insert(
                    Spanned::new(nowhere..nowhere, k.into()),
                    Spanned::new(nowhere..nowhere, DeValue::String("".into())),
                );
                stand_ins.insert(key_path);
                continue;
            }
            clean = false;
            // The original value names list items by their place as written.
            let original = locate(value, &span, &mut Vec::new()).map(|(p, _)| p);
            let named: Vec<Seg> = path
                .iter()
                .chain(original.as_ref().unwrap_or(&at))
                .cloned()
                .collect();
            self.report(idx, quiet, &named, span, &e, Some(&full), on_key);
            if !remove(&mut v, &at) {
                return (None, false);
            }
            if let Some((Seg::Key(k), parent)) = at.split_last() {
                removed.insert((parent.to_vec(), k.clone()));
            }
        }
        (None, false)
    }

    /// Reports one deserialization error at `span`: `path` names the value (or the table,
    /// for a key problem); `schema_path` is the same as it is now, to look its type up.
    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        idx: usize,
        quiet: bool,
        path: &[Seg],
        span: Range<usize>,
        e: &toml::de::Error,
        schema_path: Option<&[Seg]>,
        on_key: bool,
    ) {
        if quiet {
            return;
        }
        let schema_path = schema_path.unwrap_or(path);
        // An unknown key may be a misspelt secret one (`pasword`): its value is not shown.
        let hidden = secret(path) || (on_key && maybe_secret_typo(last_key(path)));
        // A key problem names the table the key is in.
        let table = if on_key {
            &path[..path.len().saturating_sub(1)]
        } else {
            path
        };
        let prefix = |p: &[Seg]| {
            let s = show(p);
            if s.is_empty() {
                s
            } else {
                format!("{s}: ")
            }
        };
        let (msg, help) = match words::parse(e.message()) {
            words::Serde::UnknownKey { key, valid } => {
                // `password` is parsed only to be refused: never offered.
                let valid: Vec<String> = valid.into_iter().filter(|k| k != "password").collect();
                let help = if valid.is_empty() {
                    "this table takes no keys".to_string()
                } else {
                    format!("valid keys here: {}", valid.join(", "))
                };
                let msg = match crate::config::closest(&key, valid.iter().map(String::as_str)) {
                    Some(c) => format!("unknown key `{key}`, did you mean `{c}`?"),
                    None => format!("unknown key `{key}`"),
                };
                (format!("{}{msg}", prefix(table)), Some(help))
            }
            words::Serde::MissingKey(key) => {
                let mut key_path = schema_path.to_vec();
                key_path.push(Seg::Key(key.clone()));
                let takes = expected_at(&key_path, "");
                let takes = if takes.is_empty() {
                    String::new()
                } else {
                    format!(" ({takes})")
                };
                (
                    format!("{}missing key `{key}`", prefix(path)),
                    Some(format!("add `{key} = ...`{takes} to this table")),
                )
            }
            words::Serde::WrongType { found, expected } => {
                let found = if hidden {
                    words::kind(&found)
                } else {
                    words::found(&found)
                };
                (
                    format!(
                        "{}wrong type: expected {}, found {found}",
                        prefix(path),
                        expected_at(schema_path, &expected)
                    ),
                    None,
                )
            }
            words::Serde::WrongValue { found, expected } => {
                let found = if hidden {
                    words::kind(&found)
                } else {
                    words::found(&found)
                };
                let msg = match words::range(&expected) {
                    Some(r) => format!("{}{found} is out of range: expected {r}", prefix(path)),
                    None => format!(
                        "{}wrong value: expected {}, found {found}",
                        prefix(path),
                        words::expected(&expected, last_key(path))
                    ),
                };
                (msg, None)
            }
            words::Serde::UnknownVariant { word, valid } => (
                format!("{}`{word}` is not a choice here", prefix(path)),
                Some(format!("use one of: {}", valid.join(", "))),
            ),
            words::Serde::Other(m) => (format!("{}{m}", prefix(path)), None),
        };
        let mut d = self.texts[idx].at(span.start, msg, help);
        if hidden {
            if let Some(line) = &d.snippet {
                let mut keep = d.column.saturating_sub(1);
                let mut rest = "<redacted>";
                if on_key {
                    // Show the key, which is the problem, not its value.
                    keep += last_key(path).chars().count();
                    rest = " = <redacted>";
                }
                let kept: String = line.chars().take(keep).collect();
                d.snippet = Some(format!("{kept}{rest}"));
            }
        }
        self.problems.push(d);
    }
}
