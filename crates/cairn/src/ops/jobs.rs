//! Operations started from the web UI (backup, check, prune, restore test) and the live
//! progress of every running operation.
//!
//! Two ways to run them:
//! - under `cairn daemon` ([`Jobs::daemon`]): a trigger joins the daemon's per-repository
//!   queue through a submit function the daemon hands over; the daemon's runner feeds the
//!   [`Hub`] from its progress callback, for scheduled runs too;
//! - under `cairn web` ([`Jobs::standalone`], no scheduler): a trigger starts
//!   `cairn run PLAN [--only OP] --events` as a child process, whose stdout carries the
//!   runner's [`ProgressEvent`]s as JSON lines, read into the hub.
//!
//! A plan already queued or running is not started twice: the trigger is refused with
//! what is running (the web answers 409). The hub keeps the latest state of each plan's
//! operation (so a page opened mid-run shows it at once) and broadcasts every change.
//! Nothing here prints or parses arguments.

use crate::history::{Category, History, Outcome};
use crate::run::protocol::{Message, ProgressEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// What can be started from the web.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A whole run of the plan, as its schedule would start it.
    Backup,
    Check,
    Prune,
    RestoreTest,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Backup,
        Operation::Check,
        Operation::Prune,
        Operation::RestoreTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Check => "check",
            Operation::Prune => "prune",
            Operation::RestoreTest => "restore-test",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The step a run does alone for this operation (`None`: the whole run).
    pub fn only(self) -> Option<crate::run::Only> {
        match self {
            Operation::Backup => None,
            Operation::Check => Some(crate::run::Only::Check),
            Operation::Prune => Some(crate::run::Only::Prune),
            Operation::RestoreTest => Some(crate::run::Only::RestoreTest),
        }
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Running,
    Finished,
}

/// A running operation's progress, digested for a person: files, bytes, rate, ETA.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Live {
    pub files_done: u64,
    pub total_files: u64,
    pub bytes_done: u64,
    pub total_bytes: u64,
    /// 0.0 to 1.0.
    pub percent_done: f64,
    pub seconds_elapsed: u64,
    pub seconds_remaining: Option<u64>,
    /// Bytes a second since the step started.
    pub bytes_per_second: f64,
}

/// The latest state of one plan's operation.
#[derive(Debug, Clone, Serialize)]
pub struct JobState {
    pub plan: String,
    pub operation: Operation,
    pub state: State,
    /// The run's id in the history, once the runner has started it.
    pub run_id: Option<i64>,
    /// `web` (triggered) or `schedule`.
    pub origin: &'static str,
    /// Unix seconds.
    pub since: f64,
    /// The step running now (`backup`, `forget`, `prune`, `check`, `restore-test`, ...).
    pub step: Option<String>,
    pub live: Option<Live>,
    pub result: Option<Outcome>,
    pub error_category: Option<Category>,
    pub error: Option<String>,
}

impl JobState {
    /// A plan's operation queued by the schedule (not yet in the hub).
    pub fn scheduled(plan: &str, op: Operation) -> JobState {
        Hub::fresh(plan, op, State::Queued, "schedule")
    }
}

/// What the hub broadcasts.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A plan's operation changed (queued, started, progressed, finished).
    Job(JobState),
    /// A message of the runner, as it came.
    Progress(ProgressEvent),
}

/// Finished operations stay visible this long.
const KEEP_FINISHED: f64 = 600.0;

fn now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// The latest state of every plan's operation, and a broadcast of every change.
pub struct Hub {
    tx: tokio::sync::broadcast::Sender<HubEvent>,
    jobs: Mutex<BTreeMap<String, JobState>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            tx: tokio::sync::broadcast::channel(256).0,
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every change from now on. A receiver that lags loses the oldest events (the next
    /// `Job` event carries the whole state again).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<HubEvent> {
        self.tx.subscribe()
    }

    /// The operations queued or running, and those finished in the last minutes.
    pub fn snapshot(&self) -> Vec<JobState> {
        let t = now();
        self.jobs
            .lock()
            .map(|j| {
                j.values()
                    .filter(|s| s.state != State::Finished || t - s.since < KEEP_FINISHED)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The plan's operation if it is queued or running.
    pub fn busy(&self, plan: &str) -> Option<JobState> {
        self.jobs
            .lock()
            .ok()?
            .get(plan)
            .filter(|s| s.state != State::Finished)
            .cloned()
    }

    fn update(&self, plan: &str, f: impl FnOnce(Option<JobState>) -> JobState) -> JobState {
        let state = match self.jobs.lock() {
            Ok(mut j) => {
                let s = f(j.remove(plan));
                j.insert(plan.to_string(), s.clone());
                s
            }
            Err(_) => f(None),
        };
        let _ = self.tx.send(HubEvent::Job(state.clone()));
        state
    }

    fn fresh(plan: &str, op: Operation, state: State, origin: &'static str) -> JobState {
        JobState {
            plan: plan.to_string(),
            operation: op,
            state,
            run_id: None,
            origin,
            since: now(),
            step: None,
            live: None,
            result: None,
            error_category: None,
            error: None,
        }
    }

    /// Records a triggered operation as queued; refused with the plan's operation when
    /// one is already queued or running.
    pub fn queue(&self, plan: &str, op: Operation) -> Result<JobState, Box<JobState>> {
        let mut j = match self.jobs.lock() {
            Ok(j) => j,
            Err(_) => return Err(Box::new(Hub::fresh(plan, op, State::Running, "web"))),
        };
        if let Some(s) = j.get(plan).filter(|s| s.state != State::Finished) {
            return Err(Box::new(s.clone()));
        }
        let s = Hub::fresh(plan, op, State::Queued, "web");
        j.insert(plan.to_string(), s.clone());
        drop(j);
        let _ = self.tx.send(HubEvent::Job(s.clone()));
        Ok(s)
    }

    /// Forgets a queued operation that could not be queued after all.
    pub fn unqueue(&self, plan: &str) {
        if let Ok(mut j) = self.jobs.lock() {
            if j.get(plan).is_some_and(|s| s.state == State::Queued) {
                j.remove(plan);
            }
        }
    }

    /// The plan's operation starts (a triggered one, or one of the schedule).
    pub fn started(&self, plan: &str, op: Operation) {
        self.update(plan, |old| {
            let origin = old
                .as_ref()
                .filter(|s| s.state == State::Queued)
                .map(|s| s.origin)
                .unwrap_or("schedule");
            let mut s = Hub::fresh(plan, op, State::Running, origin);
            s.since = now();
            s
        });
    }

    /// A message of the runner.
    pub fn progress(&self, ev: ProgressEvent) {
        let _ = self.tx.send(HubEvent::Progress(ev.clone()));
        self.update(&ev.plan, |old| {
            let mut s = old.unwrap_or_else(|| {
                Hub::fresh(&ev.plan, Operation::Backup, State::Running, "schedule")
            });
            if s.state == State::Queued {
                s.state = State::Running;
            }
            s.run_id = Some(ev.run_id);
            match &ev.message {
                Message::StepStarted => {
                    s.step = Some(ev.step.clone());
                    s.live = None;
                }
                Message::Status(st) => {
                    s.step = Some(ev.step.clone());
                    s.live = Some(Live {
                        files_done: st.files_done,
                        total_files: st.total_files,
                        bytes_done: st.bytes_done,
                        total_bytes: st.total_bytes,
                        percent_done: st.percent_done.clamp(0.0, 1.0),
                        seconds_elapsed: st.seconds_elapsed,
                        seconds_remaining: st.seconds_remaining,
                        bytes_per_second: if st.seconds_elapsed > 0 {
                            st.bytes_done as f64 / st.seconds_elapsed as f64
                        } else {
                            0.0
                        },
                    });
                }
                Message::Summary(sum) => {
                    if let Some(l) = s.live.as_mut() {
                        l.percent_done = 1.0;
                        l.seconds_remaining = Some(0);
                        if let Some(f) = sum.total_files_processed {
                            l.files_done = f;
                            l.total_files = f;
                        }
                        if let Some(b) = sum.total_bytes_processed {
                            l.bytes_done = b;
                            l.total_bytes = b;
                        }
                    }
                }
                Message::ExitError(e) => {
                    s.error_category = Some(e.category);
                    s.error = Some(e.message.clone());
                }
                Message::StepFinished(_) => {}
            }
            s
        });
    }

    /// The plan's operation ended.
    pub fn finished(
        &self,
        plan: &str,
        op: Operation,
        run_id: Option<i64>,
        result: Outcome,
        category: Option<Category>,
        error: Option<String>,
    ) {
        self.update(plan, |old| {
            let mut s = old.unwrap_or_else(|| Hub::fresh(plan, op, State::Running, "schedule"));
            s.state = State::Finished;
            s.since = now();
            s.run_id = run_id.or(s.run_id);
            s.result = Some(result);
            s.error_category = category;
            s.error = error;
            s.step = None;
            if result.ok() {
                if let Some(l) = s.live.as_mut() {
                    l.percent_done = 1.0;
                    l.seconds_remaining = Some(0);
                }
            }
            s
        });
    }
}

/// Why a trigger was refused.
#[derive(Debug)]
pub enum Refused {
    /// No such plan in the config.
    UnknownPlan(String),
    /// The plan cannot do this (e.g. a restore test without `restore-test` in the plan).
    NotConfigured(String),
    /// The plan already has an operation queued or running.
    Busy(Box<JobState>),
    /// The plan is run by another cairn (a manual `cairn run`, a systemd timer).
    Locked(String),
    /// The daemon is stopping, or the child could not start.
    Unavailable(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::UnknownPlan(p) => write!(f, "no plan `{p}` in the configuration"),
            Refused::NotConfigured(m) | Refused::Unavailable(m) => f.write_str(m),
            Refused::Busy(s) => write!(
                f,
                "plan `{}` already has a {} {}",
                s.plan,
                s.operation.as_str(),
                match s.state {
                    State::Queued => "queued",
                    _ => "running",
                }
            ),
            Refused::Locked(holder) => write!(f, "the plan is being run elsewhere ({holder})"),
        }
    }
}

/// How the daemon queues an operation: `Err` with the operation already queued or
/// running for the plan (or why nothing can be queued).
pub type Submit = Arc<dyn Fn(&str, Operation) -> Result<(), Refused> + Send + Sync>;

enum Mode {
    Daemon(Submit),
    Standalone {
        exe: PathBuf,
        config_path: PathBuf,
        /// Pids of the running children, stopped with the server.
        children: Arc<Mutex<BTreeMap<String, u32>>>,
    },
}

/// Running and queued operations, their live progress, and how to start new ones.
#[derive(Clone)]
pub struct Jobs(Arc<Inner>);

struct Inner {
    hub: Arc<Hub>,
    mode: Mode,
}

impl Jobs {
    /// Operations run as `cairn run` child processes (for `cairn web`, without a
    /// scheduler), with `config_path` as their config; `stop` stops running children
    /// (SIGTERM: they remove their locks and record the run as interrupted).
    pub fn standalone(config_path: PathBuf, stop: Arc<AtomicBool>) -> anyhow::Result<Jobs> {
        use anyhow::Context;
        let children: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        {
            let children = children.clone();
            crate::run::forward_stop(stop, move || {
                children
                    .lock()
                    .map(|c| c.values().copied().collect())
                    .unwrap_or_default()
            });
        }
        Ok(Jobs(Arc::new(Inner {
            hub: Arc::new(Hub::new()),
            mode: Mode::Standalone {
                exe: std::env::current_exe().context("cannot find the cairn executable")?,
                config_path: std::path::absolute(&config_path).unwrap_or(config_path),
                children,
            },
        })))
    }

    /// Operations join the daemon's queues through `submit`; the daemon feeds `hub`.
    pub fn daemon(hub: Arc<Hub>, submit: Submit) -> Jobs {
        Jobs(Arc::new(Inner {
            hub,
            mode: Mode::Daemon(submit),
        }))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// Starts `op` of `plan` (queued behind the repository's other operations under the
    /// daemon). Returns the queued state.
    pub fn trigger(
        &self,
        config: &crate::config::Config,
        plan: &str,
        op: Operation,
    ) -> Result<JobState, Refused> {
        let Some(p) = config.plans.get(plan) else {
            return Err(Refused::UnknownPlan(plan.to_string()));
        };
        if op == Operation::RestoreTest && p.restore_test.is_none() {
            return Err(Refused::NotConfigured(format!(
                "plan `{plan}` has no restore test: add restore-test = {{ schedule = \"weekly\" }} to it"
            )));
        }
        match &self.0.mode {
            Mode::Daemon(submit) => {
                let queued = self.0.hub.queue(plan, op).map_err(Refused::Busy)?;
                if let Err(e) = submit(plan, op) {
                    self.0.hub.unqueue(plan);
                    return Err(e);
                }
                Ok(queued)
            }
            Mode::Standalone {
                exe,
                config_path,
                children,
            } => {
                // A `cairn run` from a timer or a shell holds the plan's lock.
                match crate::run::lock::try_lock(&config.settings.state_dir, plan) {
                    Ok(Ok(lock)) => drop(lock),
                    Ok(Err(holder)) => return Err(Refused::Locked(holder.to_string())),
                    Err(e) => return Err(Refused::Unavailable(format!("{e:#}"))),
                }
                let queued = self.0.hub.queue(plan, op).map_err(Refused::Busy)?;
                let child = spawn_child(exe, config_path, plan, op);
                let mut child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        self.0.hub.unqueue(plan);
                        return Err(Refused::Unavailable(format!(
                            "cannot start `cairn run {plan}`: {e}"
                        )));
                    }
                };
                if let Ok(mut c) = children.lock() {
                    c.insert(plan.to_string(), child.id());
                }
                self.0.hub.started(plan, op);
                let (hub, children) = (self.0.hub.clone(), children.clone());
                let (plan, state_dir) = (plan.to_string(), config.settings.state_dir.clone());
                let repository = p.repository.clone();
                std::thread::spawn(move || {
                    follow_child(&mut child, &hub, &plan, op, &repository, &state_dir);
                    if let Ok(mut c) = children.lock() {
                        c.remove(&plan);
                    }
                });
                Ok(queued)
            }
        }
    }
}

fn spawn_child(
    exe: &std::path::Path,
    config_path: &std::path::Path,
    plan: &str,
    op: Operation,
) -> std::io::Result<std::process::Child> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(config_path)
        .arg("--quiet")
        .args(["run", "--events"]);
    if op != Operation::Backup {
        cmd.args(["--only", op.as_str()]);
    }
    cmd.arg("--")
        .arg(plan)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
}

/// Reads a `cairn run --events` child's events into the hub until it exits, then
/// records how it ended (from the history when the run got that far).
fn follow_child(
    child: &mut std::process::Child,
    hub: &Hub,
    plan: &str,
    op: Operation,
    repository: &str,
    state_dir: &std::path::Path,
) {
    // stderr: kept (the last 4 KiB) for a failure before the run started.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 8192 {
                    buf.drain(..buf.len() - 4096);
                }
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let mut run_id = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(ev) = serde_json::from_str::<ProgressEvent>(&line) {
                run_id = Some(ev.run_id);
                hub.progress(ev);
            }
        }
    }
    let status = child.wait();
    let err_text = stderr
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    let recorded = run_id.and_then(|id| History::open(state_dir).ok()?.get(id).ok()?);
    match recorded {
        Some(r) => hub.finished(
            plan,
            op,
            Some(r.id),
            r.result,
            r.error_category.as_deref().and_then(category),
            r.error,
        ),
        None => {
            let code = status.ok().and_then(|s| s.code());
            let result = match code {
                Some(0) => Outcome::Success,
                Some(3) => Outcome::Warning,
                Some(11) => Outcome::Skipped,
                Some(130) | Some(143) | None => Outcome::Interrupted,
                _ => Outcome::Failure,
            };
            let error = (!result.ok()).then(|| {
                if err_text.is_empty() {
                    format!("cairn run {plan} exited with {code:?}")
                } else {
                    err_text.lines().last().unwrap_or_default().to_string()
                }
            });
            hub.finished(plan, op, None, result, None, error);
        }
    }
    crate::ops::status::invalidate(repository);
}

/// A category's kebab-case name back to the category.
pub fn category(s: &str) -> Option<Category> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::protocol::{Status, StepFinished};

    fn ev(plan: &str, message: Message) -> ProgressEvent {
        ProgressEvent {
            plan: plan.into(),
            run_id: 7,
            step: "backup".into(),
            message,
        }
    }

    #[test]
    fn the_hub_refuses_a_second_operation_of_a_plan_and_tracks_progress_to_the_end() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        hub.queue("home", Operation::Backup).unwrap();
        let busy = hub.queue("home", Operation::Check).unwrap_err();
        assert_eq!(busy.operation, Operation::Backup);
        assert_eq!(busy.state, State::Queued);
        hub.queue("other", Operation::Prune)
            .expect("another plan is not blocked");
        hub.started("home", Operation::Backup);
        hub.progress(ev("home", Message::StepStarted));
        hub.progress(ev(
            "home",
            Message::Status(Status {
                seconds_elapsed: 4,
                seconds_remaining: Some(4),
                percent_done: 0.5,
                total_files: 10,
                files_done: 5,
                total_bytes: 800,
                bytes_done: 400,
                ..Default::default()
            }),
        ));
        let live = hub.busy("home").unwrap();
        assert_eq!(live.state, State::Running);
        assert_eq!(live.origin, "web");
        assert_eq!(live.run_id, Some(7));
        let l = live.live.unwrap();
        assert_eq!(
            (l.files_done, l.bytes_done, l.bytes_per_second),
            (5, 400, 100.0)
        );
        hub.progress(ev(
            "home",
            Message::StepFinished(StepFinished {
                outcome: Outcome::Success,
                category: None,
                error: None,
            }),
        ));
        hub.finished(
            "home",
            Operation::Backup,
            Some(7),
            Outcome::Success,
            None,
            None,
        );
        assert!(hub.busy("home").is_none());
        let done = hub
            .snapshot()
            .into_iter()
            .find(|s| s.plan == "home")
            .unwrap();
        assert_eq!(done.live.unwrap().percent_done, 1.0);
        assert_eq!(done.result, Some(Outcome::Success));
        hub.queue("home", Operation::Check)
            .expect("a finished plan can run again");
        // Every change was broadcast, in order.
        let mut states = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let HubEvent::Job(s) = e {
                if s.plan == "home" {
                    states.push(s.state);
                }
            }
        }
        assert_eq!(states.first(), Some(&State::Queued));
        assert!(states.contains(&State::Finished));
        assert_eq!(states.last(), Some(&State::Queued));
    }

    #[test]
    fn operations_round_trip_their_names() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            let v = serde_json::to_value(op).unwrap();
            assert_eq!(v, op.as_str());
        }
        assert_eq!(Operation::parse("rm -rf"), None);
        assert_eq!(category("disk-full"), Some(Category::DiskFull));
    }
}
