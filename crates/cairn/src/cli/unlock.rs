//! `cairn unlock [--remove-all]`: remove stale locks (restic-compatible).

use super::GlobalOpts;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove all locks, even those of running processes
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let repo = g.open()?;
    let n = cairn_repo::lock::unlock(&repo, a.remove_all)?;
    if g.json {
        super::print_json(&serde_json::json!({"message_type": "summary", "removed": n}))?;
    } else {
        g.say(format!("removed {n} lock(s)"));
    }
    Ok(super::exit::OK)
}
