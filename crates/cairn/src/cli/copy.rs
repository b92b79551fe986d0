//! `cairn copy --from-repo SRC [SNAP...]`: copy the snapshots the destination lacks.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::copy::{self, CopyOptions};
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to copy (default: all matching the filters)
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub from: super::FromRepo,
    /// Re-chunk files when the repositories' chunker polynomials differ, so copied data
    /// deduplicates with the destination's own backups
    #[arg(long)]
    pub rechunk: bool,
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
    let src = a.from.open(g)?;
    let dst = g.open()?;
    let _src_lock = g.lock(&src, false)?;
    let _dst_lock = g.lock(&dst, false)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.tag.clone(),
    };
    let snapshots: Vec<Snapshot> = if a.snapshots.is_empty() {
        Snapshot::load_all(&src)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect()
    } else {
        a.snapshots
            .iter()
            .map(|s| Snapshot::find(&src, s, &filter))
            .collect::<cairn_repo::Result<_>>()?
    };
    if src.polynomial() != dst.polynomial() && !a.rechunk && !g.quiet && !g.json {
        eprintln!(
            "note: the repositories use different chunker parameters; copied data will not deduplicate with the destination's own backups (use --rechunk, or create destinations with `init --copy-chunker-params`)"
        );
    }
    let report = copy::copy(&src, &dst, &snapshots, &CopyOptions { rechunk: a.rechunk })?;
    crate::run::protocol::emit(&crate::run::protocol::Message::Summary(
        crate::run::protocol::Summary {
            data_added: Some(report.bytes_added),
            data_blobs: Some(report.data_blobs_added),
            tree_blobs: Some(report.tree_blobs_added),
            other: [
                ("snapshots_copied", report.copied.len() as u64),
                ("snapshots_skipped", report.skipped.len() as u64),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect(),
            ..Default::default()
        },
    ));
    if g.json {
        super::print_json(&report)?;
        return Ok(super::exit::OK);
    }
    for id in &report.skipped {
        g.say(format!(
            "skipping snapshot {}: the destination has it",
            id.short()
        ));
    }
    for (from, to) in &report.copied {
        g.say(format!(
            "snapshot {} copied as {}",
            from.short(),
            to.short()
        ));
    }
    g.say(format!(
        "{} copied, {} skipped; {} data and {} tree blobs added ({}){}",
        report.copied.len(),
        report.skipped.len(),
        report.data_blobs_added,
        report.tree_blobs_added,
        super::format_bytes(report.bytes_added),
        if report.rechunked {
            ", files re-chunked"
        } else {
            ""
        }
    ));
    Ok(super::exit::OK)
}
