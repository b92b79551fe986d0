//! A plan's current excludes applied to its whole history (`cairn rewrite --plan`): the
//! "rewrite then prune" of field note 000 as one operation.
//!
//! A report first (what would go from each of the plan's snapshots, and what prune could
//! then reclaim); with `apply`, the snapshots that change are stored anew without those
//! paths, the originals forgotten and the repository pruned. The write order is the
//! engine's ([`cairn_repo::rewrite`]): packs, index, new snapshots, then the originals
//! go — a kill at any point leaves old or new snapshots whole, never neither. Prune
//! keeps its own order. The caller holds the repository lock (exclusive to apply).
//! This module must not print: progress goes to a callback.
//!
//! The excludes are the plan's own and its sources' (what `cairn run` passes its backup
//! as flags). What a run adds for its scaffolding is not applied to history: the
//! `-wal`/`-shm`/`-journal` files beside a database backed up from a consistent copy
//! (an older snapshot made without the copy needs them to be whole) and the Btrfs
//! snapshot directory (never in a snapshot). `one-file-system` cannot be judged from a
//! snapshot and is reported as not applied.

use cairn_repo::exclude::{ExcludeIfPresent, PatternSet};
use cairn_repo::id::Id;
use cairn_repo::prune::{self, PruneOptions, PruneStats};
use cairn_repo::repository::Repository;
use cairn_repo::rewrite::{self, RemovedPath, RewriteOptions};
use cairn_repo::snapshot::{Filter, Snapshot};
use cairn_repo::Result;
use serde::Serialize;

/// The exclude set of a plan, built (see `cli::backup::ExcludeFlags::of_plan`).
#[derive(Default)]
pub struct PlanExcludes {
    pub patterns: PatternSet,
    pub if_present: Vec<ExcludeIfPresent>,
    pub larger_than: Option<u64>,
    /// Each exclude as the config gives it (`--exclude=/srv/cache`), for the report.
    pub described: Vec<String>,
    /// What the plan's backup leaves out that a snapshot cannot tell (one-file-system).
    pub not_applicable: Vec<String>,
}

impl PlanExcludes {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.if_present.is_empty() && self.larger_than.is_none()
    }
}

/// What goes from one snapshot.
#[derive(Serialize, Debug, Clone)]
pub struct SnapshotChange {
    pub id: Id,
    /// The snapshot's time, RFC 3339.
    pub time: String,
    /// The rewritten snapshot (None until applied).
    pub new_id: Option<Id>,
    /// Files (and other non-directories) removed, directories removed, and the sum of
    /// the removed files' sizes.
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// The excluded entries, a directory once with what it held (at most
    /// [`rewrite::LISTED_PATHS`]; `paths_total` counts them all).
    pub paths: Vec<RemovedPath>,
    pub paths_total: u64,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Totals {
    /// The plan's snapshots looked at.
    pub snapshots: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub files: u64,
    pub dirs: u64,
    /// Sum over the snapshots of the removed files' sizes (a file in several snapshots
    /// counts in each).
    pub bytes: u64,
    /// Stored bytes of the blobs only the removed paths reference, counted once: what
    /// prune can reclaim (with max-unused 0; a tolerance may leave some in place).
    pub reclaimable: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct PlanRewriteReport {
    pub plan: String,
    pub repository: String,
    pub applied: bool,
    pub excludes: Vec<String>,
    pub not_applicable: Vec<String>,
    /// The snapshots that change, oldest first; the others are left as they are.
    pub snapshots: Vec<SnapshotChange>,
    pub totals: Totals,
    /// Originals forgotten (applied only).
    pub forgotten: usize,
    /// What prune did (applied, and something changed).
    pub prune: Option<PruneStats>,
}

/// The snapshots of plan `plan` (tag `plan:NAME`), narrowed by `filter` (host, paths,
/// tags) and, if `ids` is not empty, to those ids or prefixes; oldest first. Also
/// returns every snapshot of the repository.
pub fn plan_snapshots(
    repo: &Repository,
    plan: &str,
    filter: &Filter,
    ids: &[String],
) -> Result<(Vec<Snapshot>, Vec<Snapshot>)> {
    let all = Snapshot::load_all(repo)?;
    let tag = crate::run::plan_tag(plan);
    let mine = |s: &Snapshot| s.tags.contains(&tag) && filter.matches(s);
    let chosen = if ids.is_empty() {
        all.iter().filter(|s| mine(s)).cloned().collect()
    } else {
        let mut v = Vec::new();
        for spec in ids {
            let s = Snapshot::find(repo, spec, filter)?;
            if !s.tags.contains(&tag) {
                return Err(cairn_repo::Error::invalid(format!(
                    "snapshot {} is not one of plan {plan}'s (no tag {tag}): leave it out, or adopt it with `cairn tag --add {tag} {}`",
                    s.id.short(),
                    s.id.short()
                )));
            }
            if !v.iter().any(|x: &Snapshot| x.id == s.id) {
                v.push(s);
            }
        }
        v.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        v
    };
    Ok((chosen, all))
}

/// Rewrites (or, without `apply`, reports on) `chosen`, snapshots of plan `plan` in
/// `repo` (`all` is every snapshot of the repository: blobs another snapshot still
/// uses are not reclaimable). With `apply`: rewrite, forget the originals, prune with
/// `prune_opts`. `progress` gets a line per phase.
#[allow(clippy::too_many_arguments)]
pub fn rewrite_plan(
    repo: &Repository,
    plan: &str,
    repository: &str,
    chosen: &[Snapshot],
    all: &[Snapshot],
    excludes: PlanExcludes,
    apply: bool,
    prune_opts: &PruneOptions,
    progress: &mut dyn FnMut(String),
) -> Result<PlanRewriteReport> {
    let nothing_excluded = excludes.is_empty();
    let mut report = PlanRewriteReport {
        plan: plan.to_string(),
        repository: repository.to_string(),
        applied: apply,
        excludes: excludes.described,
        not_applicable: excludes.not_applicable,
        snapshots: Vec::new(),
        totals: Totals {
            snapshots: chosen.len(),
            ..Default::default()
        },
        forgotten: 0,
        prune: None,
    };
    if nothing_excluded || chosen.is_empty() {
        report.totals.unchanged = chosen.len();
        return Ok(report);
    }
    if apply {
        progress(format!(
            "looking through {} snapshot(s) of plan {plan}; those that change are stored anew...",
            chosen.len()
        ));
    }
    let done = rewrite::rewrite(
        repo,
        chosen,
        &RewriteOptions {
            excludes: excludes.patterns,
            exclude_if_present: excludes.if_present,
            exclude_larger_than: excludes.larger_than,
            forget: apply,
            dry_run: !apply,
        },
    )?;
    let by_id: std::collections::HashMap<Id, &Snapshot> =
        chosen.iter().map(|s| (s.id, s)).collect();
    for r in &done.rewritten {
        let time = by_id
            .get(&r.original)
            .map(|s| s.time.to_rfc3339())
            .unwrap_or_default();
        report.totals.files += r.removed_files;
        report.totals.dirs += r.removed_dirs;
        report.totals.bytes += r.removed_bytes;
        report.snapshots.push(SnapshotChange {
            id: r.original,
            time,
            new_id: r.new,
            files: r.removed_files,
            dirs: r.removed_dirs,
            bytes: r.removed_bytes,
            paths: r.removed_paths.clone(),
            paths_total: r.removed_paths_total,
        });
    }
    report.totals.changed = done.rewritten.len();
    report.totals.unchanged = done.unchanged;
    report.forgotten = done.forgotten;
    if done.rewritten.is_empty() {
        return Ok(report);
    }
    // What only the removed paths hold: every snapshot's blobs before, against the
    // untouched snapshots' and the rewritten ones' after.
    let changed: std::collections::HashSet<Id> =
        done.rewritten.iter().map(|r| r.original).collect();
    let before: Vec<Id> = all.iter().map(|s| s.tree).collect();
    let mut after: Vec<Id> = all
        .iter()
        .filter(|s| !changed.contains(&s.id))
        .map(|s| s.tree)
        .collect();
    after.extend(done.new_roots.iter().copied());
    let index = repo.load_index()?;
    report.totals.reclaimable = rewrite::freed_by(repo, &index, &before, &after, &done.new_trees)?;
    drop(index);
    if !apply {
        return Ok(report);
    }
    progress(format!(
        "stored {} rewritten snapshot(s), forgot {} original(s); pruning...",
        done.rewritten.len(),
        done.forgotten
    ));
    let p = prune::Progress::default();
    let plan = prune::plan(repo, prune_opts, &p)?;
    report.prune = Some(plan.execute(repo, prune_opts, &p)?);
    Ok(report)
}
