//! The index snapshot: round trips, staleness, hostile files, deferred data tables.

use crate::backend::local::LocalBackend;
use crate::backend::{Backend, FileType};
use crate::id::Id;
use crate::index::{Index, IndexBlob, IndexFile, IndexPack, IndexSource};
use crate::pack::BlobType;
use crate::repository::Repository;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    backend: Arc<dyn Backend>,
    snapshot: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
    let mut repo = Repository::init(backend.clone(), "pw", 2, None).unwrap();
    let cache = dir.path().join("cache");
    repo.set_cache_dir(Some(cache.clone()));
    let snapshot = cache.join(&repo.config().id).join("index.snapshot");
    Fixture {
        _dir: dir,
        repo,
        backend,
        snapshot,
    }
}

/// An index file of `packs` packs of 30 blobs each (one in 10 a tree), named by `seed`;
/// one blob is listed twice with a huge length (refused as damage).
fn index_file(seed: u32, packs: u32) -> IndexFile {
    IndexFile {
        supersedes: vec![],
        packs: (0..packs)
            .map(|p| IndexPack {
                id: Id::hash(format!("pack {seed} {p}").as_bytes()),
                blobs: (0..30u32)
                    .map(|b| IndexBlob {
                        id: Id::hash(format!("blob {seed} {p} {b}").as_bytes()),
                        blob_type: if b % 10 == 0 {
                            BlobType::Tree
                        } else {
                            BlobType::Data
                        },
                        offset: b * 1000 + if b == 7 { 1 << 24 } else { 0 },
                        length: if b == 29 { u32::MAX } else { 900 },
                        uncompressed_length: 2000,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn everything(idx: &Index) -> (Vec<(Id, Vec<crate::pack::PackedBlob>)>, Vec<String>) {
    let mut by_pack = idx.by_pack();
    by_pack.sort_by_key(|p| p.0);
    let damaged = idx
        .damaged_entries()
        .into_iter()
        .map(String::from)
        .collect();
    (by_pack, damaged)
}

#[test]
fn a_second_load_comes_from_the_snapshot_and_equals_a_full_parse() {
    let f = fixture();
    for seed in 0..3 {
        f.repo
            .save_json(FileType::Index, &index_file(seed, 5))
            .unwrap();
    }
    let first = f.repo.load_index().unwrap();
    assert_eq!(
        first.source(),
        IndexSource {
            from_snapshot: 0,
            parsed: 3,
            snapshot_written: true
        }
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&f.snapshot).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(f.snapshot.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let second = f.repo.load_index().unwrap();
    assert_eq!(second.source().from_snapshot, 3);
    assert_eq!(second.source().parsed, 0);
    assert!(!second.source().snapshot_written);
    assert_eq!(everything(&first), everything(&second));
    let probe = Id::hash(b"blob 1 2 3");
    assert_eq!(
        first.get(BlobType::Data, &probe),
        second.get(BlobType::Data, &probe)
    );
    assert!(second.has(BlobType::Data, &probe));
    assert!(second
        .damage(BlobType::Data, &Id::hash(b"blob 1 2 29"))
        .is_some());
    assert_eq!(
        second.pack_size(&Id::hash(b"pack 0 0")),
        first.pack_size(&Id::hash(b"pack 0 0"))
    );

    // Readers take it without listing the packs, and get the same index.
    let reading = f.repo.load_index_for_reading().unwrap();
    assert_eq!(reading.source().from_snapshot, 3);
    assert_eq!(everything(&reading), everything(&first));
    assert_eq!(
        reading.pack_size(&Id::hash(b"pack 0 0")),
        first.pack_size(&Id::hash(b"pack 0 0"))
    );

    // A new index file: parsed on top of the snapshot.
    f.repo
        .save_json(FileType::Index, &index_file(7, 2))
        .unwrap();
    // Not covered: readers load it in full like load_index (snapshot + the new file).
    let third = f.repo.load_index_for_reading().unwrap();
    assert_eq!(third.source().from_snapshot, 3);
    assert_eq!(third.source().parsed, 1);
    assert!(third.has(BlobType::Data, &Id::hash(b"blob 7 1 3")));
    let mut files: Vec<IndexFile> = Vec::new();
    for id in f.repo.list_ids(FileType::Index).unwrap() {
        files.push(f.repo.load_json(FileType::Index, &id).unwrap());
    }
    let full = Index::from_files(f.repo.pack_sizes().unwrap(), &files);
    assert_eq!(everything(&third), everything(&full));
}

#[test]
fn a_stale_or_hostile_snapshot_is_ignored() {
    let f = fixture();
    let mut ids = Vec::new();
    for seed in 0..3 {
        ids.push(
            f.repo
                .save_json(FileType::Index, &index_file(seed, 4))
                .unwrap(),
        );
    }
    let reference = everything(&f.repo.load_index().unwrap());
    let good = std::fs::read(&f.snapshot).unwrap();
    let rebuilt = |f: &Fixture| {
        let idx = f.repo.load_index().unwrap();
        assert_eq!(idx.source().from_snapshot, 0, "must not be trusted");
        idx
    };
    // Flipped bits anywhere, truncation, garbage, an empty file.
    for at in [0, 9, 60, good.len() / 2, good.len() - 40, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&f.snapshot, &bad).unwrap();
        assert_eq!(everything(&rebuilt(&f)), reference);
        // Readers, who skip the pack listing, check it the same way.
        std::fs::write(&f.snapshot, &bad).unwrap();
        let idx = f.repo.load_index_for_reading().unwrap();
        assert_eq!(idx.source().from_snapshot, 0);
        assert_eq!(everything(&idx), reference);
    }
    for len in [0, 5, 31, 32, 100, good.len() - 1] {
        std::fs::write(&f.snapshot, &good[..len]).unwrap();
        assert_eq!(everything(&rebuilt(&f)), reference);
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 7]);
    std::fs::write(&f.snapshot, &longer).unwrap();
    rebuilt(&f);
    // Another repository's (valid) snapshot, or one under another key.
    let other = fixture();
    other
        .repo
        .save_json(FileType::Index, &index_file(9, 1))
        .unwrap();
    other.repo.load_index().unwrap();
    std::fs::write(&f.snapshot, std::fs::read(&other.snapshot).unwrap()).unwrap();
    assert_eq!(everything(&rebuilt(&f)), reference);
    // A snapshot made with a wrong key (say by someone without the password).
    let idx = Index::from_files(f.repo.pack_sizes().unwrap(), &[index_file(5, 1)]);
    let mut sorted = ids.clone();
    sorted.sort();
    super::write(&f.snapshot, &[7; 32], &f.repo.config().id, &sorted, &idx).unwrap();
    assert_eq!(everything(&rebuilt(&f)), reference);
    assert_eq!(f.repo.load_index().unwrap().source().from_snapshot, 3);

    // An index file it covers is gone (prune): rebuilt without it.
    f.backend.remove(FileType::Index, &ids[0].to_hex()).unwrap();
    let idx = rebuilt(&f);
    assert!(!idx.has(BlobType::Data, &Id::hash(b"blob 0 1 1")));
    assert!(idx.has(BlobType::Data, &Id::hash(b"blob 1 1 1")));
    assert_eq!(f.repo.load_index().unwrap().source().from_snapshot, 2);

    // A pack it knows appears with another size: the entries are checked again.
    let pack = Id::hash(b"pack 1 0");
    f.backend
        .write(FileType::Pack, &pack.to_hex(), &[0u8; 100])
        .unwrap();
    let idx = rebuilt(&f);
    assert_eq!(idx.pack_size(&pack), Some(100));
    assert!(idx
        .damage(BlobType::Data, &Id::hash(b"blob 1 0 1"))
        .is_some());
    let again = f.repo.load_index().unwrap();
    assert_eq!(again.source().from_snapshot, 2);
    assert_eq!(everything(&again), everything(&idx));
}

#[test]
fn large_tables_round_trip_and_are_authenticated() {
    let files: Vec<IndexFile> = (0..12).map(|seed| index_file(seed, 500)).collect();
    let sizes = std::collections::HashMap::new();
    let idx = Index::from_files(sizes.clone(), &files);
    assert!(idx.blob_count(BlobType::Data) * 30 > 4 * super::CHUNK_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let covered = [Id::hash(b"1")];
    super::write(&path, &[1; 32], "ab", &covered, &idx).unwrap();
    let listed = covered.iter().copied().collect();
    let back = super::read(&path, &[1; 32], "ab", &listed, Some(&mut sizes.clone()))
        .unwrap()
        .index;
    assert_eq!(everything(&back), everything(&idx));
    let good = std::fs::read(&path).unwrap();
    for at in [good.len() / 3, good.len() - 100] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(super::read(&path, &[1; 32], "ab", &listed, None).is_none());
    }
    std::fs::write(&path, &good[..good.len() - 1000]).unwrap();
    assert!(super::read(&path, &[1; 32], "ab", &listed, None).is_none());
}

#[test]
fn no_cache_dir_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
    let repo = Repository::init(backend, "pw", 2, None).unwrap();
    repo.save_json(FileType::Index, &index_file(1, 1)).unwrap();
    for _ in 0..2 {
        let idx = repo.load_index().unwrap();
        assert_eq!(idx.source().from_snapshot, 0);
        assert!(!idx.source().snapshot_written);
    }
}

/// A deferred data table answers every lookup as the table read whole does, in tables
/// whose buckets imply 0, 1 and 2 bytes of id, and reads back equal to it.
#[test]
fn a_deferred_table_answers_lookups_from_disk_as_the_whole_table_does() {
    for (seeds, packs) in [(1u32, 1u32), (3, 10), (3, 400)] {
        let mut files: Vec<IndexFile> = (0..seeds).map(|seed| index_file(seed, packs)).collect();
        // The outliers of `index_file` in one pack only: few enough to be escaped.
        for (p, pack) in files
            .iter_mut()
            .flat_map(|f| f.packs.iter_mut())
            .enumerate()
        {
            if p != 7 {
                pack.blobs[7].offset = 7000;
                pack.blobs[29].length = 900;
            }
        }
        let mut sizes = std::collections::HashMap::new();
        let idx = Index::from_files(sizes.clone(), &files);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let covered = [Id::hash(b"1")];
        super::write(&path, &[1; 32], "ab", &covered, &idx).unwrap();
        let listed = covered.iter().copied().collect();
        let back = super::read_deferring_data(&path, &[1; 32], "ab", &listed, Some(&mut sizes))
            .unwrap()
            .index;
        assert!(back.data_deferred());
        // Locations from disk (the table's own lookups, uncounted: all of them on disk),
        // escaped ones included, equal to the whole table's.
        let on_disk = &back.deferred.as_ref().unwrap().table;
        for f in &files {
            for p in &f.packs {
                for b in p.blobs.iter().filter(|b| b.blob_type == BlobType::Data) {
                    assert_eq!(on_disk.find(&b.id), Some(idx.data.find(&b.id)), "{}", b.id);
                }
            }
        }
        assert!(on_disk.find(&Id::hash(b"absent")) == Some(None));
        if packs > 1 {
            assert!(!idx.data.escapes.is_empty(), "the escapes are exercised");
        }
        assert_eq!(
            back.blob_count(BlobType::Data),
            idx.blob_count(BlobType::Data)
        );
        let mut present = 0;
        for f in &files {
            for p in &f.packs {
                for b in &p.blobs {
                    let want = idx.has(b.blob_type, &b.id);
                    assert_eq!(back.has_checked(b.blob_type, &b.id).unwrap(), want);
                    present += usize::from(want);
                }
            }
        }
        assert!(present > 0);
        for n in 0..200u32 {
            let absent = Id::hash(&n.to_le_bytes());
            assert!(!back.has_checked(BlobType::Data, &absent).unwrap());
        }
        back.ensure_complete().unwrap();
        assert_eq!(everything(&back), everything(&idx));
    }
}

/// A deferred table whose file changed after it was authenticated never answers a wrong
/// location: every lookup is the true one (an untouched page) or an error.
#[test]
fn a_changed_snapshot_file_never_gives_a_wrong_location() {
    let files: Vec<IndexFile> = (0..3).map(|seed| index_file(seed, 50)).collect();
    let idx = Index::from_files(std::collections::HashMap::new(), &files);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let covered = [Id::hash(b"1")];
    super::write(&path, &[1; 32], "ab", &covered, &idx).unwrap();
    let listed = covered.iter().copied().collect();
    let back = super::read_deferring_data(&path, &[1; 32], "ab", &listed, None)
        .unwrap()
        .index;
    // Every byte of the second half flipped in place (the open file sees it).
    let mut bytes = std::fs::read(&path).unwrap();
    let half = bytes.len() / 2;
    for b in &mut bytes[half..] {
        *b ^= 0x55;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&bytes, 0)
        .unwrap();
    let (mut right, mut refused) = (0, 0);
    for b in files.iter().flat_map(|f| &f.packs).flat_map(|p| &p.blobs) {
        if b.blob_type != BlobType::Data {
            continue;
        }
        match back.deferred.as_ref().unwrap().table.find(&b.id) {
            Some(loc) => {
                assert_eq!(loc, idx.data.find(&b.id));
                right += 1;
            }
            None => refused += 1,
        }
    }
    assert!(
        right > 0 && refused > 0,
        "{right} answered, {refused} refused"
    );
    // Through the index: a refused lookup is "not found", never a location.
    for b in files.iter().flat_map(|f| &f.packs).flat_map(|p| &p.blobs) {
        if let Some(got) = back.get(b.blob_type, &b.id) {
            assert_eq!(Some(got), idx.get(b.blob_type, &b.id));
        }
    }
}
