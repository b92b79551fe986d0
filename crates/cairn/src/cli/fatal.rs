//! The `Fatal:` line of a failing command: the failure with each cause said once, and
//! what to check named where the setting came from — the config key of a configured
//! repository (`-r NAME`, or a child of `cairn run`, told by [`Origin::from_env`]), else
//! the flags and variables of the command line. `cairn run` gets the same line in the
//! child protocol's `exit_error`. This module decides no exit code and no category, and
//! reads the error's types, never its wording.

use super::GlobalOpts;
use crate::ops::repos::{Origin, Role};
use cairn_repo::Kind;

/// The failure as one line: its causes joined by `: `, each said once. An engine I/O
/// error already quotes its cause (and a [`crate::run::protocol::Categorized`] error all
/// of its own), which anyhow's `{:#}` would print a second time.
pub fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// What to check, when the failure's types say what and the options say where: a wrong
/// password (the password's config key, or its flags), credentials a server refused (the
/// repository's env settings). None when the message says all there is.
pub fn hint(e: &anyhow::Error, g: &GlobalOpts) -> Option<String> {
    let engine = e
        .chain()
        .find_map(|c| c.downcast_ref::<cairn_repo::Error>())?;
    // The source repository of a copy, or the command's own.
    let (origin, password) = match e.chain().find_map(|c| c.downcast_ref::<SourceRepository>()) {
        Some(s) => (
            s.origin.clone(),
            s.password_origin.as_ref().map_or_else(
                || "--from-password-file, --from-password-command or RESTIC_FROM_PASSWORD".into(),
                Origin::password_setting,
            ),
        ),
        None => (
            g.named
                .as_ref()
                .map(|n| Origin::of(&n.rc))
                .or_else(|| Origin::from_env(Role::Repo)),
            password_source(g),
        ),
    };
    match engine.kind() {
        Kind::WrongPassword => Some(format!("check {password}")),
        Kind::Auth => {
            let settings = origin?.credential_settings();
            (!settings.is_empty())
                .then(|| format!("the credentials come from {}", settings.join(", ")))
        }
        _ => None,
    }
}

/// Whether the failure's message carries a hint of its own: one from [`hint`], or an
/// error made [`Hinted`] where it happened. The category's general hint is then not added.
pub fn has_own_hint(e: &anyhow::Error, hint: &Option<String>) -> bool {
    hint.is_some()
        || e.chain().any(|c| {
            c.is::<Hinted>()
                || c.downcast_ref::<crate::run::protocol::Categorized>()
                    .is_some_and(|k| k.error.is::<Hinted>())
        })
}

/// A message that already says what to do (e.g. a password file that cannot be read:
/// create it, or run as another user), so no general hint follows it.
#[derive(Debug)]
pub struct Hinted(pub String);

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hinted {}

/// Where the password of the command's repository came from, as a person would fix it.
fn password_source(g: &GlobalOpts) -> String {
    if let Some(n) = g.config_password() {
        return Origin::of(&n.rc).password_setting();
    }
    // A child of `cairn run`: its password flags were written from the config.
    if let Some(o) = Origin::from_env(Role::Repo) {
        return o.password_setting();
    }
    "--password-file, --password-command or RESTIC_PASSWORD".into()
}

/// The source repository of `copy` (`--from-repo`) failed to open: which one, where its
/// settings and its password came from (None: the command line), and why.
#[derive(Debug)]
pub struct SourceRepository {
    pub location: String,
    pub origin: Option<Origin>,
    pub password_origin: Option<Origin>,
    pub error: anyhow::Error,
}

impl std::fmt::Display for SourceRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source repository {}", self.location)
    }
}

impl std::error::Error for SourceRepository {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_io_error_says_its_cause_once() {
        let io = std::io::Error::from_raw_os_error(nix::libc::EROFS);
        let e = anyhow::Error::new(cairn_repo::Error::io("writing /repo/locks/ab", io))
            .context("backup");
        let text = message(&e);
        assert_eq!(text.matches("Read-only file system").count(), 1, "{text}");
        assert!(
            text.starts_with("backup: writing /repo/locks/ab: "),
            "{text}"
        );
        // Distinct causes all stay.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(message(&e), "outer: middle: inner");
    }

    #[test]
    fn a_wrong_password_without_a_config_names_the_flags() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["cairn", "-r", "/x", "snapshots"]).unwrap();
        let wrong = anyhow::Error::new(cairn_repo::Error::new(Kind::WrongPassword, "wrong"));
        // Not run as a child of `cairn run` (the test process has no origin variables).
        if Origin::from_env(Role::Repo).is_none() {
            let h = hint(&wrong, &cli.global).unwrap();
            assert!(h.contains("--password-file"), "{h}");
        }
        let from = anyhow::Error::new(SourceRepository {
            location: "/src".into(),
            origin: None,
            password_origin: None,
            error: wrong,
        });
        let h = hint(&from, &cli.global).unwrap();
        assert!(h.contains("--from-password-file"), "{h}");
        let other = anyhow::Error::new(cairn_repo::Error::new(Kind::Locked, "locked"));
        assert_eq!(hint(&other, &cli.global), None);
    }
}
