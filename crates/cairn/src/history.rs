//! The run history: every run of a plan and each operation in it, in a SQLite database
//! under the state directory (`history.db`). `cairn status`, `cairn history`, the
//! scheduler (when did prune last succeed on this repository?) and the metrics read it.
//!
//! One table, `operations`: a run is a row with operation `run`, and its steps (backup,
//! forget, prune, check, hooks) are rows pointing at it with `run_id`. Times are Unix
//! seconds (UTC). WAL mode, so `cairn status` can read while the daemon writes.
//!
//! Downloads and restores from the web UI are audited in the same table: top-level rows
//! with operation `download` or `restore`, an empty plan, the `user` who asked and a JSON
//! `detail` (items, format or target); `cairn history` lists them with the runs. The two
//! columns are added to an older database when it is opened.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Running,
    Success,
    /// Finished, but some files could not be read (restic's exit code 3).
    Warning,
    Failure,
    /// Stopped by a signal or a shutdown.
    Interrupted,
    /// Not run this time (prune or check not due).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Success => "success",
            Outcome::Warning => "warning",
            Outcome::Failure => "failure",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Outcome {
        match s {
            "running" => Outcome::Running,
            "success" => Outcome::Success,
            "warning" => Outcome::Warning,
            "interrupted" => Outcome::Interrupted,
            "skipped" => Outcome::Skipped,
            _ => Outcome::Failure,
        }
    }

    /// Success or warning: the operation did its job.
    pub fn ok(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning)
    }
}

/// Why an operation failed, for alerts and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Network,
    Auth,
    Lock,
    Permission,
    /// A file system mounted read-only (EROFS): not a permission a user or mode can fix.
    ReadOnly,
    DiskFull,
    CorruptData,
    SourceMissing,
    HookFailed,
    Config,
    Interrupted,
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Network => "network",
            Category::Auth => "auth",
            Category::Lock => "lock",
            Category::Permission => "permission",
            Category::ReadOnly => "read-only",
            Category::DiskFull => "disk-full",
            Category::CorruptData => "corrupt-data",
            Category::SourceMissing => "source-missing",
            Category::HookFailed => "hook-failed",
            Category::Config => "config",
            Category::Interrupted => "interrupted",
            Category::Other => "other",
        }
    }
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub run_id: Option<i64>,
    pub plan: String,
    pub repository: String,
    pub operation: String,
    pub started: f64,
    pub finished: Option<f64>,
    pub result: Outcome,
    pub files_processed: Option<u64>,
    pub bytes_processed: Option<u64>,
    pub files_added: Option<u64>,
    pub bytes_added: Option<u64>,
    pub snapshot_id: Option<String>,
    pub error_category: Option<String>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Who asked (downloads and restores from the web UI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What was asked (downloads and restores: items, format or target, overwrite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Record {
    pub fn duration(&self) -> Option<Duration> {
        self.finished
            .map(|f| Duration::from_secs_f64((f - self.started).max(0.0)))
    }

    /// How a step is named in lists: its operation, with which hook or check policy it
    /// was (from its `detail`): `hook before: pg_dump ...`, `check weekly (2/4)`.
    pub fn label(&self) -> String {
        let d = |k: &str| {
            self.detail
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|v| v.as_str())
        };
        match (self.operation.as_str(), d("hook"), d("policy")) {
            ("hook", Some(kind), _) => format!("hook {kind}: {}", d("command").unwrap_or("")),
            ("check", _, Some(policy)) => match d("group") {
                Some(g) => format!("check {policy} ({g})"),
                None => format!("check {policy}"),
            },
            (op, ..) => op.to_string(),
        }
    }
}

/// What a finished operation produced.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    pub files_processed: Option<u64>,
    pub bytes_processed: Option<u64>,
    pub files_added: Option<u64>,
    pub bytes_added: Option<u64>,
    pub snapshot_id: Option<String>,
    pub category: Option<Category>,
    pub error: Option<String>,
    pub log: Option<String>,
}

pub struct History {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES operations(id),
    plan TEXT NOT NULL,
    repository TEXT NOT NULL,
    operation TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    result TEXT NOT NULL,
    files_processed INTEGER,
    bytes_processed INTEGER,
    files_added INTEGER,
    bytes_added INTEGER,
    snapshot_id TEXT,
    error_category TEXT,
    error TEXT,
    log TEXT
);
CREATE INDEX IF NOT EXISTS operations_plan ON operations(plan, operation, started);
CREATE INDEX IF NOT EXISTS operations_repo ON operations(repository, operation, started);
";

const COLUMNS: &str = "id, run_id, plan, repository, operation, started, finished, result, \
    files_processed, bytes_processed, files_added, bytes_added, snapshot_id, error_category, error, \
    user, detail";

/// Columns added after the first version, with their types: added to an older database
/// when it is opened.
const ADDED_COLUMNS: &[(&str, &str)] = &[("user", "TEXT"), ("detail", "TEXT")];

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let u = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
    };
    Ok(Record {
        id: r.get(0)?,
        run_id: r.get(1)?,
        plan: r.get(2)?,
        repository: r.get(3)?,
        operation: r.get(4)?,
        started: r.get(5)?,
        finished: r.get(6)?,
        result: Outcome::parse(&r.get::<_, String>(7)?),
        files_processed: u(8)?,
        bytes_processed: u(9)?,
        files_added: u(10)?,
        bytes_added: u(11)?,
        snapshot_id: r.get(12)?,
        error_category: r.get(13)?,
        error: r.get(14)?,
        log: None,
        user: r.get(15)?,
        detail: r
            .get::<_, Option<String>>(16)?
            .and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl History {
    /// Opens (creating) `dir/history.db`.
    ///
    /// The state directory is created 0700 and the database 0600 (SQLite gives its `-wal`
    /// and `-shm` files the database's mode): run logs name files and errors, for the
    /// owner only. A database left wider by an older version is narrowed on open.
    pub fn open(dir: &Path) -> Result<History> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let path = dir.join("history.db");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the history database {}", path.display())
                })
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            let p = dir.join(format!("history.db{suffix}"));
            if std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                // Best effort: only the owner may narrow it, and a reader need not be it.
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
        let db = Connection::open(&path)
            .with_context(|| format!("cannot open the history database {}", path.display()))?;
        db.busy_timeout(Duration::from_secs(10))?;
        wal(&db).with_context(|| format!("cannot set up {}", path.display()))?;
        db.execute_batch(SCHEMA)
            .with_context(|| format!("cannot set up {}", path.display()))?;
        add_columns(&db).with_context(|| format!("cannot upgrade {}", path.display()))?;
        Ok(History { db })
    }

    /// Records the start of a download or restore asked by `user` from the web UI (no
    /// plan); `detail` says what (items, format or target). Finish it with [`History::finish`]
    /// (whose `Finish::snapshot_id` replaces the one given here: pass it again).
    pub fn start_audited(
        &self,
        user: &str,
        repository: &str,
        operation: &str,
        snapshot_id: &str,
        detail: &serde_json::Value,
        at: f64,
    ) -> Result<i64> {
        self.db.execute(
            "INSERT INTO operations (plan, repository, operation, started, result, snapshot_id, user, detail) \
             VALUES ('', ?1, ?2, ?3, 'running', ?4, ?5, ?6)",
            params![repository, operation, at, snapshot_id, user, detail.to_string()],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// Downloads and restores from the web UI, newest first.
    pub fn audited(&self, limit: usize) -> Result<Vec<Record>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM operations WHERE run_id IS NULL AND operation IN ('download', 'restore') \
             ORDER BY started DESC, id DESC LIMIT ?1"
        ))?;
        let rows = st
            .query_map(params![limit.min(i64::MAX as usize) as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Records the start of an operation; returns its id.
    pub fn start(
        &self,
        run_id: Option<i64>,
        plan: &str,
        repository: &str,
        operation: &str,
        at: f64,
    ) -> Result<i64> {
        self.db.execute(
            "INSERT INTO operations (run_id, plan, repository, operation, started, result) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
            params![run_id, plan, repository, operation, at],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    pub fn finish(&self, id: i64, at: f64, result: Outcome, f: &Finish) -> Result<()> {
        let i = |v: Option<u64>| v.map(|v| v.min(i64::MAX as u64) as i64);
        self.db.execute(
            "UPDATE operations SET finished = ?2, result = ?3, files_processed = ?4, bytes_processed = ?5, \
             files_added = ?6, bytes_added = ?7, snapshot_id = ?8, error_category = ?9, error = ?10, log = ?11 WHERE id = ?1",
            params![
                id,
                at,
                result.as_str(),
                i(f.files_processed),
                i(f.bytes_processed),
                i(f.files_added),
                i(f.bytes_added),
                f.snapshot_id,
                f.category.map(Category::as_str),
                f.error,
                f.log
            ],
        )?;
        Ok(())
    }

    /// Marks operations left `running` by a process that died as interrupted.
    pub fn close_abandoned(&self, at: f64) -> Result<usize> {
        Ok(self.db.execute(
            "UPDATE operations SET result = 'interrupted', finished = ?1, error_category = 'interrupted', \
             error = 'cairn stopped before this finished' WHERE result = 'running'",
            params![at],
        )?)
    }

    /// The most recent operation of a kind for a plan (any result).
    pub fn last(&self, plan: &str, operation: &str) -> Result<Option<Record>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE plan = ?1 AND operation = ?2 ORDER BY started DESC, id DESC LIMIT 1"),
                params![plan, operation],
                row,
            )
            .optional()?)
    }

    /// The most recent successful operation of a kind for a plan.
    pub fn last_ok(&self, plan: &str, operation: &str) -> Result<Option<Record>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE plan = ?1 AND operation = ?2 AND result IN ('success', 'warning') ORDER BY started DESC, id DESC LIMIT 1"),
                params![plan, operation],
                row,
            )
            .optional()?)
    }

    /// The most recent successful operation of a kind on a repository, by any plan
    /// (prune and check are per repository).
    pub fn last_ok_on_repository(
        &self,
        repository: &str,
        operation: &str,
    ) -> Result<Option<Record>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE repository = ?1 AND operation = ?2 AND result IN ('success', 'warning') ORDER BY started DESC, id DESC LIMIT 1"),
                params![repository, operation],
                row,
            )
            .optional()?)
    }

    /// Sets what an operation was (a check's policy and group, a hook's command and exit
    /// code), shown by `cairn history --json` and the web UI.
    pub fn set_detail(&self, id: i64, detail: &serde_json::Value) -> Result<()> {
        self.db.execute(
            "UPDATE operations SET detail = ?2 WHERE id = ?1",
            params![id, detail.to_string()],
        )?;
        Ok(())
    }

    /// Every successful operation of a kind on a repository, by any plan, newest first
    /// (which check policies are due depends on what each check read).
    pub fn all_ok_on_repository(&self, repository: &str, operation: &str) -> Result<Vec<Record>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM operations WHERE repository = ?1 AND operation = ?2 AND result IN ('success', 'warning') ORDER BY started DESC, id DESC"
        ))?;
        let rows = st
            .query_map(params![repository, operation], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Runs (and their steps), newest first; `plan` filters.
    pub fn list(&self, plan: Option<&str>, limit: usize, with_steps: bool) -> Result<Vec<Record>> {
        let mut sql = format!("SELECT {COLUMNS} FROM operations WHERE 1 = 1");
        if !with_steps {
            // Runs, and the audited downloads and restores (top-level rows too).
            sql.push_str(
                " AND (operation = 'run' OR (run_id IS NULL AND operation IN ('download', 'restore')))",
            );
        }
        if plan.is_some() {
            sql.push_str(" AND plan = ?1");
        }
        sql.push_str(" ORDER BY started DESC, id DESC LIMIT ");
        sql.push_str(&limit.to_string());
        let mut st = self.db.prepare(&sql)?;
        let rows = match plan {
            Some(p) => st
                .query_map(params![p], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => st
                .query_map([], row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    /// The steps of one run, in order.
    pub fn steps(&self, run_id: i64) -> Result<Vec<Record>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM operations WHERE run_id = ?1 ORDER BY id"
        ))?;
        let rows = st
            .query_map(params![run_id], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The most recent operation of a kind on a repository, by any plan (any result).
    pub fn last_on_repository(&self, repository: &str, operation: &str) -> Result<Option<Record>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE repository = ?1 AND operation = ?2 ORDER BY started DESC, id DESC LIMIT 1"),
                params![repository, operation],
                row,
            )
            .optional()?)
    }

    /// One operation (run or step) by id, with its log.
    pub fn get(&self, id: i64) -> Result<Option<Record>> {
        let Some(mut r) = self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        r.log = self.log(id)?;
        Ok(Some(r))
    }

    /// The log of one operation.
    pub fn log(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row(
                "SELECT log FROM operations WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}

/// Switches `db` to WAL mode. Another process switching a new database at the same moment
/// makes SQLite answer "locked" at once (the busy timeout does not cover a journal-mode
/// change): try again for up to 10 s.
fn wal(db: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match db.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Adds the columns of [`ADDED_COLUMNS`] that an older database lacks.
fn columns(db: &Connection) -> Result<Vec<String>> {
    let mut st = db.prepare("PRAGMA table_info(operations)")?;
    let have = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(have)
}

fn add_columns(db: &Connection) -> Result<()> {
    let missing = |have: &[String]| -> Vec<(&str, &str)> {
        ADDED_COLUMNS
            .iter()
            .filter(|(name, _)| !have.iter().any(|h| h == name))
            .copied()
            .collect()
    };
    if missing(&columns(db)?).is_empty() {
        return Ok(());
    }
    // Several processes may open an older (or new) database at once (the web server, a
    // `cairn run` child): under the write lock, look again and add what is still missing.
    db.execute_batch("BEGIN IMMEDIATE")?;
    let added = (|| -> Result<()> {
        for (name, ty) in missing(&columns(db)?) {
            db.execute_batch(&format!("ALTER TABLE operations ADD COLUMN {name} {ty}"))?;
        }
        Ok(())
    })();
    match added {
        Ok(()) => db.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_database_at_once_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let opened: Vec<Result<History>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..4)
                    .map(|_| sc.spawn(|| History::open(dir.path())))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for h in opened {
                let h = h.unwrap();
                assert!(h.list(None, 1, true).unwrap().is_empty());
            }
        }
    }

    #[test]
    fn state_dir_and_database_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let h = History::open(&state);
        nix::sys::stat::umask(old);
        let h = h.unwrap();
        h.start(None, "nightly", "nas", "run", 100.0).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(state.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700);
        for f in ["history.db", "history.db-wal", "history.db-shm"] {
            assert_eq!(mode(f), 0o600, "{f}");
        }
        drop(h);
        // An older version's world-readable database is narrowed when opened.
        std::fs::set_permissions(
            state.join("history.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        History::open(&state).unwrap();
        assert_eq!(mode("history.db"), 0o600);
    }

    #[test]
    fn steps_are_labelled_by_their_hook_or_check_policy() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        let run = h.start(None, "p", "nas", "run", 1.0).unwrap();
        let label = |op: &str, detail: Option<serde_json::Value>| {
            let id = h.start(Some(run), "p", "nas", op, 2.0).unwrap();
            if let Some(d) = detail {
                h.set_detail(id, &d).unwrap();
            }
            h.get(id).unwrap().unwrap().label()
        };
        assert_eq!(
            label(
                "hook",
                Some(
                    serde_json::json!({"hook": "before", "command": "pg_dumpall", "exit_code": 0})
                )
            ),
            "hook before: pg_dumpall"
        );
        assert_eq!(
            label(
                "check",
                Some(serde_json::json!({"policy": "weekly", "group": "2/4"}))
            ),
            "check weekly (2/4)"
        );
        assert_eq!(
            label("check", Some(serde_json::json!({"policy": "#2"}))),
            "check #2"
        );
        assert_eq!(
            label("check", Some(serde_json::json!({"policy": null}))),
            "check"
        );
        assert_eq!(label("backup", None), "backup");
    }

    #[test]
    fn runs_and_steps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        let run = h.start(None, "nightly", "nas", "run", 100.0).unwrap();
        let b = h
            .start(Some(run), "nightly", "nas", "backup", 101.0)
            .unwrap();
        h.finish(
            b,
            110.0,
            Outcome::Success,
            &Finish {
                files_processed: Some(10),
                bytes_added: Some(2048),
                snapshot_id: Some("abcd".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let p = h
            .start(Some(run), "nightly", "nas", "prune", 111.0)
            .unwrap();
        h.finish(
            p,
            112.0,
            Outcome::Failure,
            &Finish {
                category: Some(Category::Network),
                error: Some("gave up".into()),
                log: Some("the log".into()),
                ..Default::default()
            },
        )
        .unwrap();
        h.finish(run, 112.0, Outcome::Failure, &Finish::default())
            .unwrap();
        let last = h.last("nightly", "backup").unwrap().unwrap();
        assert_eq!(last.snapshot_id.as_deref(), Some("abcd"));
        assert_eq!(last.duration(), Some(Duration::from_secs(9)));
        assert!(h.last_ok_on_repository("nas", "prune").unwrap().is_none());
        assert_eq!(h.steps(run).unwrap().len(), 2);
        assert_eq!(h.list(Some("nightly"), 10, false).unwrap().len(), 1);
        assert_eq!(h.log(p).unwrap().as_deref(), Some("the log"));
        // A process killed mid-run leaves "running" rows: the next start closes them.
        h.start(None, "nightly", "nas", "run", 200.0).unwrap();
        assert_eq!(h.close_abandoned(201.0).unwrap(), 1);
    }

    #[test]
    fn downloads_and_restores_are_audited_with_the_user_and_old_databases_gain_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        // A database of the first version: no `user`, no `detail`.
        {
            let db = Connection::open(dir.path().join("history.db")).unwrap();
            // SCHEMA is the first version's; later columns are added by `add_columns`.
            db.execute_batch(SCHEMA).unwrap();
            db.execute(
                "INSERT INTO operations (plan, repository, operation, started, result) VALUES ('nightly', 'nas', 'run', 1.0, 'success')",
                [],
            )
            .unwrap();
            let cols: Vec<String> = db
                .prepare("PRAGMA table_info(operations)")
                .unwrap()
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(!cols.iter().any(|c| c == "user"));
        }
        let h = History::open(dir.path()).unwrap();
        let detail = serde_json::json!({"items": ["/home/a"], "format": "zip"});
        let id = h
            .start_audited("alice", "nas", "download", "abcdef01", &detail, 10.0)
            .unwrap();
        h.finish(
            id,
            12.0,
            Outcome::Success,
            &Finish {
                bytes_processed: Some(1234),
                files_processed: Some(3),
                snapshot_id: Some("abcdef01".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let r = h
            .start_audited("bob", "nas", "restore", "abcdef01", &detail, 20.0)
            .unwrap();
        h.finish(r, 21.0, Outcome::Failure, &Finish::default())
            .unwrap();
        let audited = h.audited(10).unwrap();
        assert_eq!(audited.len(), 2);
        assert_eq!(audited[0].operation, "restore");
        assert_eq!(audited[0].user.as_deref(), Some("bob"));
        assert_eq!(audited[1].user.as_deref(), Some("alice"));
        assert_eq!(audited[1].detail.as_ref(), Some(&detail));
        assert_eq!(audited[1].bytes_processed, Some(1234));
        assert_eq!(audited[1].snapshot_id.as_deref(), Some("abcdef01"));
        // `cairn history` lists them with the runs; a plan filter leaves them out.
        let all = h.list(None, 10, false).unwrap();
        let ops: Vec<&str> = all.iter().map(|r| r.operation.as_str()).collect();
        assert_eq!(ops, ["restore", "download", "run"]);
        assert_eq!(h.list(Some("nightly"), 10, false).unwrap().len(), 1);
        let json = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(json["user"], "alice");
        assert_eq!(json["detail"]["format"], "zip");
        // The old row has neither.
        assert!(serde_json::to_value(&all[2]).unwrap().get("user").is_none());
        // Opening again does not add the columns twice.
        drop(h);
        History::open(dir.path()).unwrap();
    }
}
