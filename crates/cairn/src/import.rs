//! `cairn import autorestic|backrest|resticprofile FILE`: turns another restic tool's
//! config into `cairn.toml` (settings and repositories) plus one `conf.d/NAME.toml` per
//! location / plan / profile, with inline secrets moved to 0600 files next to it.
//!
//! Each tool's module reads its format into an [`Imported`]; this module owns what they
//! share: reading the file (bounded), YAML to JSON values, key bookkeeping (every key of
//! the source is either used or reported, never silently dropped), secrets, and writing
//! the result without overwriting anything. It never touches a repository: the imported
//! config keeps the same repository URL and password, so the first cairn run finds the
//! tool's snapshots as parents (same host and paths).

pub mod autorestic;
pub mod backrest;
pub mod resticprofile;
mod write;
mod yaml;

pub use write::write;

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Table;

/// Config files larger than this are refused: every tool's config is a few KiB.
pub const MAX_INPUT: u64 = 1 << 20;

/// The directory, next to `cairn.toml`, that holds the moved secrets.
pub const SECRETS_DIR: &str = "secrets";

/// What could not be carried over, and why.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where in the source config: `locations.home.options.backup.compression`.
    pub key: String,
    pub reason: String,
}

/// The report of one import.
#[derive(Serialize, Debug, Default)]
pub struct Report {
    /// Files written, relative to the output directory.
    pub written: Vec<String>,
    /// Secret files among them.
    pub secrets: Vec<String>,
    /// Keys of the source config that cairn does not carry over.
    pub not_carried_over: Vec<Note>,
    /// Things carried over differently, worth a look.
    pub notes: Vec<Note>,
}

impl Report {
    pub fn skip(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.not_carried_over.push(Note {
            key: key.into(),
            reason: reason.into(),
        });
    }
    pub fn note(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.notes.push(Note {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// A password source of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// Inline in the source config: moved to `secrets/NAME.password`.
    Inline(String),
    /// A file the source config already named (absolute).
    File(String),
    Command(String),
    Env(String),
    None,
}

/// One repository of `cairn.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: String,
    pub password: Password,
    /// Environment of the backend: secret ones go to `secrets/NAME.env`, the others
    /// (region, endpoints) into `env`.
    pub env: BTreeMap<String, String>,
    /// An env file the source config already named (absolute).
    pub env_file: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// Commands around a backup.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    pub finally: Vec<String>,
}

impl Hooks {
    fn is_empty(&self) -> bool {
        self.before.is_empty()
            && self.after.is_empty()
            && self.success.is_empty()
            && self.failure.is_empty()
            && self.finally.is_empty()
    }
}

/// The backup filter of a source.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub exclude: Vec<String>,
    pub iexclude: Vec<String>,
    pub exclude_file: Vec<String>,
    pub exclude_if_present: Vec<String>,
    pub exclude_caches: bool,
    pub exclude_larger_than: Option<String>,
    pub one_file_system: bool,
}

/// One plan: a repository, a schedule, retention, hooks.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub name: String,
    pub repository: String,
    pub schedule: Option<String>,
    /// `keep-daily = 7` ...: cairn's retention keys, already checked.
    pub retention: Table,
    pub prune: Option<String>,
    /// `[plans.NAME.check]`: schedule and read-data-subset.
    pub check: Table,
    pub hooks: Hooks,
    pub healthchecks: Option<String>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub copy_to: Vec<String>,
    pub nice: Option<i64>,
    pub ionice: Option<String>,
}

/// One fragment of `conf.d/`: a source (paths and filter) and the plans that back it up.
#[derive(Debug, Default, Clone)]
pub struct Fragment {
    pub name: String,
    /// A comment at the top: where it came from.
    pub origin: String,
    pub paths: Vec<String>,
    pub filter: Filter,
    pub plans: Vec<Plan>,
}

/// Everything one import produces.
#[derive(Debug, Default)]
pub struct Imported {
    /// The tool, for the comments (`autorestic`).
    pub tool: &'static str,
    pub source: PathBuf,
    pub host: Option<String>,
    pub repos: Vec<Repo>,
    pub fragments: Vec<Fragment>,
    pub report: Report,
}

/// Reads a config file of at most [`MAX_INPUT`] bytes as text.
pub fn read_input(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(format!(
            "{} is larger than 1 MiB: not a config file this importer reads",
            path.display()
        ));
    }
    String::from_utf8(buf).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Parses YAML text into a JSON value (the first document).
pub fn parse_yaml(text: &str, origin: &Path) -> Result<Value, String> {
    yaml::parse(text).map_err(|e| format!("{}: {e}", origin.display()))
}

/// A map of the source config whose keys are checked off as they are used: what is left
/// at [`Obj::finish`] is reported as not carried over.
pub struct Obj<'a> {
    pub path: String,
    map: Option<&'a Map<String, Value>>,
    used: Vec<String>,
}

impl<'a> Obj<'a> {
    /// `v` at `path`; a value that is not a map is reported and reads as empty.
    pub fn new(path: impl Into<String>, v: Option<&'a Value>, rep: &mut Report) -> Obj<'a> {
        let path = path.into();
        let map = match v {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => {
                let at = if path.is_empty() {
                    "(top level)"
                } else {
                    &path
                };
                rep.skip(at, "expected a map of settings: left out");
                None
            }
        };
        Obj {
            path,
            map,
            used: Vec::new(),
        }
    }

    pub fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub fn get(&mut self, k: &str) -> Option<&'a Value> {
        self.used.push(k.to_string());
        self.map.and_then(|m| m.get(k)).filter(|v| !v.is_null())
    }

    /// A list (absent: empty; anything else is reported and reads as empty).
    pub fn list(&mut self, k: &str, rep: &mut Report) -> &'a [Value] {
        let key = self.key(k);
        match self.get(k) {
            Some(Value::Array(a)) => a,
            None => &[],
            Some(_) => {
                rep.skip(key, "expected a list: left out");
                &[]
            }
        }
    }

    /// Marks keys as handled without reading them (e.g. format versions).
    pub fn ignore(&mut self, keys: &[&str]) {
        self.used.extend(keys.iter().map(|k| k.to_string()));
    }

    /// Reports a key cairn has no counterpart for, when present.
    pub fn skip(&mut self, k: &str, reason: &str, rep: &mut Report) {
        if self.get(k).is_some() {
            rep.skip(self.key(k), reason);
        }
    }

    pub fn was_used(&self, k: &str) -> bool {
        self.used.iter().any(|u| u == k)
    }

    pub fn keys(&self) -> Vec<String> {
        self.map
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A string (numbers and booleans written as text are taken as they read).
    pub fn str(&mut self, k: &str, rep: &mut Report) -> Option<String> {
        let key = self.key(k);
        match self.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                rep.skip(key, "expected a string: left out");
                None
            }
        }
    }

    /// A string or a list of strings.
    pub fn strs(&mut self, k: &str, rep: &mut Report) -> Vec<String> {
        let key = self.key(k);
        match self.get(k) {
            None => Vec::new(),
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match scalar(v) {
                        Some(s) => out.push(s),
                        None => rep.skip(format!("{key}[{i}]"), "expected a string: left out"),
                    }
                }
                out
            }
            Some(v) => match scalar(v) {
                Some(s) => vec![s],
                None => {
                    rep.skip(key, "expected a string or a list of strings: left out");
                    Vec::new()
                }
            },
        }
    }

    pub fn bool(&mut self, k: &str, rep: &mut Report) -> Option<bool> {
        let key = self.key(k);
        match self.get(k)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                rep.skip(key, "expected true or false: left out");
                None
            }
        }
    }

    pub fn int(&mut self, k: &str, rep: &mut Report) -> Option<i64> {
        let key = self.key(k);
        match self.get(k)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                rep.skip(key, "expected a whole number: left out");
                None
            }
        }
    }

    /// Reports every key not used.
    pub fn finish(self, rep: &mut Report) {
        if let Some(m) = self.map {
            for k in m.keys() {
                if !self.used.iter().any(|u| u == k) {
                    rep.skip(
                        self.key(k),
                        "not a key cairn knows for this tool (a newer or misspelled option?): left out",
                    );
                }
            }
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The strings of a value that is a string or a list of strings (others left out).
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A name cairn accepts (letters, digits, `-`, `_`, at most 64), from any text.
pub fn name(text: &str) -> String {
    let mut n: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if n.is_empty() {
        n = "unnamed".into();
    }
    n
}

/// Retention keys restic's `forget` takes that cairn has, with their cairn names.
pub fn retention_key(k: &str) -> Option<&'static str> {
    Some(match k {
        "keep-last" => "keep-last",
        "keep-hourly" => "keep-hourly",
        "keep-daily" => "keep-daily",
        "keep-weekly" => "keep-weekly",
        "keep-monthly" => "keep-monthly",
        "keep-yearly" => "keep-yearly",
        "keep-within" => "keep-within",
        "keep-tag" => "keep-tag",
        "group-by" => "group-by",
        _ => return None,
    })
}

/// Puts one retention value into `t`, reporting what does not fit.
pub fn put_retention(t: &mut Table, key: &str, cairn: &str, v: &Value, rep: &mut Report) {
    match cairn {
        "keep-tag" => {
            let tags: Vec<toml::Value> = match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(scalar)
                    .map(toml::Value::String)
                    .collect(),
                v => scalar(v).into_iter().map(toml::Value::String).collect(),
            };
            t.insert(cairn.into(), toml::Value::Array(tags));
        }
        "keep-within" | "group-by" => match scalar(v) {
            Some(s) => {
                t.insert(cairn.into(), toml::Value::String(s));
            }
            None => rep.skip(key, "expected a string: left out"),
        },
        _ => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) => {
                t.insert(cairn.into(), toml::Value::Integer(n));
            }
            None => rep.skip(key, "expected a count: left out"),
        },
    }
}

/// A schedule cairn understands, or a note why it is left out.
pub fn schedule(text: &str, key: &str, rep: &mut Report) -> Option<String> {
    match crate::schedule::Schedule::parse(text) {
        Ok(_) => Some(text.trim().to_string()),
        Err(e) => {
            rep.skip(
                key,
                format!("schedule {text:?} is not one cairn reads ({e}): the plan runs only when asked until you add one"),
            );
            None
        }
    }
}

/// Environment variables whose values are not secret: kept in the config's `env`.
pub(crate) fn public_env(k: &str) -> bool {
    matches!(
        k,
        "AWS_DEFAULT_REGION"
            | "AWS_REGION"
            | "AWS_PROFILE"
            | "RESTIC_COMPRESSION"
            | "RESTIC_PACK_SIZE"
            | "RESTIC_CACHE_DIR"
            | "TMPDIR"
            | "AZURE_ACCOUNT_NAME"
            | "GOOGLE_PROJECT_ID"
            | "B2_ACCOUNT_ID_FILE"
    )
}

/// Splits a repository environment into the password source it names and the rest.
/// `RESTIC_PASSWORD`, `RESTIC_PASSWORD_FILE`, `RESTIC_PASSWORD_COMMAND` and
/// `RESTIC_REPOSITORY` are restic's own and become the repository's settings.
pub fn take_restic_env(
    env: &mut BTreeMap<String, String>,
    password: &mut Password,
    url: &mut Option<String>,
) {
    if let Some(v) = env.remove("RESTIC_REPOSITORY") {
        url.get_or_insert(v);
    }
    if let Some(v) = env.remove("RESTIC_PASSWORD") {
        if *password == Password::None {
            *password = Password::Inline(v);
        }
    }
    if let Some(v) = env.remove("RESTIC_PASSWORD_FILE") {
        if *password == Password::None {
            *password = Password::File(v);
        }
    }
    if let Some(v) = env.remove("RESTIC_PASSWORD_COMMAND") {
        if *password == Password::None {
            *password = Password::Command(v);
        }
    }
}

/// Adds `repo` unless one with the same settings exists; returns the name to use.
pub fn add_repo(repos: &mut Vec<Repo>, mut repo: Repo) -> String {
    if let Some(r) = repos.iter().find(|r| {
        r.url == repo.url
            && r.password == repo.password
            && r.env == repo.env
            && r.env_file == repo.env_file
            && r.options == repo.options
    }) {
        return r.name.clone();
    }
    let base = repo.name.clone();
    let mut i = 2;
    while repos.iter().any(|r| r.name == repo.name) {
        repo.name = format!("{base}-{i}");
        i += 1;
    }
    let n = repo.name.clone();
    repos.push(repo);
    n
}

/// Makes a path absolute against the source config's directory (how the tools read them).
pub fn absolute(p: &str, base: &Path) -> String {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(rest).display().to_string();
        }
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return p.to_string();
    }
    // Lexically: `./a/../b` -> `b` (restic records cleaned absolute paths).
    let mut out = base.to_path_buf();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out.display().to_string()
}

/// Takes one restic `backup` flag (as autorestic options and resticprofile's backup
/// section write them) into `plan`/`filter`; false when cairn has no such setting.
pub fn backup_flag(k: &str, v: &Value, base: &Path, filter: &mut Filter, plan: &mut Plan) -> bool {
    let list = || -> Vec<String> {
        match v {
            Value::Array(a) => a.iter().filter_map(scalar).collect(),
            v => scalar(v).into_iter().collect(),
        }
    };
    let yes = matches!(v, Value::Bool(true)) || v.as_str() == Some("true");
    match k {
        "exclude" => filter.exclude.extend(list()),
        "iexclude" => filter.iexclude.extend(list()),
        "exclude-file" => filter
            .exclude_file
            .extend(list().iter().map(|p| absolute(p, base))),
        "exclude-if-present" => filter.exclude_if_present.extend(list()),
        "exclude-caches" => filter.exclude_caches |= yes,
        "one-file-system" => filter.one_file_system |= yes,
        "exclude-larger-than" => filter.exclude_larger_than = scalar(v),
        "tag" => plan.tags.extend(list()),
        "host" => match v {
            Value::String(s) if !s.is_empty() => plan.host = Some(s.clone()),
            // resticprofile: `host = true` is this machine's name, cairn's default.
            Value::Bool(_) => {}
            _ => return false,
        },
        _ => return false,
    }
    true
}
