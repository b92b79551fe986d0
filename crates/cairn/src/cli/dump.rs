//! `cairn dump SNAP PATH`: a file's content to stdout, or a directory as a tar archive.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, Located, Trees};
use cairn_repo::dump::{self, DumpReport};
use cairn_repo::node::NodeType;
use cairn_repo::snapshot::{Filter, Snapshot};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (prefix) or `latest` (also `SNAP:subpath`)
    pub snapshot: String,
    /// Path inside the snapshot
    pub path: String,
    /// Archive format for directories (only tar)
    #[arg(short, long, default_value = "tar")]
    pub archive: String,
    /// With `latest`: only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// With `latest`: only snapshots with these tags
    #[arg(long)]
    pub tag: Vec<String>,
    /// With `latest`: only snapshots with exactly these paths
    #[arg(long)]
    pub path_filter: Vec<String>,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    anyhow::ensure!(
        a.archive == "tar",
        "--archive {:?}: only tar is supported",
        a.archive
    );
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let (spec, sub) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s, p.trim_end_matches('/')),
        None => (a.snapshot.as_str(), ""),
    };
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path_filter.clone(),
        tags: a.tag.clone(),
    };
    let snap = Snapshot::find(&repo, spec, &filter)?;
    // One file looks up its blobs on disk; a large tree reads the data index whole.
    let index = repo.load_index_for_reading()?;
    let trees = Trees::new(&repo, &index);
    let path = format!("{sub}/{}", a.path.trim_start_matches('/'));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let report = match browse::lookup(&trees, snap.tree, &path)? {
        Located::Root(t) => dump::dump_tar(&trees, &t, "", &mut out)?,
        Located::Node(n) => match (n.node_type, n.subtree) {
            // Entries are named by their path in the snapshot (below `SNAP:subpath`).
            (NodeType::Dir, Some(t)) => dump::dump_tar(&trees, &t, &a.path, &mut out)?,
            (NodeType::File, _) => {
                browse::dump_file(&trees, &n, &mut out)?;
                DumpReport::default()
            }
            _ => anyhow::bail!(
                "{path} is a {}: only files and directories can be dumped",
                n.node_type.as_str()
            ),
        },
    };
    out.flush()?;
    if !report.skipped.is_empty() {
        for s in &report.skipped {
            eprintln!("error: {s}");
        }
        eprintln!(
            "Fatal: {} entr(y/ies) of the snapshot were left out of the archive; everything else was written",
            report.skipped.len()
        );
        return Ok(super::exit::FAILURE);
    }
    Ok(super::exit::OK)
}
