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

pub struct Http {
    agent: ureq::Agent,
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
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent,
            retry,
            limits,
            connections: connections.max(1),
        }
    }

    /// One request, no retry. `what` names the object for messages. Statuses >= 400 become
    /// errors: 404 NotFound, 401/403 Auth, 408/429/5xx Network (retried by callers), others Io.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        what: &str,
    ) -> Result<Response> {
        self.send_raw(method, url, headers, body, what)?
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
        what: &str,
    ) -> Result<Result<Response, HttpError>> {
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
                let body = read_body(resp, self.limits.download.as_ref(), what)?;
                Ok(Ok(Response {
                    status,
                    body,
                    headers,
                }))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let headers = header_pairs(&resp);
                let body = read_body(resp, None, what).unwrap_or_default();
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
        what: &str,
    ) -> Result<Response> {
        self.retry.run(&|| format!("{method} {what}"), || {
            self.send(method, url, &headers(), body, what)
        })
    }
}

fn header_pairs(resp: &ureq::Response) -> Vec<(String, String)> {
    resp.headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect()
}

fn read_body(
    resp: ureq::Response,
    bucket: Option<&super::limit::Bucket>,
    what: &str,
) -> Result<Vec<u8>> {
    let cap = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 << 20);
    let mut body = Vec::with_capacity(cap);
    Throttled {
        inner: resp.into_reader(),
        bucket,
    }
    .read_to_end(&mut body)
    .map_err(|e| {
        Error::new(
            Kind::Network,
            format!("{what}: connection lost while reading the response: {e}"),
        )
    })?;
    Ok(body)
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
pub fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..host_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (
                format!("{scheme}://{host}{}", &rest[host_end..]),
                Some((decode(u), decode(p))),
            )
        }
        None => (url.to_string(), None),
    }
}

/// Decodes %XX escapes (user names and passwords in URLs).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_from_urls() {
        let (u, c) = split_userinfo("http://restic:p%40ss@127.0.0.1:8000/repo");
        assert_eq!(u, "http://127.0.0.1:8000/repo");
        assert_eq!(c, Some(("restic".into(), "p@ss".into())));
        let (u, c) = split_userinfo("https://host/x@y");
        assert_eq!((u.as_str(), c), ("https://host/x@y", None));
    }

    #[test]
    fn encoding_matches_rfc3986() {
        assert_eq!(encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(encode("a b/c", false), "a%20b%2Fc");
    }
}
