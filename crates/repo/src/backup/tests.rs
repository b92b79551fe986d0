//! Backups of a small tree: an unchanged directory reuses its parent's tree id, and the
//! trees are the ones a backup without a parent writes.

use super::*;
use crate::backend::local::LocalBackend;
use crate::index::Index;
use std::sync::Arc;

fn run(repo: &Repository, src: &std::path::Path, parent: ParentChoice) -> BackupSummary {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        parent,
        ..Default::default()
    };
    backup(repo, opts, &Progress::default()).unwrap()
}

/// The tree of `src` in the snapshot (the directories above it, such as /tmp, change
/// between backups).
fn tree_of(repo: &Repository, s: &BackupSummary, src: &std::path::Path) -> Id {
    let index = repo.load_index().unwrap();
    let mut id = Snapshot::load(repo, &s.snapshot_id.unwrap()).unwrap().tree;
    for part in src.iter().skip(1) {
        let nodes =
            node::decode_tree(&repo.load_blob(&index, BlobType::Tree, &id).unwrap()).unwrap();
        let name = part.to_string_lossy();
        id = nodes
            .iter()
            .find(|n| n.name == *name)
            .and_then(|n| n.subtree)
            .unwrap();
    }
    id
}

#[test]
fn unchanged_directories_keep_their_trees_and_match_a_backup_without_parent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for d in ["a/b", "a/c", "d"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for (i, f) in ["a/b/1", "a/b/2", "a/c/3", "d/4", "top", "a/5"]
        .iter()
        .enumerate()
    {
        std::fs::write(src.join(f), vec![i as u8; 100 * (i + 1)]).unwrap();
    }
    std::os::unix::fs::symlink("top", src.join("d/link")).unwrap();
    let be = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let repo = Repository::init(be, "pw", 2, None).unwrap();
    let first = run(&repo, &src, ParentChoice::Latest);
    let again = run(&repo, &src, ParentChoice::Latest);
    assert_eq!(tree_of(&repo, &again, &src), tree_of(&repo, &first, &src));
    assert_eq!(again.files_unmodified, 6);
    // src, a, a/b, a/c, d (the directories above src, such as /tmp, may change).
    assert!(again.dirs_unmodified >= 5, "{again:?}");
    assert_eq!(again.dirs_new, 0, "{again:?}");
    // Without a parent every tree is encoded afresh: the same trees.
    let forced = run(&repo, &src, ParentChoice::None);
    assert_eq!(tree_of(&repo, &forced, &src), tree_of(&repo, &first, &src));

    // A changed file changes its directory and those above it, not its siblings.
    std::fs::write(src.join("a/c/3"), b"new content").unwrap();
    let changed = run(&repo, &src, ParentChoice::Latest);
    let forced = run(&repo, &src, ParentChoice::None);
    assert_ne!(tree_of(&repo, &changed, &src), tree_of(&repo, &first, &src));
    assert_eq!(
        tree_of(&repo, &changed, &src),
        tree_of(&repo, &forced, &src)
    );
    assert_eq!(changed.files_changed, 1);
    let index = repo.load_index().unwrap();
    let load =
        |id: &Id| node::decode_tree(&repo.load_blob(&index, BlobType::Tree, id).unwrap()).unwrap();
    let subtree = |nodes: &[Node], name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| n.subtree)
            .unwrap()
    };
    // `a/b` (unchanged) keeps its tree, `a/c` (changed) does not.
    let walk = |src_tree: Id| {
        let a = load(&subtree(&load(&src_tree), "a"));
        (subtree(&a, "b"), subtree(&a, "c"))
    };
    let (b1, c1) = walk(tree_of(&repo, &first, &src));
    let (b2, c2) = walk(tree_of(&repo, &changed, &src));
    assert_eq!(b1, b2);
    assert_ne!(c1, c2);
}

#[test]
fn a_directory_whose_metadata_changed_gets_a_new_tree_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x/f"), b"f").unwrap();
    let be = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let repo = Repository::init(be, "pw", 2, None).unwrap();
    let first = run(&repo, &src, ParentChoice::Latest);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("x"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let second = run(&repo, &src, ParentChoice::Latest);
    let forced = run(&repo, &src, ParentChoice::None);
    assert_ne!(tree_of(&repo, &second, &src), tree_of(&repo, &first, &src));
    assert_eq!(tree_of(&repo, &second, &src), tree_of(&repo, &forced, &src));
}

/// Many sibling and nested directories walked by 1, 2 and 4 walker threads (subdirectories
/// queued for the helpers ahead of time): the same trees every time, and a rerun finds
/// every file and directory unchanged whatever the thread counts.
#[test]
fn walker_threads_queue_subdirectories_and_write_the_same_trees() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for i in 0..24 {
        for j in 0..(i % 4) {
            let d = src.join(format!("d{i:02}/e{j}"));
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..3 {
                std::fs::write(d.join(format!("f{k}")), format!("{i}/{j}/{k}")).unwrap();
            }
        }
        std::fs::create_dir_all(src.join(format!("d{i:02}"))).unwrap();
        std::fs::write(src.join(format!("d{i:02}/top")), vec![i as u8; 10 + i]).unwrap();
    }
    let be = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let repo = Repository::init(be, "pw", 2, None).unwrap();
    let with = |threads: usize, parent: ParentChoice| {
        let opts = BackupOptions {
            paths: vec![src.clone()],
            parent,
            threads,
            ..Default::default()
        };
        backup(&repo, opts, &Progress::default()).unwrap()
    };
    let first = with(1, ParentChoice::None);
    let files = first.files_new;
    assert_eq!(files, 24 + 3 * (0..24).map(|i| i % 4).sum::<u64>());
    for threads in [2, 4] {
        let forced = with(threads, ParentChoice::None);
        assert_eq!(tree_of(&repo, &forced, &src), tree_of(&repo, &first, &src));
        let again = with(threads, ParentChoice::Latest);
        assert_eq!(tree_of(&repo, &again, &src), tree_of(&repo, &first, &src));
        assert_eq!(again.files_unmodified, files, "{again:?}");
        assert_eq!(again.files_new + again.files_changed, 0, "{again:?}");
        assert_eq!(again.dirs_new, 0, "{again:?}");
    }
}

/// Every indexed blob, grouped by pack and sorted, with each pack's size.
fn index_contents(idx: &Index) -> Vec<(Id, Option<u64>, Vec<crate::pack::PackedBlob>)> {
    let mut v: Vec<_> = idx
        .by_pack()
        .into_iter()
        .map(|(p, blobs)| (p, idx.pack_size(&p), blobs))
        .collect();
    v.sort_by_key(|e| e.0);
    v
}

#[test]
fn a_large_backup_leaves_an_index_snapshot_equal_to_a_full_parse_and_a_small_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..300u32 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i} ").repeat(50)).unwrap();
    }
    let be = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let mut repo = Repository::init(be, "pw", 2, None).unwrap();
    repo.set_cache_dir(Some(dir.path().join("cache")));
    run(&repo, &src, ParentChoice::Latest);
    // The first backup's entries came from memory into the snapshot: the next load
    // parses nothing and holds what a full parse of every index file holds.
    let loaded = repo.load_index().unwrap();
    let files = repo.list_ids(crate::backend::FileType::Index).unwrap();
    assert_eq!(loaded.source().from_snapshot, files.len());
    assert_eq!(loaded.source().parsed, 0);
    let parsed: Vec<crate::index::IndexFile> = files
        .iter()
        .map(|id| repo.load_json(crate::backend::FileType::Index, id).unwrap())
        .collect();
    let full = Index::from_files(repo.pack_sizes().unwrap(), &parsed);
    assert_eq!(index_contents(&loaded), index_contents(&full));
    assert!(index_contents(&full)
        .iter()
        .all(|(_, size, _)| size.is_some()));
    // One new file: a small addition, left for the next load to parse.
    std::fs::write(src.join("new"), "something new").unwrap();
    run(&repo, &src, ParentChoice::Latest);
    let loaded = repo.load_index().unwrap();
    assert_eq!(loaded.source().from_snapshot, files.len());
    assert_eq!(loaded.source().parsed, 1);
}

/// A repository with a cache and a first backup of 300 files; its snapshot id.
fn cached_repo(dir: &std::path::Path) -> (Repository, std::path::PathBuf, Id) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..300u32 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i} ").repeat(50)).unwrap();
    }
    let be = Arc::new(LocalBackend::new(dir.join("repo")));
    let mut repo = Repository::init(be, "pw", 2, None).unwrap();
    repo.set_cache_dir(Some(dir.join("cache")));
    let first = run(&repo, &src, ParentChoice::Latest);
    (repo, src, first.snapshot_id.unwrap())
}

fn full_parse(repo: &Repository) -> Index {
    let files = repo.list_ids(crate::backend::FileType::Index).unwrap();
    let parsed: Vec<crate::index::IndexFile> = files
        .iter()
        .map(|id| repo.load_json(crate::backend::FileType::Index, id).unwrap())
        .collect();
    Index::from_files(repo.pack_sizes().unwrap(), &parsed)
}

#[test]
fn a_vouched_parent_leaves_the_data_index_on_disk_until_a_blob_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, src, first) = cached_repo(dir.path());
    let (index, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(vouched);
    assert!(index.data_deferred());
    assert_eq!(index.blob_count(BlobType::Data), 300);
    assert!(index.blob_count(BlobType::Tree) > 0);
    // Storing blobs looks them up on disk: existing ones are not stored again.
    let writer = PackWriter::new(&repo, &index);
    for i in 0..300 {
        let (_, new) = writer
            .save(BlobType::Data, format!("file {i} ").repeat(50).as_bytes())
            .unwrap();
        assert!(!new, "an existing blob is not stored again");
    }
    let (_, new) = writer.save(BlobType::Data, b"something new").unwrap();
    assert!(new);
    assert!(index.data_deferred(), "looked up on disk, not read whole");
    drop(writer);
    // Read whole, it is the index a full parse gives.
    index.ensure_complete().unwrap();
    assert!(!index.data_deferred());
    assert_eq!(index_contents(&index), index_contents(&full_parse(&repo)));
    // Past a few thousand lookups, the table is read whole once.
    let (index, _) = repo.load_index_for_backup(Some(&first)).unwrap();
    for i in 0..5000u32 {
        assert!(!index.has(BlobType::Data, &Id::hash(&i.to_le_bytes())));
    }
    assert!(!index.data_deferred());

    // A rerun reuses every file, and its snapshot is vouched for in turn.
    let again = run(&repo, &src, ParentChoice::Latest);
    assert_eq!(again.files_unmodified, 300);
    assert_eq!(again.data_blobs, 0);
    let (index, vouched) = repo
        .load_index_for_backup(again.snapshot_id.as_ref())
        .unwrap();
    assert!(vouched && index.data_deferred());

    // One changed file: its index file is not in the cached snapshot; its entries wait
    // for the table and join it (first entry wins) when it is read.
    std::fs::write(src.join("f3"), "changed").unwrap();
    let changed = run(&repo, &src, ParentChoice::Latest);
    assert_eq!(changed.files_changed, 1);
    let (index, vouched) = repo
        .load_index_for_backup(changed.snapshot_id.as_ref())
        .unwrap();
    assert!(vouched);
    assert!(index.source().parsed >= 1, "{:?}", index.source());
    index.ensure_complete().unwrap();
    assert_eq!(index_contents(&index), index_contents(&full_parse(&repo)));
}

#[test]
fn without_a_valid_voucher_every_unchanged_file_is_checked_against_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, src, first) = cached_repo(dir.path());
    // No voucher for a snapshot this machine did not write (or a restic parent).
    let (_, vouched) = repo.load_index_for_backup(Some(&Id([9; 32]))).unwrap();
    assert!(!vouched);
    // The index is rewritten without the data blobs of its first data pack (as `repair
    // index` does once a pack is lost): the voucher no longer holds, and the files whose
    // blobs are gone are read again.
    let be = repo.backend();
    let index_files = repo.list_ids(crate::backend::FileType::Index).unwrap();
    assert_eq!(index_files.len(), 1);
    let mut file: crate::index::IndexFile = repo
        .load_json(crate::backend::FileType::Index, &index_files[0])
        .unwrap();
    let lost = file
        .packs
        .iter_mut()
        .find(|p| p.blobs.iter().any(|b| b.blob_type == BlobType::Data))
        .unwrap();
    let lost_blobs = lost.blobs.len();
    lost.blobs.retain(|b| b.blob_type == BlobType::Tree);
    crate::writer::write_index_files(&repo, &file.packs, &index_files).unwrap();
    be.remove(crate::backend::FileType::Index, &index_files[0].to_hex())
        .unwrap();
    let (index, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(!vouched && !index.data_deferred());
    drop(index);
    let healed = run(&repo, &src, ParentChoice::Latest);
    assert!(
        healed.files_unmodified <= 300 - lost_blobs as u64,
        "{healed:?}"
    );
    assert!(healed.data_blobs >= lost_blobs as u64, "{healed:?}");
    let index = repo.load_index().unwrap();
    let snap = Snapshot::load(&repo, &healed.snapshot_id.unwrap()).unwrap();
    let mut todo = vec![snap.tree];
    let mut checked = 0;
    while let Some(t) = todo.pop() {
        for n in node::decode_tree(&repo.load_blob(&index, BlobType::Tree, &t).unwrap()).unwrap() {
            todo.extend(n.subtree);
            for id in n.content.iter().flatten() {
                assert!(index.has(BlobType::Data, id));
                checked += 1;
            }
        }
    }
    assert!(checked >= 300);
}

#[test]
fn a_damaged_pack_or_a_changed_cache_is_never_trusted_for_vouching() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _src, first) = cached_repo(dir.path());
    // A pack truncated behind our back: its entries would be refused: check every file.
    let packs = repo.pack_sizes().unwrap();
    let (pack, size) = packs.iter().next().unwrap();
    let path = dir
        .path()
        .join("repo/data")
        .join(&pack.to_hex()[..2])
        .join(pack.to_hex());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..*size as usize - 10]).unwrap();
    let (_, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(!vouched);
    std::fs::write(&path, &bytes).unwrap();
    // The cached snapshot was rebuilt with the damage: rebuilt again once, then trusted.
    let (_, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(!vouched);
    let (_, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(vouched);

    // The cached snapshot changed in place after it was authenticated: a lookup on disk
    // fails instead of deduplicating wrongly, and so does reading the table whole.
    let snap = repo.local_cache_dir().unwrap().join("index.snapshot");
    let good = std::fs::read(&snap).unwrap();
    let mut bad = good.clone();
    for at in (1024..bad.len() - 64).step_by(512) {
        bad[at] ^= 0x40;
    }
    let in_place = |bytes: &[u8]| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&snap)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
            .unwrap()
    };
    let existing = "file 7 ".repeat(50);
    let (index, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(vouched);
    in_place(&bad);
    let writer = PackWriter::new(&repo, &index);
    assert!(writer.save(BlobType::Data, existing.as_bytes()).is_err());
    drop(writer);
    in_place(&good);
    let (index, vouched) = repo.load_index_for_backup(Some(&first)).unwrap();
    assert!(vouched);
    in_place(&bad);
    assert!(index.ensure_complete().is_err());
    let writer = PackWriter::new(&repo, &index);
    assert!(writer.save(BlobType::Data, b"anything").is_err());
}

/// Reading commands leave the data index on disk: a restore of one file looks its blobs
/// up there and writes it whole; a restore of everything with the same index reads the
/// table whole first and writes every file.
#[test]
fn a_restore_of_one_file_looks_its_blobs_up_with_the_data_index_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, src, first) = cached_repo(dir.path());
    let index = repo.load_index_for_reading().unwrap();
    assert!(index.data_deferred(), "{:?}", index.source());
    let tree = crate::snapshot::Snapshot::load(&repo, &first).unwrap().tree;
    let one = format!("{}/f7", src.display());
    let opts = crate::restore::RestoreOptions {
        target: dir.path().join("one"),
        include: crate::exclude::PatternSet::new(std::slice::from_ref(&one), false).unwrap(),
        threads: 2,
        ..Default::default()
    };
    let progress = crate::restore::Progress::default();
    let s = crate::restore::restore_with_index(&repo, &index, tree, &opts, &progress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files_restored, 1);
    let restored = std::fs::read(dir.path().join("one").join(one.trim_start_matches('/')));
    assert_eq!(restored.unwrap(), std::fs::read(src.join("f7")).unwrap());
    assert!(
        index.data_deferred(),
        "one file's blobs were looked up on disk"
    );

    let opts = crate::restore::RestoreOptions {
        target: dir.path().join("all"),
        threads: 2,
        ..Default::default()
    };
    let s = crate::restore::restore_with_index(&repo, &index, tree, &opts, &progress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.files_restored, 300);
    assert!(!index.data_deferred(), "read whole for a whole snapshot");
    let all = dir.path().join("all").join(src.strip_prefix("/").unwrap());
    for i in [0, 150, 299] {
        let name = format!("f{i}");
        assert_eq!(
            std::fs::read(all.join(&name)).unwrap(),
            std::fs::read(src.join(&name)).unwrap()
        );
    }

    // A backup that looked its blobs up on disk leaves the cached snapshot as it was: the
    // next reading command parses the new index file and still leaves the table on disk;
    // the new blobs are found among the pending entries.
    std::fs::write(src.join("f7"), "changed").unwrap();
    let changed = run(&repo, &src, ParentChoice::Latest);
    assert_eq!(changed.files_changed, 1);
    let index = repo.load_index_for_reading().unwrap();
    assert!(index.data_deferred(), "{:?}", index.source());
    assert!(index.source().parsed >= 1, "{:?}", index.source());
    let tree = crate::snapshot::Snapshot::load(&repo, changed.snapshot_id.as_ref().unwrap())
        .unwrap()
        .tree;
    let opts = crate::restore::RestoreOptions {
        target: dir.path().join("changed"),
        include: crate::exclude::PatternSet::new(std::slice::from_ref(&one), false).unwrap(),
        threads: 2,
        ..Default::default()
    };
    let s = crate::restore::restore_with_index(&repo, &index, tree, &opts, &progress).unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let restored = std::fs::read(dir.path().join("changed").join(one.trim_start_matches('/')));
    assert_eq!(restored.unwrap(), b"changed");
    assert!(index.data_deferred());
    index.ensure_complete().unwrap();
    assert_eq!(index_contents(&index), index_contents(&full_parse(&repo)));
}
