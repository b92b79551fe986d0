//! restic's REST protocol (v1 and v2), as served by rest-server and `rclone serve restic`.
//!
//! `rest:http(s)://user:password@host:port/path`. Files live at `/config` and
//! `/{keys,locks,snapshots,index,data}/NAME` below the URL; the server decides the layout
//! on its disk. Listings ask for v2 (names with sizes) and understand v1 (names only, sizes
//! then come from HEAD requests).

use super::http::{max_file, split_userinfo, Http, MAX_DOCUMENT};
use super::{Backend, FileInfo, FileType};
use crate::error::{Error, Kind, Result};
use base64::Engine;

const V2: &str = "application/vnd.x.restic.rest.v2";

pub struct RestBackend {
    /// Base URL without credentials and without a trailing slash.
    base: String,
    auth: Option<String>,
    http: Http,
}

impl RestBackend {
    /// `url` is the part after `rest:`, credentials included.
    pub fn new(url: &str, http: Http) -> Result<RestBackend> {
        RestBackend::with_env(url, http, &|k| std::env::var(k).ok())
    }

    /// Like [`RestBackend::new`], reading `RESTIC_REST_USERNAME`/`RESTIC_REST_PASSWORD`
    /// through `env` (e.g. a backend's environment overlay) instead of the process's.
    pub fn with_env(
        url: &str,
        http: Http,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RestBackend> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "rest:{url}: expected rest:http://host:port/path or rest:https://..."
            )));
        }
        let (base, creds) = split_userinfo(url)?;
        // Like restic 0.16+: credentials may come from the environment instead of the URL
        // (so they stay out of configs and process listings); the URL wins if it has them.
        let env_creds = match (env("RESTIC_REST_USERNAME"), env("RESTIC_REST_PASSWORD")) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            _ => None,
        };
        let auth = creds.or(env_creds).map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        Ok(RestBackend {
            base: base.trim_end_matches('/').to_string(),
            auth,
            http,
        })
    }

    fn url(&self, t: FileType, name: &str) -> String {
        match t {
            FileType::Config => format!("{}/config", self.base),
            _ => format!("{}/{}/{name}", self.base, t.dir()),
        }
    }

    fn what(&self, t: FileType, name: &str) -> String {
        match t {
            FileType::Config => format!("{}/config", self.base),
            _ => format!("{}/{}/{name}", self.base, t.dir()),
        }
    }

    fn headers(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> = extra.to_vec();
        if let Some(a) = &self.auth {
            h.push(("Authorization", a.clone()));
        }
        h
    }

    fn get(&self, t: FileType, name: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let extra: Vec<(&'static str, String)> = range
            .map(|(off, len)| vec![("Range", format!("bytes={off}-{}", off + len - 1))])
            .unwrap_or_default();
        let what = self.what(t, name);
        let max_body = range.map_or(max_file(t), |(_, len)| len);
        let resp = self.http.send_retry(
            "GET",
            &self.url(t, name),
            &|| self.headers(&extra),
            None,
            max_body,
            &what,
        )?;
        if let Some((_, len)) = range {
            if resp.body.len() as u64 != len {
                return Err(Error::new(
                    Kind::Corrupt,
                    format!(
                        "{what}: asked for {len} bytes, the server sent {} (the file is shorter than the index says)",
                        resp.body.len()
                    ),
                ));
            }
        }
        Ok(resp.body)
    }
}

impl Backend for RestBackend {
    fn connections(&self) -> usize {
        self.http.connections
    }
    fn location(&self) -> String {
        format!("rest:{}", self.base)
    }

    fn create(&self) -> Result<()> {
        if self.has_config()? {
            return Err(Error::invalid(format!(
                "{}: a repository already exists here (config file present)",
                self.location()
            )));
        }
        let url = format!("{}/?create=true", self.base);
        self.http.send_retry(
            "POST",
            &url,
            &|| self.headers(&[]),
            Some(b""),
            MAX_DOCUMENT,
            &self.location(),
        )?;
        Ok(())
    }

    fn has_config(&self) -> Result<bool> {
        let what = self.what(FileType::Config, "");
        match self.http.send_retry(
            "HEAD",
            &self.url(FileType::Config, ""),
            &|| self.headers(&[]),
            None,
            MAX_DOCUMENT,
            &what,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == Kind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let url = format!("{}/{}/", self.base, t.dir());
        let resp = match self.http.send_retry(
            "GET",
            &url,
            &|| self.headers(&[("Accept", V2.to_string())]),
            None,
            MAX_DOCUMENT,
            &url,
        ) {
            Ok(r) => r,
            // A repository missing a directory (nothing of that type yet) lists empty.
            Err(e) if e.kind() == Kind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Entry {
            V2 { name: String, size: u64 },
            V1(String),
        }
        let entries: Vec<Entry> = serde_json::from_slice(&resp.body).map_err(|e| {
            Error::new(
                Kind::Io,
                format!("{url}: the server's listing is not restic REST JSON: {e}"),
            )
        })?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match e {
                Entry::V2 { name, size } => out.push(FileInfo { name, size }),
                Entry::V1(name) => {
                    let what = self.what(t, &name);
                    let head = self.http.send_retry(
                        "HEAD",
                        &self.url(t, &name),
                        &|| self.headers(&[]),
                        None,
                        MAX_DOCUMENT,
                        &what,
                    )?;
                    let size = head
                        .header("Content-Length")
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| {
                            Error::new(Kind::Io, format!("{what}: no Content-Length in HEAD"))
                        })?;
                    out.push(FileInfo { name, size });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.get(t, name, None)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.get(t, name, Some((offset, len)))
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.http
            .retry
            .run(&|| format!("POST {}", self.what(t, name)), || {
                self.write_once(t, name, data)
            })
    }

    /// A REST server may remove the file of a retried upload when it cleans up the broken
    /// one late (see [`crate::backend::write_renewing`]).
    fn renaming_retry(&self) -> Option<crate::backend::retry::Retry> {
        Some(self.http.retry.clone())
    }

    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        let headers = self.headers(&[("Content-Type", "application/octet-stream".into())]);
        let what = self.what(t, name);
        self.http.send(
            "POST",
            &self.url(t, name),
            &headers,
            Some(data),
            MAX_DOCUMENT,
            &what,
        )?;
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let what = self.what(t, name);
        match self.http.send_retry(
            "DELETE",
            &self.url(t, name),
            &|| self.headers(&[]),
            None,
            MAX_DOCUMENT,
            &what,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == Kind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::http::Timeouts;
    use crate::backend::limit::Limits;
    use crate::backend::retry::Retry;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::time::Duration;

    /// Found by the `rest` fuzz target (fuzz/): ureq 2.12.1 panics ("range start index 9
    /// out of range for slice of length 8", ureq src/header.rs:103, reached from
    /// `http::header_pairs`) when a response has a header line without a colon and its
    /// value is asked for, so a broken or hostile server or proxy crashes cairn.
    #[test]
    fn a_header_line_without_a_colon_is_an_error_not_a_panic() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent\r\n\r\n[]");
        });
        let retry = Retry {
            max_time: Duration::ZERO,
            first_wait: Duration::from_millis(1),
            max_wait: Duration::from_millis(1),
        };
        let http = Http::new(
            &Timeouts::default(),
            1,
            retry,
            Arc::new(Limits::new(None, None)),
        );
        let be = RestBackend::new(&format!("http://127.0.0.1:{port}/repo"), http).unwrap();
        let listed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| be.list(FileType::Snapshot)));
        server.join().unwrap();
        assert!(
            listed.is_ok(),
            "listing panicked on a header line without a colon"
        );
    }
}
