//! Ctrl-C and SIGTERM. A repository command removes the lock files it holds and exits
//! (130 for SIGINT, 143 for SIGTERM, like a shell reports them), so an interrupted cairn
//! never leaves a lock behind; what it wrote so far is unreferenced and harmless (`prune`
//! reclaims it). `cairn run` and the daemon only raise a flag and stop between steps.

use anyhow::Result;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Removes held locks and exits on SIGINT, SIGTERM or SIGHUP.
pub fn release_locks_on_stop() -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let n = cairn_repo::lock::release_all_held();
                let what = match sig {
                    SIGINT => "interrupted",
                    _ => "terminated",
                };
                if n > 0 {
                    eprintln!("{what}: removed {n} lock(s); nothing written so far is referenced");
                } else {
                    eprintln!("{what}");
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// Sets `flag` on SIGINT or SIGTERM (a second one exits at once).
pub fn flag_on_stop(flag: Arc<AtomicBool>) -> Result<()> {
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}
