//! Repairs for damaged repositories, like restic's `repair index` and `repair snapshots`.
//!
//! Both write what replaces before removing what is replaced: new index files before the
//! old ones go; repaired snapshots before (with `forget`) their originals go.

use crate::backend::FileType;
use crate::depth;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile, IndexPack};
use crate::node::{self, Node, NodeType};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::{write_index_files, PackWriter};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Serialize, Debug, Default)]
pub struct IndexRepair {
    pub packs: usize,
    /// Packs whose headers were read (not, or not reliably, in an index).
    pub packs_read: usize,
    /// Index entries dropped because their pack is gone.
    pub packs_missing: Vec<Id>,
    /// Packs whose header cannot be read: left in place, not indexed.
    pub packs_damaged: Vec<(Id, String)>,
    pub index_files_removed: usize,
    pub index_files_written: usize,
    /// Index files that could not be read.
    pub index_files_damaged: Vec<(Id, String)>,
}

/// Rebuilds the index from the pack files. Packs described by a readable index keep that
/// description unless `read_all_packs`; the rest have their headers read.
pub fn repair_index(repo: &Repository, read_all_packs: bool) -> Result<IndexRepair> {
    let mut report = IndexRepair::default();
    let old_ids = repo.list_ids(FileType::Index)?;
    let mut known: HashMap<Id, IndexPack> = HashMap::new();
    for id in &old_ids {
        match repo.load_json::<IndexFile>(FileType::Index, id) {
            Ok(f) => {
                for p in f.packs {
                    known.entry(p.id).or_insert(p);
                }
            }
            Err(e) => report.index_files_damaged.push((*id, e.to_string())),
        }
    }
    let listed: Vec<(Id, u64)> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|f| Id::parse(&f.name).map(|id| (id, f.size)))
        .collect();
    report.packs = listed.len();
    let on_disk: HashMap<Id, u64> = listed.iter().copied().collect();
    let mut missing: Vec<Id> = known
        .keys()
        .filter(|id| !on_disk.contains_key(id))
        .copied()
        .collect();
    missing.sort();
    report.packs_missing = missing;
    let to_read: Vec<(Id, u64)> = listed
        .iter()
        .filter(|(id, _)| read_all_packs || !known.contains_key(id))
        .copied()
        .collect();
    report.packs_read = to_read.len();
    let headers = crate::parallel::map(to_read, 4, |(id, size)| {
        Ok((id, repo.read_pack_header(&id, size)))
    })?;
    let mut packs: Vec<IndexPack> = listed
        .iter()
        .filter(|_| !read_all_packs)
        .filter_map(|(id, _)| known.remove(id))
        .collect();
    for (id, header) in headers {
        match header {
            Ok(blobs) => packs.push(IndexPack::from_blobs(id, &blobs)),
            Err(e) => report.packs_damaged.push((id, e.to_string())),
        }
    }
    packs.sort_by_key(|p| p.id);
    let written = write_index_files(repo, &packs, &old_ids)?;
    report.index_files_written = written.len();
    for id in &old_ids {
        if !written.contains(id) {
            repo.backend().remove(FileType::Index, &id.to_hex())?;
            report.index_files_removed += 1;
        }
    }
    Ok(report)
}

/// What happened to one snapshot.
#[derive(Serialize, Debug, Clone)]
pub struct SnapshotRepair {
    pub snapshot: Id,
    /// The repaired snapshot (None in a dry run, or when the root tree is lost).
    pub new: Option<Id>,
    /// Human-readable repairs ("file /x: removed missing content").
    pub repairs: Vec<String>,
    /// The root tree cannot be read: nothing can be salvaged.
    pub lost: bool,
}

#[derive(Serialize, Debug, Default)]
pub struct SnapshotsRepair {
    pub repaired: Vec<SnapshotRepair>,
    pub intact: usize,
    pub forgotten: usize,
}

struct Repairer<'a> {
    repo: &'a Repository,
    index: &'a Index,
    writer: &'a PackWriter<'a>,
    dry_run: bool,
    /// Tree -> its repaired id and the repairs below it. The repair notes are shared
    /// (`Arc`), not copied, into every level above them.
    memo: HashMap<Id, (Id, Vec<Arc<str>>)>,
}

impl Repairer<'_> {
    fn save(&self, nodes: &[Node]) -> Result<Id> {
        let bytes = node::encode_tree(nodes);
        if self.dry_run {
            Ok(Id::hash(&bytes))
        } else {
            Ok(self.writer.save(BlobType::Tree, &bytes)?.0)
        }
    }

    /// The repaired id of `tree` at `dir` (`depth` levels below the root), and what was
    /// repaired below it. Recursive, bounded by [`depth::check`] (see [`crate::depth`]).
    /// `dir` ("" for the root) is one buffer shared by all levels: each appends its
    /// entries' names and takes them off again, so memory stays linear in the depth.
    fn tree(&mut self, tree: Id, dir: &mut String, depth: usize) -> Result<(Id, Vec<Arc<str>>)> {
        if let Some(r) = self.memo.get(&tree) {
            return Ok(r.clone());
        }
        depth::check(depth)?;
        let nodes = self
            .repo
            .load_blob(self.index, BlobType::Tree, &tree)
            .and_then(|b| node::decode_tree(&b).map_err(|e| Error::corrupt(e.to_string())));
        let mut repairs = Vec::new();
        let mut nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                let shown = if dir.is_empty() { "/" } else { dir.as_str() };
                repairs.push(Arc::from(format!(
                    "dir {shown}: unreadable ({e}), replaced with an empty directory"
                )));
                let id = self.save(&[])?;
                self.memo.insert(tree, (id, repairs.clone()));
                return Ok((id, repairs));
            }
        };
        let mut changed = false;
        let dir_len = dir.len();
        for n in &mut nodes {
            dir.truncate(dir_len);
            let _ = write!(dir, "/{}", n.name);
            match n.node_type {
                NodeType::Dir => {
                    if let Some(sub) = n.subtree {
                        let (new, r) = self.tree(sub, dir, depth + 1)?;
                        if new != sub {
                            n.subtree = Some(new);
                            changed = true;
                        }
                        repairs.extend(r);
                    }
                }
                NodeType::File => {
                    let content = n.content.clone().unwrap_or_default();
                    let present: Vec<Id> = content
                        .iter()
                        .filter(|id| self.index.has(BlobType::Data, id))
                        .copied()
                        .collect();
                    if present.len() != content.len() {
                        let size: u64 = present
                            .iter()
                            .filter_map(|id| self.index.get(BlobType::Data, id))
                            .map(|l| {
                                if l.blob.uncompressed_length != 0 {
                                    l.blob.uncompressed_length as u64
                                } else {
                                    (l.blob.length as u64)
                                        .saturating_sub(crate::crypto::OVERHEAD as u64)
                                }
                            })
                            .sum();
                        repairs.push(Arc::from(format!(
                            "file {dir}: removed missing content ({} of {} bytes kept)",
                            size, n.size
                        )));
                        n.content = Some(present);
                        n.size = size;
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        dir.truncate(dir_len);
        let id = if changed { self.save(&nodes)? } else { tree };
        self.memo.insert(tree, (id, repairs.clone()));
        Ok((id, repairs))
    }
}

/// Repairs snapshots whose data or trees are missing: files lose the missing parts,
/// unreadable directories become empty. The caller holds an exclusive lock.
pub fn repair_snapshots(
    repo: &Repository,
    snapshots: &[Snapshot],
    forget: bool,
    dry_run: bool,
) -> Result<SnapshotsRepair> {
    let index = repo.load_index()?;
    let writer = PackWriter::new(repo, &index);
    let mut report = SnapshotsRepair::default();
    let mut pending = Vec::new();
    {
        let mut r = Repairer {
            repo,
            index: &index,
            writer: &writer,
            dry_run,
            memo: HashMap::new(),
        };
        for s in snapshots {
            let root_ok = repo
                .load_blob(&index, BlobType::Tree, &s.tree)
                .and_then(|b| node::decode_tree(&b).map_err(|e| Error::corrupt(e.to_string())))
                .is_ok();
            if !root_ok {
                report.repaired.push(SnapshotRepair {
                    snapshot: s.id,
                    new: None,
                    repairs: vec!["the root tree is unreadable: nothing can be saved".into()],
                    lost: true,
                });
                continue;
            }
            let (tree, repairs) = depth::with_deep_stack(|| r.tree(s.tree, &mut String::new(), 0))
                .map_err(|e| e.context(format!("snapshot {}", s.id.short())))?;
            let repairs: Vec<String> = repairs.iter().map(|r| r.to_string()).collect();
            if tree == s.tree {
                report.intact += 1;
                continue;
            }
            let mut new = s.clone();
            new.tree = tree;
            if !new.tags.iter().any(|t| t == "repaired") {
                new.tags.push("repaired".into());
            }
            new.original = Some(s.original.unwrap_or(s.id));
            pending.push((new, repairs, s.id));
        }
    }
    if dry_run {
        for (_, repairs, old) in pending {
            report.repaired.push(SnapshotRepair {
                snapshot: old,
                new: None,
                repairs,
                lost: false,
            });
        }
        return Ok(report);
    }
    writer.finish()?;
    for (mut new, repairs, old) in pending {
        let id = new.save(repo)?;
        report.repaired.push(SnapshotRepair {
            snapshot: old,
            new: Some(id),
            repairs,
            lost: false,
        });
    }
    if forget {
        for r in &report.repaired {
            repo.backend()
                .remove(FileType::Snapshot, &r.snapshot.to_hex())?;
            report.forgotten += 1;
        }
    }
    Ok(report)
}
