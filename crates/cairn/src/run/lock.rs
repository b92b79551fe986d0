//! One run of a plan at a time, on this machine.
//!
//! A run holds `STATE_DIR/locks/PLAN.lock`: an exclusive `flock` on the file, which also
//! holds who took it (pid, host, start time, plan — like restic's lock files). A second
//! run of the plan (a manual `cairn run` beside the daemon or a timer) is refused and told
//! who holds it. The kernel drops the `flock` when its holder dies however it dies, so a
//! lock left by a killed run is taken over by the next one without asking; the file
//! itself is never removed (removing a locked file lets two runs lock two files).
//!
//! The descriptor is close-on-exec: hooks and their background children never inherit
//! the lock and cannot keep it after the run.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Who holds a plan's lock, as written in the lock file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    /// When the run started (RFC 3339).
    pub time: String,
    pub hostname: String,
    pub pid: u32,
    pub plan: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == 0 {
            return write!(f, "another cairn (just starting)");
        }
        write!(
            f,
            "pid {} on host {}, running since {}",
            self.pid, self.hostname, self.time
        )
    }
}

/// A held plan lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct PlanLock {
    file: Flock<File>,
}

impl Drop for PlanLock {
    fn drop(&mut self) {
        // Empty, so nobody reads a finished run as the holder; the flock goes with the fd.
        let _ = self.file.set_len(0);
    }
}

/// The lock file of `plan` under `state_dir`.
pub fn path(state_dir: &Path, plan: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{plan}.lock"))
}

/// Takes `plan`'s lock, or says who holds it.
pub fn try_lock(state_dir: &Path, plan: &str) -> Result<std::result::Result<PlanLock, Holder>> {
    let dir = state_dir.join("locks");
    crate::sources::private_dir(&dir)?;
    let path = path(state_dir, plan);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the plan lock {}", path.display()))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(f) => f,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            return Ok(Err(read_holder(&mut file, plan)));
        }
        Err((_, e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    };
    let me = Holder {
        time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        hostname: crate::run::hostname(),
        pid: std::process::id(),
        plan: plan.to_string(),
    };
    let text = serde_json::to_vec(&me)?;
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(&text))
        .and_then(|_| file.sync_data())
        .with_context(|| format!("cannot write the plan lock {}", path.display()))?;
    Ok(Ok(PlanLock { file }))
}

/// The holder written in a lock file; its holder may be between locking and writing, so
/// an empty file is read again for a moment.
fn read_holder(file: &mut File, plan: &str) -> Holder {
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(h) = serde_json::from_str::<Holder>(&text) {
                return h;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Holder {
        plan: plan.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_taken_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path(), "db").unwrap().unwrap();
        let holder = try_lock(dir.path(), "db").unwrap().unwrap_err();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.plan, "db");
        assert_eq!(holder.hostname, crate::run::hostname());
        // Another plan, even one whose name starts alike, is independent.
        let other = try_lock(dir.path(), "db-2").unwrap().unwrap();
        drop(held);
        let again = try_lock(dir.path(), "db").unwrap().unwrap();
        drop((again, other));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path().join("locks")), 0o700);
        assert_eq!(mode(path(dir.path(), "db")), 0o600);
    }

    #[test]
    fn a_lock_file_left_by_a_dead_run_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        let stale = Holder {
            time: "2020-01-01T00:00:00+00:00".into(),
            hostname: crate::run::hostname(),
            pid: 999_999,
            plan: "db".into(),
        };
        std::fs::write(path(dir.path(), "db"), serde_json::to_vec(&stale).unwrap()).unwrap();
        let _lock = try_lock(dir.path(), "db").unwrap().unwrap();
        let text = std::fs::read_to_string(path(dir.path(), "db")).unwrap();
        let now: Holder = serde_json::from_str(&text).unwrap();
        assert_eq!(now.pid, std::process::id());
    }
}
