//! Field notes' pieces of the config: date placeholders in a plan's tags, `cairn run a b
//! --fail-fast`, passwords from systemd credentials (`password-credential`), backend keys
//! from a command (`env-command`). The real restic reads what was written.

use crate::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn out_of(c: &mut Command) -> Output {
    c.output().expect("run cairn")
}

/// Both streams, for messages.
fn said(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

fn restic_snapshots(env: &Env, repo: &Path) -> serde_json::Value {
    json(&ok(Command::new(restic_bin())
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(env.path("pw"))
        .args(["--no-cache", "snapshots", "--json"])
        .output()
        .unwrap()))
}

/// (plan, result, error_category, error) of every `run` in the history, oldest first.
fn runs(env: &Env) -> Vec<(String, String, Option<String>, Option<String>)> {
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let mut q = db
        .prepare(
            "SELECT plan, result, error_category, error FROM operations \
             WHERE operation = 'run' ORDER BY id",
        )
        .unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A source directory with a couple of files.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("d/b.bin"), random_bytes(11, 200_000)).unwrap();
    src
}

#[test]
fn tags_with_date_placeholders_land_expanded_and_the_next_run_finds_its_parent() {
    let env = Env::new();
    let src = source(&env);
    ok(env.cairn(&["init"]));
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [sources.docs]\npaths = [\"{src}\"]\ntags = [\"w%G-%V\"]\n\
             [plans.monthly]\nrepository = \"main\"\nsources = [\"docs\"]\n\
             tags = [\"%Y-%m\", \"100%%\", \"fixed\"]\n\
             retention = {{ keep-last = 1, keep-tag = [\"fixed\"] }}\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            src = src.display(),
        ),
    );
    let before = chrono::Local::now();
    ok(out_of(&mut env.config_cmd(&cfg, &["run", "monthly"])));
    std::fs::write(src.join("a.txt"), b"alpha, changed\n").unwrap();
    ok(out_of(&mut env.config_cmd(&cfg, &["run", "monthly"])));
    let after = chrono::Local::now();
    let snaps = restic_snapshots(&env, &env.repo());
    let snaps = snaps.as_array().unwrap();
    assert_eq!(
        snaps.len(),
        2,
        "keep-tag kept the tagged first one: {snaps:?}"
    );
    let month = [before, after].map(|t| t.format("%Y-%m").to_string());
    let week = [before, after].map(|t| t.format("w%G-%V").to_string());
    for s in snaps {
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(month.iter().any(|m| tags.contains(&m.as_str())), "{tags:?}");
        assert!(week.iter().any(|w| tags.contains(&w.as_str())), "{tags:?}");
        assert!(
            tags.contains(&"100%") && tags.contains(&"fixed"),
            "{tags:?}"
        );
        assert!(tags.contains(&"plan:monthly"), "{tags:?}");
        assert!(!tags.iter().any(|t| t.contains("%Y")), "{tags:?}");
    }
    // The second run found the first as its parent (the tags are no part of the choice).
    let (first, second) = if snaps[0]["time"].as_str() < snaps[1]["time"].as_str() {
        (&snaps[0], &snaps[1])
    } else {
        (&snaps[1], &snaps[0])
    };
    assert_eq!(second["parent"], first["id"], "{snaps:?}");
    // --plan still finds the plan's snapshots by its own tag.
    let by_plan = json(&ok(out_of(
        &mut env.config_cmd(&cfg, &["--json", "snapshots", "--plan", "monthly"]),
    )));
    assert_eq!(by_plan.as_array().unwrap().len(), 2, "{by_plan}");
}

#[test]
fn config_check_refuses_an_unknown_tag_placeholder_naming_the_key() {
    let env = Env::new();
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [sources.docs]\npaths = [\"/etc\"]\ntags = [\"%x-docs\"]\n\
             [plans.p]\nrepository = \"main\"\nsources = [\"docs\"]\ntags = [\"%Y-%m\", \"50%\"]\n\
             retention = {{ keep-last = 3, keep-tag = [\"%Y\"] }}\n",
            repo = env.repo().display(),
            pw = env.path("pw").display(),
        ),
    );
    let o = out_of(&mut env.config_cmd(&cfg, &["config", "check"]));
    assert!(!o.status.success());
    let text = said(&o);
    assert!(
        text.contains("plan `p`: tags") && text.contains("`%`"),
        "{text}"
    );
    assert!(
        text.contains("source `docs`: tags") && text.contains("`%x`"),
        "{text}"
    );
    assert!(
        !text.contains("\"%Y-%m\" has"),
        "a known one is fine: {text}"
    );
    assert!(
        text.contains("keep-tag \"%Y\" is matched literally"),
        "{text}"
    );
}

/// Plans `first` (its path is missing: it fails) and `second`, healthy, into one repository.
fn two_plans(env: &Env) -> PathBuf {
    let src = source(env);
    ok(env.cairn(&["init"]));
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             [plans.first]\nrepository = \"main\"\npaths = [\"{gone}\"]\n\
             [plans.second]\nrepository = \"main\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = env.path("pw").display(),
            gone = env.path("not-mounted").display(),
            src = src.display(),
        ),
    );
    cfg
}

#[test]
fn run_fail_fast_stops_at_the_first_failed_plan_and_without_it_every_plan_runs() {
    let env = Env::new();
    let cfg = two_plans(&env);
    let o = out_of(&mut env.config_cmd(&cfg, &["--json", "run", "first", "second", "--fail-fast"]));
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let r = runs(&env);
    assert_eq!(r.len(), 1, "second was not run: {r:?}");
    assert_eq!((r[0].0.as_str(), r[0].1.as_str()), ("first", "failure"));
    assert!(stderr(&o).contains("second: not run"), "{}", stderr(&o));
    let reports = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(reports[1]["plan"], "second", "{reports}");
    assert_eq!(reports[1]["result"], "not-run", "{reports}");
    assert_eq!(
        restic_snapshots(&env, &env.repo())
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Without the flag: both run in order, the exit says one failed.
    let o = out_of(&mut env.config_cmd(&cfg, &["run", "first", "second"]));
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let r = runs(&env);
    let last: Vec<(&str, &str)> = r[1..]
        .iter()
        .map(|x| (x.0.as_str(), x.1.as_str()))
        .collect();
    assert_eq!(last, [("first", "failure"), ("second", "success")]);
    assert_eq!(
        restic_snapshots(&env, &env.repo())
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // With the flag and nothing failing, every plan runs.
    let o = out_of(&mut env.config_cmd(&cfg, &["run", "second", "second", "--fail-fast"]));
    ok(o);
    assert_eq!(runs(&env).len(), 5);
}

#[test]
fn a_password_from_a_systemd_credential_works_for_run_and_by_name_and_is_a_clear_error_without_one()
{
    let env = Env::new();
    let src = source(&env);
    let creds = env.path("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("cairn-main"), format!("{PASSWORD}\n")).unwrap();
    let repo = env.path("store/main");
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.main]\nurl = \"{repo}\"\npassword-credential = \"cairn-main\"\n\
             [plans.nightly]\nrepository = \"main\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            repo = repo.display(),
            src = src.display(),
        ),
    );
    let with_creds = |args: &[&str]| {
        let mut c = env.config_cmd(&cfg, args);
        c.env("CREDENTIALS_DIRECTORY", &creds);
        out_of(&mut c)
    };
    ok(with_creds(&["config", "check"]));
    ok(with_creds(&["-r", "main", "init"]));
    ok(with_creds(&["run", "nightly"]));
    let snaps = json(&ok(with_creds(&["--json", "-r", "main", "snapshots"])));
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    let restic = restic_snapshots(&env, &repo);
    assert_eq!(restic[0]["id"], snaps[0]["id"]);
    // Outside the unit: no credentials directory. The message says what to set.
    let o = out_of(&mut env.config_cmd(&cfg, &["-r", "main", "snapshots"]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("password-credential \"cairn-main\"")
            && e.contains("CREDENTIALS_DIRECTORY is not set")
            && e.contains("LoadCredential=cairn-main:"),
        "{e}"
    );
    let o = out_of(&mut env.config_cmd(&cfg, &["run", "nightly"]));
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let r = runs(&env);
    let (_, result, cat, err) = r.last().unwrap();
    assert_eq!(
        (result.as_str(), cat.as_deref()),
        ("failure", Some("config"))
    );
    assert!(
        err.as_deref()
            .unwrap()
            .contains("LoadCredential=cairn-main:"),
        "{r:?}"
    );
    // A directory without that credential: named, with the same fix.
    std::fs::remove_file(creds.join("cairn-main")).unwrap();
    let o = with_creds(&["-r", "main", "snapshots"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("does not exist") && e.contains("cairn-main"),
        "{e}"
    );
    let o = with_creds(&["config", "check"]);
    assert!(!o.status.success());
    assert!(said(&o).contains("password-credential"), "{}", said(&o));
}

#[test]
fn config_check_wants_exactly_one_password_source_naming_the_keys() {
    let env = Env::new();
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[repositories.both]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\npassword-credential = \"x\"\n\
             [repositories.badname]\nurl = \"{repo}\"\npassword-credential = \"../etc/shadow\"\n\
             [repositories.emptycmd]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\nenv-command = \" \"\n",
            repo = env.repo().display(),
            pw = env.path("pw").display(),
        ),
    );
    let o = out_of(&mut env.config_cmd(&cfg, &["config", "check", "--offline"]));
    assert!(!o.status.success());
    let text = said(&o);
    assert!(
        text.contains("repository `both` has 2 password sources")
            && text.contains("password-file, password-credential"),
        "{text}"
    );
    assert!(
        text.contains(
            "repository `badname`: password-credential \"../etc/shadow\" is not a credential name"
        ),
        "{text}"
    );
    assert!(
        text.contains("repository `emptycmd`: env-command is empty"),
        "{text}"
    );
}

#[test]
fn env_command_and_env_credential_feed_a_rest_repositorys_credentials_and_a_failing_command_is_named(
) {
    use std::os::unix::fs::PermissionsExt;
    let p = crate::peers::rest();
    let env = Env::new();
    let src = source(&env);
    let url = format!("rest:{}/keyed", p.var("REST_URL").trim_end_matches('/'));
    // A stand-in for `pass show`: prints the keys unless the store is "locked".
    let script = env.path("keys");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {locked} ]; then echo \"vault is locked\" >&2; exit 1; fi\n\
             [ \"$1\" = show ] || exit 2\n\
             echo RESTIC_REST_PASSWORD={pass}\n",
            locked = env.path("locked").display(),
            pass = p.var("REST_PASS"),
        ),
    )
    .unwrap();
    // The user name from a systemd credential in env-file format.
    let creds = env.path("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(
        creds.join("rest-user"),
        format!("RESTIC_REST_USERNAME={}\n", p.var("REST_USER")),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.offsite]\nurl = \"{url}\"\npassword-file = \"{pw}\"\n\
             env-command = \"{script} show s3/keys\"\nenv-credential = \"rest-user\"\n\
             [plans.away]\nrepository = \"offsite\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            pw = env.path("pw").display(),
            script = script.display(),
            src = src.display(),
        ),
    );
    let run = |args: &[&str]| {
        let mut c = env.config_cmd(&cfg, args);
        c.env("CREDENTIALS_DIRECTORY", &creds);
        out_of(&mut c)
    };
    ok(run(&["config", "check"]));
    ok(run(&["-r", "offsite", "init"]));
    ok(run(&["run", "away"]));
    let snaps = json(&ok(run(&["--json", "-r", "offsite", "snapshots"])));
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    // restic 0.14 takes REST credentials in the URL only.
    let with_creds = url.replacen(
        "://",
        &format!("://{}:{}@", p.var("REST_USER"), p.var("REST_PASS")),
        1,
    );
    let restic = json(&ok(Command::new(restic_bin())
        .args(["-r", &with_creds, "--no-cache", "--json", "snapshots"])
        .arg("--password-file")
        .arg(env.path("pw"))
        .output()
        .unwrap()));
    assert_eq!(restic[0]["id"], snaps[0]["id"]);
    // The keys went to the backend only: not into the run's log.
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    let log: String = db
        .query_row(
            "SELECT log FROM operations WHERE operation = 'run' ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!log.contains(p.var("REST_PASS")), "{log}");
    // Outside the unit the env-credential is named, with what to set.
    let o = out_of(&mut env.config_cmd(&cfg, &["-r", "offsite", "snapshots"]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("env-credential \"rest-user\": CREDENTIALS_DIRECTORY is not set"),
        "{}",
        stderr(&o)
    );
    // The secret store is locked: a clear error naming the key, for -r NAME and for run.
    std::fs::write(env.path("locked"), b"").unwrap();
    let o = run(&["-r", "offsite", "snapshots"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("repository \"offsite\"")
            && e.contains("env-command failed")
            && e.contains("vault is locked"),
        "{e}"
    );
    let o = run(&["run", "away"]);
    assert_eq!(o.status.code(), Some(1), "{}", said(&o));
    let r = runs(&env);
    let (_, result, cat, err) = r.last().unwrap();
    assert_eq!(
        (result.as_str(), cat.as_deref()),
        ("failure", Some("config"))
    );
    let err = err.as_deref().unwrap();
    assert!(
        err.contains("repository offsite")
            && err.contains("env-command failed")
            && err.contains("vault is locked"),
        "{err}"
    );
}

#[test]
fn config_show_hides_what_an_env_command_echoes() {
    let env = Env::new();
    let cfg = env.path("cfg/cairn.toml");
    write(
        &cfg,
        &format!(
            "[repositories.main]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\
             env-command = \"echo AWS_SECRET_ACCESS_KEY=hunter2-in-config\"\n\
             [repositories.other]\nurl = \"{repo}2\"\npassword-credential = \"other-pw\"\n\
             env-command = \"pass show backup/s3.env\"\n",
            repo = env.repo().display(),
            pw = env.path("pw").display(),
        ),
    );
    for args in [&["config", "show"][..], &["--json", "config", "show"][..]] {
        let text = said(&out_of(&mut env.config_cmd(&cfg, args)));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("echo <redacted>"), "{text}");
        // Where the secrets come from is shown.
        assert!(
            text.contains("pass show backup/s3.env") && text.contains("other-pw"),
            "{text}"
        );
    }
}
