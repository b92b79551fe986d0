//! Prometheus metrics from the run history, in the text exposition format: served at
//! `/metrics` by the daemon and written as a node-exporter textfile after `cairn run`.
//!
//! Per plan and operation (backup, forget, prune, check, copy, restore-test): time of the last run and of the
//! last success, duration and result of the last run; per plan: bytes and files of the
//! last backup, and whether it is overdue (no success within `max-age`).

use crate::config::Config;
use crate::history::History;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub const OPERATIONS: [&str; 7] = [
    "run",
    "backup",
    "forget",
    "prune",
    "check",
    "copy",
    "restore-test",
];

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text for every plan of `config`, as of `now` (Unix seconds).
pub fn render(config: &Config, history: &History, now: f64) -> Result<String> {
    let mut families: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "cairn_last_run_timestamp_seconds",
            "gauge",
            "Start of the last run of the operation.",
            vec![],
        ),
        (
            "cairn_last_success_timestamp_seconds",
            "gauge",
            "Start of the last successful run of the operation.",
            vec![],
        ),
        (
            "cairn_last_run_duration_seconds",
            "gauge",
            "Duration of the last run of the operation.",
            vec![],
        ),
        (
            "cairn_last_run_success",
            "gauge",
            "1 if the last run of the operation succeeded, else 0.",
            vec![],
        ),
        (
            "cairn_last_backup_bytes_processed",
            "gauge",
            "Bytes read by the last backup.",
            vec![],
        ),
        (
            "cairn_last_backup_bytes_added",
            "gauge",
            "Bytes added to the repository by the last backup.",
            vec![],
        ),
        (
            "cairn_last_backup_files_processed",
            "gauge",
            "Files processed by the last backup.",
            vec![],
        ),
        (
            "cairn_plan_overdue",
            "gauge",
            "1 if the plan has had no successful backup within its max-age.",
            vec![],
        ),
    ];
    for (name, plan) in &config.plans {
        for op in OPERATIONS {
            let labels = format!(
                "plan=\"{}\",repository=\"{}\",operation=\"{op}\"",
                esc(name),
                esc(&plan.repository)
            );
            if let Some(r) = history.last(name, op)? {
                families[0].3.push(format!("{{{labels}}} {}", r.started));
                if let Some(d) = r.duration() {
                    families[2]
                        .3
                        .push(format!("{{{labels}}} {:.3}", d.as_secs_f64()));
                }
                if r.finished.is_some() {
                    families[3]
                        .3
                        .push(format!("{{{labels}}} {}", u8::from(r.result.ok())));
                }
                if op == "backup" {
                    let l = format!(
                        "plan=\"{}\",repository=\"{}\"",
                        esc(name),
                        esc(&plan.repository)
                    );
                    if let Some(b) = r.bytes_processed {
                        families[4].3.push(format!("{{{l}}} {b}"));
                    }
                    if let Some(b) = r.bytes_added {
                        families[5].3.push(format!("{{{l}}} {b}"));
                    }
                    if let Some(f) = r.files_processed {
                        families[6].3.push(format!("{{{l}}} {f}"));
                    }
                }
            }
            if let Some(r) = history.last_ok(name, op)? {
                families[1].3.push(format!("{{{labels}}} {}", r.started));
            }
        }
        if let Some(max) = plan.max_age {
            let last = history.last_ok(name, "backup")?.map(|r| r.started);
            let overdue = crate::run::overdue(max, last, now);
            families[7]
                .3
                .push(format!("{{plan=\"{}\"}} {}", esc(name), u8::from(overdue)));
        }
    }
    let mut out = String::new();
    for (name, kind, help, samples) in families {
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in samples {
            let _ = writeln!(out, "{name}{s}");
        }
    }
    Ok(out)
}

/// Writes the textfile atomically (node-exporter must never read half a file).
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    use anyhow::Context;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cairn.prom")
    ));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
