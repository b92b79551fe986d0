//! Prune, locks and crash safety, with the real restic on the same repository.

use crate::*;
use std::process::{Command, Stdio};

/// A repository with two snapshots of which the first is forgotten (by restic), leaving
/// packs that are partly used: 40 files in the first backup, 20 of them deleted before
/// the second. Returns the source directory (holding the second snapshot's files).
fn repository_with_garbage(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        std::fs::write(src.join(format!("f{i:02}")), random_bytes(i + 900, 200_000)).unwrap();
    }
    ok(env.cairn(&["init"]));
    let first = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    for i in (0..40).step_by(2) {
        std::fs::remove_file(src.join(format!("f{i:02}"))).unwrap();
    }
    std::fs::write(src.join("new"), random_bytes(7, 300_000)).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    ok(env.restic(&["forget", first["snapshot_id"].as_str().unwrap()]));
    src
}

fn restore_with_restic_and_compare(env: &Env, snapshot: &str, src: &std::path::Path, into: &str) {
    let t = env.path(into);
    ok(env.restic(&["restore", snapshot, "--target", t.to_str().unwrap()]));
    assert_same_tree(src, &t.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn prune_repacks_partly_used_packs_and_restic_agrees() {
    let env = Env::new();
    let src = repository_with_garbage(&env);
    let before = files_under(&env.repo().join("data")).len();
    let dry = json(&ok(env.cairn(&[
        "prune",
        "--dry-run",
        "--json",
        "--max-unused",
        "0",
    ])));
    assert!(dry["plan"]["packs_repack"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(
        files_under(&env.repo().join("data")).len(),
        before,
        "--dry-run changes nothing"
    );
    let out = json(&ok(env.cairn(&["prune", "--json", "--max-unused", "0"])));
    let r = &out["result"];
    assert!(r["freed_size"].as_u64().unwrap() >= 19 * 200_000, "{out}");
    assert_eq!(r["unused_after"], 0, "{out}");
    ok(env.restic(&["check", "--read-data"]));
    restore_with_restic_and_compare(&env, "latest", &src, "t");
    // Nothing left to do: a second prune changes nothing.
    let again = json(&ok(env.cairn(&["prune", "--json", "--max-unused", "0"])));
    assert_eq!(again["result"]["freed_size"], 0, "{again}");
    // restic agrees there is nothing to prune.
    let out = ok(env.restic(&["prune", "--dry-run", "--max-unused", "0"]));
    assert!(
        out.contains("to delete:           0 blobs") || out.contains("0 blobs / 0 B"),
        "{out}"
    );
}

#[test]
fn default_max_unused_tolerates_a_little_waste() {
    let env = Env::new();
    repository_with_garbage(&env);
    // Half of the first backup is garbage: far above 5%, so prune repacks.
    let out = json(&ok(env.cairn(&["prune", "--json"])));
    let r = &out["result"];
    let after = r["unused_after"].as_u64().unwrap() as f64;
    let used = r["used_size"].as_u64().unwrap() as f64;
    assert!(after / (after + used) <= 0.05, "{out}");
    ok(env.restic(&["check", "--read-data"]));
    // --max-unused unlimited deletes only whole packs.
    let env = Env::new();
    repository_with_garbage(&env);
    let out = json(&ok(env.cairn(&[
        "prune",
        "--json",
        "--max-unused",
        "unlimited",
    ])));
    assert_eq!(out["result"]["packs_repack"], 0, "{out}");
    ok(env.restic(&["check", "--read-data"]));
    // Bad values are refused clearly.
    let out = env.cairn(&["prune", "--max-unused", "150%"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("below 100"), "{}", stderr(&out));
}

#[test]
fn restic_prunes_what_cairn_wrote_and_cairn_reads_the_result() {
    let env = Env::new();
    let src = repository_with_garbage(&env);
    ok(env.restic(&["prune", "--max-unused", "0"]));
    ok(env.cairn(&["check", "--read-data"]));
    let t = env.path("t");
    ok(env.cairn(&["restore", "latest", "--target", t.to_str().unwrap()]));
    assert_same_tree(&src, &t.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn prune_killed_at_every_step_never_loses_a_referenced_blob() {
    let env = Env::new();
    let src = repository_with_garbage(&env);
    let template = env.path("template");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let _ = std::fs::remove_dir_all(to);
        let st = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    cp(&env.repo(), &template);
    let snapshots: Vec<String> = json(&ok(env.restic(&["snapshots", "--json"])))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let mut completed = false;
    for n in 0..60u32 {
        cp(&template, &env.repo());
        let out = env
            .cairn_cmd(&env.repo(), &["prune", "--max-unused", "0"])
            .env("CAIRN_TEST_KILL_AFTER_MUTATIONS", n.to_string())
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let killed = out.status.signal() == Some(9);
        assert!(
            killed || out.status.success(),
            "kill point {n}: {}",
            stderr(&out)
        );
        // The dead process's exclusive lock is stale; restic 0.14 needs it removed.
        ok(env.restic(&["unlock"]));
        ok(env.restic(&["check", "--read-data"]));
        for id in &snapshots {
            let t = env.path("t");
            let _ = std::fs::remove_dir_all(&t);
            ok(env.restic(&["restore", id, "--target", t.to_str().unwrap()]));
        }
        if !killed {
            completed = true;
            assert!(n >= 4, "a repacking prune makes several changes, got {n}");
            break;
        }
    }
    assert!(completed, "prune finished once given enough steps");
    restore_with_restic_and_compare(&env, "latest", &src, "final");
    // And cairn itself finishes an interrupted prune's work on the next run.
    cp(&template, &env.repo());
    let out = env
        .cairn_cmd(&env.repo(), &["prune", "--max-unused", "0"])
        .env("CAIRN_TEST_KILL_AFTER_MUTATIONS", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    ok(env.cairn(&["unlock"]));
    ok(env.cairn(&["prune", "--max-unused", "0"]));
    ok(env.restic(&["check", "--read-data"]));
    let out = json(&ok(env.cairn(&["prune", "--json", "--max-unused", "0"])));
    assert_eq!(out["result"]["freed_size"], 0, "{out}");
}

/// Starts `cmd` reading stdin from a pipe we keep open: the tool holds its lock until
/// the pipe closes.
fn hold_lock(mut cmd: Command) -> std::process::Child {
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Give it time to open the repository (scrypt) and write its lock.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    child
}

#[test]
fn cairn_and_restic_respect_each_others_locks_and_retry_lock_waits() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));

    // restic is backing up (a live process with a shared lock): cairn must not prune.
    let mut restic = hold_lock(env.restic_cmd(&["backup", "--stdin", "--stdin-filename", "x"]));
    let out = env.cairn(&["prune"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    // With --retry-lock, cairn waits for restic to finish, then prunes.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        use std::io::Write;
        // restic refuses an empty stdin backup; give it a byte, then end the stream.
        let mut stdin = restic.stdin.take().unwrap();
        stdin.write_all(b"z").unwrap();
        drop(stdin);
        restic.wait().unwrap()
    });
    ok(env.cairn(&["--retry-lock", "60s", "prune"]));
    assert!(releaser.join().unwrap().success());

    // cairn is backing up: restic refuses to prune.
    let mut cairn =
        hold_lock(env.cairn_cmd(&env.repo(), &["backup", "--stdin", "--stdin-filename", "y"]));
    let out = env.restic(&["prune"]);
    assert!(
        !out.status.success(),
        "restic prune must wait for cairn's backup"
    );
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    // A short --retry-lock gives up with exit 11 while the backup runs.
    let out = env.cairn(&["--retry-lock", "2s", "prune"]);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    drop(cairn.stdin.take());
    assert!(cairn.wait().unwrap().success());
    ok(env.restic(&["prune"]));
    ok(env.restic(&["check", "--read-data"]));
}

/// A source with a directory that should never have been backed up.
fn source_with_secret(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("secret/deeper")).unwrap();
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("secret/key.pem"), random_bytes(1, 300_000)).unwrap();
    std::fs::write(
        src.join("secret/deeper/dump.sql"),
        random_bytes(2, 2_000_000),
    )
    .unwrap();
    std::fs::write(src.join("keep/a"), random_bytes(3, 100_000)).unwrap();
    std::fs::write(src.join("keep/b.log"), random_bytes(4, 50_000)).unwrap();
    src
}

#[test]
fn rewrite_removes_paths_and_prune_reclaims_their_space() {
    let env = Env::new();
    let src = source_with_secret(&env);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", "--tag", "nightly", src.to_str().unwrap()]));
    std::fs::write(src.join("keep/c"), random_bytes(5, 10_000)).unwrap();
    ok(env.cairn(&["backup", "--tag", "nightly", src.to_str().unwrap()]));
    let secret = format!("{}/secret", src.display());
    let log = "*.log".to_string();
    let data_before = files_under(&env.repo().join("data"));

    // A dry run reports and changes nothing.
    let dry = json(&ok(env.cairn(&[
        "rewrite",
        "--dry-run",
        "--json",
        "--exclude",
        &secret,
        "--exclude",
        &log,
    ])));
    let r = dry["rewritten"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{dry}");
    assert_eq!(r[0]["removed_files"], 3, "{dry}");
    assert_eq!(r[0]["removed_bytes"], 2_350_000, "{dry}");
    assert_eq!(files_under(&env.repo().join("data")), data_before);
    assert_eq!(
        json(&ok(env.restic(&["snapshots", "--json"])))
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let out = json(&ok(env.cairn(&[
        "rewrite",
        "--json",
        "--forget",
        "--exclude",
        &secret,
        "--exclude",
        &log,
    ])));
    assert_eq!(out["forgotten"], 2, "{out}");
    let would_free = out["prune_would_free"].as_u64().unwrap();
    assert!(would_free >= 2_300_000, "{out}");
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2, "originals forgotten");
    for s in snaps {
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tags.contains(&"rewrite") && tags.contains(&"nightly"),
            "{s}"
        );
        assert!(s["original"].is_string(), "{s}");
    }
    ok(env.restic(&["check", "--read-data"]));
    let t = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", t.to_str().unwrap()]));
    let r = t.join(src.strip_prefix("/").unwrap());
    assert!(!r.join("secret").exists());
    assert!(!r.join("keep/b.log").exists());
    assert_eq!(
        std::fs::read(r.join("keep/a")).unwrap(),
        std::fs::read(src.join("keep/a")).unwrap()
    );
    assert_eq!(
        std::fs::read(r.join("keep/c")).unwrap(),
        std::fs::read(src.join("keep/c")).unwrap()
    );
    // prune frees what the report promised.
    let pruned = json(&ok(env.cairn(&["prune", "--json", "--max-unused", "0"])));
    assert_eq!(
        pruned["result"]["freed_size"].as_u64().unwrap(),
        would_free,
        "{pruned}"
    );
    ok(env.restic(&["check", "--read-data"]));
    // Rewriting again changes nothing.
    let again = json(&ok(env.cairn(&["rewrite", "--json", "--exclude", &secret])));
    assert_eq!(again["unchanged"], 2, "{again}");
    // Without patterns there is nothing to do: a clear error.
    let out = env.cairn(&["rewrite"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--exclude"), "{}", stderr(&out));
}

#[test]
fn rewrite_killed_at_every_step_keeps_every_snapshot_whole() {
    let env = Env::new();
    let src = source_with_secret(&env);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    std::fs::write(src.join("keep/c"), random_bytes(5, 10_000)).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let template = env.path("template");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let _ = std::fs::remove_dir_all(to);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    cp(&env.repo(), &template);
    let secret = format!("{}/secret", src.display());
    for forget in [false, true] {
        let mut finished = false;
        for n in 0..20u32 {
            cp(&template, &env.repo());
            let mut args = vec!["rewrite", "--exclude", secret.as_str()];
            if forget {
                args.push("--forget");
            }
            let out = env
                .cairn_cmd(&env.repo(), &args)
                .env("CAIRN_TEST_KILL_AFTER_MUTATIONS", n.to_string())
                .output()
                .unwrap();
            use std::os::unix::process::ExitStatusExt;
            let killed = out.status.signal() == Some(9);
            assert!(
                killed || out.status.success(),
                "kill point {n}: {}",
                stderr(&out)
            );
            ok(env.restic(&["unlock"]));
            ok(env.restic(&["check", "--read-data"]));
            // Every snapshot present restores completely.
            let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
            assert!(snaps.as_array().unwrap().len() >= 2, "kill point {n}");
            for s in snaps.as_array().unwrap() {
                let t = env.path("t");
                let _ = std::fs::remove_dir_all(&t);
                ok(env.restic(&[
                    "restore",
                    s["id"].as_str().unwrap(),
                    "--target",
                    t.to_str().unwrap(),
                ]));
                let r = t.join(src.strip_prefix("/").unwrap());
                assert!(r.join("keep/a").exists(), "kill point {n}");
            }
            if !killed {
                finished = true;
                assert!(n >= 3, "a rewrite writes packs, index and snapshots: {n}");
                break;
            }
        }
        assert!(finished);
    }
}

#[test]
fn copy_into_a_repository_restic_created_and_restic_restores_it() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", "--tag", "a", src.to_str().unwrap()]));
    std::fs::write(src.join("later"), random_bytes(11, 700_000)).unwrap();
    ok(env.cairn(&["backup", "--tag", "b", src.to_str().unwrap()]));
    let dst = env.path("dst");
    ok(env.restic_repo(&dst, &["init"]));
    let (repo, pw) = (env.repo(), env.path("pw"));
    let from = [
        "--from-repo",
        repo.to_str().unwrap(),
        "--from-password-file",
        pw.to_str().unwrap(),
    ];
    let mut args = vec!["copy", "--json"];
    args.extend(from);
    let report = json(&ok(env.cairn_repo(&dst, &args)));
    assert_eq!(report["copied"].as_array().unwrap().len(), 2, "{report}");
    ok(env.restic_repo(&dst, &["check", "--read-data"]));
    let t = env.path("t");
    ok(env.restic_repo(
        &dst,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_same_tree(&src, &t.join(src.strip_prefix("/").unwrap()));
    let snaps = json(&ok(env.restic_repo(&dst, &["snapshots", "--json"])));
    assert!(snaps
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["original"].is_string() && s["parent"].is_null()));
    // Only what the destination lacks is copied.
    let again = json(&ok(env.cairn_repo(&dst, &args)));
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["bytes_added"], 0, "{again}");
    // restic also sees them as present.
    let out = ok(env.restic_repo(
        &dst,
        &[
            "copy",
            "--from-repo",
            env.repo().to_str().unwrap(),
            "--from-password-file",
            env.path("pw").to_str().unwrap(),
        ],
    ));
    assert!(out.contains("already copied"), "{out}");
    let n = json(&ok(env.restic_repo(&dst, &["snapshots", "--json"])))
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 2, "restic copied nothing more: {out}");
}

#[test]
fn copy_rechunks_for_dedup_and_copy_chunker_params_keeps_blob_ids() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), random_bytes(21, 6 << 20)).unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let (repo, pw) = (env.repo(), env.path("pw"));
    let from = [
        "--from-repo",
        repo.to_str().unwrap(),
        "--from-password-file",
        pw.to_str().unwrap(),
    ];

    // A repository with its own polynomial: --rechunk makes the copy dedup with restic's
    // own backup of the same file there.
    let dst = env.path("dst");
    ok(env.restic_repo(&dst, &["init"]));
    let mut args = vec!["copy", "--json", "--rechunk"];
    args.extend(from);
    let report = json(&ok(env.cairn_repo(&dst, &args)));
    assert_eq!(report["rechunked"], true, "{report}");
    ok(env.restic_repo(&dst, &["check", "--read-data"]));
    let out = ok(env.restic_repo(
        &dst,
        &["backup", "--json", "--force", src.to_str().unwrap()],
    ));
    let summary = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    assert_eq!(
        summary["data_blobs"], 0,
        "restic found every chunk already there: {summary}"
    );

    // init --copy-chunker-params: same polynomial, so blobs keep their ids, no re-chunking.
    let same = env.path("same");
    let mut init = vec!["init", "--copy-chunker-params"];
    init.extend(from);
    ok(env.cairn_repo(&same, &init));
    let pol = |r: &std::path::Path| {
        json(&ok(env.cairn_repo(r, &["cat", "config"])))["chunker_polynomial"].clone()
    };
    assert_eq!(pol(&same), pol(&env.repo()));
    let mut args = vec!["copy", "--json", "--rechunk"];
    args.extend(from);
    let report = json(&ok(env.cairn_repo(&same, &args)));
    assert_eq!(
        report["rechunked"], false,
        "same polynomial: nothing to re-chunk"
    );
    let blobs = |r: &std::path::Path| {
        let mut v: Vec<String> = ok(env.restic_repo(r, &["list", "blobs"]))
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(blobs(&same), blobs(&env.repo()));
}

#[test]
fn copy_refuses_a_destination_of_an_older_format() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let dst = env.path("v1");
    ok(env.restic_repo(&dst, &["init", "--repository-version", "1"]));
    let out = env.cairn_repo(
        &dst,
        &[
            "copy",
            "--from-repo",
            env.repo().to_str().unwrap(),
            "--from-password-file",
            env.path("pw").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("upgrade"), "{}", stderr(&out));
    // A wrong source password is the wrong-password exit code.
    std::fs::write(env.path("bad"), "nope\n").unwrap();
    let out = env.cairn_repo(
        &dst,
        &[
            "copy",
            "--from-repo",
            env.repo().to_str().unwrap(),
            "--from-password-file",
            env.path("bad").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    ok(env.restic_repo(&dst, &["check"]));
}
