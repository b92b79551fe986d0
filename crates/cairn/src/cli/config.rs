//! `cairn config check|show|schema`: validate, print the merged config, print its schema.

use super::GlobalOpts;
use crate::config::{self, LoadOptions};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Report every problem in the configuration, with file, line, column and a fix
    Check {
        /// Check the text only: do not look for password files, env files and source
        /// paths on this machine (for a config written for another machine)
        #[arg(long)]
        offline: bool,
    },
    /// Print the merged configuration (all files), secrets redacted
    Show {
        #[arg(long)]
        offline: bool,
    },
    /// Print the JSON Schema of cairn.toml, for editors (e.g. taplo, VS Code Even Better TOML)
    Schema,
}

/// Loads the config for any command that needs it, printing warnings.
pub fn load(g: &GlobalOpts, offline: bool) -> Result<config::Config> {
    let path = g.config_path();
    match config::load(&path, LoadOptions { offline }) {
        Ok((c, warnings)) => {
            if !g.quiet {
                for w in warnings {
                    eprintln!("{w}");
                }
            }
            Ok(c)
        }
        Err(problems) => Err(anyhow::Error::new(problems)),
    }
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    match &a.cmd {
        Cmd::Check { offline } => {
            let path = g.config_path();
            let result = config::load(&path, LoadOptions { offline: *offline });
            let (ok, problems, summary) = match &result {
                Ok((c, w)) => (
                    true,
                    w.clone(),
                    format!(
                        "{}: OK ({} file(s); {} repositories, {} sources, {} plans)",
                        path.display(),
                        c.files.len(),
                        c.repositories.len(),
                        c.sources.len(),
                        c.plans.len()
                    ),
                ),
                Err(p) => (
                    false,
                    p.0.clone(),
                    format!(
                        "{} error(s) in the configuration",
                        p.0.iter().filter(|d| !d.warning).count()
                    ),
                ),
            };
            if g.json {
                super::print_json(&serde_json::json!({
                    "ok": ok,
                    "file": path,
                    "problems": problems,
                }))?;
            } else {
                for d in &problems {
                    eprintln!("{d}");
                }
                if ok {
                    println!("{summary}");
                } else {
                    eprintln!("{summary}");
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
        Cmd::Show { offline } => {
            let c = crate::ops::config::redacted(&load(g, *offline)?);
            if g.json {
                super::print_json(&c)?;
            } else {
                let text = toml::to_string_pretty(&c)
                    .or_else(|_| serde_json::to_string_pretty(&c).map_err(|e| e.to_string()))
                    .map_err(|e| anyhow::anyhow!("cannot print the config: {e}"))?;
                print!("{text}");
            }
            Ok(0)
        }
        Cmd::Schema => {
            let schema = schemars::schema_for!(config::raw::File);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
    }
}
