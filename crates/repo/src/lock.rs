//! Repository locks, compatible with restic's lock files (`locks/<id>`, encrypted JSON).
//!
//! Shared locks (backup, restore, check) coexist; an exclusive lock (prune, forget) needs
//! the repository to itself. A lock is stale when older than 30 minutes, or when it was
//! made on this host by a process that no longer exists; stale locks are ignored. Held
//! locks are refreshed every 5 minutes and removed when the guard is dropped.

use crate::backend::{Backend, FileType};
use crate::error::{Error, Kind, Result};
use crate::id::Id;
use crate::repository::Repository;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A lock file's content, with restic's field names.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Lock {
    #[serde(with = "crate::gotime::serde_go")]
    pub time: DateTime<FixedOffset>,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

impl Lock {
    fn new(exclusive: bool) -> Lock {
        Lock {
            time: chrono::Local::now().fixed_offset(),
            exclusive,
            hostname: crate::backup::hostname(),
            username: nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
            pid: std::process::id() as i64,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    /// True if the lock no longer protects anything (too old, or its process is gone).
    pub fn is_stale(&self) -> bool {
        let age = chrono::Local::now().signed_duration_since(self.time);
        if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
            return true;
        }
        if self.hostname != crate::backup::hostname() {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return true;
        };
        // Signal 0 checks existence; EPERM means it exists but is someone else's.
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => false,
            Err(nix::errno::Errno::EPERM) => false,
            Err(_) => true,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock by PID {} on {} by {} (UID {}, GID {}), created {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.pid,
            self.hostname,
            self.username,
            self.uid,
            self.gid,
            self.time.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

/// A held lock; dropping it removes the lock file.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    current: Arc<Mutex<Id>>,
    stop: Arc<AtomicBool>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

/// Every lock in the repository with its id (unreadable ones are skipped: restic does too).
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, Lock)>> {
    let mut out = Vec::new();
    for id in repo.list_ids(FileType::Lock)? {
        if let Ok(l) = repo.load_json::<Lock>(FileType::Lock, &id) {
            out.push((id, l));
        }
    }
    Ok(out)
}

fn conflict(repo: &Repository, exclusive: bool, own: Option<&Id>) -> Result<Option<Lock>> {
    for (id, l) in list_locks(repo)? {
        if Some(&id) == own || l.is_stale() {
            continue;
        }
        if exclusive || l.exclusive {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

fn locked_error(other: &Lock) -> Error {
    Error::new(
        Kind::Locked,
        format!(
            "repository is already locked: {}. If that process is gone, run `cairn unlock` (or `restic unlock`)",
            other.describe()
        ),
    )
}

/// Takes a shared or exclusive lock, failing with `Kind::Locked` on a conflict.
pub fn lock(repo: &Repository, exclusive: bool) -> Result<LockGuard> {
    if let Some(other) = conflict(repo, exclusive, None)? {
        return Err(locked_error(&other));
    }
    let id = repo.save_json(FileType::Lock, &Lock::new(exclusive))?;
    // Someone may have locked between our check and our write: check again.
    if let Some(other) = conflict(repo, exclusive, Some(&id))? {
        let _ = repo.backend().remove(FileType::Lock, &id.to_hex());
        return Err(locked_error(&other));
    }
    let current = Arc::new(Mutex::new(id));
    let stop = Arc::new(AtomicBool::new(false));
    let refresher = {
        let current = current.clone();
        let stop = stop.clone();
        let repo = repo.clone();
        std::thread::Builder::new()
            .name("lock-refresh".into())
            .spawn(move || {
                let tick = Duration::from_millis(100);
                let mut since = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // Parked, not asleep: `stop_refresh` unparks it, so releasing the
                    // lock does not wait out the tick (≈50 ms at the end of every
                    // command, 3% of a no-change backup).
                    std::thread::park_timeout(tick);
                    if stop.load(Ordering::Relaxed) || since.elapsed() < REFRESH_EVERY {
                        continue;
                    }
                    since = std::time::Instant::now();
                    if let Ok(new_id) = repo.save_json(FileType::Lock, &Lock::new(exclusive)) {
                        if let Ok(mut cur) = current.lock() {
                            // Released meanwhile (e.g. by a signal): drop the new file.
                            if stop.load(Ordering::Relaxed) {
                                let _ = repo.backend().remove(FileType::Lock, &new_id.to_hex());
                                break;
                            }
                            let old = std::mem::replace(&mut *cur, new_id);
                            let _ = repo.backend().remove(FileType::Lock, &old.to_hex());
                        }
                    }
                }
            })
            .ok()
    };
    if let Ok(mut held) = HELD.lock() {
        held.push((repo.backend().clone(), current.clone(), stop.clone()));
    }
    Ok(LockGuard {
        backend: repo.backend().clone(),
        current,
        stop,
        refresher,
    })
}

/// Every lock this process holds, so a signal handler can remove them before exiting.
type Held = (Arc<dyn Backend>, Arc<Mutex<Id>>, Arc<AtomicBool>);
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn forget_held(current: &Arc<Mutex<Id>>) {
    if let Ok(mut held) = HELD.lock() {
        held.retain(|(_, c, _)| !Arc::ptr_eq(c, current));
    }
}

/// Removes every lock file this process holds (for Ctrl-C and SIGTERM: the process
/// exits right after, without running destructors). Returns how many were removed.
pub fn release_all_held() -> usize {
    let held = match HELD.lock() {
        Ok(mut h) => std::mem::take(&mut *h),
        Err(_) => return 0,
    };
    let mut n = 0;
    for (backend, current, stop) in held {
        stop.store(true, Ordering::Relaxed);
        if let Ok(id) = current.lock() {
            if backend.remove(FileType::Lock, &id.to_hex()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

impl LockGuard {
    /// Releases the lock now (also done on drop).
    pub fn release(mut self) -> Result<()> {
        self.stop_refresh();
        forget_held(&self.current);
        let id = *self
            .current
            .lock()
            .map_err(|_| Error::new(Kind::Io, "lock state poisoned"))?;
        self.backend.remove(FileType::Lock, &id.to_hex())
    }

    fn stop_refresh(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop_refresh();
        forget_held(&self.current);
        if let Ok(id) = self.current.lock() {
            let _ = self.backend.remove(FileType::Lock, &id.to_hex());
        }
    }
}

/// Removes stale locks (or all locks with `all`); returns how many were removed.
pub fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    let mut n = 0;
    for (id, l) in list_locks(repo)? {
        if all || l.is_stale() {
            repo.backend().remove(FileType::Lock, &id.to_hex())?;
            n += 1;
        }
    }
    Ok(n)
}
