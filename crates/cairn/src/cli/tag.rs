//! `cairn tag --add/--remove/--set`: change snapshots' tags like restic: a new snapshot
//! file (with `original` recorded) replaces the old one.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::backend::FileType;
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots (default: all matching the filters)
    pub snapshots: Vec<String>,
    /// Tags to add (comma-separated or repeated)
    #[arg(long)]
    pub add: Vec<String>,
    /// Tags to remove
    #[arg(long)]
    pub remove: Vec<String>,
    /// Replace all tags with these
    #[arg(long)]
    pub set: Vec<String>,
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

fn split(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let (add, remove, set) = (split(&a.add), split(&a.remove), split(&a.set));
    anyhow::ensure!(
        !(add.is_empty() && remove.is_empty() && a.set.is_empty()),
        "nothing to do: give --add, --remove or --set"
    );
    anyhow::ensure!(
        a.set.is_empty() || (add.is_empty() && remove.is_empty()),
        "--set replaces all tags: it cannot be combined with --add or --remove"
    );
    let repo = g.open()?;
    let _lock = g.lock(&repo, true)?;
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
    let mut changed = Vec::new();
    for s in snapshots {
        let mut tags = if a.set.is_empty() {
            s.tags.clone()
        } else {
            set.clone()
        };
        for t in &add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags.retain(|t| !remove.contains(t));
        if tags == s.tags {
            continue;
        }
        let old = s.id;
        let mut new = s.clone();
        new.tags = tags;
        new.original = Some(s.original.unwrap_or(old));
        // The new snapshot is stored before the old one goes: never zero copies.
        let id = new.save(&repo)?;
        repo.backend().remove(FileType::Snapshot, &old.to_hex())?;
        changed.push((old, id));
    }
    if g.json {
        let v: Vec<_> = changed
            .iter()
            .map(|(o, n)| serde_json::json!({"old_snapshot_id": o.to_hex(), "new_snapshot_id": n.to_hex()}))
            .collect();
        super::print_json(&v)?;
    } else {
        for (o, n) in &changed {
            g.say(format!("snapshot {} saved as {}", o.short(), n.short()));
        }
        g.say(format!("modified {} snapshots", changed.len()));
    }
    Ok(super::exit::OK)
}
