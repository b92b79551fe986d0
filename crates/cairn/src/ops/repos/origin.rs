//! Where a configured repository's settings are written — its name and the file defining
//! it — so hints name the key to fix (`password-file of repository "usb"
//! (/etc/cairn/cairn.toml line 12)`) rather than a flag nobody typed, and what to do about
//! a file that cannot be read (missing, or not readable by this user). `cairn run` passes
//! the origin to its children in variables ([`ENV_ORIGIN`]); never a secret. This module
//! must not print.

use crate::config::Repository as RepoConfig;
use std::collections::BTreeMap;

/// Set by `cairn run` for each child: the name of the configured repository its `-r` and
/// password flags come from, so the child's errors name the config key, not a flag nobody
/// typed ([`ENV_ORIGIN_FILE`]: the file defining it). Never a secret.
pub const ENV_ORIGIN: &str = "CAIRN_CONFIG_REPOSITORY";
/// The config file defining the repository of [`ENV_ORIGIN`].
pub const ENV_ORIGIN_FILE: &str = "CAIRN_CONFIG_REPOSITORY_FILE";
/// Like [`ENV_ORIGIN`], for a copy's source repository (`--from-repo`).
pub const ENV_FROM_ORIGIN: &str = "CAIRN_CONFIG_FROM_REPOSITORY";
/// Like [`ENV_ORIGIN_FILE`], for a copy's source repository.
pub const ENV_FROM_ORIGIN_FILE: &str = "CAIRN_CONFIG_FROM_REPOSITORY_FILE";

/// Which repository of a command: the one of `-r`, or a copy's source (`--from-repo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Repo,
    From,
}

impl Role {
    fn vars(self) -> (&'static str, &'static str) {
        match self {
            Role::Repo => (ENV_ORIGIN, ENV_ORIGIN_FILE),
            Role::From => (ENV_FROM_ORIGIN, ENV_FROM_ORIGIN_FILE),
        }
    }
}

/// Where a repository of the config is written: its name and the file defining it. Hints
/// name the setting to fix from it (`password-file of repository "usb"
/// (/etc/cairn/cairn.toml line 12)`) instead of the command line's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
    pub file: std::path::PathBuf,
}

impl Origin {
    pub fn of(rc: &RepoConfig) -> Origin {
        Origin {
            name: rc.name.clone(),
            // Absolute, so a hint read elsewhere (the history, a notification) still
            // points at the file.
            file: std::path::absolute(&rc.defined_in).unwrap_or_else(|_| rc.defined_in.clone()),
        }
    }

    /// The variables telling a child of `cairn run` where its repository `role` is written.
    pub fn env_vars(&self, role: Role) -> [(&'static str, String); 2] {
        let (name, file) = role.vars();
        [
            (name, self.name.clone()),
            (file, self.file.display().to_string()),
        ]
    }

    /// The origin `cairn run` gave this process for `role`, if it is such a child.
    pub fn from_env(role: Role) -> Option<Origin> {
        let (name, file) = role.vars();
        Some(Origin {
            name: std::env::var(name).ok().filter(|n| !n.is_empty())?,
            file: std::env::var_os(file).filter(|f| !f.is_empty())?.into(),
        })
    }

    /// `KEY of repository "NAME" (FILE line N)`; without the line when the file no longer
    /// has the key.
    pub fn setting(&self, key: &str) -> String {
        match self.keys().get(key) {
            Some(line) => format!(
                "{key} of repository {:?} ({} line {line})",
                self.name,
                self.file.display()
            ),
            None => format!(
                "{key} of repository {:?} ({})",
                self.name,
                self.file.display()
            ),
        }
    }

    /// The setting the password comes from, as written (password-file, password-command,
    /// ...).
    pub fn password_setting(&self) -> String {
        let key = self
            .keys()
            .into_keys()
            .find(|k| k.starts_with("password-"))
            .unwrap_or_else(|| "the password setting".into());
        self.setting(&key)
    }

    /// The settings the backend's credentials come from (env-file, env-credential,
    /// env-command, env), as written; empty when there are none.
    pub fn credential_settings(&self) -> Vec<String> {
        self.keys()
            .into_keys()
            .filter(|k| k == "env" || k.starts_with("env-"))
            .map(|k| self.setting(&k))
            .collect()
    }

    /// The keys of the repository's table in its file, each with its line (1-based). Read
    /// again for a message only: empty when the file no longer reads or parses.
    fn keys(&self) -> BTreeMap<String, usize> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            repositories: BTreeMap<String, BTreeMap<String, toml::Spanned<toml::Value>>>,
        }
        let Ok(text) = std::fs::read_to_string(&self.file) else {
            return BTreeMap::new();
        };
        let Ok(doc) = toml::from_str::<Doc>(&text) else {
            return BTreeMap::new();
        };
        let line = |at: usize| text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1;
        doc.repositories
            .get(&self.name)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), line(v.span().start)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What to do about the environment of `rc` (env-file, env-credential, env-command) that
/// could not be had. The reader's error is text: an env-file is opened again to learn why
/// it cannot be read (missing, or not readable by this user).
pub fn env_hint(rc: &RepoConfig) -> String {
    let origin = Origin::of(rc);
    if let Some(Err(e)) = rc.env_file.as_ref().map(std::fs::File::open) {
        return unreadable_hint(&e, &origin.setting("env-file"));
    }
    match origin.credential_settings() {
        s if s.is_empty() => format!(
            "check repository {:?} in {}",
            rc.name,
            origin.file.display()
        ),
        s => format!("check {}", s.join(", ")),
    }
}

/// What to do about a file that cannot be read, by the I/O error's kind (`setting` names
/// where its path is given): a file that exists but may not be read is not fixed by
/// creating it.
pub fn unreadable_hint(e: &std::io::Error, setting: &str) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => format!("create it, or fix {setting}"),
        K::PermissionDenied => {
            "it exists but may not be read: run cairn as a user that can read it, or fix its mode/owner".into()
        }
        K::IsADirectory => format!("it is a directory, not a file: fix {setting}"),
        _ => format!("check the file and {setting}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_names_the_key_and_its_line_in_the_file_defining_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("usb.toml");
        std::fs::write(
            &f,
            "[repositories.nas]\nurl = \"/a\"\npassword-file = \"/p\"\n\n\
             [repositories.usb]\nurl = \"/b\"\npassword-command = \"pass usb\"\nenv-file = \"/e\"\n",
        )
        .unwrap();
        let o = Origin {
            name: "usb".into(),
            file: f.clone(),
        };
        let at = |key: &str, line: usize| {
            format!("{key} of repository \"usb\" ({} line {line})", f.display())
        };
        assert_eq!(o.password_setting(), at("password-command", 7));
        assert_eq!(o.credential_settings(), vec![at("env-file", 8)]);
        // The file changed since: the key without a line.
        std::fs::write(&f, "").unwrap();
        assert_eq!(
            o.setting("env-file"),
            format!("env-file of repository \"usb\" ({})", f.display())
        );
        assert!(o.credential_settings().is_empty());
    }

    #[test]
    fn a_file_that_may_not_be_read_is_not_told_to_be_created() {
        let denied = std::io::Error::from_raw_os_error(nix::libc::EACCES);
        let eperm = std::io::Error::from_raw_os_error(nix::libc::EPERM);
        let missing = std::io::Error::from_raw_os_error(nix::libc::ENOENT);
        for e in [&denied, &eperm] {
            let h = unreadable_hint(e, "password-file");
            assert!(h.contains("run cairn as a user"), "{h}");
            assert!(!h.contains("create"), "{h}");
        }
        let h = unreadable_hint(&missing, "password-file");
        assert!(h.contains("create it, or fix password-file"), "{h}");
    }
}
