//! Database servers and dumps: loading a plan's PostgreSQL/MySQL dump back into a server
//! (`cairn restore --plan ... --load-dumps`), and scratch servers started for a restore
//! test (`restore-test = { verify-dumps = true }`), removed when done.
//!
//! A scratch server lives in a private directory of its own under the temporary directory
//! (`cairn-db-XXXXXXXX`, mode 0700), listens on a Unix socket in it and never on the
//! network, and is stopped and its directory removed when the [`Scratch`] is dropped,
//! including when starting it failed halfway. When cairn runs as root, the server runs as
//! an unprivileged system user (`postgres` for PostgreSQL, which refuses
//! root; `mysql` for MariaDB, else root with `--user=root`): the privileges are dropped by
//! the standard library's `Command::uid`/`gid`, which also clears the supplementary groups,
//! so no `unsafe` `pre_exec` is needed.
//!
//! Loading runs the server's own client (`psql`, `mariadb`/`mysql`) on the dump file,
//! never through a shell, every child under the caller's timeout (killed when exceeded),
//! its stderr kept (the last 64 KiB) for the error message. Passwords never go in argv:
//! `psql` reads `PGPASSWORD`/`~/.pgpass` from the environment as `pg_dump` did, and `mysql`
//! reads `~/.my.cnf` like the `mysqldump` that wrote the dump (but not for a scratch server,
//! whose client runs with `--no-defaults`).
//!
//! Loads into a scratch server get one more step for PostgreSQL: the roles a single-database
//! dump names (`OWNER TO`, `GRANT ... TO`) are created first (`NOLOGIN`), since `pg_dump`
//! does not dump roles and the scratch server has only `postgres`. A real server is left as
//! it is: a missing role there is an error the person restoring must see.
//!
//! This module prints nothing; the caller logs what it returns.

mod mysql;
mod postgres;
mod proc;
#[cfg(test)]
mod tests;

use crate::sources::{DbConn, DbEngine};
use anyhow::{Context, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A database server cairn started in a scratch directory, for a restore test only:
/// Unix socket, no network. Stopped and its directory removed when dropped.
pub struct Scratch {
    /// Which server this is.
    pub engine: DbEngine,
    /// How to reach it (socket directory or socket file, superuser).
    pub conn: DbConn,
    dir: PathBuf,
    /// The server process (`postgres` or `mariadbd`), our child; `None` before it started.
    server: Option<Child>,
}

impl Scratch {
    /// Starts a scratch server of `engine` in a fresh private directory of its own under
    /// the temporary directory (removed on drop), waiting at most `timeout` for it to
    /// answer. When cairn runs as root, the server runs as an unprivileged system user
    /// (PostgreSQL refuses root). Fails with what to install when the server's binaries
    /// are missing.
    pub fn start(engine: DbEngine, timeout: Duration) -> Result<Scratch> {
        let clock = Clock::new(timeout);
        match engine {
            DbEngine::Postgres => postgres::start(&clock),
            DbEngine::Mysql => mysql::start(&clock),
        }
    }

    /// Loads `file` into this scratch server: [`load`] with the scratch-only preparation
    /// (the roles a PostgreSQL dump names are created first, an existing database is
    /// replaced). [`load`] on `self.conn` does the same, as it recognises a scratch
    /// server's connection.
    #[allow(dead_code)] // an API for the restore test; `load(engine, &scratch.conn, ..)` works too
    pub fn load(&self, database: Option<&str>, file: &Path, timeout: Duration) -> Result<Loaded> {
        load(self.engine, &self.conn, database, file, false, timeout)
    }

    /// The server's process id while it runs (tests check it is gone after drop).
    #[cfg(test)]
    pub(crate) fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Its private directory (tests check it is removed after drop).
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A scratch of `engine` in a new private directory, no server yet: dropping it removes
    /// the directory, so every later failure of a start cleans up by returning early.
    fn new(engine: DbEngine, dir: PathBuf, conn: DbConn) -> Scratch {
        if let Ok(mut live) = SCRATCH_CONNS.lock() {
            live.push(conn.clone());
        }
        Scratch {
            engine,
            conn,
            dir,
            server: None,
        }
    }

    /// The tail of the server's log, for an error message.
    fn log_tail(&self, name: &str) -> String {
        proc::file_tail(&self.dir.join(name), 4096)
    }

    /// Stops the server: `signal` (the engine's fast shutdown), at most `grace` to exit,
    /// then SIGKILL.
    fn stop(&mut self, signal: nix::sys::signal::Signal, grace: Duration) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let end = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= end => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        use nix::sys::signal::Signal;
        match self.engine {
            // SIGQUIT: PostgreSQL's immediate shutdown (nothing to keep in a scratch).
            DbEngine::Postgres => self.stop(Signal::SIGQUIT, Duration::from_secs(10)),
            DbEngine::Mysql => self.stop(Signal::SIGTERM, Duration::from_secs(30)),
        }
        // A PostgreSQL backend may outlive a killed postmaster by a moment: retry briefly.
        for _ in 0..50 {
            match std::fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => break,
            }
        }
        if let Ok(mut live) = SCRATCH_CONNS.lock() {
            live.retain(|c| c != &self.conn);
        }
    }
}

/// The connections of the scratch servers alive in this process: [`load`] prepares a
/// scratch server for a dump (roles, no option files), never a real one.
static SCRATCH_CONNS: Mutex<Vec<DbConn>> = Mutex::new(Vec::new());

fn is_scratch(conn: &DbConn) -> bool {
    SCRATCH_CONNS
        .lock()
        .map(|live| live.contains(conn))
        .unwrap_or(false)
}

/// What loading one dump did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Loaded {
    /// The databases the dump created or filled (for an all-databases dump: every one
    /// but the server's own).
    pub databases: Vec<String>,
    /// Tables found in them after the load.
    pub tables: u64,
}

/// Loads the plain-SQL dump `file` (as cairn's sources write it) into the server at
/// `conn`. `database`: the database it holds, `None` for an all-databases dump. An
/// existing database with tables is refused unless `replace` (then it is dropped and
/// created anew). Every statement must succeed (`ON_ERROR_STOP`, `mysql` stops at the
/// first error); the error names the dump, the database and the server's message.
///
/// On a scratch server cairn started ([`Scratch`]), an existing database is always
/// replaced: nothing there is worth keeping, and a plan may dump one database twice (alone
/// and in an all-databases dump), each dump to be proven.
pub fn load(
    engine: DbEngine,
    conn: &DbConn,
    database: Option<&str>,
    file: &Path,
    replace: bool,
    timeout: Duration,
) -> Result<Loaded> {
    if let Some(db) = database {
        check_name(db)?;
    }
    std::fs::File::open(file)
        .with_context(|| format!("cannot read the dump {}", file.display()))?;
    let scratch = is_scratch(conn);
    let replace = replace || scratch;
    let target = Target {
        conn,
        scratch,
        clock: Clock::new(timeout),
    };
    let what = match database {
        Some(db) => format!("database {db}"),
        None => "all databases".to_string(),
    };
    match engine {
        DbEngine::Postgres => postgres::load(&target, database, file, replace),
        DbEngine::Mysql => mysql::load(&target, database, file, replace),
    }
    .with_context(|| format!("loading the dump {} ({what})", file.display()))
}

/// Where a load goes: the server, whether cairn started it, and the time left.
struct Target<'a> {
    conn: &'a DbConn,
    scratch: bool,
    clock: Clock,
}

/// One deadline for a whole operation: each child gets the time left.
#[derive(Debug, Clone, Copy)]
struct Clock {
    deadline: Instant,
    timeout: Duration,
}

impl Clock {
    fn new(timeout: Duration) -> Clock {
        Clock {
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// "5m", for messages.
    fn shown(&self) -> String {
        crate::config::format_duration(self.timeout)
    }
}

/// A database name is used in SQL and in argv: not empty, no NUL.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        anyhow::bail!("a database name is empty: name the database in the source's `databases`");
    }
    if name.contains('\0') {
        anyhow::bail!("the database name {name:?} contains a NUL byte, which no server accepts");
    }
    Ok(())
}

/// `name` as a PostgreSQL identifier: `"..."` with `"` doubled (psql's `:"var"` does it
/// in the statements here).
#[cfg(test)]
fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as a MySQL identifier: backticks, with a backtick doubled.
fn my_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Which system user a scratch server runs as: `None` to run as ourselves (not root),
/// else the first of `users` that exists (its uid and gid).
fn server_user(users: &[&str]) -> Option<(String, nix::unistd::Uid, nix::unistd::Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    users.iter().find_map(|name| {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| (name.to_string(), u.uid, u.gid))
    })
}

/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Creates a fresh private directory (0700) under the temporary directory, owned by `user`
/// when the server runs as another user, with room for `socket` (a file name) inside.
fn private_dir(
    socket: &str,
    user: Option<&(String, nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let tmp = tmp.canonicalize().unwrap_or(tmp);
    let longest = tmp.join("cairn-db-00000000").join(socket);
    if longest.as_os_str().len() > MAX_SOCKET_PATH {
        anyhow::bail!(
            "the temporary directory {} is too deep for a database server's socket ({} is over {MAX_SOCKET_PATH} bytes): set TMPDIR to a shorter path such as /tmp",
            tmp.display(),
            longest.display()
        );
    }
    if let Some((name, uid, gid)) = user {
        reachable(&tmp, *uid, *gid).with_context(|| {
            format!(
                "the scratch database server runs as the user {name}, which cannot reach the temporary directory: set TMPDIR to a directory every user can reach, such as /tmp"
            )
        })?;
    }
    for _ in 0..100 {
        let dir = tmp.join(format!("cairn-db-{:08x}", random_u32()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                if let Some((name, uid, gid)) = user {
                    if let Err(e) = nix::unistd::chown(&dir, Some(*uid), Some(*gid)) {
                        let _ = std::fs::remove_dir(&dir);
                        anyhow::bail!(
                            "cannot give the scratch directory {} to the user {name}: {e}",
                            dir.display()
                        );
                    }
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create a scratch directory in {}: check TMPDIR and free space",
                        tmp.display()
                    )
                })
            }
        }
    }
    anyhow::bail!(
        "cannot find a free scratch directory name in {}",
        tmp.display()
    )
}

/// Checks `uid`/`gid` (no supplementary groups) may search every directory down to `dir`.
fn reachable(dir: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Result<()> {
    for d in dir.ancestors() {
        let m = std::fs::metadata(d).with_context(|| format!("cannot read {}", d.display()))?;
        let mode = m.mode();
        let ok = if m.uid() == uid.as_raw() {
            mode & 0o100 != 0
        } else if m.gid() == gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            anyhow::bail!(
                "{} (mode {:o}) is not searchable by it",
                d.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

/// A random number for a directory name (mkdir is exclusive: a guessed name only makes us
/// pick another).
fn random_u32() -> u32 {
    use std::io::Read;
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u32::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// The first of `names` found in `PATH` or in `dirs`.
fn find_program(names: &[&str], dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut all: Vec<PathBuf> = std::env::split_paths(&path).collect();
    all.extend(dirs.iter().map(PathBuf::from));
    names.iter().find_map(|n| {
        all.iter().map(|d| d.join(n)).find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    })
}
