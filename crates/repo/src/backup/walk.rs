//! The walker: lstat, excludes and change detection against the parent snapshot, on
//! several threads (subdirectories are queued for the other walker threads).

use super::store::{open_source, store_stream, Source};
use super::targets::{actual_path, Targets};
use super::{Counts, DirJob, Entry, FileJob, Progress, StdinSource};
use crate::error::{Error, Result};
use crate::exclude::{ExcludeIfPresent, PatternSet};
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeName, NodeType, Stat};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::writer::PackWriter;
use crossbeam_channel::{bounded, Receiver, Sender};
use rustix::fs as rfs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// What the walker needs of [`BackupOptions`] (which, holding the stdin reader, cannot be
/// shared between walker threads).
pub(super) struct WalkOptions<'a> {
    pub(super) excludes: &'a PatternSet,
    pub(super) exclude_if_present: &'a [ExcludeIfPresent],
    pub(super) one_file_system: bool,
    pub(super) exclude_larger_than: Option<u64>,
    pub(super) with_xattrs: bool,
    pub(super) source_map: &'a [(PathBuf, PathBuf)],
}

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) index: &'a Index,
    /// The parent's data blobs are vouched for (see `index::vouch`): an unchanged file's
    /// content is not looked up, and the data index may not even be loaded.
    pub(super) vouched: bool,
    pub(super) opts: WalkOptions<'a>,
    pub(super) files: Sender<FileJob>,
    /// Files opened and their heads asked of the kernel before a worker takes them.
    pub(super) readahead: &'a super::readahead::ReadAhead,
    pub(super) dirs: Sender<DirJob>,
    pub(super) progress: &'a Progress,
    pub(super) counts: &'a Counts,
    pub(super) warnings: &'a Mutex<Vec<String>>,
    pub(super) notices: &'a Mutex<Vec<String>>,
    pub(super) streams: Mutex<Vec<Option<StdinSource>>>,
    pub(super) writer: &'a PackWriter<'a>,
    /// Subdirectories handed to another walker thread (see [`Walker::walk_children`]);
    /// `None` once the walk is over, which lets the helpers go.
    pub(super) work_tx: Mutex<Option<Sender<WalkJob>>>,
    pub(super) work_rx: Receiver<WalkJob>,
    /// Helper walker threads (besides the one walking the targets): up to this many
    /// subdirectories wait in `work_rx`, so a helper that finishes one takes the next at
    /// once instead of idling until a walker meets another subdirectory.
    pub(super) helpers: usize,
}

/// A subdirectory walked by another walker thread; its entry comes back on `done`.
/// A directory's tree in the parent snapshot, decoded; `canonical` if its bytes are what
/// `encode_tree` writes for `nodes` (see `node::decode_tree_canonical`).
pub(super) struct ParentTree {
    pub(super) id: Id,
    pub(super) nodes: Vec<Node>,
    pub(super) canonical: bool,
}

/// Lists a directory into `names` (with whether the listing says an entry is a directory:
/// a hint for handing work to another walker thread; each entry is lstat'ed all the same)
/// and returns its descriptor, for lstat'ing the entries relative to it, and the error that
/// ended the listing early, if one did (the entries listed before it are kept).
fn list_dir(
    path: &Path,
    names: &mut Vec<(std::ffi::OsString, bool)>,
) -> std::io::Result<(OwnedFd, Option<std::io::Error>)> {
    use std::os::unix::ffi::OsStrExt;
    let fd = rfs::open(
        path,
        rfs::OFlags::RDONLY | rfs::OFlags::DIRECTORY | rfs::OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )?;
    let mut dir = rfs::Dir::read_from(&fd)?;
    while let Some(e) = dir.read() {
        let e = match e {
            Ok(e) => e,
            Err(e) => return Ok((fd, Some(e.into()))),
        };
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((
            std::ffi::OsStr::from_bytes(name).to_os_string(),
            e.file_type() == rfs::FileType::Directory,
        ));
    }
    Ok((fd, None))
}

pub(super) struct WalkJob {
    pub(super) path: PathBuf,
    pub(super) name: NodeName,
    pub(super) parent: Option<Node>,
    pub(super) dev: u64,
    pub(super) done: Sender<Result<Option<Entry>>>,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

impl Walker<'_> {
    fn actual<'p>(&self, recorded: &'p Path) -> std::borrow::Cow<'p, Path> {
        actual_path(self.opts.source_map, recorded)
    }

    /// Whether `recorded` is a file mapped to a copy of itself.
    fn is_file_copy(&self, recorded: &Path) -> bool {
        self.opts.source_map.iter().any(|(r, _)| r == recorded)
    }

    fn notice(&self, msg: String) {
        if let Ok(mut n) = self.notices.lock() {
            n.push(msg);
        }
    }

    /// A `-wal` or `-journal` file next to a SQLite database means it is in use: copying
    /// it as a plain file can lose committed data. Say so, once per database.
    fn check_live_sqlite(&self, dir: &Path, real_dir: &Path, names: &[(std::ffi::OsString, bool)]) {
        for (n, _) in names {
            let name = n.to_string_lossy();
            let Some(base) = name
                .strip_suffix("-wal")
                .or_else(|| name.strip_suffix("-journal"))
            else {
                continue;
            };
            let recorded = dir.join(base);
            if self.is_file_copy(&recorded) || self.excluded(&recorded) {
                continue;
            }
            let mut magic = [0u8; 16];
            let is_db = std::fs::File::open(real_dir.join(base))
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && &magic == SQLITE_MAGIC;
            if is_db {
                self.notice(format!(
                    "{} is a live SQLite database (it has a {} file): a plain copy can miss committed data; declare it with `sqlite = [\"{}\"]` in its source for a consistent online copy",
                    recorded.display(),
                    &name[base.len()..],
                    recorded.display()
                ));
            }
        }
    }

    fn warn(&self, msg: String) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut w) = self.warnings.lock() {
            w.push(msg);
        }
    }

    fn load_tree(&self, id: Option<Id>) -> Option<ParentTree> {
        let id = id?;
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, &id).ok()?;
        let (nodes, canonical) = node::decode_tree_canonical(&bytes).ok()?;
        Some(ParentTree {
            id,
            nodes,
            canonical,
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        !self.opts.excludes.is_empty() && self.opts.excludes.matches_path(path)
    }

    /// Sends a directory's tree job; returns the receiver of its tree id.
    pub(super) fn send_dir(
        &self,
        entries: Vec<Entry>,
        parent: Option<ParentTree>,
    ) -> Result<Receiver<Result<Id>>> {
        let (tx, rx) = bounded(1);
        let (parent_tree, parent_nodes) = match parent {
            Some(p) => (Some(p.id), p.canonical.then_some(p.nodes)),
            None => (None, None),
        };
        self.dirs
            .send(DirJob {
                entries,
                parent_tree,
                parent_nodes,
                done: tx,
            })
            .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?;
        Ok(rx)
    }

    /// Walks the virtual tree of targets: intermediate directories get their real metadata
    /// but only the targets' children.
    pub(super) fn walk_targets(&self, t: &Targets, parent: Option<&[Node]>) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for (name, child) in &t.children {
            let path = &child.fs_path;
            let parent_node = parent.and_then(|p| p.iter().find(|n| &n.name == name));
            if let Some(i) = child.stream {
                let src = self
                    .streams
                    .lock()
                    .ok()
                    .and_then(|mut s| s.get_mut(i).and_then(Option::take));
                let Some(src) = src else { continue };
                let mut node = Node::for_stdin(name.clone());
                let (ids, size) = store_stream(
                    src.reader,
                    self.writer,
                    self.repo.polynomial(),
                    self.progress,
                )?;
                if let Some(check) = src.on_eof {
                    check().map_err(|e| Error::new(crate::Kind::Io, e))?;
                }
                node.content = Some(ids);
                node.size = size;
                self.counts.files_new.fetch_add(1, Ordering::Relaxed);
                entries.push(Entry::Ready(node));
                continue;
            }
            if child.is_target {
                if let Some(e) = self.entry(path, name, parent_node, None, None)? {
                    entries.push(e);
                }
                continue;
            }
            let real = self.actual(path);
            let mut node = match std::fs::symlink_metadata(&real) {
                Ok(meta) => Node::from_path(&real, name.clone(), &meta, self.opts.with_xattrs)
                    .map_err(|e| Error::io(path.display(), e))?,
                // Directories of streamed files need not exist on disk.
                Err(_) if child.has_stream() => Node::synthetic_dir(name.clone()),
                Err(e) => {
                    self.warn(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let sub_parent = self.load_tree(parent_node.and_then(|n| n.subtree));
            let sub = self.walk_targets(child, sub_parent.as_ref().map(|p| &p.nodes[..]))?;
            node.subtree = None;
            let rx = self.send_dir(sub, sub_parent)?;
            entries.push(Entry::Dir(node, rx));
        }
        Ok(entries)
    }

    /// The entries of a directory's children (`names`, sorted), in order. A subdirectory
    /// goes to another walker thread while fewer than one per helper are queued; while
    /// waiting for those, this thread walks handed-out subdirectories itself, so no walker
    /// sits idle while there is work. A directory's tree job is sent only after those of all its subdirectories
    /// (each walk returns after sending its own), so the tree finisher, which takes jobs
    /// in order, always finds a directory's children done before it.
    fn walk_children(
        &self,
        dir: &Path,
        dir_fd: Option<BorrowedFd>,
        names: Vec<(std::ffi::OsString, bool)>,
        parent_tree: Option<&[Node]>,
        dev: u64,
    ) -> Result<Vec<Entry>> {
        // In place: a directory of many files makes this a large vector, and a second one
        // (plus the copy) cost page faults for each directory.
        let mut entries = Vec::with_capacity(names.len());
        let mut away = Vec::new();
        // Both sorted by name bytes: one pass over the parent's nodes.
        let parent_nodes = parent_tree.unwrap_or(&[]);
        let mut next_parent = 0;
        for (n, is_dir) in names {
            let child_path = dir.join(&n);
            // The listed name's bytes become the node's name (no copy per entry).
            let name = NodeName::new(n.into_vec());
            while next_parent < parent_nodes.len() && parent_nodes[next_parent].name < name {
                next_parent += 1;
            }
            let pnode = parent_nodes.get(next_parent).filter(|p| p.name == name);
            // Handed out while fewer than one per helper are queued (not only when a
            // helper is idle): with 200 directories of 1,000 files, waiting for an idle
            // helper left it idle for half a directory each time (it ran 60% of the walk).
            if is_dir && self.work_rx.len() < self.helpers {
                let tx = self.work_tx.lock().ok().and_then(|g| g.clone());
                if let Some(tx) = tx {
                    let (done, rx) = bounded(1);
                    let job = WalkJob {
                        path: child_path,
                        name,
                        parent: pnode.cloned(),
                        dev,
                        done,
                    };
                    match tx.send(job) {
                        Ok(()) => {
                            away.push((entries.len(), rx));
                            entries.push(Entry::Pending);
                            continue;
                        }
                        Err(e) => {
                            let job = e.into_inner();
                            entries.extend(self.entry(
                                &job.path,
                                &job.name,
                                job.parent.as_ref(),
                                Some(dev),
                                dir_fd,
                            )?);
                            continue;
                        }
                    }
                }
            }
            entries.extend(self.entry(&child_path, &name, pnode, Some(dev), dir_fd)?);
        }
        let mut skipped = false;
        for (i, rx) in away {
            match self.wait_for(&rx)? {
                Some(e) => entries[i] = e,
                None => skipped = true,
            }
        }
        if skipped {
            entries.retain(|e| !matches!(e, Entry::Pending));
        }
        Ok(entries)
    }

    fn run_job(&self, job: WalkJob) {
        let r = self.entry(
            &job.path,
            &job.name,
            job.parent.as_ref(),
            Some(job.dev),
            None,
        );
        let _ = job.done.send(r);
    }

    /// Waits for a handed-out subdirectory, walking other handed-out ones meanwhile.
    fn wait_for(&self, rx: &Receiver<Result<Option<Entry>>>) -> Result<Option<Entry>> {
        let stopped = || Error::new(crate::Kind::Io, "backup pipeline stopped");
        loop {
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            let got = crossbeam_channel::select! {
                recv(rx) -> r => Ok(r),
                recv(self.work_rx) -> job => Err(job),
            };
            match got {
                Ok(r) => return r.map_err(|_| stopped())?,
                Err(Ok(job)) => self.run_job(job),
                // No more work can come: only the result is left to wait for.
                Err(Err(_)) => return rx.recv().map_err(|_| stopped())?,
            }
        }
    }

    /// A helper walker thread: walks handed-out subdirectories until the walk is over.
    pub(super) fn serve(&self) {
        loop {
            match self.work_rx.recv() {
                Ok(job) => self.run_job(job),
                Err(_) => return,
            }
        }
    }

    /// One filesystem object: a Ready node, a file job, or a directory walked recursively.
    /// `dev` is the device of the directory holding it (None for a backup target): with
    /// --one-file-system, objects on another device are left out, except directories
    /// (mount points), which are kept empty, like restic does.
    fn entry(
        &self,
        path: &Path,
        name: &NodeName,
        parent: Option<&Node>,
        dev: Option<u64>,
        dir_fd: Option<BorrowedFd>,
    ) -> Result<Option<Entry>> {
        let real = self.actual(path);
        let copy = self.is_file_copy(path);
        // lstat (and the open of a file to read): relative to the open directory when there
        // is one (no path walk in the kernel); a source map may put a child elsewhere, so
        // then by its full path.
        let at = dir_fd.filter(|_| self.opts.source_map.is_empty());
        let meta = match at {
            Some(fd) => rfs::statat(fd, name.as_os_str(), rfs::AtFlags::SYMLINK_NOFOLLOW)
                .map(|m| Stat::from(&m))
                .map_err(std::io::Error::from),
            _ => std::fs::symlink_metadata(&real).map(|m| Stat::from(&m)),
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        if self.excluded(path) {
            return Ok(None);
        }
        let ft = meta;
        if let Some(max) = self.opts.exclude_larger_than {
            if crate::exclude::exceeds_size(meta.size, ft.is_dir(), max) {
                return Ok(None);
            }
        }
        let foreign = self.opts.one_file_system && dev.is_some_and(|d| d != meta.dev);
        if foreign && !ft.is_dir() {
            return Ok(None);
        }
        // Unchanged regular file: reuse the parent's node content without reading xattrs
        // (setting or removing one changes the ctime, so the parent's are still right).
        if ft.is_file() && !copy {
            if let Some(p) = parent {
                if p.node_type == NodeType::File
                    && p.size == meta.size
                    && p.inode == meta.ino
                    && p.mtime.timestamp() == meta.mtime
                    && p.mtime.timestamp_subsec_nanos() == meta.mtime_nsec
                    && p.ctime.timestamp() == meta.ctime
                    && p.ctime.timestamp_subsec_nanos() == meta.ctime_nsec
                    && p.content.as_ref().is_some_and(|c| {
                        self.vouched || c.iter().all(|id| self.index.has(BlobType::Data, id))
                    })
                {
                    let mut node = Node::from_stat(&real, name.clone(), &meta, false)
                        .map_err(|e| Error::io(path.display(), e))?;
                    node.extended_attributes = p.extended_attributes.clone();
                    node.content = p.content.clone();
                    self.counts.files_unmodified.fetch_add(1, Ordering::Relaxed);
                    self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                    self.progress
                        .bytes_done
                        .fetch_add(meta.size, Ordering::Relaxed);
                    return Ok(Some(Entry::Ready(node)));
                }
            }
        }
        // A copy standing in for a file: the original's metadata, the copy's size.
        let original = if copy && ft.is_file() {
            std::fs::metadata(path).ok().filter(|m| m.is_file())
        } else {
            None
        };
        let node = match original {
            Some(om) => {
                Node::from_path(path, name.clone(), &om, self.opts.with_xattrs).map(|mut n| {
                    n.size = meta.size;
                    n
                })
            }
            None => Node::from_stat(&real, name.clone(), &meta, self.opts.with_xattrs),
        };
        let node = match node {
            Ok(n) => n,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        if ft.is_file() {
            if parent.is_some_and(|p| p.node_type == NodeType::File) {
                self.counts.files_changed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counts.files_new.fetch_add(1, Ordering::Relaxed);
            }
            // Opened here, like the lstat above, and its head asked of the kernel, so the
            // disk reads it while the workers chunk the files queued before it.
            let opened = self.readahead.open_ahead(meta.size, || {
                open_source(at.map(|fd| (fd, name.as_os_str())), &real)
            });
            let (file, asked) = match opened {
                Some((f, n)) => (Some(f), n),
                None => (None, 0),
            };
            let (tx, rx) = bounded(1);
            self.files
                .send(FileJob {
                    source: Source {
                        path: real.to_path_buf(),
                        file,
                        size: meta.size,
                        asked,
                    },
                    done: tx,
                })
                .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?;
            return Ok(Some(Entry::File(node, rx)));
        }
        if ft.is_dir() {
            // A mount point met with --one-file-system is kept, empty.
            let mut names = Vec::new();
            let mut dir_fd = None;
            if !foreign {
                match list_dir(&real, &mut names) {
                    Ok((fd, err)) => {
                        if let Some(e) = err {
                            self.warn(format!("{}: {e}", path.display()));
                        }
                        dir_fd = Some(fd);
                    }
                    Err(e) => {
                        self.warn(format!("{}: {e}", path.display()));
                        return Ok(None);
                    }
                }
            }
            names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            // A tagged directory (--exclude-if-present) keeps only its tag file, like restic.
            let tags: Vec<&str> = self
                .opts
                .exclude_if_present
                .iter()
                .filter(|r| r.excludes_dir(&real))
                .map(|r| r.filename.as_str())
                .collect();
            if !tags.is_empty() {
                names.retain(|(n, _)| tags.iter().any(|t| n.as_encoded_bytes() == t.as_bytes()));
            }
            self.check_live_sqlite(path, &real, &names);
            let parent_tree = self.load_tree(parent.and_then(|p| p.subtree));
            // Unchanged files are checked against the index (their content must still be
            // there): fetch those index lines now, together, while the children are
            // listed and stat'ed.
            if let Some(p) = parent_tree.as_ref().filter(|_| !self.vouched) {
                let content = p.nodes.iter().filter_map(|n| n.content.as_ref()).flatten();
                self.index.prefetch(BlobType::Data, content);
            }
            let entries = self.walk_children(
                path,
                dir_fd.as_ref().map(|fd| fd.as_fd()),
                names,
                parent_tree.as_ref().map(|p| &p.nodes[..]),
                meta.dev,
            )?;
            drop(dir_fd);
            self.progress.dirs_done.fetch_add(1, Ordering::Relaxed);
            let rx = self.send_dir(entries, parent_tree)?;
            return Ok(Some(Entry::Dir(node, rx)));
        }
        // Symlinks, devices, fifos, sockets: metadata only.
        Ok(Some(Entry::Ready(node)))
    }
}
