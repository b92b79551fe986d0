//! Runtime error hints name where the setting came from: the config key and file of a
//! configured repository (by `-r NAME`, or in a child of `cairn run`), the flag when it
//! was a flag; a file that may not be read is told apart from one that is missing; a
//! read-only repository is its own category with its cause said once.

use crate::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

const NOBODY: u32 = 65534;

/// An env with an initialised repository `repo`, a source, and `cfg/cairn.toml` naming
/// repository `usb` (its password-file, on line 6, holds a wrong password) and plan `home`.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let password_file = env.path("wrong-pw");
    std::fs::write(&password_file, "not the password\n").unwrap();
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/f"), b"data\n").unwrap();
    let cfg = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\n\
             [repositories.usb]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\n\n\
             [plans.home]\nrepository = \"usb\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            repo = env.repo().display(),
            pw = password_file.display(),
            src = env.path("src").display(),
        ),
    )
    .unwrap();
    (env, cfg)
}

/// The config key of `usb`'s password as the hints name it.
fn key_at(cfg: &Path) -> String {
    format!(
        "password-file of repository \"usb\" ({} line 6)",
        cfg.display()
    )
}

/// The error category and message of the last `run` of `plan` in the history.
fn last_run(env: &Env, plan: &str) -> (String, String) {
    let db = rusqlite::Connection::open(env.path("state/history.db")).unwrap();
    db.query_row(
        "SELECT error_category, error FROM operations WHERE plan = ?1 AND operation = 'run' ORDER BY id DESC LIMIT 1",
        [plan],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[test]
fn a_wrong_password_of_a_configured_repository_in_run_names_its_key_and_file() {
    let (env, cfg) = setup();
    let out = env.config_cmd(&cfg, &["run", "home"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&key_at(&cfg)), "{err}");
    assert!(!err.contains("--password-file"), "{err}");
    let (category, error) = last_run(&env, "home");
    assert_eq!(category, "auth");
    assert!(error.contains("wrong password"), "{error}");
    assert!(error.contains(&key_at(&cfg)), "{error}");
    assert!(!error.contains("--password-file"), "{error}");
    // The file gone: the child, given --password-file by the run, names the key to fix,
    // and no general hint follows the one it gave.
    std::fs::remove_file(env.path("wrong-pw")).unwrap();
    let out = env.config_cmd(&cfg, &["run", "home"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("create it, or fix {}", key_at(&cfg))),
        "{err}"
    );
    assert!(!err.contains("hint:"), "{err}");
    let (category, error) = last_run(&env, "home");
    assert_eq!(category, "auth");
    assert!(error.contains(&key_at(&cfg)), "{error}");
}

#[test]
fn a_wrong_password_by_name_names_the_config_key_and_by_path_the_flag() {
    let (env, cfg) = setup();
    let out = env
        .config_cmd(&cfg, &["-r", "usb", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&key_at(&cfg)), "{err}");
    assert!(!err.contains("--password-file"), "{err}");
    // The same repository by its path, the password by flag: the flag is what to check.
    let (repo, wrong) = (env.repo(), env.path("wrong-pw"));
    let out = env
        .config_cmd(
            &cfg,
            &[
                "-r",
                repo.to_str().unwrap(),
                "--password-file",
                wrong.to_str().unwrap(),
                "snapshots",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("check --password-file"), "{err}");
    assert!(!err.contains("of repository"), "{err}");
}

#[test]
fn a_password_file_that_may_not_be_read_and_a_missing_one_get_different_hints() {
    let env = Env::new();
    // Others may enter the env, not the directory holding the secret.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = env.path("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("pw"), format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let denied = secret.join("pw");
    let missing = env.path("nothere");
    let cfg = env.path("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repositories.denied]\nurl = \"{repo}\"\npassword-file = \"{denied}\"\n\
             [repositories.missing]\nurl = \"{repo}\"\npassword-file = \"{missing}\"\n\
             [repositories.env-denied]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\nenv-file = \"{denied}\"\n\
             [repositories.env-missing]\nurl = \"{repo}\"\npassword-file = \"{pw}\"\nenv-file = \"{missing}\"\n",
            repo = env.repo().display(),
            denied = denied.display(),
            missing = missing.display(),
            pw = env.path("pw").display(),
        ),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let out = env
            .config_cmd(&cfg, args)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run cairn as nobody (tests run as root)");
        assert!(!out.status.success());
        stderr(&out)
    };
    let create = "create it";
    let user = "run cairn as a user that can read it";
    // By name: the config key of a missing file; another user for one it may not read.
    let err = as_nobody(&["-r", "missing", "snapshots"]);
    assert!(err.contains(create), "{err}");
    assert!(
        err.contains(&format!(
            "password-file of repository \"missing\" ({} line 6)",
            cfg.display()
        )),
        "{err}"
    );
    assert!(!err.contains(user), "{err}");
    let err = as_nobody(&["-r", "denied", "snapshots"]);
    assert!(err.contains(user), "{err}");
    assert!(!err.contains(create), "{err}");
    // An env-file: the same distinction, naming its key.
    let err = as_nobody(&["-r", "env-missing", "snapshots"]);
    assert!(
        err.contains(&format!(
            "create it, or fix env-file of repository \"env-missing\" ({} line 14)",
            cfg.display()
        )),
        "{err}"
    );
    let err = as_nobody(&["-r", "env-denied", "snapshots"]);
    assert!(err.contains(user), "{err}");
    assert!(!err.contains(create), "{err}");
    // By flag: the same distinction, naming the flag.
    let repo = env.repo();
    let by_flag = |pw: &Path| {
        as_nobody(&[
            "-r",
            repo.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "snapshots",
        ])
    };
    let err = by_flag(&missing);
    assert!(err.contains("create it, or fix --password-file"), "{err}");
    let err = by_flag(&denied);
    assert!(err.contains(user), "{err}");
    assert!(!err.contains(create), "{err}");
}

/// A bind mount made read-only, undone on drop (the tests run as root, like CI).
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(from: &Path, at: &Path) -> ReadOnly {
        std::fs::create_dir_all(at).unwrap();
        let run = |args: &[&str]| {
            let st = Command::new("mount").args(args).status().unwrap();
            assert!(st.success(), "mount {args:?} (this test must run as root)");
        };
        run(&["--bind", from.to_str().unwrap(), at.to_str().unwrap()]);
        let guard = ReadOnly(at.to_path_buf());
        run(&["-o", "remount,bind,ro", at.to_str().unwrap()]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_repository_is_categorised_read_only_with_its_cause_once() {
    let env = Env::new();
    ok(env.cairn(&["init"]));
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/f"), b"data\n").unwrap();
    let ro = env.path("ro");
    let _mounted = ReadOnly::mount(&env.repo(), &ro);
    let cfg = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.usb]\nurl = \"{ro}\"\npassword-file = \"{pw}\"\n\
             [plans.home]\nrepository = \"usb\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            ro = ro.display(),
            pw = env.path("pw").display(),
            src = env.path("src").display(),
        ),
    )
    .unwrap();
    let out = env.config_cmd(&cfg, &["run", "home"]).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let fatal = err
        .lines()
        .find(|l| l.contains("Fatal:"))
        .unwrap_or_else(|| panic!("no Fatal line: {err}"));
    assert_eq!(fatal.matches("Read-only file system").count(), 1, "{err}");
    assert!(err.contains("mounted read-only"), "the hint: {err}");
    let (category, error) = last_run(&env, "home");
    assert_eq!(category, "read-only", "{error}");
    assert_eq!(error.matches("Read-only file system").count(), 1, "{error}");
}

#[test]
fn credentials_a_server_refuses_name_the_env_file_they_came_from() {
    let p = crate::peers::rest();
    let env = Env::new();
    std::fs::create_dir_all(env.path("src")).unwrap();
    std::fs::write(env.path("src/f"), b"data\n").unwrap();
    std::fs::write(
        env.path("rest.env"),
        format!(
            "RESTIC_REST_USERNAME={}\nRESTIC_REST_PASSWORD=not-the-password\n",
            p.var("REST_USER")
        ),
    )
    .unwrap();
    let cfg = env.path("cfg/cairn.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[settings]\nstate-dir = \"{state}\"\n\
             [repositories.offsite]\nurl = \"rest:{url}/hints\"\npassword-file = \"{pw}\"\nenv-file = \"{envfile}\"\n\
             [plans.home]\nrepository = \"offsite\"\npaths = [\"{src}\"]\n",
            state = env.path("state").display(),
            url = p.var("REST_URL").trim_end_matches('/'),
            pw = env.path("pw").display(),
            envfile = env.path("rest.env").display(),
            src = env.path("src").display(),
        ),
    )
    .unwrap();
    let setting = format!(
        "env-file of repository \"offsite\" ({} line 6)",
        cfg.display()
    );
    let run = |args: &[&str]| {
        env.config_cmd(&cfg, args)
            .env_remove("RESTIC_REST_USERNAME")
            .env_remove("RESTIC_REST_PASSWORD")
            .output()
            .unwrap()
    };
    let out = run(&["-r", "offsite", "snapshots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&setting), "{err}");
    // A child of `cairn run` got the credentials as variables: the hint still names the
    // env-file, in its Fatal line and in the history.
    let out = run(&["run", "home"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&setting), "{err}");
    let (category, error) = last_run(&env, "home");
    assert_eq!(category, "auth", "{error}");
    assert!(error.contains(&setting), "{error}");
}
