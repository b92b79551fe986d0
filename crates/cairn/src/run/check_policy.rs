//! A plan's check policies: which one runs now (each is due on its own schedule; when
//! several are, the one reading most runs, once), and the position of a rotating subset
//! (`read-data-subset = "n/t"`), kept in the state directory.
//!
//! What a check counted for is in its history row's `detail`: `policy` (the one that
//! ran), `satisfies` (every policy of its plan it stands for), `read_data` (what it
//! read). A policy's last run is the newest successful check on its repository that
//! counts for it ([`counts_for`]). This module decides; it runs nothing.

use crate::config::{CheckPolicy, When};
use crate::history::Record;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// Whether a successful check `row` counts as a run of policy `p` of `plan`: a check of
/// that plan naming it, any check that read all the data, any check at all for a policy
/// that reads no data (the structure is the repository's, whoever checked it), and a
/// check recorded before policies were recorded (no detail: it counted for every policy
/// then).
pub fn counts_for(row: &Record, plan: &str, p: &CheckPolicy) -> bool {
    let Some(d) = &row.detail else {
        return true;
    };
    if p.read_data.is_none() || d.get("read_data").and_then(|v| v.as_str()) == Some("all") {
        return true;
    }
    row.plan == plan
        && d.get("satisfies")
            .and_then(|v| v.as_array())
            .is_some_and(|ids| ids.iter().any(|i| i.as_str() == Some(p.id.as_str())))
}

/// Each policy's last run (Unix seconds), from the successful checks of its repository,
/// newest first.
pub fn last_runs(rows: &[Record], plan: &str, policies: &[CheckPolicy]) -> Vec<Option<f64>> {
    policies
        .iter()
        .map(|p| {
            rows.iter()
                .find(|r| counts_for(r, plan, p))
                .map(|r| r.started)
        })
        .collect()
}

/// How much a policy reads, to compare: no data < a subset (the larger share first) <
/// all of it.
fn strength(p: &CheckPolicy) -> (u8, u64) {
    let share = |f: f64| (f.clamp(0.0, 1.0) * 1e9) as u64;
    match (p.read_data.as_deref(), p.rotate) {
        (None, _) => (0, 0),
        (Some("all"), _) => (2, 0),
        (_, Some((_, t))) => (1, share(1.0 / f64::from(t))),
        (Some(s), None) => (
            1,
            share(
                s.strip_suffix('%')
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / 100.0,
            ),
        ),
    }
}

/// The policy that runs now (an index into the policies) and every policy its run
/// stands for.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub run: usize,
    pub satisfies: Vec<usize>,
}

/// Which policy runs at `now`, given each one's last run: the strongest of those due (it
/// stands for all of them, so a weaker one does not run again right after); `None` when
/// none is due. `forced` (`--only check`, `--force-check`) with none due runs the one
/// that would come due first, for itself alone.
pub fn choose(
    policies: &[CheckPolicy],
    last: &[Option<f64>],
    now: DateTime<Utc>,
    forced: bool,
) -> Option<Choice> {
    let due: Vec<usize> = (0..policies.len())
        .filter(|&i| super::due(&policies[i].when, last.get(i).copied().flatten(), now))
        .collect();
    // Strongest first; among equals, the first written.
    let strongest = due
        .iter()
        .copied()
        .max_by_key(|&i| (strength(&policies[i]), std::cmp::Reverse(i)));
    if let Some(run) = strongest {
        return Some(Choice {
            run,
            satisfies: due,
        });
    }
    if !forced || policies.is_empty() {
        return None;
    }
    let next = |i: usize| -> Option<DateTime<Utc>> {
        let When::Schedule(s) = &policies[i].when else {
            return Some(now);
        };
        let last = last
            .get(i)
            .copied()
            .flatten()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))?;
        s.next_after(&last.with_timezone(&chrono::Local))
            .map(|n| n.with_timezone(&Utc))
    };
    let run = (0..policies.len())
        .min_by_key(|&i| (next(i).map_or(i64::MAX, |t| t.timestamp()), i))
        .unwrap_or(0);
    Some(Choice {
        run,
        satisfies: vec![run],
    })
}

/// The file holding a rotating policy's next group: `STATE/check-rotation/PLAN.ID`.
pub fn rotation_file(state_dir: &Path, plan: &str, policy: &str) -> PathBuf {
    state_dir
        .join("check-rotation")
        .join(format!("{plan}.{policy}"))
}

/// The group a rotating policy reads next, as (k, t); `None` for other policies. No
/// position yet (or one written for another `t`, or unreadable): group n of `n/t`.
pub fn next_group(state_dir: &Path, plan: &str, p: &CheckPolicy) -> Option<(u32, u32)> {
    let (first, t) = p.rotate?;
    let kept = std::fs::read_to_string(rotation_file(state_dir, plan, &p.id))
        .ok()
        .and_then(|s| {
            let (k, kt) = s.trim().split_once('/')?;
            Some((k.parse::<u32>().ok()?, kt.parse::<u32>().ok()?))
        })
        .filter(|&(k, kt)| kt == t && (1..=t).contains(&k));
    Some(kept.unwrap_or((first, t)))
}

/// After a successful check that read group `k` of `t`: the next run reads the next group
/// (after t, 1 again). Written to a new file renamed over the old one (0600), so a crash
/// leaves the old position or the new one, never half of one.
pub fn advance(state_dir: &Path, plan: &str, policy: &str, (k, t): (u32, u32)) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = rotation_file(state_dir, plan, policy);
    let dir = path.parent().unwrap_or(state_dir);
    crate::sources::private_dir(dir)?;
    let next = if k >= t { 1 } else { k + 1 };
    let tmp = dir.join(format!(".{plan}.{policy}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{next}/{t}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write()
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    .with_context(|| {
        format!(
            "cannot save the next check group {next}/{t} in {} (the same group is read again next time; check the state directory's permissions)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use crate::schedule::Schedule;

    fn policy(id: &str, when: &str, read: Option<&str>) -> CheckPolicy {
        let rotate = read.and_then(|r| {
            let (n, t) = r.split_once('/')?;
            Some((n.parse().ok()?, t.parse().ok()?))
        });
        CheckPolicy {
            id: id.into(),
            when: if when == "always" {
                When::Always
            } else {
                When::Schedule(Schedule::parse(when).unwrap())
            },
            read_data: read.map(String::from),
            rotate,
        }
    }

    fn row(plan: &str, started: f64, detail: Option<serde_json::Value>) -> Record {
        Record {
            id: 1,
            run_id: Some(1),
            plan: plan.into(),
            repository: "nas".into(),
            operation: "check".into(),
            started,
            finished: Some(started + 1.0),
            result: Outcome::Success,
            files_processed: None,
            bytes_processed: None,
            files_added: None,
            bytes_added: None,
            snapshot_id: None,
            error_category: None,
            error: None,
            log: None,
            user: None,
            detail,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_strongest_due_policy_runs_once_and_stands_for_the_weaker() {
        let ps = [
            policy("weekly", "weekly", Some("5%")),
            policy("monthly", "monthly", Some("all")),
            policy("plain", "daily", None),
        ];
        let now = t("2026-12-15T03:00:00Z");
        // Never run: all due, the full read runs for all three.
        assert_eq!(
            choose(&ps, &[None, None, None], now, false),
            Some(Choice {
                run: 1,
                satisfies: vec![0, 1, 2]
            })
        );
        // The full read a day ago: only the daily plain check is due.
        let day_ago = (now - chrono::Duration::hours(25)).timestamp() as f64;
        let c = choose(&ps, &[Some(day_ago); 3], now, false).unwrap();
        assert_eq!(
            c,
            Choice {
                run: 2,
                satisfies: vec![2]
            }
        );
        // A week later the subset is due with the plain one: the subset runs for both.
        let week_ago = (now - chrono::Duration::days(8)).timestamp() as f64;
        let c = choose(
            &ps,
            &[Some(week_ago), Some(day_ago), Some(week_ago)],
            now,
            false,
        );
        assert_eq!(
            c,
            Some(Choice {
                run: 0,
                satisfies: vec![0, 2]
            })
        );
        // Nothing due: nothing runs, unless forced: then the one due first (the daily).
        let recent = (now - chrono::Duration::minutes(5)).timestamp() as f64;
        assert_eq!(choose(&ps, &[Some(recent); 3], now, false), None);
        assert_eq!(
            choose(&ps, &[Some(recent); 3], now, true),
            Some(Choice {
                run: 2,
                satisfies: vec![2]
            })
        );
        // Of two subsets due, the larger share; of equals, the first written.
        let subsets = [
            policy("a", "always", Some("5%")),
            policy("b", "always", Some("1/4")),
            policy("c", "always", Some("25%")),
        ];
        assert_eq!(choose(&subsets, &[None; 3], now, false).unwrap().run, 1);
    }

    #[test]
    fn a_policys_last_run_is_the_newest_check_that_counts_for_it() {
        let ps = [
            policy("weekly", "weekly", Some("5%")),
            policy("#2", "monthly", Some("all")),
            policy("plain", "daily", None),
        ];
        let d = |policy: &str, read: Option<&str>, satisfies: &[&str]| {
            Some(serde_json::json!({"policy": policy, "read_data": read, "satisfies": satisfies}))
        };
        let rows = [
            // Newest first: another plan's 5% (counts for the plain policy only) ...
            row("other", 50.0, d("weekly", Some("5%"), &["weekly"])),
            // ... this plan's subset ...
            row("home", 40.0, d("weekly", Some("5%"), &["weekly", "plain"])),
            // ... another plan's full read (counts for every policy) ...
            row("other", 30.0, d("#1", Some("all"), &["#1"])),
            // ... and a check from before policies were recorded.
            row("home", 20.0, None),
        ];
        assert_eq!(
            last_runs(&rows, "home", &ps),
            [Some(40.0), Some(30.0), Some(50.0)]
        );
        assert_eq!(last_runs(&rows[3..], "home", &ps), [Some(20.0); 3]);
        assert_eq!(last_runs(&[], "home", &ps), [None; 3]);
    }

    #[test]
    fn a_rotating_subset_reads_every_group_once_per_cycle_from_its_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let p = policy("q", "always", Some("2/3"));
        let mut read = Vec::new();
        for _ in 0..4 {
            let g = next_group(state, "home", &p).unwrap();
            read.push(g.0);
            advance(state, "home", &p.id, g).unwrap();
        }
        assert_eq!(read, [2, 3, 1, 2]);
        // Not advanced: the same group again (a failed check does not call advance).
        assert_eq!(next_group(state, "home", &p), Some((3, 3)));
        let file = rotation_file(state, "home", "q");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another t in the config (or a damaged file): from the first group again.
        let p4 = policy("q", "always", Some("1/4"));
        assert_eq!(next_group(state, "home", &p4), Some((1, 4)));
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(next_group(state, "home", &p), Some((2, 3)));
        // Other policies have no group.
        assert_eq!(
            next_group(state, "home", &policy("r", "always", Some("5%"))),
            None
        );
        // No leftovers beside the position files.
        let names: Vec<String> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["home.q"]);
    }
}
