//! Prune: delete what no snapshot references, repacking partly used packs.
//!
//! Plan first, from complete knowledge: every index file must load, every snapshot and
//! tree must decode, every pack holding a used blob must exist. Anything missing aborts
//! before a single file is touched: deleting on partial knowledge is how repositories lose
//! data. A missing pack that holds only unused blobs is dropped from the index, like restic.
//!
//! Then execute in the order that keeps every referenced blob reachable at every instant
//! (a kill at any point leaves a repository `restic check --read-data` accepts):
//! 1. copy the used blobs of packs chosen for repacking into new packs (verified first);
//! 2. write new index files describing every pack that stays plus the new ones;
//! 3. delete the old index files (the new ones already cover everything);
//! 4. delete the packs nothing references any more.
//!
//! A blob stored twice counts once: the copy in the pack with the least unused space
//! is kept, the others are unused space.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexBlob, IndexFile, IndexPack};
use crate::node::{self, NodeType};
use crate::pack::{self, BlobType};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::{write_index_files, PackWriter};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// How much unused space may stay in the repository after pruning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// At most this percentage of the repository (restic's default is 5%).
    Percent(f64),
    Bytes(u64),
    Unlimited,
}

impl MaxUnused {
    /// Parses restic's syntax: `5%`, `0`, `1.5G`, `unlimited`.
    pub fn parse(s: &str) -> Result<MaxUnused> {
        let s = s.trim();
        if s == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| {
                Error::invalid(format!("--max-unused {s:?}: not a percentage (e.g. 5%)"))
            })?;
            if !(0.0..100.0).contains(&v) {
                return Err(Error::invalid(format!(
                    "--max-unused {s:?}: the percentage must be at least 0 and below 100"
                )));
            }
            return Ok(MaxUnused::Percent(v));
        }
        crate::exclude::parse_size(s)
            .map(MaxUnused::Bytes)
            .map_err(|e| {
                Error::invalid(format!("--max-unused {s:?}: {e} (e.g. 5%, 2G, unlimited)"))
            })
    }

    /// The unused bytes allowed beside `used` bytes of used blobs. For a percentage p,
    /// unused / (used + unused) <= p, like restic.
    fn limit(self, used: u64) -> u64 {
        match self {
            MaxUnused::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub max_unused: MaxUnused,
    /// At most this many bytes of packs are repacked (None: no limit).
    pub max_repack_bytes: Option<u64>,
    pub threads: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            threads: 4,
        }
    }
}

/// What prune found and will do (or did), in bytes as stored.
#[derive(Serialize, Debug, Default, Clone)]
pub struct PruneStats {
    pub snapshots: usize,
    pub used_blobs: u64,
    pub used_size: u64,
    pub unused_blobs: u64,
    pub unused_size: u64,
    pub duplicate_blobs: u64,
    pub duplicate_size: u64,
    pub packs_total: usize,
    pub packs_keep: usize,
    pub packs_repack: usize,
    pub packs_delete: usize,
    /// Pack files no index mentions (left by interrupted backups).
    pub packs_unreferenced: usize,
    /// Packs the index names that are gone, holding nothing in use: dropped from the index.
    pub packs_missing: usize,
    pub repack_size: u64,
    /// Used bytes copied while repacking.
    pub repack_used_size: u64,
    pub delete_size: u64,
    pub unreferenced_size: u64,
    /// Bytes freed: deleted and repacked packs minus what repacking rewrites.
    pub freed_size: u64,
    pub size_before: u64,
    pub size_after: u64,
    pub unused_after: u64,
    pub index_files_written: usize,
    pub index_files_deleted: usize,
}

/// A pack's decided fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Delete,
}

struct PackInfo {
    id: Id,
    size: u64,
    blobs: Vec<IndexBlob>,
    used: u64,
    unused: u64,
    /// Blob entries whose copy here is the one kept.
    keep: Vec<usize>,
    fate: Fate,
}

/// A decided prune, ready to execute.
pub struct PrunePlan {
    pub stats: PruneStats,
    packs: Vec<PackInfo>,
    unreferenced: Vec<Id>,
    /// Indexed packs that are gone (none holds a used blob): left out of the new index.
    missing: Vec<Id>,
    old_indexes: Vec<Id>,
}

pub struct Progress {
    pub trees_done: AtomicU64,
    pub packs_total: AtomicU64,
    pub packs_done: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            trees_done: AtomicU64::new(0),
            packs_total: AtomicU64::new(0),
            packs_done: AtomicU64::new(0),
        }
    }
}

/// Loads every index file; any failure aborts (prune must know every pack's content).
fn load_indexes(repo: &Repository, threads: usize) -> Result<(Vec<Id>, Vec<IndexFile>)> {
    let ids = repo.list_ids(FileType::Index)?;
    let files = crate::parallel::map(ids.clone(), threads, |id| {
        repo.load_json::<IndexFile>(FileType::Index, &id)
            .map_err(|e| {
                e.context(format!(
                "index {id} cannot be read; prune needs every index: run `cairn repair index` first"
            ))
            })
    })?;
    Ok((ids, files))
}

/// Every blob the snapshots reference (trees and data), walking trees level by level on
/// several threads. Any unreadable snapshot or tree aborts.
pub fn used_blobs(
    repo: &Repository,
    index: &Index,
    snapshots: &[Snapshot],
    threads: usize,
    progress: &Progress,
) -> Result<HashSet<(BlobType, Id)>> {
    let mut used: HashSet<(BlobType, Id)> = HashSet::new();
    let mut frontier: Vec<Id> = Vec::new();
    for s in snapshots {
        if used.insert((BlobType::Tree, s.tree)) {
            frontier.push(s.tree);
        }
    }
    while !frontier.is_empty() {
        let level = crate::parallel::map(std::mem::take(&mut frontier), threads, |tree| {
            let bytes = repo.load_blob(index, BlobType::Tree, &tree).map_err(|e| {
                e.context(format!(
                    "tree {tree} cannot be loaded; prune stops so nothing is lost (run `cairn check`)"
                ))
            })?;
            let nodes = node::decode_tree(&bytes)
                .map_err(|e| Error::corrupt(format!("tree {tree}: {e}")))?;
            progress.trees_done.fetch_add(1, Ordering::Relaxed);
            // Only the ids leave the thread: a level of decoded nodes (names, metadata)
            // of a 200k-file snapshot was the plan's peak memory.
            let mut ids: Vec<(BlobType, Id)> = Vec::new();
            for n in nodes {
                match n.node_type {
                    NodeType::Dir => ids.extend(n.subtree.map(|sub| (BlobType::Tree, sub))),
                    NodeType::File => ids.extend(
                        n.content
                            .into_iter()
                            .flatten()
                            .map(|id| (BlobType::Data, id)),
                    ),
                    _ => {}
                }
            }
            Ok(ids)
        })?;
        for ids in level {
            for (t, id) in ids {
                if used.insert((t, id)) && t == BlobType::Tree {
                    frontier.push(id);
                }
            }
        }
    }
    Ok(used)
}

/// Decides what to delete and repack. Reads indexes, snapshots and trees; writes nothing.
pub fn plan(repo: &Repository, opts: &PruneOptions, progress: &Progress) -> Result<PrunePlan> {
    let threads = opts.threads.max(1);
    let listed: HashMap<Id, u64> = repo.pack_sizes()?;
    let (old_indexes, files) = load_indexes(repo, threads)?;
    let index = Index::from_files(listed.clone(), &files);
    let mut pack_blobs: HashMap<Id, Vec<IndexBlob>> = HashMap::new();
    for f in &files {
        for p in &f.packs {
            // An entry that cannot be right (past its pack's end) is not carried over.
            if let std::collections::hash_map::Entry::Vacant(v) = pack_blobs.entry(p.id) {
                v.insert(
                    p.blobs
                        .iter()
                        .filter(|b| index.entry_problem(&p.id, b).is_none())
                        .cloned()
                        .collect(),
                );
            }
        }
    }
    drop(files);
    let snapshots = Snapshot::load_all(repo)?;
    let used = used_blobs(repo, &index, &snapshots, threads, progress)?;
    for (t, id) in &used {
        if !index.has(*t, id) {
            let why = index
                .damage(*t, id)
                .map(|d| format!(" (its entry is damaged: {d})"))
                .unwrap_or_default();
            return Err(Error::corrupt(format!(
                "{t:?} blob {id} is referenced by a snapshot but in no index{why}; prune stops so nothing is lost (run `cairn check`, then `cairn repair index`)"
            )));
        }
    }
    drop(index);

    let mut stats = PruneStats {
        snapshots: snapshots.len(),
        packs_total: listed.len(),
        size_before: listed.values().sum(),
        ..Default::default()
    };
    let mut packs = Vec::with_capacity(pack_blobs.len());
    // Packs the index names that are gone: harmless if nothing in use is only there.
    let mut missing: HashMap<Id, Vec<IndexBlob>> = HashMap::new();
    for (id, blobs) in pack_blobs {
        let Some(size) = listed.get(&id) else {
            missing.insert(id, blobs);
            continue;
        };
        let unreferenced: u64 = blobs
            .iter()
            .filter(|b| !used.contains(&(b.blob_type, b.id)))
            .map(|b| b.length as u64)
            .sum();
        packs.push(PackInfo {
            id,
            size: *size,
            blobs,
            used: 0,
            unused: unreferenced,
            keep: Vec::new(),
            fate: Fate::Keep,
        });
    }
    // Claim each used blob in the pack with the least unreferenced space, so duplicates
    // end up in packs that are otherwise full.
    packs.sort_by_key(|p| (p.unused, p.id));
    let mut claimed: HashSet<(BlobType, Id)> = HashSet::with_capacity(used.len());
    for p in &mut packs {
        p.unused = 0;
        for (i, b) in p.blobs.iter().enumerate() {
            let key = (b.blob_type, b.id);
            if used.contains(&key) {
                if claimed.insert(key) {
                    p.used += b.length as u64;
                    p.keep.push(i);
                    stats.used_blobs += 1;
                    stats.used_size += b.length as u64;
                } else {
                    p.unused += b.length as u64;
                    stats.duplicate_blobs += 1;
                    stats.duplicate_size += b.length as u64;
                }
            } else {
                p.unused += b.length as u64;
                stats.unused_blobs += 1;
                stats.unused_size += b.length as u64;
            }
        }
    }
    stats.unused_size += stats.duplicate_size;
    stats.unused_blobs += stats.duplicate_blobs;
    let mut needed_missing: Vec<String> = missing
        .iter()
        .filter_map(|(pack, blobs)| {
            let b = blobs.iter().find(|b| {
                let key = (b.blob_type, b.id);
                used.contains(&key) && !claimed.contains(&key)
            })?;
            Some(format!("pack {pack} (holds {} blob {})", b.blob_type, b.id))
        })
        .collect();
    if !needed_missing.is_empty() {
        needed_missing.sort();
        return Err(Error::corrupt(format!(
            "{} pack(s) holding blobs that snapshots use are missing from the repository: {}; prune stops so nothing more is lost (run `cairn check`; `cairn repair index` and `cairn repair snapshots` can recover what is left)",
            needed_missing.len(),
            needed_missing.join(", ")
        )));
    }
    let mut missing: Vec<Id> = missing.into_keys().collect();
    missing.sort();
    stats.packs_missing = missing.len();

    // Fully unused packs go; partly used ones are repacked, most wasteful first, until
    // the unused space left is within the limit (and the repack budget allows).
    let mut unused_left: u64 = 0;
    let mut candidates: Vec<usize> = Vec::new();
    for (i, p) in packs.iter_mut().enumerate() {
        if p.keep.is_empty() {
            p.fate = Fate::Delete;
        } else if p.unused > 0 {
            unused_left += p.unused;
            candidates.push(i);
        }
    }
    candidates.sort_by(|a, b| {
        let ratio = |p: &PackInfo| p.unused as f64 / (p.used + p.unused).max(1) as f64;
        ratio(&packs[*b])
            .total_cmp(&ratio(&packs[*a]))
            .then(packs[*a].id.cmp(&packs[*b].id))
    });
    let limit = opts.max_unused.limit(stats.used_size);
    let mut repack_budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for i in candidates {
        if unused_left <= limit {
            break;
        }
        let p = &mut packs[i];
        if p.size > repack_budget {
            continue;
        }
        repack_budget -= p.size;
        unused_left -= p.unused;
        p.fate = Fate::Repack;
    }
    let indexed: HashSet<Id> = packs.iter().map(|p| p.id).collect();
    let mut unreferenced: Vec<Id> = listed
        .keys()
        .filter(|id| !indexed.contains(id))
        .copied()
        .collect();
    unreferenced.sort();
    for p in &packs {
        match p.fate {
            Fate::Keep => stats.packs_keep += 1,
            Fate::Repack => {
                stats.packs_repack += 1;
                stats.repack_size += p.size;
                stats.repack_used_size += p.used;
            }
            Fate::Delete => {
                stats.packs_delete += 1;
                stats.delete_size += p.size;
            }
        }
    }
    stats.packs_unreferenced = unreferenced.len();
    stats.unreferenced_size = unreferenced.iter().map(|id| listed[id]).sum();
    stats.freed_size = (stats.delete_size + stats.repack_size + stats.unreferenced_size)
        .saturating_sub(stats.repack_used_size);
    stats.size_after = stats.size_before.saturating_sub(stats.freed_size);
    stats.unused_after = unused_left;
    Ok(PrunePlan {
        stats,
        packs,
        unreferenced,
        missing,
        old_indexes,
    })
}

thread_local! {
    /// Per-thread buffers of the repack: the bytes read, a blob being verified, its
    /// plaintext. Reused from pack to pack (fresh 16 MiB buffers cost page faults).
    static REPACK_BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Reads of a pack's kept blobs closer than this are merged into one read.
const READ_GAP: u64 = 256 * 1024;
/// A merged read grows no larger than this (a single larger blob is read alone): each
/// repacking thread holds one read, a copy of one blob and its plaintext.
const READ_MAX: u64 = 2 * 1024 * 1024;

/// Copies the kept blobs of one pack into the writer, verifying each, without
/// re-encoding. Reads only the parts of the pack holding them (merged when close).
fn repack_pack(
    repo: &Repository,
    writer: &PackWriter,
    p: &PackInfo,
    read: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut keep: Vec<&IndexBlob> = p.keep.iter().map(|&i| &p.blobs[i]).collect();
    keep.sort_by_key(|b| b.offset);
    let name = p.id.to_hex();
    let mut i = 0;
    while i < keep.len() {
        let start = keep[i].offset as u64;
        let mut end = start + keep[i].length as u64;
        let mut j = i + 1;
        while j < keep.len() {
            let (o, l) = (keep[j].offset as u64, keep[j].length as u64);
            if o > end + READ_GAP || o.max(end) + l - start > READ_MAX {
                break;
            }
            end = end.max(o + l);
            j += 1;
        }
        if end > p.size {
            return Err(Error::corrupt(format!(
                "pack {}: blob {} lies past its end",
                p.id, keep[i].id
            )));
        }
        repo.backend()
            .read_range_into(FileType::Pack, &name, start, end - start, read)?;
        for b in &keep[i..j] {
            let from = (b.offset as u64 - start) as usize;
            let stored = read.get(from..from + b.length as usize).ok_or_else(|| {
                Error::corrupt(format!("pack {}: blob {} lies past its end", p.id, b.id))
            })?;
            let blob = b.packed();
            scratch.clear();
            scratch.extend_from_slice(stored);
            pack::decode_blob_in_place(repo.key(), &blob, scratch, out).map_err(|e| {
                e.context(format!(
                    "pack {}: a blob still in use is damaged; prune stops with nothing deleted (run `cairn check --read-data`)",
                    p.id
                ))
            })?;
            writer.save_sealed(b.blob_type, b.id, stored, b.uncompressed_length)?;
        }
        i = j;
    }
    Ok(())
}

impl PrunePlan {
    /// True when executing would change nothing.
    pub fn is_noop(&self) -> bool {
        self.stats.packs_repack == 0
            && self.stats.packs_delete == 0
            && self.unreferenced.is_empty()
            && self.missing.is_empty()
    }

    /// Carries the plan out in crash-safe order; see the module documentation.
    pub fn execute(
        mut self,
        repo: &Repository,
        opts: &PruneOptions,
        progress: &Progress,
    ) -> Result<PruneStats> {
        if self.is_noop() {
            return Ok(self.stats);
        }
        let threads = opts.threads.max(1);
        // 1. Repack: copy the kept blobs of each chosen pack, verified, without re-encoding.
        let empty = Index::new();
        let writer = PackWriter::new(repo, &empty);
        let repack: Vec<&PackInfo> = self
            .packs
            .iter()
            .filter(|p| p.fate == Fate::Repack)
            .collect();
        progress
            .packs_total
            .store(repack.len() as u64, Ordering::Relaxed);
        // On a local disk the repack is CPU work: a thread per core (each holds its
        // buffers); a remote backend gets every thread, to overlap round trips.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let repack_threads = if repo.backend().connections() > 1 {
            threads
        } else {
            threads.min(cores.max(2))
        };
        crate::parallel::map(repack, repack_threads, |p| {
            REPACK_BUFFERS.with(|cell| {
                let mut bufs = cell.borrow_mut();
                let (read, scratch, out) = &mut *bufs;
                repack_pack(repo, &writer, p, read, scratch, out)
            })?;
            progress.packs_done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?;
        let new_packs = writer.finish_packs()?;

        // 2. The new index: every pack that stays, plus the new ones.
        let mut index_packs: Vec<IndexPack> = self
            .packs
            .iter()
            .filter(|p| p.fate == Fate::Keep)
            .map(|p| IndexPack {
                id: p.id,
                blobs: p.blobs.clone(),
            })
            .collect();
        index_packs.extend(new_packs);
        let written = write_index_files(repo, &index_packs, &self.old_indexes)?;
        self.stats.index_files_written = written.len();

        // 3. Old index files, now superseded.
        for id in &self.old_indexes {
            if !written.contains(id) {
                repo.backend().remove(FileType::Index, &id.to_hex())?;
                self.stats.index_files_deleted += 1;
            }
        }

        // 4. Packs nothing references any more.
        let doomed = self
            .packs
            .iter()
            .filter(|p| p.fate != Fate::Keep)
            .map(|p| p.id)
            .chain(self.unreferenced.iter().copied());
        for id in doomed {
            repo.backend().remove(FileType::Pack, &id.to_hex())?;
        }
        Ok(self.stats)
    }
}
