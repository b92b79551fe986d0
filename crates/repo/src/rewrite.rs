//! Rewrite: new snapshots without excluded paths (restic's `rewrite`).
//!
//! Each snapshot's trees are walked with the exclude patterns matched against paths as
//! they appear in the snapshot (`/home/me/.cache`); excluded entries are dropped and only
//! the trees on the way to them are stored anew (unchanged subtrees keep their ids).
//! Order: new trees -> packs -> index -> new snapshots -> (with `forget`) removal of the
//! originals, so a kill at any point leaves every snapshot, old or new, complete.

use crate::backend::FileType;
use crate::depth;
use crate::error::{Error, Result};
use crate::exclude::PatternSet;
use crate::id::Id;
use crate::index::Index;
use crate::node::{self, Node, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::PackWriter;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

pub struct RewriteOptions {
    pub excludes: PatternSet,
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
}

#[derive(Serialize, Debug, Default)]
pub struct RewriteReport {
    pub rewritten: Vec<Rewritten>,
    pub unchanged: usize,
    pub forgotten: usize,
}

#[derive(Default)]
struct Removed {
    files: u64,
    dirs: u64,
    bytes: u64,
    examples: Vec<String>,
}

struct Rewriter<'a> {
    repo: &'a Repository,
    index: &'a Index,
    writer: &'a PackWriter<'a>,
    excludes: &'a PatternSet,
    dry_run: bool,
    /// (tree, hash of its path in the snapshot) -> new tree id; patterns depend on the
    /// path. The hash keeps a deeply nested snapshot's memo linear in its depth.
    memo: HashMap<(Id, Id), Id>,
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
        if let Some(id) = self.memo.get(&key) {
            return Ok(*id);
        }
        depth::check(depth)?;
        let nodes = self.load(&tree)?;
        let mut out = Vec::with_capacity(nodes.len());
        let mut changed = false;
        let dir_len = dir.len();
        for mut n in nodes {
            dir.truncate(dir_len);
            let _ = write!(dir, "/{}", n.name);
            let path = &*dir;
            if self.excludes.matches_path(std::path::Path::new(path)) {
                changed = true;
                if removed.examples.len() < 20 {
                    removed.examples.push(path.to_string());
                }
                if n.node_type == NodeType::Dir {
                    removed.dirs += 1;
                    if let Some(sub) = n.subtree {
                        self.count_removed(&sub, removed)?;
                    }
                } else {
                    removed.files += 1;
                    removed.bytes += n.size;
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
            if self.dry_run {
                Id::hash(&bytes)
            } else {
                self.writer.save(BlobType::Tree, &bytes)?.0
            }
        };
        self.memo.insert(key, id);
        Ok(id)
    }
}

/// Rewrites `snapshots`; the caller holds an exclusive lock.
pub fn rewrite(
    repo: &Repository,
    snapshots: &[Snapshot],
    opts: &RewriteOptions,
) -> Result<RewriteReport> {
    if opts.excludes.is_empty() {
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
            excludes: &opts.excludes,
            dry_run: opts.dry_run,
            memo: HashMap::new(),
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
            pending.push((
                new,
                Rewritten {
                    original: s.id,
                    new: None,
                    removed_files: removed.files,
                    removed_dirs: removed.dirs,
                    removed_bytes: removed.bytes,
                    removed_examples: removed.examples,
                },
            ));
        }
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
