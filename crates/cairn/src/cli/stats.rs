//! `cairn stats [SNAP...] --mode ...`: sizes and counts like restic's `stats`.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, StatsMode, Trees};
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots (default: all matching the filters)
    pub snapshots: Vec<String>,
    /// restore-size, files-by-contents, raw-data or blobs-per-file
    #[arg(long, default_value = "restore-size")]
    pub mode: String,
    /// Only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// Only snapshots with these tags
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots with exactly these paths
    #[arg(long)]
    pub path: Vec<String>,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let mode = StatsMode::parse(&a.mode)?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
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
    let index = repo.load_index()?;
    let trees = Trees::new(&repo, &index);
    let roots: Vec<_> = snapshots.iter().map(|s| s.tree).collect();
    let st = browse::stats(&trees, &roots, mode)?;
    if g.json {
        super::print_json(&st)?;
        return Ok(super::exit::OK);
    }
    println!("Stats in {} mode:", a.mode);
    println!("     Snapshots processed:  {}", st.snapshots_count);
    if mode != StatsMode::RawData {
        println!("        Total File Count:  {}", st.total_file_count);
    }
    if let Some(n) = st.total_blob_count {
        println!("        Total Blob Count:  {n}");
    }
    println!(
        "              Total Size:  {}",
        super::format_bytes(st.total_size)
    );
    Ok(super::exit::OK)
}
