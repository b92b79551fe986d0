//! What `--help` shows: each command's help lists only the global flags that command
//! uses, and `cairn --help` / `cairn help` list the commands in three groups.
//!
//! One table ([`COMMANDS`]) says, for every subcommand, its group and the kinds of global
//! flags it reads. The flags stay global for parsing — `cairn -r X snapshots` and
//! `cairn snapshots -r X` both work, as in restic — and a flag a command does not use is
//! still accepted there, only hidden from its help: the RESTIC_* variables (password file,
//! cache dir, compression) fill those flags for every command, and scripts written for
//! restic pass `--no-cache` or `-o` everywhere; refusing them would break `cairn status` in
//! a shell that exports RESTIC_PASSWORD_FILE.
//!
//! This module must not change what a command line means: it only hides and orders.

use super::Cli;
use clap::builder::StyledStr;
use clap::{CommandFactory, FromArgMatches};
use std::fmt::Write as _;

/// The groups of `cairn --help`, in their order there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Commands driven by the config: plans, their state, the daemon and the web UI.
    Plans,
    /// Restic-style commands that make, read or change snapshots.
    Repository,
    /// Commands that clean, verify or mend a repository.
    Maintenance,
    /// Installing cairn itself: shell completions, man pages; importing another tool's config.
    Setup,
}

impl Group {
    const ALL: [Group; 4] = [
        Group::Plans,
        Group::Repository,
        Group::Maintenance,
        Group::Setup,
    ];

    fn heading(self) -> &'static str {
        match self {
            Group::Plans => "Plans (from the config)",
            Group::Repository => "Repository",
            Group::Maintenance => "Maintenance",
            Group::Setup => "Setup",
        }
    }
}

/// The global flags ([`super::GlobalOpts`]), by what they are for; a command's help shows
/// the kinds it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flags {
    /// `-r/--repo`
    Repository,
    /// `--password-file`, `--password-command`
    Password,
    /// `-o`, upload/download limits, the cache, retry and timeouts (through `-o`)
    Backend,
    /// `--no-lock`, `--retry-lock`
    Locking,
    /// `--compression`, `--pack-size` (for commands that write data)
    Compression,
    /// `--json`
    Json,
    /// `-q/--quiet`
    Quiet,
    /// `--no-progress` (for commands that draw a progress bar)
    Progress,
    /// `--config` (plans, and `-r NAME` / `--plan NAME` of the restic-style commands)
    Config,
}

impl Flags {
    pub const ALL: [Flags; 9] = [
        Flags::Repository,
        Flags::Password,
        Flags::Backend,
        Flags::Locking,
        Flags::Compression,
        Flags::Json,
        Flags::Quiet,
        Flags::Progress,
        Flags::Config,
    ];

    /// The clap ids (field names of `GlobalOpts`) of this kind of flag.
    pub fn ids(self) -> &'static [&'static str] {
        match self {
            Flags::Repository => &["repo"],
            Flags::Password => &["password_file", "password_command"],
            Flags::Backend => &[
                "options",
                "limit_upload",
                "limit_download",
                "cache_dir",
                "no_cache",
            ],
            Flags::Locking => &["no_lock", "retry_lock"],
            Flags::Compression => &["compression", "pack_size"],
            Flags::Json => &["json"],
            Flags::Quiet => &["quiet"],
            Flags::Progress => &["no_progress"],
            Flags::Config => &["config"],
        }
    }
}

/// One subcommand: its group in `cairn --help` and the global flags it reads.
pub struct Entry {
    pub name: &'static str,
    pub group: Group,
    pub flags: &'static [Flags],
}

use Flags::{
    Backend as B, Compression as Z, Config as C, Json as J, Locking as L, Password as P,
    Progress as G, Quiet as Q, Repository as R,
};

/// Every subcommand, in the order of `cairn --help` within its group. Decided by what each
/// `cli/<cmd>.rs` reads of `GlobalOpts` (`g.open()` is repository, password, backend and
/// compression; `g.lock()` locking and quiet (its retry message); `g.say()` quiet; `g.progress()` all three output
/// flags); the restic-style commands all read the config for `-r NAME`. A command missing
/// here shows every flag and is listed under "Other" (and a unit test fails).
pub const COMMANDS: &[Entry] = &[
    // Plans: the config, the history and the state directory; no repository flags (each
    // step's child gets its repository from the config).
    e("run", Group::Plans, &[C, J, Q]),
    e("status", Group::Plans, &[C, J, Q]),
    e("history", Group::Plans, &[C, J, Q]),
    e("config", Group::Plans, &[C, J, Q]),
    e("daemon", Group::Plans, &[C, Q]),
    e("systemd", Group::Plans, &[C, J, Q]),
    e("web", Group::Plans, &[C, Q]),
    // Repository: read-only commands take no --compression.
    e("init", Group::Repository, &[R, P, B, J, Q, C]),
    e("backup", Group::Repository, &[R, P, B, L, Z, J, Q, G, C]),
    e("snapshots", Group::Repository, &[R, P, B, J, C]),
    e("restore", Group::Repository, &[R, P, B, L, J, Q, G, C]),
    e("ls", Group::Repository, &[R, P, B, L, J, Q, C]),
    e("find", Group::Repository, &[R, P, B, L, J, Q, C]),
    e("diff", Group::Repository, &[R, P, B, L, J, Q, C]),
    e("dump", Group::Repository, &[R, P, B, L, Q, C]),
    e("cat", Group::Repository, &[R, P, B, C]),
    e("stats", Group::Repository, &[R, P, B, L, J, Q, C]),
    e("tag", Group::Repository, &[R, P, B, L, Z, J, Q, C]),
    e("key", Group::Repository, &[R, P, B, L, J, Q, C]),
    e("copy", Group::Repository, &[R, P, B, L, Z, J, Q, C]),
    // Maintenance.
    e("forget", Group::Maintenance, &[R, P, B, L, Z, J, Q, C]),
    e("prune", Group::Maintenance, &[R, P, B, L, Z, J, Q, C]),
    e("check", Group::Maintenance, &[R, P, B, L, J, Q, G, C]),
    e("repair", Group::Maintenance, &[R, P, B, L, Z, J, Q, C]),
    e("rewrite", Group::Maintenance, &[R, P, B, L, Z, J, Q, C]),
    e("unlock", Group::Maintenance, &[R, P, B, J, Q, C]),
    // Setup: generated from the CLI itself; no repository, no config.
    e("completions", Group::Setup, &[]),
    e("man", Group::Setup, &[Q]),
    e("import", Group::Setup, &[J]),
];

const fn e(name: &'static str, group: Group, flags: &'static [Flags]) -> Entry {
    Entry { name, group, flags }
}

fn entry(name: &str) -> Option<&'static Entry> {
    COMMANDS.iter().find(|e| e.name == name)
}

/// clap's own `help` subcommand: listed apart, not in the table.
const HELP: &str = "help";

/// The parsed command line, with the help this module describes.
pub fn parse() -> Cli {
    let mut cmd = command();
    let matches = cmd.clone().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// `Cli`'s command with per-command flags hidden and the grouped command list.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    // Propagates the global flags into every subcommand, so they can be hidden there.
    cmd.build();
    let cmd = hide_unused(cmd);
    let template = grouped_template(&cmd);
    cmd.help_template(template)
}

/// Hides, in each known subcommand and its own subcommands, the global flags it does not
/// use. An unknown subcommand keeps them all.
/// The global flags it shows come after the command's own options, under their own heading.
fn hide_unused(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|sub| {
        let unused: Vec<&str> = match entry(sub.get_name()) {
            Some(entry) => Flags::ALL
                .iter()
                .filter(|f| !entry.flags.contains(f))
                .flat_map(|f| f.ids().iter().copied())
                .collect(),
            None => Vec::new(),
        };
        hide_in_tree(sub, &unused)
    })
}

/// The heading of the global flags in a command's help.
const GLOBAL_HEADING: &str = "Global options (also before the command)";

fn hide_in_tree(cmd: clap::Command, ids: &[&str]) -> clap::Command {
    cmd.mut_args(|a| {
        if ids.contains(&a.get_id().as_str()) {
            a.hide(true)
        } else if a.is_global_set() {
            a.help_heading(GLOBAL_HEADING)
        } else {
            a
        }
    })
    .mut_subcommands(|sub| hide_in_tree(sub, ids))
}

/// The root help: usage, then the commands by group (names and `about` texts from the
/// command itself), then the options.
fn grouped_template(cmd: &clap::Command) -> StyledStr {
    let styles = cmd.get_styles();
    let (header, literal) = (styles.get_header(), styles.get_literal());
    let visible: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    let width = visible
        .iter()
        .map(|s| s.get_name().len())
        .max()
        .unwrap_or(0);
    let mut groups: Vec<(&str, Vec<&clap::Command>)> = Group::ALL
        .iter()
        .map(|g| {
            let members = COMMANDS
                .iter()
                .filter(|e| e.group == *g)
                .filter_map(|e| visible.iter().find(|s| s.get_name() == e.name).copied())
                .collect();
            (g.heading(), members)
        })
        .collect();
    let other: Vec<&clap::Command> = visible
        .iter()
        .filter(|s| s.get_name() != HELP && entry(s.get_name()).is_none())
        .copied()
        .collect();
    groups.push(("Other", other));
    let mut t = StyledStr::new();
    let _ = write!(
        t,
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n"
    );
    for (heading, members) in groups.iter().filter(|(_, m)| !m.is_empty()) {
        let _ = write!(
            t,
            "\n{}{heading}:{}\n",
            header.render(),
            header.render_reset()
        );
        for s in members {
            let name = s.get_name();
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(
                t,
                "  {}{name}{}{:pad$}  {about}",
                literal.render(),
                literal.render_reset(),
                "",
                pad = width - name.len()
            );
        }
    }
    let _ = write!(
        t,
        "\nSee `cairn help COMMAND` (or `cairn COMMAND --help`) for a command's options.\n\n{}Options:{}\n{{options}}{{after-help}}",
        header.render(),
        header.render_reset()
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_names(cmd: &clap::Command) -> Vec<String> {
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != HELP)
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn every_visible_command_is_in_exactly_one_group_and_the_table_names_only_commands() {
        let cmd = Cli::command();
        let names = visible_names(&cmd);
        for n in &names {
            let count = COMMANDS.iter().filter(|e| e.name == n).count();
            assert_eq!(
                count, 1,
                "command `{n}` is in {count} entries of cli/help.rs COMMANDS: give it exactly one (its group and the global flags it uses)"
            );
        }
        for e in COMMANDS {
            assert!(
                names.iter().any(|n| n == e.name),
                "cli/help.rs COMMANDS names `{}`, which is not a command",
                e.name
            );
        }
    }

    #[test]
    fn every_global_flag_is_of_exactly_one_kind() {
        let cmd = Cli::command();
        let globals: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().as_str())
            .collect();
        for id in &globals {
            let kinds = Flags::ALL.iter().filter(|f| f.ids().contains(id)).count();
            assert_eq!(
                kinds, 1,
                "global flag `{id}` is of {kinds} kinds in cli/help.rs Flags::ids: give it one"
            );
        }
        for f in Flags::ALL {
            for id in f.ids() {
                assert!(
                    globals.contains(id),
                    "Flags::{f:?} names `{id}`, no global flag"
                );
            }
        }
    }

    fn help_of(cmd: &mut clap::Command, path: &[&str]) -> String {
        let mut c = cmd;
        for p in path {
            c = c.find_subcommand_mut(p).expect("subcommand");
        }
        c.render_help().to_string()
    }

    #[test]
    fn a_command_shows_the_flags_of_its_kinds_and_hides_the_others_down_its_subcommands() {
        let mut cmd = command();
        let config = help_of(&mut cmd, &["config"]);
        assert!(
            config.contains("--config") && config.contains("--json"),
            "{config}"
        );
        for hidden in [
            "--password-file",
            "--option",
            "--limit-upload",
            "--repo",
            "--no-lock",
        ] {
            assert!(!config.contains(hidden), "{hidden} in:\n{config}");
        }
        let check = help_of(&mut cmd, &["config", "check"]);
        assert!(!check.contains("--password-file"), "{check}");
        let backup = help_of(&mut cmd, &["backup"]);
        for shown in [
            "--repo",
            "--password-file",
            "--option",
            "--limit-upload",
            "--no-lock",
            "--compression",
            "--no-progress",
        ] {
            assert!(backup.contains(shown), "{shown} not in:\n{backup}");
        }
        let global = backup.find(GLOBAL_HEADING).expect(&backup);
        assert!(
            backup.find("--exclude").is_some_and(|at| at < global),
            "{backup}"
        );
        assert!(
            backup.find("--password-file").is_some_and(|at| at > global),
            "{backup}"
        );
        let snapshots = help_of(&mut cmd, &["snapshots"]);
        assert!(!snapshots.contains("--compression") && !snapshots.contains("--no-progress"));
        let key_add = help_of(&mut cmd, &["key", "add"]);
        assert!(key_add.contains("--password-file") && !key_add.contains("--compression"));
    }

    #[test]
    fn a_command_missing_from_the_table_shows_every_flag_and_is_listed_under_other() {
        let cmd = Cli::command().subcommand(clap::Command::new("frobnicate").about("Frobs"));
        let mut cmd = {
            let mut c = cmd;
            c.build();
            let c = hide_unused(c);
            let t = grouped_template(&c);
            c.help_template(t)
        };
        let frob = help_of(&mut cmd, &["frobnicate"]);
        assert!(
            frob.contains("--password-file") && frob.contains("--limit-upload"),
            "{frob}"
        );
        let root = cmd.render_help().to_string();
        let other = root.find("Other:").expect(&root);
        assert!(
            root[other..].contains("frobnicate") && root.contains("Frobs"),
            "{root}"
        );
    }

    #[test]
    fn hidden_flags_are_still_accepted_before_and_after_the_command() {
        let cmd = command();
        for argv in [
            &["cairn", "--password-file", "f", "status"][..],
            &[
                "cairn",
                "status",
                "--password-file",
                "f",
                "-o",
                "s3.region=x",
            ],
            &["cairn", "-r", "x", "snapshots"],
            &["cairn", "snapshots", "-r", "x", "--compression", "max"],
            &["cairn", "config", "check", "--no-cache", "--offline"],
        ] {
            let m = cmd
                .clone()
                .try_get_matches_from(argv)
                .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            if argv.contains(&"-r") {
                assert_eq!(cli.global.repo.as_deref(), Some("x"));
            }
            if argv.contains(&"--password-file") {
                assert_eq!(cli.global.password_file.as_deref(), Some("f"));
            }
        }
    }
}
