//! `cairn rewrite`: new snapshots without excluded paths (restic's flags), with a report
//! of what was removed and how much `prune` can then free.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::exclude::{read_pattern_file, PatternSet};
use cairn_repo::prune::{self, MaxUnused, PruneOptions};
use cairn_repo::rewrite::{self, RewriteOptions};
use cairn_repo::snapshot::{Filter, Snapshot};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to rewrite (default: all matching the filters)
    pub snapshots: Vec<String>,
    /// Exclude a pattern, matched against paths in the snapshot (repeatable)
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
    /// Remove the original snapshots once the rewritten ones are stored
    #[arg(long)]
    pub forget: bool,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// Only snapshots with these tags (comma-separated: all of them)
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots with exactly these paths
    #[arg(long)]
    pub path: Vec<String>,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let mut patterns = a.exclude.clone();
    for f in &a.exclude_file {
        patterns.extend(read_pattern_file(f)?);
    }
    let mut ipatterns = a.iexclude.clone();
    for f in &a.iexclude_file {
        ipatterns.extend(read_pattern_file(f)?);
    }
    let mut excludes = PatternSet::new(&patterns, false)?;
    excludes.extend(PatternSet::new(&ipatterns, true)?);
    let repo = g.open()?;
    let _lock = g.lock(&repo, !a.dry_run)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.tag.clone(),
    };
    let snapshots: Vec<Snapshot> = if a.snapshots.is_empty() {
        Snapshot::load_all(&repo)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect()
    } else {
        a.snapshots
            .iter()
            .map(|s| Snapshot::find(&repo, s, &filter))
            .collect::<cairn_repo::Result<_>>()?
    };
    let report = rewrite::rewrite(
        &repo,
        &snapshots,
        &RewriteOptions {
            excludes,
            forget: a.forget,
            dry_run: a.dry_run,
        },
    )?;
    // What prune can reclaim now (exactly: a read-only prune plan with no tolerance).
    let reclaimable = if a.dry_run || !a.forget || report.rewritten.is_empty() {
        None
    } else {
        let opts = PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..Default::default()
        };
        Some(
            prune::plan(&repo, &opts, &Default::default())?
                .stats
                .freed_size,
        )
    };
    if g.json {
        super::print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "rewritten": report.rewritten,
            "unchanged": report.unchanged,
            "forgotten": report.forgotten,
            "prune_would_free": reclaimable,
        }))?;
        return Ok(super::exit::OK);
    }
    let b = super::format_bytes;
    for r in &report.rewritten {
        let new = match r.new {
            Some(id) => format!("saved as {}", id.short()),
            None => "(dry run: not saved)".into(),
        };
        g.say(format!(
            "snapshot {}: removed {} files and {} directories, {}; {new}",
            r.original.short(),
            r.removed_files,
            r.removed_dirs,
            b(r.removed_bytes)
        ));
        for p in &r.removed_examples {
            g.say(format!("  - {p}"));
        }
    }
    g.say(format!(
        "{} snapshot(s) rewritten, {} unchanged{}",
        report.rewritten.len(),
        report.unchanged,
        if a.forget && !a.dry_run {
            format!(", {} original(s) forgotten", report.forgotten)
        } else {
            String::new()
        }
    ));
    match reclaimable {
        Some(n) => g.say(format!("`cairn prune --max-unused 0` can now free {}", b(n))),
        None if !report.rewritten.is_empty() && !a.forget => g.say(
            "the originals are kept, so nothing can be freed yet (use --forget, or `cairn forget` them, then `cairn prune`)",
        ),
        None => {}
    }
    Ok(super::exit::OK)
}
