//! Bearer tokens of `tokens-file`, re-read when the file (or its permissions) changes.

use super::*;

/// Bearer tokens shorter than this are not accepted (they could be guessed).
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// The bearer tokens of `tokens-file`, re-read when the file changes.
#[derive(Default)]
pub(super) struct Tokens {
    /// The file as last read.
    stamp: Option<TokensStamp>,
    entries: Vec<(String, Role, String)>,
    /// The file's absence was logged (once, until it is back).
    missing_logged: bool,
}

/// What tells that the tokens file changed: its content (mtime, size, inode) or its
/// permissions (ctime, mode; a `chmod` changes only these).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct TokensStamp {
    modified: SystemTime,
    changed: (i64, i64),
    len: u64,
    ino: u64,
    mode: u32,
}

impl Auth {
    /// The caller of bearer token `token`, re-reading the tokens file when it changed.
    pub(super) fn bearer(&self, token: &str) -> Option<Caller> {
        let path = self.tokens_file.as_ref()?;
        let mut tokens = lock(&self.tokens);
        self.refresh_tokens(path, &mut tokens);
        let mut found = None;
        for (name, role, t) in &tokens.entries {
            if same_secret(t.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(Caller {
                    user: name.clone(),
                    role: *role,
                    csrf: String::new(),
                });
            }
        }
        found
    }

    pub(super) fn refresh_tokens(&self, path: &std::path::Path, tokens: &mut Tokens) {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                if !tokens.missing_logged {
                    eprintln!(
                        "web: cannot read tokens-file {}: {e}; no bearer token is accepted",
                        path.display()
                    );
                }
                *tokens = Tokens {
                    missing_logged: true,
                    ..Tokens::default()
                };
                return;
            }
        };
        tokens.missing_logged = false;
        let stamp = TokensStamp {
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            changed: (meta.ctime(), meta.ctime_nsec()),
            len: meta.len(),
            ino: meta.ino(),
            mode: meta.mode(),
        };
        if tokens.stamp == Some(stamp) {
            return;
        }
        tokens.stamp = Some(stamp);
        tokens.entries.clear();
        if meta.mode() & 0o077 != 0 {
            eprintln!(
                "web: not using tokens-file {}: group or others may access it (mode {:o}); run chmod 600 on it",
                path.display(),
                meta.mode() & 0o7777
            );
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("web: cannot read tokens-file {}: {e}", path.display());
                return;
            }
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let entry = match fields[..] {
                [name, role, token] => parse_role(role).map(|r| (name, r, token)),
                _ => None,
            };
            match entry {
                Some((_, _, token)) if token.len() < MIN_TOKEN_LEN => eprintln!(
                    "web: tokens-file {} line {}: the token is shorter than {MIN_TOKEN_LEN} characters; ignored",
                    path.display(),
                    n + 1
                ),
                Some((name, role, token)) => {
                    tokens
                        .entries
                        .push((name.to_string(), role, token.to_string()))
                }
                None => eprintln!(
                    "web: tokens-file {} line {}: expected `NAME ROLE TOKEN` with ROLE viewer or admin; ignored",
                    path.display(),
                    n + 1
                ),
            }
        }
    }
}
