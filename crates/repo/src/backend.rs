//! Storage backends: where a repository's files live.
//!
//! A backend stores opaque named files in the fixed restic layout (`config`, `keys/`,
//! `locks/`, `snapshots/`, `index/`, `data/`). It knows nothing of encryption or formats.
//! Every backend passes the one conformance suite in [`conformance`]. `write` must be atomic
//! and durable when it returns: the write order packs -> index -> snapshot relies on it.

pub mod b2;
pub mod cache;
pub mod http;
pub mod killswitch;
pub mod limit;
pub mod local;
pub mod rclone;
pub mod rest;
pub mod retry;
pub mod s3;
pub mod sftp;
pub mod wire;

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kinds of files in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Lock,
    Snapshot,
    Index,
    Pack,
}

impl FileType {
    /// The directory of this type in restic's layout (`config` is a file at the top).
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Lock => "locks",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
        }
    }

    pub const ALL: [FileType; 6] = [
        FileType::Config,
        FileType::Key,
        FileType::Lock,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ];
}

/// A stored file as listed: its name and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
}

/// Operations every backend provides. Implementations are safe to call from many threads.
pub trait Backend: Send + Sync {
    /// A human-readable location for messages (never includes secrets).
    fn location(&self) -> String;
    /// Creates the empty layout; fails if a repository (a `config` file) already exists.
    fn create(&self) -> Result<()>;
    /// True if a repository config exists here.
    fn has_config(&self) -> Result<bool>;
    /// All files of a type. The config is not listed.
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>>;
    /// The whole file. `name` is ignored for the config.
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes from `offset`; fails if the file is shorter.
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Like `read_range`, into `buf` (replacing its contents), so a caller reading many
    /// ranges reuses one buffer.
    fn read_range_into(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        *buf = self.read_range(t, name, offset, len)?;
        Ok(())
    }
    /// A hint that `len` bytes from `offset` will be read soon: a backend that can fetch
    /// them in the background (the local one asks the kernel to read them ahead) does;
    /// the default ignores it. Never fails: a later read reports any error.
    fn prefetch(&self, _t: FileType, _name: &str, _offset: u64, _len: u64) {}
    /// Stores a file atomically and durably. Names are content hashes, so writing an
    /// existing name again (same bytes) is allowed.
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()>;
    /// Deletes a file; deleting a missing file is not an error.
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
    /// Told the repository id once the config is decrypted (a cache keys its files by it).
    fn set_repository_id(&self, _id: &str) {}
    /// Told which packs hold tree blobs once the index is loaded (a cache keeps those).
    fn set_tree_packs(&self, _packs: std::collections::HashSet<String>) {}
    /// How many uploads may run at once. Local disks take them from the writing threads
    /// (1: no extra uploader threads); remote backends overlap network time with work.
    fn connections(&self) -> usize {
        1
    }
    /// True for a directory on this machine: a writer may then store a pack on whichever
    /// thread finished it, beside its uploader (see `writer`). A remote backend's
    /// connection count is a limit the user set, so it never gets more uploads at once.
    fn is_local(&self) -> bool {
        false
    }
    /// How `write` retries, for a backend whose server may lose the file of a retried
    /// upload (see [`write_renewing`]); `None` (the default): retrying `write` as it is
    /// is safe. S3 stores an object whole or not at all, SFTP and local directories write
    /// a temporary file and rename it, so only REST servers need this.
    fn renaming_retry(&self) -> Option<retry::Retry> {
        None
    }
    /// One attempt at `write`, without the backend's own retries: [`write_renewing`]
    /// retries itself, under a new name.
    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.write(t, name, data)
    }
}

/// A content-addressed file that can be sealed again with a fresh nonce: the same content
/// under a new name.
pub trait Renewable {
    fn name(&self) -> String;
    fn bytes(&self) -> &[u8];
    fn renew(&mut self);
}

/// Stores `file`; after a failed attempt, the next one is under a new name.
///
/// rest-server's changelog names the data loss this prevents ("interrupted network
/// connections"): the server still holds a broken upload when the client's retry of the
/// same name succeeds, and its cleanup of the broken one removes the file the retry wrote
/// (rclone serve restic writes in place and removes a failed upload's file; a test
/// reproduces it, `a_server_cleaning_up_a_broken_upload_late_loses_no_file`). A file under
/// a name no broken upload used cannot be taken that way. The abandoned names are removed
/// once the file is stored (a best effort: a broken upload the server finishes later is an
/// unreferenced file, which prune removes and `check` accepts).
pub fn write_renewing(backend: &dyn Backend, t: FileType, file: &mut dyn Renewable) -> Result<()> {
    let Some(retry) = backend.renaming_retry() else {
        return backend.write(t, &file.name(), file.bytes());
    };
    let mut abandoned = Vec::new();
    let mut failed = false;
    retry.run(
        &|| format!("the upload to {}/ under a new name", t.dir()),
        || {
            if failed {
                file.renew();
            }
            let name = file.name();
            let stored = backend.write_once(t, &name, file.bytes());
            failed = stored.is_err();
            if failed {
                abandoned.push(name);
            }
            stored
        },
    )?;
    for name in abandoned {
        let _ = backend.remove(t, &name);
    }
    Ok(())
}

pub mod conformance;

/// How to reach a remote repository: restic's `-o key=value` options and the global limits.
#[derive(Default)]
pub struct Options {
    /// `-o` options, e.g. `s3.region`, `s3.bucket-lookup`, `s3.endpoints`,
    /// `sftp.command`, `sftp.args`, `rclone.program`, `rclone.args`, `*.connections`.
    pub extended: BTreeMap<String, String>,
    /// Retry budget and backoff; the default retries for five minutes.
    pub retry: retry::Retry,
    pub timeouts: http::Timeouts,
    pub limits: Arc<limit::Limits>,
    /// Where to cache remote repositories' metadata; `None` disables the cache.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Environment variables consulted before the process environment for credentials
    /// and settings (`AWS_ACCESS_KEY_ID`, `B2_ACCOUNT_KEY`, `RESTIC_REST_USERNAME`, ...),
    /// and given to helper processes (rclone). Lets one process open several repositories
    /// with different keys without touching its own environment.
    pub env: BTreeMap<String, String>,
}

impl Options {
    fn get(&self, key: &str) -> Option<&str> {
        self.extended.get(key).map(String::as_str)
    }

    /// An environment variable: the overlay ([`Options::env`]) first, then the process
    /// environment; empty values count as unset.
    pub fn env_var(&self, key: &str) -> Option<String> {
        match self.env.get(key) {
            Some(v) => Some(v.clone()),
            None => std::env::var(key).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    /// Parallel connections for a backend type: `-o TYPE.connections=N`, default 5
    /// (restic's default for remote backends).
    pub fn connections(&self, scheme: &str) -> usize {
        self.get(&format!("{scheme}.connections"))
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(5)
    }

    fn http(&self, scheme: &str) -> http::Http {
        http::Http::new(
            &self.timeouts,
            self.connections(scheme),
            self.retry.clone(),
            self.limits.clone(),
        )
    }
}

/// Opens a backend from restic's repository syntax: a path (or `local:PATH`),
/// `rest:URL`, `s3:...`, `b2:bucket:path`, `sftp:...`, `rclone:remote:path`.
pub fn open(location: &str, opts: &Options) -> Result<Arc<dyn Backend>> {
    let (scheme, rest) = match location.split_once(':') {
        Some((s, r)) if !s.contains('/') && s.len() > 1 => (s, r),
        _ => ("local", location),
    };
    let backend: Arc<dyn Backend> = match scheme {
        "local" => return Ok(Arc::new(local::LocalBackend::new(rest))),
        "rest" => Arc::new(rest::RestBackend::with_env(
            rest,
            opts.http("rest"),
            &|k| opts.env_var(k),
        )?),
        "s3" => {
            let mut target = s3::Target::parse(rest)?;
            if let Some(eps) = opts.get("s3.endpoints") {
                target.endpoints = eps
                    .split(',')
                    .map(|e| e.trim().trim_end_matches('/').to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
            }
            match opts.get("s3.bucket-lookup") {
                None | Some("auto") => {}
                Some("dns") => target.virtual_host = true,
                Some("path") => target.virtual_host = false,
                Some(v) => {
                    return Err(Error::invalid(format!(
                        "-o s3.bucket-lookup={v}: expected auto, dns or path"
                    )))
                }
            }
            let region = opts
                .get("s3.region")
                .map(str::to_string)
                .or_else(|| opts.env_var("AWS_DEFAULT_REGION"))
                .or_else(|| opts.env_var("AWS_REGION"))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".to_string());
            Arc::new(s3::S3Backend::new(
                target,
                s3::Credentials::from_lookup(&|k| opts.env_var(k))?,
                region,
                opts.http("s3"),
            ))
        }
        "b2" => b2::open(rest, opts)?,
        "sftp" => Arc::new(sftp::SftpBackend::new(
            sftp::Spec::parse(rest)?,
            opts.get("sftp.command"),
            opts.get("sftp.args"),
            opts.retry.clone(),
            opts.limits.clone(),
            opts.timeouts.io,
            opts.timeouts.connect,
        )?
        .with_connections(opts.connections("sftp"))),
        "rclone" => Arc::new(rclone::open(rest, opts)?),
        "azure" | "gs" | "swift" => {
            return Err(Error::new(
                crate::error::Kind::Unsupported,
                format!("repository {location:?}: the {scheme} backend is not available in this version of cairn"),
            ))
        }
        // A Windows-like or odd path with a colon ("backup:2024"): treat as local.
        _ => return Ok(Arc::new(local::LocalBackend::new(location))),
    };
    // A local repository is its own cache; remote ones get one unless disabled.
    Ok(match &opts.cache_dir {
        Some(dir) => Arc::new(cache::CachedBackend::new(backend, dir.clone())),
        None => backend,
    })
}

#[cfg(test)]
mod env_overlay_tests {
    use super::*;
    use std::io::{Read, Write};

    /// Answers every request with 404 and sends back its `Authorization` header.
    fn capture_server() -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let auth = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let _ = tx.send(auth);
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (format!("http://{addr}"), rx)
    }

    fn overlay(pairs: &[(&str, &str)]) -> Options {
        Options {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn two_s3_repositories_sign_with_their_own_overlay_keys_in_one_process() {
        let (url, rx) = capture_server();
        let a = overlay(&[
            ("AWS_ACCESS_KEY_ID", "AKIDFIRSTREPO"),
            ("AWS_SECRET_ACCESS_KEY", "secret-a"),
        ]);
        let b = overlay(&[
            ("AWS_ACCESS_KEY_ID", "AKIDSECONDREPO"),
            ("AWS_SECRET_ACCESS_KEY", "secret-b"),
        ]);
        for (opts, key) in [(&a, "AKIDFIRSTREPO"), (&b, "AKIDSECONDREPO")] {
            let backend = open(&format!("s3:{url}/bucket"), opts).unwrap();
            // No such object: what matters is the request's signature.
            let _ = backend.has_config();
            // Every request of this backend was captured before it got its answer.
            let auths: Vec<String> = rx.try_iter().collect();
            assert!(!auths.is_empty(), "no request reached the server");
            for auth in auths {
                assert!(
                    auth.contains(&format!("Credential={key}/")),
                    "request signed with {auth:?}, expected key {key}"
                );
            }
        }
    }

    #[test]
    fn overlay_wins_over_process_environment_and_empty_counts_as_unset() {
        let path = std::env::var("PATH").unwrap_or_default();
        let o = overlay(&[("PATH", "from-overlay"), ("CAIRN_TEST_EMPTY", "")]);
        assert_eq!(o.env_var("PATH").as_deref(), Some("from-overlay"));
        assert_eq!(o.env_var("CAIRN_TEST_EMPTY"), None);
        let plain = overlay(&[]);
        assert_eq!(plain.env_var("PATH"), Some(path).filter(|p| !p.is_empty()));
    }
}
