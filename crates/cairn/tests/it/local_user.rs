//! Issue 11 (hardening), another local user and concurrent runs: what cairn writes on
//! disk is private (checked as `nobody`, uid 65534, with real `cat`/`ls`), a
//! group-accessible repository stays so, one run per plan at a time, the filesystem
//! snapshot sweep takes only dead runs' snapshots of exactly its plan, and hooks get no
//! password and cannot outlive a shutdown.
//!
//! The tests run as root (as CI does) so they can act as another user.

use crate::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// Whether `uid`/`gid` (no supplementary groups) can run `argv` successfully, e.g.
/// `cat FILE` or `ls DIR`.
fn can(uid: u32, gid: u32, argv: &[&str]) -> bool {
    Command::new(argv[0])
        .args(&argv[1..])
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run a command as another user (tests run as root)")
        .success()
}

fn nobody_can(argv: &[&str]) -> bool {
    can(NOBODY, NOBODY, argv)
}

/// An env whose top directory others may enter, so only cairn's own modes keep them out.
fn open_env() -> Env {
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `cfg/cairn.toml` with a state dir in the env, repository `r` (password file
/// unless `repo_extra` says otherwise) and `rest`; returns its path.
fn config(env: &Env, repo_extra: &str, rest: &str) -> PathBuf {
    let main = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    let password = if repo_extra.contains("password-") {
        String::new()
    } else {
        format!("password-file = \"{}\"\n", env.path("pw").display())
    };
    std::fs::write(
        &main,
        format!(
            "[settings]\nstate-dir = \"{}\"\n[repositories.r]\nurl = \"{}\"\n{password}{repo_extra}\n{rest}",
            env.path("state").display(),
            env.repo().display()
        ),
    )
    .unwrap();
    main
}

fn cairn_cfg(main: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.arg("--config")
        .arg(main)
        .args(args)
        .env_remove("RESTIC_PASSWORD")
        .env_remove("CAIRN_PASSWORD");
    c
}

fn wait_for(p: &Path, limit: Duration) {
    let start = Instant::now();
    while !p.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` at most `limit`; kills it and fails the test past that.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process that exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| st.rfind(')').map(|i| st[i + 1..].trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// A pid that no process has now.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn nobody_can_read_any_file_of_a_new_repository() {
    let env = open_env();
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/file"), "payload").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", s(&env.path("src"))]));
    let repo = env.repo();
    let keys = files_under(&repo.join("keys"));
    let index = files_under(&repo.join("index"));
    let data = files_under(&repo.join("data"));
    let snaps = files_under(&repo.join("snapshots"));
    assert!(!keys.is_empty() && !index.is_empty() && !data.is_empty() && !snaps.is_empty());
    for d in ["", "keys", "index", "data", "snapshots", "locks"] {
        assert_eq!(mode(&repo.join(d)), 0o700, "{d}/");
        assert!(!nobody_can(&["ls", s(&repo.join(d))]), "nobody lists {d}/");
    }
    let file = repo.join("config");
    for f in keys
        .iter()
        .chain(&index)
        .chain(&data)
        .chain(&snaps)
        .chain([&file])
    {
        assert_eq!(mode(f), 0o400, "{}", f.display());
    }
    // Even with the directories opened up, the files themselves keep nobody out.
    Command::new("chmod")
        .args(["-R", "a+X", s(&repo)])
        .status()
        .unwrap();
    for f in keys.iter().chain(&index).chain(&data).chain([&file]) {
        assert!(!nobody_can(&["cat", s(f)]), "nobody reads {}", f.display());
    }
    // restic reads what cairn wrote.
    ok(env.restic(&["check", "--read-data"]));
}

#[test]
fn a_group_readable_repository_keeps_its_group_access() {
    let env = open_env();
    let repo = env.repo();
    std::fs::create_dir(&repo).unwrap();
    // The admin's choice: group `nogroup` may read the repository, others may not.
    std::os::unix::fs::chown(&repo, Some(0), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/file"), "payload").unwrap();
    ok(env.cairn(&["init"]));
    ok(env.cairn(&["backup", s(&env.path("src"))]));
    assert_eq!(mode(&repo.join("config")), 0o440);
    assert_eq!(mode(&repo.join("keys")) & 0o777, 0o750);
    let data = files_under(&repo.join("data"));
    let pack_dir = data[0].parent().unwrap();
    assert_eq!(mode(pack_dir) & 0o777, 0o750);
    for f in files_under(&repo.join("keys")).iter().chain(&data) {
        assert_eq!(mode(f), 0o440, "{}", f.display());
        // A member of the group reads it; another user (another group) does not.
        assert!(
            can(NOBODY, NOBODY, &["cat", s(f)]),
            "group reads {}",
            f.display()
        );
        assert!(
            !can(12345, 12345, &["cat", s(f)]),
            "others read {}",
            f.display()
        );
    }
    ok(env.restic(&["check"]));
}

#[test]
fn state_history_work_and_scratch_directories_are_private() {
    let env = open_env();
    let app = env.path("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("notes.txt"), "some notes").unwrap();
    // A private database of another account: its copy must stay as private and as owned.
    let db = app.join("app.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    std::os::unix::fs::chown(&db, Some(1234), Some(2345)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(env.cairn(&["init"]));
    let main = config(
        &env,
        "",
        &format!(
            "[sources.app]\npaths = [\"{}\"]\nsqlite = [\"{}\"]\n[plans.p]\nrepository = \"r\"\nsources = [\"app\"]\nrestore-test = {{ schedule = \"always\", files = 2 }}\n",
            app.display(),
            db.display()
        ),
    );
    let out = cairn_cfg(&main, &["--json", "run", "p"]).output().unwrap();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    let state = env.path("state");
    for d in ["", "work", "work/p", "restore-test"] {
        assert_eq!(mode(&state.join(d)), 0o700, "state/{d}");
    }
    for f in ["history.db", "history.db-wal", "history.db-shm"] {
        let p = state.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    assert!(!nobody_can(&["ls", s(&state)]));
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!nobody_can(&["cat", s(&state.join("history.db"))]));
    assert!(!nobody_can(&["ls", s(&state.join("work"))]));
    assert!(!nobody_can(&["ls", s(&state.join("restore-test"))]));
    // The copy was stored in the database's place with the database's mode and owner.
    let listing = ok(env.restic(&["ls", "--json", "latest", s(&db)]));
    let node = listing
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|n| n["path"] == s(&db))
        .unwrap_or_else(|| panic!("{} not in {listing}", db.display()));
    assert_eq!(node["permissions"], "-rw-r-----", "{node}");
    assert_eq!(
        (node["uid"].as_u64(), node["gid"].as_u64()),
        (Some(1234), Some(2345)),
        "{node}"
    );
}

/// A plan whose before hook signals `started` and then waits (a long run).
fn slow_plan(env: &Env, extra: &str) -> PathBuf {
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/file"), "payload").unwrap();
    config(
        env,
        "",
        &format!(
            "[plans.p]\nrepository = \"r\"\npaths = [\"{}\"]\nhooks = {{ before = [\"touch {}; sleep 60\"] }}\n{extra}",
            env.path("src").display(),
            env.path("started").display()
        ),
    )
}

#[test]
fn a_second_run_of_a_running_plan_is_refused_naming_the_holder() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let main = slow_plan(&env, "");
    let mut first = cairn_cfg(&main, &["run", "p"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.path("started"), Duration::from_secs(30));
    let second = cairn_cfg(&main, &["--json", "run", "p"]).output().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_bounded(&mut first, Duration::from_secs(30), "the first run");
    assert_eq!(second.status.code(), Some(11), "{}", stderr(&second));
    let v = json(&String::from_utf8_lossy(&second.stdout));
    assert_eq!(v[0]["result"], "skipped", "{v}");
    assert_eq!(v[0]["error_category"], "lock", "{v}");
    let err = v[0]["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("already running"),
        "{err}"
    );
    assert!(err.contains("on host "), "{err}");
    // Recorded in the history as skipped.
    let hist = ok(cairn_cfg(&main, &["--json", "history", "p"])
        .output()
        .unwrap());
    assert!(hist.contains("\"skipped\""), "{hist}");
    // The lock went with the first run: the plan runs again (without its slow hook).
    std::fs::remove_file(env.path("started")).unwrap();
    let main = config(
        &env,
        "",
        &format!(
            "[plans.p]\nrepository = \"r\"\npaths = [\"{}\"]\n",
            env.path("src").display()
        ),
    );
    let v = json(&ok(cairn_cfg(&main, &["--json", "run", "p"])
        .output()
        .unwrap()));
    assert_eq!(v[0]["result"], "success", "{v}");
}

/// A fake `zfs` on PATH (a recorded command interface, as in sources.rs) acting on
/// MOUNTPOINT/.zfs/snapshot; returns (bin dir, mount point, calls log).
fn fake_zfs(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    let mnt = env.path("tank/data");
    std::fs::create_dir_all(mnt.join("db")).unwrap();
    std::fs::write(mnt.join("db/file"), "data").unwrap();
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = env.path("zfs.calls");
    let script = format!(
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
    std::fs::write(bin.join("zfs"), script).unwrap();
    std::fs::set_permissions(bin.join("zfs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, mnt, calls)
}

fn with_path(mut c: Command, bin: &Path) -> Command {
    c.env(
        "PATH",
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    c
}

fn zfs_plans(env: &Env, mnt: &Path, before: &str) -> PathBuf {
    let plan = |name: &str| {
        format!(
            "[plans.{name}]\nrepository = \"r\"\npaths = [\"{}\"]\nexclude = [\"/**/.zfs\"]\nsnapshot = {{ kind = \"zfs\" }}\n{before}",
            mnt.join("db").display()
        )
    };
    config(env, "", &format!("{}{}", plan("db"), plan("db-2")))
}

#[test]
fn the_snapshot_sweep_takes_only_dead_runs_of_exactly_its_plan() {
    let env = Env::new();
    let (bin, mnt, _calls) = fake_zfs(&env);
    ok(env.cairn(&["init"]));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    let snaps = mnt.join(".zfs/snapshot");
    let dead = dead_pid();
    let of_db_dead = format!("cairn-db-1700000000-{dead}");
    let of_db_2 = format!("cairn-db-2-1700000000-{dead}");
    let of_db_live = format!("cairn-db-{}-{}", now + 1, live.id());
    for n in [&of_db_dead, &of_db_2, &of_db_live] {
        std::fs::create_dir_all(snaps.join(n)).unwrap();
    }
    let main = zfs_plans(&env, &mnt, "");
    let out = with_path(cairn_cfg(&main, &["--json", "run", "db"]), &bin)
        .output()
        .unwrap();
    let _ = live.kill();
    let _ = live.wait();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    assert!(
        !snaps.join(&of_db_dead).exists(),
        "a dead run's snapshot is swept"
    );
    assert!(
        snaps.join(&of_db_2).exists(),
        "plan db-2's snapshot is not db's"
    );
    assert!(
        snaps.join(&of_db_live).exists(),
        "a live run's snapshot is kept"
    );
}

#[test]
fn the_daemon_does_not_sweep_a_plan_another_cairn_is_running() {
    let env = Env::new();
    let (bin, mnt, _calls) = fake_zfs(&env);
    ok(env.cairn(&["init"]));
    let leftover = format!("cairn-db-1700000000-{}", dead_pid());
    let snaps = mnt.join(".zfs/snapshot");
    std::fs::create_dir_all(snaps.join(&leftover)).unwrap();
    let main = zfs_plans(
        &env,
        &mnt,
        &format!(
            "hooks = {{ before = [\"touch {}; sleep 60\"] }}\n",
            env.path("started").display()
        ),
    );
    // A manual run of db, in its before hook (holding db's lock).
    let mut manual = with_path(cairn_cfg(&main, &["run", "db"]), &bin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.path("started"), Duration::from_secs(30));
    let mut daemon = with_path(cairn_cfg(&main, &["daemon"]), &bin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut lines = BufReader::new(daemon.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("no plan has a schedule") {
            break;
        }
    }
    for pid in [daemon.id(), manual.id()] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    wait_bounded(&mut daemon, Duration::from_secs(30), "the daemon");
    wait_bounded(&mut manual, Duration::from_secs(30), "the manual run");
    assert!(
        snaps.join(&leftover).exists(),
        "the daemon left db's snapshots to db's running owner: {said}"
    );
    assert!(said.contains("plan db: running elsewhere"), "{said}");
}

#[test]
fn hooks_do_not_see_the_repository_password() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/file"), "payload").unwrap();
    let seen = env.path("hook.env");
    let main = config(
        &env,
        "password-env = \"MY_REPO_PASSWORD\"\n",
        &format!(
            "[plans.p]\nrepository = \"r\"\npaths = [\"{}\"]\nhooks = {{ before = [\"env > {}\"] }}\n",
            env.path("src").display(),
            seen.display()
        ),
    );
    let out = cairn_cfg(&main, &["--json", "run", "p"])
        .env("MY_REPO_PASSWORD", PASSWORD)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("CAIRN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let v = json(&ok(out));
    assert_eq!(v[0]["result"], "success", "{v}");
    let env_text = std::fs::read_to_string(&seen).unwrap();
    assert!(env_text.contains("CAIRN_PLAN=p"), "{env_text}");
    assert!(!env_text.contains(PASSWORD), "{env_text}");
    for var in ["MY_REPO_PASSWORD=", "RESTIC_PASSWORD=", "CAIRN_PASSWORD="] {
        assert!(!env_text.contains(var), "{var} in {env_text}");
    }
}

#[test]
fn a_hook_ignoring_sigterm_is_killed_with_its_children_within_the_grace_period() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    std::fs::create_dir_all(env.path("src")).unwrap();
    let child_pid = env.path("child.pid");
    let main = config(
        &env,
        "",
        &format!(
            "[plans.p]\nrepository = \"r\"\npaths = [\"{}\"]\nhooks = {{ timeout = \"10m\", before = [\"trap '' TERM; sleep 600 & echo $! > {}; touch {}; wait; wait; sleep 600\"] }}\n",
            env.path("src").display(),
            child_pid.display(),
            env.path("started").display()
        ),
    );
    let mut run = cairn_cfg(&main, &["run", "p"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&env.path("started"), Duration::from_secs(30));
    let child: u32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(running(child));
    let stopped = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_bounded(&mut run, Duration::from_secs(40), "cairn run after SIGTERM");
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(25), "took {took:?}");
    assert_eq!(status.code(), Some(130), "{status}");
    let start = Instant::now();
    while running(child) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(child), "the hook's child {child} was killed too");
}
