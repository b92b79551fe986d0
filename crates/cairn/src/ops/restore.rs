//! Restore picked items of a snapshot (or all of it) to a directory on this machine, and
//! preview what that would do. The engine is `cairn_repo::restore`, the same as
//! `cairn restore`: directory descriptors, no symlink followed below the target, nothing
//! replaced unless `overwrite`, a bad file reported while the rest is restored.
//!
//! Items are placed like in a download: relative to their common parent, below the target
//! (`/home/u/docs` and `/home/u/a.txt` restored to `/srv/r` give `/srv/r/docs/...` and
//! `/srv/r/a.txt`); the whole snapshot keeps its full paths, like the CLI.
//!
//! Must not: print, or touch anything outside the target.

use super::archive::{self, Selection};
use cairn_repo::browse::Trees;
use cairn_repo::error::{Error, Result};
use cairn_repo::id::Id;
use cairn_repo::index::Index;
use cairn_repo::repository::Repository;
use cairn_repo::restore::{self, Preview, Progress, RestoreError, RestoreOptions, RestoreSummary};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How many paths of each kind a report lists (the counts are always complete).
pub const LIST_MAX: usize = 200;

/// What to restore and where.
#[derive(Debug, Clone)]
pub struct Request {
    /// Picked paths in the snapshot (bytes); empty: the whole snapshot.
    pub items: Vec<Vec<u8>>,
    pub target: PathBuf,
    pub overwrite: bool,
}

/// How a restore ended, for exit codes and the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything restored.
    Complete,
    /// Files already in the target were left alone (no `overwrite`).
    Incomplete,
    /// Some paths could not be restored (the others were).
    Failed,
}

/// The outcome of a restore's summary (the CLI's exit code comes from it).
pub fn outcome(s: &RestoreSummary) -> Outcome {
    if !s.errors.is_empty() {
        Outcome::Failed
    } else if !s.files_skipped_existing.is_empty() {
        Outcome::Incomplete
    } else {
        Outcome::Complete
    }
}

/// A target given over the network must say exactly where it is: absolute, no `..`; and
/// if it exists, be a directory.
pub fn check_target(target: &Path) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "restore target {:?}: {why}",
            target.display().to_string()
        )))
    };
    if !target.is_absolute() {
        return bad("give an absolute path");
    }
    if target
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return bad("`..` is not allowed in the target");
    }
    if std::fs::metadata(target).is_ok_and(|m| !m.is_dir()) {
        return bad("it exists and is not a directory");
    }
    // The kernel's pseudo-filesystems are no place for files: writes there act on the
    // system. Checked on the path as given and on where its existing part leads.
    let existing = target.ancestors().find(|a| a.exists());
    let resolved = existing.and_then(|a| std::fs::canonicalize(a).ok());
    let pseudo = |p: &Path| PSEUDO_FILESYSTEMS.iter().any(|fs| p.starts_with(fs));
    if pseudo(target) || resolved.as_deref().is_some_and(pseudo) {
        return bad("it is inside /proc, /sys or /dev");
    }
    Ok(())
}

/// Where restores never go (see [`check_target`]).
const PSEUDO_FILESYSTEMS: [&str; 3] = ["/proc", "/sys", "/dev"];

fn options(sel: &Selection, req: &Request, dry_run: bool) -> RestoreOptions {
    RestoreOptions {
        target: req.target.clone(),
        subpath: None,
        overwrite: req.overwrite,
        threads: 4,
        dry_run,
        picks: sel.rel_paths(),
        ..Default::default()
    }
}

/// A preview with the items it is about.
#[derive(Debug, Serialize)]
pub struct PreviewReport {
    /// The items' common parent in the snapshot.
    pub parent: String,
    /// The picked items relative to it (as restored below the target); empty: everything.
    pub items: Vec<String>,
    pub target: String,
    pub overwrite: bool,
    #[serde(flatten)]
    pub preview: Preview,
}

fn item_names(sel: &Selection) -> Vec<String> {
    sel.items
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect()
}

/// What restoring `req` from the snapshot tree `root` would do; writes nothing.
pub fn preview(
    repo: &Repository,
    index: &Index,
    trees: &Trees,
    root: Id,
    req: &Request,
) -> Result<PreviewReport> {
    check_target(&req.target)?;
    let sel = archive::resolve(trees, root, &req.items)?;
    let opts = options(&sel, req, true);
    let preview = restore::preview(repo, index, sel.parent_tree, &opts, LIST_MAX)?;
    Ok(PreviewReport {
        parent: sel.parent_display(),
        items: item_names(&sel),
        target: req.target.display().to_string(),
        overwrite: req.overwrite,
        preview,
    })
}

/// What a restore did, with bounded lists.
#[derive(Debug, Serialize)]
pub struct Report {
    pub parent: String,
    pub items: Vec<String>,
    pub target: String,
    pub outcome: Outcome,
    pub files_restored: u64,
    pub dirs_restored: u64,
    pub bytes_written: u64,
    /// Already in the target, left alone (first [`LIST_MAX`]).
    pub skipped: Vec<String>,
    pub skipped_count: usize,
    /// Could not be restored, with why (first [`LIST_MAX`]).
    pub failed: Vec<RestoreError>,
    pub failed_count: usize,
    pub seconds: f64,
}

/// Restores `req` from the snapshot tree `root`.
pub fn restore(
    repo: &Repository,
    index: &Index,
    trees: &Trees,
    root: Id,
    req: &Request,
    progress: &Progress,
) -> Result<Report> {
    check_target(&req.target)?;
    let sel = archive::resolve(trees, root, &req.items)?;
    let opts = options(&sel, req, false);
    let s = restore::restore_with_index(repo, index, sel.parent_tree, &opts, progress)?;
    Ok(Report {
        parent: sel.parent_display(),
        items: item_names(&sel),
        target: req.target.display().to_string(),
        outcome: outcome(&s),
        files_restored: s.files_restored,
        dirs_restored: s.dirs_restored,
        bytes_written: s.bytes_written,
        skipped_count: s.files_skipped_existing.len(),
        skipped: s
            .files_skipped_existing
            .iter()
            .take(LIST_MAX)
            .cloned()
            .collect(),
        failed_count: s.errors.len(),
        failed: s.errors.iter().take(LIST_MAX).cloned().collect(),
        seconds: s.total_duration,
    })
}
