//! `cairn restore --plan NAME`: the disaster-recovery runbook. Real repositories, the
//! real `restic` as the oracle for which snapshot was restored, a real PostgreSQL for
//! the dumps.

use crate::webkit::toml_str;
use crate::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

/// A plan `p` with two sources (`app`: files, modes, a symlink; `web`) and a path of its
/// own (`extra`), restore hooks on the plan and on `app` that note in `markers` whether
/// the restored files were there when they ran; `more` is added to the config.
struct Plan {
    env: Env,
    cfg: PathBuf,
    live: PathBuf,
    markers: PathBuf,
}

impl Plan {
    fn new(plan_hooks: (&str, &str), more: &str) -> Plan {
        let env = Env::new();
        let live = env.path("live");
        let markers = env.path("markers");
        let app = live.join("app");
        write_file(&app.join("config.yaml"), "name: app\nport: 8123\n");
        std::fs::write(app.join("data.bin"), random_bytes(7, 300_000)).unwrap();
        write_file(&app.join("deep/er/notes.txt"), "deep\n");
        std::fs::set_permissions(
            app.join("config.yaml"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::set_permissions(app.join("deep"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("deep/er/notes.txt", app.join("notes-link")).unwrap();
        let web = live.join("web");
        write_file(&web.join("v1/index.html"), "<h1>hi</h1>\n");
        std::os::unix::fs::symlink("v1", web.join("current")).unwrap();
        write_file(&web.join("start.sh"), "#!/bin/sh\necho start\n");
        std::fs::set_permissions(web.join("start.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        write_file(&live.join("extra/secret.key"), "k\n");
        std::fs::set_permissions(
            live.join("extra/secret.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        pin_times(&live);
        // Each hook notes its name and whether app's config was restored yet.
        let note = |name: &str| {
            toml_str(&format!(
                "if [ -e {c} ]; then s=present; else s=absent; fi; echo \"{name}:$s:$CAIRN_RESULT:$CAIRN_RESTORE_TARGET:$CAIRN_SNAPSHOT_ID\" >> {m}",
                c = app.join("config.yaml").display(),
                m = markers.display()
            ))
        };
        let (before, after) = plan_hooks;
        let before = if before.is_empty() {
            note("before-plan")
        } else {
            toml_str(before)
        };
        let after = if after.is_empty() {
            note("after-plan")
        } else {
            toml_str(after)
        };
        let cfg = env.path("cfg/cairn.toml");
        write_file(
            &cfg,
            &format!(
                "[settings]\nstate-dir = {state}\n\
                 [repositories.r]\nurl = {repo}\npassword-file = {pw}\n\
                 [sources.app]\npaths = [{app}]\n{more}\n\
                 [sources.app.hooks]\nbefore-restore = [{bapp}]\nafter-restore = [{aapp}]\n\
                 [sources.web]\npaths = [{web}]\n\
                 [plans.p]\nrepository = \"r\"\nsources = [\"app\", \"web\"]\npaths = [{extra}]\n\
                 [plans.p.hooks]\nbefore-restore = [{before}]\nafter-restore = [{after}]\n",
                state = toml_str(&env.path("state").display().to_string()),
                repo = toml_str(&env.repo().display().to_string()),
                pw = toml_str(&env.path("pw").display().to_string()),
                app = toml_str(&app.display().to_string()),
                web = toml_str(&web.display().to_string()),
                extra = toml_str(&live.join("extra").display().to_string()),
                bapp = note("before-app"),
                aapp = note("after-app"),
            ),
        );
        ok(env.cairn(&["init"]));
        Plan {
            env,
            cfg,
            live,
            markers,
        }
    }

    fn cairn(&self, args: &[&str]) -> std::process::Output {
        self.env.config_run(&self.cfg, args)
    }

    /// Backs the plan up; returns restic's id of the snapshot.
    fn backup(&self) -> String {
        ok(self.cairn(&["run", "p"]));
        let snaps = json(&ok(self.env.restic(&["snapshots", "--json"])));
        snaps.as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn markers(&self) -> Vec<String> {
        std::fs::read_to_string(&self.markers)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// `cp -a`: the copy a test compares the restored tree with.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn runbook_restores_every_source_in_place_between_its_hooks_and_records_it() {
    let p = Plan::new(("", ""), "");
    let snap = p.backup();
    let copy = p.env.path("copy");
    copy_tree(&p.live, &copy);
    std::fs::remove_dir_all(&p.live).unwrap();

    let out = p.cairn(&["restore", "--plan", "p", "--target", "/"]);
    let text = ok(out);
    for part in ["app", "web", "extra"] {
        assert_same_tree(&copy.join(part), &p.live.join(part));
    }
    assert!(text.contains("everything was restored"), "{text}");
    // Plan first before, sources first after; before ran on an empty place, after on the
    // restored files; each saw the snapshot and the target.
    let m = p.markers();
    let names: Vec<&str> = m.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        ["before-plan", "before-app", "after-app", "after-plan"],
        "{m:?}"
    );
    assert!(m[0].starts_with("before-plan:absent:"), "{m:?}");
    assert!(m[1].starts_with("before-app:absent:"), "{m:?}");
    assert_eq!(
        m[3],
        format!("after-plan:present:success:/:{snap}"),
        "{m:?}"
    );

    // The history: a `restore` row of the plan, its hooks and one restore per part.
    let h = json(&ok(p.cairn(&["--json", "history", "p", "--steps"])));
    let row = h
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "restore")
        .unwrap_or_else(|| panic!("no restore row: {h}"));
    assert_eq!(row["result"], "success", "{row}");
    assert_eq!(row["snapshot_id"], snap.as_str(), "{row}");
    let steps = row["steps"].as_array().unwrap();
    let ops: Vec<&str> = steps
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        ["hook", "hook", "restore", "restore", "restore", "hook", "hook"],
        "{row}"
    );
    let sources: Vec<&str> = steps
        .iter()
        .filter(|s| s["operation"] == "restore")
        .map(|s| s["detail"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["app", "web", "(plan)"]);
    assert!(steps.iter().all(|s| s["result"] == "success"), "{row}");
}

#[test]
fn dry_run_names_sources_paths_and_hooks_and_changes_nothing() {
    let p = Plan::new(("", ""), "");
    let snap = p.backup();
    std::fs::remove_dir_all(&p.live).unwrap();
    let text = ok(p.cairn(&["restore", "--plan", "p", "--target", "/", "--dry-run"]));
    assert!(!p.live.exists(), "a dry run restored files");
    assert!(p.markers().is_empty(), "a dry run ran hooks");
    let app = p.live.join("app").display().to_string();
    assert!(text.contains(&snap[..8]), "{text}");
    assert!(text.contains(&format!("{app} -> {app}")), "{text}");
    assert!(text.contains("before-restore (plan p)"), "{text}");
    assert!(text.contains("after-restore (source app)"), "{text}");
    assert!(text.contains("would restore"), "{text}");

    let target = p.env.path("elsewhere");
    let v = json(&ok(p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        target.to_str().unwrap(),
        "--dry-run",
    ])));
    assert!(!target.exists());
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["snapshot"]["id"], snap.as_str());
    let names: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "web", "(plan)"], "{v}");
    // config.yaml, data.bin, notes.txt, notes-link.
    assert_eq!(v["sources"][0]["files_restored"], 4, "{v}");
    assert_eq!(
        v["sources"][0]["paths"][0]["to"],
        format!("{}{app}", target.display()),
        "{v}"
    );
    assert_eq!(v["hooks"].as_array().unwrap().len(), 4, "{v}");
    // Nothing recorded.
    let h = json(&ok(p.cairn(&["--json", "history", "p"])));
    assert!(
        !h.as_array()
            .unwrap()
            .iter()
            .any(|r| r["operation"] == "restore"),
        "{h}"
    );
}

#[test]
fn existing_files_are_left_and_reported_unless_overwrite_which_also_drops_a_stale_wal() {
    let env_db = |live: &std::path::Path| live.join("app/app.db");
    // The database is a source's SQLite (copied consistently at backup).
    let p = Plan::new(("true", "true"), "sqlite = []");
    let db = env_db(&p.live);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE t (n INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
    }
    // Declare it: rewrite the source with its sqlite list.
    let text = std::fs::read_to_string(&p.cfg).unwrap().replace(
        "sqlite = []",
        &format!("sqlite = [{}]", toml_str(&db.display().to_string())),
    );
    std::fs::write(&p.cfg, text).unwrap();
    p.backup();
    // After the backup: the service changed its config and wrote more rows, and a -wal
    // of that newer database sits beside it.
    let config = p.live.join("app/config.yaml");
    std::fs::write(&config, "changed\n").unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO t VALUES (4)")
        .unwrap();
    let wal = p.live.join("app/app.db-wal");
    std::fs::write(&wal, b"not a wal of the restored database").unwrap();

    let out = p.cairn(&["--json", "restore", "--plan", "p", "--target", "/"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["result"], "warning", "{v}");
    let app = &v["sources"][0];
    assert_eq!(app["result"], "warning", "{v}");
    assert!(app["files_skipped"].as_u64().unwrap() >= 2, "{v}");
    assert!(
        app["skipped_examples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == config.to_str().unwrap()),
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "changed\n");
    // The database was not written: its -wal is not touched.
    assert!(wal.exists());
    let text =
        String::from_utf8_lossy(&p.cairn(&["restore", "--plan", "p", "--target", "/"]).stdout)
            .into_owned();
    assert!(text.contains("pass --overwrite"), "{text}");

    let out = p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        "/",
        "--overwrite",
    ]);
    let v = json(&ok(out));
    assert_eq!(v["result"], "success", "{v}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "name: app\nport: 8123\n"
    );
    assert!(!wal.exists(), "the stale -wal is still there");
    assert_eq!(v["sources"][0]["removed"][0], wal.to_str().unwrap(), "{v}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3, "the snapshot's rows");
}

#[test]
fn a_failing_before_restore_hook_restores_nothing_and_the_after_hooks_still_run() {
    let p = Plan::new(("echo stopping failed >&2; exit 3", ""), "");
    p.backup();
    std::fs::remove_dir_all(&p.live).unwrap();
    let out = p.cairn(&["--json", "restore", "--plan", "p", "--target", "/"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!p.live.exists(), "files were restored after a failed hook");
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["result"], "failure", "{v}");
    assert_eq!(v["error_category"], "hook-failed", "{v}");
    assert!(v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["result"] == "skipped"));
    // The plan's before hook failed first: the source's never ran; both after hooks did.
    let m = p.markers();
    let names: Vec<&str> = m.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(names, ["after-app", "after-plan"], "{m:?}");
    assert!(m[1].starts_with("after-plan:absent:failure:"), "{m:?}");
    let h = json(&ok(p.cairn(&["--json", "history", "p"])));
    let row = h
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["operation"] == "restore")
        .unwrap();
    assert_eq!(row["result"], "failure");
    assert_eq!(row["error_category"], "hook-failed");
}

#[test]
fn a_running_plan_refuses_the_runbook_and_bad_snapshot_arguments_are_explained() {
    let p = Plan::new(("", ""), "");
    p.backup();
    // Another run holds the plan's lock: this test process takes the same exclusive flock
    // in-process (an external flock(1) raced under CI load), and drops it after the refusal.
    let lock = p.env.path("state/locks/p.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .unwrap();
    let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("the plan lock is free before the test takes it");
    let out = p.cairn(&["restore", "--plan", "p", "--target", "/"]);
    drop(held);
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is running"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        p.markers().is_empty(),
        "hooks ran while the plan was locked"
    );

    let t = p.env.path("t");
    let t = t.to_str().unwrap();
    let out = p.cairn(&["restore", "--plan", "p", "latest:/x", "--target", t]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("use --include") || stderr(&out).contains("--include /x"),
        "{}",
        stderr(&out)
    );
    let out = p.cairn(&["-r", "r", "restore", "--target", t]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("which snapshot?"), "{}", stderr(&out));
    // A snapshot of the repository that is not the plan's is refused.
    let other = p.env.path("other");
    write_file(&other.join("f"), "x");
    let id = json(
        ok(p.env.cairn(&["--json", "backup", other.to_str().unwrap()]))
            .lines()
            .last()
            .unwrap(),
    )["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = p.cairn(&["restore", "--plan", "p", "--snapshot", &id, "--target", t]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not one of plan p's"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!std::path::Path::new(t).exists());
}

/// A PostgreSQL source and a directory target: the files under DIR/<their path>, the
/// dump as a file under DIR/.cairn/dumps/ that psql loads with every row; in place
/// without --load-dumps the dump is left out and the report says how.
#[test]
fn a_directory_target_gets_files_under_their_paths_and_dumps_as_files() {
    let pg = crate::peers::postgres();
    let psql = format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    );
    assert!(sh(&format!(
        "{psql} -c 'CREATE DATABASE app' && {psql} -d app -c 'CREATE TABLE t (n integer PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)'"
    )));
    let p = Plan::new(
        ("", ""),
        &format!(
            "postgres = {{ databases = [\"app\"], host = {}, port = {}, user = \"postgres\" }}",
            toml_str(pg.var("PG_HOST")),
            pg.var("PG_PORT")
        ),
    );
    p.backup();
    let target = p.env.path("restored");
    let out = p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        target.to_str().unwrap(),
    ]);
    let v = json(&ok(out));
    assert_eq!(v["result"], "success", "{v}");
    let inside = |path: &std::path::Path| target.join(path.strip_prefix("/").unwrap());
    assert_same_tree(&p.live.join("web"), &inside(&p.live.join("web")));
    assert_same_tree(&p.live.join("app"), &inside(&p.live.join("app")));
    let dump = target.join(".cairn/dumps/app/postgres-app.sql");
    assert!(dump.is_file(), "{v}");
    assert_eq!(v["dumps"][0]["status"], "restored", "{v}");
    assert_eq!(v["dumps"][0]["file"], dump.to_str().unwrap(), "{v}");
    assert!(
        v["dumps"][0]["detail"].as_str().unwrap().contains("psql"),
        "{v}"
    );
    // The dump file holds every row (psql as the oracle).
    assert!(sh(&format!(
        "{psql} -c 'CREATE DATABASE copy' && {psql} -d copy -f {} >/dev/null",
        dump.display()
    )));
    assert_eq!(
        sh_out(&format!(
            "{psql} -d copy -tA -c 'SELECT count(*), sum(n) FROM t'"
        )),
        "500|125250"
    );
    // In place without --load-dumps: files fine, the dump left out and said so.
    let out = p.cairn(&["restore", "--plan", "p", "--target", "/", "--overwrite"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pass --load-dumps"), "{text}");
}

/// --load-dumps: a dropped database comes back with every row; an existing one with
/// tables is refused without --overwrite and replaced with it.
#[test]
fn load_dumps_brings_a_dropped_database_back_and_refuses_to_clobber_one() {
    let pg = crate::peers::postgres();
    let psql = format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    );
    assert!(sh(&format!(
        "{psql} -c 'CREATE DATABASE app' && {psql} -d app -c 'CREATE TABLE t (n integer PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)'"
    )));
    let p = Plan::new(
        ("", ""),
        &format!(
            "postgres = {{ databases = [\"app\"], host = {}, port = {}, user = \"postgres\" }}",
            toml_str(pg.var("PG_HOST")),
            pg.var("PG_PORT")
        ),
    );
    p.backup();
    assert!(sh(&format!("{psql} -c 'DROP DATABASE app'")));
    let count = || {
        sh_out(&format!(
            "{psql} -d app -tA -c 'SELECT count(*), sum(n) FROM t'"
        ))
    };
    let v = json(&ok(p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        "/",
        "--overwrite",
        "--load-dumps",
    ])));
    assert_eq!(v["dumps"][0]["status"], "loaded", "{v}");
    assert_eq!(count(), "500|125250");
    assert!(
        !p.env.path("state/restore/p").exists(),
        "the scratch dumps are left"
    );

    // The database exists with its tables: refused without --overwrite.
    assert!(sh(&format!(
        "{psql} -d app -c 'DELETE FROM t WHERE n > 10'"
    )));
    let out = p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        "/",
        "--load-dumps",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["dumps"][0]["status"], "failed", "{v}");
    assert_eq!(count(), "10|55", "a refused load changed the database");
    let v = json(&ok(p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        "/",
        "--overwrite",
        "--load-dumps",
    ])));
    assert_eq!(v["dumps"][0]["status"], "loaded", "{v}");
    assert_eq!(count(), "500|125250");
    let h = json(&ok(p.cairn(&["--json", "history", "p", "--steps"])));
    let loads = h
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "restore")
        .flat_map(|r| r["steps"].as_array().unwrap().clone())
        .filter(|s| s["operation"] == "load-dump")
        .count();
    assert_eq!(loads, 3);
}

/// A snapshot path no source of today's config covers (source `web` removed from the
/// plan since the backup) is not restored silently: the report names it and the runbook
/// exits 1.
#[test]
fn snapshot_paths_no_source_covers_any_more_are_reported_not_dropped() {
    let p = Plan::new(("true", "true"), "");
    p.backup();
    let text = std::fs::read_to_string(&p.cfg).unwrap();
    let fewer = text.replace("sources = [\"app\", \"web\"]", "sources = [\"app\"]");
    assert_ne!(text, fewer);
    std::fs::write(&p.cfg, fewer).unwrap();
    let target = p.env.path("restored");
    let out = p.cairn(&[
        "--json",
        "restore",
        "--plan",
        "p",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["result"], "warning", "{v}");
    let web = p.live.join("web");
    let uncovered = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "(not in the config)")
        .unwrap_or_else(|| panic!("no uncovered part: {v}"));
    assert_eq!(uncovered["paths"][0]["path"], web.to_str().unwrap(), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains(web.to_str().unwrap()),
        "{v}"
    );
    // What the config still covers came back; the rest did not.
    let inside = |path: &std::path::Path| target.join(path.strip_prefix("/").unwrap());
    assert_same_tree(&p.live.join("app"), &inside(&p.live.join("app")));
    assert!(!inside(&web).exists());
}
