//! The example configs under examples/ (one per field note): each passes `config check`,
//! and its local-repository variant runs end to end — backup, retention, prune, check,
//! restore test — with the real restic verifying every repository afterwards.
//!
//! The local variant is the example with what only exists on its author's machine
//! replaced: each repository becomes a local one with a password file, every path to back
//! up moves under a scratch root (filled with files the example keeps and files its
//! excludes must leave out), settings keep only a scratch state directory, PostgreSQL
//! dumps read a PostgreSQL started for the test; hooks, notifications and filesystem
//! snapshots (nix scripts, healthchecks.io, btrfs, zfs) are dropped, and a restore test's
//! command looks for its files under the scratch root. The rest — fragments, sources,
//! plans, excludes, retention, check policies, restore tests, tags — is the example as
//! written.
//!
//! The examples use cairn's built-in features where their field notes scripted around
//! them: no hook of theirs does what a snapshot, dump, check, restore test or notification
//! setting does, and each README says what its author gains.

use crate::*;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cairn.toml").exists())
        .collect();
    v.sort();
    v
}

fn cairn_cfg(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn every_example_passes_config_check() {
    let all = examples();
    assert!(all.len() >= 5, "one example per field note: {all:?}");
    for ex in all {
        let out = cairn_cfg(&ex.join("cairn.toml"), &["config", "check", "--offline"]);
        assert!(out.status.success(), "{}: {}", ex.display(), stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
        assert!(
            ex.join("README.md").exists(),
            "{} explains itself",
            ex.display()
        );
    }
}

/// Commands that do, in a hook, what a built-in feature does: filesystem snapshots,
/// database dumps, checks, restore tests, notifications.
const WORKAROUNDS: [(&str, &str); 12] = [
    ("btrfs subvolume", "snapshot = { kind = \"btrfs\" }"),
    ("zfs snapshot", "snapshot = { kind = \"zfs\" }"),
    ("lvcreate", "snapshot = { kind = \"lvm\" }"),
    ("pg_dump", "postgres = { ... }"),
    ("mysqldump", "mysql = { ... }"),
    ("mariadb-dump", "mysql = { ... }"),
    ("sqlite3", "sqlite = [...]"),
    ("check", "check policies"),
    ("restore", "restore-test"),
    ("hc-ping", "notify = { healthchecks = ... }"),
    ("ntfy", "notify = { ntfy = ... }"),
    ("curl", "notify = { webhook = ... }"),
];

/// Every hook command of a config file's sources and plans: (where, command).
fn hooks_of(t: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for section in ["sources", "plans"] {
        let Some(entries) = t.get(section).and_then(|e| e.as_table()) else {
            continue;
        };
        for (name, e) in entries {
            let Some(hooks) = e.get("hooks").and_then(|h| h.as_table()) else {
                continue;
            };
            for (kind, cmds) in hooks {
                for c in cmds.as_array().into_iter().flatten() {
                    if let Some(c) = c.as_str() {
                        out.push((format!("{section}.{name}.hooks.{kind}"), c.to_string()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn examples_use_built_in_features_instead_of_hook_workarounds_and_say_what_that_gains() {
    let mut hooks_seen = 0;
    for ex in examples() {
        let mut files = vec![ex.join("cairn.toml")];
        if let Ok(rd) = std::fs::read_dir(ex.join("conf.d")) {
            files.extend(rd.flatten().map(|e| e.path()));
        }
        for f in files {
            let t: toml::Table = std::fs::read_to_string(&f).unwrap().parse().unwrap();
            for (at, cmd) in hooks_of(&t) {
                hooks_seen += 1;
                for (word, instead) in WORKAROUNDS {
                    assert!(
                        !cmd.contains(word),
                        "{}: {at} runs {cmd:?}: use {instead} instead",
                        f.display()
                    );
                }
            }
        }
        let readme = std::fs::read_to_string(ex.join("README.md")).unwrap();
        let gains = readme
            .split("\n## What you gain\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{}: README has no \"What you gain\" section", ex.display()));
        let gains = gains.split("\n## ").next().unwrap_or("");
        assert!(
            gains.matches("\n- ").count() >= 2,
            "{}: \"What you gain\" lists what the author no longer scripts",
            ex.display()
        );
    }
    // The hooks that stay (nix wrappers, mount checks) are still looked at.
    assert!(hooks_seen >= 3, "{hooks_seen} hooks");
}

/// A file name that `pattern` (a relative restic pattern) excludes, if it is simple
/// enough to make one: `*.log` -> `x.log`, `logs/` or `cache` -> `logs/inner.txt`.
fn excluded_example(pattern: &str) -> Option<String> {
    if pattern.starts_with('/') || pattern.starts_with('!') || pattern.contains('[') {
        return None;
    }
    let p = pattern.trim_start_matches("**/").trim_end_matches("/**");
    if p.contains('/') && !p.ends_with('/') {
        return None;
    }
    let p = p.trim_end_matches('/');
    let name = p.replace('*', "x");
    if name.is_empty() || name == "x" {
        return None;
    }
    Some(if p.contains('*') && p.contains('.') {
        name
    } else {
        format!("{name}/inner.txt")
    })
}

/// Where the local variant's database dumps go: a PostgreSQL of the test.
pub(crate) struct Databases {
    pub postgres: Option<crate::peers::Peer>,
    /// The dump files the snapshots must hold.
    pub dumps: Vec<String>,
}

fn rewrite_paths(
    name: &str,
    t: &mut toml::Table,
    root: &Path,
    all: &mut Vec<(PathBuf, Vec<String>)>,
    dbs: &mut Vec<PathBuf>,
    pg: &mut Databases,
) {
    t.remove("hooks");
    t.remove("notify");
    t.remove("exclude-file");
    t.remove("snapshot");
    // A restore test's command names the example's paths; the variant's are under `root`.
    if let Some(toml::Value::Table(rt)) = t.get_mut("restore-test") {
        if let Some(toml::Value::String(c)) = rt.get_mut("command") {
            for var in ["$CAIRN_RESTORE_DIR", "${CAIRN_RESTORE_DIR}"] {
                *c = c.replace(&format!("{var}/"), &format!("{var}{}/", root.display()));
            }
        }
    }
    if let Some(toml::Value::Table(d)) = t.get_mut("postgres") {
        let peer = pg.postgres.get_or_insert_with(crate::peers::postgres);
        d.insert("host".into(), peer.var("PG_HOST").into());
        d.insert(
            "port".into(),
            toml::Value::Integer(peer.var("PG_PORT").parse().unwrap()),
        );
        d.insert("user".into(), peer.var("PG_USER").into());
        let dbs = d.get("databases").and_then(|v| v.as_array()).cloned();
        match dbs {
            Some(list) if !list.is_empty() => {
                for db in list {
                    pg.dumps.push(format!(
                        "/.cairn/dumps/{name}/postgres-{}.sql",
                        db.as_str().unwrap()
                    ));
                }
            }
            _ => pg
                .dumps
                .push(format!("/.cairn/dumps/{name}/postgres-all.sql")),
        }
    }
    if let Some(toml::Value::Array(list)) = t.get_mut("sqlite") {
        for p in list.iter_mut() {
            let moved = root.join(p.as_str().unwrap().trim_start_matches('/'));
            dbs.push(moved.clone());
            *p = toml::Value::String(moved.display().to_string());
        }
    }
    let excludes: Vec<String> = t
        .get("exclude")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(toml::Value::Array(paths)) = t.get_mut("paths") {
        for p in paths.iter_mut() {
            let moved = root.join(p.as_str().unwrap().trim_start_matches('/'));
            all.push((moved.clone(), excludes.clone()));
            *p = toml::Value::String(moved.display().to_string());
        }
    }
}

/// An example's local variant (see the module doc), written under an [`Env`]: `cfg/`
/// holds the rewritten `cairn.toml` and `conf.d/`, paths to back up live under `data/`,
/// repositories at `repo-NAME` (not initialised yet), state in `state/`. The disaster
/// rehearsal (disaster.rs) builds on it, so both test the example as written.
pub(crate) struct LocalVariant {
    /// `cfg/cairn.toml`.
    pub config: PathBuf,
    /// The scratch root every path to back up was moved under (`data/`).
    pub root: PathBuf,
    /// The local repositories, one per configured repository.
    pub repos: Vec<PathBuf>,
    /// Every path to back up, moved under `root`, with its source's excludes.
    pub paths: Vec<(PathBuf, Vec<String>)>,
    /// The declared SQLite databases, moved under `root` (not created).
    pub dbs: Vec<PathBuf>,
    /// Where the PostgreSQL dumps go (a peer started when the example dumps one).
    pub databases: Databases,
}

/// The example `examples/NAME`.
pub(crate) fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Writes the local variant of example `ex` under `env` (nothing created but the config).
pub(crate) fn local_variant(ex: &Path, env: &Env) -> LocalVariant {
    let root = env.path("data");
    let cfg_dir = env.path("cfg");
    let mut files: Vec<PathBuf> = vec![ex.join("cairn.toml")];
    if let Ok(rd) = std::fs::read_dir(ex.join("conf.d")) {
        let mut frags: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        frags.sort();
        files.extend(frags);
    }
    let mut repos = Vec::new();
    let mut paths: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut dbs: Vec<PathBuf> = Vec::new();
    let mut databases = Databases {
        postgres: None,
        dumps: Vec::new(),
    };
    for f in &files {
        let mut t: toml::Table = std::fs::read_to_string(f).unwrap().parse().unwrap();
        // The state (history, locks, restore-test scratch) in this test's directory, also
        // for an example without [settings]: the default /var/lib/cairn (as root) kept the
        // history of earlier test runs, so a monthly restore test was no longer due.
        if t.contains_key("settings") || f == &files[0] {
            let mut s = toml::Table::new();
            s.insert(
                "state-dir".into(),
                env.path("state").display().to_string().into(),
            );
            t.insert("settings".into(), toml::Value::Table(s));
        }
        if let Some(toml::Value::Table(rs)) = t.get_mut("repositories") {
            for (rname, r) in rs.iter_mut() {
                let r = r.as_table_mut().unwrap();
                for k in [
                    "password-file",
                    "password-command",
                    "password-env",
                    "password-credential",
                    "env-file",
                    "env-credential",
                    "env-command",
                    "env",
                    "options",
                ] {
                    r.remove(k);
                }
                let url = env.path(&format!("repo-{rname}"));
                r.insert("url".into(), url.display().to_string().into());
                r.insert(
                    "password-file".into(),
                    env.path("pw").display().to_string().into(),
                );
                repos.push(url);
            }
        }
        for section in ["sources", "plans"] {
            if let Some(toml::Value::Table(entries)) = t.get_mut(section) {
                for (ename, e) in entries.iter_mut() {
                    rewrite_paths(
                        ename,
                        e.as_table_mut().unwrap(),
                        &root,
                        &mut paths,
                        &mut dbs,
                        &mut databases,
                    );
                }
            }
        }
        let rel = f.strip_prefix(ex).unwrap();
        let out = cfg_dir.join(rel);
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(&out, toml::to_string(&t).unwrap()).unwrap();
    }
    LocalVariant {
        config: cfg_dir.join("cairn.toml"),
        root,
        repos,
        paths,
        dbs,
        databases,
    }
}

#[test]
fn local_variants_of_the_examples_run_end_to_end_with_restic_agreeing() {
    let mut excludes_tried = 0;
    let mut restore_tests_proven = 0;
    for ex in examples() {
        let name = ex.file_name().unwrap().to_str().unwrap().to_string();
        let env = Env::new();
        let LocalVariant {
            config,
            repos,
            paths,
            dbs,
            databases,
            ..
        } = local_variant(&ex, &env);
        // Data: a file to keep in every path, and one file per simple exclude.
        let mut must_be_absent = Vec::new();
        for (p, excludes) in &paths {
            std::fs::create_dir_all(p).unwrap();
            std::fs::write(p.join("keep.txt"), format!("keep {}", p.display())).unwrap();
            for pat in excludes {
                if let Some(rel) = excluded_example(pat) {
                    let f = p.join("sub").join(&rel);
                    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                    std::fs::write(&f, "excluded").unwrap();
                    must_be_absent.push(f);
                }
            }
        }
        // Declared SQLite databases: live ones, in WAL mode with rows only in the WAL.
        let mut live = Vec::new();
        for db in &dbs {
            std::fs::create_dir_all(db.parent().unwrap()).unwrap();
            let c = rusqlite::Connection::open(db).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
            c.execute_batch("CREATE TABLE t (n); INSERT INTO t VALUES (1), (2), (3);")
                .unwrap();
            live.push(c);
        }
        for r in &repos {
            ok(env.cairn_repo(r, &["init"]));
        }
        let out = cairn_cfg(&config, &["config", "check"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        for round in 0..2 {
            let out = cairn_cfg(
                &config,
                &["--json", "run", "--all", "--force-check", "--force-prune"],
            );
            assert!(
                out.status.success(),
                "{name} round {round}: {}\n{}",
                stderr(&out),
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let shown: serde_json::Value =
            serde_json::from_slice(&cairn_cfg(&config, &["--json", "config", "show"]).stdout)
                .unwrap();
        // Each plan's restore test (due at the first run) ran and proved the restore.
        let history = json(&ok(cairn_cfg(
            &config,
            &["--json", "history", "--steps", "--limit", "100"],
        )));
        for (plan, p) in shown["plans"].as_object().unwrap() {
            if p["restore-test"].is_null() {
                continue;
            }
            let proven = history.as_array().unwrap().iter().any(|run| {
                run["plan"] == plan.as_str()
                    && run["steps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["operation"] == "restore-test" && s["result"] == "success")
            });
            assert!(proven, "{name}: plan {plan}'s restore test did not succeed");
            restore_tests_proven += 1;
        }
        let plans: toml::Table = shown["plans"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    toml::Value::String(p["repository"].as_str().unwrap().to_string()),
                )
            })
            .collect();
        let mut everything = String::new();
        for r in &repos {
            let restic = |args: &[&str]| {
                let mut c = Command::new(restic_bin());
                c.arg("-r")
                    .arg(r)
                    .arg("--password-file")
                    .arg(env.path("pw"))
                    .arg("--no-cache")
                    .args(args);
                c.output().unwrap()
            };
            ok(restic(&["check", "--read-data"]));
            let snaps = json(&ok(restic(&["snapshots", "--json"])));
            let rname = r
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches("repo-")
                .to_string();
            for (plan, repo) in &plans {
                if repo.as_str() == Some(rname.as_str()) {
                    let n = snaps
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|s| {
                            s["tags"]
                                .as_array()
                                .is_some_and(|t| t.iter().any(|t| t == &format!("plan:{plan}")))
                        })
                        .count();
                    assert!(n >= 1, "{name}: plan {plan} made no snapshot in {rname}");
                }
            }
            for s in snaps.as_array().unwrap() {
                everything.push_str(&ok(restic(&["ls", s["short_id"].as_str().unwrap()])));
            }
        }
        for db in &dbs {
            let d = db.display().to_string();
            assert!(
                everything.contains(&format!("{d}\n")),
                "{name}: {d} was not backed up"
            );
            assert!(
                !everything.contains(&format!("{d}-wal")),
                "{name}: {d}-wal was stored"
            );
        }
        for dump in &databases.dumps {
            assert!(
                everything.contains(&format!("{dump}\n")),
                "{name}: the dump {dump} is in no snapshot"
            );
        }
        drop(live);
        for (p, _) in &paths {
            let keep = p.join("keep.txt").display().to_string();
            assert!(
                everything.contains(&keep),
                "{name}: {keep} was not backed up by any plan"
            );
        }
        excludes_tried += must_be_absent.len();
        for f in &must_be_absent {
            assert!(
                !everything.contains(&f.display().to_string()),
                "{name}: {} should have been excluded",
                f.display()
            );
        }
    }
    assert!(
        excludes_tried >= 20,
        "the examples' excludes were exercised ({excludes_tried})"
    );
    assert!(
        restore_tests_proven >= 4,
        "the examples' restore tests ran ({restore_tests_proven})"
    );
}
