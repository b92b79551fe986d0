//! Running one repository step as a child `cairn`: its command line and environment, its
//! human output into the run's log, and its protocol messages ([`super::protocol`]) read
//! from a FIFO, passed on live to [`Runner::progress`] and used to decide how it ended.
//!
//! This module must not decide anything about the plan: which steps run is
//! [`super::Runner::run`]'s business.

use super::protocol::{self, ExitError, Message, ProgressEvent, Summary};
use super::{ts, Log, RunFlags, Runner};
use crate::config::{secrets, Ionice, Password, Plan, Repository};
use crate::history::{Category, Finish, Outcome};
use anyhow::Result;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a child `cairn` step did.
pub(super) struct StepResult {
    pub outcome: Outcome,
    pub category: Option<Category>,
    pub error: Option<String>,
    pub stdout: String,
    /// The child's `summary` message, when it sent one.
    pub summary: Option<Summary>,
}

/// Which step of which run a child belongs to, for progress events.
#[derive(Clone)]
pub(super) struct StepCtx<'a> {
    pub plan: &'a str,
    pub run_id: i64,
    pub step: &'a str,
}

/// The failure category of a child: its `exit_error` message decides; without one (it
/// was killed, or died before it could say), the exit code.
pub(super) fn classify(code: Option<i32>, error: Option<&ExitError>) -> Category {
    if let Some(e) = error {
        return e.category;
    }
    match code {
        Some(11) => Category::Lock,
        Some(12) => Category::Auth,
        Some(10) => Category::Config,
        Some(130) | Some(143) | None => Category::Interrupted,
        _ => Category::Other,
    }
}

/// The protocol channel of one child: a FIFO in the state directory, held open for
/// writing by us too so the reader sees end-of-file only once we let go (after the child
/// exited), even if the child never opened it.
struct Channel {
    path: PathBuf,
    reader: std::thread::JoinHandle<(Option<Summary>, Option<ExitError>)>,
    writer: std::fs::File,
}

static CHANNELS: AtomicU64 = AtomicU64::new(0);

impl Channel {
    fn open(dir: &Path, ctx: &StepCtx, progress: Option<protocol::ProgressFn>) -> Result<Channel> {
        use std::os::unix::fs::OpenOptionsExt;
        crate::sources::private_dir(dir)?;
        sweep(dir);
        let path = dir.join(format!(
            "{}-{}.fifo",
            std::process::id(),
            CHANNELS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(
            &path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )?;
        // Non-blocking so opening does not wait for a writer; blocking again for reading.
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)?;
        let writer = std::fs::OpenOptions::new().write(true).open(&path)?;
        {
            use std::os::fd::AsRawFd;
            nix::fcntl::fcntl(
                read.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
            )?;
        }
        let (plan, run_id, step) = (ctx.plan.to_string(), ctx.run_id, ctx.step.to_string());
        let reader = std::thread::spawn(move || {
            let mut summary = None;
            let mut error = None;
            for line in BufReader::new(read).lines().map_while(Result::ok) {
                // A line that is no message is dropped: the channel carries nothing else.
                let Ok(msg) = serde_json::from_str::<Message>(&line) else {
                    continue;
                };
                match &msg {
                    Message::Summary(s) => summary = Some(s.clone()),
                    Message::ExitError(e) => error = Some(e.clone()),
                    _ => {}
                }
                if let Some(p) = &progress {
                    p(ProgressEvent {
                        plan: plan.clone(),
                        run_id,
                        step: step.clone(),
                        message: msg,
                    });
                }
            }
            (summary, error)
        });
        Ok(Channel {
            path,
            reader,
            writer,
        })
    }

    /// After the child exited: every message it sent.
    fn finish(self) -> (Option<Summary>, Option<ExitError>) {
        drop(self.writer);
        let got = self.reader.join().unwrap_or_default();
        let _ = std::fs::remove_file(&self.path);
        got
    }
}

/// Removes the channels of runners that are gone (killed before they could clean up):
/// a channel's name starts with its runner's pid.
fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".fifo"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Runner<'_> {
    pub(super) fn event(&self, ctx: &StepCtx, message: Message) {
        if let Some(p) = &self.progress {
            p(ProgressEvent {
                plan: ctx.plan.to_string(),
                run_id: ctx.run_id,
                step: ctx.step.to_string(),
                message,
            });
        }
    }

    /// The command line and environment of a cairn child for `repo`, with `from` as the
    /// source repository of a `copy`: its password and credentials are given too (the
    /// destination's win where they share a name).
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
            // The credential is a file like any password file: its path, never its content,
            // goes on the child's command line.
            Password::Credential(n) => {
                let p = secrets::credential_path("password-credential", n)
                    .map_err(|e| format!("repository {}: {e}", repo.name))?;
                argv.extend(["--password-file".into(), p.display().to_string()])
            }
        }
        // Where the flags above come from, for the child's hints (names, never secrets).
        use crate::ops::repos::{Origin, Role};
        env.extend(
            Origin::of(repo)
                .env_vars(Role::Repo)
                .map(|(k, v)| (k.to_string(), v)),
        );
        argv.extend(["--retry-lock".into(), "5m".into()]);
        argv.extend(args.iter().cloned());
        if let Some(src) = from {
            env.extend(
                Origin::of(src)
                    .env_vars(Role::From)
                    .map(|(k, v)| (k.to_string(), v)),
            );
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
                Password::Credential(n) => {
                    let p = secrets::credential_path("password-credential", n)
                        .map_err(|e| format!("repository {}: {e}", src.name))?;
                    argv.extend(["--from-password-file".into(), p.display().to_string()])
                }
            }
            let src_env = secrets::repository_env(src).map_err(|e| {
                format!(
                    "repository {}: {e}: {}",
                    src.name,
                    crate::ops::repos::env_hint(src)
                )
            })?;
            env.splice(0..0, src_env);
        }
        // env-file, env-credential, env-command, env: into the child's environment only.
        env.extend(secrets::repository_env(repo).map_err(|e| {
            format!(
                "repository {}: {e}: {}",
                repo.name,
                crate::ops::repos::env_hint(repo)
            )
        })?);
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
            protocol::ENV_PROTOCOL,
            protocol::ENV_PATH,
            crate::ops::repos::ENV_ORIGIN,
            crate::ops::repos::ENV_ORIGIN_FILE,
            crate::ops::repos::ENV_FROM_ORIGIN,
            crate::ops::repos::ENV_FROM_ORIGIN_FILE,
        ] {
            c.env_remove(v);
        }
        c.envs(env);
        Ok(c)
    }

    /// Runs one cairn child step, recorded as `operation` under `run_id` (a backup's
    /// row is finished by the caller, with its figures).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step(
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
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: operation,
        };
        self.event(&ctx, Message::StepStarted);
        let r = self.exec_from(repo, None, plan, &args, log, &ctx);
        if operation != "backup" {
            let finish = Finish {
                category: r.category,
                error: r.error.clone(),
                ..Default::default()
            };
            self.history
                .finish(id, self.end_ts(flags), r.outcome, &finish)?;
            self.finished(&ctx, &r);
        }
        Ok((r, id))
    }

    /// Tells the progress callback how a step ended.
    pub(super) fn finished(&self, ctx: &StepCtx, r: &StepResult) {
        self.event(
            ctx,
            Message::StepFinished(protocol::StepFinished {
                outcome: r.outcome,
                category: r.category,
                error: r.error.clone(),
            }),
        );
    }

    /// Runs a cairn child for `repo` (with `from` as a copy's source), its output into
    /// `log`, its protocol messages to the progress callback.
    pub(super) fn exec_from(
        &self,
        repo: &Repository,
        from: Option<&Repository>,
        plan: &Plan,
        args: &[String],
        log: &mut Log,
        ctx: &StepCtx,
    ) -> StepResult {
        let fail = |category, error: String| StepResult {
            outcome: Outcome::Failure,
            category: Some(category),
            error: Some(error),
            stdout: String::new(),
            summary: None,
        };
        if self.stop.load(Ordering::Relaxed) {
            return StepResult {
                outcome: Outcome::Interrupted,
                category: Some(Category::Interrupted),
                error: Some("cairn is shutting down".into()),
                stdout: String::new(),
                summary: None,
            };
        }
        let mut cmd = match self.command_from(repo, from, plan, args) {
            Ok(c) => c,
            Err(e) => return fail(Category::Config, e),
        };
        let dir = self.config.settings.state_dir.join("protocol");
        let channel = match Channel::open(&dir, ctx, self.progress.clone()) {
            Ok(ch) => {
                cmd.env(protocol::ENV_PROTOCOL, "1")
                    .env(protocol::ENV_PATH, &ch.path);
                Some(ch)
            }
            Err(e) => {
                // Still run the step: it ends classified by its exit code alone.
                log.line(format!(
                    "warning: no protocol channel in {}: {e:#}",
                    dir.display()
                ));
                None
            }
        };
        let mut child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                if let Some(ch) = channel {
                    ch.finish();
                }
                return fail(
                    Category::Other,
                    format!("cannot start {}: {e}", self.exe.display()),
                );
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
                    if echo {
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
        let (summary, exit_error) = channel.map(Channel::finish).unwrap_or_default();
        let err_lines = err_thread.join().unwrap_or_default();
        for l in &err_lines {
            log.text.push_str(&format!("  {l}\n"));
        }
        if let Some(hint) = exit_error.as_ref().and_then(|e| e.hint.as_deref()) {
            log.line(format!("   hint: {hint}"));
        }
        for l in stdout.lines().filter(|l| !l.starts_with('{')) {
            log.text.push_str(&format!("  {l}\n"));
            if self.echo {
                eprintln!("  {l}");
            }
        }
        let code = match status {
            Ok(s) => s.code(),
            Err(e) => return fail(Category::Other, format!("waiting for cairn: {e}")),
        };
        // The message a person reads: the child's own, else its last words on stderr.
        let last_error = exit_error.as_ref().map(|e| e.message.clone()).or_else(|| {
            err_lines
                .iter()
                .rev()
                .find(|l| {
                    l.starts_with("Fatal:") || l.starts_with("error") || l.starts_with("Warning")
                })
                .or(err_lines.last())
                .map(|l| l.trim_start_matches("Fatal: ").to_string())
        });
        match code {
            Some(0) => StepResult {
                outcome: Outcome::Success,
                category: None,
                error: None,
                stdout,
                summary,
            },
            Some(3) => StepResult {
                outcome: Outcome::Warning,
                category: Some(exit_error.map_or(Category::Permission, |e| e.category)),
                error: last_error,
                stdout,
                summary,
            },
            _ => {
                let category = classify(code, exit_error.as_ref());
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
                    summary,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_error_decides_then_the_exit_code() {
        let e = |category| ExitError {
            code: 1,
            category,
            // Wording that a scraper would have read as three other categories.
            message: "Fatal: permission denied; no such file; no space left on device".into(),
            hint: None,
        };
        assert_eq!(
            classify(Some(1), Some(&e(Category::Network))),
            Category::Network
        );
        assert_eq!(classify(Some(1), Some(&e(Category::Lock))), Category::Lock);
        assert_eq!(classify(Some(12), None), Category::Auth);
        assert_eq!(classify(Some(11), None), Category::Lock);
        assert_eq!(classify(Some(10), None), Category::Config);
        assert_eq!(classify(None, None), Category::Interrupted);
        assert_eq!(classify(Some(143), None), Category::Interrupted);
        // No message and a plain failure: no guessing from stderr any more.
        assert_eq!(classify(Some(1), None), Category::Other);
    }

    #[test]
    fn a_channel_hands_every_message_to_the_callback_and_ends_after_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let progress: protocol::ProgressFn = std::sync::Arc::new(move |e: ProgressEvent| {
            sink.lock().unwrap().push(e);
        });
        let ctx = StepCtx {
            plan: "p",
            run_id: 7,
            step: "backup",
        };
        let ch = Channel::open(&dir.path().join("protocol"), &ctx, Some(progress)).unwrap();
        {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new()
                .append(true)
                .open(&ch.path)
                .unwrap();
            let status = Message::Status(protocol::status_of(
                std::time::Duration::from_secs(1),
                (1, 2),
                (3, 4),
                0,
            ));
            let err = Message::ExitError(ExitError {
                code: 12,
                category: Category::Auth,
                message: "m".into(),
                hint: None,
            });
            for m in [&status, &err] {
                writeln!(w, "{}", serde_json::to_string(m).unwrap()).unwrap();
            }
            writeln!(w, "not a message").unwrap();
        }
        let path = ch.path.clone();
        let (summary, error) = ch.finish();
        assert!(summary.is_none());
        assert_eq!(error.unwrap().category, Category::Auth);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0].message, Message::Status(_)));
        assert_eq!((got[1].run_id, got[1].step.as_str()), (7, "backup"));
        assert!(!path.exists(), "the FIFO is removed");
    }

    #[test]
    fn channels_of_dead_runners_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that is surely not running: beyond the kernel's maximum.
        let dead = dir.path().join("2147483646-3.fifo");
        let live = dir.path().join(format!("{}-9.fifo", std::process::id()));
        let other = dir.path().join("notes.txt");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"").unwrap();
        }
        sweep(dir.path());
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }
}
