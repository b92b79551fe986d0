//! Check: is the repository whole? Structure (indexes, packs present with the right sizes,
//! every tree readable, every referenced blob indexed) and optionally the data itself
//! (every selected pack re-read, its hash, header and every blob verified).
//!
//! Check never modifies the repository. Every problem is collected with the file it is
//! in, so one damaged pack or index does not hide the others.

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexBlob, IndexFile, IndexPack};
use crate::node::{self, NodeType};
use crate::pack::{self, BlobType};
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

    // Indexes, one by one so a damaged one is named and the rest still count; the index
    // is built in one sort (`from_files`), and each pack's entries are compared with its
    // header from the files themselves (every entry, duplicates too), not from a copy.
    let index_ids = repo.list_ids(FileType::Index)?;
    let loaded = crate::parallel::map(index_ids, 4, |id| {
        Ok((id, repo.load_json::<IndexFile>(FileType::Index, &id)))
    })?;
    let mut files: Vec<IndexFile> = Vec::with_capacity(loaded.len());
    for (id, r) in loaded {
        match r {
            Ok(f) => files.push(f),
            Err(e) => report.errors.push(format!(
                "index {id}: {e} (run `cairn repair index` to rebuild it from the packs)"
            )),
        }
    }
    let index = Index::from_files(listed.clone(), &files);
    let mut indexed_packs: HashMap<Id, Vec<(u32, u32)>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        for (pi, p) in f.packs.iter().enumerate() {
            indexed_packs
                .entry(p.id)
                .or_default()
                .push((fi as u32, pi as u32));
        }
    }
    let entries_of = |pack: &Id| -> Option<Vec<&IndexPack>> {
        indexed_packs.get(pack).map(|at| {
            at.iter()
                .filter_map(|&(fi, pi)| files.get(fi as usize)?.packs.get(pi as usize))
                .collect()
        })
    };

    for problem in index.damaged_entries() {
        report.errors.push(format!("index: {problem}"));
    }

    // Packs: every indexed pack exists with a plausible size.
    report.packs = listed.len();
    for pack_id in indexed_packs.keys() {
        match listed.get(pack_id) {
            None => report.errors.push(format!(
                "pack {pack_id}: listed in the index but missing from the repository"
            )),
            Some(size) => {
                let end = entries_of(pack_id)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|p| &p.blobs)
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
                // Each reader's buffers, reused for every pack: a fresh 16 MiB buffer per
                // pack cost page faults and unmaps (15% of the CPU of a check) and left
                // freed buffers in the allocator's arenas.
                let mut buf = Vec::new();
                let mut scratch = Vec::new();
                while let Some((id, size)) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let indexed = entries_of(&id);
                    let errs = check_pack(repo, &id, size, indexed, &bytes, &mut buf, &mut scratch);
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

/// What a reader of a local pack holds at a time: whole blobs up to about this many bytes
/// (a larger blob alone). Two readers then hold a few MiB, not two whole packs, and each
/// piece is still in the CPU's cache when it is hashed, decrypted and decompressed.
const STREAM_BYTES: u64 = 1 << 20;

/// Reads one pack completely and verifies it: its hash, its header, the index's entries
/// against the header, and every blob (MAC, decompression, hash). Returns the problems
/// found. `size` is the pack's listed size; `buf` and `scratch` are the caller's buffers
/// for the pack's bytes and for decompressed blobs.
///
/// The header is read first (from the tail), then the blobs in order, a few at a time,
/// each piece hashed into the pack's hash before its blobs are decoded in place. A remote
/// pack is read in one request after its header (requests cost round trips).
#[allow(clippy::too_many_arguments)]
fn check_pack(
    repo: &Repository,
    id: &Id,
    size: u64,
    indexed: Option<Vec<&IndexPack>>,
    bytes: &AtomicU64,
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Vec<String> {
    use sha2::Digest;
    let max = crate::backend::http::max_file(FileType::Pack);
    if size > max {
        return vec![format!(
            "pack {id}: {size} bytes, larger than any pack can be ({max} bytes): damaged or planted, `prune` removes it"
        )];
    }
    let name = id.to_hex();
    let read = |offset: u64, len: u64, buf: &mut Vec<u8>| {
        repo.backend()
            .read_range_into(FileType::Pack, &name, offset, len, buf)
            .map_err(|e| format!("pack {id}: cannot be read: {e}"))
    };
    // The header: its length in the last 4 bytes, the header before it.
    let mut tail = Vec::new();
    let tail_len = size.min(64 << 10);
    if let Err(e) = read(size - tail_len, tail_len, &mut tail) {
        return vec![e];
    }
    let hl = match pack::header_length(&tail, size) {
        Ok(hl) => u64::from(hl),
        Err(e) => return check_pack_whole(repo, id, size, e, indexed, bytes, buf),
    };
    if hl + 4 > tail.len() as u64 {
        if let Err(e) = read(size - hl - 4, hl + 4, &mut tail) {
            return vec![e];
        }
    }
    let header_bytes = &tail[tail.len() - 4 - hl as usize..];
    let blobs = match pack::parse_header(repo.key(), &header_bytes[..hl as usize], size) {
        Ok(b) => b,
        Err(e) => return check_pack_whole(repo, id, size, e, indexed, bytes, buf),
    };
    let mut errs = Vec::new();
    // Every index entry must be one of the header's (same offset, id and length). The
    // header's blobs lie back to back from offset 0: sorted by offset.
    if let Some(ix) = indexed {
        let in_header = |e: &IndexBlob| {
            let from = blobs.partition_point(|b| b.offset < e.offset);
            blobs[from..]
                .iter()
                .take_while(|b| b.offset == e.offset)
                .any(|b| b.id == e.id && b.length == e.length)
        };
        if !ix.iter().flat_map(|p| &p.blobs).all(in_header) {
            errs.push(format!(
                "pack {id}: index entries do not match the pack header"
            ));
        }
    }
    let header_start = size - 4 - hl;
    let step = if repo.backend().connections() > 1 {
        u64::MAX
    } else {
        STREAM_BYTES
    };
    let mut hasher = sha2::Sha256::new();
    let (mut pos, mut i) = (0u64, 0usize);
    while pos < header_start {
        // Whole blobs from `pos`, up to `step` bytes (at least one blob); the last piece
        // runs to the header.
        let (mut end, mut j) = (pos, i);
        while let Some(b) = blobs.get(j) {
            let b_end = b.offset as u64 + b.length as u64;
            if end > pos && b_end - pos > step {
                break;
            }
            end = b_end;
            j += 1;
        }
        if j == blobs.len() {
            end = header_start;
        }
        if let Err(e) = read(pos, end - pos, buf) {
            errs.push(e);
            return errs;
        }
        bytes.fetch_add(end - pos, Ordering::Relaxed);
        hasher.update(&buf[..]);
        for b in &blobs[i..j] {
            let start = (b.offset as u64 - pos) as usize;
            let decoded = buf
                .get_mut(start..start + b.length as usize)
                .map(|stored| pack::decode_blob_in_place(repo.key(), b, stored, scratch).map(drop));
            match decoded {
                None => errs.push(format!(
                    "pack {id}: blob {} extends past the end of the pack",
                    b.id
                )),
                Some(Err(e)) => errs.push(format!("pack {id}: {} blob {}: {e}", b.blob_type, b.id)),
                Some(Ok(())) => {}
            }
        }
        pos = end;
        i = j;
    }
    hasher.update(header_bytes);
    bytes.fetch_add(header_bytes.len() as u64, Ordering::Relaxed);
    if Id(hasher.finalize().into()) != *id {
        errs.insert(
            0,
            format!("pack {id}: content does not match its name (the file is damaged)"),
        );
    }
    errs
}

/// A pack whose header cannot be read: the whole pack in memory, its hash checked and
/// the blobs the index places in it decoded (those entries may overlap: each is copied).
fn check_pack_whole(
    repo: &Repository,
    id: &Id,
    size: u64,
    header_error: Error,
    indexed: Option<Vec<&IndexPack>>,
    bytes: &AtomicU64,
    buf: &mut Vec<u8>,
) -> Vec<String> {
    let mut errs = Vec::new();
    if let Err(e) = repo
        .backend()
        .read_range_into(FileType::Pack, &id.to_hex(), 0, size, buf)
    {
        return vec![format!("pack {id}: cannot be read: {e}")];
    }
    bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    if Id::hash(buf) != *id {
        errs.push(format!(
            "pack {id}: content does not match its name (the file is damaged)"
        ));
    }
    errs.push(format!("pack {id}: header: {header_error}"));
    for b in indexed
        .iter()
        .flatten()
        .flat_map(|p| &p.blobs)
        .map(IndexBlob::packed)
    {
        let range = b.offset as usize..b.offset as usize + b.length as usize;
        match buf
            .get(range)
            .map(|stored| pack::decode_blob(repo.key(), &b, stored))
        {
            None => errs.push(format!(
                "pack {id}: blob {} extends past the end of the pack",
                b.id
            )),
            Some(Err(e)) => errs.push(format!("pack {id}: {} blob {}: {e}", b.blob_type, b.id)),
            Some(Ok(_)) => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalBackend;
    use crate::writer::PackWriter;
    use std::sync::Arc;

    use crate::writer::tests::blob;

    fn pack_path(root: &std::path::Path, id: &Id) -> std::path::PathBuf {
        let hex = id.to_hex();
        root.join("data").join(&hex[..2]).join(hex)
    }

    /// Packs of 2 MiB are verified in pieces (whole blobs up to STREAM_BYTES): a clean
    /// repository passes with every byte read; a flipped byte in a blob and a damaged
    /// header are each found in their pack, and the others stay clean.
    #[test]
    fn read_data_streams_packs_in_pieces_and_finds_damage_in_blobs_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let be = Arc::new(LocalBackend::new(&root));
        let repo = Repository::init(be, "pw", 2, None).unwrap();
        let index = Index::new();
        let w = PackWriter::new(&repo, &index).with_pack_size(2 << 20);
        for i in 0..700 {
            w.save(BlobType::Data, &blob(i)).unwrap();
        }
        w.finish().unwrap();
        let sizes = repo.pack_sizes().unwrap();
        assert!(sizes.len() >= 3, "{sizes:?}");
        assert!(sizes.values().any(|&s| s > 2 * STREAM_BYTES - 100_000));
        let report = check(&repo, ReadData::All, &Progress::default()).unwrap();
        assert!(report.ok(), "{:?}", report.errors);
        assert_eq!(report.packs_read, sizes.len());
        assert_eq!(report.bytes_read, sizes.values().sum::<u64>());

        let mut ids: Vec<Id> = sizes.keys().copied().collect();
        ids.sort();
        // A byte in the second piece of the first pack; the header of the second pack.
        let flip = |id: &Id, at: u64| {
            let p = pack_path(&root, id);
            let mut data = std::fs::read(&p).unwrap();
            data[at as usize] ^= 1;
            let mut perms = std::fs::metadata(&p).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&p, perms).unwrap();
            std::fs::write(&p, data).unwrap();
        };
        flip(&ids[0], STREAM_BYTES + 5000);
        flip(&ids[1], sizes[&ids[1]] - 40);
        let report = check(&repo, ReadData::All, &Progress::default()).unwrap();
        let about = |id: &Id| -> Vec<&String> {
            report
                .errors
                .iter()
                .filter(|e| e.contains(&id.to_string()))
                .collect()
        };
        let first = about(&ids[0]);
        assert!(
            first.iter().any(|e| e.contains("does not match its name")),
            "{first:?}"
        );
        assert!(first.iter().any(|e| e.contains("data blob")), "{first:?}");
        let second = about(&ids[1]);
        assert!(
            second.iter().any(|e| e.contains("does not match its name")),
            "{second:?}"
        );
        assert!(second.iter().any(|e| e.contains("header")), "{second:?}");
        // The index's entries still decode the second pack's intact blobs.
        assert!(
            !second.iter().any(|e| e.contains("data blob")),
            "{second:?}"
        );
        for id in &ids[2..] {
            assert!(about(id).is_empty(), "{:?}", report.errors);
        }
        assert_eq!(
            report.errors.len(),
            first.len() + second.len(),
            "{:?}",
            report.errors
        );
    }
}
