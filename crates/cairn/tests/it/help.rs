//! Help that shows what each command uses: per-command `--help` without the repository
//! flags a command never reads, and `cairn --help` listing the commands in groups. The
//! hidden flags are still accepted, before or after the command, as in restic.

use crate::*;

/// The cairn binary with no repository, password or config from the environment.
fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env_remove("RESTIC_CACHE_DIR")
        .env_remove("CAIRN_CONFIG")
        .output()
        .expect("run cairn")
}

/// The help text printed for `args`, which must succeed.
fn help(args: &[&str]) -> String {
    ok(cairn(args))
}

/// Whether an option line of clap's help (`  -r, --repo <NAME|URL>  ...`) names `flag`.
fn has_flag(help: &str, flag: &str) -> bool {
    help.lines().any(|l| {
        l.split_whitespace()
            .take_while(|w| w.starts_with('-'))
            .any(|w| w.trim_end_matches(',') == flag)
    })
}

#[test]
fn config_status_and_history_help_leave_out_the_repository_flags_still_accepted_there() {
    for cmd in ["config", "status", "history"] {
        for form in [vec![cmd, "--help"], vec!["help", cmd], vec![cmd, "-h"]] {
            let text = help(&form);
            for hidden in [
                "--password-file",
                "--password-command",
                "-o",
                "--limit-upload",
                "--repo",
                "--no-lock",
                "--compression",
                "--cache-dir",
            ] {
                assert!(
                    !has_flag(&text, hidden),
                    "`cairn {}` shows {hidden}:\n{text}",
                    form.join(" ")
                );
            }
            assert!(
                has_flag(&text, "--config") && has_flag(&text, "--json"),
                "`cairn {}` lost --config or --json:\n{text}",
                form.join(" ")
            );
        }
    }
    // Down to a subcommand of a subcommand.
    let check = help(&["config", "check", "--help"]);
    assert!(has_flag(&check, "--offline") && !has_flag(&check, "--password-file"));

    // Hidden, not refused: restic's global flags and variables reach every command
    // (scripts, a shell exporting RESTIC_PASSWORD_FILE).
    let env = Env::new();
    let cfg = env.path("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[settings]\nstate-dir = \"{}\"\n",
            env.path("state").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "--no-lock",
            "status",
            "--json",
            "--no-cache",
            "-o",
            "s3.region=x",
        ])
        .arg("--password-file")
        .arg(env.path("pw"))
        .env("RESTIC_PASSWORD_FILE", env.path("no-such-file"))
        .env("RESTIC_COMPRESSION", "max")
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("run cairn");
    let json: serde_json::Value = serde_json::from_str(&ok(out)).expect("status --json");
    assert!(json.is_array() || json.is_object(), "{json}");
}

#[test]
fn backup_help_lists_every_repository_flag_after_its_own_options() {
    let text = help(&["backup", "--help"]);
    let global = text
        .find("Global options")
        .unwrap_or_else(|| panic!("no section of global options:\n{text}"));
    assert!(text[..global].contains("--exclude"), "{text}");
    for shown in [
        "--repo",
        "--password-file",
        "--password-command",
        "-o",
        "--limit-upload",
        "--limit-download",
        "--cache-dir",
        "--no-lock",
        "--retry-lock",
        "--compression",
        "--json",
        "--quiet",
        "--no-progress",
        "--config",
    ] {
        assert!(
            has_flag(&text[global..], shown),
            "backup --help lacks {shown} among the global options:\n{text}"
        );
    }
    // A read-only command shows the repository flags but not --compression.
    let snapshots = help(&["snapshots", "--help"]);
    assert!(has_flag(&snapshots, "--password-file") && !has_flag(&snapshots, "--compression"));

    // And they work before the command as after it, like restic's.
    let env = Env::new();
    ok(env.cairn(&["init"]));
    let repo = env.repo();
    let repo = repo.to_str().expect("utf-8 temp path");
    let pw = env.path("pw");
    let pw = pw.to_str().expect("utf-8 temp path");
    let before = cairn(&["-r", repo, "--password-file", pw, "snapshots", "--json"]);
    let after = cairn(&["snapshots", "-r", repo, "--password-file", pw, "--json"]);
    assert_eq!(ok(before).trim(), "[]");
    assert_eq!(ok(after).trim(), "[]");
    assert_eq!(ok(env.restic(&["snapshots", "--json"])).trim(), "[]");
}

#[test]
fn cairn_help_lists_every_command_once_in_its_group() {
    let text = help(&["--help"]);
    assert_eq!(
        text,
        help(&["help"]),
        "`cairn help` and `cairn --help` differ"
    );
    let heading = |h: &str| {
        text.lines()
            .position(|l| l.starts_with(h) && l.ends_with(':'))
            .unwrap_or_else(|| panic!("no group {h:?} in:\n{text}"))
    };
    let plans = heading("Plans");
    let repository = heading("Repository");
    let maintenance = heading("Maintenance");
    let setup = heading("Setup");
    let options = heading("Options");
    assert!(plans < repository && repository < maintenance && maintenance < setup);
    assert!(setup < options);
    assert!(!text.contains("Other:"), "unclassified commands:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let group_of = |cmd: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split_whitespace().next() == Some(cmd) && l.starts_with("  "))
            .map(|(i, _)| i)
            .collect()
    };
    let want = [
        (
            plans,
            repository,
            &[
                "run", "status", "history", "daemon", "web", "systemd", "config",
            ][..],
        ),
        (
            repository,
            maintenance,
            &[
                "init",
                "backup",
                "snapshots",
                "restore",
                "ls",
                "find",
                "diff",
                "dump",
                "cat",
                "stats",
                "tag",
                "key",
                "copy",
            ],
        ),
        (
            maintenance,
            setup,
            &["forget", "prune", "check", "repair", "rewrite", "unlock"],
        ),
        (setup, options, &["completions", "man", "import"]),
    ];
    let mut listed = 0;
    for (from, to, cmds) in want {
        for cmd in cmds {
            let at = group_of(cmd);
            assert!(
                at.len() == 1 && from < at[0] && at[0] < to,
                "{cmd} not listed once in its group:\n{text}"
            );
            // With its description.
            assert!(
                lines[at[0]].split_whitespace().count() > 1,
                "{}",
                lines[at[0]]
            );
        }
        listed += cmds.len();
    }
    // Nothing else between the first group and the options (blank lines apart).
    let entries = lines[plans..options]
        .iter()
        .filter(|l| l.starts_with("  "))
        .count();
    assert_eq!(
        entries, listed,
        "commands beyond the expected ones:\n{text}"
    );
    // `cairn help COMMAND` keeps working.
    let backup = help(&["help", "backup"]);
    assert!(
        backup.contains("Back up files or standard input"),
        "{backup}"
    );
}
