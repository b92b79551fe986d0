//! Running a database client or tool as a child: stdin from a file or bytes, stdout and
//! stderr read in threads (bounded tails), killed at the deadline.

use super::Clock;
use anyhow::{Context, Result};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How much of stderr an error message keeps (the end, where the failure is).
pub const STDERR_TAIL: usize = 64 * 1024;
/// How much of stdout a query's answer may be (the end is kept).
const STDOUT_TAIL: usize = 1024 * 1024;
/// How many counted error lines are kept for a message.
const KEPT_ERRORS: usize = 10;

/// Picks the stderr lines to count as errors.
pub type Counter = Box<dyn Fn(&str) -> bool + Send>;

/// A child's stdin.
pub enum Input {
    Null,
    /// Streamed from this file (a dump), without reading it into memory.
    File(PathBuf),
    /// A small script.
    Bytes(Vec<u8>),
}

/// What a child did.
pub struct Ran {
    pub status: ExitStatus,
    /// The end of its stdout.
    pub stdout: String,
    /// The end of its stderr.
    pub stderr: String,
    /// Lines of stderr the caller's `counts` picked (the first few) and how many in all.
    pub errors: Vec<String>,
    pub error_count: u64,
}

impl Ran {
    /// "exit status 3: <last lines of stderr>", for an error message.
    pub fn failure(&self) -> String {
        let status = match self.status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        let err = last_lines(&self.stderr, 20);
        if err.is_empty() {
            status
        } else {
            format!("{status}: {err}")
        }
    }
}

/// The last `n` non-empty lines of `s`, joined with newlines.
/// Clears a scratch server's (or its client's) environment: no client settings pointing
/// at another server, and no secret (repository passwords, cloud keys) in a process
/// another user owns and could read from /proc. PATH and TZ kept, LANG=C.
pub fn scrub_env(c: &mut Command) {
    c.env_clear();
    for k in ["PATH", "TZ"] {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c.env("LANG", "C");
}

pub fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` with `input` until it exits, or kills it at the clock's deadline (an
/// error naming `what`). `counts`: stderr lines to count as errors (see [`Ran::errors`]).
pub fn run(
    mut cmd: Command,
    input: Input,
    clock: &Clock,
    what: &str,
    counts: Option<Counter>,
) -> Result<Ran> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut feed = None;
    match input {
        Input::Null => {
            cmd.stdin(Stdio::null());
        }
        Input::File(path) => {
            let f = std::fs::File::open(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            cmd.stdin(Stdio::from(f));
        }
        Input::Bytes(b) => {
            cmd.stdin(Stdio::piped());
            feed = Some(b);
        }
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program} ({what})"))?;
    if let (Some(bytes), Some(mut stdin)) = (feed, child.stdin.take()) {
        // A thread: a child that answers before reading all its input must not block us.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let out = child
        .stdout
        .take()
        .map(|p| tail_reader(p, STDOUT_TAIL, None));
    let err = child
        .stderr
        .take()
        .map(|p| tail_reader(p, STDERR_TAIL, counts));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if clock.expired() => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "{program} ({what}) did not finish within the timeout ({}) and was killed: raise the timeout if the database is large",
                    clock.shown()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e).with_context(|| format!("waiting for {program} ({what})")),
        }
    };
    // The pipes close with the child (these clients start no children of their own); a
    // bounded wait all the same.
    let collect = |rx: Option<mpsc::Receiver<Tail>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(5)).ok())
            .unwrap_or_default()
    };
    let out = collect(out);
    let err = collect(err);
    Ok(Ran {
        status,
        stdout: out.text,
        stderr: err.text,
        errors: err.picked,
        error_count: err.count,
    })
}

#[derive(Default)]
struct Tail {
    text: String,
    picked: Vec<String>,
    count: u64,
}

/// Reads `pipe` to its end in a thread, keeping its last `max` bytes and the lines
/// `counts` picks.
fn tail_reader(
    pipe: impl Read + Send + 'static,
    max: usize,
    counts: Option<Counter>,
) -> mpsc::Receiver<Tail> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(pipe);
        let mut buf: Vec<u8> = Vec::new();
        let mut t = Tail::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(counts) = &counts {
                let l = String::from_utf8_lossy(&line);
                if counts(l.trim_end()) {
                    t.count += 1;
                    if t.picked.len() < KEPT_ERRORS {
                        t.picked.push(l.trim_end().to_string());
                    }
                }
            }
            buf.extend_from_slice(&line);
            if buf.len() > 2 * max {
                buf.drain(..buf.len() - max);
            }
        }
        if buf.len() > max {
            buf.drain(..buf.len() - max);
        }
        t.text = String::from_utf8_lossy(&buf).into_owned();
        let _ = tx.send(t);
    });
    rx
}

/// The last `max` bytes of a file (a server's log), empty when unreadable.
pub fn file_tail(path: &Path, max: u64) -> String {
    use std::io::Seek;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(max)));
    let mut b = Vec::new();
    let _ = f.take(max).read_to_end(&mut b);
    last_lines(&String::from_utf8_lossy(&b), 15)
}
