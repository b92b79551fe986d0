//! `cairn snapshots`: a table (optionally grouped by host/paths/tags) or `--json`.

use super::GlobalOpts;
use anyhow::Result;
use cairn_repo::snapshot::{Filter, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub plan: super::PlanArg,
    /// Snapshot ids to show (default: all)
    pub ids: Vec<String>,
    /// Only snapshots of this host
    #[arg(short = 'H', long)]
    pub host: Vec<String>,
    /// Only snapshots with exactly these paths
    #[arg(long)]
    pub path: Vec<String>,
    /// Only snapshots with these tags (comma-separated: all of them)
    #[arg(long)]
    pub tag: Vec<String>,
    /// Group by any of host, paths, tags (comma-separated)
    #[arg(short, long, default_value = "")]
    pub group_by: String,
    /// Only the last N snapshots of each group
    #[arg(long)]
    pub latest: Option<usize>,
}

#[derive(Serialize)]
struct JsonSnapshot<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    id: String,
    short_id: String,
}

fn group_key(by: &[&str], s: &Snapshot) -> BTreeMap<&'static str, serde_json::Value> {
    let mut k = BTreeMap::new();
    for b in by {
        match *b {
            "host" => {
                k.insert("hostname", s.hostname.clone().into());
            }
            "paths" => {
                let mut p = s.paths.clone();
                p.sort();
                k.insert("paths", p.into());
            }
            "tags" => {
                let mut t = s.tags.clone();
                t.sort();
                k.insert("tags", t.into());
            }
            _ => {}
        }
    }
    k
}

pub fn run(g: &GlobalOpts, a: &Args) -> Result<u8> {
    let g = &a.plan.globals(g)?;
    let by: Vec<&str> = a.group_by.split(',').filter(|s| !s.is_empty()).collect();
    for b in &by {
        anyhow::ensure!(
            ["host", "paths", "tags"].contains(b),
            "unknown --group-by {b:?}: use host, paths, tags or a comma-separated list"
        );
    }
    let repo = g.open()?;
    let filter = Filter {
        hosts: a.host.clone(),
        paths: a.path.clone(),
        tags: a.plan.tags(&a.tag),
    };
    let all = if a.ids.is_empty() {
        Snapshot::load_all(&repo)?
            .into_iter()
            .filter(|s| filter.matches(s))
            .collect()
    } else {
        a.ids
            .iter()
            .map(|i| {
                let s = Snapshot::find(&repo, i, &filter)?;
                a.plan.check(&s)?;
                Ok(s)
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut groups: Vec<(BTreeMap<&'static str, serde_json::Value>, Vec<Snapshot>)> = Vec::new();
    for s in all {
        let k = group_key(&by, &s);
        match groups.iter_mut().find(|(gk, _)| *gk == k) {
            Some((_, v)) => v.push(s),
            None => groups.push((k, vec![s])),
        }
    }
    if let Some(n) = a.latest {
        for (_, v) in &mut groups {
            let drop = v.len().saturating_sub(n);
            v.drain(..drop);
        }
    }
    let to_json = |v: &'_ [Snapshot]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|s| {
                serde_json::to_value(JsonSnapshot {
                    snapshot: s,
                    id: s.id.to_hex(),
                    short_id: s.id.short(),
                })
                .unwrap_or_default()
            })
            .collect()
    };
    if g.json {
        if by.is_empty() {
            let flat: Vec<serde_json::Value> =
                groups.iter().flat_map(|(_, v)| to_json(v)).collect();
            super::print_json(&flat)?;
        } else {
            let out: Vec<serde_json::Value> = groups
                .iter()
                .map(|(k, v)| serde_json::json!({"group_key": k, "snapshots": to_json(v)}))
                .collect();
            super::print_json(&out)?;
        }
        return Ok(super::exit::OK);
    }
    let mut total = 0;
    for (k, v) in &groups {
        if !by.is_empty() {
            let desc: Vec<String> = k
                .iter()
                .map(|(name, val)| format!("{name} [{}]", value_text(val)))
                .collect();
            println!("snapshots for ({}):", desc.join(", "));
        }
        print_table(v);
        total += v.len();
    }
    println!("{total} snapshots");
    Ok(super::exit::OK)
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn print_table(v: &[Snapshot]) {
    let host_w = v.iter().map(|s| s.hostname.len()).max().unwrap_or(4).max(4);
    let tags_w = v
        .iter()
        .map(|s| s.tags.join(",").len())
        .max()
        .unwrap_or(4)
        .max(4);
    let header = format!(
        "{:<8}  {:<19}  {:<host_w$}  {:<tags_w$}  Paths",
        "ID", "Time", "Host", "Tags"
    );
    let rule = "-".repeat(header.len() + 20);
    println!("{header}\n{rule}");
    for s in v {
        let mut paths = s.paths.iter();
        println!(
            "{:<8}  {:<19}  {:<host_w$}  {:<tags_w$}  {}",
            s.id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            s.hostname,
            s.tags.join(","),
            paths.next().map(String::as_str).unwrap_or("")
        );
        for p in paths {
            println!(
                "{:<8}  {:<19}  {:<host_w$}  {:<tags_w$}  {p}",
                "", "", "", ""
            );
        }
    }
    println!("{rule}");
}
