//! `cairn run PLAN`, `cairn status`, `cairn history`: plans from the config, and what
//! they did.

use super::GlobalOpts;
use crate::config::Config;
use crate::history::{History, Outcome, Record};
use crate::run::{RunFlags, Runner};
use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Plans to run (see `cairn status`)
    pub plans: Vec<String>,
    /// Run every plan
    #[arg(long)]
    pub all: bool,
    /// Prune now, even if not due
    #[arg(long)]
    pub force_prune: bool,
    /// Check now, even if not due
    #[arg(long)]
    pub force_check: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Only this plan
    pub plan: Option<String>,
    /// How many runs
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Show each run's steps too
    #[arg(long)]
    pub steps: bool,
    /// Print the log of one run (its id from the list)
    #[arg(long, value_name = "RUN_ID")]
    pub log: Option<i64>,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {}

#[derive(clap::Args, Debug)]
pub struct SystemdArgs {
    #[command(subcommand)]
    pub cmd: SystemdCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum SystemdCmd {
    /// Write cairn-PLAN.service and cairn-PLAN.timer for every plan with a schedule
    Generate {
        /// Where to write the units
        #[arg(long, default_value = "/etc/systemd/system")]
        dir: std::path::PathBuf,
    },
}

pub fn daemon(g: &GlobalOpts, _a: &DaemonArgs) -> Result<u8> {
    let c = super::config::load(g, false)?;
    crate::daemon::run(c)?;
    Ok(0)
}

pub fn systemd(g: &GlobalOpts, a: &SystemdArgs) -> Result<u8> {
    let SystemdCmd::Generate { dir } = &a.cmd;
    let c = super::config::load(g, true)?;
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let config_path = std::path::absolute(g.config_path())?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for p in c.plans.values() {
        let Some(timer) = crate::systemd::timer(p) else {
            eprintln!(
                "plan {}: no schedule, no timer (run it with `cairn run {}`)",
                p.name, p.name
            );
            continue;
        };
        let name = crate::systemd::unit_name(&p.name);
        for (ext, text) in [
            (
                "service",
                crate::systemd::service(&c, p, &exe, &config_path),
            ),
            ("timer", timer),
        ] {
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    if g.json {
        super::print_json(&written)?;
    } else {
        for w in &written {
            println!("wrote {}", w.display());
        }
        if !written.is_empty() {
            println!(
                "now: systemctl daemon-reload && systemctl enable --now {}",
                c.plans
                    .values()
                    .filter(|p| p.schedule.is_some())
                    .map(|p| format!("{}.timer", crate::systemd::unit_name(&p.name)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    Ok(0)
}

pub fn open_history(c: &Config) -> Result<History> {
    History::open(&c.settings.state_dir)
}

fn pick<'c>(c: &'c Config, names: &[String], all: bool) -> Result<Vec<&'c crate::config::Plan>> {
    if all {
        return Ok(c.plans.values().collect());
    }
    anyhow::ensure!(
        !names.is_empty(),
        "which plan? give its name or --all (plans: {})",
        c.plans.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    names
        .iter()
        .map(|n| {
            c.plans.get(n).ok_or_else(|| {
                let hint = crate::config::closest(n, c.plans.keys().map(String::as_str))
                    .map(|s| format!(" — did you mean `{s}`?"))
                    .unwrap_or_default();
                anyhow::anyhow!(
                    "no plan `{n}` in the configuration{hint} (plans: {})",
                    c.plans.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect()
}

pub fn run(g: &GlobalOpts, a: &RunArgs) -> Result<u8> {
    let c = super::config::load(g, false)?;
    let plans = pick(&c, &a.plans, a.all)?;
    let history = open_history(&c)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Ctrl-C or SIGTERM: the child cairn gets it too and removes its lock; we stop
    // starting steps and still run the failure and finally hooks.
    super::signals::flag_on_stop(stop.clone())?;
    let child: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    {
        let child = child.clone();
        crate::run::forward_stop(stop.clone(), move || {
            child.lock().ok().and_then(|c| *c).into_iter().collect()
        });
    }
    let runner = Runner {
        config: &c,
        history: &history,
        exe: std::env::current_exe().context("cannot find the cairn executable")?,
        stop,
        child,
        echo: !g.quiet,
    };
    let flags = RunFlags {
        force_prune: a.force_prune,
        force_check: a.force_check,
        now: None,
    };
    let mut worst = 0u8;
    let mut reports = Vec::new();
    for p in plans {
        let r = runner.run(p, &flags)?;
        let code = match r.outcome {
            Outcome::Success => 0,
            Outcome::Warning => 3,
            Outcome::Interrupted => 130,
            // Another run of the plan holds its lock: restic's "already locked".
            Outcome::Skipped => 11,
            _ => 1,
        };
        if code == 130 || (worst != 130 && code == 1) || worst == 0 {
            worst = worst.max(code);
        }
        if g.json {
            reports.push(serde_json::json!({
                "plan": p.name,
                "run_id": r.run_id,
                "result": r.outcome,
                "error_category": r.category,
                "error": r.error,
                "snapshot_id": r.backup.snapshot_id,
                "files_processed": r.backup.files_processed,
                "bytes_processed": r.backup.bytes_processed,
                "bytes_added": r.backup.bytes_added,
                "duration_seconds": r.duration.as_secs_f64(),
                "log": r.log,
            }));
        }
        if matches!(r.outcome, Outcome::Interrupted) {
            break;
        }
    }
    if g.json {
        super::print_json(&reports)?;
    }
    Ok(worst)
}

#[derive(Serialize)]
struct PlanStatus {
    plan: String,
    repository: String,
    schedule: Option<String>,
    last_run: Option<Record>,
    last_success: Option<f64>,
    next_run: Option<String>,
    last_check_success: Option<f64>,
    overdue: bool,
}

fn when(t: Option<f64>) -> String {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
        .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "never".into())
}

pub fn status(g: &GlobalOpts, _a: &StatusArgs) -> Result<u8> {
    let c = super::config::load(g, true)?;
    let history = open_history(&c)?;
    let now = Utc::now();
    let mut rows = Vec::new();
    for (name, p) in &c.plans {
        let last_run = history.last(name, "run")?;
        let last_success = history.last_ok(name, "backup")?.map(|r| r.started);
        let overdue = p
            .max_age
            .is_some_and(|m| crate::run::overdue(m, last_success, now.timestamp() as f64));
        rows.push(PlanStatus {
            plan: name.clone(),
            repository: p.repository.clone(),
            schedule: p.schedule.as_ref().map(|s| s.to_string()),
            last_run,
            last_success,
            next_run: p
                .schedule
                .as_ref()
                .and_then(|s| s.next_after(&now.with_timezone(&Local)))
                .map(|t| t.to_rfc3339()),
            last_check_success: history
                .last_ok_on_repository(&p.repository, "check")?
                .map(|r| r.started),
            overdue,
        });
    }
    if g.json {
        super::print_json(&rows)?;
        return Ok(0);
    }
    println!(
        "{:<16} {:<12} {:<17} {:<12} {:>9} {:>10}  {:<17} {:<17} {:<17}",
        "plan",
        "repository",
        "last run",
        "result",
        "duration",
        "added",
        "last success",
        "next run",
        "last check"
    );
    for r in &rows {
        let (started, result, dur, added) = match &r.last_run {
            Some(l) => (
                when(Some(l.started)),
                match (&l.error_category, l.result) {
                    (Some(c), Outcome::Failure) => format!("failed:{c}"),
                    (_, o) => o.as_str().to_string(),
                },
                l.duration()
                    .map(|d| format!("{:.1}s", d.as_secs_f64()))
                    .unwrap_or_default(),
                l.bytes_added.map(super::format_bytes).unwrap_or_default(),
            ),
            None => ("never".into(), "-".into(), String::new(), String::new()),
        };
        let next = r
            .next_run
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "manual".into());
        println!(
            "{:<16} {:<12} {:<17} {:<12} {:>9} {:>10}  {:<17} {:<17} {:<17}{}",
            r.plan,
            r.repository,
            started,
            result,
            dur,
            added,
            when(r.last_success),
            next,
            when(r.last_check_success),
            if r.overdue { "  OVERDUE" } else { "" }
        );
    }
    Ok(if rows.iter().any(|r| r.overdue) { 1 } else { 0 })
}

pub fn history(g: &GlobalOpts, a: &HistoryArgs) -> Result<u8> {
    let c = super::config::load(g, true)?;
    let h = open_history(&c)?;
    if let Some(id) = a.log {
        match h.log(id)? {
            Some(l) => print!("{l}"),
            None => anyhow::bail!("run {id} has no log (see `cairn history` for run ids)"),
        }
        return Ok(0);
    }
    let runs = h.list(a.plan.as_deref(), a.limit, false)?;
    if g.json {
        let mut out = Vec::new();
        for r in &runs {
            let mut v = serde_json::to_value(r)?;
            if a.steps {
                v["steps"] = serde_json::to_value(h.steps(r.id)?)?;
            }
            out.push(v);
        }
        super::print_json(&out)?;
        return Ok(0);
    }
    println!(
        "{:>6} {:<16} {:<17} {:<12} {:>9} {:>10} {:<10} error",
        "id", "plan", "started", "result", "duration", "added", "snapshot"
    );
    for r in &runs {
        let line = |r: &Record, indent: &str| {
            println!(
                "{:>6} {:<16} {:<17} {:<12} {:>9} {:>10} {:<10} {}",
                r.id,
                format!(
                    "{indent}{}",
                    if indent.is_empty() {
                        &r.plan
                    } else {
                        &r.operation
                    }
                ),
                when(Some(r.started)),
                r.result.as_str(),
                r.duration()
                    .map(|d| format!("{:.1}s", d.as_secs_f64()))
                    .unwrap_or_default(),
                r.bytes_added.map(super::format_bytes).unwrap_or_default(),
                r.snapshot_id
                    .as_deref()
                    .map(|s| &s[..s.len().min(8)])
                    .unwrap_or(""),
                match (&r.error_category, &r.error) {
                    (Some(c), Some(e)) => format!("[{c}] {e}"),
                    (None, Some(e)) => e.clone(),
                    _ => String::new(),
                }
            )
        };
        line(r, "");
        if a.steps {
            for s in h.steps(r.id)? {
                line(&s, "  ");
            }
        }
    }
    Ok(0)
}
