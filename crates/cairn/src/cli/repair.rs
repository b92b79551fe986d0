//! `cairn repair index|snapshots`: rebuild the index from the packs; save snapshots whose
//! data is partly lost (restic's commands).

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::repair;
use cairn_repo::snapshot::{Filter, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: RepairCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack files
    Index {
        /// Read every pack's header, even those a readable index describes
        #[arg(long)]
        read_all_packs: bool,
    },
    /// Save snapshots with missing data: files lose missing parts, unreadable
    /// directories become empty; the new snapshots are tagged `repaired`
    Snapshots {
        /// Snapshots to repair (default: all)
        snapshots: Vec<String>,
        /// Remove the damaged originals once the repaired ones are saved
        #[arg(long)]
        forget: bool,
        /// Only show what would be repaired
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let repo = g.open()?;
    match &a.command {
        RepairCommand::Index { read_all_packs } => {
            let _lock = g.lock(&repo, true)?;
            let r = repair::repair_index(&repo, *read_all_packs)?;
            if g.json {
                super::print_json(&r)?;
                return Ok(super::exit::OK);
            }
            for (id, e) in &r.index_files_damaged {
                g.say(format!("index {id}: unreadable ({e}), replaced"));
            }
            for id in &r.packs_missing {
                g.say(format!("pack {id}: missing, removed from the index"));
            }
            for (id, e) in &r.packs_damaged {
                g.say(format!(
                    "pack {id}: header unreadable ({e}); left in place, not indexed"
                ));
            }
            g.say(format!(
                "{} packs, {} headers read; wrote {} index file(s), removed {}",
                r.packs, r.packs_read, r.index_files_written, r.index_files_removed
            ));
            if !r.packs_missing.is_empty() {
                g.say("snapshots may now miss data: run `cairn repair snapshots --forget`");
            }
        }
        RepairCommand::Snapshots {
            snapshots,
            forget,
            dry_run,
        } => {
            let _lock = g.lock(&repo, !dry_run)?;
            let list: Vec<Snapshot> = if snapshots.is_empty() {
                Snapshot::load_all(&repo)?
            } else {
                snapshots
                    .iter()
                    .map(|s| Snapshot::find(&repo, s, &Filter::default()))
                    .collect::<cairn_repo::Result<_>>()?
            };
            let r = repair::repair_snapshots(&repo, &list, *forget, *dry_run)?;
            if g.json {
                super::print_json(&r)?;
                return Ok(super::exit::OK);
            }
            for s in &r.repaired {
                g.say(format!("snapshot {}:", s.snapshot.short()));
                for line in &s.repairs {
                    g.say(format!("  {line}"));
                }
                match s.new {
                    Some(id) => g.say(format!("  saved as {}", id.short())),
                    None if s.lost => g.say("  cannot be repaired"),
                    None => g.say("  (dry run: not saved)"),
                }
            }
            g.say(format!(
                "{} repaired, {} intact{}",
                r.repaired.iter().filter(|s| !s.lost).count(),
                r.intact,
                if *forget {
                    format!(", {} damaged original(s) removed", r.forgotten)
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(super::exit::OK)
}
