//! Issue 13, point 4b: `config check` reports every problem of every file in one pass —
//! syntax errors, every type error and unknown key of every entry, then the semantic
//! checks — in words rather than Rust types, sorted by file and line; files it cannot
//! read are missing or not allowed, never both. The permission tests run cairn as
//! `nobody` (the tests run as root, as CI does).

use crate::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

const NOBODY: u32 = 65534;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn check(main: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.arg("--config").arg(main).args(args);
    c
}

/// The problems of a `--json config check`: (file name, line, message, help).
fn problems(out: &Output) -> Vec<(String, u64, String, String)> {
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["ok"], false, "{v}");
    v["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|p| {
            let file = Path::new(p["file"].as_str().unwrap());
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                p["line"].as_u64().unwrap(),
                p["message"].as_str().unwrap().to_string(),
                p["help"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// What serde and Rust call types: none of it may reach a person.
fn assert_no_rust_types(text: &str) {
    for rust in [
        "i32",
        "i64",
        "u32",
        "u64",
        "u16",
        "f64",
        "a sequence",
        "a map",
        "struct ",
        "a boolean",
        "invalid type",
    ] {
        assert!(!text.contains(rust), "{rust:?} in:\n{text}");
    }
}

#[test]
fn config_check_reports_five_problems_in_three_files_in_one_pass() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    write(
        &main,
        &format!(
            "[repositories.nas]\nurl = \"/srv/nas\"\npassword-file = \"{}\"\n\n\
             [plans.nightly]\nrepository = \"nas\"\npaths = [\"/etc\"]\n",
            env.path("pw").display()
        ),
    );
    // A syntax error: the rest of this fragment cannot be trusted, the others can.
    write(
        &env.path("cfg/conf.d/a-web.toml"),
        "[sources.web]\npaths = [\"/srv/www\"\n",
    );
    // Two type errors: one in a repository, one in a plan (which names that repository).
    write(
        &env.path("cfg/conf.d/b-usb.toml"),
        &format!(
            "[repositories.usb]\nurl = \"/mnt/usb\"\npassword-file = \"{}\"\nlimit-upload = \"fast\"\n\n\
             [plans.weekly]\nrepository = \"usb\"\npaths = [\"/home\"]\nretention = {{ keep-daily = \"7\" }}\n",
            env.path("pw").display()
        ),
    );
    // An unknown key in a source, and a plan naming a repository nobody defined. The
    // other plan names `usb`, whose problem is its own: not an unknown repository.
    write(
        &env.path("cfg/conf.d/c-offsite.toml"),
        "[sources.docs]\npaths = [\"/srv/docs\"]\nexclude-cache = true\n\n\
         [plans.offsite]\nrepository = \"cloud\"\nsources = [\"docs\"]\n\n\
         [plans.monthly]\nrepository = \"usb\"\npaths = [\"/etc\"]\n",
    );

    let out = check(&main, &["--json", "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = problems(&out);
    let summary: Vec<(&str, u64)> = got.iter().map(|(f, l, _, _)| (f.as_str(), *l)).collect();
    assert_eq!(
        summary,
        [
            ("a-web.toml", 2),
            ("b-usb.toml", 4),
            ("b-usb.toml", 9),
            ("c-offsite.toml", 3),
            ("c-offsite.toml", 6),
        ],
        "{got:#?}"
    );
    let msg = |i: usize| got[i].2.as_str();
    assert!(msg(0).contains("unclosed array"), "{got:#?}");
    assert_eq!(
        msg(1),
        "repositories.usb.limit-upload: wrong type: expected a whole number (0 or more), found the string \"fast\""
    );
    assert_eq!(
        msg(2),
        "plans.weekly.retention.keep-daily: wrong type: expected a whole number, found the string \"7\""
    );
    assert_eq!(
        msg(3),
        "sources.docs: unknown key `exclude-cache`, did you mean `exclude-caches`?"
    );
    assert_eq!(msg(4), "plan `offsite`: unknown repository `cloud`");

    // The text output: the same five, sorted, each at file:line:column, and the count.
    let out = check(&main, &["config", "check"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let places: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(": error: "))
        .map(|l| l.split(": error: ").next().unwrap())
        .collect();
    let conf_d = env.path("cfg/conf.d");
    let at = |f: &str, l: u32, c: u32| format!("{}:{l}:{c}", conf_d.join(f).display());
    assert_eq!(
        places,
        [
            at("a-web.toml", 2, 20),
            at("b-usb.toml", 4, 16),
            at("b-usb.toml", 9, 28),
            at("c-offsite.toml", 3, 1),
            at("c-offsite.toml", 6, 14),
        ],
        "{err}"
    );
    assert!(
        err.trim_end().ends_with("5 error(s) in the configuration"),
        "{err}"
    );
    assert_no_rust_types(&err);
}

/// One entry with many problems: all of them, each in words with its key path.
#[test]
fn config_check_reports_every_type_error_of_one_entry_in_words() {
    let env = Env::new();
    let main = env.path("cfg/cairn.toml");
    write(
        &main,
        &format!(
            "[repositories.nas]\nurl = \"/srv/nas\"\npassword-file = \"{}\"\n\n\
             [plans.nightly]\n\
             repository = \"nas\"\n\
             paths = \"/etc\"\n\
             one-file-system = \"yes\"\n\
             nice = 99999999999\n\
             max-age = 26\n\
             tags = [\"daily\", 7]\n\
             retention = {{ keep-daily = \"7\", keep-within = 30 }}\n\
             hooks = {{ before = \"true\" }}\n\
             shedule = \"daily\"\n",
            env.path("pw").display()
        ),
    );
    let out = check(&main, &["--json", "config", "check"])
        .output()
        .unwrap();
    let got = problems(&out);
    let msgs: Vec<&str> = got.iter().map(|(_, _, m, _)| m.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "plans.nightly.paths: wrong type: expected a list of strings, found the string \"/etc\"",
            "plans.nightly.one-file-system: wrong type: expected true or false, found the string \"yes\"",
            "plans.nightly.nice: the number 99999999999 is out of range: expected a whole number from -2147483648 to 2147483647",
            "plans.nightly.max-age: wrong type: expected a duration like \"30s\" or \"1h\", found the number 26",
            "plans.nightly.tags[1]: wrong type: expected a string, found the number 7",
            "plans.nightly.retention.keep-daily: wrong type: expected a whole number, found the string \"7\"",
            "plans.nightly.retention.keep-within: wrong type: expected a duration like \"30s\" or \"1h\", found the number 30",
            "plans.nightly.hooks.before: wrong type: expected a list of strings, found the string \"true\"",
            "plans.nightly: unknown key `shedule`, did you mean `schedule`?",
        ],
        "{got:#?}"
    );
    let lines: Vec<u64> = got.iter().map(|(_, l, _, _)| *l).collect();
    assert_eq!(lines, [7, 8, 9, 10, 11, 12, 12, 13, 14]);
    // A missing key after a wrong one is not reported twice; a misspelt secret key is
    // not printed, and `password` (refused) is not offered.
    write(
        &main,
        &format!(
            "[repositories.nas]\nurl = 5\npassword-file = \"{}\"\n\
             [repositories.usb]\nurl = \"/mnt/usb\"\npasword = \"hunter2\"\n",
            env.path("pw").display()
        ),
    );
    let out = check(&main, &["--json", "config", "check"])
        .output()
        .unwrap();
    let got = problems(&out);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        got[0].2,
        "repositories.nas.url: wrong type: expected a string, found the number 5"
    );
    assert_eq!(got[1].2, "repositories.usb: unknown key `pasword`");
    assert!(got[1].3.contains("password-file"), "{got:#?}");
    assert!(!got[1].3.contains("password,"), "{got:#?}");
    let out = check(&main, &["config", "check"]).output().unwrap();
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

/// An env whose top directory `nobody` may enter, so only the modes the test sets keep
/// it out.
fn open_env() -> Env {
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env
}

#[test]
fn config_check_tells_missing_files_from_unreadable_ones() {
    let env = open_env();
    let cfg = env.path("cfg");
    let secret = env.path("secret.pass");
    write(&secret, "hunter2\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(
        &cfg.join("cairn.toml"),
        &format!(
            "include = [\"conf.d\", \"extra.toml\"]\n\
             [repositories.nas]\nurl = \"/srv/nas\"\npassword-file = \"{}\"\n\
             [repositories.usb]\nurl = \"/mnt/usb\"\npassword-file = \"{}\"\nenv-file = \"{}\"\n\
             [plans.nightly]\nrepository = \"nas\"\npaths = [\"/etc\"]\n",
            secret.display(),
            env.path("gone.pass").display(),
            env.path("gone.env").display(),
        ),
    );
    let fragment = cfg.join("conf.d/private.toml");
    write(&fragment, "[sources.x]\npaths = [\"/srv\"]\n");
    std::fs::set_permissions(&fragment, std::fs::Permissions::from_mode(0o600)).unwrap();
    for d in [&cfg, &cfg.join("conf.d")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let main = cfg.join("cairn.toml");
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o644)).unwrap();

    let as_nobody = |args: &[&str]| {
        let out = check(&main, args)
            .uid(NOBODY)
            .gid(NOBODY)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        problems(&out)
    };
    let got = as_nobody(&["--json", "config", "check"]);
    let find = |got: &[(String, u64, String, String)], what: &str| {
        got.iter()
            .find(|p| p.2.contains(what))
            .cloned()
            .unwrap_or_else(|| panic!("{what:?} not in {got:#?}"))
    };
    // Not allowed: say so and who owns it; never "create it".
    for (what, key) in [
        (fragment.display().to_string(), ""),
        (
            secret.display().to_string(),
            "repositories.nas.password-file: ",
        ),
    ] {
        let (_, _, msg, help) = find(&got, &format!("{what}: permission denied"));
        assert!(msg.starts_with(key), "{msg}");
        assert!(!help.contains("create"), "{msg}: {help}");
        assert!(
            help.contains("belongs to root") && help.contains("runs as nobody"),
            "{help}"
        );
    }
    // Missing: say so and how to fix it, naming the key that named the file.
    let (_, line, _, help) = find(
        &got,
        &format!("{}: it does not exist", cfg.join("extra.toml").display()),
    );
    assert_eq!(line, 1);
    assert!(help.contains("remove it from `include`"), "{help}");
    for key in [
        "repositories.usb.password-file",
        "repositories.usb.env-file",
    ] {
        let (_, _, msg, help) = find(&got, key);
        assert!(msg.ends_with("it does not exist"), "{msg}");
        assert!(help.starts_with("create it (mode 0600"), "{msg}: {help}");
    }
    assert_eq!(got.len(), 5, "{got:#?}");
    assert_no_rust_types(&format!("{got:?}"));
    assert!(!format!("{got:?}").contains("hunter2"));

    // --offline: the config's text only; the files it names are not looked at.
    let got = as_nobody(&["--json", "config", "check", "--offline"]);
    let msgs: Vec<&str> = got.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{got:#?}");
    // Both at their include (line 1), in the order written: conf.d, then extra.toml.
    assert!(
        msgs[0].contains("private.toml: permission denied"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("extra.toml: it does not exist"),
        "{msgs:?}"
    );
}
