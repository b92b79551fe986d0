//! A plan's hooks of one kind, in scope order, their output into the run's log.
//!
//! Hooks are not cairn children: they speak no protocol, and a failed one is
//! `hook-failed` whatever it printed. Each command is a step of the run in the history
//! (operation `hook`): its start, duration, result, output as its log, and a detail with
//! the kind, scope, command and exit code.

use super::{ts, Log, RunFlags, Runner};
use crate::config::{Password, Plan};
use crate::history::{Category, Finish, Outcome};
use crate::hooks;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

impl Runner<'_> {
    /// Runs every hook of one kind (`before`, `after`, `success`, `failure`, `finally`,
    /// `before-restore`, `after-restore`), each recorded as a step of run `run_id`;
    /// returns the first failure. A failing `before*` hook stops the rest of its kind.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn hooks(
        &self,
        run_id: i64,
        plan: &Plan,
        kind: &str,
        env: &[(String, String)],
        log: &mut Log,
        stoppable: bool,
        flags: &RunFlags,
    ) -> Option<String> {
        let never = AtomicBool::new(false);
        let stop: &AtomicBool = if stoppable { &self.stop } else { &never };
        let mut scopes: Vec<&(String, crate::config::Hooks)> = plan.hooks.iter().collect();
        // Kinds that open a scope (`before`, `before-restore`) run plan first.
        let opening = kind.starts_with("before");
        if !opening {
            scopes.reverse();
        }
        // Every repository's password variable: a hook is no place for a password.
        let hide: Vec<String> = self
            .config
            .repositories
            .values()
            .filter_map(|r| match &r.password {
                Password::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect();
        let mut first_error = None;
        for (scope, h) in scopes {
            let cmds = match kind {
                "before" => &h.before,
                "after" => &h.after,
                "success" => &h.success,
                "failure" => &h.failure,
                "before-restore" => &h.before_restore,
                "after-restore" => &h.after_restore,
                _ => &h.finally,
            };
            for cmd in cmds {
                // The log and the history show the command as `config show` does: a
                // token in a curl line is nobody's business in a run page.
                let shown = crate::ops::config::command(cmd);
                log.line(format!("== {kind} hook ({scope}): {shown}"));
                let mut env = env.to_vec();
                env.push(("CAIRN_HOOK".into(), kind.into()));
                if let Some(src) = scope.strip_prefix("source ") {
                    env.push(("CAIRN_SOURCE".into(), src.into()));
                }
                let started = ts(self.now(flags));
                let clock = Instant::now();
                let id =
                    self.history
                        .start(Some(run_id), &plan.name, &plan.repository, "hook", started);
                let o = hooks::run(cmd, &env, &hide, h.timeout, stop);
                log.output("  ", &o.output);
                let recorded = id.and_then(|id| {
                    let outcome = match o.ok {
                        true => Outcome::Success,
                        false if stop.load(Ordering::Relaxed) => Outcome::Interrupted,
                        false => Outcome::Failure,
                    };
                    let finish = Finish {
                        category: (!o.ok).then_some(match outcome {
                            Outcome::Interrupted => Category::Interrupted,
                            _ => Category::HookFailed,
                        }),
                        error: o.error.clone(),
                        log: Some(o.output.clone()),
                        ..Default::default()
                    };
                    let end = started + clock.elapsed().as_secs_f64();
                    self.history.finish(id, end, outcome, &finish)?;
                    self.history.set_detail(
                        id,
                        &serde_json::json!({
                            "hook": kind,
                            "scope": scope,
                            "command": shown,
                            "exit_code": o.code,
                        }),
                    )
                });
                if let Err(e) = recorded {
                    log.line(format!(
                        "warning: this hook is missing from the history: {e:#}"
                    ));
                }
                if !o.ok {
                    let e = o.error.as_deref().unwrap_or("failed");
                    log.line(format!("   {kind} hook failed: {e}"));
                    if first_error.is_none() {
                        first_error = Some(format!("{kind} hook ({scope}) `{cmd}` {e}"));
                    }
                    if opening {
                        return first_error;
                    }
                }
            }
        }
        first_error
    }
}
