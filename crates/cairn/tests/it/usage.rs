//! Everyday use: change detection, excludes, stdin, restore selection and safety.

use crate::*;

#[test]
fn unchanged_files_are_not_read_again() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.cairn(&["init"]));
    let first = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    assert!(first["bytes_read"].as_u64().unwrap() > 10 << 20);
    let second = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    assert_eq!(second["bytes_read"], 0, "{second}");
    assert_eq!(second["files_new"], 0);
    assert_eq!(second["files_changed"], 0);
    assert_eq!(second["data_blobs"], 0);
    // Same trees: nothing new stored — except the trees of the source's ancestors, which
    // record the metadata of directories others write into: the root records /tmp's
    // (other tests create things there) and /tmp's records this test's directory, where
    // the repository's metadata cache (with the index snapshot) appears after the first run.
    assert!(
        second["tree_blobs"].as_u64().unwrap() <= 2,
        "same trees: {second}"
    );
    assert!(
        second["dirs_changed"].as_u64().unwrap() <= 2,
        "only the ancestors: {second}"
    );
    assert_eq!(second["parent"], first["snapshot_id"]);
    // Touching one file makes exactly that one be read again.
    std::fs::write(src.join("docs/deep/small-3.dat"), b"changed").unwrap();
    let third = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    assert_eq!(third["files_changed"], 1, "{third}");
    assert_eq!(third["bytes_read"], 7);
    ok(env.restic(&["check", "--read-data"]));
}

#[test]
fn excludes_follow_restic_patterns() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("logs")).unwrap();
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("logs/a.log"), b"x").unwrap();
    std::fs::write(src.join("keep/a.txt"), b"x").unwrap();
    std::fs::write(src.join("keep/b.LOG"), b"x").unwrap();
    std::fs::write(src.join("keep/c.db-wal"), b"x").unwrap();
    std::fs::write(src.join("cache/.nobackup"), b"").unwrap();
    std::fs::write(src.join("cache/big"), b"x").unwrap();
    std::fs::write(src.join("keep/huge.iso"), vec![7u8; 3000]).unwrap();
    std::fs::write(env.path("excludes"), "# comment\n\n*.db-wal\n").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "logs",
        "--iexclude",
        "*.log",
        "--exclude-file",
        env.path("excludes").to_str().unwrap(),
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "2K",
    ]));
    let target = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let r = target.join(src.strip_prefix("/").unwrap());
    assert!(r.join("keep/a.txt").exists());
    assert!(!r.join("keep/b.LOG").exists());
    assert!(!r.join("keep/c.db-wal").exists());
    assert!(
        !r.join("keep/huge.iso").exists(),
        "--exclude-larger-than 2K"
    );
    assert!(!r.join("logs").exists());
    assert!(
        r.join("cache/.nobackup").exists(),
        "the tag file stays, like restic"
    );
    assert!(!r.join("cache/big").exists());
}

#[test]
fn stdin_and_command_output_become_one_file() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let out = ok(env.cairn(&[
        "backup",
        "--stdin-from-command",
        "printf 'dump line\\n%.0s' $(seq 1 1000)",
        "--stdin-filename",
        "db.sql",
        "--tag",
        "db",
    ]));
    assert!(out.contains("saved"), "{out}");
    let target = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(target.join("db.sql")).unwrap(),
        "dump line\n".repeat(1000)
    );
    // A failing command saves no snapshot.
    let out = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "echo partial; exit 3",
        "--stdin-filename",
        "x.sql",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    let snaps = json(&ok(env.cairn(&["snapshots", "--json"])));
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    // Plain --stdin.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(env.repo())
        .arg("--password-file")
        .arg(env.path("pw"))
        .args(["backup", "--stdin", "--stdin-filename", "piped.txt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from a pipe\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn restore_never_overwrites_unless_asked_and_selects_paths() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/one"), b"one").unwrap();
    std::fs::write(src.join("a/b/two"), b"two").unwrap();
    std::fs::write(src.join("three"), b"three").unwrap();
    ok(env.cairn(&["init"]));
    let snap = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])))["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = env.path("t");
    let rel = src.strip_prefix("/").unwrap();
    // --include selects; the rest is not restored.
    ok(env.cairn(&[
        "restore",
        &snap[..8],
        "--target",
        t.to_str().unwrap(),
        "--include",
        "two",
    ]));
    assert_eq!(std::fs::read(t.join(rel).join("a/b/two")).unwrap(), b"two");
    assert!(!t.join(rel).join("three").exists());
    // An existing file is left alone without --overwrite, replaced with it.
    std::fs::write(t.join(rel).join("a/b/two"), b"local edit").unwrap();
    let out = env.cairn(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("--overwrite"));
    assert_eq!(
        std::fs::read(t.join(rel).join("a/b/two")).unwrap(),
        b"local edit"
    );
    assert_eq!(std::fs::read(t.join(rel).join("three")).unwrap(), b"three");
    ok(env.cairn(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--overwrite",
        "--verify",
    ]));
    assert_eq!(std::fs::read(t.join(rel).join("a/b/two")).unwrap(), b"two");
    // snapshot:subpath restores that directory's contents; --exclude leaves paths out.
    let t2 = env.path("t2");
    let spec = format!("latest:{}/a", src.display());
    ok(env.cairn(&[
        "restore",
        &spec,
        "--target",
        t2.to_str().unwrap(),
        "--exclude",
        "one",
    ]));
    assert_eq!(std::fs::read(t2.join("b/two")).unwrap(), b"two");
    assert!(!t2.join("one").exists());
}

#[test]
fn snapshots_table_groups_and_json() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&[
        "backup",
        "--host",
        "alpha",
        "--tag",
        "a",
        src.to_str().unwrap(),
    ]));
    ok(env.cairn(&[
        "backup",
        "--host",
        "beta",
        "--time",
        "2024-01-02 03:04:05",
        src.to_str().unwrap(),
    ]));
    let table = ok(env.cairn(&["snapshots"]));
    assert!(
        table.contains("alpha") && table.contains("beta") && table.contains("2 snapshots"),
        "{table}"
    );
    let grouped = json(&ok(env.cairn(&[
        "snapshots",
        "--json",
        "--group-by",
        "host",
    ])));
    assert_eq!(grouped.as_array().unwrap().len(), 2);
    let only_beta = json(&ok(env.cairn(&["snapshots", "--json", "--host", "beta"])));
    assert_eq!(only_beta.as_array().unwrap().len(), 1);
    assert!(only_beta[0]["time"]
        .as_str()
        .unwrap()
        .starts_with("2024-01-02T03:04:05"));
    // restic agrees on what is there.
    let r = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(r.as_array().unwrap().len(), 2);
}

#[test]
fn unreadable_files_are_skipped_with_a_warning_and_exit_3() {
    use std::os::unix::fs::PermissionsExt;
    // Root reads everything, so run cairn as `nobody` (setpriv, from util-linux).
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(env.path("pw"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("locked-dir")).unwrap();
    std::fs::write(src.join("readable"), b"ok").unwrap();
    std::fs::write(src.join("unreadable"), b"secret").unwrap();
    std::fs::set_permissions(
        src.join("unreadable"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("locked-dir"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_cairn"))
            .arg("-r")
            .arg(env.repo())
            .arg("--password-file")
            .arg(env.path("pw"))
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs cairn as nobody")
    };
    ok(as_nobody(&["init"]));
    let out = as_nobody(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unreadable") && err.contains("ermission denied"),
        "{err}"
    );
    assert!(err.contains("locked-dir"), "{err}");
    let target = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let r = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(r.join("readable")).unwrap(), b"ok");
    assert!(!r.join("unreadable").exists());
}

#[test]
fn environment_variables_and_password_command_work_like_restic() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let run = |vars: &[(&str, String)], args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args);
        for k in [
            "RESTIC_REPOSITORY",
            "RESTIC_PASSWORD",
            "RESTIC_PASSWORD_FILE",
            "RESTIC_PASSWORD_COMMAND",
        ] {
            c.env_remove(k);
        }
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let repo = env.repo().display().to_string();
    ok(run(
        &[
            ("RESTIC_REPOSITORY", repo.clone()),
            ("RESTIC_PASSWORD", PASSWORD.into()),
        ],
        &["init"],
    ));
    ok(run(
        &[
            ("RESTIC_REPOSITORY", repo.clone()),
            (
                "RESTIC_PASSWORD_COMMAND",
                format!("cat {}", env.path("pw").display()),
            ),
        ],
        &["backup", src.to_str().unwrap()],
    ));
    ok(run(
        &[
            ("CAIRN_REPOSITORY", repo.clone()),
            ("CAIRN_PASSWORD_FILE", env.path("pw").display().to_string()),
        ],
        &["snapshots"],
    ));
    // restic reads the same repository with the same variables.
    let out = std::process::Command::new(restic_bin())
        .args(["snapshots", "--json", "--no-cache"])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(json(&ok(out)).as_array().unwrap().len(), 1);
    // No password anywhere: a clear error, not a prompt (stdin is not a terminal).
    let out = run(&[("RESTIC_REPOSITORY", repo)], &["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no password"), "{}", stderr(&out));
}

#[test]
fn check_reads_subsets_and_cat_prints_objects() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let all = json(&ok(env.cairn(&["check", "--read-data", "--json"])));
    let packs = all["packs_read"].as_u64().unwrap();
    assert!(packs >= 2, "{all}");
    let mut sum = 0;
    for n in 1..=3 {
        let part = json(&ok(env.cairn(&[
            "check",
            "--json",
            "--read-data-subset",
            &format!("{n}/3"),
        ])));
        sum += part["packs_read"].as_u64().unwrap();
    }
    assert_eq!(sum, packs, "the three thirds cover every pack once");
    let pct = json(&ok(env.cairn(&[
        "check",
        "--json",
        "--read-data-subset",
        "50%",
    ])));
    assert_eq!(pct["packs_read"].as_u64().unwrap(), packs.div_ceil(2));
    let bad = env.cairn(&["check", "--read-data-subset", "4/3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("n/m"), "{}", stderr(&bad));
    let config = json(&ok(env.cairn(&["cat", "config"])));
    assert_eq!(config["version"], 2);
    let restic_config = json(&ok(env.restic(&["cat", "config"])));
    assert_eq!(
        config["chunker_polynomial"],
        restic_config["chunker_polynomial"]
    );
    let snap = json(&ok(env.cairn(&["snapshots", "--json"])))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = json(&ok(env.cairn(&["cat", "snapshot", &snap[..10]])));
    assert_eq!(s["paths"][0], src.to_str().unwrap());
    let index_file = std::fs::read_dir(env.repo().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let idx = json(&ok(env.cairn(&[
        "cat",
        "index",
        index_file.file_name().to_str().unwrap(),
    ])));
    assert!(!idx["packs"].as_array().unwrap().is_empty());
}

#[test]
fn one_file_system_skips_other_mounts_and_parent_is_honoured() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("mnt")).unwrap();
    std::fs::write(src.join("here"), b"x").unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(src.join("mnt"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "this test mounts a tmpfs and must run as root (CI does)"
    );
    std::fs::write(src.join("mnt/elsewhere"), b"y").unwrap();
    ok(env.cairn(&["init"]));
    let first = json(&ok(env.cairn(&[
        "backup",
        "--json",
        "-x",
        src.to_str().unwrap(),
    ])));
    let second = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    let _ = std::process::Command::new("umount")
        .arg(src.join("mnt"))
        .status();
    let t = env.path("t");
    ok(env.restic(&[
        "restore",
        first["snapshot_id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]));
    let r = t.join(src.strip_prefix("/").unwrap());
    assert!(r.join("here").exists());
    assert!(
        !r.join("mnt/elsewhere").exists(),
        "other file system left out"
    );
    assert!(
        r.join("mnt").is_dir(),
        "the mount point is kept, empty, like restic"
    );
    let t2 = env.path("t2");
    ok(env.restic(&[
        "restore",
        second["snapshot_id"].as_str().unwrap(),
        "--target",
        t2.to_str().unwrap(),
    ]));
    assert!(t2
        .join(src.strip_prefix("/").unwrap())
        .join("mnt/elsewhere")
        .exists());
    // --parent picks the comparison snapshot explicitly.
    let third = json(&ok(env.cairn(&[
        "backup",
        "--json",
        "--parent",
        first["snapshot_id"].as_str().unwrap(),
        src.to_str().unwrap(),
    ])));
    assert_eq!(third["parent"], first["snapshot_id"]);
}

#[test]
fn a_killed_backup_leaves_a_repository_restic_accepts() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..12u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(i + 300, 8 << 20)).unwrap();
    }
    ok(env.cairn(&["init"]));
    for delay_ms in [150u64, 400, 900] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("-r")
            .arg(env.repo())
            .arg("--password-file")
            .arg(env.path("pw"))
            .args(["backup", "--force", src.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // cairn ignores the dead process's lock; restic 0.14 wants `unlock` first, and its
        // unlock must recognise our lock as stale (same host, process gone).
        ok(env.cairn(&["check", "--read-data"]));
        ok(env.restic(&["unlock"]));
        ok(env.restic(&["check", "--read-data"]));
    }
    // The stale lock of the killed process does not block the next backup.
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    ok(env.restic(&["check", "--read-data"]));
}

/// `cairn ls latest | head -1`: the reader goes away; cairn stops quietly, no panic,
/// no lock left behind.
#[test]
fn a_closed_output_pipe_stops_quietly_without_leaving_a_lock() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("f{i}")), "x").unwrap();
    }
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -r {} --password-file {} ls latest | head -1",
            env!("CARGO_BIN_EXE_cairn"),
            env.repo().display(),
            env.path("pw").display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(files_under(&env.repo().join("locks")).is_empty());
}
