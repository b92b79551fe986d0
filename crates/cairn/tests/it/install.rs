//! Issue 16, point 1: cairn installs like a real tool. `cairn completions SHELL` gives
//! scripts the shells accept and that complete commands and options; `cairn man DIR` writes
//! a page per command that `man` renders with every option `--help` lists; the packaged
//! skeleton config is valid and the packaged unit passes `systemd-analyze verify`. (The
//! package itself is built, installed and purged by scripts/test-deb.sh.)
//!
//! Needs bash, zsh, fish, man (man-db, groff-base) and systemd-analyze: scripts/test.sh
//! installs them; outside CI a missing one skips its test with a message.

use crate::Env;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("CAIRN_CONFIG")
        .output()
        .expect("run cairn")
}

fn stdout_of(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Whether `tool` runs here; in CI it must (scripts/test.sh installs `package`).
fn have(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is needed in CI: apt-get install {package}"
        );
        eprintln!("SKIPPED: {tool} is missing (apt-get install {package})");
    }
    ok
}

fn script(env: &Env, shell: &str, name: &str) -> PathBuf {
    let path = env.path(name);
    std::fs::write(&path, stdout_of(cairn(&["completions", shell]))).unwrap();
    path
}

/// `bash -c` with the completion script sourced, printing what completing `words` (the
/// last one being completed) offers, one per line.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let code = format!(
        "source \"$1\" || exit 1\ncomplete -p cairn >/dev/null || exit 2\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{line}\"; COMP_POINT=${{#COMP_LINE}}\n\
         _cairn cairn '{cur}' '{prev}' || exit 3\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        cword = words.len() - 1,
        line = words.join(" "),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["-c", &code, "_"])
        .arg(script)
        .output()
        .expect("bash");
    stdout_of(out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_is_valid_and_completes_commands_subcommands_and_options() {
    if !have("bash", "bash") {
        return;
    }
    let env = Env::new();
    let s = script(&env, "bash", "cairn.bash");
    let syntax = Command::new("bash").arg("-n").arg(&s).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {syntax:?}");
    let got = bash_complete(&s, &["cairn", "sn"]);
    assert_eq!(got, ["snapshots"], "cairn sn<TAB>");
    let got = bash_complete(&s, &["cairn", ""]);
    for cmd in ["backup", "restore", "run", "daemon", "completions", "man"] {
        assert!(got.iter().any(|w| w == cmd), "{cmd} not in {got:?}");
    }
    assert!(!got.iter().any(|w| w.is_empty()), "{got:?}");
    let got = bash_complete(&s, &["cairn", "backup", "--exclude-i"]);
    assert!(got.iter().any(|w| w == "--exclude-if-present"), "{got:?}");
    let got = bash_complete(&s, &["cairn", "key", ""]);
    for sub in ["add", "list", "remove", "passwd"] {
        assert!(got.iter().any(|w| w == sub), "key {sub} not in {got:?}");
    }
    let got = bash_complete(&s, &["cairn", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(got.iter().any(|w| w == shell), "{shell} not in {got:?}");
    }
}

#[test]
fn zsh_and_fish_completions_are_valid_and_name_the_commands() {
    let env = Env::new();
    if have("zsh", "zsh") {
        let s = script(&env, "zsh", "_cairn");
        let text = std::fs::read_to_string(&s).unwrap();
        assert!(text.starts_with("#compdef cairn"), "{}", &text[..80]);
        for cmd in ["snapshots", "backup", "restore", "daemon"] {
            assert!(text.contains(cmd), "zsh script lacks {cmd}");
        }
        let syntax = Command::new("zsh").arg("-n").arg(&s).output().unwrap();
        assert!(syntax.status.success(), "zsh -n: {syntax:?}");
    }
    if have("fish", "fish") {
        let s = script(&env, "fish", "cairn.fish");
        let syntax = Command::new("fish")
            .arg("--no-execute")
            .arg(&s)
            .output()
            .unwrap();
        assert!(syntax.status.success(), "fish --no-execute: {syntax:?}");
        // fish itself completing, with the script loaded.
        let code = format!(
            "source '{}'; complete -C 'cairn sn'; complete -C 'cairn backup --exclude-i'",
            s.display()
        );
        let out = Command::new("fish")
            .args(["--no-config", "-c", &code])
            .env("HOME", env.path(""))
            .output()
            .unwrap();
        let got = stdout_of(out);
        let firsts: Vec<&str> = got
            .lines()
            .map(|l| l.split('\t').next().unwrap_or(""))
            .collect();
        assert!(firsts.contains(&"snapshots"), "{got}");
        assert!(firsts.contains(&"--exclude-if-present"), "{got}");
    }
}

#[test]
fn a_reader_closing_the_pipe_early_is_neither_a_panic_nor_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // A reader that went away is no error, as for a program killed by SIGPIPE.
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// The commands under `path` (`[]` for cairn itself), as `--help` lists them.
fn subcommands(path: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = stdout_of(cairn(&args));
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        let heading = !line.starts_with(' ') && line.ends_with(':');
        if heading {
            // The root's groups (Plans, Repository, ...) or a command's "Commands:".
            in_commands = !line.starts_with("Options")
                && !line.starts_with("Global options")
                && !line.starts_with("Arguments")
                && !line.starts_with("Usage");
            continue;
        }
        if line.trim().is_empty() && !path.is_empty() {
            in_commands = false;
        }
        if in_commands && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" && !name.starts_with('-') {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// The long options `--help` of `path` lists.
fn long_options(path: &[String]) -> BTreeSet<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = stdout_of(cairn(&args));
    help.lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t
                .strip_prefix("-")
                .filter(|_| !t.starts_with("--"))
                .map_or(t, |rest| {
                    rest.split_once(", ").map_or(rest, |(_, long)| long)
                });
            let word = t.strip_prefix("--")?;
            let name: String = word
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty() && name != "help" && name != "version").then(|| format!("--{name}"))
        })
        .collect()
}

/// `man -l FILE` as plain text (overstrikes removed).
fn render(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "250")
        .env("LC_ALL", "C")
        .output()
        .expect("man");
    let text = stdout_of(out);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn man_pages_render_one_per_command_with_every_option_help_lists() {
    if !have("man", "man-db groff-base") {
        return;
    }
    let env = Env::new();
    let dir = env.path("man");
    stdout_of(cairn(&["man", dir.to_str().unwrap()]));
    // Every command and subcommand, found through --help alone.
    let mut paths: Vec<Vec<String>> = vec![vec![]];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        for sub in subcommands(&path) {
            let mut p = path.clone();
            p.push(sub);
            paths.push(p);
        }
        i += 1;
    }
    assert!(paths.len() > 30, "{paths:?}");
    let written: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = paths
        .iter()
        .map(|p| {
            std::iter::once("cairn".to_string())
                .chain(p.iter().cloned())
                .collect::<Vec<_>>()
                .join("-")
                + ".1"
        })
        .collect();
    assert_eq!(written, expected, "pages written vs commands of --help");
    for path in &paths {
        let name = std::iter::once("cairn".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let text = render(&dir.join(format!("{name}.1")));
        assert!(text.contains("SYNOPSIS"), "{name}: {text}");
        for opt in long_options(path) {
            assert!(text.contains(&opt), "man {name} lacks {opt}:\n{text}");
        }
        for sub in subcommands(path) {
            assert!(
                text.contains(&format!("{name}-{sub}(1)")),
                "man {name} does not refer to {name}-{sub}(1)"
            );
        }
    }
    let root = render(&dir.join("cairn.1"));
    for section in [
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "/etc/cairn/cairn.toml",
    ] {
        assert!(root.contains(section), "cairn.1 lacks {section}");
    }
    let backup = render(&dir.join("cairn-backup.1"));
    assert!(backup.contains("--password-file") && backup.contains("--exclude"));
    // A page shows the global flags its command uses, like its --help: no --password-file
    // for `cairn status`.
    let status = render(&dir.join("cairn-status.1"));
    assert!(
        status.contains("--config") && !status.contains("--password-file"),
        "{status}"
    );
}

fn debian(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../debian")
        .join(file)
}

#[test]
fn packaged_skeleton_config_is_valid_as_shipped_and_with_every_example_uncommented() {
    let env = Env::new();
    let shipped = std::fs::read_to_string(debian("cairn.toml")).unwrap();
    let out = cairn(&[
        "--config",
        debian("cairn.toml").to_str().unwrap(),
        "config",
        "check",
        "--offline",
    ]);
    stdout_of(out);
    // Every commented example (`# key = ...`, `# [table]`) uncommented, its files here.
    let etc = env.path("etc");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    let mut text = String::new();
    for line in shipped.lines() {
        let code = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        });
        text.push_str(code.unwrap_or(line));
        text.push('\n');
    }
    let text = text.replace("/etc/cairn/", &format!("{}/", etc.display()));
    for f in ["nas.pass", "nas.env", "admin.hash"] {
        std::fs::write(etc.join(f), "x\n").unwrap();
    }
    let config = etc.join("cairn.toml");
    std::fs::write(&config, &text).unwrap();
    let got = stdout_of(cairn(&[
        "--config",
        config.to_str().unwrap(),
        "config",
        "check",
        "--offline",
    ]));
    assert!(
        got.contains("1 repositories, 1 sources, 1 plans"),
        "{got}\n{text}"
    );
}

#[test]
fn packaged_unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let env = Env::new();
    let unit = std::fs::read_to_string(debian("cairn.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/bin/cairn --config /etc/cairn/cairn.toml daemon\n"));
    for hardening in [
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "User=cairn",
        "AmbientCapabilities=CAP_DAC_READ_SEARCH",
    ] {
        assert!(unit.contains(&format!("\n{hardening}\n")), "{hardening}");
    }
    // The binary under test in place of /usr/bin/cairn (verify checks it exists), and a
    // user that exists here in place of `cairn`.
    let here = unit
        .replace("/usr/bin/cairn", env!("CARGO_BIN_EXE_cairn"))
        .replace("User=cairn", "User=root")
        .replace("Group=cairn", "Group=root");
    let path = env.path("cairn.service");
    std::fs::write(&path, here).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about: Vec<&str> = stderr.lines().filter(|l| l.contains("cairn")).collect();
    assert!(
        out.status.success() && about.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
