//! `cairn run PLAN`, `cairn status`, `cairn history`: plans from the config, and what
//! they did.

use super::GlobalOpts;
use crate::config::Config;
use crate::history::{History, Outcome, Record};
use crate::run::{RunFlags, Runner};
use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Plans to run (see `cairn status`)
    pub plans: Vec<String>,
    /// Run every plan
    #[arg(long)]
    pub all: bool,
    /// Stop at the first plan that does not succeed: the plans after it are not run
    /// (without it, every plan runs and the exit status is the worst)
    #[arg(long)]
    pub fail_fast: bool,
    /// Prune now, even if not due
    #[arg(long)]
    pub force_prune: bool,
    /// Check now, even if not due
    #[arg(long)]
    pub force_check: bool,
    /// Run only this step of the plan, now, whatever its schedule: check, prune or
    /// restore-test (no backup, no hooks)
    #[arg(long, value_name = "STEP", value_parser = ["check", "prune", "restore-test"])]
    pub only: Option<String>,
    /// Write the runner's progress events as JSON lines on stdout (how `cairn web`
    /// follows the runs it starts)
    #[arg(long, hide = true)]
    pub events: bool,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Also open every repository: size, snapshots, hosts, last snapshot
    #[arg(long)]
    pub repositories: bool,
    /// Notify each plan with no successful backup within its max-age, or no successful
    /// restore test within its restore-test max-age, once per overdue episode (a later
    /// success re-arms it); exit 1 while any plan is overdue. For systemd timer users:
    /// `cairn systemd generate` runs it hourly (cairn-alert.timer)
    #[arg(long, conflicts_with = "repositories")]
    pub alert: bool,
}

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

/// How long the daemon stays quiet about the same config failure it already notified:
/// under systemd's `Restart=` each start of a daemon whose config is broken records the
/// failure, but one message an hour is enough for a person to act on.
const CONFIG_FAILURE_RENOTIFY: std::time::Duration = std::time::Duration::from_secs(3600);

/// `cairn daemon`. A config that does not load is recorded (a failed run of plan "-",
/// category config) and notified where `[settings]` can be read, like `cairn run`; then the
/// daemon exits non-zero. A unit running it is expected to say `Restart=on-failure` with a
/// `RestartSec=` of minutes: systemd starts it again later and a fixed config is picked
/// up by that start (the same failure is notified again only after
/// [`CONFIG_FAILURE_RENOTIFY`]).
pub fn daemon(g: &GlobalOpts, _a: &DaemonArgs) -> Result<u8> {
    // Offline: a repository whose password file or env-file cannot be read (a disk that is
    // away) fails only its own plans when they run (recorded, notified); it must not keep
    // the daemon, and the healthy plans, from starting. `config check` still probes.
    let c = match super::config::load(g, true) {
        Ok(c) => c,
        Err(e) => {
            let e = e.context("cairn daemon cannot start");
            record_config_failure(g, &e, Some(CONFIG_FAILURE_RENOTIFY));
            return Err(e);
        }
    };
    crate::daemon::run(c)?;
    Ok(0)
}

pub fn systemd(g: &GlobalOpts, a: &SystemdArgs) -> Result<u8> {
    use crate::systemd as unit;
    let SystemdCmd::Generate { dir } = &a.cmd;
    let c = super::config::load(g, true)?;
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let config_path = std::path::absolute(g.config_path())?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = unit::Target::current();
    let mut written = Vec::new();
    let mut timers = Vec::new();
    let mut create = std::collections::BTreeSet::new();
    let write = |name: String, text: String, written: &mut Vec<std::path::PathBuf>| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
        anyhow::Ok(())
    };
    for p in c.plans.values() {
        let Some(timer) = unit::timer(p) else {
            eprintln!(
                "plan {}: no schedule, no timer (run it with `cairn run {}`)",
                p.name, p.name
            );
            continue;
        };
        let writable = unit::writable_paths(&c, p, &target, &unit::btrfs_subvolume);
        for (path, kind) in &p.snapshots {
            if *kind == crate::sources::SnapshotKind::Btrfs && unit::btrfs_subvolume(path).is_none()
            {
                eprintln!(
                    "plan {}: {} is not on Btrfs on this machine: its unit may write a {} directory at or above it (generate the units on the machine that backs up to name the one)",
                    p.name,
                    path.display(),
                    crate::sources::BTRFS_DIR
                );
            }
        }
        create.extend(writable.iter().filter(|w| w.create).map(|w| w.path.clone()));
        let name = unit::unit_name(&p.name);
        let credentials = unit::credentials(&c, p);
        let service = unit::service(p, &writable, &credentials, &target, &exe, &config_path);
        write(format!("{name}.service"), service, &mut written)?;
        write(format!("{name}.timer"), timer, &mut written)?;
        timers.push(format!("{name}.timer"));
    }
    // Backups with max-age, or restore tests with one: `status --alert` watches both.
    if c.plans
        .values()
        .any(|p| p.max_age.is_some() || crate::ops::status::restore_test_max_age(p).is_some())
    {
        let service = unit::alert_service(&c, &target, &exe, &config_path);
        write(
            format!("{}.service", unit::ALERT_UNIT),
            service,
            &mut written,
        )?;
        write(
            format!("{}.timer", unit::ALERT_UNIT),
            unit::alert_timer(),
            &mut written,
        )?;
        timers.push(format!("{}.timer", unit::ALERT_UNIT));
        create.insert(std::path::absolute(&c.settings.state_dir)?);
    } else {
        eprintln!("no plan has max-age: no {} units (add max-age = \"26h\" to a plan to be told when its backups stop)", unit::ALERT_UNIT);
    }
    // The sandbox opens only existing directories for writing: create those cairn would
    // create itself on its first run.
    let mut created = Vec::new();
    for d in create.iter().filter(|d| !d.exists()) {
        crate::sources::private_dir(d).with_context(|| {
            format!("the units need {} to exist: create it, or run `cairn systemd generate` as the user the units run as", d.display())
        })?;
        created.push(d.clone());
    }
    for d in &created {
        eprintln!(
            "created {} (the sandbox can only open existing directories)",
            d.display()
        );
    }
    if g.json {
        super::print_json(&written)?;
    } else {
        for w in &written {
            println!("wrote {}", w.display());
        }
        if !timers.is_empty() {
            println!(
                "now: systemctl daemon-reload && systemctl enable --now {}",
                timers.join(" ")
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

/// A config that does not load, for `cairn run` and `cairn daemon`: a failed run of plan
/// "-" (category config) in the history where its `[settings]` put the state (else the
/// default state directory), and a failure notification when those settings could be read
/// — unless `quiet_repeat` is given and failures with the same error were recorded
/// there without a break and one was notified less than that long ago. Problems doing so are only printed: the config error
/// is what the caller reports.
fn record_config_failure(
    g: &GlobalOpts,
    e: &anyhow::Error,
    quiet_repeat: Option<std::time::Duration>,
) {
    use crate::history::{Category, Finish};
    let settings = crate::config::settings_of_broken(&g.config_path());
    let state_dir = settings
        .as_ref()
        .map(|s| s.state_dir.clone())
        .unwrap_or_else(crate::config::default_state_dir);
    let error = format!("{e:#}");
    let now = Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut repeated = false;
    let recorded = History::open(&state_dir).and_then(|h| {
        if let Some(window) = quiet_repeat {
            // The run of earlier failures with this same error, newest first: notified at
            // its start, then on the first failure of each further `window`.
            let same: Vec<f64> = h
                .list(Some("-"), 10_000, false)?
                .into_iter()
                .filter(|r| r.operation == "run")
                .take_while(|r| r.error.as_deref() == Some(error.as_str()))
                .map(|r| r.started)
                .collect();
            if let (Some(prev), Some(first)) = (same.first(), same.last()) {
                let period = |t: f64| ((t - first) / window.as_secs_f64()).floor();
                repeated = period(now) == period(*prev);
            }
        }
        let id = h.start(None, "-", "-", "run", now)?;
        h.finish(
            id,
            now,
            Outcome::Failure,
            &Finish {
                category: Some(Category::Config),
                error: Some(error.clone()),
                log: Some(error.clone()),
                ..Finish::default()
            },
        )
    });
    if let Err(r) = recorded {
        eprintln!(
            "warning: cannot record the config failure in {}: {r:#}",
            state_dir.display()
        );
    }
    let Some(s) = settings.filter(|_| !repeated) else {
        return;
    };
    let message = crate::notify::Message {
        plan: "-".into(),
        host: s.host.clone().unwrap_or_else(crate::run::hostname),
        event: "failure".into(),
        result: Some(Outcome::Failure.as_str().into()),
        error_category: Some(Category::Config.as_str().into()),
        error: Some(error.clone()),
        snapshot_id: None,
        duration_seconds: None,
        bytes_added: None,
        files_processed: None,
        time: Utc::now().to_rfc3339(),
        log_tail: error,
    };
    for p in crate::notify::send(&s.notify, crate::config::Event::Failure, &message) {
        eprintln!("warning: {p}");
    }
}

pub fn run(g: &GlobalOpts, a: &RunArgs) -> Result<u8> {
    // Offline, like the daemon: an unreadable secret fails only the plans of its
    // repository (category auth/config, in the history, notified), the others run.
    let c = match super::config::load(g, true) {
        Ok(c) => c,
        Err(e) => {
            record_config_failure(g, &e, None);
            return Err(e);
        }
    };
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
        progress: a.events.then(|| -> crate::run::protocol::ProgressFn {
            Arc::new(|ev| {
                use std::io::Write;
                if let Ok(line) = serde_json::to_string(&ev) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            })
        }),
    };
    let flags = RunFlags {
        force_prune: a.force_prune,
        force_check: a.force_check,
        now: None,
        only: a.only.as_deref().and_then(crate::run::Only::parse),
    };
    let mut worst = 0u8;
    let mut reports = Vec::new();
    let mut plans = plans.into_iter();
    while let Some(p) = plans.next() {
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
        if a.fail_fast && !r.outcome.ok() {
            // The rest are not run: said on stderr and in the JSON, not in the history
            // (nothing was attempted).
            for rest in plans.by_ref() {
                let why = format!(
                    "not run: plan {} ended {} (--fail-fast)",
                    p.name,
                    r.outcome.as_str()
                );
                if !g.quiet {
                    eprintln!("cairn run {}: {why}", rest.name);
                }
                if g.json {
                    reports.push(serde_json::json!({
                        "plan": rest.name,
                        "result": "not-run",
                        "error": why,
                    }));
                }
            }
        }
    }
    if g.json {
        super::print_json(&reports)?;
    }
    Ok(worst)
}

fn when(t: Option<f64>) -> String {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
        .map(|d| d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "never".into())
}

pub fn status(g: &GlobalOpts, a: &StatusArgs) -> Result<u8> {
    let c = super::config::load(g, !a.repositories)?;
    let history = open_history(&c)?;
    let now = Utc::now();
    let rows = crate::ops::status::plans(&c, &history, now)?;
    if a.alert {
        return alert(g, &c, &rows);
    }
    let repos = if a.repositories {
        let c = Arc::new(c.clone());
        let handles = crate::ops::repos::Handles::new(c.clone());
        crate::ops::status::repositories(&c, &handles, now)
    } else {
        Vec::new()
    };
    if g.json {
        if a.repositories {
            super::print_json(&serde_json::json!({"plans": rows, "repositories": repos}))?;
        } else {
            super::print_json(&rows)?;
        }
        return Ok(exit_code(&rows));
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
        for g in &r.check_next_groups {
            println!(
                "{:<16} check policy {} reads group {} next",
                "", g.policy, g.group
            );
        }
        println!(
            "{:<16} {}",
            "",
            proven_restore_line(r, now.timestamp_millis() as f64 / 1000.0)
        );
    }
    if a.repositories {
        println!(
            "\n{:<16} {:>10} {:>9} {:<17} {:<24} problem",
            "repository", "size", "snapshots", "last snapshot", "hosts"
        );
        for r in &repos {
            println!(
                "{:<16} {:>10} {:>9} {:<17} {:<24} {}",
                r.repository,
                r.size.map(super::format_bytes).unwrap_or_default(),
                r.snapshots.map(|n| n.to_string()).unwrap_or_default(),
                r.last_snapshot
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                hosts_cell(r),
                r.error.as_deref().unwrap_or("")
            );
        }
        for r in repos.iter().filter(|r| !r.by_host.is_empty()) {
            print_hosts(r);
        }
    }
    Ok(exit_code(&rows))
}

/// The hosts column of `cairn status --repositories`: the names when they fit, else how
/// many (the table below each repository lists them).
fn hosts_cell(r: &crate::ops::status::RepositoryStatus) -> String {
    if r.hosts.len() > 4 {
        return format!("{} hosts", r.hosts.len());
    }
    let names = r
        .hosts
        .iter()
        .map(|h| crate::ops::status::printable(h, 24))
        .collect::<Vec<_>>()
        .join(",");
    if names.chars().count() <= 24 {
        names
    } else {
        format!("{} hosts", r.hosts.len())
    }
}

/// A repository's hosts in `cairn status --repositories`: snapshots, newest snapshot (time,
/// id, paths) per host, most recent first, bounded (the rest counted).
fn print_hosts(r: &crate::ops::status::RepositoryStatus) {
    use crate::ops::status::printable;
    let total = r.by_host.len() as u64 + r.more_hosts;
    println!(
        "\nhosts of {} ({total} host{}, most recent first):",
        r.repository,
        if total == 1 { "" } else { "s" }
    );
    println!(
        "  {:<24} {:>9}  {:<17} {:<8}  latest paths",
        "host", "snapshots", "latest", "id"
    );
    for h in &r.by_host {
        let mut paths = h
            .latest_paths
            .iter()
            .map(|p| printable(p, 80))
            .collect::<Vec<_>>()
            .join(" ");
        if h.latest_paths_more > 0 {
            paths.push_str(&format!(" (and {} more)", h.latest_paths_more));
        }
        println!(
            "  {:<24} {:>9}  {:<17} {:<8}  {paths}",
            printable(&h.host, 40),
            h.snapshots,
            DateTime::parse_from_rfc3339(&h.latest)
                .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default(),
            h.latest_id.get(..8).unwrap_or(&h.latest_id),
        );
    }
    if r.more_hosts > 0 {
        println!(
            "  ... and {} more host{} (older snapshots; `cairn snapshots -r {}` lists them all)",
            r.more_hosts,
            if r.more_hosts == 1 { "" } else { "s" },
            r.repository
        );
    }
}

/// `cairn status` exits 1 while any plan is overdue: no successful backup within its
/// `max-age`, or no successful restore test within its restore-test `max-age`.
fn exit_code(rows: &[crate::ops::status::PlanStatus]) -> u8 {
    u8::from(rows.iter().any(|r| r.overdue || r.restore_test_overdue))
}

/// How long ago `t` (Unix seconds) was, at `now`: `40s`, `5m`, `3h`, `2d`.
fn ago(t: f64, now: f64) -> String {
    let s = (now - t).max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The "last proven restore" line of a plan in `cairn status`: when the last restore test
/// succeeded and what it proved, the last test's failure if it failed since, and whether
/// the restore test is overdue.
fn proven_restore_line(r: &crate::ops::status::PlanStatus, now: f64) -> String {
    let mut line = match r.last_restore_test {
        None => "last proven restore: never".to_string(),
        Some(t) => {
            let mut what = vec![format!("{} ago", ago(t, now))];
            what.extend(crate::ops::status::restore_test_summary(
                r.last_restore_test_success
                    .as_ref()
                    .and_then(|s| s.detail.as_ref()),
            ));
            format!(
                "last proven restore: {} ({})",
                when(Some(t)),
                what.join(", ")
            )
        }
    };
    if let Some(last) = r.last_restore_test_run.as_ref().filter(|l| {
        !l.result.ok() && l.result != Outcome::Running && Some(l.started) != r.last_restore_test
    }) {
        line.push_str(&format!(
            "; last test {} {} ago{}",
            last.result.as_str(),
            ago(last.started, now),
            last.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    if r.restore_test_overdue {
        line.push_str(&format!(
            "  RESTORE TEST OVERDUE (max-age {})",
            r.restore_test_max_age.as_deref().unwrap_or("")
        ));
    }
    line
}

/// `cairn status --alert`: what was overdue, who was told.
fn alert(g: &GlobalOpts, c: &Config, rows: &[crate::ops::status::PlanStatus]) -> Result<u8> {
    let (alerts, warning) = crate::ops::status::alert(c, rows)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    for a in &alerts {
        for p in &a.problems {
            eprintln!("plan {}: notification failed: {p}", a.plan);
        }
    }
    if g.json {
        super::print_json(&alerts)?;
    } else if !g.quiet {
        for a in &alerts {
            println!(
                "plan {}: {}: {} — {}",
                a.plan,
                if a.what == "restore-test" {
                    "RESTORE TEST OVERDUE"
                } else {
                    "OVERDUE"
                },
                a.message,
                if a.notified {
                    "notified"
                } else {
                    "already notified (again after its next success)"
                }
            );
        }
    }
    Ok(if alerts.is_empty() { 0 } else { 1 })
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
                    if indent.is_empty() && r.plan.is_empty() {
                        // A download or restore from the web UI: what and who.
                        format!("{} by {}", r.operation, r.user.as_deref().unwrap_or("?"))
                    } else if indent.is_empty() {
                        r.plan.clone()
                    } else {
                        // A step: which hook or check policy, cut to keep the columns.
                        let l = r.label();
                        match l.char_indices().nth(32) {
                            Some((at, _)) => format!("{}…", &l[..at]),
                            None => l,
                        }
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
        // What each restore test proved, under its step (or under its run without
        // --steps): the restore test's history detail in words.
        let proven = |s: &Record| {
            let what = crate::ops::status::restore_test_summary(s.detail.as_ref());
            if s.operation == "restore-test" && !what.is_empty() {
                println!(
                    "{:>6}   restore test {}: {}",
                    "",
                    s.result.as_str(),
                    what.join(", ")
                );
            }
        };
        if a.steps {
            for s in h.steps(r.id)? {
                line(&s, "  ");
                proven(&s);
            }
        } else if r.operation == "run" {
            for s in h.steps(r.id)? {
                proven(&s);
            }
        }
    }
    Ok(0)
}
