//! Backup: walk the sources, reuse unchanged files from the parent snapshot, chunk and
//! store changed ones on all cores, build trees bottom-up, then write the snapshot.
//!
//! Pipeline (threads): one walker (lstat, excludes, change detection) -> N file workers
//! (read, chunk, hash, compress, encrypt, pack; see `writer`) -> one tree finisher that
//! assembles each directory once its files are stored, in post-order. Order of durability:
//! packs -> index -> snapshot. An unreadable file or directory is skipped with a warning
//! (the summary counts it; the CLI exits 3 like restic).

use crate::error::{Error, Result};
use crate::exclude::{ExcludeIfPresent, PatternSet};
use crate::id::Id;
use crate::node::{self, Node};
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::writer::PackWriter;
use chrono::{DateTime, FixedOffset};
use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

mod readahead;
mod store;
mod targets;
mod trees;
mod walk;
use store::{store_file, store_stream, Buffers, ChangeWatch};
use targets::{actual_path, clean_absolute, expand_relative_target, Targets};
use trees::finish_trees;
use walk::{WalkJob, WalkOptions, Walker};

/// Which parent snapshot change detection compares against.
#[derive(Clone, Debug, Default)]
pub enum ParentChoice {
    /// The newest snapshot with the same host and paths (restic's default).
    #[default]
    Latest,
    /// A given snapshot.
    Snapshot(Id),
    /// None: read every file (`--force`).
    None,
}

/// A stream backed up as one file (`--stdin`, or a command's output).
pub struct StdinSource {
    pub filename: String,
    pub reader: Box<dyn Read + Send>,
    /// Called at end of input, before anything refers to the data: an error (e.g. the
    /// dump command failed) aborts the backup and no snapshot is written.
    pub on_eof: Option<Box<dyn FnOnce() -> std::result::Result<(), String> + Send>>,
}

pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub excludes: PatternSet,
    /// The exclude patterns as given, recorded in the snapshot.
    pub exclude_strings: Vec<String>,
    pub exclude_if_present: Vec<ExcludeIfPresent>,
    pub one_file_system: bool,
    /// `--exclude-larger-than`: files (never directories) above this size are left out.
    pub exclude_larger_than: Option<u64>,
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub time: Option<DateTime<FixedOffset>>,
    pub parent: ParentChoice,
    pub stdin: Option<StdinSource>,
    pub with_xattrs: bool,
    pub threads: usize,
    pub dry_run: bool,
    /// `(recorded, actual)`: back up what is at `actual` as if it were at `recorded` — a
    /// filesystem snapshot mounted elsewhere, or a consistent copy of a database file.
    /// Paths, excludes and parent matching use the recorded path, so snapshots and change
    /// detection stay stable across runs. For an exact file mapping, the metadata is the
    /// recorded file's (when it exists) and the content and size the copy's, and the file
    /// is always read (its live original may have changed only in a `-wal` file).
    pub source_map: Vec<(PathBuf, PathBuf)>,
    /// Streams stored as files at these absolute paths of the snapshot (database dumps),
    /// beside the files read from disk; a stream's `on_eof` error aborts the backup.
    pub streams: Vec<(PathBuf, StdinSource)>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            paths: Vec::new(),
            excludes: PatternSet::default(),
            exclude_strings: Vec::new(),
            exclude_if_present: Vec::new(),
            one_file_system: false,
            exclude_larger_than: None,
            tags: Vec::new(),
            host: None,
            time: None,
            parent: ParentChoice::Latest,
            stdin: None,
            with_xattrs: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            dry_run: false,
            source_map: Vec::new(),
            streams: Vec::new(),
        }
    }
}

/// Live counters, readable from a progress thread while the backup runs.
#[derive(Default, Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub dirs_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_read: AtomicU64,
    pub errors: AtomicU64,
}

/// What a backup did, in restic's summary terms.
#[derive(Serialize, Debug, Default, Clone)]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Bytes actually read from files (unchanged files are not read).
    pub bytes_read: u64,
    pub total_duration: f64,
    pub snapshot_id: Option<Id>,
    pub parent: Option<Id>,
    pub warnings: Vec<String>,
    /// Things worth knowing that do not make the snapshot incomplete (a live SQLite
    /// database backed up as a plain file).
    pub notices: Vec<String>,
}

/// Why a file could not be stored: its source could not be read (skip it, warn), or the
/// repository failed (abort the backup).
enum FileError {
    Source(String),
    Repository(Error),
}

type FileResult = std::result::Result<(Vec<Id>, u64), FileError>;

enum Entry {
    Ready(Node),
    File(Node, Receiver<FileResult>),
    Dir(Node, Receiver<Result<Id>>),
    /// A subdirectory another walker thread is walking: replaced by its entry (or removed)
    /// before the directory's job is sent.
    Pending,
}

struct DirJob {
    entries: Vec<Entry>,
    /// The same directory's tree in the parent snapshot: decides new/changed/unmodified.
    parent_tree: Option<Id>,
    /// The parent tree's nodes when its bytes are canonical: if this directory's nodes
    /// encode the same, its tree is the parent's (see `trees`).
    parent_nodes: Option<Vec<Node>>,
    done: Sender<Result<Id>>,
}

struct FileJob {
    source: store::Source,
    done: Sender<FileResult>,
}

#[derive(Default)]
struct Counts {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
}

/// Finds the parent snapshot for change detection.
fn choose_parent(
    repo: &Repository,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<Snapshot>> {
    match &opts.parent {
        ParentChoice::None => Ok(None),
        ParentChoice::Snapshot(id) => Ok(Some(Snapshot::load(repo, id)?)),
        ParentChoice::Latest => {
            let filter = crate::snapshot::Filter {
                hosts: vec![host.to_string()],
                paths: paths.to_vec(),
                tags: Vec::new(),
            };
            Ok(Snapshot::load_all(repo)?
                .into_iter()
                .rev()
                .find(|s| filter.matches(s)))
        }
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Runs a backup and writes its snapshot (unless `dry_run`).
pub fn backup(
    repo: &Repository,
    mut opts: BackupOptions,
    progress: &Progress,
) -> Result<BackupSummary> {
    let started = std::time::Instant::now();
    let host = opts.host.clone().unwrap_or_else(hostname);
    let mut targets = Targets::default();
    let mut paths = Vec::new();
    let mut missing = Vec::new();
    if let Some(stdin) = &opts.stdin {
        if stdin.filename.is_empty() || stdin.filename.contains('/') {
            return Err(Error::invalid(format!(
                "--stdin-filename {:?} must be a plain file name",
                stdin.filename
            )));
        }
        paths.push(format!("/{}", stdin.filename));
    } else {
        if opts.paths.is_empty() && opts.streams.is_empty() {
            return Err(Error::invalid("nothing to back up: give at least one path"));
        }
        for given in &opts.paths {
            let abs = clean_absolute(given)?;
            if std::fs::symlink_metadata(actual_path(&opts.source_map, &abs)).is_err() {
                missing.push(abs.display().to_string());
                continue;
            }
            let expanded =
                expand_relative_target(given).map_err(|e| Error::io(given.display(), e))?;
            for p in expanded {
                targets.add(&p);
            }
            paths.push(abs.display().to_string());
        }
        if paths.is_empty() && opts.streams.is_empty() {
            return Err(Error::not_found(format!(
                "none of the paths to back up exist: {}",
                missing.join(", ")
            )));
        }
    }
    let mut stream_sources = Vec::new();
    for (i, (p, src)) in std::mem::take(&mut opts.streams).into_iter().enumerate() {
        if opts.stdin.is_some() {
            return Err(Error::invalid(
                "streamed files and --stdin cannot be combined",
            ));
        }
        let abs = clean_absolute(&p)?;
        if !p.is_absolute() || abs.parent().is_none() || abs.file_name().is_none() {
            return Err(Error::invalid(format!(
                "streamed file {}: give an absolute file path",
                p.display()
            )));
        }
        if let Some(t) = opts
            .paths
            .iter()
            .find(|t| clean_absolute(t).is_ok_and(|t| abs.starts_with(t)))
        {
            return Err(Error::invalid(format!(
                "streamed file {} is inside {}, which is backed up from disk: give it a path outside it (e.g. /.cairn/dumps/...)",
                abs.display(),
                t.display()
            )));
        }
        targets.add_stream(&abs, i);
        paths.push(abs.display().to_string());
        stream_sources.push(Some(src));
    }
    // In the order given, without repeats, as restic records them.
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
    let parent = choose_parent(repo, &opts, &host, &paths)?;
    let (index, vouched) = repo.load_index_for_backup(parent.as_ref().map(|p| &p.id))?;
    let parent_root = match &parent {
        Some(s) => {
            let (nodes, canonical) =
                node::decode_tree_canonical(&repo.load_blob(&index, BlobType::Tree, &s.tree)?)
                    .map_err(|e| Error::corrupt(format!("parent snapshot tree: {e}")))?;
            Some(walk::ParentTree {
                id: s.tree,
                nodes,
                canonical,
            })
        }
        None => None,
    };
    let writer = PackWriter::new(repo, &index);
    let counts = Counts::default();
    let pol = repo.polynomial();
    let threads = opts.threads.max(1);
    let stdin = opts.stdin.take();
    let notices = Mutex::new(Vec::new());
    let watch = ChangeWatch::new(&notices);
    let warnings = Mutex::new(
        missing
            .iter()
            .map(|m| format!("{m}: does not exist, skipped"))
            .collect::<Vec<_>>(),
    );
    let lane_failed = Mutex::new(None::<Error>);
    let readahead = readahead::ReadAhead::default();
    let root_id = std::thread::scope(|s| -> Result<Id> {
        let (file_tx, file_rx) = bounded::<FileJob>(threads * 64);
        let (dir_tx, dir_rx) = bounded::<DirJob>(1024);
        for _ in 0..threads {
            let rx = file_rx.clone();
            let writer = &writer;
            let watch = &watch;
            let lane_failed = &lane_failed;
            let readahead = &readahead;
            s.spawn(move || {
                let mut bufs = Buffers::default();
                let mut lane = writer.lane();
                for mut job in rx {
                    let r = store_file(&mut job.source, &mut lane, pol, progress, &mut bufs, watch);
                    readahead.taken(job.source.asked);
                    let _ = job.done.send(r);
                }
                // Its last pack, before the index (after this scope) can list its blobs.
                if let Err(e) = lane.finish() {
                    if let Ok(mut f) = lane_failed.lock() {
                        f.get_or_insert(e);
                    }
                }
            });
        }
        drop(file_rx);
        let (work_tx, work_rx) = crossbeam_channel::unbounded::<WalkJob>();
        let walker = Walker {
            repo,
            index: &index,
            vouched,
            opts: WalkOptions {
                excludes: &opts.excludes,
                exclude_if_present: &opts.exclude_if_present,
                one_file_system: opts.one_file_system,
                exclude_larger_than: opts.exclude_larger_than,
                with_xattrs: opts.with_xattrs,
                source_map: &opts.source_map,
            },
            files: file_tx,
            readahead: &readahead,
            dirs: dir_tx,
            progress,
            counts: &counts,
            warnings: &warnings,
            notices: &notices,
            streams: Mutex::new(stream_sources),
            writer: &writer,
            work_tx: Mutex::new(Some(work_tx)),
            work_rx,
            helpers: threads - 1,
        };
        let finisher = s.spawn(|| finish_trees(dir_rx, &writer, &warnings, progress, &counts));
        let root_rx = (|| -> Result<Receiver<Result<Id>>> {
            let entries = match stdin {
                Some(src) => {
                    let mut node = Node::for_stdin(src.filename.as_str());
                    let (ids, size) = store_stream(src.reader, &writer, pol, progress)?;
                    if let Some(check) = src.on_eof {
                        check().map_err(|e| Error::new(crate::Kind::Io, e))?;
                    }
                    node.content = Some(ids);
                    node.size = size;
                    counts.files_new.fetch_add(1, Ordering::Relaxed);
                    vec![Entry::Ready(node)]
                }
                None => std::thread::scope(|ws| {
                    // Helper walkers: one per core beyond this one. They end when the
                    // walk is over (the work sender is dropped).
                    for _ in 1..threads {
                        ws.spawn(|| walker.serve());
                    }
                    let r =
                        walker.walk_targets(&targets, parent_root.as_ref().map(|p| &p.nodes[..]));
                    if let Ok(mut tx) = walker.work_tx.lock() {
                        tx.take();
                    }
                    r
                })?,
            };
            walker.send_dir(entries, parent_root)
        })();
        if let Ok(mut tx) = walker.work_tx.lock() {
            tx.take();
        }
        let Walker { files, dirs, .. } = walker;
        drop(files);
        drop(dirs);
        let root = root_rx.and_then(|rx| {
            rx.recv()
                .map_err(|_| Error::new(crate::Kind::Io, "backup pipeline stopped"))?
        });
        finisher
            .join()
            .map_err(|_| Error::new(crate::Kind::Io, "internal error: tree finisher panicked"))??;
        root
    })?;
    if let Some(e) = lane_failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    watch.finish();
    let mut summary = BackupSummary {
        files_new: counts.files_new.load(Ordering::Relaxed),
        files_changed: counts.files_changed.load(Ordering::Relaxed),
        files_unmodified: counts.files_unmodified.load(Ordering::Relaxed),
        dirs_new: counts.dirs_new.load(Ordering::Relaxed),
        dirs_changed: counts.dirs_changed.load(Ordering::Relaxed),
        dirs_unmodified: counts.dirs_unmodified.load(Ordering::Relaxed),
        total_files_processed: progress.files_done.load(Ordering::Relaxed),
        total_bytes_processed: progress.bytes_done.load(Ordering::Relaxed),
        bytes_read: progress.bytes_read.load(Ordering::Relaxed),
        parent: parent.as_ref().map(|p| p.id),
        warnings: warnings.into_inner().unwrap_or_default(),
        notices: notices.into_inner().unwrap_or_default(),
        ..Default::default()
    };
    if opts.dry_run {
        summary.total_duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    let (index_files, written) = writer.finish_written()?;
    summary.data_blobs = writer.stats.data_blobs.load(Ordering::Relaxed);
    summary.tree_blobs = writer.stats.tree_blobs.load(Ordering::Relaxed);
    summary.data_added = writer.stats.data_added.load(Ordering::Relaxed);
    summary.data_added_packed = writer.stats.data_added_packed.load(Ordering::Relaxed);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    let mut snap = Snapshot {
        time: opts
            .time
            .unwrap_or_else(|| chrono::Local::now().fixed_offset()),
        parent: parent.as_ref().map(|p| p.id),
        tree: root_id,
        paths,
        hostname: host,
        username: user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        excludes: opts.exclude_strings.clone(),
        tags: opts.tags.clone(),
        original: None,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        id: Id::default(),
    };
    let snapshot_id = snap.save(repo)?;
    summary.snapshot_id = Some(snapshot_id);
    // After the snapshot: only the local cache, never part of what the repository holds.
    drop(writer);
    let mut vouchers = index.covered().unwrap_or_default().to_vec();
    vouchers.extend_from_slice(&index_files);
    repo.vouch_for(&snapshot_id, &vouchers);
    repo.refresh_index_snapshot(index, &index_files, written);
    summary.total_duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests;
