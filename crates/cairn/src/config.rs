//! The declarative configuration: `cairn.toml` plus fragments, validated into types that
//! cannot be invalid.
//!
//! Loading: the main file, then every file it includes (`include = [...]`, default the
//! `conf.d` directory next to it; a directory means its `*.toml` files in name order),
//! recursively. Precedence is simple on purpose: `[settings]` may only appear in the main
//! file, and every repository, source and plan is defined in exactly one file — a second
//! definition is an error naming both places, never a silent override. This is what lets
//! each service own its fragment (`conf.d/hass.toml` defines `[sources.hass]`) while a plan
//! picks sources by name or by pattern (`sources = ["*"]`).
//!
//! Every problem found is reported at once, each with file, line and column and a fix.
//! Problems with the machine rather than the text (a password file that is missing or
//! unreadable) are found by probing and can be skipped with `offline` when the config is
//! checked away from the machine it is for.

pub mod raw;

use crate::schedule::Schedule;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// One problem, with where it is and what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
    /// The offending line, for display.
    #[serde(skip)]
    pub snippet: Option<String>,
    /// A warning does not make the config invalid.
    pub warning: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning" } else { "error" };
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {level}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        } else {
            write!(f, "{}: {level}: {}", self.file.display(), self.message)?;
        }
        if let Some(s) = &self.snippet {
            write!(
                f,
                "\n    | {s}\n    | {}^",
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n    = help: {h}")?;
        }
        Ok(())
    }
}

/// Every problem of a config that could not be loaded.
#[derive(Debug)]
pub struct Problems(pub Vec<Diagnostic>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.0.iter().filter(|d| !d.warning).count();
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        write!(f, "{errors} error(s) in the configuration")
    }
}

impl std::error::Error for Problems {}

/// A loaded file: its path and text, to turn byte offsets into lines and columns.
struct Text {
    path: PathBuf,
    text: String,
}

impl Text {
    fn at(&self, offset: usize, message: impl Into<String>, help: Option<String>) -> Diagnostic {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        let snippet = self.text[line_start..]
            .lines()
            .next()
            .map(|l| l.trim_end().to_string());
        Diagnostic {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
            help,
            snippet,
            warning: false,
        }
    }

    fn whole(&self, message: impl Into<String>, help: Option<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.clone(),
            line: 0,
            column: 0,
            message: message.into(),
            help,
            snippet: None,
            warning: false,
        }
    }
}

// ---- the model: validated, cannot be invalid ---------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Every file read, main file first.
    pub files: Vec<PathBuf>,
    pub settings: Settings,
    pub repositories: BTreeMap<String, Repository>,
    pub sources: BTreeMap<String, Source>,
    pub plans: BTreeMap<String, Plan>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    pub state_dir: PathBuf,
    pub host: Option<String>,
    pub metrics_listen: Option<String>,
    pub metrics_textfile: Option<PathBuf>,
    pub notify: Notify,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Password {
    File(PathBuf),
    Command(String),
    Env(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Repository {
    pub name: String,
    pub url: String,
    pub password: Password,
    pub env_file: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub limit_upload: Option<u64>,
    pub limit_download: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub defined_in: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Filter {
    pub exclude: Vec<String>,
    pub iexclude: Vec<String>,
    pub exclude_file: Vec<PathBuf>,
    pub exclude_if_present: Vec<String>,
    pub exclude_caches: bool,
    pub exclude_larger_than: Option<String>,
    pub one_file_system: bool,
}

impl Filter {
    /// The backup flags for this filter.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (flag, vals) in [
            ("--exclude", &self.exclude),
            ("--iexclude", &self.iexclude),
            ("--exclude-if-present", &self.exclude_if_present),
        ] {
            for v in vals {
                a.push(format!("{flag}={v}"));
            }
        }
        for f in &self.exclude_file {
            a.push(format!("--exclude-file={}", f.display()));
        }
        if self.exclude_caches {
            a.push("--exclude-caches".into());
        }
        if let Some(s) = &self.exclude_larger_than {
            a.push(format!("--exclude-larger-than={s}"));
        }
        if self.one_file_system {
            a.push("--one-file-system".into());
        }
        a
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Source {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub filter: Filter,
    pub tags: Vec<String>,
    pub hooks: Hooks,
    /// SQLite databases copied online before the backup.
    pub sqlite: Vec<PathBuf>,
    /// Back up from filesystem snapshots of this kind.
    pub snapshot: Option<crate::sources::SnapshotKind>,
    /// Database dumps: (path in the snapshot, shell command writing the dump).
    pub dumps: Vec<(PathBuf, String)>,
    pub defined_in: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<String>,
    pub keep_tag: Vec<String>,
    pub group_by: Option<String>,
}

impl Retention {
    /// The `forget` flags for this policy.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (flag, v) in [
            ("--keep-last", self.keep_last),
            ("--keep-hourly", self.keep_hourly),
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
            ("--keep-yearly", self.keep_yearly),
        ] {
            match v {
                Some(u32::MAX) => a.push(format!("{flag}=unlimited")),
                Some(n) => a.push(format!("{flag}={n}")),
                None => {}
            }
        }
        if let Some(w) = &self.keep_within {
            a.push(format!("--keep-within={w}"));
        }
        for t in &self.keep_tag {
            a.push(format!("--keep-tag={t}"));
        }
        if let Some(g) = &self.group_by {
            a.push(format!("--group-by={g}"));
        }
        a
    }
}

/// When a maintenance step runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum When {
    /// After every backup.
    Always,
    /// When the schedule has come due since the step last ran.
    Schedule(Schedule),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckPolicy {
    pub when: When,
    /// `--read-data-subset` value, or "all" for `--read-data`.
    pub read_data: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RestoreTestPolicy {
    pub when: When,
    pub files: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    pub finally: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            before: Vec::new(),
            after: Vec::new(),
            success: Vec::new(),
            failure: Vec::new(),
            finally: Vec::new(),
            timeout: Duration::from_secs(300),
        }
    }
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.before.is_empty()
            && self.after.is_empty()
            && self.success.is_empty()
            && self.failure.is_empty()
            && self.finally.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Start,
    Success,
    Failure,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Notify {
    pub healthchecks: Option<String>,
    pub ntfy: Option<String>,
    pub webhook: Option<String>,
    /// Events to send; `None` means each channel's default.
    pub on: Option<BTreeSet<Event>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ionice {
    Idle,
    BestEffort(u8),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    pub name: String,
    pub repository: String,
    /// Names of the sources, resolved.
    pub sources: Vec<String>,
    /// Every path backed up: the sources' and the plan's own, sorted, without duplicates.
    pub paths: Vec<PathBuf>,
    /// The sources' SQLite databases.
    pub sqlite: Vec<PathBuf>,
    /// Paths backed up from filesystem snapshots, with the snapshot kind.
    pub snapshots: Vec<(PathBuf, crate::sources::SnapshotKind)>,
    /// The sources' database dumps, streamed into the snapshot.
    pub dumps: Vec<(PathBuf, String)>,
    /// Sources' excludes scoped to their paths, plus the plan's own.
    pub filter: Filter,
    pub schedule: Option<Schedule>,
    pub retention: Option<Retention>,
    /// When to prune (only with a retention policy).
    pub prune: Option<When>,
    pub check: Option<CheckPolicy>,
    /// Repositories that get a copy of the plan's snapshots after each backup.
    pub copy_to: Vec<String>,
    pub restore_test: Option<RestoreTestPolicy>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub nice: Option<i32>,
    pub ionice: Option<Ionice>,
    pub limit_upload: Option<u64>,
    pub limit_download: Option<u64>,
    /// The plan's hooks first, then each source's (labelled by source).
    pub hooks: Vec<(String, Hooks)>,
    pub notify: Notify,
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_age: Option<Duration>,
    pub defined_in: PathBuf,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Durations like `90s`, `5m`, `26h`, `7d`, `1h30m`: the CLI's parser (`--retry-lock`).
pub use crate::units::parse_duration;

// ---- suggestions ---------------------------------------------------------------------------

/// Edit distance counting a swap of two neighbours as one edit (typos are often swaps).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// Rewrites serde's "unknown field" message into ours, with a suggestion.
fn explain_parse_error(message: &str) -> (String, Option<String>) {
    let ticks: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") {
        if let Some((word, expected)) = ticks.split_first() {
            let help = if expected.is_empty() {
                "this table takes no keys".to_string()
            } else {
                format!("valid keys here: {}", expected.join(", "))
            };
            let msg = match closest(word, expected.iter().copied()) {
                Some(c) => format!("unknown key `{word}`, did you mean `{c}`?"),
                None => format!("unknown key `{word}`"),
            };
            return (msg, Some(help));
        }
    }
    if message.starts_with("missing field") {
        if let Some(word) = ticks.first() {
            return (
                format!("missing key `{word}`"),
                Some(format!("add `{word} = ...` to this table")),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return (
                format!("wrong type: expected {expected}, found {found}"),
                None,
            );
        }
    }
    (message.trim().to_string(), None)
}

// ---- loading -------------------------------------------------------------------------------

/// The default config path: `$CAIRN_CONFIG`, else /etc/cairn/cairn.toml as root, else
/// ~/.config/cairn/cairn.toml.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/etc/cairn/cairn.toml");
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("cairn/cairn.toml")
}

fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/cairn");
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cairn")
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Skip probing the machine (password files, env files, source paths).
    pub offline: bool,
}

struct Loader {
    texts: Vec<Text>,
    files: Vec<(usize, raw::File)>,
    problems: Vec<Diagnostic>,
    seen: BTreeSet<PathBuf>,
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
                d.message = format!("cannot read {}: {e}", path.display());
                d.help = Some(if e.kind() == std::io::ErrorKind::NotFound {
                    "create it (see examples/ in cairn's repository) or give another file with --config".into()
                } else {
                    "check the file's permissions".into()
                });
                self.problems.push(d);
                return;
            }
        };
        let idx = self.texts.len();
        self.texts.push(Text {
            path: path.to_path_buf(),
            text,
        });
        let Some(file) = self.parse(idx) else { return };
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
                        d.message = format!("cannot read directory {}: {e}", inc.display());
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
    fn parse_error(&mut self, idx: usize, e: &toml::de::Error) {
        let (msg, help) = explain_parse_error(e.message());
        let d = match e.span() {
            Some(span) => self.texts[idx].at(span.start, msg, help),
            None => self.texts[idx].whole(msg, help),
        };
        self.problems.push(d);
    }

    /// Parses one file, entry by entry, so that one broken plan does not hide the
    /// problems of the others. A syntax error stops the file (what follows may be
    /// misread), after reporting every syntax error the parser could recover from.
    fn parse(&mut self, idx: usize) -> Option<raw::File> {
        use serde::Deserialize;
        use toml::de::{DeValue, ValueDeserializer};
        let text = self.texts[idx].text.clone();
        let (root, syntax) = toml::de::DeTable::parse_recoverable(&text);
        if !syntax.is_empty() {
            for e in &syntax {
                self.parse_error(idx, e);
            }
            return None;
        }
        fn entries<T: serde::de::DeserializeOwned>(
            l: &mut Loader,
            idx: usize,
            key: &str,
            value: &Spanned<DeValue<'_>>,
        ) -> BTreeMap<String, Spanned<T>> {
            let mut out = BTreeMap::new();
            let DeValue::Table(t) = value.get_ref() else {
                let d = l.texts[idx].at(
                    value.span().start,
                    format!("`{key}` must be a table of named entries"),
                    Some(format!("write [{key}.NAME] sections")),
                );
                l.problems.push(d);
                return out;
            };
            for (name, v) in t {
                match T::deserialize(ValueDeserializer::from(v.clone())) {
                    Ok(x) => {
                        out.insert(name.get_ref().to_string(), Spanned::new(v.span(), x));
                    }
                    Err(e) => l.parse_error(idx, &e),
                }
            }
            out
        }
        let mut file = raw::File::default();
        for (key, value) in root.get_ref() {
            match key.get_ref().as_ref() {
                "include" => match Vec::<Spanned<String>>::deserialize(ValueDeserializer::from(
                    value.clone(),
                )) {
                    Ok(v) => file.include = v,
                    Err(e) => self.parse_error(idx, &e),
                },
                "settings" => {
                    match raw::Settings::deserialize(ValueDeserializer::from(value.clone())) {
                        Ok(v) => file.settings = Some(v),
                        Err(e) => self.parse_error(idx, &e),
                    }
                }
                "repositories" => file.repositories = entries(self, idx, "repositories", value),
                "sources" => file.sources = entries(self, idx, "sources", value),
                "plans" => file.plans = entries(self, idx, "plans", value),
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
        Some(file)
    }
}

/// Loads and validates the config at `path` and everything it includes.
pub fn load(path: &Path, opts: LoadOptions) -> Result<(Config, Vec<Diagnostic>), Problems> {
    let mut l = Loader {
        texts: Vec::new(),
        files: Vec::new(),
        problems: Vec::new(),
        seen: BTreeSet::new(),
    };
    l.load(path, &mut Vec::new(), None);
    let mut v = Validator {
        texts: &l.texts,
        problems: std::mem::take(&mut l.problems),
        opts,
    };
    let config = v.validate(&l.files);
    let problems = v.problems;
    if problems.iter().any(|d| !d.warning) {
        return Err(Problems(problems));
    }
    Ok((config, problems))
}

// ---- validation ----------------------------------------------------------------------------

struct Validator<'a> {
    texts: &'a [Text],
    problems: Vec<Diagnostic>,
    opts: LoadOptions,
}

/// A value and the file it came from.
struct At<'a, T> {
    file: usize,
    value: &'a Spanned<T>,
}

impl<'a> Validator<'a> {
    fn error<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let d = self.texts[file].at(at.span().start, msg, help);
        self.problems.push(d);
    }

    /// Like `error`, with the value hidden in the printed line: it is a secret.
    fn error_secret<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = self.texts[file].at(at.span().start, msg, help);
        if let Some(line) = &d.snippet {
            let keep: String = line.chars().take(d.column.saturating_sub(1)).collect();
            d.snippet = Some(format!("{keep}<redacted>"));
        }
        self.problems.push(d);
    }

    fn warn<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = self.texts[file].at(at.span().start, msg, help);
        d.warning = true;
        self.problems.push(d);
    }

    /// A path as written: `~/` expanded, relative ones taken from the config file's
    /// directory.
    fn path(&self, file: usize, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/") {
            if let Some(h) = std::env::var_os("HOME") {
                return PathBuf::from(h).join(rest);
            }
        }
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.texts[file]
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(p)
        }
    }

    fn validate(&mut self, files: &[(usize, raw::File)]) -> Config {
        // Merge: each entry defined once.
        let mut repos: BTreeMap<String, At<raw::Repository>> = BTreeMap::new();
        let mut sources: BTreeMap<String, At<raw::Source>> = BTreeMap::new();
        let mut plans: BTreeMap<String, At<raw::Plan>> = BTreeMap::new();
        let mut settings = None;
        for (i, (file, f)) in files.iter().enumerate() {
            if let Some(s) = &f.settings {
                if i == 0 {
                    settings = Some(s.clone());
                } else {
                    let d = self.texts[*file].whole(
                        "[settings] may only be in the main config file",
                        Some(format!(
                            "move it to {}",
                            self.texts[files[0].0].path.display()
                        )),
                    );
                    self.problems.push(d);
                }
            }
            self.merge(
                "repository",
                "repositories",
                *file,
                &f.repositories,
                &mut repos,
            );
            self.merge("source", "sources", *file, &f.sources, &mut sources);
            self.merge("plan", "plans", *file, &f.plans, &mut plans);
        }
        let settings = self.settings(files.first().map(|f| f.0), settings.unwrap_or_default());
        let repositories: BTreeMap<String, Repository> = repos
            .iter()
            .filter_map(|(name, at)| Some((name.clone(), self.repository(name, at)?)))
            .collect();
        let sources_ok: BTreeMap<String, Source> = sources
            .iter()
            .filter_map(|(name, at)| Some((name.clone(), self.source(name, at)?)))
            .collect();
        let plans_ok: BTreeMap<String, Plan> = plans
            .iter()
            .filter_map(|(name, at)| {
                Some((
                    name.clone(),
                    self.plan(name, at, &repos, &sources, &sources_ok, &settings)?,
                ))
            })
            .collect();
        Config {
            files: self.texts.iter().map(|t| t.path.clone()).collect(),
            settings,
            repositories,
            sources: sources_ok,
            plans: plans_ok,
        }
    }

    fn merge<'b, T>(
        &mut self,
        what: &str,
        table: &str,
        file: usize,
        entries: &'b BTreeMap<String, Spanned<T>>,
        into: &mut BTreeMap<String, At<'b, T>>,
    ) {
        for (name, value) in entries {
            if let Some(first) = into.get(name) {
                let first_at = self.texts[first.file].at(first.value.span().start, "", None);
                self.error(
                    file,
                    value,
                    format!(
                        "{what} `{name}` is already defined at {}:{}",
                        first_at.file.display(),
                        first_at.line
                    ),
                    Some(format!(
                        "define [{table}.{name}] once, or give this one another name"
                    )),
                );
                continue;
            }
            if !valid_name(name) {
                self.error(
                    file,
                    value,
                    format!("{what} name `{name}` is not allowed"),
                    Some(
                        "use letters, digits, `-` and `_` (it becomes part of file and unit names)"
                            .into(),
                    ),
                );
                continue;
            }
            into.insert(name.clone(), At { file, value });
        }
    }

    fn settings(&mut self, main: Option<usize>, s: raw::Settings) -> Settings {
        let state_dir = match (&s.state_dir, main) {
            (Some(d), Some(f)) => self.path(f, d.get_ref()),
            _ => default_state_dir(),
        };
        if let (Some(l), Some(f)) = (&s.metrics.as_ref().and_then(|m| m.listen.clone()), main) {
            if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
                self.error(
                    f,
                    l,
                    format!("metrics listen address {:?} is not an address", l.get_ref()),
                    Some("use IP:PORT, e.g. \"127.0.0.1:9898\"".into()),
                );
            }
        }
        let notify = match (&s.notify, main) {
            (Some(n), Some(f)) => self.notify(f, n),
            _ => Notify::default(),
        };
        Settings {
            state_dir,
            host: s.host.clone(),
            metrics_listen: s
                .metrics
                .as_ref()
                .and_then(|m| m.listen.as_ref().map(|l| l.get_ref().clone())),
            metrics_textfile: s
                .metrics
                .as_ref()
                .and_then(|m| m.textfile.as_ref().map(PathBuf::from)),
            notify,
        }
    }

    fn notify(&mut self, file: usize, n: &raw::Notify) -> Notify {
        let bad = |url: &Option<String>, key: &str, problems: &mut Vec<Diagnostic>| {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    let d = self.texts[file].whole(
                        format!("notify.{key} = {u:?} is not an http(s) URL"),
                        Some("write the whole URL, e.g. \"https://hc-ping.com/<uuid>\"".into()),
                    );
                    problems.push(d);
                }
            }
        };
        let mut probs = Vec::new();
        bad(&n.healthchecks, "healthchecks", &mut probs);
        bad(&n.ntfy, "ntfy", &mut probs);
        bad(&n.webhook, "webhook", &mut probs);
        self.problems.extend(probs);
        let on = n.on.as_ref().map(|evs| {
            evs.iter()
                .filter_map(|e| match e.as_str() {
                    "start" => Some(Event::Start),
                    "success" => Some(Event::Success),
                    "failure" => Some(Event::Failure),
                    other => {
                        let d = self.texts[file].whole(
                            format!("notify.on: unknown event {other:?}"),
                            Some("use \"start\", \"success\" or \"failure\"".into()),
                        );
                        self.problems.push(d);
                        None
                    }
                })
                .collect()
        });
        Notify {
            healthchecks: n.healthchecks.clone(),
            ntfy: n.ntfy.clone(),
            webhook: n.webhook.clone(),
            on,
        }
    }

    fn repository(&mut self, name: &str, at: &At<raw::Repository>) -> Option<Repository> {
        let f = at.file;
        let r = at.value.get_ref();
        let before = self.errors();
        let url = r.url.get_ref().trim().to_string();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        const SCHEMES: [&str; 6] = ["local", "sftp", "s3", "b2", "rest", "rclone"];
        if url.is_empty() {
            self.error(
                f,
                &r.url,
                format!("repository `{name}` has an empty url"),
                Some("e.g. url = \"/srv/backup/repo\" or \"b2:bucket:path\"".into()),
            );
        } else if !url.starts_with('/') && !SCHEMES.contains(&scheme) {
            let help = match closest(scheme, SCHEMES) {
                Some(c) if !scheme.is_empty() => format!("did you mean `{c}:`?"),
                _ => "use an absolute path, or sftp:, s3:, b2:, rest:, rclone:".into(),
            };
            self.error(f, &r.url, format!("repository `{name}`: {url:?} is neither an absolute path nor a known repository type"), Some(help));
        }
        if has_url_password(&url) {
            self.error_secret(
                f,
                &r.url,
                format!("repository `{name}`: inline secret in the url"),
                Some("keep the URL without user:password and put RESTIC_REST_USERNAME / RESTIC_REST_PASSWORD in env-file".into()),
            );
        }
        if let Some(p) = &r.password {
            self.error_secret(
                f,
                p,
                format!("repository `{name}`: inline secret `password`"),
                Some("passwords do not belong in config files: use password-file = \"/etc/cairn/NAME.pass\" (mode 0600), password-command or password-env".into()),
            );
        }
        let given: Vec<(&str, &Spanned<String>)> = [
            ("password-file", &r.password_file),
            ("password-command", &r.password_command),
            ("password-env", &r.password_env),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let password = match given.as_slice() {
            [] => {
                if r.password.is_none() {
                    self.error(f, at.value, format!("repository `{name}` has no password source"), Some("add password-file = \"/path\", password-command = \"...\" or password-env = \"VAR\"".into()));
                }
                None
            }
            [(k, v)] => Some(match *k {
                "password-file" => {
                    let p = self.path(f, v.get_ref());
                    if !self.opts.offline {
                        if let Err(e) = std::fs::read_to_string(&p) {
                            self.error(f, v, format!("repository `{name}`: cannot read password file {}: {e}", p.display()), Some("create it (mode 0600) or fix the path; `cairn config check --offline` skips this on another machine".into()));
                        }
                    }
                    Password::File(p)
                }
                "password-command" => Password::Command(v.get_ref().clone()),
                _ => Password::Env(v.get_ref().clone()),
            }),
            more => {
                let keys: Vec<&str> = more.iter().map(|(k, _)| *k).collect();
                self.error(
                    f,
                    more[1].1,
                    format!("repository `{name}` has {} password sources", keys.len()),
                    Some(format!("keep one of {}", keys.join(", "))),
                );
                None
            }
        };
        let env_file = r.env_file.as_ref().map(|e| {
            let p = self.path(f, e.get_ref());
            if !self.opts.offline {
                if let Err(err) = read_env_file(&p) {
                    self.error(
                        f,
                        e,
                        format!("repository `{name}`: env-file: {err}"),
                        Some("lines are KEY=VALUE; create the file or fix the path".into()),
                    );
                }
            }
            p
        });
        let mut env = BTreeMap::new();
        for (k, v) in &r.env {
            if looks_secret(k) {
                self.error_secret(
                    f,
                    v,
                    format!("repository `{name}`: inline secret `env.{k}`"),
                    Some("put secrets in env-file (mode 0600), not in the config".into()),
                );
            }
            env.insert(k.clone(), v.get_ref().clone());
        }
        if self.errors() > before {
            return None;
        }
        Some(Repository {
            name: name.to_string(),
            url,
            password: password?,
            env_file,
            env,
            options: r.options.clone(),
            limit_upload: r.limit_upload,
            limit_download: r.limit_download,
            cache_dir: r.cache_dir.as_ref().map(|c| self.path(f, c)),
            defined_in: self.texts[f].path.clone(),
        })
    }

    fn errors(&self) -> usize {
        self.problems.iter().filter(|d| !d.warning).count()
    }

    fn absolute_paths(&mut self, f: usize, what: &str, paths: &[Spanned<String>]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in paths {
            let s = p.get_ref();
            let path = if let Some(rest) = s.strip_prefix("~/") {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest))
            } else {
                Some(PathBuf::from(s))
            };
            match path {
                Some(path) if path.is_absolute() => {
                    if !self.opts.offline && std::fs::symlink_metadata(&path).is_err() {
                        self.warn(f, p, format!("{what}: {} does not exist on this machine", path.display()), Some("a run fails with `source missing` until it exists".into()));
                    }
                    out.push(path);
                }
                _ => self.error(f, p, format!("{what}: path {s:?} is not absolute"), Some("write the full path, e.g. \"/var/lib/hass\" (a plan may run from any directory)".into())),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn filter(
        &mut self,
        f: usize,
        exclude: &[String],
        iexclude: &[String],
        exclude_file: &[Spanned<String>],
        exclude_if_present: &[String],
        exclude_caches: bool,
        exclude_larger_than: &Option<Spanned<String>>,
        one_file_system: bool,
    ) -> Filter {
        let mut files = Vec::new();
        for e in exclude_file {
            let p = self.path(f, e.get_ref());
            if !self.opts.offline && std::fs::read_to_string(&p).is_err() {
                self.error(
                    f,
                    e,
                    format!("cannot read exclude file {}", p.display()),
                    Some("create it or fix the path".into()),
                );
            }
            files.push(p);
        }
        for pat in exclude.iter().chain(iexclude) {
            if let Err(e) = cairn_repo::exclude::Pattern::parse(pat) {
                let d = self.texts[f].whole(format!("exclude pattern {pat:?}: {e}"), None);
                self.problems.push(d);
            }
        }
        if let Some(s) = exclude_larger_than {
            if cairn_repo::exclude::parse_size(s.get_ref()).is_err() {
                self.error(
                    f,
                    s,
                    format!("exclude-larger-than {:?} is not a size", s.get_ref()),
                    Some("e.g. \"500K\", \"20M\", \"2G\"".into()),
                );
            }
        }
        Filter {
            exclude: exclude.to_vec(),
            iexclude: iexclude.to_vec(),
            exclude_file: files,
            exclude_if_present: exclude_if_present.to_vec(),
            exclude_caches,
            exclude_larger_than: exclude_larger_than.as_ref().map(|s| s.get_ref().clone()),
            one_file_system,
        }
    }

    /// A duration longer than zero, or an error at `at` naming `what`.
    fn positive_duration(
        &mut self,
        f: usize,
        at: &Spanned<String>,
        what: &str,
        example: &str,
    ) -> Option<Duration> {
        match parse_duration(at.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(
                    f,
                    at,
                    format!("{what} must be longer than 0s"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
            Err(e) => {
                self.error(
                    f,
                    at,
                    format!("{what}: {e}"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
        }
    }

    fn hooks(&mut self, f: usize, h: &Option<raw::Hooks>) -> Hooks {
        let Some(h) = h else { return Hooks::default() };
        let timeout = h
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(f, t, "hooks.timeout", "\"90s\", \"5m\", \"1h\""))
            .unwrap_or(Duration::from_secs(300));
        Hooks {
            before: h.before.clone(),
            after: h.after.clone(),
            success: h.success.clone(),
            failure: h.failure.clone(),
            finally: h.finally.clone(),
            timeout,
        }
    }

    fn source(&mut self, name: &str, at: &At<raw::Source>) -> Option<Source> {
        let f = at.file;
        let s = at.value.get_ref();
        let before = self.errors();
        if s.paths.is_empty() && s.sqlite.is_empty() && s.postgres.is_none() && s.mysql.is_none() {
            self.error(
                f,
                at.value,
                format!("source `{name}` has no paths"),
                Some("add paths = [\"/var/lib/...\"]".into()),
            );
        }
        let mut paths = self.absolute_paths(f, &format!("source `{name}`"), &s.paths);
        let sqlite = self.absolute_paths(f, &format!("source `{name}`: sqlite"), &s.sqlite);
        for db in &sqlite {
            if !paths.iter().any(|p| db.starts_with(p)) {
                paths.push(db.clone());
            }
        }
        let filter = self.filter(
            f,
            &s.exclude,
            &s.iexclude,
            &s.exclude_file,
            &s.exclude_if_present,
            s.exclude_caches,
            &s.exclude_larger_than,
            s.one_file_system,
        );
        let hooks = self.hooks(f, &s.hooks);
        let snapshot = self.snapshot_kind(f, &format!("source `{name}`"), &s.snapshot);
        let mut dumps = Vec::new();
        if let Some(pg) = &s.postgres {
            dumps.extend(crate::sources::postgres_dumps(name, pg));
        }
        if let Some(my) = &s.mysql {
            dumps.extend(crate::sources::mysql_dumps(name, my));
        }
        if self.errors() > before {
            return None;
        }
        Some(Source {
            snapshot,
            dumps,
            name: name.to_string(),
            paths,
            filter,
            tags: s.tags.clone(),
            hooks,
            sqlite,
            defined_in: self.texts[f].path.clone(),
        })
    }

    fn snapshot_kind(
        &mut self,
        f: usize,
        what: &str,
        s: &Option<raw::Snapshot>,
    ) -> Option<crate::sources::SnapshotKind> {
        let k = &s.as_ref()?.kind;
        match k.get_ref().as_str() {
            "btrfs" => Some(crate::sources::SnapshotKind::Btrfs),
            "zfs" => Some(crate::sources::SnapshotKind::Zfs),
            "lvm" => Some(crate::sources::SnapshotKind::Lvm),
            other => {
                let help = closest(other, ["btrfs", "zfs", "lvm"])
                    .map(|c| format!("did you mean \"{c}\"?"))
                    .unwrap_or_else(|| "use \"btrfs\", \"zfs\" or \"lvm\"".into());
                self.error(
                    f,
                    k,
                    format!("{what}: unknown snapshot kind {other:?}"),
                    Some(help),
                );
                None
            }
        }
    }

    fn schedule(&mut self, f: usize, what: &str, s: &Spanned<String>) -> Option<Schedule> {
        match Schedule::parse(s.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(f, s, format!("{what}: {e}"), Some("examples: \"daily\", \"03:00\", \"Mon..Fri 02:30\", \"Sun 04:00\", \"*-*-01 05:00\", cron \"30 2 * * 1-5\"".into()));
                None
            }
        }
    }

    fn when(
        &mut self,
        f: usize,
        what: &str,
        s: &Option<Spanned<String>>,
        default: &str,
    ) -> Option<When> {
        match s {
            Some(v) if v.get_ref() == "always" => Some(When::Always),
            Some(v) => self.schedule(f, what, v).map(When::Schedule),
            None => Schedule::parse(default).ok().map(When::Schedule),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        name: &str,
        at: &At<raw::Plan>,
        repos: &BTreeMap<String, At<raw::Repository>>,
        sources: &BTreeMap<String, At<raw::Source>>,
        sources_ok: &BTreeMap<String, Source>,
        settings: &Settings,
    ) -> Option<Plan> {
        let f = at.file;
        let p = at.value.get_ref();
        let before = self.errors();
        let repo = p.repository.get_ref();
        if !repos.contains_key(repo) {
            let help = match closest(repo, repos.keys().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None if repos.is_empty() => {
                    "define it: [repositories.NAME] with url and a password source".into()
                }
                None => format!(
                    "defined repositories: {}",
                    repos.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            self.error(
                f,
                &p.repository,
                format!("plan `{name}`: unknown repository `{repo}`"),
                Some(help),
            );
        }
        let mut chosen: Vec<String> = Vec::new();
        for s in &p.sources {
            let pat = s.get_ref();
            let matched: Vec<&String> = if let Some(prefix) = pat.strip_suffix('*') {
                sources.keys().filter(|k| k.starts_with(prefix)).collect()
            } else {
                sources.keys().filter(|k| *k == pat).collect()
            };
            if matched.is_empty() {
                let help = match closest(pat, sources.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if sources.is_empty() => {
                        "no sources are defined: add [sources.NAME] with paths".into()
                    }
                    None => format!(
                        "defined sources: {}",
                        sources.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    f,
                    s,
                    format!("plan `{name}`: no source matches `{pat}`"),
                    Some(help),
                );
            }
            for m in matched {
                if !chosen.contains(m) {
                    chosen.push(m.clone());
                }
            }
        }
        if p.sources.is_empty() && p.paths.is_empty() {
            self.error(
                f,
                at.value,
                format!("plan `{name}` backs up nothing"),
                Some("add sources = [\"NAME\"] and/or paths = [\"/path\"]".into()),
            );
        }
        let own_paths = self.absolute_paths(f, &format!("plan `{name}`"), &p.paths);
        let own_filter = self.filter(
            f,
            &p.exclude,
            &p.iexclude,
            &p.exclude_file,
            &p.exclude_if_present,
            p.exclude_caches,
            &p.exclude_larger_than,
            p.one_file_system,
        );
        let schedule = p
            .schedule
            .as_ref()
            .and_then(|s| self.schedule(f, &format!("plan `{name}`: schedule"), s));
        let retention = p
            .retention
            .as_ref()
            .and_then(|r| self.retention(f, name, at.value, r));
        let prune = if retention.is_some() {
            self.when(f, &format!("plan `{name}`: prune"), &p.prune, "weekly")
        } else {
            if let Some(pr) = &p.prune {
                self.error(
                    f,
                    pr,
                    format!("plan `{name}`: prune without retention"),
                    Some(
                        "prune reclaims what retention forgets: add [plans.NAME.retention]".into(),
                    ),
                );
            }
            None
        };
        let check = p.check.as_ref().and_then(|c| {
            let when = self.when(
                f,
                &format!("plan `{name}`: check.schedule"),
                &c.schedule,
                "weekly",
            )?;
            let read_data = match &c.read_data_subset {
                None => None,
                Some(s) if s.get_ref() == "all" => Some("all".to_string()),
                Some(s) => match cairn_repo::check::ReadData::parse_subset(s.get_ref()) {
                    Ok(_) => Some(s.get_ref().clone()),
                    Err(e) => {
                        self.error(
                            f,
                            s,
                            format!("plan `{name}`: check.read-data-subset: {e}"),
                            Some("e.g. \"5%\", \"1/7\" or \"all\"".into()),
                        );
                        None
                    }
                },
            };
            Some(CheckPolicy { when, read_data })
        });
        let mut copy_to = Vec::new();
        for c in &p.copy_to {
            let dest = c.get_ref();
            if dest == repo {
                self.error(
                    f,
                    c,
                    format!("plan `{name}`: copy-to its own repository `{dest}`"),
                    Some("copy-to names another repository, e.g. an offsite one".into()),
                );
            } else if !repos.contains_key(dest) {
                let help = closest(dest, repos.keys().map(String::as_str))
                    .map(|c| format!("did you mean `{c}`?"));
                self.error(
                    f,
                    c,
                    format!("plan `{name}`: copy-to unknown repository `{dest}`"),
                    help,
                );
            } else if !copy_to.contains(dest) {
                copy_to.push(dest.clone());
            }
        }
        let restore_test = p.restore_test.as_ref().and_then(|rt| {
            let when = self.when(
                f,
                &format!("plan `{name}`: restore-test.schedule"),
                &rt.schedule,
                "monthly",
            )?;
            Some(RestoreTestPolicy {
                when,
                files: rt.files.unwrap_or(20).max(1),
            })
        });
        let nice = p.nice.as_ref().and_then(|n| {
            if (-20..=19).contains(n.get_ref()) {
                Some(*n.get_ref())
            } else {
                self.error(
                    f,
                    n,
                    format!("plan `{name}`: nice {} is out of range", n.get_ref()),
                    Some("use -20 (highest priority) to 19 (lowest)".into()),
                );
                None
            }
        });
        let ionice = p.ionice.as_ref().and_then(|io| match io.get_ref().as_str() {
            "idle" => Some(Ionice::Idle),
            "best-effort" => Some(Ionice::BestEffort(4)),
            s => match s.strip_prefix("best-effort:").and_then(|l| l.parse::<u8>().ok()) {
                Some(l) if l <= 7 => Some(Ionice::BestEffort(l)),
                _ => {
                    self.error(f, io, format!("plan `{name}`: ionice {s:?} is not an I/O class"), Some("use \"idle\", \"best-effort\" or \"best-effort:0\"..\"best-effort:7\"".into()));
                    None
                }
            },
        });
        let max_age = p.max_age.as_ref().and_then(|m| {
            self.positive_duration(
                f,
                m,
                &format!("plan `{name}`: max-age"),
                "\"26h\" or \"8d\"",
            )
        });
        let plan_hooks = self.hooks(f, &p.hooks);
        let plan_snapshot = self.snapshot_kind(f, &format!("plan `{name}`"), &p.snapshot);
        let notify = match &p.notify {
            Some(n) => self.notify(f, n),
            None => settings.notify.clone(),
        };
        if self.errors() > before || chosen.iter().any(|c| !sources_ok.contains_key(c)) {
            return None;
        }
        // Assemble: the sources' paths, excludes scoped to them, tags and hooks.
        let mut paths: Vec<PathBuf> = own_paths;
        let mut sqlite: Vec<PathBuf> = Vec::new();
        let mut dumps: Vec<(PathBuf, String)> = Vec::new();
        let mut snapshots: Vec<(PathBuf, crate::sources::SnapshotKind)> = match plan_snapshot {
            Some(k) => paths.iter().map(|p| (p.clone(), k)).collect(),
            None => Vec::new(),
        };
        let mut filter = own_filter;
        let mut tags = p.tags.clone();
        let mut hooks = vec![(format!("plan {name}"), plan_hooks)];
        for s in chosen.iter().filter_map(|c| sources_ok.get(c)) {
            paths.extend(s.paths.iter().cloned());
            sqlite.extend(s.sqlite.iter().cloned());
            dumps.extend(s.dumps.iter().cloned());
            if let Some(k) = s.snapshot {
                snapshots.extend(s.paths.iter().map(|p| (p.clone(), k)));
            }
            for pat in &s.filter.exclude {
                filter.exclude.extend(scope(pat, &s.paths));
            }
            for pat in &s.filter.iexclude {
                filter.iexclude.extend(scope(pat, &s.paths));
            }
            filter
                .exclude_file
                .extend(s.filter.exclude_file.iter().cloned());
            filter
                .exclude_if_present
                .extend(s.filter.exclude_if_present.iter().cloned());
            filter.exclude_caches |= s.filter.exclude_caches;
            filter.one_file_system |= s.filter.one_file_system;
            if filter.exclude_larger_than.is_none() {
                filter.exclude_larger_than = s.filter.exclude_larger_than.clone();
            }
            tags.extend(s.tags.iter().cloned());
            if !s.hooks.is_empty() {
                hooks.push((format!("source {}", s.name), s.hooks.clone()));
            }
        }
        paths.sort();
        paths.dedup();
        sqlite.sort();
        sqlite.dedup();
        dedup_keep_order(&mut tags);
        dedup_keep_order(&mut filter.exclude_if_present);
        Some(Plan {
            name: name.to_string(),
            repository: repo.clone(),
            sources: chosen,
            paths,
            sqlite,
            snapshots,
            dumps,
            filter,
            schedule,
            retention,
            prune,
            check,
            copy_to,
            restore_test,
            tags,
            host: p.host.clone().or_else(|| settings.host.clone()),
            nice,
            ionice,
            limit_upload: p.limit_upload,
            limit_download: p.limit_download,
            hooks,
            notify,
            max_age,
            defined_in: self.texts[f].path.clone(),
        })
    }

    fn retention(
        &mut self,
        f: usize,
        plan: &str,
        at: &Spanned<raw::Plan>,
        r: &raw::Retention,
    ) -> Option<Retention> {
        let counts = [
            r.keep_last,
            r.keep_hourly,
            r.keep_daily,
            r.keep_weekly,
            r.keep_monthly,
            r.keep_yearly,
        ];
        if counts.iter().all(Option::is_none) && r.keep_within.is_none() && r.keep_tag.is_empty() {
            self.error(f, at, format!("plan `{plan}`: retention keeps nothing"), Some("add e.g. keep-daily = 7, keep-weekly = 4, keep-monthly = 6 (or remove [retention] to keep every snapshot)".into()));
            return None;
        }
        if let Some(w) = &r.keep_within {
            if let Err(e) = cairn_repo::forget::Duration::parse(w.get_ref()) {
                self.error(
                    f,
                    w,
                    format!("plan `{plan}`: keep-within: {e}"),
                    Some("numbers with y, m, d, h: \"30d\", \"1y6m\", \"2d12h\"".into()),
                );
                return None;
            }
        }
        // Counts: -1 keeps all (restic >= 0.16), stored as "unlimited" (u32::MAX).
        let mut bad_count = None;
        let mut count = |key: &'static str, v: Option<i64>| match v {
            None => None,
            Some(-1) => Some(u32::MAX),
            Some(n) => match u32::try_from(n).ok().filter(|&n| n < u32::MAX) {
                Some(n) => Some(n),
                None => {
                    bad_count.get_or_insert((key, n));
                    None
                }
            },
        };
        let counts = [
            count("keep-last", r.keep_last),
            count("keep-hourly", r.keep_hourly),
            count("keep-daily", r.keep_daily),
            count("keep-weekly", r.keep_weekly),
            count("keep-monthly", r.keep_monthly),
            count("keep-yearly", r.keep_yearly),
        ];
        if let Some((key, n)) = bad_count {
            self.error(
                f,
                at,
                format!("plan `{plan}`: retention {key} = {n} is not a count"),
                Some(format!(
                    "a number from 0 to {}, or -1 to keep all",
                    u32::MAX - 1
                )),
            );
            return None;
        }
        if let Some(g) = &r.group_by {
            if g.split(',')
                .any(|p| !["", "host", "paths", "tags"].contains(&p.trim()))
            {
                let d = self.texts[f].whole(
                    format!("plan `{plan}`: group-by {g:?}"),
                    Some("a comma-separated subset of host, paths, tags".into()),
                );
                self.problems.push(d);
                return None;
            }
        }
        let [keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly] = counts;
        Some(Retention {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within: r.keep_within.as_ref().map(|w| w.get_ref().clone()),
            keep_tag: r.keep_tag.clone(),
            group_by: r.group_by.clone(),
        })
    }
}

/// A source's exclude pattern, applied to that source only: absolute patterns as they
/// are; a relative one (which restic matches at any depth) below each of its paths.
fn scope(pattern: &str, paths: &[PathBuf]) -> Vec<String> {
    let (neg, pat) = match pattern.strip_prefix('!') {
        Some(p) => ("!", p),
        None => ("", pattern),
    };
    if pat.starts_with('/') {
        return vec![pattern.to_string()];
    }
    paths
        .iter()
        .map(|p| {
            format!(
                "{neg}{}/**/{pat}",
                p.display().to_string().trim_end_matches('/')
            )
        })
        .collect()
}

fn dedup_keep_order(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `scheme://user:password@host` with a password.
fn has_url_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    if k.ends_with("_ID")
        || k.ends_with("KEY_ID")
        || k.ends_with("USERNAME")
        || k.ends_with("_USER")
    {
        return false;
    }
    ["SECRET", "PASSWORD", "PASS", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

/// Parses a `KEY=VALUE` file like systemd's EnvironmentFile (comments, blank lines,
/// optional `export `, optional quotes).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("{}:{}: expected KEY=VALUE", path.display(), i + 1));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{}:{}: {k:?} is not a variable name",
                path.display(),
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

/// The config with secrets and secret-like values hidden, for `config show`.
pub fn redacted(c: &Config) -> Config {
    let mut c = c.clone();
    fn hide_url(u: &mut Option<String>) {
        if let Some(url) = u {
            if let Some((scheme, rest)) = url.split_once("://") {
                let host = rest.split('/').next().unwrap_or("");
                *url = format!("{scheme}://{host}/<redacted>");
            }
        }
    }
    for n in
        std::iter::once(&mut c.settings.notify).chain(c.plans.values_mut().map(|p| &mut p.notify))
    {
        hide_url(&mut n.healthchecks);
        hide_url(&mut n.ntfy);
        hide_url(&mut n.webhook);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(
            closest("retension", ["retention", "repository"]),
            Some("retention")
        );
        assert_eq!(
            closest("shedule", ["schedule", "sources"]),
            Some("schedule")
        );
        assert_eq!(closest("zzz", ["retention", "repository"]), None);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("26h").unwrap(),
            Duration::from_secs(26 * 3600)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("26").is_err());
        assert!(parse_duration("5x").is_err());
        // Past 100 years, or past u64, is an error instead of a wrap or a panic.
        assert_eq!(
            parse_duration("36500d").unwrap(),
            Duration::from_secs(36_500 * 86_400)
        );
        for s in [
            "36501d",
            "99999999999999999w",
            "18446744073709551615s",
            "99999999999999999999s",
            "1w".repeat(6000).as_str(),
        ] {
            assert!(parse_duration(s).unwrap_err().contains("too long"), "{s}");
        }
    }

    #[test]
    fn source_excludes_are_scoped_to_the_source() {
        assert_eq!(
            scope("*.log", &[PathBuf::from("/var/lib/hass")]),
            vec!["/var/lib/hass/**/*.log"]
        );
        assert_eq!(scope("/abs/x", &[PathBuf::from("/a")]), vec!["/abs/x"]);
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(has_url_password("rest:https://u:p@host/x"));
        assert!(!has_url_password("rest:https://host/x"));
        assert!(!has_url_password("sftp:user@host:/x"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(looks_secret("B2_ACCOUNT_KEY"));
        assert!(!looks_secret("AWS_ACCESS_KEY_ID"));
        assert!(!looks_secret("AWS_DEFAULT_REGION"));
    }

    const SAMPLE: &str = "include = [\"conf.d\"]\n[settings]\nstate-dir = \"/var/lib/cairn\"\n\
        [repositories.nas]\nurl = \"sftp:nas:/srv\"\npassword-command = \"cat /pw\"\n\
        [sources.hass]\npaths = [\"/var/lib/hass\"]\nexclude = [\"*.log\"]\n\
        [plans.nightly]\nrepository = \"nas\"\nsources = [\"*\"]\nschedule = \"Mon..Fri 02:30\"\n\
        retention = { keep-daily = 7, keep-within = \"1y\" }\ncheck = { read-data-subset = \"5%\" }\n\
        hooks = { before = [\"true\"], timeout = \"5m\" }\nmax-age = \"26h\"\n";

    fn load_text(text: &[u8]) -> Result<(Config, Vec<Diagnostic>), Problems> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(&path, text).unwrap();
        load(&path, LoadOptions { offline: true })
    }

    #[test]
    fn the_sample_is_valid() {
        let (c, _) = load_text(SAMPLE.as_bytes()).unwrap();
        assert_eq!(c.plans["nightly"].paths, [PathBuf::from("/var/lib/hass")]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Fuzzing the parser: any edit of a valid config (bytes replaced, removed,
        /// inserted) gives a config or precise problems, never a panic.
        #[test]
        fn mutated_configs_never_panic(edits in proptest::collection::vec((0usize..2000, 0u8..=255, 0u8..3), 1..8)) {
            let mut text = SAMPLE.as_bytes().to_vec();
            for (pos, byte, op) in edits {
                let at = pos % (text.len() + 1);
                match op {
                    0 if at < text.len() => text[at] = byte,
                    1 if at < text.len() => { text.remove(at); }
                    _ => text.insert(at, byte),
                }
            }
            if let Err(p) = load_text(&text) {
                proptest::prop_assert!(!p.0.is_empty());
                for d in &p.0 {
                    proptest::prop_assert!(!d.message.is_empty());
                    let _ = d.to_string();
                }
            }
        }

        /// Arbitrary text, too.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = load_text(text.as_bytes());
        }

        /// Arbitrary Unicode in each value a plan takes as text (schedule, durations,
        /// keep-within, URL), any integer as a keep count: a config or problems, no panic.
        #[test]
        fn arbitrary_values_never_panic(
            schedule in "\\PC{0,30}",
            age in "\\PC{0,30}",
            within in "\\PC{0,20}",
            url in "\\PC{0,40}",
            count in proptest::num::i64::ANY,
        ) {
            let q = |v: &str| toml::Value::String(v.to_string()).to_string();
            let text = format!(
                "[repositories.r]\nurl = {}\npassword-command = \"true\"\n\
                 [plans.p]\nrepository = \"r\"\npaths = [\"/etc\"]\nschedule = {}\nmax-age = {}\n\
                 hooks = {{ timeout = {} }}\nretention = {{ keep-last = {count}, keep-within = {} }}\n\
                 check = {{ schedule = {} }}\n",
                q(&url), q(&schedule), q(&age), q(&age), q(&within), q(&schedule)
            );
            let _ = load_text(text.as_bytes());
        }

        /// Durations: any text is a duration of at most MAX_DURATION or an error.
        #[test]
        fn arbitrary_durations_never_panic(text in "\\PC{0,30}", digits in "[0-9smhdw]{0,40}") {
            for t in [text, digits] {
                if let Ok(d) = parse_duration(&t) {
                    proptest::prop_assert!(d <= crate::units::MAX_DURATION);
                    let _ = std::time::Instant::now() + d;
                    let _ = format_duration(d);
                }
            }
        }
    }
}
