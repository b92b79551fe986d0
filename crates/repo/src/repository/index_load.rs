//! Loading the index: whole, from the cached snapshot, with the data table left on disk
//! (a backup with a vouched parent, the reading commands), and keeping that snapshot and
//! the vouchers up to date.

use super::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile};
use crate::pack::BlobType;

impl Repository {
    /// The index for a backup whose parent is `parent`, and whether the parent's data
    /// blobs are vouched for (see `index::vouch`): then the backup need not look up the
    /// content of unchanged files, and the data table stays on disk, where the blobs of
    /// changed files are looked up (see `index::snapshot::deferred`): a rerun of 10M files
    /// then holds no data index, only what it changes.
    /// Otherwise (no voucher, an index file it names is gone, an entry refused, no cached
    /// snapshot) the whole index as [`Repository::load_index`] loads it, not vouched.
    pub fn load_index_for_backup(&self, parent: Option<&Id>) -> Result<(Index, bool)> {
        let full = |me: &Self| Ok((me.load_index()?, false));
        let (Some(parent), Some(dir)) = (parent, self.local_cache_dir()) else {
            return full(self);
        };
        let key = crate::index::snapshot::mac_key(&self.key);
        let Some(vouchers) =
            crate::index::vouch::read(&dir.join("vouchers"), &key, &self.config.id, parent)
        else {
            return full(self);
        };
        let ids = self.list_ids(FileType::Index)?;
        let listed: std::collections::HashSet<Id> = ids.iter().copied().collect();
        if !vouchers.iter().all(|id| listed.contains(id)) {
            return full(self);
        }
        match self.load_index_deferring(ids, false, None)? {
            Some(index) => Ok((index, true)),
            None => full(self),
        }
    }

    /// The index with the cached snapshot's data table left on disk, the index files it
    /// does not cover parsed (their data entries pending), every entry checked against the
    /// pack sizes listed now. None (the caller loads it whole) without a usable snapshot,
    /// with a refused entry (a backup's voucher cannot stand then), or, when `rewrite` is
    /// set, when the files not covered are many enough for [`Repository::load_index`] to
    /// write a new snapshot (a reading command leaves that to it).
    ///
    /// `read`: the snapshot read already, deferring, without the sizes checked.
    fn load_index_deferring(
        &self,
        ids: Vec<Id>,
        rewrite: bool,
        read: Option<crate::index::snapshot::Loaded>,
    ) -> Result<Option<Index>> {
        let Some(path) = self.index_snapshot_path() else {
            return Ok(None);
        };
        let key = crate::index::snapshot::mac_key(&self.key);
        let listed: std::collections::HashSet<Id> = ids.iter().copied().collect();
        let mut sizes = self.pack_sizes()?;
        let base = match read {
            Some(mut l) => l.index.adopt_listed_sizes(&mut sizes).then_some(l),
            None => crate::index::snapshot::read_deferring_data(
                &path,
                &key,
                &self.config.id,
                &listed,
                Some(&mut sizes),
            ),
        };
        let Some(base) = base else {
            return Ok(None);
        };
        let have: std::collections::HashSet<Id> = base.covered.iter().copied().collect();
        let todo: Vec<Id> = ids
            .iter()
            .filter(|id| !have.contains(id))
            .copied()
            .collect();
        let files = self.parse_index_files(todo.clone())?;
        let mut index = base.index;
        if rewrite {
            let new_blobs: usize = files
                .iter()
                .flat_map(|f| &f.packs)
                .map(|p| p.blobs.len())
                .sum();
            let held = index.blob_count(BlobType::Data) + index.blob_count(BlobType::Tree);
            if snapshot_worth_rewriting(todo.len(), new_blobs, held) {
                return Ok(None);
            }
        }
        for f in &files {
            index.add_file(f);
        }
        drop(files);
        if !index.damaged_entries().is_empty() {
            return Ok(None);
        }
        index.set_source(crate::index::IndexSource {
            from_snapshot: base.covered.len(),
            parsed: todo.len(),
            snapshot_written: false,
        });
        index.set_covered(ids);
        self.backend
            .set_tree_packs(index.tree_packs().iter().map(Id::to_hex).collect());
        Ok(Some(index))
    }

    /// Records that every data blob of the snapshot `snapshot` is in one of `files` (index
    /// file ids): the index files listed when its backup started and those it wrote. Only
    /// the cache; a failure costs the next backup a full index load, nothing else.
    pub fn vouch_for(&self, snapshot: &Id, files: &[Id]) {
        let Some(dir) = self.local_cache_dir() else {
            return;
        };
        let key = crate::index::snapshot::mac_key(&self.key);
        let _ = crate::index::vouch::write(
            &dir.join("vouchers"),
            &key,
            &self.config.id,
            snapshot,
            files,
        );
    }

    /// Loads the index: from the cached snapshot (see [`Repository::set_cache_dir`]) when
    /// it is authentic and every index file it covers is still there, parsing only the
    /// index files it does not cover; else every index file (in parallel). Each entry is
    /// checked against the listed size of its pack. Of duplicate entries the first loaded
    /// wins (the snapshot's before newer files'); every one is a valid location.
    pub fn load_index(&self) -> Result<Index> {
        let ids = self.list_ids(FileType::Index)?;
        let mut sizes = self.pack_sizes()?;
        let path = self.index_snapshot_path();
        let key = crate::index::snapshot::mac_key(&self.key);
        let listed: std::collections::HashSet<Id> = ids.iter().copied().collect();
        let base = path.as_deref().and_then(|p| {
            crate::index::snapshot::read(p, &key, &self.config.id, &listed, Some(&mut sizes))
        });
        let (mut covered, base) = match base {
            Some(l) => (l.covered, Some(l.index)),
            None => (Vec::new(), None),
        };
        let have: std::collections::HashSet<Id> = covered.iter().copied().collect();
        let all = ids.clone();
        let todo: Vec<Id> = ids.into_iter().filter(|id| !have.contains(id)).collect();
        let parsed = todo.len();
        let files = self.parse_index_files(todo.clone())?;
        let new_blobs: usize = files
            .iter()
            .flat_map(|f| &f.packs)
            .map(|p| p.blobs.len())
            .sum();
        let from_snapshot = covered.len();
        let (mut index, write) = match base {
            Some(mut index) => {
                for f in &files {
                    index.add_file(f);
                }
                let held = index.blob_count(BlobType::Data) + index.blob_count(BlobType::Tree);
                (index, snapshot_worth_rewriting(parsed, new_blobs, held))
            }
            None => (Index::from_files(sizes, &files), parsed > 0),
        };
        drop(files);
        let mut written = false;
        if let (Some(p), true) = (path, write) {
            index.compact();
            covered.extend(todo);
            covered.sort_unstable();
            written =
                crate::index::snapshot::write(&p, &key, &self.config.id, &covered, &index).is_ok();
        }
        index.set_source(crate::index::IndexSource {
            from_snapshot,
            parsed,
            snapshot_written: written,
        });
        index.set_covered(all);
        self.backend
            .set_tree_packs(index.tree_packs().iter().map(Id::to_hex).collect());
        Ok(index)
    }

    /// Reads and parses these index files, four at a time.
    fn parse_index_files(&self, ids: Vec<Id>) -> Result<Vec<IndexFile>> {
        crate::parallel::map(ids, 4, |id| {
            let bytes = self.load_file(FileType::Index, &id)?;
            IndexFile::from_json(&bytes)
                .map_err(|e| Error::corrupt(format!("index/{id}: invalid JSON: {e}")))
        })
    }

    /// After a backup wrote `packs` (with their sizes) and listed them in the new index
    /// files `files`, brings the cached index snapshot up to date from `index` (as
    /// [`Repository::load_index`] returned it, before the backup) when the next load would
    /// otherwise parse many new entries and rewrite it: a first backup of 200,000 files
    /// left its rerun to parse a 200,000-blob index file and rewrite the snapshot (0.73
    /// instead of 0.64 s). The entries added are exactly those of `packs`, which the index
    /// files list; the next load still checks every pack's recorded size against the
    /// listing and rebuilds on any difference. Only the cache: a failure costs the next
    /// command that parse, nothing else. Memory: merging the new entries builds the new
    /// table beside the old one, as the next load would (the writer's buffers are freed
    /// by then); in a repository of millions of blobs that a backup grows by an eighth,
    /// the backup's peak then is that of the next command's load.
    pub fn refresh_index_snapshot(
        &self,
        mut index: Index,
        files: &[Id],
        packs: Vec<crate::writer::WrittenPack>,
    ) {
        // A deferred data table never read (nothing was deduplicated) cannot be saved;
        // the next load parses this backup's index files instead.
        if !index.undefer() {
            return;
        }
        let (Some(path), Some(before)) = (self.index_snapshot_path(), index.covered()) else {
            return;
        };
        let held = index.blob_count(BlobType::Data) + index.blob_count(BlobType::Tree);
        let new_blobs: usize = packs.iter().map(|w| w.pack.blobs.len()).sum();
        if files.is_empty() || !snapshot_worth_rewriting(files.len(), new_blobs, held) {
            return;
        }
        let mut covered = before.to_vec();
        covered.extend_from_slice(files);
        covered.sort_unstable();
        covered.dedup();
        for w in packs {
            index.note_pack_size(w.pack.id, w.size);
            index.add_pack(&w.pack);
        }
        index.compact();
        let key = crate::index::snapshot::mac_key(&self.key);
        let _ = crate::index::snapshot::write(&path, &key, &self.config.id, &covered, &index);
    }

    /// The index for commands that only read blobs (ls, cat, dump, restore, browse): from
    /// the cached snapshot without listing the packs when the snapshot covers every index
    /// file, taking the pack sizes it recorded (a pack damaged since is still caught when
    /// read: `load_blob` checks the blob against its pack's size and verifies its
    /// contents, a restore each blob), with its data table left on disk (see
    /// `index::snapshot::deferred`): a listing looks up no data blob, a restore of one
    /// file a few, and a restore of many reads the table whole
    /// ([`Index::expect_data_lookups`]). Index files written since the snapshot (a
    /// backup that looked blobs up on disk leaves the snapshot as it was) are parsed and
    /// the packs listed, the data table still on disk; many of them, or no usable
    /// snapshot: as [`Repository::load_index`], which writes a new one. Check, prune,
    /// repair and backup use `load_index`, which checks every entry against the pack
    /// sizes listed now.
    pub fn load_index_for_reading(&self) -> Result<Index> {
        let ids = self.list_ids(FileType::Index)?;
        let Some(p) = self.index_snapshot_path() else {
            return self.load_index();
        };
        let key = crate::index::snapshot::mac_key(&self.key);
        let listed: std::collections::HashSet<Id> = ids.iter().copied().collect();
        let Some(l) =
            crate::index::snapshot::read_deferring_data(&p, &key, &self.config.id, &listed, None)
        else {
            return self.load_index();
        };
        if l.covered.len() == listed.len() {
            let mut index = l.index;
            index.set_source(crate::index::IndexSource {
                from_snapshot: l.covered.len(),
                parsed: 0,
                snapshot_written: false,
            });
            self.backend
                .set_tree_packs(index.tree_packs().iter().map(Id::to_hex).collect());
            return Ok(index);
        }
        // Index files written since the snapshot (a backup that deduplicated nothing
        // leaves its snapshot as it was): parsed, the packs listed, the data table still
        // on disk; many of them: loaded whole, and the snapshot rewritten.
        match self.load_index_deferring(ids, true, Some(l))? {
            Some(index) => Ok(index),
            None => self.load_index(),
        }
    }
}

/// Whether an index snapshot that misses `files` index files of `blobs` entries, beside
/// the `held` entries of the index, is worth rewriting: rewriting costs about what reading
/// it does, so only once the files it misses are many or large.
fn snapshot_worth_rewriting(files: usize, blobs: usize, held: usize) -> bool {
    files > 32 || blobs.saturating_mul(8) > held
}
