//! cairn and the real restic read each other's repositories.

use crate::*;

#[test]
fn restic_checks_and_restores_what_cairn_wrote() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.cairn(&["init"]));
    let out = ok(env.cairn(&["backup", "--json", src.to_str().unwrap()]));
    let summary = json(&out);
    assert!(summary["snapshot_id"].is_string(), "{out}");
    ok(env.restic(&["check", "--read-data"]));
    let target = env.path("restored");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    // Hard links come back as hard links.
    let restored = target.join(src.strip_prefix("/").unwrap());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(restored.join("docs/log.txt"))
            .unwrap()
            .ino(),
        std::fs::metadata(restored.join("hardlink-to-log"))
            .unwrap()
            .ino()
    );
}

#[test]
fn cairn_lists_restores_and_checks_what_restic_wrote() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.restic(&["init"]));
    ok(env.restic(&["backup", "--tag", "nightly", src.to_str().unwrap()]));
    let snaps = json(&ok(env.cairn(&["snapshots", "--json"])));
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["tags"][0], "nightly");
    ok(env.cairn(&["check", "--read-data"]));
    let target = env.path("restored");
    ok(env.cairn(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn cairn_reads_a_format_version_1_repository() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), random_bytes(7, 3 << 20)).unwrap();
    ok(env.restic(&["init", "--repository-version", "1"]));
    ok(env.restic(&["backup", src.to_str().unwrap()]));
    ok(env.cairn(&["check", "--read-data"]));
    // cairn adds to it without compression, and restic still reads it.
    std::fs::write(src.join("b"), random_bytes(8, 1 << 20)).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    ok(env.restic(&["check", "--read-data"]));
    let target = env.path("restored");
    ok(env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// Finds the tree id of `path` (absolute) in a snapshot, walking with `cairn cat`.
fn tree_id_of(env: &Env, snapshot: &str, path: &Path) -> String {
    let snap = json(&ok(env.cairn(&["cat", "snapshot", snapshot])));
    let mut tree = snap["tree"].as_str().unwrap().to_string();
    for comp in path.components().skip(1) {
        let t = json(&ok(env.cairn(&["cat", "tree", &tree])));
        let name = comp.as_os_str().to_str().unwrap();
        let node = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in tree {tree}"));
        tree = node["subtree"].as_str().unwrap().to_string();
    }
    tree
}

#[test]
fn both_tools_share_data_blobs_and_produce_the_same_tree_ids() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.restic(&["init"]));
    ok(env.restic(&["backup", "--host", "h", src.to_str().unwrap()]));
    let restic_snap = json(&ok(env.restic(&["snapshots", "--json"])))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // cairn backs up the same files into the same repository with no parent: every file
    // is read and chunked again, and every data blob already exists.
    let out = ok(env.cairn(&[
        "backup",
        "--json",
        "--force",
        "--host",
        "h",
        src.to_str().unwrap(),
    ]));
    let summary = json(&out);
    assert_eq!(
        summary["data_blobs"], 0,
        "cairn stored no new data blob: {out}"
    );
    assert_eq!(
        summary["files_unmodified"], 0,
        "--force read everything: {out}"
    );
    let cairn_snap = summary["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(
        tree_id_of(&env, &restic_snap, &src),
        tree_id_of(&env, &cairn_snap, &src),
        "the unchanged directory has the same tree id in both snapshots"
    );
    ok(env.restic(&["check", "--read-data"]));
}

#[test]
fn relative_targets_are_stored_like_restic_stores_them() {
    // `backup src` stores /src at the snapshot root (not the absolute path), `backup .`
    // stores the directory's entries there; both tools give the same root tree.
    let env = Env::new();
    let root = env.path("w");
    let src = env.path("w/src");
    make_source(&src);
    ok(env.restic(&["init"]));
    for args in [&["src"][..], &["./src/../src", "other/.."][..]] {
        if args.len() > 1 {
            std::fs::create_dir_all(env.path("w/other")).unwrap();
        }
        let mut restic_args = vec!["backup", "--json", "--host", "h"];
        restic_args.extend(args);
        let out = env
            .restic_cmd(&restic_args)
            .current_dir(&root)
            .output()
            .unwrap();
        let restic_snap = ok(out)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .unwrap()["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut cairn_args = vec!["backup", "--json", "--host", "h"];
        cairn_args.extend(args);
        let out = env
            .cairn_cmd(&env.repo(), &cairn_args)
            .current_dir(&root)
            .output()
            .unwrap();
        let cairn_snap = json(&ok(out))["snapshot_id"].as_str().unwrap().to_string();
        let tree = |snap: &str| json(&ok(env.cairn(&["cat", "snapshot", snap])))["tree"].clone();
        assert_eq!(
            tree(&restic_snap),
            tree(&cairn_snap),
            "root trees for {args:?}"
        );
        let paths = |snap: &str| json(&ok(env.cairn(&["cat", "snapshot", snap])))["paths"].clone();
        assert_eq!(
            paths(&restic_snap),
            paths(&cairn_snap),
            "paths for {args:?}"
        );
    }
    let t = env.path("t");
    ok(env.cairn(&["restore", "latest", "--target", t.to_str().unwrap()]));
    assert_same_tree(&src, &t.join("src"));
}

/// The sizes of the data pack files of `repo`.
fn data_pack_sizes(repo: &Path) -> Vec<u64> {
    files_under(&repo.join("data"))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect()
}

#[test]
fn pack_size_bounds_new_packs_and_restic_reads_them() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // 24 MiB that neither compresses nor deduplicates, in files below the chunker's
    // minimum (one blob each, whatever the repository's random polynomial): no blob is
    // larger than a pack, so every pack stays within the size.
    for i in 0..60u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i + 7, 400 << 10)).unwrap();
    }
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", "--pack-size", "4", src.to_str().unwrap()]));
    let sizes = data_pack_sizes(&env.repo());
    // A pack is finished before the next blob would take it past 4 MiB: 24 MiB make at
    // least 6 packs, none above 4 MiB but for its header.
    assert!(sizes.len() >= 6, "{sizes:?}");
    assert!(
        sizes.iter().all(|&s| s <= (4 << 20) + (64 << 10)),
        "{sizes:?}"
    );
    ok(env.restic(&["check", "--read-data"]));

    // The default (16 MiB) through restic's variable, for a second repository: fewer packs.
    let other = env.path("repo16");
    ok(env.cairn_repo(&other, &["init"]));
    let out = env
        .cairn_cmd(&other, &["backup", src.to_str().unwrap()])
        .env("RESTIC_PACK_SIZE", "16")
        .output()
        .unwrap();
    ok(out);
    let sixteen = data_pack_sizes(&other);
    assert!(sixteen.len() < sizes.len(), "{sixteen:?} vs {sizes:?}");

    for bad in ["2", "129"] {
        let out = env.cairn(&["backup", "--pack-size", bad, src.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("from 4 to 128"), "{err}");
    }
}
