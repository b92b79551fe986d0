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
    assert_eq!(second["tree_blobs"], 0, "same trees: nothing new stored");
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
    ]));
    let target = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let r = target.join(src.strip_prefix("/").unwrap());
    assert!(r.join("keep/a.txt").exists());
    assert!(!r.join("keep/b.LOG").exists());
    assert!(!r.join("keep/c.db-wal").exists());
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
