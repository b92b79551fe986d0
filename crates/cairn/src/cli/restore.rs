//! `cairn restore SNAPSHOT[:SUBPATH] --target DIR`, and with `--plan NAME` the plan's
//! disaster-recovery runbook ([`crate::run::Runner::recover`]): hooks, every source to its
//! place, the database dumps, a report.

use super::progress::{elapsed, Ticker};
use super::{exit, format_bytes, GlobalOpts};
use crate::ops::restore::Outcome;
use crate::run::protocol;
use anyhow::{Context, Result};
use cairn_repo::exclude::PatternSet;
use cairn_repo::restore::{self, Progress, RestoreOptions};
use cairn_repo::snapshot::{Filter, Snapshot};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    /// Snapshot id (prefix), or `latest`; `ID:path/in/snapshot` restores only that
    /// directory. With --plan: optional (default: the plan's latest)
    pub snapshot: Option<String>,
    /// The snapshot, as a flag (same as the SNAPSHOT argument)
    #[arg(long = "snapshot", value_name = "ID", conflicts_with = "snapshot")]
    pub snapshot_id: Option<String>,
    /// Directory to restore into
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching a pattern
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Like --include, ignoring case
    #[arg(long)]
    pub iinclude: Vec<String>,
    /// Leave out paths matching a pattern
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Like --exclude, ignoring case
    #[arg(long)]
    pub iexclude: Vec<String>,
    /// Replace files that already exist in the target (default: leave them and report)
    #[arg(long)]
    pub overwrite: bool,
    /// Re-read restored files and verify their content
    #[arg(long)]
    pub verify: bool,
    /// With `latest`: only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// With `latest`: only snapshots with these paths
    #[arg(long)]
    pub path: Vec<String>,
    /// With `latest`: only snapshots with these tags
    #[arg(long)]
    pub tag: Vec<String>,
    /// Show what would be restored without writing
    #[arg(long)]
    pub dry_run: bool,
    /// Concurrent pack downloads
    #[arg(long, default_value = "4")]
    pub threads: usize,
    /// With --plan: load the plan's database dumps back into their servers (an existing
    /// database with tables is refused unless --overwrite)
    #[arg(long)]
    pub load_dumps: bool,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    if let Some(name) = &a.plan.plan {
        return runbook(g, a, name);
    }
    anyhow::ensure!(
        !a.load_dumps,
        "--load-dumps needs --plan NAME: the dumps and their database servers come from the plan's sources"
    );
    let Some(snapshot) = a.snapshot.as_deref().or(a.snapshot_id.as_deref()) else {
        anyhow::bail!(
            "which snapshot? give its id (see `cairn snapshots`) or `latest`; or --plan NAME to restore a plan's latest snapshot with its hooks"
        );
    };
    let g = &a.plan.globals(g)?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let (spec, subpath) = match snapshot.split_once(':') {
        Some((s, p)) => (s, Some(p.to_string())),
        None => (snapshot, None),
    };
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.plan.tags(&a.tag),
    };
    let snap = Snapshot::find(&repo, spec, &filter)?;
    a.plan.check(&snap)?;
    let mut include = PatternSet::new(&a.include, false)?;
    include.extend(PatternSet::new(&a.iinclude, true)?);
    let mut exclude = PatternSet::new(&a.exclude, false)?;
    exclude.extend(PatternSet::new(&a.iexclude, true)?);
    let opts = RestoreOptions {
        target: a.target.clone(),
        subpath,
        include,
        exclude,
        overwrite: a.overwrite,
        verify: a.verify,
        threads: a.threads.max(1),
        dry_run: a.dry_run,
        picks: Vec::new(),
    };
    if !g.json {
        g.say(format!(
            "restoring snapshot {} of {:?} at {} to {}",
            snap.id.short(),
            snap.paths,
            snap.time.format("%Y-%m-%d %H:%M:%S"),
            a.target.display()
        ));
    }
    let progress = Arc::new(Progress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(g.progress(), move |t| {
            let done = p.bytes_done.load(Ordering::Relaxed);
            let total = p.total_bytes.load(Ordering::Relaxed).max(1);
            format!(
                "[{}] {:5.1}% {} files, {} / {}",
                elapsed(t),
                done as f64 * 100.0 / total as f64,
                p.files_done.load(Ordering::Relaxed),
                format_bytes(done),
                format_bytes(total)
            )
        })
    };
    let status = {
        let p = progress.clone();
        protocol::StatusTicker::start(move |t| {
            protocol::status_of(
                t,
                (p.files_done.load(Ordering::Relaxed), 0),
                (
                    p.bytes_done.load(Ordering::Relaxed),
                    p.total_bytes.load(Ordering::Relaxed),
                ),
                0,
            )
        })
    };
    let s = restore::restore(&repo, snap.tree, &opts, &progress);
    drop(ticker);
    drop(status);
    let s = s?;
    protocol::emit(&protocol::Message::Summary(protocol::Summary {
        snapshot_id: Some(snap.id.to_hex()),
        total_duration: Some(s.total_duration),
        other: [
            ("files_restored", s.files_restored),
            ("dirs_restored", s.dirs_restored),
            ("bytes_restored", s.bytes_written),
            ("files_verified", s.files_verified),
            ("files_skipped", s.files_skipped_existing.len() as u64),
            ("errors", s.errors.len() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect(),
        ..Default::default()
    }));
    if g.json {
        let mut v = serde_json::to_value(&s)?;
        v["message_type"] = "summary".into();
        v["snapshot_id"] = snap.id.to_hex().into();
        super::print_json(&v)?;
    } else if !g.quiet {
        println!(
            "restored {} files and {} directories, {} in {}{}",
            s.files_restored,
            s.dirs_restored,
            format_bytes(s.bytes_written),
            elapsed(std::time::Duration::from_secs_f64(s.total_duration)),
            if a.verify {
                format!(", {} files verified", s.files_verified)
            } else {
                String::new()
            }
        );
    }
    if !s.files_skipped_existing.is_empty() {
        eprintln!(
            "{} file(s) already exist in the target and were left unchanged (use --overwrite to replace them), e.g. {}",
            s.files_skipped_existing.len(),
            s.files_skipped_existing[0]
        );
    }
    for e in &s.errors {
        eprintln!("error: {}: {}", e.path, e.error);
    }
    // The same outcome the web UI's restore reports and audits.
    match crate::ops::restore::outcome(&s) {
        Outcome::Failed => {
            eprintln!(
                "Fatal: {} path(s) could not be restored; everything else was restored",
                s.errors.len()
            );
            Ok(exit::FAILURE)
        }
        Outcome::Incomplete => Ok(exit::INCOMPLETE),
        Outcome::Complete => Ok(exit::OK),
    }
}

/// `cairn restore --plan NAME`: the runbook, its report as text or JSON; exit 0 when
/// everything was restored (and loaded), 1 when something failed or was left out, 10/11/12
/// like the other commands.
fn runbook(g: &GlobalOpts, a: &Args, name: &str) -> Result<u8> {
    let snapshot = a.snapshot.clone().or(a.snapshot_id.clone());
    if let Some((id, sub)) = snapshot.as_deref().and_then(|s| s.split_once(':')) {
        anyhow::bail!(
            "{id}:{sub}: with --plan, restore part of the plan with --include /{} instead of ID:subpath",
            sub.trim_start_matches('/')
        );
    }
    let c = super::config::load(g, true)?;
    let plan = c.plans.get(name).with_context(|| {
        let hint = crate::config::closest(name, c.plans.keys().map(String::as_str))
            .map(|s| format!(" — did you mean `{s}`?"))
            .unwrap_or_default();
        format!(
            "--plan {name}: no such plan in the configuration{hint} (plans: {})",
            c.plans.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let history = super::plan::open_history(&c)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Ctrl-C or SIGTERM: the running child stops (removing its repository lock), no
    // further source is restored, and the after-restore hooks still run.
    super::signals::flag_on_stop(stop.clone())?;
    let child: Arc<std::sync::Mutex<Option<u32>>> = Arc::new(std::sync::Mutex::new(None));
    {
        let child = child.clone();
        crate::run::forward_stop(stop.clone(), move || {
            child.lock().ok().and_then(|c| *c).into_iter().collect()
        });
    }
    let runner = crate::run::Runner {
        config: &c,
        history: &history,
        exe: std::env::current_exe().context("cannot find the cairn executable")?,
        stop,
        child,
        echo: !g.quiet && !a.dry_run,
        progress: None,
    };
    let opts = crate::run::recover::RecoverOptions {
        snapshot,
        target: a.target.clone(),
        dry_run: a.dry_run,
        overwrite: a.overwrite,
        load_dumps: a.load_dumps,
        verify: a.verify,
        include: a.include.clone(),
        iinclude: a.iinclude.clone(),
        exclude: a.exclude.clone(),
        iexclude: a.iexclude.clone(),
        host: a.host.clone(),
        path: a.path.clone(),
        tag: a.tag.clone(),
        threads: Some(a.threads.max(1)),
    };
    let report = runner.recover(plan, &opts)?;
    if g.json {
        super::print_json(&report)?;
    } else if !g.quiet || report.exit_code != 0 {
        print!("{}", report.text());
    }
    Ok(report.exit_code)
}
