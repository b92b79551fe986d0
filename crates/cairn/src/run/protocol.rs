//! The typed protocol between the plan runner and the `cairn` children it starts, and the
//! progress events the runner hands out (to the web UI's live view, among others).
//!
//! A child started by the runner gets `CAIRN_CHILD_PROTOCOL=1` and, in
//! `CAIRN_CHILD_PROTOCOL_PATH`, the path of the channel to write to. It writes one JSON
//! object per line, tagged with `message_type` like restic's `--json` output:
//! `status` (a few times a second while it works), `summary` (once, at the end of a step
//! that did its job) and `exit_error` (once, when it fails, with the failure's category).
//!
//! The channel: a FIFO the runner creates in a private directory of the state directory and
//! reads from, separately from the child's stdout and stderr, which stay what they are for
//! a person (and for the JSON a command prints with `--json`, like `ls --json` for restore
//! tests). Why not stdout: several steps print their own results there, and a separate
//! channel needs no change to what any command prints. Why not an inherited descriptor:
//! passing one to a child needs `pre_exec`/`dup2`, which is `unsafe` (the crate forbids
//! it). A regular file works as the channel too (tests use one): the child creates it if
//! missing and appends.
//!
//! A category never comes from an error's wording: the child classifies its typed error
//! ([`category_of`]), the runner trusts `exit_error`, and falls back on the exit code only
//! when a child died without one.
//!
//! This module must not print anything for a person.

use crate::history::{Category, Outcome};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Set (to `1`) by the runner for each child it starts.
pub const ENV_PROTOCOL: &str = "CAIRN_CHILD_PROTOCOL";
/// The channel's path (a FIFO from the runner, or any file).
pub const ENV_PATH: &str = "CAIRN_CHILD_PROTOCOL_PATH";
/// At most this many status messages a second.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// One line of the protocol.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum Message {
    /// How far the step is (children send this).
    Status(Status),
    /// What the step did, when it did its job (children send this).
    Summary(Summary),
    /// Why the step failed (children send this, just before exiting non-zero).
    ExitError(ExitError),
    /// The runner started a step (only in [`ProgressEvent`]s, never from a child).
    StepStarted,
    /// The runner finished a step (only in [`ProgressEvent`]s, never from a child).
    StepFinished(StepFinished),
}

/// Progress, in restic's `status` terms. Totals are 0 while unknown (no scan yet);
/// `percent_done` is a fraction (0.0 to 1.0) like restic's.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub seconds_elapsed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_remaining: Option<u64>,
    pub percent_done: f64,
    pub total_files: u64,
    pub files_done: u64,
    pub total_bytes: u64,
    pub bytes_done: u64,
    #[serde(default)]
    pub error_count: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_files: Vec<String>,
}

/// What a step did. A backup fills restic's summary fields and `snapshot_id`; other steps
/// put their own figures in `other` (e.g. restore: `files_restored`, `bytes_restored`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Summary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_new: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_unmodified: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirs_new: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirs_changed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirs_unmodified: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_blobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_blobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_added: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_added_packed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_files_processed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes_processed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Warnings of a step that finished incomplete (files that could not be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Figures of steps other than backup.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A failed step: its exit code, the category decided from the typed error, and the
/// message a person reads.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExitError {
    pub code: i32,
    pub category: Category,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How the runner saw a step end.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StepFinished {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the runner hands to [`crate::run::Runner::progress`]: a step's message, with the
/// plan, the run (its id in the history) and the step's operation name (`backup`,
/// `forget`, `prune`, `check`, `copy`, `restore-test`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    pub plan: String,
    pub run_id: i64,
    pub step: String,
    pub message: Message,
}

/// The callback type of [`crate::run::Runner::progress`].
pub type ProgressFn = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

// ---- the child's side ----

static CHANNEL: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();

fn channel() -> Option<&'static Mutex<std::fs::File>> {
    CHANNEL
        .get_or_init(|| {
            if std::env::var_os(ENV_PROTOCOL).is_none_or(|v| v != "1") {
                return None;
            }
            let path = std::env::var_os(ENV_PATH)?;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .ok()
                .map(Mutex::new)
        })
        .as_ref()
}

/// Whether this process was started as a child speaking the protocol.
pub fn enabled() -> bool {
    channel().is_some()
}

/// Writes `msg` as one line on the channel, if this process speaks the protocol.
/// A channel that fails (the runner went away) is ignored: the work goes on.
pub fn emit(msg: &Message) {
    if let Some(ch) = channel() {
        if let Ok(mut line) = serde_json::to_vec(msg) {
            line.push(b'\n');
            if let Ok(mut f) = ch.lock() {
                // One write per line: a FIFO keeps writes up to PIPE_BUF whole.
                let _ = f.write_all(&line);
            }
        }
    }
}

/// Sends the `exit_error` of a failing child (with a hint for its category), if this
/// process speaks the protocol.
pub fn exit_error(code: i32, category: Category, message: String) {
    exit_error_hinted(code, category, message, false);
}

/// Like [`exit_error`], for a message that may carry its own hint already (one naming the
/// setting to fix): then none is added, else the category's.
pub fn exit_error_hinted(code: i32, category: Category, message: String, has_hint: bool) {
    emit(&Message::ExitError(ExitError {
        code,
        category,
        message,
        hint: (!has_hint)
            .then(|| hint(category).map(str::to_string))
            .flatten(),
    }));
}

/// What a person can do about a failure of this category, when there is one thing.
pub fn hint(category: Category) -> Option<&'static str> {
    Some(match category {
        Category::Auth => "check the repository's password (password-file, -command or -env) and the storage credentials",
        Category::Lock => "another cairn or restic holds the repository's lock; if none runs, `cairn unlock` removes stale locks",
        Category::Network => "check that the repository's server is reachable from this machine",
        Category::Permission => "run cairn as a user who may read (or write) the file named, or fix its mode/owner; for sources, CAP_DAC_READ_SEARCH lets cairn read every file",
        Category::ReadOnly => "the file system is mounted read-only: remount it read-write (a kernel remounts a failing disk read-only: check it), or under a systemd unit list the path in ReadWritePaths",
        Category::DiskFull => "free space on the repository's storage, then run again; nothing written so far is referenced",
        Category::SourceMissing => "is the path right, the service installed and its disk mounted?",
        Category::CorruptData => "run `cairn check --read-data` and see the repair commands",
        Category::Config => "check the repository's location and options with `cairn config check`",
        _ => return None,
    })
}

/// Sends `status()` every [`STATUS_INTERVAL`] until dropped, when the protocol is on.
pub struct StatusTicker {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl StatusTicker {
    /// `status` gets the time since the start.
    pub fn start<F>(status: F) -> StatusTicker
    where
        F: Fn(Duration) -> Status + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = enabled().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                loop {
                    // Sleep in small slices so a finished step does not wait a full tick.
                    let next = Instant::now() + STATUS_INTERVAL;
                    while Instant::now() < next {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(25));
                    }
                    emit(&Message::Status(status(start.elapsed())));
                }
            })
        });
        StatusTicker { stop, handle }
    }
}

impl Drop for StatusTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A status from counters: percent and remaining time when the totals are known.
pub fn status_of(elapsed: Duration, files: (u64, u64), bytes: (u64, u64), errors: u64) -> Status {
    let (files_done, total_files) = files;
    let (bytes_done, total_bytes) = bytes;
    let percent_done = if total_bytes > 0 {
        (bytes_done as f64 / total_bytes as f64).min(1.0)
    } else if total_files > 0 {
        (files_done as f64 / total_files as f64).min(1.0)
    } else {
        0.0
    };
    let seconds_elapsed = elapsed.as_secs();
    let seconds_remaining = (percent_done > 0.0 && percent_done < 1.0).then(|| {
        let total = elapsed.as_secs_f64() / percent_done;
        (total - elapsed.as_secs_f64()).max(0.0) as u64
    });
    Status {
        seconds_elapsed,
        seconds_remaining,
        percent_done,
        total_files,
        files_done,
        total_bytes,
        bytes_done,
        error_count: errors,
        current_files: Vec::new(),
    }
}

/// An error whose category is known where it happened (e.g. a backup whose sources are
/// all missing): the category travels with the error instead of being guessed later.
#[derive(Debug)]
pub struct Categorized {
    pub category: Category,
    pub error: anyhow::Error,
}

impl std::fmt::Display for Categorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Categorized {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Tags `e` with `category`.
pub fn categorized(category: Category, e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Categorized {
        category,
        error: e.into(),
    })
}

/// The category of a failure, from its types alone: a [`Categorized`] tag, the engine's
/// [`cairn_repo::Kind`], or the [`std::io::ErrorKind`] of the root I/O error. Never from
/// the message's wording.
pub fn category_of(e: &anyhow::Error) -> Category {
    use cairn_repo::Kind;
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<Categorized>() {
            return c.category;
        }
    }
    if let Some(k) = e
        .chain()
        .find_map(|c| c.downcast_ref::<cairn_repo::Error>())
        .map(|r| r.kind())
    {
        match k {
            Kind::WrongPassword | Kind::Auth => return Category::Auth,
            Kind::Locked => return Category::Lock,
            Kind::Network => return Category::Network,
            Kind::DiskFull => return Category::DiskFull,
            Kind::Corrupt => return Category::CorruptData,
            Kind::Invalid | Kind::Unsupported => return Category::Config,
            Kind::NotFound | Kind::Io => {}
        }
    }
    if let Some(io) = e
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .last()
    {
        return io_category(io);
    }
    Category::Other
}

/// The category of an I/O error, by its kind (and errno for a full disk or quota).
pub fn io_category(e: &std::io::Error) -> Category {
    use std::io::ErrorKind as K;
    if let Some(code) = e.raw_os_error() {
        if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT {
            return Category::DiskFull;
        }
    }
    match e.kind() {
        K::PermissionDenied => Category::Permission,
        K::ReadOnlyFilesystem => Category::ReadOnly,
        K::NotFound => Category::SourceMissing,
        K::StorageFull | K::QuotaExceeded => Category::DiskFull,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::TimedOut => Category::Network,
        _ => Category::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_like_restic() {
        let s = Message::Status(status_of(Duration::from_secs(10), (5, 10), (250, 1000), 0));
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["message_type"], "status");
        assert_eq!(v["percent_done"], 0.25);
        assert_eq!(v["seconds_remaining"], 30);
        let e = Message::ExitError(ExitError {
            code: 12,
            category: Category::Auth,
            message: "m".into(),
            hint: None,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"message_type":"exit_error","code":12,"category":"auth","message":"m"}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), e);
        let mut sum = Summary {
            snapshot_id: Some("ab".into()),
            data_added: Some(7),
            ..Default::default()
        };
        sum.other.insert("files_restored".into(), 3.into());
        let back: Message =
            serde_json::from_str(&serde_json::to_string(&Message::Summary(sum.clone())).unwrap())
                .unwrap();
        assert_eq!(back, Message::Summary(sum));
    }

    #[test]
    fn the_category_comes_from_the_error_type_not_its_words() {
        use cairn_repo::{Error, Kind};
        // Wording that would mislead any scraper: the types decide.
        let locked = anyhow::Error::new(Error::new(
            Kind::Locked,
            "permission denied: no such file; no space left on device",
        ));
        assert_eq!(category_of(&locked), Category::Lock);
        let net = anyhow::Error::new(Error::new(Kind::Network, "wrong password")).context("x");
        assert_eq!(category_of(&net), Category::Network);
        let pw = anyhow::Error::new(Error::new(Kind::WrongPassword, "connection refused"));
        assert_eq!(category_of(&pw), Category::Auth);
        let denied = anyhow::Error::new(Error::io(
            "/src/a (disk is full)",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(category_of(&denied), Category::Permission);
        let missing = anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "permission denied",
        ))
        .context("reading /src");
        assert_eq!(category_of(&missing), Category::SourceMissing);
        let full = anyhow::Error::new(Error::io(
            "pack",
            std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        ));
        assert_eq!(category_of(&full), Category::DiskFull);
        // A read-only file system is not a permission problem: its own category.
        let ro = anyhow::Error::new(Error::io(
            "writing /repo/locks/ab (permission denied)",
            std::io::Error::from_raw_os_error(nix::libc::EROFS),
        ));
        assert_eq!(category_of(&ro), Category::ReadOnly);
        assert_eq!(Category::ReadOnly.as_str(), "read-only");
        let tagged = categorized(
            Category::SourceMissing,
            Error::new(Kind::NotFound, "wrong password"),
        );
        assert_eq!(
            category_of(&tagged.context("backup")),
            Category::SourceMissing
        );
        assert_eq!(
            category_of(&anyhow::anyhow!("permission denied, no such file")),
            Category::Other
        );
    }
}
