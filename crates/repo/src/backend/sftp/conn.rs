//! One SFTP session over an `ssh` process: requests sent with ids, a reader thread that
//! hands each reply to the thread waiting for it, pipelined reads and writes, and the
//! handshake with its errors.

use super::wire::*;
use crate::backend::limit::Limits;
use crate::error::{Error, Kind, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes per READ/WRITE request (every SFTP server accepts 32 KiB; OpenSSH up to 255 KiB).
const CHUNK: usize = 64 * 1024;
/// Requests of one transfer in flight at once.
const WINDOW: usize = 64;

/// One reply packet: its type and the bytes after the request id.
pub(super) struct Packet {
    pub(super) typ: u8,
    pub(super) data: Vec<u8>,
}

/// The state the reader thread shares with requesters.
struct Shared {
    pending: Mutex<HashMap<u32, Sender<Packet>>>,
    dead: AtomicBool,
    stderr: Mutex<String>,
}

pub(super) struct Conn {
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    next_id: AtomicU32,
    shared: Arc<Shared>,
    posix_rename: bool,
    fsync: bool,
    timeout: Duration,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A reply being waited for.
pub(super) struct Pending {
    rx: Receiver<Packet>,
}

impl Conn {
    pub(super) fn start(argv: &[String], timeout: Duration) -> Result<Conn> {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::new(
                    Kind::Io,
                    format!(
                        "starting {:?} for SFTP: {e} (is OpenSSH's ssh installed?)",
                        argv[0]
                    ),
                )
            })?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            stderr: Mutex::new(String::new()),
        });
        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = shared.stderr.lock() {
                        if s.len() < 16 * 1024 {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            });
        }

        // Handshake, synchronously, before the reader thread takes stdout.
        let mut init = Vec::new();
        put_u32(&mut init, 3);
        write_packet(&mut stdin, FXP_INIT, &init)
            .map_err(|_| handshake_error(&shared, &mut child, timeout))?;
        let (typ, body) = match read_packet_timeout(&mut stdout, timeout) {
            Ok(p) => p,
            Err(_) => return Err(handshake_error(&shared, &mut child, timeout)),
        };
        if typ != FXP_VERSION {
            return Err(Error::new(
                Kind::Io,
                format!("the SFTP server answered {typ} to INIT (is the command running an SFTP server? `-s sftp`)"),
            ));
        }
        let mut r = Reader::new(&body);
        let _version = r.u32()?;
        let (mut posix_rename, mut fsync) = (false, false);
        while !r.is_empty() {
            let name = r.string()?;
            let _data = r.string()?;
            match name.as_slice() {
                b"posix-rename@openssh.com" => posix_rename = true,
                b"fsync@openssh.com" => fsync = true,
                _ => {}
            }
        }

        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                while let Ok((typ, body)) = read_packet(&mut stdout) {
                    if body.len() < 4 {
                        break;
                    }
                    let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    let tx = shared.pending.lock().ok().and_then(|mut p| p.remove(&id));
                    if let Some(tx) = tx {
                        let _ = tx.send(Packet {
                            typ,
                            data: body[4..].to_vec(),
                        });
                    }
                }
                shared.dead.store(true, Ordering::SeqCst);
                // Dropping the senders wakes every waiter with a disconnect.
                if let Ok(mut p) = shared.pending.lock() {
                    p.clear();
                }
            });
        }
        Ok(Conn {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            next_id: AtomicU32::new(1),
            shared,
            posix_rename,
            fsync,
            timeout,
        })
    }

    pub(super) fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    fn lost(&self) -> Error {
        let stderr = self
            .shared
            .stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!(" (ssh said: {})", last_lines(&stderr))
        };
        Error::new(
            Kind::Network,
            format!("the SFTP connection was lost{detail}"),
        )
    }

    /// Sends a request; the reply is collected with `wait`.
    pub(super) fn send(&self, typ: u8, body: &[u8]) -> Result<Pending> {
        if self.is_dead() {
            return Err(self.lost());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        self.shared
            .pending
            .lock()
            .map_err(|_| self.lost())?
            .insert(id, tx);
        let mut pkt = Vec::with_capacity(body.len() + 4);
        put_u32(&mut pkt, id);
        pkt.extend_from_slice(body);
        let mut stdin = self.stdin.lock().map_err(|_| self.lost())?;
        if write_packet(&mut *stdin, typ, &pkt).is_err() {
            drop(stdin);
            self.kill();
            return Err(self.lost());
        }
        Ok(Pending { rx })
    }

    pub(super) fn wait(&self, p: Pending) -> Result<Packet> {
        match p.rx.recv_timeout(self.timeout) {
            Ok(pkt) => Ok(pkt),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // A server that stops answering is treated as gone: kill ssh so that every
                // other waiter fails too and the next attempt reconnects.
                self.kill();
                Err(Error::new(
                    Kind::Network,
                    format!(
                        "the SFTP server did not answer within {}s",
                        self.timeout.as_secs()
                    ),
                ))
            }
            Err(_) => Err(self.lost()),
        }
    }

    fn call(&self, typ: u8, body: &[u8]) -> Result<Packet> {
        let p = self.send(typ, body)?;
        self.wait(p)
    }

    pub(super) fn kill(&self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
        }
    }

    /// Expects STATUS OK.
    pub(super) fn ok(&self, pkt: Packet, what: &str) -> Result<()> {
        match pkt.typ {
            FXP_STATUS => status_result(&pkt.data, what),
            t => Err(unexpected(t, what)),
        }
    }

    fn handle(&self, pkt: Packet, what: &str) -> Result<Vec<u8>> {
        match pkt.typ {
            FXP_HANDLE => Reader::new(&pkt.data).string(),
            FXP_STATUS => Err(status_result(&pkt.data, what)
                .err()
                .unwrap_or_else(|| unexpected(FXP_STATUS, what))),
            t => Err(unexpected(t, what)),
        }
    }

    pub(super) fn open(&self, path: &str, flags: u32) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        put_str(&mut b, path.as_bytes());
        put_u32(&mut b, flags);
        if flags & OPEN_CREAT != 0 {
            put_u32(&mut b, ATTR_PERMISSIONS);
            put_u32(&mut b, 0o600);
        } else {
            put_u32(&mut b, 0);
        }
        let pkt = self.call(FXP_OPEN, &b)?;
        self.handle(pkt, path)
    }

    pub(super) fn close(&self, handle: &[u8], what: &str) -> Result<()> {
        let mut b = Vec::new();
        put_str(&mut b, handle);
        let pkt = self.call(FXP_CLOSE, &b)?;
        self.ok(pkt, what)
    }

    pub(super) fn path_op(&self, typ: u8, path: &str) -> Result<Packet> {
        let mut b = Vec::new();
        put_str(&mut b, path.as_bytes());
        if typ == FXP_MKDIR {
            put_u32(&mut b, ATTR_PERMISSIONS);
            put_u32(&mut b, 0o700);
        }
        self.call(typ, &b)
    }

    /// The size of a file (STAT), or NotFound.
    pub(super) fn stat_size(&self, path: &str) -> Result<u64> {
        let pkt = self.path_op(FXP_STAT, path)?;
        match pkt.typ {
            FXP_ATTRS => Ok(Attrs::parse(&mut Reader::new(&pkt.data))?.size.unwrap_or(0)),
            FXP_STATUS => Err(status_result(&pkt.data, path)
                .err()
                .unwrap_or_else(|| unexpected(FXP_STATUS, path))),
            t => Err(unexpected(t, path)),
        }
    }

    pub(super) fn mkdir(&self, path: &str) -> Result<()> {
        let pkt = self.path_op(FXP_MKDIR, path)?;
        match self.ok(pkt, path) {
            Ok(()) => Ok(()),
            // Exists already (servers answer FAILURE): fine if it is there now.
            Err(e) => match self.stat_size(path) {
                Ok(_) => Ok(()),
                Err(_) => Err(e),
            },
        }
    }

    pub(super) fn read_range(
        &self,
        path: &str,
        offset: u64,
        len: u64,
        limits: &Limits,
    ) -> Result<Vec<u8>> {
        let h = self.open(path, OPEN_READ)?;
        let result = self.read_handle(&h, path, offset, len, limits);
        let closed = self.close(&h, path);
        let data = result?;
        closed?;
        Ok(data)
    }

    pub(super) fn read_handle(
        &self,
        h: &[u8],
        path: &str,
        offset: u64,
        len: u64,
        limits: &Limits,
    ) -> Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(|_| Error::invalid("read too large"))?;
        let mut out = vec![0u8; len];
        let mut filled = 0usize; // bytes of `out` known complete, in order
        let mut next = 0usize; // next offset to request
        let mut inflight: std::collections::VecDeque<(usize, usize, Pending)> =
            std::collections::VecDeque::new();
        let request = |at: usize, n: usize| -> Result<Pending> {
            let mut b = Vec::with_capacity(h.len() + 16);
            put_str(&mut b, h);
            put_u64(&mut b, offset + at as u64);
            put_u32(&mut b, n as u32);
            self.send(FXP_READ, &b)
        };
        while filled < len {
            while inflight.len() < WINDOW && next < len {
                let n = CHUNK.min(len - next);
                inflight.push_back((next, n, request(next, n)?));
                next += n;
            }
            let (at, n, p) = inflight.pop_front().expect("a request is in flight");
            let pkt = self.wait(p)?;
            let got = match pkt.typ {
                FXP_DATA => {
                    let mut r = Reader::new(&pkt.data);
                    let data = r.bytes_ref()?;
                    let k = data.len().min(n);
                    out[at..at + k].copy_from_slice(&data[..k]);
                    k
                }
                FXP_STATUS => {
                    status_result(&pkt.data, path)?;
                    0 // EOF
                }
                t => return Err(unexpected(t, path)),
            };
            limits.down(got);
            if got == 0 {
                return Err(Error::corrupt(format!(
                    "{path}: the file ends at {} bytes, {} were expected (it is shorter than the index says)",
                    offset + at as u64,
                    offset + len as u64
                )));
            }
            // A short read (allowed by the protocol): fetch the rest of this chunk now.
            let mut at2 = at + got;
            while at2 < at + n {
                let pkt = self.wait(request(at2, at + n - at2)?)?;
                let k = match pkt.typ {
                    FXP_DATA => {
                        let data = Reader::new(&pkt.data).bytes_ref()?.to_vec();
                        let k = data.len().min(at + n - at2);
                        out[at2..at2 + k].copy_from_slice(&data[..k]);
                        k
                    }
                    FXP_STATUS => {
                        status_result(&pkt.data, path)?;
                        0
                    }
                    t => return Err(unexpected(t, path)),
                };
                if k == 0 {
                    return Err(Error::corrupt(format!(
                        "{path}: the file is shorter than expected"
                    )));
                }
                limits.down(k);
                at2 += k;
            }
            filled = at + n;
        }
        Ok(out)
    }

    pub(super) fn write_file(&self, path: &str, data: &[u8], limits: &Limits) -> Result<()> {
        let tmp = format!("{path}.tmp-{:016x}", rand::random::<u64>());
        let h = match self.open(&tmp, OPEN_WRITE | OPEN_CREAT | OPEN_TRUNC) {
            Ok(h) => h,
            Err(e) if e.kind() == Kind::NotFound => {
                // A missing directory (a data/xx subdirectory a foreign tool did not make).
                if let Some((dir, _)) = path.rsplit_once('/') {
                    self.mkdir(dir)?;
                }
                self.open(&tmp, OPEN_WRITE | OPEN_CREAT | OPEN_TRUNC)?
            }
            Err(e) => return Err(e),
        };
        let written = self.write_handle(&h, &tmp, data, limits).and_then(|()| {
            if self.fsync {
                let mut b = Vec::new();
                put_str(&mut b, b"fsync@openssh.com");
                put_str(&mut b, &h);
                let pkt = self.call(FXP_EXTENDED, &b)?;
                self.ok(pkt, &tmp)?;
            }
            Ok(())
        });
        let closed = self.close(&h, &tmp);
        if let Err(e) = written.and(closed) {
            let _ = self.path_op(FXP_REMOVE, &tmp);
            return Err(e);
        }
        let mut b = Vec::new();
        let pkt = if self.posix_rename {
            put_str(&mut b, b"posix-rename@openssh.com");
            put_str(&mut b, tmp.as_bytes());
            put_str(&mut b, path.as_bytes());
            self.call(FXP_EXTENDED, &b)?
        } else {
            // Plain RENAME refuses to replace; names are content hashes, so an existing
            // file already has these bytes.
            put_str(&mut b, tmp.as_bytes());
            put_str(&mut b, path.as_bytes());
            self.call(FXP_RENAME, &b)?
        };
        if let Err(e) = self.ok(pkt, path) {
            let _ = self.path_op(FXP_REMOVE, &tmp);
            if !self.posix_rename && self.stat_size(path).ok() == Some(data.len() as u64) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    fn write_handle(&self, h: &[u8], path: &str, data: &[u8], limits: &Limits) -> Result<()> {
        let mut inflight = std::collections::VecDeque::new();
        let mut at = 0usize;
        loop {
            while inflight.len() < WINDOW && at < data.len() {
                let n = CHUNK.min(data.len() - at);
                limits.up(n);
                let mut b = Vec::with_capacity(h.len() + n + 20);
                put_str(&mut b, h);
                put_u64(&mut b, at as u64);
                put_str(&mut b, &data[at..at + n]);
                inflight.push_back(self.send(FXP_WRITE, &b)?);
                at += n;
            }
            match inflight.pop_front() {
                Some(p) => {
                    let pkt = self.wait(p)?;
                    self.ok(pkt, path)?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Regular files in a directory with their sizes; a missing directory lists empty.
    pub(super) fn list_dir(&self, dir: &str) -> Result<Vec<(String, Attrs)>> {
        let pkt = self.path_op(FXP_OPENDIR, dir)?;
        let h = match self.handle(pkt, dir) {
            Ok(h) => h,
            Err(e) if e.kind() == Kind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let result = read_dir_replies(dir, MAX_DIR_ENTRIES, || {
            let mut b = Vec::new();
            put_str(&mut b, &h);
            self.call(FXP_READDIR, &b)
        });
        let closed = self.close(&h, dir);
        let out = result?;
        closed?;
        Ok(out)
    }

    pub(super) fn fstat_size(&self, h: &[u8], what: &str) -> Result<u64> {
        let mut b = Vec::new();
        put_str(&mut b, h);
        let pkt = self.call(FXP_FSTAT, &b)?;
        match pkt.typ {
            FXP_ATTRS => Attrs::parse(&mut Reader::new(&pkt.data))?
                .size
                .ok_or_else(|| {
                    Error::new(
                        Kind::Io,
                        format!("{what}: the server did not report a size"),
                    )
                }),
            FXP_STATUS => Err(status_result(&pkt.data, what)
                .err()
                .unwrap_or_else(|| unexpected(FXP_STATUS, what))),
            t => Err(unexpected(t, what)),
        }
    }
}

/// Entries one directory listing may hold. A repository's largest directories (`data/xx`)
/// hold tens of thousands of packs; a server sending more is broken or hostile, and would
/// otherwise grow our memory without end.
const MAX_DIR_ENTRIES: usize = 1 << 20;

/// READDIR answers in a row that carry no entry. Servers send EOF when a directory is done;
/// one answering empty NAME replies forever would keep us listing forever.
pub(super) const MAX_EMPTY_READDIRS: u32 = 100;

/// Collects a directory's entries from READDIR replies (`next` sends one READDIR and
/// returns its reply) until EOF; `.` and `..` are left out. More than `max_entries`
/// entries is an error.
pub(super) fn read_dir_replies(
    dir: &str,
    max_entries: usize,
    mut next: impl FnMut() -> Result<Packet>,
) -> Result<Vec<(String, Attrs)>> {
    let mut out = Vec::new();
    let mut empty = 0u32;
    loop {
        let pkt = next()?;
        match pkt.typ {
            FXP_NAME => {
                let mut r = Reader::new(&pkt.data);
                let count = r.u32()?;
                for _ in 0..count {
                    let name = String::from_utf8_lossy(&r.string()?).into_owned();
                    let _long = r.string()?;
                    let attrs = Attrs::parse(&mut r)?;
                    if name != "." && name != ".." {
                        out.push((name, attrs));
                    }
                }
                if count == 0 {
                    empty += 1;
                } else {
                    empty = 0;
                }
                if out.len() > max_entries || empty > MAX_EMPTY_READDIRS {
                    return Err(Error::new(
                        Kind::Io,
                        format!(
                            "{dir}: the SFTP server's listing does not end ({} entries, {empty} empty replies in a row); check the server",
                            out.len()
                        ),
                    ));
                }
            }
            FXP_STATUS => {
                let code = status_code(&pkt.data)?;
                if code == FX_EOF {
                    return Ok(out);
                }
                status_result(&pkt.data, dir)?;
                return Ok(out);
            }
            t => return Err(unexpected(t, dir)),
        }
    }
}

fn handshake_error(shared: &Shared, child: &mut Child, timeout: Duration) -> Error {
    // ssh prints its reason (refused, host key, auth) and exits; give it a moment.
    let deadline = std::time::Instant::now() + timeout.min(Duration::from_secs(5));
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(50)); // let the stderr thread drain
    let stderr = shared
        .stderr
        .lock()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let said = last_lines(&stderr);
    let lower = stderr.to_lowercase();
    if lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
    {
        Error::new(
            Kind::Auth,
            format!("SFTP: ssh refused the server's host key ({said}); check the host and your known_hosts (ssh-keyscan, or connect once with ssh)"),
        )
    } else if lower.contains("permission denied")
        || lower.contains("too many authentication failures")
    {
        Error::new(
            Kind::Auth,
            format!("SFTP: the server refused our login ({said}); check the user name and that your key is in the server's authorized_keys"),
        )
    } else if lower.contains("could not resolve hostname") {
        Error::new(
            Kind::Invalid,
            format!("SFTP: {said}; check the host name in the repository URL"),
        )
    } else {
        let said = if said.is_empty() {
            "ssh exited without a message".to_string()
        } else {
            said
        };
        Error::new(Kind::Network, format!("SFTP: cannot connect: {said}"))
    }
}

fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}
