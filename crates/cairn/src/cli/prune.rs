//! `cairn prune`: remove unreferenced data, repacking partly used packs (restic's flags).

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::prune::{self, MaxUnused, Progress, PruneOptions, PruneStats};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Unused space to tolerate: a percentage of the repository, a size, or "unlimited"
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// Repack at most this much (e.g. 10G)
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Only show what would be done
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let opts =
        PruneOptions {
            max_unused: MaxUnused::parse(&a.max_unused)?,
            max_repack_bytes: match &a.max_repack_size {
                Some(s) => Some(cairn_repo::exclude::parse_size(s).map_err(|e| {
                    anyhow::anyhow!("--max-repack-size {s:?}: {e} (e.g. 500M, 10G)")
                })?),
                None => None,
            },
            ..Default::default()
        };
    let repo = g.open()?;
    run_on(g, &repo, &opts, a.dry_run)
}

/// Prunes an open repository (also used by `forget --prune`). Takes the exclusive lock.
pub fn run_on(
    g: &GlobalOpts,
    repo: &cairn_repo::repository::Repository,
    opts: &PruneOptions,
    dry_run: bool,
) -> Result<u8> {
    let _lock = g.lock(repo, !dry_run)?;
    let progress = std::sync::Arc::new(Progress::default());
    g.say("loading indexes, snapshots and trees...");
    let plan = prune::plan(repo, opts, &progress)?;
    if !g.json {
        print_plan(g, &plan.stats, dry_run);
    }
    if dry_run {
        if g.json {
            super::print_json(&serde_json::json!({"dry_run": true, "plan": plan.stats}))?;
        }
        return Ok(super::exit::OK);
    }
    if plan.is_noop() {
        g.say("nothing to do");
    }
    let status = {
        let p = progress.clone();
        // Packs repacked or deleted, in the files fields: prune has no files of its own.
        crate::run::protocol::StatusTicker::start(move |t| {
            use std::sync::atomic::Ordering;
            crate::run::protocol::status_of(
                t,
                (
                    p.packs_done.load(Ordering::Relaxed),
                    p.packs_total.load(Ordering::Relaxed),
                ),
                (0, 0),
                0,
            )
        })
    };
    let stats = plan.execute(repo, opts, &progress);
    drop(status);
    let stats = stats?;
    if let Ok(serde_json::Value::Object(other)) = serde_json::to_value(&stats) {
        crate::run::protocol::emit(&crate::run::protocol::Message::Summary(
            crate::run::protocol::Summary {
                other,
                ..Default::default()
            },
        ));
    }
    if g.json {
        super::print_json(&serde_json::json!({"dry_run": false, "result": stats}))?;
    } else if stats.packs_repack
        + stats.packs_delete
        + stats.packs_unreferenced
        + stats.packs_missing
        > 0
    {
        g.say(format!(
            "done: {} freed, {} index file(s) written",
            super::format_bytes(stats.freed_size),
            stats.index_files_written
        ));
    }
    Ok(super::exit::OK)
}

fn print_plan(g: &GlobalOpts, s: &PruneStats, dry_run: bool) {
    let b = super::format_bytes;
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            100.0 * part as f64 / whole as f64
        }
    };
    g.say(format!(
        "{} snapshots reference {} blobs ({})",
        s.snapshots,
        s.used_blobs,
        b(s.used_size)
    ));
    g.say(format!(
        "unused:           {} blobs / {} ({} duplicates)",
        s.unused_blobs,
        b(s.unused_size),
        s.duplicate_blobs
    ));
    g.say(format!(
        "to repack:        {} packs / {} (keeping {} of it)",
        s.packs_repack,
        b(s.repack_size),
        b(s.repack_used_size)
    ));
    g.say(format!(
        "to delete:        {} packs / {}",
        s.packs_delete,
        b(s.delete_size)
    ));
    if s.packs_missing > 0 {
        eprintln!(
            "warning: {} pack(s) named by the index are missing from the repository; nothing in use was in them, so they are dropped from the index",
            s.packs_missing
        );
    }
    if s.packs_unreferenced > 0 {
        g.say(format!(
            "unreferenced:     {} packs / {} (left by interrupted backups)",
            s.packs_unreferenced,
            b(s.unreferenced_size)
        ));
    }
    g.say(format!(
        "total prune:      {} ({:.2}% of {})",
        b(s.freed_size),
        pct(s.freed_size, s.size_before),
        b(s.size_before)
    ));
    g.say(format!(
        "remaining:        {} packs / {}, unused after prune {} ({:.2}%)",
        s.packs_keep + usize::from(s.packs_repack > 0),
        b(s.size_after),
        b(s.unused_after),
        pct(s.unused_after, s.size_after)
    ));
    if dry_run {
        g.say("dry run: nothing was changed");
    }
}
