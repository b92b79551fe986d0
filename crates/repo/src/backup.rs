//! Backup: walk the sources, reuse unchanged files from the parent snapshot, chunk and
//! store changed ones on all cores, build trees bottom-up, then write the snapshot.
//!
//! Pipeline (threads): one walker (lstat, excludes, change detection) -> N file workers
//! (read, chunk, hash, compress, encrypt, pack; see `writer`) -> one tree finisher that
//! assembles each directory once its files are stored, in post-order. Order of durability:
//! packs -> index -> snapshot. An unreadable file or directory is skipped with a warning
//! (the summary counts it; the CLI exits 3 like restic).

use crate::error::{Error, Result};
use crate::exclude::{ExcludeIfPresent, PatternSet};
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeName, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::PackWriter;
use chrono::{DateTime, FixedOffset};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

mod store;
use store::{store_file, store_stream, Buffers, ChangeWatch};

/// Which parent snapshot change detection compares against.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The newest snapshot with the same host and paths (restic's default).
    #[default]
    Latest,
    /// A given snapshot.
    Snapshot(Id),
    /// None: read every file (`--force`).
    None,
}

/// A stream backed up as one file (`--stdin`, or a command's output).
pub struct StdinSource {
    pub filename: String,
    pub reader: Box<dyn Read + Send>,
    /// Called at end of input, before anything refers to the data: an error (e.g. the
    /// dump command failed) aborts the backup and no snapshot is written.
    pub on_eof: Option<Box<dyn FnOnce() -> std::result::Result<(), String> + Send>>,
}

pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: PatternSet,
    /// The exclude patterns as given, recorded in the snapshot.
    pub exclude_strings: Vec<String>,
    pub exclude_if_present: Vec<ExcludeIfPresent>,
    pub one_file_system: bool,
    /// `--exclude-larger-than`: files (never directories) above this size are left out.
    pub exclude_larger_than: Option<u64>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub time: Option<DateTime<FixedOffset>>,
    pub parent: ParentChoice,
    pub stdin: Option<StdinSource>,
    pub with_xattrs: bool,
    pub threads: usize,
    pub dry_run: bool,
    /// `(recorded, actual)`: back up what is at `actual` as if it were at `recorded` — a
    /// filesystem snapshot mounted elsewhere, or a consistent copy of a database file.
    /// Paths, excludes and parent matching use the recorded path, so snapshots and change
    /// detection stay stable across runs. For an exact file mapping, the metadata is the
    /// recorded file's (when it exists) and the content and size the copy's, and the file
    /// is always read (its live original may have changed only in a `-wal` file).
    pub source_map: Vec<(PathBuf, PathBuf)>,
    /// Streams stored as files at these absolute paths of the snapshot (database dumps),
    /// beside the files read from disk; a stream's `on_eof` error aborts the backup.
    pub streams: Vec<(PathBuf, StdinSource)>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            paths: Vec::new(),
            excludes: PatternSet::default(),
            exclude_strings: Vec::new(),
            exclude_if_present: Vec::new(),
            one_file_system: false,
            exclude_larger_than: None,
            tags: Vec::new(),
            host: None,
            time: None,
            parent: ParentChoice::Latest,
            stdin: None,
            with_xattrs: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            dry_run: false,
            source_map: Vec::new(),
            streams: Vec::new(),
        }
    }
}

/// Live counters, readable from a progress thread while the backup runs.
#[derive(Default, Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub dirs_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_read: AtomicU64,
    pub errors: AtomicU64,
}

/// What a backup did, in restic's summary terms.
#[derive(Serialize, Debug, Default, Clone)]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Bytes actually read from files (unchanged files are not read).
    pub bytes_read: u64,
    pub total_duration: f64,
    pub snapshot_id: Option<Id>,
    pub parent: Option<Id>,
    pub warnings: Vec<String>,
    /// Things worth knowing that do not make the snapshot incomplete (a live SQLite
    /// database backed up as a plain file).
    pub notices: Vec<String>,
}

/// Why a file could not be stored: its source could not be read (skip it, warn), or the
/// repository failed (abort the backup).
enum FileError {
    Source(String),
    Repository(Error),
}

type FileResult = std::result::Result<(Vec<Id>, u64), FileError>;

enum Entry {
    Ready(Node),
    File(Node, Receiver<FileResult>),
    Dir(Node, Receiver<Result<Id>>),
}

struct DirJob {
    entries: Vec<Entry>,
    /// The same directory's tree in the parent snapshot: decides new/changed/unmodified.
    parent_tree: Option<Id>,
    done: Sender<Result<Id>>,
}

struct FileJob {
    path: PathBuf,
    done: Sender<FileResult>,
}

#[derive(Default)]
struct Counts {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
}

/// A node of the virtual tree of backup targets (`/home/a` and `/home/b` share `home`).
/// Like restic, a relative target is stored under its relative components (`backup docs`
/// gives `/docs` in the snapshot, `../x` gives `/x`), an absolute one under its full path;
/// `fs_path` is where the node is read from.
#[derive(Default)]
struct Targets {
    children: BTreeMap<NodeName, Targets>,
    is_target: bool,
    /// A streamed file (index into the walker's streams).
    stream: Option<usize>,
    fs_path: PathBuf,
    /// For top-level nodes: the directory the target's components start from (`/`, `.`,
    /// `../..`); two targets with the same first name but different roots get `name-1`.
    root: PathBuf,
}

impl Targets {
    /// Adds a streamed file at an absolute path.
    fn add_stream(&mut self, path: &Path, index: usize) {
        let (root, components) = split_target(path);
        let mut fs_path = root;
        let mut t = self;
        for c in &components {
            fs_path.push(c.as_path());
            t = t.children.entry(c.clone()).or_default();
            t.fs_path = fs_path.clone();
        }
        t.stream = Some(index);
    }

    fn has_stream(&self) -> bool {
        self.stream.is_some() || self.children.values().any(Targets::has_stream)
    }

    /// Adds one target path (as the user gave it, lexically cleaned).
    fn add(&mut self, target: &Path) {
        let (root, components) = split_target(target);
        if components.is_empty() {
            return;
        }
        let first = components[0].clone();
        let mut name = first.clone();
        let mut i = 0;
        while let Some(other) = self.children.get(&name) {
            if other.root == root {
                break;
            }
            i += 1;
            let mut renamed = first.as_bytes().to_vec();
            renamed.extend_from_slice(format!("-{i}").as_bytes());
            name = NodeName::new(renamed);
        }
        let mut fs_path = root.join(first.as_path());
        let mut t = self.children.entry(name).or_default();
        t.root = root.clone();
        t.fs_path = fs_path.clone();
        for c in &components[1..] {
            fs_path.push(c.as_path());
            t = t.children.entry(c.clone()).or_default();
            t.fs_path = fs_path.clone();
        }
        t.is_target = true;
    }
}

/// Lexically cleans `p` (no filesystem access) and splits it into the directory its
/// stored components start from and those components: `/a/b` -> (`/`, [a, b]),
/// `x/../y` -> (`.`, [y]), `../../z` -> (`../..`, [z]).
fn split_target(p: &Path) -> (PathBuf, Vec<NodeName>) {
    let mut root = PathBuf::from(if p.is_absolute() { "/" } else { "." });
    let mut parts: Vec<NodeName> = Vec::new();
    for c in p.components() {
        match c {
            // `..` drops the last component; with none left it climbs the root instead.
            Component::ParentDir if parts.pop().is_none() && !p.is_absolute() => {
                root.push("..");
            }
            Component::Normal(n) => parts.push(NodeName::from(n)),
            _ => {}
        }
    }
    (root, parts)
}

/// Expands a target that names only a directory (`.`, `..`, `../..`) into its entries,
/// like restic: `backup .` stores the current directory's entries at the snapshot root.
fn expand_relative_target(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (root, parts) = split_target(p);
    if !parts.is_empty() || p.is_absolute() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root)? {
        out.push(root.join(e?.file_name()));
    }
    out.sort();
    Ok(out)
}

fn clean_absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("current directory", e))?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

/// What the walker needs of [`BackupOptions`] (which, holding the stdin reader, cannot be
/// shared between walker threads).
struct WalkOptions<'a> {
    excludes: &'a PatternSet,
    exclude_if_present: &'a [ExcludeIfPresent],
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
    with_xattrs: bool,
    source_map: &'a [(PathBuf, PathBuf)],
}

struct Walker<'a> {
    repo: &'a Repository,
    index: &'a Index,
    opts: WalkOptions<'a>,
    files: Sender<FileJob>,
    dirs: Sender<DirJob>,
    progress: &'a Progress,
    counts: &'a Counts,
    warnings: &'a Mutex<Vec<String>>,
    notices: &'a Mutex<Vec<String>>,
    streams: Mutex<Vec<Option<StdinSource>>>,
    writer: &'a PackWriter<'a>,
    /// Subdirectories handed to another walker thread (see [`Walker::walk_children`]);
    /// `None` once the walk is over, which lets the helpers go.
    work_tx: Mutex<Option<Sender<WalkJob>>>,
    work_rx: Receiver<WalkJob>,
    /// Walker threads waiting for work (idle helpers, and walkers waiting for a result).
    idle: AtomicUsize,
}

/// A subdirectory walked by another walker thread; its entry comes back on `done`.
struct WalkJob {
    path: PathBuf,
    name: NodeName,
    parent: Option<Node>,
    dev: u64,
    done: Sender<Result<Option<Entry>>>,
}

/// Where a recorded path really is: the longest `source_map` prefix replaced.
fn actual_path<'p>(map: &[(PathBuf, PathBuf)], recorded: &'p Path) -> std::borrow::Cow<'p, Path> {
    let best = map
        .iter()
        .filter(|(r, _)| recorded.starts_with(r))
        .max_by_key(|(r, _)| r.components().count());
    match best {
        Some((r, a)) => match recorded.strip_prefix(r) {
            Ok(rest) if rest.as_os_str().is_empty() => std::borrow::Cow::Owned(a.clone()),
            Ok(rest) => std::borrow::Cow::Owned(a.join(rest)),
            Err(_) => std::borrow::Cow::Borrowed(recorded),
        },
        None => std::borrow::Cow::Borrowed(recorded),
    }
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

    fn load_tree(&self, id: Option<Id>) -> Option<Vec<Node>> {
        let id = id?;
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, &id).ok()?;
        node::decode_tree(&bytes).ok()
    }

    fn excluded(&self, path: &Path) -> bool {
        !self.opts.excludes.is_empty() && self.opts.excludes.matches_path(path)
    }

    /// Sends a directory's tree job; returns the receiver of its tree id.
    fn send_dir(
        &self,
        entries: Vec<Entry>,
        parent_tree: Option<Id>,
    ) -> Result<Receiver<Result<Id>>> {
        let (tx, rx) = bounded(1);
        self.dirs
            .send(DirJob {
                entries,
                parent_tree,
                done: tx,
            })
            .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?;
        Ok(rx)
    }

    /// Walks the virtual tree of targets: intermediate directories get their real metadata
    /// but only the targets' children.
    fn walk_targets(&self, t: &Targets, parent: Option<&[Node]>) -> Result<Vec<Entry>> {
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
                if let Some(e) = self.entry(path, name, parent_node, None)? {
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
            let sub = self.walk_targets(child, sub_parent.as_deref())?;
            node.subtree = None;
            let rx = self.send_dir(sub, parent_node.and_then(|n| n.subtree))?;
            entries.push(Entry::Dir(node, rx));
        }
        Ok(entries)
    }

    /// The entries of a directory's children (`names`, sorted), in order. A subdirectory
    /// goes to another walker thread when one is idle; while waiting for those, this
    /// thread walks handed-out subdirectories itself, so no walker sits idle while there
    /// is work. A directory's tree job is sent only after those of all its subdirectories
    /// (each walk returns after sending its own), so the tree finisher, which takes jobs
    /// in order, always finds a directory's children done before it.
    fn walk_children(
        &self,
        dir: &Path,
        names: Vec<(std::ffi::OsString, bool)>,
        parent_tree: Option<&[Node]>,
        dev: u64,
    ) -> Result<Vec<Entry>> {
        // Most slots are Done: boxing them would cost an allocation per file.
        #[allow(clippy::large_enum_variant)]
        enum Slot {
            Done(Option<Entry>),
            Away(Receiver<Result<Option<Entry>>>),
        }
        let mut slots = Vec::with_capacity(names.len());
        for (n, is_dir) in names {
            let name = NodeName::from(n.as_os_str());
            let child_path = dir.join(&n);
            let pnode = parent_tree.and_then(|t| {
                t.binary_search_by(|x| x.name.cmp(&name))
                    .ok()
                    .map(|i| &t[i])
            });
            if is_dir && self.idle.load(Ordering::Relaxed) > 0 && self.work_rx.is_empty() {
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
                            slots.push(Slot::Away(rx));
                            continue;
                        }
                        Err(e) => {
                            let job = e.into_inner();
                            slots.push(Slot::Done(self.entry(
                                &job.path,
                                &job.name,
                                job.parent.as_ref(),
                                Some(dev),
                            )?));
                            continue;
                        }
                    }
                }
            }
            slots.push(Slot::Done(self.entry(
                &child_path,
                &name,
                pnode,
                Some(dev),
            )?));
        }
        let mut entries = Vec::with_capacity(slots.len());
        for slot in slots {
            let e = match slot {
                Slot::Done(e) => e,
                Slot::Away(rx) => self.wait_for(&rx)?,
            };
            if let Some(e) = e {
                entries.push(e);
            }
        }
        Ok(entries)
    }

    fn run_job(&self, job: WalkJob) {
        let r = self.entry(&job.path, &job.name, job.parent.as_ref(), Some(job.dev));
        let _ = job.done.send(r);
    }

    /// Waits for a handed-out subdirectory, walking other handed-out ones meanwhile.
    fn wait_for(&self, rx: &Receiver<Result<Option<Entry>>>) -> Result<Option<Entry>> {
        let stopped = || Error::new(crate::Kind::Io, "backup pipeline stopped");
        loop {
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            self.idle.fetch_add(1, Ordering::Relaxed);
            let got = crossbeam_channel::select! {
                recv(rx) -> r => Ok(r),
                recv(self.work_rx) -> job => Err(job),
            };
            self.idle.fetch_sub(1, Ordering::Relaxed);
            match got {
                Ok(r) => return r.map_err(|_| stopped())?,
                Err(Ok(job)) => self.run_job(job),
                // No more work can come: only the result is left to wait for.
                Err(Err(_)) => return rx.recv().map_err(|_| stopped())?,
            }
        }
    }

    /// A helper walker thread: walks handed-out subdirectories until the walk is over.
    fn serve(&self) {
        loop {
            self.idle.fetch_add(1, Ordering::Relaxed);
            let job = self.work_rx.recv();
            self.idle.fetch_sub(1, Ordering::Relaxed);
            match job {
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
    ) -> Result<Option<Entry>> {
        let real = self.actual(path);
        let copy = self.is_file_copy(path);
        let meta = match std::fs::symlink_metadata(&real) {
            Ok(m) => m,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        if self.excluded(path) {
            return Ok(None);
        }
        let ft = meta.file_type();
        if let Some(max) = self.opts.exclude_larger_than {
            if crate::exclude::exceeds_size(meta.size(), ft.is_dir(), max) {
                return Ok(None);
            }
        }
        let foreign = self.opts.one_file_system && dev.is_some_and(|d| d != meta.dev());
        if foreign && !ft.is_dir() {
            return Ok(None);
        }
        // Unchanged regular file: reuse the parent's node content without reading xattrs.
        if ft.is_file() && !copy {
            if let Some(p) = parent {
                if p.node_type == NodeType::File
                    && p.size == meta.size()
                    && p.inode == meta.ino()
                    && p.mtime.timestamp() == meta.mtime()
                    && p.mtime.timestamp_subsec_nanos() as i64 == meta.mtime_nsec()
                    && p.ctime.timestamp() == meta.ctime()
                    && p.ctime.timestamp_subsec_nanos() as i64 == meta.ctime_nsec()
                    && p.content
                        .as_ref()
                        .is_some_and(|c| c.iter().all(|id| self.index.has(BlobType::Data, id)))
                {
                    let mut node = Node::from_path(&real, name.clone(), &meta, false)
                        .map_err(|e| Error::io(path.display(), e))?;
                    node.extended_attributes = p.extended_attributes.clone();
                    node.content = p.content.clone();
                    self.counts.files_unmodified.fetch_add(1, Ordering::Relaxed);
                    self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                    self.progress
                        .bytes_done
                        .fetch_add(meta.size(), Ordering::Relaxed);
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
                    n.size = meta.size();
                    n
                })
            }
            None => Node::from_path(&real, name.clone(), &meta, self.opts.with_xattrs),
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
            let (tx, rx) = bounded(1);
            self.files
                .send(FileJob {
                    path: real.to_path_buf(),
                    done: tx,
                })
                .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?;
            return Ok(Some(Entry::File(node, rx)));
        }
        if ft.is_dir() {
            // A mount point met with --one-file-system is kept, empty.
            let mut names = Vec::new();
            if !foreign {
                let rd = match std::fs::read_dir(&real) {
                    Ok(rd) => rd,
                    Err(e) => {
                        self.warn(format!("{}: {e}", path.display()));
                        return Ok(None);
                    }
                };
                for e in rd {
                    match e {
                        // With whether the listing says it is a directory: a hint for handing
                        // work to another walker thread (the entry is lstat'ed all the same).
                        Ok(e) => {
                            names.push((e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
                        }
                        Err(e) => self.warn(format!("{}: {e}", path.display())),
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
            let entries = self.walk_children(path, names, parent_tree.as_deref(), meta.dev())?;
            self.progress.dirs_done.fetch_add(1, Ordering::Relaxed);
            let rx = self.send_dir(entries, parent.and_then(|p| p.subtree))?;
            return Ok(Some(Entry::Dir(node, rx)));
        }
        // Symlinks, devices, fifos, sockets: metadata only.
        Ok(Some(Entry::Ready(node)))
    }
}

/// Assembles trees in post-order as their children complete.
fn finish_trees(
    jobs: Receiver<DirJob>,
    writer: &PackWriter,
    warnings: &Mutex<Vec<String>>,
    progress: &Progress,
    counts: &Counts,
) -> Result<()> {
    for job in jobs {
        let result = (|| -> Result<Id> {
            let mut nodes = Vec::with_capacity(job.entries.len());
            for e in job.entries {
                match e {
                    Entry::Ready(n) => nodes.push(n),
                    Entry::File(mut n, rx) => match rx.recv() {
                        Ok(Ok((ids, size))) => {
                            n.content = Some(ids);
                            n.size = size;
                            nodes.push(n);
                        }
                        Ok(Err(FileError::Source(msg))) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut w) = warnings.lock() {
                                w.push(msg);
                            }
                        }
                        Ok(Err(FileError::Repository(e))) => return Err(e),
                        Err(_) => {
                            return Err(Error::new(crate::Kind::Io, "backup pipeline stopped"))
                        }
                    },
                    Entry::Dir(mut n, rx) => {
                        let id = rx.recv().map_err(|_| {
                            Error::new(crate::Kind::Io, "backup pipeline stopped")
                        })??;
                        n.subtree = Some(id);
                        nodes.push(n);
                    }
                }
            }
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            let bytes = node::encode_tree(&nodes);
            let id = writer.save(BlobType::Tree, &bytes)?.0;
            match job.parent_tree {
                None => &counts.dirs_new,
                Some(p) if p == id => &counts.dirs_unmodified,
                Some(_) => &counts.dirs_changed,
            }
            .fetch_add(1, Ordering::Relaxed);
            Ok(id)
        })();
        match result {
            Ok(id) => {
                let _ = job.done.send(Ok(id));
            }
            Err(e) => {
                // The real error is returned from here; waiters get a pointer to it.
                let _ = job.done.send(Err(Error::new(
                    e.kind(),
                    "backup stopped by an earlier error",
                )));
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Finds the parent snapshot for change detection.
fn choose_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<Snapshot>> {
    match &opts.parent {
        ParentChoice::None => Ok(None),
        ParentChoice::Snapshot(id) => Ok(Some(Snapshot::load(repo, id)?)),
        ParentChoice::Latest => {
            let filter = crate::snapshot::Filter {
                hosts: vec![host.to_string()],
                paths: paths.to_vec(),
                tags: Vec::new(),
            };
            Ok(Snapshot::load_all(repo)?
                .into_iter()
                .rev()
                .find(|s| filter.matches(s)))
        }
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Runs a backup and writes its snapshot (unless `dry_run`).
pub fn backup(
    repo: &Repository,
    mut opts: BackupOptions,
    progress: &Progress,
) -> Result<BackupSummary> {
    let started = std::time::Instant::now();
    let index = repo.load_index()?;
    let host = opts.host.clone().unwrap_or_else(hostname);
    let mut targets = Targets::default();
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    if let Some(stdin) = &opts.stdin {
        if stdin.filename.is_empty() || stdin.filename.contains('/') {
            return Err(Error::invalid(format!(
                "--stdin-filename {:?} must be a plain file name",
                stdin.filename
            )));
        }
        paths.push(format!("/{}", stdin.filename));
    } else {
        if opts.paths.is_empty() && opts.streams.is_empty() {
            return Err(Error::invalid("nothing to back up: give at least one path"));
        }
        for given in &opts.paths {
            let abs = clean_absolute(given)?;
            if std::fs::symlink_metadata(actual_path(&opts.source_map, &abs)).is_err() {
                missing.push(abs.display().to_string());
                continue;
            }
            let expanded =
                expand_relative_target(given).map_err(|e| Error::io(given.display(), e))?;
            for p in expanded {
                targets.add(&p);
            }
            paths.push(abs.display().to_string());
        }
        if paths.is_empty() && opts.streams.is_empty() {
            return Err(Error::not_found(format!(
                "none of the paths to back up exist: {}",
                missing.join(", ")
            )));
        }
    }
    let mut stream_sources = Vec::new();
    for (i, (p, src)) in std::mem::take(&mut opts.streams).into_iter().enumerate() {
        if opts.stdin.is_some() {
            return Err(Error::invalid(
                "streamed files and --stdin cannot be combined",
            ));
        }
        let abs = clean_absolute(&p)?;
        if !p.is_absolute() || abs.parent().is_none() || abs.file_name().is_none() {
            return Err(Error::invalid(format!(
                "streamed file {}: give an absolute file path",
                p.display()
            )));
        }
        if let Some(t) = opts
            .paths
            .iter()
            .find(|t| clean_absolute(t).is_ok_and(|t| abs.starts_with(t)))
        {
            return Err(Error::invalid(format!(
                "streamed file {} is inside {}, which is backed up from disk: give it a path outside it (e.g. /.cairn/dumps/...)",
                abs.display(),
                t.display()
            )));
        }
        targets.add_stream(&abs, i);
        paths.push(abs.display().to_string());
        stream_sources.push(Some(src));
    }
    // In the order given, without repeats, as restic records them.
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    let parent = choose_parent(repo, &opts, &host, &paths)?;
    let parent_root = match &parent {
        Some(s) => Some(
            node::decode_tree(&repo.load_blob(&index, BlobType::Tree, &s.tree)?)
                .map_err(|e| Error::corrupt(format!("parent snapshot tree: {e}")))?,
        ),
        None => None,
    };
    let writer = PackWriter::new(repo, &index);
    let counts = Counts::default();
    let pol = repo.polynomial();
    let threads = opts.threads.max(1);
    let stdin = opts.stdin.take();
    let notices = Mutex::new(Vec::new());
    let watch = ChangeWatch::new(&notices);
    let warnings = Mutex::new(
        missing
            .iter()
            .map(|m| format!("{m}: does not exist, skipped"))
            .collect::<Vec<_>>(),
    );
    let root_id = std::thread::scope(|s| -> Result<Id> {
        let (file_tx, file_rx) = bounded::<FileJob>(threads * 64);
        let (dir_tx, dir_rx) = bounded::<DirJob>(1024);
        for _ in 0..threads {
            let rx = file_rx.clone();
            let writer = &writer;
            let watch = &watch;
            s.spawn(move || {
                let mut bufs = Buffers::default();
                for job in rx {
                    let r = store_file(&job.path, writer, pol, progress, &mut bufs, watch);
                    let _ = job.done.send(r);
                }
            });
        }
        drop(file_rx);
        let (work_tx, work_rx) = crossbeam_channel::unbounded::<WalkJob>();
        let walker = Walker {
            repo,
            index: &index,
            opts: WalkOptions {
                excludes: &opts.excludes,
                exclude_if_present: &opts.exclude_if_present,
                one_file_system: opts.one_file_system,
                exclude_larger_than: opts.exclude_larger_than,
                with_xattrs: opts.with_xattrs,
                source_map: &opts.source_map,
            },
            files: file_tx,
            dirs: dir_tx,
            progress,
            counts: &counts,
            warnings: &warnings,
            notices: &notices,
            streams: Mutex::new(stream_sources),
            writer: &writer,
            work_tx: Mutex::new(Some(work_tx)),
            work_rx,
            idle: AtomicUsize::new(0),
        };
        let finisher = s.spawn(|| finish_trees(dir_rx, &writer, &warnings, progress, &counts));
        let root_rx = (|| -> Result<Receiver<Result<Id>>> {
            let entries = match stdin {
                Some(src) => {
                    let mut node = Node::for_stdin(src.filename.as_str());
                    let (ids, size) = store_stream(src.reader, &writer, pol, progress)?;
                    if let Some(check) = src.on_eof {
                        check().map_err(|e| Error::new(crate::Kind::Io, e))?;
                    }
                    node.content = Some(ids);
                    node.size = size;
                    counts.files_new.fetch_add(1, Ordering::Relaxed);
                    vec![Entry::Ready(node)]
                }
                None => std::thread::scope(|ws| {
                    // Helper walkers: one per core beyond this one. They end when the
                    // walk is over (the work sender is dropped).
                    for _ in 1..threads {
                        ws.spawn(|| walker.serve());
                    }
                    let r = walker.walk_targets(&targets, parent_root.as_deref());
                    if let Ok(mut tx) = walker.work_tx.lock() {
                        tx.take();
                    }
                    r
                })?,
            };
            walker.send_dir(entries, parent.as_ref().map(|p| p.tree))
        })();
        if let Ok(mut tx) = walker.work_tx.lock() {
            tx.take();
        }
        let Walker { files, dirs, .. } = walker;
        drop(files);
        drop(dirs);
        let root = root_rx.and_then(|rx| {
            rx.recv()
                .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?
        });
        finisher
            .join()
            .map_err(|_| Error::new(crate::Kind::Io, "internal error: tree finisher panicked"))??;
        root
    })?;
    watch.finish();
    let mut summary = BackupSummary {
        files_new: counts.files_new.load(Ordering::Relaxed),
        files_changed: counts.files_changed.load(Ordering::Relaxed),
        files_unmodified: counts.files_unmodified.load(Ordering::Relaxed),
        dirs_new: counts.dirs_new.load(Ordering::Relaxed),
        dirs_changed: counts.dirs_changed.load(Ordering::Relaxed),
        dirs_unmodified: counts.dirs_unmodified.load(Ordering::Relaxed),
        total_files_processed: progress.files_done.load(Ordering::Relaxed),
        total_bytes_processed: progress.bytes_done.load(Ordering::Relaxed),
        bytes_read: progress.bytes_read.load(Ordering::Relaxed),
        parent: parent.as_ref().map(|p| p.id),
        warnings: warnings.into_inner().unwrap_or_default(),
        notices: notices.into_inner().unwrap_or_default(),
        ..Default::default()
    };
    if opts.dry_run {
        summary.total_duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    writer.finish()?;
    summary.data_blobs = writer.stats.data_blobs.load(Ordering::Relaxed);
    summary.tree_blobs = writer.stats.tree_blobs.load(Ordering::Relaxed);
    summary.data_added = writer.stats.data_added.load(Ordering::Relaxed);
    summary.data_added_packed = writer.stats.data_added_packed.load(Ordering::Relaxed);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let mut snap = Snapshot {
        time: opts
            .time
            .unwrap_or_else(|| chrono::Local::now().fixed_offset()),
        parent: parent.as_ref().map(|p| p.id),
        tree: root_id,
        paths,
        hostname: host,
        username: user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        excludes: opts.exclude_strings.clone(),
        tags: opts.tags.clone(),
        original: None,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        id: Id::default(),
    };
    summary.snapshot_id = Some(snap.save(repo)?);
    summary.total_duration = started.elapsed().as_secs_f64();
    Ok(summary)
}
