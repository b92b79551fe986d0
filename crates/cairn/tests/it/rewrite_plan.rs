//! `cairn rewrite --plan NAME`: the plan's current excludes applied to its whole history
//! (a report, then with --apply: rewrite, forget the originals, prune). The real restic
//! checks and reads the result; restic-written snapshots of the plan are rewritten too.

use crate::*;
use std::collections::BTreeSet;

fn restic_at(env: &Env, repo: &Path, args: &[&str]) -> String {
    ok(env.restic_repo(repo, args))
}

/// Snapshot id -> tags, as restic lists them.
fn snapshots(env: &Env, repo: &Path) -> Vec<serde_json::Value> {
    json(&restic_at(env, repo, &["snapshots", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn ids_with_tag(snaps: &[serde_json::Value], tag: &str) -> BTreeSet<String> {
    snaps
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == tag))
        })
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every path restic lists in snapshot `id`.
fn restic_paths(env: &Env, repo: &Path, id: &str) -> BTreeSet<String> {
    restic_at(env, repo, &["ls", "--json", id])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["struct_type"] == "node")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect()
}

fn stored_bytes(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// The config: repository `main`, plan `docs` backing up source `home` (`src`, with
/// `home_extra` lines in the source) and plan `other` backing up `other`.
fn config(env: &Env, home_extra: &str) -> PathBuf {
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [sources.home]\npaths = [\"{src}\"]\n{home_extra}\n\
             [plans.docs]\nrepository = \"main\"\nsources = [\"home\"]\n\
             [plans.other]\nrepository = \"main\"\npaths = [\"{other}\"]\n",
            state = env.path("state").display(),
            repo = env.path("store/main").display(),
            pw = env.path("pw").display(),
            src = env.path("src").display(),
            other = env.path("other").display(),
        ),
    );
    cfg
}

#[test]
fn rewrite_plan_reports_then_removes_the_new_excludes_from_the_plans_whole_history() {
    let env = Env::new();
    let repo = env.path("store/main");
    let src = env.path("src");
    let other = env.path("other");
    for d in [
        src.join("keep"),
        src.join(".cache/sub"),
        other.join(".cache"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("keep/big.bin"), random_bytes(1, 300_000)).unwrap();
    std::fs::write(other.join(".cache/o.bin"), random_bytes(2, 200_000)).unwrap();
    let cfg = config(&env, "");
    ok(env.config_run(&cfg, &["-r", "main", "init"]));
    ok(env.config_run(&cfg, &["run", "other"]));
    // Three runs of docs, each with a changed file and a new cache file.
    let mut kept = Vec::new();
    let mut cache_bytes = Vec::new();
    for run in 0..3u64 {
        let a = format!("version {run} of a\n").repeat(100 + run as usize);
        std::fs::write(src.join("keep/a.txt"), &a).unwrap();
        std::fs::write(
            src.join(format!(".cache/blob-{run}")),
            random_bytes(10 + run, 1_000_000),
        )
        .unwrap();
        std::fs::write(src.join(".cache/sub/index"), format!("{run}\n")).unwrap();
        kept.push(a);
        cache_bytes.push((run + 1) * 1_000_000 + 2);
        ok(env.config_run(&cfg, &["run", "docs"]));
    }
    let before = snapshots(&env, &repo);
    let docs_before = ids_with_tag(&before, "plan:docs");
    let other_before = ids_with_tag(&before, "plan:other");
    assert_eq!(
        (docs_before.len(), other_before.len()),
        (3, 1),
        "{before:?}"
    );

    // No excludes yet: nothing to do, said so, exit 0.
    let out = env.config_run(&cfg, &["rewrite", "--plan", "docs"]);
    assert!(ok(out).contains("no excludes"));

    // The config gains an exclude of the cache directory (in the source).
    let cfg = config(&env, "exclude = [\".cache\"]");
    let data_before = files_under(&repo.join("data"));
    let size_before = stored_bytes(&repo.join("data"));

    // The report: per snapshot the cache paths and their bytes; nothing written.
    let dry = json(&ok(
        env.config_run(&cfg, &["--json", "rewrite", "--plan", "docs"])
    ));
    assert_eq!(dry["applied"], false, "{dry}");
    let per = dry["snapshots"].as_array().unwrap();
    assert_eq!(per.len(), 3, "{dry}");
    let cache = format!("{}/.cache", src.display());
    for (i, s) in per.iter().enumerate() {
        assert!(docs_before.contains(s["id"].as_str().unwrap()), "{s}");
        assert!(s["new_id"].is_null(), "{s}");
        let paths = s["paths"].as_array().unwrap();
        assert_eq!(paths.len(), 1, "the cache directory, once: {s}");
        assert_eq!(paths[0]["path"], cache.as_str(), "{s}");
        assert_eq!(paths[0]["files"], i as u64 + 2, "{s}");
        assert_eq!(s["bytes"], cache_bytes[i], "{s}");
    }
    let t = &dry["totals"];
    assert_eq!(
        (t["changed"].as_u64(), t["unchanged"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(t["bytes"], cache_bytes.iter().sum::<u64>(), "{dry}");
    // Three distinct random megabytes only the cache holds (stored: a little more).
    let reclaimable = t["reclaimable"].as_u64().unwrap();
    assert!(
        (3_000_000..3_200_000).contains(&reclaimable),
        "reclaimable {reclaimable}: {dry}"
    );
    let text = ok(env.config_run(&cfg, &["rewrite", "--plan", "docs", "--dry-run"]));
    assert!(text.contains(&cache) && text.contains("dry run"), "{text}");
    // Another plan's snapshot, named, is refused with the way to adopt it.
    let other_id = other_before.iter().next().unwrap();
    let out = env.config_run(&cfg, &["rewrite", "--plan", "docs", other_id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cairn tag --add plan:docs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files_under(&repo.join("data")), data_before);
    assert_eq!(
        ids_with_tag(&snapshots(&env, &repo), "plan:docs"),
        docs_before
    );

    // Apply: rewritten, originals forgotten, pruned.
    let applied = json(&ok(
        env.config_run(&cfg, &["--json", "rewrite", "--plan", "docs", "--apply"])
    ));
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(applied["forgotten"], 3, "{applied}");
    assert!(
        applied["prune"]["freed_size"].as_u64().unwrap() > 2_500_000,
        "{applied}"
    );
    let after = snapshots(&env, &repo);
    let docs_after = ids_with_tag(&after, "plan:docs");
    assert_eq!(docs_after.len(), 3, "{after:?}");
    assert!(docs_after.is_disjoint(&docs_before), "originals forgotten");
    assert_eq!(
        ids_with_tag(&after, "plan:other"),
        other_before,
        "other plan untouched"
    );
    assert!(
        stored_bytes(&repo.join("data")) + 2_500_000 < size_before,
        "the repository is smaller"
    );
    restic_at(&env, &repo, &["check", "--read-data"]);
    // restic sees no cache path in docs' snapshots, and the other plan's cache is there.
    let mut docs_new: Vec<&serde_json::Value> = after
        .iter()
        .filter(|s| docs_after.contains(s["id"].as_str().unwrap()))
        .collect();
    docs_new.sort_by_key(|s| s["time"].as_str().unwrap().to_string());
    let new_by_time: Vec<String> = docs_new
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for (i, id) in new_by_time.iter().enumerate() {
        let paths = restic_paths(&env, &repo, id);
        assert!(!paths.iter().any(|p| p.contains("/.cache")), "{paths:?}");
        assert!(paths.contains(&format!("{}/keep/a.txt", src.display())));
        // Everything else restores byte for byte.
        let t = env.path(&format!("restored-{i}"));
        restic_at(
            &env,
            &repo,
            &["restore", id, "--target", t.to_str().unwrap()],
        );
        let back = t.join(src.strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read_to_string(back.join("keep/a.txt")).unwrap(),
            kept[i]
        );
        assert_eq!(
            std::fs::read(back.join("keep/big.bin")).unwrap(),
            random_bytes(1, 300_000)
        );
        assert!(!back.join(".cache").exists());
    }
    assert!(
        restic_paths(&env, &repo, other_id).contains(&format!("{}/.cache/o.bin", other.display()))
    );

    // A second apply finds nothing to do.
    let again = env.config_run(&cfg, &["rewrite", "--plan", "docs", "--apply"]);
    assert!(ok(again).contains("nothing to remove"));
    assert_eq!(
        ids_with_tag(&snapshots(&env, &repo), "plan:docs"),
        docs_after
    );
}

/// Snapshot ids (and the ids they were rewritten from) of the repository at `repo`.
fn ids_and_originals(env: &Env, repo: &Path) -> Vec<(String, Option<String>)> {
    json(&restic_at(env, repo, &["--no-lock", "snapshots", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["original"].as_str().map(String::from),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

#[test]
fn rewrite_plan_applies_every_kind_of_exclude_to_restic_snapshots_as_the_plans_backup_does_and_a_kill_loses_no_snapshot(
) {
    let env = Env::new();
    let repo = env.path("store/main");
    let src = env.path("src");
    for d in ["keep", "build", "fake", "marked"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("keep/small.txt"), b"small\n").unwrap();
    std::fs::write(src.join("keep/huge.bin"), random_bytes(3, 1_500_000)).unwrap();
    std::fs::write(
        src.join("build/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    std::fs::write(src.join("build/obj.o"), random_bytes(4, 400_000)).unwrap();
    // A tag file without the signature tags nothing.
    std::fs::write(src.join("fake/CACHEDIR.TAG"), b"not a cache\n").unwrap();
    std::fs::write(src.join("fake/data.txt"), b"kept\n").unwrap();
    std::fs::write(src.join("marked/.nobackup"), b"").unwrap();
    std::fs::write(src.join("marked/x.bin"), random_bytes(5, 300_000)).unwrap();
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [plans.docs]\nrepository = \"main\"\npaths = [\"{src}\"]\n\
             exclude-caches = true\nexclude-if-present = [\".nobackup\"]\n\
             exclude-larger-than = \"1M\"\n",
            state = env.path("state").display(),
            repo = repo.display(),
            pw = env.path("pw").display(),
            src = src.display(),
        ),
    );
    // restic wrote the plan's history (say, before cairn); cairn backs it up today.
    restic_at(&env, &repo, &["init"]);
    let none = ok(env.config_run(&cfg, &["rewrite", "--plan", "docs"]));
    assert!(
        none.contains("no snapshots") && none.contains("plan:docs"),
        "{none}"
    );
    restic_at(
        &env,
        &repo,
        &["backup", "--tag", "plan:docs", src.to_str().unwrap()],
    );
    let by_restic = snapshots(&env, &repo)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(env.config_run(&cfg, &["run", "docs"]));
    let by_cairn = ids_and_originals(&env, &repo)
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != by_restic)
        .unwrap();

    let dry = json(&ok(
        env.config_run(&cfg, &["--json", "rewrite", "--plan", "docs"])
    ));
    let per = dry["snapshots"].as_array().unwrap();
    assert_eq!(per.len(), 1, "only restic's snapshot changes: {dry}");
    assert_eq!(per[0]["id"], by_restic.as_str());
    let gone: Vec<&str> = per[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    let at = |p: &str| format!("{}/{p}", src.display());
    assert_eq!(
        gone,
        [at("build/obj.o"), at("keep/huge.bin"), at("marked/x.bin")],
        "{dry}"
    );
    assert_eq!(per[0]["bytes"], 2_200_000, "{dry}");
    assert_eq!(
        dry["totals"]["unchanged"], 1,
        "the plan's own backup is left as it is"
    );

    // Killed after any number of repository changes up to the originals' removal (prune's
    // own kill points are tested with prune): every snapshot is there, whole, as the
    // original or as its rewrite (never neither), and restic checks the repository.
    let template = env.path("template");
    copy_dir(&repo, &template);
    let apply = |kill_after: Option<u32>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("--config")
            .arg(&cfg)
            .args(["rewrite", "--plan", "docs", "--apply"])
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env("CAIRN_CACHE_DIR", env.path("cache"));
        if let Some(n) = kill_after {
            c.env("CAIRN_TEST_KILL_AFTER_MUTATIONS", n.to_string());
        }
        c.output().unwrap()
    };
    let mut rewrite_phase_done = false;
    for n in 0..20u32 {
        copy_dir(&template, &repo);
        let out = apply(Some(n));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "kill point {n}: {}",
            stderr(&out)
        );
        restic_at(&env, &repo, &["--no-lock", "check"]);
        let now = ids_and_originals(&env, &repo);
        for original in [&by_restic, &by_cairn] {
            assert!(
                now.iter()
                    .any(|(id, from)| id == original || from.as_ref() == Some(original)),
                "kill point {n}: snapshot {original} is gone: {now:?}"
            );
        }
        if !now.iter().any(|(id, _)| *id == by_restic) {
            rewrite_phase_done = true;
            break;
        }
    }
    assert!(rewrite_phase_done, "the original was never forgotten");
    copy_dir(&template, &repo);
    ok(apply(None));
    restic_at(&env, &repo, &["check", "--read-data"]);

    // The rewritten restic snapshot holds what the plan's backup takes today, exactly.
    let now = ids_and_originals(&env, &repo);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.iter().any(|(id, _)| *id == by_cairn),
        "cairn's untouched"
    );
    let (rewritten, _) = now
        .iter()
        .find(|(_, from)| from.as_deref() == Some(by_restic.as_str()))
        .unwrap();
    let paths = restic_paths(&env, &repo, rewritten);
    assert_eq!(paths, restic_paths(&env, &repo, &by_cairn));
    for kept in [
        "build/CACHEDIR.TAG",
        "fake/data.txt",
        "marked/.nobackup",
        "keep/small.txt",
    ] {
        assert!(paths.contains(&at(kept)), "{kept}: {paths:?}");
    }
    let t = env.path("restored");
    restic_at(
        &env,
        &repo,
        &["restore", rewritten, "--target", t.to_str().unwrap()],
    );
    let back = t.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("fake/data.txt")).unwrap(),
        b"kept\n"
    );
    assert!(!back.join("keep/huge.bin").exists());
}
