//! forget: the same retention decisions as restic 0.14's, on the same snapshots.

use crate::*;
use std::collections::{BTreeMap, BTreeSet};

/// Creates `n` snapshots of one tree with irregular times over about two years, two
/// hosts, two path sets and a few tag combinations, written through the library.
fn many_snapshots(env: &Env, n: u64) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    ok(env.cairn(&["init"]));
    let first = json(&ok(env.cairn(&["backup", "--json", src.to_str().unwrap()])));
    let backend = std::sync::Arc::new(cairn_repo::backend::local::LocalBackend::new(env.repo()));
    let repo = cairn_repo::repository::Repository::open(backend, PASSWORD).unwrap();
    let id = cairn_repo::Id::parse(first["snapshot_id"].as_str().unwrap()).unwrap();
    let base = cairn_repo::snapshot::Snapshot::load(&repo, &id).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2023-01-01T00:30:00+01:00").unwrap();
    let mut t = start;
    let mut x = 12345u64;
    for i in 0..n {
        // xorshift: steps from 20 minutes to about 3 days
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t += chrono::TimeDelta::minutes(20 + (x % 4300) as i64);
        let mut s = base.clone();
        s.time = t;
        s.hostname = if i % 3 == 0 { "alpha" } else { "beta" }.into();
        s.paths = if i % 5 == 0 {
            vec!["/etc".into()]
        } else {
            vec!["/home".into(), "/srv".into()]
        };
        s.tags = match i % 4 {
            0 => vec![],
            1 => vec!["nightly".into()],
            2 => vec!["nightly".into(), "db".into()],
            _ => vec!["manual".into()],
        };
        s.save(&repo).unwrap();
    }
}

/// (host, paths, tags) -> kept ids and removed ids, from either tool's `forget --json`.
type Groups = BTreeMap<(String, Vec<String>, Vec<String>), (BTreeSet<String>, BTreeSet<String>)>;

fn groups(out: &str) -> Groups {
    let v: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Array(vec![]));
    let strs = |v: &serde_json::Value| -> Vec<String> {
        let mut s: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        s.sort();
        s
    };
    let ids = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                (
                    g["host"].as_str().unwrap_or("").to_string(),
                    strs(&g["paths"]),
                    strs(&g["tags"]),
                ),
                (ids(&g["keep"]), ids(&g["remove"])),
            )
        })
        .collect()
}

#[test]
fn retention_decisions_match_restic_for_many_policies() {
    let env = Env::new();
    many_snapshots(&env, 150);
    let policies: &[&[&str]] = &[
        &["--keep-last", "7"],
        &["--keep-daily", "10"],
        &["--keep-hourly", "30"],
        &["--keep-weekly", "8", "--keep-monthly", "6"],
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "3",
        ],
        &["--keep-yearly", "10"],
        &["--keep-last", "2", "--keep-tag", "manual"],
        &["--keep-tag", "nightly,db", "--keep-daily", "3"],
        &["--keep-within", "2m"],
        &["--keep-within", "1y2m3d4h"],
        &[
            "--keep-within-daily",
            "30d",
            "--keep-within-weekly",
            "6m",
            "--keep-within-monthly",
            "1y",
        ],
        &["--keep-within-hourly", "3d", "--keep-within-yearly", "5y"],
        &["--keep-daily", "5", "--group-by", "host"],
        &["--keep-weekly", "4", "--group-by", "tags"],
        &["--keep-monthly", "3", "--group-by", "host,paths,tags"],
        &["--keep-last", "10", "--group-by", ""],
        &["--keep-daily", "3", "--host", "alpha"],
        &["--keep-last", "1", "--tag", "nightly"],
    ];
    for p in policies {
        let mut args = vec!["forget", "--dry-run", "--json"];
        args.extend(*p);
        let theirs = groups(&ok(env.restic(&args)));
        let ours = groups(&ok(env.cairn(&args)));
        assert!(!theirs.is_empty(), "{p:?}");
        assert_eq!(ours, theirs, "policy {p:?}");
    }
}

#[test]
fn forget_removes_what_restic_would_and_refuses_to_remove_everything() {
    let env = Env::new();
    many_snapshots(&env, 40);
    let policy = ["--keep-daily", "5", "--keep-weekly", "2"];
    let mut dry = vec!["forget", "--dry-run", "--json"];
    dry.extend(policy);
    let expected: BTreeSet<String> = groups(&ok(env.restic(&dry)))
        .into_values()
        .flat_map(|(keep, _)| keep)
        .collect();
    let mut real = vec!["forget"];
    real.extend(policy);
    let out = ok(env.cairn(&real));
    assert!(out.contains("keep") && out.contains("remove"), "{out}");
    let left: BTreeSet<String> = json(&ok(env.restic(&["snapshots", "--json"])))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, expected);
    ok(env.restic(&["check"]));

    // A policy that keeps nothing of a group: refused without --force.
    let out = env.cairn(&["forget", "--keep-tag", "does-not-exist"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        json(&ok(env.restic(&["snapshots", "--json"])))
            .as_array()
            .unwrap()
            .len(),
        left.len()
    );
    // No policy and no ids: told what to give.
    let out = env.cairn(&["forget"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--keep-"), "{}", stderr(&out));
    // Unknown id: clear error, nothing removed.
    let out = env.cairn(&["forget", "deadbeef"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("deadbeef"), "{}", stderr(&out));
    // By id, then --prune in the same run.
    let one = left.iter().next().unwrap().clone();
    let out = ok(env.cairn(&["forget", &one[..8], "--prune"]));
    assert!(out.contains("removed 1 snapshots"), "{out}");
    ok(env.restic(&["check", "--read-data"]));
    // --force lets the everything-policy through.
    ok(env.cairn(&["forget", "--keep-tag", "does-not-exist", "--force"]));
    assert_eq!(
        json(&ok(env.restic(&["snapshots", "--json"])))
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
