//! The restore page (`/restore/{repo}/{id}`, admins): the picked items, a target, a
//! preview, then the restore. A restore that outlasts [`keepalive`] streams the page:
//! everything up to `#restore-progress` at once, a progress line (files, bytes) every
//! [`keepalive`], then the report (`#restore-report`) or the error (`#restore-error`).
//! Element ids are listed in [`super::api_data`].

// Handlers' errors are ready responses (axum's own type, ~100 bytes): boxing them would
// only add noise on paths that end the request anyway.
#![allow(clippy::result_large_err)]

use super::api_browse::query_values;
use super::api_data::{field, internal, pairs, picked};
use super::api_restore::{keepalive, preview, progress_line, start, Started};
use super::auth::Caller;
use super::layout::{esc, page, url};
use super::AppState;
use crate::ops::restore::{self as ops_restore, Request};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cairn_repo::restore::Progress;
use tokio::sync::oneshot;

/// The fields of the restore page's form.
struct PageForm {
    items: Vec<Vec<u8>>,
    target: String,
    overwrite: bool,
    action: String,
}

pub(super) async fn restore_page_get(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let form = PageForm {
        items: query_values(q.as_deref(), "item"),
        target: String::new(),
        overwrite: false,
        action: String::new(),
    };
    restore_page(st, caller, repo, id, form).await
}

pub(super) async fn restore_page_post(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let p = pairs(&body);
    let form = PageForm {
        items: picked(&p),
        target: field(&p, "target").unwrap_or_default(),
        overwrite: field(&p, "overwrite").is_some_and(|v| v == "on" || v == "true"),
        action: field(&p, "action").unwrap_or_default(),
    };
    restore_page(st, caller, repo, id, form).await
}

/// The message of an error response, for a page.
async fn message_of(r: Response) -> (StatusCode, String) {
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let msg = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (status, msg)
}

async fn restore_page(
    st: AppState,
    caller: Caller,
    repo: String,
    id: String,
    form: PageForm,
) -> Response {
    let req = Request {
        items: form.items.clone(),
        target: form.target.clone().into(),
        overwrite: form.overwrite,
    };
    let mut status = StatusCode::OK;
    let mut result = String::new();
    let mut running = None;
    let outcome = match form.action.as_str() {
        "preview" => Some(
            preview(st.clone(), repo.clone(), id.clone(), req)
                .await
                .map(|p| preview_html(&p)),
        ),
        "restore" => {
            let user = caller.user.clone();
            let mut started = start(st.clone(), user, repo.clone(), id.clone(), req);
            match tokio::time::timeout(keepalive(), &mut started.done).await {
                Ok(end) => Some(page_end(end)),
                Err(_) => {
                    running = Some(started);
                    None
                }
            }
        }
        _ => None,
    };
    match outcome {
        Some(Ok(html)) => result = html,
        Some(Err(r)) => result = error_html(r, &mut status).await,
        None => {}
    }
    if running.is_some() {
        result = format!(
            r#"<section id="restore-running"><h2>Restoring…</h2><style>#restore-progress p:not(:last-child){{display:none}}</style><div id="restore-progress">{MARK}{CLOSE}"#
        );
    }
    let mut items_html = String::new();
    let mut hidden = String::new();
    for i in &form.items {
        items_html.push_str(&format!(
            "<li><code>{}</code></li>",
            esc(&String::from_utf8_lossy(i))
        ));
        hidden.push_str(&format!(
            r#"<input type="hidden" name="item" value="{}">"#,
            esc(&i.iter().map(|b| format!("%{b:02X}")).collect::<String>())
        ));
    }
    if items_html.is_empty() {
        items_html.push_str("<li>the whole snapshot</li>");
    }
    let body = format!(
        r#"<h1>Restore to a path on the server</h1>
<p>Repository <code>{repo}</code>, snapshot <a href="/browse/{repo_url}/{id_url}"><code>{id}</code></a>. Items are restored below the target relative to their common parent; nothing already there is replaced unless you tick “overwrite”, and a symlink in the target is never followed.</p>
<form method="post" id="restore-form" action="/restore/{repo_url}/{id_url}">
<input type="hidden" name="csrf" value="{csrf}">{hidden}
<h2>Items</h2><ul id="restore-items">{items_html}</ul>
<p><label>Target directory (absolute) <input type="text" name="target" id="restore-target" value="{target}" size="60" required placeholder="/srv/restore"></label></p>
<p><label><input type="checkbox" name="overwrite" id="restore-overwrite"{checked}> overwrite what is already there</label></p>
<p><button type="submit" name="action" value="preview" id="restore-preview">Preview</button> <button type="submit" name="action" value="restore" id="restore-run">Restore</button></p>
</form>
{result}"#,
        repo = esc(&repo),
        id = esc(&id),
        repo_url = esc(&url(&repo)),
        id_url = esc(&url(&id)),
        csrf = esc(&caller.csrf),
        target = esc(&form.target),
        checked = if form.overwrite { " checked" } else { "" },
    );
    let html = page("Restore", Some(&caller.viewer()), &body);
    match running {
        Some(started) => stream_page(html.0, started),
        None => (status, html).into_response(),
    }
}

/// Where a running restore's progress lines go in its page.
const MARK: &str = "<!--restore-progress-->";
/// What closes the progress block.
const CLOSE: &str = "</div></section>";

/// The answer of a restore that ended, as HTML or the error response.
fn page_end(
    end: Result<Result<ops_restore::Report, Response>, oneshot::error::RecvError>,
) -> Result<String, Response> {
    match end {
        Ok(Ok(r)) => Ok(report_html(&r)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(internal("the restore's thread ended without a report")),
    }
}

/// The page's error element for an error response; `status` becomes its status.
async fn error_html(r: Response, status: &mut StatusCode) -> String {
    let (s, msg) = message_of(r).await;
    *status = s;
    format!(r#"<p class="error" id="restore-error">{}</p>"#, esc(&msg))
}

/// The page of a restore still running: everything up to the progress at once, a
/// progress line every [`keepalive`] (the last one shows), then the report (or the
/// error) and the rest of the page.
fn stream_page(html: String, started: Started) -> Response {
    let (head, tail) = match html.split_once(MARK) {
        Some((h, t)) => (h.to_string(), t.to_string()),
        None => (html, String::new()),
    };
    let every = keepalive();
    let Started { progress, done } = started;
    enum Step {
        Head,
        Waiting,
        Done,
    }
    let state = (Step::Head, Some(done), head, tail);
    let stream = futures_util::stream::unfold(state, move |(step, done, head, tail)| {
        let progress = progress.clone();
        async move {
            let line = |p: &Progress| {
                format!(
                    r#"<p class="restore-progress">{}</p>"#,
                    esc(&progress_line(p))
                )
            };
            match step {
                Step::Head => {
                    let chunk = format!("{head}{}", line(&progress));
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(chunk)),
                        (Step::Waiting, done, String::new(), tail),
                    ))
                }
                Step::Waiting => {
                    let mut done = done?;
                    tokio::select! {
                        end = &mut done => {
                            let mut status = StatusCode::OK;
                            let result = match page_end(end) {
                                Ok(h) => h,
                                Err(r) => error_html(r, &mut status).await,
                            };
                            // The progress block closes, the report follows it.
                            let rest = tail.strip_prefix(CLOSE).unwrap_or(&tail);
                            let chunk = format!("{CLOSE}{result}{rest}");
                            Some((Ok(Bytes::from(chunk)), (Step::Done, None, String::new(), String::new())))
                        }
                        _ = tokio::time::sleep(every) => {
                            Some((Ok(Bytes::from(line(&progress))), (Step::Waiting, Some(done), String::new(), tail)))
                        }
                    }
                }
                Step::Done => None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(internal)
}

fn preview_html(p: &ops_restore::PreviewReport) -> String {
    let t = &p.preview.total;
    let mut rows = String::new();
    for e in &p.preview.entries {
        let action = match e.action {
            cairn_repo::restore::PreviewAction::Create => "create",
            cairn_repo::restore::PreviewAction::Overwrite => "overwrite",
            cairn_repo::restore::PreviewAction::Skip => "skip",
            cairn_repo::restore::PreviewAction::Blocked => "blocked",
        };
        rows.push_str(&format!(
            r#"<tr data-action="{action}"><td>{action}</td><td><code>{}</code></td></tr>"#,
            esc(&e.path)
        ));
    }
    let mut per_item = String::new();
    for (name, c) in p.items.iter().zip(&p.preview.per_pick) {
        per_item.push_str(&format!(
            r#"<tr><td><code>{}</code></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(name),
            c.create,
            c.overwrite,
            c.skip,
            c.blocked
        ));
    }
    if !per_item.is_empty() {
        per_item = format!(
            r#"<table id="preview-items"><thead><tr><th>Item</th><th>Create</th><th>Overwrite</th><th>Skip</th><th>Blocked</th></tr></thead><tbody>{per_item}</tbody></table>"#
        );
    }
    let mut errors = String::new();
    for e in &p.preview.errors {
        errors.push_str(&format!(
            "<li><code>{}</code>: {}</li>",
            esc(&e.path),
            esc(&e.error)
        ));
    }
    if !errors.is_empty() {
        errors = format!("<h3>Problems in the snapshot</h3><ul>{errors}</ul>");
    }
    format!(
        r#"<section id="restore-preview-result"><h2>Preview</h2>
<p>Into <code>{target}</code>{ow}: <span id="preview-create">{c}</span> to create, <span id="preview-overwrite">{o}</span> to overwrite, <span id="preview-skip">{s}</span> already there (skipped), <span id="preview-blocked">{b}</span> blocked by a non-directory in the way; {bytes} to write.</p>
{per_item}<table id="preview-table"><thead><tr><th>Action</th><th>Path</th></tr></thead><tbody>{rows}</tbody></table>{more}{errors}</section>"#,
        target = esc(&p.target),
        ow = if p.overwrite { " (overwrite on)" } else { "" },
        c = t.create,
        o = t.overwrite,
        s = t.skip,
        b = t.blocked,
        bytes = crate::units::format_bytes(t.bytes),
        more = if p.preview.truncated {
            "<p>Only the first entries of each kind are listed.</p>"
        } else {
            ""
        },
    )
}

fn report_html(r: &ops_restore::Report) -> String {
    let outcome = match r.outcome {
        ops_restore::Outcome::Complete => "complete",
        ops_restore::Outcome::Incomplete => "incomplete",
        ops_restore::Outcome::Failed => "failed",
    };
    let mut failures = String::new();
    for f in &r.failed {
        failures.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(&f.path),
            esc(&f.error)
        ));
    }
    let mut skipped = String::new();
    for s in &r.skipped {
        skipped.push_str(&format!("<li><code>{}</code></li>", esc(s)));
    }
    format!(
        r#"<section id="restore-report" data-outcome="{outcome}"><h2>Restore {outcome}</h2>
<p>Into <code>{target}</code>: <span id="restore-restored">{files}</span> files and {dirs} directories restored ({bytes}), <span id="restore-skipped">{sc}</span> left unchanged because they were already there, <span id="restore-failed">{fc}</span> failed; {secs:.1} s.</p>
{skipped_html}{failed_html}</section>"#,
        target = esc(&r.target),
        files = r.files_restored,
        dirs = r.dirs_restored,
        bytes = crate::units::format_bytes(r.bytes_written),
        sc = r.skipped_count,
        fc = r.failed_count,
        secs = r.seconds,
        skipped_html = if skipped.is_empty() {
            String::new()
        } else {
            format!("<h3>Left unchanged</h3><ul>{skipped}</ul>")
        },
        failed_html = if failures.is_empty() {
            String::new()
        } else {
            format!(
                r#"<h3>Failed</h3><table id="restore-failures"><thead><tr><th>Path</th><th>Why</th></tr></thead><tbody>{failures}</tbody></table>"#
            )
        },
    )
}
