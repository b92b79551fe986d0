//! Storage backends: where a repository's files live.
//!
//! A backend stores opaque named files in the fixed restic layout (`config`, `keys/`,
//! `locks/`, `snapshots/`, `index/`, `data/`). It knows nothing of encryption or formats.
//! Every backend passes the one conformance suite in [`conformance`]. `write` must be atomic
//! and durable when it returns: the write order packs -> index -> snapshot relies on it.

pub mod killswitch;
pub mod local;

use crate::error::Result;

/// The kinds of files in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Lock,
    Snapshot,
    Index,
    Pack,
}

impl FileType {
    /// The directory of this type in restic's layout (`config` is a file at the top).
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Lock => "locks",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
        }
    }

    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Lock,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ];
}

/// A stored file as listed: its name and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
}

/// Operations every backend provides. Implementations are safe to call from many threads.
pub trait Backend: Send + Sync {
    /// A human-readable location for messages (never includes secrets).
    fn location(&self) -> String;
    /// Creates the empty layout; fails if a repository (a `config` file) already exists.
    fn create(&self) -> Result<()>;
    /// True if a repository config exists here.
    fn has_config(&self) -> Result<bool>;
    /// All files of a type. The config is not listed.
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>>;
    /// The whole file. `name` is ignored for the config.
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes from `offset`; fails if the file is shorter.
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Like `read_range`, into `buf` (replacing its contents), so a caller reading many
    /// ranges reuses one buffer.
    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        *buf = self.read_range(t, name, offset, len)?;
        Ok(())
    }
    /// Stores a file atomically and durably. Names are content hashes, so writing an
    /// existing name again (same bytes) is allowed.
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()>;
    /// Deletes a file; deleting a missing file is not an error.
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
}

#[cfg(test)]
pub mod conformance;
