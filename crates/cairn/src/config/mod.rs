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

//!
//! The module is split by stage: `raw` (the serde types of the text), `load` (reading files,
//! includes, `conf.d`, env files), `validate` (raw → model, every check and diagnostic) and
//! `model` (the validated types, re-exported here so `crate::config::Plan` etc. keep working).
//! Nothing here prints; the CLI and the web show what `load` returns.

mod load;
mod model;
pub mod raw;
pub mod secrets;
mod validate;
mod words;

pub use load::{parse_env, read_env_file};
pub use model::*;
pub(crate) use validate::looks_secret;

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

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

pub fn default_state_dir() -> PathBuf {
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

/// Loads and validates the config at `path` and everything it includes.
pub fn load(path: &Path, opts: LoadOptions) -> Result<(Config, Vec<Diagnostic>), Problems> {
    let read = load::read(path);
    let (config, problems) = validate::validate(&read, opts);
    if problems.iter().any(|d| !d.warning) {
        return Err(Problems(problems));
    }
    Ok((config, problems))
}

/// For a config that does not load: its `[settings]` if they can be read — the main file
/// parses and its settings have no problem of their own (`Settings` defaults when the
/// section is absent). `cairn run` records and notifies the failure with them.
pub fn settings_of_broken(path: &Path) -> Option<Settings> {
    let read = load::read(path);
    let (main, file) = read.files.first()?;
    let same = |a: &Path| std::path::absolute(a).ok() == std::path::absolute(path).ok();
    if !read.texts.get(*main).is_some_and(|t| same(&t.path)) || read.unparsed.contains(main) {
        return None;
    }
    let (settings, problems) = validate::settings_only(
        &read.texts,
        *main,
        file.settings.clone().unwrap_or_default(),
        LoadOptions { offline: true },
    );
    (!problems.iter().any(|d| !d.warning)).then_some(settings)
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
