//! cairn: declarative backups for self-hosters, in the restic repository format.
//!
//! This file only parses arguments and maps errors to exit codes; each verb lives in
//! `cli/<verb>.rs` as a thin shell over a `cairn-repo` call.

mod cli;
mod config;
mod daemon;
mod databases;
mod history;
mod hooks;
mod import;
mod metrics;
mod notify;
mod ops;
mod run;
mod schedule;
mod signals;
mod sources;
mod systemd;
mod units;
mod web;

use std::process::ExitCode;

fn main() -> ExitCode {
    bound_malloc_caching();
    quiet_broken_pipe();
    cli::run()
}

/// `cairn ls latest | head`: when the reader of our output goes away, stop quietly like
/// other Unix tools (removing any lock we hold), instead of reporting a panic. SIGPIPE
/// stays ignored so a dead ssh or dump child is an error we handle, not a silent death.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            cairn_repo::lock::release_all_held();
            std::process::exit(141);
        }
        default(info)
    }));
}

/// Big buffers (packs, chunks) go straight to mmap and back to the kernel when freed.
/// glibc otherwise raises its mmap threshold after the first large free and keeps later
/// pack-sized buffers in its heaps, where freed memory is not returned: peak RSS then
/// depends on allocation order. A fixed threshold keeps memory bounded and repeatable.
/// 1 MiB, not less: a directory of 1,000 files has a parent tree, its nodes and the new
/// tree of 300-500 KiB each, and every mmap'd buffer is fresh pages the kernel faults in
/// one by one (at 256 KiB a no-change rerun over 200,000 files took 71k page faults and
/// 0.85-0.92 s; at 1 MiB 35k and 0.76-0.78 s, peak RSS equal; `perf stat -e page-faults`).
/// At most 8 heaps: a backup runs about that many busy threads (two walkers, two file
/// workers, the tree finisher, uploaders, main). With 4, threads shared heaps by glibc's
/// round robin and, depending on which ones did, a no-change rerun over 200,000 files took
/// 0.95-1.02 s instead of 0.60 in a third of the runs, its walkers waiting on the heap
/// lock (`perf record --call-graph dwarf`: `__lll_lock_wait_private` under malloc); with 8,
/// 0.58-0.62 s in 10 of 10 runs, peak RSS equal (66.4 MB), backup and restore unchanged.
fn bound_malloc_caching() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 8);
    }
}
