//! Real servers on loopback for the remote-backend tests: OpenSSH's sshd (SFTP), Garage
//! (S3), `rclone serve restic` (REST). Each test starts its own, on free ports, from the
//! scripts in scripts/peers/ (which scripts/test.sh's dependencies make runnable), and the
//! server dies with the test (Drop). Missing programs fail the test with what to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Peer {
    pub vars: HashMap<String, String>,
    pub state: PathBuf,
    script: &'static str,
    env: Vec<(String, String)>,
    pid_files: Vec<PathBuf>,
    /// A signal that ends the server and lets it clean up, when the test is done, instead
    /// of SIGKILL: PostgreSQL's SIGQUIT (immediate shutdown) removes its shared memory (a
    /// SysV segment and /dev/shm files that a SIGKILLed postmaster leaves behind for
    /// good: 126 of each on this machine after a day of CI runs).
    quit: Option<&'static str>,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        match self.quit {
            // Not waited for: the server cleans up on its own (1-2 s), the test goes on.
            Some(signal) => self.signal(signal),
            None => self.kill(),
        }
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(program: &str, args: &[&str], install: &str) {
    let ok = Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{program} is needed by this test: {install} (scripts/test.sh does it)"
    );
}

impl Peer {
    fn start(script: &'static str, env: Vec<(String, String)>, pid_files: &[&str]) -> Peer {
        let dir = tempfile::Builder::new()
            .prefix("cairn-peer")
            .tempdir()
            .unwrap();
        let state = dir.path().join("state");
        let mut p = Peer {
            vars: HashMap::new(),
            state: state.clone(),
            script,
            env,
            pid_files: pid_files.iter().map(|f| state.join(f)).collect(),
            quit: None,
            _dir: dir,
        };
        p.vars = p.run_script();
        p
    }

    fn run_script(&self) -> HashMap<String, String> {
        let out = Command::new("bash")
            .arg(scripts().join(self.script))
            .env("STATE", &self.state)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run peer script");
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            self.script,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    }

    pub fn var(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .unwrap_or_else(|| panic!("{} printed no {k}", self.script))
    }

    /// Sends `signal` (`kill`'s argument) to every process of the peer.
    fn signal(&self, signal: &str) {
        for f in &self.pid_files {
            if let Ok(pid) = std::fs::read_to_string(f) {
                let _ = Command::new("kill").arg(signal).arg(pid.trim()).status();
            }
        }
    }

    /// SIGKILLs the server (all nodes of a cluster).
    pub fn kill(&self) {
        self.signal("-9");
        // Let the kernel release the listening ports before a restart.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    /// SIGKILLs one process of the peer (node `i` of a cluster, by pid file index).
    pub fn kill_one(&self, i: usize) {
        let pid = std::fs::read_to_string(&self.pid_files[i]).unwrap();
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
    }

    /// Starts the server again with the same state and ports.
    pub fn restart(&self) {
        self.run_script();
    }
}

pub fn rest() -> Peer {
    require("rclone", &["version"], "apt-get install rclone");
    let port = free_port();
    Peer::start(
        "start-rest.sh",
        vec![("REST_PORT".into(), port.to_string())],
        &["rclone.pid"],
    )
}

pub fn sftp() -> Peer {
    require(
        "ssh",
        &["-V"],
        "apt-get install openssh-client openssh-server",
    );
    require("/usr/sbin/sshd", &["-V"], "apt-get install openssh-server");
    let port = free_port();
    Peer::start(
        "start-sftp.sh",
        vec![("SFTP_PORT".into(), port.to_string())],
        &["sshd.pid"],
    )
}

pub fn garage() -> Peer {
    require("garage", &["--version"], "cargo install garage --locked");
    let env = vec![
        ("GARAGE_S3_PORT".into(), free_port().to_string()),
        ("GARAGE_RPC_PORT".into(), free_port().to_string()),
        ("GARAGE_ADMIN_PORT".into(), free_port().to_string()),
    ];
    Peer::start("start-garage.sh", env, &["garage.pid"])
}

pub fn garage_cluster() -> Peer {
    require("garage", &["--version"], "cargo install garage --locked");
    Peer::start(
        "start-garage-cluster.sh",
        Vec::new(),
        &["n1/garage.pid", "n2/garage.pid", "n3/garage.pid"],
    )
}

pub fn postgres() -> Peer {
    require("pg_dump", &["--version"], "apt-get install postgresql");
    let mut pg = Peer::start(
        "start-postgres.sh",
        vec![("PG_PORT".into(), free_port().to_string())],
        &["postgres.pid"],
    );
    pg.quit = Some("-QUIT");
    pg
}

pub fn mariadb() -> Peer {
    require(
        "mysqldump",
        &["--version"],
        "apt-get install mariadb-server",
    );
    Peer::start("start-mariadb.sh", Vec::new(), &["mariadb.pid"])
}
