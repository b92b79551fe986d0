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
