//! key and repair commands, with restic on the same repository.

use crate::*;
use std::process::Command;

fn restic_pw(env: &Env, pw: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(restic_bin())
        .arg("-r")
        .arg(env.repo())
        .arg("--password-file")
        .arg(pw)
        .arg("--no-cache")
        .args(args)
        .output()
        .unwrap()
}

fn cairn_pw(env: &Env, pw: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("-r")
        .arg(env.repo())
        .arg("--password-file")
        .arg(pw)
        .args(args)
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn keys_added_by_either_tool_open_the_repository_in_both() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let (pw2, pw3, pw4) = (env.path("pw2"), env.path("pw3"), env.path("pw4"));
    std::fs::write(&pw2, "second password\n").unwrap();
    std::fs::write(&pw3, "third password\n").unwrap();
    std::fs::write(&pw4, "fourth password\n").unwrap();
    ok(env.cairn(&["key", "add", "--new-password-file", pw2.to_str().unwrap()]));
    ok(restic_pw(&env, &pw2, &["snapshots"]));
    ok(env.restic(&["key", "add", "--new-password-file", pw3.to_str().unwrap()]));
    ok(cairn_pw(&env, &pw3, &["snapshots"]));
    let keys = json(&ok(env.cairn(&["key", "list", "--json"])));
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    // The key in use cannot be removed; another can.
    let current = keys.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = env.cairn(&["key", "remove", &current]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("opened the repository with"),
        "{}",
        stderr(&out)
    );
    let restic_keys = json(&ok(restic_pw(&env, &pw3, &["key", "list", "--json"])));
    let restics = restic_keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(env.cairn(&["key", "remove", &restics]));
    assert_eq!(cairn_pw(&env, &pw3, &["snapshots"]).status.code(), Some(12));
    // passwd: the new password works in both tools, the old one no longer does.
    ok(env.cairn(&[
        "key",
        "passwd",
        "--new-password-file",
        pw4.to_str().unwrap(),
    ]));
    assert_eq!(env.cairn(&["snapshots"]).status.code(), Some(12));
    ok(restic_pw(&env, &pw4, &["check"]));
    ok(cairn_pw(&env, &pw4, &["snapshots"]));
    // Unknown key id: clear error.
    let out = cairn_pw(&env, &pw4, &["key", "remove", "0123abcd"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("0123abcd"), "{}", stderr(&out));
}

#[test]
fn repair_index_rebuilds_a_lost_or_damaged_index() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    std::fs::write(src.join("more"), random_bytes(5, 100_000)).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let indexes = files_under(&env.repo().join("index"));
    assert!(indexes.len() >= 2);
    // One index file deleted, another truncated.
    std::fs::remove_file(&indexes[0]).unwrap();
    let f = &indexes[1];
    let mut perm = std::fs::metadata(f).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(f, perm).unwrap();
    let len = std::fs::metadata(f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert!(
        !env.restic(&["check"]).status.success(),
        "the damage is real"
    );
    let r = json(&ok(env.cairn(&["repair", "index", "--json"])));
    assert!(r["packs_read"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["index_files_damaged"].as_array().unwrap().len(), 1, "{r}");
    ok(env.restic(&["check", "--read-data"]));
    let t = env.path("t");
    ok(env.restic(&["restore", "latest", "--target", t.to_str().unwrap()]));
    assert_same_tree(&src, &t.join(src.strip_prefix("/").unwrap()));
    // --read-all-packs on a healthy repository changes nothing that matters.
    ok(env.cairn(&["repair", "index", "--read-all-packs"]));
    ok(env.cairn(&["check", "--read-data"]));
}

#[test]
fn repair_snapshots_saves_everything_that_is_left() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("keep/a"), random_bytes(1, 2_000_000)).unwrap();
    std::fs::write(src.join("keep/b"), b"small").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    let before = files_under(&env.repo().join("data"));
    std::fs::write(src.join("lost"), random_bytes(2, 3_000_000)).unwrap();
    ok(env.cairn(&["backup", src.to_str().unwrap()]));
    // The largest new pack holds `lost`'s data: delete it.
    let doomed = files_under(&env.repo().join("data"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    std::fs::remove_file(&doomed).unwrap();
    let r = json(&ok(env.cairn(&["repair", "index", "--json"])));
    assert_eq!(r["packs_missing"].as_array().unwrap().len(), 1, "{r}");
    let dry = json(&ok(env.cairn(&[
        "repair",
        "snapshots",
        "--dry-run",
        "--json",
    ])));
    assert_eq!(dry["repaired"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["intact"], 1, "{dry}");
    let out = ok(env.cairn(&["repair", "snapshots", "--forget"]));
    assert!(out.contains("removed missing content"), "{out}");
    ok(env.restic(&["check", "--read-data"]));
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let repaired = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&serde_json::json!("repaired")))
        })
        .expect("a repaired snapshot");
    let t = env.path("t");
    ok(env.restic(&[
        "restore",
        repaired["id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]));
    let r = t.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(r.join("keep/a")).unwrap(),
        std::fs::read(src.join("keep/a")).unwrap()
    );
    assert_eq!(std::fs::read(r.join("keep/b")).unwrap(), b"small");
    assert_eq!(
        std::fs::metadata(r.join("lost")).unwrap().len(),
        0,
        "what was lost is gone, the file stays"
    );
}
