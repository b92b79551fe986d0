//! What every plan and repository looks like now: the typed answer behind `cairn status`
//! and the web dashboard (`GET /api/status`, `/`).
//!
//! Plans come from the config and the history (cheap, every call). Repositories are opened
//! in-process ([`crate::ops::repos::Handles`]) and listed (pack sizes, snapshots): that
//! costs a listing of the backend, so each repository's figures are cached for
//! [`REPO_TTL`] and refreshed when an operation on it ends ([`invalidate`]).
//! Nothing here prints or reads arguments.

use crate::config::{Config, Plan};
use crate::history::{History, Outcome, Record};
use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a repository's size and snapshot figures are reused.
pub const REPO_TTL: Duration = Duration::from_secs(60);

/// How many runs of each plan the chart shows.
pub const CHART_RUNS: usize = 30;

/// Plans and repositories, as of `generated`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Unix seconds.
    pub generated: f64,
    pub plans: Vec<PlanStatus>,
    pub repositories: Vec<RepositoryStatus>,
}

/// One plan: its last run and what comes next.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    pub plan: String,
    pub repository: String,
    pub schedule: Option<String>,
    /// The last run (any result), without its log.
    pub last_run: Option<Record>,
    /// The last backup step (any result): what the last backup added, even when the last
    /// run was a check or prune alone.
    pub last_backup: Option<Record>,
    /// Start of the last successful backup (Unix seconds).
    pub last_success: Option<f64>,
    /// The next scheduled run (RFC 3339, local time); `None` for a plan without schedule.
    pub next_run: Option<String>,
    /// Start of the last successful check of the plan's repository (by any plan).
    pub last_check_success: Option<f64>,
    /// The last check of the plan's repository (any result).
    pub last_check: Option<Record>,
    /// Start of the last successful restore test of this plan: the last proven restore.
    pub last_restore_test: Option<f64>,
    /// `max-age`, e.g. `26h`.
    pub max_age: Option<String>,
    /// No successful backup within `max-age`.
    pub overdue: bool,
    /// The last [`CHART_RUNS`] finished runs, oldest first.
    pub chart: Vec<ChartPoint>,
    /// The group each rotating check policy (`read-data-subset = "n/t"`) reads next.
    pub check_next_groups: Vec<NextGroup>,
}

/// A rotating check policy's next group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NextGroup {
    /// The policy's name, or `#N`.
    pub policy: String,
    /// `k/t`: group k of t.
    pub group: String,
}

/// One finished run, for the chart of duration and added bytes over time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChartPoint {
    pub run_id: i64,
    /// Unix seconds.
    pub started: f64,
    pub duration: f64,
    pub bytes_added: Option<u64>,
    pub result: Outcome,
}

/// One repository of the config.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepositoryStatus {
    pub repository: String,
    /// Plans writing to it.
    pub plans: Vec<String>,
    /// Sum of the pack files' sizes (bytes).
    pub size: Option<u64>,
    pub packs: Option<u64>,
    pub snapshots: Option<u64>,
    pub hosts: Vec<String>,
    /// The newest snapshot's time (RFC 3339 as stored).
    pub last_snapshot: Option<String>,
    /// Why the figures are missing (repository unreachable, wrong password, ...).
    pub error: Option<String>,
    /// When the figures were read (Unix seconds).
    pub checked: Option<f64>,
}

fn now_ts(now: DateTime<Utc>) -> f64 {
    now.timestamp_millis() as f64 / 1000.0
}

/// Every plan of `config`, from the history, at `now`.
pub fn plans(config: &Config, history: &History, now: DateTime<Utc>) -> Result<Vec<PlanStatus>> {
    config
        .plans
        .values()
        .map(|p| plan(p, history, &config.settings.state_dir, now))
        .collect()
}

/// One plan's status (`state_dir` holds the rotating checks' positions).
pub fn plan(
    p: &Plan,
    history: &History,
    state_dir: &std::path::Path,
    now: DateTime<Utc>,
) -> Result<PlanStatus> {
    let last_run = history.last(&p.name, "run")?;
    let last_success = history.last_ok(&p.name, "backup")?.map(|r| r.started);
    let overdue = p
        .max_age
        .is_some_and(|m| crate::run::overdue(m, last_success, now.timestamp() as f64));
    let chart = history
        .list(Some(&p.name), CHART_RUNS, false)?
        .into_iter()
        .filter_map(|r| {
            Some(ChartPoint {
                run_id: r.id,
                started: r.started,
                duration: r.duration()?.as_secs_f64(),
                bytes_added: r.bytes_added,
                result: r.result,
            })
        })
        .rev()
        .collect();
    Ok(PlanStatus {
        plan: p.name.clone(),
        repository: p.repository.clone(),
        schedule: p.schedule.as_ref().map(|s| s.to_string()),
        last_run,
        last_backup: history.last(&p.name, "backup")?,
        last_success,
        next_run: p
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(&now.with_timezone(&Local)))
            .map(|t| t.to_rfc3339()),
        last_check_success: history
            .last_ok_on_repository(&p.repository, "check")?
            .map(|r| r.started),
        last_check: history.last_on_repository(&p.repository, "check")?,
        last_restore_test: history.last_ok(&p.name, "restore-test")?.map(|r| r.started),
        max_age: p.max_age.map(crate::config::format_duration),
        overdue,
        chart,
        check_next_groups: p
            .checks
            .iter()
            .filter_map(|c| {
                let (k, t) = crate::run::check_policy::next_group(state_dir, &p.name, c)?;
                Some(NextGroup {
                    policy: c.id.clone(),
                    group: format!("{k}/{t}"),
                })
            })
            .collect(),
    })
}

/// Figures read from an open repository.
pub fn repository_figures(
    name: &str,
    open: &crate::ops::repos::Open,
    now: DateTime<Utc>,
) -> RepositoryStatus {
    let mut st = RepositoryStatus {
        repository: name.to_string(),
        plans: Vec::new(),
        size: None,
        packs: None,
        snapshots: None,
        hosts: Vec::new(),
        last_snapshot: None,
        error: None,
        checked: Some(now_ts(now)),
    };
    match open
        .repo
        .backend()
        .list(cairn_repo::backend::FileType::Pack)
    {
        Ok(packs) => {
            st.packs = Some(packs.len() as u64);
            st.size = Some(packs.iter().map(|p| p.size).sum());
        }
        Err(e) => st.error = Some(format!("cannot list the packs of `{name}`: {e}")),
    }
    // Listed now, like the packs just above: a listing the handle kept from before the
    // last backup would count its packs but not its snapshot.
    open.relist_snapshots();
    match open.snapshots() {
        Ok(snaps) => {
            st.snapshots = Some(snaps.len() as u64);
            let mut hosts: Vec<String> = snaps.iter().map(|s| s.hostname.clone()).collect();
            hosts.sort();
            hosts.dedup();
            st.hosts = hosts;
            st.last_snapshot = snaps
                .iter()
                .max_by(|a, b| a.time.cmp(&b.time))
                .map(|s| s.time.to_rfc3339());
        }
        Err(e) => {
            st.error
                .get_or_insert_with(|| format!("cannot read the snapshots of `{name}`: {e}"));
        }
    }
    st
}

struct Cached {
    at: Instant,
    status: RepositoryStatus,
}

static CACHE: Mutex<BTreeMap<String, Cached>> = Mutex::new(BTreeMap::new());

/// Forgets a repository's cached figures (an operation on it ended).
pub fn invalidate(repository: &str) {
    if let Ok(mut c) = CACHE.lock() {
        c.remove(repository);
    }
}

/// Every repository of the config, opened through `handles` (figures cached for
/// [`REPO_TTL`]). A repository that cannot be opened gets its error, not a failure of the
/// whole status. Blocking.
pub fn repositories(
    config: &Config,
    handles: &crate::ops::repos::Handles,
    now: DateTime<Utc>,
) -> Vec<RepositoryStatus> {
    config
        .repositories
        .keys()
        .map(|name| {
            let cached = CACHE.lock().ok().and_then(|c| {
                c.get(name)
                    .filter(|c| c.at.elapsed() < REPO_TTL)
                    .map(|c| c.status.clone())
            });
            let mut st = cached.unwrap_or_else(|| {
                let st = match handles.get(name) {
                    Ok(open) => repository_figures(name, &open, now),
                    Err(e) => RepositoryStatus {
                        repository: name.clone(),
                        plans: Vec::new(),
                        size: None,
                        packs: None,
                        snapshots: None,
                        hosts: Vec::new(),
                        last_snapshot: None,
                        error: Some(e.to_string()),
                        checked: Some(now_ts(now)),
                    },
                };
                if let Ok(mut c) = CACHE.lock() {
                    c.insert(
                        name.clone(),
                        Cached {
                            at: Instant::now(),
                            status: st.clone(),
                        },
                    );
                }
                st
            });
            st.plans = config
                .plans
                .values()
                .filter(|p| &p.repository == name)
                .map(|p| p.name.clone())
                .collect();
            st
        })
        .collect()
}

// ---- overdue alerts ------------------------------------------------------------------------

/// Overdue alerts, once per episode: each plan alerted, with the last success it was
/// alerted about (`None`: it never succeeded). A plan that is no longer overdue, or that
/// succeeded since, is re-armed. `cairn status --alert` keeps this in the state directory
/// ([`Alerted::FILE`]); the daemon keeps its own in memory.
#[derive(Debug, Default, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Alerted {
    plans: BTreeMap<String, Option<f64>>,
}

impl Alerted {
    /// The file under the state directory.
    pub const FILE: &'static str = "overdue-alerts.json";

    /// Whether to alert `plan` now, and remembers it: `overdue` and not alerted since
    /// `last_success`. A plan not overdue is re-armed.
    pub fn step(&mut self, plan: &str, overdue: bool, last_success: Option<f64>) -> bool {
        if !overdue {
            self.plans.remove(plan);
            return false;
        }
        if self.plans.get(plan) == Some(&last_success) {
            return false;
        }
        self.plans.insert(plan.to_string(), last_success);
        true
    }

    /// Forgets an alert that reached nobody: the next check tries again.
    pub fn unmark(&mut self, plan: &str) {
        self.plans.remove(plan);
    }

    /// Reads the alerts of `state_dir`; a missing file is none. A file that cannot be
    /// parsed is none too, with a warning: a repeated alert beats a silent one.
    pub fn load(state_dir: &std::path::Path) -> Result<(Alerted, Option<String>)> {
        let path = state_dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Alerted::default(), None))
            }
            // A repeated alert beats a silent one: go on as if nothing was sent yet.
            Err(e) => {
                return Ok((
                    Alerted::default(),
                    Some(format!(
                        "cannot read {}: {e} (check its permissions; deleting it only means overdue plans are notified again): overdue plans are notified again",
                        path.display()
                    )),
                ))
            }
        };
        Ok(match serde_json::from_str(&text) {
            Ok(a) => (a, None),
            Err(e) => (
                Alerted::default(),
                Some(format!(
                    "{} is damaged ({e}): overdue plans are notified again and the file rewritten",
                    path.display()
                )),
            ),
        })
    }

    /// Writes the alerts to `state_dir` (a new file renamed over the old one).
    pub fn save(&self, state_dir: &std::path::Path) -> Result<()> {
        let path = state_dir.join(Self::FILE);
        let tmp = state_dir.join(format!("{}.tmp-{}", Self::FILE, std::process::id()));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow::anyhow!(
                    "cannot write {}: {e} (the state directory must be writable by cairn)",
                    path.display()
                )
            })
    }
}

/// What the overdue alert of a plan says: no successful backup since `last_success`.
pub fn overdue_message(p: &Plan, last_success: Option<f64>) -> crate::notify::Message {
    let since = last_success
        .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "ever".into());
    crate::notify::Message {
        plan: p.name.clone(),
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
    }
}

/// Sends `p`'s overdue alert through its notifications; returns the message and the
/// problems of the channels that failed.
pub fn send_overdue(p: &Plan, last_success: Option<f64>) -> (crate::notify::Message, Vec<String>) {
    let m = overdue_message(p, last_success);
    let problems = crate::notify::send(&p.notify, crate::config::Event::Failure, &m);
    (m, problems)
}

/// An overdue plan, as `cairn status --alert` found it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub plan: String,
    /// Why: "no successful backup since ... (max-age ...)".
    pub message: String,
    /// Notified now; `false`: already notified in this overdue episode.
    pub notified: bool,
    /// Channels that failed (when all failed, the next check tries again).
    pub problems: Vec<String>,
}

/// `cairn status --alert`: every overdue plan of `rows` (from [`plans`]) is notified once
/// per overdue episode; the episodes are kept in `config`'s state directory.
pub fn alert(config: &Config, rows: &[PlanStatus]) -> Result<(Vec<Alert>, Option<String>)> {
    let state = &config.settings.state_dir;
    let (mut alerted, warning) = Alerted::load(state)?;
    let before = alerted.clone();
    let mut out = Vec::new();
    for r in rows {
        let Some(p) = config.plans.get(&r.plan).filter(|p| p.max_age.is_some()) else {
            continue;
        };
        let due = alerted.step(&p.name, r.overdue, r.last_success);
        if !r.overdue {
            continue;
        }
        let (message, problems) = if due {
            send_overdue(p, r.last_success)
        } else {
            (overdue_message(p, r.last_success), Vec::new())
        };
        let channels = [&p.notify.healthchecks, &p.notify.ntfy, &p.notify.webhook]
            .iter()
            .filter(|c| c.is_some())
            .count();
        if due && channels > 0 && problems.len() >= channels {
            alerted.unmark(&p.name);
        }
        out.push(Alert {
            plan: p.name.clone(),
            message: message.error.unwrap_or_default(),
            notified: due,
            problems,
        });
    }
    if alerted != before {
        alerted.save(state)?;
    }
    Ok((out, warning))
}

/// Whether a run's result is worth a red mark.
pub fn failed(r: &Record) -> bool {
    matches!(r.result, Outcome::Failure | Outcome::Interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Finish;

    /// The dashboard once counted a new snapshot's packs but not the snapshot: the handle
    /// kept a listing from before the backup (CI failure of web_runs on 48eff95).
    #[test]
    fn figures_list_the_snapshots_again_like_the_packs() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), b"alpha").unwrap();
        let (_dir, repo, _) = crate::ops::archive::tests::snapshot_of(src.path());
        let open = crate::ops::repos::Open::new("r", repo.clone()).unwrap();
        assert_eq!(open.snapshots().unwrap().len(), 1);
        cairn_repo::backup::backup(
            &repo,
            cairn_repo::backup::BackupOptions {
                paths: vec![src.path().to_path_buf()],
                ..Default::default()
            },
            &cairn_repo::backup::Progress::default(),
        )
        .unwrap();
        let st = repository_figures("r", &open, Utc::now());
        assert_eq!(st.snapshots, Some(2), "{st:?}");
    }

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        crate::config::load(&path, crate::config::LoadOptions { offline: true })
            .map(|(c, _)| c)
            .unwrap()
    }

    #[test]
    fn overdue_alerts_fire_once_per_episode_and_persist_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, warning) = Alerted::load(dir.path()).unwrap();
        assert!(warning.is_none());
        assert!(a.step("p", true, None), "never succeeded: alert");
        assert!(!a.step("p", true, None), "same episode");
        assert!(!a.step("q", false, Some(5.0)));
        a.save(dir.path()).unwrap();
        let (mut b, _) = Alerted::load(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(!b.step("p", true, None), "remembered across processes");
        assert!(
            b.step("p", true, Some(100.0)),
            "a success since: a new episode"
        );
        assert!(!b.step("p", false, Some(100.0)));
        assert!(b.step("p", true, Some(100.0)), "re-armed once not overdue");
        b.unmark("p");
        assert!(
            b.step("p", true, Some(100.0)),
            "an alert that reached nobody is retried"
        );

        std::fs::write(dir.path().join(Alerted::FILE), "{not json").unwrap();
        let (c, warning) = Alerted::load(dir.path()).unwrap();
        assert_eq!(c, Alerted::default());
        assert!(warning.unwrap().contains("damaged"));
    }

    #[test]
    fn plan_status_reads_last_run_check_restore_test_and_chart_from_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&format!(
            "[settings]\nstate-dir = \"{0}\"\n[repositories.nas]\nurl = \"{0}/repo\"\npassword-file = \"{0}/pw\"\n\
             [plans.home]\nrepository = \"nas\"\npaths = [\"/tmp\"]\nschedule = \"daily\"\nmax-age = \"26h\"\n",
            dir.path().display()
        ));
        let h = History::open(dir.path()).unwrap();
        let now = Utc::now();
        let t = now_ts(now);
        for (i, (bytes, result)) in [(100u64, Outcome::Success), (300, Outcome::Failure)]
            .into_iter()
            .enumerate()
        {
            let start = t - 7200.0 + i as f64 * 1000.0;
            let run = h.start(None, "home", "nas", "run", start).unwrap();
            let b = h.start(Some(run), "home", "nas", "backup", start).unwrap();
            let f = Finish {
                bytes_added: Some(bytes),
                ..Default::default()
            };
            h.finish(b, start + 5.0, result, &f).unwrap();
            h.finish(run, start + 10.0 + i as f64, result, &f).unwrap();
        }
        let chk = h.start(None, "other", "nas", "check", t - 100.0).unwrap();
        h.finish(chk, t - 50.0, Outcome::Success, &Finish::default())
            .unwrap();
        let rt = h
            .start(None, "home", "nas", "restore-test", t - 60.0)
            .unwrap();
        h.finish(rt, t - 55.0, Outcome::Success, &Finish::default())
            .unwrap();
        // A run still going is not in the chart.
        h.start(None, "home", "nas", "run", t - 1.0).unwrap();

        let st = plan(&c.plans["home"], &h, dir.path(), now).unwrap();
        assert_eq!(st.last_run.as_ref().unwrap().result, Outcome::Running);
        assert_eq!(st.last_success, Some(t - 7200.0));
        let b = st.last_backup.as_ref().unwrap();
        assert_eq!((b.bytes_added, b.result), (Some(300), Outcome::Failure));
        assert!(!st.overdue, "a success two hours ago is within 26h");
        assert_eq!(st.last_check_success, Some(t - 100.0));
        assert_eq!(st.last_restore_test, Some(t - 60.0));
        assert_eq!(st.max_age.as_deref(), Some("26h"));
        assert!(st.next_run.is_some());
        let chart: Vec<(u64, f64)> = st
            .chart
            .iter()
            .map(|p| (p.bytes_added.unwrap(), p.duration))
            .collect();
        assert_eq!(chart, [(100, 10.0), (300, 11.0)], "oldest first");

        let late = now + chrono::Duration::hours(30);
        assert!(
            plan(&c.plans["home"], &h, dir.path(), late)
                .unwrap()
                .overdue
        );
    }
}
