//! `cairn forget`: remove snapshots by id or by a retention policy (restic's flags and
//! results), optionally followed by a prune.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::backend::FileType;
use cairn_repo::forget::{self, Duration, GroupBy, Policy};
use cairn_repo::snapshot::{Filter, Snapshot};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    /// Snapshots to forget (instead of a policy)
    pub snapshots: Vec<String>,
    /// Keep the last N snapshots (-1 or "unlimited": all)
    #[arg(short = 'l', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<String>,
    /// Keep the last N hourly snapshots
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<String>,
    /// Keep the last N daily snapshots
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<String>,
    /// Keep the last N weekly snapshots
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<String>,
    /// Keep the last N monthly snapshots
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<String>,
    /// Keep the last N yearly snapshots
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<String>,
    /// Keep snapshots newer than DURATION (e.g. 1y5m7d2h) before the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with these tags (comma-separated: all of them; repeatable)
    #[arg(long)]
    pub keep_tag: Vec<String>,
    /// Only snapshots of this host
    #[arg(long)]
    pub host: Vec<String>,
    /// Only snapshots with these tags
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only snapshots with exactly these paths
    #[arg(long)]
    pub path: Vec<String>,
    /// Group by host, paths and/or tags (comma-separated; "" for one group)
    #[arg(short = 'g', long, default_value = "host,paths")]
    pub group_by: String,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    /// Allow a policy that removes every snapshot of a group
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub prune_opts: PruneFlags,
}

/// prune's options, for `forget --prune`.
#[derive(clap::Args, Debug)]
pub struct PruneFlags {
    /// (with --prune) unused space to tolerate
    #[arg(long, default_value = "5%")]
    pub max_unused: String,
    /// (with --prune) repack at most this much
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
}

fn count(flag: &str, v: &Option<String>) -> Result<Option<u32>> {
    match v.as_deref() {
        None => Ok(None),
        // -1 is restic's (>= 0.16) spelling of "unlimited".
        Some("unlimited" | "-1") => Ok(Some(u32::MAX)),
        Some(s) => s.parse::<u32>().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "--{flag} {s:?}: give a number from 0 to {}, or -1 or \"unlimited\" for all",
                u32::MAX - 1
            )
        }),
    }
}

fn duration(v: &Option<String>) -> Result<Duration> {
    Ok(match v {
        Some(s) => Duration::parse(s)?,
        None => Duration::default(),
    })
}

#[derive(Serialize)]
struct JsonSnap<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    id: String,
    short_id: String,
}

fn js(v: &[Snapshot]) -> Vec<JsonSnap<'_>> {
    v.iter()
        .map(|s| JsonSnap {
            snapshot: s,
            id: s.id.to_hex(),
            short_id: s.id.short(),
        })
        .collect()
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let g = &a.plan.globals(g)?;
    let policy = Policy {
        last: count("keep-last", &a.keep_last)?,
        hourly: count("keep-hourly", &a.keep_hourly)?,
        daily: count("keep-daily", &a.keep_daily)?,
        weekly: count("keep-weekly", &a.keep_weekly)?,
        monthly: count("keep-monthly", &a.keep_monthly)?,
        yearly: count("keep-yearly", &a.keep_yearly)?,
        within: duration(&a.keep_within)?,
        within_hourly: duration(&a.keep_within_hourly)?,
        within_daily: duration(&a.keep_within_daily)?,
        within_weekly: duration(&a.keep_within_weekly)?,
        within_monthly: duration(&a.keep_within_monthly)?,
        within_yearly: duration(&a.keep_within_yearly)?,
        tags: a
            .keep_tag
            .iter()
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect(),
    };
    let group_by = GroupBy::parse(&a.group_by)?;
    if policy.is_empty() && a.snapshots.is_empty() {
        anyhow::bail!(
            "nothing to do: give a policy (--keep-last, --keep-daily, --keep-within, ...) or snapshot ids"
        );
    }
    if !policy.is_empty() && !a.snapshots.is_empty() {
        anyhow::bail!("give either snapshot ids or a policy, not both");
    }
    let repo = g.open()?;
    let _lock = g.lock(&repo, !a.dry_run)?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.plan.tags(&a.tag),
    };
    let mut remove: Vec<Snapshot> = Vec::new();
    let mut json_groups = Vec::new();
    if !a.snapshots.is_empty() {
        for s in &a.snapshots {
            let s = Snapshot::find(&repo, s, &Filter::default())?;
            a.plan.check(&s)?;
            remove.push(s);
        }
    } else {
        let all: Vec<Snapshot> = Snapshot::load_all(&repo)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect();
        for (key, list) in forget::group(all, group_by) {
            let d = forget::apply(list, &policy);
            if d.keep.is_empty() && !d.remove.is_empty() && !a.force {
                anyhow::bail!(
                    "this policy would remove all {} snapshots of host {:?}, paths {:?}, tags {:?}; check it with --dry-run, and add --force if you really mean it",
                    d.remove.len(),
                    key.host,
                    key.paths,
                    key.tags
                );
            }
            if g.json {
                json_groups.push(serde_json::json!({
                    "host": key.host,
                    "paths": key.paths,
                    "tags": key.tags,
                    "keep": js(&d.keep),
                    "remove": js(&d.remove),
                    "reasons": d.reasons,
                }));
            } else {
                let mut what = Vec::new();
                if group_by.host {
                    what.push(format!("host [{}]", key.host));
                }
                if group_by.paths {
                    what.push(format!("paths [{}]", key.paths.join(", ")));
                }
                if group_by.tags {
                    what.push(format!("tags [{}]", key.tags.join(", ")));
                }
                if !what.is_empty() {
                    g.say(format!("snapshots for ({}):", what.join(", ")));
                }
                g.say(format!("keep {} snapshots:", d.keep.len()));
                if !g.quiet {
                    for r in &d.reasons {
                        println!(
                            "  {}  {}  {:<12} {}",
                            r.snapshot.id.short(),
                            r.snapshot.time.format("%Y-%m-%d %H:%M:%S"),
                            r.snapshot.hostname,
                            r.matches.join(", ")
                        );
                    }
                }
                if !d.remove.is_empty() {
                    g.say(format!("remove {} snapshots:", d.remove.len()));
                    if !g.quiet {
                        super::snapshots::print_table(&d.remove);
                    }
                }
            }
            remove.extend(d.remove);
        }
    }
    if g.json && !json_groups.is_empty() {
        super::print_json(&json_groups)?;
    }
    if a.dry_run {
        g.say(format!(
            "dry run: {} snapshots would be removed",
            remove.len()
        ));
        return Ok(super::exit::OK);
    }
    for s in &remove {
        repo.backend().remove(FileType::Snapshot, &s.id.to_hex())?;
    }
    if !g.json {
        g.say(format!("removed {} snapshots", remove.len()));
    }
    crate::run::protocol::emit(&crate::run::protocol::Message::Summary(
        crate::run::protocol::Summary {
            other: [(
                "snapshots_removed".to_string(),
                (remove.len() as u64).into(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        },
    ));
    if a.prune && !remove.is_empty() {
        drop(_lock);
        let opts = cairn_repo::prune::PruneOptions {
            max_unused: cairn_repo::prune::MaxUnused::parse(&a.prune_opts.max_unused)?,
            max_repack_bytes: match &a.prune_opts.max_repack_size {
                Some(s) => Some(
                    cairn_repo::exclude::parse_size(s)
                        .map_err(|e| anyhow::anyhow!("--max-repack-size {s:?}: {e}"))?,
                ),
                None => None,
            },
            ..Default::default()
        };
        return super::prune::run_on(g, &repo, &opts, false);
    }
    Ok(super::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_minus_one_and_unlimited_as_all() {
        for v in ["-1", "unlimited"] {
            assert_eq!(count("keep-last", &Some(v.into())).unwrap(), Some(u32::MAX));
        }
        assert_eq!(count("keep-last", &Some("7".into())).unwrap(), Some(7));
        for v in ["-2", "4294967296", "", "1.5", "٣"] {
            let e = count("keep-last", &Some(v.into())).unwrap_err().to_string();
            assert!(e.contains("-1"), "{v}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_counts_and_durations_never_panic(v in "\\PC{0,24}") {
            let _ = count("keep-last", &Some(v.clone()));
            let _ = duration(&Some(v));
        }
    }
}
