//! Database dumps proven end to end by `cairn run PLAN --only restore-test` with
//! `verify-dumps = true`: the real PostgreSQL peer dumped by the real pg_dump/pg_dumpall,
//! the dumps restored from the repository and loaded into scratch servers cairn starts and
//! removes (crates/cairn/src/databases.rs; its unit tests cover refusing, replacing,
//! MariaDB and broken dumps in detail).

use crate::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The restore-test step of plan `plan`'s last run, from `history --json --steps`.
fn last_restore_test(env: &Env, cfg: &Path, plan: &str) -> serde_json::Value {
    let h = json(&ok(
        env.config_run(cfg, &["--json", "history", plan, "--steps"])
    ));
    h[0]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["operation"] == "restore-test"))
        .cloned()
        .unwrap_or_else(|| panic!("no restore-test step in the last run of {plan}: {h}"))
}

/// A database owned by an application role (as real ones are), dumped alone and with
/// everything else (`pg_dumpall`): both load into a fresh scratch PostgreSQL, where the
/// role does not exist until cairn creates it; the history detail lists each dump with its
/// databases and tables, and no scratch directory is left in TMPDIR. A dump that cannot
/// load (only the constraints of a table, `--section=post-data`) fails the restore test,
/// named in the detail.
#[test]
fn restore_test_loads_role_owned_and_all_databases_dumps_into_a_scratch_postgres() {
    let pg = crate::peers::postgres();
    let (host, port) = (pg.var("PG_HOST").to_string(), pg.var("PG_PORT").to_string());
    let psql = |db: &str, sql: &str| {
        let o = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .args(["-h", &host, "-p", &port, "-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "{sql}: {}", stderr(&o));
    };
    psql(
        "postgres",
        "CREATE ROLE shop_owner NOLOGIN; CREATE ROLE \"Report Reader\" NOLOGIN",
    );
    psql("postgres", "CREATE DATABASE shop OWNER shop_owner");
    psql(
        "shop",
        "CREATE TABLE t (n integer PRIMARY KEY); CREATE TABLE u (s text); \
         INSERT INTO t SELECT generate_series(1, 42); \
         ALTER TABLE t OWNER TO shop_owner; GRANT SELECT ON u TO \"Report Reader\"",
    );

    let env = Env::new();
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/a.txt"), b"hello").unwrap();
    // The scratch servers' directories go here: reachable by the postgres user, checked
    // empty after the runs.
    std::fs::set_permissions(env.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    ok(env.cairn(&["init"]));
    let conn = format!("host = \"{host}\", port = {port}, user = \"postgres\"");
    let restore_test = "restore-test = { schedule = \"always\", mode = \"sample\", files = 1, verify-dumps = true, timeout = \"2m\" }";
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.r]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [sources.files]\npaths = [\"{data}\"]\n\
             [sources.shop]\npostgres = {{ databases = [\"shop\"], {conn} }}\n\
             [sources.everything]\npostgres = {{ {conn} }}\n\
             [sources.broken]\npostgres = {{ databases = [\"shop\"], {conn}, args = [\"--section=post-data\"] }}\n\
             [plans.p]\nrepository = \"r\"\nsources = [\"files\", \"shop\", \"everything\"]\n{restore_test}\n\
             [plans.q]\nrepository = \"r\"\nsources = [\"files\", \"broken\"]\n{restore_test}\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            data = env.path("data").display(),
        ),
    );
    let run = |args: &[&str]| {
        env.config_cmd(&cfg, args)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap()
    };

    let out = run(&["run", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["run", "p", "--only", "restore-test"]);
    let rt = last_restore_test(&env, &cfg, "p");
    assert!(out.status.success(), "{rt}\n{}", stderr(&out));
    assert_eq!(rt["result"], "success", "{rt}");
    let dumps = rt["detail"]["dumps"]
        .as_array()
        .expect("dumps in the detail");
    let dump = |path: &str| {
        dumps
            .iter()
            .find(|d| d["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {rt}"))
    };
    let shop = dump("/.cairn/dumps/shop/postgres-shop.sql");
    assert!(shop["error"].is_null(), "{rt}");
    assert_eq!(shop["databases"], serde_json::json!(["shop"]), "{rt}");
    assert_eq!(shop["tables"], 2, "{rt}");
    let all = dump("/.cairn/dumps/everything/postgres-all.sql");
    assert!(all["error"].is_null(), "{rt}");
    assert_eq!(all["databases"], serde_json::json!(["shop"]), "{rt}");
    assert_eq!(all["tables"], 2, "{rt}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "scratch servers left {left:?}");

    let out = run(&["run", "q"]);
    let rt = last_restore_test(&env, &cfg, "q");
    assert!(
        !out.status.success(),
        "a dump that cannot load fails the run: {rt}"
    );
    assert_eq!(rt["result"], "failure", "{rt}");
    let broken = &rt["detail"]["dumps"][0];
    assert_eq!(
        broken["path"], "/.cairn/dumps/broken/postgres-shop.sql",
        "{rt}"
    );
    let error = broken["error"].as_str().unwrap_or_else(|| panic!("{rt}"));
    assert!(error.contains("does not exist"), "{rt}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "scratch servers left {left:?}");
}
