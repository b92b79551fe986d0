//! The compact sorted table of one blob type: ids split in buckets on their first bytes
//! (two in a large table, fewer in a small one), locations bit-packed in field widths
//! chosen per table, and the escape list for the few locations that do not fit them.

use super::location::{get_bits, put_bits, Location, Widths};
use crate::id::Id;
use std::collections::HashMap;

/// Bytes of an id implied by its bucket while a table is built (the placement is split
/// on the first two bytes), and the most a built table's buckets imply.
pub(super) const PREFIX: usize = 2;
pub(super) const SUFFIX: usize = 32 - PREFIX;
pub(super) const BUCKETS: usize = 1 << (8 * PREFIX);

/// Bytes of id a table of `n` entries implies by its buckets: bucket starts cost 4 bytes
/// each (256 KiB for two bytes), every implied byte saves one per entry. Two bytes from
/// 8,192 entries, one from 64: a bucket stays a few lines long on average (at most 32
/// entries of 31 bytes), so a lookup stays one or two cache misses; a tree table of a few
/// hundred entries no longer carries 256 KiB of starts (1.2 B per blob of a 206k-blob
/// repository).
pub(super) fn prefix_for(n: usize) -> usize {
    match n {
        0..64 => 0,
        64..8192 => 1,
        _ => 2,
    }
}
/// No listed size for this pack.
pub(super) const NO_SIZE: u64 = u64::MAX;
/// Bytes past the packed locations, so that the 16-byte load of the last one stays inside.
pub(super) const PAD: usize = 16;
/// Buckets per group while a table is built: entries are placed and sorted in groups that
/// are freed one at a time as the table is packed, so that building peaks near the larger
/// of the two forms instead of their sum (10M blobs: 1.48 GB -> see `Bucketed`).
const GROUP_BUCKETS: usize = 256;
const GROUPS: usize = BUCKETS / GROUP_BUCKETS;
/// Bytes of one escape record (position, then the four fields), in memory and on disk.
pub(super) const ESCAPE_LEN: usize = 4 + 16;

/// An entry while a table is built: the id without the bytes its bucket implies, and the
/// location unpacked.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub(super) suffix: [u8; SUFFIX],
    pub(super) loc: Location,
}

impl Entry {
    pub(super) const EMPTY: Entry = Entry {
        suffix: [0; SUFFIX],
        loc: Location {
            pack: 0,
            offset: 0,
            length: 0,
            uncompressed_length: 0,
        },
    };

    pub(super) fn new(id: &Id, loc: Location) -> Entry {
        let mut suffix = [0u8; SUFFIX];
        suffix.copy_from_slice(&id.0[PREFIX..]);
        Entry { suffix, loc }
    }
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
    fn of(id: &'a Id, prefix: usize) -> Suffix<'a> {
        let bytes = &id.0[prefix..];
        Suffix {
            head: head_of(bytes),
            bytes,
        }
    }

    /// This suffix against a table's (of the same length).
    fn cmp(&self, other: &[u8]) -> std::cmp::Ordering {
        self.head
            .cmp(&head_of(other))
            .then_with(|| self.bytes.cmp(other))
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

/// The id in bucket `bucket` of a table splitting on `prefix` bytes, stored as `stored`.
fn id_of(prefix: usize, bucket: usize, stored: &[u8]) -> Id {
    let mut id = [0u8; 32];
    id[..prefix].copy_from_slice(&(bucket as u16).to_be_bytes()[2 - prefix..]);
    id[prefix..].copy_from_slice(stored);
    Id(id)
}

/// The bucket of `id` in a table splitting on `prefix` bytes (0, 1 or 2).
pub(super) fn bucket_in(prefix: usize, id: &Id) -> usize {
    match prefix {
        0 => 0,
        1 => usize::from(id.0[0]),
        _ => bucket_of(id),
    }
}

/// The blobs of one type: ids sorted and split in buckets on their first `prefix` bytes
/// (which are then not stored), their locations bit-packed in the same order, plus a small
/// side map of blobs added one pack at a time since the table was built (merged into the
/// table when it grows).
///
/// Ids and locations are apart: a lookup of presence (a no-change backup asks that of every
/// unchanged file's content) touches only ids, and the locations take the bits their table
/// needs instead of 24 per field. Ids are always kept whole (never truncated): listing the
/// index by pack (prune, check, repair) needs them.
pub(super) struct Table {
    /// Bytes of each id implied by its bucket (see [`prefix_for`]).
    pub(super) prefix: usize,
    /// Empty, or `256^prefix + 1` start positions in `ids`.
    pub(super) starts: Vec<u32>,
    /// Ids without their first `prefix` bytes, `32 - prefix` bytes each, sorted, unique.
    pub(super) ids: Vec<u8>,
    pub(super) widths: Widths,
    /// `ids.len()` packed locations of `widths.stride()` bits each (little-endian bit
    /// order), then `PAD` zero bytes.
    pub(super) locs: Vec<u8>,
    /// Locations that do not fit the widths, by position in `ids` (sorted).
    pub(super) escapes: Vec<(u32, Location)>,
    pub(super) side: HashMap<Id, Location>,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            prefix: PREFIX,
            starts: Vec::new(),
            ids: Vec::new(),
            widths: Widths::default(),
            locs: vec![0; PAD],
            escapes: Vec::new(),
            side: HashMap::new(),
        }
    }
}

/// Builds a table from entries in id order.
struct Builder {
    table: Table,
    /// Buckets whose start is recorded (the one of the last entry included).
    opened: usize,
    last: Option<Id>,
}

impl Builder {
    /// For at most `capacity` entries packed in `widths`.
    fn new(widths: Widths, capacity: usize) -> Builder {
        let prefix = prefix_for(capacity);
        let buckets = 1usize << (8 * prefix);
        let mut starts = Vec::with_capacity(buckets + 1);
        starts.push(0);
        Builder {
            table: Table {
                prefix,
                starts,
                ids: Vec::with_capacity(capacity * (32 - prefix)),
                widths,
                locs: vec![0; widths.bytes_for(capacity) + PAD],
                escapes: Vec::new(),
                side: HashMap::new(),
            },
            opened: 1,
            last: None,
        }
    }

    /// Adds the next entry (ids rising), unless its id equals the one before (of equal
    /// ids the first added stays).
    fn push(&mut self, id: &Id, loc: Location) {
        if self.last.as_ref() == Some(id) {
            return;
        }
        self.last = Some(*id);
        let t = &mut self.table;
        let i = t.ids.len() / (32 - t.prefix);
        let bucket = bucket_in(t.prefix, id);
        while self.opened <= bucket {
            t.starts.push(i as u32);
            self.opened += 1;
        }
        t.ids.extend_from_slice(&id.0[t.prefix..]);
        let packed = match t.widths.pack(&loc) {
            Some(p) => p,
            None => {
                // Callers keep a table's entries below u32::MAX.
                t.escapes.push((i as u32, loc));
                t.widths.mark()
            }
        };
        put_bits(&mut t.locs, i, t.widths.stride(), packed);
    }

    fn finish(mut self) -> Table {
        let t = &mut self.table;
        let n = t.len_sorted();
        let buckets = 1usize << (8 * t.prefix);
        while t.starts.len() <= buckets {
            t.starts.push(n as u32);
        }
        t.ids.shrink_to_fit();
        t.locs.truncate(t.widths.bytes_for(n) + PAD);
        t.locs.shrink_to_fit();
        t.escapes.shrink_to_fit();
        self.table
    }
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.len_sorted() + self.side.len()
    }

    /// Entries in the sorted table (not counting the side map).
    pub(super) fn len_sorted(&self) -> usize {
        self.ids.len() / (32 - self.prefix)
    }

    fn stored(&self, pos: usize) -> &[u8] {
        let len = 32 - self.prefix;
        &self.ids[pos * len..(pos + 1) * len]
    }

    /// Positions of the bucket of `id`.
    fn bucket_range(&self, id: &Id) -> std::ops::Range<usize> {
        let b = bucket_in(self.prefix, id);
        match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(lo), Some(hi)) => *lo as usize..*hi as usize,
            _ => 0..0,
        }
    }

    /// Asks the CPU to bring the table's lines for `ids` into the cache ahead of their
    /// lookups: first every bucket's start, then (those now cached) every bucket's ids.
    /// A lookup in a table larger than the caches is two dependent misses, each with a TLB
    /// miss (on a virtual machine a two-dimensional page walk): a no-change rerun spent 8%
    /// of its CPU in them, one at a time. Prefetched together, the misses overlap. Only a
    /// hint: nothing changes if the lines are evicted before use.
    pub(super) fn prefetch<'a>(&self, ids: impl Iterator<Item = &'a Id> + Clone) {
        if self.starts.is_empty() {
            return;
        }
        for id in ids.clone() {
            prefetch(&self.starts[bucket_in(self.prefix, id)]);
        }
        let len = 32 - self.prefix;
        for id in ids {
            let range = self.bucket_range(id);
            if let Some(bucket) = self.ids.get(range.start * len..range.end * len) {
                // Ids are 30 to 32 bytes: a line every other one at most.
                for at in (0..bucket.len())
                    .step_by(2 * len)
                    .chain(bucket.len().checked_sub(1))
                {
                    prefetch(&bucket[at]);
                }
            }
        }
    }

    /// The position of `id` in the sorted table.
    fn position(&self, id: &Id) -> Option<usize> {
        let std::ops::Range { mut start, mut end } = self.bucket_range(id);
        if end > self.len_sorted() {
            return None;
        }
        let key = Suffix::of(id, self.prefix);
        while start < end {
            let mid = start + (end - start) / 2;
            match key.cmp(self.stored(mid)) {
                std::cmp::Ordering::Less => end = mid,
                std::cmp::Ordering::Greater => start = mid + 1,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The location of the entry at `pos` (None only for a position out of range, or an
    /// escape mark without its record, which loading refuses).
    fn location(&self, pos: usize) -> Option<Location> {
        let packed = get_bits(&self.locs, pos, self.widths.stride())?;
        match self.widths.unpack(packed) {
            Some(loc) => Some(loc),
            None => {
                let i = self
                    .escapes
                    .binary_search_by_key(&(pos as u32), |e| e.0)
                    .ok()?;
                Some(self.escapes[i].1)
            }
        }
    }

    pub(super) fn contains(&self, id: &Id) -> bool {
        self.position(id).is_some() || self.side.contains_key(id)
    }

    pub(super) fn find(&self, id: &Id) -> Option<Location> {
        match self.position(id) {
            Some(pos) => self.location(pos),
            None => self.side.get(id).copied(),
        }
    }

    /// Every entry of the table and the side map: (id, location).
    pub(super) fn for_each(&self, mut f: impl FnMut(Id, Location)) {
        for (id, loc) in self.sorted() {
            if let Some(loc) = loc {
                f(id, loc);
            }
        }
        for (id, loc) in &self.side {
            f(*id, *loc);
        }
    }

    /// The sorted table's entries in id order (a location is None only for an escape
    /// mark without its record, which loading refuses).
    fn sorted(&self) -> impl Iterator<Item = (Id, Option<Location>)> + '_ {
        let buckets = self.starts.len().saturating_sub(1);
        (0..buckets).flat_map(move |b| {
            (self.starts[b] as usize..self.starts[b + 1] as usize)
                .map(move |pos| (id_of(self.prefix, b, self.stored(pos)), self.location(pos)))
        })
    }

    /// Checks what lookups rely on and a snapshot could get wrong: every escape record
    /// is at a marked position and every marked position has one.
    pub(super) fn escapes_consistent(&self) -> bool {
        if self.locs.len() != self.widths.bytes_for(self.len_sorted()) + PAD
            || !self.widths.valid()
            || self.escapes.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return false;
        }
        let stride = self.widths.stride();
        let mut next = self.escapes.iter().map(|e| e.0 as usize).peekable();
        for pos in 0..self.len_sorted() {
            let Some(packed) = get_bits(&self.locs, pos, stride) else {
                return false;
            };
            let marked = self.widths.unpack(packed).is_none();
            let recorded = next.peek() == Some(&pos);
            if marked != recorded {
                return false;
            }
            if recorded {
                next.next();
            }
        }
        next.peek().is_none()
    }

    /// Builds the sorted table from entries placed by bucket: sorts each bucket by id,
    /// keeping the first added of equal ids.
    pub(super) fn from_bucketed(mut placed: Bucketed) -> Table {
        sort_buckets(&mut placed);
        let all = placed.groups.iter().flatten();
        let widths = Widths::choose(all.map(|e| e.loc));
        let mut builder = Builder::new(widths, placed.groups.iter().map(Vec::len).sum());
        let counts = placed.counts;
        for (g, group) in placed.groups.into_iter().enumerate() {
            let mut read = 0usize;
            let first = g * GROUP_BUCKETS;
            for (b, &count) in counts[first..first + GROUP_BUCKETS].iter().enumerate() {
                for e in &group[read..read + count as usize] {
                    builder.push(&id_of(PREFIX, first + b, &e.suffix), e.loc);
                }
                read += count as usize;
            }
            // `group` is freed here, while the table grows.
        }
        builder.finish()
    }

    /// Merges the side map into the sorted table (its ids are not in the table).
    pub(super) fn merge_side(&mut self) {
        if self.side.is_empty() {
            return;
        }
        let mut side: Vec<(Id, Location)> = std::mem::take(&mut self.side).into_iter().collect();
        side.sort_unstable_by_key(|e| e.0);
        let old_locs = (0..self.len_sorted()).filter_map(|pos| self.location(pos));
        let widths = Widths::choose(old_locs.chain(side.iter().map(|e| e.1)));
        let mut builder = Builder::new(widths, self.len_sorted() + side.len());
        let mut old = self.sorted().peekable();
        let mut side = side.into_iter().peekable();
        loop {
            let take_side = match (old.peek(), side.peek()) {
                (Some((o, _)), Some((s, _))) => s < o,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            let next = if take_side {
                side.next().map(|(id, loc)| (id, Some(loc)))
            } else {
                old.next()
            };
            match next {
                Some((id, Some(loc))) => builder.push(&id, loc),
                Some((_, None)) => {}
                None => break,
            }
        }
        drop(old);
        *self = builder.finish();
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.starts.capacity() * 4
            + self.ids.capacity()
            + self.locs.capacity()
            + self.escapes.capacity() * std::mem::size_of::<(u32, Location)>()
            + map_bytes(&self.side)
    }

    /// A table read back from its parts (see the snapshot; `locs` followed by `PAD` zero
    /// bytes), or None if they are not consistent.
    pub(super) fn from_parts(
        prefix: usize,
        starts: Vec<u32>,
        ids: Vec<u8>,
        widths: Widths,
        locs: Vec<u8>,
        escapes: Vec<(u32, Location)>,
    ) -> Option<Table> {
        let n = ids.len() / (32 - prefix.min(PREFIX));
        let consistent = prefix <= PREFIX
            && ids.len().is_multiple_of(32 - prefix)
            && (starts.is_empty() || starts.len() == (1 << (8 * prefix)) + 1)
            && starts.first().is_none_or(|f| *f == 0)
            && starts.windows(2).all(|w| w[0] <= w[1])
            && starts.last().map_or(n == 0, |l| *l as usize == n)
            && locs.len() == widths.bytes_for(n) + PAD
            && locs[locs.len() - PAD..] == [0; PAD];
        if !consistent {
            return None;
        }
        let table = Table {
            prefix,
            starts,
            ids,
            widths,
            locs,
            escapes,
            side: HashMap::new(),
        };
        table.escapes_consistent().then_some(table)
    }

    /// The packed locations without the padding (what a snapshot stores).
    pub(super) fn packed_locations(&self) -> &[u8] {
        &self.locs[..self.locs.len() - PAD]
    }
}

/// Entries placed in their buckets in the order added, in groups of buckets.
pub(super) struct Bucketed {
    /// Entries per bucket.
    counts: Vec<u32>,
    /// Where each bucket starts in its group.
    first: Vec<u32>,
    /// Where the next entry of each bucket goes in its group.
    next: Vec<u32>,
    groups: Vec<Vec<Entry>>,
}

impl Bucketed {
    /// Room for `counts[b]` entries in bucket b (`BUCKETS` counts).
    pub(super) fn new(counts: &[u32]) -> Bucketed {
        let mut first = Vec::with_capacity(BUCKETS);
        let mut groups = Vec::with_capacity(GROUPS);
        for group in counts.chunks(GROUP_BUCKETS) {
            let mut at = 0u32;
            for c in group {
                first.push(at);
                at += c;
            }
            groups.push(vec![Entry::EMPTY; at as usize]);
        }
        Bucketed {
            counts: counts.to_vec(),
            next: first.clone(),
            first,
            groups,
        }
    }

    /// Places the next entry of its bucket (beyond the bucket's count: ignored).
    pub(super) fn place(&mut self, id: &Id, loc: Location) {
        let b = bucket_of(id);
        let g = b / GROUP_BUCKETS;
        let at = self.next[b] as usize;
        if at < (self.first[b] + self.counts[b]) as usize {
            self.groups[g][at] = Entry::new(id, loc);
            self.next[b] += 1;
        }
    }
}

/// Sorts each bucket by id, stably (of equal ids the one added first stays first), on all
/// cores for large tables.
fn sort_buckets(placed: &mut Bucketed) {
    let total: usize = placed.groups.iter().map(Vec::len).sum();
    let threads = if total < 1 << 16 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    let per = GROUPS.div_ceil(threads);
    let counts = &placed.counts;
    std::thread::scope(|s| {
        for (i, groups) in placed.groups.chunks_mut(per).enumerate() {
            s.spawn(move || {
                for (j, group) in groups.iter_mut().enumerate() {
                    let g = i * per + j;
                    let mut at = 0usize;
                    for &c in &counts[g * GROUP_BUCKETS..(g + 1) * GROUP_BUCKETS] {
                        let end = (at + c as usize).min(group.len());
                        group[at..end].sort_by_key(|e| e.suffix);
                        at = end;
                    }
                }
            });
        }
    });
}

/// Approximate heap size of a hash map: its buckets and one control byte each.
pub(super) fn map_bytes<K, V>(m: &HashMap<K, V>) -> usize {
    m.capacity() * (std::mem::size_of::<(K, V)>() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_table_finds_every_location_including_escaped_ones() {
        let ids: Vec<Id> = (0..5000u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        let locs: Vec<Location> = (0..5000u32)
            .map(|i| match i % 1000 {
                0 => Location::of(i, u32::MAX, 1, 2),
                1 => Location::of(u32::MAX, 3, 4, 5),
                _ => Location::of(i % 77, i * 13, i % 4000, 0),
            })
            .collect();
        let mut counts = vec![0u32; BUCKETS];
        for id in &ids {
            counts[bucket_of(id)] += 1;
        }
        let mut placed = Bucketed::new(&counts);
        for (id, l) in ids.iter().zip(&locs) {
            placed.place(id, *l);
        }
        let table = Table::from_bucketed(placed);
        assert_eq!(table.escapes.len(), 10);
        assert!(table.escapes_consistent());
        for (id, l) in ids.iter().zip(&locs) {
            assert_eq!(table.find(id), Some(*l));
            assert!(table.contains(id));
        }
        assert!(!table.contains(&Id::hash(b"absent")));
        let mut seen = 0;
        table.for_each(|id, l| {
            seen += 1;
            assert_eq!(locs[ids.iter().position(|x| *x == id).unwrap()], l);
        });
        assert_eq!(seen, 5000);
        // Read back from its parts: the same; a wrong part is refused.
        let parts = |t: &Table| {
            (
                t.prefix,
                t.starts.clone(),
                t.ids.clone(),
                t.widths,
                t.packed_locations().to_vec(),
                t.escapes.clone(),
            )
        };
        let (p, s, i, w, l, e) = parts(&table);
        assert_eq!(p, 1, "5,000 entries: one byte implied");
        let pad = |mut l: Vec<u8>| {
            l.extend([0; PAD]);
            l
        };
        let back = Table::from_parts(p, s, i, w, pad(l), e).unwrap();
        for (id, l) in ids.iter().zip(&locs) {
            assert_eq!(back.find(id), Some(*l));
        }
        let (p, s, i, w, l, mut e) = parts(&table);
        e.pop();
        assert!(Table::from_parts(p, s, i, w, pad(l), e).is_none());
        let (p, s, i, w, mut l, e) = parts(&table);
        l.pop();
        assert!(Table::from_parts(p, s, i, w, pad(l), e).is_none());
        let (p, s, i, _, l, e) = parts(&table);
        assert!(Table::from_parts(p, s, i, Widths([31, 0, 0, 0]), pad(l), e).is_none());
        let (_, s, i, w, l, e) = parts(&table);
        assert!(Table::from_parts(2, s, i, w, pad(l), e).is_none());
        let (p, mut s, i, w, l, e) = parts(&table);
        *s.last_mut().unwrap() += 1;
        assert!(Table::from_parts(p, s, i, w, pad(l), e).is_none());
    }

    #[test]
    fn merging_grows_the_implied_prefix_and_keeps_every_entry() {
        let ids: Vec<Id> = (0..20_000u32).map(|i| Id::hash(&i.to_le_bytes())).collect();
        let loc_of = |i: usize| Location::of(i as u32 % 50, i as u32 * 7, 100, 200);
        let mut table = Table::default();
        let mut added = 0;
        for (step, prefix) in [(10, 0), (1000, 1), (20_000, 2)] {
            for (i, id) in ids.iter().enumerate().take(step).skip(added) {
                table.side.insert(*id, loc_of(i));
            }
            added = step;
            table.merge_side();
            assert_eq!(table.prefix, prefix);
            assert!(table.side.is_empty());
            assert_eq!(table.len(), step);
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(table.find(id), (i < step).then(|| loc_of(i)), "{i}");
            }
        }
    }
}
