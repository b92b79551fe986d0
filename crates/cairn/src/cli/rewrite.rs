//! `cairn rewrite`: new snapshots without excluded paths (restic's flags), with a report
//! of what was removed and how much `prune` can then free. With `--plan NAME`: the plan's
//! current excludes over its whole history, a report unless `--apply` (then rewrite,
//! forget the originals, prune), through [`crate::ops::rewrite`].

use super::GlobalOpts;
use crate::ops::rewrite::{self as ops_rewrite, PlanExcludes};
use anyhow::{Context, Result};
use cairn_repo::exclude::{read_pattern_file, PatternSet};
use cairn_repo::prune::{self, MaxUnused, PruneOptions};
use cairn_repo::rewrite::{self, RewriteOptions};
use cairn_repo::snapshot::{Filter, Snapshot};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to rewrite (default: all matching the filters)
    pub snapshots: Vec<String>,
    /// The snapshots of this plan of the config (tag plan:NAME, in its repository), with
    /// the plan's current excludes (its sources' and its own, as its backup applies
    /// them). Reports what would go unless --apply
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["exclude", "iexclude", "exclude_file", "iexclude_file", "forget"]
    )]
    pub plan: Option<String>,
    /// With --plan: rewrite the snapshots that change, forget their originals and prune.
    /// The excluded data is gone from the repository afterwards
    #[arg(long, requires = "plan", conflicts_with = "dry_run")]
    pub apply: bool,
    /// With --apply: unused space prune may leave (as `cairn prune --max-unused`; the
    /// plan's prune step uses the default); 0 reclaims everything
    #[arg(long, requires = "apply", default_value = "5%", value_name = "LIMIT")]
    pub max_unused: String,
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
    if let Some(name) = &a.plan {
        return run_plan(g, a, name);
    }
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
            ..Default::default()
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

/// `rewrite --plan NAME`: the plan's repository and excludes from the config.
fn run_plan(g: &GlobalOpts, a: &Args, name: &str) -> Result<u8> {
    let (config, plan) = super::configured_plan(g, name)?;
    let plan = &plan;
    let (flags, one_file_system) = super::backup::ExcludeFlags::of_plan(plan)?;
    let built = flags
        .build()
        .with_context(|| format!("plan {name}: building its excludes"))?;
    let mut described = plan.filter.args();
    described.retain(|f| f != "--one-file-system");
    let excludes = PlanExcludes {
        patterns: built.patterns,
        if_present: built.if_present,
        larger_than: built.larger_than,
        described,
        not_applicable: if one_file_system {
            vec!["one-file-system: a snapshot does not record which file system a path was on, so nothing is removed for it".into()]
        } else {
            Vec::new()
        },
    };
    let prune_opts = PruneOptions {
        max_unused: MaxUnused::parse(&a.max_unused)?,
        ..Default::default()
    };
    let mut g = g.clone();
    g.use_configured(&config, &plan.repository)?;
    let b = super::format_bytes;
    if excludes.is_empty() {
        if g.json {
            super::print_json(&serde_json::json!({
                "plan": name,
                "repository": plan.repository,
                "applied": false,
                "excludes": [],
                "snapshots": [],
                "message": "the plan has no excludes: nothing to rewrite",
            }))?;
        } else {
            g.say(format!(
                "plan {name} has no excludes (exclude, exclude-if-present, exclude-caches, exclude-larger-than): nothing to rewrite"
            ));
        }
        return Ok(super::exit::OK);
    }
    let repo = g.open()?;
    let _lock = g.lock(&repo, a.apply)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.tag.clone(),
    };
    let (chosen, all) = ops_rewrite::plan_snapshots(&repo, name, &filter, &a.snapshots)?;
    let quiet = g.quiet || g.json;
    let report = ops_rewrite::rewrite_plan(
        &repo,
        name,
        &plan.repository,
        &chosen,
        &all,
        excludes,
        a.apply,
        &prune_opts,
        &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        },
    )?;
    if g.json {
        super::print_json(&report)?;
        return Ok(super::exit::OK);
    }
    g.say(format!(
        "plan {name} (repository {}): excludes {}",
        report.repository,
        report.excludes.join(" ")
    ));
    for n in &report.not_applicable {
        g.say(format!("  not applied: {n}"));
    }
    let verb = if report.applied {
        "removed"
    } else {
        "would go"
    };
    for s in &report.snapshots {
        let new = match s.new_id {
            Some(id) => format!(", now {}", id.short()),
            None => String::new(),
        };
        g.say(format!(
            "snapshot {} of {}: {} files, {} directories, {} {verb}{new}",
            s.id.short(),
            chrono::DateTime::parse_from_rfc3339(&s.time)
                .map(|t| t
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string())
                .unwrap_or_else(|_| s.time.clone()),
            s.files,
            s.dirs,
            b(s.bytes)
        ));
        for p in &s.paths {
            let what = if p.dirs > 0 {
                format!("{} files, {}", p.files, b(p.bytes))
            } else {
                b(p.bytes)
            };
            g.say(format!("  - {} ({what})", p.path));
        }
        if s.paths_total > s.paths.len() as u64 {
            g.say(format!(
                "  ... and {} more",
                s.paths_total - s.paths.len() as u64
            ));
        }
    }
    let t = &report.totals;
    if t.snapshots == 0 {
        let tag = crate::run::plan_tag(name);
        g.say(format!(
            "plan {name} has no snapshots in repository {}: a plan's snapshots carry the tag {tag} (`cairn tag --add {tag} ID` adopts one made otherwise)",
            report.repository
        ));
        return Ok(super::exit::OK);
    }
    if t.changed == 0 {
        g.say(format!(
            "nothing to remove: none of the plan's {} snapshot(s) holds an excluded path",
            t.snapshots
        ));
        if a.apply {
            g.say(format!(
                "(if an earlier --apply was stopped during its prune, `cairn -r {} prune` reclaims the rest)",
                report.repository
            ));
        }
        return Ok(super::exit::OK);
    }
    g.say(format!(
        "{} of {} snapshot(s) {}, {} unchanged: {} files, {} directories, {} in all; prune can reclaim {} (stored data only these paths reference)",
        t.changed,
        t.snapshots,
        if report.applied { "rewritten" } else { "would change" },
        t.unchanged,
        t.files,
        t.dirs,
        b(t.bytes),
        b(t.reclaimable)
    ));
    match &report.prune {
        Some(p) => g.say(format!(
            "{} original(s) forgotten; prune freed {} (repository now {})",
            report.forgotten,
            b(p.freed_size),
            b(p.size_after)
        )),
        None => g.say(format!(
            "dry run: nothing was changed. `cairn rewrite --plan {name} --apply` rewrites them, forgets the originals and prunes"
        )),
    }
    Ok(super::exit::OK)
}
