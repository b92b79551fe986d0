//! One run of a plan: before hooks -> backup -> after hooks -> retention (forget) ->
//! prune when due -> check when due -> success or failure hooks -> finally hooks, each
//! step recorded in the history, notifications sent, metrics written.
//!
//! Repository work runs as child processes of this same binary (`cairn backup ...`), with
//! the plan's nice/ionice applied by `nice`/`ionice`, its environment (env-file, password)
//! given to the child only, and its output captured for the run's log. How a child ended
//! (and how far it is while it works) comes from its typed messages ([`protocol`]), handed
//! live to [`Runner::progress`]; never from the wording of its output. A child is stopped
//! with SIGTERM, on which cairn removes its lock files and exits (130/143), so a shutdown
//! never leaves a lock behind.
//!
//! Files: [`child`] starts a child and reads its messages, [`steps`] has the repository
//! steps (backup, forget, prune, check, copy, `--only`), [`hooks`] the hooks,
//! [`restore_test`] the restore test; this file orders them.
//!
//! One run per plan at a time: a run holds the plan's lock ([`lock`]) from start to end;
//! a run started meanwhile is refused, recorded as skipped (category `lock`), and `cairn
//! run` exits 11 like restic's "repository is already locked".
//!
//! Hook order: `before` hooks run plan first, then each source; the others run sources
//! first, then the plan (like nested scopes unwinding). A failing `before` hook aborts the
//! run; `failure` and `finally` hooks still run, even during a shutdown (each within its
//! timeout).

pub mod check_policy;
mod child;
mod hooks;
pub mod lock;
pub mod protocol;
pub mod recover;
mod restore_test;
mod steps;

use crate::config::{Config, Event, Plan, Repository, When};
use crate::history::{Category, Finish, History, Outcome};
use crate::notify;
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tag cairn puts on a plan's snapshots; retention only ever looks at these.
pub fn plan_tag(plan: &str) -> String {
    format!("plan:{plan}")
}

pub struct Runner<'a> {
    pub config: &'a Config,
    pub history: &'a History,
    /// This binary, to run repository steps as children.
    pub exe: PathBuf,
    /// Set to stop: the running child gets SIGTERM and no new step starts.
    pub stop: Arc<AtomicBool>,
    /// The running child's pid, for whoever needs to stop it.
    pub child: Arc<Mutex<Option<u32>>>,
    /// Print the log to stderr as it is written.
    pub echo: bool,
    /// Called with each step's live messages (status, summary, error, started,
    /// finished), e.g. for the web UI's live view.
    pub progress: Option<protocol::ProgressFn>,
}

#[derive(Default, Clone)]
pub struct RunFlags {
    /// Prune and check now, whatever their schedules say.
    pub force_prune: bool,
    pub force_check: bool,
    /// The clock (tests inject one); `None` is now.
    pub now: Option<DateTime<Utc>>,
    /// Run only this step, now, whatever its schedule (or the plan's lack of one): no
    /// backup, no hooks, no notifications.
    pub only: Option<Only>,
}

/// A step of a plan that can run on its own (`cairn run --only`, the web UI's triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Only {
    Check,
    Prune,
    RestoreTest,
}

impl Only {
    pub fn as_str(self) -> &'static str {
        match self {
            Only::Check => "check",
            Only::Prune => "prune",
            Only::RestoreTest => "restore-test",
        }
    }

    pub fn parse(s: &str) -> Option<Only> {
        [Only::Check, Only::Prune, Only::RestoreTest]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

#[derive(Debug)]
pub struct Report {
    pub run_id: i64,
    pub outcome: Outcome,
    pub category: Option<Category>,
    pub error: Option<String>,
    pub backup: Finish,
    pub duration: Duration,
    pub log: String,
}

pub(crate) struct Log {
    pub(crate) text: String,
    echo: bool,
}

impl Log {
    pub(crate) fn line(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        let stamped = format!("{} {s}\n", chrono::Local::now().format("%H:%M:%S"));
        if self.echo {
            eprint!("{stamped}");
        }
        self.text.push_str(&stamped);
    }
    pub(crate) fn output(&mut self, prefix: &str, out: &str) {
        for l in out.lines() {
            self.line(format!("{prefix}{l}"));
        }
    }
}

pub(crate) fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// This machine's name, for snapshots and messages.
pub fn hostname() -> String {
    Some(cairn_repo::backup::hostname())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a plan is overdue: no successful backup (started at `last_ok`, Unix seconds)
/// within `max_age` of `now`.
pub fn overdue(max_age: Duration, last_ok: Option<f64>, now: f64) -> bool {
    last_ok.is_none_or(|t| now - t > max_age.as_secs_f64())
}

/// Once `stop` is set, sends SIGTERM to the cairn children `pids` lists: each removes its
/// lock and exits. (Under systemd's KillMode=mixed only we get the SIGTERM.)
pub fn forward_stop(stop: Arc<AtomicBool>, pids: impl Fn() -> Vec<u32> + Send + 'static) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    });
}

/// When `when` says a step is due, given its last success.
pub fn due(when: &When, last_ok: Option<f64>, now: DateTime<Utc>) -> bool {
    match when {
        When::Always => true,
        When::Schedule(s) => {
            match last_ok.and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0)) {
                None => true,
                Some(last) => s
                    .next_after(&last.with_timezone(&chrono::Local))
                    .is_some_and(|n| n.with_timezone(&Utc) <= now),
            }
        }
    }
}

impl Runner<'_> {
    pub(crate) fn now(&self, flags: &RunFlags) -> DateTime<Utc> {
        flags.now.unwrap_or_else(Utc::now)
    }

    /// When a step ends: never before the (possibly injected) clock says it started.
    pub(crate) fn end_ts(&self, flags: &RunFlags) -> f64 {
        ts(self.now(flags).max(Utc::now()))
    }

    /// Rewrites the metrics textfile, if configured.
    fn write_metrics(&self) {
        if let Some(tf) = &self.config.settings.metrics_textfile {
            match crate::metrics::render(self.config, self.history, ts(Utc::now())) {
                Ok(text) => {
                    if let Err(e) = crate::metrics::write_textfile(tf, &text) {
                        eprintln!("warning: metrics textfile: {e:#}");
                    }
                }
                Err(e) => eprintln!("warning: metrics: {e:#}"),
            }
        }
    }

    /// A run refused because another run of the plan holds its lock: recorded as
    /// skipped, category `lock`.
    fn refused(
        &self,
        plan: &Plan,
        repo: &Repository,
        holder: &lock::Holder,
        flags: &RunFlags,
        started: Instant,
    ) -> Result<Report> {
        let error = format!(
            "plan {} is already running ({holder}); this run was skipped. If no such run exists, check {}",
            plan.name,
            lock::path(&self.config.settings.state_dir, &plan.name).display()
        );
        let mut log = Log {
            text: String::new(),
            echo: self.echo,
        };
        log.line(format!("cairn run {}: {error}", plan.name));
        let run_id =
            self.history
                .start(None, &plan.name, &repo.name, "run", ts(self.now(flags)))?;
        let finish = Finish {
            category: Some(Category::Lock),
            error: Some(error.clone()),
            log: Some(log.text.clone()),
            ..Default::default()
        };
        self.history
            .finish(run_id, self.end_ts(flags), Outcome::Skipped, &finish)?;
        Ok(Report {
            run_id,
            outcome: Outcome::Skipped,
            category: Some(Category::Lock),
            error: Some(error),
            backup: Finish::default(),
            duration: started.elapsed(),
            log: log.text,
        })
    }

    /// Runs the plan once.
    pub fn run(&self, plan: &Plan, flags: &RunFlags) -> Result<Report> {
        let repo = self
            .config
            .repositories
            .get(&plan.repository)
            .ok_or_else(|| {
                anyhow::anyhow!("plan {}: unknown repository {}", plan.name, plan.repository)
            })?;
        let started = Instant::now();
        let t0 = self.now(flags);
        let held = match lock::try_lock(&self.config.settings.state_dir, &plan.name)? {
            Ok(l) => l,
            Err(holder) => return self.refused(plan, repo, &holder, flags, started),
        };
        let host = plan.host.clone().unwrap_or_else(hostname);
        let run_id = self
            .history
            .start(None, &plan.name, &repo.name, "run", ts(t0))?;
        if let Some(only) = flags.only {
            return self.run_only(plan, repo, only, run_id, flags, started);
        }
        let mut log = Log {
            text: String::new(),
            echo: self.echo,
        };
        log.line(format!(
            "cairn run {}: {} path(s) into repository {}",
            plan.name,
            plan.paths.len(),
            repo.name
        ));
        let message = |event: &str,
                       outcome: Option<Outcome>,
                       category: Option<Category>,
                       error: &Option<String>,
                       b: &Finish,
                       log: &str| notify::Message {
            plan: plan.name.clone(),
            host: host.clone(),
            event: event.into(),
            result: outcome.map(|o| o.as_str().to_string()),
            error_category: category.map(|c| c.as_str().to_string()),
            error: error.clone(),
            snapshot_id: b.snapshot_id.clone(),
            duration_seconds: outcome.map(|_| started.elapsed().as_secs_f64()),
            bytes_added: b.bytes_added,
            files_processed: b.files_processed,
            time: Utc::now().to_rfc3339(),
            log_tail: log.to_string(),
        };
        for p in notify::send(
            &plan.notify,
            Event::Start,
            &message("start", None, None, &None, &Finish::default(), ""),
        ) {
            log.line(format!("notification failed: {p}"));
        }
        let mut env: Vec<(String, String)> = vec![
            ("CAIRN_PLAN".into(), plan.name.clone()),
            ("CAIRN_REPOSITORY".into(), repo.name.clone()),
            ("CAIRN_HOST".into(), host.clone()),
        ];
        let mut failure: Option<(Category, String)> = None;
        let mut warning: Option<String> = None;
        let mut backup = Finish::default();

        if let Some(e) = self.hooks(run_id, plan, "before", &env, &mut log, true, flags) {
            failure = Some((Category::HookFailed, e));
        }
        if failure.is_none() {
            let missing: Vec<String> = plan
                .paths
                .iter()
                .filter(|p| std::fs::symlink_metadata(p).is_err())
                .map(|p| p.display().to_string())
                .collect();
            if !missing.is_empty() {
                failure = Some((Category::SourceMissing, format!("source path(s) missing: {} (is the service installed and its disk mounted?)", missing.join(", "))));
            }
        }
        let mut fs_snaps: Vec<crate::sources::FsSnapshot> = Vec::new();
        if failure.is_none() && !plan.snapshots.is_empty() {
            for (path, kind) in &plan.snapshots {
                match crate::sources::sweep(*kind, path, &plan.name, &held) {
                    Ok(removed) => {
                        for r in removed {
                            log.line(format!("removed snapshot {r} left by an interrupted run"));
                        }
                    }
                    Err(e) => {
                        failure = Some((Category::SourceMissing, format!("{e:#}")));
                        break;
                    }
                }
                if fs_snaps.iter().any(|s| path.starts_with(&s.recorded)) {
                    continue;
                }
                match crate::sources::snapshot(
                    *kind,
                    path,
                    &plan.name,
                    &self.config.settings.state_dir.join("work").join(&plan.name),
                ) {
                    Ok(snap) => {
                        log.line(format!(
                            "== snapshot of {}: {}",
                            snap.recorded.display(),
                            snap.actual.display()
                        ));
                        fs_snaps.push(snap);
                    }
                    Err(e) => {
                        failure = Some((
                            Category::Other,
                            format!("snapshot of {}: {e:#}", path.display()),
                        ));
                        break;
                    }
                }
            }
        }
        // SQLite copies get their own directory: LVM snapshots are mounted beside it.
        let work = self
            .config
            .settings
            .state_dir
            .join("work")
            .join(&plan.name)
            .join("sqlite");
        let mut copies = Vec::new();
        if failure.is_none() && !plan.sqlite.is_empty() {
            log.line(format!(
                "== sqlite: consistent copies of {} database(s)",
                plan.sqlite.len()
            ));
            match crate::sources::sqlite_copies(&plan.sqlite, &work) {
                Ok(c) => copies = c,
                Err(e) => {
                    let category = if plan.sqlite.iter().any(|d| !d.exists()) {
                        Category::SourceMissing
                    } else {
                        Category::Other
                    };
                    failure = Some((category, format!("{e:#}")));
                }
            }
        }
        let mut backup_ran = false;
        if failure.is_none() {
            backup_ran = true;
            let r = self.backup(
                run_id,
                plan,
                repo,
                &host,
                t0,
                &fs_snaps,
                &copies,
                &mut backup,
                &mut log,
                flags,
            )?;
            warning = steps::warning_of(&r);
            if let Some(f) = steps::failure_of(r) {
                failure = Some(f);
            }
            if let Some(id) = &backup.snapshot_id {
                log.line(format!("snapshot {} saved", &id[..id.len().min(8)]));
                env.push(("CAIRN_SNAPSHOT_ID".into(), id.clone()));
            }
        }
        if !copies.is_empty() {
            let _ = std::fs::remove_dir_all(&work);
        }
        for snap in &fs_snaps {
            match crate::sources::delete(snap) {
                Ok(()) => log.line(format!("deleted snapshot {}", snap.actual.display())),
                Err(e) => {
                    log.line(format!(
                        "could not delete snapshot {}: {e:#}",
                        snap.actual.display()
                    ));
                    failure.get_or_insert((
                        Category::Other,
                        format!(
                            "could not delete snapshot {}: {e:#} (the next run retries)",
                            snap.actual.display()
                        ),
                    ));
                }
            }
        }
        if backup_ran {
            if let Some(e) = self.hooks(run_id, plan, "after", &env, &mut log, true, flags) {
                failure.get_or_insert((Category::HookFailed, e));
            }
        }
        if failure.is_none() {
            failure = self.forget(run_id, plan, repo, &mut log, flags)?;
        }
        if failure.is_none() {
            failure = self.prune(run_id, plan, repo, &mut log, flags)?;
        }
        if failure.is_none() {
            failure = self.check(run_id, plan, repo, &mut log, flags)?;
        }
        for dest in &plan.copy_to {
            if failure.is_some() {
                break;
            }
            let Some(dest_repo) = self.config.repositories.get(dest) else {
                continue;
            };
            failure = self.copy(run_id, plan, repo, dest_repo, &mut log, flags)?;
        }
        if failure.is_none() {
            if let Some(rt) = &plan.restore_test {
                let last = self
                    .history
                    .last_ok(&plan.name, "restore-test")?
                    .map(|r| r.started);
                if due(&rt.when, last, self.now(flags)) {
                    if let Some(e) = self.restore_test(run_id, plan, repo, rt, &mut log, flags)? {
                        failure = Some(e);
                    }
                } else {
                    log.line("restore test not due");
                }
            }
        }
        let interrupted = self.stop.load(Ordering::Relaxed)
            || failure
                .as_ref()
                .is_some_and(|f| f.0 == Category::Interrupted);
        let outcome = match (&failure, &warning) {
            _ if interrupted => Outcome::Interrupted,
            (Some(_), _) => Outcome::Failure,
            (None, Some(_)) => Outcome::Warning,
            (None, None) => Outcome::Success,
        };
        env.push(("CAIRN_RESULT".into(), outcome.as_str().into()));
        if let Some((cat, err)) = &failure {
            env.push(("CAIRN_ERROR".into(), err.clone()));
            env.push(("CAIRN_ERROR_CATEGORY".into(), cat.as_str().into()));
        }
        let kind = if outcome.ok() { "success" } else { "failure" };
        if let Some(e) = self.hooks(run_id, plan, kind, &env, &mut log, false, flags) {
            failure.get_or_insert((Category::HookFailed, e));
        }
        if let Some(e) = self.hooks(run_id, plan, "finally", &env, &mut log, false, flags) {
            failure.get_or_insert((Category::HookFailed, e));
        }
        // A success or finally hook that failed turns a success into a failure.
        let outcome = if outcome.ok() && failure.is_some() {
            Outcome::Failure
        } else {
            outcome
        };
        let (category, error) = match &failure {
            Some((c, e)) => (Some(*c), Some(e.clone())),
            None => (None, warning.clone()),
        };
        match &error {
            Some(e) if !outcome.ok() => log.line(format!(
                "run {}: {} ({})",
                outcome.as_str(),
                e,
                category.map(|c| c.as_str()).unwrap_or("other")
            )),
            _ => log.line(format!(
                "run {} in {:.1}s",
                outcome.as_str(),
                started.elapsed().as_secs_f64()
            )),
        }
        let event = if outcome.ok() {
            Event::Success
        } else {
            Event::Failure
        };
        for p in notify::send(
            &plan.notify,
            event,
            &message(kind, Some(outcome), category, &error, &backup, &log.text),
        ) {
            log.line(format!("notification failed: {p}"));
        }
        let run_finish = Finish {
            category,
            error: error.clone(),
            log: Some(log.text.clone()),
            ..backup.clone()
        };
        self.history
            .finish(run_id, self.end_ts(flags), outcome, &run_finish)?;
        self.write_metrics();
        Ok(Report {
            run_id,
            outcome,
            category,
            error,
            backup,
            duration: started.elapsed(),
            log: log.text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn prune_and_check_come_due_by_their_schedule() {
        let weekly = When::Schedule(Schedule::parse("weekly").unwrap());
        assert!(due(&weekly, None, t("2026-11-28T03:00:00Z")));
        assert!(due(&When::Always, Some(0.0), t("2026-11-28T03:00:00Z")));
        // Last pruned on Monday 2026-11-23 12:00 UTC: due again from the next Monday.
        let last = t("2026-11-23T12:00:00Z").timestamp() as f64;
        let local_next = Schedule::parse("weekly")
            .unwrap()
            .next_after(&t("2026-11-23T12:00:00Z").with_timezone(&chrono::Local))
            .unwrap();
        assert!(!due(
            &weekly,
            Some(last),
            local_next.with_timezone(&Utc) - chrono::Duration::minutes(1)
        ));
        assert!(due(&weekly, Some(last), local_next.with_timezone(&Utc)));
    }
}
