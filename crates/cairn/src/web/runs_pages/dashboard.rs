//! The dashboard (`/`): plans with their live state and trigger buttons, repositories,
//! every host of each repository, charts; and the trigger form (`POST
//! /plans/{plan}/trigger`).
//!
//! Hosts (`#hosts`): per repository with snapshots a table `#hosts-REPO` (attribute
//! `data-repository`), a row `tr.host` per host (attribute `data-host`, the name escaped)
//! with its snapshots, newest snapshot (time, id linking to its browse page, paths), most
//! recent first; at most [`crate::ops::status::MAX_HOSTS`], then a row `tr.more-hosts`
//! ("and K more hosts"). Host names and paths come from the repository: always escaped.

use super::*;

pub(super) fn live_text(l: &Live) -> String {
    let mut s = format!("{:.0}%", l.percent_done * 100.0);
    if l.total_files > 0 || l.files_done > 0 {
        let _ = write!(s, " · {} / {} files", l.files_done, l.total_files);
    }
    if l.total_bytes > 0 || l.bytes_done > 0 {
        let _ = write!(s, " · {} / {}", bytes(l.bytes_done), bytes(l.total_bytes));
    }
    if l.bytes_per_second > 0.0 {
        let _ = write!(s, " · {}/s", bytes(l.bytes_per_second as u64));
    }
    if let Some(r) = l.seconds_remaining.filter(|_| l.percent_done < 1.0) {
        let _ = write!(s, " · ETA {}", duration(r as f64));
    }
    s
}

pub(super) fn job_phase(s: JobPhase) -> &'static str {
    match s {
        JobPhase::Queued => "queued",
        JobPhase::Running => "running",
        JobPhase::Finished => "finished",
    }
}

/// The live cell of a plan on the dashboard.
pub(super) fn live_cell(plan: &str, job: Option<&JobState>) -> String {
    let id = esc(plan);
    let Some(j) = job else {
        return format!(
            r#"<td id="live-{id}" class="live" data-state="idle"><span class="muted">idle</span><div class="bar hidden" id="bar-{id}" data-percent="0"><span></span></div></td>"#
        );
    };
    let pct = j.live.as_ref().map(|l| l.percent_done).unwrap_or(0.0);
    let mut text = format!(
        "{} {}",
        j.operation.as_str(),
        match (j.state, j.result) {
            (JobPhase::Finished, Some(r)) => r.as_str(),
            (s, _) => job_phase(s),
        }
    );
    if let Some(step) = &j.step {
        let _ = write!(text, " ({step})");
    }
    if let Some(l) = &j.live {
        let _ = write!(text, " · {}", live_text(l));
    }
    let link = j
        .run_id
        .map(|r| format!(r#" <a id="live-link-{id}" href="/runs/{r}">run {r}</a>"#))
        .unwrap_or_default();
    let class = match (j.state, j.result) {
        (JobPhase::Finished, Some(r)) => result_class(r),
        _ => "running",
    };
    format!(
        r#"<td id="live-{id}" class="live" data-state="{state}"{result}><span class="{class}">{text}</span>{link}<div class="bar{bar_class}" id="bar-{id}" data-percent="{pctx:.1}"><span style="width:{pctx:.1}%"></span></div></td>"#,
        state = job_phase(j.state),
        result = j
            .result
            .map(|r| format!(r#" data-result="{}""#, r.as_str()))
            .unwrap_or_default(),
        text = esc(&text),
        bar_class = if j.state == JobPhase::Finished && j.result.is_some_and(|r| !r.ok()) {
            " failed"
        } else if j.state == JobPhase::Finished {
            " ok"
        } else {
            ""
        },
        pctx = pct * 100.0,
    )
}

pub(super) fn trigger_buttons(plan: &str, has_restore_test: bool, csrf: &str) -> String {
    let id = esc(plan);
    let mut b = format!(
        r#"<form method="post" action="/plans/{u}/trigger" class="inline trigger" data-plan="{id}"><input type="hidden" name="csrf" value="{csrf}">"#,
        u = url(plan),
        csrf = esc(csrf),
    );
    for op in Operation::ALL {
        if op == Operation::RestoreTest && !has_restore_test {
            continue;
        }
        let label = match op {
            Operation::Backup => "Back up",
            Operation::Check => "Check",
            Operation::Prune => "Prune",
            Operation::RestoreTest => "Restore test",
        };
        let _ = write!(
            b,
            r#"<button type="submit" name="operation" value="{op}" id="trigger-{op}-{id}"{primary}>{label}</button>"#,
            op = op.as_str(),
            primary = if op == Operation::Backup {
                r#" class="primary""#
            } else {
                ""
            },
        );
    }
    let _ = write!(
        b,
        r#"</form><span id="trigger-msg-{id}" class="small" role="status"></span>"#
    );
    b
}

pub(super) fn plan_row(
    p: &PlanStatus,
    job: Option<&JobState>,
    caller: &Caller,
    has_restore_test: bool,
) -> String {
    let id = esc(&p.plan);
    let failed = p.last_run.as_ref().is_some_and(crate::ops::status::failed);
    let class = if p.overdue {
        "overdue"
    } else if failed {
        "failed"
    } else {
        ""
    };
    let (last, result, dur, added) = match &p.last_run {
        Some(r) => (
            format!(r#"<a href="/runs/{}">{}</a>"#, r.id, time(r.started)),
            result_badge(r),
            r.duration()
                .map(|d| duration(d.as_secs_f64()))
                .unwrap_or_default(),
            r.bytes_added
                .or(p.last_backup.as_ref().and_then(|b| b.bytes_added))
                .map(bytes)
                .unwrap_or_default(),
        ),
        None => (
            r#"<span class="muted">never</span>"#.to_string(),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    let next = match &p.next_run {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|d| time(d.timestamp() as f64))
            .unwrap_or_default(),
        None => r#"<span class="muted">manual</span>"#.into(),
    };
    let overdue = if p.overdue {
        format!(
            r#" <span class="badge overdue" title="no successful backup within {}">overdue</span>"#,
            esc(p.max_age.as_deref().unwrap_or(""))
        )
    } else {
        String::new()
    };
    let check = match &p.last_check {
        Some(c) if !c.result.ok() && c.result != Outcome::Running => {
            format!("{} {}", time(c.started), result_badge(c))
        }
        _ => time_opt(p.last_check_success, "never"),
    };
    let mut row = format!(
        r#"<tr id="plan-{id}" class="{class}"><td><a href="/history?plan={u}">{id}</a>{overdue}</td><td>{repo}</td><td>{last}</td><td>{result}</td><td class="num">{dur}</td><td class="num">{added}</td><td>{next}</td><td>{check}</td><td>{restore}</td>{live}"#,
        u = url(&p.plan),
        repo = esc(&p.repository),
        restore = proven_restore_cell(p),
        live = live_cell(&p.plan, job),
    );
    if caller.role == crate::config::Role::Admin {
        let _ = write!(
            row,
            "<td>{}</td>",
            trigger_buttons(&p.plan, has_restore_test, &caller.csrf)
        );
    }
    row.push_str("</tr>");
    row
}

/// The "Last proven restore" cell of a plan (`#restore-PLAN`, attribute `data-overdue`):
/// when the last restore test succeeded ("never" when none did) and what it proved, a
/// badge when its `max-age` passed without one, and a mark when the last test failed.
pub(super) fn proven_restore_cell(p: &PlanStatus) -> String {
    let id = esc(&p.plan);
    let mut cell = time_opt(p.last_restore_test, "never");
    let last = p.last_restore_test_run.as_ref();
    if let Some(r) = &p.last_restore_test_success {
        let what = crate::ops::status::restore_test_summary(r.detail.as_ref());
        if !what.is_empty() {
            let _ = write!(
                cell,
                r#" <a class="small muted" href="/runs/{}" title="what the restore test proved">{}</a>"#,
                r.run_id.unwrap_or(r.id),
                esc(&what.join(", "))
            );
        }
    }
    if let Some(r) =
        last.filter(|r| crate::ops::status::failed(r) && Some(r.started) != p.last_restore_test)
    {
        let _ = write!(
            cell,
            r#" <a href="/runs/{}" title="{}">{}</a>"#,
            r.run_id.unwrap_or(r.id),
            esc(r.error.as_deref().unwrap_or("the last restore test failed")),
            result_badge(r)
        );
    }
    if p.restore_test_overdue {
        let _ = write!(
            cell,
            r#" <span class="badge overdue" title="no successful restore test within {}">restore test overdue</span>"#,
            esc(p.restore_test_max_age.as_deref().unwrap_or(""))
        );
    }
    format!(
        r#"<span id="restore-{id}" data-overdue="{}">{cell}</span>"#,
        p.restore_test_overdue
    )
}

pub(super) fn repo_row(r: &RepositoryStatus) -> String {
    let id = esc(&r.repository);
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let error = r
        .error
        .as_deref()
        .map(|e| format!(r#"<span class="error">{}</span>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<tr id="repo-{id}"><td>{id}</td><td>{plans}</td><td class="num">{size}</td><td class="num">{snaps}</td><td>{hosts}</td><td>{last}</td><td>{error}</td></tr>"#,
        plans = esc(&r.plans.join(", ")),
        size = r.size.map(bytes).unwrap_or_default(),
        snaps = num(r.snapshots),
        hosts = hosts_cell(r),
        last = r
            .last_snapshot
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|d| time(d.timestamp() as f64))
            .unwrap_or_default(),
    )
}

/// The hosts cell of a repository's row: the names when there are a few, else how many;
/// either way a link to the repository's hosts table.
pub(super) fn hosts_cell(r: &RepositoryStatus) -> String {
    let n = r.hosts.len() as u64;
    if n == 0 {
        return String::new();
    }
    let text = if n <= 3 {
        esc(&r.hosts.join(", "))
    } else {
        format!("{n} hosts")
    };
    format!(
        r##"<a href="#hosts-{id}" class="hosts-link">{text}</a>"##,
        id = esc(&r.repository)
    )
}

/// The hosts of every repository (`#hosts`): see the module docs.
pub(super) fn hosts_section(repos: &[RepositoryStatus]) -> String {
    let mut out = String::from(r#"<section id="hosts"><h2>Hosts</h2>"#);
    let mut any = false;
    for r in repos.iter().filter(|r| !r.by_host.is_empty()) {
        any = true;
        let id = esc(&r.repository);
        let total = r.by_host.len() as u64 + r.more_hosts;
        let _ = write!(
            out,
            r#"<h3>{id} <span class="muted small">{total} host{s}, most recent first</span></h3><div class="scroll"><table class="hosts" id="hosts-{id}" data-repository="{id}"><thead><tr><th>Host</th><th class="num">Snapshots</th><th>Latest snapshot</th><th>Id</th><th>Paths</th></tr></thead><tbody>"#,
            s = if total == 1 { "" } else { "s" },
        );
        for h in &r.by_host {
            let name = if h.host.is_empty() {
                r#"<span class="muted">(none)</span>"#.to_string()
            } else {
                esc(&h.host)
            };
            let latest = DateTime::parse_from_rfc3339(&h.latest)
                .map(|d| time(d.timestamp() as f64))
                .unwrap_or_default();
            let mut paths = esc(&h.latest_paths.join(", "));
            if h.latest_paths_more > 0 {
                let _ = write!(
                    paths,
                    r#" <span class="muted">and {} more</span>"#,
                    h.latest_paths_more
                );
            }
            let _ = write!(
                out,
                r#"<tr class="host" data-host="{host}"><td>{name}</td><td class="num">{n}</td><td>{latest}</td><td><a href="/browse/{ru}/{iu}"><code>{short}</code></a></td><td>{paths}</td></tr>"#,
                host = esc(&h.host),
                n = h.snapshots,
                ru = url(&r.repository),
                iu = url(&h.latest_id),
                short = esc(h.latest_id.get(..8).unwrap_or(&h.latest_id)),
            );
        }
        if r.more_hosts > 0 {
            let _ = write!(
                out,
                r#"<tr class="more-hosts"><td colspan="5" class="muted">and {k} more host{s} with older snapshots (<a href="/snapshots#repo-{id}">all snapshots</a>)</td></tr>"#,
                k = r.more_hosts,
                s = if r.more_hosts == 1 { "" } else { "s" },
            );
        }
        out.push_str("</tbody></table></div>");
    }
    if !any {
        out.push_str(r#"<p class="muted">No snapshots read yet.</p>"#);
    }
    out.push_str("</section>");
    out
}

pub(super) const DASHBOARD_JS: &str = r##"<script>
(function () {
  function csrf() { var m = document.querySelector('meta[name="csrf"]'); return m ? m.content : ""; }
  function fmtBytes(n) { var u = ["B","KiB","MiB","GiB","TiB"], i = 0; n = Number(n) || 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + " " + u[i]; }
  function liveText(l) {
    var t = Math.round(l.percent_done * 100) + "%";
    if (l.total_files || l.files_done) t += " · " + l.files_done + " / " + l.total_files + " files";
    if (l.total_bytes || l.bytes_done) t += " · " + fmtBytes(l.bytes_done) + " / " + fmtBytes(l.total_bytes);
    if (l.bytes_per_second > 0) t += " · " + fmtBytes(l.bytes_per_second) + "/s";
    if (l.seconds_remaining != null && l.percent_done < 1) t += " · ETA " + l.seconds_remaining + "s";
    return t;
  }
  function render(s) {
    var cell = document.getElementById("live-" + s.plan);
    if (!cell) return;
    var done = s.state === "finished";
    var text = s.operation + " " + (done && s.result ? s.result : s.state) + (s.step ? " (" + s.step + ")" : "") + (s.live ? " · " + liveText(s.live) : "");
    if (done && s.error) text += ": " + s.error;
    cell.setAttribute("data-state", s.state);
    if (s.result) cell.setAttribute("data-result", s.result); else cell.removeAttribute("data-result");
    var span = cell.querySelector("span");
    span.className = done ? (s.result === "success" ? "ok" : (s.result === "warning" || s.result === "skipped") ? "warn" : "failed") : "running";
    span.textContent = text;
    var link = document.getElementById("live-link-" + s.plan);
    if (s.run_id != null) {
      if (!link) { link = document.createElement("a"); link.id = "live-link-" + s.plan; span.after(document.createTextNode(" "), link); }
      link.href = "/runs/" + s.run_id; link.textContent = "run " + s.run_id;
    }
    var bar = document.getElementById("bar-" + s.plan);
    var pct = s.live ? s.live.percent_done : (done && s.result === "success" ? 1 : 0);
    bar.classList.remove("hidden", "ok", "failed");
    if (done) bar.classList.add(s.result === "success" || s.result === "warning" ? "ok" : "failed");
    bar.setAttribute("data-percent", (pct * 100).toFixed(1));
    bar.firstElementChild.style.width = (pct * 100).toFixed(1) + "%";
  }
  function start() {
    if (window.EventSource) {
      var es = new EventSource("/api/events");
      es.addEventListener("job", function (ev) { try { render(JSON.parse(ev.data)); } catch (e) {} });
    }
    document.querySelectorAll("form.trigger").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.fetch) return;
        ev.preventDefault();
        var plan = f.getAttribute("data-plan");
        var op = ev.submitter ? ev.submitter.value : "backup";
        var msg = document.getElementById("trigger-msg-" + plan);
        msg.textContent = "starting " + op + "…"; msg.className = "small";
        fetch("/api/plans/" + encodeURIComponent(plan) + "/trigger", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
          body: JSON.stringify({ operation: op })
        }).then(function (r) {
          return r.json().then(function (j) {
            if (r.ok) { msg.textContent = op + " queued"; render(j); }
            else { msg.textContent = j.error || ("refused: " + r.status); msg.className = "small error"; }
          });
        }).catch(function (e) { msg.textContent = "request failed: " + e; msg.className = "small error"; });
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
</script>"##;

pub(super) async fn dashboard(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let peers = crate::web::peers::start(&state.config, true);
    let s = state.clone();
    let status = match blocking_page(&caller, move || read_status(&s)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let jobs = state.jobs.hub().snapshot();
    let admin = caller.role == crate::config::Role::Admin;
    let mut body = String::from("<h1>Dashboard</h1>");
    if let Some(p) = q.get("started") {
        let _ = write!(
            body,
            r#"<p class="notice">Started an operation of plan {}: its progress shows below.</p>"#,
            esc(p)
        );
    }
    let overdue: Vec<&str> = status
        .plans
        .iter()
        .filter(|p| p.overdue)
        .map(|p| p.plan.as_str())
        .collect();
    if !overdue.is_empty() {
        let _ = write!(
            body,
            r#"<p class="error" id="overdue-notice">Overdue (no successful backup within max-age): {}</p>"#,
            esc(&overdue.join(", "))
        );
    }
    let untested: Vec<&str> = status
        .plans
        .iter()
        .filter(|p| p.restore_test_overdue)
        .map(|p| p.plan.as_str())
        .collect();
    if !untested.is_empty() {
        let _ = write!(
            body,
            r#"<p class="error" id="restore-test-overdue-notice">Restore test overdue (no successful restore test within its max-age): {}</p>"#,
            esc(&untested.join(", "))
        );
    }
    body.push_str(r#"<section id="plans"><h2>Plans</h2><div class="scroll"><table id="plans-table"><thead><tr><th>Plan</th><th>Repository</th><th>Last run</th><th>Result</th><th class="num">Duration</th><th class="num">Added</th><th>Next run</th><th>Last check</th><th>Last proven restore</th><th>Now</th>"#);
    if admin {
        body.push_str("<th>Start</th>");
    }
    body.push_str("</tr></thead><tbody>");
    if status.plans.is_empty() {
        body.push_str(
            r#"<tr><td colspan="11" class="muted">No plans in the config yet.</td></tr>"#,
        );
    }
    for p in &status.plans {
        let job = jobs.iter().find(|j| j.plan == p.plan);
        let rt = state
            .config
            .plans
            .get(&p.plan)
            .is_some_and(|c| c.restore_test.is_some());
        body.push_str(&plan_row(p, job, &caller, rt));
    }
    body.push_str("</tbody></table></div></section>");
    body.push_str(r#"<section id="repositories"><h2>Repositories</h2><div class="scroll"><table id="repositories-table"><thead><tr><th>Repository</th><th>Plans</th><th class="num">Size</th><th class="num">Snapshots</th><th>Hosts</th><th>Last snapshot</th><th></th></tr></thead><tbody>"#);
    for r in &status.repositories {
        body.push_str(&repo_row(r));
    }
    body.push_str("</tbody></table></div></section>");
    body.push_str(&hosts_section(&status.repositories));
    body.push_str(&crate::web::peers::section(&peers.await));
    body.push_str(r#"<section id="charts"><h2>Duration and data added per run</h2>"#);
    for p in &status.plans {
        let _ = write!(
            body,
            r#"<figure><figcaption>{}</figcaption>{}</figure>"#,
            esc(&p.plan),
            chart_svg(&p.plan, &p.chart)
        );
    }
    body.push_str("</section>");
    body.push_str(DASHBOARD_JS);
    page("Dashboard", Some(&caller.viewer()), &body).into_response()
}

pub(super) async fn trigger_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(plan): Path<String>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let op = form
        .ok()
        .and_then(|Form(f)| f.get("operation").cloned())
        .unwrap_or_else(|| "backup".into());
    let p = plan.clone();
    let result =
        tokio::task::spawn_blocking(move || crate::web::api_runs::start(&state, &p, &op)).await;
    match result {
        Ok(Ok(_)) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/?started={}", url(&plan)))],
        )
            .into_response(),
        Ok(Err((status, body))) => error_page(
            &caller,
            status,
            "Not started",
            &format!(
                "The operation of plan {plan} was not started: {}.",
                body["error"].as_str().unwrap_or("refused")
            ),
        ),
        Err(_) => error_page(
            &caller,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "The request failed.",
        ),
    }
}
