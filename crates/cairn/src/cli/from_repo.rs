//! The second repository of `copy` and `init --copy-chunker-params`: restic's --from-*
//! options and RESTIC_FROM_* variables (CAIRN_FROM_* also work), or a configured name.

use super::{fatal, first_line, open_backend, open_repository, GlobalOpts};
use crate::history::Category;
use crate::ops::repos::{unreadable_hint, Origin, Role};
use crate::run::protocol::categorized;
use anyhow::{Context, Result};
use cairn_repo::repository::Repository;

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
    /// Opens the source repository. A configured NAME is resolved like `-r NAME` (its URL,
    /// password source, env-file, options); `--from-password-file`/`--from-password-command`
    /// given as flags still win, like restic. The destination's password flags and its
    /// configured settings never apply to the source; `-o`, limits and cache flags do.
    pub fn open(&self, g: &GlobalOpts) -> Result<Repository> {
        let loc = self
            .from_repo
            .clone()
            .or_else(|| std::env::var("CAIRN_FROM_REPOSITORY").ok())
            .filter(|r| !r.is_empty())
            .context("no source repository: use --from-repo or set RESTIC_FROM_REPOSITORY")?;
        let restic_env = std::env::var("RESTIC_FROM_REPOSITORY").ok().as_deref()
            == Some(loc.as_str())
            && !std::env::args().any(|a| a == "--from-repo" || a.starts_with("--from-repo="));
        let named = g.configured(&loc, restic_env)?;
        let mut src = g.clone();
        src.password_file = None;
        src.password_command = None;
        src.repo = Some(named.as_ref().map_or(loc.clone(), |n| n.rc.url.clone()));
        src.named = named;
        // Flags, not the RESTIC_FROM_* variables meant for any repository.
        let flag = |v: &Option<String>, var: &str| {
            v.clone()
                .filter(|v| std::env::var(var).ok().as_deref() != Some(v.as_str()))
        };
        let flags = flag(&self.from_password_file, "RESTIC_FROM_PASSWORD_FILE").is_some()
            || flag(&self.from_password_command, "RESTIC_FROM_PASSWORD_COMMAND").is_some();
        // Where the source's settings come from, for hints: its config entry (`cairn run`
        // wrote the flags of its children from one too).
        let origin = match &src.named {
            Some(n) => Some(Origin::of(&n.rc)),
            None => Origin::from_env(Role::From),
        };
        let password_origin = origin.clone().filter(|_| src.named.is_none() || !flags);
        let password = match &src.named {
            Some(n) if !flags => n.password().map_err(|e| categorized(Category::Auth, e))?,
            _ => self.password(&loc, password_origin.as_ref())?,
        };
        open_repository(open_backend(&src.repo_location()?, &src)?, &password).map_err(|error| {
            anyhow::Error::new(fatal::SourceRepository {
                location: loc.clone(),
                origin,
                password_origin,
                error,
            })
        })
    }

    /// The source's password from the --from-* flags or variables.
    fn password(&self, loc: &str, origin: Option<&Origin>) -> Result<String> {
        if let Some(f) = self
            .from_password_file
            .clone()
            .or_else(|| std::env::var("CAIRN_FROM_PASSWORD_FILE").ok())
        {
            return Ok(first_line(&std::fs::read_to_string(&f).map_err(|e| {
                let setting =
                    origin.map_or_else(|| "--from-password-file".into(), |o| o.password_setting());
                let hint = unreadable_hint(&e, &setting);
                categorized(
                    Category::Auth,
                    anyhow::Error::new(fatal::Hinted(format!(
                        "cannot read the source's password file {f}: {e}: {hint}"
                    ))),
                )
            })?));
        }
        if let Some(c) = self
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
            return Ok(first_line(&String::from_utf8_lossy(&out.stdout)));
        }
        if let Some(p) = ["RESTIC_FROM_PASSWORD", "CAIRN_FROM_PASSWORD"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
        {
            return Ok(p);
        }
        anyhow::bail!(
            "no password for {loc}: use --from-password-file, --from-password-command or RESTIC_FROM_PASSWORD, or name a repository of the config"
        )
    }
}
