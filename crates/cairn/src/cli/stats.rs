//! `cairn stats [SNAP...] --mode ...`: sizes and counts like restic's `stats`.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, StatsMode, Trees};
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots (default: all matching the filters)
    pub snapshots: Vec<String>,
    /// restore-size, files-by-contents, raw-data, blobs-per-file, or debug (the in-memory
    /// index: blobs, bytes, bytes per blob, load time)
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
    if a.mode == "debug" {
        return debug(g);
    }
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

/// What `--mode debug` reports about the in-memory index.
#[derive(serde::Serialize)]
struct IndexDebug {
    index_data_blobs: usize,
    index_tree_blobs: usize,
    index_blobs: usize,
    index_packs: usize,
    /// Heap bytes the loaded index holds.
    index_bytes: usize,
    index_bytes_per_blob: f64,
    /// Listing, fetching, decrypting and building the index.
    index_load_seconds: f64,
}

fn debug(g: &GlobalOpts) -> Result<u8> {
    use cairn_repo::pack::BlobType;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let start = std::time::Instant::now();
    let index = repo.load_index()?;
    let secs = start.elapsed().as_secs_f64();
    let (data, trees) = (
        index.blob_count(BlobType::Data),
        index.blob_count(BlobType::Tree),
    );
    let bytes = index.heap_bytes();
    let d = IndexDebug {
        index_data_blobs: data,
        index_tree_blobs: trees,
        index_blobs: data + trees,
        index_packs: index.pack_ids().len(),
        index_bytes: bytes,
        index_bytes_per_blob: bytes as f64 / (data + trees).max(1) as f64,
        index_load_seconds: secs,
    };
    if g.json {
        super::print_json(&d)?;
        return Ok(super::exit::OK);
    }
    println!("Index (in memory):");
    println!("             Data blobs:  {}", d.index_data_blobs);
    println!("             Tree blobs:  {}", d.index_tree_blobs);
    println!("                  Packs:  {}", d.index_packs);
    println!(
        "                  Bytes:  {} ({:.1} per blob)",
        d.index_bytes, d.index_bytes_per_blob
    );
    println!("              Load time:  {:.3} s", d.index_load_seconds);
    Ok(super::exit::OK)
}
