//! A small HTTP/1.1 client for plain `http://` endpoints (S3 stores and REST servers on a
//! LAN or on the same machine), used by [`super::http::Http`]; `https://` goes through ureq.
//!
//! Why not ureq here too: many servers (Garage, hyper-based ones) write a response's head and
//! its body with two writes and leave Nagle's algorithm on. The body then waits in the
//! server until our ACK of the head, and Linux delays that ACK by 40 ms when it has nothing
//! to send: every small GET (a tree blob, a key, a snapshot) cost ≥ 40 ms on loopback. We
//! ask for immediate ACKs (`TCP_QUICKACK`, which the kernel resets after each exchange)
//! before every read of a response, which needs the socket ureq keeps to itself.
//!
//! What it does: keep-alive connections pooled per host (checked for a server-side close
//! before reuse, and a request without a body that fails on a reused connection before any
//! answer came is sent once more on a new one); `Content-Length`, chunked and read-to-close bodies;
//! timeouts on connecting and on every read and write; every read bounded (the head at
//! [`MAX_HEAD`], a body at the caller's limit). No redirects (a 3xx is answered to the
//! caller), no proxies, no TLS.

use super::limit::Bucket;
use crate::error::{Error, Kind, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

/// The most a response's status line and headers may take.
pub const MAX_HEAD: usize = 64 << 10;
/// The most header lines a response may have.
const MAX_HEADERS: usize = 128;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Bodies up to this size go out with the request head in one write.
const COALESCE: usize = 64 << 10;

/// A complete response: the status, the headers and as much of the body as was asked for.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One request's parameters.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: Option<&'a [u8]>,
    /// The most body bytes of a successful (< 300) response; more is an error.
    pub max_body: u64,
    /// The most body bytes of any other response kept (the rest is dropped).
    pub max_error_body: u64,
    pub upload: Option<&'a Bucket>,
    pub download: Option<&'a Bucket>,
    /// Names the object in messages.
    pub what: &'a str,
}

pub struct Client {
    connect_timeout: Duration,
    io_timeout: Duration,
    max_idle: usize,
    user_agent: String,
    idle: Mutex<Vec<(String, Conn)>>,
}

/// A connection: the socket behind a read buffer (writes go to the socket directly).
struct Conn {
    r: BufReader<Sock>,
}

/// The socket, asking the kernel for immediate ACKs before each read (see the module doc).
struct Sock(TcpStream);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        quickack(&self.0);
        self.0.read(buf)
    }
}

#[cfg(target_os = "linux")]
fn quickack(s: &TcpStream) {
    // Only a hint: a failure changes nothing but speed.
    let _ = rustix::net::sockopt::set_tcp_quickack(s, true);
}

#[cfg(not(target_os = "linux"))]
fn quickack(_: &TcpStream) {}

/// `http://host[:port]/path?query` split for connecting and for the request line.
struct Url<'a> {
    /// `host[:port]` as written: the Host header.
    authority: &'a str,
    host: &'a str,
    port: u16,
    /// Path and query, `/` at least.
    target: String,
}

fn parse_url(url: &str) -> std::result::Result<Url<'_>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are handled here")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let target = match &rest[end..] {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    if target.bytes().any(|b| b <= b' ' || b == 0x7f) || target.contains('#') {
        return Err("the path has spaces or control characters".into());
    }
    if authority.contains('@') {
        return Err("credentials in the URL".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or("junk after the host")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
    };
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'/') {
        return Err("no host or a bad host name".into());
    }
    Ok(Url {
        authority,
        host,
        port,
        target,
    })
}

/// How a failure happened: whether the server can have seen the request.
enum Failed {
    /// Before the server answered anything: safe to send again on another connection.
    NoAnswer(Error),
    /// After (part of) an answer, or a failure that another connection will not fix.
    Final(Error),
}

impl Client {
    pub fn new(
        connect_timeout: Duration,
        io_timeout: Duration,
        max_idle: usize,
        user_agent: &str,
    ) -> Client {
        Client {
            connect_timeout,
            io_timeout,
            max_idle,
            user_agent: user_agent.to_string(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one request and reads its response (no retries but the one described in the
    /// module doc). Errors: `Invalid` for a bad URL or header, `Network` for DNS, connect,
    /// timeout and connection failures, `Io` for a malformed or too long response.
    pub fn send(&self, req: &Request) -> Result<Reply> {
        let url = parse_url(req.url)
            .map_err(|e| Error::invalid(format!("{}: invalid URL: {e}", req.what)))?;
        for (k, v) in req.headers {
            if !k.bytes().all(is_token)
                || k.is_empty()
                || v.bytes().any(|b| b == b'\r' || b == b'\n')
            {
                return Err(Error::invalid(format!(
                    "{}: invalid header {k:?} in the request",
                    req.what
                )));
            }
        }
        if let Some(conn) = self.take_idle(url.authority) {
            match self.exchange(conn, &url, req) {
                Ok(r) => return Ok(r),
                // The server closed the kept connection as we sent: once more on a new one.
                // Not a request with a body: the server may hold part of it and still be
                // handling it, and a REST server that notices the broken upload late
                // removes its file, which would be this copy's too (the same name). The
                // caller's retry sends it under a new name (`backend::write_renewing`).
                Err(Failed::NoAnswer(_)) if req.body.is_none_or(|b| b.is_empty()) => {}
                Err(Failed::NoAnswer(e) | Failed::Final(e)) => return Err(e),
            }
        }
        let conn = self.connect(&url, req.what)?;
        match self.exchange(conn, &url, req) {
            Ok(r) => Ok(r),
            Err(Failed::NoAnswer(e) | Failed::Final(e)) => Err(e),
        }
    }

    fn take_idle(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(i) = idle.iter().rposition(|(a, _)| a == authority) {
            let (_, conn) = idle.remove(i);
            if alive(&conn) {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, authority: &str, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= self.max_idle {
                idle.remove(0);
            }
            idle.push((authority.to_string(), conn));
        }
    }

    fn connect(&self, url: &Url, what: &str) -> Result<Conn> {
        let addrs: Vec<_> = (url.host, url.port)
            .to_socket_addrs()
            .map_err(|e| {
                Error::new(
                    Kind::Network,
                    format!("{what}: cannot resolve the host name: {}: {e}", url.host),
                )
            })?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.connect_timeout) {
                Ok(s) => {
                    let setup = s
                        .set_nodelay(true)
                        .and_then(|_| s.set_read_timeout(Some(self.io_timeout)))
                        .and_then(|_| s.set_write_timeout(Some(self.io_timeout)));
                    if let Err(e) = setup {
                        last = Some(e);
                        continue;
                    }
                    return Ok(Conn {
                        r: BufReader::with_capacity(64 << 10, Sock(s)),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::new(
            Kind::Network,
            match last {
                Some(e) => format!("{what}: cannot connect: {}: {e}", url.authority),
                None => format!(
                    "{what}: cannot resolve the host name: {}: no address",
                    url.host
                ),
            },
        ))
    }

    fn exchange(
        &self,
        mut conn: Conn,
        url: &Url,
        req: &Request,
    ) -> std::result::Result<Reply, Failed> {
        let what = req.what;
        let lost =
            |e: io::Error| Error::new(Kind::Network, format!("{what}: connection failed: {e}"));
        // The request head, and a small body with it in one write.
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            req.method, url.target, url.authority
        );
        // Defaults the caller's headers replace (REST asks for its v2 listing with Accept).
        let given = |name: &str| {
            req.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        if !given("user-agent") {
            head.push_str(&format!("User-Agent: {}\r\n", self.user_agent));
        }
        if !given("accept") {
            head.push_str("Accept: */*\r\n");
        }
        for (k, v) in req.headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
                continue;
            }
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v.trim());
            head.push_str("\r\n");
        }
        if let Some(b) = req.body {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        let body = req.body.unwrap_or_default();
        let inline = body.len() <= COALESCE && req.upload.is_none();
        if inline {
            out.extend_from_slice(body);
        }
        let sent = conn.r.get_mut().0.write_all(&out).and_then(|_| {
            if inline {
                return Ok(());
            }
            for piece in body.chunks(256 << 10) {
                if let Some(b) = req.upload {
                    b.take(piece.len());
                }
                conn.r.get_mut().0.write_all(piece)?;
            }
            Ok(())
        });
        if let Err(e) = sent {
            // The server may have answered (and closed) before taking the whole body,
            // e.g. refusing our credentials: that answer says more than the broken pipe.
            return match read_head(&mut conn.r, what, req.method) {
                Ok(Some(h)) if h.status >= 400 => {
                    let body = read_body(&mut conn.r, &h, req, what)
                        .map(|(b, _)| b)
                        .unwrap_or_default();
                    Ok(Reply {
                        status: h.status,
                        headers: h.headers,
                        body,
                    })
                }
                _ => Err(Failed::NoAnswer(lost(e))),
            };
        }
        let head = match read_head(&mut conn.r, what, req.method) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(Failed::NoAnswer(Error::new(
                    Kind::Network,
                    format!(
                    "{what}: connection failed: the server closed the connection without answering"
                ),
                )))
            }
            // A server too slow to answer is not helped by sending it the request again.
            Err(HeadError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Failed::Final(lost(e)))
            }
            Err(HeadError::Io(e)) => return Err(Failed::NoAnswer(lost(e))),
            Err(HeadError::Bad(e)) => return Err(Failed::Final(e)),
        };
        let (body, complete) = read_body(&mut conn.r, &head, req, what).map_err(Failed::Final)?;
        if complete && head.keep_alive {
            self.put_idle(url.authority, conn);
        }
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
        })
    }
}

/// A kept connection the server has not closed (nothing to read, no EOF, no error).
fn alive(conn: &Conn) -> bool {
    if !conn.r.buffer().is_empty() {
        return false; // bytes nobody asked for: out of step with the server
    }
    let s = &conn.r.get_ref().0;
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let ok = matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).is_ok() && ok
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    framing: Framing,
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

enum HeadError {
    /// The connection failed before a complete head arrived.
    Io(io::Error),
    /// The server sent something that is not an HTTP/1.x response head.
    Bad(Error),
}

/// Reads the final response head (skipping interim 1xx ones); `None` if the connection
/// ended before its first byte.
fn read_head(
    r: &mut BufReader<Sock>,
    what: &str,
    method: &str,
) -> std::result::Result<Option<Head>, HeadError> {
    let bad = |detail: String| {
        HeadError::Bad(Error::new(
            Kind::Io,
            format!("{what}: the server sent a malformed HTTP response ({detail}); check the server and any proxy in front of it"),
        ))
    };
    let mut budget = MAX_HEAD;
    for interim in 0..=MAX_INTERIM {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = r
                .by_ref()
                .take(budget as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(HeadError::Io)?;
            if n == 0 {
                if lines.is_empty() && interim == 0 {
                    return Ok(None);
                }
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside the response head",
                )));
            }
            if n > budget {
                return Err(bad(format!("a head longer than {MAX_HEAD} bytes")));
            }
            budget -= n;
            if !line.ends_with(b"\n") {
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside the response head",
                )));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if lines.is_empty() {
                    continue; // tolerated: a stray empty line before the status line
                }
                break;
            }
            if lines.len() > MAX_HEADERS {
                return Err(bad(format!("more than {MAX_HEADERS} header lines")));
            }
            lines.push(text.to_string());
        }
        let status_line = &lines[0];
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        let http11 = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(bad(format!("status line {:?}", truncate(status_line)))),
        };
        let status: u16 = match code.parse() {
            Ok(c) if (100..=999).contains(&c) && code.len() == 3 => c,
            _ => return Err(bad(format!("status line {:?}", truncate(status_line)))),
        };
        let mut headers = Vec::with_capacity(lines.len() - 1);
        for l in &lines[1..] {
            let Some((k, v)) = l.split_once(':') else {
                return Err(bad("a header line without ':'".into()));
            };
            if k.is_empty() || !k.bytes().all(is_token) {
                return Err(bad(format!("header name {:?}", truncate(k))));
            }
            headers.push((k.to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(bad("101 Switching Protocols".into()));
            }
            continue;
        }
        let connection: Vec<String> = header_values(&headers, "Connection")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut keep_alive = if http11 {
            !connection.iter().any(|t| t == "close")
        } else {
            connection.iter().any(|t| t == "keep-alive")
        };
        let te: Vec<String> = header_values(&headers, "Transfer-Encoding")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let lengths: Vec<&str> = header_values(&headers, "Content-Length").collect();
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::None
        } else if !te.is_empty() {
            if !lengths.is_empty() {
                keep_alive = false; // both: the length is ignored and the connection ends
            }
            if te.last().map(String::as_str) == Some("chunked") {
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::UntilClose
            }
        } else if let Some(first) = lengths.first() {
            let n: u64 = first
                .trim()
                .parse()
                .map_err(|_| bad(format!("Content-Length {:?}", truncate(first))))?;
            if lengths.iter().any(|l| l.trim() != first.trim()) {
                return Err(bad("conflicting Content-Length headers".into()));
            }
            Framing::Length(n)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
        return Ok(Some(Head {
            status,
            headers,
            keep_alive,
            framing,
        }));
    }
    Err(bad(format!("more than {MAX_INTERIM} interim responses")))
}

fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Reads the body the head announces: a successful answer's up to `max_body` bytes (more
/// is an error), another's up to `max_error_body` (the rest is dropped). Also says whether
/// the body was read to its end (the connection can then serve another request).
fn read_body(
    r: &mut BufReader<Sock>,
    head: &Head,
    req: &Request,
    what: &str,
) -> Result<(Vec<u8>, bool)> {
    let ok = head.status < 300;
    let limit = if ok { req.max_body } else { req.max_error_body };
    let too_long = |n: &str| {
        Error::new(
            Kind::Io,
            format!(
                "{what}: the server sent {n} where at most {limit} bytes were expected; refusing to read it (is the URL a repository server? a misbehaving server or proxy can send this)"
            ),
        )
    };
    let lost = |e: io::Error| {
        Error::new(
            Kind::Network,
            format!("{what}: connection lost while reading the response: {e}"),
        )
    };
    let short = || {
        lost(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection ended before the whole body arrived",
        ))
    };
    let mut body = Vec::new();
    match head.framing {
        Framing::None => Ok((body, true)),
        Framing::Length(n) => {
            if ok && n > limit {
                return Err(too_long(&format!("{n} bytes")));
            }
            let want = n.min(limit);
            body.reserve_exact(usize::try_from(want.min(super::http::MAX_DOCUMENT)).unwrap_or(0));
            let got = read_limited(r, want, &mut body, req.download).map_err(lost)?;
            if got < want {
                return Err(short());
            }
            Ok((body, want == n))
        }
        Framing::UntilClose => {
            read_limited(r, limit.saturating_add(1), &mut body, req.download).map_err(lost)?;
            if body.len() as u64 > limit {
                if ok {
                    return Err(too_long(&format!("more than {limit} bytes")));
                }
                body.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            }
            Ok((body, false))
        }
        Framing::Chunked => {
            loop {
                let mut line = Vec::new();
                r.by_ref()
                    .take(4097)
                    .read_until(b'\n', &mut line)
                    .map_err(lost)?;
                if !line.ends_with(b"\n") {
                    if line.len() > 4096 {
                        return Err(Error::new(Kind::Io, format!("{what}: the server sent a malformed chunked body (a chunk size line longer than 4 KiB)")));
                    }
                    return Err(short());
                }
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size_text, 16)
                    .ok()
                    .filter(|_| !size_text.is_empty() && size_text.len() <= 16)
                    .ok_or_else(|| {
                        Error::new(
                            Kind::Io,
                            format!("{what}: the server sent a malformed chunked body (chunk size {:?})", truncate(size_text)),
                        )
                    })?;
                if size == 0 {
                    // Trailers, bounded, up to the empty line.
                    let mut budget = MAX_HEAD;
                    loop {
                        let mut t = Vec::new();
                        let n = r
                            .by_ref()
                            .take(budget as u64 + 1)
                            .read_until(b'\n', &mut t)
                            .map_err(lost)?;
                        if n == 0 || !t.ends_with(b"\n") || n > budget {
                            return Ok((body, false));
                        }
                        budget -= n;
                        if t == b"\r\n" || t == b"\n" {
                            return Ok((body, true));
                        }
                    }
                }
                let room = limit - (body.len() as u64).min(limit);
                if size > room {
                    if ok {
                        return Err(too_long(&format!("more than {limit} bytes")));
                    }
                    read_limited(r, room, &mut body, req.download).map_err(lost)?;
                    return Ok((body, false));
                }
                let got = read_limited(r, size, &mut body, req.download).map_err(lost)?;
                if got < size {
                    return Err(short());
                }
                let mut crlf = Vec::new();
                r.by_ref()
                    .take(2)
                    .read_until(b'\n', &mut crlf)
                    .map_err(lost)?;
                if crlf != b"\r\n" && crlf != b"\n" {
                    return Err(Error::new(
                        Kind::Io,
                        format!("{what}: the server sent a malformed chunked body (no line end after a chunk)"),
                    ));
                }
            }
        }
    }
}

/// Appends up to `n` bytes (fewer at EOF) to `out`, through the download limit.
fn read_limited(
    r: &mut BufReader<Sock>,
    n: u64,
    out: &mut Vec<u8>,
    bucket: Option<&Bucket>,
) -> io::Result<u64> {
    super::limit::Throttled {
        inner: r.by_ref().take(n),
        bucket,
    }
    .read_to_end(out)
    .map(|k| k as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn client() -> Client {
        Client::new(Duration::from_secs(2), Duration::from_secs(2), 4, "test")
    }

    fn req<'a>(method: &'a str, url: &'a str, max_body: u64) -> Request<'a> {
        Request {
            method,
            url,
            headers: &[],
            body: None,
            max_body,
            max_error_body: 16,
            upload: None,
            download: None,
            what: "obj",
        }
    }

    /// Serves `answers` in order, each to one request; a connection stays open across
    /// answers unless the answer is `None` (then the server closes it without answering).
    /// Returns the URL and the number of connections accepted.
    fn serve(answers: Vec<Option<Vec<u8>>>) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let c2 = conns.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter().peekable();
            'outer: for s in l.incoming() {
                let Ok(s) = s else { return };
                c2.fetch_add(1, Ordering::SeqCst);
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                loop {
                    // Read one request head (and its Content-Length body).
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            continue 'outer;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut b = vec![0; len];
                    r.read_exact(&mut b).unwrap();
                    match answers.next() {
                        // The last answer ends its connection.
                        Some(Some(a)) if answers.peek().is_none() => {
                            let _ = w.write_all(&a);
                            return;
                        }
                        Some(Some(a)) => w.write_all(&a).unwrap(),
                        Some(None) => continue 'outer,
                        None => return,
                    }
                }
            }
        });
        (url, conns)
    }

    #[test]
    fn keeps_connections_and_reads_all_framings() {
        let (url, conns) = serve(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
            Some(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n".to_vec()),
            Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n0123456789012345678901234567890123456789".to_vec()),
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nend".to_vec()),
        ]);
        let c = client();
        let u = format!("{url}/a?b=c");
        let r = c.send(&req("GET", &u, 100)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = c.send(&req("GET", &u, 100)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        // An error body is cut at its limit; the connection is then not reused.
        let r = c.send(&req("GET", &u, 100)).unwrap();
        assert_eq!((r.status, r.body.len()), (404, 16));
        let r = c.send(&req("GET", &u, 100)).unwrap();
        assert_eq!(r.body, b"end");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    /// The caller's Accept replaces the default one: rest-server reads the first and
    /// answers a v2 listing only when asked for it.
    #[test]
    fn given_headers_replace_the_defaults() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                if r.read_line(&mut head).unwrap() == 0 {
                    break;
                }
            }
            let mut w = s;
            w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            head
        });
        let h = [("Accept", "application/vnd.x.restic.rest.v2".to_string())];
        let mut r = req("GET", &url, 10);
        r.headers = &h;
        assert_eq!(client().send(&r).unwrap().status, 204);
        let head = server.join().unwrap().to_ascii_lowercase();
        assert_eq!(head.matches("accept:").count(), 1, "{head}");
        assert!(
            head.contains("accept: application/vnd.x.restic.rest.v2\r\n"),
            "{head}"
        );
    }

    #[test]
    fn a_kept_connection_closed_by_the_server_is_replaced() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        let (url, conns) = serve(vec![Some(ok.clone()), None, Some(ok)]);
        let c = client();
        for _ in 0..2 {
            let r = c.send(&req("GET", &url, 10)).unwrap();
            assert_eq!(r.body, b"ok");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn hostile_answers_are_bounded_errors() {
        let cases: Vec<(&[u8], Kind)> = vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nContent\r\n\r\n", Kind::Io),
            (b"HTTP/1.1 2000 OK\r\n\r\n", Kind::Io),
            (b"SSH-2.0-OpenSSH\r\n\r\n", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n", Kind::Io),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", Kind::Network),
            (b"HTTP/1.1 200 OK\r\nX: y", Kind::Network),
        ];
        for (answer, kind) in cases {
            let (url, _) = serve(vec![Some(answer.to_vec())]);
            let e = client().send(&req("GET", &url, 10)).err();
            assert_eq!(
                e.as_ref().map(Error::kind),
                Some(kind),
                "{:?}: {e:?}",
                String::from_utf8_lossy(answer)
            );
        }
        // An endless head ends at its bound.
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() <= MAX_HEAD {
            endless.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (url, _) = serve(vec![Some(endless)]);
        assert_eq!(
            client().send(&req("GET", &url, 10)).err().map(|e| e.kind()),
            Some(Kind::Io)
        );
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        let c = client();
        for u in [
            "http://",
            "http://h:99999/",
            "http://h/a b",
            "http://u:p@h/",
            "http://[::1/",
        ] {
            assert_eq!(
                c.send(&req("GET", u, 1)).err().map(|e| e.kind()),
                Some(Kind::Invalid),
                "{u}"
            );
        }
        let h = [("X-A", "a\r\nInjected: 1".to_string())];
        let mut r = req("GET", "http://127.0.0.1:1/", 1);
        r.headers = &h;
        assert_eq!(c.send(&r).err().map(|e| e.kind()), Some(Kind::Invalid));
        let u = parse_url("http://[::1]:3900/b?x=1").unwrap();
        assert_eq!(
            (u.authority, u.host, u.port, u.target.as_str()),
            ("[::1]:3900", "::1", 3900, "/b?x=1")
        );
        let u = parse_url("http://host?q").unwrap();
        assert_eq!((u.host, u.port, u.target.as_str()), ("host", 80, "/?q"));
    }

    #[test]
    fn a_refused_connection_is_a_network_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        drop(l);
        let e = client().send(&req("GET", &url, 1)).unwrap_err();
        assert_eq!(e.kind(), Kind::Network);
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }

    #[test]
    fn a_large_upload_goes_out_whole() {
        let (url, _) = serve(vec![Some(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied".to_vec(),
        )]);
        let body = vec![7u8; 300 << 10];
        let mut r = req("PUT", &url, 10);
        r.body = Some(&body);
        let rep = client().send(&r).unwrap();
        assert_eq!((rep.status, rep.body.as_slice()), (403, &b"denied"[..]));
    }
}
