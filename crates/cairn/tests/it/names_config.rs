//! Repositories of the config by name (`-r NAME`, CAIRN_REPOSITORY, `--plan NAME`) for the
//! restic-style commands, and one broken secret isolated to its own plans (`cairn run`,
//! the daemon). The real restic reads what was written.

use crate::*;
use std::time::{Duration, Instant};

fn restic_at(env: &Env, repo: &Path, args: &[&str]) -> String {
    ok(env.restic_repo(repo, args))
}

/// cairn with `--config` and the working directory `cwd`, no repository or password given.
fn cairn_in(env: &Env, cwd: &Path, config: &Path, args: &[&str]) -> Command {
    let mut c = env.config_cmd(config, args);
    c.current_dir(cwd);
    c
}

/// A config naming `main` (password file) and `cmd` (password-command reading a variable
/// of its env-file); a working directory without ./main.
fn setup() -> (Env, PathBuf, PathBuf) {
    let env = Env::new();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(env.path("secret.env"), format!("REPO_PW={PASSWORD}\n")).unwrap();
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{main}\"\npassword-file = \"{pw}\"\n\
             [repositories.cmd]\nurl = \"local:{cmd}\"\npassword-command = \"printf %s \\\"$REPO_PW\\\"\"\nenv-file = \"{envfile}\"\n",
            state = env.path("state").display(),
            main = env.path("store/main").display(),
            pw = env.path("pw").display(),
            cmd = env.path("store/cmd").display(),
            envfile = env.path("secret.env").display(),
        ),
    );
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("d/b.bin"), random_bytes(7, 300_000)).unwrap();
    (env, cfg, cwd)
}

#[test]
fn a_configured_name_works_for_init_backup_snapshots_restore_check_and_restic_reads_it() {
    let (env, cfg, cwd) = setup();
    let src = env.path("src");
    for name in ["main", "cmd"] {
        let run = |args: &[&str]| {
            let mut full = vec!["-r", name];
            full.extend_from_slice(args);
            cairn_in(&env, &cwd, &cfg, &full).output().unwrap()
        };
        ok(run(&["init"]));
        let at = env.path(&format!("store/{name}"));
        assert!(at.join("config").is_file(), "{name}: created at its URL");
        assert!(!cwd.join(name).exists(), "{name}: not ./{name}");
        ok(run(&["backup", src.to_str().unwrap()]));
        let snaps = json(&ok(run(&["--json", "snapshots"])));
        assert_eq!(snaps.as_array().unwrap().len(), 1, "{name}: {snaps}");
        let target = env.path(&format!("restored-{name}"));
        ok(run(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ]));
        let back = target.join(src.strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"alpha\n");
        assert_eq!(
            std::fs::read(back.join("d/b.bin")).unwrap(),
            random_bytes(7, 300_000)
        );
        ok(run(&["check", "--read-data"]));
        // CAIRN_REPOSITORY=NAME is the same repository.
        let out = cairn_in(&env, &cwd, &cfg, &["--json", "snapshots"])
            .env("CAIRN_REPOSITORY", name)
            .output()
            .unwrap();
        assert_eq!(json(&ok(out)), snaps);
        // The real restic reads it.
        let r = json(&restic_at(&env, &at, &["snapshots", "--json"]));
        assert_eq!(r[0]["id"], snaps[0]["id"], "{name}");
        restic_at(&env, &at, &["check", "--read-data"]);
    }
    // An explicit --password-file still wins over the config's: a wrong one is refused.
    std::fs::write(env.path("wrong"), "not the password\n").unwrap();
    let out = cairn_in(
        &env,
        &cwd,
        &cfg,
        &["-r", "main", "snapshots", "--password-file"],
    )
    .arg(env.path("wrong"))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
}

#[test]
fn a_configured_rest_repository_by_name_gets_its_credentials_from_its_env_file() {
    let p = crate::peers::rest();
    let env = Env::new();
    let url = format!("rest:{}/named", p.var("REST_URL").trim_end_matches('/'));
    std::fs::write(
        env.path("rest.env"),
        format!(
            "RESTIC_REST_USERNAME={}\nRESTIC_REST_PASSWORD={}\n",
            p.var("REST_USER"),
            p.var("REST_PASS")
        ),
    )
    .unwrap();
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[repositories.offsite]\nurl = \"{url}\"\npassword-file = \"{}\"\nenv-file = \"{}\"\n",
            env.path("pw").display(),
            env.path("rest.env").display()
        ),
    );
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), random_bytes(3, 100_000)).unwrap();
    let run = |args: &[&str]| {
        let mut full = vec!["-r", "offsite"];
        full.extend_from_slice(args);
        // No credentials in the environment: only the env-file has them.
        cairn_in(&env, &env.path(""), &cfg, &full)
            .env_remove("RESTIC_REST_USERNAME")
            .env_remove("RESTIC_REST_PASSWORD")
            .output()
            .unwrap()
    };
    ok(run(&["init"]));
    ok(run(&["backup", src.to_str().unwrap()]));
    let snaps = json(&ok(run(&["--json", "snapshots"])));
    ok(run(&["check", "--read-data"]));
    // restic 0.14 takes REST credentials in the URL only.
    let with_creds = url.replacen(
        "://",
        &format!("://{}:{}@", p.var("REST_USER"), p.var("REST_PASS")),
        1,
    );
    let restic = json(&ok(Command::new(restic_bin())
        .args([
            "-r",
            &with_creds,
            "--no-cache",
            "--json",
            "snapshots",
            "--password-file",
        ])
        .arg(env.path("pw"))
        .output()
        .unwrap()));
    assert_eq!(restic[0]["id"], snaps[0]["id"]);
    // Without the env-file's credentials the server refuses: the overlay was what worked.
    std::fs::write(env.path("rest.env"), "RESTIC_REST_USERNAME=nobody\n").unwrap();
    assert!(!run(&["snapshots"]).status.success());
}

#[test]
fn an_unknown_name_lists_the_configured_ones_and_dot_slash_is_always_a_path() {
    let (env, cfg, cwd) = setup();
    let out = cairn_in(&env, &cwd, &cfg, &["-r", "mian", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("mian") && err.contains("cmd, main"), "{err}");
    // `init` of an unknown bare word creates nothing either.
    let out = cairn_in(&env, &cwd, &cfg, &["-r", "mian", "--password-file"])
        .arg(env.path("pw"))
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(!cwd.join("mian").exists());
    // ./main is the directory, even though `main` is a configured name.
    ok(
        cairn_in(&env, &cwd, &cfg, &["-r", "./main", "--password-file"])
            .arg(env.path("pw"))
            .arg("init")
            .output()
            .unwrap(),
    );
    assert!(cwd.join("main/config").is_file());
    assert!(
        !env.path("store/main").exists(),
        "the configured one untouched"
    );
    // RESTIC_REPOSITORY keeps restic's meaning while ./main exists: the directory.
    ok(
        cairn_in(&env, &cwd, &cfg, &["snapshots", "--password-file"])
            .arg(env.path("pw"))
            .env("RESTIC_REPOSITORY", "main")
            .output()
            .unwrap(),
    );
    // local:main too; the bare name is still the configured repository (not initialised).
    ok(
        cairn_in(&env, &cwd, &cfg, &["-r", "local:main", "snapshots"])
            .arg("--password-file")
            .arg(env.path("pw"))
            .output()
            .unwrap(),
    );
    let out = cairn_in(&env, &cwd, &cfg, &["-r", "main", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    // A config that does not load breaks no command given a path.
    std::fs::write(&cfg, "this is [not toml\n").unwrap();
    ok(cairn_in(&env, &cwd, &cfg, &["-r", "./main", "snapshots"])
        .arg("--password-file")
        .arg(env.path("pw"))
        .output()
        .unwrap());
    // ... and a bare word that is neither says why.
    let out = cairn_in(&env, &cwd, &cfg, &["-r", "other", "snapshots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not load"), "{}", stderr(&out));
    // Without any config, a bare word is a path as in restic.
    let out = cairn_in(&env, &cwd, &env.path("none.toml"), &["-r", "fresh", "init"])
        .arg("--password-file")
        .arg(env.path("pw"))
        .output()
        .unwrap();
    ok(out);
    assert!(cwd.join("fresh/config").is_file());
}

#[test]
fn plan_filters_snapshots_ls_find_restore_diff_and_forget_to_the_plans_own() {
    let (env, cfg, cwd) = setup();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[plans.docs]\nrepository = \"main\"\npaths = [\"{src}\"]\n\
         [plans.other]\nrepository = \"main\"\npaths = [\"{src}\"]\n",
        src = env.path("src").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let run = |args: &[&str]| cairn_in(&env, &cwd, &cfg, args).output().unwrap();
    ok(run(&["-r", "main", "init"]));
    let src = env.path("src");
    let mut ids = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for (plan, n) in [("docs", 2), ("other", 1)] {
        for i in 0..n {
            std::fs::write(src.join(format!("{plan}-{i}")), b"x").unwrap();
            let out = json(
                ok(run(&[
                    "-r",
                    "main",
                    "--json",
                    "backup",
                    "--tag",
                    &format!("plan:{plan}"),
                    src.to_str().unwrap(),
                ]))
                .lines()
                .last()
                .unwrap(),
            );
            ids.entry(plan)
                .or_default()
                .push(out["snapshot_id"].as_str().unwrap().to_string());
        }
    }
    // No -r: --plan picks the plan's repository.
    let snaps = json(&ok(run(&["--json", "snapshots", "--plan", "docs"])));
    let got: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids["docs"], "{snaps}");
    // latest of the plan, not of the repository (the other plan's came last).
    let ls = ok(run(&["ls", "--plan", "docs", "latest"]));
    assert!(ls.contains("docs-1") && !ls.contains("other-0"), "{ls}");
    let found = json(&ok(run(&["--json", "find", "--plan", "docs", "other-0"])));
    assert_eq!(found, serde_json::json!([]));
    // docs-0 is in all three snapshots; the plan's are two.
    let found = json(&ok(run(&["--json", "find", "--plan", "docs", "docs-0"])));
    let mut in_snaps: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["snapshot"].as_str().unwrap())
        .collect();
    in_snaps.sort();
    let mut want = ids["docs"].clone();
    want.sort();
    assert_eq!(in_snaps, want, "{found}");
    let all = json(&ok(run(&["-r", "main", "--json", "find", "docs-0"])));
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let target = env.path("restored");
    ok(run(&[
        "restore",
        "--plan",
        "docs",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]));
    let back = target.join(src.strip_prefix("/").unwrap());
    assert!(back.join("docs-1").exists() && !back.join("other-0").exists());
    // An id of another plan is refused.
    let out = run(&["diff", "--plan", "docs", &ids["docs"][0], &ids["other"][0]]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not one of plan docs"),
        "{}",
        stderr(&out)
    );
    ok(run(&[
        "diff",
        "--plan",
        "docs",
        &ids["docs"][0],
        &ids["docs"][1],
    ]));
    // forget --plan keeps the other plan's snapshot untouched.
    ok(run(&[
        "forget",
        "--plan",
        "docs",
        "--keep-last",
        "1",
        "-g",
        "",
    ]));
    let left = json(&restic_at(
        &env,
        &env.path("store/main"),
        &["snapshots", "--json"],
    ));
    let mut left: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    left.sort();
    let mut want = vec![ids["docs"][1].as_str(), ids["other"][0].as_str()];
    want.sort();
    assert_eq!(left, want);
    // An unknown plan names the known ones.
    let out = run(&["snapshots", "--plan", "nope"]);
    assert!(stderr(&out).contains("docs, other"), "{}", stderr(&out));
}

/// A local webhook receiver: the JSON bodies it was sent.
fn receiver() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                g.lock().unwrap().push(v);
            }
            let mut c = conn;
            let _ =
                c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (port, got)
}

/// Two repositories, one plan each; the password file of `usb` is gone (the disk is away).
fn isolation_setup() -> (Env, PathBuf) {
    isolation_setup_notifying("")
}

fn isolation_setup_notifying(settings: &str) -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data\n").unwrap();
    std::fs::write(env.path("usb-pw"), format!("{PASSWORD}\n")).unwrap();
    for (repo, pw) in [("nas", "pw"), ("usb", "usb-pw")] {
        let r = env.path(repo);
        ok(env.cairn_repo(
            &r,
            &["init", "--password-file", env.path(pw).to_str().unwrap()],
        ));
    }
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n{settings}\n\
             [repositories.nas]\nurl = \"{nas}\"\npassword-file = \"{pw}\"\n\
             [repositories.usb]\nurl = \"{usb}\"\npassword-file = \"{usbpw}\"\n\
             [plans.healthy]\nrepository = \"nas\"\npaths = [\"{src}\"]\nschedule = \"daily\"\n\
             [plans.broken]\nrepository = \"usb\"\npaths = [\"{src}\"]\nschedule = \"daily\"\n\
             [repositories.cloud]\nurl = \"{nas}-cloud\"\npassword-file = \"{pw}\"\nenv-file = \"{gone}\"\n\
             [plans.noenv]\nrepository = \"cloud\"\npaths = [\"{src}\"]\n",
            gone = env.path("gone.env").display(),
            state = env.path("state").display(),
            nas = env.path("nas").display(),
            pw = env.path("pw").display(),
            usb = env.path("usb").display(),
            usbpw = env.path("usb-pw").display(),
            src = src.display(),
        ),
    );
    std::fs::remove_file(env.path("usb-pw")).unwrap();
    (env, cfg)
}

fn restic_count(env: &Env, repo: &str) -> usize {
    json(&restic_at(env, &env.path(repo), &["snapshots", "--json"]))
        .as_array()
        .map_or(0, |a| a.len())
}

#[test]
fn an_unreadable_password_file_fails_only_its_own_plan_in_run() {
    let (port, got) = receiver();
    let (env, cfg) = isolation_setup_notifying(&format!(
        "notify = {{ webhook = \"http://127.0.0.1:{port}/hook\" }}"
    ));
    let cwd = env.path("");
    // `config check` still reports the missing file.
    let out = cairn_in(&env, &cwd, &cfg, &["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("usb-pw") || String::from_utf8_lossy(&out.stdout).contains("usb-pw")
    );
    // The healthy plan alone.
    ok(cairn_in(&env, &cwd, &cfg, &["run", "healthy"])
        .output()
        .unwrap());
    assert_eq!(restic_count(&env, "nas"), 1);
    // All: the healthy one runs, the broken one is recorded with its category, exit 1.
    let out = cairn_in(&env, &cwd, &cfg, &["--json", "run", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let by: std::collections::BTreeMap<&str, &serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["plan"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by["healthy"]["result"], "success", "{v}");
    assert_eq!(by["broken"]["error_category"], "auth", "{v}");
    assert!(
        by["broken"]["error"].as_str().unwrap().contains("usb-pw"),
        "{v}"
    );
    // A repository whose env-file is missing: its plan fails as a config problem.
    assert_eq!(by["noenv"]["error_category"], "config", "{v}");
    assert!(
        by["noenv"]["error"].as_str().unwrap().contains("gone.env"),
        "{v}"
    );
    assert_eq!(restic_count(&env, "nas"), 2);
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let cat: String = db
        .query_row(
            "SELECT error_category FROM operations WHERE plan = 'broken' AND operation = 'run'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cat, "auth");
    // The broken plan's failure was notified, naming the file.
    let got = got.lock().unwrap().clone();
    let failure = got
        .iter()
        .find(|m| m["plan"] == "broken" && m["event"] == "failure")
        .unwrap_or_else(|| panic!("no failure notification for plan broken: {got:?}"));
    assert_eq!(failure["error_category"], "auth");
    assert!(failure["error"].as_str().unwrap().contains("usb-pw"));
}

#[test]
fn a_config_that_does_not_load_is_recorded_and_notified_by_run() {
    let (port, got) = receiver();
    let env = Env::new();
    let cfg = env.path("cfg/cairn.toml");
    write_file(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{}\"\nnotify = {{ webhook = \"http://127.0.0.1:{port}/hook\" }}\n\
             [plans.nightly]\nrepository = \"nowhere\"\npaths = [\"/etc\"]\n",
            env.path("state").display()
        ),
    );
    let out = cairn_in(&env, &env.path(""), &cfg, &["run", "--all"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let (plan, result, cat, err): (String, String, String, String) = db
        .query_row(
            "SELECT plan, result, error_category, error FROM operations WHERE operation = 'run'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (plan.as_str(), result.as_str(), cat.as_str()),
        ("-", "failure", "config")
    );
    assert!(err.contains("nowhere"), "{err}");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["plan"], "-");
    assert_eq!(got[0]["error_category"], "config");
}

#[test]
fn the_daemon_starts_and_runs_the_healthy_plan_despite_a_missing_password_file() {
    let (env, cfg) = isolation_setup();
    let cwd = env.path("");
    // Both plans last ran three days ago: the daemon owes each a run.
    ok(cairn_in(&env, &cwd, &cfg, &["status"]).output().unwrap());
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 3.0 * 86_400.0;
    for (plan, repo) in [("healthy", "nas"), ("broken", "usb")] {
        db.execute(
            "INSERT INTO operations (plan, repository, operation, started, finished, result) VALUES (?1, ?2, 'run', ?3, ?3, 'success')",
            rusqlite::params![plan, repo, then],
        )
        .unwrap();
    }
    let mut daemon = cairn_in(&env, &cwd, &cfg, &["daemon"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let broken_recorded = || {
        db.query_row(
            "SELECT count(*) FROM operations WHERE plan = 'broken' AND operation = 'run' AND error_category = 'auth'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
            > 0
    };
    loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            panic!("the daemon stopped: {st}");
        }
        if restic_count(&env, "nas") == 1 && broken_recorded() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not run the healthy plan and record the broken one"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Still running after both.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = daemon.wait();
}

#[test]
fn copy_from_a_configured_name_uses_its_url_and_password_source_and_restic_reads_the_copy() {
    let (env, cfg, cwd) = setup();
    let src = env.path("src");
    let run = |args: &[&str]| cairn_in(&env, &cwd, &cfg, args).output().unwrap();
    // The source `cmd` gets its password from a command reading its env-file.
    ok(run(&["-r", "cmd", "init"]));
    ok(run(&["-r", "main", "init"]));
    ok(run(&["-r", "cmd", "backup", src.to_str().unwrap()]));
    let from = json(&ok(run(&["-r", "cmd", "--json", "snapshots"])));
    // No URL and no password on the command line, for either side.
    ok(run(&["-r", "main", "copy", "--from-repo", "cmd"]));
    assert!(!cwd.join("cmd").exists(), "not ./cmd");
    let dst = env.path("store/main");
    restic_at(&env, &dst, &["check", "--read-data"]);
    let copied = json(&restic_at(&env, &dst, &["snapshots", "--json"]));
    assert_eq!(copied.as_array().unwrap().len(), 1, "{copied}");
    assert_eq!(copied[0]["tree"], from[0]["tree"], "{copied}");
    let ls = restic_at(&env, &dst, &["ls", "latest"]);
    assert!(ls.contains("b.bin"), "{ls}");
    // An explicit --from-password-file still wins over the config's: a wrong one is refused.
    std::fs::write(env.path("wrong"), "not the password\n").unwrap();
    let out = cairn_in(
        &env,
        &cwd,
        &cfg,
        &[
            "-r",
            "main",
            "copy",
            "--from-repo",
            "cmd",
            "--from-password-file",
        ],
    )
    .arg(env.path("wrong"))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    // An unknown source name lists the configured ones.
    let out = run(&["-r", "main", "copy", "--from-repo", "cdm"]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("cmd, main"), "{}", stderr(&out));
}

#[test]
fn a_config_that_does_not_load_is_recorded_and_notified_by_the_daemon_which_exits_non_zero() {
    let (port, got) = receiver();
    let env = Env::new();
    let cfg = env.path("cfg/cairn.toml");
    let broken = |repo: &str| {
        format!(
            "[settings]\nstate-dir = \"{}\"\nnotify = {{ webhook = \"http://127.0.0.1:{port}/hook\" }}\n\
             [plans.nightly]\nrepository = \"{repo}\"\npaths = [\"/etc\"]\nschedule = \"daily\"\n",
            env.path("state").display()
        )
    };
    write_file(&cfg, &broken("nowhere"));
    let db = env.path("state/history.db");
    let failures = || -> Vec<(String, String, String)> {
        let db = rusqlite::Connection::open(&db).unwrap();
        let mut st = db
            .prepare("SELECT plan, error_category, error FROM operations WHERE operation = 'run' ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let start = || {
        cairn_in(&env, &env.path(""), &cfg, &["daemon"])
            .output()
            .unwrap()
    };
    // It exits non-zero (systemd's Restart= starts it again later) ...
    let out = start();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    // ... after recording the failure and notifying it.
    let rows = failures();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("-", "config"));
    assert!(
        rows[0].2.contains("daemon") && rows[0].2.contains("nowhere"),
        "{rows:?}"
    );
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["plan"], "-");
    assert_eq!(sent[0]["error_category"], "config");
    assert!(sent[0]["error"].as_str().unwrap().contains("nowhere"));
    // Started again by systemd with the same problem: recorded, not notified again.
    assert_eq!(start().status.code(), Some(1));
    assert_eq!(failures().len(), 2);
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "the same failure notified twice"
    );
    // Another problem is news.
    write_file(&cfg, &broken("elsewhere"));
    assert_eq!(start().status.code(), Some(1));
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1]["error"].as_str().unwrap().contains("elsewhere"));
}

#[test]
fn every_restic_style_command_works_by_name_on_a_remote_repository_with_credentials_only_in_the_config(
) {
    let g = crate::peers::garage();
    let (env, cfg, cwd) = setup();
    let url = format!("s3:{}/{}/named", g.var("S3_ENDPOINT"), g.var("S3_BUCKET"));
    let keys = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ];
    let creds: String = keys.iter().map(|k| format!("{k}={}\n", g.var(k))).collect();
    std::fs::write(env.path("s3.env"), creds).unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[repositories.garage]\nurl = \"{url}\"\npassword-file = \"{}\"\nenv-file = \"{}\"\n\
         options = {{ \"retry.max-time\" = \"20s\" }}\n",
        env.path("pw").display(),
        env.path("s3.env").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let src = env.path("src");
    let run = |name: &str, args: &[&str]| {
        let mut full = vec!["-r", name];
        full.extend_from_slice(args);
        let mut c = cairn_in(&env, &cwd, &cfg, &full);
        // Nothing in the environment: the env-file alone has the keys.
        for k in keys {
            c.env_remove(k);
        }
        c.output().unwrap()
    };
    let remote = |args: &[&str]| ok(run("garage", args));
    remote(&["init"]);
    remote(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("a.txt"), b"alpha, changed\n").unwrap();
    remote(&["backup", src.to_str().unwrap()]);
    let snaps = json(&remote(&["--json", "snapshots"]));
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{snaps}");
    let a_txt = src.join("a.txt");
    let a_txt = a_txt.to_str().unwrap();
    assert!(remote(&["ls", "latest"]).contains(a_txt));
    let found = json(&remote(&["--json", "find", "b.bin"]));
    assert_eq!(found.as_array().unwrap().len(), 2, "{found}");
    let target = env.path("restored");
    remote(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let back = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("d/b.bin")).unwrap(),
        random_bytes(7, 300_000)
    );
    assert_eq!(remote(&["dump", "latest", a_txt]), "alpha, changed\n");
    let diff = remote(&["diff", &ids[0], &ids[1]]);
    assert!(diff.contains("a.txt"), "{diff}");
    remote(&["tag", "--add", "kept", &ids[1]]);
    let stats = json(&remote(&["--json", "stats"]));
    assert!(stats["total_size"].as_u64().unwrap() > 300_000, "{stats}");
    let keys_listed = json(&remote(&["--json", "key", "list"]));
    assert_eq!(keys_listed.as_array().unwrap().len(), 1, "{keys_listed}");
    let config = json(&remote(&["cat", "config"]));
    // copy from the local configured repository, both sides by name.
    ok(run("main", &["init"]));
    ok(run("main", &["backup", env.path("cfg").to_str().unwrap()]));
    remote(&["copy", "--from-repo", "main"]);
    // forget the untagged first snapshot, then prune.
    remote(&["forget", "--keep-tag", "kept", "--keep-last", "1", "-g", ""]);
    remote(&["prune"]);
    remote(&["check", "--read-data"]);
    // The real restic, given the same URL and keys explicitly, reads the result.
    let restic = |args: &[&str]| {
        let mut c = Command::new(restic_bin());
        c.args(["-r", &url, "--no-cache", "--password-file"])
            .arg(env.path("pw"))
            .args(args);
        for k in keys {
            c.env(k, g.var(k));
        }
        ok(c.output().unwrap())
    };
    let seen = json(&restic(&["snapshots", "--json"]));
    let mut seen: Vec<(String, Vec<String>)> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_array()
                .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (s["paths"][0].as_str().unwrap().to_string(), tags)
        })
        .collect();
    seen.sort();
    let want_cfg = env.path("cfg").display().to_string();
    assert_eq!(
        seen,
        vec![
            (want_cfg, vec![]),
            (src.display().to_string(), vec!["kept".to_string()])
        ],
        "the tagged snapshot and the copy are left"
    );
    restic(&["check", "--read-data"]);
    let restic_config = json(&restic(&["cat", "config"]));
    assert_eq!(restic_config["id"], config["id"]);
    assert_eq!(
        restic(&["dump", "--tag", "kept", "latest", a_txt]),
        "alpha, changed\n"
    );
}
