//! `cairn find PATTERN...`: where matching paths are, across snapshots (restic's rules:
//! a pattern is matched against the whole path, so a matching directory's content
//! matches too).

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, Trees};
use cairn_repo::exclude::Pattern;
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    /// Patterns (restic's exclude syntax: `*.db`, `/home/*/.ssh`, `**/cache`)
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Only these snapshots (repeatable)
    #[arg(short = 's', long = "snapshot")]
    pub snapshots: Vec<String>,
    /// Ignore case
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Show permissions, owner, size and time
    #[arg(short, long)]
    pub long: bool,
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
    let g = &a.plan.globals(g)?;
    let patterns = a
        .patterns
        .iter()
        .map(|p| {
            let p = if a.ignore_case {
                p.to_lowercase()
            } else {
                p.clone()
            };
            Pattern::parse(&p).map_err(|e| anyhow::anyhow!("pattern {p:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.plan.tags(&a.tag),
    };
    let snapshots: Vec<Snapshot> = if a.snapshots.is_empty() {
        Snapshot::load_all(&repo)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect()
    } else {
        a.snapshots
            .iter()
            .map(|s| {
                let s = Snapshot::find(&repo, s, &filter)?;
                a.plan.check(&s)?;
                Ok(s)
            })
            .collect::<Result<_>>()?
    };
    let index = repo.load_index()?;
    let trees = Trees::new(&repo, &index);
    let mut json = Vec::new();
    for s in &snapshots {
        let hits = browse::find(&trees, &s.tree, &patterns, a.ignore_case)?;
        if hits.is_empty() {
            continue;
        }
        if g.json {
            let matches: Vec<serde_json::Value> = hits
                .iter()
                .map(|(p, n)| {
                    let mut v =
                        serde_json::to_value(super::ls::node_json(p, n)).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("struct_type");
                        o.remove("name");
                    }
                    v
                })
                .collect();
            json.push(serde_json::json!({
                "matches": matches,
                "hits": hits.len(),
                "snapshot": s.id.to_hex(),
            }));
            continue;
        }
        println!(
            "Found matching entries in snapshot {} from {}",
            s.id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S")
        );
        for (p, n) in &hits {
            if a.long {
                println!("{}", super::ls::long_line(p, n));
            } else {
                println!("{p}");
            }
        }
        println!();
    }
    if g.json {
        super::print_json(&json)?;
    }
    Ok(super::exit::OK)
}
