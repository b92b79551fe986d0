//! Reading one file (or a stream) into data blobs, and telling the user when a file changed
//! while it was read.

use super::{FileError, FileResult, Progress};
use crate::chunker::{Chunker, Polynomial};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::BlobType;
use crate::writer::{Lane, PackWriter};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A file worker's buffers, kept across files: allocating (and zeroing) a megabyte per
/// file would cost more than chunking a small one.
#[derive(Default)]
pub(super) struct Buffers {
    read: Vec<u8>,
}

/// What identifies one state of a file: where it is, its size and its change times.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// How long before its read a file may have been written and still be looked at again at
/// the end of the backup.
const RECENT: Duration = Duration::from_secs(2);

/// Notes files that changed while they were read.
///
/// Comparing a file's stamp before and after the read misses one race: a writer that is
/// inside a `write` call (so the modification time is already set) and does not progress
/// while we read, e.g. descheduled on a busy machine. What we read is then a prefix of a
/// state the file never had, with an unchanged stamp. So a file modified shortly before or
/// during its read is stat'ed once more at the end of the backup: a writer that was paused
/// has moved on by then. Quiet files (the vast majority) cost nothing; a backup that read
/// recently modified files waits at most `SETTLE` once.
pub(super) struct ChangeWatch<'a> {
    notices: &'a Mutex<Vec<String>>,
    recent: Mutex<Vec<(PathBuf, Stamp, u64)>>,
    last_recent_read: Mutex<Option<Instant>>,
}

/// The least time between the last read of a recently modified file and its second look.
const SETTLE: Duration = Duration::from_millis(20);

impl<'a> ChangeWatch<'a> {
    pub(super) fn new(notices: &'a Mutex<Vec<String>>) -> Self {
        ChangeWatch {
            notices,
            recent: Mutex::new(Vec::new()),
            last_recent_read: Mutex::new(None),
        }
    }

    fn note(&self, path: &Path, size: u64) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(format!(
                "{}: changed while it was read; the snapshot holds the {size} bytes read, \
                 which may mix old and new content (back it up again once it is quiet)",
                path.display()
            ));
        }
    }

    /// Compares the stamps around one read of `path`, which returned `size` bytes.
    fn after_read(
        &self,
        path: &Path,
        started: SystemTime,
        before: &std::fs::Metadata,
        after: &std::fs::Metadata,
        size: u64,
    ) {
        if stamp(before) != stamp(after) || after.size() != size {
            self.note(path, size);
            return;
        }
        let modified = after.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let changed = std::time::UNIX_EPOCH
            + Duration::new(
                after.ctime().max(0) as u64,
                after.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        let since = started
            .checked_sub(RECENT)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if modified >= since || changed >= since {
            if let Ok(mut r) = self.recent.lock() {
                r.push((path.to_path_buf(), stamp(after), size));
            }
            if let Ok(mut t) = self.last_recent_read.lock() {
                *t = Some(Instant::now());
            }
        }
    }

    /// The second look at the recently modified files, once every file was read.
    pub(super) fn finish(&self) {
        let recent = std::mem::take(&mut *self.recent.lock().unwrap_or_else(|e| e.into_inner()));
        if recent.is_empty() {
            return;
        }
        let last = *self
            .last_recent_read
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = last {
            std::thread::sleep(SETTLE.saturating_sub(t.elapsed()));
        }
        for (path, was, size) in recent {
            // The file's descriptor is closed: look at the path without following a link.
            // A path that is gone or replaced says nothing about the state we read, but a
            // note is the safe side.
            let now = std::fs::symlink_metadata(&path).map(|m| stamp(&m)).ok();
            if now != Some(was) {
                self.note(&path, size);
            }
        }
    }
}

/// A file to read: its path, and what the walker already did with it (see `readahead`).
pub(super) struct Source {
    pub(super) path: PathBuf,
    /// Opened by the walker, or None: the worker opens `path`.
    pub(super) file: Option<std::fs::File>,
    /// The size the walk saw, and the head of it already asked of the kernel.
    pub(super) size: u64,
    pub(super) asked: u64,
}

/// Opens a file to back up, as the walker and the worker both do: by `name` relative to
/// its open directory `at` when given, else by `path`. Swapped since the walk for a
/// symlink, it is not followed; for a fifo, it does not block the backup (O_NONBLOCK
/// changes nothing for a regular file).
pub(super) fn open_source(
    at: Option<(BorrowedFd, &OsStr)>,
    path: &Path,
) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    loop {
        let fd = match at {
            Some((dir, name)) => rustix::fs::openat(dir, name, flags, Mode::empty()),
            None => rustix::fs::open(path, flags, Mode::empty()),
        };
        // Retried when a signal interrupts it, as std's File::open does.
        match fd {
            Err(rustix::io::Errno::INTR) => continue,
            fd => return fd.map(std::fs::File::from).map_err(std::io::Error::from),
        }
    }
}

pub(super) fn store_file(
    src: &mut Source,
    lane: &mut Lane,
    pol: Polynomial,
    progress: &Progress,
    bufs: &mut Buffers,
    watch: &ChangeWatch,
) -> FileResult {
    let path = src.path.as_path();
    let source = |e: std::io::Error| FileError::Source(format!("{}: {e}", path.display()));
    let started = SystemTime::now();
    let f = match src.file.take() {
        Some(f) => f,
        None => open_source(None, path).map_err(source)?,
    };
    let before = f.metadata().map_err(source)?;
    if !before.is_file() {
        return Err(FileError::Source(format!(
            "{}: no longer a regular file, skipped",
            path.display()
        )));
    }
    let reader = super::readahead::Advised::new(&f, src.size, src.asked);
    let mut chunker = Chunker::with_buffer(reader, pol, std::mem::take(&mut bufs.read));
    let mut ids = Vec::new();
    let mut size = 0u64;
    let result = store_chunks(&mut chunker, lane, progress, &mut ids, &mut size, source);
    bufs.read = chunker.into_buffer();
    result?;
    // Written to while we read it: what we stored may mix old and new content (its size is
    // what we read, so the node is consistent). Say so, as a later backup will fix it.
    let after = f.metadata().map_err(source)?;
    watch.after_read(path, started, &before, &after, size);
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    Ok((ids, size))
}

fn store_chunks<R: Read>(
    chunker: &mut Chunker<R>,
    lane: &mut Lane,
    progress: &Progress,
    ids: &mut Vec<Id>,
    size: &mut u64,
    source: impl Fn(std::io::Error) -> FileError,
) -> std::result::Result<(), FileError> {
    // Each chunk is a slice of the chunker's read buffer: no copy before it is hashed,
    // compressed and encrypted into its pack.
    while let Some(buf) = chunker.next_slice().map_err(&source)? {
        *size += buf.len() as u64;
        progress
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        progress
            .bytes_done
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let (id, _) = lane.save(buf).map_err(FileError::Repository)?;
        ids.push(id);
    }
    Ok(())
}

pub(super) fn store_stream(
    reader: Box<dyn Read + Send>,
    writer: &PackWriter,
    pol: Polynomial,
    progress: &Progress,
) -> Result<(Vec<Id>, u64)> {
    let mut chunker = Chunker::new(reader, pol);
    let mut ids = Vec::new();
    let mut size = 0u64;
    while let Some(buf) = chunker
        .next_slice()
        .map_err(|e| Error::io("reading standard input", e))?
    {
        size += buf.len() as u64;
        progress
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        progress
            .bytes_done
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        ids.push(writer.save(BlobType::Data, buf)?.0);
    }
    progress.files_done.fetch_add(1, Ordering::Relaxed);
    Ok((ids, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race the second look exists for: the stamps around the read agree (the writer
    /// was paused inside its `write`), and the file grows once the writer moves on.
    #[test]
    fn a_recently_written_file_that_grows_after_its_read_gets_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (grows, quiet) = (dir.path().join("grows"), dir.path().join("quiet"));
        std::fs::write(&grows, b"partial").unwrap();
        std::fs::write(&quiet, b"done").unwrap();
        let notices = Mutex::new(Vec::new());
        let watch = ChangeWatch::new(&notices);
        for (path, size) in [(&grows, 7), (&quiet, 4)] {
            let m = std::fs::metadata(path).unwrap();
            watch.after_read(path, SystemTime::now(), &m, &m, size);
        }
        assert!(notices.lock().unwrap().is_empty(), "stamps agreed");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&grows)
            .unwrap();
        std::io::Write::write_all(&mut f, b" and the rest").unwrap();
        watch.finish();
        let notes = notices.into_inner().unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with(&format!("{}: changed while it was read", grows.display())));
    }

    #[test]
    fn a_file_last_written_long_ago_is_not_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        std::fs::write(&old, b"old").unwrap();
        let m = std::fs::metadata(&old).unwrap();
        let notices = Mutex::new(Vec::new());
        let watch = ChangeWatch::new(&notices);
        let later = SystemTime::now() + Duration::from_secs(60);
        watch.after_read(&old, later, &m, &m, 3);
        assert!(watch.recent.lock().unwrap().is_empty());
    }
}
