//! Pages of plans and runs: the dashboard (`/`), the history (`/history`), one run
//! (`/runs/{id}`), and the trigger form (`POST /plans/{plan}/trigger`, admin).
//!
//! Stable element ids (the Chromium test and scripts rely on them; PLAN is the plan's
//! name as is, REPO the repository's):
//! - dashboard: `#plans-table`, a row `#plan-PLAN` per plan (class `overdue` when no
//!   successful backup within max-age, `failed` when the last run failed), its live cell
//!   `#live-PLAN` (attribute `data-state`: idle, queued, running, finished; `data-result`
//!   once finished) with a bar `#bar-PLAN` (attribute `data-percent`) and, once the run
//!   has an id, a link `#live-link-PLAN` to its run page; trigger buttons (admins only)
//!   `#trigger-backup-PLAN`, `#trigger-check-PLAN`, `#trigger-prune-PLAN`,
//!   `#trigger-restore-test-PLAN`, and the trigger's answer in `#trigger-msg-PLAN`;
//!   `#repositories-table` with a row `#repo-REPO` per repository; one chart
//!   `svg#chart-PLAN` per plan (in `#charts`); the last proven restore of a plan in
//!   `#restore-PLAN` (attribute `data-overdue`: true when no restore test succeeded within
//!   the restore test's max-age), and `#restore-test-overdue-notice` naming those plans.
//! - history: the filter form `#history-filter` with `select#history-plan`, the table
//!   `#history-table`, a row `#run-ID` per run linking to its page.
//! - run page: `#run-result` (attribute `data-result`: running, success, warning, failure,
//!   interrupted, skipped), `progress#run-progress` (value 0 to 1), `#run-live` (files,
//!   bytes, rate, ETA), `#steps` (a row per step), `#restore-test-STEP` (what a restore
//!   test step proved: mode, files, compared bytes, command, dumps), `#run-log` (the run's
//!   log).
//!
//! Live updates come from `EventSource('/api/events')` in a small inline script per page;
//! every page is complete without it.

use super::api_runs::{read_history, read_run, read_status, HistoryQuery};
use super::auth::Caller;
use super::layout::{esc, page, url};
use super::routes::{Access, Route};
use super::AppState;
use crate::history::{Outcome, Record};
use crate::ops::jobs::{JobState, Live, Operation, State as JobPhase};
use crate::ops::status::{ChartPoint, PlanStatus, RepositoryStatus};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Local, Utc};
use std::collections::HashMap;
use std::fmt::Write as _;

mod chart;
mod dashboard;
mod history;
mod run;

pub use chart::*;
use dashboard::*;
use history::*;
use run::*;

pub fn routes() -> Vec<Route> {
    vec![
        Route::page(
            "/",
            Access::Viewer,
            "Dashboard: plans, repositories, charts, live operations",
            axum::routing::get(dashboard),
        ),
        Route::page(
            "/history",
            Access::Viewer,
            "Runs, newest first",
            axum::routing::get(history),
        )
        .with_query(&[("plan", "only this plan"), ("limit", "how many runs")]),
        Route::page(
            "/runs/{id}",
            Access::Viewer,
            "One run: steps, logs, error categories, live progress",
            axum::routing::get(run_page),
        ),
        Route {
            method: "POST",
            path: "/plans/{plan}/trigger",
            access: Access::Admin,
            summary:
                "Trigger form of the dashboard (fields operation, csrf); redirects to the dashboard",
            query: &[],
            page: true,
            handler: axum::routing::post(trigger_form),
        },
    ]
}

fn error_page(caller: &Caller, status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="error">{}</p><p><a href="/">Back to the dashboard</a></p>"#,
        esc(title),
        esc(message)
    );
    (status, page(title, Some(&caller.viewer()), &body)).into_response()
}

async fn blocking_page<T: Send + 'static>(
    caller: &Caller,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            eprintln!("web: {e:#}");
            Err(error_page(
                caller,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the history",
                "The history database could not be read; the server's log says why.",
            ))
        }
        Err(_) => Err(error_page(
            caller,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "The request failed.",
        )),
    }
}

/// `<time>` of Unix seconds, local time as text (the script makes it relative).
fn time(t: f64) -> String {
    match DateTime::<Utc>::from_timestamp(t as i64, 0) {
        Some(d) => format!(
            r#"<time datetime="{}">{}</time>"#,
            d.to_rfc3339(),
            d.with_timezone(&Local).format("%Y-%m-%d %H:%M")
        ),
        None => String::new(),
    }
}

fn time_opt(t: Option<f64>, none: &str) -> String {
    t.map(time)
        .unwrap_or_else(|| format!(r#"<span class="muted">{}</span>"#, esc(none)))
}

/// `1.5s`, `3m 05s`, `2h 10m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{}h {:02}m", (s / 3600.0) as u64, ((s as u64) % 3600) / 60)
    }
}

fn bytes(n: u64) -> String {
    crate::units::format_bytes(n)
}

fn result_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "ok",
        Outcome::Warning | Outcome::Skipped => "warn",
        Outcome::Running => "running",
        Outcome::Failure | Outcome::Interrupted => "failed",
    }
}

fn result_badge(r: &Record) -> String {
    let mut text = r.result.as_str().to_string();
    if let (Some(c), false) = (&r.error_category, r.result.ok()) {
        text = format!("{text}: {c}");
    }
    format!(
        r#"<span class="badge {}">{}</span>"#,
        result_class(r.result),
        esc(&text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(1.25), "1.2s");
        assert_eq!(duration(125.0), "2m 05s");
        assert_eq!(duration(7260.0), "2h 01m");
    }
}
