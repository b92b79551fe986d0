//! `cairn import autorestic|backrest|resticprofile`: configs written from each tool's
//! documented format are imported into a config that passes `config check`, with the
//! secrets in 0600 files and every left-out key reported; and a repository the tool's
//! restic wrote gets its next snapshot from cairn with restic's last one as parent.

use crate::{ok, stderr, write_file, Env, PASSWORD};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

fn import(env: &Env, tool: &str, file: &Path, out: &Path, json: bool) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.current_dir(env.path(""))
        .arg("import")
        .arg(tool)
        .arg(file);
    c.arg("--output").arg(out);
    if json {
        c.arg("--json");
    }
    c.output().expect("run cairn import")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The text of cairn.toml and every conf.d fragment.
fn config_text(out: &Path) -> String {
    let mut all = std::fs::read_to_string(out.join("cairn.toml")).unwrap();
    for e in std::fs::read_dir(out.join("conf.d")).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    all
}

fn toml_of(p: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The checks every import must pass: config check, secrets out of the config and in
/// 0600 files in a 0700 directory, and no overwriting on a second import.
fn common_checks(env: &Env, tool: &str, file: &Path, out: &Path, secrets: &[&str]) {
    let check = env.config_run(&out.join("cairn.toml"), &["config", "check", "--offline"]);
    ok(check);
    let text = config_text(out);
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} in the config:\n{text}");
    }
    assert_eq!(mode(&out.join("secrets")), 0o700);
    let mut found = String::new();
    for e in std::fs::read_dir(out.join("secrets")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        found.push_str(&std::fs::read_to_string(&p).unwrap());
    }
    for s in secrets {
        assert!(found.contains(s), "secret {s:?} not in secrets/");
    }
    // A second import refuses before writing anything.
    let before = crate::files_under(out).len();
    let again = import(env, tool, file, out, false);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(crate::files_under(out).len(), before);
}

fn report_has(report: &serde_json::Value, key: &str) -> bool {
    report["not_carried_over"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["key"].as_str().unwrap().contains(key))
}

#[test]
fn autorestic_config_imports_with_secrets_moved_and_every_left_out_key_reported() {
    let env = Env::new();
    let file = env.path("ar/.autorestic.yml");
    write_file(
        &file,
        r#"version: 2

extras:
  healthchecks: &healthchecks
    before:
      - 'curl -m 10 --retry 5 https://hc-ping.com/1111-2222/start'
    failure:
      - 'curl -m 10 --retry 5 https://hc-ping.com/1111-2222/fail'
    success:
      - 'curl -m 10 --retry 5 https://hc-ping.com/1111-2222'

global:
  forget:
    keep-daily: 7
    keep-weekly: 52

locations:
  home:
    from:
      - /home/me
      - ./docs
    to:
      - hdd
      - remote
    cron: '0 3 * * 0'
    forget: prune
    hooks:
      <<: *healthchecks
      dir: /srv/hooks
      after:
        - echo done
    options:
      backup:
        exclude:
          - '*.nope'
          - node_modules
        exclude-caches: true
        compression: max
      forget:
        keep-last: 5
  media:
    from: /data/media
    to: nas
    copy:
      nas:
        - rest
    options:
      backup:
        tag:
          - media
        one-file-system: true

backends:
  hdd:
    type: local
    path: ./backup
    key: hdd-secret-key-7781
  remote:
    type: s3
    path: s3.amazonaws.com/my-bucket/restic
    key: s3-repo-password-5512
    env:
      AWS_ACCESS_KEY_ID: AKIA0000EXAMPLE
      AWS_SECRET_ACCESS_KEY: s3-secret-access-9931
      AWS_DEFAULT_REGION: eu-west-1
  nas:
    type: sftp
    path: backup@nas.lan:/srv/restic
    key: sftp-password-3391
  rest:
    type: rest
    path: http://backup.lan:8000/repo
    key: rest-password-6617
    rest:
      user: me
      password: rest-http-secret-2290
    colour: blue
"#,
    );
    let out = env.path("out");
    let o = import(&env, "autorestic", &file, &out, true);
    let report = crate::json(&ok(o));
    // Files.
    for f in [
        "cairn.toml",
        "conf.d/home.toml",
        "conf.d/media.toml",
        "secrets/hdd.password",
        "secrets/remote.env",
        "secrets/rest.env",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let main = toml_of(&out.join("cairn.toml"));
    let repos = main["repositories"].as_table().unwrap();
    let base = file.parent().unwrap().canonicalize().unwrap();
    assert_eq!(
        repos["hdd"]["url"].as_str().unwrap(),
        base.join("backup").to_str().unwrap()
    );
    assert_eq!(
        repos["hdd"]["password-file"].as_str(),
        Some("secrets/hdd.password")
    );
    assert_eq!(
        repos["remote"]["url"].as_str(),
        Some("s3:s3.amazonaws.com/my-bucket/restic")
    );
    assert_eq!(
        repos["remote"]["env"]["AWS_DEFAULT_REGION"].as_str(),
        Some("eu-west-1")
    );
    assert_eq!(
        repos["rest"]["url"].as_str(),
        Some("rest:http://backup.lan:8000/repo")
    );
    assert_eq!(
        repos["nas"]["url"].as_str(),
        Some("sftp:backup@nas.lan:/srv/restic")
    );
    let env_file = std::fs::read_to_string(out.join("secrets/rest.env")).unwrap();
    assert!(env_file.contains("RESTIC_REST_USERNAME=me"), "{env_file}");
    // The location: one source, a plan per backend.
    let home = toml_of(&out.join("conf.d/home.toml"));
    let src = &home["sources"]["home"];
    assert_eq!(
        src["paths"].as_array().unwrap()[1].as_str().unwrap(),
        base.join("docs").to_str().unwrap()
    );
    assert_eq!(src["exclude"].as_array().unwrap().len(), 2);
    assert_eq!(src["exclude-caches"].as_bool(), Some(true));
    let plan = &home["plans"]["home-hdd"];
    assert_eq!(plan["schedule"].as_str(), Some("0 3 * * 0"));
    assert_eq!(plan["prune"].as_str(), Some("always"));
    assert_eq!(plan["retention"]["keep-last"].as_integer(), Some(5));
    assert_eq!(plan["retention"]["keep-daily"].as_integer(), Some(7));
    let before = plan["hooks"]["before"].as_array().unwrap();
    assert!(before[0]
        .as_str()
        .unwrap()
        .starts_with("cd '/srv/hooks' && curl"));
    assert!(home["plans"]["home-remote"].is_table());
    let media = toml_of(&out.join("conf.d/media.toml"));
    assert_eq!(
        media["plans"]["media"]["copy-to"].as_array().unwrap()[0].as_str(),
        Some("rest")
    );
    assert_eq!(media["plans"]["media"]["tags"][0].as_str(), Some("media"));
    // The report names what was left out.
    assert!(
        report_has(&report, "locations.home.options.backup.compression"),
        "{report}"
    );
    assert!(report_has(&report, "backends.rest.colour"), "{report}");
    common_checks(
        &env,
        "autorestic",
        &file,
        &out,
        &[
            "hdd-secret-key-7781",
            "s3-repo-password-5512",
            "s3-secret-access-9931",
            "AKIA0000EXAMPLE",
            "sftp-password-3391",
            "rest-password-6617",
            "rest-http-secret-2290",
        ],
    );
    // Text report too; bad input is a clear error.
    let big = env.path("big.yml");
    std::fs::write(&big, vec![b'#'; (1 << 20) + 1]).unwrap();
    let o = import(&env, "autorestic", &big, &env.path("out2"), false);
    assert!(stderr(&o).contains("larger than 1 MiB"), "{}", stderr(&o));
    write_file(&env.path("old.yml"), "locations:\n  a:\n    from: /x\n");
    let o = import(
        &env,
        "autorestic",
        &env.path("old.yml"),
        &env.path("out3"),
        false,
    );
    assert!(stderr(&o).contains("version: 2"), "{}", stderr(&o));
    assert!(!env.path("out3").exists());
}

const RESTICPROFILE_TOML: &str = r#"version = "1"

[global]
priority = "low"

[default]
repository = "b2:my-bucket:/restic"
password-file = "key"
initialize = false
verbose = true

[default.env]
B2_ACCOUNT_ID = "b2-account-000111"
B2_ACCOUNT_KEY = "b2-account-key-secret-8841"

[documents]
inherit = "default"
run-before = "echo before"
run-after-fail = "echo failed"

[documents.backup]
source = ["/home/me/Documents", "/home/me/Pictures"]
exclude = ["*.tmp", "/home/me/Documents/cache"]
exclude-caches = true
tag = ["documents"]
schedule = "*-*-* 02:30"
send-before = { url = "https://hc-ping.com/abcd-ef/start" }
send-after = { url = "https://hc-ping.com/abcd-ef" }
send-after-fail = { url = "https://hc-ping.com/abcd-ef/fail" }
read-concurrency = 4

[documents.retention]
after-backup = true
keep-daily = 7
keep-weekly = 4
keep-within = "3d"
prune = true

[documents.check]
schedule = "Sun 04:00"
read-data-subset = "1/7"

[server]
repository = "rest:https://backup.lan:8000/server"
password-command = "pass show restic/server"
[server.env]
RESTIC_REST_USERNAME = "server"
RESTIC_REST_PASSWORD = "rest-pass-secret-5521"

[server.backup]
source = "/etc"
one-file-system = true
exclude-file = "excludes.txt"
run-before = ["systemctl stop app", "echo stopped"]
run-finally = "systemctl start app"
"#;

const RESTICPROFILE_YAML: &str = r#"version: "1"

default:
  repository: "local:/srv/restic"
  password-file: /etc/restic/key
  env:
    TMPDIR: /var/tmp

root:
  inherit: default
  backup:
    source:
      - /
    exclude:
      - /proc
      - /sys
    one-file-system: true
    schedule: daily
  retention:
    after-backup: true
    keep-last: 10
    host: true
  forget:
    keep-last: 3
"#;

#[test]
fn resticprofile_toml_and_yaml_import_with_inherit_resolved_and_secrets_moved() {
    let env = Env::new();
    let file = env.path("rp/profiles.toml");
    write_file(&file, RESTICPROFILE_TOML);
    let out = env.path("out");
    let report = crate::json(&ok(import(&env, "resticprofile", &file, &out, true)));
    let main = toml_of(&out.join("cairn.toml"));
    let repos = main["repositories"].as_table().unwrap();
    let base = file.parent().unwrap().canonicalize().unwrap();
    let docs_repo = &repos["documents"];
    assert_eq!(docs_repo["url"].as_str(), Some("b2:my-bucket:/restic"));
    assert_eq!(
        docs_repo["password-file"].as_str().unwrap(),
        base.join("key").to_str().unwrap()
    );
    assert_eq!(
        docs_repo["env-file"].as_str(),
        Some("secrets/documents.env")
    );
    assert_eq!(
        repos["server"]["password-command"].as_str(),
        Some("pass show restic/server")
    );
    let docs = toml_of(&out.join("conf.d/documents.toml"));
    assert_eq!(
        docs["sources"]["documents"]["paths"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        docs["sources"]["documents"]["exclude-caches"].as_bool(),
        Some(true)
    );
    let plan = &docs["plans"]["documents"];
    assert_eq!(plan["schedule"].as_str(), Some("*-*-* 02:30"));
    assert_eq!(plan["retention"]["keep-daily"].as_integer(), Some(7));
    assert_eq!(plan["retention"]["keep-within"].as_str(), Some("3d"));
    assert_eq!(plan["prune"].as_str(), Some("always"));
    assert_eq!(plan["check"]["read-data-subset"].as_str(), Some("1/7"));
    assert_eq!(plan["hooks"]["before"][0].as_str(), Some("echo before"));
    assert_eq!(plan["hooks"]["failure"][0].as_str(), Some("echo failed"));
    assert_eq!(
        plan["notify"]["healthchecks"].as_str(),
        Some("https://hc-ping.com/abcd-ef")
    );
    assert_eq!(plan["tags"][0].as_str(), Some("documents"));
    let server = toml_of(&out.join("conf.d/server.toml"));
    assert_eq!(
        server["plans"]["server"]["hooks"]["before"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        server["sources"]["server"]["exclude-file"][0]
            .as_str()
            .unwrap(),
        base.join("excludes.txt").to_str().unwrap()
    );
    // `default` has no backup section: no fragment of its own.
    assert!(!out.join("conf.d/default.toml").exists());
    assert!(
        report_has(&report, "documents.backup.read-concurrency"),
        "{report}"
    );
    assert!(report_has(&report, "global"), "{report}");
    common_checks(
        &env,
        "resticprofile",
        &file,
        &out,
        &[
            "b2-account-key-secret-8841",
            "b2-account-000111",
            "rest-pass-secret-5521",
        ],
    );

    // The YAML form.
    let yfile = env.path("rp/profiles.yaml");
    write_file(&yfile, RESTICPROFILE_YAML);
    let yout = env.path("yout");
    let report = crate::json(&ok(import(&env, "resticprofile", &yfile, &yout, true)));
    let main = toml_of(&yout.join("cairn.toml"));
    assert_eq!(
        main["repositories"]["root"]["url"].as_str(),
        Some("/srv/restic")
    );
    assert_eq!(
        main["repositories"]["root"]["env"]["TMPDIR"].as_str(),
        Some("/var/tmp")
    );
    let root = toml_of(&yout.join("conf.d/root.toml"));
    assert_eq!(root["plans"]["root"]["schedule"].as_str(), Some("daily"));
    assert_eq!(
        root["plans"]["root"]["retention"]["keep-last"].as_integer(),
        Some(10)
    );
    assert_eq!(
        root["sources"]["root"]["one-file-system"].as_bool(),
        Some(true)
    );
    assert!(report_has(&report, "root.forget"), "{report}");
    ok(env.config_run(&yout.join("cairn.toml"), &["config", "check", "--offline"]));
}

const BACKREST_JSON: &str = r#"{
  "modno": 12,
  "version": 4,
  "instance": "homelab",
  "repos": [
    {
      "id": "b2",
      "uri": "b2:javiersc-backup:restic",
      "password": "backrest-repo-password-4471",
      "env": ["B2_ACCOUNT_ID=0001122334455", "B2_ACCOUNT_KEY=K005-b2-key-secret-9910"],
      "flags": ["-o b2.connections=10", "--insecure-tls"],
      "prunePolicy": {
        "schedule": {"maxFrequencyDays": 7, "clock": "CLOCK_LAST_RUN_TIME"},
        "maxUnusedPercent": 10
      },
      "checkPolicy": {
        "schedule": {"cron": "0 4 * * 0", "clock": "CLOCK_LOCAL"},
        "readDataSubsetPercent": 5
      },
      "hooks": [
        {
          "conditions": ["CONDITION_SNAPSHOT_ERROR"],
          "actionDiscord": {"webhookUrl": "https://discord.com/api/webhooks/1/2", "template": "x"}
        }
      ],
      "autoUnlock": true,
      "commandPrefix": {"ioNice": "IO_IDLE", "cpuNice": "CPU_LOW"}
    },
    {
      "id": "usb",
      "uri": "/mnt/usb/restic",
      "password": "usb-password-3318"
    }
  ],
  "plans": [
    {
      "id": "nightly",
      "repo": "b2",
      "paths": ["/var/lib/hass", "/var/lib/jellyfin"],
      "excludes": ["*.log", "cache"],
      "iexcludes": ["*.TMP"],
      "schedule": {"cron": "0 3 * * *", "clock": "CLOCK_LOCAL"},
      "retention": {"policyTimeBucketed": {"daily": 7, "weekly": 4, "monthly": 6}},
      "hooks": [
        {
          "conditions": ["CONDITION_SNAPSHOT_START"],
          "actionCommand": {"command": "systemctl stop jellyfin"},
          "onError": "ON_ERROR_CANCEL"
        },
        {
          "conditions": ["CONDITION_SNAPSHOT_END"],
          "actionCommand": {"command": "systemctl start jellyfin"}
        }
      ],
      "backup_flags": ["--one-file-system", "--read-concurrency 8"]
    },
    {
      "id": "usb-weekly",
      "repo": "usb",
      "paths": ["/home"],
      "schedule": {"maxFrequencyHours": 6},
      "retention": {"policyKeepLastN": 10}
    }
  ],
  "auth": {"disabled": false, "users": [{"name": "admin", "passwordBcrypt": "JDJhJDEwJGV4YW1wbGU="}]}
}
"#;

#[test]
fn backrest_config_imports_plans_repos_and_policies() {
    let env = Env::new();
    let file = env.path("config.json");
    write_file(&file, BACKREST_JSON);
    let out = env.path("out");
    let report = crate::json(&ok(import(&env, "backrest", &file, &out, true)));
    let main = toml_of(&out.join("cairn.toml"));
    let b2 = &main["repositories"]["b2"];
    assert_eq!(b2["url"].as_str(), Some("b2:javiersc-backup:restic"));
    assert_eq!(b2["password-file"].as_str(), Some("secrets/b2.password"));
    assert_eq!(b2["env-file"].as_str(), Some("secrets/b2.env"));
    assert_eq!(b2["options"]["b2.connections"].as_str(), Some("10"));
    let n = toml_of(&out.join("conf.d/nightly.toml"));
    let plan = &n["plans"]["nightly"];
    assert_eq!(plan["repository"].as_str(), Some("b2"));
    assert_eq!(plan["schedule"].as_str(), Some("0 3 * * *"));
    assert_eq!(plan["retention"]["keep-monthly"].as_integer(), Some(6));
    assert_eq!(plan["prune"].as_str(), Some("weekly"));
    assert_eq!(plan["check"]["read-data-subset"].as_str(), Some("5%"));
    assert_eq!(plan["check"]["schedule"].as_str(), Some("0 4 * * 0"));
    assert_eq!(
        plan["hooks"]["before"][0].as_str(),
        Some("systemctl stop jellyfin")
    );
    assert_eq!(
        plan["hooks"]["finally"][0].as_str(),
        Some("systemctl start jellyfin")
    );
    assert_eq!(plan["tags"][0].as_str(), Some("created-by:homelab"));
    assert_eq!(plan["ionice"].as_str(), Some("idle"));
    let src = &n["sources"]["nightly"];
    assert_eq!(src["iexclude"][0].as_str(), Some("*.TMP"));
    assert_eq!(src["one-file-system"].as_bool(), Some(true));
    assert_eq!(src["exclude-caches"].as_bool(), Some(true));
    let u = toml_of(&out.join("conf.d/usb-weekly.toml"));
    assert_eq!(
        u["plans"]["usb-weekly"]["schedule"].as_str(),
        Some("0 */6 * * *")
    );
    assert_eq!(
        u["plans"]["usb-weekly"]["retention"]["keep-last"].as_integer(),
        Some(10)
    );
    for key in [
        "repos.b2.prunePolicy.maxUnusedPercent",
        "repos.b2.hooks[0].actionDiscord",
        "repos.b2.flags",
        "plans.nightly.backup_flags",
        "auth",
    ] {
        assert!(report_has(&report, key), "{key} not reported: {report}");
    }
    common_checks(
        &env,
        "backrest",
        &file,
        &out,
        &[
            "backrest-repo-password-4471",
            "K005-b2-key-secret-9910",
            "usb-password-3318",
        ],
    );
}

/// restic backs up like `tool` would, cairn imports the tool's config and runs the plan:
/// the new snapshot's parent is restic's, and restic's check reads everything clean.
fn first_cairn_run_continues_from_restic(
    tool: &str,
    name: &str,
    config: &str,
    restic_args: &[&str],
    plan: &str,
) {
    let env = Env::new();
    let src = env.path("src");
    crate::make_source(&src);
    let src_s = src.to_str().unwrap();
    let repo = env.repo();
    ok(env.restic(&["init"]));
    let mut args = vec!["backup", "--json"];
    args.extend_from_slice(restic_args);
    args.push(src_s);
    ok(env.restic(&args));
    let first = crate::json(&ok(env.restic(&["snapshots", "--json"])));
    let first_id = first[0]["id"].as_str().unwrap().to_string();
    let file = env.path(name);
    write_file(
        &file,
        &config
            .replace("@REPO@", repo.to_str().unwrap())
            .replace("@SRC@", src_s)
            .replace("@PASSWORD@", PASSWORD)
            .replace("@PWFILE@", env.path("pw").to_str().unwrap()),
    );
    let out = env.path("cairn");
    ok(import(&env, tool, &file, &out, false));
    // The state (history, locks) in the test's directory, not /var/lib/cairn.
    let main = out.join("cairn.toml");
    let text = std::fs::read_to_string(&main).unwrap();
    assert!(!text.contains("[settings]"), "{text}");
    let state = env.path("state");
    std::fs::write(
        &main,
        format!("[settings]\nstate-dir = \"{}\"\n\n{text}", state.display()),
    )
    .unwrap();
    let run = env.config_run(&main, &["run", plan]);
    ok(run);
    let snaps = crate::json(&ok(env.restic(&["snapshots", "--json"])));
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let new = snaps.iter().find(|s| s["id"] != first_id.as_str()).unwrap();
    assert_eq!(new["parent"].as_str(), Some(first_id.as_str()), "{new}");
    assert_eq!(new["paths"], first[0]["paths"]);
    assert_eq!(new["hostname"], first[0]["hostname"]);
    ok(env.restic(&["check", "--read-data"]));
}

#[test]
fn autorestic_repository_gets_its_next_snapshot_from_cairn_with_restics_as_parent() {
    first_cairn_run_continues_from_restic(
        "autorestic",
        ".autorestic.yml",
        "version: 2\nlocations:\n  data:\n    from: @SRC@\n    to: hdd\nbackends:\n  hdd:\n    type: local\n    path: @REPO@\n    key: '@PASSWORD@'\n",
        // autorestic tags each snapshot with its location.
        &["--tag", "ar:location:data"],
        "data",
    );
}

#[test]
fn resticprofile_repository_gets_its_next_snapshot_from_cairn_with_restics_as_parent() {
    first_cairn_run_continues_from_restic(
        "resticprofile",
        "profiles.toml",
        "version = \"1\"\n[default]\nrepository = \"local:@REPO@\"\npassword-file = \"@PWFILE@\"\n[data]\ninherit = \"default\"\n[data.backup]\nsource = [\"@SRC@\"]\n",
        &[],
        "data",
    );
}

#[test]
fn backrest_repository_gets_its_next_snapshot_from_cairn_with_restics_as_parent() {
    first_cairn_run_continues_from_restic(
        "backrest",
        "config.json",
        r#"{"instance": "box", "repos": [{"id": "local", "uri": "@REPO@", "password": "@PASSWORD@"}],
            "plans": [{"id": "data", "repo": "local", "paths": ["@SRC@"], "schedule": {"disabled": true}}]}"#,
        // What Backrest passes on every backup.
        &[
            "--exclude-caches",
            "--tag",
            "plan:data",
            "--tag",
            "created-by:box",
        ],
        "data",
    );
}
