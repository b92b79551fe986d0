//! Consistent sources: live SQLite databases copied with the online backup API while a
//! writer keeps committing; `--source-map` recording a copy under its original path; the
//! warning for live databases nobody declared.

use crate::*;
use std::os::unix::process::CommandExt;
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

/// Writes `cfg/cairn.toml`: a scratch state directory, repository `r` at `repo_url` with
/// the env's password (plus `repo_extra` keys), then `rest` (sources and plan `p`).
fn plan_config(env: &Env, repo_url: &str, repo_extra: &str, rest: &str) -> PathBuf {
    let main = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    std::fs::write(
        &main,
        format!(
            "[settings]\nstate-dir = \"{}\"\n[repositories.r]\nurl = \"{repo_url}\"\npassword-file = \"{}\"\n{repo_extra}\n{rest}",
            env.path("state").display(),
            env.path("pw").display()
        ),
    )
    .unwrap();
    main
}

/// An executable shell script `bin/name`.
fn fake_tool(bin: &Path, name: &str, script: &str) {
    std::fs::write(bin.join(name), script).unwrap();
    std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
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
    let main = plan_config(
        &env,
        &env.repo().display().to_string(),
        "",
        &format!(
            "[sources.hass]\npaths = [\"{}\"]\nsqlite = [\"{}\"]\n[plans.p]\nrepository = \"r\"\nsources = [\"hass\"]\n",
            hass.display(), db.display()
        ),
    );
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
        !env.path("state/work/p/sqlite").exists(),
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

// ---- filesystem snapshots -------------------------------------------------------------------

/// A Btrfs filesystem on a loop device with a subvolume `vol`; unmounted and detached on drop.
struct Btrfs {
    dir: tempfile::TempDir,
    loopdev: String,
}

impl Btrfs {
    fn new() -> Btrfs {
        for (p, pkg) in [("mkfs.btrfs", "btrfs-progs"), ("losetup", "mount")] {
            assert!(
                Command::new(p).arg("--version").output().is_ok(),
                "{p} is needed: apt-get install {pkg} (scripts/test.sh does it)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-btrfs")
            .tempdir()
            .unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let run = |c: &mut Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        run(Command::new("truncate").args(["-s", "400M"]).arg(&img));
        run(Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&img));
        let loopdev = run(Command::new("losetup").args(["--find", "--show"]).arg(&img));
        run(Command::new("mount")
            .args(["-t", "btrfs", &loopdev])
            .arg(&mnt));
        run(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(mnt.join("vol")));
        Btrfs { dir, loopdev }
    }
    fn vol(&self) -> PathBuf {
        self.dir.path().join("mnt/vol")
    }
    fn cairn_snapshots(&self) -> Vec<String> {
        let out = Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(self.dir.path().join("mnt"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("cairn-"))
            .map(String::from)
            .collect()
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.dir.path().join("mnt"))
            .status();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

fn btrfs_config(env: &Env, repo_url: &str, vol: &Path, extra_repo: &str) -> PathBuf {
    plan_config(
        env,
        repo_url,
        extra_repo,
        &format!(
            "[sources.home]\npaths = [\"{}\"]\nsnapshot = {{ kind = \"btrfs\" }}\n[plans.p]\nrepository = \"r\"\nsources = [\"home\"]\n",
            vol.display()
        ),
    )
}

fn run_plan(main: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(main)
        .args(["--json", "run", "p"])
        .output()
        .unwrap();
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}\n{v}", stderr(&out));
    v
}

/// A plan on a Btrfs subvolume backs up from a read-only snapshot recorded under the
/// subvolume's own path, deletes it afterwards, and a second run reads nothing.
#[test]
fn btrfs_plans_back_up_from_a_snapshot_and_unchanged_data_is_not_read_again() {
    let fs = Btrfs::new();
    let vol = fs.vol();
    std::fs::create_dir_all(vol.join("docs")).unwrap();
    for i in 0..200u64 {
        std::fs::write(vol.join(format!("docs/f{i}")), random_bytes(i, 10_000)).unwrap();
    }
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let main = btrfs_config(&env, &env.repo().display().to_string(), &vol, "");
    let v = run_plan(&main);
    let log = v[0]["log"].as_str().unwrap();
    assert!(
        log.contains("== snapshot of") && log.contains("deleted snapshot"),
        "{log}"
    );
    assert!(
        fs.cairn_snapshots().is_empty(),
        "snapshot left behind: {:?}",
        fs.cairn_snapshots()
    );
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([vol.display().to_string()]),
        "recorded under the original path"
    );
    let listing = ok(env.restic(&["ls", "latest"]));
    assert!(listing.contains(&vol.join("docs/f199").display().to_string()));
    assert!(!listing.contains(".cairn-snapshots"), "{listing}");

    // Second run: a new snapshot (new device, same inodes and times): nothing is re-read.
    let v = run_plan(&main);
    let log = v[0]["log"].as_str().unwrap();
    assert!(
        log.contains("200 unmodified") && log.contains(", 0 B read,"),
        "{log}"
    );
    ok(env.restic(&["check", "--read-data"]));
    let t = env.path("restored");
    ok(env.restic(&["restore", "latest", "--target", t.to_str().unwrap()]));
    assert_same_tree(
        &vol.join("docs"),
        &t.join(vol.strip_prefix("/").unwrap()).join("docs"),
    );
}

/// A run killed (SIGKILL, with its child) while backing up from a snapshot leaves the
/// snapshot; the next run removes it first and leaves none behind itself.
#[test]
fn btrfs_snapshot_left_by_a_killed_run_is_swept_by_the_next() {
    let fs = Btrfs::new();
    let vol = fs.vol();
    std::fs::write(vol.join("big"), random_bytes(7, 12 << 20)).unwrap();
    let p = crate::peers::rest();
    let env = Env::new();
    let url = format!("rest:{}/repo", p.var("REST_URL").trim_end_matches('/'));
    let creds = env.path("rest.env");
    std::fs::write(
        &creds,
        format!(
            "RESTIC_REST_USERNAME={}\nRESTIC_REST_PASSWORD={}\n",
            p.var("REST_USER"),
            p.var("REST_PASS")
        ),
    )
    .unwrap();
    let mut init = env.cairn_cmd(Path::new(&url), &["init"]);
    init.env("RESTIC_REST_USERNAME", p.var("REST_USER"))
        .env("RESTIC_REST_PASSWORD", p.var("REST_PASS"));
    ok(init.output().unwrap());
    // Slow uploads so the run can be killed mid-backup.
    let main = btrfs_config(
        &env,
        &url,
        &vol,
        &format!("env-file = \"{}\"\nlimit-upload = 2048", creds.display()),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["run", "p"])
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while fs.cairn_snapshots().is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no snapshot was made"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    assert_eq!(
        fs.cairn_snapshots().len(),
        1,
        "the killed run left its snapshot"
    );
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("limit-upload = 2048", "");
    std::fs::write(&main, text).unwrap();
    let v = run_plan(&main);
    assert!(
        v[0]["log"]
            .as_str()
            .unwrap()
            .contains("left by an interrupted run"),
        "{}",
        v[0]["log"]
    );
    assert!(
        fs.cairn_snapshots().is_empty(),
        "{:?}",
        fs.cairn_snapshots()
    );
    // Debian's restic (0.14) predates RESTIC_REST_USERNAME: credentials in its URL.
    let restic_url = url.replacen(
        "://",
        &format!("://{}:{}@", p.var("REST_USER"), p.var("REST_PASS")),
        1,
    );
    let mut check = Command::new(restic_bin());
    // --no-lock: the killed backup's lock names a pid that may linger as an unreaped
    // zombie in a container, which restic then takes for a live process.
    check
        .args([
            "-r",
            &restic_url,
            "--no-cache",
            "--no-lock",
            "--password-file",
        ])
        .arg(env.path("pw"))
        .args(["check"]);
    ok(check.output().unwrap());
}

/// ZFS cannot run here (no kernel module), so this test runs cairn against a recorded
/// command interface: a fake `zfs` on PATH that logs every call and acts out what ZFS
/// does (a snapshot appears under MOUNTPOINT/.zfs/snapshot/NAME, a read-only copy).
/// It proves the calls cairn makes and that the backup is recorded under the dataset's
/// mount point, not the snapshot directory. SIMULATED — not a real ZFS.
#[test]
fn zfs_snapshots_against_a_recorded_command_interface() {
    let env = Env::new();
    let mnt = env.path("tank/data");
    std::fs::create_dir_all(mnt.join("db")).unwrap();
    std::fs::write(mnt.join("db/file"), "at snapshot time").unwrap();
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = env.path("zfs.calls");
    let fake = format!(
        r#"#!/bin/sh
echo "$@" >> {calls}
case "$1" in
  list)
    if [ "$5" = snapshot ] || [ "$6" = snapshot ]; then ls {mnt}/.zfs/snapshot 2>/dev/null | sed 's/^/tank\/data@/'; exit 0; fi
    printf 'tank\t/tank\ntank/data\t{mnt}\n' ;;
  snapshot)
    name="${{2#*@}}"; mkdir -p {mnt}/.zfs/snapshot/"$name"
    (cd {mnt} && tar cf - --exclude=./.zfs .) | (cd {mnt}/.zfs/snapshot/"$name" && tar xf -) ;;
  destroy)
    name="${{2#*@}}"; rm -rf {mnt}/.zfs/snapshot/"$name" ;;
  *) echo "unexpected zfs $*" >&2; exit 1 ;;
esac
"#,
        calls = calls.display(),
        mnt = mnt.display()
    );
    fake_tool(&bin, "zfs", &fake);
    // A leftover from a crashed run, to be swept.
    std::fs::create_dir_all(mnt.join(".zfs/snapshot/cairn-p-1700000000-42")).unwrap();
    ok(env.cairn(&["init"]));
    let main = plan_config(
        &env,
        &env.repo().display().to_string(),
        "",
        &format!(
            "[plans.p]\nrepository = \"r\"\npaths = [\"{}\"]\nexclude = [\"/**/.zfs\"]\nsnapshot = {{ kind = \"zfs\" }}\n",
            mnt.join("db").display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = std::fs::read_to_string(&calls).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert!(
        calls.contains(&"destroy tank/data@cairn-p-1700000000-42"),
        "leftover swept: {calls:?}"
    );
    let snap = calls
        .iter()
        .find_map(|c| c.strip_prefix("snapshot tank/data@"))
        .expect("a snapshot was made")
        .to_string();
    assert!(
        calls
            .last()
            .unwrap()
            .ends_with(&format!("destroy tank/data@{snap}")),
        "deleted last: {calls:?}"
    );
    assert!(!mnt.join(".zfs/snapshot").join(&snap).exists());
    let listing = ok(env.restic(&["ls", "latest"]));
    assert!(
        listing.contains(&mnt.join("db/file").display().to_string()),
        "{listing}"
    );
    assert!(!listing.contains(".zfs"), "{listing}");
    let dumped = ok(env.restic(&["dump", "latest", mnt.join("db/file").to_str().unwrap()]));
    assert_eq!(dumped, "at snapshot time");
}

// ---- database dumps -------------------------------------------------------------------------

/// A plan whose only source is a database dump; returns the config path.
fn dump_config(env: &Env, source: &str) -> PathBuf {
    plan_config(
        env,
        &env.repo().display().to_string(),
        "",
        &format!("[sources.db]\n{source}\n[plans.p]\nrepository = \"r\"\nsources = [\"db\"]\n"),
    )
}

/// Commits one row per client call until stopped; returns the shared commit counter.
fn writer(
    insert: impl Fn(i64) -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicI64>, std::thread::JoinHandle<()>) {
    let committed = Arc::new(AtomicI64::new(0));
    let c = committed.clone();
    let h = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            assert!(sh(&insert(n)), "insert {n} failed");
            n += 1;
            c.store(n, Ordering::SeqCst);
        }
    });
    (committed, h)
}

/// PostgreSQL (the real server): a dump streamed into the snapshot while a writer
/// commits; restored with the documented one-liner it has every row committed before the
/// run began, as one consistent prefix.
#[test]
fn postgres_dump_is_streamed_consistent_and_restores_with_one_command() {
    let pg = crate::peers::postgres();
    let psql = format!(
        "psql -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres",
        pg.var("PG_HOST"),
        pg.var("PG_PORT")
    );
    assert!(sh(&format!("{psql} -c 'CREATE DATABASE app' && {psql} -d app -c 'CREATE TABLE t (n integer PRIMARY KEY, pad text)'")));
    let stop = Arc::new(AtomicBool::new(false));
    let p2 = psql.clone();
    let (committed, h) = writer(
        move |n| format!("{p2} -d app -c \"INSERT INTO t VALUES ({n}, repeat('x', 500))\""),
        stop.clone(),
    );
    while committed.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let main = dump_config(
        &env,
        &format!(
            "postgres = {{ databases = [\"app\"], host = \"{}\", port = {}, user = \"postgres\" }}",
            pg.var("PG_HOST"),
            pg.var("PG_PORT")
        ),
    );
    let before = committed.load(Ordering::SeqCst);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    let listing = ok(env.restic(&["ls", "latest"]));
    assert!(
        listing.contains("/.cairn/dumps/db/postgres-app.sql"),
        "{listing}"
    );
    // The documented restore: cairn dump ... | psql, into a fresh database.
    assert!(sh(&format!("{psql} -c 'CREATE DATABASE restored'")));
    let cairn = env!("CARGO_BIN_EXE_cairn");
    assert!(sh(&format!(
        "{cairn} -r {} --password-file {} dump latest /.cairn/dumps/db/postgres-app.sql | {psql} -d restored >/dev/null",
        env.repo().display(),
        env.path("pw").display()
    )));
    let got = sh_out(&format!(
        "{psql} -d restored -tA -c 'SELECT count(*), max(n) FROM t'"
    ));
    let (count, max) = got.split_once('|').unwrap();
    let (count, max): (i64, i64) = (count.parse().unwrap(), max.parse().unwrap());
    assert!(
        count >= before,
        "rows committed before the run: {before}, restored: {count}"
    );
    assert_eq!(max, count - 1, "a consistent prefix");
}

#[test]
fn a_failing_dump_fails_the_run_and_saves_no_snapshot() {
    let pg = crate::peers::postgres();
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let main = dump_config(
        &env,
        &format!(
            "postgres = {{ databases = [\"no_such_db\"], host = \"{}\", port = {} }}",
            pg.var("PG_HOST"),
            pg.var("PG_PORT")
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        v[0]["error"]
            .as_str()
            .unwrap()
            .contains("no snapshot was saved"),
        "{v}"
    );
    assert_eq!(
        json(&ok(env.restic(&["snapshots", "--json"])))
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// MariaDB (the real server): the same with mysqldump --single-transaction.
#[test]
fn mariadb_dump_is_streamed_consistent_and_restores_with_one_command() {
    let my = crate::peers::mariadb();
    let mysql = format!(
        "mariadb --no-defaults -S {} -u root",
        my.var("MYSQL_SOCKET")
    );
    assert!(sh(&format!("{mysql} -e 'CREATE DATABASE app; CREATE TABLE app.t (n INT PRIMARY KEY, pad TEXT) ENGINE=InnoDB'")));
    let stop = Arc::new(AtomicBool::new(false));
    let m2 = mysql.clone();
    let (committed, h) = writer(
        move |n| format!("{m2} app -e \"INSERT INTO t VALUES ({n}, REPEAT('x', 500))\""),
        stop.clone(),
    );
    while committed.load(Ordering::SeqCst) < 50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let main = dump_config(
        &env,
        &format!(
            "mysql = {{ databases = [\"app\"], socket = \"{}\", user = \"root\" }}",
            my.var("MYSQL_SOCKET")
        ),
    );
    let before = committed.load(Ordering::SeqCst);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    // The documented restore: cairn dump ... | mysql (the dump recreates the database).
    assert!(sh(&format!("{mysql} -e 'DROP DATABASE app'")));
    let cairn = env!("CARGO_BIN_EXE_cairn");
    assert!(sh(&format!(
        "{cairn} -r {} --password-file {} dump latest /.cairn/dumps/db/mysql-app.sql | {mysql}",
        env.repo().display(),
        env.path("pw").display()
    )));
    let got = sh_out(&format!(
        "{mysql} -N -e 'SELECT count(*), max(n) FROM app.t'"
    ));
    let mut it = got.split_whitespace();
    let (count, max): (i64, i64) = (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    );
    assert!(
        count >= before,
        "rows committed before the run: {before}, restored: {count}"
    );
    assert_eq!(max, count - 1, "a consistent prefix");
}

/// LVM cannot run here (no device-mapper in this container), so this test runs cairn
/// against a recorded command interface: fake `findmnt`, `lvs`, `lvcreate`, `lvremove`,
/// `mount` and `umount` on PATH that log every call and act out LVM (a snapshot LV that,
/// once "mounted", shows the origin's files as they were). It proves the calls, their
/// order, the sweep of a leftover, and that files are recorded under the origin's mount
/// point. SIMULATED — not a real LVM.
#[test]
fn lvm_snapshots_against_a_recorded_command_interface() {
    let env = Env::new();
    let origin = env.path("srv");
    std::fs::create_dir_all(origin.join("www")).unwrap();
    std::fs::write(origin.join("www/index.html"), "at snapshot time").unwrap();
    let st = env.path("lvmstate");
    std::fs::create_dir_all(&st).unwrap();
    std::fs::write(
        st.join("lvs"),
        "vg0,cairn-p-1700000000-42,/dev/vg0/cairn-p-1700000000-42\n",
    )
    .unwrap();
    std::fs::write(st.join("mounts"), "").unwrap();
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (o, s) = (origin.display().to_string(), st.display().to_string());
    let tools = [
        (
            "findmnt",
            format!(
                r#"case "$*" in
  *--target*) echo "/dev/mapper/vg0-data {o} ext4" ;;
  *--source*) for last; do :; done; grep "^$last " {s}/mounts | cut -d' ' -f2 ;;
esac"#
            ),
        ),
        (
            "lvs",
            format!(
                r#"for last; do :; done
case "$last" in
  /dev/mapper/vg0-data) echo "  vg0,data" ;;
  *) echo "  vg0,data,/dev/vg0/data"; sed 's/^/  /' {s}/lvs ;;
esac"#
            ),
        ),
        (
            "lvcreate",
            format!(r#"name=$3; echo "vg0,$name,/dev/vg0/$name" >> {s}/lvs"#),
        ),
        (
            "lvremove",
            format!(
                r#"name="${{2#vg0/}}"; grep -v ",$name," {s}/lvs > {s}/lvs.new || true; mv {s}/lvs.new {s}/lvs"#
            ),
        ),
        (
            "mount",
            format!(r#"dev=$3; dir=$4; cp -a {o}/. "$dir"/; echo "$dev $dir" >> {s}/mounts"#),
        ),
        (
            "umount",
            format!(
                r#"rm -rf "$1"/* ; grep -v " $1\$" {s}/mounts > {s}/mounts.new || true; mv {s}/mounts.new {s}/mounts"#
            ),
        ),
    ];
    for (name, body) in tools {
        fake_tool(
            &bin,
            name,
            &format!("#!/bin/sh\necho \"{name} $*\" >> {s}/calls\n{body}\n"),
        );
    }
    ok(env.cairn(&["init"]));
    let main = plan_config(
        &env,
        &env.repo().display().to_string(),
        "",
        &format!(
            "[sources.www]\npaths = [\"{}\"]\nsnapshot = {{ kind = \"lvm\" }}\n[plans.p]\nrepository = \"r\"\nsources = [\"www\"]\n",
            origin.join("www").display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&main)
        .args(["--json", "run", "p"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let calls = std::fs::read_to_string(st.join("calls")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    let pos = |prefix: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {calls:?}"))
    };
    assert!(
        pos("lvremove -f vg0/cairn-p-1700000000-42") < pos("lvcreate --snapshot"),
        "leftover swept first: {calls:?}"
    );
    assert!(pos("lvcreate --snapshot") < pos("mount -o ro /dev/vg0/cairn-p-"));
    assert!(pos("mount -o ro") < pos("umount"));
    assert!(
        calls
            .last()
            .unwrap()
            .starts_with("lvremove -f vg0/cairn-p-"),
        "removed last: {calls:?}"
    );
    assert_eq!(
        std::fs::read_to_string(st.join("lvs")).unwrap(),
        "",
        "no snapshot LV left"
    );
    let listing = ok(env.restic(&["ls", "latest"]));
    assert!(
        listing.contains(&origin.join("www/index.html").display().to_string()),
        "{listing}"
    );
    assert!(!listing.contains("state/work"), "{listing}");
}
