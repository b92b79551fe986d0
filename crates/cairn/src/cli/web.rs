//! `cairn web`: the web UI alone (for machines that run plans from systemd timers), and
//! `cairn web hash-password`.

use super::GlobalOpts;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<WebCmd>,
}

#[derive(clap::Subcommand, Debug)]
pub enum WebCmd {
    /// Read a password on stdin and print its argon2id hash, for a user's password-hash-file
    HashPassword,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    match a.cmd {
        Some(WebCmd::HashPassword) => crate::web::auth::hash_password_command(),
        None => {
            let config = Arc::new(super::config::load(g, false)?);
            let stop = Arc::new(AtomicBool::new(false));
            crate::cli::signals::flag_on_stop(stop.clone())?;
            // Triggered operations run as `cairn run` children with this same config.
            let jobs = crate::ops::jobs::Jobs::standalone(g.config_path(), stop.clone())?;
            let server = crate::web::serve(config, jobs, stop.clone())?;
            let _ = server.join();
            stop.store(true, Ordering::Relaxed);
            Ok(0)
        }
    }
}
