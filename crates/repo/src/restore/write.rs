//! The restore target seen through directory file descriptors: nothing below the target
//! is ever reached by a path that the kernel resolves through a symlink.
//!
//! Owns: opening the target once; creating directories (`mkdirat`, then opened
//! `O_DIRECTORY|O_NOFOLLOW` and remembered by device and inode), files
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600 until their metadata is applied), hard links,
//! special files and symlinks relative to their directory's descriptor; reopening a file
//! or directory later only if it is still the inode that was created; applying metadata
//! on the descriptor (or with `AT_SYMLINK_NOFOLLOW`). `--overwrite` replaces what is in
//! the way (`unlinkat`, then create), never writes through it.
//!
//! Must not: resolve a path below the target with a path-based call, or hold one
//! descriptor per directory or file of the restore (a bounded cache of directory
//! descriptors is kept instead, reopened from the nearest cached ancestor on a miss).

use super::plan::PlannedDir;
use crate::node::{Node, NodeType};
use chrono::{DateTime, FixedOffset};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// A filesystem object's identity: (device, inode).
pub(super) type Ident = (u64, u64);

/// Directory descriptors kept open at once (the process limit is often 1024).
const DIR_CACHE_MAX: usize = 128;

// The casts matter on 32-bit targets, where these fields are narrower.
#[allow(clippy::unnecessary_cast)]
fn ident(st: &rfs::Stat) -> Ident {
    (st.st_dev as u64, st.st_ino as u64)
}

fn file_type(st: &rfs::Stat) -> rfs::FileType {
    rfs::FileType::from_raw_mode(st.st_mode as _)
}

/// What creating an entry found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Created {
    New(Ident),
    /// Something is already at that name and `overwrite` is off: left alone.
    Exists,
}

#[derive(Default)]
struct DirCache {
    fds: HashMap<usize, (Arc<OwnedFd>, u64)>,
    tick: u64,
}

impl DirCache {
    fn get(&mut self, i: usize) -> Option<Arc<OwnedFd>> {
        self.tick += 1;
        let tick = self.tick;
        self.fds.get_mut(&i).map(|(fd, used)| {
            *used = tick;
            fd.clone()
        })
    }

    fn put(&mut self, i: usize, fd: Arc<OwnedFd>) {
        if self.fds.len() >= DIR_CACHE_MAX {
            // Evict the least recently used half: misses are rare (work is in tree order).
            let mut ticks: Vec<u64> = self.fds.values().map(|(_, t)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            self.fds.retain(|_, (_, t)| *t > cut);
        }
        self.tick += 1;
        self.fds.insert(i, (fd, self.tick));
    }
}

/// The target directory and the planned directories below it.
pub(super) struct Target<'p> {
    root: Arc<OwnedFd>,
    dirs: &'p [PlannedDir],
    /// Set once a directory is created (or found) and opened; unset = not available.
    idents: Vec<OnceLock<Ident>>,
    cache: Mutex<DirCache>,
}

fn in_the_way(name: &OsStr) -> io::Error {
    io::Error::other(format!(
        "{:?} is already in the target and is not a directory (a symlink there is never followed): \
         nothing was restored below it; move it away or restore with --overwrite to replace it",
        name
    ))
}

fn replaced(what: &str) -> io::Error {
    io::Error::other(format!(
        "the {what} was replaced by something else during the restore: not touched; \
         make sure nothing else writes to the target while restoring"
    ))
}

impl<'p> Target<'p> {
    /// Opens `path` (created 0700 with its missing parents if it does not exist, like
    /// restic). The target itself is given by the user and may be reached through a symlink.
    pub fn open(path: &Path, dirs: &'p [PlannedDir]) -> io::Result<Target<'p>> {
        if std::fs::symlink_metadata(path).is_err() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)?;
        }
        let root = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Target {
            root: Arc::new(root),
            dirs,
            idents: (0..dirs.len()).map(|_| OnceLock::new()).collect(),
            cache: Mutex::new(DirCache::default()),
        })
    }

    /// Whether directory `i` was created or opened (its subtree can be restored).
    pub fn dir_ready(&self, dir: Option<usize>) -> bool {
        dir.is_none_or(|i| self.idents[i].get().is_some())
    }

    /// The descriptor of a planned directory (`None`: the target), reopened from the
    /// nearest cached ancestor if needed, each step `O_NOFOLLOW` and checked to be the
    /// directory created earlier.
    pub fn dir_fd(&self, dir: Option<usize>) -> io::Result<Arc<OwnedFd>> {
        let Some(i) = dir else {
            return Ok(self.root.clone());
        };
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| io::Error::other("internal error: a restore thread panicked"))?;
        if let Some(fd) = cache.get(i) {
            return Ok(fd);
        }
        // Walk up to a cached ancestor (or the target), then down again.
        let mut chain = vec![i];
        let mut fd = loop {
            let Some(&last) = chain.last() else {
                return Err(io::Error::other("internal error: empty directory chain"));
            };
            match self.dirs[last].entry.dir {
                None => break self.root.clone(),
                Some(p) => match cache.get(p) {
                    Some(fd) => break fd,
                    None => chain.push(p),
                },
            }
        };
        while let Some(j) = chain.pop() {
            let want = self.idents[j].get().copied().ok_or_else(|| {
                io::Error::other(format!(
                    "directory {} was not restored",
                    self.dirs[j].entry.path.display()
                ))
            })?;
            let next = open_dir(&fd, &self.dirs[j].entry.name)?;
            if ident(&rfs::fstat(&next)?) != want {
                return Err(replaced("directory"));
            }
            fd = Arc::new(next);
            cache.put(j, fd.clone());
        }
        Ok(fd)
    }

    /// Creates (or opens an existing) directory `i`; its parent must be ready. With
    /// `overwrite`, a non-directory in the way is removed first.
    pub fn create_dir(&self, i: usize, overwrite: bool) -> io::Result<()> {
        let d = &self.dirs[i].entry;
        let parent = self.dir_fd(d.dir)?;
        match rfs::mkdirat(&parent, &d.name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = match open_dir(&parent, &d.name) {
            Ok(fd) => fd,
            Err(e)
                if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
            {
                if !overwrite {
                    return Err(in_the_way(&d.name));
                }
                rfs::unlinkat(&parent, &d.name, AtFlags::empty())?;
                rfs::mkdirat(&parent, &d.name, Mode::from_raw_mode(0o700))?;
                open_dir(&parent, &d.name)?
            }
            Err(e) => return Err(e),
        };
        let id = ident(&rfs::fstat(&fd)?);
        let _ = self.idents[i].set(id);
        if let Ok(mut c) = self.cache.lock() {
            c.put(i, Arc::new(fd));
        }
        Ok(())
    }

    /// Creates an empty regular file of `size` bytes, 0600.
    pub fn create_file(
        &self,
        dir: Option<usize>,
        name: &OsStr,
        size: u64,
        overwrite: bool,
    ) -> io::Result<Created> {
        let d = self.dir_fd(dir)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        let fd = match rfs::openat(&d, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) if !overwrite => return Ok(Created::Exists),
            Err(Errno::EXIST) => {
                remove_in_the_way(&d, name)?;
                rfs::openat(&d, name, flags, mode)?
            }
            Err(e) => return Err(e.into()),
        };
        if size > 0 {
            rfs::ftruncate(&fd, size)?;
        }
        Ok(Created::New(ident(&rfs::fstat(&fd)?)))
    }

    /// Opens a file created by [`Target::create_file`], if it is still that file.
    pub fn open_file(
        &self,
        dir: Option<usize>,
        name: &OsStr,
        want: Ident,
        write: bool,
    ) -> io::Result<File> {
        let d = self.dir_fd(dir)?;
        let access = if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        let fd = rfs::openat(
            &d,
            name,
            access | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        if ident(&rfs::fstat(&fd)?) != want {
            return Err(replaced("file"));
        }
        Ok(File::from(fd))
    }

    /// Removes `name` if it is still the inode `want` (a file whose data failed).
    pub fn remove(&self, dir: Option<usize>, name: &OsStr, want: Ident) -> io::Result<()> {
        let d = self.dir_fd(dir)?;
        let st = rfs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if ident(&st) != want {
            return Err(replaced("file"));
        }
        rfs::unlinkat(&d, name, AtFlags::empty())?;
        Ok(())
    }

    /// Makes `name` in `dir` a hard link to the file `first` (which must still be inode
    /// `want`).
    pub fn link(
        &self,
        first: (Option<usize>, &OsStr, Ident),
        dir: Option<usize>,
        name: &OsStr,
        overwrite: bool,
    ) -> io::Result<Created> {
        let (fdir, fname, want) = first;
        let src = self.dir_fd(fdir)?;
        let d = self.dir_fd(dir)?;
        // linkat without AT_SYMLINK_FOLLOW links the entry itself, never a symlink's target.
        match rfs::linkat(&src, fname, &d, name, AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EXIST) if !overwrite => return Ok(Created::Exists),
            Err(Errno::EXIST) => {
                remove_in_the_way(&d, name)?;
                rfs::linkat(&src, fname, &d, name, AtFlags::empty())?;
            }
            Err(e) => return Err(e.into()),
        }
        let st = rfs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if ident(&st) != want {
            let _ = rfs::unlinkat(&d, name, AtFlags::empty());
            return Err(replaced("hard link's first file"));
        }
        Ok(Created::New(want))
    }

    /// Creates a symlink, device node or fifo and applies its metadata. Sockets are not
    /// recreated (`Ok(None)`).
    pub fn create_special(
        &self,
        dir: Option<usize>,
        name: &OsStr,
        node: &Node,
        overwrite: bool,
    ) -> io::Result<Option<Created>> {
        let d = self.dir_fd(dir)?;
        let make = || -> rustix::io::Result<()> {
            let perm = Mode::from_raw_mode(0o600);
            match node.node_type {
                NodeType::Symlink => rfs::symlinkat(node.linktarget.as_str(), &d, name),
                NodeType::Dev => {
                    rfs::mknodat(&d, name, rfs::FileType::BlockDevice, perm, node.device as _)
                }
                NodeType::CharDev => rfs::mknodat(
                    &d,
                    name,
                    rfs::FileType::CharacterDevice,
                    perm,
                    node.device as _,
                ),
                NodeType::Fifo => rfs::mknodat(&d, name, rfs::FileType::Fifo, perm, 0),
                _ => Err(Errno::INVAL),
            }
        };
        match node.node_type {
            NodeType::Socket => return Ok(None),
            NodeType::Symlink | NodeType::Dev | NodeType::CharDev | NodeType::Fifo => {}
            t => {
                return Err(io::Error::other(format!(
                    "cannot create a {} here",
                    t.as_str()
                )))
            }
        }
        match make() {
            Ok(()) => {}
            Err(Errno::EXIST) if !overwrite => return Ok(Some(Created::Exists)),
            Err(Errno::EXIST) => {
                remove_in_the_way(&d, name)?;
                make()?;
            }
            Err(e) => return Err(e.into()),
        }
        let st = rfs::statat(&d, name, AtFlags::SYMLINK_NOFOLLOW)?;
        special_metadata(node, d.as_fd(), name, &st)?;
        Ok(Some(Created::New(ident(&st))))
    }

    /// Applies a directory's metadata on its descriptor.
    pub fn dir_metadata(&self, i: usize) -> io::Result<()> {
        let fd = self.dir_fd(Some(i))?;
        metadata_fd(&self.dirs[i].entry.node, fd.as_fd())
    }
}

fn open_dir(parent: &impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes a file, symlink or special file at `name` (for `--overwrite`); a directory in
/// the way is an error.
fn remove_in_the_way(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => Err(io::Error::other(format!(
            "{name:?} is a directory in the target: not replaced by a file; remove it first"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn timestamps(node: &Node) -> rfs::Timestamps {
    let ts = |t: &DateTime<FixedOffset>| rustix::fs::Timespec {
        tv_sec: t.timestamp() as _,
        tv_nsec: t.timestamp_subsec_nanos() as _,
    };
    rfs::Timestamps {
        last_access: ts(&node.atime),
        last_modification: ts(&node.mtime),
    }
}

fn owner(node: &Node) -> (Option<rfs::Uid>, Option<rfs::Gid>) {
    (
        Some(rfs::Uid::from_raw_unchecked(node.uid)),
        Some(rfs::Gid::from_raw_unchecked(node.gid)),
    )
}

/// Collects the first error of several independent steps.
#[derive(Default)]
struct FirstError(Option<io::Error>);

impl FirstError {
    fn note(&mut self, r: rustix::io::Result<()>) {
        if let Err(e) = r {
            self.0.get_or_insert(e.into());
        }
    }

    /// Ownership we may not give (not running as root) is skipped.
    fn note_chown(&mut self, r: rustix::io::Result<()>) {
        if r != Err(Errno::PERM) {
            self.note(r);
        }
    }

    /// Extended attributes the filesystem does not support are skipped.
    fn note_xattr(&mut self, r: rustix::io::Result<()>) {
        if r != Err(Errno::NOTSUP) {
            self.note(r);
        }
    }

    fn done(self) -> io::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Ownership, permissions, xattrs and times of a regular file or directory, on its
/// descriptor: every step is tried; the first error is returned. Not permitted ownership
/// changes and unsupported xattrs are skipped.
pub(super) fn metadata_fd(node: &Node, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut err = FirstError::default();
    let (uid, gid) = owner(node);
    // chown first: it clears setuid/setgid bits that chmod then sets.
    err.note_chown(rfs::fchown(fd, uid, gid));
    err.note(rfs::fchmod(fd, Mode::from_raw_mode(node.unix_mode() as _)));
    for x in &node.extended_attributes {
        err.note_xattr(rfs::fsetxattr(
            fd,
            x.name.as_str(),
            &x.value,
            rfs::XattrFlags::empty(),
        ));
    }
    err.note(rfs::futimens(fd, &timestamps(node)));
    err.done()
}

/// Metadata of a symlink or special file just created as `name` in `dir` (`st` is its
/// lstat): never through a symlink. Permissions and xattrs of a device or fifo are set
/// through an `O_PATH` descriptor of that very inode (by `/proc/self/fd`, as the C
/// library does for `fchmodat(AT_SYMLINK_NOFOLLOW)`), without opening the device.
fn special_metadata(
    node: &Node,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &rfs::Stat,
) -> io::Result<()> {
    let mut err = FirstError::default();
    let (uid, gid) = owner(node);
    err.note_chown(rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW));
    if node.node_type != NodeType::Symlink {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let now = rfs::fstat(&fd)?;
        if ident(&now) != ident(st) || file_type(&now) == rfs::FileType::Symlink {
            return Err(replaced("special file"));
        }
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        err.note(rfs::chmod(
            proc_path.as_str(),
            Mode::from_raw_mode(node.unix_mode() as _),
        ));
        for x in &node.extended_attributes {
            err.note_xattr(rfs::setxattr(
                proc_path.as_str(),
                x.name.as_str(),
                &x.value,
                rfs::XattrFlags::empty(),
            ));
        }
    }
    err.note(rfs::utimensat(
        dir,
        name,
        &timestamps(node),
        AtFlags::SYMLINK_NOFOLLOW,
    ));
    err.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaced_after_creation_is_never_reopened() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Target::open(tmp.path(), &[]).unwrap();
        let name = OsStr::new("f");
        let Created::New(id) = target.create_file(None, name, 3, false).unwrap() else {
            panic!("not created");
        };
        assert!(target.open_file(None, name, id, true).is_ok());
        // Another file moved over it, then a symlink: neither is opened for writing.
        let other = tmp.path().join("other");
        std::fs::write(&other, b"keep").unwrap();
        std::fs::rename(&other, tmp.path().join("f")).unwrap();
        assert!(target.open_file(None, name, id, true).is_err());
        std::fs::remove_file(tmp.path().join("f")).unwrap();
        std::fs::write(&other, b"keep").unwrap();
        std::os::unix::fs::symlink(&other, tmp.path().join("f")).unwrap();
        assert!(target.open_file(None, name, id, true).is_err());
        assert!(target.remove(None, name, id).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), b"keep");
        // Without overwrite an existing entry is left alone; with it, replaced.
        assert_eq!(
            target.create_file(None, name, 1, false).unwrap(),
            Created::Exists
        );
        assert!(matches!(
            target.create_file(None, name, 1, true).unwrap(),
            Created::New(_)
        ));
        assert!(std::fs::symlink_metadata(tmp.path().join("f"))
            .unwrap()
            .is_file());
        assert_eq!(std::fs::read(&other).unwrap(), b"keep");
    }
}
