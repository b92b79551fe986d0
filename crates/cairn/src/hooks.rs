//! Hook commands: shell commands a plan or source runs around its backup.
//!
//! Each runs as `sh -c COMMAND` in its own process group, with stdin closed, the plan's
//! environment (`CAIRN_PLAN`, `CAIRN_RESULT`, ...), and stdout and stderr captured
//! together in order for the run's log. A command that outlives its timeout is killed
//! with its whole process group (a `sleep` it started included), so a hung hook cannot
//! hang a nightly run.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a hook command ended.
#[derive(Debug)]
pub struct HookOutcome {
    pub ok: bool,
    /// Its output (stdout and stderr interleaved), at most the last 64 KiB.
    pub output: String,
    /// What went wrong, for the log and `CAIRN_ERROR`.
    pub error: Option<String>,
}

const MAX_OUTPUT: usize = 64 * 1024;

/// Runs one hook command; `stop` cuts it short (a shutdown).
pub fn run(
    cmd: &str,
    env: &[(String, String)],
    timeout: Duration,
    stop: &AtomicBool,
) -> HookOutcome {
    let fail = |e: String| HookOutcome {
        ok: false,
        output: String::new(),
        error: Some(e),
    };
    let (mut reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(format!("cannot create a pipe: {e}")),
    };
    let mut child = match Command::new("sh")
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
    // Read in a thread: a chatty hook must not block on a full pipe while we wait.
    let collector = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * MAX_OUTPUT {
                        buf.drain(..buf.len() - MAX_OUTPUT);
                    }
                }
            }
        }
        buf
    });
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
            let _ = child.wait();
            break Err("stopped: cairn is shutting down".to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The group is gone or finished; anything it left running holds the pipe: kill it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let mut out = collector.join().unwrap_or_default();
    if out.len() > MAX_OUTPUT {
        out.drain(..out.len() - MAX_OUTPUT);
    }
    let output = String::from_utf8_lossy(&out).into_owned();
    match status {
        Ok(s) if s.success() => HookOutcome {
            ok: true,
            output,
            error: None,
        },
        Ok(s) => HookOutcome {
            ok: false,
            output,
            error: Some(match s.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".to_string(),
            }),
        },
        Err(e) => HookOutcome {
            ok: false,
            output,
            error: Some(e),
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
            timeout,
            &AtomicBool::new(false),
        )
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
