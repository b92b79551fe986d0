//! `cairn diff SNAP1 SNAP2`: what was added, removed and changed (restic's output).

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::browse::{self, Trees};
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    pub first: String,
    pub second: String,
    /// Also show files whose metadata (not content) changed, as `U`
    #[arg(long)]
    pub metadata: bool,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let g = &a.plan.globals(g)?;
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let filter = Filter {
        tags: a.plan.tags(&[]),
        ..Filter::default()
    };
    let s1 = Snapshot::find(&repo, &a.first, &filter)?;
    let s2 = Snapshot::find(&repo, &a.second, &filter)?;
    a.plan.check(&s1)?;
    a.plan.check(&s2)?;
    let index = repo.load_index()?;
    let trees = Trees::new(&repo, &index);
    let d = browse::diff(&trees, &s1.tree, &s2.tree, a.metadata)?;
    if g.json {
        #[derive(serde::Serialize)]
        struct ChangeJson<'a> {
            message_type: &'static str,
            path: &'a str,
            modifier: String,
        }
        #[derive(serde::Serialize)]
        struct StatsJson<'a> {
            message_type: &'static str,
            source_snapshot: &'a str,
            target_snapshot: &'a str,
            changed_files: u64,
            added: &'a browse::DiffSide,
            removed: &'a browse::DiffSide,
        }
        for c in &d.changes {
            let v = ChangeJson {
                message_type: "change",
                path: &c.path,
                modifier: c.modifier.to_string(),
            };
            println!("{}", super::go_json(&v));
        }
        // restic echoes the snapshot ids as they were given.
        let v = StatsJson {
            message_type: "statistics",
            source_snapshot: &a.first,
            target_snapshot: &a.second,
            changed_files: d.changed_files,
            added: &d.added,
            removed: &d.removed,
        };
        println!("{}", super::go_json(&v));
        return Ok(super::exit::OK);
    }
    println!(
        "comparing snapshot {} to {}:\n",
        s1.id.short(),
        s2.id.short()
    );
    for c in &d.changes {
        println!("{:<5}{}", c.modifier, c.path);
    }
    let b = super::format_bytes;
    println!(
        "\nFiles:       {:5} new, {:5} removed, {:5} changed",
        d.added.files, d.removed.files, d.changed_files
    );
    println!(
        "Dirs:        {:5} new, {:5} removed",
        d.added.dirs, d.removed.dirs
    );
    println!(
        "Others:      {:5} new, {:5} removed",
        d.added.others, d.removed.others
    );
    println!(
        "Data Blobs:  {:5} new, {:5} removed",
        d.added.data_blobs, d.removed.data_blobs
    );
    println!(
        "Tree Blobs:  {:5} new, {:5} removed",
        d.added.tree_blobs, d.removed.tree_blobs
    );
    println!("  Added:   {}", b(d.added.bytes));
    println!("  Removed: {}", b(d.removed.bytes));
    Ok(super::exit::OK)
}
