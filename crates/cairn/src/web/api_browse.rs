//! The snapshot browser's API (JSON): snapshots of a repository, one directory, one node,
//! search by name, where the space goes, previews, diffs and versions of one path. Every
//! route calls [`crate::ops::browse`] on a blocking thread; the pages over the same data
//! are in [`super::browse_pages`].
//!
//! Paths come in `?path=` percent-encoded as bytes (names in a snapshot need not be
//! UTF-8), so the query is decoded here rather than by a `Query<String>` extractor.

// Handlers answer errors as ready `Response`s; boxing them buys nothing per request.
#![allow(clippy::result_large_err)]

use super::routes::{Access, Route};
use super::AppState;
use crate::ops::browse::{self, NameQuery, PreviewKind, SnapPath, SnapshotQuery};
use crate::ops::repos::Open;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_repo::Kind;
use std::sync::Arc;

/// Longest query string accepted (under the server's request-head limit, so this
/// module's answer, not the server's 431, is what a long query gets).
pub const MAX_QUERY_STRING: usize = 8 << 10;

/// The JSON error of a repository error: a status by its kind, the message (which names
/// the repository and what to do) and a hint.
pub fn repo_error(e: &cairn_repo::Error) -> Response {
    let (status, hint) = status_of(e);
    super::api_runs::error(status, e.to_string(), Some(hint))
}

/// The HTTP status of a repository error and a hint for the reader.
pub fn status_of(e: &cairn_repo::Error) -> (StatusCode, &'static str) {
    match e.kind() {
        Kind::NotFound => (
            StatusCode::NOT_FOUND,
            "check the repository name, the snapshot id and the path",
        ),
        Kind::Invalid => (StatusCode::BAD_REQUEST, "check the request's parameters"),
        Kind::Unsupported => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "download the file instead",
        ),
        Kind::WrongPassword | Kind::Auth => (
            StatusCode::BAD_GATEWAY,
            "the server cannot open this repository: check its password and credentials in the config",
        ),
        Kind::Network | Kind::Locked => (
            StatusCode::BAD_GATEWAY,
            "the repository cannot be reached right now: try again",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "see the server's log; `cairn check` tells whether the repository is damaged",
        ),
    }
}

/// The raw values of query parameter `name` (percent-decoded bytes), in order.
pub fn query_values(raw: Option<&str>, name: &str) -> Vec<Vec<u8>> {
    raw.unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (browse::decode_component(k) == name.as_bytes()).then(|| browse::decode_component(v))
        })
        .collect()
}

/// Parameter `name` as bytes (the first one), if present.
pub fn query_bytes(raw: Option<&str>, name: &str) -> Option<Vec<u8>> {
    query_values(raw, name).into_iter().next()
}

/// Parameter `name` as text; not UTF-8 is an error.
pub fn query_text(raw: Option<&str>, name: &str) -> Result<Option<String>, Response> {
    query_bytes(raw, name)
        .map(|b| {
            String::from_utf8(b).map_err(|_| {
                super::api_runs::error(
                    StatusCode::BAD_REQUEST,
                    format!("parameter {name} is not UTF-8"),
                    None,
                )
            })
        })
        .transpose()
}

/// Refuses a query string longer than [`MAX_QUERY_STRING`].
pub fn check_query(raw: &Option<String>) -> Result<(), Response> {
    match raw {
        Some(q) if q.len() > MAX_QUERY_STRING => Err(super::api_runs::error(
            StatusCode::URI_TOO_LONG,
            format!("query string too long ({} bytes)", q.len()),
            Some("paths and searches are limited to a few KiB"),
        )),
        _ => Ok(()),
    }
}

/// The `path` parameter as a snapshot path (absent: the root).
pub fn query_path(raw: Option<&str>) -> Result<SnapPath, Response> {
    SnapPath::parse(&query_bytes(raw, "path").unwrap_or_default()).map_err(|e| repo_error(&e))
}

/// Runs `f` with repository `repo` on a blocking thread.
pub async fn with_repo<T: Send + 'static>(
    state: &AppState,
    repo: String,
    f: impl FnOnce(&Arc<Open>) -> cairn_repo::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let state = state.clone();
    match tokio::task::spawn_blocking(move || {
        let open = state.repos.get(&repo)?;
        if let Some(t) = open.take_open_times() {
            eprintln!(
                "web: repository {repo:?} opened in {:.1} ms (key {:.1} ms, index {:.1} ms)",
                (t.key + t.index).as_secs_f64() * 1e3,
                t.key.as_secs_f64() * 1e3,
                t.index.as_secs_f64() * 1e3
            );
        }
        f(&open)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if status_of(&e).0.is_server_error() {
                eprintln!("web: {e}");
            }
            Err(repo_error(&e))
        }
        Err(e) => {
            eprintln!("web: a request's worker failed: {e}");
            Err(super::api_runs::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                None,
            ))
        }
    }
}

fn json<T: serde::Serialize>(r: Result<T, Response>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e,
    }
}

/// The cap parameter: at most `max`, default [`browse::DEFAULT_CAP`].
fn cap(raw: Option<&str>, max: usize) -> usize {
    query_text(raw, "limit")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(browse::DEFAULT_CAP)
        .clamp(1, max)
}

async fn snapshots(
    State(st): State<AppState>,
    Path(repo): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = async {
        check_query(&q)?;
        let q = q.as_deref();
        let sq = SnapshotQuery {
            plan: query_text(q, "plan")?,
            host: query_text(q, "host")?,
            path: query_text(q, "path")?,
        };
        with_repo(&st, repo, move |o| browse::snapshots(o, &sq)).await
    };
    json(run.await)
}

/// The shape of the routes that answer about one path of one snapshot: the query checked,
/// `path=` parsed, then `f` on the opened repository, off the runtime.
async fn at_path<T: Send + 'static>(
    st: &AppState,
    repo: String,
    id: String,
    q: Option<String>,
    f: fn(&Open, &cairn_repo::snapshot::Snapshot, &SnapPath) -> cairn_repo::Result<T>,
) -> Result<T, Response> {
    check_query(&q)?;
    let path = query_path(q.as_deref())?;
    with_repo(st, repo, move |o| f(o, &*o.snapshot(&id)?, &path)).await
}

async fn ls(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    json(at_path(&st, repo, id, q, browse::list_dir).await)
}

async fn node(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    json(at_path(&st, repo, id, q, browse::node).await)
}

async fn find(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = async {
        check_query(&q)?;
        let raw = q.as_deref();
        let path = query_path(raw)?;
        let text = query_text(raw, "q")?.unwrap_or_default();
        let nq = NameQuery::parse(&text).map_err(|e| repo_error(&e))?;
        let cap = cap(raw, 10_000);
        with_repo(&st, repo, move |o| {
            browse::find(o, &*o.snapshot(&id)?, &path, &nq, cap)
        })
        .await
    };
    json(run.await)
}

async fn sizes(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    json(at_path(&st, repo, id, q, browse::sizes).await)
}

async fn preview(
    State(st): State<AppState>,
    Path((repo, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    match at_path(&st, repo, id, q, browse::preview).await {
        Ok(p) => preview_response(p),
        Err(e) => e,
    }
}

/// The preview's bytes with their type; never interpreted as HTML by a browser.
pub fn preview_response(p: browse::Preview) -> Response {
    let mime = match p.kind {
        PreviewKind::Text => "text/plain; charset=utf-8",
        PreviewKind::Image(m) => m,
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
            (
                header::HeaderName::from_static("x-cairn-truncated"),
                p.truncated.to_string(),
            ),
            (
                header::HeaderName::from_static("x-cairn-size"),
                p.size.to_string(),
            ),
        ],
        p.data,
    )
        .into_response()
}

async fn diff(
    State(st): State<AppState>,
    Path(repo): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = async {
        check_query(&q)?;
        let raw = q.as_deref();
        let missing = |n: &str| {
            super::api_runs::error(
                StatusCode::BAD_REQUEST,
                format!("parameter {n} is missing"),
                Some("give two snapshot ids: ?a=OLD&b=NEW"),
            )
        };
        let a = query_text(raw, "a")?.ok_or_else(|| missing("a"))?;
        let b = query_text(raw, "b")?.ok_or_else(|| missing("b"))?;
        let cap = cap(raw, 100_000);
        with_repo(&st, repo, move |o| {
            browse::diff(o, &*o.snapshot(&a)?, &*o.snapshot(&b)?, cap)
        })
        .await
    };
    json(run.await)
}

async fn versions(
    State(st): State<AppState>,
    Path(repo): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let run = async {
        check_query(&q)?;
        let raw = q.as_deref();
        let path = query_path(raw)?;
        let plan = query_text(raw, "plan")?.filter(|p| !p.is_empty());
        with_repo(&st, repo, move |o| {
            browse::versions(o, &path, plan.as_deref())
        })
        .await
    };
    json(run.await)
}

const PATH_Q: (&str, &str) = (
    "path",
    "Path in the snapshot, percent-encoded bytes (default: the root)",
);

pub fn routes() -> Vec<Route> {
    use axum::routing::get;
    let mut r = vec![
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots",
            Access::Viewer,
            "Snapshots of a repository of the config, oldest first",
            get(snapshots),
        )
        .with_query(&[
            ("plan", "Only snapshots of this plan (tag plan:NAME)"),
            ("host", "Only snapshots of this host"),
            ("path", "Only snapshots that backed up this path"),
        ]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/ls",
            Access::Viewer,
            "One directory of a snapshot (id, unique prefix or latest)",
            get(ls),
        )
        .with_query(&[PATH_Q]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/node",
            Access::Viewer,
            "Metadata of one file or directory of a snapshot",
            get(node),
        )
        .with_query(&[PATH_Q]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/find",
            Access::Viewer,
            "Search a snapshot by name: a glob (*, ?) or a substring, case-insensitive",
            get(find),
        )
        .with_query(&[
            ("q", "The name pattern"),
            ("path", "Search below this directory (default: everywhere)"),
            (
                "limit",
                "At most this many hits (default 1000, at most 10000)",
            ),
        ]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/sizes",
            Access::Viewer,
            "Where the space goes: the recursive size of each child of a directory",
            get(sizes),
        )
        .with_query(&[PATH_Q]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/snapshots/{id}/preview",
            Access::Viewer,
            "The first 256 KiB of a text file, or a whole image up to 4 MiB (others: 415)",
            get(preview),
        )
        .with_query(&[PATH_Q]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/diff",
            Access::Viewer,
            "What changed from snapshot a to snapshot b",
            get(diff),
        )
        .with_query(&[
            ("a", "The older snapshot"),
            ("b", "The newer snapshot"),
            (
                "limit",
                "At most this many changes (default 1000, at most 100000)",
            ),
        ]),
        Route::api(
            "GET",
            "/api/repositories/{repo}/versions",
            Access::Viewer,
            "One path in every snapshot, with its size, time and whether it changed",
            get(versions),
        )
        .with_query(&[
            ("path", "Path of a file or directory"),
            ("plan", "Only snapshots of this plan"),
        ]),
    ];
    r.extend(super::browse_pages::routes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_bytes_and_keep_order() {
        let raw = Some("path=%2Fa%20b%2F%FF&q=x+y&path=second&limit");
        assert_eq!(query_bytes(raw, "path"), Some(b"/a b/\xff".to_vec()));
        assert_eq!(query_values(raw, "path").len(), 2);
        assert_eq!(query_bytes(raw, "q"), Some(b"x y".to_vec()));
        assert_eq!(query_bytes(raw, "limit"), Some(Vec::new()));
        assert_eq!(query_bytes(raw, "nope"), None);
        assert!(query_text(raw, "path").is_err(), "0xFF is not UTF-8");
    }
}
