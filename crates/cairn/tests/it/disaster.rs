//! The whole-plan disaster rehearsal: the homelab example (examples/homelab-b2-per-service,
//! its local variant from examples.rs) plus a PostgreSQL source, backed up by `cairn run`
//! while every database has a writer committing, then the machine "lost" (the scratch root
//! removed, the database dropped) and brought back with one command, `cairn restore
//! --plan nightly --target / --load-dumps`. Every file must come back byte for byte with
//! its mode, owner and mtime, every SQLite database intact with every row committed before
//! the run, the PostgreSQL database with every row committed before the run; the plan's
//! full restore test (a command on the restored tree, the dump loaded into a scratch
//! PostgreSQL) is recorded as a success.

use crate::examples::{example, local_variant};
use crate::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the rehearsal compares of one entry of the tree.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir {
        mode: u32,
        owner: (u32, u32),
    },
    File {
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, i64),
        content: Vec<u8>,
    },
    Link(PathBuf),
}

/// Every entry under `root` (relative path -> what it is), except the files in `skip`.
fn tree(root: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if skip.contains(&p) {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let owner = (m.uid(), m.gid());
            let entry = if m.file_type().is_symlink() {
                Entry::Link(std::fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                todo.push(p.clone());
                Entry::Dir {
                    mode: m.mode(),
                    owner,
                }
            } else {
                Entry::File {
                    mode: m.mode(),
                    owner,
                    mtime: (m.mtime(), m.mtime_nsec()),
                    content: std::fs::read(&p).unwrap(),
                }
            };
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), entry);
        }
    }
    out
}

/// A service's state: config files, a secret, a private directory, a symlink, a file
/// owned by another user, binary state.
fn fill_service(dir: &Path, seed: u64) {
    let name = dir.file_name().unwrap().to_str().unwrap();
    write_file(
        &dir.join("config.yaml"),
        &format!("service: {name}\nlisten: 127.0.0.1:{}\n", 8000 + seed),
    );
    write_file(
        &dir.join("state/nested/settings.json"),
        &format!("{{\"seed\":{seed}}}"),
    );
    std::fs::write(
        dir.join("state/blob.bin"),
        random_bytes(seed, 40_000 + seed as usize),
    )
    .unwrap();
    write_file(&dir.join("secret.key"), &format!("secret of {name}\n"));
    std::fs::set_permissions(
        dir.join("secret.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(dir.join("state"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("state/nested/settings.json", dir.join("current.json")).unwrap();
    std::fs::write(
        dir.join("owned-by-nobody.txt"),
        b"fix ownership after a restore\n",
    )
    .unwrap();
    nix::unistd::chown(
        &dir.join("owned-by-nobody.txt"),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown needs root (CI runs as root)");
}

/// One SQLite writer: a WAL database (no automatic checkpoint: committed rows stay in the
/// -wal file, which a plain file copy would miss) committing a row every few ms.
struct SqliteWriter {
    db: PathBuf,
    committed: Arc<AtomicI64>,
    handle: JoinHandle<i64>,
}

fn sqlite_writer(db: &Path, stop: &Arc<AtomicBool>) -> SqliteWriter {
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let open = |db: &Path| {
        let c = rusqlite::Connection::open(db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    };
    open(db)
        .execute_batch("CREATE TABLE events (n INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        .unwrap();
    let committed = Arc::new(AtomicI64::new(0));
    let handle = {
        let (db, committed, stop) = (db.to_path_buf(), committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = open(&db);
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                c.execute(
                    "INSERT INTO events (n, payload) VALUES (?1, randomblob(300))",
                    [n],
                )
                .unwrap();
                n += 1;
                committed.store(n, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            n
        })
    };
    SqliteWriter {
        db: db.to_path_buf(),
        committed,
        handle,
    }
}

/// (count, max) of the writer's rows, from psql's `-tA` output "count|max".
fn count_max(out: &str) -> (i64, i64) {
    let (c, m) = out.split_once('|').unwrap_or_else(|| panic!("{out:?}"));
    (c.parse().unwrap(), m.parse().unwrap_or(-1))
}

#[test]
fn a_whole_plan_disaster_is_rehearsed_and_everything_comes_back() {
    let env = Env::new();
    let lv = local_variant(&example("homelab-b2-per-service"), &env);
    let root = lv.root.clone();

    // The PostgreSQL of the homelab (a real server) with a writer committing.
    let pg = crate::peers::postgres();
    let psql = format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    );
    sh_out(&format!(
        "{psql} -c 'CREATE DATABASE app' && {psql} -d app -c 'CREATE TABLE t (n integer PRIMARY KEY, pad text)'"
    ));
    write_file(
        &env.path("cfg/conf.d/postgres.toml"),
        &format!(
            "[sources.postgres]\npostgres = {{ databases = [\"app\"], host = \"{}\", port = {}, user = \"postgres\" }}\n",
            pg.var("PG_HOST"),
            pg.var("PG_PORT")
        ),
    );
    // The plan's restore test as the example has it (the whole snapshot restored, its
    // sqlite3 command on Home Assistant's database), due now, also proving a config file
    // and loading the dump into a scratch PostgreSQL.
    let hass = root.join("var/lib/hass");
    let mut main: toml::Table = std::fs::read_to_string(&lv.config)
        .unwrap()
        .parse()
        .unwrap();
    let rt = main
        .get_mut("plans")
        .and_then(|p| p.get_mut("nightly"))
        .and_then(|p| p.get_mut("restore-test"))
        .and_then(|p| p.as_table_mut())
        .expect("the homelab example's nightly plan has a restore test");
    assert_eq!(rt["mode"].as_str(), Some("full"), "{rt:?}");
    let command = format!(
        "{} && test -s \"$CAIRN_RESTORE_DIR{}/configuration.yaml\"",
        rt["command"].as_str().expect("a restore-test command"),
        hass.display()
    );
    rt.insert("schedule".into(), "always".into());
    rt.insert("verify-dumps".into(), true.into());
    rt.insert("timeout".into(), "2m".into());
    rt.insert("command".into(), command.into());
    std::fs::write(&lv.config, toml::to_string(&main).unwrap()).unwrap();

    // The services' files, and what their excludes leave out.
    std::fs::create_dir_all(root.join("var/lib/private")).unwrap();
    std::fs::set_permissions(
        root.join("var/lib/private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    for (i, (p, _)) in lv.paths.iter().enumerate() {
        fill_service(p, i as u64 + 1);
    }
    write_file(
        &hass.join("configuration.yaml"),
        "homeassistant:\n  name: Home\n",
    );
    write_file(&hass.join("secrets.yaml"), "api_key: 0123456789abcdef\n");
    std::fs::set_permissions(
        hass.join("secrets.yaml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    write_file(
        &hass.join("custom_components/hacs/manifest.json"),
        "{\"domain\":\"hacs\"}\n",
    );
    std::fs::write(hass.join("www-big.bin"), random_bytes(99, 3 << 20)).unwrap();
    // What the excludes leave out: a file, and two directories (left out whole).
    let excluded = [
        hass.join("home-assistant.log"),
        hass.join("backups"),
        root.join("var/lib/radarr/logs"),
    ];
    write_file(&excluded[0], "a log\n");
    write_file(&excluded[1].join("full-2026-01-01.tar"), "a tarball\n");
    write_file(&excluded[2].join("radarr.txt"), "a log\n");

    // Every declared SQLite database live, with a writer.
    let stop = Arc::new(AtomicBool::new(false));
    assert_eq!(
        lv.dbs.len(),
        5,
        "hass, radarr, sonarr, prowlarr, backrest: {:?}",
        lv.dbs
    );
    let writers: Vec<SqliteWriter> = lv.dbs.iter().map(|d| sqlite_writer(d, &stop)).collect();
    let pg_committed = Arc::new(AtomicI64::new(0));
    let pg_writer = {
        let (psql, committed, stop) = (psql.clone(), pg_committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                sh_out(&format!(
                    "{psql} -d app -c \"INSERT INTO t VALUES ({n}, repeat('x', 200))\""
                ));
                n += 1;
                committed.store(n, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |c: &AtomicI64, n: i64| {
        let t0 = std::time::Instant::now();
        while c.load(Ordering::SeqCst) < n {
            assert!(t0.elapsed().as_secs() < 30, "the writers do not commit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    for w in &writers {
        wait_for(&w.committed, 50);
    }
    wait_for(&pg_committed, 20);

    // The copy to compare with: every file but the live databases (and their -wal/-shm)
    // and what the excludes leave out.
    let mut skip: Vec<PathBuf> = excluded.to_vec();
    for db in &lv.dbs {
        skip.push(db.clone());
        for side in ["-wal", "-shm", "-journal"] {
            skip.push(PathBuf::from(format!("{}{side}", db.display())));
        }
    }
    let before_tree = tree(&root, &skip);
    assert!(before_tree.len() > 100, "{} entries", before_tree.len());

    for r in &lv.repos {
        ok(env.cairn_repo(r, &["init"]));
    }
    let sqlite_before: Vec<i64> = writers
        .iter()
        .map(|w| w.committed.load(Ordering::SeqCst))
        .collect();
    let pg_before = pg_committed.load(Ordering::SeqCst);
    let run = env.config_run(&lv.config, &["--json", "run", "nightly"]);
    let sqlite_during: Vec<i64> = writers
        .iter()
        .map(|w| w.committed.load(Ordering::SeqCst))
        .collect();
    let pg_during = pg_committed.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    pg_writer.join().unwrap();
    let mut sqlite_total = Vec::new();
    let mut dbs = Vec::new();
    for w in writers {
        sqlite_total.push(w.handle.join().unwrap());
        dbs.push(w.db);
    }
    let v = json(&ok(run));
    assert_eq!(v[0]["result"], "success", "{v}");
    for (i, db) in dbs.iter().enumerate() {
        assert!(
            sqlite_during[i] > sqlite_before[i],
            "{}: the writer kept committing during the run",
            db.display()
        );
    }
    assert!(
        pg_during > pg_before,
        "the PostgreSQL writer kept committing"
    );

    // The restore test of the run: the whole plan, its command and its dump, proven.
    let h = json(&ok(env.config_run(
        &lv.config,
        &["--json", "history", "nightly", "--steps"],
    )));
    let steps = h[0]["steps"].as_array().unwrap();
    let rt = steps
        .iter()
        .find(|s| s["operation"] == "restore-test")
        .unwrap_or_else(|| panic!("no restore-test step: {h}"));
    assert_eq!(rt["result"], "success", "{rt}");
    let detail = &rt["detail"];
    assert_eq!(detail["mode"], "full", "{rt}");
    assert_eq!(detail["command_exit"], 0, "{rt}");
    assert!(
        detail["command"]
            .as_str()
            .is_some_and(|c| c.contains("pragma integrity_check")),
        "the example's own command ran: {rt}"
    );
    assert!(detail["sqlite_checked"].as_u64() >= Some(5), "{rt}");
    let dumps = detail["dumps"].as_array().unwrap_or_else(|| panic!("{rt}"));
    assert_eq!(dumps.len(), 1, "{rt}");
    assert!(dumps[0]["error"].is_null(), "{rt}");

    // The disaster: the machine's state is gone, and so is the database.
    std::fs::remove_dir_all(&root).unwrap();
    sh_out(&format!("{psql} -c 'DROP DATABASE app'"));
    assert_eq!(
        sh_out(&format!(
            "{psql} -d postgres -tA -c \"SELECT count(*) FROM pg_database WHERE datname = 'app'\""
        )),
        "0"
    );

    // The runbook, as one command.
    let out = env.config_run(
        &lv.config,
        &[
            "--json",
            "restore",
            "--plan",
            "nightly",
            "--target",
            "/",
            "--load-dumps",
        ],
    );
    let report = json(&ok(out));
    assert_eq!(report["result"], "success", "{report:#}");
    assert_eq!(report["exit_code"], 0, "{report:#}");
    // Each source with files (the 12 service fragments) restored; the PostgreSQL
    // source's dump loaded back into its server.
    let mut with_paths: Vec<String> = std::fs::read_dir(env.path("cfg/conf.d"))
        .unwrap()
        .flatten()
        .flat_map(|f| {
            let t: toml::Table = std::fs::read_to_string(f.path()).unwrap().parse().unwrap();
            t.get("sources")
                .and_then(|s| s.as_table())
                .map(|s| {
                    s.iter()
                        .filter(|(_, v)| v.get("paths").is_some())
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    with_paths.sort();
    assert_eq!(with_paths.len(), 12, "{with_paths:?}");
    let restored = report["sources"].as_array().unwrap();
    let mut names: Vec<String> = restored
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, with_paths, "the report lists every source");
    for s in restored {
        assert_eq!(s["result"], "success", "{s:#}");
        assert!(s["files_restored"].as_u64() > Some(0), "{s:#}");
    }
    let dumps = report["dumps"].as_array().unwrap();
    assert_eq!(dumps.len(), 1, "{report:#}");
    assert_eq!(dumps[0]["path"], "/.cairn/dumps/postgres/postgres-app.sql");
    assert_eq!(dumps[0]["status"], "loaded", "{report:#}");
    assert_eq!(
        dumps[0]["databases"],
        serde_json::json!(["app"]),
        "{report:#}"
    );

    // Every file byte for byte, with its mode, owner and mtime; nothing the excludes left
    // out, no stale -wal beside a database.
    let dbs_only: Vec<PathBuf> = dbs.clone();
    let after_tree = tree(&root, &dbs_only);
    let names = |t: &BTreeMap<PathBuf, Entry>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&after_tree),
        names(&before_tree),
        "the restored tree's entries"
    );
    for (p, e) in &before_tree {
        assert_eq!(
            &after_tree[p],
            e,
            "{} came back different",
            root.join(p).display()
        );
    }

    // Every SQLite database intact, with every row committed before the run.
    for (i, db) in dbs.iter().enumerate() {
        let c =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{}", db.display());
        let (count, max): (i64, i64) = c
            .query_row("SELECT count(*), max(n) FROM events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(
            count >= sqlite_before[i],
            "{}: {} rows committed before the run, {count} restored",
            db.display(),
            sqlite_before[i]
        );
        assert_eq!(max, count - 1, "{}: a consistent prefix", db.display());
        assert!(count <= sqlite_total[i]);
    }

    // The PostgreSQL database, back from its dump, with every row committed before the run.
    let (count, max) = count_max(&sh_out(&format!(
        "{psql} -d app -tA -c 'SELECT count(*), max(n) FROM t'"
    )));
    assert!(
        count >= pg_before,
        "PostgreSQL: {pg_before} rows committed before the run, {count} restored"
    );
    assert_eq!(max, count - 1, "PostgreSQL: a consistent prefix");
}
