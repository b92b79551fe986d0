//! Getting data back: downloads of picked items as `.tar.gz` or `.zip` (viewers), restore
//! of picked items to a path on the server with a preview first (admins), and the pages
//! over them. Every download and restore is audited in the history (who, what, where,
//! bytes, result). The work is [`crate::ops::archive`] and [`crate::ops::restore`].
//! This module has the routes, the browse page's buttons and what the others share;
//! downloads are [`super::api_download`], restores [`super::api_restore`], the restore
//! page [`super::restore_page`].
//!
//! A download streams: a blocking thread walks the snapshot and writes the archive into
//! a bounded channel ([`CHUNKS`] x [`CHUNK`]) that the response body drains, so memory
//! does not grow with the download and a client that goes away stops the walk (the audit
//! row then says `interrupted`). An error after the first bytes aborts the response (the
//! client sees a failed download, never a short archive that looks complete).
//!
//! Picked items are snapshot paths as bytes: `item` query parameters (percent-encoded
//! once, as any query value), `item` fields of url-encoded forms holding the path
//! percent-encoded (the browse page's checkboxes, and this module's forms: a name that is
//! not UTF-8 survives the HTML form), JSON `items` (text) and `items_enc` (percent-encoded).
//!
//! Stable element ids (the Chromium test relies on them):
//! - the browse page's pick form (`form#pick`, engineer D's) gets, in `#pick-actions`
//!   ([`pick_actions`]): `button#download-tgz`, `button#download-zip` (POST the picked
//!   items to the download route) and, for admins, `button#restore-picked` (opens the
//!   restore page with the picked items).
//! - restore page (`/restore/{repo}/{id}`): `form#restore-form`, the picked items in
//!   `ul#restore-items`, `input#restore-target`, `input#restore-overwrite` (checkbox),
//!   `button#restore-preview`, `button#restore-run`; a preview in `#restore-preview-result`
//!   (counts `#preview-create`, `#preview-overwrite`, `#preview-skip`, `#preview-blocked`,
//!   per picked item in `table#preview-items`, paths in `table#preview-table`, each `tr`
//!   with `data-action`); a restore's report in
//!   `#restore-report` (attribute `data-outcome`: complete, incomplete, failed; counts
//!   `#restore-restored`, `#restore-skipped`, `#restore-failed`; failures in
//!   `table#restore-failures`); an error in `#restore-error`.

// Handlers' errors are ready responses (axum's own type, ~100 bytes): boxing them would

use super::api_browse::status_of;
use super::layout::{esc, url};
use super::routes::{Access, Route};
use super::AppState;
use crate::history::History;
use crate::ops::browse::decode_component;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_repo::Kind;

pub fn routes() -> Vec<Route> {
    use axum::routing::{get, post};
    let page_post = |path, access, summary, handler| Route {
        method: "POST",
        path,
        access,
        summary,
        query: &[],
        page: true,
        handler,
    };
    vec![
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/download",
            Access::Viewer,
            "Picked items of a snapshot (or all of it) as a streamed .tar.gz or .zip",
            get(super::api_download::download_get),
        )
        .with_query(&[
            ("item", "A path in the snapshot to include (repeat for several; none: everything)"),
            ("format", "tar.gz (default) or zip"),
        ]),
        Route::api(
            "POST",
            "/api/repositories/{repo}/snapshots/{id}/download",
            Access::Viewer,
            "The download as a form post from the browse page (fields item: percent-encoded paths, format, csrf)",
            post(super::api_download::download_post),
        ),
        Route::api(
            "POST",
            "/api/repositories/{repo}/snapshots/{id}/restore/preview",
            Access::Admin,
            "What restoring picked items to a path on the server would create, overwrite or skip (JSON {items, target, overwrite})",
            post(super::api_restore::preview_api),
        ),
        Route::api(
            "POST",
            "/api/repositories/{repo}/snapshots/{id}/restore",
            Access::Admin,
            "Restore picked items (or all) to a path on the server (JSON {items, target, overwrite})",
            post(super::api_restore::restore_api),
        ),
        Route::api(
            "GET",
            "/api/audit",
            Access::Admin,
            "Downloads and restores from the web UI, newest first",
            get(audit_api),
        )
        .with_query(&[("limit", "How many (default 100, at most 1000)")]),
        Route::page(
            "/restore/{repo}/{id}",
            Access::Admin,
            "Restore picked items to a path on the server: preview, then restore",
            get(super::restore_page::restore_page_get),
        )
        .with_query(&[("item", "A picked path (repeat for several)")]),
        page_post(
            "/restore/{repo}/{id}",
            Access::Admin,
            "The restore page's form: preview or restore (fields item: percent-encoded paths, target, overwrite, action, csrf)",
            post(super::restore_page::restore_page_post),
        ),
    ]
}

/// The buttons of the browse page's pick form (`form#pick`, which carries the CSRF field
/// and the `item` checkboxes), in `#pick-actions`: download as .tar.gz or .zip, and
/// restore (admins). Registered in [`super::browse_pages::PICK_ACTIONS`].
/// With nothing ticked they act on the folder shown (field `folder`; see [`picked`]).
pub fn pick_actions(repo: &str, snapshot: &str, folder: &str, admin: bool) -> String {
    let base = format!(
        "/api/repositories/{}/snapshots/{}/download",
        url(repo),
        url(snapshot)
    );
    let mut out = format!(
        r#"<input type="hidden" name="folder" value="{}">"#,
        esc(folder)
    );
    out.push_str(&format!(
        r#"<button type="submit" id="download-tgz" name="format" value="tar.gz" formmethod="post" formaction="{base}">Download .tar.gz</button> <button type="submit" id="download-zip" name="format" value="zip" formmethod="post" formaction="{base}">Download .zip</button>"#,
        base = esc(&base),
    ));
    if admin {
        out.push_str(&format!(
            r#" <button type="submit" id="restore-picked" formmethod="post" formaction="/restore/{}/{}">Restore to a path…</button>"#,
            esc(&url(repo)),
            esc(&url(snapshot))
        ));
    }
    out
}

/// A JSON error `{"error", "hint"}`.
pub(super) fn error(status: StatusCode, msg: impl Into<String>, hint: &str) -> Response {
    super::api_runs::error(status, msg, Some(hint))
}

/// The JSON error of an engine error (a lock held by prune is a conflict, not a gateway
/// failure).
pub(super) fn repo_error(e: &cairn_repo::Error) -> Response {
    if e.kind() == Kind::Locked {
        return error(
            StatusCode::CONFLICT,
            e.to_string(),
            "another operation holds the repository: try again when it ends",
        );
    }
    let (status, hint) = status_of(e);
    if status.is_server_error() {
        eprintln!("web: {e}");
    }
    error(status, e.to_string(), hint)
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    eprintln!("web: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        "see the server's log",
    )
}

pub(super) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The picked items of a url-encoded form: `item` fields holding percent-encoded paths.
pub(super) fn items_of(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    pairs
        .iter()
        .filter(|(k, _)| k == b"item")
        .map(|(_, v)| decode_component(&String::from_utf8_lossy(v)))
        .collect()
}

/// The items a pick form acts on: its ticked `item` fields, or with none ticked the
/// folder the page showed (`folder`, its path percent-encoded; the root or no folder:
/// the whole snapshot).
pub(super) fn picked(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    let items = items_of(pairs);
    if !items.is_empty() {
        return items;
    }
    pairs
        .iter()
        .find(|(k, _)| k == b"folder")
        .map(|(_, v)| decode_component(&String::from_utf8_lossy(v)))
        .filter(|f| !f.iter().all(|&b| b == b'/'))
        .map(|f| vec![f])
        .unwrap_or_default()
}

/// The fields of a url-encoded body or query, decoded to bytes, in order.
pub(super) fn pairs(raw: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    String::from_utf8_lossy(raw)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

pub(super) fn field(pairs: &[(Vec<u8>, Vec<u8>)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The path items of a request for messages and the audit (lossy text).
pub(super) fn shown(items: &[Vec<u8>]) -> Vec<String> {
    items
        .iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect()
}

async fn audit_api(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = pairs(q.as_deref().unwrap_or("").as_bytes());
    let limit = field(&p, "limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let rows = super::api_runs::blocking(move || {
        History::open(&st.config.settings.state_dir)?.audited(limit)
    })
    .await;
    match rows {
        Ok(r) => Json(r).into_response(),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_as_text_or_percent_encoded_bytes() {
        // A form's item is a percent-encoded path, encoded again by the form.
        let p = pairs(b"item=%252Fa%2520b&format=zip&item=%252Fx%25FF&csrf=t");
        assert_eq!(items_of(&p), vec![b"/a b".to_vec(), b"/x\xff".to_vec()]);
        assert_eq!(field(&p, "format").as_deref(), Some("zip"));
    }
}
