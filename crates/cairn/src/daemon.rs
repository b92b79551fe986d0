//! `cairn daemon`: runs plans on their schedules.
//!
//! - One queue (and worker thread) per repository: two operations on the same repository
//!   never run at once; different repositories run in parallel. A plan already queued or
//!   running is not queued twice.
//! - Catch-up: a plan whose schedule came due while the daemon was not running (its last
//!   recorded run is older than the last occurrence) runs once at start, not once per
//!   missed occurrence.
//! - Alerts: a plan with `max-age` and no successful backup within it is reported once
//!   through its notifications (and as `cairn_plan_overdue` in the metrics).
//! - Shutdown (SIGTERM, SIGINT): no new runs start; a running cairn child gets SIGTERM,
//!   removes its lock and exits; a running hook gets SIGTERM and, after a grace period,
//!   SIGKILL (with its process group); the run's failure and finally hooks still run; the
//!   run is recorded as interrupted.
//! - A plan already run by another cairn (a manual `cairn run`) is skipped, recorded with
//!   category `lock`; at start, leftover filesystem snapshots are swept only for plans
//!   nobody runs.
//! - `/metrics` (Prometheus) and `/healthz` on `settings.metrics.listen`.
//!
//! The clock is a parameter, so the scheduler is tested with simulated time.

use crate::config::{Config, Event};
use crate::history::History;
use crate::run::{RunFlags, Runner};
use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The pid slots of running children, one per running plan.
type Children = Arc<Mutex<Vec<Arc<Mutex<Option<u32>>>>>>;

/// Time, for the scheduler.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Waits until `t` or until `stop` is set (in steps of at most `max`).
    fn sleep_until(&self, t: DateTime<Utc>, max: Duration, stop: &AtomicBool);
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(&self, t: DateTime<Utc>, max: Duration, stop: &AtomicBool) {
        let deadline = std::time::Instant::now()
            + (t - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(max);
        while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                Duration::from_millis(100).min(deadline - std::time::Instant::now()),
            );
        }
    }
}

/// Runs a plan; the daemon's one dependency on the outside world besides the clock.
pub trait Executor: Send + Sync {
    fn run(&self, plan: &str, stop: &Arc<AtomicBool>);
    /// When the plan's last successful backup started (from the history).
    fn last_success(&self, _plan: &str) -> Option<DateTime<Utc>> {
        None
    }
    /// Sends an overdue alert for a plan.
    fn overdue(&self, _plan: &str, _last_success: Option<DateTime<Utc>>) {}
}

/// What the scheduler knows about a plan.
#[derive(Clone, Debug)]
pub struct Entry {
    pub plan: String,
    pub repository: String,
    pub schedule: crate::schedule::Schedule,
    /// Start of the last run, from the history.
    pub last_run: Option<DateTime<Utc>>,
    pub max_age: Option<Duration>,
}

/// When each plan runs next, given the last runs: a plan that missed its schedule while
/// nothing ran runs now, once.
pub fn initial_due(entries: &[Entry], now: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
    let local = now.with_timezone(&Local);
    entries
        .iter()
        .filter_map(|e| {
            let missed = e.last_run.is_some_and(|last| {
                e.schedule
                    .next_after(&last.with_timezone(&Local))
                    .is_some_and(|n| n.with_timezone(&Utc) <= now)
            });
            let next = if missed {
                Some(now)
            } else {
                e.schedule.next_after(&local).map(|t| t.with_timezone(&Utc))
            };
            next.map(|t| (e.plan.clone(), t))
        })
        .collect()
}

struct Queue {
    tx: crossbeam_channel::Sender<String>,
    /// Plans queued or running on this repository.
    pending: Arc<Mutex<BTreeSet<String>>>,
}

/// The scheduler loop. Returns when `stop` is set and every worker has finished.
pub fn schedule_loop(
    entries: Vec<Entry>,
    exec: Arc<dyn Executor>,
    clock: &dyn Clock,
    stop: Arc<AtomicBool>,
    tick: Duration,
) {
    let mut next = initial_due(&entries, clock.now());
    let mut queues: BTreeMap<String, Queue> = BTreeMap::new();
    let mut workers = Vec::new();
    for repo in entries
        .iter()
        .map(|e| e.repository.clone())
        .collect::<BTreeSet<_>>()
    {
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        let pending = Arc::new(Mutex::new(BTreeSet::new()));
        let (exec, stop, p) = (exec.clone(), stop.clone(), pending.clone());
        workers.push(std::thread::spawn(move || {
            for plan in rx {
                if !stop.load(Ordering::Relaxed) {
                    exec.run(&plan, &stop);
                }
                if let Ok(mut p) = p.lock() {
                    p.remove(&plan);
                }
            }
        }));
        queues.insert(repo, Queue { tx, pending });
    }
    let mut alerted: BTreeSet<String> = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for e in &entries {
            let Some(t) = next.get(&e.plan).copied() else {
                continue;
            };
            if t > now {
                continue;
            }
            if let Some(q) = queues.get(&e.repository) {
                let fresh = q
                    .pending
                    .lock()
                    .map(|mut p| p.insert(e.plan.clone()))
                    .unwrap_or(false);
                if fresh {
                    let _ = q.tx.send(e.plan.clone());
                }
            }
            // Every occurrence up to now is covered by this run.
            match e.schedule.next_after(&now.with_timezone(&Local)) {
                Some(n) => {
                    next.insert(e.plan.clone(), n.with_timezone(&Utc));
                }
                None => {
                    next.remove(&e.plan);
                }
            }
        }
        for e in &entries {
            if let Some(max) = e.max_age {
                let last = exec.last_success(&e.plan);
                let overdue = crate::run::overdue(
                    max,
                    last.map(|t| t.timestamp_millis() as f64 / 1000.0),
                    now.timestamp_millis() as f64 / 1000.0,
                );
                if !overdue {
                    alerted.remove(&e.plan);
                } else if alerted.insert(e.plan.clone()) {
                    exec.overdue(&e.plan, last);
                }
            }
        }
        let wake = next
            .values()
            .min()
            .copied()
            .unwrap_or(now + chrono::Duration::hours(1));
        clock.sleep_until(wake, tick, &stop);
    }
    drop(queues);
    for w in workers {
        let _ = w.join();
    }
}

/// The real executor: runs plans with `Runner`, one history connection per run.
struct PlanExecutor {
    config: Arc<Config>,
    exe: PathBuf,
    children: Children,
    /// The scheduler's own connection, for its once-a-tick questions (runs open theirs).
    history: Mutex<History>,
}

impl Executor for PlanExecutor {
    fn run(&self, plan: &str, stop: &Arc<AtomicBool>) {
        let Some(p) = self.config.plans.get(plan) else {
            return;
        };
        let history = match History::open(&self.config.settings.state_dir) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("plan {plan}: {e:#}");
                return;
            }
        };
        let child = Arc::new(Mutex::new(None));
        if let Ok(mut c) = self.children.lock() {
            c.push(child.clone());
        }
        eprintln!("plan {plan}: starting");
        let runner = Runner {
            config: &self.config,
            history: &history,
            exe: self.exe.clone(),
            stop: stop.clone(),
            child: child.clone(),
            echo: false,
        };
        match runner.run(p, &RunFlags::default()) {
            Ok(r) => eprintln!(
                "plan {plan}: {} in {:.1}s{}",
                r.outcome.as_str(),
                r.duration.as_secs_f64(),
                r.error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            Err(e) => eprintln!("plan {plan}: {e:#}"),
        }
        if let Ok(mut c) = self.children.lock() {
            c.retain(|x| !Arc::ptr_eq(x, &child));
        }
    }

    fn last_success(&self, plan: &str) -> Option<DateTime<Utc>> {
        let t = self
            .history
            .lock()
            .ok()?
            .last_ok(plan, "backup")
            .ok()??
            .started;
        DateTime::<Utc>::from_timestamp(t as i64, 0)
    }

    fn overdue(&self, plan: &str, last: Option<DateTime<Utc>>) {
        let Some(p) = self.config.plans.get(plan) else {
            return;
        };
        let since = last
            .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "ever".into());
        let msg = crate::notify::Message {
            plan: plan.into(),
            host: p.host.clone().unwrap_or_else(crate::run::hostname),
            event: "overdue".into(),
            result: None,
            error_category: None,
            error: Some(format!(
                "no successful backup since {since} (max-age {})",
                p.max_age
                    .map(crate::config::format_duration)
                    .unwrap_or_default()
            )),
            snapshot_id: None,
            duration_seconds: None,
            bytes_added: None,
            files_processed: None,
            time: Utc::now().to_rfc3339(),
            log_tail: String::new(),
        };
        eprintln!(
            "plan {plan}: OVERDUE: {}",
            msg.error.as_deref().unwrap_or("")
        );
        for problem in crate::notify::send(&p.notify, Event::Failure, &msg) {
            eprintln!("plan {plan}: notification failed: {problem}");
        }
    }
}

/// Builds the scheduler's entries from the config and the history.
pub fn entries(config: &Config, history: &History) -> Result<Vec<Entry>> {
    let ts = |t: f64| DateTime::<Utc>::from_timestamp(t as i64, 0);
    let mut out = Vec::new();
    for (name, p) in &config.plans {
        let Some(schedule) = p.schedule.clone() else {
            continue;
        };
        out.push(Entry {
            plan: name.clone(),
            repository: p.repository.clone(),
            schedule,
            last_run: history.last(name, "run")?.and_then(|r| ts(r.started)),
            max_age: p.max_age,
        });
    }
    Ok(out)
}

/// `cairn daemon`.
pub fn run(config: Config) -> Result<()> {
    let config = Arc::new(config);
    let history = History::open(&config.settings.state_dir)?;
    let abandoned = history.close_abandoned(Utc::now().timestamp() as f64)?;
    if abandoned > 0 {
        eprintln!(
            "{abandoned} operation(s) of a previous cairn were interrupted (marked in the history)"
        );
    }
    // Filesystem snapshots left by a crash (named cairn-PLAN-TIME-PID), of plans no other
    // cairn is running now (a manual `cairn run` holds the plan's lock).
    for p in config.plans.values().filter(|p| !p.snapshots.is_empty()) {
        let held = match crate::run::lock::try_lock(&config.settings.state_dir, &p.name) {
            Ok(Ok(l)) => l,
            Ok(Err(holder)) => {
                eprintln!(
                    "plan {}: running elsewhere ({holder}): its snapshots are left alone",
                    p.name
                );
                continue;
            }
            Err(e) => {
                eprintln!("plan {}: cannot look for leftover snapshots: {e:#}", p.name);
                continue;
            }
        };
        for (path, kind) in &p.snapshots {
            match crate::sources::sweep(*kind, path, &p.name, &held) {
                Ok(removed) => {
                    for r in removed {
                        eprintln!(
                            "plan {}: removed snapshot {r} left by an interrupted run",
                            p.name
                        );
                    }
                }
                Err(e) => eprintln!("plan {}: cannot look for leftover snapshots: {e:#}", p.name),
            }
        }
    }
    let entries = entries(&config, &history)?;
    let stop = Arc::new(AtomicBool::new(false));
    crate::cli::signals::flag_on_stop(stop.clone())?;
    let children: Children = Arc::new(Mutex::new(Vec::new()));
    // Forward the stop to running children: they remove their locks and exit.
    {
        let children = children.clone();
        crate::run::forward_stop(stop.clone(), move || {
            eprintln!("stopping: running operations are being stopped cleanly");
            children
                .lock()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c.lock().ok().and_then(|p| *p))
                        .collect()
                })
                .unwrap_or_default()
        });
    }
    let metrics = match &config.settings.metrics_listen {
        Some(addr) => Some(crate::metrics::serve(addr, config.clone(), stop.clone())?),
        None => None,
    };
    let now = Utc::now();
    for (plan, t) in initial_due(&entries, now) {
        let when = if t <= now {
            "now (missed while cairn was not running)".to_string()
        } else {
            t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
        };
        eprintln!("plan {plan}: next run {when}");
    }
    if entries.is_empty() {
        eprintln!("no plan has a schedule: nothing to do until one does (add schedule = \"daily\" to a plan)");
    }
    let exec: Arc<dyn Executor> = Arc::new(PlanExecutor {
        config: config.clone(),
        exe: std::env::current_exe().context("cannot find the cairn executable")?,
        children,
        history: Mutex::new(history),
    });
    schedule_loop(
        entries,
        exec,
        &SystemClock,
        stop.clone(),
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::Relaxed);
    if let Some(m) = metrics {
        let _ = m.join();
    }
    eprintln!("cairn daemon stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;
    use std::sync::atomic::AtomicUsize;

    /// Simulated time: sleeping jumps the clock forward.
    struct SimClock {
        now: Mutex<DateTime<Utc>>,
        end: DateTime<Utc>,
    }

    impl Clock for SimClock {
        fn now(&self) -> DateTime<Utc> {
            *self.now.lock().unwrap()
        }
        fn sleep_until(&self, t: DateTime<Utc>, max: Duration, stop: &AtomicBool) {
            // Let workers pick up what was queued before time moves on.
            std::thread::sleep(Duration::from_millis(30));
            let mut now = self.now.lock().unwrap();
            let step = chrono::Duration::from_std(max).unwrap();
            *now = (*now + step).min(t.max(*now + chrono::Duration::seconds(1)));
            if *now >= self.end {
                stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(plan: &str, repo: &str, sched: &str, last: Option<&str>) -> Entry {
        Entry {
            plan: plan.into(),
            repository: repo.into(),
            schedule: Schedule::parse(sched).unwrap(),
            last_run: last.map(t),
            max_age: None,
        }
    }

    /// Records runs: (plan, start, end) in simulated order, with real overlap detection.
    #[derive(Default)]
    struct Recorder {
        runs: Mutex<Vec<String>>,
        running: Mutex<BTreeMap<String, usize>>,
        overlap_same_repo: AtomicUsize,
        max_parallel: AtomicUsize,
        overdue: Mutex<Vec<String>>,
        repo_of: BTreeMap<String, String>,
        run_time: Duration,
        last_ok: Option<DateTime<Utc>>,
    }

    impl Executor for Recorder {
        fn run(&self, plan: &str, _stop: &Arc<AtomicBool>) {
            let repo = self.repo_of[plan].clone();
            {
                let mut r = self.running.lock().unwrap();
                let n = r.entry(repo.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    self.overlap_same_repo.fetch_add(1, Ordering::SeqCst);
                }
                let total: usize = r.values().sum();
                self.max_parallel.fetch_max(total, Ordering::SeqCst);
            }
            self.runs.lock().unwrap().push(plan.to_string());
            std::thread::sleep(self.run_time);
            *self.running.lock().unwrap().get_mut(&repo).unwrap() -= 1;
        }
        fn last_success(&self, _plan: &str) -> Option<DateTime<Utc>> {
            self.last_ok
        }
        fn overdue(&self, plan: &str, _last: Option<DateTime<Utc>>) {
            self.overdue.lock().unwrap().push(plan.into());
        }
    }

    #[test]
    fn missed_runs_are_caught_up_once() {
        // Last ran three days ago at 03:00 (UTC here); daemon starts at 10:00.
        let now = t("2026-11-28T10:00:00Z");
        let e = vec![
            entry("missed", "r", "*-*-* 03:00", Some("2026-11-25T03:00:00Z")),
            entry("fresh", "r", "*-*-* 03:00", Some("2026-11-28T03:00:00Z")),
            entry("new", "r", "*-*-* 03:00", None),
        ];
        std::env::set_var("TZ", "UTC");
        let due = initial_due(&e, now);
        assert_eq!(due["missed"], now, "three missed days run once, now");
        assert!(due["fresh"] > now);
        assert!(
            due["new"] > now,
            "a plan that never ran waits for its schedule"
        );
    }

    #[test]
    fn same_repository_runs_are_serialised_and_others_run_in_parallel() {
        std::env::set_var("TZ", "UTC");
        let start = t("2026-11-28T02:59:00Z");
        let entries = vec![
            entry("a1", "repo-a", "*-*-* 03:00", None),
            entry("a2", "repo-a", "*-*-* 03:00", None),
            entry("b1", "repo-b", "*-*-* 03:00", None),
        ];
        let rec = Arc::new(Recorder {
            repo_of: entries
                .iter()
                .map(|e| (e.plan.clone(), e.repository.clone()))
                .collect(),
            run_time: Duration::from_millis(80),
            ..Default::default()
        });
        let clock = SimClock {
            now: Mutex::new(start),
            end: t("2026-11-28T03:10:00Z"),
        };
        schedule_loop(
            entries,
            rec.clone(),
            &clock,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(60),
        );
        let runs = rec.runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert_eq!(rec.overlap_same_repo.load(Ordering::SeqCst), 0);
        assert!(
            rec.max_parallel.load(Ordering::SeqCst) >= 2,
            "repo-b ran beside repo-a"
        );
    }

    #[test]
    fn schedules_fire_at_their_times_over_simulated_days() {
        std::env::set_var("TZ", "UTC");
        let entries = vec![
            entry("nightly", "r", "03:00", None),
            entry("hourly", "s", "hourly", None),
        ];
        let rec = Arc::new(Recorder {
            repo_of: entries
                .iter()
                .map(|e| (e.plan.clone(), e.repository.clone()))
                .collect(),
            ..Default::default()
        });
        let clock = SimClock {
            now: Mutex::new(t("2026-11-28T00:30:00Z")),
            end: t("2026-11-30T00:30:00Z"),
        };
        schedule_loop(
            entries,
            rec.clone(),
            &clock,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(3600),
        );
        let runs = rec.runs.lock().unwrap().clone();
        assert_eq!(
            runs.iter().filter(|r| *r == "nightly").count(),
            2,
            "{runs:?}"
        );
        assert_eq!(
            runs.iter().filter(|r| *r == "hourly").count(),
            48,
            "{runs:?}"
        );
    }

    #[test]
    fn overdue_plans_alert_once() {
        std::env::set_var("TZ", "UTC");
        let mut e = entry("p", "r", "yearly", Some("2026-11-20T00:00:00Z"));
        e.max_age = Some(Duration::from_secs(26 * 3600));
        let rec = Arc::new(Recorder {
            repo_of: [("p".to_string(), "r".to_string())].into_iter().collect(),
            last_ok: Some(t("2026-11-20T00:00:00Z")),
            ..Default::default()
        });
        let clock = SimClock {
            now: Mutex::new(t("2026-11-28T00:00:00Z")),
            end: t("2026-11-28T05:00:00Z"),
        };
        schedule_loop(
            vec![e],
            rec.clone(),
            &clock,
            Arc::new(AtomicBool::new(false)),
            Duration::from_secs(600),
        );
        assert_eq!(rec.overdue.lock().unwrap().as_slice(), ["p"]);
    }
}
