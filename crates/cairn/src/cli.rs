//! The command line: global options shared with restic, and one module per verb.

mod backup;
mod cat;
mod check;
pub mod config;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod key;
mod ls;
mod plan;
mod progress;
mod prune;
mod repair;
mod restore;
mod rewrite;
pub mod signals;
mod snapshots;
mod stats;
mod tag;
mod unlock;

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
    /// Repository: a path, local:PATH, sftp:[user@]host:PATH, s3:[https://]host/bucket[/prefix],
    /// b2:bucket:path, rest:URL, rclone:remote:path
    #[arg(short = 'r', long = "repo", global = true, env = "RESTIC_REPOSITORY")]
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
}

pub use crate::units::{format_bytes, parse_duration};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files or standard input
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// Restore a snapshot
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
    let cli = Cli::parse();
    let plans = matches!(
        cli.command,
        Command::Config(_)
            | Command::Run(_)
            | Command::Status(_)
            | Command::History(_)
            | Command::Daemon(_)
            | Command::Systemd(_)
    );
    if !plans {
        if let Err(e) = signals::release_locks_on_stop() {
            eprintln!("warning: cannot handle Ctrl-C cleanly: {e}");
        }
    }
    let result = match &cli.command {
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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
            eprintln!("Fatal: {e:#}");
            let kind = e.downcast_ref::<cairn_repo::Error>().map(|e| e.kind());
            // For `cairn run`, which runs us as a child: the failure category, machine-read.
            if std::env::var_os("CAIRN_REPORT_ERROR_KIND").is_some() {
                if let Some(k) = kind {
                    eprintln!("cairn-error-kind: {}", kind_name(k));
                }
            }
            let code = match kind {
                Some(Kind::WrongPassword) => exit::WRONG_PASSWORD,
                Some(Kind::Locked) => exit::LOCKED,
                _ => exit::FAILURE,
            };
            // A repository that does not exist gets restic's dedicated code.
            let code = if e.to_string().contains("there is no repository here") {
                exit::NO_REPOSITORY
            } else {
                code
            };
            ExitCode::from(code)
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::NotFound => "not-found",
        Kind::WrongPassword => "wrong-password",
        Kind::Corrupt => "corrupt",
        Kind::DiskFull => "disk-full",
        Kind::Io => "io",
        Kind::Invalid => "invalid",
        Kind::Unsupported => "unsupported",
        Kind::Locked => "locked",
        Kind::Network => "network",
        Kind::Auth => "auth",
    }
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
        let dur = |k: &str| -> Result<Option<std::time::Duration>> {
            extended
                .get(k)
                .map(|v: &String| parse_duration(v).map_err(|e| anyhow::anyhow!("-o {k}: {e}")))
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
        opts.extended = extended;
        Ok(opts)
    }

    /// The password from (in order) a file, a command, or the environment; else the terminal.
    pub fn password(&self, confirm: bool) -> Result<String> {
        let file = self
            .password_file
            .clone()
            .or_else(|| std::env::var("CAIRN_PASSWORD_FILE").ok());
        if let Some(f) = file {
            let s = std::fs::read_to_string(&f)
                .with_context(|| format!("reading password file {f}"))?;
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

    pub fn open(&self) -> Result<Repository> {
        let backend = self.backend()?;
        let password = self.password(false)?;
        let mut repo = Repository::open(backend, &password)?;
        repo.set_compression(Compression::parse(&self.compression)?);
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

/// A second repository, for `copy` and `init --copy-chunker-params` (restic's --from-*
/// options and RESTIC_FROM_* variables; CAIRN_FROM_* also work).
#[derive(clap::Args, Debug, Clone)]
pub struct FromRepo {
    /// The other repository
    #[arg(long, env = "RESTIC_FROM_REPOSITORY")]
    pub from_repo: Option<String>,
    /// File holding the other repository's password
    #[arg(long, env = "RESTIC_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<String>,
    /// Command printing the other repository's password
    #[arg(long, env = "RESTIC_FROM_PASSWORD_COMMAND")]
    pub from_password_command: Option<String>,
}

impl FromRepo {
    pub fn open(&self, g: &GlobalOpts) -> Result<Repository> {
        let loc = self
            .from_repo
            .clone()
            .or_else(|| std::env::var("CAIRN_FROM_REPOSITORY").ok())
            .filter(|r| !r.is_empty())
            .context("no source repository: use --from-repo or set RESTIC_FROM_REPOSITORY")?;
        let password = if let Some(f) = self
            .from_password_file
            .clone()
            .or_else(|| std::env::var("CAIRN_FROM_PASSWORD_FILE").ok())
        {
            first_line(
                &std::fs::read_to_string(&f)
                    .with_context(|| format!("reading password file {f}"))?,
            )
        } else if let Some(c) = self
            .from_password_command
            .clone()
            .or_else(|| std::env::var("CAIRN_FROM_PASSWORD_COMMAND").ok())
        {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&c)
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running password command {c:?}"))?;
            anyhow::ensure!(
                out.status.success(),
                "password command {c:?} failed ({})",
                out.status
            );
            first_line(&String::from_utf8_lossy(&out.stdout))
        } else if let Some(p) = ["RESTIC_FROM_PASSWORD", "CAIRN_FROM_PASSWORD"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
        {
            p
        } else {
            anyhow::bail!(
                "no password for {loc}: use --from-password-file, --from-password-command or RESTIC_FROM_PASSWORD"
            )
        };
        Repository::open(open_backend(&loc, g)?, &password)
            .with_context(|| format!("source repository {loc}"))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Opens the backend of a repository location (restic's syntax, see `backend::open`).
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
