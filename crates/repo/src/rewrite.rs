//! Rewrite: new snapshots without excluded paths (restic's `rewrite`).
//!
//! Each snapshot's trees are walked with the exclude patterns matched against paths as
//! they appear in the snapshot (`/home/me/.cache`); excluded entries are dropped and only
//! the trees on the way to them are stored anew (unchanged subtrees keep their ids).
//! Order: new trees -> packs -> index -> new snapshots -> (with `forget`) removal of the
//! originals, so a kill at any point leaves every snapshot, old or new, complete.
//!
//! Besides patterns, the other excludes of a backup apply as the snapshot holds them:
//! `--exclude-if-present` (a directory holding the tag file keeps only it, the header
//! read from the stored file) and `--exclude-larger-than` (by the size in the tree).

use crate::backend::FileType;
use crate::depth;
use crate::error::{Error, Result};
use crate::exclude::{ExcludeIfPresent, PatternSet};
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::PackWriter;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

#[derive(Default)]
pub struct RewriteOptions {
    pub excludes: PatternSet,
    /// Directories holding one of these tag files keep only the tag file (as in backup).
    pub exclude_if_present: Vec<ExcludeIfPresent>,
    /// Files (never directories) larger than this are removed (as in backup).
    pub exclude_larger_than: Option<u64>,
    /// Remove the original snapshots once the new ones are stored.
    pub forget: bool,
    pub dry_run: bool,
}

/// What happened to one snapshot.
#[derive(Serialize, Debug, Clone)]
pub struct Rewritten {
    pub original: Id,
    /// None in a dry run.
    pub new: Option<Id>,
    pub removed_files: u64,
    pub removed_dirs: u64,
    /// Plaintext bytes of the removed files.
    pub removed_bytes: u64,
    /// Up to 20 removed paths, for the report.
    pub removed_examples: Vec<String>,
    /// The excluded entries (a directory counts once, with what it held), in tree order,
    /// at most [`LISTED_PATHS`] of them.
    pub removed_paths: Vec<RemovedPath>,
    /// How many excluded entries there were in all (more than listed if over the cap).
    pub removed_paths_total: u64,
}

/// At most this many excluded entries are listed per snapshot.
pub const LISTED_PATHS: usize = 1000;

/// One excluded entry of a snapshot: a file, or a directory with everything below it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RemovedPath {
    pub path: String,
    /// Files (and other non-directories) removed with it, itself included.
    pub files: u64,
    /// Directories removed with it, itself included.
    pub dirs: u64,
    /// Plaintext bytes of the removed files.
    pub bytes: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct RewriteReport {
    pub rewritten: Vec<Rewritten>,
    pub unchanged: usize,
    pub forgotten: usize,
    /// The trees the rewritten snapshots have that the originals did not, by id (also
    /// in a dry run, where they are not stored): for [`freed_by`].
    #[serde(skip)]
    pub new_trees: HashMap<Id, Vec<u8>>,
    /// The root tree of every rewritten snapshot, in the order of `rewritten`.
    #[serde(skip)]
    pub new_roots: Vec<Id>,
}

#[derive(Default, Clone)]
struct Removed {
    files: u64,
    dirs: u64,
    bytes: u64,
    examples: Vec<String>,
    paths: Vec<RemovedPath>,
    paths_total: u64,
}

impl Removed {
    fn is_empty(&self) -> bool {
        self.paths_total == 0
    }

    /// Adds what a subtree removed (in tree order, after what is here).
    fn add(&mut self, o: &Removed) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.bytes += o.bytes;
        self.paths_total += o.paths_total;
        let room = 20usize.saturating_sub(self.examples.len());
        self.examples.extend(o.examples.iter().take(room).cloned());
        let room = LISTED_PATHS.saturating_sub(self.paths.len());
        self.paths.extend(o.paths.iter().take(room).cloned());
    }
}

struct Rewriter<'a> {
    repo: &'a Repository,
    index: &'a Index,
    writer: &'a PackWriter<'a>,
    opts: &'a RewriteOptions,
    dry_run: bool,
    /// Trees made here (stored unless a dry run), by id.
    new_trees: HashMap<Id, Vec<u8>>,
    /// (tree, hash of its path in the snapshot) -> new tree id and what it removed (so
    /// a later snapshot sharing the subtree reports it too); patterns depend on the path.
    /// The hash keeps a deeply nested snapshot's memo linear in its depth.
    memo: HashMap<(Id, Id), (Id, std::sync::Arc<Removed>)>,
    /// The shared empty [`Removed`] of unchanged subtrees.
    nothing: std::sync::Arc<Removed>,
}

impl Rewriter<'_> {
    fn load(&self, tree: &Id) -> Result<Vec<Node>> {
        let bytes = self.repo.load_blob(self.index, BlobType::Tree, tree)?;
        node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {tree}: {e}")))
    }

    /// Counts what an excluded directory held. Iterative (a worklist of trees), so any
    /// depth is fine.
    fn count_removed(&self, tree: &Id, removed: &mut Removed) -> Result<()> {
        let mut todo = vec![*tree];
        while let Some(tree) = todo.pop() {
            for n in self.load(&tree)? {
                match n.node_type {
                    NodeType::Dir => {
                        removed.dirs += 1;
                        todo.extend(n.subtree);
                    }
                    _ => {
                        removed.files += 1;
                        removed.bytes += n.size;
                    }
                }
            }
        }
        Ok(())
    }

    /// The names of the `--exclude-if-present` tag files that tag the directory holding
    /// `nodes` (empty: not tagged). As in backup: the entry must exist, and with a header
    /// be a file starting with it; a tag file whose content cannot be read does not tag.
    fn tag_files(&self, nodes: &[Node]) -> HashSet<Vec<u8>> {
        let mut tags = HashSet::new();
        for t in &self.opts.exclude_if_present {
            if t.filename.is_empty() {
                continue;
            }
            let Some(n) = nodes
                .iter()
                .find(|n| n.name.as_bytes() == t.filename.as_bytes())
            else {
                continue;
            };
            let tagged = match t.header.as_deref().filter(|h| !h.is_empty()) {
                None => true,
                Some(header) => {
                    n.node_type == NodeType::File
                        && self.starts_with(n.content.as_deref().unwrap_or(&[]), header)
                }
            };
            if tagged {
                tags.insert(t.filename.as_bytes().to_vec());
            }
        }
        tags
    }

    /// Whether the file made of the data blobs `content` starts with `header`.
    fn starts_with(&self, content: &[Id], header: &[u8]) -> bool {
        let mut head = Vec::with_capacity(header.len());
        for id in content {
            if head.len() >= header.len() {
                break;
            }
            match self.repo.load_blob(self.index, BlobType::Data, id) {
                Ok(b) => head.extend_from_slice(&b),
                Err(_) => return false,
            }
        }
        head.starts_with(header)
    }

    /// Returns the id of `tree` (at `dir` in the snapshot, `depth` levels below its root)
    /// without the excluded entries. Recursive, bounded by [`depth::check`] (see
    /// [`crate::depth`]). `dir` ("" for the root) is one buffer shared by all levels:
    /// each appends its entries' names and takes them off again, so memory stays linear
    /// in the depth.
    fn filter(
        &mut self,
        tree: Id,
        dir: &mut String,
        depth: usize,
        removed: &mut Removed,
    ) -> Result<Id> {
        let key = (tree, Id::hash(dir.as_bytes()));
        if let Some((id, gone)) = self.memo.get(&key) {
            removed.add(gone);
            return Ok(*id);
        }
        depth::check(depth)?;
        // What this subtree removes, kept with its memo entry.
        let outer = removed;
        let mut here = Removed::default();
        let removed = &mut here;
        let nodes = self.load(&tree)?;
        let tags = self.tag_files(&nodes);
        let mut out = Vec::with_capacity(nodes.len());
        let mut changed = false;
        let dir_len = dir.len();
        for mut n in nodes {
            dir.truncate(dir_len);
            let _ = write!(dir, "/{}", n.name);
            let path = &*dir;
            let is_dir = n.node_type == NodeType::Dir;
            let gone = (!tags.is_empty() && !tags.contains(n.name.as_bytes()))
                || self.opts.excludes.matches_path(std::path::Path::new(path))
                || self
                    .opts
                    .exclude_larger_than
                    .is_some_and(|max| crate::exclude::exceeds_size(n.size, is_dir, max));
            if gone {
                changed = true;
                if removed.examples.len() < 20 {
                    removed.examples.push(path.to_string());
                }
                let before = (removed.files, removed.dirs, removed.bytes);
                if is_dir {
                    removed.dirs += 1;
                    if let Some(sub) = n.subtree {
                        self.count_removed(&sub, removed)?;
                    }
                } else {
                    removed.files += 1;
                    removed.bytes += n.size;
                }
                removed.paths_total += 1;
                if removed.paths.len() < LISTED_PATHS {
                    removed.paths.push(RemovedPath {
                        path: path.to_string(),
                        files: removed.files - before.0,
                        dirs: removed.dirs - before.1,
                        bytes: removed.bytes - before.2,
                    });
                }
                continue;
            }
            if let (NodeType::Dir, Some(sub)) = (n.node_type, n.subtree) {
                let new = self.filter(sub, dir, depth + 1, removed)?;
                if new != sub {
                    changed = true;
                    n.subtree = Some(new);
                }
            }
            out.push(n);
        }
        dir.truncate(dir_len);
        let id = if !changed {
            tree
        } else {
            let bytes = node::encode_tree(&out);
            let id = if self.dry_run {
                Id::hash(&bytes)
            } else {
                self.writer.save(BlobType::Tree, &bytes)?.0
            };
            self.new_trees.insert(id, bytes);
            id
        };
        outer.add(&here);
        let gone = if here.is_empty() {
            self.nothing.clone()
        } else {
            std::sync::Arc::new(here)
        };
        self.memo.insert(key, (id, gone));
        Ok(id)
    }
}

/// Rewrites `snapshots`; the caller holds an exclusive lock.
pub fn rewrite(
    repo: &Repository,
    snapshots: &[Snapshot],
    opts: &RewriteOptions,
) -> Result<RewriteReport> {
    if opts.excludes.is_empty()
        && opts.exclude_if_present.is_empty()
        && opts.exclude_larger_than.is_none()
    {
        return Err(Error::invalid(
            "nothing to rewrite: give --exclude or --exclude-file",
        ));
    }
    let index = repo.load_index()?;
    let writer = PackWriter::new(repo, &index);
    let mut report = RewriteReport::default();
    let mut pending: Vec<(Snapshot, Rewritten)> = Vec::new();
    {
        let mut rw = Rewriter {
            repo,
            index: &index,
            writer: &writer,
            opts,
            dry_run: opts.dry_run,
            new_trees: HashMap::new(),
            memo: HashMap::new(),
            nothing: Default::default(),
        };
        for s in snapshots {
            let mut removed = Removed::default();
            let tree =
                depth::with_deep_stack(|| rw.filter(s.tree, &mut String::new(), 0, &mut removed))
                    .map_err(|e| e.context(format!("snapshot {}", s.id.short())))?;
            if tree == s.tree {
                report.unchanged += 1;
                continue;
            }
            let mut new = s.clone();
            new.tree = tree;
            if !new.tags.iter().any(|t| t == "rewrite") {
                new.tags.push("rewrite".into());
            }
            new.original = Some(s.original.unwrap_or(s.id));
            report.new_roots.push(tree);
            pending.push((
                new,
                Rewritten {
                    original: s.id,
                    new: None,
                    removed_files: removed.files,
                    removed_dirs: removed.dirs,
                    removed_bytes: removed.bytes,
                    removed_examples: removed.examples,
                    removed_paths: removed.paths,
                    removed_paths_total: removed.paths_total,
                },
            ));
        }
        report.new_trees = std::mem::take(&mut rw.new_trees);
    }
    if opts.dry_run {
        report.rewritten = pending.into_iter().map(|(_, r)| r).collect();
        return Ok(report);
    }
    // Trees -> packs -> index, then the snapshots that reference them.
    writer.finish()?;
    for (mut snap, mut r) in pending {
        r.new = Some(snap.save(repo)?);
        report.rewritten.push(r);
    }
    if opts.forget {
        for r in &report.rewritten {
            repo.backend()
                .remove(FileType::Snapshot, &r.original.to_hex())?;
            report.forgotten += 1;
        }
    }
    Ok(report)
}

/// Stored bytes (as the index has them) of the blobs that the snapshots `before` use and
/// that no longer any snapshot would once the roots `before` became `after`: what prune
/// can reclaim through a rewrite. `new_trees` holds trees of `after` that are not stored
/// (a dry run's). Blobs nothing uses already are not counted (prune frees those anyway).
pub fn freed_by(
    repo: &Repository,
    index: &Index,
    before: &[Id],
    after: &[Id],
    new_trees: &HashMap<Id, Vec<u8>>,
) -> Result<u64> {
    let used_before = reachable(repo, index, before, &HashMap::new())?;
    let used_after = reachable(repo, index, after, new_trees)?;
    Ok(used_before
        .difference(&used_after)
        .filter_map(|(t, id)| index.get(*t, id))
        .map(|l| u64::from(l.blob.length))
        .sum())
}

/// Every blob (trees and data) the trees `roots` reach; trees in `extra` are read from
/// there. Iterative, so any depth is fine.
fn reachable(
    repo: &Repository,
    index: &Index,
    roots: &[Id],
    extra: &HashMap<Id, Vec<u8>>,
) -> Result<HashSet<(BlobType, Id)>> {
    let mut seen: HashSet<(BlobType, Id)> = HashSet::new();
    let mut todo: Vec<Id> = roots
        .iter()
        .filter(|r| seen.insert((BlobType::Tree, **r)))
        .copied()
        .collect();
    while let Some(tree) = todo.pop() {
        let bytes = match extra.get(&tree) {
            Some(b) => std::borrow::Cow::Borrowed(b),
            None => std::borrow::Cow::Owned(repo.load_blob(index, BlobType::Tree, &tree)?),
        };
        let nodes =
            node::decode_tree(&bytes).map_err(|e| Error::corrupt(format!("tree {tree}: {e}")))?;
        for n in nodes {
            if let Some(sub) = n.subtree.filter(|_| n.node_type == NodeType::Dir) {
                if seen.insert((BlobType::Tree, sub)) {
                    todo.push(sub);
                }
            }
            if n.node_type == NodeType::File {
                for id in n.content.into_iter().flatten() {
                    seen.insert((BlobType::Data, id));
                }
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::backup::{backup, BackupOptions, Progress};
    use std::sync::Arc;

    /// Two backups of `src` in a new repository, `change` run between them.
    fn two_snapshots(change: impl FnOnce(&std::path::Path)) -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("proj/.cache")).unwrap();
        std::fs::create_dir_all(src.join("notes")).unwrap();
        std::fs::write(src.join("proj/.cache/c.bin"), vec![7u8; 5000]).unwrap();
        std::fs::write(src.join("proj/main.rs"), b"fn main() {}\n").unwrap();
        std::fs::write(src.join("notes/a.txt"), b"one\n").unwrap();
        let be = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let repo = Repository::init(be, "pw", 2, None).unwrap();
        let run = || {
            let opts = BackupOptions {
                paths: vec![src.clone()],
                ..Default::default()
            };
            backup(&repo, opts, &Progress::default()).unwrap();
        };
        run();
        change(&src);
        run();
        (dir, repo)
    }

    #[test]
    fn a_subtree_shared_by_two_snapshots_is_reported_removed_from_each() {
        // proj/ (with the cache) is the same tree in both snapshots; notes/ changes.
        let (dir, repo) = two_snapshots(|src| {
            std::fs::write(src.join("notes/a.txt"), b"two\n").unwrap();
        });
        let cache = format!("{}/src/proj/.cache", dir.path().display());
        let snaps = Snapshot::load_all(&repo).unwrap();
        assert_eq!(snaps.len(), 2);
        let report = rewrite(
            &repo,
            &snaps,
            &RewriteOptions {
                excludes: PatternSet::new(std::slice::from_ref(&cache), false).unwrap(),
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(report.rewritten.len(), 2);
        for r in &report.rewritten {
            assert_eq!(
                r.removed_paths,
                [RemovedPath {
                    path: cache.clone(),
                    files: 1,
                    dirs: 1,
                    bytes: 5000
                }],
                "snapshot {}",
                r.original.short()
            );
            assert_eq!((r.removed_files, r.removed_bytes), (1, 5000));
        }
        // Only the cache's blob (and the trees on the way) go: the 5000 bytes of
        // compressible zeros are stored smaller, and nothing else is counted.
        let index = repo.load_index().unwrap();
        let before: Vec<Id> = snaps.iter().map(|s| s.tree).collect();
        let freed = freed_by(&repo, &index, &before, &report.new_roots, &report.new_trees).unwrap();
        assert!(freed > 0 && freed < 5000, "{freed}");
        // With one original kept, the cache blob stays used: only old trees count.
        let after = [report.new_roots[0], snaps[1].tree];
        let kept = freed_by(&repo, &index, &before, &after, &report.new_trees).unwrap();
        assert!(kept < freed, "{kept} < {freed}");
    }
}
