//! The command line: global options shared with restic, and one module per verb.

mod backup;
mod cat;
mod check;
pub mod config;
mod copy;
mod diff;
mod dump;
mod fatal;
mod find;
mod forget;
mod from_repo;
pub mod help;
mod import;
mod init;
mod install;
mod key;
mod ls;
mod plan;
mod progress;
mod prune;
mod repair;
mod restore;
mod rewrite;
pub(crate) use crate::signals;
mod snapshots;
mod stats;
mod tag;
mod unlock;
mod web;

use crate::history::Category;
use crate::ops::repos::{unreadable_hint, Origin, Role};
use crate::run::protocol::categorized;
use anyhow::{Context, Result};
use cairn_repo::backend;
use cairn_repo::backend::Backend;
use cairn_repo::repository::{Compression, Repository};
use cairn_repo::Kind;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit codes, as restic uses them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// Backup made a snapshot but some files could not be read; restore left some out.
    pub const INCOMPLETE: u8 = 3;
    pub const NO_REPOSITORY: u8 = 10;
    pub const LOCKED: u8 = 11;
    pub const WRONG_PASSWORD: u8 = 12;
}

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Encrypted, deduplicated backups in the restic repository format"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Repository: the NAME of a repository of the config (its URL, password, env-file,
    /// options), or a path, local:PATH, sftp:[user@]host:PATH, s3:[https://]host/bucket[/prefix],
    /// b2:bucket:path, rest:URL, rclone:remote:path. A bare word that is a configured name is
    /// that repository (write ./NAME for the directory); any other bare word is a path, like
    /// restic, if it exists or there is no config; else it is an error listing the names.
    /// Also CAIRN_REPOSITORY; RESTIC_REPOSITORY is a name only if no such path exists
    #[arg(
        short = 'r',
        long = "repo",
        global = true,
        env = "RESTIC_REPOSITORY",
        value_name = "NAME|URL"
    )]
    pub repo: Option<String>,
    /// File holding the repository password
    #[arg(long, global = true, env = "RESTIC_PASSWORD_FILE")]
    pub password_file: Option<String>,
    /// Command printing the repository password
    #[arg(long, global = true, env = "RESTIC_PASSWORD_COMMAND")]
    pub password_command: Option<String>,
    /// Print machine-readable JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Compression for new data: auto, off or max (format version 2 only)
    #[arg(
        long,
        global = true,
        env = "RESTIC_COMPRESSION",
        default_value = "auto"
    )]
    pub compression: String,
    /// Target size of new pack files in MiB, 4 to 128 (default 16)
    #[arg(long, global = true, env = "RESTIC_PACK_SIZE", value_name = "MiB")]
    pub pack_size: Option<u32>,
    /// Don't show progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Don't lock the repository (only for read-only access to read-only storage)
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// If the repository is locked, retry for up to this long (e.g. 30s, 5m, 1h)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_lock: Option<std::time::Duration>,
    /// Backend option KEY=VALUE, repeatable (s3.region, s3.endpoints, s3.bucket-lookup,
    /// sftp.command, sftp.args, rclone.program, rclone.args, TYPE.connections,
    /// retry.max-time, timeout.io, timeout.connect)
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Limit uploads to this many KiB/s
    #[arg(long, global = true, value_name = "KiB/s")]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s
    #[arg(long, global = true, value_name = "KiB/s")]
    pub limit_download: Option<u64>,
    /// Directory of the local cache of remote repositories (default ~/.cache/cairn;
    /// also CAIRN_CACHE_DIR)
    #[arg(long, global = true, env = "RESTIC_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Don't use a local cache for remote repositories
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Configuration file for plans (default /etc/cairn/cairn.toml as root, else
    /// ~/.config/cairn/cairn.toml)
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// The configured repository `-r NAME` stands for, once [`GlobalOpts::resolve_repository`]
    /// found it: its password source, env-file, options, limits and cache directory apply
    /// unless a flag gives them.
    #[arg(skip)]
    pub named: Option<crate::ops::repos::Resolved>,
}

pub use crate::units::{format_bytes, parse_duration};
pub use from_repo::FromRepo;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files or standard input
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// Restore a snapshot; with --plan NAME, the plan's disaster-recovery runbook (restore
    /// hooks, every source to its place, database dumps with --load-dumps, a report)
    Restore(restore::Args),
    /// Check the repository for errors
    Check(check::Args),
    /// Print internal objects (config, snapshot, index, key, blob)
    Cat(cat::Args),
    /// Remove stale locks (or all with --remove-all)
    Unlock(unlock::Args),
    /// Remove data no snapshot references
    Prune(prune::Args),
    /// Copy snapshots from another repository
    Copy(copy::Args),
    /// Remove snapshots by a retention policy or by id
    Forget(forget::Args),
    /// List files in a snapshot
    Ls(ls::Args),
    /// Find files across snapshots
    Find(find::Args),
    /// Print a file, or a directory as tar, from a snapshot
    Dump(dump::Args),
    /// Show what changed between two snapshots
    Diff(diff::Args),
    /// Sizes and counts of snapshots
    Stats(stats::Args),
    /// Add, remove or set snapshot tags
    Tag(tag::Args),
    /// Manage keys (passwords)
    Key(key::Args),
    /// Repair a damaged index or damaged snapshots
    Repair(repair::Args),
    /// Store snapshots again without excluded paths
    Rewrite(rewrite::Args),
    /// Check, show or describe the configuration (cairn.toml and conf.d/)
    Config(config::Args),
    /// Run plans now: backup, retention, prune and check when due, with hooks
    Run(plan::RunArgs),
    /// Each plan: last run, result, duration, added bytes, next run, last check
    Status(plan::StatusArgs),
    /// Past runs of plans, with their steps and logs
    History(plan::HistoryArgs),
    /// Run plans on their schedules (with /metrics if configured), until stopped
    Daemon(plan::DaemonArgs),
    /// Write systemd units (a .service and a .timer per scheduled plan)
    Systemd(plan::SystemdArgs),
    /// Serve the web UI without running schedules ([settings.web] in the config)
    Web(web::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(install::CompletionsArgs),
    /// Write the man pages (cairn.1 and one per command) to a directory
    Man(install::ManArgs),
    /// Write a cairn config from an autorestic, Backrest or resticprofile config
    Import(import::Args),
}

/// An error with the exit code it should produce.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

pub fn run() -> ExitCode {
    let mut cli = help::parse();
    let plans = matches!(
        cli.command,
        Command::Config(_)
            | Command::Run(_)
            | Command::Status(_)
            | Command::History(_)
            | Command::Daemon(_)
            | Command::Systemd(_)
            | Command::Web(_)
            | Command::Completions(_)
            | Command::Man(_)
    ) || matches!(&cli.command, Command::Restore(a) if a.plan.plan.is_some());
    if !plans {
        if let Err(e) = signals::release_locks_on_stop() {
            eprintln!("warning: cannot handle Ctrl-C cleanly: {e}");
        }
    }
    // Restic-style commands: `-r NAME` becomes the configured repository first.
    let resolved = if plans {
        Ok(())
    } else {
        cli.global.resolve_repository()
    };
    // scrypt's tables: light commands derive the key in 16 MiB (restic's key files: 1.75x
    // the work), those whose own work needs as much memory anyway in 64 MiB (two whole
    // tables at once: the key in 3/5 of the time of one lane after another). A restore
    // peaks at ~67 MiB of its own, so 64 MiB adds nothing to its peak and saves ~0.1 s.
    if matches!(
        cli.command,
        Command::Backup(_)
            | Command::Restore(_)
            | Command::Check(_)
            | Command::Prune(_)
            | Command::Copy(_)
            | Command::Rewrite(_)
            | Command::Run(_)
            | Command::Daemon(_)
    ) {
        cairn_repo::kdf::set_memory_budget(cairn_repo::kdf::FAST_BUDGET);
    }
    let result = resolved.and_then(|()| match &cli.command {
        Command::Init(a) => init::run(&cli.global, a),
        Command::Backup(a) => backup::run(&cli.global, a),
        Command::Snapshots(a) => snapshots::run(&cli.global, a),
        Command::Restore(a) => restore::run(&cli.global, a),
        Command::Check(a) => check::run(&cli.global, a),
        Command::Cat(a) => cat::run(&cli.global, a),
        Command::Unlock(a) => unlock::run(&cli.global, a),
        Command::Prune(a) => prune::run(&cli.global, a),
        Command::Copy(a) => copy::run(&cli.global, a),
        Command::Forget(a) => forget::run(&cli.global, a),
        Command::Ls(a) => ls::run(&cli.global, a),
        Command::Find(a) => find::run(&cli.global, a),
        Command::Dump(a) => dump::run(&cli.global, a),
        Command::Diff(a) => diff::run(&cli.global, a),
        Command::Stats(a) => stats::run(&cli.global, a),
        Command::Tag(a) => tag::run(&cli.global, a),
        Command::Key(a) => key::run(&cli.global, a),
        Command::Repair(a) => repair::run(&cli.global, a),
        Command::Rewrite(a) => rewrite::run(&cli.global, a),
        Command::Config(a) => config::run(&cli.global, a),
        Command::Run(a) => plan::run(&cli.global, a),
        Command::Status(a) => plan::status(&cli.global, a),
        Command::History(a) => plan::history(&cli.global, a),
        Command::Daemon(a) => plan::daemon(&cli.global, a),
        Command::Systemd(a) => plan::systemd(&cli.global, a),
        Command::Web(a) => web::run(&cli.global, a),
        Command::Import(a) => import::run(&cli.global, a),
        Command::Completions(a) => install::completions(a),
        Command::Man(a) => install::man(&cli.global, a),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            // Each cause once, and what to check named where the setting came from.
            let hint = fatal::hint(&e, &cli.global);
            let line = match &hint {
                Some(h) => format!("{}: {h}", fatal::message(&e)),
                None => fatal::message(&e),
            };
            eprintln!("Fatal: {line}");
            let kind = e
                .chain()
                .find_map(|c| c.downcast_ref::<cairn_repo::Error>())
                .map(|e| e.kind());
            let code = match kind {
                Some(Kind::WrongPassword) => exit::WRONG_PASSWORD,
                Some(Kind::Locked) => exit::LOCKED,
                _ => exit::FAILURE,
            };
            // A repository that does not exist gets restic's dedicated code.
            let no_repository = e.chain().any(|c| c.is::<NoRepository>());
            let code = if no_repository {
                exit::NO_REPOSITORY
            } else {
                code
            };
            // For `cairn run`, which runs us as a child: the failure, typed.
            if crate::run::protocol::enabled() {
                let category = if no_repository {
                    crate::history::Category::Config
                } else {
                    crate::run::protocol::category_of(&e)
                };
                crate::run::protocol::exit_error_hinted(
                    code.into(),
                    category,
                    line,
                    fatal::has_own_hint(&e, &hint),
                );
            }
            ExitCode::from(code)
        }
    }
}

/// No repository at a location (restic's exit code 10): told by the storage itself (no
/// config file, no bucket), not by an error's wording.
#[derive(Debug)]
pub struct NoRepository(pub cairn_repo::Error);

impl std::fmt::Display for NoRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for NoRepository {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Opens the repository behind `backend`; a location without one is [`NoRepository`].
pub fn open_repository(backend: Arc<dyn Backend>, password: &str) -> Result<Repository> {
    Repository::open(backend.clone(), password).map_err(|e| {
        let missing = e.kind() == Kind::NotFound
            && match backend.has_config() {
                Ok(has) => !has,
                Err(c) => c.kind() == Kind::NotFound,
            };
        if missing {
            anyhow::Error::new(NoRepository(e))
        } else {
            e.into()
        }
    })
}

impl GlobalOpts {
    /// The config file: `--config`, `CAIRN_CONFIG`, or the default location.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.config
            .clone()
            .unwrap_or_else(crate::config::default_path)
    }

    pub fn progress(&self) -> bool {
        !self.quiet && !self.json && !self.no_progress && std::io::stderr().is_terminal()
    }

    /// Makes `-r NAME` (or CAIRN_REPOSITORY/RESTIC_REPOSITORY) the repository `NAME` of the
    /// config: `repo` becomes its URL and `named` its settings. A value with a `/` or a
    /// `:` (`./main`, `/abs`, `local:main`, `sftp:...`) is always a location and the config is
    /// not even read, so a broken config cannot break `-r /path`.
    ///
    /// A bare word that is a configured name is that repository. RESTIC_REPOSITORY keeps
    /// restic's meaning (a location) when a file or directory of that name exists: scripts
    /// written for restic go on working unchanged; it is a name only where restic would
    /// fail anyway. Another bare word is a path if it exists, or if there is no config to
    /// name repositories (restic's behaviour, so `init` creates ./WORD); otherwise it is an
    /// error listing the configured names (exit 10) — never a silent new ./WORD.
    pub fn resolve_repository(&mut self) -> Result<()> {
        let from_cairn_env = self.repo.is_none();
        let Some(value) = self
            .repo
            .clone()
            .or_else(|| std::env::var("CAIRN_REPOSITORY").ok())
            .filter(|r| !r.is_empty())
        else {
            return Ok(());
        };
        // Given through RESTIC_REPOSITORY (clap fills `repo` from it), not by -r.
        let restic_env = !from_cairn_env
            && std::env::var("RESTIC_REPOSITORY").ok().as_deref() == Some(value.as_str())
            && !std::env::args()
                .any(|a| a == "--repo" || a.starts_with("--repo=") || (a.starts_with("-r")));
        if let Some(resolved) = self.configured(&value, restic_env)? {
            self.repo = Some(resolved.rc.url.clone());
            self.named = Some(resolved);
        }
        Ok(())
    }

    /// The repository of the config that `value` (of -r, --from-repo or their variables)
    /// names, or `None` when it is a location: the rules of [`Self::resolve_repository`].
    /// `restic_env`: the value came from a RESTIC_* variable, where an existing path keeps
    /// restic's meaning.
    fn configured(
        &self,
        value: &str,
        restic_env: bool,
    ) -> Result<Option<crate::ops::repos::Resolved>> {
        let bare = !value.contains(['/', ':']) && value != "." && value != "..";
        if !bare {
            return Ok(None);
        }
        let exists = std::path::Path::new(value).symlink_metadata().is_ok();
        if restic_env && exists {
            return Ok(None);
        }
        let path = self.config_path();
        if !path.exists() {
            return Ok(None);
        }
        let config = match crate::config::load(&path, crate::config::LoadOptions { offline: true }) {
            Ok((c, _)) => c,
            Err(_) if exists => return Ok(None),
            Err(problems) => {
                return Err(anyhow::Error::new(problems).context(format!(
                    "{value:?} is not an existing path and the config {} that could name it does not load (write ./{value} for a directory)",
                    path.display()
                )))
            }
        };
        if config.repositories.contains_key(value) {
            return Ok(Some(crate::ops::repos::resolve(&config, value)?));
        }
        if exists {
            return Ok(None);
        }
        Err(anyhow::Error::new(NoRepository(cairn_repo::Error::not_found(format!(
            "no repository named {value:?} in {} (known: {}) and no such path: give a configured name, or ./{value} for a directory",
            path.display(),
            crate::ops::repos::known_names(&config)
        )))))
    }

    /// Points these options at the repository `name` of `config`.
    fn use_configured(&mut self, config: &crate::config::Config, name: &str) -> Result<()> {
        let resolved = crate::ops::repos::resolve(config, name)?;
        self.repo = Some(resolved.rc.url.clone());
        self.named = Some(resolved);
        Ok(())
    }

    /// The repository location, from `-r` or the environment.
    pub fn repo_location(&self) -> Result<String> {
        self.repo
            .clone()
            .or_else(|| std::env::var("CAIRN_REPOSITORY").ok())
            .filter(|r| !r.is_empty())
            .context("no repository given: use -r/--repo or set RESTIC_REPOSITORY")
    }

    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        let loc = self.repo_location()?;
        open_backend(&loc, self)
    }

    /// Backend options from `-o`, the rate limits and the timeouts.
    pub fn backend_options(&self) -> Result<backend::Options> {
        let mut extended = std::collections::BTreeMap::new();
        for o in &self.options {
            let (k, v) = o.split_once('=').with_context(|| {
                format!("-o {o}: expected KEY=VALUE, e.g. -o s3.region=eu-west-1")
            })?;
            extended.insert(k.trim().to_string(), v.to_string());
        }
        // A configured repository's own options, limits, cache and environment, under
        // whatever the flags give.
        if let Some(n) = &self.named {
            let mut opts = n.options()?;
            let limits = (
                self.limit_upload.or(n.rc.limit_upload),
                self.limit_download.or(n.rc.limit_download),
            );
            opts.limits = Arc::new(backend::limit::Limits::new(limits.0, limits.1));
            if self.no_cache {
                opts.cache_dir = None;
            } else if let Some(d) = &self.cache_dir {
                opts.cache_dir = Some(d.clone());
            }
            apply_durations(&mut opts, &extended)?;
            opts.extended.extend(extended);
            return Ok(opts);
        }
        let mut opts = backend::Options {
            limits: Arc::new(backend::limit::Limits::new(
                self.limit_upload,
                self.limit_download,
            )),
            cache_dir: if self.no_cache {
                None
            } else {
                self.cache_dir
                    .clone()
                    .or_else(|| std::env::var_os("CAIRN_CACHE_DIR").map(Into::into))
                    .or_else(backend::cache::default_dir)
            },
            ..Default::default()
        };
        apply_durations(&mut opts, &extended)?;
        opts.extended = extended;
        Ok(opts)
    }

    /// The password from (in order) a file, a command, or the environment; else the terminal.
    /// A configured repository (`-r NAME`) uses its own password source unless a flag
    /// (--password-file, --password-command) gives one; variables of the environment
    /// (RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, ...) are meant for any repository and do not
    /// override the config's.
    pub fn password(&self, confirm: bool) -> Result<String> {
        if let Some(n) = self.config_password() {
            // Its errors name the config key already; not the server's credentials.
            return n.password().map_err(|e| categorized(Category::Auth, e));
        }
        let file = self
            .password_file
            .clone()
            .or_else(|| std::env::var("CAIRN_PASSWORD_FILE").ok());
        if let Some(f) = file {
            let s = std::fs::read_to_string(&f).map_err(|e| {
                // Typed as a password problem (category `auth` for `cairn run`), not as
                // a missing source or a permission problem of the backup; the hint names
                // the config key when `cairn run` wrote the flag from the config.
                let setting = Origin::from_env(Role::Repo)
                    .map_or_else(|| "--password-file".into(), |o| o.password_setting());
                let hint = unreadable_hint(&e, &setting);
                categorized(
                    Category::Auth,
                    anyhow::Error::new(fatal::Hinted(format!(
                        "cannot read password file {f}: {e}: {hint}"
                    ))),
                )
            })?;
            return Ok(first_line(&s));
        }
        let cmd = self
            .password_command
            .clone()
            .or_else(|| std::env::var("CAIRN_PASSWORD_COMMAND").ok());
        if let Some(c) = cmd {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&c)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running password command {c:?}"))?;
            if !out.status.success() {
                anyhow::bail!("password command {c:?} failed ({})", out.status);
            }
            return Ok(first_line(&String::from_utf8_lossy(&out.stdout)));
        }
        for var in ["RESTIC_PASSWORD", "CAIRN_PASSWORD"] {
            if let Ok(p) = std::env::var(var) {
                return Ok(p);
            }
        }
        if std::io::stdin().is_terminal() {
            let p = progress::read_password("enter password for repository: ")?;
            if confirm {
                let again = progress::read_password("enter password again: ")?;
                anyhow::ensure!(p == again, "passwords do not match");
            }
            return Ok(p);
        }
        anyhow::bail!(
            "no password given: use --password-file, --password-command or set RESTIC_PASSWORD"
        )
    }

    /// The configured repository (`-r NAME`) whose own password source applies: no flag
    /// (--password-file, --password-command) gives one. Variables of the environment
    /// (RESTIC_PASSWORD_FILE, ...) are meant for any repository and do not count.
    fn config_password(&self) -> Option<&crate::ops::repos::Resolved> {
        let flag = |v: &Option<String>, var: &str| {
            v.clone()
                .filter(|v| std::env::var(var).ok().as_deref() != Some(v.as_str()))
        };
        self.named.as_ref().filter(|_| {
            flag(&self.password_file, "RESTIC_PASSWORD_FILE").is_none()
                && flag(&self.password_command, "RESTIC_PASSWORD_COMMAND").is_none()
        })
    }

    pub fn open(&self) -> Result<Repository> {
        let backend = self.backend()?;
        let password = self.password(false)?;
        let mut repo = open_repository(backend, &password)?;
        repo.set_compression(Compression::parse(&self.compression)?);
        if let Some(mib) = self.pack_size {
            // restic's bounds: below 4 MiB a repository of many packs gets slow to list
            // and prune; above 128 MiB a pack's memory (cairn builds packs in memory, one
            // per file worker) and its upload retries get large.
            if !(4..=128).contains(&mib) {
                anyhow::bail!(
                    "--pack-size {mib} (or RESTIC_PACK_SIZE): give a size in MiB from 4 to 128"
                );
            }
            repo.set_pack_size(mib as usize * 1024 * 1024);
        }
        // The index snapshot lives in the metadata cache (also for local repositories).
        repo.set_cache_dir(self.backend_options()?.cache_dir);
        Ok(repo)
    }

    /// Takes a repository lock (shared or exclusive) unless `--no-lock`.
    pub fn lock(
        &self,
        repo: &Repository,
        exclusive: bool,
    ) -> Result<Option<cairn_repo::lock::LockGuard>> {
        if self.no_lock {
            return Ok(None);
        }
        let deadline = self.retry_lock.map(|d| std::time::Instant::now() + d);
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            match cairn_repo::lock::lock(repo, exclusive) {
                Ok(g) => return Ok(Some(g)),
                Err(e) if e.kind() == Kind::Locked => {
                    let now = std::time::Instant::now();
                    match deadline {
                        Some(d) if now < d => {
                            if !self.quiet && !self.json {
                                eprintln!("{e}; retrying (--retry-lock)");
                            }
                            std::thread::sleep(wait.min(d - now));
                            wait = (wait * 2).min(std::time::Duration::from_secs(20));
                        }
                        _ => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Prints a line unless quiet or in JSON mode.
    pub fn say(&self, msg: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            println!("{msg}");
        }
    }
}

/// `--plan NAME` of snapshots, restore, ls, find, diff and forget: the plan's repository
/// (from the config, in place of -r) and only the plan's snapshots (tag `plan:NAME`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlanArg {
    /// Only the snapshots of this plan of the config (tag plan:NAME), in the plan's
    /// repository (instead of -r)
    #[arg(long, value_name = "NAME")]
    pub plan: Option<String>,
}

/// The config (read offline) and its plan `name`, for `--plan NAME`.
pub fn configured_plan(
    g: &GlobalOpts,
    name: &str,
) -> Result<(crate::config::Config, crate::config::Plan)> {
    let path = g.config_path();
    let (config, _) = crate::config::load(&path, crate::config::LoadOptions { offline: true })
        .map_err(|p| {
            anyhow::Error::new(p).context(format!("--plan {name}: loading {}", path.display()))
        })?;
    let plan = config.plans.get(name).cloned().with_context(|| {
        format!(
            "--plan {name}: no such plan in {} (plans: {})",
            path.display(),
            config.plans.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    Ok((config, plan))
}

impl PlanArg {
    /// The options pointing at the plan's repository; `g` itself without `--plan`.
    pub fn globals(&self, g: &GlobalOpts) -> Result<GlobalOpts> {
        let mut g = g.clone();
        let Some(name) = &self.plan else {
            return Ok(g);
        };
        let (config, plan) = configured_plan(&g, name)?;
        let repository = plan.repository;
        g.use_configured(&config, &repository)?;
        Ok(g)
    }

    /// `tags` (restic's: any entry, each a comma-separated set all required) with the
    /// plan's tag required in every entry.
    pub fn tags(&self, tags: &[String]) -> Vec<String> {
        let Some(name) = &self.plan else {
            return tags.to_vec();
        };
        let tag = crate::run::plan_tag(name);
        if tags.is_empty() {
            return vec![tag];
        }
        tags.iter().map(|t| format!("{t},{tag}")).collect()
    }

    /// Refuses a snapshot (given by id) that is not the plan's.
    pub fn check(&self, s: &cairn_repo::snapshot::Snapshot) -> Result<()> {
        if let Some(name) = &self.plan {
            let tag = crate::run::plan_tag(name);
            anyhow::ensure!(
                s.tags.contains(&tag),
                "snapshot {} is not one of plan {name}'s (no tag {tag})",
                s.id.short()
            );
        }
        Ok(())
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Opens the backend of a repository location (restic's syntax, see `backend::open`).
/// The `-o` durations (retry budget, timeouts) of `extended` applied to `opts`.
fn apply_durations(
    opts: &mut backend::Options,
    extended: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let dur = |k: &str| -> Result<Option<std::time::Duration>> {
        extended
            .get(k)
            .map(|v| parse_duration(v).map_err(|e| anyhow::anyhow!("-o {k}: {e}")))
            .transpose()
    };
    if let Some(d) = dur("retry.max-time")? {
        opts.retry.max_time = d;
    }
    if let Some(d) = dur("timeout.io")? {
        opts.timeouts.io = d;
    }
    if let Some(d) = dur("timeout.connect")? {
        opts.timeouts.connect = d;
    }
    Ok(())
}

pub fn open_backend(loc: &str, g: &GlobalOpts) -> Result<Arc<dyn Backend>> {
    let backend = backend::open(loc, &g.backend_options()?)?;
    // For crash-safety tests only: die by SIGKILL before the N+1-th repository change.
    if let Ok(n) = std::env::var("CAIRN_TEST_KILL_AFTER_MUTATIONS") {
        let n = n
            .parse()
            .context("CAIRN_TEST_KILL_AFTER_MUTATIONS must be a number")?;
        return Ok(Arc::new(cairn_repo::backend::killswitch::KillSwitch::new(
            backend, n,
        )));
    }
    Ok(backend)
}

/// JSON text as Go's encoding/json writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped
/// (they can only occur inside strings, so replacing them in the text is exact).
pub fn go_json(v: &impl serde::Serialize) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}
