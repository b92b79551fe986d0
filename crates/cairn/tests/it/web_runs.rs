//! The dashboard, history, run pages, live progress over Server-Sent Events and triggers
//! (issue 12): under `cairn daemon` (triggers join the scheduler's queues) and under
//! `cairn web` (triggers start `cairn run` children). The real restic checks that a
//! triggered backup left its snapshot.

use crate::webkit::{hash_password, toml_str, Reply, WebServer};
use crate::*;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A source of `mib` MiB of random data.
fn source(env: &Env, mib: usize) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..mib {
        std::fs::write(
            src.join(format!("sub/f{i}.bin")),
            random_bytes(7 + i as u64, 1 << 20),
        )
        .unwrap();
    }
    std::fs::write(src.join("note.txt"), b"hello\n").unwrap();
    src
}

/// The repository `local` of `url` (`repo_extra`: more keys of it), and plans: `home`
/// (with a one-second before hook, so it is still running when a second trigger comes),
/// `docs` (scheduled, with a restore test).
fn plans_toml(env: &Env, src: &Path, url: &str, repo_extra: &str) -> String {
    format!(
        "[repositories.local]\nurl = {repo}\npassword-file = {pw}\n{repo_extra}\n\
         [plans.home]\nrepository = \"local\"\npaths = [{src}]\nhooks = {{ before = [\"sleep 1\"] }}\n\
         [plans.docs]\nrepository = \"local\"\npaths = [{note}]\nschedule = \"*-*-* 03:00\"\nmax-age = \"26h\"\n\
         restore-test = {{ schedule = \"weekly\" }}\n",
        repo = toml_str(url),
        pw = toml_str(&env.path("pw").to_string_lossy()),
        src = toml_str(&src.to_string_lossy()),
        note = toml_str(&src.join("note.txt").to_string_lossy()),
    )
}

/// A minimal client for a server started here (the kit's sessions belong to `cairn web`).
struct Client {
    base: String,
    cookie: String,
    csrf: String,
    agent: ureq::Agent,
}

impl Client {
    fn login(base: &str, user: &str, password: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(120))
            .build();
        let r = agent
            .post(&format!("{base}/api/login"))
            .set("Content-Type", "application/json")
            .send_string(&serde_json::json!({"username": user, "password": password}).to_string())
            .unwrap_or_else(|e| panic!("login of {user}: {e}"));
        let cookie = r
            .all("set-cookie")
            .into_iter()
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("cairn_session="))
            })
            .expect("a session cookie")
            .to_string();
        let v: serde_json::Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
        Client {
            base: base.to_string(),
            cookie,
            csrf: v["csrf"].as_str().unwrap().to_string(),
            agent,
        }
    }

    fn reply(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
        match r {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("request failed: {e}"),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        Client::reply(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie)
                .call(),
        )
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (s, body) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn trigger(&self, plan: &str, op: &str) -> (u16, serde_json::Value) {
        let (s, body) = Client::reply(
            self.agent
                .post(&format!("{}/api/plans/{plan}/trigger", self.base))
                .set("Cookie", &self.cookie)
                .set("X-CSRF-Token", &self.csrf)
                .set("Content-Type", "application/json")
                .send_string(&serde_json::json!({ "operation": op }).to_string()),
        );
        (
            s,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Reads `GET /api/events` in a thread: every (event, data) until a `job` event says
    /// `plan` finished (or `limit` passes).
    fn events_until_finished(
        &self,
        plan: &str,
        limit: Duration,
    ) -> mpsc::Receiver<Vec<(String, serde_json::Value)>> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let url = format!("{}/api/events", self.base);
        let cookie = self.cookie.clone();
        let plan = plan.to_string();
        std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout_read(Duration::from_secs(30))
                .build();
            let r = agent.get(&url).set("Cookie", &cookie).call().unwrap();
            assert_eq!(r.content_type(), "text/event-stream");
            let _ = ready_tx.send(());
            let start = Instant::now();
            let mut out = Vec::new();
            let mut name = String::new();
            for line in BufReader::new(r.into_reader()).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    let v: serde_json::Value = serde_json::from_str(d).unwrap();
                    let done = name == "job"
                        && v["plan"] == plan.as_str()
                        && v["state"] == "finished"
                        && v["run_id"].is_i64();
                    out.push((name.clone(), v));
                    if done {
                        break;
                    }
                }
                if start.elapsed() > limit {
                    break;
                }
            }
            let _ = tx.send(out);
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the event stream opened");
        rx
    }
}

/// The restic snapshot ids of the repository at `path`.
fn restic_snapshot_ids(env: &Env, path: &Path) -> Vec<String> {
    let out = Command::new(restic_bin())
        .arg("-r")
        .arg(path)
        .arg("--password-file")
        .arg(env.path("pw"))
        .args(["--no-cache", "snapshots", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(out)).expect("restic snapshots --json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

struct Daemon {
    child: std::process::Child,
    base: String,
    log: PathBuf,
    config: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(env: &Env, extra: &str, users: &[(&str, &str, &str)]) -> Daemon {
    let port = crate::peers::free_port();
    let mut toml = format!(
        "[settings]\nstate-dir = {}\n[settings.web]\nlisten = \"127.0.0.1:{port}\"\n",
        toml_str(&env.path("state").to_string_lossy())
    );
    for (name, password, role) in users {
        let file = env.path(&format!("web-{name}.hash"));
        std::fs::write(&file, format!("{}\n", hash_password(password))).unwrap();
        toml.push_str(&format!(
            "[settings.web.users.{name}]\npassword-hash-file = {}\nrole = \"{role}\"\n",
            toml_str(&file.to_string_lossy())
        ));
    }
    toml.push_str(extra);
    let config = env.path("daemon.toml");
    std::fs::write(&config, toml).unwrap();
    let log = env.path("daemon.log");
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut d = Daemon {
        child,
        base,
        log,
        config,
    };
    let start = Instant::now();
    loop {
        if let Ok(Some(s)) = d.child.try_wait() {
            panic!(
                "cairn daemon exited ({s}):\n{}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
        }
        if ureq::get(&format!("{}/healthz", d.base)).call().is_ok() {
            return d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "daemon web UI not up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cfg_json(env: &Env, config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_CACHE_DIR", env.path("cache"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cairn {args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    })
}

#[test]
fn daemon_web_triggers_a_backup_streams_its_progress_refuses_a_second_and_stops_cleanly() {
    // A REST server with an upload limit: the backup lasts a few seconds, long enough for
    // live status messages and a second trigger while it runs.
    let p = crate::peers::rest();
    let env = Env::new();
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
    let mut init = env.cairn_cmd(Path::new(&url), &["init"]);
    init.env("RESTIC_REST_USERNAME", p.var("REST_USER"))
        .env("RESTIC_REST_PASSWORD", p.var("REST_PASS"));
    ok(init.output().unwrap());
    let repo_dir = PathBuf::from(p.var("REST_DATA")).join("repo");
    let src = source(&env, 6);
    let mut daemon = start_daemon(
        &env,
        &plans_toml(
            &env,
            &src,
            &url,
            &format!(
                "env-file = {}\nlimit-upload = 2048",
                toml_str(&envfile.to_string_lossy())
            ),
        ),
        &[("ada", "ada-pw", "admin"), ("vic", "vic-pw", "viewer")],
    );
    let admin = Client::login(&daemon.base, "ada", "ada-pw");
    let viewer = Client::login(&daemon.base, "vic", "vic-pw");

    // The status the dashboard shows is what `cairn status --json` prints.
    let st = admin.json("/api/status");
    let cli = cfg_json(&env, &daemon.config, &["status"]);
    assert_eq!(st["plans"], cli, "API and CLI status differ");
    let plans: Vec<&str> = st["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["plan"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["docs", "home"]);
    assert_eq!(st["plans"][0]["overdue"], true, "docs never backed up");
    let repo = &st["repositories"][0];
    assert_eq!(repo["repository"], "local");
    assert_eq!(repo["snapshots"], 0, "{repo}");

    // A viewer may look but not start anything.
    let (s, _) = viewer.trigger("home", "backup");
    assert_eq!(s, 403);
    let (s, v) = admin.trigger("nope", "backup");
    assert_eq!(s, 404, "{v}");
    let (s, v) = admin.trigger("home", "defragment");
    assert_eq!(s, 400, "{v}");
    let (s, v) = admin.trigger("home", "restore-test");
    assert_eq!(s, 400, "home has no restore test: {v}");

    let events = admin.events_until_finished("home", Duration::from_secs(180));
    let (s, v) = admin.trigger("home", "backup");
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["plan"], "home");
    assert_eq!(v["operation"], "backup");
    // While it runs (a one-second hook, then a rate-limited upload), a second is refused
    // with what is running.
    let (s, v) = admin.trigger("home", "check");
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["running"]["plan"], "home");
    assert_eq!(v["running"]["operation"], "backup");
    assert!(v["error"].as_str().unwrap().contains("already"), "{v}");
    // A page opened mid-run shows the run at once.
    let (s, html) = admin.get("/");
    assert_eq!(s, 200);
    assert!(
        html.contains(r#"id="live-home" class="live" data-state="queued""#)
            || html.contains(r#"id="live-home" class="live" data-state="running""#),
        "{html}"
    );

    let events = events
        .recv_timeout(Duration::from_secs(200))
        .expect("the event stream ended");
    let statuses: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(n, v)| n == "progress" && v["message"]["message_type"] == "status")
        .map(|(_, v)| v)
        .collect();
    assert!(
        !statuses.is_empty(),
        "no status event during a ~3 s backup: {events:?}"
    );
    assert!(statuses
        .iter()
        .all(|v| v["plan"] == "home" && v["step"] == "backup"));
    let live: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(n, v)| n == "job" && v["live"].is_object())
        .map(|(_, v)| &v["live"])
        .collect();
    assert!(
        live.iter()
            .any(|l| l["total_bytes"].as_u64() >= Some(6 << 20)),
        "{live:?}"
    );
    let (_, last) = events.last().unwrap();
    assert_eq!(last["state"], "finished", "{last}");
    assert_eq!(last["result"], "success", "{last}");
    assert_eq!(last["live"]["percent_done"], 1.0, "{last}");
    let run_id = last["run_id"].as_i64().unwrap();

    // The run is in the history with its backup step, and its snapshot is in restic's list.
    let run = admin.json(&format!("/api/runs/{run_id}"));
    assert_eq!(run["result"], "success");
    assert_eq!(run["plan"], "home");
    assert!(run["log"].as_str().unwrap().contains("snapshot"), "{run}");
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"backup"), "{steps:?}");
    let snap = run["snapshot_id"].as_str().unwrap();
    assert_eq!(restic_snapshot_ids(&env, &repo_dir), [snap]);
    let hist = admin.json("/api/history?plan=home");
    assert_eq!(hist.as_array().unwrap().len(), 1);
    assert_eq!(hist[0]["id"], run_id);
    assert_eq!(
        admin
            .json("/api/history?plan=docs")
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (s, v) = admin.get("/api/history?limit=0");
    assert_eq!(s, 400, "{v}");
    let (s, _) = admin.get("/api/runs/999999");
    assert_eq!(s, 404);

    // The dashboard: every plan, the overdue one marked, the chart, admin-only buttons.
    let (_, html) = admin.get("/");
    for id in [
        r#"id="plan-home""#,
        r#"id="plan-docs" class="overdue""#,
        r#"id="repo-local""#,
        r#"<svg id="chart-home""#,
        r#"<svg id="chart-docs""#,
        r#"class="bar-ok""#,
        r#"id="trigger-backup-home""#,
        r#"id="trigger-restore-test-docs""#,
    ] {
        assert!(html.contains(id), "dashboard lacks {id}:\n{html}");
    }
    assert!(
        !html.contains("trigger-restore-test-home"),
        "home has no restore test"
    );
    let (_, vhtml) = viewer.get("/");
    assert!(vhtml.contains(r#"id="plan-home""#) && !vhtml.contains("trigger-backup-home"));
    let (_, page) = viewer.get(&format!("/runs/{run_id}"));
    assert!(
        page.contains(r#"id="run-result" class="badge ok" data-result="success""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<progress id="run-progress" max="1" value="1.000">"#),
        "{page}"
    );
    let (_, page) = viewer.get("/history?plan=home");
    assert!(page.contains(&format!(r#"id="run-{run_id}""#)), "{page}");
    // The same repository figures as restic's (one snapshot now; the cache is refreshed
    // when an operation ends).
    let st = admin.json("/api/status");
    assert_eq!(st["repositories"][0]["snapshots"], 1, "{st}");
    assert!(st["repositories"][0]["size"].as_u64().unwrap() > 6 << 20);
    assert_eq!(st["plans"][1]["chart"].as_array().unwrap().len(), 1);

    // SIGTERM: the daemon and its web server stop.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not stop:\n{}",
            std::fs::read_to_string(&daemon.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(ureq::get(&format!("{}/healthz", daemon.base))
        .call()
        .is_err());
}

fn wait_finished(server: &WebServer, s: &crate::webkit::Session, plan: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let r: Reply = s.get("/api/status");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
        let v = r.json();
        if let Some(j) = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["plan"] == plan && j["state"] == "finished")
        {
            return j.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn web_standalone_triggers_run_plans_as_children_and_report_their_end() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let src = source(&env, 1);
    let server = WebServer::start(
        &env,
        &plans_toml(&env, &src, &env.repo().to_string_lossy(), ""),
        &[("ada", "ada-pw", "admin")],
    );
    let admin = server.login("ada", "ada-pw");
    let r = admin.post_json(
        "/api/plans/home/trigger",
        &serde_json::json!({"operation": "backup"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = admin.post_json(
        "/api/plans/home/trigger",
        &serde_json::json!({"operation": "backup"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let job = wait_finished(&server, &admin, "home");
    assert_eq!(job["result"], "success", "{job}\n{}", server.log());
    let run_id = job["run_id"]
        .as_i64()
        .expect("the child's events named the run");
    let run = admin.get(&format!("/api/runs/{run_id}")).json();
    assert_eq!(
        restic_snapshot_ids(&env, &env.repo()),
        [run["snapshot_id"].as_str().unwrap()]
    );

    // A check alone: a run with only the check step.
    let r = admin.post_json(
        "/api/plans/home/trigger",
        &serde_json::json!({"operation": "check"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    std::thread::sleep(Duration::from_millis(300));
    let job = loop {
        let j = wait_finished(&server, &admin, "home");
        if j["operation"] == "check" {
            break j;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(job["result"], "success", "{job}");
    let run = admin.get(&format!("/api/runs/{}", job["run_id"])).json();
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operation"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["check"], "{run}");
    assert_eq!(
        restic_snapshot_ids(&env, &env.repo()).len(),
        1,
        "a check takes no snapshot"
    );
    // `cairn status --repositories` reads the repository like the dashboard does.
    let cli = cfg_json(&env, &server.config, &["status", "--repositories"]);
    let api = admin.get("/api/status").json();
    let figures = |v: &serde_json::Value| {
        let r = &v["repositories"][0];
        (
            r["repository"].clone(),
            r["snapshots"].clone(),
            r["size"].clone(),
            r["hosts"].clone(),
            r["last_snapshot"].clone(),
        )
    };
    assert_eq!(figures(&cli), figures(&api), "{cli}\n{api}");
    assert_eq!(cli["repositories"][0]["snapshots"], 1, "{cli}");
    assert_eq!(cli["plans"], api["plans"]);

    // The form of the dashboard's buttons (no script): a redirect back to it.
    let r = admin.post_form("/plans/docs/trigger", &[("operation", "backup")]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/?started=docs"));
    let job = wait_finished(&server, &admin, "docs");
    assert_eq!(job["result"], "success", "{job}");
}
