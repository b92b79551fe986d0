//! The local filesystem backend, with restic's on-disk layout (`data/` split into 256
//! subdirectories by the first two hex digits of the pack id).
//!
//! Writes go to a temporary file in the target directory, renamed into place, so a file
//! that exists is complete. Every file but a pack is fsynced before the rename and its
//! directory after; packs are synced together before the next file of another type is
//! written to the repository (see `PENDING`).
//!
//! Modes, like restic's local backend: directories 0700, files 0600 while written and
//! read-only (0400) once stored, so no other local user can read `keys/` and attack the
//! password offline. A repository whose `config` (or, before `init`, whose top directory)
//! is group-readable keeps group access: new directories get the top directory's group
//! bits (at least r-x), new files 0440. Modes are set explicitly with `chmod` after
//! creation, so neither a permissive nor a strict umask changes them. Existing files and
//! directories are never re-moded.

use super::{Backend, FileInfo, FileType};
use crate::error::{Error, Kind, Result};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub struct LocalBackend {
    root: PathBuf,
    modes: OnceLock<Modes>,
}

/// The permissions of new directories and stored files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub dir: u32,
    /// A stored (read-only) file.
    pub file: u32,
}

impl Modes {
    /// No access for group or others (restic's default).
    pub const PRIVATE: Modes = Modes {
        dir: 0o700,
        file: 0o400,
    };

    /// Restic's rule: a group-readable `config` means a group-accessible repository.
    /// `config_mode` is the config file's mode (if it exists), `root_mode` the top
    /// directory's (if it exists); the group bits of new directories follow the top one.
    pub fn derive(config_mode: Option<u32>, root_mode: Option<u32>) -> Modes {
        let group_readable = match (config_mode, root_mode) {
            (Some(c), _) => c & 0o040 != 0,
            (None, Some(r)) => r & 0o040 != 0,
            (None, None) => false,
        };
        if !group_readable {
            return Modes::PRIVATE;
        }
        Modes {
            dir: 0o700 | 0o050 | (root_mode.unwrap_or(0) & 0o070),
            file: 0o440,
        }
    }
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            modes: OnceLock::new(),
        }
    }

    /// The modes for new directories and files, derived once from what is on disk.
    pub fn modes(&self) -> Modes {
        *self.modes.get_or_init(|| {
            let mode = |p: &Path| fs::metadata(p).ok().map(|m| m.mode());
            Modes::derive(mode(&self.root.join("config")), mode(&self.root))
        })
    }

    /// Creates `dir` and any missing parents with the repository's directory mode
    /// (a setgid bit the kernel gave it is kept). Existing directories are left alone.
    fn mkdir(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.mkdir(parent)?;
        }
        let mode = self.modes().dir;
        match fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {
                let setgid = fs::metadata(dir)?.mode() & 0o2000;
                fs::set_permissions(dir, fs::Permissions::from_mode(mode | setgid))
            }
            // Another writer (a second thread, restic) made it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.join("config"),
            FileType::Pack => {
                let prefix = name.get(..2).unwrap_or("00");
                self.root.join("data").join(prefix).join(name)
            }
            _ => self.root.join(t.dir()).join(name),
        }
    }
}

/// Files at least this large are written past the page cache (O_DIRECT).
const DIRECT_MIN: usize = 64 * 1024;
/// The alignment O_DIRECT wants of the buffer, the file offset and the length (the
/// largest logical block size in common use; a filesystem wanting more refuses with EINVAL
/// and the file is written through the page cache instead).
const DIRECT_ALIGN: usize = 4096;
/// Bytes per O_DIRECT write through the per-thread aligned bounce buffer (its size).
const DIRECT_BLOCK: usize = 1024 * 1024;
/// Bytes per O_DIRECT write of data aligned in memory (a pack: no buffer of ours), so a
/// whole default pack goes in one request. `dd oflag=direct` of 800 MiB on the AMD VM's
/// virtio disk: 1.82 s in 1 MiB writes, 1.49 s in 4 MiB, 1.22 s in 16 MiB.
const DIRECT_ALIGNED_BLOCK: usize = 16 * 1024 * 1024;

thread_local! {
    /// The bounce buffer of `write_direct`, kept across files: a fresh megabyte per pack
    /// would cost page faults that undo what bypassing the page cache saves.
    static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Creates `tmp` (owner-only, it must not exist) holding `data`, not yet synced.
///
/// Large files (packs) bypass the page cache: on a virtual machine a buffered write costs
/// far more kernel CPU (copying into freshly allocated page-cache pages, then writeback)
/// than the disk write itself, and a backup writes as much as it reads. The aligned bulk
/// goes through O_DIRECT from an aligned bounce buffer; the unaligned tail (under 4 KiB)
/// is written through the page cache on the same descriptor once O_DIRECT is switched
/// off. A filesystem that refuses O_DIRECT (tmpfs on older kernels, some FUSE and network
/// filesystems) gets a plain buffered write. The caller syncs either way.
fn write_new_file(tmp: &Path, data: &[u8]) -> std::io::Result<fs::File> {
    #[cfg(target_os = "linux")]
    if data.len() >= DIRECT_MIN {
        use nix::fcntl::OFlag;
        let direct = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_DIRECT.bits())
            .open(tmp);
        match direct {
            Ok(mut f) => {
                let bulk = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
                let written = write_direct(&mut f, &data[..bulk]);
                use std::os::fd::AsRawFd;
                let fd = f.as_raw_fd();
                let flags = nix::fcntl::fcntl(fd, nix::fcntl::F_GETFL)?;
                let buffered = OFlag::from_bits_truncate(flags) - OFlag::O_DIRECT;
                nix::fcntl::fcntl(fd, nix::fcntl::F_SETFL(buffered))?;
                match written {
                    Ok(()) => f.write_all(&data[bulk..])?,
                    // Refused (alignment) or cut short: write it all again, buffered.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                        f.set_len(0)?;
                        f.seek(SeekFrom::Start(0))?;
                        f.write_all(data)?;
                    }
                    Err(e) => return Err(e),
                }
                return Ok(f);
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(data)?;
    Ok(f)
}

/// Writes `data` (a multiple of `DIRECT_ALIGN` long) to `f`, opened with O_DIRECT, at its
/// current offset (0 or aligned), through the thread's aligned bounce buffer.
#[cfg(target_os = "linux")]
fn write_direct(f: &mut fs::File, data: &[u8]) -> std::io::Result<()> {
    if data.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
        // Already aligned in memory (the pack writer aligns its packs): no copy.
        return write_aligned(f, data);
    }
    BOUNCE.with(|cell| {
        let mut bounce = cell.borrow_mut();
        if bounce.len() < DIRECT_BLOCK + DIRECT_ALIGN {
            *bounce = vec![0u8; DIRECT_BLOCK + DIRECT_ALIGN];
        }
        // The aligned window of the buffer (Vec gives no alignment guarantee).
        let skip = bounce.as_ptr().align_offset(DIRECT_ALIGN);
        if skip > DIRECT_ALIGN {
            return Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        let window = &mut bounce[skip..skip + DIRECT_BLOCK];
        for piece in data.chunks(DIRECT_BLOCK) {
            window[..piece.len()].copy_from_slice(piece);
            let mut done = 0;
            while done < piece.len() {
                match f.write(&window[done..piece.len()]) {
                    // A short direct write leaves the rest unaligned: let the caller
                    // start over through the page cache.
                    Ok(n) if n > 0 && (done + n == piece.len() || n % DIRECT_ALIGN == 0) => {
                        done += n
                    }
                    Ok(_) => return Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL)),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    })
}

/// Writes `data` (aligned in memory and a multiple of `DIRECT_ALIGN` long) to `f`, opened
/// with O_DIRECT, in `DIRECT_ALIGNED_BLOCK` pieces.
#[cfg(target_os = "linux")]
fn write_aligned(f: &mut fs::File, data: &[u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let end = (done + DIRECT_ALIGNED_BLOCK).min(data.len());
        match f.write(&data[done..end]) {
            // A short direct write leaves the rest unaligned: let the caller start over
            // through the page cache.
            Ok(n) if n > 0 && (done + n == data.len() || n % DIRECT_ALIGN == 0) => done += n,
            Ok(_) => return Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Packs stored (renamed into place) but not yet synced, by repository root.
///
/// A pack is synced when the next file of another type (an index, a snapshot, a lock, a
/// key) is written to its repository, not when it is stored: that keeps the write order
/// packs -> index -> snapshot (nothing refers to a pack before it is durable), and the
/// syncs of a whole backup's packs cost a journal commit or two instead of two per pack
/// (the file, then its directory). Until then a stored pack is complete in the kernel (a
/// kill loses nothing; its bytes went to the disk with O_DIRECT); only a power loss can
/// cut it short, and then nothing refers to it (an unreferenced pack: `check` notes it,
/// prune removes it). Per root, not per backend value: every backend of one repository
/// in this process shares it. Measured on the AMD EPYC VM (ext4 on virtio, 1.05 GiB first
/// backup, 7 alternating runs each): 3.42–3.83 s (median 3.67) with a sync per pack,
/// 3.29–3.59 s (median 3.43) deferred; a disk with a slower flush (a NAS, a spinning disk)
/// saves far more, two flushes per 16 MiB. Syncs also start in the background every
/// `BACKGROUND_SYNC_PACKS` packs, so that the last one before the index finds little left.
static PENDING: std::sync::Mutex<Vec<(PathBuf, Vec<PathBuf>)>> = std::sync::Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<(PathBuf, Vec<PathBuf>)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Roots whose pending packs a background thread is syncing (see `add_pending`).
static FLUSHING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Pending packs of one repository that start a background sync of them: a sync makes the
/// disk flush what it caches, which can take time in proportion to what was written since
/// the last flush. On the AMD VM's virtio disk, at times, the first sync of a 1.05 GiB
/// first backup took 1.02 s, all of it between the last pack and the index (`strace -tt`);
/// synced in the background every 8 packs (128 MiB), that gap is 15 ms. Every 4 packs held
/// more packs in memory while a flush stalled the writes (peak 86–92 MB against 81–85).
const BACKGROUND_SYNC_PACKS: usize = 8;

/// Syncs a copy of `root`'s pending packs (then their directories) and takes the ones
/// synced off the list. Packs stay pending (for the caller's sync to retry and report) on
/// any failure; a foreground sync meanwhile syncs them again, which is harmless.
fn background_sync(root: PathBuf) {
    let packs: Vec<PathBuf> = pending()
        .iter()
        .find(|(r, _)| *r == root)
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    if sync_packs(&packs).is_ok() {
        let mut all = pending();
        if let Some((_, left)) = all.iter_mut().find(|(r, _)| *r == root) {
            left.retain(|p| !packs.contains(p));
        }
        all.retain(|(_, left)| !left.is_empty());
    }
    FLUSHING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|r| *r != root);
}

/// Syncs stored packs (one removed since is skipped), then their directories; the path
/// that failed and why.
fn sync_packs(packs: &[PathBuf]) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let mut dirs: Vec<&Path> = Vec::new();
    for p in packs {
        match fs::File::open(p).and_then(|f| f.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err((p.clone(), e)),
        }
        if let Some(d) = p.parent().filter(|d| !dirs.contains(d)) {
            dirs.push(d);
        }
    }
    for d in dirs {
        fsync_dir(d).map_err(|e| (d.to_path_buf(), e))?;
    }
    Ok(())
}

impl LocalBackend {
    fn add_pending(&self, pack: PathBuf) {
        let mut all = pending();
        let count = match all.iter_mut().find(|(root, _)| *root == self.root) {
            Some((_, packs)) => {
                packs.push(pack);
                packs.len()
            }
            None => {
                all.push((self.root.clone(), vec![pack]));
                1
            }
        };
        drop(all);
        if count >= BACKGROUND_SYNC_PACKS {
            let mut flushing = FLUSHING.lock().unwrap_or_else(|e| e.into_inner());
            if !flushing.contains(&self.root) {
                flushing.push(self.root.clone());
                let root = self.root.clone();
                let started = std::thread::Builder::new()
                    .name("cairn-sync".into())
                    .spawn(move || background_sync(root));
                if started.is_err() {
                    flushing.retain(|r| *r != self.root);
                }
            }
        }
    }

    /// True while `pack` (a path in this repository) is stored but not yet synced.
    #[cfg(test)]
    fn is_pending(&self, pack: &Path) -> bool {
        pending()
            .iter()
            .any(|(root, packs)| *root == self.root && packs.iter().any(|p| p == pack))
    }

    /// Syncs every pack of this repository stored and not yet synced, then their
    /// directories. A pack removed since is skipped. On a failure the packs stay pending,
    /// so every later write fails too: a pack whose sync failed may be lost, and no index
    /// may name it.
    pub fn sync_pending_packs(&self) -> Result<()> {
        let mut all = pending();
        let Some(at) = all.iter().position(|(root, _)| *root == self.root) else {
            return Ok(());
        };
        sync_packs(&all[at].1)
            .map_err(|(p, e)| Error::io(format!("syncing {}", p.display()), e))?;
        all.swap_remove(at);
        Ok(())
    }
}

impl Backend for LocalBackend {
    /// One pack write in flight (on its own thread, so the backup's workers keep chunking
    /// and compressing meanwhile): packs go to disk past the page cache, several times
    /// faster than a backup makes them, and each more in flight holds a pack in memory.
    fn connections(&self) -> usize {
        1
    }
    fn is_local(&self) -> bool {
        true
    }
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        if self.has_config()? {
            return Err(Error::new(
                Kind::Invalid,
                format!(
                    "{}: a repository already exists here (config file present)",
                    self.location()
                ),
            ));
        }
        let mk = |p: &Path| self.mkdir(p).map_err(|e| Error::io(p.display(), e));
        mk(&self.root)?;
        for t in FileType::ALL {
            if t != FileType::Config {
                mk(&self.root.join(t.dir()))?;
            }
        }
        for i in 0..=255u8 {
            mk(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }

    fn has_config(&self) -> Result<bool> {
        let p = self.root.join("config");
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(p.display(), e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let base = self.root.join(t.dir());
        let mut dirs = vec![base.clone()];
        if t == FileType::Pack {
            dirs.clear();
            match fs::read_dir(&base) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.map_err(|e| Error::io(base.display(), e))?;
                        if e.file_type().map(|f| f.is_dir()).unwrap_or(false) {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(base.display(), e)),
            }
        }
        let mut out = Vec::new();
        for dir in dirs {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(dir.display(), e)),
            };
            for e in rd {
                let e = e.map_err(|e| Error::io(dir.display(), e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.contains(".tmp") {
                    continue;
                }
                let meta = e
                    .metadata()
                    .map_err(|err| Error::io(e.path().display(), err))?;
                if meta.is_file() {
                    out.push(FileInfo {
                        name,
                        size: meta.len(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        // The same per-type ceiling as the remote backends: a planted multi-GiB "pack" or
        // "snapshot" is reported before it is read into memory (`take` also bounds a file
        // that grows while we read it).
        let p = self.path(t, name);
        let max = super::http::max_file(t);
        let f = fs::File::open(&p).map_err(|e| Error::io(p.display(), e))?;
        let len = f.metadata().map_err(|e| Error::io(p.display(), e))?.len();
        if len > max {
            return Err(Error::corrupt(format!(
                "{}: {len} bytes, larger than any {t:?} file can be ({max} bytes): damaged or planted, remove it or run `prune`",
                p.display()
            )));
        }
        let mut data = Vec::with_capacity(len as usize);
        f.take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::io(p.display(), e))?;
        if data.len() as u64 > max {
            return Err(Error::corrupt(format!(
                "{}: grew past {max} bytes while it was read",
                p.display()
            )));
        }
        Ok(data)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(t, name, offset, len, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let p = self.path(t, name);
        let mut f = fs::File::open(&p).map_err(|e| Error::io(p.display(), e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(p.display(), e))?;
        buf.clear();
        let want = usize::try_from(len)
            .ok()
            .filter(|&n| buf.try_reserve_exact(n).is_ok())
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{}: cannot allocate {len} bytes to read at offset {offset}",
                    p.display()
                ))
            })?;
        // Into the spare capacity: `read_to_end` hands a `File` uninitialised memory, so
        // the buffer is not zeroed before every read (2% of a restore's time).
        let got = f
            .take(len)
            .read_to_end(buf)
            .map_err(|e| Error::io(p.display(), e))?;
        if got != want {
            return Err(Error::corrupt(format!(
                "{}: file is shorter than expected (wanted {len} bytes at offset {offset})",
                p.display()
            )));
        }
        Ok(())
    }

    fn prefetch(&self, t: FileType, name: &str, offset: u64, len: u64) {
        // A hint: the kernel starts reading the range in the background (a pack written
        // with O_DIRECT is not in the page cache), so the read that follows finds it there.
        let p = self.path(t, name);
        if let (Ok(f), Some(len)) = (fs::File::open(&p), std::num::NonZeroU64::new(len)) {
            let _ = rustix::fs::fadvise(&f, offset, Some(len), rustix::fs::Advice::WillNeed);
        }
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(t, name);
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        if t == FileType::Pack {
            self.mkdir(&dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        if t != FileType::Pack {
            // Every pack stored before this file is durable before this file exists.
            self.sync_pending_packs()?;
        }
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let mode = self.modes().file;
        let result = (|| -> std::io::Result<()> {
            // Owner-only from the first byte; a stale temporary file is replaced.
            let _ = fs::remove_file(&tmp);
            let f = write_new_file(&tmp, data)?;
            // Stored files are immutable: read-only, as restic does; set on the open file,
            // so the umask plays no part, and before the sync, so the mode is durable too.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            if t == FileType::Pack {
                drop(f);
                fs::rename(&tmp, &p)?;
                self.add_pending(p.clone());
                return Ok(());
            }
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &p)?;
            fsync_dir(&dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", p.display()), e));
        }
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let p = self.path(t, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(p.display(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs are synced when the next file of another type is written, not before: then
    /// none is pending. A pack removed before that does not fail the write.
    #[test]
    fn packs_are_synced_before_the_next_other_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("r"));
        be.create().unwrap();
        let names = ["aa01", "aa02", "bb03"];
        for n in names {
            be.write(FileType::Pack, n, b"pack bytes").unwrap();
        }
        let path = |n: &str| be.path(FileType::Pack, n);
        assert!(names.iter().all(|n| be.is_pending(&path(n))));
        assert_eq!(be.read(FileType::Pack, "aa02").unwrap(), b"pack bytes");
        be.remove(FileType::Pack, "bb03").unwrap();
        be.write(FileType::Index, "ff00", b"index").unwrap();
        assert!(names.iter().all(|n| !be.is_pending(&path(n))));
        // Another repository's packs are its own.
        let other = LocalBackend::new(dir.path().join("o"));
        other.create().unwrap();
        other.write(FileType::Pack, "cc04", b"pack").unwrap();
        be.write(FileType::Snapshot, "ee00", b"snapshot").unwrap();
        assert!(other.is_pending(&other.path(FileType::Pack, "cc04")));
        other.write(FileType::Lock, "dd00", b"lock").unwrap();
        assert!(!other.is_pending(&other.path(FileType::Pack, "cc04")));
    }

    /// Every `BACKGROUND_SYNC_PACKS` packs a background thread syncs those pending; the
    /// next index still syncs whatever is left first, and nothing stays pending after it.
    #[test]
    fn many_packs_are_synced_in_the_background_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("r"));
        be.create().unwrap();
        let names: Vec<String> = (0..3 * super::BACKGROUND_SYNC_PACKS)
            .map(|i| format!("{:02x}{i:02x}", i % 7))
            .collect();
        for n in &names {
            be.write(FileType::Pack, n, b"pack bytes").unwrap();
        }
        let path = |n: &str| be.path(FileType::Pack, n);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while be.is_pending(&path(&names[0])) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!be.is_pending(&path(&names[0])), "synced in the background");
        be.write(FileType::Index, "ff00", b"index").unwrap();
        assert!(names.iter().all(|n| !be.is_pending(&path(n))));
        assert!(names
            .iter()
            .all(|n| be.read(FileType::Pack, n).unwrap() == b"pack bytes"));
    }

    /// A reused buffer gets exactly the range asked for, whatever it held before; a range
    /// past the end is damage, not a short read; a prefetch hint never fails.
    #[test]
    fn read_range_into_reuses_the_buffer_and_refuses_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let be = super::LocalBackend::new(dir.path().join("repo"));
        be.create().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        be.write(FileType::Pack, "aa00", &data).unwrap();
        let mut buf = vec![0xffu8; 1 << 20];
        for (off, len) in [
            (0u64, 300_000u64),
            (7, 5),
            (299_999, 1),
            (1000, 0),
            (12, 200_000),
        ] {
            be.prefetch(FileType::Pack, "aa00", off, len);
            be.read_range_into(FileType::Pack, "aa00", off, len, &mut buf)
                .unwrap();
            assert_eq!(
                buf,
                &data[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
        let e = be
            .read_range_into(FileType::Pack, "aa00", 299_990, 11, &mut buf)
            .unwrap_err();
        assert_eq!(e.kind(), Kind::Corrupt, "{e}");
        be.prefetch(FileType::Pack, "bb00", 0, 10);
        assert!(be
            .read_range_into(FileType::Pack, "bb00", 0, 10, &mut buf)
            .is_err());
    }

    #[test]
    fn local_backend_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let be = super::LocalBackend::new(dir.path().join("repo"));
        crate::backend::conformance::run(&be);
    }

    /// A file handed over aligned in memory (as the pack writer does) is written without
    /// the bounce buffer; unaligned views of the same buffer still round trip.
    #[test]
    fn large_files_aligned_in_memory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("repo"));
        be.create().unwrap();
        let mut buf: Vec<u8> = (0..4 * DIRECT_BLOCK)
            .map(|j| (j * 13 % 251) as u8)
            .collect();
        let skip = buf.as_ptr().align_offset(DIRECT_ALIGN);
        assert!(skip < DIRECT_ALIGN);
        buf[skip] ^= 0xff;
        for (i, (from, len)) in [
            (skip, DIRECT_BLOCK),
            (skip, 2 * DIRECT_BLOCK + DIRECT_ALIGN + 5),
            (skip, 3 * DIRECT_BLOCK - 1),
            (skip + 1, 2 * DIRECT_BLOCK),
        ]
        .into_iter()
        .enumerate()
        {
            let data = &buf[from..from + len];
            let name = format!("{i:02x}{len:x}");
            be.write(FileType::Pack, &name, data).unwrap();
            assert_eq!(be.read(FileType::Pack, &name).unwrap(), data, "{len} bytes");
        }
    }

    /// Pack-sized files go past the page cache with an unaligned tail; every size round
    /// trips, on disk and on a tmpfs (which may refuse O_DIRECT: then buffered).
    #[test]
    fn large_files_round_trip_whatever_their_alignment() {
        let mut roots = vec![tempfile::tempdir().unwrap()];
        if Path::new("/dev/shm").is_dir() {
            roots.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        for root in &roots {
            let be = LocalBackend::new(root.path().join("repo"));
            be.create().unwrap();
            for (i, len) in [
                DIRECT_MIN - 1,
                DIRECT_MIN,
                DIRECT_MIN + 1,
                DIRECT_BLOCK,
                3 * DIRECT_BLOCK + DIRECT_ALIGN - 1,
                5 * DIRECT_BLOCK / 2 + 17,
            ]
            .into_iter()
            .enumerate()
            {
                let data: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
                let name = format!("{i:02x}{len:x}");
                be.write(FileType::Pack, &name, &data).unwrap();
                assert_eq!(be.read(FileType::Pack, &name).unwrap(), data, "{len} bytes");
                let p = root.path().join("repo/data").join(&name[..2]).join(&name);
                assert_eq!(mode(&p), 0o400);
            }
            let leftovers: Vec<_> = fs::read_dir(root.path().join("repo/data/00"))
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// Sets a permissive umask for the rest of this process's threads; the modes must not
    /// depend on it. Returns the old one.
    fn umask(m: u32) -> u32 {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m)).bits()
    }

    #[test]
    fn a_new_repository_is_private_to_its_owner_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let old = umask(0o000);
        let be = LocalBackend::new(&root);
        let created = be.create();
        let written = be
            .write(FileType::Key, "k1", b"key")
            .and_then(|_| be.write(FileType::Config, "", b"config"))
            .and_then(|_| be.write(FileType::Pack, "abcdef", b"pack"));
        umask(old);
        created.unwrap();
        written.unwrap();
        for d in ["", "keys", "locks", "snapshots", "index", "data", "data/ab"] {
            assert_eq!(mode(&root.join(d)), 0o700, "{d}/");
        }
        for f in ["keys/k1", "config", "data/ab/abcdef"] {
            assert_eq!(mode(&root.join(f)), 0o400, "{f}");
        }
    }

    #[test]
    fn a_group_readable_repository_keeps_its_group_bits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        let be = LocalBackend::new(&root);
        be.create().unwrap();
        be.write(FileType::Config, "", b"config").unwrap();
        assert_eq!(mode(&root.join("keys")), 0o750);
        assert_eq!(mode(&root.join("data/00")), 0o750);
        assert_eq!(mode(&root.join("config")), 0o440);
        // Reopened: the config's group bit decides, as in restic.
        let be = LocalBackend::new(&root);
        be.write(FileType::Pack, "77aa", b"pack").unwrap();
        assert_eq!(mode(&root.join("data/77/77aa")), 0o440);
        fs::remove_dir(root.join("data/12")).unwrap();
        be.write(FileType::Pack, "12aa", b"pack").unwrap();
        assert_eq!(mode(&root.join("data/12")), 0o750);
    }

    #[test]
    fn modes_follow_restic_rule() {
        assert_eq!(Modes::derive(None, None), Modes::PRIVATE);
        assert_eq!(Modes::derive(Some(0o400), Some(0o755)), Modes::PRIVATE);
        assert_eq!(
            Modes::derive(Some(0o440), Some(0o770)),
            Modes {
                dir: 0o770,
                file: 0o440
            }
        );
        assert_eq!(Modes::derive(None, Some(0o700)), Modes::PRIVATE);
    }
}
