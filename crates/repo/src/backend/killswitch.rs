//! A backend wrapper that kills the process (SIGKILL) just before its N+1-th change to
//! the repository, for crash-safety tests: run an operation once per N and check the
//! repository after each kill. Enabled only through `CAIRN_TEST_KILL_AFTER_MUTATIONS`
//! (see the CLI); lock files do not count, so lock refreshes do not shift the points.

use super::{Backend, FileInfo, FileType};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct KillSwitch {
    inner: Arc<dyn Backend>,
    after: u64,
    done: AtomicU64,
}

impl KillSwitch {
    pub fn new(inner: Arc<dyn Backend>, after: u64) -> KillSwitch {
        KillSwitch {
            inner,
            after,
            done: AtomicU64::new(0),
        }
    }

    fn before_mutation(&self, t: FileType) {
        if t == FileType::Lock {
            return;
        }
        if self.done.fetch_add(1, Ordering::SeqCst) >= self.after {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Backend for KillSwitch {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> Result<()> {
        self.inner.create()
    }
    fn has_config(&self) -> Result<bool> {
        self.inner.has_config()
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        self.inner.list(t)
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.inner.read(t, name)
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(t, name, offset, len)
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.before_mutation(t);
        self.inner.write(t, name, data)
    }
    fn renaming_retry(&self) -> Option<super::retry::Retry> {
        self.inner.renaming_retry()
    }
    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.before_mutation(t);
        self.inner.write_once(t, name, data)
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.before_mutation(t);
        self.inner.remove(t, name)
    }
    fn set_repository_id(&self, id: &str) {
        self.inner.set_repository_id(id)
    }
    fn set_tree_packs(&self, packs: std::collections::HashSet<String>) {
        self.inner.set_tree_packs(packs)
    }
    fn connections(&self) -> usize {
        self.inner.connections()
    }
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }
}
