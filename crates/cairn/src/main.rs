//! cairn: declarative backups for self-hosters, in the restic repository format.
//!
//! This file only parses arguments and maps errors to exit codes; each verb lives in
//! `cli/<verb>.rs` as a thin shell over a `cairn-repo` call.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
