//! Restore: recreate a snapshot (or a part of it) under a target directory.
//!
//! Plan first (walk the trees, decide every file's blobs and offsets), then fetch each
//! needed pack once, on several threads, and write blobs where they belong (files are
//! written out of order with positioned writes, so memory is bounded by one pack range per
//! thread, not by the data). A blob that cannot be read or verified fails only the files
//! that need it: the rest are restored and the failures are listed. Existing files are
//! never overwritten unless `overwrite` is set. Metadata is applied last, directories
//! deepest first, so their times stick.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::exclude::PatternSet;
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeType};
use crate::pack::{self, BlobType, PackedBlob};
use crate::repository::Repository;
use serde::Serialize;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: PathBuf,
    /// Restore only this directory (or file) of the snapshot: `snapshot:subpath`.
    pub subpath: Option<String>,
    pub include: PatternSet,
    pub exclude: PatternSet,
    pub overwrite: bool,
    pub verify: bool,
    pub threads: usize,
    pub dry_run: bool,
}

/// One path that could not be restored and why.
#[derive(Serialize, Debug, Clone)]
pub struct RestoreError {
    pub path: String,
    pub error: String,
}

#[derive(Serialize, Debug, Default)]
pub struct RestoreSummary {
    pub files_restored: u64,
    pub dirs_restored: u64,
    pub bytes_written: u64,
    /// Existing files left alone because `overwrite` was not given.
    pub files_skipped_existing: Vec<String>,
    pub errors: Vec<RestoreError>,
    /// Files re-read and verified (with `verify`).
    pub files_verified: u64,
    pub total_duration: f64,
}

/// Live counters for a progress display.
#[derive(Default, Debug)]
pub struct Progress {
    pub total_bytes: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_done: AtomicU64,
}

/// Blobs to fetch from one pack: each blob and the (file, offset) places it goes.
type PackWork = Vec<(PackedBlob, Vec<(usize, u64)>)>;

struct PlannedFile {
    path: PathBuf,
    node: Node,
    /// (blob id, plaintext length) in file order.
    blobs: Vec<(Id, u64)>,
    remaining: AtomicU64,
    failed: Mutex<Option<String>>,
}

#[derive(Default)]
struct Plan {
    dirs: Vec<(PathBuf, Node, usize)>,
    files: Vec<PlannedFile>,
    specials: Vec<(PathBuf, Node)>,
    hardlinks: Vec<(PathBuf, PathBuf, Node)>,
    errors: Vec<RestoreError>,
    skipped: Vec<String>,
}

struct Planner<'a> {
    repo: &'a Repository,
    index: &'a Index,
    opts: &'a RestoreOptions,
    plan: Plan,
    inodes: HashMap<(u64, u64), PathBuf>,
}

impl Planner<'_> {
    fn selected(&self, snap_path: &str) -> bool {
        if !self.opts.exclude.is_empty() && self.opts.exclude.matches(snap_path) {
            return false;
        }
        self.opts.include.is_empty() || self.opts.include.matches(snap_path)
    }

    fn load_tree(&self, id: &Id) -> Result<Vec<Node>> {
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, id)?;
        node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {id}: {e}")))
    }

    /// Plans a directory's children; returns whether anything under it was selected.
    fn walk(&mut self, tree: &Id, snap_dir: &str, dest: &Path, depth: usize) -> bool {
        let nodes = match self.load_tree(tree) {
            Ok(n) => n,
            Err(e) => {
                self.plan.errors.push(RestoreError {
                    path: dest.display().to_string(),
                    error: format!("directory contents could not be read: {e}"),
                });
                return true;
            }
        };
        let mut any = false;
        for n in nodes {
            if !n.name.is_plain_component() {
                self.plan.errors.push(RestoreError {
                    path: dest.display().to_string(),
                    error: format!("invalid file name {:?} in snapshot, skipped", n.name),
                });
                continue;
            }
            let snap_path = format!("{}/{}", snap_dir.trim_end_matches('/'), n.name);
            let path = dest.join(n.name.as_path());
            if n.node_type == NodeType::Dir {
                if !self.opts.exclude.is_empty() && self.opts.exclude.matches(&snap_path) {
                    continue;
                }
                let whole = self.opts.include.is_empty() || self.opts.include.matches(&snap_path);
                if !whole && !self.opts.include.child_may_match(&snap_path) {
                    continue;
                }
                let idx = self.plan.dirs.len();
                self.plan.dirs.push((path.clone(), n.clone(), depth + 1));
                let inner = match n.subtree {
                    Some(sub) => self.walk(&sub, &snap_path, &path, depth + 1),
                    None => false,
                };
                if whole || inner {
                    any = true;
                } else {
                    // Nothing selected below: don't create it.
                    self.plan.dirs.truncate(idx);
                }
                continue;
            }
            if !self.selected(&snap_path) {
                continue;
            }
            any = true;
            if std::fs::symlink_metadata(&path).is_ok() && !self.opts.overwrite {
                self.plan.skipped.push(path.display().to_string());
                continue;
            }
            if n.links > 1 && n.node_type != NodeType::Dir {
                let key = (n.device_id, n.inode);
                if let Some(first) = self.inodes.get(&key) {
                    self.plan.hardlinks.push((first.clone(), path, n));
                    continue;
                }
                self.inodes.insert(key, path.clone());
            }
            match n.node_type {
                NodeType::File => {
                    let mut blobs = Vec::new();
                    let mut missing = None;
                    for id in n.content.iter().flatten() {
                        match self.index.get(BlobType::Data, id) {
                            Some(loc) => blobs.push((*id, loc.blob.data_length() as u64)),
                            None => {
                                missing = Some(format!(
                                    "data blob {id} is missing from the repository index"
                                ));
                                blobs.push((*id, 0));
                            }
                        }
                    }
                    let remaining = AtomicU64::new(blobs.len() as u64);
                    self.plan.files.push(PlannedFile {
                        path,
                        node: n,
                        blobs,
                        remaining,
                        failed: Mutex::new(missing),
                    });
                }
                _ => self.plan.specials.push((path, n)),
            }
        }
        any
    }
}

fn err_entry(path: &Path, e: impl std::fmt::Display) -> RestoreError {
    RestoreError {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

/// Finds the tree (and the snapshot path it has) for `subpath` below `root`.
fn descend(repo: &Repository, index: &Index, root: Id, subpath: &str) -> Result<(Id, String)> {
    let mut tree = root;
    let mut at = String::new();
    for comp in subpath.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let nodes = node::decode_tree(&repo.load_blob(index, BlobType::Tree, &tree)?)
            .map_err(|e| Error::corrupt(format!("tree {tree}: {e}")))?;
        let n = nodes.iter().find(|n| n.name == comp).ok_or_else(|| {
            Error::not_found(format!(
                "path {subpath:?} is not in the snapshot (no {comp:?} in {at}/)"
            ))
        })?;
        at = format!("{at}/{comp}");
        tree = match (n.node_type, n.subtree) {
            (NodeType::Dir, Some(s)) => s,
            _ => {
                return Err(Error::invalid(format!(
                    "{at} is not a directory in the snapshot: restore its parent with --include instead"
                )))
            }
        };
    }
    Ok((tree, at))
}

/// Restores the tree `root` (a snapshot's tree) into `opts.target`.
pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let started = std::time::Instant::now();
    let index = repo.load_index()?;
    let (tree, snap_dir) = match &opts.subpath {
        Some(sub) => descend(repo, &index, root, sub)?,
        None => (root, String::new()),
    };
    std::fs::create_dir_all(&opts.target).map_err(|e| Error::io(opts.target.display(), e))?;
    let mut planner = Planner {
        repo,
        index: &index,
        opts,
        plan: Plan::default(),
        inodes: HashMap::new(),
    };
    planner.walk(
        &tree,
        if snap_dir.is_empty() { "/" } else { &snap_dir },
        &opts.target,
        0,
    );
    let mut plan = planner.plan;
    let mut summary = RestoreSummary {
        files_skipped_existing: std::mem::take(&mut plan.skipped),
        errors: std::mem::take(&mut plan.errors),
        ..Default::default()
    };
    if opts.dry_run {
        summary.files_restored = plan.files.len() as u64;
        summary.dirs_restored = plan.dirs.len() as u64;
        return Ok(summary);
    }

    for (path, _, _) in &plan.dirs {
        if let Err(e) = std::fs::create_dir_all(path) {
            summary.errors.push(err_entry(path, e));
        }
    }

    // Create every file at its final size, then fill in blobs pack by pack.
    let total: u64 = plan
        .files
        .iter()
        .map(|f| f.blobs.iter().map(|b| b.1).sum::<u64>())
        .sum();
    progress.total_bytes.store(total, Ordering::Relaxed);
    let mut by_pack: HashMap<Id, PackWork> = HashMap::new();
    let mut blob_slot: HashMap<Id, (Id, usize)> = HashMap::new();
    let threads = opts.threads.max(1);
    crate::parallel::for_each(&plan.files, threads, 256, |f| {
        if f.failed.lock().map(|g| g.is_some()).unwrap_or(false) {
            return;
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&f.path)
            .and_then(|file| file.set_len(f.blobs.iter().map(|b| b.1).sum()));
        if let Err(e) = created {
            if let Ok(mut g) = f.failed.lock() {
                *g = Some(format!("cannot create: {e}"));
            }
        }
    });
    for (fi, f) in plan.files.iter().enumerate() {
        if f.failed.lock().map(|g| g.is_some()).unwrap_or(false) {
            continue;
        }
        let mut off = 0u64;
        for (id, len) in &f.blobs {
            if let Some((pack, i)) = blob_slot.get(id) {
                if let Some(list) = by_pack.get_mut(pack) {
                    list[*i].1.push((fi, off));
                }
            } else if let Some(loc) = index.get(BlobType::Data, id) {
                let list = by_pack.entry(loc.pack).or_default();
                blob_slot.insert(*id, (loc.pack, list.len()));
                list.push((loc.blob, vec![(fi, off)]));
            }
            off += len;
        }
    }
    drop(blob_slot);
    let bytes_written = AtomicU64::new(0);
    let mut packs: Vec<(Id, PackWork)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    let queue = Mutex::new(packs.into_iter());
    let files = &plan.files;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut bufs = (Vec::new(), Vec::new());
                loop {
                    let Some((pack_id, mut blobs)) = queue.lock().ok().and_then(|mut q| q.next())
                    else {
                        return;
                    };
                    blobs.sort_by_key(|(b, _)| b.offset);
                    restore_pack(
                        repo,
                        &pack_id,
                        &blobs,
                        files,
                        &bytes_written,
                        progress,
                        &mut bufs,
                    );
                }
            });
        }
    });

    // Files whose blobs all arrived get their metadata now.
    let file_errors = Mutex::new(Vec::new());
    let restored = AtomicU64::new(0);
    crate::parallel::for_each(&plan.files, threads, 256, |f| {
        let failed = f.failed.lock().ok().and_then(|g| g.clone());
        let err = match failed {
            Some(e) => Some(err_entry(&f.path, e)),
            None => {
                restored.fetch_add(1, Ordering::Relaxed);
                f.node
                    .restore_metadata(&f.path)
                    .err()
                    .map(|e| err_entry(&f.path, format!("metadata: {e}")))
            }
        };
        if let (Some(e), Ok(mut all)) = (err, file_errors.lock()) {
            all.push(e);
        }
    });
    summary.files_restored += restored.load(Ordering::Relaxed);
    let mut file_errors = file_errors.into_inner().unwrap_or_default();
    file_errors.sort_by(|a, b| a.path.cmp(&b.path));
    summary.errors.extend(file_errors);
    for (path, n) in &plan.specials {
        if opts.overwrite {
            let _ = std::fs::remove_file(path);
        }
        if n.node_type == NodeType::Socket {
            continue;
        }
        match n
            .create_special(path)
            .and_then(|_| n.restore_metadata(path))
        {
            Ok(()) => summary.files_restored += 1,
            Err(e) => summary.errors.push(err_entry(path, e)),
        }
    }
    for (first, path, _) in &plan.hardlinks {
        if opts.overwrite {
            let _ = std::fs::remove_file(path);
        }
        match std::fs::hard_link(first, path) {
            Ok(()) => summary.files_restored += 1,
            Err(e) => summary.errors.push(err_entry(
                path,
                format!("hard link to {}: {e}", first.display()),
            )),
        }
    }
    if opts.verify {
        for f in &plan.files {
            if f.failed.lock().map(|g| g.is_some()).unwrap_or(true) {
                continue;
            }
            match verify_file(&f.path, &f.blobs) {
                Ok(()) => summary.files_verified += 1,
                Err(e) => summary
                    .errors
                    .push(err_entry(&f.path, format!("verification failed: {e}"))),
            }
        }
    }
    plan.dirs.sort_by_key(|d| std::cmp::Reverse(d.2));
    for (path, n, _) in &plan.dirs {
        if let Err(e) = n.restore_metadata(path) {
            summary
                .errors
                .push(err_entry(path, format!("metadata: {e}")));
        }
        summary.dirs_restored += 1;
    }
    summary.bytes_written = bytes_written.load(Ordering::Relaxed);
    summary.total_duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The most bytes of a pack read at once (a blob larger than this is read whole).
const READ_RANGE_MAX: u64 = 8 << 20;

/// Reads the needed part of one pack and writes its blobs into the planned files.
fn restore_pack(
    repo: &Repository,
    pack_id: &Id,
    blobs: &[(PackedBlob, Vec<(usize, u64)>)],
    files: &[PlannedFile],
    bytes_written: &AtomicU64,
    progress: &Progress,
    (data, scratch): &mut (Vec<u8>, Vec<u8>),
) {
    let fail_all = |msg: String| {
        for (_, targets) in blobs {
            for (fi, _) in targets {
                if let Ok(mut g) = files[*fi].failed.lock() {
                    g.get_or_insert_with(|| msg.clone());
                }
            }
        }
    };
    // Read in ranges of at most READ_RANGE_MAX covering runs of needed blobs: memory
    // stays at threads x (range + largest blob) however large the restore.
    let mut i = 0;
    while i < blobs.len() {
        let start = blobs[i].0.offset as u64;
        let mut j = i;
        let mut end = start;
        while j < blobs.len() {
            let b = &blobs[j].0;
            let b_end = b.offset as u64 + b.length as u64;
            if b_end - start > READ_RANGE_MAX && j > i {
                break;
            }
            end = end.max(b_end);
            j += 1;
        }
        let read = repo.backend().read_range_into(
            FileType::Pack,
            &pack_id.to_hex(),
            start,
            end - start,
            data,
        );
        match read {
            Ok(()) => {}
            Err(e) => {
                fail_all(format!("pack {pack_id}: {e}"));
                return;
            }
        };
        for (blob, targets) in &blobs[i..j] {
            let from = (blob.offset as u64 - start) as usize;
            let stored = &mut data[from..from + blob.length as usize];
            let plain = match pack::decode_blob_in_place(repo.key(), blob, stored, scratch) {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("data blob {} in pack {pack_id} is damaged: {e}", blob.id);
                    for (fi, _) in targets {
                        if let Ok(mut g) = files[*fi].failed.lock() {
                            g.get_or_insert_with(|| msg.clone());
                        }
                    }
                    continue;
                }
            };
            for (fi, off) in targets {
                let f = &files[*fi];
                let r = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f.path)
                    .and_then(|file| file.write_all_at(plain, *off));
                match r {
                    Ok(()) => {
                        bytes_written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                        progress
                            .bytes_done
                            .fetch_add(plain.len() as u64, Ordering::Relaxed);
                        if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                            progress.files_done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut g) = f.failed.lock() {
                            g.get_or_insert_with(|| format!("write: {e}"));
                        }
                    }
                }
            }
        }
        i = j;
    }
}

/// Re-reads a restored file and checks every blob's hash.
fn verify_file(path: &Path, blobs: &[(Id, u64)]) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut buf = Vec::new();
    let mut off = 0u64;
    for (id, len) in blobs {
        buf.resize(*len as usize, 0);
        f.read_exact(&mut buf)?;
        if Id::hash(&buf) != *id {
            return Err(std::io::Error::other(format!(
                "content at offset {off} does not match blob {id}"
            )));
        }
        off += len;
    }
    let mut extra = [0u8; 1];
    if f.read(&mut extra)? != 0 {
        return Err(std::io::Error::other("file is longer than in the snapshot"));
    }
    Ok(())
}
