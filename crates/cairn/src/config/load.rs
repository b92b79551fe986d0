//! Reading the files: the main file, its includes (`conf.d` by default), recursively, each
//! parsed entry by entry into `raw` types; and env files. Problems are collected, never
//! printed; validation is `validate`'s.
//!
//! One pass finds every problem of the text: a file with a TOML syntax error still has
//! its includes read (its own entries are then only known by name), and every type error
//! and unknown key of every entry is reported, not just serde's first (`collect`).

mod collect;

use super::{closest, raw, words, Diagnostic, Text};
use collect::Seg;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// What reading produced: every file's text, the parsed files (index into `texts`, main
/// file first) and the problems found so far.
pub(super) struct Read {
    pub texts: Vec<Text>,
    pub files: Vec<(usize, raw::File)>,
    pub problems: Vec<Diagnostic>,
    /// Entries `(text, table, name)` with problems of their own, already reported: known
    /// by name (a plan may name them) but not validated further.
    pub broken: BTreeSet<(usize, &'static str, String)>,
    /// Texts with TOML syntax errors (their entries are all in `broken`).
    pub unparsed: BTreeSet<usize>,
}

/// Reads `path` and everything it includes.
pub(super) fn read(path: &Path) -> Read {
    let mut l = Loader {
        texts: Vec::new(),
        files: Vec::new(),
        problems: Vec::new(),
        seen: BTreeSet::new(),
        broken: BTreeSet::new(),
        unparsed: BTreeSet::new(),
    };
    l.load(path, &mut Vec::new(), None);
    Read {
        texts: l.texts,
        files: l.files,
        problems: l.problems,
        broken: l.broken,
        unparsed: l.unparsed,
    }
}

struct Loader {
    texts: Vec<Text>,
    files: Vec<(usize, raw::File)>,
    problems: Vec<Diagnostic>,
    seen: BTreeSet<PathBuf>,
    broken: BTreeSet<(usize, &'static str, String)>,
    unparsed: BTreeSet<usize>,
}

impl Loader {
    /// Reads and parses `path`, then what it includes. `stack` is the include chain, for
    /// cycle detection; `from` is where the include was written.
    fn load(&mut self, path: &Path, stack: &mut Vec<PathBuf>, from: Option<Diagnostic>) {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(pos) = stack.iter().position(|p| *p == canonical) {
            let chain: Vec<String> = stack[pos..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            let mut d = from.unwrap_or_else(|| {
                Text {
                    path: path.to_path_buf(),
                    text: String::new(),
                }
                .whole("", None)
            });
            d.message = format!("include cycle: {}", chain.join(" -> "));
            d.help = Some("remove one of these includes".into());
            self.problems.push(d);
            return;
        }
        if !self.seen.insert(canonical.clone()) {
            return; // included twice by different files: read once
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let mut d = from.unwrap_or_else(|| Diagnostic {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    message: String::new(),
                    help: None,
                    snippet: None,
                    warning: false,
                });
                let missing = if stack.is_empty() {
                    "create it (see examples/ in cairn's repository) or give another file with --config"
                } else {
                    "create it, or remove it from `include`"
                };
                let (message, help) = words::unreadable(path, &e, missing);
                d.message = message;
                d.help = Some(help);
                self.problems.push(d);
                return;
            }
        };
        let idx = self.texts.len();
        self.texts.push(Text {
            path: path.to_path_buf(),
            text,
        });
        let file = self.parse(idx);
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut includes: Vec<(PathBuf, Option<Diagnostic>)> = Vec::new();
        if file.include.is_empty() && stack.is_empty() {
            let conf_d = dir.join("conf.d");
            if conf_d.is_dir() {
                includes.push((conf_d, None));
            }
        }
        for inc in &file.include {
            let at = self.texts[idx].at(inc.span().start, "", None);
            includes.push((dir.join(inc.get_ref()), Some(at)));
        }
        self.files.push((idx, file));
        stack.push(canonical);
        for (inc, at) in includes {
            if inc.is_dir() {
                let mut entries: Vec<PathBuf> = match std::fs::read_dir(&inc) {
                    Ok(rd) => rd
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                        .collect(),
                    Err(e) => {
                        let mut d = at.unwrap_or_else(|| self.texts[idx].whole("", None));
                        let (message, help) = words::unreadable(
                            &inc,
                            &e,
                            "create the directory, or remove it from `include`",
                        );
                        d.message = message.replacen("cannot read", "cannot read directory", 1);
                        d.help = Some(help);
                        self.problems.push(d);
                        continue;
                    }
                };
                entries.sort();
                for p in entries {
                    self.load(&p, stack, at.clone());
                }
            } else {
                self.load(&inc, stack, at);
            }
        }
        stack.pop();
    }
}

impl Loader {
    fn syntax_error(&mut self, idx: usize, e: &toml::de::Error) {
        let msg = e.message().trim().to_string();
        let d = match e.span() {
            Some(span) => self.texts[idx].at(span.start, msg, None),
            None => self.texts[idx].whole(msg, None),
        };
        self.problems.push(d);
    }

    /// Parses one file, entry by entry, so that one broken plan does not hide the
    /// problems of the others, and every problem inside an entry is reported
    /// (`collect::deserialize`). After a syntax error (every one the parser could recover
    /// from is reported) the rest of the file may be misread: its entries are then taken
    /// quietly, to be known by name only, and its includes are still followed.
    fn parse(&mut self, idx: usize) -> raw::File {
        use toml::de::DeValue;
        let text = self.texts[idx].text.clone();
        let (root, syntax) = toml::de::DeTable::parse_recoverable(&text);
        for e in &syntax {
            self.syntax_error(idx, e);
        }
        let quiet = !syntax.is_empty();
        if quiet {
            self.unparsed.insert(idx);
        }
        fn entries<T: serde::de::DeserializeOwned>(
            l: &mut Loader,
            idx: usize,
            quiet: bool,
            key: &'static str,
            value: &Spanned<DeValue<'_>>,
        ) -> BTreeMap<String, Spanned<T>> {
            let mut out = BTreeMap::new();
            let DeValue::Table(t) = value.get_ref() else {
                if !quiet {
                    let d = l.texts[idx].at(
                        value.span().start,
                        format!("`{key}` must be a table of named entries"),
                        Some(format!("write [{key}.NAME] sections")),
                    );
                    l.problems.push(d);
                }
                return out;
            };
            for (name, v) in t {
                let name = name.get_ref().to_string();
                let path = [Seg::Key(key.into()), Seg::Key(name.clone())];
                let (value, clean) = l.deserialize::<T>(idx, quiet, &path, v);
                if !clean || quiet {
                    l.broken.insert((idx, key, name.clone()));
                }
                if let Some(x) = value {
                    out.insert(name, Spanned::new(v.span(), x));
                }
            }
            out
        }
        let mut file = raw::File::default();
        for (key, value) in root.get_ref() {
            match key.get_ref().as_ref() {
                "include" => {
                    let path = [Seg::Key("include".into())];
                    // What could be read of it: one bad entry does not hide the others.
                    file.include = self
                        .deserialize(idx, quiet, &path, value)
                        .0
                        .unwrap_or_default();
                }
                "settings" => {
                    let path = [Seg::Key("settings".into())];
                    // Only settings without problems are used (the defaults otherwise).
                    if let (Some(s), true) = self.deserialize(idx, quiet, &path, value) {
                        file.settings = Some(s);
                    }
                }
                "repositories" => {
                    file.repositories = entries(self, idx, quiet, "repositories", value)
                }
                "sources" => file.sources = entries(self, idx, quiet, "sources", value),
                "plans" => file.plans = entries(self, idx, quiet, "plans", value),
                _ if quiet => {}
                other => {
                    const KEYS: [&str; 5] =
                        ["include", "settings", "repositories", "sources", "plans"];
                    let (msg, help) = match closest(other, KEYS) {
                        Some(c) => (format!("unknown key `{other}`, did you mean `{c}`?"), None),
                        None => (
                            format!("unknown key `{other}`"),
                            Some(format!("the top level takes: {}", KEYS.join(", "))),
                        ),
                    };
                    let d = self.texts[idx].at(key.span().start, msg, help);
                    self.problems.push(d);
                }
            }
        }
        file
    }
}

/// Parses a `KEY=VALUE` file like systemd's EnvironmentFile (comments, blank lines,
/// optional `export `, optional quotes).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_env(&text, &path.display().to_string())
}

/// Parses `KEY=VALUE` lines like [`read_env_file`]; `origin` names where they came from
/// in errors (which never show a value).
pub fn parse_env(text: &str, origin: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{origin}:{}: expected KEY=VALUE", i + 1));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Not the text itself: a secret store printing a bare value (a base64 key
            // ends in `=`) would put the secret in the error.
            return Err(format!(
                "{origin}:{}: what is left of '=' is not a variable name (letters, digits, _)",
                i + 1
            ));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}
