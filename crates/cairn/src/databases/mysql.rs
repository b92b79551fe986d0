//! MySQL/MariaDB: a scratch MariaDB (`mariadb-install-db` + `mariadbd` on a socket in a
//! private directory, no networking) and loading `mysqldump` dumps with the `mariadb` (or
//! `mysql`) client.
//!
//! Which user a scratch MariaDB runs as, when cairn is root: the `mysql` system user when it
//! exists (the package creates it; a server that need not be root is not), else root itself
//! with `--user=root` (as the test peers do). Its `root` account authenticates by the
//! client's Unix user (`unix_socket`), so only root reaches it; when cairn is not root, the
//! server runs as cairn's user and `root` has no password, reachable only through the socket
//! in the 0700 directory.

use super::proc::{self, Input};
use super::{find_program, my_ident, private_dir, server_user, Clock, Loaded, Scratch, Target};
use crate::sources::{DbConn, DbEngine};
use anyhow::{Context, Result};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The largest statement the scratch server and our client accept (mysqldump writes rows of
/// any size the source had).
const MAX_PACKET: &str = "--max-allowed-packet=1073741824";

/// Databases every server has: never refused, dropped or counted as loaded.
const SYSTEM: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

fn client_program() -> Result<PathBuf> {
    find_program(&["mariadb", "mysql"], &[]).ok_or_else(|| {
        anyhow::anyhow!(
            "the MySQL/MariaDB client is missing (mariadb or mysql): apt-get install mariadb-client"
        )
    })
}

/// A scratch server's tools read nothing of the caller's `MYSQL_*` settings.
/// Starts a scratch MariaDB (see [`Scratch::start`]).
pub(super) fn start(clock: &Clock) -> Result<Scratch> {
    let missing = || {
        anyhow::anyhow!(
            "MariaDB's server binaries are missing (mariadbd, mariadb-install-db): apt-get install mariadb-server"
        )
    };
    let daemon = find_program(&["mariadbd", "mysqld"], &["/usr/sbin", "/usr/libexec"])
        .ok_or_else(missing)?;
    let install = find_program(
        &["mariadb-install-db", "mysql_install_db"],
        &["/usr/bin", "/usr/sbin"],
    )
    .ok_or_else(missing)?;
    client_program()?;
    let root = nix::unistd::geteuid().is_root();
    let user = server_user(&["mysql"]);
    let dir = private_dir("mysql.sock", user.as_ref())?;
    let sock = dir.join("mysql.sock");
    let conn = DbConn {
        user: Some("root".into()),
        host: None,
        port: None,
        socket: Some(sock.to_string_lossy().into_owned()),
    };
    // From here on, dropping `scratch` stops what started and removes the directory.
    let mut scratch = Scratch::new(DbEngine::Mysql, dir.clone(), conn);
    let command = |program: &Path| {
        let mut c = Command::new(program);
        super::proc::scrub_env(&mut c);
        c.current_dir(&dir);
        c.arg("--no-defaults");
        match &user {
            Some((_, uid, gid)) => {
                c.uid(uid.as_raw()).gid(gid.as_raw());
            }
            None if root => {
                c.arg("--user=root");
            }
            None => {}
        }
        c
    };
    let data = dir.join("data");
    let mut init = command(&install);
    init.arg(format!("--datadir={}", data.display()))
        .arg(if root {
            "--auth-root-authentication-method=socket"
        } else {
            "--auth-root-authentication-method=normal"
        })
        .arg("--skip-test-db");
    let ran = proc::run(
        init,
        Input::Null,
        clock,
        "mariadb-install-db of the scratch MariaDB",
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!(
            "{} for a scratch MariaDB in {} failed ({}): {}",
            install.display(),
            dir.display(),
            ran.failure(),
            proc::last_lines(&ran.stdout, 10)
        );
    }
    let out_path = dir.join("mariadbd.out");
    let out = std::fs::File::create(&out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let out2 = out
        .try_clone()
        .context("cannot share the server's output file")?;
    let mut server = command(&daemon);
    server
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", sock.display()))
        .arg("--skip-networking")
        .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        // A scratch: nothing to keep if the machine crashes.
        .arg("--innodb-flush-log-at-trx-commit=0")
        .arg(MAX_PACKET)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(out2);
    let child = server
        .spawn()
        .with_context(|| format!("cannot start {}", daemon.display()))?;
    scratch.server = Some(child);
    let conn = scratch.conn.clone();
    loop {
        if let Some(Ok(Some(status))) = scratch.server.as_mut().map(|c| c.try_wait()) {
            scratch.server = None;
            anyhow::bail!(
                "the scratch MariaDB exited at start ({status}): {}",
                scratch.log_tail("error.log")
            );
        }
        let probe = Target {
            conn: &conn,
            scratch: true,
            clock: Clock::new(Duration::from_secs(2)),
        };
        if let Ok(out) = query(&probe, "SELECT 1;", "probe") {
            if out.trim() == "1" {
                return Ok(scratch);
            }
        }
        if clock.expired() {
            anyhow::bail!(
                "the scratch MariaDB did not answer within {}: {}",
                clock.shown(),
                scratch.log_tail("error.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The client connected to the target. A scratch server's client reads no option file
/// (`--no-defaults`); a real server's reads them like the `mysqldump` that made the dump,
/// which is where its password lives (`~/.my.cnf`), never argv.
fn client(t: &Target) -> Result<Command> {
    let mut c = Command::new(client_program()?);
    if t.scratch {
        c.arg("--no-defaults");
        super::proc::scrub_env(&mut c);
    }
    if let Some(s) = &t.conn.socket {
        c.arg(format!("--socket={s}"));
    }
    if let Some(h) = &t.conn.host {
        c.arg(format!("--host={h}"));
    }
    if let Some(p) = t.conn.port {
        c.arg(format!("--port={p}"));
    }
    if let Some(u) = &t.conn.user {
        c.arg(format!("--user={u}"));
    }
    c.arg(MAX_PACKET);
    Ok(c)
}

/// Runs the script `sql` (from stdin, stops at the first error); its output, tab-separated.
fn query(t: &Target, sql: &str, what: &str) -> Result<String> {
    let mut c = client(t)?;
    c.args(["--batch", "--skip-column-names"]);
    let ran = proc::run(
        c,
        Input::Bytes(sql.as_bytes().to_vec()),
        &t.clock,
        what,
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!("mysql: {what} failed ({})", ran.failure());
    }
    Ok(ran.stdout)
}

/// `name` as a hex literal: compared byte for byte, nothing to escape.
fn hex(name: &str) -> String {
    format!("X'{}'", hex::encode(name.as_bytes()))
}

fn count(t: &Target, sql: &str, what: &str) -> Result<u64> {
    let out = query(t, sql, what)?;
    out.trim()
        .parse()
        .with_context(|| format!("mysql answered {:?} when {what}", out.trim()))
}

fn exists(t: &Target, db: &str) -> Result<bool> {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {};",
        hex(db)
    );
    Ok(count(t, &sql, &format!("looking for database {db}"))? > 0)
}

fn tables(t: &Target, db: &str) -> Result<u64> {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE';",
        hex(db)
    );
    count(t, &sql, &format!("counting the tables of database {db}"))
}

/// Refuses a database holding tables unless `replace`, then drops it.
fn make_room(t: &Target, db: &str, replace: bool) -> Result<()> {
    if !exists(t, db)? {
        return Ok(());
    }
    let n = tables(t, db)?;
    if n > 0 && !replace {
        anyhow::bail!(
            "database {db} exists and holds {n} table(s): pass --overwrite to drop and recreate it"
        );
    }
    if replace {
        query(
            t,
            &format!("DROP DATABASE {};", my_ident(db)),
            &format!("dropping database {db}"),
        )?;
    }
    Ok(())
}

/// Loads a dump (see [`super::load`]). The dump creates its databases itself
/// (`CREATE DATABASE IF NOT EXISTS` + `USE`); `mysql` stops at its first error.
pub(super) fn load(
    t: &Target,
    database: Option<&str>,
    file: &Path,
    replace: bool,
) -> Result<Loaded> {
    let databases: Vec<String> = match database {
        Some(db) => vec![db.to_string()],
        None => scan(file)?,
    };
    for db in &databases {
        make_room(t, db, replace)?;
    }
    let c = client(t)?;
    let ran = proc::run(
        c,
        Input::File(file.to_path_buf()),
        &t.clock,
        "loading the dump",
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!(
            "mysql stopped at the first error; what came before it stays loaded ({})",
            ran.failure()
        );
    }
    let mut n = 0;
    for db in &databases {
        if !exists(t, db)? {
            anyhow::bail!(
                "the dump loaded but database {db} is not there: is this dump of database {db}?"
            );
        }
        n += tables(t, db)?;
    }
    Ok(Loaded {
        databases,
        tables: n,
    })
}

/// The databases an all-databases dump creates (`CREATE DATABASE ... \`name\``), but the
/// server's own.
pub(super) fn scan(file: &Path) -> Result<Vec<String>> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut r = std::io::BufReader::new(f);
    let mut dbs = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", file.display()))?
            == 0
        {
            break;
        }
        if !line.starts_with(b"CREATE DATABASE ") {
            continue;
        }
        let l = String::from_utf8_lossy(&line);
        if let Some(db) = backticked(&l) {
            if !SYSTEM.contains(&db.as_str()) && !dbs.contains(&db) {
                dbs.push(db);
            }
        }
    }
    Ok(dbs)
}

/// The first `` `identifier` `` of a line (a doubled backtick is one).
fn backticked(l: &str) -> Option<String> {
    let start = l.find('`')? + 1;
    let mut name = String::new();
    let mut it = l[start..].chars().peekable();
    while let Some(c) = it.next() {
        if c == '`' {
            if it.peek() == Some(&'`') {
                it.next();
            } else {
                return Some(name);
            }
        }
        name.push(c);
    }
    None
}
