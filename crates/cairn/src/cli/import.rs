//! `cairn import autorestic|backrest|resticprofile FILE [--output DIR]`: write a cairn
//! config (cairn.toml, conf.d/, secrets/) from another restic tool's config, and report
//! what could not be carried over.

use super::GlobalOpts;
use crate::import;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tool whose config FILE is
    #[arg(value_enum)]
    pub tool: Tool,
    /// Its config: .autorestic.yml, Backrest's config.json, resticprofile's profiles.toml
    /// (or .yaml/.json)
    pub file: PathBuf,
    /// Directory to write cairn.toml, conf.d/ and secrets/ into (created if missing; no
    /// existing file is overwritten)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub output: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Tool {
    Autorestic,
    Backrest,
    Resticprofile,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let text = import::read_input(&a.file).map_err(anyhow::Error::msg)?;
    let imported = match a.tool {
        Tool::Autorestic => import::autorestic::import(&text, &a.file),
        Tool::Backrest => import::backrest::import(&text, &a.file),
        Tool::Resticprofile => import::resticprofile::import(&text, &a.file),
    }
    .map_err(anyhow::Error::msg)?;
    if imported.fragments.iter().all(|f| f.paths.is_empty()) {
        let why: Vec<String> = imported
            .report
            .not_carried_over
            .iter()
            .take(10)
            .map(|n| format!("\n  {}: {}", n.key, n.reason))
            .collect();
        bail!(
            "{}: no location, plan or profile to import (nothing written){}",
            a.file.display(),
            why.concat()
        );
    }
    let mut report = import::write(imported, &a.output).map_err(anyhow::Error::msg)?;
    // One line per key, in the order met.
    let mut seen = std::collections::HashSet::new();
    report
        .not_carried_over
        .retain(|n| seen.insert((n.key.clone(), n.reason.clone())));
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    for f in &report.written {
        let what = if report.secrets.contains(f) {
            " (secret, mode 0600)"
        } else {
            ""
        };
        println!("wrote {}{what}", a.output.join(f).display());
    }
    if !report.notes.is_empty() {
        println!("\nCarried over differently:");
        for n in &report.notes {
            println!("  {}: {}", n.key, n.reason);
        }
    }
    if report.not_carried_over.is_empty() {
        println!("\nEverything was carried over.");
    } else {
        println!("\nNot carried over:");
        for n in &report.not_carried_over {
            println!("  {}: {}", n.key, n.reason);
        }
    }
    println!(
        "\nNext: cairn --config {} config check",
        a.output.join("cairn.toml").display()
    );
    Ok(0)
}
