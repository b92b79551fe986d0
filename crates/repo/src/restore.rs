//! Restore: recreate a snapshot (or a part of it) under a target directory.
//!
//! Plan first ([`plan`]: walk the trees, decide every file's blobs and offsets), then
//! fetch each needed pack once, on several threads, and write blobs where they belong
//! (files are written out of order with positioned writes, so memory is bounded by one
//! pack range per thread, not by the data).
//!
//! Everything below the target is reached through directory descriptors ([`write`]):
//! directories are created with `mkdirat` and opened `O_NOFOLLOW`, files are created
//! `O_EXCL|O_NOFOLLOW` and reopened only if they are still the inode created, metadata is
//! set on descriptors, and symlinks are created last, so a symlink in the target or in
//! the snapshot never redirects a write. Something already in the target is left alone
//! and reported unless `overwrite` is set; then it is replaced (removed, then created),
//! never written through. A non-directory (a symlink included) where the snapshot has a
//! directory is an error for that subtree, or replaced with `overwrite`.
//!
//! A blob that cannot be read or verified fails only the files that need it: those files
//! are removed (restic leaves nothing either), the rest are restored, and the failures
//! are listed. Metadata is applied last, directories deepest first, so their times stick.

mod packs;
mod plan;
mod write;

use crate::error::{Error, Result};
use crate::exclude::PatternSet;
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use plan::{FileState, Plan, PlannedFile};
use serde::Serialize;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use write::{Created, Target};

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
    /// Restore only these paths (files or directories, relative to the restore's top,
    /// compared byte for byte, component by component), each at its place below the
    /// target; empty: everything. Combines with `include`/`exclude`.
    pub picks: Vec<PathBuf>,
}

impl RestoreOptions {
    /// Whether patterns or picks narrow the restore to part of the tree.
    fn narrowed(&self) -> bool {
        !self.include.is_empty() || !self.picks.is_empty()
    }
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
        let n = nodes
            .iter()
            .find(|n| n.name.as_bytes() == comp.as_bytes())
            .ok_or_else(|| {
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

/// What a dry run would find: entries already in the target (looked up by path; a dry
/// run writes nothing).
fn dry_run_summary(plan: &Plan, opts: &RestoreOptions) -> RestoreSummary {
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let mut summary = RestoreSummary {
        dirs_restored: plan.dirs.len() as u64,
        ..Default::default()
    };
    let others = plan
        .files
        .iter()
        .map(|f| &f.entry)
        .chain(plan.hardlinks.iter().map(|h| &h.1))
        .chain(&plan.specials)
        .chain(&plan.symlinks);
    for e in others {
        if !opts.overwrite && exists(&e.path) {
            summary
                .files_skipped_existing
                .push(e.path.display().to_string());
        } else {
            summary.files_restored += 1;
        }
    }
    summary
}

/// Restores the tree `root` (a snapshot's tree) into `opts.target`.
pub fn restore(
    repo: &Repository,
    root: Id,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary> {
    // A restore narrowed to a few files looks their blobs up with the data index left on
    // disk (10M blobs: 355 MB not held for one file); a whole snapshot or directory needs
    // most of it, and `restore_with_index` would read a deferred table whole at once.
    let index = if opts.narrowed() {
        repo.load_index_for_reading()?
    } else {
        repo.load_index()?
    };
    restore_with_index(repo, &index, root, opts, progress)
}

/// What a restore would do to one path below the target.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PreviewAction {
    /// Nothing there yet: created.
    Create,
    /// Something is there and `overwrite` is on: replaced (never written through).
    Overwrite,
    /// Something is there and `overwrite` is off: left alone and reported.
    Skip,
    /// A non-directory (a symlink included) is where the snapshot has a directory on the
    /// way, and `overwrite` is off: this subtree fails, as in the restore.
    Blocked,
}

/// Counts of a preview, for everything or for one pick.
#[derive(Serialize, Debug, Default, Clone)]
pub struct PreviewCounts {
    pub create: u64,
    pub overwrite: u64,
    pub skip: u64,
    pub blocked: u64,
    /// File data that would be written (created and overwritten files).
    pub bytes: u64,
}

impl PreviewCounts {
    fn add(&mut self, action: PreviewAction, bytes: u64) {
        match action {
            PreviewAction::Create => self.create += 1,
            PreviewAction::Overwrite => self.overwrite += 1,
            PreviewAction::Skip => self.skip += 1,
            PreviewAction::Blocked => self.blocked += 1,
        }
        if matches!(action, PreviewAction::Create | PreviewAction::Overwrite) {
            self.bytes += bytes;
        }
    }
}

/// One path of a preview.
#[derive(Serialize, Debug, Clone)]
pub struct PreviewEntry {
    /// Where it goes in the target.
    pub path: String,
    pub action: PreviewAction,
    /// The pick it belongs to (an index into `RestoreOptions::picks`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pick: Option<usize>,
}

/// What a restore of the same options would do, without writing anything.
#[derive(Serialize, Debug, Default)]
pub struct Preview {
    pub total: PreviewCounts,
    /// One per `RestoreOptions::picks`, in order (empty without picks).
    pub per_pick: Vec<PreviewCounts>,
    /// The first entries of each action (at most `limit` of each); directories are listed
    /// only when blocked or replaced.
    pub entries: Vec<PreviewEntry>,
    /// Whether some entries were left out of `entries`.
    pub truncated: bool,
    /// Problems the restore would report whatever the target holds (bad names, missing
    /// blobs).
    pub errors: Vec<RestoreError>,
}

/// Where a planned directory stands in the target, for [`preview`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirState {
    /// A real directory (not a symlink) is there: look at what is inside.
    Exists,
    /// Nothing there (or it would be replaced): everything below is created.
    Missing,
    /// A non-directory is in the way and `overwrite` is off: the subtree fails.
    Blocked,
}

/// Plans the restore of `root` with `opts` and tells, for every entry, whether it would
/// be created, overwritten, skipped or blocked, looking at the target with `lstat` only
/// (a symlink in the target is never followed: a directory below one is reported
/// `blocked`, or its subtree created after the link is replaced with `overwrite`).
/// Lists at most `limit` entries of each action; counts all.
pub fn preview(
    repo: &Repository,
    index: &Index,
    root: Id,
    opts: &RestoreOptions,
    limit: usize,
) -> Result<Preview> {
    let (tree, snap_dir) = match &opts.subpath {
        Some(sub) => descend(repo, index, root, sub)?,
        None => (root, String::new()),
    };
    let snap_dir = if snap_dir.is_empty() { "/" } else { &snap_dir };
    let mut plan = plan::plan(repo, index, tree, snap_dir, opts);
    let mut out = Preview {
        errors: std::mem::take(&mut plan.errors),
        per_pick: vec![PreviewCounts::default(); opts.picks.len()],
        ..Default::default()
    };
    let lstat = |p: &Path| std::fs::symlink_metadata(p).ok();
    let top = match lstat(&opts.target) {
        // The target itself may be reached through a symlink (as in the restore).
        Some(_) if opts.target.is_dir() => DirState::Exists,
        Some(_) => {
            return Err(Error::invalid(format!(
                "restore target {} exists and is not a directory",
                opts.target.display()
            )))
        }
        None => DirState::Missing,
    };
    let state_of = |states: &[DirState], dir: Option<usize>| dir.map_or(top, |i| states[i]);
    let mut listed = [0usize; 4];
    let mut note = |out: &mut Preview, path: &Path, action: PreviewAction, bytes: u64| {
        let pick = path
            .strip_prefix(&opts.target)
            .ok()
            .and_then(|rel| opts.picks.iter().position(|p| rel.starts_with(p)));
        out.total.add(action, bytes);
        if let Some(c) = pick.and_then(|i| out.per_pick.get_mut(i)) {
            c.add(action, bytes);
        }
        let n = &mut listed[action as usize];
        if *n < limit {
            *n += 1;
            out.entries.push(PreviewEntry {
                path: path.display().to_string(),
                action,
                pick,
            });
        } else {
            out.truncated = true;
        }
    };
    // Directories: parents come first in the plan.
    let mut states: Vec<DirState> = Vec::with_capacity(plan.dirs.len());
    for d in &plan.dirs {
        let s = match state_of(&states, d.entry.dir) {
            DirState::Blocked => DirState::Blocked,
            DirState::Missing => DirState::Missing,
            DirState::Exists => match lstat(&d.entry.path) {
                None => DirState::Missing,
                Some(m) if m.file_type().is_dir() => DirState::Exists,
                Some(_) if opts.overwrite => {
                    note(&mut out, &d.entry.path, PreviewAction::Overwrite, 0);
                    DirState::Missing
                }
                Some(_) => {
                    note(&mut out, &d.entry.path, PreviewAction::Blocked, 0);
                    DirState::Blocked
                }
            },
        };
        states.push(s);
    }
    let files = plan.files.iter().map(|f| (&f.entry, f.size()));
    let others = plan
        .hardlinks
        .iter()
        .map(|h| (&h.1, 0))
        .chain(plan.specials.iter().map(|e| (e, 0)))
        .chain(plan.symlinks.iter().map(|e| (e, 0)));
    for (e, size) in files.chain(others) {
        let action = match state_of(&states, e.dir) {
            // Counted once, at the directory in the way.
            DirState::Blocked => continue,
            DirState::Missing => PreviewAction::Create,
            DirState::Exists => match lstat(&e.path) {
                None => PreviewAction::Create,
                Some(_) if opts.overwrite => PreviewAction::Overwrite,
                Some(_) => PreviewAction::Skip,
            },
        };
        note(&mut out, &e.path, action, size);
    }
    Ok(out)
}

/// [`restore`] with the repository's index already loaded.
pub fn restore_with_index(
    repo: &Repository,
    index: &Index,
    root: Id,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let started = std::time::Instant::now();
    let (tree, snap_dir) = match &opts.subpath {
        Some(sub) => descend(repo, index, root, sub)?,
        None => (root, String::new()),
    };
    let snap_dir = if snap_dir.is_empty() { "/" } else { &snap_dir };
    // A restore of a whole snapshot or directory reads the tree packs ahead, and a data
    // index left on disk (`Repository::load_index_for_reading`) whole: it looks up most
    // blobs. One narrowed by patterns or picks loads a few of the trees and blobs only.
    if !opts.narrowed() {
        if !opts.dry_run {
            packs::prefetch_tree_packs(repo, index);
        }
        index.expect_data_lookups(usize::MAX)?;
    }
    let mut plan = plan::plan(repo, index, tree, snap_dir, opts);
    // The data phase looks every blob up again: many are cheaper from the table whole.
    index.expect_data_lookups(plan.files.iter().map(|f| f.blobs.len()).sum())?;
    if opts.dry_run {
        let mut summary = dry_run_summary(&plan, opts);
        summary.errors = std::mem::take(&mut plan.errors);
        summary.total_duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let mut summary = RestoreSummary {
        errors: std::mem::take(&mut plan.errors),
        ..Default::default()
    };
    let target = Target::open(&opts.target, &plan.dirs)
        .map_err(|e| Error::io(format!("restore target {}", opts.target.display()), e))?;
    let threads = opts.threads.max(1);

    // Directories, parents first. One that cannot be created fails its subtree (reported
    // once, here).
    for (i, d) in plan.dirs.iter().enumerate() {
        if !target.dir_ready(d.entry.dir) {
            continue;
        }
        if let Err(e) = target.create_dir(i, opts.overwrite) {
            summary.errors.push(err_entry(&d.entry.path, e));
        }
    }

    // Every file created (0600, O_EXCL), then filled pack by pack. One written in pieces
    // gets its final size first; one blob's write gives it its size.
    let skipped = Mutex::new(Vec::new());
    crate::parallel::for_each(&plan.files, threads, 256, |f| {
        if !f.pending() {
            return;
        }
        if !target.dir_ready(f.entry.dir) {
            // Its directory's error is already listed.
            if let Ok(mut s) = f.state.lock() {
                *s = FileState::Skipped;
            }
            return;
        }
        let size = if f.blobs.len() > 1 { f.size() } else { 0 };
        match target.create_file(f.entry.dir, &f.entry.name, size, opts.overwrite) {
            Ok(Created::New(id)) => {
                let _ = f.ident.set(id);
            }
            Ok(Created::Exists) => {
                if let Ok(mut s) = f.state.lock() {
                    *s = FileState::Skipped;
                }
                if let Ok(mut all) = skipped.lock() {
                    all.push(f.entry.path.display().to_string());
                }
            }
            Err(e) => f.fail(|| format!("cannot create: {e}")),
        }
    });
    summary.files_skipped_existing = skipped.into_inner().unwrap_or_default();
    let total: u64 = plan
        .files
        .iter()
        .filter(|f| f.pending())
        .map(|f| f.size())
        .sum();
    progress.total_bytes.store(total, Ordering::Relaxed);

    let bytes_written = AtomicU64::new(0);
    packs::fetch(
        repo,
        index,
        &target,
        &plan.files,
        threads,
        &bytes_written,
        progress,
    );

    // Files whose blobs all arrived get their metadata; the others are removed.
    let file_errors = Mutex::new(Vec::new());
    let restored = AtomicU64::new(0);
    crate::parallel::for_each(&plan.files, threads, 256, |f| {
        let err = match finish_file(&target, f) {
            Ok(true) => {
                restored.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(false) => None,
            Err(e) => Some(err_entry(&f.entry.path, e)),
        };
        if let (Some(e), Ok(mut all)) = (err, file_errors.lock()) {
            all.push(e);
        }
    });
    summary.files_restored += restored.load(Ordering::Relaxed);
    let mut file_errors = file_errors.into_inner().unwrap_or_default();
    file_errors.sort_by(|a, b| a.path.cmp(&b.path));
    summary.errors.extend(file_errors);

    for (first, e) in &plan.hardlinks {
        if !target.dir_ready(e.dir) {
            continue;
        }
        let f = &plan.files[*first];
        let Some(&id) = f.ident.get().filter(|_| f.pending()) else {
            summary.errors.push(err_entry(
                &e.path,
                format!(
                    "hard link to {}, which was not restored",
                    f.entry.path.display()
                ),
            ));
            continue;
        };
        match target.link(
            (f.entry.dir, &f.entry.name, id),
            e.dir,
            &e.name,
            opts.overwrite,
        ) {
            Ok(Created::New(_)) => summary.files_restored += 1,
            Ok(Created::Exists) => summary
                .files_skipped_existing
                .push(e.path.display().to_string()),
            Err(err) => summary.errors.push(err_entry(
                &e.path,
                format!("hard link to {}: {err}", f.entry.path.display()),
            )),
        }
    }
    if opts.verify {
        for f in &plan.files {
            let Some(&id) = f.ident.get().filter(|_| f.pending()) else {
                continue;
            };
            let checked = target
                .open_file(f.entry.dir, &f.entry.name, id, false)
                .and_then(|file| verify_file(file, &f.blobs));
            match checked {
                Ok(()) => summary.files_verified += 1,
                Err(e) => summary.errors.push(err_entry(
                    &f.entry.path,
                    format!("verification failed: {e}"),
                )),
            }
        }
    }
    // Devices and fifos, then symlinks: last, so nothing is ever written through one.
    for e in plan.specials.iter().chain(&plan.symlinks) {
        if !target.dir_ready(e.dir) {
            continue;
        }
        match target.create_special(e.dir, &e.name, &e.node, opts.overwrite) {
            Ok(Some(Created::New(_))) => summary.files_restored += 1,
            Ok(Some(Created::Exists)) => summary
                .files_skipped_existing
                .push(e.path.display().to_string()),
            Ok(None) => {}
            Err(err) => summary.errors.push(err_entry(&e.path, err)),
        }
    }
    let mut order: Vec<usize> = (0..plan.dirs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(plan.dirs[i].depth));
    for i in order {
        let d = &plan.dirs[i];
        if !target.dir_ready(Some(i)) {
            continue;
        }
        if let Err(e) = target.dir_metadata(i) {
            summary
                .errors
                .push(err_entry(&d.entry.path, format!("metadata: {e}")));
        }
        summary.dirs_restored += 1;
    }
    summary.bytes_written = bytes_written.load(Ordering::Relaxed);
    summary.total_duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Applies a fully written file's metadata (`Ok(true)`), or removes a file whose data
/// failed and returns why (`Err`). `Ok(false)`: skipped, nothing to report.
fn finish_file(target: &Target, f: &PlannedFile) -> std::result::Result<bool, String> {
    let failed = match f.state.lock() {
        Ok(s) => match &*s {
            FileState::Pending => None,
            FileState::Skipped => return Ok(false),
            FileState::Failed(e) => Some(e.clone()),
        },
        Err(_) => Some("internal error: a restore thread panicked".to_string()),
    };
    let failed = failed.or_else(|| {
        let left = f.remaining.load(Ordering::Acquire);
        (left != 0).then(|| format!("{left} data blob(s) were not written"))
    });
    let Some(&id) = f.ident.get() else {
        // Never created (missing from the index, or creation failed).
        return Err(failed.unwrap_or_else(|| "not created".into()));
    };
    if let Some(e) = failed {
        return Err(match target.remove(f.entry.dir, &f.entry.name, id) {
            Ok(()) => format!("{e}; the incomplete file was removed"),
            Err(r) => format!("{e}; the incomplete file could not be removed: {r}"),
        });
    }
    // Its last blob's writer applied the metadata already.
    if let Some(done) = f.finished.get() {
        return done.clone().map(|()| true);
    }
    let file = target
        .open_file(f.entry.dir, &f.entry.name, id, false)
        .map_err(|e| format!("metadata: {e}"))?;
    write::metadata_fd(&f.entry.node, file.as_fd()).map_err(|e| format!("metadata: {e}"))?;
    Ok(true)
}

/// Re-reads a restored file and checks every blob's hash.
fn verify_file(file: std::fs::File, blobs: &[(Id, u64)]) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::io::BufReader::with_capacity(1 << 20, file);
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
