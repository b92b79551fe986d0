//! One run's page (`/runs/{id}`): result, live progress, steps and log.

use super::*;

pub(super) const RUN_JS: &str = r##"<script>
(function () {
  var main = document.getElementById("run");
  var id = Number(main.getAttribute("data-run"));
  var plan = main.getAttribute("data-plan");
  function fmtBytes(n) { var u = ["B","KiB","MiB","GiB","TiB"], i = 0; n = Number(n) || 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + " " + u[i]; }
  function setResult(r, text) {
    var el = document.getElementById("run-result");
    el.setAttribute("data-result", r);
    el.textContent = text || r;
    el.className = "badge " + (r === "success" ? "ok" : r === "running" ? "running" : (r === "warning" || r === "skipped") ? "warn" : "failed");
  }
  function label(s) {
    var d = s.detail || {};
    if (s.operation === "hook" && d.hook) return "hook " + d.hook + ": " + (d.command || "");
    if (s.operation === "check" && d.policy) return "check " + d.policy + (d.group ? " (" + d.group + ")" : "");
    return s.operation;
  }
  function refresh() {
    fetch("/api/runs/" + id, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (run) {
      var text = run.result + (run.error_category && run.result !== "success" ? ": " + run.error_category : "");
      setResult(run.result, text);
      if (run.log != null) document.getElementById("run-log").textContent = run.log;
      if (run.error) { var e = document.getElementById("run-error"); e.textContent = run.error; e.classList.remove("hidden"); }
      var tb = document.querySelector("#steps tbody");
      tb.textContent = "";
      (run.steps || []).forEach(function (s) {
        var tr = document.createElement("tr");
        [label(s), s.result + (s.error_category ? ": " + s.error_category : ""), s.finished ? (s.finished - s.started).toFixed(1) + "s" : "", s.error || ""].forEach(function (v, i) {
          var td = document.createElement("td"); td.textContent = v; if (i === 2) td.className = "num"; tr.appendChild(td);
        });
        tb.appendChild(tr);
      });
    }).catch(function () {});
  }
  function onJob(s) {
    if (s.plan !== plan || (s.run_id != null && s.run_id !== id)) return;
    var bar = document.getElementById("run-progress");
    var live = document.getElementById("run-live");
    if (s.live) {
      bar.value = s.live.percent_done;
      var l = s.live, t = (s.step ? s.step + ": " : "") + Math.round(l.percent_done * 100) + "% · " + l.files_done + " / " + l.total_files + " files · " + fmtBytes(l.bytes_done) + " / " + fmtBytes(l.total_bytes);
      if (l.bytes_per_second > 0) t += " · " + fmtBytes(l.bytes_per_second) + "/s";
      if (l.seconds_remaining != null && l.percent_done < 1) t += " · ETA " + l.seconds_remaining + "s";
      live.textContent = t;
    } else if (s.step) {
      live.textContent = s.step + "…";
    }
    if (s.state === "finished" && s.run_id === id) {
      if (s.result === "success" || s.result === "warning") bar.value = 1;
      setResult(s.result);
      refresh();
      if (es) es.close();
    }
  }
  var es = null;
  function start() {
    if (main.getAttribute("data-result") !== "running" || !window.EventSource) return;
    es = new EventSource("/api/events");
    es.addEventListener("job", function (ev) { try { onJob(JSON.parse(ev.data)); } catch (e) {} });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
</script>"##;

/// What a restore test step proved, from its history `detail` (`mode`, `snapshot`,
/// `files_restored`, `compared_bytes`, `changed_since`, `sqlite_checked`, `command`,
/// `command_exit`, `dumps`), as a table `#restore-test-STEP`; keys that are missing are
/// left out, and a step without detail (older runs) gets nothing.
pub(super) fn restore_test_detail(step: &Record) -> String {
    let Some(d) = step
        .detail
        .as_ref()
        .filter(|d| step.operation == "restore-test" && d.is_object())
    else {
        return String::new();
    };
    let text = |k: &str| {
        d.get(k).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut rows = Vec::new();
    let mut row =
        |k: &str, v: String| rows.push(format!("<tr><th>{}</th><td>{v}</td></tr>", esc(k)));
    if let Some(m) = text("mode") {
        row("Mode", esc(&m));
    }
    if let Some(s) = text("snapshot") {
        row(
            "Snapshot",
            format!("<code>{}</code>", esc(&s[..s.len().min(8)])),
        );
    }
    if let Some(n) = text("files_restored") {
        row("Files restored", esc(&n));
    }
    if let Some(b) = d.get("compared_bytes").and_then(|v| v.as_u64()) {
        row("Compared byte for byte", bytes(b));
    }
    if let Some(n) = text("changed_since") {
        row("Changed since the snapshot (sizes compared)", esc(&n));
    }
    if let Some(n) = text("sqlite_checked") {
        row("SQLite databases intact", esc(&n));
    }
    if let Some(c) = text("command") {
        let exit = match d.get("command_exit").and_then(|v| v.as_i64()) {
            Some(0) => r#"<span class="badge ok">exit 0</span>"#.to_string(),
            Some(code) => format!(r#"<span class="badge failed">exit {code}</span>"#),
            None => r#"<span class="badge failed">did not finish</span>"#.to_string(),
        };
        row("Command", format!("<code>{}</code> {exit}", esc(&c)));
    }
    if let Some(dumps) = d.get("dumps").and_then(|v| v.as_array()) {
        let items: Vec<String> = dumps
            .iter()
            .map(|x| {
                let s = |k: &str| x.get(k).and_then(|v| v.as_str()).unwrap_or("");
                let n = |k: &str| x.get(k).and_then(|v| v.as_u64());
                let what = match x.get("error").and_then(|e| e.as_str()) {
                    Some(e) => format!(r#"<span class="failed">{}</span>"#, esc(e)),
                    None => {
                        let mut w = vec!["loaded".to_string()];
                        if let Some(n) = n("databases") {
                            w.push(format!("{n} database(s)"));
                        }
                        if let Some(n) = n("tables") {
                            w.push(format!("{n} table(s)"));
                        }
                        format!(r#"<span class="ok">{}</span>"#, w.join(", "))
                    }
                };
                format!("<li><code>{}</code>: {what}</li>", esc(s("path")))
            })
            .collect();
        if !items.is_empty() {
            row("Dumps", format!("<ul>{}</ul>", items.concat()));
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        r#"<h2>Restore test: what was proven</h2><div class="scroll"><table id="restore-test-{}" class="restore-test"><tbody>{}</tbody></table></div>"#,
        step.id,
        rows.concat()
    )
}

pub(super) async fn run_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            &caller,
            StatusCode::BAD_REQUEST,
            "No such run",
            &format!("{id:?} is not a run id."),
        );
    };
    let s = state.clone();
    let detail = match blocking_page(&caller, move || read_run(&s, id)).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error_page(
                &caller,
                StatusCode::NOT_FOUND,
                "No such run",
                &format!("There is no run {id} in the history."),
            )
        }
        Err(r) => return r,
    };
    let run = &detail.run;
    let what = if run.operation == "run" {
        "Run".to_string()
    } else {
        run.operation.clone()
    };
    let mut body = format!(
        r#"<div id="run" data-run="{id}" data-plan="{plan}" data-result="{res}"><h1>{what} {id} · <a href="/history?plan={u}">{plan}</a></h1>"#,
        plan = esc(&run.plan),
        u = url(&run.plan),
        res = run.result.as_str(),
        what = esc(&what),
    );
    let result_text = match (&run.error_category, run.result.ok()) {
        (Some(c), false) => format!("{}: {c}", run.result.as_str()),
        _ => run.result.as_str().to_string(),
    };
    let _ = write!(
        body,
        r#"<p>Result: <span id="run-result" class="badge {class}" data-result="{res}">{text}</span> · repository {repo} · started {started}{finished}{snap}</p>"#,
        class = result_class(run.result),
        res = run.result.as_str(),
        text = esc(&result_text),
        repo = esc(&run.repository),
        started = time(run.started),
        finished = run
            .duration()
            .map(|d| format!(" · took {}", duration(d.as_secs_f64())))
            .unwrap_or_default(),
        snap = run
            .snapshot_id
            .as_deref()
            .map(|s| format!(r#" · snapshot <code>{}</code>"#, esc(&s[..s.len().min(8)])))
            .unwrap_or_default(),
    );
    let _ = write!(
        body,
        r#"<p id="run-error" class="error{}">{}</p>"#,
        if run.error.is_none() { " hidden" } else { "" },
        esc(run.error.as_deref().unwrap_or(""))
    );
    // Progress: live while running, full when done well.
    let (pct, live) = match &detail.live {
        Some(j) => (
            j.live.as_ref().map(|l| l.percent_done).unwrap_or(0.0),
            match (&j.step, &j.live) {
                (Some(step), Some(l)) => format!("{step}: {}", live_text(l)),
                (Some(step), None) => format!("{step}…"),
                _ => job_phase(j.state).to_string(),
            },
        ),
        None if run.result == Outcome::Running => (0.0, "running…".to_string()),
        None if run.result.ok() => (1.0, String::new()),
        None => (0.0, String::new()),
    };
    let _ = write!(
        body,
        r#"<div class="progress-block"><progress id="run-progress" max="1" value="{pct:.3}"></progress><p id="run-live" class="small">{}</p></div>"#,
        esc(&live)
    );
    body.push_str(r#"<h2>Steps</h2><div class="scroll"><table id="steps"><thead><tr><th>Step</th><th>Result</th><th class="num">Duration</th><th>Error</th></tr></thead><tbody>"#);
    for s in &detail.steps {
        let _ = write!(
            body,
            r#"<tr id="step-{sid}"><td>{op}</td><td>{res}</td><td class="num">{dur}</td><td>{err}</td></tr>"#,
            sid = s.id,
            op = esc(&s.label()),
            res = result_badge(s),
            dur = s
                .duration()
                .map(|d| duration(d.as_secs_f64()))
                .unwrap_or_default(),
            err = esc(s.error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table></div>");
    for s in &detail.steps {
        body.push_str(&restore_test_detail(s));
    }
    // `--only restore-test` from elsewhere, or a restore test opened as its own row.
    body.push_str(&restore_test_detail(run));
    let _ = write!(
        body,
        r#"<h2>Log</h2><pre class="log" id="run-log">{}</pre>"#,
        esc(run.log.as_deref().unwrap_or(""))
    );
    for s in detail.steps.iter().filter(|s| s.log.is_some()) {
        let _ = write!(
            body,
            r#"<details id="step-log-{}"><summary>{} output</summary><pre class="log">{}</pre></details>"#,
            s.id,
            esc(&s.label()),
            esc(s.log.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</div>");
    body.push_str(RUN_JS);
    page(
        &format!("{what} {id} of {}", run.plan),
        Some(&caller.viewer()),
        &body,
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's script, run by node against a stand-in DOM: the run ends, the script
    /// redraws the steps table from `/api/runs/{id}`; returns each row's cell classes.
    fn redrawn_step_classes() -> serde_json::Value {
        let script = RUN_JS
            .trim()
            .strip_prefix("<script>")
            .and_then(|s| s.strip_suffix("</script>"))
            .expect("RUN_JS is one script element");
        let harness = r##"
const els = {};
function el(id) {
  return els[id] || (els[id] = { id: id, attrs: {}, value: 0, textContent: "", className: "",
    classList: { remove: function () {} },
    getAttribute: function (k) { return k in this.attrs ? this.attrs[k] : null; },
    setAttribute: function (k, v) { this.attrs[k] = v; } });
}
el("run").attrs = { "data-run": "7", "data-plan": "p", "data-result": "running" };
const rows = [];
const tbody = { set textContent(v) { rows.length = 0; }, appendChild: function (tr) { rows.push(tr); } };
global.document = { readyState: "complete", getElementById: el,
  querySelector: function (q) { return q === "#steps tbody" ? tbody : null; },
  createElement: function (t) { return { tag: t, className: "", textContent: "", children: [],
    appendChild: function (c) { this.children.push(c); } }; },
  addEventListener: function () {} };
let listener = null;
function FakeSource() { this.addEventListener = function (n, f) { listener = f; }; this.close = function () {}; }
global.EventSource = FakeSource;
global.window = { EventSource: FakeSource };
global.fetch = function () { return Promise.resolve({ json: function () { return Promise.resolve({
  result: "success", steps: [{ operation: "backup", result: "success", started: 1, finished: 3.5 }] }); } }); };
"##;
        let run = r##"
listener({ data: JSON.stringify({ plan: "p", run_id: 7, state: "finished", result: "success" }) });
setTimeout(function () {
  console.log(JSON.stringify(rows.map(function (r) { return r.children.map(function (c) { return c.className; }); })));
}, 20);
"##;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.js");
        std::fs::write(&file, format!("{harness}{script}{run}")).unwrap();
        let out = std::process::Command::new("node")
            .arg(&file)
            .output()
            .expect("node (nodejs) runs the page scripts in tests");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn the_redrawn_steps_table_right_aligns_the_duration_like_the_served_one() {
        assert_eq!(
            redrawn_step_classes(),
            serde_json::json!([["", "", "num", ""]])
        );
    }

    #[test]
    fn restore_test_details_are_escaped_and_tolerate_missing_keys() {
        let mut step = Record {
            id: 9,
            run_id: Some(7),
            plan: "p".into(),
            repository: "r".into(),
            operation: "restore-test".into(),
            started: 1.0,
            finished: Some(2.0),
            result: Outcome::Failure,
            files_processed: None,
            bytes_processed: None,
            files_added: None,
            bytes_added: None,
            snapshot_id: None,
            error_category: None,
            error: None,
            log: None,
            user: None,
            detail: Some(serde_json::json!({
                "mode": "full", "files_restored": 3, "command": "test -f \"<x>\"", "command_exit": 1,
                "dumps": [{"path": "/.cairn/dumps/s/postgres-app.sql", "tables": 2, "error": null}]
            })),
        };
        let html = restore_test_detail(&step);
        assert!(html.contains(r#"id="restore-test-9""#), "{html}");
        assert!(
            html.contains("<td>full</td>") && html.contains("<td>3</td>"),
            "{html}"
        );
        assert!(
            html.contains("test -f &quot;&lt;x&gt;&quot;"),
            "escaped: {html}"
        );
        assert!(
            html.contains("exit 1") && html.contains("2 table(s)"),
            "{html}"
        );
        assert!(
            !html.contains("Snapshot"),
            "missing keys are left out: {html}"
        );
        step.detail = None;
        assert_eq!(restore_test_detail(&step), "");
        step.detail = Some(serde_json::json!({"mode": "sample"}));
        step.operation = "check".into();
        assert_eq!(restore_test_detail(&step), "", "only restore tests");
    }
}
