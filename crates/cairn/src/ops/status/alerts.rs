//! Overdue alerts, once per episode: a plan with `max-age` and no successful backup within
//! it, and a plan with `restore-test = { max-age }` and no successful restore test within
//! it. `cairn status --alert` keeps the episodes in the state directory ([`Alerted::FILE`]);
//! the daemon keeps its own in memory. Nothing here decides *whether* a plan is overdue
//! (that is [`super::plan`]); this only decides whom to tell, and when.

use super::PlanStatus;
use crate::config::{Config, Plan};
use anyhow::Result;
use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// The webhook `event` of a backup overdue alert.
pub const EVENT_OVERDUE: &str = "overdue";
/// The webhook `event` of a restore-test overdue alert: a separate event, so a receiver can
/// tell "backups stopped" from "nobody proved a restore lately".
pub const EVENT_RESTORE_TEST_OVERDUE: &str = "restore-test-overdue";

/// Overdue alerts, once per episode: each episode key alerted, with the last success it
/// was alerted about (`None`: it never succeeded). A key that is no longer overdue, or
/// that succeeded since, is re-armed. Keys are the plan's name for its backups and
/// [`Alerted::restore_test_key`] for its restore tests (plan names cannot hold `/`), so
/// files written before restore-test alerts existed load as they are.
#[derive(Debug, Default, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Alerted {
    plans: BTreeMap<String, Option<f64>>,
}

impl Alerted {
    /// The file under the state directory.
    pub const FILE: &'static str = "overdue-alerts.json";

    /// The episode key of `plan`'s restore tests (its backups use the plan's name).
    pub fn restore_test_key(plan: &str) -> String {
        format!("{plan}/restore-test")
    }

    /// Whether to alert `key` now, and remembers it: `overdue` and not alerted since
    /// `last_success`. A key not overdue is re-armed.
    pub fn step(&mut self, key: &str, overdue: bool, last_success: Option<f64>) -> bool {
        if !overdue {
            self.plans.remove(key);
            return false;
        }
        if self.plans.get(key) == Some(&last_success) {
            return false;
        }
        self.plans.insert(key.to_string(), last_success);
        true
    }

    /// Forgets an alert that reached nobody: the next check tries again.
    pub fn unmark(&mut self, key: &str) {
        self.plans.remove(key);
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

/// `2026-12-01 03:12` (local time) of Unix seconds, or "ever" (never succeeded).
fn since(last_success: Option<f64>) -> String {
    last_success
        .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
        .map(|t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "ever".into())
}

fn message(p: &Plan, event: &str, error: String) -> crate::notify::Message {
    crate::notify::Message {
        plan: p.name.clone(),
        host: p.host.clone().unwrap_or_else(crate::run::hostname),
        event: event.into(),
        result: None,
        error_category: None,
        error: Some(error),
        snapshot_id: None,
        duration_seconds: None,
        bytes_added: None,
        files_processed: None,
        time: Utc::now().to_rfc3339(),
        log_tail: String::new(),
    }
}

/// What the overdue alert of a plan says: no successful backup since `last_success`.
pub fn overdue_message(p: &Plan, last_success: Option<f64>) -> crate::notify::Message {
    message(
        p,
        EVENT_OVERDUE,
        format!(
            "no successful backup since {} (max-age {})",
            since(last_success),
            p.max_age
                .map(crate::config::format_duration)
                .unwrap_or_default()
        ),
    )
}

/// What the restore-test overdue alert of a plan says: no successful restore test since
/// `last_success` (event [`EVENT_RESTORE_TEST_OVERDUE`]).
pub fn restore_test_overdue_message(p: &Plan, last_success: Option<f64>) -> crate::notify::Message {
    message(
        p,
        EVENT_RESTORE_TEST_OVERDUE,
        format!(
            "no successful restore test since {} (restore-test max-age {})",
            since(last_success),
            p.restore_test
                .as_ref()
                .and_then(|r| r.max_age)
                .map(crate::config::format_duration)
                .unwrap_or_default()
        ),
    )
}

/// Sends `p`'s overdue alert through its notifications; returns the message and the
/// problems of the channels that failed.
pub fn send_overdue(p: &Plan, last_success: Option<f64>) -> (crate::notify::Message, Vec<String>) {
    let m = overdue_message(p, last_success);
    let problems = crate::notify::send(&p.notify, crate::config::Event::Failure, &m);
    (m, problems)
}

/// Sends `p`'s restore-test overdue alert through its notifications; returns the message
/// and the problems of the channels that failed.
pub fn send_restore_test_overdue(
    p: &Plan,
    last_success: Option<f64>,
) -> (crate::notify::Message, Vec<String>) {
    let m = restore_test_overdue_message(p, last_success);
    let problems = crate::notify::send(&p.notify, crate::config::Event::Failure, &m);
    (m, problems)
}

/// An overdue plan, as `cairn status --alert` found it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub plan: String,
    /// What is overdue: `backup` (no successful backup within `max-age`) or
    /// `restore-test` (no successful restore test within the restore test's `max-age`).
    pub what: &'static str,
    /// Why: "no successful backup since ... (max-age ...)".
    pub message: String,
    /// Notified now; `false`: already notified in this overdue episode.
    pub notified: bool,
    /// Channels that failed (when all failed, the next check tries again).
    pub problems: Vec<String>,
}

/// One overdue check of one plan: its episode key, whether it is overdue, its last success
/// and how to word and send its alert.
struct Check {
    what: &'static str,
    key: String,
    overdue: bool,
    last_success: Option<f64>,
    word: fn(&Plan, Option<f64>) -> crate::notify::Message,
    send: fn(&Plan, Option<f64>) -> (crate::notify::Message, Vec<String>),
}

/// `cairn status --alert`: every overdue plan of `rows` (from [`super::plans`]), for its
/// backups and for its restore tests, is notified once per overdue episode; the episodes
/// are kept in `config`'s state directory.
pub fn alert(config: &Config, rows: &[PlanStatus]) -> Result<(Vec<Alert>, Option<String>)> {
    let state = &config.settings.state_dir;
    let (mut alerted, warning) = Alerted::load(state)?;
    let before = alerted.clone();
    let mut out = Vec::new();
    for r in rows {
        let Some(p) = config.plans.get(&r.plan) else {
            continue;
        };
        let mut checks = Vec::new();
        if p.max_age.is_some() {
            checks.push(Check {
                what: "backup",
                key: p.name.clone(),
                overdue: r.overdue,
                last_success: r.last_success,
                word: overdue_message,
                send: send_overdue,
            });
        }
        if r.restore_test_max_age.is_some() {
            checks.push(Check {
                what: "restore-test",
                key: Alerted::restore_test_key(&p.name),
                overdue: r.restore_test_overdue,
                last_success: r.last_restore_test,
                word: restore_test_overdue_message,
                send: send_restore_test_overdue,
            });
        }
        for c in checks {
            let due = alerted.step(&c.key, c.overdue, c.last_success);
            if !c.overdue {
                continue;
            }
            let (message, problems) = if due {
                (c.send)(p, c.last_success)
            } else {
                ((c.word)(p, c.last_success), Vec::new())
            };
            let channels = [&p.notify.healthchecks, &p.notify.ntfy, &p.notify.webhook]
                .iter()
                .filter(|c| c.is_some())
                .count();
            if due && channels > 0 && problems.len() >= channels {
                alerted.unmark(&c.key);
            }
            out.push(Alert {
                plan: p.name.clone(),
                what: c.what,
                message: message.error.unwrap_or_default(),
                notified: due,
                problems,
            });
        }
    }
    if alerted != before {
        alerted.save(state)?;
    }
    Ok((out, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn backup_and_restore_test_episodes_are_separate_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        // A file written before restore-test alerts existed: plan names as keys.
        std::fs::write(
            dir.path().join(Alerted::FILE),
            r#"{ "plans": { "home": 1000.0 } }"#,
        )
        .unwrap();
        let (mut a, warning) = Alerted::load(dir.path()).unwrap();
        assert!(warning.is_none(), "{warning:?}");
        assert!(
            !a.step("home", true, Some(1000.0)),
            "the backup episode read from the old file is remembered"
        );
        let rt = Alerted::restore_test_key("home");
        assert!(
            a.step(&rt, true, None),
            "the restore-test episode is its own"
        );
        assert!(!a.step(&rt, true, None));
        assert!(!a.step("home", false, Some(2000.0)), "backups recovered");
        assert!(
            !a.step(&rt, true, None),
            "a backup success does not re-arm the restore-test alert"
        );
        assert!(
            a.step(&rt, true, Some(3000.0)),
            "a restore test succeeded since"
        );
    }
}
