//! The config file as written: serde types that mirror the TOML one to one, reject
//! unknown keys, and keep the positions of the values that later checks point at.
//! Nothing here is validated beyond its TOML type; `super::validate` turns these into the
//! model types that cannot be invalid.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// One config file: the main `cairn.toml` or a fragment from `conf.d/`.
#[derive(Deserialize, JsonSchema, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct File {
    /// More config files or directories of `*.toml` fragments, relative to this file.
    /// The main file includes `conf.d` next to it when this is not given.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub include: Vec<Spanned<String>>,
    /// Settings for the whole installation (main file only).
    pub settings: Option<Settings>,
    /// Where snapshots are stored, by name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Repository>")]
    pub repositories: BTreeMap<String, Spanned<Repository>>,
    /// What to back up, by name: usually one per service.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Source>")]
    pub sources: BTreeMap<String, Spanned<Source>>,
    /// What runs when: sources into a repository on a schedule, with retention and checks.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Plan>")]
    pub plans: BTreeMap<String, Spanned<Plan>>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Directory of the run history database and state (default /var/lib/cairn as root,
    /// else ~/.local/state/cairn).
    #[schemars(with = "Option<String>")]
    pub state_dir: Option<Spanned<String>>,
    /// Host name recorded in snapshots (default: this machine's).
    pub host: Option<String>,
    /// Prometheus metrics.
    pub metrics: Option<Metrics>,
    /// Notifications for every plan (a plan's own `notify` replaces these).
    pub notify: Option<Notify>,
    /// The web UI and HTTP API (`cairn daemon`, `cairn web`).
    pub web: Option<Web>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Web {
    /// Address the web UI listens on (default "127.0.0.1:9816": this machine only).
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// Who may log in, by user name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, WebUser>")]
    pub users: BTreeMap<String, Spanned<WebUser>>,
    /// PEM certificate chain: with `tls-key`, the UI is served over HTTPS.
    pub tls_cert: Option<String>,
    /// PEM private key of `tls-cert`.
    pub tls_key: Option<String>,
    /// Reverse proxies (IP addresses) whose user header is believed (Authelia, Authentik).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// The header a trusted proxy puts the logged-in user in (default "Remote-User").
    pub proxy_user_header: Option<String>,
    /// File of bearer tokens for scripts, one per line: `NAME ROLE TOKEN`.
    #[schemars(with = "Option<String>")]
    pub tokens_file: Option<Spanned<String>>,
    /// How long a login lasts without activity (default "12h").
    pub session_timeout: Option<String>,
    /// Other cairn daemons whose status this dashboard shows, read-only:
    /// `[[settings.web.peers]]` with `name`, `url` and `token-file`.
    #[serde(default)]
    #[schemars(with = "Vec<WebPeer>")]
    pub peers: Vec<Spanned<WebPeer>>,
}

/// Another cairn daemon shown on this dashboard (its status API, fetched server-side).
#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebPeer {
    /// Name shown on the dashboard: letters, digits, `-` and `_`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Base URL of the other daemon's web UI, e.g. "https://nas.lan:9816".
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// File holding a viewer bearer token of that daemon's `tokens-file` (the token only).
    #[schemars(with = "String")]
    pub token_file: Spanned<String>,
    /// How long to wait for its answer (default "3s", at most "30s").
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebUser {
    /// File holding the user's argon2id hash (`cairn web hash-password` prints one).
    #[schemars(with = "Option<String>")]
    pub password_hash_file: Option<Spanned<String>>,
    /// `viewer` (see, browse, download) or `admin` (also restore to a path, trigger runs).
    pub role: String,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Metrics {
    /// Address the daemon serves `/metrics` on, e.g. "127.0.0.1:9898".
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// node-exporter textfile written after every `cairn run`, e.g.
    /// "/var/lib/node_exporter/textfile_collector/cairn.prom".
    pub textfile: Option<String>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Repository {
    /// restic repository URL: a path, sftp:, s3:, b2:, rest:, rclone:.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// File holding the repository password.
    #[schemars(with = "Option<String>")]
    pub password_file: Option<Spanned<String>>,
    /// Command printing the password (e.g. `op read op://Homelab/restic/password`).
    #[schemars(with = "Option<String>")]
    pub password_command: Option<Spanned<String>>,
    /// Environment variable holding the password.
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Spanned<String>>,
    /// systemd credential holding the password: the file `$CREDENTIALS_DIRECTORY/NAME`
    /// that the unit's `LoadCredential=NAME:/path` (or `LoadCredentialEncrypted=`) provides.
    #[schemars(with = "Option<String>")]
    pub password_credential: Option<Spanned<String>>,
    /// Never allowed: passwords do not belong in config files. Accepted by the parser
    /// only to say so precisely.
    #[serde(default)]
    #[schemars(skip)]
    pub password: Option<Spanned<toml::Value>>,
    /// `KEY=VALUE` file with backend credentials (AWS_*, B2_*), like systemd's
    /// EnvironmentFile.
    #[schemars(with = "Option<String>")]
    pub env_file: Option<Spanned<String>>,
    /// systemd credential in env-file format (`KEY=VALUE` lines) with backend credentials:
    /// the file `$CREDENTIALS_DIRECTORY/NAME` (the unit's `LoadCredential=NAME:/path`).
    #[schemars(with = "Option<String>")]
    pub env_credential: Option<Spanned<String>>,
    /// Command printing backend credentials as `KEY=VALUE` lines, like an env-file (e.g.
    /// `pass show backup/s3.env`): run each time the repository is used, without a shell
    /// unless it uses shell syntax, killed after 60 s. Its values win over env-file's and
    /// env-credential's, `env` wins over them all.
    #[schemars(with = "Option<String>")]
    pub env_command: Option<Spanned<String>>,
    /// Non-secret environment for the backend (e.g. AWS_DEFAULT_REGION). Secrets go in
    /// `env-file`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Backend options, as `-o KEY=VALUE` (s3.endpoints, sftp.command, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// KiB/s.
    pub limit_upload: Option<u64>,
    /// KiB/s.
    pub limit_download: Option<u64>,
    /// Local cache directory for this repository (default ~/.cache/cairn).
    pub cache_dir: Option<String>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Source {
    /// Absolute paths to back up.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub paths: Vec<Spanned<String>>,
    // The exclude keys below are the same in Source and Plan: serde's `flatten` would lose
    // both `deny_unknown_fields` and the value spans the error messages point at.
    /// restic patterns: `*.log`, `/var/lib/hass/tts`, `**/node_modules`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Case-insensitive patterns.
    #[serde(default)]
    pub iexclude: Vec<String>,
    /// Files of patterns, one per line.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude_file: Vec<Spanned<String>>,
    /// Skip directories containing a file of this name (e.g. ".nobackup").
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Skip directories with a CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Skip files larger than this (e.g. "2G").
    #[schemars(with = "Option<String>")]
    pub exclude_larger_than: Option<Spanned<String>>,
    /// Do not cross into other file systems.
    #[serde(default)]
    pub one_file_system: bool,
    /// Tags added to snapshots of plans that include this source.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Commands around the backup of plans that include this source.
    pub hooks: Option<Hooks>,
    /// Back up from a read-only filesystem snapshot made for each run (recorded under the
    /// original paths, always deleted afterwards).
    pub snapshot: Option<Snapshot>,
    /// PostgreSQL dumps (pg_dump per database, or pg_dumpall), streamed into the snapshot
    /// as /.cairn/dumps/SOURCE/postgres-DB.sql.
    pub postgres: Option<DbDump>,
    /// MySQL/MariaDB dumps (mysqldump --single-transaction), streamed into the snapshot as
    /// /.cairn/dumps/SOURCE/mysql-DB.sql.
    pub mysql: Option<DbDump>,
    /// Live SQLite databases: copied consistently with SQLite's online backup API and
    /// stored at their own paths (their -wal/-shm/-journal files are left out).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub sqlite: Vec<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Plan {
    /// Name of a `[repositories.NAME]`.
    #[schemars(with = "String")]
    pub repository: Spanned<String>,
    /// Names of `[sources.NAME]`; `*` and `prefix-*` select by name.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub sources: Vec<Spanned<String>>,
    /// Paths backed up besides the sources'.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub paths: Vec<Spanned<String>>,
    /// restic patterns: `*.log`, `/var/lib/hass/tts`, `**/node_modules`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Case-insensitive patterns.
    #[serde(default)]
    pub iexclude: Vec<String>,
    /// Files of patterns, one per line.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude_file: Vec<Spanned<String>>,
    /// Skip directories containing a file of this name (e.g. ".nobackup").
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Skip directories with a CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Skip files larger than this (e.g. "2G").
    #[schemars(with = "Option<String>")]
    pub exclude_larger_than: Option<Spanned<String>>,
    /// Do not cross into other file systems.
    #[serde(default)]
    pub one_file_system: bool,
    /// When to run: `daily`, `03:00`, `Mon..Fri 02:30`, `*-*-* 02:00`, or cron
    /// (`30 2 * * 1-5`). Without a schedule the plan runs only when asked.
    #[schemars(with = "Option<String>")]
    pub schedule: Option<Spanned<String>>,
    /// Which snapshots of this plan to keep after each backup.
    pub retention: Option<Retention>,
    /// When to prune after retention: a schedule like `weekly` (default), or "always".
    #[schemars(with = "Option<String>")]
    pub prune: Option<Spanned<String>>,
    /// Back up the plan's own `paths` from filesystem snapshots.
    pub snapshot: Option<Snapshot>,
    /// Repository checks: one policy (`[plans.NAME.check]`), or several
    /// (`[[plans.NAME.check]]`, e.g. weekly "5%" and monthly "all"), each due on its
    /// own schedule; when several are due, the one reading most runs, once.
    pub check: Option<Checks>,
    /// Other repositories that get a copy of each new snapshot (3-2-1: a second copy
    /// elsewhere), by name.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub copy_to: Vec<Spanned<String>>,
    /// Restore a sample of files from the latest snapshot and verify them.
    pub restore_test: Option<RestoreTest>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub host: Option<String>,
    /// CPU priority of the backup (-20..19, default 10 in the daemon).
    #[schemars(with = "Option<i32>")]
    pub nice: Option<Spanned<i32>>,
    /// I/O priority: "idle", "best-effort" or "best-effort:0..7".
    #[schemars(with = "Option<String>")]
    pub ionice: Option<Spanned<String>>,
    /// KiB/s, overrides the repository's.
    pub limit_upload: Option<u64>,
    pub limit_download: Option<u64>,
    pub hooks: Option<Hooks>,
    pub notify: Option<Notify>,
    /// Alert when the last successful backup is older than this (e.g. "26h").
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    /// Counts: a number, or -1 for all (like restic >= 0.16).
    pub keep_last: Option<i64>,
    pub keep_hourly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub keep_yearly: Option<i64>,
    /// Keep everything newer than this (e.g. "30d", "1y6m").
    #[schemars(with = "Option<String>")]
    pub keep_within: Option<Spanned<String>>,
    #[serde(default)]
    pub keep_tag: Vec<String>,
    /// How snapshots are grouped (default "host,paths").
    pub group_by: Option<String>,
}

/// A plan's check policies: one table or an array of tables.
#[derive(JsonSchema, Debug, Clone)]
#[serde(untagged)]
pub enum Checks {
    One(Check),
    Several(Vec<Check>),
}

impl Checks {
    pub fn policies(&self) -> &[Check] {
        match self {
            Checks::One(c) => std::slice::from_ref(c),
            Checks::Several(v) => v,
        }
    }
}

// By hand rather than `untagged`: a table or an array goes straight to its own type, so a
// mistake inside (an unknown key, a wrong type) is reported as such, at its place.
impl<'de> Deserialize<'de> for Checks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checks, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Checks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of check settings, or a list of such tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<Checks, A::Error> {
                Check::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(Checks::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, s: A) -> Result<Checks, A::Error> {
                Vec::<Check>::deserialize(serde::de::value::SeqAccessDeserializer::new(s))
                    .map(Checks::Several)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Check {
    /// A name for this policy (letters, digits, `-`, `_`): its identity in the history and
    /// the state, so reordering the policies keeps their last-run times and positions.
    /// Without one, a policy is known by its position (`#1`, `#2`, ...).
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    /// When to check (default `weekly`), or "always" (every run).
    #[schemars(with = "Option<String>")]
    pub schedule: Option<Spanned<String>>,
    /// Also read this share of the data: "5%" (a random 5% each time), "all" (everything),
    /// or "n/t" (rotating: group n of t on the first run, then the next group each run,
    /// so every pack is read once every t runs; the position is kept in the state
    /// directory and advanced after a successful check only).
    #[schemars(with = "Option<String>")]
    pub read_data_subset: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DbDump {
    /// Databases, one dump file each; none: every database in one file.
    #[serde(default)]
    pub databases: Vec<String>,
    pub user: Option<String>,
    /// Host name or socket directory (PostgreSQL), host name (MySQL).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// MySQL socket file.
    pub socket: Option<String>,
    /// Extra arguments for the dump command.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Snapshot {
    /// "btrfs", "zfs" or "lvm".
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestoreTest {
    /// When to test (default `monthly`).
    #[schemars(with = "Option<String>")]
    pub schedule: Option<Spanned<String>>,
    /// "sample" (default): `files` random files restored and compared byte for byte with
    /// the live files that did not change since the snapshot; "full": the whole snapshot
    /// restored into a scratch directory.
    #[schemars(with = "Option<String>")]
    pub mode: Option<Spanned<String>>,
    /// How many files, picked at random, in sample mode (default 20).
    pub files: Option<u32>,
    /// A shell command run on the restored tree, `CAIRN_RESTORE_DIR` set to it: exit 0
    /// proves the restore (e.g. `sqlite3 $CAIRN_RESTORE_DIR/var/lib/hass/home-assistant_v2.db
    /// 'pragma integrity_check'`).
    pub command: Option<String>,
    /// Time limit of the command (default "1h").
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// Load the plan's PostgreSQL/MySQL dumps into a scratch server started for the test.
    #[serde(default)]
    pub verify_dumps: bool,
    /// Alert when the last successful restore test is older than this (e.g. "35d").
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hooks {
    /// Before the backup; a failure aborts the run (and still runs `finally`).
    #[serde(default)]
    pub before: Vec<String>,
    /// After the backup, whatever its result.
    #[serde(default)]
    pub after: Vec<String>,
    /// After a successful run.
    #[serde(default)]
    pub success: Vec<String>,
    /// After a failed run.
    #[serde(default)]
    pub failure: Vec<String>,
    /// Last, always.
    #[serde(default)]
    pub finally: Vec<String>,
    /// `cairn restore --plan`: before anything is restored (e.g. stop the service);
    /// a failure aborts the restore.
    #[serde(default)]
    pub before_restore: Vec<String>,
    /// `cairn restore --plan`: after the restore, whatever its result (e.g. fix
    /// ownership, start the service).
    #[serde(default)]
    pub after_restore: Vec<String>,
    /// Time limit per command (default "5m").
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, JsonSchema, Default, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Notify {
    /// healthchecks.io-style ping URL: `/start`, `` (success) and `/fail` are appended,
    /// with the log tail as the body.
    pub healthchecks: Option<String>,
    /// ntfy topic URL, e.g. "https://ntfy.sh/my-backups".
    pub ntfy: Option<String>,
    /// Generic webhook: a JSON document is POSTed.
    pub webhook: Option<String>,
    /// Events: "start", "success", "failure" (default: all for healthchecks, success and
    /// failure for webhooks, failure for ntfy).
    pub on: Option<Vec<String>>,
}
