//! Consistent sources: live SQLite databases copied with the online backup API while a
//! writer keeps committing; `--source-map` recording a copy under its original path; the
//! warning for live databases nobody declared.

use crate::*;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

fn open_wal(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    // Keep committed rows in the -wal file: what a plain file copy would miss.
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

#[test]
fn live_sqlite_is_copied_consistently_while_a_writer_commits() {
    let env = Env::new();
    let hass = env.path("var/lib/hass");
    std::fs::create_dir_all(&hass).unwrap();
    std::fs::write(hass.join("configuration.yaml"), "homeassistant:\n").unwrap();
    let db = hass.join("home-assistant_v2.db");
    {
        let c = open_wal(&db);
        c.execute_batch("CREATE TABLE states (n INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            .unwrap();
    }
    // The writer: one row per transaction, as fast as it can, until told to stop.
    let committed = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, committed, stop) = (db.clone(), committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = open_wal(&db);
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                c.execute(
                    "INSERT INTO states (n, payload) VALUES (?1, zeroblob(2000))",
                    [n],
                )
                .unwrap();
                n += 1;
                committed.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    while committed.load(Ordering::SeqCst) < 2000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ok(env.cairn(&["init"]));
    let main = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    std::fs::write(
        &main,
        format!(
            "[settings]\nstate-dir = \"{}\"\n[repositories.r]\nurl = \"{}\"\npassword-file = \"{}\"\n\
             [sources.hass]\npaths = [\"{}\"]\nsqlite = [\"{}\"]\n[plans.p]\nrepository = \"r\"\nsources = [\"hass\"]\n",
            env.path("state").display(),
            env.repo().display(),
            env.path("pw").display(),
            hass.display(),
            db.display()
        ),
    )
    .unwrap();
    let before_copy = committed.load(Ordering::SeqCst);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .output()
        .unwrap();
    let during = committed.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    assert!(
        during > before_copy,
        "the writer kept committing during the backup"
    );
    assert!(
        !v[0]["log"].as_str().unwrap().contains("live SQLite"),
        "a declared database is not warned about"
    );
    assert!(
        !env.path("state/work/p").exists(),
        "the copy is removed after the backup"
    );

    // Restored by the real restic: a sound database with every row committed before the
    // copy began, as a gapless prefix (one consistent transaction), and no WAL files.
    let target = env.path("restored");
    ok(env.restic(&["restore", "latest", "--target", target.to_str().unwrap()]));
    let rdir = target.join(hass.strip_prefix("/").unwrap());
    assert!(rdir.join("configuration.yaml").exists());
    assert!(
        !rdir.join("home-assistant_v2.db-wal").exists()
            && !rdir.join("home-assistant_v2.db-shm").exists()
    );
    let r = rusqlite::Connection::open(rdir.join("home-assistant_v2.db")).unwrap();
    let check: String = r
        .query_row("PRAGMA integrity_check", [], |x| x.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (count, max): (i64, i64) = r
        .query_row("SELECT count(*), max(n) FROM states", [], |x| {
            Ok((x.get(0)?, x.get(1)?))
        })
        .unwrap();
    assert!(
        count >= before_copy,
        "rows committed before the copy: {before_copy}, restored: {count}"
    );
    assert_eq!(max, count - 1, "a consistent prefix of the writer's rows");
    assert!(count <= total);
    // The original's metadata is what was recorded.
    let ls = ok(env.cairn(&["ls", "latest", "--json"]));
    let node = ls
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|n| n["name"] == "home-assistant_v2.db")
        .unwrap();
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!(
        node["mode"].as_u64().unwrap() & 0o777,
        (meta.permissions().mode() & 0o777) as u64
    );
}

#[test]
fn an_undeclared_live_sqlite_database_gets_a_note() {
    let env = Env::new();
    let dir = env.path("app");
    std::fs::create_dir_all(&dir).unwrap();
    let c = open_wal(&dir.join("app.db"));
    c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    ok(env.cairn(&["init"]));
    let out = env.cairn(&["backup", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "a note, not a failure: {err}");
    assert!(
        err.contains("app.db is a live SQLite database") && err.contains("sqlite = ["),
        "{err}"
    );
    drop(c);
}

#[test]
fn source_map_records_a_copy_under_the_original_path() {
    let env = Env::new();
    let orig = env.path("home");
    let snap = env.path("snapshots/home-1");
    std::fs::create_dir_all(orig.join("docs")).unwrap();
    std::fs::create_dir_all(snap.join("docs")).unwrap();
    std::fs::write(orig.join("docs/a.txt"), "live, changing").unwrap();
    std::fs::write(snap.join("docs/a.txt"), "frozen").unwrap();
    ok(env.cairn(&["init"]));
    let map = format!("--source-map={}={}", orig.display(), snap.display());
    ok(env.cairn(&["backup", &map, orig.to_str().unwrap()]));
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([orig.display().to_string()])
    );
    let dumped = ok(env.restic(&["dump", "latest", orig.join("docs/a.txt").to_str().unwrap()]));
    assert_eq!(dumped, "frozen");
    // The next snapshot directory of the same data: the recorded path is the same, so the
    // first backup is found as its parent and nothing counts as new. (Re-reading is
    // avoided when inodes are kept too, as in Btrfs snapshots; `cp` makes new inodes.)
    let snap2 = env.path("snapshots/home-2");
    let cp = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&snap)
        .arg(&snap2)
        .status()
        .unwrap();
    assert!(cp.success());
    let map2 = format!("--source-map={}={}", orig.display(), snap2.display());
    let out = ok(env.cairn(&["--json", "backup", &map2, orig.to_str().unwrap()]));
    let v = json(&out);
    assert_eq!(v["parent"], snaps[0]["id"], "{v}");
    assert_eq!(v["files_new"], 0, "{v}");
}
