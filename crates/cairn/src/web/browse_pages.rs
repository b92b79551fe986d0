//! Pages of the snapshot browser: every repository's snapshots (`/snapshots`), one
//! directory (`/browse/{repo}/{id}?path=`), search (`.../find?q=`), where the space goes
//! (`.../sizes?path=`), one file with its preview (`.../file?path=`), the versions of one
//! path (`/versions/{repo}?path=`) and a diff (`/diff/{repo}?a=&b=`). Rendered on the
//! server from [`crate::ops::browse`], like the API in [`super::api_browse`].
//!
//! `path=` values are percent-encoded path bytes. Stable element ids (the Chromium test
//! and scripts rely on them; REPO is the repository's name as is):
//! - snapshots: `#snapshots`; per repository a `section#repo-REPO` with a table
//!   `table.snapshots`, one row `tr#snap-ID` (full id) per snapshot with a link
//!   `a.browse` to its browse page and, when there is an older snapshot of the same
//!   plan and host, `a.diff` to the diff with it; a repository that cannot be opened
//!   shows `p.error` in its section.
//! - browse: `#breadcrumbs` (one `a` per ancestor), the search form `form#search`
//!   (`input#search-q`, `button#search-go`), `a#sizes-link`, `a#snapshot-versions`
//!   (the snapshots list), the diff form `form#diff-form` (`select#diff-a` of the other
//!   snapshots, `button#diff-go`: the changes from the chosen one to this one), the pick form `form#pick` (hidden `repo` and `snapshot`
//!   fields; a checkbox `input[name=item]` per entry whose value is the entry's full path,
//!   percent-encoded bytes: decode it with [`crate::ops::browse::decode_component`]; the
//!   checkbox `#pick-all` selects all) with `div#pick-actions` for the buttons of other
//!   modules ([`PICK_ACTIONS`]), the table `table#listing` with one `tr.entry` per entry
//!   (attributes `data-name`, `data-type`) whose name links are `a.open`, and whose files
//!   have `a.versions`.
//! - find: `table#find-results` (rows `tr.hit`), `#find-truncated` when capped.
//! - sizes: `table#sizes` (rows `tr.size-entry`, `data-bytes`), `#sizes-total`.
//! - file: `#node` (metadata table), `#preview` (a `pre` for text, an `img` for images, or
//!   `p.error` when there is no preview), `a#file-versions`.
//! - versions: `table#versions` (rows `tr.version`, class `changed` when the content
//!   differs from the previous snapshot that had it, `missing` when absent).
//! - diff: `#diff-summary`, `table#diff` (rows `tr.change`, `data-modifier`).

// Handlers answer errors as ready `Response`s; boxing them buys nothing per request.
#![allow(clippy::result_large_err)]

use super::api_browse::{query_path, query_text, status_of};
use super::auth::Caller;
use super::layout::{error_page, esc, page, url, Viewer};
use super::routes::{Access, Route};
use super::AppState;
use crate::ops::browse::{self, encode_path, Entry, NameQuery, PreviewKind, SnapPath};
use crate::ops::repos::Open;
use crate::units::format_bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::sync::Arc;

/// Buttons other modules put into the pick form's `div#pick-actions` (downloads,
/// restore): each gets the repository, the snapshot id, the folder shown (its path
/// percent-encoded: what the buttons act on when nothing is ticked) and whether the
/// caller is an admin, and returns HTML (escaped by it) for inside the form.
pub type PickActions = fn(repo: &str, snapshot: &str, folder: &str, admin: bool) -> String;

/// The modules adding pick actions (append yours).
pub const PICK_ACTIONS: &[PickActions] = &[super::api_data::pick_actions];

/// At most this many rows of one directory are rendered (the API has them all).
pub const MAX_ROWS: usize = 5000;

/// The page header's view of `c`.
fn viewer(c: &Caller) -> Viewer<'_> {
    Viewer {
        user: &c.user,
        admin: c.role == crate::config::Role::Admin,
        csrf: &c.csrf,
    }
}

/// Runs `f` with repository `repo` on a blocking thread; errors become a readable page.
async fn with_repo<T: Send + 'static>(
    st: &AppState,
    caller: &Caller,
    repo: String,
    f: impl FnOnce(&Arc<Open>) -> cairn_repo::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let st = st.clone();
    match tokio::task::spawn_blocking(move || {
        let open = st.repos.get(&repo)?;
        f(&open)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let (status, hint) = status_of(&e);
            if status.is_server_error() {
                eprintln!("web: {e}");
            }
            Err(error_page(
                status,
                Some(&viewer(caller)),
                "Cannot show this",
                &format!("{e} ({hint})"),
            ))
        }
        Err(e) => {
            eprintln!("web: a request's worker failed: {e}");
            Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&viewer(caller)),
                "Internal error",
                "see the server's log",
            ))
        }
    }
}

/// A query error (already a JSON response from the API helpers) as a page.
fn bad_request(caller: &Caller, what: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        Some(&viewer(caller)),
        "Bad request",
        what,
    )
}

fn page_path(caller: &Caller, q: &Option<String>) -> Result<SnapPath, Response> {
    if let Err(_e) = super::api_browse::check_query(q) {
        return Err(error_page(
            StatusCode::URI_TOO_LONG,
            Some(&viewer(caller)),
            "Bad request",
            "query string too long",
        ));
    }
    query_path(q.as_deref()).map_err(|_| {
        bad_request(
            caller,
            "bad path: give it from the snapshot's root, without `.` or `..`",
        )
    })
}

fn browse_href(repo: &str, id: &str, path_url: &str) -> String {
    format!("/browse/{}/{}?path={path_url}", url(repo), url(id))
}

fn render(title: &str, caller: &Caller, body: &str) -> Response {
    let v: Viewer<'_> = viewer(caller);
    page(title, Some(&v), body).into_response()
}

/// `/` `home` `me` as links.
fn breadcrumbs(repo: &str, id: &str, path: &SnapPath) -> String {
    let mut out = format!(
        r#"<nav id="breadcrumbs"><a href="/snapshots">{}</a> · <a href="{}">{}</a>"#,
        esc(repo),
        browse_href(repo, id, "/"),
        esc(&id[..id.len().min(8)]),
    );
    let mut cur = SnapPath::default();
    for c in &path.0 {
        cur = cur.child(c);
        out.push_str(&format!(
            r#" / <a href="{}">{}</a>"#,
            browse_href(repo, id, &encode_path(&cur.bytes())),
            esc(&String::from_utf8_lossy(c)),
        ));
    }
    out.push_str("</nav>");
    out
}

async fn snapshots_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let names = st.repos.names();
    let mut body = String::from(r#"<h1>Snapshots</h1><div id="snapshots">"#);
    for name in names {
        let repo = name.clone();
        let r = {
            let st = st.clone();
            tokio::task::spawn_blocking(move || {
                let open = st.repos.get(&repo)?;
                browse::snapshots(&open, &Default::default())
            })
            .await
        };
        body.push_str(&format!(
            r#"<section id="repo-{n}"><h2>{n}</h2>"#,
            n = esc(&name)
        ));
        let list = match r {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                body.push_str(&format!(
                    r#"<p class="error">{}</p></section>"#,
                    esc(&e.to_string())
                ));
                continue;
            }
            Err(_) => {
                body.push_str(r#"<p class="error">internal error</p></section>"#);
                continue;
            }
        };
        if list.is_empty() {
            body.push_str("<p>No snapshots yet.</p></section>");
            continue;
        }
        // Grouped by plan and host; newest first within a group.
        let mut groups: std::collections::BTreeMap<(String, String), Vec<&browse::SnapshotInfo>> =
            Default::default();
        for s in &list {
            groups
                .entry((s.plan.clone().unwrap_or_default(), s.hostname.clone()))
                .or_default()
                .push(s);
        }
        for ((plan, host), snaps) in groups {
            let plan_label = if plan.is_empty() {
                "no plan".to_string()
            } else {
                format!("plan {plan}")
            };
            body.push_str(&format!(
                r#"<h3>{} · host {}</h3><table class="snapshots"><thead><tr><th>Time</th><th>ID</th><th>Paths</th><th>Tags</th><th></th></tr></thead><tbody>"#,
                esc(&plan_label),
                esc(&host)
            ));
            for (i, s) in snaps.iter().enumerate().rev() {
                let diff = match i.checked_sub(1).map(|p| snaps[p]) {
                    Some(prev) => format!(
                        r#"<a class="diff" href="/diff/{}?a={}&amp;b={}">diff with previous</a>"#,
                        url(&name),
                        url(&prev.id),
                        url(&s.id)
                    ),
                    None => String::new(),
                };
                body.push_str(&format!(
                    r#"<tr id="snap-{id}"><td>{time}</td><td><a class="browse" href="{href}">{short}</a></td><td>{paths}</td><td>{tags}</td><td>{diff}</td></tr>"#,
                    id = esc(&s.id),
                    time = esc(&s.time),
                    href = browse_href(&name, &s.id, "/"),
                    short = esc(&s.short_id),
                    paths = esc(&s.paths.join(", ")),
                    tags = esc(&s.tags.join(", ")),
                ));
            }
            body.push_str("</tbody></table>");
        }
        body.push_str("</section>");
    }
    body.push_str("</div>");
    render("Snapshots", &caller, &body)
}

fn entry_row(repo: &str, id: &str, e: &Entry) -> String {
    let (href, size) = if e.kind == "dir" {
        (browse_href(repo, id, &e.path_url), String::from("—"))
    } else {
        (
            format!("/browse/{}/{}/file?path={}", url(repo), url(id), e.path_url),
            format_bytes(e.size),
        )
    };
    let name = if e.kind == "dir" {
        format!("{}/", e.name)
    } else if let Some(t) = &e.link_target {
        format!("{} → {t}", e.name)
    } else {
        e.name.clone()
    };
    let versions = if e.kind == "file" || e.kind == "dir" {
        format!(
            r#"<a class="versions" href="/versions/{}?path={}">versions</a>"#,
            url(repo),
            e.path_url
        )
    } else {
        String::new()
    };
    format!(
        r#"<tr class="entry" data-name="{dn}" data-type="{t}"><td><input type="checkbox" name="item" value="{v}"></td><td><a class="open" href="{href}">{name}</a></td><td class="num">{size}</td><td><code>{perm}</code></td><td>{owner}</td><td>{mtime}</td><td>{versions}</td></tr>"#,
        dn = esc(&e.name),
        t = esc(e.kind),
        v = esc(&e.path_url),
        name = esc(&name),
        perm = esc(&e.permissions),
        owner = esc(&format!(
            "{}:{}",
            if e.user.is_empty() {
                e.uid.to_string()
            } else {
                e.user.clone()
            },
            if e.group.is_empty() {
                e.gid.to_string()
            } else {
                e.group.clone()
            }
        )),
        mtime = esc(e.mtime.get(..19).unwrap_or(&e.mtime)),
    )
}

async fn browse_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = match page_path(&caller, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p2 = path.clone();
    let (listing, all) = match with_repo(&st, &caller, repo.clone(), move |o| {
        let listing = browse::list_dir(o, &*o.snapshot(&id)?, &p2)?;
        Ok((listing, browse::snapshots(o, &Default::default())?))
    })
    .await
    {
        Ok(l) => l,
        Err(r) => return r,
    };
    let sid = listing.snapshot.id.clone();
    let mut body = format!(
        r#"<h1>{repo} · {short}</h1><p>{time} · host {host} · {paths}</p>{crumbs}"#,
        repo = esc(&repo),
        short = esc(&listing.snapshot.short_id),
        time = esc(&listing.snapshot.time),
        host = esc(&listing.snapshot.hostname),
        paths = esc(&listing.snapshot.paths.join(", ")),
        crumbs = breadcrumbs(&repo, &sid, &path),
    );
    body.push_str(&format!(
        r#"<form id="search" method="get" action="/browse/{r}/{s}/find"><input type="hidden" name="path" value="{p}"><input id="search-q" name="q" placeholder="name, or a glob like *.pdf" maxlength="256"><button id="search-go" type="submit">Search</button></form><p><a id="sizes-link" href="/browse/{r}/{s}/sizes?path={pu}">Where the space goes</a> · <a id="snapshot-versions" href="/snapshots#repo-{rid}">All snapshots</a></p>"#,
        r = url(&repo),
        s = url(&sid),
        p = esc(&String::from_utf8_lossy(&browse::decode_component(&listing.path_url))),
        pu = listing.path_url,
        rid = esc(&repo),
    ));
    // Compare this snapshot with another of the repository (newest first).
    let others: String = all
        .iter()
        .rev()
        .filter(|s| s.id != sid)
        .map(|s| {
            format!(
                r#"<option value="{}">{} · {} · {}</option>"#,
                esc(&s.id),
                esc(&s.short_id),
                esc(&s.time),
                esc(s.plan.as_deref().unwrap_or(&s.hostname))
            )
        })
        .collect();
    if !others.is_empty() {
        body.push_str(&format!(
            r#"<form id="diff-form" method="get" action="/diff/{r}"><input type="hidden" name="b" value="{s}"><label>Compare with <select id="diff-a" name="a">{others}</select></label> <button id="diff-go" type="submit">Show changes</button></form>"#,
            r = url(&repo),
            s = esc(&sid),
        ));
    }
    let admin = viewer(&caller).admin;
    let actions: String = PICK_ACTIONS
        .iter()
        .map(|f| f(&repo, &sid, &listing.path_url, admin))
        .collect();
    body.push_str(&format!(
        r#"<form id="pick" method="post"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="repo" value="{r}"><input type="hidden" name="snapshot" value="{s}"><div id="pick-actions">{actions}</div><table id="listing"><thead><tr><th><input type="checkbox" id="pick-all" title="select all"></th><th>Name</th><th>Size</th><th>Mode</th><th>Owner</th><th>Modified</th><th></th></tr></thead><tbody>"#,
        csrf = esc(&caller.csrf),
        r = esc(&repo),
        s = esc(&sid),
    ));
    for e in listing.entries.iter().take(MAX_ROWS) {
        body.push_str(&entry_row(&repo, &sid, e));
    }
    body.push_str("</tbody></table>");
    if listing.entries.is_empty() {
        body.push_str("<p>This directory is empty.</p>");
    } else if listing.entries.len() > MAX_ROWS {
        body.push_str(&format!(
            r#"<p id="listing-truncated">Showing {MAX_ROWS} of {} entries: search to find the others.</p>"#,
            listing.entries.len()
        ));
    }
    body.push_str(
        r#"</form><script>document.getElementById("pick-all").addEventListener("change",function(e){document.querySelectorAll('#listing input[name=item]').forEach(function(c){c.checked=e.target.checked;});});</script>"#,
    );
    render(
        &format!("{repo} {}", listing.snapshot.short_id),
        &caller,
        &body,
    )
}

async fn find_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = match page_path(&caller, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = match query_text(q.as_deref(), "q") {
        Ok(t) => t.unwrap_or_default(),
        Err(_) => return bad_request(&caller, "the search is not UTF-8"),
    };
    let nq = match NameQuery::parse(&text) {
        Ok(n) => n,
        Err(e) => return bad_request(&caller, &e.to_string()),
    };
    let p2 = path.clone();
    let r = match with_repo(&st, &caller, repo.clone(), move |o| {
        let s = o.snapshot(&id)?;
        Ok((
            s.id.to_hex(),
            browse::find(o, &s, &p2, &nq, browse::DEFAULT_CAP)?,
        ))
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (sid, found) = r;
    let mut body = format!(
        r#"<h1>Search: {q}</h1>{crumbs}<p>{n} found among {scanned} entries.</p>"#,
        q = esc(&text),
        crumbs = breadcrumbs(&repo, &sid, &path),
        n = found.hits.len(),
        scanned = found.scanned,
    );
    if found.truncated {
        body.push_str(&format!(
            r#"<p id="find-truncated">Only the first {} matches are shown: narrow the search.</p>"#,
            found.hits.len()
        ));
    }
    body.push_str(r#"<table id="find-results"><thead><tr><th>Path</th><th>Type</th><th>Size</th><th>Modified</th></tr></thead><tbody>"#);
    for h in &found.hits {
        let href = if h.kind == "dir" {
            browse_href(&repo, &sid, &h.path_url)
        } else {
            format!(
                "/browse/{}/{}/file?path={}",
                url(&repo),
                url(&sid),
                h.path_url
            )
        };
        body.push_str(&format!(
            r#"<tr class="hit"><td><a href="{href}">{p}</a></td><td>{t}</td><td class="num">{s}</td><td>{m}</td></tr>"#,
            p = esc(&h.path),
            t = esc(h.kind),
            s = if h.kind == "file" { format_bytes(h.size) } else { String::new() },
            m = esc(h.mtime.get(..19).unwrap_or(&h.mtime)),
        ));
    }
    body.push_str("</tbody></table>");
    render("Search", &caller, &body)
}

async fn sizes_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = match page_path(&caller, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p2 = path.clone();
    let (sid, sizes) = match with_repo(&st, &caller, repo.clone(), move |o| {
        let s = o.snapshot(&id)?;
        Ok((s.id.to_hex(), browse::sizes(o, &s, &p2)?))
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let total = sizes.totals.bytes.max(1);
    let mut body = format!(
        r#"<h1>Where the space goes</h1>{crumbs}<p id="sizes-total">{b} in {f} files, {d} directories</p><table id="sizes"><thead><tr><th>Name</th><th>Size</th><th>Share</th><th>Files</th></tr></thead><tbody>"#,
        crumbs = breadcrumbs(&repo, &sid, &path),
        b = format_bytes(sizes.totals.bytes),
        f = sizes.totals.files,
        d = sizes.totals.dirs,
    );
    for c in &sizes.children {
        let e = &c.entry;
        let name = if e.kind == "dir" {
            format!(
                r#"<a href="/browse/{}/{}/sizes?path={}">{}/</a>"#,
                url(&repo),
                url(&sid),
                e.path_url,
                esc(&e.name)
            )
        } else {
            esc(&e.name)
        };
        let pct = c.totals.bytes as f64 * 100.0 / total as f64;
        body.push_str(&format!(
            r#"<tr class="size-entry" data-bytes="{bytes}"><td>{name}</td><td class="num">{size}</td><td><meter min="0" max="100" value="{pct:.1}"></meter> {pct:.1}%</td><td class="num">{files}</td></tr>"#,
            bytes = c.totals.bytes,
            size = format_bytes(c.totals.bytes),
            files = c.totals.files,
        ));
    }
    body.push_str("</tbody></table>");
    render("Sizes", &caller, &body)
}

async fn file_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = match page_path(&caller, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p2 = path.clone();
    let (sid, info, preview) = match with_repo(&st, &caller, repo.clone(), move |o| {
        let s = o.snapshot(&id)?;
        let info = browse::node(o, &s, &p2)?;
        let preview = if info.entry.kind == "file" {
            Some(browse::preview(o, &s, &p2).map_err(|e| e.to_string()))
        } else {
            None
        };
        Ok((s.id.to_hex(), info, preview))
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let e = &info.entry;
    let mut rows = vec![
        ("Type", e.kind.to_string()),
        (
            "Size",
            format!("{} ({} bytes)", format_bytes(e.size), e.size),
        ),
        ("Mode", e.permissions.clone()),
        ("Owner", format!("{} ({})", e.user, e.uid)),
        ("Group", format!("{} ({})", e.group, e.gid)),
        ("Modified", e.mtime.clone()),
        ("Changed", info.ctime.clone()),
        ("Accessed", info.atime.clone()),
        ("Links", info.links.to_string()),
        ("Inode", info.inode.to_string()),
    ];
    if let Some(t) = &e.link_target {
        rows.push(("Link target", t.clone()));
    }
    if !info.xattrs.is_empty() {
        rows.push(("Extended attributes", info.xattrs.join(", ")));
    }
    if let Some(err) = &info.error {
        rows.push(("Error when backed up", err.clone()));
    }
    let mut body = format!(
        r#"<h1>{name}</h1>{crumbs}<p><a id="file-versions" href="/versions/{r}?path={pu}">Every version of this file</a></p><table id="node">"#,
        name = esc(&e.name),
        crumbs = breadcrumbs(&repo, &sid, &path),
        r = url(&repo),
        pu = e.path_url,
    );
    for (k, v) in rows {
        body.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", esc(&v)));
    }
    body.push_str("</table>");
    let src = format!(
        "/api/repositories/{}/snapshots/{}/preview?path={}",
        url(&repo),
        url(&sid),
        e.path_url
    );
    match preview {
        None => {}
        Some(Ok(p)) => match p.kind {
            PreviewKind::Text => body.push_str(&format!(
                r#"<h2>Preview{}</h2><pre id="preview">{}</pre>"#,
                if p.truncated { " (beginning)" } else { "" },
                esc(&String::from_utf8_lossy(&p.data))
            )),
            PreviewKind::Image(_) => body.push_str(&format!(
                r#"<h2>Preview</h2><div id="preview"><img src="{src}" alt="{}" style="max-width:100%"></div>"#,
                esc(&e.name)
            )),
        },
        Some(Err(msg)) => body.push_str(&format!(
            r#"<div id="preview"><p class="error">No preview: {}</p></div>"#,
            esc(&msg)
        )),
    }
    render(&e.name, &caller, &body)
}

async fn versions_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(repo): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let path = match page_path(&caller, &q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let plan = query_text(q.as_deref(), "plan")
        .ok()
        .flatten()
        .filter(|p| !p.is_empty());
    let p2 = path.clone();
    let vs = match with_repo(&st, &caller, repo.clone(), move |o| {
        browse::versions(o, &p2, plan.as_deref())
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut body = format!(
        r#"<h1>Versions of {p}</h1><p>In every snapshot of {r}, oldest first; <strong>changed</strong> marks a new content.</p><table id="versions"><thead><tr><th>Snapshot</th><th>Time</th><th>Host</th><th>Size</th><th>Modified</th><th></th></tr></thead><tbody>"#,
        p = esc(&path.display()),
        r = esc(&repo),
    );
    for v in &vs {
        let s = &v.snapshot;
        let (class, size, mtime, link) = match &v.entry {
            None => (
                "missing",
                "—".to_string(),
                "not in this snapshot".to_string(),
                String::new(),
            ),
            Some(e) => (
                if v.changed { "changed" } else { "" },
                if e.kind == "file" {
                    format_bytes(e.size)
                } else {
                    e.kind.to_string()
                },
                e.mtime.get(..19).unwrap_or(&e.mtime).to_string(),
                if e.kind == "dir" {
                    format!(
                        r#"<a href="{}">open</a>"#,
                        browse_href(&repo, &s.id, &e.path_url)
                    )
                } else {
                    format!(
                        r#"<a href="/browse/{}/{}/file?path={}">open</a>"#,
                        url(&repo),
                        url(&s.id),
                        e.path_url
                    )
                },
            ),
        };
        body.push_str(&format!(
            r#"<tr class="version {class}"><td><a href="{bh}">{short}</a></td><td>{time}</td><td>{host}</td><td class="num">{size}</td><td>{mtime}</td><td>{mark} {link}</td></tr>"#,
            bh = browse_href(&repo, &s.id, "/"),
            short = esc(&s.short_id),
            time = esc(&s.time),
            host = esc(&s.hostname),
            size = esc(&size),
            mtime = esc(&mtime),
            mark = if class == "changed" { "<strong>changed</strong>" } else { "" },
        ));
    }
    body.push_str("</tbody></table>");
    render("Versions", &caller, &body)
}

async fn diff_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(repo): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let raw = q.as_deref();
    let (Ok(Some(a)), Ok(Some(b))) = (query_text(raw, "a"), query_text(raw, "b")) else {
        return bad_request(&caller, "give two snapshots: ?a=OLD&b=NEW");
    };
    let d = match with_repo(&st, &caller, repo.clone(), move |o| {
        browse::diff(o, &*o.snapshot(&a)?, &*o.snapshot(&b)?, browse::DEFAULT_CAP)
    })
    .await
    {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut body = format!(
        r#"<h1>Changes in {r}</h1><p id="diff-summary">From <a href="{ha}">{a}</a> ({ta}) to <a href="{hb}">{b}</a> ({tb}): {af} files added ({ab}), {rf} removed ({rb}), {cf} changed; {ad} directories added, {rd} removed.</p>"#,
        r = esc(&repo),
        ha = browse_href(&repo, &d.a.id, "/"),
        hb = browse_href(&repo, &d.b.id, "/"),
        a = esc(&d.a.short_id),
        b = esc(&d.b.short_id),
        ta = esc(&d.a.time),
        tb = esc(&d.b.time),
        af = d.added.files,
        ab = format_bytes(d.added.bytes),
        rf = d.removed.files,
        rb = format_bytes(d.removed.bytes),
        cf = d.changed_files,
        ad = d.added.dirs,
        rd = d.removed.dirs,
    );
    if d.truncated {
        body.push_str(&format!(
            "<p>Only the first {} changes are listed.</p>",
            d.changes.len()
        ));
    }
    body.push_str(r#"<table id="diff"><thead><tr><th></th><th>Path</th><th>Before</th><th>After</th></tr></thead><tbody>"#);
    for c in &d.changes {
        let size = |s: Option<u64>| s.map(format_bytes).unwrap_or_default();
        let target = if c.modifier == '-' { &d.a.id } else { &d.b.id };
        let href = if c.kind == "dir" {
            browse_href(&repo, target, &c.path_url)
        } else {
            format!(
                "/browse/{}/{}/file?path={}",
                url(&repo),
                url(target),
                c.path_url
            )
        };
        body.push_str(&format!(
            r#"<tr class="change" data-modifier="{m}"><td><code>{m}</code></td><td><a href="{href}">{p}</a></td><td class="num">{sb}</td><td class="num">{sa}</td></tr>"#,
            m = esc(&c.modifier.to_string()),
            p = esc(&c.path),
            sb = size(c.size_before),
            sa = size(c.size_after),
        ));
    }
    body.push_str("</tbody></table>");
    render("Diff", &caller, &body)
}

pub fn routes() -> Vec<Route> {
    use axum::routing::get;
    const PATH_Q: &[(&str, &str)] = &[("path", "Path in the snapshot, percent-encoded bytes")];
    vec![
        Route::page(
            "/snapshots",
            Access::Viewer,
            "Every repository's snapshots, grouped by plan and host",
            get(snapshots_page),
        ),
        Route::page(
            "/browse/{repo}/{id}",
            Access::Viewer,
            "One directory of a snapshot, with search, sizes, versions and picking",
            get(browse_page),
        )
        .with_query(PATH_Q),
        Route::page(
            "/browse/{repo}/{id}/find",
            Access::Viewer,
            "Search a snapshot by name",
            get(find_page),
        )
        .with_query(&[("q", "Name, or a glob"), ("path", "Below this directory")]),
        Route::page(
            "/browse/{repo}/{id}/sizes",
            Access::Viewer,
            "Where the space goes in a directory of a snapshot",
            get(sizes_page),
        )
        .with_query(PATH_Q),
        Route::page(
            "/browse/{repo}/{id}/file",
            Access::Viewer,
            "One file of a snapshot: metadata and preview",
            get(file_page),
        )
        .with_query(PATH_Q),
        Route::page(
            "/versions/{repo}",
            Access::Viewer,
            "One path in every snapshot",
            get(versions_page),
        )
        .with_query(&[
            ("path", "Path of a file or directory"),
            ("plan", "Only this plan"),
        ]),
        Route::page(
            "/diff/{repo}",
            Access::Viewer,
            "What changed between two snapshots",
            get(diff_page),
        )
        .with_query(&[("a", "The older snapshot"), ("b", "The newer snapshot")]),
    ]
}
