//! The repository steps of a run, each a cairn child: backup, forget (retention), prune
//! and check when due, copy to other repositories. Each returns its failure, if any, as
//! `(category, message)`; [`super::Runner::run`] decides what runs next.

use super::child::{StepCtx, StepResult};
use super::{check_policy, due, plan_tag, ts, Log, Only, Report, RunFlags, Runner};
use crate::config::{CheckPolicy, Plan, Repository};
use crate::history::{Category, Finish, Outcome};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Files a restore test picks when the plan has no policy (the config's default).
const RESTORE_TEST_FILES: u32 = 20;

/// A step's failure, as the run records it.
pub(super) type Failure = (Category, String);

pub(super) fn failure_of(r: StepResult) -> Option<Failure> {
    (!r.outcome.ok()).then(|| {
        (
            r.category.unwrap_or(Category::Other),
            r.error.unwrap_or_default(),
        )
    })
}

impl Runner<'_> {
    /// The backup itself: the plan's paths (through filesystem snapshots and database
    /// copies), its tags' date placeholders filled in for the run's start `started`, its
    /// figures into `backup`. Returns the child's result.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backup(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        host: &str,
        started: chrono::DateTime<chrono::Utc>,
        fs_snaps: &[crate::sources::FsSnapshot],
        copies: &[(PathBuf, PathBuf)],
        backup: &mut Finish,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<StepResult> {
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--tag".into(),
            plan_tag(&plan.name),
        ];
        for snap in fs_snaps {
            args.push(format!(
                "--source-map={}={}",
                snap.recorded.display(),
                snap.actual.display()
            ));
            if snap.kind == crate::sources::SnapshotKind::Btrfs {
                args.push(format!(
                    "--exclude={}/{}",
                    snap.recorded.display(),
                    crate::sources::BTRFS_DIR
                ));
            }
        }
        for d in &plan.dumps {
            args.push(format!("--from-command={}={}", d.path.display(), d.command));
        }
        for (db, copy) in copies {
            args.push(format!("--source-map={}={}", db.display(), copy.display()));
            for suffix in ["-wal", "-shm", "-journal"] {
                args.push(format!("--exclude={}{suffix}", db.display()));
            }
        }
        // Date placeholders (`%Y-%m`) at the run's start, local time. `config check`
        // refused unknown ones; one that slipped through is kept as written.
        let local = started.with_timezone(&chrono::Local);
        for t in &plan.tags {
            let tag = crate::config::expand_tag(t, &local).unwrap_or_else(|_| t.clone());
            args.extend(["--tag".into(), tag]);
        }
        args.extend(["--host".into(), host.to_string()]);
        args.extend(plan.filter.args());
        args.push("--".into());
        args.extend(plan.paths.iter().map(|p| p.display().to_string()));
        let (r, id) = self.step(run_id, plan, repo, "backup", args, log, flags)?;
        // The summary message: for the history and for the log.
        if let Some(s) = &r.summary {
            backup.files_processed = s.total_files_processed;
            backup.bytes_processed = s.total_bytes_processed;
            backup.files_added = s.files_new.map(|f| f + s.files_changed.unwrap_or(0));
            backup.bytes_added = s.data_added;
            backup.snapshot_id = s.snapshot_id.clone();
            let n = |v: Option<u64>| v.unwrap_or(0);
            log.line(format!(
                "backup: {} files ({} new, {} changed, {} unmodified), {} processed, {} read, {} added",
                n(s.total_files_processed),
                n(s.files_new),
                n(s.files_changed),
                n(s.files_unmodified),
                crate::units::format_bytes(n(s.total_bytes_processed)),
                crate::units::format_bytes(n(s.bytes_read)),
                crate::units::format_bytes(n(s.data_added))
            ));
        }
        backup.category = r.category;
        backup.error = r.error.clone();
        self.history
            .finish(id, self.end_ts(flags), r.outcome, backup)?;
        self.finished(
            &StepCtx {
                plan: &plan.name,
                run_id,
                step: "backup",
            },
            &r,
        );
        Ok(r)
    }

    /// Retention: forget the plan's snapshots its policy does not keep.
    pub(super) fn forget(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<Failure>> {
        let Some(ret) = &plan.retention else {
            return Ok(None);
        };
        let mut args = vec!["forget".into(), "--tag".into(), plan_tag(&plan.name)];
        args.extend(ret.args());
        let (r, _) = self.step(run_id, plan, repo, "forget", args, log, flags)?;
        Ok(failure_of(r))
    }

    /// Prune, when due on the repository (or forced).
    pub(super) fn prune(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<Failure>> {
        let forced = flags.force_prune || flags.only == Some(Only::Prune);
        let due = match &plan.prune {
            _ if forced => true,
            None => return Ok(None),
            Some(when) => {
                let last = self
                    .history
                    .last_ok_on_repository(&repo.name, "prune")?
                    .map(|r| r.started);
                due(when, last, self.now(flags))
            }
        };
        if !due {
            log.line("prune not due");
            return Ok(None);
        }
        let (r, _) = self.step(
            run_id,
            plan,
            repo,
            "prune",
            vec!["prune".into()],
            log,
            flags,
        )?;
        Ok(failure_of(r))
    }

    /// Check, when one of the plan's policies is due (or forced): the strongest due policy
    /// runs once, for all those due ([`check_policy::choose`]); a rotating one reads its
    /// next group and moves on only once the check succeeded. The history row's detail
    /// says which policy ran, what it read and which policies it stands for.
    pub(super) fn check(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<Failure>> {
        let forced = flags.force_check || flags.only == Some(Only::Check);
        let state = &self.config.settings.state_dir;
        let (policy, satisfies): (Option<&CheckPolicy>, Vec<&str>) = if plan.checks.is_empty() {
            if !forced {
                return Ok(None);
            }
            (None, Vec::new())
        } else {
            let rows = self.history.all_ok_on_repository(&repo.name, "check")?;
            let last = check_policy::last_runs(&rows, &plan.name, &plan.checks);
            match check_policy::choose(&plan.checks, &last, self.now(flags), forced) {
                Some(c) => (
                    Some(&plan.checks[c.run]),
                    c.satisfies
                        .iter()
                        .map(|&i| plan.checks[i].id.as_str())
                        .collect(),
                ),
                None => {
                    log.line("check not due");
                    return Ok(None);
                }
            }
        };
        let group = policy.and_then(|p| check_policy::next_group(state, &plan.name, p));
        let read_data = match group {
            Some((k, t)) => Some(format!("{k}/{t}")),
            None => policy.and_then(|p| p.read_data.clone()),
        };
        if let Some(p) = policy {
            log.line(format!(
                "check policy {}: {}{}",
                p.id,
                match (&read_data, group) {
                    (None, _) => "structure only".to_string(),
                    (Some(r), _) if r == "all" => "reading all data".to_string(),
                    (Some(r), Some(_)) => format!("reading group {r} (rotating)"),
                    (Some(r), None) => format!("reading {r} of the data"),
                },
                match satisfies
                    .iter()
                    .filter(|id| **id != p.id)
                    .collect::<Vec<_>>()
                {
                    others if others.is_empty() => String::new(),
                    others => format!(
                        "; also stands for {}",
                        others
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            ));
        }
        let mut args = vec!["check".to_string()];
        match read_data.as_deref() {
            Some("all") => args.push("--read-data".into()),
            Some(s) => args.extend(["--read-data-subset".into(), s.to_string()]),
            None => {}
        }
        let (r, id) = self.step(run_id, plan, repo, "check", args, log, flags)?;
        let packs_read = r
            .summary
            .as_ref()
            .and_then(|s| s.other.get("packs_read"))
            .and_then(|v| v.as_u64());
        let detail = serde_json::json!({
            "policy": policy.map(|p| p.id.as_str()),
            "read_data": read_data,
            "group": group.map(|(k, t)| format!("{k}/{t}")),
            "satisfies": satisfies,
            "packs_read": packs_read,
        });
        self.history.set_detail(id, &detail)?;
        if let (Some(p), Some(g), true) = (policy, group, r.outcome.ok()) {
            if let Err(e) = check_policy::advance(state, &plan.name, &p.id, g) {
                log.line(format!("warning: {e:#}"));
            }
        }
        Ok(failure_of(r))
    }

    /// Copies the plan's snapshots from `repo` to `dest` (recorded on `dest`).
    pub(super) fn copy(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        dest: &Repository,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<Failure>> {
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &dest.name,
            "copy",
            ts(self.now(flags)),
        )?;
        log.line(format!("== copy to {}", dest.name));
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: "copy",
        };
        self.event(&ctx, super::protocol::Message::StepStarted);
        let r = self.exec_from(
            dest,
            Some(repo),
            plan,
            &["copy".into(), "--tag".into(), plan_tag(&plan.name)],
            log,
            &ctx,
        );
        self.history.finish(
            id,
            self.end_ts(flags),
            r.outcome,
            &Finish {
                category: r.category,
                error: r.error.clone(),
                ..Default::default()
            },
        )?;
        self.finished(&ctx, &r);
        Ok(failure_of(r).map(|(c, e)| (c, format!("copy to {}: {e}", dest.name))))
    }
}

impl Runner<'_> {
    /// One step of the plan on its own, now (`cairn run --only`, a trigger from the web
    /// UI): no backup, no hooks, no notifications; recorded as a run with that one step.
    pub(super) fn run_only(
        &self,
        plan: &Plan,
        repo: &Repository,
        only: Only,
        run_id: i64,
        flags: &RunFlags,
        started: Instant,
    ) -> Result<Report> {
        let mut log = Log {
            text: String::new(),
            echo: self.echo,
        };
        log.line(format!(
            "cairn run {} --only {} on repository {}",
            plan.name,
            only.as_str(),
            repo.name
        ));
        let failure = match only {
            Only::Check => self.check(run_id, plan, repo, &mut log, flags)?,
            Only::Prune => self.prune(run_id, plan, repo, &mut log, flags)?,
            Only::RestoreTest => {
                let policy = plan
                    .restore_test
                    .clone()
                    .unwrap_or_else(|| super::restore_test::sample_policy(RESTORE_TEST_FILES));
                self.restore_test(run_id, plan, repo, &policy, &mut log, flags)?
            }
        };
        let interrupted = self.stop.load(Ordering::Relaxed)
            || failure
                .as_ref()
                .is_some_and(|f| f.0 == Category::Interrupted);
        let outcome = match &failure {
            _ if interrupted => Outcome::Interrupted,
            Some(_) => Outcome::Failure,
            None => Outcome::Success,
        };
        let (category, error) = match failure {
            Some((c, e)) => (Some(c), Some(e)),
            None => (None, None),
        };
        match &error {
            Some(e) => log.line(format!(
                "run {}: {e} ({})",
                outcome.as_str(),
                category.map_or("other", |c| c.as_str())
            )),
            None => log.line(format!(
                "run {} in {:.1}s",
                outcome.as_str(),
                started.elapsed().as_secs_f64()
            )),
        }
        let finish = Finish {
            category,
            error: error.clone(),
            log: Some(log.text.clone()),
            ..Default::default()
        };
        self.history
            .finish(run_id, self.end_ts(flags), outcome, &finish)?;
        self.write_metrics();
        Ok(Report {
            run_id,
            outcome,
            category,
            error,
            backup: Finish::default(),
            duration: started.elapsed(),
            log: log.text,
        })
    }
}

/// Whether a finished step's outcome counts as a warning of the run.
pub(super) fn warning_of(r: &StepResult) -> Option<String> {
    (r.outcome == Outcome::Warning).then(|| r.error.clone().unwrap_or_default())
}
