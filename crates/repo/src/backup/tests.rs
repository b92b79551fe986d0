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
