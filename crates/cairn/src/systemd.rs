//! `cairn systemd generate`: a `.service` and a `.timer` per scheduled plan, for users who
//! prefer systemd timers to `cairn daemon`, and `cairn-alert.{service,timer}` running
//! `cairn status --alert` hourly (the daemon's overdue alert, for timer users).
//!
//! Each plan's service runs `cairn run PLAN` once, with the plan's priority and a hardened
//! sandbox: the file system is read-only except the paths [`writable_paths`] lists for the
//! plan; /tmp is private. This module only writes unit text and decides paths; it must not
//! run plans or talk to systemd.

use crate::config::{Config, Ionice, Password, Plan};
use crate::sources::SnapshotKind;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The unit name of a plan.
pub fn unit_name(plan: &str) -> String {
    format!("cairn-{plan}")
}

/// The unit name of the overdue check (`cairn status --alert`).
pub const ALERT_UNIT: &str = "cairn-alert";

/// What a plan's service writes at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The state directory: history database, plan locks, protocol files.
    State,
    /// The plan's scratch under the state directory: SQLite copies, LVM snapshot mounts.
    Work,
    /// Restore-test scratch under the state directory.
    RestoreTest,
    /// A local repository: the plan's own or a `copy-to` destination.
    Repository,
    /// The local cache of a remote repository (the plan's or a `copy-to` destination).
    Cache,
    /// Where filesystem snapshots are made (Btrfs snapshot directory, LVM's own files).
    Snapshots,
    /// The directory of `metrics.textfile`.
    MetricsTextfile,
    /// The directory of a SQLite database copied online: a reader of a WAL database
    /// creates its `-shm` there when the service using it is stopped.
    Sqlite,
}

/// A path a plan's service must be able to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    pub path: PathBuf,
    pub purpose: Purpose,
    /// For whom: a repository's name, a snapshotted path, ...
    pub what: String,
    /// cairn creates this directory itself when missing; under the sandbox it cannot
    /// (ReadWritePaths= opens only existing paths), so the generator creates it.
    pub create: bool,
}

impl Writable {
    /// What the path is for, in the unit's comments.
    pub fn describe(&self) -> String {
        let w = &self.what;
        match self.purpose {
            Purpose::State => "state: history database, locks".into(),
            Purpose::Work => format!("scratch of plan {w}: SQLite copies, LVM snapshot mounts"),
            Purpose::RestoreTest => "restore-test scratch".into(),
            Purpose::Repository => format!("repository {w}"),
            Purpose::Cache => format!("cache of repository {w}"),
            Purpose::Snapshots => format!("filesystem snapshots of {w}"),
            Purpose::MetricsTextfile => "metrics textfile".into(),
            Purpose::Sqlite => format!("SQLite database {w} (its -shm and -wal)"),
        }
    }
}

/// Who the units run as, and what that user's defaults are.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The cache directory of a remote repository that sets no `cache-dir`: what cairn
    /// would use as the generating user (`CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`,
    /// else `~/.cache/cairn`). Pinned in the unit with `Environment=`: a system service
    /// has no `$HOME` unless `User=` is set.
    pub default_cache: Option<PathBuf>,
    /// `User=` of the services: the generating user when not root (their state and cache
    /// directories are the ones derived here).
    pub user: Option<String>,
}

impl Target {
    /// The user running `cairn systemd generate`.
    pub fn current() -> Target {
        let default_cache = std::env::var_os("CAIRN_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(cairn_repo::backend::cache::default_dir)
            .and_then(|d| std::path::absolute(d).ok());
        let uid = nix::unistd::geteuid();
        let user = if uid.is_root() {
            None
        } else {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
        };
        Target {
            default_cache,
            user,
        }
    }
}

/// The local path of a repository URL, as the backend opens it (`/p`, `local:/p`, or a
/// scheme the backends do not know); `None` for a remote repository.
pub fn local_path(url: &str) -> Option<PathBuf> {
    let path = match url.split_once(':') {
        Some(("local", rest)) => rest,
        Some((s, _))
            if !s.contains('/')
                && s.len() > 1
                && ["rest", "s3", "b2", "sftp", "rclone", "azure", "gs", "swift"].contains(&s) =>
        {
            return None
        }
        _ => url,
    };
    Some(PathBuf::from(path))
}

/// The Btrfs subvolume holding `path` on this machine, if it is on Btrfs.
pub fn btrfs_subvolume(path: &Path) -> Option<PathBuf> {
    crate::sources::btrfs_subvolume(path).ok()
}

/// Every path the service of `plan` writes, with why. `subvolume` finds the Btrfs
/// subvolume of a path on this machine (`None` when it cannot be found here, e.g. the
/// units are generated elsewhere: then every directory at or above the path may hold the
/// snapshot directory, and each such `.cairn-snapshots` is listed). Database dumps are
/// streamed into the backup (`--from-command`): they need no scratch.
pub fn writable_paths(
    config: &Config,
    plan: &Plan,
    target: &Target,
    subvolume: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Vec<Writable> {
    let mut out = Vec::new();
    let mut add = |path: PathBuf, purpose: Purpose, what: &str, create: bool| {
        let path = std::path::absolute(&path).unwrap_or(path);
        out.push(Writable {
            path,
            purpose,
            what: what.to_string(),
            create,
        });
    };
    let state = &config.settings.state_dir;
    add(state.clone(), Purpose::State, "history, locks", true);
    add(
        state.join("work").join(&plan.name),
        Purpose::Work,
        &plan.name,
        false,
    );
    if plan.restore_test.is_some() {
        add(
            state.join("restore-test"),
            Purpose::RestoreTest,
            &plan.name,
            false,
        );
    }
    for name in std::iter::once(&plan.repository).chain(&plan.copy_to) {
        let Some(repo) = config.repositories.get(name) else {
            continue;
        };
        match local_path(&repo.url) {
            Some(p) => add(p, Purpose::Repository, name, false),
            // A local repository is its own cache; a remote one gets one.
            None => {
                if let Some(c) = repo.cache_dir.as_ref().or(target.default_cache.as_ref()) {
                    add(c.clone(), Purpose::Cache, name, true);
                }
            }
        }
    }
    for (path, kind) in &plan.snapshots {
        let what = path.display().to_string();
        match kind {
            SnapshotKind::Btrfs => match subvolume(path) {
                Some(sv) => add(
                    sv.join(crate::sources::BTRFS_DIR),
                    Purpose::Snapshots,
                    &what,
                    true,
                ),
                None => {
                    for dir in path.ancestors() {
                        add(
                            dir.join(crate::sources::BTRFS_DIR),
                            Purpose::Snapshots,
                            &what,
                            false,
                        );
                    }
                }
            },
            // lvcreate archives and backs up the volume group's metadata under /etc/lvm
            // and takes its locks under /run; mount(8) records the snapshot's mount in
            // /run/mount. The mount point itself is in the plan's work directory.
            SnapshotKind::Lvm => {
                for p in [
                    "/etc/lvm/archive",
                    "/etc/lvm/backup",
                    "/run/lock/lvm",
                    "/run/lvm",
                    "/run/mount",
                ] {
                    add(PathBuf::from(p), Purpose::Snapshots, &what, false);
                }
            }
            // `zfs snapshot` is an ioctl on /dev/zfs (the sandbox leaves /dev alone) and
            // the snapshot is read through the dataset's .zfs directory: nothing to write.
            SnapshotKind::Zfs => {}
        }
    }
    for db in &plan.sqlite {
        if let Some(dir) = db.parent() {
            add(
                dir.to_path_buf(),
                Purpose::Sqlite,
                &db.display().to_string(),
                false,
            );
        }
    }
    if let Some(dir) = config
        .settings
        .metrics_textfile
        .as_ref()
        .and_then(|tf| tf.parent())
    {
        add(
            dir.to_path_buf(),
            Purpose::MetricsTextfile,
            "metrics",
            false,
        );
    }
    out
}

/// The shortest list covering `paths`: a path under another listed one is dropped.
fn covering(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = paths.into_iter().collect();
    all.sort();
    all.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for p in all {
        if !out.iter().any(|o| p.starts_with(o)) {
            out.push(p);
        }
    }
    out
}

/// One word of a unit setting: `%` doubled (specifiers), quoted with C escapes when it
/// holds a space, a quote or a backslash; `$` doubled in command lines.
fn word(s: &str, command: bool) -> String {
    let mut w = s.replace('%', "%%");
    if command {
        w = w.replace('$', "$$");
    }
    if w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        let escaped = w
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace('\t', "\\t");
        format!("\"{escaped}\"")
    } else {
        w
    }
}

fn exec(exe: &Path, config_path: &Path, args: &[&str]) -> String {
    let mut line = format!(
        "ExecStart={} --config {}",
        word(&exe.display().to_string(), true),
        word(&config_path.display().to_string(), true)
    );
    for a in args {
        line.push(' ');
        line.push_str(&word(a, true));
    }
    line
}

/// The sandbox shared by every generated service, writable only at `writable`.
///
/// `ProtectHome=read-only` stays even when a plan writes under /home, /root or /run/user
/// (a Btrfs snapshot of /home is made in /home/.cairn-snapshots; a non-root user's state
/// and cache are in their home): systemd (252 here) mounts every ReadWritePaths= entry as
/// a writable bind mount of itself and applies the read-only mounts of ProtectSystem= and
/// ProtectHome= with those entries excluded, deepest path last, so a listed directory
/// under a read-only /home stays writable and the rest of /home stays read-only. (A Btrfs
/// snapshot ioctl needs a writable mount only for the destination directory; the source
/// subvolume only needs to be on the same filesystem.) The entries are prefixed `-`: a
/// missing one is skipped instead of failing the unit.
fn sandbox(s: &mut String, writable: &[PathBuf]) {
    let list = writable
        .iter()
        .map(|w| word(&format!("-{}", w.display()), false))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(
        s,
        "ProtectSystem=strict\nReadWritePaths={list}\nProtectHome=read-only\nPrivateTmp=true\nNoNewPrivileges=true\n\
         ProtectKernelTunables=true\nProtectKernelModules=true\nProtectControlGroups=true\nRestrictSUIDSGID=true\n\
         LockPersonality=true\nRestrictRealtime=true"
    );
}

fn header(s: &mut String, description: &str, config_path: &Path, target: &Target, cache: bool) {
    let _ = writeln!(
        s,
        "# Generated by `cairn systemd generate` from {}: edit the config and generate again.",
        config_path.display()
    );
    let _ = writeln!(s, "[Unit]\nDescription={description}\nAfter=network-online.target\nWants=network-online.target\n");
    let _ = writeln!(s, "[Service]\nType=oneshot");
    if let Some(u) = &target.user {
        let _ = writeln!(s, "User={}", word(u, false));
    }
    if let Some(c) = target.default_cache.as_ref().filter(|_| cache) {
        let _ = writeln!(
            s,
            "Environment={}",
            word(&format!("CAIRN_CACHE_DIR={}", c.display()), false)
        );
    }
}

/// The systemd credentials (`password-credential`, `env-credential`) of every repository
/// a plan opens: its own and its `copy-to` destinations, sorted, each once.
pub fn credentials(config: &Config, plan: &Plan) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let repos = std::iter::once(&plan.repository).chain(plan.copy_to.iter());
    for repo in repos.filter_map(|r| config.repositories.get(r)) {
        if let Password::Credential(n) = &repo.password {
            names.insert(n.clone());
        }
        names.extend(repo.env_credential.iter().cloned());
    }
    names.into_iter().collect()
}

/// The `.service` of a plan; `writable` from [`writable_paths`], `credentials` from
/// [`credentials`].
pub fn service(
    plan: &Plan,
    writable: &[Writable],
    credentials: &[String],
    target: &Target,
    exe: &Path,
    config_path: &Path,
) -> String {
    let mut s = String::new();
    header(
        &mut s,
        &format!("cairn backup plan {}", plan.name),
        config_path,
        target,
        true,
    );
    let _ = writeln!(s, "{}", exec(exe, config_path, &["run", &plan.name]));
    let _ = writeln!(s, "Nice={}", plan.nice.unwrap_or(10));
    match plan.ionice {
        Some(Ionice::BestEffort(l)) => {
            let _ = writeln!(s, "IOSchedulingClass=best-effort\nIOSchedulingPriority={l}");
        }
        _ => {
            let _ = writeln!(s, "IOSchedulingClass=idle");
        }
    }
    for w in writable {
        let _ = writeln!(s, "# writes {}: {}", w.path.display(), w.describe());
    }
    if plan.hooks.iter().any(|(_, h)| !h.is_empty()) {
        let _ = writeln!(
            s,
            "# Hooks writing anywhere else need that path in ReadWritePaths= (in a drop-in: systemctl edit {}.service).",
            unit_name(&plan.name)
        );
    }
    if !credentials.is_empty() {
        // `LoadCredential=NAME` alone: systemd looks for the file NAME in /etc/credstore,
        // /run/credstore and /usr/lib/credstore (systemd.exec(5)); the config names the
        // credential, never the secret's path, so that is where it goes unless a drop-in
        // gives the path.
        let _ = writeln!(
            s,
            "# Secrets: put each in /etc/credstore/NAME (mode 0400), or give its path with LoadCredential=NAME:/path in a drop-in."
        );
        for name in credentials {
            let _ = writeln!(s, "LoadCredential={}", word(name, false));
        }
    }
    sandbox(&mut s, &covering(writable.iter().map(|w| w.path.clone())));
    let _ = writeln!(s, "# A stop sends SIGTERM: cairn removes its lock and runs the plan's finally hooks.\nKillMode=mixed\nTimeoutStopSec=5min");
    s
}

pub fn timer(plan: &Plan) -> Option<String> {
    let sched = plan.schedule.as_ref()?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Generated by `cairn systemd generate`.\n[Unit]\nDescription=cairn backup plan {} ({})\n",
        plan.name, sched
    );
    let _ = writeln!(s, "[Timer]");
    for line in sched.to_systemd() {
        let _ = writeln!(s, "OnCalendar={line}");
    }
    let _ = writeln!(s, "# Catch up once after the machine was off.\nPersistent=true\n\n[Install]\nWantedBy=timers.target");
    Some(s)
}

/// `cairn-alert.service`: `cairn status --alert`, which writes only its state.
pub fn alert_service(config: &Config, target: &Target, exe: &Path, config_path: &Path) -> String {
    let mut s = String::new();
    header(
        &mut s,
        "cairn: notify plans without a successful backup within their max-age",
        config_path,
        target,
        false,
    );
    let _ = writeln!(s, "{}", exec(exe, config_path, &["status", "--alert"]));
    let state = &config.settings.state_dir;
    sandbox(
        &mut s,
        &[std::path::absolute(state).unwrap_or(state.clone())],
    );
    s
}

/// `cairn-alert.timer`: hourly.
pub fn alert_timer() -> String {
    "# Generated by `cairn systemd generate`.\n[Unit]\nDescription=cairn: hourly check for overdue plans\n\n\
     [Timer]\nOnCalendar=hourly\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, text: &str) -> Config {
        let path = dir.join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path, crate::config::LoadOptions { offline: true })
            .map(|(c, _)| c)
            .unwrap()
    }

    #[test]
    fn writable_paths_name_every_kind_of_path_a_plan_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().display().to_string();
        let c = config(
            tmp.path(),
            &format!(
                "[settings]\nstate-dir = \"{d}/state\"\nmetrics = {{ textfile = \"{d}/prom/cairn.prom\" }}\n\
                 [repositories.nas]\nurl = \"rest:http://nas:8000/r\"\npassword-file = \"{d}/pw\"\ncache-dir = \"{d}/nas-cache\"\n\
                 [repositories.usb]\nurl = \"local:{d}/usb\"\npassword-file = \"{d}/pw\"\n\
                 [repositories.cloud]\nurl = \"s3:s3.example.com/b\"\npassword-file = \"{d}/pw\"\n\
                 [repositories.lv]\nurl = \"{d}/lvrepo\"\npassword-file = \"{d}/pw\"\n\
                 [sources.hass]\nsqlite = [\"/var/lib/hass/db.sqlite\"]\n\
                 [sources.home]\npaths = [\"/home/alice\"]\nsnapshot = {{ kind = \"btrfs\" }}\n\
                 [sources.srv]\npaths = [\"/srv/data\"]\nsnapshot = {{ kind = \"lvm\" }}\n\
                 [plans.home]\nrepository = \"nas\"\nsources = [\"home\", \"hass\"]\ncopy-to = [\"usb\", \"cloud\"]\n\
                 restore-test = {{ files = 3 }}\n\
                 [plans.srv]\nrepository = \"lv\"\nsources = [\"srv\"]\n"
            ),
        );
        let target = Target {
            default_cache: Some(PathBuf::from("/home/alice/.cache/cairn")),
            user: Some("alice".into()),
        };
        let found = |p: &Path| (p == Path::new("/home/alice")).then(|| PathBuf::from("/home"));
        let w = writable_paths(&c, &c.plans["home"], &target, &found);
        let has = |purpose: Purpose, path: String, create: bool| {
            assert!(
                w.iter().any(|x| x.purpose == purpose
                    && x.path == Path::new(&path)
                    && x.create == create),
                "{purpose:?} {path} missing from {w:#?}"
            );
        };
        has(Purpose::State, format!("{d}/state"), true);
        has(Purpose::Work, format!("{d}/state/work/home"), false);
        has(
            Purpose::RestoreTest,
            format!("{d}/state/restore-test"),
            false,
        );
        has(Purpose::Repository, format!("{d}/usb"), false);
        has(Purpose::Cache, format!("{d}/nas-cache"), true);
        // The copy-to destination without cache-dir: the unit user's cache, not /root's.
        has(Purpose::Cache, "/home/alice/.cache/cairn".into(), true);
        has(Purpose::Snapshots, "/home/.cairn-snapshots".into(), true);
        has(Purpose::MetricsTextfile, format!("{d}/prom"), false);
        has(Purpose::Sqlite, "/var/lib/hass".into(), false);
        assert!(!w.iter().any(|x| x.path.starts_with("/root")), "{w:#?}");

        // The subvolume unknown here: every directory above may hold the snapshots.
        let w = writable_paths(&c, &c.plans["home"], &target, &|_| None);
        let snaps: Vec<_> = w
            .iter()
            .filter(|x| x.purpose == Purpose::Snapshots)
            .map(|x| (x.path.display().to_string(), x.create))
            .collect();
        assert_eq!(
            snaps,
            [
                ("/home/alice/.cairn-snapshots".to_string(), false),
                ("/home/.cairn-snapshots".into(), false),
                ("/.cairn-snapshots".into(), false)
            ]
        );

        // LVM: its metadata archive and locks; the mount point is in the work directory.
        let w = writable_paths(&c, &c.plans["srv"], &target, &|_| None);
        for p in ["/etc/lvm/archive", "/run/lock/lvm", "/run/mount"] {
            assert!(
                w.iter()
                    .any(|x| x.purpose == Purpose::Snapshots && x.path == Path::new(p)),
                "{p}: {w:#?}"
            );
        }
        has_local(&w, &format!("{d}/lvrepo"));
        assert!(
            !w.iter().any(|x| x.purpose == Purpose::Cache),
            "a local repository is its own cache: {w:#?}"
        );
    }

    #[test]
    fn a_service_for_a_user_runs_as_them_with_their_cache_and_quoted_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().display().to_string();
        let c = config(
            tmp.path(),
            &format!(
                "[settings]\nstate-dir = \"{d}/my state\"\n\
                 [repositories.nas]\nurl = \"sftp:nas:/r\"\npassword-file = \"{d}/pw\"\n\
                 [plans.docs]\nrepository = \"nas\"\npaths = [\"/home/alice/docs\"]\nschedule = \"daily\"\n"
            ),
        );
        let target = Target {
            default_cache: Some(PathBuf::from("/home/alice/.cache/cairn")),
            user: Some("alice".into()),
        };
        let p = &c.plans["docs"];
        let w = writable_paths(&c, p, &target, &|_| None);
        let unit = service(
            p,
            &w,
            &[],
            &target,
            Path::new("/usr/bin/cairn"),
            Path::new("/etc/cairn/cairn.toml"),
        );
        assert!(unit.contains("\nUser=alice\n"), "{unit}");
        assert!(
            unit.contains("\nEnvironment=CAIRN_CACHE_DIR=/home/alice/.cache/cairn\n"),
            "{unit}"
        );
        assert!(
            unit.contains(&format!(
                "ReadWritePaths=-/home/alice/.cache/cairn \"-{d}/my state\"\n"
            )),
            "{unit}"
        );
        assert!(unit.contains("ProtectHome=read-only"), "{unit}");
        assert!(!unit.contains("/root"), "{unit}");
    }

    fn has_local(w: &[Writable], path: &str) {
        assert!(
            w.iter()
                .any(|x| x.purpose == Purpose::Repository && x.path == Path::new(path)),
            "{path}: {w:#?}"
        );
    }

    #[test]
    fn covering_drops_paths_under_listed_ones() {
        let got = covering(
            ["/s/work/p", "/s", "/home/.cairn-snapshots", "/sx", "/s"]
                .into_iter()
                .map(PathBuf::from),
        );
        assert_eq!(
            got,
            ["/home/.cairn-snapshots", "/s", "/sx"]
                .into_iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn unit_words_escape_specifiers_spaces_and_dollars() {
        assert_eq!(word("/a/b", false), "/a/b");
        assert_eq!(word("-/my disk/100%", false), "\"-/my disk/100%%\"");
        assert_eq!(word("/x$y", true), "/x$$y");
        assert_eq!(word("a\"b\\c d", false), "\"a\\\"b\\\\c d\"");
    }

    #[test]
    fn local_paths_follow_the_backends_syntax() {
        assert_eq!(local_path("/r"), Some(PathBuf::from("/r")));
        assert_eq!(local_path("local:/r"), Some(PathBuf::from("/r")));
        assert_eq!(local_path("sftp:h:/r"), None);
        assert_eq!(local_path("rest:http://h/"), None);
        assert_eq!(
            local_path("backup:2024"),
            Some(PathBuf::from("backup:2024"))
        );
    }
}
