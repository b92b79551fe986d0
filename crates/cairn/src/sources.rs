//! Consistent sources: what runs before a plan's backup so that what is stored is a
//! consistent state, not a torn one.
//!
//! SQLite: a live database is copied with SQLite's online backup API (all pages in one
//! step, under one read transaction: with WAL the service keeps writing meanwhile), into
//! the plan's work directory; the backup then stores the copy at the database's own path
//! (`cairn backup --source-map DB=COPY`) and leaves its `-wal`, `-shm` and `-journal`
//! files out — the copy already contains every transaction committed before it began.
//! Copies are removed after the backup, whatever its result.

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` and its missing parents 0700 (explicitly, whatever the umask); an
/// existing `dir` is narrowed to 0700 (it is cairn's own work directory).
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (0700)", dir.display()))
}

/// A consistent copy of the SQLite database `db` at `dest` (a file that must not exist).
pub fn sqlite_copy(db: &Path, dest: &Path) -> Result<()> {
    anyhow::ensure!(
        db.is_file(),
        "SQLite database {} does not exist (is the service installed, its disk mounted?)",
        db.display()
    );
    // Read-only first: such a connection never checkpoints or deletes the service's WAL
    // when it closes. Some setups (no -shm yet, read-only directory) need read-write.
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_else(|_| {
        Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    })
    .with_context(|| format!("cannot open SQLite database {}", db.display()))?;
    src.busy_timeout(std::time::Duration::from_secs(60))?;
    // Owner-only until it is complete, then the original's mode and owner: the copy is
    // stored in its place and must be no more readable than the database.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut dst =
        Connection::open(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .with_context(|| format!("cannot start the online backup of {}", db.display()))?;
        // -1: every page in one step, so the copy is one consistent read transaction. A
        // writer holding a lock at that instant makes the step busy: try again shortly,
        // for up to a minute.
        use rusqlite::backup::StepResult;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match backup
                .step(-1)
                .with_context(|| format!("online backup of {} failed", db.display()))?
            {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "online backup of {}: the database stayed locked for a minute",
                        db.display()
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    // The copy is a standalone file: no WAL to carry along.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .with_context(|| format!("finishing the copy of {}", db.display()))?;
    drop(dst);
    let meta = std::fs::metadata(db).with_context(|| format!("cannot stat {}", db.display()))?;
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid())).with_context(|| {
        format!(
            "cannot give the copy {} the owner of {} (uid {}, gid {})",
            dest.display(),
            db.display(),
            meta.uid(),
            meta.gid()
        )
    })?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("cannot set the mode of {}", dest.display()))?;
    Ok(())
}

/// Copies every database of `dbs` into `work`; returns `(database, copy)` pairs. On an
/// error, the copies made so far are removed.
pub fn sqlite_copies(dbs: &[PathBuf], work: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let _ = std::fs::remove_dir_all(work);
    let mut out = Vec::new();
    for (i, db) in dbs.iter().enumerate() {
        let dir = work.join(format!("sqlite-{i}"));
        // 0700: the copies keep the databases' own modes, the directory keeps others out.
        private_dir(&dir)?;
        let dest = dir.join(db.file_name().unwrap_or_default());
        if let Err(e) = sqlite_copy(db, &dest) {
            let _ = std::fs::remove_dir_all(work);
            return Err(e);
        }
        out.push((db.clone(), dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_has_every_committed_row_and_passes_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER); PRAGMA wal_autocheckpoint = 0;")
            .unwrap();
        for i in 0..1000 {
            c.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        // Committed rows live in the -wal file only (no checkpoint): a plain copy of the
        // main file would miss them.
        assert!(dir.path().join("app.db-wal").exists());
        let copy = dir.path().join("copy.db");
        sqlite_copy(&db, &copy).unwrap();
        let k = Connection::open(&copy).unwrap();
        let n: i64 = k
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1000);
        let ok: String = k
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        assert!(
            dir.path().join("app.db-wal").exists(),
            "the service's WAL is left alone"
        );
        assert!(sqlite_copy(&dir.path().join("missing.db"), &dir.path().join("x.db")).is_err());
    }
}

// ---- database dumps ---------------------------------------------------------------------

/// Where dumps live in a snapshot: outside every path read from disk.
pub const DUMP_ROOT: &str = "/.cairn/dumps";

/// The database servers cairn dumps (and loads dumps back into).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbEngine {
    Postgres,
    Mysql,
}

/// How to reach a database server: a source's `postgres`/`mysql` settings, or a scratch
/// server cairn started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DbConn {
    pub user: Option<String>,
    /// Host name, or the socket directory (PostgreSQL).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Socket file (MySQL/MariaDB).
    pub socket: Option<String>,
}

/// One database dump of a source: what the backup streams into the snapshot, and what a
/// restore needs to load it back.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Dump {
    /// The source that declared it.
    pub source: String,
    /// Its path in the snapshot (under [`DUMP_ROOT`]).
    pub path: PathBuf,
    /// The shell command writing the dump to stdout.
    pub command: String,
    pub engine: DbEngine,
    /// The database dumped; `None`: every database (`pg_dumpall`, `--all-databases`).
    pub database: Option<String>,
    /// The server it came from, where a restore loads it back.
    pub conn: DbConn,
}

fn conn_of(d: &crate::config::raw::DbDump) -> DbConn {
    DbConn {
        user: d.user.clone(),
        host: d.host.clone(),
        port: d.port,
        socket: d.socket.clone(),
    }
}

/// `s` quoted for `sh -c`.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn join(args: &[String]) -> String {
    args.iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// PostgreSQL: one `pg_dump` per database (a consistent snapshot of each, plain SQL), or
/// `pg_dumpall` for everything. Restore: `cairn dump latest PATH | psql -d DB` (for all:
/// `| psql -d postgres`).
pub fn postgres_dumps(source: &str, d: &crate::config::raw::DbDump) -> Vec<Dump> {
    let dump = |path: PathBuf, command: String, database: Option<&String>| Dump {
        source: source.to_string(),
        path,
        command,
        engine: DbEngine::Postgres,
        database: database.cloned(),
        conn: conn_of(d),
    };
    let mut common = vec!["--no-password".to_string()];
    if let Some(h) = &d.host {
        common.push(format!("--host={h}"));
    }
    if let Some(p) = d.port {
        common.push(format!("--port={p}"));
    }
    if let Some(u) = &d.user {
        common.push(format!("--username={u}"));
    }
    common.extend(d.args.iter().cloned());
    let dir = PathBuf::from(DUMP_ROOT).join(source);
    if d.databases.is_empty() {
        let mut a = vec!["pg_dumpall".to_string()];
        a.extend(common);
        return vec![dump(dir.join("postgres-all.sql"), join(&a), None)];
    }
    d.databases
        .iter()
        .map(|db| {
            let mut a = vec!["pg_dump".to_string()];
            a.extend(common.iter().cloned());
            a.push(format!("--dbname={}", pg_dbname(db)));
            dump(dir.join(format!("postgres-{db}.sql")), join(&a), Some(db))
        })
        .collect()
}

/// A database name for `pg_dump --dbname`: one with `=` or a URI prefix would be read as a
/// connection string, so such a name is passed as one (`dbname='...'`, libpq's quoting).
fn pg_dbname(db: &str) -> String {
    if db.contains('=') || db.starts_with("postgres://") || db.starts_with("postgresql://") {
        format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
    } else {
        db.to_string()
    }
}

/// MySQL/MariaDB: `mysqldump --single-transaction` (a consistent snapshot of InnoDB
/// tables without locking them) with routines, events and triggers, one file per
/// database (with its CREATE DATABASE) or `--all-databases`. Restore:
/// `cairn dump latest PATH | mysql`.
pub fn mysql_dumps(source: &str, d: &crate::config::raw::DbDump) -> Vec<Dump> {
    let dump = |path: PathBuf, command: String, database: Option<&String>| Dump {
        source: source.to_string(),
        path,
        command,
        engine: DbEngine::Mysql,
        database: database.cloned(),
        conn: conn_of(d),
    };
    let mut common: Vec<String> = [
        "mysqldump",
        "--single-transaction",
        "--quick",
        "--routines",
        "--events",
        "--triggers",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(s) = &d.socket {
        common.push(format!("--socket={s}"));
    }
    if let Some(h) = &d.host {
        common.push(format!("--host={h}"));
    }
    if let Some(p) = d.port {
        common.push(format!("--port={p}"));
    }
    if let Some(u) = &d.user {
        common.push(format!("--user={u}"));
    }
    common.extend(d.args.iter().cloned());
    let dir = PathBuf::from(DUMP_ROOT).join(source);
    if d.databases.is_empty() {
        let mut a = common;
        a.push("--all-databases".into());
        return vec![dump(dir.join("mysql-all.sql"), join(&a), None)];
    }
    d.databases
        .iter()
        .map(|db| {
            let mut a = common.clone();
            a.extend(["--databases".to_string(), db.clone()]);
            dump(dir.join(format!("mysql-{db}.sql")), join(&a), Some(db))
        })
        .collect()
}

// ---- filesystem snapshots ------------------------------------------------------------------

/// The kinds of filesystem snapshot a source can be backed up from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    Btrfs,
    Zfs,
    Lvm,
}

/// A read-only snapshot made for one backup: back up `actual` as `recorded`.
#[derive(Debug, Clone)]
pub struct FsSnapshot {
    pub kind: SnapshotKind,
    /// The subvolume or dataset mount point, as recorded in the backup.
    pub recorded: PathBuf,
    /// Where the snapshot's files are.
    pub actual: PathBuf,
    /// What to delete afterwards: a path (btrfs), `dataset@name` (zfs), `vg/lv` (lvm).
    handle: String,
}

/// Snapshot names: `cairn-<plan>-<unix time>-<pid>`, so leftovers of a plan are found.
fn snapshot_name(plan: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("cairn-{plan}-{t}-{}", std::process::id())
}

/// A parsed snapshot name: `(plan, unix time, pid)`. Plan names may contain `-`, so the
/// two numbers are taken from the right and the rest is the whole plan name: `db`'s
/// snapshots and `db-2`'s never match each other.
fn parse_name(name: &str) -> Option<(&str, u64, u32)> {
    let mut parts = name.rsplitn(3, '-');
    let pid = parts.next()?;
    let time = parts.next()?;
    let plan = parts.next()?.strip_prefix("cairn-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if plan.is_empty() || !digits(pid) || !digits(time) {
        return None;
    }
    Some((plan, time.parse().ok()?, pid.parse().ok()?))
}

/// Whether the process `pid` may be the run that made a snapshot at `time`: it exists,
/// is not this process, and did not start after the snapshot was made (a reused pid).
fn maybe_alive(pid: u32, time: u64) -> bool {
    if pid == std::process::id() {
        // The caller holds the plan's lock: no other run of the plan is in this process.
        return false;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    process_start(pid).is_none_or(|started| started <= time + 2)
}

/// When `pid` started (Unix seconds), from /proc; `None` if unknown.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // field 22 is the start time in clock ticks (USER_HZ, 100 on Linux) since boot.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / 100)
}

/// A snapshot of `plan` whose run is dead: removable.
fn leftover(name: &str, plan: &str) -> bool {
    parse_name(name).is_some_and(|(p, time, pid)| p == plan && !maybe_alive(pid, time))
}

fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Btrfs: the subvolume holding `path` (its root directory has inode 256).
pub fn btrfs_subvolume(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let fs = nix::sys::statfs::statfs(path)
        .with_context(|| format!("cannot stat {}", path.display()))?;
    anyhow::ensure!(
        fs.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC,
        "{} is not on a Btrfs filesystem: use snapshot kind \"zfs\" for ZFS, or remove `snapshot`",
        path.display()
    );
    let mut p = path.to_path_buf();
    loop {
        let m = std::fs::metadata(&p).with_context(|| format!("cannot stat {}", p.display()))?;
        if m.ino() == 256 {
            return Ok(p);
        }
        p = p
            .parent()
            .map(Path::to_path_buf)
            .with_context(|| format!("no Btrfs subvolume holds {}", path.display()))?;
    }
}

/// The directory inside a subvolume where cairn keeps its snapshots of it.
pub const BTRFS_DIR: &str = ".cairn-snapshots";

/// ZFS: the dataset mounted at or above `path`, and its mount point.
fn zfs_dataset(path: &Path) -> Result<(String, PathBuf)> {
    let out = run_tool(
        "zfs",
        &["list", "-H", "-o", "name,mountpoint", "-t", "filesystem"],
    )?;
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, m)| (n.to_string(), PathBuf::from(m)))
        .filter(|(_, m)| m.is_absolute() && path.starts_with(m))
        .max_by_key(|(_, m)| m.components().count())
        .with_context(|| format!("no ZFS dataset is mounted at or above {}", path.display()))
}

/// LVM: the logical volume mounted at or above `path`: (`vg/lv`, mount point, fs type).
fn lvm_origin(path: &Path) -> Result<(String, PathBuf, String)> {
    let p = path.display().to_string();
    let out = run_tool(
        "findmnt",
        &["-n", "-o", "SOURCE,TARGET,FSTYPE", "--target", &p],
    )?;
    let mut f = out.split_whitespace();
    let (dev, target, fstype) = match (f.next(), f.next(), f.next()) {
        (Some(d), Some(t), Some(ty)) => (d.to_string(), PathBuf::from(t), ty.to_string()),
        _ => anyhow::bail!("cannot tell which filesystem holds {p} (findmnt said {out:?})"),
    };
    let lv = run_tool(
        "lvs",
        &[
            "--noheadings",
            "--separator",
            ",",
            "-o",
            "vg_name,lv_name",
            &dev,
        ],
    )
    .with_context(|| format!("{p} is on {dev}, which is not an LVM logical volume"))?;
    let lv = lv.trim();
    let (vg, name) = lv
        .split_once(',')
        .with_context(|| format!("{p} is on {dev}, which is not an LVM logical volume"))?;
    Ok((format!("{}/{}", vg.trim(), name.trim()), target, fstype))
}

fn lvm_remove(vg_lv: &str, lv_path: &str) -> Result<()> {
    if let Ok(mounted) = run_tool("findmnt", &["-n", "-o", "TARGET", "--source", lv_path]) {
        for dir in mounted.lines().filter(|l| !l.trim().is_empty()) {
            run_tool("umount", &[dir.trim()])?;
            let _ = std::fs::remove_dir(dir.trim());
        }
    }
    run_tool("lvremove", &["-f", vg_lv]).map(|_| ())
}

/// Deletes the snapshots a crashed run of `plan` left behind; returns what was removed.
/// Only the caller holding the plan's lock may sweep (so no other run of the plan is
/// live); a snapshot whose embedded pid still runs is kept all the same.
pub fn sweep(
    kind: SnapshotKind,
    path: &Path,
    plan: &str,
    _held: &crate::run::lock::PlanLock,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    match kind {
        SnapshotKind::Btrfs => {
            let dir = btrfs_subvolume(path)?.join(BTRFS_DIR);
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if leftover(&name, plan) {
                        let p = e.path();
                        run_tool("btrfs", &["subvolume", "delete", &p.display().to_string()])?;
                        removed.push(p.display().to_string());
                    }
                }
            }
        }
        SnapshotKind::Lvm => {
            let out = run_tool(
                "lvs",
                &[
                    "--noheadings",
                    "--separator",
                    ",",
                    "-o",
                    "vg_name,lv_name,lv_path",
                ],
            )?;
            for line in out.lines() {
                let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
                if let [vg, lv, lv_path] = f.as_slice() {
                    if leftover(lv, plan) {
                        lvm_remove(&format!("{vg}/{lv}"), lv_path)?;
                        removed.push(format!("{vg}/{lv}"));
                    }
                }
            }
        }
        SnapshotKind::Zfs => {
            let (dataset, _) = zfs_dataset(path)?;
            let out = run_tool(
                "zfs",
                &["list", "-H", "-o", "name", "-t", "snapshot", "-r", &dataset],
            )?;
            for snap in out.lines() {
                if let Some((ds, name)) = snap.split_once('@') {
                    if ds == dataset && leftover(name, plan) {
                        run_tool("zfs", &["destroy", snap])?;
                        removed.push(snap.to_string());
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// Makes a read-only snapshot of the subvolume or dataset holding `path`.
/// LVM snapshots are mounted read-only under `work`.
pub fn snapshot(kind: SnapshotKind, path: &Path, plan: &str, work: &Path) -> Result<FsSnapshot> {
    let name = snapshot_name(plan);
    match kind {
        SnapshotKind::Lvm => {
            let (origin, mountpoint, fstype) = lvm_origin(path)?;
            let vg = origin.split('/').next().unwrap_or_default().to_string();
            run_tool(
                "lvcreate",
                &[
                    "--snapshot",
                    "--name",
                    &name,
                    "--extents",
                    "10%ORIGIN",
                    &origin,
                ],
            )?;
            let handle = format!("{vg}/{name}");
            let dir = work.join("lvm").join(&name);
            let mounted = private_dir(&dir).and_then(|_| {
                // XFS refuses a second mount of the same filesystem UUID without nouuid.
                let opts = if fstype == "xfs" { "ro,nouuid" } else { "ro" };
                run_tool(
                    "mount",
                    &[
                        "-o",
                        opts,
                        &format!("/dev/{handle}"),
                        &dir.display().to_string(),
                    ],
                )
            });
            if let Err(e) = mounted {
                let _ = run_tool("lvremove", &["-f", &handle]);
                return Err(e);
            }
            Ok(FsSnapshot {
                kind,
                recorded: mountpoint,
                actual: dir,
                handle,
            })
        }
        SnapshotKind::Btrfs => {
            let subvol = btrfs_subvolume(path)?;
            let dir = subvol.join(BTRFS_DIR);
            private_dir(&dir)?;
            let snap = dir.join(&name);
            run_tool(
                "btrfs",
                &[
                    "subvolume",
                    "snapshot",
                    "-r",
                    &subvol.display().to_string(),
                    &snap.display().to_string(),
                ],
            )?;
            Ok(FsSnapshot {
                kind,
                recorded: subvol,
                actual: snap.clone(),
                handle: snap.display().to_string(),
            })
        }
        SnapshotKind::Zfs => {
            let (dataset, mountpoint) = zfs_dataset(path)?;
            let handle = format!("{dataset}@{name}");
            run_tool("zfs", &["snapshot", &handle])?;
            Ok(FsSnapshot {
                kind,
                actual: mountpoint.join(".zfs/snapshot").join(&name),
                recorded: mountpoint,
                handle,
            })
        }
    }
}

/// Deletes a snapshot made by `snapshot`.
pub fn delete(s: &FsSnapshot) -> Result<()> {
    match s.kind {
        SnapshotKind::Btrfs => run_tool("btrfs", &["subvolume", "delete", &s.handle]).map(|_| ()),
        SnapshotKind::Zfs => run_tool("zfs", &["destroy", &s.handle]).map(|_| ()),
        SnapshotKind::Lvm => lvm_remove(&s.handle, &format!("/dev/{}", s.handle)),
    }
}

#[cfg(test)]
mod snapshot_name_tests {
    use super::*;

    #[test]
    fn names_parse_from_the_right_so_plan_names_never_overlap() {
        assert_eq!(
            parse_name("cairn-db-1700000000-42"),
            Some(("db", 1_700_000_000, 42))
        );
        assert_eq!(
            parse_name("cairn-db-2-1700000000-42"),
            Some(("db-2", 1_700_000_000, 42))
        );
        assert_eq!(parse_name("cairn-db-x-42"), None);
        assert_eq!(parse_name("cairn--1-2"), None);
        assert_eq!(parse_name("other-db-1-2"), None);
        let dead = {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        };
        assert!(leftover(&format!("cairn-db-1700000000-{dead}"), "db"));
        assert!(!leftover(&format!("cairn-db-2-1700000000-{dead}"), "db"));
        // Our own pid: the caller holds the plan's lock, so it is a dead run's.
        let me = std::process::id();
        assert!(leftover(&format!("cairn-db-1700000000-{me}"), "db"));
    }

    #[test]
    fn a_live_process_keeps_its_snapshot_unless_it_started_after_it() {
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let kept = !leftover(&format!("cairn-db-{now}-{}", live.id()), "db");
        // A snapshot older than the process: its pid was reused.
        let reused = leftover(&format!("cairn-db-1700000000-{}", live.id()), "db");
        let _ = live.kill();
        let _ = live.wait();
        assert!(kept, "a live run's snapshot is kept");
        assert!(reused, "a reused pid does not keep a dead run's snapshot");
    }
}
