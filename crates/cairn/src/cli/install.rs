//! `cairn completions SHELL` and `cairn man DIR`: shell completions and man pages, both
//! generated from the CLI definition itself ([`super::help::command`], the command `cairn
//! --help` shows), so they list exactly the commands and options the parser accepts and
//! hide, per command, the global flags its help hides.
//!
//! The Debian package (scripts/build-deb.sh) installs what these write; users of
//! `cargo install` run them by hand. This module only renders text: it must not read the
//! config or open a repository.

use super::GlobalOpts;
use anyhow::{Context, Result};
use clap_mangen::roff::{bold, italic, roman, Roff};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing; existing pages are replaced)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `cairn completions SHELL`: the completion script on stdout.
pub fn completions(a: &CompletionsArgs) -> Result<u8> {
    let script = completion_script(a.shell);
    let mut out = std::io::stdout().lock();
    // Written at once and checked: `cairn completions bash | head` must not panic, and a
    // reader that stops early is no error (as for a program killed by SIGPIPE).
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(super::exit::OK),
        r => {
            r.context("cannot write the completion script to standard output")?;
            Ok(super::exit::OK)
        }
    }
}

/// The completion script of `shell` for `cairn`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = super::help::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cairn", &mut buf);
    buf
}

/// `cairn man DIR`: `cairn.1` and one page per subcommand (`cairn-backup.1`,
/// `cairn-key-add.1`, ...).
pub fn man(g: &GlobalOpts, a: &ManArgs) -> Result<u8> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create the directory {}", a.dir.display()))?;
    let pages = man_pages()?;
    for (name, text) in &pages {
        let path = a.dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write the man page {}", path.display()))?;
    }
    g.say(format_args!(
        "wrote {} man pages to {} (read one with `man -l {}`)",
        pages.len(),
        a.dir.display(),
        a.dir.join("cairn.1").display()
    ));
    Ok(super::exit::OK)
}

/// Every page: its file name and its roff text, `cairn.1` first.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = hide_help_commands(super::help::command());
    let mut pages = Vec::new();
    page(&cmd, true, &mut pages)?;
    Ok(pages)
}

/// clap's `help` subcommands hidden, down the tree: they get no page and no mention in
/// the SUBCOMMANDS of their parent's (`cairn help X` is `man cairn-X`).
fn hide_help_commands(cmd: clap::Command) -> clap::Command {
    let has_help = cmd.get_subcommands().any(|s| s.get_name() == "help");
    let cmd = if has_help {
        cmd.mut_subcommand("help", |h| h.hide(true))
    } else {
        cmd
    };
    cmd.mut_subcommands(hide_help_commands)
}

/// The page of `cmd` and those of its visible subcommands.
fn page(cmd: &clap::Command, root: bool, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let version = cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("cairn {version}"))
        .manual("cairn manual");
    let mut text = Vec::new();
    man.render(&mut text)
        .with_context(|| format!("cannot render the man page of {}", man.get_filename()))?;
    let extra = if root { root_sections() } else { see_also(cmd) };
    text.extend_from_slice(extra.render().as_bytes());
    pages.push((man.get_filename(), text));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, false, pages)?;
    }
    Ok(())
}

/// SEE ALSO of a subcommand's page: its parent's page and `cairn(1)`.
fn see_also(cmd: &clap::Command) -> Roff {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut refs = vec!["cairn".to_string()];
    if let Some((parent, _)) = name.rsplit_once('-') {
        if parent != "cairn" {
            refs.push(parent.to_string());
        }
    }
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, name) in refs.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(name.as_str()));
        line.push(roman("(1)"));
    }
    r.text(line);
    r
}

/// What `cairn.1` says beyond the options: files, environment, exit codes.
fn root_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["FILES"]);
    let files: &[(&str, &str)] = &[
        (
            "/etc/cairn/cairn.toml",
            "The configuration when run as root (repositories, sources, plans, settings); \
             otherwise ~/.config/cairn/cairn.toml. Checked with cairn config check.",
        ),
        (
            "/etc/cairn/conf.d/*.toml",
            "Fragments next to the main file, one per service, each defining its own sources, \
             repositories or plans.",
        ),
        (
            "/var/lib/cairn",
            "The state directory when run as root (run history history.db, plan locks); \
             otherwise ~/.local/state/cairn. [settings] state-dir overrides it.",
        ),
        (
            "~/.cache/cairn",
            "The local cache of remote repositories (CAIRN_CACHE_DIR, --cache-dir).",
        ),
    ];
    for (path, what) in files {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*what)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    let vars: &[(&str, &str)] = &[
        (
            "RESTIC_REPOSITORY, CAIRN_REPOSITORY",
            "The repository, as -r gives it.",
        ),
        (
            "RESTIC_PASSWORD_FILE, RESTIC_PASSWORD_COMMAND, RESTIC_PASSWORD",
            "The repository password, as restic reads it (CAIRN_* equivalents also work).",
        ),
        (
            "CAIRN_CONFIG",
            "The configuration file, as --config gives it.",
        ),
        (
            "CAIRN_CACHE_DIR, RESTIC_CACHE_DIR",
            "The cache directory of remote repositories.",
        ),
    ];
    for (name, what) in vars {
        r.control("TP", []);
        r.text([bold(*name)]);
        r.text([roman(*what)]);
    }
    r.control("SH", ["EXIT STATUS"]);
    let codes: &[(&str, &str)] = &[
        ("0", "Success."),
        ("1", "Failure."),
        (
            "3",
            "Incomplete: a backup could not read some files, a restore left some out.",
        ),
        ("10", "No repository at the given location."),
        ("11", "The repository, or the plan, is locked."),
        ("12", "Wrong password."),
        ("130", "cairn run was interrupted."),
    ];
    for (code, what) in codes {
        r.control("TP", []);
        r.text([bold(*code)]);
        r.text([roman(*what)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([
        roman("cairn COMMAND --help, "),
        bold("restic"),
        roman("(1), and the README of cairn."),
    ]);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_has_a_page_and_no_help_page_is_written() {
        let names: Vec<String> = man_pages().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "cairn.1");
        for n in ["cairn-backup.1", "cairn-key-add.1", "cairn-config-check.1"] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::Elvish,
            clap_complete::Shell::PowerShell,
        ] {
            let s = String::from_utf8(completion_script(shell)).unwrap();
            assert!(
                s.contains("snapshots") && s.contains("completions"),
                "{shell}"
            );
        }
    }
}
