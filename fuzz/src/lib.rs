//! Helpers shared by the fuzz targets in `src/bin/`: a fixed key to seal fuzzed plaintext,
//! the framing that turns one fuzz input into a list of server replies, and fake servers
//! (HTTP on loopback, SFTP on a Unix socket) that answer a real backend with those replies.
//!
//! The fake servers only replay bytes: every parser under test runs in the backend code of
//! `cairn-repo`, exactly as it would against a hostile server.

use cairn_repo::backend::http::{Http, Timeouts};
use cairn_repo::backend::limit::Limits;
use cairn_repo::backend::retry::Retry;
use cairn_repo::crypto::Key;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The key every target seals its plaintext with ("decode after decryption").
pub fn fixed_key() -> Key {
    Key::from_kdf_output(&[7u8; 64])
}

/// One reply from a fuzz input: a selector byte (status or packet type) and a body.
#[derive(Clone, Debug)]
pub struct Frame {
    pub selector: u8,
    pub body: Vec<u8>,
}

/// Splits `data` into frames of `[selector][u16 little-endian length][body]`; a last frame
/// shorter than its length takes what is left.
pub fn frames(data: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&selector, tail)) = rest.split_first() {
        let (len, tail) = match tail {
            [a, b, tail @ ..] => (u16::from_le_bytes([*a, *b]) as usize, tail),
            _ => (tail.len(), &tail[tail.len()..]),
        };
        let n = len.min(tail.len());
        out.push(Frame {
            selector,
            body: tail[..n].to_vec(),
        });
        rest = &tail[n..];
    }
    out
}

/// Encodes frames back into an input (for seed corpora).
pub fn encode_frames(frames: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (sel, body) in frames {
        out.push(*sel);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

/// An HTTP client that fails fast: no retries, short timeouts (a hang is a finding).
pub fn fast_http() -> Http {
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(2),
    };
    Http::new(&timeouts, 1, no_retry(), Arc::new(Limits::new(None, None)))
}

pub fn no_retry() -> Retry {
    Retry {
        max_time: Duration::ZERO,
        first_wait: Duration::from_millis(1),
        max_wait: Duration::from_millis(1),
    }
}

/// HTTP statuses a frame's selector maps to (the selector modulo the table's length).
const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 404, 400, 403, 401, 500, 503, 301, 206, 416, 204, 409, 429,
];

/// A loopback HTTP server answering each connection's request with the next frame, then
/// closing it.
/// A frame whose body starts with `HTTP/` is sent raw (status line and headers included).
pub struct FakeHttp {
    pub port: u16,
    /// Set once every reply has been used: later requests can only fail to connect.
    pub done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHttp {
    pub fn start(replies: Vec<Frame>) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let thread = std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                // One request per connection (`Connection: close`), so a client that opens
                // a second connection never waits for this one.
                let Some(method) = read_http_request(&mut conn) else {
                    continue;
                };
                let Some(f) = replies.next() else {
                    done2.store(true, Ordering::SeqCst);
                    return; // no more replies: drop the listener, the client fails fast
                };
                let _ = conn.write_all(&http_response(&f, &method));
                let _ = conn.flush();
            }
        });
        FakeHttp {
            port,
            done,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake a blocked accept; the thread sees `stop` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head and Content-Length body); returns its method.
fn read_http_request(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let len = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut body = conn.take(len);
    std::io::copy(&mut body, &mut std::io::sink()).ok()?;
    text.split(' ').next().map(str::to_string)
}

fn http_response(f: &Frame, method: &str) -> Vec<u8> {
    if f.body.starts_with(b"HTTP/") {
        return f.body.clone();
    }
    let status = STATUSES[f.selector as usize % STATUSES.len()];
    let mut out = format!(
        "HTTP/1.1 {status} Fuzz\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        f.body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(&f.body);
    }
    out
}

/// An SFTP server on a Unix socket, reached by the backend through
/// `socat STDIO UNIX-CONNECT:<path>` as its `sftp.command`. The first frame answers INIT
/// (type = selector, body as is); each later request gets the next frame with the request's
/// id put in front of the body, so the fuzzer does not have to guess ids.
pub struct FakeSftp {
    pub command: String,
    /// Set once every reply has been used: later requests only see a dead connection.
    pub done: Arc<AtomicBool>,
    dir: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeSftp {
    pub fn start(replies: Vec<Frame>) -> FakeSftp {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-fuzz-sftp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir for the SFTP socket");
        let sock = dir.join("s");
        let listener = UnixListener::bind(&sock).expect("bind unix socket");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let thread = std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut first = true;
                while let Some((_typ, body)) = read_sftp_packet(&mut conn) {
                    let Some(f) = replies.next() else {
                        done2.store(true, Ordering::SeqCst);
                        return;
                    };
                    let mut payload = Vec::new();
                    if !first {
                        payload.extend_from_slice(body.get(..4).unwrap_or(&[0, 0, 0, 0]));
                    }
                    first = false;
                    payload.extend_from_slice(&f.body);
                    let mut pkt = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
                    pkt.push(f.selector);
                    pkt.extend_from_slice(&payload);
                    if conn.write_all(&pkt).is_err() {
                        break;
                    }
                }
            }
        });
        FakeSftp {
            command: format!("socat -t0 STDIO UNIX-CONNECT:{}", sock.display()),
            done,
            dir,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeSftp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(self.dir.join("s"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_sftp_packet(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > 1 << 20 {
        return None;
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).ok()?;
    Some((buf[0], buf[1..].to_vec()))
}
