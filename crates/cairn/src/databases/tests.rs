//! Real scratch servers (Debian's postgresql and mariadb-server, which scripts/test.sh
//! installs): dumps made by the real pg_dump/mysqldump, loaded back, counted, refused,
//! replaced, broken. A test skips, saying why, only when the server's binaries are absent.

use super::*;
use std::process::Command;

const T: Duration = Duration::from_secs(60);

fn have(engine: DbEngine) -> bool {
    let ok = match engine {
        DbEngine::Postgres => postgres_bins(),
        DbEngine::Mysql => find_program(&["mariadbd", "mysqld"], &["/usr/sbin"]).is_some(),
    };
    if !ok {
        eprintln!("skipped: the {engine:?} server binaries are not installed (scripts/test.sh installs them)");
    }
    ok
}

fn postgres_bins() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/initdb").is_file())
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs SQL on a scratch PostgreSQL as its superuser.
fn psql(s: &Scratch, db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-w",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(s.dir())
        .args(["-p", "5432", "-d", db, "-c", sql])
        .output()
        .unwrap();
    check(out, sql)
}

/// Runs SQL on a scratch MariaDB as root.
fn mariadb(s: &Scratch, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "-N", "-B"])
        .arg(format!("--socket={}", s.conn.socket.as_ref().unwrap()))
        .args(["-e", sql])
        .output()
        .unwrap();
    check(out, sql)
}

/// `command` (argv) writing a dump to `file`, as a source's dump command does.
fn dump(command: &mut Command, file: &Path) {
    let out = command.output().unwrap();
    let text = check(out, "dump");
    std::fs::write(file, text + "\n").unwrap();
}

fn pg_dump(s: &Scratch, db: Option<&str>, file: &Path) {
    let mut c = Command::new(if db.is_some() {
        "pg_dump"
    } else {
        "pg_dumpall"
    });
    c.arg("--no-password")
        .arg(format!("--host={}", s.dir().display()))
        .args(["--port=5432", "--username=postgres"]);
    if let Some(db) = db {
        c.arg(format!("--dbname={db}"));
    }
    dump(&mut c, file);
}

fn mysqldump(s: &Scratch, db: Option<&str>, file: &Path) {
    let mut c = Command::new("mysqldump");
    c.args([
        "--no-defaults",
        "--single-transaction",
        "--quick",
        "--routines",
        "--events",
    ])
    .args(["--triggers", "--user=root"])
    .arg(format!("--socket={}", s.conn.socket.as_ref().unwrap()));
    match db {
        Some(db) => c.args(["--databases", db]),
        None => c.arg("--all-databases"),
    };
    dump(&mut c, file);
}

/// Drops the scratch and checks nothing of it is left: no server process (nor any process
/// naming its directory), no directory.
fn drop_and_check_gone(s: Scratch) {
    let pid = s.pid().expect("the server runs");
    if nix::unistd::geteuid().is_root() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let expect_root = s.engine == DbEngine::Mysql && server_user(&["mysql"]).is_none();
        assert_eq!(
            uid.split_whitespace().nth(1) == Some("0"),
            expect_root,
            "the scratch server runs as an unprivileged user when one exists: {uid}"
        );
    }
    let dir = s.dir().to_path_buf();
    drop(s);
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err();
    assert!(gone, "the server (pid {pid}) still runs after drop");
    assert!(!dir.exists(), "{} is left after drop", dir.display());
    let needle = dir.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&needle),
                "a process of the scratch is left: {cmd}"
            );
        }
    }
}

/// The scratch's connection spelled differently (same server), so [`load`] treats it as a
/// real server: no roles created, existing databases refused unless `replace`.
fn as_real(s: &Scratch) -> DbConn {
    let mut c = s.conn.clone();
    match s.engine {
        DbEngine::Postgres => c.host = c.host.map(|h| format!("{h}/")),
        DbEngine::Mysql => c.socket = c.socket.map(|p| p.replacen("/", "//", 1)),
    }
    c
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn postgres_dump_loads_into_a_fresh_scratch_with_its_roles_refused_then_replaced() {
    if !have(DbEngine::Postgres) {
        return;
    }
    let work = tmp();
    let db = "o'd \"app\"";
    let source = Scratch::start(DbEngine::Postgres, T).unwrap();
    psql(&source, "postgres", "CREATE ROLE \"Alice\" NOLOGIN");
    psql(
        &source,
        "postgres",
        &format!("CREATE DATABASE {}", pg_ident(db)),
    );
    psql(
        &source,
        db,
        "CREATE TABLE t (id int primary key, v text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g; \
         CREATE TABLE owned (x int); ALTER TABLE owned OWNER TO \"Alice\"; \
         CREATE VIEW v AS SELECT * FROM t",
    );
    let file = work.path().join("postgres-app.sql");
    pg_dump(&source, Some(db), &file);
    drop_and_check_gone(source);

    let scratch = Scratch::start(DbEngine::Postgres, T).unwrap();
    let loaded = load(DbEngine::Postgres, &scratch.conn, Some(db), &file, false, T).unwrap();
    assert_eq!(loaded.databases, vec![db.to_string()]);
    assert_eq!(loaded.tables, 2, "two tables (the view is not one)");
    assert_eq!(
        psql(&scratch, db, "SELECT count(*), sum(id) FROM t"),
        "500|125250"
    );
    assert_eq!(
        psql(
            &scratch,
            db,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"
        ),
        "Alice",
        "the role the dump names was created in the scratch"
    );

    let real = as_real(&scratch);
    let err = format!(
        "{:#}",
        load(DbEngine::Postgres, &real, Some(db), &file, false, T).unwrap_err()
    );
    assert!(err.contains("exists and holds 2 table(s)"), "{err}");
    assert!(
        err.contains("--overwrite") && err.contains("postgres-app.sql"),
        "{err}"
    );

    psql(&scratch, db, "DELETE FROM t WHERE id > 10");
    scratch.load(Some(db), &file, T).unwrap();
    assert_eq!(
        psql(&scratch, db, "SELECT count(*) FROM t"),
        "500",
        "a scratch server's database is replaced"
    );
    psql(&scratch, db, "DELETE FROM t WHERE id > 10");
    let replaced = load(DbEngine::Postgres, &real, Some(db), &file, true, T).unwrap();
    assert_eq!(replaced.tables, 2);
    assert_eq!(
        psql(&scratch, db, "SELECT count(*) FROM t"),
        "500",
        "dropped and loaded anew"
    );
    drop_and_check_gone(scratch);
}

#[test]
fn postgres_bad_dump_fails_naming_the_error_and_a_hung_load_is_killed() {
    if !have(DbEngine::Postgres) {
        return;
    }
    let work = tmp();
    let scratch = Scratch::start(DbEngine::Postgres, T).unwrap();
    let bad = work.path().join("postgres-shop.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nINSERT INTO nosuch VALUES (1);\nCREATE TABLE b (y int);\n",
    )
    .unwrap();
    let err = format!("{:#}", scratch.load(Some("shop"), &bad, T).unwrap_err());
    assert!(err.contains("relation \"nosuch\" does not exist"), "{err}");
    assert!(
        err.contains("postgres-shop.sql") && err.contains("shop"),
        "{err}"
    );
    assert_eq!(
        psql(
            &scratch,
            "shop",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0",
        "one transaction: nothing of a failed dump is kept"
    );

    let slow = work.path().join("postgres-slow.sql");
    std::fs::write(&slow, "SELECT pg_sleep(60);\n").unwrap();
    let started = Instant::now();
    let err = format!(
        "{:#}",
        load(
            DbEngine::Postgres,
            &scratch.conn,
            Some("slow"),
            &slow,
            false,
            Duration::from_secs(3)
        )
        .unwrap_err()
    );
    assert!(err.contains("did not finish within"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed at the timeout"
    );

    let missing = load(
        DbEngine::Postgres,
        &scratch.conn,
        Some("x"),
        &work.path().join("none.sql"),
        false,
        T,
    );
    assert!(format!("{:#}", missing.unwrap_err()).contains("cannot read the dump"));
    let nul = load(
        DbEngine::Postgres,
        &scratch.conn,
        Some("a\0b"),
        &bad,
        false,
        T,
    );
    assert!(format!("{:#}", nul.unwrap_err()).contains("NUL"));
    drop_and_check_gone(scratch);
}

#[test]
fn postgres_all_databases_dump_loads_roles_and_every_database() {
    if !have(DbEngine::Postgres) {
        return;
    }
    let work = tmp();
    let source = Scratch::start(DbEngine::Postgres, T).unwrap();
    psql(&source, "postgres", "CREATE ROLE bob LOGIN");
    for db in ["one", "Two"] {
        psql(
            &source,
            "postgres",
            &format!("CREATE DATABASE {} OWNER bob", pg_ident(db)),
        );
        psql(
            &source,
            db,
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)",
        );
    }
    let file = work.path().join("postgres-all.sql");
    pg_dump(&source, None, &file);
    drop_and_check_gone(source);

    let scratch = Scratch::start(DbEngine::Postgres, T).unwrap();
    let loaded = scratch.load(None, &file, T).unwrap();
    let mut names = loaded.databases.clone();
    names.sort();
    assert_eq!(names, vec!["Two".to_string(), "one".to_string()]);
    assert_eq!(loaded.tables, 2);
    assert_eq!(psql(&scratch, "Two", "SELECT sum(x) FROM t"), "6");
    assert_eq!(
        psql(
            &scratch,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'bob'"
        ),
        "1"
    );

    let real = as_real(&scratch);
    let err = format!(
        "{:#}",
        load(DbEngine::Postgres, &real, None, &file, false, T).unwrap_err()
    );
    assert!(err.contains("exists and holds 1 table(s)"), "{err}");
    let again = load(DbEngine::Postgres, &real, None, &file, true, T).unwrap();
    assert_eq!(again.tables, 2);

    let broken = work.path().join("postgres-all-broken.sql");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\\connect one\nSELECT * FROM nosuch;\n");
    std::fs::write(&broken, text).unwrap();
    let err = format!(
        "{:#}",
        load(DbEngine::Postgres, &scratch.conn, None, &broken, true, T).unwrap_err()
    );
    assert!(err.contains("1 statement(s) of the dump failed"), "{err}");
    assert!(err.contains("relation \"nosuch\" does not exist"), "{err}");
    drop_and_check_gone(scratch);
}

#[test]
fn mariadb_dumps_load_into_a_fresh_scratch_refused_replaced_and_broken() {
    if !have(DbEngine::Mysql) {
        return;
    }
    let work = tmp();
    let db = "we`ird db";
    let source = Scratch::start(DbEngine::Mysql, T).unwrap();
    mariadb(
        &source,
        &format!(
            "CREATE DATABASE {q}; USE {q}; CREATE TABLE t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c'); CREATE TABLE u (x INT); \
             CREATE VIEW w AS SELECT id FROM t; CREATE DATABASE other; CREATE TABLE other.o (y INT);",
            q = my_ident(db)
        ),
    );
    let one = work.path().join("mysql-weird.sql");
    mysqldump(&source, Some(db), &one);
    let all = work.path().join("mysql-all.sql");
    mysqldump(&source, None, &all);
    drop_and_check_gone(source);

    let scratch = Scratch::start(DbEngine::Mysql, T).unwrap();
    let loaded = load(DbEngine::Mysql, &scratch.conn, Some(db), &one, false, T).unwrap();
    assert_eq!(loaded.databases, vec![db.to_string()]);
    assert_eq!(loaded.tables, 2, "two tables (the view is not one)");
    let q = my_ident(db);
    assert_eq!(
        mariadb(&scratch, &format!("SELECT COUNT(*) FROM {q}.t")),
        "3"
    );

    let real = as_real(&scratch);
    let err = format!(
        "{:#}",
        load(DbEngine::Mysql, &real, Some(db), &one, false, T).unwrap_err()
    );
    assert!(
        err.contains("exists and holds 2 table(s)") && err.contains("--overwrite"),
        "{err}"
    );
    mariadb(&scratch, &format!("DELETE FROM {q}.t"));
    scratch.load(Some(db), &one, T).unwrap();
    assert_eq!(
        mariadb(&scratch, &format!("SELECT COUNT(*) FROM {q}.t")),
        "3",
        "a scratch server's database is replaced"
    );
    mariadb(&scratch, &format!("DELETE FROM {q}.t"));
    load(DbEngine::Mysql, &real, Some(db), &one, true, T).unwrap();
    assert_eq!(
        mariadb(&scratch, &format!("SELECT COUNT(*) FROM {q}.t")),
        "3"
    );

    let err = format!(
        "{:#}",
        load(DbEngine::Mysql, &real, None, &all, false, T).unwrap_err()
    );
    assert!(err.contains("exists and holds"), "{err}");
    let everything = load(DbEngine::Mysql, &real, None, &all, true, T).unwrap();
    let mut names = everything.databases.clone();
    names.sort();
    assert_eq!(names, vec!["other".to_string(), db.to_string()]);
    assert_eq!(everything.tables, 3);

    let bad = work.path().join("mysql-bad.sql");
    std::fs::write(
        &bad,
        "CREATE DATABASE IF NOT EXISTS `bad`;\nUSE `bad`;\nCREATE TABLE a (x INT);\nINSERT INTO nosuch VALUES (1);\n",
    )
    .unwrap();
    let err = format!("{:#}", scratch.load(Some("bad"), &bad, T).unwrap_err());
    assert!(
        err.contains("nosuch") && err.contains("doesn't exist"),
        "{err}"
    );
    assert!(err.contains("mysql-bad.sql"), "{err}");
    let elsewhere = load(
        DbEngine::Mysql,
        &scratch.conn,
        Some("absent"),
        &bad,
        false,
        T,
    );
    assert!(elsewhere.is_err());
    drop_and_check_gone(scratch);
}

#[test]
fn identifiers_are_quoted_and_dumps_scanned() {
    assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(my_ident("a`b"), "`a``b`");
    let work = tmp();
    let f = work.path().join("d.sql");
    std::fs::write(
        &f,
        "CREATE DATABASE \"Two\" WITH TEMPLATE = template0;\n\
         CREATE DATABASE one WITH TEMPLATE = template0 OWNER = bob;\n\
         CREATE DATABASE template1;\n\
         ALTER TABLE public.t OWNER TO \"Al\"\"ice\";\n\
         COPY public.t (x) FROM stdin;\n\
         GRANT ALL ON TABLE x TO ghost;\n\
         \\.\n\
         GRANT SELECT ON TABLE public.t TO carol, PUBLIC WITH GRANT OPTION;\n\
         REVOKE ALL ON SCHEMA public FROM dave;\n\
         ALTER DEFAULT PRIVILEGES FOR ROLE erin IN SCHEMA public GRANT SELECT ON TABLES TO pg_read_all_data;\n\
         ALTER SCHEMA public OWNER TO pg_database_owner;\n",
    )
    .unwrap();
    let s = postgres::scan(&f).unwrap();
    assert_eq!(s.databases, vec!["Two", "one"]);
    assert_eq!(s.roles, vec!["Al\"ice", "carol", "dave", "erin"]);
    std::fs::write(
        &f,
        "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a``b` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\
         CREATE DATABASE /*!32312 IF NOT EXISTS*/ `mysql`;\n\
         INSERT INTO t VALUES ('CREATE DATABASE `x`');\n",
    )
    .unwrap();
    assert_eq!(mysql::scan(&f).unwrap(), vec!["a`b"]);
}
