//! Anything rclone reaches: `rclone:remote:path`. We start `rclone serve restic` on the
//! path and speak restic's REST protocol to it, like restic does.
//!
//! Decision: restic talks HTTP/2 over rclone's stdin/stdout (`--stdio`); a blocking HTTP/2
//! client would need an async runtime and the h2 stack in our binary. We instead let rclone
//! listen on a random loopback port (`--addr 127.0.0.1:0`, the port read from its log) with
//! a random password passed through the environment (RCLONE_USER/RCLONE_PASS, not the
//! command line, so `ps` does not show it). The process lives exactly as long as the
//! backend. `-o rclone.program=PATH` and `-o rclone.args="serve restic ..."` work as in
//! restic (a `--stdio` in them is dropped).

use super::rest::RestBackend;
use super::{Backend, FileInfo, FileType, Options};
use crate::error::{Error, Kind, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct RcloneBackend {
    spec: String,
    rest: RestBackend,
    child: Mutex<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for RcloneBackend {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn open(spec: &str, opts: &Options) -> Result<RcloneBackend> {
    if spec.is_empty() {
        return Err(Error::invalid(
            "rclone:: expected rclone:remote:path (a remote from `rclone config`) or rclone:/local/path",
        ));
    }
    let program = opts.get("rclone.program").unwrap_or("rclone");
    let args: Vec<String> = opts
        .get("rclone.args")
        .unwrap_or("serve restic --b2-hard-delete")
        .split_whitespace()
        .filter(|a| *a != "--stdio")
        .map(str::to_string)
        .collect();
    let password = hex::encode(rand::random::<[u8; 16]>());
    let mut child = Command::new(program)
        .args(&args)
        .args(["--addr", "127.0.0.1:0", spec])
        .envs(&opts.env)
        .env("RCLONE_USER", "cairn")
        .env("RCLONE_PASS", &password)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(
                Kind::Io,
                format!(
                    "starting {program:?}: {e} (install rclone, or point -o rclone.program at it)"
                ),
            )
        })?;
    let stderr = child.stderr.take().expect("piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = crossbeam_channel::bounded(1);
    {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("Serving restic REST API on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
                if let Ok(mut l) = log.lock() {
                    l.push(line);
                    let n = l.len();
                    if n > 50 {
                        l.drain(..n - 50);
                    }
                }
            }
        });
    }
    let url = match rx.recv_timeout(opts.timeouts.connect.max(Duration::from_secs(30))) {
        Ok(u) => u,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
            let said = log
                .lock()
                .map(|l| {
                    l.iter()
                        .rev()
                        .take(3)
                        .rev()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_default();
            return Err(Error::new(
                Kind::Invalid,
                format!("rclone:{spec}: rclone did not start serving ({said}); check the remote with `rclone lsd {}`", spec.split(':').next().unwrap_or(spec)),
            ));
        }
    };
    let authed = url.replacen("://", &format!("://cairn:{password}@"), 1);
    let rest = RestBackend::new(&authed, opts.http("rclone"))?;
    Ok(RcloneBackend {
        spec: spec.to_string(),
        rest,
        child: Mutex::new(child),
        log,
    })
}

impl RcloneBackend {
    /// Adds rclone's own last words to an error when it has died.
    fn explain(&self, e: Error) -> Error {
        let exited = self
            .child
            .lock()
            .ok()
            .and_then(|mut c| c.try_wait().ok().flatten());
        match exited {
            Some(status) => {
                let said = self
                    .log
                    .lock()
                    .map(|l| {
                        l.iter()
                            .rev()
                            .take(3)
                            .rev()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" / ")
                    })
                    .unwrap_or_default();
                e.context(format!("rclone exited ({status}): {said}"))
            }
            None => e,
        }
    }
}

impl Backend for RcloneBackend {
    fn connections(&self) -> usize {
        self.rest.connections()
    }
    fn location(&self) -> String {
        format!("rclone:{}", self.spec)
    }
    fn create(&self) -> Result<()> {
        self.rest.create().map_err(|e| self.explain(e))
    }
    fn has_config(&self) -> Result<bool> {
        self.rest.has_config().map_err(|e| self.explain(e))
    }
    fn list(&self, t: FileType) -> Result<Vec<FileInfo>> {
        self.rest.list(t).map_err(|e| self.explain(e))
    }
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.rest.read(t, name).map_err(|e| self.explain(e))
    }
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.rest
            .read_range(t, name, offset, len)
            .map_err(|e| self.explain(e))
    }
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.rest.write(t, name, data).map_err(|e| self.explain(e))
    }
    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        self.rest.remove(t, name).map_err(|e| self.explain(e))
    }
    fn renaming_retry(&self) -> Option<super::retry::Retry> {
        self.rest.renaming_retry()
    }
    fn write_once(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.rest
            .write_once(t, name, data)
            .map_err(|e| self.explain(e))
    }
}
