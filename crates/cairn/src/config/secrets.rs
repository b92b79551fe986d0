//! Reading what a repository's config points at for its secrets, at the moment they are
//! needed: systemd credentials (`password-credential`, `env-credential`, read from
//! `$CREDENTIALS_DIRECTORY`, which a unit's `LoadCredential=` fills), env files, and the
//! output of an `env-command`.
//!
//! Values are returned to the caller, which hands them to a backend or a child's
//! environment only: nothing here prints or logs, and no error message carries a value
//! (they name the config key, the file or the command's failure, and what to do).
//!
//! An `env-command` runs without a shell when it is plain words (`pass show backup/s3`),
//! with `sh -c` when it uses shell syntax (quotes, `$VAR`, pipes; `password-command` is
//! always run by `sh -c`, which gives the same result for both), in its own process group
//! with stdin closed, and is killed with its group after [`ENV_COMMAND_TIMEOUT`].

use super::model::Repository;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variable systemd sets to the directory of a unit's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// How long an `env-command` may take (a secret store waiting for a prompt that nobody
/// will answer must not hang a nightly run).
pub const ENV_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this much of a failed command's stderr goes into the error.
const STDERR_MAX: usize = 2000;

/// Whether `name` can be a systemd credential name (a file name in the credentials
/// directory).
pub fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        // `:` separates a credential's name from its path in `LoadCredential=`.
        && !name.contains(['/', '\0', ':'])
}

/// The file of the systemd credential `name`, named by config key `key`: it must exist.
pub fn credential_path(key: &str, name: &str) -> Result<PathBuf, String> {
    let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty()) else {
        return Err(format!(
            "{key} {name:?}: CREDENTIALS_DIRECTORY is not set (cairn is not running in a \
             systemd unit that loads credentials): set LoadCredential={name}:/path/to/secret \
             in the unit, or use {} instead",
            alternative(key)
        ));
    };
    let path = PathBuf::from(dir).join(name);
    match std::fs::metadata(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{key} {name:?}: {} does not exist: the unit loads no credential of that name \
             (set LoadCredential={name}:/path/to/secret, with the same name as in the config)",
            path.display()
        )),
        Err(e) => Err(format!(
            "{key} {name:?}: cannot read {}: {e}",
            path.display()
        )),
    }
}

fn alternative(key: &str) -> &'static str {
    if key.starts_with("env") {
        "env-file"
    } else {
        "password-file"
    }
}

/// The backend environment of `rc`, in the order later values win: its `env-file`, its
/// `env-credential`, its `env-command`'s output, then its `env`. The command runs with
/// cairn's environment plus what the files gave. Errors name the key.
pub fn repository_env(rc: &Repository) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    if let Some(f) = &rc.env_file {
        env.extend(super::read_env_file(f)?);
    }
    if let Some(name) = &rc.env_credential {
        let path = credential_path("env-credential", name)?;
        env.extend(super::read_env_file(&path).map_err(|e| format!("env-credential: {e}"))?);
    }
    if let Some(cmd) = &rc.env_command {
        let got = run_env_command(cmd, &env, ENV_COMMAND_TIMEOUT)?;
        env.extend(got);
    }
    env.extend(rc.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// Whether a command needs `sh -c`: anything beyond words separated by spaces.
fn needs_shell(cmd: &str) -> bool {
    cmd.chars().any(|c| {
        matches!(
            c,
            '|' | '&'
                | ';'
                | '<'
                | '>'
                | '('
                | ')'
                | '$'
                | '`'
                | '\\'
                | '"'
                | '\''
                | '*'
                | '?'
                | '['
                | ']'
                | '#'
                | '~'
                | '='
                | '{'
                | '}'
                | '\n'
                | '\t'
        )
    })
}

/// Runs an `env-command` with `env` added to cairn's environment and parses its stdout as
/// `KEY=VALUE` lines. Fails, naming `env-command`, when it cannot start, exits non-zero,
/// outlives `timeout` or prints something else; its stdout never appears in an error.
pub fn run_env_command(
    cmd: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Vec<(String, String)>, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err("env-command is empty: give a command printing KEY=VALUE lines".into());
    };
    let mut command = if needs_shell(cmd) {
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd);
        c
    } else {
        let mut c = Command::new(first);
        c.args(&words[1..]);
        c
    };
    let mut child = command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            format!("env-command: cannot start {first:?}: {e} (is it installed and on PATH?)")
        })?;
    // Read both pipes in threads: a command filling one must not block while we wait.
    // The output arrives over a channel so that waiting for it is bounded too.
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "env-command timed out after {} and was killed (does it wait for a prompt or a locked secret store?)",
                    super::format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("env-command: waiting for it: {e}")),
        }
    };
    // The group is done with the pipes once its leader exited, unless a child of it
    // lives on with them: end those too, so the readers finish.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    // A process that left the group (setsid) may still hold a pipe: give up on the
    // output at the deadline rather than wait for it forever.
    let deadline = start + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let timed_out = || {
        format!(
            "env-command timed out after {}: a process it started keeps its output open",
            super::format_duration(timeout)
        )
    };
    let stdout = out.recv_timeout(left()).map_err(|_| timed_out())?;
    let stderr = err.recv_timeout(left()).map_err(|_| timed_out())?;
    if !status.success() {
        let e = String::from_utf8_lossy(&stderr);
        let e = e.trim();
        let e = crate::ops::repos::truncate(e, STDERR_MAX);
        return Err(format!(
            "env-command failed ({status}){}",
            if e.is_empty() {
                String::new()
            } else {
                format!(": {e}")
            }
        ));
    }
    let text = String::from_utf8(stdout).map_err(|_| {
        "env-command printed something that is not text: it must print KEY=VALUE lines".to_string()
    })?;
    super::parse_env(&text, "env-command output, line")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_run_without_a_shell_and_shell_syntax_with_one() {
        assert!(!needs_shell("pass show backup/s3"));
        assert!(!needs_shell("/usr/bin/secret-tool lookup service s3"));
        assert!(needs_shell("printf 'A=%s\\n' \"$X\""));
        assert!(needs_shell("cat /run/keys | grep AWS"));
        let env = vec![("V".to_string(), "from-file".to_string())];
        let got = run_env_command(
            "printf 'A=1\\nexport B=\"two words\"\\nC=%s\\n' \"$V\"",
            &env,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "from-file".into())
            ]
        );
        // Plain words are the argv of the program itself.
        let got = run_env_command("printenv V", &env, Duration::from_secs(10)).unwrap_err();
        assert!(
            got.contains("expected KEY=VALUE") && !got.contains("from-file"),
            "{got}"
        );
    }

    #[test]
    fn a_failing_hanging_or_garbled_env_command_is_an_error_without_its_output() {
        let e = run_env_command(
            "sh -c 'echo SECRET=hunter2; echo no such entry >&2; exit 3'",
            &[],
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.starts_with("env-command failed"), "{e}");
        assert!(e.contains("no such entry") && !e.contains("hunter2"), "{e}");
        let t = Instant::now();
        let e = run_env_command("sleep 30", &[], Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
        // A grandchild holding the pipes does not hang it either.
        let t = Instant::now();
        let e = run_env_command(
            "sh -c 'sleep 30 & exit 0'; exit 1",
            &[],
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
        // Nor one that left the group (setsid) with the pipes: bounded by the timeout.
        // The leader waits until the other has left the group (under load it may not have
        // yet, and would then die with the group and close the pipes in time).
        let t = Instant::now();
        let e = run_env_command(
            "f=$(mktemp -u); setsid sh -c \"touch $f; exec sleep 30\" & \
             while [ ! -e \"$f\" ]; do sleep 0.01; done; rm -f \"$f\"; echo A=b",
            &[],
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
        // A bare value ending in '=' (base64) is not echoed as a variable name.
        let e = run_env_command("echo hunter2/x+y==", &[], Duration::from_secs(10)).unwrap_err();
        assert!(
            e.contains("not a variable name") && !e.contains("hunter2"),
            "{e}"
        );
        let e = run_env_command("echo hunter2", &[], Duration::from_secs(10)).unwrap_err();
        assert!(
            e.contains("expected KEY=VALUE") && !e.contains("hunter2"),
            "{e}"
        );
        let e = run_env_command("no-such-command-xyz", &[], Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("cannot start"), "{e}");
    }

    #[test]
    fn credentials_are_files_of_the_credentials_directory() {
        assert!(valid_credential_name("restic-pw"));
        for bad in ["", ".", "..", "a/b", "a:/etc/b"] {
            assert!(!valid_credential_name(bad), "{bad:?}");
        }
    }
}
