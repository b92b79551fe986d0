//! cairn: declarative backups for self-hosters, in the restic repository format.
//!
//! This file only parses arguments and maps errors to exit codes; each verb lives in
//! `cli/<verb>.rs` as a thin shell over a `cairn-repo` call.

mod cli;
mod config;
mod daemon;
mod history;
mod hooks;
mod metrics;
mod notify;
mod run;
mod schedule;
mod sources;
mod systemd;

use std::process::ExitCode;

fn main() -> ExitCode {
    bound_malloc_caching();
    cli::run()
}

/// Big buffers (packs, chunks) go straight to mmap and back to the kernel when freed.
/// glibc otherwise raises its mmap threshold after the first large free and keeps later
/// pack-sized buffers in its heaps, where freed memory is not returned: peak RSS then
/// depends on allocation order. A fixed threshold keeps memory bounded and repeatable.
fn bound_malloc_caching() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
