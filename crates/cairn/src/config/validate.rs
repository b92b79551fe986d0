//! Raw → model: every check and every diagnostic. Split by what is validated: settings
//! (`validate/settings.rs`), sources and their parts (`validate/sources.rs`), plans
//! (`validate/plans.rs`); repositories and the merge of all files here.

mod plans;
mod settings;
mod sources;

use super::model::*;
use super::{closest, raw, read_env_file, Diagnostic, LoadOptions, Text};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Validates what was read (main file first) into the model, adding to its problems;
/// returns them all sorted by file (in the order read), then line and column.
pub(super) fn validate(read: &super::load::Read, opts: LoadOptions) -> (Config, Vec<Diagnostic>) {
    let mut v = Validator {
        texts: &read.texts,
        problems: read.problems.clone(),
        opts,
        broken: read.broken.clone(),
    };
    let config = v.validate(&read.files);
    let mut problems = v.problems;
    let order = |d: &Diagnostic| {
        read.texts
            .iter()
            .position(|t| t.path == d.file)
            .unwrap_or(read.texts.len())
    };
    problems.sort_by_key(|d| (order(d), d.line, d.column));
    (config, problems)
}

/// The `[settings]` of the main file alone (text `main` of `texts`), with their problems:
/// what a config that does not load can still tell (where the state is, whom to notify).
pub(super) fn settings_only(
    texts: &[Text],
    main: usize,
    s: raw::Settings,
    opts: LoadOptions,
) -> (Settings, Vec<Diagnostic>) {
    let mut v = Validator {
        texts,
        problems: Vec::new(),
        opts,
        broken: BTreeSet::new(),
    };
    let settings = v.settings(Some(main), s);
    (settings, v.problems)
}

struct Validator<'a> {
    texts: &'a [Text],
    problems: Vec<Diagnostic>,
    opts: LoadOptions,
    /// Entries `(file, table, name)` whose text has problems, reported while reading:
    /// they answer to their names but are not validated (their values are partial).
    broken: BTreeSet<(usize, &'static str, String)>,
}

/// A value and the file it came from.
struct At<'a, T> {
    file: usize,
    value: &'a Spanned<T>,
}

impl<'a> Validator<'a> {
    fn error<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let d = self.texts[file].at(at.span().start, msg, help);
        self.problems.push(d);
    }

    /// Like `error`, with the value hidden in the printed line: it is a secret.
    fn error_secret<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = self.texts[file].at(at.span().start, msg, help);
        if let Some(line) = &d.snippet {
            let keep: String = line.chars().take(d.column.saturating_sub(1)).collect();
            d.snippet = Some(format!("{keep}<redacted>"));
        }
        self.problems.push(d);
    }

    fn warn<T>(
        &mut self,
        file: usize,
        at: &Spanned<T>,
        msg: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = self.texts[file].at(at.span().start, msg, help);
        d.warning = true;
        self.problems.push(d);
    }

    /// A path as written: `~/` expanded, relative ones taken from the config file's
    /// directory.
    fn path(&self, file: usize, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/") {
            if let Some(h) = std::env::var_os("HOME") {
                return PathBuf::from(h).join(rest);
            }
        }
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.texts[file]
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(p)
        }
    }

    fn validate(&mut self, files: &[(usize, raw::File)]) -> Config {
        // Merge: each entry defined once.
        let mut repos: BTreeMap<String, At<raw::Repository>> = BTreeMap::new();
        let mut sources: BTreeMap<String, At<raw::Source>> = BTreeMap::new();
        let mut plans: BTreeMap<String, At<raw::Plan>> = BTreeMap::new();
        let mut settings = None;
        for (i, (file, f)) in files.iter().enumerate() {
            if let Some(s) = &f.settings {
                if i == 0 {
                    settings = Some(s.clone());
                } else {
                    let d = self.texts[*file].whole(
                        "[settings] may only be in the main config file",
                        Some(format!(
                            "move it to {}",
                            self.texts[files[0].0].path.display()
                        )),
                    );
                    self.problems.push(d);
                }
            }
            self.merge(
                "repository",
                "repositories",
                *file,
                &f.repositories,
                &mut repos,
            );
            self.merge("source", "sources", *file, &f.sources, &mut sources);
            self.merge("plan", "plans", *file, &f.plans, &mut plans);
        }
        let settings = settings.unwrap_or_default();
        if let Some((main, _)) = files.first() {
            self.probe_web_files(*main, &settings);
        }
        let settings = self.settings(files.first().map(|f| f.0), settings);
        let broken = self.broken.clone();
        let repositories: BTreeMap<String, Repository> = repos
            .iter()
            .filter(|(name, at)| !broken.contains(&(at.file, "repositories", name.to_string())))
            .filter_map(|(name, at)| Some((name.clone(), self.repository(name, at)?)))
            .collect();
        let sources_ok: BTreeMap<String, Source> = sources
            .iter()
            .filter(|(name, at)| !broken.contains(&(at.file, "sources", name.to_string())))
            .filter_map(|(name, at)| Some((name.clone(), self.source(name, at)?)))
            .collect();
        let plans_ok: BTreeMap<String, Plan> = plans
            .iter()
            .filter(|(name, at)| !broken.contains(&(at.file, "plans", name.to_string())))
            .filter_map(|(name, at)| {
                Some((
                    name.clone(),
                    self.plan(name, at, &repos, &sources, &sources_ok, &settings)?,
                ))
            })
            .collect();
        Config {
            files: self.texts.iter().map(|t| t.path.clone()).collect(),
            settings,
            repositories,
            sources: sources_ok,
            plans: plans_ok,
        }
    }

    fn merge<'b, T>(
        &mut self,
        what: &str,
        table: &str,
        file: usize,
        entries: &'b BTreeMap<String, Spanned<T>>,
        into: &mut BTreeMap<String, At<'b, T>>,
    ) {
        for (name, value) in entries {
            if let Some(first) = into.get(name) {
                let first_at = self.texts[first.file].at(first.value.span().start, "", None);
                self.error(
                    file,
                    value,
                    format!(
                        "{what} `{name}` is already defined at {}:{}",
                        first_at.file.display(),
                        first_at.line
                    ),
                    Some(format!(
                        "define [{table}.{name}] once, or give this one another name"
                    )),
                );
                continue;
            }
            if !valid_name(name) {
                self.error(
                    file,
                    value,
                    format!("{what} name `{name}` is not allowed"),
                    Some(
                        "use letters, digits, `-` and `_` (it becomes part of file and unit names)"
                            .into(),
                    ),
                );
                continue;
            }
            into.insert(name.clone(), At { file, value });
        }
    }

    fn repository(&mut self, name: &str, at: &At<raw::Repository>) -> Option<Repository> {
        let f = at.file;
        let r = at.value.get_ref();
        let before = self.errors();
        let url = r.url.get_ref().trim().to_string();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        const SCHEMES: [&str; 6] = ["local", "sftp", "s3", "b2", "rest", "rclone"];
        if url.is_empty() {
            self.error(
                f,
                &r.url,
                format!("repository `{name}` has an empty url"),
                Some("e.g. url = \"/srv/backup/repo\" or \"b2:bucket:path\"".into()),
            );
        } else if !url.starts_with('/') && !SCHEMES.contains(&scheme) {
            let help = match closest(scheme, SCHEMES) {
                Some(c) if !scheme.is_empty() => format!("did you mean `{c}:`?"),
                _ => "use an absolute path, or sftp:, s3:, b2:, rest:, rclone:".into(),
            };
            self.error(f, &r.url, format!("repository `{name}`: {url:?} is neither an absolute path nor a known repository type"), Some(help));
        }
        if has_url_password(&url) {
            self.error_secret(
                f,
                &r.url,
                format!("repository `{name}`: inline secret in the url"),
                Some("keep the URL without user:password and put RESTIC_REST_USERNAME / RESTIC_REST_PASSWORD in env-file".into()),
            );
        }
        if let Some(p) = &r.password {
            self.error_secret(
                f,
                p,
                format!("repository `{name}`: inline secret `password`"),
                Some("passwords do not belong in config files: use password-file = \"/etc/cairn/NAME.pass\" (mode 0600), password-command or password-env".into()),
            );
        }
        let given: Vec<(&str, &Spanned<String>)> = [
            ("password-file", &r.password_file),
            ("password-command", &r.password_command),
            ("password-env", &r.password_env),
            ("password-credential", &r.password_credential),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let password = match given.as_slice() {
            [] => {
                if r.password.is_none() {
                    self.error(f, at.value, format!("repository `{name}` has no password source"), Some("add password-file = \"/path\", password-command = \"...\", password-env = \"VAR\" or password-credential = \"NAME\" (systemd LoadCredential=)".into()));
                }
                None
            }
            [(k, v)] => Some(match *k {
                "password-file" => {
                    let p = self.path(f, v.get_ref());
                    let key = format!("repositories.{name}.password-file");
                    self.probe(
                        f,
                        v,
                        &key,
                        "password file",
                        &p,
                        "create it (mode 0600) or fix the path",
                        false,
                    );
                    Password::File(p)
                }
                "password-command" => Password::Command(v.get_ref().clone()),
                "password-credential" => {
                    let n = v.get_ref();
                    self.credential(f, name, "password-credential", v);
                    Password::Credential(n.clone())
                }
                _ => Password::Env(v.get_ref().clone()),
            }),
            more => {
                let keys: Vec<&str> = more.iter().map(|(k, _)| *k).collect();
                self.error(
                    f,
                    more[1].1,
                    format!("repository `{name}` has {} password sources", keys.len()),
                    Some(format!("keep one of {}", keys.join(", "))),
                );
                None
            }
        };
        let env_file = r.env_file.as_ref().map(|e| {
            let p = self.path(f, e.get_ref());
            let key = format!("repositories.{name}.env-file");
            let missing = "create it (mode 0600, KEY=VALUE lines) or fix the path";
            if self.probe(f, e, &key, "env-file", &p, missing, false) {
                if let Err(err) = read_env_file(&p) {
                    self.error(
                        f,
                        e,
                        format!("{key}: {err}"),
                        Some("lines are KEY=VALUE (comments with #, optional `export `)".into()),
                    );
                }
            }
            p
        });
        if let Some(c) = &r.env_credential {
            self.credential(f, name, "env-credential", c);
        }
        if let Some(c) = &r.env_command {
            if c.get_ref().trim().is_empty() {
                self.error(
                    f,
                    c,
                    format!("repository `{name}`: env-command is empty"),
                    Some("give a command printing KEY=VALUE lines, e.g. env-command = \"pass show backup/s3.env\", or remove the key".into()),
                );
            }
        }
        let mut env = BTreeMap::new();
        for (k, v) in &r.env {
            if looks_secret(k) {
                self.error_secret(
                    f,
                    v,
                    format!("repository `{name}`: inline secret `env.{k}`"),
                    Some("put secrets in env-file (mode 0600), not in the config".into()),
                );
            }
            env.insert(k.clone(), v.get_ref().clone());
        }
        if self.errors() > before {
            return None;
        }
        Some(Repository {
            name: name.to_string(),
            url,
            password: password?,
            env_file,
            env_credential: r.env_credential.as_ref().map(|c| c.get_ref().clone()),
            env_command: r.env_command.as_ref().map(|c| c.get_ref().clone()),
            env,
            options: r.options.clone(),
            limit_upload: r.limit_upload,
            limit_download: r.limit_download,
            cache_dir: r.cache_dir.as_ref().map(|c| self.path(f, c)),
            defined_in: self.texts[f].path.clone(),
        })
    }

    /// A systemd credential named by `key`: a valid name; when cairn runs with credentials
    /// (and not offline), one that exists and reads as what `key` needs.
    fn credential(&mut self, f: usize, repo: &str, key: &str, v: &Spanned<String>) {
        let n = v.get_ref();
        if !super::secrets::valid_credential_name(n) {
            self.error(
                f,
                v,
                format!("repository `{repo}`: {key} {n:?} is not a credential name"),
                Some(
                    "the name of LoadCredential=NAME:/path in the unit: a file name, without `/`"
                        .into(),
                ),
            );
            return;
        }
        if self.opts.offline || std::env::var_os(super::secrets::CREDENTIALS_DIRECTORY).is_none() {
            // Checked where it runs: a person's shell has no credentials directory.
            return;
        }
        let read = super::secrets::credential_path(key, n).and_then(|p| {
            if key == "env-credential" {
                read_env_file(&p).map(|_| ())
            } else {
                std::fs::read(&p)
                    .map(|_| ())
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))
            }
        });
        if let Err(e) = read {
            self.error(
                f,
                v,
                format!("repository `{repo}`: {e}"),
                Some(format!(
                    "load it in the unit with LoadCredential={n}:/path, or fix the name"
                )),
            );
        }
    }

    /// Whether the file `p` that the config names at `key` (`at` in file `f`) can be
    /// read; if not, says why — missing or not allowed — and what to do, as an error or a
    /// warning. Offline, nothing is looked at (false: not known to be readable).
    #[allow(clippy::too_many_arguments)]
    fn probe(
        &mut self,
        f: usize,
        at: &Spanned<String>,
        key: &str,
        what: &str,
        p: &Path,
        missing: &str,
        warning: bool,
    ) -> bool {
        if self.opts.offline {
            return false;
        }
        let Err(e) = std::fs::File::open(p).and_then(|mut file| {
            let mut byte = [0u8; 1];
            std::io::Read::read(&mut file, &mut byte)
        }) else {
            return true;
        };
        let (why, help) = super::words::unreadable(p, &e, missing);
        let msg = format!(
            "{key}: {}",
            why.replacen("cannot read", &format!("cannot read {what}"), 1)
        );
        let help =
            format!("{help}; `cairn config check --offline` skips this check on another machine");
        if warning {
            self.warn(f, at, msg, Some(help));
        } else {
            self.error(f, at, msg, Some(help));
        }
        false
    }

    /// The web UI's files (tokens, password hashes): read when someone logs in, so one
    /// that cannot be read is a warning — the UI refuses those logins until it can.
    fn probe_web_files(&mut self, f: usize, s: &raw::Settings) {
        let Some(w) = &s.web else { return };
        if let Some(t) = &w.tokens_file {
            let p = self.path(f, t.get_ref());
            let missing = "create it (mode 0600, lines `NAME ROLE TOKEN`) or fix the path; until then no token is accepted";
            self.probe(
                f,
                t,
                "settings.web.tokens-file",
                "tokens file",
                &p,
                missing,
                true,
            );
        }
        for (user, u) in &w.users {
            if let Some(h) = &u.get_ref().password_hash_file {
                let p = self.path(f, h.get_ref());
                let key = format!("settings.web.users.{user}.password-hash-file");
                let missing = format!("write it with `cairn web hash-password > {}` or fix the path; until then {user} cannot log in", p.display());
                self.probe(f, h, &key, "password hash file", &p, &missing, true);
            }
        }
    }

    fn errors(&self) -> usize {
        self.problems.iter().filter(|d| !d.warning).count()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `scheme://user:password@host` with a password.
fn has_url_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Whether a variable or option name looks like it holds a secret.
pub(crate) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    if k.ends_with("_ID")
        || k.ends_with("KEY_ID")
        || k.ends_with("USERNAME")
        || k.ends_with("_USER")
    {
        return false;
    }
    ["SECRET", "PASSWORD", "PASS", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised() {
        assert!(has_url_password("rest:https://u:p@host/x"));
        assert!(!has_url_password("rest:https://host/x"));
        assert!(!has_url_password("sftp:user@host:/x"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY"));
        assert!(looks_secret("B2_ACCOUNT_KEY"));
        assert!(!looks_secret("AWS_ACCESS_KEY_ID"));
        assert!(!looks_secret("AWS_DEFAULT_REGION"));
    }
}
