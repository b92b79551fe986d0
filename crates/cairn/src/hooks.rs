//! Hook commands: shell commands a plan or source runs around its backup.
//!
//! Each runs as `sh -c COMMAND` in its own process group, with stdin closed, the plan's
//! environment (`CAIRN_PLAN`, `CAIRN_RESULT`, ...), and stdout and stderr captured
//! together in order for the run's log. A command that outlives its timeout is killed
//! with its whole process group (a `sleep` it started included), so a hung hook cannot
//! hang a nightly run.
//!
//! Secrets stay out of hooks: the repository passwords cairn reads from its environment
//! (`RESTIC_PASSWORD`, `CAIRN_PASSWORD`, every repository's `password-env` variable, ...)
//! and the cloud keys its backends read are removed from the hook's environment.
//!
//! Shutdown is bounded: on a stop the hook's process group gets SIGTERM, then after
//! [`GRACE`] SIGKILL, so a hook that ignores SIGTERM cannot hold cairn up; its output is
//! waited for only briefly (a child that left the group may keep the pipe open).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stopped hook has between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// Secret variables cairn or its backends read from its own environment; never given to
/// a hook (besides the repositories' `password-env` variables, which the caller names).
pub const SECRET_VARS: &[&str] = &[
    "RESTIC_PASSWORD",
    "CAIRN_PASSWORD",
    "RESTIC_FROM_PASSWORD",
    "CAIRN_FROM_PASSWORD",
    "RESTIC_NEW_PASSWORD",
    "CAIRN_NEW_PASSWORD",
    "RESTIC_REST_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "B2_ACCOUNT_KEY",
];

/// How a hook command ended.
#[derive(Debug)]
pub struct HookOutcome {
    pub ok: bool,
    /// Its output (stdout and stderr interleaved), at most the last 64 KiB.
    pub output: String,
    /// What went wrong, for the log and `CAIRN_ERROR`.
    pub error: Option<String>,
    /// Its exit status; `None` when it did not start or was killed.
    pub code: Option<i32>,
}

const MAX_OUTPUT: usize = 64 * 1024;

/// Runs one hook command with `env` added to cairn's environment, less [`SECRET_VARS`]
/// and the variables named in `hide`; `stop` cuts it short (a shutdown).
pub fn run(
    cmd: &str,
    env: &[(String, String)],
    hide: &[String],
    timeout: Duration,
    stop: &AtomicBool,
) -> HookOutcome {
    let fail = |e: String| HookOutcome {
        ok: false,
        output: String::new(),
        error: Some(e),
        code: None,
    };
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let mut command = Command::new("sh");
    for var in SECRET_VARS
        .iter()
        .copied()
        .chain(hide.iter().map(String::as_str))
    {
        command.env_remove(var);
    }
    let mut child = match command
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start `sh -c {cmd}`: {e}")),
    };
    // The command holds our copies of the pipe's write end: closed now, so the output
    // ends when the hook's processes are gone (else every hook waited the 1 s below).
    drop(command);
    // Read in a thread: a chatty hook must not block on a full pipe while we wait.
    let collected = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let collected = collected.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut buf) = collected.lock() {
                            buf.extend_from_slice(&chunk[..n]);
                            if buf.len() > 2 * MAX_OUTPUT {
                                let cut = buf.len() - MAX_OUTPUT;
                                buf.drain(..cut);
                            }
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
    }
    let start = Instant::now();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for the hook: {e}")),
        }
        if start.elapsed() >= timeout {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break Err(format!(
                "timed out after {} and was killed",
                crate::config::format_duration(timeout)
            ));
        }
        if stop.load(Ordering::Relaxed) {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let grace_end = Instant::now() + GRACE;
            let ended = loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break true,
                    Ok(None) if Instant::now() >= grace_end => break false,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            if !ended {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                break Err(format!(
                    "stopped: cairn is shutting down; killed after ignoring SIGTERM for {}",
                    crate::config::format_duration(GRACE)
                ));
            }
            break Err("stopped: cairn is shutting down".to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The group is gone or finished; anything it left running holds the pipe: kill it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    // A process that left the group may still hold the pipe: wait for the output briefly.
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
    let mut out = collected.lock().map(|b| b.clone()).unwrap_or_default();
    if out.len() > MAX_OUTPUT {
        out.drain(..out.len() - MAX_OUTPUT);
    }
    let output = String::from_utf8_lossy(&out).into_owned();
    match status {
        Ok(s) if s.success() => HookOutcome {
            ok: true,
            output,
            error: None,
            code: s.code(),
        },
        Ok(s) => HookOutcome {
            ok: false,
            output,
            error: Some(match s.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".to_string(),
            }),
            code: s.code(),
        },
        Err(e) => HookOutcome {
            ok: false,
            output,
            error: Some(e),
            code: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(cmd: &str, timeout: Duration) -> HookOutcome {
        run(
            cmd,
            &[("CAIRN_PLAN".into(), "nightly".into())],
            &[],
            timeout,
            &AtomicBool::new(false),
        )
    }

    #[test]
    fn a_hook_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::Relaxed);
            });
        }
        let start = Instant::now();
        let o = run(
            "trap '' TERM; echo started; sleep 60 & sleep 60",
            &[],
            &[],
            Duration::from_secs(600),
            &stop,
        );
        let took = start.elapsed();
        assert!(!o.ok);
        assert!(o.error.unwrap().contains("killed after ignoring SIGTERM"));
        assert!(
            took >= GRACE && took < GRACE + Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[test]
    fn a_background_child_that_left_the_group_does_not_hold_cairn() {
        let start = Instant::now();
        let o = go("setsid sleep 30 & echo done", Duration::from_secs(20));
        assert!(o.ok, "{o:?}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn output_environment_and_status() {
        let o = go(
            "echo out; echo err >&2; echo plan=$CAIRN_PLAN",
            Duration::from_secs(5),
        );
        assert!(o.ok, "{o:?}");
        assert_eq!(o.output, "out\nerr\nplan=nightly\n");
        let o = go("echo failing; exit 7", Duration::from_secs(5));
        assert!(!o.ok);
        assert_eq!(o.error.as_deref(), Some("exited with status 7"));
        assert_eq!(o.output, "failing\n");
    }

    #[test]
    fn a_hung_hook_and_its_children_are_killed_at_the_timeout() {
        let start = Instant::now();
        let o = go(
            "echo started; sleep 30 & sleep 30",
            Duration::from_millis(300),
        );
        assert!(!o.ok);
        assert!(o.error.unwrap().contains("timed out"));
        assert_eq!(o.output, "started\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
