//! Damaged and hostile repositories (issue 11): lengths checked before anything is
//! allocated, JSON files bounded before they are read, and restic 0.14's behaviour on
//! damaged repositories (the real restic is the oracle where it helps).

use super::{json, ok, random_bytes, stderr, Env, PASSWORD};
use cairn_repo::backend::local::LocalBackend;
use cairn_repo::backend::FileType;
use cairn_repo::index::IndexFile;
use cairn_repo::pack::BlobType;
use cairn_repo::repository::Repository;
use cairn_repo::Id;
use std::process::{Command, Output};
use std::sync::Arc;

/// Address space for commands that must not allocate by a damaged length: far below the
/// 4 GiB such a length claims, far above what the command needs.
const MEMORY_CAP: &str = "--as=1500000000";

fn open(env: &Env) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(env.repo())), PASSWORD).unwrap()
}

/// Rewrites every index file through `edit` (new files, old ones removed).
fn edit_index(env: &Env, mut edit: impl FnMut(&mut IndexFile)) {
    let repo = open(env);
    for id in repo.list_ids(FileType::Index).unwrap() {
        let mut f: IndexFile = repo.load_json(FileType::Index, &id).unwrap();
        edit(&mut f);
        let new = repo.save_json(FileType::Index, &f).unwrap();
        if new != id {
            repo.backend()
                .remove(FileType::Index, &id.to_hex())
                .unwrap();
        }
    }
}

/// Runs cairn under an address-space cap (restic's allocation by a claimed length aborts).
fn cairn_capped(env: &Env, args: &[&str]) -> Output {
    let inner = env.cairn_cmd(&env.repo(), args);
    let mut c = Command::new("prlimit");
    c.arg(MEMORY_CAP).arg("--").arg(inner.get_program());
    c.args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    // Few malloc arenas, so many threads do not reserve address space the cap would count.
    c.env("MALLOC_ARENA_MAX", "2");
    c.output().expect("run cairn under prlimit")
}

/// Asserts a clean failure: an exit status (not a signal, not an abort) that is not
/// success, and a message saying the repository is damaged.
#[track_caller]
fn fails_cleanly(what: &str, out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal ({}); stderr: {err}",
        out.status
    );
    assert!(!out.status.success(), "{what}: succeeded; stderr: {err}");
    assert!(
        err.contains(needle),
        "{what}: stderr does not mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("memory allocation"),
        "{what}: ran out of memory: {err}"
    );
}

/// A repository with one snapshot of one small file; returns (file content id, root tree).
fn small_backup(env: &Env) -> (Id, Id) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let content = random_bytes(7, 1000);
    std::fs::write(src.join("file.bin"), &content).unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let repo = open(env);
    let snap = cairn_repo::snapshot::Snapshot::find(&repo, "latest", &Default::default()).unwrap();
    (Id::hash(&content), snap.tree)
}

#[test]
fn index_entries_claiming_4_gib_are_reported_as_corruption_before_any_allocation() {
    let env = Env::new();
    let (data, _) = small_backup(&env);
    let src = env.path("src");
    let file = format!("{}/file.bin", src.display());
    // The data blob: 4 GiB inside a pack of a few hundred bytes.
    edit_index(&env, |f| {
        for p in &mut f.packs {
            for b in &mut p.blobs {
                if b.id == data {
                    b.length = u32::MAX;
                }
            }
        }
    });
    for (what, args) in [
        ("dump", vec!["dump", "latest", file.as_str()]),
        ("check", vec!["check"]),
        ("cat blob", vec!["cat", "blob", &data.to_hex()]),
    ] {
        fails_cleanly(what, &cairn_capped(&env, &args), "damaged");
    }
    // restore names the blob it cannot restore the file without.
    let target = env.path("target");
    let args = ["restore", "latest", "--target", target.to_str().unwrap()];
    fails_cleanly("restore", &cairn_capped(&env, &args), &data.to_hex());
}

#[test]
fn a_tree_entry_past_its_pack_end_fails_ls_find_and_check_cleanly() {
    let env = Env::new();
    let (_, tree) = small_backup(&env);
    edit_index(&env, |f| {
        for p in &mut f.packs {
            for b in &mut p.blobs {
                if b.id == tree && b.blob_type == BlobType::Tree {
                    b.length = u32::MAX - 64;
                }
            }
        }
    });
    for (what, args) in [
        ("ls", vec!["ls", "latest"]),
        ("find", vec!["find", "file.bin"]),
        ("check", vec!["check", "--read-data"]),
        (
            "restore",
            vec!["restore", "latest", "--target", "/tmp/never"],
        ),
    ] {
        fails_cleanly(what, &cairn_capped(&env, &args), "damaged");
    }
}

#[test]
fn a_compressed_length_claim_of_4_gib_is_refused_before_decompressing() {
    let env = Env::new();
    let (data, _) = small_backup(&env);
    let file = format!("{}/file.bin", env.path("src").display());
    edit_index(&env, |f| {
        for p in &mut f.packs {
            for b in &mut p.blobs {
                if b.id == data {
                    b.uncompressed_length = u32::MAX;
                }
            }
        }
    });
    for (what, args) in [
        ("dump", vec!["dump", "latest", file.as_str()]),
        ("cat blob", vec!["cat", "blob", &data.to_hex()]),
        ("check", vec!["check"]),
    ] {
        fails_cleanly(what, &cairn_capped(&env, &args), "damaged");
    }
}

#[test]
fn a_10_gib_snapshot_file_is_reported_without_being_read() {
    let env = Env::new();
    small_backup(&env);
    let name = Id::hash(b"not a snapshot").to_hex();
    let f = std::fs::File::create(env.repo().join("snapshots").join(&name)).unwrap();
    f.set_len(10 << 30).unwrap(); // sparse: no disk used
    let out = cairn_capped(&env, &["snapshots"]);
    fails_cleanly("snapshots", &out, "damaged");
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
}

#[test]
fn stats_raw_data_and_blobs_per_file_fail_like_restic_when_a_used_blob_is_not_indexed() {
    let env = Env::new();
    let (data, _) = small_backup(&env);
    ok(env.cairn(&["stats", "--mode", "raw-data"]));
    edit_index(&env, |f| {
        for p in &mut f.packs {
            p.blobs.retain(|b| b.id != data);
        }
    });
    for mode in ["raw-data", "blobs-per-file"] {
        let theirs = env.restic(&["stats", "--mode", mode]);
        assert!(!theirs.status.success(), "{mode}: restic succeeded");
        let ours = env.cairn(&["stats", "--mode", mode]);
        assert!(!ours.status.success(), "{mode}: cairn succeeded");
        assert!(stderr(&ours).contains(&data.to_hex()), "{}", stderr(&ours));
    }
}

/// The pack file that holds `blob` (as indexed).
fn pack_of(env: &Env, blob: &Id) -> std::path::PathBuf {
    let repo = open(env);
    let index = repo.load_index().unwrap();
    let pack = index.get(BlobType::Data, blob).unwrap().pack.to_hex();
    env.repo().join("data").join(&pack[..2]).join(pack)
}

#[test]
fn prune_drops_missing_unused_packs_but_refuses_when_a_used_one_is_missing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let gone = random_bytes(11, 5000);
    std::fs::write(src.join("gone.bin"), &gone).unwrap();
    ok(env.cairn(&["init"]));
    let first = ok(env.cairn(&["backup", "--json", src.to_str().unwrap()]));
    std::fs::remove_file(src.join("gone.bin")).unwrap();
    let kept = random_bytes(12, 5000);
    std::fs::write(src.join("kept.bin"), &kept).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let first = json(&first);
    ok(env.cairn(&["forget", first["snapshot_id"].as_str().unwrap()]));

    // A pack only the forgotten snapshot used is gone: prune goes on, like restic.
    let unused_pack = pack_of(&env, &Id::hash(&gone));
    let used_pack = pack_of(&env, &Id::hash(&kept));
    assert_ne!(unused_pack, used_pack);
    std::fs::remove_file(&unused_pack).unwrap();
    let out = env.cairn(&["prune"]);
    assert!(out.status.success(), "prune refused: {}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    ok(env.restic(&["check", "--read-data"]));

    // A pack the remaining snapshot uses is gone: prune stops and deletes nothing.
    std::fs::remove_file(&used_pack).unwrap();
    let before = std::fs::read_dir(env.repo().join("index")).unwrap().count();
    let out = env.cairn(&["prune"]);
    assert!(!out.status.success(), "prune went on without a used pack");
    let pack = used_pack.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(pack), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(env.repo().join("index")).unwrap().count(),
        before
    );
}

#[test]
fn check_read_data_only_warns_about_an_unreferenced_garbage_pack_like_restic() {
    let env = Env::new();
    small_backup(&env);
    let name = Id::hash(b"garbage").to_hex();
    let dir = env.repo().join("data").join(&name[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&name), random_bytes(3, 4000)).unwrap();
    ok(env.restic(&["check", "--read-data"]));
    let out = env.cairn(&["check", "--read-data"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "check failed: {all}");
    assert!(
        all.contains(&name),
        "no warning about the garbage pack: {all}"
    );
}

#[test]
fn key_files_without_created_are_accepted_and_malformed_ones_are_named_not_wrong_password() {
    let env = Env::new();
    small_backup(&env);
    let keys = env.repo().join("keys");
    let original = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // rustic writes keys without `created` (and may leave username/hostname null).
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&original).unwrap()).unwrap();
    let obj = json.as_object_mut().unwrap();
    obj.remove("created");
    obj.insert("username".into(), serde_json::Value::Null);
    let bytes = serde_json::to_vec(&json).unwrap();
    std::fs::remove_file(&original).unwrap();
    std::fs::write(keys.join(Id::hash(&bytes).to_hex()), &bytes).unwrap();
    ok(env.restic(&["snapshots"]));
    ok(env.cairn(&["snapshots"]));
    ok(env.cairn(&["key", "list"]));

    // Only damaged key files: the message says they are damaged, not "wrong password".
    for entry in std::fs::read_dir(&keys).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for junk in [&b"{\"kdf\": \"scrypt\", "[..], b"not json at all"] {
        std::fs::write(keys.join(Id::hash(junk).to_hex()), junk).unwrap();
    }
    let out = env.cairn(&["snapshots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("malformed JSON"), "{err}");
    assert!(!err.contains("wrong password"), "{err}");
}

#[test]
fn ls_latest_on_a_repository_without_snapshots_exits_like_restic() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let theirs = env.restic(&["ls", "latest"]);
    let ours = env.cairn(&["ls", "latest"]);
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "restic: {}\ncairn: {}",
        stderr(&theirs),
        stderr(&ours)
    );
    assert_eq!(stderr(&ours), stderr(&theirs));
    assert!(ours.stdout.is_empty());
}

#[test]
fn check_read_data_reports_a_10_gib_pack_without_reading_it() {
    let env = Env::new();
    let (data, _) = small_backup(&env);
    // The indexed pack grows to 10 GiB (sparse: no disk used); its index entries still fit.
    let pack = pack_of(&env, &data);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    let out = cairn_capped(&env, &["check", "--read-data"]);
    fails_cleanly("check --read-data", &out, "damaged");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(stderr(&out).contains(name), "{}", stderr(&out));
}
