//! SFTP through the system's `ssh`, like restic: `sftp:user@host:/path`,
//! `sftp://user@host:port/path`, or `-o sftp.command="ssh ... -s sftp"`. The user's ssh
//! config, agent, keys and known_hosts apply unchanged.
//!
//! We speak SFTP version 3 (what OpenSSH serves) over the ssh process's stdin/stdout. One
//! connection carries many requests at once: each request has an id, a reader thread hands
//! every answer to the thread waiting for that id, so all of the engine's threads share one
//! ssh session and reads/writes are pipelined (many 64 KiB requests in flight).
//!
//! Writes go to a temporary name, are fsynced (OpenSSH's fsync extension) and renamed into
//! place with `posix-rename`, so a file that exists is complete. A dead connection fails every
//! request waiting on it; the next attempt (see `retry`) starts a new ssh.
//!
//! `conn.rs`: the session (requests, replies, transfers); `wire.rs`: the packet format.

use super::limit::Limits;
use super::retry::Retry;
use super::{Backend, FileInfo, FileType};
use crate::error::{Error, Kind, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod conn;
#[cfg(test)]
mod tests;
mod wire;

use conn::*;
use wire::*;

/// Where the repository is and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Absolute, or relative to the login directory.
    pub path: String,
}

impl Spec {
    /// restic's forms: `user@host:/path`, `host:relative/path`, `//user@host:port/path`
    /// (from `sftp://...`).
    pub fn parse(spec: &str) -> Result<Spec> {
        let bad = || {
            Error::invalid(format!(
                "sftp:{spec}: expected sftp:user@host:/path or sftp://user@host:port/path"
            ))
        };
        let (userhost, port, path) = if let Some(rest) = spec.strip_prefix("//") {
            let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
            let (uh, port) = match authority.rsplit_once(':') {
                Some((uh, p)) => (uh, Some(p.parse::<u16>().map_err(|_| bad())?)),
                None => (authority, None),
            };
            (uh, port, format!("/{path}"))
        } else {
            let (uh, path) = spec.split_once(':').ok_or_else(bad)?;
            (uh, None, path.to_string())
        };
        let (user, host) = match userhost.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h.to_string()),
            None => (None, userhost.to_string()),
        };
        if host.is_empty() || path.is_empty() {
            return Err(bad());
        }
        Ok(Spec {
            user,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }
}

pub struct SftpBackend {
    spec: Spec,
    argv: Vec<String>,
    conn: Mutex<Option<Arc<Conn>>>,
    retry: Retry,
    limits: Arc<Limits>,
    timeout: Duration,
    /// Concurrent uploads: they share one pipelined SFTP session.
    connections: usize,
}

impl SftpBackend {
    /// `command`: `-o sftp.command` (whitespace-separated, like restic); `args`: extra ssh
    /// arguments (`-o sftp.args`).
    pub fn new(
        spec: Spec,
        command: Option<&str>,
        args: Option<&str>,
        retry: Retry,
        limits: Arc<Limits>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<SftpBackend> {
        let argv: Vec<String> = match command {
            Some(c) => shell_words(c),
            None => {
                let mut v = vec!["ssh".to_string()];
                // The user's own arguments first: for -o, ssh keeps the first value given.
                v.extend(args.map(shell_words).unwrap_or_default());
                // Bounded failure instead of a hang: connecting, dead peers, and (without a
                // terminal to ask on) password prompts.
                v.extend([
                    format!("-oConnectTimeout={}", connect_timeout.as_secs().max(1)),
                    "-oServerAliveInterval=15".to_string(),
                    "-oServerAliveCountMax=4".to_string(),
                ]);
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    v.push("-oBatchMode=yes".to_string());
                }
                if let Some(p) = spec.port {
                    v.extend(["-p".to_string(), p.to_string()]);
                }
                if let Some(u) = &spec.user {
                    v.extend(["-l".to_string(), u.clone()]);
                }
                v.extend([spec.host.clone(), "-s".to_string(), "sftp".to_string()]);
                v
            }
        };
        if argv.is_empty() {
            return Err(Error::invalid("-o sftp.command is empty"));
        }
        Ok(SftpBackend {
            spec,
            argv,
            conn: Mutex::new(None),
            retry,
            limits,
            timeout,
            connections: 5,
        })
    }

    /// Concurrent uploads (`-o sftp.connections`, default 5).
    pub fn with_connections(mut self, n: usize) -> SftpBackend {
        self.connections = n.max(1);
        self
    }

    fn conn(&self) -> Result<Arc<Conn>> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| Error::new(Kind::Io, "SFTP state poisoned"))?;
        if let Some(c) = slot.as_ref() {
            if !c.is_dead() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(Conn::start(&self.argv, self.timeout)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` on a live connection, reconnecting and retrying on transient failures.
    fn with<T>(&self, what: &dyn Fn() -> String, op: impl Fn(&Conn) -> Result<T>) -> Result<T> {
        self.retry.run(what, || {
            let c = self.conn()?;
            op(&c).map_err(|e| {
                if e.kind() == Kind::Network {
                    c.kill();
                }
                e.context(format!("sftp:{}", self.spec.host))
            })
        })
    }

    fn path(&self, t: FileType, name: &str) -> String {
        let root = &self.spec.path;
        match t {
            FileType::Config => format!("{root}/config"),
            FileType::Pack => format!("{root}/data/{}/{name}", name.get(..2).unwrap_or("00")),
            _ => format!("{root}/{}/{name}", t.dir()),
        }
    }
}

/// A whole file is read into memory at the size the server reports: refuse sizes no file
/// of that type can have before allocating them.
fn whole_file_size(t: FileType, size: u64, path: &str) -> Result<u64> {
    let max = super::http::max_file(t);
    if size > max {
        return Err(Error::corrupt(format!(
            "{path}: the SFTP server reports {size} bytes, more than any {kind} file may have ({max}); check the repository and the server",
            kind = if t == FileType::Config { "config" } else { t.dir() },
        )));
    }
    Ok(size)
}

fn shell_words(s: &str) -> Vec<String> {
    // Simple POSIX-like splitting: whitespace separates, quotes group.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Backend for SftpBackend {
    fn connections(&self) -> usize {
        self.connections
    }
    fn location(&self) -> String {
        match &self.spec.user {
            Some(u) => format!("sftp:{u}@{}:{}", self.spec.host, self.spec.path),
            None => format!("sftp:{}:{}", self.spec.host, self.spec.path),
        }
    }

    fn create(&self) -> Result<()> {
        if self.has_config()? {
            return Err(Error::invalid(format!(
                "{}: a repository already exists here (config file present)",
                self.location()
            )));
        }
        let root = self.spec.path.clone();
        self.with(&|| format!("creating {}", self.location()), |c| {
            // mkdir -p of the root, one component at a time.
            let mut at = String::new();
            for part in root.split('/') {
                if part.is_empty() {
                    if at.is_empty() {
                        at.push('/');
                    }
                    continue;
                }
                if !at.is_empty() && !at.ends_with('/') {
                    at.push('/');
                }
                at.push_str(part);
                if c.stat_size(&at).is_err() {
                    c.mkdir(&at)?;
                }
            }
            let mut dirs: Vec<String> = FileType::ALL
                .iter()
                .filter(|t| **t != FileType::Config)
                .map(|t| format!("{root}/{}", t.dir()))
                .collect();
            dirs.extend((0..=255u8).map(|i| format!("{root}/data/{i:02x}")));
            // Pipelined: parents first (the type directories), then data/xx all at once.
            for chunk in [&dirs[..5], &dirs[5..]] {
                let pending: Vec<_> = chunk
                    .iter()
                    .map(|d| {
                        let mut b = Vec::new();
                        put_str(&mut b, d.as_bytes());
                        put_u32(&mut b, ATTR_PERMISSIONS);
                        put_u32(&mut b, 0o700);
                        c.send(FXP_MKDIR, &b)
                    })
                    .collect::<Result<_>>()?;
                for (p, d) in pending.into_iter().zip(chunk) {
                    let pkt = c.wait(p)?;
                    if c.ok(pkt, d).is_err() {
                        c.stat_size(d)?; // exists already is fine
                    }
                }
            }
            Ok(())
        })
    }

    fn has_config(&self) -> Result<bool> {
        let p = self.path(FileType::Config, "");
        self.with(&|| format!("checking {p}"), |c| match c.stat_size(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == Kind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let dir = format!("{}/{}", self.spec.path, t.dir());
        let files = |entries: Vec<(String, Attrs)>| -> Vec<FileInfo> {
            entries
                .into_iter()
                .filter(|(n, a)| a.is_file() && !n.contains(".tmp-"))
                .map(|(name, a)| FileInfo {
                    name,
                    size: a.size.unwrap_or(0),
                })
                .collect()
        };
        if t != FileType::Pack {
            return self.with(&|| format!("listing {dir}"), |c| {
                Ok(files(c.list_dir(&dir)?))
            });
        }
        let subdirs: Vec<String> = self.with(&|| format!("listing {dir}"), |c| {
            Ok(c.list_dir(&dir)?
                .into_iter()
                .filter(|(_, a)| a.is_dir())
                .map(|(n, _)| format!("{dir}/{n}"))
                .collect())
        })?;
        // Many directories, listed by several threads over the one connection.
        let lists = crate::parallel::map(subdirs, 8, |d| {
            self.with(&|| format!("listing {d}"), |c| Ok(files(c.list_dir(&d)?)))
        })?;
        Ok(lists.into_iter().flatten().collect())
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let p = self.path(t, name);
        self.with(&|| format!("reading {p}"), |c| {
            let h = c.open(&p, OPEN_READ)?;
            let result = c
                .fstat_size(&h, &p)
                .and_then(|size| whole_file_size(t, size, &p))
                .and_then(|size| c.read_handle(&h, &p, 0, size, &self.limits));
            let closed = c.close(&h, &p);
            let data = result?;
            closed?;
            Ok(data)
        })
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.path(t, name);
        self.with(&|| format!("reading {p}"), |c| {
            c.read_range(&p, offset, len, &self.limits)
        })
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(t, name);
        self.with(&|| format!("writing {p}"), |c| {
            c.write_file(&p, data, &self.limits)
        })
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let p = self.path(t, name);
        self.with(&|| format!("removing {p}"), |c| {
            let pkt = c.path_op(FXP_REMOVE, &p)?;
            match c.ok(pkt, &p) {
                Err(e) if e.kind() != Kind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }
}
