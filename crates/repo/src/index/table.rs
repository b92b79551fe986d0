//! The compact sorted table of one blob type: ids split in buckets on their first two
//! bytes, locations packed in 24-bit fields, and the escape table for those that do not fit.

use crate::id::Id;
use std::collections::HashMap;

/// Where a blob is, unpacked (the compact table stores it in 12 bytes, see [`Entry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) pack: u32,
    pub(super) offset: u32,
    pub(super) length: u32,
    pub(super) uncompressed_length: u32,
}

/// Bytes of an id implied by its bucket (the table is split on the first two bytes).
pub(super) const PREFIX: usize = 2;
pub(super) const SUFFIX: usize = 32 - PREFIX;
pub(super) const BUCKETS: usize = 1 << (8 * PREFIX);
/// Fields below this fit the 24-bit slots of an entry.
pub(super) const FIELD_LIMIT: u32 = 1 << 24;
/// A pack number of all ones marks an entry whose location is in the escape table.
pub(super) const ESCAPE: u32 = FIELD_LIMIT - 1;
/// No listed size for this pack.
pub(super) const NO_SIZE: u64 = u64::MAX;

/// One indexed blob in 42 bytes: the id without the two bytes its bucket implies, then
/// pack number, offset, length and uncompressed length, 24 bits each (little-endian).
/// The rare entry with a field that does not fit (a pack number past 16M, a pack larger
/// than 16 MiB, a huge tree blob) keeps its location in the escape table: pack number
/// `ESCAPE`, then the table position in the next 4 bytes. The full id is always kept.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub(super) suffix: [u8; SUFFIX],
    pub(super) loc: [u8; 12],
}

/// An id's suffix to search for, its first 8 bytes as a number: almost every comparison of
/// a search is decided by them in one instruction (random ids), without a call to libc's
/// memcmp for 30 bytes (a no-change rerun looks up every unchanged file's content: the
/// memcmp calls were 6.6% of its CPU, `perf record --call-graph dwarf`).
struct Suffix<'a> {
    head: u64,
    bytes: &'a [u8],
}

impl<'a> Suffix<'a> {
    fn of(id: &'a Id) -> Suffix<'a> {
        let bytes = &id.0[PREFIX..];
        Suffix {
            head: head_of(bytes),
            bytes,
        }
    }

    /// This suffix against an entry's.
    fn cmp_entry(&self, e: &Entry) -> std::cmp::Ordering {
        self.head
            .cmp(&head_of(&e.suffix))
            .then_with(|| self.bytes.cmp(&e.suffix[..]))
    }
}

fn head_of(suffix: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&suffix[..8]);
    u64::from_be_bytes(head)
}

/// A prefetch of the cache line holding `x` (none on other architectures).
#[inline(always)]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(x);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

pub(super) fn bucket_of(id: &Id) -> usize {
    usize::from(u16::from_be_bytes([id.0[0], id.0[1]]))
}

pub(super) fn u24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

pub(super) fn put_u24(out: &mut [u8], v: u32) {
    out[..3].copy_from_slice(&v.to_le_bytes()[..3]);
}

impl Entry {
    pub(super) fn new(id: &Id, loc: Location, escapes: &mut Vec<Location>) -> Entry {
        let mut suffix = [0u8; SUFFIX];
        suffix.copy_from_slice(&id.0[PREFIX..]);
        let mut packed = [0u8; 12];
        let fits = loc.pack < ESCAPE
            && loc.offset < FIELD_LIMIT
            && loc.length < FIELD_LIMIT
            && loc.uncompressed_length < FIELD_LIMIT;
        if fits {
            put_u24(&mut packed[0..], loc.pack);
            put_u24(&mut packed[3..], loc.offset);
            put_u24(&mut packed[6..], loc.length);
            put_u24(&mut packed[9..], loc.uncompressed_length);
        } else {
            // Callers keep the entries (and so the escapes) of a table below u32::MAX.
            put_u24(&mut packed[0..], ESCAPE);
            packed[3..7].copy_from_slice(&(escapes.len() as u32).to_le_bytes());
            escapes.push(loc);
        }
        Entry {
            suffix,
            loc: packed,
        }
    }

    pub(super) fn location(&self, escapes: &[Location]) -> Option<Location> {
        let pack = u24(&self.loc[0..]);
        if pack == ESCAPE {
            let at = u32::from_le_bytes([self.loc[3], self.loc[4], self.loc[5], self.loc[6]]);
            return escapes.get(at as usize).copied();
        }
        Some(Location {
            pack,
            offset: u24(&self.loc[3..]),
            length: u24(&self.loc[6..]),
            uncompressed_length: u24(&self.loc[9..]),
        })
    }

    pub(super) fn id(&self, bucket: usize) -> Id {
        let mut id = [0u8; 32];
        id[..PREFIX].copy_from_slice(&(bucket as u16).to_be_bytes());
        id[PREFIX..].copy_from_slice(&self.suffix);
        Id(id)
    }
}

/// The blobs of one type: a table sorted by id, split in buckets on the ids' first two
/// bytes, plus a small side map of blobs added one pack at a time since the table was
/// built (merged into the table when it grows).
#[derive(Default)]
pub(super) struct Table {
    /// Empty, or `BUCKETS + 1` start positions in `entries`.
    pub(super) starts: Vec<u32>,
    pub(super) entries: Vec<Entry>,
    pub(super) side: HashMap<Id, Location>,
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.entries.len() + self.side.len()
    }

    /// Asks the CPU to bring the table's lines for `ids` into the cache ahead of their
    /// lookups: first every bucket's start, then (those now cached) every bucket's
    /// entries. A lookup in a table larger than the caches is two dependent misses, each
    /// with a TLB miss (on a virtual machine a two-dimensional page walk): a no-change
    /// rerun spent 8% of its CPU in them, one at a time. Prefetched together, the misses
    /// overlap. Only a hint: nothing changes if the lines are evicted before use.
    pub(super) fn prefetch<'a>(&self, ids: impl Iterator<Item = &'a Id> + Clone) {
        if self.starts.is_empty() {
            return;
        }
        for id in ids.clone() {
            prefetch(&self.starts[bucket_of(id)]);
        }
        for id in ids {
            let b = bucket_of(id);
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            if let Some(bucket) = self.entries.get(lo..hi) {
                // Entries are 42 bytes: a bucket's few span a handful of lines.
                for e in bucket.iter().step_by(2).chain(bucket.last()) {
                    prefetch(e);
                }
            }
        }
    }

    pub(super) fn find(&self, id: &Id, escapes: &[Location]) -> Option<Location> {
        if !self.starts.is_empty() {
            let b = bucket_of(id);
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            let slice = self.entries.get(lo..hi)?;
            let key = Suffix::of(id);
            if let Ok(i) = slice.binary_search_by(|e| key.cmp_entry(e).reverse()) {
                return slice[i].location(escapes);
            }
        }
        self.side.get(id).copied()
    }

    /// Every entry of the table and the side map: (id, location).
    pub(super) fn for_each(&self, escapes: &[Location], mut f: impl FnMut(Id, Location)) {
        if !self.starts.is_empty() {
            for b in 0..BUCKETS {
                let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
                for e in &self.entries[lo..hi] {
                    if let Some(loc) = e.location(escapes) {
                        f(e.id(b), loc);
                    }
                }
            }
        }
        for (id, loc) in &self.side {
            f(*id, *loc);
        }
    }

    /// Builds the sorted table from entries in the order they were added, grouped by
    /// bucket (`counts[b]` entries of bucket b, in `entries` at the matching place): sorts
    /// each bucket by id, keeping the first of equal ids.
    pub(super) fn from_bucketed(mut entries: Vec<Entry>, counts: &[u32]) -> Table {
        sort_buckets(&mut entries, counts);
        let mut starts = Vec::with_capacity(BUCKETS + 1);
        let (mut read, mut write) = (0usize, 0usize);
        for &count in counts {
            starts.push(write as u32);
            let mut last: Option<[u8; SUFFIX]> = None;
            for i in read..read + count as usize {
                let e = entries[i];
                if last == Some(e.suffix) {
                    continue;
                }
                last = Some(e.suffix);
                entries[write] = e;
                write += 1;
            }
            read += count as usize;
        }
        starts.push(write as u32);
        entries.truncate(write);
        entries.shrink_to_fit();
        Table {
            starts,
            entries,
            side: HashMap::new(),
        }
    }

    /// Merges the side map into the sorted table (its ids are not in the table).
    pub(super) fn merge_side(&mut self, escapes: &mut Vec<Location>) {
        if self.side.is_empty() {
            return;
        }
        let mut side: Vec<(Id, Location)> = std::mem::take(&mut self.side).into_iter().collect();
        side.sort_unstable_by_key(|e| e.0);
        let mut counts = vec![0u32; BUCKETS];
        let mut merged = Vec::with_capacity(self.entries.len() + side.len());
        let mut s = side.into_iter().peekable();
        for (b, count) in counts.iter_mut().enumerate() {
            let old: &[Entry] = if self.starts.is_empty() {
                &[]
            } else {
                &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize]
            };
            let mut old = old.iter().peekable();
            loop {
                let take_side = match (old.peek(), s.peek()) {
                    (_, Some((id, _))) if bucket_of(id) != b => false,
                    (Some(e), Some((id, _))) => id.0[PREFIX..] < e.suffix[..],
                    (None, Some(_)) => true,
                    (_, None) => false,
                };
                if take_side {
                    if let Some((id, loc)) = s.next() {
                        merged.push(Entry::new(&id, loc, escapes));
                    }
                } else if let Some(e) = old.next() {
                    merged.push(*e);
                } else {
                    break;
                }
                *count += 1;
            }
        }
        *self = Table::from_bucketed(merged, &counts);
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.starts.capacity() * 4
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + map_bytes(&self.side)
    }
}

/// Sorts each bucket of `entries` (`counts[b]` entries of bucket b, in order) by id,
/// stably (of equal ids the one added first stays first), on all cores for large tables.
fn sort_buckets(entries: &mut [Entry], counts: &[u32]) {
    let threads = if entries.len() < 1 << 16 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    let per = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let mut rest: &mut [Entry] = entries;
        let mut b = 0;
        while b < counts.len() {
            let first = b;
            let mut n = 0usize;
            while b < counts.len() && n < per {
                n += counts[b] as usize;
                b += 1;
            }
            let k = n.min(rest.len());
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(k);
            rest = tail;
            let counts = &counts[first..b];
            s.spawn(move || {
                let mut at = 0usize;
                for &c in counts {
                    let end = (at + c as usize).min(piece.len());
                    piece[at..end].sort_by_key(|e| e.suffix);
                    at = end;
                }
            });
        }
    });
}

/// Approximate heap size of a hash map: its buckets and one control byte each.
pub(super) fn map_bytes<K, V>(m: &HashMap<K, V>) -> usize {
    m.capacity() * (std::mem::size_of::<(K, V)>() + 1)
}

impl Entry {
    pub(super) const EMPTY: Entry = Entry {
        suffix: [0; SUFFIX],
        loc: [0; 12],
    };
}

/// Start position of each bucket (and the total at the end) from the counts.
pub(super) fn starts_of(counts: &[u32]) -> Vec<u32> {
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut sum = 0u32;
    for c in counts {
        starts.push(sum);
        sum += c;
    }
    starts.push(sum);
    starts
}
