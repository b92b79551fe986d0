//! `cairn daemon`: runs plans on their schedules.
//!
//! - One queue (and worker thread) per repository: two operations on the same repository
//!   never run at once; different repositories run in parallel. A plan already queued or
//!   running is not queued twice.
//! - Catch-up: a plan whose schedule came due while the daemon was not running (its last
//!   recorded run is older than the last occurrence) runs once at start, not once per
//!   missed occurrence.
//! - Alerts: a plan with `max-age` and no successful backup within it is reported once
//!   through its notifications (and as `cairn_plan_overdue` in the metrics); a plan whose
//!   restore test has a `max-age` and no successful restore test within it likewise, in
//!   an episode of its own (event `restore-test-overdue`, `cairn_restore_test_overdue`).
//! - Shutdown (SIGTERM, SIGINT): no new runs start; a running cairn child gets SIGTERM,
//!   removes its lock and exits; a running hook gets SIGTERM and, after a grace period,
//!   SIGKILL (with its process group); the run's failure and finally hooks still run; the
//!   run is recorded as interrupted.
//! - A plan already run by another cairn (a manual `cairn run`) is skipped, recorded with
//!   category `lock`; at start, leftover filesystem snapshots are swept only for plans
//!   nobody runs.
//! - `/metrics` (Prometheus) and `/healthz` on `settings.metrics.listen`.
//! - The web UI when `[settings.web]` is configured: its triggers join the same queues
//!   (a plan already queued or running is refused), and every run's progress (scheduled
//!   or triggered) feeds the UI's live view; it stops with the daemon.
//!
//! The clock is a parameter, so the scheduler is tested with simulated time.

use crate::config::Config;
use crate::history::{History, Outcome};
use crate::ops::jobs::{Hub, Operation, Refused};
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
    /// Runs `op` of `plan` (a scheduled run is [`Operation::Backup`]: the whole run).
    fn run(&self, plan: &str, op: Operation, stop: &Arc<AtomicBool>);
    /// When the plan's last successful backup started (from the history).
    fn last_success(&self, _plan: &str) -> Option<DateTime<Utc>> {
        None
    }
    /// Sends an overdue alert for a plan.
    fn overdue(&self, _plan: &str, _last_success: Option<DateTime<Utc>>) {}
    /// When the plan's last successful restore test started (from the history).
    fn last_restore_test_success(&self, _plan: &str) -> Option<DateTime<Utc>> {
        None
    }
    /// Sends a restore-test overdue alert for a plan (no successful restore test within
    /// its restore-test `max-age`).
    fn restore_test_overdue(&self, _plan: &str, _last_success: Option<DateTime<Utc>>) {}
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
    /// The restore test's `max-age`: alert when no restore test succeeded within it.
    pub restore_test_max_age: Option<Duration>,
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
    /// `None` once the queues are closed.
    tx: Mutex<Option<crossbeam_channel::Sender<(String, Operation)>>>,
    /// Plans queued or running on this repository, with their operation.
    pending: Arc<Mutex<BTreeMap<String, Operation>>>,
}

/// One queue (and worker thread) per repository: the scheduler and the web UI's
/// triggers both submit to it.
pub struct Queues {
    queues: BTreeMap<String, Queue>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Queues {
    /// Starts a worker per repository of `repositories`.
    pub fn start(
        repositories: BTreeSet<String>,
        exec: Arc<dyn Executor>,
        stop: Arc<AtomicBool>,
    ) -> Queues {
        let mut queues = BTreeMap::new();
        let mut workers = Vec::new();
        for repo in repositories {
            let (tx, rx) = crossbeam_channel::unbounded::<(String, Operation)>();
            let pending = Arc::new(Mutex::new(BTreeMap::new()));
            let (exec, stop, p) = (exec.clone(), stop.clone(), pending.clone());
            workers.push(std::thread::spawn(move || {
                for (plan, op) in rx {
                    if !stop.load(Ordering::Relaxed) {
                        exec.run(&plan, op, &stop);
                    }
                    if let Ok(mut p) = p.lock() {
                        p.remove(&plan);
                    }
                }
            }));
            queues.insert(
                repo,
                Queue {
                    tx: Mutex::new(Some(tx)),
                    pending,
                },
            );
        }
        Queues {
            queues,
            workers: Mutex::new(workers),
        }
    }

    /// Queues `op` of `plan` on `repository`. `Err` with the plan's operation already
    /// queued or running (`None`: no queue for the repository, or the queues are closed).
    pub fn submit(
        &self,
        repository: &str,
        plan: &str,
        op: Operation,
    ) -> std::result::Result<(), Option<Operation>> {
        let q = self.queues.get(repository).ok_or(None)?;
        let tx = q.tx.lock().map_err(|_| None)?;
        let tx = tx.as_ref().ok_or(None)?;
        {
            let mut pending = q.pending.lock().map_err(|_| None)?;
            if let Some(running) = pending.get(plan) {
                return Err(Some(*running));
            }
            pending.insert(plan.to_string(), op);
        }
        tx.send((plan.to_string(), op)).map_err(|_| None)
    }

    /// No more operations: lets the workers finish what is queued (nothing runs once
    /// `stop` is set) and waits for them.
    pub fn close(&self) {
        for q in self.queues.values() {
            if let Ok(mut tx) = q.tx.lock() {
                tx.take();
            }
        }
        let workers = self
            .workers
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        for w in workers {
            let _ = w.join();
        }
    }
}

/// The scheduler loop on queues of its own (the tests' entry). Returns when `stop` is
/// set and every worker has finished.
#[cfg(test)]
pub fn schedule_loop(
    entries: Vec<Entry>,
    exec: Arc<dyn Executor>,
    clock: &dyn Clock,
    stop: Arc<AtomicBool>,
    tick: Duration,
) {
    let queues = Queues::start(
        entries.iter().map(|e| e.repository.clone()).collect(),
        exec.clone(),
        stop.clone(),
    );
    schedule_on(entries, &queues, exec, clock, stop, tick);
    queues.close();
}

/// The scheduler loop on `queues`, until `stop` is set (the caller closes the queues).
pub fn schedule_on(
    entries: Vec<Entry>,
    queues: &Queues,
    exec: Arc<dyn Executor>,
    clock: &dyn Clock,
    stop: Arc<AtomicBool>,
    tick: Duration,
) {
    let mut next = initial_due(&entries, clock.now());
    let mut alerted = crate::ops::status::Alerted::default();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for e in &entries {
            let Some(t) = next.get(&e.plan).copied() else {
                continue;
            };
            if t > now {
                continue;
            }
            // A plan already queued or running (by the web, or still from its last
            // occurrence) is not queued twice.
            let _ = queues.submit(&e.repository, &e.plan, Operation::Backup);
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
                let last_ts = last.map(|t| t.timestamp_millis() as f64 / 1000.0);
                let overdue =
                    crate::run::overdue(max, last_ts, now.timestamp_millis() as f64 / 1000.0);
                if alerted.step(&e.plan, overdue, last_ts) {
                    exec.overdue(&e.plan, last);
                }
            }
            if let Some(max) = e.restore_test_max_age {
                let last = exec.last_restore_test_success(&e.plan);
                let last_ts = last.map(|t| t.timestamp_millis() as f64 / 1000.0);
                let overdue =
                    crate::run::overdue(max, last_ts, now.timestamp_millis() as f64 / 1000.0);
                let key = crate::ops::status::Alerted::restore_test_key(&e.plan);
                if alerted.step(&key, overdue, last_ts) {
                    exec.restore_test_overdue(&e.plan, last);
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
}

/// The real executor: runs plans with `Runner`, one history connection per run.
struct PlanExecutor {
    config: Arc<Config>,
    exe: PathBuf,
    children: Children,
    /// The scheduler's own connection, for its once-a-tick questions (runs open theirs).
    history: Mutex<History>,
    /// Live progress, for the web UI.
    hub: Arc<Hub>,
}

impl PlanExecutor {
    /// Start of the last successful `operation` of `plan`, from the history.
    fn last_ok(&self, plan: &str, operation: &str) -> Option<DateTime<Utc>> {
        let t = self
            .history
            .lock()
            .ok()?
            .last_ok(plan, operation)
            .ok()??
            .started;
        DateTime::<Utc>::from_timestamp(t as i64, 0)
    }

    /// Sends an overdue alert of `plan` with `send` and says so on stderr (`what`: the
    /// shout, e.g. "OVERDUE"), with each channel that failed.
    fn alert(
        &self,
        plan: &str,
        last: Option<DateTime<Utc>>,
        what: &str,
        send: fn(&crate::config::Plan, Option<f64>) -> (crate::notify::Message, Vec<String>),
    ) {
        let Some(p) = self.config.plans.get(plan) else {
            return;
        };
        let last = last.map(|t| t.timestamp_millis() as f64 / 1000.0);
        let (msg, problems) = send(p, last);
        eprintln!(
            "plan {plan}: {what}: {}",
            msg.error.as_deref().unwrap_or("")
        );
        for problem in problems {
            eprintln!("plan {plan}: notification failed: {problem}");
        }
    }
}

impl Executor for PlanExecutor {
    fn run(&self, plan: &str, op: Operation, stop: &Arc<AtomicBool>) {
        let Some(p) = self.config.plans.get(plan) else {
            return;
        };
        self.hub.started(plan, op);
        let history = match History::open(&self.config.settings.state_dir) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("plan {plan}: {e:#}");
                self.hub.finished(
                    plan,
                    op,
                    None,
                    Outcome::Failure,
                    None,
                    Some(format!("{e:#}")),
                );
                return;
            }
        };
        let child = Arc::new(Mutex::new(None));
        if let Ok(mut c) = self.children.lock() {
            c.push(child.clone());
        }
        if op == Operation::Backup {
            eprintln!("plan {plan}: starting");
        } else {
            eprintln!("plan {plan}: starting {} (from the web UI)", op.as_str());
        }
        let hub = self.hub.clone();
        let runner = Runner {
            config: &self.config,
            history: &history,
            exe: self.exe.clone(),
            stop: stop.clone(),
            child: child.clone(),
            echo: false,
            progress: Some(Arc::new(move |ev| hub.progress(ev))),
        };
        let flags = RunFlags {
            only: op.only(),
            ..RunFlags::default()
        };
        match runner.run(p, &flags) {
            Ok(r) => {
                eprintln!(
                    "plan {plan}: {} in {:.1}s{}",
                    r.outcome.as_str(),
                    r.duration.as_secs_f64(),
                    r.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
                self.hub
                    .finished(plan, op, Some(r.run_id), r.outcome, r.category, r.error);
            }
            Err(e) => {
                eprintln!("plan {plan}: {e:#}");
                self.hub.finished(
                    plan,
                    op,
                    None,
                    Outcome::Failure,
                    None,
                    Some(format!("{e:#}")),
                );
            }
        }
        crate::ops::status::invalidate(&p.repository);
        if let Ok(mut c) = self.children.lock() {
            c.retain(|x| !Arc::ptr_eq(x, &child));
        }
    }

    fn last_success(&self, plan: &str) -> Option<DateTime<Utc>> {
        self.last_ok(plan, "backup")
    }

    fn overdue(&self, plan: &str, last: Option<DateTime<Utc>>) {
        self.alert(plan, last, "OVERDUE", crate::ops::status::send_overdue);
    }

    fn last_restore_test_success(&self, plan: &str) -> Option<DateTime<Utc>> {
        self.last_ok(plan, "restore-test")
    }

    fn restore_test_overdue(&self, plan: &str, last: Option<DateTime<Utc>>) {
        self.alert(
            plan,
            last,
            "RESTORE TEST OVERDUE",
            crate::ops::status::send_restore_test_overdue,
        );
    }
}

/// How the web UI's triggers join the daemon's queues.
fn submitter(
    config: Arc<Config>,
    queues: Arc<Queues>,
    hub: Arc<Hub>,
    stop: Arc<AtomicBool>,
) -> crate::ops::jobs::Submit {
    Arc::new(move |plan: &str, op: Operation| {
        if stop.load(Ordering::Relaxed) {
            return Err(Refused::Unavailable(
                "the daemon is stopping: nothing new starts".into(),
            ));
        }
        let p = config
            .plans
            .get(plan)
            .ok_or_else(|| Refused::UnknownPlan(plan.to_string()))?;
        queues
            .submit(&p.repository, plan, op)
            .map_err(|pending| match pending {
                Some(running) => {
                    Refused::Busy(Box::new(hub.busy(plan).unwrap_or_else(|| {
                        crate::ops::jobs::JobState::scheduled(plan, running)
                    })))
                }
                None => Refused::Unavailable(format!(
                    "no queue for repository {}: the daemon is stopping",
                    p.repository
                )),
            })
    })
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
            restore_test_max_age: crate::ops::status::restore_test_max_age(p),
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
    crate::signals::flag_on_stop(stop.clone())?;
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
    let hub = Arc::new(Hub::new());
    let exec: Arc<dyn Executor> = Arc::new(PlanExecutor {
        config: config.clone(),
        exe: std::env::current_exe().context("cannot find the cairn executable")?,
        children,
        history: Mutex::new(history),
        hub: hub.clone(),
    });
    // Every repository a plan writes to gets a queue: unscheduled plans can be triggered.
    let queues = Arc::new(Queues::start(
        config
            .plans
            .values()
            .map(|p| p.repository.clone())
            .collect(),
        exec.clone(),
        stop.clone(),
    ));
    let web = match &config.settings.web {
        Some(_) => {
            let jobs = crate::ops::jobs::Jobs::daemon(
                hub.clone(),
                submitter(config.clone(), queues.clone(), hub, stop.clone()),
            );
            match crate::web::serve(config.clone(), jobs, stop.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    queues.close();
                    return Err(e);
                }
            }
        }
        None => None,
    };
    schedule_on(
        entries,
        &queues,
        exec,
        &SystemClock,
        stop.clone(),
        Duration::from_secs(30),
    );
    stop.store(true, Ordering::Relaxed);
    queues.close();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    if let Some(w) = web {
        let _ = w.join();
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
            restore_test_max_age: None,
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
        restore_test_overdue: Mutex<Vec<String>>,
        last_restore_test_ok: Option<DateTime<Utc>>,
    }

    impl Executor for Recorder {
        fn run(&self, plan: &str, _op: Operation, _stop: &Arc<AtomicBool>) {
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
        fn last_restore_test_success(&self, _plan: &str) -> Option<DateTime<Utc>> {
            self.last_restore_test_ok
        }
        fn restore_test_overdue(&self, plan: &str, _last: Option<DateTime<Utc>>) {
            self.restore_test_overdue.lock().unwrap().push(plan.into());
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

    #[test]
    fn overdue_restore_tests_alert_once_apart_from_backups() {
        std::env::set_var("TZ", "UTC");
        let mut e = entry("p", "r", "yearly", Some("2026-11-27T00:00:00Z"));
        e.max_age = Some(Duration::from_secs(26 * 3600));
        e.restore_test_max_age = Some(Duration::from_secs(35 * 86_400));
        let rec = Arc::new(Recorder {
            repo_of: [("p".to_string(), "r".to_string())].into_iter().collect(),
            // Backups are fine; the last proven restore is 40 days old.
            last_ok: Some(t("2026-11-27T23:00:00Z")),
            last_restore_test_ok: Some(t("2026-10-19T00:00:00Z")),
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
        assert!(
            rec.overdue.lock().unwrap().is_empty(),
            "backups are within max-age"
        );
        assert_eq!(
            rec.restore_test_overdue.lock().unwrap().as_slice(),
            ["p"],
            "told once over five hours of ticks"
        );
    }
}
