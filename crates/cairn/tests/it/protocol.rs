//! The typed protocol between `cairn run` and its children: every failure recorded with
//! the category of its typed error (never from the wording, so the messages here are
//! written to mislead a scraper), and a child's channel carrying status messages then a
//! summary that agrees with restic.

use crate::*;
use std::os::unix::fs::PermissionsExt;

/// Runs cairn with a config file (no repository on the command line).
fn cfg_cmd(env: &Env, config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env("CAIRN_CACHE_DIR", env.path("cache"));
    c
}

/// The backup step of the latest run of `plan`, from `cairn history --json --steps`.
fn backup_step(env: &Env, config: &Path, plan: &str) -> serde_json::Value {
    let out = ok(
        cfg_cmd(env, config, &["--json", "history", plan, "--steps"])
            .output()
            .unwrap(),
    );
    let runs = json(&out);
    let run = &runs[0];
    run["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {runs}"))
        .iter()
        .find(|s| s["operation"] == "backup")
        .unwrap_or_else(|| panic!("no backup step: {runs}"))
        .clone()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn backup_failures_are_recorded_with_the_category_of_their_typed_error() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), b"a\n").unwrap();
    // Misleading names: a scraper of wording would call these other categories.
    let locked_out = env.path("no such file or directory - network unreachable");
    std::fs::create_dir_all(&locked_out).unwrap();
    std::fs::write(locked_out.join("wrong password"), b"secret\n").unwrap();
    std::fs::set_permissions(
        locked_out.join("wrong password"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::write(
        env.path("wrong-pw"),
        "permission denied: no space left on device\n",
    )
    .unwrap();
    let port = closed_port();
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.good]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [repositories.badpw]\nurl = \"{repo}\"\npassword-file = \"{wrong}\"\n\n\
             [repositories.down]\nurl = \"rest:http://127.0.0.1:{port}/permission-denied/\"\npassword-file = \"{pw}\"\n\
             options = {{ \"retry.max-time\" = \"1s\", \"timeout.connect\" = \"1s\" }}\n\n\
             [plans.wrongpw]\nrepository = \"badpw\"\npaths = [\"{data}\"]\n\n\
             [plans.unreachable]\nrepository = \"down\"\npaths = [\"{data}\"]\n\n\
             [plans.unreadable]\nrepository = \"good\"\npaths = [\"{data}\", \"{locked_out}\"]\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            wrong = env.path("wrong-pw").display(),
            data = data.display(),
            locked_out = locked_out.display(),
        ),
    )
    .unwrap();

    for (plan, category, outcome, hint) in [
        // A hint of its own names the config key, in the child's Fatal line.
        (
            "wrongpw",
            "auth",
            "failure",
            "check password-file of repository \"badpw\"",
        ),
        (
            "unreachable",
            "network",
            "failure",
            "hint: check that the repository's server is reachable",
        ),
    ] {
        let out = cfg_cmd(&env, &config, &["run", plan]).output().unwrap();
        assert!(!out.status.success(), "{plan}: {}", stderr(&out));
        let step = backup_step(&env, &config, plan);
        assert_eq!(step["error_category"], category, "{plan}: {step}");
        assert_eq!(step["result"], outcome, "{plan}: {step}");
        assert!(
            step["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{step}"
        );
        // The child's hint (its own, else its category's) lands in the run's log.
        let run_id = step["run_id"].as_i64().unwrap().to_string();
        let log = ok(cfg_cmd(&env, &config, &["history", "--log", &run_id])
            .output()
            .unwrap());
        assert!(log.contains(hint), "{log}");
    }

    // Root reads anything: drop the capabilities that let it, so the 0000 file is
    // unreadable for the child as for any user. The backup completes without it.
    let c = cfg_cmd(&env, &config, &["run", "unreadable"]);
    let argv: Vec<std::ffi::OsString> = std::iter::once(c.get_program().to_owned())
        .chain(c.get_args().map(|a| a.to_owned()))
        .collect();
    let mut sp = Command::new("setpriv");
    sp.args([
        "--inh-caps=-all",
        "--bounding-set=-dac_override,-dac_read_search",
    ])
    .args(&argv)
    .env_remove("RESTIC_REPOSITORY")
    .env_remove("RESTIC_PASSWORD")
    .env_remove("RESTIC_PASSWORD_FILE")
    .env("CAIRN_CACHE_DIR", env.path("cache"));
    let out = sp.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let step = backup_step(&env, &config, "unreadable");
    assert_eq!(step["error_category"], "permission", "{step}");
    assert_eq!(step["result"], "warning", "{step}");
    assert!(step["snapshot_id"].is_string(), "{step}");
}

/// Runs `cairn backup` as the runner would, with the protocol channel a plain file;
/// returns every message, each line parsed (a line that is no message fails the test).
fn child_backup(env: &Env, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let channel = env.path("channel.jsonl");
    let _ = std::fs::remove_file(&channel);
    let mut full = vec!["backup", "--json"];
    full.extend_from_slice(args);
    let out = env
        .cairn_cmd(&env.repo(), &full)
        .env("CAIRN_CHILD_PROTOCOL", "1")
        .env("CAIRN_CHILD_PROTOCOL_PATH", &channel)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&channel).unwrap_or_default();
    let msgs = text
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
            assert!(v["message_type"].is_string(), "no message_type: {l}");
            v
        })
        .collect();
    (out, msgs)
}

#[test]
fn a_child_sends_status_while_it_works_then_a_summary_that_restic_agrees_with() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..8u64 {
        std::fs::write(
            data.join(format!("part-{i}.bin")),
            random_bytes(100 + i, 25 << 20),
        )
        .unwrap();
    }
    let started = std::time::Instant::now();
    let (out, msgs) = child_backup(&env, &[data.to_str().unwrap()]);
    let took = started.elapsed();
    ok(out);
    let kinds: Vec<&str> = msgs
        .iter()
        .map(|m| m["message_type"].as_str().unwrap())
        .collect();
    let statuses = kinds.iter().filter(|k| **k == "status").count();
    assert!(statuses >= 1, "no status for a 200 MB backup: {kinds:?}");
    // At most ~4 a second.
    assert!(
        statuses as f64 <= took.as_secs_f64() * 4.0 + 1.0,
        "{statuses} status messages in {took:?}"
    );
    assert_eq!(kinds.last(), Some(&"summary"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "summary").count(), 1);
    assert!(!kinds.contains(&"exit_error"), "{kinds:?}");
    // Status messages only grow, and know the totals from the scan.
    let mut last = 0;
    for s in msgs.iter().filter(|m| m["message_type"] == "status") {
        let done = s["bytes_done"].as_u64().unwrap();
        assert!(done >= last, "{s}");
        last = done;
        assert!(s["percent_done"].as_f64().unwrap() <= 1.0, "{s}");
    }
    let final_status = msgs
        .iter()
        .rfind(|m| m["message_type"] == "status")
        .unwrap();
    assert_eq!(final_status["total_files"], 8, "{final_status}");
    assert_eq!(final_status["total_bytes"], 200u64 << 20, "{final_status}");

    let summary = msgs.last().unwrap();
    assert_eq!(summary["total_files_processed"], 8, "{summary}");
    assert_eq!(summary["total_bytes_processed"], 200u64 << 20, "{summary}");
    assert_eq!(summary["files_new"], 8, "{summary}");
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        summary["snapshot_id"], snaps[0]["id"],
        "{summary} vs {snaps:?}"
    );
}

#[test]
fn a_child_reports_the_category_of_its_typed_error_whatever_the_wording() {
    let env = Env::new();
    ok(env.cairn(&["init"]));

    // Missing sources, named like other failures.
    let gone = env.path("permission denied - wrong password - no space left on device");
    let (out, msgs) = child_backup(&env, &[gone.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["message_type"], "exit_error");
    assert_eq!(msgs[0]["category"], "source-missing", "{}", msgs[0]);
    assert_eq!(msgs[0]["code"], 1);
    assert!(msgs[0]["message"]
        .as_str()
        .unwrap()
        .contains("wrong password"));
    assert!(msgs[0]["hint"].is_string());

    // A repository locked exclusively (by restic, changing the password and waiting for
    // the new one on stdin).
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"f").unwrap();
    let mut holder = env
        .restic_cmd(&["key", "passwd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files_under(&env.repo().join("locks")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "restic took no lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (out, msgs) = child_backup(&env, &[data.to_str().unwrap()]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert_eq!(msgs.last().unwrap()["category"], "lock", "{msgs:?}");
    assert_eq!(msgs.last().unwrap()["code"], 11);

    // No repository at the location (named like a lock problem): config, restic's 10.
    let channel = env.path("channel-norepo.jsonl");
    let out = env
        .cairn_cmd(
            &env.path("repository is already locked"),
            &["backup", data.to_str().unwrap()],
        )
        .env("CAIRN_CHILD_PROTOCOL", "1")
        .env("CAIRN_CHILD_PROTOCOL_PATH", &channel)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let msg = json(&std::fs::read_to_string(&channel).unwrap());
    assert_eq!(msg["category"], "config", "{msg}");
    assert_eq!(msg["code"], 10, "{msg}");

    // Wrong password, in a file whose words say otherwise.
    std::fs::write(env.path("pw"), "repository is already locked\n").unwrap();
    let (out, msgs) = child_backup(&env, &[data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert_eq!(msgs.last().unwrap()["category"], "auth", "{msgs:?}");
}

#[test]
fn a_full_repository_disk_is_recorded_as_disk_full() {
    let env = Env::new();
    let mnt = env.path("small-disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "this test mounts a small tmpfs and must run as root"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let repo = mnt.join("repo");
    ok(env.cairn_repo(&repo, &["init"]));
    // Named like another failure.
    let src = env.path("permission denied - connection refused");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("huge"), random_bytes(9, 32 << 20)).unwrap();
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.small]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [plans.full]\nrepository = \"small\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            repo = repo.display(),
            pw = env.path("pw").display(),
            src = src.display(),
        ),
    )
    .unwrap();
    let out = cfg_cmd(&env, &config, &["run", "full"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let step = backup_step(&env, &config, "full");
    assert_eq!(step["error_category"], "disk-full", "{step}");
    assert_eq!(step["result"], "failure", "{step}");
}

/// A plan over `data` in a fresh repository, with nothing scheduled.
fn simple_plan(env: &Env, data: &Path, extra: &str) -> PathBuf {
    ok(env.cairn(&["init"]));
    let config = env.path("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.local]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [plans.p]\nrepository = \"local\"\npaths = [\"{data}\"]\n{extra}",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            data = data.display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_run_hands_each_steps_messages_to_the_progress_callback() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..6u64 {
        std::fs::write(
            data.join(format!("part-{i}.bin")),
            random_bytes(200 + i, 25 << 20),
        )
        .unwrap();
    }
    let config = simple_plan(&env, &data, "retention = { keep-last = 1 }\n");
    // `--events`: the runner's callback writes each event as a JSON line on stdout.
    let out = ok(cfg_cmd(&env, &config, &["run", "p", "--events"])
        .output()
        .unwrap());
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let run_id = &events[0]["run_id"];
    let seq: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["plan"], "p", "{e}");
            assert_eq!(&e["run_id"], run_id, "{e}");
            (
                e["step"].as_str().unwrap().to_string(),
                e["message"]["message_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let backup: Vec<&str> = seq
        .iter()
        .filter(|(s, _)| s == "backup")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(backup.first(), Some(&"step_started"), "{seq:?}");
    assert!(
        backup.contains(&"status"),
        "no status reached the callback: {seq:?}"
    );
    let summary = backup
        .iter()
        .position(|m| *m == "summary")
        .expect("summary");
    assert!(backup[1..summary].iter().all(|m| *m == "status"), "{seq:?}");
    assert_eq!(&backup[summary + 1..], ["step_finished"], "{seq:?}");
    let finished = events
        .iter()
        .find(|e| e["step"] == "backup" && e["message"]["message_type"] == "step_finished")
        .unwrap();
    assert_eq!(finished["message"]["outcome"], "success", "{finished}");
    let summary = events
        .iter()
        .find(|e| e["message"]["message_type"] == "summary")
        .unwrap();
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(
        summary["message"]["snapshot_id"], snaps[0]["id"],
        "{summary}"
    );
    assert_eq!(summary["message"]["total_bytes_processed"], 150u64 << 20);
    // Then retention, started and finished.
    let forget: Vec<&str> = seq
        .iter()
        .filter(|(s, _)| s == "forget")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(forget.first(), Some(&"step_started"), "{seq:?}");
    assert_eq!(forget.last(), Some(&"step_finished"), "{seq:?}");
}

#[test]
fn run_only_runs_one_step_now_without_backup_or_hooks() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a"), random_bytes(3, 100_000)).unwrap();
    let hooks = env.path("hooks.log");
    let config = simple_plan(
        &env,
        &data,
        &format!(
            "check = {{ schedule = \"monthly\" }}\nhooks = {{ before = [\"echo before >> {h}\"], finally = [\"echo finally >> {h}\"] }}\n",
            h = hooks.display()
        ),
    );
    ok(cfg_cmd(&env, &config, &["run", "p"]).output().unwrap());
    std::fs::remove_file(&hooks).unwrap();
    // The check is not due for a month; --only runs it now, and a restore test the plan
    // does not even configure.
    for only in ["check", "restore-test", "prune"] {
        ok(cfg_cmd(&env, &config, &["run", "p", "--only", only])
            .output()
            .unwrap());
        let runs = json(&ok(cfg_cmd(
            &env,
            &config,
            &["--json", "history", "p", "--steps"],
        )
        .output()
        .unwrap()));
        let steps: Vec<&str> = runs[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["operation"].as_str().unwrap())
            .collect();
        assert_eq!(steps, [only], "{}", runs[0]);
        assert_eq!(runs[0]["result"], "success", "{}", runs[0]);
    }
    assert!(!hooks.exists(), "hooks ran for --only");
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(snaps.as_array().unwrap().len(), 1, "--only backed up");
}
