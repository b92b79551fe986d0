//! The blob index: which pack holds each blob, where, and how long it is.
//!
//! Owns the JSON format of index files and the compact in-memory lookup table built from
//! all of them. Loading tolerates duplicates (the same blob in several packs): the first
//! entry wins, as in restic. An entry that cannot be right (longer than any blob, or past
//! the end of its pack when the pack's size is known) is refused when it is added and kept
//! aside as damage, so no reader ever sizes a buffer by it.

use crate::id::Id;
use crate::pack::{BlobType, PackedBlob};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An index file as stored (after decryption and decompression).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct IndexFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    #[serde(default)]
    pub packs: Vec<IndexPack>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexBlob {
    pub id: Id,
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uncompressed_length: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl IndexBlob {
    /// The same entry as the pack reader's type.
    pub fn packed(&self) -> PackedBlob {
        PackedBlob {
            blob_type: self.blob_type,
            id: self.id,
            offset: self.offset,
            length: self.length,
            uncompressed_length: self.uncompressed_length,
        }
    }
}

impl IndexPack {
    pub fn from_blobs(id: Id, blobs: &[PackedBlob]) -> IndexPack {
        IndexPack {
            id,
            blobs: blobs
                .iter()
                .map(|b| IndexBlob {
                    id: b.id,
                    blob_type: b.blob_type,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        }
    }
}

/// Where a blob is, unpacked (the compact table stores it in 12 bytes, see [`Entry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed_length: u32,
}

/// A blob's location resolved to its pack id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub blob: PackedBlob,
}

/// Bytes of an id implied by its bucket (the table is split on the first two bytes).
const PREFIX: usize = 2;
const SUFFIX: usize = 32 - PREFIX;
const BUCKETS: usize = 1 << (8 * PREFIX);
/// Fields below this fit the 24-bit slots of an entry.
const FIELD_LIMIT: u32 = 1 << 24;
/// A pack number of all ones marks an entry whose location is in the escape table.
const ESCAPE: u32 = FIELD_LIMIT - 1;
/// No listed size for this pack.
const NO_SIZE: u64 = u64::MAX;

/// One indexed blob in 42 bytes: the id without the two bytes its bucket implies, then
/// pack number, offset, length and uncompressed length, 24 bits each (little-endian).
/// The rare entry with a field that does not fit (a pack number past 16M, a pack larger
/// than 16 MiB, a huge tree blob) keeps its location in the escape table: pack number
/// `ESCAPE`, then the table position in the next 4 bytes. The full id is always kept.
#[derive(Clone, Copy)]
struct Entry {
    suffix: [u8; SUFFIX],
    loc: [u8; 12],
}

fn bucket_of(id: &Id) -> usize {
    usize::from(u16::from_be_bytes([id.0[0], id.0[1]]))
}

fn u24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

fn put_u24(out: &mut [u8], v: u32) {
    out[..3].copy_from_slice(&v.to_le_bytes()[..3]);
}

impl Entry {
    fn new(id: &Id, loc: Location, escapes: &mut Vec<Location>) -> Entry {
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

    fn location(&self, escapes: &[Location]) -> Option<Location> {
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

    fn id(&self, bucket: usize) -> Id {
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
struct Table {
    /// Empty, or `BUCKETS + 1` start positions in `entries`.
    starts: Vec<u32>,
    entries: Vec<Entry>,
    side: HashMap<Id, Location>,
}

impl Table {
    fn len(&self) -> usize {
        self.entries.len() + self.side.len()
    }

    fn find(&self, id: &Id, escapes: &[Location]) -> Option<Location> {
        if !self.starts.is_empty() {
            let b = bucket_of(id);
            let (lo, hi) = (self.starts[b] as usize, self.starts[b + 1] as usize);
            let slice = self.entries.get(lo..hi)?;
            if let Ok(i) = slice.binary_search_by(|e| e.suffix[..].cmp(&id.0[PREFIX..])) {
                return slice[i].location(escapes);
            }
        }
        self.side.get(id).copied()
    }

    /// Every entry of the table and the side map: (id, location).
    fn for_each(&self, escapes: &[Location], mut f: impl FnMut(Id, Location)) {
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
    fn from_bucketed(mut entries: Vec<Entry>, counts: &[u32]) -> Table {
        let mut starts = Vec::with_capacity(BUCKETS + 1);
        let (mut read, mut write) = (0usize, 0usize);
        for &count in counts {
            starts.push(write as u32);
            let bucket = &mut entries[read..read + count as usize];
            // Stable: of equal ids the one added first comes first and stays.
            bucket.sort_by_key(|e| e.suffix);
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
    fn merge_side(&mut self, escapes: &mut Vec<Location>) {
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

    fn heap_bytes(&self) -> usize {
        self.starts.capacity() * 4
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + map_bytes(&self.side)
    }
}

/// Approximate heap size of a hash map: its buckets and one control byte each.
fn map_bytes<K, V>(m: &HashMap<K, V>) -> usize {
    m.capacity() * (std::mem::size_of::<(K, V)>() + 1)
}

/// The in-memory index of all blobs of a repository: about 42 bytes per blob plus about
/// 44 per pack (`heap_bytes`), against 60 to 110 for a hash map of ids to locations.
#[derive(Default)]
pub struct Index {
    /// Pack ids by pack number.
    packs: Vec<Id>,
    /// Listed pack sizes by pack number (`NO_SIZE`: not listed).
    sizes: Vec<u64>,
    /// Pack numbers sorted by pack id, covering the packs numbered before the last build.
    pack_order: Vec<u32>,
    /// Packs numbered since (`add_pack`).
    new_packs: HashMap<Id, u32>,
    /// Listed sizes of packs that hold no indexed blob (yet).
    other_sizes: HashMap<Id, u64>,
    data: Table,
    trees: Table,
    /// Locations that do not fit an entry's 24-bit fields.
    escapes: Vec<Location>,
    /// Refused entries: why each blob's (first) entry cannot be right.
    damaged: HashMap<(BlobType, Id), String>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    fn table(&self, t: BlobType) -> &Table {
        match t {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.trees,
        }
    }

    /// An index that checks entries against these pack sizes (as listed by the backend).
    pub fn with_pack_sizes(pack_sizes: HashMap<Id, u64>) -> Index {
        Index {
            other_sizes: pack_sizes,
            ..Index::default()
        }
    }

    /// The index of these files (in this order: of duplicate entries the first wins),
    /// checking entries against the listed pack sizes. Sorts once instead of inserting
    /// each blob: the way to load a whole repository's index.
    pub fn from_files(pack_sizes: HashMap<Id, u64>, files: &[IndexFile]) -> Index {
        let mut index = Index::with_pack_sizes(pack_sizes);
        // Pass 1: number the packs, refuse damaged entries, count blobs per bucket.
        let mut numbers: HashMap<Id, u32> = HashMap::new();
        let mut counts = [vec![0u32; BUCKETS], vec![0u32; BUCKETS]];
        let mut total = 0usize;
        for f in files {
            for p in &f.packs {
                let n = index.number_pack(&mut numbers, &p.id);
                let size = index.size_of(n);
                for b in &p.blobs {
                    if let Some(problem) = entry_problem_sized(&p.id, size, b) {
                        index.damaged.entry((b.blob_type, b.id)).or_insert(problem);
                        continue;
                    }
                    let c = &mut counts[type_slot(b.blob_type)][bucket_of(&b.id)];
                    *c = c.saturating_add(1);
                    total += 1;
                }
            }
        }
        if total >= u32::MAX as usize {
            // Beyond what a u32 position can address (≈170 GiB of index in memory): keep
            // every entry correct through the side maps rather than refuse the repository.
            let mut slow = Index::with_pack_sizes(std::mem::take(&mut index.other_sizes));
            for f in files {
                slow.add_file(f);
            }
            return slow;
        }
        // Pass 2: place each entry in its bucket, in the order added.
        let mut at: [Vec<u32>; 2] = [starts_of(&counts[0]), starts_of(&counts[1])];
        let mut entries: [Vec<Entry>; 2] = [
            vec![Entry::EMPTY; at[0][BUCKETS] as usize],
            vec![Entry::EMPTY; at[1][BUCKETS] as usize],
        ];
        for f in files {
            for p in &f.packs {
                let n = numbers.get(&p.id).copied().unwrap_or(ESCAPE);
                let size = index.size_of(n);
                for b in &p.blobs {
                    if entry_problem_sized(&p.id, size, b).is_some() {
                        continue;
                    }
                    let t = type_slot(b.blob_type);
                    let slot = &mut at[t][bucket_of(&b.id)];
                    let loc = Location {
                        pack: n,
                        offset: b.offset,
                        length: b.length,
                        uncompressed_length: b.uncompressed_length,
                    };
                    entries[t][*slot as usize] = Entry::new(&b.id, loc, &mut index.escapes);
                    *slot += 1;
                }
            }
        }
        let [data, trees] = entries;
        index.data = Table::from_bucketed(data, &counts[0]);
        index.trees = Table::from_bucketed(trees, &counts[1]);
        index.set_pack_order();
        index
    }

    /// The pack number of `id`, numbering it if new (build phase).
    fn number_pack(&mut self, numbers: &mut HashMap<Id, u32>, id: &Id) -> u32 {
        if let Some(n) = numbers.get(id) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(*id);
        self.sizes
            .push(self.other_sizes.remove(id).unwrap_or(NO_SIZE));
        numbers.insert(*id, n);
        n
    }

    fn set_pack_order(&mut self) {
        let mut order: Vec<u32> = (0..self.packs.len() as u32).collect();
        order.sort_unstable_by_key(|n| self.packs[*n as usize]);
        self.pack_order = order;
        self.new_packs = HashMap::new();
        self.other_sizes.shrink_to_fit();
        self.packs.shrink_to_fit();
        self.sizes.shrink_to_fit();
    }

    fn pack_number(&self, id: &Id) -> Option<u32> {
        if let Some(n) = self.new_packs.get(id) {
            return Some(*n);
        }
        let i = self
            .pack_order
            .binary_search_by(|n| self.packs[*n as usize].cmp(id))
            .ok()?;
        Some(self.pack_order[i])
    }

    fn size_of(&self, n: u32) -> Option<u64> {
        self.sizes
            .get(n as usize)
            .copied()
            .filter(|s| *s != NO_SIZE)
    }

    /// A pack's size as listed, if known.
    pub fn pack_size(&self, pack: &Id) -> Option<u64> {
        match self.pack_number(pack) {
            Some(n) => self.size_of(n),
            None => self.other_sizes.get(pack).copied(),
        }
    }

    /// Why the index entry of a blob was refused, if it was (and no good entry replaced it).
    pub fn damage(&self, t: BlobType, id: &Id) -> Option<&str> {
        if self.has(t, id) {
            return None;
        }
        self.damaged.get(&(t, *id)).map(String::as_str)
    }

    /// Every refused entry's problem, sorted.
    pub fn damaged_entries(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.damaged.values().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Whether an entry of `pack` can be right; the problem if not.
    pub fn entry_problem(&self, pack: &Id, b: &IndexBlob) -> Option<String> {
        entry_problem_sized(pack, self.pack_size(pack), b)
    }

    /// Adds every blob of a pack; a blob already known keeps its first location. Entries
    /// that cannot be right are refused (see [`Index::damage`]). For many packs at once,
    /// [`Index::from_files`] is faster.
    pub fn add_pack(&mut self, pack: &IndexPack) {
        let n = match self.pack_number(&pack.id) {
            Some(n) => n,
            None => {
                let n = self.packs.len() as u32;
                self.packs.push(pack.id);
                self.sizes
                    .push(self.other_sizes.remove(&pack.id).unwrap_or(NO_SIZE));
                self.new_packs.insert(pack.id, n);
                n
            }
        };
        let size = self.size_of(n);
        for b in &pack.blobs {
            if let Some(problem) = entry_problem_sized(&pack.id, size, b) {
                self.damaged.entry((b.blob_type, b.id)).or_insert(problem);
                continue;
            }
            if self.has(b.blob_type, &b.id) {
                continue;
            }
            let table = match b.blob_type {
                BlobType::Data => &mut self.data,
                BlobType::Tree => &mut self.trees,
            };
            table.side.insert(
                b.id,
                Location {
                    pack: n,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                },
            );
        }
        // Keep the side maps small: merge them into the sorted tables as they grow
        // (geometrically, so adding n blobs one pack at a time costs O(n log n)).
        for t in [BlobType::Data, BlobType::Tree] {
            let table = match t {
                BlobType::Data => &mut self.data,
                BlobType::Tree => &mut self.trees,
            };
            if table.side.len() > (table.entries.len() / 4).max(1 << 14)
                && table.entries.len() + table.side.len() < u32::MAX as usize
            {
                table.merge_side(&mut self.escapes);
            }
        }
        if self.new_packs.len() > (self.pack_order.len() / 4).max(1 << 12) {
            self.set_pack_order();
        }
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    pub fn has(&self, t: BlobType, id: &Id) -> bool {
        self.table(t).find(id, &self.escapes).is_some()
    }

    pub fn get(&self, t: BlobType, id: &Id) -> Option<BlobLocation> {
        let loc = self.table(t).find(id, &self.escapes)?;
        Some(BlobLocation {
            pack: *self.packs.get(loc.pack as usize)?,
            blob: PackedBlob {
                blob_type: t,
                id: *id,
                offset: loc.offset,
                length: loc.length,
                uncompressed_length: loc.uncompressed_length,
            },
        })
    }

    pub fn blob_count(&self, t: BlobType) -> usize {
        self.table(t).len()
    }

    /// Bytes of memory the index holds (tables, pack list, side maps), for `stats`.
    pub fn heap_bytes(&self) -> usize {
        self.packs.capacity() * 32
            + self.sizes.capacity() * 8
            + self.pack_order.capacity() * 4
            + map_bytes(&self.new_packs)
            + map_bytes(&self.other_sizes)
            + self.data.heap_bytes()
            + self.trees.heap_bytes()
            + self.escapes.capacity() * std::mem::size_of::<Location>()
            + map_bytes(&self.damaged)
            + self.damaged.values().map(String::capacity).sum::<usize>()
    }

    /// Ids of all packs that hold at least one indexed blob.
    pub fn pack_ids(&self) -> &[Id] {
        &self.packs
    }

    /// Ids of the packs holding tree blobs (as indexed: first location of each blob).
    pub fn tree_packs(&self) -> Vec<Id> {
        let mut numbers = std::collections::HashSet::new();
        self.trees.for_each(&self.escapes, |_, loc| {
            numbers.insert(loc.pack);
        });
        numbers
            .into_iter()
            .filter_map(|n| self.packs.get(n as usize).copied())
            .collect()
    }

    /// Every indexed blob, grouped by pack: (pack id, blobs sorted by offset).
    pub fn by_pack(&self) -> Vec<(Id, Vec<PackedBlob>)> {
        let mut out: Vec<(Id, Vec<PackedBlob>)> =
            self.packs.iter().map(|p| (*p, Vec::new())).collect();
        for (t, table) in [(BlobType::Data, &self.data), (BlobType::Tree, &self.trees)] {
            table.for_each(&self.escapes, |id, loc| {
                if let Some((_, blobs)) = out.get_mut(loc.pack as usize) {
                    blobs.push(PackedBlob {
                        blob_type: t,
                        id,
                        offset: loc.offset,
                        length: loc.length,
                        uncompressed_length: loc.uncompressed_length,
                    });
                }
            });
        }
        for (_, blobs) in &mut out {
            blobs.sort_by_key(|b| b.offset);
        }
        out
    }
}

impl Entry {
    const EMPTY: Entry = Entry {
        suffix: [0; SUFFIX],
        loc: [0; 12],
    };
}

fn type_slot(t: BlobType) -> usize {
    match t {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

/// Start position of each bucket (and the total at the end) from the counts.
fn starts_of(counts: &[u32]) -> Vec<u32> {
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut sum = 0u32;
    for c in counts {
        starts.push(sum);
        sum += c;
    }
    starts.push(sum);
    starts
}

fn entry_problem_sized(pack: &Id, size: Option<u64>, b: &IndexBlob) -> Option<String> {
    let blob = b.packed();
    blob.check_fits(size)
        .err()
        .map(|e| format!("pack {pack}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_json_matches_restic_field_names_and_first_location_wins() {
        let blob = IndexBlob {
            id: Id::hash(b"x"),
            blob_type: BlobType::Data,
            offset: 0,
            length: 42,
            uncompressed_length: 0,
        };
        let f = IndexFile {
            supersedes: vec![],
            packs: vec![IndexPack {
                id: Id::hash(b"p1"),
                blobs: vec![blob.clone()],
            }],
        };
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains(r#""type":"data","offset":0,"length":42}"#),
            "{json}"
        );
        let mut idx = Index::new();
        idx.add_file(&serde_json::from_str(&json).unwrap());
        idx.add_pack(&IndexPack {
            id: Id::hash(b"p2"),
            blobs: vec![IndexBlob { offset: 9, ..blob }],
        });
        let loc = idx.get(BlobType::Data, &Id::hash(b"x")).unwrap();
        assert_eq!(loc.pack, Id::hash(b"p1"));
        assert!(!idx.has(BlobType::Tree, &Id::hash(b"x")));
    }

    #[test]
    fn entries_longer_than_their_pack_are_refused_and_a_good_duplicate_wins() {
        let pack = Id::hash(b"small pack");
        let good_pack = Id::hash(b"good pack");
        let sizes = HashMap::from([(pack, 142), (good_pack, 1000)]);
        let mut idx = Index::with_pack_sizes(sizes);
        let blob = |id: &[u8], offset, length| IndexBlob {
            id: Id::hash(id),
            blob_type: BlobType::Data,
            offset,
            length,
            uncompressed_length: 0,
        };
        idx.add_pack(&IndexPack {
            id: pack,
            blobs: vec![
                blob(b"huge", 0, u32::MAX),
                blob(b"past end", 100, 60),
                blob(b"fits", 0, 100),
                blob(b"dup", 0, 1 << 20),
            ],
        });
        idx.add_pack(&IndexPack {
            id: good_pack,
            blobs: vec![blob(b"dup", 0, 100)],
        });
        assert!(idx.has(BlobType::Data, &Id::hash(b"fits")));
        for bad in [&b"huge"[..], b"past end"] {
            assert!(!idx.has(BlobType::Data, &Id::hash(bad)));
            let why = idx.damage(BlobType::Data, &Id::hash(bad)).unwrap();
            assert!(why.contains("damaged"), "{why}");
        }
        assert_eq!(
            idx.get(BlobType::Data, &Id::hash(b"dup")).unwrap().pack,
            good_pack
        );
        assert_eq!(idx.damage(BlobType::Data, &Id::hash(b"dup")), None);
        assert_eq!(idx.damaged_entries().len(), 3);
    }
    use proptest::prelude::*;

    /// A model of the index: a hash map, first good entry wins.
    type Model = HashMap<(BlobType, Id), (Id, u32, u32, u32)>;

    fn model_add(model: &mut Model, sizes: &HashMap<Id, u64>, f: &IndexFile) {
        for p in &f.packs {
            for b in &p.blobs {
                let blob = b.packed();
                if blob.check_fits(sizes.get(&p.id).copied()).is_ok() {
                    model.entry((b.blob_type, b.id)).or_insert((
                        p.id,
                        b.offset,
                        b.length,
                        b.uncompressed_length,
                    ));
                }
            }
        }
    }

    fn assert_matches(idx: &Index, model: &Model, probes: &[(BlobType, Id)]) {
        for (t, id) in probes {
            let got = idx.get(*t, id).map(|l| {
                (
                    l.pack,
                    l.blob.offset,
                    l.blob.length,
                    l.blob.uncompressed_length,
                )
            });
            assert_eq!(got, model.get(&(*t, *id)).copied(), "{t} {id:?}");
            assert_eq!(idx.has(*t, id), model.contains_key(&(*t, *id)));
        }
        for t in [BlobType::Data, BlobType::Tree] {
            let n = model.keys().filter(|(mt, _)| *mt == t).count();
            assert_eq!(idx.blob_count(t), n);
        }
        let mut listed: Vec<(BlobType, Id, Id, u32, u32, u32)> = idx
            .by_pack()
            .into_iter()
            .flat_map(|(pack, blobs)| {
                blobs.into_iter().map(move |b| {
                    (
                        b.blob_type,
                        b.id,
                        pack,
                        b.offset,
                        b.length,
                        b.uncompressed_length,
                    )
                })
            })
            .collect();
        listed.sort();
        let mut want: Vec<(BlobType, Id, Id, u32, u32, u32)> = model
            .iter()
            .map(|((t, id), (p, o, l, u))| (*t, *id, *p, *o, *l, *u))
            .collect();
        want.sort();
        assert_eq!(listed, want);
        let mut trees: Vec<Id> = idx.tree_packs();
        trees.sort();
        let mut want_trees: Vec<Id> = model
            .iter()
            .filter(|((t, _), _)| *t == BlobType::Tree)
            .map(|(_, (p, ..))| *p)
            .collect();
        want_trees.sort();
        want_trees.dedup();
        assert_eq!(trees, want_trees);
    }

    /// Ids that often share their first bytes (one bucket) or are equal.
    fn test_id(bucket: u8, tail: u8) -> Id {
        let mut id = [0u8; 32];
        id[0] = bucket % 3;
        id[1] = bucket / 3;
        id[31] = tail;
        id[7] = tail.wrapping_mul(7);
        Id(id)
    }

    fn arb_files() -> impl Strategy<Value = Vec<IndexFile>> {
        let blob = (
            any::<bool>(),
            0u8..6,
            0u8..12,
            prop_oneof![0u32..5000, Just(1 << 24), Just(u32::MAX - 3)],
            prop_oneof![20u32..3000, Just(40 << 20), Just((1 << 24) + 5)],
            prop_oneof![Just(0u32), 100u32..5000, Just(1 << 24)],
        )
            .prop_map(|(tree, bucket, tail, offset, length, ulen)| IndexBlob {
                id: test_id(bucket, tail),
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                offset,
                length,
                uncompressed_length: ulen,
            });
        let pack = (0u8..8, prop::collection::vec(blob, 0..8)).prop_map(|(p, blobs)| IndexPack {
            id: Id::hash(&[p]),
            blobs,
        });
        let file = prop::collection::vec(pack, 0..5).prop_map(|packs| IndexFile {
            supersedes: vec![],
            packs,
        });
        prop::collection::vec(file, 0..5)
    }

    proptest! {
        #[test]
        fn compact_index_behaves_like_a_hash_map(files in arb_files(), split in 0usize..6, sized in any::<bool>()) {
            let sizes: HashMap<Id, u64> = if sized {
                (0u8..6).map(|p| (Id::hash(&[p]), 4000 + 1000 * p as u64)).collect()
            } else {
                HashMap::new()
            };
            let mut model = Model::new();
            for f in &files {
                model_add(&mut model, &sizes, f);
            }
            let probes: Vec<(BlobType, Id)> = (0u8..6)
                .flat_map(|b| (0u8..12).map(move |t| test_id(b, t)))
                .flat_map(|id| [(BlobType::Data, id), (BlobType::Tree, id)])
                .collect();
            // All at once, one file at a time, and built then extended.
            let bulk = Index::from_files(sizes.clone(), &files);
            assert_matches(&bulk, &model, &probes);
            let mut one_by_one = Index::with_pack_sizes(sizes.clone());
            for f in &files {
                one_by_one.add_file(f);
            }
            assert_matches(&one_by_one, &model, &probes);
            let split = split.min(files.len());
            let mut mixed = Index::from_files(sizes.clone(), &files[..split]);
            for f in &files[split..] {
                mixed.add_file(f);
            }
            assert_matches(&mixed, &model, &probes);
            for (t, id) in &probes {
                prop_assert_eq!(bulk.damage(*t, id), one_by_one.damage(*t, id));
                prop_assert_eq!(bulk.damage(*t, id).is_some(), mixed.damage(*t, id).is_some());
            }
            prop_assert_eq!(bulk.damaged_entries(), one_by_one.damaged_entries());
            for p in 0u8..8 {
                let id = Id::hash(&[p]);
                prop_assert_eq!(bulk.pack_size(&id), sizes.get(&id).copied());
                prop_assert_eq!(mixed.pack_size(&id), sizes.get(&id).copied());
            }
        }
    }

    #[test]
    fn side_maps_merge_into_the_table_as_packs_are_added() {
        let mut model = Model::new();
        let mut files = Vec::new();
        for f in 0..12u32 {
            let packs = (0..50u32)
                .map(|p| IndexPack {
                    id: Id::hash(&(f * 1000 + p).to_le_bytes()),
                    blobs: (0..200u32)
                        .map(|b| IndexBlob {
                            // Every blob again in a later file: the first copy must win.
                            id: Id::hash(&((f / 2) * 100_000 + p * 1000 + b).to_le_bytes()),
                            blob_type: if b % 10 == 0 {
                                BlobType::Tree
                            } else {
                                BlobType::Data
                            },
                            offset: b * 100 + if p == 7 { 1 << 24 } else { 0 },
                            length: 100,
                            uncompressed_length: 0,
                        })
                        .collect(),
                })
                .collect();
            files.push(IndexFile {
                supersedes: vec![],
                packs,
            });
        }
        let sizes = HashMap::new();
        for f in &files {
            model_add(&mut model, &sizes, f);
        }
        let probes: Vec<(BlobType, Id)> = model.keys().copied().collect();
        let mut idx = Index::new();
        for f in &files {
            idx.add_file(f);
        }
        assert!(idx.data.side.len() < idx.data.entries.len(), "merged");
        assert_matches(&idx, &model, &probes);
        let bulk = Index::from_files(HashMap::new(), &files);
        assert_matches(&bulk, &model, &probes);
        assert!(bulk.heap_bytes() < 60 * model.len() + 256 * 1024 + 100 * 600);
        assert!(!idx.escapes.is_empty());
    }
}
