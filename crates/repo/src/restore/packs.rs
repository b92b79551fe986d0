//! The data phase of a restore: every needed pack read once, on several threads, each
//! blob decrypted, checked and written at its places in the planned files.
//!
//! Owns: grouping the files' blobs by pack, the ranges read (runs of needed blobs, small on
//! a local disk so the threads' buffers stay small), asking the backend to read ahead
//! (the next packs, the tree packs before the plan), and failing only the files that need
//! a blob that cannot be read or verified.

use super::plan::PlannedFile;
use super::write::{self, Target};
use super::Progress;
use crate::backend::FileType;
use crate::id::Id;
use crate::index::Index;
use crate::pack::{self, BlobType, PackedBlob};
use crate::repository::Repository;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Blobs to fetch from one pack: each blob and the (file, offset) places it goes.
type PackWork = Vec<(PackedBlob, Vec<(usize, u64)>)>;

/// Reads every pack the created files need and writes their blobs, on `threads` threads.
pub(super) fn fetch(
    repo: &Repository,
    index: &Index,
    target: &Target,
    files: &[PlannedFile],
    threads: usize,
    bytes_written: &AtomicU64,
    progress: &Progress,
) {
    let packs = pack_work(files, index);
    let backend = repo.backend();
    // A local disk is read in small ranges (memory: threads x (range + largest blob));
    // a remote backend in fewer, larger requests.
    let range_max = if backend.connections() > 1 {
        READ_RANGE_MAX_REMOTE
    } else {
        READ_RANGE_MAX
    };
    // Each pack is asked for `threads` packs before a thread takes it: the kernel (or a
    // backend that can) reads it in the background while the packs before it are decoded.
    let prefetch = |k: usize| {
        if let Some((id, blobs)) = packs.get(k) {
            let name = id.to_hex();
            for (_, start, end) in read_ranges(blobs, range_max) {
                backend.prefetch(FileType::Pack, &name, start, end - start);
            }
        }
    };
    (0..threads).for_each(prefetch);
    let next = AtomicUsize::new(0);
    let ctx = PackCtx {
        repo,
        target,
        files,
        bytes_written,
        progress,
        range_max,
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut bufs = (Vec::new(), Vec::new());
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack_id, blobs)) = packs.get(k) else {
                        return;
                    };
                    prefetch(k + threads);
                    ctx.restore_pack(pack_id, blobs, &mut bufs);
                }
            });
        }
    });
}

/// Tree packs of at most this many bytes in all are read ahead before the plan.
const TREE_PREFETCH_MAX: u64 = 64 << 20;

/// Asks the backend to read the packs holding trees ahead, when they are few: the plan
/// loads one tree after another, and a pack written past the page cache would cost a
/// disk read for each.
pub(super) fn prefetch_tree_packs(repo: &Repository, index: &Index) {
    let packs = index.tree_packs();
    let sizes: Vec<(Id, u64)> = packs
        .into_iter()
        .filter_map(|p| index.pack_size(&p).map(|s| (p, s)))
        .collect();
    if sizes.iter().map(|(_, s)| s).sum::<u64>() > TREE_PREFETCH_MAX {
        return;
    }
    for (pack, size) in sizes {
        repo.backend()
            .prefetch(FileType::Pack, &pack.to_hex(), 0, size);
    }
}

/// Groups the blobs of every created file by pack (a blob needed several times is
/// fetched once).
fn pack_work(files: &[PlannedFile], index: &Index) -> Vec<(Id, PackWork)> {
    let mut by_pack: HashMap<Id, PackWork> = HashMap::new();
    let mut blob_slot: HashMap<Id, (Id, usize)> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        if !f.pending() || f.ident.get().is_none() {
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
    let mut packs: Vec<(Id, PackWork)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    for (_, blobs) in &mut packs {
        blobs.sort_by_key(|(b, _)| b.offset);
    }
    packs
}

/// The reads that fetch the blobs of one pack (sorted by offset): runs of blobs, each
/// read as one range `start..end` of at most `max` bytes (or one larger blob alone).
fn read_ranges(
    blobs: &[(PackedBlob, Vec<(usize, u64)>)],
    max: u64,
) -> Vec<(std::ops::Range<usize>, u64, u64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < blobs.len() {
        let start = blobs[i].0.offset as u64;
        let mut j = i;
        let mut end = start;
        while j < blobs.len() {
            let b = &blobs[j].0;
            let b_end = b.offset as u64 + b.length as u64;
            if b_end - start > max && j > i {
                break;
            }
            end = end.max(b_end);
            j += 1;
        }
        out.push((i..j, start, end));
        i = j;
    }
    out
}

/// The most bytes of a pack read at once from a local disk (a blob larger than this is
/// read whole): small, so the threads' buffers stay small and what was just read is still
/// in the CPU's cache when it is decrypted.
const READ_RANGE_MAX: u64 = 2 << 20;

/// The same for a remote backend, where each request costs a round trip.
const READ_RANGE_MAX_REMOTE: u64 = 8 << 20;

/// The decompression buffer a thread keeps between packs (most blobs decode to 0.5-2 MiB).
const SCRATCH_KEEP: usize = 4 << 20;

/// Open files kept while one pack is processed (a pack of small files needs many).
const OPEN_FILES_MAX: usize = 64;

struct PackCtx<'a> {
    repo: &'a Repository,
    target: &'a Target<'a>,
    files: &'a [PlannedFile],
    bytes_written: &'a AtomicU64,
    progress: &'a Progress,
    /// READ_RANGE_MAX or READ_RANGE_MAX_REMOTE.
    range_max: u64,
}

impl PackCtx<'_> {
    /// Reads the needed part of one pack and writes its blobs into the planned files.
    fn restore_pack(
        &self,
        pack_id: &Id,
        blobs: &[(PackedBlob, Vec<(usize, u64)>)],
        (data, scratch): &mut (Vec<u8>, Vec<u8>),
    ) {
        let files = self.files;
        let fail_targets = |targets: &[(usize, u64)], msg: &str| {
            for (fi, _) in targets {
                files[*fi].fail(|| msg.to_string());
            }
        };
        // Each file is opened once per pack (and checked to be the inode created).
        let mut open: HashMap<usize, std::fs::File> = HashMap::new();
        // Read in ranges of at most `range_max` covering runs of needed blobs: memory
        // stays at threads x (range + largest blob) however large the restore.
        for (run, start, end) in read_ranges(blobs, self.range_max) {
            let read = self.repo.backend().read_range_into(
                FileType::Pack,
                &pack_id.to_hex(),
                start,
                end - start,
                data,
            );
            if let Err(e) = read {
                let msg = format!("pack {pack_id}: {e}");
                for (_, targets) in blobs {
                    fail_targets(targets, &msg);
                }
                return;
            }
            for (blob, targets) in &blobs[run] {
                let from = (blob.offset as u64 - start) as usize;
                let Some(stored) = data.get_mut(from..from + blob.length as usize) else {
                    let msg = format!("pack {pack_id} is shorter than its index says");
                    fail_targets(targets, &msg);
                    continue;
                };
                let plain = match pack::decode_blob_in_place(self.repo.key(), blob, stored, scratch)
                {
                    Ok(p) => p,
                    Err(e) => {
                        let msg =
                            format!("data blob {} in pack {pack_id} is damaged: {e}", blob.id);
                        fail_targets(targets, &msg);
                        continue;
                    }
                };
                for (fi, off) in targets {
                    self.write_blob(&mut open, *fi, plain, *off);
                }
            }
        }
        // A rare large blob grew a buffer: give the memory back rather than keep
        // threads x largest blob for the rest of the restore.
        for (buf, keep) in [(data, 2 * self.range_max as usize), (scratch, SCRATCH_KEEP)] {
            if buf.capacity() > keep {
                buf.clear();
                buf.shrink_to(keep);
            }
        }
    }

    fn write_blob(
        &self,
        open: &mut HashMap<usize, std::fs::File>,
        fi: usize,
        plain: &[u8],
        off: u64,
    ) {
        let f = &self.files[fi];
        if !f.pending() {
            return;
        }
        let Some(&id) = f.ident.get() else { return };
        if !open.contains_key(&fi) {
            if open.len() >= OPEN_FILES_MAX {
                open.clear();
            }
            match self.target.open_file(f.entry.dir, &f.entry.name, id, true) {
                Ok(file) => {
                    open.insert(fi, file);
                }
                Err(e) => {
                    f.fail(|| format!("write: {e}"));
                    return;
                }
            }
        }
        let Some(file) = open.get(&fi) else { return };
        match file.write_all_at(plain, off) {
            Ok(()) => {
                let n = plain.len() as u64;
                self.bytes_written.fetch_add(n, Ordering::Relaxed);
                self.progress.bytes_done.fetch_add(n, Ordering::Relaxed);
                if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // Every blob is in (a failed one never counts down): the metadata now,
                    // on this descriptor, and the file is closed.
                    let done = write::metadata_fd(&f.entry.node, file.as_fd())
                        .map_err(|e| format!("metadata: {e}"));
                    let _ = f.finished.set(done);
                    open.remove(&fi);
                    self.progress.files_done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => f.fail(|| format!("write: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(offset: u32, length: u32) -> (PackedBlob, Vec<(usize, u64)>) {
        let b = PackedBlob {
            blob_type: BlobType::Data,
            id: Id::hash(&offset.to_le_bytes()),
            offset,
            length,
            uncompressed_length: 0,
        };
        (b, vec![(0, 0)])
    }

    /// Every blob is in exactly one range, in order; a range holds its blobs whole and is
    /// at most `max` bytes unless it is one larger blob alone.
    #[test]
    fn read_ranges_cover_every_blob_once_within_the_limit() {
        let max = 100u64;
        let blobs = vec![
            blob(0, 40),
            blob(40, 40),
            blob(80, 40),   // crosses 100: starts the next range
            blob(200, 150), // larger than max: alone
            blob(350, 10),
            blob(500, 10), // a gap of unneeded bytes is read when it fits
        ];
        let ranges = read_ranges(&blobs, max);
        let mut next = 0;
        for (run, start, end) in &ranges {
            assert_eq!(run.start, next);
            next = run.end;
            assert!(end - start <= max || run.len() == 1, "{start}..{end}");
            for (b, _) in &blobs[run.clone()] {
                assert!(b.offset as u64 >= *start);
                assert!(b.offset as u64 + b.length as u64 <= *end);
            }
        }
        assert_eq!(next, blobs.len());
        let spans: Vec<(u64, u64)> = ranges.iter().map(|(_, s, e)| (*s, *e)).collect();
        assert_eq!(
            spans,
            [(0, 80), (80, 120), (200, 350), (350, 360), (500, 510)]
        );
        assert!(read_ranges(&[], max).is_empty());
    }
}
