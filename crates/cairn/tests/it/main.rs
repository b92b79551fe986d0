//! Integration tests of the `cairn` binary, with the real `restic` as the oracle.
//!
//! restic must be installed (scripts/test.sh installs Debian's package); tests fail, not
//! skip, when it is missing.

mod bad_input;
mod browse;
mod check_policies;
mod config_check;
mod config_features;
mod damaged;
mod databases;
mod disaster;
mod examples;
mod faults;
mod fleet;
mod forget;
mod help;
mod hints;
mod import;
mod install;
mod interop;
mod lifecycle;
mod limits;
mod local_user;
mod names;
mod names_config;
mod nix_module;
mod peers;
mod plans;
mod protocol;
mod proven_restore;
mod recover;
mod remote;
mod repair;
mod restore_safety;
mod restore_tests;
mod rewrite_plan;
mod sources;
mod systemd_units;
mod usage;
mod web_auth;
mod web_browse;
mod web_clients;
mod web_config;
mod web_data;
mod web_hostile;
mod web_peers;
mod web_runs;
mod web_tls;
mod web_ui;
pub mod webkit;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch area with a repository path and a password file.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("cairn-it")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("pw"), format!("{PASSWORD}\n")).unwrap();
        Env { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// Runs cairn against this env's repository.
    pub fn cairn(&self, args: &[&str]) -> Output {
        self.cairn_repo(&self.repo(), args)
    }

    pub fn cairn_repo(&self, repo: &Path, args: &[&str]) -> Output {
        self.cairn_cmd(repo, args).output().expect("run cairn")
    }

    /// The cairn command line for `repo`, to adjust (working directory, environment).
    pub fn cairn_cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("-r")
            .arg(repo)
            .arg("--password-file")
            .arg(self.path("pw"))
            .args(args)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_CACHE_DIR")
            .env("CAIRN_CACHE_DIR", self.path("cache"));
        c
    }

    /// cairn with the config file `config` and nothing of the caller's environment that
    /// names a repository, a password, credentials or a cache, run in this env's directory
    /// (a bug that writes to `./NAME` writes there, never into the source tree).
    pub fn config_cmd(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.current_dir(self.path(""))
            .arg("--config")
            .arg(config)
            .args(args)
            .env("CAIRN_CACHE_DIR", self.path("cache"));
        for var in [
            "RESTIC_REPOSITORY",
            "CAIRN_REPOSITORY",
            "RESTIC_PASSWORD",
            "RESTIC_PASSWORD_FILE",
            "RESTIC_PASSWORD_COMMAND",
            "RESTIC_REST_USERNAME",
            "RESTIC_REST_PASSWORD",
            "RESTIC_CACHE_DIR",
            "CREDENTIALS_DIRECTORY",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Runs [`Env::config_cmd`].
    pub fn config_run(&self, config: &Path, args: &[&str]) -> Output {
        self.config_cmd(config, args).output().expect("run cairn")
    }

    /// Runs the real restic against this env's repository.
    pub fn restic(&self, args: &[&str]) -> Output {
        self.restic_cmd(args).output().expect("run restic")
    }

    /// Runs the real restic against `repo` with this env's password.
    pub fn restic_repo(&self, repo: &Path, args: &[&str]) -> Output {
        self.restic_repo_cmd(repo, args)
            .output()
            .expect("run restic")
    }

    /// The restic command line for this env's repository, to adjust.
    pub fn restic_cmd(&self, args: &[&str]) -> Command {
        self.restic_repo_cmd(&self.repo(), args)
    }

    fn restic_repo_cmd(&self, repo: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(restic_bin());
        c.arg("-r")
            .arg(repo)
            .arg("--password-file")
            .arg(self.path("pw"))
            .arg("--no-cache")
            .args(args);
        c
    }
}

/// Runs `sh -c cmd`; true if it succeeded.
pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap()
        .success()
}

/// Runs `sh -c cmd`, returning its trimmed stdout; panics with its stderr on failure.
pub fn sh_out(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Writes `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file path")).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn restic_bin() -> &'static str {
    let ok = Command::new("restic").arg("version").output().is_ok();
    assert!(
        ok,
        "the real restic is needed as the test oracle: install it (`apt-get install restic`, or run scripts/test.sh)"
    );
    "restic"
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A source tree exercising every kind of entry: random and compressible files of many
/// sizes, empty file and dir, nested dirs, symlinks, a hard link, a fifo, an xattr,
/// unusual permissions and names.
pub fn make_source(root: &Path) {
    std::fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("big-random.bin"), random_bytes(1, 12 << 20)).unwrap();
    let text: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| format!("line {i} of a compressible log file\n").into_bytes())
        .take(5 << 20)
        .collect();
    std::fs::write(root.join("docs/log.txt"), &text).unwrap();
    for i in 0..50u64 {
        std::fs::write(
            root.join(format!("docs/deep/small-{i}.dat")),
            random_bytes(100 + i, (i as usize) * 997),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("docs/deep/deeper/ünïcødé <&> name.txt"),
        b"hello\n",
    )
    .unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::os::unix::fs::symlink("docs/log.txt", root.join("link-to-log")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling-link")).unwrap();
    std::fs::hard_link(root.join("docs/log.txt"), root.join("hardlink-to-log")).unwrap();
    nix::unistd::mkfifo(
        &root.join("a-fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    // A character device (like /dev/null); the tests run as root.
    nix::sys::stat::mknod(
        &root.join("null-device"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod needs root (CI runs as root)");
    let secret = root.join("secret.key");
    std::fs::write(&secret, b"top secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        root.join("docs/deep"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let _ = xattr::set(
        root.join("docs/log.txt"),
        "user.cairn",
        b"xattr value\x00\x01",
    );
    // Pin times: mtimes in the past, atimes recent (so relatime won't move them on read).
    pin_times(root);
}

/// Sets every entry's mtime to a fixed past time and atime to a minute ago, so reading
/// files does not change their atime (relatime) and trees are reproducible.
pub fn pin_times(root: &Path) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let atime = TimeSpec::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 60,
        0,
    );
    let mtime = TimeSpec::new(1_600_000_000, 123_456_789);
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    for p in all.iter().rev() {
        utimensat(
            None,
            p.as_path(),
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

/// Compares two trees: names, types, content, permissions, mtimes, symlink targets, xattrs.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = std::fs::symlink_metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    let mb = std::fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{}: {e}", b.display()));
    assert_eq!(ma.file_type(), mb.file_type(), "type of {}", b.display());
    assert_eq!(ma.mode(), mb.mode(), "mode of {}", b.display());
    assert_eq!(ma.rdev(), mb.rdev(), "device number of {}", b.display());
    assert_eq!(
        (ma.uid(), ma.gid()),
        (mb.uid(), mb.gid()),
        "owner of {}",
        b.display()
    );
    if !ma.is_dir() {
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {}", b.display());
        assert_eq!(
            ma.mtime_nsec(),
            mb.mtime_nsec(),
            "mtime ns of {}",
            b.display()
        );
    }
    if ma.file_type().is_symlink() {
        assert_eq!(
            std::fs::read_link(a).unwrap(),
            std::fs::read_link(b).unwrap()
        );
        return;
    }
    if ma.is_file() {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "content of {}",
            b.display()
        );
        let xa: Vec<_> = xattr::list(a).map(|l| l.collect()).unwrap_or_default();
        for name in xa {
            assert_eq!(
                xattr::get(a, &name).unwrap(),
                xattr::get(b, &name).unwrap(),
                "xattr {name:?} of {}",
                b.display()
            );
        }
    }
    if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        assert_eq!(na, nb, "entries of {}", b.display());
        for n in na {
            assert_same_tree(&a.join(&n), &b.join(&n));
        }
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of dir {}", b.display());
    }
}

/// Parses cairn's or restic's JSON output (last JSON line).
pub fn json(out: &str) -> serde_json::Value {
    if let Ok(v) = serde_json::from_str(out) {
        return v;
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or("null");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

/// All files under `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
