//! Bad input gives a clear message and a non-zero exit, never a panic; the repository
//! stays valid for restic.

use crate::*;

fn assert_no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_ne!(out.status.code(), Some(101), "panic exit: {err}");
}

#[test]
fn wrong_password_is_exit_12_with_a_hint() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    std::fs::write(env.path("pw"), "not the password\n").unwrap();
    let out = env.cairn(&["snapshots"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong password"), "{}", stderr(&out));
}

#[test]
fn missing_or_non_repository_path_is_exit_10() {
    let env = Env::new();
    let out = env.cairn(&["snapshots"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("no repository"), "{}", stderr(&out));
    std::fs::create_dir_all(env.repo()).unwrap();
    std::fs::write(env.repo().join("hello.txt"), "not a repo").unwrap();
    let out = env.cairn(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
}

#[test]
fn init_refuses_an_existing_repository() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let out = env.cairn(&["init"]);
    assert_no_panic(&out);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn flipped_byte_in_a_pack_is_named_by_check_and_restore_restores_the_rest() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Each big file fills its own pack (16 MiB packs), so one damaged pack breaks one file.
    for i in 0..3u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i + 50, 17 << 20)).unwrap();
    }
    std::fs::write(src.join("small"), b"small file\n").unwrap();
    ok(env.cairn(&["init", "--repository-version", "2"]));
    ok(env.cairn(&["--compression", "off", "backup", src.to_str().unwrap()]));
    // Damage the first data pack in the middle (blob data, not the header).
    let packs = files_under(&env.repo().join("data"));
    let victim = packs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
        .clone();
    let mut perms = std::fs::metadata(&victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[4096] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let pack_name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let out = env.cairn(&["check", "--read-data"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&pack_name),
        "check names the pack: {}",
        stderr(&out)
    );

    let target = env.path("restored");
    let out = env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let restored = target.join(src.strip_prefix("/").unwrap());
    let broken: Vec<String> = (0..3)
        .map(|i| format!("f{i}"))
        .filter(|f| stderr(&out).contains(&format!("{}/{f}", restored.display())))
        .collect();
    assert!(
        !broken.is_empty(),
        "the broken file is listed: {}",
        stderr(&out)
    );
    for i in 0..3u64 {
        let name = format!("f{i}");
        if !broken.contains(&name) {
            assert!(
                std::fs::read(restored.join(&name)).unwrap() == random_bytes(i + 50, 17 << 20),
                "{name} restored intact"
            );
        }
    }
    assert_eq!(
        std::fs::read(restored.join("small")).unwrap(),
        b"small file\n"
    );
}

#[test]
fn truncated_index_is_a_clear_error() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), b"abc").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let idx = files_under(&env.repo().join("index"))[0].clone();
    let bytes = std::fs::read(&idx).unwrap();
    std::fs::remove_file(&idx).unwrap();
    std::fs::write(&idx, &bytes[..bytes.len() / 2]).unwrap();
    let out = env.cairn(&["check"]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("index"), "{}", stderr(&out));
    // Without the cache the damaged file must be read: a clear error.
    let out = env.cairn(&[
        "--no-cache",
        "restore",
        "latest",
        "--target",
        env.path("t").to_str().unwrap(),
    ]);
    assert_no_panic(&out);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("index"), "{}", stderr(&out));
    // With it, the index snapshot the backup left in the cache (authenticated, covering
    // that file by id) still holds its entries, as restic's cache of index files does:
    // the data comes back, every blob verified against its id.
    let out = env.cairn(&[
        "restore",
        "latest",
        "--target",
        env.path("t2").to_str().unwrap(),
    ]);
    ok(out);
    let restored = files_under(&env.path("t2"));
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(std::fs::read(&restored[0]).unwrap(), b"abc");
}

#[test]
fn full_disk_during_backup_fails_cleanly_and_the_repository_stays_valid() {
    let env = Env::new();
    let mnt = env.path("small-disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "this test mounts a small tmpfs and must run as root (CI does)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let repo = mnt.join("repo");
    ok(env.cairn_repo(&repo, &["init"]));
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small"), b"fits\n").unwrap();
    ok(env.cairn_repo(&repo, &["backup", src.to_str().unwrap()]));
    std::fs::write(src.join("huge"), random_bytes(9, 40 << 20)).unwrap();
    let out = env.cairn_repo(&repo, &["backup", src.to_str().unwrap()]);
    assert_no_panic(&out);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("disk is full"), "{}", stderr(&out));
    let check = std::process::Command::new(restic_bin())
        .arg("-r")
        .arg(&repo)
        .arg("--password-file")
        .arg(env.path("pw"))
        .args(["--no-cache", "check", "--read-data"])
        .output()
        .unwrap();
    ok(check);
    let snaps = json(&ok(env.cairn_repo(&repo, &["snapshots", "--json"])));
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "the failed backup left no snapshot"
    );
}

#[test]
fn locks_are_seen_by_both_tools() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    let backend = std::sync::Arc::new(cairn_repo::backend::local::LocalBackend::new(env.repo()));
    let repo = cairn_repo::repository::Repository::open(backend, PASSWORD).unwrap();
    // An exclusive lock held by this (live) test process, as prune would hold it.
    let guard = cairn_repo::lock::lock(&repo, true).unwrap();
    let out = env.cairn(&["backup", src.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    let out = env.restic(&["backup", src.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "restic must refuse to back up under our exclusive lock"
    );
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    drop(guard);
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    // A shared lock (a backup in progress) stops restic's prune.
    let shared = cairn_repo::lock::lock(&repo, false).unwrap();
    let out = env.restic(&["prune"]);
    assert!(
        !out.status.success(),
        "restic prune must wait for our backup"
    );
    drop(shared);
    ok(env.restic(&["prune"]));
    let locks = files_under(&env.repo().join("locks"));
    assert!(locks.is_empty(), "no lock left behind: {locks:?}");
}
