//! `cairn check [--read-data | --read-data-subset n/m|P%]`.

use super::progress::{elapsed, Ticker};
use super::{exit, format_bytes, GlobalOpts};
use crate::history::Category;
use crate::run::protocol;
use anyhow::Result;
use cairn_repo::check::{self, Progress, ReadData};
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read and verify all data
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a subset of the data: n/m or a percentage like 5%
    #[arg(long)]
    pub read_data_subset: Option<String>,
    /// Use the local cache of a remote repository (by default check reads everything from
    /// the repository itself, like restic, so a good cache cannot hide a damaged file)
    #[arg(long)]
    pub with_cache: bool,
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let read = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::parse_subset(s)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let g = &GlobalOpts {
        no_cache: g.no_cache || !a.with_cache,
        ..g.clone()
    };
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    g.say("checking repository structure and snapshots");
    let progress = Arc::new(Progress::default());
    let ticker = {
        let p = progress.clone();
        Ticker::start(g.progress() && read != ReadData::None, move |t| {
            format!(
                "[{}] {} / {} packs read",
                elapsed(t),
                p.packs_done.load(Ordering::Relaxed),
                p.packs_total.load(Ordering::Relaxed)
            )
        })
    };
    let status = {
        let p = progress.clone();
        // Packs read, in the files fields: check has no files of its own.
        protocol::StatusTicker::start(move |t| {
            protocol::status_of(
                t,
                (
                    p.packs_done.load(Ordering::Relaxed),
                    p.packs_total.load(Ordering::Relaxed),
                ),
                (0, 0),
                0,
            )
        })
    };
    let report = check::check(&repo, read, &progress);
    drop(ticker);
    drop(status);
    let report = report?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "summary".into();
        v["ok"] = report.ok().into();
        super::print_json(&v)?;
    } else {
        for w in &report.warnings {
            g.say(format!("warning: {w}"));
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if report.packs_read > 0 {
            g.say(format!(
                "read {} packs ({})",
                report.packs_read,
                format_bytes(report.bytes_read)
            ));
        }
    }
    if report.ok() {
        g.say(format!(
            "no errors were found ({} snapshots, {} trees, {} packs)",
            report.snapshots, report.trees, report.packs
        ));
        protocol::emit(&protocol::Message::Summary(protocol::Summary {
            other: [
                ("snapshots", report.snapshots as u64),
                ("trees", report.trees as u64),
                ("packs", report.packs as u64),
                ("packs_read", report.packs_read as u64),
                ("bytes_read", report.bytes_read),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect(),
            ..Default::default()
        }));
        Ok(exit::OK)
    } else {
        let msg = format!(
            "repository contains errors ({} found); see above",
            report.errors.len()
        );
        eprintln!("Fatal: {msg}");
        protocol::exit_error(exit::FAILURE.into(), Category::CorruptData, msg);
        Ok(exit::FAILURE)
    }
}
