//! The restore test: a few random files of the plan's latest snapshot restored into the
//! state directory, verified, compared with the snapshot's sizes, removed after.

use super::child::StepCtx;
use super::protocol::Message;
use super::{plan_tag, ts, Log, RunFlags, Runner};
use crate::config::{Plan, Repository};
use crate::history::{Category, Finish, Outcome};
use anyhow::Result;
use chrono::Utc;

impl Runner<'_> {
    /// Restores `n` random files of the plan's latest snapshot into the state directory,
    /// verified, and compares their sizes with the snapshot's; removes them after.
    pub(super) fn restore_test(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        n: u32,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<(Category, String)>> {
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            "restore-test",
            ts(self.now(flags)),
        )?;
        log.line(format!("== restore test ({n} files)"));
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: "restore-test",
        };
        self.event(&ctx, Message::StepStarted);
        let tag = plan_tag(&plan.name);
        let listed = self.exec_from(
            repo,
            None,
            plan,
            &[
                "ls".into(),
                "latest".into(),
                "--tag".into(),
                tag.clone(),
                "--json".into(),
            ],
            log,
            &ctx,
        );
        let mut result = None;
        if !listed.outcome.ok() {
            result = Some((
                listed.category.unwrap_or(Category::Other),
                format!(
                    "restore test: listing the latest snapshot: {}",
                    listed.error.unwrap_or_default()
                ),
            ));
        }
        let mut files: Vec<(String, u64)> = listed
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["struct_type"] == "node" && v["type"] == "file")
            .filter_map(|v| {
                Some((
                    v["path"].as_str()?.to_string(),
                    v["size"].as_u64().unwrap_or(0),
                ))
            })
            .filter(|(p, _)| !p.contains(['*', '?', '[', '\\']))
            .collect();
        // A different sample each time (xorshift seeded by the clock).
        let mut x = (Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64) | 1;
        let mut sample = Vec::new();
        while !files.is_empty() && sample.len() < n as usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sample.push(files.swap_remove((x % files.len() as u64) as usize));
        }
        // 0700 above the target: the restored files keep their recorded modes.
        let scratch = self.config.settings.state_dir.join("restore-test");
        if result.is_none() && !sample.is_empty() {
            if let Err(e) = crate::sources::private_dir(&scratch) {
                result = Some((Category::Permission, format!("restore test: {e:#}")));
            }
        }
        if result.is_none() && !sample.is_empty() {
            let target = scratch.join(&plan.name);
            let _ = std::fs::remove_dir_all(&target);
            let mut args: Vec<String> = vec![
                "restore".into(),
                "latest".into(),
                "--tag".into(),
                tag,
                "--verify".into(),
                "--target".into(),
                target.display().to_string(),
            ];
            for (p, _) in &sample {
                args.extend(["--include".into(), p.clone()]);
            }
            let r = self.exec_from(repo, None, plan, &args, log, &ctx);
            if !r.outcome.ok() || r.outcome == Outcome::Warning {
                result = Some((
                    r.category.unwrap_or(Category::CorruptData),
                    format!("restore test: {}", r.error.unwrap_or_default()),
                ));
            } else {
                let bad: Vec<String> = sample
                    .iter()
                    .filter(|(p, size)| {
                        std::fs::metadata(target.join(p.trim_start_matches('/')))
                            .map(|m| m.len())
                            .ok()
                            != Some(*size)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                if bad.is_empty() {
                    log.line(format!(
                        "restore test: {} file(s) restored and verified",
                        sample.len()
                    ));
                } else {
                    result = Some((
                        Category::CorruptData,
                        format!(
                            "restore test: {} file(s) did not come back intact: {}",
                            bad.len(),
                            bad.join(", ")
                        ),
                    ));
                }
            }
            let _ = std::fs::remove_dir_all(&target);
        } else if result.is_none() {
            log.line("restore test: the latest snapshot has no files");
        }
        let (outcome, finish) = match &result {
            None => (
                Outcome::Success,
                Finish {
                    files_processed: Some(sample.len() as u64),
                    ..Default::default()
                },
            ),
            Some((c, e)) => (
                Outcome::Failure,
                Finish {
                    category: Some(*c),
                    error: Some(e.clone()),
                    ..Default::default()
                },
            ),
        };
        self.history
            .finish(id, self.end_ts(flags), outcome, &finish)?;
        self.event(
            &ctx,
            Message::StepFinished(super::protocol::StepFinished {
                outcome,
                category: finish.category,
                error: finish.error.clone(),
            }),
        );
        Ok(result)
    }
}
