//! The HTTP client shared by the REST, S3 and B2 backends: timeouts on every request,
//! retries of transient failures, rate limits, and status codes mapped to error kinds.
//!
//! URLs given to this client never carry credentials (REST's user:password goes into an
//! Authorization header), so no error message can leak a secret.

use super::limit::{Limits, Throttled};
use super::retry::Retry;
use crate::error::{Error, Kind, Result};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// The largest response body read for a listing (REST JSON, S3 XML) or an answer to a
/// write or delete: far above what a server sends, far below what would hurt. A larger
/// body is an error, not a read.
pub const MAX_DOCUMENT: u64 = 64 << 20;
/// The largest whole pack file read at once: restic's packs are at most 128 MiB.
pub const MAX_PACK: u64 = 256 << 20;
/// How much of an error response's body is read for its message; the rest is dropped.
pub const MAX_ERROR_BODY: u64 = 4 << 10;

/// The most a whole-file read of type `t` may return: the limits the repository applies
/// to each type before parsing (old restic versions wrote one large index file).
pub fn max_file(t: super::FileType) -> u64 {
    use super::FileType;
    match t {
        FileType::Pack => MAX_PACK,
        FileType::Index => 1 << 30,
        FileType::Snapshot => 64 << 20,
        FileType::Key | FileType::Lock | FileType::Config => 1 << 20,
    }
}

/// Timeouts and retry policy of a remote backend.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// Establishing a TCP (and TLS) connection.
    pub connect: Duration,
    /// Any single read or write on an established connection making no progress.
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(15),
            io: Duration::from_secs(60),
        }
    }
}

const USER_AGENT: &str = concat!("cairn/", env!("CARGO_PKG_VERSION"));

pub struct Http {
    /// `https://` requests.
    agent: ureq::Agent,
    /// `http://` requests (see [`super::wire`] for why not ureq).
    plain: super::wire::Client,
    pub retry: Retry,
    pub limits: Arc<Limits>,
    /// Requests this client is sized for (`-o TYPE.connections`).
    pub connections: usize,
}

/// A response whose body has been read completely.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Http {
    pub fn new(timeouts: &Timeouts, connections: usize, retry: Retry, limits: Arc<Limits>) -> Http {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeouts.connect)
            .timeout_read(timeouts.io)
            .timeout_write(timeouts.io)
            .max_idle_connections_per_host(connections.max(1) * 2)
            .user_agent(USER_AGENT)
            .build();
        Http {
            agent,
            plain: super::wire::Client::new(
                timeouts.connect,
                timeouts.io,
                connections.max(1) * 2,
                USER_AGENT,
            ),
            retry,
            limits,
            connections: connections.max(1),
        }
    }

    /// One request, no retry. `what` names the object for messages. Statuses >= 400 become
    /// errors: 404 NotFound, 401/403 Auth, 408/429/5xx Network (retried by callers), others Io.
    /// A successful response's body longer than `max_body` bytes is an error (never read
    /// past the limit); an error response's body is read up to [`MAX_ERROR_BODY`].
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        max_body: u64,
        what: &str,
    ) -> Result<Response> {
        self.send_raw(method, url, headers, body, max_body, what)?
            .map_err(|e| e.into_error(what))
    }

    /// Like `send`, but a failed status comes back with its body for the caller to read
    /// (S3 names the cause in XML). The outer error is a transport failure.
    pub fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        max_body: u64,
        what: &str,
    ) -> Result<Result<Response, HttpError>> {
        // ureq 2.12.1 panics when asked for the value of a header line without a colon
        // (found by the `rest` fuzz target): a broken or hostile server or proxy must give
        // an error, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.exchange(method, url, headers, body, max_body, what)
        }))
        .unwrap_or_else(|_| {
            Err(Error::new(
                Kind::Io,
                format!("{what}: the server sent a malformed HTTP response (a header line without ':'); check the server and any proxy in front of it"),
            ))
        })
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        max_body: u64,
        what: &str,
    ) -> Result<Result<Response, HttpError>> {
        if url.starts_with("http://") {
            let r = self.plain.send(&super::wire::Request {
                method,
                url,
                headers,
                body,
                max_body,
                max_error_body: MAX_ERROR_BODY,
                upload: self.limits.upload.as_ref(),
                download: self.limits.download.as_ref(),
                what,
            })?;
            // No redirects are followed: a 3xx is a failure (a write must never pass for
            // stored because a server pointed elsewhere).
            return Ok(if r.status < 300 {
                Ok(Response {
                    status: r.status,
                    body: r.body,
                    headers: r.headers,
                })
            } else {
                Err(HttpError {
                    status: r.status,
                    body: r.body,
                    headers: r.headers,
                })
            });
        }
        let mut req = self.agent.request(method, url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req
                .set("Content-Length", &b.len().to_string())
                .send(Throttled {
                    inner: b,
                    bucket: self.limits.upload.as_ref(),
                }),
            None => req.call(),
        };
        match result {
            Ok(resp) => {
                let status = resp.status();
                let headers = header_pairs(&resp);
                // A HEAD answer's Content-Length is the object's, with no body to read.
                let body = if method == "HEAD" {
                    Vec::new()
                } else {
                    read_body(resp, self.limits.download.as_ref(), max_body, what)?
                };
                Ok(Ok(Response {
                    status,
                    body,
                    headers,
                }))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let headers = header_pairs(&resp);
                let body = read_error_body(resp);
                Ok(Err(HttpError {
                    status,
                    body,
                    headers,
                }))
            }
            Err(ureq::Error::Transport(t)) => Err(transport_error(&t, what)),
        }
    }

    /// `send` with retries of transient failures.
    pub fn send_retry(
        &self,
        method: &str,
        url: &str,
        headers: &dyn Fn() -> Vec<(&'static str, String)>,
        body: Option<&[u8]>,
        max_body: u64,
        what: &str,
    ) -> Result<Response> {
        self.retry.run(&|| format!("{method} {what}"), || {
            self.send(method, url, &headers(), body, max_body, what)
        })
    }
}

fn header_pairs(resp: &ureq::Response) -> Vec<(String, String)> {
    resp.headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect()
}

/// Reads a successful response's body, at most `limit` bytes: a server announcing or
/// sending more gets an error, and we stop reading at `limit + 1` bytes.
fn read_body(
    resp: ureq::Response,
    bucket: Option<&super::limit::Bucket>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let too_long = |n: &str| {
        Error::new(
            Kind::Io,
            format!(
                "{what}: the server sent {n} where at most {limit} bytes were expected; refusing to read it (is the URL a restic repository server? a misbehaving server or proxy can send this)"
            ),
        )
    };
    let announced = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = announced.filter(|&n| n > limit) {
        return Err(too_long(&format!("{n} bytes")));
    }
    // Allocate what was announced (within the limit) or a little, then grow as data comes.
    let cap = announced.unwrap_or(0).min(limit).min(MAX_DOCUMENT);
    let mut body = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    Throttled {
        inner: resp.into_reader(),
        bucket,
    }
    .take(limit.saturating_add(1))
    .read_to_end(&mut body)
    .map_err(|e| {
        Error::new(
            Kind::Network,
            format!("{what}: connection lost while reading the response: {e}"),
        )
    })?;
    if body.len() as u64 > limit {
        return Err(too_long(&format!("more than {limit} bytes")));
    }
    Ok(body)
}

/// The first [`MAX_ERROR_BODY`] bytes of an error response (for its message); a body that
/// cannot be read is empty: the status alone is the error.
fn read_error_body(resp: ureq::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    body
}

/// A failed status with its body, before it is turned into an error.
pub struct HttpError {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl HttpError {
    pub fn into_error(self, what: &str) -> Error {
        let text = String::from_utf8_lossy(&self.body);
        let detail: String = text.trim().chars().take(300).collect();
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        let (kind, hint) = match self.status {
            404 => (Kind::NotFound, ""),
            401 | 403 => (
                Kind::Auth,
                " (the server refused our credentials or permissions: check the user, password or access keys)",
            ),
            408 | 429 | 500..=599 => (Kind::Network, ""),
            _ => (Kind::Io, ""),
        };
        Error::new(kind, format!("{what}: HTTP {}{detail}{hint}", self.status))
    }
}

fn transport_error(t: &ureq::Transport, what: &str) -> Error {
    use std::error::Error as _;
    // ureq's own Display includes the URL; ours never carry secrets, but keep the message
    // short and about the cause.
    let mut cause = t.message().map(str::to_string).unwrap_or_default();
    let mut src = t.source();
    while let Some(s) = src {
        if !cause.is_empty() {
            cause.push_str(": ");
        }
        cause.push_str(&s.to_string());
        src = s.source();
    }
    let kind_text = match t.kind() {
        ureq::ErrorKind::Dns => "cannot resolve the host name",
        ureq::ErrorKind::ConnectionFailed => "cannot connect",
        ureq::ErrorKind::Io => "connection failed",
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            return Error::invalid(format!("{what}: invalid URL: {cause}"));
        }
        ureq::ErrorKind::InsecureRequestHttpsOnly => "refusing plain HTTP",
        _ => "request failed",
    };
    Error::new(Kind::Network, format!("{what}: {kind_text}: {cause}"))
}

/// Percent-encodes `s` per RFC 3986, keeping unreserved characters (and `/` if asked):
/// the encoding S3's signature and query strings require.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Splits `user:password@` off an http(s) URL: (URL without credentials, credentials).
/// A bad percent-escape in the credentials is an error (naming neither of them).
pub fn split_userinfo(url: &str) -> Result<(String, Option<(String, String)>)> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok((url.to_string(), None));
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..host_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let bad = |what: &str| {
                Error::invalid(format!(
                    "{scheme}://{host}: the {what} in the URL has an invalid %-escape (write % as %25, and each escape as % and two hex digits)"
                ))
            };
            let user = decode(u).ok_or_else(|| bad("user name"))?;
            let password = decode(p).ok_or_else(|| bad("password"))?;
            Ok((
                format!("{scheme}://{host}{}", &rest[host_end..]),
                Some((user, password)),
            ))
        }
        None => Ok((url.to_string(), None)),
    }
}

/// Decodes %XX escapes (user names and passwords in URLs); `None` if an escape is not `%`
/// and two hex digits, or the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_from_urls() {
        let (u, c) = split_userinfo("http://restic:p%40ss@127.0.0.1:8000/repo").unwrap();
        assert_eq!(u, "http://127.0.0.1:8000/repo");
        assert_eq!(c, Some(("restic".into(), "p@ss".into())));
        let (u, c) = split_userinfo("https://host/x@y").unwrap();
        assert_eq!((u.as_str(), c), ("https://host/x@y", None));
        let (_, c) = split_userinfo("http://%C3%A9:%41%2a@h/").unwrap();
        assert_eq!(c, Some(("é".into(), "A*".into())));
    }

    /// A bad or truncated escape used to panic (slicing inside a character) or pass
    /// through silently; now it is an error that does not echo the secret.
    #[test]
    fn bad_escapes_in_credentials_are_errors() {
        for url in [
            "http://u:%@host/",
            "http://u:%4@host/",
            "http://a%zz:b@host/",
            "http://u:%€x@host/",
            "http://u:%é@host/",
            "http://u:%+1@host/",
            "http://u:%FF@host/",
        ] {
            let e = split_userinfo(url).unwrap_err();
            assert_eq!(e.kind(), Kind::Invalid, "{url}");
            assert!(e.to_string().contains("%-escape"), "{url}: {e}");
            assert!(!e.to_string().contains(":%"), "{url}: {e}");
        }
    }

    proptest::proptest! {
        /// Any Unicode URL splits or fails cleanly.
        #[test]
        fn arbitrary_urls_never_panic(url in "\\PC{0,60}", creds in "[a-z%0-9A-Fé€:@]{0,20}") {
            let _ = split_userinfo(&url);
            let _ = split_userinfo(&format!("http://{creds}@host/x"));
            let _ = decode(&creds);
        }
    }

    #[test]
    fn encoding_matches_rfc3986() {
        assert_eq!(encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(encode("a b/c", false), "a%20b%2Fc");
    }
}
