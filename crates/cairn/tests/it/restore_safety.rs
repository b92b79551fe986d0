//! Restore safety (issue 11, point 1): nothing a target or a hostile snapshot holds can
//! steer a write outside the target; damaged data never leaves a file behind.
//!
//! Hostile snapshots are written through cairn-repo's API: tree blobs are raw JSON (names
//! in restic's Go-quoted form), so the test does not depend on how cairn builds nodes.

use crate::*;
use cairn_repo::backend::local::LocalBackend;
use cairn_repo::pack::BlobType;
use cairn_repo::repository::Repository;
use cairn_repo::snapshot::Snapshot;
use cairn_repo::writer::PackWriter;
use cairn_repo::Id;
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn open_repo(env: &Env) -> Repository {
    Repository::open(std::sync::Arc::new(LocalBackend::new(env.repo())), PASSWORD).unwrap()
}

/// Backs up `src` with cairn and returns the snapshot id.
fn backup(env: &Env, src: &Path) -> String {
    let out = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    out["snapshot_id"].as_str().unwrap().to_string()
}

/// Writes hostile snapshots: data blobs, raw JSON trees, and a snapshot per root.
struct Crafter<'e> {
    env: &'e Env,
    repo: Repository,
}

const TIME: &str = "2020-09-13T14:26:40.123456789+02:00";

fn file(name: &str, content: &[Id], size: u64) -> Value {
    json!({"name": name, "type": "file", "mode": 0o640, "mtime": TIME, "atime": TIME,
           "ctime": TIME, "uid": 0, "gid": 0, "size": size, "links": 1,
           "content": content.iter().map(|i| i.to_hex()).collect::<Vec<_>>()})
}

fn dir(name: &str, subtree: Id) -> Value {
    json!({"name": name, "type": "dir", "mode": 2147484141u32, "mtime": TIME, "atime": TIME,
           "ctime": TIME, "uid": 0, "gid": 0, "content": null, "subtree": subtree.to_hex()})
}

fn symlink(name: &str, target: &str) -> Value {
    json!({"name": name, "type": "symlink", "mode": 134218239u32, "mtime": TIME, "atime": TIME,
           "ctime": TIME, "uid": 0, "gid": 0, "links": 1, "linktarget": target, "content": null})
}

impl<'e> Crafter<'e> {
    fn new(env: &'e Env) -> Self {
        ok(env.cairn(&["init"]));
        Crafter {
            env,
            repo: open_repo(env),
        }
    }

    /// Saves trees and data in one pack writer and a snapshot of `build`'s root tree.
    fn snapshot(&self, build: impl FnOnce(&mut dyn FnMut(BlobType, &[u8]) -> Id) -> Id) {
        let index = self.repo.load_index().unwrap();
        let writer = PackWriter::new(&self.repo, &index);
        let mut save = |t: BlobType, bytes: &[u8]| writer.save(t, bytes).unwrap().0;
        let root = build(&mut save);
        writer.finish().unwrap();
        let mut snap: Snapshot = serde_json::from_value(json!({
            "time": TIME, "tree": root.to_hex(), "paths": ["/crafted"], "hostname": "h",
        }))
        .unwrap();
        snap.save(&self.repo).unwrap();
        let _ = self.env;
    }
}

fn tree(nodes: Vec<Value>) -> Vec<u8> {
    let mut b = serde_json::to_vec(&json!({ "nodes": nodes })).unwrap();
    b.push(b'\n');
    b
}

fn restore(env: &Env, target: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore", "latest", "--target", target.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.cairn(&args)
}

#[test]
fn overwrite_replaces_a_symlink_at_a_files_path_and_never_writes_through_it() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"from the snapshot").unwrap();
    ok(env.cairn(&["init"]));
    backup(&env, &src);
    let outside = env.path("outside");
    std::fs::write(&outside, b"must stay").unwrap();
    let target = env.path("target");
    let at = target.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&at).unwrap();
    std::os::unix::fs::symlink(&outside, at.join("f")).unwrap();

    ok(restore(&env, &target, &["--overwrite"]));
    assert_eq!(std::fs::read(&outside).unwrap(), b"must stay");
    let m = std::fs::symlink_metadata(at.join("f")).unwrap();
    assert!(
        m.file_type().is_file(),
        "the symlink was replaced by the file"
    );
    assert_eq!(std::fs::read(at.join("f")).unwrap(), b"from the snapshot");
}

#[test]
fn a_symlinked_directory_in_the_target_is_never_followed() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"data").unwrap();
    ok(env.cairn(&["init"]));
    backup(&env, &src);
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = env.path("target");
    let at = target.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&at).unwrap();
    std::os::unix::fs::symlink(&outside, at.join("d")).unwrap();

    // Without --overwrite: an error for that subtree, nothing written through the link.
    let out = restore(&env, &target, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    assert!(
        files_under(&outside).is_empty(),
        "{:?}",
        files_under(&outside)
    );
    assert!(std::fs::symlink_metadata(at.join("d"))
        .unwrap()
        .file_type()
        .is_symlink());

    // With --overwrite: the link is replaced by the directory.
    ok(restore(&env, &target, &["--overwrite"]));
    assert!(
        files_under(&outside).is_empty(),
        "{:?}",
        files_under(&outside)
    );
    assert!(std::fs::symlink_metadata(at.join("d")).unwrap().is_dir());
    assert_eq!(std::fs::read(at.join("d/f")).unwrap(), b"data");
}

#[test]
fn duplicate_and_invalid_names_in_a_tree_are_skipped_and_reported() {
    let env = Env::new();
    let c = Crafter::new(&env);
    c.snapshot(|save| {
        let first = save(BlobType::Data, b"first");
        let second = save(BlobType::Data, b"second, longer");
        let inner = save(BlobType::Tree, &tree(vec![file("g", &[first], 5)]));
        save(
            BlobType::Tree,
            &tree(vec![
                file("x", &[first], 5),
                file("x", &[second], 14),
                dir("sub", inner),
                symlink("sub", "/"),
                file("..", &[second], 14),
                file("a/b", &[second], 14),
                // Go-quoted: the real names are "../escape" and "nul\0byte".
                file("..\\x2fescape", &[second], 14),
                file("nul\\x00byte", &[second], 14),
            ]),
        )
    });
    let base = env.path("base");
    let target = base.join("target");
    let out = restore(&env, &target, &["--json"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(target.join("x")).unwrap(), b"first");
    assert!(std::fs::symlink_metadata(target.join("sub"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(target.join("sub/g")).unwrap(), b"first");
    let mut names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["sub", "x"]);
    let mut around: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    around.sort();
    assert_eq!(around, ["target"], "nothing written beside the target");
    let summary = json(&String::from_utf8_lossy(&out.stdout));
    let errors = summary["errors"].as_array().unwrap();
    let text = serde_json::to_string(errors).unwrap();
    assert_eq!(
        errors
            .iter()
            .filter(|e| e["error"].as_str().unwrap().contains("more than once"))
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        errors
            .iter()
            .filter(|e| e["error"].as_str().unwrap().contains("invalid file name"))
            .count(),
        4,
        "{text}"
    );
}

#[test]
fn a_hard_link_group_whose_first_member_is_a_symlink_links_nothing_to_it() {
    let env = Env::new();
    let outside = env.path("outside");
    std::fs::write(&outside, b"outside").unwrap();
    let c = Crafter::new(&env);
    let target_str = outside.to_str().unwrap().to_string();
    c.snapshot(|save| {
        let data = save(BlobType::Data, b"regular data");
        let group = |mut v: Value| {
            v["inode"] = 77.into();
            v["device_id"] = 5.into();
            v["links"] = 3.into();
            v
        };
        save(
            BlobType::Tree,
            &tree(vec![
                group(symlink("a-link", &target_str)),
                group(file("b-file", &[data], 12)),
                group(file("c-file", &[data], 12)),
            ]),
        )
    });
    let target = env.path("target");
    ok(restore(&env, &target, &[]));
    let a = std::fs::symlink_metadata(target.join("a-link")).unwrap();
    assert!(a.file_type().is_symlink());
    let b = std::fs::symlink_metadata(target.join("b-file")).unwrap();
    let c2 = std::fs::symlink_metadata(target.join("c-file")).unwrap();
    assert!(
        b.is_file() && c2.is_file(),
        "regular members stay regular files"
    );
    assert_eq!(
        std::fs::read(target.join("b-file")).unwrap(),
        b"regular data"
    );
    assert_eq!(
        b.ino(),
        c2.ino(),
        "regular members are linked to each other"
    );
    assert_ne!(b.ino(), a.ino());
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
}

#[test]
fn a_snapshot_nested_5000_directories_deep_restores_and_dumps() {
    const DEPTH: usize = 5000;
    let env = Env::new();
    let c = Crafter::new(&env);
    c.snapshot(|save| {
        let data = save(BlobType::Data, b"at the bottom");
        let mut t = save(BlobType::Tree, &tree(vec![file("bottom", &[data], 13)]));
        for _ in 0..DEPTH {
            t = save(BlobType::Tree, &tree(vec![dir("d", t)]));
        }
        t
    });
    let target = env.path("target");
    let out = restore(&env, &target, &["--json"]);
    let summary = json(&ok(out));
    assert_eq!(summary["dirs_restored"], DEPTH as u64);
    assert_eq!(summary["files_restored"], 1);
    // Deeper than PATH_MAX: find walks it with directory descriptors.
    let found = std::process::Command::new("find")
        .arg(&target)
        .args(["-type", "f"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&found.stdout);
    assert!(found.trim_end().ends_with("/d/bottom"), "{found:.200}");
    assert_eq!(found.lines().count(), 1);

    let dump = env.cairn(&["dump", "latest", "/"]);
    assert!(dump.status.success(), "{}", stderr(&dump));
    assert!(dump.stdout.len() > DEPTH * 512);
}

#[test]
fn a_file_whose_pack_is_missing_is_removed_and_reported() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("kept"), random_bytes(1, 100_000)).unwrap();
    ok(env.cairn(&["init"]));
    backup(&env, &src);
    std::fs::write(src.join("lost"), random_bytes(2, 300_000)).unwrap();
    let id = backup(&env, &src);

    // Remove the pack holding `lost`'s data.
    let repo = open_repo(&env);
    let index = repo.load_index().unwrap();
    let snap = Snapshot::load(&repo, &Id::parse(&id).unwrap()).unwrap();
    let trees = cairn_repo::browse::Trees::new(&repo, &index);
    let path = format!("{}/lost", src.display());
    let node = match cairn_repo::browse::lookup(&trees, snap.tree, &path).unwrap() {
        cairn_repo::browse::Located::Node(n) => n,
        _ => panic!("no node for {path}"),
    };
    let blob = node.content.as_ref().unwrap()[0];
    let pack = index.get(BlobType::Data, &blob).unwrap().pack.to_hex();
    std::fs::remove_file(env.repo().join("data").join(&pack[..2]).join(&pack)).unwrap();

    let target = env.path("target");
    let out = restore(&env, &target, &[]);
    assert!(!out.status.success());
    let at = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(at.join("kept")).unwrap(),
        random_bytes(1, 100_000)
    );
    assert!(
        std::fs::symlink_metadata(at.join("lost")).is_err(),
        "no zero-filled file is left"
    );
    assert!(stderr(&out).contains("lost"), "{}", stderr(&out));
}

#[test]
fn the_restore_target_is_created_0700() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    backup(&env, &src);
    let target = env.path("new/target");
    ok(restore(&env, &target, &[]));
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}

#[test]
fn dump_tar_of_a_hostile_tree_leaves_out_bad_names_and_duplicates() {
    let env = Env::new();
    let c = Crafter::new(&env);
    c.snapshot(|save| {
        let first = save(BlobType::Data, b"first");
        let second = save(BlobType::Data, b"second");
        let inner = save(BlobType::Tree, &tree(vec![file("g", &[first], 5)]));
        save(
            BlobType::Tree,
            &tree(vec![
                file("ok", &[first], 5),
                file("ok", &[second], 6),
                file("a/b", &[second], 6),
                file("..", &[second], 6),
                file("..\\x2f..\\x2fescape", &[second], 6),
                dir("sub", inner),
                dir("sub", inner),
            ]),
        )
    });
    let out = env.cairn(&["dump", "latest", "/"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("more than once"), "{}", stderr(&out));
    let tar_file = env.path("out.tar");
    std::fs::write(&tar_file, &out.stdout).unwrap();
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_file)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(names, ["ok", "sub/", "sub/g"]);
    let extract = env.path("x");
    std::fs::create_dir_all(&extract).unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&extract)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", stderr(&x));
    assert_eq!(std::fs::read(extract.join("ok")).unwrap(), b"first");
}

/// Snapshot ids of the repository at `repo`, oldest first.
fn snapshot_ids(env: &Env, repo: &Path) -> Vec<String> {
    json(&ok(env.cairn_repo(repo, &["snapshots", "--json"])))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// restic's `check` of the repository at `repo` (same password as the env's).
fn restic_check(env: &Env, repo: &Path) -> std::process::Output {
    std::process::Command::new(restic_bin())
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(env.path("pw"))
        .args(["--no-cache", "check", "--read-data"])
        .output()
        .unwrap()
}

/// Every command that walks a snapshot's trees (ls, find, diff, stats, check, copy,
/// rewrite, repair) handles one nested `depth` directories deep without a stack overflow;
/// past `cairn_repo::depth::MAX_TREE_DEPTH` the rebuilders (copy, repair) end with a
/// clean error, and the quadratic ones (ls, find print or match every full path; rewrite
/// hashes them) are left out.
/// Two crafted snapshots share the chain of "d" directories' shape; the second's file at
/// the bottom names a data blob the repository lacks, so the whole chain differs, check
/// reports it, and repair has to rebuild every level.
fn walk_everything_nested(depth: usize, listings: bool) {
    let past_cap = depth > cairn_repo::depth::MAX_TREE_DEPTH;
    let env = Env::new();
    let c = Crafter::new(&env);
    let chain = |save: &mut dyn FnMut(BlobType, &[u8]) -> Id, bottom: Value| {
        let other = save(BlobType::Data, b"x");
        let mut t = save(
            BlobType::Tree,
            &tree(vec![bottom, file("other", &[other], 1)]),
        );
        for _ in 0..depth {
            t = save(BlobType::Tree, &tree(vec![dir("d", t)]));
        }
        t
    };
    c.snapshot(|save| {
        let data = save(BlobType::Data, b"at the bottom");
        chain(save, file("bottom", &[data], 13))
    });
    let intact = snapshot_ids(&env, &env.repo()).remove(0);
    c.snapshot(|save| {
        let missing = Id::hash(b"a blob this repository does not have");
        chain(save, file("bottom", &[missing], 13))
    });
    let damaged = snapshot_ids(&env, &env.repo())
        .into_iter()
        .find(|id| *id != intact)
        .unwrap();
    let bottom = format!("{}/bottom", "/d".repeat(depth));
    let run = |args: &[&str]| {
        let out = env.cairn(args);
        assert!(
            out.status.code().is_some(),
            "cairn {args:?} was killed by a signal (stack overflow?): {:.500}",
            stderr(&out)
        );
        out
    };

    if listings {
        let ls = ok(run(&["ls", "--recursive", &intact]));
        assert!(ls.lines().any(|l| l == bottom), "ls: {:.300}", ls);
        assert_eq!(ls.lines().filter(|l| l.starts_with('/')).count(), depth + 2);
    }
    if !past_cap {
        let found = json(&ok(run(&["find", "--json", "bottom"])));
        let hits: Vec<u64> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["hits"].as_u64().unwrap())
            .collect();
        assert_eq!(hits, [1, 1], "find: {found:.300}");
    }
    let diff = json(&ok(run(&["diff", "--json", &intact, &damaged])));
    assert_eq!(diff["changed_files"], 1, "{diff:.300}");
    for mode in ["restore-size", "raw-data"] {
        let st = json(&ok(run(&["stats", "--json", "--mode", mode, &intact])));
        assert!(st["total_size"].as_u64().unwrap() > 0, "{st}");
    }
    let check = run(&["check"]);
    assert!(!check.status.success(), "the missing blob is reported");

    // copy writes every level anew in another repository; restic reads it back.
    let dst = env.path("dst");
    ok(env.cairn_repo(&dst, &["init"]));
    let (src, pw) = (env.repo(), env.path("pw"));
    let args = [
        "copy",
        intact.as_str(),
        "--from-repo",
        src.to_str().unwrap(),
        "--from-password-file",
        pw.to_str().unwrap(),
    ];
    if past_cap {
        for out in [env.cairn_repo(&dst, &args), run(&["repair", "snapshots"])] {
            assert!(!out.status.success());
            let err = stderr(&out);
            assert!(err.contains("deeper than 65536 levels"), "{err:.300}");
        }
        return;
    }
    ok(env.cairn_repo(&dst, &args));
    let checked = restic_check(&env, &dst);
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert_eq!(snapshot_ids(&env, &dst).len(), 1);

    // rewrite drops the file at the bottom, so every level is stored anew.
    let rewritten = json(&ok(run(&[
        "rewrite",
        "--json",
        "--exclude",
        &bottom,
        &intact,
    ])));
    assert_eq!(rewritten["rewritten"][0]["removed_files"], 1, "{rewritten}");
    // repair drops the missing content at the bottom, so every level is stored anew.
    let repaired = json(&ok(run(&["repair", "snapshots", "--json", "--forget"])));
    assert_eq!(
        repaired["repaired"].as_array().unwrap().len(),
        1,
        "{repaired}"
    );
    let checked = restic_check(&env, &env.repo());
    assert!(checked.status.success(), "{}", stderr(&checked));
    ok(run(&["check"]));
}

#[test]
fn every_tree_walk_handles_a_snapshot_nested_5000_20000_and_100000_directories_deep() {
    walk_everything_nested(5_000, true);
    // ls prints every path in full: quadratic output, so only at 5,000 levels.
    walk_everything_nested(20_000, false);
    // Past the rebuilders' cap, and past what the old recursive walks' 8 MiB stack held.
    walk_everything_nested(100_000, false);
}
