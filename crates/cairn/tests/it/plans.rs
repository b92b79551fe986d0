//! Plans from cairn.toml: config errors, `cairn run` end to end with the real restic
//! checking the result, hooks, notifications to a local receiver, metrics, the daemon,
//! systemd units.

use crate::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---- config errors ----------------------------------------------------------------------

/// Each broken config: its files, then what the first error must say and where.
#[test]
fn config_check_reports_each_problem_with_file_line_column_and_a_fix() {
    let env = Env::new();
    let pw = env.path("pw");
    let repo = format!(
        "[repositories.nas]\nurl = \"/srv/repo\"\npassword-file = \"{}\"\n",
        pw.display()
    );
    let plan = "[plans.nightly]\nrepository = \"nas\"\npaths = [\"/etc\"]\n";
    // (name, files, what the error says, line, column)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, usize, usize);
    let cases: Vec<Case> = vec![
        ("typo", vec![("cairn.toml", format!("{repo}{plan}retension = {{ keep-daily = 7 }}\n"))],
            "unknown key `retension`, did you mean `retention`?", 7, 1),
        ("wrong type", vec![("cairn.toml", format!("{repo}{plan}retention = {{ keep-daily = \"seven\" }}\n"))],
            "wrong type", 7, 28),
        ("missing repository", vec![("cairn.toml", format!("{repo}[plans.nightly]\nrepository = \"nass\"\npaths = [\"/etc\"]\n"))],
            "unknown repository `nass`", 5, 14),
        ("missing key", vec![("cairn.toml", format!("{repo}[plans.nightly]\npaths = [\"/etc\"]\n"))],
            "missing key `repository`", 4, 1),
        ("include cycle", vec![
            ("cairn.toml", format!("include = [\"a.toml\"]\n{repo}{plan}")),
            ("a.toml", "include = [\"b.toml\"]\n".into()),
            ("b.toml", "include = [\"a.toml\"]\n".into()),
        ], "include cycle", 1, 12),
        ("unreadable password file", vec![("cairn.toml", format!("[repositories.nas]\nurl = \"/srv/repo\"\npassword-file = \"/nonexistent/pw\"\n{plan}"))],
            "cannot read password file /nonexistent/pw", 3, 17),
        ("inline secret", vec![("cairn.toml", format!("[repositories.nas]\nurl = \"/srv/repo\"\npassword = \"hunter2\"\n{plan}"))],
            "inline secret `password`", 3, 12),
        ("inline env secret", vec![("cairn.toml", format!("{repo}env = {{ AWS_SECRET_ACCESS_KEY = \"abc123\" }}\n{plan}"))],
            "inline secret `env.AWS_SECRET_ACCESS_KEY`", 4, 33),
        ("duplicate across files", vec![
            ("cairn.toml", format!("{repo}{plan}")),
            ("conf.d/x.toml", plan.to_string()),
        ], "plan `nightly` is already defined at", 1, 1),
        ("bad schedule", vec![("cairn.toml", format!("{repo}{plan}schedule = \"Mon..Fry 02:00\"\n"))],
            "\"Fry\" is not a weekday", 7, 12),
        ("syntax error", vec![("cairn.toml", format!("{repo}[plans.nightly\n"))],
            "unclosed table, expected `]`", 4, 15),
        ("relative path", vec![("cairn.toml", format!("{repo}[plans.nightly]\nrepository = \"nas\"\npaths = [\"etc\"]\n"))],
            "path \"etc\" is not absolute", 6, 10),
        ("top-level typo", vec![("cairn.toml", format!("{repo}[plan.nightly]\nrepository = \"nas\"\n"))],
            "unknown key `plan`, did you mean `plans`?", 4, 2),
        ("settings in a fragment", vec![
            ("cairn.toml", format!("{repo}{plan}")),
            ("conf.d/x.toml", "[settings]\nhost = \"x\"\n".into()),
        ], "[settings] may only be in the main config file", 0, 0),
        ("retention keeping nothing", vec![("cairn.toml", format!("{repo}{plan}retention = {{ group-by = \"host\" }}\n"))],
            "retention keeps nothing", 4, 1),
        ("url typo", vec![("cairn.toml", format!("[repositories.nas]\nurl = \"sfpt:nas:/srv\"\npassword-file = \"{}\"\n{plan}", pw.display()))],
            "did you mean `sftp:`?", 2, 7),
    ];
    for (name, files, want, line, col) in cases {
        let dir = env.path(&format!("case-{}", name.replace(' ', "-")));
        for (f, text) in &files {
            write_file(&dir.join(f), text);
        }
        let main = dir.join("cairn.toml");
        let out = env.config_run(&main, &["config", "check"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: wanted {want:?} in:\n{err}");
        assert!(
            !err.contains("hunter2") && !err.contains("abc123"),
            "{name}: secret printed:\n{err}"
        );
        let out = env.config_run(&main, &["--json", "config", "check"]);
        let v = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(v["ok"], false, "{name}");
        let first = v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                format!("{} {}", p["message"], p["help"]).contains(&want.replace('"', "\\\""))
            })
            .unwrap_or_else(|| panic!("{name}: {v}"));
        assert_eq!(
            (
                first["line"].as_u64().unwrap() as usize,
                first["column"].as_u64().unwrap() as usize
            ),
            (line, col),
            "{name}: {first}"
        );
        if line > 0 {
            assert!(
                err.contains(&format!(":{line}:{col}: error")),
                "{name}: {err}"
            );
        }
    }
}

#[test]
fn config_check_reports_every_problem_at_once() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    write_file(
        &main,
        "[repositories.nas]\nurl = \"/srv/repo\"\npassword-env = \"NAS_PW\"\n\n\
         [plans.a]\nrepository = \"nas\"\npaths = [\"/etc\"]\nshedule = \"daily\"\n\n\
         [plans.b]\nrepository = \"nope\"\npaths = [\"/etc\"]\n\n\
         [plans.c]\nrepository = \"nas\"\npaths = [\"/etc\"]\nnice = 99\nmax-age = \"26\"\n",
    );
    let out = env.config_run(&main, &["--json", "config", "check"]);
    let v = json(&String::from_utf8_lossy(&out.stdout));
    let msgs: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(msgs[0].contains("did you mean `schedule`"), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("unknown repository `nope`")));
    assert!(msgs.iter().any(|m| m.contains("nice 99")));
    assert!(msgs.iter().any(|m| m.contains("max-age")));
}

#[test]
fn config_show_merges_fragments_redacts_and_the_schema_describes_the_format() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    write_file(
        &main,
        &format!(
            "[repositories.nas]\nurl = \"/srv/repo\"\npassword-file = \"{}\"\n\
             [plans.nightly]\nrepository = \"nas\"\nsources = [\"*\"]\nschedule = \"03:00\"\n\
             notify = {{ healthchecks = \"https://hc-ping.com/5ecret-uuid\" }}\n",
            env.path("pw").display()
        ),
    );
    write_file(
        &env.path("cfg/conf.d/hass.toml"),
        "[sources.hass]\npaths = [\"/var/lib/hass\"]\nexclude = [\"*.log\", \"tts\"]\n",
    );
    write_file(
        &env.path("cfg/conf.d/jellyfin.toml"),
        "[sources.jellyfin]\npaths = [\"/var/lib/jellyfin\"]\nexclude = [\"cache/\"]\n",
    );
    let out = ok(env.config_run(&main, &["--json", "config", "show", "--offline"]));
    assert!(!out.contains("5ecret"), "{out}");
    let v = json(&out);
    let plan = &v["plans"]["nightly"];
    assert_eq!(plan["sources"], serde_json::json!(["hass", "jellyfin"]));
    assert_eq!(
        plan["paths"],
        serde_json::json!(["/var/lib/hass", "/var/lib/jellyfin"])
    );
    assert_eq!(
        plan["filter"]["exclude"],
        serde_json::json!([
            "/var/lib/hass/**/*.log",
            "/var/lib/hass/**/tts",
            "/var/lib/jellyfin/**/cache/"
        ])
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    let text = ok(env.config_run(&main, &["config", "show", "--offline"]));
    assert!(
        text.contains("nightly") && !text.contains("5ecret"),
        "{text}"
    );

    let schema = ok(env.config_run(&main, &["config", "schema"]));
    let s: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert!(s["$schema"].as_str().unwrap().contains("json-schema.org"));
    assert!(s["properties"]["plans"].is_object());
    let defs = s.get("$defs").or_else(|| s.get("definitions")).unwrap();
    assert_eq!(defs["Plan"]["additionalProperties"], false);
    assert!(defs["Plan"]["properties"]["retention"].is_object());
    assert!(
        defs["Repository"]["properties"].get("password").is_none(),
        "inline passwords are not part of the format"
    );
}

// ---- cairn run ----------------------------------------------------------------------------

/// A config with a local repository, two sources and a plan; hooks append to `hooks.log`.
fn plan_env(extra_plan: &str) -> (Env, PathBuf) {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("hass/tts")).unwrap();
    std::fs::create_dir_all(data.join("etc")).unwrap();
    std::fs::write(
        data.join("hass/home-assistant.db"),
        random_bytes(1, 200_000),
    )
    .unwrap();
    std::fs::write(data.join("hass/home-assistant.log"), b"log\n").unwrap();
    std::fs::write(data.join("hass/tts/cached.mp3"), b"mp3").unwrap();
    std::fs::write(data.join("etc/config.yaml"), b"a: 1\n").unwrap();
    ok(env.cairn(&["init"]));
    let main = env.path("cfg/cairn.toml");
    let log = env.path("hooks.log");
    let hook = |kind: &str| {
        format!(
            "echo {kind} $CAIRN_PLAN $CAIRN_RESULT $CAIRN_SNAPSHOT_ID >> {}",
            log.display()
        )
    };
    write_file(
        &main,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\nmetrics = {{ textfile = \"{tf}\" }}\n\n\
             [repositories.local]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [plans.nightly]\nrepository = \"local\"\nsources = [\"*\"]\nschedule = \"03:00\"\n\
             retention = {{ keep-last = 2 }}\nprune = \"always\"\ncheck = {{ schedule = \"always\", read-data-subset = \"50%\" }}\n\
             max-age = \"26h\"\nnice = 5\nionice = \"idle\"\n\
             hooks = {{ before = [\"{b}\"], after = [\"{a}\"], success = [\"{s}\"], failure = [\"{f}\"], finally = [\"{fi}\"] }}\n{extra_plan}",
            state = env.path("state").display(),
            tf = env.path("textfile/cairn.prom").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            b = hook("before"),
            a = hook("after"),
            s = hook("success"),
            f = hook("failure"),
            fi = hook("finally"),
        ),
    );
    write_file(
        &env.path("cfg/conf.d/hass.toml"),
        &format!(
            "[sources.hass]\npaths = [\"{}\"]\nexclude = [\"*.log\", \"tts\"]\nhooks = {{ before = [\"echo source-before $CAIRN_SOURCE >> {}\"] }}\n",
            data.join("hass").display(),
            log.display()
        ),
    );
    write_file(
        &env.path("cfg/conf.d/etc.toml"),
        &format!(
            "[sources.etc]\npaths = [\"{}\"]\n",
            data.join("etc").display()
        ),
    );
    (env, main)
}

#[test]
fn plan_run_backs_up_applies_retention_and_checks_with_restic_agreeing() {
    let (env, main) = plan_env("");
    ok(env.config_run(&main, &["config", "check"]));
    let mut snapshot_ids = Vec::new();
    for _ in 0..3 {
        let out = ok(env.config_run(&main, &["--json", "run", "nightly"]));
        let v = json(&out);
        assert_eq!(v[0]["result"], "success", "{out}");
        snapshot_ids.push(v[0]["snapshot_id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(1100)); // distinct snapshot times
    }
    // The real restic agrees: the repository is sound, retention kept the last two
    // snapshots of the plan, and the excludes of the source held.
    ok(env.restic(&["check", "--read-data"]));
    let snaps = json(&ok(env.restic(&[
        "snapshots",
        "--json",
        "--tag",
        "plan:nightly",
    ])));
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [snapshot_ids[1].as_str(), snapshot_ids[2].as_str()]);
    let listing = ok(env.restic(&["ls", "latest"]));
    assert!(
        listing.contains("home-assistant.db") && listing.contains("config.yaml"),
        "{listing}"
    );
    assert!(
        !listing.contains("home-assistant.log") && !listing.contains("tts"),
        "excludes: {listing}"
    );

    // Hooks: order, and the environment each saw.
    let hooks = std::fs::read_to_string(env.path("hooks.log")).unwrap();
    let first: Vec<&str> = hooks.lines().take(5).collect();
    let hass = env.path("data/hass");
    let _ = hass;
    assert_eq!(first[0], "before nightly");
    assert_eq!(first[1], "source-before hass");
    assert_eq!(first[2], format!("after nightly {}", snapshot_ids[0]));
    assert_eq!(
        first[3],
        format!("success nightly success {}", snapshot_ids[0])
    );
    assert_eq!(
        first[4],
        format!("finally nightly success {}", snapshot_ids[0])
    );
    assert!(!hooks.contains("failure"));

    // History, status and metrics.
    let h = json(&ok(env.config_run(&main, &["--json", "history", "--steps"])));
    let runs = h.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let steps: Vec<&str> = runs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .filter(|op| *op != "hook")
        .collect();
    assert_eq!(steps, ["backup", "forget", "prune", "check"]);
    assert!(runs[0]["files_processed"].as_u64().unwrap() >= 2);
    let st = json(&ok(env.config_run(&main, &["--json", "status"])));
    assert_eq!(st[0]["plan"], "nightly");
    assert_eq!(st[0]["overdue"], false);
    assert!(st[0]["next_run"].as_str().unwrap().contains("T03:00:00"));
    let text = std::fs::read_to_string(env.path("textfile/cairn.prom")).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let get = |name: &str, op: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("operation") == Some(op))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(get("cairn_last_run_success", "backup"), Some(1.0));
    assert_eq!(get("cairn_last_run_success", "check"), Some(1.0));
    assert!(get("cairn_last_success_timestamp_seconds", "prune").unwrap() > 1.7e9);
    let plan_overdue = scrape
        .samples
        .iter()
        .find(|s| s.metric == "cairn_plan_overdue")
        .unwrap();
    assert!(matches!(plan_overdue.value, prometheus_parse::Value::Gauge(v) if v == 0.0));
}

/// 3-2-1 and restore tests: the plan copies its snapshots to a second repository (with
/// its own password) and restores a sample of files, verified; restic reads both.
#[test]
fn plan_copies_offsite_and_runs_restore_tests() {
    let (env, main) =
        plan_env("copy-to = [\"offsite\"]\nrestore-test = { schedule = \"always\", files = 3 }\n");
    let offsite = env.path("offsite");
    std::fs::write(env.path("pw2"), "another password\n").unwrap();
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str(&format!(
        "\n[repositories.offsite]\nurl = \"{}\"\npassword-file = \"{}\"\n",
        offsite.display(),
        env.path("pw2").display()
    ));
    write_file(&main, &text);
    let mut init = Command::new(env!("CARGO_BIN_EXE_cairn"));
    init.arg("-r")
        .arg(&offsite)
        .arg("--password-file")
        .arg(env.path("pw2"))
        .arg("init");
    ok(init.output().unwrap());
    let v = json(&ok(env.config_run(&main, &["--json", "run", "nightly"])));
    let snap = v[0]["snapshot_id"].as_str().unwrap().to_string();
    assert!(
        v[0]["log"]
            .as_str()
            .unwrap()
            .contains("2 file(s) restored and verified"),
        "{}",
        v[0]["log"]
    );
    let restic2 = |args: &[&str]| {
        let mut c = Command::new(restic_bin());
        c.arg("-r")
            .arg(&offsite)
            .arg("--password-file")
            .arg(env.path("pw2"))
            .arg("--no-cache")
            .args(args);
        c.output().unwrap()
    };
    ok(restic2(&["check", "--read-data"]));
    let copied = json(&ok(restic2(&["snapshots", "--json"])));
    assert_eq!(copied.as_array().unwrap().len(), 1);
    assert_eq!(copied[0]["tags"], serde_json::json!(["plan:nightly"]));
    assert_eq!(
        copied[0]["tree"],
        json(&ok(env.restic(&["cat", "snapshot", &snap])))["tree"]
    );
    let h = json(&ok(env.config_run(&main, &["--json", "history", "--steps"])));
    let steps: Vec<&str> = h[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .filter(|op| *op != "hook")
        .collect();
    assert_eq!(
        steps,
        ["backup", "forget", "prune", "check", "copy", "restore-test"]
    );
    let prom = std::fs::read_to_string(env.path("textfile/cairn.prom")).unwrap();
    assert!(prom.contains("cairn_last_run_success{plan=\"nightly\",repository=\"local\",operation=\"restore-test\"} 1"), "{prom}");
    assert!(prom.contains("operation=\"copy\"} 1"), "{prom}");
    // A second run copies only the new snapshot.
    ok(env.config_run(&main, &["run", "nightly"]));
    assert_eq!(
        json(&ok(restic2(&["snapshots", "--json"])))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_failing_before_hook_aborts_the_run_and_still_runs_failure_and_finally() {
    let (env, main) = plan_env("");
    let text = std::fs::read_to_string(&main).unwrap().replace(
        "hooks = { before = [\"",
        "hooks = { before = [\"echo refusing; exit 3\", \"",
    );
    write_file(&main, &text);
    let out = env.config_run(&main, &["--json", "run", "nightly"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v[0]["result"], "failure");
    assert_eq!(v[0]["error_category"], "hook-failed");
    assert!(v[0]["error"]
        .as_str()
        .unwrap()
        .contains("exited with status 3"));
    assert!(
        v[0]["log"].as_str().unwrap().contains("refusing"),
        "hook output is in the log"
    );
    let hooks = std::fs::read_to_string(env.path("hooks.log")).unwrap();
    assert_eq!(
        hooks.lines().collect::<Vec<_>>(),
        ["failure nightly failure", "finally nightly failure"]
    );
    let snaps = json(&ok(env.restic(&["snapshots", "--json"])));
    assert_eq!(
        snaps.as_array().unwrap().len(),
        0,
        "no backup after a failed before hook"
    );
    let h = json(&ok(env.config_run(&main, &["--json", "history"])));
    assert_eq!(h[0]["error_category"], "hook-failed");
}

#[test]
fn a_hung_hook_is_killed_at_its_timeout() {
    let (env, main) = plan_env("");
    let text = std::fs::read_to_string(&main).unwrap().replace(
        "hooks = { before = [\"",
        "hooks = { timeout = \"1s\", before = [\"sleep 60\", \"",
    );
    write_file(&main, &text);
    let start = Instant::now();
    let out = env.config_run(&main, &["--json", "run", "nightly"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        v[0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{v}"
    );
}

#[test]
fn a_missing_source_fails_with_its_category() {
    let (env, main) = plan_env("");
    std::fs::remove_dir_all(env.path("data/etc")).unwrap();
    let out = env.config_run(&main, &["--json", "run", "nightly"]);
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v[0]["error_category"], "source-missing", "{v}");
    assert!(v[0]["error"].as_str().unwrap().contains("data/etc"));
}

// ---- notifications ------------------------------------------------------------------------

/// One request: method, path, headers, body.
pub(crate) type Request = (String, String, String, String);

/// A local HTTP receiver recording every request: (method, path, headers, body).
pub(crate) struct Receiver {
    pub(crate) port: u16,
    pub(crate) got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// The JSON bodies POSTed to `/hook` so far; with `event`, only those of that event.
    pub(crate) fn hook_posts(&self, event: Option<&str>) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.1 == "/hook")
            .map(|g| serde_json::from_str::<serde_json::Value>(&g.3).unwrap())
            .filter(|v| event.is_none_or(|e| v["event"] == e))
            .collect()
    }

    pub(crate) fn start() -> Receiver {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut headers = String::new();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push_str(&h);
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let mut parts = line.split_whitespace();
                let (m, p) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                g.lock().unwrap().push((
                    m,
                    p,
                    headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let mut c = conn;
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        Receiver { port, got }
    }
}

#[test]
fn notifications_reach_healthchecks_ntfy_and_a_webhook() {
    let rx = Receiver::start();
    let base = format!("http://127.0.0.1:{}", rx.port);
    let (env, main) = plan_env(&format!(
        "notify = {{ healthchecks = \"{base}/hc/uuid-1\", ntfy = \"{base}/ntfy/backups\", webhook = \"{base}/hook\" }}\n"
    ));
    let out = json(&ok(env.config_run(&main, &["--json", "run", "nightly"])));
    let snap = out[0]["snapshot_id"].as_str().unwrap().to_string();
    let got = rx.got.lock().unwrap().clone();
    let paths: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(
        paths,
        ["/hc/uuid-1/start", "/hc/uuid-1", "/hook"],
        "ntfy only hears failures by default"
    );
    assert!(
        got[1].3.contains("run success"),
        "healthchecks gets the log tail: {}",
        got[1].3
    );
    let hook: serde_json::Value = serde_json::from_str(&got[2].3).unwrap();
    assert_eq!(hook["event"], "success");
    assert_eq!(hook["snapshot_id"], snap.as_str());
    assert_eq!(hook["plan"], "nightly");
    rx.got.lock().unwrap().clear();

    std::fs::remove_dir_all(env.path("data/etc")).unwrap();
    let out = env.config_run(&main, &["run", "nightly"]);
    assert_eq!(out.status.code(), Some(1));
    let got = rx.got.lock().unwrap().clone();
    let paths: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/hc/uuid-1/start",
            "/hc/uuid-1/fail",
            "/ntfy/backups",
            "/hook"
        ]
    );
    assert!(
        got[2].2.contains("nightly") && got[2].2.to_ascii_lowercase().contains("priority: high"),
        "{}",
        got[2].2
    );
    assert!(got[2].3.contains("source-missing"), "{}", got[2].3);
    let hook: serde_json::Value = serde_json::from_str(&got[3].3).unwrap();
    assert_eq!(hook["event"], "failure");
    assert_eq!(hook["error_category"], "source-missing");
}

// ---- the daemon ---------------------------------------------------------------------------

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A plan that missed its schedule runs at daemon start (catch-up); metrics are served
/// while it runs; SIGTERM in the middle of its (slow, rate-limited) backup stops it
/// cleanly: no lock left, the run recorded as interrupted, finally hooks run, and the
/// repository passes restic's check.
#[test]
fn daemon_catches_up_serves_metrics_and_stops_cleanly_mid_backup() {
    let p = crate::peers::rest();
    let env = Env::new();
    let src = env.path("big");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..2u64 {
        std::fs::write(src.join(format!("f{i}")), random_bytes(90 + i, 16 << 20)).unwrap();
    }
    let url = format!("rest:{}/repo", p.var("REST_URL").trim_end_matches('/'));
    let envfile = env.path("rest.env");
    std::fs::write(
        &envfile,
        format!(
            "RESTIC_REST_USERNAME={}\nRESTIC_REST_PASSWORD={}\n",
            p.var("REST_USER"),
            p.var("REST_PASS")
        ),
    )
    .unwrap();
    let port = crate::peers::free_port();
    let main = env.path("cfg/cairn.toml");
    let log = env.path("hooks.log");
    write_file(
        &main,
        &format!(
            "[settings]\nstate-dir = \"{}\"\nmetrics = {{ listen = \"127.0.0.1:{port}\" }}\n\
             [repositories.rest]\nurl = \"{url}\"\npassword-file = \"{}\"\nenv-file = \"{}\"\nlimit-upload = 4096\n\
             [plans.slow]\nrepository = \"rest\"\npaths = [\"{}\"]\nschedule = \"daily\"\n\
             hooks = {{ finally = [\"echo finally $CAIRN_RESULT >> {}\"] }}\n",
            env.path("state").display(),
            env.path("pw").display(),
            envfile.display(),
            src.display(),
            log.display()
        ),
    );
    // Init through the same config's repository (REST credentials from the env file).
    let mut init = Command::new(env!("CARGO_BIN_EXE_cairn"));
    init.args(["-r", &url, "--password-file"])
        .arg(env.path("pw"))
        .arg("init");
    init.env("RESTIC_REST_USERNAME", p.var("REST_USER"))
        .env("RESTIC_REST_PASSWORD", p.var("REST_PASS"));
    ok(init.output().unwrap());
    // Pretend the plan last ran three days ago: the daemon owes it one run.
    ok(env.config_run(&main, &["status"])); // creates the database
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let three_days_ago = (chrono_now() - 3 * 86_400) as f64;
    db.execute(
        "INSERT INTO operations (plan, repository, operation, started, finished, result) VALUES ('slow', 'rest', 'run', ?1, ?1, 'success')",
        [three_days_ago],
    )
    .unwrap();
    drop(db);

    let mut daemon = env
        .config_cmd(&main, &["daemon"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the backup to be under way: a lock file on the server.
    let locks = PathBuf::from(p.var("REST_DATA")).join("repo/locks");
    let start = Instant::now();
    while files_under(&locks).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the missed run did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = get(port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "cairn_last_run_timestamp_seconds"
            && s.labels.get("plan") == Some("slow")));
    assert!(get(port, "/healthz").contains("ok"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    daemon
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(
        files_under(&locks).is_empty(),
        "a lock was left behind: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "finally interrupted"
    );
    let h = json(&ok(env.config_run(&main, &["--json", "history", "slow"])));
    assert_eq!(h[0]["result"], "interrupted", "{h}");
    // Debian's restic (0.14) predates RESTIC_REST_USERNAME: credentials in its URL.
    let restic_url = url.replacen(
        "://",
        &format!("://{}:{}@", p.var("REST_USER"), p.var("REST_PASS")),
        1,
    );
    let mut check = Command::new(restic_bin());
    check
        .args(["-r", &restic_url, "--no-cache", "--password-file"])
        .arg(env.path("pw"))
        .args(["check"]);
    ok(check.output().unwrap());
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---- systemd ------------------------------------------------------------------------------

/// Generated timers say what our scheduler says: systemd parses every OnCalendar line
/// and finds the same next run.
#[test]
fn systemd_units_match_our_schedules() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    let schedules = [
        "daily",
        "03:00",
        "Mon..Fri 02:30",
        "Sat,Sun 10:00",
        "*-*-01 05:00",
        "30 2 * * 1-5",
        "0 */6 * * *",
        "0 4 1 * 0",
    ];
    let mut text = format!(
        "[repositories.r]\nurl = \"{}\"\npassword-file = \"{}\"\n",
        env.repo().display(),
        env.path("pw").display()
    );
    for (i, s) in schedules.iter().enumerate() {
        text.push_str(&format!(
            "[plans.p{i}]\nrepository = \"r\"\npaths = [\"/etc\"]\nschedule = \"{s}\"\nnice = 7\n"
        ));
    }
    write_file(&main, &text);
    let dir = env.path("units");
    ok(env.config_run(
        &main,
        &["systemd", "generate", "--dir", dir.to_str().unwrap()],
    ));
    let status = json(&ok(env.config_run(&main, &["--json", "status"])));
    for (i, s) in schedules.iter().enumerate() {
        let service = std::fs::read_to_string(dir.join(format!("cairn-p{i}.service"))).unwrap();
        assert!(
            service.contains(&format!("run p{i}"))
                && service.contains("Nice=7")
                && service.contains("ProtectSystem=strict")
        );
        let timer = std::fs::read_to_string(dir.join(format!("cairn-p{i}.timer"))).unwrap();
        let ours = chrono::DateTime::parse_from_rfc3339(
            status
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["plan"] == format!("p{i}"))
                .unwrap()["next_run"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
        .timestamp();
        let mut theirs = i64::MAX;
        for line in timer.lines().filter_map(|l| l.strip_prefix("OnCalendar=")) {
            let out = Command::new("systemd-analyze")
                .args(["calendar", "--iterations=1", line])
                .env("TZ", std::env::var("TZ").unwrap_or_default())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{s}: systemd rejects {line:?}: {}",
                stderr(&out)
            );
            let next = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Next elapse:"))
                .unwrap()
                .trim()
                .to_string();
            let out = Command::new("date")
                .args([
                    "-d",
                    next.trim_start_matches(|c: char| c.is_alphabetic()).trim(),
                    "+%s",
                ])
                .output()
                .unwrap();
            theirs = theirs.min(
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
        assert_eq!(ours, theirs, "{s}: ours vs systemd's next run ({timer})");
    }
}
