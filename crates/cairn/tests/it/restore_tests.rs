//! Restore tests (`restore-test = { ... }`): sample mode compares restored files with the
//! unchanged live files byte for byte, full mode restores the whole snapshot, a command
//! runs on the restored tree, SQLite databases pass their integrity check, dumps load
//! into scratch database servers; failures fail the run and are notified.

use crate::plans::Receiver;
use crate::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A repository, live data under `data/` (`files` random files of various sizes) and a
/// config with source `files` (plus `source_extra`) and plan `p` (plus `plan_extra`).
fn setup(files: u64, source_extra: &str, plan_extra: &str) -> (Env, PathBuf) {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..files {
        let dir = if i % 2 == 0 { "" } else { "sub/" };
        std::fs::write(
            data.join(format!("{dir}f{i}.bin")),
            random_bytes(i + 7, (i as usize * 7919) % 300_000 + 1),
        )
        .unwrap();
    }
    ok(env.cairn(&["init"]));
    let cfg = env.path("cfg/cairn.toml");
    write_config(&env, &cfg, source_extra, plan_extra);
    (env, cfg)
}

fn write_config(env: &Env, cfg: &Path, source_extra: &str, plan_extra: &str) {
    write_file(
        cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.r]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [sources.files]\npaths = [\"{data}\"]\n{source_extra}\n\
             [plans.p]\nrepository = \"r\"\nsources = [\"files\"]\n{plan_extra}\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            data = env.path("data").display(),
        ),
    );
}

/// The restore-test step of the plan's last run, from `history --json --steps`.
fn last_restore_test(env: &Env, cfg: &Path) -> serde_json::Value {
    let h = json(&ok(
        env.config_run(cfg, &["--json", "history", "p", "--steps"])
    ));
    h[0]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["operation"] == "restore-test"))
        .cloned()
        .unwrap_or_else(|| panic!("no restore-test step in the last run: {h}"))
}

fn snapshot_id(env: &Env) -> String {
    let v = json(&ok(env.restic(&["snapshots", "latest", "--json"])));
    v[0]["id"].as_str().unwrap().to_string()
}

/// Sample mode: every file of the snapshot (files = 50 > 40) restored and compared with
/// the live one byte for byte; a live file changed since the snapshot is only counted;
/// a live file whose bytes differ while it kept its size and mtime fails the test,
/// named — the proof that the comparison reads the bytes.
#[test]
fn sample_mode_compares_unchanged_live_files_byte_for_byte() {
    let (env, cfg) = setup(
        40,
        "",
        "restore-test = { schedule = \"always\", files = 50 }",
    );
    let v = json(&ok(env.config_run(&cfg, &["--json", "run", "p"])));
    assert_eq!(v[0]["result"], "success", "{v}");
    let total: u64 = files_under(&env.path("data"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let rt = last_restore_test(&env, &cfg);
    assert_eq!(rt["result"], "success", "{rt}");
    let d = &rt["detail"];
    assert_eq!(d["mode"], "sample", "{rt}");
    assert_eq!(d["snapshot"], snapshot_id(&env).as_str(), "{rt}");
    assert_eq!(d["files_restored"], 40, "{rt}");
    assert_eq!(d["identical"], 40, "{rt}");
    assert_eq!(d["compared_bytes"], total, "{rt}");
    assert_eq!(d["changed_since"], 0, "{rt}");
    assert_eq!(rt["files_processed"], 40, "{rt}");
    let log = v[0]["log"].as_str().unwrap();
    assert!(
        log.contains(
            "restore test (sample): 40 files restored, 40 identical to the live files, 0 changed since the snapshot"
        ),
        "{log}"
    );
    assert!(
        !env.path("state/restore-test/p").exists(),
        "the restored files are removed"
    );

    // Changed since the snapshot (new mtime): counted, size compared only.
    let changed = env.path("data/f2.bin");
    let len = std::fs::metadata(&changed).unwrap().len() as usize;
    std::fs::write(&changed, vec![0u8; len]).unwrap();
    let out = env.config_run(&cfg, &["--json", "run", "p", "--only", "restore-test"]);
    let rt = last_restore_test(&env, &cfg);
    assert!(out.status.success(), "{rt}");
    assert_eq!(rt["detail"]["changed_since"], 1, "{rt}");
    assert_eq!(rt["detail"]["identical"], 39, "{rt}");

    // Different bytes, same size, same mtime as recorded: the restored file differs from
    // a live file that "did not change" — a failure naming it.
    let victim = env.path("data/sub/f7.bin");
    let meta = std::fs::metadata(&victim).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    assert_eq!(
        std::fs::metadata(&victim).unwrap().mtime_nsec(),
        meta.mtime_nsec()
    );
    let out = env.config_run(&cfg, &["--json", "run", "p", "--only", "restore-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rt = last_restore_test(&env, &cfg);
    assert_eq!(rt["result"], "failure", "{rt}");
    assert_eq!(rt["error_category"], "corrupt-data", "{rt}");
    let err = rt["error"].as_str().unwrap();
    assert!(err.contains(&victim.display().to_string()), "{err}");
    assert!(
        !err.contains("f2.bin"),
        "the changed file is no failure: {err}"
    );
    let runs = json(&ok(env.config_run(&cfg, &["--json", "history", "p"])));
    assert_eq!(runs[0]["result"], "failure", "{}", runs[0]);
}

/// Full mode: the whole snapshot restored, the command sees it under
/// `$CAIRN_RESTORE_DIR` with the plan and snapshot; a command that exits 1 fails the
/// run (hook-failed, the command and its output named) and the failure is notified.
#[test]
fn full_mode_runs_the_command_on_the_restored_tree_and_a_failing_command_alerts() {
    let rx = Receiver::start();
    let seen = Env::new();
    let seen_file = seen.path("seen");
    let notify = format!(
        "notify = {{ webhook = \"http://127.0.0.1:{}/hook\" }}",
        rx.port
    );
    let (env, cfg) = setup(10, "", "");
    let good = format!(
        "test -f \"$CAIRN_RESTORE_DIR{data}/sub/f1.bin\" && test -f \"$CAIRN_RESTORE_DIR{data}/f0.bin\" && echo \"$CAIRN_PLAN $CAIRN_SNAPSHOT_ID\" > {seen}",
        data = env.path("data").display(),
        seen = seen_file.display()
    );
    let policy = |cmd: &str| {
        format!(
            "{notify}\nrestore-test = {{ schedule = \"always\", mode = \"full\", timeout = \"1m\", command = '{cmd}' }}"
        )
    };
    write_config(&env, &cfg, "", &policy(&good));
    let v = json(&ok(env.config_run(&cfg, &["--json", "run", "p"])));
    assert_eq!(v[0]["result"], "success", "{v}");
    let snap = snapshot_id(&env);
    assert_eq!(
        std::fs::read_to_string(&seen_file).unwrap().trim(),
        format!("p {snap}")
    );
    let rt = last_restore_test(&env, &cfg);
    let d = &rt["detail"];
    assert_eq!(d["mode"], "full", "{rt}");
    assert_eq!(d["files_restored"], 10, "{rt}");
    assert_eq!(d["command_exit"], 0, "{rt}");
    assert!(
        d["command"].as_str().unwrap().contains("CAIRN_RESTORE_DIR"),
        "{rt}"
    );
    assert!(!env.path("state/restore-test/p").exists());
    assert_eq!(rx.hook_posts(None).last().unwrap()["event"], "success");

    // The same command checking a file that is not in the snapshot: it must fail.
    let missing = good.replace("f0.bin", "nope.bin");
    write_config(&env, &cfg, "", &policy(&missing));
    let out = env.config_run(&cfg, &["run", "p"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    write_config(
        &env,
        &cfg,
        "",
        &policy("echo the service did not start; exit 1"),
    );
    let out = env.config_run(&cfg, &["--json", "run", "p"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rt = last_restore_test(&env, &cfg);
    assert_eq!(rt["result"], "failure", "{rt}");
    assert_eq!(rt["error_category"], "hook-failed", "{rt}");
    assert_eq!(rt["detail"]["command_exit"], 1, "{rt}");
    let err = rt["error"].as_str().unwrap();
    assert!(
        err.contains("exit 1") && err.contains("the service did not start"),
        "{err}"
    );
    let runs = json(&ok(env.config_run(&cfg, &["--json", "history", "p"])));
    assert_eq!(runs[0]["result"], "failure", "{}", runs[0]);
    let last = rx.hook_posts(None).last().cloned().unwrap();
    assert_eq!(last["event"], "failure", "{last}");
    assert_eq!(last["error_category"], "hook-failed", "{last}");
    assert!(last.to_string().contains("restore test command"), "{last}");
    assert!(
        !env.path("state/restore-test/p").exists(),
        "removed after a failure too"
    );
}

/// Full mode on a repository with a damaged pack: the restore's verification fails,
/// recorded as corrupt-data and notified.
#[test]
fn full_mode_on_a_corrupted_pack_fails_as_corrupt_data_and_alerts() {
    let rx = Receiver::start();
    let (env, cfg) = setup(
        12,
        "",
        &format!(
            "notify = {{ webhook = \"http://127.0.0.1:{}/hook\" }}\nrestore-test = {{ schedule = \"always\", mode = \"full\" }}",
            rx.port
        ),
    );
    ok(env.config_run(&cfg, &["run", "p"]));
    // Damage the middle of every pack holding file contents only (tree packs stay
    // intact: the listing and the next backup read those).
    let packs: Vec<PathBuf> = data_packs(&env);
    assert!(!packs.is_empty());
    for p in &packs {
        let mut b = std::fs::read(p).unwrap();
        let (mid, end) = (b.len() / 2, (b.len() / 2 + 64).min(b.len()));
        for x in &mut b[mid..end] {
            *x ^= 0x5a;
        }
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::write(p, &b).unwrap();
    }
    let out = env.config_run(&cfg, &["--json", "run", "p"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rt = last_restore_test(&env, &cfg);
    assert_eq!(rt["result"], "failure", "{rt}");
    assert_eq!(rt["error_category"], "corrupt-data", "{rt}");
    let runs = json(&ok(env.config_run(&cfg, &["--json", "history", "p"])));
    assert_eq!(runs[0]["result"], "failure", "{}", runs[0]);
    let last = rx.hook_posts(None).last().cloned().unwrap();
    assert_eq!(last["event"], "failure", "{last}");
    assert_eq!(last["error_category"], "corrupt-data", "{last}");
    assert!(!env.path("state/restore-test/p").exists());
}

/// The repository's packs that hold data blobs only (by restic's reading of the index).
fn data_packs(env: &Env) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for index in ok(env.restic(&["list", "index"])).lines() {
        let v = json(&ok(env.restic(&["cat", "index", index.trim()])));
        for p in v["packs"].as_array().unwrap() {
            if p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] == "data")
            {
                let id = p["id"].as_str().unwrap();
                out.push(env.repo().join("data").join(&id[..2]).join(id));
            }
        }
    }
    out
}

/// A live SQLite database in WAL mode, with a writer holding it open and rows only in
/// its WAL: the backup stores a consistent copy, and the restore test proves it with
/// SQLite's integrity check (never a byte comparison with the live file).
#[test]
fn a_live_sqlite_database_in_wal_mode_passes_the_integrity_check() {
    let (env, cfg) = setup(3, "", "");
    let db = env.path("data/app/app.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch(
        "PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT);",
    )
    .unwrap();
    for i in 0..500 {
        c.execute("INSERT INTO t VALUES (?1, hex(randomblob(100)))", [i])
            .unwrap();
    }
    assert!(env.path("data/app/app.db-wal").exists());
    write_config(
        &env,
        &cfg,
        &format!("sqlite = [\"{}\"]", db.display()),
        // The 500 rows live only in the WAL: integrity_check alone would pass without them.
        &format!(
            "restore-test = {{ schedule = \"always\", files = 2, command = \"test $(sqlite3 \\\"$CAIRN_RESTORE_DIR{}\\\" 'select count(*) from t') = 500\" }}",
            db.display()
        ),
    );
    let v = json(&ok(env.config_run(&cfg, &["--json", "run", "p"])));
    assert_eq!(v[0]["result"], "success", "{v}");
    let rt = last_restore_test(&env, &cfg);
    assert_eq!(rt["result"], "success", "{rt}");
    assert_eq!(rt["detail"]["sqlite_checked"], 1, "{rt}");
    assert_eq!(rt["detail"]["command_exit"], 0, "{rt}");
    // 2 sampled files plus the database.
    assert_eq!(rt["detail"]["files_restored"], 3, "{rt}");
    let log = v[0]["log"].as_str().unwrap();
    assert!(log.contains("1 SQLite database(s) intact"), "{log}");
    drop(c);
}

/// verify-dumps with the real PostgreSQL: the plan's dump restored and loaded into a
/// scratch server; the command queries the restored database through PGHOST/PGPORT/PGUSER.
#[test]
fn verify_dumps_loads_the_postgres_dump_into_a_scratch_server() {
    let pg = crate::peers::postgres();
    let psql = format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    );
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!(
        "{psql} -c 'CREATE DATABASE app' && {psql} -d app -c 'CREATE TABLE t (n integer PRIMARY KEY); CREATE TABLE u (s text); INSERT INTO t SELECT generate_series(1, 42)'"
    ));
    let (env, cfg) = setup(4, "", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "restore-test = {{ schedule = \"always\", verify-dumps = true, timeout = \"2m\", command = \"test $(psql -X -tA -d app -c \\\"select count(*) from t\\\") = 42\" }}\n\
         [sources.db]\npostgres = {{ databases = [\"app\"], host = \"{}\", port = {}, user = \"postgres\" }}\n",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    ));
    text = text.replace("sources = [\"files\"]", "sources = [\"files\", \"db\"]");
    write_file(&cfg, &text);
    let out = env.config_run(&cfg, &["--json", "run", "p"]);
    let rt = last_restore_test(&env, &cfg);
    assert!(out.status.success(), "{rt}\n{}", stderr(&out));
    let dumps = rt["detail"]["dumps"].as_array().unwrap();
    assert_eq!(dumps.len(), 1, "{rt}");
    assert_eq!(
        dumps[0]["path"], "/.cairn/dumps/db/postgres-app.sql",
        "{rt}"
    );
    assert!(dumps[0]["error"].is_null(), "{rt}");
    assert_eq!(dumps[0]["databases"], serde_json::json!(["app"]), "{rt}");
    assert_eq!(dumps[0]["tables"], 2, "{rt}");
    assert_eq!(rt["detail"]["command_exit"], 0, "{rt}");
    // The live server was not touched: the count the command saw came from the scratch.
    sh(&format!("{psql} -d app -c 'DELETE FROM t WHERE n > 40'"));
    let out = env.config_run(&cfg, &["run", "p", "--only", "restore-test"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// verify-dumps with the real MariaDB: the dump loaded into a scratch server, which the
/// command reaches through MYSQL_UNIX_PORT.
#[test]
fn verify_dumps_loads_the_mariadb_dump_into_a_scratch_server() {
    let my = crate::peers::mariadb();
    let mysql = format!(
        "mariadb --no-defaults -S {} -u root",
        my.var("MYSQL_SOCKET")
    );
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!(
        "{mysql} -e 'CREATE DATABASE app; CREATE TABLE app.t (n INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO app.t VALUES (1), (2), (3)'"
    ));
    let (env, cfg) = setup(2, "", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "restore-test = {{ schedule = \"always\", mode = \"full\", verify-dumps = true, timeout = \"2m\", command = 'test \"$(mariadb --no-defaults -N -e \"select count(*) from app.t\")\" = 3 && test \"$CAIRN_MYSQL_SOCKET\" = \"$MYSQL_UNIX_PORT\"' }}\n\
         [sources.db]\nmysql = {{ databases = [\"app\"], socket = \"{}\", user = \"root\" }}\n",
        my.var("MYSQL_SOCKET")
    ));
    text = text.replace("sources = [\"files\"]", "sources = [\"files\", \"db\"]");
    write_file(&cfg, &text);
    let out = env.config_run(&cfg, &["--json", "run", "p"]);
    let rt = last_restore_test(&env, &cfg);
    assert!(out.status.success(), "{rt}\n{}", stderr(&out));
    let dumps = rt["detail"]["dumps"].as_array().unwrap();
    assert_eq!(dumps.len(), 1, "{rt}");
    assert_eq!(dumps[0]["path"], "/.cairn/dumps/db/mysql-app.sql", "{rt}");
    assert!(dumps[0]["error"].is_null(), "{rt}");
    assert_eq!(dumps[0]["tables"], 1, "{rt}");
    assert_eq!(rt["detail"]["command_exit"], 0, "{rt}");
}
