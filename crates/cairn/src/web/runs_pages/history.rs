//! The history (`/history`): past runs, filtered by plan.

use super::*;

pub(super) async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let (plan, limit) = match q.parse() {
        Ok(v) => v,
        Err(e) => return error_page(&caller, StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let s = state.clone();
    let p = plan.clone();
    let runs = match blocking_page(&caller, move || read_history(&s, p.as_deref(), limit)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut body = String::from("<h1>History</h1>");
    let _ = write!(
        body,
        r#"<form method="get" action="/history" id="history-filter" class="inline"><label>Plan <select name="plan" id="history-plan"><option value="">all plans</option>"#
    );
    for name in state.config.plans.keys() {
        let _ = write!(
            body,
            r#"<option value="{n}"{sel}>{n}</option>"#,
            n = esc(name),
            sel = if plan.as_deref() == Some(name.as_str()) {
                " selected"
            } else {
                ""
            }
        );
    }
    let _ = write!(
        body,
        r#"</select></label><input type="hidden" name="limit" value="{limit}"><button type="submit">Show</button></form>"#
    );
    body.push_str(r#"<div class="scroll"><table id="history-table"><thead><tr><th>Run</th><th>Plan</th><th>Started</th><th>Result</th><th class="num">Duration</th><th class="num">Added</th><th>Snapshot</th><th>Steps</th><th>Error</th></tr></thead><tbody>"#);
    if runs.is_empty() {
        body.push_str(r#"<tr><td colspan="9" class="muted">No runs yet.</td></tr>"#);
    }
    for r in &runs {
        let run = &r.run;
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| {
                format!(
                    r#"<span class="{}" title="{}">{}</span>"#,
                    result_class(s.result),
                    esc(s.result.as_str()),
                    esc(&s.operation)
                )
            })
            .collect();
        let _ = write!(
            body,
            r#"<tr id="run-{id}" class="{class}"><td><a href="/runs/{id}">{id}</a></td><td>{plan}</td><td>{started}</td><td>{result}</td><td class="num">{dur}</td><td class="num">{added}</td><td class="mono">{snap}</td><td>{steps}</td><td>{err}</td></tr>"#,
            id = run.id,
            class = if crate::ops::status::failed(run) {
                "failed"
            } else {
                ""
            },
            // A download or restore from the web UI has no plan: what and who instead.
            plan = match &run.user {
                Some(u) if run.plan.is_empty() => esc(&format!("{} by {u}", run.operation)),
                _ => esc(&run.plan),
            },
            started = time(run.started),
            result = result_badge(run),
            dur = run
                .duration()
                .map(|d| duration(d.as_secs_f64()))
                .unwrap_or_default(),
            added = run.bytes_added.map(bytes).unwrap_or_default(),
            snap = esc(run
                .snapshot_id
                .as_deref()
                .map(|s| &s[..s.len().min(8)])
                .unwrap_or("")),
            steps = steps.join(" → "),
            err = esc(run.error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table></div>");
    page("History", Some(&caller.viewer()), &body).into_response()
}
