//! `cairn backup`: back up paths, standard input, or a command's output.

use super::progress::{elapsed, Ticker};
use super::{exit, format_bytes, GlobalOpts};
use crate::history::Category;
use crate::run::protocol;
use anyhow::{Context, Result};
use cairn_repo::backup::{self, BackupOptions, ParentChoice, Progress, StdinSource};
use cairn_repo::exclude::{read_pattern_file, ExcludeIfPresent, PatternSet};
use cairn_repo::Id;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub excludes: ExcludeFlags,
    /// Stay on the file system of each path
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Add a tag (can be given several times, or comma separated)
    #[arg(long)]
    pub tag: Vec<String>,
    /// Host name recorded in the snapshot
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// Time recorded in the snapshot (YYYY-MM-DD HH:MM:SS)
    #[arg(long)]
    pub time: Option<String>,
    /// Compare against this snapshot instead of the latest one of the same host and paths
    #[arg(long)]
    pub parent: Option<String>,
    /// Read all files, ignoring the parent snapshot
    #[arg(short, long)]
    pub force: bool,
    /// Read data from standard input
    #[arg(long)]
    pub stdin: bool,
    /// File name for data read from standard input
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Back up the standard output of this command as one file (e.g. a database dump);
    /// the backup fails if the command fails
    #[arg(long)]
    pub stdin_from_command: Option<String>,
    /// Don't store extended attributes
    #[arg(long)]
    pub no_xattrs: bool,
    /// Do everything except writing to the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Back up ACTUAL as if it were at RECORDED (absolute paths): a filesystem snapshot
    /// mounted elsewhere, or a consistent copy of a database; repeatable
    #[arg(long, value_name = "RECORDED=ACTUAL")]
    pub source_map: Vec<String>,
    /// Store COMMAND's output as the file PATH (absolute) of the snapshot, streamed (no
    /// temporary file), beside the paths backed up; if COMMAND fails, no snapshot is
    /// saved. For database dumps: --from-command /dumps/app.sql='pg_dump app'; repeatable
    #[arg(long, value_name = "PATH=COMMAND")]
    pub from_command: Vec<String>,
    /// Worker threads (default: number of CPUs)
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The exclude flags of a backup. `cairn rewrite --plan` builds a plan's exclude set
/// from the very flags `cairn run` gives its backup ([`ExcludeFlags::of_plan`]), so the
/// two cannot drift apart.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExcludeFlags {
    /// Exclude a pattern (can be given several times)
    #[arg(short = 'e', long)]
    pub exclude: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long)]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Read case-insensitive exclude patterns from a file
    #[arg(long)]
    pub iexclude_file: Vec<PathBuf>,
    /// Exclude directories containing this file (FILE[:HEADER])
    #[arg(long)]
    pub exclude_if_present: Vec<String>,
    /// Exclude directories with a CACHEDIR.TAG
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out files larger than SIZE (e.g. 500M, 2G; restic's units)
    #[arg(long, value_name = "SIZE")]
    pub exclude_larger_than: Option<String>,
}

/// An exclude set, built: what the backup walker (and a rewrite) applies.
#[derive(Default)]
pub struct Excludes {
    pub patterns: PatternSet,
    /// The patterns as given (files read), case-sensitive ones first: recorded in the
    /// snapshot.
    pub strings: Vec<String>,
    pub if_present: Vec<ExcludeIfPresent>,
    pub larger_than: Option<u64>,
}

impl ExcludeFlags {
    /// Reads the pattern files and parses everything.
    pub fn build(&self) -> Result<Excludes> {
        let mut patterns = self.exclude.clone();
        for f in &self.exclude_file {
            patterns.extend(read_pattern_file(f)?);
        }
        let mut ipatterns = self.iexclude.clone();
        for f in &self.iexclude_file {
            ipatterns.extend(read_pattern_file(f)?);
        }
        let mut set = PatternSet::new(&patterns, false)?;
        set.extend(PatternSet::new(&ipatterns, true)?);
        let mut if_present: Vec<ExcludeIfPresent> = self
            .exclude_if_present
            .iter()
            .map(|s| ExcludeIfPresent::parse(s))
            .collect();
        if self.exclude_caches {
            if_present.push(ExcludeIfPresent::cachedir_tag());
        }
        let larger_than = match &self.exclude_larger_than {
            Some(v) => Some(cairn_repo::exclude::parse_size(v).map_err(|e| {
                anyhow::anyhow!("--exclude-larger-than {v:?}: {e} (examples: 500K, 20M, 2G)")
            })?),
            None => None,
        };
        patterns.extend(ipatterns);
        Ok(Excludes {
            patterns: set,
            strings: patterns,
            if_present,
            larger_than,
        })
    }

    /// The exclude flags `cairn run` gives the backup of `plan` (its sources' excludes
    /// and its own, [`crate::config::Filter::args`]), parsed as `cairn backup` parses
    /// them; and whether they include `--one-file-system`.
    pub fn of_plan(plan: &crate::config::Plan) -> Result<(ExcludeFlags, bool)> {
        #[derive(clap::Parser)]
        struct PlanFlags {
            #[command(flatten)]
            excludes: ExcludeFlags,
            #[arg(short = 'x', long)]
            one_file_system: bool,
        }
        let args = plan.filter.args();
        let f = <PlanFlags as clap::Parser>::try_parse_from(
            std::iter::once("backup".to_string()).chain(args.iter().cloned()),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "plan {}: its backup flags {args:?} do not parse as backup flags: {e}",
                plan.name
            )
        })?;
        Ok((f.excludes, f.one_file_system))
    }
}

/// A command's standard output as a stream; its exit status is checked at the end.
fn command_source(cmd: &str) -> Result<StdinSource> {
    let mut c = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let out = c.stdout.take().context("command has no stdout")?;
    let cmd = cmd.to_string();
    Ok(StdinSource {
        filename: String::new(),
        reader: Box::new(out),
        on_eof: Some(Box::new(move || match c.wait() {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(format!(
                "command {cmd:?} failed ({st}): no snapshot was saved"
            )),
            Err(e) => Err(format!("waiting for command {cmd:?}: {e}")),
        })),
    })
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .with_context(|| format!("invalid --time {s:?}: use \"YYYY-MM-DD HH:MM:SS\""))?;
    naive
        .and_local_timezone(chrono::Local)
        .single()
        .map(|t| t.fixed_offset())
        .with_context(|| format!("--time {s:?} does not exist in the local time zone"))
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let excludes = a.excludes.build()?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let parent = match (&a.parent, a.force) {
        (_, true) => ParentChoice::None,
        (Some(p), false) => ParentChoice::Snapshot(
            cairn_repo::snapshot::Snapshot::find(&repo, p, &Default::default())?.id,
        ),
        (None, false) => ParentChoice::Latest,
    };
    let stdin = if let Some(cmd) = &a.stdin_from_command {
        let mut src = command_source(cmd)?;
        src.filename = a.stdin_filename.clone();
        Some(src)
    } else if a.stdin {
        Some(StdinSource {
            filename: a.stdin_filename.clone(),
            reader: Box::new(std::io::stdin()),
            on_eof: None,
        })
    } else {
        None
    };
    anyhow::ensure!(
        stdin.is_some() || !a.paths.is_empty() || !a.from_command.is_empty(),
        "nothing to back up: give paths, --from-command, --stdin or --stdin-from-command"
    );
    let tags: Vec<String> = a
        .tag
        .iter()
        .flat_map(|t| t.split(','))
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let opts = BackupOptions {
        paths: a.paths.clone(),
        excludes: excludes.patterns,
        exclude_strings: excludes.strings,
        exclude_if_present: excludes.if_present,
        one_file_system: a.one_file_system,
        exclude_larger_than: excludes.larger_than,
        tags,
        host: a.host.clone(),
        time: a.time.as_deref().map(parse_time).transpose()?,
        parent,
        stdin,
        with_xattrs: !a.no_xattrs,
        threads: a.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        dry_run: a.dry_run,
        streams: a
            .from_command
            .iter()
            .map(|spec| {
                let (path, cmd) = spec.split_once('=').with_context(|| {
                    format!("--from-command {spec}: expected PATH=COMMAND, e.g. /dumps/app.sql='pg_dump app'")
                })?;
                anyhow::ensure!(
                    path.starts_with('/') && !path.ends_with('/'),
                    "--from-command {spec}: PATH must be an absolute file path"
                );
                Ok((PathBuf::from(path), command_source(cmd)?))
            })
            .collect::<Result<Vec<_>>>()?,
        source_map: a
            .source_map
            .iter()
            .map(|m| {
                let (r, act) = m.split_once('=').with_context(|| {
                    format!("--source-map {m}: expected RECORDED=ACTUAL, e.g. /home=/home/.snapshots/cairn")
                })?;
                let (r, act) = (std::path::PathBuf::from(r), std::path::PathBuf::from(act));
                anyhow::ensure!(
                    r.is_absolute() && act.is_absolute(),
                    "--source-map {m}: both paths must be absolute"
                );
                Ok((r, act))
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let progress = Arc::new(Progress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(g.progress(), move |t| {
            let bytes = p.bytes_done.load(Ordering::Relaxed);
            let rate = bytes as f64 / t.as_secs_f64().max(0.001);
            format!(
                "[{}] {} files, {}, {}/s, {} errors",
                elapsed(t),
                p.files_done.load(Ordering::Relaxed),
                format_bytes(bytes),
                format_bytes(rate as u64),
                p.errors.load(Ordering::Relaxed)
            )
        })
    };
    let scan = Scan::start(&opts);
    let status = {
        let p = progress.clone();
        let scan = scan.totals.clone();
        protocol::StatusTicker::start(move |t| {
            protocol::status_of(
                t,
                (
                    p.files_done.load(Ordering::Relaxed),
                    scan.files.load(Ordering::Relaxed),
                ),
                (
                    p.bytes_done.load(Ordering::Relaxed),
                    scan.bytes.load(Ordering::Relaxed),
                ),
                p.errors.load(Ordering::Relaxed),
            )
        })
    };
    let result = backup::backup(&repo, opts, &progress);
    drop(ticker);
    drop(status);
    drop(scan);
    let s = result.map_err(|e| match e.kind() {
        // The repository is open: what is not found now is what we were to back up.
        cairn_repo::Kind::NotFound => protocol::categorized(Category::SourceMissing, e),
        _ => e.into(),
    })?;
    protocol::emit(&protocol::Message::Summary(protocol::Summary {
        files_new: Some(s.files_new),
        files_changed: Some(s.files_changed),
        files_unmodified: Some(s.files_unmodified),
        dirs_new: Some(s.dirs_new),
        dirs_changed: Some(s.dirs_changed),
        dirs_unmodified: Some(s.dirs_unmodified),
        data_blobs: Some(s.data_blobs),
        tree_blobs: Some(s.tree_blobs),
        data_added: Some(s.data_added),
        data_added_packed: Some(s.data_added_packed),
        total_files_processed: Some(s.total_files_processed),
        total_bytes_processed: Some(s.total_bytes_processed),
        bytes_read: Some(s.bytes_read),
        total_duration: Some(s.total_duration),
        snapshot_id: s.snapshot_id.map(|i| i.to_hex()),
        warnings: s.warnings.clone(),
        other: Default::default(),
    }));
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
    for n in &s.notices {
        eprintln!("note: {n}");
    }
    if g.json {
        let mut v = serde_json::to_value(&s)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = s.snapshot_id.map(|i: Id| i.to_hex()).into();
        super::print_json(&v)?;
    } else if !g.quiet {
        if let Some(p) = s.parent {
            println!("using parent snapshot {}", p.short());
        }
        println!(
            "\nFiles:       {:5} new, {:5} changed, {:5} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:        {:5} new, {:5} changed, {:5} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        println!(
            "Added to the repository: {} ({} stored)\n",
            format_bytes(s.data_added),
            format_bytes(s.data_added_packed)
        );
        println!(
            "processed {} files, {} in {}",
            s.total_files_processed,
            format_bytes(s.total_bytes_processed),
            elapsed(std::time::Duration::from_secs_f64(s.total_duration))
        );
        match s.snapshot_id {
            Some(id) => println!("snapshot {} saved", id.short()),
            None => println!("dry run: no snapshot saved"),
        }
    }
    if !s.warnings.is_empty() {
        let msg = format!(
            "at least one source file could not be read ({} problems above); the snapshot is incomplete",
            s.warnings.len()
        );
        eprintln!("Warning: {msg}");
        protocol::exit_error(exit::INCOMPLETE.into(), Category::Permission, msg);
        return Ok(exit::INCOMPLETE);
    }
    Ok(exit::OK)
}

/// Counts what a backup will read (files and bytes under its paths, excludes by pattern
/// applied) beside it, so status messages can say how far it is, like restic's scanner.
/// Only when the protocol is on; stops when dropped.
struct Scan {
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Totals {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Scan {
    fn start(opts: &BackupOptions) -> Scan {
        let totals = Arc::new(Totals::default());
        let stop = Arc::new(AtomicBool::new(false));
        let handle = protocol::enabled().then(|| {
            let map = opts.source_map.clone();
            let actual = move |recorded: &Path| -> PathBuf {
                map.iter()
                    .filter(|(r, _)| recorded.starts_with(r))
                    .max_by_key(|(r, _)| r.as_os_str().len())
                    .and_then(|(r, a)| Some(a.join(recorded.strip_prefix(r).ok()?)))
                    .unwrap_or_else(|| recorded.to_path_buf())
            };
            let mut todo: Vec<PathBuf> = opts
                .paths
                .iter()
                .filter_map(|p| std::path::absolute(p).ok())
                .collect();
            let excludes = opts.excludes.clone();
            let (totals, stop) = (totals.clone(), stop.clone());
            std::thread::spawn(move || {
                while let Some(recorded) = todo.pop() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if excludes.matches_path(&recorded) {
                        continue;
                    }
                    let path = actual(&recorded);
                    let Ok(m) = std::fs::symlink_metadata(&path) else {
                        continue;
                    };
                    if m.is_dir() {
                        if let Ok(rd) = std::fs::read_dir(&path) {
                            todo.extend(rd.flatten().map(|e| recorded.join(e.file_name())));
                        }
                    } else if m.is_file() {
                        totals.files.fetch_add(1, Ordering::Relaxed);
                        totals.bytes.fetch_add(m.len(), Ordering::Relaxed);
                    }
                }
            })
        });
        Scan {
            totals,
            stop,
            handle,
        }
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
