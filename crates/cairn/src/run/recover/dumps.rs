//! The runbook's database dumps: with `--load-dumps`, restored into a private scratch
//! directory (`STATE_DIR/restore/PLAN`, 0700, removed after) and loaded back into their
//! servers ([`crate::databases::load`]), each load a `load-dump` step; without it, restored
//! as files under a directory target (`TARGET/.cairn/dumps/...`) with how to load them,
//! or, in place, left out with "pass --load-dumps".

use super::report::{DumpReport, DumpStatus};
use super::{layout, restore_args, RecoverOptions};
use crate::config::{Plan, Repository};
use crate::history::{Category, Finish, Outcome};
use crate::run::child::StepCtx;
use crate::run::{ts, Log, RunFlags, Runner};
use crate::sources::{sh_quote, DbEngine, Dump};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// How long loading one dump may take (a large database takes a while).
const LOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The server a dump belongs to, for people.
pub(super) fn server(d: &Dump) -> String {
    let c = &d.conn;
    let mut parts = Vec::new();
    if let Some(h) = &c.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = c.port {
        parts.push(format!("port {p}"));
    }
    if let Some(s) = &c.socket {
        parts.push(format!("socket {s}"));
    }
    if let Some(u) = &c.user {
        parts.push(format!("user {u}"));
    }
    let engine = match d.engine {
        DbEngine::Postgres => "PostgreSQL",
        DbEngine::Mysql => "MySQL/MariaDB",
    };
    if parts.is_empty() {
        format!("{engine} (default connection)")
    } else {
        format!("{engine} ({})", parts.join(", "))
    }
}

/// The report of dump `d` with `status` and `detail`.
pub(super) fn report_of(d: &Dump, status: DumpStatus, detail: &str) -> DumpReport {
    DumpReport {
        source: d.source.clone(),
        path: d.path.display().to_string(),
        engine: d.engine,
        database: d.database.clone(),
        server: server(d),
        status,
        file: None,
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        databases: Vec::new(),
        tables: None,
    }
}

/// The shell command that loads dump `d` from `file` by hand.
fn load_hint(d: &Dump, file: &Path) -> String {
    let c = &d.conn;
    let f = sh_quote(&file.display().to_string());
    match d.engine {
        DbEngine::Postgres => {
            let mut conn = String::new();
            if let Some(h) = &c.host {
                conn.push_str(&format!(" -h {}", sh_quote(h)));
            }
            if let Some(p) = c.port {
                conn.push_str(&format!(" -p {p}"));
            }
            if let Some(u) = &c.user {
                conn.push_str(&format!(" -U {}", sh_quote(u)));
            }
            match &d.database {
                Some(db) => format!(
                    "createdb{conn} {db} && psql -X -v ON_ERROR_STOP=1{conn} -d {db} -f {f}",
                    db = sh_quote(db)
                ),
                None => format!("psql -X{conn} -d postgres -f {f}"),
            }
        }
        DbEngine::Mysql => {
            let mut conn = String::new();
            if let Some(h) = &c.host {
                conn.push_str(&format!(" -h {}", sh_quote(h)));
            }
            if let Some(p) = c.port {
                conn.push_str(&format!(" -P {p}"));
            }
            if let Some(s) = &c.socket {
                conn.push_str(&format!(" -S {}", sh_quote(s)));
            }
            if let Some(u) = &c.user {
                conn.push_str(&format!(" -u {}", sh_quote(u)));
            }
            format!("mysql{conn} < {f}")
        }
    }
}

impl Runner<'_> {
    /// The plan's dumps, as the options say (see the module docs); `run_id` `None` is a
    /// dry run.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn recover_dumps(
        &self,
        run_id: Option<i64>,
        plan: &Plan,
        repo: &Repository,
        snap_id: &str,
        opts: &RecoverOptions,
        target: &Path,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Vec<DumpReport>> {
        let in_place = target == Path::new("/");
        // The user's --include narrows the dumps too (a dump path it names is selected).
        let selected = |d: &Dump| -> bool {
            if opts.load_dumps || !opts.selects() {
                return true;
            }
            let mut set = match cairn_repo::exclude::PatternSet::new(&opts.include, false) {
                Ok(s) => s,
                Err(_) => return false,
            };
            if let Ok(i) = cairn_repo::exclude::PatternSet::new(&opts.iinclude, true) {
                set.extend(i);
            }
            set.matches_path(&d.path)
        };
        let mut out = Vec::new();
        let mut wanted: Vec<&Dump> = Vec::new();
        for d in &plan.dumps {
            let srv = server(d);
            if !selected(d) {
                out.push(report_of(
                    d,
                    DumpStatus::NotSelected,
                    "not selected by --include (pass --load-dumps to load it)",
                ));
            } else if in_place && !opts.load_dumps {
                let why = format!(
                    "not loaded: pass --load-dumps to load it into {srv} (or restore to a directory to get the file)"
                );
                let status = if opts.dry_run {
                    DumpStatus::Planned
                } else {
                    DumpStatus::Skipped
                };
                out.push(report_of(d, status, &why));
            } else if opts.dry_run {
                let what = if opts.load_dumps {
                    format!(
                        "would load into {} on {srv}{}",
                        d.database.as_deref().unwrap_or("every database"),
                        if opts.overwrite {
                            " (replacing an existing database)"
                        } else {
                            " (an existing database with tables is refused without --overwrite)"
                        }
                    )
                } else {
                    format!(
                        "would be restored as {}",
                        layout::landing(target, &d.path).display()
                    )
                };
                out.push(report_of(d, DumpStatus::Planned, &what));
            } else {
                wanted.push(d);
            }
        }
        let Some(run_id) = run_id.filter(|_| !wanted.is_empty()) else {
            return Ok(out);
        };
        let scratch_root = self.config.settings.state_dir.join("restore");
        let scratch = scratch_root.join(&plan.name);
        let into = if opts.load_dumps {
            let _ = std::fs::remove_dir_all(&scratch);
            let made = crate::sources::private_dir(&scratch_root)
                .and_then(|_| crate::sources::private_dir(&scratch));
            if let Err(e) = made {
                let why = format!("cannot prepare the scratch directory for the dumps: {e:#}");
                out.extend(
                    wanted
                        .iter()
                        .map(|d| report_of(d, DumpStatus::Failed, &why)),
                );
                return Ok(out);
            }
            scratch.clone()
        } else {
            target.to_path_buf()
        };
        // One child restores every dump file wanted.
        let mut args = restore_args(snap_id, &into, opts);
        for d in &wanted {
            args.extend(["--include".into(), layout::literal(&d.path)]);
        }
        let row = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            "restore",
            ts(self.now(flags)),
        )?;
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: "restore",
        };
        log.line(format!(
            "== restore {} database dump(s) to {}",
            wanted.len(),
            into.display()
        ));
        let r = self.exec_from(repo, None, plan, &args, log, &ctx);
        let summary = super::child_summary(&r.stdout);
        let restored_ok = r.outcome.ok() && summary.as_ref().is_some_and(|s| s.errors.is_empty());
        let child_error = summary
            .as_ref()
            .and_then(|s| s.errors.first())
            .map(|e| format!("{}: {}", e.path, e.error))
            .or(r.error.clone())
            .unwrap_or_else(|| "the restore printed no summary".into());
        self.history.finish(
            row,
            self.end_ts(flags),
            match (restored_ok, r.outcome) {
                (true, _) => Outcome::Success,
                (false, Outcome::Interrupted) => Outcome::Interrupted,
                (false, _) => Outcome::Failure,
            },
            &Finish {
                files_processed: summary.as_ref().map(|s| s.files_restored),
                snapshot_id: Some(snap_id.to_string()),
                category: (!restored_ok).then(|| r.category.unwrap_or(Category::Other)),
                error: (!restored_ok).then(|| child_error.clone()),
                ..Default::default()
            },
        )?;
        self.history.set_detail(
            row,
            &serde_json::json!({
                "source": "database dumps",
                "paths": wanted.iter().map(|d| &d.path).collect::<Vec<_>>(),
                "target": into,
            }),
        )?;
        for d in wanted {
            let file = layout::landing(&into, &d.path);
            let written = file.is_file()
                && !summary.as_ref().is_some_and(|s| {
                    s.files_skipped_existing
                        .contains(&file.display().to_string())
                });
            if !opts.load_dumps {
                let mut rep = if written {
                    report_of(
                        d,
                        DumpStatus::Restored,
                        &format!(
                            "load it with: {} (or run this restore in place with --load-dumps)",
                            load_hint(d, &file)
                        ),
                    )
                } else if file.is_file() {
                    report_of(
                        d,
                        DumpStatus::Restored,
                        "an older file is there and was left unchanged (pass --overwrite to replace it)",
                    )
                } else {
                    report_of(
                        d,
                        DumpStatus::Failed,
                        &format!("not restored: {child_error}"),
                    )
                };
                if file.is_file() {
                    rep.file = Some(file.display().to_string());
                }
                out.push(rep);
                continue;
            }
            out.push(self.load_dump(run_id, plan, repo, d, &file, opts, log, flags)?);
        }
        if opts.load_dumps {
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                log.line(format!(
                    "warning: could not remove {}: {e} (remove it: it holds database dumps)",
                    scratch.display()
                ));
            }
        }
        Ok(out)
    }

    /// Loads one restored dump `file` into its server: a `load-dump` step of `run_id`.
    #[allow(clippy::too_many_arguments)]
    fn load_dump(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        d: &Dump,
        file: &Path,
        opts: &RecoverOptions,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<DumpReport> {
        let srv = server(d);
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            "load-dump",
            ts(self.now(flags)),
        )?;
        log.line(format!(
            "== load-dump {} into {} on {srv}",
            d.path.display(),
            d.database.as_deref().unwrap_or("every database")
        ));
        let loaded = if self.stop_asked() {
            Err(anyhow::anyhow!("not loaded: cairn is stopping"))
        } else if !file.is_file() {
            Err(anyhow::anyhow!(
                "the dump file was not restored from the snapshot (see the restore step above)"
            ))
        } else {
            crate::databases::load(
                d.engine,
                &d.conn,
                d.database.as_deref(),
                file,
                opts.overwrite,
                LOAD_TIMEOUT,
            )
        };
        let mut rep = report_of(d, DumpStatus::Loaded, "");
        let (outcome, finish) = match loaded {
            Ok(l) => {
                log.line(format!(
                    "loaded {} ({} tables)",
                    l.databases.join(", "),
                    l.tables
                ));
                rep.databases = l.databases;
                rep.tables = Some(l.tables);
                (Outcome::Success, Finish::default())
            }
            Err(e) => {
                let e = format!("{e:#}");
                log.line(format!("   load-dump failed: {e}"));
                rep.status = DumpStatus::Failed;
                rep.detail = Some(e.clone());
                (
                    Outcome::Failure,
                    Finish {
                        category: Some(Category::Other),
                        error: Some(e),
                        ..Default::default()
                    },
                )
            }
        };
        self.history
            .finish(id, self.end_ts(flags), outcome, &finish)?;
        self.history.set_detail(
            id,
            &serde_json::json!({
                "source": d.source,
                "path": d.path,
                "engine": d.engine,
                "database": d.database,
                "server": srv,
                "databases": rep.databases,
                "tables": rep.tables,
            }),
        )?;
        Ok(rep)
    }
}
