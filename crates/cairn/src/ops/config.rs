//! The merged config as people may see it: `cairn config show` and the web's `/config` and
//! `GET /api/config` all show [`redacted`], so a secret hidden from one is hidden from all.
//!
//! What is a secret, and why:
//! - repository `env` values: all of them. `env` exists for backend credentials; a key the
//!   validator lets through (`AWS_ACCESS_KEY_ID`, `B2_ACCOUNT_ID`) is half of a credential
//!   pair. The names stay, so a reader sees which variables are set.
//! - repository `options` whose name looks secret (`...password`, `...token`, `...key`).
//! - credentials in URLs (`rest:https://user:pass@host/`, `s3:https://key:secret@host/`):
//!   the part after `user:`. The validator refuses them, this is the second fence.
//! - notification URLs: everything after the host. A healthchecks UUID, an ntfy topic, a
//!   webhook path *is* the credential (whoever knows it can ping or read), and a token in
//!   the userinfo or the query is dropped with it.
//! - inside commands (hooks, `password-command`, database dumps): URLs the same way as
//!   notification URLs (a `curl https://hc-ping.com/<uuid>` hook is common), and
//!   `NAME=value` / `--name=value` words whose name looks secret (`PGPASSWORD=...`,
//!   `--password=...`).
//!
//! What is shown: password *file* paths, `password-env` variable names and
//! `password-command` commands. They say where the password comes from, not what it is,
//! and that is what a reader needs to debug "wrong password" (a viewer can see the same
//! text in the config's git repository). The exception is a command that is the secret
//! in disguise: `echo`/`printf` arguments are hidden.
//!
//! Nothing here reads files or prints.

use crate::config::{Config, Notify, Password};

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The config with every secret replaced by [`REDACTED`]; the shape and everything else
/// is unchanged, so it serializes like the config itself.
pub fn redacted(c: &Config) -> Config {
    let mut c = c.clone();
    notify(&mut c.settings.notify);
    for r in c.repositories.values_mut() {
        r.url = repository_url(&r.url);
        for v in r.env.values_mut() {
            *v = REDACTED.to_string();
        }
        for (k, v) in r.options.iter_mut() {
            *v = if crate::config::looks_secret(k) {
                REDACTED.to_string()
            } else {
                command(v)
            };
        }
        if let Password::Command(cmd) = &mut r.password {
            *cmd = password_command(cmd);
        }
        if let Some(cmd) = &mut r.env_command {
            *cmd = password_command(cmd);
        }
    }
    for s in c.sources.values_mut() {
        hooks(&mut s.hooks);
        for d in s.dumps.iter_mut() {
            d.command = command(&d.command);
        }
    }
    for p in c.plans.values_mut() {
        notify(&mut p.notify);
        for (_, h) in p.hooks.iter_mut() {
            hooks(h);
        }
        for d in p.dumps.iter_mut() {
            d.command = command(&d.command);
        }
        if let Some(c) = p.restore_test.as_mut().and_then(|rt| rt.command.as_mut()) {
            *c = command(c);
        }
    }
    c
}

fn notify(n: &mut Notify) {
    for u in [&mut n.healthchecks, &mut n.ntfy, &mut n.webhook]
        .into_iter()
        .flatten()
    {
        *u = command(u);
        if !u.contains("://") {
            // Not a URL (the validator refuses it): nothing of it can be shown safely.
            *u = REDACTED.to_string();
        }
    }
}

fn hooks(h: &mut crate::config::Hooks) {
    for list in [
        &mut h.before,
        &mut h.after,
        &mut h.success,
        &mut h.failure,
        &mut h.finally,
        &mut h.before_restore,
        &mut h.after_restore,
    ] {
        for cmd in list.iter_mut() {
            *cmd = command(cmd);
        }
    }
}

/// A repository URL with the password of its userinfo hidden: the rest (scheme, user,
/// host, path) says where the repository is and is not secret.
pub fn repository_url(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(i + 3);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}"),
                None => userinfo.to_string(),
            };
            format!("{head}{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// `password-command`: shown, except the arguments of `echo`/`printf`.
fn password_command(cmd: &str) -> String {
    // `echo`/`printf` anywhere as a command word (also inside `sh -c "..."`).
    let starts_word = |i: usize| {
        cmd[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "\"'(;|&".contains(c))
    };
    for word in ["echo", "printf"] {
        for (i, _) in cmd.match_indices(word) {
            let after = &cmd[i + word.len()..];
            if starts_word(i) && after.starts_with(char::is_whitespace) {
                return format!("{}{word} {REDACTED}", &cmd[..i]);
            }
        }
    }
    command(cmd)
}

/// Command text (or a URL) with its secrets hidden: every URL becomes
/// `scheme://host/<redacted>` (userinfo, path, query dropped); a `NAME=value` or
/// `--name=value` word whose name looks secret becomes `NAME=<redacted>`, and so does the
/// word after a secret-looking flag (`--password xyz`), after `Bearer`/`Basic`, and the
/// password of `-u user:password` / `--user user:password`. Words are split like a shell
/// does at whitespace outside quotes, so a quoted value is hidden whole, and a quoted
/// script (`sh -c '...'`) is redacted word by word.
pub fn command(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut prev = String::new();
    let mut quote: Option<char> = None;
    let flush = |word: &mut String, prev: &mut String, out: &mut String| {
        if !word.is_empty() {
            out.push_str(&word_after(prev, word));
            *prev = std::mem::take(word);
        }
    };
    for c in text.chars() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                flush(&mut word, &mut prev, &mut out);
                out.push(c);
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut prev, &mut out);
    out
}

/// `word` redacted, knowing the word before it.
fn word_after(prev: &str, word: &str) -> String {
    let p = prev.trim_matches(['"', '\'']);
    let bare = p.trim_start_matches('-');
    let lower = p.to_ascii_lowercase();
    if lower.ends_with("bearer") || lower.ends_with("basic") {
        return REDACTED.to_string();
    }
    if p == "-u" || p == "--user" {
        if let Some((user, _)) = word.split_once(':') {
            return format!("{user}:{REDACTED}");
        }
    }
    if p.starts_with('-')
        && !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && crate::config::looks_secret(&bare.replace('-', "_"))
    {
        return REDACTED.to_string();
    }
    word_redacted(word)
}

fn word_redacted(word: &str) -> String {
    if let Some((name, _)) = word.split_once('=') {
        let bare = name.trim_start_matches(['"', '\'']).trim_start_matches('-');
        if !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && crate::config::looks_secret(&bare.replace('-', "_"))
        {
            // A quote opened before the name is closed again.
            let close = name.chars().next().filter(|c| *c == '"' || *c == '\'');
            return format!(
                "{name}={REDACTED}{}",
                close.map(String::from).unwrap_or_default()
            );
        }
    }
    // A quoted script (`sh -c '...'`): its own words.
    for q in ['"', '\''] {
        if let Some(inner) = word.strip_prefix(q).and_then(|w| w.strip_suffix(q)) {
            if inner.contains(char::is_whitespace) {
                return format!("{q}{}{q}", command(inner));
            }
        }
    }
    if let Some(i) = word.find("://") {
        let start = word[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map(|j| j + 1)
            .unwrap_or(0);
        let authority_start = i + 3;
        let after = &word[authority_start..];
        let url_end = after.find(['"', '\'', ')', ';']).unwrap_or(after.len());
        let url = &after[..url_end];
        let host_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let host = url[..host_end]
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(&url[..host_end]);
        let tail = if url[host_end..].trim_matches('/').is_empty() {
            url[host_end..].to_string()
        } else {
            format!("/{REDACTED}")
        };
        return format!(
            "{}{}{host}{tail}{}",
            &word[..start],
            &word[start..authority_start],
            word_redacted(&after[url_end..])
        );
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};
    use std::path::PathBuf;

    /// A valid config; the tests then plant every kind of secret into it (some of which
    /// the validator would refuse in the text, to prove the second fence).
    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(
            &path,
            "[settings]\nnotify = { healthchecks = \"https://hc-ping.com/1111-uuid-settings\" }\n\
             [repositories.nas]\nurl = \"rest:https://alice@nas:8000/repo/\"\npassword-file = \"/etc/cairn/nas.pass\"\n\
             env = { AWS_ACCESS_KEY_ID = \"AKIAKEYIDSECRET\" }\n\
             [repositories.cloud]\nurl = \"s3:https://s3.example.com/bucket\"\npassword-command = \"pass show backup/cloud\"\n\
             [repositories.lazy]\nurl = \"/srv/lazy\"\npassword-command = \"echo hunter2-lazy\"\n\
             [repositories.envpw]\nurl = \"/srv/envpw\"\npassword-env = \"NAS_PASSWORD_VAR\"\n\
             [sources.db]\npaths = [\"/var/lib/db\"]\nhooks = { before = [\"PGPASSWORD=pg-secret-1 psql -c 'CHECKPOINT'\"] }\n\
             [plans.nightly]\nrepository = \"nas\"\nsources = [\"db\"]\n\
             hooks = { success = [\"curl -fsS \\\"https://hc-ping.com/2222-uuid-hook\\\"\"], failure = [\"notify --api-token=tok-3333 x\"] }\n\
             notify = { ntfy = \"https://user:ntfy-tok-4444@ntfy.sh/topic-5555?auth=q-6666\", webhook = \"https://hooks.example.com/services/T0/B0/web-7777\" }\n",
        )
        .unwrap();
        let (mut c, _) = load(&path, LoadOptions { offline: true }).unwrap();
        // Refused by the validator, planted to test the second fence.
        let nas = c.repositories.get_mut("nas").unwrap();
        nas.url = "rest:https://alice:url-pass-8888@nas:8000/repo/".into();
        nas.env
            .insert("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-9999".into());
        nas.options
            .insert("s3.sse-customer-key".into(), "sse-key-1010".into());
        nas.options
            .insert("sftp.command".into(), "ssh -i /root/.ssh/id nas".into());
        c.plans
            .get_mut("nightly")
            .unwrap()
            .dumps
            .push(crate::sources::Dump {
                source: "db".into(),
                path: PathBuf::from("/dump/x.sql"),
                command: "mysqldump --password=my-pw-1212 --all-databases".into(),
                engine: crate::sources::DbEngine::Mysql,
                database: None,
                conn: Default::default(),
            });
        c
    }

    const SECRETS: &[&str] = &[
        "1111-uuid-settings",
        "AKIAKEYIDSECRET",
        "hunter2-lazy",
        "pg-secret-1",
        "2222-uuid-hook",
        "tok-3333",
        "ntfy-tok-4444",
        "topic-5555",
        "q-6666",
        "web-7777",
        "url-pass-8888",
        "aws-secret-9999",
        "sse-key-1010",
        "my-pw-1212",
    ];

    #[test]
    fn every_kind_of_secret_is_hidden_and_the_rest_is_shown() {
        let c = config();
        let before = serde_json::to_string(&c).unwrap();
        for s in SECRETS {
            assert!(before.contains(s), "the test config lacks {s}");
        }
        let r = redacted(&c);
        let after = serde_json::to_string(&r).unwrap();
        for s in SECRETS {
            assert!(!after.contains(s), "{s} shown in {after}");
        }
        let toml = toml::to_string_pretty(&r).unwrap();
        for s in SECRETS {
            assert!(!toml.contains(s), "{s} shown in the TOML form");
        }
        // Not secrets: where things are and where passwords come from.
        let nas = &r.repositories["nas"];
        assert_eq!(nas.url, "rest:https://alice:<redacted>@nas:8000/repo/");
        assert!(
            matches!(&nas.password, Password::File(p) if p == &PathBuf::from("/etc/cairn/nas.pass"))
        );
        assert_eq!(nas.env["AWS_ACCESS_KEY_ID"], REDACTED);
        assert_eq!(nas.options["sftp.command"], "ssh -i /root/.ssh/id nas");
        assert!(
            matches!(&r.repositories["cloud"].password, Password::Command(c) if c == "pass show backup/cloud")
        );
        assert!(
            matches!(&r.repositories["lazy"].password, Password::Command(c) if c == "echo <redacted>")
        );
        assert!(
            matches!(&r.repositories["envpw"].password, Password::Env(v) if v == "NAS_PASSWORD_VAR")
        );
        assert_eq!(
            r.repositories["cloud"].url,
            "s3:https://s3.example.com/bucket"
        );
        let n = &r.plans["nightly"].notify;
        assert_eq!(n.ntfy.as_deref(), Some("https://ntfy.sh/<redacted>"));
        assert_eq!(
            n.webhook.as_deref(),
            Some("https://hooks.example.com/<redacted>")
        );
        assert_eq!(
            r.settings.notify.healthchecks.as_deref(),
            Some("https://hc-ping.com/<redacted>")
        );
        assert_eq!(r.files, c.files);
    }

    #[test]
    fn commands_keep_their_shape() {
        assert_eq!(
            command("curl -fsS -m 10 \"https://hc-ping.com/abc/fail\" && true"),
            "curl -fsS -m 10 \"https://hc-ping.com/<redacted>\" && true"
        );
        assert_eq!(
            command("PGPASSWORD='x y' pg_dump"),
            "PGPASSWORD=<redacted> pg_dump"
        );
        assert_eq!(
            command("sh -c 'x TOKEN=abc && curl \"https://h/u\"'"),
            "sh -c 'x TOKEN=<redacted> && curl \"https://h/<redacted>\"'"
        );
        assert_eq!(command("ls -la /tmp"), "ls -la /tmp");
        assert_eq!(command("https://host/"), "https://host/");
        assert_eq!(
            command("x --db-password=\"p q\" y"),
            "x --db-password=<redacted> y"
        );
        assert_eq!(command("x \"--token=p q\" y"), "x \"--token=<redacted>\" y");
        assert_eq!(
            command("curl -H \"Authorization: Bearer abc.def\" -u bob:pw1 --token t2 https://x"),
            "curl -H \"Authorization: Bearer <redacted>\" -u bob:<redacted> --token <redacted> https://x"
        );
        assert_eq!(
            password_command("sh -c \"echo pw3\""),
            "sh -c \"echo <redacted>"
        );
        assert_eq!(password_command("printf '%s' pw4"), "printf <redacted>");
        assert_eq!(password_command("pass show echo/x"), "pass show echo/x");
        assert_eq!(repository_url("sftp:user@host:/srv"), "sftp:user@host:/srv");
        assert_eq!(repository_url("/srv/repo"), "/srv/repo");
    }
}
