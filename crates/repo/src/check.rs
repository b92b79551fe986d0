//! Check: is the repository whole? Structure (indexes, packs present with the right sizes,
//! every tree readable, every referenced blob indexed) and optionally the data itself
//! (every selected pack re-read, its hash, header and every blob verified).
//!
//! Check never modifies the repository. Every problem is collected with the file it is
//! in, so one damaged pack or index does not hide the others.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile};
use crate::node::{self, NodeType};
use crate::pack::{self, BlobType, PackedBlob};
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Which packs `--read-data` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    None,
    All,
    /// Group `n` of `m` (1-based), by the first byte of the pack id, like restic.
    Subset(u32, u32),
    /// A random fraction (0..=1] of the packs.
    Fraction(f64),
}

impl ReadData {
    /// Parses `--read-data-subset` values: `n/m`, `5%`.
    pub fn parse_subset(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::invalid(format!(
                "invalid --read-data-subset {s:?}: use n/m (e.g. 1/5) or a percentage (e.g. 5%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Fraction(v / 100.0));
        }
        let (n, m) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let m: u32 = m.trim().parse().map_err(|_| bad())?;
        if m == 0 || n == 0 || n > m {
            return Err(bad());
        }
        Ok(ReadData::Subset(n, m))
    }
}

#[derive(Serialize, Debug, Default)]
pub struct CheckReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub bytes_read: u64,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[derive(Default, Debug)]
pub struct Progress {
    pub packs_total: AtomicU64,
    pub packs_done: AtomicU64,
}

pub fn check(repo: &Repository, read: ReadData, progress: &Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // Packs as stored, so index entries are checked against their pack's real size.
    let listed: HashMap<Id, u64> = repo.pack_sizes()?;

    // Indexes, one by one so a damaged one is named and the rest still count.
    let mut index = Index::with_pack_sizes(listed.clone());
    let index_ids = repo.list_ids(FileType::Index)?;
    let loaded = crate::parallel::map(index_ids, 4, |id| {
        Ok((id, repo.load_json::<IndexFile>(FileType::Index, &id)))
    })?;
    let mut indexed_packs: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    for (id, r) in loaded {
        match r {
            Ok(f) => {
                for p in &f.packs {
                    let blobs = indexed_packs.entry(p.id).or_default();
                    for b in &p.blobs {
                        blobs.push(b.packed());
                    }
                }
                index.add_file(&f);
            }
            Err(e) => report.errors.push(format!(
                "index {id}: {e} (run `cairn repair index` to rebuild it from the packs)"
            )),
        }
    }

    for problem in index.damaged_entries() {
        report.errors.push(format!("index: {problem}"));
    }

    // Packs: every indexed pack exists with a plausible size.
    report.packs = listed.len();
    for (pack_id, blobs) in &indexed_packs {
        match listed.get(pack_id) {
            None => report.errors.push(format!(
                "pack {pack_id}: listed in the index but missing from the repository"
            )),
            Some(size) => {
                let end = blobs
                    .iter()
                    .map(|b| b.offset as u64 + b.length as u64)
                    .max()
                    .unwrap_or(0);
                if end > *size {
                    report.errors.push(format!(
                        "pack {pack_id}: is {size} bytes but the index places blobs up to byte {end} (truncated pack)"
                    ));
                }
            }
        }
    }
    for pack_id in listed.keys() {
        if !indexed_packs.contains_key(pack_id) {
            report.warnings.push(format!(
                "pack {pack_id}: not referenced by any index (left by an interrupted backup; `prune` removes it)"
            ));
        }
    }

    let snapshot_ids = repo.list_ids(FileType::Snapshot)?;

    // Data: the packs the index names (a pack no index names is only warned about, like
    // restic: its content is nobody's, and prune removes it).
    let mut to_read: Vec<(Id, u64)> = listed
        .iter()
        .filter(|(id, _)| indexed_packs.contains_key(id))
        .filter(|(id, _)| match read {
            ReadData::None => false,
            ReadData::All | ReadData::Fraction(_) => true,
            ReadData::Subset(n, m) => (id.0[0] as u32) % m == n - 1,
        })
        .map(|(id, size)| (*id, *size))
        .collect();
    to_read.sort();
    if let ReadData::Fraction(f) = read {
        use rand::seq::SliceRandom;
        let want = ((to_read.len() as f64) * f).ceil() as usize;
        to_read.shuffle(&mut rand::thread_rng());
        to_read.truncate(want.min(to_read.len()));
    }
    progress
        .packs_total
        .store(to_read.len() as u64, Ordering::Relaxed);
    let data_errors = Mutex::new(Vec::new());
    let bytes = AtomicU64::new(0);
    report.packs_read = to_read.len();
    // One reader per core (more for a remote backend, whose connections wait on the
    // network), started now: the packs are read while this thread walks the trees.
    let readers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
        .max(repo.backend().connections())
        .min(to_read.len());
    let queue = Mutex::new(to_read.into_iter());
    std::thread::scope(|s| {
        for _ in 0..readers {
            s.spawn(|| {
                let mut scratch = Vec::new();
                while let Some((id, _size)) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let errs = check_pack(repo, &id, indexed_packs.get(&id), &bytes, &mut scratch);
                    if let Ok(mut e) = data_errors.lock() {
                        e.extend(errs);
                    }
                    progress.packs_done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        check_trees(repo, &index, snapshot_ids, &mut report);
    });
    report
        .errors
        .extend(data_errors.into_inner().unwrap_or_default());
    report.bytes_read = bytes.load(Ordering::Relaxed);
    Ok(report)
}

/// Snapshots and their trees: every snapshot loads, every tree is readable, every data
/// blob a file names is indexed.
fn check_trees(repo: &Repository, index: &Index, snapshot_ids: Vec<Id>, report: &mut CheckReport) {
    let mut roots = Vec::new();
    for id in snapshot_ids {
        match Snapshot::load(repo, &id) {
            Ok(s) => roots.push((s.id, s.tree)),
            Err(e) => report.errors.push(format!("snapshot {id}: {e}")),
        }
    }
    report.snapshots = roots.len();
    let mut seen: HashSet<Id> = HashSet::new();
    let mut stack: Vec<(Id, Id)> = roots.iter().map(|(s, t)| (*s, *t)).collect();
    while let Some((snap, tree)) = stack.pop() {
        if !seen.insert(tree) {
            continue;
        }
        let nodes = match repo
            .load_blob(index, BlobType::Tree, &tree)
            .and_then(|b| node::decode_tree(&b).map_err(|e| Error::corrupt(e.to_string())))
        {
            Ok(n) => n,
            Err(e) => {
                report
                    .errors
                    .push(format!("snapshot {}: tree {tree}: {e}", snap.short()));
                continue;
            }
        };
        report.trees += 1;
        for n in nodes {
            match n.node_type {
                NodeType::Dir => match n.subtree {
                    Some(sub) => stack.push((snap, sub)),
                    None => report.errors.push(format!(
                        "tree {tree}: directory {:?} has no subtree",
                        n.name
                    )),
                },
                NodeType::File => {
                    for id in n.content.iter().flatten() {
                        if !index.has(BlobType::Data, id) {
                            report.errors.push(format!(
                                "tree {tree}: file {:?}: data blob {id} not found in the index",
                                n.name
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Reads one pack completely and verifies it: its hash, its header, the index's entries
/// against the header, and every blob (MAC, decompression, hash). Returns the problems
/// found. `scratch` is the caller's buffer for decompressed blobs.
fn check_pack(
    repo: &Repository,
    id: &Id,
    indexed: Option<&Vec<PackedBlob>>,
    bytes: &AtomicU64,
    scratch: &mut Vec<u8>,
) -> Vec<String> {
    let mut errs = Vec::new();
    let mut data = match repo.backend().read(FileType::Pack, &id.to_hex()) {
        Ok(d) => d,
        Err(e) => return vec![format!("pack {id}: cannot be read: {e}")],
    };
    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
    if Id::hash(&data) != *id {
        errs.push(format!(
            "pack {id}: content does not match its name (the file is damaged)"
        ));
    }
    let size = data.len() as u64;
    let header = pack::header_length(&data, size).and_then(|hl| {
        let hl = hl as usize;
        pack::parse_header(repo.key(), &data[data.len() - 4 - hl..data.len() - 4], size)
    });
    // The header's blobs lie back to back and never overlap, so each can be decoded in
    // place; the index's entries (when the header is damaged) may overlap: copied.
    let (blobs, in_place) = match header {
        Ok(b) => (b, true),
        Err(e) => {
            errs.push(format!("pack {id}: header: {e}"));
            match indexed {
                Some(b) => (b.clone(), false),
                None => return errs,
            }
        }
    };
    if let Some(ix) = indexed {
        let mut a: Vec<_> = ix.iter().map(|b| (b.offset, b.id, b.length)).collect();
        let mut b: Vec<_> = blobs.iter().map(|b| (b.offset, b.id, b.length)).collect();
        a.sort();
        a.dedup();
        b.sort();
        if a.iter().any(|x| b.binary_search(x).is_err()) {
            errs.push(format!(
                "pack {id}: index entries do not match the pack header"
            ));
        }
    }
    for b in &blobs {
        let range = b.offset as usize..b.offset as usize + b.length as usize;
        let decoded = if in_place {
            data.get_mut(range)
                .map(|stored| pack::decode_blob_in_place(repo.key(), b, stored, scratch).map(drop))
        } else {
            data.get(range)
                .map(|stored| pack::decode_blob(repo.key(), b, stored).map(drop))
        };
        match decoded {
            None => errs.push(format!(
                "pack {id}: blob {} extends past the end of the pack",
                b.id
            )),
            Some(Err(e)) => errs.push(format!("pack {id}: {} blob {}: {e}", b.blob_type, b.id)),
            Some(Ok(())) => {}
        }
    }
    errs
}
