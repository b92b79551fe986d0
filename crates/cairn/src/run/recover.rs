//! `cairn restore --plan NAME`: the disaster-recovery runbook as one command, for the CLI
//! and the web UI alike ([`Runner::recover`]).
//!
//! Order: take the plan's run lock (a scheduled backup must not run while services are
//! being restored) → find the snapshot (the plan's latest unless one is given) →
//! `before-restore` hooks (plan first; a failure aborts, nothing is restored) → each part
//! of the plan ([`layout::parts`]: each source, then the plan's own paths) restored by a
//! child `cairn restore` to its place under the target (`/`: in place), going on past a
//! failed one; stale SQLite `-wal`/`-shm`/`-journal` files beside a database that was
//! written are removed → the database dumps ([`dumps`]): loaded into their servers with
//! `--load-dumps`, else restored as files under a directory target → `after-restore`
//! hooks (always; sources first) → the report ([`RecoverReport`]).
//!
//! Everything is recorded in the history: a top-level row `restore` (plan, repository),
//! its steps under it (hooks, one `restore` per part, `load-dump` per dump loaded). A dry
//! run changes nothing, runs no hook, holds no lock and records nothing: it lists what
//! would happen, with the counts of a `restore --dry-run` per part.
//!
//! This module must not print: the caller shows the report.

mod dry_run;
mod dumps;
pub mod layout;
pub mod report;

pub use report::{
    DumpStatus, HookReport, Landing, PathError, RecoverReport, SnapshotInfo, SourceReport,
};

use super::child::{StepCtx, StepResult};
use super::protocol::Message;
use super::{lock, plan_tag, ts, Log, RunFlags, Runner};
use crate::config::{Plan, Repository};
use crate::history::{Category, Finish, Outcome};
use anyhow::{Context, Result};
use layout::Part;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// What the runbook restores, and how.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Snapshot id (prefix) or `latest`; `None`: the plan's latest.
    pub snapshot: Option<String>,
    /// Where the files go: `/` puts them back in place.
    pub target: PathBuf,
    /// Show what would happen; change nothing.
    pub dry_run: bool,
    /// Replace existing files (and refill existing databases) instead of leaving them.
    pub overwrite: bool,
    /// Load the plan's database dumps back into their servers.
    pub load_dumps: bool,
    /// Re-read restored files and verify their content.
    pub verify: bool,
    /// The user's restore patterns (restic's), applied within every part.
    pub include: Vec<String>,
    pub iinclude: Vec<String>,
    pub exclude: Vec<String>,
    pub iexclude: Vec<String>,
    /// When picking the latest snapshot: only these hosts, paths, tags.
    pub host: Vec<String>,
    pub path: Vec<String>,
    pub tag: Vec<String>,
    /// Concurrent pack downloads of each child restore.
    pub threads: Option<usize>,
}

impl RecoverOptions {
    /// Whether the user narrowed the restore with `--include`/`--iinclude`.
    fn selects(&self) -> bool {
        !self.include.is_empty() || !self.iinclude.is_empty()
    }
}

/// The exit code of a runbook that failed with `category`, as the other commands use
/// them (restic's where it has one).
pub fn exit_code(category: Option<Category>) -> u8 {
    match category {
        Some(Category::Config) => 10,
        Some(Category::Lock) => 11,
        Some(Category::Auth) => 12,
        Some(Category::Interrupted) => 130,
        _ => 1,
    }
}

/// The restore summary a child `cairn restore --json` prints on stdout.
#[derive(serde::Deserialize, Default)]
struct ChildSummary {
    #[serde(default)]
    files_restored: u64,
    #[serde(default)]
    dirs_restored: u64,
    #[serde(default)]
    bytes_written: u64,
    #[serde(default)]
    files_skipped_existing: Vec<String>,
    #[serde(default)]
    errors: Vec<ChildError>,
}

#[derive(serde::Deserialize)]
struct ChildError {
    path: String,
    error: String,
}

fn child_summary(stdout: &str) -> Option<ChildSummary> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Inode, change time (seconds, nanoseconds).
type Stamp = (u64, i64, i64);

/// What identifies a file's current incarnation: inode and change time. A restore that
/// writes the file creates it anew (and sets its times), so the stamp changes.
fn stamp(p: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

/// The common arguments of a child restore of snapshot `id` into `target`.
fn restore_args(id: &str, target: &Path, opts: &RecoverOptions) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "restore".into(),
        id.into(),
        "--target".into(),
        target.display().to_string(),
        "--json".into(),
    ];
    if opts.dry_run {
        args.push("--dry-run".into());
    }
    if opts.overwrite {
        args.push("--overwrite".into());
    }
    if opts.verify {
        args.push("--verify".into());
    }
    if let Some(t) = opts.threads {
        args.extend(["--threads".into(), t.to_string()]);
    }
    args
}

impl Runner<'_> {
    /// Runs the disaster-recovery runbook of `plan` (see the module docs) and reports what
    /// it did. `Err` only when the history cannot be written or the target cannot be
    /// named; every other failure is in the report (its `exit_code` says how it ended).
    pub fn recover(&self, plan: &Plan, opts: &RecoverOptions) -> Result<RecoverReport> {
        let repo = self
            .config
            .repositories
            .get(&plan.repository)
            .with_context(|| {
                format!("plan {}: unknown repository {}", plan.name, plan.repository)
            })?;
        let target = std::path::absolute(&opts.target)
            .with_context(|| format!("restore target {}", opts.target.display()))?;
        let in_place = target == Path::new("/");
        let flags = RunFlags::default();
        let mut log = Log {
            text: String::new(),
            echo: self.echo,
        };
        let parts = layout::parts(self.config, plan);
        let mut report = RecoverReport {
            plan: plan.name.clone(),
            repository: repo.name.clone(),
            run_id: None,
            dry_run: opts.dry_run,
            snapshot: None,
            target: target.display().to_string(),
            in_place,
            overwrite: opts.overwrite,
            load_dumps: opts.load_dumps,
            hooks: Vec::new(),
            sources: parts
                .iter()
                .map(|p| SourceReport {
                    name: p.name.clone(),
                    paths: p
                        .paths
                        .iter()
                        .map(|x| Landing {
                            path: x.display().to_string(),
                            to: layout::landing(&target, x).display().to_string(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            dumps: Vec::new(),
            result: Outcome::Success,
            error_category: None,
            error: None,
            exit_code: 0,
            log: String::new(),
        };
        if opts.dry_run {
            self.dry_run(plan, repo, opts, &target, &parts, &mut report, &mut log);
            report.log = log.text;
            return Ok(report);
        }
        let _held = match lock::try_lock(&self.config.settings.state_dir, &plan.name)? {
            Ok(l) => l,
            Err(holder) => {
                let error = format!(
                    "plan {} is running ({holder}): nothing was restored; run the restore when it has finished (if no such run exists, check {})",
                    plan.name,
                    lock::path(&self.config.settings.state_dir, &plan.name).display()
                );
                log.line(format!("cairn restore --plan {}: {error}", plan.name));
                let id = self.history.start(
                    None,
                    &plan.name,
                    &repo.name,
                    "restore",
                    ts(self.now(&flags)),
                )?;
                let finish = Finish {
                    category: Some(Category::Lock),
                    error: Some(error.clone()),
                    log: Some(log.text.clone()),
                    ..Default::default()
                };
                self.history
                    .finish(id, self.end_ts(&flags), Outcome::Skipped, &finish)?;
                report.run_id = Some(id);
                report.result = Outcome::Skipped;
                report.error_category = Some(Category::Lock);
                report.error = Some(error);
                report.exit_code = exit_code(Some(Category::Lock));
                report.log = log.text;
                return Ok(report);
            }
        };
        let run_id = self.history.start(
            None,
            &plan.name,
            &repo.name,
            "restore",
            ts(self.now(&flags)),
        )?;
        report.run_id = Some(run_id);
        log.line(format!(
            "cairn restore --plan {} from repository {} to {}{}",
            plan.name,
            repo.name,
            target.display(),
            if in_place { " (in place)" } else { "" }
        ));
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: "restore",
        };
        let mut failure: Option<(Category, String)> = None;
        match self.find_snapshot(plan, repo, opts, &mut log, &ctx) {
            Ok(s) => {
                log.line(format!(
                    "snapshot {} of {} (host {})",
                    s.short_id, s.time, s.hostname
                ));
                // Paths the snapshot holds that no source of today's config covers (an
                // older snapshot, a source removed since): said, never silently dropped.
                let uncovered = layout::uncovered(&s.paths, &parts);
                if !uncovered.is_empty() {
                    log.line(format!(
                        "not in the config, not restored: {}",
                        uncovered.join(", ")
                    ));
                    report.sources.push(SourceReport {
                        name: layout::UNCOVERED_PART.into(),
                        paths: uncovered
                            .iter()
                            .map(|p| Landing {
                                path: p.clone(),
                                to: layout::landing(&target, Path::new(p))
                                    .display()
                                    .to_string(),
                            })
                            .collect(),
                        result: Some(Outcome::Warning),
                        error: Some(format!(
                            "in the snapshot but in no source of the plan in today's config: not restored (restore them with `cairn -r {} restore {} --include PATH --target {}`)",
                            repo.name,
                            s.short_id,
                            target.display()
                        )),
                        ..Default::default()
                    });
                }
                report.snapshot = Some(s);
            }
            Err(f) => {
                for s in &mut report.sources {
                    s.result = Some(Outcome::Skipped);
                    s.error = Some("not restored: no snapshot".into());
                }
                failure = Some(f)
            }
        }
        if let Some(snap) = report.snapshot.clone() {
            let mut env: Vec<(String, String)> = vec![
                ("CAIRN_PLAN".into(), plan.name.clone()),
                ("CAIRN_REPOSITORY".into(), repo.name.clone()),
                ("CAIRN_SNAPSHOT_ID".into(), snap.id.clone()),
                ("CAIRN_RESTORE_TARGET".into(), target.display().to_string()),
            ];
            if let Some(e) =
                self.hooks(run_id, plan, "before-restore", &env, &mut log, true, &flags)
            {
                failure = Some((Category::HookFailed, e));
                let why = "not restored: a before-restore hook failed";
                for s in &mut report.sources {
                    s.result = Some(Outcome::Skipped);
                    s.error = Some(why.into());
                }
                report.dumps = plan
                    .dumps
                    .iter()
                    .map(|d| dumps::report_of(d, DumpStatus::Skipped, why))
                    .collect();
            } else {
                for (part, out) in parts.iter().zip(report.sources.iter_mut()) {
                    self.restore_part(
                        Some(run_id),
                        plan,
                        repo,
                        &snap.id,
                        opts,
                        &target,
                        (part, &parts),
                        out,
                        &mut log,
                        &flags,
                    )?;
                }
                report.dumps = self.recover_dumps(
                    Some(run_id),
                    plan,
                    repo,
                    &snap.id,
                    opts,
                    &target,
                    &mut log,
                    &flags,
                )?;
            }
            let (so_far, _, _) = verdict(&report, &failure, self.stop_asked());
            env.push(("CAIRN_RESULT".into(), so_far.as_str().into()));
            if let Some(e) =
                self.hooks(run_id, plan, "after-restore", &env, &mut log, false, &flags)
            {
                failure.get_or_insert((Category::HookFailed, e));
            }
            report.hooks = self.hook_reports(run_id)?;
        }
        let (outcome, category, error) = verdict(&report, &failure, self.stop_asked());
        report.result = outcome;
        report.error_category = category;
        report.error = error.clone();
        report.exit_code = match outcome {
            Outcome::Success => 0,
            Outcome::Interrupted => 130,
            Outcome::Failure if report.snapshot.is_none() => exit_code(category),
            _ => 1,
        };
        log.line(format!(
            "restore {}{}",
            outcome.as_str(),
            error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ));
        let files: u64 = report.sources.iter().map(|s| s.files_restored).sum();
        let bytes: u64 = report.sources.iter().map(|s| s.bytes_restored).sum();
        let finish = Finish {
            files_processed: Some(files),
            bytes_processed: Some(bytes),
            snapshot_id: report.snapshot.as_ref().map(|s| s.id.clone()),
            category,
            error,
            log: Some(log.text.clone()),
            ..Default::default()
        };
        self.history
            .finish(run_id, self.end_ts(&flags), outcome, &finish)?;
        self.history
            .set_detail(run_id, &serde_json::to_value(&report)?)?;
        report.log = log.text;
        Ok(report)
    }

    fn stop_asked(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The snapshot to restore: the given one (which must be the plan's) or the plan's
    /// latest, through a child `cairn snapshots --json` with the plan's repository
    /// settings.
    fn find_snapshot(
        &self,
        plan: &Plan,
        repo: &Repository,
        opts: &RecoverOptions,
        log: &mut Log,
        ctx: &StepCtx,
    ) -> std::result::Result<SnapshotInfo, (Category, String)> {
        let tag = plan_tag(&plan.name);
        let spec = opts.snapshot.clone().unwrap_or_else(|| "latest".into());
        let mut args: Vec<String> = vec!["snapshots".into(), "--json".into()];
        if opts.tag.is_empty() {
            args.extend(["--tag".into(), tag.clone()]);
        }
        for t in &opts.tag {
            args.extend(["--tag".into(), format!("{t},{tag}")]);
        }
        for h in &opts.host {
            args.extend(["--host".into(), h.clone()]);
        }
        for p in &opts.path {
            args.extend(["--path".into(), p.clone()]);
        }
        args.extend(["--".into(), spec.clone()]);
        log.line(format!("== finding snapshot {spec} of plan {}", plan.name));
        // Its output (one JSON line) is no news for the log: only the rest goes there.
        let mut quiet = Log {
            text: String::new(),
            echo: false,
        };
        let silent = Runner {
            config: self.config,
            history: self.history,
            exe: self.exe.clone(),
            stop: self.stop.clone(),
            child: self.child.clone(),
            echo: false,
            progress: self.progress.clone(),
        };
        let r = silent.exec_from(repo, None, plan, &args, &mut quiet, ctx);
        for l in quiet
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with('['))
        {
            if log.echo {
                eprintln!("{l}");
            }
            log.text.push_str(l);
            log.text.push('\n');
        }
        if !r.outcome.ok() {
            return Err((
                r.category.unwrap_or(Category::Other),
                format!(
                    "cannot find snapshot {spec} of plan {} in repository {}: {}",
                    plan.name,
                    repo.name,
                    r.error.unwrap_or_default()
                ),
            ));
        }
        let list: Vec<serde_json::Value> = r
            .stdout
            .lines()
            .find(|l| l.starts_with('['))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        let Some(s) = list.into_iter().next() else {
            return Err((
                Category::Other,
                format!(
                    "plan {} has no snapshot {spec} in repository {} (see `cairn snapshots --plan {}`)",
                    plan.name, repo.name, plan.name
                ),
            ));
        };
        let strs = |k: &str| -> Vec<String> {
            s[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let info = SnapshotInfo {
            id: s["id"].as_str().unwrap_or_default().to_string(),
            short_id: s["short_id"].as_str().unwrap_or_default().to_string(),
            time: s["time"].as_str().unwrap_or_default().to_string(),
            hostname: s["hostname"].as_str().unwrap_or_default().to_string(),
            paths: strs("paths"),
        };
        if !strs("tags").contains(&tag) {
            return Err((
                Category::Other,
                format!(
                    "snapshot {} is not one of plan {}'s (no tag {tag}): pick one from `cairn snapshots --plan {}`",
                    info.short_id, plan.name, plan.name
                ),
            ));
        }
        if info.id.is_empty() {
            return Err((
                Category::Other,
                format!("`cairn snapshots` named no id for snapshot {spec}"),
            ));
        }
        Ok(info)
    }

    /// Restores one part of the plan (or, in a dry run, counts what it would restore)
    /// into `out`; recorded as a `restore` step of `run_id` when there is one.
    #[allow(clippy::too_many_arguments)]
    fn restore_part(
        &self,
        run_id: Option<i64>,
        plan: &Plan,
        repo: &Repository,
        snap_id: &str,
        opts: &RecoverOptions,
        target: &Path,
        (part, parts): (&Part, &[Part]),
        out: &mut SourceReport,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<()> {
        let mut args = restore_args(snap_id, target, opts);
        if opts.selects() {
            for i in &opts.include {
                args.extend(["--include".into(), i.clone()]);
            }
            for i in &opts.iinclude {
                args.extend(["--iinclude".into(), i.clone()]);
            }
        } else if !part.paths.iter().any(|p| p == Path::new("/")) {
            for p in &part.paths {
                args.extend(["--include".into(), layout::literal(p)]);
            }
        }
        for x in layout::excludes(part, parts) {
            args.extend(["--exclude".into(), layout::literal(&x)]);
        }
        args.extend([
            "--exclude".into(),
            layout::literal(Path::new(crate::sources::DUMP_ROOT)),
        ]);
        for e in &opts.exclude {
            args.extend(["--exclude".into(), e.clone()]);
        }
        for e in &opts.iexclude {
            args.extend(["--iexclude".into(), e.clone()]);
        }
        let dbs: Vec<(PathBuf, Option<Stamp>)> = layout::sqlite_of(plan, part, parts)
            .into_iter()
            .map(|db| {
                let at = layout::landing(target, &db);
                let before = stamp(&at);
                (at, before)
            })
            .collect();
        let row = match run_id {
            Some(run) => Some(self.history.start(
                Some(run),
                &plan.name,
                &repo.name,
                "restore",
                ts(self.now(flags)),
            )?),
            None => None,
        };
        let ctx = StepCtx {
            plan: &plan.name,
            run_id: run_id.unwrap_or(0),
            step: "restore",
        };
        log.line(format!(
            "== restore {}{}: {}",
            part.name,
            if opts.dry_run { " (dry run)" } else { "" },
            out.paths
                .iter()
                .map(|l| format!("{} -> {}", l.path, l.to))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if row.is_some() {
            self.event(&ctx, Message::StepStarted);
        }
        let r = self.exec_from(repo, None, plan, &args, log, &ctx);
        let summary = child_summary(&r.stdout);
        if let Some(s) = &summary {
            out.files_restored = s.files_restored;
            out.dirs_restored = s.dirs_restored;
            out.bytes_restored = s.bytes_written;
            out.files_skipped = s.files_skipped_existing.len() as u64;
            out.skipped_examples = s.files_skipped_existing.iter().take(5).cloned().collect();
            out.errors = s
                .errors
                .iter()
                .map(|e| PathError {
                    path: e.path.clone(),
                    error: e.error.clone(),
                })
                .collect();
        }
        let mut category = r.category;
        let mut outcome = match (&summary, r.outcome) {
            (_, Outcome::Interrupted) => Outcome::Interrupted,
            (None, _) => Outcome::Failure,
            (Some(s), _) if !s.errors.is_empty() => Outcome::Failure,
            (Some(_), o) if !o.ok() => Outcome::Failure,
            (Some(s), _) if !s.files_skipped_existing.is_empty() => Outcome::Warning,
            (Some(_), _) => Outcome::Success,
        };
        if outcome == Outcome::Failure || outcome == Outcome::Interrupted {
            out.error = Some(match (&r.error, out.errors.len()) {
                (_, n) if n > 0 => format!("{n} path(s) could not be restored"),
                (Some(e), _) => e.clone(),
                (None, _) => "the restore printed no summary".into(),
            });
        }
        if !opts.dry_run {
            for (db, before) in &dbs {
                let now = stamp(db);
                if now.is_none() || now == *before {
                    continue;
                }
                // A database that was there and was not to be overwritten was left as it
                // is (its stamp may move because its service still writes it): its WAL is
                // its own, never stale.
                if before.is_some() && !opts.overwrite {
                    continue;
                }
                for c in layout::sqlite_companions(db) {
                    if std::fs::symlink_metadata(&c).is_err() {
                        continue;
                    }
                    match std::fs::remove_file(&c) {
                        Ok(()) => {
                            log.line(format!("removed stale {}", c.display()));
                            out.removed.push(c.display().to_string());
                        }
                        Err(e) => {
                            outcome = Outcome::Failure;
                            category.get_or_insert(Category::Permission);
                            out.errors.push(PathError {
                                path: c.display().to_string(),
                                error: format!("stale SQLite file beside the restored database could not be removed: {e}; remove it before starting the service"),
                            });
                            out.error
                                .get_or_insert_with(|| "a stale SQLite file is left".into());
                        }
                    }
                }
            }
        }
        out.result = (!opts.dry_run).then_some(outcome);
        if outcome == Outcome::Success || outcome == Outcome::Warning {
            category = None;
        }
        if let Some(id) = row {
            let finish = Finish {
                files_processed: Some(out.files_restored),
                bytes_processed: Some(out.bytes_restored),
                snapshot_id: Some(snap_id.to_string()),
                category: category.or((outcome == Outcome::Failure).then_some(Category::Other)),
                error: out.error.clone().or_else(|| {
                    (out.files_skipped > 0).then(|| {
                        format!(
                            "{} existing file(s) left unchanged (pass --overwrite to replace them)",
                            out.files_skipped
                        )
                    })
                }),
                ..Default::default()
            };
            self.history
                .finish(id, self.end_ts(flags), outcome, &finish)?;
            self.history.set_detail(
                id,
                &serde_json::json!({
                    "source": part.name,
                    "paths": part.paths,
                    "target": target,
                    "files_restored": out.files_restored,
                    "files_skipped": out.files_skipped,
                    "errors": out.errors.len(),
                    "removed": out.removed,
                }),
            )?;
            let step = StepResult {
                outcome,
                category: finish.category,
                error: finish.error,
                stdout: String::new(),
                summary: None,
            };
            self.finished(&ctx, &step);
        }
        Ok(())
    }

    /// The hooks run under `run_id`, from the history.
    fn hook_reports(&self, run_id: i64) -> Result<Vec<HookReport>> {
        Ok(self
            .history
            .steps(run_id)?
            .into_iter()
            .filter(|r| r.operation == "hook")
            .map(|r| {
                let d = r.detail.clone().unwrap_or_default();
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                HookReport {
                    kind: s("hook"),
                    scope: s("scope"),
                    command: s("command"),
                    result: Some(r.result),
                    exit_code: d["exit_code"].as_i64(),
                    error: r.error.clone(),
                }
            })
            .collect())
    }
}

/// How the runbook ended so far: its outcome, category and first error. `failure`: a
/// hook's or the snapshot's; the sources' and dumps' come from the report.
fn verdict(
    report: &RecoverReport,
    failure: &Option<(Category, String)>,
    stopping: bool,
) -> (Outcome, Option<Category>, Option<String>) {
    let interrupted = stopping
        || report
            .sources
            .iter()
            .any(|s| s.result == Some(Outcome::Interrupted));
    let source_failure = report
        .sources
        .iter()
        .find(|s| s.result == Some(Outcome::Failure))
        .map(|s| {
            (
                Category::Other,
                format!(
                    "source {}: {}",
                    s.name,
                    s.error.as_deref().unwrap_or("failed")
                ),
            )
        });
    let dump_failure = report
        .dumps
        .iter()
        .find(|d| d.status == DumpStatus::Failed)
        .map(|d| {
            (
                Category::Other,
                format!(
                    "dump {}: {}",
                    d.path,
                    d.detail.as_deref().unwrap_or("failed")
                ),
            )
        });
    let first = failure.clone().or(source_failure).or(dump_failure);
    if interrupted {
        return (
            Outcome::Interrupted,
            Some(Category::Interrupted),
            first
                .map(|f| f.1)
                .or_else(|| Some("cairn was stopped".into())),
        );
    }
    if let Some((c, e)) = first {
        return (Outcome::Failure, Some(c), Some(e));
    }
    let uncovered: Vec<&str> = report
        .sources
        .iter()
        .filter(|s| s.name == layout::UNCOVERED_PART)
        .flat_map(|s| s.paths.iter().map(|l| l.path.as_str()))
        .collect();
    let skipped: u64 = report.sources.iter().map(|s| s.files_skipped).sum();
    let dumps_left = report
        .dumps
        .iter()
        .filter(|d| d.status == DumpStatus::Skipped)
        .count();
    if skipped > 0 || dumps_left > 0 || !uncovered.is_empty() {
        let mut why = Vec::new();
        if !uncovered.is_empty() {
            why.push(format!(
                "snapshot path(s) in no source of the config not restored: {}",
                uncovered.join(", ")
            ));
        }
        if skipped > 0 {
            why.push(format!(
                "{skipped} existing file(s) left unchanged (pass --overwrite to replace them)"
            ));
        }
        if dumps_left > 0 {
            why.push(format!(
                "{dumps_left} database dump(s) not loaded (pass --load-dumps)"
            ));
        }
        return (Outcome::Warning, None, Some(why.join("; ")));
    }
    (Outcome::Success, None, None)
}
