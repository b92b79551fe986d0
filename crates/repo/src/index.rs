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

impl IndexFile {
    /// Parses an index file's JSON (a fast path for restic's plain shape, else serde_json).
    pub fn from_json(json: &[u8]) -> serde_json::Result<IndexFile> {
        match json::parse(json) {
            Some(f) => Ok(f),
            None => serde_json::from_slice(json),
        }
    }
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

mod json;
mod location;
pub(crate) mod snapshot;
mod table;
pub(crate) mod vouch;

use location::Location;
use table::{bucket_of, map_bytes, Bucketed, Table, BUCKETS, NO_SIZE};

/// A blob's location resolved to its pack id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: Id,
    pub blob: PackedBlob,
}

/// The in-memory index of all blobs of a repository: 30 bytes of id per blob, its location
/// in the bits its table needs (6 to 11 bytes), plus about 44 per pack (`heap_bytes`),
/// against 60 to 110 for a hash map of ids to locations.
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
    /// Refused entries: why each blob's (first) entry cannot be right.
    damaged: HashMap<(BlobType, Id), String>,
    /// How this index was loaded (see [`Index::source`]).
    source: IndexSource,
    /// The index files this index holds, sorted, when loaded from a repository (None for
    /// one built in memory): what a snapshot of it may claim to cover.
    covered: Option<Vec<Id>>,
    /// The data table, when it is read only on first use (see [`Index::ensure_complete`]);
    /// `data` is then empty.
    deferred: Option<Box<Deferred>>,
}

/// A data table left on disk, and the data entries of index files parsed after it.
struct Deferred {
    table: snapshot::DeferredTable,
    /// Of duplicates the first wins, after the table's own entries.
    pending: HashMap<Id, Location>,
    /// Lookups made on disk: past `on_disk_limit` the whole table is read instead.
    lookups: std::sync::atomic::AtomicUsize,
    /// The whole table with the pending entries, once read (None: it could not be).
    loaded: std::sync::OnceLock<Option<Table>>,
}

impl Deferred {
    /// The whole table, read on first use (an empty table if it cannot be read again).
    fn table(&self) -> &Table {
        static EMPTY: std::sync::LazyLock<Table> = std::sync::LazyLock::new(Table::default);
        self.loaded
            .get_or_init(|| {
                let mut t = self.table.load()?;
                for (id, loc) in &self.pending {
                    if !t.contains(id) {
                        t.side.insert(*id, *loc);
                    }
                }
                if !t.side.is_empty() && t.len_sorted() + t.side.len() < u32::MAX as usize {
                    t.merge_side();
                }
                Some(t)
            })
            .as_ref()
            .unwrap_or(&EMPTY)
    }

    /// Lookups answered from disk before the whole table is read: each costs a read and a
    /// hash of a few pages (≈10 µs), so past a share of what reading the table costs, the
    /// run is storing much and reading it once is cheaper.
    fn on_disk_limit(&self) -> usize {
        (self.table.len() / 256).max(4096)
    }

    fn contains(&self, id: &Id) -> crate::error::Result<bool> {
        if self.pending.contains_key(id) {
            return Ok(true);
        }
        let found = if self.whole() {
            self.whole_table().map(|t| t.contains(id))
        } else {
            self.table.contains(id)
        };
        found.ok_or_else(cache_changed)
    }

    /// The location of `id`: the table's entry wins over a pending one, as when it is read
    /// whole.
    fn find(&self, id: &Id) -> crate::error::Result<Option<Location>> {
        let found = if self.whole() {
            self.whole_table().map(|t| t.find(id))
        } else {
            self.table
                .find(id)
                .map(|loc| loc.or_else(|| self.pending.get(id).copied()))
        };
        found.ok_or_else(cache_changed)
    }

    /// The whole table, read now if not yet; None if it could not be read again.
    fn whole_table(&self) -> Option<&Table> {
        self.table();
        self.loaded.get().and_then(Option::as_ref)
    }

    /// Whether this lookup goes to the whole table (read already, or past the limit).
    fn whole(&self) -> bool {
        self.loaded.get().is_some()
            || self
                .lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                >= self.on_disk_limit()
    }
}

/// A deferred data table could not be read again as it was authenticated.
fn cache_changed() -> crate::error::Error {
    crate::error::Error::new(
        crate::Kind::Io,
        "the index cached on this machine could not be read again (it changed while in use, or the disk failed): run the command again",
    )
}

/// How [`Repository::load_index`](crate::repository::Repository::load_index) built an
/// index: how many index files came from the cached snapshot, how many were parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSource {
    /// Index files covered by the snapshot it was loaded from (0: none used).
    pub from_snapshot: usize,
    /// Index files read and parsed.
    pub parsed: usize,
    /// Whether a new snapshot was written.
    pub snapshot_written: bool,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// A table for lookups: a deferred data table is read here on first use.
    fn table(&self, t: BlobType) -> &Table {
        match (t, &self.deferred) {
            (BlobType::Data, Some(d)) => d.table(),
            (BlobType::Data, None) => &self.data,
            (BlobType::Tree, _) => &self.trees,
        }
    }

    /// Holds the data table deferred: read (and authenticated again) on the first data
    /// lookup or [`Index::ensure_complete`]. Until then the index answers tree lookups and
    /// knows its packs, and data entries added go to a pending list.
    fn defer_data(&mut self, table: snapshot::DeferredTable) {
        self.data = Table::default();
        self.deferred = Some(Box::new(Deferred {
            table,
            pending: HashMap::new(),
            lookups: std::sync::atomic::AtomicUsize::new(0),
            loaded: std::sync::OnceLock::new(),
        }));
    }

    /// A hint that about `n` data blobs will be looked up: a deferred data table is read
    /// whole now when that is more than its lookups on disk are worth (a restore of a
    /// whole snapshot), and left on disk for a few (one file, a directory listing).
    pub fn expect_data_lookups(&self, n: usize) -> crate::error::Result<()> {
        match &self.deferred {
            Some(d) if n > d.on_disk_limit() => self.ensure_complete(),
            _ => Ok(()),
        }
    }

    /// Whether the data table is deferred and not read whole yet.
    pub fn data_deferred(&self) -> bool {
        self.deferred
            .as_ref()
            .is_some_and(|d| d.loaded.get().is_none())
    }

    /// Reads a deferred data table whole now: an error if it cannot be read again as it
    /// was authenticated (the cache changed under us or the disk failed).
    pub fn ensure_complete(&self) -> crate::error::Result<()> {
        let Some(d) = &self.deferred else {
            return Ok(());
        };
        d.table();
        if d.loaded.get().is_some_and(Option::is_some) {
            return Ok(());
        }
        Err(cache_changed())
    }

    /// Whether a blob is indexed; a deferred data table answers from disk, and an error
    /// says it could not (see [`Index::has`], which takes that as "absent").
    pub fn has_checked(&self, t: BlobType, id: &Id) -> crate::error::Result<bool> {
        match (t, &self.deferred) {
            (BlobType::Data, Some(d)) => d.contains(id),
            _ => Ok(self.table(t).contains(id)),
        }
    }

    /// Takes a deferred data table that was read into the index proper; false if it is
    /// still deferred (the index then lacks data entries and must not be saved).
    pub(crate) fn undefer(&mut self) -> bool {
        let Some(d) = &mut self.deferred else {
            return true;
        };
        if !matches!(d.loaded.get(), Some(Some(_))) {
            return false;
        }
        if let Some(Some(t)) = d.loaded.take() {
            self.data = t;
        }
        self.deferred = None;
        true
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
        let mut placed = [Bucketed::new(&counts[0]), Bucketed::new(&counts[1])];
        for f in files {
            for p in &f.packs {
                let n = numbers.get(&p.id).copied().unwrap_or(u32::MAX);
                let size = index.size_of(n);
                for b in &p.blobs {
                    if entry_problem_sized(&p.id, size, b).is_some() {
                        continue;
                    }
                    let loc = Location {
                        pack: n,
                        offset: b.offset,
                        length: b.length,
                        uncompressed_length: b.uncompressed_length,
                    };
                    placed[type_slot(b.blob_type)].place(&b.id, loc);
                }
            }
        }
        let [data, trees] = placed;
        index.data = Table::from_bucketed(data);
        index.trees = Table::from_bucketed(trees);
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
        if self
            .deferred
            .as_ref()
            .is_some_and(|d| d.loaded.get().is_some())
        {
            self.undefer();
        }
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
            if let (BlobType::Data, Some(d)) = (b.blob_type, &mut self.deferred) {
                if !matches!(d.loaded.get(), Some(Some(_))) {
                    d.pending.entry(b.id).or_insert(Location {
                        pack: n,
                        offset: b.offset,
                        length: b.length,
                        uncompressed_length: b.uncompressed_length,
                    });
                    continue;
                }
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
            if table.side.len() > (table.len_sorted() / 4).max(1 << 14)
                && table.len_sorted() + table.side.len() < u32::MAX as usize
            {
                table.merge_side();
            }
        }
        if self.new_packs.len() > (self.pack_order.len() / 4).max(1 << 12) {
            self.set_pack_order();
        }
    }

    /// How this index was loaded (all zero for one built in memory).
    pub fn source(&self) -> IndexSource {
        self.source
    }

    pub(crate) fn set_source(&mut self, source: IndexSource) {
        self.source = source;
    }

    /// Records that this index holds exactly the entries of these index files.
    pub(crate) fn set_covered(&mut self, mut files: Vec<Id>) {
        files.sort_unstable();
        files.dedup();
        self.covered = Some(files);
    }

    pub(crate) fn covered(&self) -> Option<&[Id]> {
        self.covered.as_deref()
    }

    /// Records the size of a pack not yet numbered (as the backend would list it), so
    /// that its entries are checked against it when added.
    pub(crate) fn note_pack_size(&mut self, pack: Id, size: u64) {
        if self.pack_number(&pack).is_none() {
            self.other_sizes.insert(pack, size);
        }
    }

    /// Merges blobs added one pack at a time into the sorted tables (lookups get no
    /// faster, but the index can then be saved as a snapshot).
    pub fn compact(&mut self) {
        for table in [&mut self.data, &mut self.trees] {
            if !table.side.is_empty() && table.len_sorted() + table.side.len() < u32::MAX as usize {
                table.merge_side();
            }
        }
        if !self.new_packs.is_empty() {
            self.set_pack_order();
        }
    }

    /// Whether everything is in the sorted tables (nothing in side maps).
    fn is_compact(&self) -> bool {
        self.deferred.is_none()
            && self.data.side.is_empty()
            && self.trees.side.is_empty()
            && self.new_packs.is_empty()
    }

    pub fn add_file(&mut self, file: &IndexFile) {
        for p in &file.packs {
            self.add_pack(p);
        }
    }

    /// A hint that `ids` of type `t` will be looked up soon: their table lines are
    /// fetched into the cache together (see `Table::prefetch`).
    pub fn prefetch<'a>(&self, t: BlobType, ids: impl Iterator<Item = &'a Id> + Clone) {
        self.table_now(t).prefetch(ids);
    }

    /// Whether a blob is indexed (a deferred data table that cannot be read again answers
    /// "absent"; see [`Index::has_checked`]).
    pub fn has(&self, t: BlobType, id: &Id) -> bool {
        self.has_checked(t, id).unwrap_or(false)
    }

    /// Where a blob is. A deferred data table answers from disk (until the lookups pass
    /// its limit); one that cannot be read again as it was authenticated answers None, as
    /// for a blob not indexed (see [`Index::has_checked`]).
    pub fn get(&self, t: BlobType, id: &Id) -> Option<BlobLocation> {
        let loc = match (t, &self.deferred) {
            (BlobType::Data, Some(d)) => d.find(id).ok()??,
            _ => self.table(t).find(id)?,
        };
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

    /// Blobs of type `t` indexed (a table left on disk counts the entries of index files
    /// parsed since as well, some of which it may hold already).
    pub fn blob_count(&self, t: BlobType) -> usize {
        match (t, &self.deferred) {
            (BlobType::Data, Some(d)) if d.loaded.get().is_none() => {
                d.table.len() + d.pending.len()
            }
            _ => self.table_now(t).len(),
        }
    }

    /// As `table`, but never reads a deferred data table (empty until read).
    fn table_now(&self, t: BlobType) -> &Table {
        match (t, &self.deferred) {
            (BlobType::Data, Some(d)) => d
                .loaded
                .get()
                .and_then(Option::as_ref)
                .unwrap_or(&self.data),
            (BlobType::Data, None) => &self.data,
            (BlobType::Tree, _) => &self.trees,
        }
    }

    /// Bytes of memory the index holds (tables, pack list, side maps), for `stats`.
    pub fn heap_bytes(&self) -> usize {
        self.packs.capacity() * 32
            + self.sizes.capacity() * 8
            + self.pack_order.capacity() * 4
            + map_bytes(&self.new_packs)
            + map_bytes(&self.other_sizes)
            + self.table_now(BlobType::Data).heap_bytes()
            + self
                .deferred
                .as_ref()
                .map_or(0, |d| d.table.heap_bytes() + map_bytes(&d.pending))
            + self.trees.heap_bytes()
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
        self.trees.for_each(|_, loc| {
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
        let data = self.table(BlobType::Data);
        for (t, table) in [(BlobType::Data, data), (BlobType::Tree, &self.trees)] {
            table.for_each(|id, loc| {
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

fn type_slot(t: BlobType) -> usize {
    match t {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

fn entry_problem_sized(pack: &Id, size: Option<u64>, b: &IndexBlob) -> Option<String> {
    let blob = b.packed();
    blob.check_fits(size)
        .err()
        .map(|e| format!("pack {pack}: {e}"))
}

#[cfg(test)]
mod tests;
