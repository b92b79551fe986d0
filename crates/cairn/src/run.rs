//! One run of a plan: before hooks -> backup -> after hooks -> retention (forget) ->
//! prune when due -> check when due -> success or failure hooks -> finally hooks, each
//! step recorded in the history, notifications sent, metrics written.
//!
//! Repository work runs as child processes of this same binary (`cairn backup ...`), with
//! the plan's nice/ionice applied by `nice`/`ionice`, its environment (env-file, password)
//! given to the child only, and its output captured for the run's log. A child is stopped
//! with SIGTERM, on which cairn removes its lock files and exits (130/143), so a shutdown
//! never leaves a lock behind.
//!
//! One run per plan at a time: a run holds the plan's lock ([`lock`]) from start to end;
//! a run started meanwhile is refused, recorded as skipped (category `lock`), and `cairn
//! run` exits 11 like restic's "repository is already locked".
//!
//! Hook order: `before` hooks run plan first, then each source; the others run sources
//! first, then the plan (like nested scopes unwinding). A failing `before` hook aborts the
//! run; `failure` and `finally` hooks still run, even during a shutdown (each within its
//! timeout).

pub mod lock;

use crate::config::{CheckPolicy, Config, Event, Ionice, Password, Plan, Repository, When};
use crate::history::{Category, Finish, History, Outcome};
use crate::hooks;
use crate::notify;
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
}

#[derive(Default, Clone)]
pub struct RunFlags {
    /// Prune and check now, whatever their schedules say.
    pub force_prune: bool,
    pub force_check: bool,
    /// The clock (tests inject one); `None` is now.
    pub now: Option<DateTime<Utc>>,
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

struct Log {
    text: String,
    echo: bool,
}

impl Log {
    fn line(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        let stamped = format!("{} {s}\n", chrono::Local::now().format("%H:%M:%S"));
        if self.echo {
            eprint!("{stamped}");
        }
        self.text.push_str(&stamped);
    }
    fn output(&mut self, prefix: &str, out: &str) {
        for l in out.lines() {
            self.line(format!("{prefix}{l}"));
        }
    }
}

/// What a child `cairn` step did.
struct StepResult {
    outcome: Outcome,
    category: Option<Category>,
    error: Option<String>,
    stdout: String,
}

fn ts(t: DateTime<Utc>) -> f64 {
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

/// The failure category of a cairn child from its exit code and error report.
fn classify(code: Option<i32>, kind: Option<&str>, stderr: &str) -> Category {
    match kind {
        Some("network") => return Category::Network,
        Some("auth") | Some("wrong-password") => return Category::Auth,
        Some("locked") => return Category::Lock,
        Some("disk-full") => return Category::DiskFull,
        Some("corrupt") => return Category::CorruptData,
        _ => {}
    }
    match code {
        Some(11) => return Category::Lock,
        Some(12) => return Category::Auth,
        Some(10) => return Category::Config,
        Some(130) | Some(143) | None => return Category::Interrupted,
        _ => {}
    }
    let s = stderr.to_ascii_lowercase();
    if s.contains("permission denied") {
        Category::Permission
    } else if s.contains("no space left") || s.contains("disk is full") {
        Category::DiskFull
    } else if s.contains("does not exist") || s.contains("no such file") {
        Category::SourceMissing
    } else {
        Category::Other
    }
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
    fn now(&self, flags: &RunFlags) -> DateTime<Utc> {
        flags.now.unwrap_or_else(Utc::now)
    }

    /// When a step ends: never before the (possibly injected) clock says it started.
    fn end_ts(&self, flags: &RunFlags) -> f64 {
        ts(self.now(flags).max(Utc::now()))
    }

    /// The command line and environment of a cairn child for `repo`.
    /// Like `command`, with `from` as the source repository of a `copy`: its password
    /// and credentials are given too (the destination's win where they share a name).
    fn command_from(
        &self,
        repo: &Repository,
        from: Option<&Repository>,
        plan: &Plan,
        args: &[String],
    ) -> Result<Command, String> {
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = plan.nice {
            argv.extend(["nice".into(), "-n".into(), n.to_string()]);
        }
        match plan.ionice {
            Some(Ionice::Idle) => argv.extend(["ionice".into(), "-c".into(), "3".into()]),
            Some(Ionice::BestEffort(l)) => argv.extend([
                "ionice".into(),
                "-c".into(),
                "2".into(),
                "-n".into(),
                l.to_string(),
            ]),
            None => {}
        }
        argv.push(self.exe.display().to_string());
        argv.extend(["-r".into(), repo.url.clone()]);
        for (k, v) in &repo.options {
            argv.extend(["-o".into(), format!("{k}={v}")]);
        }
        if let Some(l) = plan.limit_upload.or(repo.limit_upload) {
            argv.extend(["--limit-upload".into(), l.to_string()]);
        }
        if let Some(l) = plan.limit_download.or(repo.limit_download) {
            argv.extend(["--limit-download".into(), l.to_string()]);
        }
        if let Some(c) = &repo.cache_dir {
            argv.extend(["--cache-dir".into(), c.display().to_string()]);
        }
        let mut env: Vec<(String, String)> = Vec::new();
        match &repo.password {
            Password::File(p) => argv.extend(["--password-file".into(), p.display().to_string()]),
            Password::Command(c) => argv.extend(["--password-command".into(), c.clone()]),
            Password::Env(var) => match std::env::var(var) {
                Ok(v) => env.push(("RESTIC_PASSWORD".into(), v)),
                Err(_) => {
                    return Err(format!(
                        "password-env {var} is not set in cairn's environment (set it, e.g. with systemd's EnvironmentFile=)"
                    ))
                }
            },
        }
        argv.extend(["--retry-lock".into(), "5m".into()]);
        argv.extend(args.iter().cloned());
        if let Some(src) = from {
            argv.extend(["--from-repo".into(), src.url.clone()]);
            match &src.password {
                Password::File(p) => {
                    argv.extend(["--from-password-file".into(), p.display().to_string()])
                }
                Password::Command(c) => argv.extend(["--from-password-command".into(), c.clone()]),
                Password::Env(var) => match std::env::var(var) {
                    Ok(v) => env.push(("RESTIC_FROM_PASSWORD".into(), v)),
                    Err(_) => {
                        return Err(format!(
                            "password-env {var} is not set in cairn's environment"
                        ))
                    }
                },
            }
            let mut src_env = Vec::new();
            if let Some(f) = &src.env_file {
                src_env.extend(crate::config::read_env_file(f)?);
            }
            src_env.extend(src.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            env.splice(0..0, src_env);
        }
        if let Some(f) = &repo.env_file {
            env.extend(crate::config::read_env_file(f)?);
        }
        env.extend(repo.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        for v in [
            "RESTIC_REPOSITORY",
            "RESTIC_PASSWORD",
            "RESTIC_PASSWORD_FILE",
            "RESTIC_PASSWORD_COMMAND",
            "CAIRN_PASSWORD",
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
        ] {
            c.env_remove(v);
        }
        c.envs(env).env("CAIRN_REPORT_ERROR_KIND", "1");
        Ok(c)
    }

    /// Runs one cairn child step, recorded as `operation` under `run_id`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        operation: &str,
        args: Vec<String>,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<(StepResult, i64)> {
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            operation,
            ts(self.now(flags)),
        )?;
        log.line(format!("== {operation}"));
        let r = self.exec(repo, plan, &args, log);
        let finish = Finish {
            category: r.category,
            error: r.error.clone(),
            ..Default::default()
        };
        if operation != "backup" {
            self.history
                .finish(id, self.end_ts(flags), r.outcome, &finish)?;
        }
        Ok((r, id))
    }

    fn exec(&self, repo: &Repository, plan: &Plan, args: &[String], log: &mut Log) -> StepResult {
        self.exec_from(repo, None, plan, args, log)
    }

    fn exec_from(
        &self,
        repo: &Repository,
        from: Option<&Repository>,
        plan: &Plan,
        args: &[String],
        log: &mut Log,
    ) -> StepResult {
        let fail = |category, error: String| StepResult {
            outcome: Outcome::Failure,
            category: Some(category),
            error: Some(error),
            stdout: String::new(),
        };
        if self.stop.load(Ordering::Relaxed) {
            return StepResult {
                outcome: Outcome::Interrupted,
                category: Some(Category::Interrupted),
                error: Some("cairn is shutting down".into()),
                stdout: String::new(),
            };
        }
        let mut cmd = match self.command_from(repo, from, plan, args) {
            Ok(c) => c,
            Err(e) => return fail(Category::Config, e),
        };
        let mut child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    Category::Other,
                    format!("cannot start {}: {e}", self.exe.display()),
                )
            }
        };
        if let Ok(mut c) = self.child.lock() {
            *c = Some(child.id());
        }
        let stderr = child.stderr.take();
        let echo = self.echo;
        let err_thread = std::thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(e) = stderr {
                for l in BufReader::new(e).lines().map_while(Result::ok) {
                    if echo && !l.starts_with("cairn-error-kind:") {
                        eprintln!("  {l}");
                    }
                    lines.push(l);
                }
            }
            lines
        });
        let mut stdout = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        let status = child.wait();
        if let Ok(mut c) = self.child.lock() {
            *c = None;
        }
        let err_lines = err_thread.join().unwrap_or_default();
        let kind = err_lines
            .iter()
            .find_map(|l| l.strip_prefix("cairn-error-kind: "))
            .map(str::to_string);
        let err_text: Vec<&String> = err_lines
            .iter()
            .filter(|l| !l.starts_with("cairn-error-kind:"))
            .collect();
        for l in &err_text {
            log.text.push_str(&format!("  {l}\n"));
        }
        let shown_stdout = stdout
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        if !shown_stdout.is_empty() {
            for l in shown_stdout.lines() {
                log.text.push_str(&format!("  {l}\n"));
                if self.echo {
                    eprintln!("  {l}");
                }
            }
        }
        let code = match status {
            Ok(s) => s.code(),
            Err(e) => return fail(Category::Other, format!("waiting for cairn: {e}")),
        };
        let last_error = err_text
            .iter()
            .rev()
            .find(|l| l.starts_with("Fatal:") || l.starts_with("error") || l.starts_with("Warning"))
            .or(err_text.last())
            .map(|l| l.trim_start_matches("Fatal: ").to_string());
        match code {
            Some(0) => StepResult {
                outcome: Outcome::Success,
                category: None,
                error: None,
                stdout,
            },
            Some(3) => StepResult {
                outcome: Outcome::Warning,
                category: Some(Category::Permission),
                error: last_error,
                stdout,
            },
            _ => {
                let category = classify(
                    code,
                    kind.as_deref(),
                    &err_text
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                StepResult {
                    outcome: if category == Category::Interrupted {
                        Outcome::Interrupted
                    } else {
                        Outcome::Failure
                    },
                    category: Some(category),
                    error: Some(last_error.unwrap_or_else(|| match code {
                        Some(c) => format!("cairn exited with status {c}"),
                        None => "cairn was killed by a signal".into(),
                    })),
                    stdout,
                }
            }
        }
    }

    /// Runs every hook of one kind; returns the first failure.
    fn hooks(
        &self,
        plan: &Plan,
        kind: &str,
        env: &[(String, String)],
        log: &mut Log,
        stoppable: bool,
    ) -> Option<String> {
        let never = AtomicBool::new(false);
        let stop: &AtomicBool = if stoppable { &self.stop } else { &never };
        let mut scopes: Vec<&(String, crate::config::Hooks)> = plan.hooks.iter().collect();
        if kind != "before" {
            scopes.reverse();
        }
        // Every repository's password variable: a hook is no place for a password.
        let hide: Vec<String> = self
            .config
            .repositories
            .values()
            .filter_map(|r| match &r.password {
                Password::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect();
        let mut first_error = None;
        for (scope, h) in scopes {
            let cmds = match kind {
                "before" => &h.before,
                "after" => &h.after,
                "success" => &h.success,
                "failure" => &h.failure,
                _ => &h.finally,
            };
            for cmd in cmds {
                log.line(format!("== {kind} hook ({scope}): {cmd}"));
                let mut env = env.to_vec();
                env.push(("CAIRN_HOOK".into(), kind.into()));
                if let Some(src) = scope.strip_prefix("source ") {
                    env.push(("CAIRN_SOURCE".into(), src.into()));
                }
                let o = hooks::run(cmd, &env, &hide, h.timeout, stop);
                log.output("  ", &o.output);
                if !o.ok {
                    let e = o.error.as_deref().unwrap_or("failed");
                    log.line(format!("   {kind} hook failed: {e}"));
                    if first_error.is_none() {
                        first_error = Some(format!("{kind} hook ({scope}) `{cmd}` {e}"));
                    }
                    if kind == "before" {
                        return first_error;
                    }
                }
            }
        }
        first_error
    }

    /// Restores `n` random files of the plan's latest snapshot into the state directory,
    /// verified, and compares their sizes with the snapshot's; removes them after.
    fn restore_test(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        n: u32,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<(Category, String)>> {
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            "restore-test",
            ts(self.now(flags)),
        )?;
        log.line(format!("== restore test ({n} files)"));
        let tag = plan_tag(&plan.name);
        let listed = self.exec(
            repo,
            plan,
            &[
                "ls".into(),
                "latest".into(),
                "--tag".into(),
                tag.clone(),
                "--json".into(),
            ],
            log,
        );
        let mut result = None;
        if !listed.outcome.ok() {
            result = Some((
                listed.category.unwrap_or(Category::Other),
                format!(
                    "restore test: listing the latest snapshot: {}",
                    listed.error.unwrap_or_default()
                ),
            ));
        }
        let mut files: Vec<(String, u64)> = listed
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["struct_type"] == "node" && v["type"] == "file")
            .filter_map(|v| {
                Some((
                    v["path"].as_str()?.to_string(),
                    v["size"].as_u64().unwrap_or(0),
                ))
            })
            .filter(|(p, _)| !p.contains(['*', '?', '[', '\\']))
            .collect();
        // A different sample each time (xorshift seeded by the clock).
        let mut x = (Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64) | 1;
        let mut sample = Vec::new();
        while !files.is_empty() && sample.len() < n as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sample.push(files.swap_remove((x % files.len() as u64) as usize));
        }
        // 0700 above the target: the restored files keep their recorded modes.
        let scratch = self.config.settings.state_dir.join("restore-test");
        if result.is_none() && !sample.is_empty() {
            if let Err(e) = crate::sources::private_dir(&scratch) {
                result = Some((Category::Permission, format!("restore test: {e:#}")));
            }
        }
        if result.is_none() && !sample.is_empty() {
            let target = scratch.join(&plan.name);
            let _ = std::fs::remove_dir_all(&target);
            let mut args: Vec<String> = vec![
                "restore".into(),
                "latest".into(),
                "--tag".into(),
                tag,
                "--verify".into(),
                "--target".into(),
                target.display().to_string(),
            ];
            for (p, _) in &sample {
                args.extend(["--include".into(), p.clone()]);
            }
            let r = self.exec(repo, plan, &args, log);
            if !r.outcome.ok() || r.outcome == Outcome::Warning {
                result = Some((
                    r.category.unwrap_or(Category::CorruptData),
                    format!("restore test: {}", r.error.unwrap_or_default()),
                ));
            } else {
                let bad: Vec<String> = sample
                    .iter()
                    .filter(|(p, size)| {
                        std::fs::metadata(target.join(p.trim_start_matches('/')))
                            .map(|m| m.len())
                            .ok()
                            != Some(*size)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                if bad.is_empty() {
                    log.line(format!(
                        "restore test: {} file(s) restored and verified",
                        sample.len()
                    ));
                } else {
                    result = Some((
                        Category::CorruptData,
                        format!(
                            "restore test: {} file(s) did not come back intact: {}",
                            bad.len(),
                            bad.join(", ")
                        ),
                    ));
                }
            }
            let _ = std::fs::remove_dir_all(&target);
        } else if result.is_none() {
            log.line("restore test: the latest snapshot has no files");
        }
        let (outcome, finish) = match &result {
            None => (
                Outcome::Success,
                Finish {
                    files_processed: Some(sample.len() as u64),
                    ..Default::default()
                },
            ),
            Some((c, e)) => (
                Outcome::Failure,
                Finish {
                    category: Some(*c),
                    error: Some(e.clone()),
                    ..Default::default()
                },
            ),
        };
        self.history
            .finish(id, self.end_ts(flags), outcome, &finish)?;
        Ok(result)
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

        if let Some(e) = self.hooks(plan, "before", &env, &mut log, true) {
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
            let mut args: Vec<String> = vec![
                "backup".into(),
                "--json".into(),
                "--tag".into(),
                plan_tag(&plan.name),
            ];
            for snap in &fs_snaps {
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
            for (path, cmd) in &plan.dumps {
                args.push(format!("--from-command={}={cmd}", path.display()));
            }
            for (db, copy) in &copies {
                args.push(format!("--source-map={}={}", db.display(), copy.display()));
                for suffix in ["-wal", "-shm", "-journal"] {
                    args.push(format!("--exclude={}{suffix}", db.display()));
                }
            }
            for t in &plan.tags {
                args.extend(["--tag".into(), t.clone()]);
            }
            args.extend(["--host".into(), host.clone()]);
            args.extend(plan.filter.args());
            args.push("--".into());
            args.extend(plan.paths.iter().map(|p| p.display().to_string()));
            let (r, id) = self.step(run_id, plan, repo, "backup", args, &mut log, flags)?;
            // The summary line, read once: for the history and for the log.
            if let Some(summary) = r
                .stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            {
                let n = |k: &str| summary.get(k).and_then(|v| v.as_u64());
                backup.files_processed = n("total_files_processed");
                backup.bytes_processed = n("total_bytes_processed");
                backup.files_added = n("files_new").map(|f| f + n("files_changed").unwrap_or(0));
                backup.bytes_added = n("data_added");
                backup.snapshot_id = summary
                    .get("snapshot_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                let n = |k: &str| n(k).unwrap_or(0);
                log.line(format!(
                    "backup: {} files ({} new, {} changed, {} unmodified), {} processed, {} read, {} added",
                    n("total_files_processed"),
                    n("files_new"),
                    n("files_changed"),
                    n("files_unmodified"),
                    crate::units::format_bytes(n("total_bytes_processed")),
                    crate::units::format_bytes(n("bytes_read")),
                    crate::units::format_bytes(n("data_added"))
                ));
            }
            backup.category = r.category;
            backup.error = r.error.clone();
            self.history
                .finish(id, self.end_ts(flags), r.outcome, &backup)?;
            match r.outcome {
                Outcome::Success => {}
                Outcome::Warning => warning = r.error.clone(),
                _ => {
                    failure = Some((
                        r.category.unwrap_or(Category::Other),
                        r.error.unwrap_or_default(),
                    ))
                }
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
            if let Some(e) = self.hooks(plan, "after", &env, &mut log, true) {
                failure.get_or_insert((Category::HookFailed, e));
            }
        }
        if failure.is_none() {
            if let Some(ret) = &plan.retention {
                let mut args = vec!["forget".into(), "--tag".into(), plan_tag(&plan.name)];
                args.extend(ret.args());
                let (r, _) = self.step(run_id, plan, repo, "forget", args, &mut log, flags)?;
                if !r.outcome.ok() {
                    failure = Some((
                        r.category.unwrap_or(Category::Other),
                        r.error.unwrap_or_default(),
                    ));
                }
            }
        }
        if failure.is_none() {
            if let Some(when) = &plan.prune {
                let last = self
                    .history
                    .last_ok_on_repository(&repo.name, "prune")?
                    .map(|r| r.started);
                if flags.force_prune || due(when, last, self.now(flags)) {
                    let (r, _) = self.step(
                        run_id,
                        plan,
                        repo,
                        "prune",
                        vec!["prune".into()],
                        &mut log,
                        flags,
                    )?;
                    if !r.outcome.ok() {
                        failure = Some((
                            r.category.unwrap_or(Category::Other),
                            r.error.unwrap_or_default(),
                        ));
                    }
                } else {
                    log.line("prune not due");
                }
            }
        }
        if failure.is_none() {
            if let Some(CheckPolicy { when, read_data }) = &plan.check {
                let last = self
                    .history
                    .last_ok_on_repository(&repo.name, "check")?
                    .map(|r| r.started);
                if flags.force_check || due(when, last, self.now(flags)) {
                    let mut args = vec!["check".to_string()];
                    match read_data.as_deref() {
                        Some("all") => args.push("--read-data".into()),
                        Some(s) => args.push(format!("--read-data-subset={s}")),
                        None => {}
                    }
                    let (r, _) = self.step(run_id, plan, repo, "check", args, &mut log, flags)?;
                    if !r.outcome.ok() {
                        failure = Some((
                            r.category.unwrap_or(Category::Other),
                            r.error.unwrap_or_default(),
                        ));
                    }
                } else {
                    log.line("check not due");
                }
            }
        }
        for dest in &plan.copy_to {
            if failure.is_some() {
                break;
            }
            let Some(dest_repo) = self.config.repositories.get(dest) else {
                continue;
            };
            let id = self.history.start(
                Some(run_id),
                &plan.name,
                &dest_repo.name,
                "copy",
                ts(self.now(flags)),
            )?;
            log.line(format!("== copy to {dest}"));
            let r = self.exec_from(
                dest_repo,
                Some(repo),
                plan,
                &["copy".into(), "--tag".into(), plan_tag(&plan.name)],
                &mut log,
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
            if !r.outcome.ok() {
                failure = Some((
                    r.category.unwrap_or(Category::Other),
                    format!("copy to {dest}: {}", r.error.unwrap_or_default()),
                ));
            }
        }
        if failure.is_none() {
            if let Some(rt) = &plan.restore_test {
                let last = self
                    .history
                    .last_ok(&plan.name, "restore-test")?
                    .map(|r| r.started);
                if due(&rt.when, last, self.now(flags)) {
                    if let Some(e) =
                        self.restore_test(run_id, plan, repo, rt.files, &mut log, flags)?
                    {
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
        if let Some(e) = self.hooks(plan, kind, &env, &mut log, false) {
            failure.get_or_insert((Category::HookFailed, e));
        }
        if let Some(e) = self.hooks(plan, "finally", &env, &mut log, false) {
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

    #[test]
    fn failures_are_categorised() {
        assert_eq!(classify(Some(1), Some("network"), ""), Category::Network);
        assert_eq!(classify(Some(12), None, ""), Category::Auth);
        assert_eq!(classify(Some(11), None, ""), Category::Lock);
        assert_eq!(classify(None, None, ""), Category::Interrupted);
        assert_eq!(
            classify(Some(1), None, "open /x: Permission denied"),
            Category::Permission
        );
        assert_eq!(classify(Some(1), Some("disk-full"), ""), Category::DiskFull);
    }
}
