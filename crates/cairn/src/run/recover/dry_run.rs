//! The runbook's dry run: what would happen, with nothing changed, no hook run, no lock
//! taken and nothing recorded.

use super::layout::Part;
use super::report::{HookReport, RecoverReport};
use super::{exit_code, RecoverOptions};
use crate::config::{Plan, Repository};
use crate::history::Outcome;
use crate::run::child::StepCtx;
use crate::run::{Log, RunFlags, Runner};
use std::path::Path;

impl Runner<'_> {
    /// The dry run: the snapshot, the hooks that would run, what each part would restore
    /// (a child `restore --dry-run`), where each dump would go.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dry_run(
        &self,
        plan: &Plan,
        repo: &Repository,
        opts: &RecoverOptions,
        target: &Path,
        parts: &[Part],
        report: &mut RecoverReport,
        log: &mut Log,
    ) {
        let flags = RunFlags::default();
        let ctx = StepCtx {
            plan: &plan.name,
            run_id: 0,
            step: "restore",
        };
        let snap = match self.find_snapshot(plan, repo, opts, log, &ctx) {
            Ok(s) => s,
            Err((c, e)) => {
                report.result = Outcome::Failure;
                report.error_category = Some(c);
                report.error = Some(e);
                report.exit_code = exit_code(Some(c));
                return;
            }
        };
        for kind in ["before-restore", "after-restore"] {
            let mut scopes: Vec<&(String, crate::config::Hooks)> = plan.hooks.iter().collect();
            if kind == "after-restore" {
                scopes.reverse();
            }
            for (scope, h) in scopes {
                let cmds = match kind {
                    "before-restore" => &h.before_restore,
                    _ => &h.after_restore,
                };
                report.hooks.extend(cmds.iter().map(|c| HookReport {
                    kind: kind.into(),
                    scope: scope.clone(),
                    command: crate::ops::config::command(c),
                    result: None,
                    exit_code: None,
                    error: None,
                }));
            }
        }
        for (part, out) in parts.iter().zip(report.sources.iter_mut()) {
            if let Err(e) = self.restore_part(
                None,
                plan,
                repo,
                &snap.id,
                opts,
                target,
                (part, parts),
                out,
                log,
                &flags,
            ) {
                out.error = Some(format!("{e:#}"));
            }
        }
        match self.recover_dumps(None, plan, repo, &snap.id, opts, target, log, &flags) {
            Ok(d) => report.dumps = d,
            Err(e) => log.line(format!("dumps: {e:#}")),
        }
        report.snapshot = Some(snap);
        if let Some(s) = report.sources.iter().find(|s| s.error.is_some()) {
            report.result = Outcome::Failure;
            report.error = s.error.clone();
            report.exit_code = 1;
        }
    }
}
