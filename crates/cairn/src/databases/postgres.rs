//! PostgreSQL: a scratch cluster (`initdb` + `postgres` on a socket in a private
//! directory) and loading `pg_dump`/`pg_dumpall` plain-SQL dumps with `psql`.

use super::proc::{self, Input};
use super::{find_program, private_dir, server_user, Clock, Loaded, Scratch, Target};
use crate::sources::{DbConn, DbEngine};
use anyhow::{Context, Result};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The scratch server's port: with sockets only, it only names the socket file
/// (`.s.PGSQL.5432` in the private directory), so it never collides with another server.
const PORT: u16 = 5432;

/// Debian's layout: one directory per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The newest `/usr/lib/postgresql/*/bin` holding `name`s, else the `PATH` directory of
/// the first of them (other distributions).
fn bin_dir(names: &[&str]) -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e
                .file_name()
                .to_str()?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| names.iter().all(|n| bin.join(n).is_file()))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let first = find_program(&names[..1], &[])?;
    let dir = first.parent()?.to_path_buf();
    names.iter().all(|n| dir.join(n).is_file()).then_some(dir)
}

/// `psql`: from `PATH` (Debian's wrapper picks the newest), else the newest installed.
fn psql_program() -> Result<PathBuf> {
    if let Some(p) = find_program(&["psql"], &[]) {
        return Ok(p);
    }
    bin_dir(&["psql"]).map(|d| d.join("psql")).ok_or_else(|| {
        anyhow::anyhow!(
            "PostgreSQL's client psql is missing: apt-get install postgresql-client (or postgresql)"
        )
    })
}

/// Starts a scratch cluster (see [`Scratch::start`]).
pub(super) fn start(clock: &Clock) -> Result<Scratch> {
    let bin = bin_dir(&["initdb", "postgres"]).ok_or_else(|| {
        anyhow::anyhow!(
            "PostgreSQL's server binaries are missing (initdb, postgres in {DEBIAN_ROOT}/*/bin or PATH): apt-get install postgresql"
        )
    })?;
    // Not `nobody`: the restored data and a trust-auth socket must not belong to a user
    // every other daemon shares.
    let user = server_user(&["postgres"]);
    if user.is_none() && nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "PostgreSQL refuses to run as root and this machine has no `postgres` user: install the postgresql package (it creates the user), or run cairn as another user"
        );
    }
    let dir = private_dir(&format!(".s.PGSQL.{PORT}"), user.as_ref())?;
    let conn = DbConn {
        user: Some("postgres".into()),
        host: Some(dir.to_string_lossy().into_owned()),
        port: Some(PORT),
        socket: None,
    };
    // From here on, dropping `scratch` stops what started and removes the directory.
    let mut scratch = Scratch::new(DbEngine::Postgres, dir.clone(), conn);
    let command = |program: PathBuf| {
        let mut c = Command::new(program);
        super::proc::scrub_env(&mut c);
        c.current_dir(&dir);
        if let Some((_, uid, gid)) = &user {
            c.uid(uid.as_raw()).gid(gid.as_raw());
        }
        c
    };
    let data = dir.join("data");
    let mut initdb = command(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"]);
    let ran = proc::run(
        initdb,
        Input::Null,
        clock,
        "initdb of the scratch PostgreSQL",
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!(
            "initdb of a scratch PostgreSQL in {} failed ({})",
            dir.display(),
            ran.failure()
        );
    }
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let log2 = log.try_clone().context("cannot share the server log")?;
    let mut server = command(bin.join("postgres"));
    server
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
        // A scratch: nothing to keep if the machine crashes.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let child = server
        .spawn()
        .with_context(|| format!("cannot start {}", bin.join("postgres").display()))?;
    scratch.server = Some(child);
    let conn = scratch.conn.clone();
    let target = Target {
        conn: &conn,
        scratch: true,
        clock: *clock,
    };
    loop {
        if let Some(Ok(Some(status))) = scratch.server.as_mut().map(|c| c.try_wait()) {
            scratch.server = None;
            anyhow::bail!(
                "the scratch PostgreSQL exited at start ({status}): {}",
                scratch.log_tail("server.log")
            );
        }
        let probe = Target {
            clock: Clock::new(Duration::from_secs(2)),
            ..target
        };
        if let Ok(out) = query(&probe, "postgres", "SELECT 1;", &[], "probe") {
            if out.trim() == "1" {
                return Ok(scratch);
            }
        }
        if clock.expired() {
            anyhow::bail!(
                "the scratch PostgreSQL did not answer within {}: {}",
                clock.shown(),
                scratch.log_tail("server.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch server's tools read nothing of the caller's `PG*` settings (`PGDATA`,
/// `PGOPTIONS`, `PGSERVICE`, ...): it is configured by its arguments alone.
/// `psql` connected to `db` on the target, never prompting, no `~/.psqlrc`.
fn psql(t: &Target, db: &str) -> Result<Command> {
    let mut c = Command::new(psql_program()?);
    if t.scratch {
        super::proc::scrub_env(&mut c);
    }
    c.args(["-X", "-w", "-q"]);
    if let Some(h) = &t.conn.host {
        c.arg(format!("--host={h}"));
    }
    if let Some(p) = t.conn.port {
        c.arg(format!("--port={p}"));
    }
    if let Some(u) = &t.conn.user {
        c.arg(format!("--username={u}"));
    }
    // As a connection string: a name with `=` or a URI prefix is not taken for one.
    c.arg(format!(
        "--dbname=dbname='{}'",
        db.replace('\\', "\\\\").replace('\'', "\\'")
    ));
    Ok(c)
}

/// Runs the script `sql` on `db` (psql variables `vars` interpolated: `:'v'` a literal,
/// `:"v"` an identifier), stopping at the first error; returns its unaligned output.
fn query(t: &Target, db: &str, sql: &str, vars: &[(&str, &str)], what: &str) -> Result<String> {
    let mut c = psql(t, db)?;
    c.args(["-t", "-A", "-v", "ON_ERROR_STOP=1"]);
    for (k, v) in vars {
        c.arg("-v").arg(format!("{k}={v}"));
    }
    let ran = proc::run(
        c,
        Input::Bytes(sql.as_bytes().to_vec()),
        &t.clock,
        what,
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!("psql: {what} failed ({})", ran.failure());
    }
    Ok(ran.stdout)
}

fn exists(t: &Target, db: &str) -> Result<bool> {
    let out = query(
        t,
        "postgres",
        "SELECT 1 FROM pg_database WHERE datname = :'db';",
        &[("db", db)],
        &format!("looking for database {db}"),
    )?;
    Ok(out.trim() == "1")
}

/// Tables (plain and partitioned) outside the system schemas.
fn tables(t: &Target, db: &str) -> Result<u64> {
    let out = query(
        t,
        db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema';",
        &[],
        &format!("counting the tables of database {db}"),
    )?;
    out.trim().parse().with_context(|| {
        format!(
            "psql answered {:?} for the number of tables in {db}",
            out.trim()
        )
    })
}

fn drop_db(t: &Target, db: &str) -> Result<()> {
    query(
        t,
        "postgres",
        "DROP DATABASE :\"db\" WITH (FORCE);",
        &[("db", db)],
        &format!("dropping database {db}"),
    )
    .map(drop)
}

fn refuse(db: &str, n: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "database {db} exists and holds {n} table(s): pass --overwrite to drop and recreate it"
    )
}

/// Loads a dump (see [`super::load`]).
pub(super) fn load(
    t: &Target,
    database: Option<&str>,
    file: &Path,
    replace: bool,
) -> Result<Loaded> {
    match database {
        Some(db) => load_one(t, db, file, replace),
        None => load_all(t, file, replace),
    }
}

/// A `pg_dump` of one database: no CREATE DATABASE in it, so the database is made here
/// (from template0, as pg_dump's documentation asks), then the dump runs in one
/// transaction that stops at the first error.
fn load_one(t: &Target, db: &str, file: &Path, replace: bool) -> Result<Loaded> {
    let existed = exists(t, db)?;
    if existed {
        let n = tables(t, db)?;
        if n > 0 && !replace {
            return Err(refuse(db, n));
        }
        if replace {
            drop_db(t, db)?;
        }
    }
    if !existed || replace {
        query(
            t,
            "postgres",
            "CREATE DATABASE :\"db\" TEMPLATE template0;",
            &[("db", db)],
            &format!("creating database {db}"),
        )?;
    }
    if t.scratch {
        let scan = scan(file)?;
        create_roles(t, &scan.roles)?;
    }
    let mut c = psql(t, db)?;
    c.args(["-v", "ON_ERROR_STOP=1", "--single-transaction", "-f"])
        .arg(file);
    let ran = proc::run(
        c,
        Input::Null,
        &t.clock,
        &format!("loading into {db}"),
        None,
    )?;
    if !ran.status.success() {
        anyhow::bail!(
            "psql stopped at the first error, nothing of the dump was kept in database {db} ({})",
            ran.failure()
        );
    }
    Ok(Loaded {
        databases: vec![db.to_string()],
        tables: tables(t, db)?,
    })
}

/// A `pg_dumpall`: roles, then each database with its CREATE DATABASE. `psql` goes on
/// past errors here (the dump recreates roles such as `postgres` that exist already);
/// every error but "role ... already exists" fails the load.
fn load_all(t: &Target, file: &Path, replace: bool) -> Result<Loaded> {
    let scan = scan(file)?;
    let mut empty_existing = Vec::new();
    for db in &scan.databases {
        if !exists(t, db)? {
            continue;
        }
        let n = tables(t, db)?;
        if n > 0 && !replace {
            return Err(refuse(db, n));
        }
        if replace {
            drop_db(t, db)?;
        } else {
            empty_existing.push(format!("ERROR:  database \"{}\" already exists", db));
        }
    }
    let mut c = psql(t, "postgres")?;
    c.arg("-f").arg(file);
    let counts: proc::Counter = Box::new(move |line: &str| {
        let Some(at) = line.find("ERROR:") else {
            return false;
        };
        let msg = &line[at..];
        let known = (msg.starts_with("ERROR:  role \"") && msg.ends_with("\" already exists"))
            || empty_existing.iter().any(|e| e == msg);
        !known
    });
    let ran = proc::run(
        c,
        Input::Null,
        &t.clock,
        "loading all databases",
        Some(counts),
    )?;
    if !ran.status.success() {
        anyhow::bail!("psql failed ({})", ran.failure());
    }
    if ran.error_count > 0 {
        anyhow::bail!(
            "{} statement(s) of the dump failed; the first:\n{}",
            ran.error_count,
            ran.errors.join("\n")
        );
    }
    let mut tables_n = 0;
    for db in &scan.databases {
        tables_n += tables(t, db)?;
    }
    Ok(Loaded {
        databases: scan.databases,
        tables: tables_n,
    })
}

/// Creates the roles a dump names that the (scratch) server lacks, without login.
fn create_roles(t: &Target, roles: &[String]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let names: Vec<(String, &str)> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("r{i}"), r.as_str()))
        .collect();
    let values: Vec<String> = names.iter().map(|(k, _)| format!("(:'{k}')")).collect();
    let sql = format!(
        "SELECT format('CREATE ROLE %I NOLOGIN', v.n) FROM (VALUES {}) AS v(n) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v.n)\n\\gexec\n",
        values.join(", ")
    );
    let vars: Vec<(&str, &str)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    query(
        t,
        "postgres",
        &sql,
        &vars,
        "creating the roles the dump names",
    )
    .map(drop)
}

/// What a dump names: its databases (`CREATE DATABASE`, but the server's own) and the
/// roles its objects belong or are granted to.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Scan {
    pub databases: Vec<String>,
    pub roles: Vec<String>,
}

/// At most this many roles are created for a dump (argv stays small).
const MAX_ROLES: usize = 1000;

/// Reads the dump once, line by line (COPY data skipped).
pub(super) fn scan(file: &Path) -> Result<Scan> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut r = std::io::BufReader::new(f);
    let mut s = Scan::default();
    let mut line = Vec::new();
    let mut in_copy = false;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", file.display()))?
            == 0
        {
            break;
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end_matches(['\n', '\r']);
        if in_copy {
            in_copy = l != "\\.";
            continue;
        }
        if l.starts_with("COPY ") && l.ends_with("FROM stdin;") {
            in_copy = true;
            continue;
        }
        scan_line(l, &mut s);
    }
    Ok(s)
}

fn scan_line(l: &str, s: &mut Scan) {
    // Bytes, not chars: a line may hold any UTF-8 (comments, function bodies).
    let starts = |k: &str| {
        l.as_bytes()
            .get(..k.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(k.as_bytes()))
    };
    if !(starts("CREATE DATABASE ") || starts("ALTER ") || starts("GRANT ") || starts("REVOKE ")) {
        return;
    }
    let toks = tokens(l);
    let word =
        |i: usize, w: &str| matches!(toks.get(i), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
    if starts("CREATE DATABASE ") {
        if let Some(db) = toks.get(2).and_then(Tok::ident) {
            if !["postgres", "template0", "template1"].contains(&db.as_str())
                && !s.databases.contains(&db)
            {
                s.databases.push(db);
            }
        }
        return;
    }
    let mut found = Vec::new();
    for i in 0..toks.len() {
        let list_after = if (word(i, "OWNER") && word(i + 1, "TO"))
            || (word(i, "FOR") && word(i + 1, "ROLE"))
        {
            Some(i + 2)
        } else if (starts("GRANT ") && word(i, "TO")) || (starts("REVOKE ") && word(i, "FROM")) {
            Some(i + 1)
        } else {
            None
        };
        let Some(mut j) = list_after else { continue };
        while let Some(name) = toks.get(j).and_then(Tok::ident) {
            found.push(name);
            if !matches!(toks.get(j + 1), Some(Tok::Punct(','))) {
                break;
            }
            j += 2;
        }
    }
    for r in found {
        let builtin = ["public", "current_user", "session_user", "current_role"]
            .contains(&r.as_str())
            || r.starts_with("pg_");
        let usable = !r.is_empty() && !r.contains('\0');
        if !builtin && usable && !s.roles.contains(&r) && s.roles.len() < MAX_ROLES {
            s.roles.push(r);
        }
    }
}

/// A token of one SQL line, enough to find identifiers.
#[derive(Debug)]
enum Tok {
    /// An unquoted word (keyword or identifier, folded to lower case by the server).
    Word(String),
    /// A `"quoted"` identifier.
    Quoted(String),
    /// A 'string' (skipped).
    Str,
    Punct(char),
}

impl Tok {
    /// The identifier this token names, as the server stores it.
    fn ident(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_lowercase()),
            Tok::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }
}

fn tokens(l: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = l.chars().peekable();
    while let Some(c) = it.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' || c == '\'' {
            let mut v = String::new();
            while let Some(d) = it.next() {
                if d == c {
                    if it.peek() == Some(&c) {
                        it.next();
                    } else {
                        break;
                    }
                }
                v.push(d);
            }
            out.push(if c == '"' { Tok::Quoted(v) } else { Tok::Str });
        } else if c.is_alphanumeric() || c == '_' {
            let mut v = c.to_string();
            while let Some(&d) = it.peek() {
                if d.is_alphanumeric() || d == '_' || d == '$' {
                    v.push(d);
                    it.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(v));
        } else {
            out.push(Tok::Punct(c));
        }
    }
    out
}
