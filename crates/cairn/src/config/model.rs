//! The validated configuration: types that cannot be invalid. Built by `validate` only;
//! read by everything else (plans, the scheduler, the web UI).

use crate::schedule::Schedule;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

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
    /// `[settings.web]`: the web UI; `None` when the section is absent.
    pub web: Option<Web>,
}

/// The default address of the web UI: this machine only.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:9816";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Web {
    pub listen: String,
    pub users: BTreeMap<String, WebUser>,
    pub tls: Option<WebTls>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub proxy_user_header: String,
    pub tokens_file: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub session_timeout: Duration,
    /// Other cairn daemons shown read-only on the dashboard.
    pub peers: Vec<WebPeer>,
}

/// Another cairn daemon whose status API the dashboard shows (`[[settings.web.peers]]`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WebPeer {
    pub name: String,
    /// Base URL of its web UI, `http://` or `https://`, without credentials or query.
    pub url: String,
    /// File holding the bearer token (read at each fetch, never kept in the config).
    pub token_file: PathBuf,
    /// How long to wait for its answer (connect, and each read).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WebTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Viewer,
    Admin,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WebUser {
    pub name: String,
    /// The argon2id hash is read from this file at login, never kept in the config.
    pub password_hash_file: Option<PathBuf>,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Password {
    File(PathBuf),
    Command(String),
    Env(String),
    /// A systemd credential: the file `$CREDENTIALS_DIRECTORY/NAME`, looked up when used
    /// ([`super::secrets::credential_path`]).
    Credential(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Repository {
    pub name: String,
    pub url: String,
    pub password: Password,
    pub env_file: Option<PathBuf>,
    /// A systemd credential in env-file format (`env-credential`).
    pub env_credential: Option<String>,
    /// A command printing `KEY=VALUE` lines (`env-command`).
    pub env_command: Option<String>,
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
    /// Database dumps: where in the snapshot, the command writing each, how to load it back.
    pub dumps: Vec<crate::sources::Dump>,
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
    /// Its identity in the history and the state: the `name` given, else `#N` (its
    /// position, from 1).
    pub id: String,
    pub when: When,
    /// `--read-data-subset` value, or "all" for `--read-data`.
    pub read_data: Option<String>,
    /// `n/t`: read group n of t first, then the next group each successful check.
    pub rotate: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RestoreTestPolicy {
    pub when: When,
    pub mode: RestoreTestMode,
    /// Files compared in `sample` mode.
    pub files: u32,
    /// Run on the restored tree, with `CAIRN_RESTORE_DIR` set; exit 0 proves it.
    pub command: Option<String>,
    /// Time limit of `command` (default 1h).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Load the plan's database dumps into a scratch PostgreSQL/MariaDB.
    pub verify_dumps: bool,
    /// Alert when the last successful restore test is older than this.
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_age: Option<Duration>,
}

/// What a restore test restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreTestMode {
    /// `files` random files, compared byte for byte with the live files that did not
    /// change since the snapshot.
    Sample,
    /// The whole snapshot, into a scratch directory.
    Full,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    pub finally: Vec<String>,
    /// `cairn restore --plan`: before anything is restored (stop the services).
    pub before_restore: Vec<String>,
    /// `cairn restore --plan`: after everything was restored, whatever the result (fix
    /// ownership, start the services).
    pub after_restore: Vec<String>,
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
            before_restore: Vec::new(),
            after_restore: Vec::new(),
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
            && self.before_restore.is_empty()
            && self.after_restore.is_empty()
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
    pub dumps: Vec<crate::sources::Dump>,
    /// Sources' excludes scoped to their paths, plus the plan's own.
    pub filter: Filter,
    pub schedule: Option<Schedule>,
    pub retention: Option<Retention>,
    /// When to prune (only with a retention policy).
    pub prune: Option<When>,
    /// Check policies, each due on its own schedule (empty: no scheduled check).
    pub checks: Vec<CheckPolicy>,
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

/// The date placeholders a plan's tags may hold.
pub const TAG_PLACEHOLDERS: [&str; 8] = ["%Y", "%m", "%d", "%H", "%M", "%V", "%G", "%j"];

/// A tag with its date placeholders ([`TAG_PLACEHOLDERS`], strftime's meaning; `%%` is a
/// `%`) filled in for `at`. An unknown `%x`, or a `%` at the end, is the error: the
/// placeholder as written.
pub fn expand_tag(tag: &str, at: &chrono::DateTime<chrono::Local>) -> Result<String, String> {
    let mut out = String::with_capacity(tag.len());
    let mut chars = tag.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(x) if TAG_PLACEHOLDERS.contains(&format!("%{x}").as_str()) => {
                out.push_str(&at.format(&format!("%{x}")).to_string())
            }
            Some(x) => return Err(format!("%{x}")),
            None => return Err("%".into()),
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_expand_their_date_placeholders_and_refuse_unknown_ones() {
        use chrono::TimeZone;
        let at = chrono::Local
            .with_ymd_and_hms(2027, 1, 2, 3, 4, 5)
            .single()
            .unwrap();
        assert_eq!(expand_tag("%Y-%m", &at).unwrap(), "2027-01");
        assert_eq!(
            expand_tag("d%d h%H m%M j%j 100%%", &at).unwrap(),
            "d02 h03 m04 j002 100%"
        );
        // 2 January 2027 is in ISO week 53 of 2026.
        assert_eq!(expand_tag("%G-W%V", &at).unwrap(), "2026-W53");
        assert_eq!(expand_tag("plain", &at).unwrap(), "plain");
        assert_eq!(expand_tag("%y", &at).unwrap_err(), "%y");
        assert_eq!(expand_tag("50%", &at).unwrap_err(), "%");
        assert_eq!(expand_tag("%é", &at).unwrap_err(), "%é");
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
}
