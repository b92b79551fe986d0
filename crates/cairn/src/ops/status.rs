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

mod alerts;
pub use alerts::*;
mod hosts;
pub use hosts::*;

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
    /// The last restore test of this plan (any result), without its log: its `detail`
    /// says what was proven (mode, files, compared bytes, command, dumps); see
    /// [`restore_test_summary`].
    pub last_restore_test_run: Option<Record>,
    /// The last successful restore test of this plan (the row of `last_restore_test`):
    /// its `detail` says what the last proven restore proved.
    pub last_restore_test_success: Option<Record>,
    /// The restore test's `max-age`, e.g. `35d`; `None` without one.
    pub restore_test_max_age: Option<String>,
    /// A restore-test `max-age` and no successful restore test within it (also when
    /// none ever succeeded).
    pub restore_test_overdue: bool,
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
    /// Every host with snapshots in the repository, sorted by name.
    pub hosts: Vec<String>,
    /// The hosts with their snapshot count and newest snapshot, most recent first: at most
    /// [`MAX_HOSTS`] (a repository shared by a fleet, or written by restic too).
    pub by_host: Vec<HostStatus>,
    /// How many hosts `by_host` leaves out.
    pub more_hosts: u64,
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
    let last_restore_test_success = history.last_ok(&p.name, "restore-test")?;
    let last_restore_test = last_restore_test_success.as_ref().map(|r| r.started);
    let restore_test_overdue = restore_test_overdue(p, last_restore_test, now_ts(now));
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
        last_restore_test,
        last_restore_test_run: history.last(&p.name, "restore-test")?,
        last_restore_test_success,
        restore_test_max_age: restore_test_max_age(p).map(crate::config::format_duration),
        restore_test_overdue,
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

/// The `max-age` of `p`'s restore-test policy, if it has one.
pub fn restore_test_max_age(p: &Plan) -> Option<Duration> {
    p.restore_test.as_ref().and_then(|r| r.max_age)
}

/// Whether `p` has a restore-test `max-age` and no successful restore test within it at
/// `now` (Unix seconds); `last_ok` is the start of the last successful one (`None`: never,
/// which is overdue). Shared by the status, the metrics and the daemon's alerts.
pub fn restore_test_overdue(p: &Plan, last_ok: Option<f64>, now: f64) -> bool {
    restore_test_max_age(p).is_some_and(|m| crate::run::overdue(m, last_ok, now))
}

/// What a restore test proved, in words, from its history `detail` (written by the restore
/// test: `mode`, `files_restored`, `compared_bytes`, `changed_since`, `sqlite_checked`,
/// `command`, `command_exit`, `dumps`): e.g. `full, 120 files, 3.2 MiB compared
/// byte for byte, 2 SQLite databases intact, command ok, 1 dump loaded`. Keys that are
/// missing are left out, so older rows (no detail) give an empty list.
pub fn restore_test_summary(detail: Option<&serde_json::Value>) -> Vec<String> {
    let Some(d) = detail.filter(|d| d.is_object()) else {
        return Vec::new();
    };
    let n = |k: &str| d.get(k).and_then(|v| v.as_u64());
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut out = Vec::new();
    if let Some(m) = d.get("mode").and_then(|v| v.as_str()) {
        out.push(m.to_string());
    }
    if let Some(f) = n("files_restored") {
        out.push(plural(f, "file", "files"));
    }
    if let Some(b) = n("compared_bytes").filter(|b| *b > 0) {
        out.push(format!(
            "{} compared byte for byte",
            crate::units::format_bytes(b)
        ));
    }
    if let Some(c) = n("changed_since").filter(|c| *c > 0) {
        out.push(format!("{c} changed since the snapshot"));
    }
    if let Some(s) = n("sqlite_checked").filter(|s| *s > 0) {
        out.push(plural(
            s,
            "SQLite database intact",
            "SQLite databases intact",
        ));
    }
    if d.get("command").is_some_and(|c| !c.is_null()) {
        out.push(match d.get("command_exit").and_then(|v| v.as_i64()) {
            Some(0) => "command ok".to_string(),
            Some(code) => format!("command exited {code}"),
            None => "command did not finish".to_string(),
        });
    }
    if let Some(dumps) = d.get("dumps").and_then(|v| v.as_array()) {
        let failed = dumps
            .iter()
            .filter(|x| x.get("error").is_some_and(|e| !e.is_null()))
            .count() as u64;
        let loaded = dumps.len() as u64 - failed;
        if loaded > 0 {
            out.push(plural(loaded, "dump loaded", "dumps loaded"));
        }
        if failed > 0 {
            out.push(plural(
                failed,
                "dump failed to load",
                "dumps failed to load",
            ));
        }
    }
    out
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
        by_host: Vec::new(),
        more_hosts: 0,
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
            (st.by_host, st.more_hosts) = host_table(snaps.iter().map(|s| &**s), MAX_HOSTS);
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
                        by_host: Vec::new(),
                        more_hosts: 0,
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
        // One host, both its snapshots counted, the newer one as its latest.
        assert_eq!((st.by_host.len(), st.more_hosts), (1, 0), "{st:?}");
        assert_eq!(st.by_host[0].snapshots, 2);
        assert_eq!(Some(&st.by_host[0].latest), st.last_snapshot.as_ref());
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

    fn rt_config(dir: &std::path::Path, restore_test: &str) -> Config {
        config(&format!(
            "[settings]\nstate-dir = \"{0}\"\n[repositories.nas]\nurl = \"{0}/repo\"\npassword-file = \"{0}/pw\"\n\
             [plans.home]\nrepository = \"nas\"\npaths = [\"/tmp\"]\n{restore_test}\n",
            dir.display()
        ))
    }

    fn restore_test(h: &History, started: f64, result: Outcome, detail: serde_json::Value) {
        let run = h.start(None, "home", "nas", "run", started).unwrap();
        let id = h
            .start(Some(run), "home", "nas", "restore-test", started)
            .unwrap();
        h.set_detail(id, &detail).unwrap();
        h.finish(id, started + 5.0, result, &Finish::default())
            .unwrap();
        h.finish(run, started + 6.0, result, &Finish::default())
            .unwrap();
    }

    #[test]
    fn restore_tests_are_overdue_without_a_success_within_their_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let c = rt_config(
            dir.path(),
            "restore-test = { schedule = \"weekly\", max-age = \"35d\" }",
        );
        let h = History::open(dir.path()).unwrap();
        let now = Utc::now();
        let t = now_ts(now);
        let day = 86_400.0;
        let st = |now| plan(&c.plans["home"], &h, dir.path(), now).unwrap();

        let never = st(now);
        assert!(never.restore_test_overdue, "never tested: overdue");
        assert_eq!(never.restore_test_max_age.as_deref(), Some("35d"));
        assert!(never.last_restore_test.is_none() && never.last_restore_test_run.is_none());
        assert!(!never.overdue, "no backup max-age: backups are not overdue");

        restore_test(
            &h,
            t - 40.0 * day,
            Outcome::Success,
            serde_json::json!({"mode": "full"}),
        );
        assert!(
            st(now).restore_test_overdue,
            "the only success is 40 days old"
        );

        restore_test(
            &h,
            t - 2.0 * day,
            Outcome::Success,
            serde_json::json!({"mode": "sample"}),
        );
        let ok = st(now);
        assert!(
            !ok.restore_test_overdue,
            "a success two days ago is within 35d"
        );
        assert_eq!(ok.last_restore_test, Some(t - 2.0 * day));

        // A failure since does not make it overdue, but is the last run shown.
        restore_test(
            &h,
            t - day,
            Outcome::Failure,
            serde_json::json!({"mode": "sample"}),
        );
        let failed = st(now);
        assert!(!failed.restore_test_overdue);
        assert_eq!(failed.last_restore_test, Some(t - 2.0 * day));
        let last = failed.last_restore_test_run.unwrap();
        assert_eq!((last.result, last.started), (Outcome::Failure, t - day));
        let proven = failed.last_restore_test_success.unwrap();
        assert_eq!(proven.started, t - 2.0 * day);
        assert_eq!(proven.detail.unwrap()["mode"], "sample");

        // 34 days on, the success of two days ago is 36 days old.
        assert!(st(now + chrono::Duration::days(34)).restore_test_overdue);
        assert!(!restore_test_overdue(
            &c.plans["home"],
            Some(t),
            t + 35.0 * day - 1.0
        ));
        assert!(restore_test_overdue(
            &c.plans["home"],
            Some(t),
            t + 35.0 * day + 1.0
        ));

        // Without a max-age a restore test is never overdue, even when none ran.
        let d2 = tempfile::tempdir().unwrap();
        let c2 = rt_config(d2.path(), "restore-test = { schedule = \"weekly\" }");
        let h2 = History::open(d2.path()).unwrap();
        let st2 = plan(&c2.plans["home"], &h2, d2.path(), now).unwrap();
        assert!(!st2.restore_test_overdue && st2.restore_test_max_age.is_none());
        assert!(!restore_test_overdue(&c2.plans["home"], None, t));
        let d3 = tempfile::tempdir().unwrap();
        let c3 = rt_config(d3.path(), "");
        assert!(!restore_test_overdue(&c3.plans["home"], None, t));
    }

    #[test]
    fn restore_test_summaries_say_what_was_proven_and_tolerate_missing_keys() {
        let d = serde_json::json!({
            "mode": "full", "snapshot": "abc", "files_restored": 120, "compared_bytes": 3 << 20,
            "changed_since": 2, "sqlite_checked": 1, "command": "sqlite3 x", "command_exit": 0,
            "dumps": [{"path": "/.cairn/dumps/db/postgres-app.sql", "databases": 1, "tables": 3, "error": null},
                      {"path": "/.cairn/dumps/db/mysql-x.sql", "error": "boom"}]
        });
        assert_eq!(
            restore_test_summary(Some(&d)),
            [
                "full",
                "120 files",
                "3.000 MiB compared byte for byte",
                "2 changed since the snapshot",
                "1 SQLite database intact",
                "command ok",
                "1 dump loaded",
                "1 dump failed to load"
            ]
        );
        let failed = serde_json::json!({"mode": "sample", "command": "false", "command_exit": 1});
        assert_eq!(
            restore_test_summary(Some(&failed)),
            ["sample", "command exited 1"]
        );
        assert!(restore_test_summary(None).is_empty());
        assert!(restore_test_summary(Some(&serde_json::json!("odd"))).is_empty());
        assert_eq!(
            restore_test_summary(Some(
                &serde_json::json!({"files_restored": 1, "command": null})
            )),
            ["1 file"]
        );
    }
}
