//! Several check policies per plan (the strongest due one runs, once, for all those due),
//! a rotating read subset (`read-data-subset = "n/t"`, position kept in the state, moved
//! on after a successful check only; restic agrees the groups cover every pack), and
//! every hook command timed as a step in the history.

use crate::*;

/// A repository with many small packs (each backup writes its own), and a config with
/// plan `p` over `data`, `extra` appended to the plan.
fn setup(extra: &str) -> (Env, PathBuf) {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..6u64 {
        std::fs::write(data.join(format!("f{i}")), random_bytes(40 + i, 60_000)).unwrap();
        ok(env.cairn(&["backup", "-q", data.to_str().unwrap()]));
    }
    let config = env.path("cairn.toml");
    write_file(
        &config,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.local]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [plans.p]\nrepository = \"local\"\npaths = [\"{data}\"]\n{extra}",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            data = data.display(),
        ),
    );
    (env, config)
}

/// The steps of the latest run of `p`, from `cairn history --json --steps`.
fn last_steps(env: &Env, config: &Path) -> Vec<serde_json::Value> {
    let runs = json(&ok(
        env.config_run(config, &["--json", "history", "p", "--steps"])
    ));
    runs[0]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {runs}"))
        .clone()
}

/// The check step of the latest run (there is one).
fn last_check(env: &Env, config: &Path) -> serde_json::Value {
    let steps = last_steps(env, config);
    let checks: Vec<&serde_json::Value> =
        steps.iter().filter(|s| s["operation"] == "check").collect();
    assert_eq!(checks.len(), 1, "{steps:?}");
    checks[0].clone()
}

/// restic's count of the packs in group `k` of `t`, and of all packs.
fn restic_group(env: &Env, k: u32, t: u32) -> (u64, u64) {
    let out = env.restic(&["check", "--read-data-subset", &format!("{k}/{t}")]);
    let text = ok(out);
    // "read group #2 of 4 data packs (out of total 13 packs in 3 groups)"
    let line = text
        .lines()
        .find(|l| l.starts_with("read group #"))
        .unwrap_or_else(|| panic!("{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let n = words[4].parse().unwrap();
    let total = words[10].parse().unwrap();
    (n, total)
}

#[test]
fn the_full_read_runs_first_for_both_policies_then_the_always_due_subset_runs_alone() {
    let (env, config) = setup(
        "check = [{ name = \"quick\", schedule = \"always\", read-data-subset = \"10%\" },\n\
         { name = \"full\", schedule = \"monthly\", read-data-subset = \"all\" }]\n",
    );
    let (_, total) = restic_group(&env, 1, 1);
    let mut ran = Vec::new();
    for _ in 0..3 {
        ok(env.config_run(&config, &["run", "p", "--only", "check"]));
        let c = last_check(&env, &config);
        assert_eq!(c["result"], "success", "{c}");
        ran.push((
            c["detail"]["policy"].as_str().unwrap().to_string(),
            c["detail"]["read_data"].as_str().unwrap().to_string(),
        ));
        if ran.len() == 1 {
            // Both were due: the full read ran once, for both.
            assert_eq!(
                c["detail"]["satisfies"],
                serde_json::json!(["quick", "full"])
            );
            assert_eq!(c["detail"]["packs_read"], total, "{c}");
        } else {
            assert_eq!(c["detail"]["satisfies"], serde_json::json!(["quick"]));
        }
    }
    let want = |p: &str, r: &str| (p.to_string(), r.to_string());
    assert_eq!(
        ran,
        [
            want("full", "all"),
            want("quick", "10%"),
            want("quick", "10%")
        ]
    );
    // `cairn history --steps` names the policy that ran.
    let text = ok(env.config_run(&config, &["history", "p", "--steps"]));
    assert!(text.contains("check quick"), "{text}");
    assert!(text.contains("check full"), "{text}");
}

#[test]
fn a_rotating_third_reads_groups_1_2_3_which_restic_agrees_cover_every_pack() {
    let (env, config) = setup("check = { schedule = \"monthly\", read-data-subset = \"1/3\" }\n");
    let status_next = || {
        let st = json(&ok(env.config_run(&config, &["--json", "status"])));
        st[0]["check_next_groups"].clone()
    };
    assert_eq!(
        status_next(),
        serde_json::json!([{"policy": "#1", "group": "1/3"}])
    );
    let mut read = 0;
    let mut total = 0;
    for k in 1..=3u32 {
        // Not due for a month: --only runs it now, rotating all the same.
        ok(env.config_run(&config, &["run", "p", "--only", "check"]));
        let c = last_check(&env, &config);
        assert_eq!(c["result"], "success", "{c}");
        assert_eq!(c["detail"]["group"], format!("{k}/3"), "{c}");
        let (n, all) = restic_group(&env, k, 3);
        assert_eq!(c["detail"]["packs_read"], n, "group {k}: {c}");
        read += n;
        total = all;
        let next = if k == 3 { 1 } else { k + 1 };
        assert_eq!(
            status_next(),
            serde_json::json!([{"policy": "#1", "group": format!("{next}/3")}])
        );
    }
    assert!(total >= 12, "few packs: {total}");
    assert_eq!(read, total, "every pack read once in three runs");
    // The child was asked for the group, as restic would be.
    let log = ok(env.config_run(
        &config,
        &[
            "history",
            "--log",
            &last_steps(&env, &config)[0]["run_id"].to_string(),
        ],
    ));
    assert!(log.contains("reading group 3/3 (rotating)"), "{log}");
    let text = ok(env.config_run(&config, &["status"]));
    assert!(
        text.contains("check policy #1 reads group 1/3 next"),
        "{text}"
    );
}

#[test]
fn a_failed_check_does_not_move_the_rotation_on() {
    let (env, config) =
        setup("check = [{ name = \"rot\", schedule = \"always\", read-data-subset = \"2/4\" }]\n");
    ok(env.config_run(&config, &["run", "p", "--only", "check"]));
    assert_eq!(last_check(&env, &config)["detail"]["group"], "2/4");
    // The repository is away: the check of group 3 fails.
    std::fs::rename(env.repo(), env.path("away")).unwrap();
    let out = env.config_run(&config, &["run", "p", "--only", "check"]);
    assert!(!out.status.success());
    let c = last_check(&env, &config);
    assert_eq!(c["result"], "failure", "{c}");
    assert_eq!(c["detail"]["group"], "3/4", "{c}");
    std::fs::rename(env.path("away"), env.repo()).unwrap();
    // Back: group 3 again, then 4, then 1.
    for g in ["3/4", "4/4", "1/4"] {
        ok(env.config_run(&config, &["run", "p", "--only", "check"]));
        let c = last_check(&env, &config);
        assert_eq!(
            (c["result"].as_str(), c["detail"]["group"].as_str()),
            (Some("success"), Some(g)),
            "{c}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let file = env.path("state/check-rotation/p.rot");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "2/4");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn every_hook_command_is_a_timed_step_with_its_exit_code() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a"), b"alpha").unwrap();
    let config = env.path("cairn.toml");
    write_file(
        &config,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.local]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [sources.files]\npaths = [\"{data}\"]\nhooks = {{ before = [\"echo source-before\"] }}\n\n\
             [plans.p]\nrepository = \"local\"\nsources = [\"files\"]\n\
             hooks = {{ before = [\"sleep 0.4\"], after = [\"true\"], success = [\"echo out; exit 3\"], failure = [\"true\"], finally = [\"true TOKEN=s3cr3t\"] }}\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            data = data.display(),
        ),
    );
    let out = env.config_run(&config, &["run", "p"]);
    assert!(!out.status.success(), "a failed success hook fails the run");
    let steps = last_steps(&env, &config);
    let hooks: Vec<(String, String, i64, String)> = steps
        .iter()
        .filter(|s| s["operation"] == "hook")
        .map(|s| {
            (
                s["detail"]["hook"].as_str().unwrap().to_string(),
                s["detail"]["command"].as_str().unwrap().to_string(),
                s["detail"]["exit_code"].as_i64().unwrap(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let h = |k: &str, c: &str, code: i64, r: &str| (k.into(), c.into(), code, r.into());
    assert_eq!(
        hooks,
        [
            h("before", "sleep 0.4", 0, "success"),
            h("before", "echo source-before", 0, "success"),
            h("after", "true", 0, "success"),
            h("success", "echo out; exit 3", 3, "failure"),
            // Shown like `config show` shows it: no secret in the history.
            h("finally", "true TOKEN=<redacted>", 0, "success"),
        ]
    );
    assert!(
        !serde_json::Value::from(steps.clone())
            .to_string()
            .contains("s3cr3t"),
        "{steps:?}"
    );
    // In order with the backup, each timed.
    let ops: Vec<&str> = steps
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["hook", "hook", "backup", "hook", "hook", "hook"]);
    for s in &steps {
        let took = s["finished"].as_f64().unwrap() - s["started"].as_f64().unwrap();
        assert!((0.0..30.0).contains(&took), "{s}");
    }
    let took =
        |s: &serde_json::Value| s["finished"].as_f64().unwrap() - s["started"].as_f64().unwrap();
    assert!(took(&steps[0]) >= 0.4, "the sleep: {}", steps[0]);
    // `true` is quick: no wait for output that has ended (hooks used to take 1 s more).
    assert!(took(&steps[3]) < 0.9, "true: {}", steps[3]);
    let failed = &steps[4];
    assert_eq!(failed["error_category"], "hook-failed", "{failed}");
    assert_eq!(failed["detail"]["scope"], "plan p", "{failed}");
    // The hook's output is its step's log; the list names each hook.
    let id = failed["id"].to_string();
    assert_eq!(
        ok(env.config_run(&config, &["history", "--log", &id])),
        "out\n"
    );
    let text = ok(env.config_run(&config, &["history", "p", "--steps"]));
    assert!(text.contains("hook success: echo out; exit 3"), "{text}");
    assert!(text.contains("hook before: sleep 0.4"), "{text}");
}

#[test]
fn config_check_names_a_bad_group_and_warns_about_twin_policies() {
    let env = Env::new();
    let config = env.path("cairn.toml");
    let head = format!(
        "[repositories.local]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
         [plans.p]\nrepository = \"local\"\npaths = [\"/tmp\"]\n",
        repo = env.repo().display(),
        pw = env.path("pw").display(),
    );
    for (check, want) in [
        ("check = { read-data-subset = \"5/4\" }\n", "check: read-data-subset \"5/4\": there is no group 5 of 4"),
        ("[[plans.p.check]]\nschedule = \"weekly\"\n[[plans.p.check]]\nread-data-subset = \"1/0\"\n", "check #2: read-data-subset \"1/0\""),
        ("check = [{ name = \"a\" }, { name = \"a\", schedule = \"daily\" }]\n", "two check policies are named `a`"),
        ("check = [{ schedule = \"fortnightly\" }]\n", "check #1: schedule"),
    ] {
        write_file(&config, &format!("{head}{check}"));
        let out = env.config_run(&config, &["config", "check"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{check}: {err}");
        assert!(err.contains(want), "{check}: {err}");
    }
    // Two full reads on the same schedule: a warning, not an error.
    write_file(
        &config,
        &format!("{head}[[plans.p.check]]\nread-data-subset = \"all\"\n[[plans.p.check]]\nread-data-subset = \"all\"\n"),
    );
    let out = env.config_run(&config, &["config", "check"]);
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("check #2 repeats policy #1"), "{all}");
}
