//! The restore test: proof that the plan's latest snapshot restores, by its policy
//! ([`RestoreTestPolicy`]).
//!
//! - `sample`: `files` random files restored with `--verify` into a scratch directory
//!   (`STATE/restore-test/PLAN`, 0700 above it), each compared with the live file at its
//!   recorded path: byte for byte when the live file did not change since the snapshot
//!   (same size and mtime), its size only otherwise ("changed since the snapshot"). The
//!   plan's SQLite databases are restored too (never byte-compared: they were copied
//!   online) and must pass SQLite's integrity check.
//! - `full`: the whole snapshot restored with `--verify`; every file it lists must be
//!   there with its size, every SQLite database of the plan intact.
//! - `verify-dumps`: the plan's dumps restored and loaded into scratch database servers
//!   ([`dumps`]).
//! - `command`: run on the restored tree (`CAIRN_RESTORE_DIR`), with the scratch
//!   servers' addresses when they run; exit 0 proves it. A failing command is
//!   `hook-failed`: it is the user's own check that said no, not a verdict on the
//!   repository's bytes (those failures are `corrupt-data`).
//!
//! The scratch tree is removed before (a killed earlier test) and after, whatever the
//! result. The history row gets a detail saying what was proven ([`proof::Proof`]).

mod compare;
mod dumps;
mod listing;
mod proof;

use super::child::StepCtx;
use super::protocol::Message;
use super::{plan_tag, ts, Log, RunFlags, Runner};
use crate::config::{Password, Plan, Repository, RestoreTestMode, RestoreTestPolicy};
use crate::history::{Category, Finish, Outcome};
use anyhow::Result;
use compare::{compare_sample, full_present};
use listing::{Kind, Node};
use proof::{tail, Proof};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a restore test failed: the category for alerts, the message for people.
pub(super) type Failure = (Category, String);

/// The policy of `cairn run --only restore-test` on a plan without one: `files` random
/// files compared with the live ones, no command, no dumps.
pub(super) fn sample_policy(files: u32) -> RestoreTestPolicy {
    RestoreTestPolicy {
        when: crate::config::When::Always,
        mode: RestoreTestMode::Sample,
        files,
        command: None,
        timeout: std::time::Duration::from_secs(3600),
        verify_dumps: false,
        max_age: None,
    }
}

impl Runner<'_> {
    /// Tests that the plan's latest snapshot restores, as `policy` says (see the module
    /// documentation); recorded as a `restore-test` step of run `run_id`. Returns the
    /// failure, which fails the run.
    pub(super) fn restore_test(
        &self,
        run_id: i64,
        plan: &Plan,
        repo: &Repository,
        policy: &RestoreTestPolicy,
        log: &mut Log,
        flags: &RunFlags,
    ) -> Result<Option<Failure>> {
        let id = self.history.start(
            Some(run_id),
            &plan.name,
            &repo.name,
            "restore-test",
            ts(self.now(flags)),
        )?;
        let mode = match policy.mode {
            RestoreTestMode::Sample => "sample",
            RestoreTestMode::Full => "full",
        };
        log.line(match policy.mode {
            RestoreTestMode::Sample => format!("== restore test (sample, {} files)", policy.files),
            RestoreTestMode::Full => "== restore test (full)".to_string(),
        });
        let ctx = StepCtx {
            plan: &plan.name,
            run_id,
            step: "restore-test",
        };
        self.event(&ctx, Message::StepStarted);
        let mut proof = Proof {
            mode,
            command: policy.command.as_deref().map(crate::ops::config::command),
            ..Default::default()
        };
        let target = self
            .config
            .settings
            .state_dir
            .join("restore-test")
            .join(&plan.name);
        let result = self
            .restore_test_steps(&ctx, plan, repo, policy, &target, &mut proof, log)
            .err();
        if let Err(e) = compare::remove_tree(&target) {
            log.line(format!(
                "warning: could not remove the restore test's files in {}: {e} (the next test retries; or remove it by hand)",
                target.display()
            ));
        }
        match &result {
            None => log.line(proof.summary()),
            Some((_, e)) => log.line(format!("restore test failed: {e}")),
        }
        let (outcome, finish) = match &result {
            None => (
                Outcome::Success,
                Finish {
                    files_processed: Some(proof.files_restored),
                    bytes_processed: Some(proof.bytes_restored),
                    snapshot_id: proof.snapshot.clone(),
                    ..Default::default()
                },
            ),
            Some((c, e)) => (
                if *c == Category::Interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Failure
                },
                Finish {
                    files_processed: Some(proof.files_restored),
                    snapshot_id: proof.snapshot.clone(),
                    category: Some(*c),
                    error: Some(e.clone()),
                    ..Default::default()
                },
            ),
        };
        self.history
            .finish(id, self.end_ts(flags), outcome, &finish)?;
        let detail = serde_json::to_value(&proof).unwrap_or_default();
        if let Err(e) = self.history.set_detail(id, &detail) {
            log.line(format!(
                "warning: what the restore test proved is missing from the history: {e:#}"
            ));
        }
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

    /// The restore test's work, into `proof`; the first failure ends it.
    #[allow(clippy::too_many_arguments)]
    fn restore_test_steps(
        &self,
        ctx: &StepCtx,
        plan: &Plan,
        repo: &Repository,
        policy: &RestoreTestPolicy,
        target: &Path,
        proof: &mut Proof,
        log: &mut Log,
    ) -> Result<(), Failure> {
        // 0700 above the target: the restored files keep their recorded modes.
        if let Some(scratch) = target.parent() {
            crate::sources::private_dir(scratch)
                .map_err(|e| (Category::Permission, format!("restore test: {e:#}")))?;
        }
        compare::remove_tree(target).map_err(|e| {
            (
                Category::Permission,
                format!(
                    "restore test: cannot remove what an earlier restore test left in {}: {e} (remove it by hand)",
                    target.display()
                ),
            )
        })?;
        let listed = self.exec_from(
            repo,
            None,
            plan,
            &[
                "ls".into(),
                "latest".into(),
                "--tag".into(),
                plan_tag(&plan.name),
                "--json".into(),
            ],
            log,
            ctx,
        );
        if !listed.outcome.ok() {
            return Err((
                listed.category.unwrap_or(Category::Other),
                format!(
                    "restore test: listing the latest snapshot: {}",
                    listed.error.unwrap_or_default()
                ),
            ));
        }
        let listing = listing::parse(&listed.stdout);
        let Some(snapshot) = listing.snapshot.clone() else {
            return Err((
                Category::Other,
                format!(
                    "restore test: plan `{}` has no snapshot in repository `{}` yet: nothing to restore (run a backup first: cairn run {})",
                    plan.name, repo.name, plan.name
                ),
            ));
        };
        log.line(format!(
            "restore test: snapshot {}",
            &snapshot[..snapshot.len().min(8)]
        ));
        proof.snapshot = Some(snapshot.clone());
        let by_path: std::collections::HashMap<&str, &Node> =
            listing.nodes.iter().map(|n| (n.path.as_str(), n)).collect();
        let sqlite: Vec<String> = plan
            .sqlite
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let dump_paths: Vec<String> = plan
            .dumps
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        if let Some(missing) = sqlite.iter().find(|p| !by_path.contains_key(p.as_str())) {
            return Err((
                Category::CorruptData,
                format!(
                    "restore test: snapshot {} holds no SQLite database {missing} (the plan backs it up: was the snapshot made before it was added?)",
                    &snapshot[..snapshot.len().min(8)]
                ),
            ));
        }
        // What to restore: in sample mode, random files (the SQLite databases and dumps
        // have their own checks) plus those; in full mode everything.
        let mut args: Vec<String> = vec![
            "restore".into(),
            snapshot.clone(),
            "--verify".into(),
            "--target".into(),
            target.display().to_string(),
        ];
        let sample: Vec<&Node> = match policy.mode {
            RestoreTestMode::Full => Vec::new(),
            RestoreTestMode::Sample => {
                let special: HashSet<&str> = sqlite
                    .iter()
                    .chain(&dump_paths)
                    .map(String::as_str)
                    .collect();
                let pool: Vec<&Node> = listing
                    .nodes
                    .iter()
                    .filter(|n| n.kind == Kind::File && !special.contains(n.path.as_str()))
                    .collect();
                listing::sample(pool, policy.files as usize)
            }
        };
        let restored: Vec<&Node> = match policy.mode {
            RestoreTestMode::Full => listing
                .nodes
                .iter()
                .filter(|n| n.kind == Kind::File)
                .collect(),
            RestoreTestMode::Sample => {
                let mut v = sample.clone();
                v.extend(
                    sqlite
                        .iter()
                        .filter_map(|p| by_path.get(p.as_str()).copied()),
                );
                if policy.verify_dumps {
                    v.extend(
                        dump_paths
                            .iter()
                            .filter_map(|p| by_path.get(p.as_str()).copied()),
                    );
                }
                for n in &v {
                    let exact = super::recover::layout::literal(std::path::Path::new(&n.path));
                    args.extend(["--include".into(), exact]);
                }
                v
            }
        };
        // Sample mode with nothing to include would restore everything: skip it.
        if restored.is_empty() && policy.mode == RestoreTestMode::Sample {
            log.line("restore test: the latest snapshot has no files");
        } else {
            let r = self.exec_from(repo, None, plan, &args, log, ctx);
            if !r.outcome.ok() || r.outcome == Outcome::Warning {
                // `restore` exits 1 without a category when paths could not be restored
                // (their errors are in the log): into cairn's own private scratch
                // directory, that is the repository's data failing to restore.
                let category = match r.category {
                    None | Some(Category::Other) => Category::CorruptData,
                    Some(c) => c,
                };
                return Err((
                    category,
                    format!(
                        "restore test: restoring snapshot {} failed: {}",
                        &snapshot[..snapshot.len().min(8)],
                        r.error.unwrap_or_default()
                    ),
                ));
            }
            proof.files_restored = restored.len() as u64;
            proof.bytes_restored = restored.iter().map(|n| n.size).sum();
            log.line(format!(
                "restore test: {} file(s) restored and verified",
                restored.len()
            ));
        }
        stopping(&self.stop)?;
        let at = |n: &Node| target.join(n.path.trim_start_matches('/'));
        match policy.mode {
            RestoreTestMode::Sample => compare_sample(&self.stop, &sample, &at, proof, log)?,
            RestoreTestMode::Full => full_present(&listing.nodes, &at)?,
        }
        for db in &sqlite {
            let restored = target.join(db.trim_start_matches('/'));
            compare::sqlite_intact(&restored).map_err(|e| {
                (
                    Category::CorruptData,
                    format!("restore test: SQLite database {db}: {e:#}"),
                )
            })?;
            proof.sqlite_checked += 1;
        }
        let mut servers = dumps::Servers::default();
        if policy.verify_dumps && !plan.dumps.is_empty() {
            stopping(&self.stop)?;
            let (reports, s) = dumps::load_all(
                &plan.dumps,
                target,
                |p| by_path.contains_key(p),
                policy.timeout,
                &mut |l| log.line(l),
            );
            servers = s;
            proof.dumps = reports;
            let bad: Vec<String> = proof
                .dumps
                .iter()
                .filter_map(|d| Some(format!("{}: {}", d.path, d.error.as_ref()?)))
                .collect();
            if !bad.is_empty() {
                return Err((
                    Category::CorruptData,
                    format!(
                        "restore test: {} dump(s) did not load into a scratch database: {}",
                        bad.len(),
                        bad.join("; ")
                    ),
                ));
            }
        }
        if let Some(cmd) = &policy.command {
            stopping(&self.stop)?;
            let mut env = vec![
                (
                    "CAIRN_RESTORE_DIR".to_string(),
                    target.display().to_string(),
                ),
                ("CAIRN_PLAN".into(), plan.name.clone()),
                ("CAIRN_REPOSITORY".into(), repo.name.clone()),
                ("CAIRN_SNAPSHOT_ID".into(), snapshot.clone()),
                ("CAIRN_RESTORE_TEST_MODE".into(), proof.mode.into()),
            ];
            env.extend(servers.env());
            let shown = proof.command.clone().unwrap_or_default();
            log.line(format!("restore test: running `{shown}`"));
            let o = crate::hooks::run(
                cmd,
                &env,
                &secret_vars(self.config),
                policy.timeout,
                &self.stop,
            );
            log.output("  ", &o.output);
            proof.command_exit = o.code;
            if !o.ok {
                let category = if self.stop.load(Ordering::Relaxed) {
                    Category::Interrupted
                } else {
                    Category::HookFailed
                };
                let said = tail(&o.output, 5);
                return Err((
                    category,
                    format!(
                        "restore test command `{shown}` {}{}",
                        o.error.as_deref().unwrap_or("failed"),
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {said}")
                        }
                    ),
                ));
            }
        }
        drop(servers);
        Ok(())
    }
}

/// An `Interrupted` failure once cairn is shutting down.
pub(super) fn stopping(stop: &AtomicBool) -> Result<(), Failure> {
    if stop.load(Ordering::Relaxed) {
        return Err((
            Category::Interrupted,
            "restore test: stopped, cairn is shutting down".into(),
        ));
    }
    Ok(())
}

/// Every repository's password variable: the restore test's command gets none.
fn secret_vars(config: &crate::config::Config) -> Vec<String> {
    config
        .repositories
        .values()
        .filter_map(|r| match &r.password {
            Password::Env(var) => Some(var.clone()),
            _ => None,
        })
        .collect()
}
