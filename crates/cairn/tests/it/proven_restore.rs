//! Issue 14, "last proven restore": when a plan's restore test last succeeded and what it
//! proved, in `cairn status` (text, `--json`, exit status), `cairn history`, the metrics
//! (`cairn_last_restore_test_success_timestamp_seconds`, `cairn_restore_test_overdue`), the
//! web dashboard (`GET /api/status`, `/`) and the run page; and the alert when no restore
//! test succeeded within the restore test's `max-age` (`cairn status --alert`, once per
//! episode, webhook event `restore-test-overdue`).

use crate::plans::Receiver;
use crate::webkit::{toml_str, WebServer};
use crate::{json, ok, Env};
use std::path::{Path, PathBuf};

/// A repository `main` with a snapshot of plan `home` (a few files), made by a run under a
/// config without a restore test (else the run itself would test); returns the TOML of
/// the repository and of the plan with `plan_extra` (e.g. its `restore-test`).
fn backed_up(env: &Env, plan_extra: &str) -> String {
    ok(env.cairn(&["init"]));
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(data.join("sub/b.bin"), crate::random_bytes(3, 40_000)).unwrap();
    let tables = |extra: &str| {
        format!(
            "[repositories.main]\nurl = {}\npassword-file = {}\n\
             [plans.home]\nrepository = \"main\"\npaths = [{}]\n{extra}\n",
            toml_str(&env.repo().to_string_lossy()),
            toml_str(&env.path("pw").to_string_lossy()),
            toml_str(&data.to_string_lossy()),
        )
    };
    let first = env.path("first.toml");
    std::fs::write(
        &first,
        format!(
            "[settings]\nstate-dir = {}\n{}",
            toml_str(&state(env).to_string_lossy()),
            tables("")
        ),
    )
    .unwrap();
    ok(env.config_run(&first, &["run", "home"]));
    tables(plan_extra)
}

fn state(env: &Env) -> PathBuf {
    env.path("state")
}

/// A config of its own (state in the env's `state`) with `tables`.
fn config(env: &Env, tables: &str) -> PathBuf {
    let path = env.path("cairn.toml");
    std::fs::write(
        &path,
        format!(
            "[settings]\nstate-dir = {}\n{tables}",
            toml_str(&state(env).to_string_lossy())
        ),
    )
    .unwrap();
    path
}

/// The value of metric `name{plan="home"}` in `text`, if present.
fn metric(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{plan=\"home\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// The restore-test steps of `cairn history --json --steps`, newest first.
fn restore_test_steps(env: &Env, config: &Path) -> Vec<serde_json::Value> {
    let runs = json(&ok(
        env.config_run(config, &["--json", "history", "home", "--steps"])
    ));
    runs.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["steps"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["operation"] == "restore-test")
        .collect()
}

#[test]
fn the_last_proven_restore_shows_in_status_metrics_and_the_dashboard() {
    let env = Env::new();
    let tables = backed_up(
        &env,
        "restore-test = { schedule = \"monthly\", files = 5, max-age = \"35d\" }",
    );
    let server = WebServer::start(&env, &tables, &[("vera", "vera-pw", "viewer")]);
    let cfg = server.config.clone();
    let vera = server.login("vera", "vera-pw");

    // Never tested: overdue everywhere, and no timestamp gauge.
    let out = env.config_run(&cfg, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "overdue exits 1: {text}");
    assert!(
        text.contains("last proven restore: never")
            && text.contains("RESTORE TEST OVERDUE (max-age 35d)"),
        "{text}"
    );
    let out = env.config_run(&cfg, &["--json", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let st = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(st[0]["restore_test_overdue"], true, "{st}");
    assert_eq!(st[0]["restore_test_max_age"], "35d");
    assert!(st[0]["last_restore_test"].is_null() && st[0]["last_restore_test_run"].is_null());
    let m = vera.get("/metrics").text();
    assert_eq!(metric(&m, "cairn_restore_test_overdue"), Some(1.0), "{m}");
    assert!(
        !m.contains("cairn_last_restore_test_success_timestamp_seconds"),
        "no gauge before a success: {m}"
    );
    assert!(m.contains("# TYPE cairn_restore_test_overdue gauge"), "{m}");
    let api = vera.get("/api/status").json();
    assert_eq!(api["plans"][0]["restore_test_overdue"], true, "{api}");
    let html = vera.get("/").text();
    assert!(
        html.contains(r#"id="restore-home" data-overdue="true""#)
            && html.contains("restore test overdue")
            && html.contains("restore-test-overdue-notice"),
        "{html}"
    );

    // A restore test succeeds: the gauge is its history row's start, nothing is overdue.
    ok(env.config_run(&cfg, &["run", "home", "--only", "restore-test"]));
    let steps = restore_test_steps(&env, &cfg);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["result"], "success", "{steps:?}");
    let started = steps[0]["started"].as_f64().unwrap();
    let m = vera.get("/metrics").text();
    let gauge = metric(&m, "cairn_last_restore_test_success_timestamp_seconds")
        .unwrap_or_else(|| panic!("a gauge after the success: {m}"));
    assert!((gauge - started).abs() <= 1.0, "{gauge} vs {started}");
    assert!(m.contains("# HELP cairn_last_restore_test_success_timestamp_seconds"));
    assert_eq!(metric(&m, "cairn_restore_test_overdue"), Some(0.0), "{m}");
    let out = env.config_run(&cfg, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("last proven restore: 20")
            && text.contains(" ago, sample, ")
            && !text.contains("OVERDUE"),
        "{text}"
    );
    let api = vera.get("/api/status").json();
    let p = &api["plans"][0];
    assert_eq!(p["restore_test_overdue"], false, "{p}");
    assert_eq!(p["last_restore_test"].as_f64(), Some(started), "{p}");
    assert_eq!(p["last_restore_test_run"]["result"], "success", "{p}");
    let html = vera.get("/").text();
    let cell = html
        .split(r#"id="restore-home""#)
        .nth(1)
        .and_then(|c| c.split("</td>").next())
        .unwrap_or_else(|| panic!("no restore cell: {html}"));
    assert!(
        cell.contains(r#"data-overdue="false""#)
            && cell.contains("<time datetime=")
            && cell.contains("sample, ")
            && !cell.contains("overdue</span>")
            && !cell.contains("never"),
        "{cell}"
    );
}

#[test]
fn status_alert_tells_a_restore_test_overdue_plan_once_per_episode() {
    let rx = Receiver::start();
    let env = Env::new();
    let tables = backed_up(
        &env,
        &format!(
            "restore-test = {{ schedule = \"monthly\", files = 5, max-age = \"1h\" }}\n\
             notify = {{ webhook = \"http://127.0.0.1:{}/hook\" }}",
            rx.port
        ),
    );
    let cfg = config(&env, &tables);
    let alert = || env.config_run(&cfg, &["status", "--alert"]);

    // Never tested: told once, with what is overdue and since when.
    let out = alert();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout.contains("RESTORE TEST OVERDUE"), "{stdout}");
    let posts = rx.hook_posts(Some("restore-test-overdue"));
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["plan"], "home");
    assert_eq!(
        posts[0]["error"],
        "no successful restore test since ever (restore-test max-age 1h)"
    );
    let out = alert();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already notified"));
    assert_eq!(
        rx.hook_posts(Some("restore-test-overdue")).len(),
        1,
        "one alert per episode"
    );

    // A success ends the episode; the backup's own episode was never part of it.
    ok(env.config_run(&cfg, &["run", "home", "--only", "restore-test"]));
    assert_eq!(alert().status.code(), Some(0));
    assert_eq!(rx.hook_posts(Some("restore-test-overdue")).len(), 1);

    // Two hours on (the history aged), overdue again: a new episode, told again, once.
    let db = rusqlite::Connection::open(state(&env).join("history.db")).unwrap();
    db.execute(
        "UPDATE operations SET started = started - 7200, finished = finished - 7200",
        [],
    )
    .unwrap();
    drop(db);
    let out = env.config_run(&cfg, &["--json", "status", "--alert"]);
    assert_eq!(out.status.code(), Some(1));
    let alerts = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(alerts[0]["what"], "restore-test", "{alerts}");
    assert_eq!(alerts[0]["notified"], true, "{alerts}");
    let posts = rx.hook_posts(Some("restore-test-overdue"));
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(
        !posts[1]["error"].as_str().unwrap().contains("since ever"),
        "{}",
        posts[1]
    );
    assert_eq!(alert().status.code(), Some(1));
    assert_eq!(rx.hook_posts(Some("restore-test-overdue")).len(), 2);
    let all = rx.got.lock().unwrap().len();
    assert_eq!(all, 2, "nothing but the two restore-test alerts was posted");
}

#[test]
fn history_shows_what_each_restore_test_proved() {
    let env = Env::new();
    let tables = backed_up(
        &env,
        r#"restore-test = { schedule = "monthly", mode = "full", command = "test -d \"$CAIRN_RESTORE_DIR\"" }"#,
    );
    let cfg = config(&env, &tables);
    ok(env.config_run(&cfg, &["run", "home", "--only", "restore-test"]));

    let steps = restore_test_steps(&env, &cfg);
    assert_eq!(steps.len(), 1, "{steps:?}");
    let detail = &steps[0]["detail"];
    assert_eq!(
        detail["mode"], "full",
        "history --json exposes the detail: {detail}"
    );
    assert_eq!(detail["command_exit"], 0, "{detail}");

    let text = ok(env.config_run(&cfg, &["history", "home"]));
    assert!(
        text.contains("restore test success: full") && text.contains("command ok"),
        "{text}"
    );
    let text = ok(env.config_run(&cfg, &["history", "home", "--steps"]));
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("restore test success: full"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        at > 0 && lines[at - 1].contains("restore-test"),
        "the summary is under its step:\n{text}"
    );

    // The run page shows the step's detail.
    let server = WebServer::start(&env, &tables, &[("vera", "vera-pw", "viewer")]);
    let vera = server.login("vera", "vera-pw");
    let page = vera.get(&format!("/runs/{}", steps[0]["run_id"])).text();
    let table = page
        .split(&format!(r#"id="restore-test-{}""#, steps[0]["id"]))
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no restore test detail on the run page: {page}"));
    assert!(
        table.contains("<td>full</td>") && table.contains("exit 0"),
        "{table}"
    );
}
