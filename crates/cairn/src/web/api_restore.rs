//! Restore picked items of a snapshot to a path on the server (admins), with a preview
//! first, audited.
//!
//! A restore may take longer than the server's idle timeout (a whole snapshot of a few
//! GB; [`super::server::idle_timeout`]), so it runs on its own blocking thread and the
//! request only waits for it:
//! - [`start`] checks the request (target, snapshot, items), takes the lock, writes the
//!   audit row and restores;
//! - a restore that ends (or is refused) within [`keepalive`] answers as before: the
//!   report, or an error with its status (a bad request gets its 4xx);
//! - a longer one answers `200` then and keeps the connection alive: the API sends a
//!   space every [`keepalive`] (leading whitespace is valid JSON) then the report, or
//!   `{"error", "hint"}` if it failed (a client that got 200 looks for `error`: opening a
//!   slow repository can outlast [`keepalive`] too); the page ([`super::restore_page`]) streams
//!   its head, a progress line (files, bytes) every [`keepalive`], then the report.
//!
//! A client that goes away does not stop a restore (half a restore helps nobody): it ends,
//! and its audit row says how.

// Handlers' errors are ready responses (axum's own type, ~100 bytes): boxing them would
// only add noise on paths that end the request anyway.
#![allow(clippy::result_large_err)]

use super::api_data::{error, internal, now, repo_error, shown};
use super::auth::Caller;
use super::AppState;
use crate::history::{Finish, History, Outcome};
use crate::ops::archive;
use crate::ops::browse::decode_component;
use crate::ops::restore::{self as ops_restore, Request};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cairn_repo::restore::Progress;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The body of the restore routes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    #[serde(default)]
    items: Vec<String>,
    /// Items percent-encoded (names that are not UTF-8).
    #[serde(default)]
    items_enc: Vec<String>,
    target: String,
    #[serde(default)]
    overwrite: bool,
}

impl RestoreBody {
    fn request(self) -> Request {
        let mut items: Vec<Vec<u8>> = self.items.into_iter().map(String::into_bytes).collect();
        items.extend(self.items_enc.iter().map(|s| decode_component(s)));
        Request {
            items,
            target: self.target.into(),
            overwrite: self.overwrite,
        }
    }
}

fn parse_body(body: &[u8]) -> Result<Request, Response> {
    serde_json::from_slice::<RestoreBody>(body)
        .map(RestoreBody::request)
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("bad request body: {e}"),
                r#"send JSON {"items": ["/path/in/snapshot"], "target": "/absolute/dir", "overwrite": false}"#,
            )
        })
}

pub(super) async fn preview_api(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let req = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match preview(st, repo, id, req).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => e,
    }
}

pub(super) async fn preview(
    st: AppState,
    repo: String,
    id: String,
    req: Request,
) -> Result<ops_restore::PreviewReport, Response> {
    tokio::task::spawn_blocking(move || {
        let e = |e: cairn_repo::Error| repo_error(&e);
        let open = st.repos.get(&repo).map_err(e)?;
        let snap = open.snapshot(&id).map_err(e)?;
        let index = open.index().map_err(e)?;
        let trees = open.trees(&index);
        ops_restore::preview(&open.repo, &index, &trees, snap.tree, &req).map_err(e)
    })
    .await
    .unwrap_or_else(|e| Err(internal(e)))
}

pub(super) async fn restore_api(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let req = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut started = start(st, caller.user, repo, id, req);
    let every = keepalive();
    if let Ok(end) = tokio::time::timeout(every, &mut started.done).await {
        return json_end(end);
    }
    // Longer: 200 now, a space every `every`, then the report.
    let stream = futures_util::stream::unfold(Some(started.done), move |done| async move {
        let mut done = done?;
        tokio::select! {
            end = &mut done => {
                let r = json_end(end);
                let body = axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                Some((Ok::<_, std::io::Error>(body), None))
            }
            _ = tokio::time::sleep(every) => Some((Ok(Bytes::from_static(b" ")), Some(done))),
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(internal)
}

/// The answer of a restore that ended (or whose thread died).
fn json_end(
    end: Result<Result<ops_restore::Report, Response>, oneshot::error::RecvError>,
) -> Response {
    match end {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => e,
        Err(_) => internal("the restore's thread ended without a report"),
    }
}

/// How often a waiting restore sends something: well within the idle timeout, at most
/// every 10 s.
pub(super) fn keepalive() -> Duration {
    (super::server::idle_timeout() / 4).min(Duration::from_secs(10))
}

/// A restore under way: its progress and its end.
pub(super) struct Started {
    pub progress: Arc<Progress>,
    pub done: oneshot::Receiver<Result<ops_restore::Report, Response>>,
}

/// Checks `req` and restores it on a blocking thread, audited (the row is written before
/// the restore starts and finished with its outcome). The end ([`Started::done`]) is the
/// report, or the error that kept the restore from starting or ended it.
pub(super) fn start(st: AppState, user: String, repo: String, id: String, req: Request) -> Started {
    let progress = Arc::new(Progress::default());
    let (done_tx, done_rx) = oneshot::channel();
    let prog = progress.clone();
    tokio::task::spawn_blocking(move || {
        let e = |e: cairn_repo::Error| repo_error(&e);
        let checked = (|| -> Result<_, Response> {
            ops_restore::check_target(&req.target).map_err(e)?;
            let open = st.repos.get(&repo).map_err(e)?;
            let snap = open.snapshot(&id).map_err(e)?;
            let index = open.index().map_err(e)?;
            // Checked before anything is audited or locked: an absent item is a 404.
            archive::resolve(&open.trees(&index), snap.tree, &req.items).map_err(e)?;
            let lock = cairn_repo::lock::lock(&open.repo, false).map_err(e)?;
            let detail = serde_json::json!({
                "items": shown(&req.items),
                "target": req.target.display().to_string(),
                "overwrite": req.overwrite,
            });
            let history = History::open(&st.config.settings.state_dir)
                .map_err(|e| internal(format!("cannot audit the restore: {e:#}")))?;
            let audit = history
                .start_audited(&user, &repo, "restore", &snap.id.to_hex(), &detail, now())
                .map_err(|e| internal(format!("cannot audit the restore: {e:#}")))?;
            Ok((open, snap, index, lock, history, audit))
        })();
        let (open, snap, index, _lock, history, audit) = match checked {
            Ok(c) => c,
            Err(r) => {
                let _ = done_tx.send(Err(r));
                return;
            }
        };
        let trees = open.trees(&index);
        let result = ops_restore::restore(&open.repo, &index, &trees, snap.tree, &req, &prog);
        let (outcome, f) = match &result {
            Ok(r) => (
                match r.outcome {
                    ops_restore::Outcome::Complete => Outcome::Success,
                    ops_restore::Outcome::Incomplete => Outcome::Warning,
                    ops_restore::Outcome::Failed => Outcome::Failure,
                },
                Finish {
                    snapshot_id: Some(snap.id.to_hex()),
                    files_processed: Some(r.files_restored),
                    bytes_processed: Some(r.bytes_written),
                    error: match (r.failed.first(), r.skipped.first()) {
                        (Some(f), _) => Some(format!(
                            "{} path(s) not restored, e.g. {}: {}",
                            r.failed_count, f.path, f.error
                        )),
                        (None, Some(s)) => Some(format!(
                            "{} file(s) already in the target left unchanged, e.g. {s}",
                            r.skipped_count
                        )),
                        _ => None,
                    },
                    ..Default::default()
                },
            ),
            Err(err) => (
                Outcome::Failure,
                Finish {
                    snapshot_id: Some(snap.id.to_hex()),
                    error: Some(err.to_string()),
                    ..Default::default()
                },
            ),
        };
        if let Err(err) = history.finish(audit, now(), outcome, &f) {
            eprintln!("web: cannot record the end of restore {audit}: {err:#}");
        }
        let _ = done_tx.send(result.map_err(e));
    });
    Started {
        progress,
        done: done_rx,
    }
}

/// Files and bytes restored so far, for a person.
pub(super) fn progress_line(p: &Progress) -> String {
    let files = p.files_done.load(Ordering::Relaxed);
    let done = p.bytes_done.load(Ordering::Relaxed);
    let total = p.total_bytes.load(Ordering::Relaxed);
    let mut s = format!("{files} files, {}", crate::units::format_bytes(done));
    if total > 0 {
        s.push_str(&format!(
            " of {} ({}%)",
            crate::units::format_bytes(total),
            done.saturating_mul(100) / total
        ));
    }
    s
}
