//! What the runbook did (or, in a dry run, would do): the report the CLI prints as text
//! or JSON and the history keeps as the `restore` row's detail.

use crate::history::{Category, Outcome};
use serde::Serialize;

/// The snapshot the runbook restores.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SnapshotInfo {
    pub id: String,
    pub short_id: String,
    /// When it was taken (RFC 3339, as the repository stores it).
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
}

/// One hook of the runbook: run (with its result) or, in a dry run, to be run.
#[derive(Debug, Clone, Serialize)]
pub struct HookReport {
    /// `before-restore` or `after-restore`.
    pub kind: String,
    /// `plan` or `source NAME`.
    pub scope: String,
    /// As `config show` shows it (secrets in it masked).
    pub command: String,
    /// `None` in a dry run.
    pub result: Option<Outcome>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

/// One source (or the plan's own paths) restored by one child `cairn restore`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SourceReport {
    /// The source's name, or `(plan)` for the plan's own paths.
    pub name: String,
    /// Each path as backed up, and where it lands.
    pub paths: Vec<Landing>,
    /// `success`, `warning` (existing files left), `failure`, `skipped` (not attempted),
    /// `interrupted`; `None` in a dry run.
    pub result: Option<Outcome>,
    /// Files (and links, devices) written; in a dry run, that would be written.
    pub files_restored: u64,
    pub dirs_restored: u64,
    pub bytes_restored: u64,
    /// Existing files left unchanged (no `--overwrite`): how many, and the first ones.
    pub files_skipped: u64,
    pub skipped_examples: Vec<String>,
    /// Paths that could not be restored, with why.
    pub errors: Vec<PathError>,
    /// Why the whole source failed or was not attempted.
    pub error: Option<String>,
    /// Stale SQLite companions (`-wal`, `-shm`, `-journal`) removed beside a restored
    /// database.
    pub removed: Vec<String>,
}

/// A path of the snapshot and its place in the target.
#[derive(Debug, Clone, Serialize)]
pub struct Landing {
    pub path: String,
    pub to: String,
}

/// A path that could not be restored.
#[derive(Debug, Clone, Serialize)]
pub struct PathError {
    pub path: String,
    pub error: String,
}

/// What became of one database dump of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpStatus {
    /// Loaded back into its server (`--load-dumps`).
    Loaded,
    /// Restored as a file under the target, to load by hand.
    Restored,
    /// Restoring or loading it failed.
    Failed,
    /// Left out, and that leaves the restore incomplete (in place without
    /// `--load-dumps`, or a before-restore hook failed).
    Skipped,
    /// Left out because the user's `--include` selects other paths.
    NotSelected,
    /// Dry run: what would happen is in `detail`.
    Planned,
}

/// One database dump of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct DumpReport {
    pub source: String,
    /// Its path in the snapshot.
    pub path: String,
    pub engine: crate::sources::DbEngine,
    /// `None`: every database of the server.
    pub database: Option<String>,
    /// The server it belongs to, as the source's config names it.
    pub server: String,
    pub status: DumpStatus,
    /// Where the file was restored (status `restored`).
    pub file: Option<String>,
    /// Why, what to do next, or what a dry run would do.
    pub detail: Option<String>,
    /// The databases loaded and the tables found in them (status `loaded`).
    pub databases: Vec<String>,
    pub tables: Option<u64>,
}

/// The runbook's report.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    pub plan: String,
    pub repository: String,
    /// The history row (`None` in a dry run).
    pub run_id: Option<i64>,
    pub dry_run: bool,
    pub snapshot: Option<SnapshotInfo>,
    /// Where the files went (`/`: in place).
    pub target: String,
    pub in_place: bool,
    pub overwrite: bool,
    pub load_dumps: bool,
    pub hooks: Vec<HookReport>,
    pub sources: Vec<SourceReport>,
    pub dumps: Vec<DumpReport>,
    /// `success`; `warning` when something was left out (existing files, dumps not
    /// loaded); `failure`; `skipped` when another run of the plan held its lock;
    /// `interrupted`.
    pub result: Outcome,
    pub error_category: Option<Category>,
    /// The first failure, for a person.
    pub error: Option<String>,
    /// 0 everything restored (and loaded), 1 something failed or was left out, 10 config
    /// or no repository, 11 the plan is running, 12 wrong password, 130 interrupted.
    pub exit_code: u8,
    #[serde(skip)]
    pub log: String,
}

/// An RFC 3339 time as local time for people (as written when it does not parse).
fn local_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| t.to_string())
}

/// `n` things: `one` or `many`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl RecoverReport {
    /// The report for people: what was restored where, what was left and why, what to do.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let done = if self.dry_run {
            "would be restored"
        } else {
            "restored"
        };
        match &self.snapshot {
            Some(s) => line(format!(
                "plan {}: snapshot {} of {} (host {}) from repository {}, {done} to {}{}",
                self.plan,
                s.short_id,
                local_time(&s.time),
                s.hostname,
                self.repository,
                self.target,
                if self.in_place { " (in place)" } else { "" }
            )),
            None => line(format!(
                "plan {}: no snapshot to restore from repository {}",
                self.plan, self.repository
            )),
        }
        if !self.hooks.is_empty() {
            line("hooks:".into());
            for h in &self.hooks {
                let how = match (h.result, &h.error) {
                    (None, _) => "would run".to_string(),
                    (Some(r), Some(e)) => format!("{}: {e}", r.as_str()),
                    (Some(r), None) => r.as_str().to_string(),
                };
                line(format!("  {} ({}): {} — {how}", h.kind, h.scope, h.command));
            }
        }
        if !self.sources.is_empty() {
            line("sources:".into());
        }
        for s in &self.sources {
            let state = s.result.map_or("planned", |r| r.as_str());
            line(format!("  {} [{state}]", s.name));
            for l in &s.paths {
                line(format!("    {} -> {}", l.path, l.to));
            }
            let (restored, skipped) = if self.dry_run {
                ("would restore", "would be left unchanged")
            } else {
                ("restored", "left unchanged")
            };
            if s.error.is_none() || s.files_restored > 0 {
                line(format!(
                    "    {restored} {} and {}{}",
                    count(s.files_restored, "file", "files"),
                    count(s.dirs_restored, "directory", "directories"),
                    if self.dry_run {
                        String::new()
                    } else {
                        format!(" ({})", crate::units::format_bytes(s.bytes_restored))
                    }
                ));
            }
            if s.files_skipped > 0 {
                line(format!(
                    "    {} {skipped}{}, e.g. {}",
                    count(s.files_skipped, "existing file", "existing files"),
                    if self.overwrite {
                        ""
                    } else {
                        " (pass --overwrite to replace them)"
                    },
                    s.skipped_examples.join(", ")
                ));
            }
            for e in &s.errors {
                line(format!("    error: {}: {}", e.path, e.error));
            }
            if let Some(e) = &s.error {
                line(format!("    error: {e}"));
            }
            for r in &s.removed {
                line(format!(
                    "    removed stale {r} (it belonged to the database that was replaced)"
                ));
            }
        }
        if !self.dumps.is_empty() {
            line("database dumps:".into());
        }
        for d in &self.dumps {
            let what = match d.status {
                DumpStatus::Loaded => format!(
                    "loaded into {} on {}{}",
                    if d.databases.is_empty() {
                        d.database.clone().unwrap_or_else(|| "the server".into())
                    } else {
                        d.databases.join(", ")
                    },
                    d.server,
                    d.tables
                        .map(|t| format!(" ({})", count(t, "table", "tables")))
                        .unwrap_or_default()
                ),
                DumpStatus::Restored => format!(
                    "restored as {}",
                    d.file.as_deref().unwrap_or("a file under the target")
                ),
                DumpStatus::Failed => "FAILED".into(),
                DumpStatus::Skipped => "not loaded".into(),
                DumpStatus::NotSelected => "not selected".into(),
                DumpStatus::Planned => String::new(),
            };
            let sep = if what.is_empty() { "" } else { ": " };
            line(format!(
                "  {} {}: {what}{sep}{}",
                d.source,
                d.path,
                d.detail.as_deref().unwrap_or("")
            ));
        }
        if self.dry_run {
            line("dry run: nothing was changed and no hook was run".into());
        } else {
            let verdict = match self.result {
                Outcome::Success => "everything was restored".to_string(),
                Outcome::Warning => "INCOMPLETE: some things were left out (see above)".into(),
                Outcome::Skipped => "NOT RUN".into(),
                o => o.as_str().to_uppercase(),
            };
            line(format!(
                "result: {verdict}{}{}",
                self.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                self.run_id
                    .map(|id| format!(" (cairn history --log {id} has the log)"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}
